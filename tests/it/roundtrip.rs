//! dump → load into an empty database with the same schema: identical rows,
//! identical storage trees.

use crate::support;
use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::time::Duration;

use rusqlite::types::Value;

const LIMIT: Duration = Duration::from_secs(120);

const SCHEMA: &str = "
CREATE TABLE blog_category (id INTEGER PRIMARY KEY, name TEXT NOT NULL);
CREATE TABLE blog_article (
    id INTEGER PRIMARY KEY,
    title TEXT,
    score REAL,
    views INTEGER,
    thumbnail BLOB,
    category_id INTEGER REFERENCES blog_category(id) DEFERRABLE INITIALLY DEFERRED
);
CREATE TABLE audit_entry (id INTEGER PRIMARY KEY, message TEXT, at TEXT);
";

/// id, title, score, views, thumbnail, category.
type ArticleRow = (
    i64,
    Option<&'static str>,
    Option<f64>,
    Option<i64>,
    Option<Vec<u8>>,
    Option<i64>,
);

fn fill(db: &Path) {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.execute_batch(SCHEMA).unwrap();
    conn.execute_batch(
        "INSERT INTO blog_category VALUES (1, 'News'), (2, 'Café ☕ & Culture'), (3, '日本語 \"quoted\" \\ back');",
    )
    .unwrap();
    let rows: Vec<ArticleRow> = vec![
        (
            1,
            Some("plain"),
            Some(0.1 + 0.2),
            Some(i64::MAX),
            Some(vec![0, 1, 2, 255]),
            Some(1),
        ),
        (2, None, None, None, None, None),
        (
            3,
            Some("line\nbreak\ttab \u{1F600}"),
            Some(-1e-300),
            Some(i64::MIN),
            Some(vec![]),
            Some(3),
        ),
        (
            i64::MAX,
            Some("max id"),
            Some(1.5e300),
            Some(0),
            None,
            Some(2),
        ),
        (
            -7,
            Some(""),
            Some(-0.0),
            Some(-1),
            Some(vec![0; 300]),
            Some(2),
        ),
    ];
    for r in rows {
        conn.execute(
            "INSERT INTO blog_article VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            rusqlite::params![r.0, r.1, r.2, r.3, r.4, r.5],
        )
        .unwrap();
    }
    let tx = conn.unchecked_transaction().unwrap();
    for i in 0..5000 {
        tx.execute(
            "INSERT INTO audit_entry VALUES (?1, ?2, '2024-01-01 12:00:00')",
            rusqlite::params![i, format!("entry {i} ü")],
        )
        .unwrap();
    }
    tx.commit().unwrap();
}

fn rows(db: &Path) -> BTreeMap<String, Vec<Vec<Value>>> {
    let conn = rusqlite::Connection::open(db).unwrap();
    let mut out = BTreeMap::new();
    for table in ["blog_category", "blog_article", "audit_entry"] {
        let mut stmt = conn
            .prepare(&format!("SELECT * FROM {table} ORDER BY id"))
            .unwrap();
        let n = stmt.column_count();
        let all: Vec<Vec<Value>> = stmt
            .query_map([], |r| (0..n).map(|i| r.get::<_, Value>(i)).collect())
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        out.insert(table.to_string(), all);
    }
    out
}

fn media(root: &Path) {
    support::write_files(
        root,
        [
            ("media/README.txt", "read me\n"),
            ("media/annual report 2024.txt", "spaces in the name\n"),
            ("media/documents/résumé café.txt", "non-ASCII\n"),
            ("media/日本/ファイル.md", "unicode dirs\n"),
            ("media/deep/a/b/c/d/e/f.txt", "deep\n"),
            ("private/secret.txt", "second storage\n"),
        ],
    );
    let binary: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
    fs::write(root.join("media/photo.jpg"), binary).unwrap();
    fs::create_dir_all(root.join("media/empty dir")).unwrap();
    fs::create_dir_all(root.join("media/nested/empty")).unwrap();
    fs::write(root.join("media/zero.bin"), b"").unwrap();
    std::os::unix::fs::symlink("../README.txt", root.join("media/documents/readme-link")).unwrap();
}

/// What a user compares: kinds, contents and link targets (not modes, which
/// the loader never takes from an archive).
fn tree(root: &Path) -> BTreeMap<String, (&'static str, String)> {
    support::snapshot(root)
        .into_iter()
        .map(|(k, n)| (k, (n.kind, n.digest)))
        .collect()
}

#[test]
fn dump_then_load_gives_identical_rows_and_trees() {
    let src = support::temp_dir();
    fill(&src.path().join("app.db"));
    media(src.path());
    let src_config = support::write_config(
        src.path(),
        r#"
[data]
database_url = "sqlite://app.db"
[storages]
basepath = "."
paths = ["media", "private"]
[dump]
path = "dumps"
[[apps]]
name = "blog"
models = ["blog"]
[[apps]]
name = "rest"
is_drain = true
"#,
    );
    let old = std::time::UNIX_EPOCH + Duration::from_secs(1_600_000_000);
    fs::File::options()
        .write(true)
        .open(src.path().join("media/photo.jpg"))
        .unwrap()
        .set_modified(old)
        .unwrap();
    let run = support::run(support::diskette(&src_config, &["dump"]), LIMIT);
    assert!(run.success(), "{}", run.stderr);
    let checksum = run.stdout.trim().to_string();
    let archive = fs::read_dir(src.path().join("dumps"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();

    let dst = support::temp_dir();
    let conn = rusqlite::Connection::open(dst.path().join("target.db")).unwrap();
    conn.execute_batch(SCHEMA).unwrap();
    drop(conn);
    let dst_config = support::write_config(
        dst.path(),
        "[data]\ndatabase_url = \"sqlite://target.db\"\n[load]\nstorages_basepath = \"site\"\n",
    );
    let args = ["load", archive.to_str().unwrap(), "--checksum", &checksum];
    let run = support::run(support::diskette(&dst_config, &args), LIMIT);
    assert!(run.success(), "{}", run.stderr);

    assert_eq!(
        rows(&src.path().join("app.db")),
        rows(&dst.path().join("target.db"))
    );
    for storage in ["media", "private"] {
        assert_eq!(
            tree(&src.path().join(storage)),
            tree(&dst.path().join("site").join(storage)),
            "{storage}"
        );
    }
    // File times come back too (to the second, as tar stores them).
    let mtime = |p: &Path| {
        fs::metadata(p)
            .unwrap()
            .modified()
            .unwrap()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    };
    for rel in [
        "media/README.txt",
        "media/photo.jpg",
        "media/日本/ファイル.md",
    ] {
        let restored = dst.path().join("site").join(rel);
        assert_eq!(mtime(&src.path().join(rel)), mtime(&restored), "{rel}");
    }
    assert_eq!(
        mtime(&dst.path().join("site/media/photo.jpg")),
        1_600_000_000
    );
    // The archive is never deleted by a load of a local file.
    assert!(archive.exists());

    // Loading again upserts the same rows: still identical.
    let run = support::run(support::diskette(&dst_config, &args), LIMIT);
    assert!(run.success(), "{}", run.stderr);
    assert_eq!(
        rows(&src.path().join("app.db")),
        rows(&dst.path().join("target.db"))
    );
}

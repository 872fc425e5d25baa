//! Compatibility with the original Diskette 0.6.0, in both directions, proven
//! against the real thing: the Django project in `tests/django/` runs with the
//! real `Django` and `diskette` packages from PyPI.
//!
//! - ours → original: a Django project's own SQLite database and media, dumped
//!   by our binary, load with `manage.py diskette_load` into a fresh copy of
//!   the project and give identical rows and files;
//! - original → ours: an archive made by `manage.py diskette_dump` loads with
//!   our binary and gives the same database and files as the original's own
//!   `diskette_load`, with the SQL engine alone or with `manage.py loaddata`
//!   as the command engine; fixtures the SQL engine cannot map fail the whole
//!   load before anything changes;
//! - the reference archives in `tests/fixtures/diskette-0.6.0/` load.
//!
//! The Python side needs a virtualenv made by `tests/django/setup_venv.sh`:
//! `DISKETTE_TEST_DJANGO_VENV=DIR` points at one (created there when DIR does
//! not exist yet); without it, the tests build one under the cargo target
//! directory, which needs Python 3 with its `venv` module and access to PyPI.
//! When it cannot be built the tests fail; they never skip.

mod compare;
mod diskette_definitions;
mod fidelity;
mod postgres;
mod site;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use rusqlite::types::Value;

use compare::*;
use site::*;

// ---------------------------------------------------------------------------
// ours → original

/// Our configuration dumping the `blog` tables and the media of `src` into `dir/dumps`.
fn dump_config(dir: &Path, src: &Site) -> PathBuf {
    write_config(
        dir,
        "diskette.toml",
        &format!(
            r#"
[data]
database_url = {db}

[storages]
basepath = {base}
paths = [{media}]
excludes = ["*.tmp"]

[dump]
path = "dumps"
filename = "ours{{features}}.tar.gz"

[[apps]]
name = "blog"
models = ["blog"]
"#,
            db = sqlite_url(&src.db()),
            base = q(&src.dir),
            media = q(src.media()),
        ),
    )
}

#[test]
fn our_dump_of_a_django_database_loads_with_the_original_diskette_load() {
    ours_to_original(None);
}

/// Django stores aware datetimes in UTC on SQLite and reads a naive fixture
/// value in its TIME_ZONE: a dump of the raw column must not shift them.
#[test]
fn our_dump_keeps_datetimes_of_a_django_project_outside_utc() {
    ours_to_original(Some("Europe/Paris"));
}

fn ours_to_original(time_zone: Option<&'static str>) {
    let tmp = tempdir();
    let src = Site::in_time_zone(tmp.path().join("src"), time_zone).seed();

    let config = dump_config(tmp.path(), &src);
    let stdout = diskette_ok(&config, &["dump"]);
    let checksum = stdout.trim().lines().last().unwrap_or_default().to_string();
    let archive = tmp.path().join("dumps/ours_data_storages.tar.gz");
    assert!(archive.is_file(), "no archive at {}", archive.display());
    assert_eq!(
        checksum,
        b2sum(&archive),
        "printed checksum is not the BLAKE2b-512 of the file"
    );

    // A fresh copy of the project, empty database, no media.
    let dst = Site::in_time_zone(tmp.path().join("dst"), time_zone);
    let before = snapshot(&dst.db());
    let archive_arg = archive.to_str().unwrap();
    let log = dst.manage(&[
        "diskette_load",
        archive_arg,
        "--keep",
        "--checksum",
        &checksum,
        "-v",
        "2",
    ]);
    assert!(log.contains("Restoring storage directory"), "{log}");
    assert!(
        archive.is_file(),
        "--keep was given, the archive must remain"
    );

    // The rows, byte for byte as Django stores the source's rows after its
    // own dumpdata and loaddata (datetimes cut to milliseconds).
    for name in ["blog_category", "blog_article"] {
        let (columns, rows) = table(&dst.db(), name);
        assert_eq!(
            (columns, rows),
            as_dumped(table(&src.db(), name)),
            "table {name}"
        );
    }
    assert_eq!(table(&dst.db(), "blog_article").1.len(), 4);
    // Nothing else changed.
    let mut after = snapshot(&dst.db());
    let mut before = before;
    for name in ["blog_category", "blog_article", "sqlite_sequence"] {
        after.remove(name);
        before.remove(name);
    }
    assert_same_tables(&after, &before, "tables outside the dump");
    // And as Django sees them.
    assert_eq!(
        dst.manage(&["dumpdata", "blog", "--indent", "1"]),
        src.manage(&["dumpdata", "blog", "--indent", "1"])
    );

    // The media, byte-identical, minus what the exclude dropped.
    let mut expected = tree(&src.media());
    assert!(expected.remove(Path::new("uploads/draft.tmp")).is_some());
    assert_eq!(names(&tree(&dst.media())), names(&expected));
    assert_eq!(tree(&dst.media()), expected);
}

/// Archives with one kind only (`"datas": null` or `"storages": null` in the
/// manifest) load with the original too.
#[test]
fn our_data_only_and_storages_only_archives_load_with_the_original() {
    let tmp = tempdir();
    let src = Site::new(tmp.path().join("src")).seed();
    let config = dump_config(tmp.path(), &src);
    let dst = Site::new(tmp.path().join("dst"));

    diskette_ok(&config, &["dump", "--no-storages"]);
    let data_only = tmp.path().join("dumps/ours_data.tar.gz");
    dst.manage(&["diskette_load", data_only.to_str().unwrap()]);
    assert_eq!(
        table(&dst.db(), "blog_article"),
        as_dumped(table(&src.db(), "blog_article"))
    );
    assert!(
        !dst.media().exists(),
        "a data-only archive restored storages"
    );

    diskette_ok(&config, &["dump", "--no-data"]);
    let storages_only = tmp.path().join("dumps/ours_storages.tar.gz");
    dst.manage(&["diskette_load", storages_only.to_str().unwrap()]);
    let mut expected = tree(&src.media());
    expected.remove(Path::new("uploads/draft.tmp"));
    assert_eq!(tree(&dst.media()), expected);
}

// ---------------------------------------------------------------------------
// original → ours

/// Our configuration loading only the blog fixture, with the SQL engine.
fn blog_only_config(dir: &Path, dst: &Site) -> PathBuf {
    write_config(
        dir,
        "sql-only.toml",
        &format!(
            r#"
[data]
database_url = {db}

[load]
storages_basepath = {base}

[[apps]]
name = "blog"
models = ["blog"]
"#,
            db = sqlite_url(&dst.db()),
            base = q(&dst.dir),
        ),
    )
}

/// Our configuration loading the sites and auth fixtures with `manage.py
/// loaddata` (the command engine) and the blog with the SQL engine.
fn loaddata_config(dir: &Path, dst: &Site) -> PathBuf {
    write_config(
        dir,
        "with-commands.toml",
        &format!(
            r#"
[data]
database_url = {db}

[load]
storages_basepath = {base}

[[apps]]
name = "django.contrib.sites"
filename = "djangocontribsites.json"
dump_command = {sites_dump}
load_command = {loaddata}

[[apps]]
name = "django.contrib.auth"
filename = "djangocontribauth.json"
dump_command = {auth_dump}
load_command = {loaddata}

[[apps]]
name = "blog"
models = ["blog"]
"#,
            db = sqlite_url(&dst.db()),
            base = q(&dst.dir),
            sites_dump = dst.manage_argv(&["dumpdata", "sites", "--natural-foreign"]),
            auth_dump =
                dst.manage_argv(&["dumpdata", "auth.group", "auth.user", "--natural-foreign"]),
            loaddata = dst.manage_argv(&["loaddata", "{file}"]),
        ),
    )
}

#[test]
fn original_dump_loads_with_ours_like_with_the_original() {
    let tmp = tempdir();
    let src = Site::new(tmp.path().join("src")).seed();
    let log = src.manage(&["diskette_dump", "-v", "2"]);
    let archive = src.dir.join("var/dumps/diskette_data_storages.tar.gz");
    assert!(archive.is_file(), "no archive from diskette_dump:\n{log}");
    let checksum = log
        .lines()
        .find_map(|l| l.strip_prefix("Checksum: "))
        .unwrap_or_else(|| panic!("no checksum in the diskette_dump output:\n{log}"))
        .trim()
        .to_string();
    let archive_arg = archive.to_str().unwrap();

    // What the original makes of its own archive, in a fresh copy.
    let oracle = Site::new(tmp.path().join("oracle"));
    oracle.manage(&[
        "diskette_load",
        archive_arg,
        "--keep",
        "--checksum",
        &checksum,
    ]);
    assert_eq!(table(&oracle.db(), "blog_article").1.len(), 4);

    // A fresh copy with a previous media directory, loaded by us.
    let dst = Site::new(tmp.path().join("dst"));
    fs::create_dir_all(dst.media()).unwrap();
    fs::write(dst.media().join("previous.txt"), b"previous content").unwrap();
    // 1. The SQL engine alone loads every fixture (sites.site, many-to-many
    //    lists of natural keys) and gives the original's tables.
    let sql_dst = Site::new(tmp.path().join("sql"));
    let sql_only = blog_only_config(tmp.path(), &sql_dst);
    diskette_ok(&sql_only, &["load", archive_arg, "--checksum", &checksum]);
    assert_same_tables(
        &instants(snapshot(&sql_dst.db())),
        &instants(snapshot(&oracle.db())),
        "SQL engine alone (left) vs original (right)",
    );
    assert!(archive.is_file(), "a local archive must never be deleted");

    // 2. The supported route: `manage.py loaddata` as the command engine for
    //    those fixtures, the SQL engine for the blog.
    let with_commands = loaddata_config(tmp.path(), &dst);
    diskette_ok(
        &with_commands,
        &["load", archive_arg, "--checksum", &checksum],
    );
    assert!(archive.is_file(), "a local archive must never be deleted");

    // Same database as the original's load: every table, byte for byte
    // (datetimes as instants).
    assert_same_tables(
        &instants(snapshot(&dst.db())),
        &instants(snapshot(&oracle.db())),
        "ours (left) vs original (right)",
    );
    // The blog rows are the source's (created datetimes in the source keep
    // microseconds that Django's dumpdata truncates to milliseconds, so they
    // are compared through the original's load above).
    assert_eq!(
        table(&dst.db(), "blog_category"),
        table(&src.db(), "blog_category")
    );
    let (_, users) = table(&dst.db(), "auth_user_groups");
    assert_eq!(users.len(), 1, "admin is in the Editors group");

    // Same media as the original's load (it never archives empty directories).
    assert_eq!(names(&tree(&dst.media())), names(&tree(&oracle.media())));
    assert_eq!(tree(&dst.media()), tree(&oracle.media()));
    assert!(!dst.media().join("previous.txt").exists());
}

// ---------------------------------------------------------------------------
// The reference archives of the original

/// The tables of the reference `blog` app, as Django creates them on SQLite.
fn create_blog_tables(db: &Path) {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.execute_batch(
        r#"
CREATE TABLE "blog_category" (
    "id" integer NOT NULL PRIMARY KEY AUTOINCREMENT,
    "name" varchar(100) NOT NULL
);
CREATE TABLE "blog_article" (
    "id" integer NOT NULL PRIMARY KEY AUTOINCREMENT,
    "title" varchar(200) NOT NULL,
    "body" text NOT NULL,
    "category_id" integer NULL REFERENCES "blog_category" ("id") DEFERRABLE INITIALLY DEFERRED,
    "created" datetime NOT NULL,
    "cover" varchar(100) NOT NULL
);
"#,
    )
    .unwrap();
}

fn sql_only_config(dir: &Path) -> PathBuf {
    write_config(
        dir,
        "diskette.toml",
        r#"
[data]
database_url = "sqlite://site.db"

[load]
storages_basepath = "restored"

[[apps]]
name = "blog"
models = ["blog"]
"#,
    )
}

#[test]
fn reference_blog_fixture_loads_with_the_sql_engine() {
    let tmp = tempdir();
    let (archive, checksum) = reference_archive("data_storages.tar.gz", tmp.path());
    let db = tmp.path().join("site.db");
    create_blog_tables(&db);
    let config = sql_only_config(tmp.path());
    diskette_ok(
        &config,
        &[
            "load",
            archive.to_str().unwrap(),
            "--exclude-data",
            "djangocontribsites.json",
            "--exclude-data",
            "djangocontribauth.json",
            "--checksum",
            &checksum,
        ],
    );
    assert!(archive.is_file(), "a local archive must never be deleted");

    // Every record of data/blog.json is a row, foreign keys in `category_id`.
    let members = archive_files(&archive);
    let fixture: Vec<serde_json::Value> =
        serde_json::from_slice(&members["data/blog.json"]).unwrap();
    let (_, categories) = table(&db, "blog_category");
    let (columns, articles) = table(&db, "blog_article");
    assert_eq!(
        columns,
        ["id", "title", "body", "category_id", "created", "cover"]
    );
    assert_eq!((categories.len(), articles.len()), (3, 36));
    let text = |v: &serde_json::Value| Value::Text(v.as_str().unwrap().to_string());
    let mut seen = 0;
    for record in &fixture {
        let pk = record["pk"].as_i64().unwrap();
        let f = &record["fields"];
        match record["model"].as_str().unwrap() {
            "blog.category" => {
                let row = categories
                    .iter()
                    .find(|r| r[0] == Value::Integer(pk))
                    .unwrap();
                assert_eq!(row[1], text(&f["name"]));
            }
            "blog.article" => {
                let row = articles
                    .iter()
                    .find(|r| r[0] == Value::Integer(pk))
                    .unwrap();
                assert_eq!(row[1], text(&f["title"]), "title of article {pk}");
                assert_eq!(row[2], text(&f["body"]), "body of article {pk}");
                let category = f["category"].as_i64().map_or(Value::Null, Value::Integer);
                assert_eq!(row[3], category, "category of article {pk}");
                let Value::Text(created) = &row[4] else {
                    panic!("created of {pk}: {:?}", row[4])
                };
                assert!(
                    instant(created) == instant(f["created"].as_str().unwrap()),
                    "created of article {pk}: {created:?} vs {}",
                    f["created"]
                );
                assert_eq!(row[5], text(&f["cover"]), "cover of article {pk}");
            }
            other => panic!("unexpected model {other}"),
        }
        seen += 1;
    }
    assert_eq!(seen, 39);

    // The storage, byte-identical to the archive's members.
    let restored = tree(&tmp.path().join("restored/media"));
    let expected: BTreeMap<String, Vec<u8>> = members
        .into_iter()
        .filter_map(|(name, content)| Some((name.strip_prefix("media/")?.to_string(), content)))
        .collect();
    assert_eq!(expected.len(), 16);
    let files: BTreeMap<String, Vec<u8>> = restored
        .into_iter()
        .filter_map(|(path, node)| match node {
            Node::File(content) => Some((path.display().to_string(), content)),
            _ => None,
        })
        .collect();
    assert_eq!(files, expected);
}

/// The rows our SQL engine loads into a Django database are stored the way
/// Django stores them: `2024-01-01 15:08:00` (its SQLite backend's form), not
/// the fixture's `2024-01-01T15:08:00Z`. Django's queries compare the stored
/// text: with the fixture's form, `created__lt=2024-01-01 16:00 UTC` misses
/// the 15:08 row and `created__date="2024-01-01"` finds nothing.
#[test]
fn our_load_stores_datetimes_as_django_does() {
    let tmp = tempdir();
    let (archive, _) = reference_archive("data.tar.gz", tmp.path());
    let archive_arg = archive.to_str().unwrap();
    let only_blog = [
        "--exclude-data",
        "djangocontribsites.json",
        "--exclude-data",
        "djangocontribauth.json",
    ];

    let oracle = Site::new(tmp.path().join("oracle"));
    let mut args = vec!["diskette_load", archive_arg, "--keep"];
    args.extend(only_blog);
    oracle.manage(&args);

    let dst = Site::new(tmp.path().join("dst"));
    let config = write_config(
        tmp.path(),
        "diskette.toml",
        &format!(
            "[data]\ndatabase_url = {}\n\n[[apps]]\nname = \"blog\"\nmodels = [\"blog\"]\n",
            sqlite_url(&dst.db())
        ),
    );
    let mut args = vec!["load", archive_arg, "--no-storages"];
    args.extend(only_blog);
    diskette_ok(&config, &args);

    assert_eq!(
        table(&dst.db(), "blog_article"),
        table(&oracle.db(), "blog_article"),
        "ours (left) vs original (right)"
    );
    let query = "from datetime import datetime, timezone as tz; from blog.models import Article; \
                 print(Article.objects.filter(created__lt=datetime(2024, 1, 1, 16, tzinfo=tz.utc)).count(), \
                 Article.objects.filter(created__date='2024-01-01').count())";
    assert_eq!(
        dst.manage(&["shell", "-c", query]).trim().lines().last(),
        Some("1 2")
    );
}

/// Restored files keep the permission bits of the archive, as the original's
/// loader does (`uploads/.hidden` and `uploads/blob.bin` are 0600 there).
#[test]
fn restored_storages_keep_file_modes() {
    let tmp = tempdir();
    let (archive, _) = reference_archive("storages.tar.gz", tmp.path());
    let config = sql_only_config(tmp.path());
    diskette_ok(&config, &["load", archive.to_str().unwrap()]);

    let gz = flate2::read::GzDecoder::new(fs::File::open(&archive).unwrap());
    let mut tar = tar::Archive::new(gz);
    let mut private = 0;
    for entry in tar.entries().unwrap() {
        let entry = entry.unwrap();
        let name = entry.path().unwrap().display().to_string();
        if name == "manifest.json" || !entry.header().entry_type().is_file() {
            continue;
        }
        let mode = entry.header().mode().unwrap() & 0o777;
        private += usize::from(mode == 0o600);
        let restored = fs::metadata(tmp.path().join("restored").join(&name)).unwrap();
        assert_eq!(
            restored.permissions().mode() & 0o777,
            mode,
            "mode of {name}"
        );
    }
    assert_eq!(private, 2);
}

#[test]
fn reference_fixtures_the_sql_engine_cannot_map_fail_the_whole_load() {
    let tmp = tempdir();
    let (archive, _) = reference_archive("data_storages.tar.gz", tmp.path());
    let db = tmp.path().join("site.db");
    create_blog_tables(&db);
    // The table of `auth.group`, so that its fixture reaches the many-to-many field.
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute_batch(
            r#"CREATE TABLE "auth_group" (
                "id" integer NOT NULL PRIMARY KEY AUTOINCREMENT,
                "name" varchar(150) NOT NULL UNIQUE
            );"#,
        )
        .unwrap();
    let config = sql_only_config(tmp.path());
    let before = snapshot(&db);

    // auth: many-to-many lists of natural keys; sites: no table for `sites.site`
    // (Django's is `django_site`).
    for (exclude, model, field) in [
        ("djangocontribsites.json", "auth.group", Some("permissions")),
        ("djangocontribauth.json", "sites.site", None),
    ] {
        let out = diskette(
            &config,
            &["load", archive.to_str().unwrap(), "--exclude-data", exclude],
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        let error = stderr.trim().lines().last().unwrap_or_default();
        assert!(!out.status.success(), "must fail:\n{}", output_text(&out));
        assert!(
            error.contains(model) && field.is_none_or(|f| error.contains(f)),
            "the error line must name {model} {field:?}:\n{}",
            output_text(&out)
        );
        assert_same_tables(&snapshot(&db), &before, "after a refused load");
        assert!(
            !tmp.path().join("restored/media").exists(),
            "storages restored by a refused load"
        );
        assert!(archive.is_file());
    }
}

#[test]
fn reference_archive_loads_whole_with_loaddata_for_auth_and_sites() {
    let tmp = tempdir();
    let (archive, checksum) = reference_archive("data_storages.tar.gz", tmp.path());
    let archive_arg = archive.to_str().unwrap();

    let oracle = Site::new(tmp.path().join("oracle"));
    oracle.manage(&[
        "diskette_load",
        archive_arg,
        "--keep",
        "--checksum",
        &checksum,
    ]);

    let dst = Site::new(tmp.path().join("dst"));
    let config = write_config(
        tmp.path(),
        "diskette.toml",
        &format!(
            r#"
[data]
database_url = {db}

[load]
storages_basepath = {base}

[[apps]]
name = "django.contrib.sites"
filename = "djangocontribsites.json"
load_command = {loaddata}

[[apps]]
name = "django.contrib.auth"
filename = "djangocontribauth.json"
load_command = {loaddata}

[[apps]]
name = "blog"
models = ["blog"]
"#,
            db = sqlite_url(&dst.db()),
            base = q(&dst.dir),
            loaddata = dst.manage_argv(&["loaddata", "{file}"]),
        ),
    );
    diskette_ok(&config, &["load", archive_arg, "--checksum", &checksum]);

    let (columns, sites) = table(&dst.db(), "django_site");
    let domain = columns.iter().position(|c| c == "domain").unwrap();
    assert_eq!(sites[0][domain], Value::Text("peer.example.test".into()));
    assert_eq!(table(&dst.db(), "auth_user").1.len(), 3);
    assert_eq!(table(&dst.db(), "auth_group_permissions").1.len(), 2);
    assert_eq!(table(&dst.db(), "blog_article").1.len(), 36);
    assert_same_tables(
        &instants(snapshot(&dst.db())),
        &instants(snapshot(&oracle.db())),
        "ours (left) vs original (right)",
    );
    assert_eq!(tree(&dst.media()), tree(&oracle.media()));
    assert_eq!(
        tree(&dst.media()).len(),
        16 + 10,
        "16 files in 10 directories"
    );
}

/// The reference archive (sites, auth with natural keys and many-to-many
/// lists, blog) loads with the built-in engine alone, no `[data] labels`
/// given, into a freshly migrated site: the same rows as `diskette_load`.
#[test]
fn reference_archive_loads_whole_with_the_sql_engine() {
    let tmp = tempdir();
    let (archive, checksum) = reference_archive("data_storages.tar.gz", tmp.path());
    let archive_arg = archive.to_str().unwrap();
    let oracle = Site::new(tmp.path().join("oracle"));
    oracle.manage(&["diskette_load", archive_arg, "--keep"]);

    let dst = Site::new(tmp.path().join("dst"));
    let config = write_config(
        tmp.path(),
        "diskette.toml",
        &format!(
            "[data]\ndatabase_url = {}\n\n[load]\nstorages_basepath = {}\n",
            sqlite_url(&dst.db()),
            q(&dst.dir)
        ),
    );
    diskette_ok(&config, &["load", archive_arg, "--checksum", &checksum]);
    assert_eq!(table(&dst.db(), "auth_group_permissions").1.len(), 2);
    assert_same_tables(
        &instants(snapshot(&dst.db())),
        &instants(snapshot(&oracle.db())),
        "ours (left) vs original (right)",
    );
}

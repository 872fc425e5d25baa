//! The engine against small SQLite databases of its own.

use std::path::Path;

use rusqlite::types::Value as SqlValue;

use super::*;
use crate::engine::resolved::Table;
use crate::progress::Silent;

/// Dump `tables` of `conn` as the engine does for a definition.
fn dump(conn: &rusqlite::Connection, tables: &[Table], out: &Path) -> Result<DumpStats> {
    let catalog = Catalog::read(conn, &Default::default(), &Default::default())?;
    dump_tables(conn, &catalog, tables, DumpFormat::default(), out, &Silent)
}

fn db(dir: &Path) -> rusqlite::Connection {
    let conn = rusqlite::Connection::open(dir.join("app.db")).unwrap();
    conn.execute_batch(
        "CREATE TABLE blog_category (id INTEGER PRIMARY KEY, name TEXT NOT NULL);
         CREATE TABLE blog_article (id INTEGER PRIMARY KEY, title TEXT, score REAL, raw BLOB,
             category_id INTEGER REFERENCES blog_category(id) DEFERRABLE INITIALLY DEFERRED);",
    )
    .unwrap();
    conn
}

fn config(dir: &Path) -> Config {
    Config::from_toml(
        "[data]\ndatabase_url = \"sqlite://app.db\"\n",
        dir,
        Vec::new(),
    )
    .unwrap()
}

#[test]
fn values_round_trip_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let conn = db(dir.path());
    conn.execute_batch("INSERT INTO blog_category VALUES (1, 'Café ☕ \"quoted\"');")
        .unwrap();
    conn.execute(
        "INSERT INTO blog_article VALUES (?1, ?2, ?3, ?4, 1)",
        rusqlite::params![i64::MAX, "t\n\u{0}x", 0.1f64 + 0.2, vec![0u8, 255, 7]],
    )
    .unwrap();
    conn.execute(
        "INSERT INTO blog_article VALUES (?1, NULL, ?2, NULL, NULL)",
        rusqlite::params![i64::MIN, 1e300f64],
    )
    .unwrap();
    let tables = vec![
        Table::new("blog_category", &Default::default()),
        Table::new("blog_article", &Default::default()),
    ];
    let out = dir.path().join("blog.json");
    let stats = dump(&conn, &tables, &out).unwrap();
    assert_eq!(stats.rows, 3);
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(
        text.starts_with(
            r#"[{"model": "blog.category", "pk": 1, "fields": {"name": "Café ☕ \"quoted\""}}, "#
        ),
        "{text}"
    );
    assert!(!text.contains('\n'));

    let before: Vec<Vec<SqlValue>> = all_rows(&conn, "blog_article");
    conn.execute_batch("DELETE FROM blog_article; DELETE FROM blog_category;")
        .unwrap();
    drop(conn);
    let cfg = config(dir.path());
    let files = [DataFile {
        name: "data/blog.json".into(),
        path: out,
    }];
    let pending = load_fixtures(&cfg, &files, &Silent).unwrap();
    assert_eq!(pending.rows, 3);
    pending.commit().unwrap();
    let conn = rusqlite::Connection::open(dir.path().join("app.db")).unwrap();
    assert_eq!(all_rows(&conn, "blog_article"), before);
}

fn all_rows(conn: &rusqlite::Connection, table: &str) -> Vec<Vec<SqlValue>> {
    let mut stmt = conn
        .prepare(&format!("SELECT * FROM {table} ORDER BY 1"))
        .unwrap();
    let n = stmt.column_count();
    stmt.query_map([], |r| (0..n).map(|i| r.get::<_, SqlValue>(i)).collect())
        .unwrap()
        .collect::<std::result::Result<_, _>>()
        .unwrap()
}

#[test]
fn django_columns_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let conn = rusqlite::Connection::open(dir.path().join("app.db")).unwrap();
    conn.execute_batch(
        "CREATE TABLE blog_post (id integer NOT NULL PRIMARY KEY AUTOINCREMENT, created datetime NOT NULL,
             published bool NOT NULL, note text);
         INSERT INTO blog_post VALUES (1, '2024-01-01 15:08:00', 1, '2024-01-01 15:08:00'),
                                      (2, '2024-06-30 23:59:59.120000', 0, NULL);",
    )
    .unwrap();
    let out = dir.path().join("blog.json");
    let tables = vec![Table::new("blog_post", &Default::default())];
    dump(&conn, &tables, &out).unwrap();
    let text = std::fs::read_to_string(&out).unwrap();
    assert_eq!(
        text,
        r#"[{"model": "blog.post", "pk": 1, "fields": {"created": "2024-01-01T15:08:00Z", "published": true, "note": "2024-01-01 15:08:00"}}, {"model": "blog.post", "pk": 2, "fields": {"created": "2024-06-30T23:59:59.120Z", "published": false, "note": null}}]"#
    );
    let before = all_rows(&conn, "blog_post");
    conn.execute_batch("DELETE FROM blog_post").unwrap();
    drop(conn);
    let cfg = config(dir.path());
    let files = [DataFile {
        name: "data/blog.json".into(),
        path: out,
    }];
    load_fixtures(&cfg, &files, &Silent)
        .unwrap()
        .commit()
        .unwrap();
    let conn = rusqlite::Connection::open(dir.path().join("app.db")).unwrap();
    assert_eq!(all_rows(&conn, "blog_post"), before);
}

#[test]
fn unmappable_fixture_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let conn = db(dir.path());
    conn.execute_batch("INSERT INTO blog_category VALUES (9, 'kept');")
        .unwrap();
    drop(conn);
    let fixture = dir.path().join("f.json");
    std::fs::write(
        &fixture,
        r#"[{"model": "blog.category", "pk": 1, "fields": {"name": "News"}},
            {"model": "blog.article", "pk": 1, "fields": {"title": "x", "category": 1, "tags": [1, 2]}}]"#,
    )
    .unwrap();
    let cfg = config(dir.path());
    let files = [DataFile {
        name: "data/blog.json".into(),
        path: fixture,
    }];
    let err = load_fixtures(&cfg, &files, &Silent)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("blog.article") && err.contains("tags"),
        "{err}"
    );
    let conn = rusqlite::Connection::open(dir.path().join("app.db")).unwrap();
    let n: i64 = conn
        .query_row("SELECT COUNT(*) FROM blog_category", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 1);
}

#[test]
fn field_names_map_to_fk_columns_and_fk_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    drop(db(dir.path()));
    let fixture = dir.path().join("f.json");
    std::fs::write(
        &fixture,
        r#"[{"model": "blog.article", "pk": 1, "fields": {"title": "x", "category": 5}}]"#,
    )
    .unwrap();
    let cfg = config(dir.path());
    let files = [DataFile {
        name: "data/blog.json".into(),
        path: fixture.clone(),
    }];
    let err = load_fixtures(&cfg, &files, &Silent)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("foreign key"), "{err}");
    std::fs::write(
        &fixture,
        r#"[{"model": "blog.article", "pk": 1, "fields": {"title": "x", "category": 5}},
            {"model": "Blog.Category", "pk": 5, "fields": {"name": "later"}}]"#,
    )
    .unwrap();
    load_fixtures(&cfg, &files, &Silent)
        .unwrap()
        .commit()
        .unwrap();
}

/// A small Django-shaped database: content types, a custom-named contrib
/// table, an app label with an underscore, a through table.
fn django_db(dir: &Path) -> rusqlite::Connection {
    let conn = rusqlite::Connection::open(dir.join("app.db")).unwrap();
    conn.execute_batch(
        r#"CREATE TABLE django_migrations (id integer PRIMARY KEY, app text);
        CREATE TABLE django_content_type (id integer PRIMARY KEY, app_label text, model text);
        INSERT INTO django_content_type VALUES (1, 'shop_app', 'product'), (2, 'shop_app', 'tag'),
            (3, 'sites', 'site'), (4, 'shop_app', 'legacy');
        CREATE TABLE django_site (id integer PRIMARY KEY, domain text, name text);
        CREATE TABLE shop_app_tag (id integer PRIMARY KEY, name text);
        CREATE TABLE shop_app_product (id integer PRIMARY KEY, name text);
        CREATE TABLE shop_app_product_tags (id integer PRIMARY KEY,
            product_id integer REFERENCES shop_app_product (id) DEFERRABLE INITIALLY DEFERRED,
            tag_id integer REFERENCES shop_app_tag (id) DEFERRABLE INITIALLY DEFERRED);
        CREATE UNIQUE INDEX pt ON shop_app_product_tags (product_id, tag_id);
        CREATE TABLE legacy_things (id integer PRIMARY KEY);
        INSERT INTO shop_app_tag VALUES (1, 'red'), (2, 'blue');
        INSERT INTO shop_app_product VALUES (1, 'P');
        INSERT INTO shop_app_product_tags VALUES (7, 1, 2), (8, 1, 1);"#,
    )
    .unwrap();
    conn
}

#[test]
fn catalog_reads_labels_through_tables_and_order() {
    let dir = tempfile::tempdir().unwrap();
    let conn = django_db(dir.path());
    let catalog = Catalog::read(&conn, &Default::default(), &Default::default()).unwrap();
    let labels: Vec<(&str, &str, bool)> = catalog
        .models
        .iter()
        .map(|m| (m.table.as_str(), m.label.as_str(), m.through.is_some()))
        .collect();
    assert_eq!(
        labels,
        [
            ("shop_app_product_tags", "shop_app.product_tags", true),
            ("shop_app_product", "shop_app.product", false),
            ("shop_app_tag", "shop_app.tag", false),
            ("django_site", "sites.site", false),
            ("django_content_type", "contenttypes.contenttype", false),
        ]
    );
    assert_eq!(catalog.unmatched_content_types, ["shop_app.legacy"]);
    assert_eq!(catalog.unlabeled_tables, ["legacy_things"]);

    // The links are a list on the product, by target key.
    let out = dir.path().join("shop.json");
    let tables = [Table::new("shop_app_product", &Default::default())];
    dump(&conn, &tables, &out).unwrap();
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        r#"[{"model": "shop_app.product", "pk": 1, "fields": {"name": "P", "tags": [1, 2]}}]"#
    );
    // Loading replaces the links with the list: 8 (1 → 1) stays, 7 goes.
    std::fs::write(
        &out,
        r#"[{"model": "shop_app.product", "pk": 1, "fields": {"name": "P", "tags": [1]}}]"#,
    )
    .unwrap();
    drop(conn);
    let files = [DataFile {
        name: "data/shop.json".into(),
        path: out,
    }];
    load_fixtures(&config(dir.path()), &files, &Silent)
        .unwrap()
        .commit()
        .unwrap();
    let conn = rusqlite::Connection::open(dir.path().join("app.db")).unwrap();
    assert_eq!(
        all_rows(&conn, "shop_app_product_tags"),
        [[
            SqlValue::Integer(8),
            SqlValue::Integer(1),
            SqlValue::Integer(1)
        ]]
    );
}

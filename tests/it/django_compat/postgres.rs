//! The built-in engine on a Django site running on PostgreSQL (the test
//! project with `DJANGO_DATABASE_URL`, through psycopg): our fixtures are
//! `dumpdata`'s, value for value; Diskette 0.6.0's `diskette_load` (which
//! runs `loaddata`) and our load give the same tables from our archive as
//! from its own; the application inserts after our load; an archive of an
//! SQLite site loads into PostgreSQL and dumps back the same.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

use super::fidelity::{Site, data_files, definitions, numbers, our_config_url, our_dump, our_load};
use crate::support::services::{PgDatabase, postgres_database, psql};
use crate::support::{self as common};

/// Auto-created through tables: `loaddata` adds links in the order of a
/// Python set, so their ids are no data.
const THROUGH: &[&str] = &[
    "auth_group_permissions",
    "auth_user_groups",
    "auth_user_user_permissions",
    "shop_app_product_tags",
    "shop_app_product_related",
];

/// Every table but `django_migrations`, as sorted rows printed by psql.
fn pg_tables(url: &str) -> BTreeMap<String, Vec<String>> {
    let names = psql(
        url,
        "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1",
    );
    let mut out = BTreeMap::new();
    for name in names.lines().filter(|n| *n != "django_migrations") {
        let skip_id = if THROUGH.contains(&name) {
            " AND column_name <> 'id'"
        } else {
            ""
        };
        let columns = psql(
            url,
            &format!(
                "SELECT string_agg(quote_ident(column_name), ', ' ORDER BY ordinal_position) \
                 FROM information_schema.columns WHERE table_schema = 'public' \
                 AND table_name = '{name}'{skip_id}"
            ),
        );
        let text = psql(url, &format!("SELECT {} FROM {name}", columns.trim()));
        let mut rows: Vec<String> = text.lines().map(str::to_string).collect();
        rows.sort();
        out.insert(name.to_string(), rows);
    }
    out
}

fn assert_same_pg_tables(left: &str, right: &str, what: &str) {
    let (left, right) = (pg_tables(left), pg_tables(right));
    assert_eq!(
        left.keys().collect::<Vec<_>>(),
        right.keys().collect::<Vec<_>>(),
        "{what}: tables"
    );
    for (name, rows) in &left {
        assert_eq!(rows, &right[name], "{what}: table {name} (left, right)");
    }
}

/// A fresh PostgreSQL database, or `None` (the test then says it skipped).
fn database() -> Option<PgDatabase> {
    postgres_database()
}

/// Every fixture of both archives holds the same records, values and their
/// JSON types exactly (PostgreSQL keeps a decimal's scale: `"12.50"`).
fn assert_exact_fixtures(theirs: &Path, ours: &Path, what: &str) {
    let (theirs, ours) = (data_files(theirs), data_files(ours));
    assert_eq!(
        theirs.keys().collect::<Vec<_>>(),
        ours.keys().collect::<Vec<_>>(),
        "{what}: data files"
    );
    for (name, t) in &theirs {
        let t: Vec<Value> = serde_json::from_slice(t).unwrap();
        let o: Vec<Value> = serde_json::from_slice(&ours[name])
            .unwrap_or_else(|e| panic!("{what}: our {name} is not JSON: {e}"));
        assert!(!t.is_empty(), "{what}: {name} is empty, it tests nothing");
        assert_eq!(o.len(), t.len(), "{what}: records of {name}");
        for (i, (a, b)) in t.iter().zip(&o).enumerate() {
            assert_eq!(b, a, "{what}: {name}, record {i} (ours, theirs)");
        }
    }
}

#[test]
fn our_fixtures_of_a_postgres_site_are_dumpdatas() {
    let Some(db) = database() else { return };
    let tmp = common::temp_dir();
    let site = Site::on(tmp.path().join("site"), Some(&db.url)).seed();
    for natural in [false, true] {
        let what = format!("PostgreSQL, natural keys {natural}");
        let work = tmp.path().join(format!("natural-{natural}"));
        let defs = definitions(natural);
        let theirs = site.diskette_dump(&defs, &work.join("theirs"), &[]);
        let ours = our_dump(&our_config_url(&work, &site.url(), &defs, ""), &[]);
        assert_exact_fixtures(&theirs, &ours, &what);
    }
}

#[test]
fn our_postgres_archive_loads_with_diskette_load_and_ours_and_the_app_inserts_after() {
    let Some(src_db) = database() else { return };
    let tmp = common::temp_dir();
    let src = Site::on(tmp.path().join("src"), Some(&src_db.url)).seed();
    for natural in [false, true] {
        let what = format!("PostgreSQL, natural keys {natural}");
        let work = tmp.path().join(format!("natural-{natural}"));
        let defs = definitions(natural);
        let theirs = src.diskette_dump(&defs, &work.join("theirs"), &[]);
        let ours = our_dump(&our_config_url(&work, &src.url(), &defs, ""), &[]);

        // Django's own round trip is the reference.
        let reference_db = database().expect("a server");
        let reference = Site::on(work.join("reference"), Some(&reference_db.url));
        reference.manage(&["diskette_load", theirs.to_str().unwrap(), "--keep"]);

        let theirs_of_ours_db = database().expect("a server");
        let theirs_of_ours = Site::on(work.join("a"), Some(&theirs_of_ours_db.url));
        theirs_of_ours.manage(&["diskette_load", ours.to_str().unwrap(), "--keep"]);
        assert_same_pg_tables(
            &theirs_of_ours.url(),
            &reference.url(),
            &format!("{what}: diskette_load of ours"),
        );

        let ours_of_ours_db = database().expect("a server");
        let ours_of_ours = Site::on(work.join("b"), Some(&ours_of_ours_db.url));
        let config = our_config_url(&work.join("b-config"), &ours_of_ours.url(), &defs, "");
        let out = our_load(&config, &ours, &[]);
        assert!(
            out.status.success(),
            "{what}: our load:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_same_pg_tables(
            &ours_of_ours.url(),
            &reference.url(),
            &format!("{what}: our load of ours"),
        );

        // The sequences follow the loaded keys: new rows get the next ones.
        let created = ours_of_ours.manage(&[
            "shell",
            "-c",
            "from shop_app.models import Tag; from django.contrib.auth.models import Group; \
             print(Tag.objects.create(name='new').pk, Group.objects.create(name='new').pk)",
        ]);
        assert_eq!(created.trim().lines().last(), Some("5 4"), "{what}");
    }
}

#[test]
fn an_sqlite_archive_loads_into_postgres_and_dumps_back_the_same() {
    let Some(db) = database() else { return };
    let tmp = common::temp_dir();
    let sqlite = Site::seeded(tmp.path().join("sqlite"));
    let defs = definitions(true);
    let from_sqlite = our_dump(
        &our_config_url(&tmp.path().join("from-sqlite"), &sqlite.url(), &defs, ""),
        &[],
    );
    let pg = Site::on(tmp.path().join("pg"), Some(&db.url));
    let into_pg = our_config_url(&tmp.path().join("into-pg"), &pg.url(), &defs, "");
    let out = our_load(&into_pg, &from_sqlite, &[]);
    assert!(
        out.status.success(),
        "load into PostgreSQL:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let back = our_dump(&into_pg, &[]);
    let (first, back) = (data_files(&from_sqlite), data_files(&back));
    assert_eq!(
        first.keys().collect::<Vec<_>>(),
        back.keys().collect::<Vec<_>>()
    );
    for (name, text) in &first {
        let first: Value = serde_json::from_slice(text).unwrap();
        let back: Value = serde_json::from_slice(&back[name]).unwrap();
        assert!(first.as_array().is_some_and(|a| !a.is_empty()), "{name}");
        assert_eq!(same_form(&back), same_form(&first), "{name} (back, first)");
    }
}

/// A fixture in one form for values Django's own round trip changes:
/// decimals (SQLite keeps no scale) and a zero millisecond fraction
/// (`"15:08:00.000Z"` is written for 500 microseconds; loaded, it is zero
/// microseconds, written without a fraction).
fn same_form(v: &Value) -> Value {
    match numbers(v) {
        Value::String(s) => Value::String(s.replacen(".000Z", "Z", 1)),
        Value::Array(items) => Value::Array(items.iter().map(same_form).collect()),
        Value::Object(map) => map.iter().map(|(k, v)| (k.clone(), same_form(v))).collect(),
        other => other,
    }
}

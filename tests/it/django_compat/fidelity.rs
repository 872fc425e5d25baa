//! The built-in engine against Django itself: for each application
//! definition, with and without natural keys, our fixture holds what
//! Diskette 0.6.0's `diskette_dump` (Django's `dumpdata`) writes, record for
//! record; our archives load with `diskette_load`, Diskette's load with ours,
//! and both give the tables Django's own round trip gives.
//!
//! The site is `tests/django` with its `shop_app` app (an app label with an
//! underscore, foreign keys, many-to-many fields, a natural key, a custom
//! table name, fields of every kind), filled by `manage.py seed_shop`. The
//! Python side needs the virtualenv of `tests/django/setup_venv.sh` (see
//! `tests/django/README.md`); the tests fail, never skip, without it.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use rusqlite::types::Value as Sql;
use serde_json::{Value, json};

use super::site::{PROJECT, copy_project, venv_python};
use crate::support as common;

// ---------------------------------------------------------------------------
// Django sites.

pub(super) struct Site {
    pub(super) dir: PathBuf,
    /// A PostgreSQL database the site runs on, instead of its SQLite file.
    database: Option<String>,
}

impl Site {
    /// A fresh copy of the project, migrated.
    pub(super) fn new(dir: PathBuf) -> Site {
        Site::on(dir, None)
    }

    /// A fresh copy of the project, migrated, on this PostgreSQL database.
    pub(super) fn on(dir: PathBuf, database: Option<&str>) -> Site {
        copy_project(Path::new(PROJECT), &dir);
        let site = Site {
            dir,
            database: database.map(str::to_string),
        };
        site.manage(&["migrate", "--no-input", "-v", "0"]);
        site
    }

    pub(super) fn seeded(dir: PathBuf) -> Site {
        Site::new(dir).seed()
    }

    pub(super) fn seed(self) -> Site {
        self.manage(&["seed_shop"]);
        self
    }

    pub(super) fn db(&self) -> PathBuf {
        self.dir.join("db.sqlite3")
    }

    /// The `[data] database_url` of the site's database.
    pub(super) fn url(&self) -> String {
        self.database
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", self.db().display()))
    }

    pub(super) fn manage(&self, args: &[&str]) -> String {
        let mut cmd = Command::new(venv_python());
        match &self.database {
            Some(url) => cmd.env("DJANGO_DATABASE_URL", url),
            None => cmd.env_remove("DJANGO_DATABASE_URL"),
        };
        let out = cmd
            .current_dir(&self.dir)
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .env_remove("DJANGO_SETTINGS_MODULE")
            .env_remove("DJANGO_TIME_ZONE")
            .arg("manage.py")
            .args(args)
            .output()
            .expect("run manage.py");
        assert!(
            out.status.success(),
            "manage.py {} failed:\n{}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// `diskette_dump` of data only, with these definitions; the archive.
    pub(super) fn diskette_dump(&self, defs: &[Def], into: &Path, extra: &[&str]) -> PathBuf {
        fs::create_dir_all(into).unwrap();
        let appconf = into.join("appconf.json");
        let list: Vec<Value> = defs.iter().map(Def::diskette).collect();
        fs::write(&appconf, serde_json::to_string(&list).unwrap()).unwrap();
        let mut args = vec![
            "diskette_dump",
            "--no-storages",
            "--appconf",
            appconf.to_str().unwrap(),
            "--destination",
            into.to_str().unwrap(),
            "--filename",
            "theirs.tar.gz",
        ];
        args.extend(extra);
        self.manage(&args);
        into.join("theirs.tar.gz")
    }
}

// ---------------------------------------------------------------------------
// Application definitions, written for both.

#[derive(Clone, Default)]
pub(super) struct Def {
    name: &'static str,
    models: &'static [&'static str],
    excludes: &'static [&'static str],
    natural_foreign: bool,
    natural_primary: bool,
    use_base_manager: bool,
    is_drain: bool,
}

impl Def {
    fn options(&self) -> serde_json::Map<String, Value> {
        let mut o = serde_json::Map::new();
        if !self.models.is_empty() {
            o.insert("models".into(), json!(self.models));
        }
        if !self.excludes.is_empty() {
            o.insert("excludes".into(), json!(self.excludes));
        }
        for (key, on) in [
            ("natural_foreign", self.natural_foreign),
            ("natural_primary", self.natural_primary),
            ("use_base_manager", self.use_base_manager),
            ("is_drain", self.is_drain),
        ] {
            if on {
                o.insert(key.into(), json!(true));
            }
        }
        o
    }

    fn diskette(&self) -> Value {
        json!([self.name, self.options()])
    }

    fn toml(&self) -> String {
        let mut text = format!("\n[[apps]]\nname = {}\n", json!(self.name));
        for (k, v) in self.options() {
            text.push_str(&format!("{k} = {v}\n"));
        }
        text
    }
}

/// The definitions of a site, natural keys where Diskette's documentation
/// puts them, or nowhere.
pub(super) fn definitions(natural: bool) -> Vec<Def> {
    vec![
        Def {
            name: "django.contrib.sites",
            models: &["sites"],
            natural_foreign: natural,
            ..Def::default()
        },
        Def {
            name: "django.contrib.auth",
            models: &["auth.Group", "auth.User"],
            natural_foreign: natural,
            ..Def::default()
        },
        Def {
            name: "shop",
            models: &["shop_app"],
            natural_foreign: natural,
            natural_primary: natural,
            // `dumpdata --all` for Diskette; accepted, with nothing to change, by us.
            use_base_manager: true,
            ..Def::default()
        },
        Def {
            name: "catalogue",
            models: &["shop_app.Product", "shop_app.Supplier", "shop_app.Review"],
            natural_foreign: natural,
            natural_primary: natural,
            ..Def::default()
        },
        Def {
            name: "everything else",
            is_drain: true,
            excludes: &["blog.Article"],
            natural_foreign: natural,
            ..Def::default()
        },
    ]
}

/// Our configuration for `db` with these definitions.
fn our_config(dir: &Path, db: &Path, defs: &[Def], extra_data: &str) -> PathBuf {
    our_config_url(dir, &format!("sqlite://{}", db.display()), defs, extra_data)
}

/// Our configuration for the database at `url` with these definitions.
pub(super) fn our_config_url(dir: &Path, url: &str, defs: &[Def], extra_data: &str) -> PathBuf {
    let mut text = format!(
        "[data]\ndatabase_url = {}\nlabels = {{ legacy_archived = \"shop_app.archived\" }}\n{extra_data}\n\
         [data.natural_keys]\n\"shop_app.supplier\" = [\"slug\"]\n\n[dump]\npath = \"ours\"\n\
         filename = \"ours{{features}}.tar.gz\"\n\n[load]\nstorages_basepath = \"restored\"\n",
        json!(url)
    );
    for d in defs {
        text.push_str(&d.toml());
    }
    common::write_config(dir, &text)
}

pub(super) fn our_dump(config: &Path, args: &[&str]) -> PathBuf {
    let mut all = vec!["dump", "--no-storages"];
    all.extend(args);
    let out = common::diskette(config, &all).output().unwrap();
    assert!(
        out.status.success(),
        "diskette dump failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    config.parent().unwrap().join("ours/ours_data.tar.gz")
}

pub(super) fn our_load(config: &Path, archive: &Path, args: &[&str]) -> std::process::Output {
    let mut all = vec!["load", archive.to_str().unwrap(), "--no-storages"];
    all.extend(args);
    common::diskette(config, &all).output().unwrap()
}

/// The data files of an archive: name → bytes.
pub(super) fn data_files(archive: &Path) -> BTreeMap<String, Vec<u8>> {
    let gz = flate2::read::GzDecoder::new(fs::File::open(archive).unwrap());
    let mut tar = tar::Archive::new(gz);
    let mut out = BTreeMap::new();
    for entry in tar.entries().unwrap() {
        let mut entry = entry.unwrap();
        let name = entry.path().unwrap().display().to_string();
        if let Some(name) = name.strip_prefix("data/").filter(|n| !n.is_empty()) {
            let mut content = Vec::new();
            entry.read_to_end(&mut content).unwrap();
            out.insert(name.to_string(), content);
        }
    }
    out
}

/// A record with every decimal string in one form: SQLite's `decimal`
/// columns keep no scale (`"12.5"` for Django's `"12.50"`). Strings stay
/// strings and numbers stay numbers, so a decimal written as a JSON number
/// differs from Django's string.
pub(super) fn numbers(v: &Value) -> Value {
    match v {
        Value::String(s) => Value::String(decimal(s).unwrap_or_else(|| s.clone())),
        Value::Array(items) => Value::Array(items.iter().map(numbers).collect()),
        Value::Object(map) => map.iter().map(|(k, v)| (k.clone(), numbers(v))).collect(),
        other => other.clone(),
    }
}

/// `"-012.50"` → `"-12.5"`; `None` when `s` is no plain decimal.
fn decimal(s: &str) -> Option<String> {
    let (sign, digits) = s.strip_prefix('-').map_or(("", s), |d| ("-", d));
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    let plain = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
    if int.is_empty() || !plain(int) || !plain(frac) {
        return None;
    }
    let int = match int.trim_start_matches('0') {
        "" => "0",
        i => i,
    };
    let frac = frac.trim_end_matches('0');
    let zero = int == "0" && frac.is_empty();
    let sign = if zero { "" } else { sign };
    Some(match frac {
        "" => format!("{sign}{int}"),
        f => format!("{sign}{int}.{f}"),
    })
}

/// Each fixture of `ours` holds the records of `theirs`, in the same order.
pub(super) fn assert_same_fixtures(theirs: &Path, ours: &Path, what: &str) {
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
        let labels = |f: &[Value]| f.iter().map(|r| r["model"].clone()).collect::<Vec<_>>();
        assert_eq!(labels(&o), labels(&t), "{what}: models of {name}");
        assert!(!t.is_empty(), "{what}: {name} is empty, it tests nothing");
        for (i, (a, b)) in t.iter().zip(&o).enumerate() {
            assert_eq!(
                numbers(b),
                numbers(a),
                "{what}: {name}, record {i} (ours, theirs)"
            );
        }
    }
}

// ---------------------------------------------------------------------------
// Comparing databases.

type Tables = BTreeMap<String, Vec<Vec<Sql>>>;

/// Every table but `django_migrations` and `sqlite_sequence`, as sorted rows.
/// Through tables are compared as pairs: `loaddata` adds links in the order
/// of a Python set, so their ids are no data. Datetimes and times are cut to
/// milliseconds, as Django's JSON form carries them.
fn tables(db: &Path) -> Tables {
    let conn = rusqlite::Connection::open(db).unwrap();
    let names: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let through = [
        "auth_group_permissions",
        "auth_user_groups",
        "auth_user_user_permissions",
        "shop_app_product_tags",
        "shop_app_product_related",
    ];
    let mut out = Tables::new();
    for name in names {
        if name == "django_migrations" || name == "sqlite_sequence" {
            continue;
        }
        let mut stmt = conn.prepare(&format!("SELECT * FROM \"{name}\"")).unwrap();
        let n = stmt.column_count();
        let skip = usize::from(through.contains(&name.as_str()));
        let mut rows: Vec<Vec<Sql>> = stmt
            .query_map([], |r| (skip..n).map(|i| r.get::<_, Sql>(i)).collect())
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        for row in &mut rows {
            for v in row.iter_mut() {
                if let Sql::Text(t) = v {
                    *v = Sql::Text(cut_to_millis(t));
                }
            }
        }
        rows.sort_by_key(|r| format!("{r:?}"));
        out.insert(name, rows);
    }
    out
}

/// `2024-03-05 12:34:56.999999` → `2024-03-05 12:34:56.999`; `.000500` → none.
fn cut_to_millis(text: &str) -> String {
    let Some((whole, frac)) = text.rsplit_once('.') else {
        return text.to_string();
    };
    let time_like = whole.len() >= 8 && whole.as_bytes()[whole.len() - 3] == b':';
    if !time_like || frac.len() != 6 || !frac.bytes().all(|c| c.is_ascii_digit()) {
        return text.to_string();
    }
    match &frac[..3] {
        "000" => whole.to_string(),
        ms => format!("{whole}.{ms}"),
    }
}

fn assert_same_tables(left: &Tables, right: &Tables, what: &str) {
    assert_eq!(
        left.keys().collect::<Vec<_>>(),
        right.keys().collect::<Vec<_>>(),
        "{what}: tables"
    );
    for (name, rows) in left {
        assert_eq!(rows, &right[name], "{what}: table {name} (left, right)");
    }
}

// ---------------------------------------------------------------------------

#[test]
fn decimals_compare_by_value_and_json_types_must_match() {
    let same = |a: Value, b: Value| numbers(&a) == numbers(&b);
    assert!(same(json!({"p": "12.50"}), json!({"p": "12.5"})));
    assert!(same(json!(["-0.0", "007"]), json!(["0", "7"])));
    assert!(!same(json!({"p": "12.50"}), json!({"p": 12.5})));
    assert!(!same(json!({"p": "12"}), json!({"p": 12})));
    assert!(!same(json!("12.5"), json!("12.51")));
    assert!(!same(json!("1e3"), json!("1000")));
}

#[test]
fn our_fixtures_hold_what_diskette_dump_writes() {
    let tmp = common::temp_dir();
    let site = Site::seeded(tmp.path().join("site"));
    for natural in [false, true] {
        let what = if natural {
            "natural keys"
        } else {
            "primary keys"
        };
        let work = tmp.path().join(format!("natural-{natural}"));
        let defs = definitions(natural);
        let theirs = site.diskette_dump(&defs, &work.join("theirs"), &[]);
        let config = our_config(&work, &site.db(), &defs, "");
        assert_same_fixtures(&theirs, &our_dump(&config, &[]), what);
    }
}

/// Where a table's columns are in its model's field order (no foreign key
/// moved to the end by the migration), the fixture is Django's byte for
/// byte, indented or not: natural primary keys, many-to-many lists of
/// natural keys.
#[test]
fn fixtures_are_dumpdata_byte_for_byte() {
    let tmp = common::temp_dir();
    let site = Site::seeded(tmp.path().join("site"));
    let defs = [
        Def {
            name: "shop",
            models: &["shop_app.Archived", "shop_app.Supplier", "shop_app.Tag"],
            natural_foreign: true,
            natural_primary: true,
            ..Def::default()
        },
        Def {
            name: "groups",
            models: &["auth.Group"],
            natural_foreign: true,
            ..Def::default()
        },
    ];
    for indent in [None, Some("2")] {
        let work = tmp.path().join(format!("indent-{indent:?}"));
        let extra: Vec<&str> = indent.map(|n| vec!["--indent", n]).unwrap_or_default();
        let theirs = site.diskette_dump(&defs, &work.join("theirs"), &extra);
        let config = our_config(&work, &site.db(), &defs, "");
        let ours = our_dump(&config, &extra);
        let (t, o) = (data_files(&theirs), data_files(&ours));
        for name in ["shop.json", "groups.json"] {
            assert_eq!(
                String::from_utf8_lossy(&o[name]),
                String::from_utf8_lossy(&t[name]),
                "{name}, indent {indent:?}"
            );
        }
    }
}

/// Both loaders, on both archives, give the tables of Django's own round trip.
#[test]
fn archives_load_both_ways_into_the_same_tables() {
    let tmp = common::temp_dir();
    let src = Site::seeded(tmp.path().join("src"));
    // The drain excludes blog.Article: no archive holds it.
    let loaded = |db: &Path| {
        let mut t = tables(db);
        t.remove("blog_article");
        t
    };
    let source = loaded(&src.db());
    for natural in [false, true] {
        let what = if natural {
            "natural keys"
        } else {
            "primary keys"
        };
        let work = tmp.path().join(format!("natural-{natural}"));
        let defs = definitions(natural);
        let theirs = src.diskette_dump(&defs, &work.join("theirs"), &[]);
        let ours = our_dump(&our_config(&work, &src.db(), &defs, ""), &[]);

        // Diskette loads our archive.
        let a = Site::new(work.join("a"));
        a.manage(&["diskette_load", ours.to_str().unwrap(), "--keep"]);
        assert_same_tables(
            &loaded(&a.db()),
            &source,
            &format!("{what}: diskette_load of ours"),
        );

        // We load Diskette's archive, and ours.
        for (archive, name) in [(&theirs, "theirs"), (&ours, "ours")] {
            let b = Site::new(work.join(format!("b-{name}")));
            let config = our_config(&work.join(name), &b.db(), &defs, "");
            let out = our_load(&config, archive, &[]);
            assert!(
                out.status.success(),
                "{what}: our load of {name}:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert_same_tables(
                &loaded(&b.db()),
                &source,
                &format!("{what}: our load of {name}"),
            );
        }
    }
}

/// A fixture of its own, loaded by the built-in engine into `site`.
fn load_fixture(site: &Site, dir: &Path, fixture: &str, args: &[&str]) -> std::process::Output {
    let archive = dir.join("fixture.tar.gz");
    let manifest = common::manifest(Some(&["data/shop.json"]), None);
    common::write_tar_gz(
        &archive,
        &[
            ("data/shop.json", Some(fixture.as_bytes())),
            ("manifest.json", Some(manifest.as_bytes())),
        ],
    );
    let config = our_config(dir, &site.db(), &[], "");
    our_load(&config, &archive, args)
}

#[test]
fn loading_resolves_natural_keys_and_replaces_links() {
    let tmp = common::temp_dir();
    let site = Site::seeded(tmp.path().join("site"));
    // A supplier known by its natural key only (updated), a new one (inserted),
    // a product pointing at the new one, a group's permissions by natural key.
    let fixture = r#"[
        {"model": "shop_app.supplier", "fields": {"slug": "nord", "name": "Nord renamed"}},
        {"model": "shop_app.product", "pk": 2, "fields": {"name": "Table", "supplier": ["sud"],
            "price": "7.25", "created": "2024-01-01T15:08:00Z", "active": true,
            "tags": [[3]], "related": [1]}},
        {"model": "shop_app.supplier", "fields": {"slug": "sud", "name": "Sud"}},
        {"model": "auth.group", "pk": 3, "fields": {"name": "Auditors",
            "permissions": [["add_tag", "shop_app", "tag"], ["view_user", "auth", "user"]]}}
    ]"#;
    // `tags` holds a list as a key of a model without a natural key: refused.
    let out = load_fixture(&site, tmp.path(), fixture, &[]);
    assert!(!out.status.success());
    let error = String::from_utf8_lossy(&out.stderr);
    assert!(
        error.contains("shop_app.product")
            && error.contains("tags")
            && error.contains("shop_app.tag"),
        "{error}"
    );
    let before = tables(&site.db());
    let fixture = fixture.replace("[[3]]", "[3, 1]");
    let out = load_fixture(&site, tmp.path(), &fixture, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let query = "from shop_app.models import *; from django.contrib.auth.models import Group; \
        p = Product.objects.get(pk=2); \
        print(Supplier.objects.get(slug='nord').name, Supplier.objects.count(), p.supplier.slug, p.price, \
        sorted(p.tags.values_list('id', flat=True)), list(p.related.values_list('id', flat=True)), \
        sorted(Group.objects.get(pk=3).permissions.values_list('codename', flat=True)))";
    assert_eq!(
        site.manage(&["shell", "-c", query]).trim().lines().last(),
        Some("Nord renamed 4 sud 7.25 [1, 3] [1] ['add_tag', 'view_user']")
    );
    assert_ne!(tables(&site.db()), before);
}

#[test]
fn unresolvable_keys_and_unknown_fields_change_nothing() {
    let tmp = common::temp_dir();
    let site = Site::seeded(tmp.path().join("site"));
    let before = tables(&site.db());
    for (fixture, words) in [
        (
            r#"[{"model": "shop_app.tag", "pk": 9, "fields": {"name": "new"}},
                {"model": "shop_app.product", "pk": 1, "fields": {"supplier": ["nobody"]}}]"#,
            ["shop_app.product", "supplier", "nobody"],
        ),
        (
            r#"[{"model": "shop_app.tag", "pk": 9, "fields": {"name": "new"}},
                {"model": "auth.user", "pk": 1, "fields": {"groups": [["Nobody"]]}}]"#,
            ["auth.user", "groups", "Nobody"],
        ),
        (
            r#"[{"model": "shop_app.tag", "pk": 9, "fields": {"name": "new", "colour": "red"}}]"#,
            ["shop_app.tag", "colour", "ignorenonexistent"],
        ),
    ] {
        let out = load_fixture(&site, tmp.path(), fixture, &[]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let line = stderr.trim().lines().last().unwrap_or_default();
        assert!(!out.status.success(), "{fixture} loaded");
        assert!(
            words.iter().all(|w| line.contains(w)),
            "{words:?} not in {line}"
        );
        assert_same_tables(&tables(&site.db()), &before, "after a refused load");
    }
    // With --ignorenonexistent, the unknown field and model are skipped.
    let fixture = r#"[{"model": "shop_app.tag", "pk": 9, "fields": {"name": "new", "colour": "red"}},
                      {"model": "shop_app.gone", "pk": 1, "fields": {}}]"#;
    let out = load_fixture(&site, tmp.path(), fixture, &["--ignorenonexistent"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (_, tags) = tables(&site.db()).remove_entry("shop_app_tag").unwrap();
    assert!(tags.contains(&vec![Sql::Integer(9), Sql::Text("new".into())]));
}

/// Without `[data] labels`, the custom table is reported, not guessed.
#[test]
fn unmatched_content_types_and_tables_are_listed() {
    let tmp = common::temp_dir();
    let site = Site::seeded(tmp.path().join("site"));
    let config = common::write_config(
        tmp.path(),
        &format!(
            "[data]\ndatabase_url = {}\n\n[[apps]]\nname = \"shop\"\nmodels = [\"shop_app\"]\n\n\
             [[apps]]\nname = \"rest\"\nis_drain = true\n",
            json!(format!("sqlite://{}", site.db().display()))
        ),
    );
    for args in [&["apps"][..], &["dump", "--check"][..]] {
        let out = common::diskette(&config, args).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            text.contains("shop_app_product (shop_app.product)"),
            "{text}"
        );
        assert!(
            text.contains("shop_app_product_tags (shop_app.product_tags)"),
            "{text}"
        );
        assert!(!text.contains("django_migrations ("), "{text}");
        assert!(text.contains("django_site (sites.site)"), "{text}");
        let unmatched = text
            .lines()
            .find(|l| l.starts_with("Content types with no table"))
            .unwrap_or_default();
        assert!(unmatched.contains("shop_app.archived"), "{text}");
        let unlabeled = text
            .lines()
            .find(|l| l.starts_with("Tables with no model label"))
            .unwrap_or_default();
        assert!(unlabeled.contains("legacy_archived"), "{text}");
    }
}

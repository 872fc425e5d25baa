//! The options Diskette 0.6.0 users already have in their scripts, run on the
//! real binary: `dump --appconf`, `--storage`, `--storages-basepath`,
//! `--storages-exclude`, `--no-checksum`, and a fixed `--filename` that
//! replaces the earlier archive.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::path::Path;
use std::time::Duration;

use crate::support::{self, Run};

const LIMIT: Duration = Duration::from_secs(120);

fn run(site: &Path, args: &[&str]) -> Run {
    support::run(support::diskette(&site.join("diskette.toml"), args), LIMIT)
}

/// Regular files of a .tar.gz, by name.
fn files(archive: &Path) -> BTreeMap<String, Vec<u8>> {
    let file = fs::File::open(archive).unwrap();
    read_files(file)
}

fn read_files(reader: impl Read) -> BTreeMap<String, Vec<u8>> {
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(reader));
    let mut out = BTreeMap::new();
    for entry in tar.entries().unwrap() {
        let mut entry = entry.unwrap();
        if entry.header().entry_type() != tar::EntryType::Regular {
            continue;
        }
        let name = entry.path().unwrap().display().to_string();
        let mut buf = Vec::new();
        entry.read_to_end(&mut buf).unwrap();
        out.insert(name, buf);
    }
    out
}

/// Everything in `site/dumps`, by name.
fn dump_dir(site: &Path) -> Vec<String> {
    let Ok(entries) = fs::read_dir(site.join("dumps")) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// A site with two storages (`media`, `private`) under `site`, an `elsewhere`
/// directory outside it, and a configuration that archives `media` only.
fn storage_site() -> tempfile::TempDir {
    let site = support::temp_dir();
    support::write_files(
        site.path(),
        [
            ("media/a.txt", "a"),
            ("media/cache/thumb.jpg", "thumb"),
            ("private/secret.txt", "secret"),
            ("private/notes.bak", "old"),
            ("private/cache/x.jpg", "x"),
            ("elsewhere/outside.txt", "outside"),
        ],
    );
    support::write_config(
        site.path(),
        r#"
[storages]
basepath = "."
paths = ["media"]
excludes = ["cache/*"]

[dump]
path = "dumps"
"#,
    );
    site
}

#[test]
fn storage_options_replace_the_configured_storages_for_one_run() {
    let site = storage_site();
    let dir = site.path();
    let private = dir.join("private");
    let out = run(
        dir,
        &[
            "dump",
            "--no-data",
            "--storage",
            private.to_str().unwrap(),
            "--storages-exclude",
            "*.bak",
            "--filename",
            "private.tar.gz",
        ],
    );
    assert!(out.success(), "{}", out.stderr);
    let got = files(&dir.join("dumps/private.tar.gz"));
    let names: Vec<&str> = got.keys().map(String::as_str).collect();
    // The configured `cache/*` exclude was replaced, not added to.
    assert_eq!(
        names,
        ["manifest.json", "private/cache/x.jpg", "private/secret.txt"]
    );
    let manifest: serde_json::Value = serde_json::from_slice(&got["manifest.json"]).unwrap();
    assert_eq!(manifest["storages"], serde_json::json!(["private"]));

    // Repeatable, relative to the working directory, with another basepath.
    let cmd = support::diskette(
        &dir.join("diskette.toml"),
        &[
            "dump",
            "--no-data",
            "--storages-basepath",
            ".",
            "--storage",
            "media",
            "--storage",
            "elsewhere",
            "--filename",
            "two.tar.gz",
        ],
    );
    let mut cmd = cmd;
    cmd.current_dir(dir);
    let out = support::run(cmd, LIMIT);
    assert!(out.success(), "{}", out.stderr);
    let got = files(&dir.join("dumps/two.tar.gz"));
    let names: Vec<&str> = got.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        ["elsewhere/outside.txt", "manifest.json", "media/a.txt"]
    );
}

#[test]
fn storage_options_are_validated_like_the_configuration() {
    let site = storage_site();
    let dir = site.path();
    let (file, private) = (dir.join("media/a.txt"), dir.join("private"));
    let cases: [(&[&str], &str); 4] = [
        (
            &["--storage", "/nonexistent/media"],
            "--storage: /nonexistent/media",
        ),
        (&["--storage", file.to_str().unwrap()], "is not a directory"),
        (
            &["--storages-basepath", private.to_str().unwrap()],
            "not inside the storages basepath",
        ),
        (
            &["--storages-exclude", "[z-a]"],
            "--storages-exclude: \"[z-a]\"",
        ),
    ];
    for (args, expected) in cases {
        let mut all = vec!["dump", "--no-data"];
        all.extend_from_slice(args);
        let out = run(dir, &all);
        assert!(!out.success(), "{args:?} was accepted");
        assert!(out.stderr.contains(expected), "{args:?}: {}", out.stderr);
        assert_eq!(out.stderr.trim().lines().count(), 1, "{}", out.stderr);
        assert!(
            dump_dir(dir).is_empty(),
            "{args:?} left {:?}",
            dump_dir(dir)
        );
    }
    // Storages left out: their options are not looked at.
    support::write_files(dir, [("app.db", "")]);
    let out = run(dir, &["dump", "--no-storages", "--storage", "/nonexistent"]);
    assert!(
        !out.stderr.contains("/nonexistent"),
        "storages were looked at: {}",
        out.stderr
    );
}

#[test]
fn no_checksum_prints_no_checksum_and_writes_the_same_archive() {
    let site = storage_site();
    let dir = site.path();
    let out = run(dir, &["dump", "--no-data", "--filename", "with.tar.gz"]);
    assert!(out.success(), "{}", out.stderr);
    let checksum = out.stdout.trim().to_string();
    assert_eq!(checksum.len(), 128, "{}", out.stdout);

    let out = run(
        dir,
        &[
            "dump",
            "--no-data",
            "--no-checksum",
            "--filename",
            "without.tar.gz",
        ],
    );
    assert!(out.success(), "{}", out.stderr);
    assert_eq!(out.stdout, "", "nothing on stdout");
    let without = dir.join("dumps/without.tar.gz");
    let b2 = blake2b_simd::Params::new()
        .hash_length(64)
        .hash(&fs::read(&without).unwrap())
        .to_hex()
        .to_string();
    assert!(
        !out.stderr.contains(&b2) && !out.stderr.contains("Checksum"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("without.tar.gz"), "{}", out.stderr);
    assert_eq!(
        files_but_creation_time(&without),
        files_but_creation_time(&dir.join("dumps/with.tar.gz"))
    );
}

/// The archive's files, with the manifest's `creation` second blanked: two dumps
/// made one after the other may straddle a second.
fn files_but_creation_time(archive: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = files(archive);
    let manifest = out.get_mut("manifest.json").expect("a manifest");
    let mut value: serde_json::Value = serde_json::from_slice(manifest).unwrap();
    value["creation"] = serde_json::Value::Null;
    *manifest = serde_json::to_vec(&value).unwrap();
    out
}

#[test]
fn a_fixed_filename_replaces_the_earlier_archive_atomically() {
    let site = storage_site();
    let dir = site.path();
    let args = ["dump", "--no-data", "--filename", "fixed{features}.tar.gz"];
    let out = run(dir, &args);
    assert!(out.success(), "{}", out.stderr);
    let fixed = dir.join("dumps/fixed_storages.tar.gz");
    let first = files(&fixed);
    // A reader of the first archive, open while the second is made.
    let reader = fs::File::open(&fixed).unwrap();

    support::write_files(dir, [("media/a.txt", "changed"), ("media/b.txt", "new")]);
    let out = run(dir, &args);
    assert!(out.success(), "{}", out.stderr);
    assert_eq!(dump_dir(dir), ["fixed_storages.tar.gz"]);
    let second = files(&fixed);
    assert_eq!(second["media/a.txt"], b"changed");
    assert_eq!(second["media/b.txt"], b"new");
    // Renamed over, never rewritten in place: the open reader still reads the
    // whole first archive.
    assert_eq!(read_files(reader), first);
    assert_eq!(first["media/a.txt"], b"a");

    // A directory of that name is not replaced.
    fs::remove_file(&fixed).unwrap();
    fs::create_dir(&fixed).unwrap();
    let out = run(dir, &args);
    assert!(!out.success());
    assert!(out.stderr.contains("is a directory"), "{}", out.stderr);
    assert_eq!(dump_dir(dir), ["fixed_storages.tar.gz"]);
    assert!(fixed.is_dir());
}

#[test]
fn registry_archives_keep_unique_names() {
    let site = storage_site();
    let dir = site.path();
    let config = fs::read_to_string(dir.join("diskette.toml")).unwrap();
    support::write_config(dir, &config.replace("[dump]", "[dump]\nauto_purge = false"));
    for _ in 0..2 {
        let out = run(
            dir,
            &["dump", "--save", "--no-data", "--filename", "fixed.tar.gz"],
        );
        assert!(out.success(), "{}", out.stderr);
    }
    assert_eq!(dump_dir(dir), ["fixed_1.tar.gz", "fixed_2.tar.gz"]);
}

// ---------------------------------------------------------------------------
// --appconf

/// A site with a small application database and `[[apps]]` that `--appconf` replaces.
fn data_site(apps: &str) -> tempfile::TempDir {
    let site = support::temp_dir();
    let conn = rusqlite::Connection::open(site.path().join("app.db")).unwrap();
    conn.execute_batch(
        "CREATE TABLE blog_category (id INTEGER PRIMARY KEY, name TEXT NOT NULL);
         CREATE TABLE blog_tag (id INTEGER PRIMARY KEY, name TEXT NOT NULL);
         CREATE TABLE shop_item (id INTEGER PRIMARY KEY, price REAL NOT NULL);
         CREATE TABLE audit_entry (id INTEGER PRIMARY KEY, what TEXT NOT NULL);
         INSERT INTO blog_category VALUES (1, 'News'), (2, 'Café');
         INSERT INTO blog_tag VALUES (1, 'rust');
         INSERT INTO shop_item VALUES (1, 9.5);
         INSERT INTO audit_entry VALUES (1, 'login');",
    )
    .unwrap();
    support::write_config(
        site.path(),
        &format!("[data]\ndatabase_url = \"sqlite://app.db\"\n\n[dump]\npath = \"dumps\"\n{apps}"),
    );
    site
}

const TOML_APPS: &str = r#"
[[apps]]
name = "Blog posts"
models = ["blog"]
excludes = ["blog.tag"]
allow_drain = true
natural_foreign = true

[[apps]]
name = "shop"
models = ["shop.item"]
filename = "items.json"

[[apps]]
name = "rest"
is_drain = true
drain_excluded = true
excludes = ["audit.entry"]
"#;

const JSON_APPS: &str = r#"[
    ["Blog posts", {"models": ["blog"], "excludes": ["blog.tag"], "allow_drain": true,
                    "natural_foreign": true, "comments": "Articles"}],
    ["shop", {"models": "shop.item", "filename": "items.json", "use_base_manager": true}],
    ["rest", {"is_drain": true, "drain_excluded": true, "excludes": ["audit.entry"]}]
]"#;

#[test]
fn appconf_definitions_give_the_archive_of_the_same_toml_definitions() {
    let toml = data_site(TOML_APPS);
    let out = run(
        toml.path(),
        &["dump", "--no-storages", "--filename", "d.tar.gz"],
    );
    assert!(out.success(), "{}", out.stderr);
    let expected = files(&toml.path().join("dumps/d.tar.gz"));

    // Its own [[apps]] select a table that does not exist: --appconf replaces them.
    let json = data_site("[[apps]]\nname = \"old\"\nmodels = [\"gone\"]\n");
    let appconf = json.path().join("apps.json");
    fs::write(&appconf, JSON_APPS).unwrap();
    let out = run(
        json.path(),
        &[
            "dump",
            "--no-storages",
            "--filename",
            "d.tar.gz",
            "--appconf",
            appconf.to_str().unwrap(),
        ],
    );
    assert!(out.success(), "{}", out.stderr);
    let got = files(&json.path().join("dumps/d.tar.gz"));
    let without_creation = |mut f: BTreeMap<String, Vec<u8>>| {
        let manifest: serde_json::Value = serde_json::from_slice(&f["manifest.json"]).unwrap();
        f.insert(
            "manifest.json".into(),
            manifest["datas"].to_string().into_bytes(),
        );
        f
    };
    assert_eq!(without_creation(got.clone()), without_creation(expected));
    let names: Vec<&str> = got.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "data/blog-posts.json",
            "data/items.json",
            "data/rest.json",
            "manifest.json"
        ]
    );
    let rest = String::from_utf8(got["data/rest.json"].clone()).unwrap();
    assert!(
        rest.contains("blog.tag") && !rest.contains("audit.entry"),
        "{rest}"
    );
}

#[test]
fn appconf_errors_name_the_definition_and_the_option() {
    let site = data_site(TOML_APPS);
    let dir = site.path();
    let appconf = dir.join("apps.json");
    let cases = [
        (
            r#"[["blog", {"models": ["blog"]}], ["shop", {"model": ["shop"]}]]"#,
            "definition \"shop\": unknown option \"model\"",
        ),
        (
            r#"[["blog", {"models": ["blog"], "natural_foreign": "yes"}]]"#,
            "definition \"blog\": option \"natural_foreign\" must be a boolean",
        ),
        (
            r#"[["blog", {"models": ["nothing"]}]]"#,
            "definition \"blog\": model \"nothing\" matches no model",
        ),
        (r#"[["blog", {"models": ["blog"]}"#, "invalid JSON"),
    ];
    for (text, expected) in cases {
        fs::write(&appconf, text).unwrap();
        let out = run(dir, &["dump", "--appconf", appconf.to_str().unwrap()]);
        assert!(!out.success(), "{text} was accepted");
        assert!(out.stderr.contains(expected), "{text}: {}", out.stderr);
        assert_eq!(out.stderr.trim().lines().count(), 1, "{}", out.stderr);
        assert!(dump_dir(dir).is_empty(), "{text} left {:?}", dump_dir(dir));
    }
    let out = run(dir, &["dump", "--appconf", "/nonexistent/apps.json"]);
    assert!(
        out.stderr
            .contains("--appconf: cannot read /nonexistent/apps.json"),
        "{}",
        out.stderr
    );
}

#[test]
fn help_lists_the_diskette_options() {
    let site = support::temp_dir();
    let config = site.path().join("diskette.toml");
    let out = support::run(support::diskette(&config, &["dump", "--help"]), LIMIT);
    assert!(out.success(), "{}", out.stderr);
    for option in [
        "--appconf <PATH>",
        "--storage <PATH>",
        "--storages-basepath <PATH>",
        "--storages-exclude <PATTERN>",
        "--no-checksum",
        "--no-archive",
    ] {
        assert!(
            out.stdout.contains(option),
            "{option} missing:\n{}",
            out.stdout
        );
    }
    let out = support::run(support::diskette(&config, &["apps", "--help"]), LIMIT);
    for option in [
        "--generate",
        "--app <NAME>",
        "--exclude <NAME>",
        "--format <FORMAT>",
        "--destination <PATH>",
    ] {
        assert!(
            out.stdout.contains(option),
            "{option} missing:\n{}",
            out.stdout
        );
    }
}

// ---------------------------------------------------------------------------
// apps --generate, dump --no-archive

#[test]
fn generate_writes_a_definition_per_application() {
    let site = data_site("");
    let dir = site.path();
    let out = run(dir, &["apps", "--generate"]);
    assert!(out.success(), "{}", out.stderr);
    assert_eq!(
        out.stdout,
        r#"[[apps]]
name = "blog"
natural_foreign = true
models = [
    "blog.category",
    "blog.tag",
]

[[apps]]
name = "shop"
natural_foreign = true
models = [
    "shop.item",
]

[[apps]]
name = "audit"
natural_foreign = true
models = [
    "audit.entry",
]
"#
    );

    let target = dir.join("defs.json");
    let args = [
        "apps",
        "--generate",
        "--format",
        "json",
        "--app",
        "blog",
        "--app",
        "shop",
        "--exclude",
        "shop",
        "--destination",
        target.to_str().unwrap(),
    ];
    let out = run(dir, &args);
    assert!(out.success(), "{}", out.stderr);
    assert_eq!(out.stdout, "");
    assert!(out.stderr.contains("defs.json"), "{}", out.stderr);
    let written: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(&target).unwrap()).unwrap();
    assert_eq!(
        written,
        serde_json::json!([["blog", {"natural_foreign": true, "models": ["blog.category", "blog.tag"]}]])
    );
    // An existing file is kept, unless --force.
    fs::write(&target, "mine").unwrap();
    let out = run(dir, &args);
    assert!(!out.success());
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    assert!(
        out.stderr.contains("exists (--force replaces it)"),
        "{}",
        out.stderr
    );
    assert_eq!(fs::read_to_string(&target).unwrap(), "mine");
    let out = run(dir, &[&args[..], &["--force"]].concat());
    assert!(out.success(), "{}", out.stderr);
    assert!(fs::read_to_string(&target).unwrap().contains("blog.tag"));
    let names: Vec<_> = fs::read_dir(target.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with(".diskette-tmp-"))
        .collect();
    assert!(names.is_empty(), "no temporary file left: {names:?}");

    let out = run(dir, &["apps", "--generate", "--app", "blgo"]);
    assert!(!out.success());
    assert!(
        out.stderr.contains("--app: \"blgo\" is no application"),
        "{}",
        out.stderr
    );
    let out = run(dir, &["apps", "--format", "json"]);
    assert!(!out.success(), "--format without --generate was accepted");
}

#[test]
fn no_archive_prints_the_dumpdata_command_lines() {
    let site = data_site(TOML_APPS);
    let dir = site.path();
    let out = run(dir, &["dump", "--no-archive"]);
    assert!(out.success(), "{}", out.stderr);
    let dumps = dir.canonicalize().unwrap().join("dumps");
    let dumps = dumps.display();
    assert_eq!(
        out.stdout,
        format!(
            "python manage.py dumpdata blog.category --natural-foreign --output={dumps}/blog-posts.json\n\
             python manage.py dumpdata shop.item --output={dumps}/items.json\n\
             python manage.py dumpdata --exclude blog.category --exclude shop.item \
             --exclude audit.entry --output={dumps}/rest.json\n"
        )
    );
    assert!(dump_dir(dir).is_empty(), "no archive is written");

    // --indent is passed on, as Diskette does.
    let out = run(dir, &["dump", "--no-archive", "--indent", "2"]);
    assert!(out.success(), "{}", out.stderr);
    assert!(
        out.stdout
            .lines()
            .all(|l| l.starts_with("python manage.py dumpdata --indent=2 ")),
        "{}",
        out.stdout
    );

    // With Diskette's definitions, into another directory.
    let appconf = dir.join("apps.json");
    fs::write(&appconf, JSON_APPS).unwrap();
    let out = run(
        dir,
        &[
            "dump",
            "--no-archive",
            "--appconf",
            appconf.to_str().unwrap(),
            "--destination",
            "/tmp/my dumps",
        ],
    );
    assert!(out.success(), "{}", out.stderr);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(
        lines[1],
        "python manage.py dumpdata shop.item --all '--output=/tmp/my dumps/items.json'"
    );
    let out = run(dir, &["dump", "--no-archive", "--no-data"]);
    assert!(!out.success());
}

// ---------------------------------------------------------------------------
// load --ignorenonexistent_data

#[test]
fn load_takes_diskettes_ignorenonexistent_data() {
    let site = data_site("");
    let dir = site.path();
    let archive = dir.join("newer.tar.gz");
    let manifest = support::manifest(Some(&["data/blog.json"]), None);
    // A fixture from a newer schema: a field and a model this database lacks.
    let fixture =
        br#"[{"model": "blog.category", "pk": 3, "fields": {"name": "New", "colour": "red"}},
                       {"model": "blog.gone", "pk": 1, "fields": {}}]"#;
    support::write_tar_gz(
        &archive,
        &[
            ("data/blog.json", Some(fixture.as_slice())),
            ("manifest.json", Some(manifest.as_bytes())),
        ],
    );
    let categories = || -> Vec<(i64, String)> {
        let conn = rusqlite::Connection::open(dir.join("app.db")).unwrap();
        let mut stmt = conn
            .prepare("SELECT id, name FROM blog_category ORDER BY id")
            .unwrap();
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    let before = categories();

    let out = run(dir, &["load", archive.to_str().unwrap()]);
    assert!(!out.success(), "the unknown field was accepted");
    assert!(out.stderr.contains("colour"), "{}", out.stderr);
    assert_eq!(categories(), before);

    let out = run(
        dir,
        &[
            "load",
            archive.to_str().unwrap(),
            "--ignorenonexistent_data",
        ],
    );
    assert!(out.success(), "{}", out.stderr);
    let mut expected = before;
    expected.push((3, "New".into()));
    assert_eq!(categories(), expected);

    let help = run(dir, &["load", "--help"]).stdout;
    assert!(help.contains("--ignorenonexistent_data"), "{help}");
}

//! `diskette dump` from the outside: the real binary, real files, real SQLite
//! databases, archives read back with the tar crate and the system's tools.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::support::{self, Run};

const BIN: &str = env!("CARGO_BIN_EXE_diskette");
const LIMIT: Duration = Duration::from_secs(120);

/// `diskette ARGS` with the configuration of the site in `dir`.
fn run(dir: &Path, args: &[&str]) -> Run {
    support::run(support::diskette(&dir.join("diskette.toml"), args), LIMIT)
}

#[derive(Debug, PartialEq)]
enum Kind {
    File(Vec<u8>),
    Dir,
    Link(String),
}

/// Members of a .tar.gz in archive order.
fn members(archive: &Path) -> Vec<(String, Kind)> {
    let file = std::fs::File::open(archive).unwrap();
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let mut out = Vec::new();
    for entry in tar.entries().unwrap() {
        let mut entry = entry.unwrap();
        let name = String::from_utf8(entry.path_bytes().into_owned()).unwrap();
        let kind = match entry.header().entry_type() {
            tar::EntryType::Directory => Kind::Dir,
            tar::EntryType::Symlink => Kind::Link(
                entry
                    .link_name()
                    .unwrap()
                    .unwrap()
                    .to_string_lossy()
                    .into_owned(),
            ),
            _ => {
                let mut buf = Vec::new();
                entry.read_to_end(&mut buf).unwrap();
                Kind::File(buf)
            }
        };
        out.push((name.trim_end_matches('/').to_string(), kind));
    }
    out
}

fn files_of(members: &[(String, Kind)]) -> BTreeMap<String, Vec<u8>> {
    members
        .iter()
        .filter_map(|(n, k)| match k {
            Kind::File(b) => Some((n.clone(), b.clone())),
            _ => None,
        })
        .collect()
}

/// The archives written into `dir/dumps`.
fn archives(dir: &Path) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir(dir.join("dumps")) else {
        return Vec::new();
    };
    let mut v: Vec<PathBuf> = rd.map(|e| e.unwrap().path()).collect();
    v.sort();
    v
}

fn write_config(dir: &Path, body: &str) {
    std::fs::write(dir.join("diskette.toml"), body).unwrap();
}

/// The storage tree of the reference sample: the fixture's files plus the
/// files its excludes removed and its empty directory.
fn sample_tree(site: &Path) {
    let status = Command::new("tar")
        .arg("xzf")
        .arg(crate::support::reference("storages.tar.gz"))
        .arg("-C")
        .arg(site)
        .arg("--exclude=manifest.json")
        .status()
        .unwrap();
    assert!(status.success());
    for (p, c) in [
        ("media/articles/2024/draft.tmp", "draft"),
        ("media/cache/thumb-1.jpg", "jpg"),
        ("media/cache/sub/thumb-2.jpg", "jpg"),
        ("media/documents/legal/privacy.html~", "backup"),
    ] {
        let path = site.join(p);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, c).unwrap();
    }
    std::fs::create_dir_all(site.join("media/empty")).unwrap();
}

const SAMPLE_CONFIG: &str = r#"
[storages]
basepath = "."
paths = ["media"]
excludes = ["*.tmp", "*~", "cache/*"]

[dump]
path = "dumps"
"#;

#[test]
fn storages_layout_matches_the_original() {
    let site = tempfile::tempdir().unwrap();
    sample_tree(site.path());
    write_config(site.path(), SAMPLE_CONFIG);
    let out = run(site.path(), &["dump", "--no-data"]);
    assert!(out.success(), "{}", out.stderr);

    let ours = archives(site.path());
    assert_eq!(ours.len(), 1);
    let name = ours[0].file_name().unwrap().to_str().unwrap();
    assert!(
        name.starts_with("diskette_storages_") && name.ends_with(".tar.gz"),
        "{name}"
    );

    let ours = members(&ours[0]);
    let theirs = members(&crate::support::reference("storages.tar.gz"));
    // Same files with the same bytes (the manifest differs by version and date);
    // excluded files absent.
    let mut ours_files = files_of(&ours);
    let mut theirs_files = files_of(&theirs);
    ours_files.remove("manifest.json");
    theirs_files.remove("manifest.json");
    assert_eq!(
        ours_files.keys().collect::<Vec<_>>(),
        theirs_files.keys().collect::<Vec<_>>()
    );
    assert!(ours_files == theirs_files, "same names, different bytes");
    // We also keep directories, so empty ones survive a round trip.
    assert!(ours.contains(&("media/empty".to_string(), Kind::Dir)));
    assert_eq!(ours.last().unwrap().0, "manifest.json");
    let manifest: serde_json::Value = match &ours.last().unwrap().1 {
        Kind::File(b) => serde_json::from_slice(b).unwrap(),
        other => panic!("manifest is {other:?}"),
    };
    assert_eq!(manifest["datas"], serde_json::Value::Null);
    assert_eq!(manifest["storages"], serde_json::json!(["media"]));
}

fn make_app_db(path: &Path) {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.execute_batch(
        "CREATE TABLE django_site (id INTEGER PRIMARY KEY, domain TEXT, name TEXT);
         CREATE TABLE blog_category (id INTEGER PRIMARY KEY, name TEXT NOT NULL);
         CREATE TABLE blog_article (id INTEGER PRIMARY KEY, title TEXT, category_id INTEGER REFERENCES blog_category(id));
         INSERT INTO django_site VALUES (1, 'example.test', 'Example');
         INSERT INTO blog_category VALUES (1, 'News'), (2, 'Café & Culture');
         INSERT INTO blog_article VALUES (1, 'First', 2), (2, 'Second', 1);",
    )
    .unwrap();
}

#[test]
fn data_layout_order_and_manifest() {
    let site = tempfile::tempdir().unwrap();
    make_app_db(&site.path().join("app.db"));
    write_config(
        site.path(),
        r#"
[data]
database_url = "sqlite://app.db"
labels = { django_site = "sites.site" }

[dump]
path = "dumps"

[[apps]]
name = "django.contrib.sites"
models = ["sites"]

[[apps]]
name = "blog"
models = ["blog.category", "blog_article"]
"#,
    );
    let out = run(site.path(), &["dump", "--no-storages"]);
    assert!(out.success(), "{}", out.stderr);
    let archive = archives(site.path()).pop().unwrap();
    let m = members(&archive);
    let names: Vec<&str> = m.iter().map(|(n, _)| n.as_str()).collect();
    // Diskette's order: data/, fixtures sorted by name, manifest last.
    assert_eq!(
        names,
        [
            "data",
            "data/blog.json",
            "data/djangocontribsites.json",
            "manifest.json"
        ]
    );
    let files = files_of(&m);
    let manifest = String::from_utf8(files["manifest.json"].clone()).unwrap();
    assert!(
        manifest.contains(
            r#""datas": ["data/djangocontribsites.json", "data/blog.json"], "storages": null}"#
        ),
        "{manifest}"
    );
    assert_eq!(
        String::from_utf8(files["data/djangocontribsites.json"].clone()).unwrap(),
        r#"[{"model": "sites.site", "pk": 1, "fields": {"domain": "example.test", "name": "Example"}}]"#
    );
    let blog = String::from_utf8(files["data/blog.json"].clone()).unwrap();
    assert_eq!(
        blog,
        r#"[{"model": "blog.category", "pk": 1, "fields": {"name": "News"}}, {"model": "blog.category", "pk": 2, "fields": {"name": "Café & Culture"}}, {"model": "blog.article", "pk": 1, "fields": {"title": "First", "category_id": 2}}, {"model": "blog.article", "pk": 2, "fields": {"title": "Second", "category_id": 1}}]"#
    );
}

#[test]
fn system_tar_gzip_and_b2sum_agree() {
    let site = tempfile::tempdir().unwrap();
    sample_tree(site.path());
    make_app_db(&site.path().join("app.db"));
    write_config(
        site.path(),
        &format!(
            "{SAMPLE_CONFIG}\n[data]\ndatabase_url = \"sqlite://app.db\"\n\n[[apps]]\nname = \"blog\"\nmodels = [\"blog\"]\n"
        ),
    );
    let out = run(site.path(), &["dump"]);
    assert!(out.success(), "{}", out.stderr);
    let printed = out.stdout.trim().to_string();
    assert_eq!(
        printed.len(),
        128,
        "stdout holds the checksum only: {printed:?}"
    );
    let archive = archives(site.path()).pop().unwrap();
    assert!(
        archive
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("diskette_data_storages_")
    );

    let b2 = Command::new("b2sum").arg(&archive).output().unwrap();
    let b2 = String::from_utf8(b2.stdout).unwrap();
    assert_eq!(b2.split_whitespace().next().unwrap(), printed);

    assert!(
        Command::new("gzip")
            .arg("-t")
            .arg(&archive)
            .status()
            .unwrap()
            .success()
    );
    let list = Command::new("tar")
        .arg("tzf")
        .arg(&archive)
        .output()
        .unwrap();
    assert!(list.status.success());
    let list = String::from_utf8(list.stdout).unwrap();
    assert!(list.contains("media/documents/résumé café.txt\n"), "{list}");
    assert!(list.contains("data/blog.json\n"));
    assert!(list.ends_with("manifest.json\n"));

    let py = Command::new("python3")
        .arg("-c")
        .arg("import sys, tarfile; t = tarfile.open(sys.argv[1]); print(len(t.getmembers()))")
        .arg(&archive)
        .output()
        .unwrap();
    assert!(
        py.status.success(),
        "{}",
        String::from_utf8_lossy(&py.stderr)
    );
}

#[test]
fn nothing_to_dump_is_an_error_and_writes_nothing() {
    let site = tempfile::tempdir().unwrap();
    write_config(site.path(), "[dump]\npath = \"dumps\"\n");
    for args in [&["dump", "--no-data", "--no-storages"][..], &["dump"][..]] {
        let out = run(site.path(), args);
        assert!(!out.success());
        let err = &out.stderr;
        assert!(err.contains("nothing to dump"), "{err}");
        assert_eq!(
            err.lines().filter(|l| l.starts_with("error:")).count(),
            1,
            "{err}"
        );
    }
    assert!(archives(site.path()).is_empty());
}

#[test]
fn storage_rules_are_checked_before_anything_is_written() {
    let site = tempfile::tempdir().unwrap();
    let other = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(site.path().join("media")).unwrap();
    std::fs::create_dir_all(site.path().join("data")).unwrap();
    std::fs::write(site.path().join("afile"), "x").unwrap();
    let cases = [
        (r#"["missing"]"#, "missing"),
        (r#"["afile"]"#, "not a directory"),
        (
            &format!("[{:?}]", other.path().to_str().unwrap())[..],
            "not inside the storages basepath",
        ),
        (r#"["data"]"#, "collide"),
        (r#"["media", "./media"]"#, "listed twice"),
    ];
    for (paths, expected) in cases {
        write_config(
            site.path(),
            &format!("[storages]\nbasepath = \".\"\npaths = {paths}\n[dump]\npath = \"dumps\"\n"),
        );
        let out = run(site.path(), &["dump", "--no-data"]);
        assert!(!out.success(), "{paths}");
        let err = &out.stderr;
        assert!(err.contains(expected), "{paths}: {err}");
        assert!(!site.path().join("dumps").exists(), "{paths}");
    }
}

#[test]
fn failed_dump_leaves_no_file_behind() {
    let site = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(site.path().join("media")).unwrap();
    std::fs::write(site.path().join("media/a.txt"), "a").unwrap();
    write_config(
        site.path(),
        r#"
[storages]
paths = ["media"]
[dump]
path = "dumps"
[[apps]]
name = "broken"
dump_command = ["sh", "-c", "echo partial; echo 'database is locked' >&2; exit 3"]
"#,
    );
    let out = run(site.path(), &["dump"]);
    assert!(!out.success());
    let err = &out.stderr;
    assert!(
        err.contains("\"broken\"") && err.contains("database is locked"),
        "{err}"
    );
    let left: Vec<_> = std::fs::read_dir(site.path().join("dumps"))
        .unwrap()
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn command_engine_fixture_is_archived() {
    let site = tempfile::tempdir().unwrap();
    write_config(
        site.path(),
        r#"
[dump]
path = "dumps"
[[apps]]
name = "Shop Items"
dump_command = ["sh", "-c", "printf '[{\"model\": \"shop.item\", \"pk\": 1, \"fields\": {\"app\": \"%s\"}}]' \"$DISKETTE_APP_NAME\""]
"#,
    );
    let out = run(site.path(), &["dump"]);
    assert!(out.success(), "{}", out.stderr);
    let files = files_of(&members(&archives(site.path()).pop().unwrap()));
    assert_eq!(
        String::from_utf8(files["data/shop-items.json"].clone()).unwrap(),
        r#"[{"model": "shop.item", "pk": 1, "fields": {"app": "Shop Items"}}]"#
    );
}

#[test]
fn check_reports_and_writes_nothing() {
    let site = tempfile::tempdir().unwrap();
    sample_tree(site.path());
    make_app_db(&site.path().join("app.db"));
    write_config(
        site.path(),
        &format!(
            "{SAMPLE_CONFIG}\n[data]\ndatabase_url = \"sqlite://app.db\"\n\n[[apps]]\nname = \"blog\"\nmodels = [\"blog\"]\n"
        ),
    );
    let out = run(site.path(), &["dump", "--check"]);
    assert!(out.success(), "{}", out.stderr);
    let report = &out.stdout;
    assert!(
        report.contains("blog_article (blog.article): 2 rows"),
        "{report}"
    );
    assert!(report.contains("media: 16 files"), "{report}");
    assert!(report.contains("Total: 4 rows, 16 files"), "{report}");
    assert!(!site.path().join("dumps").exists());
}

#[test]
fn excludes_can_be_ignored() {
    let site = tempfile::tempdir().unwrap();
    sample_tree(site.path());
    write_config(site.path(), SAMPLE_CONFIG);
    let out = run(
        site.path(),
        &[
            "dump",
            "--no-data",
            "--no-storages-excludes",
            "--filename",
            "all{features}.tar.gz",
        ],
    );
    assert!(out.success(), "{}", out.stderr);
    let archive = site.path().join("dumps/all_storages.tar.gz");
    let files = files_of(&members(&archive));
    assert!(files.contains_key("media/cache/sub/thumb-2.jpg"));
    assert!(files.contains_key("media/articles/2024/draft.tmp"));
    // The same name again never replaces the first archive.
    let out = run(
        site.path(),
        &["dump", "--no-data", "--filename", "all{features}.tar.gz"],
    );
    assert!(out.success(), "{}", out.stderr);
    assert!(site.path().join("dumps/all_storages_2.tar.gz").exists());
    assert_eq!(files_of(&members(&archive)), files);
}

#[test]
fn configuration_errors_are_one_line() {
    let site = tempfile::tempdir().unwrap();
    let out = run(site.path(), &["dump"]);
    assert!(!out.success());
    let err = &out.stderr;
    assert!(
        err.contains("diskette.toml") && err.contains("not found"),
        "{err}"
    );

    write_config(site.path(), "[dump]\npath = 3\n");
    let err = run(site.path(), &["dump"]).stderr;
    assert!(err.contains("dump.path"), "{err}");

    write_config(site.path(), "[storage]\npaths = []\n");
    let err = run(site.path(), &["dump"]).stderr;
    assert!(err.contains("storage"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}

#[test]
fn unknown_model_names_the_definition() {
    let site = tempfile::tempdir().unwrap();
    make_app_db(&site.path().join("app.db"));
    write_config(
        site.path(),
        "[data]\ndatabase_url = \"sqlite://app.db\"\n[dump]\npath = \"dumps\"\n[[apps]]\nname = \"shop\"\nmodels = [\"shop.item\"]\n",
    );
    let out = run(site.path(), &["dump"]);
    assert!(!out.success());
    let err = &out.stderr;
    assert!(
        err.contains("\"shop\"") && err.contains("shop.item"),
        "{err}"
    );
    assert!(!site.path().join("dumps").exists());
}

/// A real write failure: a file-size limit makes `write` fail with EFBIG.
#[test]
fn write_failure_leaves_no_partial_file() {
    let site = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(site.path().join("media")).unwrap();
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let noise: Vec<u8> = (0..4_000_000)
        .map(|_| {
            // xorshift: incompressible enough that the archive outgrows the limit.
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect();
    std::fs::write(site.path().join("media/big.bin"), noise).unwrap();
    write_config(
        site.path(),
        "[storages]\npaths = [\"media\"]\n[dump]\npath = \"dumps\"\n",
    );
    std::fs::create_dir_all(site.path().join("dumps")).unwrap();
    // 1024-byte blocks: the archive cannot exceed 1 MiB. SIGXFSZ is ignored so
    // the write returns an error instead of killing the process.
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg("trap '' XFSZ; ulimit -f 1024; exec \"$0\" --config \"$1\" dump --no-data")
        .arg(BIN)
        .arg(site.path().join("diskette.toml"));
    let out = support::run(cmd, LIMIT);
    assert!(!out.success());
    let err = &out.stderr;
    assert!(
        err.contains("error:") && err.to_lowercase().contains("too large"),
        "{err}"
    );
    let left: Vec<_> = std::fs::read_dir(site.path().join("dumps"))
        .unwrap()
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn symlinks_inside_are_kept_outside_are_skipped_with_a_warning() {
    let site = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(site.path().join("media/sub")).unwrap();
    std::fs::write(site.path().join("media/a.txt"), "a").unwrap();
    std::os::unix::fs::symlink("../a.txt", site.path().join("media/sub/relative")).unwrap();
    std::os::unix::fs::symlink(
        site.path().join("media/a.txt"),
        site.path().join("media/absolute-inside"),
    )
    .unwrap();
    std::os::unix::fs::symlink(outside.path(), site.path().join("media/escape")).unwrap();
    std::os::unix::fs::symlink("missing", site.path().join("media/dangling")).unwrap();
    write_config(
        site.path(),
        "[storages]\npaths = [\"media\"]\n[dump]\npath = \"dumps\"\n",
    );
    let out = run(site.path(), &["dump", "--no-data"]);
    assert!(out.success(), "{}", out.stderr);
    let err = &out.stderr;
    assert!(err.contains("warning: symlink media/escape"), "{err}");
    assert!(err.contains("warning: symlink media/dangling"), "{err}");
    let m = members(&archives(site.path()).pop().unwrap());
    assert!(m.contains(&("media/sub/relative".into(), Kind::Link("../a.txt".into()))));
    // An absolute target inside the storage is stored relative, so it stays valid elsewhere.
    assert!(m.contains(&("media/absolute-inside".into(), Kind::Link("a.txt".into()))));
    assert!(
        !m.iter()
            .any(|(n, _)| n == "media/escape" || n == "media/dangling")
    );
}

#[test]
fn apps_lists_definitions_and_tables() {
    let site = tempfile::tempdir().unwrap();
    make_app_db(&site.path().join("app.db"));
    write_config(
        site.path(),
        r#"
[data]
database_url = "sqlite://app.db"
[[apps]]
name = "blog"
models = ["blog"]
excludes = ["blog_article"]
[[apps]]
name = "auth"
dump_command = ["python", "manage.py", "dumpdata", "auth"]
load_command = ["python", "manage.py", "loaddata", "{file}"]
[[apps]]
name = "rest"
is_drain = true
"#,
    );
    let out = run(site.path(), &["apps"]);
    assert!(out.success(), "{}", out.stderr);
    assert_eq!(
        out.stdout,
        "blog -> data/blog.json\n  engine: built-in SQL engine\n  - blog_category (blog.category)\n\
         auth -> data/auth.json\n  engine: command\n  dump: python manage.py dumpdata auth\n  load: python manage.py loaddata {file}\n\
         rest -> data/rest.json\n  engine: drain, built-in SQL engine\n  - django_site (django.site)\n"
    );
}

#[test]
fn every_command_explains_itself() {
    for args in [
        &["--help"][..],
        &["dump", "--help"],
        &["load", "--help"],
        &["apps", "--help"],
    ] {
        let mut cmd = Command::new(BIN);
        cmd.args(args);
        let out = support::run(cmd, LIMIT);
        assert!(out.success(), "{args:?}");
        let text = &out.stdout;
        assert!(text.contains("Usage: diskette"), "{args:?}: {text}");
    }
    let mut cmd = Command::new(BIN);
    cmd.args(["dump", "--help"]);
    let out = support::run(cmd, LIMIT);
    for flag in [
        "--no-data",
        "--no-storages",
        "--no-storages-excludes",
        "--destination",
        "--filename",
        "--check",
    ] {
        assert!(out.stdout.contains(flag), "{flag}");
    }
}

/// A registered dump holds what its option set says: asking for data
/// without any application defined fails instead of saving storages only.
#[test]
fn save_refuses_an_option_set_the_configuration_cannot_fill() {
    let site = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(site.path().join("media")).unwrap();
    std::fs::write(site.path().join("media/a.txt"), "a").unwrap();
    write_config(
        site.path(),
        "[storages]\npaths = [\"media\"]\n[dump]\npath = \"dumps\"\n",
    );
    let out = run(site.path(), &["dump", "--save"]);
    assert!(!out.success());
    let err = &out.stderr;
    assert!(err.contains("no application is defined"), "{err}");
    assert!(archives(site.path()).is_empty());
    // The storages-only option set is saved.
    let out = run(site.path(), &["dump", "--save", "--no-data"]);
    assert!(out.success(), "{}", out.stderr);
    assert_eq!(archives(site.path()).len(), 1);
}

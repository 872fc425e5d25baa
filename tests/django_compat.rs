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
//! - the reference archives in `../shared/fixtures/diskette-0.6.0/` load.
//!
//! The Python side needs a virtualenv made by `tests/django/setup_venv.sh`:
//! `DISKETTE_TEST_DJANGO_VENV=DIR` points at one (created there when DIR does
//! not exist yet); without it, the tests build one under the cargo target
//! directory, which needs Python 3 with its `venv` module and access to PyPI.
//! When it cannot be built the tests fail; they never skip.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use rusqlite::types::Value;

const BIN: &str = env!("CARGO_BIN_EXE_diskette");
const PROJECT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/django");
const REFERENCE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../shared/fixtures/diskette-0.6.0"
);
const VENV_ENV: &str = "DISKETTE_TEST_DJANGO_VENV";

// ---------------------------------------------------------------------------
// The Python virtualenv, built once per test process.

fn venv_python() -> &'static Path {
    static VENV: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match VENV.get_or_init(prepare_venv) {
        Ok(python) => python,
        Err(e) => panic!(
            "the Django compatibility tests need a Python virtualenv with Django and \
             diskette 0.6.0: {e}\n(build one with `tests/django/setup_venv.sh DIR` and \
             set {VENV_ENV}=DIR, or give these tests access to PyPI)"
        ),
    }
}

fn prepare_venv() -> Result<PathBuf, String> {
    let requirements = fs::read_to_string(Path::new(PROJECT).join("requirements.txt"))
        .map_err(|e| format!("cannot read tests/django/requirements.txt: {e}"))?;
    if let Some(dir) = std::env::var_os(VENV_ENV).filter(|v| !v.is_empty()) {
        let dir = PathBuf::from(dir);
        if !dir.join("bin/python").exists() {
            build_venv(&dir)?;
        }
        return check_venv(&dir, &requirements);
    }
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("django-venv");
    let stamp = dir.join("diskette-compat-requirements.txt");
    if fs::read_to_string(&stamp).ok().as_deref() == Some(requirements.as_str()) {
        return check_venv(&dir, &requirements);
    }
    // Built beside its final place and renamed into it, so that a concurrent
    // or interrupted build never leaves a half-installed venv in use.
    let building = dir.with_file_name(format!("django-venv.building-{}", std::process::id()));
    let _ = fs::remove_dir_all(&building);
    eprintln!(
        "building a Python virtualenv for the Django tests in {}",
        dir.display()
    );
    let built = build_venv(&building);
    if let Err(e) = built {
        let _ = fs::remove_dir_all(&building);
        return Err(e);
    }
    if fs::read_to_string(&stamp).ok().as_deref() == Some(requirements.as_str()) {
        // Another test process finished first.
        let _ = fs::remove_dir_all(&building);
    } else {
        let _ = fs::remove_dir_all(&dir);
        fs::rename(&building, &dir)
            .map_err(|e| format!("cannot move the virtualenv into {}: {e}", dir.display()))?;
    }
    check_venv(&dir, &requirements)
}

fn build_venv(dir: &Path) -> Result<(), String> {
    let out = Command::new("sh")
        .arg(Path::new(PROJECT).join("setup_venv.sh"))
        .arg(dir)
        .output()
        .map_err(|e| format!("cannot run tests/django/setup_venv.sh: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "tests/django/setup_venv.sh {} failed ({}):\n{}{}",
            dir.display(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// The venv's interpreter, once it is known to import the pinned versions.
fn check_venv(dir: &Path, requirements: &str) -> Result<PathBuf, String> {
    let pin = |name: &str| {
        requirements
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix("=="))
            .map(str::trim)
            .unwrap_or("?")
            .to_string()
    };
    let expected = format!("{} {}", pin("Django"), pin("diskette"));
    let python = dir.join("bin/python");
    let out = Command::new(&python)
        .args([
            "-c",
            "import django, diskette; print(django.get_version(), diskette.__version__)",
        ])
        .output()
        .map_err(|e| format!("cannot run {}: {e}", python.display()))?;
    let found = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if !out.status.success() || found != expected {
        return Err(format!(
            "{} does not provide Django and diskette {expected} (found {found:?}) {}",
            python.display(),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(python)
}

// ---------------------------------------------------------------------------
// Django sites: independent copies of tests/django, each with its own database.

struct Site {
    dir: PathBuf,
    /// Django's TIME_ZONE setting (the project's default is UTC).
    time_zone: Option<&'static str>,
}

impl Site {
    /// A fresh copy of the project with an empty migrated database.
    fn new(dir: PathBuf) -> Site {
        Site::in_time_zone(dir, None)
    }

    fn in_time_zone(dir: PathBuf, time_zone: Option<&'static str>) -> Site {
        copy_project(Path::new(PROJECT), &dir);
        let site = Site { dir, time_zone };
        site.manage(&["migrate", "--no-input", "-v", "0"]);
        site
    }

    /// Fill the site with the `seed_compat` command's rows and a media tree.
    fn seed(self) -> Site {
        self.manage(&["seed_compat"]);
        make_media(&self.media());
        self
    }

    fn db(&self) -> PathBuf {
        self.dir.join("db.sqlite3")
    }

    fn media(&self) -> PathBuf {
        self.dir.join("media")
    }

    fn python_command(&self) -> Command {
        let mut cmd = Command::new(venv_python());
        cmd.current_dir(&self.dir)
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .env_remove("DJANGO_SETTINGS_MODULE");
        match self.time_zone {
            Some(zone) => cmd.env("DJANGO_TIME_ZONE", zone),
            None => cmd.env_remove("DJANGO_TIME_ZONE"),
        };
        cmd
    }

    /// Run `manage.py ARGS` in the site; its stdout, or a panic with everything it said.
    fn manage(&self, args: &[&str]) -> String {
        let out = self
            .python_command()
            .arg("manage.py")
            .args(args)
            .output()
            .expect("run manage.py");
        assert!(
            out.status.success(),
            "manage.py {} failed ({}):\n{}",
            args.join(" "),
            out.status,
            output_text(&out)
        );
        String::from_utf8(out.stdout).expect("manage.py output is UTF-8")
    }

    /// `[python, /abs/manage.py, ARGS...]` as a TOML array, for a command-engine definition.
    fn manage_argv(&self, args: &[&str]) -> String {
        let mut argv = vec![
            venv_python().display().to_string(),
            self.dir.join("manage.py").display().to_string(),
        ];
        argv.extend(args.iter().map(|a| a.to_string()));
        toml::Value::Array(argv.into_iter().map(toml::Value::String).collect()).to_string()
    }
}

fn copy_project(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        let skip = ["__pycache__", "db.sqlite3", "media", "var"];
        if skip.iter().any(|s| name == OsStr::new(s)) {
            continue;
        }
        let path = entry.path();
        if path.is_dir() {
            copy_project(&path, &to.join(&name));
        } else {
            fs::copy(&path, to.join(&name)).unwrap();
        }
    }
}

/// A media tree with names holding spaces and non-ASCII, binary content, an
/// empty directory, nested directories and a file the `*.tmp` exclude drops.
fn make_media(media: &Path) {
    let files: &[(&str, &[u8])] = &[
        ("articles/crème 1.png", b"\x89PNG\r\n\x1a\n fake cover"),
        ("articles/a b.png", b"another cover"),
        ("documents/annual report 2024.txt", b"Report\n"),
        ("documents/résumé café.txt", "Grüße, ünïcödé ✓\n".as_bytes()),
        ("documents/日本/説明.txt", "説明\n".as_bytes()),
        ("uploads/.hidden", b"hidden"),
        ("uploads/deep/er/still.txt", b"deep"),
        ("uploads/draft.tmp", b"excluded by *.tmp"),
    ];
    for (name, content) in files {
        let path = media.join(name);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, content).unwrap();
    }
    let blob: Vec<u8> = (0..4096u32).map(|i| (i * 7 % 256) as u8).collect();
    fs::write(media.join("uploads/blob.bin"), blob).unwrap();
    fs::create_dir_all(media.join("empty")).unwrap();
}

// ---------------------------------------------------------------------------
// Our binary.

fn write_config(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    fs::write(&path, text).unwrap();
    path
}

/// A path or string as a TOML string literal.
fn q(value: impl AsRef<OsStr>) -> String {
    let text = value.as_ref().to_str().expect("UTF-8 path").to_string();
    toml::Value::String(text).to_string()
}

fn sqlite_url(db: &Path) -> String {
    assert!(db.is_absolute());
    q(format!("sqlite://{}", db.display()))
}

fn diskette(config: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("--config")
        .arg(config)
        .args(args)
        // Load commands inherit it: keep the project copies free of bytecode.
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env_remove("DISKETTE_CONFIG")
        .output()
        .expect("run diskette")
}

fn diskette_ok(config: &Path, args: &[&str]) -> String {
    let out = diskette(config, args);
    assert!(
        out.status.success(),
        "diskette {} failed ({}):\n{}",
        args.join(" "),
        out.status,
        output_text(&out)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn output_text(out: &Output) -> String {
    format!(
        "--- stdout\n{}--- stderr\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn b2sum(path: &Path) -> String {
    let mut state = blake2b_simd::Params::new().hash_length(64).to_state();
    state.update(&fs::read(path).unwrap());
    state.finalize().to_hex().to_string()
}

// ---------------------------------------------------------------------------
// Comparing databases and trees.

type Rows = Vec<Vec<Value>>;

/// Column names and rows (in rowid order) of one table.
fn table(db: &Path, name: &str) -> (Vec<String>, Rows) {
    let conn = rusqlite::Connection::open(db).unwrap();
    let mut stmt = conn
        .prepare(&format!("SELECT * FROM \"{name}\" ORDER BY rowid"))
        .unwrap();
    let columns = stmt.column_names().iter().map(|c| c.to_string()).collect();
    let n = stmt.column_count();
    let rows = stmt
        .query_map([], |row| (0..n).map(|i| row.get::<_, Value>(i)).collect())
        .unwrap()
        .collect::<Result<Rows, _>>()
        .unwrap();
    (columns, rows)
}

/// Rows as Django stores them after a `dumpdata`/`loaddata` round trip: its
/// JSON form cuts datetimes to milliseconds (`.789123` is stored `.789000`).
fn as_dumped((columns, mut rows): (Vec<String>, Rows)) -> (Vec<String>, Rows) {
    for v in rows.iter_mut().flatten() {
        if let Value::Text(t) = v
            && t.len() == 26
            && t.as_bytes()[19] == b'.'
            && t.as_bytes()[13] == b':'
        {
            *v = match &t[20..23] {
                "000" => Value::Text(t[..19].to_string()),
                ms => Value::Text(format!("{}.{ms}000", &t[..19])),
            };
        }
    }
    (columns, rows)
}

/// Every table of the database except `django_migrations` (its `applied`
/// timestamps differ between two migrated copies of the project).
fn snapshot(db: &Path) -> BTreeMap<String, (Vec<String>, Rows)> {
    let conn = rusqlite::Connection::open(db).unwrap();
    let names: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    names
        .into_iter()
        .filter(|n| n != "django_migrations")
        .map(|n| {
            // Compared as sets of rows: loads in a different order give
            // `sqlite_sequence` rows in a different order, nothing more.
            let (columns, mut rows) = table(db, &n);
            rows.sort_by_key(|r| format!("{r:?}"));
            (n, (columns, rows))
        })
        .collect()
}

/// The snapshot with every `created` value reduced to the instant it denotes,
/// whether written as Django's serializer does (`2024-01-01T15:08:00.120Z`) or
/// as its SQLite backend stores it (`2024-01-01 15:08:00.120000`). The stored
/// form itself is checked by `our_load_stores_datetimes_as_django_does`.
fn instants(
    mut snapshot: BTreeMap<String, (Vec<String>, Rows)>,
) -> BTreeMap<String, (Vec<String>, Rows)> {
    for (columns, rows) in snapshot.values_mut() {
        if let Some(i) = columns.iter().position(|c| c == "created") {
            for row in rows.iter_mut() {
                if let Value::Text(t) = &row[i] {
                    row[i] = Value::Text(instant(t));
                }
            }
        }
    }
    snapshot
}

/// `2024-01-01T15:08:00.120Z` and `2024-01-01 15:08:00.120000` → `2024-01-01 15:08:00.12`.
fn instant(datetime: &str) -> String {
    let s = datetime.trim_end_matches('Z').replacen('T', " ", 1);
    match s.split_once('.') {
        Some((whole, frac)) => {
            let frac = frac.trim_end_matches('0');
            if frac.is_empty() {
                whole.to_string()
            } else {
                format!("{whole}.{frac}")
            }
        }
        None => s,
    }
}

/// Assert two snapshots are equal, naming the tables and rows that differ.
fn assert_same_tables(
    left: &BTreeMap<String, (Vec<String>, Rows)>,
    right: &BTreeMap<String, (Vec<String>, Rows)>,
    what: &str,
) {
    assert_eq!(
        left.keys().collect::<Vec<_>>(),
        right.keys().collect::<Vec<_>>(),
        "{what}: not the same tables"
    );
    let differences: Vec<String> = left
        .iter()
        .filter(|(name, l)| *l != &right[*name])
        .map(|(name, (columns, rows))| {
            let (_, other) = &right[name];
            let mut text = format!("table {name} {columns:?}:");
            let differing: Vec<_> = rows.iter().zip(other).filter(|(l, r)| l != r).collect();
            for (l, r) in differing.iter().take(3) {
                text.push_str(&format!("\n  left:  {l:?}\n  right: {r:?}"));
            }
            if differing.len() > 3 {
                text.push_str(&format!("\n  ... {} rows differ in all", differing.len()));
            }
            if rows.len() != other.len() {
                text.push_str(&format!("\n  {} rows vs {}", rows.len(), other.len()));
            }
            text
        })
        .collect();
    assert!(
        differences.is_empty(),
        "{what}: tables differ\n{}",
        differences.join("\n")
    );
}

#[derive(Debug, PartialEq, Eq)]
enum Node {
    Dir,
    File(Vec<u8>),
    Link(PathBuf),
}

/// Every entry under `root`, by relative path.
fn tree(root: &Path) -> BTreeMap<PathBuf, Node> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Node>) {
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let rel = path.strip_prefix(root).unwrap().to_path_buf();
            let meta = fs::symlink_metadata(&path).unwrap();
            if meta.file_type().is_symlink() {
                out.insert(rel, Node::Link(fs::read_link(&path).unwrap()));
            } else if meta.is_dir() {
                out.insert(rel, Node::Dir);
                walk(root, &path, out);
            } else {
                out.insert(rel, Node::File(fs::read(&path).unwrap()));
            }
        }
    }
    let mut out = BTreeMap::new();
    if root.exists() {
        walk(root, root, &mut out);
    }
    out
}

fn names(tree: &BTreeMap<PathBuf, Node>) -> Vec<String> {
    tree.keys().map(|p| p.display().to_string()).collect()
}

/// The members of a tar.gz archive: path → content (files only).
fn archive_files(archive: &Path) -> BTreeMap<String, Vec<u8>> {
    let gz = flate2::read::GzDecoder::new(fs::File::open(archive).unwrap());
    let mut tar = tar::Archive::new(gz);
    let mut out = BTreeMap::new();
    for entry in tar.entries().unwrap() {
        let mut entry = entry.unwrap();
        if entry.header().entry_type().is_file() {
            let name = entry.path().unwrap().display().to_string();
            let mut content = Vec::new();
            entry.read_to_end(&mut content).unwrap();
            out.insert(name, content);
        }
    }
    out
}

/// A copy of a reference archive (never hand the shared file itself to a loader).
fn reference_archive(name: &str, into: &Path) -> (PathBuf, String) {
    let from = Path::new(REFERENCE).join(name);
    let to = into.join(name);
    fs::copy(&from, &to).unwrap_or_else(|e| panic!("cannot copy {}: {e}", from.display()));
    let b2 = fs::read_to_string(Path::new(REFERENCE).join(format!("{name}.b2"))).unwrap();
    let checksum = b2.split_whitespace().next().unwrap().to_string();
    assert_eq!(b2sum(&to), checksum, "{name} does not match its .b2 file");
    (to, checksum)
}

fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("diskette-django-")
        .tempdir()
        .unwrap()
}

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
    let sql_only = write_config(
        tmp.path(),
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
            db = sqlite_url(&sql_dst.db()),
            base = q(&sql_dst.dir),
        ),
    );
    diskette_ok(&sql_only, &["load", archive_arg, "--checksum", &checksum]);
    assert_same_tables(
        &instants(snapshot(&sql_dst.db())),
        &instants(snapshot(&oracle.db())),
        "SQL engine alone (left) vs original (right)",
    );
    assert!(archive.is_file(), "a local archive must never be deleted");

    // 2. The supported route: `manage.py loaddata` as the command engine for
    //    those fixtures, the SQL engine for the blog.
    let with_commands = write_config(
        tmp.path(),
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
    );
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

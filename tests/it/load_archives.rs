//! `diskette load` on the archives made by Diskette 0.6.0
//! (`tests/fixtures/diskette-0.6.0/`), and what a load does to an existing
//! destination: replaced on success, untouched on any failure.

use crate::support;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(120);

/// A site: a configuration whose storages destination is `dest`, prefilled.
struct Site {
    dir: tempfile::TempDir,
    dest: PathBuf,
    config: PathBuf,
}

impl Site {
    fn new() -> Site {
        let dir = support::temp_dir();
        let dest = dir.path().join("site/dest");
        let config = support::write_config(
            &dir.path().join("config"),
            &format!(
                "[load]\nstorages_basepath = {}\nmax_unpacked_bytes = 67108864\n\
                 [data]\ndatabase_url = {}\n",
                support::toml_path(&dest),
                support::toml_string(&format!("sqlite://{}", dir.path().join("app.db").display())),
            ),
        );
        support::write_files(
            &dest,
            [
                ("media/old.txt", "old media\n"),
                ("media/articles/stale.md", "stale\n"),
                ("uploads/keep.txt", "uploads keep\n"),
            ],
        );
        Site { dir, dest, config }
    }

    fn load(&self, archive: &Path, args: &[&str]) -> support::Run {
        let mut all = vec!["load", archive.to_str().unwrap()];
        all.extend_from_slice(args);
        let mut cmd = support::diskette(&self.config, &all);
        cmd.current_dir(self.dir.path());
        support::run(cmd, LIMIT)
    }

    fn snapshot(&self) -> std::collections::BTreeMap<String, support::Node> {
        support::snapshot(&self.dest)
    }
}

/// What GNU tar extracts from `archive`, under `storage`.
fn gnu_tar_tree(
    archive: &Path,
    storage: &str,
) -> std::collections::BTreeMap<String, Option<Vec<u8>>> {
    let dir = support::temp_dir();
    let status = Command::new("tar")
        .arg("xzf")
        .arg(archive)
        .arg("-C")
        .arg(dir.path())
        .status()
        .expect("run tar");
    assert!(status.success(), "tar xzf {}", archive.display());
    support::tree(&dir.path().join(storage))
}

fn no_leftovers(dest: &Path) {
    for entry in fs::read_dir(dest).unwrap() {
        let name = entry.unwrap().file_name();
        assert!(
            !name.to_string_lossy().starts_with(".diskette"),
            "{name:?} left in {}",
            dest.display()
        );
    }
}

#[test]
fn storages_match_gnu_tar() {
    for name in ["storages.tar.gz", "data_storages.tar.gz"] {
        let site = Site::new();
        let archive = support::reference(name);
        let run = site.load(&archive, &["--no-data"]);
        assert!(run.success(), "{name}: {}", run.stderr);
        assert!(
            run.stderr.contains("1 storage(s)"),
            "{name}: {}",
            run.stderr
        );
        assert_eq!(
            support::tree(&site.dest.join("media")),
            gnu_tar_tree(&archive, "media"),
            "{name}"
        );
        assert!(site.dest.join("media/documents/résumé café.txt").is_file());
        // The previous media is gone, the storage not in the manifest is untouched.
        assert!(!site.dest.join("media/old.txt").exists());
        assert_eq!(
            fs::read_to_string(site.dest.join("uploads/keep.txt")).unwrap(),
            "uploads keep\n"
        );
        no_leftovers(&site.dest);
        assert!(archive.is_file(), "a local archive is never deleted");
    }
}

#[test]
fn data_only_archive_leaves_storages_alone() {
    let site = Site::new();
    let before = site.snapshot();
    let run = site.load(&support::reference("data.tar.gz"), &["--no-data"]);
    assert!(run.success(), "{}", run.stderr);
    assert!(run.stderr.contains("holds no storages"), "{}", run.stderr);
    assert!(support::diff(&before, &site.snapshot()).is_empty());
}

#[test]
fn checksum_is_verified_before_anything_is_written() {
    let site = Site::new();
    let archive = support::reference("storages.tar.gz");
    let good = support::reference_b2("storages.tar.gz");
    let mut wrong = good.clone().into_bytes();
    wrong[0] = if wrong[0] == b'0' { b'1' } else { b'0' };
    let wrong = String::from_utf8(wrong).unwrap();

    let before = site.snapshot();
    let run = site.load(&archive, &["--no-data", "--checksum", &wrong]);
    assert!(!run.success());
    assert!(run.stderr.contains("checksum mismatch"), "{}", run.stderr);
    assert!(
        run.stderr.contains(&wrong) && run.stderr.contains(&good),
        "{}",
        run.stderr
    );
    assert!(support::diff(&before, &site.snapshot()).is_empty());

    let run = site.load(&archive, &["--no-data", "--checksum", &good.to_uppercase()]);
    assert!(run.success(), "{}", run.stderr);
    assert!(run.stderr.contains("Checksum verified"), "{}", run.stderr);
    assert!(site.dest.join("media/logo.png").is_file());

    let run = site.load(&archive, &["--no-data", "--checksum", "abc"]);
    assert!(!run.success());
    assert!(
        run.stderr.contains("128 hexadecimal digits"),
        "{}",
        run.stderr
    );
}

#[test]
fn no_storages_changes_nothing_in_the_destination() {
    let site = Site::new();
    let before = site.snapshot();
    let run = site.load(&support::reference("storages.tar.gz"), &["--no-storages"]);
    assert!(run.success(), "{}", run.stderr);
    assert!(support::diff(&before, &site.snapshot()).is_empty());

    let run = site.load(
        &support::reference("storages.tar.gz"),
        &["--no-storages", "--no-data"],
    );
    assert!(!run.success());
    assert!(run.stderr.contains("nothing to load"), "{}", run.stderr);
}

#[test]
fn storages_basepath_option_overrides_the_configuration() {
    let site = Site::new();
    let before = site.snapshot();
    let other = site.dir.path().join("elsewhere/deeper");
    let run = site.load(
        &support::reference("storages.tar.gz"),
        &["--no-data", "--storages-basepath", other.to_str().unwrap()],
    );
    assert!(run.success(), "{}", run.stderr);
    assert_eq!(
        support::tree(&other.join("media")),
        gnu_tar_tree(&support::reference("storages.tar.gz"), "media")
    );
    assert!(support::diff(&before, &site.snapshot()).is_empty());
    no_leftovers(&other);
}

#[test]
fn missing_archive_is_a_clear_error() {
    let site = Site::new();
    let run = site.load(&site.dir.path().join("nope.tar.gz"), &[]);
    assert_eq!(run.code, Some(1));
    assert!(
        run.stderr.contains("nope.tar.gz not found"),
        "{}",
        run.stderr
    );
}

#[test]
fn failed_load_leaves_the_destination_untouched() {
    let site = Site::new();
    let archive = site.dir.path().join("bad.tar.gz");
    let manifest = support::manifest(None, Some(&["media", "uploads"]));
    support::write_tar_gz(
        &archive,
        &[
            ("manifest.json", Some(manifest.as_bytes())),
            ("media/new.txt", Some(b"new")),
        ],
    );
    let before = site.snapshot();
    let run = site.load(&archive, &[]);
    assert_eq!(run.code, Some(1));
    assert!(run.stderr.contains("storage \"uploads\""), "{}", run.stderr);
    assert!(support::diff(&before, &site.snapshot()).is_empty());
}

#[test]
fn unusable_storage_target_is_refused_before_any_swap() {
    let site = Site::new();
    // `other` is a file in the destination: `other/sub` cannot be restored.
    support::write_files(&site.dest, [("other", "a file\n")]);
    let archive = site.dir.path().join("two.tar.gz");
    let manifest = support::manifest(None, Some(&["media", "other/sub"]));
    support::write_tar_gz(
        &archive,
        &[
            ("manifest.json", Some(manifest.as_bytes())),
            ("media/new.txt", Some(b"new")),
            ("other/sub/x.txt", Some(b"x")),
        ],
    );
    let before = site.snapshot();
    let run = site.load(&archive, &[]);
    assert_eq!(run.code, Some(1));
    assert!(run.stderr.contains("not a directory"), "{}", run.stderr);
    assert!(support::diff(&before, &site.snapshot()).is_empty());
}

#[test]
fn missing_basepath_is_created_and_removed_again_on_failure() {
    let site = Site::new();
    let archive = site.dir.path().join("bad.tar.gz");
    let manifest = support::manifest(None, Some(&["media"]));
    support::write_tar_gz(&archive, &[("manifest.json", Some(manifest.as_bytes()))]);
    let fresh = site.dir.path().join("fresh/base");
    let run = site.load(&archive, &["--storages-basepath", fresh.to_str().unwrap()]);
    assert_eq!(run.code, Some(1));
    assert!(!site.dir.path().join("fresh").exists());

    let run = site.load(
        &support::reference("storages.tar.gz"),
        &["--no-data", "--storages-basepath", fresh.to_str().unwrap()],
    );
    assert!(run.success(), "{}", run.stderr);
    assert!(fresh.join("media/logo.png").is_file());
}

#[test]
fn nested_storage_replaces_only_itself() {
    let site = Site::new();
    support::write_files(&site.dest, [("media/private/secret.txt", "old secret\n")]);
    let archive = site.dir.path().join("nested.tar.gz");
    let manifest = support::manifest(None, Some(&["media/private", "fresh/one"]));
    support::write_tar_gz(
        &archive,
        &[
            ("./", None),
            ("./media/", None),
            ("./media/private/new.txt", Some(b"new secret")),
            ("./fresh/one/a.txt", Some(b"a")),
            ("./manifest.json", Some(manifest.as_bytes())),
        ],
    );
    let run = site.load(&archive, &[]);
    assert!(run.success(), "{}", run.stderr);
    assert_eq!(
        fs::read(site.dest.join("media/private/new.txt")).unwrap(),
        b"new secret"
    );
    assert!(!site.dest.join("media/private/secret.txt").exists());
    assert_eq!(
        fs::read_to_string(site.dest.join("media/old.txt")).unwrap(),
        "old media\n"
    );
    assert_eq!(fs::read(site.dest.join("fresh/one/a.txt")).unwrap(), b"a");
    no_leftovers(&site.dest);
}

#[test]
fn data_files_can_be_excluded_or_skipped_by_size() {
    let site = Site::new();
    let archive = support::reference("data.tar.gz");
    let run = site.load(
        &archive,
        &[
            "--exclude-data",
            "blog.json",
            "--exclude-data",
            "data/djangocontribauth.json",
            "--exclude-data",
            "djangocontribsites.json",
        ],
    );
    assert!(run.success(), "{}", run.stderr);
    assert!(
        run.stderr
            .contains("Skipping data file data/blog.json (--exclude-data)"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("Loaded 0 data file(s)"),
        "{}",
        run.stderr
    );
    assert!(!site.dir.path().join("app.db").exists());

    let big = support::write_config(
        &site.dir.path().join("config2"),
        "[load]\nmin_data_size = 1000000\n",
    );
    let mut cmd = support::diskette(&big, &["load", archive.to_str().unwrap(), "--no-storages"]);
    cmd.current_dir(site.dir.path());
    let run = support::run(cmd, LIMIT);
    assert!(run.success(), "{}", run.stderr);
    assert!(
        run.stderr.contains("under [load] min_data_size"),
        "{}",
        run.stderr
    );
}

/// The tables of the sample project, as Django would create them in SQLite
/// (sites under the label convention: `sites.site` is table `sites_site`).
fn create_app_db(site: &Site) -> PathBuf {
    let path = site.dir.path().join("app.db");
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch(
        "CREATE TABLE sites_site (id INTEGER PRIMARY KEY, domain TEXT NOT NULL, name TEXT NOT NULL);
         CREATE TABLE auth_group (id INTEGER PRIMARY KEY, name TEXT NOT NULL);
         CREATE TABLE blog_category (id INTEGER PRIMARY KEY, name TEXT NOT NULL);
         CREATE TABLE blog_article (id INTEGER PRIMARY KEY, title TEXT NOT NULL, body TEXT NOT NULL,
             category_id INTEGER NOT NULL REFERENCES blog_category(id) DEFERRABLE INITIALLY DEFERRED,
             created TEXT NOT NULL, cover TEXT NOT NULL);
         INSERT INTO sites_site VALUES (1, 'before.test', 'Before');",
    )
    .unwrap();
    path
}

fn count(db: &Path, table: &str) -> i64 {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))
        .unwrap()
}

#[test]
fn loads_blog_fixture_with_the_sql_engine_and_storages() {
    let site = Site::new();
    let db = create_app_db(&site);
    let archive = support::reference("data_storages.tar.gz");
    let run = site.load(
        &archive,
        &[
            "--exclude-data",
            "djangocontribauth.json",
            "--checksum",
            &support::reference_b2("data_storages.tar.gz"),
        ],
    );
    assert!(run.success(), "{}", run.stderr);
    assert!(
        run.stderr.contains("Loaded 2 data file(s)"),
        "{}",
        run.stderr
    );
    assert_eq!(count(&db, "blog_category"), 3);
    assert_eq!(count(&db, "blog_article"), 36);
    let conn = rusqlite::Connection::open(&db).unwrap();
    let (title, category, site_name): (String, i64, String) = conn
        .query_row(
            "SELECT title, category_id, (SELECT name FROM sites_site WHERE id = 1) FROM blog_article WHERE id = 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    // The fixture names the foreign key `category`; it lands in `category_id`.
    assert_eq!((title.as_str(), category), ("Checksum magna labore #1", 3));
    // Upserted by primary key.
    assert_eq!(site_name, "Peer sample A");
    let cafe: String = conn
        .query_row("SELECT name FROM blog_category WHERE id = 3", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(cafe, "Café & Culture");
    assert_eq!(
        support::tree(&site.dest.join("media")),
        gnu_tar_tree(&archive, "media")
    );
}

#[test]
fn unmappable_fixture_fails_the_whole_load_before_anything_changes() {
    let site = Site::new();
    let db = create_app_db(&site);
    let before = site.snapshot();
    let run = site.load(&support::reference("data_storages.tar.gz"), &[]);
    assert!(!run.success());
    // auth.group's permissions are a many-to-many list of natural keys.
    assert!(
        run.stderr.contains("auth.group") && run.stderr.contains("permissions"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("load_command"), "{}", run.stderr);
    // The sites fixture came first in the same transaction: rolled back.
    let conn = rusqlite::Connection::open(&db).unwrap();
    let name: String = conn
        .query_row("SELECT name FROM sites_site WHERE id = 1", [], |r| r.get(0))
        .unwrap();
    assert_eq!(name, "Before");
    assert_eq!(count(&db, "blog_article"), 0);
    assert!(support::diff(&before, &site.snapshot()).is_empty());
}

#[test]
fn unknown_model_fails_clearly() {
    let site = Site::new();
    let db = create_app_db(&site);
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute_batch("DROP TABLE sites_site").unwrap();
    drop(conn);
    let before = site.snapshot();
    let run = site.load(
        &support::reference("data.tar.gz"),
        &["--exclude-data", "djangocontribauth.json"],
    );
    assert!(!run.success());
    assert!(
        run.stderr.contains("data/djangocontribsites.json") && run.stderr.contains("sites.site"),
        "{}",
        run.stderr
    );
    assert_eq!(count(&db, "blog_article"), 0);
    assert!(support::diff(&before, &site.snapshot()).is_empty());
}

//! A storage that changes while it is archived: the dump completes with a
//! warning and a valid archive, or fails cleanly; never a corrupt archive.
//!
//! The changes are made from the progress callback, which runs while the
//! first file is being read, so they happen mid-dump on every run.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use diskette::Config;
use diskette::dump::{DumpOptions, dump};
use diskette::progress::Progress;

use crate::support::noise;

/// Runs `change` once, at the first chunk of file content read.
struct ChangeOnce {
    change: Mutex<Option<Box<dyn FnOnce() + Send>>>,
    lines: Mutex<Vec<String>>,
}

impl ChangeOnce {
    fn new(change: impl FnOnce() + Send + 'static) -> Self {
        ChangeOnce {
            change: Mutex::new(Some(Box::new(change))),
            lines: Mutex::new(Vec::new()),
        }
    }
    fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }
}

impl Progress for ChangeOnce {
    fn advance(&self, bytes: u64, _files: u64) {
        if bytes > 0
            && let Some(change) = self.change.lock().unwrap().take()
        {
            change();
        }
    }
    fn log(&self, line: &str) {
        self.lines.lock().unwrap().push(line.to_string());
    }
}

fn site() -> (tempfile::TempDir, Config) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("media")).unwrap();
    std::fs::write(dir.path().join("media/a.bin"), noise(2_000_000, 1)).unwrap();
    std::fs::write(dir.path().join("media/b.bin"), noise(50_000, 2)).unwrap();
    let config = Config::from_toml(
        "[storages]\npaths = [\"media\"]\n[dump]\npath = \"dumps\"\n",
        dir.path(),
        Vec::new(),
    )
    .unwrap();
    (dir, config)
}

fn dumps(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir.join("dumps"))
        .map(|rd| rd.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default()
}

fn read_member(archive: &Path, name: &str) -> Option<Vec<u8>> {
    let file = std::fs::File::open(archive).unwrap();
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(file));
    for entry in tar.entries().unwrap() {
        let mut entry = entry.unwrap();
        if entry.path().unwrap().to_str() == Some(name) {
            let mut buf = Vec::new();
            entry.read_to_end(&mut buf).unwrap();
            return Some(buf);
        }
    }
    None
}

#[test]
fn a_file_that_grows_is_archived_as_it_was_with_a_warning() {
    let (dir, config) = site();
    let path = dir.path().join("media/a.bin");
    let grow = path.clone();
    let progress = ChangeOnce::new(move || {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new().append(true).open(grow).unwrap();
        f.write_all(&noise(300_000, 9)).unwrap();
    });
    let outcome = dump(&config, &DumpOptions::new(false, true), &progress).unwrap();
    assert!(
        progress
            .lines()
            .iter()
            .any(|l| l.contains("media/a.bin grew")),
        "{:?}",
        progress.lines()
    );
    let archived = read_member(&outcome.path, "media/a.bin").unwrap();
    assert_eq!(archived, noise(2_000_000, 1));
    let whole = std::fs::File::open(&outcome.path).unwrap();
    assert_eq!(
        diskette::checksum::of_reader(whole).unwrap(),
        outcome.checksum
    );
}

#[test]
fn a_file_that_shrinks_fails_the_dump_cleanly() {
    let (dir, config) = site();
    let path = dir.path().join("media/a.bin");
    let progress = ChangeOnce::new(move || {
        std::fs::OpenOptions::new()
            .write(true)
            .open(path)
            .unwrap()
            .set_len(1000)
            .unwrap();
    });
    let err = dump(&config, &DumpOptions::new(false, true), &progress)
        .unwrap_err()
        .to_string();
    assert!(err.contains("media/a.bin shrank"), "{err}");
    assert!(dumps(dir.path()).is_empty(), "{:?}", dumps(dir.path()));
}

#[test]
fn a_file_deleted_before_it_is_read_is_skipped_with_a_warning() {
    let (dir, config) = site();
    let victim = dir.path().join("media/b.bin");
    let progress = ChangeOnce::new(move || std::fs::remove_file(victim).unwrap());
    let outcome = dump(&config, &DumpOptions::new(false, true), &progress).unwrap();
    assert!(
        progress
            .lines()
            .iter()
            .any(|l| l.contains("b.bin") && l.contains("vanished")),
        "{:?}",
        progress.lines()
    );
    assert!(read_member(&outcome.path, "media/b.bin").is_none());
    assert_eq!(
        read_member(&outcome.path, "media/a.bin").unwrap(),
        noise(2_000_000, 1)
    );
}

//! `diskette load`: verify, extract safely, load data in one transaction, swap storages.
//!
//! The order is what makes a load safe:
//!
//! 1. resolve the source: a local file, or a download;
//! 2. verify the checksum when one is given, before reading the archive;
//! 3. extract into a private temporary directory inside the storages
//!    destination (same file system, so storages can be renamed into place),
//!    refusing anything hostile (see [`crate::archive::extract`]);
//! 4. check every data file to load is JSON, and every storage target is
//!    usable, before anything changes;
//! 5. apply the data in one transaction, left open;
//! 6. swap each storage of the manifest into place, the previous directory
//!    moved aside into the temporary directory;
//! 7. commit the data; if that fails, put the previous storages back;
//! 8. remove the temporary directory (and the moved-aside storages), and a
//!    downloaded archive unless `--keep`.
//!
//! A refusal at any step leaves the destination and the database as they were.
//! Storages the manifest does not list are never touched.

use std::fmt;
use std::fs::{self, File};
use std::io::BufReader;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde::de::{IgnoredAny, SeqAccess, Visitor};
use tempfile::TempDir;

use crate::Config;
use crate::archive::extract::{self, Extracted, Limits};
use crate::engine::{self, DataFile};
use crate::error::{Error, IoContext, Result};
use crate::fetch;
use crate::progress::Progress;

#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// A local path or an http(s) URL.
    pub source: String,
    pub with_data: bool,
    pub with_storages: bool,
    /// Where storages are restored (default: `[load] storages_basepath`).
    pub storages_basepath: Option<PathBuf>,
    /// Data files to skip: the file name (`blog.json`) or the name in the
    /// archive (`data/blog.json`).
    pub exclude_data: Vec<String>,
    /// Expected BLAKE2b hex (128 chars), checked before extraction.
    pub checksum: Option<String>,
    /// Keep a downloaded archive.
    pub keep: bool,
    pub download_destination: Option<PathBuf>,
}

#[derive(Debug, Default, Clone)]
pub struct LoadReport {
    /// Storages restored, as named in the manifest.
    pub storages: Vec<String>,
    pub data_files: usize,
    pub rows: u64,
    /// Data files of the archive not loaded (excluded, or under `[load] min_data_size`).
    pub skipped_data: Vec<String>,
    /// A downloaded archive left on disk (`--keep`).
    pub kept_download: Option<PathBuf>,
}

impl fmt::Display for LoadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Loaded {} data file(s) ({} rows) and {} storage(s)",
            self.data_files,
            self.rows,
            self.storages.len()
        )
    }
}

/// Load an archive (a local file or an http(s) URL); see the module docs for
/// the order of the steps and what a failure leaves behind.
pub fn load(config: &Config, opts: &LoadOptions, progress: &dyn Progress) -> Result<LoadReport> {
    if !opts.with_data && !opts.with_storages {
        return Err(Error::Usage(
            "--no-data and --no-storages together leave nothing to load".into(),
        ));
    }
    if let Some(hex) = &opts.checksum
        && !crate::checksum::is_valid_hex(hex)
    {
        return Err(Error::Usage(format!(
            "checksum {hex:?} is not 128 hexadecimal digits"
        )));
    }
    let source = Source::resolve(config, opts, progress)?;
    let result = load_file(config, opts, &source, progress);
    let kept = source.finish(opts.keep, progress);
    result.map(|mut report| {
        report.kept_download = kept;
        report
    })
}

/// The archive to load, and how to clean up after it.
struct Source {
    path: PathBuf,
    download: Option<Download>,
}

struct Download {
    /// Computed while downloading, so the file is not read twice.
    checksum: String,
    /// The private directory holding the file, without `--download-destination`.
    dir: Option<TempDir>,
}

impl Source {
    fn resolve(config: &Config, opts: &LoadOptions, progress: &dyn Progress) -> Result<Source> {
        if fetch::is_url(&opts.source) {
            fetch::check_scheme(&config.load, &opts.source)?;
            let (dest, dir) = match &opts.download_destination {
                Some(d) => (d.clone(), None),
                None => {
                    let tmp = std::env::temp_dir();
                    let dir = tempfile::Builder::new()
                        .prefix(".diskette-download-")
                        .tempdir_in(&tmp)
                        .ctx("create a temporary directory in", &tmp)?;
                    (dir.path().to_path_buf(), Some(dir))
                }
            };
            progress.log(&format!("Downloading {}", opts.source));
            let request = fetch::Request {
                url: &opts.source,
                ..Default::default()
            };
            let fetched = fetch::fetch(&config.load, &request, &dest, progress)?;
            progress.log(&format!(
                "Downloaded {} bytes into {}",
                fetched.size,
                fetched.path.display()
            ));
            return Ok(Source {
                path: fetched.path,
                download: Some(Download {
                    checksum: fetched.checksum,
                    dir,
                }),
            });
        }
        let path = PathBuf::from(&opts.source);
        match fs::metadata(&path) {
            Ok(m) if m.is_file() => Ok(Source {
                path,
                download: None,
            }),
            Ok(_) => Err(Error::Usage(format!(
                "archive {} is not a file",
                path.display()
            ))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Error::Usage(format!(
                "archive {} not found",
                path.display()
            ))),
            Err(e) => Err(Error::io("read", &path, e)),
        }
    }

    /// Delete a downloaded archive unless `keep`; never a local one. Returns
    /// where a kept download lies.
    fn finish(self, keep: bool, progress: &dyn Progress) -> Option<PathBuf> {
        let download = self.download?;
        if keep {
            if let Some(dir) = download.dir {
                let _ = dir.keep();
            }
            progress.log(&format!(
                "Kept the downloaded archive {}",
                self.path.display()
            ));
            return Some(self.path);
        }
        match fs::remove_file(&self.path) {
            Ok(()) => progress.log(&format!(
                "Removed the downloaded archive {}",
                self.path.display()
            )),
            Err(e) => progress.warn(&format!(
                "could not remove the downloaded archive {}: {e}",
                self.path.display()
            )),
        }
        None
    }
}

fn load_file(
    config: &Config,
    opts: &LoadOptions,
    source: &Source,
    progress: &dyn Progress,
) -> Result<LoadReport> {
    if let Some(expected) = &opts.checksum {
        let actual = match &source.download {
            Some(d) => d.checksum.clone(),
            None => {
                let file = File::open(&source.path).ctx("open", &source.path)?;
                crate::checksum::of_reader(BufReader::new(file)).ctx("read", &source.path)?
            }
        };
        if !actual.eq_ignore_ascii_case(expected) {
            return Err(Error::Archive(format!(
                "checksum mismatch for {}: expected {}, got {actual}; nothing was loaded",
                source.path.display(),
                expected.to_ascii_lowercase()
            )));
        }
        progress.log("Checksum verified (BLAKE2b)");
    }

    let basepath = opts
        .storages_basepath
        .clone()
        .unwrap_or_else(|| config.load.storages_basepath.clone());
    let basepath = std::path::absolute(&basepath).ctx("resolve", &basepath)?;
    // Directories made for the load; removed at the end if still empty.
    let mut created = CreatedDirs::default();
    let parent = if opts.with_storages {
        created.create_all(&basepath)?;
        fs::canonicalize(&basepath).ctx("resolve", &basepath)?
    } else {
        std::env::temp_dir()
    };

    progress.log(&format!("Extracting {}", source.path.display()));
    let extracted = extract::extract(
        &source.path,
        &parent,
        &Limits::from_config(&config.load),
        progress,
    )?;
    let manifest = &extracted.manifest;
    progress.log(&format!(
        "Archive of Diskette {} created {}: {} entries, {} bytes of files",
        manifest.version, manifest.creation, extracted.entries, extracted.file_bytes
    ));

    let mut report = LoadReport::default();
    let data_files = select_data(config, opts, &extracted, &mut report, progress)?;
    let storages = if opts.with_storages {
        let list = manifest.storages.clone().unwrap_or_default();
        if list.is_empty() {
            progress.log("The archive holds no storages");
        }
        for storage in &list {
            check_target(&parent, storage)?;
        }
        list
    } else {
        progress.log("Storages not restored (--no-storages)");
        Vec::new()
    };
    if progress.is_cancelled() {
        return Err(Error::Cancelled);
    }

    // Dropped on any error below: the transaction rolls back.
    let prepared = if data_files.is_empty() {
        None
    } else {
        progress.log(&format!("Loading {} data file(s)", data_files.len()));
        Some(engine::prepare_load(config, &data_files, progress)?)
    };

    let mut swap = Swap::new(extracted.dir().join("previous"));
    for storage in &storages {
        if let Err(e) = swap.install(&extracted.path_of(storage), &parent, storage) {
            swap.rollback(progress);
            return Err(e);
        }
        progress.log(&format!("Restored storage {storage}"));
    }
    if let Some(prepared) = prepared {
        match prepared.commit(config, progress) {
            Ok(data) => {
                report.data_files = data.files;
                report.rows = data.rows;
            }
            Err(e) => {
                if !storages.is_empty() {
                    progress.log("Loading the data failed: putting the previous storages back");
                }
                swap.rollback(progress);
                return Err(e);
            }
        }
    }
    report.storages = storages;
    // The previous storages went into the temporary directory: gone with it.
    let tmp = extracted.dir().to_path_buf();
    if let Err(e) = extracted.close() {
        progress.warn(&format!(
            "could not remove the temporary directory {}: {e}",
            tmp.display()
        ));
    }
    drop(created);
    Ok(report)
}

/// The data files to load, in manifest order, each checked to be JSON.
fn select_data(
    config: &Config,
    opts: &LoadOptions,
    extracted: &Extracted,
    report: &mut LoadReport,
    progress: &dyn Progress,
) -> Result<Vec<DataFile>> {
    let datas = extracted.manifest.datas.as_deref().unwrap_or_default();
    if !opts.with_data {
        if !datas.is_empty() {
            progress.log("Data not loaded (--no-data)");
        }
        return Ok(Vec::new());
    }
    if datas.is_empty() {
        progress.log("The archive holds no data");
    }
    for exclude in &opts.exclude_data {
        if !datas
            .iter()
            .any(|d| excluded(d, std::slice::from_ref(exclude)))
        {
            progress.warn(&format!(
                "--exclude-data {exclude}: the archive has no such data file"
            ));
        }
    }
    let mut files = Vec::new();
    for name in datas {
        if excluded(name, &opts.exclude_data) {
            progress.log(&format!("Skipping data file {name} (--exclude-data)"));
            report.skipped_data.push(name.clone());
            continue;
        }
        let path = extracted.path_of(name);
        let size = fs::symlink_metadata(&path).ctx("inspect", &path)?.len();
        if size < config.load.min_data_size {
            progress.log(&format!(
                "Skipping data file {name}: {size} bytes, under [load] min_data_size ({})",
                config.load.min_data_size
            ));
            report.skipped_data.push(name.clone());
            continue;
        }
        check_fixture(&path, name)?;
        files.push(DataFile {
            name: name.clone(),
            path,
        });
    }
    Ok(files)
}

/// `blog.json` and `data/blog.json` both exclude `data/blog.json`.
fn excluded(name: &str, excludes: &[String]) -> bool {
    let file_name = name.rsplit('/').next().unwrap_or(name);
    excludes.iter().any(|x| x == name || x == file_name)
}

/// A JSON array (a Django fixture), read streaming without keeping the records.
fn check_fixture(path: &Path, name: &str) -> Result<()> {
    struct Records;
    impl<'de> Deserialize<'de> for Records {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
            d.deserialize_seq(Records)
        }
    }
    impl<'de> Visitor<'de> for Records {
        type Value = Records;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a JSON array of records")
        }
        fn visit_seq<A: SeqAccess<'de>>(
            self,
            mut seq: A,
        ) -> std::result::Result<Records, A::Error> {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            Ok(Records)
        }
    }
    let file = File::open(path).ctx("open", path)?;
    serde_json::from_reader::<_, Records>(BufReader::new(file))
        .map(|_| ())
        .map_err(|e| Error::Archive(format!("data file {name} is not a valid JSON fixture: {e}")))
}

/// Refuse a storage whose place in the destination cannot be swapped safely:
/// a path through a file or a symbolic link, or a target that is not a directory.
fn check_target(basepath: &Path, storage: &str) -> Result<()> {
    let target = basepath.join(storage);
    // The manifest only lists relative paths of normal components.
    if !target.starts_with(basepath) || storage.split('/').any(|c| c.is_empty() || c == "..") {
        return Err(Error::Archive(format!(
            "storage {storage:?} lies outside the destination"
        )));
    }
    let mut dir = basepath.to_path_buf();
    for component in storage.split('/') {
        dir.push(component);
        match fs::symlink_metadata(&dir) {
            Ok(m) if m.is_dir() => {}
            Ok(m) => {
                let what = if m.file_type().is_symlink() {
                    "a symbolic link"
                } else {
                    "not a directory"
                };
                return Err(Error::Usage(format!(
                    "cannot restore storage {storage}: {} is {what}; nothing was changed",
                    dir.display()
                )));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(Error::io("inspect", &dir, e)),
        }
    }
    Ok(())
}

/// The renames of a storage swap, undone in reverse order on failure.
struct Swap {
    previous_dir: PathBuf,
    steps: Vec<Step>,
}

enum Step {
    CreatedDir(PathBuf),
    MovedAside { target: PathBuf, previous: PathBuf },
    Installed { target: PathBuf, source: PathBuf },
}

impl Swap {
    fn new(previous_dir: PathBuf) -> Self {
        Swap {
            previous_dir,
            steps: Vec::new(),
        }
    }

    fn install(&mut self, source: &Path, basepath: &Path, storage: &str) -> Result<()> {
        let target = basepath.join(storage);
        let mut dir = basepath.to_path_buf();
        let parts: Vec<&str> = storage.split('/').collect();
        for part in &parts[..parts.len() - 1] {
            dir.push(part);
            if fs::symlink_metadata(&dir).is_err() {
                fs::create_dir(&dir).ctx("create directory", &dir)?;
                self.steps.push(Step::CreatedDir(dir.clone()));
            }
        }
        match fs::symlink_metadata(&target) {
            Ok(_) => {
                if !self.previous_dir.exists() {
                    fs::create_dir(&self.previous_dir)
                        .ctx("create directory", &self.previous_dir)?;
                }
                let previous = self.previous_dir.join(self.steps.len().to_string());
                fs::rename(&target, &previous).ctx("move aside", &target)?;
                self.steps.push(Step::MovedAside {
                    target: target.clone(),
                    previous,
                });
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("inspect", &target, e)),
        }
        fs::rename(source, &target).ctx("move into place", &target)?;
        self.steps.push(Step::Installed {
            target,
            source: source.to_path_buf(),
        });
        Ok(())
    }

    /// Put the destination back as it was; what cannot be undone is reported.
    fn rollback(&mut self, progress: &dyn Progress) {
        while let Some(step) = self.steps.pop() {
            let (result, what) = match &step {
                Step::Installed { target, source } => (fs::rename(target, source), target),
                Step::MovedAside { target, previous } => (fs::rename(previous, target), previous),
                Step::CreatedDir(dir) => (fs::remove_dir(dir), dir),
            };
            if let Err(e) = result {
                progress.warn(&format!("could not restore {}: {e}", what.display()));
            }
        }
    }
}

/// Directories created for a load (the storages basepath and its missing
/// parents). On drop, those still empty are removed again, so a refused load
/// leaves nothing behind.
#[derive(Default)]
struct CreatedDirs(Vec<PathBuf>);

impl CreatedDirs {
    fn create_all(&mut self, path: &Path) -> Result<()> {
        let mut missing = Vec::new();
        let mut p = path;
        while fs::symlink_metadata(p).is_err() {
            missing.push(p.to_path_buf());
            match p.parent() {
                Some(parent) => p = parent,
                None => break,
            }
        }
        for dir in missing.into_iter().rev() {
            fs::create_dir(&dir).ctx("create directory", &dir)?;
            self.0.push(dir);
        }
        Ok(())
    }
}

impl Drop for CreatedDirs {
    fn drop(&mut self) {
        for dir in self.0.iter().rev() {
            // Fails (and keeps the directory) when something was restored into it.
            let _ = fs::remove_dir(dir);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exclusion_matches_file_name_or_archive_name() {
        let x = vec!["blog.json".to_string(), "data/auth.json".to_string()];
        assert!(excluded("data/blog.json", &x));
        assert!(excluded("data/auth.json", &x));
        assert!(!excluded("data/sites.json", &x));
    }

    fn write(path: &Path, text: &str) {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
    }

    fn listing(root: &Path) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut stack = vec![root.to_path_buf()];
        while let Some(dir) = stack.pop() {
            for e in fs::read_dir(&dir).unwrap() {
                let p = e.unwrap().path();
                let rel = p.strip_prefix(root).unwrap().display().to_string();
                if p.is_dir() {
                    out.push((rel + "/", String::new()));
                    stack.push(p);
                } else {
                    out.push((rel, fs::read_to_string(&p).unwrap()));
                }
            }
        }
        out.sort();
        out
    }

    #[test]
    fn swap_rolls_back_every_step() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("base");
        let tmp = dir.path().join("tmp");
        write(&base.join("media/old.txt"), "old");
        write(&base.join("other/keep.txt"), "keep");
        write(&tmp.join("tree/media/new.txt"), "new");
        write(&tmp.join("tree/deep/sub/x.txt"), "x");
        let before = listing(&base);

        let mut swap = Swap::new(tmp.join("previous"));
        swap.install(&tmp.join("tree/media"), &base, "media")
            .unwrap();
        swap.install(&tmp.join("tree/deep/sub"), &base, "deep/sub")
            .unwrap();
        assert_eq!(
            fs::read_to_string(base.join("media/new.txt")).unwrap(),
            "new"
        );
        assert_eq!(
            fs::read_to_string(base.join("deep/sub/x.txt")).unwrap(),
            "x"
        );
        // A third step fails (its source is missing): everything goes back.
        assert!(
            swap.install(&tmp.join("tree/absent"), &base, "other")
                .is_err()
        );
        swap.rollback(&crate::progress::Silent);
        assert_eq!(listing(&base), before);
        assert_eq!(
            fs::read_to_string(tmp.join("tree/media/new.txt")).unwrap(),
            "new"
        );
    }

    #[test]
    fn fixtures_must_be_json_arrays() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f.json");
        for (text, ok) in [
            ("[]", true),
            (r#"[{"model": "a.b", "pk": 1, "fields": {}}] "#, true),
            ("{}", false),
            (r#"[{"model": "x", "pk": 1, "#, false),
            ("[] []", false),
        ] {
            fs::write(&p, text).unwrap();
            assert_eq!(check_fixture(&p, "data/f.json").is_ok(), ok, "{text}");
        }
    }
}

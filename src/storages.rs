//! Storage directories: validation, walking with excludes, the symlink policy.

use std::fs::Metadata;
use std::path::{Component, Path, PathBuf};

use globset::{Glob, GlobSet, GlobSetBuilder};

use crate::config::StoragesConfig;
use crate::error::{Error, IoContext, Result};
use crate::progress::Progress;

/// A validated storage directory.
#[derive(Debug, Clone)]
pub struct Storage {
    /// The directory with symlinks resolved.
    pub root: PathBuf,
    /// Its name in the archive: the path relative to the storages basepath.
    pub arcname: String,
}

/// What errors call the storage settings: the configuration keys, or the
/// command-line options that replaced them for one run.
#[derive(Debug, Clone, Copy)]
pub struct SettingNames {
    pub basepath: &'static str,
    pub paths: &'static str,
    pub excludes: &'static str,
}

impl SettingNames {
    pub const CONFIG: SettingNames = SettingNames {
        basepath: "storages.basepath",
        paths: "storages.paths",
        excludes: "storages.excludes",
    };
}

/// Check every storage of the configuration (DESIGN §2) before anything is written.
pub fn validate(config: &StoragesConfig) -> Result<Vec<Storage>> {
    validate_named(config, &SettingNames::CONFIG)
}

/// `validate`, with errors naming the settings as `names` says.
pub fn validate_named(config: &StoragesConfig, names: &SettingNames) -> Result<Vec<Storage>> {
    let (key_base, key) = (names.basepath, names.paths);
    let basepath = config.basepath.canonicalize().map_err(|e| {
        Error::Config(format!(
            "{key_base}: {} cannot be used: {e}",
            config.basepath.display()
        ))
    })?;
    if !basepath.is_dir() {
        return Err(Error::Config(format!(
            "{key_base}: {} is not a directory",
            config.basepath.display()
        )));
    }
    let mut storages: Vec<Storage> = Vec::new();
    for path in &config.paths {
        let shown = path.display();
        let meta = std::fs::metadata(path)
            .map_err(|e| Error::Config(format!("{key}: {shown} cannot be used: {e}")))?;
        if !meta.is_dir() {
            return Err(Error::Config(format!("{key}: {shown} is not a directory")));
        }
        let root = path
            .canonicalize()
            .map_err(|e| Error::Config(format!("{key}: {shown}: {e}")))?;
        let rel = root
            .strip_prefix(&basepath)
            .ok()
            .filter(|r| r.components().next().is_some())
            .ok_or_else(|| {
                Error::Config(format!(
                    "{key}: {shown} is not inside the storages basepath {}",
                    basepath.display()
                ))
            })?;
        let arcname = rel
            .to_str()
            .ok_or_else(|| Error::Config(format!("{key}: {shown} is not valid UTF-8")))?
            .to_string();
        if let Some(Component::Normal(first)) = rel.components().next()
            && (first == crate::archive::DATA_DIR || first == crate::archive::MANIFEST)
        {
            return Err(Error::Config(format!(
                "{key}: {shown} would collide with the archive's {} entry",
                first.to_string_lossy()
            )));
        }
        if let Some(other) = storages
            .iter()
            .find(|s| s.root.starts_with(&root) || root.starts_with(&s.root))
        {
            return Err(Error::Config(format!(
                "{key}: {shown} is listed twice (it overlaps {})",
                other.arcname
            )));
        }
        storages.push(Storage { root, arcname });
    }
    Ok(storages)
}

/// Exclude patterns: shell-style globs matched against the path inside a storage,
/// like Python's `fnmatch` (case-sensitive, `*` crosses `/`, anchored at the root).
#[derive(Debug, Clone)]
pub struct Excludes(Option<GlobSet>);

impl Excludes {
    pub fn new(patterns: &[String]) -> Result<Excludes> {
        Excludes::named(patterns, SettingNames::CONFIG.excludes)
    }

    /// `new`, with errors naming the setting `key`.
    pub fn named(patterns: &[String], key: &str) -> Result<Excludes> {
        if patterns.is_empty() {
            return Ok(Excludes(None));
        }
        let mut builder = GlobSetBuilder::new();
        for p in patterns {
            let glob = Glob::new(p).map_err(|e| Error::Config(format!("{key}: {p:?}: {e}")))?;
            builder.add(glob);
        }
        let set = builder
            .build()
            .map_err(|e| Error::Config(format!("{key}: {e}")))?;
        Ok(Excludes(Some(set)))
    }

    pub fn none() -> Excludes {
        Excludes(None)
    }

    pub fn is_excluded(&self, rel: &str) -> bool {
        self.0.as_ref().is_some_and(|set| set.is_match(rel))
    }
}

/// What an archived storage entry is.
#[derive(Debug)]
pub enum EntryKind {
    Dir,
    File,
    /// A symlink whose target stays inside the storage; the target as stored.
    Symlink(PathBuf),
}

#[derive(Debug)]
pub struct Entry {
    pub path: PathBuf,
    /// `<storage arcname>/<path inside the storage>`.
    pub arcname: String,
    pub kind: EntryKind,
    pub meta: Metadata,
}

/// Walk a storage in a stable order (sorted by name), applying the excludes and
/// the symlink policy. Skipped entries are reported through `progress.warn`.
pub fn walk<'a>(
    storage: &'a Storage,
    excludes: &'a Excludes,
    progress: &'a dyn Progress,
) -> impl Iterator<Item = Result<Entry>> + 'a {
    let mut it = walkdir::WalkDir::new(&storage.root)
        .follow_links(false)
        .sort_by_file_name()
        .min_depth(1)
        .into_iter();
    std::iter::from_fn(move || {
        loop {
            let dent = match it.next()? {
                Ok(d) => d,
                Err(e) => {
                    let path = e.path().map(Path::to_path_buf).unwrap_or_default();
                    if e.io_error().map(|io| io.kind()) == Some(std::io::ErrorKind::NotFound) {
                        progress.warn(&format!(
                            "{} vanished while archived, skipped",
                            path.display()
                        ));
                        continue;
                    }
                    let io = e
                        .into_io_error()
                        .unwrap_or_else(|| std::io::Error::other("file system loop"));
                    return Some(Err(Error::io("read", path, io)));
                }
            };
            let rel_path = dent
                .path()
                .strip_prefix(&storage.root)
                .unwrap_or(dent.path());
            let Some(rel) = rel_path.to_str() else {
                progress.warn(&format!(
                    "{} has a name that is not UTF-8, skipped",
                    dent.path().display()
                ));
                if dent.file_type().is_dir() {
                    it.skip_current_dir();
                }
                continue;
            };
            let is_dir = dent.file_type().is_dir();
            if excludes.is_excluded(rel) {
                if is_dir {
                    it.skip_current_dir();
                }
                continue;
            }
            let arcname = format!("{}/{rel}", storage.arcname);
            let meta = match dent.metadata() {
                Ok(m) => m,
                Err(e) => {
                    if e.io_error().map(|io| io.kind()) == Some(std::io::ErrorKind::NotFound) {
                        progress.warn(&format!(
                            "{} vanished while archived, skipped",
                            dent.path().display()
                        ));
                        continue;
                    }
                    let io = e
                        .into_io_error()
                        .unwrap_or_else(|| std::io::Error::other("metadata"));
                    return Some(Err(Error::io("read", dent.path(), io)));
                }
            };
            let ft = dent.file_type();
            let kind = if ft.is_dir() {
                EntryKind::Dir
            } else if ft.is_file() {
                EntryKind::File
            } else if ft.is_symlink() {
                match inside_target(&storage.root, dent.path()) {
                    Ok(Some(target)) => EntryKind::Symlink(target),
                    Ok(None) => {
                        progress.warn(&format!(
                            "symlink {arcname} points outside its storage or nowhere, skipped"
                        ));
                        continue;
                    }
                    Err(e) => return Some(Err(e)),
                }
            } else {
                progress.warn(&format!(
                    "{arcname} is not a regular file, directory or symlink, skipped"
                ));
                continue;
            };
            return Some(Ok(Entry {
                path: dent.path().to_path_buf(),
                arcname,
                kind,
                meta,
            }));
        }
    })
}

/// The target to store for a symlink if it resolves inside `root`: relative, so
/// it stays valid wherever the storage is restored. None for outside or dangling.
fn inside_target(root: &Path, link: &Path) -> Result<Option<PathBuf>> {
    let Ok(resolved) = link.canonicalize() else {
        return Ok(None);
    };
    if !resolved.starts_with(root) || resolved == root {
        return Ok(None);
    }
    let raw = std::fs::read_link(link).ctx("read link", link)?;
    if raw.is_relative() && lexically_inside(root, link, &raw) {
        return Ok(Some(raw));
    }
    // An absolute (or roundabout) target inside the storage: store it relative.
    let link_dir = link
        .parent()
        .and_then(|p| p.canonicalize().ok())
        .unwrap_or_else(|| root.to_path_buf());
    Ok(Some(relative_path(&link_dir, &resolved)))
}

/// True when `target`, read from the directory of `link`, never leaves `root`
/// by its own components (no `..` climbing above the storage).
fn lexically_inside(root: &Path, link: &Path, target: &Path) -> bool {
    let Ok(rel_dir) = link.parent().unwrap_or(root).strip_prefix(root) else {
        return false;
    };
    let mut depth = rel_dir.components().count() as isize;
    for c in target.components() {
        match c {
            Component::ParentDir => depth -= 1,
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            _ => return false,
        }
        if depth < 0 {
            return false;
        }
    }
    depth > 0
}

fn relative_path(from_dir: &Path, to: &Path) -> PathBuf {
    let from: Vec<_> = from_dir.components().collect();
    let to_c: Vec<_> = to.components().collect();
    let common = from.iter().zip(&to_c).take_while(|(a, b)| a == b).count();
    let mut out = PathBuf::new();
    for _ in common..from.len() {
        out.push("..");
    }
    for c in &to_c[common..] {
        out.push(c.as_os_str());
    }
    out
}

/// Totals of a walk, for progress and `--check`.
#[derive(Debug, Default, Clone, Copy)]
pub struct Totals {
    pub files: u64,
    pub dirs: u64,
    pub bytes: u64,
}

pub fn totals(storage: &Storage, excludes: &Excludes, progress: &dyn Progress) -> Result<Totals> {
    let mut t = Totals::default();
    for entry in walk(storage, excludes, progress) {
        let entry = entry?;
        match entry.kind {
            EntryKind::Dir => t.dirs += 1,
            EntryKind::File => {
                t.files += 1;
                t.bytes += entry.meta.len();
            }
            EntryKind::Symlink(_) => t.files += 1,
        }
    }
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excludes_follow_fnmatch() {
        let ex = Excludes::new(&["*.tmp".into(), "*~".into(), "cache/*".into()]).unwrap();
        assert!(ex.is_excluded("articles/2024/draft.tmp"));
        assert!(ex.is_excluded("documents/legal/privacy.html~"));
        assert!(ex.is_excluded("cache/thumb-1.jpg"));
        assert!(ex.is_excluded("cache/sub/thumb-2.jpg"));
        assert!(!ex.is_excluded("misc/cache/keep.txt"));
        assert!(!ex.is_excluded("misc/upload.TMP"));
    }

    #[test]
    fn relative_paths() {
        assert_eq!(
            relative_path(Path::new("/a/b"), Path::new("/a/c/d")),
            Path::new("../c/d")
        );
        assert!(lexically_inside(
            Path::new("/s"),
            Path::new("/s/x/link"),
            Path::new("../y")
        ));
        assert!(!lexically_inside(
            Path::new("/s"),
            Path::new("/s/link"),
            Path::new("../y")
        ));
    }
}

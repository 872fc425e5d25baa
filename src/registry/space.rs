//! Disk space: what a dump may need against what the dump directory has free.

use std::path::Path;

use crate::Config;
use crate::error::{Error, Result};

/// What a new dump of everything may need, against the free space.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpaceEstimate {
    /// The application database plus the storages, uncompressed.
    pub needed: u64,
    /// Free bytes where dumps are written; `None` when unknown.
    pub free: Option<u64>,
}

impl SpaceEstimate {
    /// Unknown free space is not a reason to refuse.
    pub fn enough(&self) -> bool {
        self.free.is_none_or(|f| f >= self.needed)
    }
}

/// Estimate the space a new dump needs (walks the storages off the async threads).
pub async fn estimate(config: std::sync::Arc<Config>) -> Result<SpaceEstimate> {
    tokio::task::spawn_blocking(move || {
        let data = config
            .data_database()
            .ok()
            .and_then(|p| std::fs::metadata(p).ok())
            .map_or(0, |m| m.len());
        let storages: u64 = config.storages.paths.iter().map(|p| tree_size(p)).sum();
        SpaceEstimate {
            needed: data + storages,
            // An object store has no free space to measure.
            free: match config.dump.s3_url() {
                Some(_) => None,
                None => free_bytes(&config.dump.path),
            },
        }
    })
    .await
    .map_err(|e| Error::Internal(format!("space estimate: {e}")))
}

/// Bytes available to unprivileged users on the file system holding `path`
/// (or its nearest existing ancestor).
pub fn free_bytes(path: &Path) -> Option<u64> {
    let mut dir = path;
    while !dir.exists() {
        dir = dir.parent()?;
    }
    statvfs_available(dir)
}

#[allow(unsafe_code)]
fn statvfs_available(dir: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    let mut stat = std::mem::MaybeUninit::<libc::statvfs>::zeroed();
    // SAFETY: `c_path` is a valid NUL-terminated string and `stat` points to
    // writable memory of the right type; it is read only when the call succeeds.
    let rc = unsafe { libc::statvfs(c_path.as_ptr(), stat.as_mut_ptr()) };
    if rc != 0 {
        return None;
    }
    // SAFETY: statvfs returned 0, so it filled the struct.
    let stat = unsafe { stat.assume_init() };
    #[allow(clippy::unnecessary_cast)] // the field types differ between platforms
    Some(stat.f_bavail as u64 * stat.f_frsize as u64)
}

/// Total size of the regular files under `dir` (symlinks not followed).
pub fn tree_size(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.path().symlink_metadata() else {
                continue;
            };
            if meta.is_dir() {
                stack.push(entry.path());
            } else if meta.is_file() {
                total += meta.len();
            }
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("a")).unwrap();
        std::fs::write(dir.path().join("a/x"), b"12345").unwrap();
        std::fs::write(dir.path().join("y"), b"123").unwrap();
        assert_eq!(tree_size(dir.path()), 8);
        assert!(free_bytes(&dir.path().join("missing/child")).unwrap() > 0);
    }
}

//! Where the registry's archives live: a local directory (the default) or a
//! bucket of an S3-compatible object store (`[dump] path = "s3://BUCKET/PREFIX"`).
//! Everything that writes, reads, sizes, verifies or deletes a registry
//! archive goes through [`ArchiveStore`].

mod reader;
pub mod s3;

use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::error::{Error, Result};

pub use s3::{S3Env, S3Location, S3Store, Upload};

/// What the store knows of an archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stored {
    pub size: u64,
    pub modified: SystemTime,
}

/// The store of the registry's archives; cheap to clone.
#[derive(Clone, Debug)]
pub enum ArchiveStore {
    /// A directory on this machine.
    Local(PathBuf),
    /// A bucket and a prefix in an S3-compatible object store.
    S3(S3Store),
}

impl ArchiveStore {
    /// The store `[dump] path` names: an `s3://` URL or a directory.
    /// No request is made here (see [`ArchiveStore::check`]).
    /// `env` holds the `AWS_*` variables that configure an object store.
    pub fn open(path: &Path, env: &S3Env) -> Result<ArchiveStore> {
        match S3Location::from_path(path)? {
            Some(location) => Ok(ArchiveStore::S3(S3Store::from_env(location, env)?)),
            None => Ok(ArchiveStore::Local(path.to_path_buf())),
        }
    }

    /// The directory of a local store.
    pub fn local_dir(&self) -> Option<&Path> {
        match self {
            ArchiveStore::Local(dir) => Some(dir),
            ArchiveStore::S3(_) => None,
        }
    }

    /// Where an archive of this name lies, for messages: a path or a URL.
    pub fn display_name(&self, name: &str) -> String {
        match self {
            ArchiveStore::Local(dir) => dir.join(name).display().to_string(),
            ArchiveStore::S3(s3) => s3.location().url_of(name),
        }
    }

    /// The file of the archive `name` in a local store, if `name` is a plain
    /// file name (a record never names anything outside the store).
    pub fn local_path(&self, name: &str) -> Option<PathBuf> {
        let dir = self.local_dir()?;
        is_plain_name(name).then(|| dir.join(name))
    }

    /// At start-up (`serve`, `dump --save`): an object store answers and
    /// takes writes, or one clear error. A local directory is created on
    /// first use, as it always was.
    pub async fn check(&self) -> Result<()> {
        match self {
            ArchiveStore::Local(_) => Ok(()),
            ArchiveStore::S3(s3) => s3.check().await,
        }
    }

    /// Size and modification time of the archive `name`; `None` when it is
    /// missing (or `name` is not a plain file name).
    pub async fn stat(&self, name: &str) -> Result<Option<Stored>> {
        if !is_plain_name(name) {
            return Ok(None);
        }
        match self {
            ArchiveStore::Local(dir) => {
                let path = dir.join(name);
                match tokio::fs::metadata(&path).await {
                    Ok(m) if m.is_file() => Ok(Some(Stored {
                        size: m.len(),
                        modified: m.modified().map_err(|e| Error::io("read", &path, e))?,
                    })),
                    Ok(_) => Ok(None),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
                    Err(e) => Err(Error::io("read", &path, e)),
                }
            }
            ArchiveStore::S3(s3) => s3.stat(name).await,
        }
    }

    /// Delete the archive `name`; a missing one is no error.
    pub async fn delete(&self, name: &str) -> Result<()> {
        if !is_plain_name(name) {
            return Ok(());
        }
        match self {
            ArchiveStore::Local(dir) => {
                let path = dir.join(name);
                match tokio::fs::remove_file(&path).await {
                    Ok(()) => Ok(()),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                    Err(e) => Err(Error::io("remove", &path, e)),
                }
            }
            ArchiveStore::S3(s3) => s3.delete(name).await,
        }
    }

    /// The archive's bytes as a blocking reader, for a check run on a
    /// blocking thread. A missing archive is an `io::ErrorKind::NotFound`.
    pub async fn reader(&self, name: &str) -> io::Result<Box<dyn Read + Send>> {
        if !is_plain_name(name) {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("{name:?} is not a file name"),
            ));
        }
        match self {
            ArchiveStore::Local(dir) => Ok(Box::new(std::fs::File::open(dir.join(name))?)),
            ArchiveStore::S3(s3) => s3.reader(name).await,
        }
    }
}

/// A record's archive name is a plain file name: nothing else is ever
/// looked up, served or deleted.
pub fn is_plain_name(name: &str) -> bool {
    !name.is_empty() && !name.starts_with('.') && !name.contains(['/', '\\', '\0'])
}

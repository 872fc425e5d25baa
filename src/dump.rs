//! `diskette dump`: one streaming pass files → tar → gzip → BLAKE2b → disk.

use std::path::PathBuf;

use crate::Config;
use crate::error::Result;
use crate::progress::Progress;

#[derive(Debug, Clone)]
pub struct DumpOptions {
    pub with_data: bool,
    pub with_storages: bool,
    pub storages_excludes: bool,
    /// Directory of the archive (default: `[dump] path`).
    pub destination: Option<PathBuf>,
    /// File name pattern (default: `[dump] filename`).
    pub filename: Option<String>,
}

/// A written archive.
#[derive(Debug, Clone)]
pub struct DumpOutcome {
    pub path: PathBuf,
    /// File name inside the destination directory.
    pub filename: String,
    pub size: u64,
    /// BLAKE2b-512 hex, as `b2sum` prints it.
    pub checksum: String,
    /// Storage files and data fixtures archived.
    pub files: u64,
    /// Uncompressed bytes archived.
    pub bytes: u64,
    pub rows: u64,
}

/// Write the archive; on any error no file is left behind.
pub fn dump(
    _config: &Config,
    _opts: &DumpOptions,
    _progress: &dyn Progress,
) -> Result<DumpOutcome> {
    todo!()
}

/// What `dump` would archive, as a printable report; writes nothing.
pub fn check(_config: &Config, _opts: &DumpOptions, _progress: &dyn Progress) -> Result<String> {
    todo!()
}

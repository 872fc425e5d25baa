//! `diskette load`: verify, extract safely, load data in one transaction, swap storages.

use std::fmt;
use std::path::PathBuf;

use crate::Config;
use crate::error::Result;
use crate::progress::Progress;

#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// A local path or an http(s) URL.
    pub source: String,
    pub with_data: bool,
    pub with_storages: bool,
    /// Where storages are restored (default: `[load] storages_basepath`).
    pub storages_basepath: Option<PathBuf>,
    /// Data file names to skip (`blog.json`).
    pub exclude_data: Vec<String>,
    /// Expected BLAKE2b hex (lowercase, 128 chars), checked before extraction.
    pub checksum: Option<String>,
    /// Keep a downloaded archive.
    pub keep: bool,
    pub download_destination: Option<PathBuf>,
}

#[derive(Debug, Default, Clone)]
pub struct LoadReport {
    pub storages: Vec<String>,
    pub data_files: usize,
    pub rows: u64,
    pub skipped_data: Vec<String>,
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

pub fn load(_config: &Config, _opts: &LoadOptions, _progress: &dyn Progress) -> Result<LoadReport> {
    todo!()
}

//! The archive format shared with Diskette 0.6.0: a gzip-compressed tar holding
//! `manifest.json`, `data/<app>.json` fixtures and storage directories.

pub mod extract;
pub mod gzip;
pub mod manifest;
pub mod writer;

/// Archive file names: the `[dump] filename` pattern is a configuration value.
pub use crate::config::filename;

/// Name of the manifest at the archive root.
pub const MANIFEST: &str = "manifest.json";
/// Directory of the data fixtures at the archive root.
pub const DATA_DIR: &str = "data";

//! The archive format shared with Diskette 0.6.0: a gzip-compressed tar holding
//! `manifest.json`, `data/<app>.json` fixtures and storage directories.

pub mod extract;
pub mod filename;
pub mod gzip;
pub mod manifest;
pub mod writer;

/// Name of the manifest at the archive root.
pub const MANIFEST: &str = "manifest.json";
/// Directory of the data fixtures at the archive root.
pub const DATA_DIR: &str = "data";

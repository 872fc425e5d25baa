//! Diskette: archive an application's data and media into one `tar.gz`, keep a
//! registry of the dumps, and restore them elsewhere.
//!
//! The archive engine (`dump`, `load`) is shared by the CLI and the web service's
//! background jobs.

pub mod apps;
pub mod archive;
pub mod checksum;
pub mod cli;
pub mod config;
pub mod demo;
pub mod dump;
pub mod engine;
pub mod error;
pub mod fetch;
pub mod health;
pub mod load;
pub mod notify;
pub mod overrides;
pub mod progress;
pub mod registry;
pub mod schedule;
pub mod storages;
pub mod store;
pub mod users;
pub mod verify;
pub mod web;
pub mod worker;

pub use config::Config;
pub use error::{Error, Result};

/// Version written in the manifests of the archives we make.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

//! The one error type of the engine and the CLI.

use std::path::{Path, PathBuf};

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad or missing configuration: the message names the key or the path.
    #[error("configuration: {0}")]
    Config(String),
    /// A refusal the user can act on (bad input, a rule of the registry):
    /// its text is shown to them as it is (a 4xx on the web).
    #[error("{0}")]
    Usage(String),
    /// A failure of ours (a task that died, an unexpected state): the web
    /// shows only a request id and logs this text.
    #[error("internal error: {0}")]
    Internal(String),
    /// A file-system operation failed; `path` says on what.
    #[error("{action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The archive is malformed, hostile or does not match what it claims.
    #[error("archive: {0}")]
    Archive(String),
    /// The data engine could not dump or load a fixture.
    #[error("data: {0}")]
    Data(String),
    /// A dump or load command of an application failed.
    #[error("command: {0}")]
    Command(String),
    /// A download failed.
    #[error("download: {0}")]
    Download(String),
    /// The operation was cancelled (shutdown, signal).
    #[error("cancelled")]
    Cancelled,
    #[error(transparent)]
    Registry(#[from] sqlx::Error),
    #[error("registry migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

impl Error {
    pub fn io(action: &'static str, path: impl AsRef<Path>, source: std::io::Error) -> Self {
        Error::Io {
            action,
            path: path.as_ref().to_path_buf(),
            source,
        }
    }

    /// True when the root cause is a full disk or an exceeded file-size limit.
    pub fn is_storage_full(&self) -> bool {
        matches!(self, Error::Io { source, .. }
            if source.kind() == std::io::ErrorKind::StorageFull
                || source.raw_os_error() == Some(libc::EFBIG))
    }
}

/// The error and its causes on one line, for a terminal or a log.
pub fn error_line(e: &(dyn std::error::Error + 'static)) -> String {
    let mut line = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        source = s.source();
    }
    line.replace('\n', " ")
}

/// An error of the application database (the built-in engine's SQLite).
pub(crate) fn sql_err(e: rusqlite::Error) -> Error {
    Error::Data(e.to_string())
}

/// Attach a path and an action to an `io::Result`.
pub trait IoContext<T> {
    fn ctx(self, action: &'static str, path: impl AsRef<Path>) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn ctx(self, action: &'static str, path: impl AsRef<Path>) -> Result<T> {
        self.map_err(|e| Error::io(action, path, e))
    }
}

//! Data engines: the built-in SQL engine (SQLite and PostgreSQL) and the
//! command engine.

pub mod command;
pub mod resolved;
pub mod sql;

use std::path::PathBuf;

use crate::Config;
use crate::error::Result;
use crate::progress::Progress;

/// A fixture extracted from an archive, ready to load.
#[derive(Debug, Clone)]
pub struct DataFile {
    /// Its name in the manifest (`data/blog.json`).
    pub name: String,
    /// Where it lies on disk now.
    pub path: PathBuf,
}

/// What a data load did.
#[derive(Debug, Default, Clone)]
pub struct DataLoadReport {
    pub files: usize,
    pub rows: u64,
}

/// Fixtures applied inside an open transaction, not yet committed.
/// Dropping it rolls everything back.
pub struct PreparedLoad {
    pub(crate) sql: Option<sql::PendingTransaction>,
    pub(crate) commands: Vec<(command::CommandApp, DataFile)>,
    pub(crate) report: DataLoadReport,
}

/// Validate every fixture and apply the SQL ones in one transaction left open:
/// nothing is visible until `commit`. A fixture that cannot be mapped fails the
/// whole load here, before anything changes.
pub fn prepare_load(
    config: &Config,
    files: &[DataFile],
    progress: &dyn Progress,
) -> Result<PreparedLoad> {
    let mut sql_files = Vec::new();
    let mut commands = Vec::new();
    for file in files {
        let filename = file.name.rsplit('/').next().unwrap_or(&file.name);
        match command::CommandApp::for_load(config, filename) {
            Some(app) => commands.push((app, file.clone())),
            None => sql_files.push(file.clone()),
        }
    }
    let mut report = DataLoadReport::default();
    let sql = if sql_files.is_empty() {
        None
    } else {
        let pending = sql::load_fixtures(config, &sql_files, progress)?;
        report.rows += pending.rows;
        report.files += sql_files.len();
        Some(pending)
    };
    Ok(PreparedLoad {
        sql,
        commands,
        report,
    })
}

impl PreparedLoad {
    /// Commit the SQL transaction, then run the load commands (which cannot be
    /// rolled back, so they run last).
    pub fn commit(self, config: &Config, progress: &dyn Progress) -> Result<DataLoadReport> {
        let mut report = self.report;
        if let Some(sql) = self.sql {
            sql.commit()?;
        }
        for (app, file) in &self.commands {
            app.load(config, &file.path, progress)?;
            report.files += 1;
        }
        Ok(report)
    }
}

//! The built-in SQL engine over SQLite and PostgreSQL: fixtures as Django's
//! `dumpdata` writes them and `loaddata` reads them, streamed.
//!
//! - `backend`: what the engine asks of a database, and SQLite's answers;
//!   `postgres`: PostgreSQL's;
//! - `catalog`: the models of the database (labels, through tables, natural
//!   keys, order), read from the database itself;
//! - `schema`: one table's columns, keys and value forms;
//! - `values`, `pyjson`: values in the forms Django's JSON encoder writes;
//! - `natural`: natural keys, both ways;
//! - `dump`: the fixture writer; `load`: the loader.

pub mod backend;
pub mod catalog;
mod dump;
mod load;
mod natural;
mod postgres;
pub mod pyjson;
mod schema;
mod values;

#[cfg(test)]
mod tests;

use crate::Config;
use crate::config::DataSource;
use crate::engine::DataFile;
use crate::engine::resolved::{Engine, ResolvedApp};
use crate::error::sql_err;
use crate::error::{Error, Result};
use crate::progress::Progress;

pub use backend::Backend;
pub use backend::{count_rows, read_table};
pub use catalog::Catalog;
pub use dump::{DumpFormat, DumpStats, dump_tables};
pub use schema::{TableSchema, quote_ident};
pub use values::{ColumnKind, Datetimes};

/// Write the fixture of a definition of the built-in engine to `out`.
pub fn dump_app(
    db: &dyn Backend,
    config: &Config,
    app: &ResolvedApp,
    out: &std::path::Path,
    progress: &dyn Progress,
) -> Result<DumpStats> {
    let Engine::Sql { tables } = &app.engine else {
        return Err(Error::Data(format!(
            "definition {:?} does not use the built-in engine",
            app.name
        )));
    };
    for w in &app.warnings {
        progress.log(&format!("warning: {w}"));
    }
    let catalog = Catalog::read(db, &config.data.labels, &config.data.natural_keys)?;
    let format = DumpFormat {
        datetimes: config.data.datetimes,
        indent: config.data.indent,
        natural_foreign: app.config.natural_foreign,
        natural_primary: app.config.natural_primary,
    };
    dump_tables(db, &catalog, tables, format, out, progress)
}

/// Open the application database of the built-in engine to read from it,
/// in one consistent snapshot.
pub fn open_source(config: &Config) -> Result<Box<dyn Backend>> {
    match config.data_source()? {
        DataSource::Sqlite(path) => {
            if !path.is_file() {
                return Err(Error::Config(format!(
                    "data.database_url: database {} does not exist",
                    path.display()
                )));
            }
            let conn = rusqlite::Connection::open_with_flags(
                &path,
                rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY
                    | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )
            .map_err(|e| {
                Error::Config(format!(
                    "data.database_url: cannot open {}: {e}",
                    path.display()
                ))
            })?;
            Ok(Box::new(conn))
        }
        DataSource::Postgres(url) => Ok(Box::new(postgres::Postgres::open(
            &url,
            config.data.datetimes,
            postgres::Access::Read,
        )?)),
    }
}

/// An open transaction holding applied fixtures. Dropping it rolls back.
pub struct PendingTransaction {
    db: Option<Box<dyn Backend>>,
    pub rows: u64,
}

impl PendingTransaction {
    pub fn commit(mut self) -> Result<()> {
        let db = self.db.take().expect("connection present until commit");
        if let Err(e) = db.commit() {
            db.rollback();
            return Err(Error::Data(format!(
                "commit failed, nothing was loaded: {e}"
            )));
        }
        Ok(())
    }
}

impl Drop for PendingTransaction {
    fn drop(&mut self) {
        if let Some(db) = self.db.take() {
            db.rollback();
        }
    }
}

/// The target database, with a transaction begun and constraint checks
/// deferred to its end.
fn open_target(config: &Config) -> Result<Box<dyn Backend>> {
    let path = match config.data_source()? {
        DataSource::Sqlite(path) => path,
        DataSource::Postgres(url) => {
            return Ok(Box::new(postgres::Postgres::open(
                &url,
                config.data.datetimes,
                postgres::Access::Write,
            )?));
        }
    };
    if !path.is_file() {
        return Err(Error::Config(format!(
            "data.database_url: database {} does not exist (create its tables first)",
            path.display()
        )));
    }
    let conn = rusqlite::Connection::open(&path).map_err(|e| {
        Error::Config(format!(
            "data.database_url: cannot open {}: {e}",
            path.display()
        ))
    })?;
    conn.busy_timeout(std::time::Duration::from_secs(30))
        .map_err(sql_err)?;
    conn.set_prepared_statement_cache_capacity(64);
    conn.execute_batch(
        "PRAGMA foreign_keys = ON; BEGIN IMMEDIATE; PRAGMA defer_foreign_keys = ON;",
    )
    .map_err(|e| {
        Error::Data(format!(
            "cannot start a transaction on {}: {e}",
            path.display()
        ))
    })?;
    Ok(Box::new(conn))
}

/// Open the target database and apply every fixture inside one transaction
/// that stays open. Constraints are checked (and sequences reset) before
/// returning.
pub fn load_fixtures(
    config: &Config,
    files: &[DataFile],
    progress: &dyn Progress,
) -> Result<PendingTransaction> {
    let mut pending = PendingTransaction {
        db: Some(open_target(config)?),
        rows: 0,
    };
    let db = pending.db.as_deref().expect("just set");
    let catalog = Catalog::read(db, &config.data.labels, &config.data.natural_keys)?;
    let mut loader = load::Loader::new(
        db,
        &catalog,
        config.data.datetimes,
        config.data.ignore_nonexistent,
    );
    for file in files {
        let rows = loader
            .load_file(&file.path, progress)
            .map_err(|e| Error::Data(format!("{}: {e}", file.name)))?;
        progress.log(&format!("Loaded {} ({rows} rows)", file.name));
        pending.rows += rows;
    }
    let loaded: Vec<&TableSchema> = loader
        .written
        .iter()
        .map(|i| &catalog.models[*i].schema)
        .collect();
    db.finish_load(&loaded)?;
    Ok(pending)
}

//! The built-in SQL engine over SQLite: fixtures as Django's `dumpdata`
//! writes them and `loaddata` reads them, streamed.
//!
//! - `catalog`: the models of the database (labels, through tables, natural
//!   keys, order), read from the database itself;
//! - `schema`: one table's columns, keys and value forms;
//! - `values`, `pyjson`: values in the forms Django's JSON encoder writes;
//! - `natural`: natural keys, both ways;
//! - `dump`: the fixture writer; `load`: the loader.

pub mod catalog;
mod dump;
mod load;
mod natural;
pub mod pyjson;
mod schema;
mod values;

#[cfg(test)]
mod tests;

use crate::Config;
use crate::engine::DataFile;
use crate::engine::resolved::{Engine, ResolvedApp};
use crate::error::sql_err;
use crate::error::{Error, Result};
use crate::progress::Progress;

pub use catalog::Catalog;
pub use dump::{DumpFormat, DumpStats, dump_tables};
pub use schema::{TableSchema, count_rows, quote_ident};
pub use values::{ColumnKind, Datetimes};

/// Write the fixture of a definition of the built-in engine to `out`.
pub fn dump_app(
    conn: &rusqlite::Connection,
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
    let catalog = Catalog::read(conn, &config.data.labels, &config.data.natural_keys)?;
    let format = DumpFormat {
        datetimes: config.data.datetimes,
        indent: config.data.indent,
        natural_foreign: app.config.natural_foreign,
        natural_primary: app.config.natural_primary,
    };
    dump_tables(conn, &catalog, tables, format, out, progress)
}

/// An open transaction holding applied fixtures. Dropping it rolls back.
pub struct PendingTransaction {
    conn: Option<rusqlite::Connection>,
    pub rows: u64,
}

impl PendingTransaction {
    pub fn commit(mut self) -> Result<()> {
        let conn = self.conn.take().expect("connection present until commit");
        if let Err(e) = conn.execute_batch("COMMIT") {
            let _ = conn.execute_batch("ROLLBACK");
            return Err(Error::Data(format!(
                "commit failed, nothing was loaded: {e}"
            )));
        }
        Ok(())
    }
}

impl Drop for PendingTransaction {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            let _ = conn.execute_batch("ROLLBACK");
        }
    }
}

/// Open the target database and apply every fixture inside one transaction
/// that stays open. Foreign keys are checked before returning.
pub fn load_fixtures(
    config: &Config,
    files: &[DataFile],
    progress: &dyn Progress,
) -> Result<PendingTransaction> {
    let path = config.data_database()?;
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
    let mut pending = PendingTransaction {
        conn: Some(conn),
        rows: 0,
    };
    let conn = pending.conn.as_ref().expect("just set");
    let catalog = Catalog::read(conn, &config.data.labels, &config.data.natural_keys)?;
    let mut loader = load::Loader::new(
        conn,
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
    drop(loader);
    load::check_foreign_keys(conn)?;
    Ok(pending)
}

//! What the engine asks of a database. Everything about fixtures (Django's
//! JSON forms, natural keys, labels, the fixture reader) is written once
//! against this trait; SQLite and PostgreSQL answer with values in one
//! neutral form, the one Django's SQLite backend stores (see `values`):
//! integers, floats, text (`2024-01-01 15:08:00.123456` for a datetime, 32 hex
//! digits for a UUID, decimals as text), 0/1 for booleans, bytes, and
//! microseconds for durations.

use rusqlite::Connection;
pub use rusqlite::types::{Value as SqlValue, ValueRef};

use super::schema::{Column, TableSchema, no_pk_message, quote_ident};
use crate::error::{Error, Result, sql_err};

/// A database failure inside the engine, with the database's own words.
pub type DbResult<T> = std::result::Result<T, String>;

pub trait Backend: Send {
    /// User tables, in the order they were created (which migrations give).
    fn tables(&self) -> Result<Vec<String>>;
    /// Columns, keys and value forms of a table.
    fn inspect(&self, table: &str) -> Result<TableSchema>;
    /// Parameter `index` (from 1), compared with or stored into `column`.
    fn placeholder(&self, index: usize, column: &Column) -> String;
    /// The expression selecting `column` in the neutral form, qualified by a
    /// table alias or not.
    fn select(&self, column: &Column, alias: Option<&str>) -> String;
    /// Every row of a query (small results: keys, links, counts).
    fn query(&self, sql: &str, params: &[SqlValue]) -> DbResult<Vec<Vec<SqlValue>>>;
    /// Run a statement; the number of rows it changed.
    fn execute(&self, sql: &str, params: &[SqlValue]) -> DbResult<u64>;
    /// Run an `INSERT` of one row; the primary key `pk` the row was given.
    fn insert_returning(&self, sql: &str, pk: &Column, params: &[SqlValue]) -> DbResult<SqlValue>;
    /// Stream the rows of `sql` to `row`, in order, with flat memory.
    fn each_row(&self, sql: &str, row: &mut dyn FnMut(&[ValueRef<'_>]) -> Result<()>)
    -> Result<()>;
    /// After every fixture of a load, before the commit: check the deferred
    /// constraints and reset the sequences of the tables loaded.
    fn finish_load(&self, loaded: &[&TableSchema]) -> Result<()>;
    fn commit(&self) -> DbResult<()>;
    fn rollback(&self);
}

/// Read a table that a fixture can hold: it needs a single-column primary key.
pub fn read_table(db: &dyn Backend, table: &str) -> Result<TableSchema> {
    let schema = db.inspect(table)?;
    if schema.pk.is_none() {
        return Err(Error::Data(no_pk_message(table)));
    }
    Ok(schema)
}

/// Row count of a table, for `dump --check`.
pub fn count_rows(db: &dyn Backend, table: &str) -> Result<u64> {
    let rows = db
        .query(&format!("SELECT COUNT(*) FROM {}", quote_ident(table)), &[])
        .map_err(Error::Data)?;
    match rows.first().and_then(|r| r.first()) {
        Some(SqlValue::Integer(n)) => Ok(*n as u64),
        other => Err(Error::Data(format!("count of {table}: {other:?}"))),
    }
}

/// `alias."name"`, or `"name"`.
pub fn qualified(alias: Option<&str>, name: &str) -> String {
    match alias {
        Some(a) => format!("{a}.{}", quote_ident(name)),
        None => quote_ident(name),
    }
}

impl Backend for Connection {
    fn tables(&self) -> Result<Vec<String>> {
        let mut stmt = self
            .prepare(
                "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY rowid",
            )
            .map_err(sql_err)?;
        let names = stmt
            .query_map([], |r| r.get::<_, String>(0))
            .map_err(sql_err)?
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(sql_err)?;
        Ok(names)
    }

    fn inspect(&self, table: &str) -> Result<TableSchema> {
        super::schema::inspect_sqlite(self, table)
    }

    fn placeholder(&self, index: usize, _column: &Column) -> String {
        format!("?{index}")
    }

    fn select(&self, column: &Column, alias: Option<&str>) -> String {
        qualified(alias, &column.name)
    }

    fn query(&self, sql: &str, params: &[SqlValue]) -> DbResult<Vec<Vec<SqlValue>>> {
        let mut stmt = self.prepare_cached(sql).map_err(|e| e.to_string())?;
        let n = stmt.column_count();
        stmt.query_map(rusqlite::params_from_iter(params), |r| {
            (0..n).map(|i| r.get::<_, SqlValue>(i)).collect()
        })
        .map_err(|e| e.to_string())?
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| e.to_string())
    }

    fn execute(&self, sql: &str, params: &[SqlValue]) -> DbResult<u64> {
        let mut stmt = self.prepare_cached(sql).map_err(|e| e.to_string())?;
        stmt.execute(rusqlite::params_from_iter(params))
            .map(|n| n as u64)
            .map_err(|e| e.to_string())
    }

    fn insert_returning(&self, sql: &str, _pk: &Column, params: &[SqlValue]) -> DbResult<SqlValue> {
        Backend::execute(self, sql, params)?;
        Ok(SqlValue::Integer(self.last_insert_rowid()))
    }

    fn each_row(
        &self,
        sql: &str,
        row: &mut dyn FnMut(&[ValueRef<'_>]) -> Result<()>,
    ) -> Result<()> {
        let mut stmt = self.prepare(sql).map_err(sql_err)?;
        let n = stmt.column_count();
        let mut rows = stmt.query([]).map_err(sql_err)?;
        while let Some(r) = rows.next().map_err(sql_err)? {
            let values = (0..n)
                .map(|i| r.get_ref(i))
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(sql_err)?;
            row(&values)?;
        }
        Ok(())
    }

    fn finish_load(&self, _loaded: &[&TableSchema]) -> Result<()> {
        // SQLite has no sequences to reset: a rowid follows the largest one.
        let mut stmt = self.prepare("PRAGMA foreign_key_check").map_err(sql_err)?;
        let mut rows = stmt.query([]).map_err(sql_err)?;
        if let Some(row) = rows.next().map_err(sql_err)? {
            let table: String = row.get(0).map_err(sql_err)?;
            let rowid: Option<i64> = row.get(1).map_err(sql_err)?;
            let parent: String = row.get(2).map_err(sql_err)?;
            return Err(Error::Data(format!(
                "foreign key violation: a row of {table} (rowid {}) points to a missing row of {parent}; nothing was loaded",
                rowid.map(|r| r.to_string()).unwrap_or_else(|| "?".into())
            )));
        }
        Ok(())
    }

    fn commit(&self) -> DbResult<()> {
        self.execute_batch("COMMIT").map_err(|e| e.to_string())
    }

    fn rollback(&self) {
        let _ = self.execute_batch("ROLLBACK");
    }
}

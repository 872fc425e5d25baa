//! PostgreSQL's answers to `Backend`: its catalog read from `pg_catalog`,
//! values selected in the engine's neutral form (datetimes by `to_char` in
//! the session's zone, UUIDs as 32 hex digits, intervals as microseconds),
//! parameters bound as text and cast to the column's type, rows streamed
//! through a cursor, sequences reset after a load as `loaddata` does.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;

use postgres::types::{ToSql, Type};
use postgres::{Client, NoTls, Statement};

use super::backend::{Backend, DbResult, SqlValue, ValueRef, qualified};
use super::schema::{Column, TableSchema, field_name, quote_ident};
use super::values::{ColumnKind, Datetimes};
use crate::config::redact_url;
use crate::error::{Error, Result};

/// Rows fetched from a cursor at a time: memory stays flat whatever the table.
const FETCH_ROWS: usize = 2000;

/// What the connection is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// A dump: one read-only snapshot of every table.
    Read,
    /// A load: one transaction, constraint checks deferred to its end.
    Write,
}

pub struct Postgres {
    client: RefCell<Client>,
    statements: RefCell<HashMap<String, Statement>>,
    cursors: Cell<u64>,
}

/// The server's message (and detail), or the client's error and its cause.
fn message(e: &postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return match db.detail() {
            Some(d) => format!("{} ({d})", db.message()),
            None => db.message().to_string(),
        };
    }
    match std::error::Error::source(e) {
        Some(cause) => format!("{e}: {cause}"),
        None => e.to_string(),
    }
}

impl Postgres {
    pub fn open(url: &str, datetimes: Datetimes, access: Access) -> Result<Postgres> {
        let shown = redact_url(url);
        let mut config: postgres::Config = url.parse().map_err(|e| {
            Error::Config(format!(
                "data.database_url: {shown} is not a valid PostgreSQL URL: {e}"
            ))
        })?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(std::time::Duration::from_secs(30));
        }
        let mut client = config.connect(NoTls).map_err(|e| {
            Error::Config(format!(
                "data.database_url: cannot connect to {shown}: {}",
                message(&e)
            ))
        })?;
        // The neutral forms: ISO dates; datetimes in UTC as Django writes
        // them with USE_TZ (else in the session's own zone).
        let mut setup = String::from("SET DateStyle = 'ISO, YMD'; SET IntervalStyle = 'postgres';");
        if datetimes == Datetimes::Utc {
            setup.push_str("SET TimeZone = 'UTC';");
        }
        setup.push_str(match access {
            Access::Read => "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY;",
            Access::Write => "BEGIN; SET CONSTRAINTS ALL DEFERRED;",
        });
        client.batch_execute(&setup).map_err(|e| {
            Error::Data(format!(
                "cannot start a transaction on {shown}: {}",
                message(&e)
            ))
        })?;
        Ok(Postgres {
            client: RefCell::new(client),
            statements: RefCell::new(HashMap::new()),
            cursors: Cell::new(0),
        })
    }

    fn statement(&self, sql: &str) -> DbResult<Statement> {
        if let Some(s) = self.statements.borrow().get(sql) {
            return Ok(s.clone());
        }
        let s = self
            .client
            .borrow_mut()
            .prepare(sql)
            .map_err(|e| message(&e))?;
        self.statements
            .borrow_mut()
            .insert(sql.to_string(), s.clone());
        Ok(s)
    }

    fn run_query(&self, sql: &str, params: &[SqlValue]) -> DbResult<Vec<postgres::Row>> {
        let statement = self.statement(sql)?;
        let texts: Vec<Option<String>> = params.iter().map(text_param).collect();
        let refs: Vec<&(dyn ToSql + Sync)> = texts.iter().map(|t| t as _).collect();
        self.client
            .borrow_mut()
            .query(&statement, &refs)
            .map_err(|e| message(&e))
    }

    /// A catalog query with its own typed parameters.
    fn catalog(&self, sql: &str, table: &str) -> Result<Vec<postgres::Row>> {
        self.client
            .borrow_mut()
            .query(sql, &[&quote_ident(table)])
            .map_err(|e| Error::Data(format!("cannot read table {table}: {}", message(&e))))
    }
}

/// A value as the text PostgreSQL's input functions read.
fn text_param(v: &SqlValue) -> Option<String> {
    match v {
        SqlValue::Null => None,
        SqlValue::Integer(i) => Some(i.to_string()),
        SqlValue::Real(f) => Some(format!("{f:e}")),
        SqlValue::Text(t) => Some(t.clone()),
        SqlValue::Blob(b) => {
            let mut hex = String::with_capacity(2 + b.len() * 2);
            hex.push_str("\\x");
            for byte in b {
                hex.push_str(&format!("{byte:02x}"));
            }
            Some(hex)
        }
    }
}

/// A result row in the neutral form; the selected expressions only give
/// these types.
fn decode(row: &postgres::Row) -> DbResult<Vec<SqlValue>> {
    let err = |e: postgres::Error| message(&e);
    (0..row.len())
        .map(|i| {
            let ty = row.columns()[i].type_();
            Ok(match *ty {
                Type::BOOL => row
                    .try_get::<_, Option<bool>>(i)
                    .map_err(err)?
                    .map(|b| SqlValue::Integer(b as i64)),
                Type::INT2 => row
                    .try_get::<_, Option<i16>>(i)
                    .map_err(err)?
                    .map(|n| SqlValue::Integer(n.into())),
                Type::INT4 => row
                    .try_get::<_, Option<i32>>(i)
                    .map_err(err)?
                    .map(|n| SqlValue::Integer(n.into())),
                Type::INT8 => row
                    .try_get::<_, Option<i64>>(i)
                    .map_err(err)?
                    .map(SqlValue::Integer),
                Type::FLOAT4 => row
                    .try_get::<_, Option<f32>>(i)
                    .map_err(err)?
                    .map(|f| SqlValue::Real(f.into())),
                Type::FLOAT8 => row
                    .try_get::<_, Option<f64>>(i)
                    .map_err(err)?
                    .map(SqlValue::Real),
                Type::BYTEA => row
                    .try_get::<_, Option<Vec<u8>>>(i)
                    .map_err(err)?
                    .map(SqlValue::Blob),
                Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME => row
                    .try_get::<_, Option<String>>(i)
                    .map_err(err)?
                    .map(SqlValue::Text),
                ref other => return Err(format!("cannot read a value of type {other}")),
            }
            .unwrap_or(SqlValue::Null))
        })
        .collect()
}

impl Backend for Postgres {
    fn tables(&self) -> Result<Vec<String>> {
        let rows = self
            .client
            .borrow_mut()
            .query(
                "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition AND n.nspname = current_schema() \
                 ORDER BY c.oid",
                &[],
            )
            .map_err(|e| Error::Data(format!("cannot list the tables: {}", message(&e))))?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    fn inspect(&self, table: &str) -> Result<TableSchema> {
        let columns = self.catalog(
            "SELECT a.attname::text, format_type(a.atttypid, NULL) FROM pg_attribute a \
             WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
            table,
        )?;
        if columns.is_empty() {
            return Err(Error::Data(format!("table {table} does not exist")));
        }
        let pks = self.catalog(
            "SELECT a.attname::text FROM pg_index i JOIN pg_attribute a \
             ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) \
             WHERE i.indrelid = to_regclass($1) AND i.indisprimary",
            table,
        )?;
        let fks = self.catalog(
            "SELECT a.attname::text, t.relname::text FROM pg_constraint k \
             JOIN pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = k.conkey[1] \
             JOIN pg_class t ON t.oid = k.confrelid \
             WHERE k.conrelid = to_regclass($1) AND k.contype = 'f' AND array_length(k.conkey, 1) = 1",
            table,
        )?;
        let unique = self.catalog(
            "SELECT (SELECT string_agg(a.attname::text, chr(31) ORDER BY k.n) \
                 FROM unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, n) \
                 JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum) \
             FROM pg_index i WHERE i.indrelid = to_regclass($1) AND i.indisunique",
            table,
        )?;
        let columns = columns
            .iter()
            .map(|r| {
                let name: String = r.get(0);
                let sql_type: String = r.get(1);
                let references = fks
                    .iter()
                    .find(|f| f.get::<_, String>(0) == name)
                    .map(|f| f.get::<_, String>(1));
                Column {
                    kind: ColumnKind::of_postgres(&sql_type),
                    field: field_name(&name, &references),
                    name,
                    references,
                    sql_type,
                }
            })
            .collect();
        Ok(TableSchema {
            name: table.to_string(),
            pk: (pks.len() == 1).then(|| pks[0].get(0)),
            columns,
            unique: unique
                .iter()
                .filter_map(|r| r.get::<_, Option<String>>(0))
                .map(|s| s.split('\u{1f}').map(str::to_string).collect())
                .collect(),
        })
    }

    fn placeholder(&self, index: usize, column: &Column) -> String {
        match column.sql_type.as_str() {
            // Durations travel as microseconds; stored as psycopg stores a
            // `timedelta`: whole days (floored), then the time of day.
            "interval" => {
                let x = format!("${index}::text::int8");
                let days = format!("floor({x} / 86400000000.0)");
                format!(
                    "({days} * interval '1 day' + ({x} - {days} * 86400000000) * interval '1 microsecond')"
                )
            }
            ty => format!("CAST(${index}::text AS {ty})"),
        }
    }

    fn select(&self, column: &Column, alias: Option<&str>) -> String {
        let q = qualified(alias, &column.name);
        match column.sql_type.as_str() {
            "smallint" | "integer" | "bigint" | "double precision" | "boolean" | "bytea"
            | "text" | "character varying" | "character" => q,
            "real" => format!("{q}::float8"),
            "timestamp with time zone" | "timestamp without time zone" => {
                format!("to_char({q}, 'YYYY-MM-DD HH24:MI:SS.US')")
            }
            "interval" => format!("(EXTRACT(EPOCH FROM {q}) * 1000000)::int8"),
            "uuid" => format!("replace({q}::text, '-', '')"),
            // The output form (`1.2.3.4`), where the cast to text adds `/32`.
            "inet" => format!("abbrev({q})"),
            _ => format!("{q}::text"),
        }
    }

    fn query(&self, sql: &str, params: &[SqlValue]) -> DbResult<Vec<Vec<SqlValue>>> {
        self.run_query(sql, params)?.iter().map(decode).collect()
    }

    fn execute(&self, sql: &str, params: &[SqlValue]) -> DbResult<u64> {
        let statement = self.statement(sql)?;
        let texts: Vec<Option<String>> = params.iter().map(text_param).collect();
        let refs: Vec<&(dyn ToSql + Sync)> = texts.iter().map(|t| t as _).collect();
        self.client
            .borrow_mut()
            .execute(&statement, &refs)
            .map_err(|e| message(&e))
    }

    fn insert_returning(&self, sql: &str, pk: &Column, params: &[SqlValue]) -> DbResult<SqlValue> {
        let sql = format!("{sql} RETURNING {}", self.select(pk, None));
        let rows = self.query(&sql, params)?;
        rows.into_iter()
            .next()
            .and_then(|r| r.into_iter().next())
            .ok_or_else(|| "the insert returned no primary key".to_string())
    }

    fn each_row(
        &self,
        sql: &str,
        row: &mut dyn FnMut(&[ValueRef<'_>]) -> Result<()>,
    ) -> Result<()> {
        let n = self.cursors.get() + 1;
        self.cursors.set(n);
        let cursor = format!("diskette_rows_{n}");
        let db_err = |e: String| Error::Data(e);
        self.client
            .borrow_mut()
            .batch_execute(&format!("DECLARE {cursor} NO SCROLL CURSOR FOR {sql}"))
            .map_err(|e| db_err(message(&e)))?;
        let fetch = format!("FETCH FORWARD {FETCH_ROWS} FROM {cursor}");
        loop {
            // The batch is decoded before any row is written: writing a row
            // may query the database (natural keys, links).
            let rows = self.query(&fetch, &[]).map_err(db_err)?;
            if rows.is_empty() {
                break;
            }
            for values in &rows {
                let refs: Vec<ValueRef<'_>> = values.iter().map(ValueRef::from).collect();
                row(&refs)?;
            }
        }
        self.statements.borrow_mut().remove(&fetch);
        self.client
            .borrow_mut()
            .batch_execute(&format!("CLOSE {cursor}"))
            .map_err(|e| db_err(message(&e)))
    }

    fn finish_load(&self, loaded: &[&TableSchema]) -> Result<()> {
        // As `loaddata` does with `sequence_reset_sql`: the next row the
        // application inserts gets a key after the largest loaded.
        for schema in loaded {
            let Some(pk) = &schema.pk else { continue };
            let table = quote_ident(&schema.name);
            let sequence: Option<String> = self
                .client
                .borrow_mut()
                .query_one("SELECT pg_get_serial_sequence($1, $2)", &[&table, pk])
                .map_err(|e| Error::Data(message(&e)))?
                .get(0);
            let Some(sequence) = sequence else { continue };
            let (pk, table) = (quote_ident(pk), quote_ident(&schema.name));
            self.client
                .borrow_mut()
                .execute(
                    &format!(
                        "SELECT setval($1::text::regclass, coalesce(max({pk}), 1), max({pk}) IS NOT NULL) FROM {table}"
                    ),
                    &[&sequence],
                )
                .map_err(|e| {
                    Error::Data(format!(
                        "cannot reset the sequence of {}: {}",
                        schema.name,
                        message(&e)
                    ))
                })?;
        }
        self.client
            .borrow_mut()
            .batch_execute("SET CONSTRAINTS ALL IMMEDIATE")
            .map_err(|e| {
                Error::Data(format!(
                    "constraint violation: {}; nothing was loaded",
                    message(&e)
                ))
            })
    }

    fn commit(&self) -> DbResult<()> {
        self.client
            .borrow_mut()
            .batch_execute("COMMIT")
            .map_err(|e| message(&e))
    }

    fn rollback(&self) {
        let _ = self.client.borrow_mut().batch_execute("ROLLBACK");
    }
}

//! The built-in SQL engine over SQLite: Django-shaped fixtures, streamed.
//!
//! Dump: `[{"model": "blog.article", "pk": 1, "fields": {...}}, ...]`, rows
//! ordered by primary key, written one row at a time with Django's separators.
//! Load: one transaction for every fixture, rows upserted by primary key,
//! foreign keys checked at the end; a fixture that cannot be mapped fails the
//! whole load before anything is committed.

use std::collections::HashMap;
use std::fmt;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Write};
use std::path::Path;

use base64::Engine as _;
use rusqlite::types::{Value as SqlValue, ValueRef};
use serde::Deserialize;
use serde::de::{DeserializeSeed, SeqAccess, Visitor};
use serde_json::Value;

use crate::Config;
use crate::apps::{Table, sql_err};
pub use crate::config::Datetimes;
use crate::engine::DataFile;
use crate::error::{Error, IoContext, Result};
use crate::progress::Progress;

/// Columns of a table, with its single-column primary key.
#[derive(Debug, Clone)]
pub struct TableSchema {
    pub pk: String,
    /// (name, declared type), in table order.
    pub columns: Vec<(String, String)>,
}

impl TableSchema {
    pub fn read(conn: &rusqlite::Connection, table: &str) -> Result<TableSchema> {
        let mut stmt = conn
            .prepare(&format!("PRAGMA table_info({})", quote_ident(table)))
            .map_err(sql_err)?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, i64>(5)?,
                ))
            })
            .map_err(sql_err)?
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(sql_err)?;
        if rows.is_empty() {
            return Err(Error::Data(format!("table {table} does not exist")));
        }
        let pks: Vec<&String> = rows.iter().filter(|r| r.2 > 0).map(|r| &r.0).collect();
        if pks.len() != 1 {
            return Err(Error::Data(format!(
                "table {table} has no single-column primary key, which a fixture needs"
            )));
        }
        Ok(TableSchema {
            pk: pks[0].clone(),
            columns: rows.iter().map(|r| (r.0.clone(), r.1.clone())).collect(),
        })
    }

    /// How values of `column` are written in a fixture.
    pub fn kind(&self, column: &str) -> ColumnKind {
        self.columns
            .iter()
            .find(|(c, _)| c == column)
            .map(|(_, t)| ColumnKind::of_declared(t))
            .unwrap_or(ColumnKind::Plain)
    }
}

/// Column types whose fixture form differs from their SQLite form, read from
/// the declared type (Django's SQLite backend declares `datetime`, `bool`, `BLOB`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnKind {
    Plain,
    /// Django stores `2024-01-01 15:08:00[.ffffff]`; fixtures carry ISO 8601.
    DateTime,
    /// 0/1 in SQLite, `false`/`true` in fixtures.
    Bool,
    /// Raw bytes in SQLite, base64 in fixtures.
    Blob,
}

impl ColumnKind {
    fn of_declared(declared: &str) -> ColumnKind {
        let t = declared.trim().to_ascii_lowercase();
        if t == "datetime" || t == "timestamp" {
            ColumnKind::DateTime
        } else if t == "bool" || t == "boolean" {
            ColumnKind::Bool
        } else if t.contains("blob") {
            ColumnKind::Blob
        } else {
            ColumnKind::Plain
        }
    }
}

/// `YYYY-MM-DD HH:MM:SS[.f]` split into date, time and fraction digits.
fn split_stored_datetime(s: &str) -> Option<(&str, &str, &str)> {
    let b = s.as_bytes();
    if b.len() < 19 || b[10] != b' ' {
        return None;
    }
    let shape = |i: usize, c: u8| b.get(i).is_some_and(|x| *x == c);
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    if !(digits(0..4) && shape(4, b'-') && digits(5..7) && shape(7, b'-') && digits(8..10))
        || !(digits(11..13)
            && shape(13, b':')
            && digits(14..16)
            && shape(16, b':')
            && digits(17..19))
    {
        return None;
    }
    let frac = &s[19..];
    let fraction_ok = frac.is_empty()
        || (frac.len() >= 2
            && frac.starts_with('.')
            && frac[1..].bytes().all(|c| c.is_ascii_digit()));
    if !fraction_ok {
        return None;
    }
    Some((&s[..10], &s[11..19], frac))
}

/// The fixture form of a stored datetime.
fn datetime_to_fixture(s: &str, mode: Datetimes) -> Option<String> {
    let (date, time, frac) = split_stored_datetime(s)?;
    match mode {
        Datetimes::Utc => Some(format!("{date}T{time}{frac}Z")),
        Datetimes::Naive => Some(format!("{date}T{time}{frac}")),
        Datetimes::Verbatim => None,
    }
}

/// The stored form of a fixture datetime, as Django's SQLite backend writes
/// it (`isoformat(" ")`: microseconds only when non-zero).
fn datetime_from_fixture(s: &str, mode: Datetimes) -> std::result::Result<Option<String>, String> {
    if mode == Datetimes::Verbatim || s.len() < 19 || s.as_bytes()[10] != b'T' {
        return Ok(None);
    }
    let aware = s.ends_with('Z') || s[19..].contains(['+', '-']);
    let naive = |t: time::PrimitiveDateTime| {
        let base = format!(
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        );
        match t.microsecond() {
            0 => base,
            us => format!("{base}.{us:06}"),
        }
    };
    if aware {
        let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
            .map_err(|e| format!("{s:?} is not an ISO 8601 datetime: {e}"))?
            .to_offset(time::UtcOffset::UTC);
        Ok(Some(naive(time::PrimitiveDateTime::new(
            t.date(),
            t.time(),
        ))))
    } else {
        let f = time::macros::format_description!(
            version = 2,
            "[year]-[month]-[day]T[hour]:[minute]:[second][optional [.[subsecond]]]"
        );
        let t = time::PrimitiveDateTime::parse(s, &f)
            .map_err(|e| format!("{s:?} is not an ISO 8601 datetime: {e}"))?;
        Ok(Some(naive(t)))
    }
}

pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// What a fixture dump wrote.
#[derive(Debug, Default, Clone, Copy)]
pub struct DumpStats {
    pub rows: u64,
    pub bytes: u64,
}

/// Write the rows of `tables` as one fixture to `out`, streaming.
pub fn dump_tables(
    conn: &rusqlite::Connection,
    tables: &[Table],
    datetimes: Datetimes,
    out: &Path,
    progress: &dyn Progress,
) -> Result<DumpStats> {
    let file = File::create(out).ctx("create", out)?;
    let mut w = BufWriter::with_capacity(256 * 1024, file);
    let mut rows = 0u64;
    w.write_all(b"[").ctx("write", out)?;
    for table in tables {
        let schema = TableSchema::read(conn, &table.name)?;
        let sql = format!(
            "SELECT * FROM {} ORDER BY {}",
            quote_ident(&table.name),
            quote_ident(&schema.pk)
        );
        let mut stmt = conn.prepare(&sql).map_err(sql_err)?;
        let names: Vec<String> = stmt.column_names().iter().map(|s| s.to_string()).collect();
        let pk_index = names.iter().position(|n| *n == schema.pk).unwrap_or(0);
        let kinds: Vec<ColumnKind> = names.iter().map(|n| schema.kind(n)).collect();
        // Written directly, without building a JSON value per row: the
        // constant parts of a record are escaped once per table.
        let prefix = format!("{{\"model\": {}, \"pk\": ", json_string(&table.label));
        let keys: Vec<String> = names
            .iter()
            .map(|n| format!("{}: ", json_string(n)))
            .collect();
        let mut q = stmt.query([]).map_err(sql_err)?;
        let mut table_rows = 0u64;
        while let Some(row) = q.next().map_err(sql_err)? {
            if table_rows.is_multiple_of(4096) && progress.is_cancelled() {
                return Err(Error::Cancelled);
            }
            if rows > 0 {
                w.write_all(b", ").ctx("write", out)?;
            }
            w.write_all(prefix.as_bytes()).ctx("write", out)?;
            let value = |i: usize, w: &mut BufWriter<File>| -> Result<()> {
                let v = row.get_ref(i).map_err(sql_err)?;
                write_json_value(w, v, kinds[i], datetimes).map_err(|m| {
                    Error::Data(format!("table {}, column {}: {m}", table.name, names[i]))
                })
            };
            value(pk_index, &mut w)?;
            w.write_all(b", \"fields\": {").ctx("write", out)?;
            let mut first = true;
            for i in (0..names.len()).filter(|i| *i != pk_index) {
                if !first {
                    w.write_all(b", ").ctx("write", out)?;
                }
                first = false;
                w.write_all(keys[i].as_bytes()).ctx("write", out)?;
                value(i, &mut w)?;
            }
            w.write_all(b"}}").ctx("write", out)?;
            rows += 1;
            table_rows += 1;
        }
        progress.log(&format!(
            "- {} ({}): {table_rows} rows",
            table.name, table.label
        ));
    }
    w.write_all(b"]").ctx("write", out)?;
    let file = w
        .into_inner()
        .map_err(|e| Error::io("write", out, e.into_error()))?;
    let bytes = file.metadata().ctx("read metadata of", out)?.len();
    Ok(DumpStats { rows, bytes })
}

fn json_string(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

/// One value in its fixture form; the error says why a value cannot be written.
fn write_json_value(
    w: &mut impl Write,
    v: ValueRef<'_>,
    kind: ColumnKind,
    datetimes: Datetimes,
) -> std::result::Result<(), String> {
    let io = |e: io::Error| e.to_string();
    match v {
        ValueRef::Null => w.write_all(b"null").map_err(io),
        ValueRef::Integer(i @ (0 | 1)) if kind == ColumnKind::Bool => w
            .write_all(if i == 1 { b"true" } else { b"false" })
            .map_err(io),
        ValueRef::Integer(i) => w
            .write_all(itoa::Buffer::new().format(i).as_bytes())
            .map_err(io),
        ValueRef::Real(f) if f.is_finite() => {
            serde_json::to_writer(w, &f).map_err(|e| e.to_string())
        }
        ValueRef::Real(f) => Err(format!("{f} cannot be written in JSON")),
        ValueRef::Text(t) => {
            let text =
                std::str::from_utf8(t).map_err(|_| "text that is not valid UTF-8".to_string())?;
            match (kind == ColumnKind::DateTime)
                .then(|| datetime_to_fixture(text, datetimes))
                .flatten()
            {
                Some(converted) => serde_json::to_writer(w, &converted),
                None => serde_json::to_writer(w, text),
            }
            .map_err(|e| e.to_string())
        }
        // Django's BinaryField serializes as base64.
        ValueRef::Blob(b) => {
            let encoded = base64::engine::general_purpose::STANDARD.encode(b);
            serde_json::to_writer(w, &encoded).map_err(|e| e.to_string())
        }
    }
}

/// Row count of tables, for `dump --check`.
pub fn count_rows(conn: &rusqlite::Connection, table: &str) -> Result<u64> {
    conn.query_row(
        &format!("SELECT COUNT(*) FROM {}", quote_ident(table)),
        [],
        |r| r.get::<_, i64>(0),
    )
    .map(|n| n as u64)
    .map_err(sql_err)
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
    let mut loader = Loader::new(conn, &config.data.labels, config.data.datetimes)?;
    for file in files {
        let rows = loader
            .load_file(&file.path, progress)
            .map_err(|e| Error::Data(format!("{}: {e}", file.name)))?;
        progress.log(&format!("Loaded {} ({rows} rows)", file.name));
        pending.rows += rows;
    }
    loader.check_foreign_keys()?;
    drop(loader);
    Ok(pending)
}

struct Loader<'c> {
    conn: &'c rusqlite::Connection,
    /// label → table name.
    by_label: HashMap<String, String>,
    schemas: HashMap<String, TableSchema>,
    datetimes: Datetimes,
}

/// A failure inside one fixture, before the file name is prefixed.
#[derive(Debug)]
struct LoadError(String);

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FixtureRecord {
    model: String,
    pk: Option<Value>,
    #[serde(default)]
    fields: serde_json::Map<String, Value>,
}

impl<'c> Loader<'c> {
    fn new(
        conn: &'c rusqlite::Connection,
        overrides: &std::collections::BTreeMap<String, String>,
        datetimes: Datetimes,
    ) -> Result<Self> {
        let mut by_label = HashMap::new();
        for name in crate::apps::list_tables(conn)? {
            let t = Table::new(&name, overrides);
            by_label.entry(t.label).or_insert(t.name);
        }
        Ok(Loader {
            conn,
            by_label,
            schemas: HashMap::new(),
            datetimes,
        })
    }

    fn load_file(
        &mut self,
        path: &Path,
        progress: &dyn Progress,
    ) -> std::result::Result<u64, LoadError> {
        let file = File::open(path).map_err(|e| LoadError(format!("cannot open: {e}")))?;
        let mut de =
            serde_json::Deserializer::from_reader(BufReader::with_capacity(256 * 1024, file));
        let mut state = FileState {
            loader: self,
            rows: 0,
            error: None,
            progress,
        };
        let result = serde::Deserializer::deserialize_seq(&mut de, RecordsVisitor(&mut state));
        if let Some(e) = state.error.take() {
            return Err(e);
        }
        result.map_err(|e| LoadError(format!("invalid fixture: {e}")))?;
        de.end()
            .map_err(|e| LoadError(format!("invalid fixture: {e}")))?;
        Ok(state.rows)
    }

    fn schema(&mut self, table: &str) -> std::result::Result<&TableSchema, LoadError> {
        if !self.schemas.contains_key(table) {
            let s = TableSchema::read(self.conn, table).map_err(|e| LoadError(e.to_string()))?;
            self.schemas.insert(table.to_string(), s);
        }
        Ok(&self.schemas[table])
    }

    fn apply(&mut self, record: FixtureRecord) -> std::result::Result<(), LoadError> {
        let model = record.model.to_lowercase();
        let table = self.by_label.get(&model).cloned().ok_or_else(|| {
            LoadError(format!(
                "model {:?} matches no table of the database (expected a table such as {:?}, or an entry in [data] labels)",
                record.model,
                model.replacen('.', "_", 1)
            ))
        })?;
        let pk = match record.pk {
            Some(v @ (Value::Number(_) | Value::String(_))) => v,
            Some(Value::Null) | None => {
                return Err(LoadError(format!(
                    "model {}: a record has no \"pk\" (natural primary keys need a load_command, e.g. python manage.py loaddata {{file}})",
                    record.model
                )));
            }
            Some(_) => {
                return Err(LoadError(format!(
                    "model {}, field pk: a natural key cannot be loaded by the built-in engine (use a load_command)",
                    record.model
                )));
            }
        };
        let schema = self.schema(&table)?.clone();
        let mut columns: Vec<String> = vec![schema.pk.clone()];
        let mut values: Vec<SqlValue> = vec![
            sql_value(&pk, schema.kind(&schema.pk), self.datetimes)
                .map_err(|m| LoadError(format!("model {}, field pk: {m}", record.model)))?,
        ];
        for (field, value) in &record.fields {
            if matches!(value, Value::Array(_) | Value::Object(_)) {
                return Err(LoadError(format!(
                    "model {}, field {field}: many-to-many lists and natural keys cannot be loaded by the built-in engine; load this fixture with a load_command (python manage.py loaddata {{file}})",
                    record.model
                )));
            }
            let column = if schema.columns.iter().any(|(c, _)| c == field) {
                field.clone()
            } else if schema
                .columns
                .iter()
                .any(|(c, _)| *c == format!("{field}_id"))
            {
                format!("{field}_id")
            } else {
                return Err(LoadError(format!(
                    "model {}, field {field}: no such column in table {table}",
                    record.model
                )));
            };
            let v = sql_value(value, schema.kind(&column), self.datetimes)
                .map_err(|m| LoadError(format!("model {}, field {field}: {m}", record.model)))?;
            columns.push(column);
            values.push(v);
        }
        let quoted: Vec<String> = columns.iter().map(|c| quote_ident(c)).collect();
        let placeholders = vec!["?"; columns.len()].join(", ");
        let updates: Vec<String> = quoted[1..]
            .iter()
            .map(|c| format!("{c} = excluded.{c}"))
            .collect();
        let conflict = if updates.is_empty() {
            "DO NOTHING".to_string()
        } else {
            format!("DO UPDATE SET {}", updates.join(", "))
        };
        let sql = format!(
            "INSERT INTO {} ({}) VALUES ({placeholders}) ON CONFLICT({}) {conflict}",
            quote_ident(&table),
            quoted.join(", "),
            quoted[0],
        );
        let mut stmt = self
            .conn
            .prepare_cached(&sql)
            .map_err(|e| LoadError(format!("model {}: {e}", record.model)))?;
        stmt.execute(rusqlite::params_from_iter(values.iter()))
            .map_err(|e| LoadError(format!("model {}, pk {pk}: {e}", record.model)))?;
        Ok(())
    }

    fn check_foreign_keys(&self) -> Result<()> {
        let mut stmt = self
            .conn
            .prepare("PRAGMA foreign_key_check")
            .map_err(sql_err)?;
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
}

fn sql_value(
    v: &Value,
    kind: ColumnKind,
    datetimes: Datetimes,
) -> std::result::Result<SqlValue, String> {
    Ok(match v {
        Value::Null => SqlValue::Null,
        Value::Bool(b) => SqlValue::Integer(*b as i64),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                SqlValue::Integer(i)
            } else if n.is_u64() {
                return Err(format!("{n} does not fit a 64-bit integer"));
            } else {
                SqlValue::Real(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        Value::String(s) if kind == ColumnKind::DateTime => {
            SqlValue::Text(datetime_from_fixture(s, datetimes)?.unwrap_or_else(|| s.clone()))
        }
        Value::String(s) if kind == ColumnKind::Blob => SqlValue::Blob(
            base64::engine::general_purpose::STANDARD
                .decode(s)
                .map_err(|e| format!("binary value is not base64: {e}"))?,
        ),
        Value::String(s) => SqlValue::Text(s.clone()),
        Value::Array(_) | Value::Object(_) => {
            return Err("lists and objects are not column values".into());
        }
    })
}

struct FileState<'a, 'c> {
    loader: &'a mut Loader<'c>,
    rows: u64,
    error: Option<LoadError>,
    progress: &'a dyn Progress,
}

/// Visits the top-level array one record at a time, so memory stays flat.
struct RecordsVisitor<'s, 'a, 'c>(&'s mut FileState<'a, 'c>);

impl<'de> Visitor<'de> for RecordsVisitor<'_, '_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON array of fixture records")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<(), A::Error> {
        while let Some(record) = seq.next_element::<FixtureRecord>()? {
            if self.0.progress.is_cancelled() {
                self.0.error = Some(LoadError("cancelled".into()));
                return Err(serde::de::Error::custom("cancelled"));
            }
            if let Err(e) = self.0.loader.apply(record) {
                self.0.error = Some(e);
                return Err(serde::de::Error::custom("record refused"));
            }
            self.0.rows += 1;
        }
        Ok(())
    }
}

impl<'de> DeserializeSeed<'de> for RecordsVisitor<'_, '_, '_> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> std::result::Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::progress::Silent;

    fn db(dir: &Path) -> rusqlite::Connection {
        let conn = rusqlite::Connection::open(dir.join("app.db")).unwrap();
        conn.execute_batch(
            "CREATE TABLE blog_category (id INTEGER PRIMARY KEY, name TEXT NOT NULL);
             CREATE TABLE blog_article (id INTEGER PRIMARY KEY, title TEXT, score REAL, raw BLOB,
                 category_id INTEGER REFERENCES blog_category(id) DEFERRABLE INITIALLY DEFERRED);",
        )
        .unwrap();
        conn
    }

    fn config(dir: &Path) -> Config {
        Config::from_toml(
            "[data]\ndatabase_url = \"sqlite://app.db\"\n",
            dir,
            Vec::new(),
        )
        .unwrap()
    }

    #[test]
    fn values_round_trip_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let conn = db(dir.path());
        conn.execute_batch("INSERT INTO blog_category VALUES (1, 'Café ☕ \"quoted\"');")
            .unwrap();
        conn.execute(
            "INSERT INTO blog_article VALUES (?1, ?2, ?3, ?4, 1)",
            rusqlite::params![i64::MAX, "t\n\u{0}x", 0.1f64 + 0.2, vec![0u8, 255, 7]],
        )
        .unwrap();
        conn.execute(
            "INSERT INTO blog_article VALUES (?1, NULL, ?2, NULL, NULL)",
            rusqlite::params![i64::MIN, 1e300f64],
        )
        .unwrap();
        let tables = vec![
            Table::new("blog_category", &Default::default()),
            Table::new("blog_article", &Default::default()),
        ];
        let out = dir.path().join("blog.json");
        let stats = dump_tables(&conn, &tables, Datetimes::Utc, &out, &Silent).unwrap();
        assert_eq!(stats.rows, 3);
        let text = std::fs::read_to_string(&out).unwrap();
        assert!(text.starts_with(r#"[{"model": "blog.category", "pk": 1, "fields": {"name": "Café ☕ \"quoted\""}}, "#), "{text}");
        assert!(!text.contains('\n'));

        let before: Vec<Vec<SqlValue>> = all_rows(&conn, "blog_article");
        conn.execute_batch("DELETE FROM blog_article; DELETE FROM blog_category;")
            .unwrap();
        drop(conn);
        let cfg = config(dir.path());
        let files = [DataFile {
            name: "data/blog.json".into(),
            path: out,
        }];
        let pending = load_fixtures(&cfg, &files, &Silent).unwrap();
        assert_eq!(pending.rows, 3);
        pending.commit().unwrap();
        let conn = rusqlite::Connection::open(dir.path().join("app.db")).unwrap();
        assert_eq!(all_rows(&conn, "blog_article"), before);
    }

    fn all_rows(conn: &rusqlite::Connection, table: &str) -> Vec<Vec<SqlValue>> {
        let mut stmt = conn
            .prepare(&format!("SELECT * FROM {table} ORDER BY 1"))
            .unwrap();
        let n = stmt.column_count();
        stmt.query_map([], |r| (0..n).map(|i| r.get::<_, SqlValue>(i)).collect())
            .unwrap()
            .collect::<std::result::Result<_, _>>()
            .unwrap()
    }

    #[test]
    fn datetimes_take_the_fixture_form_and_back() {
        use Datetimes::*;
        let to = |s, m| datetime_to_fixture(s, m);
        assert_eq!(
            to("2024-01-01 15:08:00", Utc).as_deref(),
            Some("2024-01-01T15:08:00Z")
        );
        assert_eq!(
            to("2024-01-01 15:08:00.123456", Utc).as_deref(),
            Some("2024-01-01T15:08:00.123456Z")
        );
        assert_eq!(
            to("2024-01-01 15:08:00", Naive).as_deref(),
            Some("2024-01-01T15:08:00")
        );
        assert_eq!(to("2024-01-01 15:08:00", Verbatim), None);
        assert_eq!(to("yesterday at noon", Utc), None);
        assert_eq!(to("2024-01-01", Utc), None);
        let from = |s| datetime_from_fixture(s, Utc).unwrap();
        assert_eq!(
            from("2024-01-01T15:08:00Z").as_deref(),
            Some("2024-01-01 15:08:00")
        );
        // Django's form: microseconds, six digits, only when non-zero.
        assert_eq!(
            from("2024-01-01T15:08:00.789Z").as_deref(),
            Some("2024-01-01 15:08:00.789000")
        );
        assert_eq!(
            from("2024-01-01T15:08:00.000Z").as_deref(),
            Some("2024-01-01 15:08:00")
        );
        assert_eq!(
            from("2024-01-01T16:08:00+01:00").as_deref(),
            Some("2024-01-01 15:08:00")
        );
        assert_eq!(
            from("2024-01-01T15:08:00").as_deref(),
            Some("2024-01-01 15:08:00")
        );
        assert_eq!(from("2024-01-01"), None);
        assert!(datetime_from_fixture("2024-13-01T15:08:00Z", Utc).is_err());
        assert_eq!(
            datetime_from_fixture("2024-01-01T15:08:00Z", Verbatim).unwrap(),
            None
        );
    }

    #[test]
    fn django_columns_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let conn = rusqlite::Connection::open(dir.path().join("app.db")).unwrap();
        conn.execute_batch(
            "CREATE TABLE blog_post (id integer NOT NULL PRIMARY KEY AUTOINCREMENT, created datetime NOT NULL,
                 published bool NOT NULL, note text);
             INSERT INTO blog_post VALUES (1, '2024-01-01 15:08:00', 1, '2024-01-01 15:08:00'),
                                          (2, '2024-06-30 23:59:59.000001', 0, NULL);",
        )
        .unwrap();
        let out = dir.path().join("blog.json");
        let tables = vec![Table::new("blog_post", &Default::default())];
        dump_tables(&conn, &tables, Datetimes::Utc, &out, &Silent).unwrap();
        let text = std::fs::read_to_string(&out).unwrap();
        assert_eq!(
            text,
            r#"[{"model": "blog.post", "pk": 1, "fields": {"created": "2024-01-01T15:08:00Z", "published": true, "note": "2024-01-01 15:08:00"}}, {"model": "blog.post", "pk": 2, "fields": {"created": "2024-06-30T23:59:59.000001Z", "published": false, "note": null}}]"#
        );
        let before = all_rows(&conn, "blog_post");
        conn.execute_batch("DELETE FROM blog_post").unwrap();
        drop(conn);
        let cfg = config(dir.path());
        let files = [DataFile {
            name: "data/blog.json".into(),
            path: out,
        }];
        load_fixtures(&cfg, &files, &Silent)
            .unwrap()
            .commit()
            .unwrap();
        let conn = rusqlite::Connection::open(dir.path().join("app.db")).unwrap();
        assert_eq!(all_rows(&conn, "blog_post"), before);
    }

    #[test]
    fn unmappable_fixture_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let conn = db(dir.path());
        conn.execute_batch("INSERT INTO blog_category VALUES (9, 'kept');")
            .unwrap();
        drop(conn);
        let fixture = dir.path().join("f.json");
        std::fs::write(
            &fixture,
            r#"[{"model": "blog.category", "pk": 1, "fields": {"name": "News"}},
                {"model": "blog.article", "pk": 1, "fields": {"title": "x", "category": 1, "tags": [1, 2]}}]"#,
        )
        .unwrap();
        let cfg = config(dir.path());
        let files = [DataFile {
            name: "data/blog.json".into(),
            path: fixture,
        }];
        let err = load_fixtures(&cfg, &files, &Silent)
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("blog.article") && err.contains("tags"),
            "{err}"
        );
        let conn = rusqlite::Connection::open(dir.path().join("app.db")).unwrap();
        let n: i64 = conn
            .query_row("SELECT COUNT(*) FROM blog_category", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 1);
    }

    #[test]
    fn field_names_map_to_fk_columns_and_fk_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        drop(db(dir.path()));
        let fixture = dir.path().join("f.json");
        std::fs::write(
            &fixture,
            r#"[{"model": "blog.article", "pk": 1, "fields": {"title": "x", "category": 5}}]"#,
        )
        .unwrap();
        let cfg = config(dir.path());
        let files = [DataFile {
            name: "data/blog.json".into(),
            path: fixture.clone(),
        }];
        let err = load_fixtures(&cfg, &files, &Silent)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("foreign key"), "{err}");
        std::fs::write(
            &fixture,
            r#"[{"model": "blog.article", "pk": 1, "fields": {"title": "x", "category": 5}},
                {"model": "Blog.Category", "pk": 5, "fields": {"name": "later"}}]"#,
        )
        .unwrap();
        load_fixtures(&cfg, &files, &Silent)
            .unwrap()
            .commit()
            .unwrap();
    }
}

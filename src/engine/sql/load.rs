//! The fixture loader, as `loaddata` loads: one transaction for every
//! fixture, records upserted by primary key (or found by natural key),
//! foreign keys given as primary keys or natural keys, many-to-many lists
//! replacing each object's links. Anything that cannot be mapped fails the
//! whole load before it is committed.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use serde::Deserialize;
use serde::de::{DeserializeSeed, SeqAccess, Visitor};
use serde_json::Value;

use super::backend::{Backend, SqlValue};
use super::catalog::Catalog;
use super::natural::NaturalKeys;
use super::schema::{no_pk_message, quote_ident};
use super::values::{Datetimes, sql_value};
use crate::progress::Progress;

/// A failure inside one fixture, before the file name is prefixed.
#[derive(Debug)]
pub struct LoadError(pub String);

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct FixtureRecord {
    model: String,
    pk: Option<Value>,
    #[serde(default)]
    fields: serde_json::Map<String, Value>,
}

/// Why a record was not applied.
enum Refused {
    /// A natural key names an object not loaded yet: retried at the end of
    /// the file, as `loaddata` handles forward references.
    Later(LoadError),
    Error(LoadError),
}

impl From<LoadError> for Refused {
    fn from(e: LoadError) -> Self {
        Refused::Error(e)
    }
}

/// A record resolved to column values, ready to write.
struct Row {
    model: usize,
    pk: Option<SqlValue>,
    columns: Vec<usize>,
    values: Vec<SqlValue>,
    links: Vec<(usize, Vec<SqlValue>)>,
}

pub struct Loader<'c> {
    db: &'c dyn Backend,
    catalog: &'c Catalog,
    by_label: HashMap<String, usize>,
    keys: NaturalKeys<'c>,
    datetimes: Datetimes,
    ignore_nonexistent: bool,
    /// The last upsert statement: (model, columns) → SQL.
    last_sql: Option<(usize, Vec<usize>, String)>,
    /// Models (through models included) that rows were written to.
    pub written: BTreeSet<usize>,
}

impl<'c> Loader<'c> {
    pub fn new(
        db: &'c dyn Backend,
        catalog: &'c Catalog,
        datetimes: Datetimes,
        ignore_nonexistent: bool,
    ) -> Self {
        let by_label = catalog
            .models
            .iter()
            .enumerate()
            .map(|(i, m)| (m.label.clone(), i))
            .collect();
        Loader {
            db,
            catalog,
            by_label,
            keys: NaturalKeys::new(db, catalog, datetimes),
            datetimes,
            ignore_nonexistent,
            last_sql: None,
            written: BTreeSet::new(),
        }
    }

    pub fn load_file(
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
            deferred: Vec::new(),
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
        let mut rows = state.rows;
        let deferred = std::mem::take(&mut state.deferred);
        rows += self.apply_deferred(deferred)?;
        Ok(rows)
    }

    /// Retry the records that named objects loaded after them, while some
    /// succeed; what remains names a key nothing holds.
    fn apply_deferred(
        &mut self,
        mut deferred: Vec<FixtureRecord>,
    ) -> std::result::Result<u64, LoadError> {
        let mut rows = 0;
        while !deferred.is_empty() {
            let before = deferred.len();
            let mut still = Vec::new();
            let mut first_error = None;
            for record in deferred {
                match self.apply(&record) {
                    Ok(()) => rows += 1,
                    Err(Refused::Later(e)) => {
                        first_error.get_or_insert(e);
                        still.push(record);
                    }
                    Err(Refused::Error(e)) => return Err(e),
                }
            }
            if still.len() == before
                && let Some(e) = first_error
            {
                return Err(e);
            }
            deferred = still;
        }
        Ok(rows)
    }

    fn model_of(&self, record: &FixtureRecord) -> std::result::Result<Option<usize>, LoadError> {
        let label = record.model.to_lowercase();
        if let Some(i) = self.by_label.get(&label) {
            return Ok(Some(*i));
        }
        if self.ignore_nonexistent {
            return Ok(None);
        }
        Err(LoadError(format!(
            "model {:?} matches no table of the database (expected a table such as {:?}, or an entry in [data] labels)",
            record.model,
            label.replacen('.', "_", 1)
        )))
    }

    fn apply(&mut self, record: &FixtureRecord) -> std::result::Result<(), Refused> {
        let Some(model) = self.model_of(record)? else {
            return Ok(());
        };
        let row = self.resolve(model, record)?;
        self.write(row, &record.model).map_err(Refused::Error)
    }

    /// Every value of the record in its stored form, natural keys resolved.
    fn resolve(
        &mut self,
        model: usize,
        record: &FixtureRecord,
    ) -> std::result::Result<Row, Refused> {
        let catalog = self.catalog;
        let m = &catalog.models[model];
        let label = &record.model;
        if m.schema.pk.is_none() {
            return Err(LoadError(format!("model {label}: {}", no_pk_message(&m.table))).into());
        }
        let mut row = Row {
            model,
            pk: None,
            columns: Vec::with_capacity(record.fields.len()),
            values: Vec::with_capacity(record.fields.len()),
            links: Vec::new(),
        };
        for (field, value) in &record.fields {
            let err = |m: String| LoadError(format!("model {label}, field {field}: {m}"));
            if let Some(t) = m.m2m.iter().find(|t| {
                catalog.models[**t]
                    .through
                    .as_ref()
                    .is_some_and(|th| th.field == *field)
            }) {
                let targets = self.m2m_targets(*t, value).map_err(|r| r.map(err))?;
                row.links.push((*t, targets));
                continue;
            }
            let Some(column) = m
                .schema
                .columns
                .iter()
                .position(|c| c.field == *field)
                .or_else(|| m.schema.columns.iter().position(|c| c.name == *field))
            else {
                if self.ignore_nonexistent {
                    continue;
                }
                return Err(err(format!(
                    "no such field in table {} (load --ignorenonexistent skips it; a load_command such as `python manage.py loaddata {{file}}` loads it through Django)",
                    m.table
                ))
                .into());
            };
            let c = &m.schema.columns[column];
            let v = match (value, &c.references) {
                (Value::Array(key), Some(target)) => {
                    self.natural_target(target, key).map_err(|r| r.map(err))?
                }
                _ => sql_value(value, c.kind, self.datetimes).map_err(err)?,
            };
            row.columns.push(column);
            row.values.push(v);
        }
        row.pk = match &record.pk {
            Some(v @ (Value::Number(_) | Value::String(_))) => Some(
                sql_value(v, m.schema.pk_kind(), self.datetimes)
                    .map_err(|e| LoadError(format!("model {label}, field pk: {e}")))?,
            ),
            Some(Value::Null) | None => self
                .pk_by_natural_key(&row)
                .map_err(|e| LoadError(format!("model {label}: {e}")))?,
            Some(other) => {
                return Err(LoadError(format!(
                    "model {label}, field pk: {other} is not a primary key"
                ))
                .into());
            }
        };
        Ok(row)
    }

    /// The row a record without `pk` updates: the one with its natural key.
    fn pk_by_natural_key(&self, row: &Row) -> std::result::Result<Option<SqlValue>, String> {
        let m = &self.catalog.models[row.model];
        let Some(fields) = &m.natural_key else {
            return Ok(None);
        };
        let mut columns = Vec::new();
        for f in fields {
            let found = row
                .columns
                .iter()
                .zip(&row.values)
                .find(|(c, _)| m.schema.columns[**c].field == *f);
            match found {
                Some((c, v)) => columns.push((m.schema.columns[*c].name.clone(), v.clone())),
                None => return Ok(None),
            }
        }
        self.keys.find(row.model, &columns)
    }

    /// The primary key a natural foreign key names.
    fn natural_target(
        &mut self,
        table: &str,
        key: &[Value],
    ) -> std::result::Result<SqlValue, Refused> {
        let target = self
            .catalog
            .index_of_table(table)
            .ok_or_else(|| LoadError(format!("table {table} is not a model")))?;
        match self.keys.pk_of(target, key) {
            Ok(Some(pk)) => Ok(pk),
            Ok(None) => Err(Refused::Later(LoadError(format!(
                "no {} has the natural key {}",
                self.catalog.models[target].label,
                Value::Array(key.to_vec())
            )))),
            Err(e) => Err(LoadError(e).into()),
        }
    }

    fn m2m_targets(
        &mut self,
        through: usize,
        value: &Value,
    ) -> std::result::Result<Vec<SqlValue>, Refused> {
        let t = self.catalog.models[through]
            .through
            .as_ref()
            .expect("a through model");
        let Value::Array(items) = value else {
            return Err(LoadError("a many-to-many field takes a list".into()).into());
        };
        let kind = self.catalog.models[through].schema.kind(&t.target_column);
        let target_table = t.target_table.clone();
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            out.push(match item {
                Value::Array(key) => self.natural_target(&target_table, key)?,
                v => sql_value(v, kind, self.datetimes).map_err(LoadError)?,
            });
        }
        Ok(out)
    }
}

impl Refused {
    fn map(self, f: impl Fn(String) -> LoadError) -> Refused {
        match self {
            Refused::Later(e) => Refused::Later(f(e.0)),
            Refused::Error(e) => Refused::Error(f(e.0)),
        }
    }
}

impl Loader<'_> {
    /// Upsert the row, then set its many-to-many links.
    fn write(&mut self, row: Row, label: &str) -> std::result::Result<(), LoadError> {
        let m = &self.catalog.models[row.model];
        let pk_name = m.schema.pk.as_deref().unwrap_or_default();
        let pk_column = m
            .schema
            .column(pk_name)
            .ok_or_else(|| LoadError(no_pk_message(&m.table)))?;
        let err = |pk: &Option<SqlValue>, e: String| match pk {
            Some(pk) => LoadError(format!("model {label}, pk {}: {e}", show(pk))),
            None => LoadError(format!("model {label}: {e}")),
        };
        let (columns, values): (Vec<usize>, Vec<SqlValue>) = row
            .columns
            .iter()
            .zip(row.values)
            .filter(|(c, _)| m.schema.columns[**c].name != pk_name)
            .map(|(c, v)| (*c, v))
            .unzip();
        let owner = match row.pk {
            Some(pk) => {
                let sql = self.upsert_sql(row.model, &columns);
                let mut params = Vec::with_capacity(values.len() + 1);
                params.push(pk);
                params.extend(values);
                self.db
                    .execute(&sql, &params)
                    .map_err(|e| err(&params.first().cloned(), e))?;
                params.swap_remove(0)
            }
            None => {
                let names: Vec<String> = columns
                    .iter()
                    .map(|c| quote_ident(&m.schema.columns[*c].name))
                    .collect();
                let sql = if names.is_empty() {
                    format!("INSERT INTO {} DEFAULT VALUES", quote_ident(&m.table))
                } else {
                    let params: Vec<String> = columns
                        .iter()
                        .enumerate()
                        .map(|(i, c)| self.db.placeholder(i + 1, &m.schema.columns[*c]))
                        .collect();
                    format!(
                        "INSERT INTO {} ({}) VALUES ({})",
                        quote_ident(&m.table),
                        names.join(", "),
                        params.join(", ")
                    )
                };
                self.db
                    .insert_returning(&sql, pk_column, &values)
                    .map_err(|e| err(&None, e))?
            }
        };
        self.written.insert(row.model);
        for (through, targets) in row.links {
            self.set_links(through, &owner, targets)
                .map_err(|e| err(&Some(owner.clone()), e))?;
            self.written.insert(through);
        }
        Ok(())
    }

    /// `INSERT ... ON CONFLICT(pk) DO UPDATE`, the primary key first.
    fn upsert_sql(&mut self, model: usize, columns: &[usize]) -> String {
        if let Some((m, c, sql)) = &self.last_sql
            && *m == model
            && c == columns
        {
            return sql.clone();
        }
        let schema = &self.catalog.models[model].schema;
        let pk_name = schema.pk.as_deref().unwrap_or_default();
        let pk = quote_ident(pk_name);
        let quoted: Vec<String> = columns
            .iter()
            .map(|c| quote_ident(&schema.columns[*c].name))
            .collect();
        let updates: Vec<String> = quoted
            .iter()
            .map(|c| format!("{c} = excluded.{c}"))
            .collect();
        let conflict = if updates.is_empty() {
            "DO NOTHING".to_string()
        } else {
            format!("DO UPDATE SET {}", updates.join(", "))
        };
        let names = std::iter::once(pk.clone())
            .chain(quoted)
            .collect::<Vec<_>>();
        let params: Vec<String> = schema
            .column(pk_name)
            .into_iter()
            .chain(columns.iter().map(|c| &schema.columns[*c]))
            .enumerate()
            .map(|(i, c)| self.db.placeholder(i + 1, c))
            .collect();
        let sql = format!(
            "INSERT INTO {} ({}) VALUES ({}) ON CONFLICT({pk}) {conflict}",
            quote_ident(&schema.name),
            names.join(", "),
            params.join(", "),
        );
        self.last_sql = Some((model, columns.to_vec(), sql.clone()));
        sql
    }

    /// Make `owner`'s links exactly `targets`, as `set()` does: links kept
    /// stay as they are, missing ones are added in target order.
    fn set_links(
        &self,
        through: usize,
        owner: &SqlValue,
        mut targets: Vec<SqlValue>,
    ) -> std::result::Result<(), String> {
        let m = &self.catalog.models[through];
        let t = m.through.as_ref().expect("a through model");
        let (Some(own_col), Some(target_col)) = (
            m.schema.column(&t.owner_column),
            m.schema.column(&t.target_column),
        ) else {
            return Err(format!("table {} lacks its link columns", m.table));
        };
        let db = self.db;
        let (table, own, target) = (
            quote_ident(&m.table),
            quote_ident(&t.owner_column),
            quote_ident(&t.target_column),
        );
        let (p1, p2) = (db.placeholder(1, own_col), db.placeholder(2, target_col));
        let existing: Vec<SqlValue> = db
            .query(
                &format!(
                    "SELECT {} FROM {table} WHERE {own} = {p1}",
                    db.select(target_col, None)
                ),
                std::slice::from_ref(owner),
            )?
            .into_iter()
            .filter_map(|r| r.into_iter().next())
            .collect();
        let delete = format!("DELETE FROM {table} WHERE {own} = {p1} AND {target} = {p2}");
        for old in existing.iter().filter(|o| !targets.contains(o)) {
            db.execute(&delete, &[owner.clone(), old.clone()])?;
        }
        targets.sort_by(compare);
        targets.dedup();
        let insert = format!("INSERT INTO {table} ({own}, {target}) VALUES ({p1}, {p2})");
        for new in targets.iter().filter(|n| !existing.contains(n)) {
            db.execute(&insert, &[owner.clone(), new.clone()])?;
        }
        Ok(())
    }
}

/// SQLite's order of primary keys: numbers, then text.
fn compare(a: &SqlValue, b: &SqlValue) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    match (a, b) {
        (SqlValue::Integer(x), SqlValue::Integer(y)) => x.cmp(y),
        (SqlValue::Text(x), SqlValue::Text(y)) => x.cmp(y),
        (SqlValue::Integer(_), _) => Ordering::Less,
        (_, SqlValue::Integer(_)) => Ordering::Greater,
        _ => Ordering::Equal,
    }
}

fn show(v: &SqlValue) -> String {
    match v {
        SqlValue::Integer(i) => i.to_string(),
        SqlValue::Text(t) => format!("{t:?}"),
        other => format!("{other:?}"),
    }
}

struct FileState<'a, 'c> {
    loader: &'a mut Loader<'c>,
    rows: u64,
    deferred: Vec<FixtureRecord>,
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
            if self.0.rows.is_multiple_of(4096) && self.0.progress.is_cancelled() {
                self.0.error = Some(LoadError("cancelled".into()));
                return Err(serde::de::Error::custom("cancelled"));
            }
            match self.0.loader.apply(&record) {
                Ok(()) => self.0.rows += 1,
                Err(Refused::Later(_)) => self.0.deferred.push(record),
                Err(Refused::Error(e)) => {
                    self.0.error = Some(e);
                    return Err(serde::de::Error::custom("record refused"));
                }
            }
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

//! Natural keys: a row's key as `natural_key()` returns it (dump), and the
//! row a key names, as `get_by_natural_key()` finds it (load).
//!
//! A key field that is a foreign key to a model with a natural key stands for
//! that model's key, flattened: a permission's key is
//! `[codename, app_label, model]`.

use std::collections::HashMap;

use serde_json::Value;

use super::backend::{Backend, SqlValue, ValueRef};
use super::catalog::Catalog;
use super::schema::quote_ident;
use super::values::{self, Datetimes};

/// Cached keys per direction stay below this many entries.
const CACHE_LIMIT: usize = 100_000;

/// A primary key as a map key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Pk {
    Int(i64),
    Text(String),
}

impl Pk {
    fn of(v: ValueRef<'_>) -> Option<Pk> {
        match v {
            ValueRef::Integer(i) => Some(Pk::Int(i)),
            ValueRef::Text(t) => Some(Pk::Text(String::from_utf8_lossy(t).into_owned())),
            _ => None,
        }
    }
}

pub struct NaturalKeys<'a> {
    db: &'a dyn Backend,
    catalog: &'a Catalog,
    datetimes: Datetimes,
    keys: HashMap<(usize, Pk), Value>,
    pks: HashMap<(usize, String), SqlValue>,
}

impl<'a> NaturalKeys<'a> {
    pub fn new(db: &'a dyn Backend, catalog: &'a Catalog, datetimes: Datetimes) -> Self {
        NaturalKeys {
            db,
            catalog,
            datetimes,
            keys: HashMap::new(),
            pks: HashMap::new(),
        }
    }

    /// The model a foreign key column to `table` writes a natural key for.
    pub fn keyed_model(&self, table: &str) -> Option<usize> {
        self.catalog
            .index_of_table(table)
            .filter(|i| self.catalog.models[*i].natural_key.is_some())
    }

    /// The natural key of the row `pk` of `model`, as a JSON list.
    pub fn key_of(&mut self, model: usize, pk: ValueRef<'_>) -> Result<Value, String> {
        let cache_key = Pk::of(pk).map(|p| (model, p));
        if let Some(k) = cache_key.as_ref().and_then(|k| self.keys.get(k)) {
            return Ok(k.clone());
        }
        let m = &self.catalog.models[model];
        let fields = m.natural_key.clone().unwrap_or_default();
        let pk_name = m.schema.pk.as_deref().ok_or("no primary key")?;
        let pk_col = m.schema.column(pk_name).ok_or("no primary key")?;
        let columns: Vec<_> = fields
            .iter()
            .filter_map(|f| m.schema.columns.iter().find(|c| c.field == *f).cloned())
            .collect();
        let select: Vec<String> = columns.iter().map(|c| self.db.select(c, None)).collect();
        let sql = format!(
            "SELECT {} FROM {} WHERE {} = {}",
            select.join(", "),
            quote_ident(&m.table),
            quote_ident(pk_name),
            self.db.placeholder(1, pk_col)
        );
        let rows = self.db.query(&sql, &[SqlValue::from(pk)])?;
        let Some(row) = rows.into_iter().next() else {
            return Err(format!(
                "{} has no row with primary key {:?}",
                m.label,
                SqlValue::from(pk)
            ));
        };
        let mut key = Vec::new();
        for (c, v) in columns.iter().zip(&row) {
            let target = c.references.as_deref().and_then(|t| self.keyed_model(t));
            match (target, v) {
                (Some(t), v) if *v != SqlValue::Null => match self.key_of(t, v.into())? {
                    Value::Array(sub) => key.extend(sub),
                    other => key.push(other),
                },
                _ => key.push(values::fixture_value(v.into(), c.kind, self.datetimes)?),
            }
        }
        let key = Value::Array(key);
        if let Some(k) = cache_key {
            if self.keys.len() >= CACHE_LIMIT {
                self.keys.clear();
            }
            self.keys.insert(k, key.clone());
        }
        Ok(key)
    }

    /// How many values the natural key of `model` holds, flattened.
    fn key_len(&self, model: usize) -> usize {
        let m = &self.catalog.models[model];
        m.natural_key
            .iter()
            .flatten()
            .map(|f| {
                m.schema
                    .columns
                    .iter()
                    .find(|c| c.field == *f)
                    .and_then(|c| c.references.as_deref())
                    .and_then(|t| self.keyed_model(t))
                    .filter(|t| *t != model)
                    .map_or(1, |t| self.key_len(t))
            })
            .sum()
    }

    /// The column values a natural key stands for (foreign keys resolved).
    pub fn key_columns(
        &mut self,
        model: usize,
        key: &[Value],
    ) -> Result<Option<Vec<(String, SqlValue)>>, String> {
        let m = &self.catalog.models[model];
        let fields = m.natural_key.clone().ok_or_else(|| {
            format!(
                "{} has no natural key (declare its fields in [data.natural_keys])",
                m.label
            )
        })?;
        if key.len() != self.key_len(model) {
            return Err(format!(
                "{} is not a natural key of {} ({} values expected)",
                Value::Array(key.to_vec()),
                m.label,
                self.key_len(model)
            ));
        }
        let mut out = Vec::new();
        let mut rest = key;
        for f in &fields {
            let m = &self.catalog.models[model];
            let Some(c) = m.schema.columns.iter().find(|c| c.field == *f).cloned() else {
                continue;
            };
            let target = c.references.as_deref().and_then(|t| self.keyed_model(t));
            match target.filter(|t| *t != model) {
                Some(t) => {
                    let n = self.key_len(t);
                    let (sub, tail) = rest.split_at(n);
                    rest = tail;
                    match self.pk_of(t, sub)? {
                        Some(pk) => out.push((c.name.clone(), pk)),
                        None => return Ok(None),
                    }
                }
                None => {
                    let (v, tail) = rest.split_first().ok_or("key too short")?;
                    rest = tail;
                    out.push((
                        c.name.clone(),
                        values::sql_value(v, c.kind, self.datetimes)?,
                    ));
                }
            }
        }
        Ok(Some(out))
    }

    /// The primary key of the row of `model` with natural key `key`, if any.
    pub fn pk_of(&mut self, model: usize, key: &[Value]) -> Result<Option<SqlValue>, String> {
        let cache_key = (model, Value::Array(key.to_vec()).to_string());
        if let Some(pk) = self.pks.get(&cache_key) {
            return Ok(Some(pk.clone()));
        }
        let Some(columns) = self.key_columns(model, key)? else {
            return Ok(None);
        };
        let found = self.find(model, &columns)?;
        if let Some(pk) = &found {
            if self.pks.len() >= CACHE_LIMIT {
                self.pks.clear();
            }
            self.pks.insert(cache_key, pk.clone());
        }
        Ok(found)
    }

    /// The primary key of the row of `model` whose columns hold these values.
    pub fn find(
        &self,
        model: usize,
        columns: &[(String, SqlValue)],
    ) -> Result<Option<SqlValue>, String> {
        let m = &self.catalog.models[model];
        let pk = m.schema.pk.as_deref().ok_or("no primary key")?;
        // `=` for values, `IS NULL` for none: the same on every database.
        let mut conditions = Vec::new();
        let mut params = Vec::new();
        for (name, v) in columns {
            let c = m.schema.column(name).ok_or("no such column")?;
            if *v == SqlValue::Null {
                conditions.push(format!("{} IS NULL", quote_ident(name)));
            } else {
                params.push(v.clone());
                let p = self.db.placeholder(params.len(), c);
                conditions.push(format!("{} = {p}", quote_ident(name)));
            }
        }
        let sql = format!(
            "SELECT {} FROM {} WHERE {}",
            self.db
                .select(m.schema.column(pk).ok_or("no primary key")?, None),
            quote_ident(&m.table),
            conditions.join(" AND ")
        );
        let rows = self.db.query(&sql, &params)?;
        Ok(rows.into_iter().next().and_then(|r| r.into_iter().next()))
    }
}

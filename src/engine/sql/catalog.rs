//! The models of a database, learned from the database itself: labels from
//! `django_content_type` and Django's table naming (`{app_label}_{model}`),
//! the contrib tables that don't follow it, `[data] labels`, auto-created
//! many-to-many through tables, natural keys, and registration order.

use std::collections::{BTreeMap, HashMap};

use super::backend::{Backend, SqlValue};
use super::schema::TableSchema;
use crate::error::{Error, Result};

/// Contrib models whose tables don't follow `{app_label}_{model}`.
const CONTRIB_TABLES: &[(&str, &str)] = &[
    ("django_site", "sites.site"),
    ("django_content_type", "contenttypes.contenttype"),
    ("django_admin_log", "admin.logentry"),
    ("django_session", "sessions.session"),
];

/// Tables that are never models.
const NOT_MODELS: &[&str] = &["django_migrations"];

/// Natural keys Django's contrib models define (`natural_key()`), by field.
/// A field that is a foreign key stands for the natural key of its target.
const CONTRIB_NATURAL_KEYS: &[(&str, &[&str])] = &[
    ("contenttypes.contenttype", &["app_label", "model"]),
    ("auth.permission", &["codename", "content_type"]),
    ("auth.group", &["name"]),
    ("auth.user", &["username"]),
    ("sites.site", &["domain"]),
];

/// An auto-created many-to-many through table.
#[derive(Debug, Clone)]
pub struct Through {
    /// Index of the model declaring the field.
    pub owner: usize,
    /// The many-to-many field's name (`groups`).
    pub field: String,
    /// Column pointing to the owner (`user_id`).
    pub owner_column: String,
    /// Column pointing to the target (`group_id`).
    pub target_column: String,
    /// The target's table.
    pub target_table: String,
}

#[derive(Debug, Clone)]
pub struct Model {
    pub table: String,
    /// `app_label.model`, lowercase.
    pub label: String,
    pub schema: TableSchema,
    /// Set when this model is an auto-created through model.
    pub through: Option<Through>,
    /// Indexes of the through models of this model's many-to-many fields.
    pub m2m: Vec<usize>,
    /// Field names of its natural key, in `natural_key()` order.
    pub natural_key: Option<Vec<String>>,
}

impl Model {
    pub fn app(&self) -> &str {
        self.label.split_once('.').map_or(&self.label, |(a, _)| a)
    }
}

/// Every model of the database, in Django's registration order.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    pub models: Vec<Model>,
    /// Content types whose model has no table (a custom `db_table` to map in
    /// `[data] labels`).
    pub unmatched_content_types: Vec<String>,
    /// Tables that are no model of any content type.
    pub unlabeled_tables: Vec<String>,
    /// Whether the labels come from `django_content_type`.
    pub from_content_types: bool,
    /// `[data.natural_keys]` entries that match no model or name fields its
    /// table lacks.
    pub unusable_natural_keys: Vec<String>,
}

impl Catalog {
    pub fn read(
        db: &dyn Backend,
        labels: &BTreeMap<String, String>,
        natural_keys: &BTreeMap<String, Vec<String>>,
    ) -> Result<Catalog> {
        let tables = db.tables()?;
        let schemas: Vec<TableSchema> = tables
            .iter()
            .map(|t| db.inspect(t))
            .collect::<Result<_>>()?;
        let content_types = read_content_types(db, &tables)?;
        let mut catalog = Catalog {
            from_content_types: content_types.is_some(),
            ..Default::default()
        };
        // label → content type id (registration order).
        let ct_order: HashMap<String, usize> = content_types
            .iter()
            .flatten()
            .enumerate()
            .map(|(i, l)| (l.clone(), i))
            .collect();
        let mut labeled: Vec<(usize, String)> = Vec::new();
        let mut unlabeled: Vec<usize> = Vec::new();
        for (i, table) in tables.iter().enumerate() {
            match base_label(table, labels, &content_types) {
                Some(label) => labeled.push((i, label)),
                None if NOT_MODELS.contains(&table.as_str()) => {}
                None => unlabeled.push(i),
            }
        }
        if let Some(cts) = &content_types {
            catalog.unmatched_content_types = cts
                .iter()
                .filter(|l| !labeled.iter().any(|(_, x)| x == *l))
                .cloned()
                .collect();
        }
        // Registration order: content type ids; else (and after them) the
        // order the tables were created in, which migrations give.
        labeled.sort_by_key(|(i, l)| (ct_order.get(l).copied().unwrap_or(usize::MAX), *i));
        for (i, label) in labeled {
            catalog.models.push(Model {
                table: tables[i].clone(),
                label,
                schema: schemas[i].clone(),
                through: None,
                m2m: Vec::new(),
                natural_key: None,
            });
        }
        catalog.add_throughs(&tables, &schemas, &mut unlabeled);
        catalog.unlabeled_tables = unlabeled.iter().map(|i| tables[*i].clone()).collect();
        catalog.set_natural_keys(natural_keys);
        Ok(catalog)
    }

    /// Find the through tables, insert each just before its owner (where
    /// Django registers auto-created models), and link them.
    fn add_throughs(
        &mut self,
        tables: &[String],
        schemas: &[TableSchema],
        candidates: &mut Vec<usize>,
    ) {
        // In creation order, which is the order of the fields.
        let found: Vec<(usize, String, Through)> = schemas
            .iter()
            .enumerate()
            .filter_map(|(i, s)| self.through_of(&tables[i], s).map(|(o, t)| (i, o, t)))
            .collect();
        // With labels guessed from names, a through table was labelled like
        // a model: take it back.
        candidates.retain(|c| !found.iter().any(|(i, _, _)| i == c));
        self.models
            .retain(|m| !found.iter().any(|(i, _, _)| tables[*i] == m.table));
        let mut ordered: Vec<Model> = Vec::new();
        for mut owner in std::mem::take(&mut self.models) {
            for (i, owner_table, through) in &found {
                if *owner_table == owner.table {
                    owner.m2m.push(ordered.len());
                    ordered.push(Model {
                        table: tables[*i].clone(),
                        label: format!("{}_{}", owner.label, through.field),
                        schema: schemas[*i].clone(),
                        through: Some(through.clone()),
                        m2m: Vec::new(),
                        natural_key: None,
                    });
                }
            }
            let at = ordered.len();
            for m in &owner.m2m {
                if let Some(t) = ordered[*m].through.as_mut() {
                    t.owner = at;
                }
            }
            ordered.push(owner);
        }
        self.models = ordered;
    }

    /// The through table of a many-to-many field: a primary key and two
    /// foreign keys, unique together, named `{owner table}_{field}`.
    fn through_of(&self, table: &str, schema: &TableSchema) -> Option<(String, Through)> {
        let pk = schema.pk.as_deref()?;
        if schema.columns.len() != 3 {
            return None;
        }
        let fks: Vec<_> = schema
            .columns
            .iter()
            .filter(|c| c.name != pk && c.references.is_some())
            .collect();
        if fks.len() != 2 {
            return None;
        }
        let pair = |set: &Vec<String>| set.len() == 2 && fks.iter().all(|c| set.contains(&c.name));
        if !schema.unique.iter().any(pair) {
            return None;
        }
        // The owner: the longest model table that prefixes the name and that
        // one of the keys points to.
        let owner = self
            .models
            .iter()
            .filter(|m| m.through.is_none())
            .filter(|m| {
                table.len() > m.table.len() + 1 && table.starts_with(&format!("{}_", m.table))
            })
            .filter(|m| {
                fks.iter()
                    .any(|c| c.references.as_deref() == Some(m.table.as_str()))
            })
            .max_by_key(|m| m.table.len())?;
        let field = table[owner.table.len() + 1..].to_string();
        let points_to_owner =
            |c: &&&super::schema::Column| c.references.as_deref() == Some(owner.table.as_str());
        let (own, target) = if fks.iter().all(|c| points_to_owner(&c)) {
            // To itself: Django names the columns from_{model}_id, to_{model}_id.
            let from = fks.iter().find(|c| c.name.starts_with("from_"))?;
            let to = fks.iter().find(|c| c.name != from.name)?;
            (from, to)
        } else {
            let own = fks.iter().find(points_to_owner)?;
            let target = fks.iter().find(|c| c.name != own.name)?;
            (own, target)
        };
        let through = Through {
            owner: 0,
            field,
            owner_column: own.name.clone(),
            target_column: target.name.clone(),
            target_table: target.references.clone()?,
        };
        Some((owner.table.clone(), through))
    }

    fn set_natural_keys(&mut self, configured: &BTreeMap<String, Vec<String>>) {
        let mut keys: HashMap<String, Vec<String>> = CONTRIB_NATURAL_KEYS
            .iter()
            .map(|(l, f)| (l.to_string(), f.iter().map(|s| s.to_string()).collect()))
            .collect();
        for (label, fields) in configured {
            keys.insert(label.to_lowercase(), fields.clone());
            let usable = self.models.iter().any(|m| {
                m.label == label.to_lowercase()
                    && fields
                        .iter()
                        .all(|f| m.schema.columns.iter().any(|c| c.field == *f))
            });
            if !usable {
                self.unusable_natural_keys.push(label.clone());
            }
        }
        for m in &mut self.models {
            if let Some(fields) = keys.get(&m.label)
                && fields
                    .iter()
                    .all(|f| m.schema.columns.iter().any(|c| c.field == *f))
            {
                m.natural_key = Some(fields.clone());
            }
        }
    }

    pub fn index_of_table(&self, table: &str) -> Option<usize> {
        self.models.iter().position(|m| m.table == table)
    }

    pub fn index_of_label(&self, label: &str) -> Option<usize> {
        let label = label.to_lowercase();
        self.models.iter().position(|m| m.label == label)
    }

    /// `dumpdata`'s order for natural keys (`serializers.sort_dependencies`
    /// with cycles allowed): a model comes after the models with a natural
    /// key that it points to.
    pub fn sort_dependencies(&self, selected: &[usize]) -> Vec<usize> {
        let deps_of = |i: usize| -> Vec<usize> {
            let m = &self.models[i];
            let mut deps = Vec::new();
            let mut add = |table: &str| {
                if let Some(t) = self.index_of_table(table)
                    && t != i
                    && self.models[t].natural_key.is_some()
                {
                    deps.push(t);
                }
            };
            for c in &m.schema.columns {
                if let Some(t) = &c.references
                    && Some(&c.name) != m.schema.pk.as_ref()
                {
                    add(t);
                }
            }
            for t in &m.m2m {
                if let Some(th) = &self.models[*t].through {
                    add(&th.target_table);
                }
            }
            deps
        };
        let mut pending: Vec<(usize, Vec<usize>)> =
            selected.iter().map(|i| (*i, deps_of(*i))).collect();
        pending.reverse();
        let mut out: Vec<usize> = Vec::new();
        while !pending.is_empty() {
            let mut skipped = Vec::new();
            let mut changed = false;
            while let Some((m, deps)) = pending.pop() {
                if deps
                    .iter()
                    .all(|d| !selected.contains(d) || out.contains(d))
                {
                    out.push(m);
                    changed = true;
                } else {
                    skipped.push((m, deps));
                }
            }
            if !changed {
                // Cycles allowed: take the last skipped model as it is.
                if let Some((m, _)) = skipped.pop() {
                    out.push(m);
                }
            }
            pending = skipped;
        }
        out
    }
}

/// The label of a table that is a model: `[data] labels`, the contrib tables,
/// then content types (or, without them, the `app_model` convention).
fn base_label(
    table: &str,
    labels: &BTreeMap<String, String>,
    content_types: &Option<Vec<String>>,
) -> Option<String> {
    if let Some(l) = labels.get(table) {
        return Some(l.to_lowercase());
    }
    if let Some((_, l)) = CONTRIB_TABLES.iter().find(|(t, _)| *t == table) {
        return Some(l.to_string());
    }
    match content_types {
        Some(cts) => cts
            .iter()
            .find(|l| l.replacen('.', "_", 1) == table)
            .cloned(),
        None if NOT_MODELS.contains(&table) => None,
        None => Some(label_by_table_name(table, labels)),
    }
}

/// A label from the table name alone, where the database has no content
/// types: `[data] labels` first, else `app_model` split at its first `_`.
pub fn label_by_table_name(table: &str, overrides: &BTreeMap<String, String>) -> String {
    match overrides.get(table) {
        Some(l) => l.to_lowercase(),
        None => match table.split_once('_') {
            Some((app, model)) if !app.is_empty() && !model.is_empty() => {
                format!("{app}.{model}").to_lowercase()
            }
            _ => format!("{table}.{table}").to_lowercase(),
        },
    }
}

/// `app_label.model` of every content type, by id; None without the table.
fn read_content_types(db: &dyn Backend, tables: &[String]) -> Result<Option<Vec<String>>> {
    if !tables.iter().any(|t| t == "django_content_type") {
        return Ok(None);
    }
    let rows = db
        .query(
            "SELECT app_label, model FROM django_content_type ORDER BY id",
            &[],
        )
        .map_err(Error::Data)?;
    let text = |v: &SqlValue| match v {
        SqlValue::Text(t) => t.to_lowercase(),
        other => format!("{other:?}"),
    };
    Ok(Some(
        rows.iter()
            .map(|r| format!("{}.{}", text(&r[0]), text(&r[1])))
            .collect(),
    ))
}

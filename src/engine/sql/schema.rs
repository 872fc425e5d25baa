//! What a table looks like, read from the database itself: columns and the
//! form of their values, the primary key, foreign keys, unique column sets
//! (SQLite's here, PostgreSQL's in `postgres`).

use rusqlite::Connection;

use super::values::ColumnKind;
use crate::error::sql_err;
use crate::error::{Error, Result};

pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// One column and the Django field it holds.
#[derive(Debug, Clone)]
pub struct Column {
    pub name: String,
    pub kind: ColumnKind,
    /// The field's name in fixtures: `category` for the foreign key column
    /// `category_id`, else the column name.
    pub field: String,
    /// The table a foreign key column points to.
    pub references: Option<String>,
    /// The database's type without modifiers (`character varying`), which
    /// PostgreSQL casts parameters to; SQLite's declared type.
    pub sql_type: String,
}

/// Columns of a table, in table order.
#[derive(Debug, Clone)]
pub struct TableSchema {
    pub name: String,
    /// The single-column primary key; None when there is none (or several).
    pub pk: Option<String>,
    pub columns: Vec<Column>,
    /// Column sets of the unique indexes.
    pub unique: Vec<Vec<String>>,
}

impl TableSchema {
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// The column a fixture field names: its field name, or the column name
    /// itself (the form of earlier archives, `category_id`).
    pub fn column_of_field(&self, field: &str) -> Option<&Column> {
        self.columns
            .iter()
            .find(|c| c.field == field)
            .or_else(|| self.column(field))
    }

    /// How values of `column` are written in a fixture.
    pub fn kind(&self, column: &str) -> ColumnKind {
        self.column(column)
            .map(|c| c.kind)
            .unwrap_or(ColumnKind::Plain)
    }

    pub fn pk_kind(&self) -> ColumnKind {
        self.pk
            .as_deref()
            .map(|p| self.kind(p))
            .unwrap_or(ColumnKind::Plain)
    }
}

/// The field a column holds: `category` for the foreign key `category_id`.
pub fn field_name(column: &str, references: &Option<String>) -> String {
    match (references, column.strip_suffix("_id")) {
        (Some(_), Some(f)) if !f.is_empty() => f.to_string(),
        _ => column.to_string(),
    }
}

/// SQLite's answer to `Backend::inspect`.
pub fn inspect_sqlite(conn: &Connection, table: &str) -> Result<TableSchema> {
    let q = quote_ident(table);
    let mut stmt = conn
        .prepare(&format!("PRAGMA table_info({q})"))
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
    let sql: String = conn
        .query_row(
            "SELECT coalesce(sql, '') FROM sqlite_schema WHERE type = 'table' AND name = ?1",
            [table],
            |r| r.get(0),
        )
        .unwrap_or_default();
    let sql = sql.to_ascii_lowercase();
    let fks = foreign_keys(conn, table)?;
    let pks: Vec<&String> = rows.iter().filter(|r| r.2 > 0).map(|r| &r.0).collect();
    let columns = rows
        .iter()
        .map(|(name, declared, _)| {
            let json = sql.contains(&format!("json_valid({})", quote_ident(name)).to_lowercase());
            let references = fks.iter().find(|(c, _)| c == name).map(|(_, t)| t.clone());
            Column {
                name: name.clone(),
                kind: ColumnKind::of_declared(declared, json),
                field: field_name(name, &references),
                references,
                sql_type: declared.clone(),
            }
        })
        .collect();
    Ok(TableSchema {
        name: table.to_string(),
        pk: (pks.len() == 1).then(|| pks[0].clone()),
        columns,
        unique: unique_sets(conn, table)?,
    })
}

pub fn no_pk_message(table: &str) -> String {
    format!("table {table} has no single-column primary key, which a fixture needs")
}

/// (column, referenced table) of each foreign key.
fn foreign_keys(conn: &Connection, table: &str) -> Result<Vec<(String, String)>> {
    let mut stmt = conn
        .prepare(&format!("PRAGMA foreign_key_list({})", quote_ident(table)))
        .map_err(sql_err)?;
    let rows = stmt
        .query_map([], |r| Ok((r.get::<_, String>(3)?, r.get::<_, String>(2)?)))
        .map_err(sql_err)?
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(sql_err)?;
    Ok(rows)
}

fn unique_sets(conn: &Connection, table: &str) -> Result<Vec<Vec<String>>> {
    let mut stmt = conn
        .prepare(&format!("PRAGMA index_list({})", quote_ident(table)))
        .map_err(sql_err)?;
    let names = stmt
        .query_map([], |r| Ok((r.get::<_, String>(1)?, r.get::<_, i64>(2)?)))
        .map_err(sql_err)?
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(sql_err)?;
    let mut sets = Vec::new();
    for (index, unique) in names {
        if unique == 0 {
            continue;
        }
        let mut stmt = conn
            .prepare(&format!("PRAGMA index_info({})", quote_ident(&index)))
            .map_err(sql_err)?;
        let cols = stmt
            .query_map([], |r| r.get::<_, Option<String>>(2))
            .map_err(sql_err)?
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(sql_err)?;
        sets.push(cols.into_iter().flatten().collect());
    }
    Ok(sets)
}

//! The fixture writer: records as Django's JSON serializer writes them,
//! streamed one row at a time.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use serde_json::Value;

use super::backend::{Backend, SqlValue, ValueRef};
use super::catalog::{Catalog, Model};
use super::natural::NaturalKeys;
use super::pyjson::{self, Style};
use super::schema::quote_ident;
use super::values::{self, ColumnKind, Datetimes};
use crate::engine::resolved::Table;
use crate::error::{Error, IoContext, Result};
use crate::progress::Progress;

/// What a fixture dump wrote.
#[derive(Debug, Default, Clone, Copy)]
pub struct DumpStats {
    pub rows: u64,
    pub bytes: u64,
}

/// How a definition asks for its fixture.
#[derive(Debug, Clone, Copy, Default)]
pub struct DumpFormat {
    pub datetimes: Datetimes,
    pub indent: Option<usize>,
    pub natural_foreign: bool,
    pub natural_primary: bool,
}

/// Write the rows of `tables` (in this order) as one fixture to `out`.
pub fn dump_tables(
    db: &dyn Backend,
    catalog: &Catalog,
    tables: &[Table],
    format: DumpFormat,
    out: &Path,
    progress: &dyn Progress,
) -> Result<DumpStats> {
    let file = File::create(out).ctx("create", out)?;
    let mut w = BufWriter::with_capacity(256 * 1024, file);
    let style = Style::fixture(format.indent);
    let mut keys = NaturalKeys::new(db, catalog, format.datetimes);
    let mut rows = 0u64;
    w.write_all(b"[").ctx("write", out)?;
    for table in tables {
        let model = catalog
            .index_of_table(&table.name)
            .ok_or_else(|| Error::Data(format!("table {} is not a model", table.name)))?;
        let writer = ModelWriter::new(db, catalog, model, format, style, &keys)?;
        let table_rows = writer.write_rows(db, &mut w, &mut keys, &mut rows, progress)?;
        progress.log(&format!(
            "- {} ({}): {table_rows} rows",
            table.name, table.label
        ));
    }
    let end: &[u8] = if style.indent.is_some() {
        b"\n]\n"
    } else {
        b"]"
    };
    w.write_all(end).ctx("write", out)?;
    let file = w
        .into_inner()
        .map_err(|e| Error::io("write", out, e.into_error()))?;
    let bytes = file.metadata().ctx("read metadata of", out)?.len();
    Ok(DumpStats { rows, bytes })
}

/// One field of the records of a model.
struct FieldOut {
    /// Separator, indentation and `"name": `, escaped once per model.
    key: String,
    column: usize,
    kind: ColumnKind,
    /// The model whose natural key replaces this foreign key's value.
    natural: Option<usize>,
}

/// A many-to-many list of the records of a model.
struct M2mOut {
    key: String,
    sql: String,
    target_kind: ColumnKind,
    natural: Option<usize>,
}

/// The constant parts of a model's records, prepared once.
struct ModelWriter<'a> {
    model: &'a Model,
    format: DumpFormat,
    style: Style,
    /// `{"model": "...", "pk": ` (or up to `"fields": {` without a pk).
    head: String,
    /// `, "fields": {` after the pk.
    fields_head: String,
    pk_column: usize,
    pk_kind: ColumnKind,
    fields: Vec<FieldOut>,
    m2m: Vec<M2mOut>,
    /// `}` closing the fields, with the indentation.
    fields_close: String,
    /// `}` closing the record.
    record_close: String,
    empty_fields: bool,
}

impl<'a> ModelWriter<'a> {
    fn new(
        db: &dyn Backend,
        catalog: &'a Catalog,
        index: usize,
        format: DumpFormat,
        style: Style,
        keys: &NaturalKeys<'_>,
    ) -> Result<Self> {
        let model = &catalog.models[index];
        let pk = model
            .schema
            .pk
            .clone()
            .ok_or_else(|| Error::Data(super::schema::no_pk_message(&model.table)))?;
        let (nl1, nl2, comma) = (style.newline(1), style.newline(2), style.comma());
        let label = serde_json::to_string(&model.label).unwrap_or_default();
        let with_pk = !(format.natural_primary && model.natural_key.is_some());
        let head = if with_pk {
            format!("{{{nl1}\"model\": {label}{comma}{nl1}\"pk\": ")
        } else {
            format!("{{{nl1}\"model\": {label}{comma}{nl1}\"fields\": ")
        };
        let fields_head = format!("{comma}{nl1}\"fields\": ");
        let key_text = |i: usize, name: &str| {
            let sep = if i == 0 { "{" } else { comma };
            format!(
                "{sep}{nl2}{}: ",
                serde_json::to_string(name).unwrap_or_default()
            )
        };
        let mut fields = Vec::new();
        for (column, c) in model.schema.columns.iter().enumerate() {
            if c.name == pk {
                continue;
            }
            let natural = c
                .references
                .as_deref()
                .filter(|_| format.natural_foreign)
                .and_then(|t| keys.keyed_model(t));
            fields.push(FieldOut {
                key: key_text(fields.len(), &c.field),
                column,
                kind: c.kind,
                natural,
            });
        }
        let mut m2m = Vec::new();
        for t in &model.m2m {
            let through = catalog.models[*t]
                .through
                .as_ref()
                .expect("a through model");
            let natural = keys
                .keyed_model(&through.target_table)
                .filter(|_| format.natural_foreign);
            let target_kind = catalog.models[*t].schema.kind(&through.target_column);
            m2m.push(M2mOut {
                key: key_text(fields.len() + m2m.len(), &through.field),
                sql: m2m_query(db, catalog, *t),
                target_kind,
                natural,
            });
        }
        let empty_fields = fields.is_empty() && m2m.is_empty();
        let fields_close = format!("{nl1}}}");
        let record_close = format!("{}}}", style.newline(0));
        let pk_column = model
            .schema
            .columns
            .iter()
            .position(|c| c.name == pk)
            .unwrap_or(0);
        Ok(ModelWriter {
            model,
            format,
            style,
            head,
            fields_head,
            pk_column,
            pk_kind: model.schema.pk_kind(),
            fields,
            m2m,
            fields_close,
            record_close,
            empty_fields,
        })
    }

    fn write_rows(
        &self,
        db: &dyn Backend,
        w: &mut impl Write,
        keys: &mut NaturalKeys<'_>,
        rows: &mut u64,
        progress: &dyn Progress,
    ) -> Result<u64> {
        let select: Vec<String> = self
            .model
            .schema
            .columns
            .iter()
            .map(|c| db.select(c, None))
            .collect();
        let sql = format!(
            "SELECT {} FROM {} ORDER BY {}",
            select.join(", "),
            quote_ident(&self.model.table),
            quote_ident(&self.model.schema.columns[self.pk_column].name)
        );
        let mut table_rows = 0u64;
        let record_sep: &[u8] = if self.style.indent.is_some() {
            b",\n"
        } else {
            b", "
        };
        let io = |e: std::io::Error| Error::Data(format!("cannot write the fixture: {e}"));
        db.each_row(&sql, &mut |row| {
            if table_rows.is_multiple_of(4096) && progress.is_cancelled() {
                return Err(Error::Cancelled);
            }
            if *rows > 0 {
                w.write_all(record_sep).map_err(io)?;
            } else if self.style.indent.is_some() {
                w.write_all(b"\n").map_err(io)?;
            }
            self.write_record(db, row, w, keys)
                .map_err(|m| Error::Data(format!("table {}: {m}", self.model.table)))?;
            *rows += 1;
            table_rows += 1;
            Ok(())
        })?;
        Ok(table_rows)
    }

    fn write_record(
        &self,
        db: &dyn Backend,
        row: &[ValueRef<'_>],
        w: &mut impl Write,
        keys: &mut NaturalKeys<'_>,
    ) -> std::result::Result<(), String> {
        let io = |e: std::io::Error| e.to_string();
        let get = |i: usize| row.get(i).copied().ok_or("a column is missing");
        let dt = self.format.datetimes;
        w.write_all(self.head.as_bytes()).map_err(io)?;
        let pk = get(self.pk_column)?;
        if !(self.format.natural_primary && self.model.natural_key.is_some()) {
            values::write_fixture_value(w, pk, self.pk_kind, dt, self.style, 1).map_err(|m| {
                format!(
                    "column {}: {m}",
                    self.model.schema.columns[self.pk_column].name
                )
            })?;
            w.write_all(self.fields_head.as_bytes()).map_err(io)?;
        }
        if self.empty_fields {
            w.write_all(b"{}").map_err(io)?;
            return w.write_all(self.record_close.as_bytes()).map_err(io);
        }
        for f in &self.fields {
            w.write_all(f.key.as_bytes()).map_err(io)?;
            let v = get(f.column)?;
            let column = &self.model.schema.columns[f.column].name;
            match f.natural {
                Some(target) if v != ValueRef::Null => {
                    let key = keys
                        .key_of(target, v)
                        .map_err(|m| format!("column {column}: {m}"))?;
                    pyjson::write_value(w, &key, self.style, 2).map_err(io)?;
                }
                _ => values::write_fixture_value(w, v, f.kind, dt, self.style, 2)
                    .map_err(|m| format!("column {column}: {m}"))?,
            }
        }
        for m in &self.m2m {
            w.write_all(m.key.as_bytes()).map_err(io)?;
            let list = self.m2m_list(db, m, pk, keys)?;
            pyjson::write_value(w, &Value::Array(list), self.style, 2).map_err(io)?;
        }
        w.write_all(self.fields_close.as_bytes()).map_err(io)?;
        w.write_all(self.record_close.as_bytes()).map_err(io)
    }

    fn m2m_list(
        &self,
        db: &dyn Backend,
        m: &M2mOut,
        pk: ValueRef<'_>,
        keys: &mut NaturalKeys<'_>,
    ) -> std::result::Result<Vec<Value>, String> {
        let rows = db.query(&m.sql, &[SqlValue::from(pk)])?;
        rows.iter()
            .filter_map(|r| r.first())
            .map(|t| match m.natural {
                Some(target) => keys.key_of(target, t.into()),
                None => values::fixture_value(t.into(), m.target_kind, self.format.datetimes),
            })
            .collect()
    }
}

/// The targets of one owner's many-to-many field, in the order Django lists
/// them: the target model's default ordering where Django defines one,
/// else its primary key.
fn m2m_query(db: &dyn Backend, catalog: &Catalog, through_index: usize) -> String {
    let through_model = &catalog.models[through_index];
    let t = through_model.through.as_ref().expect("a through model");
    let table = quote_ident(&through_model.table);
    let own = quote_ident(&t.owner_column);
    let schema = &through_model.schema;
    let (Some(owner_column), Some(target_column)) = (
        schema.column(&t.owner_column),
        schema.column(&t.target_column),
    ) else {
        unreachable!("a through model has its two columns");
    };
    let param = db.placeholder(1, owner_column);
    let target = db.select(target_column, Some("m"));
    let target_label = catalog
        .index_of_table(&t.target_table)
        .map(|i| catalog.models[i].label.as_str());
    let target_table = quote_ident(&t.target_table);
    let target_raw = quote_ident(&t.target_column);
    match target_label {
        Some("auth.permission") if catalog.index_of_table("django_content_type").is_some() => {
            format!(
                "SELECT {target} FROM {table} m JOIN {target_table} p ON p.id = m.{target_raw} \
             JOIN django_content_type c ON c.id = p.content_type_id \
             WHERE m.{own} = {param} ORDER BY c.app_label, c.model, p.codename"
            )
        }
        Some("sites.site") => format!(
            "SELECT {target} FROM {table} m JOIN {target_table} s ON s.id = m.{target_raw} \
             WHERE m.{own} = {param} ORDER BY s.domain"
        ),
        _ => format!(
            "SELECT {target} FROM {table} m WHERE m.{own} = {param} ORDER BY m.{target_raw}"
        ),
    }
}

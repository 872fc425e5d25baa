//! Application definitions as the engines take them: resolved from the
//! configuration by `apps`, dumped and loaded by `engine`.

use std::collections::BTreeMap;

use unicode_normalization::UnicodeNormalization;

use crate::config::AppConfig;

/// A table of the application database and its model label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    pub name: String,
    /// `app.model`, lowercase.
    pub label: String,
}

impl Table {
    pub fn new(name: &str, overrides: &BTreeMap<String, String>) -> Table {
        Table {
            name: name.to_string(),
            label: super::sql::catalog::label_by_table_name(name, overrides),
        }
    }

    pub fn app(&self) -> &str {
        self.label
            .split_once('.')
            .map(|(a, _)| a)
            .unwrap_or(&self.label)
    }
}

/// How a definition produces and consumes its fixture.
#[derive(Debug, Clone)]
pub enum Engine {
    Sql {
        tables: Vec<Table>,
    },
    Command {
        dump: Vec<String>,
        load: Option<Vec<String>>,
    },
}

/// A definition after validation and table selection.
#[derive(Debug, Clone)]
pub struct ResolvedApp {
    pub name: String,
    /// File name inside `data/` (`blog.json`).
    pub filename: String,
    pub engine: Engine,
    pub config: AppConfig,
    /// What the selection left out and why (a drain skipping a table).
    pub warnings: Vec<String>,
}

impl ResolvedApp {
    pub fn archive_path(&self) -> String {
        format!("{}/{}", crate::archive::DATA_DIR, self.filename)
    }
}

/// The fixture file name of a definition: its `filename`, or the slug of its name.
pub fn fixture_filename(app: &AppConfig) -> String {
    match &app.filename {
        Some(f) => f.clone(),
        None => format!("{}.json", slugify(&app.name)),
    }
}

/// Django's `slugify`: ASCII-folded, lowercase, only `[a-z0-9_-]`, spaces to `-`.
pub fn slugify(value: &str) -> String {
    let ascii: String = value.nfkd().filter(|c| c.is_ascii()).collect();
    let kept: String = ascii
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | ' ' | '\t' | '\n'))
        .collect::<String>()
        .to_lowercase();
    let mut out = String::new();
    let mut pending_dash = false;
    for c in kept.trim().chars() {
        if c == '-' || c.is_whitespace() {
            pending_dash = true;
        } else {
            if pending_dash && !out.is_empty() {
                out.push('-');
            }
            pending_dash = false;
            out.push(c);
        }
    }
    out.trim_matches(|c| c == '-' || c == '_').to_string()
}

//! Application definitions: which tables (or which command) each one dumps.
//!
//! Labels come from the database (see `engine::sql::catalog`): Django's
//! content types and table naming, the contrib tables, `[data] labels`; a
//! database without content types falls back to `app_model` table names.
//! Beside them: Diskette's JSON definitions (`appconf`), definitions generated
//! from a database (`generate`), and the `dumpdata` lines Diskette would run
//! (`dumpdata`). The resolved definitions themselves (`Table`, `Engine`,
//! `ResolvedApp`) belong to `engine::resolved`, which the engines read.

pub mod appconf;
pub mod dumpdata;
pub mod generate;

use std::collections::HashSet;
use std::fmt::Write as _;

use crate::config::{AppConfig, Config};
pub use crate::engine::resolved::{Engine, ResolvedApp, Table, fixture_filename, slugify};
use crate::engine::sql::catalog::Catalog;
use crate::error::{Error, Result};

/// A model a definition can select.
#[derive(Debug, Clone)]
pub struct Selectable {
    pub table: Table,
    /// An auto-created many-to-many through model: selected with its whole
    /// app, never by a drain.
    pub through: bool,
    /// Whether it has the single-column primary key a fixture needs.
    pub has_pk: bool,
}

impl Selectable {
    pub fn model(table: Table) -> Selectable {
        Selectable {
            table,
            through: false,
            has_pk: true,
        }
    }
}

/// Open the application database of the built-in engine, read-only.
pub fn open_source(config: &Config) -> Result<Box<dyn crate::engine::sql::Backend>> {
    crate::engine::sql::open_source(config)
}

/// Models a selector names: a table name, an `app.model` label (the model
/// part case-insensitive, as Django's), or an `app`.
fn select<'a>(selector: &str, models: &'a [Selectable]) -> Vec<&'a Selectable> {
    if let Some(t) = models.iter().find(|t| t.table.name == selector) {
        return vec![t];
    }
    match selector.split_once('.') {
        Some((app, model)) => {
            let label = format!("{app}.{}", model.to_lowercase());
            models
                .iter()
                .filter(|t| t.table.label == label || t.table.label == label.to_lowercase())
                .collect()
        }
        None => models
            .iter()
            .filter(|t| t.table.app() == selector || t.table.app() == selector.to_lowercase())
            .collect(),
    }
}

/// Validate the definitions and select the tables of each (DESIGN §2).
pub fn resolve(config: &Config) -> Result<Vec<ResolvedApp>> {
    resolve_with_catalog(config).map(|(apps, _)| apps)
}

/// The definitions resolved, and the models of the database when a
/// definition uses the built-in engine.
pub fn resolve_with_catalog(config: &Config) -> Result<(Vec<ResolvedApp>, Option<Catalog>)> {
    validate_definitions(&config.apps)?;
    let needs_sql = config.apps.iter().any(|a| a.dump_command.is_none());
    if !needs_sql {
        return Ok((resolve_with_tables(&config.apps, &[])?, None));
    }
    let db = open_source(config)?;
    let catalog = Catalog::read(&*db, &config.data.labels, &config.data.natural_keys)?;
    let models: Vec<Selectable> = catalog
        .models
        .iter()
        .map(|m| Selectable {
            table: Table {
                name: m.table.clone(),
                label: m.label.clone(),
            },
            through: m.through.is_some(),
            has_pk: m.schema.pk.is_some(),
        })
        .collect();
    let mut apps = resolve_with_tables(&config.apps, &models)?;
    // With natural keys, `dumpdata` sorts models by their dependencies.
    for app in apps.iter_mut().filter(|a| a.config.natural_foreign) {
        if let Engine::Sql { tables } = &mut app.engine {
            let indexes: Vec<usize> = tables
                .iter()
                .filter_map(|t| catalog.index_of_table(&t.name))
                .collect();
            *tables = catalog
                .sort_dependencies(&indexes)
                .into_iter()
                .map(|i| Table {
                    name: catalog.models[i].table.clone(),
                    label: catalog.models[i].label.clone(),
                })
                .collect();
        }
    }
    Ok((apps, Some(catalog)))
}

fn validate_definitions(apps: &[AppConfig]) -> Result<()> {
    let mut names = HashSet::new();
    let mut files = HashSet::new();
    let mut drains = 0;
    for app in apps {
        let err = |m: &str| Error::Config(format!("apps: definition {:?} {m}", app.name));
        if app.name.trim().is_empty() {
            return Err(Error::Config("apps: a definition has no name".into()));
        }
        if !names.insert(app.name.as_str()) {
            return Err(err("is defined twice (names must be unique)"));
        }
        let filename = fixture_filename(app);
        if filename.is_empty()
            || filename.starts_with('.')
            || filename.contains('/')
            || filename.contains('\\')
        {
            return Err(err(&format!("has an invalid file name {filename:?}")));
        }
        if !files.insert(filename.clone()) {
            return Err(err(&format!(
                "writes {filename:?}, like another definition"
            )));
        }
        if let Some(cmd) = &app.dump_command
            && (cmd.is_empty() || cmd[0].is_empty())
        {
            return Err(err("has an empty dump_command"));
        }
        if let Some(cmd) = &app.load_command
            && (cmd.is_empty() || cmd[0].is_empty())
        {
            return Err(err("has an empty load_command"));
        }
        if app.is_drain {
            drains += 1;
            if app.dump_command.is_some() {
                return Err(err(
                    "is a drain and has a dump_command: a drain uses the built-in engine",
                ));
            }
        } else if app.models.is_empty() && app.dump_command.is_none() {
            return Err(err(
                "selects nothing: give models, a dump_command, or is_drain = true",
            ));
        }
    }
    if drains > 1 {
        return Err(Error::Config(
            "apps: more than one definition has is_drain = true".into(),
        ));
    }
    Ok(())
}

/// The models `selectors` name, in registration order (the order of
/// `models`), as Diskette sorts its labels.
fn pick(
    app: &AppConfig,
    selectors: &[String],
    what: &str,
    models: &[Selectable],
) -> Result<Vec<usize>> {
    let mut out: Vec<usize> = Vec::new();
    for s in selectors {
        let found = select(s, models);
        if found.is_empty() {
            return Err(Error::Config(format!(
                "apps: definition {:?}: {what} {s:?} matches no model of the database (a table with a custom name needs an entry in [data] labels; `diskette apps` lists the tables without one)",
                app.name
            )));
        }
        let explicit = s.contains('.') || found.len() == 1 && found[0].table.name == *s;
        for t in found {
            if explicit && !t.has_pk && what == "model" {
                return Err(Error::Config(format!(
                    "apps: definition {:?}: model {} (table {}) has no single-column primary key, which a fixture needs",
                    app.name, t.table.label, t.table.name
                )));
            }
            let i = models
                .iter()
                .position(|m| m.table == t.table)
                .expect("found among models");
            if !out.contains(&i) {
                out.push(i);
            }
        }
    }
    out.sort_unstable();
    Ok(out)
}

/// Tables of `picked` a fixture can hold; a warning for each other one.
fn keep_dumpable(
    picked: impl Iterator<Item = usize>,
    models: &[Selectable],
    warnings: &mut Vec<String>,
) -> Vec<Table> {
    let mut out = Vec::new();
    for i in picked {
        let m = &models[i];
        if m.has_pk {
            out.push(m.table.clone());
        } else {
            warnings.push(format!(
                "table {} ({}) skipped: it has no single-column primary key, which a fixture needs",
                m.table.name, m.table.label
            ));
        }
    }
    out
}

fn resolve_with_tables(apps: &[AppConfig], models: &[Selectable]) -> Result<Vec<ResolvedApp>> {
    let mut resolved = Vec::new();
    let mut covered: HashSet<usize> = HashSet::new();
    let mut held_back: HashSet<usize> = HashSet::new();
    let mut drain_allowed: HashSet<usize> = HashSet::new();
    for app in apps.iter().filter(|a| !a.is_drain) {
        let mut warnings = Vec::new();
        let engine = match &app.dump_command {
            Some(dump) => Engine::Command {
                dump: dump.clone(),
                load: app.load_command.clone(),
            },
            None => {
                let mut excluded = pick(app, &app.excludes, "exclude", models)?;
                let selected: Vec<usize> = pick(app, &app.models, "model", models)?
                    .into_iter()
                    .filter(|t| !excluded.contains(t))
                    .collect();
                // As Diskette: the other models of the apps involved count as
                // excluded too (kept from the drain unless allow_drain).
                let involved: HashSet<&str> = selected
                    .iter()
                    .chain(&excluded)
                    .map(|i| models[*i].table.app())
                    .collect();
                let implicit: Vec<usize> = (0..models.len())
                    .filter(|i| involved.contains(models[*i].table.app()))
                    .filter(|i| !selected.contains(i) && !excluded.contains(i))
                    .collect();
                excluded.extend(implicit);
                if selected.is_empty() {
                    return Err(Error::Config(format!(
                        "apps: definition {:?} selects no table once its excludes are removed",
                        app.name
                    )));
                }
                covered.extend(selected.iter().copied());
                for t in excluded {
                    if app.allow_drain {
                        drain_allowed.insert(t);
                    } else {
                        held_back.insert(t);
                    }
                }
                let tables = keep_dumpable(selected.into_iter(), models, &mut warnings);
                Engine::Sql { tables }
            }
        };
        resolved.push((app, engine, warnings));
    }
    for app in apps.iter().filter(|a| a.is_drain) {
        let own_excludes = pick(app, &app.excludes, "exclude", models)?;
        // `dumpdata` without labels: every model but auto-created ones.
        let picked = (0..models.len())
            .filter(|i| !models[*i].through)
            .filter(|i| !covered.contains(i))
            .filter(|i| !held_back.contains(i))
            // Excludes of definitions that allow the drain are taken only when the
            // drain asks for them (Diskette's `drain_excluded`).
            .filter(|i| app.drain_excluded || !drain_allowed.contains(i))
            .filter(|i| !own_excludes.contains(i));
        let mut warnings = Vec::new();
        let tables = keep_dumpable(picked, models, &mut warnings);
        resolved.push((app, Engine::Sql { tables }, warnings));
    }
    // Keep the definition order: it is the load order.
    let mut ordered = Vec::new();
    for app in apps {
        if let Some(pos) = resolved.iter().position(|(a, _, _)| a.name == app.name) {
            let (a, engine, warnings) = resolved.remove(pos);
            ordered.push(ResolvedApp {
                name: a.name.clone(),
                filename: fixture_filename(a),
                engine,
                config: a.clone(),
                warnings,
            });
        }
    }
    Ok(ordered)
}

/// Printable description of the resolved definitions (`diskette apps`).
pub fn describe(config: &Config) -> Result<String> {
    let (apps, catalog) = resolve_with_catalog(config)?;
    let mut out = String::new();
    if apps.is_empty() {
        out.push_str("No application is defined ([[apps]] in the configuration).\n");
    }
    for app in &apps {
        let _ = writeln!(out, "{} -> {}", app.name, app.archive_path());
        if let Some(c) = &app.config.comments {
            let _ = writeln!(out, "  # {c}");
        }
        match &app.engine {
            Engine::Sql { tables } => {
                let kind = if app.config.is_drain {
                    "drain, built-in SQL engine"
                } else {
                    "built-in SQL engine"
                };
                let _ = writeln!(out, "  engine: {kind}");
                if tables.is_empty() {
                    let _ = writeln!(out, "  tables: (none)");
                }
                for t in tables {
                    let _ = writeln!(out, "  - {} ({})", t.name, t.label);
                }
                for w in &app.warnings {
                    let _ = writeln!(out, "  warning: {w}");
                }
            }
            Engine::Command { dump, load } => {
                let _ = writeln!(out, "  engine: command");
                let _ = writeln!(out, "  dump: {}", dump.join(" "));
                match load {
                    Some(l) => {
                        let _ = writeln!(out, "  load: {}", l.join(" "));
                    }
                    None => {
                        let _ = writeln!(out, "  load: built-in SQL engine");
                    }
                }
            }
        }
    }
    if let Some(catalog) = &catalog {
        out.push_str(&unmapped(catalog));
    }
    Ok(out)
}

/// Content types without a table and tables without a label: what
/// `[data] labels` should map.
pub fn unmapped(catalog: &Catalog) -> String {
    let mut out = String::new();
    if !catalog.unmatched_content_types.is_empty() {
        let _ = writeln!(
            out,
            "Content types with no table (map their table in [data] labels): {}",
            catalog.unmatched_content_types.join(", ")
        );
    }
    if !catalog.unlabeled_tables.is_empty() {
        let _ = writeln!(
            out,
            "Tables with no model label (never dumped; map them in [data] labels): {}",
            catalog.unlabeled_tables.join(", ")
        );
    }
    if !catalog.unusable_natural_keys.is_empty() {
        let _ = writeln!(
            out,
            "Natural keys of [data.natural_keys] that match no model or name fields it lacks: {}",
            catalog.unusable_natural_keys.join(", ")
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn tables(names: &[&str]) -> Vec<Selectable> {
        names
            .iter()
            .map(|n| Selectable::model(Table::new(n, &BTreeMap::new())))
            .collect()
    }

    fn app(name: &str, models: &[&str]) -> AppConfig {
        AppConfig {
            name: name.into(),
            models: models.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    fn names(app: &ResolvedApp) -> Vec<&str> {
        match &app.engine {
            Engine::Sql { tables } => tables.iter().map(|t| t.name.as_str()).collect(),
            Engine::Command { .. } => vec![],
        }
    }

    #[test]
    fn slug_like_django() {
        assert_eq!(slugify("django.contrib.sites"), "djangocontribsites");
        assert_eq!(slugify("Blog Posts"), "blog-posts");
        assert_eq!(slugify("Café & Culture"), "cafe-culture");
    }

    #[test]
    fn labels_follow_convention_and_overrides() {
        let mut o = BTreeMap::new();
        o.insert("django_session".to_string(), "sessions.Session".to_string());
        assert_eq!(Table::new("blog_article", &o).label, "blog.article");
        assert_eq!(Table::new("audit_entry", &o).label, "audit.entry");
        assert_eq!(Table::new("django_session", &o).label, "sessions.session");
        assert_eq!(Table::new("auth_user_groups", &o).label, "auth.user_groups");
    }

    #[test]
    fn selection_and_drain() {
        let t = tables(&[
            "blog_article",
            "blog_category",
            "blog_tag",
            "audit_entry",
            "auth_user",
            "cache_item",
        ]);
        let mut blog = app("blog", &["blog"]);
        blog.excludes = vec!["blog.tag".into()];
        let audit = app("audit", &["audit_entry"]);
        let mut drain = app("rest", &[]);
        drain.is_drain = true;
        drain.excludes = vec!["cache".into()];
        let r = resolve_with_tables(&[blog.clone(), audit.clone(), drain.clone()], &t).unwrap();
        assert_eq!(names(&r[0]), ["blog_article", "blog_category"]);
        assert_eq!(names(&r[1]), ["audit_entry"]);
        assert_eq!(names(&r[2]), ["auth_user"]);
        assert_eq!(r[0].filename, "blog.json");

        // allow_drain + drain_excluded hands the excluded table to the drain.
        blog.allow_drain = true;
        drain.drain_excluded = true;
        let r = resolve_with_tables(&[blog, audit, drain], &t).unwrap();
        assert_eq!(names(&r[2]), ["blog_tag", "auth_user"]);
    }

    #[test]
    fn selection_follows_diskette() {
        let mut t = tables(&[
            "auth_group",
            "auth_user",
            "auth_permission",
            "blog_post",
            "audit_log",
        ]);
        t[4].has_pk = false;
        t.insert(
            1,
            Selectable {
                table: Table::new("auth_user_groups", &BTreeMap::new()),
                through: true,
                has_pk: true,
            },
        );
        let mut drain = app("rest", &[]);
        drain.is_drain = true;
        // The model part of a label in any case; the other auth models are
        // kept from the drain; the drain never takes through models and
        // skips a table without a single-column key, saying so.
        let r = resolve_with_tables(&[app("users", &["auth.User"]), drain.clone()], &t).unwrap();
        assert_eq!(names(&r[0]), ["auth_user"]);
        assert_eq!(names(&r[1]), ["blog_post"]);
        assert!(
            r[1].warnings[0].contains("audit_log"),
            "{:?}",
            r[1].warnings
        );
        // A whole app brings its through models, in registration order.
        let r = resolve_with_tables(&[app("auth", &["auth"])], &t).unwrap();
        assert_eq!(
            names(&r[0]),
            [
                "auth_group",
                "auth_user_groups",
                "auth_user",
                "auth_permission"
            ]
        );
        let e = resolve_with_tables(&[app("audit", &["audit.Log"])], &t)
            .unwrap_err()
            .to_string();
        assert!(e.contains("audit_log") && e.contains("primary key"), "{e}");
    }

    #[test]
    fn errors_name_the_definition() {
        let t = tables(&["blog_article"]);
        let e = resolve_with_tables(&[app("blog", &["shop"])], &t)
            .unwrap_err()
            .to_string();
        assert!(e.contains("\"blog\"") && e.contains("shop"), "{e}");
        let e = validate_definitions(&[app("a", &["x"]), app("a", &["y"])])
            .unwrap_err()
            .to_string();
        assert!(e.contains("twice"), "{e}");
        let e = validate_definitions(&[app("empty", &[])])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("\"empty\"") && e.contains("selects nothing"),
            "{e}"
        );
        let mut blog = app("blog", &["blog"]);
        blog.excludes = vec!["blog".into()];
        let e = resolve_with_tables(&[blog], &t).unwrap_err().to_string();
        assert!(e.contains("no table"), "{e}");
    }
}

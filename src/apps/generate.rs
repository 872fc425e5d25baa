//! `diskette apps --generate`: a starting set of definitions for a database,
//! as Diskette's `diskette_apps` writes one: a definition per application
//! label, with natural foreign keys and every model of the application
//! listed, auto-created many-to-many through models included, so that a user
//! sees each model and knows what to exclude.

use std::fmt::Write as _;

use crate::error::{Error, Result};

/// Output formats: TOML for a configuration, JSON for `dump --appconf` (and
/// Diskette's `DISKETTE_APPS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Toml,
    Json,
}

/// An application label and its model labels, in registration order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppModels {
    pub label: String,
    pub models: Vec<String>,
}

/// The definitions of the applications of the configured database, and
/// warnings about the models it cannot list.
pub fn generate(
    config: &crate::Config,
    only: &[String],
    exclude: &[String],
    format: Format,
) -> Result<(String, Vec<String>)> {
    let db = crate::apps::open_source(config)?;
    // Models in Django's registration order, through models just before their owner.
    let catalog =
        crate::engine::sql::Catalog::read(&*db, &config.data.labels, &config.data.natural_keys)?;
    let apps = group(catalog.models.iter().map(|m| m.label.as_str()));
    if apps.is_empty() {
        return Err(Error::Usage(
            "the database has no model: no definition to write".into(),
        ));
    }
    let apps = filter(apps, only, exclude)?;
    let warnings = catalog
        .unmatched_content_types
        .iter()
        .filter(|l| {
            let app = l.split_once('.').map_or(l.as_str(), |(a, _)| a);
            (only.is_empty() || only.iter().any(|o| o == app)) && !exclude.iter().any(|e| e == app)
        })
        .map(|l| {
            format!("model {l} is left out: no table matches it (map its table in [data] labels)")
        })
        .collect();
    Ok((render(&apps, format), warnings))
}

/// Group model labels (`app.model`) by application, each in the order it first appears.
pub fn group<'a>(labels: impl IntoIterator<Item = &'a str>) -> Vec<AppModels> {
    let mut apps: Vec<AppModels> = Vec::new();
    for label in labels {
        let app = label.split_once('.').map_or(label, |(a, _)| a);
        match apps.iter_mut().find(|a| a.label == app) {
            Some(a) => a.models.push(label.to_string()),
            None => apps.push(AppModels {
                label: app.to_string(),
                models: vec![label.to_string()],
            }),
        }
    }
    apps
}

/// Keep the applications `only` names (all when empty), minus those `exclude`
/// names; exclusions win, as in Diskette. A name that is no application of
/// the database is an error: a typo would silently change the output.
pub fn filter(apps: Vec<AppModels>, only: &[String], exclude: &[String]) -> Result<Vec<AppModels>> {
    for (option, names) in [("--app", only), ("--exclude", exclude)] {
        if let Some(unknown) = names.iter().find(|n| !apps.iter().any(|a| &a.label == *n)) {
            let known: Vec<&str> = apps.iter().map(|a| a.label.as_str()).collect();
            return Err(Error::Usage(format!(
                "{option}: {unknown:?} is no application of the database (known: {})",
                known.join(", ")
            )));
        }
    }
    Ok(apps
        .into_iter()
        .filter(|a| only.is_empty() || only.contains(&a.label))
        .filter(|a| !exclude.contains(&a.label))
        .collect())
}

/// The definitions as text in `format`.
pub fn render(apps: &[AppModels], format: Format) -> String {
    match format {
        Format::Toml => render_toml(apps),
        Format::Json => render_json(apps),
    }
}

fn render_toml(apps: &[AppModels]) -> String {
    let quote = |s: &str| toml::Value::String(s.to_string()).to_string();
    let mut out = String::new();
    for (i, app) in apps.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        let _ = writeln!(out, "[[apps]]");
        let _ = writeln!(out, "name = {}", quote(&app.label));
        let _ = writeln!(out, "natural_foreign = true");
        let _ = writeln!(out, "models = [");
        for m in &app.models {
            let _ = writeln!(out, "    {},", quote(m));
        }
        let _ = writeln!(out, "]");
    }
    out
}

/// Diskette's layout: `json.dumps(definitions, indent=4)`.
fn render_json(apps: &[AppModels]) -> String {
    let definitions: Vec<serde_json::Value> = apps
        .iter()
        .map(|a| {
            serde_json::json!([
                a.label,
                {"natural_foreign": true, "models": a.models}
            ])
        })
        .collect();
    let mut out = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut out, formatter);
    serde::Serialize::serialize(&definitions, &mut ser).expect("JSON values serialize");
    let mut text = String::from_utf8(out).expect("serde_json writes UTF-8");
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<AppModels> {
        group([
            "contenttypes.contenttype",
            "auth.permission",
            "auth.group_permissions",
            "auth.group",
            "auth.user_groups",
            "auth.user",
            "blog.category",
            "blog.article",
        ])
    }

    #[test]
    fn groups_by_application_in_order() {
        let apps = sample();
        let labels: Vec<&str> = apps.iter().map(|a| a.label.as_str()).collect();
        assert_eq!(labels, ["contenttypes", "auth", "blog"]);
        assert_eq!(apps[1].models.len(), 5);
        assert_eq!(apps[1].models[1], "auth.group_permissions");
    }

    #[test]
    fn filters_like_diskette_and_refuses_unknown_names() {
        let names =
            |apps: Vec<AppModels>| -> Vec<String> { apps.into_iter().map(|a| a.label).collect() };
        let kept = filter(sample(), &["auth".into(), "blog".into()], &["blog".into()]).unwrap();
        assert_eq!(names(kept), ["auth"]);
        let kept = filter(sample(), &[], &["auth".into()]).unwrap();
        assert_eq!(names(kept), ["contenttypes", "blog"]);
        let e = filter(sample(), &["shop".into()], &[])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("--app: \"shop\"") && e.contains("contenttypes, auth, blog"),
            "{e}"
        );
    }

    #[test]
    fn toml_reads_back_as_definitions() {
        let text = render(&sample(), Format::Toml);
        let config =
            crate::Config::from_toml(&text, std::path::Path::new("/srv"), Vec::new()).unwrap();
        assert_eq!(config.apps.len(), 3);
        assert_eq!(config.apps[1].name, "auth");
        assert!(config.apps[1].natural_foreign);
        assert_eq!(config.apps[2].models, ["blog.category", "blog.article"]);
    }

    #[test]
    fn json_is_diskettes_layout_and_reads_back_as_appconf() {
        let apps = group(["blog.category", "blog.article"]);
        let text = render(&apps, Format::Json);
        assert_eq!(
            text,
            r#"[
    [
        "blog",
        {
            "natural_foreign": true,
            "models": [
                "blog.category",
                "blog.article"
            ]
        }
    ]
]
"#
        );
        let read = crate::apps::appconf::parse(&render(&sample(), Format::Json)).unwrap();
        assert_eq!(read.len(), 3);
        assert_eq!(read[1].models, sample()[1].models);
        assert!(read.iter().all(|a| a.natural_foreign));
    }
}

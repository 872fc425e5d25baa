//! Diskette's JSON application definitions, as `DISKETTE_APPS` holds them and
//! `diskette_dump --appconf` reads them: a list of `[name, options]` pairs.
//! `dump --appconf PATH` reads such a file into our definitions for one run.

use std::path::Path;

use serde_json::{Map, Value};

use crate::config::AppConfig;
use crate::error::{Error, Result};

/// Formats Diskette accepts as a fixture file extension (`dumpdata --format`).
const FORMATS: &[&str] = &["json", "jsonl", "xml", "yaml"];

/// Django commands the built-in engine stands in for: both write the rows of
/// the selected models' tables, which is what the engine reads directly (the
/// polymorphic one exists to bypass managers, and raw tables have none).
const BUILT_IN_COMMANDS: &[&str] = &["dumpdata", "polymorphic_dumpdata"];

/// Read the definitions of a Diskette JSON file.
pub fn read(path: &Path) -> Result<Vec<AppConfig>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::Config(format!("--appconf: cannot read {}: {e}", path.display())))?;
    parse(&text).map_err(|m| Error::Config(format!("--appconf {}: {m}", path.display())))
}

/// Parse Diskette's definition list; the error names the definition and the option.
pub fn parse(text: &str) -> std::result::Result<Vec<AppConfig>, String> {
    let value: Value = serde_json::from_str(text).map_err(|e| {
        format!(
            "invalid JSON (line {}, column {}): {e}",
            e.line(),
            e.column()
        )
    })?;
    let Value::Array(items) = value else {
        return Err("must be a list of [name, options] pairs".into());
    };
    if items.is_empty() {
        return Err("defines no application".into());
    }
    items
        .iter()
        .enumerate()
        .map(|(i, item)| definition(i + 1, item))
        .collect()
}

/// One `[name, options]` pair (`position` counts from 1, for errors).
fn definition(position: usize, item: &Value) -> std::result::Result<AppConfig, String> {
    let pair = match item {
        Value::Array(pair) if pair.len() == 2 => pair,
        _ => {
            return Err(format!(
                "item {position} is not a [name, options] pair: {}",
                short(item)
            ));
        }
    };
    let name = match &pair[0] {
        Value::String(s) if !s.trim().is_empty() => s.clone(),
        other => {
            return Err(format!(
                "item {position}: the name must be a non-empty string, not {}",
                short(other)
            ));
        }
    };
    let Value::Object(options) = &pair[1] else {
        return Err(format!(
            "definition {name:?}: the options must be an object, not {}",
            short(&pair[1])
        ));
    };
    options_of(name, options)
}

fn options_of(
    name: String,
    options: &Map<String, Value>,
) -> std::result::Result<AppConfig, String> {
    let mut app = AppConfig {
        name,
        ..AppConfig::default()
    };
    for (key, value) in options {
        let err = |expected: &str| {
            format!(
                "definition {:?}: option {key:?} must be {expected}, not {}",
                app.name,
                short(value)
            )
        };
        match key.as_str() {
            // Diskette takes one label as a string too.
            "models" => {
                app.models = match value {
                    Value::String(s) => vec![s.clone()],
                    _ => strings(value).ok_or_else(|| err("a list of labels"))?,
                }
            }
            "excludes" => app.excludes = strings(value).ok_or_else(|| err("a list of labels"))?,
            "comments" => app.comments = text(value).ok_or_else(|| err("a string"))?,
            "filename" => app.filename = text(value).ok_or_else(|| err("a file name"))?,
            "natural_foreign" => {
                app.natural_foreign = flag(value).ok_or_else(|| err("a boolean"))?
            }
            "natural_primary" => {
                app.natural_primary = flag(value).ok_or_else(|| err("a boolean"))?
            }
            "is_drain" => app.is_drain = flag(value).ok_or_else(|| err("a boolean"))?,
            "allow_drain" => app.allow_drain = flag(value).ok_or_else(|| err("a boolean"))?,
            "drain_excluded" => app.drain_excluded = flag(value).ok_or_else(|| err("a boolean"))?,
            "use_base_manager" => {
                app.use_base_manager = flag(value).ok_or_else(|| err("a boolean"))?
            }
            "dump_command" => match value {
                Value::Null => {}
                // Diskette's form: a Django management command used instead of `dumpdata`.
                Value::String(command) => app.django_command = Some(command.clone()),
                // Ours: the command line to run, its stdout being the fixture.
                _ => {
                    app.dump_command = Some(
                        strings(value)
                            .ok_or_else(|| err("a Django command name or a command line"))?,
                    )
                }
            },
            "load_command" => {
                app.load_command = match value {
                    Value::Null => None,
                    _ => Some(strings(value).ok_or_else(|| err("a command line (a list)"))?),
                }
            }
            _ => {
                return Err(format!(
                    "definition {:?}: unknown option {key:?} (known: models, excludes, \
                     natural_foreign, natural_primary, comments, filename, is_drain, \
                     allow_drain, drain_excluded, use_base_manager, dump_command, load_command)",
                    app.name
                ));
            }
        }
    }
    check(&app)?;
    Ok(app)
}

/// What Diskette refuses, and what the built-in engine cannot do.
fn check(app: &AppConfig) -> std::result::Result<(), String> {
    let name = &app.name;
    if let Some(command) = &app.django_command
        && !BUILT_IN_COMMANDS.contains(&command.as_str())
    {
        return Err(format!(
            "definition {name:?}: dump_command {command:?} is a Django management command \
             that only Django can run; give the whole command line as a list instead, such \
             as [\"python\", \"manage.py\", {command:?}, ...]"
        ));
    }
    if let Some(filename) = &app.filename {
        let extension = Path::new(filename)
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or_default();
        if !FORMATS.contains(&extension) {
            return Err(format!(
                "definition {name:?}: file name {filename:?} must end with one of the \
                 formats .{}",
                FORMATS.join(", .")
            ));
        }
        if extension != "json" && app.dump_command.is_none() {
            return Err(format!(
                "definition {name:?}: file name {filename:?}: the built-in engine writes \
                 JSON fixtures (.json)"
            ));
        }
    }
    for label in &app.excludes {
        if !label.contains('.') || label.starts_with('.') || label.ends_with('.') {
            return Err(format!(
                "definition {name:?}: excludes: {label:?} is not a model label such as \
                 \"app.model\""
            ));
        }
    }
    Ok(())
}

fn strings(value: &Value) -> Option<Vec<String>> {
    match value {
        Value::Null => Some(Vec::new()),
        Value::Array(items) => items
            .iter()
            .map(|v| v.as_str().map(str::to_string))
            .collect(),
        _ => None,
    }
}

fn text(value: &Value) -> Option<Option<String>> {
    match value {
        Value::Null => Some(None),
        Value::String(s) => Some(Some(s.clone())),
        _ => None,
    }
}

/// Diskette reads its flags as Python truth values; JSON gives booleans (or null).
fn flag(value: &Value) -> Option<bool> {
    match value {
        Value::Null => Some(false),
        Value::Bool(b) => Some(*b),
        _ => None,
    }
}

/// A value as JSON, cut short for an error message.
fn short(value: &Value) -> String {
    let text = value.to_string();
    match text.char_indices().nth(60) {
        Some((i, _)) => format!("{}...", &text[..i]),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_diskette_definitions() {
        let apps = parse(
            r#"[
                ["django.contrib.sites", {"natural_foreign": true, "models": ["sites"]}],
                ["django.contrib.auth", {"natural_foreign": true, "models": ["auth.Group", "auth.User"],
                  "comments": "Authentication", "use_base_manager": true}],
                ["blog", {"models": "blog", "excludes": ["blog.tag"], "allow_drain": true,
                  "filename": "articles.json", "natural_primary": true}],
                ["polymorphic", {"models": ["shop"], "dump_command": "polymorphic_dumpdata"}],
                ["rest", {"is_drain": true, "drain_excluded": true, "excludes": ["cache.item"]}]
            ]"#,
        )
        .unwrap();
        let names: Vec<&str> = apps.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "django.contrib.sites",
                "django.contrib.auth",
                "blog",
                "polymorphic",
                "rest"
            ]
        );
        assert!(apps[0].natural_foreign && !apps[0].natural_primary);
        assert_eq!(apps[1].models, ["auth.Group", "auth.User"]);
        assert_eq!(apps[1].comments.as_deref(), Some("Authentication"));
        assert!(apps[1].use_base_manager);
        assert_eq!(apps[2].models, ["blog"]);
        assert_eq!(apps[2].excludes, ["blog.tag"]);
        assert_eq!(apps[2].filename.as_deref(), Some("articles.json"));
        assert!(apps[2].allow_drain && apps[2].natural_primary);
        assert_eq!(
            apps[3].django_command.as_deref(),
            Some("polymorphic_dumpdata")
        );
        assert_eq!(apps[3].dump_command, None);
        assert!(apps[4].is_drain && apps[4].drain_excluded);
    }

    #[test]
    fn command_lines_stay_ours() {
        let apps = parse(
            r#"[["audit", {"dump_command": ["python", "manage.py", "dumpdata", "audit"],
                 "load_command": ["python", "manage.py", "loaddata", "{file}"],
                 "filename": "audit.xml"}]]"#,
        )
        .unwrap();
        assert_eq!(
            apps[0].dump_command.as_deref().unwrap(),
            ["python", "manage.py", "dumpdata", "audit"]
        );
        assert_eq!(apps[0].load_command.as_ref().unwrap().len(), 4);
    }

    fn error(text: &str) -> String {
        parse(text).unwrap_err()
    }

    #[test]
    fn unknown_option_names_definition_and_option() {
        let e = error(r#"[["blog", {"models": ["blog"]}], ["shop", {"modles": ["shop"]}]]"#);
        assert!(
            e.contains("definition \"shop\"") && e.contains("unknown option \"modles\""),
            "{e}"
        );
        // `retention` is in Diskette's exported payloads, not an option it takes.
        let e = error(r#"[["blog", {"models": ["blog"], "retention": []}]]"#);
        assert!(e.contains("\"retention\""), "{e}");
    }

    #[test]
    fn wrong_types_and_shapes_are_named() {
        let e = error(r#"[["blog", {"models": ["blog"], "natural_foreign": "yes"}]]"#);
        assert!(
            e.contains("\"blog\"") && e.contains("\"natural_foreign\"") && e.contains("boolean"),
            "{e}"
        );
        let e = error(r#"[["blog", {"models": [1]}]]"#);
        assert!(e.contains("\"models\""), "{e}");
        let e = error(r#"{"blog": {}}"#);
        assert!(e.contains("list of [name, options] pairs"), "{e}");
        let e = error(r#"[["blog"]]"#);
        assert!(e.contains("item 1"), "{e}");
        let e = error(r#"[["blog", ["blog"]]]"#);
        assert!(e.contains("options must be an object"), "{e}");
        let e = error("[]");
        assert!(e.contains("no application"), "{e}");
        let e = error("[[\"blog\", {\n\"models\": [\"blog\"],\n}]]");
        assert!(e.contains("line 3"), "{e}");
    }

    #[test]
    fn refuses_what_diskette_or_the_engine_refuses() {
        let e = error(r#"[["blog", {"models": ["blog"], "filename": "blog"}]]"#);
        assert!(e.contains("\"blog\"") && e.contains(".json"), "{e}");
        let e = error(r#"[["blog", {"models": ["blog"], "filename": "blog.xml"}]]"#);
        assert!(e.contains("writes JSON"), "{e}");
        let e = error(r#"[["blog", {"models": ["blog"], "excludes": ["blog"]}]]"#);
        assert!(e.contains("excludes") && e.contains("app.model"), "{e}");
        let e = error(r#"[["blog", {"models": ["blog"], "dump_command": "my_dump"}]]"#);
        assert!(e.contains("\"my_dump\"") && e.contains("as a list"), "{e}");
    }
}

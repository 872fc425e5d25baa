//! `dump --no-archive`: instead of an archive, the `manage.py dumpdata`
//! command line of each definition, as Diskette prints them (labels as it
//! resolves them, the natural-key flags, `--indent`, `--output`), one per
//! line, so that Django's own tool can make the fixtures.

use std::path::Path;

use crate::apps::{Engine, ResolvedApp};
use crate::config::Config;
use crate::error::{Error, Result};

/// How the command lines start: run from the project's directory.
const MANAGE: &str = "python manage.py";

/// The command lines of every definition, each ending with a newline.
/// Fixtures go to `destination` (default: `[dump] path`).
pub fn script(config: &Config, destination: Option<&Path>) -> Result<String> {
    if config.apps.is_empty() {
        return Err(Error::Usage(
            "--no-archive prints the data dump commands, but no application is defined \
             ([[apps]] in the configuration, or --appconf)"
                .into(),
        ));
    }
    let (apps, catalog) = crate::apps::resolve_with_catalog(config)?;
    if destination.is_none() && config.dump.s3_url().is_some() {
        return Err(Error::Usage(
            "--no-archive writes fixture files: give a local --destination, [dump] path is \
             an S3 bucket"
                .into(),
        ));
    }
    let destination = destination.unwrap_or(&config.dump.path);
    // What `dumpdata` without labels dumps: every model but the auto-created ones.
    let all_models: Vec<String> = catalog
        .iter()
        .flat_map(|c| &c.models)
        .filter(|m| m.through.is_none())
        .map(|m| m.label.clone())
        .collect();
    let mut out = String::new();
    for app in &apps {
        let output = destination.join(&app.filename);
        let line = match &app.engine {
            Engine::Command { dump, .. } => {
                let argv: Vec<String> = dump.iter().map(|a| quote(a)).collect();
                format!("{} > {}", argv.join(" "), quote(&output.to_string_lossy()))
            }
            Engine::Sql { tables } => {
                let labels: Vec<&str> = tables.iter().map(|t| t.label.as_str()).collect();
                // A drain is `dumpdata` of everything but the models it leaves out.
                let excludes: Vec<&str> = if app.config.is_drain {
                    all_models
                        .iter()
                        .map(String::as_str)
                        .filter(|l| !labels.contains(l))
                        .collect()
                } else {
                    Vec::new()
                };
                let line = Dumpdata {
                    command: app.config.django_command.as_deref().unwrap_or("dumpdata"),
                    labels: if app.config.is_drain { &[] } else { &labels },
                    app,
                    excludes: &excludes,
                    indent: config.data.indent,
                    output: &output,
                };
                line.render()
            }
        };
        out.push_str(&line);
        out.push('\n');
    }
    Ok(out)
}

/// One `dumpdata` command line, options in Diskette's order.
struct Dumpdata<'a> {
    command: &'a str,
    labels: &'a [&'a str],
    app: &'a ResolvedApp,
    excludes: &'a [&'a str],
    indent: Option<usize>,
    output: &'a Path,
}

impl Dumpdata<'_> {
    fn render(&self) -> String {
        let mut words: Vec<String> = vec![MANAGE.to_string(), quote(self.command)];
        if let Some(n) = self.indent.filter(|n| *n > 0) {
            words.push(format!("--indent={n}"));
        }
        words.extend(self.labels.iter().map(|l| quote(l)));
        let config = &self.app.config;
        if config.natural_foreign {
            words.push("--natural-foreign".into());
        }
        if config.natural_primary {
            words.push("--natural-primary".into());
        }
        if config.use_base_manager {
            words.push("--all".into());
        }
        for e in self.excludes {
            words.push("--exclude".into());
            words.push(quote(e));
        }
        words.push(quote(&format!(
            "--output={}",
            self.output.to_string_lossy()
        )));
        words.join(" ")
    }
}

/// A word for a POSIX shell: as it is when it is plain, else single-quoted.
fn quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.,:/=@%+".contains(c));
    if plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apps::Table;
    use crate::config::AppConfig;

    fn resolved(config: AppConfig, labels: &[&str]) -> ResolvedApp {
        ResolvedApp {
            name: config.name.clone(),
            filename: crate::apps::fixture_filename(&config),
            engine: Engine::Sql {
                tables: labels
                    .iter()
                    .map(|l| Table {
                        name: l.replace('.', "_"),
                        label: l.to_string(),
                    })
                    .collect(),
            },
            config,
            warnings: Vec::new(),
        }
    }

    #[test]
    fn options_in_diskettes_order() {
        let app = resolved(
            AppConfig {
                name: "auth".into(),
                natural_foreign: true,
                natural_primary: true,
                use_base_manager: true,
                ..Default::default()
            },
            &["auth.group", "auth.user"],
        );
        let line = Dumpdata {
            command: "dumpdata",
            labels: &["auth.group", "auth.user"],
            app: &app,
            excludes: &[],
            indent: Some(2),
            output: Path::new("/srv/dumps/auth.json"),
        };
        assert_eq!(
            line.render(),
            "python manage.py dumpdata --indent=2 auth.group auth.user --natural-foreign \
             --natural-primary --all --output=/srv/dumps/auth.json"
        );
    }

    #[test]
    fn drains_exclude_and_words_are_quoted() {
        let app = resolved(
            AppConfig {
                name: "the rest".into(),
                is_drain: true,
                ..Default::default()
            },
            &[],
        );
        let line = Dumpdata {
            command: "polymorphic_dumpdata",
            labels: &[],
            app: &app,
            excludes: &["blog.article", "sessions.session"],
            indent: None,
            output: Path::new("/srv/my dumps/the-rest.json"),
        };
        assert_eq!(
            line.render(),
            "python manage.py polymorphic_dumpdata --exclude blog.article --exclude \
             sessions.session '--output=/srv/my dumps/the-rest.json'"
        );
        assert_eq!(quote("it's"), r"'it'\''s'");
        assert_eq!(quote(""), "''");
    }
}

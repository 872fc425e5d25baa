//! Diskette's per-run options of `dump`: definitions, storages and exclude
//! patterns given on the command line replace the configuration's for one
//! run, and are validated as the configuration is.

use std::path::{Path, PathBuf};

use crate::config::Config;
use crate::error::{Error, Result};
use crate::storages::{Excludes, SettingNames};

/// What the command line replaces; empty fields keep the configuration's.
#[derive(Debug, Clone, Default)]
pub struct DumpOverrides {
    /// A Diskette JSON definition list (`--appconf`).
    pub appconf: Option<PathBuf>,
    /// `--storage`, repeatable.
    pub storages: Vec<PathBuf>,
    /// `--storages-basepath`.
    pub storages_basepath: Option<PathBuf>,
    /// `--storages-exclude`, repeatable.
    pub storages_excludes: Vec<String>,
}

impl DumpOverrides {
    /// The configuration of this run. Relative paths given on the command line
    /// resolve against the working directory, as any command-line path.
    /// The storages are checked now when `with_storages`, so that an error
    /// names the option that brought the bad value.
    pub fn apply(&self, config: &Config, with_storages: bool) -> Result<Config> {
        let mut config = config.clone();
        if let Some(path) = &self.appconf {
            config.apps = crate::apps::appconf::read(path)?;
        }
        let mut names = SettingNames::CONFIG;
        if !self.storages.is_empty() {
            config.storages.paths = self
                .storages
                .iter()
                .map(|p| absolute(p, "--storage"))
                .collect::<Result<_>>()?;
            names.paths = "--storage";
        }
        if let Some(base) = &self.storages_basepath {
            config.storages.basepath = absolute(base, "--storages-basepath")?;
            names.basepath = "--storages-basepath";
        }
        if !self.storages_excludes.is_empty() {
            config.storages.excludes = self.storages_excludes.clone();
            names.excludes = "--storages-exclude";
        }
        let touched = !self.storages.is_empty()
            || self.storages_basepath.is_some()
            || !self.storages_excludes.is_empty();
        if with_storages && touched && !config.storages.paths.is_empty() {
            crate::storages::validate_named(&config.storages, &names).map_err(as_usage)?;
            Excludes::named(&config.storages.excludes, names.excludes).map_err(as_usage)?;
        }
        Ok(config)
    }
}

fn absolute(path: &Path, option: &str) -> Result<PathBuf> {
    if path.as_os_str().is_empty() {
        return Err(Error::Usage(format!("{option}: the path is empty")));
    }
    std::path::absolute(path)
        .map_err(|e| Error::Usage(format!("{option}: {}: {e}", path.display())))
}

/// A bad value from an option is a usage error, not a configuration one.
fn as_usage(e: Error) -> Error {
    match e {
        Error::Config(m) if m.starts_with("--") => Error::Usage(m),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(dir: &Path) -> Config {
        Config::from_toml(
            "[storages]\nbasepath = \".\"\npaths = [\"media\"]\nexcludes = [\"*.tmp\"]\n",
            dir,
            Vec::new(),
        )
        .unwrap()
    }

    #[test]
    fn options_replace_the_configuration_and_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("media")).unwrap();
        std::fs::create_dir_all(dir.path().join("other")).unwrap();
        let base = config(dir.path());
        let overrides = DumpOverrides {
            storages: vec![dir.path().join("other")],
            storages_excludes: vec!["cache/*".into(), "*.bak".into()],
            ..Default::default()
        };
        let c = overrides.apply(&base, true).unwrap();
        assert_eq!(c.storages.paths, vec![dir.path().join("other")]);
        assert_eq!(c.storages.excludes, ["cache/*", "*.bak"]);
        assert_eq!(c.storages.basepath, base.storages.basepath);

        let missing = DumpOverrides {
            storages: vec![dir.path().join("nowhere")],
            ..Default::default()
        };
        let e = missing.apply(&base, true).unwrap_err().to_string();
        assert!(e.starts_with("--storage: ") && e.contains("nowhere"), "{e}");
        // Not checked when the storages are not dumped.
        assert!(missing.apply(&base, false).is_ok());

        let outside = DumpOverrides {
            storages_basepath: Some(dir.path().join("other")),
            ..Default::default()
        };
        let e = outside.apply(&base, true).unwrap_err().to_string();
        assert!(
            e.contains("storages.paths") && e.contains("not inside the storages basepath"),
            "{e}"
        );

        let bad_glob = DumpOverrides {
            storages_excludes: vec!["a[".into()],
            ..Default::default()
        };
        let e = bad_glob.apply(&base, true).unwrap_err().to_string();
        assert!(e.starts_with("--storages-exclude: \"a[\""), "{e}");
    }
}

//! The command engine: `dump_command` writes the fixture on stdout, `load_command` reads it.

use std::path::Path;

use crate::Config;
use crate::error::Result;
use crate::progress::Progress;

#[derive(Debug, Clone)]
pub struct CommandApp {
    pub name: String,
    pub argv: Vec<String>,
}

impl CommandApp {
    /// The definition whose fixture file is `filename` and that has a load command.
    pub fn for_load(_config: &Config, _filename: &str) -> Option<CommandApp> {
        None
    }

    pub fn load(&self, _config: &Config, _path: &Path, _progress: &dyn Progress) -> Result<()> {
        todo!()
    }
}

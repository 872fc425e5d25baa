//! Application definitions: which tables (or which command) each one dumps.

use crate::Config;
use crate::error::Result;

/// Printable description of the resolved definitions (`diskette apps`).
pub fn describe(_config: &Config) -> Result<String> {
    todo!()
}

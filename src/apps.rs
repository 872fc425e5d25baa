//! Application definitions: which tables (or which command) each one dumps.

use crate::error::Result;
use crate::Config;

/// Printable description of the resolved definitions (`diskette apps`).
pub fn describe(_config: &Config) -> Result<String> {
    todo!()
}

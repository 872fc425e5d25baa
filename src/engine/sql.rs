//! The built-in SQL engine over SQLite: Django-shaped fixtures, streaming.

use crate::Config;
use crate::engine::DataFile;
use crate::error::Result;
use crate::progress::Progress;

/// An open transaction holding applied fixtures.
pub struct PendingTransaction {
    pub rows: u64,
}

impl PendingTransaction {
    pub fn commit(self) -> Result<()> {
        todo!()
    }
}

pub fn load_fixtures(
    _config: &Config,
    _files: &[DataFile],
    _progress: &dyn Progress,
) -> Result<PendingTransaction> {
    todo!()
}

//! What `/healthz` reports beyond "the registry answers": an enabled
//! schedule whose last run failed, an available dump whose archive is corrupt.
//!
//! `/healthz` needs no login, so its reasons name ids only; the error texts
//! (paths, command output, SQLite messages) go to the log.

use crate::error::Result;
use crate::registry::Registry;

/// One line per problem; empty when healthy.
pub async fn problems(registry: &Registry) -> Result<Vec<String>> {
    let mut problems = Vec::new();
    for s in registry.schedules().await? {
        if s.enabled && s.last_failed() {
            let dump = s.last_dump_id.unwrap_or_default();
            tracing::warn!(
                schedule = %s.id,
                %dump,
                error = ?s.last_error.as_deref().unwrap_or("no error recorded"),
                "health: the last run of a schedule failed"
            );
            problems.push(format!("schedule {}: last run failed (dump {dump})", s.id));
        }
    }
    for (id, error) in registry.corrupt_available().await? {
        tracing::warn!(dump = %id, ?error, "health: an available archive is corrupt");
        problems.push(format!("dump {id}: archive corrupt"));
    }
    Ok(problems)
}

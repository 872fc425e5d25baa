//! What `/healthz` reports beyond "the registry answers": an enabled
//! schedule whose last run failed, an available dump whose archive is corrupt.

use crate::error::Result;
use crate::registry::Registry;

/// One line per problem; empty when healthy.
pub async fn problems(registry: &Registry) -> Result<Vec<String>> {
    let mut problems = Vec::new();
    for s in registry.schedules().await? {
        if s.enabled && s.last_failed() {
            problems.push(format!(
                "the last run of schedule {} (dump {}) failed: {}",
                s.id,
                s.last_dump_id.unwrap_or_default(),
                s.last_error.as_deref().unwrap_or("no error recorded")
            ));
        }
    }
    for (id, error) in registry.corrupt_available().await? {
        problems.push(format!("the available dump {id} is corrupt: {error}"));
    }
    Ok(problems)
}

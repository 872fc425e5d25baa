//! The SQL of verifications, generic over the executor.

use sqlx::SqliteExecutor;

use crate::registry::{DumpId, OptionSet};

pub async fn insert<'c>(
    ex: impl SqliteExecutor<'c>,
    dump: DumpId,
    error: Option<&str>,
    now: &str,
) -> sqlx::Result<()> {
    sqlx::query("INSERT INTO verifications (dump_id, at, ok, error) VALUES (?, ?, ?, ?)")
        .bind(dump.get())
        .bind(now)
        .bind(error.is_none())
        .bind(error)
        .execute(ex)
        .await?;
    Ok(())
}

/// Dumps whose archive is on disk: processed and not purged. `available_only`
/// keeps the one downloadable dump of each set.
pub async fn stored<'c>(
    ex: impl SqliteExecutor<'c>,
    available_only: bool,
) -> sqlx::Result<Vec<DumpId>> {
    let ids: Vec<i64> = sqlx::query_scalar(
        "SELECT id FROM dumps WHERE status = 'processed' AND purged_at IS NULL \
         AND (? = 0 OR deprecated = 0) ORDER BY id",
    )
    .bind(available_only)
    .fetch_all(ex)
    .await?;
    Ok(ids.into_iter().map(DumpId::from).collect())
}

/// Available dumps last verified (or, never verified, processed) at or before `before`.
pub async fn due<'c>(ex: impl SqliteExecutor<'c>, before: &str) -> sqlx::Result<Vec<DumpId>> {
    let ids: Vec<i64> = sqlx::query_scalar(
        "SELECT d.id FROM dumps d WHERE d.status = 'processed' AND d.deprecated = 0 \
         AND d.purged_at IS NULL AND COALESCE( \
             (SELECT MAX(v.at) FROM verifications v WHERE v.dump_id = d.id), d.processed_at) <= ? \
         ORDER BY d.id",
    )
    .bind(before)
    .fetch_all(ex)
    .await?;
    Ok(ids.into_iter().map(DumpId::from).collect())
}

/// Is a dump of `set` waiting or running?
pub async fn in_flight<'c>(ex: impl SqliteExecutor<'c>, set: OptionSet) -> sqlx::Result<bool> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM dumps WHERE with_data = ? AND with_storages = ? \
         AND status IN ('created', 'pending'))",
    )
    .bind(set.with_data())
    .bind(set.with_storages())
    .fetch_one(ex)
    .await
}

/// (dump id, error) of the available dumps whose latest verification failed.
pub async fn corrupt_available<'c>(
    ex: impl SqliteExecutor<'c>,
) -> sqlx::Result<Vec<(i64, String)>> {
    sqlx::query_as(
        "SELECT d.id, v.error FROM dumps d \
         JOIN verifications v ON v.id = (SELECT MAX(id) FROM verifications WHERE dump_id = d.id) \
         WHERE d.status = 'processed' AND d.deprecated = 0 AND v.ok = 0 ORDER BY d.id",
    )
    .fetch_all(ex)
    .await
}

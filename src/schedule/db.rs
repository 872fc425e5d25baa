//! The SQL of schedules and their runs, generic over the executor.

use sqlx::{FromRow, SqliteExecutor};

use super::NewSchedule;
use crate::registry::{DumpId, OptionSet};

/// A schedule with its latest run and that run's dump.
#[derive(Debug, Clone, FromRow)]
pub struct ScheduleRow {
    pub id: i64,
    pub cron: String,
    pub with_data: bool,
    pub with_storages: bool,
    pub timezone: String,
    pub enabled: bool,
    pub created_at: String,
    pub active_since: String,
    pub last_due_at: Option<String>,
    pub last_dump_id: Option<i64>,
    pub last_status: Option<String>,
    pub last_error: Option<String>,
}

impl ScheduleRow {
    pub fn option_set(&self) -> Result<OptionSet, String> {
        OptionSet::new(self.with_data, self.with_storages)
    }

    /// The last run's dump failed.
    pub fn last_failed(&self) -> bool {
        self.last_status.as_deref() == Some("failed")
    }
}

/// The latest run of each schedule is the one with the greatest due time.
const SELECT: &str = "SELECT s.id, s.cron, s.with_data, s.with_storages, s.timezone, s.enabled, \
     s.created_at, s.active_since, r.due_at AS last_due_at, r.dump_id AS last_dump_id, \
     d.status AS last_status, d.error AS last_error \
     FROM schedules s \
     LEFT JOIN schedule_runs r ON r.id = (SELECT id FROM schedule_runs \
         WHERE schedule_id = s.id ORDER BY due_at DESC LIMIT 1) \
     LEFT JOIN dumps d ON d.id = r.dump_id";

pub async fn list<'c>(ex: impl SqliteExecutor<'c>) -> sqlx::Result<Vec<ScheduleRow>> {
    sqlx::query_as(&format!("{SELECT} ORDER BY s.id"))
        .fetch_all(ex)
        .await
}

pub async fn get<'c>(ex: impl SqliteExecutor<'c>, id: i64) -> sqlx::Result<Option<ScheduleRow>> {
    sqlx::query_as(&format!("{SELECT} WHERE s.id = ?"))
        .bind(id)
        .fetch_optional(ex)
        .await
}

pub async fn insert<'c>(
    ex: impl SqliteExecutor<'c>,
    new: &NewSchedule,
    now: &str,
) -> sqlx::Result<i64> {
    sqlx::query_scalar(
        "INSERT INTO schedules (cron, with_data, with_storages, timezone, enabled, created_at, active_since) \
         VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
    )
    .bind(&new.cron)
    .bind(new.set.with_data())
    .bind(new.set.with_storages())
    .bind(&new.timezone)
    .bind(new.enabled)
    .bind(now)
    .bind(now)
    .fetch_one(ex)
    .await
}

pub async fn delete<'c>(ex: impl SqliteExecutor<'c>, id: i64) -> sqlx::Result<bool> {
    let done = sqlx::query("DELETE FROM schedules WHERE id = ?")
        .bind(id)
        .execute(ex)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Enabling a disabled schedule moves `active_since` to now.
pub async fn set_enabled<'c>(
    ex: impl SqliteExecutor<'c>,
    id: i64,
    enabled: bool,
    now: &str,
) -> sqlx::Result<bool> {
    let done = sqlx::query(
        "UPDATE schedules SET \
         active_since = CASE WHEN enabled = 0 AND ? = 1 THEN ? ELSE active_since END, \
         enabled = ? WHERE id = ?",
    )
    .bind(enabled)
    .bind(now)
    .bind(enabled)
    .bind(id)
    .execute(ex)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Take the run of `due` for an enabled schedule; `None` when it is taken
/// already (by this or another instance) or the schedule is gone or disabled.
pub async fn claim_due<'c>(
    ex: impl SqliteExecutor<'c>,
    schedule_id: i64,
    due_at: &str,
    now: &str,
) -> sqlx::Result<Option<i64>> {
    sqlx::query_scalar(
        "INSERT INTO schedule_runs (schedule_id, due_at, created_at) \
         SELECT id, ?, ? FROM schedules WHERE id = ? AND enabled = 1 \
         ON CONFLICT (schedule_id, due_at) DO NOTHING RETURNING id",
    )
    .bind(due_at)
    .bind(now)
    .bind(schedule_id)
    .fetch_optional(ex)
    .await
}

pub async fn set_run_dump<'c>(
    ex: impl SqliteExecutor<'c>,
    run: i64,
    dump: DumpId,
) -> sqlx::Result<()> {
    sqlx::query("UPDATE schedule_runs SET dump_id = ? WHERE id = ?")
        .bind(dump.get())
        .bind(run)
        .execute(ex)
        .await?;
    Ok(())
}

/// (schedule id, due time, dump id) of every run, oldest first.
pub async fn runs<'c>(
    ex: impl SqliteExecutor<'c>,
) -> sqlx::Result<Vec<(i64, String, Option<i64>)>> {
    sqlx::query_as("SELECT schedule_id, due_at, dump_id FROM schedule_runs ORDER BY id")
        .fetch_all(ex)
        .await
}

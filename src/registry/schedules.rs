//! Schedules and their runs. A run is the unique (schedule, due time) row
//! inserted in the transaction that creates its dump, so several instances
//! on one registry make one dump per due time. Cron expressions and time
//! zones are checked by the scheduler before they get here.

use time::OffsetDateTime;

use super::pool::{Ex, Stamp, affected, on};
use super::records::Schedule;
use super::service::Registry;
use super::types::{DumpId, OptionSet, ScheduleId};
use super::{db, now, stamp};
use crate::error::{Error, Result};

/// The latest run of each schedule is the one with the greatest due time.
const SELECT: &str = "SELECT s.id, s.cron, s.with_data, s.with_storages, s.timezone, s.enabled, \
     s.created_at, s.active_since, r.due_at AS last_due_at, r.dump_id AS last_dump_id, \
     d.status AS last_status, d.error AS last_error \
     FROM schedules s \
     LEFT JOIN schedule_runs r ON r.id = (SELECT id FROM schedule_runs \
         WHERE schedule_id = s.id ORDER BY due_at DESC LIMIT 1) \
     LEFT JOIN dumps d ON d.id = r.dump_id";

impl Registry {
    pub async fn schedules(&self) -> Result<Vec<Schedule>> {
        let sql = format!("{SELECT} ORDER BY s.id");
        Ok(on!(&self.pool, e => sqlx::query_as(&sql).fetch_all(e).await)?)
    }

    pub async fn schedule(&self, id: ScheduleId) -> Result<Option<Schedule>> {
        let sql = format!("{SELECT} WHERE s.id = $1");
        Ok(on!(&self.pool, e => sqlx::query_as(&sql).bind(id.get()).fetch_optional(e).await)?)
    }

    /// Record a schedule whose expression and time zone were checked.
    pub async fn insert_schedule(
        &self,
        cron: &str,
        set: OptionSet,
        timezone: &str,
        enabled: bool,
    ) -> Result<ScheduleId> {
        let now = now();
        let sql = "INSERT INTO schedules (cron, with_data, with_storages, timezone, enabled, \
                   created_at, active_since) VALUES ($1, $2, $3, $4, $5, $6, $6) RETURNING id";
        let id: i64 = on!(&self.pool, e => sqlx::query_scalar(sql)
            .bind(cron)
            .bind(set.with_data())
            .bind(set.with_storages())
            .bind(timezone)
            .bind(enabled)
            .bind(now)
            .fetch_one(e)
            .await)?;
        Ok(ScheduleId::from(id))
    }

    /// Remove a schedule; its runs stay, and still mark its dumps as scheduled.
    pub async fn remove_schedule(&self, id: ScheduleId) -> Result<()> {
        let sql = "DELETE FROM schedules WHERE id = $1";
        let done =
            on!(&self.pool, e => affected(sqlx::query(sql).bind(id.get()).execute(e).await))?;
        if done == 0 {
            return Err(Error::Usage(format!("no schedule {id}")));
        }
        Ok(())
    }

    /// Enabling a disabled schedule starts it afresh: the due times it
    /// missed while disabled are not run.
    pub async fn set_schedule_enabled(&self, id: ScheduleId, enabled: bool) -> Result<()> {
        let sql = "UPDATE schedules SET \
                   active_since = CASE WHEN NOT enabled AND $1 THEN $2 ELSE active_since END, \
                   enabled = $1 WHERE id = $3";
        let done = on!(&self.pool, e => affected(sqlx::query(sql)
            .bind(enabled)
            .bind(now())
            .bind(id.get())
            .execute(e)
            .await))?;
        if done == 0 {
            return Err(Error::Usage(format!("no schedule {id}")));
        }
        Ok(())
    }

    /// Create the dump of `due` for an enabled schedule, with its run, in
    /// one transaction. `None` when the run exists already (made by this or
    /// another instance) or the schedule is gone or disabled.
    pub async fn create_scheduled_dump(
        &self,
        schedule_id: ScheduleId,
        set: OptionSet,
        due: OffsetDateTime,
    ) -> Result<Option<DumpId>> {
        let mut tx = self.write_tx().await?;
        let now = now();
        let Some(run) = claim_due(&mut tx, schedule_id, &stamp(due), &now).await? else {
            return Ok(None);
        };
        let dump = db::insert_dump(&mut tx, set, None, &now).await?;
        let sql = "UPDATE schedule_runs SET dump_id = $1 WHERE id = $2";
        on!(&mut tx, e => affected(sqlx::query(sql).bind(dump.get()).bind(run).execute(e).await))?;
        let detail = format!("{} (schedule {schedule_id})", set.label());
        db::insert_action(&mut tx, None, None, "created", Some(dump), &detail, &now).await?;
        tx.commit().await?;
        self.wake().notify_one();
        Ok(Some(dump))
    }

    /// (schedule id, due time, dump) of every run, oldest first.
    pub async fn schedule_runs(&self) -> Result<Vec<(ScheduleId, OffsetDateTime, Option<DumpId>)>> {
        let sql = "SELECT schedule_id, due_at, dump_id FROM schedule_runs ORDER BY id";
        let rows: Vec<(ScheduleId, OffsetDateTime, Option<i64>)> =
            on!(&self.pool, e => sqlx::query_as(sql).fetch_all(e).await)?;
        Ok(rows
            .into_iter()
            .map(|(s, due, dump)| (s, due, dump.map(DumpId::from)))
            .collect())
    }
}

async fn claim_due<'a>(
    ex: impl Into<Ex<'a>>,
    schedule_id: ScheduleId,
    due_at: &Stamp,
    now: &Stamp,
) -> sqlx::Result<Option<i64>> {
    let sql = "INSERT INTO schedule_runs (schedule_id, due_at, created_at) \
               SELECT id, $1, $2 FROM schedules WHERE id = $3 AND enabled = TRUE \
               ON CONFLICT (schedule_id, due_at) DO NOTHING RETURNING id";
    on!(ex, e => sqlx::query_scalar(sql)
        .bind(due_at)
        .bind(now)
        .bind(schedule_id.get())
        .fetch_optional(e)
        .await)
}

//! Verifications of stored archives. They live in their own table: a
//! finished dump's record never changes (rule 4); the latest verification of
//! a dump is its state.

use time::OffsetDateTime;

use super::pool::{affected, on};
use super::service::{Actor, Registry};
use super::types::{DumpId, OptionSet};
use super::{db, now, stamp};
use crate::error::Result;

/// Whether a dump of an option set (`with_data`, `with_storages`) is waiting
/// or running.
const IN_FLIGHT: &str = "SELECT EXISTS (SELECT 1 FROM dumps WHERE with_data = $1 \
     AND with_storages = $2 AND status IN ('created', 'pending'))";

impl Registry {
    /// Record what a re-read found (`None`: the archive is good), with its
    /// line in the action history.
    pub async fn record_verification(
        &self,
        id: DumpId,
        problem: Option<&str>,
        actor: Actor,
    ) -> Result<()> {
        let detail = match problem {
            None => "good".to_string(),
            Some(p) => format!("corrupt: {p}"),
        };
        let now = now();
        let mut tx = self.write_tx().await?;
        let sql = "INSERT INTO verifications (dump_id, at, ok, error) VALUES ($1, $2, $3, $4)";
        on!(&mut tx, e => affected(sqlx::query(sql)
            .bind(id.get())
            .bind(now)
            .bind(problem.is_none())
            .bind(problem)
            .execute(e)
            .await))?;
        let (user, key) = (actor.user_id(), actor.key_id());
        db::insert_action(&mut tx, user, key, "verified", Some(id), &detail, &now).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Dumps whose archive is on disk (processed, not purged);
    /// `available_only` keeps the one downloadable dump of each set.
    pub async fn stored_dumps(&self, available_only: bool) -> Result<Vec<DumpId>> {
        let sql = "SELECT id FROM dumps WHERE status = 'processed' AND purged_at IS NULL \
                   AND (NOT $1 OR deprecated = FALSE) ORDER BY id";
        let ids: Vec<i64> =
            on!(&self.pool, e => sqlx::query_scalar(sql).bind(available_only).fetch_all(e).await)?;
        Ok(ids.into_iter().map(DumpId::from).collect())
    }

    /// Available dumps last verified (never verified: processed) at or before `before`.
    pub async fn verification_due(&self, before: OffsetDateTime) -> Result<Vec<DumpId>> {
        let sql = "SELECT d.id FROM dumps d WHERE d.status = 'processed' AND d.deprecated = FALSE \
             AND d.purged_at IS NULL AND COALESCE( \
                 (SELECT MAX(v.at) FROM verifications v WHERE v.dump_id = d.id), d.processed_at) <= $1 \
             ORDER BY d.id";
        let ids: Vec<i64> =
            on!(&self.pool, e => sqlx::query_scalar(sql).bind(stamp(before)).fetch_all(e).await)?;
        Ok(ids.into_iter().map(DumpId::from).collect())
    }

    /// Is a dump of `set` waiting or running? (For what a page says; to queue
    /// one, `queue_replacement` checks again in its own transaction.)
    pub async fn dump_in_flight(&self, set: OptionSet) -> Result<bool> {
        Ok(on!(&self.pool, e => sqlx::query_scalar(IN_FLIGHT)
            .bind(set.with_data())
            .bind(set.with_storages())
            .fetch_one(e)
            .await)?)
    }

    /// Queue a fresh dump of `set` unless one is waiting or running; the
    /// check and the insert share one write transaction, so two instances
    /// never queue two. Returns the new dump.
    pub async fn queue_replacement(&self, set: OptionSet) -> Result<Option<DumpId>> {
        let now = now();
        let mut tx = self.write_tx().await?;
        let in_flight: bool = on!(&mut tx, e => sqlx::query_scalar(IN_FLIGHT)
            .bind(set.with_data())
            .bind(set.with_storages())
            .fetch_one(e)
            .await)?;
        if in_flight {
            return Ok(None);
        }
        let id = db::insert_dump(&mut tx, set, None, &now).await?;
        db::insert_action(&mut tx, None, None, "created", Some(id), set.label(), &now).await?;
        tx.commit().await?;
        self.wake().notify_one();
        Ok(Some(id))
    }

    /// (dump, error) of the available dumps whose latest verification failed.
    pub async fn corrupt_available(&self) -> Result<Vec<(DumpId, String)>> {
        let sql = "SELECT d.id, v.error FROM dumps d \
             JOIN verifications v ON v.id = (SELECT MAX(id) FROM verifications WHERE dump_id = d.id) \
             WHERE d.status = 'processed' AND d.deprecated = FALSE AND v.ok = FALSE ORDER BY d.id";
        let rows: Vec<(i64, String)> =
            on!(&self.pool, e => sqlx::query_as(sql).fetch_all(e).await)?;
        Ok(rows
            .into_iter()
            .map(|(id, e)| (DumpId::from(id), e))
            .collect())
    }
}

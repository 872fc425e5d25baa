//! Job leases: several processes share one registry and one dump directory.
//!
//! A job is claimed with a lease (its instance, an expiry) that the job
//! renews each time it writes its progress. Any live instance ends a job
//! whose lease expired: it fails the dump ([`LEASE_EXPIRED`]) and removes
//! the files that dump's process left, and only those (temporary names carry
//! the dump id). Failing rather than re-queueing: the status never moves
//! backwards (a trigger holds it), and a dump that kills every instance
//! running it is not run again and again; a schedule or a user makes the
//! next one.

use std::collections::HashSet;

use super::db;
use super::files::{remove_temp_files, remove_unrecorded_archives, remove_unrecorded_objects};
use super::pool::{Ex, Stamp, Tx, affected, on};
use super::records::Dump;
use super::service::{LEASE_EXPIRED, RecoveryReport, Registry};
use super::types::DumpId;
use super::{now, stamp};
use crate::error::Result;
use crate::store::ArchiveStore;

impl Registry {
    /// This process's name in the leases it holds.
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// When a lease taken or renewed now ends.
    fn lease_end(&self) -> Stamp {
        stamp(time::OffsetDateTime::now_utc() + self.lease)
    }

    /// The worker's claim: the oldest `created` dump becomes `pending`, with
    /// a lease of this instance. On PostgreSQL, `SKIP LOCKED` lets instances
    /// claim side by side; SQLite has one writer anyway.
    pub async fn claim_next(&self) -> Result<Option<DumpId>> {
        let until = self.lease_end();
        let mut tx = self.pool.begin().await?;
        let lock = if Ex::from(&mut tx).is_postgres() {
            "FOR UPDATE SKIP LOCKED"
        } else {
            ""
        };
        let sql = format!(
            "UPDATE dumps SET status = 'pending', lease_owner = $1, lease_until = $2 \
             WHERE id = (SELECT id FROM dumps WHERE status = 'created' ORDER BY id LIMIT 1 {lock}) \
             AND status = 'created' RETURNING id"
        );
        let id: Option<i64> = on!(&mut tx, e => sqlx::query_scalar(&sql)
            .bind(&*self.instance)
            .bind(until)
            .fetch_optional(e)
            .await)?;
        tx.commit().await?;
        Ok(id.map(DumpId::from))
    }

    /// Claim the dump `id`, just created in `tx`, for a job of this process.
    pub(super) async fn claim(&self, tx: &mut Tx, id: DumpId) -> Result<bool> {
        let sql = "UPDATE dumps SET status = 'pending', lease_owner = $1, lease_until = $2 \
                   WHERE id = $3 AND status = 'created'";
        let done = on!(tx, e => affected(sqlx::query(sql)
            .bind(&*self.instance)
            .bind(self.lease_end())
            .bind(id.get())
            .execute(e)
            .await))?;
        Ok(done == 1)
    }

    /// Write a running job's progress and renew its lease. False when the
    /// job is no longer wanted (deprecated, or its record moved on: ended by
    /// another instance): it should stop.
    pub async fn record_progress(
        &self,
        id: DumpId,
        bytes: u64,
        files: u64,
        new_logs: &str,
    ) -> Result<bool> {
        let sql = "UPDATE dumps SET progress_bytes = $1, progress_files = $2, logs = logs || $3, \
                   lease_until = $4 WHERE id = $5 AND status = 'pending' AND lease_owner = $6 \
                   RETURNING deprecated";
        let deprecated: Option<bool> = on!(&self.pool, e => sqlx::query_scalar(sql)
            .bind(bytes as i64)
            .bind(files as i64)
            .bind(new_logs)
            .bind(self.lease_end())
            .bind(id.get())
            .bind(&*self.instance)
            .fetch_optional(e)
            .await)?;
        Ok(deprecated == Some(false))
    }

    /// Rule 8 for several processes, at start-up and then periodically:
    /// dumps whose lease expired become failed (queued ones, and running
    /// ones with a live lease, are left alone), the temporary files of dumps
    /// no job runs any more go, pending purges finish.
    pub async fn recover(&self) -> Result<RecoveryReport> {
        let expired = self.fail_expired().await?;
        // Listed before the dumps in flight are read: a file listed belongs
        // to a dump that was claimed already, so in flight unless it ended.
        // An object store holds no temporary object: an upload is invisible
        // until complete, and aborted on failure.
        let temp = match self.store().local_dir() {
            Some(dir) => super::files::temp_entries(dir)?,
            None => Vec::new(),
        };
        let in_flight: HashSet<i64> = on!(&self.pool, e => sqlx::query_scalar(
            "SELECT id FROM dumps WHERE status IN ('created', 'pending')"
        )
        .fetch_all(e)
        .await)?
        .into_iter()
        .collect();
        let temp_files = remove_temp_files(temp, &in_flight)?;
        // An archive renamed into place just before the process died, whose
        // dump was never recorded as processed, would stay untracked forever.
        let unrecorded = if expired.is_empty() {
            0
        } else {
            let recorded: HashSet<String> = db::recorded_filenames(&self.pool)
                .await?
                .into_iter()
                .collect();
            let pattern = &self.filename_pattern;
            match self.store() {
                ArchiveStore::Local(dir) => {
                    remove_unrecorded_archives(dir, pattern, &expired, &recorded)?
                }
                ArchiveStore::S3(s3) => {
                    remove_unrecorded_objects(s3, pattern, &expired, &recorded).await?
                }
            }
        };
        let purged = if self.auto_purge {
            self.purge().await?
        } else {
            0
        };
        Ok(RecoveryReport {
            failed: expired.len(),
            temp_files,
            unrecorded,
            purged,
        })
    }

    /// Fail the running dumps whose lease ended; returns them.
    async fn fail_expired(&self) -> Result<Vec<Dump>> {
        let now = now();
        let mut tx = self.write_tx().await?;
        let sql = db::select_dumps(
            "WHERE d.status = 'pending' AND (d.lease_until IS NULL OR d.lease_until < $1) \
             ORDER BY d.id",
        );
        let candidates: Vec<Dump> =
            on!(&mut tx, e => sqlx::query_as(&sql).bind(now).fetch_all(e).await)?;
        if candidates.is_empty() {
            tx.rollback().await?;
            return Ok(candidates);
        }
        let sql = "UPDATE dumps SET status = 'failed', processed_at = $1, error = $2, \
                   logs = logs || $3, lease_owner = NULL, lease_until = NULL \
                   WHERE status = 'pending' AND (lease_until IS NULL OR lease_until < $1) \
                   RETURNING id";
        let failed: Vec<i64> = on!(&mut tx, e => sqlx::query_scalar(sql)
            .bind(now)
            .bind(LEASE_EXPIRED)
            .bind(format!("{LEASE_EXPIRED}\n"))
            .fetch_all(e)
            .await)?;
        tx.commit().await?;
        for id in &failed {
            tracing::warn!(dump = %id, "dump failed: {LEASE_EXPIRED}");
        }
        Ok(candidates
            .into_iter()
            .filter(|d| failed.contains(&d.id.get()))
            .collect())
    }
}

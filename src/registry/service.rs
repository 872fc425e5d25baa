//! The registry's rules (DESIGN §3), over the SQL of `db`. The schema enforces
//! what SQL can (CHECK, triggers, partial unique index); this layer enforces
//! all of them and keeps the order of file and database operations crash-safe.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use super::db;
use super::now;
use super::pool::{Pool, Tx, affected, on};
use super::records::{Action, Dump, DumpFilter, Outcome};
use super::types::{ApiKeyId, Checksum, DumpId, OptionSet, UserId};
use crate::Config;
use crate::error::{Error, Result};
use crate::store::{ArchiveStore, Stored};

/// Who does something, for `created_by` and the action history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Actor {
    User(UserId),
    ApiKey(ApiKeyId),
    /// The command line or the service itself.
    System,
}

impl Actor {
    pub(super) fn user_id(self) -> Option<UserId> {
        match self {
            Actor::User(id) => Some(id),
            _ => None,
        }
    }
    pub(super) fn key_id(self) -> Option<ApiKeyId> {
        match self {
            Actor::ApiKey(id) => Some(id),
            _ => None,
        }
    }
}

/// Message of dumps a dead process left unfinished.
pub const INTERRUPTED: &str =
    "interrupted: the process running this dump stopped before it finished";

/// Message of dumps whose instance stopped renewing their lease: another
/// instance ended them.
pub const LEASE_EXPIRED: &str =
    "interrupted: the instance running this dump stopped (its lease expired)";

/// Message of dumps deprecated while queued or running: their job is
/// cancelled, or its result discarded.
pub const DEPRECATED_UNFINISHED: &str = "deprecated before it was processed";

/// Handle on the registry; cheap to clone.
#[derive(Clone)]
pub struct Registry {
    pub(super) pool: Pool,
    dump_dir: Arc<PathBuf>,
    /// Where the archives are: `dump_dir`, or an S3 bucket.
    store: ArchiveStore,
    /// `[dump] filename`, to recognise the archives of interrupted jobs.
    pub(super) filename_pattern: Arc<String>,
    pub(super) auto_purge: bool,
    /// This process's name in job leases, random at each start.
    pub(super) instance: Arc<str>,
    /// How long a job lease lasts without renewal.
    pub(super) lease: Duration,
    /// Wakes the job worker when a dump is created.
    wake: Arc<Notify>,
    /// Webhook of `[notify]`.
    notifier: crate::notify::Notifier,
}

impl Registry {
    /// Open (creating it if needed) the registry database of `config` and migrate it.
    pub async fn open(config: &Config) -> Result<Registry> {
        let pool = Pool::open(&config.registry_location()?).await?;
        Ok(Registry {
            pool,
            dump_dir: Arc::new(config.dump.path.clone()),
            store: ArchiveStore::open(&config.dump.path, &config.dump.s3_env)?,
            filename_pattern: Arc::new(config.dump.filename.clone()),
            auto_purge: config.dump.auto_purge,
            instance: crate::users::random_token(9).into(),
            lease: Duration::from_secs(config.dump.lease_seconds),
            wake: Arc::new(Notify::new()),
            notifier: crate::notify::Notifier::new(&config.notify),
        })
    }

    /// The database answers.
    pub async fn ping(&self) -> Result<()> {
        on!(&self.pool, e => affected(sqlx::query("SELECT 1").execute(e).await))?;
        Ok(())
    }

    /// The SQLite database itself, for tests that break it on purpose.
    /// Panics on a PostgreSQL registry (see [`Registry::execute_sql`]).
    #[doc(hidden)]
    pub fn pool(&self) -> &sqlx::SqlitePool {
        match &self.pool {
            Pool::Sqlite(p) => p,
            Pool::Postgres(_) => panic!("pool() is the SQLite pool; this registry is PostgreSQL"),
        }
    }

    /// Run raw SQL on either backend, for tests that check the schema's
    /// rules; returns the rows it changed.
    #[doc(hidden)]
    pub async fn execute_sql(&self, sql: &str) -> Result<u64> {
        let done = on!(&self.pool, e => affected(sqlx::query(sql).execute(e).await))?;
        Ok(done)
    }

    /// Close the connections (tests that stop a registry half-way).
    #[doc(hidden)]
    pub async fn close(&self) {
        self.pool.close().await
    }

    pub fn dump_dir(&self) -> &Path {
        &self.dump_dir
    }

    /// The store of the archives.
    pub fn store(&self) -> &ArchiveStore {
        &self.store
    }

    pub(crate) fn wake(&self) -> &Notify {
        &self.wake
    }

    pub fn notifier(&self) -> &crate::notify::Notifier {
        &self.notifier
    }

    /// A write transaction that takes the write lock at once, so two of them
    /// never deadlock upgrading a read lock (SQLite would answer BUSY).
    /// On PostgreSQL, a transaction-scoped advisory lock does the same.
    pub(super) async fn write_tx(&self) -> Result<Tx> {
        self.pool.write_tx().await
    }

    /// Where the archive of a record lies in a local store, if its name is
    /// a plain file name (`None` in an object store).
    pub fn archive_path(&self, filename: &str) -> Option<PathBuf> {
        self.store.local_path(filename)
    }

    // ------------------------------------------------------------ dumps

    /// Record a new dump; the worker picks it up (rule 1 is in the type).
    pub async fn create_dump(&self, set: OptionSet, actor: Actor) -> Result<DumpId> {
        let mut tx = self.write_tx().await?;
        let id = db::insert_dump(&mut tx, set, actor.user_id(), &now()).await?;
        db::insert_action(
            &mut tx,
            actor.user_id(),
            actor.key_id(),
            "created",
            Some(id),
            set.label(),
            &now(),
        )
        .await?;
        tx.commit().await?;
        self.wake.notify_one();
        Ok(id)
    }

    /// Record a dump that the caller runs itself (`dump --save`): created and
    /// claimed in one transaction, so a running server's worker never takes it.
    pub async fn create_claimed_dump(&self, set: OptionSet, actor: Actor) -> Result<DumpId> {
        let mut tx = self.write_tx().await?;
        let id = db::insert_dump(&mut tx, set, actor.user_id(), &now()).await?;
        self.claim(&mut tx, id).await?;
        db::insert_action(
            &mut tx,
            actor.user_id(),
            actor.key_id(),
            "created",
            Some(id),
            set.label(),
            &now(),
        )
        .await?;
        tx.commit().await?;
        Ok(id)
    }

    pub async fn dump(&self, id: DumpId) -> Result<Option<Dump>> {
        Ok(db::get_dump(&self.pool, id).await?)
    }

    pub async fn logs(&self, id: DumpId) -> Result<Option<String>> {
        Ok(db::dump_logs(&self.pool, id).await?)
    }

    pub async fn list(
        &self,
        filter: &DumpFilter,
        limit: i64,
        offset: i64,
    ) -> Result<(Vec<Dump>, i64)> {
        let dumps = db::list_dumps(&self.pool, filter, limit, offset).await?;
        let total = db::count_dumps(&self.pool, filter).await?;
        Ok((dumps, total))
    }

    /// Page `page` (from 1) of `per_page` dumps, newest first, with the total
    /// and the page shown: a page past the last one shows the last one.
    pub async fn list_page(
        &self,
        filter: &DumpFilter,
        per_page: i64,
        page: u64,
    ) -> Result<(Vec<Dump>, i64, i64)> {
        let per_page = per_page.max(1);
        let total = db::count_dumps(&self.pool, filter).await?;
        let pages = ((total + per_page - 1) / per_page).max(1);
        let page = i64::try_from(page).unwrap_or(i64::MAX).clamp(1, pages);
        let dumps = db::list_dumps(&self.pool, filter, per_page, (page - 1) * per_page).await?;
        Ok((dumps, total, page))
    }

    pub async fn available(&self, set: OptionSet) -> Result<Option<Dump>> {
        Ok(db::available_dump(&self.pool, set).await?)
    }

    /// Rule 6: the archive of an available dump, if it exists.
    pub async fn download_target(&self, id: DumpId) -> Result<Option<(Dump, Stored)>> {
        let Some(dump) = self.dump(id).await? else {
            return Ok(None);
        };
        self.target_of(dump).await
    }

    /// The archive of the available dump of `set`, if it exists.
    pub async fn latest_target(&self, set: OptionSet) -> Result<Option<(Dump, Stored)>> {
        let Some(dump) = self.available(set).await? else {
            return Ok(None);
        };
        self.target_of(dump).await
    }

    async fn target_of(&self, dump: Dump) -> Result<Option<(Dump, Stored)>> {
        if !dump.is_available() || dump.purged_at.is_some() {
            return Ok(None);
        }
        let Some(name) = dump.filename.as_deref() else {
            return Ok(None);
        };
        Ok(self.store.stat(name).await?.map(|stored| (dump, stored)))
    }

    /// Rule 2: the processed dump becomes the available one of its set and
    /// every older dump of the set is deprecated, in one transaction; if a
    /// newer dump of the set was processed first, this one is deprecated at once.
    /// Then rule 5: purge, after the commit.
    ///
    /// A dump deprecated while it ran is not processed: it fails with
    /// [`DEPRECATED_UNFINISHED`] and the available dump of its set stays.
    /// False when the outcome was not recorded: the caller deletes its file.
    pub async fn mark_processed(&self, id: DumpId, outcome: &Outcome<'_>) -> Result<bool> {
        let mut tx = self.write_tx().await?;
        let Some(dump) = db::get_dump(&mut tx, id).await? else {
            return Ok(false);
        };
        if dump.deprecated {
            db::set_failed(&mut tx, id, DEPRECATED_UNFINISHED, outcome.logs, &now()).await?;
            tx.commit().await?;
            return Ok(false);
        }
        let set = dump.option_set();
        let superseded = db::newer_processed_exists(&mut tx, set, id).await?;
        if !superseded {
            db::deprecate_older(&mut tx, set, id).await?;
        }
        let done = db::set_processed(&mut tx, id, outcome, superseded, &now()).await?;
        if !done {
            return Ok(false);
        }
        tx.commit().await?;
        // The dump is processed whatever the purge does: an error here must
        // not read as "not recorded" (its caller would delete the archive).
        // A purge left unfinished is finished by the next one.
        if self.auto_purge
            && let Err(e) = self.purge().await
        {
            tracing::warn!(dump = %id, "purging replaced dumps: {}", crate::error::error_line(&e));
        }
        Ok(true)
    }

    /// Rule 7: a failed dump keeps its record, logs and error; nothing else changes.
    pub async fn mark_failed(&self, id: DumpId, error: &str, logs: &str) -> Result<bool> {
        let mut tx = self.write_tx().await?;
        let done = db::set_failed(&mut tx, id, error, logs, &now()).await?;
        tx.commit().await?;
        Ok(done)
    }

    /// Rule 3 (deprecation only goes one way) and rule 5 (purge after it).
    /// A queued dump deprecated here fails at once, so no job ever takes it;
    /// a running one is stopped by its job, which sees the flag.
    /// Returns how many dumps changed.
    pub async fn deprecate(&self, ids: &[DumpId], actor: Actor) -> Result<usize> {
        let mut tx = self.write_tx().await?;
        let mut changed = 0;
        for &id in ids {
            if db::deprecate(&mut tx, id).await? {
                db::fail_queued(&mut tx, id, DEPRECATED_UNFINISHED, &now()).await?;
                changed += 1;
                db::insert_action(
                    &mut tx,
                    actor.user_id(),
                    actor.key_id(),
                    "deprecated",
                    Some(id),
                    "",
                    &now(),
                )
                .await?;
            }
        }
        tx.commit().await?;
        if self.auto_purge && changed > 0 {
            self.purge().await?;
        }
        Ok(changed)
    }

    /// Hard delete of finished dumps: the file first, then the record, so a
    /// crash in between leaves a record without file (404) and never an
    /// untracked archive. Dumps still running are refused.
    pub async fn delete(&self, ids: &[DumpId], actor: Actor) -> Result<usize> {
        let mut deleted = 0;
        for &id in ids {
            let Some(dump) = self.dump(id).await? else {
                continue;
            };
            if dump.status.in_flight() {
                return Err(Error::Usage(format!(
                    "dump {id} is still running and cannot be deleted"
                )));
            }
            if let Some(name) = dump.filename.as_deref() {
                self.store.delete(name).await?;
            }
            let mut tx = self.write_tx().await?;
            if db::delete_dump(&mut tx, id).await? {
                let detail = dump.filename.as_deref().unwrap_or_default();
                db::insert_action(
                    &mut tx,
                    actor.user_id(),
                    actor.key_id(),
                    "deleted",
                    Some(id),
                    detail,
                    &now(),
                )
                .await?;
                deleted += 1;
            }
            tx.commit().await?;
        }
        Ok(deleted)
    }

    /// Rule 5: delete the files of deprecated dumps; the records stay with
    /// `purged_at`. The file goes first, so an interrupted purge is finished
    /// by the next one. An open download keeps reading the unlinked inode.
    pub async fn purge(&self) -> Result<usize> {
        let candidates = db::purge_candidates(&self.pool).await?;
        let mut purged = 0;
        for (id, filename) in candidates {
            self.store.delete(&filename).await?;
            db::set_purged(&self.pool, id, &now()).await?;
            purged += 1;
        }
        Ok(purged)
    }

    /// A download began: history only.
    pub async fn record_download(&self, id: DumpId, actor: Actor) -> Result<()> {
        db::insert_action(
            &self.pool,
            actor.user_id(),
            actor.key_id(),
            "downloaded",
            Some(id),
            "",
            &now(),
        )
        .await?;
        Ok(())
    }

    pub async fn recent_actions(&self, limit: i64) -> Result<Vec<Action>> {
        Ok(db::recent_actions(&self.pool, limit).await?)
    }
}

/// What `recover` did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RecoveryReport {
    pub failed: usize,
    pub temp_files: usize,
    /// Finished archives of interrupted dumps, removed.
    pub unrecorded: usize,
    pub purged: usize,
}

/// Parse a user-given checksum (the CLI's `dump --save` result, the API header).
pub fn checksum(s: &str) -> Result<Checksum> {
    s.parse().map_err(|m: String| Error::Archive(m))
}

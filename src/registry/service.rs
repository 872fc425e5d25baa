//! The registry's rules (DESIGN §3), over the SQL of `db`. The schema enforces
//! what SQL can (CHECK, triggers, partial unique index); this layer enforces
//! all of them and keeps the order of file and database operations crash-safe.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use tokio::sync::Notify;

use super::db::{self, Dump, DumpFilter, Outcome};
use super::types::{Checksum, DumpId, OptionSet, Password, Username};
use super::{MIGRATOR, now};
use crate::Config;
use crate::error::{Error, Result};

/// Who does something, for `created_by` and the action history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Actor {
    User(i64),
    ApiKey(i64),
    /// The command line or the service itself.
    System,
}

impl Actor {
    fn user_id(self) -> Option<i64> {
        match self {
            Actor::User(id) => Some(id),
            _ => None,
        }
    }
    fn key_id(self) -> Option<i64> {
        match self {
            Actor::ApiKey(id) => Some(id),
            _ => None,
        }
    }
}

/// Message of dumps a dead process left unfinished.
pub const INTERRUPTED: &str =
    "interrupted: the process running this dump stopped before it finished";

/// Handle on the registry; cheap to clone.
#[derive(Clone)]
pub struct Registry {
    pool: SqlitePool,
    dump_dir: Arc<PathBuf>,
    /// `[dump] filename`, to recognise the archives of interrupted jobs.
    filename_pattern: Arc<String>,
    auto_purge: bool,
    /// Wakes the job worker when a dump is created.
    wake: Arc<Notify>,
    /// Webhook of `[notify]`.
    notifier: crate::notify::Notifier,
}

impl Registry {
    /// Open (creating it if needed) the registry database of `config` and migrate it.
    pub async fn open(config: &Config) -> Result<Registry> {
        let path = config.registry_database()?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| Error::io("create directory", dir, e))?;
        }
        let options = SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(30))
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(options)
            .await?;
        MIGRATOR.run(&pool).await?;
        Ok(Registry {
            pool,
            dump_dir: Arc::new(config.dump.path.clone()),
            filename_pattern: Arc::new(config.dump.filename.clone()),
            auto_purge: config.dump.auto_purge,
            wake: Arc::new(Notify::new()),
            notifier: crate::notify::Notifier::new(&config.notify),
        })
    }

    /// The database answers.
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    pub fn dump_dir(&self) -> &Path {
        &self.dump_dir
    }

    pub(crate) fn wake(&self) -> &Notify {
        &self.wake
    }

    pub fn notifier(&self) -> &crate::notify::Notifier {
        &self.notifier
    }

    /// A write transaction that takes the write lock at once, so two of them
    /// never deadlock upgrading a read lock (SQLite would answer BUSY).
    async fn write_tx(&self) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>> {
        Ok(self.pool.begin_with("BEGIN IMMEDIATE").await?)
    }

    /// Where the archive of a record lies, if its name is a plain file name.
    pub fn archive_path(&self, filename: &str) -> Option<PathBuf> {
        let plain = !filename.is_empty()
            && !filename.starts_with('.')
            && !filename.contains(['/', '\\', '\0']);
        plain.then(|| self.dump_dir.join(filename))
    }

    // ------------------------------------------------------------ dumps

    /// Record a new dump; the worker picks it up (rule 1 is in the type).
    pub async fn create_dump(&self, set: OptionSet, actor: Actor) -> Result<DumpId> {
        let mut tx = self.write_tx().await?;
        let id = db::insert_dump(&mut *tx, set, actor.user_id(), &now()).await?;
        db::insert_action(
            &mut *tx,
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
        let id = db::insert_dump(&mut *tx, set, actor.user_id(), &now()).await?;
        db::claim(&mut *tx, id).await?;
        db::insert_action(
            &mut *tx,
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

    pub async fn available(&self, set: OptionSet) -> Result<Option<Dump>> {
        Ok(db::available_dump(&self.pool, set).await?)
    }

    /// Rule 6: the file of an available dump, if it exists.
    pub async fn download_target(&self, id: DumpId) -> Result<Option<(Dump, PathBuf)>> {
        let Some(dump) = self.dump(id).await? else {
            return Ok(None);
        };
        Ok(self.target_of(dump))
    }

    /// The file of the available dump of `set`, if it exists.
    pub async fn latest_target(&self, set: OptionSet) -> Result<Option<(Dump, PathBuf)>> {
        let Some(dump) = self.available(set).await? else {
            return Ok(None);
        };
        Ok(self.target_of(dump))
    }

    fn target_of(&self, dump: Dump) -> Option<(Dump, PathBuf)> {
        if !dump.is_available() || dump.purged_at.is_some() {
            return None;
        }
        let path = self.archive_path(dump.filename.as_deref()?)?;
        path.is_file().then_some((dump, path))
    }

    /// The worker's claim: oldest `created` dump becomes `pending`.
    pub async fn claim_next(&self) -> Result<Option<DumpId>> {
        let mut tx = self.write_tx().await?;
        let id = db::claim_next(&mut *tx).await?;
        tx.commit().await?;
        Ok(id)
    }

    /// Claim one given dump (the CLI's `dump --save` runs its own record).
    pub async fn claim(&self, id: DumpId) -> Result<bool> {
        let mut tx = self.write_tx().await?;
        let claimed = db::claim(&mut *tx, id).await?;
        tx.commit().await?;
        Ok(claimed)
    }

    pub async fn record_progress(
        &self,
        id: DumpId,
        bytes: u64,
        files: u64,
        new_logs: &str,
    ) -> Result<()> {
        Ok(db::record_progress(&self.pool, id, bytes, files, new_logs).await?)
    }

    /// Rule 2: the processed dump becomes the available one of its set and
    /// every older dump of the set is deprecated, in one transaction; if a
    /// newer dump of the set was processed first, this one is deprecated at once.
    /// Then rule 5: purge, after the commit.
    pub async fn mark_processed(&self, id: DumpId, outcome: &Outcome<'_>) -> Result<bool> {
        let mut tx = self.write_tx().await?;
        let Some(dump) = db::get_dump(&mut *tx, id).await? else {
            return Ok(false);
        };
        let set = dump.option_set();
        let superseded = db::newer_processed_exists(&mut *tx, set, id).await?;
        if !superseded {
            db::deprecate_older(&mut *tx, set, id).await?;
        }
        let done = db::set_processed(&mut *tx, id, outcome, superseded, &now()).await?;
        if !done {
            return Ok(false);
        }
        tx.commit().await?;
        if self.auto_purge {
            self.purge().await?;
        }
        Ok(true)
    }

    /// Rule 7: a failed dump keeps its record, logs and error; nothing else changes.
    pub async fn mark_failed(&self, id: DumpId, error: &str, logs: &str) -> Result<bool> {
        let mut tx = self.write_tx().await?;
        let done = db::set_failed(&mut *tx, id, error, logs, &now()).await?;
        tx.commit().await?;
        Ok(done)
    }

    /// Rule 3 (deprecation only goes one way) and rule 5 (purge after it).
    /// Returns how many dumps changed.
    pub async fn deprecate(&self, ids: &[DumpId], actor: Actor) -> Result<usize> {
        let mut tx = self.write_tx().await?;
        let mut changed = 0;
        for &id in ids {
            if db::deprecate(&mut *tx, id).await? {
                changed += 1;
                db::insert_action(
                    &mut *tx,
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
            if let Some(path) = dump.filename.as_deref().and_then(|f| self.archive_path(f)) {
                remove_file_if_exists(&path)?;
            }
            let mut tx = self.write_tx().await?;
            if db::delete_dump(&mut *tx, id).await? {
                let detail = dump.filename.as_deref().unwrap_or_default();
                db::insert_action(
                    &mut *tx,
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
            if let Some(path) = self.archive_path(&filename) {
                remove_file_if_exists(&path)?;
            }
            db::set_purged(&self.pool, id, &now()).await?;
            purged += 1;
        }
        Ok(purged)
    }

    /// Rule 8, at start-up: dumps left in flight become failed, orphan
    /// temporary files go, pending purges finish.
    pub async fn recover(&self) -> Result<RecoveryReport> {
        let mut tx = self.write_tx().await?;
        let interrupted = db::in_flight_dumps(&mut *tx).await?;
        let failed = db::fail_in_flight(&mut *tx, INTERRUPTED, &now()).await?;
        tx.commit().await?;
        let temp_files = remove_orphan_temp_files(&self.dump_dir)?;
        // An archive renamed into place just before the process died, whose
        // dump was never recorded as processed, would stay untracked forever.
        let recorded: HashSet<String> = db::recorded_filenames(&self.pool)
            .await?
            .into_iter()
            .collect();
        let unrecorded = remove_unrecorded_archives(
            &self.dump_dir,
            &self.filename_pattern,
            &interrupted,
            &recorded,
        )?;
        let purged = if self.auto_purge {
            self.purge().await?
        } else {
            0
        };
        Ok(RecoveryReport {
            failed: failed.len(),
            temp_files,
            unrecorded,
            purged,
        })
    }

    pub async fn stored_bytes(&self) -> Result<u64> {
        Ok(db::stored_bytes(&self.pool).await?.max(0) as u64)
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

    pub async fn recent_actions(&self, limit: i64) -> Result<Vec<db::Action>> {
        Ok(db::recent_actions(&self.pool, limit).await?)
    }

    // ------------------------------------------------------------ users

    pub async fn create_user(
        &self,
        username: &Username,
        password: &Password,
        superuser: bool,
    ) -> Result<i64> {
        let hash = hash_blocking(password.clone()).await?;
        match db::insert_user(&self.pool, username.as_str(), &hash, superuser, &now()).await {
            Ok(id) => Ok(id),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                Err(Error::Usage(format!("user {username} already exists")))
            }
            Err(e) => Err(e.into()),
        }
    }

    pub async fn user(&self, username: &str) -> Result<Option<db::User>> {
        Ok(db::user_by_name(&self.pool, username).await?)
    }

    pub async fn user_by_id(&self, id: i64) -> Result<Option<db::User>> {
        Ok(db::user_by_id(&self.pool, id).await?)
    }

    pub async fn users(&self) -> Result<Vec<db::User>> {
        Ok(db::list_users(&self.pool).await?)
    }

    pub async fn set_password(&self, username: &str, password: &Password) -> Result<()> {
        let user = self.require_user(username).await?;
        let hash = hash_blocking(password.clone()).await?;
        db::set_password_hash(&self.pool, user.id, &hash).await?;
        Ok(())
    }

    pub async fn set_user_flags(
        &self,
        id: i64,
        active: bool,
        staff: bool,
        superuser: bool,
    ) -> Result<bool> {
        Ok(db::set_user_flags(&self.pool, id, active, staff, superuser).await?)
    }

    pub async fn require_user(&self, username: &str) -> Result<db::User> {
        self.user(username)
            .await?
            .ok_or_else(|| Error::Usage(format!("no user named {username:?}")))
    }

    pub async fn touch_login(&self, id: i64) -> Result<()> {
        Ok(db::touch_login(&self.pool, id, &now()).await?)
    }

    /// Check a password. Unknown users are checked against a dummy hash, so
    /// the answer takes as long whether the user exists or not.
    pub async fn authenticate(
        &self,
        username: &str,
        password: &Password,
    ) -> Result<Option<db::User>> {
        let user = self.user(username).await?;
        let hash = user.as_ref().map(|u| u.password_hash.clone());
        let ok = verify_blocking(hash, password.clone()).await?;
        Ok(user.filter(|_| ok))
    }

    // ------------------------------------------------------------ API keys

    /// A new key: returns its id and the key itself, which is never stored.
    pub async fn create_api_key(&self, name: &str, actor: Actor) -> Result<(i64, String)> {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 200 {
            return Err(Error::Usage("a key name is 1 to 200 characters".into()));
        }
        let key = crate::users::generate_api_key();
        let prefix: String = key.chars().take(12).collect();
        let id = db::insert_api_key(
            &self.pool,
            name,
            &crate::users::hash_api_key(&key),
            &prefix,
            actor.user_id(),
            &now(),
        )
        .await?;
        Ok((id, key))
    }

    pub async fn api_keys(&self) -> Result<Vec<db::ApiKey>> {
        Ok(db::list_api_keys(&self.pool).await?)
    }

    pub async fn deprecate_api_key(&self, id: i64) -> Result<bool> {
        Ok(db::deprecate_api_key(&self.pool, id).await?)
    }

    /// The active key matching `key`, if any.
    pub async fn authenticate_key(&self, key: &str) -> Result<Option<db::ApiKey>> {
        if key.is_empty() || key.len() > 200 {
            return Ok(None);
        }
        // Keys are random 256-bit secrets: a fast hash looked up by equality is
        // enough (no guessing to slow down, no timing to hide).
        let found = db::api_key_by_hash(&self.pool, &crate::users::hash_api_key(key)).await?;
        let found = found.filter(|k| !k.deprecated);
        if let Some(k) = &found {
            db::touch_api_key(&self.pool, k.id, &now()).await?;
        }
        Ok(found)
    }

    // ------------------------------------------------------------ login throttling

    /// When `keys` (`user:<name>`, `ip:<addr>`) may try again, if any is locked now.
    pub async fn login_locked(&self, keys: &[String]) -> Result<bool> {
        let now = now();
        for key in keys {
            if let Some((_, Some(until))) = db::locked_until(&self.pool, key).await?
                && until > now
            {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Count a failed login for each key and lock the ones past their limit,
    /// for a delay that doubles with each further failure.
    pub async fn login_failed(&self, keys: &[(String, i64)]) -> Result<()> {
        let mut tx = self.write_tx().await?;
        for (key, limit) in keys {
            let failures = db::add_failure(&mut *tx, key).await?;
            if failures >= *limit {
                let exp = (failures - limit).min(10) as u32;
                let secs = (30_i64 << exp).min(3600);
                let until = time::OffsetDateTime::now_utc() + time::Duration::seconds(secs);
                db::set_locked_until(&mut *tx, key, &super::format_time(until)).await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn login_succeeded(&self, key: &str) -> Result<()> {
        Ok(db::clear_failures(&self.pool, key).await?)
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

fn remove_file_if_exists(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("remove", path, e)),
    }
}

/// True for what the engine writes before its final rename (see `dump::TEMP_PREFIX`).
pub fn is_temp_name(name: &str) -> bool {
    name.starts_with(crate::dump::TEMP_PREFIX)
}

/// Temporary files and directories can only be left by a dead process once
/// no job runs: remove them from the dump directory.
fn remove_orphan_temp_files(dir: &Path) -> Result<usize> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(Error::io("read directory", dir, e)),
    };
    let mut removed = 0;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("read directory", dir, e))?;
        if !entry.file_name().to_str().is_some_and(is_temp_name) {
            continue;
        }
        let path = entry.path();
        let is_dir = entry.file_type().map(|t| t.is_dir()).unwrap_or(false);
        if is_dir {
            std::fs::remove_dir_all(&path).map_err(|e| Error::io("remove", &path, e))?;
        } else {
            remove_file_if_exists(&path)?;
        }
        removed += 1;
    }
    Ok(removed)
}

/// Whether `name` is the archive the job of `dump` writes: the configured
/// pattern with the dump's id (see `jobs::unique_pattern`) and a date.
fn is_archive_of(pattern: &str, dump: &Dump, name: &str) -> bool {
    let features = crate::archive::filename::features(dump.with_data, dump.with_storages);
    let expected = super::jobs::unique_pattern(pattern, dump.id).replace("{features}", features);
    match expected.split("{date}").collect::<Vec<_>>().as_slice() {
        [whole] => name == *whole,
        [prefix, suffix] => name
            .strip_prefix(prefix)
            .and_then(|rest| rest.strip_suffix(suffix))
            .is_some_and(is_date_stamp),
        _ => false,
    }
}

/// `2025-02-03T175309`.
fn is_date_stamp(s: &str) -> bool {
    s.len() == 17
        && s.bytes().enumerate().all(|(i, b)| match i {
            4 | 7 => b == b'-',
            10 => b == b'T',
            _ => b.is_ascii_digit(),
        })
}

fn remove_unrecorded_archives(
    dir: &Path,
    pattern: &str,
    interrupted: &[Dump],
    recorded: &HashSet<String>,
) -> Result<usize> {
    if interrupted.is_empty() {
        return Ok(0);
    }
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(Error::io("read directory", dir, e)),
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            continue;
        };
        if recorded.contains(&name) || !entry.file_type().is_ok_and(|t| t.is_file()) {
            continue;
        }
        // Only a file written after the dump was created can be its archive.
        let modified = entry
            .metadata()
            .ok()
            .and_then(|m| m.modified().ok())
            .map(time::OffsetDateTime::from);
        let owner = interrupted.iter().find(|d| {
            is_archive_of(pattern, d, &name)
                && super::parse_time(&d.created_at)
                    .zip(modified)
                    .is_some_and(|(created, m)| m + time::Duration::seconds(1) >= created)
        });
        if let Some(dump) = owner {
            tracing::warn!(dump = %dump.id, file = %name, "removing the archive of an interrupted dump");
            remove_file_if_exists(&entry.path())?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// Argon2 costs ~30 ms of CPU and 19 MiB: keep it off the async threads and
/// bound how many run at once.
static HASHING: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);

async fn hash_blocking(password: Password) -> Result<String> {
    let _permit = HASHING.acquire().await.map_err(|_| Error::Cancelled)?;
    tokio::task::spawn_blocking(move || crate::users::hash_password(&password))
        .await
        .map_err(|e| Error::Usage(format!("password hashing failed: {e}")))?
}

async fn verify_blocking(hash: Option<String>, password: Password) -> Result<bool> {
    let _permit = HASHING.acquire().await.map_err(|_| Error::Cancelled)?;
    tokio::task::spawn_blocking(move || crate::users::verify_password(hash.as_deref(), &password))
        .await
        .map_err(|e| Error::Usage(format!("password check failed: {e}")))
}

/// Parse a user-given checksum (the CLI's `dump --save` result, the API header).
pub fn checksum(s: &str) -> Result<Checksum> {
    s.parse().map_err(|m: String| Error::Archive(m))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::DumpStatus;

    fn dump(id: i64, with_data: bool, with_storages: bool) -> Dump {
        Dump {
            id: id.into(),
            created_at: now(),
            processed_at: None,
            status: DumpStatus::Pending,
            with_data,
            with_storages,
            deprecated: false,
            filename: None,
            size: None,
            checksum: None,
            purged_at: None,
            error: None,
            progress_bytes: 0,
            progress_files: 0,
            created_by: None,
            creator: None,
            scheduled: false,
            verified_at: None,
            verify_error: None,
        }
    }

    #[test]
    fn archives_of_a_dump_are_recognised_exactly() {
        let pattern = crate::config::DEFAULT_FILENAME;
        let d = dump(7, true, false);
        assert!(is_archive_of(
            pattern,
            &d,
            "diskette_data_2025-02-03T175309_7.tar.gz"
        ));
        for other in [
            "diskette_data_2025-02-03T175309_17.tar.gz",
            "diskette_data_storages_2025-02-03T175309_7.tar.gz",
            "diskette_data_2025-02-03T175309.tar.gz",
            "diskette_data_2025-02-03T1753_7.tar.gz",
            "diskette_data_x025-02-03T175309_7.tar.gz",
        ] {
            assert!(!is_archive_of(pattern, &d, other), "{other}");
        }
        assert!(is_archive_of("fixed.tar.gz", &d, "fixed_7.tar.gz"));
    }

    #[test]
    fn temp_names_are_the_engines() {
        assert!(is_temp_name(".diskette-tmp-abc.tar.gz"));
        assert!(!is_temp_name("diskette_data.tar.gz"));
        assert!(!is_temp_name(".hidden"));
    }
}

//! Every SQL statement of the crate. Functions are generic over the executor
//! so they run on the pool or inside a transaction; the rules that need more
//! than one statement live in `service` and `accounts`. Timestamps are bound
//! in their stored form (`super::stamp`).

use sqlx::SqliteExecutor;
use time::OffsetDateTime;

use super::records::{Action, ApiKey, Dump, DumpFilter, Outcome, User};
use super::types::{ApiKeyId, DumpId, DumpStatus, OptionSet, UserId};

const DUMP_COLUMNS: &str = "d.id, d.created_at, d.processed_at, d.status, d.with_data, d.with_storages, \
     d.deprecated, d.filename, d.size, d.checksum, d.purged_at, d.error, d.progress_bytes, \
     d.progress_files, d.created_by, u.username AS creator, \
     EXISTS (SELECT 1 FROM schedule_runs r WHERE r.dump_id = d.id) AS scheduled, \
     v.at AS verified_at, v.error AS verify_error";

fn select_dumps(filter: &str) -> String {
    // The latest verification of each dump is its state.
    format!(
        "SELECT {DUMP_COLUMNS} FROM dumps d LEFT JOIN users u ON u.id = d.created_by \
         LEFT JOIN verifications v ON v.id = \
             (SELECT MAX(id) FROM verifications WHERE dump_id = d.id) {filter}"
    )
}

pub async fn insert_dump<'c>(
    ex: impl SqliteExecutor<'c>,
    set: OptionSet,
    created_by: Option<UserId>,
    now: &str,
) -> sqlx::Result<DumpId> {
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO dumps (created_at, status, with_data, with_storages, created_by) \
         VALUES (?, 'created', ?, ?, ?) RETURNING id",
    )
    .bind(now)
    .bind(set.with_data())
    .bind(set.with_storages())
    .bind(created_by)
    .fetch_one(ex)
    .await?;
    Ok(DumpId::from(id))
}

pub async fn get_dump<'c>(ex: impl SqliteExecutor<'c>, id: DumpId) -> sqlx::Result<Option<Dump>> {
    sqlx::query_as(&select_dumps("WHERE d.id = ?"))
        .bind(id.get())
        .fetch_optional(ex)
        .await
}

pub async fn dump_logs<'c>(
    ex: impl SqliteExecutor<'c>,
    id: DumpId,
) -> sqlx::Result<Option<String>> {
    sqlx::query_scalar("SELECT logs FROM dumps WHERE id = ?")
        .bind(id.get())
        .fetch_optional(ex)
        .await
}

fn filter_clause(f: &DumpFilter) -> (String, Vec<i64>, Option<&'static str>) {
    let mut clauses = Vec::new();
    let mut ints = Vec::new();
    match f.available {
        Some(true) => clauses.push("(d.status = 'processed' AND d.deprecated = 0)".to_string()),
        Some(false) => clauses.push("d.deprecated = 1".to_string()),
        None => {}
    }
    if let Some(set) = f.option_set {
        clauses.push("d.with_data = ? AND d.with_storages = ?".to_string());
        ints.push(i64::from(set.with_data()));
        ints.push(i64::from(set.with_storages()));
    }
    let status = f.status.map(DumpStatus::as_str);
    if status.is_some() {
        clauses.push("d.status = ?".to_string());
    }
    let clause = if clauses.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", clauses.join(" AND "))
    };
    (clause, ints, status)
}

/// One page of dumps, newest first.
pub async fn list_dumps<'c>(
    ex: impl SqliteExecutor<'c>,
    filter: &DumpFilter,
    limit: i64,
    offset: i64,
) -> sqlx::Result<Vec<Dump>> {
    let (clause, ints, status) = filter_clause(filter);
    let sql = select_dumps(&format!("{clause} ORDER BY d.id DESC LIMIT ? OFFSET ?"));
    let mut q = sqlx::query_as(&sql);
    for i in ints {
        q = q.bind(i);
    }
    if let Some(s) = status {
        q = q.bind(s);
    }
    q.bind(limit).bind(offset).fetch_all(ex).await
}

pub async fn count_dumps<'c>(
    ex: impl SqliteExecutor<'c>,
    filter: &DumpFilter,
) -> sqlx::Result<i64> {
    let (clause, ints, status) = filter_clause(filter);
    let sql = format!("SELECT COUNT(*) FROM dumps d {clause}");
    let mut q = sqlx::query_scalar(&sql);
    for i in ints {
        q = q.bind(i);
    }
    if let Some(s) = status {
        q = q.bind(s);
    }
    q.fetch_one(ex).await
}

/// The available dump of an option set, if any.
pub async fn available_dump<'c>(
    ex: impl SqliteExecutor<'c>,
    set: OptionSet,
) -> sqlx::Result<Option<Dump>> {
    sqlx::query_as(&select_dumps(
        "WHERE d.with_data = ? AND d.with_storages = ? AND d.status = 'processed' AND d.deprecated = 0",
    ))
    .bind(set.with_data())
    .bind(set.with_storages())
    .fetch_optional(ex)
    .await
}

/// Move the oldest `created` dump to `pending` and return it.
pub async fn claim_next<'c>(ex: impl SqliteExecutor<'c>) -> sqlx::Result<Option<DumpId>> {
    let id: Option<i64> = sqlx::query_scalar(
        "UPDATE dumps SET status = 'pending' \
         WHERE id = (SELECT id FROM dumps WHERE status = 'created' ORDER BY id LIMIT 1) \
         RETURNING id",
    )
    .fetch_optional(ex)
    .await?;
    Ok(id.map(DumpId::from))
}

/// Move one given `created` dump to `pending`; false if it was not `created`.
pub async fn claim<'c>(ex: impl SqliteExecutor<'c>, id: DumpId) -> sqlx::Result<bool> {
    let done =
        sqlx::query("UPDATE dumps SET status = 'pending' WHERE id = ? AND status = 'created'")
            .bind(id.get())
            .execute(ex)
            .await?;
    Ok(done.rows_affected() == 1)
}

/// Progress and new log lines of a running job; returns whether the dump is
/// deprecated, None when it is not running any more.
pub async fn record_progress<'c>(
    ex: impl SqliteExecutor<'c>,
    id: DumpId,
    bytes: u64,
    files: u64,
    new_logs: &str,
) -> sqlx::Result<Option<bool>> {
    sqlx::query_scalar(
        "UPDATE dumps SET progress_bytes = ?, progress_files = ?, logs = logs || ? \
         WHERE id = ? AND status = 'pending' RETURNING deprecated",
    )
    .bind(bytes as i64)
    .bind(files as i64)
    .bind(new_logs)
    .bind(id.get())
    .fetch_optional(ex)
    .await
}

/// Is there a processed dump of `set` newer than `id`?
pub async fn newer_processed_exists<'c>(
    ex: impl SqliteExecutor<'c>,
    set: OptionSet,
    id: DumpId,
) -> sqlx::Result<bool> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM dumps WHERE with_data = ? AND with_storages = ? \
         AND status = 'processed' AND id > ?)",
    )
    .bind(set.with_data())
    .bind(set.with_storages())
    .bind(id.get())
    .fetch_one(ex)
    .await
}

/// Deprecate every finished dump of `set` older than `id`; returns their ids.
/// Older dumps still in flight are left alone: they are superseded when they
/// finish (a deprecation while in flight means "cancel").
pub async fn deprecate_older<'c>(
    ex: impl SqliteExecutor<'c>,
    set: OptionSet,
    id: DumpId,
) -> sqlx::Result<Vec<i64>> {
    sqlx::query_scalar(
        "UPDATE dumps SET deprecated = 1 WHERE with_data = ? AND with_storages = ? \
         AND id < ? AND deprecated = 0 AND status IN ('processed', 'failed') RETURNING id",
    )
    .bind(set.with_data())
    .bind(set.with_storages())
    .bind(id.get())
    .fetch_all(ex)
    .await
}

pub async fn set_processed<'c>(
    ex: impl SqliteExecutor<'c>,
    id: DumpId,
    outcome: &Outcome<'_>,
    deprecated: bool,
    now: &str,
) -> sqlx::Result<bool> {
    let done = sqlx::query(
        "UPDATE dumps SET status = 'processed', processed_at = ?, filename = ?, size = ?, \
         checksum = ?, progress_bytes = ?, progress_files = ?, logs = logs || ?, deprecated = ? \
         WHERE id = ? AND status = 'pending'",
    )
    .bind(now)
    .bind(outcome.filename)
    .bind(outcome.size as i64)
    .bind(outcome.checksum.as_str())
    .bind(outcome.bytes as i64)
    .bind(outcome.files as i64)
    .bind(outcome.logs)
    .bind(deprecated)
    .bind(id.get())
    .execute(ex)
    .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn set_failed<'c>(
    ex: impl SqliteExecutor<'c>,
    id: DumpId,
    error: &str,
    logs: &str,
    now: &str,
) -> sqlx::Result<bool> {
    let done = sqlx::query(
        "UPDATE dumps SET status = 'failed', processed_at = ?, error = ?, logs = logs || ? \
         WHERE id = ? AND status IN ('created', 'pending')",
    )
    .bind(now)
    .bind(error)
    .bind(logs)
    .bind(id.get())
    .execute(ex)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// A dump no job has claimed yet fails at once; false if it was not queued.
pub async fn fail_queued<'c>(
    ex: impl SqliteExecutor<'c>,
    id: DumpId,
    error: &str,
    now: &str,
) -> sqlx::Result<bool> {
    let done = sqlx::query(
        "UPDATE dumps SET status = 'failed', processed_at = ?, error = ?, logs = logs || ? \
         WHERE id = ? AND status = 'created'",
    )
    .bind(now)
    .bind(error)
    .bind(format!("{error}\n"))
    .bind(id.get())
    .execute(ex)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Dumps a process was writing. Queued (`created`) ones are held by no
/// process: they stay for the worker.
pub async fn running_dumps<'c>(ex: impl SqliteExecutor<'c>) -> sqlx::Result<Vec<Dump>> {
    sqlx::query_as(&select_dumps("WHERE d.status = 'pending' ORDER BY d.id"))
        .fetch_all(ex)
        .await
}

/// Every archive name a record holds.
pub async fn recorded_filenames<'c>(ex: impl SqliteExecutor<'c>) -> sqlx::Result<Vec<String>> {
    sqlx::query_scalar("SELECT filename FROM dumps WHERE filename IS NOT NULL")
        .fetch_all(ex)
        .await
}

/// Dumps a dead process was writing: they become `failed`. Returns their ids.
pub async fn fail_running<'c>(
    ex: impl SqliteExecutor<'c>,
    error: &str,
    now: &str,
) -> sqlx::Result<Vec<i64>> {
    sqlx::query_scalar(
        "UPDATE dumps SET status = 'failed', processed_at = ?, error = ?, \
         logs = logs || ? WHERE status = 'pending' RETURNING id",
    )
    .bind(now)
    .bind(error)
    .bind(format!("{error}\n"))
    .fetch_all(ex)
    .await
}

/// Deprecate the given dumps; returns the ids that changed.
pub async fn deprecate<'c>(ex: impl SqliteExecutor<'c>, id: DumpId) -> sqlx::Result<bool> {
    let done = sqlx::query("UPDATE dumps SET deprecated = 1 WHERE id = ? AND deprecated = 0")
        .bind(id.get())
        .execute(ex)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Deprecated processed dumps whose file has not been deleted yet.
pub async fn purge_candidates<'c>(
    ex: impl SqliteExecutor<'c>,
) -> sqlx::Result<Vec<(DumpId, String)>> {
    sqlx::query_as(
        "SELECT id, filename FROM dumps WHERE status = 'processed' AND deprecated = 1 \
         AND purged_at IS NULL AND filename IS NOT NULL ORDER BY id",
    )
    .fetch_all(ex)
    .await
}

pub async fn set_purged<'c>(
    ex: impl SqliteExecutor<'c>,
    id: DumpId,
    now: &str,
) -> sqlx::Result<()> {
    sqlx::query("UPDATE dumps SET purged_at = ? WHERE id = ? AND purged_at IS NULL")
        .bind(now)
        .bind(id)
        .execute(ex)
        .await?;
    Ok(())
}

pub async fn delete_dump<'c>(ex: impl SqliteExecutor<'c>, id: DumpId) -> sqlx::Result<bool> {
    let done = sqlx::query("DELETE FROM dumps WHERE id = ? AND status IN ('processed', 'failed')")
        .bind(id.get())
        .execute(ex)
        .await?;
    Ok(done.rows_affected() == 1)
}

// ---------------------------------------------------------------- users

const USER_COLUMNS: &str = "id, username, is_staff, is_superuser, is_active, created_at, last_login_at, session_generation";

/// The password hash of `username`, if the user exists.
pub async fn password_hash<'c>(
    ex: impl SqliteExecutor<'c>,
    username: &str,
) -> sqlx::Result<Option<String>> {
    sqlx::query_scalar("SELECT password_hash FROM users WHERE username = ?")
        .bind(username)
        .fetch_optional(ex)
        .await
}

pub async fn insert_user<'c>(
    ex: impl SqliteExecutor<'c>,
    username: &str,
    password_hash: &str,
    is_superuser: bool,
    now: &str,
) -> sqlx::Result<UserId> {
    sqlx::query_scalar(
        "INSERT INTO users (username, password_hash, is_staff, is_superuser, is_active, created_at) \
         VALUES (?, ?, 1, ?, 1, ?) RETURNING id",
    )
    .bind(username)
    .bind(password_hash)
    .bind(is_superuser)
    .bind(now)
    .fetch_one(ex)
    .await
}

pub async fn user_by_name<'c>(
    ex: impl SqliteExecutor<'c>,
    username: &str,
) -> sqlx::Result<Option<User>> {
    sqlx::query_as(&format!(
        "SELECT {USER_COLUMNS} FROM users WHERE username = ?"
    ))
    .bind(username)
    .fetch_optional(ex)
    .await
}

pub async fn user_by_id<'c>(ex: impl SqliteExecutor<'c>, id: UserId) -> sqlx::Result<Option<User>> {
    sqlx::query_as(&format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?"))
        .bind(id)
        .fetch_optional(ex)
        .await
}

pub async fn list_users<'c>(ex: impl SqliteExecutor<'c>) -> sqlx::Result<Vec<User>> {
    sqlx::query_as(&format!(
        "SELECT {USER_COLUMNS} FROM users ORDER BY username"
    ))
    .fetch_all(ex)
    .await
}

/// A new password hash; the sessions of the user end (new generation, returned).
pub async fn set_password_hash<'c>(
    ex: impl SqliteExecutor<'c>,
    id: UserId,
    hash: &str,
) -> sqlx::Result<Option<i64>> {
    sqlx::query_scalar(
        "UPDATE users SET password_hash = ?, session_generation = session_generation + 1 \
         WHERE id = ? RETURNING session_generation",
    )
    .bind(hash)
    .bind(id)
    .fetch_optional(ex)
    .await
}

/// Set the flags; losing `is_active` or `is_staff` ends the user's sessions.
pub async fn set_user_flags<'c>(
    ex: impl SqliteExecutor<'c>,
    id: UserId,
    is_active: bool,
    is_staff: bool,
    is_superuser: bool,
) -> sqlx::Result<bool> {
    let done = sqlx::query(
        "UPDATE users SET session_generation = session_generation \
         + ((is_active = 1 AND ?1 = 0) OR (is_staff = 1 AND ?2 = 0)), \
         is_active = ?1, is_staff = ?2, is_superuser = ?3 WHERE id = ?4",
    )
    .bind(is_active)
    .bind(is_staff)
    .bind(is_superuser)
    .bind(id)
    .execute(ex)
    .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn touch_login<'c>(
    ex: impl SqliteExecutor<'c>,
    id: UserId,
    now: &str,
) -> sqlx::Result<()> {
    sqlx::query("UPDATE users SET last_login_at = ? WHERE id = ?")
        .bind(now)
        .bind(id)
        .execute(ex)
        .await?;
    Ok(())
}

// ---------------------------------------------------------------- API keys

const KEY_COLUMNS: &str =
    "k.id, k.name, k.prefix, k.created_at, k.deprecated, k.last_used_at, u.username AS creator";

pub async fn insert_api_key<'c>(
    ex: impl SqliteExecutor<'c>,
    name: &str,
    key_hash: &str,
    prefix: &str,
    created_by: Option<UserId>,
    now: &str,
) -> sqlx::Result<ApiKeyId> {
    sqlx::query_scalar(
        "INSERT INTO api_keys (name, key_hash, prefix, created_by, created_at) \
         VALUES (?, ?, ?, ?, ?) RETURNING id",
    )
    .bind(name)
    .bind(key_hash)
    .bind(prefix)
    .bind(created_by)
    .bind(now)
    .fetch_one(ex)
    .await
}

pub async fn api_key_by_hash<'c>(
    ex: impl SqliteExecutor<'c>,
    key_hash: &str,
) -> sqlx::Result<Option<ApiKey>> {
    sqlx::query_as(&format!(
        "SELECT {KEY_COLUMNS} FROM api_keys k LEFT JOIN users u ON u.id = k.created_by WHERE k.key_hash = ?"
    ))
    .bind(key_hash)
    .fetch_optional(ex)
    .await
}

pub async fn list_api_keys<'c>(ex: impl SqliteExecutor<'c>) -> sqlx::Result<Vec<ApiKey>> {
    sqlx::query_as(&format!(
        "SELECT {KEY_COLUMNS} FROM api_keys k LEFT JOIN users u ON u.id = k.created_by ORDER BY k.id DESC"
    ))
    .fetch_all(ex)
    .await
}

pub async fn deprecate_api_key<'c>(
    ex: impl SqliteExecutor<'c>,
    id: ApiKeyId,
) -> sqlx::Result<bool> {
    let done = sqlx::query("UPDATE api_keys SET deprecated = 1 WHERE id = ? AND deprecated = 0")
        .bind(id)
        .execute(ex)
        .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn touch_api_key<'c>(
    ex: impl SqliteExecutor<'c>,
    id: ApiKeyId,
    now: &str,
) -> sqlx::Result<()> {
    sqlx::query("UPDATE api_keys SET last_used_at = ? WHERE id = ?")
        .bind(now)
        .bind(id)
        .execute(ex)
        .await?;
    Ok(())
}

// ---------------------------------------------------------------- actions

pub async fn insert_action<'c>(
    ex: impl SqliteExecutor<'c>,
    user_id: Option<UserId>,
    api_key_id: Option<ApiKeyId>,
    verb: &str,
    dump_id: Option<DumpId>,
    detail: &str,
    now: &str,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO actions (at, user_id, api_key_id, verb, dump_id, detail) VALUES (?, ?, ?, ?, ?, ?)",
    )
    .bind(now)
    .bind(user_id)
    .bind(api_key_id)
    .bind(verb)
    .bind(dump_id.map(DumpId::get))
    .bind(detail)
    .execute(ex)
    .await?;
    Ok(())
}

pub async fn recent_actions<'c>(
    ex: impl SqliteExecutor<'c>,
    limit: i64,
) -> sqlx::Result<Vec<Action>> {
    sqlx::query_as(
        "SELECT a.id, a.at, a.verb, a.dump_id, a.detail, u.username, k.name AS key_name, \
         (a.verb = 'created' AND EXISTS (SELECT 1 FROM schedule_runs r WHERE r.dump_id = a.dump_id)) \
         AS scheduled \
         FROM actions a LEFT JOIN users u ON u.id = a.user_id \
         LEFT JOIN api_keys k ON k.id = a.api_key_id ORDER BY a.id DESC LIMIT ?",
    )
    .bind(limit)
    .fetch_all(ex)
    .await
}

// ---------------------------------------------------------------- login throttling

/// The counter of one throttling key, as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ThrottleRow {
    pub attempts: i64,
    pub decay_from: OffsetDateTime,
    pub locked_until: Option<OffsetDateTime>,
}

pub async fn throttle_row<'c>(
    ex: impl SqliteExecutor<'c>,
    key: &str,
) -> sqlx::Result<Option<ThrottleRow>> {
    sqlx::query_as("SELECT attempts, decay_from, locked_until FROM login_throttle WHERE key = ?")
        .bind(key)
        .fetch_optional(ex)
        .await
}

pub async fn put_throttle<'c>(
    ex: impl SqliteExecutor<'c>,
    key: &str,
    attempts: i64,
    decay_from: &str,
    locked_until: Option<&str>,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO login_throttle (key, attempts, decay_from, locked_until) VALUES (?, ?, ?, ?) \
         ON CONFLICT (key) DO UPDATE SET attempts = excluded.attempts, \
         decay_from = excluded.decay_from, locked_until = excluded.locked_until",
    )
    .bind(key)
    .bind(attempts)
    .bind(decay_from)
    .bind(locked_until)
    .execute(ex)
    .await?;
    Ok(())
}

/// Give back one reserved attempt, and lift the lock it set (`lock`), if any.
pub async fn refund_throttle<'c>(
    ex: impl SqliteExecutor<'c>,
    key: &str,
    lock: Option<&str>,
) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE login_throttle SET attempts = max(attempts - 1, 0), \
         locked_until = CASE WHEN locked_until = ? THEN NULL ELSE locked_until END WHERE key = ?",
    )
    .bind(lock)
    .bind(key)
    .execute(ex)
    .await?;
    Ok(())
}

/// Delete the counters that have decayed to nothing and hold no lock, then the
/// oldest unlocked ones beyond `cap`; returns how many went.
pub async fn prune_throttle<'c>(
    ex: impl SqliteExecutor<'c> + Copy,
    now: &str,
    decay_secs: i64,
    cap: i64,
) -> sqlx::Result<u64> {
    let decayed = sqlx::query(
        "DELETE FROM login_throttle WHERE (locked_until IS NULL OR locked_until <= ?1) \
         AND julianday(decay_from) + attempts * ?2 / 86400.0 <= julianday(?1)",
    )
    .bind(now)
    .bind(decay_secs)
    .execute(ex)
    .await?;
    let excess = sqlx::query(
        "DELETE FROM login_throttle WHERE key IN (SELECT key FROM login_throttle \
         WHERE locked_until IS NULL OR locked_until <= ?1 ORDER BY decay_from \
         LIMIT max((SELECT COUNT(*) FROM login_throttle) - ?2, 0))",
    )
    .bind(now)
    .bind(cap)
    .execute(ex)
    .await?;
    Ok(decayed.rows_affected() + excess.rows_affected())
}

// ---------------------------------------------------------------- server secrets

/// The secret called `name`, created with `candidate` if there is none yet:
/// every process sharing the registry gets the same one.
pub async fn server_secret<'c>(
    ex: impl SqliteExecutor<'c>,
    name: &str,
    candidate: &str,
) -> sqlx::Result<String> {
    sqlx::query_scalar(
        "INSERT INTO server_secrets (name, value) VALUES (?, ?) \
         ON CONFLICT (name) DO UPDATE SET value = value RETURNING value",
    )
    .bind(name)
    .bind(candidate)
    .fetch_one(ex)
    .await
}

//! Every SQL statement of the crate. Each runs on the pool or inside a
//! transaction, on SQLite or PostgreSQL (see `pool`); the rules that need
//! more than one statement live in `service` and `accounts`. Timestamps are
//! bound as [`Stamp`]s; booleans are written `TRUE`/`FALSE`, which SQLite
//! reads as 1/0.

use time::OffsetDateTime;

use super::pool::{Ex, Pool, Stamp, affected, on};
use super::records::{Action, ApiKey, Dump, DumpFilter, Outcome, User};
use super::types::{ApiKeyId, DumpId, DumpStatus, OptionSet, UserId};

const DUMP_COLUMNS: &str = "d.id, d.created_at, d.processed_at, d.status, d.with_data, d.with_storages, \
     d.deprecated, d.filename, d.size, d.checksum, d.purged_at, d.error, d.progress_bytes, \
     d.progress_files, d.created_by, u.username AS creator, \
     EXISTS (SELECT 1 FROM schedule_runs r WHERE r.dump_id = d.id) AS scheduled, \
     v.at AS verified_at, v.error AS verify_error";

pub(super) fn select_dumps(filter: &str) -> String {
    // The latest verification of each dump is its state.
    format!(
        "SELECT {DUMP_COLUMNS} FROM dumps d LEFT JOIN users u ON u.id = d.created_by \
         LEFT JOIN verifications v ON v.id = \
             (SELECT MAX(id) FROM verifications WHERE dump_id = d.id) {filter}"
    )
}

pub async fn insert_dump<'a>(
    ex: impl Into<Ex<'a>>,
    set: OptionSet,
    created_by: Option<UserId>,
    now: &Stamp,
) -> sqlx::Result<DumpId> {
    let sql = "INSERT INTO dumps (created_at, status, with_data, with_storages, created_by) \
               VALUES ($1, 'created', $2, $3, $4) RETURNING id";
    let id: i64 = on!(ex, e => sqlx::query_scalar(sql)
        .bind(now)
        .bind(set.with_data())
        .bind(set.with_storages())
        .bind(created_by)
        .fetch_one(e)
        .await)?;
    Ok(DumpId::from(id))
}

pub async fn get_dump<'a>(ex: impl Into<Ex<'a>>, id: DumpId) -> sqlx::Result<Option<Dump>> {
    let sql = select_dumps("WHERE d.id = $1");
    on!(ex, e => sqlx::query_as(&sql).bind(id.get()).fetch_optional(e).await)
}

pub async fn dump_logs<'a>(ex: impl Into<Ex<'a>>, id: DumpId) -> sqlx::Result<Option<String>> {
    let sql = "SELECT logs FROM dumps WHERE id = $1";
    on!(ex, e => sqlx::query_scalar(sql).bind(id.get()).fetch_optional(e).await)
}

/// The WHERE clause of a filter, its boolean arguments, and the status one.
fn filter_clause(f: &DumpFilter) -> (String, Vec<bool>, Option<&'static str>) {
    let mut clauses = Vec::new();
    let mut flags = Vec::new();
    match f.available {
        Some(true) => clauses.push("(d.status = 'processed' AND d.deprecated = FALSE)".to_string()),
        Some(false) => clauses.push("d.deprecated = TRUE".to_string()),
        None => {}
    }
    if let Some(set) = f.option_set {
        clauses.push("d.with_data = $1 AND d.with_storages = $2".to_string());
        flags.push(set.with_data());
        flags.push(set.with_storages());
    }
    let status = f.status.map(DumpStatus::as_str);
    if status.is_some() {
        clauses.push(format!("d.status = ${}", flags.len() + 1));
    }
    let clause = if clauses.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", clauses.join(" AND "))
    };
    (clause, flags, status)
}

/// One page of dumps, newest first.
pub async fn list_dumps<'a>(
    ex: impl Into<Ex<'a>>,
    filter: &DumpFilter,
    limit: i64,
    offset: i64,
) -> sqlx::Result<Vec<Dump>> {
    let (clause, flags, status) = filter_clause(filter);
    let n = flags.len() + usize::from(status.is_some());
    let sql = select_dumps(&format!(
        "{clause} ORDER BY d.id DESC LIMIT ${} OFFSET ${}",
        n + 1,
        n + 2
    ));
    on!(ex, e => {
        let mut q = sqlx::query_as(&sql);
        for flag in &flags {
            q = q.bind(*flag);
        }
        if let Some(s) = status {
            q = q.bind(s);
        }
        q.bind(limit).bind(offset).fetch_all(e).await
    })
}

pub async fn count_dumps<'a>(ex: impl Into<Ex<'a>>, filter: &DumpFilter) -> sqlx::Result<i64> {
    let (clause, flags, status) = filter_clause(filter);
    let sql = format!("SELECT COUNT(*) FROM dumps d {clause}");
    on!(ex, e => {
        let mut q = sqlx::query_scalar(&sql);
        for flag in &flags {
            q = q.bind(*flag);
        }
        if let Some(s) = status {
            q = q.bind(s);
        }
        q.fetch_one(e).await
    })
}

/// The available dump of an option set, if any.
pub async fn available_dump<'a>(
    ex: impl Into<Ex<'a>>,
    set: OptionSet,
) -> sqlx::Result<Option<Dump>> {
    let sql = select_dumps(
        "WHERE d.with_data = $1 AND d.with_storages = $2 AND d.status = 'processed' \
         AND d.deprecated = FALSE",
    );
    on!(ex, e => sqlx::query_as(&sql)
        .bind(set.with_data())
        .bind(set.with_storages())
        .fetch_optional(e)
        .await)
}

/// Is there a processed dump of `set` newer than `id`?
pub async fn newer_processed_exists<'a>(
    ex: impl Into<Ex<'a>>,
    set: OptionSet,
    id: DumpId,
) -> sqlx::Result<bool> {
    let sql = "SELECT EXISTS (SELECT 1 FROM dumps WHERE with_data = $1 AND with_storages = $2 \
               AND status = 'processed' AND id > $3)";
    on!(ex, e => sqlx::query_scalar(sql)
        .bind(set.with_data())
        .bind(set.with_storages())
        .bind(id.get())
        .fetch_one(e)
        .await)
}

/// Deprecate every finished dump of `set` older than `id`; returns their ids.
/// Older dumps still in flight are left alone: they are superseded when they
/// finish (a deprecation while in flight means "cancel").
pub async fn deprecate_older<'a>(
    ex: impl Into<Ex<'a>>,
    set: OptionSet,
    id: DumpId,
) -> sqlx::Result<Vec<i64>> {
    let sql = "UPDATE dumps SET deprecated = TRUE WHERE with_data = $1 AND with_storages = $2 \
               AND id < $3 AND deprecated = FALSE AND status IN ('processed', 'failed') RETURNING id";
    on!(ex, e => sqlx::query_scalar(sql)
        .bind(set.with_data())
        .bind(set.with_storages())
        .bind(id.get())
        .fetch_all(e)
        .await)
}

/// A running job's outcome; the lease ends with it.
pub async fn set_processed<'a>(
    ex: impl Into<Ex<'a>>,
    id: DumpId,
    outcome: &Outcome<'_>,
    deprecated: bool,
    now: &Stamp,
) -> sqlx::Result<bool> {
    let sql = "UPDATE dumps SET status = 'processed', processed_at = $1, filename = $2, size = $3, \
               checksum = $4, progress_bytes = $5, progress_files = $6, logs = logs || $7, \
               deprecated = $8, lease_owner = NULL, lease_until = NULL \
               WHERE id = $9 AND status = 'pending'";
    let done = on!(ex, e => affected(sqlx::query(sql)
        .bind(now)
        .bind(outcome.filename)
        .bind(outcome.size as i64)
        .bind(outcome.checksum.as_str())
        .bind(outcome.bytes as i64)
        .bind(outcome.files as i64)
        .bind(outcome.logs)
        .bind(deprecated)
        .bind(id.get())
        .execute(e)
        .await))?;
    Ok(done == 1)
}

pub async fn set_failed<'a>(
    ex: impl Into<Ex<'a>>,
    id: DumpId,
    error: &str,
    logs: &str,
    now: &Stamp,
) -> sqlx::Result<bool> {
    let sql = "UPDATE dumps SET status = 'failed', processed_at = $1, error = $2, logs = logs || $3, \
               lease_owner = NULL, lease_until = NULL \
               WHERE id = $4 AND status IN ('created', 'pending')";
    let done = on!(ex, e => affected(sqlx::query(sql)
        .bind(now)
        .bind(error)
        .bind(logs)
        .bind(id.get())
        .execute(e)
        .await))?;
    Ok(done == 1)
}

/// A dump no job has claimed yet fails at once; false if it was not queued.
pub async fn fail_queued<'a>(
    ex: impl Into<Ex<'a>>,
    id: DumpId,
    error: &str,
    now: &Stamp,
) -> sqlx::Result<bool> {
    let sql = "UPDATE dumps SET status = 'failed', processed_at = $1, error = $2, logs = logs || $3 \
               WHERE id = $4 AND status = 'created'";
    let done = on!(ex, e => affected(sqlx::query(sql)
        .bind(now)
        .bind(error)
        .bind(format!("{error}\n"))
        .bind(id.get())
        .execute(e)
        .await))?;
    Ok(done == 1)
}

/// Every archive name a record holds.
pub async fn recorded_filenames<'a>(ex: impl Into<Ex<'a>>) -> sqlx::Result<Vec<String>> {
    let sql = "SELECT filename FROM dumps WHERE filename IS NOT NULL";
    on!(ex, e => sqlx::query_scalar(sql).fetch_all(e).await)
}

/// Deprecate a dump; false if it was deprecated already.
pub async fn deprecate<'a>(ex: impl Into<Ex<'a>>, id: DumpId) -> sqlx::Result<bool> {
    let sql = "UPDATE dumps SET deprecated = TRUE WHERE id = $1 AND deprecated = FALSE";
    let done = on!(ex, e => affected(sqlx::query(sql).bind(id.get()).execute(e).await))?;
    Ok(done == 1)
}

/// Deprecated processed dumps whose file has not been deleted yet.
pub async fn purge_candidates<'a>(ex: impl Into<Ex<'a>>) -> sqlx::Result<Vec<(DumpId, String)>> {
    let sql = "SELECT id, filename FROM dumps WHERE status = 'processed' AND deprecated = TRUE \
               AND purged_at IS NULL AND filename IS NOT NULL ORDER BY id";
    on!(ex, e => sqlx::query_as(sql).fetch_all(e).await)
}

pub async fn set_purged<'a>(ex: impl Into<Ex<'a>>, id: DumpId, now: &Stamp) -> sqlx::Result<()> {
    let sql = "UPDATE dumps SET purged_at = $1 WHERE id = $2 AND purged_at IS NULL";
    on!(ex, e => affected(sqlx::query(sql).bind(now).bind(id).execute(e).await))?;
    Ok(())
}

pub async fn delete_dump<'a>(ex: impl Into<Ex<'a>>, id: DumpId) -> sqlx::Result<bool> {
    let sql = "DELETE FROM dumps WHERE id = $1 AND status IN ('processed', 'failed')";
    let done = on!(ex, e => affected(sqlx::query(sql).bind(id.get()).execute(e).await))?;
    Ok(done == 1)
}

// ---------------------------------------------------------------- users

const USER_COLUMNS: &str = "id, username, is_staff, is_superuser, is_active, created_at, last_login_at, session_generation";

/// The password hash of `username`, if the user exists.
pub async fn password_hash<'a>(
    ex: impl Into<Ex<'a>>,
    username: &str,
) -> sqlx::Result<Option<String>> {
    let sql = "SELECT password_hash FROM users WHERE username = $1";
    on!(ex, e => sqlx::query_scalar(sql).bind(username).fetch_optional(e).await)
}

pub async fn insert_user<'a>(
    ex: impl Into<Ex<'a>>,
    username: &str,
    password_hash: &str,
    is_superuser: bool,
    now: &Stamp,
) -> sqlx::Result<UserId> {
    let sql = "INSERT INTO users (username, password_hash, is_staff, is_superuser, is_active, \
               created_at) VALUES ($1, $2, TRUE, $3, TRUE, $4) RETURNING id";
    on!(ex, e => sqlx::query_scalar(sql)
        .bind(username)
        .bind(password_hash)
        .bind(is_superuser)
        .bind(now)
        .fetch_one(e)
        .await)
}

pub async fn user_by_name<'a>(ex: impl Into<Ex<'a>>, username: &str) -> sqlx::Result<Option<User>> {
    let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE username = $1");
    on!(ex, e => sqlx::query_as(&sql).bind(username).fetch_optional(e).await)
}

pub async fn user_by_id<'a>(ex: impl Into<Ex<'a>>, id: UserId) -> sqlx::Result<Option<User>> {
    let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1");
    on!(ex, e => sqlx::query_as(&sql).bind(id).fetch_optional(e).await)
}

pub async fn list_users<'a>(ex: impl Into<Ex<'a>>) -> sqlx::Result<Vec<User>> {
    let sql = format!("SELECT {USER_COLUMNS} FROM users ORDER BY username");
    on!(ex, e => sqlx::query_as(&sql).fetch_all(e).await)
}

/// A new password hash; the sessions of the user end (new generation, returned).
pub async fn set_password_hash<'a>(
    ex: impl Into<Ex<'a>>,
    id: UserId,
    hash: &str,
) -> sqlx::Result<Option<i64>> {
    let sql = "UPDATE users SET password_hash = $1, session_generation = session_generation + 1 \
               WHERE id = $2 RETURNING session_generation";
    on!(ex, e => sqlx::query_scalar(sql).bind(hash).bind(id).fetch_optional(e).await)
}

/// Set the flags; losing `is_active` or `is_staff` ends the user's sessions.
pub async fn set_user_flags<'a>(
    ex: impl Into<Ex<'a>>,
    id: UserId,
    is_active: bool,
    is_staff: bool,
    is_superuser: bool,
) -> sqlx::Result<bool> {
    let sql = "UPDATE users SET session_generation = session_generation + CASE \
               WHEN (is_active AND NOT $1) OR (is_staff AND NOT $2) THEN 1 ELSE 0 END, \
               is_active = $1, is_staff = $2, is_superuser = $3 WHERE id = $4";
    let done = on!(ex, e => affected(sqlx::query(sql)
        .bind(is_active)
        .bind(is_staff)
        .bind(is_superuser)
        .bind(id)
        .execute(e)
        .await))?;
    Ok(done == 1)
}

pub async fn touch_login<'a>(ex: impl Into<Ex<'a>>, id: UserId, now: &Stamp) -> sqlx::Result<()> {
    let sql = "UPDATE users SET last_login_at = $1 WHERE id = $2";
    on!(ex, e => affected(sqlx::query(sql).bind(now).bind(id).execute(e).await))?;
    Ok(())
}

// ---------------------------------------------------------------- API keys

const KEY_COLUMNS: &str =
    "k.id, k.name, k.prefix, k.created_at, k.deprecated, k.last_used_at, u.username AS creator";

pub async fn insert_api_key<'a>(
    ex: impl Into<Ex<'a>>,
    name: &str,
    key_hash: &str,
    prefix: &str,
    created_by: Option<UserId>,
    now: &Stamp,
) -> sqlx::Result<ApiKeyId> {
    let sql = "INSERT INTO api_keys (name, key_hash, prefix, created_by, created_at) \
               VALUES ($1, $2, $3, $4, $5) RETURNING id";
    on!(ex, e => sqlx::query_scalar(sql)
        .bind(name)
        .bind(key_hash)
        .bind(prefix)
        .bind(created_by)
        .bind(now)
        .fetch_one(e)
        .await)
}

pub async fn api_key_by_hash<'a>(
    ex: impl Into<Ex<'a>>,
    key_hash: &str,
) -> sqlx::Result<Option<ApiKey>> {
    let sql = format!(
        "SELECT {KEY_COLUMNS} FROM api_keys k LEFT JOIN users u ON u.id = k.created_by \
         WHERE k.key_hash = $1"
    );
    on!(ex, e => sqlx::query_as(&sql).bind(key_hash).fetch_optional(e).await)
}

pub async fn list_api_keys<'a>(ex: impl Into<Ex<'a>>) -> sqlx::Result<Vec<ApiKey>> {
    let sql = format!(
        "SELECT {KEY_COLUMNS} FROM api_keys k LEFT JOIN users u ON u.id = k.created_by \
         ORDER BY k.id DESC"
    );
    on!(ex, e => sqlx::query_as(&sql).fetch_all(e).await)
}

pub async fn deprecate_api_key<'a>(ex: impl Into<Ex<'a>>, id: ApiKeyId) -> sqlx::Result<bool> {
    let sql = "UPDATE api_keys SET deprecated = TRUE WHERE id = $1 AND deprecated = FALSE";
    let done = on!(ex, e => affected(sqlx::query(sql).bind(id).execute(e).await))?;
    Ok(done == 1)
}

pub async fn touch_api_key<'a>(
    ex: impl Into<Ex<'a>>,
    id: ApiKeyId,
    now: &Stamp,
) -> sqlx::Result<()> {
    let sql = "UPDATE api_keys SET last_used_at = $1 WHERE id = $2";
    on!(ex, e => affected(sqlx::query(sql).bind(now).bind(id).execute(e).await))?;
    Ok(())
}

// ---------------------------------------------------------------- actions

pub async fn insert_action<'a>(
    ex: impl Into<Ex<'a>>,
    user_id: Option<UserId>,
    api_key_id: Option<ApiKeyId>,
    verb: &str,
    dump_id: Option<DumpId>,
    detail: &str,
    now: &Stamp,
) -> sqlx::Result<()> {
    let sql = "INSERT INTO actions (at, user_id, api_key_id, verb, dump_id, detail) \
               VALUES ($1, $2, $3, $4, $5, $6)";
    on!(ex, e => affected(sqlx::query(sql)
        .bind(now)
        .bind(user_id)
        .bind(api_key_id)
        .bind(verb)
        .bind(dump_id.map(DumpId::get))
        .bind(detail)
        .execute(e)
        .await))?;
    Ok(())
}

pub async fn recent_actions<'a>(ex: impl Into<Ex<'a>>, limit: i64) -> sqlx::Result<Vec<Action>> {
    let sql = "SELECT a.id, a.at, a.verb, a.dump_id, a.detail, u.username, k.name AS key_name, \
         (a.verb = 'created' AND EXISTS (SELECT 1 FROM schedule_runs r WHERE r.dump_id = a.dump_id)) \
         AS scheduled \
         FROM actions a LEFT JOIN users u ON u.id = a.user_id \
         LEFT JOIN api_keys k ON k.id = a.api_key_id ORDER BY a.id DESC LIMIT $1";
    on!(ex, e => sqlx::query_as(sql).bind(limit).fetch_all(e).await)
}

// ---------------------------------------------------------------- login throttling

/// The counter of one throttling key, as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ThrottleRow {
    pub attempts: i64,
    pub decay_from: OffsetDateTime,
    pub locked_until: Option<OffsetDateTime>,
}

pub async fn throttle_row<'a>(
    ex: impl Into<Ex<'a>>,
    key: &str,
) -> sqlx::Result<Option<ThrottleRow>> {
    let sql = "SELECT attempts, decay_from, locked_until FROM login_throttle WHERE key = $1";
    on!(ex, e => sqlx::query_as(sql).bind(key).fetch_optional(e).await)
}

pub async fn put_throttle<'a>(
    ex: impl Into<Ex<'a>>,
    key: &str,
    attempts: i64,
    decay_from: &Stamp,
    locked_until: Option<&Stamp>,
) -> sqlx::Result<()> {
    let sql = "INSERT INTO login_throttle (key, attempts, decay_from, locked_until) \
               VALUES ($1, $2, $3, $4) \
               ON CONFLICT (key) DO UPDATE SET attempts = excluded.attempts, \
               decay_from = excluded.decay_from, locked_until = excluded.locked_until";
    on!(ex, e => affected(sqlx::query(sql)
        .bind(key)
        .bind(attempts)
        .bind(decay_from)
        .bind(locked_until)
        .execute(e)
        .await))?;
    Ok(())
}

/// Give back one reserved attempt, and lift the lock it set (`lock`), if any.
pub async fn refund_throttle<'a>(
    ex: impl Into<Ex<'a>>,
    key: &str,
    lock: Option<&Stamp>,
) -> sqlx::Result<()> {
    let sql = "UPDATE login_throttle SET \
               attempts = CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END, \
               locked_until = CASE WHEN locked_until = $1 THEN NULL ELSE locked_until END \
               WHERE key = $2";
    on!(ex, e => affected(sqlx::query(sql).bind(lock).bind(key).execute(e).await))?;
    Ok(())
}

/// Delete the counters that have decayed to nothing and hold no lock, then the
/// oldest unlocked ones beyond `cap`; returns how many went.
pub async fn prune_throttle(
    pool: &Pool,
    now: &Stamp,
    decay_secs: i64,
    cap: i64,
) -> sqlx::Result<u64> {
    let decayed_sql = if Ex::from(pool).is_postgres() {
        "DELETE FROM login_throttle WHERE (locked_until IS NULL OR locked_until <= $1) \
         AND decay_from + attempts * make_interval(secs => $2) <= $1"
    } else {
        "DELETE FROM login_throttle WHERE (locked_until IS NULL OR locked_until <= $1) \
         AND julianday(decay_from) + attempts * $2 / 86400.0 <= julianday($1)"
    };
    let excess_sql = "DELETE FROM login_throttle WHERE key IN (SELECT key FROM login_throttle \
         WHERE locked_until IS NULL OR locked_until <= $1 ORDER BY decay_from \
         LIMIT (SELECT CASE WHEN COUNT(*) > $2 THEN COUNT(*) - $2 ELSE 0 END FROM login_throttle))";
    let decayed = on!(pool, e => affected(sqlx::query(decayed_sql)
        .bind(now)
        .bind(decay_secs as f64)
        .execute(e)
        .await))?;
    let excess =
        on!(pool, e => affected(sqlx::query(excess_sql).bind(now).bind(cap).execute(e).await))?;
    Ok(decayed + excess)
}

// ---------------------------------------------------------------- server secrets

/// The secret called `name`, created with `candidate` if there is none yet:
/// every process sharing the registry gets the same one.
pub async fn server_secret<'a>(
    ex: impl Into<Ex<'a>>,
    name: &str,
    candidate: &str,
) -> sqlx::Result<String> {
    let sql = "INSERT INTO server_secrets (name, value) VALUES ($1, $2) \
               ON CONFLICT (name) DO UPDATE SET value = server_secrets.value RETURNING value";
    on!(ex, e => sqlx::query_scalar(sql).bind(name).bind(candidate).fetch_one(e).await)
}

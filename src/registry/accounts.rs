//! Staff accounts, API keys and login throttling: who may use the service.

use std::net::{IpAddr, Ipv6Addr};

use super::db;
use super::now;
use super::records::{ApiKey, User};
use super::service::{Actor, Registry};
use super::types::{ApiKeyId, Password, UserId, Username};
use crate::error::{Error, Result};

/// Password checks of a username before it is locked out for a while.
const USER_LIMIT: i64 = 5;
/// Password checks from a client address before it is locked out for a while.
const IP_LIMIT: i64 = 30;
/// First lock-out, doubled with each further attempt, up to `MAX_LOCK_SECS`.
const FIRST_LOCK_SECS: i64 = 30;
const MAX_LOCK_SECS: i64 = 3600;
/// A counted failure is forgotten after this long (one per period).
const DECAY_SECS: i64 = 600;
/// Most unlocked counters kept; the oldest go first when there are more.
const MAX_THROTTLE_ROWS: i64 = 10_000;
/// Longest username looked at (Django's limit): longer ones are refused
/// before anything is checked or stored.
pub const MAX_USERNAME_CHARS: usize = 150;

/// What a login attempt came to.
pub enum Login {
    /// The username is longer than any account's.
    NameTooLong,
    /// Too many recent failures for this username or client address.
    Throttled,
    /// Wrong username or password, or an inactive account: one answer for all.
    Refused,
    LoggedIn(User),
}

impl Registry {
    pub async fn create_user(
        &self,
        username: &Username,
        password: &Password,
        superuser: bool,
    ) -> Result<UserId> {
        let hash = hash_blocking(password.clone()).await?;
        match db::insert_user(&self.pool, username.as_str(), &hash, superuser, &now()).await {
            Ok(id) => Ok(id),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                Err(Error::Usage(format!("user {username} already exists")))
            }
            Err(e) => Err(e.into()),
        }
    }

    pub async fn user(&self, username: &str) -> Result<Option<User>> {
        Ok(db::user_by_name(&self.pool, username).await?)
    }

    pub async fn user_by_id(&self, id: UserId) -> Result<Option<User>> {
        Ok(db::user_by_id(&self.pool, id).await?)
    }

    pub async fn users(&self) -> Result<Vec<User>> {
        Ok(db::list_users(&self.pool).await?)
    }

    /// Change a password; every session of the user ends. Returns the new
    /// session generation, for the session of a user changing their own.
    pub async fn set_password(&self, username: &str, password: &Password) -> Result<i64> {
        let user = self.require_user(username).await?;
        let hash = hash_blocking(password.clone()).await?;
        db::set_password_hash(&self.pool, user.id, &hash)
            .await?
            .ok_or_else(|| Error::Usage(format!("no user named {username:?}")))
    }

    /// Set a user's flags on behalf of `by`. A user cannot remove any of their
    /// own access: the last superuser could lock everyone out.
    pub async fn set_user_flags(
        &self,
        by: Actor,
        id: UserId,
        active: bool,
        staff: bool,
        superuser: bool,
    ) -> Result<bool> {
        if by == Actor::User(id) && !(active && staff && superuser) {
            return Err(Error::Usage(
                "you cannot remove your own access; ask another superuser".into(),
            ));
        }
        Ok(db::set_user_flags(&self.pool, id, active, staff, superuser).await?)
    }

    pub async fn require_user(&self, username: &str) -> Result<User> {
        self.user(username)
            .await?
            .ok_or_else(|| Error::Usage(format!("no user named {username:?}")))
    }

    /// Check a password. Unknown users are checked against a dummy hash, so
    /// the answer takes as long whether the user exists or not.
    async fn authenticate(&self, username: &str, password: &Password) -> Result<Option<User>> {
        let hash = db::password_hash(&self.pool, username).await?;
        let ok = verify_blocking(hash, password.clone()).await?;
        if !ok {
            return Ok(None);
        }
        self.user(username).await
    }

    // ------------------------------------------------------------ API keys

    /// A new key: returns its id and the key itself, which is never stored.
    pub async fn create_api_key(&self, name: &str, actor: Actor) -> Result<(ApiKeyId, String)> {
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

    pub async fn api_keys(&self) -> Result<Vec<ApiKey>> {
        Ok(db::list_api_keys(&self.pool).await?)
    }

    pub async fn deprecate_api_key(&self, id: ApiKeyId) -> Result<bool> {
        Ok(db::deprecate_api_key(&self.pool, id).await?)
    }

    /// The active key matching `key`, if any.
    pub async fn authenticate_key(&self, key: &str) -> Result<Option<ApiKey>> {
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

    // ------------------------------------------------------------ login

    /// A login attempt from `client`, throttled per username and per address.
    /// The attempt is counted before the password is checked, so concurrent
    /// attempts cannot get past the limit; a success gives its count back.
    pub async fn login(&self, username: &str, password: String, client: IpAddr) -> Result<Login> {
        if username.chars().count() > MAX_USERNAME_CHARS {
            return Ok(Login::NameTooLong);
        }
        let keys = [
            (format!("user:{}", username.to_lowercase()), USER_LIMIT),
            (address_key(client), IP_LIMIT),
        ];
        let Some(reserved) = self.reserve_attempt(&keys).await? else {
            return Ok(Login::Throttled);
        };
        let user = match Password::new(password) {
            Ok(password) => self.authenticate(username, &password).await?,
            Err(_) => None,
        };
        match user.filter(|u| u.is_active) {
            Some(user) => {
                let mut tx = self.write_tx().await?;
                for (key, lock) in &reserved {
                    db::refund_throttle(&mut tx, key, lock.as_ref()).await?;
                }
                db::touch_login(&mut tx, user.id, &now()).await?;
                tx.commit().await?;
                Ok(Login::LoggedIn(user))
            }
            None => Ok(Login::Refused),
        }
    }

    /// Count one attempt for every key, in one write transaction, unless one
    /// of them is locked (then nothing is counted). Returns each key with the
    /// lock its count set, if any.
    async fn reserve_attempt(
        &self,
        keys: &[(String, i64)],
    ) -> Result<Option<Vec<(String, Option<super::pool::Stamp>)>>> {
        let now = time::OffsetDateTime::now_utc();
        let mut tx = self.write_tx().await?;
        let mut reserved = Vec::with_capacity(keys.len());
        for (key, limit) in keys {
            let row = db::throttle_row(&mut tx, key).await?;
            let Some(next) = next_count(row.as_ref(), now, *limit) else {
                tx.rollback().await?;
                return Ok(None);
            };
            let lock = next.locked_until.map(super::stamp);
            let decay_from = super::stamp(next.decay_from);
            db::put_throttle(&mut tx, key, next.attempts, &decay_from, lock.as_ref()).await?;
            reserved.push((key.clone(), lock));
        }
        tx.commit().await?;
        Ok(Some(reserved))
    }

    /// Forget the throttling counters that have decayed and hold no lock, and
    /// keep at most a bounded number of the others (locked ones always stay).
    pub async fn prune_login_records(&self) -> Result<u64> {
        let pruned = db::prune_throttle(&self.pool, &now(), DECAY_SECS, MAX_THROTTLE_ROWS).await?;
        Ok(pruned)
    }

    /// The secret called `name`, shared by every process of this registry:
    /// made at first use, then kept.
    pub async fn server_secret(&self, name: &str) -> Result<String> {
        let candidate = crate::users::random_token(32);
        Ok(db::server_secret(&self.pool, name, &candidate).await?)
    }
}

/// A key's counter after one more attempt at `now`, or None while it is locked.
fn next_count(
    row: Option<&db::ThrottleRow>,
    now: time::OffsetDateTime,
    limit: i64,
) -> Option<db::ThrottleRow> {
    let (attempts, decay_from) = match row {
        Some(r) if r.locked_until.is_some_and(|until| until > now) => return None,
        Some(r) => {
            let periods = ((now - r.decay_from).whole_seconds() / DECAY_SECS).max(0);
            let left = (r.attempts - periods).max(0);
            if left == 0 {
                (0, now)
            } else {
                (
                    left,
                    r.decay_from + time::Duration::seconds(periods * DECAY_SECS),
                )
            }
        }
        None => (0, now),
    };
    let attempts = attempts + 1;
    let locked_until = (attempts >= limit).then(|| {
        let doublings = (attempts - limit).min(10) as u32;
        now + time::Duration::seconds((FIRST_LOCK_SECS << doublings).min(MAX_LOCK_SECS))
    });
    Some(db::ThrottleRow {
        attempts,
        decay_from,
        locked_until,
    })
}

/// Argon2 costs ~30 ms of CPU and 19 MiB: keep it off the async threads and
/// bound how many run at once.
static HASHING: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);

async fn hash_blocking(password: Password) -> Result<String> {
    let _permit = HASHING.acquire().await.map_err(|_| Error::Cancelled)?;
    tokio::task::spawn_blocking(move || crate::users::hash_password(&password))
        .await
        .map_err(|e| Error::Internal(format!("password hashing failed: {e}")))?
}

/// The throttling key of a client address. An IPv6 host is commonly given a
/// whole /64, so every address of one /64 counts as one client; an
/// IPv4-mapped address counts as the IPv4 address.
fn address_key(client: IpAddr) -> String {
    match client {
        IpAddr::V4(v4) => format!("ip:{v4}"),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => format!("ip:{v4}"),
            None => {
                let net = Ipv6Addr::from(u128::from(v6) & (u128::MAX << 64));
                format!("ip:{net}/64")
            }
        },
    }
}

async fn verify_blocking(hash: Option<String>, password: Password) -> Result<bool> {
    let _permit = HASHING.acquire().await.map_err(|_| Error::Cancelled)?;
    tokio::task::spawn_blocking(move || crate::users::verify_password(hash.as_deref(), &password))
        .await
        .map_err(|e| Error::Internal(format!("password check failed: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_clients_are_keyed_by_their_64() {
        let key = |a: &str| address_key(a.parse().unwrap());
        assert_eq!(key("2001:db8:1:2::1"), "ip:2001:db8:1:2::/64");
        assert_eq!(
            key("2001:db8:1:2:ffff:ffff:ffff:ffff"),
            key("2001:db8:1:2::1")
        );
        assert_ne!(key("2001:db8:1:3::1"), key("2001:db8:1:2::1"));
        assert_eq!(key("192.0.2.7"), "ip:192.0.2.7");
        assert_eq!(key("::ffff:192.0.2.7"), "ip:192.0.2.7");
    }

    /// Hopping between the addresses of one /64 does not reset the count.
    #[tokio::test]
    async fn one_64_shares_one_login_budget() {
        let dir = tempfile::tempdir().unwrap();
        let config = crate::Config::from_toml(
            "[storages]\npaths = []\n[dump]\npath = \"dumps\"\n",
            dir.path(),
            Vec::new(),
        )
        .unwrap();
        let registry = Registry::open(&config).await.unwrap();
        let attempt = |n: u32, client: &str| {
            let (registry, client) = (registry.clone(), client.parse().unwrap());
            async move {
                // Distinct names: only the address counter fills up.
                let name = format!("ghost{n}");
                registry.login(&name, String::new(), client).await.unwrap()
            }
        };
        for n in 0..IP_LIMIT as u32 {
            let client = format!("2001:db8:1:2::{n:x}");
            assert!(matches!(attempt(n, &client).await, Login::Refused));
        }
        let next = attempt(100, "2001:db8:1:2:abcd::1").await;
        assert!(matches!(next, Login::Throttled));
        let other = attempt(101, "2001:db8:1:3::1").await;
        assert!(matches!(other, Login::Refused));
    }

    #[test]
    fn counts_lock_double_and_decay() {
        let t0 = time::macros::datetime!(2025-02-03 17:00:00 UTC);
        let mut row = None;
        for n in 1..=4 {
            row = next_count(row.as_ref(), t0, USER_LIMIT);
            let r = row.as_ref().unwrap();
            assert_eq!((r.attempts, r.locked_until), (n, None));
        }
        row = next_count(row.as_ref(), t0, USER_LIMIT);
        let lock = row.as_ref().unwrap().locked_until.unwrap();
        assert_eq!(lock - t0, time::Duration::seconds(FIRST_LOCK_SECS));
        assert!(next_count(row.as_ref(), lock - time::Duration::SECOND, USER_LIMIT).is_none());
        // Right after the lock: a sixth attempt, a lock twice as long.
        let sixth = next_count(row.as_ref(), lock, USER_LIMIT).unwrap();
        assert_eq!(sixth.attempts, 6);
        assert_eq!(
            sixth.locked_until.unwrap() - lock,
            time::Duration::seconds(2 * FIRST_LOCK_SECS)
        );
        // One failure is forgotten per period; all of them after five.
        let later = t0 + time::Duration::seconds(2 * DECAY_SECS + 1);
        let r = next_count(row.as_ref(), later, USER_LIMIT).unwrap();
        assert_eq!((r.attempts, r.locked_until), (4, None));
        assert_eq!(r.decay_from, t0 + time::Duration::seconds(2 * DECAY_SECS));
        let much_later = t0 + time::Duration::seconds(5 * DECAY_SECS);
        let r = next_count(row.as_ref(), much_later, USER_LIMIT).unwrap();
        assert_eq!((r.attempts, r.decay_from), (1, much_later));
    }
}

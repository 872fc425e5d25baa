//! Staff accounts, API keys and login throttling: who may use the service.

use std::net::IpAddr;

use super::db;
use super::now;
use super::records::{ApiKey, User};
use super::service::{Actor, Registry};
use super::types::{ApiKeyId, Password, UserId, Username};
use crate::error::{Error, Result};

/// Failures before a username is locked out for a while (then doubling).
const USER_LIMIT: i64 = 5;
/// Failures before a client address is locked out for a while.
const IP_LIMIT: i64 = 30;
/// First lock-out, doubled with each further failure, up to `MAX_LOCK_SECS`.
const FIRST_LOCK_SECS: i64 = 30;
const MAX_LOCK_SECS: i64 = 3600;

/// What a login attempt came to.
pub enum Login {
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

    pub async fn set_password(&self, username: &str, password: &Password) -> Result<()> {
        let user = self.require_user(username).await?;
        let hash = hash_blocking(password.clone()).await?;
        db::set_password_hash(&self.pool, user.id, &hash).await?;
        Ok(())
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
    pub async fn login(&self, username: &str, password: String, client: IpAddr) -> Result<Login> {
        let user_key = format!("user:{}", username.to_lowercase());
        let ip_key = format!("ip:{client}");
        if self.login_locked(&[&user_key, &ip_key]).await? {
            return Ok(Login::Throttled);
        }
        let user = match Password::new(password) {
            Ok(password) => self.authenticate(username, &password).await?,
            Err(_) => None,
        };
        match user.filter(|u| u.is_active) {
            Some(user) => {
                db::clear_failures(&self.pool, &user_key).await?;
                db::touch_login(&self.pool, user.id, &now()).await?;
                Ok(Login::LoggedIn(user))
            }
            None => {
                self.login_failed(&[(&user_key, USER_LIMIT), (&ip_key, IP_LIMIT)])
                    .await?;
                Ok(Login::Refused)
            }
        }
    }

    /// Whether any of `keys` (`user:<name>`, `ip:<addr>`) is locked now.
    async fn login_locked(&self, keys: &[&str]) -> Result<bool> {
        let now = time::OffsetDateTime::now_utc();
        for key in keys {
            if let Some(until) = db::locked_until(&self.pool, key).await?
                && until > now
            {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Count a failed login for each key and lock the ones past their limit,
    /// for a delay that doubles with each further failure.
    async fn login_failed(&self, keys: &[(&str, i64)]) -> Result<()> {
        let mut tx = self.write_tx().await?;
        for (key, limit) in keys {
            let failures = db::add_failure(&mut *tx, key).await?;
            if failures >= *limit {
                let exp = (failures - limit).min(10) as u32;
                let secs = (FIRST_LOCK_SECS << exp).min(MAX_LOCK_SECS);
                let until = time::OffsetDateTime::now_utc() + time::Duration::seconds(secs);
                db::set_locked_until(&mut *tx, key, &super::stamp(until)).await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }
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

async fn verify_blocking(hash: Option<String>, password: Password) -> Result<bool> {
    let _permit = HASHING.acquire().await.map_err(|_| Error::Cancelled)?;
    tokio::task::spawn_blocking(move || crate::users::verify_password(hash.as_deref(), &password))
        .await
        .map_err(|e| Error::Internal(format!("password check failed: {e}")))
}

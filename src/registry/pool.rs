//! The registry's database: SQLite (the embedded default) or PostgreSQL.
//!
//! One enum of native pools rather than sqlx's `Any` driver: `Any` decodes
//! neither timestamps nor SQLite's 0/1 booleans, and the session store needs
//! the native pool anyway. Each statement is written once, with `$N`
//! placeholders (sqlx-sqlite reads them too), and [`on!`] runs it on
//! whichever backend an [`Ex`] holds; the few that differ choose their text
//! with [`Ex::is_postgres`].

use std::time::Duration;

use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgConnection, PgPool, Postgres, Sqlite, SqliteConnection, SqlitePool, Transaction};
use time::OffsetDateTime;

use crate::config::RegistryLocation;
use crate::error::{Error, Result};

/// Migrations of an SQLite registry, embedded in the binary.
pub static SQLITE_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");
/// Migrations of a PostgreSQL registry: the same schema and rules.
pub static POSTGRES_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// The PostgreSQL schema holding the registry, so that its tables never meet
/// those of an application sharing the database.
pub const PG_SCHEMA: &str = "diskette";

/// Key of the transaction-scoped advisory lock every write transaction takes
/// on PostgreSQL: the one-writer-at-a-time that SQLite's `BEGIN IMMEDIATE`
/// gives, for the rules that read before they write (login reservations,
/// preservation, one replacement per corrupt dump).
const WRITE_LOCK: i64 = 0x6469_736b_6574_7465; // "diskette"

#[derive(Clone, Debug)]
pub enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// A write transaction of either backend.
pub enum Tx {
    Sqlite(Transaction<'static, Sqlite>),
    Postgres(Transaction<'static, Postgres>),
}

/// Where a statement runs: a pool, or the connection of a transaction.
pub enum Ex<'a> {
    SqlitePool(&'a SqlitePool),
    Sqlite(&'a mut SqliteConnection),
    PgPool(&'a PgPool),
    Pg(&'a mut PgConnection),
}

impl<'a> From<&'a Pool> for Ex<'a> {
    fn from(p: &'a Pool) -> Self {
        match p {
            Pool::Sqlite(p) => Ex::SqlitePool(p),
            Pool::Postgres(p) => Ex::PgPool(p),
        }
    }
}

impl<'a> From<&'a mut Tx> for Ex<'a> {
    fn from(t: &'a mut Tx) -> Self {
        match t {
            Tx::Sqlite(t) => Ex::Sqlite(t),
            Tx::Postgres(t) => Ex::Pg(t),
        }
    }
}

impl Ex<'_> {
    pub fn is_postgres(&self) -> bool {
        matches!(self, Ex::PgPool(_) | Ex::Pg(_))
    }
}

/// `on!(ex, e => sqlx::query(...).fetch_one(e).await)`: the expression, with
/// `e` the executor of whichever backend `ex` (an `impl Into<Ex>`) holds.
/// Both arms must have one type: an `execute` maps its result to the rows
/// it changed ([`affected`]).
macro_rules! on {
    ($ex:expr, $e:ident => $body:expr) => {
        match ::std::convert::Into::<$crate::registry::pool::Ex<'_>>::into($ex) {
            $crate::registry::pool::Ex::SqlitePool($e) => $body,
            $crate::registry::pool::Ex::Sqlite($e) => $body,
            $crate::registry::pool::Ex::PgPool($e) => $body,
            $crate::registry::pool::Ex::Pg($e) => $body,
        }
    };
}
pub(crate) use on;

/// The rows a statement changed, whatever the backend.
pub fn affected<R: Into<Affected>>(r: sqlx::Result<R>) -> sqlx::Result<u64> {
    r.map(|r| r.into().0)
}

pub struct Affected(u64);

impl From<sqlx::sqlite::SqliteQueryResult> for Affected {
    fn from(r: sqlx::sqlite::SqliteQueryResult) -> Self {
        Affected(r.rows_affected())
    }
}

impl From<sqlx::postgres::PgQueryResult> for Affected {
    fn from(r: sqlx::postgres::PgQueryResult) -> Self {
        Affected(r.rows_affected())
    }
}

impl Pool {
    /// Connect to the registry of `location`, creating what is missing (the
    /// SQLite file, the PostgreSQL schema and tables), and migrate it.
    pub async fn open(location: &RegistryLocation) -> Result<Pool> {
        match location {
            RegistryLocation::Sqlite(path) => {
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir)
                        .map_err(|e| Error::io("create directory", dir, e))?;
                }
                let options = SqliteConnectOptions::new()
                    .filename(path)
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Normal)
                    .busy_timeout(Duration::from_secs(30))
                    .foreign_keys(true);
                let pool = SqlitePoolOptions::new()
                    .max_connections(8)
                    .connect_with(options)
                    .await?;
                SQLITE_MIGRATOR.run(&pool).await?;
                Ok(Pool::Sqlite(pool))
            }
            RegistryLocation::Postgres(url) => open_postgres(url).await.map(Pool::Postgres),
        }
    }

    /// A write transaction, one at a time per registry (see [`WRITE_LOCK`]).
    pub async fn write_tx(&self) -> Result<Tx> {
        match self {
            Pool::Sqlite(p) => Ok(Tx::Sqlite(p.begin_with("BEGIN IMMEDIATE").await?)),
            Pool::Postgres(p) => {
                let mut tx = p.begin().await?;
                sqlx::query("SELECT pg_advisory_xact_lock($1)")
                    .bind(WRITE_LOCK)
                    .execute(&mut *tx)
                    .await?;
                Ok(Tx::Postgres(tx))
            }
        }
    }

    /// A transaction without the write lock on PostgreSQL, for statements
    /// that are safe concurrently by themselves (row locks, `SKIP LOCKED`);
    /// SQLite still needs its write lock taken at once.
    pub async fn begin(&self) -> Result<Tx> {
        match self {
            Pool::Sqlite(p) => Ok(Tx::Sqlite(p.begin_with("BEGIN IMMEDIATE").await?)),
            Pool::Postgres(p) => Ok(Tx::Postgres(p.begin().await?)),
        }
    }

    pub async fn close(&self) {
        match self {
            Pool::Sqlite(p) => p.close().await,
            Pool::Postgres(p) => p.close().await,
        }
    }
}

impl Tx {
    pub async fn commit(self) -> Result<()> {
        match self {
            Tx::Sqlite(t) => t.commit().await?,
            Tx::Postgres(t) => t.commit().await?,
        }
        Ok(())
    }

    pub async fn rollback(self) -> Result<()> {
        match self {
            Tx::Sqlite(t) => t.rollback().await?,
            Tx::Postgres(t) => t.rollback().await?,
        }
        Ok(())
    }
}

async fn open_postgres(url: &str) -> Result<PgPool> {
    let options: PgConnectOptions = url
        .parse()
        .map_err(|e| Error::Config(format!("registry.database_url: {e}")))?;
    // Every connection resolves names in the registry's own schema.
    let options = options.options([("search_path", PG_SCHEMA)]);
    // One connection first: its error says why (a pool would only say it
    // timed out waiting).
    use sqlx::{ConnectOptions, Connection};
    let first = options.connect().await.map_err(|e| connect_error(url, e))?;
    first.close().await?;
    let pool = PgPoolOptions::new()
        .max_connections(8)
        .acquire_timeout(Duration::from_secs(30))
        .connect_with(options)
        .await
        .map_err(|e| connect_error(url, e))?;
    // `CREATE SCHEMA IF NOT EXISTS` needs the right to create even when the
    // schema exists: ask first, so a registry prepared by an administrator
    // works for a user without that right.
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)")
            .bind(PG_SCHEMA)
            .fetch_one(&pool)
            .await?;
    if !exists {
        let created = sqlx::query(&format!("CREATE SCHEMA IF NOT EXISTS {PG_SCHEMA}"))
            .execute(&pool)
            .await;
        // Two instances starting at once: the loser sees a duplicate.
        if let Err(e) = created
            && !is_unique_violation(&e)
        {
            return Err(e.into());
        }
    }
    POSTGRES_MIGRATOR.run(&pool).await?;
    Ok(pool)
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

/// A connection error names the server, never the password of the URL.
fn connect_error(url: &str, e: sqlx::Error) -> Error {
    Error::Config(format!(
        "registry.database_url: cannot connect to {}: {e}",
        redact(url)
    ))
}

/// The URL without its password (`postgres://user:***@host/db`) nor its
/// query. The last `@` ends the user part, so a password holding `/` or `@`
/// stays hidden too.
pub fn redact(url: &str) -> String {
    let url = url.split('?').next().unwrap_or_default();
    let Some((scheme, rest)) = url.split_once("://") else {
        return "(not a URL)".to_string();
    };
    match rest.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or_default();
            let hidden = if userinfo.contains(':') { ":***" } else { "" };
            format!("{scheme}://{user}{hidden}@{host}")
        }
        None => format!("{scheme}://{rest}"),
    }
}

/// A timestamp as a statement binds it: SQLite keeps the fixed-width text
/// of `super::stamp` (text order is time order), PostgreSQL a `timestamptz`.
/// Microseconds, the precision both keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Stamp(OffsetDateTime);

impl Stamp {
    pub fn new(t: OffsetDateTime) -> Stamp {
        let t = t.to_offset(time::UtcOffset::UTC);
        let micros = t.microsecond();
        Stamp(t.replace_microsecond(micros).expect("microseconds fit"))
    }
}

impl std::fmt::Display for Stamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&super::stored_text(self.0))
    }
}

impl sqlx::Type<Sqlite> for Stamp {
    fn type_info() -> sqlx::sqlite::SqliteTypeInfo {
        <String as sqlx::Type<Sqlite>>::type_info()
    }
}

impl<'q> sqlx::Encode<'q, Sqlite> for Stamp {
    fn encode_by_ref(
        &self,
        buf: &mut Vec<sqlx::sqlite::SqliteArgumentValue<'q>>,
    ) -> std::result::Result<IsNull, BoxDynError> {
        <String as sqlx::Encode<'q, Sqlite>>::encode(self.to_string(), buf)
    }
}

impl sqlx::Type<Postgres> for Stamp {
    fn type_info() -> sqlx::postgres::PgTypeInfo {
        <OffsetDateTime as sqlx::Type<Postgres>>::type_info()
    }
}

impl sqlx::Encode<'_, Postgres> for Stamp {
    fn encode_by_ref(
        &self,
        buf: &mut sqlx::postgres::PgArgumentBuffer,
    ) -> std::result::Result<IsNull, BoxDynError> {
        <OffsetDateTime as sqlx::Encode<'_, Postgres>>::encode_by_ref(&self.0, buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_password() {
        assert_eq!(
            redact("postgres://app:s3cret@db.example:5432/reg?sslmode=require"),
            "postgres://app:***@db.example:5432/reg"
        );
        assert_eq!(
            redact("postgres://app@db.example/reg"),
            "postgres://app@db.example/reg"
        );
        assert_eq!(redact("postgres://db/reg"), "postgres://db/reg");
        assert_eq!(redact("postgres://a:b:c@h/d"), "postgres://a:***@h/d");
        assert_eq!(redact("postgres://a:p/w@rd@h/d"), "postgres://a:***@h/d");
    }
}

//! The web sessions, in the registry's database: every instance sharing the
//! registry sees the same sessions (logged in on one is logged in on all).

use async_trait::async_trait;
use tower_sessions::session::{Id, Record};
use tower_sessions::session_store::{self, ExpiredDeletion};
use tower_sessions_sqlx_store::{PostgresStore, SqliteStore};

use super::pool::{PG_SCHEMA, Pool};
use super::service::Registry;
use crate::error::Result;

/// The session store of the registry's backend.
#[derive(Clone, Debug)]
pub enum SessionStore {
    Sqlite(SqliteStore),
    Postgres(PostgresStore),
}

impl Registry {
    /// The store of the web sessions, a table of the registry database.
    pub async fn session_store(&self) -> Result<SessionStore> {
        match &self.pool {
            Pool::Sqlite(p) => {
                let store = SqliteStore::new(p.clone());
                store.migrate().await?;
                Ok(SessionStore::Sqlite(store))
            }
            Pool::Postgres(p) => {
                let store = PostgresStore::new(p.clone())
                    .with_schema_name(PG_SCHEMA)
                    .map_err(crate::error::Error::Internal)?;
                // Its migration creates the table in a transaction of its
                // own, and two instances starting at once may race on it:
                // taken one at a time under the registry's write lock.
                let tx = self.pool.write_tx().await?;
                store.migrate().await?;
                tx.commit().await?;
                Ok(SessionStore::Postgres(store))
            }
        }
    }
}

#[async_trait]
impl session_store::SessionStore for SessionStore {
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        match self {
            SessionStore::Sqlite(s) => s.create(record).await,
            SessionStore::Postgres(s) => s.create(record).await,
        }
    }

    async fn save(&self, record: &Record) -> session_store::Result<()> {
        match self {
            SessionStore::Sqlite(s) => s.save(record).await,
            SessionStore::Postgres(s) => s.save(record).await,
        }
    }

    async fn load(&self, id: &Id) -> session_store::Result<Option<Record>> {
        match self {
            SessionStore::Sqlite(s) => s.load(id).await,
            SessionStore::Postgres(s) => s.load(id).await,
        }
    }

    async fn delete(&self, id: &Id) -> session_store::Result<()> {
        match self {
            SessionStore::Sqlite(s) => s.delete(id).await,
            SessionStore::Postgres(s) => s.delete(id).await,
        }
    }
}

#[async_trait]
impl ExpiredDeletion for SessionStore {
    async fn delete_expired(&self) -> session_store::Result<()> {
        match self {
            SessionStore::Sqlite(s) => s.delete_expired().await,
            SessionStore::Postgres(s) => s.delete_expired().await,
        }
    }
}

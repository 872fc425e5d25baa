//! The dump registry: records of the dumps, the rules over them (DESIGN §3),
//! users, API keys and the action history, in SQLite.
//!
//! `db` holds the SQL, `service` the rules, `jobs` the background worker that
//! runs the archive engine for each new dump.

pub mod db;
pub mod jobs;
pub mod service;
pub mod space;
pub mod types;

pub use db::{Dump, DumpFilter};
pub use jobs::{Archiver, Worker};
pub use service::{Actor, Registry};
pub use types::{Checksum, DumpId, DumpStatus, OptionSet, Password, Username};

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Migrations embedded in the binary, applied at start-up.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Current time as stored: RFC 3339 UTC with microseconds, which sorts as text.
pub fn now() -> String {
    format_time(OffsetDateTime::now_utc())
}

pub fn format_time(t: OffsetDateTime) -> String {
    let t = t.replace_nanosecond(t.microsecond() * 1000).unwrap_or(t);
    t.format(&Rfc3339).unwrap_or_default()
}

pub fn parse_time(s: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(s, &Rfc3339).ok()
}

/// `2025-02-03 17:53:09 UTC`, for pages.
pub fn display_time(s: &str) -> String {
    match parse_time(s) {
        Some(t) => format!(
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        ),
        None => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_round_trip_and_sort() {
        let a = now();
        let b = now();
        assert!(a <= b);
        assert!(parse_time(&a).is_some());
        assert!(display_time(&a).ends_with(" UTC"));
    }

    /// The schema holds the rules SQL can express; migrating twice is a no-op.
    #[tokio::test]
    async fn migrations_apply_and_install_the_rules() {
        let dir = tempfile::tempdir().unwrap();
        let options = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(dir.path().join("r.db"))
            .create_if_missing(true);
        let pool = sqlx::SqlitePool::connect_with(options).await.unwrap();
        MIGRATOR.run(&pool).await.unwrap();
        MIGRATOR.run(&pool).await.unwrap();
        let names: Vec<String> = sqlx::query_scalar(
            "SELECT name FROM sqlite_master WHERE type IN ('trigger', 'index') ORDER BY name",
        )
        .fetch_all(&pool)
        .await
        .unwrap();
        for expected in [
            "dumps_deprecation_is_final",
            "dumps_identity_is_immutable",
            "dumps_one_available_per_option_set",
            "dumps_outcome_is_immutable",
            "dumps_status_moves_forward",
            "api_keys_deprecation_is_final",
        ] {
            assert!(
                names.iter().any(|n| n == expected),
                "{expected} missing from {names:?}"
            );
        }
        // A status cannot move backwards.
        sqlx::query("INSERT INTO dumps (created_at, with_data, with_storages) VALUES ('t', 1, 0)")
            .execute(&pool)
            .await
            .unwrap();
        sqlx::query("UPDATE dumps SET status = 'failed'")
            .execute(&pool)
            .await
            .unwrap();
        let back = sqlx::query("UPDATE dumps SET status = 'pending'")
            .execute(&pool)
            .await;
        assert!(back.is_err());
    }
}

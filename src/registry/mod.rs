//! The dump registry: records of the dumps, the rules over them (DESIGN §3),
//! users, API keys and the action history, in SQLite or PostgreSQL (`pool`).
//!
//! `db` holds the SQL (the only SQL of the crate, with `schedules`,
//! `verifications` and `leases` for their parts), `service` the rules; the
//! background worker that runs the archive engine lives outside, in `worker`.

pub mod accounts;
mod db;
mod files;
mod leases;
pub(crate) mod pool;
pub mod records;
mod schedules;
pub mod service;
mod sessions;
pub mod space;
pub mod types;
mod verifications;

pub use accounts::Login;
pub use files::unique_pattern;
pub use pool::SQLITE_MIGRATOR as MIGRATOR;
pub use records::{Action, ApiKey, Dump, DumpFilter, Outcome, Schedule, User};
pub use service::{
    Actor, DEPRECATED_UNFINISHED, INTERRUPTED, LEASE_EXPIRED, RecoveryReport, Registry, checksum,
};
pub use sessions::SessionStore;
pub use types::{
    ApiKeyId, Checksum, DumpId, DumpStatus, OptionSet, Password, ScheduleId, UserId, Username,
};

use time::OffsetDateTime;
use time::format_description::BorrowedFormatItem;
use time::macros::format_description;

/// How timestamps are stored: RFC 3339 in UTC with exactly six fractional
/// digits, so that text order is time order.
const STORED: &[BorrowedFormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z");

/// A timestamp in the form SQLite stores it.
fn stored_text(t: OffsetDateTime) -> String {
    t.to_offset(time::UtcOffset::UTC)
        .format(STORED)
        .expect("a UTC time of years 0 to 9999 formats")
}

/// A timestamp as statements bind it.
pub(crate) fn stamp(t: OffsetDateTime) -> pool::Stamp {
    pool::Stamp::new(t)
}

/// The current time, as statements bind it.
pub(crate) fn now() -> pool::Stamp {
    stamp(OffsetDateTime::now_utc())
}

/// `2025-02-03 17:53:09 UTC`, for pages and logs.
pub fn display_time(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_times_sort_as_text() {
        let whole = time::macros::datetime!(2025-02-03 17:53:09 UTC);
        let later = whole + time::Duration::microseconds(1);
        let (a, b) = (stamp(whole).to_string(), stamp(later).to_string());
        assert_eq!(a, "2025-02-03T17:53:09.000000Z");
        assert_eq!(b, "2025-02-03T17:53:09.000001Z");
        assert!(a < b);
        let parsed = OffsetDateTime::parse(&b, &time::format_description::well_known::Rfc3339);
        assert_eq!(parsed.unwrap(), later);
        assert_eq!(display_time(later), "2025-02-03 17:53:09 UTC");
    }

    /// Rows written with variable fractional digits become fixed-width, and
    /// the rules dropped for the conversion are back.
    #[tokio::test]
    async fn old_timestamps_are_converted() {
        let dir = tempfile::tempdir().unwrap();
        let options = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(dir.path().join("r.db"))
            .create_if_missing(true);
        let pool = sqlx::SqlitePool::connect_with(options).await.unwrap();
        sqlx::raw_sql(include_str!("../../migrations/0001_registry.sql"))
            .execute(&pool)
            .await
            .unwrap();
        sqlx::query(
            "INSERT INTO dumps (created_at, processed_at, status, with_data, with_storages, \
             deprecated, filename, size, checksum, purged_at) VALUES \
             ('2025-02-03T17:53:09Z', '2025-02-03T17:53:09.5Z', 'processed', 1, 0, 1, 'a', 1, ?, \
              '2025-02-03T17:53:10.123456Z')",
        )
        .bind("c".repeat(128))
        .execute(&pool)
        .await
        .unwrap();
        sqlx::raw_sql(include_str!(
            "../../migrations/0002_fixed_width_timestamps.sql"
        ))
        .execute(&pool)
        .await
        .unwrap();
        let row: (String, String, String) =
            sqlx::query_as("SELECT created_at, processed_at, purged_at FROM dumps")
                .fetch_one(&pool)
                .await
                .unwrap();
        assert_eq!(
            row,
            (
                "2025-02-03T17:53:09.000000Z".into(),
                "2025-02-03T17:53:09.500000Z".into(),
                "2025-02-03T17:53:10.123456Z".into()
            )
        );
        let changed = sqlx::query("UPDATE dumps SET created_at = 'x'")
            .execute(&pool)
            .await;
        assert!(changed.is_err(), "identity rule restored");
        let unpurged = sqlx::query("UPDATE dumps SET purged_at = NULL")
            .execute(&pool)
            .await;
        assert!(unpurged.is_err(), "purge rule restored");
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

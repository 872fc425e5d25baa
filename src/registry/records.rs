//! What the registry hands out: its records, as the service returns them to
//! the web pages, the CLI and the worker. Timestamps are UTC `OffsetDateTime`s.

use sqlx::FromRow;
use time::OffsetDateTime;

use crate::notify::{DUMP_FAILED, DUMP_PROCESSED, Event};

use super::types::{ApiKeyId, Checksum, DumpId, DumpStatus, OptionSet, ScheduleId, UserId};

/// A dump record, without its logs (they can be long; see `Registry::logs`).
#[derive(Debug, Clone, FromRow)]
pub struct Dump {
    #[sqlx(try_from = "i64")]
    pub id: DumpId,
    pub created_at: OffsetDateTime,
    pub processed_at: Option<OffsetDateTime>,
    #[sqlx(try_from = "String")]
    pub status: DumpStatus,
    pub with_data: bool,
    pub with_storages: bool,
    pub deprecated: bool,
    pub filename: Option<String>,
    pub size: Option<i64>,
    pub checksum: Option<String>,
    pub purged_at: Option<OffsetDateTime>,
    pub error: Option<String>,
    pub progress_bytes: i64,
    pub progress_files: i64,
    pub created_by: Option<UserId>,
    /// Username of `created_by` (joined).
    pub creator: Option<String>,
    /// Created by a schedule (it has a run in `schedule_runs`).
    pub scheduled: bool,
    /// When its archive was last verified, if ever.
    pub verified_at: Option<OffsetDateTime>,
    /// What the last verification found wrong; `None` if good or never verified.
    pub verify_error: Option<String>,
}

impl Dump {
    /// Its webhook event `event`, with what went wrong.
    pub fn event(&self, event: &str, error: Option<&str>) -> Event {
        Event {
            event: event.into(),
            dump_id: self.id.get(),
            option_set: self.option_set().key().into(),
            status: self.status.as_str().into(),
            error: error.map(str::to_string),
            checksum: self.checksum.clone(),
            at: super::now().to_string(),
        }
    }

    /// The webhook event of its finished job; none while it is not finished.
    pub fn finished_event(&self) -> Option<Event> {
        match self.status {
            DumpStatus::Failed => Some(self.event(DUMP_FAILED, self.error.as_deref())),
            DumpStatus::Processed => Some(self.event(DUMP_PROCESSED, None)),
            _ => None,
        }
    }

    pub fn option_set(&self) -> OptionSet {
        // The schema refuses neither; fall back to both rather than panic.
        OptionSet::new(self.with_data, self.with_storages).unwrap_or(OptionSet::BOTH)
    }

    /// Processed and not deprecated: the one dump of its set that can be downloaded.
    pub fn is_available(&self) -> bool {
        self.status == DumpStatus::Processed && !self.deprecated
    }

    pub fn checksum(&self) -> Option<Checksum> {
        self.checksum.as_deref().and_then(|c| c.parse().ok())
    }

    /// Its last verification found the archive bad: it is never served.
    pub fn is_corrupt(&self) -> bool {
        self.verify_error.is_some()
    }
}

/// Filters of the dump list; `None` means any.
#[derive(Debug, Clone, Default)]
pub struct DumpFilter {
    pub available: Option<bool>,
    pub option_set: Option<OptionSet>,
    pub status: Option<DumpStatus>,
}

/// What a finished job recorded.
pub struct Outcome<'a> {
    pub filename: &'a str,
    pub size: u64,
    pub checksum: &'a Checksum,
    pub bytes: u64,
    pub files: u64,
    pub logs: &'a str,
}

/// A staff account (its password hash never leaves the registry).
#[derive(Debug, Clone, FromRow)]
pub struct User {
    pub id: UserId,
    pub username: String,
    pub is_staff: bool,
    pub is_superuser: bool,
    pub is_active: bool,
    pub created_at: OffsetDateTime,
    pub last_login_at: Option<OffsetDateTime>,
    /// Raised whenever the user's sessions must end (see `users` in the schema).
    pub session_generation: i64,
}

/// An API key of `load --server` (the key itself is never stored).
#[derive(Debug, Clone, FromRow)]
pub struct ApiKey {
    pub id: ApiKeyId,
    pub name: String,
    pub prefix: String,
    pub created_at: OffsetDateTime,
    pub deprecated: bool,
    pub last_used_at: Option<OffsetDateTime>,
    pub creator: Option<String>,
}

/// One line of the action history.
#[derive(Debug, Clone, FromRow)]
pub struct Action {
    pub id: i64,
    pub at: OffsetDateTime,
    pub verb: String,
    pub dump_id: Option<DumpId>,
    pub detail: String,
    pub username: Option<String>,
    pub key_name: Option<String>,
    /// The creation of a dump by a schedule.
    pub scheduled: bool,
}

/// A schedule with its latest run and that run's dump.
#[derive(Debug, Clone, FromRow)]
pub struct Schedule {
    pub id: ScheduleId,
    /// A 5-field cron expression, read in `timezone`.
    pub cron: String,
    pub with_data: bool,
    pub with_storages: bool,
    /// An IANA time zone name.
    pub timezone: String,
    pub enabled: bool,
    pub created_at: OffsetDateTime,
    /// Due times before this are never run (set again when re-enabled).
    pub active_since: OffsetDateTime,
    pub last_due_at: Option<OffsetDateTime>,
    pub last_dump_id: Option<i64>,
    pub last_status: Option<String>,
    pub last_error: Option<String>,
}

impl Schedule {
    pub fn option_set(&self) -> Result<OptionSet, String> {
        OptionSet::new(self.with_data, self.with_storages)
    }

    /// The last run's dump failed.
    pub fn last_failed(&self) -> bool {
        self.last_status.as_deref() == Some("failed")
    }
}

//! Schedules: a cron expression, an option set, a time zone and an enabled
//! flag. The scheduler creates the dump of each due time, once, whatever the
//! number of instances on one registry: the dump is created in the
//! transaction that inserts the unique (schedule, due time) row.
//!
//! A tick looks, for each enabled schedule, at its latest due time not after
//! now: if that time has no run yet (and is not before the schedule became
//! active), it gets one. So a service that was down runs a missed due time
//! once at start-up, not once per missed time.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result, error_line};
use crate::registry::{DumpId, OptionSet, Registry, Schedule, ScheduleId};

/// The current time; tests pass their own.
pub type Clock = Arc<dyn Fn() -> OffsetDateTime + Send + Sync>;

pub fn system_clock() -> Clock {
    Arc::new(OffsetDateTime::now_utc)
}

/// The longest the scheduler sleeps between ticks, so schedules added by
/// another process (the CLI, another instance) are seen soon.
const MAX_SLEEP: Duration = Duration::from_secs(5);

/// A validated cron expression in a time zone: when a schedule is due.
#[derive(Debug, Clone)]
pub struct Plan {
    cron: Cron,
    tz: chrono_tz::Tz,
}

impl Plan {
    /// A standard 5-field cron expression (`0 3 * * *`, names and `@daily`
    /// accepted) and an IANA time zone name (`Europe/Paris`, `UTC`).
    pub fn new(expression: &str, timezone: &str) -> std::result::Result<Plan, String> {
        let cron = parse_cron(expression)?;
        let tz = parse_timezone(timezone)?;
        Ok(Plan { cron, tz })
    }

    /// The latest due time at or before `now`.
    pub fn latest_due(&self, now: OffsetDateTime) -> Option<OffsetDateTime> {
        let local = to_chrono(now)?.with_timezone(&self.tz);
        let due = self.cron.find_previous_occurrence(&local, true).ok()?;
        from_chrono(due.timestamp())
    }

    /// The first due time after `now`.
    pub fn next_due(&self, now: OffsetDateTime) -> Option<OffsetDateTime> {
        let local = to_chrono(now)?.with_timezone(&self.tz);
        let due = self.cron.find_next_occurrence(&local, false).ok()?;
        from_chrono(due.timestamp())
    }

    /// `2025-02-03 03:00 Europe/Paris`, for pages and the CLI.
    pub fn local_display(&self, t: OffsetDateTime) -> String {
        match to_chrono(t) {
            Some(utc) => format!(
                "{} {}",
                utc.with_timezone(&self.tz).format("%Y-%m-%d %H:%M"),
                self.tz.name()
            ),
            None => crate::registry::display_time(t),
        }
    }
}

pub fn parse_cron(expression: &str) -> std::result::Result<Cron, String> {
    let expression = expression.trim();
    if expression.is_empty() || expression.len() > 200 {
        return Err("a cron expression is 1 to 200 characters, such as \"0 3 * * *\"".into());
    }
    CronParser::builder()
        .seconds(Seconds::Disallowed)
        .year(Year::Disallowed)
        .build()
        .parse(expression)
        .map_err(|e| {
            format!(
                "{expression:?} is not a 5-field cron expression (minute hour day-of-month month day-of-week): {e}"
            )
        })
}

pub fn parse_timezone(name: &str) -> std::result::Result<chrono_tz::Tz, String> {
    chrono_tz::Tz::from_str(name.trim()).map_err(|_| {
        format!("{name:?} is not a time zone name such as \"Europe/Paris\" or \"UTC\"")
    })
}

fn to_chrono(t: OffsetDateTime) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::from_timestamp(t.unix_timestamp(), 0)
}

fn from_chrono(seconds: i64) -> Option<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp(seconds).ok()
}

/// What a new schedule is.
#[derive(Debug, Clone)]
pub struct NewSchedule {
    pub cron: String,
    pub set: OptionSet,
    pub timezone: String,
    pub enabled: bool,
}

impl NewSchedule {
    /// Check the expression and the time zone; the stored text is trimmed.
    pub fn validated(self) -> Result<NewSchedule> {
        let plan = Plan::new(&self.cron, &self.timezone).map_err(Error::Usage)?;
        Ok(NewSchedule {
            cron: self.cron.trim().to_string(),
            timezone: plan.tz.name().to_string(),
            ..self
        })
    }
}

/// A due time that got its dump.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScheduledRun {
    pub schedule_id: ScheduleId,
    pub due: OffsetDateTime,
    pub dump: DumpId,
}

/// Creates the dumps of due schedules.
#[derive(Clone)]
pub struct Scheduler {
    registry: Registry,
    clock: Clock,
}

impl Scheduler {
    pub fn new(registry: Registry, clock: Clock) -> Self {
        Scheduler { registry, clock }
    }

    /// Give every enabled schedule whose latest due time at `now` has no run
    /// yet its dump. Another instance may win a due time: it is then skipped.
    pub async fn tick(&self, now: OffsetDateTime) -> Result<Vec<ScheduledRun>> {
        let mut created = Vec::new();
        for s in self.registry.schedules().await? {
            if !s.enabled {
                continue;
            }
            let plan = match Plan::new(&s.cron, &s.timezone) {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(schedule = %s.id, "schedule skipped: {e}");
                    continue;
                }
            };
            let Some(due) = plan.latest_due(now) else {
                continue;
            };
            if due < s.active_since || s.last_due_at.is_some_and(|l| due <= l) {
                continue;
            }
            // One bad schedule does not stop the others.
            let set = match s.option_set() {
                Ok(set) => set,
                Err(e) => {
                    tracing::warn!(schedule = %s.id, "schedule skipped: {e}");
                    continue;
                }
            };
            match self.registry.create_scheduled_dump(s.id, set, due).await {
                Ok(Some(dump)) => {
                    tracing::info!(schedule = %s.id, dump = %dump, due = %due, "scheduled dump created");
                    created.push(ScheduledRun {
                        schedule_id: s.id,
                        due,
                        dump,
                    });
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(schedule = %s.id, "schedule skipped: {}", error_line(&e)),
            }
        }
        Ok(created)
    }

    /// How long until the next due time of an enabled schedule, at most `MAX_SLEEP`.
    async fn sleep_time(&self, now: OffsetDateTime) -> Duration {
        let Ok(schedules) = self.registry.schedules().await else {
            return MAX_SLEEP;
        };
        schedules
            .iter()
            .filter(|s| s.enabled)
            .filter_map(|s| Plan::new(&s.cron, &s.timezone).ok()?.next_due(now))
            .map(|due| {
                let ms = (due - now).whole_milliseconds().max(0) as u64;
                // Just past the due time, so the tick sees it as due.
                Duration::from_millis(ms + 50)
            })
            .min()
            .unwrap_or(MAX_SLEEP)
            .min(MAX_SLEEP)
    }

    /// Tick at once (the start-up run of a missed due time), then at each
    /// due time, until `shutdown` fires.
    pub async fn run(self, shutdown: CancellationToken) {
        loop {
            let now = (self.clock)();
            if let Err(e) = self.tick(now).await {
                tracing::error!("scheduler: {}", error_line(&e));
            }
            let wait = self.sleep_time((self.clock)()).await;
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.cancelled() => break,
            }
        }
    }
}

/// A schedule as pages and the CLI show it.
#[derive(Debug, Clone)]
pub struct ScheduleView {
    pub row: Schedule,
    /// Next due time, in the schedule's time zone (`—` when disabled).
    pub next_run: String,
    pub last_run: String,
    /// `processed`, `failed`, `pending`... of the last run's dump; `—` if none.
    pub last_outcome: String,
    pub last_error: String,
}

impl ScheduleView {
    pub fn new(row: Schedule, now: OffsetDateTime) -> Self {
        let plan = Plan::new(&row.cron, &row.timezone).ok();
        let next_run = match (&plan, row.enabled) {
            (Some(p), true) => p
                .next_due(now)
                .map(|t| p.local_display(t))
                .unwrap_or_else(|| "never".into()),
            (None, _) => "invalid schedule".into(),
            (_, false) => "— (disabled)".into(),
        };
        let last_run = match (&plan, row.last_due_at) {
            (Some(p), Some(t)) => p.local_display(t),
            _ => "never".into(),
        };
        let last_outcome = match (&row.last_dump_id, &row.last_status) {
            (_, Some(status)) => status.clone(),
            (None, None) if row.last_due_at.is_some() => "dump deleted".into(),
            _ => "—".into(),
        };
        let last_error = row.last_error.clone().unwrap_or_default();
        ScheduleView {
            row,
            next_run,
            last_run,
            last_outcome,
            last_error,
        }
    }

    pub fn options_label(&self) -> &'static str {
        self.row.option_set().map_or("invalid", OptionSet::label)
    }
}

/// The scheduler and the periodic verification, as tasks of a server; they
/// stop when `shutdown` fires.
pub fn spawn_tasks(
    registry: Registry,
    verify_every: crate::verify::Every,
    shutdown: CancellationToken,
) -> Vec<tokio::task::JoinHandle<()>> {
    let scheduler = Scheduler::new(registry.clone(), system_clock());
    vec![
        tokio::spawn(scheduler.run(shutdown.clone())),
        tokio::spawn(crate::verify::run_periodic(
            registry,
            verify_every,
            shutdown,
        )),
    ]
}

/// Add a schedule after checking its expression and time zone.
pub async fn add(registry: &Registry, new: NewSchedule) -> Result<ScheduleId> {
    let new = new.validated()?;
    registry
        .insert_schedule(&new.cron, new.set, &new.timezone, new.enabled)
        .await
}

/// Every schedule, with its next run, last run and last outcome.
pub async fn views(registry: &Registry, now: OffsetDateTime) -> Result<Vec<ScheduleView>> {
    Ok(registry
        .schedules()
        .await?
        .into_iter()
        .map(|row| ScheduleView::new(row, now))
        .collect())
}

/// One schedule, shown as `views` shows it.
pub async fn view(
    registry: &Registry,
    id: ScheduleId,
    now: OffsetDateTime,
) -> Result<Option<ScheduleView>> {
    Ok(registry
        .schedule(id)
        .await?
        .map(|row| ScheduleView::new(row, now)))
}

#[cfg(test)]
mod tests;

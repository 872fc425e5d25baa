//! The scheduler driven by an injected clock, over a real registry and the
//! real archive engine.

use std::sync::Arc;

use time::macros::datetime;
use time::{Duration, OffsetDateTime};
use tokio_util::sync::CancellationToken;

use super::*;
use crate::Config;
use crate::registry::DumpStatus;
use crate::worker::Worker;

/// A site with one storage and a registry, in a temporary directory.
fn site() -> (tempfile::TempDir, Config) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("media")).unwrap();
    std::fs::write(dir.path().join("media/a.txt"), "hello\n").unwrap();
    let config = Config::from_toml(
        "[storages]\npaths = [\"media\"]\n[dump]\npath = \"dumps\"\n",
        dir.path(),
        Vec::new(),
    )
    .unwrap();
    (dir, config)
}

fn fixed(t: OffsetDateTime) -> Clock {
    Arc::new(move || t)
}

async fn add_every_minute(registry: &Registry) -> ScheduleId {
    let new = NewSchedule {
        cron: "* * * * *".into(),
        set: OptionSet::STORAGES,
        timezone: "UTC".into(),
        enabled: true,
    };
    add(registry, new).await.unwrap()
}

async fn dump_count(registry: &Registry) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM dumps")
        .fetch_one(registry.pool())
        .await
        .unwrap()
}

#[test]
fn plans_take_five_fields_and_a_time_zone() {
    assert!(Plan::new("0 3 * * *", "Europe/Paris").is_ok());
    assert!(Plan::new("*/15 * * * MON-FRI", "UTC").is_ok());
    for bad in ["", "0 0 3 * * *", "61 * * * *", "0 3 * *", "every day"] {
        let e = Plan::new(bad, "UTC").unwrap_err();
        assert!(e.contains("cron"), "{bad:?}: {e}");
    }
    let e = Plan::new("0 3 * * *", "Mars/Olympus").unwrap_err();
    assert!(e.contains("time zone"), "{e}");
}

#[test]
fn due_times_follow_the_time_zone() {
    let plan = Plan::new("0 3 * * *", "Europe/Paris").unwrap();
    // 03:00 in Paris is 02:00 UTC in winter and 01:00 UTC in summer.
    let winter = datetime!(2025-01-15 02:30 UTC);
    assert_eq!(
        plan.latest_due(winter),
        Some(datetime!(2025-01-15 02:00 UTC))
    );
    assert_eq!(plan.next_due(winter), Some(datetime!(2025-01-16 02:00 UTC)));
    let summer = datetime!(2025-07-15 00:59 UTC);
    assert_eq!(
        plan.latest_due(summer),
        Some(datetime!(2025-07-14 01:00 UTC))
    );
    assert_eq!(plan.next_due(summer), Some(datetime!(2025-07-15 01:00 UTC)));
    assert_eq!(
        plan.local_display(datetime!(2025-07-15 01:00 UTC)),
        "2025-07-15 03:00 Europe/Paris"
    );
}

#[tokio::test]
async fn a_schedule_due_every_minute_creates_and_processes_a_dump_within_the_minute() {
    let (_dir, config) = site();
    let registry = Registry::open(&config).await.unwrap();
    let id = add_every_minute(&registry).await;
    // After the schedule became active, so its next due time counts.
    let start = OffsetDateTime::now_utc();
    let plan = Plan::new("* * * * *", "UTC").unwrap();
    let due = plan.next_due(start).unwrap();
    let scheduler = Scheduler::new(registry.clone(), fixed(start));

    // Before the due time: nothing.
    assert!(
        scheduler
            .tick(due - Duration::seconds(1))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(dump_count(&registry).await, 0);
    // At the due time: one dump, and only one however often it ticks.
    let runs = scheduler.tick(due).await.unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!((runs[0].schedule_id, runs[0].due), (id, due));
    assert!(
        scheduler
            .tick(due + Duration::seconds(30))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(dump_count(&registry).await, 1);

    let worker = Worker::new(
        registry.clone(),
        Arc::new(config.clone()),
        crate::worker::engine(),
        CancellationToken::new(),
    );
    assert_eq!(worker.run_once().await.unwrap(), Some(runs[0].dump));
    let dump = registry.dump(runs[0].dump).await.unwrap().unwrap();
    assert_eq!(dump.status, DumpStatus::Processed);
    assert!(dump.scheduled);
    assert_eq!(dump.created_by, None);
    assert!(dump.is_available());

    let view = &views(&registry, due + Duration::seconds(30)).await.unwrap()[0];
    assert_eq!(view.last_outcome, "processed");
    assert_eq!(view.last_run, plan.local_display(due));
    assert_eq!(
        view.next_run,
        plan.local_display(due + Duration::minutes(1))
    );

    // The next minute makes the next dump.
    let next = scheduler.tick(due + Duration::minutes(1)).await.unwrap();
    assert_eq!(next.len(), 1);
    assert_ne!(next[0].dump, runs[0].dump);
}

#[tokio::test]
async fn a_due_time_missed_while_down_runs_once_at_start_up() {
    let (_dir, config) = site();
    let registry = Registry::open(&config).await.unwrap();
    add_every_minute(&registry).await;
    let start = OffsetDateTime::now_utc();
    let scheduler = Scheduler::new(registry.clone(), fixed(start));
    let first = Plan::new("* * * * *", "UTC")
        .unwrap()
        .next_due(start)
        .unwrap();
    assert_eq!(scheduler.tick(first).await.unwrap().len(), 1);
    // Down for five due times, back 20 s after the last one.
    let back = first + Duration::minutes(5) + Duration::seconds(20);
    let caught_up = scheduler.tick(back).await.unwrap();
    assert_eq!(caught_up.len(), 1, "one run, not one per missed time");
    assert_eq!(caught_up[0].due, first + Duration::minutes(5));
    assert_eq!(dump_count(&registry).await, 2);
}

#[tokio::test]
async fn two_instances_on_one_registry_create_one_dump_per_due_time() {
    let (_dir, config) = site();
    let a = Registry::open(&config).await.unwrap();
    let b = Registry::open(&config).await.unwrap();
    add_every_minute(&a).await;
    let start = OffsetDateTime::now_utc();
    let due = Plan::new("* * * * *", "UTC")
        .unwrap()
        .next_due(start)
        .unwrap();
    let (sa, sb) = (
        Scheduler::new(a.clone(), fixed(due)),
        Scheduler::new(b.clone(), fixed(due)),
    );
    for offset in [0, 1, 2] {
        let now = due + Duration::seconds(offset);
        let (ra, rb) = tokio::join!(sa.tick(now), sb.tick(now));
        let made = ra.unwrap().len() + rb.unwrap().len();
        assert_eq!(made, usize::from(offset == 0));
    }
    assert_eq!(dump_count(&a).await, 1);
    let runs = a.schedule_runs().await.unwrap();
    assert_eq!(runs.len(), 1);
    assert!(runs[0].2.is_some());
}

#[tokio::test]
async fn disabled_schedules_wait_and_enabling_skips_the_missed_times() {
    let (_dir, config) = site();
    let registry = Registry::open(&config).await.unwrap();
    let start = OffsetDateTime::now_utc();
    let id = add_every_minute(&registry).await;
    registry.set_schedule_enabled(id, false).await.unwrap();
    let scheduler = Scheduler::new(registry.clone(), fixed(start));
    let later = start + Duration::minutes(3);
    assert!(scheduler.tick(later).await.unwrap().is_empty());
    // Enabled again: the times missed while disabled are not run.
    let before = OffsetDateTime::now_utc();
    registry.set_schedule_enabled(id, true).await.unwrap();
    let due_before = Plan::new("* * * * *", "UTC")
        .unwrap()
        .latest_due(before)
        .unwrap();
    assert!(scheduler.tick(due_before).await.unwrap().is_empty());
    assert_eq!(dump_count(&registry).await, 0);
    assert!(registry.remove_schedule(id).await.is_ok());
    assert!(registry.remove_schedule(id).await.is_err());
}

#[tokio::test]
async fn bad_schedules_are_refused_with_the_reason() {
    let (_dir, config) = site();
    let registry = Registry::open(&config).await.unwrap();
    let new = |cron: &str, tz: &str| NewSchedule {
        cron: cron.into(),
        set: OptionSet::BOTH,
        timezone: tz.into(),
        enabled: true,
    };
    let e = add(&registry, new("0 25 * * *", "UTC")).await.unwrap_err();
    assert!(e.to_string().contains("0 25 * * *"), "{e}");
    let e = add(&registry, new("0 3 * * *", "Paris")).await.unwrap_err();
    assert!(e.to_string().contains("Paris"), "{e}");
    assert!(
        views(&registry, OffsetDateTime::now_utc())
            .await
            .unwrap()
            .is_empty()
    );
}

/// The schema holds what SQL can: rule 1 for schedules, one run per due
/// time, and an error exactly on a failed verification.
#[tokio::test]
async fn the_schema_keeps_one_run_per_due_time() {
    let (_dir, config) = site();
    let registry = Registry::open(&config).await.unwrap();
    let pool = registry.pool();
    let neither = sqlx::query(
        "INSERT INTO schedules (cron, with_data, with_storages, created_at, active_since) \
         VALUES ('* * * * *', 0, 0, 't', 't')",
    )
    .execute(pool)
    .await;
    assert!(neither.is_err());
    let run = "INSERT INTO schedule_runs (schedule_id, due_at, created_at) VALUES (1, 'd', 't')";
    sqlx::query(run).execute(pool).await.unwrap();
    assert!(sqlx::query(run).execute(pool).await.is_err());
    let dump = registry
        .create_dump(OptionSet::DATA, crate::registry::Actor::System)
        .await
        .unwrap();
    let verification = |ok: i64, error: Option<&'static str>| {
        sqlx::query("INSERT INTO verifications (dump_id, at, ok, error) VALUES (?, 't', ?, ?)")
            .bind(dump.get())
            .bind(ok)
            .bind(error)
            .execute(pool)
    };
    assert!(verification(0, None).await.is_err());
    assert!(verification(1, Some("x")).await.is_err());
    assert!(verification(0, Some("x")).await.is_ok());
}

#[tokio::test]
async fn a_schedule_whose_dump_cannot_be_created_does_not_stop_the_others() {
    let (_dir, config) = site();
    let registry = Registry::open(&config).await.unwrap();
    let bad = add_every_minute(&registry).await;
    let good = add_every_minute(&registry).await;
    // The registry refuses the runs of the first schedule.
    sqlx::query(&format!(
        "CREATE TRIGGER refuse BEFORE INSERT ON schedule_runs WHEN NEW.schedule_id = {bad} \
         BEGIN SELECT RAISE(ABORT, 'refused'); END"
    ))
    .execute(registry.pool())
    .await
    .unwrap();
    let start = OffsetDateTime::now_utc();
    let due = Plan::new("* * * * *", "UTC")
        .unwrap()
        .next_due(start)
        .unwrap();
    let scheduler = Scheduler::new(registry.clone(), fixed(start));
    let runs = scheduler.tick(due).await.unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].schedule_id, good);
    assert_eq!(dump_count(&registry).await, 1);
}

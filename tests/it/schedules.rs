//! Schedules end to end: two real server processes on one registry make one
//! dump per due time; the superuser's Schedules page; `/healthz` after a
//! failed scheduled run.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Duration;

use diskette::registry::{DumpFilter, DumpStatus, Registry, ScheduleId};
use diskette::schedule::{Plan, Scheduler, system_clock};
use reqwest::StatusCode;
use scraper::{Html, Selector};
use time::OffsetDateTime;

use crate::support::app::*;
use crate::support::process::ServerProcess;

fn diskette(config: &Path, args: &[&str]) -> std::process::Output {
    crate::support::diskette(config, args).output().unwrap()
}

/// Every dump of the registry (a test makes few).
async fn all_dumps(registry: &Registry) -> Vec<diskette::registry::Dump> {
    registry
        .list(&DumpFilter::default(), 1000, 0)
        .await
        .unwrap()
        .0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_on_one_registry_make_one_scheduled_dump_per_due_time() {
    let (_dir, config_path) = workspace();
    let a = ServerProcess::serve(&config_path, "").await;
    let b = ServerProcess::serve(&config_path, "").await;
    // Added once both run, from the command line as an operator would.
    let out = diskette(
        &config_path,
        &["schedule", "add", "--cron", "* * * * *", "--data"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id: ScheduleId = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();

    let registry = Registry::open(&load_config(&config_path, &[]))
        .await
        .unwrap();
    // The next minute's due time makes a dump, processed by one of them.
    // (The bound only keeps a broken scheduler from hanging the test.)
    let mut processed = None;
    for _ in 0..1800 {
        let dumps = all_dumps(&registry).await;
        if let Some(d) = dumps.iter().find(|d| d.status == DumpStatus::Processed) {
            processed = Some(d.clone());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let dump = processed.expect("a scheduled dump was processed");
    assert!(dump.scheduled, "created by the schedule");
    assert_eq!(dump.created_by, None);
    assert!(dump.with_data && !dump.with_storages);

    // Both instances have looked at that due time by now; give them a tick more.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let runs = registry.schedule_runs().await.unwrap();
    let dumps = all_dumps(&registry).await;
    assert!(!runs.is_empty());
    assert_eq!(
        dumps.len(),
        runs.len(),
        "one dump per due time: {runs:?} {dumps:?}"
    );
    assert!(
        runs.iter()
            .all(|(schedule, _, dump)| *schedule == id && dump.is_some())
    );
    assert!(dumps.iter().all(|d| d.scheduled));

    let out = diskette(&config_path, &["schedule", "list"]);
    let list = String::from_utf8_lossy(&out.stdout);
    let line = list.lines().next().unwrap_or_default();
    assert!(
        line.starts_with(&format!("{id}\t* * * * *\tUTC\tData only\tenabled")),
        "{list}"
    );
    assert!(
        line.contains("(processed)") || line.contains("(pending)"),
        "{list}"
    );
    for server in [&a, &b] {
        let res = reqwest::get(server.url("/healthz")).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
    }
    let out = diskette(&config_path, &["schedule", "remove", &id.to_string()]);
    assert!(out.status.success());
    let out = diskette(&config_path, &["schedule", "remove", &id.to_string()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains(&format!("no schedule {id}")));
}

#[test]
fn the_cli_refuses_a_bad_schedule_with_one_line() {
    let (_dir, config_path) = workspace();
    let out = diskette(&config_path, &["schedule", "add", "--cron", "0 3 * *"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("\"0 3 * *\"") && err.contains("cron"), "{err}");
    let out = diskette(
        &config_path,
        &[
            "schedule",
            "add",
            "--cron",
            "0 3 * * *",
            "--timezone",
            "Europe/Atlantis",
        ],
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("Europe/Atlantis"));
    assert!(!out.status.success());
}

fn rows(html: &str) -> Vec<(String, String, String)> {
    let doc = Html::parse_document(html);
    let row = Selector::parse("table.schedules tbody tr[id]").unwrap();
    let cell = |r: scraper::ElementRef, class: &str| {
        let sel = Selector::parse(&format!("td.{class}")).unwrap();
        r.select(&sel)
            .next()
            .map(|c| {
                c.text()
                    .collect::<String>()
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .unwrap_or_default()
    };
    doc.select(&row)
        .map(|r| {
            (
                cell(r, "next-run"),
                cell(r, "last-run"),
                cell(r, "last-outcome"),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn superusers_manage_schedules_and_a_failed_run_makes_healthz_fail() {
    let (archiver, fail) = failing_switch();
    let app = spawn_app_with(Setup {
        archiver,
        ..Default::default()
    })
    .await;
    let staff = app.login(STAFF).await;
    let res = staff.get(app.url("/schedules")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);

    let admin = app.login(ADMIN).await;
    let bad = [("cron", "0 3 * *"), ("timezone", "UTC"), ("with_data", "1")];
    let res = admin.post_form("/schedules", "/schedules", &bad).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let html = res.text().await.unwrap();
    let error = text_of_id(&html, "schedule-error").unwrap();
    assert!(error.contains("0 3 * *"), "{error}");
    assert!(
        html.contains("value=\"0 3 * *\""),
        "the form keeps what was typed"
    );

    let fields = [
        ("cron", "0 3 * * *"),
        ("timezone", "Europe/Paris"),
        ("with_storages", "1"),
        ("enabled", "1"),
    ];
    let res = admin.post_form("/schedules", "/schedules", &fields).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let html = admin.get(app.url("/schedules")).send().await.unwrap();
    let html = html.text().await.unwrap();
    let plan = Plan::new("0 3 * * *", "Europe/Paris").unwrap();
    let next = plan.local_display(plan.next_due(OffsetDateTime::now_utc()).unwrap());
    assert_eq!(rows(&html), vec![(next, "never".into(), "—".into())]);

    // A run of the schedule fails: the page and /healthz say so.
    fail.store(true, Ordering::SeqCst);
    let schedule = app.registry.schedules().await.unwrap()[0].id;
    let due = plan.next_due(OffsetDateTime::now_utc()).unwrap();
    let runs = Scheduler::new(app.registry.clone(), system_clock())
        .tick(due)
        .await
        .unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(app.wait_finished(runs[0].dump).await, DumpStatus::Failed);
    let html = admin.get(app.url("/schedules")).send().await.unwrap();
    let row = rows(&html.text().await.unwrap()).remove(0);
    assert_eq!(row.1, plan.local_display(due));
    assert!(
        row.2.starts_with("failed") && row.2.contains("injected failure"),
        "{row:?}"
    );
    let res = reqwest::get(app.url("/healthz")).await.unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: serde_json::Value = serde_json::from_str(&res.text().await.unwrap()).unwrap();
    // Public: ids only; the error text stays in the log and on the page.
    let reason = format!(
        "schedule {schedule}: last run failed (dump {})",
        runs[0].dump
    );
    assert_eq!(body["reasons"], serde_json::json!([reason]), "{body}");
    let detail = admin
        .get(app.url(&format!("/dumps/{}", runs[0].dump)))
        .send()
        .await
        .unwrap();
    assert!(detail.text().await.unwrap().contains("by scheduled"));

    // Disabled, it no longer counts; removed, it is gone and its dump stays.
    let path = format!("/schedules/{schedule}/disable");
    let res = admin.post_form("/schedules", &path, &[]).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let res = reqwest::get(app.url("/healthz")).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let path = format!("/schedules/{schedule}/remove");
    let res = admin.post_form("/schedules", &path, &[]).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let html = admin.get(app.url("/schedules")).send().await.unwrap();
    assert!(rows(&html.text().await.unwrap()).is_empty());
    assert!(app.dump(runs[0].dump).await.scheduled);
    let res = admin.post_form("/schedules", &path, &[]).await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    app.stop().await;
}

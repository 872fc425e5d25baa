//! Verification of stored archives and the webhook: a flipped byte is caught
//! by the periodic check and by `diskette verify`, the archive is refused
//! with 409, a fresh dump replaces it; a loopback HTTP server receives the
//! events, retried when it fails.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode as AxumStatus;
use diskette::registry::{Actor, DumpId, DumpStatus};
use diskette::worker::Archiver;
use reqwest::StatusCode;
use serde_json::Value;

use crate::support::app::*;

/// A webhook receiver on a random loopback port: keeps every body, and
/// answers 500 to the first `fail_first` requests.
#[derive(Clone)]
struct Hook {
    url: String,
    received: Arc<Mutex<Vec<Value>>>,
}

async fn hook_server(fail_first: usize) -> Hook {
    let received = Arc::new(Mutex::new(Vec::new()));
    let calls = Arc::new(AtomicUsize::new(0));
    let state = (received.clone(), calls, fail_first);
    type HookState = (Arc<Mutex<Vec<Value>>>, Arc<AtomicUsize>, usize);
    async fn receive(State((received, calls, fail)): State<HookState>, body: String) -> AxumStatus {
        received
            .lock()
            .unwrap()
            .push(serde_json::from_str(&body).unwrap_or(Value::Null));
        if calls.fetch_add(1, Ordering::SeqCst) < fail {
            AxumStatus::INTERNAL_SERVER_ERROR
        } else {
            AxumStatus::NO_CONTENT
        }
    }
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(receive))
        .with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    Hook { url, received }
}

impl Hook {
    /// Wait for the bodies of `event` for `dump` (bounded: a hang guard).
    async fn wait_for(&self, event: &str, dump: DumpId, count: usize) -> Vec<Value> {
        for _ in 0..600 {
            let found: Vec<Value> = self
                .received
                .lock()
                .unwrap()
                .iter()
                .filter(|v| v["event"] == event && v["dump_id"] == dump.get())
                .cloned()
                .collect();
            if found.len() >= count {
                return found;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("no {event} event for dump {dump}");
    }
}

/// The real engine, held back while `hold` is set.
fn gated() -> (Archiver, Arc<AtomicBool>) {
    let hold = Arc::new(AtomicBool::new(false));
    let gate = hold.clone();
    let archiver: Archiver = Arc::new(move |config, opts, progress| {
        while gate.load(Ordering::SeqCst) && !progress.is_cancelled() {
            std::thread::sleep(Duration::from_millis(20));
        }
        diskette::dump::dump(config, opts, progress)
    });
    (archiver, hold)
}

fn flip_a_byte(path: &std::path::Path) {
    let mut bytes = std::fs::read(path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(path, bytes).unwrap();
}

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flipped_byte_is_caught_periodically_refused_with_409_and_replaced() {
    let hook = hook_server(0).await;
    let (archiver, hold) = gated();
    let app = spawn_app_with(Setup {
        archiver,
        env: env(&[
            ("DISKETTE_DUMP_VERIFY_EVERY", "1"),
            ("DISKETTE_NOTIFY_WEBHOOK_URL", &hook.url),
            ("DISKETTE_NOTIFY_ON_PROCESSED", "true"),
        ]),
    })
    .await;
    let client = app.login(STAFF).await;
    let id = client.create_dump(true, true).await;
    assert_eq!(app.wait_finished(id).await, DumpStatus::Processed);
    let dump = app.dump(id).await;
    let processed = hook.wait_for("dump_processed", id, 1).await;
    assert_eq!(processed[0]["checksum"], dump.checksum.clone().unwrap());
    assert_eq!(processed[0]["option_set"], "data+storages");
    let download = app.url(&format!("/dumps/{id}/download"));
    assert_eq!(
        client.get(&download).send().await.unwrap().status(),
        StatusCode::OK
    );

    // The replacement waits at the gate, so the corrupt dump stays the available one.
    hold.store(true, Ordering::SeqCst);
    flip_a_byte(&app.archive_path(&dump));
    let failed = hook.wait_for("verification_failed", id, 1).await;
    assert_eq!(failed[0]["checksum"], dump.checksum.clone().unwrap());
    assert_eq!(failed[0]["status"], "processed");
    assert!(
        failed[0]["error"]
            .as_str()
            .unwrap()
            .contains("checksum mismatch")
    );
    assert!(app.dump(id).await.is_corrupt());

    let res = client.get(&download).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::CONFLICT);
    let html = res.text().await.unwrap();
    assert!(html.contains("failed its last verification"), "{html}");
    assert!(
        html.contains("A dump of the same options is queued or running"),
        "{html}"
    );
    let (_, key) = app
        .registry
        .create_api_key("ci", Actor::System)
        .await
        .unwrap();
    let res = app
        .client()
        .get(app.url("/api/dumps/latest?data=1&storages=1"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CONFLICT);
    let detail = client
        .get(app.url(&format!("/dumps/{id}")))
        .send()
        .await
        .unwrap();
    let html = detail.text().await.unwrap();
    assert!(
        text_of_id(&html, "corrupt")
            .unwrap()
            .contains("checksum mismatch")
    );
    assert!(text_of_id(&html, "download").is_none());
    let list = client.get(app.url("/dumps")).send().await.unwrap();
    assert!(list.text().await.unwrap().contains(">corrupt<"));
    let res = reqwest::get(app.url("/healthz")).await.unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    // Public: the dump id, never what the verification found.
    let body: Value = serde_json::from_str(&res.text().await.unwrap()).unwrap();
    assert_eq!(
        body["reasons"],
        serde_json::json!([format!("dump {id}: archive corrupt")])
    );

    // The fresh dump of the same options was queued at once.
    let (queued, _) = app.registry.list(&Default::default(), 10, 0).await.unwrap();
    let fresh: Vec<_> = queued.iter().filter(|d| d.id != id).collect();
    assert_eq!(fresh.len(), 1, "one replacement");
    let fresh = fresh[0].id;
    assert!(app.dump(fresh).await.with_data && app.dump(fresh).await.with_storages);
    hold.store(false, Ordering::SeqCst);
    assert_eq!(app.wait_finished(fresh).await, DumpStatus::Processed);
    assert!(app.dump(id).await.deprecated);
    let res = reqwest::get(app.url("/healthz")).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let res = client
        .get(app.url(&format!("/dumps/{fresh}/download")))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_names_each_corrupt_dump_and_the_button_records_the_outcome() {
    let app = spawn_app().await;
    let client = app.login(STAFF).await;
    let id = client.create_dump(true, false).await;
    assert_eq!(app.wait_finished(id).await, DumpStatus::Processed);
    let config = app.config.source.clone().unwrap();
    let verify = |args: &[&str]| {
        let mut all = vec!["verify"];
        all.extend_from_slice(args);
        crate::support::diskette(&config, &all).output().unwrap()
    };
    let out = verify(&[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with(&format!("dump {id}: good")));

    let res = client
        .post_form(&format!("/dumps/{id}"), &format!("/dumps/{id}/verify"), &[])
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let html = client
        .get(app.url(&format!("/dumps/{id}")))
        .send()
        .await
        .unwrap();
    let verified = text_of_id(&html.text().await.unwrap(), "verified").unwrap();
    assert!(verified.ends_with(": good"), "{verified}");

    flip_a_byte(&app.archive_path(&app.dump(id).await));
    let out = verify(&["--all"]);
    assert!(!out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stdout.contains(&format!("dump {id}: CORRUPT: checksum mismatch")),
        "{stdout}"
    );
    assert!(stdout.contains("replaced by the new dump"), "{stdout}");
    assert!(
        stderr.contains(&format!("error: corrupt dump(s): {id}")),
        "{stderr}"
    );
    let out = verify(&[&id.to_string()]);
    assert!(!out.status.success());
    let out = verify(&["999"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("no dump 999"));
    assert!(!out.status.success());
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_dump_reaches_the_webhook_after_a_retry() {
    let hook = hook_server(1).await;
    let (archiver, fail) = failing_switch();
    fail.store(true, Ordering::SeqCst);
    let app = spawn_app_with(Setup {
        archiver,
        env: env(&[("DISKETTE_NOTIFY_WEBHOOK_URL", &hook.url)]),
    })
    .await;
    let client = app.login(STAFF).await;
    let id = client.create_dump(false, true).await;
    assert_eq!(app.wait_finished(id).await, DumpStatus::Failed);
    // The first delivery got a 500; the second, the same event, was accepted.
    let events = hook.wait_for("dump_failed", id, 2).await;
    assert_eq!(events[0], events[1]);
    assert_eq!(events[0]["status"], "failed");
    assert_eq!(events[0]["option_set"], "storages");
    assert!(
        events[0]["error"]
            .as_str()
            .unwrap()
            .contains("injected failure")
    );
    assert_eq!(events[0]["checksum"], Value::Null);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_server_sends_its_pending_webhook_retries_first() {
    let hook = hook_server(1).await;
    let (archiver, fail) = failing_switch();
    fail.store(true, Ordering::SeqCst);
    let app = spawn_app_with(Setup {
        archiver,
        env: env(&[("DISKETTE_NOTIFY_WEBHOOK_URL", &hook.url)]),
    })
    .await;
    let client = app.login(STAFF).await;
    let id = client.create_dump(false, true).await;
    assert_eq!(app.wait_finished(id).await, DumpStatus::Failed);
    // The first delivery was refused; the retry waits its back-off pause.
    hook.wait_for("dump_failed", id, 1).await;
    app.stop().await;
    let received = hook.received.lock().unwrap().clone();
    let events = received.iter().filter(|v| v["dump_id"] == id.get());
    assert_eq!(events.count(), 2, "the retry left before the server ended");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_409_page_says_whether_a_replacement_is_on_the_way() {
    let (archiver, fail) = failing_switch();
    let app = spawn_app_with(Setup {
        archiver,
        ..Default::default()
    })
    .await;
    let client = app.login(STAFF).await;
    let id = client.create_dump(true, false).await;
    assert_eq!(app.wait_finished(id).await, DumpStatus::Processed);
    // The replacement the verification queues fails: nothing is on the way.
    fail.store(true, Ordering::SeqCst);
    flip_a_byte(&app.archive_path(&app.dump(id).await));
    let report = diskette::verify::verify_dump(&app.registry, id, Actor::System)
        .await
        .unwrap();
    let replacement = report.replacement.expect("a replacement was queued");
    assert_eq!(app.wait_finished(replacement).await, DumpStatus::Failed);
    let res = client
        .get(app.url(&format!("/dumps/{id}/download")))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CONFLICT);
    let html = res.text().await.unwrap();
    assert!(
        html.contains("No dump of the same options is queued or running"),
        "{html}"
    );
    assert!(!html.contains("was queued"), "{html}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_webhook_changes_nothing_for_the_dump() {
    // A port nothing listens on any more.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", closed.local_addr().unwrap());
    drop(closed);
    let app = spawn_app_with(Setup {
        env: env(&[
            ("DISKETTE_NOTIFY_WEBHOOK_URL", &url),
            ("DISKETTE_NOTIFY_ON_PROCESSED", "true"),
        ]),
        ..Default::default()
    })
    .await;
    let client = app.login(STAFF).await;
    let id = client.create_dump(true, false).await;
    assert_eq!(app.wait_finished(id).await, DumpStatus::Processed);
    assert!(app.dump(id).await.is_available());
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_queue_one_replacement() {
    let (_dir, config_path) = workspace();
    let config = load_config(&config_path, &[]);
    let first = diskette::registry::Registry::open(&config).await.unwrap();
    let second = diskette::registry::Registry::open(&config).await.unwrap();
    let set = diskette::registry::OptionSet::BOTH;
    let mut queued = Vec::new();
    for _ in 0..8 {
        let (a, b) = tokio::join!(first.queue_replacement(set), second.queue_replacement(set));
        queued.extend([a.unwrap(), b.unwrap()].into_iter().flatten());
    }
    let (dumps, _) = first.list(&Default::default(), 10, 0).await.unwrap();
    assert_eq!(dumps.len(), 1, "one dump queued: {queued:?}");
    assert_eq!(queued, vec![dumps[0].id]);
}

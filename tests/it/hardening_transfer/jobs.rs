//! Dumps deprecated while queued or running.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use crate::support::app::*;
use diskette::registry::DumpStatus;
use reqwest::StatusCode;

const DEPRECATED: &str = "deprecated before it was processed";

/// An archiver that holds each job while `hold` is set, then runs the real
/// engine. `obey` decides whether a held job stops when it is cancelled, or
/// ignores the cancellation (then its result must be discarded).
struct Gate {
    hold: Arc<AtomicBool>,
    started: Arc<AtomicUsize>,
}

struct Deaf<'a>(&'a dyn diskette::progress::Progress);

impl diskette::progress::Progress for Deaf<'_> {
    fn log(&self, line: &str) {
        self.0.log(line)
    }
}

fn gated(obey: bool) -> (diskette::worker::Archiver, Gate) {
    let (hold, started) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicUsize::new(0)),
    );
    let gate = Gate {
        hold: hold.clone(),
        started: started.clone(),
    };
    let archiver: diskette::worker::Archiver = Arc::new(move |config, opts, progress| {
        started.fetch_add(1, Ordering::SeqCst);
        while hold.load(Ordering::SeqCst) && !(obey && progress.is_cancelled()) {
            std::thread::sleep(Duration::from_millis(10));
        }
        if obey {
            diskette::dump::dump(config, opts, progress)
        } else {
            diskette::dump::dump(config, opts, &Deaf(progress))
        }
    });
    (archiver, gate)
}

/// A failing test lets its held job go, so the runtime can shut down.
impl Drop for Gate {
    fn drop(&mut self) {
        self.hold.store(false, Ordering::SeqCst);
    }
}

impl Gate {
    async fn wait_started(&self, n: usize) {
        for _ in 0..1200 {
            if self.started.load(Ordering::SeqCst) >= n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("job {n} never started");
    }
}

async fn deprecate(client: &Web, id: diskette::registry::DumpId) {
    let res = client
        .post_form("/dumps", &format!("/dumps/{id}/deprecate"), &[])
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dump_deprecated_while_queued_fails_and_spares_the_available_one() {
    let (archiver, gate) = gated(true);
    let app = spawn_app_with(Setup {
        archiver,
        ..Setup::default()
    })
    .await;
    let client = app.login(STAFF).await;
    let available = client.create_dump(false, true).await;
    assert_eq!(app.wait_finished(available).await, DumpStatus::Processed);
    gate.hold.store(true, Ordering::SeqCst);
    let running = client.create_dump(false, true).await;
    gate.wait_started(2).await;
    let queued = client.create_dump(false, true).await;
    deprecate(&client, queued).await;
    // It ends while the job before it still runs: no job ever holds it.
    assert_eq!(app.wait_finished(queued).await, DumpStatus::Failed);
    let q = app.dump(queued).await;
    assert_eq!(q.error.as_deref(), Some(DEPRECATED));
    assert!(q.filename.is_none());
    assert!(app.dump(available).await.is_available());
    assert!(app.dump(running).await.status.in_flight());

    gate.hold.store(false, Ordering::SeqCst);
    assert_eq!(app.wait_finished(running).await, DumpStatus::Processed);
    let r = app.dump(running).await;
    assert!(r.is_available(), "the newest dump not deprecated wins");
    assert!(app.wait_purged(available).await.purged_at.is_some());
    assert_eq!(app.dump_dir_entries(), vec![r.filename.unwrap()]);
    assert_eq!(
        gate.started.load(Ordering::SeqCst),
        2,
        "the queued job never ran"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dump_deprecated_while_running_is_stopped_or_discarded_and_leaves_no_file() {
    for obey in [true, false] {
        let (archiver, gate) = gated(obey);
        let app = spawn_app_with(Setup {
            archiver,
            ..Setup::default()
        })
        .await;
        let client = app.login(STAFF).await;
        let available = client.create_dump(true, true).await;
        assert_eq!(app.wait_finished(available).await, DumpStatus::Processed);
        let before = app.dump_dir_entries();
        gate.hold.store(true, Ordering::SeqCst);
        let running = client.create_dump(true, true).await;
        gate.wait_started(2).await;
        deprecate(&client, running).await;
        if !obey {
            // It ignores the cancellation and finishes its archive.
            gate.hold.store(false, Ordering::SeqCst);
        }
        assert_eq!(
            app.wait_finished(running).await,
            DumpStatus::Failed,
            "obey={obey}"
        );
        let r = app.dump(running).await;
        assert_eq!(r.error.as_deref(), Some(DEPRECATED), "obey={obey}");
        assert!(r.filename.is_none(), "obey={obey}");
        let a = app.dump(available).await;
        assert!(a.is_available() && a.purged_at.is_none(), "obey={obey}");
        assert_eq!(app.dump_dir_entries(), before, "obey={obey}: no file left");
        // The next dump of the set still replaces it as usual.
        gate.hold.store(false, Ordering::SeqCst);
        let next = client.create_dump(true, true).await;
        assert_eq!(app.wait_finished(next).await, DumpStatus::Processed);
        assert!(app.dump(next).await.is_available());
        app.stop().await;
    }
}

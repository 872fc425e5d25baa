//! Webhook notifications (`[notify] webhook_url`): a JSON POST when a dump
//! fails, when a verification fails and, with `on_processed`, when a dump is
//! processed. Each delivery runs in its own task, retried with back-off and
//! logged; the dump never waits for it, and its failure changes nothing.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;

pub use crate::config::NotifyConfig;

/// The event of a failed dump job.
pub const DUMP_FAILED: &str = "dump_failed";
/// The event of a processed dump job, sent with `on_processed`.
pub const DUMP_PROCESSED: &str = "dump_processed";
/// The event of an archive found corrupt.
pub const VERIFICATION_FAILED: &str = "verification_failed";

/// The JSON body of a webhook call.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Event {
    /// `dump_failed`, `verification_failed` or `dump_processed`.
    pub event: String,
    pub dump_id: i64,
    /// `data`, `storages` or `data+storages`.
    pub option_set: String,
    pub status: String,
    pub error: Option<String>,
    pub checksum: Option<String>,
    pub at: String,
}

/// Sends events; cheap to clone. Without a URL, it does nothing.
#[derive(Clone, Default)]
pub struct Notifier {
    inner: Option<Arc<Inner>>,
}

struct Inner {
    url: String,
    on_processed: bool,
    attempts: u32,
    agent: ureq::Agent,
    /// Pause before the second attempt; it doubles for each next one.
    first_pause: Duration,
    pending: Mutex<Vec<JoinHandle<bool>>>,
}

impl Notifier {
    pub fn new(config: &NotifyConfig) -> Notifier {
        Notifier::with_pause(config, Duration::from_secs(1))
    }

    /// With a chosen first back-off pause.
    pub fn with_pause(config: &NotifyConfig, first_pause: Duration) -> Notifier {
        let Some(url) = config.webhook_url.clone() else {
            return Notifier::default();
        };
        let agent = ureq::AgentBuilder::new()
            .timeout(Duration::from_secs(config.timeout))
            .redirects(0)
            .build();
        Notifier {
            inner: Some(Arc::new(Inner {
                url,
                on_processed: config.on_processed,
                attempts: config.attempts,
                agent,
                first_pause,
                pending: Mutex::new(Vec::new()),
            })),
        }
    }

    /// A finished dump job's event: `dump_failed` always, `dump_processed`
    /// only with `on_processed`.
    pub fn dump_finished(&self, event: Event) {
        let Some(inner) = &self.inner else {
            return;
        };
        if event.event == DUMP_PROCESSED && !inner.on_processed {
            return;
        }
        self.send(event);
    }

    /// Deliver `event` in the background (inside a Tokio runtime).
    pub fn send(&self, event: Event) {
        let Some(inner) = self.inner.clone() else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(event = %event.event, "webhook not sent: no runtime");
            return;
        };
        let task = runtime.spawn(deliver(inner.clone(), event));
        if let Ok(mut pending) = inner.pending.lock() {
            pending.retain(|t| !t.is_finished());
            pending.push(task);
        }
    }

    /// Wait for the deliveries under way (a command about to exit).
    pub async fn flush(&self) {
        let Some(inner) = &self.inner else {
            return;
        };
        let tasks = inner
            .pending
            .lock()
            .map(|mut p| std::mem::take(&mut *p))
            .unwrap_or_default();
        for task in tasks {
            let _ = task.await;
        }
    }
}

/// POST the event until it is accepted (2xx) or the attempts run out.
async fn deliver(inner: Arc<Inner>, event: Event) -> bool {
    let body = match serde_json::to_string(&event) {
        Ok(b) => b,
        Err(e) => {
            tracing::error!("webhook event not serializable: {e}");
            return false;
        }
    };
    let mut pause = inner.first_pause;
    for attempt in 1..=inner.attempts {
        let (agent, url, body) = (inner.agent.clone(), inner.url.clone(), body.clone());
        let sent = tokio::task::spawn_blocking(move || {
            agent
                .post(&url)
                .set("Content-Type", "application/json")
                .set(
                    "User-Agent",
                    concat!("diskette/", env!("CARGO_PKG_VERSION")),
                )
                .send_string(&body)
                .map(|r| r.status())
                .map_err(|e| match e {
                    ureq::Error::Status(code, _) => format!("answered {code}"),
                    ureq::Error::Transport(t) => t.to_string(),
                })
        })
        .await
        .unwrap_or_else(|e| Err(format!("delivery task failed: {e}")));
        match sent {
            Ok(status) => {
                tracing::info!(event = %event.event, dump = %event.dump_id, status, attempt, "webhook delivered");
                return true;
            }
            Err(why) if attempt < inner.attempts => {
                tracing::warn!(event = %event.event, dump = %event.dump_id, attempt, "webhook delivery failed ({why}); retrying in {pause:?}");
                tokio::time::sleep(pause).await;
                pause = pause.saturating_mul(2);
            }
            Err(why) => {
                tracing::error!(event = %event.event, dump = %event.dump_id, attempt, "webhook delivery failed ({why}); giving up");
            }
        }
    }
    false
}

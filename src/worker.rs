//! The background worker: runs the archive engine for each `created` dump,
//! writing progress and logs to the record while it runs.
//!
//! `run_once` claims and runs one dump to its end; `run` loops over it with
//! the configured concurrency until the shutdown token fires. A job sees the
//! token through `Progress::is_cancelled`, so the engine stops between files,
//! removes its temporary file, and the dump is recorded as failed. A job whose
//! dump is deprecated while it runs is cancelled the same way (it learns of it
//! when it writes its progress), and a result that arrives anyway is discarded.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::Config;
use crate::dump::{DumpOptions, DumpOutcome};
use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::registry::{
    DEPRECATED_UNFINISHED, DumpId, INTERRUPTED, Outcome, Registry, unique_pattern,
};

/// The engine call, replaceable in tests (to inject failures).
pub type Archiver =
    Arc<dyn Fn(&Config, &DumpOptions, &dyn Progress) -> Result<DumpOutcome> + Send + Sync>;

/// The real engine, the same code as `diskette dump`.
pub fn engine() -> Archiver {
    Arc::new(crate::dump::dump)
}

/// How often the worker looks for work without being woken.
const POLL_EVERY: Duration = Duration::from_secs(5);

/// How often a running job writes its progress to the record.
const FLUSH_EVERY: Duration = Duration::from_millis(500);

#[derive(Clone)]
pub struct Worker {
    registry: Registry,
    config: Arc<Config>,
    archiver: Archiver,
    shutdown: CancellationToken,
}

impl Worker {
    pub fn new(
        registry: Registry,
        config: Arc<Config>,
        archiver: Archiver,
        shutdown: CancellationToken,
    ) -> Self {
        Worker {
            registry,
            config,
            archiver,
            shutdown,
        }
    }

    /// Claim the oldest `created` dump and run it; `None` when there is none.
    pub async fn run_once(&self) -> Result<Option<DumpId>> {
        let Some(id) = self.registry.claim_next().await? else {
            return Ok(None);
        };
        self.execute(id, None).await?;
        Ok(Some(id))
    }

    /// Run jobs until the shutdown token fires, then wait for the running ones
    /// (they stop early, cancelled) so the registry is left consistent.
    /// Meanwhile, end the jobs of other instances that stopped (see `watch_leases`).
    pub async fn run(self) {
        let lease = Duration::from_secs(self.config.dump.lease_seconds);
        let watcher = tokio::spawn(watch_leases(
            self.registry.clone(),
            lease,
            self.shutdown.clone(),
        ));
        let limit = self.config.dump.concurrency;
        let mut running = JoinSet::new();
        // A job task that panicked is a bug: the others go on, and the panic
        // is raised again once everything has stopped (tests see it).
        let mut panicked = None;
        let mut on_joined = |joined: std::result::Result<(), tokio::task::JoinError>| {
            if let Err(e) = joined
                && e.is_panic()
            {
                tracing::error!("a dump job panicked: {e}");
                panicked.get_or_insert(e);
            }
        };
        // Looks for work now and then even without a wake-up (after a
        // database error, or dumps recorded by another process).
        let mut poll = tokio::time::interval(POLL_EVERY);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            while running.len() < limit && !self.shutdown.is_cancelled() {
                match self.registry.claim_next().await {
                    Ok(Some(id)) => {
                        let worker = self.clone();
                        running.spawn(async move {
                            if let Err(e) = worker.execute(id, None).await {
                                tracing::error!(dump = %id, "dump job: {}", crate::error::error_line(&e));
                            }
                        });
                    }
                    Ok(None) => break,
                    Err(e) => {
                        tracing::error!("claiming a dump: {}", crate::error::error_line(&e));
                        break;
                    }
                }
            }
            tokio::select! {
                _ = self.registry.wake().notified() => {}
                _ = poll.tick() => {}
                Some(joined) = running.join_next(), if !running.is_empty() => on_joined(joined),
                _ = self.shutdown.cancelled() => break,
            }
        }
        while let Some(joined) = running.join_next().await {
            on_joined(joined);
        }
        let _ = watcher.await;
        if let Some(e) = panicked {
            std::panic::resume_unwind(e.into_panic());
        }
    }

    /// Run the engine for a claimed (`pending`) dump and record the outcome.
    /// `echo` also receives the progress (the CLI's console).
    ///
    /// Whatever happens, the dump leaves `pending`: processed, or failed
    /// (with the error, [`INTERRUPTED`] at shutdown, [`DEPRECATED_UNFINISHED`]
    /// when it was deprecated meanwhile). Only a database that stays
    /// unreachable leaves it to the recovery at the next start.
    pub async fn execute(&self, id: DumpId, echo: Option<Arc<dyn Progress>>) -> Result<()> {
        let Some(dump) = self.registry.dump(id).await? else {
            return Ok(());
        };
        // Its own token: a deprecation stops this job, a shutdown all of them.
        let stop = self.shutdown.child_token();
        let progress = Arc::new(JobProgress::new(stop.clone(), echo));
        if dump.deprecated {
            return self.fail(id, DEPRECATED_UNFINISHED, &progress).await;
        }
        let set = dump.option_set();
        let opts = DumpOptions {
            with_data: set.with_data(),
            with_storages: set.with_storages(),
            storages_excludes: true,
            // A local store's directory; none for an object store, which
            // the engine finds in the configuration.
            destination: self.registry.store().local_dir().map(|d| d.to_path_buf()),
            // The dump id in the name: two dumps never share a file.
            filename: Some(unique_pattern(&self.config.dump.filename, id)),
            strict: true,
            replace: false,
            log_checksum: true,
            job_id: Some(id.get()),
        };
        progress.log(&format!("Dump {id}: {}", set.label()));
        let job = {
            let (config, archiver, progress) =
                (self.config.clone(), self.archiver.clone(), progress.clone());
            tokio::task::spawn_blocking(move || archiver(&config, &opts, &*progress))
        };
        tokio::pin!(job);
        let mut tick = tokio::time::interval(FLUSH_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut withdrawn = false;
        let result = loop {
            tokio::select! {
                r = &mut job => break r,
                _ = tick.tick() => {
                    let (bytes, files, logs) = progress.take();
                    match self.registry.record_progress(id, bytes, files, &logs).await {
                        Ok(true) => {}
                        Ok(false) => {
                            // Deprecated meanwhile: the engine stops at its next check.
                            withdrawn = true;
                            stop.cancel();
                        }
                        Err(e) => tracing::warn!(dump = %id, "recording progress: {}", crate::error::error_line(&e)),
                    }
                }
            }
        };
        let result = result.unwrap_or_else(|join| {
            Err(Error::Internal(format!(
                "the dump job stopped unexpectedly: {join}"
            )))
        });
        let finished = match result {
            Ok(outcome) => {
                let recorded = self.record(id, &outcome, &progress).await;
                if !matches!(recorded, Ok(true)) {
                    // Not recorded as processed: the file would be untracked.
                    if self.registry.store().local_dir().is_some() {
                        let _ = std::fs::remove_file(&outcome.path);
                    } else {
                        let _ = self.registry.store().delete(&outcome.filename).await;
                    }
                }
                match recorded {
                    Ok(true) => {
                        tracing::info!(dump = %id, file = %outcome.filename, "dump processed")
                    }
                    Ok(false) => tracing::warn!(dump = %id, "dump result discarded"),
                    Err(e) => {
                        let message = crate::error::error_line(&e);
                        self.fail(id, &message, &progress).await?;
                    }
                }
                Ok(())
            }
            Err(e) => {
                let message = match e {
                    _ if withdrawn => DEPRECATED_UNFINISHED.to_string(),
                    Error::Cancelled => INTERRUPTED.to_string(),
                    other => crate::error::error_line(&other),
                };
                self.fail(id, &message, &progress).await
            }
        };
        // Webhook, in the background: the job does not wait for it.
        notify_finished(&self.registry, id).await;
        finished
    }

    /// Record a finished archive; false when the registry did not take it
    /// (the dump was deprecated meanwhile, or its record moved on).
    async fn record(
        &self,
        id: DumpId,
        outcome: &DumpOutcome,
        progress: &JobProgress,
    ) -> Result<bool> {
        let checksum = crate::registry::checksum(&outcome.checksum)?;
        progress.log(&format!(
            "Archive {} written: {} bytes, {} files, checksum {}",
            outcome.filename, outcome.size, outcome.files, checksum
        ));
        let (_, _, logs) = progress.take();
        let recorded = Outcome {
            filename: &outcome.filename,
            size: outcome.size,
            checksum: &checksum,
            bytes: outcome.bytes,
            files: outcome.files,
            logs: &logs,
        };
        self.registry.mark_processed(id, &recorded).await
    }

    async fn fail(&self, id: DumpId, message: &str, progress: &JobProgress) -> Result<()> {
        progress.log(&format!("error: {message}"));
        let (_, _, logs) = progress.take();
        if self.registry.mark_failed(id, message, &logs).await? {
            tracing::warn!(dump = %id, "dump failed: {message}");
        } else {
            // Ended meanwhile by another instance (its lease ran out).
            tracing::warn!(dump = %id, "dump job stopped: the dump had already ended");
        }
        Ok(())
    }
}

/// Progress of a running job: counters and log lines buffered here, written
/// to the record by the async side every `FLUSH_EVERY`.
struct JobProgress {
    bytes: AtomicU64,
    files: AtomicU64,
    logs: Mutex<String>,
    cancel: CancellationToken,
    echo: Option<Arc<dyn Progress>>,
}

impl JobProgress {
    fn new(cancel: CancellationToken, echo: Option<Arc<dyn Progress>>) -> Self {
        JobProgress {
            bytes: AtomicU64::new(0),
            files: AtomicU64::new(0),
            logs: Mutex::new(String::new()),
            cancel,
            echo,
        }
    }

    /// Counters so far and the log lines not yet written.
    fn take(&self) -> (u64, u64, String) {
        let logs = self
            .logs
            .lock()
            .map(|mut l| std::mem::take(&mut *l))
            .unwrap_or_default();
        (
            self.bytes.load(Ordering::Relaxed),
            self.files.load(Ordering::Relaxed),
            logs,
        )
    }
}

impl Progress for JobProgress {
    fn begin(&self, total_bytes: u64, total_files: u64) {
        if let Some(e) = &self.echo {
            e.begin(total_bytes, total_files);
        }
    }
    fn advance(&self, bytes: u64, files: u64) {
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
        self.files.fetch_add(files, Ordering::Relaxed);
        if let Some(e) = &self.echo {
            e.advance(bytes, files);
        }
    }
    fn log(&self, line: &str) {
        let stamp = crate::registry::display_time(time::OffsetDateTime::now_utc());
        if let Ok(mut l) = self.logs.lock() {
            l.push_str(&format!("[{stamp}] {line}\n"));
        }
        if let Some(e) = &self.echo {
            e.log(line);
        }
    }
    fn warn(&self, line: &str) {
        self.log(&format!("warning: {line}"));
    }
    fn finish(&self) {
        if let Some(e) = &self.echo {
            e.finish();
        }
    }
    fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }
}

/// Every half lease, end the dumps whose lease expired (their instance
/// stopped) and remove what their process left: another instance's live job
/// is never touched. The start-up pass is `Server::build`'s.
pub async fn watch_leases(registry: Registry, lease: Duration, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(lease / 2);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => match registry.recover().await {
                Ok(report) if report.failed > 0 => tracing::warn!(
                    failed = report.failed,
                    temp_files = report.temp_files,
                    unrecorded = report.unrecorded,
                    "ended the dumps of a stopped instance"
                ),
                Ok(report) if report != Default::default() => tracing::info!(
                    temp_files = report.temp_files,
                    purged = report.purged,
                    "removed what stopped jobs left"
                ),
                Ok(_) => {}
                Err(e) => tracing::warn!("checking job leases: {}", crate::error::error_line(&e)),
            },
            _ = shutdown.cancelled() => break,
        }
    }
}

/// After a dump job: notify its outcome. Never fails the job.
async fn notify_finished(registry: &Registry, id: DumpId) {
    match registry.dump(id).await {
        Ok(Some(dump)) => {
            if let Some(event) = dump.finished_event() {
                registry.notifier().dump_finished(event);
            }
        }
        Ok(None) => {}
        Err(e) => tracing::warn!(dump = %id, "webhook not sent: {}", crate::error::error_line(&e)),
    }
}

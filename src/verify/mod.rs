//! Verification of stored archives: on demand (`diskette verify`, the Verify
//! button) and periodically (`[dump] verify_every`). Each outcome is recorded
//! in `verifications` (a dump's own record never changes once finished). A
//! corrupt available dump is never served again, its webhook event is sent,
//! and a fresh dump of its option set is queued at once.

pub mod archive;

use std::time::Duration;

use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

pub use crate::config::Every;
use crate::error::{Error, Result, error_line};
use crate::registry::{Actor, DumpId, DumpStatus, Registry};

/// The outcome of one verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub dump: DumpId,
    /// What is wrong with the archive; `None` when it is good.
    pub problem: Option<String>,
    /// The dump queued to replace a corrupt available one.
    pub replacement: Option<DumpId>,
    pub entries: u64,
}

impl Report {
    pub fn is_ok(&self) -> bool {
        self.problem.is_none()
    }
}

/// Re-read the archive of dump `id`, record the outcome, and when it is
/// corrupt: notify, and queue a fresh dump of its set if it was the
/// available one (unless a dump of that set is already waiting or running).
pub async fn verify_dump(registry: &Registry, id: DumpId, actor: Actor) -> Result<Report> {
    let dump = registry
        .dump(id)
        .await?
        .ok_or_else(|| Error::Usage(format!("no dump {id}")))?;
    if dump.status != DumpStatus::Processed {
        return Err(Error::Usage(format!(
            "dump {id} has no archive to verify: it is {}",
            dump.status
        )));
    }
    if dump.purged_at.is_some() {
        return Err(Error::Usage(format!(
            "dump {id} has no archive to verify: it was deprecated and its file purged"
        )));
    }
    let (Some(filename), Some(checksum)) = (dump.filename.clone(), dump.checksum.clone()) else {
        return Err(Error::Usage(format!("dump {id} has no archive to verify")));
    };
    if !crate::store::is_plain_name(&filename) {
        return Err(Error::Usage(format!(
            "dump {id}: {filename:?} is not a file name"
        )));
    }
    let size = dump.size.map(|s| s.max(0) as u64);
    let store = registry.store();
    let what = store.display_name(&filename);
    let reader = store.reader(&filename).await;
    let verdict =
        tokio::task::spawn_blocking(move || archive::verify_reader(reader, &what, &checksum, size))
            .await
            .map_err(|e| Error::Internal(format!("the verification stopped unexpectedly: {e}")))?;
    let problem = verdict.message();
    if problem.is_some() {
        // A purge while the file was read explains a missing file: that is
        // no corruption.
        let again = registry.dump(id).await?;
        if again.is_none_or(|d| d.purged_at.is_some()) {
            return Err(Error::Usage(format!(
                "dump {id} was deprecated and purged while it was verified"
            )));
        }
    }
    registry
        .record_verification(id, problem.as_deref(), actor)
        .await?;
    let mut replacement = None;
    if let Some(problem) = &problem {
        tracing::error!(dump = %id, "archive verification failed: {problem}");
        registry
            .notifier()
            .send(dump.event(crate::notify::VERIFICATION_FAILED, Some(problem)));
        let set = dump.option_set();
        if dump.is_available() {
            replacement = registry.queue_replacement(set).await?;
        }
        if let Some(new) = replacement {
            tracing::warn!(dump = %id, replacement = %new, "a fresh dump replaces the corrupt one");
        }
    } else {
        tracing::info!(dump = %id, entries = verdict.entries, "archive verified");
    }
    Ok(Report {
        dump: id,
        problem,
        replacement,
        entries: verdict.entries,
    })
}

/// Verify the dumps `diskette verify` names: one, every stored one (`all`),
/// or by default the available ones. A dump that cannot be verified does not
/// stop the others: each gets its outcome.
pub async fn verify_selected(
    registry: &Registry,
    id: Option<DumpId>,
    all: bool,
) -> Result<Vec<(DumpId, Result<Report>)>> {
    let ids = match id {
        Some(id) => vec![id],
        None => registry.stored_dumps(!all).await?,
    };
    let mut outcomes = Vec::new();
    for id in ids {
        outcomes.push((id, verify_dump(registry, id, Actor::System).await));
    }
    Ok(outcomes)
}

/// The periodic check: every available dump not verified for `every`.
pub async fn verify_due(
    registry: &Registry,
    every: Duration,
    now: OffsetDateTime,
) -> Result<Vec<Report>> {
    let mut reports = Vec::new();
    for id in registry.verification_due(now - every).await? {
        match verify_dump(registry, id, Actor::System).await {
            Ok(r) => reports.push(r),
            // Deprecated or purged meanwhile: nothing left to check.
            Err(Error::Usage(m)) => tracing::info!(dump = %id, "verification skipped: {m}"),
            Err(e) => return Err(e),
        }
    }
    Ok(reports)
}

/// Run `verify_due` now and then until `shutdown` fires.
pub async fn run_periodic(registry: Registry, every: Every, shutdown: CancellationToken) {
    let Some(every) = every.0 else {
        return;
    };
    // A period is at least a second (zero is `never`); look again at
    // least every minute.
    let pause = every.min(Duration::from_secs(60));
    loop {
        // A verification under way at shutdown is abandoned unrecorded.
        tokio::select! {
            r = verify_due(&registry, every, OffsetDateTime::now_utc()) => {
                if let Err(e) = r {
                    tracing::error!("periodic verification: {}", error_line(&e));
                }
            }
            _ = shutdown.cancelled() => break,
        }
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = shutdown.cancelled() => break,
        }
    }
}

#[cfg(test)]
mod tests;

//! How long-running work reports what it does: a progress bar on a terminal,
//! plain log lines otherwise, database updates in the web service.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

/// Receives the progress and log lines of a dump or a load.
pub trait Progress: Send + Sync {
    /// The work is about to start; totals are estimates (0 = unknown).
    fn begin(&self, _total_bytes: u64, _total_files: u64) {}
    /// `bytes` more input bytes and `files` more files were processed.
    fn advance(&self, _bytes: u64, _files: u64) {}
    /// One human-readable log line.
    fn log(&self, line: &str);
    /// A warning: the work goes on, but a user should read it.
    fn warn(&self, line: &str) {
        self.log(&format!("warning: {line}"));
    }
    fn finish(&self) {}
    /// Polled between files: true aborts the work with `Error::Cancelled`.
    fn is_cancelled(&self) -> bool {
        false
    }
}

/// Discards everything.
pub struct Silent;

impl Progress for Silent {
    fn log(&self, _line: &str) {}
}

/// Keeps every line, for tests and for the logs of a registry record.
#[derive(Default)]
pub struct Recorder {
    pub lines: Mutex<Vec<String>>,
    pub bytes: std::sync::atomic::AtomicU64,
    pub files: std::sync::atomic::AtomicU64,
    pub cancel: AtomicBool,
}

impl Recorder {
    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().map(|l| l.clone()).unwrap_or_default()
    }
}

impl Progress for Recorder {
    fn advance(&self, bytes: u64, files: u64) {
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
        self.files.fetch_add(files, Ordering::Relaxed);
    }
    fn log(&self, line: &str) {
        if let Ok(mut l) = self.lines.lock() {
            l.push(line.to_string());
        }
    }
    fn is_cancelled(&self) -> bool {
        self.cancel.load(Ordering::Relaxed)
    }
}

/// A progress bar when stderr is a terminal, else one log line per step on stderr.
pub struct Console {
    bar: Option<indicatif::ProgressBar>,
    quiet: bool,
}

impl Console {
    pub fn new(quiet: bool) -> Self {
        use std::io::IsTerminal;
        let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let bar = indicatif::ProgressBar::new(0);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} ({bytes_per_sec}, {eta})",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            bar
        });
        Console { bar, quiet }
    }
}

impl Progress for Console {
    fn begin(&self, total_bytes: u64, _total_files: u64) {
        if let Some(bar) = &self.bar {
            bar.set_length(total_bytes);
        }
    }
    fn advance(&self, bytes: u64, _files: u64) {
        if let Some(bar) = &self.bar {
            bar.inc(bytes);
        }
    }
    fn log(&self, line: &str) {
        if self.quiet {
            return;
        }
        match &self.bar {
            Some(bar) => bar.println(line),
            None => eprintln!("{line}"),
        }
    }
    fn warn(&self, line: &str) {
        // Warnings show even in quiet mode.
        match &self.bar {
            Some(bar) => bar.println(format!("warning: {line}")),
            None => eprintln!("warning: {line}"),
        }
    }
    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

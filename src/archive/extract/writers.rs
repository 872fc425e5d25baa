//! The restored files: created safely, their contents written by a pool of
//! threads.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use crate::error::{Error, IoContext, Result};

const WRITE_CHUNK: usize = 256 * 1024;
/// The mode of a file whose header has none.
const FILE_MODE: u32 = 0o644;

/// The permission bits a restored file gets from the archive's.
fn file_mode(archived: u32) -> u32 {
    (archived & 0o755) | 0o600
}

/// Threads that write file contents, each file wholly by one of them (in
/// order, so no two threads contend for one file): the kernel's share of an
/// extraction, page cache copies and block allocation, runs on every core.
pub(super) struct Writers {
    jobs: Vec<mpsc::SyncSender<WriteJob>>,
    threads: Vec<std::thread::JoinHandle<()>>,
    error: Arc<Mutex<Option<Error>>>,
    files: usize,
}

/// A chunk of a file, or (`Chunk::Done`) the end of the file and its mtime.
enum Chunk {
    Data(Vec<u8>),
    Done(Option<SystemTime>),
}

type WriteJob = (Arc<(File, PathBuf)>, Chunk);

impl Writers {
    pub(super) fn new() -> Writers {
        let n = std::thread::available_parallelism().map_or(1, |n| n.get());
        let error = Arc::new(Mutex::new(None));
        let mut jobs = Vec::new();
        let mut threads = Vec::new();
        for _ in 0..n {
            let (tx, rx) = mpsc::sync_channel::<WriteJob>(8);
            let error = Arc::clone(&error);
            threads.push(std::thread::spawn(move || {
                while let Ok((file, chunk)) = rx.recv() {
                    let result = match chunk {
                        Chunk::Data(data) => (&file.0).write_all(&data),
                        // After the last write, which would change it again.
                        Chunk::Done(Some(mtime)) => file.0.set_modified(mtime),
                        Chunk::Done(None) => Ok(()),
                    };
                    if let Err(e) = result {
                        if let Ok(mut slot) = error.lock() {
                            slot.get_or_insert(Error::io("write", &file.1, e));
                        }
                        return;
                    }
                }
            }));
            jobs.push(tx);
        }
        Writers {
            jobs,
            threads,
            error,
            files: 0,
        }
    }

    /// Create `path` with the archived permission bits made safe (never
    /// through a link, never over an existing file), then hand the contents
    /// read from `source` to one writer, chunk by chunk, and the `mtime` last.
    /// Returns the bytes read; `fail` explains a read error.
    pub(super) fn write_file(
        &mut self,
        source: &mut impl Read,
        path: PathBuf,
        archived_mode: Option<u32>,
        mtime: Option<SystemTime>,
        fail: &dyn Fn(io::Error) -> Error,
    ) -> Result<u64> {
        let out = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(file_mode(archived_mode.unwrap_or(FILE_MODE)))
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
            .ctx("create", &path)?;
        let out = Arc::new((out, path));
        let worker = self.next_file();
        let mut written = 0u64;
        loop {
            let mut buf = vec![0u8; WRITE_CHUNK];
            let mut filled = 0;
            while filled < buf.len() {
                match source.read(&mut buf[filled..]).map_err(fail)? {
                    0 => break,
                    n => filled += n,
                }
            }
            if filled == 0 {
                break;
            }
            buf.truncate(filled);
            self.write(worker, Arc::clone(&out), Chunk::Data(buf))?;
            written += filled as u64;
        }
        self.write(worker, out, Chunk::Done(mtime))?;
        Ok(written)
    }

    fn check(&self) -> Result<()> {
        match self.error.lock().ok().and_then(|mut e| e.take()) {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// The writer the next file goes to.
    fn next_file(&mut self) -> usize {
        self.files += 1;
        self.files % self.jobs.len().max(1)
    }

    fn write(&self, worker: usize, file: Arc<(File, PathBuf)>, chunk: Chunk) -> Result<()> {
        self.check()?;
        match self.jobs.get(worker).map(|tx| tx.send((file, chunk))) {
            Some(Ok(())) => Ok(()),
            // A writer stopped on an error: report it.
            _ => {
                self.check()?;
                Err(Error::Archive("a writer thread stopped".into()))
            }
        }
    }

    /// Wait until every chunk is written.
    pub(super) fn finish(&mut self) -> Result<()> {
        self.jobs.clear();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        self.check()
    }
}

impl Drop for Writers {
    /// On an early return the pending chunks are still written (to files of
    /// the private directory) before it is removed.
    fn drop(&mut self) {
        let _ = self.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_modes_are_kept_but_made_safe() {
        assert_eq!(file_mode(0o600), 0o600);
        assert_eq!(file_mode(0o644), 0o644);
        assert_eq!(file_mode(0o4777), 0o755);
        assert_eq!(file_mode(0o000), 0o600);
        assert_eq!(file_mode(0o666), 0o644);
    }
}

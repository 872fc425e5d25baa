//! The decompressed stream the tar reader reads: inflated on a second thread,
//! counted, and cut off past the unpacked-size limit.

use std::cell::Cell;
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver};

use flate2::bufread::MultiGzDecoder;

use crate::error::Error;

const INFLATE_BLOCK: usize = 256 * 1024;

/// Inflates on a second thread, so that decompression overlaps the file
/// writes of the caller. It reads ahead a bounded amount; when the reader is
/// dropped early, the thread stops at its next hand-over.
pub(super) struct Inflater {
    rx: Receiver<io::Result<Vec<u8>>>,
    buf: Vec<u8>,
    pos: usize,
    done: bool,
}

impl Inflater {
    /// `compressed` counts the bytes read from `file` (for progress).
    pub(super) fn spawn(file: File, compressed: Arc<AtomicU64>) -> Inflater {
        let (tx, rx) = mpsc::sync_channel::<io::Result<Vec<u8>>>(8);
        std::thread::spawn(move || {
            let source = CountedFile {
                inner: file,
                count: compressed,
            };
            let mut dec = MultiGzDecoder::new(BufReader::with_capacity(INFLATE_BLOCK, source));
            loop {
                let mut block = vec![0u8; INFLATE_BLOCK];
                let (filled, result) = fill(&mut dec, &mut block);
                block.truncate(filled);
                let end = filled == 0;
                if filled > 0 && tx.send(Ok(block)).is_err() {
                    return;
                }
                if let Err(e) = result {
                    let _ = tx.send(Err(e));
                    return;
                }
                if end {
                    let _ = tx.send(Ok(Vec::new()));
                    return;
                }
            }
        });
        Inflater {
            rx,
            buf: Vec::new(),
            pos: 0,
            done: false,
        }
    }
}

/// Reads into `block` until it is full, the stream ends or fails; returns how
/// much was read and how reading stopped.
fn fill(source: &mut impl Read, block: &mut [u8]) -> (usize, io::Result<()>) {
    let mut filled = 0;
    loop {
        match source.read(&mut block[filled..]) {
            Ok(0) => return (filled, Ok(())),
            Ok(n) => {
                filled += n;
                if filled == block.len() {
                    return (filled, Ok(()));
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return (filled, Err(e)),
        }
    }
}

impl Read for Inflater {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.buf.len() {
            if self.done {
                return Ok(0);
            }
            match self.rx.recv() {
                Ok(Ok(block)) if block.is_empty() => self.done = true,
                Ok(Ok(block)) => {
                    self.buf = block;
                    self.pos = 0;
                }
                Ok(Err(e)) => return Err(e),
                Err(_) => return Err(io::Error::other("the decompression thread stopped")),
            }
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// The archive file, counting the compressed bytes read (for progress).
struct CountedFile {
    inner: File,
    count: Arc<AtomicU64>,
}

impl Read for CountedFile {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// The unpacked bytes read so far, shared by a [`Bounded`] reader and the
/// code that reads through it.
#[derive(Clone)]
pub(super) struct Meter {
    count: Rc<Cell<u64>>,
    limit: u64,
    exceeded: Rc<Cell<bool>>,
}

impl Meter {
    /// Unpacked bytes read so far.
    pub(super) fn used(&self) -> u64 {
        self.count.get()
    }

    /// Bytes that may still be unpacked.
    pub(super) fn room(&self) -> u64 {
        self.limit.saturating_sub(self.count.get())
    }

    /// The refusal of an archive that unpacks to more than the limit.
    pub(super) fn limit_error(&self) -> Error {
        Error::Archive(format!(
            "the archive unpacks to more than {} bytes (limit set by [load] max_unpacked_bytes)",
            self.limit
        ))
    }

    /// What a read error of the stream means for the archive.
    pub(super) fn fail(&self, e: io::Error) -> Error {
        if self.exceeded.get() {
            self.limit_error()
        } else if e.kind() == io::ErrorKind::UnexpectedEof {
            Error::Archive("truncated: the compressed stream ends early".into())
        } else {
            Error::Archive(format!("corrupt: {e}"))
        }
    }
}

/// Counts bytes read; past the limit, fails and records why.
pub(super) struct Bounded<R> {
    inner: R,
    meter: Meter,
}

impl<R> Bounded<R> {
    pub(super) fn new(inner: R, limit: u64) -> (Self, Meter) {
        let meter = Meter {
            count: Rc::new(Cell::new(0)),
            limit,
            exceeded: Rc::new(Cell::new(false)),
        };
        let reader = Bounded {
            inner,
            meter: meter.clone(),
        };
        (reader, meter)
    }
}

impl<R: Read> Read for Bounded<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let total = self.meter.count.get() + n as u64;
        self.meter.count.set(total);
        if total > self.meter.limit {
            self.meter.exceeded.set(true);
            return Err(io::Error::other("unpacked size limit exceeded"));
        }
        Ok(n)
    }
}

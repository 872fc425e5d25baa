//! A gzip writer whose deflate level can change between entries and that may
//! compress on several cores, while the output stays one standard gzip member
//! holding one deflate stream (`gzip -t`, GNU tar and Python's `tarfile` read it).
//!
//! Compression runs in chunks (pigz's scheme): each chunk is deflated on its
//! own, primed with the last 32 KiB of the data before it, and ends with a sync
//! flush (an empty stored block: byte aligned, not final). Chunks can therefore
//! be compressed in any order, by any compressor, at any level, and simply
//! concatenated; one empty final block and the trailer close the stream.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use flate2::{Compress, Compression, Crc, FlushCompress, Status};

/// Uncompressed bytes per chunk.
const CHUNK: usize = 1024 * 1024;
/// Deflate's window: the history a chunk is primed with.
const WINDOW: usize = 32 * 1024;

struct Job {
    seq: u64,
    level: u32,
    dictionary: Arc<Vec<u8>>,
    data: Vec<u8>,
}

struct Done {
    seq: u64,
    result: io::Result<(Vec<u8>, Crc)>,
}

/// Deflate `data` as a run of non-final blocks ending with a sync flush.
fn deflate_chunk(
    compress: &mut Compress,
    level: u32,
    dictionary: &[u8],
    data: &[u8],
) -> io::Result<Vec<u8>> {
    compress.reset();
    if level > 0 && !dictionary.is_empty() {
        compress
            .set_dictionary(dictionary)
            .map_err(io::Error::other)?;
    }
    let mut out = Vec::with_capacity(data.len() / 2 + 1024);
    let mut input = data;
    loop {
        if out.capacity() - out.len() < 1024 {
            out.reserve(out.capacity().max(64 * 1024));
        }
        let before = compress.total_in();
        let status = compress
            .compress_vec(input, &mut out, FlushCompress::Sync)
            .map_err(io::Error::other)?;
        input = &input[(compress.total_in() - before) as usize..];
        // Done when all input is taken and the flush left output space unused.
        if input.is_empty() && out.len() < out.capacity() || status == Status::StreamEnd {
            return Ok(out);
        }
    }
}

/// The compressors of the worker threads, one per level, reused across chunks.
struct Pool {
    by_level: Vec<(u32, Compress)>,
}

impl Pool {
    fn get(&mut self, level: u32) -> &mut Compress {
        let i = match self.by_level.iter().position(|(l, _)| *l == level) {
            Some(i) => i,
            None => {
                self.by_level
                    .push((level, Compress::new(Compression::new(level), false)));
                self.by_level.len() - 1
            }
        };
        &mut self.by_level[i].1
    }
}

enum Engine {
    /// Compression on the calling thread.
    Inline(Pool),
    /// Compression on worker threads; results are written back in order.
    Threads {
        jobs: Option<SyncSender<Job>>,
        done: Receiver<Done>,
        workers: Vec<JoinHandle<()>>,
        pending: BTreeMap<u64, (Vec<u8>, Crc)>,
        in_flight: usize,
        max_in_flight: usize,
    },
}

pub struct GzipWriter<W: Write> {
    inner: W,
    engine: Engine,
    level: u32,
    chunk: Vec<u8>,
    dictionary: Arc<Vec<u8>>,
    next_seq: u64,
    next_write: u64,
    crc: Crc,
    mtime: u32,
    header_written: bool,
}

impl<W: Write> GzipWriter<W> {
    /// Single-threaded.
    pub fn new(inner: W, level: u32) -> Self {
        Self::with_threads(inner, level, 1)
    }

    /// `threads` compressing threads (1: compress on the calling thread).
    pub fn with_threads(inner: W, level: u32, threads: usize) -> Self {
        let engine = if threads <= 1 {
            Engine::Inline(Pool {
                by_level: Vec::new(),
            })
        } else {
            let (jobs_tx, jobs_rx) = mpsc::sync_channel::<Job>(threads);
            let jobs_rx = Arc::new(Mutex::new(jobs_rx));
            let (done_tx, done_rx) = mpsc::channel::<Done>();
            let workers = (0..threads)
                .map(|_| {
                    let jobs = Arc::clone(&jobs_rx);
                    let done = done_tx.clone();
                    std::thread::spawn(move || {
                        let mut pool = Pool {
                            by_level: Vec::new(),
                        };
                        loop {
                            let job = match jobs.lock() {
                                Ok(rx) => rx.recv(),
                                Err(_) => return,
                            };
                            let Ok(job) = job else { return };
                            let mut crc = Crc::new();
                            crc.update(&job.data);
                            let result = deflate_chunk(
                                pool.get(job.level),
                                job.level,
                                &job.dictionary,
                                &job.data,
                            )
                            .map(|out| (out, crc));
                            if done
                                .send(Done {
                                    seq: job.seq,
                                    result,
                                })
                                .is_err()
                            {
                                return;
                            }
                        }
                    })
                })
                .collect();
            Engine::Threads {
                jobs: Some(jobs_tx),
                done: done_rx,
                workers,
                pending: BTreeMap::new(),
                in_flight: 0,
                max_in_flight: threads * 2,
            }
        };
        GzipWriter {
            inner,
            engine,
            level,
            chunk: Vec::with_capacity(CHUNK),
            dictionary: Arc::new(Vec::new()),
            next_seq: 0,
            next_write: 0,
            crc: Crc::new(),
            mtime: 0,
            header_written: false,
        }
    }

    /// Switch the deflate level for what is written next.
    pub fn set_level(&mut self, level: u32) -> io::Result<()> {
        if level != self.level {
            self.submit()?;
            self.level = level;
        }
        Ok(())
    }

    fn write_header(&mut self) -> io::Result<()> {
        if !self.header_written {
            let m = self.mtime.to_le_bytes();
            // ID1 ID2 CM=deflate FLG=0 MTIME XFL=0 OS=3 (Unix)
            self.inner
                .write_all(&[0x1f, 0x8b, 8, 0, m[0], m[1], m[2], m[3], 0, 3])?;
            self.header_written = true;
        }
        Ok(())
    }

    fn emit(&mut self, out: &[u8], crc: &Crc) -> io::Result<()> {
        self.write_header()?;
        self.inner.write_all(out)?;
        self.crc.combine(crc);
        self.next_write += 1;
        Ok(())
    }

    /// Hand the current chunk to the compressor.
    fn submit(&mut self) -> io::Result<()> {
        if self.chunk.is_empty() {
            return Ok(());
        }
        let data = std::mem::replace(&mut self.chunk, Vec::with_capacity(CHUNK));
        let dictionary = std::mem::replace(
            &mut self.dictionary,
            Arc::new(data[data.len().saturating_sub(WINDOW)..].to_vec()),
        );
        let seq = self.next_seq;
        self.next_seq += 1;
        let level = self.level;
        match &mut self.engine {
            Engine::Inline(pool) => {
                let out = deflate_chunk(pool.get(level), level, &dictionary, &data)?;
                let mut crc = Crc::new();
                crc.update(&data);
                self.emit(&out, &crc)
            }
            Engine::Threads {
                jobs,
                in_flight,
                max_in_flight,
                ..
            } => {
                let full = *in_flight >= *max_in_flight;
                let job = Job {
                    seq,
                    level,
                    dictionary,
                    data,
                };
                jobs.as_ref()
                    .ok_or_else(|| io::Error::other("compressor closed"))?
                    .send(job)
                    .map_err(|_| io::Error::other("a compression thread stopped"))?;
                *in_flight += 1;
                if full {
                    self.collect(false)?;
                }
                self.collect_ready()
            }
        }
    }

    /// Write every finished chunk that is next in order, without waiting.
    fn collect_ready(&mut self) -> io::Result<()> {
        loop {
            let Engine::Threads { done, pending, .. } = &mut self.engine else {
                return Ok(());
            };
            while let Ok(d) = done.try_recv() {
                pending.insert(d.seq, d.result?);
            }
            if !self.write_next()? {
                return Ok(());
            }
        }
    }

    /// Wait for at least one chunk (or all, with `all`) and write what is in order.
    fn collect(&mut self, all: bool) -> io::Result<()> {
        loop {
            let Engine::Threads {
                done,
                pending,
                in_flight,
                ..
            } = &mut self.engine
            else {
                return Ok(());
            };
            if *in_flight == 0 {
                return Ok(());
            }
            if !pending.contains_key(&self.next_write) {
                let d = done
                    .recv()
                    .map_err(|_| io::Error::other("a compression thread stopped"))?;
                pending.insert(d.seq, d.result?);
                continue;
            }
            self.write_next()?;
            if !all {
                return Ok(());
            }
        }
    }

    fn write_next(&mut self) -> io::Result<bool> {
        let Engine::Threads {
            pending, in_flight, ..
        } = &mut self.engine
        else {
            return Ok(false);
        };
        let Some((out, crc)) = pending.remove(&self.next_write) else {
            return Ok(false);
        };
        *in_flight -= 1;
        self.emit(&out, &crc)?;
        Ok(true)
    }

    /// Write the final block and the gzip trailer; return the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.submit()?;
        self.collect(true)?;
        self.write_header()?;
        // An empty final block ends the deflate stream.
        let mut last = Compress::new(Compression::new(self.level), false);
        let mut out = Vec::with_capacity(64);
        last.compress_vec(&[], &mut out, FlushCompress::Finish)
            .map_err(io::Error::other)?;
        self.inner.write_all(&out)?;
        self.inner.write_all(&self.crc.sum().to_le_bytes())?;
        self.inner.write_all(&self.crc.amount().to_le_bytes())?;
        self.inner.flush()?;
        self.stop_workers();
        Ok(self.inner)
    }

    /// Workers also stop by themselves when the writer is dropped on an error:
    /// their job channel closes.
    fn stop_workers(&mut self) {
        if let Engine::Threads { jobs, workers, .. } = &mut self.engine {
            jobs.take();
            for w in workers.drain(..) {
                let _ = w.join();
            }
        }
    }
}

impl<W: Write> Write for GzipWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let room = CHUNK - self.chunk.len();
        let n = buf.len().min(room);
        self.chunk.extend_from_slice(&buf[..n]);
        if self.chunk.len() == CHUNK {
            self.submit()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn sample() -> (Vec<u8>, Vec<u8>) {
        let text = b"the quick brown fox jumps over the lazy dog 0123456789\n".repeat(60_000);
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let noise: Vec<u8> = (0..2_500_000)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        (text, noise)
    }

    fn compress(threads: usize, text: &[u8], noise: &[u8]) -> Vec<u8> {
        let mut gz = GzipWriter::with_threads(Vec::new(), 6, threads);
        gz.write_all(text).unwrap();
        gz.set_level(0).unwrap();
        // Odd-sized writes, as tar makes them.
        for part in noise.chunks(7777) {
            gz.write_all(part).unwrap();
        }
        gz.set_level(9).unwrap();
        gz.write_all(&text[..100_000]).unwrap();
        gz.set_level(1).unwrap();
        gz.finish().unwrap()
    }

    #[test]
    fn level_switches_and_threads_make_one_valid_gzip_member() {
        let (text, noise) = sample();
        let expected = [&text[..], &noise[..], &text[..100_000]].concat();
        let single = compress(1, &text, &noise);
        for threads in [1, 2, 3] {
            let out = compress(threads, &text, &noise);
            // Same chunks, same compressors: the bytes do not depend on the threads.
            assert_eq!(out, single, "threads = {threads}");
            let mut back = Vec::new();
            // A single-member decoder reads it all: one member, one stream.
            let mut dec = flate2::read::GzDecoder::new(&out[..]);
            dec.read_to_end(&mut back).unwrap();
            assert_eq!(back.len(), expected.len());
            assert!(back == expected);
        }
        // Text compresses; stored noise grows by a few bytes per chunk only.
        assert!(
            single.len() < noise.len() + noise.len() / 200 + 100_000,
            "{}",
            single.len()
        );
    }

    #[test]
    fn empty_stream_is_valid() {
        let out = GzipWriter::with_threads(Vec::new(), 6, 2).finish().unwrap();
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(&out[..])
            .read_to_end(&mut back)
            .unwrap();
        assert!(back.is_empty());
    }
}

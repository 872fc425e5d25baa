//! A blocking `Read` over an object's byte stream: a task of the current
//! runtime pulls the stream into a bounded channel, the reader (on a
//! blocking thread) takes from it. Memory holds a few chunks at most.

use std::io::{self, Read};

use bytes::{Buf, Bytes};
use futures_util::stream::{BoxStream, StreamExt};
use tokio::sync::mpsc;

const CHUNKS: usize = 4;

pub(super) struct ChannelReader {
    rx: mpsc::Receiver<io::Result<Bytes>>,
    current: Bytes,
    task: tokio::task::JoinHandle<()>,
}

impl ChannelReader {
    /// Must be called inside a runtime; read on a blocking thread.
    pub(super) fn spawn(mut stream: BoxStream<'static, object_store::Result<Bytes>>) -> Self {
        let (tx, rx) = mpsc::channel(CHUNKS);
        let task = tokio::spawn(async move {
            while let Some(item) = stream.next().await {
                let failed = item.is_err();
                if tx.send(item.map_err(io::Error::other)).await.is_err() || failed {
                    break;
                }
            }
        });
        ChannelReader {
            rx,
            current: Bytes::new(),
            task,
        }
    }
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(chunk) => self.current = chunk?,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        self.current.advance(n);
        Ok(n)
    }
}

impl Drop for ChannelReader {
    fn drop(&mut self) {
        // A reader that stops early stops the download too.
        self.task.abort();
    }
}

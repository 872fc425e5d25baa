//! A hostile HTTP server on the loopback interface: canned replies by path,
//! endless bodies, and a count of the bytes the client let through.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

#[derive(Clone)]
pub enum Body {
    Bytes(Vec<u8>),
    /// `prefix`, then `fill` bytes up to `len` in all, written as long as the
    /// client reads.
    Endless {
        prefix: Vec<u8>,
        fill: u8,
        len: u64,
    },
}

#[derive(Clone)]
pub struct Reply {
    pub status: &'static str,
    pub headers: Vec<(String, String)>,
    pub body: Body,
    /// Send `Content-Length` (else the body ends when the connection closes).
    pub length: bool,
}

impl Reply {
    pub fn ok(body: Body) -> Reply {
        Reply {
            status: "200 OK",
            headers: vec![("Content-Type".into(), "application/gzip".into())],
            body,
            length: true,
        }
    }
    pub fn redirect(to: &str) -> Reply {
        Reply {
            status: "302 Found",
            headers: vec![("Location".into(), to.into())],
            body: Body::Bytes(Vec::new()),
            length: true,
        }
    }
    pub fn header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.into(), value.into()));
        self
    }
}

/// Replies by path (without the query), one request per connection. Counts
/// the body bytes the kernel accepted: with a small send buffer that is what
/// the client read plus what the socket buffers hold.
pub struct Hostile {
    pub base: String,
    sent: Arc<AtomicU64>,
    requests: Arc<Mutex<Vec<String>>>,
}

impl Hostile {
    pub async fn start(routes: BTreeMap<&'static str, Reply>) -> Hostile {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_send_buffer_size(16 * 1024).unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let listener = socket.listen(16).unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (sent, requests) = (
            Arc::new(AtomicU64::new(0)),
            Arc::new(Mutex::new(Vec::new())),
        );
        let routes = Arc::new(routes);
        let (counter, seen) = (sent.clone(), requests.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (routes, counter, seen) = (routes.clone(), counter.clone(), seen.clone());
                tokio::spawn(async move {
                    let mut stream = BufReader::new(stream);
                    let mut line = String::new();
                    if stream.read_line(&mut line).await.is_err() {
                        return;
                    }
                    let target = line.split_whitespace().nth(1).unwrap_or_default();
                    let path = target.split('?').next().unwrap_or_default().to_string();
                    seen.lock().unwrap().push(target.to_string());
                    loop {
                        let mut header = String::new();
                        match stream.read_line(&mut header).await {
                            Ok(0) | Err(_) => break,
                            Ok(_) if header == "\r\n" => break,
                            Ok(_) => {}
                        }
                    }
                    let reply = routes.get(path.as_str()).cloned().unwrap_or(Reply {
                        status: "404 Not Found",
                        headers: Vec::new(),
                        body: Body::Bytes(b"nothing here".to_vec()),
                        length: true,
                    });
                    let _ = serve(stream.get_mut(), &reply, &counter).await;
                });
            }
        });
        Hostile {
            base,
            sent,
            requests,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::SeqCst)
    }

    pub fn requested(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

async fn serve(
    stream: &mut tokio::net::TcpStream,
    reply: &Reply,
    sent: &AtomicU64,
) -> std::io::Result<()> {
    let len = match &reply.body {
        Body::Bytes(b) => b.len() as u64,
        Body::Endless { len, .. } => *len,
    };
    let mut head = format!("HTTP/1.1 {}\r\nConnection: close\r\n", reply.status);
    if reply.length {
        head.push_str(&format!("Content-Length: {len}\r\n"));
    }
    for (k, v) in &reply.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await?;
    let (prefix, fill) = match &reply.body {
        Body::Bytes(b) => (b.clone(), None),
        Body::Endless { prefix, fill, .. } => (prefix.clone(), Some(*fill)),
    };
    stream.write_all(&prefix).await?;
    sent.fetch_add(prefix.len() as u64, Ordering::SeqCst);
    if let Some(fill) = fill {
        let chunk = vec![fill; 16 * 1024];
        let mut left = len - prefix.len() as u64;
        while left > 0 {
            let n = left.min(chunk.len() as u64) as usize;
            stream.write_all(&chunk[..n]).await?;
            sent.fetch_add(n as u64, Ordering::SeqCst);
            left -= n as u64;
        }
    }
    stream.shutdown().await
}

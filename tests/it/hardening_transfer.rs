//! What a hostile peer or a badly timed click must not achieve: the loader
//! against a hostile HTTP server on the loopback interface (endless
//! non-archives, oversized bodies, redirects to other schemes, server-chosen
//! file names); RFC 9110 ranges on the downloads; security headers on error
//! responses; page numbers out of range; dumps deprecated before they ran.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::support::{self, app::*};
use diskette::registry::DumpStatus;
use reqwest::StatusCode;
use reqwest::header::{
    CONTENT_RANGE, ETAG, IF_NONE_MATCH, IF_RANGE, LAST_MODIFIED, RANGE, REFERRER_POLICY,
};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

const MIB: u64 = 1024 * 1024;
const LIMIT: Duration = Duration::from_secs(120);
const DEPRECATED: &str = "deprecated before it was processed";

// ------------------------------------------------------------ hostile server

#[derive(Clone)]
enum Body {
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
struct Reply {
    status: &'static str,
    headers: Vec<(String, String)>,
    body: Body,
    /// Send `Content-Length` (else the body ends when the connection closes).
    length: bool,
}

impl Reply {
    fn ok(body: Body) -> Reply {
        Reply {
            status: "200 OK",
            headers: vec![("Content-Type".into(), "application/gzip".into())],
            body,
            length: true,
        }
    }
    fn redirect(to: &str) -> Reply {
        Reply {
            status: "302 Found",
            headers: vec![("Location".into(), to.into())],
            body: Body::Bytes(Vec::new()),
            length: true,
        }
    }
    fn header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.into(), value.into()));
        self
    }
}

/// Replies by path (without the query), one request per connection. Counts
/// the body bytes the kernel accepted: with a small send buffer that is what
/// the client read plus what the socket buffers hold.
struct Hostile {
    base: String,
    sent: Arc<AtomicU64>,
    requests: Arc<Mutex<Vec<String>>>,
}

impl Hostile {
    async fn start(routes: BTreeMap<&'static str, Reply>) -> Hostile {
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

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn sent(&self) -> u64 {
        self.sent.load(Ordering::SeqCst)
    }

    fn requested(&self) -> Vec<String> {
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

// ------------------------------------------------------------ loader side

fn reference_archive() -> Vec<u8> {
    fs::read(support::reference("storages.tar.gz")).unwrap()
}

/// A machine that loads: its configuration outside the working directory,
/// a working directory holding a `diskette.toml` of its own, a download
/// directory holding files that must survive.
struct Site {
    dir: tempfile::TempDir,
    config: PathBuf,
    work: PathBuf,
    downloads: PathBuf,
    dest: PathBuf,
}

impl Site {
    fn new(extra_load_config: &str) -> Site {
        let dir = support::temp_dir();
        let (work, dest) = (dir.path().join("work"), dir.path().join("dest"));
        let downloads = work.join("downloads");
        fs::create_dir_all(&downloads).unwrap();
        fs::create_dir_all(dest.join("media")).unwrap();
        fs::write(work.join("diskette.toml"), "# precious\n").unwrap();
        let config = support::write_config(
            &dir.path().join("config"),
            &format!(
                "[load]\nstorages_basepath = {}\ntimeout = 30\n{extra_load_config}",
                support::toml_path(&dest)
            ),
        );
        Site {
            dir,
            config,
            work,
            downloads,
            dest,
        }
    }

    async fn load(&self, args: &[&str]) -> support::Run {
        let mut cmd = support::diskette(&self.config, args);
        cmd.current_dir(&self.work)
            .env("TMPDIR", self.dir.path())
            .env_remove("DISKETTE_API_KEY");
        tokio::task::spawn_blocking(move || support::run(cmd, LIMIT))
            .await
            .unwrap()
    }

    fn dest_arg(&self) -> String {
        self.downloads.display().to_string()
    }
}

/// Names in a directory with their bytes.
fn contents(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_type().unwrap().is_file())
        .map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            (name, fs::read(e.path()).unwrap())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_that_is_not_an_archive_is_abandoned_within_its_first_mib() {
    let huge = 200 * MIB;
    // 1f 8b 08 with the FNAME flag, then a "name" that never ends.
    let named = vec![0x1f, 0x8b, 0x08, 0x08, 0, 0, 0, 0, 0, 0xff];
    let html = b"<!doctype html><html><body>".to_vec();
    let routes = BTreeMap::from([
        (
            "/zeros.tar.gz",
            Reply::ok(Body::Endless {
                prefix: Vec::new(),
                fill: 0,
                len: huge,
            }),
        ),
        (
            "/endless-name.tar.gz",
            Reply::ok(Body::Endless {
                prefix: named,
                fill: b'a',
                len: huge,
            }),
        ),
        (
            "/page.tar.gz",
            Reply::ok(Body::Endless {
                prefix: html,
                fill: b' ',
                len: huge,
            }),
        ),
    ]);
    let server = Hostile::start(routes).await;
    let site = Site::new("");
    let before = contents(&site.work);
    for path in ["/zeros.tar.gz", "/endless-name.tar.gz", "/page.tar.gz"] {
        let start = server.sent();
        let url = server.url(path);
        let run = site
            .load(&[
                "load",
                &url,
                "--no-data",
                "--download-destination",
                &site.dest_arg(),
            ])
            .await;
        assert_eq!(run.code, Some(1), "{path}: {}", run.stderr);
        assert!(
            run.stderr.contains("not a gzip archive") || run.stderr.contains("not a tar.gz"),
            "{path}: {}",
            run.stderr
        );
        // Give the server's writer a moment to see the closed connection.
        let mut sent = server.sent() - start;
        for _ in 0..50 {
            tokio::time::sleep(Duration::from_millis(20)).await;
            sent = server.sent() - start;
        }
        // One MiB read at most, plus what the loopback socket buffers hold.
        assert!(sent < 4 * MIB, "{path}: {sent} bytes were sent");
        assert!(contents(&site.downloads).is_empty(), "{path}");
    }
    assert_eq!(contents(&site.work), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn downloads_stop_at_max_download_bytes() {
    let archive = reference_archive();
    let unannounced = Reply {
        length: false,
        ..Reply::ok(Body::Bytes(archive.clone()))
    };
    let routes = BTreeMap::from([
        ("/announced.tar.gz", Reply::ok(Body::Bytes(archive.clone()))),
        ("/unannounced.tar.gz", unannounced),
    ]);
    let server = Hostile::start(routes).await;
    let site = Site::new("max_download_bytes = 4096\n");
    for path in ["/announced.tar.gz", "/unannounced.tar.gz"] {
        let url = server.url(path);
        let run = site
            .load(&[
                "load",
                &url,
                "--no-data",
                "--download-destination",
                &site.dest_arg(),
            ])
            .await;
        assert_eq!(run.code, Some(1), "{path}: {}", run.stderr);
        assert!(
            run.stderr.contains("max_download_bytes"),
            "{path}: {}",
            run.stderr
        );
        assert!(contents(&site.downloads).is_empty(), "{path}");
    }
    // Under the bound, the same archive loads.
    let site = Site::new(&format!("max_download_bytes = {}\n", archive.len()));
    let url = server.url("/unannounced.tar.gz");
    let run = site.load(&["load", &url, "--no-data"]).await;
    assert!(run.success(), "{}", run.stderr);
    assert!(site.dest.join("media/logo.png").is_file());
    // The configuration refuses a zero bound, naming it.
    let site = Site::new("max_download_bytes = 0\n");
    let run = site.load(&["load", &url, "--no-data"]).await;
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(
        run.stderr.contains("load.max_download_bytes"),
        "{}",
        run.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_to_other_schemes_are_refused_at_every_hop() {
    let routes = BTreeMap::from([
        ("/a.tar.gz", Reply::redirect("/b.tar.gz")),
        ("/b.tar.gz", Reply::redirect("file:///etc/passwd")),
        ("/c.tar.gz", Reply::redirect("ftp://127.0.0.1/c.tar.gz")),
        ("/api/dumps/latest", Reply::redirect("/b.tar.gz")),
    ]);
    let server = Hostile::start(routes).await;
    let site = Site::new("follow_redirects = true\n");
    for path in ["/a.tar.gz", "/c.tar.gz"] {
        let url = server.url(path);
        let run = site.load(&["load", &url, "--no-data"]).await;
        assert_eq!(run.code, Some(1), "{path}: {}", run.stderr);
        assert!(
            run.stderr.contains("is not allowed"),
            "{path}: {}",
            run.stderr
        );
    }
    let run = site
        .load(&[
            "load",
            "--server",
            &server.base,
            "--api-key",
            "dsk_key",
            "--no-data",
        ])
        .await;
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(
        run.stderr.contains("\"file://\" is not allowed"),
        "{}",
        run.stderr
    );
    let paths: Vec<String> = server
        .requested()
        .iter()
        .map(|r| r.split('?').next().unwrap().to_string())
        .collect();
    assert_eq!(
        paths,
        [
            "/a.tar.gz",
            "/b.tar.gz",
            "/c.tar.gz",
            "/api/dumps/latest",
            "/b.tar.gz"
        ]
    );
    assert!(contents(&site.downloads).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_saved_name_is_ours_and_no_existing_file_is_replaced_or_deleted() {
    let archive = reference_archive();
    let checksum = support::reference_b2("storages.tar.gz");
    let body = Body::Bytes(archive.clone());
    let routes = BTreeMap::from([
        (
            "/api/dumps/latest",
            Reply::ok(body.clone())
                .header("X-Diskette-Checksum", &checksum)
                .header(
                    "Content-Disposition",
                    "attachment; filename=\"../diskette.toml\"",
                ),
        ),
        (
            "/dumps/storages.tar.gz",
            Reply::ok(body).header(
                "Content-Disposition",
                "attachment; filename=\"diskette.toml\"",
            ),
        ),
    ]);
    let server = Hostile::start(routes).await;
    let site = Site::new("");
    // Files that happen to bear the names a download would take.
    for name in [
        "diskette-latest_storages.tar.gz",
        "storages.tar.gz",
        "diskette.toml",
    ] {
        fs::write(site.downloads.join(name), format!("precious {name}")).unwrap();
    }
    let kept_downloads = contents(&site.downloads);
    let kept_work = contents(&site.work);
    let dest = site.dest_arg();
    let url = server.url("/dumps/storages.tar.gz");
    let server_load = [
        "load",
        "--server",
        &server.base,
        "--api-key",
        "dsk_key",
        "--no-data",
    ];
    for args in [
        [&server_load[..], &["--download-destination", &dest]].concat(),
        vec!["load", &url, "--no-data", "--download-destination", &dest],
    ] {
        fs::remove_dir_all(site.dest.join("media")).unwrap();
        let run = site.load(&args).await;
        assert!(run.success(), "{args:?}: {}", run.stderr);
        assert!(site.dest.join("media/logo.png").is_file(), "{args:?}");
        // Only the file the command created was deleted.
        assert_eq!(contents(&site.downloads), kept_downloads, "{args:?}");
        assert_eq!(contents(&site.work), kept_work, "{args:?}");
    }
    // Kept in the working directory: under a fresh name of ours.
    let run = site.load(&[&server_load[..], &["--keep"]].concat()).await;
    assert!(run.success(), "{}", run.stderr);
    let now = contents(&site.work);
    assert_eq!(now["diskette.toml"], kept_work["diskette.toml"]);
    let new: Vec<_> = now.keys().filter(|k| !kept_work.contains_key(*k)).collect();
    assert_eq!(new, ["diskette-latest_storages.tar.gz"]);
    assert_eq!(now[new[0]], archive);
}

// ------------------------------------------------------------ web side

fn add_media(app: &TestApp) {
    let dir = app.config.storages.basepath.join("media/videos");
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join("clip.bin"), support::noise(512 * 1024, 7)).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ranges_follow_rfc_9110() {
    let app = spawn_app().await;
    add_media(&app);
    let client = app.login(STAFF).await;
    let id = client.create_dump(false, true).await;
    assert_eq!(app.wait_finished(id).await, DumpStatus::Processed);
    let dump = app.dump(id).await;
    let (size, checksum) = (dump.size.unwrap() as usize, dump.checksum.clone().unwrap());
    // An archive written an hour ago: its modification date is a strong validator.
    let file = fs::File::options()
        .write(true)
        .open(app.archive_path(&dump))
        .unwrap();
    file.set_modified(std::time::SystemTime::now() - Duration::from_secs(3600))
        .unwrap();
    let url = app.url(&format!("/dumps/{id}/download"));
    let full = client.get(&url).send().await.unwrap();
    let date = full.headers()[LAST_MODIFIED].to_str().unwrap().to_string();
    let body = full.bytes().await.unwrap();
    assert_eq!(body.len(), size);

    let strong = format!("\"{checksum}\"");
    for validator in [strong.as_str(), date.as_str()] {
        let res = client
            .get(&url)
            .header(RANGE, "bytes=0-99")
            .header(IF_RANGE, validator)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::PARTIAL_CONTENT, "{validator}");
        assert_eq!(
            res.headers()[CONTENT_RANGE].to_str().unwrap(),
            format!("bytes 0-99/{size}")
        );
        assert_eq!(&res.bytes().await.unwrap()[..], &body[..100]);
    }
    let weak = format!("W/{strong}");
    for stale in [
        weak.as_str(),
        "\"another-archive\"",
        "Sat, 01 Jan 2000 00:00:00 GMT",
        "not a validator",
    ] {
        let res = client
            .get(&url)
            .header(RANGE, "bytes=0-99")
            .header(IF_RANGE, stale)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK, "If-Range: {stale}");
        assert_eq!(&res.bytes().await.unwrap()[..], &body[..], "{stale}");
    }
    for garbage in [
        "bytes=abc",
        "chars=0-9",
        "bytes=0-9;x",
        "bytes",
        "bytes=--5",
    ] {
        let res = client
            .get(&url)
            .header(RANGE, garbage)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK, "Range: {garbage}");
        assert_eq!(res.bytes().await.unwrap().len(), size, "{garbage}");
    }
    // If-None-Match compares weakly.
    let res = client
        .get(&url)
        .header(IF_NONE_MATCH, &weak)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_MODIFIED);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumed_api_download_never_mixes_two_archives() {
    let app = spawn_app().await;
    let admin = app.login(ADMIN).await;
    let res = admin
        .post_form("/api-keys", "/api-keys", &[("name", "resume")])
        .await;
    let key = text_of_id(&res.text().await.unwrap(), "new-key").unwrap();
    let url = app.url("/api/dumps/latest?data=0&storages=1");
    let first = admin.create_dump(false, true).await;
    app.wait_finished(first).await;
    let res = admin.get(&url).bearer_auth(&key).send().await.unwrap();
    let etag = res.headers()[ETAG].to_str().unwrap().to_string();
    // A newer dump replaces it while the client is away.
    add_media(&app);
    let second = admin.create_dump(false, true).await;
    app.wait_finished(second).await;
    let newer = app.dump(second).await;
    let res = admin
        .get(&url)
        .bearer_auth(&key)
        .header(RANGE, "bytes=100-")
        .header(IF_RANGE, &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(b2sum(&res.bytes().await.unwrap()), newer.checksum.unwrap());
    app.stop().await;
}

fn assert_security_headers(res: &reqwest::Response, what: &str) {
    let h = res.headers();
    let csp = h
        .get("content-security-policy")
        .map(|v| v.to_str().unwrap());
    assert!(
        csp.is_some_and(|c| c.contains("frame-ancestors 'none'")),
        "{what}: {h:?}"
    );
    assert_eq!(
        h.get("x-content-type-options").unwrap(),
        "nosniff",
        "{what}"
    );
    assert_eq!(h.get("x-frame-options").unwrap(), "DENY", "{what}");
    assert!(h.get(REFERRER_POLICY).is_some(), "{what}: {h:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_responses_carry_the_security_headers() {
    let app = spawn_app().await;
    let client = app.client();
    let big = "x".repeat(200 * 1024);
    let res = client
        .post(app.url("/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("username={big}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_security_headers(&res, "413");
    let res = client.get(app.url("/no/such/page")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    assert_security_headers(&res, "404");
    let res = client.delete(app.url("/dumps")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_security_headers(&res, "405");
    let res = client
        .get(app.url("/api/dumps/latest"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_security_headers(&res, "401");
    // The registry goes away: a 500.
    app.registry.pool().close().await;
    let res = client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_security_headers(&res, "500");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_numbers_are_bounded() {
    let app = spawn_app().await;
    let client = app.login(STAFF).await;
    let id = client.create_dump(true, false).await;
    app.wait_finished(id).await;
    for huge in [
        "9223372036854775807",
        "18446744073709551615",
        "99999999999999999999999999",
    ] {
        let res = client
            .get(app.url(&format!("/dumps?page={huge}")))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK, "page={huge}");
        let html = res.text().await.unwrap();
        assert!(html.contains("Page 1 of 1"), "page={huge}: the last page");
        assert!(
            html.contains(&format!("href=\"/dumps/{id}\"")),
            "page={huge}"
        );
    }
    for bad in ["-1", "0", "abc", "1e3"] {
        let res = client
            .get(app.url(&format!("/dumps?page={bad}")))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "page={bad}");
        assert!(res.text().await.unwrap().contains("page"), "page={bad}");
    }
    app.stop().await;
}

// ------------------------------------------------------------ deprecation of queued and running dumps

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

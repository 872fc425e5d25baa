//! `diskette load URL` against a tiny HTTP server on the loopback interface.

use crate::support;
use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(120);

fn reference_archive() -> PathBuf {
    support::reference("storages.tar.gz")
}

#[derive(Clone)]
struct Reply {
    status: &'static str,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// Announce more bytes than the body has, then close (a broken transfer).
    short: bool,
}

impl Reply {
    fn ok(body: Vec<u8>) -> Self {
        Reply {
            status: "200 OK",
            headers: vec![("Content-Type".into(), "application/gzip".into())],
            body,
            short: false,
        }
    }
    fn status(status: &'static str) -> Self {
        Reply {
            status,
            headers: Vec::new(),
            body: b"<html>nope</html>".to_vec(),
            short: false,
        }
    }
}

/// Serves fixed replies by path, one request per connection; records the
/// paths it was asked for. Lives until the test process ends.
struct Server {
    base: String,
    requests: Arc<Mutex<Vec<String>>>,
    /// Request headers of each request, lowercased (`name: value`).
    headers: Arc<Mutex<Vec<Vec<String>>>>,
}

impl Server {
    fn start(routes: BTreeMap<&'static str, Reply>) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let headers = Arc::new(Mutex::new(Vec::new()));
        let seen = requests.clone();
        let seen_headers = headers.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                if reader.read_line(&mut line).is_err() {
                    continue;
                }
                let path = line
                    .split_whitespace()
                    .nth(1)
                    .unwrap_or_default()
                    .to_string();
                let mut headers = Vec::new();
                loop {
                    let mut header = String::new();
                    match reader.read_line(&mut header) {
                        Ok(0) | Err(_) => break,
                        Ok(_) if header == "\r\n" => break,
                        Ok(_) => headers.push(header.trim_end().to_ascii_lowercase()),
                    }
                }
                seen.lock().unwrap().push(path.clone());
                seen_headers.lock().unwrap().push(headers);
                let reply = routes
                    .get(path.as_str())
                    .cloned()
                    .unwrap_or_else(|| Reply::status("404 Not Found"));
                let length = reply.body.len() + if reply.short { 1000 } else { 0 };
                let mut head = format!(
                    "HTTP/1.1 {}\r\nContent-Length: {length}\r\nConnection: close\r\n",
                    reply.status
                );
                for (k, v) in &reply.headers {
                    head.push_str(&format!("{k}: {v}\r\n"));
                }
                head.push_str("\r\n");
                let _ = stream.write_all(head.as_bytes());
                let _ = stream.write_all(&reply.body);
                let _ = stream.flush();
            }
        });
        Server {
            base,
            requests,
            headers,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn requested(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }

    fn request_headers(&self) -> Vec<Vec<String>> {
        self.headers.lock().unwrap().clone()
    }
}

fn standard_server() -> Server {
    let archive = fs::read(reference_archive()).unwrap();
    let mut routes = BTreeMap::new();
    routes.insert("/dumps/storages.tar.gz", Reply::ok(archive.clone()));
    let mut moved = Reply::status("302 Found");
    moved
        .headers
        .push(("Location".into(), "/dumps/storages.tar.gz".into()));
    routes.insert("/latest", moved);
    routes.insert("/gone", Reply::status("404 Not Found"));
    routes.insert(
        "/broken.tar.gz",
        Reply {
            short: true,
            ..Reply::ok(archive[..archive.len() / 2].to_vec())
        },
    );
    Server::start(routes)
}

/// A sandbox with a destination, a download directory and its own TMPDIR.
struct Site {
    dir: tempfile::TempDir,
    dest: PathBuf,
    downloads: PathBuf,
    tmp: PathBuf,
    config: PathBuf,
}

impl Site {
    fn new(extra_load_config: &str) -> Site {
        let dir = support::temp_dir();
        let dest = dir.path().join("dest");
        let downloads = dir.path().join("downloads");
        let tmp = dir.path().join("tmp");
        fs::create_dir_all(&tmp).unwrap();
        fs::create_dir_all(&downloads).unwrap();
        support::write_files(&dest, [("media/old.txt", "old\n")]);
        let config = support::write_config(
            &dir.path().join("config"),
            &format!(
                "[load]\nstorages_basepath = {}\ntimeout = 30\n{extra_load_config}",
                support::toml_path(&dest)
            ),
        );
        Site {
            dir,
            dest,
            downloads,
            tmp,
            config,
        }
    }

    fn load(&self, url: &str, args: &[&str]) -> support::Run {
        let mut all = vec!["load", url, "--no-data"];
        all.extend_from_slice(args);
        let mut cmd = support::diskette(&self.config, &all);
        cmd.env("TMPDIR", &self.tmp).current_dir(self.dir.path());
        support::run(cmd, LIMIT)
    }

    fn download_args(&self) -> [&str; 2] {
        ["--download-destination", self.downloads.to_str().unwrap()]
    }
}

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn untouched(site: &Site) {
    assert_eq!(entries(&site.dest.join("media")), ["old.txt"]);
    assert!(
        entries(&site.downloads).is_empty(),
        "{:?}",
        entries(&site.downloads)
    );
    assert!(entries(&site.tmp).is_empty(), "{:?}", entries(&site.tmp));
}

#[test]
fn loads_by_url_and_deletes_the_download() {
    let server = standard_server();
    let site = Site::new("");
    let run = site.load(&server.url("/dumps/storages.tar.gz"), &site.download_args());
    assert!(run.success(), "{}", run.stderr);
    assert!(site.dest.join("media/logo.png").is_file());
    assert!(!site.dest.join("media/old.txt").exists());
    assert!(
        entries(&site.downloads).is_empty(),
        "{:?}",
        entries(&site.downloads)
    );

    // Without a download destination: a private temporary directory, removed too.
    let run = site.load(&server.url("/dumps/storages.tar.gz"), &[]);
    assert!(run.success(), "{}", run.stderr);
    assert!(entries(&site.tmp).is_empty(), "{:?}", entries(&site.tmp));
}

#[test]
fn keep_leaves_the_downloaded_archive() {
    let server = standard_server();
    let site = Site::new("");
    let mut args = site.download_args().to_vec();
    args.push("--keep");
    let run = site.load(&server.url("/dumps/storages.tar.gz"), &args);
    assert!(run.success(), "{}", run.stderr);
    assert_eq!(entries(&site.downloads), ["storages.tar.gz"]);
    assert_eq!(
        fs::read(site.downloads.join("storages.tar.gz")).unwrap(),
        fs::read(reference_archive()).unwrap()
    );
    // A second download does not overwrite the first.
    let run = site.load(&server.url("/dumps/storages.tar.gz"), &args);
    assert!(run.success(), "{}", run.stderr);
    assert_eq!(
        entries(&site.downloads),
        ["storages-1.tar.gz", "storages.tar.gz"]
    );
}

#[test]
fn redirect_is_refused_by_default() {
    let server = standard_server();
    let site = Site::new("");
    let run = site.load(&server.url("/latest"), &site.download_args());
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(run.stderr.contains("302"), "{}", run.stderr);
    assert!(
        run.stderr.contains("/dumps/storages.tar.gz"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("follow_redirects"), "{}", run.stderr);
    assert_eq!(server.requested(), ["/latest"]);
    untouched(&site);
}

#[test]
fn redirect_is_followed_when_allowed() {
    let server = standard_server();
    let site = Site::new("follow_redirects = true\n");
    let run = site.load(&server.url("/latest"), &site.download_args());
    assert!(run.success(), "{}", run.stderr);
    assert!(site.dest.join("media/logo.png").is_file());
    assert_eq!(server.requested(), ["/latest", "/dumps/storages.tar.gz"]);
}

#[test]
fn not_found_is_a_clear_error() {
    let server = standard_server();
    let site = Site::new("");
    let run = site.load(&server.url("/gone"), &site.download_args());
    assert_eq!(run.code, Some(1));
    let line = run
        .stderr
        .lines()
        .find(|l| l.starts_with("error:"))
        .unwrap();
    assert!(
        line.contains("404 Not Found") && line.contains("/gone"),
        "{line}"
    );
    untouched(&site);
}

#[test]
fn broken_transfer_leaves_no_file() {
    let server = standard_server();
    let site = Site::new("");
    let run = site.load(&server.url("/broken.tar.gz"), &site.download_args());
    assert_eq!(run.code, Some(1));
    assert!(run.stderr.contains("broke off"), "{}", run.stderr);
    untouched(&site);
}

#[test]
fn unsupported_scheme_is_refused() {
    let server = standard_server();
    let site = Site::new("protocols = [\"https://\"]\n");
    let run = site.load(&server.url("/dumps/storages.tar.gz"), &site.download_args());
    assert_eq!(run.code, Some(1));
    assert!(
        run.stderr.contains("\"http://\" is not allowed"),
        "{}",
        run.stderr
    );

    let run = site.load(
        "ftp://127.0.0.1/dumps/storages.tar.gz",
        &site.download_args(),
    );
    assert_eq!(run.code, Some(1));
    assert!(
        run.stderr.contains("\"ftp://\" is not allowed"),
        "{}",
        run.stderr
    );
    assert!(server.requested().is_empty());
    untouched(&site);
}

#[test]
fn checksum_mismatch_on_a_download_is_refused() {
    let server = standard_server();
    let site = Site::new("");
    let wrong = "0".repeat(128);
    let run = site.load(
        &server.url("/dumps/storages.tar.gz"),
        &[&site.download_args()[..], &["--checksum", &wrong]].concat(),
    );
    assert_eq!(run.code, Some(1));
    assert!(run.stderr.contains("checksum mismatch"), "{}", run.stderr);
    untouched(&site);

    let good = support::reference_b2("storages.tar.gz");
    let run = site.load(
        &server.url("/dumps/storages.tar.gz"),
        &[&site.download_args()[..], &["--checksum", &good]].concat(),
    );
    assert!(run.success(), "{}", run.stderr);
    assert!(site.dest.join("media/logo.png").is_file());
}

#[test]
fn library_sends_headers_to_the_origin_only_and_returns_captured_ones() {
    let archive = fs::read(reference_archive()).unwrap();
    let mut reply = Reply::ok(archive.clone());
    reply.headers.push(("X-Checksum".into(), "abc123".into()));
    let other = Server::start(BTreeMap::from([("/x.tar.gz", reply.clone())]));
    let mut away = Reply::status("307 Temporary Redirect");
    away.headers
        .push(("Location".into(), other.url("/x.tar.gz")));
    let origin = Server::start(BTreeMap::from([("/x.tar.gz", reply), ("/away", away)]));

    let config = diskette::config::LoadConfig {
        follow_redirects: true,
        ..Default::default()
    };
    let dir = support::temp_dir();
    let request = diskette::fetch::Request {
        url: &origin.url("/x.tar.gz"),
        headers: &[("Authorization", "Bearer KEY")],
        capture: &["x-checksum", "X-Absent"],
    };
    let got =
        diskette::fetch::fetch(&config, &request, dir.path(), &diskette::progress::Silent).unwrap();
    assert_eq!(fs::read(&got.path).unwrap(), archive);
    assert_eq!(got.path, dir.path().join("x.tar.gz"));
    assert_eq!(got.size, archive.len() as u64);
    assert_eq!(
        got.checksum,
        diskette::checksum::of_reader(&archive[..]).unwrap()
    );
    assert_eq!(
        got.headers,
        BTreeMap::from([("x-checksum".to_string(), "abc123".to_string())])
    );
    assert!(origin.request_headers()[0].contains(&"authorization: bearer key".to_string()));

    // Through a redirect to another origin, the credentials stay behind.
    let request = diskette::fetch::Request {
        url: &origin.url("/away"),
        ..request
    };
    let got =
        diskette::fetch::fetch(&config, &request, dir.path(), &diskette::progress::Silent).unwrap();
    assert_eq!(got.path, dir.path().join("away"));
    assert_eq!(got.final_url, other.url("/x.tar.gz"));
    assert_eq!(other.requested(), ["/x.tar.gz"]);
    assert!(
        other.request_headers()[0]
            .iter()
            .all(|h| !h.starts_with("authorization")),
        "{:?}",
        other.request_headers()
    );
}

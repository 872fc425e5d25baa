//! Shared helpers of the web integration tests: a real server on a random
//! loopback port over a fresh demo workspace and registry, and an HTTP
//! client that logs in and fills forms like a browser would.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use diskette::Config;
use diskette::registry::{DumpId, DumpStatus, Password, Registry, Username};
use diskette::web::Server;
use diskette::worker::Archiver;
use reqwest::{Client, Response, StatusCode};
use scraper::{Html, Selector};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub const ADMIN: &str = "admin";
pub const STAFF: &str = "staff";
pub const NOT_STAFF: &str = "visitor";
pub const PASSWORD: &str = "correct-horse-battery";

pub struct TestApp {
    pub base: String,
    pub dir: tempfile::TempDir,
    pub config: Config,
    pub registry: Registry,
    pub shutdown: CancellationToken,
    pub handle: Option<JoinHandle<diskette::Result<()>>>,
}

/// Options of a test server.
pub struct Setup {
    pub archiver: Archiver,
    /// Configuration overrides, as `DISKETTE_SECTION_KEY` variables.
    pub env: Vec<(String, String)>,
}

impl Default for Setup {
    fn default() -> Self {
        Setup {
            archiver: diskette::worker::engine(),
            env: Vec::new(),
        }
    }
}

pub fn workspace() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let config_path =
        diskette::demo::create_workspace(&dir.path().join("site")).expect("demo workspace");
    (dir, config_path)
}

pub fn load_config(config_path: &Path, env: &[(String, String)]) -> Config {
    Config::load(config_path, env.to_vec()).expect("config")
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(Setup::default()).await
}

pub async fn spawn_app_with(setup: Setup) -> TestApp {
    let (dir, config_path) = workspace();
    spawn_on(dir, &config_path, setup).await
}

/// Start a server over an existing workspace (crash-recovery tests prepare one).
pub async fn spawn_on(dir: tempfile::TempDir, config_path: &Path, setup: Setup) -> TestApp {
    let config = load_config(config_path, &setup.env);
    let server = Server::build(config.clone(), Some("127.0.0.1:0"), setup.archiver)
        .await
        .expect("server builds");
    let base = format!("http://{}", server.local_addr());
    let registry = server.registry();
    let shutdown = server.shutdown_token();
    let handle = tokio::spawn(server.run());
    let app = TestApp {
        base,
        dir,
        config,
        registry,
        shutdown,
        handle: Some(handle),
    };
    app.add_user(ADMIN, true).await;
    app.add_user(STAFF, false).await;
    let id = app.add_user(NOT_STAFF, false).await;
    app.registry
        .set_user_flags(diskette::registry::Actor::System, id, true, false, false)
        .await
        .unwrap();
    app
}

impl TestApp {
    pub async fn add_user(&self, name: &str, superuser: bool) -> diskette::registry::UserId {
        let username: Username = name.parse().unwrap();
        self.registry
            .create_user(
                &username,
                &Password::new(PASSWORD.into()).unwrap(),
                superuser,
            )
            .await
            .expect("user added")
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub fn dump_dir(&self) -> PathBuf {
        self.config.dump.path.clone()
    }

    /// Stop the server as SIGTERM would, and check it ended cleanly (a panic
    /// in a task or a serve error fails the test).
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(h) = self.handle.take() {
            h.await.expect("server task").expect("server ended cleanly");
        }
    }

    /// A browser-like client: cookies, no automatic redirects.
    pub fn client(&self) -> Client {
        Client::builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap()
    }

    /// The CSRF token of the first form of a page.
    pub async fn csrf(&self, client: &Client, path: &str) -> String {
        let res = client.get(self.url(path)).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK, "GET {path}");
        let html = res.text().await.unwrap();
        token_in(&html).unwrap_or_else(|| panic!("no csrf_token on {path}"))
    }

    pub async fn login_response(
        &self,
        client: &Client,
        username: &str,
        password: &str,
    ) -> Response {
        let token = self.csrf(client, "/login").await;
        client
            .post(self.url("/login"))
            .form(&[
                ("csrf_token", token.as_str()),
                ("username", username),
                ("password", password),
            ])
            .send()
            .await
            .unwrap()
    }

    /// A logged-in client.
    pub async fn login(&self, username: &str) -> Client {
        let client = self.client();
        let res = self.login_response(&client, username, PASSWORD).await;
        assert_eq!(res.status(), StatusCode::SEE_OTHER, "login of {username}");
        client
    }

    /// POST a form of `page` (its token included) to `action`.
    pub async fn post_form(
        &self,
        client: &Client,
        page: &str,
        action: &str,
        fields: &[(&str, &str)],
    ) -> Response {
        let token = self.csrf(client, page).await;
        let mut form: Vec<(&str, &str)> = vec![("csrf_token", token.as_str())];
        form.extend_from_slice(fields);
        client
            .post(self.url(action))
            .form(&form)
            .send()
            .await
            .unwrap()
    }

    /// Create a dump from the web form; returns its id (from the 303).
    pub async fn create_dump(&self, client: &Client, data: bool, storages: bool) -> DumpId {
        let mut fields = Vec::new();
        if data {
            fields.push(("with_data", "1"));
        }
        if storages {
            fields.push(("with_storages", "1"));
        }
        let res = self
            .post_form(client, "/dumps/new", "/dumps", &fields)
            .await;
        assert_eq!(res.status(), StatusCode::SEE_OTHER);
        dump_id_of(&res)
    }

    /// Wait until the job of `id` has finished; returns its final status.
    pub async fn wait_finished(&self, id: DumpId) -> DumpStatus {
        // A bound so a broken job fails the test instead of hanging it.
        for _ in 0..1200 {
            let dump = self.registry.dump(id).await.unwrap().expect("dump exists");
            if !dump.status.in_flight() {
                return dump.status;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("dump {id} did not finish");
    }

    pub async fn dump(&self, id: DumpId) -> diskette::registry::Dump {
        self.registry.dump(id).await.unwrap().expect("dump exists")
    }

    pub fn archive_path(&self, dump: &diskette::registry::Dump) -> PathBuf {
        self.dump_dir()
            .join(dump.filename.as_deref().expect("a file name"))
    }

    /// Names in the dump directory.
    pub fn dump_dir_entries(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.dump_dir())
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }
}

pub fn dump_id_of(res: &Response) -> DumpId {
    let location = res.headers()["location"].to_str().unwrap();
    location
        .strip_prefix("/dumps/")
        .expect("redirect to a dump")
        .parse()
        .expect("an id")
}

pub fn token_in(html: &str) -> Option<String> {
    let doc = Html::parse_document(html);
    let sel = Selector::parse("input[name=csrf_token]").unwrap();
    doc.select(&sel)
        .next()
        .and_then(|e| e.value().attr("value"))
        .map(str::to_string)
}

/// Text of the element with this id.
pub fn text_of_id(html: &str, id: &str) -> Option<String> {
    let doc = Html::parse_document(html);
    let sel = Selector::parse(&format!("#{id}")).unwrap();
    doc.select(&sel)
        .next()
        .map(|e| e.text().collect::<String>())
}

pub fn b2sum(bytes: &[u8]) -> String {
    diskette::checksum::of_reader(bytes).unwrap()
}

/// An archiver that fails while `fail` is set, else runs the real engine.
pub fn failing_switch() -> (Archiver, Arc<std::sync::atomic::AtomicBool>) {
    let fail = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = fail.clone();
    let archiver: Archiver = Arc::new(move |config, opts, progress| {
        if flag.load(std::sync::atomic::Ordering::SeqCst) {
            progress.log("injected failure");
            return Err(diskette::Error::Data("injected failure".into()));
        }
        diskette::dump::dump(config, opts, progress)
    });
    (archiver, fail)
}

/// A server process left running by a failed assertion is killed.
pub struct KillOnDrop(pub Option<std::process::Child>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(c) = self.0.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Start the real `diskette serve` on a random loopback port, through `sh`
/// so that `shell_prefix` can set limits first (`ulimit -f 1024;`); the
/// shell `exec`s, so the process is the server itself. Returns the process
/// and its address.
pub async fn serve_process(config_path: &Path, shell_prefix: &str) -> (KillOnDrop, String) {
    let script = format!("{shell_prefix} exec \"$0\" --config \"$1\" serve --addr 127.0.0.1:0");
    let mut child = std::process::Command::new("sh")
        .arg("-c")
        .arg(script)
        .arg(env!("CARGO_BIN_EXE_diskette"))
        .arg(config_path)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let addr = tokio::task::spawn_blocking(move || {
        use std::io::BufRead;
        let mut lines = std::io::BufReader::new(stderr).lines();
        for line in lines.by_ref() {
            if let Some(rest) = line.unwrap().split("serving on http://").nth(1) {
                let addr = rest.trim().to_string();
                // Keep draining so the server never writes into a full pipe.
                std::thread::spawn(move || lines.for_each(drop));
                return addr;
            }
        }
        panic!("the server never said where it listens");
    })
    .await
    .unwrap();
    (KillOnDrop(Some(child)), addr)
}

/// Incompressible bytes (xorshift), cheap to make in a debug build.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

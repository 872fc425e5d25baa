//! The web application under test: the real server, in this process so a
//! test can reach its registry and swap its archiver, on a random loopback
//! port over a fresh demo workspace with three users (superuser, staff, not
//! staff). Clients come from [`Web`]; the server as a separate process is
//! `support::process`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use diskette::Config;
use diskette::registry::{DumpId, DumpStatus, Password, Registry, Username};
use diskette::web::Server;
use diskette::worker::Archiver;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use super::web::{Web, dump_id_of, text_of_id};

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

    /// A logged-out browser-like client of this server.
    pub fn client(&self) -> Web {
        Web::new(&self.base)
    }

    /// A client logged in as `username` (every test user has `PASSWORD`).
    pub async fn login(&self, username: &str) -> Web {
        let web = self.client();
        web.log_in(username, PASSWORD).await;
        web
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

    /// The dump once its file is purged, or after a bound. The purge follows
    /// the commit of the dump that replaced it, so it may come a moment
    /// after that dump is seen as processed; the caller asserts.
    pub async fn wait_purged(&self, id: DumpId) -> diskette::registry::Dump {
        for _ in 0..200 {
            let dump = self.dump(id).await;
            if dump.purged_at.is_some() {
                return dump;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.dump(id).await
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

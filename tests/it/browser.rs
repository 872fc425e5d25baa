//! What a staff user does, in headless Chromium driven through chromedriver's
//! WebDriver HTTP API: log in, create a data + storages dump, wait for it
//! (the page updates itself), download it, check its `b2sum` against the
//! checksum shown; then create another and see the first one deprecated, its
//! download gone and its file removed.
//!
//! Needs `chromium` and `chromium-driver` (Debian). Without them the test is
//! skipped loudly, unless `CI` is set: then it fails.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::support::app::*;
use serde_json::{Value, json};

const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

fn find_program(env: &str, names: &[&str]) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(env) {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| names.iter().map(move |n| dir.join(n)))
        .find(|p| p.is_file())
}

/// A chromedriver process and one browser session; both end on drop.
struct Browser {
    http: reqwest::Client,
    driver: Child,
    base: String,
    session: String,
    _profile: tempfile::TempDir,
}

impl Drop for Browser {
    fn drop(&mut self) {
        // chromedriver leads its own process group, and Chromium's processes
        // stay in it: end them all, even when the test failed half-way.
        let _ = Command::new("kill")
            .args(["-TERM", "--", &format!("-{}", self.driver.id())])
            .status();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Browser {
    async fn start(chromium: &Path, chromedriver: &Path, downloads: &Path) -> Browser {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let driver = Command::new(chromedriver)
            .process_group(0)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let http = reqwest::Client::new();
        let base = format!("http://127.0.0.1:{port}");
        for _ in 0..200 {
            if let Ok(r) = http.get(format!("{base}/status")).send().await
                && r.status().is_success()
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let profile = tempfile::tempdir().unwrap();
        let args = vec![
            "--headless".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-quic".into(),
            "--no-first-run".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--disable-dev-shm-usage".into(),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium.display().to_string(),
                "args": args,
                "prefs": {
                    "download.default_directory": downloads.display().to_string(),
                    "download.prompt_for_download": false,
                    "safebrowsing.enabled": false
                }
            }
        }}});
        let mut browser = Browser {
            http,
            driver,
            base,
            session: String::new(),
            _profile: profile,
        };
        let res = browser.call("POST", "/session", Some(caps)).await;
        browser.session = res["value"]["sessionId"]
            .as_str()
            .expect("a session")
            .to_string();
        // Headless Chromium saves downloads only when told where.
        browser
            .cmd(
                "POST",
                "/chromium/send_command",
                json!({"cmd": "Page.setDownloadBehavior",
                       "params": {"behavior": "allow", "downloadPath": downloads.display().to_string()}}),
            )
            .await;
        browser
    }

    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}{}", self.base, path);
        let req = match method {
            "GET" => self.http.get(&url),
            "DELETE" => self.http.delete(&url),
            _ => self
                .http
                .post(&url)
                .header("content-type", "application/json")
                .body(body.unwrap_or(json!({})).to_string()),
        };
        let res = req.send().await.expect("chromedriver answers");
        let status = res.status();
        let value: Value = serde_json::from_slice(&res.bytes().await.unwrap()).unwrap();
        assert!(status.is_success(), "{method} {path}: {status} {value}");
        value
    }

    async fn cmd(&self, method: &str, path: &str, body: Value) -> Value {
        let path = format!("/session/{}{}", self.session, path);
        self.call(method, &path, Some(body)).await["value"].clone()
    }

    async fn goto(&self, url: &str) {
        self.cmd("POST", "/url", json!({"url": url})).await;
    }

    async fn find(&self, css: &str) -> Option<String> {
        let path = format!("{}/session/{}/element", self.base, self.session);
        let body = json!({"using": "css selector", "value": css}).to_string();
        let res = self
            .http
            .post(path)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .ok()?;
        if !res.status().is_success() {
            return None;
        }
        let v: Value = serde_json::from_slice(&res.bytes().await.ok()?).ok()?;
        v["value"][ELEMENT_KEY].as_str().map(str::to_string)
    }

    async fn must_find(&self, css: &str) -> String {
        self.find(css)
            .await
            .unwrap_or_else(|| panic!("no element {css}"))
    }

    async fn text(&self, css: &str) -> Option<String> {
        let id = self.find(css).await?;
        let path = format!("{}/session/{}/element/{id}/text", self.base, self.session);
        let res = self.http.get(path).send().await.ok()?;
        let v: Value = serde_json::from_slice(&res.bytes().await.ok()?).ok()?;
        v["value"].as_str().map(str::to_string)
    }

    async fn type_into(&self, css: &str, text: &str) {
        let id = self.must_find(css).await;
        self.cmd(
            "POST",
            &format!("/element/{id}/value"),
            json!({"text": text}),
        )
        .await;
    }

    async fn click(&self, css: &str) {
        let id = self.must_find(css).await;
        self.cmd("POST", &format!("/element/{id}/click"), json!({}))
            .await;
    }

    async fn url(&self) -> String {
        self.cmd("GET", "/url", json!({}))
            .await
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    async fn title(&self) -> String {
        self.cmd("GET", "/title", json!({}))
            .await
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Wait for the navigation a click started: until the URL satisfies `ok`.
    async fn wait_url(&self, ok: impl Fn(&str) -> bool) -> String {
        for _ in 0..600 {
            let url = self.url().await;
            if ok(&url) {
                return url;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the browser stayed on {}", self.url().await);
    }

    /// Wait until `#status` shows `word` (the page polls and reloads itself).
    async fn wait_status(&self, word: &str) {
        for _ in 0..600 {
            if self.text("#status").await.as_deref() == Some(word) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the page never showed status {word}");
    }
}

fn wait_for_download(dir: &Path) -> PathBuf {
    for _ in 0..600 {
        let done: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "gz"))
            .collect();
        let partial = std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .any(|e| e.file_name().to_string_lossy().ends_with(".crdownload"));
        if let [file] = done.as_slice()
            && !partial
        {
            return file.clone();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("the download never finished");
}

fn b2sum_of(path: &Path) -> String {
    // The tool a user runs, when present; the same digest from the library otherwise.
    match Command::new("b2sum").arg(path).output() {
        Ok(out) if out.status.success() => String::from_utf8(out.stdout)
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap()
            .to_string(),
        _ => diskette::checksum::of_reader(std::fs::File::open(path).unwrap()).unwrap(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staff_user_creates_downloads_and_replaces_a_dump() {
    let chromium = find_program(
        "CHROME_BIN",
        &["chromium", "chromium-browser", "google-chrome"],
    );
    let chromedriver = find_program("CHROMEDRIVER", &["chromedriver"]);
    let (Some(chromium), Some(chromedriver)) = (chromium, chromedriver) else {
        if std::env::var_os("CI").is_some() {
            panic!(
                "chromium and chromedriver are required in CI (apt-get install chromium chromium-driver)"
            );
        }
        eprintln!(
            "\n*** SKIPPED the browser test: chromium or chromedriver not found (apt-get install chromium chromium-driver) ***\n"
        );
        return;
    };
    let app = spawn_app().await;
    let downloads = tempfile::tempdir().unwrap();
    let browser = Browser::start(&chromium, &chromedriver, downloads.path()).await;

    // Log in, coming back to the page first asked for.
    browser.goto(&app.url("/dumps/new")).await;
    assert!(browser.url().await.contains("/login?next="));
    browser.type_into("#username", STAFF).await;
    browser.type_into("#password", PASSWORD).await;
    browser
        .click("form[action='/login'] button[type=submit]")
        .await;
    browser.wait_url(|u| u.ends_with("/dumps/new")).await;

    // Both boxes are checked by default: a data + storages dump.
    browser
        .click("form[action='/dumps'] button[type=submit]")
        .await;
    let detail = |u: &str| {
        u.rsplit('/')
            .next()
            .is_some_and(|id| id.parse::<i64>().is_ok())
    };
    let first_url = browser.wait_url(detail).await;
    let first: i64 = first_url.rsplit('/').next().unwrap().parse().unwrap();
    browser.wait_status("processed").await;
    let shown = browser.text("#checksum").await.expect("a checksum");
    assert_eq!(shown.len(), 128);
    let first_dump = app.dump(first.into()).await;
    assert!(first_dump.with_data && first_dump.with_storages);

    browser.click("#download").await;
    let file = tokio::task::spawn_blocking({
        let dir = downloads.path().to_path_buf();
        move || wait_for_download(&dir)
    })
    .await
    .unwrap();
    assert_eq!(
        file.file_name().unwrap().to_str(),
        first_dump.filename.as_deref()
    );
    assert_eq!(
        b2sum_of(&file),
        shown,
        "b2sum of the download matches the page"
    );

    // A second dump of the same options replaces the first.
    browser.goto(&app.url("/dumps/new")).await;
    browser
        .click("form[action='/dumps'] button[type=submit]")
        .await;
    let second_url = browser.wait_url(|u| detail(u) && u != first_url).await;
    assert_ne!(second_url, first_url);
    browser.wait_status("processed").await;
    browser.goto(&first_url).await;
    assert_eq!(browser.text("#status").await.as_deref(), Some("processed"));
    assert!(
        browser.find("#download").await.is_none(),
        "no download link any more"
    );
    let page = browser.text("main").await.unwrap();
    assert!(page.contains("(deprecated)"), "{page}");
    browser
        .goto(&app.url(&format!("/dumps/{first}/download")))
        .await;
    assert!(
        browser.title().await.starts_with("Not found"),
        "{}",
        browser.title().await
    );
    let res = app
        .login(STAFF)
        .await
        .get(app.url(&format!("/dumps/{first}/download")))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), reqwest::StatusCode::NOT_FOUND);
    assert!(
        !app.archive_path(&first_dump).exists(),
        "its file is removed from disk"
    );
    let _ = browser
        .call("DELETE", &format!("/session/{}", browser.session), None)
        .await;
    drop(browser);
    app.stop().await;
}

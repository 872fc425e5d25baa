//! The loader (`load URL`, `load --server`) against the hostile server.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::hostile::{Body, Hostile, Reply};
use crate::support;

const MIB: u64 = 1024 * 1024;
const LIMIT: Duration = Duration::from_secs(120);

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

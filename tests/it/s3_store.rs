//! Archives in an S3-compatible object store (`[dump] path = "s3://..."`),
//! against the test S3 server: a dump streams into a multipart upload and
//! appears whole under its name, nothing lands on local disk, downloads
//! answer ranges and validators as for a local file, purge deletes the
//! object, a failed dump leaves no object nor upload behind, `verify` reads
//! the object, and `load --server` works unchanged.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use diskette::progress::Progress;
use diskette::registry::{Actor, DumpId, DumpStatus, OptionSet};
use diskette::worker::Archiver;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use reqwest::StatusCode;
use reqwest::header;

use crate::support::app::{STAFF, Setup, TestApp, b2sum, spawn_on, workspace};
use crate::support::noise;
use crate::support::services::{S3Bucket, s3_bucket};

const PREFIX: &str = "archives/site";

/// A client of the test bucket, to look at it from outside.
fn client(bucket: &S3Bucket) -> AmazonS3 {
    AmazonS3Builder::new()
        .with_endpoint(&bucket.endpoint)
        .with_allow_http(true)
        .with_bucket_name(&bucket.name)
        .with_region("us-east-1")
        .with_access_key_id("testing")
        .with_secret_access_key("testing")
        .build()
        .unwrap()
}

/// Every object of the bucket: key and size.
async fn objects(bucket: &S3Bucket) -> Vec<(String, u64)> {
    use futures_util::TryStreamExt;
    let mut all: Vec<(String, u64)> = client(bucket)
        .list(None)
        .map_ok(|o| (o.location.to_string(), o.size))
        .try_collect()
        .await
        .unwrap();
    all.sort();
    all
}

async fn object_bytes(bucket: &S3Bucket, key: &str) -> Vec<u8> {
    let got = client(bucket).get(&ObjectPath::from(key)).await.unwrap();
    got.bytes().await.unwrap().to_vec()
}

/// The multipart uploads started and neither completed nor aborted.
async fn open_uploads(bucket: &S3Bucket) -> usize {
    let listing = reqwest::get(format!("{}/{}?uploads", bucket.endpoint, bucket.name))
        .await
        .unwrap();
    assert_eq!(listing.status(), StatusCode::OK);
    listing.text().await.unwrap().matches("<UploadId>").count()
}

fn s3_env(bucket: &S3Bucket) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = bucket
        .env()
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    env.push((
        "DISKETTE_DUMP_PATH".into(),
        format!("s3://{}/{PREFIX}", bucket.name),
    ));
    env
}

/// Files of `dir`, recursively, whose name ends with `.tar.gz`.
fn local_archives(dir: &Path) -> Vec<String> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tar.gz"))
        .map(|e| e.path().display().to_string())
        .collect()
}

/// The real engine; while `fail` is set, the job is stopped once 20 MB
/// went into the archive: a dump that fails in the middle of its upload,
/// after parts were sent (the second flag says it was).
fn failing_midway() -> (Archiver, Arc<AtomicBool>, Arc<AtomicBool>) {
    struct Midway<'a> {
        inner: &'a dyn Progress,
        bytes: std::sync::atomic::AtomicU64,
        stopped: &'a AtomicBool,
    }
    impl Progress for Midway<'_> {
        fn begin(&self, b: u64, f: u64) {
            self.inner.begin(b, f)
        }
        fn advance(&self, b: u64, f: u64) {
            self.bytes.fetch_add(b, Ordering::Relaxed);
            self.inner.advance(b, f)
        }
        fn log(&self, line: &str) {
            self.inner.log(line)
        }
        fn warn(&self, line: &str) {
            self.inner.warn(line)
        }
        fn finish(&self) {
            self.inner.finish()
        }
        fn is_cancelled(&self) -> bool {
            if self.bytes.load(Ordering::Relaxed) > 20_000_000 {
                self.stopped.store(true, Ordering::SeqCst);
                return true;
            }
            self.inner.is_cancelled()
        }
    }
    let fail = Arc::new(AtomicBool::new(false));
    let stopped = Arc::new(AtomicBool::new(false));
    let (flag, seen) = (fail.clone(), stopped.clone());
    let archiver: Archiver = Arc::new(move |config, opts, progress| {
        if !flag.load(Ordering::SeqCst) {
            return diskette::dump::dump(config, opts, progress);
        }
        let midway = Midway {
            inner: progress,
            bytes: Default::default(),
            stopped: &seen,
        };
        diskette::dump::dump(config, opts, &midway)
    });
    (archiver, fail, stopped)
}

/// A demo workspace with 24 MB of incompressible media (two parts of the
/// upload), served in this process with its archives in `bucket`.
async fn app_on(bucket: &S3Bucket, archiver: Archiver) -> TestApp {
    let (dir, config_path) = workspace();
    let media = config_path.parent().unwrap().join("media");
    std::fs::write(media.join("film.jpg"), noise(24_000_000, 3)).unwrap();
    spawn_on(
        dir,
        &config_path,
        Setup {
            archiver,
            env: s3_env(bucket),
        },
    )
    .await
}

async fn dump_both(app: &TestApp) -> DumpId {
    let id = app
        .registry
        .create_dump(OptionSet::BOTH, Actor::System)
        .await
        .unwrap();
    app.wait_finished(id).await;
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dumps_live_in_the_bucket_and_download_like_files() {
    let Some(bucket) = s3_bucket() else { return };
    let (archiver, fail, stopped) = failing_midway();
    let app = app_on(&bucket, archiver).await;

    // A dump: one object under the prefix, whole, nothing on local disk.
    let first = dump_both(&app).await;
    let dump = app.dump(first).await;
    assert_eq!(dump.status, DumpStatus::Processed, "{:?}", dump.error);
    let name = dump.filename.clone().unwrap();
    let key = format!("{PREFIX}/{name}");
    assert_eq!(
        objects(&bucket).await,
        vec![(key.clone(), dump.size.unwrap() as u64)]
    );
    let bytes = object_bytes(&bucket, &key).await;
    assert!(bytes.len() > 20_000_000, "the media went in whole");
    let checksum = dump.checksum.clone().unwrap().as_str().to_string();
    assert_eq!(b2sum(&bytes), checksum);
    assert_eq!(local_archives(app.dir.path()), Vec::<String>::new());
    assert_eq!(open_uploads(&bucket).await, 0);

    // Downloads: whole, a range, HEAD, validators.
    let web = app.login(STAFF).await;
    let url = web.url(&format!("/dumps/{first}/download"));
    let res = web.get(&url).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["x-diskette-checksum"], checksum.as_str());
    assert_eq!(res.headers()[header::CONTENT_TYPE], "application/gzip");
    let etag = res.headers()[header::ETAG].to_str().unwrap().to_string();
    assert_eq!(etag, format!("\"{checksum}\""));
    assert_eq!(b2sum(&res.bytes().await.unwrap()), checksum);

    let res = web
        .get(&url)
        .header(header::RANGE, "bytes=1000-1999")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::PARTIAL_CONTENT);
    let size = bytes.len();
    assert_eq!(
        res.headers()[header::CONTENT_RANGE],
        format!("bytes 1000-1999/{size}").as_str()
    );
    assert_eq!(&res.bytes().await.unwrap()[..], &bytes[1000..2000]);

    let res = web
        .get(&url)
        .header(header::RANGE, "bytes=-100")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(&res.bytes().await.unwrap()[..], &bytes[size - 100..]);

    let res = web
        .get(&url)
        .header(header::RANGE, format!("bytes={size}-"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::RANGE_NOT_SATISFIABLE);

    let res = web.head(&url).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        res.headers()[header::CONTENT_LENGTH],
        size.to_string().as_str()
    );
    assert_eq!(res.headers()[header::ACCEPT_RANGES], "bytes");
    assert!(res.bytes().await.unwrap().is_empty());

    let res = web
        .get(&url)
        .header(header::IF_NONE_MATCH, &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_MODIFIED);

    // If-Range: the current archive resumes, another one restarts whole.
    let res = web
        .get(&url)
        .header(header::RANGE, "bytes=10-19")
        .header(header::IF_RANGE, &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(&res.bytes().await.unwrap()[..], &bytes[10..20]);
    let res = web
        .get(&url)
        .header(header::RANGE, "bytes=10-19")
        .header(header::IF_RANGE, "\"another\"")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.bytes().await.unwrap().len(), size);

    // The API answers with the checksum header, as `load --server` needs.
    let (_, api_key) = app
        .registry
        .create_api_key("tests", Actor::System)
        .await
        .unwrap();
    let latest = web.url("/api/dumps/latest?data=1&storages=1");
    let res = reqwest::Client::new()
        .get(&latest)
        .bearer_auth(&api_key)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["x-diskette-checksum"], checksum.as_str());
    assert_eq!(b2sum(&res.bytes().await.unwrap()), checksum);

    // A dump that fails in the middle of its upload leaves no object and
    // no open upload; the first dump stays available.
    fail.store(true, Ordering::SeqCst);
    let failed = dump_both(&app).await;
    let d = app.dump(failed).await;
    assert_eq!(d.status, DumpStatus::Failed);
    assert!(
        stopped.load(Ordering::SeqCst),
        "it failed after parts were sent"
    );
    assert_eq!(objects(&bucket).await, vec![(key.clone(), size as u64)]);
    assert_eq!(open_uploads(&bucket).await, 0);
    assert_eq!(local_archives(app.dir.path()), Vec::<String>::new());
    let res = reqwest::Client::new()
        .get(&latest)
        .bearer_auth(&api_key)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(b2sum(&res.bytes().await.unwrap()), checksum);

    // A new dump replaces the first: its object is purged.
    fail.store(false, Ordering::SeqCst);
    let second = dump_both(&app).await;
    let second_dump = app.dump(second).await;
    assert_eq!(second_dump.status, DumpStatus::Processed);
    let purged = app.wait_purged(first).await;
    assert!(purged.purged_at.is_some());
    let second_key = format!("{PREFIX}/{}", second_dump.filename.clone().unwrap());
    assert_eq!(
        objects(&bucket).await,
        vec![(second_key.clone(), second_dump.size.unwrap() as u64)]
    );
    let res = web.get(&url).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND, "a purged dump");

    // `verify` reads the object: good, then corrupt once a byte flips.
    let report = diskette::verify::verify_dump(&app.registry, second, Actor::System)
        .await
        .unwrap();
    assert!(report.is_ok(), "{:?}", report.problem);
    let mut corrupt = object_bytes(&bucket, &second_key).await;
    let middle = corrupt.len() / 2;
    corrupt[middle] ^= 0x55;
    client(&bucket)
        .put(
            &ObjectPath::from(second_key.as_str()),
            PutPayload::from(corrupt),
        )
        .await
        .unwrap();
    let report = diskette::verify::verify_dump(&app.registry, second, Actor::System)
        .await
        .unwrap();
    let problem = report.problem.unwrap_or_default();
    assert!(problem.contains("checksum mismatch"), "{problem}");
    let res = web
        .get(web.url(&format!("/dumps/{second}/download")))
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        StatusCode::CONFLICT,
        "a corrupt archive is not served"
    );
    // Its replacement, queued at once, lands in the bucket too.
    let replacement = report.replacement.expect("a fresh dump is queued");
    assert_eq!(app.wait_finished(replacement).await, DumpStatus::Processed);
    app.stop().await;
}

/// Once its lease expired, the archive of a dump a dead process finished
/// uploading but never recorded is removed from the bucket; other objects stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovery_removes_the_unrecorded_archive_of_a_dead_job() {
    let Some(bucket) = s3_bucket() else { return };
    let (dir, config_path) = workspace();
    let config = crate::support::app::load_config(&config_path, &s3_env(&bucket));
    let registry = diskette::registry::Registry::open(&config).await.unwrap();
    let id = registry
        .create_dump(OptionSet::DATA, Actor::System)
        .await
        .unwrap();
    registry.claim_next().await.unwrap();
    // The process that claimed it died: its lease ran out.
    registry
        .execute_sql(&format!(
            "UPDATE dumps SET lease_until = '2020-01-01T00:00:00.000000Z' WHERE id = {id}"
        ))
        .await
        .unwrap();
    let orphan = format!("{PREFIX}/diskette_data_2025-02-03T175309_{id}.tar.gz");
    let unrelated = format!("{PREFIX}/notes.txt");
    for key in [&orphan, &unrelated] {
        client(&bucket)
            .put(
                &ObjectPath::from(key.as_str()),
                PutPayload::from_static(b"x"),
            )
            .await
            .unwrap();
    }
    let report = registry.recover().await.unwrap();
    assert_eq!((report.failed, report.unrecorded), (1, 1));
    assert_eq!(objects(&bucket).await, vec![(unrelated, 1)]);
    drop(dir);
}

/// `diskette` with the environment of `bucket` (or `aws`) and no other
/// `AWS_*` variable inherited.
fn diskette_with(config: &Path, args: &[&str], env: &[(String, String)]) -> std::process::Command {
    let mut cmd = crate::support::diskette(config, args);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("AWS_") {
            cmd.env_remove(name);
        }
    }
    cmd.envs(env.iter().map(|(k, v)| (k, v)));
    cmd
}

/// The real server process on an S3 store: its dump lands in the bucket
/// and `load --server` (no redirect followed) restores it elsewhere; the
/// CLI's `dump --destination` still writes a local file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_server_from_a_server_process_on_s3() {
    let Some(bucket) = s3_bucket() else { return };
    let env = s3_env(&bucket);
    let (_dir, config_path) = workspace();
    let serve = diskette_with(&config_path, &["serve", "--addr", "127.0.0.1:0"], &env);
    let server = crate::support::process::ServerProcess::start(serve).await;
    let config = crate::support::app::load_config(&config_path, &env);
    let registry = diskette::registry::Registry::open(&config).await.unwrap();
    let (_, key) = registry
        .create_api_key("tests", Actor::System)
        .await
        .unwrap();
    let id = registry
        .create_dump(OptionSet::BOTH, Actor::System)
        .await
        .unwrap();
    let mut dump = registry.dump(id).await.unwrap().unwrap();
    for _ in 0..1200 {
        if !dump.status.in_flight() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        dump = registry.dump(id).await.unwrap().unwrap();
    }
    assert_eq!(dump.status, DumpStatus::Processed, "{:?}", dump.error);
    let object = format!("{PREFIX}/{}", dump.filename.clone().unwrap());
    assert_eq!(
        objects(&bucket).await,
        vec![(object, dump.size.unwrap() as u64)]
    );

    // "Another machine": rows lost, media missing; `load --server` restores.
    let (_other_dir, other_config) = workspace();
    let other = crate::support::app::load_config(&other_config, &[]);
    let app_db = other.data_database().unwrap();
    rusqlite::Connection::open(&app_db)
        .unwrap()
        .execute("DELETE FROM blog_comment", [])
        .unwrap();
    let load = crate::support::diskette(
        &other_config,
        &["load", "--server", &server.base, "--api-key", &key],
    );
    let run = tokio::task::spawn_blocking(move || {
        crate::support::run(load, std::time::Duration::from_secs(120))
    })
    .await
    .unwrap();
    assert!(run.success(), "load --server failed: {}", run.stderr);
    let comments: i64 = rusqlite::Connection::open(&app_db)
        .unwrap()
        .query_row("SELECT COUNT(*) FROM blog_comment", [], |r| r.get(0))
        .unwrap();
    assert_eq!(comments, 320, "the data came back");
    assert!(
        other
            .load
            .storages_basepath
            .join("media/images/2024/01/picture-0.bmp")
            .is_file()
    );

    // The CLI's dump to a file stays local.
    let out = tempfile::tempdir().unwrap();
    let dest = out.path().to_str().unwrap().to_string();
    let cli = diskette_with(&config_path, &["dump", "--destination", &dest], &env);
    let run = tokio::task::spawn_blocking(move || {
        crate::support::run(cli, std::time::Duration::from_secs(120))
    })
    .await
    .unwrap();
    assert!(run.success(), "dump --destination failed: {}", run.stderr);
    let written = local_archives(out.path());
    assert_eq!(written.len(), 1, "{written:?}");
    assert_eq!(
        b2sum(&std::fs::read(&written[0]).unwrap()),
        run.stdout.trim()
    );
    assert_eq!(
        objects(&bucket).await.len(),
        1,
        "nothing more in the bucket"
    );
    server.signal("TERM").await;
}

/// A store that cannot be used stops `serve` and `dump --save` at once with
/// one clear line, which never shows the secret key.
#[test]
fn a_bad_store_is_one_clear_error_at_start_up() {
    let secret = "wJalrXUtnFEMI-K7MDENG-bPxRfiCY";
    let (_dir, config_path) = workspace();
    let env = |endpoint: &str, path: &str, credentials: bool| {
        let mut env = vec![
            ("AWS_ENDPOINT_URL".to_string(), endpoint.to_string()),
            ("AWS_REGION".to_string(), "us-east-1".to_string()),
            ("AWS_ALLOW_HTTP".to_string(), "true".to_string()),
            ("DISKETTE_DUMP_PATH".to_string(), path.to_string()),
        ];
        if credentials {
            env.push(("AWS_ACCESS_KEY_ID".into(), "AKIDEXAMPLE".into()));
            env.push(("AWS_SECRET_ACCESS_KEY".into(), secret.into()));
        }
        env
    };
    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let unreachable = format!("http://{closed}");
    let mut cases = vec![
        (
            env(&unreachable, "s3://no_such:bucket/x", true),
            "not a valid S3 location",
        ),
        (env(&unreachable, "s3:///x", true), "no bucket name"),
        (
            env(&unreachable, "s3://diskette-bucket/x", false),
            "no credentials",
        ),
        (
            env(&unreachable, "s3://diskette-bucket/x", true),
            "cannot be written",
        ),
    ];
    if let Some(bucket) = s3_bucket() {
        let missing = format!("s3://{}-missing/x", bucket.name);
        cases.push((env(&bucket.endpoint, &missing, true), "does not exist"));
    }
    for (env, expected) in cases {
        for args in [
            &["serve", "--addr", "127.0.0.1:0"][..],
            &["dump", "--save", "--no-storages"][..],
        ] {
            let cmd = diskette_with(&config_path, args, &env);
            let run = crate::support::run(cmd, std::time::Duration::from_secs(60));
            assert!(!run.success(), "{args:?} {env:?} started");
            let err = run.stderr.trim();
            assert!(err.contains(expected), "{args:?}: {err}");
            assert!(err.contains("dump.path"), "{args:?}: {err}");
            assert!(!err.contains(secret), "the secret leaked: {err}");
            assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        }
    }
}

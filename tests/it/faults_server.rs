//! Faults of the real server process: `kill -9` in the middle of a dump job,
//! and a write failure of a dump job. After either, the previous available
//! dump is still downloadable with its checksum, and a new dump succeeds.

use std::path::{Path, PathBuf};
use std::time::Duration;

use diskette::Config;
use diskette::registry::{Actor, DumpId, DumpStatus, OptionSet, Registry};

use crate::support::noise;
use crate::support::process::ServerProcess;

async fn serve(config: &Path, shell_prefix: &str) -> ServerProcess {
    ServerProcess::serve(config, shell_prefix).await
}

/// A site whose data comes from a command that sleeps while `slow` exists,
/// so a test can catch a dump job in the middle. Job leases are short: a
/// dead server's job is ended two seconds after its last renewal.
fn site(dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir.join("media/photos")).unwrap();
    for i in 0..20 {
        std::fs::write(
            dir.join(format!("media/photos/{i}.txt")),
            format!("photo {i}\n").repeat(500),
        )
        .unwrap();
    }
    let config = dir.join("diskette.toml");
    std::fs::write(
        &config,
        r#"
[storages]
paths = ["media"]
[dump]
path = "dumps"
lease_seconds = 2
[[apps]]
name = "notes"
dump_command = ["sh", "-c", "if [ -e slow ]; then sleep 60; fi; echo '[]'"]
"#,
    )
    .unwrap();
    config
}

/// Create a data + storages dump and wait until it ends in `expected`.
async fn dump_to_end(registry: &Registry, expected: DumpStatus) -> DumpId {
    let id = registry
        .create_dump(OptionSet::BOTH, Actor::System)
        .await
        .unwrap();
    assert_eq!(wait_until(registry, id, |s| !s.in_flight()).await, expected);
    id
}

async fn wait_until(
    registry: &Registry,
    id: DumpId,
    done: impl Fn(DumpStatus) -> bool,
) -> DumpStatus {
    for _ in 0..2400 {
        let d = registry.dump(id).await.unwrap().unwrap();
        if done(d.status) {
            return d.status;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("dump {id:?} never reached the expected state");
}

/// Download the latest available dump of `set` through the API; returns the
/// checksum header and the bytes' BLAKE2b.
async fn download_latest(
    server: &ServerProcess,
    key: &str,
) -> (String, String, reqwest::StatusCode) {
    let res = reqwest::Client::new()
        .get(server.url("/api/dumps/latest?data=1&storages=1"))
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    let status = res.status();
    let header = res
        .headers()
        .get("x-diskette-checksum")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let body = res.bytes().await.unwrap();
    (
        header,
        diskette::checksum::of_reader(&body[..]).unwrap(),
        status,
    )
}

fn dump_dir_names(config: &Config) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(&config.dump.path)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_in_the_middle_of_a_dump() {
    let dir = tempfile::tempdir().unwrap();
    let config_path = site(dir.path());
    let config = Config::load(&config_path, Vec::new()).unwrap();
    let server = serve(&config_path, "").await;
    let registry = Registry::open(&config).await.unwrap();
    let (_, key) = registry
        .create_api_key("tests", Actor::System)
        .await
        .unwrap();

    let first = dump_to_end(&registry, DumpStatus::Processed).await;
    let first_dump = registry.dump(first).await.unwrap().unwrap();

    // The second dump blocks in its data command, its temporary files open.
    std::fs::write(dir.path().join("slow"), "").unwrap();
    let second = registry
        .create_dump(OptionSet::BOTH, Actor::System)
        .await
        .unwrap();
    wait_until(&registry, second, |s| s == DumpStatus::Pending).await;
    let mut leftovers = Vec::new();
    for _ in 0..400 {
        leftovers = dump_dir_names(&config);
        if leftovers
            .iter()
            .any(|n| n.starts_with(diskette::dump::TEMP_PREFIX))
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(
        leftovers
            .iter()
            .any(|n| n.starts_with(diskette::dump::TEMP_PREFIX)),
        "the job has temporary files: {leftovers:?}"
    );
    // The sleeping data command, a child of the dead server, ends with its
    // process group.
    server.signal("KILL").await;

    std::fs::remove_file(dir.path().join("slow")).unwrap();
    let server = serve(&config_path, "").await;
    // Its lease runs out, and the new server ends it.
    let status = wait_until(&registry, second, |s| !s.in_flight()).await;
    assert_eq!(status, DumpStatus::Failed);
    let d = registry.dump(second).await.unwrap().unwrap();
    assert!(
        d.error
            .as_deref()
            .unwrap_or_default()
            .contains("interrupted"),
        "{:?}",
        d.error
    );
    // Its files go right after (the bound only keeps a bug from hanging).
    let only_first = vec![first_dump.filename.clone().unwrap()];
    for _ in 0..400 {
        if dump_dir_names(&config) == only_first {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(
        dump_dir_names(&config),
        only_first,
        "no temporary file remains"
    );
    // The previous dump is still the available one, and downloads whole.
    let (header, actual, status) = download_latest(&server, &key).await;
    assert_eq!(status, reqwest::StatusCode::OK);
    assert_eq!(
        header,
        first_dump.checksum.clone().unwrap().as_str().to_string()
    );
    assert_eq!(actual, header);

    // And a new dump works.
    let third = dump_to_end(&registry, DumpStatus::Processed).await;
    let (header, actual, _) = download_latest(&server, &key).await;
    assert_eq!(
        header,
        registry
            .dump(third)
            .await
            .unwrap()
            .unwrap()
            .checksum
            .unwrap()
            .as_str()
            .to_string()
    );
    assert_eq!(actual, header);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_failure_fails_the_dump_and_keeps_the_previous_one() {
    let dir = tempfile::tempdir().unwrap();
    let config_path = site(dir.path());
    let config = Config::load(&config_path, Vec::new()).unwrap();
    let registry = Registry::open(&config).await.unwrap();
    let (_, key) = registry
        .create_api_key("tests", Actor::System)
        .await
        .unwrap();
    let server = serve(&config_path, "").await;
    let first = dump_to_end(&registry, DumpStatus::Processed).await;
    let first_dump = registry.dump(first).await.unwrap().unwrap();
    drop(server);

    // Now incompressible media that the archive cannot hold under a 1 MiB
    // file-size limit: the write fails (EFBIG) in the middle of the archive.
    std::fs::write(dir.path().join("media/photos/big.bin"), noise(3_000_000, 7)).unwrap();
    let server = serve(&config_path, "trap '' XFSZ; ulimit -f 1024;").await;
    let second = dump_to_end(&registry, DumpStatus::Failed).await;
    let d = registry.dump(second).await.unwrap().unwrap();
    let error = d.error.unwrap_or_default();
    assert!(error.to_lowercase().contains("too large"), "{error}");
    assert_eq!(
        dump_dir_names(&config),
        vec![first_dump.filename.clone().unwrap()]
    );
    let (header, actual, status) = download_latest(&server, &key).await;
    assert_eq!(status, reqwest::StatusCode::OK);
    assert_eq!(header, first_dump.checksum.unwrap().as_str().to_string());
    assert_eq!(actual, header);
}

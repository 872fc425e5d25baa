//! The archive check on archives made by the engine and on broken ones, and
//! the verification flow over a real registry.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::*;
use crate::Config;
use crate::registry::OptionSet;
use crate::worker::Worker;

const MANIFEST_JSON: &str = r#"{"version": "0.1.0", "creation": "2025-01-01T12:00:00", "datas": ["data/blog.json"], "storages": ["media"]}"#;

/// A tar.gz of `members` (name, content; a name ending in `/` is a directory).
fn targz(members: &[(&str, &[u8])]) -> Vec<u8> {
    let mut tar = tar::Builder::new(Vec::new());
    for (name, content) in members {
        let mut header = tar::Header::new_ustar();
        if name.ends_with('/') {
            header.set_entry_type(tar::EntryType::Directory);
            header.set_size(0);
            header.set_mode(0o755);
        } else {
            header.set_size(content.len() as u64);
            header.set_mode(0o644);
        }
        tar.append_data(&mut header, name, *content).unwrap();
    }
    let tar = tar.into_inner().unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&tar).unwrap();
    gz.finish().unwrap()
}

fn good_members() -> Vec<(&'static str, &'static [u8])> {
    vec![
        ("data/", b""),
        ("data/blog.json", b"[]"),
        ("media/", b""),
        ("media/photos/a.jpg", b"jpeg bytes"),
        ("manifest.json", MANIFEST_JSON.as_bytes()),
    ]
}

/// Write `bytes` and check them against their own checksum and size.
fn check(dir: &Path, bytes: &[u8]) -> archive::Verdict {
    let path = dir.join("a.tar.gz");
    std::fs::write(&path, bytes).unwrap();
    let sum = crate::checksum::of_reader(bytes).unwrap();
    archive::verify(&path, &sum, Some(bytes.len() as u64))
}

#[test]
fn a_complete_archive_is_good() {
    let dir = tempfile::tempdir().unwrap();
    let verdict = check(dir.path(), &targz(&good_members()));
    assert!(verdict.is_ok(), "{verdict:?}");
    assert_eq!(verdict.entries, 5);
}

#[test]
fn a_flipped_byte_is_a_checksum_mismatch() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = targz(&good_members());
    let sum = crate::checksum::of_reader(&bytes[..]).unwrap();
    let mut flipped = bytes.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0x55;
    let path = dir.path().join("a.tar.gz");
    std::fs::write(&path, &flipped).unwrap();
    let verdict = archive::verify(&path, &sum, Some(bytes.len() as u64));
    let message = verdict.message().expect("corrupt");
    assert!(message.starts_with("checksum mismatch"), "{message}");
}

#[test]
fn broken_structures_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let good = targz(&good_members());
    // Each case keeps its own checksum: only the structure is wrong.
    let truncated = &good[..good.len() - 12];
    let mut garbage = good.clone();
    garbage.extend_from_slice(b"not gzip at all");
    let no_manifest = targz(&good_members()[..4]);
    let missing_data = targz(&[("media/", b""), ("manifest.json", MANIFEST_JSON.as_bytes())]);
    let missing_storage = targz(&[
        ("data/blog.json", b"[]"),
        ("manifest.json", MANIFEST_JSON.as_bytes()),
    ]);
    let cases: Vec<(&[u8], &str)> = vec![
        (truncated, "truncated"),
        (&garbage, "corrupt stream"),
        (&no_manifest, "no manifest.json"),
        (&missing_data, "lists data/blog.json"),
        (&missing_storage, "lists the storage media"),
        (b"plain text", "not a gzip stream"),
    ];
    for (bytes, expected) in cases {
        let verdict = check(dir.path(), bytes);
        let message = verdict.message().unwrap_or_default();
        assert!(
            message.contains(expected),
            "{expected:?} not in {message:?}"
        );
    }
}

#[test]
fn a_tar_without_its_end_marker_is_truncated() {
    let dir = tempfile::tempdir().unwrap();
    let mut tar = tar::Builder::new(Vec::new());
    for (name, content) in [("data/blog.json", &b"[]"[..]), ("manifest.json", b"{}")] {
        let mut header = tar::Header::new_ustar();
        header.set_size(content.len() as u64);
        tar.append_data(&mut header, name, content).unwrap();
    }
    let mut tar = tar.into_inner().unwrap();
    tar.truncate(tar.len() - 1024);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&tar).unwrap();
    let verdict = check(dir.path(), &gz.finish().unwrap());
    let message = verdict.message().unwrap_or_default();
    assert!(message.contains("end-of-archive marker"), "{message}");
}

#[test]
fn a_missing_file_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let verdict = archive::verify(&dir.path().join("gone.tar.gz"), &"0".repeat(128), None);
    assert!(verdict.message().unwrap().contains("missing"));
}

#[test]
fn periods_parse() {
    let secs = |s: &str| Every::parse(s).unwrap().0.map(|d| d.as_secs());
    assert_eq!(secs("1d"), Some(86400));
    assert_eq!(secs("12h"), Some(43200));
    assert_eq!(secs("30m"), Some(1800));
    assert_eq!(secs("90"), Some(90));
    assert_eq!(secs("never"), None);
    assert_eq!(secs("0"), None);
    for bad in ["", "d", "1w", "-1d", "soon"] {
        assert!(Every::parse(bad).is_err(), "{bad:?}");
    }
}

/// A registry whose storages-only dump is processed by the real engine.
async fn processed_dump() -> (tempfile::TempDir, Registry, Config, DumpId, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("media")).unwrap();
    std::fs::write(dir.path().join("media/a.txt"), "hello\n".repeat(1000)).unwrap();
    let config = Config::from_toml(
        "[storages]\npaths = [\"media\"]\n[dump]\npath = \"dumps\"\n",
        dir.path(),
        Vec::new(),
    )
    .unwrap();
    let registry = Registry::open(&config).await.unwrap();
    let id = registry
        .create_dump(OptionSet::STORAGES, Actor::System)
        .await
        .unwrap();
    worker(&registry, &config).run_once().await.unwrap();
    let dump = registry.dump(id).await.unwrap().unwrap();
    assert!(dump.is_available());
    let path = registry
        .archive_path(dump.filename.as_deref().unwrap())
        .unwrap();
    (dir, registry, config, id, path)
}

fn worker(registry: &Registry, config: &Config) -> Worker {
    Worker::new(
        registry.clone(),
        Arc::new(config.clone()),
        crate::worker::engine(),
        CancellationToken::new(),
    )
}

fn flip_a_byte(path: &Path) {
    let mut bytes = std::fs::read(path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(path, bytes).unwrap();
}

#[tokio::test]
async fn a_corrupt_available_dump_is_recorded_and_replaced_once() {
    let (_dir, registry, config, id, path) = processed_dump().await;
    let good = verify_dump(&registry, id, Actor::System).await.unwrap();
    assert!(good.is_ok() && good.replacement.is_none(), "{good:?}");
    let dump = registry.dump(id).await.unwrap().unwrap();
    assert!(dump.verified_at.is_some() && !dump.is_corrupt());

    flip_a_byte(&path);
    let bad = verify_dump(&registry, id, Actor::System).await.unwrap();
    assert!(
        bad.problem
            .as_deref()
            .unwrap()
            .contains("checksum mismatch")
    );
    let new = bad.replacement.expect("a fresh dump is queued");
    let dump = registry.dump(id).await.unwrap().unwrap();
    assert!(dump.is_corrupt());
    // Rule 4: the finished record itself is unchanged.
    assert_eq!(dump.status, crate::registry::DumpStatus::Processed);
    assert!(dump.is_available());
    // Verifying again while the fresh dump waits queues no second one.
    let again = verify_dump(&registry, id, Actor::System).await.unwrap();
    assert!(again.replacement.is_none());
    assert_eq!(
        crate::health::problems(&registry).await.unwrap().len(),
        1,
        "the corrupt available dump makes the service unhealthy"
    );

    // The fresh dump replaces it (rule 2): the corrupt one is deprecated.
    assert_eq!(
        worker(&registry, &config).run_once().await.unwrap(),
        Some(new)
    );
    assert!(registry.dump(new).await.unwrap().unwrap().is_available());
    assert!(registry.dump(id).await.unwrap().unwrap().deprecated);
    assert!(crate::health::problems(&registry).await.unwrap().is_empty());
}

#[tokio::test]
async fn the_periodic_check_takes_dumps_not_verified_for_the_period() {
    let (_dir, registry, _config, id, path) = processed_dump().await;
    let day = Duration::from_secs(86400);
    let now = OffsetDateTime::now_utc();
    // Processed just now: not due yet.
    assert!(verify_due(&registry, day, now).await.unwrap().is_empty());
    flip_a_byte(&path);
    // A day later it is due, and found corrupt.
    let later = now + time::Duration::days(1) + time::Duration::seconds(1);
    let reports = verify_due(&registry, day, later).await.unwrap();
    assert_eq!(reports.len(), 1);
    assert_eq!(reports[0].dump, id);
    assert!(!reports[0].is_ok());
    assert!(reports[0].replacement.is_some());
    // Just verified (real time): not due again within the day.
    let soon = OffsetDateTime::now_utc() + time::Duration::hours(1);
    assert!(verify_due(&registry, day, soon).await.unwrap().is_empty());
}

#[tokio::test]
async fn only_stored_archives_can_be_verified() {
    let (_dir, registry, _config, id, _path) = processed_dump().await;
    let e = verify_dump(&registry, DumpId::from(999), Actor::System)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("no dump 999"), "{e}");
    let queued = registry
        .create_dump(OptionSet::STORAGES, Actor::System)
        .await
        .unwrap();
    let e = verify_dump(&registry, queued, Actor::System)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("created"), "{e}");
    let all = verify_selected(&registry, None, true).await.unwrap();
    assert_eq!(all.iter().map(|(d, _)| *d).collect::<Vec<_>>(), vec![id]);
}

#[tokio::test]
async fn a_refused_dump_does_not_stop_the_others() {
    let (_dir, registry, _config, id, path) = processed_dump().await;
    // A deprecated record whose file name is no plain name: refused. It
    // comes first, before the corrupt one.
    let refused: i64 = sqlx::query_scalar(
        "INSERT INTO dumps (id, created_at, processed_at, status, with_data, with_storages, \
         deprecated, filename, size, checksum) VALUES (0, '2020-01-01T00:00:00Z', \
         '2020-01-01T00:00:00Z', 'processed', 0, 1, 1, '../x.tar.gz', 1, ?) RETURNING id",
    )
    .bind("c".repeat(128))
    .fetch_one(registry.pool())
    .await
    .unwrap();
    flip_a_byte(&path);
    let all = verify_selected(&registry, None, true).await.unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].0, DumpId::from(refused));
    let e = all[0].1.as_ref().unwrap_err();
    assert!(e.to_string().contains("not a file name"), "{e}");
    assert_eq!(all[1].0, id);
    assert!(
        !all[1].1.as_ref().unwrap().is_ok(),
        "the corrupt one was checked"
    );
}

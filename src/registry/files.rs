//! The files of the dump directory: the names the worker writes, and the
//! clean-up of what an interrupted process left behind.

use std::collections::HashSet;
use std::path::Path;

use super::records::Dump;
use super::types::DumpId;
use crate::error::{Error, Result};

/// `diskette{features}_{date}.tar.gz` → `diskette{features}_{date}_17.tar.gz`:
/// two dumps of one set in the same second must not share a file.
pub fn unique_pattern(pattern: &str, id: DumpId) -> String {
    match pattern.strip_suffix(".tar.gz") {
        Some(stem) => format!("{stem}_{id}.tar.gz"),
        None => format!("{pattern}_{id}.tar.gz"),
    }
}

pub(super) fn remove_file_if_exists(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("remove", path, e)),
    }
}

/// True for what the engine writes before its final rename (see `dump::TEMP_PREFIX`).
fn is_temp_name(name: &str) -> bool {
    name.starts_with(crate::dump::TEMP_PREFIX)
}

/// The dump a temporary name belongs to: the engine names them
/// `.diskette-tmp-{dump id}-{random}` for a registry job (see
/// `DumpOptions::temp_prefix`); `None` for other writers.
fn temp_owner(name: &str) -> Option<i64> {
    let rest = name.strip_prefix(crate::dump::TEMP_PREFIX)?;
    let (id, _) = rest.split_once('-')?;
    let digits = !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit());
    digits.then(|| id.parse().ok()).flatten()
}

/// A temporary file or directory of the dump directory.
pub(super) struct TempEntry {
    path: std::path::PathBuf,
    owner: Option<i64>,
    is_dir: bool,
}

/// Temporary entries no write has touched for this long, and that name no
/// dump (a `diskette dump` outside the registry, an older version), are
/// leftovers of a dead process.
const UNOWNED_STALE: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// The temporary entries of the dump directory.
pub(super) fn temp_entries(dir: &Path) -> Result<Vec<TempEntry>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io("read directory", dir, e)),
    };
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("read directory", dir, e))?;
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            continue;
        };
        if is_temp_name(&name) {
            found.push(TempEntry {
                path: entry.path(),
                owner: temp_owner(&name),
                is_dir: entry.file_type().map(|t| t.is_dir()).unwrap_or(false),
            });
        }
    }
    Ok(found)
}

/// Remove the temporary entries of dumps no job runs any more (not in
/// `in_flight`), and unowned ones left untouched for a day; another
/// instance's running job keeps its files. Returns how many went.
pub(super) fn remove_temp_files(
    entries: Vec<TempEntry>,
    in_flight: &HashSet<i64>,
) -> Result<usize> {
    let mut removed = 0;
    for entry in entries {
        let gone = match entry.owner {
            Some(id) => !in_flight.contains(&id),
            None => untouched_for(&entry.path, UNOWNED_STALE),
        };
        if !gone {
            continue;
        }
        if entry.is_dir {
            match std::fs::remove_dir_all(&entry.path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io("remove", &entry.path, e)),
            }
        } else {
            remove_file_if_exists(&entry.path)?;
        }
        removed += 1;
    }
    Ok(removed)
}

/// No file under `path` (itself included) was modified within `age`.
fn untouched_for(path: &Path, age: std::time::Duration) -> bool {
    let Some(limit) = std::time::SystemTime::now().checked_sub(age) else {
        return false;
    };
    walkdir::WalkDir::new(path).into_iter().all(|entry| {
        entry
            .ok()
            .and_then(|e| e.metadata().ok())
            .and_then(|m| m.modified().ok())
            .is_some_and(|modified| modified < limit)
    })
}

/// Whether `name` is the archive the job of `dump` writes: the configured
/// pattern with the dump's id (see `unique_pattern`) and a date.
fn is_archive_of(pattern: &str, dump: &Dump, name: &str) -> bool {
    let features = crate::archive::filename::features(dump.with_data, dump.with_storages);
    let expected = unique_pattern(pattern, dump.id).replace("{features}", features);
    match expected.split("{date}").collect::<Vec<_>>().as_slice() {
        [whole] => name == *whole,
        [prefix, suffix] => name
            .strip_prefix(prefix)
            .and_then(|rest| rest.strip_suffix(suffix))
            .is_some_and(is_date_stamp),
        _ => false,
    }
}

/// `2025-02-03T175309`.
fn is_date_stamp(s: &str) -> bool {
    s.len() == 17
        && s.bytes().enumerate().all(|(i, b)| match i {
            4 | 7 => b == b'-',
            10 => b == b'T',
            _ => b.is_ascii_digit(),
        })
}

pub(super) fn remove_unrecorded_archives(
    dir: &Path,
    pattern: &str,
    interrupted: &[Dump],
    recorded: &HashSet<String>,
) -> Result<usize> {
    if interrupted.is_empty() {
        return Ok(0);
    }
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(Error::io("read directory", dir, e)),
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            continue;
        };
        if recorded.contains(&name) || !entry.file_type().is_ok_and(|t| t.is_file()) {
            continue;
        }
        // Only a file written after the dump was created can be its archive.
        let modified = entry
            .metadata()
            .ok()
            .and_then(|m| m.modified().ok())
            .map(time::OffsetDateTime::from);
        let owner = interrupted.iter().find(|d| {
            is_archive_of(pattern, d, &name)
                && modified.is_some_and(|m| m + time::Duration::seconds(1) >= d.created_at)
        });
        if let Some(dump) = owner {
            tracing::warn!(dump = %dump.id, file = ?name, "removing the archive of an interrupted dump");
            remove_file_if_exists(&entry.path())?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// `remove_unrecorded_archives` for an object store: the same archives,
/// found by listing the prefix.
pub(super) async fn remove_unrecorded_objects(
    store: &crate::store::S3Store,
    pattern: &str,
    interrupted: &[Dump],
    recorded: &HashSet<String>,
) -> Result<usize> {
    if interrupted.is_empty() {
        return Ok(0);
    }
    let mut removed = 0;
    for (name, stored) in store.list().await? {
        if recorded.contains(&name) {
            continue;
        }
        let modified = time::OffsetDateTime::from(stored.modified);
        let owner = interrupted.iter().find(|d| {
            is_archive_of(pattern, d, &name)
                && modified + time::Duration::seconds(1) >= d.created_at
        });
        if let Some(dump) = owner {
            tracing::warn!(dump = %dump.id, object = ?name, "removing the archive of an interrupted dump");
            crate::store::ArchiveStore::S3(store.clone())
                .delete(&name)
                .await?;
            removed += 1;
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::DumpStatus;

    fn dump(id: i64, with_data: bool, with_storages: bool) -> Dump {
        Dump {
            id: id.into(),
            created_at: time::OffsetDateTime::now_utc(),
            processed_at: None,
            status: DumpStatus::Pending,
            with_data,
            with_storages,
            deprecated: false,
            filename: None,
            size: None,
            checksum: None,
            purged_at: None,
            error: None,
            progress_bytes: 0,
            progress_files: 0,
            created_by: None,
            creator: None,
            scheduled: false,
            verified_at: None,
            verify_error: None,
        }
    }

    #[test]
    fn archives_of_a_dump_are_recognised_exactly() {
        let pattern = crate::config::DEFAULT_FILENAME;
        let d = dump(7, true, false);
        assert!(is_archive_of(
            pattern,
            &d,
            "diskette_data_2025-02-03T175309_7.tar.gz"
        ));
        for other in [
            "diskette_data_2025-02-03T175309_17.tar.gz",
            "diskette_data_storages_2025-02-03T175309_7.tar.gz",
            "diskette_data_2025-02-03T175309.tar.gz",
            "diskette_data_2025-02-03T1753_7.tar.gz",
            "diskette_data_x025-02-03T175309_7.tar.gz",
        ] {
            assert!(!is_archive_of(pattern, &d, other), "{other}");
        }
        assert!(is_archive_of("fixed.tar.gz", &d, "fixed_7.tar.gz"));
    }

    #[test]
    fn patterns_get_the_dump_id() {
        assert_eq!(
            unique_pattern("diskette{features}_{date}.tar.gz", DumpId::from(7)),
            "diskette{features}_{date}_7.tar.gz"
        );
        let p = unique_pattern(crate::config::DEFAULT_FILENAME, DumpId::from(3));
        assert!(crate::archive::filename::validate_pattern(&p).is_ok());
    }

    #[test]
    fn temp_names_are_the_engines() {
        assert!(is_temp_name(".diskette-tmp-abc.tar.gz"));
        assert!(!is_temp_name("diskette_data.tar.gz"));
        assert!(!is_temp_name(".hidden"));
    }

    #[test]
    fn temp_names_tell_their_dump() {
        assert_eq!(temp_owner(".diskette-tmp-17-a1B2c3.tar.gz"), Some(17));
        assert_eq!(temp_owner(".diskette-tmp-17-x9Yz01"), Some(17));
        for unowned in [
            ".diskette-tmp-a1b2c3.tar.gz",
            ".diskette-tmp-123456.tar.gz",
            ".diskette-tmp--x.tar.gz",
            ".diskette-tmp-1a-x.tar.gz",
        ] {
            assert_eq!(temp_owner(unowned), None, "{unowned}");
        }
    }

    #[test]
    fn only_ended_dumps_and_stale_unowned_entries_go() {
        let dir = tempfile::tempdir().unwrap();
        let names = [
            ".diskette-tmp-1-aaaaaa.tar.gz",
            ".diskette-tmp-2-bbbbbb.tar.gz",
            ".diskette-tmp-cccccc.tar.gz",
        ];
        for name in names {
            std::fs::write(dir.path().join(name), b"partial").unwrap();
        }
        std::fs::create_dir_all(dir.path().join(".diskette-tmp-1-dddddd/data")).unwrap();
        let running: HashSet<i64> = [2].into();
        let removed = remove_temp_files(temp_entries(dir.path()).unwrap(), &running).unwrap();
        assert_eq!(removed, 2);
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        // Dump 2 still runs; the unowned file was written just now.
        assert_eq!(left, [names[1], names[2]]);
    }
}

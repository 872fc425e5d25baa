//! Comparing databases, trees and archives between the two implementations.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use rusqlite::types::Value;

use super::site::b2sum;

// ---------------------------------------------------------------------------
// Comparing databases and trees.

pub(super) type Rows = Vec<Vec<Value>>;

/// Column names and rows (in rowid order) of one table.
pub(super) fn table(db: &Path, name: &str) -> (Vec<String>, Rows) {
    let conn = rusqlite::Connection::open(db).unwrap();
    let mut stmt = conn
        .prepare(&format!("SELECT * FROM \"{name}\" ORDER BY rowid"))
        .unwrap();
    let columns = stmt.column_names().iter().map(|c| c.to_string()).collect();
    let n = stmt.column_count();
    let rows = stmt
        .query_map([], |row| (0..n).map(|i| row.get::<_, Value>(i)).collect())
        .unwrap()
        .collect::<Result<Rows, _>>()
        .unwrap();
    (columns, rows)
}

/// Every table of the database except `django_migrations` (its `applied`
/// timestamps differ between two migrated copies of the project).
pub(super) fn snapshot(db: &Path) -> BTreeMap<String, (Vec<String>, Rows)> {
    let conn = rusqlite::Connection::open(db).unwrap();
    let names: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    names
        .into_iter()
        .filter(|n| n != "django_migrations")
        .map(|n| {
            // Compared as sets of rows: loads in a different order give
            // `sqlite_sequence` rows in a different order, nothing more.
            let (columns, mut rows) = table(db, &n);
            rows.sort_by_key(|r| format!("{r:?}"));
            (n, (columns, rows))
        })
        .collect()
}

/// The snapshot with every `created` value reduced to the instant it denotes,
/// whether written as Django's serializer does (`2024-01-01T15:08:00.120Z`) or
/// as its SQLite backend stores it (`2024-01-01 15:08:00.120000`). The stored
/// form itself is checked by `our_load_stores_datetimes_as_django_does`.
pub(super) fn instants(
    mut snapshot: BTreeMap<String, (Vec<String>, Rows)>,
) -> BTreeMap<String, (Vec<String>, Rows)> {
    for (columns, rows) in snapshot.values_mut() {
        if let Some(i) = columns.iter().position(|c| c == "created") {
            for row in rows.iter_mut() {
                if let Value::Text(t) = &row[i] {
                    row[i] = Value::Text(instant(t));
                }
            }
        }
    }
    snapshot
}

/// `2024-01-01T15:08:00.120Z` and `2024-01-01 15:08:00.120000` → `2024-01-01 15:08:00.12`.
pub(super) fn instant(datetime: &str) -> String {
    let s = datetime.trim_end_matches('Z').replacen('T', " ", 1);
    match s.split_once('.') {
        Some((whole, frac)) => {
            let frac = frac.trim_end_matches('0');
            if frac.is_empty() {
                whole.to_string()
            } else {
                format!("{whole}.{frac}")
            }
        }
        None => s,
    }
}

/// Assert two snapshots are equal, naming the tables and rows that differ.
pub(super) fn assert_same_tables(
    left: &BTreeMap<String, (Vec<String>, Rows)>,
    right: &BTreeMap<String, (Vec<String>, Rows)>,
    what: &str,
) {
    assert_eq!(
        left.keys().collect::<Vec<_>>(),
        right.keys().collect::<Vec<_>>(),
        "{what}: not the same tables"
    );
    let differences: Vec<String> = left
        .iter()
        .filter(|(name, l)| *l != &right[*name])
        .map(|(name, (columns, rows))| {
            let (_, other) = &right[name];
            let mut text = format!("table {name} {columns:?}:");
            let differing: Vec<_> = rows.iter().zip(other).filter(|(l, r)| l != r).collect();
            for (l, r) in differing.iter().take(3) {
                text.push_str(&format!("\n  left:  {l:?}\n  right: {r:?}"));
            }
            if differing.len() > 3 {
                text.push_str(&format!("\n  ... {} rows differ in all", differing.len()));
            }
            if rows.len() != other.len() {
                text.push_str(&format!("\n  {} rows vs {}", rows.len(), other.len()));
            }
            text
        })
        .collect();
    assert!(
        differences.is_empty(),
        "{what}: tables differ\n{}",
        differences.join("\n")
    );
}

#[derive(Debug, PartialEq, Eq)]
pub(super) enum Node {
    Dir,
    File(Vec<u8>),
    Link(PathBuf),
}

/// Every entry under `root`, by relative path.
pub(super) fn tree(root: &Path) -> BTreeMap<PathBuf, Node> {
    pub(super) fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Node>) {
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let rel = path.strip_prefix(root).unwrap().to_path_buf();
            let meta = fs::symlink_metadata(&path).unwrap();
            if meta.file_type().is_symlink() {
                out.insert(rel, Node::Link(fs::read_link(&path).unwrap()));
            } else if meta.is_dir() {
                out.insert(rel, Node::Dir);
                walk(root, &path, out);
            } else {
                out.insert(rel, Node::File(fs::read(&path).unwrap()));
            }
        }
    }
    let mut out = BTreeMap::new();
    if root.exists() {
        walk(root, root, &mut out);
    }
    out
}

pub(super) fn names(tree: &BTreeMap<PathBuf, Node>) -> Vec<String> {
    tree.keys().map(|p| p.display().to_string()).collect()
}

/// The members of a tar.gz archive: path → content (files only).
pub(super) fn archive_files(archive: &Path) -> BTreeMap<String, Vec<u8>> {
    let gz = flate2::read::GzDecoder::new(fs::File::open(archive).unwrap());
    let mut tar = tar::Archive::new(gz);
    let mut out = BTreeMap::new();
    for entry in tar.entries().unwrap() {
        let mut entry = entry.unwrap();
        if entry.header().entry_type().is_file() {
            let name = entry.path().unwrap().display().to_string();
            let mut content = Vec::new();
            entry.read_to_end(&mut content).unwrap();
            out.insert(name, content);
        }
    }
    out
}

/// A copy of a reference archive (never hand the committed file itself to a
/// loader: the original deletes what it loaded).
pub(super) fn reference_archive(name: &str, into: &Path) -> (PathBuf, String) {
    let from = crate::support::reference(name);
    let to = into.join(name);
    fs::copy(&from, &to).unwrap_or_else(|e| panic!("cannot copy {}: {e}", from.display()));
    let checksum = crate::support::reference_b2(name);
    assert_eq!(b2sum(&to), checksum, "{name} does not match its .b2 file");
    (to, checksum)
}

pub(super) fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("diskette-django-")
        .tempdir()
        .unwrap()
}

//! What the tests share: running the real binary, writing configuration
//! files, the reference archives, and comparing directory trees without
//! following links. The submodules hold the rest:
//! - `app`: the real server in this process, with its registry at hand;
//! - `process`: the real server as a separate process;
//! - `web`: a browser-like client (login, pages, forms with their token);
//! - `hostile`: the hostile archive corpus and what a loader must do with it;
//! - `services`: the PostgreSQL and S3 servers some tests need.

pub mod app;
pub mod hostile;
pub mod process;
pub mod services;
pub mod web;

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A Diskette 0.6.0 reference archive (`tests/fixtures/diskette-0.6.0/`).
/// Copy it before handing it to a loader that may delete what it loaded.
pub fn reference(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/diskette-0.6.0")
        .join(name)
}

/// The BLAKE2b-512 checksum recorded beside a reference archive.
pub fn reference_b2(name: &str) -> String {
    let text = fs::read_to_string(reference(&format!("{name}.b2"))).unwrap();
    text.split_whitespace().next().unwrap().to_string()
}

/// A fresh temporary directory under the target directory, not in /tmp.
pub fn temp_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("it-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .expect("create a temporary directory")
}

/// Write `text` as a configuration file in `dir`; returns its path.
pub fn write_config(dir: &Path, text: &str) -> PathBuf {
    fs::create_dir_all(dir).unwrap();
    let path = dir.join("diskette.toml");
    fs::write(&path, text).unwrap();
    path
}

/// A TOML string literal for a path.
pub fn toml_path(p: &Path) -> String {
    toml_string(&p.display().to_string())
}

pub fn toml_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `diskette --config CONFIG ARGS...`, with no `DISKETTE_*` variable inherited.
pub fn diskette(config: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_diskette"));
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("DISKETTE_") {
            cmd.env_remove(name);
        }
    }
    cmd.env_remove("RUST_LOG");
    cmd.arg("--config").arg(config).args(args);
    cmd
}

/// What a finished command did.
#[derive(Debug)]
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
}

impl From<Output> for Run {
    fn from(o: Output) -> Self {
        Run {
            code: o.status.code(),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

/// Run to completion; a command still running after `limit` is killed and
/// the test fails (a hang is a bug, this is a safety net, not a measurement).
pub fn run(mut cmd: Command, limit: Duration) -> Run {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("start the command");
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out_reader = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = out.read_to_end(&mut s);
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = err.read_to_end(&mut s);
        s
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Run::from(Output {
        status,
        stdout: out_reader.join().unwrap(),
        stderr: err_reader.join().unwrap(),
    })
}

/// One path of a snapshot, from `lstat` (links are never followed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub kind: &'static str,
    pub mode: u32,
    pub size: u64,
    /// BLAKE2b of a regular file's content, or a link's target.
    pub digest: String,
}

/// Every path under `root` (relative, `""` for root itself), by `lstat`.
pub fn snapshot(root: &Path) -> BTreeMap<String, Node> {
    let mut map = BTreeMap::new();
    if fs::symlink_metadata(root).is_ok() {
        walk(root, root, &mut map);
    }
    map
}

fn walk(root: &Path, path: &Path, map: &mut BTreeMap<String, Node>) {
    let meta = fs::symlink_metadata(path).unwrap();
    let ft = meta.file_type();
    let rel = path
        .strip_prefix(root)
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let (kind, digest) = if ft.is_symlink() {
        (
            "symlink",
            fs::read_link(path).unwrap().display().to_string(),
        )
    } else if ft.is_file() {
        let f = fs::File::open(path).unwrap();
        ("file", diskette::checksum::of_reader(f).unwrap())
    } else if ft.is_dir() {
        ("dir", String::new())
    } else if ft.is_fifo() {
        ("fifo", String::new())
    } else if ft.is_char_device() || ft.is_block_device() {
        ("device", String::new())
    } else {
        ("other", String::new())
    };
    map.insert(
        rel,
        Node {
            kind,
            mode: meta.permissions().mode(),
            size: if ft.is_dir() { 0 } else { meta.len() },
            digest,
        },
    );
    if ft.is_dir() {
        let mut children: Vec<_> = fs::read_dir(path)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        children.sort();
        for child in children {
            walk(root, &child, map);
        }
    }
}

/// Human-readable differences between two snapshots (empty when identical).
pub fn diff(before: &BTreeMap<String, Node>, after: &BTreeMap<String, Node>) -> Vec<String> {
    let mut out = Vec::new();
    for (path, node) in before {
        match after.get(path) {
            None => out.push(format!("removed: {path:?}")),
            Some(n) if n != node => out.push(format!("changed: {path:?} {node:?} -> {n:?}")),
            _ => {}
        }
    }
    for path in after.keys() {
        if !before.contains_key(path) {
            out.push(format!("added: {path:?}"));
        }
    }
    out
}

/// Regular files and directories under `root` with their content (None for a
/// directory), for comparing extracted trees; anything else fails the test.
pub fn tree(root: &Path) -> BTreeMap<String, Option<Vec<u8>>> {
    snapshot(root)
        .into_iter()
        .filter(|(rel, _)| !rel.is_empty())
        .map(|(rel, node)| {
            let content = match node.kind {
                "file" => Some(fs::read(root.join(&rel)).unwrap()),
                "dir" => None,
                other => panic!("{rel}: unexpected {other}"),
            };
            (rel, content)
        })
        .collect()
}

/// Write files (relative path → content), creating parents.
pub fn write_files<'a>(root: &Path, files: impl IntoIterator<Item = (&'a str, &'a str)>) {
    for (rel, content) in files {
        let path = root.join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, content).unwrap();
    }
}

/// Write a gzip-compressed tar of regular files (`Some(content)`) and
/// directories (`None`), in the given order.
pub fn write_tar_gz(path: &Path, entries: &[(&str, Option<&[u8]>)]) {
    let file = fs::File::create(path).unwrap();
    let gz = flate2::write::GzEncoder::new(file, flate2::Compression::fast());
    let mut builder = tar::Builder::new(gz);
    for (name, content) in entries {
        let mut header = tar::Header::new_gnu();
        match content {
            Some(data) => {
                header.set_entry_type(tar::EntryType::Regular);
                header.set_size(data.len() as u64);
                header.set_mode(0o644);
            }
            None => {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_size(0);
                header.set_mode(0o755);
            }
        }
        builder
            .append_data(&mut header, name, content.unwrap_or_default())
            .unwrap();
    }
    builder.into_inner().unwrap().finish().unwrap();
}

/// A manifest as Diskette writes it.
pub fn manifest(datas: Option<&[&str]>, storages: Option<&[&str]>) -> String {
    serde_json::json!({
        "version": "0.6.0",
        "creation": "2024-01-01T12:00:00",
        "datas": datas,
        "storages": storages,
    })
    .to_string()
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

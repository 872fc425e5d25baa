//! The hostile archive corpus (`shared/fixtures/make_hostile.py`) run through
//! `diskette load` with the harness protocol of `shared/fixtures/HOSTILE.md`:
//! one sandbox per fixture, an lstat snapshot before and after, and the
//! fixture's `expect` checked on exit code, message and files.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::Value;

/// Well under the 1 GiB of the bomb fixture.
const MAX_UNPACKED: u64 = 64 * 1024 * 1024;

fn generator() -> PathBuf {
    common::shared_dir().join("fixtures/make_hostile.py")
}

/// INDEX.json of the corpus (it lists every fixture even when none is built).
fn index() -> &'static Value {
    static INDEX: OnceLock<Value> = OnceLock::new();
    INDEX.get_or_init(|| {
        let dir = common::temp_dir();
        let status = Command::new("python3")
            .arg(generator())
            .arg(dir.path())
            .args(["--only", "no-fixture-has-this-name"])
            .status()
            .expect("run python3");
        assert!(status.success(), "make_hostile.py failed");
        let text = fs::read_to_string(dir.path().join("INDEX.json")).unwrap();
        serde_json::from_str(&text).unwrap()
    })
}

fn fixture(name: &str) -> &'static Value {
    index()["fixtures"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["file"] == format!("{name}.tar.gz"))
        .unwrap_or_else(|| panic!("{name} is not in INDEX.json"))
}

struct Sandbox {
    _root: tempfile::TempDir,
    /// `S` of the protocol.
    s: PathBuf,
    dest: PathBuf,
    tmp: PathBuf,
    cwd: PathBuf,
    canary: PathBuf,
    archive: PathBuf,
    config: PathBuf,
}

impl Sandbox {
    fn expand(&self, template: &str) -> PathBuf {
        PathBuf::from(
            template
                .replace("{DEST}", &self.dest.display().to_string())
                .replace("{CANARY}", &self.canary.display().to_string())
                .replace("{TMP}", &self.tmp.display().to_string())
                .replace("{CWD}", &self.cwd.display().to_string()),
        )
    }
}

/// Steps 1-2 of the protocol. The fixture is generated with its canary root
/// inside this test's own directory, beside `S`, so tests never share state.
fn setup(name: &str) -> Sandbox {
    let root = common::temp_dir();
    let s = root.path().join("s");
    let canary = root.path().join("canary");
    let fixtures = root.path().join("fixtures");
    let status = Command::new("python3")
        .arg(generator())
        .arg(&fixtures)
        .args(["--only", name, "--canary-root"])
        .arg(&canary)
        .stdout(std::process::Stdio::null())
        .status()
        .expect("run python3");
    assert!(status.success(), "make_hostile.py {name} failed");
    let archive = fixtures.join(format!("{name}.tar.gz"));
    assert!(archive.is_file(), "{name} was not built");

    let sb = Sandbox {
        dest: s.join("a/b/dest"),
        tmp: s.join("tmp"),
        cwd: s.join("cwd"),
        s,
        canary,
        archive,
        config: root.path().join("config/diskette.toml"),
        _root: root,
    };
    let harness = &index()["harness"];
    for (rel, content) in harness["dest_before"].as_object().unwrap() {
        common::write_files(&sb.dest, [(rel.as_str(), content.as_str().unwrap())]);
    }
    for (rel, content) in harness["canary_before"].as_object().unwrap() {
        common::write_files(&sb.canary, [(rel.as_str(), content.as_str().unwrap())]);
    }
    if let Some(extra) = fixture(name)["extra_before"].as_object() {
        for (template, content) in extra {
            let path = sb.expand(template);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(&path, content.as_str().unwrap()).unwrap();
        }
    }
    fs::create_dir_all(&sb.tmp).unwrap();
    fs::create_dir_all(&sb.cwd).unwrap();
    let config = format!(
        "[load]\nstorages_basepath = {}\nmax_unpacked_bytes = {MAX_UNPACKED}\nmax_entries = 10000\n\
         [data]\ndatabase_url = {}\n",
        common::toml_path(&sb.dest),
        common::toml_string(&format!(
            "sqlite://{}",
            sb.config.parent().unwrap().join("app.db").display()
        )),
    );
    common::write_config(sb.config.parent().unwrap(), &config);
    sb
}

fn absent(path: &Path) -> bool {
    fs::symlink_metadata(path).is_err()
}

/// Steps 3-5 of the protocol for one fixture. `message` is a fragment the
/// error must contain for a rejected fixture (None for an accepted one).
fn check(name: &str, message: Option<&str>) {
    let fx = fixture(name);
    let sb = setup(name);
    let abs_existed = !absent(Path::new("/tmp/abs.txt"));
    let s_before = common::snapshot(&sb.s);
    let canary_before = common::snapshot(&sb.canary);

    let timeout = index()["harness"]["timeout_s"].as_u64().unwrap_or(120);
    let mut cmd = common::diskette(&sb.config, &["load", sb.archive.to_str().unwrap()]);
    cmd.env("TMPDIR", &sb.tmp).current_dir(&sb.cwd);
    let run = common::run(cmd, Duration::from_secs(timeout));

    let mut failures = Vec::new();
    assert!(
        run.code.is_some(),
        "{name}: killed by a signal\n{}",
        run.stderr
    );
    assert!(
        !run.stderr.contains("panicked"),
        "{name}: the loader panicked\n{}",
        run.stderr
    );
    let s_after = common::snapshot(&sb.s);
    let canary_diff = common::diff(&canary_before, &common::snapshot(&sb.canary));
    if !canary_diff.is_empty() {
        failures.push(format!("canary changed: {canary_diff:#?}"));
    }
    if !abs_existed && !absent(Path::new("/tmp/abs.txt")) {
        failures.push("/tmp/abs.txt was created".into());
    }
    for template in fx["must_not_exist"].as_array().into_iter().flatten() {
        let path = sb.expand(template.as_str().unwrap());
        if !absent(&path) {
            failures.push(format!("{} exists", path.display()));
        }
    }

    match fx["expect"].as_str().unwrap() {
        "reject" => {
            let message = message.expect("a reject fixture needs an expected message");
            if run.success() {
                failures.push("the load succeeded".into());
            }
            let line = run
                .stderr
                .lines()
                .find(|l| l.starts_with("error: "))
                .unwrap_or_default();
            if !line.contains(message) {
                failures.push(format!(
                    "the error line does not mention {message:?}:\n{}",
                    run.stderr
                ));
            }
            let d = common::diff(&s_before, &s_after);
            if !d.is_empty() {
                failures.push(format!("the sandbox changed: {d:#?}"));
            }
        }
        "accept" => {
            if !run.success() {
                failures.push(format!("the load failed:\n{}", run.stderr));
            }
            for (template, content) in fx["expect_after"].as_object().into_iter().flatten() {
                let path = sb.expand(template);
                match content.as_str() {
                    None if !absent(&path) => {
                        failures.push(format!("{} should not exist", path.display()))
                    }
                    Some(text) if fs::read_to_string(&path).ok().as_deref() != Some(text) => {
                        failures.push(format!("{} should hold {text:?}", path.display()))
                    }
                    _ => {}
                }
            }
            // Nothing outside DEST changed in S, and no temporary file is left in it.
            let dest_rel = sb
                .dest
                .strip_prefix(&sb.s)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let outside = |m: &BTreeMap<String, common::Node>| -> BTreeMap<String, common::Node> {
                m.iter()
                    .filter(|(k, _)| !k.starts_with(&format!("{dest_rel}/")))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            };
            let d = common::diff(&outside(&s_before), &outside(&s_after));
            if !d.is_empty() {
                failures.push(format!("the sandbox changed outside DEST: {d:#?}"));
            }
            for entry in fs::read_dir(&sb.dest).unwrap() {
                let entry = entry.unwrap().file_name();
                if entry.to_string_lossy().starts_with(".diskette") {
                    failures.push(format!("{entry:?} left in DEST"));
                }
            }
        }
        other => panic!("{name}: unknown expect {other:?}"),
    }
    assert!(failures.is_empty(), "{name}:\n{}", failures.join("\n"));
}

macro_rules! hostile {
    ($($name:ident => $message:expr;)*) => {
        $(
            #[test]
            fn $name() {
                check(stringify!($name), $message);
            }
        )*
        const TESTED: &[&str] = &[$(stringify!($name)),*];
    };
}

hostile! {
    a00_ok_baseline => None;
    a01_ok_no_storages => None;
    a02_gz_empty_file => Some("not a gzip archive");
    a03_gz_not_an_archive => Some("not a gzip archive");
    a04_gz_plain_tar => Some("not a gzip archive");
    a05_gz_truncated => Some("truncated");
    a06_gz_bad_crc => Some("checksum");
    a07_gz_bomb_1gib => Some("max_unpacked_bytes");
    a10_path_dotdot => Some("'..'");
    a11_path_absolute => Some("absolute");
    a12_path_longer_than_path_max => Some("longer than 4096 bytes");
    a13_path_component_too_long => Some("longer than 255 bytes");
    a14_path_non_utf8 => Some("not valid UTF-8");
    a15_dup_same_path => Some("appears twice");
    a20_symlink_escape_write_through => Some("symbolic link");
    a21_hardlink_etc_passwd => Some("hard link");
    a22_symlink_data_file => Some("symbolic link");
    a25_special_chardev => Some("character device");
    a26_special_blockdev => Some("block device");
    a27_special_fifo => Some("FIFO");
    a30_manifest_missing => Some("no manifest.json");
    a31_manifest_not_json => Some("not JSON");
    a32_manifest_not_object => Some("not a JSON object");
    a33_manifest_wrong_types => Some("invalid type");
    a34_manifest_list_items_wrong_types => Some("invalid type");
    a35_manifest_missing_keys => Some("missing key");
    a36_manifest_storage_dotdot => Some("'..'");
    a37_manifest_storage_absolute => Some("absolute");
    a38_manifest_datas_outside => Some("'..'");
    a39_storage_listed_but_absent => Some("storage \"uploads\"");
    a40_data_listed_but_absent => Some("data/missing.json");
    a41_data_invalid_json_last => Some("data/zz_broken.json");
}

#[test]
fn every_fixture_of_the_index_has_a_test() {
    let listed: Vec<String> = index()["fixtures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            f["file"]
                .as_str()
                .unwrap()
                .trim_end_matches(".tar.gz")
                .to_string()
        })
        .collect();
    let missing: Vec<_> = listed
        .iter()
        .filter(|n| !TESTED.contains(&n.as_str()))
        .collect();
    assert!(missing.is_empty(), "fixtures without a test: {missing:?}");
}

//! The hostile archive corpus (`support::hostile`) run through `diskette
//! load` with its harness protocol: one sandbox per archive, an lstat
//! snapshot before and after, and the case's expectation checked on exit
//! code, message and files.

use crate::support;
use crate::support::hostile::{self, CASES, Expect};

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

/// Well under the 1 GiB of the bomb.
const MAX_UNPACKED: u64 = 64 * 1024 * 1024;

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

/// The sandbox `S`: the destination `S/a/b/dest` (deep enough that
/// `DEST/../../outside` stays inside `S`), `TMPDIR=S/tmp`, the working
/// directory `S/cwd`, and the archive built with its canary directory inside
/// this test's own directory, beside `S`, so tests never share state.
fn setup(case: &hostile::Case) -> Sandbox {
    let root = support::temp_dir();
    let s = root.path().join("s");
    let canary = root.path().join("canary");
    let archive = root.path().join(format!("{}.tar.gz", case.name));
    fs::write(&archive, case.build(&canary)).unwrap();

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
    support::write_files(&sb.dest, hostile::DEST_BEFORE.iter().copied());
    support::write_files(&sb.canary, hostile::CANARY_BEFORE.iter().copied());
    for (template, content) in case.extra_before {
        let path = sb.expand(template);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, content).unwrap();
    }
    fs::create_dir_all(&sb.tmp).unwrap();
    fs::create_dir_all(&sb.cwd).unwrap();
    let config = format!(
        "[load]\nstorages_basepath = {}\nmax_unpacked_bytes = {MAX_UNPACKED}\nmax_entries = 10000\n\
         [data]\ndatabase_url = {}\n",
        support::toml_path(&sb.dest),
        support::toml_string(&format!(
            "sqlite://{}",
            sb.config.parent().unwrap().join("app.db").display()
        )),
    );
    support::write_config(sb.config.parent().unwrap(), &config);
    sb
}

fn absent(path: &Path) -> bool {
    fs::symlink_metadata(path).is_err()
}

/// Snapshot, load, compare, for one case. A rejected archive must leave `S`
/// and the canary as they were, with an error line holding `message`; an
/// accepted one must give the expected files and change nothing outside
/// `DEST`. Never a signal, a panic or a timeout.
fn check(name: &str, message: Option<&str>) {
    let case = hostile::case(name);
    let sb = setup(case);
    let abs_existed = !absent(Path::new("/tmp/abs.txt"));
    let s_before = support::snapshot(&sb.s);
    let canary_before = support::snapshot(&sb.canary);

    let mut cmd = support::diskette(&sb.config, &["load", sb.archive.to_str().unwrap()]);
    cmd.env("TMPDIR", &sb.tmp).current_dir(&sb.cwd);
    let run = support::run(cmd, hostile::TIMEOUT);

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
    let s_after = support::snapshot(&sb.s);
    let canary_diff = support::diff(&canary_before, &support::snapshot(&sb.canary));
    if !canary_diff.is_empty() {
        failures.push(format!("canary changed: {canary_diff:#?}"));
    }
    if !abs_existed && !absent(Path::new("/tmp/abs.txt")) {
        failures.push("/tmp/abs.txt was created".into());
    }
    for template in case.must_not_exist {
        let path = sb.expand(template);
        if !absent(&path) {
            failures.push(format!("{} exists", path.display()));
        }
    }

    match case.expect {
        Expect::Reject => {
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
            let d = support::diff(&s_before, &s_after);
            if !d.is_empty() {
                failures.push(format!("the sandbox changed: {d:#?}"));
            }
        }
        Expect::Accept => {
            if !run.success() {
                failures.push(format!("the load failed:\n{}", run.stderr));
            }
            for (template, content) in case.expect_after {
                let path = sb.expand(template);
                match content {
                    None if !absent(&path) => {
                        failures.push(format!("{} should not exist", path.display()))
                    }
                    Some(text) if fs::read_to_string(&path).ok().as_deref() != Some(*text) => {
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
            let outside = |m: &BTreeMap<String, support::Node>| -> BTreeMap<String, support::Node> {
                m.iter()
                    .filter(|(k, _)| !k.starts_with(&format!("{dest_rel}/")))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            };
            let d = support::diff(&outside(&s_before), &outside(&s_after));
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
fn every_fixture_of_the_corpus_has_a_test() {
    let missing: Vec<_> = CASES
        .iter()
        .map(|c| c.name)
        .filter(|n| !TESTED.contains(n))
        .collect();
    assert!(missing.is_empty(), "fixtures without a test: {missing:?}");
    assert_eq!(CASES.len(), TESTED.len(), "a test without a fixture");
}

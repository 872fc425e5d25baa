//! The hostile archive corpus: broken or malicious dump archives, each with
//! what a safe loader must do with it. Every archive is built in memory from
//! explicit tar headers, so no link, device or FIFO is ever created on disk,
//! and attacks aim only at the test's own sandbox, its canary directory,
//! `/tmp/abs.txt` and a hard link to `/etc/passwd` that is never written.

use std::path::Path;
use std::time::Duration;

use flate2::{Compress, Compression, Crc, FlushCompress};

/// Files put in the destination before every run.
pub const DEST_BEFORE: &[(&str, &str)] = &[
    (
        "media/old.txt",
        "old media, replaced only by a successful load\n",
    ),
    ("uploads/keep.txt", "uploads keep\n"),
    ("other/keep.txt", "unrelated, never touched\n"),
];

/// Files put in the canary directory before every run.
pub const CANARY_BEFORE: &[(&str, &str)] = &[("victim.txt", "canary\n")];

/// A hang is a bug: the loader is killed after this.
pub const TIMEOUT: Duration = Duration::from_secs(120);

const MANIFEST_VERSION: &str = "1.0.0";
const CREATION: &str = "2024-01-01T12:00:00";
/// Content of every `data/sample.json`: valid for the loader, loads nothing.
const SAMPLE_JSON: &str = "[]";
const MTIME: u64 = 1_700_000_000;
const BLOCK: usize = 512;
const RECORD: usize = 20 * BLOCK;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    Accept,
    Reject,
}

/// One archive of the corpus. Paths may hold `{DEST}` (the storages
/// destination), `{CANARY}` (the canary directory baked into the archive),
/// `{TMP}` (the loader's TMPDIR) and `{CWD}` (its working directory).
pub struct Case {
    pub name: &'static str,
    pub expect: Expect,
    /// Paths that must not exist after the load.
    pub must_not_exist: &'static [&'static str],
    /// Files created before the load, besides the harness's own.
    pub extra_before: &'static [(&'static str, &'static str)],
    /// Content each path has after an accepted load (`None`: absent).
    pub expect_after: &'static [(&'static str, Option<&'static str>)],
    build: fn(&Ctx) -> Vec<u8>,
}

impl Case {
    /// The archive's bytes, with `canary` as the directory links aim at.
    pub fn build(&self, canary: &Path) -> Vec<u8> {
        (self.build)(&Ctx {
            canary: canary.display().to_string(),
        })
    }
}

pub fn case(name: &str) -> &'static Case {
    CASES
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("{name} is not in the corpus"))
}

const fn reject(name: &'static str, build: fn(&Ctx) -> Vec<u8>) -> Case {
    Case {
        name,
        expect: Expect::Reject,
        must_not_exist: &[],
        extra_before: &[],
        expect_after: &[],
        build,
    }
}

const fn reject_leaving(
    name: &'static str,
    must_not_exist: &'static [&'static str],
    build: fn(&Ctx) -> Vec<u8>,
) -> Case {
    Case {
        must_not_exist,
        ..reject(name, build)
    }
}

pub const CASES: &[Case] = &[
    // Controls: a loader that rejects everything fails these.
    Case {
        name: "a00_ok_baseline",
        expect: Expect::Accept,
        must_not_exist: &[],
        extra_before: &[],
        expect_after: &[
            (
                "{DEST}/media/hello.txt",
                Some("hello from the baseline dump\n"),
            ),
            ("{DEST}/media/sub/nested.txt", Some("nested\n")),
            ("{DEST}/media/old.txt", None),
            ("{DEST}/uploads/keep.txt", Some("uploads keep\n")),
            ("{DEST}/other/keep.txt", Some("unrelated, never touched\n")),
        ],
        build: |c| gzip(&c.baseline().end()),
    },
    Case {
        name: "a01_ok_no_storages",
        expect: Expect::Accept,
        must_not_exist: &[],
        extra_before: &[],
        expect_after: &[
            (
                "{DEST}/media/old.txt",
                Some("old media, replaced only by a successful load\n"),
            ),
            ("{DEST}/uploads/keep.txt", Some("uploads keep\n")),
        ],
        build: |c| {
            let mut t = Tar::default();
            t.file("manifest.json", c.manifest(&["data/sample.json"], &[]));
            c.data(&mut t);
            gzip(&t.end())
        },
    },
    // The gzip layer.
    reject("a02_gz_empty_file", |_| Vec::new()),
    reject("a03_gz_not_an_archive", |_| {
        b"<!DOCTYPE html>\n<html><head><title>Log in</title></head>\n\
          <body><form method=\"post\"><input name=\"username\"></form></body></html>\n"
            .to_vec()
    }),
    reject("a04_gz_plain_tar", |c| c.baseline().end()),
    // An interrupted download: the manifest and part of media come before the cut.
    reject("a05_gz_truncated", |c| {
        let mut t = c.baseline();
        t.file("media/big.bin", super::noise(200_000, 5));
        let mut bytes = gzip(&t.end());
        bytes.truncate(bytes.len() * 6 / 10);
        bytes
    }),
    // Every tar entry parses: only a reader that drains the gzip stream sees it.
    reject("a06_gz_bad_crc", |c| {
        let mut bytes = gzip(&c.baseline().end());
        let n = bytes.len();
        bytes[n - 8..n - 4].iter_mut().for_each(|b| *b ^= 0xff);
        bytes
    }),
    reject("a07_gz_bomb_1gib", bomb),
    // Member names.
    reject_leaving(
        "a10_path_dotdot",
        &[
            "{DEST}/../escape.txt",
            "{TMP}/escape.txt",
            "{CWD}/../escape.txt",
        ],
        |c| c.baseline_with(|t| t.file("../escape.txt", "HOSTILE-PAYLOAD ../escape.txt\n")),
    ),
    reject_leaving("a11_path_absolute", &["/tmp/abs.txt"], |c| {
        c.baseline_with(|t| t.file("/tmp/abs.txt", "HOSTILE-PAYLOAD /tmp/abs.txt\n"))
    }),
    // 21 components of 200 bytes under media/, in a pax `path` record.
    reject("a12_path_longer_than_path_max", |c| {
        let deep: Vec<String> = (0..21)
            .map(|i| format!("d{i:02}{}", "x".repeat(197)))
            .collect();
        let name = format!("media/{}/HOSTILE-deep.txt", deep.join("/"));
        c.baseline_with(|t| t.pax_file(&name, "deep"))
    }),
    // A 300-byte component, in a GNU long-name header.
    reject("a13_path_component_too_long", |c| {
        let name = format!("media/{}.txt", "n".repeat(300));
        c.baseline_with(|t| t.file(&name, "long\n"))
    }),
    reject("a14_path_non_utf8", |c| {
        c.baseline_with(|t| t.file(b"media/caf\xe9.txt", "latin-1 name\n"))
    }),
    reject("a15_dup_same_path", |c| {
        c.baseline_with(|t| t.file("media/hello.txt", "HOSTILE-PAYLOAD second copy\n"))
    }),
    // Links.
    reject_leaving(
        "a20_symlink_escape_write_through",
        &[
            "{CANARY}/HOSTILE-through-symlink.txt",
            "{DEST}/media/HOSTILE-link",
        ],
        |c| {
            c.baseline_with(|t| {
                t.symlink("media/HOSTILE-link", &c.canary).file(
                    "media/HOSTILE-link/HOSTILE-through-symlink.txt",
                    "HOSTILE-PAYLOAD written through symlink\n",
                )
            })
        },
    ),
    reject_leaving(
        "a21_hardlink_etc_passwd",
        &["{DEST}/media/HOSTILE-passwd"],
        |c| c.baseline_with(|t| t.link(b'1', "media/HOSTILE-passwd", "/etc/passwd")),
    ),
    // The data file named by the manifest is a link to a file outside.
    reject("a22_symlink_data_file", |c| {
        let mut t = Tar::default();
        t.file(
            "manifest.json",
            c.manifest(&["data/sample.json"], &["media"]),
        )
        .dir("data/")
        .symlink("data/sample.json", "/etc/passwd");
        c.media(&mut t);
        gzip(&t.end())
    }),
    // Special files.
    reject_leaving(
        "a25_special_chardev",
        &["{DEST}/media/HOSTILE-chardev"],
        |c| c.baseline_with(|t| t.special(b'3', "media/HOSTILE-chardev", 0o666, (1, 3))),
    ),
    reject_leaving(
        "a26_special_blockdev",
        &["{DEST}/media/HOSTILE-blockdev"],
        |c| c.baseline_with(|t| t.special(b'4', "media/HOSTILE-blockdev", 0o660, (8, 0))),
    ),
    reject_leaving("a27_special_fifo", &["{DEST}/media/HOSTILE-fifo"], |c| {
        c.baseline_with(|t| t.special(b'6', "media/HOSTILE-fifo", 0o644, (0, 0)))
    }),
    // The manifest.
    reject("a30_manifest_missing", |c| {
        let mut t = Tar::default();
        c.data(&mut t);
        c.media(&mut t);
        gzip(&t.end())
    }),
    reject("a31_manifest_not_json", |c| {
        c.with_manifest(r#"{"version": "1.0", datas: ["#)
    }),
    reject("a32_manifest_not_object", |c| {
        c.with_manifest(r#"["data/sample.json", "media"]"#)
    }),
    reject("a33_manifest_wrong_types", |c| {
        c.with_manifest(
            &serde_json::json!({
                "version": 1, "creation": true,
                "datas": "data/sample.json", "storages": {"media": true},
            })
            .to_string(),
        )
    }),
    reject("a34_manifest_list_items_wrong_types", |c| {
        c.with_manifest(
            &serde_json::json!({
                "version": MANIFEST_VERSION, "creation": CREATION,
                "datas": [1, null], "storages": [{"media": 1}, []],
            })
            .to_string(),
        )
    }),
    reject("a35_manifest_missing_keys", |c| {
        c.with_manifest(&serde_json::json!({ "version": MANIFEST_VERSION }).to_string())
    }),
    // A clean archive whose manifest points outside the destination.
    Case {
        extra_before: &[("{DEST}/../../outside/canary.txt", "canary\n")],
        ..reject("a36_manifest_storage_dotdot", |c| {
            c.with_manifest(&c.manifest(&["data/sample.json"], &["../../outside"]))
        })
    },
    Case {
        extra_before: &[("{CANARY}/HOSTILE-abs-storage/canary.txt", "canary\n")],
        ..reject("a37_manifest_storage_absolute", |c| {
            let storage = format!("{}/HOSTILE-abs-storage", c.canary);
            c.with_manifest(&c.manifest(&["data/sample.json"], &[&storage]))
        })
    },
    reject("a38_manifest_datas_outside", |c| {
        let outside = format!("{}etc/passwd", "../".repeat(10));
        c.with_manifest(&c.manifest(&[&outside], &["media"]))
    }),
    // What the manifest lists is missing or broken.
    reject("a39_storage_listed_but_absent", |c| {
        c.with_manifest(&c.manifest(&["data/sample.json"], &["media", "uploads"]))
    }),
    reject("a40_data_listed_but_absent", |c| {
        c.with_manifest(&c.manifest(&["data/sample.json", "data/missing.json"], &["media"]))
    }),
    // The broken data file comes last, after the storage.
    reject("a41_data_invalid_json_last", |c| {
        let mut t = Tar::default();
        let manifest = c.manifest(&["data/sample.json", "data/zz_broken.json"], &["media"]);
        t.file("manifest.json", manifest);
        c.data(&mut t);
        c.media(&mut t);
        t.file("data/zz_broken.json", r#"[{"model": "x", "pk": 1, "#);
        gzip(&t.end())
    }),
];

/// 1 GiB + 1 MiB of zeros in `media/zeros.bin`, about 1 MB compressed. The
/// zeros are compressed once as a self-contained run of deflate blocks and
/// repeated, so building it costs little.
fn bomb(c: &Ctx) -> Vec<u8> {
    const MIB: usize = 1 << 20;
    let size = (1u64 << 30) + MIB as u64;
    let mut t = c.baseline();
    t.header(b"media/zeros.bin", b'0', 0o644, size, b"", (0, 0));
    let head = std::mem::take(&mut t.0);
    let tail = Tar::end_marker(head.len() as u64 + size);
    gzip_runs(&[(&head, 1), (&vec![0; MIB], size / MIB as u64), (&tail, 1)])
}

/// What the archives depend on: the canary directory links aim at.
struct Ctx {
    canary: String,
}

impl Ctx {
    fn manifest(&self, datas: &[&str], storages: &[&str]) -> String {
        serde_json::json!({
            "version": MANIFEST_VERSION,
            "creation": CREATION,
            "datas": datas,
            "storages": storages,
        })
        .to_string()
    }

    fn data(&self, t: &mut Tar) {
        t.dir("data/").file("data/sample.json", SAMPLE_JSON);
    }

    fn media(&self, t: &mut Tar) {
        t.dir("media/")
            .file("media/hello.txt", "hello from the baseline dump\n")
            .dir("media/sub/")
            .file("media/sub/nested.txt", "nested\n");
    }

    /// A valid dump: manifest first, then the data, then the storage `media`.
    fn baseline(&self) -> Tar {
        let mut t = Tar::default();
        t.file(
            "manifest.json",
            self.manifest(&["data/sample.json"], &["media"]),
        );
        self.data(&mut t);
        self.media(&mut t);
        t
    }

    /// The valid dump followed by more entries, gzipped.
    fn baseline_with(&self, more: impl FnOnce(&mut Tar) -> &mut Tar) -> Vec<u8> {
        let mut t = self.baseline();
        more(&mut t);
        gzip(&t.end())
    }

    /// The valid dump's entries under another manifest, gzipped.
    fn with_manifest(&self, manifest: &str) -> Vec<u8> {
        let mut t = Tar::default();
        t.file("manifest.json", manifest);
        self.data(&mut t);
        self.media(&mut t);
        gzip(&t.end())
    }
}

/// A tar stream written header by header.
#[derive(Default)]
struct Tar(Vec<u8>);

impl Tar {
    fn file(&mut self, name: impl AsRef<[u8]>, data: impl AsRef<[u8]>) -> &mut Self {
        let data = data.as_ref();
        self.header(name.as_ref(), b'0', 0o644, data.len() as u64, b"", (0, 0));
        self.content(data)
    }

    fn dir(&mut self, name: &str) -> &mut Self {
        self.header(name.as_bytes(), b'5', 0o755, 0, b"", (0, 0));
        self
    }

    fn symlink(&mut self, name: &str, target: &str) -> &mut Self {
        self.header(name.as_bytes(), b'2', 0o777, 0, target.as_bytes(), (0, 0));
        self
    }

    /// A link entry of type `kind` (`1`: hard link).
    fn link(&mut self, kind: u8, name: &str, target: &str) -> &mut Self {
        self.header(name.as_bytes(), kind, 0o644, 0, target.as_bytes(), (0, 0));
        self
    }

    /// A device (`3`: character, `4`: block) or FIFO (`6`) entry.
    fn special(&mut self, kind: u8, name: &str, mode: u32, dev: (u32, u32)) -> &mut Self {
        self.header(name.as_bytes(), kind, mode, 0, b"", dev);
        self
    }

    /// A regular file whose name travels in a pax extended header.
    fn pax_file(&mut self, name: &str, data: &str) -> &mut Self {
        let record = pax_record("path", name);
        let mut pax = raw_header(
            b"././@PaxHeader",
            b'x',
            0o644,
            record.len() as u64,
            b"",
            (0, 0),
        );
        ustar(&mut pax);
        self.0.extend_from_slice(&pax);
        self.content(record.as_bytes());
        let mut h = raw_header(
            &name.as_bytes()[..100],
            b'0',
            0o644,
            data.len() as u64,
            b"",
            (0, 0),
        );
        ustar(&mut h);
        self.0.extend_from_slice(&h);
        self.content(data.as_bytes())
    }

    fn content(&mut self, data: &[u8]) -> &mut Self {
        self.0.extend_from_slice(data);
        self.0.resize(self.0.len().next_multiple_of(BLOCK), 0);
        self
    }

    /// A GNU header; names and targets over 100 bytes go first in GNU
    /// long-name (`L`) and long-link (`K`) entries.
    fn header(
        &mut self,
        name: &[u8],
        kind: u8,
        mode: u32,
        size: u64,
        link: &[u8],
        dev: (u32, u32),
    ) {
        for (long, value) in [(b'K', link), (b'L', name)] {
            if value.len() > 100 {
                let mut v = value.to_vec();
                v.push(0);
                let h = raw_header(b"././@LongLink", long, 0o644, v.len() as u64, b"", (0, 0));
                self.0.extend_from_slice(&h);
                self.content(&v);
            }
        }
        let cut = |v: &[u8]| v[..v.len().min(100)].to_vec();
        let h = raw_header(&cut(name), kind, mode, size, &cut(link), dev);
        self.0.extend_from_slice(&h);
    }

    /// Two zero blocks, then zeros up to a whole 10 KiB record, for a stream
    /// of `len` bytes so far.
    fn end_marker(len: u64) -> Vec<u8> {
        let total = (len as usize + 2 * BLOCK).next_multiple_of(RECORD);
        vec![0; total - len as usize]
    }

    fn end(mut self) -> Vec<u8> {
        let end = Tar::end_marker(self.0.len() as u64);
        self.0.extend_from_slice(&end);
        self.0
    }
}

/// One 512-byte header in GNU layout: name, mode, uid, gid, size, mtime,
/// checksum, type, link name, magic, owner names, device numbers.
fn raw_header(
    name: &[u8],
    kind: u8,
    mode: u32,
    size: u64,
    link: &[u8],
    dev: (u32, u32),
) -> [u8; BLOCK] {
    let mut h = [0u8; BLOCK];
    let octal = |h: &mut [u8; BLOCK], at: usize, width: usize, value: u64| {
        let text = format!("{value:0w$o}", w = width - 1);
        h[at..at + width - 1].copy_from_slice(text.as_bytes());
    };
    h[..name.len()].copy_from_slice(name);
    octal(&mut h, 100, 8, mode.into());
    octal(&mut h, 108, 8, 0);
    octal(&mut h, 116, 8, 0);
    octal(&mut h, 124, 12, size);
    octal(&mut h, 136, 12, MTIME);
    h[156] = kind;
    h[157..157 + link.len()].copy_from_slice(link);
    h[257..265].copy_from_slice(b"ustar  \0");
    h[265..269].copy_from_slice(b"root");
    h[297..301].copy_from_slice(b"root");
    octal(&mut h, 329, 8, dev.0.into());
    octal(&mut h, 337, 8, dev.1.into());
    checksum(&mut h);
    h
}

/// Turn a GNU header into a POSIX ustar one (magic `ustar\0`, version `00`).
fn ustar(h: &mut [u8; BLOCK]) {
    h[257..265].copy_from_slice(b"ustar\x0000");
    checksum(h);
}

/// The sum of the header's bytes, its own field counted as spaces.
fn checksum(h: &mut [u8; BLOCK]) {
    h[148..156].fill(b' ');
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    h[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
}

/// `LEN key=value\n`, where LEN counts the whole record, itself included.
fn pax_record(key: &str, value: &str) -> String {
    let body = format!(" {key}={value}\n");
    let mut len = body.len();
    while len != body.len() + len.to_string().len() {
        len = body.len() + len.to_string().len();
    }
    format!("{len}{body}")
}

fn gzip(data: &[u8]) -> Vec<u8> {
    gzip_runs(&[(data, 1)])
}

/// One gzip member holding each piece repeated its number of times. Each
/// piece is deflated once, on its own and ending on a byte boundary, so
/// copies of it can follow each other; the trailer's CRC is combined.
fn gzip_runs(pieces: &[(&[u8], u64)]) -> Vec<u8> {
    // Magic, deflate, no flags, no time, best compression, unknown OS.
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 2, 255];
    let mut crc = Crc::new();
    for &(piece, times) in pieces {
        let deflated = deflate_open(piece);
        let mut one = Crc::new();
        one.update(piece);
        for _ in 0..times {
            out.extend_from_slice(&deflated);
            crc.combine(&one);
        }
    }
    // The final block: empty, with fixed Huffman codes.
    out.extend_from_slice(&[0x03, 0x00]);
    let len: u64 = pieces.iter().map(|(p, n)| p.len() as u64 * n).sum();
    out.extend_from_slice(&crc.sum().to_le_bytes());
    out.extend_from_slice(&(len as u32).to_le_bytes());
    out
}

/// Raw deflate blocks of `data`, none of them final, ending on a byte boundary
/// (a sync flush), and referring to nothing before them.
fn deflate_open(data: &[u8]) -> Vec<u8> {
    let mut c = Compress::new(Compression::best(), false);
    let mut out = Vec::with_capacity(data.len() / 2 + 1024);
    loop {
        let done = c.total_in() as usize;
        c.compress_vec(&data[done..], &mut out, FlushCompress::Sync)
            .expect("deflate");
        if c.total_in() as usize == data.len() && out.len() < out.capacity() {
            return out;
        }
        out.reserve(64 * 1024);
    }
}

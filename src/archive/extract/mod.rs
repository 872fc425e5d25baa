//! Safe extraction of an untrusted archive into a private temporary directory.
//!
//! The archive may come from anywhere (a download, an upload), so nothing in it
//! is trusted. The policy, layer by layer:
//!
//! - **gzip**: the file must start with the gzip magic. Multi-member gzip is
//!   accepted (`MultiGzDecoder`): concatenated members are what GNU tar and
//!   Diskette 0.6.0 read as one stream, so we see exactly the bytes they see.
//!   Every member's CRC32/ISIZE trailer is checked, because after the tar end
//!   the decoder is drained to its end. Bytes after the last member that are
//!   not another gzip member are an error, as is a truncated stream.
//! - **tar**: after the end-of-archive block, only zero padding may follow; a
//!   second tar archive or any other data is refused (GNU tar and Python stop
//!   at the first end marker, so data there would be seen by no one and is at
//!   best a mistake). A stream that ends without the end marker is refused as
//!   truncated. Total unpacked bytes and the number of entries are capped
//!   while streaming; a declared size over the cap is refused before anything
//!   is written for it.
//! - **entries**: only regular files and directories. Links, devices, FIFOs,
//!   sparse and unknown types are refused, naming the entry. Names must be
//!   UTF-8, relative, made of normal components (`.`/`..` refused, not
//!   dropped), without backslash or control characters, at most 4096 bytes and
//!   255 bytes per component; a leading `./` is accepted (GNU `tar -C dir .`).
//!   Duplicates and file/directory conflicts are refused. Files are created
//!   with `O_EXCL | O_NOFOLLOW`, directories one component at a time mode
//!   0755. A file keeps the permission bits of the archive as Python's `data`
//!   filter keeps them (`0600` stays private; setuid/setgid/sticky and
//!   group/other write are dropped; the owner can always read and write);
//!   owners are ignored; file modification times are restored.
//! - **layout**: `manifest.json` is a regular file at the root, at most
//!   64 KiB, parsed with [`Manifest::parse`]. Every entry must lie under
//!   `manifest.json`, `data/` or a storage the manifest lists; every listed
//!   data file must be a regular file and every listed storage a directory.
//!
//! The temporary directory is removed when [`Extracted`] is dropped, and on
//! every error path.

mod headers;
mod names;
mod stream;
mod tree;
mod unpack;
mod writers;

use std::fs::{self, File};
use std::io::{self, Read, Seek};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use tempfile::TempDir;

use super::manifest::Manifest;
use crate::config::LoadConfig;
use crate::error::{Error, IoContext, Result};
use crate::progress::Progress;
use unpack::Unpacker;

/// Prefix of the temporary directories an extraction creates.
pub const TEMP_PREFIX: &str = ".diskette-load-";
const TREE: &str = "tree";
const DIR_MODE: u32 = 0o755;

/// Caps enforced while the archive is read.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Decompressed bytes (tar headers and padding included).
    pub max_unpacked_bytes: u64,
    /// Tar entries (PAX/GNU metadata headers not counted).
    pub max_entries: u64,
}

impl Limits {
    pub fn from_config(config: &LoadConfig) -> Self {
        Limits {
            max_unpacked_bytes: config.max_unpacked_bytes,
            max_entries: config.max_entries,
        }
    }
}

/// A validated archive unpacked in a private temporary directory.
#[derive(Debug)]
pub struct Extracted {
    dir: TempDir,
    pub manifest: Manifest,
    /// Tar entries read.
    pub entries: u64,
    /// Bytes of file content written.
    pub file_bytes: u64,
}

impl Extracted {
    /// The private temporary directory (mode 0700). Callers may keep their own
    /// scratch files in it, beside [`Extracted::root`]; it all goes on drop.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Where the archive's members lie: `root()/manifest.json` is not written
    /// (it is parsed in memory), `root()/data/...` and `root()/<storage>/...` are.
    pub fn root(&self) -> PathBuf {
        self.dir.path().join(TREE)
    }

    /// Path of a member the manifest lists (`data/blog.json`, `media`).
    pub fn path_of(&self, member: &str) -> PathBuf {
        self.root().join(member)
    }

    /// Remove the temporary directory now, reporting a failure.
    pub fn close(self) -> io::Result<()> {
        self.dir.close()
    }
}

/// Extract `archive` into a new temporary directory created inside `parent`
/// (choose it on the destination's file system so the result can be renamed
/// into place). Refuses anything hostile or inconsistent; see the module docs.
pub fn extract(
    archive: &Path,
    parent: &Path,
    limits: &Limits,
    progress: &dyn Progress,
) -> Result<Extracted> {
    let file = open_gzip(archive)?;
    let dir = tempfile::Builder::new()
        .prefix(TEMP_PREFIX)
        .tempdir_in(parent)
        .ctx("create a temporary directory in", parent)?;
    let root = dir.path().join(TREE);
    fs::DirBuilder::new()
        .mode(DIR_MODE)
        .create(&root)
        .ctx("create directory", &root)?;

    // On error `dir` is dropped here, which removes everything written so far.
    let (manifest, entries, file_bytes) = Unpacker::new(root, *limits).run(file, progress)?;
    Ok(Extracted {
        dir,
        manifest,
        entries,
        file_bytes,
    })
}

/// Open `archive`, refusing it unless it starts with the gzip magic.
fn open_gzip(archive: &Path) -> Result<File> {
    let mut file = File::open(archive).ctx("open", archive)?;
    let mut magic = [0u8; 3];
    let mut got = 0;
    while got < magic.len() {
        match file.read(&mut magic[got..]).ctx("read", archive)? {
            0 => break,
            n => got += n,
        }
    }
    if got < magic.len() || magic != [0x1f, 0x8b, 0x08] {
        return Err(Error::Archive(format!(
            "{} is not a gzip archive",
            archive.display()
        )));
    }
    file.rewind().ctx("read", archive)?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::progress::Silent;
    use flate2::Compression;
    use flate2::write::GzEncoder;
    use std::io::Write;
    use tar::EntryType;

    const MANIFEST_JSON: &str = r#"{"version": "1", "creation": "2024-01-01T00:00:00", "datas": ["data/a.json"], "storages": ["media"]}"#;

    fn tar_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o600);
            h.set_entry_type(EntryType::Regular);
            h.set_path(name).unwrap();
            h.set_cksum();
            b.append(&h, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    fn gz(data: &[u8]) -> Vec<u8> {
        let mut e = GzEncoder::new(Vec::new(), Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn run(bytes: &[u8]) -> Result<(tempfile::TempDir, Extracted)> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.tar.gz");
        fs::write(&path, bytes).unwrap();
        let limits = Limits {
            max_unpacked_bytes: 1 << 20,
            max_entries: 100,
        };
        let r = extract(&path, dir.path(), &limits, &Silent);
        if r.is_err() {
            // Nothing but the archive is left behind.
            assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
        }
        r.map(|x| (dir, x))
    }

    fn valid() -> Vec<u8> {
        tar_of(&[
            ("./manifest.json", MANIFEST_JSON.as_bytes()),
            ("./data/a.json", b"[]"),
            ("media/x/y.txt", b"hello"),
        ])
    }

    #[test]
    fn extracts_a_valid_archive_with_dot_slash_names() {
        let (_dir, x) = run(&gz(&valid())).unwrap();
        assert_eq!(fs::read(x.path_of("media/x/y.txt")).unwrap(), b"hello");
        assert_eq!(
            x.manifest.storages.as_deref(),
            Some(&["media".to_string()][..])
        );
        let mode = fs::metadata(x.path_of("data/a.json"))
            .unwrap()
            .permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o600,
            0o600
        );
    }

    #[test]
    fn accepts_multi_member_gzip() {
        let tar = valid();
        let (a, b) = tar.split_at(1024);
        let mut bytes = gz(a);
        bytes.extend(gz(b));
        run(&bytes).unwrap();
    }

    #[test]
    fn refuses_trailing_garbage_and_second_archive() {
        let mut bytes = gz(&valid());
        bytes.extend(b"garbage after the member");
        let e = run(&bytes).unwrap_err().to_string();
        assert!(e.contains("corrupt"), "{e}");

        let mut two = valid();
        two.extend(valid());
        let e = run(&gz(&two)).unwrap_err().to_string();
        assert!(e.contains("data follows the end"), "{e}");
    }

    #[test]
    fn refuses_missing_end_marker() {
        let tar = valid();
        let e = run(&gz(&tar[..tar.len() - 1024])).unwrap_err().to_string();
        assert!(e.contains("no end-of-archive marker"), "{e}");
    }

    #[test]
    fn refuses_entries_outside_the_manifest() {
        let mut entries = vec![
            ("./manifest.json", MANIFEST_JSON.as_bytes()),
            ("data/a.json", b"[]"),
        ];
        entries.push(("media/ok", b"1"));
        entries.push(("elsewhere/x", b"1"));
        let e = run(&gz(&tar_of(&entries))).unwrap_err().to_string();
        assert!(e.contains("\"elsewhere") && e.contains("outside"), "{e}");
    }

    fn raw_entry(b: &mut tar::Builder<Vec<u8>>, kind: EntryType, name: &str, data: &[u8]) {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(kind);
        h.set_size(data.len() as u64);
        h.set_path(name).unwrap();
        h.set_cksum();
        b.append(&h, data).unwrap();
    }

    #[test]
    fn refuses_conflicts_limits_and_renaming_headers() {
        let head: &[(&str, &[u8])] = &[
            ("manifest.json", MANIFEST_JSON.as_bytes()),
            ("data/a.json", b"[]"),
        ];
        let conflict = [head, &[("media/a", b"1"), ("media/a/b", b"2")]].concat();
        let e = run(&gz(&tar_of(&conflict))).unwrap_err().to_string();
        assert!(e.contains("is a file in the archive"), "{e}");

        let many: Vec<(String, &[u8])> =
            (0..150).map(|i| (format!("media/{i}"), &b""[..])).collect();
        let mut entries = head.to_vec();
        entries.extend(many.iter().map(|(n, d)| (n.as_str(), *d)));
        let e = run(&gz(&tar_of(&entries))).unwrap_err().to_string();
        assert!(e.contains("max_entries"), "{e}");

        let big = vec![7u8; 600 * 1024];
        let e = run(&gz(&tar_of(
            &[head, &[("media/a", &big[..]), ("media/b", &big[..])]].concat(),
        )))
        .unwrap_err()
        .to_string();
        assert!(e.contains("max_unpacked_bytes"), "{e}");

        let mut b = tar::Builder::new(Vec::new());
        raw_entry(
            &mut b,
            EntryType::XGlobalHeader,
            "pax_global_header",
            b"16 path=foo/bar\n",
        );
        raw_entry(
            &mut b,
            EntryType::Regular,
            "manifest.json",
            MANIFEST_JSON.as_bytes(),
        );
        let e = run(&gz(&b.into_inner().unwrap())).unwrap_err().to_string();
        assert!(e.contains("PAX global header sets \"path\""), "{e}");

        // git archive's global header only carries a comment: harmless.
        let mut b = tar::Builder::new(Vec::new());
        raw_entry(
            &mut b,
            EntryType::XGlobalHeader,
            "pax_global_header",
            b"13 comment=x\n",
        );
        raw_entry(
            &mut b,
            EntryType::Regular,
            "manifest.json",
            MANIFEST_JSON.as_bytes(),
        );
        raw_entry(&mut b, EntryType::Regular, "data/a.json", b"[]");
        raw_entry(&mut b, EntryType::Directory, "media/", b"");
        run(&gz(&b.into_inner().unwrap())).unwrap();

        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(EntryType::GNUSparse);
        h.set_size(0);
        h.set_path("media/sparse").unwrap();
        // 1 GiB declared, nothing stored.
        let gnu = h.as_gnu_mut().unwrap();
        gnu.set_real_size(1 << 30);
        gnu.sparse[0].set_offset(1 << 30);
        gnu.sparse[0].set_length(0);
        h.set_cksum();
        b.append(&h, &b""[..]).unwrap();
        let e = run(&gz(&b.into_inner().unwrap())).unwrap_err().to_string();
        assert!(e.contains("a sparse file is not allowed"), "{e}");
    }
}

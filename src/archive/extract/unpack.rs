//! One pass over the archive: each entry checked and unpacked as it streams
//! by, then the end of the stream and the whole tree checked.

use std::fs::File;
use std::io::{self, Read};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tar::EntryType;

use super::Limits;
use super::headers::{check_global_header, check_pax, refused_kind};
use super::names::{link_target, normalize, show, truncated_entry};
use super::stream::{Bounded, Inflater, Meter};
use super::tree::Tree;
use super::writers::Writers;
use crate::archive::MANIFEST;
use crate::archive::manifest::{MAX_MANIFEST_BYTES, Manifest};
use crate::error::{Error, Result};
use crate::progress::Progress;

const BLOCK: u64 = 512;

pub(super) struct Unpacker {
    limits: Limits,
    tree: Tree,
    manifest: Option<Vec<u8>>,
    entries: u64,
    file_bytes: u64,
    writers: Writers,
}

/// Progress in compressed bytes read, reported as they grow.
struct Reporter<'a> {
    progress: &'a dyn Progress,
    compressed: Arc<AtomicU64>,
    reported: u64,
}

impl Reporter<'_> {
    fn advance(&mut self, entries: u64) {
        let done = self.compressed.load(Ordering::Relaxed);
        self.progress
            .advance(done.saturating_sub(self.reported), entries);
        self.reported = done;
    }
}

impl Unpacker {
    /// An unpacker into the existing, empty directory `root`.
    pub(super) fn new(root: PathBuf, limits: Limits) -> Self {
        Unpacker {
            limits,
            tree: Tree::new(root),
            manifest: None,
            entries: 0,
            file_bytes: 0,
            writers: Writers::new(),
        }
    }

    /// Unpack the gzip-compressed tar `file`; returns its manifest, the
    /// entries read and the bytes of file content written.
    pub(super) fn run(
        mut self,
        file: File,
        progress: &dyn Progress,
    ) -> Result<(Manifest, u64, u64)> {
        let total = file.metadata().map(|m| m.len()).unwrap_or(0);
        progress.begin(total, 0);
        let compressed = Arc::new(AtomicU64::new(0));
        let (stream, meter) = Bounded::new(
            Inflater::spawn(file, Arc::clone(&compressed)),
            self.limits.max_unpacked_bytes,
        );
        let mut report = Reporter {
            progress,
            compressed,
            reported: 0,
        };
        let mut archive = tar::Archive::new(stream);
        let next_header = self.read_entries(&mut archive, &meter, &mut report)?;
        check_end(archive.into_inner(), &meter, next_header)?;
        report.advance(0);
        self.finish()
    }

    /// Unpack every entry up to the tar end marker. Returns where the header
    /// after the last entry starts: tells "end marker read" apart from
    /// "stream ended on an entry boundary".
    fn read_entries<R: Read>(
        &mut self,
        archive: &mut tar::Archive<R>,
        meter: &Meter,
        report: &mut Reporter<'_>,
    ) -> Result<u64> {
        let fail = |e: io::Error| meter.fail(e);
        let mut next_header = 0u64;
        for entry in archive.entries().map_err(fail)? {
            let mut entry = entry.map_err(fail)?;
            if report.progress.is_cancelled() {
                return Err(Error::Cancelled);
            }
            self.entries += 1;
            if self.entries > self.limits.max_entries {
                return Err(Error::Archive(format!(
                    "the archive has more than {} entries (limit set by [load] max_entries)",
                    self.limits.max_entries
                )));
            }
            next_header = entry
                .raw_file_position()
                .checked_add(entry.size().div_ceil(BLOCK) * BLOCK)
                .ok_or_else(|| Error::Archive("corrupt: entry size overflow".into()))?;
            self.entry(&mut entry, meter, &fail)?;
            report.advance(1);
        }
        Ok(next_header)
    }

    /// Check and unpack one entry.
    fn entry<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        meter: &Meter,
        fail: &dyn Fn(io::Error) -> Error,
    ) -> Result<()> {
        let room = meter.room();
        let raw = entry.path_bytes().into_owned();
        let kind = entry.header().entry_type();
        match kind {
            EntryType::Regular | EntryType::Directory => {}
            EntryType::XGlobalHeader => return check_global_header(entry, fail),
            EntryType::Symlink => return self.add_link(entry, &raw),
            other => return Err(refused_kind(other, &raw)),
        }
        check_pax(entry, &raw, fail)?;

        let Some((name, trailing_slash)) = normalize(&raw)? else {
            // `./`: the archive root itself.
            return if kind == EntryType::Directory {
                Ok(())
            } else {
                Err(Error::Archive(
                    "entry \"./\": a file cannot be the archive root".into(),
                ))
            };
        };
        // Refused before a byte of it is written (a bomb declares its size).
        if entry.size() > room {
            return Err(meter.limit_error());
        }
        let is_dir = kind == EntryType::Directory || (trailing_slash && entry.size() == 0);
        if is_dir {
            return self.tree.add_dir(&name, true);
        }
        if trailing_slash {
            return Err(Error::Archive(format!(
                "entry {}: a file name ends with '/'",
                show(&name)
            )));
        }
        if name == MANIFEST {
            return self.read_manifest(entry, &name, fail);
        }
        self.tree.claim_file(&name)?;
        self.write_file(entry, &name, fail)
    }

    /// Keep `manifest.json` in memory, to be parsed once the archive is read.
    fn read_manifest<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        name: &str,
        fail: &dyn Fn(io::Error) -> Error,
    ) -> Result<()> {
        if entry.size() > MAX_MANIFEST_BYTES {
            return Err(Error::Archive(format!(
                "{MANIFEST} is {} bytes, more than the {MAX_MANIFEST_BYTES} a manifest may have",
                entry.size()
            )));
        }
        self.tree.claim_file(name)?;
        let mut bytes = Vec::with_capacity(entry.size() as usize);
        entry.read_to_end(&mut bytes).map_err(fail)?;
        if bytes.len() as u64 != entry.size() {
            return Err(truncated_entry(name, entry.size(), bytes.len() as u64));
        }
        self.manifest = Some(bytes);
        Ok(())
    }

    /// Write a regular file, claimed in the tree, with its mode and mtime.
    fn write_file<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        name: &str,
        fail: &dyn Fn(io::Error) -> Error,
    ) -> Result<()> {
        let path = self.tree.root().join(name);
        let mode = entry.header().mode().ok();
        let mtime = entry
            .header()
            .mtime()
            .ok()
            .map(|secs| std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs));
        let size = entry.size();
        let written = self.writers.write_file(entry, path, mode, mtime, fail)?;
        if written != size {
            return Err(truncated_entry(name, size, written));
        }
        self.file_bytes += written;
        Ok(())
    }

    /// A symbolic link is accepted only as our dumps write them: inside a
    /// storage, with a relative target that never climbs out of it. It is
    /// recorded now and created after every other entry, so nothing in the
    /// archive can be written through it.
    fn add_link<R: Read>(&mut self, entry: &tar::Entry<'_, R>, raw: &[u8]) -> Result<()> {
        let shown = show(&String::from_utf8_lossy(raw));
        let Some((name, false)) = normalize(raw)? else {
            return Err(Error::Archive(format!(
                "entry {shown}: a symbolic link cannot be a directory"
            )));
        };
        let target = link_target(&shown, entry.link_name_bytes().as_deref())?;
        self.tree.add_link(&shown, name, target)
    }

    /// With the whole archive read: every file written, the manifest parsed,
    /// the tree checked against it, and the links made.
    fn finish(mut self) -> Result<(Manifest, u64, u64)> {
        self.writers.finish()?;
        let bytes = self.manifest.take().ok_or_else(|| {
            Error::Archive(format!(
                "no {MANIFEST} at the archive root (is it a Diskette archive?)"
            ))
        })?;
        let manifest = Manifest::parse(&bytes)?;
        self.tree.check_layout(&manifest)?;
        self.tree.check_links(&manifest)?;
        self.tree.make_links()?;
        Ok((manifest, self.entries, self.file_bytes))
    }
}

/// The tar reader stops at the first zero block, before the gzip trailer:
/// read `rest` on to the end so every CRC32/ISIZE is checked, and refuse
/// anything but zero padding there.
fn check_end(mut rest: impl Read, meter: &Meter, next_header: u64) -> Result<()> {
    if meter.used() == next_header {
        return Err(Error::Archive(
            "truncated: the tar stream has no end-of-archive marker".into(),
        ));
    }
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = rest.read(&mut buf).map_err(|e| meter.fail(e))?;
        if n == 0 {
            return Ok(());
        }
        if buf[..n].iter().any(|b| *b != 0) {
            return Err(Error::Archive(
                "data follows the end of the tar archive (a second archive or garbage)".into(),
            ));
        }
    }
}

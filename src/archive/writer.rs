//! Writing the archive: tar entries into one gzip stream, hashed as it is written.
//!
//! The deflate level can change between entries (already-compressed media gain
//! nothing from deflate, so they are stored) while the output stays one
//! standard gzip member that `gzip -t`, GNU tar and Python's `tarfile` read.

use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::Path;

use super::gzip::GzipWriter;
use crate::checksum::HashingWriter;
use crate::error::{Error, IoContext, Result};
use crate::progress::Progress;

const OUT_CHUNK: usize = 256 * 1024;

/// Extensions of formats that are already compressed: deflating them again
/// costs time and gains nothing.
const COMPRESSED_EXTENSIONS: &[&str] = &[
    "jpg", "jpeg", "png", "gif", "webp", "avif", "heic", "mp4", "m4v", "mov", "mkv", "webm", "avi",
    "mp3", "m4a", "aac", "ogg", "oga", "opus", "flac", "zip", "gz", "tgz", "bz2", "xz", "zst",
    "7z", "rar", "docx", "xlsx", "pptx", "odt", "ods", "epub", "woff", "woff2",
];

pub fn is_compressed_media(name: &str) -> bool {
    name.rsplit_once('.').is_some_and(|(_, ext)| {
        COMPRESSED_EXTENSIONS
            .iter()
            .any(|c| c.eq_ignore_ascii_case(ext))
    })
}

type Sink<W> = HashingWriter<BufWriter<W>>;

/// The tar builder over gzip over the hashing writer over the output (a
/// file, or an upload to an object store).
pub struct ArchiveWriter<W: Write = File> {
    builder: tar::Builder<GzipWriter<Sink<W>>>,
    level: u32,
    media_level: u32,
}

/// What `ArchiveWriter::finish` hands back.
pub struct Finished<W = File> {
    /// The output, flushed.
    pub file: W,
    pub checksum: String,
    pub size: u64,
}

impl<W: Write> ArchiveWriter<W> {
    /// `level` for compressible content, `media_level` for already-compressed files.
    /// `threads` compress in parallel (1: on the calling thread).
    pub fn new(file: W, level: u32, media_level: u32, threads: usize) -> Self {
        let sink = HashingWriter::new(BufWriter::with_capacity(OUT_CHUNK, file));
        let mut builder = tar::Builder::new(GzipWriter::with_threads(sink, level, threads));
        builder.mode(tar::HeaderMode::Complete);
        builder.follow_symlinks(false);
        ArchiveWriter {
            builder,
            level,
            media_level,
        }
    }

    fn set_level_for(&mut self, name: &str) -> io::Result<()> {
        let level = if is_compressed_media(name) {
            self.media_level
        } else {
            self.level
        };
        self.builder.get_mut().set_level(level)
    }

    fn header(kind: tar::EntryType, meta: &std::fs::Metadata) -> tar::Header {
        use std::os::unix::fs::MetadataExt;
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(meta.mode() & 0o7777);
        h.set_uid(meta.uid() as u64);
        h.set_gid(meta.gid() as u64);
        h.set_mtime(meta.mtime().max(0) as u64);
        h.set_size(0);
        h
    }

    /// A directory entry (`name/`).
    pub fn append_dir(&mut self, arcname: &str, meta: &std::fs::Metadata) -> Result<()> {
        let mut h = Self::header(tar::EntryType::Directory, meta);
        let name = format!("{}/", arcname.trim_end_matches('/'));
        self.builder
            .append_data(&mut h, &name, io::empty())
            .map_err(|e| write_err(&name, e))
    }

    /// A directory entry with default metadata (the `data/` directory).
    pub fn append_plain_dir(&mut self, arcname: &str, mtime: u64) -> Result<()> {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(0o755);
        h.set_mtime(mtime);
        h.set_size(0);
        let name = format!("{}/", arcname.trim_end_matches('/'));
        self.builder
            .append_data(&mut h, &name, io::empty())
            .map_err(|e| write_err(&name, e))
    }

    pub fn append_symlink(
        &mut self,
        arcname: &str,
        target: &Path,
        meta: &std::fs::Metadata,
    ) -> Result<()> {
        let mut h = Self::header(tar::EntryType::Symlink, meta);
        self.builder
            .append_link(&mut h, arcname, target)
            .map_err(|e| write_err(arcname, e))
    }

    /// In-memory content (the manifest).
    pub fn append_bytes(&mut self, arcname: &str, bytes: &[u8], mtime: u64) -> Result<()> {
        self.set_level_for(arcname)
            .map_err(|e| write_err(arcname, e))?;
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(0o644);
        h.set_mtime(mtime);
        h.set_size(bytes.len() as u64);
        self.builder
            .append_data(&mut h, arcname, bytes)
            .map_err(|e| write_err(arcname, e))
    }

    /// A regular file, read from an already opened handle so that its size and
    /// content come from the same file. Returns the bytes archived, or None when
    /// the file vanished before it could be opened.
    pub fn append_file(
        &mut self,
        arcname: &str,
        path: &Path,
        progress: &dyn Progress,
    ) -> Result<Option<u64>> {
        let file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                progress.warn(&format!(
                    "{arcname} vanished before it was archived, skipped"
                ));
                return Ok(None);
            }
            Err(e) => return Err(Error::io("open", path, e)),
        };
        let meta = file.metadata().ctx("read metadata of", path)?;
        let size = meta.len();
        let mut h = Self::header(tar::EntryType::Regular, &meta);
        h.set_size(size);
        self.set_level_for(arcname)
            .map_err(|e| write_err(arcname, e))?;
        let mut reader = Counted {
            inner: file.take(size),
            progress,
            count: 0,
        };
        self.builder
            .append_data(&mut h, arcname, &mut reader)
            .map_err(|e| write_err(arcname, e))?;
        // tar pads a short entry silently: a file that shrank makes the archive wrong.
        if reader.count < size {
            return Err(Error::Archive(format!(
                "{arcname} shrank while it was archived ({} of {size} bytes read); dump again",
                reader.count
            )));
        }
        // More bytes than declared: the file grew; the archive holds its first `size` bytes.
        let mut probe = [0u8; 1];
        if reader.inner.into_inner().read(&mut probe).unwrap_or(0) > 0 {
            progress.warn(&format!(
                "{arcname} grew while it was archived; its first {size} bytes were kept"
            ));
        }
        Ok(Some(size))
    }

    /// Append another archive's worth of data from a file on disk under a name
    /// (the data fixtures written beforehand), reporting progress.
    pub fn append_path_as(
        &mut self,
        arcname: &str,
        path: &Path,
        progress: &dyn Progress,
    ) -> Result<u64> {
        self.append_file(arcname, path, progress)?.ok_or_else(|| {
            Error::Data(format!(
                "{} disappeared before it was archived",
                path.display()
            ))
        })
    }

    /// End the tar and the gzip stream and flush the output (a file is not
    /// fsynced here: its owner does it).
    pub fn finish(self) -> Result<Finished<W>> {
        let gz = self
            .builder
            .into_inner()
            .map_err(|e| write_err("end of archive", e))?;
        let hashing = gz.finish().map_err(|e| write_err("end of archive", e))?;
        let (buf, checksum, size) = hashing.finish();
        let file = buf
            .into_inner()
            .map_err(|e| write_err("end of archive", e.into_error()))?;
        Ok(Finished {
            file,
            checksum,
            size,
        })
    }
}

fn write_err(what: &str, e: io::Error) -> Error {
    Error::io("write archive at", what, e)
}

/// Counts bytes read and reports them to the progress.
struct Counted<'a, R> {
    inner: R,
    progress: &'a dyn Progress,
    count: u64,
}

impl<R: Read> Read for Counted<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count += n as u64;
        self.progress.advance(n as u64, 0);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_by_extension() {
        assert!(is_compressed_media("uploads/2024/photo.JPG"));
        assert!(is_compressed_media("a/b.tar.gz"));
        assert!(!is_compressed_media("notes.txt"));
        assert!(!is_compressed_media("Makefile"));
    }
}

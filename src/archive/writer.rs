//! Writing the archive: tar entries into one gzip stream, hashed as it is written.
//!
//! The deflate level can change between entries (already-compressed media gain
//! nothing from deflate, so they are stored) while the output stays one
//! standard gzip member that `gzip -t`, GNU tar and Python's `tarfile` read.

use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::Path;

use flate2::{Compress, Compression, FlushCompress, Status};

use crate::checksum::HashingWriter;
use crate::error::{Error, IoContext, Result};
use crate::progress::Progress;

const OUT_CHUNK: usize = 256 * 1024;

/// A gzip encoder whose level can change between writes.
///
/// One gzip member holding one raw deflate stream. Changing the level ends
/// the current run of blocks with a sync flush (byte aligned, not final) and
/// goes on with a fresh compressor for the new level: a deflate stream may
/// mix blocks from any compressor, as pigz does for its chunks.
pub struct GzipWriter<W: Write> {
    inner: W,
    compress: Compress,
    /// Reset compressors kept for reuse, by level.
    idle: Vec<(u32, Compress)>,
    out: Vec<u8>,
    level: u32,
    crc: flate2::Crc,
    header_written: bool,
    mtime: u32,
}

impl<W: Write> GzipWriter<W> {
    pub fn new(inner: W, level: u32) -> Self {
        Self::with_mtime(inner, level, 0)
    }

    pub fn with_mtime(inner: W, level: u32, mtime: u32) -> Self {
        GzipWriter {
            inner,
            compress: Compress::new(Compression::new(level), false),
            idle: Vec::new(),
            out: Vec::with_capacity(OUT_CHUNK),
            level,
            crc: flate2::Crc::new(),
            header_written: false,
            mtime,
        }
    }

    fn write_header(&mut self) -> io::Result<()> {
        if !self.header_written {
            let m = self.mtime.to_le_bytes();
            // ID1 ID2 CM=deflate FLG=0 MTIME XFL=0 OS=3 (Unix)
            self.inner
                .write_all(&[0x1f, 0x8b, 8, 0, m[0], m[1], m[2], m[3], 0, 3])?;
            self.header_written = true;
        }
        Ok(())
    }

    fn drain_out(&mut self) -> io::Result<()> {
        self.write_header()?;
        if !self.out.is_empty() {
            self.inner.write_all(&self.out)?;
            self.out.clear();
        }
        Ok(())
    }

    /// Switch the deflate level for what is written next.
    pub fn set_level(&mut self, level: u32) -> io::Result<()> {
        if level == self.level {
            return Ok(());
        }
        self.run(&[], FlushCompress::Sync)?;
        let next = match self.idle.iter().position(|(l, _)| *l == level) {
            Some(i) => self.idle.swap_remove(i).1,
            None => Compress::new(Compression::new(level), false),
        };
        let mut previous = std::mem::replace(&mut self.compress, next);
        // Its history must not leak into blocks that follow other data.
        previous.reset();
        self.idle.push((self.level, previous));
        self.level = level;
        Ok(())
    }

    fn run(&mut self, mut input: &[u8], flush: FlushCompress) -> io::Result<()> {
        loop {
            if self.out.capacity() - self.out.len() < 1024 {
                self.drain_out()?;
            }
            let before_in = self.compress.total_in();
            let status = self
                .compress
                .compress_vec(input, &mut self.out, flush)
                .map_err(io::Error::other)?;
            let consumed = (self.compress.total_in() - before_in) as usize;
            input = &input[consumed..];
            match status {
                Status::StreamEnd => return Ok(()),
                _ if input.is_empty() && flush == FlushCompress::None => return Ok(()),
                // Output space left after a flush means the flush is complete.
                _ if input.is_empty() && self.out.len() < self.out.capacity() => return Ok(()),
                _ => {}
            }
        }
    }

    /// Write the last block and the gzip trailer; return the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        loop {
            self.drain_out()?;
            let status = self
                .compress
                .compress_vec(&[], &mut self.out, FlushCompress::Finish)
                .map_err(io::Error::other)?;
            if status == Status::StreamEnd {
                break;
            }
        }
        self.drain_out()?;
        let crc = self.crc.sum().to_le_bytes();
        let size = self.crc.amount().to_le_bytes();
        self.inner.write_all(&crc)?;
        self.inner.write_all(&size)?;
        self.inner.flush()?;
        Ok(self.inner)
    }
}

impl<W: Write> Write for GzipWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.crc.update(buf);
        self.run(buf, FlushCompress::None)?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        self.run(&[], FlushCompress::Sync)?;
        self.drain_out()?;
        self.inner.flush()
    }
}

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

type Sink = HashingWriter<BufWriter<File>>;

/// The tar builder over gzip over the hashing writer over the file.
pub struct ArchiveWriter {
    builder: tar::Builder<GzipWriter<Sink>>,
    level: u32,
    media_level: u32,
}

/// What `ArchiveWriter::finish` hands back.
pub struct Finished {
    pub file: File,
    pub checksum: String,
    pub size: u64,
}

impl ArchiveWriter {
    /// `level` for compressible content, `media_level` for already-compressed files.
    pub fn new(file: File, level: u32, media_level: u32) -> Self {
        let sink = HashingWriter::new(BufWriter::with_capacity(OUT_CHUNK, file));
        let mut builder = tar::Builder::new(GzipWriter::new(sink, level));
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

    /// End the tar and the gzip stream, flush and fsync the file.
    pub fn finish(self) -> Result<Finished> {
        let gz = self
            .builder
            .into_inner()
            .map_err(|e| write_err("end of archive", e))?;
        let hashing = gz.finish().map_err(|e| write_err("end of archive", e))?;
        let (buf, checksum, size) = hashing.finish();
        let file = buf
            .into_inner()
            .map_err(|e| write_err("end of archive", e.into_error()))?;
        file.sync_all()
            .map_err(|e| write_err("end of archive", e))?;
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
    fn level_switches_keep_one_valid_gzip_stream() {
        let mut gz = GzipWriter::new(Vec::new(), 6);
        let text = b"the quick brown fox jumps over the lazy dog ".repeat(5000);
        let noise: Vec<u8> = (0..300_000u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        gz.write_all(&text).unwrap();
        gz.set_level(0).unwrap();
        gz.write_all(&noise).unwrap();
        gz.set_level(9).unwrap();
        gz.write_all(&text).unwrap();
        let out = gz.finish().unwrap();
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(&out[..])
            .read_to_end(&mut back)
            .unwrap();
        let expected = [&text[..], &noise[..], &text[..]].concat();
        assert_eq!(back, expected);
        // The text parts compress; the noise is stored, not expanded much.
        assert!(
            out.len() < noise.len() + noise.len() / 100 + 10_000,
            "{}",
            out.len()
        );
    }

    #[test]
    fn media_by_extension() {
        assert!(is_compressed_media("uploads/2024/photo.JPG"));
        assert!(is_compressed_media("a/b.tar.gz"));
        assert!(!is_compressed_media("notes.txt"));
        assert!(!is_compressed_media("Makefile"));
    }
}

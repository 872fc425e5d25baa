//! Re-reading a stored archive in one streaming pass: its BLAKE2b checksum
//! against the recorded one, the gzip stream to its last trailer (every
//! CRC32/ISIZE), the tar stream to its end marker, and the manifest against
//! the members. Memory stays flat: file contents are read through, never
//! kept; only the names of directories and data files are remembered.

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::Path;

use flate2::bufread::MultiGzDecoder;

use crate::archive::manifest::{MAX_MANIFEST_BYTES, Manifest};
use crate::archive::{DATA_DIR, MANIFEST};

const BLOCK: u64 = 512;
const READ_SIZE: usize = 256 * 1024;

/// What a re-read found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// Each problem found, in the order found; empty when the archive is good.
    pub problems: Vec<String>,
    /// Tar entries read.
    pub entries: u64,
}

impl Verdict {
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }

    /// One line for the record, the CLI and the webhook.
    pub fn message(&self) -> Option<String> {
        (!self.problems.is_empty()).then(|| self.problems.join("; "))
    }
}

/// The archive, hashed as it is read.
struct Hashing {
    inner: Box<dyn Read + Send>,
    state: blake2b_simd::State,
    read: u64,
}

impl Read for Hashing {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.state.update(&buf[..n]);
        self.read += n as u64;
        Ok(n)
    }
}

/// Re-read `path` and compare it with what its record says: `checksum` (128
/// hex digits) and `size` in bytes.
pub fn verify(path: &Path, checksum: &str, size: Option<u64>) -> Verdict {
    let file = File::open(path).map(|f| Box::new(f) as Box<dyn Read + Send>);
    verify_reader(file, &path.display().to_string(), checksum, size)
}

/// `verify` of an archive opened by its store (`what` names it).
pub fn verify_reader(
    opened: io::Result<Box<dyn Read + Send>>,
    what: &str,
    checksum: &str,
    size: Option<u64>,
) -> Verdict {
    let reader = match opened {
        Ok(r) => r,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return failed(format!("the archive file {what} is missing"));
        }
        Err(e) => return failed(format!("cannot open {what}: {e}")),
    };
    let hashing = Hashing {
        inner: reader,
        state: crate::checksum::new_state(),
        read: 0,
    };
    let mut problems = Vec::new();
    let mut magic_ok = true;
    let mut reader = BufReader::with_capacity(READ_SIZE, hashing);
    // `fill_buf` does not consume: the decoder still sees the magic bytes.
    if let Ok(head) = io::BufRead::fill_buf(&mut reader)
        && !head.starts_with(&[0x1f, 0x8b])
    {
        problems.push("not a gzip stream (bad magic bytes)".to_string());
        magic_ok = false;
    }
    let mut structure = Structure::default();
    let reader = if magic_ok {
        let decoder = MultiGzDecoder::new(reader);
        let (decoder, problem) = structure.read(decoder);
        problems.extend(problem);
        decoder.into_inner()
    } else {
        reader
    };
    // Whatever the structure check stopped at, the whole file is hashed.
    let mut hashing = reader.into_inner();
    if let Err(e) = io::copy(&mut hashing, &mut io::sink()) {
        problems.push(format!("cannot read {what}: {e}"));
    }
    let actual = crate::checksum::hex(&hashing.state);
    if !actual.eq_ignore_ascii_case(checksum) {
        problems.insert(
            0,
            format!(
                "checksum mismatch: recorded {}…, the file now hashes to {}…",
                &checksum[..checksum.len().min(16)],
                &actual[..16]
            ),
        );
    }
    if let Some(size) = size
        && size != hashing.read
    {
        problems.push(format!(
            "size mismatch: recorded {size} bytes, the file has {}",
            hashing.read
        ));
    }
    Verdict {
        problems,
        entries: structure.entries,
    }
}

fn failed(problem: String) -> Verdict {
    Verdict {
        problems: vec![problem],
        entries: 0,
    }
}

/// What the tar stream held, for the manifest check.
#[derive(Default)]
struct Structure {
    entries: u64,
    manifest: Option<Vec<u8>>,
    data_files: HashSet<String>,
    dirs: HashSet<String>,
}

impl Structure {
    /// Read the decompressed stream to its end; returns the decoder (for the
    /// hash to go on) and the first problem found, if any.
    fn read<R: Read>(&mut self, decoder: R) -> (R, Option<String>) {
        let mut archive = tar::Archive::new(Counter {
            inner: decoder,
            count: 0,
        });
        let walked = self.walk(&mut archive);
        let mut rest = archive.into_inner();
        let problem = match walked {
            Err(problem) => Some(problem),
            // The tar reader stops on a zero block or at the end of the
            // stream: stopping exactly where the next header would start
            // means the end marker is missing.
            Ok(next_header) => {
                let end_marker = rest.count != next_header;
                self.finish(&mut rest, end_marker).err()
            }
        };
        (rest.inner, problem)
    }

    /// Every entry; returns where the header after the last one starts.
    fn walk<R: Read>(&mut self, archive: &mut tar::Archive<R>) -> Result<u64, String> {
        let mut next_header = 0u64;
        let mut entries = archive.entries().map_err(|e| stream_error(&e))?;
        for entry in entries.by_ref() {
            let mut entry = entry.map_err(|e| stream_error(&e))?;
            self.entries += 1;
            next_header = entry
                .raw_file_position()
                .checked_add(entry.size().div_ceil(BLOCK) * BLOCK)
                .ok_or_else(|| "corrupt tar stream: entry size overflow".to_string())?;
            let name = entry
                .path()
                .map_err(|e| format!("corrupt tar stream: {e}"))?
                .to_string_lossy()
                .trim_start_matches("./")
                .trim_end_matches('/')
                .to_string();
            let kind = entry.header().entry_type();
            if kind.is_dir() {
                self.add_dirs(&name);
            } else {
                if let Some((parent, _)) = name.rsplit_once('/') {
                    self.add_dirs(parent);
                }
                if name == MANIFEST {
                    let mut bytes = Vec::new();
                    (&mut entry)
                        .take(MAX_MANIFEST_BYTES + 1)
                        .read_to_end(&mut bytes)
                        .map_err(|e| stream_error(&e))?;
                    if bytes.len() as u64 > MAX_MANIFEST_BYTES {
                        return Err(format!(
                            "{MANIFEST} is larger than {MAX_MANIFEST_BYTES} bytes"
                        ));
                    }
                    self.manifest = Some(bytes);
                } else if kind.is_file() && name.starts_with(&format!("{DATA_DIR}/")) {
                    self.data_files.insert(name);
                }
            }
            // Read the content through: a corrupt deflate block or a short
            // entry shows here.
            io::copy(&mut entry, &mut io::sink()).map_err(|e| stream_error(&e))?;
        }
        Ok(next_header)
    }

    fn add_dirs(&mut self, dir: &str) {
        let mut dir = dir;
        while !dir.is_empty() && self.dirs.insert(dir.to_string()) {
            dir = dir.rsplit_once('/').map_or("", |(p, _)| p);
        }
    }

    /// After the tar end: only zero padding, then every gzip trailer; then the
    /// manifest and what it lists.
    fn finish<R: Read>(&mut self, rest: &mut R, end_marker: bool) -> Result<(), String> {
        if !end_marker {
            return Err("truncated: the tar stream has no end-of-archive marker".into());
        }
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = rest.read(&mut buf).map_err(|e| stream_error(&e))?;
            if n == 0 {
                break;
            }
            if buf[..n].iter().any(|b| *b != 0) {
                return Err("data follows the end of the tar archive".into());
            }
        }
        let bytes = self
            .manifest
            .take()
            .ok_or_else(|| format!("no {MANIFEST} in the archive"))?;
        let manifest = Manifest::parse(&bytes).map_err(|e| e.to_string())?;
        for data in manifest.datas.iter().flatten() {
            if !self.data_files.contains(data) {
                return Err(format!("{MANIFEST} lists {data}, which the archive lacks"));
            }
        }
        for storage in manifest.storages.iter().flatten() {
            if !self.dirs.contains(storage.trim_end_matches('/')) {
                return Err(format!(
                    "{MANIFEST} lists the storage {storage}, which the archive lacks"
                ));
            }
        }
        Ok(())
    }
}

/// Counts the decompressed bytes the tar reader consumes.
struct Counter<R> {
    inner: R,
    count: u64,
}

impl<R: Read> Read for Counter<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count += n as u64;
        Ok(n)
    }
}

fn stream_error(e: &io::Error) -> String {
    if e.kind() == io::ErrorKind::UnexpectedEof {
        "truncated: the compressed stream ends early".into()
    } else {
        format!("corrupt stream: {e}")
    }
}

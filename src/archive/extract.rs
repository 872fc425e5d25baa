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

use std::cell::Cell;
use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, BufReader, Read, Seek, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};

use flate2::bufread::MultiGzDecoder;
use tar::EntryType;
use tempfile::TempDir;

use super::manifest::{MAX_MANIFEST_BYTES, Manifest, check_relative};
use super::{DATA_DIR, MANIFEST};
use crate::config::LoadConfig;
use crate::error::{Error, IoContext, Result};
use crate::progress::Progress;

/// Prefix of the temporary directories an extraction creates.
pub const TEMP_PREFIX: &str = ".diskette-load-";
const TREE: &str = "tree";
const BLOCK: u64 = 512;
const FILE_MODE: u32 = 0o644;

/// The permission bits a restored file gets from the archive's.
fn file_mode(archived: u32) -> u32 {
    (archived & 0o755) | 0o600
}
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Node {
    File,
    /// A symbolic link, created only once the whole archive is validated.
    Link,
    /// `explicit`: the archive has an entry for it (not only for its children).
    Dir {
        explicit: bool,
    },
}

struct Unpacker {
    root: PathBuf,
    limits: Limits,
    nodes: BTreeMap<String, Node>,
    manifest: Option<Vec<u8>>,
    entries: u64,
    file_bytes: u64,
    /// (name, target) of the symbolic links, made last.
    links: Vec<(String, String)>,
    writers: Writers,
}

/// Inflates on a second thread, so that decompression overlaps the file
/// writes of the caller. It reads ahead a bounded amount; when the reader is
/// dropped early, the thread stops at its next hand-over.
struct Inflater {
    rx: Receiver<io::Result<Vec<u8>>>,
    buf: Vec<u8>,
    pos: usize,
    done: bool,
}

const INFLATE_BLOCK: usize = 256 * 1024;

impl Inflater {
    fn spawn(file: File, compressed: Arc<AtomicU64>) -> Inflater {
        let (tx, rx) = mpsc::sync_channel::<io::Result<Vec<u8>>>(8);
        std::thread::spawn(move || {
            let source = CountedFile {
                inner: file,
                count: compressed,
            };
            let mut dec = MultiGzDecoder::new(BufReader::with_capacity(INFLATE_BLOCK, source));
            loop {
                let mut block = vec![0u8; INFLATE_BLOCK];
                let mut filled = 0;
                let result = loop {
                    match dec.read(&mut block[filled..]) {
                        Ok(0) => break Ok(()),
                        Ok(n) => {
                            filled += n;
                            if filled == block.len() {
                                break Ok(());
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => break Err(e),
                    }
                };
                block.truncate(filled);
                let end = filled == 0;
                if filled > 0 && tx.send(Ok(block)).is_err() {
                    return;
                }
                if let Err(e) = result {
                    let _ = tx.send(Err(e));
                    return;
                }
                if end {
                    let _ = tx.send(Ok(Vec::new()));
                    return;
                }
            }
        });
        Inflater {
            rx,
            buf: Vec::new(),
            pos: 0,
            done: false,
        }
    }
}

impl Read for Inflater {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.buf.len() {
            if self.done {
                return Ok(0);
            }
            match self.rx.recv() {
                Ok(Ok(block)) if block.is_empty() => self.done = true,
                Ok(Ok(block)) => {
                    self.buf = block;
                    self.pos = 0;
                }
                Ok(Err(e)) => return Err(e),
                Err(_) => return Err(io::Error::other("the decompression thread stopped")),
            }
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

const WRITE_CHUNK: usize = 256 * 1024;

/// Threads that write file contents, each file wholly by one of them (in
/// order, so no two threads contend for one file): the kernel's share of an
/// extraction, page cache copies and block allocation, runs on every core.
struct Writers {
    jobs: Vec<mpsc::SyncSender<WriteJob>>,
    threads: Vec<std::thread::JoinHandle<()>>,
    error: Arc<Mutex<Option<Error>>>,
    files: usize,
}

/// A chunk of a file, or (`Chunk::Done`) the end of the file and its mtime.
enum Chunk {
    Data(Vec<u8>),
    Done(Option<std::time::SystemTime>),
}

type WriteJob = (Arc<(File, PathBuf)>, Chunk);

impl Writers {
    fn new() -> Writers {
        let n = std::thread::available_parallelism().map_or(1, |n| n.get());
        let error = Arc::new(Mutex::new(None));
        let mut jobs = Vec::new();
        let mut threads = Vec::new();
        for _ in 0..n {
            let (tx, rx) = mpsc::sync_channel::<WriteJob>(8);
            let error = Arc::clone(&error);
            threads.push(std::thread::spawn(move || {
                while let Ok((file, chunk)) = rx.recv() {
                    let result = match chunk {
                        Chunk::Data(data) => (&file.0).write_all(&data),
                        // After the last write, which would change it again.
                        Chunk::Done(Some(mtime)) => file.0.set_modified(mtime),
                        Chunk::Done(None) => Ok(()),
                    };
                    if let Err(e) = result {
                        if let Ok(mut slot) = error.lock() {
                            slot.get_or_insert(Error::io("write", &file.1, e));
                        }
                        return;
                    }
                }
            }));
            jobs.push(tx);
        }
        Writers {
            jobs,
            threads,
            error,
            files: 0,
        }
    }

    fn check(&self) -> Result<()> {
        match self.error.lock().ok().and_then(|mut e| e.take()) {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// The writer the next file goes to.
    fn next_file(&mut self) -> usize {
        self.files += 1;
        self.files % self.jobs.len().max(1)
    }

    fn write(&self, worker: usize, file: Arc<(File, PathBuf)>, chunk: Chunk) -> Result<()> {
        self.check()?;
        match self.jobs.get(worker).map(|tx| tx.send((file, chunk))) {
            Some(Ok(())) => Ok(()),
            // A writer stopped on an error: report it.
            _ => {
                self.check()?;
                Err(Error::Archive("a writer thread stopped".into()))
            }
        }
    }

    /// Wait until every chunk is written.
    fn finish(&mut self) -> Result<()> {
        self.jobs.clear();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        self.check()
    }
}

impl Drop for Writers {
    /// On an early return the pending chunks are still written (to files of
    /// the private directory) before it is removed.
    fn drop(&mut self) {
        let _ = self.finish();
    }
}

/// The archive file, counting the compressed bytes read (for progress).
struct CountedFile {
    inner: File,
    count: Arc<AtomicU64>,
}

impl Read for CountedFile {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// Counts bytes read; past `limit`, fails and records why.
struct Counted<R> {
    inner: R,
    count: Rc<Cell<u64>>,
    limit: u64,
    exceeded: Rc<Cell<bool>>,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let total = self.count.get() + n as u64;
        self.count.set(total);
        if total > self.limit {
            self.exceeded.set(true);
            return Err(io::Error::other("unpacked size limit exceeded"));
        }
        Ok(n)
    }
}

impl Unpacker {
    fn new(root: PathBuf, limits: Limits) -> Self {
        Unpacker {
            root,
            limits,
            nodes: BTreeMap::new(),
            manifest: None,
            entries: 0,
            file_bytes: 0,
            links: Vec::new(),
            writers: Writers::new(),
        }
    }

    fn limit_error(&self) -> Error {
        Error::Archive(format!(
            "the archive unpacks to more than {} bytes (limit set by [load] max_unpacked_bytes)",
            self.limits.max_unpacked_bytes
        ))
    }

    fn run(mut self, file: File, progress: &dyn Progress) -> Result<(Manifest, u64, u64)> {
        let total = file.metadata().map(|m| m.len()).unwrap_or(0);
        progress.begin(total, 0);
        let compressed = Arc::new(AtomicU64::new(0));
        let unpacked = Rc::new(Cell::new(0u64));
        let exceeded = Rc::new(Cell::new(false));
        let stream = Counted {
            inner: Inflater::spawn(file, Arc::clone(&compressed)),
            count: unpacked.clone(),
            limit: self.limits.max_unpacked_bytes,
            exceeded: exceeded.clone(),
        };
        let limit = self.limits.max_unpacked_bytes;
        let fail = |e: io::Error| -> Error {
            if exceeded.get() {
                Error::Archive(format!(
                    "the archive unpacks to more than {limit} bytes (limit set by [load] max_unpacked_bytes)"
                ))
            } else if e.kind() == io::ErrorKind::UnexpectedEof {
                Error::Archive("truncated: the compressed stream ends early".into())
            } else {
                Error::Archive(format!("corrupt: {e}"))
            }
        };

        let mut archive = tar::Archive::new(stream);
        // Where the header after the last entry starts: tells "end marker read"
        // apart from "stream ended on an entry boundary".
        let mut next_header = 0u64;
        let mut reported = 0u64;
        for entry in archive.entries().map_err(fail)? {
            let mut entry = entry.map_err(fail)?;
            if progress.is_cancelled() {
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
            let room = self
                .limits
                .max_unpacked_bytes
                .saturating_sub(unpacked.get());
            self.entry(&mut entry, room, &fail)?;
            let done = compressed.load(Ordering::Relaxed);
            progress.advance(done.saturating_sub(reported), 1);
            reported = done;
        }

        // The tar reader stops at the first zero block, before the gzip
        // trailer: read on to the end so every CRC32/ISIZE is checked.
        let mut rest = archive.into_inner();
        if unpacked.get() == next_header {
            return Err(Error::Archive(
                "truncated: the tar stream has no end-of-archive marker".into(),
            ));
        }
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = rest.read(&mut buf).map_err(fail)?;
            if n == 0 {
                break;
            }
            if buf[..n].iter().any(|b| *b != 0) {
                return Err(Error::Archive(
                    "data follows the end of the tar archive (a second archive or garbage)".into(),
                ));
            }
        }
        progress.advance(
            compressed.load(Ordering::Relaxed).saturating_sub(reported),
            0,
        );

        self.writers.finish()?;
        let bytes = self.manifest.take().ok_or_else(|| {
            Error::Archive(format!(
                "no {MANIFEST} at the archive root (is it a Diskette archive?)"
            ))
        })?;
        let manifest = Manifest::parse(&bytes)?;
        self.check_layout(&manifest)?;
        self.check_links(&manifest)?;
        for (name, target) in &self.links {
            let path = self.root.join(name);
            std::os::unix::fs::symlink(target, &path).ctx("create link", &path)?;
        }
        Ok((manifest, self.entries, self.file_bytes))
    }

    fn entry<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        room: u64,
        fail: &dyn Fn(io::Error) -> Error,
    ) -> Result<()> {
        let raw = entry.path_bytes().into_owned();
        let kind = entry.header().entry_type();
        let what = match kind {
            EntryType::Regular | EntryType::Directory => None,
            EntryType::XGlobalHeader => return check_global_header(entry, fail),
            EntryType::Symlink => return self.add_link(entry, &raw),
            EntryType::Link => Some("a hard link".to_string()),
            EntryType::Char => Some("a character device".to_string()),
            EntryType::Block => Some("a block device".to_string()),
            EntryType::Fifo => Some("a FIFO".to_string()),
            EntryType::GNUSparse => Some("a sparse file".to_string()),
            EntryType::Continuous => Some("a contiguous file".to_string()),
            other => Some(format!(
                "an entry of type {:?}",
                char::from(other.as_byte())
            )),
        };
        if let Some(what) = what {
            return Err(Error::Archive(format!(
                "entry {}: {what} is not allowed (only regular files and directories)",
                show(&String::from_utf8_lossy(&raw))
            )));
        }

        // PAX records the tar crate does not act on, but other readers do.
        let mut pax_path = None;
        if let Some(exts) = entry.pax_extensions().map_err(fail)? {
            for ext in exts {
                let ext = ext.map_err(fail)?;
                let key = ext.key_bytes();
                if key.starts_with(b"GNU.sparse") {
                    return Err(Error::Archive(format!(
                        "entry {}: a sparse file is not allowed (only regular files and directories)",
                        show(&String::from_utf8_lossy(&raw))
                    )));
                }
                if key == b"path" {
                    pax_path = Some(ext.value_bytes().to_vec());
                }
            }
        }
        if pax_path.is_some_and(|p| p != raw) {
            return Err(Error::Archive(format!(
                "entry {}: a GNU long name and a PAX path disagree",
                show(&String::from_utf8_lossy(&raw))
            )));
        }

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
            return Err(self.limit_error());
        }
        let is_dir = kind == EntryType::Directory || (trailing_slash && entry.size() == 0);
        if is_dir {
            return self.add_dir(&name, true);
        }
        if trailing_slash {
            return Err(Error::Archive(format!(
                "entry {}: a file name ends with '/'",
                show(&name)
            )));
        }
        if name == MANIFEST {
            if entry.size() > MAX_MANIFEST_BYTES {
                return Err(Error::Archive(format!(
                    "{MANIFEST} is {} bytes, more than the {MAX_MANIFEST_BYTES} a manifest may have",
                    entry.size()
                )));
            }
            self.claim_file(&name)?;
            let mut bytes = Vec::with_capacity(entry.size() as usize);
            entry.read_to_end(&mut bytes).map_err(fail)?;
            if bytes.len() as u64 != entry.size() {
                return Err(truncated_entry(&name, entry.size(), bytes.len() as u64));
            }
            self.manifest = Some(bytes);
            return Ok(());
        }
        self.claim_file(&name)?;
        let path = self.root.join(&name);
        let out = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(file_mode(entry.header().mode().unwrap_or(FILE_MODE)))
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
            .ctx("create", &path)?;
        let out = Arc::new((out, path));
        let worker = self.writers.next_file();
        let mut written = 0u64;
        loop {
            let mut buf = vec![0u8; WRITE_CHUNK];
            let mut filled = 0;
            while filled < buf.len() {
                match entry.read(&mut buf[filled..]).map_err(fail)? {
                    0 => break,
                    n => filled += n,
                }
            }
            if filled == 0 {
                break;
            }
            buf.truncate(filled);
            self.writers
                .write(worker, Arc::clone(&out), Chunk::Data(buf))?;
            written += filled as u64;
        }
        let mtime = entry
            .header()
            .mtime()
            .ok()
            .map(|secs| std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs));
        self.writers.write(worker, out, Chunk::Done(mtime))?;
        if written != entry.size() {
            return Err(truncated_entry(&name, entry.size(), written));
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
        let target = entry.link_name_bytes().ok_or_else(|| {
            Error::Archive(format!("entry {shown}: a symbolic link without a target"))
        })?;
        let target = std::str::from_utf8(&target)
            .map_err(|_| Error::Archive(format!("entry {shown}: a link target that is not UTF-8")))?
            .to_string();
        if target.is_empty()
            || target.starts_with('/')
            || target.contains('\\')
            || target.chars().any(|c| c.is_control())
        {
            return Err(Error::Archive(format!(
                "entry {shown}: a symbolic link to {} is not allowed (only relative links inside a storage)",
                show(&target)
            )));
        }
        self.parents(&name)?;
        if self.nodes.contains_key(&name) {
            return Err(Error::Archive(format!(
                "entry {shown}: appears twice in the archive"
            )));
        }
        self.nodes.insert(name.clone(), Node::Link);
        self.links.push((name, target));
        Ok(())
    }

    /// Every link lies in a listed storage and resolves, by its own
    /// components, to a path inside that storage.
    fn check_links(&self, manifest: &Manifest) -> Result<()> {
        let storages = manifest.storages.as_deref().unwrap_or_default();
        for (name, target) in &self.links {
            let refuse = || {
                Error::Archive(format!(
                    "entry {}: a symbolic link to {} is not allowed (only relative links inside a storage)",
                    show(name),
                    show(target)
                ))
            };
            let storage = storages
                .iter()
                .find(|s| {
                    name.len() > s.len()
                        && name.starts_with(s.as_str())
                        && name.as_bytes()[s.len()] == b'/'
                })
                .ok_or_else(refuse)?;
            let inside = &name[storage.len() + 1..];
            let mut depth = inside.matches('/').count() as i64;
            for part in target.split('/') {
                match part {
                    "" | "." => {}
                    ".." => depth -= 1,
                    _ => depth += 1,
                }
                if depth < 0 {
                    return Err(refuse());
                }
            }
            if depth == 0 {
                return Err(refuse());
            }
        }
        Ok(())
    }

    /// Record a file about to be written, creating its parent directories.
    fn claim_file(&mut self, name: &str) -> Result<()> {
        self.parents(name)?;
        match self.nodes.get(name) {
            Some(Node::File | Node::Link) => Err(Error::Archive(format!(
                "entry {}: appears twice in the archive",
                show(name)
            ))),
            Some(Node::Dir { .. }) => Err(Error::Archive(format!(
                "entry {}: a file where the archive already has a directory",
                show(name)
            ))),
            None => {
                self.nodes.insert(name.to_string(), Node::File);
                Ok(())
            }
        }
    }

    fn add_dir(&mut self, name: &str, explicit: bool) -> Result<()> {
        if name == MANIFEST && explicit {
            return Err(Error::Archive(format!(
                "{MANIFEST} is a directory, not a file"
            )));
        }
        self.parents(name)?;
        match self.nodes.get_mut(name) {
            Some(Node::File | Node::Link) => Err(Error::Archive(format!(
                "entry {}/: a directory where the archive already has a file",
                show(name)
            ))),
            Some(Node::Dir { explicit: true }) if explicit => Err(Error::Archive(format!(
                "entry {}/: appears twice in the archive",
                show(name)
            ))),
            Some(Node::Dir { explicit: seen }) => {
                *seen |= explicit;
                Ok(())
            }
            None => {
                let path = self.root.join(name);
                // `create`, not `create_all`: each component is made (and
                // checked absent) on its own, inside our private directory.
                fs::DirBuilder::new()
                    .mode(DIR_MODE)
                    .create(&path)
                    .ctx("create directory", &path)?;
                self.nodes.insert(name.to_string(), Node::Dir { explicit });
                Ok(())
            }
        }
    }

    fn parents(&mut self, name: &str) -> Result<()> {
        for (i, _) in name.match_indices('/') {
            let parent = &name[..i];
            match self.nodes.get(parent) {
                Some(Node::Dir { .. }) => {}
                Some(Node::File | Node::Link) => {
                    return Err(Error::Archive(format!(
                        "entry {}: {} is a file in the archive, not a directory",
                        show(name),
                        show(parent)
                    )));
                }
                None => self.add_dir(parent, false)?,
            }
        }
        Ok(())
    }

    fn check_layout(&self, manifest: &Manifest) -> Result<()> {
        let datas = manifest.datas.as_deref().unwrap_or_default();
        let storages = manifest.storages.as_deref().unwrap_or_default();
        let under = |name: &str, top: &str| {
            name == top
                || (name.len() > top.len()
                    && name.starts_with(top)
                    && name.as_bytes()[top.len()] == b'/')
        };
        for (name, node) in &self.nodes {
            let allowed = name == MANIFEST
                || under(name, DATA_DIR)
                || storages.iter().any(|s| under(name, s))
                // A parent directory of a listed storage (`media/` of `media/private`).
                || (matches!(node, Node::Dir { .. }) && storages.iter().any(|s| under(s, name)));
            if !allowed {
                return Err(Error::Archive(format!(
                    "entry {} lies outside {MANIFEST}, {DATA_DIR}/ and the storages listed in {MANIFEST}",
                    show(name)
                )));
            }
        }
        for d in datas {
            match self.nodes.get(d.as_str()) {
                Some(Node::File) => {}
                Some(Node::Link) => {
                    return Err(Error::Archive(format!(
                        "data file {} listed in {MANIFEST} is a symbolic link, not a file",
                        show(d)
                    )));
                }
                Some(Node::Dir { .. }) => {
                    return Err(Error::Archive(format!(
                        "data file {} listed in {MANIFEST} is a directory in the archive",
                        show(d)
                    )));
                }
                None => {
                    return Err(Error::Archive(format!(
                        "data file {} listed in {MANIFEST} is not in the archive",
                        show(d)
                    )));
                }
            }
        }
        for s in storages {
            match self.nodes.get(s.as_str()) {
                Some(Node::Dir { .. }) => {}
                Some(Node::File | Node::Link) => {
                    return Err(Error::Archive(format!(
                        "storage {} listed in {MANIFEST} is a file in the archive, not a directory",
                        show(s)
                    )));
                }
                None => {
                    return Err(Error::Archive(format!(
                        "storage {} listed in {MANIFEST} is not in the archive",
                        show(s)
                    )));
                }
            }
        }
        Ok(())
    }
}

/// A PAX global header is skipped when it only carries metadata we ignore
/// anyway; one that would rename or resize the following entries in other
/// readers (`path`, `size`, sparse maps, ...) is refused.
fn check_global_header<R: Read>(
    entry: &mut tar::Entry<'_, R>,
    fail: &dyn Fn(io::Error) -> Error,
) -> Result<()> {
    const HARMLESS: &[&[u8]] = &[
        b"comment", b"mtime", b"atime", b"ctime", b"uid", b"gid", b"uname", b"gname", b"charset",
    ];
    let mut body = Vec::new();
    entry
        .take(MAX_MANIFEST_BYTES + 1)
        .read_to_end(&mut body)
        .map_err(fail)?;
    if body.len() as u64 > MAX_MANIFEST_BYTES {
        return Err(Error::Archive(
            "a PAX global header is larger than 64 KiB".into(),
        ));
    }
    for ext in tar::PaxExtensions::new(&body) {
        let ext = ext.map_err(fail)?;
        if !HARMLESS.contains(&ext.key_bytes()) {
            return Err(Error::Archive(format!(
                "a PAX global header sets {:?} for the whole archive, which is not allowed",
                String::from_utf8_lossy(ext.key_bytes())
            )));
        }
    }
    Ok(())
}

/// The entry name, checked and normalised: leading `./` and one trailing `/`
/// removed. `None` for the archive root (`./`). The flag says whether the name
/// ended with `/`.
fn normalize(raw: &[u8]) -> Result<Option<(String, bool)>> {
    let name = std::str::from_utf8(raw).map_err(|_| {
        Error::Archive(format!(
            "entry {}: name is not valid UTF-8",
            show(&String::from_utf8_lossy(raw))
        ))
    })?;
    let mut rest = name;
    while let Some(r) = rest.strip_prefix("./") {
        rest = r;
    }
    if rest == "." {
        rest = "";
    }
    let trailing_slash = rest.ends_with('/') || (rest.is_empty() && name.ends_with('/'));
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.is_empty() {
        return if name.is_empty() {
            Err(Error::Archive("an entry has an empty name".into()))
        } else {
            Ok(None)
        };
    }
    check_relative(rest).map_err(|m| Error::Archive(format!("entry {}: name {m}", show(name))))?;
    let first = rest.split('/').next().unwrap_or_default().as_bytes();
    if first.len() == 2 && first[0].is_ascii_alphabetic() && first[1] == b':' {
        return Err(Error::Archive(format!(
            "entry {}: name has a drive prefix",
            show(name)
        )));
    }
    Ok(Some((rest.to_string(), trailing_slash)))
}

fn truncated_entry(name: &str, expected: u64, got: u64) -> Error {
    Error::Archive(format!(
        "entry {}: truncated ({got} of {expected} bytes)",
        show(name)
    ))
}

/// A name for an error message: quoted, escaped, and shortened when huge.
fn show(name: &str) -> String {
    const MAX: usize = 120;
    if name.len() <= MAX {
        return format!("{name:?}");
    }
    let mut end = MAX;
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    format!("{:?}... ({} bytes)", &name[..end], name.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::progress::Silent;
    use flate2::Compression;
    use flate2::write::GzEncoder;

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

    #[test]
    fn file_modes_are_kept_but_made_safe() {
        assert_eq!(file_mode(0o600), 0o600);
        assert_eq!(file_mode(0o644), 0o644);
        assert_eq!(file_mode(0o4777), 0o755);
        assert_eq!(file_mode(0o000), 0o600);
        assert_eq!(file_mode(0o666), 0o644);
    }

    #[test]
    fn normalizes_names() {
        assert_eq!(normalize(b"./a/b/").unwrap(), Some(("a/b".into(), true)));
        assert_eq!(normalize(b"././a").unwrap(), Some(("a".into(), false)));
        assert_eq!(normalize(b"./").unwrap(), None);
        assert_eq!(normalize(b".").unwrap(), None);
        for bad in [
            &b""[..],
            b"/abs",
            b"a/../b",
            b"a/./b",
            b"a//b",
            b"a\\b",
            b"a\x01b",
            b"C:/x",
            b"caf\xe9",
        ] {
            assert!(
                normalize(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}

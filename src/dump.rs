//! `diskette dump`: one streaming pass files → tar → gzip → BLAKE2b → disk
//! (or an object store).
//!
//! The archive is written to a temporary file in the destination directory,
//! fsynced, then linked into place under a name that never replaces an
//! existing file (or, when asked, renamed over the file of that name); on any
//! error no file is left behind. Into an S3 bucket, it streams into a
//! multipart upload that only a complete archive completes.

use std::fmt::Write as _;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::Config;
use crate::apps::{Engine, ResolvedApp};
use crate::archive::manifest::Manifest;
use crate::archive::writer::{ArchiveWriter, Finished};
use crate::archive::{DATA_DIR, MANIFEST, filename};
use crate::error::{Error, IoContext, Result};
use crate::progress::Progress;
use crate::storages::{EntryKind, Excludes, Storage};
use crate::store::ArchiveStore;

/// Prefix of every temporary file or directory a dump creates in the dump
/// directory; whatever carries it after a crash is an orphan.
pub const TEMP_PREFIX: &str = ".diskette-tmp-";

#[derive(Debug, Clone)]
pub struct DumpOptions {
    pub with_data: bool,
    pub with_storages: bool,
    pub storages_excludes: bool,
    /// Directory of the archive (default: `[dump] path`).
    pub destination: Option<PathBuf>,
    /// File name pattern (default: `[dump] filename`).
    pub filename: Option<String>,
    /// A kind asked for but not configured is an error rather than skipped
    /// (a registry dump must hold what its option set says).
    pub strict: bool,
    /// Replace an existing file of the archive's name, atomically, as
    /// Diskette does for a fixed name; otherwise `_2`, `_3`... are added.
    pub replace: bool,
    /// Log the checksum (`dump --no-checksum` leaves it out).
    pub log_checksum: bool,
    /// The registry dump this archive is for: its id goes into the names of
    /// the temporary files, so another instance knows whose they are.
    pub job_id: Option<i64>,
}

impl DumpOptions {
    pub fn new(with_data: bool, with_storages: bool) -> Self {
        DumpOptions {
            with_data,
            with_storages,
            storages_excludes: true,
            destination: None,
            filename: None,
            strict: false,
            replace: false,
            log_checksum: true,
            job_id: None,
        }
    }

    /// Prefix of the temporary files and directories of this archive.
    pub fn temp_prefix(&self) -> String {
        match self.job_id {
            Some(id) => format!("{TEMP_PREFIX}{id}-"),
            None => TEMP_PREFIX.to_string(),
        }
    }
}

/// A written archive.
#[derive(Debug, Clone)]
pub struct DumpOutcome {
    pub path: PathBuf,
    /// File name inside the destination directory.
    pub filename: String,
    pub size: u64,
    /// BLAKE2b-512 hex, as `b2sum` prints it.
    pub checksum: String,
    /// Storage files and data fixtures archived.
    pub files: u64,
    /// Uncompressed bytes archived.
    pub bytes: u64,
    pub rows: u64,
    pub with_data: bool,
    pub with_storages: bool,
}

/// What a dump will do, resolved and validated.
struct Plan {
    apps: Vec<ResolvedApp>,
    storages: Vec<Storage>,
    excludes: Excludes,
    destination: Destination,
    pattern: String,
    /// See `DumpOptions::temp_prefix`.
    temp_prefix: String,
}

/// Where the archive goes: `--destination` or a local `[dump] path`, or the
/// bucket an `s3://` `[dump] path` names.
enum Destination {
    Dir(PathBuf),
    S3(crate::store::S3Store),
}

impl Plan {
    fn with_data(&self) -> bool {
        !self.apps.is_empty()
    }
    fn with_storages(&self) -> bool {
        !self.storages.is_empty()
    }
}

fn plan(config: &Config, opts: &DumpOptions, progress: &dyn Progress) -> Result<Plan> {
    if !opts.with_data && !opts.with_storages {
        return Err(Error::Usage(
            "nothing to dump: both data and storages are disabled".into(),
        ));
    }
    if opts.strict && opts.with_data && config.apps.is_empty() {
        return Err(Error::Usage(
            "data was asked for, but no application is defined ([[apps]] in the configuration)"
                .into(),
        ));
    }
    if opts.strict && opts.with_storages && config.storages.paths.is_empty() {
        return Err(Error::Usage(
            "storages were asked for, but none is defined ([storages] paths in the configuration)"
                .into(),
        ));
    }
    let apps = if opts.with_data && !config.apps.is_empty() {
        crate::apps::resolve(config)?
    } else {
        if opts.with_data {
            progress.log("No application is defined ([[apps]]): data skipped");
        }
        Vec::new()
    };
    let storages = if opts.with_storages && !config.storages.paths.is_empty() {
        crate::storages::validate(&config.storages)?
    } else {
        if opts.with_storages {
            progress.log("No storage is defined ([storages] paths): storages skipped");
        }
        Vec::new()
    };
    if apps.is_empty() && storages.is_empty() {
        return Err(Error::Usage(
            "nothing to dump: no application data and no storage is enabled and configured".into(),
        ));
    }
    let excludes = if opts.storages_excludes {
        Excludes::new(&config.storages.excludes)?
    } else {
        Excludes::none()
    };
    let pattern = opts
        .filename
        .clone()
        .unwrap_or_else(|| config.dump.filename.clone());
    filename::validate_pattern(&pattern).map_err(|m| Error::Usage(format!("--filename: {m}")))?;
    let destination = match &opts.destination {
        Some(dir) => Destination::Dir(dir.clone()),
        None => match ArchiveStore::open(&config.dump.path, &config.dump.s3_env)? {
            ArchiveStore::Local(dir) => Destination::Dir(dir),
            ArchiveStore::S3(store) => Destination::S3(store),
        },
    };
    Ok(Plan {
        apps,
        storages,
        excludes,
        destination,
        pattern,
        temp_prefix: opts.temp_prefix(),
    })
}

fn now_local() -> time::OffsetDateTime {
    time::OffsetDateTime::now_local().unwrap_or_else(|_| time::OffsetDateTime::now_utc())
}

/// Write the archive; on any error no file (nor object) is left behind.
pub fn dump(config: &Config, opts: &DumpOptions, progress: &dyn Progress) -> Result<DumpOutcome> {
    let plan = plan(config, opts, progress)?;
    let now = now_local();
    let name = filename::render(
        &plan.pattern,
        plan.with_data(),
        plan.with_storages(),
        &filename::date_stamp(now),
    );
    match &plan.destination {
        Destination::Dir(dir) => dump_to_dir(config, opts, &plan, dir, &name, now, progress),
        Destination::S3(store) => dump_to_s3(config, opts, &plan, store, &name, now, progress),
    }
}

/// Into a temporary file of `dir`, fsynced, then given its name.
fn dump_to_dir(
    config: &Config,
    opts: &DumpOptions,
    plan: &Plan,
    dir: &Path,
    name: &str,
    now: time::OffsetDateTime,
    progress: &dyn Progress,
) -> Result<DumpOutcome> {
    let mode = config.dump.mode()?;
    fs::create_dir_all(dir).ctx("create the dump directory", dir)?;
    progress.log(&format!(
        "Dumping {} into {}",
        describe_kinds(plan.with_data(), plan.with_storages()),
        dir.join(name).display()
    ));
    let tmp = tempfile::Builder::new()
        .prefix(&plan.temp_prefix)
        .suffix(".tar.gz")
        .tempfile_in(dir)
        .ctx("create a temporary file in", dir)?;
    let file = tmp.as_file().try_clone().ctx("open", tmp.path())?;
    let written = write_archive(config, plan, file, dir, now, progress)?;
    written
        .finished
        .file
        .sync_all()
        .ctx("write archive at", tmp.path())?;

    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(tmp.path(), fs::Permissions::from_mode(mode))
        .ctx("set permissions of", tmp.path())?;
    let (path, filename) = if opts.replace {
        replace(tmp, dir, name)?
    } else {
        place(tmp, dir, name)?
    };
    let display = path.display().to_string();
    Ok(written.outcome(opts, plan, path, filename, &display, progress))
}

/// Streamed into a multipart upload: the object appears under its name only
/// once complete; dropped on an error, the upload is aborted.
fn dump_to_s3(
    config: &Config,
    opts: &DumpOptions,
    plan: &Plan,
    store: &crate::store::S3Store,
    name: &str,
    now: time::OffsetDateTime,
    progress: &dyn Progress,
) -> Result<DumpOutcome> {
    let name = if opts.replace {
        name.to_string()
    } else {
        store.free_name_blocking(name)?
    };
    let url = store.location().url_of(&name);
    progress.log(&format!(
        "Dumping {} into {url}",
        describe_kinds(plan.with_data(), plan.with_storages()),
    ));
    let upload = store.upload(&name)?;
    // Only the data fixtures are staged on local disk, never the archive.
    let mut written = write_archive(config, plan, upload, &std::env::temp_dir(), now, progress)?;
    written.finished.file.complete()?;
    Ok(written.outcome(opts, plan, PathBuf::from(&url), name, &url, progress))
}

/// A finished archive and what went into it.
struct Written<W> {
    finished: Finished<W>,
    files: u64,
    bytes: u64,
    rows: u64,
}

impl<W> Written<W> {
    fn outcome(
        &self,
        opts: &DumpOptions,
        plan: &Plan,
        path: PathBuf,
        filename: String,
        display: &str,
        progress: &dyn Progress,
    ) -> DumpOutcome {
        progress.log(&format!(
            "Archive created: {display} ({})",
            humansize::format_size(self.finished.size, humansize::DECIMAL)
        ));
        if opts.log_checksum {
            progress.log(&format!("Checksum: {}", self.finished.checksum));
        }
        DumpOutcome {
            path,
            filename,
            size: self.finished.size,
            checksum: self.finished.checksum.clone(),
            files: self.files,
            bytes: self.bytes,
            rows: self.rows,
            with_data: plan.with_data(),
            with_storages: plan.with_storages(),
        }
    }
}

/// The one streaming pass: fixtures staged in `staging`, then tar → gzip →
/// BLAKE2b → `out`.
fn write_archive<W: io::Write>(
    config: &Config,
    plan: &Plan,
    out: W,
    staging: &Path,
    now: time::OffsetDateTime,
    progress: &dyn Progress,
) -> Result<Written<W>> {
    let mut packer = Packer::new(config, out, now);
    let staged = stage_data(config, plan, staging, progress)?;
    begin_progress(plan, &staged, progress)?;
    if let Some(dir) = &staged.dir {
        packer.add_data(plan, dir.path(), progress)?;
    }
    drop(staged.dir);
    for storage in &plan.storages {
        packer.add_storage(storage, &plan.excludes, progress)?;
    }
    let manifest = Manifest {
        version: crate::VERSION.to_string(),
        creation: creation_stamp(now),
        datas: plan.with_data().then_some(staged.datas),
        storages: plan
            .with_storages()
            .then(|| plan.storages.iter().map(|s| s.arcname.clone()).collect()),
    };
    let (finished, files, bytes) = packer.finish(&manifest)?;
    Ok(Written {
        finished,
        files,
        bytes,
        rows: staged.rows,
    })
}

/// The data fixtures, written before the archive: a tar header needs the
/// size before the content.
struct Staged {
    /// Beside the archive, holding one file per application; `None` without data.
    dir: Option<tempfile::TempDir>,
    /// Archive paths of the fixtures, in load order.
    datas: Vec<String>,
    rows: u64,
}

/// Dump every application's data into a staging directory.
fn stage_data(
    config: &Config,
    plan: &Plan,
    staging: &Path,
    progress: &dyn Progress,
) -> Result<Staged> {
    let mut staged = Staged {
        dir: None,
        datas: Vec::new(),
        rows: 0,
    };
    if !plan.with_data() {
        return Ok(staged);
    }
    let dir = tempfile::Builder::new()
        .prefix(&plan.temp_prefix)
        .tempdir_in(staging)
        .ctx("create a temporary directory in", staging)?;
    let conn = sql_source(config, plan)?;
    for app in &plan.apps {
        if progress.is_cancelled() {
            return Err(Error::Cancelled);
        }
        let out = dir.path().join(&app.filename);
        progress.log(&format!("Dumping data of {:?}", app.name));
        let size = match &app.engine {
            Engine::Sql { .. } => {
                let db = conn.as_deref().expect("opened when an app uses SQL");
                let stats = crate::engine::sql::dump_app(db, config, app, &out, progress)?;
                staged.rows += stats.rows;
                stats.bytes
            }
            Engine::Command { dump, .. } => {
                crate::engine::command::dump(&app.config, dump, config, &out, progress)?
            }
        };
        progress.log(&format!(
            "- Written {} ({})",
            app.filename,
            humansize::format_size(size, humansize::DECIMAL)
        ));
        staged.datas.push(app.archive_path());
    }
    staged.dir = Some(dir);
    Ok(staged)
}

/// The data source, opened when an application is dumped by SQL.
fn sql_source(
    config: &Config,
    plan: &Plan,
) -> Result<Option<Box<dyn crate::engine::sql::Backend>>> {
    if plan
        .apps
        .iter()
        .any(|a| matches!(a.engine, Engine::Sql { .. }))
    {
        Ok(Some(crate::apps::open_source(config)?))
    } else {
        Ok(None)
    }
}

/// Announce the bytes and files to archive: the storages' and the staged
/// fixtures'.
fn begin_progress(plan: &Plan, staged: &Staged, progress: &dyn Progress) -> Result<()> {
    let mut total = 0u64;
    let mut total_files = 0u64;
    for s in &plan.storages {
        let t = crate::storages::totals(s, &plan.excludes, &crate::progress::Silent)?;
        total += t.bytes;
        total_files += t.files;
    }
    if let Some(dir) = &staged.dir {
        for app in &plan.apps {
            total += fs::metadata(dir.path().join(&app.filename))
                .map(|m| m.len())
                .unwrap_or(0);
        }
    }
    progress.begin(total, total_files + plan.apps.len() as u64);
    Ok(())
}

/// The archive being written, and what went into it.
struct Packer<W: io::Write> {
    writer: ArchiveWriter<W>,
    /// Of the entries made up by the dump (`data/`, the manifest).
    mtime: u64,
    /// Storage files, links and data fixtures archived.
    files: u64,
    /// Uncompressed bytes archived.
    bytes: u64,
}

impl<W: io::Write> Packer<W> {
    fn new(config: &Config, file: W, now: time::OffsetDateTime) -> Self {
        Packer {
            writer: ArchiveWriter::new(
                file,
                config.dump.compression_level,
                config.dump.compressed_media_level,
                config.dump.threads(),
            ),
            mtime: now.unix_timestamp().max(0) as u64,
            files: 0,
            bytes: 0,
        }
    }

    /// `data/` and the staged fixtures in `dir`.
    fn add_data(&mut self, plan: &Plan, dir: &Path, progress: &dyn Progress) -> Result<()> {
        self.writer.append_plain_dir(DATA_DIR, self.mtime)?;
        // Diskette's layout: data files sorted by name; the manifest keeps the load order.
        let mut sorted: Vec<&ResolvedApp> = plan.apps.iter().collect();
        sorted.sort_by(|a, b| a.filename.cmp(&b.filename));
        for app in sorted {
            let n = self.writer.append_path_as(
                &app.archive_path(),
                &dir.join(&app.filename),
                progress,
            )?;
            progress.advance(0, 1);
            self.files += 1;
            self.bytes += n;
        }
        Ok(())
    }

    /// A storage's root directory and everything in it, bar the excluded.
    fn add_storage(
        &mut self,
        storage: &Storage,
        excludes: &Excludes,
        progress: &dyn Progress,
    ) -> Result<()> {
        progress.log(&format!("Archiving storage {}", storage.arcname));
        let root_meta = fs::metadata(&storage.root).ctx("read", &storage.root)?;
        self.writer.append_dir(&storage.arcname, &root_meta)?;
        for entry in crate::storages::walk(storage, excludes, progress) {
            if progress.is_cancelled() {
                return Err(Error::Cancelled);
            }
            let entry = entry?;
            match &entry.kind {
                EntryKind::Dir => self.writer.append_dir(&entry.arcname, &entry.meta)?,
                EntryKind::Symlink(target) => {
                    self.writer
                        .append_symlink(&entry.arcname, target, &entry.meta)?;
                    self.files += 1;
                }
                EntryKind::File => {
                    if let Some(n) =
                        self.writer
                            .append_file(&entry.arcname, &entry.path, progress)?
                    {
                        self.files += 1;
                        self.bytes += n;
                        progress.advance(0, 1);
                    }
                }
            }
        }
        Ok(())
    }

    /// The manifest last, then the gzip trailer. Returns the finished file
    /// with its size and checksum, and the files and bytes archived.
    fn finish(mut self, manifest: &Manifest) -> Result<(Finished<W>, u64, u64)> {
        self.writer
            .append_bytes(MANIFEST, manifest.to_json().as_bytes(), self.mtime)?;
        let finished = self.writer.finish()?;
        Ok((finished, self.files, self.bytes))
    }
}

/// Give the finished temporary file its final name without ever replacing an
/// existing file (`_2`, `_3`... are added on a clash), then fsync the directory.
fn place(tmp: tempfile::NamedTempFile, dir: &Path, name: &str) -> Result<(PathBuf, String)> {
    let stem = name.strip_suffix(".tar.gz").unwrap_or(name);
    for n in 1..1000 {
        let candidate = if n == 1 {
            name.to_string()
        } else {
            format!("{stem}_{n}.tar.gz")
        };
        let target = dir.join(&candidate);
        match fs::hard_link(tmp.path(), &target) {
            Ok(()) => {
                // The temporary name goes; the archive stays under its final name.
                drop(tmp);
                if let Ok(d) = fs::File::open(dir) {
                    let _ = d.sync_all();
                }
                return Ok((target, candidate));
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(Error::io("create", &target, e)),
        }
    }
    Err(Error::Usage(format!(
        "too many archives named like {name} in {}",
        dir.display()
    )))
}

/// Rename the finished temporary file over `name`: a reader sees the old
/// archive or the new one, never a part. The file was fsynced when finished.
fn replace(tmp: tempfile::NamedTempFile, dir: &Path, name: &str) -> Result<(PathBuf, String)> {
    let target = dir.join(name);
    if fs::symlink_metadata(&target).is_ok_and(|m| m.is_dir()) {
        return Err(Error::Usage(format!(
            "{} is a directory: it cannot be replaced by the archive",
            target.display()
        )));
    }
    tmp.persist(&target)
        .map_err(|e| Error::io("replace", &target, e.error))?;
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok((target, name.to_string()))
}

fn describe_kinds(data: bool, storages: bool) -> &'static str {
    match (data, storages) {
        (true, true) => "data and storages",
        (true, false) => "data",
        _ => "storages",
    }
}

/// Diskette's manifest `creation`: naive local time to the second.
fn creation_stamp(now: time::OffsetDateTime) -> String {
    let f = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]");
    now.format(&f).unwrap_or_default()
}

/// What `dump` would archive, as a printable report; writes nothing.
pub fn check(config: &Config, opts: &DumpOptions, progress: &dyn Progress) -> Result<String> {
    let plan = plan(config, opts, progress)?;
    let mut out = String::new();
    let name = filename::render(
        &plan.pattern,
        plan.with_data(),
        plan.with_storages(),
        &filename::date_stamp(now_local()),
    );
    let archive = match &plan.destination {
        Destination::Dir(dir) => {
            let state = if dir.is_dir() {
                ""
            } else if dir.exists() {
                return Err(Error::Usage(format!(
                    "destination {} exists and is not a directory",
                    dir.display()
                )));
            } else {
                " (will be created)"
            };
            format!("{}{state}", dir.join(&name).display())
        }
        Destination::S3(store) => store.location().url_of(&name),
    };
    let _ = writeln!(out, "Archive: {archive}");
    let mut total_rows = 0u64;
    if plan.with_data() {
        let _ = writeln!(out, "Data:");
        let conn = sql_source(config, &plan)?;
        for app in &plan.apps {
            match &app.engine {
                Engine::Sql { tables } => {
                    let conn = conn.as_deref().expect("opened when an app uses SQL");
                    let _ = writeln!(out, "  {} -> {}", app.name, app.archive_path());
                    for t in tables {
                        crate::engine::sql::read_table(conn, &t.name)?;
                        let n = crate::engine::sql::count_rows(conn, &t.name)?;
                        total_rows += n;
                        let _ = writeln!(out, "    {} ({}): {n} rows", t.name, t.label);
                    }
                    for w in &app.warnings {
                        let _ = writeln!(out, "    warning: {w}");
                    }
                }
                Engine::Command { dump, .. } => {
                    let _ = writeln!(
                        out,
                        "  {} -> {}: command {}",
                        app.name,
                        app.archive_path(),
                        dump.join(" ")
                    );
                }
            }
        }
        if let Some(conn) = conn.as_deref() {
            let catalog = crate::engine::sql::Catalog::read(
                conn,
                &config.data.labels,
                &config.data.natural_keys,
            )?;
            out.push_str(&crate::apps::unmapped(&catalog));
        }
    } else {
        let _ = writeln!(out, "Data: none");
    }
    let mut total_files = 0;
    let mut total_bytes = 0;
    if plan.with_storages() {
        let _ = writeln!(out, "Storages:");
        for s in &plan.storages {
            let t = crate::storages::totals(s, &plan.excludes, progress)?;
            total_files += t.files;
            total_bytes += t.bytes;
            let _ = writeln!(
                out,
                "  {}: {} files, {} directories, {}",
                s.arcname,
                t.files,
                t.dirs,
                humansize::format_size(t.bytes, humansize::DECIMAL)
            );
        }
    } else {
        let _ = writeln!(out, "Storages: none");
    }
    let _ = writeln!(
        out,
        "Total: {total_rows} rows, {total_files} files, {} before compression",
        humansize::format_size(total_bytes, humansize::DECIMAL)
    );
    Ok(out)
}

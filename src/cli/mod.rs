//! Command-line interface: every command, its parsing and its output. Every
//! command prints one clear error line and exits non-zero on failure.
//!
//! `registry`: `user`, `key` and `dump --save`; `server`: `load --server`;
//! `serve`: `serve` and `demo`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

mod logging;
pub mod registry;
pub mod schedule;
pub mod serve;
pub mod server;
pub mod verify;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::progress::{Console, Progress};

#[derive(Debug, Parser)]
#[command(
    name = "diskette",
    version,
    about = "Archive an application's data and media into one tar.gz, keep a registry of dumps, restore them elsewhere",
    long_about = None
)]
pub struct Cli {
    /// Configuration file (default: $DISKETTE_CONFIG, then ./diskette.toml)
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Print only errors, warnings and results
    #[arg(long, short, global = true)]
    pub quiet: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write an archive of the application data and the storages
    Dump(DumpArgs),
    /// Restore an archive (a file, an http(s) URL, or the service's latest dump)
    Load(LoadArgs),
    /// Show the application definitions and the tables each one covers,
    /// or write definitions for the database's applications (--generate)
    Apps(AppsArgs),
    /// Serve the web admin and the API
    Serve {
        /// Listen address, HOST:PORT (default: [server] addr)
        #[arg(long, value_name = "HOST:PORT")]
        addr: Option<String>,
    },
    /// Create a demo workspace (once) and an admin user, then serve it
    Demo {
        /// Workspace directory
        #[arg(long, default_value = "demo", value_name = "DIR")]
        dir: PathBuf,
        /// Listen address, HOST:PORT
        #[arg(long, default_value = "127.0.0.1:8000", value_name = "HOST:PORT")]
        addr: String,
    },
    /// Manage the staff users of the web admin
    #[command(subcommand)]
    User(registry::UserCommand),
    /// Manage the API keys of `load --server`
    #[command(subcommand)]
    Key(registry::KeyCommand),
    /// Manage the schedules that create dumps
    #[command(subcommand)]
    Schedule(schedule::ScheduleCommand),
    /// Re-read stored archives against their checksum, gzip, tar and manifest
    Verify(verify::VerifyArgs),
}

#[derive(Debug, Args)]
pub struct DumpArgs {
    /// Leave the application data out
    #[arg(long)]
    pub no_data: bool,
    /// Leave the storages out
    #[arg(long)]
    pub no_storages: bool,
    /// Ignore the storage exclude patterns
    #[arg(long)]
    pub no_storages_excludes: bool,
    /// Directory to write the archive into (default: [dump] path)
    #[arg(long, value_name = "DIR")]
    pub destination: Option<PathBuf>,
    /// File name pattern, with {features} and {date} (default: [dump] filename);
    /// an earlier archive of that name is replaced, atomically
    #[arg(long, value_name = "PATTERN")]
    pub filename: Option<String>,
    /// Diskette's JSON application definitions (a list of [name, options] pairs),
    /// used instead of [[apps]] for this run
    #[arg(long, value_name = "PATH")]
    pub appconf: Option<PathBuf>,
    /// Storage directory to archive instead of [storages] paths; repeatable
    #[arg(long = "storage", value_name = "PATH")]
    pub storages: Vec<PathBuf>,
    /// Directory the storages are archived relative to, instead of [storages] basepath
    #[arg(long, value_name = "PATH")]
    pub storages_basepath: Option<PathBuf>,
    /// Storage exclude pattern instead of [storages] excludes; repeatable
    #[arg(long = "storages-exclude", value_name = "PATTERN")]
    pub storages_excludes: Vec<String>,
    /// Do not print the archive's checksum
    #[arg(long)]
    pub no_checksum: bool,
    /// Write no archive: print the `manage.py dumpdata` command line of each
    /// definition instead, one per line (fixtures go to the destination)
    #[arg(long, conflicts_with_all = ["check", "save", "no_data"])]
    pub no_archive: bool,
    /// Validate everything and report what would be archived, without writing anything
    #[arg(long)]
    pub check: bool,
    /// Register the archive in the dump registry, under its rules
    #[arg(long, conflicts_with_all = ["check", "destination", "no_storages_excludes"])]
    pub save: bool,
    /// Indent the fixtures by N spaces, as `dumpdata --indent N` (default: [data] indent)
    #[arg(long, value_name = "N")]
    pub indent: Option<usize>,
}

#[derive(Debug, Args)]
pub struct AppsArgs {
    /// Write a definition for each application of the database (natural foreign
    /// keys, every model listed), as Diskette's diskette_apps does
    #[arg(long)]
    pub generate: bool,
    /// With --generate: only this application (its label); repeatable
    #[arg(long = "app", value_name = "NAME", requires = "generate")]
    pub apps: Vec<String>,
    /// With --generate: leave this application out (its label); repeatable, wins over --app
    #[arg(long = "exclude", value_name = "NAME", requires = "generate")]
    pub excludes: Vec<String>,
    /// With --generate: toml for a configuration, json for dump --appconf [default: toml]
    #[arg(long, value_enum, value_name = "FORMAT", requires = "generate")]
    pub format: Option<crate::apps::generate::Format>,
    /// With --generate: write the definitions into this file instead of printing them
    #[arg(long, value_name = "PATH", requires = "generate")]
    pub destination: Option<PathBuf>,
    /// With --destination: replace the file if it exists
    #[arg(long, requires = "destination")]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct LoadArgs {
    /// Archive path or http(s) URL
    #[arg(value_name = "ARCHIVE|URL", required_unless_present = "server")]
    pub source: Option<String>,
    /// Fetch the latest available dump from this Diskette server
    #[arg(
        long,
        value_name = "URL",
        conflicts_with = "source",
        requires = "api_key"
    )]
    pub server: Option<String>,
    /// API key for --server
    #[arg(
        long,
        value_name = "KEY",
        env = "DISKETTE_API_KEY",
        hide_env_values = true
    )]
    pub api_key: Option<String>,
    /// Do not load the data
    #[arg(long)]
    pub no_data: bool,
    /// Do not restore the storages
    #[arg(long)]
    pub no_storages: bool,
    /// Where storages are restored (default: [load] storages_basepath)
    #[arg(long, value_name = "DIR")]
    pub storages_basepath: Option<PathBuf>,
    /// Skip this data file (its name in the archive, e.g. blog.json); repeatable
    #[arg(long, value_name = "FILENAME")]
    pub exclude_data: Vec<String>,
    /// Expected BLAKE2b checksum (128 hex digits), verified before extraction; "no" to skip
    #[arg(long, value_name = "HEX|no")]
    pub checksum: Option<String>,
    /// Keep a downloaded archive instead of deleting it after the load
    #[arg(long)]
    pub keep: bool,
    /// Directory for downloaded archives (default: a temporary directory)
    #[arg(long, value_name = "DIR")]
    pub download_destination: Option<PathBuf>,
    /// Skip fixture fields and models the database does not have, as `loaddata
    /// --ignorenonexistent` (the alias is Diskette's spelling)
    #[arg(long, visible_alias = "ignorenonexistent_data")]
    pub ignorenonexistent: bool,
}

/// Run the parsed command line.
pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Dump(args) => {
            let mut config = Config::discover(cli.config.as_deref())?;
            config.data.indent = args.indent.or(config.data.indent);
            run_dump(&config, args, cli.quiet)
        }
        Command::Load(args) => {
            let mut config = Config::discover(cli.config.as_deref())?;
            config.data.ignore_nonexistent |= args.ignorenonexistent;
            run_load(&config, args, cli.quiet)
        }
        Command::Serve { addr } => {
            let config = Config::discover(cli.config.as_deref())?;
            serve::runtime()?.block_on(serve::serve(config, addr.as_deref()))
        }
        Command::Demo { dir, addr } => serve::runtime()?.block_on(serve::demo(&dir, Some(&addr))),
        Command::User(cmd) => registry::user(&Config::discover(cli.config.as_deref())?, cmd),
        Command::Key(cmd) => registry::key(&Config::discover(cli.config.as_deref())?, cmd),
        Command::Schedule(cmd) => schedule::run(&Config::discover(cli.config.as_deref())?, cmd),
        Command::Verify(args) => {
            verify::run(&Config::discover(cli.config.as_deref())?, args, cli.quiet)
        }
        Command::Apps(args) => {
            let config = Config::discover(cli.config.as_deref())?;
            run_apps(&config, args, cli.quiet)
        }
    }
}

fn run_dump(config: &Config, args: DumpArgs, quiet: bool) -> Result<()> {
    let overrides = crate::overrides::DumpOverrides {
        appconf: args.appconf,
        storages: args.storages,
        storages_basepath: args.storages_basepath,
        storages_excludes: args.storages_excludes,
    };
    let config = &overrides.apply(config, !args.no_storages && !args.no_archive)?;
    if args.no_archive {
        print!(
            "{}",
            crate::apps::dumpdata::script(config, args.destination.as_deref())?
        );
        return Ok(());
    }
    let opts = crate::dump::DumpOptions {
        with_data: !args.no_data,
        with_storages: !args.no_storages,
        storages_excludes: !args.no_storages_excludes,
        // A name given here is a fixed one: it replaces the earlier archive,
        // as Diskette does. The registry's archives keep unique names.
        replace: args.filename.is_some() && !args.save,
        destination: args.destination,
        filename: args.filename,
        strict: false,
        log_checksum: !args.no_checksum,
        job_id: None,
    };
    if args.save {
        return registry::dump_and_save(config, &opts, quiet);
    }
    let console = Console::new(quiet);
    if args.check {
        let report = crate::dump::check(config, &opts, &console)?;
        print!("{report}");
        return Ok(());
    }
    let outcome = crate::dump::dump(config, &opts, &console)?;
    console.finish();
    console_log(
        quiet,
        &format!(
            "Archive written: {} ({}, {} files)",
            outcome.path.display(),
            humansize::format_size(outcome.size, humansize::DECIMAL),
            outcome.files
        ),
    );
    // The checksum alone on stdout, so scripts can capture it.
    if !args.no_checksum {
        println!("{}", outcome.checksum);
    }
    Ok(())
}

fn run_apps(config: &Config, args: AppsArgs, quiet: bool) -> Result<()> {
    if !args.generate {
        print!("{}", crate::apps::describe(config)?);
        return Ok(());
    }
    let format = args.format.unwrap_or(crate::apps::generate::Format::Toml);
    let (text, warnings) =
        crate::apps::generate::generate(config, &args.apps, &args.excludes, format)?;
    for w in warnings {
        eprintln!("warning: {w}");
    }
    match &args.destination {
        None => print!("{text}"),
        Some(path) => {
            write_whole(path, &text, args.force)?;
            console_log(
                quiet,
                &format!("Definitions written into {}", path.display()),
            );
        }
    }
    Ok(())
}

/// Write `text` into a temporary file beside `path`, renamed into place: a
/// reader never sees half a file. An existing file is kept unless `force`.
fn write_whole(path: &std::path::Path, text: &str, force: bool) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;
    let exists = || Error::Usage(format!("{} exists (--force replaces it)", path.display()));
    if !force && path.symlink_metadata().is_ok() {
        return Err(exists());
    }
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => std::path::Path::new("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".diskette-tmp-")
        .permissions(std::fs::Permissions::from_mode(0o644))
        .tempfile_in(dir)
        .map_err(|e| Error::io("create a file in", dir, e))?;
    tmp.write_all(text.as_bytes())
        .and_then(|()| tmp.as_file().sync_all())
        .map_err(|e| Error::io("write", tmp.path(), e))?;
    let placed = if force {
        tmp.persist(path)
    } else {
        tmp.persist_noclobber(path)
    };
    match placed {
        Ok(_) => Ok(()),
        Err(e) if !force && e.error.kind() == std::io::ErrorKind::AlreadyExists => Err(exists()),
        Err(e) => Err(Error::io("write", path, e.error)),
    }
}

fn run_load(config: &Config, args: LoadArgs, quiet: bool) -> Result<()> {
    let checksum = match args.checksum.as_deref() {
        None | Some("no") => None,
        Some(hex) if crate::checksum::is_valid_hex(hex) => Some(hex.to_ascii_lowercase()),
        Some(other) => {
            return Err(Error::Usage(format!(
                "--checksum: {other:?} is not 128 hexadecimal digits (or \"no\")"
            )));
        }
    };
    let opts = crate::load::LoadOptions {
        source: args.source.unwrap_or_default(),
        with_data: !args.no_data,
        with_storages: !args.no_storages,
        storages_basepath: args.storages_basepath,
        exclude_data: args.exclude_data,
        checksum,
        keep: args.keep,
        download_destination: args.download_destination,
    };
    let console = Console::new(quiet);
    let report = match (&args.server, &args.api_key) {
        (Some(server), Some(key)) => server::load_from_server(config, server, key, opts, &console)?,
        _ => crate::load::load(config, &opts, &console)?,
    };
    console.finish();
    console_log(quiet, &report.to_string());
    Ok(())
}

fn console_log(quiet: bool, line: &str) {
    if !quiet {
        eprintln!("{line}");
    }
}

/// Log to stderr; `RUST_LOG` refines it. Colours only on a terminal, and
/// user input in fields and messages is escaped (`logging`).
pub fn init_tracing(quiet: bool) {
    use std::io::IsTerminal;
    // The object store client's retries are its own business: its final
    // error is what the user sees.
    let default = if quiet {
        "warn"
    } else {
        "info,object_store=warn"
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .fmt_fields(logging::EscapedFields::default())
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .with_target(false)
        // A closed stderr must not turn every later log line into a panic.
        .log_internal_errors(false)
        .try_init();
}

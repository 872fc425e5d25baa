//! Configuration: one TOML file, every key overridable from the environment.
//!
//! The file is read once, overrides are applied, then it is deserialized into
//! typed values; a bad key or type gives one line naming the key
//! (`dump.compression_level: invalid type ...`). Relative paths resolve
//! against the directory of the configuration file.

pub mod every;
pub mod filename;
pub mod notify;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::error::{Error, Result};
pub use every::Every;
pub use notify::NotifyConfig;

/// Environment variable naming the configuration file.
pub const CONFIG_ENV: &str = "DISKETTE_CONFIG";
/// Default configuration file name, looked up in the working directory.
pub const DEFAULT_CONFIG_FILE: &str = "diskette.toml";
/// Default archive file name pattern (Diskette's, with a date).
pub const DEFAULT_FILENAME: &str = "diskette{features}_{date}.tar.gz";

const SECTIONS: &[&str] = &[
    "server", "registry", "dump", "storages", "data", "load", "notify",
];

#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was read from (None for a configuration built in code).
    pub source: Option<PathBuf>,
    /// Directory relative paths were resolved against.
    pub base_dir: PathBuf,
    pub server: ServerConfig,
    pub registry: RegistryConfig,
    pub dump: DumpConfig,
    pub storages: StoragesConfig,
    pub data: DataConfig,
    pub apps: Vec<AppConfig>,
    pub load: LoadConfig,
    pub notify: NotifyConfig,
}

/// How datetime columns are stored in the application database.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Datetimes {
    /// Naive text in UTC (Django with `USE_TZ = True`, its default): dumped
    /// with `Z`, aware values loaded converted to UTC.
    #[default]
    Utc,
    /// Naive local text (Django with `USE_TZ = False`): dumped without a zone.
    Naive,
    /// Dumped and loaded as they are.
    Verbatim,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    pub addr: String,
    pub base_url: Option<String>,
    pub secure_cookies: bool,
    /// Idle session lifetime, in minutes.
    pub session_minutes: u64,
    /// Proxies whose `X-Forwarded-For` tells the client's address.
    pub trusted_proxies: TrustedProxies,
}

/// Addresses and networks (`10.0.0.1`, `10.0.0.0/8`, `::1`) of the reverse
/// proxies in front of the server; from anyone else, `X-Forwarded-For` is
/// ignored and the connection's peer is the client.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<ipnet::IpNet>);

impl TrustedProxies {
    pub fn contains(&self, ip: std::net::IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|net| net.contains(&ip))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<'de> Deserialize<'de> for TrustedProxies {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let items = Vec::<String>::deserialize(d)?;
        let nets = items
            .iter()
            .map(|item| {
                let item = item.trim();
                item.parse::<ipnet::IpNet>()
                    .map(|net| net.trunc())
                    .or_else(|_| item.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                    .map_err(|_| {
                        serde::de::Error::custom(format!(
                            "{item:?} is not an IP address or network (10.0.0.1, 10.0.0.0/8, ::1)"
                        ))
                    })
            })
            .collect::<std::result::Result<_, _>>()?;
        Ok(TrustedProxies(nets))
    }
}

/// Longest idle session accepted in `[server] session_minutes`: one year.
const MAX_SESSION_MINUTES: u64 = 366 * 24 * 60;

impl ServerConfig {
    /// How long an idle logged-in session lives (validated at load: 1 minute to a year).
    pub fn session_lifetime(&self) -> time::Duration {
        time::Duration::minutes(self.session_minutes.min(MAX_SESSION_MINUTES) as i64)
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            addr: "127.0.0.1:8000".into(),
            base_url: None,
            secure_cookies: false,
            session_minutes: 8 * 60,
            trusted_proxies: TrustedProxies::default(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct RegistryConfig {
    /// `sqlite://relative.db` or `sqlite:///absolute.db`; default: `diskette-registry.db`
    /// beside the configuration file. Or `postgres://USER@HOST:PORT/DB`.
    pub database_url: Option<String>,
}

/// Where the registry lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistryLocation {
    Sqlite(PathBuf),
    /// A `postgres://` or `postgresql://` URL (it may hold a password: never print it).
    Postgres(String),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DumpConfig {
    pub path: PathBuf,
    pub filename: String,
    /// Octal file mode of written archives, as a string (`"0644"`).
    pub permissions: String,
    pub auto_purge: bool,
    pub concurrency: usize,
    /// Deflate level for compressible content, 0-9.
    pub compression_level: u32,
    /// Deflate level for content that is already compressed (JPEG, MP4, ZIP...), 0-9.
    pub compressed_media_level: u32,
    /// Compression threads; 0: one per core.
    pub threads: usize,
    /// How often available archives are re-verified (`"1d"`, `"12h"`, `"never"`).
    pub verify_every: Every,
    /// The `AWS_*` variables of the environment the configuration was read
    /// with: they configure an `s3://` path.
    #[serde(skip)]
    pub s3_env: crate::store::S3Env,
    /// How long a running job's lease lasts without renewal: past it, another
    /// instance sharing the registry ends the job (its process stopped).
    pub lease_seconds: u64,
}

impl Default for DumpConfig {
    fn default() -> Self {
        Self {
            path: PathBuf::from("dumps"),
            filename: DEFAULT_FILENAME.into(),
            permissions: "0644".into(),
            auto_purge: true,
            concurrency: 1,
            compression_level: 5,
            compressed_media_level: 0,
            threads: 0,
            verify_every: Default::default(),
            s3_env: Default::default(),
            lease_seconds: 60,
        }
    }
}

impl DumpConfig {
    /// `[dump] path` when it names an S3 bucket (`s3://BUCKET/PREFIX`).
    pub fn s3_url(&self) -> Option<&str> {
        self.path.to_str().filter(|p| p.starts_with("s3://"))
    }

    /// Compression threads to use.
    pub fn threads(&self) -> usize {
        match self.threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        }
    }

    pub fn mode(&self) -> Result<u32> {
        let digits = self.permissions.trim_start_matches("0o");
        u32::from_str_radix(digits, 8)
            .ok()
            .filter(|m| *m <= 0o777)
            .ok_or_else(|| {
                Error::Config(format!(
                    "dump.permissions: {:?} is not an octal file mode such as \"0644\"",
                    self.permissions
                ))
            })
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoragesConfig {
    pub basepath: PathBuf,
    pub paths: Vec<PathBuf>,
    pub excludes: Vec<String>,
}

impl Default for StoragesConfig {
    fn default() -> Self {
        Self {
            basepath: PathBuf::from("."),
            paths: Vec::new(),
            excludes: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct DataConfig {
    /// Database the built-in engine dumps from and loads into:
    /// `sqlite://relative.db`, `sqlite:///absolute.db` or
    /// `postgres://USER[:PASSWORD]@HOST:PORT/DB`.
    pub database_url: Option<String>,
    /// Table name → model label, for tables that don't follow `app_model`.
    pub labels: BTreeMap<String, String>,
    /// Timeout of dump and load commands, in seconds.
    pub command_timeout: u64,
    /// How datetime columns are stored: "utc" (Django's default, USE_TZ =
    /// True), "naive" (USE_TZ = False) or "verbatim". On PostgreSQL, "utc"
    /// reads and writes `timestamptz` in UTC; the others in the session's
    /// zone (the server's `TimeZone`, or `options=-c TimeZone=...` in the URL).
    pub datetimes: Datetimes,
    /// Natural keys of models beyond Django's contrib ones: lowercase
    /// `app_label.model` → field names in `natural_key()` order.
    pub natural_keys: BTreeMap<String, Vec<String>>,
    /// Indentation of the fixtures written (`dumpdata --indent`); none: one line.
    pub indent: Option<usize>,
    /// Skip fixture fields and models the database does not have
    /// (`loaddata --ignorenonexistent`).
    pub ignore_nonexistent: bool,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct AppConfig {
    pub name: String,
    pub comments: Option<String>,
    pub models: Vec<String>,
    pub excludes: Vec<String>,
    pub filename: Option<String>,
    pub is_drain: bool,
    pub allow_drain: bool,
    pub drain_excluded: bool,
    pub natural_foreign: bool,
    pub natural_primary: bool,
    /// Diskette's `use_base_manager` (`dumpdata --all`): accepted; raw
    /// tables have no managers, so every row is always dumped.
    pub use_base_manager: bool,
    pub dump_command: Option<Vec<String>>,
    pub load_command: Option<Vec<String>>,
    /// The Django command a Diskette definition names instead of `dumpdata`
    /// (`dump --appconf`), for the command lines of `dump --no-archive`.
    #[serde(skip)]
    pub django_command: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoadConfig {
    pub storages_basepath: PathBuf,
    /// Data files smaller than this (in bytes) are skipped.
    pub min_data_size: u64,
    pub protocols: Vec<String>,
    pub follow_redirects: bool,
    /// Download timeout, in seconds, per connection step (at least 1).
    pub timeout: u64,
    /// Refuse an archive that unpacks to more than this many bytes.
    pub max_unpacked_bytes: u64,
    /// Stop a download at this many bytes (at least 1).
    pub max_download_bytes: u64,
    /// Refuse an archive with more than this many members.
    pub max_entries: u64,
}

impl Default for LoadConfig {
    fn default() -> Self {
        Self {
            storages_basepath: PathBuf::from("."),
            min_data_size: 6,
            protocols: vec!["http://".into(), "https://".into()],
            follow_redirects: false,
            timeout: 300,
            max_unpacked_bytes: 256 * 1024 * 1024 * 1024,
            // An archive is about as large as what it unpacks to at most
            // (media do not compress), so the same bound by default.
            max_download_bytes: 256 * 1024 * 1024 * 1024,
            max_entries: 10_000_000,
        }
    }
}

/// The raw file shape, before paths are resolved.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct RawConfig {
    server: ServerConfig,
    registry: RegistryConfig,
    dump: DumpConfig,
    storages: StoragesConfig,
    data: DataConfig,
    apps: Vec<AppConfig>,
    load: LoadConfig,
    notify: NotifyConfig,
}

impl Config {
    /// Find the file (`--config`, then `DISKETTE_CONFIG`, then `./diskette.toml`) and load it.
    pub fn discover(explicit: Option<&Path>) -> Result<Config> {
        let path = match explicit {
            Some(p) => p.to_path_buf(),
            None => match std::env::var_os(CONFIG_ENV) {
                Some(p) if !p.is_empty() => PathBuf::from(p),
                _ => PathBuf::from(DEFAULT_CONFIG_FILE),
            },
        };
        Config::load(&path, std::env::vars())
    }

    /// Read `path`, apply `DISKETTE_<SECTION>_<KEY>` overrides from `env`, validate.
    pub fn load(path: &Path, env: impl IntoIterator<Item = (String, String)>) -> Result<Config> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::Config(match e.kind() {
                std::io::ErrorKind::NotFound => {
                    format!(
                        "file {} not found (give one with --config or {CONFIG_ENV})",
                        path.display()
                    )
                }
                _ => format!("cannot read {}: {e}", path.display()),
            })
        })?;
        let base_dir = path
            .canonicalize()
            .ok()
            .and_then(|p| p.parent().map(Path::to_path_buf))
            .unwrap_or_else(|| PathBuf::from("."));
        let mut config = Config::from_toml(&text, &base_dir, env).map_err(|e| match e {
            Error::Config(m) => Error::Config(format!("{}: {m}", path.display())),
            other => other,
        })?;
        config.source = Some(path.to_path_buf());
        Ok(config)
    }

    /// Parse configuration text; relative paths resolve against `base_dir`.
    pub fn from_toml(
        text: &str,
        base_dir: &Path,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config> {
        let mut table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
            let line = e
                .span()
                .map(|s| text[..s.start].lines().count().max(1))
                .map(|l| format!(" (line {l})"))
                .unwrap_or_default();
            Error::Config(format!("invalid TOML{line}: {}", e.message()))
        })?;
        let env: Vec<(String, String)> = env.into_iter().collect();
        apply_env_overrides(&mut table, env.iter().cloned())?;
        let raw: RawConfig =
            serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|e| {
                let path = e.path().to_string();
                Error::Config(format!("{path}: {}", e.into_inner()))
            })?;
        let mut config = Config {
            source: None,
            base_dir: base_dir.to_path_buf(),
            server: raw.server,
            registry: raw.registry,
            dump: raw.dump,
            storages: raw.storages,
            data: raw.data,
            apps: raw.apps,
            load: raw.load,
            notify: raw.notify,
        };
        config.dump.s3_env = crate::store::S3Env::capture(env);
        config.resolve_paths();
        config.validate()?;
        Ok(config)
    }

    fn resolve_paths(&mut self) {
        let base = self.base_dir.clone();
        let abs = |p: &Path| {
            if p.is_absolute() {
                p.to_path_buf()
            } else {
                base.join(p)
            }
        };
        // An `s3://` URL is no path.
        if self.dump.s3_url().is_none() {
            self.dump.path = abs(&self.dump.path);
        }
        self.storages.basepath = abs(&self.storages.basepath);
        self.storages.paths = self.storages.paths.iter().map(|p| abs(p)).collect();
        self.load.storages_basepath = abs(&self.load.storages_basepath);
    }

    fn validate(&self) -> Result<()> {
        self.dump.mode()?;
        crate::store::S3Location::from_path(&self.dump.path)?;
        for (key, level) in [
            ("dump.compression_level", self.dump.compression_level),
            (
                "dump.compressed_media_level",
                self.dump.compressed_media_level,
            ),
        ] {
            if level > 9 {
                return Err(Error::Config(format!(
                    "{key}: {level} is not a level from 0 to 9"
                )));
            }
        }
        for (key, value) in [
            ("dump.concurrency", self.dump.concurrency as u64),
            ("server.session_minutes", self.server.session_minutes),
            ("load.timeout", self.load.timeout),
            ("load.max_download_bytes", self.load.max_download_bytes),
        ] {
            if value == 0 {
                return Err(Error::Config(format!("{key}: must be at least 1")));
            }
        }
        // A job renews its lease twice a second: a shorter lease would
        // expire under a live job.
        if self.dump.lease_seconds < 2 {
            return Err(Error::Config(
                "dump.lease_seconds: must be at least 2".into(),
            ));
        }
        if self.server.session_minutes > MAX_SESSION_MINUTES {
            return Err(Error::Config(format!(
                "server.session_minutes: {} is more than a year ({MAX_SESSION_MINUTES})",
                self.server.session_minutes
            )));
        }
        self.notify.validate()?;
        filename::validate_pattern(&self.dump.filename)
            .map_err(|m| Error::Config(format!("dump.filename: {m}")))?;
        for proto in &self.load.protocols {
            if !matches!(proto.as_str(), "http://" | "https://") {
                return Err(Error::Config(format!(
                    "load.protocols: {proto:?} is not supported (only \"http://\" and \"https://\")"
                )));
            }
        }
        if self.data.database_url.is_some() {
            self.data_source()?;
        }
        self.registry_location()?;
        Ok(())
    }

    /// The application database of the built-in engine.
    pub fn data_source(&self) -> Result<DataSource> {
        let url = self.data.database_url.as_deref().ok_or_else(|| {
            Error::Config(
                "data.database_url: not set, but an application uses the built-in SQL engine"
                    .into(),
            )
        })?;
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(DataSource::Postgres(url.to_string()));
        }
        sqlite_path(url, &self.base_dir)
            .map(DataSource::Sqlite)
            .map_err(|_| {
                Error::Config(format!(
                    "data.database_url: {:?} is neither an SQLite URL (sqlite://relative.db, sqlite:///absolute/path.db) nor a PostgreSQL one (postgres://USER@HOST:PORT/DB)",
                    redact_url(url)
                ))
            })
    }

    /// Path of the application database of the built-in engine, when it
    /// is an SQLite file.
    pub fn data_database(&self) -> Result<PathBuf> {
        match self.data_source()? {
            DataSource::Sqlite(path) => Ok(path),
            DataSource::Postgres(url) => Err(Error::Config(format!(
                "data.database_url: {} is a PostgreSQL database, not a file",
                redact_url(&url)
            ))),
        }
    }

    /// The registry database (default: an SQLite file beside the configuration file).
    pub fn registry_location(&self) -> Result<RegistryLocation> {
        match &self.registry.database_url {
            Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                Ok(RegistryLocation::Postgres(url.clone()))
            }
            Some(url) if url.starts_with("sqlite:") => {
                sqlite_path(url, &self.base_dir).map(RegistryLocation::Sqlite)
            }
            // Not echoed: a URL may hold a password.
            Some(_) => Err(Error::Config(
                "registry.database_url: neither an SQLite URL (sqlite://relative.db, \
                 sqlite:///absolute/path.db) nor a PostgreSQL one (postgres://USER@HOST:PORT/DB)"
                    .into(),
            )),
            None => Ok(RegistryLocation::Sqlite(
                self.base_dir.join("diskette-registry.db"),
            )),
        }
    }

    pub fn command_timeout(&self) -> Option<Duration> {
        (self.data.command_timeout > 0).then(|| Duration::from_secs(self.data.command_timeout))
    }
}

/// Where the built-in engine's data lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataSource {
    Sqlite(PathBuf),
    /// A `postgres://` URL, password included.
    Postgres(String),
}

/// A database URL as it may be shown: without its password, nor any query
/// string (which may hold one).
pub fn redact_url(url: &str) -> String {
    let url = url.split('?').next().unwrap_or_default();
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(end);
    match authority.rsplit_once('@') {
        Some((user, host)) => {
            let user = user.split(':').next().unwrap_or_default();
            format!("{scheme}://{user}@{host}{path}")
        }
        None => url.to_string(),
    }
}

/// `sqlite://relative.db` (against `base`) or `sqlite:///absolute.db` → a file path.
pub fn sqlite_path(url: &str, base: &Path) -> Result<PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .ok_or_else(|| {
            Error::Config(format!(
                "database_url: {url:?} is not an SQLite URL (sqlite://relative.db or sqlite:///absolute/path.db)"
            ))
        })?;
    let rest = rest.split('?').next().unwrap_or_default();
    if rest.is_empty() {
        return Err(Error::Config(format!(
            "database_url: {url:?} names no file"
        )));
    }
    let path = PathBuf::from(rest);
    Ok(if path.is_absolute() {
        path
    } else {
        base.join(path)
    })
}

/// `DISKETTE_DUMP_PATH=/x` sets `[dump] path`. Values are read as TOML when they
/// parse as a TOML value (`true`, `6`, `["a", "b"]`), else as a string.
fn apply_env_overrides(
    table: &mut toml::Table,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<()> {
    for (name, value) in env {
        let Some(rest) = name.strip_prefix("DISKETTE_") else {
            continue;
        };
        if name == CONFIG_ENV || rest.starts_with("DEMO_") || rest.starts_with("TEST_") {
            continue;
        }
        let lower = rest.to_ascii_lowercase();
        let Some((section, key)) = SECTIONS.iter().find_map(|s| {
            lower
                .strip_prefix(s)
                .and_then(|k| k.strip_prefix('_'))
                .map(|k| (*s, k.to_string()))
        }) else {
            continue;
        };
        if key.is_empty() {
            continue;
        }
        let parsed = format!("v = {value}")
            .parse::<toml::Table>()
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or(toml::Value::String(value));
        let entry = table
            .entry(section.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        match entry {
            toml::Value::Table(t) => {
                t.insert(key, parsed);
            }
            _ => {
                return Err(Error::Config(format!(
                    "{section}: must be a table (from {name})"
                )));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;

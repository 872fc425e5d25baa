//! `diskette load --server URL --api-key KEY`: download the latest available
//! dump of an option set with the URL loader's client (the same scheme and
//! redirect rules), check the BLAKE2b checksum the server announced, then
//! load the file.

use std::path::{Path, PathBuf};

use crate::Config;
use crate::error::{Error, IoContext, Result};
use crate::fetch::{self, Target};
use crate::load::{LoadOptions, LoadReport};
use crate::progress::Progress;

/// Response header of the server with the checksum (see the download route).
const CHECKSUM_HEADER: &str = "x-diskette-checksum";

/// What the API's refusals mean to the user of `load --server`.
const STATUSES: &[(u16, &str)] = &[
    (401, "the server refused the API key"),
    (404, "the server has no available dump of these options"),
    (
        409,
        "the server's latest dump of these options failed its verification and is not served; a fresh dump is queued",
    ),
];

/// A downloaded archive and the checksum the server announced (and we verified).
pub struct Fetched {
    pub path: PathBuf,
    pub checksum: String,
    /// Keeps a temporary download directory alive.
    _dir: Option<tempfile::TempDir>,
}

/// Download the latest dump of (`with_data`, `with_storages`) into `dir` (a
/// temporary directory if `None`). The file is named by us, never by the
/// server, and never replaces an existing file.
pub fn fetch_latest(
    config: &Config,
    server: &str,
    api_key: &str,
    with_data: bool,
    with_storages: bool,
    dir: Option<&Path>,
    progress: &dyn Progress,
) -> Result<Fetched> {
    let base = server.trim_end_matches('/');
    let url = format!(
        "{base}/api/dumps/latest?data={}&storages={}",
        u8::from(with_data),
        u8::from(with_storages)
    );
    fetch::check_scheme(&config.load, &url)?;
    let (dir, temp) = match dir {
        Some(d) => (d.to_path_buf(), None),
        None => {
            let t = tempfile::tempdir().ctx("create temporary directory", std::env::temp_dir())?;
            (t.path().to_path_buf(), Some(t))
        }
    };
    let authorization = format!("Bearer {api_key}");
    let request = fetch::Request {
        url: &url,
        headers: &[("Authorization", &authorization)],
        capture: &[CHECKSUM_HEADER],
    };
    let name = format!(
        "diskette-latest{}.tar.gz",
        crate::archive::filename::features(with_data, with_storages)
    );
    let target = Target {
        name: &name,
        statuses: STATUSES,
    };
    progress.log(&format!("Downloading the latest dump from {base}"));
    let fetched = fetch::fetch_as(&config.load, &request, &dir, &target, progress)?;
    let announced = fetched
        .headers
        .get(CHECKSUM_HEADER)
        .filter(|c| crate::checksum::is_valid_hex(c))
        .map(|c| c.to_ascii_lowercase());
    let refusal = match announced {
        None => Some(format!("the response has no {CHECKSUM_HEADER} header")),
        Some(expected) if expected != fetched.checksum => Some(format!(
            "checksum mismatch: the server announced {expected}, the file has {}",
            fetched.checksum
        )),
        Some(_) => None,
    };
    if let Some(message) = refusal {
        // The file is ours (a fresh name): an unverified archive must not stay.
        let _ = std::fs::remove_file(&fetched.path);
        return Err(Error::Download(message));
    }
    progress.log(&format!(
        "Downloaded {} (checksum verified)",
        fetched.path.display()
    ));
    Ok(Fetched {
        path: fetched.path,
        checksum: fetched.checksum,
        _dir: temp,
    })
}

/// Download, then load the local file with the checksum the server gave.
pub fn load_from_server(
    config: &Config,
    server: &str,
    api_key: &str,
    mut opts: LoadOptions,
    progress: &dyn Progress,
) -> Result<LoadReport> {
    let keep_dir = if opts.keep {
        opts.download_destination
            .clone()
            .or_else(|| Some(PathBuf::from(".")))
    } else {
        opts.download_destination.clone()
    };
    let fetched = fetch_latest(
        config,
        server,
        api_key,
        opts.with_data,
        opts.with_storages,
        keep_dir.as_deref(),
        progress,
    )?;
    opts.source = fetched.path.display().to_string();
    opts.checksum = Some(fetched.checksum.clone());
    let report = crate::load::load(config, &opts, progress);
    if !opts.keep && keep_dir.is_some() {
        // Only the file this command created, under its own fresh name.
        let _ = std::fs::remove_file(&fetched.path);
    }
    report
}

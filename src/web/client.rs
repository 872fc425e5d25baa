//! Client side of `diskette load --server URL --api-key KEY`: download the
//! latest available dump of an option set to a file, checking its BLAKE2b
//! checksum on the way, then load that file.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::Config;
use crate::error::{Error, IoContext, Result};
use crate::load::{LoadOptions, LoadReport};
use crate::progress::Progress;

/// Response header of the server with the checksum (see the download route).
const CHECKSUM_HEADER: &str = "x-diskette-checksum";

/// A downloaded archive and the checksum the server announced (and we verified).
pub struct Fetched {
    pub path: PathBuf,
    pub checksum: String,
    /// Keeps a temporary download directory alive.
    _dir: Option<tempfile::TempDir>,
}

/// Download the latest dump of (`with_data`, `with_storages`) into `dir` (a
/// temporary directory if `None`).
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
    if !config
        .load
        .protocols
        .iter()
        .any(|p| base.starts_with(p.as_str()))
    {
        return Err(Error::Usage(format!(
            "--server: {server:?} must start with one of {}",
            config.load.protocols.join(", ")
        )));
    }
    let url = format!(
        "{base}/api/dumps/latest?data={}&storages={}",
        u8::from(with_data),
        u8::from(with_storages)
    );
    let agent = ureq::AgentBuilder::new()
        .timeout_connect(Duration::from_secs(30))
        .timeout_read(Duration::from_secs(config.load.timeout.max(1)))
        .redirects(if config.load.follow_redirects { 5 } else { 0 })
        .build();
    progress.log(&format!("Downloading the latest dump from {base}"));
    let response = match agent
        .get(&url)
        .set("Authorization", &format!("Bearer {api_key}"))
        .call()
    {
        Ok(r) => r,
        Err(ureq::Error::Status(401, _)) => {
            return Err(Error::Download(
                "the server refused the API key (401)".into(),
            ));
        }
        Err(ureq::Error::Status(404, _)) => {
            return Err(Error::Download(
                "the server has no available dump of these options (404)".into(),
            ));
        }
        Err(ureq::Error::Status(409, _)) => {
            return Err(Error::Download(
                "the server's latest dump of these options failed its verification and is not served (409); a fresh dump is queued".into(),
            ));
        }
        Err(ureq::Error::Status(code, _)) => {
            return Err(Error::Download(format!("the server answered {code}")));
        }
        Err(e) => return Err(Error::Download(e.to_string())),
    };
    let expected = response
        .header(CHECKSUM_HEADER)
        .filter(|c| crate::checksum::is_valid_hex(c))
        .map(str::to_ascii_lowercase)
        .ok_or_else(|| Error::Download(format!("the response has no {CHECKSUM_HEADER} header")))?;
    let filename = response
        .header("content-disposition")
        .and_then(|d| d.split("filename=\"").nth(1))
        .and_then(|rest| rest.split('"').next())
        .filter(|n| !n.is_empty() && !n.starts_with('.') && !n.contains(['/', '\\']))
        .unwrap_or("diskette-latest.tar.gz")
        .to_string();
    let total: u64 = response
        .header("content-length")
        .and_then(|l| l.parse().ok())
        .unwrap_or(0);
    let (dir, temp) = match dir {
        Some(d) => {
            std::fs::create_dir_all(d).ctx("create directory", d)?;
            (d.to_path_buf(), None)
        }
        None => {
            let t = tempfile::tempdir().ctx("create temporary directory", std::env::temp_dir())?;
            (t.path().to_path_buf(), Some(t))
        }
    };
    let path = dir.join(&filename);
    let mut part = tempfile::Builder::new()
        .prefix(".download-")
        .tempfile_in(&dir)
        .ctx("create file in", &dir)?;
    progress.begin(total, 1);
    let mut reader = response.into_reader();
    let mut state = crate::checksum::new_state();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = reader
            .read(&mut buf)
            .map_err(|e| Error::Download(e.to_string()))?;
        if n == 0 {
            break;
        }
        state.update(&buf[..n]);
        part.write_all(&buf[..n]).ctx("write", part.path())?;
        progress.advance(n as u64, 0);
        if progress.is_cancelled() {
            return Err(Error::Cancelled);
        }
    }
    let actual = crate::checksum::hex(&state);
    if actual != expected {
        return Err(Error::Download(format!(
            "checksum mismatch: the server announced {expected}, the file has {actual}"
        )));
    }
    part.as_file().sync_all().ctx("sync", part.path())?;
    part.persist(&path)
        .map_err(|e| Error::io("rename", &path, e.error))?;
    progress.log(&format!(
        "Downloaded {} (checksum verified)",
        path.display()
    ));
    Ok(Fetched {
        path,
        checksum: expected,
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
        let _ = std::fs::remove_file(&fetched.path);
    }
    report
}

//! Downloading an archive from an `http(s)` URL.
//!
//! The body is streamed to a temporary file in the destination directory,
//! hashed on the way (BLAKE2b, what `b2sum` prints), then renamed into place:
//! a failed download leaves no file behind. Only the schemes of
//! `[load] protocols` are used, for the URL and for every redirect; redirects
//! are refused unless `[load] follow_redirects` is on.
//!
//! The body is checked as it arrives: its first bytes must be a gzip header
//! and its first MiB must decompress to a tar header, else the download is
//! abandoned (an error page or an endless stream never fills the disk). It
//! stops at `[load] max_download_bytes`.

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::checksum::HashingWriter;
use crate::config::LoadConfig;
use crate::error::{Error, IoContext, Result};
use crate::progress::Progress;

const MAX_REDIRECTS: usize = 10;
/// How much of a body may arrive before it must be known to be a tar.gz.
const SNIFF_LIMIT: u64 = 1024 * 1024;
const DEFAULT_NAME: &str = "diskette-download.tar.gz";

/// What to download.
#[derive(Debug, Clone, Copy, Default)]
pub struct Request<'a> {
    pub url: &'a str,
    /// Extra request headers, e.g. `("Authorization", "Bearer KEY")`. They are
    /// sent to the URL's origin only, never to another origin a redirect leads to.
    pub headers: &'a [(&'a str, &'a str)],
    /// Names of response headers to hand back (case-insensitive), e.g. a checksum header.
    pub capture: &'a [&'a str],
}

/// Where a download goes and how its refusals read.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    /// The file name to save under (`-1`, `-2`... added rather than
    /// overwriting an existing file): ours, never the server's.
    pub name: &'a str,
    /// What an error status means for this request, e.g. `(401, "the server
    /// refused the API key")`; other statuses read as the server's answer.
    pub statuses: &'a [(u16, &'a str)],
}

/// A completed download.
#[derive(Debug, Clone)]
pub struct Fetched {
    /// The file, inside the destination directory.
    pub path: PathBuf,
    pub size: u64,
    /// BLAKE2b-512 of the body, lowercase hex.
    pub checksum: String,
    /// The captured response headers present in the final response, by lowercase name.
    pub headers: BTreeMap<String, String>,
    /// The URL the body came from (after redirects).
    pub final_url: String,
}

/// True when `source` looks like a URL (`scheme://...`) rather than a path.
pub fn is_url(source: &str) -> bool {
    scheme_of(source).is_some()
}

/// `http://` for `http://host/x` (lowercased), None for a path.
fn scheme_of(url: &str) -> Option<String> {
    let (scheme, _) = url.split_once("://")?;
    let mut chars = scheme.chars();
    let valid = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    valid.then(|| format!("{}://", scheme.to_ascii_lowercase()))
}

/// Refuse a URL whose scheme `[load] protocols` does not allow.
pub fn check_scheme(config: &LoadConfig, url: &str) -> Result<()> {
    let scheme = scheme_of(url).ok_or_else(|| Error::Download(format!("{url:?} is not a URL")))?;
    if config
        .protocols
        .iter()
        .any(|p| p.eq_ignore_ascii_case(&scheme))
    {
        return Ok(());
    }
    let allowed = config
        .protocols
        .iter()
        .map(|p| format!("{p:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    Err(Error::Download(format!(
        "{url}: the scheme {scheme:?} is not allowed ([load] protocols allows {})",
        if allowed.is_empty() {
            "none".to_string()
        } else {
            allowed
        }
    )))
}

/// Download `request.url` into `dest_dir` (created if missing) and return
/// where it lies. The file is named after the URL's last path segment when
/// that is a plain file name (else `diskette-download.tar.gz`), with `-1`,
/// `-2`... added rather than overwriting an existing file.
pub fn fetch(
    config: &LoadConfig,
    request: &Request<'_>,
    dest_dir: &Path,
    progress: &dyn Progress,
) -> Result<Fetched> {
    let name = file_name_for(request.url);
    let target = Target {
        name: &name,
        statuses: &[],
    };
    fetch_as(config, request, dest_dir, &target, progress)
}

/// `fetch`, saving under `target.name`.
pub fn fetch_as(
    config: &LoadConfig,
    request: &Request<'_>,
    dest_dir: &Path,
    target: &Target<'_>,
    progress: &dyn Progress,
) -> Result<Fetched> {
    check_scheme(config, request.url)?;
    let builder = ureq::AgentBuilder::new()
        .redirects(0)
        .user_agent(&format!("diskette/{}", crate::VERSION));
    // Per connection step, not for the whole transfer: a large archive may
    // take longer than the timeout to download, a stalled server may not. A
    // zero timeout is refused when the configuration is loaded.
    let t = Duration::from_secs(config.timeout);
    let agent = builder
        .timeout_connect(t)
        .timeout_read(t)
        .timeout_write(t)
        .build();

    let (response, url) = follow(&agent, config, request, target, progress)?;

    let mut headers = BTreeMap::new();
    for name in request.capture {
        if let Some(value) = response.header(name) {
            headers.insert(name.to_ascii_lowercase(), value.to_string());
        }
    }
    let expected_len = response
        .header("content-length")
        .and_then(|v| v.trim().parse::<u64>().ok());
    if let Some(len) = expected_len
        && len > config.max_download_bytes
    {
        return Err(too_large(&url, config.max_download_bytes));
    }

    let body = Body {
        url: &url,
        expected_len,
        max: config.max_download_bytes,
    };
    let (path, size, checksum) = save(response, &body, dest_dir, target.name, progress)?;
    Ok(Fetched {
        path,
        size,
        checksum,
        headers,
        final_url: url,
    })
}

/// GET `request.url`, following redirects as `[load]` allows; returns the
/// successful response and the URL it came from.
fn follow(
    agent: &ureq::Agent,
    config: &LoadConfig,
    request: &Request<'_>,
    target: &Target<'_>,
    progress: &dyn Progress,
) -> Result<(ureq::Response, String)> {
    let origin = origin_of(request.url).to_string();
    let mut url = request.url.to_string();
    let mut hops = 0;
    loop {
        let mut req = agent.get(&url);
        if origin_of(&url) == origin {
            for (name, value) in request.headers {
                req = req.set(name, value);
            }
        }
        let response = match req.call() {
            Ok(r) => r,
            Err(ureq::Error::Status(code, r)) => {
                return Err(Error::Download(match explained(target, code) {
                    Some(meaning) => format!("{meaning} ({code})"),
                    None => format!("{url}: the server answered {code} {}", r.status_text()),
                }));
            }
            Err(ureq::Error::Transport(t)) => {
                return Err(Error::Download(format!("{url}: {t}")));
            }
        };
        let status = response.status();
        if (200..300).contains(&status) {
            return Ok((response, url));
        }
        if !(300..400).contains(&status) {
            return Err(Error::Download(format!(
                "{url}: the server answered {status} {}",
                response.status_text()
            )));
        }
        let location = response.header("location").unwrap_or_default().to_string();
        if !config.follow_redirects {
            return Err(Error::Download(format!(
                "{url}: the server answered {status} {}, a redirect to {location:?}; redirects are \
                 not followed (set [load] follow_redirects = true to allow them)",
                response.status_text()
            )));
        }
        if location.is_empty() {
            return Err(Error::Download(format!(
                "{url}: the server answered {status} without a Location header"
            )));
        }
        hops += 1;
        if hops > MAX_REDIRECTS {
            return Err(Error::Download(format!(
                "{}: more than {MAX_REDIRECTS} redirects",
                request.url
            )));
        }
        let next = resolve(&url, &location);
        check_scheme(config, &next)?;
        progress.log(&format!("Redirected ({status}) to {next}"));
        url = next;
    }
}

fn too_large(url: &str, max: u64) -> Error {
    Error::Download(format!(
        "{url}: the archive is larger than [load] max_download_bytes ({max} bytes)"
    ))
}

/// What is known of a response body before it is read.
struct Body<'a> {
    url: &'a str,
    expected_len: Option<u64>,
    max: u64,
}

/// Stream the body into a temporary file in `dest_dir`, hashing it, then
/// rename it to `name` (or `name-1`...), never over an existing file.
fn save(
    response: ureq::Response,
    body: &Body<'_>,
    dest_dir: &Path,
    name: &str,
    progress: &dyn Progress,
) -> Result<(PathBuf, u64, String)> {
    let (url, expected_len) = (body.url, body.expected_len);
    fs::create_dir_all(dest_dir).ctx("create directory", dest_dir)?;
    let mut part = tempfile::Builder::new()
        .prefix(".diskette-download-")
        .suffix(".part")
        .tempfile_in(dest_dir)
        .ctx("create a temporary file in", dest_dir)?;
    let part_path = part.path().to_path_buf();
    progress.begin(expected_len.unwrap_or(0), 1);
    let mut reader = response.into_reader();
    let mut writer = HashingWriter::new(BufWriter::new(part.as_file_mut()));
    let mut buf = vec![0u8; 256 * 1024];
    let mut sniffer = Sniffer::default();
    loop {
        let n = reader
            .read(&mut buf)
            .map_err(|e| Error::Download(format!("{url}: the download broke off: {e}")))?;
        if n == 0 {
            break;
        }
        if writer.written() + n as u64 > body.max {
            return Err(too_large(url, body.max));
        }
        sniffer
            .feed(&buf[..n])
            .map_err(|m| Error::Download(format!("{url}: {m}")))?;
        writer.write_all(&buf[..n]).ctx("write", &part_path)?;
        progress.advance(n as u64, 0);
        if progress.is_cancelled() {
            return Err(Error::Cancelled);
        }
    }
    let (inner, checksum, size) = writer.finish();
    inner
        .into_inner()
        .map_err(|e| Error::io("write", &part_path, e.into_error()))?;
    if let Some(expected) = expected_len
        && expected != size
    {
        return Err(Error::Download(format!(
            "{url}: the download broke off ({size} of {expected} bytes)"
        )));
    }
    sniffer
        .finish()
        .map_err(|m| Error::Download(format!("{url}: {m}")))?;
    part.as_file().sync_all().ctx("write", &part_path)?;
    progress.advance(0, 1);

    let (stem, ext) = split_name(name);
    let mut attempt = 0;
    let path = loop {
        let candidate = if attempt == 0 {
            dest_dir.join(name)
        } else {
            dest_dir.join(format!("{stem}-{attempt}{ext}"))
        };
        match part.persist_noclobber(&candidate) {
            Ok(_) => break candidate,
            Err(e) if e.error.kind() == std::io::ErrorKind::AlreadyExists && attempt < 1000 => {
                part = e.file;
                attempt += 1;
            }
            Err(e) => return Err(Error::io("rename into place", candidate, e.error)),
        }
    };
    Ok((path, size, checksum))
}

/// Checks a body as it arrives: gzip magic in the first bytes, then a tar
/// header (its checksum valid) in the first block it decompresses to, within
/// the first `SNIFF_LIMIT` bytes. Only that much is decompressed.
#[derive(Default)]
struct Sniffer {
    magic: Vec<u8>,
    decoder: Option<flate2::write::GzDecoder<FirstBlock>>,
    fed: u64,
    done: bool,
}

/// Keeps the first tar block a decoder writes, drops the rest.
#[derive(Default)]
struct FirstBlock(Vec<u8>);

impl Write for FirstBlock {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let room = 512usize.saturating_sub(self.0.len());
        self.0.extend_from_slice(&buf[..buf.len().min(room)]);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

const NOT_GZIP: &str = "not a gzip archive";

impl Sniffer {
    fn feed(&mut self, mut bytes: &[u8]) -> std::result::Result<(), String> {
        if self.done {
            return Ok(());
        }
        if self.magic.len() < 3 {
            let take = bytes.len().min(3 - self.magic.len());
            self.magic.extend_from_slice(&bytes[..take]);
            if self.magic[..] != [0x1f, 0x8b, 0x08][..self.magic.len()] {
                return Err(NOT_GZIP.into());
            }
            self.push(&bytes[..take])?;
            bytes = &bytes[take..];
        }
        let room = (SNIFF_LIMIT - self.fed.min(SNIFF_LIMIT)) as usize;
        self.push(&bytes[..bytes.len().min(room)])?;
        self.check(false)
    }

    /// Decompress `bytes`; a decoder past the end of its gzip member takes
    /// no more (what follows is the extractor's to judge).
    fn push(&mut self, mut bytes: &[u8]) -> std::result::Result<(), String> {
        let decoder = self
            .decoder
            .get_or_insert_with(|| flate2::write::GzDecoder::new(FirstBlock::default()));
        self.fed += bytes.len() as u64;
        while !bytes.is_empty() {
            match decoder.write(bytes) {
                Ok(0) => break,
                Ok(n) => bytes = &bytes[n..],
                Err(e) => return Err(format!("{NOT_GZIP}: {e}")),
            }
        }
        Ok(())
    }

    /// The body ended: what was decompressed must have been enough.
    fn finish(&mut self) -> std::result::Result<(), String> {
        if self.done {
            return Ok(());
        }
        if let Some(decoder) = &mut self.decoder {
            decoder
                .try_finish()
                .map_err(|e| format!("{NOT_GZIP}: {e}"))?;
        }
        self.check(true)
    }

    fn check(&mut self, ended: bool) -> std::result::Result<(), String> {
        let block = self.decoder.as_ref().map(|d| &d.get_ref().0[..]);
        match block {
            Some(block) if block.len() == 512 => {
                if !is_tar_header(block) {
                    return Err("not a tar.gz archive (no tar header where it begins)".into());
                }
                self.done = true;
                self.decoder = None;
                Ok(())
            }
            _ if ended && self.magic.len() < 3 => Err(NOT_GZIP.into()),
            _ if ended => Err("not a tar.gz archive (it holds less than one tar block)".into()),
            _ if self.fed >= SNIFF_LIMIT => Err(format!(
                "{NOT_GZIP}: its first MiB decompresses to no tar header"
            )),
            _ => Ok(()),
        }
    }
}

/// A tar header block whose checksum matches its bytes.
fn is_tar_header(block: &[u8]) -> bool {
    let mut header = tar::Header::new_old();
    header.as_mut_bytes().copy_from_slice(block);
    let Ok(claimed) = header.cksum() else {
        return false;
    };
    header.set_cksum();
    header.cksum().is_ok_and(|computed| computed == claimed)
}

fn explained<'a>(target: &Target<'a>, code: u16) -> Option<&'a str> {
    target
        .statuses
        .iter()
        .find(|(c, _)| *c == code)
        .map(|(_, m)| *m)
}

/// `scheme://authority` of a URL.
fn origin_of(url: &str) -> &str {
    let start = url.find("://").map(|i| i + 3).unwrap_or(0);
    let end = url[start..]
        .find(['/', '?', '#'])
        .map(|i| start + i)
        .unwrap_or(url.len());
    &url[..end]
}

/// A Location header resolved against the URL that sent it.
fn resolve(base: &str, location: &str) -> String {
    if scheme_of(location).is_some() {
        return location.to_string();
    }
    let origin = origin_of(base);
    if let Some(rest) = location.strip_prefix("//") {
        let scheme = base.split("://").next().unwrap_or("http");
        return format!("{scheme}://{rest}");
    }
    if location.starts_with('/') {
        return format!("{origin}{location}");
    }
    let path = &base[origin.len()..];
    let path = path.split(['?', '#']).next().unwrap_or_default();
    let dir = path.rfind('/').map(|i| &path[..=i]).unwrap_or("/");
    format!("{origin}{dir}{location}")
}

/// The URL's last path segment when it is a plain, safe file name.
fn file_name_for(url: &str) -> String {
    let origin = origin_of(url);
    let path = url[origin.len()..]
        .split(['?', '#'])
        .next()
        .unwrap_or_default();
    let last = path.rsplit('/').next().unwrap_or_default();
    let safe = !last.is_empty()
        && !last.starts_with('.')
        && last.len() <= 200
        && last
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if safe {
        last.to_string()
    } else {
        DEFAULT_NAME.to_string()
    }
}

/// `("name", ".tar.gz")`: where to insert a `-1` suffix.
fn split_name(name: &str) -> (&str, &str) {
    for ext in [".tar.gz", ".tgz", ".gz"] {
        if let Some(stem) = name.strip_suffix(ext)
            && !stem.is_empty()
        {
            return (stem, &name[stem.len()..]);
        }
    }
    match name.rfind('.') {
        Some(i) if i > 0 => (&name[..i], &name[i..]),
        _ => (name, ""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_paths() {
        assert!(is_url("http://h/x.tar.gz"));
        assert!(is_url("HTTPS://h/x"));
        assert!(is_url("ftp://h/x"));
        assert!(!is_url("/srv/x.tar.gz"));
        assert!(!is_url("dumps/a:b.tar.gz"));
        assert!(!is_url("weird dir://x"));
    }

    #[test]
    fn resolves_locations() {
        let base = "http://h:8/a/b/c.tar.gz?x=1";
        assert_eq!(resolve(base, "https://o/x"), "https://o/x");
        assert_eq!(resolve(base, "//o/x"), "http://o/x");
        assert_eq!(resolve(base, "/x"), "http://h:8/x");
        assert_eq!(resolve(base, "d.tar.gz"), "http://h:8/a/b/d.tar.gz");
        assert_eq!(resolve("http://h", "d"), "http://h/d");
        assert_eq!(origin_of(base), "http://h:8");
    }

    fn sniff(body: &[u8], chunk: usize) -> std::result::Result<(), String> {
        let mut sniffer = Sniffer::default();
        for part in body.chunks(chunk) {
            sniffer.feed(part)?;
        }
        sniffer.finish()
    }

    fn gz(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn tar_gz() -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(2);
        h.set_cksum();
        b.append_data(&mut h, "manifest.json", &b"{}"[..]).unwrap();
        gz(&b.into_inner().unwrap())
    }

    #[test]
    fn sniffs_tar_gz_from_the_first_bytes() {
        let good = tar_gz();
        for chunk in [1, 7, 512, 1 << 20] {
            assert_eq!(sniff(&good, chunk), Ok(()), "chunk {chunk}");
        }
        // Two members, as GNU tar reads them: the first decides.
        let two = [good.clone(), gz(b"more")].concat();
        assert_eq!(sniff(&two, 4096), Ok(()));
        for (bad, what) in [
            (Vec::new(), "empty"),
            (b"<html>".to_vec(), "a page"),
            (vec![0; 4096], "zeros"),
            (gz(&[7u8; 4096]), "gzip, not tar"),
            (gz(&[0u8; 1024]), "an empty tar"),
            (gz(b"tiny"), "under one block"),
            (good[..good.len() / 2].to_vec(), "truncated before a block"),
        ] {
            let err = sniff(&bad, 100).unwrap_err();
            assert!(err.starts_with("not a"), "{what}: {err}");
        }
        // A gzip header that never ends: refused after SNIFF_LIMIT bytes.
        let mut endless = vec![0x1f, 0x8b, 0x08, 0x08, 0, 0, 0, 0, 0, 0xff];
        endless.resize(3 << 20, b'a');
        let mut sniffer = Sniffer::default();
        let mut fed = 0;
        let err = endless
            .chunks(64 * 1024)
            .find_map(|part| {
                fed += part.len() as u64;
                sniffer.feed(part).err()
            })
            .expect("refused");
        assert!(
            fed <= SNIFF_LIMIT && err.starts_with(NOT_GZIP),
            "{fed}: {err}"
        );
    }

    #[test]
    fn names_downloads_safely() {
        assert_eq!(file_name_for("http://h/d/x_1.tar.gz?k=v"), "x_1.tar.gz");
        assert_eq!(file_name_for("http://h/"), DEFAULT_NAME);
        assert_eq!(file_name_for("http://h/..%2Fx"), DEFAULT_NAME);
        assert_eq!(file_name_for("http://h/.hidden"), DEFAULT_NAME);
        assert_eq!(split_name("a.tar.gz"), ("a", ".tar.gz"));
        assert_eq!(split_name("a.bin"), ("a", ".bin"));
        assert_eq!(split_name("a"), ("a", ""));
    }
}

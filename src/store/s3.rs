//! The S3 backend of the archive store, over `object_store`'s client.
//!
//! A dump streams into a multipart upload: the engine writes on its own
//! (blocking) thread into a bounded channel, an upload thread with its own
//! small runtime sends parts of `PART_SIZE`, at most `PARTS_IN_FLIGHT` at a
//! time, so memory stays flat whatever the archive's size. The object appears
//! under its name only when the upload completes; any failure aborts the
//! upload, which leaves nothing behind.

use std::io::{self, Write};
use std::path::Path;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use object_store::aws::{AmazonS3, AmazonS3Builder, AmazonS3ConfigKey};
use object_store::path::Path as ObjectPath;
use object_store::{
    BackoffConfig, ClientConfigKey, ClientOptions, GetOptions, GetRange, GetResult, ObjectStore,
    ObjectStoreExt, PutPayload, RetryConfig, WriteMultipart,
};
use tokio::sync::mpsc;

use super::Stored;
use super::reader::ChannelReader;
use crate::error::{Error, Result};

/// Size of each uploaded part (S3 wants at least 5 MiB but for the last;
/// with at most 10,000 parts this allows archives of 160 GB).
const PART_SIZE: usize = 16 * 1024 * 1024;
/// Parts uploading at once.
const PARTS_IN_FLIGHT: usize = 2;
/// Chunks waiting between the engine and the upload.
const CHANNEL_CHUNKS: usize = 8;
/// How long the start-up check may take.
const CHECK_TIMEOUT: Duration = Duration::from_secs(60);

/// `s3://BUCKET/PREFIX`, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Location {
    pub bucket: String,
    /// Without leading or trailing `/`; may be empty.
    pub prefix: String,
}

impl S3Location {
    /// `Some` when `path` is an `s3://` URL, an error when that URL is bad.
    pub fn from_path(path: &Path) -> Result<Option<S3Location>> {
        match path.to_str() {
            Some(s) if s.starts_with("s3://") => S3Location::parse(s).map(Some),
            _ => Ok(None),
        }
    }

    pub fn parse(url: &str) -> Result<S3Location> {
        let bad = |why: &str| {
            Error::Config(format!(
                "dump.path: {url:?} is not a valid S3 location ({why}); expected s3://BUCKET/PREFIX"
            ))
        };
        let rest = url
            .strip_prefix("s3://")
            .ok_or_else(|| bad("no s3:// scheme"))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(bad("no bucket name"));
        }
        let bucket_ok = (3..=63).contains(&bucket.len())
            && bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
            && !bucket.starts_with(['-', '.'])
            && !bucket.ends_with(['-', '.']);
        if !bucket_ok {
            return Err(bad(
                "a bucket name is 3 to 63 lowercase letters, digits, dots and hyphens",
            ));
        }
        let prefix = prefix.trim_end_matches('/');
        if !prefix.is_empty()
            && prefix.split('/').any(|part| {
                part.is_empty()
                    || part == "."
                    || part == ".."
                    || part.chars().any(|c| c.is_control() || c == '\\')
            })
        {
            return Err(bad("the prefix has an empty, '.' or '..' segment"));
        }
        if url.contains(['?', '#']) {
            return Err(bad("no query or fragment is allowed"));
        }
        Ok(S3Location {
            bucket: bucket.to_string(),
            prefix: prefix.to_string(),
        })
    }

    /// `s3://BUCKET/PREFIX`
    pub fn url(&self) -> String {
        if self.prefix.is_empty() {
            format!("s3://{}", self.bucket)
        } else {
            format!("s3://{}/{}", self.bucket, self.prefix)
        }
    }

    pub fn url_of(&self, name: &str) -> String {
        format!("{}/{name}", self.url())
    }

    /// The object key of the archive `name`.
    fn key(&self, name: &str) -> ObjectPath {
        if self.prefix.is_empty() {
            ObjectPath::from(name)
        } else {
            ObjectPath::from(format!("{}/{name}", self.prefix))
        }
    }
}

/// The `AWS_*` variables (`AWS_ENDPOINT_URL`, `AWS_ACCESS_KEY_ID`,
/// `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, `AWS_ALLOW_HTTP`, ...) of the
/// environment the configuration was read with.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct S3Env(Vec<(String, String)>);

impl S3Env {
    pub fn capture(env: impl IntoIterator<Item = (String, String)>) -> S3Env {
        S3Env(
            env.into_iter()
                .filter(|(k, _)| k.starts_with("AWS_"))
                .collect(),
        )
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }
}

impl std::fmt::Debug for S3Env {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The names only: the values hold the secret key.
        f.debug_list()
            .entries(self.0.iter().map(|(k, _)| k))
            .finish()
    }
}

/// An S3 bucket and prefix holding archives; cheap to clone.
#[derive(Clone)]
pub struct S3Store {
    location: S3Location,
    /// Builds the client of an upload thread (a client belongs to a runtime).
    builder: Arc<AmazonS3Builder>,
    /// The client of the caller's runtime (the server's).
    client: Arc<AmazonS3>,
    /// Kept out of every message.
    secret: Option<String>,
    has_credentials: bool,
}

impl std::fmt::Debug for S3Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the builder: it holds the secret key.
        f.debug_struct("S3Store")
            .field("location", &self.location.url())
            .finish()
    }
}

impl S3Store {
    /// A client configured by the standard variables, as
    /// `AmazonS3Builder::from_env` reads them. Makes no request.
    pub fn from_env(location: S3Location, vars: &S3Env) -> Result<S3Store> {
        let mut env = AmazonS3Builder::new();
        for (name, value) in &vars.0 {
            if let Ok(key) = name.to_ascii_lowercase().parse::<AmazonS3ConfigKey>() {
                env = env.with_config(key, value);
            }
        }
        let allow_http = env
            .get_config_value(&AmazonS3ConfigKey::Client(ClientConfigKey::AllowHttp))
            .is_some_and(|v| v.eq_ignore_ascii_case("true") || v == "1");
        let secret = env
            .get_config_value(&AmazonS3ConfigKey::SecretAccessKey)
            .filter(|s| !s.is_empty());
        let has_credentials = env
            .get_config_value(&AmazonS3ConfigKey::AccessKeyId)
            .is_some()
            || vars.get("AWS_WEB_IDENTITY_TOKEN_FILE").is_some()
            || vars.get("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI").is_some()
            || vars.get("AWS_CONTAINER_CREDENTIALS_FULL_URI").is_some();
        // No overall request timeout: a download of a large archive streams
        // for as long as it takes; a dead server is caught by the connect
        // timeout and the retries.
        let options = ClientOptions::new()
            .with_allow_http(allow_http)
            .with_connect_timeout(Duration::from_secs(10))
            .with_timeout_disabled();
        let retry = RetryConfig {
            backoff: BackoffConfig::default(),
            max_retries: 3,
            retry_timeout: Duration::from_secs(30),
        };
        let builder = env
            .with_bucket_name(&location.bucket)
            .with_client_options(options)
            .with_retry(retry);
        let redact = |e: object_store::Error| redact(&e.to_string(), secret.as_deref());
        let client = builder.clone().build().map_err(|e| {
            Error::Config(format!(
                "dump.path {}: cannot configure the S3 client: {}",
                location.url(),
                redact(e)
            ))
        })?;
        Ok(S3Store {
            location,
            builder: Arc::new(builder),
            client: Arc::new(client),
            secret,
            has_credentials,
        })
    }

    pub fn location(&self) -> &S3Location {
        &self.location
    }

    /// One line for a failed operation on `what`, without the secret key.
    fn error(&self, action: &str, what: &str, e: &object_store::Error) -> Error {
        let line = crate::error::error_line(e);
        Error::Archive(format!(
            "{action} {what}: {}",
            redact(&line, self.secret.as_deref())
        ))
    }

    /// Write and delete a small object: the endpoint answers, the bucket
    /// exists and the credentials may write.
    pub(super) async fn check(&self) -> Result<()> {
        // Without credentials the client would wait on the EC2 metadata
        // service, which only exists on EC2: say what is missing at once.
        if !self.has_credentials {
            return Err(Error::Config(format!(
                "dump.path {}: no credentials for the object store: set AWS_ACCESS_KEY_ID and \
                 AWS_SECRET_ACCESS_KEY (or AWS_WEB_IDENTITY_TOKEN_FILE and AWS_ROLE_ARN)",
                self.location.url()
            )));
        }
        let name = format!(".diskette-check-{}", rand::random::<u64>());
        let key = self.location.key(&name);
        let probe = async {
            self.client
                .put(&key, PutPayload::from_static(b"diskette"))
                .await?;
            self.client.delete(&key).await
        };
        let outcome = tokio::time::timeout(CHECK_TIMEOUT, probe).await;
        let problem = match outcome {
            Ok(Ok(())) => return Ok(()),
            // A PUT finds no object to miss: a 404 is the bucket's.
            Ok(Err(object_store::Error::NotFound { .. })) => {
                format!("the bucket {:?} does not exist", self.location.bucket)
            }
            Ok(Err(e)) => redact(&crate::error::error_line(&e), self.secret.as_deref()),
            Err(_) => format!("no answer within {} s", CHECK_TIMEOUT.as_secs()),
        };
        Err(Error::Config(format!(
            "dump.path {}: the archive store cannot be written: {problem}",
            self.location.url()
        )))
    }

    pub(super) async fn stat(&self, name: &str) -> Result<Option<Stored>> {
        match self.client.head(&self.location.key(name)).await {
            Ok(meta) => Ok(Some(Stored {
                size: meta.size,
                modified: meta.last_modified.into(),
            })),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.error("read", &self.location.url_of(name), &e)),
        }
    }

    pub(super) async fn delete(&self, name: &str) -> Result<()> {
        match self.client.delete(&self.location.key(name)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.error("delete", &self.location.url_of(name), &e)),
        }
    }

    /// The archives directly under the prefix: name, size, modification.
    pub async fn list(&self) -> Result<Vec<(String, Stored)>> {
        let prefix = (!self.location.prefix.is_empty())
            .then(|| ObjectPath::from(self.location.prefix.as_str()));
        let listed = self
            .client
            .list_with_delimiter(prefix.as_ref())
            .await
            .map_err(|e| self.error("list", &self.location.url(), &e))?;
        Ok(listed
            .objects
            .into_iter()
            .filter_map(|o| {
                let name = o.location.filename()?.to_string();
                let stored = Stored {
                    size: o.size,
                    modified: SystemTime::from(o.last_modified),
                };
                Some((name, stored))
            })
            .collect())
    }

    /// The bytes of `name` (all, or `range`), streamed. A missing object is
    /// `Ok(None)`.
    pub async fn get(
        &self,
        name: &str,
        range: Option<std::ops::Range<u64>>,
    ) -> Result<Option<GetResult>> {
        let options = GetOptions {
            range: range.map(GetRange::Bounded),
            ..GetOptions::default()
        };
        match self
            .client
            .get_opts(&self.location.key(name), options)
            .await
        {
            Ok(r) => Ok(Some(r)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.error("read", &self.location.url_of(name), &e)),
        }
    }

    /// A blocking reader of the whole object, fed by a task of the current
    /// runtime through a bounded channel.
    pub(super) async fn reader(&self, name: &str) -> io::Result<Box<dyn io::Read + Send>> {
        let got = self.get(name, None).await.map_err(io::Error::other)?;
        let Some(got) = got else {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("{} is missing", self.location.url_of(name)),
            ));
        };
        Ok(Box::new(ChannelReader::spawn(got.into_stream())))
    }

    /// `name`, or `name_2`, `name_3`... : the first no object has, asked
    /// from a blocking caller (the dump engine) on a thread of its own.
    pub fn free_name_blocking(&self, name: &str) -> Result<String> {
        let stem = name.strip_suffix(".tar.gz").unwrap_or(name);
        let find = || -> Result<String> {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| Error::io("start", "a runtime", e))?;
            runtime.block_on(async {
                let client = AmazonS3Builder::clone(&self.builder)
                    .build()
                    .map_err(|e| Error::Config(redact(&e.to_string(), self.secret.as_deref())))?;
                for n in 1..1000 {
                    let candidate = if n == 1 {
                        name.to_string()
                    } else {
                        format!("{stem}_{n}.tar.gz")
                    };
                    match client.head(&self.location.key(&candidate)).await {
                        Err(object_store::Error::NotFound { .. }) => return Ok(candidate),
                        Ok(_) => continue,
                        Err(e) => {
                            return Err(self.error("read", &self.location.url_of(&candidate), &e));
                        }
                    }
                }
                Err(Error::Usage(format!(
                    "too many archives named like {name} in {}",
                    self.location.url()
                )))
            })
        };
        std::thread::scope(|scope| {
            scope
                .spawn(find)
                .join()
                .unwrap_or_else(|_| Err(Error::Internal("the name lookup panicked".into())))
        })
    }

    /// Start the upload of the archive `name`, replacing any object of that
    /// name when complete. The caller writes the archive into it, then
    /// calls [`Upload::complete`]; dropped before, it aborts.
    pub fn upload(&self, name: &str) -> Result<Upload> {
        let (tx, rx) = mpsc::channel(CHANNEL_CHUNKS);
        let builder = AmazonS3Builder::clone(&self.builder);
        let key = self.location.key(name);
        let secret = self.secret.clone();
        let thread = std::thread::Builder::new()
            .name("diskette-upload".into())
            .spawn(move || run_upload(builder, key, rx, secret.as_deref()))
            .map_err(|e| Error::io("start", "the upload thread", e))?;
        Ok(Upload {
            tx: Some(tx),
            thread: Some(thread),
            failure: None,
            url: self.location.url_of(name),
        })
    }
}

/// `line` with every occurrence of the secret key masked.
fn redact(line: &str, secret: Option<&str>) -> String {
    match secret {
        Some(s) if s.len() >= 4 => line.replace(s, "***"),
        _ => line.to_string(),
    }
}

enum Chunk {
    Data(Bytes),
    /// The archive is whole: complete the upload.
    End,
}

/// A multipart upload being written; a `Write` for the archive engine.
pub struct Upload {
    tx: Option<mpsc::Sender<Chunk>>,
    thread: Option<JoinHandle<std::result::Result<(), String>>>,
    /// Why the upload stopped, once known.
    failure: Option<String>,
    url: String,
}

impl Upload {
    /// Where the object will be.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Wait for the upload thread and keep its error.
    fn join(&mut self) -> std::result::Result<(), String> {
        self.tx = None;
        if let Some(thread) = self.thread.take() {
            let outcome = thread
                .join()
                .unwrap_or_else(|_| Err("the upload thread panicked".into()));
            if let Err(e) = outcome {
                self.failure = Some(e);
            }
        }
        match &self.failure {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }

    fn failed(&mut self) -> io::Error {
        let why = self
            .join()
            .err()
            .unwrap_or_else(|| "the upload stopped".into());
        io::Error::other(format!("upload to {}: {why}", self.url))
    }

    /// Complete the multipart upload: the object appears under its name.
    pub fn complete(&mut self) -> Result<()> {
        let sent = match &self.tx {
            Some(tx) => tx.blocking_send(Chunk::End).is_ok(),
            None => false,
        };
        let outcome = self.join();
        match (sent, outcome) {
            (true, Ok(())) => Ok(()),
            (_, Err(e)) => Err(Error::Archive(format!("upload to {}: {e}", self.url))),
            (false, Ok(())) => Err(Error::Archive(format!(
                "upload to {}: the upload stopped",
                self.url
            ))),
        }
    }
}

impl Write for Upload {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let Some(tx) = &self.tx else {
            return Err(self.failed());
        };
        if tx
            .blocking_send(Chunk::Data(Bytes::copy_from_slice(buf)))
            .is_err()
        {
            return Err(self.failed());
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for Upload {
    /// Not completed: the upload thread aborts the multipart upload, and
    /// this waits for it, so nothing is left once the dump has failed.
    fn drop(&mut self) {
        let _ = self.join();
    }
}

/// The upload thread: its own runtime and client, parts sent as they fill.
fn run_upload(
    builder: AmazonS3Builder,
    key: ObjectPath,
    mut rx: mpsc::Receiver<Chunk>,
    secret: Option<&str>,
) -> std::result::Result<(), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the upload runtime: {e}"))?;
    let line = |e: object_store::Error| redact(&crate::error::error_line(&e), secret);
    runtime.block_on(async move {
        let client = builder.build().map_err(line)?;
        let upload = client.put_multipart(&key).await.map_err(line)?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
        let fed = feed(&mut writer, &mut rx).await;
        // Nothing more is read: a writer still sending learns it at once.
        drop(rx);
        match fed {
            Ok(true) => writer.finish().await.map(|_| ()).map_err(line),
            Ok(false) => {
                let _ = writer.abort().await;
                Err("the archive was not finished".into())
            }
            Err(e) => {
                let _ = writer.abort().await;
                Err(line(e))
            }
        }
    })
}

/// Pass the chunks on until the end (true) or the writer's drop (false).
async fn feed(
    writer: &mut WriteMultipart,
    rx: &mut mpsc::Receiver<Chunk>,
) -> std::result::Result<bool, object_store::Error> {
    while let Some(chunk) = rx.recv().await {
        match chunk {
            Chunk::Data(bytes) => {
                writer.wait_for_capacity(PARTS_IN_FLIGHT).await?;
                writer.put(bytes);
            }
            Chunk::End => return Ok(true),
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_parse_or_say_what_is_wrong() {
        let l = S3Location::parse("s3://my-bucket/some/prefix/").unwrap();
        assert_eq!(l.bucket, "my-bucket");
        assert_eq!(l.prefix, "some/prefix");
        assert_eq!(l.url_of("a.tar.gz"), "s3://my-bucket/some/prefix/a.tar.gz");
        assert_eq!(l.key("a.tar.gz").as_ref(), "some/prefix/a.tar.gz");
        let bare = S3Location::parse("s3://my-bucket").unwrap();
        assert_eq!(bare.prefix, "");
        assert_eq!(bare.key("a.tar.gz").as_ref(), "a.tar.gz");
        for (bad, why) in [
            ("s3://", "no bucket"),
            ("s3:///prefix", "no bucket"),
            ("s3://Bad_Bucket/x", "bucket name"),
            ("s3://bucket/a//b", "segment"),
            ("s3://bucket/a/../b", "segment"),
        ] {
            let e = S3Location::parse(bad).unwrap_err().to_string();
            assert!(e.contains(why) && e.contains("dump.path"), "{bad}: {e}");
        }
        assert_eq!(
            S3Location::from_path(Path::new("/srv/dumps")).unwrap(),
            None
        );
    }

    #[test]
    fn the_secret_is_masked() {
        assert_eq!(
            redact("key wJalrXUtnFEMI was refused", Some("wJalrXUtnFEMI")),
            "key *** was refused"
        );
    }
}

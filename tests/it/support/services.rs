//! The external servers some tests need: a PostgreSQL server and an
//! S3-compatible server, started by `tests/servers/start.sh` (which `.ci/run`
//! calls) and named by `DISKETTE_TEST_POSTGRES_URL` and
//! `DISKETTE_TEST_S3_ENDPOINT`. Each test gets its own database or bucket.
//!
//! Without those variables a test that needs them says so and passes,
//! except under CI (`CI=true`), where a missing server is a failure: CI must
//! run every test.

use std::sync::atomic::{AtomicU32, Ordering};

fn required(var: &str, what: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => Some(v),
        _ if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("{var} is not set: CI must start {what} (tests/servers/start.sh)")
        }
        _ => {
            eprintln!("skipped: {var} is not set (start {what} with tests/servers/start.sh)");
            None
        }
    }
}

/// A name no other test of this run, nor of an earlier run, uses.
fn unique_name(prefix: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{prefix}{}_{n}_{nanos}", std::process::id())
}

/// A fresh, empty PostgreSQL database, dropped when this value is.
pub struct PgDatabase {
    admin_url: String,
    pub name: String,
    /// `postgres://USER@HOST:PORT/NAME`
    pub url: String,
}

/// A new database on the test PostgreSQL server, or `None` when there is
/// no server outside CI.
pub fn postgres_database() -> Option<PgDatabase> {
    let admin_url = required("DISKETTE_TEST_POSTGRES_URL", "PostgreSQL")?;
    let name = unique_name("diskette_t");
    psql(&admin_url, &format!("CREATE DATABASE {name}"));
    let base = admin_url
        .rsplit_once('/')
        .map(|(base, _)| base)
        .expect("a database URL ends with /DATABASE");
    let url = format!("{base}/{name}");
    Some(PgDatabase {
        admin_url,
        name,
        url,
    })
}

impl PgDatabase {
    /// Run SQL with `psql` on this database; returns its unaligned output.
    pub fn psql(&self, sql: &str) -> String {
        psql(&self.url, sql)
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let _ = std::process::Command::new("psql")
            .args([
                "-X",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "-d",
                &self.admin_url,
                "-c",
            ])
            .arg(format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .output();
    }
}

/// `psql -At -c SQL` on `url`; panics with psql's message on failure.
pub fn psql(url: &str, sql: &str) -> String {
    let out = std::process::Command::new("psql")
        .args([
            "-X",
            "-q",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            url,
            "-c",
            sql,
        ])
        .output()
        .expect("run psql (Debian: postgresql-client)");
    assert!(
        out.status.success(),
        "psql failed on {sql:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A fresh bucket on the test S3 server.
pub struct S3Bucket {
    pub endpoint: String,
    pub name: String,
}

/// A new, empty bucket on the test S3 server, or `None` when there is no
/// server outside CI.
pub fn s3_bucket() -> Option<S3Bucket> {
    let endpoint = required("DISKETTE_TEST_S3_ENDPOINT", "an S3-compatible server")?;
    let name = unique_name("diskette-t").replace('_', "-");
    // The test server accepts any credentials; a PUT on the bucket creates it.
    let status = std::process::Command::new("python3")
        .args([
            "-c",
            "import sys, urllib.request as u; \
             r = u.urlopen(u.Request(sys.argv[1], method='PUT')); sys.exit(r.status != 200)",
        ])
        .arg(format!("{endpoint}/{name}"))
        .status()
        .expect("run python3");
    assert!(
        status.success(),
        "cannot create bucket {name} on {endpoint}"
    );
    Some(S3Bucket { endpoint, name })
}

impl S3Bucket {
    /// The environment a Diskette process needs to reach this bucket.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
            ("AWS_ACCESS_KEY_ID", "testing".into()),
            ("AWS_SECRET_ACCESS_KEY", "testing".into()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_ALLOW_HTTP", "true".into()),
        ]
    }
}

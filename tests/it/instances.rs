//! Several `diskette serve` processes on one registry (PostgreSQL when the
//! test server is there, else one SQLite file), one dump directory and the
//! sessions: concurrent dumps through both, a restart of one instance while
//! the other runs a job, and an instance killed in the middle of a job.

use std::path::{Path, PathBuf};
use std::time::Duration;

use diskette::Config;
use diskette::registry::{
    Actor, Dump, DumpFilter, DumpId, DumpStatus, LEASE_EXPIRED, OptionSet, Password, Registry,
};
use reqwest::StatusCode;

use crate::support::process::ServerProcess;
use crate::support::services::{PgDatabase, postgres_database};
use crate::support::web::Web;
use crate::support::{toml_string, write_files};

const USER: &str = "staff";
const PASSWORD: &str = "correct-horse-battery";

/// The registries the process tests run on: an SQLite file, and a fresh
/// PostgreSQL database when there is a test server.
fn registry_urls() -> Vec<(Option<PgDatabase>, String)> {
    let mut all = vec![(None, "sqlite://registry.db".to_string())];
    if let Some(db) = postgres_database() {
        let url = db.url.clone();
        all.push((Some(db), url));
    }
    all
}

/// A site whose data comes from a command that waits while the file `hold`
/// exists, so a test decides when a job ends; leases of two seconds.
fn held_site(dir: &Path, registry: &str) -> PathBuf {
    write_files(
        dir,
        [("media/photos/a.txt", "a\n"), ("media/photos/b.txt", "b\n")],
    );
    let config = format!(
        r#"
[registry]
database_url = {}
[storages]
paths = ["media"]
[dump]
path = "dumps"
lease_seconds = 2
[[apps]]
name = "notes"
dump_command = ["sh", "-c", "while [ -e hold ]; do sleep 0.1; done; echo '[]'"]
"#,
        toml_string(registry)
    );
    crate::support::write_config(dir, &config)
}

async fn open(config: &Path) -> Registry {
    Registry::open(&Config::load(config, Vec::new()).unwrap())
        .await
        .unwrap()
}

/// Wait until `check` holds for the dump (the bound only keeps a bug from
/// hanging the test).
async fn wait_for(registry: &Registry, id: DumpId, check: impl Fn(&Dump) -> bool) -> Dump {
    for _ in 0..1200 {
        let d = registry.dump(id).await.unwrap().unwrap();
        if check(&d) {
            return d;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("dump {id} never reached the expected state");
}

/// The names in `dir`; none while the job has not created it yet.
fn names(dir: &Path) -> Vec<String> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => panic!("read {}: {e}", dir.display()),
    };
    let mut names: Vec<String> = entries
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Wait until the dump directory holds exactly `expected`.
async fn wait_for_files(dir: &Path, expected: &[String]) {
    for _ in 0..400 {
        if names(dir) == expected {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(names(dir), expected);
}

/// Start a held dump and wait until its job has its temporary files.
async fn held_dump(site: &Path, registry: &Registry) -> DumpId {
    std::fs::write(site.join("hold"), "").unwrap();
    let id = registry
        .create_dump(OptionSet::BOTH, Actor::System)
        .await
        .unwrap();
    wait_for(registry, id, |d| d.status == DumpStatus::Pending).await;
    let prefix = format!(".diskette-tmp-{id}-");
    for _ in 0..400 {
        if names(&site.join("dumps"))
            .iter()
            .any(|n| n.starts_with(&prefix))
        {
            return id;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the job of dump {id} never wrote its temporary files");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_the_registry_the_archives_and_the_sessions() {
    let Some(db) = postgres_database() else {
        return;
    };
    let (dir, config_path) = crate::support::app::workspace();
    let text = std::fs::read_to_string(&config_path).unwrap().replace(
        "database_url = \"sqlite://diskette-registry.db\"",
        &format!("database_url = {}", toml_string(&db.url)),
    );
    std::fs::write(&config_path, text).unwrap();
    let registry = open(&config_path).await;
    let password = Password::new(PASSWORD.into()).unwrap();
    registry
        .create_user(&USER.parse().unwrap(), &password, false)
        .await
        .unwrap();
    let (a, b) = tokio::join!(
        ServerProcess::serve(&config_path, ""),
        ServerProcess::serve(&config_path, "")
    );

    // Logged in on one, logged in on both.
    let on_a = a.web();
    on_a.log_in(USER, PASSWORD).await;
    let res = on_a.get(b.url("/dumps")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK, "A's session works on B");
    let res = b.web().get(b.url("/dumps")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER, "B still wants a login");
    let on_b = b.web();
    on_b.log_in(USER, PASSWORD).await;

    // Ten dumps at once, through both, of the three option sets.
    let creations = (0..10).map(|n| {
        let web: Web = if n % 2 == 0 {
            on_a.clone()
        } else {
            on_b.clone()
        };
        let (data, storages) = [(true, true), (true, false), (false, true)][n % 3];
        async move { web.create_dump(data, storages).await }
    });
    let ids = futures_join(creations).await;
    let mut dumps = Vec::new();
    for id in &ids {
        dumps.push(wait_for(&registry, *id, |d| !d.status.in_flight()).await);
    }
    assert!(
        dumps.iter().all(|d| d.status == DumpStatus::Processed),
        "every dump is processed: {dumps:?}"
    );
    // Each job ran once: one start in its logs, one "processed" line across
    // the two servers.
    let logs = format!("{}{}", a.log(), b.log());
    for id in &ids {
        let own = registry.logs(*id).await.unwrap().unwrap();
        assert_eq!(own.matches(&format!("] Dump {id}: ")).count(), 1, "{own}");
        let line = format!("dump processed dump={id} ");
        assert_eq!(logs.matches(&line).count(), 1, "dump {id}: {logs}");
    }
    for set in OptionSet::ALL {
        let of_set: Vec<&Dump> = dumps.iter().filter(|d| d.option_set() == set).collect();
        let newest = of_set.iter().map(|d| d.id).max().unwrap();
        let available = registry.available(set).await.unwrap().unwrap();
        assert_eq!(available.id, newest, "the newest processed one of {set:?}");
        for d in of_set.iter().filter(|d| d.id != newest) {
            let d = registry.dump(d.id).await.unwrap().unwrap();
            assert!(d.deprecated, "{d:?}");
        }
        // The same bytes through either instance.
        let checksum = available.checksum.clone().unwrap();
        for (web, server) in [(&on_a, &a), (&on_b, &b)] {
            let url = server.url(&format!("/dumps/{}/download", available.id));
            let res = web.get(url).send().await.unwrap();
            assert_eq!(res.status(), StatusCode::OK);
            let body = res.bytes().await.unwrap();
            assert_eq!(diskette::checksum::of_reader(&body[..]).unwrap(), checksum);
        }
    }
    let all = registry.list(&DumpFilter::default(), 100, 0).await.unwrap();
    assert_eq!(all.1, 10);
    // Everything of the registry, sessions included, in its own schema of
    // the database; finished jobs hold no lease.
    let tables = db.psql(
        "SELECT string_agg(tablename, ',' ORDER BY tablename) FROM pg_tables \
         WHERE schemaname IN ('public', 'diskette')",
    );
    assert_eq!(
        tables.trim(),
        "_sqlx_migrations,actions,api_keys,dumps,login_throttle,schedule_runs,schedules,\
         server_secrets,session,users,verifications"
    );
    let leases = db.psql("SELECT count(*) FROM diskette.dumps WHERE lease_owner IS NOT NULL");
    assert_eq!(leases.trim(), "0");
    drop(dir);
}

/// `join_all` without another crate: the futures run concurrently.
async fn futures_join<F: std::future::Future<Output = DumpId> + Send + 'static>(
    futures: impl Iterator<Item = F>,
) -> Vec<DumpId> {
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarting_instance_leaves_the_other_instances_job_alone() {
    for (_db, url) in registry_urls() {
        restart_while_the_other_runs(&url).await;
    }
}

async fn restart_while_the_other_runs(url: &str) {
    let dir = crate::support::temp_dir();
    let config_path = held_site(dir.path(), url);
    let registry = open(&config_path).await;
    let running = ServerProcess::serve(&config_path, "").await;
    let id = held_dump(dir.path(), &registry).await;

    // Another instance starts, stops and starts again while the job runs,
    // then lives past the job's lease period (its check runs each second).
    let other = ServerProcess::serve(&config_path, "").await;
    let exit = other.signal("TERM").await;
    assert!(exit.success(), "{exit:?}");
    let other = ServerProcess::serve(&config_path, "").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let d = registry.dump(id).await.unwrap().unwrap();
    assert_eq!(d.status, DumpStatus::Pending, "{:?}", d.error);

    std::fs::remove_file(dir.path().join("hold")).unwrap();
    let d = wait_for(&registry, id, |d| !d.status.in_flight()).await;
    assert_eq!(d.status, DumpStatus::Processed, "{:?}", d.error);
    let failed = DumpFilter {
        status: Some(DumpStatus::Failed),
        ..Default::default()
    };
    assert_eq!(registry.list(&failed, 10, 0).await.unwrap().1, 0);
    wait_for_files(&dir.path().join("dumps"), &[d.filename.clone().unwrap()]).await;
    let archive = dir.path().join("dumps").join(d.filename.unwrap());
    let file = std::fs::File::open(archive).unwrap();
    assert_eq!(
        diskette::checksum::of_reader(file).unwrap(),
        d.checksum.unwrap()
    );
    assert!(!other.log().contains(LEASE_EXPIRED) && !running.log().contains(LEASE_EXPIRED));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_instances_job_is_ended_by_the_survivor() {
    for (_db, url) in registry_urls() {
        kill_one_mid_job(&url).await;
    }
}

async fn kill_one_mid_job(url: &str) {
    let dir = crate::support::temp_dir();
    let config_path = held_site(dir.path(), url);
    let registry = open(&config_path).await;
    let doomed = ServerProcess::serve(&config_path, "").await;
    // A first dump is available.
    let first = registry
        .create_dump(OptionSet::BOTH, Actor::System)
        .await
        .unwrap();
    let first = wait_for(&registry, first, |d| !d.status.in_flight()).await;
    assert_eq!(first.status, DumpStatus::Processed);
    let second = held_dump(dir.path(), &registry).await;
    let survivor = ServerProcess::serve(&config_path, "").await;

    // SIGKILL: no clean-up of its own; its data command dies with its group.
    doomed.signal("KILL").await;
    std::fs::remove_file(dir.path().join("hold")).unwrap();
    let d = wait_for(&registry, second, |d| !d.status.in_flight()).await;
    assert_eq!(d.status, DumpStatus::Failed);
    assert_eq!(d.error.as_deref(), Some(LEASE_EXPIRED));
    let only_first = [first.filename.clone().unwrap()];
    wait_for_files(&dir.path().join("dumps"), &only_first).await;
    let available = registry.available(OptionSet::BOTH).await.unwrap().unwrap();
    assert_eq!(available.id, first.id);

    // The survivor goes on.
    let third = registry
        .create_dump(OptionSet::BOTH, Actor::System)
        .await
        .unwrap();
    let third = wait_for(&registry, third, |d| !d.status.in_flight()).await;
    assert_eq!(third.status, DumpStatus::Processed);
    assert!(
        survivor
            .log()
            .contains("ended the dumps of a stopped instance")
    );
}

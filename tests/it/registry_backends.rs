//! The registry's rules on both backends: every test runs on SQLite and, when
//! the test server is there, on PostgreSQL. Several `Registry` handles on one
//! database stand for several instances (each has its own lease name).

use std::collections::HashSet;
use std::path::Path;

use diskette::Config;
use diskette::registry::{
    Actor, Checksum, DumpFilter, DumpId, DumpStatus, LEASE_EXPIRED, Login, OptionSet, Outcome,
    Password, Registry, ScheduleId,
};

use crate::support::services::{PgDatabase, postgres_database};

/// One registry database, and what keeps it alive.
struct Backend {
    name: &'static str,
    config: Config,
    _dir: tempfile::TempDir,
    _pg: Option<PgDatabase>,
}

impl Backend {
    /// A new handle on the database: another instance.
    async fn open(&self) -> Registry {
        Registry::open(&self.config).await.unwrap()
    }

    fn dump_dir(&self) -> &Path {
        &self.config.dump.path
    }
}

fn backend(name: &'static str, url: Option<&str>, pg: Option<PgDatabase>) -> Backend {
    let dir = crate::support::temp_dir();
    let registry = url
        .map(|u| {
            format!(
                "[registry]\ndatabase_url = {}\n",
                crate::support::toml_string(u)
            )
        })
        .unwrap_or_default();
    let text = format!("{registry}[storages]\npaths = []\n[dump]\npath = \"dumps\"\n");
    let config = Config::from_toml(&text, dir.path(), Vec::new()).unwrap();
    std::fs::create_dir_all(&config.dump.path).unwrap();
    Backend {
        name,
        config,
        _dir: dir,
        _pg: pg,
    }
}

/// SQLite, and PostgreSQL when there is a test server.
fn backends() -> Vec<Backend> {
    let mut all = vec![backend("sqlite", None, None)];
    if let Some(db) = postgres_database() {
        let url = db.url.clone();
        all.push(backend("postgres", Some(&url), Some(db)));
    }
    all
}

fn checksum(n: u8) -> Checksum {
    format!("{n:02x}").repeat(64).parse().unwrap()
}

/// Claim the oldest queued dump and record it processed with a file.
async fn process_next(registry: &Registry, dir: &Path, n: u8) -> DumpId {
    let id = registry.claim_next().await.unwrap().expect("a queued dump");
    let name = format!("archive_{id}.tar.gz");
    std::fs::write(dir.join(&name), [n]).unwrap();
    let sum = checksum(n);
    let outcome = Outcome {
        filename: &name,
        size: 1,
        checksum: &sum,
        bytes: 1,
        files: 1,
        logs: "done\n",
    };
    assert!(registry.mark_processed(id, &outcome).await.unwrap());
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_schema_refuses_what_the_rules_forbid() {
    for b in backends() {
        let r = b.open().await;
        let id = r.create_dump(OptionSet::DATA, Actor::System).await.unwrap();
        let refused = |sql: String| {
            let r = r.clone();
            async move {
                let outcome = r.execute_sql(&sql).await;
                assert!(outcome.is_err(), "{}: {sql} was accepted", b.name);
            }
        };
        let at = "'2025-01-01T00:00:00.000000Z'";
        refused(format!(
            "INSERT INTO dumps (created_at, with_data, with_storages) VALUES ({at}, FALSE, FALSE)"
        ))
        .await;
        refused(format!("UPDATE dumps SET checksum = 'xyz' WHERE id = {id}")).await;
        refused(format!(
            "UPDATE dumps SET created_at = {at} WHERE id = {id}"
        ))
        .await;
        refused(format!(
            "UPDATE dumps SET with_storages = TRUE WHERE id = {id}"
        ))
        .await;
        refused(format!(
            "UPDATE dumps SET status = 'processed' WHERE id = {id}"
        ))
        .await;
        let sql = format!("UPDATE dumps SET status = 'failed' WHERE id = {id}");
        assert_eq!(r.execute_sql(&sql).await.unwrap(), 1, "{}", b.name);
        refused(format!(
            "UPDATE dumps SET status = 'pending' WHERE id = {id}"
        ))
        .await;
        refused(format!(
            "UPDATE dumps SET logs = 'rewritten' WHERE id = {id}"
        ))
        .await;
        let sql = format!("UPDATE dumps SET deprecated = TRUE WHERE id = {id}");
        assert_eq!(r.execute_sql(&sql).await.unwrap(), 1);
        refused(format!(
            "UPDATE dumps SET deprecated = FALSE WHERE id = {id}"
        ))
        .await;

        // One available dump per option set, whatever writes the rows.
        let row = |n: u8| {
            format!(
                "INSERT INTO dumps (created_at, processed_at, status, with_data, with_storages, \
                 filename, size, checksum) VALUES ({at}, {at}, 'processed', FALSE, TRUE, \
                 'f{n}', 1, '{}')",
                checksum(n)
            )
        };
        assert_eq!(r.execute_sql(&row(1)).await.unwrap(), 1);
        refused(row(2)).await;

        let (key, _) = r.create_api_key("ci", Actor::System).await.unwrap();
        assert!(r.deprecate_api_key(key).await.unwrap());
        assert!(!r.deprecate_api_key(key).await.unwrap());
        refused(format!(
            "UPDATE api_keys SET deprecated = FALSE WHERE id = {key}"
        ))
        .await;
    }
}

/// Rules 2 and 5: the newest processed dump is the available one, the
/// others are deprecated and their files purged, whatever the finishing order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_newest_processed_dump_is_available_and_the_others_are_purged() {
    for b in backends() {
        let r = b.open().await;
        for _ in 0..3 {
            r.create_dump(OptionSet::BOTH, Actor::System).await.unwrap();
        }
        let other = b.open().await;
        let (first, second) = (
            process_next(&r, b.dump_dir(), 1).await,
            process_next(&other, b.dump_dir(), 2).await,
        );
        // The third one finishes and supersedes both.
        let third = process_next(&r, b.dump_dir(), 3).await;
        let available = r.available(OptionSet::BOTH).await.unwrap().unwrap();
        assert_eq!(available.id, third, "{}", b.name);
        assert_eq!(available.checksum(), Some(checksum(3)));
        for old in [first, second] {
            let d = r.dump(old).await.unwrap().unwrap();
            assert!(d.deprecated && d.purged_at.is_some(), "{}: {d:?}", b.name);
            assert!(!b.dump_dir().join(format!("archive_{old}.tar.gz")).exists());
        }
        assert!(
            b.dump_dir()
                .join(format!("archive_{third}.tar.gz"))
                .exists()
        );

        let filter = DumpFilter {
            available: Some(false),
            option_set: Some(OptionSet::BOTH),
            status: Some(DumpStatus::Processed),
        };
        let (page, total) = r.list(&filter, 10, 0).await.unwrap();
        assert_eq!(total, 2, "{}", b.name);
        assert_eq!(
            page.iter().map(|d| d.id).collect::<Vec<_>>(),
            [second, first]
        );
        let actions = r.recent_actions(10).await.unwrap();
        assert_eq!(actions.len(), 3, "{}", b.name);
    }
}

/// Two instances claiming at once never take the same dump.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_dump_is_claimed_by_one_instance() {
    for b in backends() {
        let (a, c) = (b.open().await, b.open().await);
        let mut ids = HashSet::new();
        for n in 0..10 {
            let set = OptionSet::ALL[n % 3];
            ids.insert(a.create_dump(set, Actor::System).await.unwrap());
        }
        let claim_all = |r: Registry| async move {
            let mut mine = Vec::new();
            while let Some(id) = r.claim_next().await.unwrap() {
                mine.push(id);
            }
            mine
        };
        let (x, y) = tokio::join!(claim_all(a.clone()), claim_all(c.clone()));
        let claimed: Vec<DumpId> = x.iter().chain(&y).copied().collect();
        assert_eq!(claimed.len(), 10, "{}: {x:?} {y:?}", b.name);
        assert_eq!(claimed.into_iter().collect::<HashSet<_>>(), ids);
    }
}

/// The attempt is counted before the password is checked: concurrent wrong
/// passwords cannot get past the limit, on either backend.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_logins_are_throttled_exactly() {
    for b in backends() {
        let r = b.open().await;
        let name = "alice".parse().unwrap();
        let password = Password::new("correct-horse-battery".into()).unwrap();
        r.create_user(&name, &password, false).await.unwrap();
        let client = "192.0.2.9".parse().unwrap();
        let attempts = (0..8).map(|_| {
            let r = r.clone();
            tokio::spawn(async move { r.login("alice", "wrong".into(), client).await.unwrap() })
        });
        let mut refused = 0;
        for attempt in attempts {
            match attempt.await.unwrap() {
                Login::Refused => refused += 1,
                Login::Throttled => {}
                _ => panic!("{}: an unexpected answer", b.name),
            }
        }
        assert_eq!(refused, 5, "{}: the limit holds", b.name);
        let right = r
            .login("alice", "correct-horse-battery".into(), client)
            .await;
        assert!(matches!(right.unwrap(), Login::Throttled), "{}", b.name);
        r.prune_login_records().await.unwrap();
        let user = r.user("alice").await.unwrap().unwrap();
        let gen_before = user.session_generation;
        r.set_user_flags(Actor::System, user.id, false, true, false)
            .await
            .unwrap();
        let user = r.user_by_id(user.id).await.unwrap().unwrap();
        assert!(!user.is_active);
        assert_eq!(user.session_generation, gen_before + 1, "{}", b.name);
    }
}

/// One dump per due time and one replacement per corrupt dump, however
/// many instances ask at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_agree_on_scheduled_runs_and_replacements() {
    for b in backends() {
        let (a, c) = (b.open().await, b.open().await);
        let schedule: ScheduleId = a
            .insert_schedule("0 3 * * *", OptionSet::DATA, "UTC", true)
            .await
            .unwrap();
        let due = time::macros::datetime!(2030-01-01 03:00 UTC);
        let (x, y) = tokio::join!(
            a.create_scheduled_dump(schedule, OptionSet::DATA, due),
            c.create_scheduled_dump(schedule, OptionSet::DATA, due)
        );
        let made: Vec<DumpId> = [x.unwrap(), y.unwrap()].into_iter().flatten().collect();
        assert_eq!(made.len(), 1, "{}", b.name);
        assert!(a.dump(made[0]).await.unwrap().unwrap().scheduled);
        assert_eq!(a.schedule_runs().await.unwrap().len(), 1);
        a.set_schedule_enabled(schedule, false).await.unwrap();
        a.set_schedule_enabled(schedule, true).await.unwrap();
        let s = a.schedule(schedule).await.unwrap().unwrap();
        assert!(s.enabled && s.active_since > s.created_at, "{}", b.name);

        let (x, y) = tokio::join!(
            a.queue_replacement(OptionSet::STORAGES),
            c.queue_replacement(OptionSet::STORAGES)
        );
        let queued: Vec<DumpId> = [x.unwrap(), y.unwrap()].into_iter().flatten().collect();
        assert_eq!(queued.len(), 1, "{}", b.name);
        assert!(a.dump_in_flight(OptionSet::STORAGES).await.unwrap());
    }
}

/// An instance ends a dump whose lease expired, removes its files, and the
/// job that lost its lease can no longer write; a live lease is left alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_leases_end_their_dump_and_live_ones_stay() {
    for b in backends() {
        let (dead, live, survivor) = (b.open().await, b.open().await, b.open().await);
        let gone = dead
            .create_claimed_dump(OptionSet::DATA, Actor::System)
            .await
            .unwrap();
        let running = live
            .create_claimed_dump(OptionSet::STORAGES, Actor::System)
            .await
            .unwrap();
        let partial = |id: DumpId| {
            b.dump_dir()
                .join(format!(".diskette-tmp-{id}-abcdef.tar.gz"))
        };
        std::fs::write(partial(gone), b"half").unwrap();
        std::fs::write(partial(running), b"half").unwrap();

        let report = survivor.recover().await.unwrap();
        assert_eq!((report.failed, report.temp_files), (0, 0), "{}", b.name);
        // The dead instance's lease runs out.
        let sql = format!(
            "UPDATE dumps SET lease_until = '2020-01-01T00:00:00.000000Z' WHERE id = {gone}"
        );
        assert_eq!(survivor.execute_sql(&sql).await.unwrap(), 1);
        let report = survivor.recover().await.unwrap();
        assert_eq!((report.failed, report.temp_files), (1, 1), "{}", b.name);
        let d = survivor.dump(gone).await.unwrap().unwrap();
        assert_eq!(d.status, DumpStatus::Failed);
        assert_eq!(d.error.as_deref(), Some(LEASE_EXPIRED));
        assert!(!partial(gone).exists() && partial(running).exists());
        // A running dump without a lease (left by an older version) counts
        // as expired.
        let old = dead
            .create_claimed_dump(OptionSet::BOTH, Actor::System)
            .await
            .unwrap();
        let sql =
            format!("UPDATE dumps SET lease_owner = NULL, lease_until = NULL WHERE id = {old}");
        assert_eq!(survivor.execute_sql(&sql).await.unwrap(), 1);
        assert_eq!(survivor.recover().await.unwrap().failed, 1, "{}", b.name);
        let d = survivor.dump(old).await.unwrap().unwrap();
        assert_eq!(d.status, DumpStatus::Failed);
        // A job that lost its lease learns it at its next write, and stops.
        assert!(!dead.record_progress(gone, 1, 1, "late\n").await.unwrap());
        assert!(live.record_progress(running, 1, 1, "on\n").await.unwrap());
        // Only the owner renews a lease.
        assert!(!survivor.record_progress(running, 2, 2, "").await.unwrap());
        assert_eq!(
            survivor.dump(running).await.unwrap().unwrap().status,
            DumpStatus::Pending,
            "{}",
            b.name
        );
    }
}

/// A registry that cannot be reached: one line naming the server and the
/// cause, never the password of the URL.
#[test]
fn an_unreachable_registry_is_named_without_its_password() {
    let dir = crate::support::temp_dir();
    let config = crate::support::write_config(
        dir.path(),
        "[registry]\ndatabase_url = \"postgres://app:S3cret-pw@127.0.0.1:1/reg?sslmode=disable\"\n\
         [storages]\npaths = []\n",
    );
    let run = crate::support::run(
        crate::support::diskette(&config, &["user", "list"]),
        std::time::Duration::from_secs(60),
    );
    assert!(!run.success());
    assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
    assert!(
        run.stderr.contains("postgres://app:***@127.0.0.1:1/reg") && !run.stderr.contains("S3cret"),
        "{}",
        run.stderr
    );
    let bad =
        "[registry]\ndatabase_url = \"mysql://app:S3cret-pw@h/reg\"\n[storages]\npaths = []\n";
    let config = crate::support::write_config(dir.path(), bad);
    let run = crate::support::run(
        crate::support::diskette(&config, &["user", "list"]),
        std::time::Duration::from_secs(60),
    );
    assert!(!run.success() && run.stderr.contains("registry.database_url"));
    assert!(!run.stderr.contains("S3cret"), "{}", run.stderr);
}

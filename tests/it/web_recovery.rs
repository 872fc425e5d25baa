//! Crash safety and the command line around the registry: a registry left by
//! a dead process, graceful shutdown of `diskette serve` on SIGTERM,
//! `dump --save` and `user add --password-stdin`.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::support::app::*;
use crate::support::process::ServerProcess;
use diskette::registry::{Actor, DumpId, DumpStatus, OptionSet, Registry};
use reqwest::StatusCode;

fn diskette(config: &std::path::Path) -> Command {
    crate::support::diskette(config, &[])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_up_recovers_what_a_dead_process_left() {
    let (dir, config_path) = workspace();
    let config = load_config(&config_path, &[]);
    let dumps = config.dump.path.clone();
    let (created, pending, live, stale);
    {
        let registry = Registry::open(&config).await.unwrap();
        // A dump the dead process had not started, one it was writing (its
        // lease ran out), one another live process is writing (its lease
        // runs), and a deprecated one whose purge it did not finish.
        created = registry
            .create_dump(OptionSet::DATA, Actor::System)
            .await
            .unwrap();
        pending = registry
            .create_claimed_dump(OptionSet::BOTH, Actor::System)
            .await
            .unwrap();
        live = registry
            .create_claimed_dump(OptionSet::STORAGES, Actor::System)
            .await
            .unwrap();
        sqlx::query("UPDATE dumps SET lease_until = '2020-01-01T00:00:00.000000Z' WHERE id = ?")
            .bind(pending.get())
            .execute(registry.pool())
            .await
            .unwrap();
        std::fs::write(dumps.join("old.tar.gz"), b"old archive").unwrap();
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO dumps (created_at, processed_at, status, with_data, with_storages, deprecated, \
             filename, size, checksum) VALUES ('2020-01-01T00:00:00Z', '2020-01-01T00:00:00Z', 'processed', \
             0, 1, 1, 'old.tar.gz', 11, ?) RETURNING id",
        )
        .bind("c".repeat(128))
        .fetch_one(registry.pool())
        .await
        .unwrap();
        stale = id;
        registry.pool().close().await;
    }
    // The half-written archive and staging directory of the dead job, the
    // partial archive of the live one, one of a `diskette dump` writing now
    // (no dump id), and a file that is none of ours.
    let partial = |id: DumpId, rest: &str| format!(".diskette-tmp-{id}-{rest}");
    std::fs::write(
        dumps.join(partial(pending, "a1b2c3.tar.gz")),
        vec![0u8; 4096],
    )
    .unwrap();
    let staging = dumps.join(partial(pending, "x9")).join("data");
    std::fs::create_dir_all(&staging).unwrap();
    std::fs::write(staging.join("blog.json"), b"[]").unwrap();
    let live_partial = partial(live, "d4e5f6.tar.gz");
    std::fs::write(dumps.join(&live_partial), vec![0u8; 4096]).unwrap();
    let unowned = ".diskette-tmp-Q7r8S9.tar.gz".to_string();
    std::fs::write(dumps.join(&unowned), vec![0u8; 4096]).unwrap();
    std::fs::write(dumps.join("README.txt"), b"keep me").unwrap();
    // The finished archive of the pending dump, renamed into place just before
    // the crash but never recorded; and a file of the same shape that is not.
    let orphan = format!("diskette_data_storages_2026-01-02T030405_{pending}.tar.gz");
    std::fs::write(dumps.join(&orphan), b"finished, never recorded").unwrap();
    let unrelated = format!("diskette_data_2026-01-02T030405_{pending}.tar.gz");
    std::fs::write(dumps.join(&unrelated), b"another option set").unwrap();

    let app = spawn_on(dir, &config_path, Setup::default()).await;
    let d = app.dump(pending).await;
    assert_eq!(d.status, DumpStatus::Failed);
    assert!(d.error.as_deref().unwrap().contains("interrupted"));
    assert!(
        app.registry
            .logs(pending)
            .await
            .unwrap()
            .unwrap()
            .contains("interrupted")
    );
    // The queued dump was held by no process: the worker takes it.
    assert_eq!(app.wait_finished(created).await, DumpStatus::Processed);
    assert!(app.archive_path(&app.dump(created).await).is_file());
    let old = app.dump(stale.into()).await;
    assert!(old.purged_at.is_some(), "the pending purge finished");
    // The live process's dump is its own business.
    assert_eq!(app.dump(live).await.status, DumpStatus::Pending);
    let created_file = app.dump(created).await.filename.unwrap();
    let mut kept = vec![
        "README.txt".to_string(),
        created_file,
        unrelated,
        live_partial,
        unowned,
    ];
    kept.sort();
    assert_eq!(
        app.dump_dir_entries(),
        kept,
        "orphans removed, the rest kept"
    );

    // The service works on: a new dump of the interrupted set is processed.
    let client = app.login(STAFF).await;
    let id = client.create_dump(true, true).await;
    assert_eq!(app.wait_finished(id).await, DumpStatus::Processed);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_stops_cleanly_on_sigterm() {
    let (_dir, config_path) = workspace();
    let server = ServerProcess::serve(&config_path, "").await;
    let res = reqwest::get(server.url("/healthz")).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let exit = server.signal("TERM").await;
    assert!(exit.success(), "graceful exit, got {exit:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_a_dump_leaves_a_consistent_registry() {
    let (_dir, config_path) = workspace();
    let config = load_config(&config_path, &[]);
    // Many files, so the job is still running when the signal comes (the
    // engine checks for cancellation between files).
    let many = config.storages.basepath.join("media/many");
    std::fs::create_dir_all(&many).unwrap();
    let mut state = 0x9E37_79B9_7F4A_7C15_u64;
    for i in 0..240 {
        // xorshift: incompressible bytes, cheap to make in a debug build.
        let bytes: Vec<u8> = (0..128 * 1024 / 8)
            .flat_map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state.to_le_bytes()
            })
            .collect();
        std::fs::write(many.join(format!("{i}.bin")), bytes).unwrap();
    }
    let server = ServerProcess::serve(&config_path, "").await;
    let registry = Registry::open(&config).await.unwrap();
    // Recorded by this process: the server's worker finds it by polling.
    let id = registry
        .create_dump(OptionSet::STORAGES, Actor::System)
        .await
        .unwrap();
    let mut running = false;
    for _ in 0..2400 {
        let d = registry.dump(id).await.unwrap().unwrap();
        if d.status == DumpStatus::Pending && d.progress_files > 0 {
            running = true;
            break;
        }
        if !d.status.in_flight() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    let exit = server.signal("TERM").await;
    assert!(exit.success(), "graceful exit, got {exit:?}");

    let d = registry.dump(id).await.unwrap().unwrap();
    let leftovers: Vec<String> = std::fs::read_dir(&config.dump.path)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    if running {
        assert_eq!(d.status, DumpStatus::Failed, "stopped by the signal");
        assert!(d.error.unwrap().contains("interrupted"));
        assert!(leftovers.is_empty(), "no partial file: {leftovers:?}");
    } else {
        // The machine was faster than the polling: still a consistent end.
        eprintln!("note: the dump finished before the signal was sent");
        assert_eq!(d.status, DumpStatus::Processed);
        assert_eq!(leftovers, vec![d.filename.unwrap()]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_dump_save_follows_the_registry_rules() {
    let app = spawn_app().await;
    let client = app.login(STAFF).await;
    let web = client.create_dump(true, false).await;
    app.wait_finished(web).await;
    let config_path = app.config.source.clone().unwrap();
    let output = tokio::task::spawn_blocking(move || {
        diskette(&config_path)
            .args(["dump", "--save", "--no-storages"])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let printed = String::from_utf8(output.stdout).unwrap().trim().to_string();
    let (dumps, _) = app.registry.list(&Default::default(), 10, 0).await.unwrap();
    let saved = &dumps[0];
    assert_ne!(saved.id, web);
    assert_eq!(
        saved.checksum.as_deref(),
        Some(printed.as_str()),
        "the checksum is printed"
    );
    assert!(saved.is_available() && saved.created_by.is_none());
    assert!(app.archive_path(saved).is_file());
    let old = app.dump(web).await;
    assert!(
        old.deprecated && old.purged_at.is_some(),
        "the web dump was replaced and purged"
    );
    // The web admin shows it as any other.
    let html = client.page(&format!("/dumps/{}", saved.id)).await;
    assert_eq!(text_of_id(&html, "checksum").unwrap(), printed);
    assert!(html.contains("command line"));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_manages_users() {
    let app = spawn_app().await;
    let config_path = app.config.source.clone().unwrap();
    let run = |args: &'static [&'static str], stdin: &'static str| {
        let config_path = config_path.clone();
        tokio::task::spawn_blocking(move || {
            let mut child = diskette(&config_path)
                .args(args)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            child
                .stdin
                .take()
                .unwrap()
                .write_all(stdin.as_bytes())
                .unwrap();
            child.wait_with_output().unwrap()
        })
    };
    let out = run(
        &["user", "add", "dana", "--superuser", "--password-stdin"],
        "dana's password\n",
    )
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dana = app.registry.user("dana").await.unwrap().unwrap();
    assert!(dana.is_superuser && dana.is_staff && dana.is_active);
    let client = app.client();
    assert_eq!(
        client
            .login_response("dana", "dana's password")
            .await
            .status(),
        StatusCode::SEE_OTHER
    );

    let out = run(
        &["user", "add", "dana", "--password-stdin"],
        "another one\n",
    )
    .await
    .unwrap();
    assert!(!out.status.success(), "duplicate user refused");
    assert!(String::from_utf8_lossy(&out.stderr).contains("already exists"));
    let out = run(&["user", "add", "shorty", "--password-stdin"], "short\n")
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "a short password is the operator's choice"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("warning: this password is short"));
    let out = run(&["user", "add", "blank", "--password-stdin"], "\n")
        .await
        .unwrap();
    assert!(!out.status.success(), "an empty password is refused");

    let out = run(
        &["user", "passwd", "dana", "--password-stdin"],
        "a new password\n",
    )
    .await
    .unwrap();
    assert!(out.status.success());
    assert_eq!(
        app.client()
            .login_response("dana", "a new password")
            .await
            .status(),
        StatusCode::SEE_OTHER
    );

    let out = run(&["user", "list"], "").await.unwrap();
    let list = String::from_utf8(out.stdout).unwrap();
    assert!(list.contains("dana\tstaff,superuser"), "{list}");

    let out = run(&["user", "deactivate", "dana"], "").await.unwrap();
    assert!(out.status.success());
    let res = client.get(app.url("/dumps")).send().await.unwrap();
    assert_eq!(
        res.status(),
        StatusCode::SEE_OTHER,
        "deactivated while logged in: the session is over"
    );

    let out = run(&["key", "add", "ci"], "").await.unwrap();
    let key = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(key.starts_with("dsk_"));
    assert!(app.registry.authenticate_key(&key).await.unwrap().is_some());
    app.stop().await;
}

/// `diskette demo`, the README's one command: a workspace, an admin with the
/// given password, a server that makes dumps; a second run reuses it all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_starts_the_product() {
    let dir = tempfile::tempdir().unwrap();
    let workspace = dir.path().join("demo");
    let start = |password: Option<&'static str>| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_diskette"));
        cmd.args(["demo", "--addr", "127.0.0.1:0", "--dir"])
            .arg(&workspace);
        cmd.env_remove("DISKETTE_DEMO_PASSWORD")
            .env_remove("DISKETTE_CONFIG");
        if let Some(p) = password {
            cmd.env("DISKETTE_DEMO_PASSWORD", p);
        }
        ServerProcess::start(cmd)
    };
    let server = start(Some("demo password 1")).await;
    let said = &server.said;
    assert!(
        said.contains("Demo workspace created") && said.contains("Password: demo password 1"),
        "{said}"
    );
    assert!(
        said.contains(&format!("Open {}", server.base)),
        "the address is printed: {said}"
    );
    let web = server.web();
    web.log_in("admin", "demo password 1").await;
    let page = web.page("/dumps/new").await;
    assert!(
        page.contains("<code>blog</code>") && page.contains("<code>media</code>"),
        "{page}"
    );
    let res = web
        .post_form(
            "/dumps/new",
            "/dumps",
            &[("with_data", "1"), ("with_storages", "1")],
        )
        .await;
    let id = dump_id_of(&res);
    let mut status = String::new();
    for _ in 0..1200 {
        let html = web.page(&format!("/dumps/{id}")).await;
        status = text_of_id(&html, "status").unwrap();
        if status != "created" && status != "pending" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(status, "processed");
    assert!(server.signal("TERM").await.success());

    // Again: the same workspace and registry, the password kept.
    let server = start(None).await;
    let said = &server.said;
    assert!(
        said.contains("Using the demo workspace") && said.contains("password unchanged"),
        "{said}"
    );
    let web = server.web();
    let res = web.login_response("admin", "demo password 1").await;
    let next = res.headers()["location"].to_str().unwrap().to_string();
    let list = web.page(&next).await;
    assert!(
        list.contains(&format!("href=\"/dumps/{id}\"")),
        "the first run's dump is listed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replacement_queued_by_verify_without_a_server_runs_at_the_next_start() {
    let (dir, config_path) = workspace();
    let run = |args: &'static [&'static str]| {
        let config_path = config_path.clone();
        tokio::task::spawn_blocking(move || diskette(&config_path).args(args).output().unwrap())
    };
    let saved = run(&["dump", "--save", "--no-storages"]).await.unwrap();
    assert!(
        saved.status.success(),
        "{}",
        String::from_utf8_lossy(&saved.stderr)
    );
    let config = load_config(&config_path, &[]);
    let archive = {
        let registry = Registry::open(&config).await.unwrap();
        let (dumps, _) = registry.list(&Default::default(), 10, 0).await.unwrap();
        let name = dumps[0].filename.clone().unwrap();
        registry.pool().close().await;
        config.dump.path.join(name)
    };
    let mut bytes = std::fs::read(&archive).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&archive, bytes).unwrap();
    let out = run(&["verify"]).await.unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("replaced by the new dump"));

    let app = spawn_on(dir, &config_path, Setup::default()).await;
    let (dumps, _) = app.registry.list(&Default::default(), 10, 0).await.unwrap();
    assert_eq!(dumps.len(), 2, "the corrupt dump and its replacement");
    let fresh = dumps.iter().map(|d| d.id).max().unwrap();
    assert_eq!(app.wait_finished(fresh).await, DumpStatus::Processed);
    let fresh = app.dump(fresh).await;
    assert!(fresh.with_data && !fresh.with_storages);
    app.stop().await;
}

//! The registry's rules (DESIGN §3), through the web admin of a real server
//! and, where a rule is about what SQL allows, straight in the database.

use crate::support::app::*;
use diskette::registry::Outcome;
use diskette::registry::{Actor, Checksum, DumpStatus, OptionSet};
use reqwest::StatusCode;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule1_an_archive_never_holds_neither() {
    let app = spawn_app().await;
    let client = app.login(STAFF).await;
    let res = client.post_form("/dumps/new", "/dumps", &[]).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert!(res.text().await.unwrap().contains("cannot hold neither"));
    let (_, total) = app.registry.list(&Default::default(), 10, 0).await.unwrap();
    assert_eq!(total, 0, "no record for a refused form");
    // The schema refuses it too.
    let direct =
        sqlx::query("INSERT INTO dumps (created_at, with_data, with_storages) VALUES ('x', 0, 0)")
            .execute(app.registry.pool())
            .await;
    assert!(direct.is_err());
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule2_and_5_the_new_dump_replaces_the_old_one_whose_file_is_purged() {
    let app = spawn_app().await;
    let client = app.login(STAFF).await;
    let first = client.create_dump(true, true).await;
    assert_eq!(app.wait_finished(first).await, DumpStatus::Processed);
    let first_dump = app.dump(first).await;
    assert!(first_dump.is_available());
    let first_file = app.archive_path(&first_dump);
    assert!(first_file.is_file());
    // Another option set is independent.
    let data_only = client.create_dump(true, false).await;
    assert_eq!(app.wait_finished(data_only).await, DumpStatus::Processed);

    let second = client.create_dump(true, true).await;
    assert_eq!(app.wait_finished(second).await, DumpStatus::Processed);
    let (old, new) = (app.wait_purged(first).await, app.dump(second).await);
    assert!(old.deprecated && !old.is_available());
    assert!(
        old.purged_at.is_some(),
        "purged when the new one was processed"
    );
    assert!(!first_file.exists(), "the old file is deleted");
    assert_eq!(
        old.checksum, first_dump.checksum,
        "the record keeps its history"
    );
    assert!(new.is_available());
    assert!(app.archive_path(&new).is_file());
    assert!(
        app.dump(data_only).await.is_available(),
        "other option sets are untouched"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule2_a_failed_dump_leaves_the_previous_one_available() {
    let (archiver, fail) = failing_switch();
    let app = spawn_app_with(Setup {
        archiver,
        ..Setup::default()
    })
    .await;
    let client = app.login(STAFF).await;
    let good = client.create_dump(false, true).await;
    assert_eq!(app.wait_finished(good).await, DumpStatus::Processed);
    fail.store(true, std::sync::atomic::Ordering::SeqCst);
    let bad = client.create_dump(false, true).await;
    assert_eq!(app.wait_finished(bad).await, DumpStatus::Failed);
    // Rule 7: the failure is recorded, with its logs, and leaves no file.
    let failed = app.dump(bad).await;
    assert!(
        failed
            .error
            .as_deref()
            .unwrap()
            .contains("injected failure")
    );
    assert!(failed.filename.is_none());
    let logs = client
        .get(app.url(&format!("/dumps/{bad}/logs")))
        .send()
        .await
        .unwrap();
    assert_eq!(logs.status(), StatusCode::OK);
    assert!(logs.text().await.unwrap().contains("injected failure"));
    let download = client
        .get(app.url(&format!("/dumps/{bad}/download")))
        .send()
        .await
        .unwrap();
    assert_eq!(download.status(), StatusCode::NOT_FOUND);
    // The previous dump is still the available one, and downloadable.
    assert!(app.dump(good).await.is_available());
    let res = client
        .get(app.url(&format!("/dumps/{good}/download")))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        app.dump_dir_entries().len(),
        1,
        "{:?}",
        app.dump_dir_entries()
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule2_the_newer_dump_wins_whatever_order_they_finish_in() {
    let app = spawn_app().await;
    let registry = &app.registry;
    // Both claimed by "workers" of this test, not the server's.
    let older = registry
        .create_claimed_dump(OptionSet::DATA, Actor::System)
        .await
        .unwrap();
    let newer = registry
        .create_claimed_dump(OptionSet::DATA, Actor::System)
        .await
        .unwrap();
    let checksum: Checksum = "ab".repeat(64).parse().unwrap();
    for (id, name) in [(newer, "newer.tar.gz"), (older, "older.tar.gz")] {
        std::fs::write(app.dump_dir().join(name), b"archive").unwrap();
        let outcome = Outcome {
            filename: name,
            size: 7,
            checksum: &checksum,
            bytes: 7,
            files: 1,
            logs: "",
        };
        assert!(registry.mark_processed(id, &outcome).await.unwrap());
    }
    let (o, n) = (app.dump(older).await, app.dump(newer).await);
    assert!(n.is_available(), "the newer dump stays available");
    assert!(
        o.deprecated && o.status == DumpStatus::Processed,
        "the older one is deprecated at once"
    );
    assert!(o.purged_at.is_some() && !app.dump_dir().join("older.tar.gz").exists());
    assert!(app.dump_dir().join("newer.tar.gz").exists());
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule2_concurrent_creation_of_one_set_ends_with_exactly_one_available() {
    let app = spawn_app_with(Setup {
        env: vec![("DISKETTE_DUMP_CONCURRENCY".into(), "3".into())],
        ..Setup::default()
    })
    .await;
    let client = app.login(STAFF).await;
    let token = client.csrf("/dumps/new").await;
    let mut requests = Vec::new();
    for _ in 0..12 {
        let (client, url, token) = (client.clone(), app.url("/dumps"), token.clone());
        requests.push(tokio::spawn(async move {
            let form = [
                ("csrf_token", token.as_str()),
                ("with_data", "1"),
                ("with_storages", "1"),
            ];
            client.post(url).form(&form).send().await.unwrap()
        }));
    }
    let mut ids = Vec::new();
    for r in requests {
        let res = r.await.unwrap();
        assert_eq!(res.status(), StatusCode::SEE_OTHER);
        ids.push(dump_id_of(&res));
    }
    for &id in &ids {
        assert_eq!(app.wait_finished(id).await, DumpStatus::Processed);
    }
    let mut available = Vec::new();
    for &id in &ids {
        let d = app.dump(id).await;
        if d.is_available() {
            available.push(d);
        } else {
            let d = app.wait_purged(id).await;
            assert!(d.deprecated && d.purged_at.is_some(), "dump {id}");
        }
    }
    assert_eq!(available.len(), 1, "exactly one available");
    assert_eq!(
        available[0].id,
        *ids.iter().max().unwrap(),
        "the newest one"
    );
    assert_eq!(
        app.dump_dir_entries(),
        vec![available[0].filename.clone().unwrap()]
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule3_deprecation_is_irreversible_from_every_path() {
    let app = spawn_app().await;
    let client = app.login(STAFF).await;
    let id = client.create_dump(true, false).await;
    app.wait_finished(id).await;
    let detail = format!("/dumps/{id}");
    let res = client
        .post_form(&detail, &format!("/dumps/{id}/deprecate"), &[])
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let dump = app.dump(id).await;
    assert!(
        dump.deprecated && dump.purged_at.is_some(),
        "manual deprecation purges too"
    );
    assert!(!app.archive_path(&dump).exists());
    // Deprecating again changes nothing and keeps it deprecated.
    let res = client
        .post_form(&detail, &format!("/dumps/{id}/deprecate"), &[])
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert!(app.dump(id).await.deprecated);
    // Direct SQL is refused by a trigger.
    let undo = sqlx::query("UPDATE dumps SET deprecated = 0 WHERE id = ?")
        .bind(id.get())
        .execute(app.registry.pool())
        .await;
    assert!(
        undo.unwrap_err()
            .to_string()
            .contains("cannot be un-deprecated")
    );
    // The detail page offers no deprecation any more, and no download.
    let html = client.page(&detail).await;
    assert!(!html.contains("/deprecate\""));
    assert!(!html.contains("/download\""));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule3_bulk_deprecate_and_superuser_delete() {
    let app = spawn_app().await;
    let staff = app.login(STAFF).await;
    let a = staff.create_dump(true, false).await;
    let b = staff.create_dump(false, true).await;
    app.wait_finished(a).await;
    app.wait_finished(b).await;
    let (a_s, b_s) = (a.to_string(), b.to_string());
    let res = staff
        .post_form(
            "/dumps",
            "/dumps/bulk",
            &[("action", "deprecate"), ("ids", &a_s), ("ids", &b_s)],
        )
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert!(app.dump(a).await.deprecated && app.dump(b).await.deprecated);
    // Hard delete needs a superuser.
    let res = staff
        .post_form(
            "/dumps",
            "/dumps/bulk",
            &[("action", "delete"), ("ids", &a_s)],
        )
        .await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert!(app.registry.dump(a).await.unwrap().is_some());
    let admin = app.login(ADMIN).await;
    let res = admin
        .post_form(
            "/dumps",
            "/dumps/bulk",
            &[("action", "delete"), ("ids", &a_s)],
        )
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert!(
        app.registry.dump(a).await.unwrap().is_none(),
        "record removed"
    );
    let page = admin
        .get(app.url(&format!("/dumps/{a}")))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::NOT_FOUND);
    // The history remembers.
    let actions = admin.page("/actions").await;
    for verb in ["created", "deprecated", "deleted"] {
        assert!(actions.contains(verb), "{verb}");
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule4_a_finished_dump_cannot_change() {
    let app = spawn_app().await;
    let client = app.login(STAFF).await;
    let id = client.create_dump(true, true).await;
    app.wait_finished(id).await;
    for update in [
        "UPDATE dumps SET with_data = 0 WHERE id = ?",
        "UPDATE dumps SET checksum = lower(hex(randomblob(64))) WHERE id = ?",
        "UPDATE dumps SET size = 1 WHERE id = ?",
        "UPDATE dumps SET filename = 'other.tar.gz' WHERE id = ?",
        "UPDATE dumps SET status = 'failed' WHERE id = ?",
        "UPDATE dumps SET logs = 'rewritten' WHERE id = ?",
        "UPDATE dumps SET created_at = 'x' WHERE id = ?",
    ] {
        let r = sqlx::query(update)
            .bind(id.get())
            .execute(app.registry.pool())
            .await;
        assert!(r.is_err(), "{update} was accepted");
    }
    // Two available dumps of one set cannot exist, whatever writes them.
    let second = sqlx::query(
        "INSERT INTO dumps (created_at, processed_at, status, with_data, with_storages, filename, size, checksum) \
         VALUES ('x', 'x', 'processed', 1, 1, 'x.tar.gz', 1, ?)",
    )
    .bind("0".repeat(128))
    .execute(app.registry.pool())
    .await;
    assert!(second.is_err());
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule5_without_auto_purge_files_stay() {
    let app = spawn_app_with(Setup {
        env: vec![("DISKETTE_DUMP_AUTO_PURGE".into(), "false".into())],
        ..Setup::default()
    })
    .await;
    let client = app.login(STAFF).await;
    let first = client.create_dump(true, false).await;
    app.wait_finished(first).await;
    let second = client.create_dump(true, false).await;
    app.wait_finished(second).await;
    let old = app.dump(first).await;
    assert!(old.deprecated && old.purged_at.is_none());
    assert!(app.archive_path(&old).is_file());
    // Still not downloadable (rule 6).
    let res = client
        .get(app.url(&format!("/dumps/{first}/download")))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dump_list_filters_and_pages() {
    let app = spawn_app().await;
    let client = app.login(STAFF).await;
    let mut last = None;
    for i in 0..27 {
        let id = client.create_dump(i % 3 != 1, i % 3 != 0).await;
        last = Some(id);
    }
    app.wait_finished(last.unwrap()).await;
    for id in 1..=27i64 {
        app.wait_finished(id.into()).await;
    }
    let page1 = client.page("/dumps").await;
    let doc = scraper::Html::parse_document(&page1);
    let rows = scraper::Selector::parse("table.dumps tbody tr").unwrap();
    assert_eq!(doc.select(&rows).count(), 25, "25 per page");
    let first_link = scraper::Selector::parse("table.dumps tbody tr td a").unwrap();
    let newest = doc
        .select(&first_link)
        .next()
        .unwrap()
        .text()
        .collect::<String>();
    assert_eq!(newest, "27", "newest first");
    let page2 = client.page("/dumps?page=2").await;
    assert_eq!(
        scraper::Html::parse_document(&page2).select(&rows).count(),
        2
    );
    let available = client.page("/dumps?available=yes").await;
    assert_eq!(
        scraper::Html::parse_document(&available)
            .select(&rows)
            .count(),
        3,
        "one per option set"
    );
    let data_only = client.page("/dumps?options=data&status=processed").await;
    assert_eq!(
        scraper::Html::parse_document(&data_only)
            .select(&rows)
            .count(),
        9
    );
    app.stop().await;
}

/// The worker's step function, driven by the test without a server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_run_once_moves_a_dump_through_its_states() {
    use std::sync::Arc;

    use diskette::registry::Registry;
    use diskette::worker::Worker;
    use tokio_util::sync::CancellationToken;

    let (_dir, config_path) = workspace();
    let config = load_config(&config_path, &[]);
    let registry = Registry::open(&config).await.unwrap();
    let token = CancellationToken::new();
    let engine = diskette::worker::engine();
    let worker = Worker::new(
        registry.clone(),
        Arc::new(config.clone()),
        engine.clone(),
        token,
    );
    assert_eq!(worker.run_once().await.unwrap(), None, "nothing to do");

    let id = registry
        .create_dump(OptionSet::BOTH, Actor::System)
        .await
        .unwrap();
    assert_eq!(
        registry.dump(id).await.unwrap().unwrap().status,
        DumpStatus::Created
    );
    assert_eq!(worker.run_once().await.unwrap(), Some(id));
    let dump = registry.dump(id).await.unwrap().unwrap();
    assert_eq!(dump.status, DumpStatus::Processed);
    assert!(
        dump.progress_files > 0 && dump.progress_bytes > 0,
        "progress recorded"
    );
    assert!(
        registry
            .logs(id)
            .await
            .unwrap()
            .unwrap()
            .contains("Checksum")
    );
    assert_eq!(worker.run_once().await.unwrap(), None);

    // A job that sees the shutdown token stops and is recorded as interrupted,
    // leaving the available dump and no temporary file.
    let cancelled = CancellationToken::new();
    cancelled.cancel();
    let stopping = Worker::new(
        registry.clone(),
        Arc::new(config.clone()),
        engine,
        cancelled,
    );
    let next = registry
        .create_dump(OptionSet::BOTH, Actor::System)
        .await
        .unwrap();
    assert_eq!(stopping.run_once().await.unwrap(), Some(next));
    let stopped = registry.dump(next).await.unwrap().unwrap();
    assert_eq!(stopped.status, DumpStatus::Failed);
    assert!(stopped.error.unwrap().contains("interrupted"));
    assert!(registry.dump(id).await.unwrap().unwrap().is_available());
    let names: Vec<String> = std::fs::read_dir(&config.dump.path)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, vec![dump.filename.unwrap()]);
}

/// A panic inside the engine fails that dump only; the service goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_engine_panic_fails_the_dump_not_the_service() {
    let archiver: diskette::worker::Archiver = std::sync::Arc::new(|_, opts, _| {
        if opts.with_data {
            panic!("engine bug");
        }
        Err(diskette::Error::Data("storages are not wanted here".into()))
    });
    let app = spawn_app_with(Setup {
        archiver,
        ..Setup::default()
    })
    .await;
    let client = app.login(STAFF).await;
    let id = client.create_dump(true, false).await;
    assert_eq!(app.wait_finished(id).await, DumpStatus::Failed);
    assert!(
        app.dump(id)
            .await
            .error
            .unwrap()
            .contains("stopped unexpectedly")
    );
    let next = client.create_dump(false, true).await;
    assert_eq!(app.wait_finished(next).await, DumpStatus::Failed);
    let res = client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    app.stop().await;
}

//! Downloads: headers, HEAD, ranges, conditional requests, a purge during a
//! download, and the API-key flow of `diskette load --server`.

use crate::support::app::*;
use diskette::registry::DumpStatus;
use rand::RngCore;
use reqwest::StatusCode;
use reqwest::header::{
    ACCEPT_ENCODING, ACCEPT_RANGES, CONTENT_DISPOSITION, CONTENT_ENCODING, CONTENT_LENGTH,
    CONTENT_RANGE, CONTENT_TYPE, ETAG, IF_NONE_MATCH, RANGE,
};

/// Incompressible media so the archive is a few MiB and streams in many chunks.
fn add_big_media(app: &TestApp) {
    let mut bytes = vec![0u8; 6 * 1024 * 1024];
    rand::thread_rng().fill_bytes(&mut bytes);
    let dir = app.config.storages.basepath.join("media/videos");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("clip.bin"), bytes).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn download_headers_head_ranges_and_conditionals() {
    let app = spawn_app().await;
    add_big_media(&app);
    let client = app.login(STAFF).await;
    let id = client.create_dump(true, true).await;
    assert_eq!(app.wait_finished(id).await, DumpStatus::Processed);
    let dump = app.dump(id).await;
    let (size, checksum) = (dump.size.unwrap() as u64, dump.checksum.clone().unwrap());
    let url = app.url(&format!("/dumps/{id}/download"));

    let res = client
        .get(&url)
        .header(ACCEPT_ENCODING, "gzip, br")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let h = res.headers().clone();
    assert_eq!(h[CONTENT_TYPE], "application/gzip");
    assert_eq!(
        h[CONTENT_DISPOSITION].to_str().unwrap(),
        format!(
            "attachment; filename=\"{}\"",
            dump.filename.as_deref().unwrap()
        )
    );
    assert!(
        h.get(CONTENT_ENCODING).is_none(),
        "a browser must not unpack it"
    );
    assert_eq!(h[CONTENT_LENGTH].to_str().unwrap(), size.to_string());
    assert_eq!(h[ETAG].to_str().unwrap(), format!("\"{checksum}\""));
    assert_eq!(h[ACCEPT_RANGES], "bytes");
    assert_eq!(h["x-diskette-checksum"].to_str().unwrap(), checksum);
    let body = res.bytes().await.unwrap();
    assert_eq!(body.len() as u64, size);
    assert_eq!(
        b2sum(&body),
        checksum,
        "the bytes match the displayed checksum"
    );
    // The detail page shows exactly that checksum and status.
    let html = client.page(&format!("/dumps/{id}")).await;
    assert_eq!(text_of_id(&html, "checksum").unwrap(), checksum);
    assert_eq!(text_of_id(&html, "status").unwrap(), "processed");
    assert!(html.contains(&format!("href=\"/dumps/{id}/download\"")));
    // The JSON the page polls while a dump runs.
    let status = client
        .get(app.url(&format!("/dumps/{id}/status")))
        .send()
        .await
        .unwrap();
    assert_eq!(status.headers()[CONTENT_TYPE], "application/json");
    let status: serde_json::Value = serde_json::from_slice(&status.bytes().await.unwrap()).unwrap();
    assert_eq!(status["status"], "processed");
    assert_eq!(status["running"], false);
    assert_eq!(status["available"], true);

    let res = client.head(&url).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        res.headers()[CONTENT_LENGTH].to_str().unwrap(),
        size.to_string()
    );
    assert_eq!(res.headers()[CONTENT_TYPE], "application/gzip");
    assert!(res.bytes().await.unwrap().is_empty());

    let res = client
        .get(&url)
        .header(RANGE, "bytes=100-199")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        res.headers()[CONTENT_RANGE].to_str().unwrap(),
        format!("bytes 100-199/{size}")
    );
    assert_eq!(res.headers()[CONTENT_LENGTH], "100");
    assert_eq!(&res.bytes().await.unwrap()[..], &body[100..200]);
    // Resume from the middle to the end.
    let half = size / 2;
    let res = client
        .get(&url)
        .header(RANGE, format!("bytes={half}-"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(&res.bytes().await.unwrap()[..], &body[half as usize..]);

    for bad in [
        format!("bytes={size}-"),
        format!("bytes={}-{}", size + 10, size + 20),
    ] {
        let res = client.get(&url).header(RANGE, &bad).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::RANGE_NOT_SATISFIABLE, "{bad}");
    }
    let res = client
        .get(&url)
        .header(IF_NONE_MATCH, format!("\"{checksum}\""))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_MODIFIED);

    // Only whole downloads count in the history: one GET above started at 0.
    let actions = app.registry.recent_actions(50).await.unwrap();
    assert_eq!(actions.iter().filter(|a| a.verb == "downloaded").count(), 1);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purge_does_not_break_a_download_in_progress() {
    let app = spawn_app().await;
    add_big_media(&app);
    let client = app.login(STAFF).await;
    let id = client.create_dump(false, true).await;
    app.wait_finished(id).await;
    let dump = app.dump(id).await;
    let path = app.archive_path(&dump);

    let mut res = client
        .get(app.url(&format!("/dumps/{id}/download")))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let mut received = res.chunk().await.unwrap().expect("a first chunk").to_vec();
    assert!(
        (received.len() as i64) < dump.size.unwrap(),
        "the download is still in progress"
    );

    // A newer dump of the set deprecates this one and deletes its file.
    let newer = client.create_dump(false, true).await;
    app.wait_finished(newer).await;
    app.wait_purged(id).await;
    assert!(!path.exists(), "purged while being downloaded");
    let again = client
        .get(app.url(&format!("/dumps/{id}/download")))
        .send()
        .await
        .unwrap();
    assert_eq!(
        again.status(),
        StatusCode::NOT_FOUND,
        "new requests get 404"
    );

    while let Some(chunk) = res.chunk().await.unwrap() {
        received.extend_from_slice(&chunk);
    }
    assert_eq!(received.len() as i64, dump.size.unwrap());
    assert_eq!(
        b2sum(&received),
        dump.checksum.unwrap(),
        "the download finished intact"
    );
    app.stop().await;
}

/// Only an answer carrying the archive counts as an API download.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_answers_without_the_archive_leave_no_history() {
    let app = spawn_app().await;
    let admin = app.login(ADMIN).await;
    let key = create_key(&admin, "ci").await;
    let id = admin.create_dump(true, false).await;
    assert_eq!(app.wait_finished(id).await, DumpStatus::Processed);
    let dump = app.dump(id).await;
    let (size, etag) = (
        dump.size.unwrap(),
        format!("\"{}\"", dump.checksum.unwrap()),
    );
    let latest = app.url("/api/dumps/latest?data=1&storages=0");
    let api = app.client();
    let downloads = || async {
        let actions = app.registry.recent_actions(50).await.unwrap();
        actions.iter().filter(|a| a.verb == "downloaded").count()
    };
    let head = api.head(&latest).bearer_auth(&key).send().await.unwrap();
    assert_eq!(head.status(), StatusCode::OK);
    let cached = api
        .get(&latest)
        .bearer_auth(&key)
        .header(IF_NONE_MATCH, &etag);
    assert_eq!(
        cached.send().await.unwrap().status(),
        StatusCode::NOT_MODIFIED
    );
    let beyond = api
        .get(&latest)
        .bearer_auth(&key)
        .header(RANGE, format!("bytes={size}-"));
    let res = beyond.send().await.unwrap();
    assert_eq!(res.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(downloads().await, 0);
    let res = api.get(&latest).bearer_auth(&key).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(downloads().await, 1);
    app.stop().await;
}

async fn create_key(admin: &Web, name: &str) -> String {
    let res = admin
        .post_form("/api-keys", "/api-keys", &[("name", name)])
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let html = res.text().await.unwrap();
    text_of_id(&html, "new-key").expect("the new key is shown once")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_keys_give_the_latest_dump_and_can_be_deprecated() {
    let app = spawn_app().await;
    let admin = app.login(ADMIN).await;
    let key = create_key(&admin, "staging").await;
    // Stored hashed; the list shows only a prefix.
    let stored: Vec<(String,)> = sqlx::query_as("SELECT key_hash FROM api_keys")
        .fetch_all(app.registry.pool())
        .await
        .unwrap();
    assert_eq!(stored.len(), 1);
    assert_ne!(stored[0].0, key);
    assert!(!stored[0].0.contains(&key[4..20]));
    let list = admin.page("/api-keys").await;
    assert!(!list.contains(&key) && list.contains(&key[..12]));

    let latest = app.url("/api/dumps/latest?data=1&storages=1");
    let anonymous = app.client();
    let res = anonymous
        .get(&latest)
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND, "nothing available yet");

    let first = admin.create_dump(true, true).await;
    app.wait_finished(first).await;
    let second = admin.create_dump(true, true).await;
    app.wait_finished(second).await;
    let dump = app.dump(second).await;

    let res = anonymous
        .get(&latest)
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let checksum = res.headers()["x-diskette-checksum"]
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(
        checksum,
        dump.checksum.clone().unwrap(),
        "the latest available dump"
    );
    assert_eq!(res.headers()[CONTENT_TYPE], "application/gzip");
    assert_eq!(b2sum(&res.bytes().await.unwrap()), checksum);

    for (query, status) in [
        ("data=1&storages=0", StatusCode::NOT_FOUND),
        ("data=0&storages=0", StatusCode::BAD_REQUEST),
        ("data=maybe&storages=1", StatusCode::BAD_REQUEST),
    ] {
        let res = anonymous
            .get(app.url(&format!("/api/dumps/latest?{query}")))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), status, "{query}");
    }
    for bad in [
        None,
        Some("dsk_0000"),
        Some(""),
        Some(&key[..key.len() - 1]),
    ] {
        let mut req = anonymous.get(&latest);
        if let Some(b) = bad {
            req = req.bearer_auth(b);
        }
        let res = req.send().await.unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{bad:?}");
        assert_eq!(res.headers()["www-authenticate"], "Bearer");
    }
    // A session is no substitute for a key.
    assert_eq!(
        admin.get(&latest).send().await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );

    let key_id = app.registry.api_keys().await.unwrap()[0].id;
    let res = admin
        .post_form("/api-keys", &format!("/api-keys/{key_id}/deprecate"), &[])
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let res = anonymous
        .get(&latest)
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        StatusCode::UNAUTHORIZED,
        "a deprecated key is refused"
    );
    let undo = sqlx::query("UPDATE api_keys SET deprecated = 0")
        .execute(app.registry.pool())
        .await;
    assert!(undo.is_err(), "key deprecation is final too");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_from_the_server_end_to_end() {
    let app = spawn_app().await;
    let admin = app.login(ADMIN).await;
    let key = create_key(&admin, "other machine").await;
    let id = admin.create_dump(true, true).await;
    app.wait_finished(id).await;
    let expected = app.dump(id).await.checksum.unwrap();

    // The download half, as a library call: the file and its verified checksum.
    let (config, base, k) = (app.config.clone(), app.base.clone(), key.clone());
    let into = app.dir.path().join("downloads");
    let fetched = tokio::task::spawn_blocking(move || {
        diskette::cli::server::fetch_latest(
            &config,
            &base,
            &k,
            true,
            true,
            Some(&into),
            &diskette::progress::Silent,
        )
    })
    .await
    .unwrap()
    .expect("downloaded");
    assert_eq!(fetched.checksum, expected);
    let bytes = std::fs::read(&fetched.path).unwrap();
    assert_eq!(b2sum(&bytes), expected);
    // A deprecated or bad key fails cleanly.
    let (config, base) = (app.config.clone(), app.base.clone());
    let refused = tokio::task::spawn_blocking(move || {
        diskette::cli::server::fetch_latest(
            &config,
            &base,
            "dsk_bad",
            true,
            true,
            None,
            &diskette::progress::Silent,
        )
    })
    .await
    .unwrap();
    assert!(refused.err().unwrap().to_string().contains("401"));

    // The whole command, on "another machine": a second workspace whose
    // database lost rows and whose media are missing.
    let (other_dir, other_config) = workspace();
    let other = load_config(&other_config, &[]);
    let app_db = other.data_database().unwrap();
    rusqlite::Connection::open(&app_db)
        .unwrap()
        .execute("DELETE FROM blog_comment", [])
        .unwrap();
    let output = tokio::task::spawn_blocking({
        let (config_path, base, key) = (other_config.clone(), app.base.clone(), key.clone());
        move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_diskette"))
                .arg("--config")
                .arg(&config_path)
                .args(["load", "--server", &base, "--api-key", &key])
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "load --server failed: {stderr}");
    let comments: i64 = rusqlite::Connection::open(&app_db)
        .unwrap()
        .query_row("SELECT COUNT(*) FROM blog_comment", [], |r| r.get(0))
        .unwrap();
    assert_eq!(comments, 320, "the data came back");
    assert!(
        other
            .load
            .storages_basepath
            .join("media/images/2024/01/picture-0.bmp")
            .is_file()
    );
    // A wrong key: a clear error and a failure exit.
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_diskette"))
        .arg("--config")
        .arg(&other_config)
        .args(["load", "--server", &app.base, "--api-key", "dsk_wrong"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("refused the API key"));
    drop(other_dir);
    app.stop().await;
}

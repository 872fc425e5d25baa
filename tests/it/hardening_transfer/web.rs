//! Ranges, error responses and page numbers of the web service.

use std::fs;
use std::time::Duration;

use crate::support::{self, app::*};
use diskette::registry::DumpStatus;
use reqwest::StatusCode;
use reqwest::header::{
    CONTENT_RANGE, ETAG, IF_NONE_MATCH, IF_RANGE, LAST_MODIFIED, RANGE, REFERRER_POLICY,
};

fn add_media(app: &TestApp) {
    let dir = app.config.storages.basepath.join("media/videos");
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join("clip.bin"), support::noise(512 * 1024, 7)).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ranges_follow_rfc_9110() {
    let app = spawn_app().await;
    add_media(&app);
    let client = app.login(STAFF).await;
    let id = client.create_dump(false, true).await;
    assert_eq!(app.wait_finished(id).await, DumpStatus::Processed);
    let dump = app.dump(id).await;
    let (size, checksum) = (dump.size.unwrap() as usize, dump.checksum.clone().unwrap());
    // An archive written an hour ago: its modification date is a strong validator.
    let file = fs::File::options()
        .write(true)
        .open(app.archive_path(&dump))
        .unwrap();
    file.set_modified(std::time::SystemTime::now() - Duration::from_secs(3600))
        .unwrap();
    let url = app.url(&format!("/dumps/{id}/download"));
    let full = client.get(&url).send().await.unwrap();
    let date = full.headers()[LAST_MODIFIED].to_str().unwrap().to_string();
    let body = full.bytes().await.unwrap();
    assert_eq!(body.len(), size);

    let strong = format!("\"{checksum}\"");
    for validator in [strong.as_str(), date.as_str()] {
        let res = client
            .get(&url)
            .header(RANGE, "bytes=0-99")
            .header(IF_RANGE, validator)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::PARTIAL_CONTENT, "{validator}");
        assert_eq!(
            res.headers()[CONTENT_RANGE].to_str().unwrap(),
            format!("bytes 0-99/{size}")
        );
        assert_eq!(&res.bytes().await.unwrap()[..], &body[..100]);
    }
    let weak = format!("W/{strong}");
    for stale in [
        weak.as_str(),
        "\"another-archive\"",
        "Sat, 01 Jan 2000 00:00:00 GMT",
        "not a validator",
    ] {
        let res = client
            .get(&url)
            .header(RANGE, "bytes=0-99")
            .header(IF_RANGE, stale)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK, "If-Range: {stale}");
        assert_eq!(&res.bytes().await.unwrap()[..], &body[..], "{stale}");
    }
    for ignored in [
        "bytes=abc",
        "chars=0-9",
        "bytes=0-9;x",
        "bytes",
        "bytes=--5",
        "bytes=0-1,5-6",
        "bytes=0-99, 200-",
    ] {
        let res = client
            .get(&url)
            .header(RANGE, ignored)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK, "Range: {ignored}");
        assert_eq!(res.bytes().await.unwrap().len(), size, "{ignored}");
    }
    // If-None-Match compares weakly.
    let res = client
        .get(&url)
        .header(IF_NONE_MATCH, &weak)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_MODIFIED);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumed_api_download_never_mixes_two_archives() {
    let app = spawn_app().await;
    let admin = app.login(ADMIN).await;
    let res = admin
        .post_form("/api-keys", "/api-keys", &[("name", "resume")])
        .await;
    let key = text_of_id(&res.text().await.unwrap(), "new-key").unwrap();
    let url = app.url("/api/dumps/latest?data=0&storages=1");
    let first = admin.create_dump(false, true).await;
    app.wait_finished(first).await;
    let res = admin.get(&url).bearer_auth(&key).send().await.unwrap();
    let etag = res.headers()[ETAG].to_str().unwrap().to_string();
    // A newer dump replaces it while the client is away.
    add_media(&app);
    let second = admin.create_dump(false, true).await;
    app.wait_finished(second).await;
    let newer = app.dump(second).await;
    let res = admin
        .get(&url)
        .bearer_auth(&key)
        .header(RANGE, "bytes=100-")
        .header(IF_RANGE, &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(b2sum(&res.bytes().await.unwrap()), newer.checksum.unwrap());
    app.stop().await;
}

fn assert_security_headers(res: &reqwest::Response, what: &str) {
    let h = res.headers();
    let csp = h
        .get("content-security-policy")
        .map(|v| v.to_str().unwrap());
    assert!(
        csp.is_some_and(|c| c.contains("frame-ancestors 'none'")),
        "{what}: {h:?}"
    );
    assert_eq!(
        h.get("x-content-type-options").unwrap(),
        "nosniff",
        "{what}"
    );
    assert_eq!(h.get("x-frame-options").unwrap(), "DENY", "{what}");
    assert!(h.get(REFERRER_POLICY).is_some(), "{what}: {h:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_responses_carry_the_security_headers() {
    let app = spawn_app().await;
    let client = app.client();
    let big = "x".repeat(200 * 1024);
    let res = client
        .post(app.url("/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("username={big}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_security_headers(&res, "413");
    let res = client.get(app.url("/no/such/page")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    assert_security_headers(&res, "404");
    let res = client.delete(app.url("/dumps")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_security_headers(&res, "405");
    let res = client
        .get(app.url("/api/dumps/latest"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_security_headers(&res, "401");
    // The registry goes away: a 500, and /healthz answers 503 in JSON.
    app.registry.pool().close().await;
    let res = client
        .get(app.url("/api/dumps/latest"))
        .bearer_auth("some-key")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_security_headers(&res, "500");
    let res = client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_security_headers(&res, "503");
    let body: serde_json::Value = serde_json::from_str(&res.text().await.unwrap()).unwrap();
    assert_eq!(
        body,
        serde_json::json!({"status": "unhealthy", "reasons": ["registry unavailable"]})
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_numbers_are_bounded() {
    let app = spawn_app().await;
    let client = app.login(STAFF).await;
    let id = client.create_dump(true, false).await;
    app.wait_finished(id).await;
    for huge in [
        "9223372036854775807",
        "18446744073709551615",
        "99999999999999999999999999",
    ] {
        let res = client
            .get(app.url(&format!("/dumps?page={huge}")))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK, "page={huge}");
        let html = res.text().await.unwrap();
        assert!(html.contains("Page 1 of 1"), "page={huge}: the last page");
        assert!(
            html.contains(&format!("href=\"/dumps/{id}\"")),
            "page={huge}"
        );
    }
    for bad in ["-1", "0", "abc", "1e3"] {
        let res = client
            .get(app.url(&format!("/dumps?page={bad}")))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "page={bad}");
        assert!(res.text().await.unwrap().contains("page"), "page={bad}");
    }
    app.stop().await;
}

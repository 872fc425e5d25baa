//! Login throttling under concurrency and behind proxies, sessions that end
//! when a user's password or access changes, anonymous traffic that stores
//! nothing, a log that user input cannot forge, and a way out of the 403 page.

use std::io::Write;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::LOCATION;

use crate::support::app::*;
use crate::support::diskette;
use crate::support::process::ServerProcess;
use crate::support::web::token_in;

async fn count(app: &TestApp, table: &str) -> i64 {
    sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}"))
        .fetch_one(app.registry.pool())
        .await
        .unwrap()
}

/// The answer to a login posted with `X-Forwarded-For: xff`.
async fn login_via(app: &TestApp, username: &str, password: &str, xff: &str) -> StatusCode {
    let client = app.client();
    let token = client.csrf("/login").await;
    client
        .post(app.url("/login"))
        .header("x-forwarded-for", xff)
        .form(&[
            ("csrf_token", token.as_str()),
            ("username", username),
            ("password", password),
        ])
        .send()
        .await
        .unwrap()
        .status()
}

/// `GET path` must send this client to the login page.
async fn sent_to_login(client: &Web, app: &TestApp, path: &str) {
    let res = client.get(app.url(path)).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER, "GET {path}");
    let location = res.headers()[LOCATION].to_str().unwrap();
    assert!(location.starts_with("/login"), "{location}");
}

/// Run `diskette user ARGS` against the app's registry, `stdin` as input.
async fn user_command(app: &TestApp, args: &[&str], stdin: &str) {
    let config = app.config.source.clone().unwrap();
    let mut cmd = diskette(&config, &["user"]);
    cmd.args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let stdin = stdin.to_string();
    let out = tokio::task::spawn_blocking(move || {
        let mut child = cmd.spawn().unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_logins_check_at_most_five_passwords() {
    let app = spawn_app().await;
    let mut attempts = Vec::new();
    for i in 0..40 {
        let client = app.client();
        let token = client.csrf("/login").await;
        let password = if i == 20 { PASSWORD } else { "a wrong guess" };
        attempts.push((client, token, password));
    }
    // All forms are ready; they are sent at the same moment.
    let start = Arc::new(tokio::sync::Barrier::new(attempts.len()));
    let tasks: Vec<_> = attempts
        .into_iter()
        .map(|(client, token, password)| {
            let (start, url) = (start.clone(), app.url("/login"));
            tokio::spawn(async move {
                let form = [
                    ("csrf_token", token.as_str()),
                    ("username", STAFF),
                    ("password", password),
                ];
                let request = client.post(url).form(&form);
                start.wait().await;
                (password == PASSWORD, request.send().await.unwrap().status())
            })
        })
        .collect();
    let (mut wrong_checked, mut throttled, mut right) = (0, 0, None);
    for task in tasks {
        match task.await.unwrap() {
            (true, status) => right = Some(status),
            (false, StatusCode::OK) => wrong_checked += 1,
            (false, StatusCode::TOO_MANY_REQUESTS) => throttled += 1,
            (false, status) => panic!("a wrong password answered {status}"),
        }
    }
    // At most five wrong passwords were checked; a success gives its own
    // count back, so four or five, never more.
    assert!(
        (4..=5).contains(&wrong_checked),
        "{wrong_checked} wrong passwords checked, {throttled} throttled"
    );
    match right.unwrap() {
        // Checked among the first five: it logs in.
        StatusCode::SEE_OTHER => {}
        // Refused while locked, and it still is.
        StatusCode::TOO_MANY_REQUESTS => {
            let res = app.client().login_response(STAFF, PASSWORD).await;
            assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
        }
        status => panic!("the right password answered {status}"),
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_decay_and_stale_records_are_pruned() {
    let app = spawn_app().await;
    for _ in 0..5 {
        let res = app.client().login_response("ghost", "guess").await;
        assert_eq!(res.status(), StatusCode::OK);
    }
    let res = app.client().login_response("ghost", "guess").await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    // Long after (the clock moved by rewriting the record), the failures are
    // forgotten: five more checks before the next lock.
    sqlx::query(
        "UPDATE login_throttle SET decay_from = '2001-01-01T00:00:00.000000Z', \
         locked_until = '2001-01-01T00:10:00.000000Z' WHERE key = 'user:ghost'",
    )
    .execute(app.registry.pool())
    .await
    .unwrap();
    for _ in 0..5 {
        let res = app.client().login_response("ghost", "guess").await;
        assert_eq!(res.status(), StatusCode::OK);
    }
    let res = app.client().login_response("ghost", "guess").await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);

    // Records that have decayed go; a lock in force stays.
    for _ in 0..5 {
        app.client().login_response("target", "guess").await;
    }
    sqlx::query(
        "UPDATE login_throttle SET decay_from = '2001-01-01T00:00:00.000000Z', \
         locked_until = NULL WHERE key <> 'user:target'",
    )
    .execute(app.registry.pool())
    .await
    .unwrap();
    assert_eq!(count(&app, "login_throttle").await, 3);
    app.registry.prune_login_records().await.unwrap();
    let keys: Vec<String> = sqlx::query_scalar("SELECT key FROM login_throttle")
        .fetch_all(app.registry.pool())
        .await
        .unwrap();
    assert_eq!(keys, ["user:target"]);

    // However many recent ones pile up, at most 10,000 unlocked records stay.
    let now = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    sqlx::query(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 10500) \
         INSERT INTO login_throttle (key, attempts, decay_from) \
         SELECT 'user:filler' || i, 1, ? FROM n",
    )
    .bind(&now)
    .execute(app.registry.pool())
    .await
    .unwrap();
    app.registry.prune_login_records().await.unwrap();
    assert_eq!(count(&app, "login_throttle").await, 10_000);
    let target: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM login_throttle WHERE key = 'user:target'")
            .fetch_one(app.registry.pool())
            .await
            .unwrap();
    assert_eq!(target, 1, "a lock in force is never pruned");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_for_is_believed_only_from_trusted_proxies() {
    let behind_proxy = spawn_app_with(Setup {
        env: vec![(
            "DISKETTE_SERVER_TRUSTED_PROXIES".into(),
            r#"["127.0.0.1", "::1"]"#.into(),
        )],
        ..Setup::default()
    })
    .await;
    let app = &behind_proxy;
    for i in 0..30 {
        // What a client puts on the left of the list is not believed.
        let xff = format!("10.0.0.{i}, 203.0.113.7");
        let status = login_via(app, &format!("user{i}"), "guess", &xff).await;
        assert_eq!(status, StatusCode::OK);
    }
    for xff in ["203.0.113.7", "198.51.100.1, 203.0.113.7"] {
        let status = login_via(app, ADMIN, PASSWORD, xff).await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{xff}");
    }
    // Another client behind the same proxy is not locked out.
    let status = login_via(app, ADMIN, PASSWORD, "203.0.113.8").await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    behind_proxy.stop().await;

    // Without trusted proxies, the header is ignored: the peer is the client.
    let direct = spawn_app().await;
    for i in 0..30 {
        let xff = format!("203.0.113.{i}");
        login_via(&direct, &format!("user{i}"), "guess", &xff).await;
    }
    let status = login_via(&direct, ADMIN, PASSWORD, "203.0.113.99").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    direct.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlong_usernames_are_refused_and_not_stored() {
    let app = spawn_app().await;
    for name in ["a".repeat(151), "b".repeat(60_000)] {
        let res = app.client().login_response(&name, "guess").await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST);
        let html = res.text().await.unwrap();
        assert!(html.contains("at most 150 characters"), "{}", &html[..200]);
        assert!(!html.contains(&name), "the name is not sent back");
    }
    assert_eq!(count(&app, "login_throttle").await, 0, "nothing stored");
    // 150 characters is a username like another.
    let res = app.client().login_response(&"c".repeat(150), "guess").await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(count(&app, "login_throttle").await, 2);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_changes_end_the_other_sessions_of_the_user() {
    let app = spawn_app().await;
    let admin = app.login(ADMIN).await;
    let admin_elsewhere = app.login(ADMIN).await;
    let staff = app.login(STAFF).await;
    let staff_id = app.registry.user(STAFF).await.unwrap().unwrap().id;
    let admin_id = app.registry.user(ADMIN).await.unwrap().unwrap().id;
    let staff_token = staff.csrf("/dumps").await;

    let res = admin
        .post_form(
            "/users",
            &format!("/users/{staff_id}/password"),
            &[("password", "a brand new password")],
        )
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    sent_to_login(&staff, &app, "/dumps").await;
    // Its "Log out" button, still on screen, leads to the login page too.
    let res = staff
        .post(app.url("/logout"))
        .form(&[("csrf_token", staff_token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(res.headers()[LOCATION], "/login");
    staff.log_in(STAFF, "a brand new password").await;
    staff.page("/dumps").await;

    // Changing one's own password: this session stays, the others end.
    let res = admin
        .post_form(
            "/users",
            &format!("/users/{admin_id}/password"),
            &[("password", "the admin's new password")],
        )
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    admin.page("/dumps").await;
    admin.page("/users").await;
    sent_to_login(&admin_elsewhere, &app, "/dumps").await;

    // From the command line too.
    user_command(
        &app,
        &["passwd", STAFF, "--password-stdin"],
        "from the cli\n",
    )
    .await;
    sent_to_login(&staff, &app, "/dumps").await;
    admin.page("/dumps").await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deactivation_and_loss_of_staff_rights_end_sessions() {
    let app = spawn_app().await;
    let admin = app.login(ADMIN).await;
    let staff_id = app.registry.user(STAFF).await.unwrap().unwrap().id;
    let flags = format!("/users/{staff_id}/flags");
    let set_flags = |fields: &'static [(&'static str, &'static str)]| {
        let (admin, flags) = (admin.clone(), flags.clone());
        async move {
            let res = admin.post_form("/users", &flags, fields).await;
            assert_eq!(res.status(), StatusCode::SEE_OTHER);
        }
    };

    // Deactivated, then reactivated: the old session does not come back.
    let staff = app.login(STAFF).await;
    set_flags(&[("is_staff", "1")]).await;
    set_flags(&[("is_active", "1"), ("is_staff", "1")]).await;
    sent_to_login(&staff, &app, "/dumps").await;

    // Staff rights removed: sent to the login page, not to a 403.
    let staff = app.login(STAFF).await;
    staff.page("/dumps").await;
    set_flags(&[("is_active", "1")]).await;
    sent_to_login(&staff, &app, "/dumps/new").await;

    // Deactivated from the command line.
    app.add_user("carol", false).await;
    let carol = app.login("carol").await;
    carol.page("/dumps").await;
    user_command(&app, &["deactivate", "carol"], "").await;
    sent_to_login(&carol, &app, "/dumps").await;
    admin.page("/users").await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_login_pages_store_nothing() {
    let app = spawn_app().await;
    let before = (
        count(&app, "tower_sessions").await,
        count(&app, "login_throttle").await,
    );
    let regular = app.client();
    for i in 0..20 {
        let res = app.client().get(app.url("/login")).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        let res = regular
            .get(app.url(&format!("/login?next=/dumps/{i}")))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        // Anonymous pages that send to the login page store nothing either.
        let res = app.client().get(app.url("/dumps")).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::SEE_OTHER);
    }
    let after = (
        count(&app, "tower_sessions").await,
        count(&app, "login_throttle").await,
    );
    assert_eq!(after, before, "(sessions, throttling records)");

    // The form's token is no good without its cookie.
    let token = regular.csrf("/login").await;
    let res = app
        .client()
        .post(app.url("/login"))
        .form(&[
            ("csrf_token", token.as_str()),
            ("username", ADMIN),
            ("password", PASSWORD),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);

    // Its key outlives the server: another server on the same registry (a
    // restart) takes a form the first one served. The session starts there.
    let config = app.config.clone();
    let second =
        diskette::web::Server::build(config, Some("127.0.0.1:0"), diskette::worker::engine())
            .await
            .unwrap();
    let second_url = format!("http://{}/login", second.local_addr());
    let stop = second.shutdown_token();
    let running = tokio::spawn(second.run());
    let res = regular
        .post(&second_url)
        .form(&[
            ("csrf_token", token.as_str()),
            ("username", ADMIN),
            ("password", PASSWORD),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(count(&app, "tower_sessions").await, before.0 + 1);
    stop.cancel();
    running.await.unwrap().unwrap();
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_usernames_reach_the_log_escaped() {
    let (_dir, config_path) = workspace();
    let mut cmd = diskette(&config_path, &["serve", "--addr", "127.0.0.1:0"]);
    cmd.stdout(Stdio::null());
    let server = ServerProcess::start(cmd).await;
    let forged = "2030-01-01T00:00:00.000000Z  INFO logged in username=admin";
    // A fake field too: the username is quoted, so it cannot pose as one.
    let hostile = format!("mallory client=203.0.113.9\n{forged}\r\u{1b}[2J\u{1b}[31mred");
    let res = server.web().login_response(&hostile, "guess").await;
    assert_eq!(res.status(), StatusCode::OK);
    let mut log = String::new();
    for _ in 0..100 {
        log = server.log();
        if log.contains("login failed") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(log.contains("login failed"), "{log}");
    assert!(!log.contains('\u{1b}'), "no escape sequence: {log:?}");
    assert!(!log.contains('\r'), "{log:?}");
    assert!(
        !log.lines().any(|line| line.starts_with("2030-01-01")),
        "a forged line: {log}"
    );
    assert!(
        log.contains("username=\"mallory client=203.0.113.9\\n2030-01-01"),
        "{log}"
    );
    server.signal("TERM").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_forbidden_page_offers_a_working_logout() {
    let app = spawn_app().await;
    let visitor = app.login(NOT_STAFF).await;
    let res = visitor.get(app.url("/dumps")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let html = res.text().await.unwrap();
    let doc = scraper::Html::parse_document(&html);
    let form = scraper::Selector::parse("form[method=post][action=\"/logout\"]").unwrap();
    let logout = doc
        .select(&form)
        .next()
        .expect("a logout form on the 403 page");
    let token = token_in(&logout.html()).expect("with its token");

    // The login page shows its form instead of sending back to the 403.
    let res = visitor.get(app.url("/login")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let html = res.text().await.unwrap();
    assert!(html.contains("action=\"/logout\""), "{html}");
    assert!(html.contains("action=\"/login\""), "{html}");

    let res = visitor
        .post(app.url("/logout"))
        .form(&[("csrf_token", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(res.headers()[LOCATION], "/login");
    sent_to_login(&visitor, &app, "/dumps").await;
    // And a staff user can log in from the same browser.
    visitor.log_in(STAFF, PASSWORD).await;
    visitor.page("/dumps").await;
    app.stop().await;
}

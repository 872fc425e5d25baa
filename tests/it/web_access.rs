//! Authentication, access control, CSRF, throttling and security headers.

use crate::support::app::*;
use reqwest::StatusCode;
use reqwest::header::{LOCATION, SET_COOKIE};

/// Every staff page, with a dump that exists.
const STAFF_PAGES: &[&str] = &[
    "/dumps",
    "/dumps/new",
    "/dumps/1",
    "/dumps/1/logs",
    "/dumps/1/status",
    "/dumps/1/download",
    "/actions",
];
const SUPERUSER_PAGES: &[&str] = &["/users", "/api-keys"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_needs_the_right_user() {
    let app = spawn_app().await;
    let staff = app.login(STAFF).await;
    let id = staff.create_dump(true, true).await;
    assert_eq!(id.get(), 1);
    app.wait_finished(id).await;

    // Anonymous: redirected to the login page, with a way back.
    let anonymous = app.client();
    for page in STAFF_PAGES.iter().chain(SUPERUSER_PAGES) {
        let res = anonymous.get(app.url(page)).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::SEE_OTHER, "{page}");
        let location = res.headers()[LOCATION].to_str().unwrap();
        assert!(
            location.starts_with("/login?next=%2F") || location.starts_with("/login?next=/"),
            "{location}"
        );
    }
    // Logged in but not staff: forbidden everywhere.
    let visitor = app.login(NOT_STAFF).await;
    for page in STAFF_PAGES.iter().chain(SUPERUSER_PAGES) {
        let res = visitor.get(app.url(page)).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::FORBIDDEN, "{page}");
    }
    // Staff: staff pages yes, superuser pages no.
    for page in STAFF_PAGES {
        let res = staff.get(app.url(page)).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK, "{page}");
    }
    for page in SUPERUSER_PAGES {
        let res = staff.get(app.url(page)).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::FORBIDDEN, "{page}");
    }
    let admin = app.login(ADMIN).await;
    for page in STAFF_PAGES.iter().chain(SUPERUSER_PAGES) {
        let res = admin.get(app.url(page)).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK, "{page}");
    }
    // Superuser-only POSTs refuse staff.
    let res = staff
        .post_form("/dumps", "/api-keys", &[("name", "x")])
        .await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let res = staff
        .post_form(
            "/dumps",
            "/users",
            &[("username", "mallory"), ("password", "long enough pw")],
        )
        .await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert!(app.registry.user("mallory").await.unwrap().is_none());

    // A user deactivated while logged in loses access at once.
    let user = app.registry.user(STAFF).await.unwrap().unwrap();
    app.registry
        .set_user_flags(
            diskette::registry::Actor::System,
            user.id,
            false,
            true,
            false,
        )
        .await
        .unwrap();
    // Deactivation ended the session: the next page is the login page.
    let res = staff.get(app.url("/dumps")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert!(
        res.headers()[LOCATION]
            .to_str()
            .unwrap()
            .starts_with("/login")
    );
    // And cannot log in again.
    let res = app.client().login_response(STAFF, PASSWORD).await;
    assert_eq!(res.status(), StatusCode::OK, "the login form again");
    // Unknown ids and unknown routes are 404 pages.
    for page in [
        "/dumps/999",
        "/dumps/abc",
        "/dumps/999/logs",
        "/dumps/999/download",
        "/nowhere",
    ] {
        let res = admin.get(app.url(page)).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::NOT_FOUND, "{page}");
    }
    // Health check and static files are public.
    for page in ["/healthz", "/static/app.css", "/static/app.js", "/login"] {
        let res = anonymous.get(app.url(page)).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK, "{page}");
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn posts_without_a_valid_csrf_token_are_refused_and_change_nothing() {
    let app = spawn_app().await;
    let client = app.login(ADMIN).await;
    let id = client.create_dump(true, false).await;
    app.wait_finished(id).await;
    let ids = id.to_string();
    let forms: Vec<(String, Vec<(&str, &str)>)> = vec![
        (
            "/dumps".into(),
            vec![("with_data", "1"), ("with_storages", "1")],
        ),
        (format!("/dumps/{id}/deprecate"), vec![]),
        (
            "/dumps/bulk".into(),
            vec![("action", "delete"), ("ids", &ids)],
        ),
        ("/api-keys".into(), vec![("name", "sneaky")]),
        (
            "/users".into(),
            vec![("username", "sneaky"), ("password", "long enough pw")],
        ),
        ("/logout".into(), vec![]),
    ];
    for (action, fields) in &forms {
        for token in [None, Some("forged"), Some("")] {
            let mut form = fields.clone();
            if let Some(t) = token {
                form.push(("csrf_token", t));
            }
            let res = client
                .post(app.url(action))
                .form(&form)
                .send()
                .await
                .unwrap();
            assert_eq!(
                res.status(),
                StatusCode::FORBIDDEN,
                "{action} with {token:?}"
            );
        }
        // Not a form at all.
        let res = client
            .post(app.url(action))
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(
            res.status(),
            StatusCode::FORBIDDEN,
            "{action} without a form"
        );
    }
    let (_, total) = app.registry.list(&Default::default(), 10, 0).await.unwrap();
    assert_eq!(total, 1, "no dump created");
    assert!(
        app.dump(id).await.is_available(),
        "not deprecated nor deleted"
    );
    assert!(app.registry.api_keys().await.unwrap().is_empty());
    assert!(app.registry.user("sneaky").await.unwrap().is_none());
    let res = client.get(app.url("/dumps")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK, "still logged in");
    // Another session's token is no good either.
    let other = app.login(STAFF).await;
    let stolen = other.csrf("/dumps/new").await;
    let res = client
        .post(app.url("/dumps"))
        .form(&[("csrf_token", stolen.as_str()), ("with_data", "1")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    // A valid token sent from another site (as a browser says) is refused too.
    let token = client.csrf("/dumps/new").await;
    let res = client
        .post(app.url("/dumps"))
        .header("sec-fetch-site", "cross-site")
        .form(&[("csrf_token", token.as_str()), ("with_data", "1")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let (_, total) = app.registry.list(&Default::default(), 10, 0).await.unwrap();
    assert_eq!(total, 1);
    // Anonymous POSTs too, login included.
    let anonymous = app.client();
    let res = anonymous
        .post(app.url("/dumps"))
        .form(&[("with_data", "1")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let res = anonymous
        .post(app.url("/login"))
        .form(&[("username", ADMIN), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    app.stop().await;
}

fn session_cookie(res: &reqwest::Response) -> Option<String> {
    cookie_named(res, "diskette_session=")
}

fn cookie_named(res: &reqwest::Response, prefix: &str) -> Option<String> {
    res.headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with(prefix))
        .map(str::to_string)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_rotates_the_session_and_sets_safe_cookies() {
    let app = spawn_app().await;
    let client = app.client();
    // The login form starts no session: its token rides in a signed cookie.
    let res = client.get(app.url("/login")).send().await.unwrap();
    assert!(session_cookie(&res).is_none(), "no session before login");
    let form_cookie = cookie_named(&res, "diskette_login=").expect("the login form's cookie");
    assert!(
        form_cookie.contains("HttpOnly")
            && form_cookie.contains("SameSite=Lax")
            && form_cookie.contains("Path=/login"),
        "{form_cookie}"
    );
    assert!(!form_cookie.contains("Secure"), "{form_cookie}");
    let max_age = |c: &str| -> i64 {
        c.split(';')
            .find_map(|p| p.trim().strip_prefix("Max-Age="))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no Max-Age in {c}"))
    };
    assert!(
        max_age(&form_cookie) <= 3600,
        "the login form's token is short-lived: {form_cookie}"
    );
    // A session fixed by someone else (their own, planted in this browser)
    // does not survive the login: the id changes.
    let res = client.login_response(NOT_STAFF, PASSWORD).await;
    let before = session_cookie(&res).expect("a session at login");
    assert!(
        before.contains("HttpOnly") && before.contains("SameSite=Lax"),
        "{before}"
    );
    assert!(!before.contains("Secure"), "{before}");
    let res = client.login_response(ADMIN, PASSWORD).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(res.headers()[LOCATION], "/dumps");
    let after = session_cookie(&res).expect("a new session id");
    let id = |c: &str| c.split(';').next().unwrap().to_string();
    assert_ne!(id(&before), id(&after), "session id rotated at login");
    let configured = app.config.server.session_minutes as i64 * 60;
    assert!(
        max_age(&after) > configured - 60 && max_age(&after) <= configured,
        "{after}"
    );
    // The old id is worthless.
    let replay = app.client();
    let res = replay
        .get(app.url("/dumps"))
        .header("cookie", id(&before))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    // Logout is a POST that ends the session.
    let res = client.post_form("/dumps", "/logout", &[]).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let res = client.get(app.url("/dumps")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let res = client.get(app.url("/logout")).send().await.unwrap();
    assert_eq!(
        res.status(),
        StatusCode::METHOD_NOT_ALLOWED,
        "no logout by GET"
    );
    app.stop().await;

    let secure = spawn_app_with(Setup {
        env: vec![("DISKETTE_SERVER_SECURE_COOKIES".into(), "true".into())],
        ..Setup::default()
    })
    .await;
    let res = secure
        .client()
        .get(secure.url("/login"))
        .send()
        .await
        .unwrap();
    assert!(
        cookie_named(&res, "diskette_login=")
            .unwrap()
            .contains("Secure")
    );
    secure.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn next_is_followed_only_when_relative() {
    let app = spawn_app().await;
    for (next, expected) in [
        ("/dumps/new", "/dumps/new"),
        ("https://evil.example/", "/dumps"),
        ("//evil.example/x", "/dumps"),
        ("/\\evil.example", "/dumps"),
    ] {
        let client = app.client();
        let token = client
            .csrf(&format!("/login?next={}", urlencode(next)))
            .await;
        let res = client
            .post(app.url("/login"))
            .form(&[
                ("csrf_token", token.as_str()),
                ("username", ADMIN),
                ("password", PASSWORD),
                ("next", next),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::SEE_OTHER);
        assert_eq!(res.headers()[LOCATION], expected, "{next}");
    }
    // The login page carries `next` from the redirect.
    let client = app.client();
    let res = client.get(app.url("/dumps/new")).send().await.unwrap();
    let location = res.headers()[LOCATION].to_str().unwrap().to_string();
    let html = client.page(&location).await;
    assert!(
        html.contains("name=\"next\" value=\"/dumps/new\""),
        "{html}"
    );
    app.stop().await;
}

fn urlencode(s: &str) -> String {
    s.bytes().map(|b| format!("%{b:02X}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_errors_do_not_tell_which_part_was_wrong() {
    let app = spawn_app().await;
    let wrong_password = app.client().login_response(ADMIN, "not the password").await;
    let unknown_user = app
        .client()
        .login_response("nobody", "not the password")
        .await;
    assert_eq!(wrong_password.status(), StatusCode::OK);
    assert_eq!(unknown_user.status(), StatusCode::OK);
    let alert = |html: &str| {
        let doc = scraper::Html::parse_document(html);
        let sel = scraper::Selector::parse(".alert").unwrap();
        doc.select(&sel)
            .next()
            .map(|e| e.text().collect::<String>())
    };
    let a = alert(&wrong_password.text().await.unwrap()).unwrap();
    let b = alert(&unknown_user.text().await.unwrap()).unwrap();
    assert_eq!(a, b);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_failures_throttle_the_username() {
    let app = spawn_app().await;
    for _ in 0..5 {
        let res = app.client().login_response(STAFF, "guess").await;
        assert_eq!(res.status(), StatusCode::OK);
    }
    // Now even the right password is refused for a while.
    let client = app.client();
    let res = client.login_response(STAFF, PASSWORD).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(
        res.text()
            .await
            .unwrap()
            .contains("Too many failed attempts")
    );
    assert_eq!(
        client.get(app.url("/dumps")).send().await.unwrap().status(),
        StatusCode::SEE_OTHER
    );
    // Unknown names are throttled the same way (nothing to learn from it).
    for _ in 0..5 {
        app.client().login_response("ghost", "guess").await;
    }
    let res = app.client().login_response("ghost", "guess").await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    // Other accounts are not locked out.
    app.login(ADMIN).await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_failures_throttle_the_client_address() {
    let app = spawn_app().await;
    for i in 0..30 {
        app.client()
            .login_response(&format!("user{i}"), "guess")
            .await;
    }
    let res = app.client().login_response(ADMIN, PASSWORD).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_carry_security_headers_and_forms_carry_tokens() {
    let app = spawn_app().await;
    let client = app.login(ADMIN).await;
    let id = client.create_dump(true, true).await;
    app.wait_finished(id).await;
    for page in [
        "/login",
        "/dumps",
        "/dumps/new",
        &format!("/dumps/{id}"),
        "/api-keys",
        "/users",
        "/actions",
    ] {
        let res = client.get(app.url(page)).send().await.unwrap();
        let h = res.headers();
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(
            csp.contains("frame-ancestors 'none'") && csp.contains("script-src 'self'"),
            "{page}"
        );
        assert!(!csp.contains("unsafe-inline"));
        assert_eq!(h["x-frame-options"], "DENY");
        assert_eq!(h["x-content-type-options"], "nosniff");
        assert_eq!(h["referrer-policy"], "same-origin");
        let html = res.text().await.unwrap();
        assert!(!html.contains("<script>"), "no inline script on {page}");
        let doc = scraper::Html::parse_document(&html);
        let forms = scraper::Selector::parse("form[method=post]").unwrap();
        let token = scraper::Selector::parse("input[name=csrf_token]").unwrap();
        for form in doc.select(&forms) {
            assert!(
                form.select(&token).next().is_some(),
                "a POST form without token on {page}"
            );
        }
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn superuser_manages_users_and_keys() {
    let app = spawn_app().await;
    let admin = app.login(ADMIN).await;
    let res = admin
        .post_form(
            "/users",
            "/users",
            &[("username", "carol"), ("password", "carol's password")],
        )
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let carol = app.registry.user("carol").await.unwrap().unwrap();
    assert!(carol.is_staff && carol.is_active && !carol.is_superuser);
    let hash: String =
        sqlx::query_scalar("SELECT password_hash FROM users WHERE username = 'carol'")
            .fetch_one(app.registry.pool())
            .await
            .unwrap();
    assert!(hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
    let client = app.client();
    let res = client.login_response("carol", "carol's password").await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    // New password, then deactivation.
    let path = format!("/users/{}/password", carol.id);
    let res = admin
        .post_form("/users", &path, &[("password", "another password")])
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let res = app
        .client()
        .login_response("carol", "another password")
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let path = format!("/users/{}/flags", carol.id);
    let res = admin.post_form("/users", &path, &[("is_staff", "1")]).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert!(!app.registry.user("carol").await.unwrap().unwrap().is_active);
    // A superuser cannot lock themselves out.
    let me = app.registry.user(ADMIN).await.unwrap().unwrap();
    let res = admin
        .post_form(
            "/users",
            &format!("/users/{}/flags", me.id),
            &[("is_active", "1")],
        )
        .await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert!(
        app.registry
            .user(ADMIN)
            .await
            .unwrap()
            .unwrap()
            .is_superuser
    );
    app.stop().await;
}

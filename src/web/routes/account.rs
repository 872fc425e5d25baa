//! Login and logout.

use std::net::SocketAddr;

use askama::Template;
use axum::extract::{ConnectInfo, Query};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde::Deserialize;
use tower_sessions::Expiry;

use crate::registry::Password;
use crate::web::AppState;
use crate::web::auth::{self, CsrfForm, MaybeUser, NoFields};
use crate::web::error::WebResult;
use crate::web::pages::{Ctx, LoginPage};

/// Failures before a username is locked out for a while (then doubling).
const USER_LIMIT: i64 = 5;
/// Failures before a client address is locked out for a while.
const IP_LIMIT: i64 = 30;
/// The same message whatever failed, so it tells nothing about the accounts.
const ANONYMOUS_LIFETIME: time::Duration = time::Duration::minutes(30);
const LOGIN_FAILED: &str = "Wrong username or password, or the account is not active.";
const THROTTLED: &str = "Too many failed attempts. Wait a while before trying again.";

#[derive(Deserialize)]
pub struct NextQuery {
    next: Option<String>,
}

pub async fn login_page(
    axum::extract::State(_state): axum::extract::State<AppState>,
    maybe: MaybeUser,
    Query(q): Query<NextQuery>,
) -> WebResult<Response> {
    let next = auth::safe_next(q.next.as_deref());
    if maybe.user.is_some() {
        return Ok(Redirect::to(&next).into_response());
    }
    // An anonymous session only carries the login form's token: let it
    // expire soon, so login pages hit in a loop do not fill the store.
    maybe
        .session
        .set_expiry(Some(Expiry::OnInactivity(ANONYMOUS_LIFETIME)));
    render(&maybe, String::new(), next, None, StatusCode::OK).await
}

async fn render(
    maybe: &MaybeUser,
    username: String,
    next: String,
    error: Option<&'static str>,
    status: StatusCode,
) -> WebResult<Response> {
    let ctx = Ctx {
        user: None,
        csrf: auth::csrf_token(&maybe.session).await?,
    };
    let page = LoginPage {
        ctx,
        username,
        next,
        error,
    };
    Ok((status, Html(page.render()?)).into_response())
}

#[derive(Deserialize)]
pub struct LoginForm {
    username: String,
    password: String,
    next: Option<String>,
}

pub async fn login(
    axum::extract::State(state): axum::extract::State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    maybe: MaybeUser,
    CsrfForm(form): CsrfForm<LoginForm>,
) -> WebResult<Response> {
    let next = auth::safe_next(form.next.as_deref());
    let username = form.username.trim().to_string();
    let user_key = format!("user:{}", username.to_lowercase());
    let ip_key = format!("ip:{}", peer.ip());
    let registry = &state.registry;
    if registry
        .login_locked(&[user_key.clone(), ip_key.clone()])
        .await?
    {
        tracing::warn!(%username, ip = %peer.ip(), "login refused: throttled");
        return render(
            &maybe,
            username,
            next,
            Some(THROTTLED),
            StatusCode::TOO_MANY_REQUESTS,
        )
        .await;
    }
    let user = match Password::new(form.password) {
        Ok(password) => registry.authenticate(&username, &password).await?,
        Err(_) => None,
    };
    match user.filter(|u| u.is_active) {
        Some(user) => {
            registry.login_succeeded(&user_key).await?;
            registry.touch_login(user.id).await?;
            auth::login(&maybe.session, &user).await?;
            // A logged-in session gets the configured idle lifetime.
            let minutes = state.config.server.session_minutes.max(1) as i64;
            maybe
                .session
                .set_expiry(Some(Expiry::OnInactivity(time::Duration::minutes(minutes))));
            tracing::info!(username = %user.username, "logged in");
            Ok(Redirect::to(&next).into_response())
        }
        None => {
            registry
                .login_failed(&[(user_key, USER_LIMIT), (ip_key, IP_LIMIT)])
                .await?;
            tracing::warn!(%username, ip = %peer.ip(), "login failed");
            render(&maybe, username, next, Some(LOGIN_FAILED), StatusCode::OK).await
        }
    }
}

pub async fn logout(maybe: MaybeUser, CsrfForm(_): CsrfForm<NoFields>) -> WebResult<Response> {
    maybe.session.flush().await?;
    Ok(Redirect::to("/login").into_response())
}

//! Login and logout.

use std::net::SocketAddr;

use askama::Template;
use axum::extract::{ConnectInfo, Query};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde::Deserialize;
use tower_sessions::Expiry;

use crate::registry::Login;
use crate::web::AppState;
use crate::web::auth::{self, CsrfForm, MaybeUser, NoFields};
use crate::web::error::WebResult;
use crate::web::pages::{Ctx, LoginPage};
use crate::web::url;

/// How long an anonymous session (the login form's token) lives unused.
const ANONYMOUS_LIFETIME: time::Duration = time::Duration::minutes(30);
/// The same message whatever failed, so it tells nothing about the accounts.
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
    let next = url::safe_next(q.next.as_deref());
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
    let next = url::safe_next(form.next.as_deref());
    let username = form.username.trim().to_string();
    match state
        .registry
        .login(&username, form.password, peer.ip())
        .await?
    {
        Login::LoggedIn(user) => {
            auth::login(&maybe.session, &user).await?;
            // A logged-in session gets the configured idle lifetime.
            maybe.session.set_expiry(Some(Expiry::OnInactivity(
                state.config.server.session_lifetime(),
            )));
            tracing::info!(username = %user.username, "logged in");
            Ok(Redirect::to(&next).into_response())
        }
        Login::Throttled => {
            tracing::warn!(%username, ip = %peer.ip(), "login refused: throttled");
            let status = StatusCode::TOO_MANY_REQUESTS;
            render(&maybe, username, next, Some(THROTTLED), status).await
        }
        Login::Refused => {
            tracing::warn!(%username, ip = %peer.ip(), "login failed");
            render(&maybe, username, next, Some(LOGIN_FAILED), StatusCode::OK).await
        }
    }
}

pub async fn logout(maybe: MaybeUser, CsrfForm(_): CsrfForm<NoFields>) -> WebResult<Response> {
    maybe.session.flush().await?;
    Ok(Redirect::to("/login").into_response())
}

//! Login and logout.

use std::net::SocketAddr;

use askama::Template;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde::Deserialize;
use tower_sessions::Expiry;

use crate::registry::Login;
use crate::web::AppState;
use crate::web::auth::{self, CsrfForm, LoginCsrfForm, MaybeUser, NoFields};
use crate::web::error::{WebError, WebResult};
use crate::web::login;
use crate::web::pages::{Ctx, LoginPage};
use crate::web::url;

/// The same message whatever failed, so it tells nothing about the accounts.
const LOGIN_FAILED: &str = "Wrong username or password, or the account is not active.";
const THROTTLED: &str = "Too many failed attempts. Wait a while before trying again.";
const NAME_TOO_LONG: &str = "A username has at most 150 characters.";

#[derive(Deserialize)]
pub struct NextQuery {
    next: Option<String>,
}

/// The login form. An anonymous visit stores nothing on the server: the
/// form's token lives in a signed cookie, the session starts at login.
pub async fn login_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    maybe: MaybeUser,
    Query(q): Query<NextQuery>,
) -> WebResult<Response> {
    let next = url::safe_next(q.next.as_deref());
    // Staff go on; anyone else logged in gets the form (to log in as someone
    // else), never a redirect back to the page that refused them.
    if maybe.user.as_ref().is_some_and(auth::is_staff) {
        return Ok(Redirect::to(&next).into_response());
    }
    let form = Form {
        username: String::new(),
        next,
        error: None,
        status: StatusCode::OK,
    };
    render(&state, &headers, &maybe, form).await
}

struct Form {
    username: String,
    next: String,
    error: Option<&'static str>,
    status: StatusCode,
}

async fn render(
    state: &AppState,
    headers: &HeaderMap,
    maybe: &MaybeUser,
    form: Form,
) -> WebResult<Response> {
    let secure = state.config.server.secure_cookies;
    let (login_token, cookie) = login::form_token(headers, &state.login_key, secure);
    let page = LoginPage {
        ctx: Ctx::default(),
        login_token,
        username: form.username,
        next: form.next,
        error: form.error,
        logout: maybe.logout_offer().await?,
    };
    let mut res = (form.status, Html(page.render()?)).into_response();
    if let Some(cookie) = cookie {
        res.headers_mut().append(header::SET_COOKIE, cookie);
    }
    Ok(res)
}

#[derive(Deserialize)]
pub struct LoginForm {
    username: String,
    password: String,
    next: Option<String>,
}

pub async fn login(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    maybe: MaybeUser,
    LoginCsrfForm(form): LoginCsrfForm<LoginForm>,
) -> WebResult<Response> {
    let next = url::safe_next(form.next.as_deref());
    let username = form.username.trim().to_string();
    let client = login::client_ip(&headers, peer.ip(), &state.config.server.trusted_proxies);
    let outcome = state
        .registry
        .login(&username, form.password, client)
        .await?;
    let (error, status) = match outcome {
        Login::LoggedIn(user) => {
            auth::login(&maybe.session, &user).await?;
            // A logged-in session gets the configured idle lifetime.
            maybe.session.set_expiry(Some(Expiry::OnInactivity(
                state.config.server.session_lifetime(),
            )));
            tracing::info!(username = ?user.username, %client, "logged in");
            let mut res = Redirect::to(&next).into_response();
            let removal = login::removal(state.config.server.secure_cookies);
            res.headers_mut().append(header::SET_COOKIE, removal);
            return Ok(res);
        }
        Login::NameTooLong => {
            tracing::warn!(%client, "login refused: username too long");
            let form = Form {
                username: String::new(),
                next,
                error: Some(NAME_TOO_LONG),
                status: StatusCode::BAD_REQUEST,
            };
            return render(&state, &headers, &maybe, form).await;
        }
        Login::Throttled => {
            tracing::warn!(?username, %client, "login refused: throttled");
            (THROTTLED, StatusCode::TOO_MANY_REQUESTS)
        }
        Login::Refused => {
            tracing::warn!(?username, %client, "login failed");
            (LOGIN_FAILED, StatusCode::OK)
        }
    };
    let form = Form {
        username,
        next,
        error: Some(error),
        status,
    };
    render(&state, &headers, &maybe, form).await
}

/// Log out. A session that has already ended (its user's password or access
/// changed) has nothing left to protect: it goes to the login page too.
pub async fn logout(
    maybe: MaybeUser,
    form: Result<CsrfForm<NoFields>, WebError>,
) -> WebResult<Response> {
    if maybe.user.is_some() {
        form?;
        maybe.session.flush().await?;
    }
    Ok(Redirect::to("/login").into_response())
}

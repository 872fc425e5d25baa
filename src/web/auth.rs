//! Sessions, the staff and superuser extractors, and CSRF-checked forms.

use axum::body::Body;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{Method, header};
use axum::{Form, RequestExt};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use tower_sessions::Session;

use super::AppState;
use super::error::{WebError, WebResult};
use super::pages::{Ctx, NavUser};
use crate::registry::{Actor, User, UserId};

const AUTH_KEY: &str = "auth";
const CSRF_KEY: &str = "csrf";
/// Longest a login lasts, however active the session.
const ABSOLUTE_LIFETIME: time::Duration = time::Duration::hours(24);
/// Largest form body accepted.
pub const FORM_LIMIT: usize = 64 * 1024;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct SessionAuth {
    user_id: i64,
    #[serde(with = "time::serde::rfc3339")]
    authenticated_at: time::OffsetDateTime,
}

async fn session_of(parts: &mut Parts, state: &AppState) -> WebResult<Session> {
    Session::from_request_parts(parts, state)
        .await
        .map_err(|(_, m)| WebError::Internal(crate::Error::Internal(m.to_string())))
}

/// The session's CSRF token, created on first use.
pub async fn csrf_token(session: &Session) -> WebResult<String> {
    if let Some(t) = session.get::<String>(CSRF_KEY).await? {
        return Ok(t);
    }
    let token = crate::users::random_token(32);
    session.insert(CSRF_KEY, &token).await?;
    Ok(token)
}

/// Log `user` in: a new session id (no fixation) and a new CSRF token.
pub async fn login(session: &Session, user: &User) -> WebResult<()> {
    session.cycle_id().await?;
    let auth = SessionAuth {
        user_id: user.id.get(),
        authenticated_at: time::OffsetDateTime::now_utc(),
    };
    session.insert(AUTH_KEY, &auth).await?;
    session
        .insert(CSRF_KEY, crate::users::random_token(32))
        .await?;
    Ok(())
}

/// The user of the session, if logged in and the login has not expired.
async fn session_user(session: &Session, state: &AppState) -> WebResult<Option<User>> {
    let Some(auth) = session.get::<SessionAuth>(AUTH_KEY).await? else {
        return Ok(None);
    };
    let fresh = time::OffsetDateTime::now_utc() - auth.authenticated_at < ABSOLUTE_LIFETIME;
    if !fresh {
        session.flush().await?;
        return Ok(None);
    }
    Ok(state
        .registry
        .user_by_id(UserId::from(auth.user_id))
        .await?)
}

/// An optional login, for the login page itself.
pub struct MaybeUser {
    pub user: Option<User>,
    pub session: Session,
}

impl FromRequestParts<AppState> for MaybeUser {
    type Rejection = WebError;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> WebResult<Self> {
        let session = session_of(parts, state).await?;
        let user = session_user(&session, state).await?;
        Ok(MaybeUser { user, session })
    }
}

/// A logged-in, active staff user. Anonymous → login page; others → 403.
pub struct Staff {
    pub user: User,
    pub session: Session,
}

impl Staff {
    /// What every page needs: the user for the menu and the CSRF token for forms.
    pub async fn ctx(&self) -> WebResult<Ctx> {
        Ok(Ctx {
            user: Some(NavUser {
                username: self.user.username.clone(),
                is_superuser: self.user.is_superuser,
            }),
            csrf: csrf_token(&self.session).await?,
        })
    }

    pub fn actor(&self) -> Actor {
        Actor::User(self.user.id)
    }
}

impl FromRequestParts<AppState> for Staff {
    type Rejection = WebError;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> WebResult<Self> {
        let session = session_of(parts, state).await?;
        let Some(user) = session_user(&session, state).await? else {
            // A POST without a session cannot carry a valid CSRF token: refuse
            // it as such rather than send a form submission to the login page.
            if !matches!(parts.method, Method::GET | Method::HEAD) {
                return Err(WebError::Csrf);
            }
            let next = parts
                .uri
                .path_and_query()
                .map(|p| p.as_str().to_string())
                .unwrap_or_else(|| "/dumps".into());
            return Err(WebError::LoginRequired { next });
        };
        if !user.is_active || !user.is_staff {
            return Err(WebError::Forbidden);
        }
        Ok(Staff { user, session })
    }
}

/// A staff user who is also a superuser (users, API keys, hard delete).
pub struct Superuser(pub Staff);

impl FromRequestParts<AppState> for Superuser {
    type Rejection = WebError;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> WebResult<Self> {
        let staff = Staff::from_request_parts(parts, state).await?;
        if !staff.user.is_superuser {
            return Err(WebError::Forbidden);
        }
        Ok(Superuser(staff))
    }
}

/// A urlencoded form whose `csrf_token` matched the session's token. The token
/// is checked before the form is parsed, so a POST without it is a 403 even
/// when the rest of the form is malformed, and nothing runs.
pub struct CsrfForm<T>(pub T);

impl<T: DeserializeOwned + Send + 'static> FromRequest<AppState> for CsrfForm<T> {
    type Rejection = WebError;
    async fn from_request(req: Request, state: &AppState) -> WebResult<Self> {
        let (mut parts, body) = req.into_parts();
        // Defence in depth beside the token: a browser says when a request
        // comes from another site (Fetch Metadata), and such a form is refused.
        let cross_site = parts
            .headers
            .get("sec-fetch-site")
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"cross-site"));
        if cross_site {
            return Err(WebError::Csrf);
        }
        let session = session_of(&mut parts, state).await?;
        let content_type = parts.headers.get(header::CONTENT_TYPE).cloned();
        let bytes = axum::body::to_bytes(body, FORM_LIMIT)
            .await
            .map_err(|_| WebError::BadRequest("the form is too large".into()))?;
        let rebuild = || {
            let mut req = Request::new(Body::from(bytes.clone()));
            *req.method_mut() = Method::POST;
            if let Some(ct) = &content_type {
                req.headers_mut().insert(header::CONTENT_TYPE, ct.clone());
            }
            req
        };
        let Ok(Form(pairs)) = rebuild().extract::<Form<Vec<(String, String)>>, _>().await else {
            return Err(WebError::Csrf);
        };
        let sent = pairs
            .iter()
            .find(|(k, _)| k == "csrf_token")
            .map(|(_, v)| v.as_str());
        let expected = session.get::<String>(CSRF_KEY).await?;
        let valid = match (sent, expected.as_deref()) {
            (Some(s), Some(e)) => !e.is_empty() && bool::from(s.as_bytes().ct_eq(e.as_bytes())),
            _ => false,
        };
        if !valid {
            return Err(WebError::Csrf);
        }
        let Form(value) = rebuild()
            .extract::<Form<T>, _>()
            .await
            .map_err(|e| WebError::BadRequest(format!("invalid form: {}", e.body_text())))?;
        Ok(CsrfForm(value))
    }
}

/// A form with nothing but its CSRF token (logout, deprecate).
#[derive(Deserialize)]
pub struct NoFields {}

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
use super::pages::{Ctx, LogoutOffer, NavUser};
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
    /// The user's session generation at login: when it has changed since
    /// (password, deactivation, staff rights), the session is over.
    #[serde(default)]
    generation: i64,
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

/// Log `user` in: a new session id (no fixation) and a new CSRF token. The
/// session is created here: an anonymous visitor has none.
pub async fn login(session: &Session, user: &User) -> WebResult<()> {
    session.cycle_id().await?;
    let auth = SessionAuth {
        user_id: user.id.get(),
        authenticated_at: time::OffsetDateTime::now_utc(),
        generation: user.session_generation,
    };
    session.insert(AUTH_KEY, &auth).await?;
    session
        .insert(CSRF_KEY, crate::users::random_token(32))
        .await?;
    Ok(())
}

/// Keep the session of a user who has just changed their own password (which
/// ended all their sessions): it takes the new generation, under a new id.
pub async fn keep_after_password_change(session: &Session, generation: i64) -> WebResult<()> {
    if let Some(mut auth) = session.get::<SessionAuth>(AUTH_KEY).await? {
        auth.generation = generation;
        session.cycle_id().await?;
        session.insert(AUTH_KEY, &auth).await?;
    }
    Ok(())
}

/// Who a request's session speaks for.
enum SessionState {
    Anonymous,
    /// It was logged in, and has just been ended (expired, or the user's
    /// password or access changed since).
    Ended,
    User(User),
}

async fn session_state(session: &Session, state: &AppState) -> WebResult<SessionState> {
    let Some(auth) = session.get::<SessionAuth>(AUTH_KEY).await? else {
        return Ok(SessionState::Anonymous);
    };
    let fresh = time::OffsetDateTime::now_utc() - auth.authenticated_at < ABSOLUTE_LIFETIME;
    let user = if fresh {
        state
            .registry
            .user_by_id(UserId::from(auth.user_id))
            .await?
    } else {
        None
    };
    match user {
        Some(user) if user.session_generation == auth.generation => Ok(SessionState::User(user)),
        _ => {
            session.flush().await?;
            Ok(SessionState::Ended)
        }
    }
}

/// An optional login, for the login page itself.
pub struct MaybeUser {
    pub user: Option<User>,
    pub session: Session,
}

impl MaybeUser {
    /// A logged-in user who may not use the staff pages can still log out.
    pub async fn logout_offer(&self) -> WebResult<Option<LogoutOffer>> {
        match &self.user {
            Some(user) if !is_staff(user) => Ok(Some(LogoutOffer {
                username: user.username.clone(),
                csrf: csrf_token(&self.session).await?,
            })),
            _ => Ok(None),
        }
    }
}

impl FromRequestParts<AppState> for MaybeUser {
    type Rejection = WebError;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> WebResult<Self> {
        let session = session_of(parts, state).await?;
        let user = match session_state(&session, state).await? {
            SessionState::User(user) => Some(user),
            SessionState::Anonymous | SessionState::Ended => None,
        };
        Ok(MaybeUser { user, session })
    }
}

/// Active and staff: may use the staff pages.
pub fn is_staff(user: &User) -> bool {
    user.is_active && user.is_staff
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
        let is_get = matches!(parts.method, Method::GET | Method::HEAD);
        let user = match session_state(&session, state).await? {
            SessionState::User(user) => user,
            // A POST without a session cannot carry a valid CSRF token: refuse
            // it as such rather than send a form submission to the login page.
            SessionState::Anonymous if !is_get => return Err(WebError::Csrf),
            SessionState::Anonymous | SessionState::Ended => {
                let next = match parts.uri.path_and_query() {
                    Some(p) if is_get => p.as_str().to_string(),
                    _ => "/dumps".into(),
                };
                return Err(WebError::LoginRequired { next });
            }
        };
        if !is_staff(&user) {
            let offer = LogoutOffer {
                username: user.username.clone(),
                csrf: csrf_token(&session).await?,
            };
            return Err(WebError::NotStaff(offer));
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

/// A urlencoded form body, read whole (bounded) before anything else.
struct RawForm {
    parts: Parts,
    bytes: axum::body::Bytes,
    content_type: Option<header::HeaderValue>,
    token: Option<String>,
}

impl RawForm {
    /// Read the form; a form a browser says comes from another site (Fetch
    /// Metadata, defence in depth beside the token) or that is not a form at
    /// all is refused as a CSRF failure.
    async fn read(req: Request) -> WebResult<RawForm> {
        let (parts, body) = req.into_parts();
        let cross_site = parts
            .headers
            .get("sec-fetch-site")
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"cross-site"));
        if cross_site {
            return Err(WebError::Csrf);
        }
        let content_type = parts.headers.get(header::CONTENT_TYPE).cloned();
        let bytes = axum::body::to_bytes(body, FORM_LIMIT)
            .await
            .map_err(|_| WebError::BadRequest("the form is too large".into()))?;
        let mut raw = RawForm {
            parts,
            bytes,
            content_type,
            token: None,
        };
        let Ok(Form(pairs)) = raw
            .rebuild()
            .extract::<Form<Vec<(String, String)>>, _>()
            .await
        else {
            return Err(WebError::Csrf);
        };
        raw.token = pairs
            .into_iter()
            .find(|(k, _)| k == "csrf_token")
            .map(|(_, v)| v);
        Ok(raw)
    }

    fn rebuild(&self) -> Request {
        let mut req = Request::new(Body::from(self.bytes.clone()));
        *req.method_mut() = Method::POST;
        if let Some(ct) = &self.content_type {
            req.headers_mut().insert(header::CONTENT_TYPE, ct.clone());
        }
        req
    }

    /// The form's fields, once its token has been checked against `expected`.
    async fn checked<T: DeserializeOwned + Send + 'static>(
        self,
        expected: Option<&str>,
    ) -> WebResult<T> {
        let valid = match (self.token.as_deref(), expected) {
            (Some(s), Some(e)) => !e.is_empty() && bool::from(s.as_bytes().ct_eq(e.as_bytes())),
            _ => false,
        };
        if !valid {
            return Err(WebError::Csrf);
        }
        let Form(value) = self
            .rebuild()
            .extract::<Form<T>, _>()
            .await
            .map_err(|e| WebError::BadRequest(format!("invalid form: {}", e.body_text())))?;
        Ok(value)
    }
}

/// A urlencoded form whose `csrf_token` matched the session's token. The token
/// is checked before the form is parsed, so a POST without it is a 403 even
/// when the rest of the form is malformed, and nothing runs.
pub struct CsrfForm<T>(pub T);

impl<T: DeserializeOwned + Send + 'static> FromRequest<AppState> for CsrfForm<T> {
    type Rejection = WebError;
    async fn from_request(req: Request, state: &AppState) -> WebResult<Self> {
        let mut raw = RawForm::read(req).await?;
        let session = session_of(&mut raw.parts, state).await?;
        let expected = session.get::<String>(CSRF_KEY).await?;
        Ok(CsrfForm(raw.checked(expected.as_deref()).await?))
    }
}

/// The login form: its `csrf_token` must match the signed login cookie
/// (there is no session before the login).
pub struct LoginCsrfForm<T>(pub T);

impl<T: DeserializeOwned + Send + 'static> FromRequest<AppState> for LoginCsrfForm<T> {
    type Rejection = WebError;
    async fn from_request(req: Request, state: &AppState) -> WebResult<Self> {
        let raw = RawForm::read(req).await?;
        let expected = super::login::token_of(&raw.parts.headers, &state.login_key);
        Ok(LoginCsrfForm(raw.checked(expected.as_deref()).await?))
    }
}

/// A form with nothing but its CSRF token (logout, deprecate).
#[derive(Deserialize)]
pub struct NoFields {}

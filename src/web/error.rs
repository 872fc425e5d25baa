//! The one error type of the web layer, rendered as an HTML page. A 5xx logs
//! its cause chain under a request id and shows the user only that id.

use askama::Template;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};

use super::pages::{ErrorPage, LogoutOffer};
use crate::error::Error;

#[derive(Debug, thiserror::Error)]
pub enum WebError {
    #[error("not found")]
    NotFound,
    #[error("forbidden")]
    Forbidden,
    /// A logged-in user who is not (or no longer) active staff.
    #[error("forbidden: not staff")]
    NotStaff(LogoutOffer),
    /// A POST without a valid CSRF token.
    #[error("invalid or missing CSRF token")]
    Csrf,
    #[error("{0}")]
    BadRequest(String),
    /// Anonymous request for a staff page: go to the login page, then come back.
    #[error("login required")]
    LoginRequired { next: String },
    /// Missing, bad or deprecated API key.
    #[error("unauthorized")]
    Unauthorized,
    #[error(transparent)]
    Internal(Error),
}

pub type WebResult<T> = Result<T, WebError>;

impl From<Error> for WebError {
    fn from(e: Error) -> Self {
        match e {
            // Refusals of the service layer are the user's to read; anything
            // else is ours, shown only as a request id.
            Error::Usage(message) => WebError::BadRequest(message),
            other => WebError::Internal(other),
        }
    }
}

impl From<askama::Error> for WebError {
    fn from(e: askama::Error) -> Self {
        WebError::Internal(Error::Internal(format!("template: {e}")))
    }
}

impl From<tower_sessions::session::Error> for WebError {
    fn from(e: tower_sessions::session::Error) -> Self {
        WebError::Internal(Error::Internal(format!("session: {e}")))
    }
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        let (status, title, message) = match self {
            WebError::LoginRequired { next } => {
                let target = format!("/login?next={}", super::url::encode_component(&next));
                return Redirect::to(&target).into_response();
            }
            WebError::Unauthorized => {
                let mut res = (StatusCode::UNAUTHORIZED, "invalid or missing API key\n").into_response();
                res.headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
                return res;
            }
            WebError::NotStaff(offer) => {
                return render(
                    StatusCode::FORBIDDEN,
                    "Forbidden",
                    "Your account may not use this service. Log out to sign in as someone else.",
                    Some(&offer),
                );
            }
            WebError::NotFound => (StatusCode::NOT_FOUND, "Not found", "There is nothing here.".to_string()),
            WebError::Forbidden => (
                StatusCode::FORBIDDEN,
                "Forbidden",
                "Your account may not open this page.".to_string(),
            ),
            WebError::Csrf => (
                StatusCode::FORBIDDEN,
                "Forbidden",
                "The form was refused: its security token is missing or expired. Reload the page and try again."
                    .to_string(),
            ),
            WebError::BadRequest(message) => (StatusCode::BAD_REQUEST, "Refused", message),
            WebError::Internal(e) => {
                let request_id = crate::users::random_token(8);
                tracing::error!(%request_id, "internal error: {}", crate::error::error_line(&e));
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Server error",
                    format!("Something went wrong on our side. Request id: {request_id}"),
                )
            }
        };
        error_page(status, title, &message)
    }
}

/// An error page; falls back to plain text if the template cannot render.
pub fn error_page(status: StatusCode, title: &str, message: &str) -> Response {
    render(status, title, message, None)
}

fn render(
    status: StatusCode,
    title: &str,
    message: &str,
    logout: Option<&LogoutOffer>,
) -> Response {
    let page = ErrorPage {
        title,
        message,
        ctx: Default::default(),
        logout,
    };
    match page.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(_) => (status, format!("{title}: {message}\n")).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body(res: Response) -> String {
        let bytes = axum::body::to_bytes(res.into_body(), 1 << 20)
            .await
            .unwrap();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn refusals_show_their_text_and_internal_failures_only_an_id() {
        let refused = WebError::from(Error::Usage("a key name is 1 to 200 characters".into()));
        let res = refused.into_response();
        assert_eq!(res.status(), StatusCode::BAD_REQUEST);
        assert!(
            body(res)
                .await
                .contains("a key name is 1 to 200 characters")
        );

        let internal = WebError::from(Error::Internal("password hashing failed: panic".into()));
        let res = internal.into_response();
        assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let text = body(res).await;
        assert!(text.contains("Request id: "), "{text}");
        assert!(!text.contains("hashing"), "{text}");
    }
}

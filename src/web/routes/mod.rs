//! Routes, one module per area; handlers stay thin: extract, parse, call the
//! registry, render or redirect (303 after a POST).

mod account;
mod admin;
mod assets;
mod download;
mod dumps;
mod object;
mod schedules;
mod verify;

use axum::Router;
use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::{get, post};

use super::AppState;
use super::error::{WebError, WebResult};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/",
            get(|| async { axum::response::Redirect::to("/dumps") }),
        )
        .route("/healthz", get(healthz))
        .route("/static/{file}", get(assets::asset))
        .route("/login", get(account::login_page).post(account::login))
        .route("/logout", post(account::logout))
        .route("/dumps", get(dumps::list).post(dumps::create))
        .route("/dumps/new", get(dumps::new_page))
        .route("/dumps/bulk", post(dumps::bulk))
        .route("/dumps/{id}", get(dumps::detail))
        .route("/dumps/{id}/status", get(dumps::status))
        .route("/dumps/{id}/logs", get(dumps::logs))
        .route("/dumps/{id}/deprecate", post(dumps::deprecate))
        .route("/dumps/{id}/download", get(download::download))
        .route("/dumps/{id}/verify", post(verify::verify))
        .route("/schedules", get(schedules::list).post(schedules::create))
        .route("/schedules/{id}/enable", post(schedules::enable))
        .route("/schedules/{id}/disable", post(schedules::disable))
        .route("/schedules/{id}/remove", post(schedules::remove))
        .route("/api/dumps/latest", get(download::api_latest))
        .route(
            "/api-keys",
            get(admin::api_keys).post(admin::create_api_key),
        )
        .route("/api-keys/{id}/deprecate", post(admin::deprecate_api_key))
        .route("/users", get(admin::users).post(admin::create_user))
        .route("/users/{id}/flags", post(admin::user_flags))
        .route("/users/{id}/password", post(admin::user_password))
        .route("/actions", get(admin::actions))
        .fallback(|| async { WebError::NotFound })
}

/// Up, and the registry answers; 503 with the reasons as JSON when an
/// enabled schedule's last run failed, an available archive is corrupt or
/// the registry does not answer. The reasons are generic: the page is public.
async fn healthz(State(state): State<AppState>) -> axum::response::Response {
    let checked = match state.registry.ping().await {
        Ok(()) => crate::health::problems(&state.registry).await,
        Err(e) => Err(e),
    };
    let reasons = match checked {
        Ok(problems) if problems.is_empty() => return "ok\n".into_response(),
        Ok(problems) => problems,
        Err(e) => {
            let error = crate::error::error_line(&e);
            tracing::error!(?error, "health: the registry does not answer");
            vec!["registry unavailable".to_string()]
        }
    };
    let body = serde_json::json!({ "status": "unhealthy", "reasons": reasons });
    (
        axum::http::StatusCode::SERVICE_UNAVAILABLE,
        axum::Json(body),
    )
        .into_response()
}

/// A path id that does not parse names nothing: 404.
fn parse_id<T: std::str::FromStr>(raw: &str) -> WebResult<T> {
    raw.parse().map_err(|_| WebError::NotFound)
}

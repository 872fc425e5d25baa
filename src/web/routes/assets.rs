//! CSS and JavaScript, compiled into the binary.

use axum::extract::Path;
use axum::http::header;
use axum::response::IntoResponse;

use crate::web::error::WebError;

const APP_CSS: &str = include_str!("../../../static/app.css");
const APP_JS: &str = include_str!("../../../static/app.js");

pub async fn asset(Path(file): Path<String>) -> Result<impl IntoResponse, WebError> {
    let (body, content_type) = match file.as_str() {
        "app.css" => (APP_CSS, "text/css; charset=utf-8"),
        "app.js" => (APP_JS, "text/javascript; charset=utf-8"),
        _ => return Err(WebError::NotFound),
    };
    Ok((
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        body,
    ))
}

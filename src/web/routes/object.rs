//! Serving an archive of an object store, streamed through: what `ServeFile`
//! does for a local file (HEAD, one range as 206, 416 for an unsatisfiable
//! one, `Content-Length`, `Last-Modified`), the bytes read from the bucket
//! as they go out, in constant memory.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::store::{S3Store, Stored};
use crate::web::error::{WebError, WebResult};

/// The response to `req` for the archive `name` (its `Range` header, if
/// any, already checked to be one range to honour).
pub async fn serve_object(
    req: Request,
    store: &S3Store,
    name: &str,
    stored: &Stored,
) -> WebResult<Response> {
    let size = stored.size;
    let range = match req.headers().get(header::RANGE).map(|r| r.to_str()) {
        None => None,
        Some(text) => {
            let valid = text
                .ok()
                .and_then(|t| http_range_header::parse_range_header(t).ok())
                .and_then(|p| p.validate(size).ok())
                .filter(|ranges| ranges.len() == 1);
            match valid {
                Some(ranges) => Some(ranges[0].clone()),
                None => return Ok(unsatisfiable(size)),
            }
        }
    };
    let (status, start, len) = match &range {
        Some(r) => (
            StatusCode::PARTIAL_CONTENT,
            *r.start(),
            r.end() - r.start() + 1,
        ),
        None => (StatusCode::OK, 0, size),
    };
    let body = if req.method() == Method::HEAD || len == 0 {
        Body::empty()
    } else {
        let got = store
            .get(name, range.map(|r| *r.start()..r.end() + 1))
            .await?
            .ok_or(WebError::NotFound)?;
        Body::from_stream(got.into_stream())
    };
    let mut res = (status, body).into_response();
    let headers = res.headers_mut();
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    if let Ok(v) = HeaderValue::from_str(&httpdate::fmt_http_date(stored.modified)) {
        headers.insert(header::LAST_MODIFIED, v);
    }
    if status == StatusCode::PARTIAL_CONTENT
        && let Ok(v) = HeaderValue::from_str(&format!(
            "bytes {start}-{}/{size}",
            start + len.saturating_sub(1)
        ))
    {
        headers.insert(header::CONTENT_RANGE, v);
    }
    Ok(res)
}

/// 416, saying the size, as for a local file.
fn unsatisfiable(size: u64) -> Response {
    let mut res = StatusCode::RANGE_NOT_SATISFIABLE.into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
        res.headers_mut().insert(header::CONTENT_RANGE, v);
    }
    res
}

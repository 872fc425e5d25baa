//! Archive downloads: the staff download of a dump and the API of
//! `diskette load --server`. Both authorize first, take the archive from the
//! registry row, then hand the request to `ServeFile` (a local store) or
//! stream the object through (an S3 store), which answer in constant memory
//! HEAD, single ranges (206/416) and conditional requests.
//!
//! `ServeFile` ignores `If-Range` and answers 416 to a `Range` it cannot
//! parse, so the `Range` header is dropped first when RFC 9110 says to
//! ignore it (14.2, 13.1.5): a resumed download then gets the whole current
//! archive, never a slice of another one.

use std::time::{Duration, SystemTime};

use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use tower::ServiceExt;
use tower_http::services::ServeFile;

use super::parse_id;
use crate::registry::{Actor, Dump, DumpId, OptionSet};
use crate::store::{ArchiveStore, Stored};
use crate::web::AppState;
use crate::web::auth::Staff;
use crate::web::error::{WebError, WebResult};

/// Response header carrying the BLAKE2b checksum of the archive.
pub const CHECKSUM_HEADER: &str = "x-diskette-checksum";
/// Read size of the file stream: large chunks keep loopback near 1 GB/s.
const CHUNK: usize = 256 * 1024;

pub async fn download(
    staff: Staff,
    State(state): State<AppState>,
    Path(id): Path<String>,
    req: Request,
) -> WebResult<Response> {
    let id: DumpId = parse_id(&id)?;
    let (dump, stored) = state
        .registry
        .download_target(id)
        .await?
        .ok_or(WebError::NotFound)?;
    if let Some(refusal) = super::verify::refuse_corrupt(&state.registry, &dump).await? {
        return Ok(refusal);
    }
    let mut req = req;
    drop_ignored_range(&mut req, &dump, &stored);
    let counts = starts_a_download(&req);
    let res = serve_archive(req, state.registry.store(), &dump, &stored).await?;
    if counts && res.status().is_success() {
        state.registry.record_download(id, staff.actor()).await?;
    }
    Ok(res)
}

#[derive(Deserialize)]
pub struct LatestQuery {
    data: Option<String>,
    storages: Option<String>,
}

fn flag(v: Option<&str>) -> WebResult<bool> {
    match v {
        None | Some("0") | Some("false") | Some("no") | Some("") => Ok(false),
        Some("1") | Some("true") | Some("yes") => Ok(true),
        Some(other) => Err(WebError::BadRequest(format!("{other:?} is not a boolean"))),
    }
}

/// `GET /api/dumps/latest?data=1&storages=1` with `Authorization: Bearer KEY`.
pub async fn api_latest(
    State(state): State<AppState>,
    Query(q): Query<LatestQuery>,
    mut req: Request,
) -> WebResult<Response> {
    let key = bearer(req.headers()).ok_or(WebError::Unauthorized)?;
    let key = state
        .registry
        .authenticate_key(key)
        .await?
        .ok_or(WebError::Unauthorized)?;
    let set = OptionSet::new(flag(q.data.as_deref())?, flag(q.storages.as_deref())?)
        .map_err(WebError::BadRequest)?;
    let (dump, stored) = state
        .registry
        .latest_target(set)
        .await?
        .ok_or(WebError::NotFound)?;
    if let Some(refusal) = super::verify::refuse_corrupt(&state.registry, &dump).await? {
        return Ok(refusal);
    }
    drop_ignored_range(&mut req, &dump, &stored);
    // Counted once the answer is known to carry the archive.
    let counts = starts_a_download(&req);
    let res = serve_archive(req, state.registry.store(), &dump, &stored).await?;
    if counts && res.status().is_success() {
        let actor = Actor::ApiKey(key.id);
        state.registry.record_download(dump.id, actor).await?;
    }
    Ok(res)
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Remove a `Range` header the server must or may ignore: one that does not
/// parse, one of several ranges, or one whose `If-Range` validator is not the current archive's (an ETag
/// compared strongly, so a weak one never matches; a date only when it is
/// exactly the file's modification time and that time is a strong validator).
fn drop_ignored_range(req: &mut Request, dump: &Dump, stored: &Stored) {
    let headers = req.headers();
    let Some(range) = headers.get(header::RANGE) else {
        return;
    };
    // ServeFile answers 416 to several ranges; RFC 9110 14.2 lets a server
    // ignore them and send the whole file.
    let single = range
        .to_str()
        .is_ok_and(|r| http_range_header::parse_range_header(r).is_ok_and(|p| p.ranges.len() == 1));
    let current = match headers.get(header::IF_RANGE) {
        None => true,
        Some(v) => v
            .to_str()
            .is_ok_and(|v| if_range_matches(v.trim(), dump, stored)),
    };
    if !single || !current {
        req.headers_mut().remove(header::RANGE);
    }
    req.headers_mut().remove(header::IF_RANGE);
}

fn if_range_matches(validator: &str, dump: &Dump, stored: &Stored) -> bool {
    if validator.starts_with('"') || validator.starts_with("W/") {
        return dump
            .checksum()
            .is_some_and(|c| validator == format!("\"{c}\""));
    }
    let Ok(date) = httpdate::parse_http_date(validator) else {
        return false;
    };
    let modified = stored.modified;
    // What `Last-Modified` shows: whole seconds.
    let shown = httpdate::parse_http_date(&httpdate::fmt_http_date(modified));
    // A modification time less than a second old may still change within
    // that second: a weak validator (RFC 9110 8.8.2.2).
    let strong = modified + Duration::from_secs(1) <= SystemTime::now();
    strong && shown.is_ok_and(|shown| shown == date)
}

/// `If-None-Match` compares weakly (RFC 9110 13.1.2): `W/"x"` matches `"x"`.
fn none_match(header: &str, etag: &str) -> bool {
    header
        .split(',')
        .map(str::trim)
        .any(|t| t == "*" || t.strip_prefix("W/").unwrap_or(t) == etag)
}

/// A GET of the whole file or of its first bytes: what the history counts.
fn starts_a_download(req: &Request) -> bool {
    req.method() == Method::GET
        && req
            .headers()
            .get(header::RANGE)
            .is_none_or(|r| r.to_str().is_ok_and(|r| r.trim().starts_with("bytes=0-")))
}

async fn serve_archive(
    req: Request,
    store: &ArchiveStore,
    dump: &Dump,
    stored: &Stored,
) -> WebResult<Response> {
    let checksum = dump.checksum().ok_or(WebError::NotFound)?;
    let etag = format!("\"{checksum}\"");
    let not_modified = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| none_match(v, &etag));
    let mut res = if not_modified {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let name = dump.filename.as_deref().ok_or(WebError::NotFound)?;
        match store {
            ArchiveStore::Local(_) => {
                let path = store.local_path(name).ok_or(WebError::NotFound)?;
                let Ok(res) = ServeFile::new(path)
                    .with_buf_chunk_size(CHUNK)
                    .oneshot(req)
                    .await;
                res.map(Body::new)
            }
            ArchiveStore::S3(s3) => super::object::serve_object(req, s3, name, stored).await?,
        }
    };
    let status = res.status();
    let headers = res.headers_mut();
    if status.is_success() || status == StatusCode::NOT_MODIFIED {
        // A browser must save the archive as it is, never unpack it.
        headers.remove(header::CONTENT_ENCODING);
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/gzip"),
        );
        let name = dump.filename.as_deref().unwrap_or("diskette.tar.gz");
        let safe: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_graphic() && c != '"' && c != '\\' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{safe}\"")) {
            headers.insert(header::CONTENT_DISPOSITION, v);
        }
        if let Ok(v) = HeaderValue::from_str(&etag) {
            headers.insert(header::ETAG, v);
        }
        if let Ok(v) = HeaderValue::from_str(checksum.as_str()) {
            headers.insert(CHECKSUM_HEADER, v);
        }
        headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
        headers.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("private, no-store"),
        );
    }
    Ok(res)
}

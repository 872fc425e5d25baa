//! The Verify button of a dump, and the 409 page of a corrupt archive.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};

use super::parse_id;
use crate::registry::{Dump, DumpId};
use crate::web::AppState;
use crate::web::auth::{CsrfForm, NoFields, Staff};
use crate::web::error::{WebResult, error_page};

/// Re-read the archive now; the detail page shows the outcome.
pub async fn verify(
    staff: Staff,
    State(state): State<AppState>,
    Path(id): Path<String>,
    CsrfForm(_): CsrfForm<NoFields>,
) -> WebResult<Response> {
    let id: DumpId = parse_id(&id)?;
    state
        .registry
        .dump(id)
        .await?
        .ok_or(crate::web::error::WebError::NotFound)?;
    crate::verify::verify_dump(&state.registry, id, staff.actor()).await?;
    Ok(Redirect::to(&format!("/dumps/{id}")).into_response())
}

/// A corrupt archive is never served: 409 with what was found.
pub fn refuse_corrupt(dump: &Dump) -> Option<Response> {
    let error = dump.verify_error.as_deref()?;
    let message = format!(
        "The archive of dump {} failed its last verification and is not served: {error}. \
         A fresh dump of the same options was queued to replace it.",
        dump.id
    );
    Some(error_page(
        StatusCode::CONFLICT,
        "Archive corrupt",
        &message,
    ))
}

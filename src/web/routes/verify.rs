//! The Verify button of a dump, and the 409 page of a corrupt archive.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};

use super::parse_id;
use crate::registry::{Dump, DumpId, Registry};
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

/// A corrupt archive is never served: 409 with what was found, and whether
/// a dump of its options is on the way to replace it.
pub async fn refuse_corrupt(registry: &Registry, dump: &Dump) -> WebResult<Option<Response>> {
    let Some(error) = dump.verify_error.as_deref() else {
        return Ok(None);
    };
    let next = if registry.dump_in_flight(dump.option_set()).await? {
        "A dump of the same options is queued or running and will replace it."
    } else {
        "No dump of the same options is queued or running: create one to replace it."
    };
    let message = format!(
        "The archive of dump {} failed its last verification and is not served: {error}. {next}",
        dump.id
    );
    Ok(Some(error_page(
        StatusCode::CONFLICT,
        "Archive corrupt",
        &message,
    )))
}

//! The Schedules page (superuser): add, enable, disable, remove; each
//! schedule with its next run, last run and last outcome.

use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde::Deserialize;
use time::OffsetDateTime;

use super::parse_id;
use crate::registry::{OptionSet, ScheduleId};
use crate::schedule::{self, NewSchedule};
use crate::web::AppState;
use crate::web::auth::{CsrfForm, NoFields, Staff, Superuser};
use crate::web::error::{WebError, WebResult};
use crate::web::pages::SchedulesPage;

const FLASH_KEY: &str = "schedules_flash";

/// What the add form holds, kept on a refused submission.
#[derive(Deserialize, Default)]
pub struct ScheduleForm {
    #[serde(default)]
    cron: String,
    with_data: Option<String>,
    with_storages: Option<String>,
    #[serde(default)]
    timezone: String,
    enabled: Option<String>,
}

async fn page(
    staff: &Staff,
    state: &AppState,
    form: ScheduleForm,
    error: Option<String>,
) -> WebResult<SchedulesPage> {
    let notice = staff.session.remove::<String>(FLASH_KEY).await?;
    Ok(SchedulesPage {
        ctx: staff.ctx().await?,
        schedules: schedule::views(&state.registry, OffsetDateTime::now_utc()).await?,
        cron: form.cron,
        with_data: form.with_data.is_some(),
        with_storages: form.with_storages.is_some(),
        timezone: if form.timezone.is_empty() {
            "UTC".into()
        } else {
            form.timezone
        },
        notice,
        error,
    })
}

pub async fn list(
    Superuser(staff): Superuser,
    State(state): State<AppState>,
) -> WebResult<Response> {
    let form = ScheduleForm {
        cron: "0 3 * * *".into(),
        with_data: Some("1".into()),
        with_storages: Some("1".into()),
        ..Default::default()
    };
    let page = page(&staff, &state, form, None).await?;
    Ok(Html(page.render()?).into_response())
}

pub async fn create(
    Superuser(staff): Superuser,
    State(state): State<AppState>,
    CsrfForm(form): CsrfForm<ScheduleForm>,
) -> WebResult<Response> {
    let new = OptionSet::new(form.with_data.is_some(), form.with_storages.is_some()).map(|set| {
        NewSchedule {
            cron: form.cron.clone(),
            set,
            timezone: form.timezone.clone(),
            enabled: form.enabled.is_some(),
        }
    });
    let added = match new {
        Ok(new) => schedule::add(&state.registry, new).await,
        Err(message) => Err(crate::Error::Usage(message)),
    };
    match added {
        Ok(id) => {
            staff
                .session
                .insert(FLASH_KEY, format!("Schedule {id} added."))
                .await?;
            Ok(Redirect::to("/schedules").into_response())
        }
        Err(crate::Error::Usage(message)) => {
            let page = page(&staff, &state, form, Some(message)).await?;
            Ok((StatusCode::BAD_REQUEST, Html(page.render()?)).into_response())
        }
        Err(e) => Err(e.into()),
    }
}

async fn change(
    staff: &Staff,
    id: &str,
    change: impl AsyncFnOnce(ScheduleId) -> crate::Result<String>,
) -> WebResult<Response> {
    let id: ScheduleId = parse_id(id)?;
    let notice = match change(id).await {
        Ok(notice) => notice,
        Err(crate::Error::Usage(_)) => return Err(WebError::NotFound),
        Err(e) => return Err(e.into()),
    };
    staff.session.insert(FLASH_KEY, notice).await?;
    Ok(Redirect::to("/schedules").into_response())
}

pub async fn enable(
    Superuser(staff): Superuser,
    State(state): State<AppState>,
    Path(id): Path<String>,
    CsrfForm(_): CsrfForm<NoFields>,
) -> WebResult<Response> {
    change(&staff, &id, async |id| {
        state.registry.set_schedule_enabled(id, true).await?;
        Ok(format!("Schedule {id} enabled."))
    })
    .await
}

pub async fn disable(
    Superuser(staff): Superuser,
    State(state): State<AppState>,
    Path(id): Path<String>,
    CsrfForm(_): CsrfForm<NoFields>,
) -> WebResult<Response> {
    change(&staff, &id, async |id| {
        state.registry.set_schedule_enabled(id, false).await?;
        Ok(format!("Schedule {id} disabled."))
    })
    .await
}

pub async fn remove(
    Superuser(staff): Superuser,
    State(state): State<AppState>,
    Path(id): Path<String>,
    CsrfForm(_): CsrfForm<NoFields>,
) -> WebResult<Response> {
    change(&staff, &id, async |id| {
        state.registry.remove_schedule(id).await?;
        Ok(format!("Schedule {id} removed; the dumps it made stay."))
    })
    .await
}

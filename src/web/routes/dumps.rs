//! Dump list, creation, detail, logs, deprecation and bulk actions.

use askama::Template;
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde::{Deserialize, Serialize};
use tower_sessions::Session;

use super::parse_id;
use crate::registry::space;
use crate::registry::{DumpFilter, DumpId, DumpStatus, OptionSet};
use crate::web::AppState;
use crate::web::auth::{CsrfForm, NoFields, Staff};
use crate::web::error::{WebError, WebResult};
use crate::web::pages::{Choice, Contents, DumpDetailPage, DumpListPage, NewDumpPage, human_size};
use crate::web::url::encode_component;

const PAGE_SIZE: i64 = 25;
const FLASH_KEY: &str = "flash";

#[derive(Deserialize, Default)]
pub struct ListQuery {
    available: Option<String>,
    options: Option<String>,
    status: Option<String>,
    page: Option<String>,
}

impl ListQuery {
    /// Unknown filter values mean "any"; the form only offers valid ones.
    fn filter(&self) -> DumpFilter {
        DumpFilter {
            available: match self.available.as_deref() {
                Some("yes") => Some(true),
                Some("no") => Some(false),
                _ => None,
            },
            option_set: self.options.as_deref().and_then(|o| o.parse().ok()),
            status: self.status.as_deref().and_then(|s| s.parse().ok()),
        }
    }

    fn url(&self, page: i64) -> String {
        let mut url = format!("/dumps?page={page}");
        for (key, value) in [
            ("available", &self.available),
            ("options", &self.options),
            ("status", &self.status),
        ] {
            if let Some(v) = value.as_deref().filter(|v| !v.is_empty()) {
                url.push_str(&format!("&{key}={}", encode_component(v)));
            }
        }
        url
    }
}

fn choices(current: Option<&str>, options: &[(&str, &str)]) -> Vec<Choice> {
    options
        .iter()
        .map(|(value, label)| Choice {
            value: value.to_string(),
            label: label.to_string(),
            selected: current.unwrap_or("") == *value,
        })
        .collect()
}

/// `?page=`: a whole number from 1; one too large for any integer type is
/// simply past the last page (the registry clamps it).
fn page_number(raw: Option<&str>) -> WebResult<u64> {
    match raw.map(str::trim) {
        None | Some("") => Ok(1),
        Some(p) if p.bytes().all(|b| b.is_ascii_digit()) && p.bytes().any(|b| b != b'0') => {
            Ok(p.parse().unwrap_or(u64::MAX))
        }
        Some(p) => Err(WebError::BadRequest(format!(
            "page {p:?} is not a page number (a whole number from 1)"
        ))),
    }
}

pub async fn list(
    staff: Staff,
    State(state): State<AppState>,
    Query(q): Query<ListQuery>,
) -> WebResult<Response> {
    let filter = q.filter();
    let page = page_number(q.page.as_deref())?;
    let (dumps, total, page) = state.registry.list_page(&filter, PAGE_SIZE, page).await?;
    let pages = ((total + PAGE_SIZE - 1) / PAGE_SIZE).max(1);
    let set_options: Vec<(&str, &str)> = std::iter::once(("", "Any"))
        .chain(OptionSet::ALL.iter().map(|o| (o.key(), o.label())))
        .collect();
    let status_options: Vec<(&str, &str)> = std::iter::once(("", "Any"))
        .chain(DumpStatus::ALL.iter().map(|s| (s.as_str(), s.as_str())))
        .collect();
    let notice = staff.session.remove::<String>(FLASH_KEY).await?;
    let page_view = DumpListPage {
        ctx: staff.ctx().await?,
        dumps,
        availability: choices(
            q.available.as_deref(),
            &[("", "Any"), ("yes", "Available"), ("no", "Deprecated")],
        ),
        option_sets: choices(q.options.as_deref(), &set_options),
        statuses: choices(q.status.as_deref(), &status_options),
        page,
        pages,
        total,
        prev_url: (page > 1).then(|| q.url(page - 1)),
        next_url: (page < pages).then(|| q.url(page + 1)),
        notice,
    };
    Ok(Html(page_view.render()?).into_response())
}

async fn new_dump_page(
    staff: &Staff,
    state: &AppState,
    error: Option<String>,
) -> WebResult<NewDumpPage> {
    let space = space::estimate(state.config.clone()).await?;
    let config = &state.config;
    let apps = config
        .apps
        .iter()
        .map(|a| {
            if a.models.is_empty() || a.models == [a.name.clone()] {
                a.name.clone()
            } else {
                format!("{} ({})", a.name, a.models.join(", "))
            }
        })
        .collect();
    let storages = config
        .storages
        .paths
        .iter()
        .map(|p| {
            p.strip_prefix(&config.storages.basepath)
                .unwrap_or(p)
                .display()
                .to_string()
        })
        .collect();
    Ok(NewDumpPage {
        ctx: staff.ctx().await?,
        contents: Contents { apps, storages },
        needed: human_size(space.needed as i64),
        free: space
            .free
            .map(|f| human_size(f as i64))
            .unwrap_or_else(|| "unknown".into()),
        enough_space: space.enough(),
        error,
    })
}

pub async fn new_page(staff: Staff, State(state): State<AppState>) -> WebResult<Response> {
    let page = new_dump_page(&staff, &state, None).await?;
    Ok(Html(page.render()?).into_response())
}

#[derive(Deserialize)]
pub struct CreateForm {
    with_data: Option<String>,
    with_storages: Option<String>,
}

fn checked(v: &Option<String>) -> bool {
    v.as_deref()
        .is_some_and(|v| !v.is_empty() && v != "0" && v != "false")
}

pub async fn create(
    staff: Staff,
    State(state): State<AppState>,
    CsrfForm(form): CsrfForm<CreateForm>,
) -> WebResult<Response> {
    let set = match OptionSet::new(checked(&form.with_data), checked(&form.with_storages)) {
        Ok(set) => set,
        Err(message) => {
            let page = new_dump_page(&staff, &state, Some(message)).await?;
            return Ok((StatusCode::BAD_REQUEST, Html(page.render()?)).into_response());
        }
    };
    let id = state.registry.create_dump(set, staff.actor()).await?;
    Ok(Redirect::to(&format!("/dumps/{id}")).into_response())
}

pub async fn detail(
    staff: Staff,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> WebResult<Response> {
    let id: DumpId = parse_id(&id)?;
    let dump = state.registry.dump(id).await?.ok_or(WebError::NotFound)?;
    let downloadable = state.registry.download_target(id).await?.is_some() && !dump.is_corrupt();
    let page = DumpDetailPage {
        ctx: staff.ctx().await?,
        dump,
        downloadable,
    };
    Ok(Html(page.render()?).into_response())
}

#[derive(Serialize)]
struct StatusJson {
    id: DumpId,
    status: DumpStatus,
    running: bool,
    available: bool,
    deprecated: bool,
    progress: String,
    progress_bytes: i64,
    progress_files: i64,
}

/// For the live status of the detail page.
pub async fn status(
    _staff: Staff,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> WebResult<Response> {
    let id: DumpId = parse_id(&id)?;
    let d = state.registry.dump(id).await?.ok_or(WebError::NotFound)?;
    Ok(Json(StatusJson {
        id,
        status: d.status,
        running: d.status.in_flight(),
        available: d.is_available(),
        deprecated: d.deprecated,
        progress: d.progress_human(),
        progress_bytes: d.progress_bytes,
        progress_files: d.progress_files,
    })
    .into_response())
}

pub async fn logs(
    _staff: Staff,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> WebResult<Response> {
    let id: DumpId = parse_id(&id)?;
    let dump = state.registry.dump(id).await?.ok_or(WebError::NotFound)?;
    let mut text = state.registry.logs(id).await?.unwrap_or_default();
    if text.is_empty() {
        text.push_str("(no log yet)\n");
    }
    if let Some(error) = &dump.error
        && !text.contains(error.as_str())
    {
        text.push_str(&format!("error: {error}\n"));
    }
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response())
}

pub async fn deprecate(
    staff: Staff,
    State(state): State<AppState>,
    Path(id): Path<String>,
    CsrfForm(_): CsrfForm<NoFields>,
) -> WebResult<Response> {
    let id: DumpId = parse_id(&id)?;
    state.registry.dump(id).await?.ok_or(WebError::NotFound)?;
    state.registry.deprecate(&[id], staff.actor()).await?;
    Ok(Redirect::to(&format!("/dumps/{id}")).into_response())
}

/// Deprecate, or (superuser) delete, the selected dumps.
pub async fn bulk(
    staff: Staff,
    State(state): State<AppState>,
    CsrfForm(pairs): CsrfForm<Vec<(String, String)>>,
) -> WebResult<Response> {
    let action = pairs
        .iter()
        .find(|(k, _)| k == "action")
        .map(|(_, v)| v.as_str());
    let ids: Vec<DumpId> = pairs
        .iter()
        .filter(|(k, _)| k == "ids")
        .map(|(_, v)| v.parse().map_err(WebError::BadRequest))
        .collect::<WebResult<_>>()?;
    let notice = match action {
        Some("deprecate") => {
            let n = state.registry.deprecate(&ids, staff.actor()).await?;
            format!("{n} dump(s) deprecated.")
        }
        Some("delete") => {
            if !staff.user.is_superuser {
                return Err(WebError::Forbidden);
            }
            let n = state.registry.delete(&ids, staff.actor()).await?;
            format!("{n} dump(s) deleted.")
        }
        _ => return Err(WebError::BadRequest("unknown bulk action".into())),
    };
    flash(&staff.session, notice).await?;
    Ok(Redirect::to("/dumps").into_response())
}

async fn flash(session: &Session, message: String) -> WebResult<()> {
    session.insert(FLASH_KEY, message).await?;
    Ok(())
}

//! Superuser pages (API keys, users) and the recent actions.

use askama::Template;
use axum::extract::{Path, State};
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::parse_id;
use crate::registry::{ApiKeyId, Password, UserId, Username};
use crate::web::AppState;
use crate::web::auth::{CsrfForm, NoFields, Staff, Superuser};
use crate::web::error::{WebError, WebResult};
use crate::web::pages::{ActionsPage, ApiKeysPage, UsersPage};

const FLASH_KEY: &str = "users_flash";

pub async fn api_keys(
    Superuser(staff): Superuser,
    State(state): State<AppState>,
) -> WebResult<Response> {
    let page = ApiKeysPage {
        ctx: staff.ctx().await?,
        keys: state.registry.api_keys().await?,
        new_key: None,
    };
    Ok(Html(page.render()?).into_response())
}

#[derive(Deserialize)]
pub struct KeyForm {
    name: String,
}

/// The new key is rendered in the response itself: it is never stored, so it
/// cannot be shown again after a redirect.
pub async fn create_api_key(
    Superuser(staff): Superuser,
    State(state): State<AppState>,
    CsrfForm(form): CsrfForm<KeyForm>,
) -> WebResult<Response> {
    let (_, key) = state
        .registry
        .create_api_key(&form.name, staff.actor())
        .await?;
    let page = ApiKeysPage {
        ctx: staff.ctx().await?,
        keys: state.registry.api_keys().await?,
        new_key: Some(key),
    };
    Ok(Html(page.render()?).into_response())
}

pub async fn deprecate_api_key(
    Superuser(_): Superuser,
    State(state): State<AppState>,
    Path(id): Path<String>,
    CsrfForm(_): CsrfForm<NoFields>,
) -> WebResult<Response> {
    let id: ApiKeyId = parse_id(&id)?;
    state.registry.deprecate_api_key(id).await?;
    Ok(Redirect::to("/api-keys").into_response())
}

pub async fn users(
    Superuser(staff): Superuser,
    State(state): State<AppState>,
) -> WebResult<Response> {
    let notice = staff.session.remove::<String>(FLASH_KEY).await?;
    let page = UsersPage {
        ctx: staff.ctx().await?,
        users: state.registry.users().await?,
        notice,
    };
    Ok(Html(page.render()?).into_response())
}

#[derive(Deserialize)]
pub struct NewUserForm {
    username: String,
    password: String,
    is_superuser: Option<String>,
}

pub async fn create_user(
    Superuser(staff): Superuser,
    State(state): State<AppState>,
    CsrfForm(form): CsrfForm<NewUserForm>,
) -> WebResult<Response> {
    let username: Username = form.username.trim().parse().map_err(WebError::BadRequest)?;
    let password = Password::new_strong(form.password).map_err(WebError::BadRequest)?;
    state
        .registry
        .create_user(&username, &password, form.is_superuser.is_some())
        .await?;
    staff
        .session
        .insert(FLASH_KEY, format!("User {username} added."))
        .await?;
    Ok(Redirect::to("/users").into_response())
}

#[derive(Deserialize)]
pub struct FlagsForm {
    is_active: Option<String>,
    is_staff: Option<String>,
    is_superuser: Option<String>,
}

pub async fn user_flags(
    Superuser(staff): Superuser,
    State(state): State<AppState>,
    Path(id): Path<String>,
    CsrfForm(form): CsrfForm<FlagsForm>,
) -> WebResult<Response> {
    let id: UserId = parse_id(&id)?;
    let user = state
        .registry
        .user_by_id(id)
        .await?
        .ok_or(WebError::NotFound)?;
    let (active, is_staff, superuser) = (
        form.is_active.is_some(),
        form.is_staff.is_some(),
        form.is_superuser.is_some(),
    );
    state
        .registry
        .set_user_flags(staff.actor(), id, active, is_staff, superuser)
        .await?;
    staff
        .session
        .insert(FLASH_KEY, format!("User {} updated.", user.username))
        .await?;
    Ok(Redirect::to("/users").into_response())
}

#[derive(Deserialize)]
pub struct PasswordForm {
    password: String,
}

pub async fn user_password(
    Superuser(staff): Superuser,
    State(state): State<AppState>,
    Path(id): Path<String>,
    CsrfForm(form): CsrfForm<PasswordForm>,
) -> WebResult<Response> {
    let id: UserId = parse_id(&id)?;
    let user = state
        .registry
        .user_by_id(id)
        .await?
        .ok_or(WebError::NotFound)?;
    let password = Password::new_strong(form.password).map_err(WebError::BadRequest)?;
    let generation = state
        .registry
        .set_password(&user.username, &password)
        .await?;
    // Every session of the user ends, except the one making the change.
    if user.id == staff.user.id {
        crate::web::auth::keep_after_password_change(&staff.session, generation).await?;
    }
    staff
        .session
        .insert(FLASH_KEY, format!("Password of {} changed.", user.username))
        .await?;
    Ok(Redirect::to("/users").into_response())
}

pub async fn actions(staff: Staff, State(state): State<AppState>) -> WebResult<Response> {
    let page = ActionsPage {
        ctx: staff.ctx().await?,
        actions: state.registry.recent_actions(200).await?,
    };
    Ok(Html(page.render()?).into_response())
}

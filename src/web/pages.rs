//! Every page as a typed template struct, with the display helpers the
//! templates call. Templates are under `templates/`, escaped as HTML.

use askama::Template;

use crate::registry::display_time;
use crate::registry::{Action, ApiKey, Dump, User};

/// The user shown in the menu.
#[derive(Debug, Clone)]
pub struct NavUser {
    pub username: String,
    pub is_superuser: bool,
}

/// What the layout needs on every page.
#[derive(Debug, Clone, Default)]
pub struct Ctx {
    pub user: Option<NavUser>,
    pub csrf: String,
}

/// A logged-in user who may not use the staff pages: the page they get
/// still lets them log out (its form needs the session's CSRF token).
#[derive(Debug, Clone)]
pub struct LogoutOffer {
    pub username: String,
    pub csrf: String,
}

impl Ctx {
    pub fn is_superuser(&self) -> bool {
        self.user.as_ref().is_some_and(|u| u.is_superuser)
    }
}

pub fn human_size(bytes: i64) -> String {
    humansize::format_size(bytes.max(0) as u64, humansize::DECIMAL)
}

/// Display helpers for templates.
impl Dump {
    pub fn created(&self) -> String {
        display_time(self.created_at)
    }
    pub fn processed(&self) -> String {
        self.processed_at
            .map(display_time)
            .unwrap_or_else(|| "—".into())
    }
    pub fn purged(&self) -> String {
        self.purged_at
            .map(display_time)
            .unwrap_or_else(|| "—".into())
    }
    pub fn size_human(&self) -> String {
        self.size.map(human_size).unwrap_or_else(|| "—".into())
    }
    pub fn size_exact(&self) -> String {
        self.size.map(|s| format!("{s} bytes")).unwrap_or_default()
    }
    pub fn progress_human(&self) -> String {
        format!(
            "{} read, {} files",
            human_size(self.progress_bytes),
            self.progress_files
        )
    }
    pub fn options_label(&self) -> &'static str {
        self.option_set().label()
    }
    pub fn status_str(&self) -> &'static str {
        self.status.as_str()
    }
    pub fn is_running(&self) -> bool {
        self.status.in_flight()
    }
    pub fn availability(&self) -> &'static str {
        if self.is_available() {
            "available"
        } else if self.deprecated {
            "deprecated"
        } else {
            "—"
        }
    }
    pub fn creator_name(&self) -> &str {
        match (&self.creator, self.scheduled) {
            (Some(name), _) => name,
            (None, true) => "scheduled",
            (None, false) => "command line",
        }
    }
    /// The last verification, for the detail page.
    pub fn verification(&self) -> String {
        match (&self.verified_at, &self.verify_error) {
            (None, _) => "never".into(),
            (Some(at), None) => format!("{}: good", display_time(*at)),
            (Some(at), Some(e)) => format!("{}: corrupt ({e})", display_time(*at)),
        }
    }
    /// The archive can be verified: it is on disk.
    pub fn verifiable(&self) -> bool {
        self.status == crate::registry::DumpStatus::Processed && self.purged_at.is_none()
    }
    pub fn filename_str(&self) -> &str {
        self.filename.as_deref().unwrap_or("—")
    }
    pub fn checksum_str(&self) -> &str {
        self.checksum.as_deref().unwrap_or("")
    }
    pub fn error_str(&self) -> &str {
        self.error.as_deref().unwrap_or("")
    }
    /// The line `b2sum -c` expects: checksum, two spaces, file name.
    pub fn b2sum_line(&self) -> String {
        format!("{}  {}", self.checksum_str(), self.filename_str())
    }
}

impl User {
    pub fn last_login(&self) -> String {
        self.last_login_at
            .map(display_time)
            .unwrap_or_else(|| "never".into())
    }
}

impl ApiKey {
    pub fn created(&self) -> String {
        display_time(self.created_at)
    }
    pub fn last_used(&self) -> String {
        self.last_used_at
            .map(display_time)
            .unwrap_or_else(|| "never".into())
    }
    pub fn creator_name(&self) -> &str {
        self.creator.as_deref().unwrap_or("command line")
    }
}

impl Action {
    pub fn when(&self) -> String {
        display_time(self.at)
    }
    pub fn who(&self) -> String {
        match (&self.username, &self.key_name) {
            (Some(u), _) => u.clone(),
            (None, Some(k)) => format!("API key “{k}”"),
            (None, None) if self.scheduled => "scheduled".into(),
            (None, None) => "command line".into(),
        }
    }
}

#[derive(Template)]
#[template(path = "error.html")]
pub struct ErrorPage<'a> {
    pub ctx: Ctx,
    pub title: &'a str,
    pub message: &'a str,
    pub logout: Option<&'a LogoutOffer>,
}

#[derive(Template)]
#[template(path = "login.html")]
pub struct LoginPage {
    pub ctx: Ctx,
    /// The login form's own token (signed cookie, no session).
    pub login_token: String,
    pub username: String,
    pub next: String,
    pub error: Option<&'static str>,
    pub logout: Option<LogoutOffer>,
}

/// A choice of a list filter, for `<select>`.
pub struct Choice {
    pub value: String,
    pub label: String,
    pub selected: bool,
}

#[derive(Template)]
#[template(path = "dumps.html")]
pub struct DumpListPage {
    pub ctx: Ctx,
    pub dumps: Vec<Dump>,
    pub availability: Vec<Choice>,
    pub option_sets: Vec<Choice>,
    pub statuses: Vec<Choice>,
    pub page: i64,
    pub pages: i64,
    pub total: i64,
    pub prev_url: Option<String>,
    pub next_url: Option<String>,
    pub notice: Option<String>,
}

/// What one option-set checkbox will archive.
pub struct Contents {
    pub apps: Vec<String>,
    pub storages: Vec<String>,
}

#[derive(Template)]
#[template(path = "dump_new.html")]
pub struct NewDumpPage {
    pub ctx: Ctx,
    pub contents: Contents,
    pub needed: String,
    pub free: String,
    pub enough_space: bool,
    pub error: Option<String>,
}

#[derive(Template)]
#[template(path = "dump_detail.html")]
pub struct DumpDetailPage {
    pub ctx: Ctx,
    pub dump: Dump,
    pub downloadable: bool,
}

#[derive(Template)]
#[template(path = "api_keys.html")]
pub struct ApiKeysPage {
    pub ctx: Ctx,
    pub keys: Vec<ApiKey>,
    /// A key just created: shown this once.
    pub new_key: Option<String>,
}

#[derive(Template)]
#[template(path = "users.html")]
pub struct UsersPage {
    pub ctx: Ctx,
    pub users: Vec<User>,
    pub notice: Option<String>,
}

#[derive(Template)]
#[template(path = "actions.html")]
pub struct ActionsPage {
    pub ctx: Ctx,
    pub actions: Vec<Action>,
}

#[derive(Template)]
#[template(path = "schedules.html")]
pub struct SchedulesPage {
    pub ctx: Ctx,
    pub schedules: Vec<crate::schedule::ScheduleView>,
    /// The add form's values.
    pub cron: String,
    pub with_data: bool,
    pub with_storages: bool,
    pub timezone: String,
    pub notice: Option<String>,
    pub error: Option<String>,
}

//! A browser-like HTTP client of one server: it keeps cookies, does not
//! follow redirects, and posts every form with the CSRF token of the page
//! the form is on, so a test reads as what a user does.

use std::ops::Deref;

use diskette::registry::DumpId;
use reqwest::{Client, Response, StatusCode};
use scraper::{Html, Selector};

#[derive(Clone)]
pub struct Web {
    base: String,
    http: Client,
}

/// The plain client stays reachable for requests a browser would not make.
impl Deref for Web {
    type Target = Client;

    fn deref(&self) -> &Client {
        &self.http
    }
}

impl Web {
    /// A client of the server at `base` (`http://host:port`), logged out.
    pub fn new(base: &str) -> Web {
        Web {
            base: base.trim_end_matches('/').to_string(),
            http: Client::builder()
                .cookie_store(true)
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// GET `path` and return the page, which must be a 200.
    pub async fn page(&self, path: &str) -> String {
        let res = self.get(self.url(path)).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK, "GET {path}");
        res.text().await.unwrap()
    }

    /// The CSRF token of the first form of a page.
    pub async fn csrf(&self, page: &str) -> String {
        let html = self.page(page).await;
        token_in(&html).unwrap_or_else(|| panic!("no csrf_token on {page}"))
    }

    /// Fill the login form; the server's answer, whatever it is.
    pub async fn login_response(&self, username: &str, password: &str) -> Response {
        self.post_form(
            "/login",
            "/login",
            &[("username", username), ("password", password)],
        )
        .await
    }

    /// Log in, which must succeed (a 303 away from the login page).
    pub async fn log_in(&self, username: &str, password: &str) -> &Web {
        let res = self.login_response(username, password).await;
        assert_eq!(res.status(), StatusCode::SEE_OTHER, "login of {username}");
        self
    }

    /// POST a form of `page` (its token included) to `action`.
    pub async fn post_form(&self, page: &str, action: &str, fields: &[(&str, &str)]) -> Response {
        let token = self.csrf(page).await;
        let mut form: Vec<(&str, &str)> = vec![("csrf_token", token.as_str())];
        form.extend_from_slice(fields);
        self.post(self.url(action))
            .form(&form)
            .send()
            .await
            .unwrap()
    }

    /// Create a dump from the web form; returns its id (from the 303).
    pub async fn create_dump(&self, data: bool, storages: bool) -> DumpId {
        let mut fields = Vec::new();
        if data {
            fields.push(("with_data", "1"));
        }
        if storages {
            fields.push(("with_storages", "1"));
        }
        let res = self.post_form("/dumps/new", "/dumps", &fields).await;
        assert_eq!(res.status(), StatusCode::SEE_OTHER);
        dump_id_of(&res)
    }
}

pub fn dump_id_of(res: &Response) -> DumpId {
    let location = res.headers()["location"].to_str().unwrap();
    location
        .strip_prefix("/dumps/")
        .expect("redirect to a dump")
        .parse()
        .expect("an id")
}

pub fn token_in(html: &str) -> Option<String> {
    let doc = Html::parse_document(html);
    let sel = Selector::parse("input[name=csrf_token]").unwrap();
    doc.select(&sel)
        .next()
        .and_then(|e| e.value().attr("value"))
        .map(str::to_string)
}

/// Text of the element with this id.
pub fn text_of_id(html: &str, id: &str) -> Option<String> {
    let doc = Html::parse_document(html);
    let sel = Selector::parse(&format!("#{id}")).unwrap();
    doc.select(&sel)
        .next()
        .map(|e| e.text().collect::<String>())
}

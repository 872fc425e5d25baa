//! The staff web admin and the API of `diskette load --server` (DESIGN §4).
//!
//! `Server::build` opens and recovers the registry and binds the listener
//! (port 0 in tests); `Server::run` serves until its shutdown token fires,
//! then waits for the running jobs so the registry is left consistent.

pub mod auth;
pub mod error;
pub mod login;
pub mod pages;
mod routes;
pub mod url;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderName, HeaderValue, header};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_sessions::cookie::SameSite;
use tower_sessions::session_store::ExpiredDeletion;
use tower_sessions::{Expiry, SessionManagerLayer};

use crate::Config;
use crate::error::{Error, Result};
use crate::registry::{Registry, SessionStore};
use crate::worker::{Archiver, Worker};

/// How long a stopping server waits for its webhook deliveries.
const NOTIFY_FLUSH: Duration = Duration::from_secs(10);

/// What every handler can reach; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub registry: Registry,
    /// Signs the login form's token (see `login`).
    pub login_key: Arc<login::LoginKey>,
}

/// Content-Security-Policy: our own files only, no inline script.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                   connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The whole application, with its layers.
pub fn router(state: AppState, store: SessionStore) -> Router {
    let sessions = SessionManagerLayer::new(store)
        .with_name("diskette_session")
        .with_http_only(true)
        .with_same_site(SameSite::Lax)
        .with_secure(state.config.server.secure_cookies)
        .with_path("/")
        .with_expiry(Expiry::OnInactivity(state.config.server.session_lifetime()));
    protect(routes::routes().with_state(state).layer(sessions))
}

/// The layers every response passes through, errors included. The body
/// limit and the panic guard sit inside the header layers: their 413 and 500
/// get the headers too.
fn protect(app: Router) -> Router {
    let header = |name: HeaderName, value: &'static str| {
        SetResponseHeaderLayer::if_not_present(name, HeaderValue::from_static(value))
    };
    app.layer(tower_http::limit::RequestBodyLimitLayer::new(
        auth::FORM_LIMIT,
    ))
    .layer(tower_http::catch_panic::CatchPanicLayer::custom(
        panic_response,
    ))
    .layer(header(header::CONTENT_SECURITY_POLICY, CSP))
    .layer(header(header::X_FRAME_OPTIONS, "DENY"))
    .layer(header(header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
    .layer(header(header::REFERRER_POLICY, "same-origin"))
    .layer(header(header::CACHE_CONTROL, "no-store"))
}

/// A handler that panicked (a bug) still answers: the 500 page, its cause
/// logged under a request id.
fn panic_response(panic: Box<dyn std::any::Any + Send + 'static>) -> axum::response::Response {
    use axum::response::IntoResponse;
    let message = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("no message");
    error::WebError::Internal(Error::Internal(format!("a handler panicked: {message}")))
        .into_response()
}

/// A built server, bound but not yet serving.
pub struct Server {
    listener: TcpListener,
    state: AppState,
    store: SessionStore,
    worker: Worker,
    shutdown: CancellationToken,
}

impl Server {
    /// Open and recover the registry, bind `addr` (default: `[server] addr`).
    pub async fn build(config: Config, addr: Option<&str>, archiver: Archiver) -> Result<Server> {
        let config = Arc::new(config);
        let registry = Registry::open(&config).await?;
        // An object store that cannot be written is a start-up error, not
        // a failure of the first dump.
        registry.store().check().await?;
        let recovered = registry.recover().await?;
        if recovered != Default::default() {
            tracing::warn!(
                failed = recovered.failed,
                temp_files = recovered.temp_files,
                unrecorded = recovered.unrecorded,
                purged = recovered.purged,
                "recovered the registry after an unclean stop"
            );
        }
        let store = registry.session_store().await?;
        let login_key = Arc::new(login::LoginKey::new(
            &registry.server_secret("login_form").await?,
        ));
        let addr = addr.unwrap_or(&config.server.addr).to_string();
        let listener = TcpListener::bind(&addr)
            .await
            .map_err(|e| Error::Config(format!("server.addr: cannot listen on {addr}: {e}")))?;
        let shutdown = CancellationToken::new();
        let worker = Worker::new(registry.clone(), config.clone(), archiver, shutdown.clone());
        Ok(Server {
            listener,
            state: AppState {
                config,
                registry,
                login_key,
            },
            store,
            worker,
            shutdown,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    pub fn registry(&self) -> Registry {
        self.state.registry.clone()
    }

    /// Cancelling it stops the server gracefully.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Serve until the shutdown token fires; then finish the running jobs.
    pub async fn run(self) -> Result<()> {
        let Server {
            listener,
            state,
            store,
            worker,
            shutdown,
        } = self;
        let jobs = tokio::spawn(worker.run());
        // Schedules and the periodic verification of stored archives.
        let checks = crate::schedule::spawn_tasks(
            state.registry.clone(),
            state.config.dump.verify_every,
            shutdown.clone(),
        );
        let cleanup = {
            let (store, shutdown) = (store.clone(), shutdown.clone());
            let registry = state.registry.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(600));
                loop {
                    tokio::select! {
                        _ = tick.tick() => {
                            if let Err(e) = store.delete_expired().await {
                                tracing::warn!("deleting expired sessions: {e}");
                            }
                            if let Err(e) = registry.prune_login_records().await {
                                tracing::warn!("pruning login throttling records: {e}");
                            }
                        }
                        _ = shutdown.cancelled() => break,
                    }
                }
            })
        };
        let registry = state.registry.clone();
        let app = router(state, store).into_make_service_with_connect_info::<SocketAddr>();
        let stop = shutdown.clone();
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await;
        // The server may also end on an I/O error: stop the jobs in that case too.
        shutdown.cancel();
        let jobs = jobs.await;
        let _ = cleanup.await;
        for task in checks {
            let _ = task.await;
        }
        // The webhook events of the last jobs leave before the exit, within a bound.
        let flush = registry.notifier().flush();
        if tokio::time::timeout(NOTIFY_FLUSH, flush).await.is_err() {
            tracing::warn!("webhook deliveries still under way at shutdown were abandoned");
        }
        served.map_err(|e| Error::io("serve", "listener", e))?;
        jobs.map_err(|e| Error::Internal(format!("the job worker failed: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use tower::ServiceExt;

    #[tokio::test]
    async fn a_panicking_handler_answers_500_with_the_security_headers() {
        let app = protect(Router::new().route(
            "/boom",
            axum::routing::get(|| async {
                if true {
                    panic!("injected");
                }
                "never"
            }),
        ));
        let req = Request::get("/boom").body(Body::empty()).unwrap();
        let res = app.oneshot(req).await.unwrap();
        assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(res.headers()[header::CONTENT_SECURITY_POLICY], CSP);
        assert_eq!(res.headers()[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        let body = axum::body::to_bytes(res.into_body(), 1 << 20)
            .await
            .unwrap();
        let text = String::from_utf8_lossy(&body);
        assert!(
            text.contains("Request id: ") && !text.contains("injected"),
            "{text}"
        );
    }
}

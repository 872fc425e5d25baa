//! `diskette serve` and `diskette demo`: build the server, print where it
//! listens, serve until SIGINT or SIGTERM.

use std::path::Path;

use crate::Config;
use crate::demo::{ADMIN, PASSWORD_ENV};
use crate::error::{Error, Result};
use crate::registry::Registry;
use crate::web::Server;

/// The async runtime of the commands that need one.
pub fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::io("start", "async runtime", e))
}

/// `diskette serve`: build, log the address, run until SIGINT or SIGTERM.
pub async fn serve(config: Config, addr: Option<&str>) -> Result<()> {
    let server = Server::build(config, addr, crate::worker::engine()).await?;
    run_until_signal(server).await
}

/// Log the address, then serve until SIGINT or SIGTERM.
pub async fn run_until_signal(server: Server) -> Result<()> {
    // Installed before the address is logged: whoever waits for that line
    // may signal at once, and an uninstalled handler would let it kill us.
    let signals = ShutdownSignals::install()?;
    tracing::info!(
        "instance {} (its name in the leases of the jobs it runs)",
        server.registry().instance()
    );
    tracing::info!("Diskette is serving on http://{}", server.local_addr());
    let token = server.shutdown_token();
    tokio::spawn(async move {
        signals.recv().await;
        token.cancel();
        tracing::info!("shutting down: finishing requests, stopping jobs");
    });
    server.run().await
}

/// SIGINT and SIGTERM (the crate is Unix-only).
struct ShutdownSignals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
}

impl ShutdownSignals {
    fn install() -> Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        let handler = |kind| signal(kind).map_err(|e| Error::io("handle", "signals", e));
        Ok(ShutdownSignals {
            interrupt: handler(SignalKind::interrupt())?,
            terminate: handler(SignalKind::terminate())?,
        })
    }

    async fn recv(mut self) {
        tokio::select! {
            _ = self.interrupt.recv() => {},
            _ = self.terminate.recv() => {},
        }
    }
}

/// Create the workspace, the admin, and serve.
pub async fn demo(dir: &Path, addr: Option<&str>) -> Result<()> {
    let fresh = !dir.join(crate::config::DEFAULT_CONFIG_FILE).exists();
    let config_path = crate::demo::create_workspace(dir)?;
    let config = Config::load(&config_path, std::env::vars())?;
    let registry = Registry::open(&config).await?;
    let password = crate::demo::ensure_admin(&registry).await?;
    drop(registry);
    let addr = addr.unwrap_or(&config.server.addr).to_string();
    // Bound first, so the address printed is the real one (port 0 works).
    let server = Server::build(config, Some(&addr), crate::worker::engine()).await?;
    eprintln!();
    if fresh {
        eprintln!("  Demo workspace created in {}", dir.display());
    } else {
        eprintln!("  Using the demo workspace in {}", dir.display());
    }
    eprintln!(
        "  Open http://{}/ and log in as {ADMIN:?}",
        server.local_addr()
    );
    match password {
        Some(pw) => eprintln!("  Password: {pw}"),
        None => eprintln!("  (password unchanged; set {PASSWORD_ENV} to reset it)"),
    }
    eprintln!();
    run_until_signal(server).await
}

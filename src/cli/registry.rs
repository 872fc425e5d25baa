//! The registry's command-line side: `user`, `key` and `dump --save`.

use std::sync::Arc;

use clap::Subcommand;
use tokio_util::sync::CancellationToken;

use super::serve::runtime;
use crate::Config;
use crate::dump::DumpOptions;
use crate::error::{Error, Result};
use crate::progress::{Console, Progress};
use crate::registry::{Actor, ApiKeyId, DumpStatus, OptionSet, Registry, Username};
use crate::worker::Worker;

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Add a staff user
    Add {
        name: String,
        /// Also allow user management, API keys and hard delete
        #[arg(long)]
        superuser: bool,
        /// Read the password from the first line of stdin instead of a prompt
        #[arg(long)]
        password_stdin: bool,
    },
    /// Set a user's password
    Passwd {
        name: String,
        #[arg(long)]
        password_stdin: bool,
    },
    /// List the users
    List,
    /// Prevent a user from logging in (their sessions stop working too)
    Deactivate { name: String },
    /// Allow a deactivated user to log in again
    Activate { name: String },
}

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Create an API key and print it (it is shown only this once)
    Add { name: String },
    /// List the API keys
    List,
    /// Deprecate an API key (irreversible)
    Deprecate { id: ApiKeyId },
}

pub fn user(config: &Config, cmd: UserCommand) -> Result<()> {
    runtime()?.block_on(async {
        let registry = Registry::open(config).await?;
        match cmd {
            UserCommand::Add {
                name,
                superuser,
                password_stdin,
            } => {
                let username: Username = name.parse().map_err(Error::Usage)?;
                let password = crate::users::read_password(password_stdin, "Password: ")?;
                registry
                    .create_user(&username, &password, superuser)
                    .await?;
                eprintln!(
                    "User {username} added{}.",
                    if superuser { " (superuser)" } else { "" }
                );
            }
            UserCommand::Passwd {
                name,
                password_stdin,
            } => {
                registry.require_user(&name).await?;
                let password = crate::users::read_password(password_stdin, "New password: ")?;
                registry.set_password(&name, &password).await?;
                eprintln!("Password of {name} changed.");
            }
            UserCommand::List => {
                for u in registry.users().await? {
                    let mut flags = Vec::new();
                    if !u.is_active {
                        flags.push("inactive");
                    }
                    if u.is_staff {
                        flags.push("staff");
                    }
                    if u.is_superuser {
                        flags.push("superuser");
                    }
                    println!(
                        "{}\t{}\tlast login: {}",
                        u.username,
                        flags.join(","),
                        u.last_login()
                    );
                }
            }
            UserCommand::Deactivate { name } => {
                let u = registry.require_user(&name).await?;
                registry
                    .set_user_flags(Actor::System, u.id, false, u.is_staff, u.is_superuser)
                    .await?;
                eprintln!("User {name} deactivated.");
            }
            UserCommand::Activate { name } => {
                let u = registry.require_user(&name).await?;
                registry
                    .set_user_flags(Actor::System, u.id, true, u.is_staff, u.is_superuser)
                    .await?;
                eprintln!("User {name} activated.");
            }
        }
        Ok(())
    })
}

pub fn key(config: &Config, cmd: KeyCommand) -> Result<()> {
    runtime()?.block_on(async {
        let registry = Registry::open(config).await?;
        match cmd {
            KeyCommand::Add { name } => {
                let (id, key) = registry.create_api_key(&name, Actor::System).await?;
                eprintln!("API key {id} created; it is shown only this once:");
                println!("{key}");
            }
            KeyCommand::List => {
                for k in registry.api_keys().await? {
                    let state = if k.deprecated { "deprecated" } else { "active" };
                    println!(
                        "{}\t{}\t{}…\t{state}\tlast used: {}",
                        k.id,
                        k.name,
                        k.prefix,
                        k.last_used()
                    );
                }
            }
            KeyCommand::Deprecate { id } => {
                if !registry.deprecate_api_key(id).await? {
                    return Err(Error::Usage(format!("no active API key {id}")));
                }
                eprintln!("API key {id} deprecated.");
            }
        }
        Ok(())
    })
}

/// `diskette dump --save`: the same job as the web admin's, run here, with the
/// registry's rules (preservation, purge) applied when it is processed.
pub fn dump_and_save(config: &Config, opts: &DumpOptions, quiet: bool) -> Result<()> {
    let set = OptionSet::new(opts.with_data, opts.with_storages).map_err(Error::Usage)?;
    let mut config = config.clone();
    if let Some(pattern) = &opts.filename {
        crate::archive::filename::validate_pattern(pattern)
            .map_err(|m| Error::Usage(format!("--filename: {m}")))?;
        config.dump.filename = pattern.clone();
    }
    runtime()?.block_on(async {
        let registry = Registry::open(&config).await?;
        registry.store().check().await?;
        let cancel = CancellationToken::new();
        let on_signal = cancel.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                on_signal.cancel();
            }
        });
        let worker = Worker::new(
            registry.clone(),
            Arc::new(config),
            crate::worker::engine(),
            cancel,
        );
        let id = registry.create_claimed_dump(set, Actor::System).await?;
        let console: Arc<dyn Progress> = Arc::new(Console::new(quiet));
        worker.execute(id, Some(console.clone())).await?;
        console.finish();
        // The webhook event of the outcome leaves before the exit.
        registry.notifier().flush().await;
        let dump = registry
            .dump(id)
            .await?
            .ok_or_else(|| Error::Internal(format!("dump {id} vanished")))?;
        match dump.status {
            DumpStatus::Processed => {
                if !quiet {
                    eprintln!(
                        "Dump {id} saved: {} ({})",
                        registry.store().display_name(dump.filename_str()),
                        dump.size_human()
                    );
                }
                if opts.log_checksum {
                    println!("{}", dump.checksum_str());
                }
                Ok(())
            }
            _ => Err(Error::Usage(format!(
                "dump {id} failed: {}",
                dump.error_str()
            ))),
        }
    })
}

//! `diskette schedule add | list | remove | enable | disable`.

use clap::Subcommand;
use time::OffsetDateTime;

use crate::Config;
use crate::error::{Error, Result};
use crate::registry::{OptionSet, Registry, ScheduleId};
use crate::schedule::{self, NewSchedule};

#[derive(Debug, Subcommand)]
pub enum ScheduleCommand {
    /// Add a schedule: a dump of the option set at each due time
    Add {
        /// Standard 5-field cron expression: minute hour day-of-month month day-of-week
        #[arg(long, value_name = "EXPR")]
        cron: String,
        /// Archive the data (neither --data nor --storages: both)
        #[arg(long)]
        data: bool,
        /// Archive the storages (neither --data nor --storages: both)
        #[arg(long)]
        storages: bool,
        /// Time zone the expression is read in (an IANA name)
        #[arg(long, default_value = "UTC", value_name = "ZONE")]
        timezone: String,
        /// Add it disabled
        #[arg(long)]
        disabled: bool,
    },
    /// List the schedules with their next run, last run and last outcome
    List,
    /// Remove a schedule (the dumps it made stay)
    Remove { id: ScheduleId },
    /// Enable a schedule (due times missed while disabled are not run)
    Enable { id: ScheduleId },
    /// Disable a schedule
    Disable { id: ScheduleId },
}

pub fn run(config: &Config, cmd: ScheduleCommand) -> Result<()> {
    super::serve::runtime()?.block_on(async {
        let registry = Registry::open(config).await?;
        match cmd {
            ScheduleCommand::Add {
                cron,
                data,
                storages,
                timezone,
                disabled,
            } => {
                let set = if data || storages {
                    OptionSet::new(data, storages).map_err(Error::Usage)?
                } else {
                    OptionSet::BOTH
                };
                let new = NewSchedule {
                    cron,
                    set,
                    timezone,
                    enabled: !disabled,
                };
                let id = schedule::add(&registry, new).await?;
                let view = schedule::view(&registry, id, OffsetDateTime::now_utc()).await?;
                eprintln!(
                    "Schedule {id} added; next run: {}.",
                    view.map_or_else(|| "—".into(), |v| v.next_run)
                );
                println!("{id}");
            }
            ScheduleCommand::List => {
                for v in schedule::views(&registry, OffsetDateTime::now_utc()).await? {
                    println!(
                        "{}\t{}\t{}\t{}\t{}\tnext: {}\tlast: {} ({})",
                        v.row.id,
                        v.row.cron,
                        v.row.timezone,
                        v.options_label(),
                        if v.row.enabled { "enabled" } else { "disabled" },
                        v.next_run,
                        v.last_run,
                        v.last_outcome
                    );
                }
            }
            ScheduleCommand::Remove { id } => {
                registry.remove_schedule(id).await?;
                eprintln!("Schedule {id} removed.");
            }
            ScheduleCommand::Enable { id } => {
                registry.set_schedule_enabled(id, true).await?;
                eprintln!("Schedule {id} enabled.");
            }
            ScheduleCommand::Disable { id } => {
                registry.set_schedule_enabled(id, false).await?;
                eprintln!("Schedule {id} disabled.");
            }
        }
        Ok(())
    })
}

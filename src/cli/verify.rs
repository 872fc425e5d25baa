//! `diskette verify [ID | --all]`: exits non-zero naming each corrupt dump.

use clap::Args;

use crate::Config;
use crate::error::{Error, Result, error_line};
use crate::registry::{DumpId, Registry};

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The dump to verify (default: the available dump of each option set)
    #[arg(value_name = "ID", conflicts_with = "all")]
    pub id: Option<String>,
    /// Every dump whose archive is still on disk, deprecated ones included
    #[arg(long)]
    pub all: bool,
}

pub fn run(config: &Config, args: VerifyArgs, quiet: bool) -> Result<()> {
    let id: Option<DumpId> = args
        .id
        .as_deref()
        .map(|s| s.parse().map_err(Error::Usage))
        .transpose()?;
    super::serve::runtime()?.block_on(async {
        let registry = Registry::open(config).await?;
        let reports = crate::verify::verify_selected(&registry, id, args.all).await;
        // The webhook events of corrupt archives leave before the exit.
        registry.notifier().flush().await;
        let outcomes = reports?;
        if outcomes.is_empty() && !quiet {
            eprintln!("No stored archive to verify.");
        }
        let (mut corrupt, mut unverified) = (Vec::new(), Vec::new());
        for (dump, outcome) in outcomes {
            let r = match outcome {
                Ok(r) => r,
                Err(e) if id.is_some() => return Err(e),
                // Deprecated or purged meanwhile: nothing left to check.
                Err(Error::Usage(m)) => {
                    println!("dump {dump}: not verified: {m}");
                    continue;
                }
                Err(e) => {
                    println!("dump {dump}: not verified: {}", error_line(&e));
                    unverified.push(dump.to_string());
                    continue;
                }
            };
            match &r.problem {
                None => println!("dump {}: good ({} entries)", r.dump, r.entries),
                Some(problem) => {
                    println!("dump {}: CORRUPT: {problem}", r.dump);
                    if let Some(new) = r.replacement {
                        println!("dump {}: replaced by the new dump {new}, queued", r.dump);
                    }
                    corrupt.push(r.dump.to_string());
                }
            }
        }
        let mut problems = Vec::new();
        if !corrupt.is_empty() {
            problems.push(format!("corrupt dump(s): {}", corrupt.join(", ")));
        }
        if !unverified.is_empty() {
            problems.push(format!("dump(s) not verified: {}", unverified.join(", ")));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(Error::Usage(problems.join("; ")))
        }
    })
}

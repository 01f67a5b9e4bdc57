//! `muster validate <dir-or-file>...`: load config files exactly as the
//! agent would (every `.json` / `.hcl` file of a directory, in lexical
//! order) and report the first problem, without starting anything.
//!
//! It must not require the paths a config names (`data_dir`, `ui_dir`) to
//! exist, nor talk to an agent.

use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};

use crate::config::{self, ConfigSource};

/// `muster validate`.
#[derive(Debug, clap::Args)]
#[command(about = "Check config files or directories without starting an agent")]
pub struct ValidateArgs {
    /// Print nothing when the configuration is valid.
    #[arg(long)]
    pub quiet: bool,
    /// After the verdict, list what was loaded: one `service <id> checks=<n>`
    /// line per service and one `check <id> type=<type>` line per node check.
    #[arg(long, conflicts_with = "quiet")]
    pub detailed: bool,
    /// Config files and directories, in the order the agent would get them.
    #[arg(value_name = "PATH", required = true)]
    pub paths: Vec<PathBuf>,
}

/// Load the sources: `Configuration is valid!` and exit 0, or the error on
/// one line and exit 1.
pub fn run(args: ValidateArgs) -> anyhow::Result<ExitCode> {
    let sources: Vec<ConfigSource> = args.paths.iter().map(ConfigSource::detect).collect();
    let loaded = match config::load(&sources) {
        Ok(loaded) => loaded,
        Err(err) => bail!("Config validation failed: {err}"),
    };
    if args.quiet {
        return Ok(ExitCode::SUCCESS);
    }
    let mut text = String::from("Configuration is valid!\n");
    if args.detailed {
        for s in &loaded.services {
            text.push_str(&format!("service {} checks={}\n", s.id, s.checks.len()));
        }
        for c in &loaded.checks {
            text.push_str(&format!("check {} type={}\n", c.id, c.check_type()));
        }
    }
    io::stdout()
        .lock()
        .write_all(text.as_bytes())
        .context("Error: cannot write to stdout")?;
    Ok(ExitCode::SUCCESS)
}

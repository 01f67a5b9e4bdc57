//! The `muster` binary: turns Go-style arguments into clap's, parses them and
//! dispatches to one command of `cli/`.
//!
//! # Layout
//! - `cli/`: argument parsing and validation, and the client commands.
//! - `config/`: config files (JSON and HCL), merged and validated.
//! - `server/`: the agent process `muster agent` runs (serving, gossip,
//!   cluster formation, reconcile, autopilot).
//!
//! This file owns argument rewriting, the tokio runtime and the exit code.
//! It holds no command logic and prints nothing itself except the one-line
//! error of a failed command (the agent's readiness line lives in
//! `server/serve.rs`).

mod cli;
mod config;
mod server;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::rewrite_go_flags(std::env::args_os());
    let parsed = match cli::Cli::try_parse_from(args) {
        Ok(parsed) => parsed,
        Err(err) => return clap_exit(&err),
    };
    match cli::run(parsed) {
        Ok(code) => code,
        Err(err) => {
            // One line, whatever the chain: `outer: inner: cause`.
            let msg = format!("{err:#}").replace('\n', " ");
            eprintln!("{msg}");
            ExitCode::FAILURE
        }
    }
}

/// Print a clap error or help text; help and version exit 0, usage errors 1
/// (Consul's convention: every error is exit status 1).
fn clap_exit(err: &clap::Error) -> ExitCode {
    // Printing can only fail if stdout/stderr are closed; nothing to do then.
    let _ = err.print();
    if err.use_stderr() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

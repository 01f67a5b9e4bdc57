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

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let typed: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let args = cli::rewrite_go_flags(typed.iter().cloned());
    let parsed = match cli::Cli::try_parse_from(&args) {
        Ok(parsed) => parsed,
        Err(err) => return clap_exit(&err, &typed, &args),
    };
    match cli::run(parsed) {
        Ok(code) => code,
        // The reader of our output went away (`muster info | head`): what
        // it wanted it has; nothing to report.
        Err(err) if broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            // One line, whatever the chain: `outer: inner: cause`.
            let msg = format!("{err:#}").replace('\n', " ");
            eprintln!("{msg}");
            ExitCode::FAILURE
        }
    }
}

/// `--name` → `-name` wherever a long flag starts a word.
fn go_style(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut prev = ' ';
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        let starts_flag = rest.starts_with("--")
            && rest[2..].starts_with(|n: char| n.is_ascii_lowercase())
            && (prev.is_whitespace() || prev == '[' || prev == '(' || prev == '\'' || prev == '`');
        if starts_flag {
            out.push('-');
            rest = &rest[2..];
            prev = '-';
            continue;
        }
        out.push(c);
        prev = c;
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// True if `err` comes from writing to a closed pipe.
fn broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// Print a clap error or help text; help and version exit 0, usage errors 1
/// (Consul's convention: every error is exit status 1). An error names
/// each flag as the user typed it (`-ui`, not the `--ui` clap was given).
fn clap_exit(
    err: &clap::Error,
    typed: &[std::ffi::OsString],
    given: &[std::ffi::OsString],
) -> ExitCode {
    if !err.use_stderr() {
        // Help, in Consul's spelling of long flags (`-dev`; `--dev` works
        // too). Printing can only fail if stdout is closed; nothing to do
        // then.
        let mut out = std::io::stdout().lock();
        let _ = write!(out, "{}", go_style(&err.render().to_string()));
        return ExitCode::SUCCESS;
    }
    let mut text = err.render().to_string();
    for (typed, given) in typed.iter().zip(given) {
        let (Some(typed), Some(given)) = (typed.to_str(), given.to_str()) else {
            continue;
        };
        if given.strip_prefix('-') == Some(typed) {
            // clap quotes the flag without its value: `'--ui'`.
            let flag = |a: &str| a.split('=').next().unwrap_or(a).to_string();
            text = text.replace(&format!("'{}'", flag(given)), &format!("'{}'", flag(typed)));
        }
    }
    // Consul spells it `-help` (both work).
    eprint!("{}", text.replace("'--help'", "'-help'"));
    ExitCode::FAILURE
}

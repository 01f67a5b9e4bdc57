//! `muster watch -type=TYPE [options] [handler...]`: watch a view of the
//! catalog, the KV store or the user events with blocking queries, like
//! `consul watch`. Without a handler the current result is printed,
//! indented, and the command exits 0. With one, the handler runs on the
//! first result and on every change, with the JSON on its stdin and
//! `CONSUL_INDEX` in its environment, each run awaited before the next; a
//! handler that fails (or cannot start) ends the watch with exit status 1.
//! SIGINT or SIGTERM end it with status 0 (a running handler gets SIGTERM).
//!
//! # Layout
//! - `spec.rs`: watch types and their parameters, validated as Consul's
//!   `watch.Parse` (also used for the agent's `watches` config key);
//! - `plan.rs`: the watch loop, shared with the agent (`server/watches.rs`);
//! - `handler.rs`: running a script or calling an HTTP handler;
//! - `json.rs`: the result's JSON text, compact or indented, in the
//!   agent's key order.

pub mod handler;
pub mod json;
pub mod plan;
pub mod spec;

use std::ffi::OsString;
use std::process::ExitCode;

use anyhow::{anyhow, bail, Context};
use bytes::Bytes;
use hyper::{Method, StatusCode};
use tokio::signal::unix::{signal, SignalKind};

use super::http::{Client, HttpArgs};
use plan::{Mode, Plan};
use spec::{Handler, Params, Script};

/// `muster watch`.
#[derive(Debug, clap::Args)]
pub struct WatchArgs {
    /// Agent address.
    #[command(flatten)]
    pub http: HttpArgs,
    /// The datacenter to query (default: the agent's).
    #[arg(long, value_name = "DC")]
    pub datacenter: Option<String>,
    /// Let any server answer, possibly with stale data.
    #[arg(long)]
    pub stale: bool,
    /// The watch type: key, keyprefix, services, nodes, service, checks or
    /// event.
    #[arg(long = "type", value_name = "TYPE")]
    pub kind: Option<String>,
    /// The key to watch (type key).
    #[arg(long, value_name = "KEY")]
    pub key: Option<String>,
    /// The key prefix to watch (type keyprefix).
    #[arg(long, value_name = "PREFIX")]
    pub prefix: Option<String>,
    /// The service to watch (type service; optional for checks).
    #[arg(long, value_name = "SERVICE")]
    pub service: Option<String>,
    /// A tag the service's instances must have (type service); repeat for
    /// several.
    #[arg(long, value_name = "TAG", action = clap::ArgAction::Append)]
    pub tag: Vec<String>,
    /// Only instances whose checks all pass: true or false (type service).
    #[arg(long, value_name = "BOOL")]
    pub passingonly: Option<String>,
    /// Same as -passingonly=true.
    #[arg(long)]
    pub passing: bool,
    /// The check state to watch: any, passing, warning or critical (type
    /// checks).
    #[arg(long, value_name = "STATE")]
    pub state: Option<String>,
    /// The event name to watch (type event).
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Run the handler with $SHELL -c (default /bin/sh), its words joined
    /// by spaces; -shell=false runs it directly.
    #[arg(
        long,
        value_name = "BOOL",
        default_value_t = true,
        action = clap::ArgAction::Set,
        num_args = 0..=1,
        default_missing_value = "true"
    )]
    pub shell: bool,
    /// The handler command; without one the result is printed and the
    /// watch ends.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub handler: Vec<String>,
}

/// Run `muster watch` on a small single-threaded runtime.
pub fn run(args: WatchArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("Error: cannot start the async runtime")?;
    let raw: Vec<OsString> = std::env::args_os().collect();
    runtime.block_on(watch(args, &raw))
}

async fn watch(args: WatchArgs, raw: &[OsString]) -> anyhow::Result<ExitCode> {
    let mut sigint = signal(SignalKind::interrupt()).context("Error: cannot handle SIGINT")?;
    let mut sigterm = signal(SignalKind::terminate()).context("Error: cannot handle SIGTERM")?;
    let passing_only = match args.passingonly.as_deref() {
        Some(text) => Some(parse_go_bool(text).ok_or_else(|| {
            anyhow!(
                "Failed to parse passingonly flag: strconv.ParseBool: parsing {text:?}: invalid \
                 syntax: use -passingonly=true or -passingonly=false"
            )
        })?),
        None => args.passing.then_some(true),
    };
    let given = |v: Option<String>| v.filter(|s| !s.is_empty());
    let params = Params {
        kind: given(args.kind),
        datacenter: given(args.datacenter),
        token: given(args.http.token.clone()),
        key: given(args.key),
        prefix: given(args.prefix),
        service: given(args.service),
        tag: (!args.tag.is_empty()).then_some(args.tag),
        passing_only,
        stale: args.stale.then_some(true),
        state: given(args.state),
        name: given(args.name),
    };
    let spec = params
        .parse(&|name| format!("-{name}"))
        .map_err(|e| anyhow!(e))?;
    let client = Client::new(&args.http)?;
    // Consul checks the agent answers before blocking on anything.
    let reply = client
        .request(Method::GET, "/v1/status/leader", Bytes::new())
        .await?;
    if reply.status != StatusCode::OK {
        bail!("Error querying agent: {}", reply.unexpected());
    }
    let handler = if args.handler.is_empty() {
        Handler::Print
    } else {
        let words = handler_words(&args.handler, raw);
        if args.shell {
            let line: Vec<_> = words.iter().map(|w| w.to_string_lossy()).collect();
            Handler::Script(Script::Shell(line.join(" ")))
        } else {
            Handler::Script(Script::Args(words))
        }
    };
    let mut plan = Plan::new(spec, client);
    tokio::select! {
        result = plan.run(&handler, Mode::Cli) => result.map(|()| ExitCode::SUCCESS),
        _ = sigint.recv() => Ok(ExitCode::SUCCESS),
        _ = sigterm.recv() => Ok(ExitCode::SUCCESS),
    }
}

/// The handler's words as typed. The Go-style flag rewrite turns `-flag`
/// into `--flag` everywhere, including the handler's own arguments; the
/// handler is always the tail of the command line, so its words are taken
/// from the raw arguments when they match the parsed ones word for word.
fn handler_words(parsed: &[String], raw: &[OsString]) -> Vec<OsString> {
    let tail = raw
        .len()
        .checked_sub(parsed.len())
        .and_then(|at| raw.get(at..));
    let matches = |tail: &[OsString]| {
        tail.iter().zip(parsed).all(|(raw, parsed)| {
            raw.to_str()
                .is_some_and(|r| r == parsed || format!("-{r}") == *parsed)
        })
    };
    match tail {
        Some(tail) if matches(tail) => tail.to_vec(),
        _ => parsed.iter().map(OsString::from).collect(),
    }
}

/// Go's `strconv.ParseBool`.
fn parse_go_bool(text: &str) -> Option<bool> {
    match text {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handler_words_are_taken_as_typed() {
        let raw: Vec<OsString> = ["muster", "watch", "-type=key", "jq", "-compact", "."]
            .into_iter()
            .map(OsString::from)
            .collect();
        let parsed = ["jq".to_string(), "--compact".into(), ".".into()];
        assert_eq!(handler_words(&parsed, &raw), raw[3..].to_vec());
        let other = ["x".to_string()];
        assert_eq!(handler_words(&other, &raw), vec![OsString::from("x")]);
    }

    #[test]
    fn booleans_parse_as_go_does() {
        assert_eq!(parse_go_bool("T"), Some(true));
        assert_eq!(parse_go_bool("0"), Some(false));
        assert_eq!(parse_go_bool("yes"), None);
    }
}

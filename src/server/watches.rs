//! The agent's configured watches (the `watches` config key): each runs in
//! its own task inside the agent process, through the agent's own HTTP API
//! (as Consul's agent runs its watch plans against its HTTP address), with
//! the same loop as `muster watch` ([`Plan::run`] in [`Mode::Agent`]: a
//! failed handler is logged and the watch goes on).
//!
//! Watches start once the agent serves HTTP and stop (tasks aborted, a
//! running script handler sent SIGTERM) when [`Watches`] is stopped or
//! dropped, before the HTTP server drains. A reload (SIGHUP, `muster
//! reload`) does not change them: the running agent keeps the watches it
//! started with until it restarts.

use tokio::task::JoinHandle;

use crate::cli::http::{Client, HttpArgs};
use crate::cli::watch::plan::{Mode, Plan};
use crate::config::watches::WatchConfig;

/// The running watches; dropping it stops them.
pub(crate) struct Watches {
    /// One task per watch.
    tasks: Vec<JoinHandle<()>>,
}

impl Watches {
    /// Start every watch of `configured` against the agent's own API,
    /// reached as `api` says (plain HTTP, or HTTPS with the agent's TLS;
    /// see `https::Bound::self_client`).
    pub(crate) fn start(configured: &[WatchConfig], api: HttpArgs) -> Watches {
        let addr = api.http_addr.clone().unwrap_or_default();
        let mut tasks = Vec::new();
        for (i, watch) in configured.iter().enumerate() {
            // A watch's own `token` is sent with its queries (ACLs).
            let api = HttpArgs {
                token: watch.spec.token.clone().or_else(|| api.token.clone()),
                ..api.clone()
            };
            let client = match Client::new(&api) {
                Ok(client) => client,
                Err(err) => {
                    tracing::error!(watch = i, error = %format!("{err:#}"), "Failed to run watch");
                    continue;
                }
            };
            let spec = watch.spec.clone();
            let handler = watch.handler.clone();
            tracing::debug!(watch = i, r#type = spec.type_name(), "starting watch");
            tasks.push(tokio::spawn(async move {
                let kind = spec.type_name();
                let mut plan = Plan::new(spec, client);
                if let Err(err) = plan.run(&handler, Mode::Agent).await {
                    tracing::error!(watch = i, r#type = kind, error = %format!("{err:#}"), "watch stopped");
                }
            }));
        }
        if !tasks.is_empty() {
            tracing::info!(count = tasks.len(), http = %addr, "watches started");
        }
        Watches { tasks }
    }

    /// Stop every watch now.
    pub(crate) fn stop(self) {
        drop(self);
    }
}

impl Drop for Watches {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

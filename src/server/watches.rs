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

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

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
    /// Start every watch of `configured` against the agent's HTTP listener
    /// at `http` (a wildcard address is reached through loopback).
    pub(crate) fn start(configured: &[WatchConfig], http: SocketAddr) -> Watches {
        let ip = match http.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        let addr = SocketAddr::new(ip, http.port());
        let mut tasks = Vec::new();
        for (i, watch) in configured.iter().enumerate() {
            let client = match Client::new(&HttpArgs {
                http_addr: Some(addr.to_string()),
            }) {
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

//! muster's DNS interface (consul-compat.md §10): service, node, addr and
//! PTR lookups answered from the engine's health view, over UDP and TCP,
//! with forwarding of names outside the Consul domain to `recursors`.
//!
//! [`handle`] is the pure, synchronous query handler (used by [`serve`]
//! and the fuzz target); [`serve`] runs the UDP and TCP listeners.

mod error;
mod handler;
mod names;
mod records;
mod server;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

pub use error::Error;
pub use handler::{handle, MAX_TCP_SIZE};
pub use server::serve;

/// The `dns_config` of the agent plus the domain and datacenter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsConfig {
    /// The Consul domain, `"consul."` by default.
    pub domain: String,
    /// A second domain answered the same way (`alt_domain`).
    pub alt_domain: Option<String>,
    /// This agent's datacenter (the only one answered; others: NXDOMAIN).
    pub datacenter: String,
    /// TTL of node, addr and NS answers (`dns_config.node_ttl`).
    pub node_ttl: Duration,
    /// Service TTLs: exact names, `"web-*"` prefix wildcards and `"*"`.
    pub service_ttl: BTreeMap<String, Duration>,
    /// Answers per UDP response to a query without EDNS0 (capped at 8).
    pub udp_answer_limit: usize,
    /// Set TC on trimmed UDP responses.
    pub enable_truncate: bool,
    /// Leave out `warning` instances too.
    pub only_passing: bool,
    /// Upstream resolvers for names outside the domain, tried in order.
    pub recursors: Vec<SocketAddr>,
    /// How long each recursor gets.
    pub recursor_timeout: Duration,
}

impl DnsConfig {
    /// Consul's defaults for `datacenter`.
    pub fn new(datacenter: impl Into<String>) -> Self {
        DnsConfig {
            domain: "consul.".to_string(),
            alt_domain: None,
            datacenter: datacenter.into(),
            node_ttl: Duration::ZERO,
            service_ttl: BTreeMap::new(),
            udp_answer_limit: 3,
            enable_truncate: false,
            only_passing: false,
            recursors: Vec::new(),
            recursor_timeout: Duration::from_secs(2),
        }
    }

    /// The TTL for answers about `service`: exact match, else the longest
    /// matching `prefix*` wildcard, else 0.
    pub(crate) fn service_ttl_secs(&self, service: &str) -> u32 {
        let mut best: Option<(usize, Duration)> = None;
        for (key, ttl) in &self.service_ttl {
            if key.eq_ignore_ascii_case(service) {
                return secs(*ttl);
            }
            if let Some(prefix) = key.strip_suffix('*') {
                let matches = service.len() >= prefix.len()
                    && service.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes());
                if matches && best.is_none_or(|(len, _)| prefix.len() > len) {
                    best = Some((prefix.len(), *ttl));
                }
            }
        }
        best.map(|(_, ttl)| secs(ttl)).unwrap_or(0)
    }

    pub(crate) fn node_ttl_secs(&self) -> u32 {
        secs(self.node_ttl)
    }
}

fn secs(d: Duration) -> u32 {
    u32::try_from(d.as_secs()).unwrap_or(u32::MAX)
}

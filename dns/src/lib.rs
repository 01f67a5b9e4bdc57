//! muster's DNS interface (consul-compat.md §10): service, node, addr and
//! PTR lookups answered from the engine's health view, over UDP and TCP,
//! with forwarding of names outside the Consul domain to `recursors`.
//!
//! [`handle`] is the pure, synchronous query handler (used by [`serve`]
//! and the fuzz target); [`serve`] runs the UDP and TCP listeners.
//!
//! # Layout
//! - `handler.rs`: a packet in, an [`handler::Outcome`] out; the lookups.
//! - `response.rs`: assembling a response and trimming it to size (§10.3).
//! - `names.rs`: question names; `records.rs`: building records.
//! - `recursor.rs`: everything that talks to `recursors` (forwarding and
//!   resolving CNAME targets).
//! - `server.rs`: the UDP and TCP listeners and the per-query span.

mod error;
mod handler;
mod names;
mod records;
mod recursor;
mod response;
mod server;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use rand::seq::SliceRandom;

pub use error::Error;
pub use handler::handle;
pub use response::MAX_TCP_SIZE;
pub use server::{answer, serve, serve_relay, BoxFuture, Relay};

/// The `dns_config` of the agent plus the domain and datacenter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsConfig {
    /// The Consul domain, `"consul."` by default.
    pub domain: String,
    /// A second domain answered the same way (`alt_domain`).
    pub alt_domain: Option<String>,
    /// This agent's datacenter (answered from the engine; others through
    /// `datacenters`).
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
    /// Upstream resolvers for names outside the domain and for hostname
    /// (CNAME) targets, in the order of `recursor_strategy`.
    pub recursors: Vec<SocketAddr>,
    /// The order in which recursors are tried (`recursor_strategy`).
    pub recursor_strategy: RecursorStrategy,
    /// How long each recursor gets (UDP plus a TCP retry after TC).
    pub recursor_timeout: Duration,
    /// At most this many A/AAAA answers to a service query, on UDP and TCP
    /// (`a_record_limit`; 0 = unlimited). The UDP limits of §10.3 apply on
    /// top, so the smaller wins.
    pub a_record_limit: usize,
    /// Node meta TXT records in ADDITIONAL of SRV and node A/AAAA answers
    /// (`enable_additional_node_meta_txt`).
    pub node_meta_txt: bool,
    /// Who answers names of other datacenters (`web.service.dc2.consul`):
    /// a server's WAN links. Without one, such names are NXDOMAIN.
    pub datacenters: Option<DatacenterLink>,
    /// Who executes prepared queries (`<name>.query.<domain>`). Without
    /// one, such names are NXDOMAIN.
    pub queries: Option<QueryLink>,
    /// What the agent's DNS token may see (ACLs on): names it may not
    /// read are answered as if they did not exist.
    pub acl: Option<AclLink>,
}

/// The agent's DNS token (`dns`, else `default`), resolved once per
/// question.
pub trait DnsAcl: Send + Sync + 'static {
    /// The token's rules as they stand now.
    fn rules(&self) -> std::sync::Arc<dyn DnsRules>;
}

/// The ACL decisions DNS needs.
pub trait DnsRules: Send + Sync {
    /// May the token read service `name`?
    fn service_read(&self, name: &str) -> bool;
    /// May the token read node `name`?
    fn node_read(&self, name: &str) -> bool;
}

/// What one question may show (everything without ACLs).
pub(crate) struct Visible(Option<std::sync::Arc<dyn DnsRules>>);

impl Visible {
    /// May it show service `name`?
    pub(crate) fn service(&self, name: &str) -> bool {
        self.0.as_ref().is_none_or(|r| r.service_read(name))
    }

    /// May it show node `name`?
    pub(crate) fn node(&self, name: &str) -> bool {
        self.0.as_ref().is_none_or(|r| r.node_read(name))
    }
}

/// A shared [`DnsAcl`] in a [`DnsConfig`] (equal only to itself).
#[derive(Clone)]
pub struct AclLink(pub std::sync::Arc<dyn DnsAcl>);

impl std::fmt::Debug for AclLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AclLink")
    }
}

impl PartialEq for AclLink {
    fn eq(&self, other: &Self) -> bool {
        std::sync::Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for AclLink {}

impl DnsConfig {
    /// What a question may show, its token resolved once.
    pub(crate) fn visible(&self) -> Visible {
        Visible(self.acl.as_ref().map(|a| a.0.rules()))
    }
}

/// Executes prepared queries for DNS.
pub trait PreparedQueries: Send + Sync + 'static {
    /// Run the query `name` (an ID, a name or a template's prefix);
    /// `None` when there is no such query.
    fn execute(&self, name: &str) -> BoxFuture<'_, Option<QueryAnswer>>;
}

/// What executing a prepared query gave.
#[derive(Debug, Clone)]
pub struct QueryAnswer {
    /// The service it asked for (its service TTL applies without `ttl`).
    pub service: String,
    /// The instances, in answer order (already filtered).
    pub instances: Vec<muster_engine::ServiceHealth>,
    /// The query's `DNS.TTL`.
    pub ttl: Option<Duration>,
    /// The datacenter that answered (for target names).
    pub datacenter: String,
}

/// A shared [`PreparedQueries`] in a [`DnsConfig`] (equal only to itself).
#[derive(Clone)]
pub struct QueryLink(pub std::sync::Arc<dyn PreparedQueries>);

impl std::fmt::Debug for QueryLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("QueryLink")
    }
}

impl PartialEq for QueryLink {
    fn eq(&self, other: &Self) -> bool {
        std::sync::Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for QueryLink {}

/// Answers DNS questions about other datacenters: the server forwards
/// them to a server of that datacenter.
pub trait Datacenters: Send + Sync + 'static {
    /// The answer to `packet` from datacenter `dc` (at most `max_size`
    /// bytes, the packet's ID); `None` when no server of `dc` is known or
    /// none answered.
    fn ask(&self, dc: &str, packet: Vec<u8>, max_size: usize) -> BoxFuture<'_, Option<Vec<u8>>>;
}

/// A shared [`Datacenters`] in a [`DnsConfig`] (equal only to itself).
#[derive(Clone)]
pub struct DatacenterLink(pub std::sync::Arc<dyn Datacenters>);

impl std::fmt::Debug for DatacenterLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DatacenterLink")
    }
}

impl PartialEq for DatacenterLink {
    fn eq(&self, other: &Self) -> bool {
        std::sync::Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for DatacenterLink {}

/// `dns_config.recursor_strategy`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RecursorStrategy {
    /// Always in configuration order (`"sequential"`, the default).
    #[default]
    Sequential,
    /// A fresh random order per question (`"random"`).
    Random,
}

impl RecursorStrategy {
    /// Parse the config value; `None` for anything else.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "sequential" => Some(RecursorStrategy::Sequential),
            "random" => Some(RecursorStrategy::Random),
            _ => None,
        }
    }

    /// The recursors in the order to try them for one question.
    pub(crate) fn order(self, recursors: &[SocketAddr]) -> Vec<SocketAddr> {
        let mut list = recursors.to_vec();
        if self == RecursorStrategy::Random {
            list.shuffle(&mut rand::rng());
        }
        list
    }
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
            recursor_strategy: RecursorStrategy::Sequential,
            recursor_timeout: Duration::from_secs(2),
            a_record_limit: 0,
            node_meta_txt: true,
            datacenters: None,
            queries: None,
            acl: None,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recursor_strategy_parses_and_orders() {
        assert_eq!(
            RecursorStrategy::parse("sequential"),
            Some(RecursorStrategy::Sequential)
        );
        assert_eq!(
            RecursorStrategy::parse("random"),
            Some(RecursorStrategy::Random)
        );
        assert_eq!(RecursorStrategy::parse("Random"), None);
        let list: Vec<SocketAddr> = (1..=8u16)
            .map(|p| SocketAddr::from(([127, 0, 0, 1], p)))
            .collect();
        assert_eq!(RecursorStrategy::Sequential.order(&list), list);
        let mut shuffled_once = false;
        for _ in 0..32 {
            let order = RecursorStrategy::Random.order(&list);
            let mut sorted = order.clone();
            sorted.sort();
            assert_eq!(sorted, list, "a permutation");
            shuffled_once |= order != list;
        }
        assert!(shuffled_once);
    }
}

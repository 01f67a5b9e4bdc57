//! The agent's DNS listeners: binding UDP and TCP on one port, and the
//! DNS settings from the config files (`domain`, `alt_domain`,
//! `recursors`, `dns_config`: `enable_truncate`, `only_passing`,
//! `udp_answer_limit`, `a_record_limit`, `node_ttl`, `service_ttl`,
//! `recursor_timeout`, `recursor_strategy`,
//! `enable_additional_node_meta_txt`; other keys are accepted and ignored).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::config::AgentSettings;

/// Prepared queries for DNS (`<name>.query.<domain>`), run as
/// `/v1/query/<name>/execute` runs them (failover included).
pub(crate) struct DnsQueries {
    pub engine: muster_engine::Engine,
    pub api: muster_api::ApiConfig,
}

impl muster_dns::PreparedQueries for DnsQueries {
    fn execute(&self, name: &str) -> muster_engine::BoxFuture<'_, Option<muster_dns::QueryAnswer>> {
        let name = name.to_string();
        Box::pin(async move {
            match muster_api::prepared::execute(&self.engine, &self.api, &name, None).await {
                Ok(Some(ex)) => Some(muster_dns::QueryAnswer {
                    service: ex.service,
                    instances: ex.nodes,
                    ttl: ex.ttl,
                    datacenter: ex.datacenter,
                }),
                Ok(None) => None,
                Err(e) => {
                    tracing::warn!(query = %name, error = %e, "dns: prepared query failed");
                    None
                }
            }
        })
    }
}

/// What DNS may show with ACLs on: the rules of the agent's `dns` token
/// (else `default`, else anonymous), resolved from the authorizer cache
/// once per question. A token that cannot be resolved shows nothing.
pub(crate) struct DnsAcl {
    pub acl: Arc<muster_api::acl::Acl>,
    pub engine: muster_engine::Engine,
}

/// A resolved DNS token's rules (`None`: it could not be resolved, so
/// nothing is visible).
struct TokenRules(Option<Arc<muster_api::acl::Resolved>>);

impl TokenRules {
    fn read(&self, resource: muster_api::acl::rules::Resource, name: &str) -> bool {
        self.0.as_ref().is_some_and(|r| {
            r.authz
                .allowed(resource, name, muster_api::acl::rules::Access::Read)
        })
    }
}

impl muster_dns::DnsRules for TokenRules {
    fn service_read(&self, name: &str) -> bool {
        self.read(muster_api::acl::rules::Resource::Service, name)
    }

    fn node_read(&self, name: &str) -> bool {
        self.read(muster_api::acl::rules::Resource::Node, name)
    }
}

impl muster_dns::DnsAcl for DnsAcl {
    fn rules(&self) -> Arc<dyn muster_dns::DnsRules> {
        let token = self.acl.tokens.dns_token();
        Arc::new(TokenRules(
            self.acl.resolve(&self.engine, token.as_deref()).ok(),
        ))
    }
}

/// Bind the DNS listeners: UDP and TCP on the same port (`-dns-port 0`: a
/// free port, the same for both).
pub(crate) async fn bind_dns(
    addr: SocketAddr,
) -> anyhow::Result<(tokio::net::UdpSocket, TcpListener)> {
    let err = |e: std::io::Error| {
        anyhow::anyhow!("Error: cannot listen for DNS on {addr}: {e}: is another agent running? Pick another port with -dns-port")
    };
    for _ in 0..16 {
        let udp = tokio::net::UdpSocket::bind(addr).await.map_err(err)?;
        let bound = udp.local_addr().map_err(err)?;
        match TcpListener::bind(bound).await {
            Ok(tcp) => return Ok((udp, tcp)),
            // Port 0 picked a UDP port whose TCP twin is taken: try another.
            Err(_) if addr.port() == 0 => continue,
            Err(e) => return Err(err(e)),
        }
    }
    Err(anyhow::anyhow!(
        "Error: cannot find a free port for DNS on {addr}: pass -dns-port"
    ))
}

/// The DNS settings: `domain`, `alt_domain`, `recursors` and `dns_config`
/// from the config files, Consul's defaults otherwise.
pub(crate) fn dns_config(
    st: &AgentSettings,
    datacenter: &str,
) -> anyhow::Result<muster_dns::DnsConfig> {
    let mut dns = muster_dns::DnsConfig::new(datacenter);
    let fqdn = |d: &str| {
        if d.ends_with('.') {
            d.to_string()
        } else {
            format!("{d}.")
        }
    };
    if let Some(domain) = &st.domain {
        dns.domain = fqdn(domain);
    }
    if let Some(alt) = &st.alt_domain {
        dns.alt_domain = Some(fqdn(alt));
    }
    for r in &st.recursors {
        let addr = r
            .parse::<SocketAddr>()
            .or_else(|_| r.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, 53)))
            .map_err(|_| {
                anyhow::anyhow!("Error: recursor {r:?} is not an IP address (or ip:port)")
            })?;
        dns.recursors.push(addr);
    }
    let c = &st.dns_config;
    let flag = |k: &str| c.get(k).and_then(serde_json::Value::as_bool);
    let dur = |k: &str| -> anyhow::Result<Option<Duration>> {
        match c.get(k).and_then(serde_json::Value::as_str) {
            Some(v) => muster_engine::duration::parse(v)
                .map(Some)
                .map_err(|e| anyhow::anyhow!("Error: dns_config.{k}: {e}")),
            None => Ok(None),
        }
    };
    if let Some(v) = flag("enable_truncate") {
        dns.enable_truncate = v;
    }
    if let Some(v) = flag("only_passing") {
        dns.only_passing = v;
    }
    if let Some(v) = flag("enable_additional_node_meta_txt") {
        dns.node_meta_txt = v;
    }
    let count = |k: &str| -> anyhow::Result<Option<usize>> {
        match c.get(k) {
            None => Ok(None),
            // Consul decodes weakly typed input: "3" is 3.
            Some(v) => v
                .as_u64()
                .or_else(|| v.as_str().and_then(|t| t.trim().parse().ok()))
                .map(|n| Some(usize::try_from(n).unwrap_or(usize::MAX)))
                .ok_or_else(|| {
                    anyhow::anyhow!("Error: dns_config.{k} must be a non-negative integer")
                }),
        }
    };
    if let Some(n) = count("udp_answer_limit")? {
        dns.udp_answer_limit = n;
    }
    if let Some(n) = count("a_record_limit")? {
        dns.a_record_limit = n;
    }
    if let Some(v) = c.get("recursor_strategy") {
        dns.recursor_strategy = v
            .as_str()
            .and_then(muster_dns::RecursorStrategy::parse)
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "Error: dns_config.recursor_strategy must be \"sequential\" or \"random\", not {v}"
                )
            })?;
    }
    if let Some(d) = dur("node_ttl")? {
        dns.node_ttl = d;
    }
    if let Some(d) = dur("recursor_timeout")? {
        dns.recursor_timeout = d;
    }
    if let Some(map) = c.get("service_ttl").and_then(serde_json::Value::as_object) {
        for (name, v) in map {
            let text = v.as_str().unwrap_or_default();
            let d = muster_engine::duration::parse(text)
                .map_err(|e| anyhow::anyhow!("Error: dns_config.service_ttl.{name}: {e}"))?;
            dns.service_ttl.insert(name.clone(), d);
        }
    }
    Ok(dns)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(dns_config: serde_json::Value) -> AgentSettings {
        AgentSettings {
            dns_config: dns_config.as_object().cloned().unwrap_or_default(),
            ..AgentSettings::default()
        }
    }

    #[test]
    fn dns_config_reads_limits_strategy_and_meta_txt() -> anyhow::Result<()> {
        let dns = dns_config(&settings(serde_json::json!({})), "dc1")?;
        assert_eq!(dns.a_record_limit, 0);
        assert_eq!(
            dns.recursor_strategy,
            muster_dns::RecursorStrategy::Sequential
        );
        assert!(dns.node_meta_txt);

        let st = settings(serde_json::json!({
            "a_record_limit": 4,
            "udp_answer_limit": "2",
            "recursor_strategy": "random",
            "enable_additional_node_meta_txt": false,
        }));
        let dns = dns_config(&st, "dc1")?;
        assert_eq!((dns.a_record_limit, dns.udp_answer_limit), (4, 2));
        assert_eq!(dns.recursor_strategy, muster_dns::RecursorStrategy::Random);
        assert!(!dns.node_meta_txt);
        Ok(())
    }

    #[test]
    fn dns_config_rejects_bad_values() {
        for bad in [
            serde_json::json!({"recursor_strategy": "round-robin"}),
            serde_json::json!({"recursor_strategy": 1}),
            serde_json::json!({"a_record_limit": -1}),
            serde_json::json!({"a_record_limit": "three"}),
        ] {
            let err = dns_config(&settings(bad.clone()), "dc1");
            assert!(err.is_err(), "{bad} must be rejected");
        }
    }
}

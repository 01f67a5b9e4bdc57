//! Parsing a question name into what it asks for (§10.1).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::DnsConfig;

/// What a question name refers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Lookup {
    /// The domain apex (SOA, NS).
    Apex,
    /// `[<tag>.]<service>.service`, `_<service>._<tag>.service`.
    Service {
        service: String,
        tag: Option<String>,
    },
    /// `<node>.node`.
    Node(String),
    /// `<hex>.addr`.
    Addr(IpAddr),
    /// A service, node or query name of another datacenter: answered by
    /// that datacenter's servers.
    Remote(String),
    /// `<name>.query`: a prepared query of this datacenter.
    Query(String),
    /// A name in the domain that cannot exist: NXDOMAIN.
    NxDomain,
    /// A reverse lookup (`in-addr.arpa`, `ip6.arpa`).
    Ptr(IpAddr),
    /// Outside the domain: recursion.
    Outside,
}

/// A parsed name: the lookup and the domain (without the trailing dot) the
/// question used, for names in answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Parsed {
    pub lookup: Lookup,
    pub domain: String,
}

/// `labels` are the question's labels, lowercased. `srv` tells whether the
/// question is for SRV (the `.service` label may then be omitted).
pub(crate) fn parse(cfg: &DnsConfig, labels: &[String], srv: bool) -> Parsed {
    let domains = std::iter::once(cfg.domain.as_str()).chain(cfg.alt_domain.as_deref());
    for domain in domains {
        let domain = domain.trim_end_matches('.').to_ascii_lowercase();
        let dlabels: Vec<&str> = domain.split('.').filter(|l| !l.is_empty()).collect();
        if labels.len() < dlabels.len() {
            continue;
        }
        let (rest, tail) = labels.split_at(labels.len() - dlabels.len());
        if tail.iter().zip(&dlabels).all(|(a, b)| a == b) {
            let lookup = parse_in_domain(cfg, rest, srv);
            return Parsed { lookup, domain };
        }
    }
    let lookup = parse_reverse(labels).map_or(Lookup::Outside, Lookup::Ptr);
    Parsed {
        lookup,
        domain: cfg.domain.trim_end_matches('.').to_ascii_lowercase(),
    }
}

const KINDS: &[&str] = &[
    "service", "node", "query", "addr", "connect", "ingress", "virtual",
];

fn parse_in_domain(cfg: &DnsConfig, rest: &[String], srv: bool) -> Lookup {
    if rest.is_empty() {
        return Lookup::Apex;
    }
    let n = rest.len();
    // Where the kind label is, and the datacenter after it.
    let (kind_at, dc) = if KINDS.contains(&rest[n - 1].as_str()) {
        (n - 1, None)
    } else if n >= 2 && KINDS.contains(&rest[n - 2].as_str()) {
        (n - 2, Some(rest[n - 1].as_str()))
    } else if srv && (rfc2782(rest).is_some() || (n == 3 && rfc2782(&rest[..2]).is_some())) {
        // `_web._tcp[.dc].consul` without `.service`.
        let (dc, parts) = match n {
            2 => (None, rest),
            3 => (Some(rest[2].as_str()), &rest[..2]),
            _ => return Lookup::NxDomain,
        };
        return match rfc2782(parts) {
            Some(_) if dc.is_some_and(|dc| !dc.eq_ignore_ascii_case(&cfg.datacenter)) => {
                Lookup::Remote(dc.unwrap_or_default().to_string())
            }
            Some(l) => l,
            None => Lookup::NxDomain,
        };
    } else {
        return Lookup::NxDomain;
    };
    let prefix = &rest[..kind_at];
    if prefix.is_empty() {
        return Lookup::NxDomain;
    }
    let kind = rest[kind_at].as_str();
    let other_dc = dc.filter(|dc| !dc.eq_ignore_ascii_case(&cfg.datacenter));
    if let Some(dc) = other_dc {
        // `<hex>.addr.<dc>` needs no data: answered here, as Consul does.
        return match kind {
            "service" | "node" | "query" => Lookup::Remote(dc.to_string()),
            "addr" if prefix.len() == 1 => {
                parse_hex(&prefix[0]).map_or(Lookup::NxDomain, Lookup::Addr)
            }
            _ => Lookup::NxDomain,
        };
    }
    match kind {
        "service" => {
            if let Some(l) = rfc2782(prefix) {
                return l;
            }
            let service = prefix[prefix.len() - 1].clone();
            let tag = (prefix.len() > 1).then(|| prefix[..prefix.len() - 1].join("."));
            Lookup::Service { service, tag }
        }
        "node" => Lookup::Node(prefix.join(".")),
        "query" => Lookup::Query(prefix.join(".")),
        "addr" if prefix.len() == 1 => parse_hex(&prefix[0]).map_or(Lookup::NxDomain, Lookup::Addr),
        _ => Lookup::NxDomain,
    }
}

/// `_<service>._<tag>`: `_tcp` means no tag filter.
fn rfc2782(labels: &[String]) -> Option<Lookup> {
    match labels {
        [s, t] if s.len() > 1 && t.len() > 1 && s.starts_with('_') && t.starts_with('_') => {
            let tag = &t[1..];
            Some(Lookup::Service {
                service: s[1..].to_string(),
                tag: (tag != "tcp").then(|| tag.to_string()),
            })
        }
        _ => None,
    }
}

/// 8 hex digits → IPv4, 32 → IPv6.
pub(crate) fn parse_hex(s: &str) -> Option<IpAddr> {
    if !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    match s.len() {
        8 => u32::from_str_radix(s, 16)
            .ok()
            .map(|v| IpAddr::V4(Ipv4Addr::from(v))),
        32 => u128::from_str_radix(s, 16)
            .ok()
            .map(|v| IpAddr::V6(Ipv6Addr::from(v))),
        _ => None,
    }
}

/// The hex label of an address for `<hex>.addr` targets.
pub(crate) fn to_hex(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => format!("{:08x}", u32::from(v4)),
        IpAddr::V6(v6) => format!("{:032x}", u128::from(v6)),
    }
}

/// `4.3.2.1.in-addr.arpa` and the 32-nibble `ip6.arpa` form.
fn parse_reverse(labels: &[String]) -> Option<IpAddr> {
    let n = labels.len();
    if n == 6 && labels[4] == "in-addr" && labels[5] == "arpa" {
        let mut octets = [0u8; 4];
        for (i, l) in labels[..4].iter().enumerate() {
            octets[3 - i] = l.parse().ok()?;
        }
        return Some(IpAddr::V4(Ipv4Addr::from(octets)));
    }
    if n == 34 && labels[32] == "ip6" && labels[33] == "arpa" {
        let mut hex = String::with_capacity(32);
        for l in labels[..32].iter().rev() {
            if l.len() != 1 {
                return None;
            }
            hex.push_str(l);
        }
        return u128::from_str_radix(&hex, 16)
            .ok()
            .map(|v| IpAddr::V6(Ipv6Addr::from(v)));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(name: &str, srv: bool) -> Lookup {
        let cfg = DnsConfig::new("dc1");
        let labels: Vec<String> = name
            .split('.')
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect();
        parse(&cfg, &labels, srv).lookup
    }

    fn svc(s: &str, t: Option<&str>) -> Lookup {
        Lookup::Service {
            service: s.into(),
            tag: t.map(Into::into),
        }
    }

    #[test]
    fn name_forms() {
        assert_eq!(p("web.service.consul", false), svc("web", None));
        assert_eq!(p("web.service.dc1.consul.", false), svc("web", None));
        assert_eq!(p("v1.web.service.consul", false), svc("web", Some("v1")));
        assert_eq!(p("a.b.web.service.consul", false), svc("web", Some("a.b")));
        assert_eq!(p("_web._tcp.service.consul", true), svc("web", None));
        assert_eq!(
            p("_web._v1.service.dc1.consul", true),
            svc("web", Some("v1"))
        );
        assert_eq!(p("_web._tcp.consul", true), svc("web", None));
        assert_eq!(p("_web._tcp.consul", false), Lookup::NxDomain);
        assert_eq!(
            p("web.service.dc2.consul", false),
            Lookup::Remote("dc2".into())
        );
        assert_eq!(
            p("_web._tcp.service.dc2.consul", true),
            Lookup::Remote("dc2".into())
        );
        assert_eq!(
            p("_web._tcp.dc2.consul", true),
            Lookup::Remote("dc2".into())
        );
        assert_eq!(p("n1.node.dc2.consul", false), Lookup::Remote("dc2".into()));
        assert_eq!(p("q.query.dc2.consul", false), Lookup::Remote("dc2".into()));
        assert!(matches!(
            p("7f000001.addr.dc2.consul", false),
            Lookup::Addr(_)
        ));
        assert_eq!(p("x.connect.dc2.consul", false), Lookup::NxDomain);
        assert_eq!(p("n1.node.consul", false), Lookup::Node("n1".into()));
        assert_eq!(p("a.b.node.dc1.consul", false), Lookup::Node("a.b".into()));
        assert_eq!(
            p("7f000001.addr.dc1.consul", false),
            Lookup::Addr(
                "127.0.0.1"
                    .parse()
                    .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
            )
        );
        assert_eq!(p("xyz.addr.dc1.consul", false), Lookup::NxDomain);
        assert_eq!(p("q.query.consul", false), Lookup::Query("q".into()));
        assert_eq!(
            p("geo-db.query.dc1.consul", false),
            Lookup::Query("geo-db".into())
        );
        assert_eq!(p("consul", false), Lookup::Apex);
        assert_eq!(p("foo.consul", false), Lookup::NxDomain);
        assert_eq!(p("example.com", false), Lookup::Outside);
        assert_eq!(
            p("4.3.2.10.in-addr.arpa", false),
            Lookup::Ptr(IpAddr::V4(Ipv4Addr::new(10, 2, 3, 4)))
        );
    }

    #[test]
    fn hex_round_trip() {
        for ip in ["10.0.0.1", "::1", "2001:db8::5"] {
            let ip: IpAddr = match ip.parse() {
                Ok(ip) => ip,
                Err(e) => panic!("{e}"),
            };
            assert_eq!(parse_hex(&to_hex(ip)), Some(ip));
        }
    }
}

//! The query handler: a packet in, an [`Outcome`] out, answered from the
//! engine (§10.1, §10.2). Synchronous and panic-free on any input; what
//! needs the network (recursion, hostname targets) is handed back to the
//! caller as [`Outcome::Forward`] or [`Outcome::Resolve`].

use std::net::IpAddr;

use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{CNAME, NS, PTR, SRV};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use muster_engine::WatchSet;
use muster_engine::{Engine, ServiceHealth, Status};
use rand::seq::SliceRandom;

use crate::names::{self, Lookup, Parsed};
use crate::records;
use crate::response::{error_reply, finish, Answer, Chase, Entry, Pending, Slot};
use crate::DnsConfig;

/// How deep hostname targets inside the Consul domain are followed
/// (Consul's `maxRecursionLevelDefault`).
const MAX_RECURSION: u8 = 3;

/// What to do with a packet.
pub(crate) enum Outcome {
    /// Send these bytes.
    Reply(Vec<u8>),
    /// Send nothing (unreadable header, or not a query).
    Drop,
    /// The name is outside the domain: recursion (the parsed request).
    Forward(Box<Message>),
    /// Answered, but hostname targets are to be resolved through the
    /// recursors first (only when there are recursors).
    Resolve(Box<Pending>),
    /// A name of another datacenter: asked of its servers (the parsed
    /// request, for an NXDOMAIN when no one answers).
    Remote(Box<RemoteQuestion>),
    /// `<name>.query.<domain>`: a prepared query to execute.
    Query(Box<QueryQuestion>),
}

/// A prepared-query question.
pub(crate) struct QueryQuestion {
    /// The query's name (or ID).
    pub name: String,
    /// The parsed request.
    pub req: Message,
    /// The domain the question used.
    pub domain: String,
}

/// A question for another datacenter.
pub(crate) struct RemoteQuestion {
    /// The datacenter named.
    pub dc: String,
    /// The parsed request.
    pub req: Message,
    /// The domain the question used.
    pub domain: String,
}

impl RemoteQuestion {
    /// NXDOMAIN with the SOA: no server of the datacenter is known (or
    /// answered).
    pub(crate) fn unknown(&self, cfg: &DnsConfig, max_size: usize) -> Vec<u8> {
        finish(&self.req, cfg, Answer::nxdomain(), &self.domain, max_size)
    }
}

/// Answer one DNS message. `max_size` is the transport's limit:
/// [`crate::MAX_TCP_SIZE`] (or more) for TCP (full answers, trimmed only
/// to 64 KiB); anything smaller means UDP, following §10.3 (512 bytes and
/// `udp_answer_limit` answers without EDNS0, else the advertised size;
/// never more than `max_size`, but at least 512). An empty result means
/// "send nothing". Names outside the domain get REFUSED without
/// recursors and SERVFAIL with them, and hostname targets stay bare
/// CNAME/SRV targets: network work is done by `serve`.
pub fn handle(engine: &Engine, cfg: &DnsConfig, query: &[u8], max_size: usize) -> Vec<u8> {
    match respond(engine, cfg, query, max_size) {
        Outcome::Reply(bytes) => bytes,
        Outcome::Drop => Vec::new(),
        Outcome::Forward(req) => {
            let rcode = if cfg.recursors.is_empty() {
                ResponseCode::Refused
            } else {
                ResponseCode::ServFail
            };
            error_reply(&req, cfg, rcode, false)
        }
        Outcome::Resolve(pending) => pending.complete(cfg, Vec::new(), max_size),
        Outcome::Remote(q) => q.unknown(cfg, max_size),
        Outcome::Query(q) => query_reply(cfg, &q, None, max_size),
    }
}

/// Consul's timing of one question answered here (`consul.dns.
/// domain_query`, `consul.dns.ptr_query`), recorded however it ends.
struct DnsTiming {
    ptr: bool,
    start: std::time::Instant,
}

impl Drop for DnsTiming {
    fn drop(&mut self) {
        let ms = muster_metrics::ms(self.start.elapsed());
        if self.ptr {
            muster_metrics::timing!("consul.dns.ptr_query", ms);
        } else {
            muster_metrics::timing!("consul.dns.domain_query", ms);
        }
    }
}

/// Parse and answer one packet. Records the question's `name` and `qtype`
/// on the current tracing span (the per-query span of `serve`).
pub(crate) fn respond(engine: &Engine, cfg: &DnsConfig, query: &[u8], max_size: usize) -> Outcome {
    let req = match Message::from_vec(query) {
        Ok(m) => m,
        Err(_) => return raw_formerr(query),
    };
    if req.metadata.message_type != MessageType::Query {
        return Outcome::Drop;
    }
    if req.metadata.op_code != OpCode::Query {
        return Outcome::Reply(error_reply(&req, cfg, ResponseCode::NotImp, false));
    }
    let [q] = req.queries.as_slice() else {
        return Outcome::Reply(error_reply(&req, cfg, ResponseCode::FormErr, false));
    };
    let qtype = q.query_type;
    let span = tracing::Span::current();
    span.record("name", tracing::field::display(&q.name));
    span.record("qtype", tracing::field::display(qtype));
    let parsed = names::parse(cfg, &labels(&q.name), qtype == RecordType::SRV);
    let zone_transfer = matches!(qtype, RecordType::AXFR | RecordType::IXFR);
    if zone_transfer && parsed.lookup != Lookup::Outside {
        return Outcome::Reply(error_reply(&req, cfg, ResponseCode::NotImp, true));
    }
    let domain = parsed.domain.clone();
    let _timing = DnsTiming {
        ptr: matches!(parsed.lookup, Lookup::Ptr(_)),
        start: std::time::Instant::now(),
    };
    match parsed.lookup {
        Lookup::Remote(dc) => return Outcome::Remote(Box::new(RemoteQuestion { dc, req, domain })),
        Lookup::Query(name) => {
            return Outcome::Query(Box::new(QueryQuestion { name, req, domain }))
        }
        _ => {}
    }
    let mut answer = match lookup(engine, cfg, &q.name, qtype, parsed) {
        Ok(Some(a)) => a.nodata_soa(),
        Ok(None) => return Outcome::Forward(Box::new(req)),
        Err(()) => return Outcome::Reply(error_reply(&req, cfg, ResponseCode::ServFail, true)),
    };
    resolve_internal(engine, cfg, &mut answer, req.edns.is_some(), MAX_RECURSION);
    if answer.chases.is_empty() {
        return Outcome::Reply(finish(&req, cfg, answer, &domain, max_size));
    }
    Outcome::Resolve(Box::new(Pending {
        req,
        answer,
        domain,
    }))
}

/// The labels of `name`, lowercased.
fn labels(name: &Name) -> Vec<String> {
    name.iter()
        .map(|l| String::from_utf8_lossy(l).to_ascii_lowercase())
        .collect()
}

/// The answer for a parsed question; `None` when it goes to the recursors.
fn lookup(
    engine: &Engine,
    cfg: &DnsConfig,
    qname: &Name,
    qtype: RecordType,
    parsed: Parsed,
) -> Result<Option<Answer>, ()> {
    let dc = cfg.datacenter.to_ascii_lowercase();
    let suffix = format!("{dc}.{}.", parsed.domain);
    let answer = match parsed.lookup {
        Lookup::Outside => return Ok(None),
        // Hostname targets in other datacenters are not followed.
        Lookup::NxDomain | Lookup::Remote(_) | Lookup::Query(_) => Answer::nxdomain(),
        Lookup::Apex => apex(engine, cfg, &parsed.domain, &suffix, qtype),
        Lookup::Service { service, tag } => {
            let q = ServiceQuery {
                qname,
                qtype,
                service: &service,
                tag: tag.as_deref(),
                suffix: &suffix,
            };
            lookup_service(engine, cfg, &q)?
        }
        Lookup::Node(node) => lookup_node(engine, cfg, qname, qtype, &node)?,
        Lookup::Addr(ip) => {
            let ttl = cfg.node_ttl_secs();
            let rec = records::fits(qtype, ip).then(|| records::addr(qname, ttl, ip));
            Answer::simple(rec.into_iter().collect())
        }
        Lookup::Ptr(ip) => return lookup_ptr(engine, cfg, qname, qtype, ip, &suffix),
    };
    Ok(Some(answer))
}

/// Resolve the hostname targets that lie inside the Consul domain(s) from
/// the engine (up to `depth` levels, as Consul does). Targets outside stay
/// in `chases` for the recursors, or are dropped when there are none.
fn resolve_internal(engine: &Engine, cfg: &DnsConfig, a: &mut Answer, edns: bool, depth: u8) {
    for chase in std::mem::take(&mut a.chases) {
        let parsed = names::parse(cfg, &labels(&chase.name), false);
        match parsed.lookup {
            Lookup::Outside | Lookup::Ptr(_) => {
                if !cfg.recursors.is_empty() {
                    a.chases.push(chase);
                }
            }
            _ if depth == 0 => {
                tracing::debug!(name = %chase.name, "dns: CNAME recursion too deep");
            }
            _ => {
                let Ok(Some(mut inner)) = lookup(engine, cfg, &chase.name, chase.qtype, parsed)
                else {
                    continue;
                };
                resolve_internal(engine, cfg, &mut inner, edns, depth - 1);
                // Hostnames the inner answer still needs from recursors are
                // left out: one level of network resolution per query.
                let found = inner.entries.into_iter().map(|e| e.record).collect();
                a.absorb(&chase, found, edns, cfg.a_record_limit);
            }
        }
    }
}

/// A header-only FORMERR for a packet hickory can't parse, or nothing if
/// even the header is unreadable or it is not a query.
fn raw_formerr(query: &[u8]) -> Outcome {
    if query.len() < 12 || query[2] & 0x80 != 0 {
        return Outcome::Drop;
    }
    let mut out = vec![0u8; 12];
    out[0] = query[0];
    out[1] = query[1];
    out[2] = 0x80 | (query[2] & 0x78);
    out[3] = 1; // FORMERR
    Outcome::Reply(out)
}

/// Not critical (and not warning with `only_passing`); the SRV weight.
fn weight(cfg: &DnsConfig, inst: &ServiceHealth) -> Option<u16> {
    let worst = inst
        .checks
        .iter()
        .map(|c| c.status)
        .fold(Status::Passing, |w, s| match (w, s) {
            (Status::Critical, _) | (_, Status::Critical) => Status::Critical,
            (Status::Warning, _) | (_, Status::Warning) => Status::Warning,
            _ => Status::Passing,
        });
    let w = match worst {
        Status::Critical => return None,
        Status::Warning if cfg.only_passing => return None,
        Status::Warning => inst.service.weights.warning,
        Status::Passing => inst.service.weights.passing,
    };
    Some(u16::try_from(w).unwrap_or(u16::MAX))
}

/// Where an instance is reached (Consul's `nodeServiceRecords`).
enum Target {
    /// An IP: the service's own (`own`) or its node's.
    Ip { ip: IpAddr, own: bool },
    /// A hostname: answered with a CNAME, or as the SRV target.
    Host(Name),
}

/// The service address if set, else the node address. A hostname service
/// address naming the question itself falls back to the node's IP.
fn target(inst: &ServiceHealth, qname: &Name) -> Option<Target> {
    let (svc, node) = (&inst.service.address, &inst.node.address);
    let node_ip = node.parse::<IpAddr>().ok();
    if svc.is_empty() {
        return match node_ip {
            Some(ip) => Some(Target::Ip { ip, own: false }),
            None if node.is_empty() => None,
            None => records::name(node).map(Target::Host),
        };
    }
    if let Ok(ip) = svc.parse::<IpAddr>() {
        return Some(Target::Ip { ip, own: true });
    }
    let host = records::name(svc)?;
    match node_ip {
        Some(ip) if host == *qname => Some(Target::Ip { ip, own: false }),
        _ => Some(Target::Host(host)),
    }
}

/// A service question.
struct ServiceQuery<'a> {
    /// The question name (owner of the answers).
    qname: &'a Name,
    /// The question type.
    qtype: RecordType,
    /// The service name.
    service: &'a str,
    /// The tag filter.
    tag: Option<&'a str>,
    /// `<dc>.<domain>.` for target names.
    suffix: &'a str,
}

fn lookup_service(engine: &Engine, cfg: &DnsConfig, q: &ServiceQuery<'_>) -> Result<Answer, ()> {
    let visible = cfg.visible();
    if !visible.service(q.service) {
        return Ok(Answer::nxdomain());
    }
    let list = engine
        .health_service_shared(q.service)
        .map_err(|_| ())?
        .value;
    let mut live: Vec<(&ServiceHealth, u16)> = list
        .iter()
        .filter(|inst| visible.node(&inst.node.node))
        .filter(|inst| {
            q.tag
                .is_none_or(|t| inst.service.tags.iter().any(|x| x.eq_ignore_ascii_case(t)))
        })
        .filter_map(|inst| weight(cfg, inst).map(|w| (inst, w)))
        .collect();
    if live.is_empty() {
        return Ok(Answer::nxdomain());
    }
    live.shuffle(&mut rand::rng());
    let ttl = cfg.service_ttl_secs(q.service);
    Ok(instances_answer(cfg, q, &live, ttl))
}

/// The answer for `live` instances (in answer order, with SRV weights).
fn instances_answer(
    cfg: &DnsConfig,
    q: &ServiceQuery<'_>,
    live: &[(&ServiceHealth, u16)],
    ttl: u32,
) -> Answer {
    let mut a = Answer::default();
    // A/AAAA/ANY: the first hostname instance, used only when no instance
    // has an IP answer (one name cannot carry several CNAMEs).
    let mut cname: Option<Name> = None;
    for (inst, w) in live {
        let Some(to) = target(inst, q.qname) else {
            continue;
        };
        if q.qtype == RecordType::SRV {
            srv_entry(cfg, &mut a, q, inst, *w, to, ttl);
            continue;
        }
        match to {
            Target::Ip { ip, .. } if records::fits(q.qtype, ip) => {
                let rec = records::addr(q.qname, ttl, ip);
                if !a.entries.iter().any(|e| e.record == rec) {
                    a.entries.push(Entry::bare(rec));
                }
            }
            Target::Host(host)
                if cname.is_none()
                    && matches!(q.qtype, RecordType::A | RecordType::AAAA | RecordType::ANY) =>
            {
                cname = Some(host);
            }
            _ => {}
        }
    }
    if q.qtype != RecordType::SRV {
        if cfg.a_record_limit > 0 {
            a.entries.truncate(cfg.a_record_limit);
        }
        if let (true, Some(host)) = (a.entries.is_empty(), cname) {
            cname_to(&mut a, q.qname, q.qtype, ttl, host);
        }
    }
    a
}

/// The reply to `<name>.query.<domain>` from what executing the query
/// gave (`None`: no such query, NXDOMAIN). Instances are in the query's
/// order; its `DNS.TTL` wins over the agent's service TTL.
pub(crate) fn query_reply(
    cfg: &DnsConfig,
    q: &QueryQuestion,
    executed: Option<crate::QueryAnswer>,
    max_size: usize,
) -> Vec<u8> {
    let Some(query) = q.req.queries.first() else {
        return Vec::new();
    };
    let answer = match executed {
        Some(ex) if !ex.instances.is_empty() && cfg.visible().service(&ex.service) => {
            let suffix = format!("{}.{}.", ex.datacenter.to_ascii_lowercase(), q.domain);
            let sq = ServiceQuery {
                qname: &query.name,
                qtype: query.query_type,
                service: &ex.service,
                tag: None,
                suffix: &suffix,
            };
            let ttl = match ex.ttl {
                Some(d) => u32::try_from(d.as_secs()).unwrap_or(u32::MAX),
                None => cfg.service_ttl_secs(&ex.service),
            };
            let live: Vec<(&ServiceHealth, u16)> = ex
                .instances
                .iter()
                .map(|inst| {
                    let warning = inst.checks.iter().any(|c| c.status == Status::Warning);
                    let w = if warning {
                        inst.service.weights.warning
                    } else {
                        inst.service.weights.passing
                    };
                    (inst, u16::try_from(w).unwrap_or(u16::MAX))
                })
                .collect();
            instances_answer(cfg, &sq, &live, ttl)
        }
        _ => Answer::nxdomain(),
    };
    finish(&q.req, cfg, answer.nodata_soa(), &q.domain, max_size)
}

/// Add the SRV answer of one instance, with its glue and node meta.
fn srv_entry(
    cfg: &DnsConfig,
    a: &mut Answer,
    q: &ServiceQuery<'_>,
    inst: &ServiceHealth,
    weight: u16,
    to: Target,
    ttl: u32,
) {
    let node_name = records::name(&format!("{}.node.{}", inst.node.node, q.suffix));
    let (target, glue, host) = match to {
        Target::Ip { ip, own } => {
            let target = if own {
                records::name(&format!("{}.addr.{}", names::to_hex(ip), q.suffix))
            } else {
                node_name.clone()
            };
            let Some(target) = target else {
                return;
            };
            let glue = records::addr(&target, ttl, ip);
            (target, vec![glue], false)
        }
        Target::Host(host) => (host, Vec::new(), true),
    };
    let srv = SRV::new(1, weight, inst.service.port, target.clone());
    let record = Record::from_rdata(q.qname.clone(), ttl, RData::SRV(srv));
    if a.entries.iter().any(|e| e.record == record) {
        return;
    }
    let meta = match (&node_name, cfg.node_meta_txt) {
        (Some(owner), true) => records::meta_txt(owner, ttl, &inst.node.meta),
        _ => Vec::new(),
    };
    if host {
        a.chases.push(Chase {
            name: target,
            qtype: RecordType::A,
            ttl,
            slot: Slot::Glue(a.entries.len()),
        });
    }
    a.entries.push(Entry { record, glue, meta });
}

/// Answer with a CNAME from `qname` to `host`, to be followed by the A or
/// AAAA records of `host`.
fn cname_to(a: &mut Answer, qname: &Name, qtype: RecordType, ttl: u32, host: Name) {
    let record = Record::from_rdata(qname.clone(), ttl, RData::CNAME(CNAME(host.clone())));
    a.entries.push(Entry::bare(record));
    a.chases.push(Chase {
        name: host,
        qtype: if qtype == RecordType::AAAA {
            RecordType::AAAA
        } else {
            RecordType::A
        },
        ttl,
        slot: Slot::Answers,
    });
}

fn lookup_node(
    engine: &Engine,
    cfg: &DnsConfig,
    qname: &Name,
    qtype: RecordType,
    node: &str,
) -> Result<Answer, ()> {
    if !cfg.visible().node(node) {
        return Ok(Answer::nxdomain());
    }
    let Some(found) = engine
        .catalog_node(node, &mut WatchSet::new())
        .map_err(|_| ())?
        .value
    else {
        return Ok(Answer::nxdomain());
    };
    let ttl = cfg.node_ttl_secs();
    let mut a = Answer::default();
    let address = &found.node.address;
    match address.parse::<IpAddr>() {
        Ok(ip) if records::fits(qtype, ip) => {
            a.entries.push(Entry::bare(records::addr(qname, ttl, ip)))
        }
        Ok(_) => {}
        Err(_) if matches!(qtype, RecordType::A | RecordType::AAAA | RecordType::ANY) => {
            if let Some(host) = records::name(address).filter(|_| !address.is_empty()) {
                cname_to(&mut a, qname, qtype, ttl, host);
            }
        }
        Err(_) => {}
    }
    let txt = records::meta_txt(qname, ttl, &found.node.meta);
    match qtype {
        RecordType::TXT | RecordType::ANY => {
            a.entries.extend(txt.into_iter().map(Entry::bare));
        }
        RecordType::A | RecordType::AAAA if cfg.node_meta_txt => a.extra = txt,
        _ => {}
    }
    Ok(a)
}

fn apex(engine: &Engine, cfg: &DnsConfig, domain: &str, suffix: &str, qtype: RecordType) -> Answer {
    let mut a = Answer::default();
    if matches!(qtype, RecordType::SOA | RecordType::ANY) {
        if let Some(soa) = records::soa(domain) {
            a.entries.push(Entry::bare(soa));
        }
    }
    if matches!(qtype, RecordType::NS | RecordType::ANY) {
        let server = engine.node_name();
        let (Some(owner), Some(target)) = (
            records::name(&format!("{domain}.")),
            records::name(&format!("{server}.node.{suffix}")),
        ) else {
            return a;
        };
        let ttl = cfg.node_ttl_secs();
        let glue = engine
            .catalog_node(&server, &mut WatchSet::new())
            .ok()
            .and_then(|n| n.value)
            .and_then(|n| n.node.address.parse::<IpAddr>().ok())
            .map(|ip| records::addr(&target, ttl, ip));
        let ns = Record::from_rdata(owner, ttl, RData::NS(NS(target)));
        a.entries.push(Entry {
            record: ns,
            glue: glue.into_iter().collect(),
            meta: Vec::new(),
        });
    }
    a
}

/// PTR for a node address, else a service instance address; `None` when
/// nothing matches (the question then goes to the recursors).
fn lookup_ptr(
    engine: &Engine,
    cfg: &DnsConfig,
    qname: &Name,
    qtype: RecordType,
    ip: IpAddr,
    suffix: &str,
) -> Result<Option<Answer>, ()> {
    let is = |s: &str| s.parse::<IpAddr>().is_ok_and(|a| a == ip);
    let visible = cfg.visible();
    let nodes = engine
        .catalog_nodes(&mut WatchSet::new())
        .map_err(|_| ())?
        .value;
    let target = match nodes
        .iter()
        .find(|n| is(&n.address) && visible.node(&n.node))
    {
        Some(n) => format!("{}.node.{suffix}", n.node),
        None => {
            let services = engine
                .catalog_services(&mut WatchSet::new())
                .map_err(|_| ())?
                .value;
            let visible = |s: &&muster_engine::ServiceNode| {
                is(&s.service.address)
                    && visible.service(&s.service.service)
                    && visible.node(&s.node.node)
            };
            match services.iter().find(visible) {
                Some(s) => format!("{}.service.{suffix}", s.service.service),
                None => return Ok(None),
            }
        }
    };
    let mut a = Answer::default();
    if matches!(qtype, RecordType::PTR | RecordType::ANY) {
        if let Some(t) = records::name(&target) {
            let ttl = cfg.node_ttl_secs();
            let ptr = Record::from_rdata(qname.clone(), ttl, RData::PTR(PTR(t)));
            a.entries.push(Entry::bare(ptr));
        }
    }
    Ok(Some(a))
}

//! The query handler: a packet in, a packet out, answered from the engine
//! (§10.2, §10.3). Synchronous and panic-free on any input.

use std::net::IpAddr;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{NS, PTR, SRV};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use muster_engine::{Engine, ServiceHealth, Status};
use rand::seq::SliceRandom;

use crate::names::{self, Lookup};
use crate::records;
use crate::DnsConfig;

/// The largest DNS message (a TCP answer is trimmed to fit it). A
/// `max_size` this large or larger selects the stream (TCP) rules.
pub const MAX_TCP_SIZE: usize = 65535;

/// The largest EDNS0 payload size honoured over UDP.
const MAX_UDP_SIZE: usize = 65467;

/// What to do with a packet.
pub(crate) enum Outcome {
    /// Send these bytes.
    Reply(Vec<u8>),
    /// Send nothing (unreadable header, or not a query).
    Drop,
    /// The name is outside the domain: recursion (the parsed request).
    Forward(Box<Message>),
}

/// Answer one DNS message. `max_size` is the transport's limit:
/// [`MAX_TCP_SIZE`] (or more) for TCP (full answers, trimmed only to
/// 64 KiB); anything smaller means UDP, following §10.3 (512 bytes and
/// `udp_answer_limit` answers without EDNS0, else the advertised size;
/// never more than `max_size`, but at least 512). An empty result means
/// "send nothing". Names outside the domain get REFUSED without
/// recursors and SERVFAIL with them (forwarding is done by `serve`).
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
    }
}

/// The answers of one lookup, before size limits.
#[derive(Default)]
struct Answer {
    rcode: ResponseCode,
    /// Each answer with the additional records that go with it (SRV glue).
    answers: Vec<(Record, Vec<Record>)>,
    /// Additional records not tied to one answer (node meta TXT).
    extra: Vec<Record>,
    /// SOA in AUTHORITY (NXDOMAIN, NODATA).
    soa: bool,
}

impl Answer {
    fn nxdomain() -> Self {
        Answer {
            rcode: ResponseCode::NXDomain,
            soa: true,
            ..Answer::default()
        }
    }

    fn simple(answers: Vec<Record>) -> Self {
        Answer {
            answers: answers.into_iter().map(|r| (r, Vec::new())).collect(),
            ..Answer::default()
        }
    }

    /// NOERROR with no answers gets the SOA (NODATA).
    fn nodata_soa(mut self) -> Self {
        if self.rcode == ResponseCode::NoError && self.answers.is_empty() {
            self.soa = true;
        }
        self
    }
}

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
    let labels: Vec<String> = q
        .name
        .iter()
        .map(|l| String::from_utf8_lossy(l).to_ascii_lowercase())
        .collect();
    let qtype = q.query_type;
    let parsed = names::parse(cfg, &labels, qtype == RecordType::SRV);
    let dc = cfg.datacenter.to_ascii_lowercase();
    let suffix = format!("{dc}.{}.", parsed.domain);
    let answer = match parsed.lookup {
        Lookup::Outside => return Outcome::Forward(Box::new(req)),
        _ if matches!(qtype, RecordType::AXFR | RecordType::IXFR) => {
            return Outcome::Reply(error_reply(&req, cfg, ResponseCode::NotImp, true));
        }
        Lookup::NxDomain => Ok(Answer::nxdomain()),
        Lookup::Apex => Ok(apex(engine, cfg, &parsed.domain, &suffix, qtype)),
        Lookup::Service { service, tag } => lookup_service(
            engine,
            cfg,
            &q.name,
            qtype,
            &service,
            tag.as_deref(),
            &suffix,
        ),
        Lookup::Node(node) => lookup_node(engine, cfg, &q.name, qtype, &node),
        Lookup::Addr(ip) => {
            let ttl = cfg.node_ttl_secs();
            let rec = records::fits(qtype, ip).then(|| records::addr(&q.name, ttl, ip));
            Ok(Answer::simple(rec.into_iter().collect()))
        }
        Lookup::Ptr(ip) => match lookup_ptr(engine, cfg, &q.name, qtype, ip, &suffix) {
            Ok(Some(a)) => Ok(a),
            Ok(None) => return Outcome::Forward(Box::new(req)),
            Err(()) => Err(()),
        },
    };
    match answer {
        Ok(a) => Outcome::Reply(finish(&req, cfg, a.nodata_soa(), &parsed.domain, max_size)),
        Err(()) => Outcome::Reply(error_reply(&req, cfg, ResponseCode::ServFail, true)),
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

fn base_response(req: &Message, cfg: &DnsConfig, authoritative: bool) -> Message {
    let mut resp = Message::response(req.metadata.id, req.metadata.op_code);
    resp.metadata.recursion_desired = req.metadata.recursion_desired;
    resp.metadata.recursion_available = !cfg.recursors.is_empty();
    resp.metadata.authoritative = authoritative;
    resp.queries = req.queries.clone();
    if let Some(e) = &req.edns {
        let mut edns = Edns::new();
        edns.set_max_payload(e.max_payload().max(512));
        resp.set_edns(edns);
    }
    resp
}

/// An answer with only a response code.
pub(crate) fn error_reply(
    req: &Message,
    cfg: &DnsConfig,
    rcode: ResponseCode,
    authoritative: bool,
) -> Vec<u8> {
    let mut resp = base_response(req, cfg, authoritative);
    resp.metadata.response_code = rcode;
    resp.to_vec().unwrap_or_default()
}

/// Assemble the response and trim it to the transport's size (§10.3).
fn finish(req: &Message, cfg: &DnsConfig, a: Answer, domain: &str, max_size: usize) -> Vec<u8> {
    let mut base = base_response(req, cfg, true);
    base.metadata.response_code = a.rcode;
    let udp = max_size < MAX_TCP_SIZE;
    let limit = if udp {
        let want = req.edns.as_ref().map_or(512, |e| {
            usize::from(e.max_payload()).clamp(512, MAX_UDP_SIZE)
        });
        want.min(max_size.max(512))
    } else {
        MAX_TCP_SIZE
    };
    let mut entries = a.answers;
    let mut truncated = false;
    if udp && req.edns.is_none() {
        let cap = cfg.udp_answer_limit.min(8);
        if entries.len() > cap {
            entries.truncate(cap);
            truncated = true;
        }
    }
    let soa: Vec<Record> = if a.soa {
        records::soa(domain).into_iter().collect()
    } else {
        Vec::new()
    };
    let build = |n: usize, authority: bool, extra: bool, tc: bool| -> Option<Vec<u8>> {
        let mut m = base.clone();
        m.metadata.truncation = tc && cfg.enable_truncate;
        m.answers = entries[..n].iter().map(|(r, _)| r.clone()).collect();
        let glue = entries[..n].iter().flat_map(|(_, g)| g.iter());
        let extras = if extra { a.extra.as_slice() } else { &[] };
        let mut additionals: Vec<Record> = Vec::new();
        for r in glue.chain(extras) {
            if !additionals.contains(r) {
                additionals.push(r.clone());
            }
        }
        m.additionals = additionals;
        if authority {
            m.authorities = soa.clone();
        }
        m.to_vec().ok()
    };
    let fits = |b: &Option<Vec<u8>>| b.as_ref().is_some_and(|b| b.len() <= limit);
    let n = entries.len();
    let full = build(n, true, true, truncated);
    if fits(&full) {
        return full.unwrap_or_default();
    }
    let no_auth = build(n, false, true, truncated);
    if fits(&no_auth) {
        return no_auth.unwrap_or_default();
    }
    // The most answers that fit: binary search over the answer count.
    let (mut lo, mut hi) = (0usize, n);
    while lo < hi {
        let mid = (lo + hi).div_ceil(2);
        if fits(&build(mid, false, true, true)) {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    let best = build(lo, false, true, true);
    if fits(&best) {
        return best.unwrap_or_default();
    }
    build(lo, false, false, true).unwrap_or_default()
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

fn lookup_service(
    engine: &Engine,
    cfg: &DnsConfig,
    qname: &Name,
    qtype: RecordType,
    service: &str,
    tag: Option<&str>,
    suffix: &str,
) -> Result<Answer, ()> {
    let mut list = engine.health_service(service).map_err(|_| ())?.value;
    list.retain(|inst| {
        tag.is_none_or(|t| inst.service.tags.iter().any(|x| x.eq_ignore_ascii_case(t)))
    });
    let mut live: Vec<(ServiceHealth, u16)> = list
        .into_iter()
        .filter_map(|inst| weight(cfg, &inst).map(|w| (inst, w)))
        .collect();
    if live.is_empty() {
        return Ok(Answer::nxdomain());
    }
    live.shuffle(&mut rand::thread_rng());
    let ttl = cfg.service_ttl_secs(service);
    let mut answers: Vec<(Record, Vec<Record>)> = Vec::new();
    for (inst, w) in &live {
        let own = inst.service.address.parse::<IpAddr>().ok();
        let ip = match (&own, inst.service.address.is_empty()) {
            (Some(ip), _) => *ip,
            // A hostname service address: not resolved (no CNAME support).
            (None, false) => continue,
            (None, true) => match inst.node.address.parse::<IpAddr>() {
                Ok(ip) => ip,
                Err(_) => continue,
            },
        };
        let entry = match qtype {
            RecordType::SRV => {
                let target = match own {
                    Some(ip) => format!("{}.addr.{suffix}", names::to_hex(ip)),
                    None => format!("{}.node.{suffix}", inst.node.node),
                };
                let Some(target) = records::name(&target) else {
                    continue;
                };
                let glue = records::addr(&target, ttl, ip);
                let srv = SRV::new(1, *w, inst.service.port, target);
                (
                    Record::from_rdata(qname.clone(), ttl, RData::SRV(srv)),
                    vec![glue],
                )
            }
            _ if records::fits(qtype, ip) => (records::addr(qname, ttl, ip), Vec::new()),
            _ => continue,
        };
        if !answers.iter().any(|(r, _)| *r == entry.0) {
            answers.push(entry);
        }
    }
    Ok(Answer {
        answers,
        ..Answer::default()
    })
}

fn lookup_node(
    engine: &Engine,
    cfg: &DnsConfig,
    qname: &Name,
    qtype: RecordType,
    node: &str,
) -> Result<Answer, ()> {
    let Some(found) = engine.catalog_node(node).map_err(|_| ())?.value else {
        return Ok(Answer::nxdomain());
    };
    let ttl = cfg.node_ttl_secs();
    let mut a = Answer::default();
    if let Ok(ip) = found.node.address.parse::<IpAddr>() {
        if records::fits(qtype, ip) {
            a.answers.push((records::addr(qname, ttl, ip), Vec::new()));
        }
    }
    let txt = records::meta_txt(qname, ttl, &found.node.meta);
    match qtype {
        RecordType::TXT | RecordType::ANY => {
            a.answers.extend(txt.into_iter().map(|r| (r, Vec::new())));
        }
        RecordType::A | RecordType::AAAA => a.extra = txt,
        _ => {}
    }
    Ok(a)
}

fn apex(engine: &Engine, cfg: &DnsConfig, domain: &str, suffix: &str, qtype: RecordType) -> Answer {
    let mut a = Answer::default();
    if matches!(qtype, RecordType::SOA | RecordType::ANY) {
        if let Some(soa) = records::soa(domain) {
            a.answers.push((soa, Vec::new()));
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
            .catalog_node(&server)
            .ok()
            .and_then(|n| n.value)
            .and_then(|n| n.node.address.parse::<IpAddr>().ok())
            .map(|ip| records::addr(&target, ttl, ip));
        let ns = Record::from_rdata(owner, ttl, RData::NS(NS(target)));
        a.answers.push((ns, glue.into_iter().collect()));
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
    let nodes = engine.catalog_nodes().map_err(|_| ())?.value;
    let target = match nodes.iter().find(|n| is(&n.address)) {
        Some(n) => format!("{}.node.{suffix}", n.node),
        None => {
            let services = engine.catalog_services().map_err(|_| ())?.value;
            match services.iter().find(|s| is(&s.service.address)) {
                Some(s) => format!("{}.service.{suffix}", s.service.service),
                None => return Ok(None),
            }
        }
    };
    let mut a = Answer::default();
    if matches!(qtype, RecordType::PTR | RecordType::ANY) {
        if let Some(t) = records::name(&target) {
            let ttl = cfg.node_ttl_secs();
            a.answers.push((
                Record::from_rdata(qname.clone(), ttl, RData::PTR(PTR(t))),
                Vec::new(),
            ));
        }
    }
    Ok(Some(a))
}

//! Assembling a response from the answers of one lookup: the header and
//! EDNS0 (with the client-subnet echo), hostname (CNAME) targets still to
//! resolve, and trimming to the transport's size (§10.3). It knows nothing
//! of the engine and does no I/O.

use hickory_proto::op::{Edns, Message, ResponseCode};
use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsCode, EdnsOption};
use hickory_proto::rr::{Name, Record, RecordType};

use crate::records;
use crate::DnsConfig;

/// The largest DNS message (a TCP answer is trimmed to fit it). A
/// `max_size` this large or larger selects the stream (TCP) rules.
pub const MAX_TCP_SIZE: usize = 65535;

/// The largest EDNS0 payload size honoured over UDP.
const MAX_UDP_SIZE: usize = 65467;

/// Without EDNS0, at most this many records of a resolved hostname are
/// kept (Consul's `maxRecurseRecords`).
const MAX_RECURSE_RECORDS: usize = 5;

/// One answer record and the ADDITIONAL records that go with it; trimming
/// keeps or drops them together.
pub(crate) struct Entry {
    /// The ANSWER record.
    pub record: Record,
    /// A/AAAA of an SRV or NS target, or the resolved chain of a hostname
    /// SRV target.
    pub glue: Vec<Record>,
    /// Node meta TXT of an SRV target (dropped before answers when the
    /// message is too large).
    pub meta: Vec<Record>,
}

impl Entry {
    /// An answer without ADDITIONAL records.
    pub fn bare(record: Record) -> Self {
        Entry {
            record,
            glue: Vec::new(),
            meta: Vec::new(),
        }
    }
}

/// Where the records of a resolved hostname go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Slot {
    /// After the CNAME in ANSWER (A/AAAA/ANY questions).
    Answers,
    /// Into the glue of this entry (a hostname SRV target).
    Glue(usize),
}

/// A hostname to resolve through the recursors before answering.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Chase {
    /// The hostname (the CNAME or SRV target).
    pub name: Name,
    /// A or AAAA.
    pub qtype: RecordType,
    /// The TTL given to the records found (the answer's TTL, as Consul).
    pub ttl: u32,
    /// Where the records go.
    pub slot: Slot,
}

/// The answers of one lookup, before size limits.
#[derive(Default)]
pub(crate) struct Answer {
    /// The response code.
    pub rcode: ResponseCode,
    /// The answers, in order.
    pub entries: Vec<Entry>,
    /// ADDITIONAL records not tied to one answer (node meta TXT of a node
    /// A/AAAA answer).
    pub extra: Vec<Record>,
    /// SOA in AUTHORITY (NXDOMAIN, NODATA).
    pub soa: bool,
    /// Hostnames to resolve through the recursors (empty without any).
    pub chases: Vec<Chase>,
}

impl Answer {
    /// NXDOMAIN with the SOA.
    pub fn nxdomain() -> Self {
        Answer {
            rcode: ResponseCode::NXDomain,
            soa: true,
            ..Answer::default()
        }
    }

    /// NOERROR with these answers.
    pub fn simple(answers: Vec<Record>) -> Self {
        Answer {
            entries: answers.into_iter().map(Entry::bare).collect(),
            ..Answer::default()
        }
    }

    /// NOERROR with no answers gets the SOA (NODATA).
    pub fn nodata_soa(mut self) -> Self {
        if self.rcode == ResponseCode::NoError && self.entries.is_empty() {
            self.soa = true;
        }
        self
    }

    /// Add what a recursor answered for `chase`: its CNAME, A and AAAA
    /// records with the chase's TTL; at most [`MAX_RECURSE_RECORDS`]
    /// without EDNS0, and at most `a_record_limit` A/AAAA in ANSWER.
    pub fn absorb(&mut self, chase: &Chase, found: Vec<Record>, edns: bool, a_record_limit: usize) {
        let mut kept: Vec<Record> = Vec::new();
        let mut addrs = 0usize;
        for mut r in found {
            let rtype = r.record_type();
            if !matches!(rtype, RecordType::CNAME | RecordType::A | RecordType::AAAA) {
                continue;
            }
            let is_addr = rtype != RecordType::CNAME;
            if is_addr && chase.slot == Slot::Answers && a_record_limit > 0 {
                if addrs == a_record_limit {
                    continue;
                }
                addrs += 1;
            }
            r.ttl = chase.ttl;
            if !kept.contains(&r) {
                kept.push(r);
            }
            if !edns && kept.len() == MAX_RECURSE_RECORDS {
                break;
            }
        }
        match chase.slot {
            Slot::Answers => self.entries.extend(kept.into_iter().map(Entry::bare)),
            Slot::Glue(i) => {
                if let Some(e) = self.entries.get_mut(i) {
                    e.glue.extend(kept);
                }
            }
        }
    }
}

/// The largest response for `req` on a transport whose limit is
/// `max_size` ([`MAX_TCP_SIZE`] or more: TCP): 512 bytes over UDP without
/// EDNS0, else the advertised size (capped), never more than `max_size`.
pub(crate) fn size_limit(req: &Message, max_size: usize) -> usize {
    if max_size >= MAX_TCP_SIZE {
        return MAX_TCP_SIZE;
    }
    let want = req.edns.as_ref().map_or(512, |e| {
        usize::from(e.max_payload()).clamp(512, MAX_UDP_SIZE)
    });
    want.min(max_size.max(512))
}

/// The header, question and EDNS0 of a response to `req`. An EDNS0
/// client-subnet option is echoed with scope prefix 0 (the answer does not
/// depend on the client's address).
pub(crate) fn base_response(req: &Message, cfg: &DnsConfig, authoritative: bool) -> Message {
    let mut resp = Message::response(req.metadata.id, req.metadata.op_code);
    resp.metadata.recursion_desired = req.metadata.recursion_desired;
    resp.metadata.recursion_available = !cfg.recursors.is_empty();
    resp.metadata.authoritative = authoritative;
    resp.queries = req.queries.clone();
    if let Some(e) = &req.edns {
        let mut edns = Edns::new();
        edns.set_max_payload(e.max_payload().max(512));
        if let Some(EdnsOption::Subnet(ecs)) = e.option(EdnsCode::Subnet) {
            let echo = ClientSubnet::new(ecs.addr(), ecs.source_prefix(), 0);
            edns.options_mut().insert(EdnsOption::Subnet(echo));
        }
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

/// Assemble the response and trim it to the transport's size (§10.3):
/// without EDNS0 over UDP first to `udp_answer_limit` (at most 8) answers,
/// then AUTHORITY goes, then node meta TXT, then answers (with their glue)
/// until it fits.
pub(crate) fn finish(
    req: &Message,
    cfg: &DnsConfig,
    a: Answer,
    domain: &str,
    max_size: usize,
) -> Vec<u8> {
    let mut base = base_response(req, cfg, true);
    base.metadata.response_code = a.rcode;
    let udp = max_size < MAX_TCP_SIZE;
    let limit = size_limit(req, max_size);
    let mut entries = a.entries;
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
    let build = |n: usize, authority: bool, meta: bool, tc: bool| -> Option<Vec<u8>> {
        let mut m = base.clone();
        m.metadata.truncation = tc && cfg.enable_truncate;
        m.answers = entries[..n].iter().map(|e| e.record.clone()).collect();
        let mut additionals: Vec<Record> = Vec::new();
        let glue = entries[..n].iter().flat_map(|e| e.glue.iter());
        let metas = entries[..n]
            .iter()
            .flat_map(|e| e.meta.iter())
            .chain(a.extra.iter())
            .filter(|_| meta);
        for r in glue.chain(metas) {
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
    for (authority, meta) in [(true, true), (false, true), (false, false)] {
        let whole = build(n, authority, meta, truncated);
        if fits(&whole) {
            return whole.unwrap_or_default();
        }
    }
    // The most answers that fit: binary search over the answer count.
    let (mut lo, mut hi) = (0usize, n);
    while lo < hi {
        let mid = (lo + hi).div_ceil(2);
        if fits(&build(mid, false, false, true)) {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    build(lo, false, false, true).unwrap_or_default()
}

/// A response waiting for the recursors to resolve its hostname targets.
pub(crate) struct Pending {
    /// The request.
    pub req: Message,
    /// The answer so far (its `chases` are what to resolve).
    pub answer: Answer,
    /// The domain the question used (for the SOA).
    pub domain: String,
}

impl Pending {
    /// The response, with `found[i]` the records a recursor returned for
    /// `answer.chases[i]` (missing or empty: that hostname stays a bare
    /// CNAME or SRV target).
    pub fn complete(
        mut self,
        cfg: &DnsConfig,
        found: Vec<Vec<Record>>,
        max_size: usize,
    ) -> Vec<u8> {
        let chases = std::mem::take(&mut self.answer.chases);
        let edns = self.req.edns.is_some();
        for (chase, records) in chases.iter().zip(found) {
            self.answer.absorb(chase, records, edns, cfg.a_record_limit);
        }
        finish(&self.req, cfg, self.answer, &self.domain, max_size)
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use hickory_proto::rr::rdata::{CNAME, TXT};
    use hickory_proto::rr::RData;

    use super::*;

    fn name(s: &str) -> Name {
        records::name(s).expect("test name")
    }

    fn a(owner: &str, last: u8) -> Record {
        records::addr(&name(owner), 60, IpAddr::V4(Ipv4Addr::new(10, 0, 0, last)))
    }

    fn chase(slot: Slot) -> Chase {
        Chase {
            name: name("h.example."),
            qtype: RecordType::A,
            ttl: 7,
            slot,
        }
    }

    #[test]
    fn absorb_keeps_addresses_and_cnames_with_the_chase_ttl() {
        let cname = Record::from_rdata(
            name("h.example."),
            60,
            RData::CNAME(CNAME(name("i.example."))),
        );
        let txt = Record::from_rdata(
            name("h.example."),
            60,
            RData::TXT(TXT::new(vec!["x".into()])),
        );
        let mut found = vec![cname, txt];
        found.extend((1..=8).map(|i| a("i.example.", i)));

        let mut ans = Answer::default();
        ans.absorb(&chase(Slot::Answers), found.clone(), false, 0);
        assert_eq!(ans.entries.len(), MAX_RECURSE_RECORDS, "cap without EDNS0");
        assert!(ans.entries.iter().all(|e| e.record.ttl == 7));
        assert_eq!(ans.entries[0].record.record_type(), RecordType::CNAME);

        let mut ans = Answer::default();
        ans.absorb(&chase(Slot::Answers), found.clone(), true, 3);
        let types: Vec<RecordType> = ans.entries.iter().map(|e| e.record.record_type()).collect();
        assert_eq!(
            types,
            [
                RecordType::CNAME,
                RecordType::A,
                RecordType::A,
                RecordType::A
            ],
            "a_record_limit in ANSWER"
        );

        // Glue: into the SRV entry, not limited by a_record_limit.
        let mut ans = Answer::simple(vec![a("x.example.", 9)]);
        ans.absorb(&chase(Slot::Glue(0)), found, true, 1);
        assert_eq!(ans.entries.len(), 1);
        assert_eq!(ans.entries[0].glue.len(), 9);
    }
}

//! The rest of the DNS interface against a real agent: hostname addresses
//! (CNAME answers, hostname SRV targets, resolution through a recursor),
//! `dns_config.a_record_limit`, `recursor_strategy` and
//! `enable_additional_node_meta_txt`, the EDNS0 client-subnet echo,
//! truncated recursor answers retried over TCP, and the per-query debug
//! log line. Recursors are [`upstream`] responders on loopback.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;

use hickory_proto::op::{Edns, Message, OpCode, ResponseCode};
use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsCode, EdnsOption};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{RData, Record, RecordType};
use serde_json::{json, Value};

use super::{
    a_addrs, dns_addr, ips, query, register_web, tcp, udp, udp_raw, wait_a, DNS_TIMEOUT, SYNC,
};
use crate::agent_checks::poll;
use crate::catalog::{instance, register_ok};
use crate::harness::{write_file, Agent};

/// How many A records a `big.` name gets from [`upstream`].
const BIG: u8 = 40;

/// A loopback recursor on UDP and TCP (one port).
pub(super) struct Upstream {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Questions it got over TCP.
    pub tcp_questions: Arc<AtomicUsize>,
}

/// Start a recursor answering every A question with `ip`, except names
/// starting with `big.`: [`BIG`] A records 10.77.0.x, too many for 512
/// bytes, so over UDP an empty answer with TC set.
pub(super) fn upstream(ip: Ipv4Addr) -> Upstream {
    for _ in 0..32 {
        let sock = UdpSocket::bind("127.0.0.1:0").expect("bind the upstream's UDP socket");
        let addr = sock.local_addr().expect("upstream addr");
        let Ok(listener) = TcpListener::bind(addr) else {
            continue;
        };
        thread::spawn(move || {
            let mut buf = vec![0u8; 65535];
            while let Ok((n, peer)) = sock.recv_from(&mut buf) {
                if let Some(out) = upstream_answer(&buf[..n], ip, true) {
                    let _ = sock.send_to(&out, peer);
                }
            }
        });
        let tcp_questions = Arc::new(AtomicUsize::new(0));
        let count = tcp_questions.clone();
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut s) = stream else {
                    return;
                };
                let count = count.clone();
                thread::spawn(move || {
                    let mut len = [0u8; 2];
                    while s.read_exact(&mut len).is_ok() {
                        let mut pkt = vec![0u8; usize::from(u16::from_be_bytes(len))];
                        if s.read_exact(&mut pkt).is_err() {
                            return;
                        }
                        count.fetch_add(1, Ordering::SeqCst);
                        let Some(out) = upstream_answer(&pkt, ip, false) else {
                            continue;
                        };
                        let n = u16::try_from(out.len()).expect("answer fits TCP");
                        let mut framed = n.to_be_bytes().to_vec();
                        framed.extend_from_slice(&out);
                        if s.write_all(&framed).is_err() {
                            return;
                        }
                    }
                });
            }
        });
        return Upstream {
            addr,
            tcp_questions,
        };
    }
    panic!("no loopback port free on both UDP and TCP for the upstream");
}

fn upstream_answer(pkt: &[u8], ip: Ipv4Addr, udp: bool) -> Option<Vec<u8>> {
    let req = Message::from_vec(pkt).ok()?;
    let q = req.queries.first()?;
    let mut resp = Message::response(req.metadata.id, OpCode::Query);
    resp.metadata.recursion_desired = req.metadata.recursion_desired;
    resp.metadata.recursion_available = true;
    resp.queries = req.queries.clone();
    if q.query_type() == RecordType::A {
        let big = q.name().to_ascii().to_ascii_lowercase().starts_with("big.");
        let answers: Vec<Ipv4Addr> = if big {
            (1..=BIG).map(|i| Ipv4Addr::new(10, 77, 0, i)).collect()
        } else {
            vec![ip]
        };
        for a in answers {
            resp.add_answer(Record::from_rdata(q.name().clone(), 60, RData::A(A(a))));
        }
    }
    let out = resp.to_vec().ok()?;
    if udp && out.len() > 512 {
        resp.answers.clear();
        resp.metadata.truncation = true;
        return resp.to_vec().ok();
    }
    Some(out)
}

/// A `-dev` agent with `config` in a config dir (kept alive with it).
fn agent_with(config: Value) -> (Agent, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("config dir");
    write_file(dir.path(), "dns.json", config.to_string().as_bytes());
    let agent = Agent::start(
        &["-dev", "-config-dir", dir.path().to_str().expect("utf-8")],
        false,
    );
    (agent, dir)
}

/// One framed TCP exchange of raw bytes.
fn tcp_raw(addr: SocketAddr, packet: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut s = TcpStream::connect_timeout(&addr, DNS_TIMEOUT)?;
    s.set_read_timeout(Some(DNS_TIMEOUT))?;
    s.set_write_timeout(Some(DNS_TIMEOUT))?;
    let len = u16::try_from(packet.len()).expect("small query");
    let mut framed = len.to_be_bytes().to_vec();
    framed.extend_from_slice(packet);
    s.write_all(&framed)?;
    let mut len = [0u8; 2];
    s.read_exact(&mut len)?;
    let mut out = vec![0u8; usize::from(u16::from_be_bytes(len))];
    s.read_exact(&mut out)?;
    Ok(out)
}

/// A question with an EDNS0 OPT of `size` bytes and, if given, a
/// client-subnet option.
fn edns_query(name: &str, qtype: RecordType, size: u16, ecs: Option<&str>) -> Vec<u8> {
    let mut q = query(name, qtype);
    let mut edns = Edns::new();
    edns.set_max_payload(size);
    if let Some(ecs) = ecs {
        let subnet: ClientSubnet = ecs.parse().expect("test subnet");
        edns.options_mut().insert(EdnsOption::Subnet(subnet));
    }
    q.set_edns(edns);
    q.to_vec().expect("encode query")
}

fn parse(raw: &[u8]) -> Message {
    Message::from_vec(raw).unwrap_or_else(|e| panic!("parse reply: {e}"))
}

/// `(owner, target)` of the CNAMEs in ANSWER.
fn cnames(m: &Message) -> Vec<(String, String)> {
    m.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::CNAME(c) => Some((r.name.to_ascii(), c.0.to_ascii())),
            _ => None,
        })
        .collect()
}

/// `(port, target)` of the SRV answers, sorted.
fn srvs(m: &Message) -> Vec<(u16, String)> {
    let mut v: Vec<(u16, String)> = m
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::SRV(s) => Some((s.port, s.target.to_ascii())),
            _ => None,
        })
        .collect();
    v.sort();
    v
}

/// `(owner, text)` of the TXT records in ADDITIONAL.
fn txt_extra(m: &Message) -> Vec<(String, String)> {
    m.additionals
        .iter()
        .filter(|r| r.record_type() == RecordType::TXT)
        .map(|r| (r.name.to_ascii(), r.data.to_string()))
        .collect()
}

/// `ext` on n1 with service address db.example.org, port 5432.
fn register_ext(agent: &Agent) {
    let mut ext = instance("n1", "10.0.0.1", "ext", "ext-1", &[], "passing");
    ext["Service"]["Address"] = json!("db.example.org");
    ext["Service"]["Port"] = json!(5432);
    register_ok(agent, &ext);
}

/// Poll until `name` A answers with a CNAME; the reply.
fn wait_cname(addr: SocketAddr, name: &str) -> Message {
    poll(&format!("CNAME for {name}"), SYNC, || {
        let (_, m) = udp(addr, name, RecordType::A);
        if cnames(&m).is_empty() {
            Err(format!("{m:?}"))
        } else {
            Ok(m)
        }
    })
}

#[test]
fn dns_answers_hostname_addresses_with_a_cname() {
    // Without recursors: just the CNAME, and the hostname as SRV target.
    let agent = Agent::dev();
    let addr = dns_addr(&agent);
    register_ext(&agent);
    let m = wait_cname(addr, "ext.service.consul.");
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert_eq!(
        cnames(&m),
        [(
            "ext.service.consul.".to_string(),
            "db.example.org.".to_string()
        )]
    );
    assert_eq!(m.answers.len(), 1, "only the CNAME: {m:?}");
    let m = tcp(addr, "ext.service.consul.", RecordType::SRV);
    assert_eq!(srvs(&m), [(5432, "db.example.org.".to_string())]);
    assert!(
        !m.additionals
            .iter()
            .any(|r| matches!(r.record_type(), RecordType::A | RecordType::AAAA)),
        "no address for a hostname target: {m:?}"
    );
    // A node whose address is a hostname.
    register_ok(
        &agent,
        &instance("h1", "host.example.org", "onhost", "on-1", &[], "passing"),
    );
    let m = wait_cname(addr, "h1.node.consul.");
    assert_eq!(
        cnames(&m),
        [(
            "h1.node.consul.".to_string(),
            "host.example.org.".to_string()
        )]
    );
    let m = tcp(addr, "onhost.service.consul.", RecordType::A);
    assert_eq!(cnames(&m).len(), 1, "{m:?}");

    // With a recursor: the CNAME target's A records follow the CNAME, and
    // a hostname SRV target gets its A in ADDITIONAL.
    let up = upstream(Ipv4Addr::new(10, 9, 8, 7));
    let (agent, _dir) = agent_with(json!({"recursors": [up.addr.to_string()]}));
    let addr = dns_addr(&agent);
    register_ext(&agent);
    let m = wait_cname(addr, "ext.service.consul.");
    assert_eq!(m.answers.len(), 2, "{m:?}");
    assert_eq!(m.answers[1].name.to_ascii(), "db.example.org.");
    assert_eq!(a_addrs(&m.answers), ips(&["10.9.8.7"]));
    let m = tcp(addr, "ext.service.consul.", RecordType::A);
    assert_eq!(a_addrs(&m.answers), ips(&["10.9.8.7"]));
    let m = tcp(addr, "ext.service.consul.", RecordType::SRV);
    assert_eq!(srvs(&m), [(5432, "db.example.org.".to_string())]);
    let glue = m.additionals.iter().any(|r| {
        r.name.to_ascii() == "db.example.org."
            && matches!(&r.data, RData::A(A(a)) if *a == Ipv4Addr::new(10, 9, 8, 7))
    });
    assert!(glue, "resolved A of the SRV target in ADDITIONAL: {m:?}");
}

#[test]
fn dns_a_record_limit_caps_answers_on_udp_and_tcp() {
    let (agent, _dir) = agent_with(json!({
        "dns_config": {"a_record_limit": 2, "udp_answer_limit": 1}
    }));
    let addr = dns_addr(&agent);
    for i in 1..=5u8 {
        let (node, ip, id) = (
            format!("c{i}"),
            format!("10.2.0.{i}"),
            format!("capped-{i}"),
        );
        register_ok(&agent, &instance(&node, &ip, "capped", &id, &[], "passing"));
    }
    poll("5 SRV answers over TCP", SYNC, || {
        let m = tcp(addr, "capped.service.consul.", RecordType::SRV);
        if m.answers.len() == 5 {
            Ok(())
        } else {
            Err(format!("{} answers", m.answers.len()))
        }
    });
    // TCP and EDNS0 UDP: a_record_limit; plain UDP: the smaller UDP limit.
    let m = tcp(addr, "capped.service.consul.", RecordType::A);
    assert_eq!(a_addrs(&m.answers).len(), 2, "TCP: {m:?}");
    let raw = udp_raw(
        addr,
        &edns_query("capped.service.consul.", RecordType::A, 4096, None),
    )
    .expect("EDNS0 UDP reply");
    assert_eq!(a_addrs(&parse(&raw).answers).len(), 2, "UDP with EDNS0");
    let (_, m) = udp(addr, "capped.service.consul.", RecordType::A);
    assert_eq!(a_addrs(&m.answers).len(), 1, "UDP without EDNS0: {m:?}");
}

/// The A answers of `n` UDP questions for an outside name.
fn forwarded_answers(addr: SocketAddr, n: usize) -> BTreeSet<Ipv4Addr> {
    let mut seen = BTreeSet::new();
    for _ in 0..n {
        let (_, m) = udp(addr, "example.org.", RecordType::A);
        assert_eq!(m.metadata.response_code, ResponseCode::NoError, "{m:?}");
        seen.extend(a_addrs(&m.answers));
    }
    seen
}

#[test]
fn dns_recursor_strategy_sequential_or_random() {
    let one = upstream(Ipv4Addr::new(10, 9, 8, 1));
    let two = upstream(Ipv4Addr::new(10, 9, 8, 2));
    let recursors = json!([one.addr.to_string(), two.addr.to_string()]);
    let (agent, _dir) = agent_with(json!({"recursors": recursors}));
    assert_eq!(forwarded_answers(dns_addr(&agent), 24), ips(&["10.9.8.1"]));
    drop(agent);
    // Random: both recursors answer within 48 questions (one alone: 2^-47).
    let (agent, _dir) = agent_with(json!({
        "recursors": recursors,
        "dns_config": {"recursor_strategy": "random"},
    }));
    assert_eq!(
        forwarded_answers(dns_addr(&agent), 48),
        ips(&["10.9.8.1", "10.9.8.2"])
    );
}

#[test]
fn dns_srv_answers_carry_node_meta_txt_unless_disabled() {
    let agent = Agent::dev();
    let addr = dns_addr(&agent);
    register_web(&agent);
    wait_a(addr, "web.service.consul.", &ips(&["10.0.0.1", "10.0.0.2"]));
    let m = tcp(addr, "web.service.consul.", RecordType::SRV);
    assert_eq!(
        txt_extra(&m),
        [("n1.node.dc1.consul.".to_string(), "rack=r1".to_string())],
        "{m:?}"
    );

    let (agent, _dir) = agent_with(json!({
        "dns_config": {"enable_additional_node_meta_txt": false}
    }));
    let addr = dns_addr(&agent);
    register_web(&agent);
    wait_a(addr, "web.service.consul.", &ips(&["10.0.0.1", "10.0.0.2"]));
    let m = tcp(addr, "web.service.consul.", RecordType::SRV);
    assert_eq!(m.answers.len(), 2);
    assert!(txt_extra(&m).is_empty(), "{m:?}");
    let (_, m) = udp(addr, "n1.node.consul.", RecordType::A);
    assert!(txt_extra(&m).is_empty(), "{m:?}");
    // TXT questions still get the meta.
    let (_, m) = udp(addr, "n1.node.consul.", RecordType::TXT);
    assert_eq!(m.answers.len(), 1, "{m:?}");
}

/// The client-subnet option in the reply's OPT record.
fn echoed_subnet(m: &Message) -> Option<ClientSubnet> {
    match m.edns.as_ref()?.option(EdnsCode::Subnet)? {
        EdnsOption::Subnet(s) => Some(*s),
        _ => None,
    }
}

#[test]
fn dns_echoes_edns_client_subnet() {
    let agent = Agent::dev();
    let addr = dns_addr(&agent);
    register_web(&agent);
    wait_a(addr, "web.service.consul.", &ips(&["10.0.0.1", "10.0.0.2"]));
    let packet = edns_query(
        "web.service.consul.",
        RecordType::A,
        1232,
        Some("198.51.100.0/24"),
    );
    let udp_reply = parse(&udp_raw(addr, &packet).expect("UDP reply"));
    let tcp_reply = parse(&tcp_raw(addr, &packet).expect("TCP reply"));
    for m in [&udp_reply, &tcp_reply] {
        let ecs = echoed_subnet(m).unwrap_or_else(|| panic!("no ECS echoed: {m:?}"));
        assert_eq!(ecs.addr().to_string(), "198.51.100.0");
        assert_eq!((ecs.source_prefix(), ecs.scope_prefix()), (24, 0));
        assert_eq!(a_addrs(&m.answers), ips(&["10.0.0.1", "10.0.0.2"]));
    }
    let plain = edns_query("web.service.consul.", RecordType::A, 1232, None);
    let m = parse(&udp_raw(addr, &plain).expect("UDP reply"));
    assert!(m.edns.is_some() && echoed_subnet(&m).is_none(), "{m:?}");
}

#[test]
fn dns_retries_truncated_recursor_answers_over_tcp() {
    let up = upstream(Ipv4Addr::new(10, 9, 8, 7));
    let (agent, _dir) = agent_with(json!({"recursors": [up.addr.to_string()]}));
    let addr = dns_addr(&agent);
    let all = usize::from(BIG);
    // TCP client: the full answer, fetched from the recursor over TCP.
    let m = tcp(addr, "big.example.org.", RecordType::A);
    assert_eq!(a_addrs(&m.answers).len(), all, "{m:?}");
    assert!(!m.metadata.truncation);
    assert!(up.tcp_questions.load(Ordering::SeqCst) >= 1);
    // UDP client with room (EDNS0 4096): the full answer as well.
    let raw = udp_raw(
        addr,
        &edns_query("big.example.org.", RecordType::A, 4096, None),
    )
    .expect("EDNS0 UDP reply");
    let m = parse(&raw);
    assert_eq!(a_addrs(&m.answers).len(), all, "{m:?}");
    assert!(!m.metadata.truncation);
    // Plain UDP: the truncated answer, so the client asks again over TCP.
    let (_, m) = udp(addr, "big.example.org.", RecordType::A);
    assert!(m.metadata.truncation, "{m:?}");
}

#[test]
fn dns_logs_one_debug_line_per_query() {
    let agent = Agent::start(&["-dev", "-log-level", "debug"], false);
    let addr = dns_addr(&agent);
    let (_, m) = udp(addr, "logged.service.consul.", RecordType::A);
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    let m = tcp(addr, "example.org.", RecordType::TXT);
    assert_eq!(m.metadata.response_code, ResponseCode::Refused);
    let lines = |needle: &str| -> Vec<String> {
        agent
            .log()
            .lines()
            .filter(|l| l.contains(needle))
            .map(str::to_string)
            .collect()
    };
    let find = |needle: &'static str, fields: &'static [&'static str]| {
        poll(&format!("log line for {needle}"), SYNC, || {
            let found = lines(needle);
            match found.as_slice() {
                [line] if fields.iter().all(|f| line.contains(f)) => Ok(()),
                _ => Err(format!("{found:?}")),
            }
        });
    };
    find(
        "name=logged.service.consul.",
        &["dns_query", "qtype=A", "transport=udp", "rcode=NXDomain"],
    );
    find(
        "name=example.org.",
        &["dns_query", "qtype=TXT", "transport=tcp", "rcode=Refused"],
    );
}

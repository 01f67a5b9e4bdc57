//! The DNS interface against a real agent (consul-compat.md §10): services
//! and nodes registered over HTTP, queried over UDP and TCP on the `dns=`
//! address of the readiness line. Covers the service, tag, RFC 2782 and node
//! name forms, NXDOMAIN/NODATA with SOA, checks removing instances, UDP size
//! limits against full TCP answers, recursor forwarding to a loopback
//! responder, and malformed packets. `dns/options.rs` covers hostname
//! addresses and the `dns_config` options.

mod options;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::thread;
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, Query, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{Name, RData, Record, RecordType};
use serde_json::json;

use crate::agent_checks::poll;
use crate::catalog::{instance, register_ok};
use crate::harness::{write_file, Agent};

/// Timeout of one DNS exchange.
const DNS_TIMEOUT: Duration = Duration::from_secs(3);

/// How long an answer may take to reflect a registration.
const SYNC: Duration = Duration::from_secs(15);

/// The agent's DNS address from the readiness line.
pub(crate) fn dns_addr(agent: &Agent) -> SocketAddr {
    let raw = agent.ready_field("dns");
    raw.parse()
        .unwrap_or_else(|e| panic!("bad dns= {raw:?}: {e}"))
}

/// A query for `name`/`qtype`, without EDNS0.
fn query(name: &str, qtype: RecordType) -> Message {
    let mut m = Message::query();
    m.metadata.recursion_desired = true;
    let name = Name::from_ascii(name).unwrap_or_else(|e| panic!("bad name {name:?}: {e}"));
    m.add_query(Query::query(name, qtype));
    m
}

/// Send raw bytes over UDP and wait for one datagram back.
fn udp_raw(addr: SocketAddr, packet: &[u8]) -> std::io::Result<Vec<u8>> {
    let sock = UdpSocket::bind("127.0.0.1:0")?;
    sock.set_read_timeout(Some(DNS_TIMEOUT))?;
    sock.send_to(packet, addr)?;
    let mut buf = vec![0u8; 65535];
    let n = sock.recv(&mut buf)?;
    buf.truncate(n);
    Ok(buf)
}

/// One UDP exchange: the reply's bytes and the parsed message.
pub(crate) fn udp(addr: SocketAddr, name: &str, qtype: RecordType) -> (Vec<u8>, Message) {
    let q = query(name, qtype);
    let bytes = q.to_vec().expect("encode query");
    let raw = udp_raw(addr, &bytes).unwrap_or_else(|e| panic!("UDP {name} {qtype}: {e}"));
    let msg = Message::from_vec(&raw).unwrap_or_else(|e| panic!("parse UDP reply: {e}"));
    assert_eq!(msg.metadata.id, q.metadata.id, "reply id");
    assert_eq!(msg.metadata.message_type, MessageType::Response);
    (raw, msg)
}

/// One TCP exchange (2-byte length framing).
fn tcp(addr: SocketAddr, name: &str, qtype: RecordType) -> Message {
    let q = query(name, qtype);
    let bytes = q.to_vec().expect("encode query");
    let go = || -> std::io::Result<Vec<u8>> {
        let mut s = TcpStream::connect_timeout(&addr, DNS_TIMEOUT)?;
        s.set_read_timeout(Some(DNS_TIMEOUT))?;
        s.set_write_timeout(Some(DNS_TIMEOUT))?;
        let len = u16::try_from(bytes.len()).expect("small query");
        let mut framed = len.to_be_bytes().to_vec();
        framed.extend_from_slice(&bytes);
        s.write_all(&framed)?;
        let mut len = [0u8; 2];
        s.read_exact(&mut len)?;
        let mut out = vec![0u8; usize::from(u16::from_be_bytes(len))];
        s.read_exact(&mut out)?;
        Ok(out)
    };
    let raw = go().unwrap_or_else(|e| panic!("TCP {name} {qtype}: {e}"));
    let msg = Message::from_vec(&raw).unwrap_or_else(|e| panic!("parse TCP reply: {e}"));
    assert_eq!(msg.metadata.id, q.metadata.id, "reply id");
    msg
}

/// The IPv4 addresses of the A records in `records`.
pub(crate) fn a_addrs(records: &[Record]) -> BTreeSet<Ipv4Addr> {
    records
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(A(ip)) => Some(*ip),
            _ => None,
        })
        .collect()
}

fn ips(list: &[&str]) -> BTreeSet<Ipv4Addr> {
    list.iter().map(|s| s.parse().expect("test IP")).collect()
}

/// Poll UDP `name` A until its answer set is `want`.
fn wait_a(addr: SocketAddr, name: &str, want: &BTreeSet<Ipv4Addr>) {
    poll(&format!("{name} A = {want:?}"), SYNC, || {
        let (_, m) = udp(addr, name, RecordType::A);
        let got = a_addrs(&m.answers);
        if got == *want {
            Ok(())
        } else {
            Err(format!("{:?} {got:?}", m.metadata.response_code))
        }
    });
}

fn assert_soa_authority(m: &Message, what: &str) {
    assert!(
        m.authorities
            .iter()
            .any(|r| r.record_type() == RecordType::SOA),
        "{what}: no SOA in authority: {m:?}"
    );
}

/// Two `web` instances on n1 (10.0.0.1, tag rails) and n2 (10.0.0.2), n1 with
/// node meta.
fn register_web(agent: &Agent) {
    let mut one = instance("n1", "10.0.0.1", "web", "web-1", &["rails"], "passing");
    one["NodeMeta"] = json!({"rack": "r1"});
    one["Service"]["Port"] = json!(8081);
    let mut two = instance("n2", "10.0.0.2", "web", "web-2", &[], "passing");
    two["Service"]["Port"] = json!(8082);
    register_ok(agent, &one);
    register_ok(agent, &two);
}

#[test]
fn dns_answers_service_and_node_names_over_udp_and_tcp() {
    let agent = Agent::dev();
    let addr = dns_addr(&agent);
    register_web(&agent);
    let both = ips(&["10.0.0.1", "10.0.0.2"]);
    wait_a(addr, "web.service.consul", &both);

    // A over UDP and TCP, mixed case.
    let (_, m) = udp(addr, "WeB.SeRvIcE.CoNsUl.", RecordType::A);
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.metadata.authoritative, "AA on answers for the domain");
    assert_eq!(a_addrs(&m.answers), both);
    let m = tcp(addr, "web.service.consul.", RecordType::A);
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert_eq!(a_addrs(&m.answers), both);
    let m = tcp(addr, "web.service.dc1.consul.", RecordType::A);
    assert_eq!(a_addrs(&m.answers), both);

    // Tag filter.
    let (_, m) = udp(addr, "rails.web.service.consul.", RecordType::A);
    assert_eq!(a_addrs(&m.answers), ips(&["10.0.0.1"]));
    let (_, m) = udp(addr, "RAILS.Web.Service.Consul.", RecordType::A);
    assert_eq!(a_addrs(&m.answers), ips(&["10.0.0.1"]));

    // SRV: ports, node targets, A glue in ADDITIONAL.
    for proto in [true, false] {
        let m = if proto {
            udp(addr, "web.service.consul.", RecordType::SRV).1
        } else {
            tcp(addr, "web.service.consul.", RecordType::SRV)
        };
        let mut srv: Vec<(u16, String)> = m
            .answers
            .iter()
            .filter_map(|r| match &r.data {
                RData::SRV(s) => Some((s.port, s.target.to_ascii().to_ascii_lowercase())),
                _ => None,
            })
            .collect();
        srv.sort();
        assert_eq!(
            srv,
            [
                (8081, "n1.node.dc1.consul.".to_string()),
                (8082, "n2.node.dc1.consul.".to_string())
            ],
            "SRV answers: {m:?}"
        );
        for (target, ip) in [
            ("n1.node.dc1.consul.", "10.0.0.1"),
            ("n2.node.dc1.consul.", "10.0.0.2"),
        ] {
            let glue = m.additionals.iter().any(|r| {
                r.name.to_ascii().eq_ignore_ascii_case(target)
                    && matches!(&r.data, RData::A(A(a)) if a.to_string() == ip)
            });
            assert!(glue, "no A {ip} for {target} in ADDITIONAL: {m:?}");
        }
    }

    // RFC 2782 forms.
    let srv_targets = |m: &Message| -> BTreeSet<String> {
        m.answers
            .iter()
            .filter_map(|r| match &r.data {
                RData::SRV(s) => Some(s.target.to_ascii().to_ascii_lowercase()),
                _ => None,
            })
            .collect()
    };
    let (_, m) = udp(addr, "_web._tcp.service.consul.", RecordType::SRV);
    assert_eq!(srv_targets(&m).len(), 2, "_web._tcp: {m:?}");
    let (_, m) = udp(addr, "_web._rails.service.consul.", RecordType::SRV);
    assert_eq!(
        srv_targets(&m),
        BTreeSet::from(["n1.node.dc1.consul.".to_string()]),
        "_web._rails: {m:?}"
    );
    let (_, m) = udp(addr, "_WEB._TCP.Service.Consul.", RecordType::SRV);
    assert_eq!(srv_targets(&m).len(), 2, "mixed-case RFC 2782: {m:?}");

    // Node A and TXT.
    let (_, m) = udp(addr, "n1.node.consul.", RecordType::A);
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert_eq!(a_addrs(&m.answers), ips(&["10.0.0.1"]));
    let m = tcp(addr, "N2.Node.DC1.Consul.", RecordType::A);
    assert_eq!(a_addrs(&m.answers), ips(&["10.0.0.2"]));
    let (_, m) = udp(addr, "n1.node.consul.", RecordType::TXT);
    let txt: Vec<String> = m
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::TXT(t) => Some(
                t.txt_data
                    .iter()
                    .map(|s| String::from_utf8_lossy(s).into_owned())
                    .collect::<String>(),
            ),
            _ => None,
        })
        .collect();
    assert_eq!(txt, ["rack=r1"], "node meta TXT: {m:?}");

    // Unknown service: NXDOMAIN + SOA.
    let (_, m) = udp(addr, "nope.service.consul.", RecordType::A);
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    assert!(m.answers.is_empty());
    assert_soa_authority(&m, "nope.service");
    let m = tcp(addr, "nope.node.consul.", RecordType::A);
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    assert_soa_authority(&m, "nope.node");

    // Known name, no AAAA: NODATA + SOA.
    let (_, m) = udp(addr, "web.service.consul.", RecordType::AAAA);
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.answers.is_empty(), "AAAA answers: {m:?}");
    assert_soa_authority(&m, "web AAAA");

    // Prepared queries don't exist yet.
    let (_, m) = udp(addr, "x.query.consul.", RecordType::A);
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    assert_soa_authority(&m, "x.query");
}

#[test]
fn dns_leaves_out_instances_with_a_critical_check() {
    let agent = Agent::dev();
    let addr = dns_addr(&agent);
    register_web(&agent);
    wait_a(addr, "web.service.consul.", &ips(&["10.0.0.1", "10.0.0.2"]));

    let check = |status: &str| {
        json!({
            "Node": "n2",
            "Address": "10.0.0.2",
            "Check": {
                "CheckID": "web-2-extra",
                "Name": "extra",
                "Status": status,
                "ServiceID": "web-2",
            },
        })
    };
    register_ok(&agent, &check("critical"));
    wait_a(addr, "web.service.consul.", &ips(&["10.0.0.1"]));
    let m = tcp(addr, "web.service.consul.", RecordType::SRV);
    assert_eq!(m.answers.len(), 1, "SRV with n2 critical: {m:?}");

    register_ok(&agent, &check("passing"));
    wait_a(addr, "web.service.consul.", &ips(&["10.0.0.1", "10.0.0.2"]));
}

#[test]
fn dns_limits_udp_answers_and_gives_all_over_tcp() {
    let agent = Agent::dev();
    let addr = dns_addr(&agent);
    let mut all = BTreeSet::new();
    for i in 1..=40u8 {
        let ip = format!("10.1.0.{i}");
        register_ok(
            &agent,
            &instance(
                &format!("m{i}"),
                &ip,
                "big",
                &format!("big-{i}"),
                &[],
                "passing",
            ),
        );
        all.insert(ip.parse::<Ipv4Addr>().expect("ip"));
    }
    poll("40 instances over TCP", SYNC, || {
        let m = tcp(addr, "big.service.consul.", RecordType::A);
        let got = a_addrs(&m.answers);
        if got == all {
            Ok(())
        } else {
            Err(format!("{} answers", got.len()))
        }
    });

    for qtype in [RecordType::A, RecordType::SRV] {
        let (raw, m) = udp(addr, "big.service.consul.", qtype);
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert!(
            (1..=3).contains(&m.answers.len()),
            "UDP {qtype} without EDNS: {} answers",
            m.answers.len()
        );
        assert!(raw.len() <= 512, "UDP {qtype} reply is {} bytes", raw.len());
        assert!(!m.metadata.truncation, "TC set without enable_truncate");
    }
    let m = tcp(addr, "big.service.consul.", RecordType::SRV);
    assert_eq!(m.answers.len(), 40, "SRV over TCP");
}

#[test]
fn dns_forwards_outside_names_to_recursors_and_refuses_without() {
    let upstream = options::upstream(Ipv4Addr::new(10, 9, 8, 7)).addr;
    let dir = tempfile::tempdir().expect("config dir");
    write_file(
        dir.path(),
        "dns.json",
        json!({"recursors": [upstream.to_string()]})
            .to_string()
            .as_bytes(),
    );
    let agent = Agent::start(
        &["-dev", "-config-dir", dir.path().to_str().expect("utf-8")],
        false,
    );
    let addr = dns_addr(&agent);
    let (_, m) = udp(addr, "example.org.", RecordType::A);
    assert_eq!(m.metadata.response_code, ResponseCode::NoError, "{m:?}");
    assert_eq!(a_addrs(&m.answers), ips(&["10.9.8.7"]));
    let m = tcp(addr, "Example.ORG.", RecordType::A);
    assert_eq!(a_addrs(&m.answers), ips(&["10.9.8.7"]));

    let plain = Agent::dev();
    let addr = dns_addr(&plain);
    let (_, m) = udp(addr, "example.org.", RecordType::A);
    assert_eq!(m.metadata.response_code, ResponseCode::Refused);
    assert!(m.answers.is_empty());
    let m = tcp(addr, "example.org.", RecordType::A);
    assert_eq!(m.metadata.response_code, ResponseCode::Refused);
}

#[test]
fn dns_survives_malformed_packets() {
    let agent = Agent::dev();
    let addr = dns_addr(&agent);
    register_ok(
        &agent,
        &instance("n1", "10.0.0.1", "web", "web-1", &[], "passing"),
    );
    wait_a(addr, "web.service.consul.", &ips(&["10.0.0.1"]));

    let garbage: Vec<Vec<u8>> = vec![
        vec![],
        vec![0xff],
        (0..40u8)
            .map(|i| i.wrapping_mul(97).wrapping_add(13))
            .collect(),
        // A header claiming 5 questions with nothing after it.
        vec![0x12, 0x34, 0x01, 0x00, 0x00, 0x05, 0, 0, 0, 0, 0, 0],
        // A name with a compression pointer to itself.
        vec![
            0xab, 0xcd, 0x01, 0x00, 0x00, 0x01, 0, 0, 0, 0, 0, 0, 0xc0, 0x0c, 0x00, 0x01, 0x00,
            0x01,
        ],
    ];
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
    for g in &garbage {
        sock.send_to(g, addr).expect("send garbage");
    }
    // Over TCP too: a garbage frame, then a closed connection.
    if let Ok(mut s) = TcpStream::connect_timeout(&addr, DNS_TIMEOUT) {
        let _ = s.write_all(&[0x00, 0x05, 1, 2, 3, 4, 5]);
    }
    thread::sleep(Duration::from_millis(200));
    let (_, m) = udp(addr, "web.service.consul.", RecordType::A);
    assert_eq!(a_addrs(&m.answers), ips(&["10.0.0.1"]));
    let m = tcp(addr, "web.service.consul.", RecordType::A);
    assert_eq!(a_addrs(&m.answers), ips(&["10.0.0.1"]));
    // A readable header with an unparsable body gets FORMERR.
    let reply = udp_raw(addr, &garbage[3]).expect("FORMERR reply to a bad question count");
    assert_eq!(&reply[..2], &[0x12, 0x34], "FORMERR echoes the id");
    assert_eq!(reply[3] & 0x0f, 1, "rcode FORMERR");
    assert!(agent.get("/v1/status/leader").status == 200);
}

#[test]
fn dns_answers_the_domain_and_alt_domain_from_config() {
    let dir = tempfile::tempdir().expect("config dir");
    write_file(
        dir.path(),
        "dns.json",
        json!({"domain": "muster", "alt_domain": "alt.test"})
            .to_string()
            .as_bytes(),
    );
    let agent = Agent::start(
        &["-dev", "-config-dir", dir.path().to_str().expect("utf-8")],
        false,
    );
    register_web(&agent);
    let addr = dns_addr(&agent);
    let want = ips(&["10.0.0.1", "10.0.0.2"]);
    wait_a(addr, "web.service.muster.", &want);
    wait_a(addr, "web.service.alt.test.", &want);
    // The default domain is no longer ours: without recursors, REFUSED.
    let (_, m) = udp(addr, "web.service.consul.", RecordType::A);
    assert_eq!(m.metadata.response_code, ResponseCode::Refused, "{m:?}");
    // SRV targets use the domain the question used.
    let m = tcp(addr, "web.service.alt.test.", RecordType::SRV);
    assert!(!m.answers.is_empty(), "{m:?}");
    for r in &m.answers {
        let text = format!("{r}");
        assert!(text.contains("alt.test."), "{text}");
    }
}

#[test]
fn dns_answers_addr_and_ptr_names() {
    let agent = Agent::dev();
    register_web(&agent);
    let addr = dns_addr(&agent);
    // 10.0.0.2 as 8 hex digits, the form SRV targets use for service IPs.
    wait_a(addr, "0a000002.addr.dc1.consul.", &ips(&["10.0.0.2"]));
    let m = tcp(addr, "0A000001.addr.dc1.consul.", RecordType::A);
    assert_eq!(a_addrs(&m.answers), ips(&["10.0.0.1"]));
    // PTR of a node address names the node.
    let (_, m) = udp(addr, "1.0.0.10.in-addr.arpa.", RecordType::PTR);
    assert_eq!(m.metadata.response_code, ResponseCode::NoError, "{m:?}");
    let names: Vec<String> = m
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::PTR(p) => Some(p.0.to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(names, vec!["n1.node.dc1.consul.".to_string()], "{m:?}");
    // A malformed addr label is not a name we have.
    let (_, m) = udp(addr, "zz.addr.dc1.consul.", RecordType::A);
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain, "{m:?}");
}

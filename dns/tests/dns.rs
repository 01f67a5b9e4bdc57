//! The DNS handler and server against a real engine.

mod common;

use std::net::Ipv4Addr;
use std::time::Duration;

use common::{
    addr_glue, ask, ip, ips, node, open, query, register, svc, tcp_ask, udp_ask, Res, Upstream,
};
use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use muster_dns::{handle, DnsConfig, MAX_TCP_SIZE};
use muster_engine::{Engine, Status};

/// web: i1 on n1 (node address, passing), i2 on n2 with its own address
/// (warning), i3 on n3 (critical); db on n1 tagged primary.
async fn fixture(engine: &Engine) -> Res {
    register(
        engine,
        node("n1", "10.0.0.1"),
        svc("i1", "web", "", 80, &["v1"]),
        Some(Status::Passing),
    )
    .await?;
    register(
        engine,
        node("n2", "10.0.0.2"),
        svc("i2", "web", "10.1.0.2", 81, &["v2"]),
        Some(Status::Warning),
    )
    .await?;
    register(
        engine,
        node("n3", "10.0.0.3"),
        svc("i3", "web", "", 82, &["v1"]),
        Some(Status::Critical),
    )
    .await?;
    register(
        engine,
        node("n1", "10.0.0.1"),
        svc("d1", "db", "", 5432, &["primary"]),
        None,
    )
    .await?;
    register(
        engine,
        node("n6", "fe80::1"),
        svc("i6", "v6", "", 1, &[]),
        Some(Status::Passing),
    )
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_node_addr_and_errors() -> Res {
    let dir = tempfile::tempdir()?;
    let engine = open(dir.path()).await?;
    fixture(&engine).await?;
    let mut cfg = DnsConfig::new("dc1");

    // A: critical i3 left out; warning i2 in with its own address.
    let m = ask(&engine, &cfg, "web.service.consul.", RecordType::A);
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.metadata.authoritative);
    assert_eq!(m.metadata.id, 4242);
    assert_eq!(ips(&m), vec![ip("10.0.0.1"), ip("10.1.0.2")]);
    assert!(m.answers.iter().all(|r| r.ttl == 0));
    // Case-insensitive, with the datacenter.
    let m = ask(&engine, &cfg, "WEB.Service.DC1.Consul.", RecordType::A);
    assert_eq!(ips(&m).len(), 2);
    // Tags.
    let m = ask(&engine, &cfg, "v1.web.service.consul.", RecordType::A);
    assert_eq!(ips(&m), vec![ip("10.0.0.1")]);
    // only_passing drops the warning instance.
    cfg.only_passing = true;
    let m = ask(&engine, &cfg, "web.service.consul.", RecordType::A);
    assert_eq!(ips(&m), vec![ip("10.0.0.1")]);
    cfg.only_passing = false;

    // SRV: weights, node and addr targets, glue in ADDITIONAL.
    let m = ask(&engine, &cfg, "web.service.consul.", RecordType::SRV);
    let mut srv: Vec<(u16, u16, u16, String)> = m
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::SRV(s) => Some((s.priority, s.weight, s.port, s.target.to_ascii())),
            _ => None,
        })
        .collect();
    srv.sort();
    assert_eq!(
        srv,
        vec![
            (1, 2, 81, "0a010002.addr.dc1.consul.".to_string()),
            (1, 10, 80, "n1.node.dc1.consul.".to_string()),
        ]
    );
    let glue: Vec<(String, String)> = m
        .additionals
        .iter()
        .map(|r| (r.name.to_ascii(), r.data.to_string()))
        .collect();
    assert!(
        glue.contains(&("n1.node.dc1.consul.".into(), "10.0.0.1".into())),
        "{glue:?}"
    );
    assert!(
        glue.contains(&("0a010002.addr.dc1.consul.".into(), "10.1.0.2".into())),
        "{glue:?}"
    );
    // RFC 2782.
    let m = ask(&engine, &cfg, "_web._v2.service.consul.", RecordType::SRV);
    assert_eq!(m.answers.len(), 1);
    let m = ask(
        &engine,
        &cfg,
        "_web._tcp.service.dc1.consul.",
        RecordType::SRV,
    );
    assert_eq!(m.answers.len(), 2);
    let m = ask(&engine, &cfg, "_db._primary.consul.", RecordType::SRV);
    assert_eq!(m.answers.len(), 1);

    // NODATA: AAAA for IPv4-only instances; IPv6 answers for v6.
    let m = ask(&engine, &cfg, "web.service.consul.", RecordType::AAAA);
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.answers.is_empty());
    assert_eq!(
        m.authorities.first().map(|r| r.record_type()),
        Some(RecordType::SOA)
    );
    let m = ask(&engine, &cfg, "v6.service.consul.", RecordType::AAAA);
    assert_eq!(ips(&m), vec![ip("fe80::1")]);

    // NXDOMAIN + SOA: unknown service, all-critical tag, unknown dc, query.
    for name in [
        "nope.service.consul.",
        "v9.web.service.consul.",
        "web.service.dc2.consul.",
        "q.query.consul.",
        "nope.node.consul.",
        "zz.addr.dc1.consul.",
    ] {
        let m = ask(&engine, &cfg, name, RecordType::A);
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain, "{name}");
        assert_eq!(
            m.authorities.first().map(|r| r.name.to_ascii()),
            Some("consul.".to_string()),
            "{name}"
        );
    }

    // Nodes: A, TXT from meta (in ADDITIONAL for A), node_ttl.
    cfg.node_ttl = Duration::from_secs(30);
    let m = ask(&engine, &cfg, "n1.node.consul.", RecordType::A);
    assert_eq!(ips(&m), vec![ip("10.0.0.1")]);
    assert_eq!(m.answers[0].ttl, 30);
    assert!(m
        .additionals
        .iter()
        .any(|r| r.data.to_string().contains("rack=r1")));
    let m = ask(&engine, &cfg, "n1.node.dc1.consul.", RecordType::TXT);
    assert_eq!(m.answers.len(), 1);
    assert!(m.answers[0].data.to_string().contains("rack=r1"));
    let m = ask(&engine, &cfg, "n1.node.consul.", RecordType::MX);
    assert!(m.answers.is_empty() && !m.authorities.is_empty());

    // service_ttl wildcards.
    cfg.service_ttl.insert("*".into(), Duration::from_secs(5));
    cfg.service_ttl.insert("we*".into(), Duration::from_secs(7));
    let m = ask(&engine, &cfg, "web.service.consul.", RecordType::A);
    assert!(m.answers.iter().all(|r| r.ttl == 7));
    let m = ask(&engine, &cfg, "db.service.consul.", RecordType::A);
    assert!(m.answers.iter().all(|r| r.ttl == 5));

    // addr.
    let m = ask(&engine, &cfg, "0a000001.addr.dc1.consul.", RecordType::A);
    assert_eq!(ips(&m), vec![ip("10.0.0.1")]);
    let m = ask(
        &engine,
        &cfg,
        "fe800000000000000000000000000001.addr.dc1.consul.",
        RecordType::AAAA,
    );
    assert_eq!(ips(&m), vec![ip("fe80::1")]);

    // PTR for a node address; apex SOA.
    let m = ask(&engine, &cfg, "2.0.0.10.in-addr.arpa.", RecordType::PTR);
    assert_eq!(
        m.answers.first().map(|r| r.data.to_string()),
        Some("n2.node.dc1.consul.".into())
    );
    let m = ask(&engine, &cfg, "consul.", RecordType::SOA);
    assert_eq!(
        m.answers.first().map(|r| r.record_type()),
        Some(RecordType::SOA)
    );

    // Outside the domain: REFUSED without recursors.
    let m = ask(&engine, &cfg, "example.com.", RecordType::A);
    assert_eq!(m.metadata.response_code, ResponseCode::Refused);

    // alt_domain answers with its own names.
    cfg.alt_domain = Some("muster.".into());
    let m = ask(&engine, &cfg, "web.service.muster.", RecordType::SRV);
    assert!(m
        .answers
        .iter()
        .all(|r| r.data.to_string().contains(".dc1.muster.")));
    engine.shutdown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_input() -> Res {
    let dir = tempfile::tempdir()?;
    let engine = open(dir.path()).await?;
    let cfg = DnsConfig::new("dc1");
    assert!(handle(&engine, &cfg, &[], 512).is_empty());
    assert!(handle(&engine, &cfg, &[1, 2, 3], 512).is_empty());
    // A header claiming one question, no question: FORMERR with the id.
    let bad = [0xab, 0xcd, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 7, b'x'];
    let out = handle(&engine, &cfg, &bad, 512);
    let m = Message::from_vec(&out)?;
    assert_eq!(
        (m.metadata.id, m.metadata.response_code),
        (0xabcd, ResponseCode::FormErr)
    );
    // Two questions: FORMERR. A response: dropped.
    let mut two = Message::new(7, MessageType::Query, OpCode::Query);
    two.add_query(Query::query(Name::from_ascii("a.consul.")?, RecordType::A));
    two.add_query(Query::query(Name::from_ascii("b.consul.")?, RecordType::A));
    let m = Message::from_vec(&handle(&engine, &cfg, &two.to_vec()?, 512))?;
    assert_eq!(m.metadata.response_code, ResponseCode::FormErr);
    two.metadata.message_type = MessageType::Response;
    assert!(handle(&engine, &cfg, &two.to_vec()?, 512).is_empty());
    // Pseudo-random garbage never panics.
    let mut x: u32 = 1;
    for len in 0..2000usize {
        let pkt: Vec<u8> = (0..len % 300)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect();
        let _ = handle(&engine, &cfg, &pkt, 512);
    }
    engine.shutdown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forty_instances_udp_vs_tcp() -> Res {
    let dir = tempfile::tempdir()?;
    let engine = open(dir.path()).await?;
    for i in 0..40u8 {
        let n = node(
            &format!("node-with-a-long-name-{i:02}"),
            &format!("10.0.1.{i}"),
        );
        register(
            &engine,
            n,
            svc(&format!("w{i}"), "big", "", 8000 + u16::from(i), &[]),
            Some(Status::Passing),
        )
        .await?;
    }
    let mut cfg = DnsConfig::new("dc1");
    // No EDNS: udp_answer_limit (3) answers, no TC by default.
    let m = ask(&engine, &cfg, "big.service.consul.", RecordType::A);
    assert_eq!(m.answers.len(), 3);
    assert!(!m.metadata.truncation);
    cfg.enable_truncate = true;
    cfg.udp_answer_limit = 100; // capped at 8 without EDNS
    let m = ask(&engine, &cfg, "big.service.consul.", RecordType::SRV);
    let out = handle(
        &engine,
        &cfg,
        &query("big.service.consul.", RecordType::SRV, None),
        512,
    );
    assert!(out.len() <= 512);
    assert!(m.metadata.truncation);
    assert!(!m.answers.is_empty() && m.answers.len() <= 8);
    // ADDITIONAL matches the surviving SRV targets exactly.
    let mut targets: Vec<String> = m
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::SRV(s) => Some(s.target.to_ascii()),
            _ => None,
        })
        .collect();
    let mut glue: Vec<String> = addr_glue(&m).iter().map(|r| r.name.to_ascii()).collect();
    targets.sort();
    glue.sort();
    assert_eq!(targets, glue);
    // EDNS 1232: more answers, within the advertised size.
    let out = handle(
        &engine,
        &cfg,
        &query("big.service.consul.", RecordType::SRV, Some(1232)),
        65507,
    );
    assert!(out.len() <= 1232);
    let m = Message::from_vec(&out)?;
    assert!(
        m.answers.len() > 8 && m.answers.len() < 40,
        "{}",
        m.answers.len()
    );
    assert_eq!(m.answers.len(), addr_glue(&m).len());
    // TCP: all 40 with their glue.
    let out = handle(
        &engine,
        &cfg,
        &query("big.service.consul.", RecordType::SRV, None),
        MAX_TCP_SIZE,
    );
    let m = Message::from_vec(&out)?;
    assert_eq!((m.answers.len(), addr_glue(&m).len()), (40, 40));
    assert!(!m.metadata.truncation);
    // Random order per query.
    let order = |m: &Message| {
        m.answers
            .iter()
            .map(|r| r.data.to_string())
            .collect::<Vec<_>>()
    };
    let first = order(&m);
    let mut differs = false;
    for _ in 0..10 {
        let out = handle(
            &engine,
            &cfg,
            &query("big.service.consul.", RecordType::SRV, None),
            MAX_TCP_SIZE,
        );
        differs |= order(&Message::from_vec(&out)?) != first;
    }
    assert!(differs);
    engine.shutdown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_udp_tcp_and_recursor() -> Res {
    let dir = tempfile::tempdir()?;
    let engine = open(dir.path()).await?;
    fixture(&engine).await?;
    let mut cfg = DnsConfig::new("dc1");
    // A dead recursor first (nothing listens there), then the live one.
    let dead = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
    let dead_addr = dead.local_addr()?;
    let live = Upstream::start(Ipv4Addr::new(192, 0, 2, 7)).await?;
    cfg.recursors = vec![dead_addr, live.addr];
    cfg.recursor_timeout = Duration::from_millis(300);
    let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let (uaddr, taddr) = (udp.local_addr()?, tcp.local_addr()?);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(muster_dns::serve(udp, tcp, engine.clone(), cfg, async {
        let _ = stop_rx.await;
    }));

    // UDP: garbage first, then a real question still gets answered.
    let junk = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
    junk.send_to(&[0xff; 5], uaddr).await?;
    let m = udp_ask(uaddr, &query("web.service.consul.", RecordType::A, None)).await?;
    assert_eq!(ips(&m), vec![ip("10.0.0.1"), ip("10.1.0.2")]);
    assert!(m.metadata.recursion_available);
    // Forwarded over UDP: the dead recursor times out, the next answers.
    let m = udp_ask(uaddr, &query("example.com.", RecordType::A, None)).await?;
    assert_eq!(ips(&m), vec![ip("192.0.2.7")]);

    // TCP: several questions on one connection.
    let mut stream = tokio::net::TcpStream::connect(taddr).await?;
    let m = tcp_ask(
        &mut stream,
        &query("_web._tcp.service.consul.", RecordType::SRV, None),
    )
    .await?;
    assert_eq!((m.answers.len(), addr_glue(&m).len()), (2, 2));
    let m = tcp_ask(&mut stream, &query("n2.node.consul.", RecordType::A, None)).await?;
    assert_eq!(ips(&m), vec![ip("10.0.0.2")]);
    let m = tcp_ask(&mut stream, &query("example.org.", RecordType::A, None)).await?;
    assert_eq!(ips(&m), vec![ip("192.0.2.7")]);

    let _ = stop_tx.send(());
    tokio::time::timeout(Duration::from_secs(5), server).await???;

    // All recursors failing: SERVFAIL (through the handler's config path).
    let mut cfg = DnsConfig::new("dc1");
    cfg.recursors = vec![dead_addr];
    cfg.recursor_timeout = Duration::from_millis(200);
    let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let uaddr = udp.local_addr()?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(muster_dns::serve(udp, tcp, engine.clone(), cfg, async {
        let _ = stop_rx.await;
    }));
    let m = udp_ask(uaddr, &query("example.com.", RecordType::A, None)).await?;
    assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
    let _ = stop_tx.send(());
    tokio::time::timeout(Duration::from_secs(5), server).await???;
    drop(dead);
    engine.shutdown().await?;
    Ok(())
}

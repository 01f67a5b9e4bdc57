//! Instances reached by hostname instead of IP (§10.2): CNAME answers,
//! hostname SRV targets, names inside the domain resolved from the
//! catalog, and names outside resolved through the recursors.

mod common;

use std::net::Ipv4Addr;
use std::time::Duration;

use common::{
    addr_glue, ask, ask_max, cnames, ip, ips, node, open, query, register, srvs, tcp_once,
    txt_glue, udp_ask, Res, Server, Upstream,
};
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use muster_dns::{DnsConfig, MAX_TCP_SIZE};
use muster_engine::{Engine, Status};

/// `ext` (service address db.example.org on n1), `onhost` (no service
/// address, on node h1 whose address is host.example.org), `mixed` (one
/// IP instance, one hostname instance).
async fn fixture(engine: &Engine) -> Res {
    let passing = Some(Status::Passing);
    let s = common::svc;
    register(
        engine,
        node("n1", "10.0.0.1"),
        s("e1", "ext", "db.example.org", 5432, &[]),
        passing,
    )
    .await?;
    register(
        engine,
        node("h1", "host.example.org"),
        s("o1", "onhost", "", 80, &[]),
        passing,
    )
    .await?;
    register(
        engine,
        node("n1", "10.0.0.1"),
        s("m1", "mixed", "", 81, &[]),
        passing,
    )
    .await?;
    register(
        engine,
        node("n2", "10.0.0.2"),
        s("m2", "mixed", "m.example.org", 82, &[]),
        passing,
    )
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostname_addresses_answer_with_a_cname() -> Res {
    let dir = tempfile::tempdir()?;
    let engine = open(dir.path()).await?;
    fixture(&engine).await?;
    let cfg = DnsConfig::new("dc1");

    // A/AAAA/ANY: a CNAME to the hostname and nothing else (no recursors).
    for qtype in [RecordType::A, RecordType::AAAA, RecordType::ANY] {
        let m = ask(&engine, &cfg, "ext.service.consul.", qtype);
        assert_eq!(m.metadata.response_code, ResponseCode::NoError, "{qtype}");
        assert_eq!(
            cnames(&m),
            [(
                "ext.service.consul.".to_string(),
                "db.example.org.".to_string()
            )],
            "{qtype}: {m:?}"
        );
        assert_eq!(m.answers.len(), 1, "{qtype}: {m:?}");
        assert!(m.authorities.is_empty(), "{qtype}: not NODATA: {m:?}");
    }
    // SRV: the hostname is the target, with no A for it in ADDITIONAL;
    // the node's meta TXT is there, owned by the node name.
    let m = ask(&engine, &cfg, "ext.service.consul.", RecordType::SRV);
    assert_eq!(srvs(&m), [(5432, "db.example.org.".to_string())]);
    assert!(addr_glue(&m).is_empty(), "{m:?}");
    assert_eq!(
        txt_glue(&m),
        [("n1.node.dc1.consul.".to_string(), "rack=r1".to_string())]
    );

    // A hostname node address: CNAME for the service and the node names.
    let m = ask(&engine, &cfg, "onhost.service.consul.", RecordType::A);
    assert_eq!(
        cnames(&m),
        [(
            "onhost.service.consul.".to_string(),
            "host.example.org.".to_string()
        )]
    );
    let m = ask(&engine, &cfg, "onhost.service.consul.", RecordType::SRV);
    assert_eq!(srvs(&m), [(80, "host.example.org.".to_string())]);
    let m = ask(&engine, &cfg, "h1.node.consul.", RecordType::A);
    assert_eq!(
        cnames(&m),
        [(
            "h1.node.consul.".to_string(),
            "host.example.org.".to_string()
        )]
    );
    let m = ask(&engine, &cfg, "h1.node.consul.", RecordType::TXT);
    assert!(cnames(&m).is_empty() && m.answers.len() == 1, "{m:?}");

    // Mixed: IP answers win over the CNAME (a name has one CNAME at most),
    // whatever the shuffle; SRV lists both targets.
    for _ in 0..20 {
        let m = ask_max(
            &engine,
            &cfg,
            "mixed.service.consul.",
            RecordType::A,
            MAX_TCP_SIZE,
        );
        assert_eq!(ips(&m), vec![ip("10.0.0.1")]);
        assert!(cnames(&m).is_empty(), "{m:?}");
    }
    let m = ask(&engine, &cfg, "mixed.service.consul.", RecordType::SRV);
    assert_eq!(
        srvs(&m),
        [
            (81, "n1.node.dc1.consul.".to_string()),
            (82, "m.example.org.".to_string())
        ]
    );
    assert_eq!(addr_glue(&m).len(), 1, "only the IP target has glue: {m:?}");
    engine.shutdown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostnames_inside_the_domain_resolve_from_the_catalog() -> Res {
    let dir = tempfile::tempdir()?;
    let engine = open(dir.path()).await?;
    let passing = Some(Status::Passing);
    let s = common::svc;
    register(
        &engine,
        node("n1", "10.0.0.1"),
        s("w1", "web", "", 80, &[]),
        passing,
    )
    .await?;
    register(
        &engine,
        node("n2", "10.0.0.2"),
        s("w2", "web", "", 80, &[]),
        passing,
    )
    .await?;
    register(
        &engine,
        node("n3", "10.0.0.3"),
        s("a1", "alias", "web.service.consul", 80, &[]),
        passing,
    )
    .await?;
    // Two services pointing at each other: answered, not looping.
    register(
        &engine,
        node("n3", "10.0.0.3"),
        s("l1", "ping", "pong.service.consul", 1, &[]),
        passing,
    )
    .await?;
    register(
        &engine,
        node("n3", "10.0.0.3"),
        s("l2", "pong", "ping.service.consul", 2, &[]),
        passing,
    )
    .await?;
    let cfg = DnsConfig::new("dc1");

    let m = ask_max(
        &engine,
        &cfg,
        "alias.service.consul.",
        RecordType::A,
        MAX_TCP_SIZE,
    );
    assert_eq!(
        cnames(&m),
        [(
            "alias.service.consul.".to_string(),
            "web.service.consul.".to_string()
        )]
    );
    assert_eq!(ips(&m), vec![ip("10.0.0.1"), ip("10.0.0.2")]);
    assert_eq!(m.answers[0].record_type(), RecordType::CNAME, "CNAME first");

    let m = ask_max(
        &engine,
        &cfg,
        "ping.service.consul.",
        RecordType::A,
        MAX_TCP_SIZE,
    );
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    let chain = cnames(&m);
    assert!(!chain.is_empty() && chain.len() <= 4, "{chain:?}");
    assert!(ips(&m).is_empty());
    engine.shutdown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_resolves_hostname_targets_through_the_recursors() -> Res {
    let dir = tempfile::tempdir()?;
    let engine = open(dir.path()).await?;
    fixture(&engine).await?;
    let up = Upstream::start(Ipv4Addr::new(192, 0, 2, 7)).await?;
    let mut cfg = DnsConfig::new("dc1");
    cfg.recursors = vec![up.addr];
    let server = Server::start(&engine, cfg).await?;

    // A over UDP and TCP: the CNAME, then the A the recursor returned for
    // the hostname, with the service's TTL.
    let pkt = query("ext.service.consul.", RecordType::A, None);
    for m in [
        udp_ask(server.udp, &pkt).await?,
        tcp_once(server.tcp, &pkt).await?,
    ] {
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert_eq!(
            cnames(&m),
            [(
                "ext.service.consul.".to_string(),
                "db.example.org.".to_string()
            )]
        );
        assert_eq!(m.answers.len(), 2, "{m:?}");
        assert_eq!(m.answers[1].name.to_ascii(), "db.example.org.");
        assert_eq!(ips(&m), vec![ip("192.0.2.7")]);
        assert!(m.answers.iter().all(|r| r.ttl == 0));
    }
    // AAAA asks the recursor for AAAA.
    let m = udp_ask(
        server.udp,
        &query("ext.service.consul.", RecordType::AAAA, None),
    )
    .await?;
    assert_eq!(ips(&m), vec![ip("2001:db8::7")]);
    // A hostname node address, by node name.
    let m = udp_ask(server.udp, &query("h1.node.consul.", RecordType::A, None)).await?;
    assert_eq!(cnames(&m).len(), 1);
    assert_eq!(ips(&m), vec![ip("192.0.2.7")]);
    // SRV: the hostname target's A goes into ADDITIONAL.
    let m = tcp_once(
        server.tcp,
        &query("mixed.service.consul.", RecordType::SRV, None),
    )
    .await?;
    let glue: Vec<(String, String)> = addr_glue(&m)
        .iter()
        .map(|r| (r.name.to_ascii(), r.data.to_string()))
        .collect();
    assert!(
        glue.contains(&("m.example.org.".into(), "192.0.2.7".into())),
        "{glue:?}"
    );
    assert!(
        glue.contains(&("n1.node.dc1.consul.".into(), "10.0.0.1".into())),
        "{glue:?}"
    );
    // A hostname with many addresses: the recursor's UDP answer is
    // truncated, so it is asked again over TCP; without EDNS0 at most 5
    // records are kept (Consul's limit), with EDNS0 all of them.
    let passing = Some(Status::Passing);
    let big = common::svc("b1", "bigext", "big.example.org", 80, &[]);
    register(&engine, node("n1", "10.0.0.1"), big, passing).await?;
    let m = tcp_once(
        server.tcp,
        &query("bigext.service.consul.", RecordType::A, None),
    )
    .await?;
    assert_eq!((cnames(&m).len(), ips(&m).len()), (1, 5), "{m:?}");
    let edns = query("bigext.service.consul.", RecordType::A, Some(4096));
    let m = tcp_once(server.tcp, &edns).await?;
    assert_eq!(
        (cnames(&m).len(), ips(&m).len()),
        (1, usize::from(common::BIG))
    );
    assert!(up.tcp_questions.load(std::sync::atomic::Ordering::SeqCst) >= 2);
    server.stop().await?;

    // A dead recursor: the bare CNAME, after the timeout.
    let dead = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
    let mut cfg = DnsConfig::new("dc1");
    cfg.recursors = vec![dead.local_addr()?];
    cfg.recursor_timeout = Duration::from_millis(200);
    let server = Server::start(&engine, cfg).await?;
    let m = udp_ask(
        server.udp,
        &query("ext.service.consul.", RecordType::A, None),
    )
    .await?;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert_eq!(cnames(&m).len(), 1);
    assert!(ips(&m).is_empty(), "{m:?}");
    server.stop().await?;
    engine.shutdown().await?;
    Ok(())
}

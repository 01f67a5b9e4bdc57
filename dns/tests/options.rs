//! The `dns_config` options and EDNS0 behaviour: `a_record_limit`,
//! `enable_additional_node_meta_txt`, `recursor_strategy`, the
//! client-subnet echo, and truncated recursor answers retried over TCP.

mod common;

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{
    ask, ask_max, ip, ips, node, open, query, question, register, svc, tcp_once, txt_glue, udp_ask,
    Res, Server, Upstream, BIG,
};
use hickory_proto::op::{Edns, Message};
use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsCode, EdnsOption};
use hickory_proto::rr::RecordType;
use muster_dns::{handle, DnsConfig, RecursorStrategy, MAX_TCP_SIZE};
use muster_engine::Status;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_limit_caps_address_answers_on_udp_and_tcp() -> Res {
    let dir = tempfile::tempdir()?;
    let engine = open(dir.path()).await?;
    for i in 1..=6u8 {
        let n = node(&format!("n{i}"), &format!("10.0.0.{i}"));
        register(
            &engine,
            n,
            svc(&format!("w{i}"), "web", "", 80, &[]),
            Some(Status::Passing),
        )
        .await?;
    }
    let count = |cfg: &DnsConfig, qtype, edns: Option<u16>, max| -> usize {
        let out = handle(
            &engine,
            cfg,
            &query("web.service.consul.", qtype, edns),
            max,
        );
        Message::from_vec(&out).map_or(0, |m| m.answers.len())
    };
    let mut cfg = DnsConfig::new("dc1");
    assert_eq!(
        count(&cfg, RecordType::A, None, MAX_TCP_SIZE),
        6,
        "0 = unlimited"
    );

    // a_record_limit below the UDP limit: it wins everywhere.
    cfg.a_record_limit = 2;
    assert_eq!(count(&cfg, RecordType::A, None, 512), 2);
    assert_eq!(count(&cfg, RecordType::A, Some(4096), 4096), 2);
    assert_eq!(count(&cfg, RecordType::A, None, MAX_TCP_SIZE), 2);
    assert_eq!(count(&cfg, RecordType::ANY, None, MAX_TCP_SIZE), 2);
    // SRV answers are not A records.
    assert_eq!(count(&cfg, RecordType::SRV, None, MAX_TCP_SIZE), 6);
    // Above the UDP limit: the UDP limit wins on UDP without EDNS0.
    cfg.a_record_limit = 5;
    cfg.udp_answer_limit = 3;
    assert_eq!(count(&cfg, RecordType::A, None, 512), 3);
    assert_eq!(count(&cfg, RecordType::A, Some(4096), 4096), 5);
    assert_eq!(count(&cfg, RecordType::A, None, MAX_TCP_SIZE), 5);
    // The cap takes a random subset, not always the same instances.
    cfg.a_record_limit = 1;
    let seen: BTreeSet<Vec<IpAddr>> = (0..40)
        .map(|_| {
            ips(&ask_max(
                &engine,
                &cfg,
                "web.service.consul.",
                RecordType::A,
                MAX_TCP_SIZE,
            ))
        })
        .collect();
    assert!(seen.len() > 1, "{seen:?}");
    engine.shutdown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_meta_txt_goes_in_additional_unless_disabled() -> Res {
    let dir = tempfile::tempdir()?;
    let engine = open(dir.path()).await?;
    let passing = Some(Status::Passing);
    register(
        &engine,
        node("n1", "10.0.0.1"),
        svc("w1", "web", "", 80, &[]),
        passing,
    )
    .await?;
    register(
        &engine,
        node("n2", "10.0.0.2"),
        svc("w2", "web", "10.1.0.2", 81, &[]),
        passing,
    )
    .await?;
    let mut cfg = DnsConfig::new("dc1");

    // SRV: one TXT per instance, owned by its node's name (also when the
    // target is an addr name, as Consul).
    let m = ask_max(
        &engine,
        &cfg,
        "web.service.consul.",
        RecordType::SRV,
        MAX_TCP_SIZE,
    );
    let mut txt = txt_glue(&m);
    txt.sort();
    assert_eq!(
        txt,
        [
            ("n1.node.dc1.consul.".to_string(), "rack=r1".to_string()),
            ("n2.node.dc1.consul.".to_string(), "rack=r1".to_string()),
        ]
    );
    let m = ask(&engine, &cfg, "n1.node.consul.", RecordType::A);
    assert_eq!(
        txt_glue(&m),
        [("n1.node.consul.".to_string(), "rack=r1".to_string())]
    );

    cfg.node_meta_txt = false;
    let m = ask_max(
        &engine,
        &cfg,
        "web.service.consul.",
        RecordType::SRV,
        MAX_TCP_SIZE,
    );
    assert!(txt_glue(&m).is_empty(), "{m:?}");
    assert_eq!(common::addr_glue(&m).len(), 2, "glue stays");
    let m = ask(&engine, &cfg, "n1.node.consul.", RecordType::A);
    assert!(txt_glue(&m).is_empty(), "{m:?}");
    // A TXT question still gets the meta in ANSWER.
    let m = ask(&engine, &cfg, "n1.node.consul.", RecordType::TXT);
    assert_eq!(m.answers.len(), 1, "{m:?}");
    engine.shutdown().await?;
    Ok(())
}

/// The client-subnet option of a response's OPT record.
fn subnet(m: &Message) -> Option<ClientSubnet> {
    match m.edns.as_ref()?.option(EdnsCode::Subnet)? {
        EdnsOption::Subnet(s) => Some(*s),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edns_client_subnet_is_echoed_with_scope_zero() -> Res {
    let dir = tempfile::tempdir()?;
    let engine = open(dir.path()).await?;
    register(
        &engine,
        node("n1", "10.0.0.1"),
        svc("w1", "web", "", 80, &[]),
        None,
    )
    .await?;
    let cfg = DnsConfig::new("dc1");
    let with_ecs = |name: &str, ecs: &str| -> Result<Message, common::BoxErr> {
        let mut q = question(name, RecordType::A, None);
        let mut edns = Edns::new();
        edns.set_max_payload(1232);
        edns.options_mut().insert(EdnsOption::Subnet(ecs.parse()?));
        q.set_edns(edns);
        Ok(Message::from_vec(&handle(
            &engine,
            &cfg,
            &q.to_vec()?,
            1232,
        ))?)
    };
    for (name, ecs, addr, prefix) in [
        ("web.service.consul.", "192.0.2.0/24", "192.0.2.0", 24),
        ("nope.service.consul.", "192.0.2.0/24", "192.0.2.0", 24),
        ("web.service.consul.", "2001:db8::/56", "2001:db8::", 56),
    ] {
        let m = with_ecs(name, ecs)?;
        let echo = subnet(&m).ok_or(format!("{name} {ecs}: no ECS in {m:?}"))?;
        assert_eq!(echo.addr(), ip(addr));
        assert_eq!(echo.source_prefix(), prefix);
        assert_eq!(echo.scope_prefix(), 0);
    }
    let m = with_ecs("web.service.consul.", "192.0.2.0/24")?;
    assert_eq!(ips(&m), vec![ip("10.0.0.1")]);
    // EDNS0 without ECS: no ECS back.
    let out = handle(
        &engine,
        &cfg,
        &query("web.service.consul.", RecordType::A, Some(1232)),
        1232,
    );
    let m = Message::from_vec(&out)?;
    assert!(m.edns.is_some() && subnet(&m).is_none(), "{m:?}");
    engine.shutdown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recursor_strategy_sequential_or_random() -> Res {
    let dir = tempfile::tempdir()?;
    let engine = open(dir.path()).await?;
    let one = Upstream::start(Ipv4Addr::new(192, 0, 2, 1)).await?;
    let two = Upstream::start(Ipv4Addr::new(192, 0, 2, 2)).await?;
    let answers = |server: &Server| {
        let udp = server.udp;
        async move {
            let mut seen = BTreeSet::new();
            for _ in 0..48 {
                let m = udp_ask(udp, &query("example.org.", RecordType::A, None)).await?;
                seen.extend(ips(&m));
            }
            Ok::<_, common::BoxErr>(seen)
        }
    };
    let mut cfg = DnsConfig::new("dc1");
    cfg.recursors = vec![one.addr, two.addr];
    assert_eq!(cfg.recursor_strategy, RecursorStrategy::Sequential);
    let server = Server::start(&engine, cfg.clone()).await?;
    assert_eq!(answers(&server).await?, BTreeSet::from([ip("192.0.2.1")]));
    assert_eq!(two.udp_questions.load(Ordering::SeqCst), 0);
    server.stop().await?;

    // Random: both answer over 48 questions (all from one: p = 2^-47).
    cfg.recursor_strategy = RecursorStrategy::Random;
    let server = Server::start(&engine, cfg).await?;
    assert_eq!(
        answers(&server).await?,
        BTreeSet::from([ip("192.0.2.1"), ip("192.0.2.2")])
    );
    server.stop().await?;
    engine.shutdown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_recursor_answers_are_retried_over_tcp() -> Res {
    let dir = tempfile::tempdir()?;
    let engine = open(dir.path()).await?;
    let up = Upstream::start(Ipv4Addr::new(192, 0, 2, 7)).await?;
    let mut cfg = DnsConfig::new("dc1");
    cfg.recursors = vec![up.addr];
    cfg.recursor_timeout = Duration::from_secs(5);
    let server = Server::start(&engine, cfg).await?;
    let all = usize::from(BIG);

    // TCP client: the full answer the recursor gave over TCP.
    let m = tcp_once(server.tcp, &query("big.example.org.", RecordType::A, None)).await?;
    assert_eq!(ips(&m).len(), all, "{m:?}");
    assert!(!m.metadata.truncation);
    assert!(up.tcp_questions.load(Ordering::SeqCst) >= 1);
    // UDP client with room for it (EDNS0): the full answer too.
    let m = udp_ask(
        server.udp,
        &query("big.example.org.", RecordType::A, Some(4096)),
    )
    .await?;
    assert_eq!(ips(&m).len(), all, "{m:?}");
    assert!(!m.metadata.truncation);
    // UDP client without room: the truncated answer, so it retries on TCP.
    let m = udp_ask(server.udp, &query("big.example.org.", RecordType::A, None)).await?;
    assert!(m.metadata.truncation, "{m:?}");
    // Small answers stay on UDP.
    let before = up.tcp_questions.load(Ordering::SeqCst);
    let m = udp_ask(
        server.udp,
        &query("small.example.org.", RecordType::A, None),
    )
    .await?;
    assert_eq!(ips(&m), vec![ip("192.0.2.7")]);
    assert_eq!(up.tcp_questions.load(Ordering::SeqCst), before);
    server.stop().await?;
    engine.shutdown().await?;
    Ok(())
}

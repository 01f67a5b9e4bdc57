//! The DNS answer path: `muster_dns::answer` (parse the question, read the
//! service's health from the engine, build and encode the reply) for an A
//! query of one of 100 registered services, as a UDP question is answered.
//!
//! Setup registers `svc0` .. `svc99`, one node each, through
//! `Engine::propose` as the catalog register endpoint does, and checks that
//! the query answers exactly its node's address.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use hickory_proto::op::{Message, Query};
use hickory_proto::rr::{Name, RData, RecordType};
use muster_dns::DnsConfig;
use muster_engine::{Command, Engine, EngineConfig, Node, Service};

/// Registered services (one instance each).
const SERVICES: u32 = 100;

/// Register service `svc<i>` on node `n<i>` at 10.0.x.y.
fn register(i: u32) -> Command {
    let node = format!("n{i}");
    Command::CatalogRegister {
        node: Node {
            node: node.clone(),
            address: format!("10.0.{}.{}", i / 256, i % 256),
            datacenter: "dc1".into(),
            ..Node::default()
        },
        skip_node_update: false,
        service: Some(Service {
            node,
            id: format!("svc{i}"),
            service: format!("svc{i}"),
            port: 8080,
            ..Service::default()
        }),
        checks: Vec::new(),
    }
}

/// The encoded A query for `<service>.service.consul.`.
fn query(service: &str) -> Vec<u8> {
    let mut m = Message::query();
    m.metadata.id = 7;
    m.metadata.recursion_desired = true;
    let name = Name::from_ascii(format!("{service}.service.consul.")).expect("name");
    m.add_query(Query::query(name, RecordType::A));
    m.to_vec().expect("encode")
}

fn dns_answer(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = rt
        .block_on(Engine::open(EngineConfig::new(dir.path(), "bench")))
        .expect("engine");
    rt.block_on(async {
        for i in 0..SERVICES {
            engine.propose(register(i)).await.expect("propose");
        }
    });
    let cfg = DnsConfig::new("dc1");
    let packet = query("svc42");
    let reply = rt.block_on(muster_dns::answer(&engine, &cfg, &packet, 512));
    let reply = Message::from_vec(&reply).expect("decode reply");
    let answers: Vec<String> = reply
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(answers, ["10.0.0.42"], "{reply:?}");

    let mut group = c.benchmark_group("dns_answer");
    group.throughput(Throughput::Elements(1));
    group.bench_function("a_query_100_services", |b| {
        b.to_async(&rt)
            .iter(|| muster_dns::answer(&engine, &cfg, &packet, 512))
    });
    group.finish();
    rt.block_on(engine.shutdown()).expect("shutdown");
}

criterion_group!(benches, dns_answer);
criterion_main!(benches);

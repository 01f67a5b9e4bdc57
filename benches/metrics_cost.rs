//! What metrics cost on the hot paths, side by side in one process: a KV
//! GET and a KV PUT through the API server on loopback, and a DNS A
//! question answered from the engine, first with no recorder installed
//! (`off`: the `metrics` macros do nothing), then with the agent's
//! recorder (JSON summaries and Prometheus text, as with
//! `telemetry.prometheus_retention_time`) installed (`on`).

mod support;

use std::time::Duration;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use hickory_proto::op::{Message, Query};
use hickory_proto::rr::{Name, RecordType};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use muster_dns::DnsConfig;
use muster_engine::{Command, Node, Service};

const KEYS: u64 = 1_000;

fn dns_question() -> Vec<u8> {
    let mut m = Message::query();
    m.metadata.id = 7;
    m.add_query(Query::query(
        Name::from_ascii("web.service.consul.").expect("name"),
        RecordType::A,
    ));
    m.to_vec().expect("encode")
}

fn metrics_cost(c: &mut Criterion) {
    let (rt, _dir, engine) = support::runtime_and_engine();
    rt.block_on(async {
        for i in 0..KEYS {
            let cmd = Command::KvSet {
                key: format!("bench/key/{i:08}"),
                value: vec![b'x'; 100],
                flags: 0,
            };
            engine.propose(cmd).await.expect("propose");
        }
        let web = Command::CatalogRegister {
            node: Node {
                node: "n1".into(),
                address: "10.0.0.1".into(),
                datacenter: "dc1".into(),
                ..Node::default()
            },
            skip_node_update: false,
            service: Some(Service {
                node: "n1".into(),
                id: "web".into(),
                service: "web".into(),
                port: 80,
                ..Service::default()
            }),
            checks: Vec::new(),
        };
        engine.propose(web).await.expect("register");
    });
    let server = support::ApiServer::start(&rt, &engine);
    let addr = server.addr;
    let get_client = support::client();
    let put_client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let dns = DnsConfig::new("dc1");
    let question = dns_question();

    let mut group = c.benchmark_group("metrics_cost");
    group.throughput(Throughput::Elements(1));
    group.measurement_time(Duration::from_secs(5));
    let mut i = 0u64;
    for recorder in ["off", "on"] {
        if recorder == "on" {
            let _guard = rt.enter();
            muster_api::metrics::install(muster_api::metrics::Telemetry {
                prometheus_retention: Some(Duration::from_secs(60)),
                ..Default::default()
            });
        }
        group.bench_function(format!("kv_get/{recorder}"), |b| {
            b.to_async(&rt).iter(|| {
                i = (i + 7919) % KEYS;
                let uri: hyper::Uri = format!("http://{addr}/v1/kv/bench/key/{i:08}")
                    .parse()
                    .expect("uri");
                let client = get_client.clone();
                async move {
                    let resp = client.get(uri).await.expect("request");
                    assert_eq!(resp.status(), 200);
                    resp.into_body().collect().await.expect("body").to_bytes()
                }
            })
        });
        group.bench_function(format!("kv_put/{recorder}"), |b| {
            b.to_async(&rt).iter(|| {
                i = (i + 7919) % KEYS;
                let req = hyper::Request::put(format!("http://{addr}/v1/kv/bench/key/{i:08}"))
                    .body(Full::new(Bytes::from_static(&[b'y'; 100])))
                    .expect("request");
                let client = put_client.clone();
                async move {
                    let resp = client.request(req).await.expect("request");
                    assert_eq!(resp.status(), 200);
                    resp.into_body().collect().await.expect("body").to_bytes()
                }
            })
        });
        group.bench_function(format!("dns_a/{recorder}"), |b| {
            b.to_async(&rt)
                .iter(|| muster_dns::answer(&engine, &dns, &question, 512))
        });
    }
    group.finish();
    server.stop(&rt);
    rt.block_on(engine.shutdown()).expect("shutdown");
}

criterion_group!(benches, metrics_cost);
criterion_main!(benches);

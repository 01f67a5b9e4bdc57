//! `/v1/health/service/:s` with 1,000 instances: the engine read
//! (`Engine::health_service`, every instance with its node and checks) and
//! the whole HTTP request (plain and `?passing`) through the API server on
//! loopback.
//!
//! Setup registers `web` 1,000 times, each instance on its own node with
//! one passing service check, through `Engine::propose` as the catalog
//! register endpoint does.

mod support;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use http_body_util::BodyExt;
use muster_engine::WatchSet;
use muster_engine::{Check, Command, Engine, EngineConfig, Node, Service, Status};

/// Instances of `web` (one per node).
const INSTANCES: u64 = 1_000;

/// The register command of instance `i`: node `node-i`, service `web-i`,
/// one passing check `service:web-i`.
fn register(i: u64) -> Command {
    let node = format!("node-{i:04}");
    let address = format!("10.{}.{}.{}", i / 65_536, (i / 256) % 256, i % 256);
    let id = format!("web-{i}");
    Command::CatalogRegister {
        node: Node {
            node: node.clone(),
            address,
            datacenter: "dc1".into(),
            ..Node::default()
        },
        skip_node_update: false,
        service: Some(Service {
            node: node.clone(),
            id: id.clone(),
            service: "web".into(),
            tags: vec!["v1".into(), "primary".into()],
            port: 8080,
            ..Service::default()
        }),
        checks: vec![Check {
            node,
            check_id: format!("service:{id}"),
            name: "Service 'web' check".into(),
            status: Status::Passing,
            output: "HTTP GET http://localhost:8080/health: 200 OK Output: ok".into(),
            service_id: id,
            service_name: "web".into(),
            service_tags: vec!["v1".into(), "primary".into()],
            check_type: "http".into(),
            interval_ns: 10_000_000_000,
            timeout_ns: 5_000_000_000,
            ..Check::default()
        }],
    }
}

fn health_service(c: &mut Criterion) {
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
        let mut tasks = Vec::new();
        for chunk in 0..16u64 {
            let engine = engine.clone();
            tasks.push(tokio::spawn(async move {
                for i in (chunk..INSTANCES).step_by(16) {
                    engine.propose(register(i)).await.expect("propose");
                }
            }));
        }
        for t in tasks {
            t.await.expect("join");
        }
    });
    let registered = engine
        .health_service("web", &mut WatchSet::new())
        .expect("health_service");
    assert_eq!(registered.value.len() as u64, INSTANCES);

    let mut group = c.benchmark_group("health_service");
    group.throughput(Throughput::Elements(1));
    group.bench_function("engine", |b| {
        b.iter(|| {
            engine
                .health_service("web", &mut WatchSet::new())
                .expect("health_service")
        })
    });

    let server = support::ApiServer::start(&rt, &engine);
    let addr = server.addr;
    let client = support::client();
    for (name, path) in [
        ("http", "/v1/health/service/web"),
        ("http_passing", "/v1/health/service/web?passing"),
    ] {
        let uri: hyper::Uri = format!("http://{addr}{path}").parse().expect("uri");
        // Every instance passes: both forms answer all 1,000 entries.
        let body = rt.block_on(async {
            let resp = client.get(uri.clone()).await.expect("request");
            resp.into_body().collect().await.expect("body").to_bytes()
        });
        let entries: Vec<serde_json::Value> = serde_json::from_slice(&body).expect("JSON list");
        assert_eq!(entries.len() as u64, INSTANCES, "{path}");
        group.bench_function(name, |b| {
            b.to_async(&rt).iter(|| {
                let client = client.clone();
                let uri = uri.clone();
                async move {
                    let resp = client.get(uri).await.expect("request");
                    assert_eq!(resp.status(), 200);
                    resp.into_body().collect().await.expect("body").to_bytes()
                }
            })
        });
    }
    group.finish();
    server.stop(&rt);
    rt.block_on(engine.shutdown()).expect("shutdown");
}

criterion_group!(benches, health_service);
criterion_main!(benches);

//! The KV GET path: the engine read (`Engine::kv_get`, fjall point read +
//! decode) and the whole HTTP request through the API server on loopback.

mod support;

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use http_body_util::BodyExt;
use muster_engine::WatchSet;
use muster_engine::{Command, Engine, EngineConfig};

const KEYS: u64 = 10_000;

fn kv_get(c: &mut Criterion) {
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
                for i in (chunk..KEYS).step_by(16) {
                    engine
                        .propose(Command::KvSet {
                            key: format!("bench/key/{i:08}"),
                            value: vec![b'x'; 100],
                            flags: 0,
                        })
                        .await
                        .expect("propose");
                }
            }));
        }
        for t in tasks {
            t.await.expect("join");
        }
    });

    let mut group = c.benchmark_group("kv_get");
    group.throughput(Throughput::Elements(1));
    let mut i = 0u64;
    group.bench_function("engine", |b| {
        b.iter(|| {
            i = (i + 7919) % KEYS;
            engine
                .kv_get(&format!("bench/key/{i:08}"), &mut WatchSet::new())
                .expect("get")
        })
    });

    let server = support::ApiServer::start(&rt, &engine);
    let addr = server.addr;
    let client = support::client();
    group.measurement_time(Duration::from_secs(5));
    group.bench_function("http", |b| {
        b.to_async(&rt).iter(|| {
            i = (i + 7919) % KEYS;
            let uri: hyper::Uri = format!("http://{addr}/v1/kv/bench/key/{i:08}")
                .parse()
                .expect("uri");
            let client = client.clone();
            async move {
                let resp = client.get(uri).await.expect("request");
                assert_eq!(resp.status(), 200);
                resp.into_body().collect().await.expect("body").to_bytes()
            }
        })
    });
    server.stop(&rt);

    // The same GET with ACLs on (default deny) and a token whose policy is
    // `key_prefix "bench/" { policy = "read" }`: the token is resolved
    // (cached) and its rule checked on every request.
    let mut cfg =
        muster_api::ApiConfig::new("dc1", "bench", "00000000-0000-0000-0000-000000000001");
    cfg.acl = Some(std::sync::Arc::new(muster_api::acl::Acl::new(
        muster_api::acl::AclConfig {
            initial_management: Some("root".into()),
            ..muster_api::acl::AclConfig::default()
        },
        "dc1",
    )));
    let server = support::ApiServer::start_with(&rt, &engine, cfg);
    let addr = server.addr;
    let token = rt.block_on(support::acl_token(
        addr,
        "root",
        r#"key_prefix \"bench/\" { policy = \"read\" }"#,
    ));
    group.bench_function("http_acl", |b| {
        b.to_async(&rt).iter(|| {
            i = (i + 7919) % KEYS;
            let req = hyper::Request::get(format!("http://{addr}/v1/kv/bench/key/{i:08}"))
                .header("X-Consul-Token", &token)
                .body(http_body_util::Empty::<bytes::Bytes>::new())
                .expect("request");
            let client = client.clone();
            async move {
                let resp = client.request(req).await.expect("request");
                assert_eq!(resp.status(), 200);
                resp.into_body().collect().await.expect("body").to_bytes()
            }
        })
    });
    group.finish();
    server.stop(&rt);
    rt.block_on(engine.shutdown()).expect("shutdown");
}

criterion_group!(benches, kv_get);
criterion_main!(benches);

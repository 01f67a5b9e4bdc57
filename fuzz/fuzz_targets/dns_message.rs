//! Raw packets into the DNS query handler: never panics, and an answer
//! (when there is one) is a readable DNS message.
#![no_main]

use std::sync::OnceLock;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use muster_dns::{handle, DnsConfig, MAX_TCP_SIZE};
use muster_engine::{Command, Engine, EngineConfig, Node, Service};

struct Fixture {
    engine: Engine,
    cfg: DnsConfig,
    _rt: tokio::runtime::Runtime,
    _dir: tempfile::TempDir,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let engine = rt.block_on(async {
            let mut cfg = EngineConfig::new(dir.path(), "n1");
            cfg.heartbeat = Duration::from_millis(50);
            cfg.election_timeout = Duration::from_millis(150);
            let engine = Engine::open(cfg).await.expect("engine");
            // Five IP instances of web, plus instances reached by hostname
            // (service address, node address, and a name in the domain) so
            // the CNAME paths are fuzzed too.
            let mut instances: Vec<(String, String, &str, String)> = (0..5u8)
                .map(|i| (format!("n{i}"), format!("10.0.0.{i}"), "web", String::new()))
                .collect();
            instances.push((
                "n0".into(),
                "10.0.0.0".into(),
                "ext",
                "db.example.org".into(),
            ));
            instances.push(("h1".into(), "host.example.org".into(), "ext", String::new()));
            instances.push((
                "n1".into(),
                "10.0.0.1".into(),
                "alias",
                "web.service.consul".into(),
            ));
            for (i, (node, address, service, service_address)) in instances.into_iter().enumerate()
            {
                engine
                    .propose(Command::CatalogRegister {
                        node: Node {
                            node,
                            address,
                            ..Node::default()
                        },
                        skip_node_update: false,
                        service: Some(Service {
                            id: format!("{service}{i}"),
                            service: service.into(),
                            address: service_address,
                            port: 80,
                            tags: vec!["v1".into()],
                            ..Service::default()
                        }),
                        checks: vec![],
                    })
                    .await
                    .expect("register");
            }
            engine
        });
        let mut cfg = DnsConfig::new("dc1");
        cfg.a_record_limit = 3;
        Fixture {
            engine,
            cfg,
            _rt: rt,
            _dir: dir,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    for max in [512, 1232, MAX_TCP_SIZE] {
        let out = handle(&f.engine, &f.cfg, data, max);
        if !out.is_empty() {
            assert!(out.len() <= max.max(512) || max >= MAX_TCP_SIZE);
            assert!(out.len() >= 12);
        }
    }
});

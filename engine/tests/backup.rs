//! Backups through the engine's handle: the state written from one engine
//! and restored into another (which had state of its own) comes back
//! record for record, derived lookups included (a node's sessions, the
//! locks a session holds, a service's instances), and indexes never go
//! backwards: reads answer at or above the restore, and later writes get
//! indexes above every restored one.

use std::time::Duration;

use muster_engine::backup::state::StateReader;
use muster_engine::{
    Check, Command, Engine, EngineConfig, Node, Response, Service, Session, Status, WatchSet,
};

type TestResult = Result<(), Box<dyn std::error::Error>>;

async fn open(dir: &std::path::Path) -> Result<Engine, muster_engine::Error> {
    let mut cfg = EngineConfig::new(dir, "n1");
    cfg.heartbeat = Duration::from_millis(50);
    cfg.election_timeout = Duration::from_millis(150);
    Engine::open(cfg).await
}

fn set(key: &str, value: &str) -> Command {
    Command::KvSet {
        key: key.into(),
        value: value.as_bytes().to_vec(),
        flags: 7,
    }
}

fn register(node: &str, service: &str, status: Status) -> Command {
    Command::CatalogRegister {
        node: Node {
            node: node.into(),
            address: "10.0.0.9".into(),
            datacenter: "dc1".into(),
            ..Node::default()
        },
        skip_node_update: false,
        service: Some(Service {
            id: service.into(),
            service: service.into(),
            port: 80,
            tags: vec!["t".into()],
            ..Service::default()
        }),
        checks: vec![
            Check {
                node: node.into(),
                check_id: "serfHealth".into(),
                status: Status::Passing,
                ..Check::default()
            },
            Check {
                node: node.into(),
                check_id: format!("c-{service}"),
                service_id: service.into(),
                status,
                ..Check::default()
            },
        ],
    }
}

/// Everything a client can read, rendered for comparison.
fn everything(e: &Engine) -> Result<String, muster_engine::Error> {
    let ws = &mut WatchSet::new();
    Ok(format!(
        "{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}",
        e.kv_list("", ws)?.value,
        e.catalog_nodes(ws)?.value,
        e.catalog_services(ws)?.value,
        e.health_checks_all(ws)?.value,
        e.session_list(ws)?.value,
        e.session_node("node-a", ws)?.value,
        e.health_service("web", ws)?.value,
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restored_state_is_identical_and_indexes_never_go_backwards() -> TestResult {
    let a_dir = tempfile::tempdir()?;
    let a = open(a_dir.path()).await?;
    for i in 0..300 {
        a.propose(set(&format!("app/{i:03}"), &format!("v{i}")))
            .await?;
    }
    a.propose(Command::KvDelete {
        key: "app/000".into(),
    })
    .await?;
    a.propose(register("node-a", "web", Status::Passing))
        .await?;
    a.propose(register("node-b", "db", Status::Critical))
        .await?;
    let session = Session {
        id: "5f0a0bd2-0000-4000-8000-000000000001".into(),
        name: "lock".into(),
        node: "node-a".into(),
        node_checks: Some(vec!["serfHealth".into()]),
        ..Session::default()
    };
    a.propose(Command::SessionCreate {
        session: session.clone(),
    })
    .await?;
    let locked = a
        .propose(Command::KvLock {
            key: "leader".into(),
            value: b"me".to_vec(),
            flags: 0,
            session: session.id.clone(),
        })
        .await?;
    assert_eq!(locked.response, Response::Bool(true));
    let (header, counts, bytes) = a.write_state(Vec::new(), |_| {})?;
    assert!(header.index > 300);
    assert_eq!(
        counts
            .by_kind
            .iter()
            .find(|(k, _, _)| *k == "KVS")
            .map(|c| c.1),
        Some(300)
    );

    // B has a history of its own: indexes below and above A's.
    let b_dir = tempfile::tempdir()?;
    let b = open(b_dir.path()).await?;
    for i in 0..500 {
        b.propose(set(&format!("old/{i}"), "x")).await?;
    }
    let before = b.kv_get("old/1", &mut WatchSet::new())?.index;
    let id = "test-restore".to_string();
    let restored = b
        .restore_state(StateReader::new(std::io::Cursor::new(bytes))?, id, |_| {})
        .await?;
    assert_eq!(restored, counts.total());
    assert_eq!(everything(&b)?, everything(&a)?);
    assert!(b.kv_get("old/1", &mut WatchSet::new())?.value.is_none());
    // The lock's lookup came back: destroying the session releases it.
    b.propose(Command::SessionDestroy {
        id: session.id.clone(),
    })
    .await?;
    let leader = b.kv_get("leader", &mut WatchSet::new())?.value;
    assert_eq!(leader.and_then(|e| e.session), None);

    // No read answers below what it answered before the restore, and a new
    // write lands above everything restored.
    let ws = &mut WatchSet::new();
    assert!(b.kv_get("app/001", ws)?.index >= before);
    assert!(b.kv_list("app/", ws)?.index >= before);
    let next = b.propose(set("app/new", "n")).await?;
    let written = b.kv_get("app/new", ws)?.value.map(|e| e.modify_index);
    assert!(
        written.is_some_and(|i| i > header.index && i > before),
        "{written:?} vs archive {} and before {before} (entry {})",
        header.index,
        next.index
    );

    // The restore survives a restart (replayed from the log).
    b.shutdown().await?;
    drop(b);
    let b = open(b_dir.path()).await?;
    let after_restart = everything(&b)?;
    assert!(after_restart.contains("app/new"));
    b.shutdown().await?;
    a.shutdown().await?;
    Ok(())
}

//! End-to-end tests of the engine through its public handle: propose →
//! log → apply → read, restart and snapshot recovery.

use std::time::Duration;

use muster_engine::WatchSet;
use muster_engine::{Command, Engine, EngineConfig, Response};

fn config(dir: &std::path::Path) -> EngineConfig {
    let mut cfg = EngineConfig::new(dir, "n1");
    cfg.heartbeat = Duration::from_millis(50);
    cfg.election_timeout = Duration::from_millis(150);
    cfg
}

fn set(key: &str, value: &[u8]) -> Command {
    Command::KvSet {
        key: key.into(),
        value: value.to_vec(),
        flags: 0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_round_trip_cas_and_restart() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let engine = Engine::open(config(dir.path())).await?;
    let a = engine.propose(set("a/1", b"one")).await?;
    assert_eq!(a.response, Response::Bool(true));
    let got = engine.kv_get("a/1", &mut WatchSet::new())?;
    assert_eq!(got.index, a.index);
    assert_eq!(
        got.value.as_ref().map(|e| e.value.as_slice()),
        Some(&b"one"[..])
    );

    // An identical write changes nothing: same ModifyIndex.
    engine.propose(set("a/1", b"one")).await?;
    assert_eq!(engine.kv_get("a/1", &mut WatchSet::new())?.index, a.index);

    // CAS with a stale index fails, with the current one succeeds.
    let stale = engine
        .propose(Command::KvCas {
            key: "a/1".into(),
            value: b"x".to_vec(),
            flags: 0,
            index: a.index + 100,
        })
        .await?;
    assert_eq!(stale.response, Response::Bool(false));
    let ok = engine
        .propose(Command::KvCas {
            key: "a/1".into(),
            value: b"two".to_vec(),
            flags: 7,
            index: a.index,
        })
        .await?;
    assert_eq!(ok.response, Response::Bool(true));
    engine.propose(set("a/2", b"2")).await?;
    engine.propose(set("b", b"3")).await?;
    let del = engine
        .propose(Command::KvDelete { key: "a/2".into() })
        .await?;
    let list = engine.kv_list("a/", &mut WatchSet::new())?;
    assert_eq!(list.value.len(), 1);
    assert_eq!(list.index, del.index, "tombstone keeps the prefix index");
    let keys = engine.kv_keys("", Some("/"), &mut WatchSet::new())?;
    assert_eq!(keys.value, vec!["a/".to_string(), "b".to_string()]);
    let before = engine.kv_table_index()?;
    engine.shutdown().await?;
    drop(engine);

    let engine = Engine::open(config(dir.path())).await?;
    assert!(engine.kv_table_index()? >= before);
    let e = engine
        .kv_get("a/1", &mut WatchSet::new())?
        .value
        .ok_or("a/1 lost")?;
    assert_eq!((e.value.as_slice(), e.flags), (&b"two"[..], 7));
    let next = engine.propose(set("c", b"4")).await?;
    assert!(next.index > before);
    engine.shutdown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_then_restart_keeps_state() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let mut cfg = config(dir.path());
    cfg.snapshot_threshold = 50;
    cfg.trailing_logs = 0;
    let engine = Engine::open(cfg.clone()).await?;
    for i in 0..200u32 {
        engine
            .propose(set(&format!("k/{i:04}"), &i.to_be_bytes()))
            .await?;
    }
    engine.snapshot_now().await?;
    for i in 200..210u32 {
        engine
            .propose(set(&format!("k/{i:04}"), &i.to_be_bytes()))
            .await?;
    }
    let index = engine.kv_table_index()?;
    engine.shutdown().await?;
    drop(engine);
    let engine = Engine::open(cfg).await?;
    let all = engine.kv_list("k/", &mut WatchSet::new())?;
    assert_eq!(all.value.len(), 210);
    assert_eq!(all.index, index);
    for (i, e) in all.value.iter().enumerate() {
        assert_eq!(e.value, (i as u32).to_be_bytes());
    }
    engine.shutdown().await?;
    Ok(())
}

/// The shared health read is handed out again while nothing that affects
/// the service changed, and read afresh after a check, a node or another
/// instance changes; writes elsewhere leave it alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_health_follows_every_change_of_the_service(
) -> Result<(), Box<dyn std::error::Error>> {
    use muster_engine::{Check, Node, Service, Status};
    let dir = tempfile::tempdir()?;
    let engine = Engine::open(config(dir.path())).await?;
    let register = |node: &str, addr: &str, status: Status| Command::CatalogRegister {
        node: Node {
            node: node.into(),
            address: addr.into(),
            ..Node::default()
        },
        skip_node_update: false,
        service: Some(Service {
            id: "web".into(),
            service: "web".into(),
            port: 80,
            ..Service::default()
        }),
        checks: vec![Check {
            node: node.into(),
            check_id: "c".into(),
            name: "c".into(),
            status,
            service_id: "web".into(),
            ..Check::default()
        }],
    };
    engine
        .propose(register("n1", "10.0.0.1", Status::Passing))
        .await?;
    let first = engine.health_service_shared("web")?;
    assert_eq!(first.value.len(), 1);
    // Unrelated writes: the same decoded result.
    engine.propose(set("k", b"v")).await?;
    let again = engine.health_service_shared("web")?;
    assert!(std::sync::Arc::ptr_eq(&first.value, &again.value));
    // A check status change, a node address change, a new instance: each
    // shows at once, and matches the uncached read.
    engine
        .propose(register("n1", "10.0.0.1", Status::Critical))
        .await?;
    let h = engine.health_service_shared("web")?;
    assert_eq!(
        h.value
            .first()
            .and_then(|i| i.checks.first())
            .map(|c| c.status),
        Some(Status::Critical)
    );
    engine
        .propose(register("n1", "10.0.0.9", Status::Critical))
        .await?;
    let h = engine.health_service_shared("web")?;
    assert_eq!(
        h.value.first().map(|i| i.node.address.as_str()),
        Some("10.0.0.9")
    );
    engine
        .propose(register("n2", "10.0.0.2", Status::Passing))
        .await?;
    let h = engine.health_service_shared("web")?;
    assert_eq!(h.value.len(), 2);
    assert_eq!(
        *h.value,
        engine.health_service("web", &mut WatchSet::new())?.value
    );
    assert!(h.index > first.index);
    engine.shutdown().await?;
    Ok(())
}

/// Writes batched into a handful of log entries still lead to a snapshot
/// once `snapshot_threshold` commands were applied (raft alone counts
/// entries, and would wait for 100 entries here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batched_writes_trigger_snapshots_by_command_count(
) -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let mut cfg = config(dir.path());
    cfg.snapshot_threshold = 100;
    let engine = Engine::open(cfg).await?;
    let writes: Vec<_> = (0..400)
        .map(|i| {
            let engine = engine.clone();
            tokio::spawn(async move { engine.propose(set(&format!("k/{i}"), b"v")).await })
        })
        .collect();
    let mut last = 0;
    for w in writes {
        last = last.max(w.await??.index);
    }
    assert!(
        last < 100,
        "the 400 writes were batched into {last} entries"
    );
    let snapshots = dir.path().join("snapshots");
    let started = std::time::Instant::now();
    loop {
        let built = std::fs::read_dir(&snapshots)
            .map(|d| d.filter_map(|e| e.ok()).count())
            .unwrap_or(0);
        if built > 0 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no snapshot after 400 writes in {last} entries"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    engine.shutdown().await?;
    Ok(())
}

/// Snapshot isolation: one log entry re-registers every instance of a
/// service with a new port; a reader running meanwhile sees either all of
/// an entry or none of it, never instances of two entries in one answer
/// (each query reads its name index, rows and index through one view).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_sees_all_of_an_entry_or_none() -> Result<(), Box<dyn std::error::Error>> {
    use muster_engine::{Node, Service};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    const INSTANCES: usize = 40;
    const ROUNDS: u16 = 150;
    let dir = tempfile::tempdir()?;
    let engine = Engine::open(config(dir.path())).await?;
    let round = |port: u16| Command::Batch {
        commands: (0..INSTANCES)
            .map(|i| Command::CatalogRegister {
                node: Node {
                    node: format!("n{i:02}"),
                    address: "10.0.0.1".into(),
                    ..Node::default()
                },
                skip_node_update: false,
                service: Some(Service {
                    id: "web".into(),
                    service: "web".into(),
                    port,
                    ..Service::default()
                }),
                checks: Vec::new(),
            })
            .collect(),
    };
    engine.propose(round(1)).await?;
    let done = Arc::new(AtomicBool::new(false));
    let reader = {
        let (engine, done) = (engine.clone(), done.clone());
        std::thread::spawn(move || -> Result<(usize, usize), String> {
            let (mut reads, mut distinct_answers) = (0, 0);
            let mut last = 0;
            while !done.load(Ordering::Acquire) {
                let r = engine
                    .catalog_service("web", &mut WatchSet::new())
                    .map_err(|e| e.to_string())?;
                let ports: Vec<u16> = r.value.iter().map(|s| s.service.port).collect();
                if ports.len() != INSTANCES || ports.iter().any(|p| *p != ports[0]) {
                    return Err(format!("torn read at index {}: ports {ports:?}", r.index));
                }
                if ports[0] != last {
                    distinct_answers += 1;
                    last = ports[0];
                }
                reads += 1;
            }
            Ok((reads, distinct_answers))
        })
    };
    for port in 2..=ROUNDS {
        engine.propose(round(port)).await?;
    }
    done.store(true, Ordering::Release);
    let (reads, answers) = reader.join().map_err(|_| "reader panicked")??;
    // The reader must have overlapped the writes, or the test proves nothing.
    assert!(
        answers > 10,
        "{reads} reads saw only {answers} distinct rounds"
    );
    engine.shutdown().await?;
    Ok(())
}

/// The UI's service summaries: one entry per name with every instance,
/// tag and node once, and each check counted once by status: an
/// instance's own checks, and its node's checks once per service however
/// many instances run there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ui_summaries_count_instances_and_checks_once() -> Result<(), Box<dyn std::error::Error>> {
    use muster_engine::{Check, Node, Service, Status};
    let dir = tempfile::tempdir()?;
    let engine = Engine::open(config(dir.path())).await?;
    let node = |name: &str| Node {
        node: name.into(),
        address: "10.0.0.1".into(),
        datacenter: "dc1".into(),
        ..Node::default()
    };
    let check = |node: &str, id: &str, sid: &str, status| Check {
        node: node.into(),
        check_id: id.into(),
        name: id.into(),
        status,
        service_id: sid.into(),
        ..Check::default()
    };
    let register = |n: &str, id: &str, name: &str, tags: &[&str], checks: Vec<Check>| {
        Command::CatalogRegister {
            node: node(n),
            skip_node_update: false,
            service: Some(Service {
                id: id.into(),
                service: name.into(),
                tags: tags.iter().map(|t| t.to_string()).collect(),
                port: 80,
                ..Service::default()
            }),
            checks,
        }
    };
    for cmd in [
        register(
            "a",
            "web-1",
            "web",
            &["v1"],
            vec![check("a", "serfHealth", "", Status::Passing)],
        ),
        register(
            "a",
            "web-2",
            "web",
            &["v2", "v1"],
            vec![check("a", "c2", "web-2", Status::Critical)],
        ),
        register(
            "b",
            "web-1",
            "web",
            &[],
            vec![check("b", "serfHealth", "", Status::Warning)],
        ),
        register(
            "b",
            "db",
            "db",
            &["primary"],
            vec![check("b", "c3", "db", Status::Passing)],
        ),
    ] {
        engine.propose(cmd).await?;
    }
    let mut ws = WatchSet::new();
    let s = engine.ui_services(&mut ws)?;
    let names: Vec<&str> = s.value.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["db", "web"]);
    let web = &s.value[1];
    assert_eq!(web.instance_count, 3);
    assert_eq!(web.nodes, ["a", "b"]);
    assert_eq!(web.tags, ["v1", "v2"]);
    assert_eq!(web.datacenter, "dc1");
    // a's serfHealth once (two instances there), c2, b's serfHealth.
    assert_eq!(
        (web.checks_passing, web.checks_warning, web.checks_critical),
        (1, 1, 1)
    );
    let db = &s.value[0];
    assert_eq!(
        (db.instance_count, db.checks_passing, db.checks_warning),
        (1, 1, 1)
    );
    let n = engine.ui_nodes(&mut ws)?;
    assert_eq!(n.index, s.index);
    let b = &n.value[1];
    assert_eq!(b.node.node, "b");
    assert_eq!(b.services.len(), 2);
    assert_eq!(b.checks.len(), 2);
    Ok(())
}

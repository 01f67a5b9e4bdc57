//! A three-server cluster in one process over real loopback RPC: servers
//! join the bootstrapped one, writes on any server are forwarded to the
//! leader, followers serve linearizable reads through the leader's read
//! index, a stopped leader is replaced, and a server that comes back after
//! the log was compacted past it catches up through a snapshot.

use std::time::{Duration, Instant};

use muster_engine::WatchSet;
use muster_engine::{Command, Engine, EngineConfig};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

struct Server {
    engine: Engine,
    stop: Option<oneshot::Sender<()>>,
    rpc: tokio::task::JoinHandle<()>,
    addr: String,
}

async fn start(
    dir: &std::path::Path,
    id: u64,
    bootstrap: bool,
    addr: Option<&str>,
) -> Result<Server, Box<dyn std::error::Error>> {
    let listener = TcpListener::bind(addr.unwrap_or("127.0.0.1:0")).await?;
    let addr = listener.local_addr()?.to_string();
    let mut cfg = EngineConfig::new(dir.join(format!("s{id}")), format!("s{id}"));
    cfg.node_id = id;
    cfg.rpc_addr = addr.clone();
    cfg.bootstrap = bootstrap;
    cfg.heartbeat = Duration::from_millis(100);
    cfg.election_timeout = Duration::from_millis(500);
    cfg.snapshot_threshold = 50;
    cfg.trailing_logs = 0;
    let engine = Engine::open(cfg).await?;
    let (stop, stopped) = oneshot::channel::<()>();
    let rpc = tokio::spawn(muster_engine::rpc::server::serve(
        listener,
        engine.clone(),
        None,
        async move {
            let _ = stopped.await;
        },
    ));
    Ok(Server {
        engine,
        stop: Some(stop),
        rpc,
        addr,
    })
}

impl Server {
    async fn stop(mut self) -> Result<(), Box<dyn std::error::Error>> {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let _ = self.rpc.await;
        self.engine.shutdown().await?;
        Ok(())
    }
}

fn set(key: &str, value: &str) -> Command {
    Command::KvSet {
        key: key.into(),
        value: value.as_bytes().to_vec(),
        flags: 0,
    }
}

async fn wait_for<F: Fn() -> bool>(what: &str, within: Duration, f: F) -> Duration {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < within, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    start.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_servers_replicate_forward_fail_over_and_catch_up(
) -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let s1 = start(dir.path(), 1, true, None).await?;
    let s2 = start(dir.path(), 2, false, None).await?;
    let s3 = start(dir.path(), 3, false, None).await?;
    s2.engine.join(&s1.addr).await?;
    s3.engine.join(&s1.addr).await?;
    let peers = s1.engine.status().peers;
    assert_eq!(peers.len(), 3, "peers: {peers:?}");

    // Writes through every server; the followers forward to the leader.
    let mut expected = Vec::new();
    for (i, s) in [&s1, &s2, &s3].iter().enumerate() {
        for j in 0..5 {
            let key = format!("k/{i}/{j}");
            let applied = s.engine.propose(set(&key, "v")).await?;
            assert!(applied.index > 0);
            expected.push(key);
        }
    }
    // A follower's linearizable read sees every acknowledged write.
    for s in [&s2, &s3] {
        assert!(
            s.engine.check_leader().is_err(),
            "followers are not leaders"
        );
        s.engine.linearizable().await?;
        let keys = s.engine.kv_keys("k/", None, &mut WatchSet::new())?.value;
        assert_eq!(keys, expected);
        assert!(s.engine.status().last_contact_ms < 5_000);
    }

    // Stop the leader: the other two elect one and keep taking writes.
    let leader_addr = s1.engine.leader_addr().unwrap_or_default();
    assert_eq!(leader_addr, s1.addr, "the bootstrapped server leads");
    let s1_addr = s1.addr.clone();
    s1.stop().await?;
    let elected = wait_for("a new leader", Duration::from_secs(10), || {
        [&s2, &s3]
            .iter()
            .any(|s| s.engine.leader_addr().is_some_and(|a| a != s1_addr))
    })
    .await;
    println!("new leader elected {elected:?} after the old one stopped");
    for (i, s) in [&s2, &s3].iter().enumerate() {
        // Enough writes to compact the log past what the stopped server has.
        for j in 0..60 {
            let key = format!("after/{i}/{j}");
            s.engine.propose(set(&key, "w")).await?;
            expected.push(key);
        }
    }
    for s in [&s2, &s3] {
        s.engine.snapshot_now().await?;
    }

    // The old leader comes back on its address, behind the purge point:
    // it catches up through a snapshot and has every acknowledged write.
    let s1 = start(dir.path(), 1, true, Some(&s1_addr)).await?;
    let caught_up = Instant::now();
    loop {
        if s1.engine.linearizable().await.is_ok() {
            let mut keys = s1.engine.kv_keys("k/", None, &mut WatchSet::new())?.value;
            keys.extend(
                s1.engine
                    .kv_keys("after/", None, &mut WatchSet::new())?
                    .value,
            );
            let mut want = expected.clone();
            want.sort();
            keys.sort();
            if keys == want {
                break;
            }
        }
        assert!(
            caught_up.elapsed() < Duration::from_secs(20),
            "restarted server did not catch up"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!("restarted server caught up in {:?}", caught_up.elapsed());
    // And it forwards writes to the new leader.
    s1.engine.propose(set("from/s1", "x")).await?;
    s2.engine.linearizable().await?;
    assert!(s2
        .engine
        .kv_get("from/s1", &mut WatchSet::new())?
        .value
        .is_some());
    for s in [s1, s2, s3] {
        s.stop().await?;
    }
    Ok(())
}

/// A client agent's link: with no servers it says so; with a dead server
/// listed first it moves on to the live one for writes, node reads and
/// blocking node reads, and keeps preferring the one that answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_moves_past_a_dead_server() -> Result<(), Box<dyn std::error::Error>> {
    use muster_engine::remote::{Remote, NO_SERVERS};
    use muster_engine::Node;

    let dir = tempfile::tempdir()?;
    let s1 = start(dir.path(), 1, true, None).await?;
    let remote = Remote::new();
    let none = remote.apply(vec![set("x", "1")]).await;
    assert_eq!(none, Err(NO_SERVERS.to_string()));

    // A port nothing listens on.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0")?;
        l.local_addr()?.to_string()
    };
    remote.set_servers(vec![dead.clone(), s1.addr.clone()]);
    for i in 0..4 {
        remote
            .apply(vec![Command::CatalogRegister {
                node: Node {
                    node: "c1".into(),
                    address: "10.0.0.1".into(),
                    ..Node::default()
                },
                skip_node_update: false,
                service: None,
                checks: Vec::new(),
            }])
            .await?;
        remote.apply(vec![set(&format!("r/{i}"), "v")]).await?;
    }
    assert_eq!(
        s1.engine
            .kv_keys("r/", None, &mut WatchSet::new())?
            .value
            .len(),
        4
    );
    let view = remote.node_view("c1", 0, Duration::ZERO).await?;
    let node = view.node.expect("c1 registered");
    assert_eq!(node.node.address, "10.0.0.1");

    // A blocking node read wakes on a change to that node.
    let waiter = {
        let remote = std::sync::Arc::new(remote);
        let r = remote.clone();
        let index = view.index;
        (
            tokio::spawn(async move { r.node_view("c1", index, Duration::from_secs(20)).await }),
            remote,
        )
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    s1.engine
        .propose(Command::CatalogRegister {
            node: Node {
                node: "c1".into(),
                address: "10.0.0.2".into(),
                ..Node::default()
            },
            skip_node_update: false,
            service: None,
            checks: Vec::new(),
        })
        .await?;
    let woken = waiter.0.await??;
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(woken.index > view.index);
    assert_eq!(
        woken.node.map(|n| n.node.address).as_deref(),
        Some("10.0.0.2")
    );
    drop(waiter.1);
    s1.stop().await?;
    Ok(())
}

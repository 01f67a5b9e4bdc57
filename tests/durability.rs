//! Durability: every write acknowledged with `true` survives `kill -9`
//! of the agent in the middle of a stream of concurrent writes, over several
//! crash/restart rounds on the same data directory.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::harness::{request, wait_until, Agent};

const WRITERS: usize = 8;
const WRITES_BEFORE_KILL: usize = 300;
const ROUNDS: usize = 3;

#[test]
fn acknowledged_writes_survive_kill_9_repeatedly() {
    let mut agent = Agent::durable();
    let mut acked: Vec<(String, String)> = Vec::new();

    for round in 0..ROUNDS {
        let addr = agent.addr;
        let killed = Arc::new(AtomicBool::new(false));
        let count = Arc::new(AtomicUsize::new(0));
        let round_acked = Arc::new(Mutex::new(Vec::new()));
        let nonce = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();

        let writers: Vec<_> = (0..WRITERS)
            .map(|w| {
                let (killed, count, round_acked) = (
                    Arc::clone(&killed),
                    Arc::clone(&count),
                    Arc::clone(&round_acked),
                );
                thread::spawn(move || {
                    for seq in 0.. {
                        let key = format!("dur/r{round}/w{w}/{seq}");
                        let value = format!("round={round} writer={w} seq={seq} nonce={nonce}");
                        match request(addr, "PUT", &format!("/v1/kv/{key}"), value.as_bytes()) {
                            Ok(resp) if resp.status == 200 => {
                                assert!(resp.bool(), "a plain PUT answers true");
                                round_acked.lock().expect("acked list").push((key, value));
                                count.fetch_add(1, Ordering::SeqCst);
                            }
                            Ok(resp) => {
                                assert!(
                                    killed.load(Ordering::SeqCst),
                                    "PUT {key} failed before the kill: {} {}",
                                    resp.status,
                                    resp.text()
                                );
                                return;
                            }
                            // The agent is gone (or going): stop writing.
                            Err(_) => return,
                        }
                        if killed.load(Ordering::SeqCst) {
                            return;
                        }
                    }
                })
            })
            .collect();

        let deadline = Instant::now() + Duration::from_secs(120);
        while count.load(Ordering::SeqCst) < WRITES_BEFORE_KILL {
            assert!(
                Instant::now() < deadline,
                "round {round}: only {} writes in 120 s",
                count.load(Ordering::SeqCst)
            );
            thread::sleep(Duration::from_millis(5));
        }
        killed.store(true, Ordering::SeqCst);
        agent.kill();
        for writer in writers {
            writer.join().expect("writer thread");
        }
        let this_round = std::mem::take(&mut *round_acked.lock().expect("acked list"));
        assert!(this_round.len() >= WRITES_BEFORE_KILL);
        acked.extend(this_round);

        agent.restart();
        let lost: Vec<&(String, String)> = acked
            .iter()
            .filter(|(key, value)| {
                let resp = agent.get(&format!("/v1/kv/{key}?raw"));
                resp.status != 200 || resp.body != value.as_bytes()
            })
            .collect();
        assert!(
            lost.is_empty(),
            "round {round}: {} of {} acknowledged writes lost or wrong after kill -9, e.g. {:?}",
            lost.len(),
            acked.len(),
            lost.iter().take(5).collect::<Vec<_>>()
        );
    }
}

/// With its views gone (a lost or corrupted `views` directory), a server
/// rebuilds them from the newest snapshot plus the log after it, says so in
/// its log, and answers every acknowledged write.
#[test]
fn views_are_rebuilt_from_snapshot_and_log() {
    // A snapshot every 64 commands; the last writes stay in the log only.
    let mut agent = Agent::start_with_config(
        &["-server", "-bootstrap"],
        true,
        r#"{"raft_snapshot_threshold": 64, "raft_trailing_logs": 16}"#,
    );
    let keys: Vec<String> = (0..300).map(|i| format!("rebuild/k{i:03}")).collect();
    for k in &keys {
        assert!(agent.kv_put(k, k.as_bytes()), "PUT {k}");
    }
    let snapshots = agent.data_dir().join("snapshots");
    wait_until("a snapshot file", Duration::from_secs(30), || {
        std::fs::read_dir(&snapshots)
            .map(|d| {
                d.flatten()
                    .any(|e| e.path().extension().is_some_and(|x| x == "snap"))
            })
            .unwrap_or(false)
    });
    agent.kill();
    let views = agent.data_dir().join("views");
    std::fs::remove_dir_all(&views).expect("remove views");
    agent.restart();
    let log = agent.log();
    for line in [
        "restoring views from snapshot",
        "snapshot installed",
        "views open",
    ] {
        assert!(log.contains(line), "no {line:?} in the log:\n{log}");
    }
    for k in &keys {
        let resp = agent.get(&format!("/v1/kv/{k}?raw"));
        assert_eq!(
            (resp.status, resp.body.as_slice()),
            (200, k.as_bytes()),
            "{k} after the rebuild"
        );
    }
}

//! Failure detection with Consul's default LAN timing: the figure printed
//! here is the real detection time of a killed node.

use std::time::{Duration, Instant};

use muster_gossip::{MemberEvent, MemberStatus};

use crate::common::*;

#[tokio::test]
async fn killed_node_is_failed_with_default_timing() -> TestResult {
    let nodes = start_cluster(
        (1..=4)
            .map(|i| default_config(&format!("kill-{i}")))
            .collect(),
    )
    .await?;
    let took = wait_all_alive(&nodes, 4, Duration::from_secs(15)).await?;
    println!("default timing: 4 nodes alive everywhere after {took:?}");
    let mut watchers: Vec<_> = nodes[..3].iter().map(|g| g.subscribe()).collect();

    // kill -9: no leave, the sockets just close.
    nodes[3].shutdown().await;
    let killed_at = Instant::now();
    // Poll every survivor together so each gets its own first-seen time.
    let mut detected: [Option<Duration>; 3] = [None; 3];
    wait_for(
        "kill-4 failed on every survivor",
        Duration::from_secs(20),
        || {
            for (seen, node) in detected.iter_mut().zip(&nodes[..3]) {
                if seen.is_none() && status_of(node, "kill-4") == Some(MemberStatus::Failed) {
                    *seen = Some(killed_at.elapsed());
                }
            }
            detected.iter().all(Option::is_some)
        },
    )
    .await?;
    let detected: Vec<Duration> = detected.into_iter().flatten().collect();
    let slowest = detected.iter().max().copied().unwrap_or_default();
    println!(
        "default timing (probe 1s, timeout 500ms, suspicion 4x): killed node marked failed after {detected:?}; slowest {slowest:?}"
    );
    for rx in &mut watchers {
        next_event(
            rx,
            Duration::from_secs(1),
            |e| matches!(e, MemberEvent::Failed(m) if m.name == "kill-4"),
        )
        .await?;
    }
    for node in &nodes[..3] {
        assert_eq!(alive(node), 3);
        node.shutdown().await;
    }
    Ok(())
}

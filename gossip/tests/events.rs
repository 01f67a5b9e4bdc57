//! User events: fired on one node, every node records each exactly once,
//! subscribers hear it, the Lamport clock moves as serf's does, and what
//! cannot be fired is refused.

use std::time::Duration;

use muster_gossip::event::{UserEvent, USER_EVENT_SIZE_LIMIT};
use muster_gossip::{Error, Gossip};

use crate::common::*;

/// How many copies of event `id` `node` recorded.
fn copies(node: &Gossip, id: &str) -> usize {
    node.user_events().iter().filter(|e| e.id == id).count()
}

#[tokio::test]
async fn an_event_fired_on_one_node_reaches_every_node_once() -> TestResult {
    let configs: Vec<_> = (1..=3).map(|i| fast_config(&format!("ev-{i}"))).collect();
    let nodes = start_cluster(configs).await?;
    wait_all_alive(&nodes, 3, Duration::from_secs(10)).await?;
    let mut heard = nodes[2].subscribe_events();

    let mut event = UserEvent::new("deploy", b"v42".to_vec());
    event.service_filter = "^web$".into();
    let fired = nodes[0].fire_event(event).await?;
    assert_eq!(fired.id.len(), 36);
    assert_eq!((fired.version, fired.ltime), (1, 0));
    assert_eq!(
        copies(&nodes[0], &fired.id),
        1,
        "recorded where it was fired"
    );

    let took = wait_for("the event on every node", Duration::from_secs(5), || {
        nodes.iter().all(|n| copies(n, &fired.id) == 1)
    })
    .await?;
    println!("event everywhere after {took:?}");
    let got = tokio::time::timeout(Duration::from_secs(5), heard.recv()).await??;
    assert_eq!(got, fired, "filters and payload travel unchanged");

    // Let foca finish re-gossiping it: still one copy each, and nothing
    // more for the subscriber.
    tokio::time::sleep(Duration::from_secs(1)).await;
    for n in &nodes {
        assert_eq!(copies(n, &fired.id), 1, "{}", n.name());
        assert!(n.event_clock() >= 1, "{} witnessed time 0", n.name());
    }
    assert!(heard.try_recv().is_err(), "one delivery per event");

    // A node that witnessed time 0 fires at 1 or later; order is kept.
    let second = nodes[2]
        .fire_event(UserEvent::new("restart", Vec::new()))
        .await?;
    assert!(second.ltime >= 1, "{second:?}");
    wait_for("the second event on node 1", Duration::from_secs(5), || {
        copies(&nodes[0], &second.id) == 1
    })
    .await?;
    let names: Vec<String> = nodes[0].user_events().into_iter().map(|e| e.name).collect();
    assert_eq!(names, ["deploy", "restart"], "oldest first");
    for n in &nodes {
        n.shutdown().await;
    }
    Ok(())
}

#[tokio::test]
async fn events_without_a_name_or_too_large_are_refused() -> TestResult {
    let node = Gossip::start(fast_config("ev-alone")).await?;
    let err = node
        .fire_event(UserEvent::new("", Vec::new()))
        .await
        .expect_err("no name");
    assert_eq!(err.to_string(), "User event missing name");
    let big = UserEvent::new("big", vec![b'x'; USER_EVENT_SIZE_LIMIT]);
    match node.fire_event(big).await {
        Err(e @ Error::UserEventTooLarge { .. }) => {
            assert!(e
                .to_string()
                .starts_with("user event exceeds configured limit of 512 bytes before encoding"));
        }
        other => panic!("expected too large, got {other:?}"),
    }
    assert!(node.user_events().is_empty());
    node.leave(Duration::from_secs(1)).await?;
    let after_leave = node.fire_event(UserEvent::new("late", Vec::new())).await;
    assert!(
        matches!(after_leave, Err(Error::Stopped)),
        "{after_leave:?}"
    );
    node.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn a_member_joining_later_does_not_get_earlier_events() -> TestResult {
    let first = Gossip::start(fast_config("ev-early")).await?;
    let before = first
        .fire_event(UserEvent::new("before", Vec::new()))
        .await?;
    assert_eq!(copies(&first, &before.id), 1, "recorded alone");
    let nodes = start_cluster_with(first, fast_config("ev-late")).await?;
    wait_all_alive(&nodes, 2, Duration::from_secs(10)).await?;
    let after = nodes[0]
        .fire_event(UserEvent::new("after", Vec::new()))
        .await?;
    assert_eq!(after.ltime, 1, "the clock ticked for the first one");
    wait_for(
        "the later event on the joiner",
        Duration::from_secs(5),
        || copies(&nodes[1], &after.id) == 1,
    )
    .await?;
    let names: Vec<String> = nodes[1].user_events().into_iter().map(|e| e.name).collect();
    assert_eq!(names, ["after"]);
    for n in &nodes {
        n.shutdown().await;
    }
    Ok(())
}

/// `first`, then a node started from `cfg` that joins it.
async fn start_cluster_with(
    first: Gossip,
    cfg: muster_gossip::GossipConfig,
) -> TestResult<Vec<Gossip>> {
    let second = Gossip::start(cfg).await?;
    assert_eq!(second.join(&[first.local_addr()]).await?, 1);
    Ok(vec![first, second])
}

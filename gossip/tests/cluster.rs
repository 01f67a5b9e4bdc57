//! Joining, graceful leave, tag propagation, force-leave and reaping.

use std::collections::BTreeMap;
use std::time::Duration;

use muster_gossip::{Gossip, MemberEvent, MemberStatus};

use crate::common::*;

#[tokio::test]
async fn five_nodes_join_through_one_seed() -> TestResult {
    let configs: Vec<_> = (1..=5).map(|i| fast_config(&format!("five-{i}"))).collect();
    let ids: Vec<String> = configs.iter().map(|c| c.node_id.clone()).collect();
    let seed = Gossip::start(configs[0].clone()).await?;
    let mut seed_events = seed.subscribe();
    let mut nodes = vec![seed];
    for cfg in configs.into_iter().skip(1) {
        let node = Gossip::start(cfg).await?;
        assert_eq!(node.join(&[nodes[0].local_addr()]).await?, 1);
        nodes.push(node);
    }
    let took = wait_all_alive(&nodes, 5, Duration::from_secs(10)).await?;
    println!("5 nodes saw each other alive after {took:?}");
    for node in &nodes {
        let members = node.members();
        let names: Vec<_> = members.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["five-1", "five-2", "five-3", "five-4", "five-5"]);
        for (m, id) in members.iter().zip(&ids) {
            assert_eq!(&m.id, id);
            assert_eq!(m.tags.get("dc").map(String::as_str), Some("dc1"));
        }
    }
    let joins: Vec<String> = drain(&mut seed_events)
        .into_iter()
        .filter_map(|e| match e {
            MemberEvent::Join(m) => Some(m.name),
            _ => None,
        })
        .collect();
    assert_eq!(joins.len(), 4, "one join event per other member: {joins:?}");
    for node in &nodes {
        node.shutdown().await;
    }
    Ok(())
}

#[tokio::test]
async fn join_reports_unreachable_seeds() -> TestResult {
    let node = Gossip::start(fast_config("lonely")).await?;
    // A port nothing listens on: bind, note it, close it.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let err = node
        .join(&[closed])
        .await
        .expect_err("nothing listens there");
    assert!(err.to_string().contains(&closed.to_string()), "{err}");
    node.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn graceful_leave_is_left_not_failed() -> TestResult {
    let nodes = start_cluster(
        (1..=4)
            .map(|i| fast_config(&format!("leave-{i}")))
            .collect(),
    )
    .await?;
    wait_all_alive(&nodes, 4, Duration::from_secs(10)).await?;
    let mut events = nodes[0].subscribe();
    nodes[3].leave(Duration::from_secs(5)).await?;
    nodes[3].shutdown().await;
    let took = wait_for(
        "leave-4 left on the others",
        Duration::from_secs(10),
        || {
            nodes[..3]
                .iter()
                .all(|g| status_of(g, "leave-4") == Some(MemberStatus::Left))
        },
    )
    .await?;
    println!("graceful leave seen everywhere after {took:?}");
    let leave = next_event(&mut events, Duration::from_secs(1), |e| {
        e.member().name == "leave-4"
    })
    .await?;
    assert!(matches!(leave, MemberEvent::Leave(_)), "{leave:?}");
    // Several suspicion timeouts later it is still left, never failed.
    tokio::time::sleep(Duration::from_secs(2)).await;
    for node in &nodes[..3] {
        assert_eq!(status_of(node, "leave-4"), Some(MemberStatus::Left));
        assert_eq!(alive(node), 3);
    }
    assert!(drain(&mut events)
        .iter()
        .all(|e| !matches!(e, MemberEvent::Failed(_))));
    assert_eq!(
        status_of(&nodes[3], "leave-4"),
        Some(MemberStatus::Left),
        "the leaver lists itself as left"
    );
    for node in &nodes[..3] {
        node.shutdown().await;
    }
    Ok(())
}

#[tokio::test]
async fn tags_update_propagates() -> TestResult {
    let nodes = start_cluster((1..=3).map(|i| fast_config(&format!("tags-{i}"))).collect()).await?;
    wait_all_alive(&nodes, 3, Duration::from_secs(10)).await?;
    let mut events = nodes[0].subscribe();
    let tags = BTreeMap::from([
        ("role".to_owned(), "consul".to_owned()),
        ("dc".to_owned(), "dc1".to_owned()),
        ("port".to_owned(), "8300".to_owned()),
        ("build".to_owned(), "1.2.3".to_owned()),
    ]);
    nodes[2].set_tags(tags.clone()).await?;
    let took = wait_for("new tags everywhere", Duration::from_secs(10), || {
        nodes.iter().all(|g| {
            g.members()
                .iter()
                .any(|m| m.name == "tags-3" && m.tags == tags)
        })
    })
    .await?;
    println!("tag update propagated in {took:?}");
    let update = next_event(&mut events, Duration::from_secs(1), |e| {
        e.member().name == "tags-3"
    })
    .await?;
    assert!(
        matches!(&update, MemberEvent::Update(m) if m.tags == tags),
        "{update:?}"
    );
    let huge = BTreeMap::from([("blob".to_owned(), "x".repeat(600))]);
    assert!(
        nodes[0].set_tags(huge).await.is_err(),
        "tags beyond 512 bytes are refused"
    );
    for node in &nodes {
        node.shutdown().await;
    }
    Ok(())
}

#[tokio::test]
async fn force_leave_marks_a_failed_member_left_everywhere() -> TestResult {
    let nodes = start_cluster(
        (1..=3)
            .map(|i| fast_config(&format!("force-{i}")))
            .collect(),
    )
    .await?;
    wait_all_alive(&nodes, 3, Duration::from_secs(10)).await?;
    assert!(
        nodes[0].force_leave("force-3", false).await.is_err(),
        "an alive member can't be forced out"
    );
    nodes[2].shutdown().await;
    wait_for("force-3 failed", Duration::from_secs(10), || {
        nodes[..2]
            .iter()
            .all(|g| status_of(g, "force-3") == Some(MemberStatus::Failed))
    })
    .await?;
    nodes[0].force_leave("force-3", false).await?;
    wait_for("force-3 left on both", Duration::from_secs(5), || {
        nodes[..2]
            .iter()
            .all(|g| status_of(g, "force-3") == Some(MemberStatus::Left))
    })
    .await?;
    nodes[0].force_leave("force-3", true).await?;
    assert_eq!(status_of(&nodes[0], "force-3"), None, "pruned");
    for node in &nodes[..2] {
        node.shutdown().await;
    }
    Ok(())
}

#[tokio::test]
async fn failed_member_is_reaped_after_reconnect_timeout() -> TestResult {
    let configs = (1..=3)
        .map(|i| {
            let mut cfg = fast_config(&format!("reap-{i}"));
            cfg.reconnect_timeout = Duration::from_secs(2);
            cfg
        })
        .collect();
    let nodes = start_cluster(configs).await?;
    wait_all_alive(&nodes, 3, Duration::from_secs(10)).await?;
    let mut events = nodes[0].subscribe();
    nodes[2].shutdown().await;
    next_event(
        &mut events,
        Duration::from_secs(10),
        |e| matches!(e, MemberEvent::Failed(m) if m.name == "reap-3"),
    )
    .await?;
    assert_eq!(status_of(&nodes[0], "reap-3"), Some(MemberStatus::Failed));
    next_event(
        &mut events,
        Duration::from_secs(10),
        |e| matches!(e, MemberEvent::Reap(m) if m.name == "reap-3"),
    )
    .await?;
    assert_eq!(status_of(&nodes[0], "reap-3"), None);
    wait_for("reaped on reap-2 too", Duration::from_secs(5), || {
        status_of(&nodes[1], "reap-3").is_none()
    })
    .await?;
    for node in &nodes[..2] {
        node.shutdown().await;
    }
    Ok(())
}

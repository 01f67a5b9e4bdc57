//! Gossip encryption: a shared key forms a cluster, a wrong or missing key
//! is refused (and logged), keys rotate without disturbing the cluster,
//! and the keyring is persisted.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use muster_gossip::{Gossip, GossipConfig, Keyring, MemberEvent};

use crate::common::*;

const K1: &str = "pUqJrVyVRj5jsiYEkM/tFQYfWyJIv4s3XkvDwy7Cu5s=";
const K2: &str = "KOxgvP2IhbhgTW4ZG9W6qCvjW9a8ZnpE+zyDkQr0Vr4=";
const K3: &str = "AAECAwQFBgcICQoLDA0ODw==";

fn keyed(name: &str, key: &str) -> TestResult<GossipConfig> {
    let mut cfg = fast_config(name);
    cfg.keyring = Some(Keyring::new(key)?);
    Ok(cfg)
}

/// Log lines captured from this test's thread (the runtime is
/// current-thread, so every gossip task logs here).
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .map_err(|_| std::io::Error::other("poisoned"))?
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        self.0
            .lock()
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }
}

#[tokio::test]
async fn nodes_with_the_same_key_form_a_cluster() -> TestResult {
    let nodes = start_cluster(vec![
        keyed("enc-1", K1)?,
        keyed("enc-2", K1)?,
        keyed("enc-3", K1)?,
    ])
    .await?;
    wait_all_alive(&nodes, 3, Duration::from_secs(10)).await?;
    // Joining is a TCP exchange; wait for encrypted SWIM traffic too.
    wait_for("probes on every node", Duration::from_secs(10), || {
        nodes.iter().all(|g| g.stats().udp_packets_received >= 5)
    })
    .await?;
    for node in &nodes {
        let stats = node.stats();
        assert_eq!(stats.dropped_packets, 0, "{stats:?}");
        assert_eq!(alive(node), 3);
        node.shutdown().await;
    }
    Ok(())
}

#[tokio::test]
async fn wrong_key_node_cannot_join_and_the_drop_is_logged() -> TestResult {
    let logs = Captured::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::WARN)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let nodes = start_cluster(vec![keyed("wk-1", K1)?, keyed("wk-2", K1)?]).await?;
    wait_all_alive(&nodes, 2, Duration::from_secs(10)).await?;
    let intruder = Gossip::start(keyed("wk-intruder", K2)?).await?;
    let err = intruder
        .join(&[nodes[0].local_addr()])
        .await
        .expect_err("wrong key must not join");
    println!("join with a wrong key: {err}");
    let stats = nodes[0].stats();
    assert!(
        stats.dropped_packets >= 1 && stats.decrypt_failures >= 1,
        "{stats:?}"
    );
    let text = logs.text();
    assert!(
        text.contains("WARN") && text.contains("dropped packet"),
        "no warning logged: {text}"
    );
    assert!(
        text.contains(&intruder.local_addr().ip().to_string()),
        "sender address logged: {text}"
    );

    // A flood is counted but logs at most one line per second.
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
    for _ in 0..200 {
        sock.send_to(
            b"\x01\x81garbage-that-is-not-a-valid-sealed-frame",
            nodes[0].local_addr(),
        )
        .await?;
    }
    let before = nodes[0].stats().dropped_packets;
    wait_for("flood counted", Duration::from_secs(5), || {
        nodes[0].stats().dropped_packets >= before + 150
    })
    .await?;
    let warn_lines = logs
        .text()
        .lines()
        .filter(|l| l.contains("dropped packet"))
        .count();
    assert!(warn_lines <= 3, "rate limit: {warn_lines} warning lines");

    for node in &nodes {
        assert_eq!(alive(node), 2, "the intruder is not a member");
        assert!(node.members().iter().all(|m| m.name != "wk-intruder"));
    }
    assert_eq!(intruder.members().len(), 1);
    intruder.shutdown().await;
    for node in &nodes {
        node.shutdown().await;
    }
    Ok(())
}

#[tokio::test]
async fn plaintext_node_cannot_join_an_encrypted_cluster() -> TestResult {
    let seed = Gossip::start(keyed("pt-1", K1)?).await?;
    let plain = Gossip::start(fast_config("pt-plain")).await?;
    assert!(plain.join(&[seed.local_addr()]).await.is_err());
    let stats = seed.stats();
    assert!(stats.plaintext_rejected >= 1, "{stats:?}");
    assert_eq!(alive(&seed), 1);
    // The other way round: the plaintext node can't read the sealed reply
    // either, so an encrypted node can't join a plaintext one.
    assert!(seed.join(&[plain.local_addr()]).await.is_err());
    assert!(plain.stats().decrypt_failures >= 1);
    seed.shutdown().await;
    plain.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn verify_incoming_off_accepts_plaintext_during_rollout() -> TestResult {
    // Rolling enablement: the keyed node neither requires nor sends
    // encryption yet.
    let mut cfg = keyed("roll-1", K1)?;
    cfg.encrypt_verify_incoming = false;
    cfg.encrypt_verify_outgoing = false;
    let nodes = start_cluster(vec![cfg, fast_config("roll-2")]).await?;
    wait_all_alive(&nodes, 2, Duration::from_secs(10)).await?;
    for node in &nodes {
        node.shutdown().await;
    }
    Ok(())
}

#[tokio::test]
async fn key_rotation_keeps_the_cluster_healthy() -> TestResult {
    let nodes = start_cluster(vec![
        keyed("rot-1", K1)?,
        keyed("rot-2", K1)?,
        keyed("rot-3", K1)?,
    ])
    .await?;
    wait_all_alive(&nodes, 3, Duration::from_secs(10)).await?;
    let mut events: Vec<_> = nodes.iter().map(|g| g.subscribe()).collect();

    for node in &nodes {
        node.install_key(K2)?;
        assert_eq!(node.list_keys(), vec![K1.to_owned(), K2.to_owned()]);
    }
    for node in &nodes {
        node.use_key(K2)?;
    }
    for node in &nodes {
        assert!(matches!(
            node.remove_key(K2),
            Err(muster_gossip::Error::RemovePrimaryKey)
        ));
        node.remove_key(K1)?;
        assert_eq!(node.list_keys(), vec![K2.to_owned()]);
    }

    // Only K2 works now: a K1 node is refused, a K2 node gets in.
    let old = Gossip::start(keyed("rot-old", K1)?).await?;
    assert!(old.join(&[nodes[0].local_addr()]).await.is_err());
    old.shutdown().await;
    let new = Gossip::start(keyed("rot-new", K2)?).await?;
    new.join(&[nodes[1].local_addr()]).await?;
    let mut all: Vec<&Gossip> = nodes.iter().collect();
    all.push(&new);
    wait_for("4 alive after rotation", Duration::from_secs(10), || {
        all.iter().all(|g| alive(g) == 4)
    })
    .await?;

    // Ten probe rounds later nobody was suspected down.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    for (node, rx) in nodes.iter().zip(&mut events) {
        assert_eq!(alive(node), 4);
        let failed: Vec<_> = drain(rx)
            .into_iter()
            .filter(|e| matches!(e, MemberEvent::Failed(_)))
            .collect();
        assert!(failed.is_empty(), "failures during rotation: {failed:?}");
    }
    new.shutdown().await;
    for node in &nodes {
        node.shutdown().await;
    }
    Ok(())
}

#[tokio::test]
async fn keyring_is_persisted_and_wins_on_restart() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("serf").join("local.keyring");
    let mut cfg = keyed("persist-1", K1)?;
    cfg.keyring_path = Some(path.clone());
    let node = Gossip::start(cfg.clone()).await?;
    let on_disk: Vec<String> = serde_json::from_str(&std::fs::read_to_string(&path)?)?;
    assert_eq!(
        on_disk,
        vec![K1.to_owned()],
        "the encrypt key is saved on first start"
    );
    node.install_key(K3)?;
    node.use_key(K3)?;
    assert!(
        node.install_key("bm90LWEta2V5").is_err(),
        "9-byte key refused"
    );
    let on_disk: Vec<String> = serde_json::from_str(&std::fs::read_to_string(&path)?)?;
    assert_eq!(on_disk, vec![K3.to_owned(), K1.to_owned()], "primary first");
    node.shutdown().await;

    // Restart with a different `encrypt`: the file wins, as in Consul.
    cfg.keyring = Some(Keyring::new(K2)?);
    let node = Gossip::start(cfg).await?;
    assert_eq!(node.list_keys(), vec![K3.to_owned(), K1.to_owned()]);
    node.shutdown().await;

    let plain = Gossip::start(fast_config("persist-plain")).await?;
    assert!(matches!(
        plain.install_key(K1),
        Err(muster_gossip::Error::EncryptionDisabled)
    ));
    assert!(plain.list_keys().is_empty());
    plain.shutdown().await;
    Ok(())
}

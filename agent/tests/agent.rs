//! The agent against a real engine: registration reaches the catalog, TTL
//! updates and expiry, maintenance, and anti-entropy restoring what was
//! removed behind the agent's back.

use std::time::{Duration, Instant};

use muster_agent::{Agent, AgentConfig, CheckDefinition, CheckKind, ServiceDefinition, Source};
use muster_engine::WatchSet;
use muster_engine::{Command, Engine, EngineConfig, Status};

async fn setup(dir: &std::path::Path) -> Result<(Engine, Agent), Box<dyn std::error::Error>> {
    let mut cfg = EngineConfig::new(dir.join("data"), "node-a");
    cfg.heartbeat = Duration::from_millis(50);
    cfg.election_timeout = Duration::from_millis(150);
    let engine = Engine::open(cfg).await?;
    let mut acfg = AgentConfig::new("node-a", "11111111-2222-3333-4444-555555555555", "dc1");
    acfg.ae_interval = Duration::from_millis(300);
    acfg.persist_dir = Some(dir.join("agent"));
    let agent = Agent::start(engine.clone(), acfg, Vec::new(), Vec::new()).await?;
    Ok((engine, agent))
}

fn web_with_ttl(ttl: Duration) -> ServiceDefinition {
    ServiceDefinition {
        name: "web".into(),
        port: 80,
        tags: vec!["v1".into()],
        checks: vec![CheckDefinition {
            kind: CheckKind::Ttl { ttl },
            ..CheckDefinition::default()
        }],
        ..ServiceDefinition::default()
    }
}

async fn wait_for<F: Fn() -> bool>(what: &str, f: F) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn catalog_status(engine: &Engine, check: &str) -> Option<Status> {
    engine
        .health_node("node-a", &mut WatchSet::new())
        .ok()?
        .value
        .into_iter()
        .find(|c| c.check_id == check)
        .map(|c| c.status)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ttl_updates_and_expiry_reach_the_catalog() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let (engine, agent) = setup(dir.path()).await?;
    agent
        .register_service(web_with_ttl(Duration::from_millis(800)), false, Source::Api)
        .await?;
    assert_eq!(
        catalog_status(&engine, "service:web"),
        Some(Status::Critical),
        "starts critical"
    );
    agent
        .update_ttl("service:web", Status::Passing, "all good")
        .await?;
    assert_eq!(
        catalog_status(&engine, "service:web"),
        Some(Status::Passing)
    );
    let health = engine.health_service("web", &mut WatchSet::new())?.value;
    assert_eq!(health.len(), 1);
    assert_eq!(service_check(&health[0]).output, "all good");
    // Not renewed: expires to critical within the TTL plus slack.
    let start = Instant::now();
    wait_for("TTL expiry", || {
        catalog_status(&engine, "service:web") == Some(Status::Critical)
    })
    .await;
    assert!(
        start.elapsed() >= Duration::from_millis(600),
        "expired too early: {:?}",
        start.elapsed()
    );
    let out = agent.checks()["service:web"].output.clone();
    assert!(out.starts_with("TTL expired"), "{out}");
    // An unknown check and a non-TTL check are errors.
    assert!(agent.update_ttl("nope", Status::Passing, "").await.is_err());
    agent.shutdown().await;
    engine.shutdown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anti_entropy_restores_and_removes() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let (engine, agent) = setup(dir.path()).await?;
    agent
        .register_service(web_with_ttl(Duration::from_secs(60)), false, Source::Api)
        .await?;
    // Deleted behind the agent's back: restored by the periodic sync.
    engine
        .propose(Command::CatalogDeregister {
            node: "node-a".into(),
            service_id: Some("web".into()),
            check_id: None,
        })
        .await?;
    assert!(engine
        .catalog_service("web", &mut WatchSet::new())?
        .value
        .is_empty());
    wait_for("web restored", || {
        engine
            .catalog_service("web", &mut WatchSet::new())
            .map(|r| r.value.len() == 1)
            .unwrap_or(false)
    })
    .await;
    // A service registered on this node that the agent does not know goes.
    let mut svc = muster_engine::Service {
        id: "rogue".into(),
        service: "rogue".into(),
        ..Default::default()
    };
    svc.port = 1;
    engine
        .propose(Command::CatalogRegister {
            node: muster_engine::Node {
                node: "node-a".into(),
                address: "127.0.0.1".into(),
                ..Default::default()
            },
            skip_node_update: true,
            service: Some(svc),
            checks: vec![],
        })
        .await?;
    wait_for("rogue removed", || {
        engine
            .catalog_service("rogue", &mut WatchSet::new())
            .map(|r| r.value.is_empty())
            .unwrap_or(false)
    })
    .await;
    // Maintenance adds a critical check and removes it again.
    agent.set_node_maintenance(true, "upgrading").await?;
    assert_eq!(
        catalog_status(&engine, "_node_maintenance"),
        Some(Status::Critical)
    );
    assert_eq!(
        agent.service_health("web").map(|h| h.aggregated),
        Some("maintenance".to_string())
    );
    agent.set_node_maintenance(false, "").await?;
    assert_eq!(catalog_status(&engine, "_node_maintenance"), None);
    // Deregistration.
    agent.deregister_service("web").await?;
    assert!(engine
        .catalog_service("web", &mut WatchSet::new())?
        .value
        .is_empty());
    assert!(agent.deregister_service("web").await.is_err());
    agent.shutdown().await;
    engine.shutdown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_only_changes_wait_for_the_update_interval() -> Result<(), Box<dyn std::error::Error>>
{
    let dir = tempfile::tempdir()?;
    let (engine, agent) = setup(dir.path()).await?;
    agent
        .register_service(web_with_ttl(Duration::from_secs(60)), false, Source::Api)
        .await?;
    agent
        .update_ttl("service:web", Status::Passing, "out 1")
        .await?;
    let index = engine.health_service("web", &mut WatchSet::new())?.index;
    for i in 2..20 {
        agent
            .update_ttl("service:web", Status::Passing, &format!("out {i}"))
            .await?;
    }
    agent.sync_now().await?;
    tokio::time::sleep(Duration::from_millis(700)).await;
    let after = engine.health_service("web", &mut WatchSet::new())?;
    assert_eq!(after.index, index, "output churn must not write to the log");
    assert_eq!(service_check(&after.value[0]).output, "out 1");
    agent.shutdown().await;
    engine.shutdown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alias_check_mirrors_the_aliased_instance() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let (engine, agent) = setup(dir.path()).await?;
    agent
        .register_service(web_with_ttl(Duration::from_secs(60)), false, Source::Api)
        .await?;
    let proxy = ServiceDefinition {
        name: "web-proxy".into(),
        checks: vec![CheckDefinition {
            kind: CheckKind::Alias {
                service: "web".into(),
                node: String::new(),
            },
            ..CheckDefinition::default()
        }],
        ..ServiceDefinition::default()
    };
    agent.register_service(proxy, false, Source::Api).await?;
    let alias = || agent.checks().get("service:web-proxy").map(|c| c.status);
    wait_for("alias critical like web", || {
        alias() == Some(Status::Critical)
    })
    .await;
    agent
        .update_ttl("service:web", Status::Passing, "ok")
        .await?;
    wait_for("alias passing", || alias() == Some(Status::Passing)).await;
    wait_for("alias passing in the catalog", || {
        catalog_status(&engine, "service:web-proxy") == Some(Status::Passing)
    })
    .await;
    agent
        .update_ttl("service:web", Status::Warning, "meh")
        .await?;
    wait_for("alias warning", || alias() == Some(Status::Warning)).await;
    agent.deregister_service("web").await?;
    wait_for("alias critical once web is gone", || {
        alias() == Some(Status::Critical)
    })
    .await;
    agent.shutdown().await;
    engine.shutdown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn critical_service_is_reaped() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let mut cfg = EngineConfig::new(dir.path().join("data"), "node-a");
    cfg.heartbeat = Duration::from_millis(50);
    cfg.election_timeout = Duration::from_millis(150);
    let engine = Engine::open(cfg).await?;
    let mut acfg = AgentConfig::new("node-a", "11111111-2222-3333-4444-555555555555", "dc1");
    // Consul's floors are 1 minute and a 30 s reaper; shortened here.
    acfg.reap_interval = Duration::from_millis(100);
    acfg.min_deregister_after = Duration::from_millis(10);
    let agent = Agent::start(engine.clone(), acfg, Vec::new(), Vec::new()).await?;
    let mut web = web_with_ttl(Duration::from_secs(60));
    web.checks[0].deregister_critical_service_after = Some(Duration::from_millis(500));
    agent.register_service(web, false, Source::Api).await?;
    // Passing: not reaped.
    agent.update_ttl("service:web", Status::Passing, "").await?;
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert!(
        agent.services().contains_key("web"),
        "a passing service is kept"
    );
    let start = Instant::now();
    agent
        .update_ttl("service:web", Status::Critical, "down")
        .await?;
    wait_for("web reaped", || !agent.services().contains_key("web")).await;
    assert!(
        start.elapsed() >= Duration::from_millis(500),
        "reaped too early"
    );
    wait_for("web gone from the catalog", || {
        engine
            .catalog_service("web", &mut WatchSet::new())
            .map(|r| r.value.is_empty())
            .unwrap_or(false)
    })
    .await;
    agent.shutdown().await;
    engine.shutdown().await?;
    Ok(())
}

/// The instance's own check (the node's `serfHealth` comes first).
fn service_check(h: &muster_engine::ServiceHealth) -> &muster_engine::Check {
    h.checks
        .iter()
        .find(|c| c.check_id == "service:web")
        .expect("the service check")
}

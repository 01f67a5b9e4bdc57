//! What the agent tells its operator, at INFO and in Consul's words
//! (issue 15): anti-entropy's `Synced service "web"`, every check status
//! change with its output, clamped values, joins and leaves
//! (`EventMemberJoin`), leadership, and reloads over HTTP as over SIGHUP.

use std::time::Duration;

use crate::harness::{wait_until, Agent};

/// Wait until `agent`'s log contains `needle`.
fn logged(agent: &Agent, needle: &str) {
    wait_until(
        &format!("{needle:?} logged"),
        Duration::from_secs(20),
        || agent.log().contains(needle),
    );
}

#[test]
fn sync_and_check_status_changes_are_logged_in_consuls_words() {
    // At the default level (info), as an operator runs it.
    let agent = Agent::start_with_config(
        &["-dev", "-log-level", "info"],
        false,
        r#"{"service": {"name": "web", "port": 80, "check": {"ttl": "2s"}}}"#,
    );
    logged(&agent, r#"Synced service "web""#);
    logged(&agent, r#"Synced check "service:web""#);

    let pass = agent.put(
        "/v1/agent/check/pass/service:web?note=all%20good%0Asecond",
        b"",
    );
    assert_eq!(pass.status, 200, "{}", pass.text());
    logged(
        &agent,
        r#"Check "service:web" is now passing output="all good""#,
    );
    // The TTL runs out.
    logged(
        &agent,
        r#"Check "service:web" is now critical output="TTL expired"#,
    );
    assert!(
        !agent.log().contains("second"),
        "only the first output line"
    );

    // Values Consul raises with a warning.
    let body = r#"{"Name": "api", "Port": 1, "Check": {"HTTP": "http://127.0.0.1:1/", "Interval": "100ms", "DeregisterCriticalServiceAfter": "10s"}}"#;
    let resp = agent.put("/v1/agent/service/register", body.as_bytes());
    assert_eq!(resp.status, 200, "{}", resp.text());
    logged(
        &agent,
        r#"Check "service:api" has interval below minimum of 1s: using 1s"#,
    );
    logged(
        &agent,
        r#"Check "service:api" has deregister_critical_service_after below minimum of 60s"#,
    );
    logged(&agent, r#"Synced service "api""#);

    let resp = agent.put("/v1/agent/service/deregister/api", b"");
    assert_eq!(resp.status, 200);
    logged(&agent, r#"Deregistered service "api""#);
}

#[test]
fn joins_leaves_and_leadership_are_logged() {
    let server = Agent::start(
        &["-server", "-bootstrap", "-node", "s1", "-log-level", "info"],
        true,
    );
    logged(&server, "cluster leadership acquired");
    let lan = format!("127.0.0.1:{}", server.flag("-serf-lan-port").expect("port"));
    let mut client = Agent::start(&["-node", "c1", "-join", &lan, "-log-level", "info"], true);
    logged(&client, "(LAN) joined: number_of_nodes=1");
    logged(&server, "EventMemberJoin: c1 127.0.0.1");
    logged(&client, "EventMemberJoin: s1 127.0.0.1");
    // A client leaves on SIGINT (Consul's default).
    let status = client.signal_and_wait("INT", Duration::from_secs(10));
    assert!(status.success(), "{status:?}");
    logged(&server, "EventMemberLeave: c1 127.0.0.1");
}

#[test]
fn reload_over_http_is_logged_like_sighup() {
    let mut agent = Agent::start_with_config(
        &["-dev", "-log-level", "info"],
        false,
        r#"{"service": {"name": "web", "port": 80}}"#,
    );
    let resp = agent.put("/v1/agent/reload", b"");
    assert_eq!(resp.status, 200, "{}", resp.text());
    logged(&agent, "Reloading configuration...");
    logged(&agent, "Configuration reloaded");
    let count = |agent: &Agent| agent.log().matches("Configuration reloaded").count();
    assert_eq!(count(&agent), 1);
    let pid = agent.pid().to_string();
    let sent = std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .expect("kill -HUP");
    assert!(sent.success());
    wait_until("the SIGHUP reload logged", Duration::from_secs(20), || {
        count(&agent) == 2
    });
    assert!(agent.log().contains("Caught signal: hangup"));
    let status = agent.signal_and_wait("TERM", Duration::from_secs(10));
    assert!(status.success());
}

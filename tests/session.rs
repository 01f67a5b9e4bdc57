//! Sessions and KV locks (consul-compat.md §7.1 `acquire`/`release`, §8):
//! contention, lock-delay after invalidation (and not after release), TTL
//! expiry and renewal, `session_ttl_min` from a config file, `Behavior:
//! delete`, sessions linked to node and service checks, and every piece of
//! session and lock state surviving `kill -9`.
//!
//! Agents load `session_ttl_min = "1s"` so TTL sessions expire in seconds.
//! Every time bound is generous and polled; nothing relies on a sleep being
//! long enough.

use std::thread;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::agent_checks::{poll, put_ok, register_service};
use crate::harness::Agent;

/// Config that lets sessions use a 1 s TTL.
pub const FAST_TTL: &str = r#"{"session_ttl_min":"1s"}"#;

/// Slack on top of a promised bound, for loaded CI machines.
pub const SLACK: Duration = Duration::from_secs(5);

/// A `-dev` agent with `session_ttl_min = "1s"`.
pub fn fast_agent() -> Agent {
    Agent::start_with_config(&["-dev"], false, FAST_TTL).wait_node_registered()
}

/// Poll until session `id` is gone; returns how long that took.
fn wait_session_gone(agent: &Agent, id: &str, bound: Duration) -> Duration {
    let start = Instant::now();
    poll(&format!("session {id} gone"), bound, || {
        match agent.session_info(id) {
            None => Ok(()),
            Some(s) => Err(s.to_string()),
        }
    });
    start.elapsed()
}

#[test]
fn session_second_acquire_of_a_held_key_fails() {
    let agent = Agent::dev().wait_node_registered();
    let a = agent.session_create(&json!({"Name": "a"}));
    let b = agent.session_create(&json!({"Name": "b"}));
    assert_ne!(a, b);

    assert!(agent.kv_acquire("leader", &a, b"a"), "a free key is taken");
    assert!(
        !agent.kv_acquire("leader", &b, b"b"),
        "a held key is refused"
    );
    let pair = agent.kv_get("leader").expect("exists");
    assert_eq!(pair.value, b"a", "the refused acquire wrote nothing");
    assert_eq!(pair.lock_index, 1);
    assert_eq!(agent.kv_holder("leader").as_deref(), Some(a.as_str()));

    // The holder may write again through acquire; LockIndex stays.
    assert!(agent.kv_acquire("leader", &a, b"a2"));
    let pair = agent.kv_get("leader").expect("exists");
    assert_eq!((pair.value.as_slice(), pair.lock_index), (&b"a2"[..], 1));

    // A plain write keeps the holder.
    assert!(agent.kv_put("leader", b"plain"));
    assert_eq!(agent.kv_holder("leader").as_deref(), Some(a.as_str()));

    // Only the holder can release; release keeps LockIndex.
    assert!(!agent.kv_release("leader", &b, b""));
    assert!(agent.kv_release("leader", &a, b"released"));
    let pair = agent.kv_get("leader").expect("exists");
    assert_eq!(agent.kv_holder("leader"), None);
    assert_eq!(
        (pair.value.as_slice(), pair.lock_index),
        (&b"released"[..], 1)
    );

    // An explicit release sets no lock-delay: b takes it at once.
    assert!(agent.kv_acquire("leader", &b, b"b"));
    assert_eq!(agent.kv_get("leader").expect("exists").lock_index, 2);

    // Unknown and empty sessions are 500s with Consul's messages.
    let resp = agent.put("/v1/kv/other?acquire=nope", b"");
    assert_eq!(resp.status, 500);
    assert!(
        resp.text().starts_with("invalid session \"nope\""),
        "{}",
        resp.text()
    );
    let resp = agent.put("/v1/kv/other?acquire=", b"");
    assert_eq!(resp.status, 500);
    assert!(resp.text().contains("missing session"), "{}", resp.text());
}

#[test]
fn session_lock_delay_holds_after_invalidation_not_after_release() {
    let agent = Agent::dev().wait_node_registered();
    let delay = Duration::from_secs(2);
    let a = agent.session_create(&json!({"Name": "a", "LockDelay": "2s"}));
    let b = agent.session_create(&json!({"Name": "b"}));
    assert_eq!(
        agent.session_info(&a).expect("exists")["LockDelay"],
        2_000_000_000u64,
        "LockDelay is reported in nanoseconds"
    );
    assert!(agent.kv_acquire("delayed", &a, b"a"));

    let destroyed_at = Instant::now();
    let resp = agent.put(&format!("/v1/session/destroy/{a}"), b"");
    assert_eq!((resp.status, resp.bool()), (200, true));
    let pair = agent.kv_get("delayed").expect("release keeps the key");
    assert_eq!(agent.kv_holder("delayed"), None, "destroy released the key");
    assert_eq!(pair.lock_index, 1);

    // The first attempt comes well inside the delay and is refused.
    let refused = agent.kv_acquire("delayed", &b, b"b");
    let first_try = destroyed_at.elapsed();
    assert!(
        first_try < delay,
        "the first retry took {first_try:?}; the machine is too slow for this test"
    );
    assert!(!refused, "acquire during the lock-delay is refused");
    // Plain writes are not blocked by a lock-delay.
    assert!(agent.kv_put("delayed", b"plain"));

    let acquired = poll("acquire after the lock-delay", delay + SLACK, || {
        if agent.kv_acquire("delayed", &b, b"b") {
            Ok(destroyed_at.elapsed())
        } else {
            Err("refused".into())
        }
    });
    assert!(
        acquired >= delay,
        "acquired {acquired:?} after the invalidation, inside the {delay:?} lock-delay"
    );
    assert_eq!(agent.kv_holder("delayed").as_deref(), Some(b.as_str()));

    // b releases explicitly: no lock-delay, even though b's LockDelay is
    // the default 15 s.
    let c = agent.session_create(&json!({"Name": "c"}));
    assert!(agent.kv_release("delayed", &b, b""));
    assert!(
        agent.kv_acquire("delayed", &c, b"c"),
        "an explicit release sets no lock-delay"
    );
}

#[test]
fn session_ttl_min_comes_from_the_config_file() {
    let default = Agent::dev().wait_node_registered();
    let resp = default.put("/v1/session/create", br#"{"TTL":"1s"}"#);
    assert_eq!(resp.status, 500);
    assert!(
        resp.text()
            .starts_with("Invalid Session TTL '1000000000', must be between [10s=24h0m0s]"),
        "{}",
        resp.text()
    );

    let fast = fast_agent();
    fast.session_create(&json!({"TTL": "1s"}));
    let resp = fast.put("/v1/session/create", br#"{"TTL":"500ms"}"#);
    assert_eq!(resp.status, 500);
    assert!(
        resp.text()
            .starts_with("Invalid Session TTL '500000000', must be between [1s=24h0m0s]"),
        "{}",
        resp.text()
    );
}

#[test]
fn session_ttl_expires_unless_renewed() {
    let agent = fast_agent();
    let ttl = Duration::from_secs(1);

    // Not renewed: gone within 2 x TTL (plus slack), and its lock released.
    let created = Instant::now();
    let lapsed = agent.session_create(&json!({"Name": "lapsed", "TTL": "1s"}));
    assert!(agent.kv_acquire("ttl/lock", &lapsed, b"x"));
    let seen = agent
        .session_info(&lapsed)
        .expect("exists right after create");
    assert_eq!(seen["TTL"], "1s");
    wait_session_gone(&agent, &lapsed, 2 * ttl + SLACK);
    let gone_after = created.elapsed();
    assert!(
        gone_after >= 2 * ttl,
        "expired {gone_after:?} after create, before 2 x TTL"
    );
    assert_eq!(
        agent.kv_holder("ttl/lock"),
        None,
        "expiry released the lock"
    );
    let resp = agent.put(&format!("/v1/session/renew/{lapsed}"), b"");
    assert_eq!(resp.status, 404);
    assert_eq!(
        resp.text().trim(),
        format!("Session id '{lapsed}' not found")
    );

    // Renewed every TTL/2 for 4 x TTL: still there, still holding.
    let kept = agent.session_create(&json!({"Name": "kept", "TTL": "1s"}));
    assert!(agent.kv_acquire("ttl/kept", &kept, b"x"));
    let until = Instant::now() + 4 * ttl;
    while Instant::now() < until {
        let resp = agent.put(&format!("/v1/session/renew/{kept}"), b"");
        assert_eq!(resp.status, 200, "renew: {}", resp.text());
        assert_eq!(resp.json()[0]["ID"], kept.as_str());
        thread::sleep(ttl / 2);
    }
    assert!(agent.session_info(&kept).is_some(), "renewed session lives");
    assert_eq!(agent.kv_holder("ttl/kept").as_deref(), Some(kept.as_str()));

    // Then left alone: gone, too.
    wait_session_gone(&agent, &kept, 2 * ttl + SLACK);
    assert_eq!(agent.kv_holder("ttl/kept"), None);
}

#[test]
fn session_behavior_delete_deletes_held_keys() {
    let agent = Agent::dev().wait_node_registered();
    let del = agent.session_create(&json!({"Behavior": "delete", "LockDelay": 0}));
    let rel = agent.session_create(&json!({"Behavior": "release", "LockDelay": 0}));
    assert_eq!(
        agent.session_info(&del).expect("exists")["Behavior"],
        "delete"
    );
    assert!(agent.kv_acquire("beh/a", &del, b"1"));
    assert!(agent.kv_acquire("beh/b", &del, b"2"));
    assert!(agent.kv_acquire("beh/c", &rel, b"3"));
    assert!(agent.kv_put("beh/untouched", b"4"));

    assert!(agent.put(&format!("/v1/session/destroy/{del}"), b"").bool());
    assert!(agent.kv_get("beh/a").is_none(), "held key deleted");
    assert!(agent.kv_get("beh/b").is_none(), "held key deleted");
    assert_eq!(agent.kv_holder("beh/c").as_deref(), Some(rel.as_str()));

    assert!(agent.put(&format!("/v1/session/destroy/{rel}"), b"").bool());
    let c = agent.kv_get("beh/c").expect("release keeps the key");
    assert_eq!(c.value, b"3");
    assert_eq!(agent.kv_holder("beh/c"), None);
    assert!(agent.kv_get("beh/untouched").is_some());

    let resp = agent.put("/v1/session/create", br#"{"Behavior":"explode"}"#);
    assert_eq!(resp.status, 500);
    assert_eq!(resp.text().trim(), "Invalid Behavior setting 'explode'");
}

#[test]
fn session_linked_to_a_ttl_node_check_is_invalidated_when_it_expires() {
    let agent = Agent::dev().wait_node_registered();
    let node = agent.ready_field("node").to_string();
    put_ok(
        &agent,
        "/v1/agent/check/register",
        &json!({"ID": "lease", "Name": "lease", "TTL": "3s"}),
    );
    // A critical check cannot back a session.
    let resp = agent.put(
        "/v1/session/create",
        json!({"NodeChecks": ["serfHealth", "lease"]})
            .to_string()
            .as_bytes(),
    );
    assert_eq!(resp.status, 500, "{}", resp.text());
    assert!(
        resp.text().contains("Check 'lease' is in critical state"),
        "{}",
        resp.text()
    );

    assert_eq!(agent.put("/v1/agent/check/pass/lease", b"").status, 200);
    poll("lease passing in the catalog", SLACK * 3, || {
        let checks = agent.get(&format!("/v1/health/node/{node}")).json();
        let passing = checks.as_array().is_some_and(|l| {
            l.iter()
                .any(|c| c["CheckID"] == "lease" && c["Status"] == "passing")
        });
        if passing {
            Ok(())
        } else {
            Err(checks.to_string())
        }
    });
    // Pass it again so its TTL starts now, then link a session to it.
    assert_eq!(agent.put("/v1/agent/check/pass/lease", b"").status, 200);
    let id = agent.session_create(&json!({"NodeChecks": ["serfHealth", "lease"], "LockDelay": 0}));
    let session = agent.session_info(&id).expect("exists");
    assert_eq!(session["NodeChecks"], json!(["serfHealth", "lease"]));
    assert!(agent.kv_acquire("checked/lock", &id, b"x"));

    // Stop passing the check: its TTL runs out, it turns critical, and the
    // session goes with it, releasing the lock.
    let took = wait_session_gone(&agent, &id, Duration::from_secs(3) + SLACK * 3);
    assert_eq!(
        agent.kv_holder("checked/lock"),
        None,
        "the lock was released"
    );
    let checks = agent.get(&format!("/v1/health/node/{node}")).json();
    assert!(
        checks.as_array().is_some_and(|l| l
            .iter()
            .any(|c| c["CheckID"] == "lease" && c["Status"] == "critical")),
        "invalidated after {took:?} though the check is not critical: {checks}"
    );
}

#[test]
fn session_linked_to_a_service_check_is_invalidated_when_it_fails() {
    let agent = Agent::dev().wait_node_registered();
    register_service(
        &agent,
        &json!({"ID": "db1", "Name": "db", "Port": 5432,
                "Check": {"CheckID": "db-alive", "TTL": "60s", "Status": "passing"}}),
    );
    poll("db-alive in the catalog", SLACK * 3, || {
        let entries = agent.get("/v1/health/checks/db").json();
        let passing = entries.as_array().is_some_and(|l| {
            l.iter()
                .any(|c| c["CheckID"] == "db-alive" && c["Status"] == "passing")
        });
        if passing {
            Ok(())
        } else {
            Err(entries.to_string())
        }
    });
    let resp = agent.put(
        "/v1/session/create",
        br#"{"ServiceChecks":[{"ID":"no-such-check"}]}"#,
    );
    assert_eq!(resp.status, 500);
    assert!(
        resp.text()
            .contains("Missing check 'no-such-check' registration"),
        "{}",
        resp.text()
    );

    let id = agent.session_create(&json!({
        "NodeChecks": [],
        "ServiceChecks": [{"ID": "db-alive", "Namespace": ""}],
        "LockDelay": 0
    }));
    let session = agent.session_info(&id).expect("exists");
    assert_eq!(session["ServiceChecks"][0]["ID"], "db-alive", "{session}");
    assert!(agent.kv_acquire("service/db/leader", &id, b"db1"));
    let other = agent.session_create(&json!({"LockDelay": 0}));
    assert!(!agent.kv_acquire("service/db/leader", &other, b"x"));

    assert_eq!(agent.put("/v1/agent/check/fail/db-alive", b"").status, 200);
    wait_session_gone(&agent, &id, SLACK * 3);
    assert_eq!(agent.kv_holder("service/db/leader"), None);
    assert!(
        agent.kv_acquire("service/db/leader", &other, b"x"),
        "another session takes the released lock"
    );
}

#[test]
fn session_and_lock_state_survives_kill_9() {
    let mut agent =
        Agent::start_with_config(&["-server", "-bootstrap"], true, FAST_TTL).wait_node_registered();
    let holder = agent.session_create(&json!({"Name": "holder", "LockDelay": "5s"}));
    let ttl = agent.session_create(&json!({"Name": "ttl", "TTL": "20s"}));
    let waiter = agent.session_create(&json!({"Name": "waiter", "LockDelay": 0}));
    // LockIndex 2: acquire, release, acquire.
    assert!(agent.kv_acquire("dur/lock", &holder, b"v1"));
    assert!(agent.kv_release("dur/lock", &holder, b"v1"));
    assert!(agent.kv_acquire("dur/lock", &holder, b"v2"));
    assert!(agent.kv_acquire("dur/ttl-lock", &ttl, b"t"));
    let txn = agent.put(
        "/v1/txn",
        json!([
            {"KV": {"Verb": "set", "Key": "dur/txn/a", "Value": "YQ=="}},
            {"KV": {"Verb": "lock", "Key": "dur/txn/b", "Value": "Yg==", "Session": waiter}}
        ])
        .to_string()
        .as_bytes(),
    );
    assert_eq!(txn.status, 200, "{}", txn.text());
    let before: Vec<_> = [&holder, &ttl, &waiter]
        .iter()
        .map(|id| agent.session_info(id).expect("exists"))
        .collect();
    let lock_before = agent.kv_get("dur/lock").expect("exists");

    agent.restart();

    for (id, old) in [&holder, &ttl, &waiter].iter().zip(&before) {
        let now = agent.session_info(id).expect("session survived kill -9");
        assert_eq!(&now, old, "session {id} changed across the restart");
    }
    let lock_after = agent.kv_get("dur/lock").expect("lock key survived");
    assert_eq!(lock_after, lock_before);
    assert_eq!(lock_after.lock_index, 2);
    assert_eq!(
        agent.kv_holder("dur/lock").as_deref(),
        Some(holder.as_str())
    );
    assert_eq!(
        agent.kv_holder("dur/ttl-lock").as_deref(),
        Some(ttl.as_str())
    );
    assert_eq!(agent.kv_get("dur/txn/a").expect("txn write").value, b"a");
    assert_eq!(
        agent.kv_holder("dur/txn/b").as_deref(),
        Some(waiter.as_str())
    );
    assert!(
        !agent.kv_acquire("dur/lock", &waiter, b"w"),
        "the lock is still held after the restart"
    );

    // The TTL session's timer runs again: renewable, and the lock works.
    let resp = agent.put(&format!("/v1/session/renew/{ttl}"), b"");
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert!(agent
        .put(&format!("/v1/session/destroy/{holder}"), b"")
        .bool());
    assert_eq!(agent.kv_holder("dur/lock"), None);
    assert!(
        !agent.kv_acquire("dur/lock", &waiter, b"w"),
        "destroying the holder after the restart sets its 5 s lock-delay"
    );
}

/// A session's node defaults to the agent's; the header with which a
/// client agent names its own node over the server RPC port means nothing
/// from an HTTP client (it could otherwise create sessions on any node).
#[test]
fn session_node_header_from_an_http_client_is_ignored() {
    let a = Agent::dev();
    let r = a.put(
        "/v1/catalog/register",
        br#"{"Node":"other","Address":"127.0.0.9"}"#,
    );
    assert_eq!(r.status, 200);
    let r = crate::harness::request_with_headers(
        a.addr,
        "PUT",
        "/v1/session/create",
        &[("X-Muster-Agent-Node", "other")],
        b"{}",
    )
    .expect("request");
    assert_eq!(r.status, 200, "{}", r.text());
    let id = r.json()["ID"].as_str().expect("ID").to_string();
    let info = a.session_info(&id).expect("session");
    assert_eq!(
        info["Node"],
        a.get("/v1/agent/self").json()["Config"]["NodeName"]
    );
    assert_ne!(info["Node"], "other");
}

//! `PUT /v1/txn` (consul-compat.md §7.3): a successful transaction applies
//! every operation at one index and returns one result per non-delete
//! operation; any failing operation rolls the whole transaction back with a
//! 409 naming it; lock verbs follow session ownership.

use serde_json::{json, Value};

use crate::harness::{Agent, Response};

/// `PUT /v1/txn` with `ops`.
fn txn(agent: &Agent, ops: &Value) -> Response {
    agent.put("/v1/txn", ops.to_string().as_bytes())
}

/// The `KV` result for `key` in a 200 answer.
fn kv_result<'a>(results: &'a [Value], key: &str) -> Option<&'a Value> {
    results.iter().map(|r| &r["KV"]).find(|kv| kv["Key"] == key)
}

#[test]
fn txn_applies_every_operation_at_one_index() {
    let agent = Agent::dev().wait_node_registered();
    assert!(agent.kv_put("txn/existing", b"old"));
    assert!(agent.kv_put("txn/gone", b"x"));
    let old = agent.kv_get("txn/existing").expect("exists");

    let resp = txn(
        &agent,
        &json!([
            {"KV": {"Verb": "set", "Key": "txn/a", "Value": "YQ==", "Flags": 3}},
            {"KV": {"Verb": "cas", "Key": "txn/existing", "Value": "bmV3", "Index": old.modify_index}},
            {"KV": {"Verb": "delete", "Key": "txn/gone"}},
            {"KV": {"Verb": "get", "Key": "txn/existing"}},
            {"KV": {"Verb": "check-not-exists", "Key": "txn/nope"}}
        ]),
    );
    assert_eq!(resp.status, 200, "{}", resp.text());
    let body = resp.json();
    assert_eq!(body["Errors"], Value::Null, "{body}");
    let results = body["Results"].as_array().expect("Results is a list");

    let set = kv_result(results, "txn/a").expect("a result for the set");
    assert_eq!(set["Value"], Value::Null, "writes return no value: {set}");
    assert_eq!(set["Flags"], 3);
    let cas = results
        .iter()
        .map(|r| &r["KV"])
        .find(|kv| kv["Key"] == "txn/existing" && kv["Value"].is_null())
        .expect("a result for the cas");
    let get = results
        .iter()
        .map(|r| &r["KV"])
        .find(|kv| kv["Key"] == "txn/existing" && kv["Value"] == "bmV3")
        .expect("the get sees the cas before it");
    assert!(
        kv_result(results, "txn/gone").is_none(),
        "deletes have no result: {body}"
    );
    let index = set["ModifyIndex"].as_u64().expect("ModifyIndex");
    assert!(index > old.modify_index);
    assert_eq!(cas["ModifyIndex"], index, "one transaction, one index");
    assert_eq!(get["ModifyIndex"], index);
    assert_eq!(cas["CreateIndex"], old.create_index);

    let a = agent.kv_get("txn/a").expect("set applied");
    assert_eq!((a.value.as_slice(), a.flags), (&b"a"[..], 3));
    assert_eq!(agent.kv_get("txn/existing").expect("exists").value, b"new");
    assert!(agent.kv_get("txn/gone").is_none(), "delete applied");
}

#[test]
fn txn_rolls_back_everything_on_a_failed_operation() {
    let agent = Agent::dev().wait_node_registered();
    assert!(agent.kv_put("txn/keep", b"v"));
    let keep = agent.kv_get("txn/keep").expect("exists");
    let table_index = agent.get("/v1/kv/txn/absent").index();

    let resp = txn(
        &agent,
        &json!([
            {"KV": {"Verb": "set", "Key": "txn/new", "Value": "eA=="}},
            {"KV": {"Verb": "delete", "Key": "txn/keep"}},
            {"KV": {"Verb": "cas", "Key": "txn/keep", "Value": "eQ==", "Index": keep.modify_index + 1000}}
        ]),
    );
    assert_eq!(resp.status, 409, "{}", resp.text());
    let body = resp.json();
    assert_eq!(body["Results"], Value::Null, "{body}");
    let errors = body["Errors"].as_array().expect("Errors is a list");
    assert_eq!(errors.len(), 1, "{body}");
    assert_eq!(errors[0]["OpIndex"], 2, "the cas failed: {body}");
    assert!(
        errors[0]["What"].as_str().is_some_and(|w| !w.is_empty()),
        "{body}"
    );

    assert!(agent.kv_get("txn/new").is_none(), "the set was rolled back");
    assert_eq!(
        agent.kv_get("txn/keep").as_ref(),
        Some(&keep),
        "the delete was rolled back"
    );
    assert_eq!(
        agent.get("/v1/kv/txn/absent").index(),
        table_index,
        "a rolled-back transaction writes nothing, not even an index"
    );

    // A read-only transaction fails the same way.
    let resp = txn(
        &agent,
        &json!([{"KV": {"Verb": "get", "Key": "txn/missing"}}]),
    );
    assert_eq!(resp.status, 409, "{}", resp.text());
    assert_eq!(resp.json()["Errors"][0]["OpIndex"], 0);

    let resp = agent.put("/v1/txn", b"[{");
    assert_eq!(resp.status, 400);
    assert!(
        resp.text().starts_with("Failed to parse body"),
        "{}",
        resp.text()
    );
}

#[test]
fn txn_lock_verbs_follow_sessions() {
    let agent = Agent::dev().wait_node_registered();
    let s1 = agent.session_create(&json!({"LockDelay": 0}));
    let s2 = agent.session_create(&json!({"LockDelay": 0}));

    let resp = txn(
        &agent,
        &json!([
            {"KV": {"Verb": "lock", "Key": "txn/lock", "Value": "MQ==", "Session": s1}},
            {"KV": {"Verb": "check-session", "Key": "txn/lock", "Session": s1}}
        ]),
    );
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(agent.kv_holder("txn/lock").as_deref(), Some(s1.as_str()));
    assert_eq!(agent.kv_get("txn/lock").expect("exists").lock_index, 1);

    // Another session's lock fails, and takes the set before it down too.
    let resp = txn(
        &agent,
        &json!([
            {"KV": {"Verb": "set", "Key": "txn/side", "Value": "eA=="}},
            {"KV": {"Verb": "lock", "Key": "txn/lock", "Value": "Mg==", "Session": s2}}
        ]),
    );
    assert_eq!(resp.status, 409, "{}", resp.text());
    assert_eq!(resp.json()["Errors"][0]["OpIndex"], 1);
    assert!(agent.kv_get("txn/side").is_none());
    assert_eq!(agent.kv_get("txn/lock").expect("exists").value, b"1");

    let resp = txn(
        &agent,
        &json!([{"KV": {"Verb": "unlock", "Key": "txn/lock", "Value": "MQ==", "Session": s1}}]),
    );
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(agent.kv_holder("txn/lock"), None);
    assert!(agent.kv_acquire("txn/lock", &s2, b"2"));
}

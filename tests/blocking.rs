//! Blocking reads (`?index=&wait=`, consul-compat.md §1.1) and the index
//! rules across restarts (§1.2): woken by a relevant write, not by an
//! unrelated one, timing out with the same index, never going backwards.

use std::thread;
use std::time::{Duration, Instant};

use crate::harness::{request, Agent};

/// PUT `key` = `value` on `agent.addr` after `delay`, from another thread.
fn put_later(agent: &Agent, key: &str, value: &str, delay: Duration) -> thread::JoinHandle<()> {
    let addr = agent.addr;
    let path = format!("/v1/kv/{key}");
    let value = value.to_string();
    thread::spawn(move || {
        thread::sleep(delay);
        let resp = request(addr, "PUT", &path, value.as_bytes()).expect("delayed PUT");
        assert_eq!(resp.status, 200, "delayed PUT: {}", resp.text());
    })
}

#[test]
fn blocking_get_returns_promptly_after_a_write() {
    let agent = Agent::dev();
    assert!(agent.kv_put("watched", b"v1"));
    let index = agent.get("/v1/kv/watched").index();

    let writer = put_later(&agent, "watched", "v2", Duration::from_millis(500));
    let start = Instant::now();
    let resp = agent.get(&format!("/v1/kv/watched?index={index}&wait=30s"));
    let took = start.elapsed();
    writer.join().expect("writer");

    assert_eq!(resp.status, 200);
    assert!(
        took < Duration::from_millis(2500),
        "woken {took:?} after the query started; the write came at 500 ms"
    );
    assert!(resp.index() > index, "{} > {index}", resp.index());
    let pairs = resp.kv_pairs();
    assert_eq!(pairs[0].value, b"v2");
    assert_eq!(pairs[0].modify_index, resp.index());
}

#[test]
fn blocking_get_times_out_with_the_same_index() {
    let agent = Agent::dev();
    assert!(agent.kv_put("quiet", b"v"));
    let index = agent.get("/v1/kv/quiet").index();

    let start = Instant::now();
    let resp = agent.get(&format!("/v1/kv/quiet?index={index}&wait=1s"));
    let took = start.elapsed();

    assert_eq!(resp.status, 200, "a timeout is not an error");
    assert!(
        took >= Duration::from_secs(1),
        "returned after {took:?} < wait"
    );
    assert!(took < Duration::from_secs(3), "returned after {took:?}");
    assert_eq!(resp.index(), index);
    assert_eq!(resp.kv_pairs()[0].value, b"v");
}

#[test]
fn blocking_recurse_wakes_for_its_prefix_only() {
    let agent = Agent::dev();
    assert!(agent.kv_put("svc/a", b"1"));
    let index = agent.get("/v1/kv/svc/?recurse").index();

    // A write elsewhere must not end the wait with a changed result.
    let unrelated = put_later(&agent, "elsewhere/x", "1", Duration::from_millis(300));
    let start = Instant::now();
    let resp = agent.get(&format!("/v1/kv/svc/?recurse&index={index}&wait=2s"));
    let took = start.elapsed();
    unrelated.join().expect("writer");
    assert_eq!(resp.status, 200);
    assert!(
        took >= Duration::from_secs(2),
        "an unrelated write ended the wait after {took:?}"
    );
    assert_eq!(resp.index(), index, "the prefix's index did not move");

    // A write under the prefix wakes it.
    let related = put_later(&agent, "svc/b", "2", Duration::from_millis(300));
    let start = Instant::now();
    let resp = agent.get(&format!("/v1/kv/svc/?recurse&index={index}&wait=30s"));
    let took = start.elapsed();
    related.join().expect("writer");
    assert!(took < Duration::from_millis(2300), "woken after {took:?}");
    assert!(resp.index() > index);
    let keys: Vec<String> = resp.kv_pairs().into_iter().map(|p| p.key).collect();
    assert_eq!(keys, ["svc/a", "svc/b"]);
}

#[test]
fn index_never_goes_backwards_across_a_restart() {
    let mut agent = Agent::durable();
    for i in 0..20 {
        assert!(agent.kv_put(&format!("mono/{i}"), b"v"));
    }
    assert!(agent.delete("/v1/kv/mono/19").bool());
    let key_index = agent.get("/v1/kv/mono/3").index();
    let prefix_index = agent.get("/v1/kv/mono/?recurse").index();
    let table_index = agent.get("/v1/kv/absent").index();
    assert!(prefix_index >= key_index);
    assert!(
        table_index >= prefix_index,
        "the delete counts in the table index"
    );

    agent.restart();

    let key_after = agent.get("/v1/kv/mono/3");
    assert_eq!(key_after.status, 200);
    assert_eq!(
        key_after.index(),
        key_index,
        "a key's index is its ModifyIndex"
    );
    let prefix_after = agent.get("/v1/kv/mono/?recurse").index();
    assert!(
        prefix_after >= prefix_index,
        "{prefix_after} < {prefix_index}"
    );
    let table_after = agent.get("/v1/kv/absent").index();
    assert!(table_after >= table_index, "{table_after} < {table_index}");
    assert!(agent.kv_get("mono/19").is_none(), "the delete survived");

    assert!(agent.kv_put("mono/new", b"v"));
    let new_index = agent.kv_get("mono/new").expect("exists").modify_index;
    assert!(new_index > table_index, "{new_index} <= {table_index}");
    assert!(agent.get("/v1/kv/mono/?recurse").index() >= new_index);
}

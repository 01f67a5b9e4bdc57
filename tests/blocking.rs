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

/// Run `action` on another thread `delay` after a blocking GET of `path`
/// (whose result has index `index`) starts; return the GET's response and
/// how long after the action's end it returned.
fn woken_by(
    agent: &Agent,
    path: &str,
    index: u64,
    delay: Duration,
    action: impl FnOnce(std::net::SocketAddr) + Send + 'static,
) -> (crate::harness::Response, Duration) {
    let addr = agent.addr;
    let acted = thread::spawn(move || {
        thread::sleep(delay);
        action(addr);
        Instant::now()
    });
    let sep = if path.contains('?') { '&' } else { '?' };
    let resp = agent.get(&format!("{path}{sep}index={index}&wait=20s"));
    let returned = Instant::now();
    let acted_at = acted.join().expect("action");
    (resp, returned.saturating_duration_since(acted_at))
}

/// Regression (issue 14): a blocking read wakes as soon as what it saw is
/// gone: a deleted key (404, higher index), the last instance of a service
/// deregistered (`[]`), a destroyed session (`[]`), each within 100 ms.
#[test]
fn issue_14_blocking_reads_wake_when_what_they_saw_is_removed() {
    const BOUND: Duration = Duration::from_millis(100);
    let delay = Duration::from_millis(300);
    let agent = Agent::dev().wait_node_registered();

    assert!(agent.kv_put("gone/key", b"v"));
    let index = agent.get("/v1/kv/gone/key").index();
    let (resp, after) = woken_by(&agent, "/v1/kv/gone/key", index, delay, |addr| {
        let r = request(addr, "DELETE", "/v1/kv/gone/key", b"").expect("DELETE");
        assert_eq!(r.status, 200);
    });
    assert_eq!(resp.status, 404, "{}", resp.text());
    assert!(resp.index() > index, "{} > {index}", resp.index());
    assert!(after < BOUND, "kv: returned {after:?} after the delete");

    let node = agent.ready_field("node").to_string();
    let reg = serde_json::json!({
        "Node": node, "Address": "127.0.0.1",
        "Service": {"ID": "only-1", "Service": "only", "Port": 80}
    });
    let r = agent.put("/v1/catalog/register", reg.to_string().as_bytes());
    assert_eq!(r.status, 200, "{}", r.text());
    for path in ["/v1/health/service/only", "/v1/catalog/service/only"] {
        let index = agent.get(path).index();
        let dereg = serde_json::json!({"Node": node, "ServiceID": "only-1"}).to_string();
        let (resp, after) = woken_by(&agent, path, index, delay, move |addr| {
            let r = request(addr, "PUT", "/v1/catalog/deregister", dereg.as_bytes())
                .expect("deregister");
            assert_eq!(r.status, 200);
        });
        assert_eq!(resp.status, 200);
        assert_eq!(resp.json(), serde_json::json!([]), "{path}");
        assert!(resp.index() > index, "{path}: {} > {index}", resp.index());
        assert!(
            after < BOUND,
            "{path}: returned {after:?} after the deregister"
        );
        let r = agent.put("/v1/catalog/register", reg.to_string().as_bytes());
        assert_eq!(r.status, 200, "{}", r.text());
    }

    let id = agent.session_create(&serde_json::json!({"Name": "s"}));
    let info = format!("/v1/session/info/{id}");
    let index = agent.get(&info).index();
    let destroy = format!("/v1/session/destroy/{id}");
    let (resp, after) = woken_by(&agent, &info, index, delay, move |addr| {
        let r = request(addr, "PUT", &destroy, b"").expect("destroy");
        assert_eq!(r.status, 200);
    });
    assert_eq!(resp.status, 200);
    assert_eq!(resp.json(), serde_json::json!([]));
    assert!(resp.index() > index);
    assert!(
        after < BOUND,
        "session: returned {after:?} after the destroy"
    );
}

//! `/v1/kv/*` against a real agent: values, flags, cas, listings, deletes,
//! limits, errors and the read headers (consul-compat.md §0.5, §7.1).

use std::sync::{Arc, Barrier};
use std::thread;

use crate::harness::{request, Agent};

#[test]
fn kv_binary_values_round_trip_byte_for_byte() {
    let agent = Agent::dev();
    let all: Vec<u8> = (0..=255u8).collect();
    assert!(agent.kv_put("bin/all", &all));

    let raw = agent.get("/v1/kv/bin/all?raw");
    assert_eq!(raw.status, 200);
    assert_eq!(raw.body, all, "?raw returns the exact bytes");
    assert!(
        raw.header("Content-Type")
            .is_some_and(|v| v.starts_with("text/plain")),
        "raw content type: {:?}",
        raw.header("Content-Type")
    );
    assert_eq!(raw.header("X-Content-Type-Options"), Some("nosniff"));

    let pair = agent.kv_get("bin/all").expect("key exists");
    assert_eq!(pair.key, "bin/all");
    assert_eq!(pair.value, all, "JSON Value is the base64 of the bytes");

    // An empty value is `null` in JSON and an empty raw body.
    assert!(agent.kv_put("bin/empty", b""));
    let empty = agent.kv_get("bin/empty").expect("key exists");
    assert!(empty.value_was_null, "empty Value serialises as null");
    assert!(agent.get("/v1/kv/bin/empty?raw").body.is_empty());
}

#[test]
fn kv_flags_round_trip_and_put_without_flags_resets_them() {
    let agent = Agent::dev();
    assert!(agent.kv_put("f?flags=42", b"v"));
    assert_eq!(agent.kv_get("f").expect("exists").flags, 42);

    assert!(agent.kv_put(&format!("f?flags={}", u64::MAX), b"v"));
    assert_eq!(agent.kv_get("f").expect("exists").flags, u64::MAX);

    assert!(agent.kv_put("f", b"v2"));
    let pair = agent.kv_get("f").expect("exists");
    assert_eq!(pair.flags, 0, "PUT without flags resets them to 0");
    assert_eq!(pair.value, b"v2");
}

#[test]
fn kv_cas_zero_only_creates() {
    let agent = Agent::dev();
    assert!(
        agent.kv_put("c?cas=0", b"first"),
        "cas=0 creates an absent key"
    );
    assert!(
        !agent.kv_put("c?cas=0", b"second"),
        "cas=0 fails if the key exists"
    );
    let pair = agent.kv_get("c").expect("exists");
    assert_eq!(pair.value, b"first");
    assert_eq!(pair.create_index, pair.modify_index);
}

#[test]
fn kv_cas_race_has_exactly_one_winner() {
    const WRITERS: usize = 8;
    let agent = Agent::dev();
    assert!(agent.kv_put("race", b"start"));
    let index = agent.kv_get("race").expect("exists").modify_index;

    let barrier = Arc::new(Barrier::new(WRITERS));
    let addr = agent.addr;
    let handles: Vec<_> = (0..WRITERS)
        .map(|i| {
            let barrier = Arc::clone(&barrier);
            thread::spawn(move || {
                barrier.wait();
                let resp = request(
                    addr,
                    "PUT",
                    &format!("/v1/kv/race?cas={index}"),
                    format!("writer-{i}").as_bytes(),
                )
                .expect("cas PUT");
                assert_eq!(resp.status, 200, "{}", resp.text());
                (i, resp.bool())
            })
        })
        .collect();
    let results: Vec<(usize, bool)> = handles
        .into_iter()
        .map(|h| h.join().expect("writer thread"))
        .collect();
    let winners: Vec<usize> = results
        .iter()
        .filter(|(_, ok)| *ok)
        .map(|(i, _)| *i)
        .collect();
    assert_eq!(
        winners.len(),
        1,
        "exactly one cas={index} writer wins: {results:?}"
    );

    let pair = agent.kv_get("race").expect("exists");
    assert_eq!(pair.value, format!("writer-{}", winners[0]).into_bytes());
    assert!(pair.modify_index > index);
    assert!(
        !agent.kv_put(&format!("race?cas={index}"), b"late"),
        "a stale index loses"
    );
    assert!(agent.kv_put(&format!("race?cas={}", pair.modify_index), b"next"));
}

#[test]
fn kv_recurse_lists_the_prefix_sorted_by_key() {
    let agent = Agent::dev();
    for key in ["app/b", "app/a", "app/c/d", "apple", "other"] {
        assert!(agent.kv_put(key, key.as_bytes()));
    }
    let keys_of = |path: &str| -> Vec<String> {
        let resp = agent.get(path);
        assert_eq!(resp.status, 200, "GET {path}");
        resp.kv_pairs().into_iter().map(|p| p.key).collect()
    };
    assert_eq!(
        keys_of("/v1/kv/app/?recurse"),
        ["app/a", "app/b", "app/c/d"]
    );
    assert_eq!(
        keys_of("/v1/kv/app?recurse"),
        ["app/a", "app/b", "app/c/d", "apple"],
        "the prefix is a plain string prefix"
    );
    assert_eq!(
        keys_of("/v1/kv/?recurse"),
        ["app/a", "app/b", "app/c/d", "apple", "other"],
        "the empty prefix lists everything"
    );
    let values: Vec<Vec<u8>> = agent
        .get("/v1/kv/app/?recurse")
        .kv_pairs()
        .into_iter()
        .map(|p| p.value)
        .collect();
    assert_eq!(
        values,
        [b"app/a".to_vec(), b"app/b".to_vec(), b"app/c/d".to_vec()]
    );
    assert_eq!(agent.get("/v1/kv/nothing/?recurse").status, 404);
}

#[test]
fn kv_keys_with_and_without_separator() {
    let agent = Agent::dev();
    for key in ["a/b/c", "a/b/d", "a/e", "a/f/g", "b"] {
        assert!(agent.kv_put(key, b"x"));
    }
    let keys = |path: &str| -> Vec<String> {
        let resp = agent.get(path);
        assert_eq!(resp.status, 200, "GET {path}: {}", resp.text());
        resp.strings()
    };
    assert_eq!(keys("/v1/kv/a/?keys"), ["a/b/c", "a/b/d", "a/e", "a/f/g"]);
    assert_eq!(keys("/v1/kv/a/?keys&separator=/"), ["a/b/", "a/e", "a/f/"]);
    assert_eq!(keys("/v1/kv/?keys&separator=/"), ["a/", "b"]);
    assert_eq!(
        keys("/v1/kv/?keys"),
        ["a/b/c", "a/b/d", "a/e", "a/f/g", "b"]
    );
    assert_eq!(agent.get("/v1/kv/zzz/?keys").status, 404);
}

#[test]
fn kv_delete_recurse_removes_exactly_the_prefix() {
    let agent = Agent::dev();
    for key in ["x/1", "x/2", "x/3/4", "xy"] {
        assert!(agent.kv_put(key, b"v"));
    }
    let resp = agent.delete("/v1/kv/x/?recurse");
    assert_eq!(resp.status, 200);
    assert!(resp.bool());
    assert_eq!(agent.get("/v1/kv/x/?recurse").status, 404);
    assert!(
        agent.kv_get("xy").is_some(),
        "keys outside the prefix survive"
    );

    let plain = agent.delete("/v1/kv/xy");
    assert!(plain.bool());
    assert!(agent.kv_get("xy").is_none());
    assert!(
        agent.delete("/v1/kv/xy").bool(),
        "deleting an absent key is true"
    );
}

#[test]
fn kv_delete_cas_needs_the_current_index() {
    let agent = Agent::dev();
    assert!(agent.kv_put("d", b"v"));
    let index = agent.kv_get("d").expect("exists").modify_index;

    assert!(!agent
        .delete(&format!("/v1/kv/d?cas={}", index + 1000))
        .bool());
    assert!(
        !agent.delete("/v1/kv/d?cas=0").bool(),
        "cas=0 on an existing key fails"
    );
    assert!(
        agent.kv_get("d").is_some(),
        "failed cas deletes keep the key"
    );

    assert!(agent.delete(&format!("/v1/kv/d?cas={index}")).bool());
    assert!(agent.kv_get("d").is_none());
    assert!(
        agent.delete("/v1/kv/d?cas=5").bool(),
        "cas delete of an absent key is true"
    );
}

#[test]
fn kv_missing_key_is_404_with_an_index() {
    let agent = Agent::dev();
    let empty = agent.get("/v1/kv/missing");
    assert_eq!(empty.status, 404);
    assert!(
        empty.body.is_empty(),
        "404 body is empty: {:?}",
        empty.text()
    );
    assert!(empty.index() >= 1, "X-Consul-Index is never 0");

    assert!(agent.kv_put("present", b"v"));
    let written = agent.kv_get("present").expect("exists").modify_index;
    let missing = agent.get("/v1/kv/missing");
    assert_eq!(missing.status, 404);
    assert!(
        missing.index() >= written,
        "a 404 carries the KV table index ({} < {written})",
        missing.index()
    );
    assert_eq!(missing.header("X-Consul-KnownLeader"), Some("true"));
}

#[test]
fn kv_values_over_512_kib_are_413() {
    let agent = Agent::dev();
    let max = vec![b'm'; 512 * 1024];
    assert!(agent.kv_put("big", &max), "exactly 512 KiB is accepted");
    assert_eq!(agent.get("/v1/kv/big?raw").body.len(), max.len());

    let resp = agent.put("/v1/kv/big", &vec![b'n'; 512 * 1024 + 1]);
    assert_eq!(resp.status, 413, "{}", resp.text());
    assert_eq!(
        agent.get("/v1/kv/big?raw").body,
        max,
        "a rejected write changes nothing"
    );
}

#[test]
fn kv_conflicting_flags_are_400() {
    let agent = Agent::dev();
    let resp = agent.put("/v1/kv/k?cas=0&acquire=abc", b"v");
    assert_eq!(resp.status, 400, "{}", resp.text());
    assert!(resp.text().contains("Conflicting flags"), "{}", resp.text());
    assert!(agent.kv_get("k").is_none());

    let resp = agent.delete("/v1/kv/k?recurse&cas=1");
    assert_eq!(resp.status, 400, "{}", resp.text());
}

#[test]
fn kv_wrong_method_is_405() {
    let agent = Agent::dev();
    let resp = agent.request("POST", "/v1/kv/k", b"v");
    assert_eq!(resp.status, 405, "{}", resp.text());
    let allow = resp.header("Allow").unwrap_or_default();
    for method in ["GET", "PUT", "DELETE"] {
        assert!(allow.contains(method), "Allow {allow:?} lacks {method}");
    }
    assert!(
        agent.kv_get("k").is_none(),
        "a rejected POST writes nothing"
    );
}

#[test]
fn kv_reads_carry_consul_headers_and_the_key_index() {
    let agent = Agent::dev();
    assert!(agent.kv_put("h/a", b"1"));
    assert!(agent.kv_put("h/b", b"2"));
    let a = agent.kv_get("h/a").expect("exists");
    let b = agent.kv_get("h/b").expect("exists");
    assert!(b.modify_index > a.modify_index);

    for path in [
        "/v1/kv/h/a",
        "/v1/kv/h/?recurse",
        "/v1/kv/h/?keys",
        "/v1/kv/none",
    ] {
        let resp = agent.get(path);
        assert!(resp.index() >= 1, "{path}");
        assert_eq!(resp.header("X-Consul-KnownLeader"), Some("true"), "{path}");
        let contact = resp
            .header("X-Consul-LastContact")
            .unwrap_or_else(|| panic!("{path}: no X-Consul-LastContact"));
        assert!(
            contact.parse::<u64>().is_ok(),
            "{path}: LastContact {contact:?}"
        );
    }
    assert_eq!(
        agent.get("/v1/kv/h/a").index(),
        a.modify_index,
        "a single key's index is its own ModifyIndex, not the table's"
    );
    assert_eq!(agent.get("/v1/kv/h/?recurse").index(), b.modify_index);
}

/// A server that never formed a cluster holds a write for
/// `performance.rpc_hold_timeout` (here 300 ms, Consul's default is 7 s)
/// waiting for a leader, then answers 500 `No cluster leader`.
#[test]
fn kv_write_without_a_leader_fails_after_rpc_hold_timeout() {
    let agent = Agent::start_with_config(
        &["-server"],
        true,
        r#"{"performance": {"rpc_hold_timeout": "300ms"}}"#,
    );
    let start = std::time::Instant::now();
    let resp = agent.put("/v1/kv/held", b"v");
    let took = start.elapsed();
    assert_eq!(
        (resp.status, resp.text().as_str()),
        (500, "No cluster leader")
    );
    assert!(
        took >= std::time::Duration::from_millis(300),
        "answered after {took:?}, before the hold ran out"
    );
    assert!(
        took < std::time::Duration::from_secs(5),
        "answered after {took:?}: the configured hold was not used"
    );
}

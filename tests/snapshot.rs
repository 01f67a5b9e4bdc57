//! Snapshots through the binary (issue 17): `muster snapshot save` on one
//! server and `restore` into a fresh three-server cluster (every key,
//! service, check and session identical, field by field, on every server);
//! a restore into a running server wakes blocking queries with a higher
//! index; damaged archives are refused with nothing changed; `inspect`
//! prints Consul's layout; `agent -restore` seeds a new server once.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::cluster::start_server;
use crate::harness::{muster, request, wait_until, Agent};

fn run(args: &[&str]) -> std::process::Output {
    muster().args(args).output().expect("run muster")
}

fn put_json(a: &Agent, path: &str, body: Value) {
    let r = a.put(path, body.to_string().as_bytes());
    assert_eq!(r.status, 200, "PUT {path}: {}", r.text());
}

/// State a client can tell apart: KV (binary values, flags, a lock and a
/// delete), two external nodes with services and checks, a session.
fn fill(a: &Agent) -> String {
    for i in 0..40 {
        assert!(a.kv_put(&format!("app/{i:02}?flags={i}"), format!("v{i}").as_bytes()));
    }
    assert!(a.kv_put("bin", &[0, 159, 255, 10]));
    assert!(a.kv_put("gone", b"x"));
    assert_eq!(a.delete("/v1/kv/gone").status, 200);
    for (node, svc, status) in [("ext-1", "web", "passing"), ("ext-2", "db", "critical")] {
        put_json(
            a,
            "/v1/catalog/register",
            json!({"Node": node, "Address": "10.1.0.1", "NodeMeta": {"rack": "r1"},
                   "Service": {"ID": format!("{svc}-1"), "Service": svc, "Port": 8080, "Tags": ["t1"]},
                   "Check": {"CheckID": format!("{svc}-alive"), "Name": "alive", "Status": status,
                             "ServiceID": format!("{svc}-1"), "Output": "out"}}),
        );
    }
    let created = a.put(
        "/v1/session/create",
        br#"{"Name": "lock", "Node": "ext-1", "NodeChecks": [], "LockDelay": "7s"}"#,
    );
    let id = created.json()["ID"].as_str().expect("session").to_string();
    assert!(a.kv_acquire("locked", &id, b"holder"));
    id
}

/// What must come back identical: every KV entry, the external nodes'
/// catalog entries and checks, the session.
fn restorable(a: &Agent, session: &str, stale: bool) -> Value {
    let q = if stale { "?stale" } else { "" };
    let sep = if stale { "&" } else { "?" };
    json!({
        "kv": a.get(&format!("/v1/kv/{q}{sep}recurse")).json(),
        "web": a.get(&format!("/v1/catalog/service/web{q}")).json(),
        "db": a.get(&format!("/v1/health/service/db{q}")).json(),
        "ext-1": a.get(&format!("/v1/catalog/node/ext-1{q}")).json(),
        "session": a.get(&format!("/v1/session/info/{session}{q}")).json(),
    })
}

fn save(a: &Agent, file: &Path) -> String {
    let out = run(&[
        "snapshot",
        "save",
        "-http-addr",
        &a.addr.to_string(),
        file.to_str().expect("utf-8"),
    ]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

fn restore(a: &Agent, file: &Path) -> std::process::Output {
    run(&[
        "snapshot",
        "restore",
        "-http-addr",
        &a.addr.to_string(),
        file.to_str().expect("utf-8"),
    ])
}

#[test]
fn snapshot_saved_on_one_server_restores_identically_into_a_fresh_cluster() {
    let source = Agent::durable();
    let session = fill(&source);
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("backup.snap");
    let said = save(&source, &file);
    assert!(
        said.starts_with("Saved and verified snapshot to index "),
        "{said}"
    );
    assert!(!dir.path().join("backup.snap.tmp").exists());
    let want = restorable(&source, &session, false);
    assert_eq!(want["kv"].as_array().map(Vec::len), Some(42), "{want}");
    assert_eq!(want["web"][0]["ServiceID"], "web-1", "{want}");
    assert_eq!(want["session"][0]["ID"], session.as_str(), "{want}");

    let config = r#"{"autopilot": {"server_stabilization_time": "1s"}}"#;
    let s1 = start_server("s1", None, config);
    let s2 = start_server("s2", Some(&s1), config);
    let s3 = start_server("s3", Some(&s1), config);
    let servers = [s1, s2, s3];
    wait_until("a leader", Duration::from_secs(30), || {
        servers.iter().all(|s| s.leader().is_some())
    });
    // Restored through whichever server is asked (here the last one).
    let out = restore(&servers[2], &file);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "Restored snapshot"
    );
    for s in &servers {
        wait_until("restored everywhere", Duration::from_secs(20), || {
            restorable(s, &session, true) == want
        });
    }
    // And it is the cluster's state: the lock holds, a write follows.
    assert_eq!(
        servers[0].kv_holder("locked").as_deref(),
        Some(session.as_str())
    );
    let before = servers[0].get("/v1/kv/app/01").index();
    assert!(servers[0].kv_put("after", b"restore"));
    let after = servers[0].get("/v1/kv/after").index();
    assert!(after > before, "{after} > {before}");
}

#[test]
fn a_restore_wakes_blocking_queries_with_a_higher_index() {
    let a = Agent::durable();
    assert!(a.kv_put("k", b"old"));
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("old.snap");
    save(&a, &file);
    for i in 0..20 {
        assert!(a.kv_put(&format!("later/{i}"), b"x"));
    }
    assert!(a.kv_put("k", b"new"));
    let index = a.get("/v1/kv/k").index();
    let addr = a.addr;
    let blocked = std::thread::spawn(move || {
        let start = Instant::now();
        let r = request(
            addr,
            "GET",
            &format!("/v1/kv/k?index={index}&wait=60s"),
            b"",
        )
        .expect("reply");
        (r, start.elapsed())
    });
    let prefix = std::thread::spawn(move || {
        request(
            addr,
            "GET",
            &format!("/v1/kv/later/?recurse&index={index}&wait=60s"),
            b"",
        )
        .expect("reply")
    });
    std::thread::sleep(Duration::from_millis(300));
    let out = restore(&a, &file);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (woke, took) = blocked.join().expect("reader");
    assert!(took < Duration::from_secs(30), "woke after {took:?}");
    assert!(woke.index() > index, "{} > {index}", woke.index());
    assert_eq!(woke.kv_pairs()[0].value, b"old");
    let gone = prefix.join().expect("reader");
    assert_eq!(gone.status, 404, "the prefix is gone after the restore");
    assert!(gone.index() > index);
}

#[test]
fn damaged_archives_are_refused_and_nothing_changes() {
    let a = Agent::durable();
    assert!(a.kv_put("keep", b"me"));
    let dir = tempfile::tempdir().expect("tempdir");
    let good = dir.path().join("good.snap");
    save(&a, &good);
    assert!(a.kv_put("keep", b"still"));
    let bytes = std::fs::read(&good).expect("read");
    let cases = [
        ("truncated", bytes[..bytes.len() / 2].to_vec()),
        ("flipped", {
            let mut b = bytes.clone();
            let at = b.len() * 2 / 3;
            if let Some(x) = b.get_mut(at) {
                *x ^= 0x10;
            }
            b
        }),
        ("not an archive", b"hello".to_vec()),
    ];
    for (what, data) in cases {
        let bad = dir.path().join(format!("{what}.snap"));
        std::fs::write(&bad, data).expect("write");
        let out = restore(&a, &bad);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{what}: {err}");
        assert!(err.contains("Invalid snapshot"), "{what}: {err}");
        let inspect = run(&["snapshot", "inspect", bad.to_str().expect("utf-8")]);
        assert_eq!(inspect.status.code(), Some(1), "{what}");
        assert_eq!(
            a.kv_get("keep").map(|kv| kv.value),
            Some(b"still".to_vec()),
            "{what}"
        );
    }
}

#[test]
fn inspect_prints_consuls_layout_and_json() {
    let a = Agent::durable();
    fill(&a);
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("s.snap");
    save(&a, &file);
    let path = file.to_str().expect("utf-8");
    let out = run(&["snapshot", "inspect", path]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{text}");
    let lines: Vec<&str> = text.lines().collect();
    for (i, key) in ["ID", "Size", "Index", "Term", "Version"]
        .iter()
        .enumerate()
    {
        assert!(lines[i].starts_with(&format!(" {key} ")), "{text}");
    }
    let count = |kind: &str| {
        lines
            .iter()
            .find(|l| l.split_whitespace().next() == Some(kind))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|n| n.parse::<u64>().ok())
    };
    // 40 app keys, bin, locked; the deleted key is a tombstone.
    assert_eq!(count("KVS"), Some(42), "{text}");
    assert_eq!(count("Tombstone"), Some(1), "{text}");
    assert_eq!(count("Session"), Some(1), "{text}");
    assert!(count("Node").is_some_and(|n| n >= 2), "{text}");
    assert!(text.contains(" Type") && text.contains(" Total"), "{text}");
    let out = run(&["snapshot", "inspect", "-kvdetails", "-kvdepth", "1", path]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(text.contains(" Key Name"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>()
                == ["app", "40", l.split_whitespace().nth(2).unwrap_or("?")]),
        "{text}"
    );
    let out = run(&["snapshot", "inspect", "-format=json", path]);
    let doc: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert!(
        doc["Meta"]["Index"].as_u64().is_some_and(|i| i > 40),
        "{doc}"
    );
    assert!(doc["Stats"]
        .as_array()
        .is_some_and(|s| s.iter().any(|s| s["Name"] == "KVS" && s["Count"] == 42)));
}

#[test]
fn agent_restore_seeds_a_new_server_once() {
    let source = Agent::durable();
    let session = fill(&source);
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("seed.snap");
    save(&source, &file);
    let want = restorable(&source, &session, false);
    let mut seeded = Agent::start(
        &[
            "-server",
            "-bootstrap",
            "-restore",
            file.to_str().expect("utf-8"),
        ],
        true,
    );
    assert_eq!(restorable(&seeded, &session, false), want);
    assert!(seeded.log().contains("seeded the server from the snapshot"));
    // A restart keeps what was written since, and says why.
    assert!(seeded.kv_put("app/00", b"changed"));
    seeded.restart();
    assert_eq!(
        seeded.kv_get("app/00").map(|kv| kv.value),
        Some(b"changed".to_vec())
    );
    assert!(seeded.log().contains("already has state: -restore ignored"));
    // Refused where it cannot work.
    let out = run(&[
        "agent",
        "-server",
        "-bootstrap-expect",
        "3",
        "-data-dir",
        "/nonexistent",
        "-restore",
        "x",
    ]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("muster snapshot restore"));
}

#[test]
fn a_client_agent_sends_snapshot_requests_to_a_server() {
    let server = Agent::start(&["-server", "-bootstrap", "-node", "server"], true);
    let lan = format!("127.0.0.1:{}", server.flag("-serf-lan-port").expect("port"));
    let client = Agent::start(&["-node", "client", "-retry-join", &lan], true);
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("x.snap");
    let out = run(&[
        "snapshot",
        "save",
        "-http-addr",
        &client.addr.to_string(),
        file.to_str().expect("utf-8"),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("send this to a server's HTTP address"),
        "{err}"
    );
    assert!(!file.exists());
}

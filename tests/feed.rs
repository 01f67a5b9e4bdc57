//! The change feed (issue 17): `GET /v1/event-stream?index=N` streams every
//! change after N as newline-delimited JSON and follows live writes. 1,000
//! mixed writes (KV sets and deletes, a transaction, a failed CAS, catalog
//! registrations and deregistrations, check updates, sessions) come back
//! in order, each with its value, from a stream opened before them, and
//! identically after disconnecting and reconnecting from the last index
//! seen; `muster log tail` prints the same lines; after a restart an index
//! older than what the server holds is answered 410 with the oldest index.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Stdio;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{json, Value};

use crate::harness::{muster, Agent};

/// An open event stream: the status, headers and a reader of its lines.
struct Stream {
    status: u16,
    headers: Vec<(String, String)>,
    reader: BufReader<TcpStream>,
    pending: Vec<u8>,
}

impl Stream {
    fn open(addr: SocketAddr, query: &str) -> Stream {
        let mut tcp = TcpStream::connect(addr).expect("connect");
        tcp.set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        write!(
            tcp,
            "GET /v1/event-stream{query} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
        )
        .expect("send");
        let mut reader = BufReader::new(tcp);
        let mut status_line = String::new();
        reader.read_line(&mut status_line).expect("status line");
        let status = status_line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect(&status_line);
        let mut headers = Vec::new();
        loop {
            let mut l = String::new();
            reader.read_line(&mut l).expect("header");
            let l = l.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
            }
        }
        Stream {
            status,
            headers,
            reader,
            pending: Vec::new(),
        }
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The next chunk of the chunked body (`None` at its end).
    fn chunk(&mut self) -> Option<Vec<u8>> {
        let mut size = String::new();
        self.reader.read_line(&mut size).expect("chunk size");
        let n = usize::from_str_radix(size.trim(), 16).expect(&size);
        if n == 0 {
            return None;
        }
        let mut data = vec![0; n + 2];
        self.reader.read_exact(&mut data).expect("chunk");
        data.truncate(n);
        Some(data)
    }

    /// The next event.
    fn next(&mut self) -> Option<Value> {
        loop {
            if let Some(end) = self.pending.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.pending.drain(..=end).collect();
                return Some(serde_json::from_slice(&line).expect("a JSON line"));
            }
            let data = self.chunk()?;
            self.pending.extend(data);
        }
    }

    /// Events until an index at or past `index` has been read whole (its
    /// line marked `Last`).
    fn until(&mut self, index: u64) -> Vec<Value> {
        let mut out = Vec::new();
        loop {
            let e = self.next().expect("the stream ended early");
            let done = e["Last"] == true && e["Index"].as_u64() >= Some(index);
            out.push(e);
            if done {
                return out;
            }
        }
    }
}

/// What the writes must produce, in order: (topic, op, name, KV value).
type Expected = Vec<(String, String, String, Option<String>)>;

fn ok(r: crate::harness::Response, what: &str) -> crate::harness::Response {
    assert_eq!(r.status, 200, "{what}: {}", r.text());
    r
}

/// 1,000 mixed writes; returns what each must show in the feed (by key,
/// in order), and the index after the last.
fn mixed_writes(a: &Agent) -> (Expected, u64) {
    let mut expect: Expected = Vec::new();
    let mut push = |topic: &str, op: &str, name: String, value: Option<String>| {
        expect.push((topic.into(), op.into(), name, value));
    };
    let mut writes = 0;
    let mut i = 0;
    let mut session = None;
    while writes < 1000 {
        match i % 10 {
            0..=3 => {
                let key = format!("feed/k{i}");
                assert!(a.kv_put(&key, format!("v{i}").as_bytes()));
                push("KV", "set", key, Some(format!("v{i}")));
            }
            4 => {
                let key = format!("feed/k{}", i - 4);
                ok(a.delete(&format!("/v1/kv/{key}")), "delete");
                push("KV", "delete", key, None);
            }
            5 => {
                let node = format!("ext-{}", i % 40);
                ok(
                    a.put(
                        "/v1/catalog/register",
                        json!({"Node": node, "Address": "10.0.0.1", "SkipNodeUpdate": true,
                               "Service": {"ID": format!("svc-{i}"), "Service": "svc", "Port": i}})
                        .to_string()
                        .as_bytes(),
                    ),
                    "register",
                );
                push("Service", "set", format!("{node}/svc-{i}"), None);
            }
            6 => {
                let node = format!("ext-{}", (i - 1) % 40);
                ok(
                    a.put(
                        "/v1/catalog/deregister",
                        json!({"Node": node, "ServiceID": format!("svc-{}", i - 1)})
                            .to_string()
                            .as_bytes(),
                    ),
                    "deregister",
                );
                push("Service", "delete", format!("{node}/svc-{}", i - 1), None);
            }
            7 => {
                let status = if i % 20 == 7 { "critical" } else { "passing" };
                ok(
                    a.put(
                        "/v1/catalog/register",
                        json!({"Node": "ext-checks", "Address": "10.0.0.2", "SkipNodeUpdate": true,
                               "Check": {"CheckID": "c1", "Name": "c1", "Status": status}})
                        .to_string()
                        .as_bytes(),
                    ),
                    "check",
                );
                push("Check", "set", "ext-checks/c1".into(), Some(status.into()));
            }
            8 => {
                // A transaction: two sets at one index; then a failed CAS,
                // which changes nothing.
                let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
                let ops = json!([
                    {"KV": {"Verb": "set", "Key": format!("feed/t{i}a"), "Value": b64("ta")}},
                    {"KV": {"Verb": "set", "Key": format!("feed/t{i}b"), "Value": b64("tb")}},
                ]);
                ok(a.put("/v1/txn", ops.to_string().as_bytes()), "txn");
                push("KV", "set", format!("feed/t{i}a"), Some("ta".into()));
                push("KV", "set", format!("feed/t{i}b"), Some("tb".into()));
                let failed = a.put(&format!("/v1/kv/feed/t{i}a?cas=1"), b"never");
                assert_eq!(failed.text(), "false");
            }
            _ => match session.take() {
                None => {
                    let id = a.session_create(&json!({"Name": format!("s{i}")}));
                    push("Session", "set", id.clone(), None);
                    session = Some(id);
                }
                Some(id) => {
                    ok(a.put(&format!("/v1/session/destroy/{id}"), b""), "destroy");
                    push("Session", "delete", id, None);
                }
            },
        }
        writes += 1;
        i += 1;
    }
    // A last write whose index is past every other.
    assert!(a.kv_put("feed/end", b"end"));
    expect.push((
        "KV".into(),
        "set".into(),
        "feed/end".into(),
        Some("end".into()),
    ));
    let last = a.get("/v1/kv/feed/end").json()[0]["ModifyIndex"]
        .as_u64()
        .expect("ModifyIndex");
    (expect, last)
}

/// The feed's events as (topic, op, name, KV value or check status),
/// without the agent's own.
fn digest(events: &[Value]) -> Expected {
    events
        .iter()
        .filter_map(|e| {
            let s = |k: &str| e[k].as_str().unwrap_or("").to_string();
            let topic = s("Topic");
            let name = match topic.as_str() {
                "KV" => s("Key"),
                "Service" => format!("{}/{}", s("Node"), s("ServiceID")),
                "Check" => format!("{}/{}", s("Node"), s("CheckID")),
                "Session" => s("ID"),
                _ => return None,
            };
            if topic == "KV" && !name.starts_with("feed/")
                || topic == "Check" && !name.starts_with("ext-")
                || topic == "Service" && !name.starts_with("ext-")
            {
                return None;
            }
            let value = match topic.as_str() {
                "KV" => e["Value"]["Value"].as_str().map(|v| {
                    let bytes = base64::engine::general_purpose::STANDARD
                        .decode(v)
                        .expect("base64");
                    String::from_utf8(bytes).expect("utf8")
                }),
                "Check" => e["Value"]["Status"].as_str().map(str::to_string),
                _ => None,
            };
            Some((topic, s("Op"), name, value))
        })
        .collect()
}

fn assert_ordered(events: &[Value]) {
    let indexes: Vec<u64> = events.iter().filter_map(|e| e["Index"].as_u64()).collect();
    assert_eq!(indexes.len(), events.len(), "every event has an Index");
    assert!(
        indexes.windows(2).all(|w| w[0] <= w[1]),
        "indexes go back: {indexes:?}"
    );
}

#[test]
fn event_stream_replays_and_follows_a_thousand_mixed_writes() {
    // A fixed HTTP port: `log tail` reconnects to it after the restart.
    let port = crate::harness::free_port().to_string();
    let mut a =
        Agent::start(&["-server", "-bootstrap", "-http-port", &port], true).wait_node_registered();
    let start = a.get("/v1/catalog/nodes").index();
    // A stream opened before the writes follows them live.
    let mut live = Stream::open(a.addr, &format!("?index={start}"));
    assert_eq!(live.status, 200);
    assert_eq!(live.header("content-type"), Some("application/x-ndjson"));
    let mut kv_only = Stream::open(a.addr, &format!("?index={start}&topic=KV&prefix=feed/t"));
    let started = Instant::now();
    let (expected, last) = mixed_writes(&a);
    println!("1,000 writes in {:?}, last index {last}", started.elapsed());

    let seen = live.until(last);
    assert_ordered(&seen);
    assert_eq!(digest(&seen), expected);
    // Each KV value is the full KVPair, as /v1/kv returns it.
    let first_kv = seen
        .iter()
        .find(|e| e["Topic"] == "KV")
        .expect("a KV event");
    assert_eq!(first_kv["Value"]["Key"], first_kv["Key"]);
    assert_eq!(first_kv["Value"]["ModifyIndex"], first_kv["Index"]);
    let service = seen
        .iter()
        .find(|e| e["Topic"] == "Service")
        .expect("a service event");
    assert_eq!(service["Value"]["Service"], "svc");

    // The filter: only the transactions' KV keys.
    let txn_keys: Vec<&String> = expected
        .iter()
        .filter(|e| e.2.starts_with("feed/t"))
        .map(|e| &e.2)
        .collect();
    let filtered: Vec<Value> = (0..txn_keys.len())
        .map(|_| kv_only.next().expect("a filtered event"))
        .collect();
    assert!(filtered
        .iter()
        .all(|e| e["Topic"] == "KV" && e["Op"] == "set"));
    let keys: Vec<&str> = filtered.iter().filter_map(|e| e["Key"].as_str()).collect();
    assert_eq!(keys, txn_keys);

    // Read again from the start, disconnecting halfway and reconnecting
    // from the last index seen: the same events, none twice.
    let mut first = Stream::open(a.addr, &format!("?index={start}"));
    let mut again = Vec::new();
    let half = seen[seen.len() / 2]["Index"].as_u64().expect("index");
    again.extend(first.until(half));
    drop(first);
    let resume = again
        .last()
        .and_then(|e| e["Index"].as_u64())
        .expect("index");
    let mut second = Stream::open(a.addr, &format!("?index={resume}"));
    again.extend(second.until(last));
    assert_eq!(again, seen);

    // `muster log tail -format json` prints the same lines.
    let mut tail = muster()
        .args([
            "log",
            "tail",
            "-http-addr",
            &a.addr.to_string(),
            "-format",
            "json",
        ])
        .args(["-index", &start.to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .expect("run muster log tail");
    let mut lines = BufReader::new(tail.stdout.take().expect("stdout")).lines();
    let mut tailed = Vec::new();
    while tailed
        .last()
        .is_none_or(|e: &Value| e["Last"] != true || e["Index"].as_u64() < Some(last))
    {
        let line = lines.next().expect("tail ended early").expect("line");
        tailed.push(serde_json::from_str::<Value>(&line).expect("JSON"));
    }
    assert_eq!(tailed, seen);

    // tail follows across a restart, from the last index it printed.
    a.restart();
    assert!(a.kv_put("feed/after-restart", b"yes"));
    let line = lines
        .map(|l| serde_json::from_str::<Value>(&l.expect("line")).expect("JSON"))
        .find(|e| e["Key"] == "feed/after-restart")
        .expect("tail saw the write after the restart");
    assert_eq!(line["Op"], "set");
    let _ = tail.kill();
    let _ = tail.wait();

    // The restarted server holds changes from its start only: an older
    // index is answered 410 with the oldest it can resume from.
    let gone = Stream::open(a.addr, &format!("?index={start}"));
    assert_eq!(gone.status, 410);
    let oldest: u64 = gone
        .header("x-muster-oldest-index")
        .and_then(|v| v.parse().ok())
        .expect("X-Muster-Oldest-Index");
    assert!(oldest >= last, "oldest {oldest}, last write {last}");
    let from_oldest = Stream::open(a.addr, &format!("?index={oldest}"));
    assert_eq!(from_oldest.status, 200);

    // Bad input: an unknown topic and a bad index.
    let bad = a.get("/v1/event-stream?topic=Nodes");
    assert_eq!(bad.status, 400);
    assert!(bad.text().contains("unknown topic"), "{}", bad.text());
    assert_eq!(a.get("/v1/event-stream?index=x").status, 400);
}

#[test]
fn event_stream_marks_a_restore_then_follows() {
    let a = Agent::durable();
    assert!(a.kv_put("k", b"old"));
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("old.snap");
    let http = a.addr.to_string();
    let file_arg = file.to_str().expect("utf8 path");
    let saved = muster()
        .args(["snapshot", "save", "-http-addr", &http, file_arg])
        .output()
        .expect("snapshot save");
    assert!(
        saved.status.success(),
        "{}",
        String::from_utf8_lossy(&saved.stderr)
    );
    assert!(a.kv_put("k", b"new"));
    let before = a.get("/v1/kv/k").index();
    let mut stream = Stream::open(a.addr, &format!("?index={before}"));
    assert_eq!(stream.status, 200);
    let restored = muster()
        .args(["snapshot", "restore", "-http-addr", &http, file_arg])
        .output()
        .expect("snapshot restore");
    assert!(
        restored.status.success(),
        "{}",
        String::from_utf8_lossy(&restored.stderr)
    );
    let reset = stream.next().expect("a line after the restore");
    assert_eq!(reset["Topic"], "Restore", "{reset}");
    assert_eq!(reset["Op"], "reset");
    assert_eq!(reset["Last"], true);
    let at = reset["Index"].as_u64().expect("index");
    assert!(at > before, "restore at {at}, before {before}");
    // The state is the archive's, and the stream follows on from it.
    assert_eq!(a.kv_get("k").map(|p| p.value), Some(b"old".to_vec()));
    assert!(a.kv_put("k", b"after"));
    let next = stream.next().expect("the write after the restore");
    assert_eq!(next["Key"], "k");
    assert!(next["Index"].as_u64() > Some(at), "{next}");
}

//! Watches: `muster watch` (each type's handler runs once per change with
//! the result's JSON on stdin and `CONSUL_INDEX` set; identical results
//! are not handed on; without a handler the result is printed and the
//! command exits; usage errors and failing handlers exit 1) and the
//! agent's `watches` config key (a script handler and an HTTP handler run
//! inside the agent; a bad watch is refused naming the fix).

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{json, Value};

use crate::harness::{muster, wait_until, write_file, Agent};

/// How long one handler run may take to show up after the change.
const RUN_BOUND: Duration = Duration::from_secs(30);

/// A handler that appends `CONSUL_INDEX` and its stdin (one line of
/// compact JSON) to the file named by its first argument.
const RECORDER: &str =
    "#!/bin/sh\nread -r line\nprintf '%s %s\\n' \"$CONSUL_INDEX\" \"$line\" >> \"$1\"\n";

/// Write [`RECORDER`] into `dir` as an executable; its path.
fn recorder(dir: &Path) -> PathBuf {
    let path = write_file(dir, "record.sh", RECORDER.as_bytes());
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).expect("chmod the handler");
    path
}

/// The runs recorded in `file` so far: `(CONSUL_INDEX, JSON)` per run.
fn runs_in(file: &Path) -> Vec<(u64, Value)> {
    let Ok(text) = fs::read_to_string(file) else {
        return Vec::new();
    };
    text.lines()
        .map(|line| {
            let (index, body) = line
                .split_once(' ')
                .unwrap_or_else(|| panic!("bad run line {line:?}"));
            let index = index
                .parse()
                .unwrap_or_else(|e| panic!("CONSUL_INDEX {index:?}: {e}"));
            let body = serde_json::from_str(body)
                .unwrap_or_else(|e| panic!("handler stdin is not JSON ({e}): {body:?}"));
            (index, body)
        })
        .collect()
}

/// Wait until `file` records at least `n` runs; returns them all.
fn wait_runs(file: &Path, n: usize, what: &str) -> Vec<(u64, Value)> {
    wait_until(&format!("{what}: {n} handler runs"), RUN_BOUND, || {
        runs_in(file).len() >= n
    });
    runs_in(file)
}

/// A `muster watch` running a [`RECORDER`] handler; killed on drop.
struct Watch {
    child: Child,
    /// The file the handler appends to.
    runs: PathBuf,
    /// The watch's stderr.
    stderr: PathBuf,
    _dir: tempfile::TempDir,
}

impl Watch {
    /// `muster watch -http-addr=<agent> <args> <recorder> <runs file>`.
    fn start(agent: &Agent, args: &[&str]) -> Watch {
        let dir = tempfile::tempdir().expect("temp dir");
        let handler = recorder(dir.path());
        let runs = dir.path().join("runs");
        let stderr = dir.path().join("stderr");
        let child = muster()
            .arg("watch")
            .arg(format!("-http-addr={}", agent.addr))
            .args(args)
            .arg(&handler)
            .arg(&runs)
            .stdout(Stdio::null())
            .stderr(fs::File::create(&stderr).expect("stderr file"))
            .spawn()
            .expect("spawn muster watch");
        Watch {
            child,
            runs,
            stderr,
            _dir: dir,
        }
    }

    /// Wait for at least `n` runs; panics with the watch's stderr if it
    /// exited.
    fn wait_runs(&mut self, n: usize) -> Vec<(u64, Value)> {
        let deadline = Instant::now() + RUN_BOUND;
        loop {
            let runs = runs_in(&self.runs);
            if runs.len() >= n {
                return runs;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "muster watch exited ({status}) after {} runs: {}",
                    runs.len(),
                    fs::read_to_string(&self.stderr).unwrap_or_default()
                );
            }
            assert!(
                Instant::now() < deadline,
                "{n} runs not within {RUN_BOUND:?}; runs: {runs:?}"
            );
            thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A KV pair's decoded `Value`.
fn kv_value(pair: &Value) -> String {
    let raw = pair["Value"]
        .as_str()
        .unwrap_or_else(|| panic!("no Value in {pair}"));
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(raw)
        .unwrap_or_else(|e| panic!("Value is not base64 ({e}): {pair}"));
    String::from_utf8(bytes).expect("utf-8 value")
}

#[test]
fn watch_key_runs_the_handler_once_per_change_in_order() {
    let agent = Agent::dev();
    let mut watch = Watch::start(&agent, &["-type=key", "-key=cfg/k"]);
    // The first result is handed on even though the key does not exist.
    let first = watch.wait_runs(1);
    assert_eq!(first[0].1, Value::Null, "absent key: {first:?}");
    assert!(first[0].0 > 0, "CONSUL_INDEX is set: {first:?}");

    for (i, value) in ["v1", "v2", "v3"].iter().enumerate() {
        assert!(agent.kv_put("cfg/k", value.as_bytes()));
        watch.wait_runs(i + 2);
    }
    // A write elsewhere moves the KV index but not this key's result: no
    // run. The next change to the key is the very next run.
    assert!(agent.kv_put("cfg/other", b"x"));
    assert!(agent.kv_put("cfg/k", b"v4"));
    let runs = watch.wait_runs(5);
    assert_eq!(
        runs.len(),
        5,
        "one run per change, none for cfg/other: {runs:?}"
    );
    for (i, (index, pair)) in runs.iter().enumerate().skip(1) {
        assert_eq!(pair["Key"], "cfg/k", "run {i}: {pair}");
        assert_eq!(kv_value(pair), format!("v{i}"), "run {i} in order: {pair}");
        assert_eq!(
            pair["ModifyIndex"].as_u64(),
            Some(*index),
            "CONSUL_INDEX is the result's index: {pair}"
        );
    }
}

#[test]
fn watch_service_passing_runs_when_a_check_flips() {
    let agent = Agent::dev().wait_node_registered();
    let reg = json!({"Name": "web", "Tags": ["a", "b"], "Port": 80, "Check": {"TTL": "60s"}});
    let resp = agent.put("/v1/agent/service/register", reg.to_string().as_bytes());
    assert_eq!(resp.status, 200, "{}", resp.text());
    // Another instance without tag b never shows up.
    let other = json!({"Name": "web", "ID": "web-2", "Tags": ["a"], "Port": 81});
    assert_eq!(
        agent
            .put("/v1/agent/service/register", other.to_string().as_bytes())
            .status,
        200
    );
    wait_until("web in the catalog", RUN_BOUND, || {
        agent
            .get("/v1/catalog/service/web")
            .json()
            .as_array()
            .is_some_and(|l| l.len() == 2)
    });
    let mut watch = Watch::start(
        &agent,
        &[
            "-type=service",
            "-service=web",
            "-tag=a",
            "-tag=b",
            "-passingonly=true",
        ],
    );
    let entries = |run: &(u64, Value)| -> Vec<String> {
        run.1
            .as_array()
            .unwrap_or_else(|| panic!("not a list: {}", run.1))
            .iter()
            .map(|e| e["Service"]["ID"].as_str().unwrap_or_default().to_string())
            .collect()
    };
    let runs = watch.wait_runs(1);
    assert!(
        entries(&runs[0]).is_empty(),
        "critical TTL check: {:?}",
        runs[0].1
    );

    assert_eq!(
        agent.put("/v1/agent/check/pass/service:web", b"").status,
        200
    );
    let runs = watch.wait_runs(2);
    assert_eq!(entries(&runs[1]), ["web"], "passing now: {}", runs[1].1);

    assert_eq!(
        agent.put("/v1/agent/check/fail/service:web", b"").status,
        200
    );
    let runs = watch.wait_runs(3);
    assert!(
        entries(&runs[2]).is_empty(),
        "critical again: {}",
        runs[2].1
    );
    assert!(
        runs[2].0 > runs[1].0 && runs[1].0 > runs[0].0,
        "indexes move: {runs:?}"
    );
}

/// `muster watch <args>` against `agent` (or nowhere), to completion.
fn watch_once(addr: &str, args: &[&str]) -> Output {
    let mut cmd = muster();
    cmd.arg("watch")
        .arg(format!("-http-addr={addr}"))
        .args(args);
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn muster watch");
    let deadline = Instant::now() + RUN_BOUND;
    while child.try_wait().expect("try_wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("muster watch {args:?} did not exit within {RUN_BOUND:?}");
        }
        thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("watch output")
}

#[test]
fn watch_without_a_handler_prints_the_result_and_exits() {
    let agent = Agent::dev().wait_node_registered();
    assert!(agent.kv_put("app/a", b"1"));
    assert!(agent.kv_put("app/b", b"2"));
    let addr = agent.addr.to_string();

    let out = watch_once(&addr, &["-type=key", "-key=app/a"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with("{\n    \""),
        "indented by four spaces: {text:?}"
    );
    let pair: Value = serde_json::from_str(&text).expect("stdout is JSON");
    assert_eq!(
        (pair["Key"].as_str(), kv_value(&pair).as_str()),
        (Some("app/a"), "1")
    );

    let out = watch_once(&addr, &["-type=keyprefix", "-prefix=app/"]);
    let pairs: Value = serde_json::from_slice(&out.stdout).expect("stdout is JSON");
    let keys: Vec<_> = pairs
        .as_array()
        .expect("a list")
        .iter()
        .map(|p| p["Key"].clone())
        .collect();
    assert_eq!(keys, [json!("app/a"), json!("app/b")]);

    let out = watch_once(&addr, &["-type=nodes"]);
    let nodes: Value = serde_json::from_slice(&out.stdout).expect("stdout is JSON");
    assert_eq!(nodes[0]["Node"], agent.ready_field("node"), "{nodes}");

    let out = watch_once(&addr, &["-type=key", "-key=missing"]);
    assert_eq!(
        (out.status.code(), out.stdout.as_slice()),
        (Some(0), &b"null\n"[..])
    );
}

#[test]
fn watch_usage_errors_and_failing_handlers_exit_1() {
    let agent = Agent::dev();
    let addr = agent.addr.to_string();
    let stderr = |out: &Output| String::from_utf8_lossy(&out.stderr).trim().to_string();
    for (args, want) in [
        (&["-key=k"][..], "Watch type must be specified: set -type"),
        (
            &["-type=key"][..],
            "Must specify a single key to watch: set -key",
        ),
        (&["-type=keys"][..], "Unsupported watch type: keys"),
        (
            &["-type=services", "-key=k"][..],
            "Invalid parameters: [key]",
        ),
        (
            &["-type=checks", "-service=a", "-state=passing"][..],
            "Cannot specify service and state",
        ),
        (
            &["-type=service", "-service=a", "-passingonly=maybe"][..],
            "Failed to parse passingonly flag",
        ),
        (
            &["-type=key", "-key=k", "exit 3"][..],
            "Error executing handler: exit status 3",
        ),
        (
            &["-type=key", "-key=k", "-shell=false", "/nonexistent/h"][..],
            "Error starting handler",
        ),
    ] {
        let out = watch_once(&addr, args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {out:?}");
        assert!(err.contains(want), "{args:?}: want {want:?}, got {err:?}");
        assert_eq!(err.lines().count(), 1, "one line: {err:?}");
    }
    // -shell=false passes the handler's words as typed (`-n` stays `-n`).
    let dir = tempfile::tempdir().expect("temp dir");
    let out_file = dir.path().join("out");
    let script = write_file(dir.path(), "h.sh", b"#!/bin/sh\necho \"$@\" > \"$1\"\n");
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).expect("chmod");
    let out_arg = out_file.display().to_string();
    let mut child = muster()
        .args([
            "watch",
            &format!("-http-addr={addr}"),
            "-type=key",
            "-key=k",
            "-shell=false",
        ])
        .arg(&script)
        .args([out_arg.as_str(), "-n", "-long=1"])
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    wait_until("the handler ran", RUN_BOUND, || {
        fs::read_to_string(&out_file).is_ok_and(|t| t.ends_with('\n'))
    });
    let _ = child.kill();
    let _ = child.wait();
    let written = fs::read_to_string(&out_file).expect("handler output");
    assert_eq!(written, format!("{out_arg} -n -long=1\n"));

    let gone = watch_once("127.0.0.1:1", &["-type=nodes"]);
    let err = stderr(&gone);
    assert_eq!(gone.status.code(), Some(1));
    assert!(err.contains("Error querying agent"), "{err}");
}

#[test]
fn agent_config_watches_run_script_handlers_inside_the_agent() {
    let dir = tempfile::tempdir().expect("temp dir");
    let handler = recorder(dir.path());
    let (prefix_runs, key_runs) = (dir.path().join("prefix"), dir.path().join("key"));
    let config = json!({
        "watches": [
            {"type": "keyprefix", "prefix": "app/", "args": [handler, prefix_runs]},
            {"type": "key", "key": "flag", "handler": format!("{} {}", handler.display(), key_runs.display())}
        ]
    });
    let agent = Agent::start_with_config(&["-dev"], false, &config.to_string());
    let first = wait_runs(&prefix_runs, 1, "keyprefix");
    assert_eq!(first[0].1, Value::Null, "no keys yet: {first:?}");
    assert_eq!(wait_runs(&key_runs, 1, "key")[0].1, Value::Null);

    assert!(agent.kv_put("app/a", b"1"));
    let runs = wait_runs(&prefix_runs, 2, "keyprefix after app/a");
    assert_eq!(
        runs[1].1.as_array().map(Vec::len),
        Some(1),
        "{:?}",
        runs[1].1
    );
    assert!(agent.kv_put("app/b", b"2"));
    assert!(agent.kv_put("flag", b"on"));
    let runs = wait_runs(&prefix_runs, 3, "keyprefix after app/b");
    let keys: Vec<_> = runs[2]
        .1
        .as_array()
        .expect("a list")
        .iter()
        .map(|p| p["Key"].clone())
        .collect();
    assert_eq!(keys, [json!("app/a"), json!("app/b")]);
    let flag = wait_runs(&key_runs, 2, "key after flag");
    assert_eq!(kv_value(&flag[1].1), "on");
    assert_eq!(
        runs_in(&key_runs).len(),
        2,
        "app/* writes do not run the key watch"
    );
}

/// One request an HTTP handler sent: method, path, headers, body.
type Seen = (String, String, Vec<(String, String)>, String);

/// Serve HTTP on 127.0.0.1 in a thread, answering 200 to everything and
/// reporting each request.
fn hook_server() -> (String, mpsc::Receiver<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind the hook listener");
    let addr = listener.local_addr().expect("hook address");
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            let _ = conn.set_read_timeout(Some(RUN_BOUND));
            let mut reader = BufReader::new(conn.try_clone().expect("clone the stream"));
            let mut line = String::new();
            if reader.read_line(&mut line).is_err() || line.is_empty() {
                continue;
            }
            let mut parts = line.split_whitespace();
            let method = parts.next().unwrap_or_default().to_string();
            let path = parts.next().unwrap_or_default().to_string();
            let mut headers = Vec::new();
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).is_err() || h.trim().is_empty() {
                    break;
                }
                if let Some((k, v)) = h.trim().split_once(':') {
                    headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
                }
            }
            let len: usize = headers
                .iter()
                .find(|(k, _)| k == "content-length")
                .and_then(|(_, v)| v.parse().ok())
                .unwrap_or(0);
            let mut body = vec![0; len];
            let _ = reader.read_exact(&mut body);
            let _ = conn
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
            let _ = tx.send((
                method,
                path,
                headers,
                String::from_utf8_lossy(&body).into_owned(),
            ));
        }
    });
    (format!("http://{addr}/hook"), rx)
}

#[test]
fn agent_config_watch_http_handler_sends_the_json() {
    let (url, seen) = hook_server();
    let config = json!({
        "watches": [{
            "type": "key", "key": "h",
            "handler_type": "http",
            "http_handler_config": {
                "path": url, "method": "PUT", "timeout": "5s",
                "header": {"X-Test": ["yes", "twice"]}
            }
        }]
    });
    let agent = Agent::start_with_config(&["-dev"], false, &config.to_string());
    let next = || {
        seen.recv_timeout(RUN_BOUND)
            .expect("a request from the HTTP handler")
    };
    let (method, path, headers, body) = next();
    assert_eq!(
        (method.as_str(), path.as_str(), body.as_str()),
        ("PUT", "/hook", "null\n")
    );
    let header = |name: &str| -> Vec<&str> {
        headers
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    };
    assert_eq!(header("content-type"), ["application/json"]);
    assert_eq!(header("x-test"), ["yes", "twice"]);
    let first_index: u64 = header("x-consul-index")
        .first()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("X-Consul-Index: {headers:?}"));

    assert!(agent.kv_put("h", b"hello"));
    let (_, _, headers, body) = next();
    let pair: Value = serde_json::from_str(&body).expect("the body is JSON");
    assert_eq!(
        (pair["Key"].as_str(), kv_value(&pair).as_str()),
        (Some("h"), "hello")
    );
    let index = headers
        .iter()
        .find(|(k, _)| k == "x-consul-index")
        .map(|(_, v)| v.clone());
    assert_eq!(index, pair["ModifyIndex"].as_u64().map(|i| i.to_string()));
    assert!(pair["ModifyIndex"].as_u64() > Some(first_index));
}

#[test]
fn config_watch_mistakes_are_refused_with_the_fix() {
    let dir = tempfile::tempdir().expect("temp dir");
    for (watch, want) in [
        (
            json!({"type": "key", "args": ["/bin/true"]}),
            r#"key "watches[0]": Must specify a single key to watch: set "watches[0].key""#,
        ),
        (
            json!({"type": "key", "key": "k"}),
            "Must define a watch handler",
        ),
        (
            json!({"type": "nodes", "handler_type": "http"}),
            "requires 'http_handler_config'",
        ),
    ] {
        let file = write_file(
            dir.path(),
            "w.json",
            json!({"watches": [watch]}).to_string().as_bytes(),
        );
        let out = muster()
            .args(["validate"])
            .arg(&file)
            .output()
            .expect("run validate");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{watch}: {out:?}");
        assert!(err.contains(want), "{watch}: want {want:?}, got {err:?}");
    }
}

#[test]
fn watch_event_runs_its_handler_once_per_event() {
    let agent = Agent::dev().wait_node_registered();
    let mut watch = Watch::start(&agent, &["-type=event", "-name=deploy"]);
    let first = watch.wait_runs(1);
    assert_eq!(first[0].1, json!([]), "no events yet: {first:?}");
    let fire = |name: &str, payload: &str| {
        let resp = agent.put(&format!("/v1/event/fire/{name}"), payload.as_bytes());
        assert_eq!(resp.status, 200, "fire {name}: {}", resp.text());
        resp.json()["ID"].as_str().expect("event ID").to_string()
    };
    let mut ids = Vec::new();
    for (i, payload) in ["p1", "p2", "p3"].iter().enumerate() {
        ids.push(fire("deploy", payload));
        // Events of other names do not run this watch.
        fire("other", "x");
        let runs = watch.wait_runs(i + 2);
        let events = runs[i + 1]
            .1
            .as_array()
            .unwrap_or_else(|| panic!("not a list: {runs:?}"));
        assert_eq!(events.len(), 1, "only the new event: {runs:?}");
        assert_eq!(events[0]["ID"], ids[i].as_str());
        assert_eq!(events[0]["Name"], "deploy");
        assert_eq!(kv_value(&json!({"Value": events[0]["Payload"]})), *payload);
    }
    assert!(agent.kv_put("unrelated", b"x"));
    fire("deploy", "p4");
    let runs = watch.wait_runs(5);
    assert_eq!(runs.len(), 5, "one run per event: {runs:?}");
    assert_eq!(runs[4].1.as_array().map(Vec::len), Some(1), "{runs:?}");
    assert_eq!(runs[4].1[0]["Name"], "deploy");
}

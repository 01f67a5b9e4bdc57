//! The agent's check runners against real targets the test starts on
//! 127.0.0.1 (consul-compat.md §6.2): HTTP (200/429/500/slow), TCP (open,
//! then closed), script checks from a config dir (exit 0/1/2, past the
//! timeout) and their refusal over HTTP, and TTL checks (updates, expiry,
//! errors). Results are observed in `/v1/agent/checks` and, after
//! anti-entropy, in `/v1/health/service/:s`.
//!
//! Intervals are the 1 s minimum; every status is polled for up to 15 s,
//! never waited for with a fixed sleep.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::harness::{write_file, Agent};

/// How long a status may take to appear.
pub const BOUND: Duration = Duration::from_secs(15);

/// Poll `f` every 100 ms until it returns `Some`, for up to `bound`; panics
/// with `what` and the last value seen otherwise.
pub fn poll<T>(what: &str, bound: Duration, mut f: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + bound;
    loop {
        match f() {
            Ok(v) => return v,
            Err(last) if Instant::now() > deadline => {
                panic!("{what}: not seen within {bound:?}; last: {last}")
            }
            Err(_) => thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// `/v1/agent/checks` → the check `id`, if present.
pub fn agent_check(agent: &Agent, id: &str) -> Option<Value> {
    let resp = agent.get("/v1/agent/checks");
    assert_eq!(resp.status, 200, "/v1/agent/checks: {}", resp.text());
    let all = resp.json();
    all.get(id).cloned()
}

/// Wait until the agent's check `id` has `status`; returns the check.
pub fn wait_agent_status(agent: &Agent, id: &str, status: &str) -> Value {
    wait_agent_result(agent, id, status, "")
}

/// Wait until the agent's check `id` has `status` and an output containing
/// `output` (a check's initial status comes with an empty output, so this
/// tells a real result from the initial state); returns the check.
pub fn wait_agent_result(agent: &Agent, id: &str, status: &str, output: &str) -> Value {
    poll(
        &format!("agent check {id} {status} with output {output:?}"),
        BOUND,
        || match agent_check(agent, id) {
            Some(c)
                if c["Status"] == status
                    && c["Output"].as_str().is_some_and(|o| o.contains(output)) =>
            {
                Ok(c)
            }
            other => Err(format!("{other:?}")),
        },
    )
}

/// `/v1/health/service/<service>` → the check `id` of any instance.
pub fn catalog_check(agent: &Agent, service: &str, id: &str) -> Option<Value> {
    let resp = agent.get(&format!("/v1/health/service/{service}"));
    assert_eq!(resp.status, 200, "health of {service}: {}", resp.text());
    let entries = resp.json();
    entries
        .as_array()?
        .iter()
        .flat_map(|e| e["Checks"].as_array().cloned().unwrap_or_default())
        .find(|c| c["CheckID"] == id)
}

/// Wait until the catalog's copy of check `id` of `service` has `status`.
pub fn wait_catalog_status(agent: &Agent, service: &str, id: &str, status: &str) -> Value {
    poll(
        &format!("catalog check {id} of {service} {status}"),
        BOUND,
        || match catalog_check(agent, service, id) {
            Some(c) if c["Status"] == status => Ok(c),
            other => Err(format!("{other:?}")),
        },
    )
}

/// `PUT path` with a JSON body, expecting 200.
pub fn put_ok(agent: &Agent, path: &str, body: &Value) {
    let resp = agent.put(path, body.to_string().as_bytes());
    assert_eq!(resp.status, 200, "PUT {path} {body}: {}", resp.text());
}

/// Register a service through the agent, expecting 200.
pub fn register_service(agent: &Agent, body: &Value) {
    put_ok(agent, "/v1/agent/service/register", body);
}

/// A `-dev` agent loading `dir` with `-config-dir`.
pub fn agent_with_config_dir(dir: &Path) -> Agent {
    let dir = dir.to_str().expect("utf-8 temp path");
    Agent::start(&["-dev", "-config-dir", dir], false)
}

/// A tiny HTTP/1.1 target: `/ok` → 200, `/warn` → 429, `/fail` → 500,
/// `/slow` → 200 after 3 s, `/big` → 200 with a 10,003-byte body,
/// `/echo` → 200 echoing the request head; every connection in its own thread. Returns
/// `http://127.0.0.1:<port>`. The listener lives as long as the test binary.
pub fn http_target() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind the HTTP target");
    let addr = listener.local_addr().expect("target addr");
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            thread::spawn(move || serve_one(stream));
        }
    });
    format!("http://{addr}")
}

fn serve_one(stream: TcpStream) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let path = line
        .split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .to_string();
    let mut head = line.clone();
    loop {
        let mut header = String::new();
        match reader.read_line(&mut header) {
            Ok(0) | Err(_) => break,
            Ok(_) if header.trim().is_empty() => break,
            Ok(_) => head.push_str(&header),
        }
    }
    if path == "/echo" {
        let mut stream = reader.into_inner();
        let _ = write!(
            stream,
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{head}",
            head.len()
        );
        return;
    }
    let (status, body) = match path.as_str() {
        "/ok" => ("200 OK", "all good"),
        "/warn" => ("429 Too Many Requests", "slow down"),
        "/fail" => ("500 Internal Server Error", "broken"),
        "/big" => {
            let body = "x".repeat(10_000) + "END";
            let mut stream = reader.into_inner();
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            return;
        }
        "/slow" => {
            thread::sleep(Duration::from_secs(3));
            ("200 OK", "late")
        }
        _ => ("404 Not Found", "no such path"),
    };
    let mut stream = reader.into_inner();
    let _ = write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    );
}

#[test]
fn agent_http_checks_map_200_429_500_and_timeouts() {
    let target = http_target();
    let agent = Agent::dev();
    for (name, path) in [
        ("h-ok", "/ok"),
        ("h-warn", "/warn"),
        ("h-fail", "/fail"),
        ("h-slow", "/slow"),
    ] {
        register_service(
            &agent,
            &json!({
                "Name": name,
                "Port": 1,
                "Check": {
                    "HTTP": format!("{target}{path}"),
                    "Interval": "1s",
                    "Timeout": "500ms",
                },
            }),
        );
    }
    // A fresh check starts critical (§6.2); each one must reach its verdict.
    for (name, status, code) in [
        ("h-ok", "passing", "200"),
        ("h-warn", "warning", "429"),
        ("h-fail", "critical", "500"),
    ] {
        let id = format!("service:{name}");
        let c = wait_agent_result(&agent, &id, status, code);
        assert_eq!(c["Type"], "http", "{c}");
        assert_eq!(c["ServiceID"], name, "{c}");
        assert_eq!(c["Name"], format!("Service '{name}' check"), "{c}");
        let out = c["Output"].as_str().unwrap_or_default();
        assert!(
            !out.is_empty(),
            "{id}: an HTTP check reports what it saw: {c}"
        );
        wait_catalog_status(&agent, name, &id, status);
    }
    let ok = wait_agent_status(&agent, "service:h-ok", "passing");
    let out = ok["Output"].as_str().unwrap_or_default();
    assert!(
        out.contains("200") && out.contains("all good"),
        "Output names status and body: {out:?}"
    );
    let fail = wait_agent_result(&agent, "service:h-fail", "critical", "500");
    assert!(
        fail["Output"].as_str().unwrap_or_default().contains("500"),
        "{fail}"
    );

    // The slow handler answers after 3 s, past the 500 ms timeout: critical,
    // and it stays critical (it never turns passing in the meantime).
    let slow = poll("h-slow has run at least once", BOUND, || match agent_check(
        &agent,
        "service:h-slow",
    ) {
        Some(c) if !c["Output"].as_str().unwrap_or_default().is_empty() => Ok(c),
        other => Err(format!("{other:?}")),
    });
    assert_eq!(slow["Status"], "critical", "timed out: {slow}");
    let deadline = Instant::now() + Duration::from_secs(4);
    while Instant::now() < deadline {
        let c = agent_check(&agent, "service:h-slow").expect("h-slow exists");
        assert_eq!(
            c["Status"], "critical",
            "a timed-out check never passes: {c}"
        );
        thread::sleep(Duration::from_millis(250));
    }
    wait_catalog_status(&agent, "h-slow", "service:h-slow", "critical");
}

#[test]
fn agent_tcp_check_follows_a_listener_opened_then_closed() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind the TCP target");
    let addr: SocketAddr = listener.local_addr().expect("addr");
    let agent = Agent::dev();
    register_service(
        &agent,
        &json!({
            "Name": "tcp-svc",
            "Port": addr.port(),
            "Check": {"TCP": addr.to_string(), "Interval": "1s", "Timeout": "1s"},
        }),
    );
    let c = wait_agent_status(&agent, "service:tcp-svc", "passing");
    assert_eq!(c["Type"], "tcp", "{c}");
    let out = c["Output"].as_str().unwrap_or_default();
    assert!(out.contains(&addr.to_string()), "{out:?}");
    wait_catalog_status(&agent, "tcp-svc", "service:tcp-svc", "passing");

    drop(listener);
    wait_agent_status(&agent, "service:tcp-svc", "critical");
    wait_catalog_status(&agent, "tcp-svc", "service:tcp-svc", "critical");
}

#[test]
fn agent_script_checks_from_a_config_dir_map_exit_codes_and_time_out() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_file(
        dir.path(),
        "scripts.json",
        json!({
            "enable_local_script_checks": true,
            "checks": [
                {"id": "s-exit0", "name": "exit 0", "args": ["sh", "-c", "echo fine; exit 0"], "interval": "1s"},
                {"id": "s-exit1", "name": "exit 1", "args": ["sh", "-c", "echo meh; exit 1"], "interval": "1s"},
                {"id": "s-exit2", "name": "exit 2", "args": ["sh", "-c", "echo bad; exit 2"], "interval": "1s"},
                {"id": "s-sleep", "name": "sleeps", "args": ["sh", "-c", "sleep 10"], "interval": "1s", "timeout": "1s", "status": "passing"},
            ],
        })
        .to_string()
        .as_bytes(),
    );
    let agent = agent_with_config_dir(dir.path());
    for (id, status, out) in [
        ("s-exit0", "passing", "fine"),
        ("s-exit1", "warning", "meh"),
        ("s-exit2", "critical", "bad"),
    ] {
        let c = wait_agent_result(&agent, id, status, out);
        assert_eq!(c["Type"], "script", "{c}");
        assert!(
            c["Output"].as_str().unwrap_or_default().contains(out),
            "{id}: {c}"
        );
    }
    // Starts passing (initial status), turns critical when killed at 1 s.
    let slow = wait_agent_result(&agent, "s-sleep", "critical", "Timed out");
    assert!(
        slow["Output"]
            .as_str()
            .unwrap_or_default()
            .contains("Timed out"),
        "{slow}"
    );

    // The same check over HTTP: this agent allows only local (file) scripts.
    let resp = agent.put(
        "/v1/agent/check/register",
        json!({"Name": "remote", "Args": ["sh", "-c", "exit 0"], "Interval": "1s"})
            .to_string()
            .as_bytes(),
    );
    assert_eq!(resp.status, 500, "{}", resp.text());
    assert!(
        resp.text().contains("enable_script_checks"),
        "{}",
        resp.text()
    );
    assert!(agent_check(&agent, "remote").is_none());
}

#[test]
fn agent_script_check_over_http_is_refused_by_default() {
    let agent = Agent::dev();
    let resp = agent.put(
        "/v1/agent/check/register",
        json!({"Name": "remote", "Args": ["sh", "-c", "exit 0"], "Interval": "1s"})
            .to_string()
            .as_bytes(),
    );
    assert_eq!(resp.status, 500, "{}", resp.text());
    let text = resp.text();
    assert!(
        text.contains("enable_script_checks") && text.contains("enable_local_script_checks"),
        "{text}"
    );
    // Inside a service registration too.
    let resp = agent.put(
        "/v1/agent/service/register",
        json!({"Name": "scripted", "Check": {"Args": ["true"], "Interval": "1s"}})
            .to_string()
            .as_bytes(),
    );
    assert_eq!(resp.status, 500, "{}", resp.text());
    assert!(
        resp.text().contains("enable_script_checks"),
        "{}",
        resp.text()
    );
    assert!(agent_check(&agent, "remote").is_none());
    assert!(agent_check(&agent, "service:scripted").is_none());
}

#[test]
fn agent_ttl_checks_are_updated_expire_and_reject_bad_updates() {
    let agent = Agent::dev();
    register_service(&agent, &json!({"Name": "ttl-svc", "Port": 1}));
    put_ok(
        &agent,
        "/v1/agent/check/register",
        &json!({"Name": "ttl-a", "ServiceID": "ttl-svc", "TTL": "2s"}),
    );
    let c = agent_check(&agent, "ttl-a").expect("registered");
    assert_eq!(c["Type"], "ttl", "{c}");
    assert_eq!(c["Status"], "critical", "TTL checks start critical: {c}");
    assert_eq!(c["ServiceID"], "ttl-svc", "{c}");

    let resp = agent.put("/v1/agent/check/pass/ttl-a?note=x", b"");
    assert_eq!(resp.status, 200, "{}", resp.text());
    let c = agent_check(&agent, "ttl-a").expect("present");
    assert_eq!(
        (&c["Status"], &c["Output"]),
        (&json!("passing"), &json!("x"))
    );
    let c = wait_catalog_status(&agent, "ttl-svc", "ttl-a", "passing");
    assert_eq!(c["Output"], "x", "{c}");

    // Left alone past its TTL: critical, saying so.
    let c = wait_agent_result(&agent, "ttl-a", "critical", "TTL expired");
    assert!(
        c["Output"]
            .as_str()
            .unwrap_or_default()
            .contains("TTL expired"),
        "{c}"
    );
    wait_catalog_status(&agent, "ttl-svc", "ttl-a", "critical");

    for (verb, status) in [
        ("warn", "warning"),
        ("fail", "critical"),
        ("pass", "passing"),
    ] {
        let resp = agent.put(&format!("/v1/agent/check/{verb}/ttl-a?note={verb}ed"), b"");
        assert_eq!(resp.status, 200, "{verb}: {}", resp.text());
        let c = agent_check(&agent, "ttl-a").expect("present");
        assert_eq!(c["Status"], status, "{verb}: {c}");
        assert_eq!(c["Output"], format!("{verb}ed"), "{verb}: {c}");
    }

    put_ok(
        &agent,
        "/v1/agent/check/update/ttl-a",
        &json!({"Status": "warning", "Output": "o"}),
    );
    let c = agent_check(&agent, "ttl-a").expect("present");
    assert_eq!(
        (&c["Status"], &c["Output"]),
        (&json!("warning"), &json!("o"))
    );
    wait_catalog_status(&agent, "ttl-svc", "ttl-a", "warning");

    let resp = agent.put(
        "/v1/agent/check/update/ttl-a",
        json!({"Status": "bogus", "Output": "o"})
            .to_string()
            .as_bytes(),
    );
    assert_eq!(resp.status, 400, "{}", resp.text());
    assert!(
        resp.text().contains("Invalid check status: 'bogus'"),
        "{}",
        resp.text()
    );

    for path in [
        "/v1/agent/check/pass/nope",
        "/v1/agent/check/warn/nope",
        "/v1/agent/check/fail/nope",
    ] {
        let resp = agent.put(path, b"");
        assert_eq!(resp.status, 404, "{path}: {}", resp.text());
        assert!(resp.text().contains("Unknown check ID"), "{}", resp.text());
    }
    let resp = agent.put(
        "/v1/agent/check/update/nope",
        json!({"Status": "passing"}).to_string().as_bytes(),
    );
    assert_eq!(resp.status, 404, "{}", resp.text());

    // A check that is not a TTL check cannot be pushed.
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    put_ok(
        &agent,
        "/v1/agent/check/register",
        &json!({"Name": "not-ttl", "TCP": listener.local_addr().expect("addr").to_string(), "Interval": "1s"}),
    );
    let resp = agent.put("/v1/agent/check/pass/not-ttl", b"");
    assert_eq!(resp.status, 500, "{}", resp.text());
    assert!(
        resp.text().contains("does not have associated TTL"),
        "{}",
        resp.text()
    );
}

#[test]
fn agent_http_check_sends_method_headers_and_truncates_output() {
    let target = http_target();
    let agent = Agent::dev();
    put_ok(
        &agent,
        "/v1/agent/check/register",
        &json!({
            "Name": "echo",
            "HTTP": format!("{target}/echo"),
            "Method": "POST",
            "Header": {"X-Foo": ["bar"]},
            "Interval": "1s",
        }),
    );
    let c = wait_agent_result(&agent, "echo", "passing", "POST /echo");
    let out = c["Output"]
        .as_str()
        .unwrap_or_default()
        .to_ascii_lowercase();
    assert!(out.contains("x-foo: bar"), "custom header sent: {out}");
    assert!(
        out.contains("user-agent: consul health check"),
        "Consul's User-Agent: {out}"
    );

    put_ok(
        &agent,
        "/v1/agent/check/register",
        &json!({"Name": "big", "HTTP": format!("{target}/big"), "Interval": "1s"}),
    );
    let c = wait_agent_result(&agent, "big", "passing", "200");
    let out = c["Output"].as_str().unwrap_or_default();
    assert!(
        out.len() <= 4096 + 200,
        "output is cut to about 4 KiB, got {} bytes",
        out.len()
    );
}

#[test]
fn agent_ttl_note_longer_than_output_max_size_is_cut() {
    let agent = Agent::dev();
    put_ok(
        &agent,
        "/v1/agent/check/register",
        &json!({"Name": "small", "TTL": "10m", "OutputMaxSize": 10}),
    );
    let note = "abcdefghijklmnopqrst";
    let resp = agent.put(&format!("/v1/agent/check/pass/small?note={note}"), b"");
    assert_eq!(resp.status, 200, "{}", resp.text());
    let c = agent_check(&agent, "small").expect("present");
    assert_eq!(
        c["Output"], "abcdefghij ... (captured 10 of 20 bytes)",
        "{c}"
    );
}

#[test]
fn agent_check_register_validates_like_consul() {
    let agent = Agent::dev();
    let cases = [
        (json!({"TTL": "10s"}), 400, "Missing check name"),
        (
            json!({"Name": "c", "TTL": "10s", "ServiceID": "ghost"}),
            404,
            r#"ServiceID "ghost" does not exist"#,
        ),
        (
            json!({"Name": "c", "TCP": "127.0.0.1:1", "TTL": "10s", "Interval": "1s"}),
            400,
            "Invalid check: ",
        ),
        (
            json!({"Name": "c", "TCP": "127.0.0.1:1"}),
            400,
            "Invalid check: ",
        ),
        (json!({"Name": "c"}), 400, "Invalid check: "),
        (
            json!({"Name": "c", "TTL": "10s", "Status": "bogus"}),
            400,
            "Bad check status",
        ),
        (
            json!({"Name": "c", "H2PING": "127.0.0.1:1", "Interval": "1s"}),
            400,
            "H2PING",
        ),
        (
            json!({"Name": "c", "OSService": "sshd", "Interval": "1s"}),
            400,
            "OSService",
        ),
    ];
    for (body, code, needle) in cases {
        let resp = agent.put("/v1/agent/check/register", body.to_string().as_bytes());
        assert_eq!(resp.status, code, "{body}: {}", resp.text());
        assert!(resp.text().contains(needle), "{body}: {}", resp.text());
    }
    assert!(agent_check(&agent, "c").is_none());

    // An initial status applies at once; alias checks are accepted.
    put_ok(
        &agent,
        "/v1/agent/check/register",
        &json!({"Name": "up", "TTL": "10m", "Status": "passing", "Notes": "n"}),
    );
    let c = agent_check(&agent, "up").expect("present");
    assert_eq!(
        (&c["Status"], &c["Notes"]),
        (&json!("passing"), &json!("n"))
    );
    register_service(&agent, &json!({"Name": "aliased", "Port": 1}));
    put_ok(
        &agent,
        "/v1/agent/check/register",
        &json!({"Name": "al", "AliasService": "aliased"}),
    );
    assert_eq!(agent_check(&agent, "al").expect("present")["Type"], "alias");

    let resp = agent.put("/v1/agent/check/deregister/up", b"");
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert!(agent_check(&agent, "up").is_none());
    let resp = agent.put("/v1/agent/check/deregister/up", b"");
    assert_eq!(resp.status, 404, "{}", resp.text());
}

#[test]
fn agent_reregistering_keeps_or_replaces_existing_checks() {
    let agent = Agent::dev();
    register_service(
        &agent,
        &json!({"Name": "rr", "Port": 1, "Checks": [
            {"CheckID": "rr-a", "TTL": "10m"},
            {"CheckID": "rr-b", "TTL": "10m"},
        ]}),
    );
    assert!(agent_check(&agent, "rr-a").is_some() && agent_check(&agent, "rr-b").is_some());
    // Without the flag, existing checks survive a re-registration.
    register_service(
        &agent,
        &json!({"Name": "rr", "Port": 2, "Checks": [{"CheckID": "rr-a", "TTL": "10m"}]}),
    );
    assert!(agent_check(&agent, "rr-b").is_some(), "rr-b survives");
    let resp = agent.put(
        "/v1/agent/service/register?replace-existing-checks",
        json!({"Name": "rr", "Port": 3, "Checks": [{"CheckID": "rr-a", "TTL": "10m"}]})
            .to_string()
            .as_bytes(),
    );
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert!(agent_check(&agent, "rr-a").is_some());
    assert!(agent_check(&agent, "rr-b").is_none(), "rr-b replaced away");
    // Default check IDs: service:<id>:<n> for several.
    register_service(
        &agent,
        &json!({"Name": "multi", "Port": 1, "Checks": [{"TTL": "10m"}, {"TTL": "10m"}]}),
    );
    assert!(agent_check(&agent, "service:multi:1").is_some());
    assert!(agent_check(&agent, "service:multi:2").is_some());
}

//! What a Consul user meets on day one (issue 15): Consul's wire details
//! (header case, compact JSON, `/v1/agent/self`), what the agent logs, and
//! where it refuses loudly instead of limping on.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::harness::{muster, write_file, Agent};
use crate::netns::{request_in, Netns};
use crate::process::agent_exit;

/// One request, the response's raw head (status line and headers, exactly
/// as sent) and its body.
fn raw_get(agent: &Agent, path: &str) -> (String, Vec<u8>) {
    let mut s = TcpStream::connect(agent.addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .expect("write");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read");
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete head");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    (head, raw[split + 4..].to_vec())
}

#[test]
fn headers_are_in_gos_canonical_case_and_json_is_compact() {
    let agent = Agent::dev();
    assert!(agent.kv_put("a/b", b"v"));
    let (head, body) = raw_get(&agent, "/v1/kv/a/b");
    for name in [
        "X-Consul-Index: ",
        "X-Consul-Knownleader: true",
        "X-Consul-Lastcontact: ",
        "X-Consul-Effective-Consistency: leader",
        "X-Consul-Default-Acl-Policy: allow",
        "Content-Type: application/json",
    ] {
        assert!(
            head.lines().any(|l| l.starts_with(name)),
            "no {name:?} line in:\n{head}"
        );
    }
    // Compact unless `?pretty`, in `-dev` too.
    let text = String::from_utf8_lossy(&body);
    assert!(text.starts_with("[{\"") && !text.contains('\n'), "{text}");
    let (_, pretty) = raw_get(&agent, "/v1/kv/a/b?pretty");
    assert!(
        String::from_utf8_lossy(&pretty).contains("\n    "),
        "pretty"
    );
}

#[test]
fn agent_self_reports_a_consul_version_and_the_real_member() {
    let agent = Agent::dev();
    let me = agent.get("/v1/agent/self").json();
    let version = me["Config"]["Version"].as_str().unwrap_or_default();
    let parts: Vec<u64> = version.split('.').filter_map(|p| p.parse().ok()).collect();
    assert!(
        parts.len() == 3 && parts[0] == 1 && parts[1] >= 13,
        "a Consul-compatible version, not {version:?}"
    );
    assert_eq!(me["Config"]["MusterVersion"], env!("CARGO_PKG_VERSION"));
    assert_eq!(me["Config"]["SessionTTLMin"], 10_000_000_000_u64);
    assert_eq!(me["DebugConfig"]["ServerMode"], true);
    assert_eq!(me["DebugConfig"]["Datacenter"], "dc1");
    let build = me["Member"]["Tags"]["build"].as_str().unwrap_or_default();
    assert!(build.starts_with(&format!("{version}:")), "{build}");
    // The member is the pool's own entry: the same port `members` shows.
    let members = agent.get("/v1/agent/members").json();
    let listed = members
        .as_array()
        .and_then(|m| m.iter().find(|m| m["Name"] == me["Member"]["Name"]))
        .cloned()
        .unwrap_or_default();
    assert_eq!(me["Member"]["Port"], listed["Port"], "{members}");
    assert_eq!(me["Member"]["Addr"], listed["Addr"], "{members}");
}

/// Consul's precedence for the listeners' addresses: `addresses.http` and
/// `addresses.dns` each win for their own listener; otherwise `-client`,
/// then `client_addr`.
#[test]
fn addresses_override_client_for_their_own_listener_only() {
    for (args, config, http, dns) in [
        (
            &["-dev", "-client", "127.0.0.5"][..],
            r#"{"client_addr": "127.0.0.3", "addresses": {"dns": "127.0.0.4"}}"#,
            "127.0.0.5:",
            "127.0.0.4:",
        ),
        (
            &["-dev", "-client", "127.0.0.5"][..],
            r#"{"addresses": {"http": "127.0.0.6"}}"#,
            "127.0.0.6:",
            "127.0.0.5:",
        ),
        (
            &["-dev"][..],
            r#"{"client_addr": "127.0.0.7"}"#,
            "127.0.0.7:",
            "127.0.0.7:",
        ),
    ] {
        let agent = Agent::start_with_config(args, false, config);
        let ready = &agent.ready;
        assert!(
            agent.ready_field("http").starts_with(http),
            "{config}: {ready:?}"
        );
        assert!(
            agent.ready_field("dns").starts_with(dns),
            "{config}: {ready:?}"
        );
        assert_eq!(agent.get("/v1/status/leader").status, 200);
    }
}

/// `-dev` stays on loopback; without `-bind` a server binds 0.0.0.0 and
/// advertises the host's one private address, and with two it refuses
/// naming both (Consul's rule). Run in network namespaces made for it, so
/// the host's own addresses play no part.
#[test]
fn bind_defaults_to_all_interfaces_advertising_the_private_address() {
    let dev = Agent::dev();
    assert_eq!(
        dev.get("/v1/agent/self").json()["Member"]["Addr"],
        "127.0.0.1"
    );

    let Some(ns) = Netns::create() else {
        eprintln!("SKIPPED the namespace half: creating network namespaces needs root and ip");
        return;
    };
    assert!(ns.add_address("10.77.0.5/24"), "dummy address");
    let agent = Agent::start_in_netns(&ns.name, &["-server", "-bootstrap"], None);
    let me = request_in(&ns.name, agent.addr, "GET", "/v1/agent/self", b"")
        .expect("GET /v1/agent/self in the namespace")
        .json();
    assert_eq!(me["Member"]["Addr"], "10.77.0.5", "{me}");
    let leader = request_in(&ns.name, agent.addr, "GET", "/v1/status/leader", b"")
        .expect("GET /v1/status/leader")
        .json();
    assert_eq!(leader, "10.77.0.5:8300");
    drop(agent);

    assert!(ns.add_address("192.168.77.5/24"), "second dummy address");
    let dir = tempfile::tempdir().expect("tempdir");
    // `timeout`: a refusal that did not happen must not hang the test.
    let out = ns
        .command("timeout")
        .args([
            "20",
            crate::harness::MUSTER,
            "agent",
            "-server",
            "-bootstrap",
            "-data-dir",
        ])
        .arg(dir.path())
        .output()
        .expect("run muster in the namespace");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("Multiple private IPv4 addresses found (10.77.0.5, 192.168.77.5)")
            && err.contains("-bind"),
        "{err}"
    );
}

/// A flag error names the flag as typed (Go-style `-ui`, not the `--ui`
/// clap saw), and help shows Consul's spelling.
#[test]
fn flag_errors_name_the_flag_as_typed() {
    let out = muster()
        .args(["agent", "-dev", "-ui-bogus"])
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(err.contains("unexpected argument '-ui-bogus'"), "{err}");
    assert!(!err.contains("--ui-bogus"), "{err}");
    let out = muster()
        .args(["kv", "get", "-recures", "x"])
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("'-recures'") && err.contains("'-help'"),
        "{err}"
    );
}

/// `muster info | head`: a reader that goes away is not an error.
#[test]
fn output_into_a_closed_pipe_ends_quietly() {
    let agent = Agent::dev();
    let addr = agent.addr.to_string();
    for args in [
        vec!["info", "-http-addr", addr.as_str()],
        vec!["members", "-http-addr", addr.as_str()],
    ] {
        // The reader end is closed before the command writes anything.
        let (reader, writer) = std::io::pipe().expect("pipe");
        drop(reader);
        let out = muster()
            .args(&args)
            .stdout(writer)
            .stderr(std::process::Stdio::piped())
            .output()
            .expect("run");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.is_empty(), "{args:?}: {err}");
        assert!(out.status.success(), "{args:?}: {:?}", out.status);
    }
}

/// Settings that would lock the agent down are refused while muster cannot
/// honour them (fail closed); harmless keys of unbuilt features load with
/// a warning naming them.
#[test]
fn security_settings_not_built_yet_refuse_to_start() {
    for (config, needle) in [
        (
            r#"{"acl": {"enabled": true, "default_policy": "sometimes"}}"#,
            "acl.default_policy",
        ),
        (
            r#"{"auto_encrypt": {"tls": true}}"#,
            "is not supported by muster yet",
        ),
    ] {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = write_file(dir.path(), "sec.json", config.as_bytes());
        let file = file.to_str().expect("utf-8");
        let (status, log) = agent_exit(&["-dev", "-config-file", file], Duration::from_secs(20));
        assert_eq!(status.code(), Some(1), "{config}: {log}");
        assert!(
            log.contains(needle) && log.contains("sec.json"),
            "{config}: {log}"
        );
        let out = muster()
            .args(["validate", file])
            .output()
            .expect("validate");
        assert_eq!(out.status.code(), Some(1), "validate {config}");
    }
    let agent = Agent::start_with_config(
        &["-dev"],
        false,
        r#"{"enable_syslog": true, "enable_debug": true, "telemetry": {"disable_hostname": true}}"#,
    );
    let log = agent.log();
    for key in ["enable_syslog", "enable_debug"] {
        assert!(
            log.contains(&format!("{key:?} has no effect")),
            "{key}: {log}"
        );
    }
    // Built now: no warning.
    assert!(!log.contains("telemetry"), "{log}");
}

/// Config mistakes a Consul guide leads to, each refused with the fix:
/// JSON with `//` remarks, a check with both `interval` and `ttl`, script
/// checks nobody enabled, two checks with one ID.
#[test]
fn config_mistakes_are_refused_with_the_fix() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cases: [(&str, &str, &[&str]); 4] = [
        (
            "comments.json",
            "{\n  // a server\n  \"server\": true\n}\n",
            &["comments.json", "JSON has no comments", ".hcl"],
        ),
        (
            "both.json",
            r#"{"service": {"name": "redis", "check": {"args": ["/bin/true"], "interval": "5s", "ttl": "20s"}}}"#,
            &[
                "both.json",
                r#"check "service:redis""#,
                r#"drop "ttl""#,
                "/v1/agent/check/pass",
            ],
        ),
        (
            "script.json",
            r#"{"service": {"name": "redis", "check": {"args": ["/bin/true"], "interval": "5s"}}}"#,
            &[
                "script.json",
                r#"service "redis""#,
                r#"check "service:redis""#,
                "enable_local_script_checks",
            ],
        ),
        (
            "dup.json",
            r#"{"checks": [{"id": "mem", "ttl": "5s"}, {"id": "mem", "ttl": "9s"}]}"#,
            &[r#"duplicate check ID "mem""#, "dup.json"],
        ),
    ];
    for (name, text, needles) in cases {
        let file = write_file(dir.path(), name, text.as_bytes());
        let file = file.to_str().expect("utf-8");
        let (status, log) = agent_exit(&["-dev", "-config-file", file], Duration::from_secs(20));
        assert_eq!(status.code(), Some(1), "{name}: {log}");
        let out = muster()
            .args(["validate", file])
            .output()
            .expect("validate");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "validate {name}: {err}");
        for needle in needles {
            assert!(log.contains(needle), "{name}: {needle:?} not in {log}");
            assert!(
                err.contains(needle),
                "validate {name}: {needle:?} not in {err}"
            );
        }
    }
}

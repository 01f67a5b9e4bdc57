//! Config files through the binary: every config example of the seed
//! (`../shared/seed/examples/`) in a config dir of its own, through `muster
//! validate` (accepted with the expected services and checks, or rejected
//! naming file, check and reason, as Consul does); duplicate service IDs
//! across files; and the `services`, `maint` and `reload` commands' requests,
//! checked against a recording HTTP stub.

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::Output;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use crate::harness::{free_port, muster, write_file};

/// The seed's config examples.
const EXAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/seed/examples");

fn run(args: &[&str]) -> Output {
    muster().args(args).output().expect("run muster")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// What `muster validate` must say about one example.
enum Expect {
    /// Valid, with these service IDs (and their inline check counts) and
    /// node check IDs (and types).
    Valid {
        services: &'static [(&'static str, usize)],
        checks: &'static [(&'static str, &'static str)],
    },
    /// Rejected; the one-line error contains each of these.
    Rejected(&'static [&'static str]),
}

/// The seed examples with script or Docker checks.
const SCRIPTED: &[&str] = &[
    "check-docker.json",
    "check-initial-status.json",
    "check-script.json",
    "checks-multi.json",
    "redis.json",
];

/// Every seed example and its verdict.
const SEED: &[(&str, Expect)] = &[
    (
        "agent-config.json",
        Expect::Valid {
            services: &[],
            checks: &[],
        },
    ),
    (
        "server-config.json",
        Expect::Valid {
            services: &[],
            checks: &[],
        },
    ),
    (
        "check-docker.json",
        Expect::Valid {
            services: &[],
            checks: &[("mem-util", "docker")],
        },
    ),
    (
        "check-http.json",
        Expect::Valid {
            services: &[],
            checks: &[("api", "http")],
        },
    ),
    (
        "check-initial-status.json",
        Expect::Valid {
            services: &[],
            checks: &[("mem", "script")],
        },
    ),
    (
        "check-script.json",
        Expect::Valid {
            services: &[],
            checks: &[("mem-util", "script")],
        },
    ),
    (
        "check-tcp.json",
        Expect::Valid {
            services: &[],
            checks: &[("ssh", "tcp")],
        },
    ),
    (
        "check-ttl.json",
        Expect::Valid {
            services: &[],
            checks: &[("web-app", "ttl")],
        },
    ),
    (
        "checks-multi.json",
        Expect::Valid {
            services: &[],
            checks: &[("chk1", "script"), ("chk2", "http"), ("chk3", "script")],
        },
    ),
    (
        "redis.json",
        Expect::Valid {
            services: &[("redis", 1)],
            checks: &[],
        },
    ),
    (
        "web.json",
        Expect::Valid {
            services: &[("web", 0)],
            checks: &[],
        },
    ),
    (
        "redis-multi.json",
        Expect::Rejected(&[
            "redis-multi.json",
            r#"service "red0""#,
            r#"check "service:red0""#,
            "Interval and TTL cannot both be specified",
        ]),
    ),
];

#[test]
fn config_every_seed_example_loads_or_is_rejected_like_consul() {
    let examples = Path::new(EXAMPLES);
    if !examples.is_dir() {
        eprintln!(
            "SKIPPED config_every_seed_example_loads_or_is_rejected_like_consul: \
             {EXAMPLES} is absent"
        );
        return;
    }
    // Every example is covered, so a new one cannot slip through.
    let mut on_disk: Vec<String> = fs::read_dir(examples)
        .expect("read the examples dir")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".json") || n.ends_with(".hcl"))
        .collect();
    on_disk.sort();
    let mut covered: Vec<String> = SEED.iter().map(|(n, _)| n.to_string()).collect();
    covered.sort();
    assert_eq!(on_disk, covered, "every seed example has a verdict here");

    for (name, expect) in SEED {
        let dir = tempfile::tempdir().expect("tempdir");
        let text = fs::read(examples.join(name)).expect("read example");
        write_file(dir.path(), name, &text);
        let dir_arg = dir.path().to_str().expect("utf-8 temp path");
        let mut out = run(&["validate", "-detailed", dir_arg]);
        if SCRIPTED.contains(name) {
            // Script and Docker checks need a file to enable them (Consul
            // refuses to register them otherwise): the error names the
            // file and the key to set; with the key, it is valid.
            assert_eq!(out.status.code(), Some(1), "{name} needs scripts enabled");
            let err = stderr(&out);
            assert!(
                err.contains(&format!("{name}: "))
                    && err.contains("script checks are disabled")
                    && err.contains(r#""enable_local_script_checks": true"#),
                "{name}: {err}"
            );
            write_file(
                dir.path(),
                "00-scripts.json",
                br#"{"enable_local_script_checks": true}"#,
            );
            out = run(&["validate", "-detailed", dir_arg]);
        }
        match expect {
            Expect::Valid { services, checks } => {
                assert!(
                    out.status.success(),
                    "{name} must be valid: {}",
                    stderr(&out)
                );
                let mut want = vec!["Configuration is valid!".to_string()];
                want.extend(
                    services
                        .iter()
                        .map(|(id, n)| format!("service {id} checks={n}")),
                );
                want.extend(checks.iter().map(|(id, t)| format!("check {id} type={t}")));
                let got: Vec<String> = stdout(&out).lines().map(String::from).collect();
                assert_eq!(got, want, "{name}");
            }
            Expect::Rejected(parts) => {
                assert_eq!(out.status.code(), Some(1), "{name} must be rejected");
                let err = stderr(&out);
                assert_eq!(err.trim_end().lines().count(), 1, "one line: {err:?}");
                assert!(err.starts_with("Config validation failed: "), "{err}");
                for part in *parts {
                    assert!(err.contains(part), "{name}: {part:?} not in {err:?}");
                }
            }
        }
    }
}

#[test]
fn config_validate_rejects_a_service_id_defined_in_two_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_file(dir.path(), "a-web.json", br#"{"service":{"name":"web"}}"#);
    write_file(
        dir.path(),
        "b-web.hcl",
        b"service {\n  id = \"web\"\n  name = \"web2\"\n  port = 81\n}\n",
    );
    let out = run(&["validate", dir.path().to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains(r#"duplicate service ID "web""#), "{err}");
    assert!(
        err.contains("a-web.json") && err.contains("b-web.hcl"),
        "{err}"
    );
}

#[test]
fn config_validate_takes_files_and_dirs_and_names_bad_keys() {
    let dir = tempfile::tempdir().expect("tempdir");
    let good = write_file(dir.path(), "good.hcl", b"datacenter = \"east\"\n");
    let out = run(&["validate", good.to_str().expect("utf-8")]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "Configuration is valid!\n");

    let bad = write_file(
        dir.path(),
        "bad.json",
        br#"{"retry_join":"x","bootstrapp":true}"#,
    );
    let out = run(&["validate", bad.to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains(r#"bad.json: unknown key "bootstrapp""#),
        "{}",
        stderr(&out)
    );
    let out = run(&["validate"]);
    assert_eq!(out.status.code(), Some(1), "a path is required");
}

/// A request the stub received.
#[derive(Debug)]
struct Seen {
    method: String,
    path: String,
    body: String,
}

/// An HTTP/1.1 stub on 127.0.0.1 answering `replies` requests in order with
/// (status, body), reporting each request on the returned channel.
fn stub(replies: Vec<(u16, &'static str)>) -> (String, mpsc::Receiver<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind stub");
    let addr = listener.local_addr().expect("stub addr").to_string();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for (status, body) in replies {
            let Ok((stream, _)) = listener.accept() else {
                return;
            };
            let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
            let mut reader = BufReader::new(stream);
            let mut line = String::new();
            if reader.read_line(&mut line).is_err() {
                return;
            }
            let mut parts = line.split_whitespace();
            let method = parts.next().unwrap_or_default().to_string();
            let path = parts.next().unwrap_or_default().to_string();
            let mut len = 0;
            loop {
                let mut header = String::new();
                if reader.read_line(&mut header).is_err() || header.trim().is_empty() {
                    break;
                }
                if let Some((k, v)) = header.split_once(':') {
                    if k.eq_ignore_ascii_case("content-length") {
                        len = v.trim().parse().unwrap_or(0);
                    }
                }
            }
            let mut buf = vec![0; len];
            let _ = reader.read_exact(&mut buf);
            let _ = tx.send(Seen {
                method,
                path,
                body: String::from_utf8_lossy(&buf).into_owned(),
            });
            let mut stream = reader.into_inner();
            let _ = write!(
                stream,
                "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (addr, rx)
}

fn next(rx: &mpsc::Receiver<Seen>) -> Seen {
    rx.recv_timeout(Duration::from_secs(10))
        .expect("the stub saw a request")
}

#[test]
fn config_services_register_and_deregister_send_consul_requests() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = write_file(
        dir.path(),
        "svc.hcl",
        b"service {\n  name = \"web\"\n  port = 80\n  check {\n    ttl = \"30s\"\n  }\n}\n\
          service {\n  id = \"db/1\"\n  name = \"db\"\n}\n",
    );
    let file = file.to_str().expect("utf-8");

    let (addr, rx) = stub(vec![(200, ""), (200, "")]);
    let out = run(&["services", "register", "-http-addr", &addr, file]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "Registered service: web\nRegistered service: db\n"
    );
    let web = next(&rx);
    assert_eq!(
        (web.method.as_str(), web.path.as_str()),
        ("PUT", "/v1/agent/service/register")
    );
    let body: serde_json::Value = serde_json::from_str(&web.body).expect("JSON body");
    assert_eq!(body["Name"], "web");
    assert_eq!(body["Port"], 80);
    assert_eq!(body["Checks"][0]["TTL"], "30s");
    assert_eq!(body["Checks"][0]["CheckID"], "service:web");
    assert_eq!(next(&rx).path, "/v1/agent/service/register");

    let (addr, rx) = stub(vec![(200, "")]);
    let out = run(&[
        "services",
        "register",
        "-http-addr",
        &addr,
        "-name=api",
        "-port=8080",
        "-tag=v1",
        "-tag=v2",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let body: serde_json::Value = serde_json::from_str(&next(&rx).body).expect("JSON body");
    assert_eq!(
        (&body["ID"], &body["Tags"]),
        (&serde_json::json!("api"), &serde_json::json!(["v1", "v2"]))
    );

    let (addr, rx) = stub(vec![(200, ""), (200, "")]);
    let out = run(&["services", "deregister", "-http-addr", &addr, file]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "Deregistered service: web\nDeregistered service: db/1\n"
    );
    assert_eq!(next(&rx).path, "/v1/agent/service/deregister/web");
    assert_eq!(next(&rx).path, "/v1/agent/service/deregister/db%2F1");

    let (addr, _rx) = stub(vec![(404, "Unknown service ID \"x\"")]);
    let out = run(&["services", "deregister", "-http-addr", &addr, "-id=x"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains(r#"Error deregistering service "x": Unexpected response code: 404"#),
        "{}",
        stderr(&out)
    );
}

#[test]
fn config_maint_and_reload_send_consul_requests() {
    let (addr, rx) = stub(vec![(200, ""), (200, ""), (200, "")]);
    let out = run(&["maint", "-http-addr", &addr, "-enable", "-reason=disk swap"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "Node entered maintenance mode\n");
    let seen = next(&rx);
    assert_eq!(
        (seen.method.as_str(), seen.path.as_str()),
        (
            "PUT",
            "/v1/agent/maintenance?enable=true&reason=disk%20swap"
        )
    );
    let out = run(&["maint", "-http-addr", &addr, "-disable", "-service=web"]);
    assert_eq!(stdout(&out), "Service left maintenance mode\n");
    assert_eq!(
        next(&rx).path,
        "/v1/agent/service/maintenance/web?enable=false"
    );
    let out = run(&["reload", "-http-addr", &addr]);
    assert_eq!(stdout(&out), "Configuration reload triggered\n");
    assert_eq!(next(&rx).path, "/v1/agent/reload");

    let (addr, _rx) = stub(vec![
        (200, r#"{"Config":{"NodeName":"n1"}}"#),
        (
            200,
            r#"{"_node_maintenance":{"CheckID":"_node_maintenance","Notes":"why"}}"#,
        ),
    ]);
    let out = run(&["maint", "-http-addr", &addr]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "Node:\n  Name:   n1\n  Reason: why\n\n");

    let out = run(&["maint", "-enable", "-disable"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("Only one of -enable or -disable may be provided"));

    // No agent: one line naming the failure.
    let closed = format!("127.0.0.1:{}", free_port());
    let out = run(&["reload", "-http-addr", &closed]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).starts_with("Error reloading: "),
        "{}",
        stderr(&out)
    );
}

//! The `muster` binary's command line: `version`, `keygen`, `kv
//! get|put|delete` against a running agent (by flag and by environment),
//! help on every command, and one-line errors with exit status 1.

use std::io::Write;
use std::process::{Output, Stdio};

use base64::Engine as _;

use crate::harness::{free_port, muster, write_file, Agent};

/// Run `muster args...` and capture its output.
fn run(args: &[&str]) -> Output {
    muster().args(args).output().expect("run muster")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Assert exit 1 with exactly one line on stderr, and return that line.
fn one_line_error(out: &Output) -> String {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(1), "exit status; stderr: {err}");
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "one line on stderr: {err:?}"
    );
    err.trim_end().to_string()
}

/// `muster kv <args> -http-addr <agent>`.
fn kv(agent: &Agent, args: &[&str]) -> Output {
    let addr = agent.addr.to_string();
    let mut full = vec!["kv"];
    full.extend_from_slice(args);
    full.extend_from_slice(&["-http-addr", &addr]);
    run(&full)
}

#[test]
fn cli_version_prints_name_and_protocol() {
    let out = run(&["version"]);
    assert!(out.status.success());
    let text = stdout(&out);
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some(concat!("muster v", env!("CARGO_PKG_VERSION")))
    );
    assert!(
        lines
            .next()
            .is_some_and(|l| l.starts_with("Consul API compatibility: v1.")),
        "{text}"
    );
    assert!(lines
        .next()
        .is_some_and(|l| l.starts_with("Protocol 2 spoken by default")));
    // Consul's spellings print the same.
    for flag in ["-v", "-version", "--version"] {
        let out = run(&[flag]);
        assert!(out.status.success(), "{flag}");
        assert_eq!(stdout(&out), text, "{flag}");
    }
}

#[test]
fn cli_keygen_prints_base64_of_32_random_bytes() {
    let first = run(&["keygen"]);
    let second = run(&["keygen"]);
    assert!(first.status.success() && second.status.success());
    let key = stdout(&first).trim_end().to_string();
    assert_eq!(key.len(), 44, "{key:?}");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(&key)
        .expect("standard base64");
    assert_eq!(bytes.len(), 32);
    assert_ne!(key, stdout(&second).trim_end(), "two keys differ");
}

#[test]
fn cli_help_works_on_every_command() {
    let commands: [&[&str]; 8] = [
        &[],
        &["agent"],
        &["kv"],
        &["kv", "get"],
        &["kv", "put"],
        &["kv", "delete"],
        &["version"],
        &["keygen"],
    ];
    for command in commands {
        for help in ["--help", "-help", "-h"] {
            let mut args = command.to_vec();
            args.push(help);
            let out = run(&args);
            assert!(out.status.success(), "muster {args:?}: {}", stderr(&out));
            assert!(
                stdout(&out).contains("Usage: muster"),
                "muster {args:?}: {}",
                stdout(&out)
            );
        }
    }
    // Long flags are shown as Consul spells them (`-dev`).
    let agent_help = stdout(&run(&["agent", "-help"]));
    for flag in [
        "--dev",
        "--server",
        "--bootstrap",
        "--bootstrap-expect",
        "--node",
        "--datacenter",
        "--bind",
        "--client",
        "--advertise",
        "--data-dir",
        "--config-dir",
        "--config-file",
        "--http-port",
        "--dns-port",
        "--server-port",
        "--serf-lan-port",
        "--serf-wan-port",
        "--log-level",
    ] {
        let flag = &flag[1..];
        assert!(
            agent_help.contains(&format!(" {flag} ")),
            "agent help lacks {flag}"
        );
    }
}

#[test]
fn cli_agent_without_data_dir_is_a_one_line_error() {
    for args in [&["agent"][..], &["agent", "-server", "-bootstrap"][..]] {
        let line = one_line_error(&run(args));
        assert!(line.contains("-data-dir"), "{line}");
        assert!(line.contains("-dev"), "the fix is named: {line}");
    }
}

#[test]
fn cli_invalid_config_file_is_a_one_line_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = write_file(dir.path(), "bad.json", b"{\"server\": tru");
    let line = one_line_error(&run(&[
        "agent",
        "-dev",
        "-http-port",
        "0",
        "-config-file",
        &bad.display().to_string(),
    ]));
    assert!(line.contains("bad.json"), "{line}");
}

#[test]
fn cli_bad_flag_values_are_one_line_errors() {
    let line = one_line_error(&run(&["agent", "-dev", "-log-level", "loud"]));
    assert!(line.contains("-log-level"), "{line}");
    let line = one_line_error(&run(&["agent", "-dev", "-datacenter", "dc.1"]));
    assert!(line.contains("-datacenter"), "{line}");
}

#[test]
fn cli_unknown_flags_and_commands_fail() {
    for args in [
        &["agent", "-dev", "-no-such-flag"][..],
        &["kv", "get", "-bogus", "k"][..],
        &["kv", "frobnicate"][..],
        &["nonsense"][..],
    ] {
        let out = run(args);
        assert!(!out.status.success(), "muster {args:?} succeeded");
        assert!(!stderr(&out).is_empty(), "muster {args:?} said nothing");
    }
}

#[test]
fn cli_kv_without_an_agent_says_how_to_start_one() {
    let addr = format!("127.0.0.1:{}", free_port());
    let line = one_line_error(&run(&["kv", "get", "-http-addr", &addr, "k"]));
    assert_eq!(
        line,
        format!(
            "Error querying agent: connection refused to {addr}: is an agent running? \
             Start one with 'muster agent -dev'"
        )
    );
}

#[test]
fn cli_kv_put_get_delete_round_trip() {
    let agent = Agent::dev();
    let addr = agent.addr.to_string();

    // Go-style, double-dash and `=` forms of the flag all work.
    let put = run(&[
        "kv",
        "put",
        &format!("-http-addr={addr}"),
        "cli/k",
        "hello world",
    ]);
    assert!(put.status.success(), "{}", stderr(&put));
    assert_eq!(stdout(&put), "Success! Data written to: cli/k\n");
    assert_eq!(
        agent.kv_get("cli/k").expect("written").value,
        b"hello world"
    );

    let get = run(&[
        "kv",
        "get",
        "--http-addr",
        &format!("http://{addr}"),
        "cli/k",
    ]);
    assert!(get.status.success(), "{}", stderr(&get));
    assert_eq!(stdout(&get), "hello world\n");

    let del = kv(&agent, &["delete", "cli/k"]);
    assert!(del.status.success(), "{}", stderr(&del));
    assert_eq!(stdout(&del), "Success! Deleted key: cli/k\n");
    assert!(agent.kv_get("cli/k").is_none());

    let line = one_line_error(&kv(&agent, &["get", "cli/k"]));
    assert_eq!(line, "Error! No key exists at: cli/k");
}

#[test]
fn cli_kv_finds_the_agent_through_the_environment() {
    let agent = Agent::dev();
    let addr = agent.addr.to_string();
    for var in ["CONSUL_HTTP_ADDR", "MUSTER_HTTP_ADDR"] {
        let key = format!("env/{var}");
        let out = muster()
            .env(var, &addr)
            .args(["kv", "put", &key, var])
            .output()
            .expect("run muster");
        assert!(out.status.success(), "{var}: {}", stderr(&out));
        let got = muster()
            .env(var, &addr)
            .args(["kv", "get", &key])
            .output()
            .expect("run muster");
        assert_eq!(stdout(&got), format!("{var}\n"));
    }
    // The flag wins over the environment.
    let dead = format!("127.0.0.1:{}", free_port());
    let out = muster()
        .env("CONSUL_HTTP_ADDR", &dead)
        .args(["kv", "get", "-http-addr", &addr, "env/CONSUL_HTTP_ADDR"])
        .output()
        .expect("run muster");
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn cli_kv_cas_and_flags() {
    let agent = Agent::dev();
    let out = kv(&agent, &["put", "-cas", "-flags=7", "c", "one"]);
    assert!(
        out.status.success(),
        "-cas without an index creates: {}",
        stderr(&out)
    );
    let line = one_line_error(&kv(&agent, &["put", "-cas", "c", "two"]));
    assert_eq!(line, "Error! Did not write to key: c");

    let pair = agent.kv_get("c").expect("exists");
    assert_eq!((pair.value.as_slice(), pair.flags), (&b"one"[..], 7));
    let detailed = stdout(&kv(&agent, &["get", "-detailed", "c"]));
    assert!(
        detailed.contains(&format!("ModifyIndex      {}", pair.modify_index)),
        "{detailed}"
    );
    assert!(detailed.contains("Flags            7"), "{detailed}");

    let stale = format!("-modify-index={}", pair.modify_index + 100);
    one_line_error(&kv(&agent, &["put", "-cas", &stale, "c", "two"]));
    let current = format!("-modify-index={}", pair.modify_index);
    let out = kv(&agent, &["put", "-cas", &current, "c", "two"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        agent.kv_get("c").expect("exists").flags,
        0,
        "no -flags resets"
    );

    let line = one_line_error(&kv(&agent, &["delete", "-cas", &current, "c"]));
    assert!(line.contains("CAS failed"), "{line}");
    let index = format!(
        "-modify-index={}",
        agent.kv_get("c").expect("exists").modify_index
    );
    assert!(kv(&agent, &["delete", "-cas", &index, "c"])
        .status
        .success());
    assert!(agent.kv_get("c").is_none());
}

#[test]
fn cli_kv_listings_and_recursive_delete() {
    let agent = Agent::dev();
    for (k, v) in [("l/x", "1"), ("l/y", "2"), ("l/z/w", "3"), ("m", "4")] {
        assert!(kv(&agent, &["put", k, v]).status.success());
    }
    assert_eq!(
        stdout(&kv(&agent, &["get", "-recurse", "l/"])),
        "l/x:1\nl/y:2\nl/z/w:3\n"
    );
    assert_eq!(
        stdout(&kv(&agent, &["get", "-keys", "l/"])),
        "l/x\nl/y\nl/z/\n"
    );
    assert_eq!(
        stdout(&kv(&agent, &["get", "-keys", "-separator=", "l/"])),
        "l/x\nl/y\nl/z/w\n"
    );
    let empty = kv(&agent, &["get", "-recurse", "nothing/"]);
    assert!(empty.status.success());
    assert!(stdout(&empty).is_empty());

    let del = kv(&agent, &["delete", "-recurse", "l/"]);
    assert!(del.status.success(), "{}", stderr(&del));
    assert_eq!(stdout(&del), "Success! Deleted keys with prefix: l/\n");
    assert!(stdout(&kv(&agent, &["get", "-recurse", "l/"])).is_empty());
    assert_eq!(stdout(&kv(&agent, &["get", "m"])), "4\n");
}

#[test]
fn cli_kv_put_reads_files_and_stdin() {
    let agent = Agent::dev();
    let dir = tempfile::tempdir().expect("tempdir");
    let bytes: Vec<u8> = (0..=255u8).collect();
    let file = write_file(dir.path(), "value.bin", &bytes);
    let out = kv(&agent, &["put", "file", &format!("@{}", file.display())]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(agent.kv_get("file").expect("exists").value, bytes);

    let mut child = muster()
        .args([
            "kv",
            "put",
            "-http-addr",
            &agent.addr.to_string(),
            "stdin",
            "-",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn muster");
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(b"from stdin")
        .expect("write stdin");
    let out = child.wait_with_output().expect("wait");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(agent.kv_get("stdin").expect("exists").value, b"from stdin");
}

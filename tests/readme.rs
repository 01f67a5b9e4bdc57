//! The README's walk-through, run as written (issue 15): every `sh` block
//! between its `walkthrough: begin` and `walkthrough: end` markers, in a
//! network namespace of its own (so Consul's fixed ports and 127.0.0.2 are
//! free), from the repository root, with `muster` on the PATH. `muster
//! agent` commands run in the background until their readiness line; every
//! other command must succeed and print exactly the `text` block that
//! follows it. The only change to the commands is where `/tmp/muster`
//! points (a temporary directory). The prose around the commands (what the
//! agents log, DNS, Ctrl-C) is checked too.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use hickory_proto::rr::{RData, RecordType};

use crate::harness::MUSTER;
use crate::netns::{in_netns, Netns};

const README: &str = include_str!("../README.md");

/// One command of the walk-through and the output the README shows for it.
#[derive(Debug)]
struct Step {
    command: String,
    expect: Option<Vec<String>>,
}

/// The walk-through's steps, in order.
fn steps() -> Vec<Step> {
    let begin = README
        .find("<!-- walkthrough: begin")
        .expect("the README has a walk-through");
    let end = README[begin..]
        .find("<!-- walkthrough: end -->")
        .expect("the walk-through ends")
        + begin;
    let mut steps: Vec<Step> = Vec::new();
    let mut block: Option<(String, Vec<String>)> = None;
    for line in README[begin..end].lines() {
        match (&mut block, line) {
            (None, fence) if fence.starts_with("```") => {
                block = Some((fence.trim_start_matches('`').to_string(), Vec::new()));
            }
            (Some(_), "```") => {
                let (kind, lines) = block.take().expect("in a block");
                match kind.as_str() {
                    "sh" => steps.extend(lines.into_iter().map(|command| Step {
                        command,
                        expect: None,
                    })),
                    "text" => {
                        let last = steps.last_mut().expect("output follows a command");
                        last.expect = Some(lines);
                    }
                    other => panic!("unexpected block {other:?} in the walk-through"),
                }
            }
            (Some((_, lines)), line) => lines.push(line.to_string()),
            (None, _) => {}
        }
    }
    steps
}

/// An agent started by the walk-through, killed on drop.
struct Background {
    child: Child,
    log: std::path::PathBuf,
}

impl Background {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("---- {} ----\n{}", self.log.display(), self.log());
        }
    }
}

#[test]
fn readme_walkthrough_runs_as_written() {
    let steps = steps();
    assert!(
        steps.len() >= 4 && steps.iter().filter(|s| s.expect.is_some()).count() >= 2,
        "{steps:?}"
    );
    let Some(ns) = Netns::create() else {
        eprintln!("SKIPPED: running the walk-through needs network namespaces (root and ip)");
        return;
    };
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("muster");
    let bin = Path::new(MUSTER).parent().expect("the binary's directory");
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let repo = env!("CARGO_MANIFEST_DIR");
    let mut agents: Vec<Background> = Vec::new();
    for (i, step) in steps.iter().enumerate() {
        let command = step
            .command
            .replace("/tmp/muster", data.to_str().expect("utf-8"));
        let mut cmd = ns.command("sh");
        cmd.current_dir(repo)
            .env("PATH", &path)
            .env_remove("CONSUL_HTTP_ADDR")
            .env_remove("MUSTER_HTTP_ADDR")
            .stdin(Stdio::null());
        if command.starts_with("muster agent ") {
            let log = tmp.path().join(format!("agent-{i}.log"));
            let file = std::fs::File::create(&log).expect("log file");
            let mut child = cmd
                .args(["-c", &format!("exec {command}")])
                .stdout(Stdio::piped())
                .stderr(file)
                .spawn()
                .expect("spawn the agent");
            let stdout = child.stdout.take().expect("stdout");
            let (tx, rx) = mpsc::channel();
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    let _ = tx.send(line);
                }
            });
            let agent = Background { child, log };
            let ready = rx
                .recv_timeout(Duration::from_secs(30))
                .unwrap_or_else(|e| panic!("{command}: no readiness line ({e}):\n{}", agent.log()));
            assert!(ready.starts_with("muster agent ready: "), "{ready}");
            agents.push(agent);
            continue;
        }
        let out = cmd
            .args(["-c", &format!("timeout 30 {command}")])
            .output()
            .expect("run the command");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{command}: {:?}\n{stdout}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        if let Some(expect) = &step.expect {
            let got: Vec<&str> = stdout.lines().map(str::trim_end).collect();
            let want: Vec<&str> = expect.iter().map(|l| l.trim_end()).collect();
            assert_eq!(got, want, "{command}: the README shows other output");
        }
    }

    // What the prose around the commands says.
    let [server, client] = &mut agents[..] else {
        panic!("the walk-through starts two agents");
    };
    for (who, agent, needle) in [
        (
            "server",
            &*server,
            "ui_dir /data/consul-ui has no index.html: serving the built-in UI",
        ),
        ("server", &*server, "cluster leadership acquired"),
        ("server", &*server, "EventMemberJoin: client-1 127.0.0.2"),
        ("client", &*client, "(LAN) joined: number_of_nodes=1"),
        ("client", &*client, r#"Synced service "web""#),
    ] {
        assert!(
            agent.log().contains(needle),
            "{who} log lacks {needle:?}:\n{}",
            agent.log()
        );
    }
    let srv = in_netns(&ns.name, || {
        crate::dns::udp(
            "127.0.0.1:8600".parse().expect("addr"),
            "web.service.consul",
            RecordType::SRV,
        )
        .1
    })
    .expect("a DNS answer from inside the namespace");
    let targets: Vec<(u16, String)> = srv
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::SRV(srv) => Some((srv.port, srv.target.to_ascii())),
            _ => None,
        })
        .collect();
    assert_eq!(targets.len(), 1, "{srv:?}");
    assert_eq!(targets[0].0, 80);
    let glue: Vec<_> = crate::dns::a_addrs(&srv.additionals).into_iter().collect();
    assert_eq!(
        glue,
        ["127.0.0.2".parse::<std::net::Ipv4Addr>().expect("ip")]
    );

    // Ctrl-C: the client stops within 2 s and leaves; the server sees it.
    let pid = client.child.id().to_string();
    let sent = std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .expect("kill -INT");
    assert!(sent.success());
    let start = Instant::now();
    loop {
        if let Some(status) = client.child.try_wait().expect("try_wait") {
            assert!(status.success(), "{status:?}");
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "still running after 2 s"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while !server
        .log()
        .contains("EventMemberLeave: client-1 127.0.0.2")
    {
        assert!(
            Instant::now() < deadline,
            "no leave seen:\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

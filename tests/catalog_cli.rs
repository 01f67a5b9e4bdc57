//! The `muster catalog` commands (consul-compat.md §11.3) against a real
//! agent: `datacenters`, `nodes` and `services` with their flags and output,
//! help text, and usage and connection errors.

use std::process::Output;

use serde_json::json;

use crate::catalog::{register_ok, ALPHA_ID};
use crate::harness::{free_port, muster, Agent};

/// `muster catalog <args> -http-addr <agent>`.
fn catalog_cli(agent: &Agent, args: &[&str]) -> Output {
    let addr = agent.addr.to_string();
    let mut full = vec!["catalog"];
    full.extend_from_slice(args);
    full.extend_from_slice(&["-http-addr", &addr]);
    muster().args(&full).output().expect("run muster catalog")
}

/// Exit 0; stdout as text.
fn ok_stdout(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}; stderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Two nodes tagged `group=cli` for the CLI tests: alpha (UUID, tagged
/// address, web v1+primary) and beta-node (no ID, web v2 and db).
fn seed_cli(agent: &Agent) {
    register_ok(
        agent,
        &json!({
            "ID": ALPHA_ID, "Node": "alpha", "Address": "10.0.0.1",
            "TaggedAddresses": {"lan": "10.0.0.1"},
            "NodeMeta": {"group": "cli", "rack": "r1"},
            "Service": {"ID": "web1", "Service": "web", "Tags": ["v1", "primary"]},
        }),
    );
    register_ok(
        agent,
        &json!({
            "Node": "beta-node", "Address": "10.0.0.22", "NodeMeta": {"group": "cli"},
            "Service": {"ID": "web2", "Service": "web", "Tags": ["v2"]},
        }),
    );
    register_ok(
        agent,
        &json!({
            "Node": "beta-node", "Address": "10.0.0.22", "NodeMeta": {"group": "cli"},
            "Service": {"ID": "db1", "Service": "db"},
        }),
    );
}

#[test]
fn cli_catalog_datacenters_and_nodes() {
    let agent = Agent::dev();
    seed_cli(&agent);

    assert_eq!(ok_stdout(&catalog_cli(&agent, &["datacenters"])), "dc1\n");

    assert_eq!(
        ok_stdout(&catalog_cli(&agent, &["nodes", "-node-meta", "group=cli"])),
        "Node       ID        Address    DC\n\
         alpha      40e4a748  10.0.0.1   dc1\n\
         beta-node            10.0.0.22  dc1\n"
    );
    assert_eq!(
        ok_stdout(&catalog_cli(&agent, &["nodes", "-detailed", "-node-meta=group=cli"])),
        "Node       ID                                    Address    DC   TaggedAddresses  Meta\n\
         alpha      40e4a748-2192-161a-0510-9bf59fe950b5  10.0.0.1   dc1  lan=10.0.0.1     group=cli, rack=r1\n\
         beta-node                                        10.0.0.22  dc1                   group=cli\n"
    );
    // Repeated -node-meta: all must match.
    assert_eq!(
        ok_stdout(&catalog_cli(
            &agent,
            &["nodes", "-node-meta", "group=cli", "-node-meta", "rack=r1"]
        )),
        "Node   ID        Address   DC\nalpha  40e4a748  10.0.0.1  dc1\n"
    );
    // -service: the nodes that run it.
    assert_eq!(
        ok_stdout(&catalog_cli(&agent, &["nodes", "-service=db"])),
        "Node       ID  Address    DC\nbeta-node      10.0.0.22  dc1\n"
    );
    // The plain listing holds both nodes (and maybe the agent's own).
    let plain = ok_stdout(&catalog_cli(&agent, &["nodes"]));
    let mut lines = plain.lines();
    assert_eq!(
        lines
            .next()
            .map(|h| h.split_whitespace().collect::<Vec<_>>()),
        Some(vec!["Node", "ID", "Address", "DC"])
    );
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split_whitespace().collect()).collect();
    assert!(
        rows.contains(&vec!["alpha", "40e4a748", "10.0.0.1", "dc1"]),
        "{plain}"
    );
    assert!(
        rows.contains(&vec!["beta-node", "10.0.0.22", "dc1"]),
        "{plain}"
    );

    // Nothing matches: a note on stderr, exit 0.
    let none = catalog_cli(&agent, &["nodes", "-service=nope"]);
    assert_eq!(ok_stdout(&none), "");
    assert!(
        String::from_utf8_lossy(&none.stderr).contains("No nodes match the given query"),
        "{}",
        String::from_utf8_lossy(&none.stderr)
    );
}

#[test]
fn cli_catalog_services() {
    let agent = Agent::dev();
    seed_cli(&agent);

    assert_eq!(
        ok_stdout(&catalog_cli(
            &agent,
            &["services", "-node-meta", "group=cli"]
        )),
        "db\nweb\n"
    );
    let all = ok_stdout(&catalog_cli(&agent, &["services"]));
    let names: Vec<&str> = all.lines().collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted, "names are sorted");
    assert!(names.contains(&"db") && names.contains(&"web"), "{all}");

    assert_eq!(
        ok_stdout(&catalog_cli(
            &agent,
            &["services", "-tags", "-node-meta", "group=cli"]
        )),
        "db\nweb      primary,v1,v2\n"
    );
    assert_eq!(
        ok_stdout(&catalog_cli(&agent, &["services", "-node=beta-node"])),
        "db\nweb\n"
    );
    assert_eq!(
        ok_stdout(&catalog_cli(
            &agent,
            &["services", "-node", "alpha", "-tags"]
        )),
        "web      primary,v1\n"
    );
    let none = catalog_cli(&agent, &["services", "-node=nowhere"]);
    assert_eq!(ok_stdout(&none), "");
    assert!(String::from_utf8_lossy(&none.stderr).contains("No services match the given query"));
}

#[test]
fn cli_catalog_help_and_errors() {
    for command in [
        &["catalog"][..],
        &["catalog", "datacenters"],
        &["catalog", "nodes"],
        &["catalog", "services"],
    ] {
        for help in ["--help", "-help"] {
            let mut args = command.to_vec();
            args.push(help);
            let out = muster().args(&args).output().expect("run muster");
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(out.status.success(), "muster {args:?}");
            assert!(
                text.contains("Usage: muster catalog"),
                "muster {args:?}: {text}"
            );
            if command.len() > 1 {
                assert!(text.contains(" -http-addr "), "muster {args:?}: {text}");
            }
        }
    }
    let help = String::from_utf8_lossy(
        &muster()
            .args(["catalog", "nodes", "-help"])
            .output()
            .expect("run")
            .stdout,
    )
    .into_owned();
    for flag in [
        "--service",
        "--detailed",
        "--node-meta",
        "--filter",
        "--datacenter",
        "--stale",
    ] {
        // Shown as Consul spells it: `-service`.
        assert!(help.contains(&flag[1..]), "nodes help lacks {flag}: {help}");
    }
    let help = String::from_utf8_lossy(
        &muster()
            .args(["catalog", "services", "-help"])
            .output()
            .expect("run")
            .stdout,
    )
    .into_owned();
    for flag in ["--node", "--tags", "--node-meta"] {
        assert!(
            help.contains(&flag[1..]),
            "services help lacks {flag}: {help}"
        );
    }

    // No agent: one line on stderr, exit 1.
    let dead = format!("127.0.0.1:{}", free_port());
    for sub in ["datacenters", "nodes", "services"] {
        let out = muster()
            .args(["catalog", sub, "-http-addr", &dead])
            .output()
            .expect("run muster");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{sub}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{sub}: {err:?}");
        assert!(err.contains("connection refused"), "{sub}: {err}");
    }
    let bad = muster()
        .args([
            "catalog",
            "nodes",
            "-node-meta",
            "nokey",
            "-http-addr",
            &dead,
        ])
        .output()
        .expect("run");
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("key=value"));
}

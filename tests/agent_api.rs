//! `/v1/agent/*` against a real agent (consul-compat.md §5, §6): maintenance
//! (node and service), anti-entropy restoring a service deleted from the
//! catalog behind the agent's back, the service endpoints (shape, filter,
//! 404s, IDs with `/`), local service health codes, members, the seed's
//! config examples loaded with `-config-dir`, reload on SIGHUP and
//! `/v1/agent/reload`, and API-registered services surviving `kill -9`.

use std::fs;
use std::path::Path;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::agent_checks::{
    agent_check, agent_with_config_dir, poll, put_ok, register_service, wait_agent_status, BOUND,
};
use crate::harness::{muster, write_file, Agent};

/// The seed's config examples.
const EXAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/seed/examples");

/// `/v1/agent/services` as JSON.
fn agent_services(agent: &Agent) -> Value {
    let resp = agent.get("/v1/agent/services");
    assert_eq!(resp.status, 200, "{}", resp.text());
    resp.json()
}

/// The service IDs in `/v1/catalog/service/<name>`.
fn catalog_ids(agent: &Agent, name: &str) -> Vec<String> {
    let resp = agent.get(&format!("/v1/catalog/service/{name}"));
    assert_eq!(resp.status, 200, "{}", resp.text());
    resp.json()
        .as_array()
        .expect("a list")
        .iter()
        .map(|s| s["ServiceID"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// Wait until `/v1/catalog/service/<name>` has (or lacks) instance `id`.
fn wait_catalog_has(agent: &Agent, name: &str, id: &str, present: bool) {
    poll(
        &format!("catalog {name} has {id}: {present}"),
        BOUND,
        || {
            let ids = catalog_ids(agent, name);
            if ids.iter().any(|i| i == id) == present {
                Ok(())
            } else {
                Err(format!("{ids:?}"))
            }
        },
    )
}

/// The instance IDs of `/v1/health/service/<name>?passing`.
fn passing_ids(agent: &Agent, name: &str) -> Vec<String> {
    let resp = agent.get(&format!("/v1/health/service/{name}?passing"));
    assert_eq!(resp.status, 200, "{}", resp.text());
    resp.json()
        .as_array()
        .expect("a list")
        .iter()
        .map(|e| e["Service"]["ID"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// The check `id` in `/v1/health/node/<node>`.
fn node_check(agent: &Agent, node: &str, id: &str) -> Option<Value> {
    let resp = agent.get(&format!("/v1/health/node/{node}"));
    assert_eq!(resp.status, 200, "{}", resp.text());
    resp.json()
        .as_array()
        .expect("a list")
        .iter()
        .find(|c| c["CheckID"] == id)
        .cloned()
}

#[test]
fn agent_node_and_service_maintenance_reach_the_catalog() {
    let agent = Agent::dev();
    let node = agent.ready_field("node").to_string();
    register_service(
        &agent,
        &json!({"Name": "maint-web", "Port": 80, "Check": {"TTL": "10m", "Status": "passing"}}),
    );
    poll("maint-web passing", BOUND, || {
        let ids = passing_ids(&agent, "maint-web");
        if ids == ["maint-web"] {
            Ok(())
        } else {
            Err(format!("{ids:?}"))
        }
    });

    // Node maintenance.
    let resp = agent.put("/v1/agent/maintenance?enable=true&reason=r", b"");
    assert_eq!(resp.status, 200, "{}", resp.text());
    let local = agent_check(&agent, "_node_maintenance").expect("local maintenance check");
    assert_eq!(local["Status"], "critical", "{local}");
    let c = poll("_node_maintenance in the catalog", BOUND, || {
        node_check(&agent, &node, "_node_maintenance").ok_or_else(|| "absent".to_string())
    });
    assert_eq!(c["Status"], "critical", "{c}");
    assert_eq!(c["Notes"], "r", "{c}");
    poll("maint-web drops out of ?passing", BOUND, || {
        let ids = passing_ids(&agent, "maint-web");
        if ids.is_empty() {
            Ok(())
        } else {
            Err(format!("{ids:?}"))
        }
    });
    let resp = agent.put("/v1/agent/maintenance?enable=false", b"");
    assert_eq!(resp.status, 200, "{}", resp.text());
    poll("_node_maintenance gone", BOUND, || {
        match node_check(&agent, &node, "_node_maintenance") {
            None => Ok(()),
            Some(c) => Err(c.to_string()),
        }
    });
    assert!(agent_check(&agent, "_node_maintenance").is_none());
    poll("maint-web back in ?passing", BOUND, || {
        let ids = passing_ids(&agent, "maint-web");
        if ids == ["maint-web"] {
            Ok(())
        } else {
            Err(format!("{ids:?}"))
        }
    });

    // Service maintenance.
    let id = "_service_maintenance:maint-web";
    let resp = agent.put(
        "/v1/agent/service/maintenance/maint-web?enable=true&reason=swap",
        b"",
    );
    assert_eq!(resp.status, 200, "{}", resp.text());
    let c = poll("service maintenance in the catalog", BOUND, || {
        node_check(&agent, &node, id).ok_or_else(|| "absent".to_string())
    });
    assert_eq!(c["Status"], "critical", "{c}");
    assert_eq!(c["Notes"], "swap", "{c}");
    assert_eq!(c["ServiceID"], "maint-web", "{c}");
    poll("maint-web drops out of ?passing", BOUND, || {
        let ids = passing_ids(&agent, "maint-web");
        if ids.is_empty() {
            Ok(())
        } else {
            Err(format!("{ids:?}"))
        }
    });
    let resp = agent.get("/v1/agent/health/service/id/maint-web");
    assert_eq!(resp.status, 503, "{}", resp.text());
    assert_eq!(resp.json()["AggregatedStatus"], "maintenance");
    let resp = agent.put("/v1/agent/service/maintenance/maint-web?enable=false", b"");
    assert_eq!(resp.status, 200, "{}", resp.text());
    poll("service maintenance gone", BOUND, || {
        match node_check(&agent, &node, id) {
            None => Ok(()),
            Some(c) => Err(c.to_string()),
        }
    });

    // Errors.
    for path in [
        "/v1/agent/maintenance",
        "/v1/agent/service/maintenance/maint-web",
    ] {
        let resp = agent.put(path, b"");
        assert_eq!(resp.status, 400, "{path}: {}", resp.text());
        assert!(
            resp.text().contains("Missing value for enable"),
            "{path}: {}",
            resp.text()
        );
    }
    let resp = agent.put("/v1/agent/maintenance?enable=x", b"");
    assert_eq!(resp.status, 400, "{}", resp.text());
    assert!(
        resp.text().contains(r#"Invalid value for enable: "x""#),
        "{}",
        resp.text()
    );
    let resp = agent.put("/v1/agent/service/maintenance/nope?enable=true", b"");
    assert_eq!(resp.status, 404, "{}", resp.text());
}

/// Anti-entropy restores a service deleted from the catalog behind the
/// agent's back. The periodic full sync runs every minute, too slow for a
/// test, so a sync is triggered: first by `PUT /v1/agent/reload`, then by
/// registering another service (every local change wakes a full sync).
#[test]
fn agent_anti_entropy_restores_a_service_deleted_from_the_catalog() {
    let agent = Agent::dev();
    let node = agent.ready_field("node").to_string();
    register_service(
        &agent,
        &json!({"Name": "ae", "ID": "ae-1", "Port": 81, "Check": {"TTL": "10m"}}),
    );
    wait_catalog_has(&agent, "ae", "ae-1", true);

    for (round, trigger) in ["reload", "register"].into_iter().enumerate() {
        let resp = agent.put(
            "/v1/catalog/deregister",
            json!({"Node": node, "ServiceID": "ae-1"})
                .to_string()
                .as_bytes(),
        );
        assert_eq!(resp.status, 200, "{}", resp.text());
        assert!(
            !catalog_ids(&agent, "ae").contains(&"ae-1".to_string()),
            "deleted from the catalog"
        );
        match trigger {
            "reload" => {
                let resp = agent.put("/v1/agent/reload", b"");
                assert_eq!(resp.status, 200, "{}", resp.text());
            }
            _ => register_service(
                &agent,
                &json!({"Name": "ae-other", "ID": format!("ae-other-{round}")}),
            ),
        }
        wait_catalog_has(&agent, "ae", "ae-1", true);
        // Its check came back with it.
        poll("service:ae-1 back in health", BOUND, || {
            let resp = agent.get("/v1/health/checks/ae");
            let checks = resp.json();
            let found = checks
                .as_array()
                .is_some_and(|l| l.iter().any(|c| c["CheckID"] == "service:ae-1"));
            if found {
                Ok(())
            } else {
                Err(checks.to_string())
            }
        });
    }
}

#[test]
fn agent_service_endpoints_shape_filter_404_and_encoded_ids() {
    let agent = Agent::dev();
    register_service(
        &agent,
        &json!({"Name": "web", "ID": "web-1", "Tags": ["v1"], "Port": 8080, "Meta": {"k": "v"}}),
    );
    register_service(&agent, &json!({"Name": "db", "Port": 5432}));

    let all = agent_services(&agent);
    let web = &all["web-1"];
    assert_eq!(web["ID"], "web-1", "{all}");
    assert_eq!(web["Service"], "web");
    assert_eq!(web["Tags"], json!(["v1"]));
    assert_eq!(web["Meta"], json!({"k": "v"}));
    assert_eq!(web["Port"], 8080);
    assert_eq!(web["Address"], "");
    assert_eq!(web["Weights"], json!({"Passing": 1, "Warning": 1}));
    assert_eq!(web["EnableTagOverride"], false);
    assert_eq!(web["Datacenter"], "dc1");
    assert_eq!(all["db"]["Tags"], json!([]), "Tags is [] when none: {all}");
    assert_eq!(
        all["db"]["Meta"],
        json!({}),
        "Meta is {{}} when none: {all}"
    );

    let resp = agent.get("/v1/agent/services?filter=Service%20%3D%3D%20%22db%22");
    assert_eq!(resp.status, 200, "{}", resp.text());
    let filtered = resp.json();
    let keys: Vec<&String> = filtered.as_object().expect("an object").keys().collect();
    assert_eq!(keys, ["db"], "{filtered}");

    let resp = agent.get("/v1/agent/service/web-1");
    assert_eq!(resp.status, 200, "{}", resp.text());
    let one = resp.json();
    assert_eq!(one["ID"], "web-1");
    assert!(
        one["ContentHash"].as_str().is_some_and(|h| !h.is_empty()),
        "{one}"
    );

    let resp = agent.get("/v1/agent/service/nope");
    assert_eq!(resp.status, 404, "{}", resp.text());
    assert!(
        resp.text().contains("unknown service ID: nope"),
        "{}",
        resp.text()
    );

    // Patroni's IDs contain '/', sent percent-encoded.
    register_service(
        &agent,
        &json!({"Name": "batman", "ID": "batman/pg0", "Port": 5432, "Check": {"TTL": "30s"}}),
    );
    assert!(agent_services(&agent).get("batman/pg0").is_some());
    let resp = agent.get("/v1/agent/service/batman%2Fpg0");
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(resp.json()["ID"], "batman/pg0");
    wait_catalog_has(&agent, "batman", "batman/pg0", true);
    let resp = agent.put("/v1/agent/service/deregister/batman%2Fpg0", b"");
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert!(agent_services(&agent).get("batman/pg0").is_none());
    assert!(
        agent_check(&agent, "service:batman/pg0").is_none(),
        "its checks go with it"
    );
    wait_catalog_has(&agent, "batman", "batman/pg0", false);

    let resp = agent.put("/v1/agent/service/deregister/nope", b"");
    assert_eq!(resp.status, 404, "{}", resp.text());
    assert!(
        resp.text().contains(r#"Unknown service ID "nope""#),
        "{}",
        resp.text()
    );
}

#[test]
fn agent_local_service_health_answers_200_429_503() {
    let agent = Agent::dev();
    register_service(
        &agent,
        &json!({"Name": "lh", "ID": "lh-1", "Port": 1, "Check": {"TTL": "10m"}}),
    );
    let by_id = "/v1/agent/health/service/id/lh-1";
    let by_name = "/v1/agent/health/service/name/lh";

    let resp = agent.get(by_id);
    assert_eq!(
        resp.status,
        503,
        "TTL checks start critical: {}",
        resp.text()
    );
    let body = resp.json();
    assert_eq!(body["AggregatedStatus"], "critical");
    assert_eq!(body["Service"]["ID"], "lh-1");
    assert!(body["Checks"].as_array().is_some_and(|c| !c.is_empty()));
    assert_eq!(agent.get(by_name).status, 503);

    for (verb, code, word) in [
        ("warn", 429, "warning"),
        ("pass", 200, "passing"),
        ("fail", 503, "critical"),
    ] {
        let resp = agent.put(&format!("/v1/agent/check/{verb}/service:lh-1"), b"");
        assert_eq!(resp.status, 200, "{}", resp.text());
        let resp = agent.get(by_id);
        assert_eq!(resp.status, code, "{verb}: {}", resp.text());
        assert_eq!(resp.json()["AggregatedStatus"], word);
        let resp = agent.get(by_name);
        assert_eq!(resp.status, code, "{verb}: {}", resp.text());
        let list = resp.json();
        assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");
        assert_eq!(list[0]["AggregatedStatus"], word);
        let text = agent.get(&format!("{by_id}?format=text"));
        assert_eq!((text.status, text.text().trim()), (code, word));
    }

    let resp = agent.get("/v1/agent/health/service/id/nope");
    assert_eq!(resp.status, 404, "{}", resp.text());
    let body = resp.json();
    assert_eq!(
        body,
        json!({"AggregatedStatus": "critical", "Service": null, "Checks": null})
    );
    let text = agent.get("/v1/agent/health/service/id/nope?format=text");
    assert_eq!(
        (text.status, text.text().trim()),
        (404, "ServiceId nope not found")
    );
    let resp = agent.get("/v1/agent/health/service/name/nope");
    assert_eq!(resp.status, 404, "{}", resp.text());
    assert_eq!(resp.json(), json!([]));
}

#[test]
fn agent_members_lists_this_node_alive() {
    let agent = Agent::dev();
    let resp = agent.get("/v1/agent/members");
    assert_eq!(resp.status, 200, "{}", resp.text());
    let members = resp.json();
    let list = members.as_array().expect("a list");
    assert_eq!(list.len(), 1, "{members}");
    assert_eq!(list[0]["Name"], agent.ready_field("node"));
    assert_eq!(list[0]["Status"], 1, "alive: {members}");
    assert!(list[0]["Addr"].as_str().is_some_and(|a| !a.is_empty()));
    assert_eq!(list[0]["Tags"]["dc"], "dc1", "{members}");
}

/// The seed examples that define services or checks, with the service IDs
/// and the (check ID, type) pairs they must add to the agent.
/// One seed example: file name, service IDs, (check ID, type) pairs.
type SeedExample = (
    &'static str,
    &'static [&'static str],
    &'static [(&'static str, &'static str)],
);

const SEED_LOADED: &[SeedExample] = &[
    ("web.json", &["web"], &[]),
    ("redis.json", &["redis"], &[("service:redis", "script")]),
    ("check-tcp.json", &[], &[("ssh", "tcp")]),
    ("check-ttl.json", &[], &[("web-app", "ttl")]),
    ("check-http.json", &[], &[("api", "http")]),
    ("check-script.json", &[], &[("mem-util", "script")]),
    ("check-initial-status.json", &[], &[("mem", "script")]),
    ("check-docker.json", &[], &[("mem-util", "docker")]),
    (
        "checks-multi.json",
        &[],
        &[("chk1", "script"), ("chk2", "http"), ("chk3", "script")],
    ),
];

#[test]
fn agent_loads_every_seed_service_and_check_example_from_a_config_dir() {
    let examples = Path::new(EXAMPLES);
    if !examples.is_dir() {
        eprintln!("SKIPPED: {EXAMPLES} is absent");
        return;
    }
    for (name, services, checks) in SEED_LOADED {
        let dir = tempfile::tempdir().expect("tempdir");
        let text = fs::read(examples.join(name)).expect("read example");
        write_file(dir.path(), name, &text);
        // The examples' script checks need this (files only).
        write_file(
            dir.path(),
            "00-scripts.json",
            br#"{"enable_local_script_checks": true}"#,
        );
        let agent = agent_with_config_dir(dir.path());
        let all = agent_services(&agent);
        for id in *services {
            assert!(all.get(*id).is_some(), "{name}: service {id} in {all}");
        }
        for (id, kind) in *checks {
            let c = agent_check(&agent, id).unwrap_or_else(|| panic!("{name}: check {id}"));
            assert_eq!(c["Type"], *kind, "{name}: {c}");
        }
        // File-defined entries reach the catalog too.
        for id in *services {
            wait_catalog_has(&agent, id, id, true);
        }
    }
    // check-initial-status sets `status`, the others start critical: both
    // are only asserted on the first sight (runs may change them later).

    // redis-multi.json sets both interval and TTL: the agent refuses to
    // start, naming file and reason.
    let dir = tempfile::tempdir().expect("tempdir");
    let text = fs::read(examples.join("redis-multi.json")).expect("read example");
    write_file(dir.path(), "redis-multi.json", &text);
    write_file(
        dir.path(),
        "00-scripts.json",
        br#"{"enable_local_script_checks": true}"#,
    );
    let mut child = muster()
        .args(["agent", "-dev", "-http-port", "0", "-config-dir"])
        .arg(dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn muster agent");
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().expect("try_wait") {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("an agent with redis-multi.json did not refuse to start");
        }
        thread::sleep(Duration::from_millis(50));
    };
    let out = child.wait_with_output().expect("output");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!status.success(), "{err}");
    assert!(
        err.contains("redis-multi.json")
            && err.contains("Interval and TTL cannot both be specified"),
        "{err}"
    );
}

#[test]
fn agent_reloads_config_files_on_sighup_and_on_put_reload() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_file(
        dir.path(),
        "a.json",
        br#"{"service":{"name":"first","port":1}}"#,
    );
    let agent = agent_with_config_dir(dir.path());
    assert!(agent_services(&agent).get("first").is_some());

    write_file(
        dir.path(),
        "b.hcl",
        b"service {\n  name = \"second\"\n  port = 2\n  check {\n    ttl = \"10m\"\n  }\n}\n",
    );
    let sent = Command::new("kill")
        .args(["-HUP", &agent.pid().to_string()])
        .status()
        .expect("run kill");
    assert!(sent.success());
    poll("second after SIGHUP", BOUND, || {
        let all = agent_services(&agent);
        if all.get("second").is_some() {
            Ok(())
        } else {
            Err(all.to_string())
        }
    });
    assert_eq!(
        agent_check(&agent, "service:second").expect("its check")["Type"],
        "ttl"
    );
    wait_catalog_has(&agent, "second", "second", true);

    // Removing a file and reloading over HTTP drops its service.
    fs::remove_file(dir.path().join("a.json")).expect("rm a.json");
    let resp = agent.put("/v1/agent/reload", b"");
    assert_eq!(resp.status, 200, "{}", resp.text());
    poll("first gone after reload", BOUND, || {
        let all = agent_services(&agent);
        if all.get("first").is_none() {
            Ok(())
        } else {
            Err(all.to_string())
        }
    });
    wait_catalog_has(&agent, "first", "first", false);
    assert!(agent_services(&agent).get("second").is_some());
}

#[test]
fn agent_api_registered_service_survives_kill_9_and_restart() {
    let mut agent = Agent::durable();
    register_service(
        &agent,
        &json!({"Name": "kept", "ID": "kept-1", "Port": 7, "Tags": ["t"], "Check": {"TTL": "10m"}}),
    );
    put_ok(
        &agent,
        "/v1/agent/check/register",
        &json!({"Name": "node-ttl", "TTL": "10m"}),
    );
    wait_catalog_has(&agent, "kept", "kept-1", true);

    agent.restart();
    let all = agent_services(&agent);
    assert_eq!(all["kept-1"]["Tags"], json!(["t"]), "{all}");
    assert_eq!(all["kept-1"]["Port"], 7, "{all}");
    assert!(agent_check(&agent, "service:kept-1").is_some());
    assert!(agent_check(&agent, "node-ttl").is_some());
    wait_catalog_has(&agent, "kept", "kept-1", true);
    // And it still runs: a TTL update works after the restart.
    let resp = agent.put("/v1/agent/check/pass/service:kept-1?note=back", b"");
    assert_eq!(resp.status, 200, "{}", resp.text());
    wait_agent_status(&agent, "service:kept-1", "passing");
}

#[test]
fn agent_services_and_maint_commands_drive_a_real_agent() {
    let agent = Agent::dev();
    let addr = agent.addr.to_string();
    let dir = tempfile::tempdir().expect("tempdir");
    let file = write_file(
        dir.path(),
        "svc.hcl",
        b"service {\n  id = \"cli/1\"\n  name = \"cli\"\n  port = 9\n  check {\n    ttl = \"10m\"\n  }\n}\n",
    );
    let file = file.to_str().expect("utf-8");
    let run = |args: &[&str]| {
        let out = muster().args(args).output().expect("run muster");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        text
    };
    run(&["services", "register", "-http-addr", &addr, file]);
    assert!(agent_services(&agent).get("cli/1").is_some());
    assert!(agent_check(&agent, "service:cli/1").is_some());
    wait_catalog_has(&agent, "cli", "cli/1", true);

    run(&["maint", "-http-addr", &addr, "-enable", "-reason=disk swap"]);
    let c = agent_check(&agent, "_node_maintenance").expect("node maintenance");
    assert_eq!(c["Notes"], "disk swap", "{c}");
    let listing = run(&["maint", "-http-addr", &addr]);
    assert!(listing.contains("Reason: disk swap"), "{listing}");
    run(&["maint", "-http-addr", &addr, "-disable"]);
    assert!(agent_check(&agent, "_node_maintenance").is_none());

    run(&["services", "deregister", "-http-addr", &addr, file]);
    assert!(agent_services(&agent).get("cli/1").is_none());
    wait_catalog_has(&agent, "cli", "cli/1", false);
}

/// `EnableTagOverride` (§12.4): tags changed in the catalog survive a sync
/// when set, and are restored from the agent when not. A sync is triggered
/// by registering another service.
#[test]
fn agent_anti_entropy_honours_enable_tag_override() {
    let agent = Agent::dev();
    let node = agent.ready_field("node").to_string();
    register_service(
        &agent,
        &json!({"Name": "eto", "ID": "eto-on", "Tags": ["a"], "EnableTagOverride": true}),
    );
    register_service(
        &agent,
        &json!({"Name": "eto", "ID": "eto-off", "Tags": ["a"]}),
    );
    wait_catalog_has(&agent, "eto", "eto-on", true);
    wait_catalog_has(&agent, "eto", "eto-off", true);
    for (id, over) in [("eto-on", true), ("eto-off", false)] {
        let resp = agent.put(
            "/v1/catalog/register",
            json!({
                "Node": node,
                "Address": "127.0.0.1",
                "SkipNodeUpdate": true,
                "Service": {"ID": id, "Service": "eto", "Tags": ["b"], "EnableTagOverride": over},
            })
            .to_string()
            .as_bytes(),
        );
        assert_eq!(resp.status, 200, "{}", resp.text());
    }
    register_service(&agent, &json!({"Name": "eto-trigger"}));
    let tags = |id: &str| {
        let resp = agent.get("/v1/catalog/service/eto");
        resp.json()
            .as_array()
            .expect("a list")
            .iter()
            .find(|s| s["ServiceID"] == id)
            .map(|s| s["ServiceTags"].clone())
    };
    poll("eto-off tags restored", BOUND, || match tags("eto-off") {
        Some(t) if t == json!(["a"]) => Ok(()),
        other => Err(format!("{other:?}")),
    });
    wait_catalog_has(&agent, "eto-trigger", "eto-trigger", true);
    assert_eq!(tags("eto-on"), Some(json!(["b"])), "override kept");
}

/// `DeregisterCriticalServiceAfter` (min 1 m, reaper every 30 s): a
/// service critical for longer is removed by the agent, with its checks.
#[test]
fn agent_reaps_a_service_critical_past_deregister_critical_service_after() {
    let agent = Agent::dev();
    register_service(
        &agent,
        &json!({"Name": "reaped", "Port": 1, "Check": {"TTL": "10m", "DeregisterCriticalServiceAfter": "1m"}}),
    );
    register_service(
        &agent,
        &json!({"Name": "kept-ok", "Port": 1, "Check": {"TTL": "10m", "Status": "passing", "DeregisterCriticalServiceAfter": "1m"}}),
    );
    let start = Instant::now();
    wait_catalog_has(&agent, "reaped", "reaped", true);
    poll("reaped is reaped", Duration::from_secs(150), || {
        if agent_services(&agent).get("reaped").is_none() {
            Ok(())
        } else {
            Err(format!("still there after {:?}", start.elapsed()))
        }
    });
    assert!(
        start.elapsed() >= Duration::from_secs(55),
        "not before the 1 m: {:?}",
        start.elapsed()
    );
    assert!(agent_check(&agent, "service:reaped").is_none());
    wait_catalog_has(&agent, "reaped", "reaped", false);
    // The operator is told, in Consul's words (issue 15).
    let log = agent.log();
    assert!(
        log.contains(
            r#"Check "service:reaped" for service "reaped" has been critical for too long"#
        ) && log.contains(r#"deregistered service "reaped""#),
        "{log}"
    );
    assert!(
        agent_services(&agent).get("kept-ok").is_some(),
        "passing stays"
    );
}

#[test]
fn agent_service_register_rejects_bad_definitions() {
    let agent = Agent::dev();
    for (body, needle) in [
        (json!({"Port": 1}), "Missing service name"),
        (
            json!({"Name": "x", "Address": "0.0.0.0"}),
            "Invalid service address",
        ),
        (
            json!({"Name": "x", "Meta": {"consul-x": "v"}}),
            "Invalid Service Meta",
        ),
        (
            json!({"Name": "x", "Weights": {"Passing": 0, "Warning": 1}}),
            "Invalid Weights",
        ),
        (
            json!({"Name": "x", "Check": {"TTL": "1s", "Interval": "1s", "TCP": "127.0.0.1:1"}}),
            "Invalid check",
        ),
    ] {
        let resp = agent.put("/v1/agent/service/register", body.to_string().as_bytes());
        assert_eq!(resp.status, 400, "{body}: {}", resp.text());
        assert!(resp.text().contains(needle), "{body}: {}", resp.text());
    }
    assert_eq!(agent_services(&agent).get("x"), None);
}

/// `GET /v1/agent/service/:id?hash=&wait=` blocks while the service's
/// `ContentHash` is unchanged, and returns at once when it differs.
#[test]
fn agent_service_hash_blocking_waits_for_a_change() {
    let agent = Agent::dev();
    register_service(&agent, &json!({"Name": "hb", "Tags": ["a"]}));
    let hash = agent.get("/v1/agent/service/hb").json()["ContentHash"]
        .as_str()
        .expect("ContentHash")
        .to_string();
    let start = Instant::now();
    let resp = agent.get("/v1/agent/service/hb?hash=other&wait=5s");
    assert_eq!(resp.status, 200);
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "a stale hash returns at once"
    );

    let addr = agent.addr;
    let path = format!("/v1/agent/service/hb?hash={hash}&wait=30s");
    let waiter = thread::spawn(move || {
        let start = Instant::now();
        let resp = crate::harness::request(addr, "GET", &path, b"").expect("blocking GET");
        (start.elapsed(), resp)
    });
    thread::sleep(Duration::from_millis(500));
    register_service(&agent, &json!({"Name": "hb", "Tags": ["b"]}));
    let (took, resp) = waiter.join().expect("waiter");
    assert_eq!(resp.status, 200, "{}", resp.text());
    let body = resp.json();
    assert_eq!(body["Tags"], json!(["b"]), "{body}");
    assert_ne!(body["ContentHash"], hash);
    assert!(
        took < Duration::from_secs(20),
        "woken by the change, not the 30 s wait: {took:?}"
    );
}

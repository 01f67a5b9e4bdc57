//! Tests of the one definition decoder: spellings, defaults, and errors
//! that name the key path, service and check (the HTTP wording is tested
//! in `muster-api`, the file wording in the config loader).

use std::time::Duration;

use serde_json::{json, Value};

use super::*;
use crate::definition::DEFAULT_OUTPUT_MAX_SIZE;

fn file_service(v: &Value) -> Result<ServiceDefinition, String> {
    service(v, "service", Origin::File).map_err(|e| e.to_string())
}

fn file_check(v: &Value) -> Result<CheckDefinition, String> {
    check(v, "check", Origin::File).map_err(|e| e.to_string())
}

fn problem_at(r: Result<ServiceDefinition, DefinitionError>) -> Option<(String, Problem)> {
    r.err().map(|e| (e.path, e.problem))
}

#[test]
fn file_snake_case_spellings() -> Result<(), String> {
    let d = file_service(&json!({
        "name": "redis", "id": "redis1", "tags": ["primary"], "port": 6379,
        "enable_tag_override": true, "socket_path": "/tmp/r.sock",
        "tagged_addresses": {"lan": {"address": "10.0.0.1", "port": 6379}},
        "weights": {"passing": 10, "warning": 1}, "meta": {"env": "prod"},
        "check": [
            {"args": ["/bin/check"], "interval": "10s", "timeout": "1s"},
            {"tcp": "localhost:6379", "interval": "5s", "deregister_critical_service_after": "90m",
             "failures_before_critical": 3, "success_before_passing": 2, "output_max_size": 512}
        ],
        "checks": [{"name": "ttl", "ttl": "30s", "status": "passing", "notes": "n"}]
    }))?;
    assert!(d.enable_tag_override);
    assert_eq!(d.socket_path, "/tmp/r.sock");
    assert_eq!(
        d.tagged_addresses
            .get("lan")
            .map(|a| (a.address.as_str(), a.port)),
        Some(("10.0.0.1", 6379))
    );
    assert_eq!((d.weights.passing, d.weights.warning), (10, 1));
    let ids: Vec<&str> = d.checks.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(
        ids,
        ["service:redis1:1", "service:redis1:2", "service:redis1:3"]
    );
    let tcp = d.checks.get(1).ok_or("tcp")?;
    assert_eq!(
        tcp.deregister_critical_service_after,
        Some(Duration::from_secs(90 * 60))
    );
    assert_eq!(
        (
            tcp.failures_before_critical,
            tcp.success_before_passing,
            tcp.output_max_size
        ),
        (3, 2, 512)
    );
    assert_eq!(d.checks.get(2).map(|c| c.name.as_str()), Some("ttl"));
    let c = file_check(&json!({
        "name": "web-alive", "check_id": "wa", "service_id": "web1",
        "http": "http://localhost/", "interval": "10s", "tls_skip_verify": true,
        "tls_server_name": "web", "disable_redirects": true, "method": "HEAD"
    }))?;
    assert_eq!((c.id.as_str(), c.service_id.as_str()), ("wa", "web1"));
    Ok(())
}

#[test]
fn errors_name_the_key_path_as_spelled() {
    let v = json!({"name": "w", "Checks": [{"ttl": "1s"}, {"TTL": "1s", "intervl": "1s"}]});
    assert_eq!(
        problem_at(service(&v, "services[3]", Origin::File)),
        Some((
            "services[3].Checks[1].intervl".into(),
            Problem::UnknownKey {
                key: "intervl".into()
            }
        ))
    );
    let v = json!({"name": "w", "port": "80"});
    assert_eq!(
        problem_at(service(&v, "", Origin::Http)),
        Some((
            "port".into(),
            Problem::WrongType {
                expected: Expected::Port,
                found: JsonType::String
            }
        ))
    );
    let v = json!({"name": "w", "tagged_addresses": {"lan": {"port": 70000}}});
    assert_eq!(
        problem_at(service(&v, "service", Origin::File)),
        Some((
            "service.tagged_addresses.lan.port".into(),
            Problem::OutOfRange {
                value: "70000".into(),
                expected: Expected::Port
            }
        ))
    );
    let v = json!({"name": "w", "meta": {"a": 1}});
    assert_eq!(
        problem_at(service(&v, "", Origin::Http)).map(|(p, _)| p),
        Some("meta.a".into())
    );
    let v = json!({"name": "w", "check": {"ttl": "10d"}});
    let Some((path, Problem::BadDuration { value, reason })) =
        problem_at(service(&v, "service", Origin::File))
    else {
        panic!("a bad duration is a BadDuration");
    };
    assert_eq!(
        (path.as_str(), value.as_str()),
        ("service.check.ttl", "10d")
    );
    assert!(reason.starts_with("time: unknown unit"), "{reason}");
    assert_eq!(
        file_check(&json!({"id": "c", "ttl": "1s", "status": "ok"})).err(),
        Some(
            r#"key "check.status": bad check status "ok": use passing, warning or critical"#.into()
        )
    );
    assert_eq!(
        file_check(&json!({"id": "c", "h2ping": "x:1", "interval": "1s"})).err(),
        Some(r#"key "check.h2ping": H2PING checks are not supported by muster"#.into())
    );
}

#[test]
fn rule_errors_carry_the_final_service_and_check_ids() {
    // Two inline checks: the second's ID is `service:redis:2`, given by
    // the defaults before its rules are checked.
    let v = json!({"name": "redis", "checks": [
        {"ttl": "1s"}, {"script": "x", "interval": "5s", "ttl": "20s"}]});
    assert_eq!(
        file_service(&v).err(),
        Some(
            r#"service "redis": check "service:redis:2": Invalid check: Interval and TTL cannot both be specified"#
                .into()
        )
    );
    // The service's own rules come first, as in Consul.
    let v = json!({"port": 1, "check": {}});
    assert_eq!(
        file_service(&v).err(),
        Some(r#"service "service": Missing service name"#.into())
    );
    assert_eq!(
        file_check(&json!({"http": "http://x/"})).err(),
        Some(r#"check "check": Missing check name"#.into())
    );
    assert_eq!(
        file_check(&json!({"id": "h", "http": "http://x/"})).err(),
        Some(r#"check "h": Invalid check: Interval must be > 0 for http checks"#.into())
    );
    assert_eq!(
        file_check(&json!({"name": "d", "docker_container_id": "c1", "interval": "1s"})).err(),
        Some(r#"check "d": Invalid check: ScriptArgs must be set for Docker checks"#.into())
    );
}

#[test]
fn origin_chooses_only_consuls_own_defaults() -> Result<(), String> {
    let v = json!({"name": "w", "weights": {"passing": 3}});
    let file = service(&v, "service", Origin::File).map_err(|e| e.to_string())?;
    let http = service(&v, "", Origin::Http).map_err(|e| e.to_string())?;
    assert_eq!((file.weights.passing, file.weights.warning), (3, 1));
    assert_eq!((http.weights.passing, http.weights.warning), (3, 0));
    // A file's node check may give only an ID; an HTTP one needs a name.
    let v = json!({"id": "mem", "ttl": "10s"});
    let c = check(&v, "check", Origin::File).map_err(|e| e.to_string())?;
    assert_eq!((c.id.as_str(), c.name.as_str()), ("mem", "mem"));
    assert_eq!(
        check(&v, "", Origin::Http).err().map(|e| e.problem),
        Some(Problem::MissingCheckName)
    );
    Ok(())
}

#[test]
fn kind_follows_consuls_type_order_and_spellings_fold() -> Result<(), String> {
    // GRPC before HTTP before TTL, whichever spelling.
    for v in [
        json!({"Name": "c", "grpc": "127.0.0.1:1", "HTTP": "http://x", "interval": "1s"}),
        json!({"name": "c", "GRPC": "127.0.0.1:1", "Grpc_Use_TLS": true, "Interval": "1s"}),
    ] {
        let c = check(&v, "", Origin::Http).map_err(|e| e.to_string())?;
        assert_eq!(c.check_type(), "grpc", "{v}");
    }
    let c = file_check(
        &json!({"name": "c", "http": "http://x", "interval": 1_000_000_000_u64,
                              "OutputMaxSize": 0, "timeout": "-1s"}),
    )?;
    assert_eq!(c.check_type(), "http");
    assert_eq!(c.interval, Duration::from_secs(1));
    assert_eq!(c.output_max_size, DEFAULT_OUTPUT_MAX_SIZE);
    assert_eq!(
        c.timeout, None,
        "a negative duration is 0, and a 0 timeout is the default"
    );
    // "PascalCase wins", in either order.
    for v in [
        json!({"name": "w", "enable_tag_override": true, "EnableTagOverride": false}),
        json!({"name": "w", "EnableTagOverride": false, "enable_tag_override": true}),
        json!({"name": "w", "enable_tag_override": true, "enabletagoverride": false}),
    ] {
        assert!(!file_service(&v)?.enable_tag_override, "{v}");
    }
    // Legacy `script` runs through the given shell for Docker checks.
    let c = file_check(
        &json!({"name": "d", "docker_container_id": "c1", "shell": "/bin/bash",
                              "script": "true", "interval": "1s"}),
    )?;
    assert_eq!(
        c.kind,
        CheckKind::Docker {
            container_id: "c1".into(),
            shell: "/bin/bash".into(),
            args: vec!["/bin/bash".into(), "-c".into(), "true".into()]
        }
    );
    Ok(())
}

#[test]
fn every_seed_example_decodes_and_round_trips() -> Result<(), String> {
    // The seed's example config files, through the decoder alone: every
    // `service(s)` / `check(s)` object they hold is accepted, except
    // redis-multi.json's, which set both an interval and a TTL (Consul
    // refuses them too).
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/seed/examples");
    let entries = std::fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut seen = 0;
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let text = std::fs::read_to_string(&path).map_err(|e| e.to_string())?;
        let Ok(Value::Object(top)) = serde_json::from_str::<Value>(&text) else {
            continue;
        };
        for (key, v) in &top {
            if !matches!(key.as_str(), "service" | "services" | "check" | "checks") {
                continue;
            }
            let defs = objects(key, v).map_err(|e| format!("{}: {e}", path.display()))?;
            for (p, d) in defs {
                // Accepted ones encode to the API's JSON and decode back to
                // themselves (`muster services register` relies on it).
                let r = match key.as_str() {
                    "service" | "services" => service(d, &p, Origin::File).map(|def| {
                        let api = crate::definition::encode::service_to_api(&def);
                        assert_eq!(service(&api, "", Origin::Http).as_ref(), Ok(&def));
                    }),
                    "check" | "checks" => check(d, &p, Origin::File).map(|def| {
                        let api = crate::definition::encode::check_to_api(&def, true);
                        assert_eq!(check(&api, "", Origin::Http).as_ref(), Ok(&def));
                    }),
                    _ => continue,
                };
                let name = path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .unwrap_or_default();
                match r {
                    Err(e) if name == "redis-multi.json" => assert!(
                        e.to_string()
                            .ends_with("Interval and TTL cannot both be specified"),
                        "{e}"
                    ),
                    Err(e) => return Err(format!("{}: {e}", path.display())),
                    Ok(()) if name == "redis-multi.json" => {
                        return Err(format!("{p} of redis-multi.json was accepted"))
                    }
                    Ok(()) => {}
                }
                seen += 1;
            }
        }
    }
    assert!(seen > 0, "no definitions found in {}", dir.display());
    Ok(())
}

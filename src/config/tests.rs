//! Unit tests of the loader: merge rules, each error kind (file and key in
//! the message), durations, legacy forms and HCL/JSON equivalence.

use std::time::Duration;

use muster_agent::CheckKind;
use muster_engine::types::Status;

use super::*;

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// A temp dir holding `files` (name, contents).
fn dir_with(files: &[(&str, &str)]) -> Result<tempfile::TempDir, std::io::Error> {
    let dir = tempfile::tempdir()?;
    for (name, text) in files {
        fs::write(dir.path().join(name), text)?;
    }
    Ok(dir)
}

fn load_dir(files: &[(&str, &str)]) -> Result<LoadedConfig, ConfigError> {
    let dir = dir_with(files).map_err(|e| ConfigError::Io {
        path: PathBuf::from("tmp"),
        reason: e.to_string(),
    })?;
    load(&[ConfigSource::Dir(dir.path().to_path_buf())])
}

/// The error message of loading `files`, which must fail.
fn error_of(files: &[(&str, &str)]) -> String {
    match load_dir(files) {
        Ok(cfg) => panic!("expected an error, loaded {cfg:?}"),
        Err(err) => err.to_string(),
    }
}

#[test]
fn merge_scalars_later_wins_lists_append_maps_merge() -> TestResult {
    let cfg = load_dir(&[
        (
            "a.json",
            r#"{"datacenter":"one","retry_join":["a"],"recursors":["1.1.1.1"],
                "node_meta":{"rack":"r1","zone":"z1"},"ports":{"http":1,"dns":2},
                "dns_config":{"allow_stale":true,"soa":{"retry":1}},
                "service":{"name":"web"}}"#,
        ),
        (
            "b.json",
            r#"{"datacenter":"two","retry_join":["b"],"recursors":["8.8.8.8"],
                "node_meta":{"zone":"z2"},"ports":{"http":3},
                "dns_config":{"soa":{"expire":5}},
                "services":[{"name":"db"}]}"#,
        ),
        ("c.txt", "not a config file: ignored"),
    ])?;
    let s = &cfg.settings;
    assert_eq!(s.datacenter.as_deref(), Some("two"));
    assert_eq!(s.retry_join, ["a", "b"]);
    assert_eq!(s.recursors, ["1.1.1.1", "8.8.8.8"]);
    assert_eq!(s.node_meta.get("rack").map(String::as_str), Some("r1"));
    assert_eq!(s.node_meta.get("zone").map(String::as_str), Some("z2"));
    assert_eq!((s.ports.http, s.ports.dns), (Some(3), Some(2)));
    assert_eq!(
        Value::Object(s.dns_config.clone()),
        serde_json::json!({"allow_stale":true,"soa":{"retry":1,"expire":5}})
    );
    let ids: Vec<&str> = cfg.services.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids, ["web", "db"]);
    assert_eq!(cfg.files.len(), 2);
    Ok(())
}

#[test]
fn cluster_keys_are_read_and_merged() -> TestResult {
    let cfg = load_dir(&[
        (
            "a.json",
            r#"{"encrypt_verify_incoming":false,"raft_snapshot_threshold":64,
                "retry_join_wan":["10.1.0.1"],
                "autopilot":{"server_stabilization_time":"2s","min_quorum":3,
                             "last_contact_threshold":"200ms"}}"#,
        ),
        (
            "b.json",
            r#"{"encrypt_verify_outgoing":false,"raft_trailing_logs":16,
                "start_join_wan":["10.2.0.1"],"autopilot":{"cleanup_dead_servers":false},
                "performance":{"rpc_hold_timeout":"1500ms"}}"#,
        ),
    ])?;
    let s = &cfg.settings;
    assert_eq!(
        (s.encrypt_verify_incoming, s.encrypt_verify_outgoing),
        (Some(false), Some(false))
    );
    assert_eq!(
        (s.raft_snapshot_threshold, s.raft_trailing_logs),
        (Some(64), Some(16))
    );
    assert_eq!(s.rpc_hold_timeout, Some(Duration::from_millis(1500)));
    assert_eq!(
        (s.retry_join_wan.as_slice(), s.start_join_wan.as_slice()),
        (&["10.1.0.1".to_string()][..], &["10.2.0.1".to_string()][..])
    );
    let ap = &s.autopilot;
    assert_eq!(ap.server_stabilization_time, Some(Duration::from_secs(2)));
    assert_eq!(
        (ap.min_quorum, ap.cleanup_dead_servers),
        (Some(3), Some(false))
    );
    let err = error_of(&[("c.json", r#"{"autopilot":{"cleanup":true}}"#)]);
    assert!(err.contains("autopilot.cleanup"), "{err}");
    let err = error_of(&[("d.json", r#"{"performance":{"rpc_hold_timeout":"soon"}}"#)]);
    assert!(err.contains("performance.rpc_hold_timeout"), "{err}");
    Ok(())
}

#[test]
fn sources_are_read_in_command_line_order_and_dirs_lexically() -> TestResult {
    let dir = dir_with(&[
        ("2.json", r#"{"node_name":"two"}"#),
        ("10.json", r#"{"node_name":"ten","log_level":"debug"}"#),
    ])?;
    // A subdirectory is skipped, even one named like a config file.
    fs::create_dir(dir.path().join("sub.json"))?;
    let late = tempfile::NamedTempFile::new()?;
    fs::write(late.path(), r#"{"log_level":"warn"}"#)?;
    let cfg = load(&[
        ConfigSource::Dir(dir.path().to_path_buf()),
        ConfigSource::File(late.path().to_path_buf()),
    ])?;
    // "10.json" < "2.json" lexically, so "two" wins; the file comes last.
    assert_eq!(cfg.settings.node_name.as_deref(), Some("two"));
    assert_eq!(cfg.settings.log_level.as_deref(), Some("warn"));
    Ok(())
}

#[test]
fn unknown_keys_name_file_and_key() {
    let msg = error_of(&[("x.json", r#"{"datacentre":"dc1"}"#)]);
    assert!(
        msg.ends_with(r#"x.json: unknown key "datacentre""#),
        "{msg}"
    );
    let msg = error_of(&[("x.json", r#"{"ports":{"htp":1}}"#)]);
    assert!(msg.ends_with(r#"x.json: unknown key "ports.htp""#), "{msg}");
    let msg = error_of(&[(
        "x.json",
        r#"{"services":[{"name":"a"},{"name":"b","checks":[{"ttl":"1s","intervl":"1s"}]}]}"#,
    )]);
    assert!(
        msg.ends_with(r#"x.json: unknown key "services[1].checks[0].intervl""#),
        "{msg}"
    );
}

#[test]
fn wrong_types_name_file_key_and_expected_type() {
    let msg = error_of(&[("t.json", r#"{"server":"yes"}"#)]);
    assert!(
        msg.ends_with(r#"t.json: key "server": expected a boolean, got a string"#),
        "{msg}"
    );
    let msg = error_of(&[("t.json", r#"{"service":{"name":"w","port":"80"}}"#)]);
    assert!(
        msg.ends_with(
            r#"t.json: key "service.port": expected a non-negative integer, got a string"#
        ),
        "{msg}"
    );
    let msg = error_of(&[("t.json", r#"{"ports":{"http":70000}}"#)]);
    assert!(
        msg.contains(r#"t.json: key "ports.http": port 70000 is out of range"#),
        "{msg}"
    );
    let msg = error_of(&[("t.json", r#"{"service":"web"}"#)]);
    assert!(
        msg.contains(r#"key "service": expected an object or a list of objects"#),
        "{msg}"
    );
}

#[test]
fn bad_durations_name_file_key_and_value() {
    let msg = error_of(&[("d.json", r#"{"check_update_interval":"5 minutes"}"#)]);
    assert!(
        msg.contains(r#"d.json: key "check_update_interval": invalid duration "5 minutes""#),
        "{msg}"
    );
    let msg = error_of(&[("d.json", r#"{"check":{"id":"c","ttl":"10d"}}"#)]);
    assert!(
        msg.contains(r#"d.json: key "check.ttl": invalid duration "10d": time: unknown unit"#),
        "{msg}"
    );
}

#[test]
fn durations_parse_as_go_durations_or_nanoseconds() -> TestResult {
    let cfg = load_dir(&[(
        "d.json",
        r#"{"check_update_interval":"1m30s","retry_interval":1500000000,
            "check":{"id":"c","ttl":"0.5s","deregister_critical_service_after":"90m"}}"#,
    )])?;
    assert_eq!(
        cfg.settings.check_update_interval,
        Some(Duration::from_secs(90))
    );
    assert_eq!(
        cfg.settings.retry_interval,
        Some(Duration::from_millis(1500))
    );
    assert_eq!(
        cfg.checks[0].kind,
        CheckKind::Ttl {
            ttl: Duration::from_millis(500)
        }
    );
    assert_eq!(
        cfg.checks[0].deregister_critical_service_after,
        Some(Duration::from_secs(5400))
    );
    Ok(())
}

#[test]
fn duplicate_service_ids_name_both_files() {
    let msg = error_of(&[
        ("a.json", r#"{"service":{"name":"web"}}"#),
        ("b.json", r#"{"service":{"id":"web","name":"other"}}"#),
    ]);
    assert!(msg.contains(r#"duplicate service ID "web""#), "{msg}");
    assert!(
        msg.contains("a.json and in ") && msg.ends_with("b.json"),
        "{msg}"
    );
}

#[test]
fn parse_errors_and_non_objects_name_the_file() {
    let msg = error_of(&[("p.json", "{ nope")]);
    assert!(msg.contains("p.json: parse error: "), "{msg}");
    let msg = error_of(&[("p.json", "[1]")]);
    assert!(
        msg.ends_with("p.json: parse error: the top level must be an object"),
        "{msg}"
    );
    let msg = error_of(&[("p.hcl", "service {")]);
    assert!(msg.contains("p.hcl: parse error: "), "{msg}");
}

#[test]
fn bad_values_are_rejected() {
    let msg = error_of(&[("e.json", r#"{"encrypt":"c2hvcnQ="}"#)]);
    assert!(
        msg.contains(r#"e.json: key "encrypt": gossip key must decode to 16, 24 or 32 bytes"#),
        "{msg}"
    );
    let msg = error_of(&[("e.json", r#"{"check":{"id":"c","ttl":"1s","status":"ok"}}"#)]);
    assert!(
        msg.contains(r#"key "check.status": bad check status "ok""#),
        "{msg}"
    );
    let msg = error_of(&[("e.json", r#"{"service":{"port":80}}"#)]);
    assert!(
        msg.contains(r#"e.json: service "service": Missing service name"#),
        "{msg}"
    );
    let msg = error_of(&[("e.json", r#"{"service":{"name":"w","address":"0.0.0.0"}}"#)]);
    assert!(msg.contains("Invalid service address"), "{msg}");
    let msg = error_of(&[(
        "e.json",
        r#"{"service":{"name":"w","meta":{"consul-x":"1"}}}"#,
    )]);
    assert!(msg.contains("Invalid Service Meta"), "{msg}");
}

#[test]
fn invalid_checks_name_file_service_check_and_reason() {
    let msg = error_of(&[(
        "r.json",
        r#"{"service":{"name":"redis","checks":[{"script":"x","interval":"5s","ttl":"20s"}]}}"#,
    )]);
    assert!(
        msg.contains(
            r#"r.json: service "redis": check "service:redis": Invalid check: Interval and TTL cannot both be specified"#
        ),
        "{msg}"
    );
    // The fix, naming both ways out.
    assert!(
        msg.contains(r#"drop "ttl""#) && msg.contains(r#"drop the script/http/tcp and "interval""#),
        "{msg}"
    );
    let msg = error_of(&[("r.json", r#"{"check":{"id":"h","http":"http://x/"}}"#)]);
    assert!(
        msg.ends_with(r#"r.json: check "h": Invalid check: Interval must be > 0 for http checks"#),
        "{msg}"
    );
    let msg = error_of(&[("r.json", r#"{"check":{"name":"nothing"}}"#)]);
    assert!(msg.contains("TTL must be > 0 for TTL checks"), "{msg}");
}

#[test]
fn script_checks_need_a_file_to_enable_them() -> TestResult {
    let script = r#"{"service":{"name":"redis","checks":[{"script":"x","interval":"5s"}]}}"#;
    let msg = error_of(&[("r.json", script)]);
    assert!(
        msg.contains(
            r#"r.json: service "redis": check "service:redis": script checks are disabled"#
        ) && msg.contains(r#""enable_local_script_checks": true"#),
        "{msg}"
    );
    let msg = error_of(&[(
        "d.json",
        r#"{"check":{"id":"d","docker_container_id":"c","args":["x"],"interval":"5s"}}"#,
    )]);
    assert!(
        msg.contains(r#"d.json: check "d": script checks are disabled"#),
        "{msg}"
    );
    // Any file may enable them, before or after.
    let on = r#"{"enable_local_script_checks": true}"#;
    assert_eq!(
        load_dir(&[("a.json", script), ("z.json", on)])?
            .services
            .len(),
        1
    );
    let on = r#"{"enable_script_checks": true}"#;
    assert_eq!(
        load_dir(&[("0.json", on), ("r.json", script)])?
            .services
            .len(),
        1
    );
    Ok(())
}

#[test]
fn duplicate_check_ids_are_refused_naming_both_files() {
    let msg = error_of(&[
        ("a.json", r#"{"check":{"id":"mem","ttl":"10s"}}"#),
        (
            "b.json",
            r#"{"service":{"name":"w","check":{"id":"mem","ttl":"10s"}}}"#,
        ),
    ]);
    assert!(
        msg.starts_with(r#"duplicate check ID "mem": defined in "#)
            && msg.contains("a.json and in ")
            && msg.ends_with("b.json"),
        "{msg}"
    );
}

#[test]
fn security_keys_are_refused_and_unbuilt_features_warned() -> TestResult {
    let msg = error_of(&[(
        "acl.json",
        r#"{"acl":{"enabled":true,"default_policy":"maybe"}}"#,
    )]);
    assert!(
        msg.contains("acl.json") && msg.contains("acl.default_policy"),
        "{msg}"
    );
    let msg = error_of(&[(
        "t.hcl",
        "tls {\n  defaults {\n    verify_incoming = \"yes\"\n  }\n}\n",
    )]);
    assert!(
        msg.contains("t.hcl") && msg.contains("tls.defaults.verify_incoming"),
        "{msg}"
    );
    let msg = error_of(&[("x.json", r#"{"disable_remote_exec": false}"#)]);
    assert!(msg.contains("remote exec is not supported"), "{msg}");
    let cfg = load_dir(&[(
        "u.json",
        r#"{"enable_syslog":true,"telemetry":{"disable_hostname":true},"acl":{"enabled":false}}"#,
    )])?;
    let warnings = cfg.warnings.join("\n");
    assert!(
        warnings
            .contains(r#"u.json: "enable_syslog" has no effect: syslog output is not built yet"#),
        "{warnings}"
    );
    assert!(!warnings.contains("telemetry"), "{warnings}");
    // Typos stay errors.
    let msg = error_of(&[("y.json", r#"{"datacentre":"x"}"#)]);
    assert!(msg.contains(r#"unknown key "datacentre""#), "{msg}");
    Ok(())
}

#[test]
fn json_with_comments_says_to_remove_them_or_use_hcl() {
    let msg = error_of(&[("c.json", "{\n  // the server\n  \"server\": true\n}\n")]);
    assert!(
        msg.contains("c.json: parse error: ")
            && msg.contains("JSON has no comments")
            && msg.contains(".hcl"),
        "{msg}"
    );
    let msg = error_of(&[("d.json", "{\"server\": true,}")]);
    assert!(
        !msg.contains("comments"),
        "no hint without a comment: {msg}"
    );
}

#[test]
fn camel_case_spellings_and_legacy_script_are_translated() -> TestResult {
    let cfg = load_dir(&[(
        "c.json",
        r#"{"enable_local_script_checks":true,
            "service":{"Name":"redis","ID":"r1","enableTagOverride":true,
              "TaggedAddresses":{"wan":{"Address":"10.0.0.1","Port":1}},
              "Checks":[{"ScriptArgs":["/bin/true"],"Interval":"10s",
                         "DeregisterCriticalServiceAfter":"2m"},
                        {"script":"echo hi","interval":"5s","status":"passing"}]},
            "check":{"CheckID":"n","ServiceID":"r1","TTL":"30s"}}"#,
    )])?;
    let svc = &cfg.services[0];
    assert!(svc.enable_tag_override);
    assert_eq!(svc.tagged_addresses["wan"].port, 1);
    assert_eq!(svc.checks[0].id, "service:r1:1");
    assert_eq!(svc.checks[0].name, "Service 'redis' check");
    assert_eq!(
        svc.checks[0].kind,
        CheckKind::Script {
            args: vec!["/bin/true".into()]
        }
    );
    assert_eq!(
        svc.checks[0].deregister_critical_service_after,
        Some(Duration::from_secs(120))
    );
    assert_eq!(
        svc.checks[1].kind,
        CheckKind::Script {
            args: vec!["/bin/sh".into(), "-c".into(), "echo hi".into()]
        }
    );
    assert_eq!(svc.checks[1].status, Some(Status::Passing));
    assert_eq!(svc.checks[1].service_id, "r1");
    assert_eq!(cfg.checks[0].id, "n");
    assert_eq!(cfg.checks[0].service_id, "r1");
    Ok(())
}

#[test]
fn pascal_case_wins_over_snake_case() -> TestResult {
    let cfg = load_dir(&[(
        "p.json",
        r#"{"service":{"name":"w","enable_tag_override":false,"EnableTagOverride":true}}"#,
    )])?;
    assert!(cfg.services[0].enable_tag_override);
    Ok(())
}

#[test]
fn hcl_and_json_are_equivalent() -> TestResult {
    let json = r#"{
        "datacenter": "east", "server": true, "ports": {"http": 8501},
        "enable_local_script_checks": true,
        "retry_join": ["10.0.0.1"], "node_meta": {"rack": "r1"},
        "service": [
          {"name": "web", "port": 80, "tags": ["rails"],
           "check": {"http": "http://localhost/", "interval": "10s",
                     "header": {"X-A": ["b"]}}},
          {"name": "db", "port": 5432}
        ],
        "check": {"id": "mem", "args": ["/bin/check_mem"], "interval": "10s"}
    }"#;
    let hcl = r#"
        datacenter = "east"
        server = true
        enable_local_script_checks = true
        ports { http = 8501 }
        retry_join = ["10.0.0.1"]
        node_meta { rack = "r1" }
        service {
          name = "web"
          port = 80
          tags = ["rails"]
          check {
            http = "http://localhost/"
            interval = "10s"
            header { X-A = ["b"] }
          }
        }
        service {
          name = "db"
          port = 5432
        }
        check {
          id = "mem"
          args = ["/bin/check_mem"]
          interval = "10s"
        }
    "#;
    let a = load_dir(&[("c.json", json)])?;
    let b = load_dir(&[("c.hcl", hcl)])?;
    assert_eq!(a.settings, b.settings);
    assert_eq!(a.services, b.services);
    assert_eq!(a.checks, b.checks);
    assert_eq!(a.services.len(), 2);
    assert_eq!(a.settings.ports.http, Some(8501));
    Ok(())
}

#[test]
fn api_json_round_trips_through_the_file_decoder() -> TestResult {
    let cfg = load_dir(&[(
        "w.json",
        r#"{"service":{"name":"web","port":80,"tags":["a"],"meta":{"k":"v"},
             "checks":[{"http":"http://x/","interval":"10s","timeout":"1s","method":"POST"},
                       {"ttl":"30s","notes":"n"}]}}"#,
    )])?;
    let api = muster_agent::definition::encode::service_to_api(&cfg.services[0]);
    assert_eq!(api["Name"], "web");
    assert_eq!(api["Checks"][0]["CheckID"], "service:web:1");
    assert_eq!(api["Checks"][0]["Interval"], "10s");
    assert_eq!(api["Checks"][1]["TTL"], "30s");
    // PascalCase keys are accepted by the file decoder too.
    let back = load_dir(&[("w.json", &serde_json::json!({ "service": api }).to_string())])?;
    assert_eq!(back.services, cfg.services);
    Ok(())
}

#[test]
fn agent_settings_apply_to_the_agent_config() -> TestResult {
    let cfg = load_dir(&[(
        "a.json",
        r#"{"enable_local_script_checks":true,"check_update_interval":"1m",
            "node_meta":{"a":"b"}}"#,
    )])?;
    let mut agent = muster_agent::AgentConfig::new("n", "id", "dc1");
    cfg.settings.apply_to_agent(&mut agent);
    assert!(agent.enable_local_script_checks && !agent.enable_script_checks);
    assert_eq!(agent.check_update_interval, Duration::from_secs(60));
    assert_eq!(agent.node_meta.get("a").map(String::as_str), Some("b"));
    Ok(())
}

#[test]
fn missing_sources_are_io_errors_naming_the_path() {
    let err = load(&[ConfigSource::Dir(PathBuf::from("/nonexistent/dir"))]);
    assert!(matches!(err, Err(ConfigError::Io { .. })));
    let msg = load(&[ConfigSource::File(PathBuf::from("/nonexistent/f.json"))])
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        msg.starts_with("/nonexistent/f.json: cannot read config file"),
        "{msg}"
    );
}

#[test]
fn session_ttl_min_is_a_duration_later_file_wins() -> TestResult {
    let cfg = load_dir(&[
        ("a.json", r#"{"session_ttl_min":"10s"}"#),
        ("b.hcl", r#"session_ttl_min = "1.5s""#),
    ])?;
    assert_eq!(
        cfg.settings.session_ttl_min,
        Some(Duration::from_millis(1500))
    );
    let unset = load_dir(&[("a.json", r#"{"node_name":"n"}"#)])?;
    assert_eq!(unset.settings.session_ttl_min, None, "default applies");
    let msg = error_of(&[("s.json", r#"{"session_ttl_min":"ten seconds"}"#)]);
    assert!(
        msg.contains(r#"s.json: key "session_ttl_min": invalid duration "ten seconds""#),
        "{msg}"
    );
    let msg = error_of(&[("s.json", r#"{"session_ttl_min":true}"#)]);
    assert!(
        msg.contains(r#"s.json: key "session_ttl_min": expected a duration string"#),
        "{msg}"
    );
    Ok(())
}

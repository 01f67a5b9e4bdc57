//! Unit tests of service and check definitions: real client bodies
//! (Patroni, python-consul), check kinds and fields, validation messages
//! as Consul's API words them.

use std::collections::BTreeMap;
use std::time::Duration;

use muster_agent::definition::DEFAULT_OUTPUT_MAX_SIZE;
use muster_agent::CheckKind;
use muster_engine::Status;
use serde_json::json;

use super::*;

fn svc(body: &str) -> std::result::Result<ServiceDefinition, String> {
    service_from_body(body.as_bytes()).map_err(|e| format!("{} {e}", e.status().as_u16()))
}

fn chk(body: &str) -> std::result::Result<CheckDefinition, String> {
    check_from_body(body.as_bytes()).map_err(|e| format!("{} {e}", e.status().as_u16()))
}

const SEC: u64 = 1_000_000_000;

#[test]
fn definition_patroni_body_verbatim() -> std::result::Result<(), String> {
    let d = svc(
        r#"{"name": "batman", "id": "batman/pg0", "address": "10.0.0.5", "port": 5432,
            "tags": ["master"], "enabletagoverride": true,
            "check": {"http": "http://10.0.0.5:8008/master", "interval": "5s",
                      "DeregisterCriticalServiceAfter": "150.0s", "TLSServerName": "pg0"}}"#,
    )?;
    assert_eq!((d.id.as_str(), d.name.as_str()), ("batman/pg0", "batman"));
    assert_eq!((d.address.as_str(), d.port), ("10.0.0.5", 5432));
    assert_eq!(d.tags, vec!["master".to_string()]);
    assert!(d.enable_tag_override);
    assert_eq!(d.weights, muster_engine::Weights::default());
    let [c] = d.checks.as_slice() else {
        return Err(format!("{:?}", d.checks));
    };
    assert_eq!(c.id, "service:batman/pg0");
    assert_eq!(c.name, "Service 'batman' check");
    assert_eq!(c.service_id, "batman/pg0");
    assert_eq!(c.interval, Duration::from_secs(5));
    assert_eq!(
        c.deregister_critical_service_after,
        Some(Duration::from_secs(150))
    );
    assert_eq!(c.status, None);
    assert_eq!(c.output_max_size, DEFAULT_OUTPUT_MAX_SIZE);
    assert_eq!(
        c.kind,
        CheckKind::Http {
            url: "http://10.0.0.5:8008/master".into(),
            method: "GET".into(),
            header: BTreeMap::new(),
            body: String::new(),
            tls_server_name: "pg0".into(),
            tls_skip_verify: false,
            disable_redirects: false,
        }
    );
    Ok(())
}

#[test]
fn definition_python_consul_bodies() -> std::result::Result<(), String> {
    // python-consul `agent.service.register(name, service_id, address,
    // port, tags, check=Check.http(...), enable_tag_override=...)`.
    let d = svc(
        r#"{"name": "web", "id": "web1", "port": 80, "enabletagoverride": false,
            "check": {"http": "http://localhost:80/health", "interval": "10s",
                      "timeout": "2s", "header": {"X-A": ["1", "2"]}, "TLSSkipVerify": true}}"#,
    )?;
    let c = d.checks.first().ok_or("no check")?;
    assert_eq!(c.timeout, Some(Duration::from_secs(2)));
    let CheckKind::Http {
        header,
        tls_skip_verify,
        ..
    } = &c.kind
    else {
        return Err(format!("{:?}", c.kind));
    };
    assert_eq!(header.get("X-A"), Some(&vec!["1".into(), "2".into()]));
    assert!(*tls_skip_verify);
    // Check.ttl, Check.script, Check.tcp.
    let d = svc(r#"{"name":"t","check":{"ttl":"15s"}}"#)?;
    assert_eq!(
        d.checks.first().map(|c| c.kind.clone()),
        Some(CheckKind::Ttl {
            ttl: Duration::from_secs(15)
        })
    );
    assert_eq!(d.id, "t");
    let d = svc(r#"{"name":"s","check":{"args":["/bin/true","x"],"interval":"1s"}}"#)?;
    assert_eq!(
        d.checks.first().map(|c| c.kind.clone()),
        Some(CheckKind::Script {
            args: vec!["/bin/true".into(), "x".into()]
        })
    );
    let d = svc(r#"{"name":"s","check":{"script":"exit 1","interval":"1s"}}"#)?;
    assert_eq!(
        d.checks.first().map(|c| c.kind.clone()),
        Some(CheckKind::Script {
            args: vec!["/bin/sh".into(), "-c".into(), "exit 1".into()]
        })
    );
    let d = svc(
        r#"{"name":"db","checks":[{"tcp":"127.0.0.1:5432","interval":"10s","timeout":"1s"},
           {"CheckID":"own","Name":"mine","TTL":30000000000,"Status":"passing"}]}"#,
    )?;
    let ids: Vec<&str> = d.checks.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, ["service:db:1", "own"]);
    assert_eq!(
        d.checks.get(1).and_then(|c| c.status),
        Some(Status::Passing)
    );
    assert_eq!(d.checks.get(1).map(|c| c.name.as_str()), Some("mine"));
    // python-consul `agent.check.register(name, check, check_id, notes,
    // service_id)`.
    let c =
        chk(r#"{"name": "mem", "ttl": "10s", "id": "mem1", "notes": "n", "serviceid": "web1"}"#)?;
    assert_eq!(
        (c.id.as_str(), c.name.as_str(), c.notes.as_str()),
        ("mem1", "mem", "n")
    );
    assert_eq!(c.service_id, "web1");
    Ok(())
}

#[test]
fn definition_kinds_and_fields() -> std::result::Result<(), String> {
    let c = chk(r#"{"Name":"g","GRPC":"127.0.0.1:9000/svc","GRPCUseTLS":true,"Interval":"1s"}"#)?;
    assert_eq!(
        c.kind,
        CheckKind::Grpc {
            target: "127.0.0.1:9000/svc".into(),
            use_tls: true
        }
    );
    assert_eq!(c.id, "g");
    let c = chk(r#"{"Name":"u","UDP":"127.0.0.1:53","Interval":"1s"}"#)?;
    assert_eq!(
        c.kind,
        CheckKind::Udp {
            addr: "127.0.0.1:53".into()
        }
    );
    let c = chk(r#"{"Name":"a","AliasService":"web1"}"#)?;
    assert_eq!(
        c.kind,
        CheckKind::Alias {
            service: "web1".into(),
            node: String::new()
        }
    );
    let c = chk(
        r#"{"Name":"d","DockerContainerID":"abc","Args":["ls"],"Interval":"1s","Timeout":"3s",
            "SuccessBeforePassing":2,"FailuresBeforeWarning":1,"FailuresBeforeCritical":3,
            "OutputMaxSize":100,"Status":"warning"}"#,
    )?;
    assert_eq!(
        c.kind,
        CheckKind::Docker {
            container_id: "abc".into(),
            shell: "/bin/sh".into(),
            args: vec!["ls".into()]
        }
    );
    assert_eq!(
        (
            c.success_before_passing,
            c.failures_before_warning,
            c.failures_before_critical,
            c.output_max_size
        ),
        (2, 1, 3, 100)
    );
    assert_eq!(c.status, Some(Status::Warning));
    assert_eq!(c.timeout, Some(Duration::from_secs(3)));
    let c = chk(r#"{"Name":"n","TTL":"1m","Interval":"0"}"#)?;
    assert_eq!(c.interval, Duration::ZERO);
    let c = chk(
        r#"{"Name":"x","HTTP":"http://x","Method":"POST","Body":"b","Interval":2000000000,"DisableRedirects":true}"#,
    )?;
    let CheckKind::Http {
        method,
        body,
        disable_redirects,
        ..
    } = &c.kind
    else {
        return Err(format!("{:?}", c.kind));
    };
    assert_eq!(
        (method.as_str(), body.as_str(), *disable_redirects),
        ("POST", "b", true)
    );
    assert_eq!(c.interval, Duration::from_nanos(2 * SEC));
    Ok(())
}

#[test]
fn definition_validation_messages() {
    let cases: &[(&str, &str)] = &[
        (r#"{"id":"x"}"#, "400 Missing service name"),
        ("", "400 Request decode failed: EOF"),
        (
            r#"{"name":"x","bogus":1}"#,
            r#"400 Request decode failed: json: unknown field "bogus""#,
        ),
        (
            r#"{"name":"x","check":{"http":"h","interval":"5s","nope":1}}"#,
            r#"400 Request decode failed: json: unknown field "nope""#,
        ),
        (
            r#"{"name":"x","Address":"0.0.0.0"}"#,
            "400 Invalid service address",
        ),
        (
            r#"{"name":"x","Address":"::"}"#,
            "400 Invalid service address",
        ),
        (
            r#"{"name":"x","Meta":{"consul-x":"1"}}"#,
            "400 Invalid Service Meta: Key prefix 'consul-' is reserved for internal use",
        ),
        (
            r#"{"name":"x","Meta":{"a b":"1"}}"#,
            "400 Invalid Service Meta: Key contains invalid characters",
        ),
        (
            r#"{"name":"x","Weights":{"Passing":0,"Warning":1}}"#,
            "400 Invalid Weights: Passing must be greater than 0",
        ),
        (
            r#"{"name":"x","Weights":{"Passing":1,"Warning":70000}}"#,
            "400 Invalid Weights: Weight must be < 65536",
        ),
        (
            r#"{"name":"x","check":{"http":"http://x"}}"#,
            "400 Invalid check: Interval must be > 0 for http checks",
        ),
        (
            r#"{"name":"x","check":{}}"#,
            "400 Invalid check: TTL must be > 0 for TTL checks",
        ),
        (
            r#"{"name":"x","check":{"ttl":"10s","interval":"10s"}}"#,
            "400 Invalid check: Interval and TTL cannot both be specified",
        ),
        (
            r#"{"name":"x","check":{"ttl":"10s","status":"bogus"}}"#,
            "400 Status for checks must 'passing', 'warning', 'critical'",
        ),
        (
            r#"{"name":"x","check":{"interval":"1s"}}"#,
            "400 Invalid check: TTL must be > 0 for TTL checks",
        ),
        (
            r#"{"name":"x","check":{"interval":"ten"}}"#,
            r#"400 Request decode failed: time: invalid duration "ten""#,
        ),
        (
            r#"{"name":"x","port":"80"}"#,
            "400 Request decode failed: json: cannot unmarshal string into Go struct field port of type uint16",
        ),
        (
            r#"{"name":"x","Port":70000}"#,
            "400 Request decode failed: json: cannot unmarshal number 70000 into Go struct field Port of type uint16",
        ),
        (
            r#"{"name":"x","check":{"H2PING":"h:1","interval":"1s"}}"#,
            "400 Invalid check: H2PING checks are not supported by muster",
        ),
    ];
    for (body, want) in cases {
        assert_eq!(svc(body).err().as_deref(), Some(*want), "{body}");
    }
    let meta: serde_json::Map<String, Value> =
        (0..65).map(|i| (format!("k{i}"), json!("v"))).collect();
    let body = json!({"Name":"x","Meta":meta}).to_string();
    assert_eq!(
        svc(&body).err().as_deref(),
        Some("400 Invalid Service Meta: Service metadata cannot contain more than 64 key/value pairs")
    );
    let checks: &[(&str, &str)] = &[
        (r#"{"ttl":"10s"}"#, "400 Missing check name"),
        (
            r#"{"name":"c","ttl":"10s","status":"up"}"#,
            "400 Bad check status",
        ),
        (
            r#"{"name":"c","AliasService":"w","Interval":"1s"}"#,
            "400 Invalid check: Interval cannot be set for alias checks",
        ),
        (
            r#"{"name":"c","AliasService":"w","TTL":"1s"}"#,
            "400 Invalid check: TTL must be not be set for Alias checks",
        ),
        (
            r#"{"name":"c","HTTP":"h","Interval":"1s","FailuresBeforeWarning":3,"FailuresBeforeCritical":2}"#,
            "400 Invalid check: FailuresBeforeWarning must be less than or equal to FailuresBeforeCritical",
        ),
    ];
    for (body, want) in checks {
        assert_eq!(chk(body).err().as_deref(), Some(*want), "{body}");
    }
}

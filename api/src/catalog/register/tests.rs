//! Unit tests of `/v1/catalog/register` bodies: decoding, defaults and
//! validation (messages, meta and weights limits, UUID rules).

use super::*;

fn cmd(body: &str) -> std::result::Result<Command, String> {
    decode::from_slice::<RegisterRequest>(body.as_bytes())
        .and_then(|r| register_command(r, "dc1"))
        .map_err(|e| format!("{} {e}", e.status().as_u16()))
}

#[test]
fn catalog_register_defaults() -> std::result::Result<(), String> {
    let c = cmd(
        r#"{"node":"n1","address":"10.0.0.1","service":{"service":"web","port":80,"tags":["a"]},
           "check":{"name":"web alive","serviceid":"web","definition":{"http":"http://x","interval":"10s","timeout":5000000000}}}"#,
    )?;
    let Command::CatalogRegister {
        node,
        skip_node_update,
        service,
        checks,
    } = c
    else {
        return Err("not a register".into());
    };
    assert_eq!(
        (node.node.as_str(), node.datacenter.as_str()),
        ("n1", "dc1")
    );
    assert!(!skip_node_update);
    let svc = service.ok_or("no service")?;
    assert_eq!(
        (svc.id.as_str(), svc.port, svc.weights),
        ("web", 80, Weights::default())
    );
    let chk = checks.first().ok_or("no check")?;
    assert_eq!(chk.check_id, "web alive");
    assert_eq!(chk.node, "n1");
    assert_eq!(chk.status, Status::Critical);
    assert_eq!(chk.check_type, "http");
    assert_eq!(chk.interval_ns, 10_000_000_000);
    assert_eq!(chk.timeout_ns, 5_000_000_000);
    assert_eq!(
        chk.definition,
        r#"{"HTTP":"http://x","Interval":"10s","Timeout":"5s"}"#
    );
    Ok(())
}

#[test]
fn catalog_register_validation_messages() {
    let cases = [
        (r#"{"Address":"a"}"#, "500 Must provide node"),
        (
            r#"{"Node":"n"}"#,
            "500 Must provide address if SkipNodeUpdate is not set",
        ),
        (
            r#"{"Node":"n","Address":"a","ID":"xyz"}"#,
            "500 Bad node ID: uuid string is wrong length",
        ),
        (
            r#"{"Node":"n","Address":"a","Datacenter":"dc9"}"#,
            "500 No path to datacenter",
        ),
        (
            r#"{"Node":"n","Address":"a","NodeMeta":{"consul-x":"1"}}"#,
            "500 Key prefix 'consul-' is reserved for internal use",
        ),
        (
            r#"{"Node":"n","Address":"a","Service":{"ID":"x"}}"#,
            "500 Must provide service name with ID",
        ),
        (
            r#"{"Node":"n","Address":"a","Service":{"Service":"s","Address":"0.0.0.0"}}"#,
            "500 Invalid service address",
        ),
        (
            r#"{"Node":"n","Address":"a","Service":{"Service":"s","Address":"::"}}"#,
            "500 Invalid service address",
        ),
        (
            r#"{"Node":"n","Address":"a","Service":{"Service":"s","Meta":{"a b":"1"}}}"#,
            "500 Invalid Service Meta: Key contains invalid characters",
        ),
        (
            r#"{"Node":"n","Address":"a","Service":{"Service":"s","Weights":{"Passing":0}}}"#,
            "500 Invalid Weights: Passing must be greater than 0",
        ),
        (
            r#"{"Node":"n","Address":"a","Check":{"Name":"c","Status":"bogus"}}"#,
            "500 Invalid check status: 'bogus'",
        ),
        (
            r#"{"Node":"n","Address":"a","Checks":[{"Notes":"x"}]}"#,
            "500 Missing check ID",
        ),
        (
            r#"{"Node":"n","Address":"a","Service":{"Service":"s","Port":70000}}"#,
            "400 Request decode failed: invalid value: integer `70000`, expected u16",
        ),
        (
            r#"{"Node":"n","Address":"a","Service":{"Service":"s","Bogus":1}}"#,
            "400 Request decode failed: json: unknown field \"Bogus\"",
        ),
    ];
    for (body, want) in cases {
        assert_eq!(cmd(body).err().as_deref(), Some(want), "{body}");
    }
    assert!(cmd(
        r#"{"Node":"n","SkipNodeUpdate":true,"ID":"40E4A748-2192-161A-0510-9BF59FE950B5"}"#
    )
    .is_ok());
    assert!(cmd(r#"{"Node":"n","skip_node_update":true}"#).is_ok());
}

#[test]
fn catalog_uuid_rules() {
    assert_eq!(check_uuid("40e4a748-2192-161a-0510-9bf59fe950b5"), Ok(()));
    assert_eq!(
        check_uuid("40e4a748x2192-161a-0510-9bf59fe950b5"),
        Err("uuid is improperly formatted")
    );
    assert_eq!(
        check_uuid("40e4a748-2192-161a-0510-9bf59fe950bz"),
        Err("encoding/hex: invalid byte")
    );
}

//! python-consul (Debian's `python3-consul`, which sends its token as
//! `?token=`) against a server with ACLs under default deny: the
//! management token writes KV and registers a service (its session
//! create sends no token: refused as anonymous); a
//! `key_prefix "app/"` read token reads and blocks on `app/` only, is
//! refused writes and other keys with the client's own exception, and sees
//! a filtered catalog; no token at all is refused.
//!
//! Skipped (saying so) when `/usr/bin/python3` cannot import `consul`,
//! unless `MUSTER_REQUIRE_PYTHON_CONSUL` is set, as CI does.

use std::process::Command;

use serde_json::json;

use crate::harness::Agent;

const ROOT: &str = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee";

const SCRIPT: &str = r#"
import sys
import consul

host, port, root, limited = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
admin = consul.Consul(host=host, port=port, token=root)
reader = consul.Consul(host=host, port=port, token=limited)
nobody = consul.Consul(host=host, port=port)

def refused(call):
    try:
        call()
    except consul.ACLPermissionDenied as e:
        return str(e)
    raise AssertionError("not refused")

assert admin.kv.put("app/a", "one")
assert admin.kv.put("other/b", "two")
index, v = reader.kv.get("app/a")
assert v["Value"] == b"one", v
print("refused other key:", refused(lambda: reader.kv.get("other/b")))
print("refused write:", refused(lambda: reader.kv.put("app/a", "x")))
print("refused anonymous:", refused(lambda: nobody.kv.get("app/a")))
_, listed = reader.kv.get("", recurse=True)
assert [e["Key"] for e in listed] == ["app/a"], listed

assert admin.agent.service.register("web", service_id="web-1", port=80)
_, services = admin.catalog.services()
assert "web" in services, services
_, services = reader.catalog.services()
assert services == {}, services

# python-consul 0.7.1 sends no token when creating a session: the
# anonymous token's, refused under default deny.
print("refused session:", refused(lambda: admin.session.create(name="py", ttl=30)))
assert admin.kv.put("app/a", "two")
_, v = reader.kv.get("app/a", index=index, wait="5s")
assert v["Value"] == b"two", v
print("python-consul ok")
"#;

fn python_consul() -> Option<&'static str> {
    let python = "/usr/bin/python3";
    let ok = Command::new(python)
        .args(["-c", "import consul"])
        .output()
        .is_ok_and(|o| o.status.success());
    if ok {
        return Some(python);
    }
    assert!(
        std::env::var_os("MUSTER_REQUIRE_PYTHON_CONSUL").is_none(),
        "python3-consul is not installed, and MUSTER_REQUIRE_PYTHON_CONSUL is set"
    );
    eprintln!("skipped: /usr/bin/python3 cannot import consul (apt install python3-consul)");
    None
}

#[test]
fn python_consul_works_with_tokens() {
    let Some(python) = python_consul() else {
        return;
    };
    let config = json!({"acl": {"enabled": true, "default_policy": "deny",
        "tokens": {"initial_management": ROOT}}})
    .to_string();
    let a = Agent::start_with_config(&["-server", "-bootstrap"], true, &config);
    a.put_as(
        ROOT,
        "/v1/acl/policy",
        &json!({"Name": "app-read", "Rules": "key_prefix \"app/\" { policy = \"read\" }"}),
    );
    let token = a.put_as(
        ROOT,
        "/v1/acl/token",
        &json!({"Policies": [{"Name": "app-read"}]}),
    );
    let limited = token["SecretID"].as_str().expect("SecretID");
    let out = Command::new(python)
        .args([
            "-c",
            SCRIPT,
            "127.0.0.1",
            &a.addr.port().to_string(),
            ROOT,
            limited,
        ])
        .output()
        .expect("run python3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("python-consul ok"), "{stdout}");
    assert!(
        stdout.contains("refused other key: Permission denied"),
        "{stdout}"
    );
}

//! ACLs against the binary: a server with `default_policy = "deny"`:
//! bootstrap once; anonymous and unknown tokens refused in Consul's words;
//! a token with `key_prefix "app/" { policy = "read" }` reads `app/*` only,
//! sees listings filtered (and flagged), is not woken by writes it may not
//! see; DNS is refused; tokens survive kill -9; config mistakes refuse to
//! start.

use std::time::{Duration, Instant};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use serde_json::{json, Value};

use crate::dns::{dns_addr, udp};
use crate::harness::{muster, request_with_headers, write_file, Agent, Response};

const ACL_CONFIG: &str = r#"{"acl": {"enabled": true, "default_policy": "deny",
    "down_policy": "extend-cache", "tokens": {"dns": "dns-secret"}}}"#;

fn with_token(a: &Agent, method: &str, path: &str, token: &str, body: &[u8]) -> Response {
    request_with_headers(a.addr, method, path, &[("X-Consul-Token", token)], body).expect("request")
}

#[test]
fn acl_default_deny_bootstrap_rules_filtering_and_restart() {
    let mut a = Agent::start_with_config(&["-server", "-bootstrap"], true, ACL_CONFIG);
    let anon = a.get("/v1/kv/app/a");
    assert_eq!(anon.status, 403, "{}", anon.text());
    assert_eq!(
        anon.text(),
        "Permission denied: token with AccessorID '00000000-0000-0000-0000-000000000002' \
         lacks permission 'key:read' on \"app/a\""
    );

    // Bootstrap, once.
    let boot = a.put("/v1/acl/bootstrap", b"");
    assert_eq!(boot.status, 200, "{}", boot.text());
    let root = boot.json()["SecretID"]
        .as_str()
        .expect("SecretID")
        .to_string();
    assert_eq!(boot.json()["Policies"][0]["Name"], "global-management");
    let again = a.put("/v1/acl/bootstrap", b"");
    assert_eq!(again.status, 403);
    assert!(
        again.text().contains("ACL bootstrap no longer allowed"),
        "{}",
        again.text()
    );

    // Unknown tokens.
    let r = with_token(&a, "GET", "/v1/kv/app/a", "no-such-secret", b"");
    assert_eq!((r.status, r.text()), (403, "ACL not found".to_string()));

    for (k, v) in [("app/a", "1"), ("app/b", "2"), ("other/c", "3")] {
        let r = with_token(&a, "PUT", &format!("/v1/kv/{k}"), &root, v.as_bytes());
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let p = with_token(
        &a,
        "PUT",
        "/v1/acl/policy",
        &root,
        json!({"Name": "app-read", "Rules": "key_prefix \"app/\" { policy = \"read\" }"})
            .to_string()
            .as_bytes(),
    );
    assert_eq!(p.status, 200, "{}", p.text());
    let bad = with_token(
        &a,
        "PUT",
        "/v1/acl/policy",
        &root,
        br#"{"Name": "bad", "Rules": "key_prefix \"x\" { policy = \"reed\" }"}"#,
    );
    assert_eq!(bad.status, 400, "{}", bad.text());
    assert!(bad.text().contains(r#"policy "reed""#), "{}", bad.text());
    let t = with_token(
        &a,
        "PUT",
        "/v1/acl/token",
        &root,
        br#"{"Description": "app reader", "Policies": [{"Name": "app-read"}]}"#,
    );
    assert_eq!(t.status, 200, "{}", t.text());
    let limited = t.json()["SecretID"].as_str().expect("SecretID").to_string();
    let accessor = t.json()["AccessorID"]
        .as_str()
        .expect("AccessorID")
        .to_string();

    // What the limited token may do, wherever the token comes from.
    assert_eq!(
        with_token(&a, "GET", "/v1/kv/app/a", &limited, b"").status,
        200
    );
    assert_eq!(a.get(&format!("/v1/kv/app/a?token={limited}")).status, 200);
    let bearer = request_with_headers(
        a.addr,
        "GET",
        "/v1/kv/app/a",
        &[("Authorization", &format!("Bearer {limited}"))],
        b"",
    )
    .expect("request");
    assert_eq!(bearer.status, 200);
    assert_eq!(bearer.header("X-Consul-Default-ACL-Policy"), Some("deny"));
    let r = with_token(&a, "GET", "/v1/kv/other/c", &limited, b"");
    assert_eq!(r.status, 403);
    assert!(
        r.text().contains(&format!("AccessorID '{accessor}'")),
        "{}",
        r.text()
    );
    assert_eq!(
        with_token(&a, "PUT", "/v1/kv/app/a", &limited, b"x").status,
        403
    );
    let listed = with_token(&a, "GET", "/v1/kv/?recurse", &limited, b"");
    assert_eq!(listed.status, 200);
    let keys: Vec<String> = listed.kv_pairs().into_iter().map(|p| p.key).collect();
    assert_eq!(keys, ["app/a", "app/b"]);
    assert_eq!(
        listed.header("X-Consul-Results-Filtered-By-ACLs"),
        Some("true")
    );
    let listed = with_token(&a, "GET", "/v1/kv/?keys", &limited, b"");
    assert_eq!(listed.json(), json!(["app/a", "app/b"]));
    // Transactions: every operation checked.
    let get = br#"[{"KV": {"Verb": "get", "Key": "app/a"}}]"#;
    assert_eq!(with_token(&a, "PUT", "/v1/txn", &limited, get).status, 200);
    let set = br#"[{"KV": {"Verb": "get", "Key": "app/a"}},
                   {"KV": {"Verb": "set", "Key": "app/a", "Value": "eA=="}}]"#;
    let r = with_token(&a, "PUT", "/v1/txn", &limited, set);
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(
        r.text()
            .contains("'key:write' on \"app/a\" (transaction operation 1)"),
        "{}",
        r.text()
    );
    assert_eq!(with_token(&a, "PUT", "/v1/txn", &root, set).status, 200);
    // Sessions: write on the node to create; listings filtered.
    let r = with_token(&a, "PUT", "/v1/session/create", &limited, b"{}");
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(r.text().contains("'session:write'"), "{}", r.text());
    let r = with_token(&a, "PUT", "/v1/session/create", &root, b"{}");
    assert_eq!(r.status, 200, "{}", r.text());
    let sessions = with_token(&a, "GET", "/v1/session/list", &root, b"").json();
    assert_eq!(sessions.as_array().map(Vec::len), Some(1));
    let sessions = with_token(&a, "GET", "/v1/session/list", &limited, b"").json();
    assert_eq!(sessions, json!([]));
    // Events: write on the name to fire; lists filtered by read.
    let r = with_token(&a, "PUT", "/v1/event/fire/deploy", &limited, b"");
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(
        r.text().contains("'event:write' on \"deploy\""),
        "{}",
        r.text()
    );
    assert_eq!(
        with_token(&a, "PUT", "/v1/event/fire/deploy", &root, b"").status,
        200
    );
    let listed = with_token(&a, "GET", "/v1/event/list", &root, b"").json();
    assert_eq!(listed.as_array().map(Vec::len), Some(1));
    let listed = with_token(&a, "GET", "/v1/event/list", &limited, b"").json();
    assert_eq!(listed, json!([]));
    let svc = br#"{"Name": "x", "Port": 1}"#;
    // Snapshots hold every secret: management only.
    let r = with_token(&a, "GET", "/v1/snapshot", &limited, b"");
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(
        with_token(&a, "GET", "/v1/snapshot", &root, b"").status,
        200
    );
    let r = with_token(&a, "PUT", "/v1/agent/service/register", &limited, svc);
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(
        r.text().contains("'service:write' on \"x\""),
        "{}",
        r.text()
    );
    // The agent's own reads: self needs agent:read, lists are filtered.
    let r = with_token(&a, "GET", "/v1/agent/self", &limited, b"");
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(r.text().contains("'agent:read'"), "{}", r.text());
    assert_eq!(
        with_token(&a, "GET", "/v1/agent/self", &root, b"").status,
        200
    );
    let members = with_token(&a, "GET", "/v1/agent/members", &limited, b"");
    assert_eq!((members.status, members.json()), (200, json!([])));
    let members = with_token(&a, "GET", "/v1/agent/members", &root, b"").json();
    assert_eq!(members.as_array().map(Vec::len), Some(1));
    assert_eq!(
        with_token(&a, "GET", "/v1/acl/tokens", &limited, b"").status,
        403
    );
    let tokens = with_token(&a, "GET", "/v1/acl/tokens", &root, b"").json();
    assert_eq!(tokens.as_array().map(Vec::len), Some(2));
    let me = with_token(&a, "GET", "/v1/acl/token/self", &limited, b"").json();
    assert_eq!(me["AccessorID"], Value::String(accessor.clone()));

    // A blocking listing is not woken by a write it may not see, and is
    // by one it may.
    let index = with_token(&a, "GET", "/v1/kv/app/?recurse", &limited, b"").index();
    let (addr, tok) = (a.addr, limited.clone());
    let waiter = std::thread::spawn(move || {
        let start = Instant::now();
        let r = request_with_headers(
            addr,
            "GET",
            &format!("/v1/kv/?recurse&index={index}&wait=3s"),
            &[("X-Consul-Token", &tok)],
            b"",
        )
        .expect("request");
        (start.elapsed(), r)
    });
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        with_token(&a, "PUT", "/v1/kv/other/hidden", &root, b"h").status,
        200
    );
    let (took, r) = waiter.join().expect("waiter");
    assert!(
        took >= Duration::from_millis(2500),
        "woken by a hidden write after {took:?}"
    );
    let keys: Vec<String> = r.kv_pairs().into_iter().map(|p| p.key).collect();
    assert_eq!(keys, ["app/a", "app/b"]);

    // DNS shows what the agent's dns token may read: nothing while that
    // token does not exist, the services and nodes its policy names once
    // it does.
    let dns = dns_addr(&a);
    for (node, addr, service) in [
        ("n1", "127.0.0.76", "web"),
        ("hidden", "127.0.0.77", "secret"),
    ] {
        let body = json!({"Node": node, "Address": addr, "Service": {"Service": service}});
        let reg = with_token(
            &a,
            "PUT",
            "/v1/catalog/register",
            &root,
            body.to_string().as_bytes(),
        );
        assert_eq!(reg.status, 200, "{}", reg.text());
    }
    let (_, m) = udp(dns, "web.service.consul", RecordType::A);
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    let p = with_token(
        &a,
        "PUT",
        "/v1/acl/policy",
        &root,
        json!({"Name": "dns",
               "Rules": "service \"web\" { policy = \"read\" }\nnode_prefix \"\" { policy = \"read\" }"})
        .to_string()
        .as_bytes(),
    );
    assert_eq!(p.status, 200, "{}", p.text());
    let t = with_token(
        &a,
        "PUT",
        "/v1/acl/token",
        &root,
        br#"{"SecretID": "dns-secret", "Policies": [{"Name": "dns"}]}"#,
    );
    assert_eq!(t.status, 200, "{}", t.text());
    let (_, m) = udp(dns, "web.service.consul", RecordType::A);
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(!m.answers.is_empty());
    let (_, m) = udp(dns, "secret.service.consul", RecordType::A);
    assert_eq!(
        m.metadata.response_code,
        ResponseCode::NXDomain,
        "a service it may not read"
    );

    // Catalog and health service reads filter by the same rules.
    let dns_token = "dns-secret";
    let services = with_token(&a, "GET", "/v1/catalog/services", dns_token, b"");
    assert_eq!(services.status, 200, "{}", services.text());
    assert_eq!(services.json(), json!({"web": []}));
    assert_eq!(
        services.header("X-Consul-Results-Filtered-By-ACLs"),
        Some("true")
    );
    let web = with_token(&a, "GET", "/v1/health/service/web", dns_token, b"");
    assert_eq!(web.json().as_array().map(Vec::len), Some(1));
    let secret = with_token(&a, "GET", "/v1/health/service/secret", dns_token, b"");
    assert_eq!((secret.status, secret.json()), (200, json!([])));
    let secret = with_token(&a, "GET", "/v1/catalog/service/secret", &limited, b"");
    assert_eq!((secret.status, secret.json()), (200, json!([])));
    let nodes = with_token(&a, "GET", "/v1/catalog/nodes", &limited, b"").json();
    assert_eq!(nodes, json!([]), "the app token may read no node");
    let reg = br#"{"Node": "n1", "Address": "127.0.0.76", "Service": {"Service": "web"}}"#;
    let r = with_token(&a, "PUT", "/v1/catalog/register", dns_token, reg);
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(
        r.text().contains("'service:write' on \"web\""),
        "{}",
        r.text()
    );

    // Tokens and policies survive kill -9.
    a.kill();
    a.restart();
    assert_eq!(
        with_token(&a, "GET", "/v1/kv/app/b", &limited, b"").status,
        200
    );
    assert_eq!(
        with_token(&a, "GET", "/v1/kv/other/c", &limited, b"").status,
        403
    );
    assert_eq!(
        with_token(&a, "GET", "/v1/kv/other/c", &root, b"").status,
        200
    );
}

#[test]
fn acl_config_mistakes_refuse_to_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = write_file(
        dir.path(),
        "acl.json",
        br#"{"acl": {"enabled": true, "default_policy": "maybe"}}"#,
    );
    let out = muster()
        .args(["validate", bad.to_str().expect("path")])
        .output()
        .expect("validate");
    let err =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success());
    assert!(err.contains("acl.default_policy"), "{err}");
    let unknown = write_file(
        dir.path(),
        "u.json",
        br#"{"acl": {"enabled": true, "tokenz": {}}}"#,
    );
    let out = muster()
        .args(["validate", unknown.to_str().expect("path")])
        .output()
        .expect("validate");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("acl.tokenz"));
}

/// Three servers with ACLs: a token made through one is the same on all
/// (read from each server's own state, `?stale`), and a follower enforces
/// it as the leader does.
#[test]
fn acl_tokens_replicate_and_followers_enforce() {
    let s1 = crate::cluster::start_server("a1", None, ACL_CONFIG);
    let s2 = crate::cluster::start_server("a2", Some(&s1), ACL_CONFIG);
    let s3 = crate::cluster::start_server("a3", Some(&s1), ACL_CONFIG);
    let servers = [&s1, &s2, &s3];
    crate::harness::wait_until("a leader", Duration::from_secs(30), || {
        servers.iter().all(|s| s.leader().is_some())
    });
    let boot = s2.put("/v1/acl/bootstrap", b"");
    assert_eq!(boot.status, 200, "{}", boot.text());
    let root = boot.json()["SecretID"]
        .as_str()
        .expect("SecretID")
        .to_string();
    // Tokens replicate like every write: wait until each server has it.
    crate::harness::wait_until(
        "the root token on every server",
        Duration::from_secs(10),
        || {
            servers
                .iter()
                .all(|s| with_token(s, "GET", "/v1/acl/token/self?stale", &root, b"").status == 200)
        },
    );
    let p = with_token(
        &s3,
        "PUT",
        "/v1/acl/policy",
        &root,
        br#"{"Name": "app-read", "Rules": "key_prefix \"app/\" { policy = \"read\" }"}"#,
    );
    assert_eq!(p.status, 200, "{}", p.text());
    let t = with_token(
        &s1,
        "PUT",
        "/v1/acl/token",
        &root,
        br#"{"Policies": [{"Name": "app-read"}]}"#,
    );
    let limited = t.json()["SecretID"].as_str().expect("SecretID").to_string();
    let accessor = t.json()["AccessorID"]
        .as_str()
        .expect("AccessorID")
        .to_string();
    assert_eq!(
        with_token(&s1, "PUT", "/v1/kv/app/x", &root, b"1").status,
        200
    );
    assert_eq!(
        with_token(&s1, "PUT", "/v1/kv/secret/y", &root, b"2").status,
        200
    );
    let path = format!("/v1/acl/token/{accessor}?stale");
    crate::harness::wait_until("the token on every server", Duration::from_secs(10), || {
        servers
            .iter()
            .all(|s| with_token(s, "GET", &path, &root, b"").status == 200)
    });
    let views: Vec<Value> = servers
        .iter()
        .map(|s| with_token(s, "GET", &path, &root, b"").json())
        .collect();
    assert!(views.windows(2).all(|w| w[0] == w[1]), "{views:?}");
    for s in servers {
        assert_eq!(
            with_token(s, "GET", "/v1/kv/app/x", &limited, b"").status,
            200
        );
        let denied = with_token(s, "GET", "/v1/kv/secret/y", &limited, b"");
        assert_eq!(denied.status, 403, "{}", denied.text());
        assert_eq!(
            with_token(s, "PUT", "/v1/kv/app/x", &limited, b"3").status,
            403
        );
    }
}

/// The CLI with ACLs: `muster acl bootstrap`, policies and tokens made
/// with `muster acl`, and `muster kv` acting with `-token`,
/// `CONSUL_HTTP_TOKEN` or `-token-file`.
#[test]
fn acl_cli_bootstraps_makes_tokens_and_acts_with_them() {
    let a = Agent::start_with_config(&["-server", "-bootstrap"], true, ACL_CONFIG);
    let addr = a.addr.to_string();
    let run = |args: &[&str], token: Option<&str>| {
        let mut cmd = muster();
        cmd.args(args).args(["-http-addr", &addr]);
        cmd.env_remove("CONSUL_HTTP_TOKEN");
        if let Some(t) = token {
            cmd.env("CONSUL_HTTP_TOKEN", t);
        }
        cmd.output().expect("muster")
    };
    let out = run(&["acl", "bootstrap"], None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let secret = text
        .lines()
        .find_map(|l| l.strip_prefix("SecretID:"))
        .map(|s| s.trim().to_string())
        .expect("SecretID line");
    assert!(text.contains("global-management"), "{text}");
    let out = run(&["acl", "bootstrap"], None);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("ACL bootstrap no longer allowed"));

    let rules = r#"key_prefix "x/" { policy = "write" }"#;
    let out = run(
        &["acl", "policy", "create", "-name", "xw", "-rules", rules],
        Some(&secret),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(
        &[
            "acl",
            "token",
            "create",
            "-policy-name",
            "xw",
            "-format",
            "json",
        ],
        Some(&secret),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token: Value = serde_json::from_slice(&out.stdout).expect("json");
    let writer = token["SecretID"].as_str().expect("SecretID").to_string();

    let out = run(&["kv", "put", "-token", &writer, "x/a", "1"], None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(&["kv", "put", "y/a", "1"], Some(&writer));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Permission denied"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let file = write_file(dir.path(), "token", format!("{writer}\n").as_bytes());
    let out = run(
        &[
            "kv",
            "get",
            "-token-file",
            file.to_str().expect("utf-8"),
            "x/a",
        ],
        None,
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1");
    let out = run(&["acl", "token", "list"], Some(&secret));
    let listed = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(listed.matches("AccessorID:").count(), 2, "{listed}");
    let out = run(&["acl", "token", "list"], Some(&writer));
    assert_eq!(out.status.code(), Some(1), "the writer may not read ACLs");
}

//! The web UI with ACLs under default deny, in a real headless Chromium:
//! with no token the services page lists nothing (the rows are filtered)
//! and a key it may not read says why and where to set a token; with a
//! token set on the Settings page it lists what the token may read and
//! still nothing else.

use serde_json::json;

use crate::browser::Browser;
use crate::harness::Agent;

const ROOT: &str = "12121212-3434-5656-7878-909090909090";

#[test]
fn ui_with_acls_shows_what_the_settings_token_may_read() {
    let Some(b) = Browser::open() else { return };
    let config = json!({"acl": {"enabled": true, "default_policy": "deny",
        "tokens": {"initial_management": ROOT}}})
    .to_string();
    let a = Agent::start_with_config(
        &["-server", "-bootstrap", "-node", "n1", "-ui"],
        true,
        &config,
    );
    for service in ["web", "secret"] {
        a.put_as(
            ROOT,
            "/v1/catalog/register",
            &json!({"Node": "app1", "Address": "127.0.0.81", "Service": {"Service": service}}),
        );
    }
    a.put_as(
        ROOT,
        "/v1/acl/policy",
        &json!({"Name": "web-reader", "Rules":
            "service \"web\" { policy = \"read\" }\nnode_prefix \"\" { policy = \"read\" }"}),
    );
    let token = a.put_as(
        ROOT,
        "/v1/acl/token",
        &json!({"Policies": [{"Name": "web-reader"}]}),
    )["SecretID"]
        .as_str()
        .expect("SecretID")
        .to_string();

    let base = format!("http://{}", a.addr);
    b.goto(&format!("{base}/ui/dc1/services"));
    b.wait_text(&["No services match."]);
    b.goto(&format!("{base}/ui/dc1/kv/app/x/edit"));
    b.wait_text(&["Permission denied", "Set an ACL token under Settings."]);

    b.goto(&format!("{base}/ui/dc1/settings"));
    b.type_into(r#"input[type="password"]"#, &token);
    b.click(r#"button[type="submit"]"#);
    b.wait_text(&["Saved."]);
    b.goto(&format!("{base}/ui/dc1/services"));
    let text = b.wait_text(&["web"]);
    assert!(!text.contains("secret"), "{text}");
    assert!(!text.contains("No services match."), "{text}");
    b.screenshot("services-with-token");
}

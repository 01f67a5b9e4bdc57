//! Consul config keys muster does not implement yet, sorted by what
//! ignoring them would do (issue 15):
//!
//! - **refused**: keys that lock something down (auto-encrypt,
//!   auto-config). Accepting and ignoring them would leave an operator
//!   believing the API or RPC is protected while anyone can read and write
//!   everything, so the agent fails closed and says so.
//! - **ignored with a warning**: keys of features not built yet whose
//!   absence weakens nothing (syslog, log files, ...): a config
//!   written for Consul still loads, and the warning names what has no
//!   effect.
//!
//! Everything else not known is an unknown key (a typo), as before. This
//! module owns only the classification; the loader decides where the
//! warnings go.

use serde_json::Value;

/// What to do with a key muster does not implement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Refuse to start: the reason, one sentence with the fix.
    Refuse(String),
    /// Load it, have it do nothing, and warn.
    Ignore(&'static str),
}

/// Top-level keys that secure the agent, and the feature each belongs to.
const SECURITY_KEYS: &[(&str, &str)] = &[
    ("auto_encrypt", "TLS (auto-encrypt)"),
    ("auto_config", "auto-config"),
    ("acl_datacenter", "ACLs"),
    ("acl_default_policy", "ACLs"),
    ("acl_down_policy", "ACLs"),
    ("acl_master_token", "ACLs"),
    ("acl_agent_token", "ACLs"),
    ("acl_token", "ACLs"),
    ("acl_replication_token", "ACLs"),
    ("acl_enforce_version_8", "ACLs"),
];

/// Top-level keys of features not built yet that are safe to ignore.
const IGNORED_KEYS: &[(&str, &str)] = &[
    ("enable_syslog", "syslog output is not built yet"),
    ("syslog_facility", "syslog output is not built yet"),
    ("disable_update_check", "muster never checks for updates"),
    ("enable_debug", "the debug endpoints are not built yet"),
    ("connect", "service mesh (Connect) is not supported"),
    (
        "disable_host_node_id",
        "the node ID is always random and kept in the data directory",
    ),
    (
        "reconnect_timeout",
        "failed members are reaped after a fixed time",
    ),
    ("leave_on_interrupt", "use skip_leave_on_interrupt"),
    ("raft_protocol", "muster's raft has one protocol"),
    (
        "http_config",
        "HTTP response headers and limits are not configurable yet",
    ),
];

/// The verdict for top-level `key` with value `v`, or `None` if muster
/// implements it (or does not know it: then it is an unknown key).
pub fn classify(key: &str, v: &Value) -> Option<Verdict> {
    if let Some((_, feature)) = SECURITY_KEYS.iter().find(|(k, _)| *k == key) {
        return Some(Verdict::Refuse(format!(
            "{feature} {} not supported by muster yet, and ignoring \"{key}\" would leave the \
             agent unprotected: remove it and keep the agent on a trusted network until \
             {feature} lands",
            if feature.ends_with('s') { "are" } else { "is" }
        )));
    }
    if key == "disable_remote_exec" && v.as_bool() == Some(false) {
        return Some(Verdict::Refuse(
            "remote exec is not supported by muster: remove \"disable_remote_exec\" or set it \
             to true"
                .into(),
        ));
    }
    IGNORED_KEYS
        .iter()
        .find(|(k, _)| *k == key)
        .map(|(_, why)| Verdict::Ignore(why))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn security_keys_are_refused_and_harmless_ones_ignored() {
        for (key, v) in [
            ("auto_encrypt", json!({"tls": true})),
            ("disable_remote_exec", json!(false)),
            ("acl_master_token", json!("x")),
        ] {
            assert!(
                matches!(classify(key, &v), Some(Verdict::Refuse(_))),
                "{key} must be refused"
            );
        }
        assert_eq!(classify("acl", &json!({"enabled": false})), None);
        assert_eq!(classify("disable_remote_exec", &json!(true)), None);
        assert_eq!(classify("ports", &json!({"https": -1, "http": 1})), None);
        assert!(matches!(
            classify("enable_syslog", &json!(true)),
            Some(Verdict::Ignore(_))
        ));
        assert_eq!(classify("telemetry", &json!({})), None);
        assert_eq!(classify("ui_dir", &json!("/x")), None);
        assert_eq!(classify("datacenter", &json!("dc1")), None);
        assert_eq!(classify("datacentre", &json!("dc1")), None);
    }
}

//! The `acl` block: `enabled`, `default_policy` (`allow`|`deny`),
//! `down_policy`, `token_ttl`, `enable_token_persistence`, and `tokens`
//! (`initial_management` (legacy `master`), `agent`, `default`, `dns`,
//! `replication`, `agent_recovery`). Checked when the files load (a
//! mistake names `acl.<key>` and the fix); [`settings`] turns it into the
//! API's [`AclConfig`] (`None` with ACLs off).

use serde_json::{Map, Value};

use super::error::ConfigError;
use super::value::Ctx;
use muster_api::acl::{AclConfig, DownPolicy};

const TOKEN_KEYS: &[&str] = &[
    "initial_management",
    "master",
    "agent",
    "default",
    "dns",
    "replication",
    "agent_recovery",
    "agent_master",
];

/// The block's map (HCL blocks may arrive as one-item lists).
pub fn block_of(v: &Value) -> Option<&Map<String, Value>> {
    block(v)
}

/// HCL blocks may arrive as one-item lists.
fn block(v: &Value) -> Option<&Map<String, Value>> {
    match v {
        Value::Object(m) => Some(m),
        Value::Array(items) => items.first().and_then(Value::as_object),
        _ => None,
    }
}

/// Check the `acl` block of one file.
pub fn check(ctx: &Ctx<'_>, v: &Value) -> Result<(), ConfigError> {
    let m = block(v).ok_or_else(|| ctx.bad("acl", "must be an object"))?;
    for (k, item) in m {
        let at = format!("acl.{k}");
        match k.as_str() {
            "enabled" | "enable_token_persistence" | "enable_key_list_policy" => {
                ctx.bool(&at, item)?;
            }
            "default_policy" => match item.as_str() {
                Some("allow" | "deny") => {}
                _ => return Err(ctx.bad(&at, "must be \"allow\" or \"deny\"")),
            },
            "down_policy" => match item.as_str() {
                Some("allow" | "deny" | "extend-cache" | "async-cache") => {}
                _ => {
                    return Err(ctx.bad(
                        &at,
                        "must be \"allow\", \"deny\", \"extend-cache\" or \"async-cache\"",
                    ))
                }
            },
            "token_ttl" | "policy_ttl" | "role_ttl" => {
                ctx.duration(&at, item)?;
            }
            "tokens" => {
                let tokens = block(item).ok_or_else(|| ctx.bad(&at, "must be an object"))?;
                for (t, secret) in tokens {
                    if !TOKEN_KEYS.contains(&t.as_str()) {
                        return Err(ctx.unknown(&format!("acl.tokens.{t}")));
                    }
                    ctx.string(&format!("acl.tokens.{t}"), secret)?;
                }
            }
            _ => return Err(ctx.unknown(&at)),
        }
    }
    Ok(())
}

/// The API's settings from the merged `acl` block; `None` with ACLs off.
pub fn settings(acl: &Map<String, Value>) -> Option<AclConfig> {
    if acl.get("enabled").and_then(Value::as_bool) != Some(true) {
        return None;
    }
    let tokens = acl.get("tokens").and_then(block);
    let token = |names: &[&str]| -> Option<String> {
        names.iter().find_map(|n| {
            tokens?
                .get(*n)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
        })
    };
    let default_token = token(&["default"]);
    let down_policy = match acl.get("down_policy").and_then(Value::as_str) {
        Some("allow") => DownPolicy::Allow,
        Some("deny") => DownPolicy::Deny,
        _ => DownPolicy::ExtendCache,
    };
    let token_ttl = match acl.get("token_ttl") {
        Some(Value::String(s)) => muster_engine::duration::parse(s).ok(),
        Some(Value::Number(n)) => n.as_u64().map(std::time::Duration::from_nanos),
        _ => None,
    }
    .unwrap_or(std::time::Duration::from_secs(30));
    Some(AclConfig {
        enable_token_persistence: acl.get("enable_token_persistence").and_then(Value::as_bool)
            == Some(true),
        down_policy,
        token_ttl,
        default_allow: acl.get("default_policy").and_then(Value::as_str) != Some("deny"),
        initial_management: token(&["initial_management", "master"]),
        agent_token: token(&["agent"]),
        dns_token: token(&["dns"]).or_else(|| default_token.clone()),
        default_token,
    })
}

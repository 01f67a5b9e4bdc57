//! Consul's ACL rule language, in HCL or JSON: resource rules with a
//! segment (`key`/`key_prefix`, `service`/`service_prefix`,
//! `node`/`node_prefix`, `session`/`session_prefix`, `agent`/
//! `agent_prefix`, `event`/`event_prefix`, `query`/`query_prefix`) and the
//! single-value ones (`operator`, `keyring`, `acl`), each with a policy
//! (`read`, `write`, `list` for keys, `deny`). Parsing names the line of a
//! syntax error and the rule of a bad policy.

use serde_json::{Map, Value};

/// A policy of a rule, or the access a request needs.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub enum Access {
    /// Nothing.
    Deny,
    /// Read.
    Read,
    /// Read and list (keys).
    List,
    /// Read, list and write.
    Write,
}

impl Access {
    fn parse(s: &str) -> Option<Access> {
        Some(match s {
            "deny" => Access::Deny,
            "read" => Access::Read,
            "list" => Access::List,
            "write" => Access::Write,
            _ => return None,
        })
    }

    /// Consul's name of the permission (`read`, `write`, `list`).
    pub fn as_str(self) -> &'static str {
        match self {
            Access::Deny => "deny",
            Access::Read => "read",
            Access::List => "list",
            Access::Write => "write",
        }
    }

    /// Whether a rule with this policy grants `want`.
    pub fn grants(self, want: Access) -> bool {
        match self {
            Access::Deny => false,
            _ => self >= want,
        }
    }
}

/// A kind of resource rules name by segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Resource {
    /// KV keys.
    Key,
    /// Services.
    Service,
    /// Nodes.
    Node,
    /// Sessions (by node name).
    Session,
    /// Agents (by node name).
    Agent,
    /// User events (by name).
    Event,
    /// Prepared queries (by name).
    Query,
}

impl Resource {
    const ALL: [(Resource, &'static str); 7] = [
        (Resource::Key, "key"),
        (Resource::Service, "service"),
        (Resource::Node, "node"),
        (Resource::Session, "session"),
        (Resource::Agent, "agent"),
        (Resource::Event, "event"),
        (Resource::Query, "query"),
    ];

    /// Consul's name (`key`, `service`, ...).
    pub fn as_str(self) -> &'static str {
        Resource::ALL
            .iter()
            .find(|(r, _)| *r == self)
            .map_or("", |(_, n)| n)
    }
}

/// The single-value resources.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Global {
    /// `operator`.
    Operator,
    /// `keyring`.
    Keyring,
    /// `acl`.
    Acl,
}

impl Global {
    /// Consul's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Global::Operator => "operator",
            Global::Keyring => "keyring",
            Global::Acl => "acl",
        }
    }
}

/// One segment rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// What it is about.
    pub resource: Resource,
    /// The segment (a name, or a prefix).
    pub segment: String,
    /// `*_prefix` rather than exact.
    pub prefix: bool,
    /// Its policy.
    pub access: Access,
}

/// A parsed rule set (one policy's `Rules`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rules {
    /// The segment rules, in no particular order.
    pub rules: Vec<Rule>,
    /// `operator`, `keyring`, `acl`.
    pub globals: Vec<(Global, Access)>,
}

/// Parse rules written in HCL or JSON (Consul accepts both in `Rules`).
pub fn parse(text: &str) -> Result<Rules, String> {
    if text.trim().is_empty() {
        return Ok(Rules::default());
    }
    let value: Value = if text.trim_start().starts_with('{') {
        serde_json::from_str(text).map_err(|e| format!("Failed to parse ACL rules: {e}"))?
    } else {
        hcl::from_str(text).map_err(|e| {
            let msg = e.to_string();
            let first = msg.lines().next().unwrap_or_default().trim();
            let why = msg.lines().last().unwrap_or_default().trim();
            format!(
                "Failed to parse ACL rules: {} ({})",
                first.trim_start_matches("-->").trim(),
                why.trim_start_matches('=').trim()
            )
        })?
    };
    let Value::Object(top) = value else {
        return Err("Failed to parse ACL rules: not an object".into());
    };
    let mut out = Rules::default();
    for (key, v) in &top {
        if let Some(global) = [Global::Operator, Global::Keyring, Global::Acl]
            .into_iter()
            .find(|g| g.as_str() == key)
        {
            let access = policy_of(key, None, v)?;
            out.globals.push((global, access));
            continue;
        }
        let (name, prefix) = match key.strip_suffix("_prefix") {
            Some(n) => (n, true),
            None => (key.as_str(), false),
        };
        let Some(resource) = Resource::ALL
            .iter()
            .find(|(_, n)| *n == name)
            .map(|(r, _)| *r)
        else {
            return Err(format!(
                "Failed to parse ACL rules: unknown rule type {key:?}"
            ));
        };
        for (segment, body) in segments(key, v)? {
            let access = policy_of(key, Some(&segment), body)?;
            if access == Access::List && resource != Resource::Key {
                return Err(format!(
                    "Invalid rule: {key} {segment:?}: the list policy is only for keys"
                ));
            }
            out.rules.push(Rule {
                resource,
                segment,
                prefix,
                access,
            });
        }
    }
    Ok(out)
}

/// The `"segment" { ... }` entries of a rule type: a map of bodies (or of
/// lists of bodies, when a label repeats), or a list of such maps.
fn segments<'a>(key: &str, v: &'a Value) -> Result<Vec<(String, &'a Value)>, String> {
    let mut out = Vec::new();
    let mut add = |m: &'a Map<String, Value>| {
        for (seg, body) in m {
            match body {
                Value::Array(items) => out.extend(items.iter().map(|b| (seg.clone(), b))),
                b => out.push((seg.clone(), b)),
            }
        }
    };
    match v {
        Value::Object(m) => add(m),
        Value::Array(items) => {
            for item in items {
                match item {
                    Value::Object(m) => add(m),
                    _ => return Err(format!("Invalid rule: {key}: expected a block")),
                }
            }
        }
        _ => {
            return Err(format!(
                "Invalid rule: {key}: expected {key} \"<name>\" {{ policy = ... }}"
            ))
        }
    }
    Ok(out)
}

/// The policy of a rule body (`{policy = "read"}`) or a global's value.
fn policy_of(key: &str, segment: Option<&str>, v: &Value) -> Result<Access, String> {
    let text = match v {
        Value::String(s) => Some(s.as_str()),
        Value::Object(m) => m.get("policy").and_then(Value::as_str),
        _ => None,
    };
    let at = match segment {
        Some(s) => format!("{key} {s:?}"),
        None => key.to_string(),
    };
    let text = text.ok_or_else(|| format!("Invalid rule: {at}: missing policy"))?;
    Access::parse(text).ok_or_else(|| {
        format!("Invalid rule: {at}: policy {text:?} is not one of read, write, list, deny")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hcl_and_json_rules_parse_alike() -> Result<(), String> {
        let hcl = r#"
key_prefix "app/" { policy = "read" }
key_prefix "" { policy = "deny" }
key "app/secret" { policy = "deny" }
service "web" { policy = "write" }
operator = "read"
"#;
        let json = r#"{"key_prefix": {"app/": {"policy": "read"}, "": {"policy": "deny"}},
            "key": {"app/secret": {"policy": "deny"}},
            "service": {"web": {"policy": "write"}}, "operator": "read"}"#;
        let mut a = parse(hcl)?;
        let mut b = parse(json)?;
        let by = |r: &Rule| (r.resource.as_str(), r.segment.clone(), r.prefix);
        a.rules.sort_by_key(by);
        b.rules.sort_by_key(by);
        assert_eq!(a, b);
        assert_eq!(a.rules.len(), 4);
        assert_eq!(a.globals, vec![(Global::Operator, Access::Read)]);
        Ok(())
    }

    #[test]
    fn mistakes_are_named() {
        let err = |t: &str| parse(t).err().unwrap_or_default();
        assert!(
            err("key \"a\" { policy = }").contains("line 1"),
            "{}",
            err("key \"a\" { policy = }")
        );
        assert!(err(r#"key "a" { policy = "reed" }"#).contains(r#"key "a": policy "reed""#));
        assert!(err(r#"kee "a" { policy = "read" }"#).contains("unknown rule type \"kee\""));
        assert!(err(r#"service "a" { policy = "list" }"#).contains("only for keys"));
        assert!(err(r#"operator = "sometimes""#).contains("operator"));
        assert_eq!(parse("  "), Ok(Rules::default()));
    }
}

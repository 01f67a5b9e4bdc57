//! An authorizer: the rules of every policy a token has, merged, and the
//! decision for one (resource, name, access). Consul's precedence: an
//! exact rule beats any prefix rule, the longest prefix wins, `deny` wins
//! among rules at the same place; nothing matching falls to the default
//! policy. A management token may do everything.

use std::collections::HashMap;

use super::rules::{Access, Global, Resource, Rules};

/// Merged rules, ready to answer.
#[derive(Debug, Clone, Default)]
pub struct Authorizer {
    manage: bool,
    default_allow: bool,
    exact: HashMap<(Resource, String), Access>,
    prefixes: HashMap<Resource, Vec<(String, Access)>>,
    globals: HashMap<Global, Access>,
}

/// An authorizer as a server sends it to a client agent (which checks
/// its own endpoints with it).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct AuthorizerWire {
    manage: bool,
    default_allow: bool,
    exact: Vec<(Resource, String, Access)>,
    prefixes: Vec<(Resource, String, Access)>,
    globals: Vec<(Global, Access)>,
}

/// Two policies at the same place: deny wins, else the stronger.
fn merge(a: Access, b: Access) -> Access {
    if a == Access::Deny || b == Access::Deny {
        Access::Deny
    } else {
        a.max(b)
    }
}

impl Authorizer {
    /// Everything allowed (a management token).
    pub fn management() -> Authorizer {
        Authorizer {
            manage: true,
            default_allow: true,
            ..Authorizer::default()
        }
    }

    /// `rule_sets` merged, over the default policy.
    pub fn new(rule_sets: &[Rules], default_allow: bool) -> Authorizer {
        let mut a = Authorizer {
            default_allow,
            ..Authorizer::default()
        };
        for rules in rule_sets {
            for r in &rules.rules {
                if r.prefix {
                    let list = a.prefixes.entry(r.resource).or_default();
                    match list.iter_mut().find(|(s, _)| *s == r.segment) {
                        Some((_, access)) => *access = merge(*access, r.access),
                        None => list.push((r.segment.clone(), r.access)),
                    }
                } else {
                    a.exact
                        .entry((r.resource, r.segment.clone()))
                        .and_modify(|x| *x = merge(*x, r.access))
                        .or_insert(r.access);
                }
            }
            for (g, access) in &rules.globals {
                a.globals
                    .entry(*g)
                    .and_modify(|x| *x = merge(*x, *access))
                    .or_insert(*access);
            }
        }
        a
    }

    /// The wire form.
    pub fn to_wire(&self) -> AuthorizerWire {
        AuthorizerWire {
            manage: self.manage,
            default_allow: self.default_allow,
            exact: self
                .exact
                .iter()
                .map(|((r, n), a)| (*r, n.clone(), *a))
                .collect(),
            prefixes: self
                .prefixes
                .iter()
                .flat_map(|(r, list)| list.iter().map(|(p, a)| (*r, p.clone(), *a)))
                .collect(),
            globals: self.globals.iter().map(|(g, a)| (*g, *a)).collect(),
        }
    }

    /// From the wire form.
    pub fn from_wire(w: AuthorizerWire) -> Authorizer {
        let mut prefixes: HashMap<Resource, Vec<(String, Access)>> = HashMap::new();
        for (r, p, a) in w.prefixes {
            prefixes.entry(r).or_default().push((p, a));
        }
        Authorizer {
            manage: w.manage,
            default_allow: w.default_allow,
            exact: w.exact.into_iter().map(|(r, n, a)| ((r, n), a)).collect(),
            prefixes,
            globals: w.globals.into_iter().collect(),
        }
    }

    /// Whether this is a management token's.
    pub fn is_management(&self) -> bool {
        self.manage
    }

    /// The policy that applies to `name` (`None`: no rule, the default).
    fn policy(&self, resource: Resource, name: &str) -> Option<Access> {
        if let Some(a) = self.exact.get(&(resource, name.to_string())) {
            return Some(*a);
        }
        self.prefixes
            .get(&resource)?
            .iter()
            .filter(|(p, _)| name.starts_with(p.as_str()))
            .max_by_key(|(p, _)| p.len())
            .map(|(_, a)| *a)
    }

    /// May this token have `want` on `name`?
    pub fn allowed(&self, resource: Resource, name: &str, want: Access) -> bool {
        if self.manage {
            return true;
        }
        match self.policy(resource, name) {
            Some(a) => a.grants(want),
            None => self.default_allow,
        }
    }

    /// May it have `want` on every name under `prefix` (a recursive
    /// delete): the prefix itself, and no rule below it that says less.
    pub fn allowed_under(&self, resource: Resource, prefix: &str, want: Access) -> bool {
        if self.manage {
            return true;
        }
        if !self.allowed(resource, prefix, want) {
            return false;
        }
        let exact_ok = self
            .exact
            .iter()
            .filter(|((r, n), _)| *r == resource && n.starts_with(prefix))
            .all(|(_, a)| a.grants(want));
        let prefix_ok = self.prefixes.get(&resource).is_none_or(|list| {
            list.iter()
                .filter(|(p, _)| p.starts_with(prefix) && p.len() > prefix.len())
                .all(|(_, a)| a.grants(want))
        });
        exact_ok && prefix_ok
    }

    /// May it have `want` on a single-value resource (`operator`, ...)?
    pub fn allowed_global(&self, g: Global, want: Access) -> bool {
        if self.manage {
            return true;
        }
        match self.globals.get(&g) {
            Some(a) => a.grants(want),
            None => self.default_allow,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::rules::parse;
    use super::*;

    #[test]
    fn exact_beats_prefix_longest_prefix_wins_deny_wins_at_a_level() -> Result<(), String> {
        let a = parse(
            r#"
key_prefix "" { policy = "read" }
key_prefix "app/" { policy = "write" }
key_prefix "app/secret/" { policy = "deny" }
key "app/secret/ok" { policy = "read" }
"#,
        )?;
        let b =
            parse("key_prefix \"app/\" { policy = \"deny\" }\nkey \"x\" { policy = \"write\" }")?;
        let one = Authorizer::new(std::slice::from_ref(&a), false);
        assert!(one.allowed(Resource::Key, "other", Access::Read));
        assert!(!one.allowed(Resource::Key, "other", Access::Write));
        assert!(one.allowed(Resource::Key, "app/x", Access::Write));
        assert!(!one.allowed(Resource::Key, "app/secret/x", Access::Read));
        assert!(one.allowed(Resource::Key, "app/secret/ok", Access::Read));
        assert!(
            !one.allowed(Resource::Service, "web", Access::Read),
            "default deny"
        );
        assert!(!one.allowed_under(Resource::Key, "app/", Access::Write));
        assert!(one.allowed_under(Resource::Key, "app/x/", Access::Write));
        let both = Authorizer::new(&[a, b], false);
        assert!(
            !both.allowed(Resource::Key, "app/x", Access::Read),
            "deny wins"
        );
        assert!(both.allowed(Resource::Key, "x", Access::Write));
        let allow = Authorizer::new(&[], true);
        assert!(allow.allowed(Resource::Node, "n", Access::Write));
        assert!(Authorizer::management().allowed_global(Global::Acl, Access::Write));
        Ok(())
    }

    #[test]
    fn list_is_between_read_and_write() -> Result<(), String> {
        let r = parse(r#"key_prefix "l/" { policy = "list" }"#)?;
        let a = Authorizer::new(&[r], false);
        assert!(a.allowed(Resource::Key, "l/a", Access::Read));
        assert!(a.allowed(Resource::Key, "l/a", Access::List));
        assert!(!a.allowed(Resource::Key, "l/a", Access::Write));
        Ok(())
    }
}

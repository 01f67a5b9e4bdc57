//! From a request's secret (`query::resolve_token`) to an authorizer: the
//! `acl` settings, the fallbacks (the agent's default token, else
//! anonymous), and a cache
//! of compiled authorizers per secret, dropped whenever the ACL state
//! (the stored-objects table) moves, so a request pays a hash lookup, not
//! a scan of tokens and a parse of their policies.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use muster_engine::{Engine, StoredObject};

use super::agent_tokens::{AgentTokens, TokenSet};
use super::authz::Authorizer;
use super::model::{
    node_identity_rules, service_identity_rules, Link, Policy, Role, Stored, Token,
    ANONYMOUS_ACCESSOR, MANAGEMENT_POLICY_ID, POLICY, ROLE, TOKEN,
};
use super::rules::{parse, Rules};
use crate::error::{Error, Result};

/// The agent's `acl` settings.
#[derive(Debug, Clone, Default)]
pub struct AclConfig {
    /// `default_policy = "allow"` (Consul's default) rather than `deny`.
    pub default_allow: bool,
    /// `tokens.initial_management`: a secret that is a management token.
    pub initial_management: Option<String>,
    /// `tokens.default`: used when a request carries none.
    pub default_token: Option<String>,
    /// `tokens.agent`.
    pub agent_token: Option<String>,
    /// `tokens.dns` (falls back to `default`).
    pub dns_token: Option<String>,
    /// What a client agent does when no server answers for a token it
    /// has not got cached fresh (`down_policy`).
    pub down_policy: DownPolicy,
    /// How long a client agent trusts a resolved token (`token_ttl`).
    pub token_ttl: std::time::Duration,
    /// Keep tokens set through `/v1/agent/token/<kind>` across restarts.
    pub enable_token_persistence: bool,
}

impl AclConfig {
    /// The configured agent tokens.
    fn tokens(&self) -> TokenSet {
        let s = |t: &Option<String>| t.clone().unwrap_or_default();
        TokenSet {
            default: s(&self.default_token),
            agent: s(&self.agent_token),
            dns: s(&self.dns_token),
            ..TokenSet::default()
        }
    }
}

/// `acl.down_policy`: a client agent's answer while no server can resolve
/// a token.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum DownPolicy {
    /// Allow everything.
    Allow,
    /// Deny everything but what a management token could.
    Deny,
    /// Keep using the last answer however old (`extend-cache`; muster
    /// treats `async-cache` the same); deny tokens never resolved.
    #[default]
    ExtendCache,
}

/// A resolved token.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// Its AccessorID (for messages and shared reads).
    pub accessor: String,
    /// What it may do.
    pub authz: Authorizer,
    /// The request named a token (the anonymous one otherwise).
    pub given: bool,
}

/// The ACL system of a server agent.
#[derive(Debug)]
pub struct Acl {
    /// The settings.
    pub cfg: AclConfig,
    /// The agent's own tokens (config, API, persisted).
    pub tokens: AgentTokens,
    datacenter: String,
    cache: Mutex<(u64, HashMap<String, Arc<Resolved>>)>,
    /// A client agent's tokens as servers resolved them, with when.
    pub(super) remote: Mutex<HashMap<String, (std::time::Instant, Arc<Resolved>)>>,
}

impl Acl {
    /// ACLs on, with these settings, in `datacenter`.
    pub fn new(cfg: AclConfig, datacenter: impl Into<String>) -> Acl {
        let tokens = AgentTokens::new(cfg.tokens());
        Acl::with_tokens(cfg, datacenter, tokens)
    }

    /// ACLs on, with `enable_token_persistence` in `data_dir`.
    pub fn persisted(
        cfg: AclConfig,
        datacenter: impl Into<String>,
        data_dir: &std::path::Path,
    ) -> std::result::Result<Acl, String> {
        let tokens = AgentTokens::persisted(cfg.tokens(), data_dir)?;
        Ok(Acl::with_tokens(cfg, datacenter, tokens))
    }

    fn with_tokens(cfg: AclConfig, datacenter: impl Into<String>, tokens: AgentTokens) -> Acl {
        Acl {
            tokens,
            cfg,
            datacenter: datacenter.into(),
            cache: Mutex::new((0, HashMap::new())),
            remote: Mutex::new(HashMap::new()),
        }
    }

    /// `X-Consul-Default-ACL-Policy`.
    pub fn default_policy(&self) -> &'static str {
        if self.cfg.default_allow {
            "allow"
        } else {
            "deny"
        }
    }

    /// The authorizer for `secret` (`None`: the agent's default token, or
    /// anonymous). An unknown secret is 403 `ACL not found`.
    pub fn resolve(&self, engine: &Engine, secret: Option<&str>) -> Result<Arc<Resolved>> {
        let (secret, given) = self.secret_or_default(secret);
        // Key and rows from one view: a hit is never older than its key.
        let view = engine.objects_view();
        let index = view.index()?;
        {
            let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
            if cache.0 != index {
                *cache = (index, HashMap::new());
            }
            if let Some(hit) = cache.1.get(&secret) {
                return Ok(with_given(hit, given));
            }
        }
        let resolved = Arc::new(self.compile(&view, &secret)?);
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        if cache.0 == index && cache.1.len() < 65_536 {
            cache.1.insert(secret, resolved.clone());
        }
        Ok(with_given(&resolved, given))
    }

    /// The request's secret, or the agent's default token.
    pub(super) fn secret_or_default(&self, secret: Option<&str>) -> (String, bool) {
        match secret.filter(|s| !s.is_empty()) {
            Some(s) => (s.to_string(), true),
            None => (self.tokens.default_token().unwrap_or_default(), false),
        }
    }

    /// `secret` is this agent's `initial_management` token.
    pub(super) fn is_initial_management(&self, secret: &str) -> bool {
        !secret.is_empty() && self.cfg.initial_management.as_deref() == Some(secret)
    }

    fn compile(&self, view: &muster_engine::ObjectsView<'_>, secret: &str) -> Result<Resolved> {
        if self.is_initial_management(secret) {
            return Ok(Resolved {
                accessor: "initial-management".into(),
                authz: Authorizer::management(),
                given: true,
            });
        }
        let all = |kind: &str| -> Result<Vec<StoredObject>> { Ok(view.list(kind)?) };
        let tokens = all(TOKEN)?;
        let token = if secret.is_empty() || secret == "anonymous" {
            tokens
                .iter()
                .find(|o| o.id == ANONYMOUS_ACCESSOR)
                .and_then(Token::from_object)
                .unwrap_or_else(|| Token {
                    accessor_id: ANONYMOUS_ACCESSOR.into(),
                    ..Token::default()
                })
        } else {
            tokens
                .iter()
                .find(|o| o.name == secret)
                .and_then(Token::from_object)
                .filter(|t| !expired(t))
                .ok_or_else(|| Error::Forbidden("ACL not found".into()))?
        };
        let policies: Vec<Policy> = all(POLICY)?
            .iter()
            .filter_map(Policy::from_object)
            .collect();
        let roles: Vec<Role> = all(ROLE)?.iter().filter_map(Role::from_object).collect();
        let find_policy = |l: &Link| policies.iter().find(|p| l.names(&p.id, &p.name));
        let mut links: Vec<Link> = token.policies.clone();
        let mut sets: Vec<Rules> = Vec::new();
        let mut manage = links.iter().any(|l| l.id == MANAGEMENT_POLICY_ID);
        for l in &token.roles {
            let role = roles.iter().find(|r| l.names(&r.id, &r.name));
            if let Some(role) = role {
                links.extend(role.policies.iter().cloned());
                manage |= role.policies.iter().any(|l| l.id == MANAGEMENT_POLICY_ID);
                sets.extend(
                    role.service_identities
                        .iter()
                        .map(|s| service_identity_rules(&s.service_name)),
                );
                sets.extend(
                    role.node_identities
                        .iter()
                        .map(|n| node_identity_rules(&n.node_name)),
                );
            }
        }
        for l in &links {
            let Some(p) = find_policy(l) else { continue };
            if p.id == MANAGEMENT_POLICY_ID {
                manage = true;
                continue;
            }
            if !p.datacenters.is_empty() && !p.datacenters.contains(&self.datacenter) {
                continue;
            }
            // Stored rules were checked when written.
            if let Ok(rules) = parse(&p.rules) {
                sets.push(rules);
            }
        }
        sets.extend(
            token
                .service_identities
                .iter()
                .filter(|s| s.datacenters.is_empty() || s.datacenters.contains(&self.datacenter))
                .map(|s| service_identity_rules(&s.service_name)),
        );
        sets.extend(
            token
                .node_identities
                .iter()
                .filter(|n| n.datacenter.is_empty() || n.datacenter == self.datacenter)
                .map(|n| node_identity_rules(&n.node_name)),
        );
        Ok(Resolved {
            accessor: token.accessor_id,
            authz: if manage {
                Authorizer::management()
            } else {
                Authorizer::new(&sets, self.cfg.default_allow)
            },
            given: !secret.is_empty(),
        })
    }
}

pub(super) fn with_given(r: &Arc<Resolved>, given: bool) -> Arc<Resolved> {
    if r.given == given {
        return r.clone();
    }
    Arc::new(Resolved {
        given,
        ..(**r).clone()
    })
}

/// Past its `ExpirationTime` (RFC 3339, compared as text in UTC `Z` form).
fn expired(t: &Token) -> bool {
    match &t.expiration_time {
        Some(at) if !at.is_empty() => at.as_str() <= super::now_rfc3339().as_str(),
        _ => false,
    }
}

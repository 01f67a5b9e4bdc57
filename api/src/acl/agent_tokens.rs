//! The agent's own tokens (`default`, `agent`, `agent_recovery`, `dns`,
//! `replication`): from `acl.tokens` at start, changed at run time by
//! `PUT /v1/agent/token/<kind>` (`muster acl set-agent-token`), and with
//! `enable_token_persistence` kept in `<data_dir>/acl-tokens.json` (mode
//! 0600), which wins over the config files on the next start, as in
//! Consul. A change of the agent token reaches whoever carries it (a
//! client agent's link to the servers).

use std::path::{Path, PathBuf};
use std::sync::{OnceLock, PoisonError, RwLock};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The name of the persisted tokens' file in the data directory.
pub const PERSISTED_FILE: &str = "acl-tokens.json";

/// One set of the agent's tokens (empty: not set).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TokenSet {
    /// Used for requests that carry no token.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub default: String,
    /// The agent's own operations (anti-entropy).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub agent: String,
    /// Agent endpoints when the servers are unreachable.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub agent_recovery: String,
    /// DNS answers (falls back to `default`).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub dns: String,
    /// Replication between datacenters.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub replication: String,
}

impl TokenSet {
    /// The slot for `kind` (Consul's names, and the legacy ones).
    fn slot(&mut self, kind: &str) -> Option<&mut String> {
        Some(match kind {
            "default" | "acl_token" => &mut self.default,
            "agent" | "acl_agent_token" => &mut self.agent,
            "agent_recovery" | "agent_master" | "acl_agent_master_token" => {
                &mut self.agent_recovery
            }
            "dns" => &mut self.dns,
            "replication" | "acl_replication_token" => &mut self.replication,
            _ => return None,
        })
    }

    /// Fill the empty slots from `other`.
    fn or(mut self, other: &TokenSet) -> TokenSet {
        for (mine, theirs) in [
            (&mut self.default, &other.default),
            (&mut self.agent, &other.agent),
            (&mut self.agent_recovery, &other.agent_recovery),
            (&mut self.dns, &other.dns),
            (&mut self.replication, &other.replication),
        ] {
            if mine.is_empty() {
                mine.clone_from(theirs);
            }
        }
        self
    }
}

/// Called with the new agent token when it changes.
type Hook = Box<dyn Fn(&str) + Send + Sync>;

/// The live tokens.
pub struct AgentTokens {
    /// The tokens in force, and those set through the API (what is
    /// persisted).
    set: RwLock<(TokenSet, TokenSet)>,
    /// Where to persist them (`enable_token_persistence`).
    file: Option<PathBuf>,
    on_agent: OnceLock<Hook>,
}

impl std::fmt::Debug for AgentTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Secrets never appear in logs.
        f.debug_struct("AgentTokens")
            .field("file", &self.file)
            .finish_non_exhaustive()
    }
}

impl AgentTokens {
    /// The configured tokens, without persistence.
    pub fn new(configured: TokenSet) -> AgentTokens {
        AgentTokens {
            set: RwLock::new((configured, TokenSet::default())),
            file: None,
            on_agent: OnceLock::new(),
        }
    }

    /// With persistence in `data_dir`: tokens set earlier through the API
    /// win over `configured`. An unreadable file is an error naming it.
    pub fn persisted(configured: TokenSet, data_dir: &Path) -> std::result::Result<Self, String> {
        let file = data_dir.join(PERSISTED_FILE);
        let saved = match std::fs::read(&file) {
            Ok(bytes) => serde_json::from_slice::<TokenSet>(&bytes).map_err(|e| {
                format!(
                    "{}: {e} (delete it to start from the config's tokens)",
                    file.display()
                )
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => TokenSet::default(),
            Err(e) => return Err(format!("{}: {e}", file.display())),
        };
        Ok(AgentTokens {
            set: RwLock::new((saved.clone().or(&configured), saved)),
            file: Some(file),
            on_agent: OnceLock::new(),
        })
    }

    /// A copy of the current tokens.
    pub fn current(&self) -> TokenSet {
        self.set
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .0
            .clone()
    }

    /// The default token, if set.
    pub fn default_token(&self) -> Option<String> {
        Some(self.current().default).filter(|s| !s.is_empty())
    }

    /// The token DNS answers with: `dns`, else `default`.
    pub fn dns_token(&self) -> Option<String> {
        let t = self.current();
        [t.dns, t.default].into_iter().find(|s| !s.is_empty())
    }

    /// The token the agent's own operations carry: `agent`, else
    /// `default`.
    pub fn agent_token(&self) -> String {
        let t = self.current();
        if t.agent.is_empty() {
            t.default
        } else {
            t.agent
        }
    }

    /// Call `hook` with the agent token whenever it changes.
    pub fn on_agent_token(&self, hook: impl Fn(&str) + Send + Sync + 'static) {
        let _ = self.on_agent.set(Box::new(hook));
    }

    /// Set the token of `kind` (404 `Token "<kind>" is unknown` for other
    /// names); persisted when enabled.
    pub fn set(&self, kind: &str, secret: &str) -> Result<()> {
        let updated = {
            let mut set = self.set.write().unwrap_or_else(PoisonError::into_inner);
            let (live, from_api) = &mut *set;
            for slot in [live.slot(kind), from_api.slot(kind)] {
                *slot.ok_or_else(|| Error::NotFound(format!("Token {kind:?} is unknown")))? =
                    secret.to_string();
            }
            from_api.clone()
        };
        if let Some(file) = &self.file {
            save(file, &updated).map_err(|e| {
                Error::Internal(format!(
                    "failed to persist the token in {}: {e}",
                    file.display()
                ))
            })?;
        }
        if let Some(hook) = self.on_agent.get() {
            hook(&self.agent_token());
        }
        tracing::info!(kind, "agent ACL token updated");
        Ok(())
    }
}

/// Write `set` to `file` whole (a temporary file, synced, renamed), mode
/// 0600.
fn save(file: &Path, set: &TokenSet) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = file.with_extension("json.tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(&serde_json::to_vec_pretty(set).map_err(std::io::Error::other)?)?;
    f.sync_all()?;
    std::fs::rename(&tmp, file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn persisted_tokens_win_over_the_config_and_unknown_kinds_are_404(
    ) -> std::result::Result<(), String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let configured = TokenSet {
            default: "cfg-default".into(),
            agent: "cfg-agent".into(),
            ..TokenSet::default()
        };
        let tokens = AgentTokens::persisted(configured.clone(), dir.path())?;
        assert_eq!(tokens.agent_token(), "cfg-agent");
        tokens
            .set("acl_agent_token", "api-agent")
            .map_err(|e| e.to_string())?;
        assert!(matches!(tokens.set("nope", "x"), Err(Error::NotFound(_))));
        let again = AgentTokens::persisted(configured, dir.path())?;
        assert_eq!(again.agent_token(), "api-agent");
        assert_eq!(again.default_token().as_deref(), Some("cfg-default"));
        assert_eq!(again.dns_token().as_deref(), Some("cfg-default"));
        Ok(())
    }
}

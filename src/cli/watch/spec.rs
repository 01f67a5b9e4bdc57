//! What a watch watches and what it runs: [`Spec`] (the watch type and its
//! parameters, validated as Consul's `watch.Parse` validates them) and
//! [`Handler`] (a script or an HTTP endpoint). `muster watch` builds them
//! from flags, the agent's `watches` config key from a config file; both
//! go through [`Params::parse`], so the two accept the same watches and
//! refuse the same mistakes in the same words.
//!
//! This module only validates and builds request paths; running a watch is
//! `plan.rs`, running a handler `handler.rs`.

use std::ffi::OsString;
use std::time::Duration;

use crate::cli::http::{kv_path, query_value};

/// The check states `-state` takes (`/v1/health/state/:state`).
const CHECK_STATES: &[&str] = &["any", "passing", "warning", "critical"];

/// The watch types, for messages.
const TYPES: &str = "key, keyprefix, services, nodes, service, checks or event";

/// Consul's default timeout of an HTTP handler.
pub const DEFAULT_HTTP_TIMEOUT: Duration = Duration::from_secs(10);

/// One watch type and its own parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// `key`: one KV entry (`null` while it does not exist).
    Key {
        /// The key, without a leading `/`.
        key: String,
    },
    /// `keyprefix`: every KV entry under a prefix.
    KeyPrefix {
        /// The prefix, without a leading `/`.
        prefix: String,
    },
    /// `services`: the catalog's service names and their tags.
    Services,
    /// `nodes`: the catalog's nodes.
    Nodes,
    /// `service`: the instances of one service with their checks.
    Service {
        /// The service name.
        service: String,
        /// Instances must carry every one of these tags.
        tags: Vec<String>,
        /// Only instances whose checks all pass.
        passing_only: bool,
    },
    /// `checks`: health checks of one service, or in one state.
    Checks {
        /// Which checks.
        by: ChecksBy,
        /// Tag filter, passed through as `?tag=`.
        tags: Vec<String>,
    },
    /// `event`: user events, optionally of one name.
    Event {
        /// The event name, if filtered.
        name: Option<String>,
    },
}

/// The selector of a `checks` watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChecksBy {
    /// The checks of one service (`/v1/health/checks/:service`).
    Service(String),
    /// The checks in one state (`/v1/health/state/:state`).
    State(String),
}

/// A validated watch: the type and the parameters every type shares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    /// The type and its parameters.
    pub kind: Kind,
    /// `?dc=`: another datacenter (default: the agent's).
    pub datacenter: Option<String>,
    /// The ACL token sent with the watch's queries.
    pub token: Option<String>,
    /// `?stale`: any server may answer.
    pub stale: bool,
}

/// How a script handler is started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Script {
    /// `$SHELL -c <script>` (default `/bin/sh`): the CLI's default and the
    /// deprecated `handler` string.
    Shell(String),
    /// The program and its arguments, no shell: `-shell=false` and `args`.
    Args(Vec<OsString>),
}

/// Where an HTTP handler sends the JSON (`http_handler_config`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpTarget {
    /// The URL (`http://...`).
    pub path: String,
    /// The method (default `POST`).
    pub method: String,
    /// Extra headers, each name with its values in order.
    pub header: Vec<(String, Vec<String>)>,
    /// The whole request's timeout (default 10 s).
    pub timeout: Duration,
    /// `tls_skip_verify`: accepted; HTTPS targets are refused, so it has
    /// no effect.
    pub tls_skip_verify: bool,
}

/// What runs on each change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handler {
    /// Print the result, indented, to stdout and stop (`muster watch`
    /// without a command).
    Print,
    /// Run a command with the JSON on its stdin.
    Script(Script),
    /// Send the JSON in an HTTP request.
    Http(HttpTarget),
}

/// Raw watch parameters, as Consul's `params` map: the flags or a config
/// entry, each `Some` when given (an empty string counts as given in a
/// config file, as in Consul; the CLI leaves empty flags out).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params {
    /// `type`.
    pub kind: Option<String>,
    /// `datacenter`.
    pub datacenter: Option<String>,
    /// `token`.
    pub token: Option<String>,
    /// `key`.
    pub key: Option<String>,
    /// `prefix`.
    pub prefix: Option<String>,
    /// `service`.
    pub service: Option<String>,
    /// `tag` (one or several).
    pub tag: Option<Vec<String>>,
    /// `passingonly`.
    pub passing_only: Option<bool>,
    /// `stale`.
    pub stale: Option<bool>,
    /// `state`.
    pub state: Option<String>,
    /// `name`.
    pub name: Option<String>,
}

impl Params {
    /// Validate into a [`Spec`] as Consul's `watch.Parse` does: a type is
    /// required and must be known, each type requires its own parameters
    /// and refuses the others (`Invalid parameters: [key]`). `flag` renders
    /// a parameter's name as the user wrote it (`-key` on the command line,
    /// `"key"` in a config file), for the fix in each message.
    pub fn parse(self, flag: &dyn Fn(&str) -> String) -> Result<Spec, String> {
        let Params {
            kind,
            datacenter,
            token,
            mut key,
            mut prefix,
            mut service,
            mut tag,
            mut passing_only,
            mut stale,
            mut state,
            mut name,
        } = self;
        let stale_value = stale.unwrap_or(false);
        let Some(kind) = kind.filter(|k| !k.is_empty()) else {
            return Err(format!(
                "Watch type must be specified: set {} to one of {TYPES}",
                flag("type")
            ));
        };
        let parsed = match kind.as_str() {
            "key" => {
                stale.take();
                match key.take().filter(|k| !k.is_empty()) {
                    Some(k) => Kind::Key {
                        key: k.trim_start_matches('/').to_string(),
                    },
                    None => {
                        return Err(format!(
                            "Must specify a single key to watch: set {}",
                            flag("key")
                        ))
                    }
                }
            }
            "keyprefix" => {
                stale.take();
                match prefix.take().filter(|p| !p.is_empty()) {
                    Some(p) => Kind::KeyPrefix {
                        prefix: p.trim_start_matches('/').to_string(),
                    },
                    None => {
                        return Err(format!(
                            "Must specify a single prefix to watch: set {}",
                            flag("prefix")
                        ))
                    }
                }
            }
            "services" => {
                stale.take();
                Kind::Services
            }
            "nodes" => {
                stale.take();
                Kind::Nodes
            }
            "service" => {
                stale.take();
                let Some(s) = service.take().filter(|s| !s.is_empty()) else {
                    return Err(format!(
                        "Must specify a single service to watch: set {}",
                        flag("service")
                    ));
                };
                Kind::Service {
                    service: s,
                    tags: tag.take().unwrap_or_default(),
                    passing_only: passing_only.take().unwrap_or(false),
                }
            }
            "checks" => {
                stale.take();
                let s = service.take().unwrap_or_default();
                let st = state.take().unwrap_or_default();
                let by = match (s.is_empty(), st.is_empty()) {
                    (false, false) => {
                        return Err(format!(
                            "Cannot specify service and state: set either {} or {}",
                            flag("service"),
                            flag("state")
                        ))
                    }
                    (false, true) => ChecksBy::Service(s),
                    (true, false) if !CHECK_STATES.contains(&st.as_str()) => {
                        return Err(format!(
                            "Invalid check state {st:?}: set {} to any, passing, warning or \
                             critical",
                            flag("state")
                        ))
                    }
                    (true, false) => ChecksBy::State(st),
                    (true, true) => ChecksBy::State("any".into()),
                };
                Kind::Checks {
                    by,
                    tags: tag.take().unwrap_or_default(),
                }
            }
            // Consul: "The stale setting doesn't apply to events".
            "event" => Kind::Event {
                name: name.take().filter(|n| !n.is_empty()),
            },
            "connect_roots" | "connect_leaf" | "agent_service" => {
                return Err(format!(
                    "Unsupported watch type: {kind}: muster has no service mesh or \
                     agent_service watches; use one of {TYPES}"
                ))
            }
            other => {
                return Err(format!(
                    "Unsupported watch type: {other}: use one of {TYPES}"
                ))
            }
        };
        // Whatever the type did not take is a mistake (Consul's "Ensure all
        // parameters are consumed").
        let unused: Vec<&str> = [
            ("key", key.is_some()),
            ("prefix", prefix.is_some()),
            ("service", service.is_some()),
            ("tag", tag.is_some()),
            ("passingonly", passing_only.is_some()),
            ("stale", stale.is_some()),
            ("state", state.is_some()),
            ("name", name.is_some()),
        ]
        .into_iter()
        .filter(|(_, set)| *set)
        .map(|(n, _)| n)
        .collect();
        if !unused.is_empty() {
            let names: Vec<String> = unused.iter().map(|n| flag(n)).collect();
            return Err(format!(
                "Invalid parameters: [{}]: a {kind} watch does not take {}",
                unused.join(" "),
                names.join(", ")
            ));
        }
        Ok(Spec {
            kind: parsed,
            stale: stale_value,
            datacenter: datacenter.filter(|d| !d.is_empty()),
            token: token.filter(|t| !t.is_empty()),
        })
    }
}

/// The `wait` of each blocking read: well under the HTTP client's 60 s
/// request timeout, even with the server's jitter (at most wait/16).
pub const BLOCKING_WAIT: &str = "30s";

impl Spec {
    /// The watch type's name (`key`, `service`, ...), for logs.
    pub fn type_name(&self) -> &'static str {
        match self.kind {
            Kind::Key { .. } => "key",
            Kind::KeyPrefix { .. } => "keyprefix",
            Kind::Services => "services",
            Kind::Nodes => "nodes",
            Kind::Service { .. } => "service",
            Kind::Checks { .. } => "checks",
            Kind::Event { .. } => "event",
        }
    }

    /// The request path of one read: a blocking one (`index=&wait=`) when
    /// `index` is not 0, as Consul's client sends `WaitIndex`.
    pub fn path(&self, index: u64) -> String {
        let mut query: Vec<String> = Vec::new();
        let tags = |query: &mut Vec<String>, tags: &[String]| {
            query.extend(tags.iter().map(|t| format!("tag={}", query_value(t))));
        };
        let base = match &self.kind {
            Kind::Key { key } => kv_path(key),
            Kind::KeyPrefix { prefix } => {
                query.push("recurse".into());
                kv_path(prefix)
            }
            Kind::Services => "/v1/catalog/services".into(),
            Kind::Nodes => "/v1/catalog/nodes".into(),
            Kind::Service {
                service,
                tags: t,
                passing_only,
            } => {
                tags(&mut query, t);
                if *passing_only {
                    query.push("passing=1".into());
                }
                format!("/v1/health/service/{}", query_value(service))
            }
            Kind::Checks { by, tags: t } => {
                tags(&mut query, t);
                match by {
                    ChecksBy::Service(s) => format!("/v1/health/checks/{}", query_value(s)),
                    ChecksBy::State(s) => format!("/v1/health/state/{}", query_value(s)),
                }
            }
            Kind::Event { name } => {
                if let Some(name) = name {
                    query.push(format!("name={}", query_value(name)));
                }
                "/v1/event/list".into()
            }
        };
        if let Some(dc) = &self.datacenter {
            query.push(format!("dc={}", query_value(dc)));
        }
        if self.stale {
            query.push("stale".into());
        }
        if index > 0 {
            query.push(format!("index={index}"));
            query.push(format!("wait={BLOCKING_WAIT}"));
        }
        if query.is_empty() {
            base
        } else {
            format!("{base}?{}", query.join("&"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cli(name: &str) -> String {
        format!("-{name}")
    }

    fn params(kind: &str) -> Params {
        Params {
            kind: Some(kind.into()),
            ..Params::default()
        }
    }

    #[test]
    fn each_type_requires_its_parameter() {
        for (kind, msg) in [
            ("key", "Must specify a single key to watch: set -key"),
            (
                "keyprefix",
                "Must specify a single prefix to watch: set -prefix",
            ),
            (
                "service",
                "Must specify a single service to watch: set -service",
            ),
        ] {
            assert_eq!(params(kind).parse(&cli), Err(msg.to_string()), "{kind}");
        }
        let none = Params::default().parse(&cli);
        assert!(none.is_err_and(|e| e.starts_with("Watch type must be specified: set -type")));
        let bad = params("keys").parse(&cli);
        assert!(bad.is_err_and(|e| e.starts_with("Unsupported watch type: keys")));
    }

    #[test]
    fn parameters_of_other_types_are_refused() {
        let p = Params {
            key: Some("k".into()),
            service: Some("web".into()),
            ..params("services")
        };
        assert_eq!(
            p.parse(&cli),
            Err(
                "Invalid parameters: [key service]: a services watch does not take -key, -service"
                    .to_string()
            )
        );
        let stale_event = Params {
            stale: Some(true),
            ..params("event")
        };
        assert!(stale_event
            .parse(&cli)
            .is_err_and(|e| e.starts_with("Invalid parameters: [stale]")));
        let both = Params {
            service: Some("web".into()),
            state: Some("passing".into()),
            ..params("checks")
        };
        assert!(both
            .parse(&cli)
            .is_err_and(|e| e.starts_with("Cannot specify service and state")));
    }

    #[test]
    fn paths_follow_consuls_client() -> Result<(), String> {
        let key = Params {
            key: Some("/a b/c".into()),
            stale: Some(true),
            datacenter: Some("dc2".into()),
            ..params("key")
        }
        .parse(&cli)?;
        assert_eq!(key.path(0), "/v1/kv/a%20b/c?dc=dc2&stale");
        assert_eq!(key.path(7), "/v1/kv/a%20b/c?dc=dc2&stale&index=7&wait=30s");
        let service = Params {
            service: Some("web".into()),
            tag: Some(vec!["a".into(), "b".into()]),
            passing_only: Some(true),
            ..params("service")
        }
        .parse(&cli)?;
        assert_eq!(
            service.path(0),
            "/v1/health/service/web?tag=a&tag=b&passing=1"
        );
        assert_eq!(
            params("checks").parse(&cli)?.path(0),
            "/v1/health/state/any"
        );
        let event = Params {
            name: Some("deploy".into()),
            ..params("event")
        }
        .parse(&cli)?;
        assert_eq!(event.path(3), "/v1/event/list?name=deploy&index=3&wait=30s");
        assert_eq!(
            Params {
                prefix: Some("app/".into()),
                ..params("keyprefix")
            }
            .parse(&cli)?
            .path(0),
            "/v1/kv/app/?recurse"
        );
        Ok(())
    }
}

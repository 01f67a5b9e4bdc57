//! Service and check definitions as an agent receives them (config files,
//! `/v1/agent/service/register`, `/v1/agent/check/register`), before they
//! become catalog records, and the rules they must meet (consul-compat.md
//! §6), which catalog registrations share.
//!
//! - [`decode`]: the one decoder, for HTTP bodies and config files alike,
//!   with key-path errors.
//! - [`encode`]: back into the API's JSON (for `muster services register`).

pub mod decode;
pub mod encode;

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use muster_engine::{ServiceAddress, Status, Weights};

/// A service definition.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ServiceDefinition {
    /// Instance ID (defaults to `name`).
    pub id: String,
    /// Service name (required).
    pub name: String,
    /// Tags.
    pub tags: Vec<String>,
    /// Address (`""` = the node's).
    pub address: String,
    /// Tagged addresses.
    pub tagged_addresses: BTreeMap<String, ServiceAddress>,
    /// Port.
    pub port: u16,
    /// Unix socket path.
    pub socket_path: String,
    /// Metadata.
    pub meta: BTreeMap<String, String>,
    /// SRV weights.
    pub weights: Weights,
    /// Let catalog tags win in anti-entropy.
    pub enable_tag_override: bool,
    /// Mesh kind (`""` for typical services).
    pub kind: String,
    /// Checks defined inline (`check` / `checks`).
    pub checks: Vec<CheckDefinition>,
    /// ACL token for this service's sync (accepted, unused until ACLs).
    pub token: String,
}

/// A resource of this machine a check measures (muster's own kinds).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Resource {
    /// Memory in use, `(MemTotal - MemAvailable) / MemTotal`, read from
    /// `source` (default `/proc/meminfo`).
    Memory {
        /// The file read instead of `/proc/meminfo` (`""`: that one).
        source: String,
    },
    /// CPU busy over one second, from `source` (default `/proc/stat`).
    Cpu {
        /// The file read instead of `/proc/stat` (`""`: that one).
        source: String,
    },
    /// Space in use on the filesystem holding `path`, as `df` counts it.
    Disk {
        /// A path on the filesystem.
        path: String,
    },
    /// Inodes in use on the filesystem holding `path`.
    Inodes {
        /// A path on the filesystem.
        path: String,
    },
    /// A process is alive (by the PID in `pidfile`, else by `name`); its
    /// RSS as a share of the machine's memory is what thresholds judge.
    Process {
        /// A file holding the PID.
        pidfile: String,
        /// The process name (`comm`, as `ps` shows it).
        name: String,
    },
}

impl Resource {
    /// The check's `Type` and its definition key, lowercase.
    pub fn name(&self) -> &'static str {
        match self {
            Resource::Memory { .. } => "memory",
            Resource::Cpu { .. } => "cpu",
            Resource::Disk { .. } => "disk",
            Resource::Inodes { .. } => "inodes",
            Resource::Process { .. } => "process",
        }
    }
}

/// A resource check: the resource and its thresholds in hundredths of a
/// percent (at least one set).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceCheck {
    /// What is measured.
    pub resource: Resource,
    /// Warning at or above this.
    pub warning: Option<u32>,
    /// Critical at or above this.
    pub critical: Option<u32>,
}

/// Hundredths of a percent as Consul-style text (`80%`, `80.5%`).
pub fn percent(hundredths: u32) -> String {
    let text = format!("{}.{:02}", hundredths / 100, hundredths % 100);
    format!("{}%", text.trim_end_matches('0').trim_end_matches('.'))
}

/// What a check does.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum CheckKind {
    /// No kind given: only valid as an error to report.
    #[default]
    Unset,
    /// Run a command; exit 0 passing, 1 warning, else critical. A legacy
    /// `script` string becomes `["/bin/sh", "-c", script]`.
    Script {
        /// argv.
        args: Vec<String>,
    },
    /// HTTP request; 2xx passing, 429 warning, else critical.
    Http {
        /// URL.
        url: String,
        /// Method (default GET).
        method: String,
        /// Extra headers.
        header: BTreeMap<String, Vec<String>>,
        /// Request body.
        body: String,
        /// TLS SNI name.
        tls_server_name: String,
        /// Skip TLS verification.
        tls_skip_verify: bool,
        /// Do not follow redirects.
        disable_redirects: bool,
    },
    /// TCP connect.
    Tcp {
        /// `host:port`.
        addr: String,
    },
    /// UDP send; a reply or a read timeout is passing.
    Udp {
        /// `host:port`.
        addr: String,
    },
    /// Time to live: updated through the API; expiry is critical.
    Ttl {
        /// The TTL.
        ttl: Duration,
    },
    /// gRPC health protocol.
    Grpc {
        /// `host:port[/service]`.
        target: String,
        /// Use TLS.
        use_tls: bool,
    },
    /// Exec in a Docker container through the Docker Engine API.
    Docker {
        /// Container ID.
        container_id: String,
        /// Shell (default `/bin/sh`).
        shell: String,
        /// argv (or one script string run through the shell).
        args: Vec<String>,
    },
    /// A resource of this machine against thresholds (muster's own:
    /// `memory`, `cpu`, `disk`, `inodes`).
    Resource(ResourceCheck),
    /// Mirror the health of another service instance (and its node).
    Alias {
        /// Service instance ID.
        service: String,
        /// Node (default: this agent's).
        node: String,
    },
}

/// A check definition.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct CheckDefinition {
    /// Check ID (defaults: standalone `name`; inline `service:<sid>[:n]`).
    pub id: String,
    /// Name (inline default `Service '<name>' check`).
    pub name: String,
    /// Notes.
    pub notes: String,
    /// The service instance this check belongs to (`""` = node check).
    pub service_id: String,
    /// Initial status (default critical).
    pub status: Option<Status>,
    /// What the check does.
    pub kind: CheckKind,
    /// Run interval (interval kinds; raised to at least 1 s).
    pub interval: Duration,
    /// Timeout (default per kind: script 30 s, others 10 s).
    pub timeout: Option<Duration>,
    /// Consecutive successes needed before passing is reported.
    pub success_before_passing: u32,
    /// Consecutive failures before warning (default = before critical).
    pub failures_before_warning: u32,
    /// Consecutive failures before critical (default 1 — i.e. at once).
    pub failures_before_critical: u32,
    /// Output cap in bytes (default 4096).
    pub output_max_size: usize,
    /// Reap the service after being critical this long (min 1 minute).
    pub deregister_critical_service_after: Option<Duration>,
}

/// Default check output cap.
pub const DEFAULT_OUTPUT_MAX_SIZE: usize = 4096;

impl CheckDefinition {
    /// Consul's `Type` string.
    pub fn check_type(&self) -> &'static str {
        match self.kind {
            CheckKind::Unset => "",
            CheckKind::Script { .. } => "script",
            CheckKind::Http { .. } => "http",
            CheckKind::Tcp { .. } => "tcp",
            CheckKind::Udp { .. } => "udp",
            CheckKind::Ttl { .. } => "ttl",
            CheckKind::Grpc { .. } => "grpc",
            CheckKind::Docker { .. } => "docker",
            CheckKind::Alias { .. } => "alias",
            CheckKind::Resource(ref r) => r.resource.name(),
        }
    }

    /// True for kinds run on an interval.
    pub fn is_interval_kind(&self) -> bool {
        !matches!(
            self.kind,
            CheckKind::Unset | CheckKind::Ttl { .. } | CheckKind::Alias { .. }
        )
    }

    /// The timeout in force: explicit, else 30 s for scripts and Docker,
    /// 10 s for the others.
    pub fn effective_timeout(&self) -> Duration {
        self.timeout.unwrap_or(match self.kind {
            CheckKind::Script { .. } | CheckKind::Docker { .. } => Duration::from_secs(30),
            _ => Duration::from_secs(10),
        })
    }

    /// Consul's validation (§6.2); the message goes after `Invalid check: `.
    pub fn validate(&self) -> Result<(), String> {
        match &self.kind {
            CheckKind::Unset => Err("TTL must be > 0 for TTL checks".into()),
            CheckKind::Ttl { ttl } if ttl.is_zero() => Err("TTL must be > 0 for TTL checks".into()),
            CheckKind::Ttl { .. } if !self.interval.is_zero() => {
                Err("Interval and TTL cannot both be specified".into())
            }
            CheckKind::Alias { .. } if !self.interval.is_zero() => {
                Err("Interval cannot be set for alias checks".into())
            }
            _ if self.is_interval_kind() && self.interval.is_zero() => Err(format!(
                "Interval must be > 0 for {} checks",
                self.check_type()
            )),
            _ if self.failures_before_warning > self.failures_before_critical
                && self.failures_before_critical > 0 =>
            {
                Err(
                    "FailuresBeforeWarning must be less than or equal to FailuresBeforeCritical"
                        .into(),
                )
            }
            _ => Ok(()),
        }
    }
}

impl ServiceDefinition {
    /// Apply Consul's defaults: ID from name; inline check IDs
    /// `service:<id>` (one check) or `service:<id>:<n>` (several, 1-based);
    /// inline check names `Service '<name>' check`; inline checks belong to
    /// this service.
    pub fn normalize(&mut self) {
        if self.id.is_empty() {
            self.id = self.name.clone();
        }
        let several = self.checks.len() > 1;
        for (i, c) in self.checks.iter_mut().enumerate() {
            if c.id.is_empty() {
                c.id = if several {
                    format!("service:{}:{}", self.id, i + 1)
                } else {
                    format!("service:{}", self.id)
                };
            }
            if c.name.is_empty() {
                c.name = format!("Service '{}' check", self.name);
            }
            c.service_id = self.id.clone();
        }
    }

    /// Consul's rules for a service (§6.1), the one place they are checked
    /// for HTTP bodies, catalog registrations and config files alike; the
    /// message is Consul's (`Missing service name`, `Invalid service
    /// address`, `Invalid Service Meta: ...`, `Invalid Weights: ...`).
    pub fn validate(&self) -> Result<(), String> {
        if self.name.is_empty() {
            return Err("Missing service name".into());
        }
        validate_service_fields(&self.address, &self.meta, self.weights)
    }
}

/// Most metadata pairs on a node or a service.
pub const META_MAX_PAIRS: usize = 64;
/// Longest metadata key.
pub const META_KEY_MAX: usize = 128;
/// Longest metadata value.
pub const META_VALUE_MAX: usize = 512;

/// The address, meta and weights rules a service instance shares with a
/// catalog registration's `Service`.
pub fn validate_service_fields(
    address: &str,
    meta: &BTreeMap<String, String>,
    weights: Weights,
) -> Result<(), String> {
    if is_unspecified_addr(address) {
        return Err("Invalid service address".into());
    }
    validate_meta("Service", meta).map_err(|e| format!("Invalid Service Meta: {e}"))?;
    validate_weights(i64::from(weights.passing), i64::from(weights.warning))
        .map_err(|e| format!("Invalid Weights: {e}"))?;
    Ok(())
}

/// Any spelling of the unspecified address (`0.0.0.0`, `::`, `0:0::0`,
/// `[::]`): never a valid service address.
pub fn is_unspecified_addr(addr: &str) -> bool {
    let bare = addr
        .strip_prefix('[')
        .and_then(|a| a.strip_suffix(']'))
        .unwrap_or(addr);
    bare.parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_unspecified())
}

/// One metadata pair (Consul's `validateMetaPair`).
fn validate_meta_pair(key: &str, value: &str) -> Result<(), String> {
    if key.is_empty() {
        return Err("Key cannot be blank".into());
    }
    if !key
        .bytes()
        .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-')
    {
        return Err("Key contains invalid characters".into());
    }
    if key.len() > META_KEY_MAX {
        return Err(format!(
            "Key is too long (limit: {META_KEY_MAX} characters)"
        ));
    }
    if key.starts_with("consul-") {
        return Err("Key prefix 'consul-' is reserved for internal use".into());
    }
    if value.len() > META_VALUE_MAX {
        return Err(format!(
            "Value is too long (limit: {META_VALUE_MAX} characters)"
        ));
    }
    Ok(())
}

/// Node or service metadata (`what` = `Node` / `Service`), as Consul's
/// `ValidateMeta` checks it.
pub fn validate_meta(what: &str, meta: &BTreeMap<String, String>) -> Result<(), String> {
    if meta.len() > META_MAX_PAIRS {
        return Err(format!(
            "{what} metadata cannot contain more than {META_MAX_PAIRS} key/value pairs"
        ));
    }
    meta.iter().try_for_each(|(k, v)| validate_meta_pair(k, v))
}

/// Consul's `ValidateWeights`, on the raw numbers a body may carry.
pub fn validate_weights(passing: i64, warning: i64) -> Result<Weights, String> {
    if passing < 1 {
        return Err("Passing must be greater than 0".into());
    }
    if warning < 0 {
        return Err("Warning must be greater or equal than 0".into());
    }
    match (u32::try_from(passing), u32::try_from(warning)) {
        (Ok(p), Ok(w)) if p <= 65535 && w <= 65535 => Ok(Weights {
            passing: p,
            warning: w,
        }),
        _ => Err("Weight must be < 65536".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_rule_for_the_unspecified_address() {
        for a in ["0.0.0.0", "::", "[::]", "0:0::0", "::0"] {
            assert!(is_unspecified_addr(a), "{a}");
        }
        for a in ["", "10.0.0.1", "::1", "[::1]", "web.local"] {
            assert!(!is_unspecified_addr(a), "{a}");
        }
    }

    #[test]
    fn service_validation_messages_are_consuls() {
        let def = |f: &dyn Fn(&mut ServiceDefinition)| {
            let mut d = ServiceDefinition {
                name: "web".into(),
                ..ServiceDefinition::default()
            };
            f(&mut d);
            d.validate()
        };
        assert_eq!(def(&|_| {}), Ok(()));
        assert_eq!(def(&|d| d.name.clear()), Err("Missing service name".into()));
        assert_eq!(
            def(&|d| d.address = "[::]".into()),
            Err("Invalid service address".into())
        );
        assert_eq!(
            def(&|d| {
                d.meta.insert("consul-x".into(), String::new());
            }),
            Err("Invalid Service Meta: Key prefix 'consul-' is reserved for internal use".into())
        );
        assert_eq!(
            def(&|d| d.weights.passing = 0),
            Err("Invalid Weights: Passing must be greater than 0".into())
        );
        assert_eq!(
            def(&|d| d.weights.warning = 70_000),
            Err("Invalid Weights: Weight must be < 65536".into())
        );
    }

    #[test]
    fn meta_and_weights_limits() {
        let many: BTreeMap<String, String> =
            (0..65).map(|i| (format!("k{i}"), String::new())).collect();
        assert_eq!(
            validate_meta("Node", &many),
            Err("Node metadata cannot contain more than 64 key/value pairs".into())
        );
        let one = |k: &str, v: &str| BTreeMap::from([(k.to_string(), v.to_string())]);
        assert_eq!(
            validate_meta("Service", &one(&"k".repeat(129), "")),
            Err("Key is too long (limit: 128 characters)".into())
        );
        assert_eq!(
            validate_meta("Service", &one("k", &"v".repeat(513))),
            Err("Value is too long (limit: 512 characters)".into())
        );
        assert_eq!(
            validate_meta("Service", &one("Ok_key-1", &"v".repeat(512))),
            Ok(())
        );
        assert_eq!(
            validate_weights(1, -1),
            Err("Warning must be greater or equal than 0".into())
        );
        assert_eq!(
            validate_weights(65536, 1),
            Err("Weight must be < 65536".into())
        );
        assert_eq!(
            validate_weights(3, 0),
            Ok(Weights {
                passing: 3,
                warning: 0
            })
        );
        assert!(
            is_unspecified_addr("0.0.0.0")
                && is_unspecified_addr("::")
                && !is_unspecified_addr("10.0.0.1")
        );
    }
}

//! The `telemetry` block: `prometheus_retention_time` (turns on
//! `/v1/agent/metrics?format=prometheus`), `prefix_filter` (`+`/`-`
//! prefixes) and `disable_hostname` (muster never prefixes the host name,
//! so it is already in effect), `statsd_address` / `dogstatsd_addr` (UDP
//! push, flushed every second) with `dogstatsd_tags`. Other sinks
//! (Circonus, ...) are named in a warning, not an error, so a Consul
//! config still loads.

use serde_json::{Map, Value};

use muster_api::metrics::Telemetry;

/// Keys muster reads.
const KNOWN: &[&str] = &[
    "prometheus_retention_time",
    "prefix_filter",
    "disable_hostname",
    "filter_default",
    "disable_compat_1.9",
    "metrics_prefix",
];

/// The settings, and one warning per key that has no effect. A malformed
/// value is an error naming the key.
pub fn settings(block: &Map<String, Value>) -> Result<(Telemetry, Vec<String>), String> {
    let mut telemetry = Telemetry {
        push_interval: std::time::Duration::from_secs(1),
        ..Telemetry::default()
    };
    let mut warnings = Vec::new();
    for (key, v) in block {
        let at = format!("telemetry.{key}");
        match key.as_str() {
            "prometheus_retention_time" => {
                let d = match v {
                    Value::String(s) => muster_engine::duration::parse(s)
                        .map_err(|e| format!("{at}: {s:?} is not a duration: {e}"))?,
                    Value::Number(n) => std::time::Duration::from_nanos(n.as_u64().unwrap_or(0)),
                    _ => return Err(format!("{at}: must be a duration such as \"60s\"")),
                };
                telemetry.prometheus_retention = Some(d).filter(|d| !d.is_zero());
            }
            "prefix_filter" => {
                let list: Vec<String> = v
                    .as_array()
                    .ok_or_else(|| format!("{at}: must be a list of \"+prefix\" or \"-prefix\""))?
                    .iter()
                    .map(|e| e.as_str().map(str::to_string))
                    .collect::<Option<_>>()
                    .ok_or_else(|| format!("{at}: must be a list of strings"))?;
                telemetry.prefix_filter = Telemetry::prefix_rules(&list)?;
            }
            "statsd_address" | "dogstatsd_addr" => {
                let addr = v.as_str().filter(|a| !a.is_empty()).ok_or_else(|| {
                    format!("{at}: must be a host:port such as \"127.0.0.1:8125\"")
                })?;
                telemetry.push.push(addr.to_string());
            }
            "dogstatsd_tags" => {
                telemetry.push_tags = v
                    .as_array()
                    .and_then(|l| l.iter().map(|t| t.as_str().map(str::to_string)).collect())
                    .ok_or_else(|| format!("{at}: must be a list of \"key:value\" strings"))?;
            }
            k if KNOWN.contains(&k) => {}
            _ => warnings.push(format!(
                "{at} has no effect: muster serves metrics at /v1/agent/metrics (JSON, or \
                 Prometheus text with telemetry.prometheus_retention_time) and pushes to \
                 statsd_address or dogstatsd_addr; other sinks are not built"
            )),
        }
    }
    Ok((telemetry, warnings))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn telemetry_settings_parse_and_name_what_has_no_effect() -> Result<(), String> {
        let v = serde_json::json!({"prometheus_retention_time": "60s",
            "prefix_filter": ["-consul.http"], "disable_hostname": true,
            "statsd_address": "127.0.0.1:8125", "circonus_api_token": "x"});
        let (t, warnings) = settings(v.as_object().ok_or("object")?)?;
        assert_eq!(
            t.prometheus_retention,
            Some(std::time::Duration::from_secs(60))
        );
        assert_eq!(t.prefix_filter, vec![(false, "consul.http".to_string())]);
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].starts_with("telemetry.circonus_api_token has no effect"));
        assert_eq!(t.push, ["127.0.0.1:8125"]);
        let bad = serde_json::json!({"prefix_filter": ["consul"]});
        assert!(settings(bad.as_object().ok_or("object")?).is_err());
        Ok(())
    }
}

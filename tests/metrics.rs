//! Metrics (`/v1/agent/metrics`) against the binary: the Prometheus text
//! parses with a real parser (prometheus-parse), Consul's names are there
//! and move with traffic (50 KV puts move `consul_kvs_apply` by exactly
//! 50), the JSON has Consul's shape with the same figures,
//! `telemetry.prefix_filter` drops what it names, without
//! `prometheus_retention_time` the Prometheus format is a 415, and with
//! `statsd_address` statsd lines arrive at a UDP listener.

use std::time::Duration;

use hickory_proto::rr::RecordType;
use prometheus_parse::{Scrape, Value as Prom};
use serde_json::{json, Value};

use crate::dns::{dns_addr, udp};
use crate::harness::{wait_until, Agent};

fn scrape(a: &Agent) -> Scrape {
    let r = a.get("/v1/agent/metrics?format=prometheus");
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        r.header("Content-Type")
            .is_some_and(|t| t.starts_with("text/plain")),
        "{:?}",
        r.header("Content-Type")
    );
    Scrape::parse(r.text().lines().map(|l| Ok(l.to_string()))).expect("Prometheus text parses")
}

/// The value of `name` (with exactly `labels`), if present.
fn value(s: &Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    s.samples
        .iter()
        .filter(|x| x.metric == name)
        .find(|x| labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v)))
        .and_then(|x| match x.value {
            Prom::Counter(v) | Prom::Gauge(v) | Prom::Untyped(v) => Some(v),
            _ => None,
        })
}

fn count(s: &Scrape, name: &str) -> f64 {
    value(s, name, &[]).unwrap_or(0.0)
}

#[test]
fn metrics_move_with_traffic_in_consuls_names_and_shapes() {
    let config = json!({"telemetry": {"prometheus_retention_time": "60s",
        "prefix_filter": ["-consul.http.GET.v1.status"]}})
    .to_string();
    let a = Agent::start_with_config(&["-server", "-bootstrap", "-node", "m1"], true, &config);
    let before = scrape(&a);
    for i in 0..50 {
        assert!(a.kv_put(&format!("m/{i}"), b"v"));
    }
    let seed = format!("127.0.0.1:{}", a.flag("-serf-lan-port").expect("port"));
    let _client = Agent::start(&["-node", "m2", "-retry-join", &seed], true);
    let reg = json!({"Node": "ext", "Address": "127.0.0.90", "Service": {"Service": "web"}});
    assert_eq!(
        a.put("/v1/catalog/register", reg.to_string().as_bytes())
            .status,
        200
    );
    let txn = br#"[{"KV": {"Verb": "set", "Key": "m/txn", "Value": "eA=="}}]"#;
    assert_eq!(a.put("/v1/txn", txn).status, 200);
    assert_eq!(a.get("/v1/health/service/web").status, 200);
    for _ in 0..3 {
        assert_eq!(a.get("/v1/status/leader").status, 200);
    }
    let (_, m) = udp(dns_addr(&a), "web.service.consul", RecordType::A);
    assert!(!m.answers.is_empty());
    wait_until(
        "the client's join and autopilot's first judgement",
        Duration::from_secs(20),
        || {
            let s = scrape(&a);
            count(&s, "consul_serf_member_join") >= 1.0
                && value(&s, "consul_autopilot_healthy", &[]).is_some()
        },
    );

    let after = scrape(&a);
    let moved = |name: &str| count(&after, name) - count(&before, name);
    assert_eq!(moved("consul_kvs_apply_count"), 50.0);
    assert!(
        moved("consul_raft_apply") >= 52.0,
        "{}",
        moved("consul_raft_apply")
    );
    assert!(moved("consul_raft_commitTime_count") >= 52.0);
    assert!(moved("consul_http_PUT_v1_kv___count") >= 50.0);
    assert_eq!(moved("consul_catalog_register_count"), 1.0);
    assert_eq!(moved("consul_txn_apply_count"), 1.0);
    assert_eq!(moved("consul_dns_domain_query_count"), 1.0);
    assert_eq!(
        value(&after, "consul_health_service_query", &[("service", "web")]),
        Some(1.0)
    );
    assert_eq!(count(&after, "consul_raft_state_leader"), 1.0);
    assert_eq!(value(&after, "consul_autopilot_healthy", &[]), Some(1.0));
    assert!(moved("muster_log_fsync_count") >= 50.0);
    assert!(moved("muster_fsm_apply_count") >= 50.0);
    assert!(count(&after, "process_resident_memory_bytes") > 1e6);
    assert!(count(&after, "process_open_fds") > 3.0);
    assert!(value(&after, "consul_session_ttl_active", &[]).is_some());
    assert!(count(&after, "muster_fjall_journal_count") >= 1.0);
    assert!(count(&after, "muster_fjall_write_buffer_bytes") > 0.0);
    assert!(value(&after, "muster_fjall_compactions_completed", &[]).is_some());
    let filtered: Vec<&str> = after
        .samples
        .iter()
        .map(|s| s.metric.as_str())
        .filter(|m| m.starts_with("consul_http_GET_v1_status"))
        .collect();
    assert!(filtered.is_empty(), "prefix_filter kept {filtered:?}");

    // The same figures in Consul's JSON.
    let j = a.get("/v1/agent/metrics").json();
    assert!(
        j["Timestamp"]
            .as_str()
            .is_some_and(|t| t.ends_with(" +0000 UTC")),
        "{}",
        j["Timestamp"]
    );
    assert_eq!(j["Points"], json!([]));
    let find = |list: &str, name: &str| -> Value {
        j[list]
            .as_array()
            .and_then(|l| l.iter().find(|e| e["Name"] == name).cloned())
            .unwrap_or(Value::Null)
    };
    let kvs = find("Samples", "consul.kvs.apply");
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let expected = count(&after, "consul_kvs_apply_count") as u64;
    assert_eq!(kvs["Count"], json!(expected), "{kvs}");
    for field in ["Rate", "Sum", "Min", "Max", "Mean", "Stddev", "Labels"] {
        assert!(kvs.get(field).is_some(), "{field} missing: {kvs}");
    }
    assert!(kvs["Max"].as_f64() >= kvs["Min"].as_f64());
    assert!(find("Counters", "consul.raft.apply")["Count"].as_u64() >= Some(52));
    assert!(find("Gauges", "process.resident_memory_bytes")["Value"].as_f64() > Some(1e6));
}

#[test]
fn prometheus_text_needs_a_retention_time() {
    let a = Agent::dev();
    let r = a.get("/v1/agent/metrics?format=prometheus");
    assert_eq!(r.status, 415, "{}", r.text());
    assert!(
        r.text().contains("prometheus_retention_time"),
        "{}",
        r.text()
    );
    let j = a.get("/v1/agent/metrics").json();
    for key in ["Timestamp", "Gauges", "Points", "Counters", "Samples"] {
        assert!(j.get(key).is_some(), "{key} missing: {j}");
    }
}

/// `telemetry.statsd_address`: metrics arrive as statsd lines at a UDP
/// listener (flushed every second), tags from `dogstatsd_tags`.
#[test]
fn statsd_lines_arrive_at_a_udp_listener() {
    let listener = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    listener
        .set_read_timeout(Some(Duration::from_millis(500)))
        .expect("timeout");
    let config = json!({"telemetry": {
        "statsd_address": listener.local_addr().expect("addr").to_string(),
        "dogstatsd_tags": ["env:test"]}})
    .to_string();
    let a = Agent::start_with_config(&["-dev"], false, &config);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut seen = String::new();
    let mut buf = vec![0u8; 65_536];
    while std::time::Instant::now() < deadline {
        assert!(a.kv_put("statsd/key", b"v"));
        if let Ok(n) = listener.recv(&mut buf) {
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
            seen.push('\n');
        }
        if seen.lines().any(|l| l.starts_with("consul.kvs.apply:")) {
            break;
        }
    }
    let line = seen
        .lines()
        .find(|l| l.starts_with("consul.kvs.apply:"))
        .unwrap_or_else(|| panic!("no consul.kvs.apply line in:\n{seen}"));
    assert!(line.contains('|'), "{line}");
    assert!(line.contains("env:test"), "{line}");
}

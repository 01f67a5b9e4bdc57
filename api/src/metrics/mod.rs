//! Metrics (`telemetry`): the agent's one recorder behind the `metrics`
//! facade every crate reports to, and `/v1/agent/metrics`, which shows it
//! in Consul's JSON (`Timestamp`, `Gauges`, `Points`, `Counters`,
//! `Samples`; figures since the agent started) or, with
//! `?format=prometheus` and `telemetry.prometheus_retention_time` set, in
//! the Prometheus text format rendered by metrics-exporter-prometheus.
//! `telemetry.prefix_filter` (`+name`/`-name` prefixes, the longest
//! winning) drops metrics when they are registered, so a filtered metric
//! costs nothing. Process figures (RSS, open files, CPU seconds) are read
//! from `/proc` when the endpoint is asked.

mod summary;

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use hyper::{Response, StatusCode};
use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use metrics_util::layers::FanoutBuilder;
use metrics_util::registry::Registry;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::response::{self, Body};
use crate::router::Ctx;
use crate::routes::{exact, on_agent, Route, GET};
use summary::{SummaryRecorder, SummaryStorage};

/// The `telemetry` settings the recorder needs.
#[derive(Debug, Clone, Default)]
pub struct Telemetry {
    /// `prometheus_retention_time`: `Some` (positive) turns on
    /// `?format=prometheus`.
    pub prometheus_retention: Option<Duration>,
    /// `prefix_filter`: `(allow, prefix)` rules.
    pub prefix_filter: Vec<(bool, String)>,
    /// `statsd_address` / `dogstatsd_addr`: where to push (`host:port`,
    /// UDP), each flush.
    pub push: Vec<String>,
    /// `dogstatsd_tags`: `key:value` tags on every pushed metric.
    pub push_tags: Vec<String>,
    /// How often pushed metrics are flushed.
    pub push_interval: Duration,
}

impl Telemetry {
    /// Parse `prefix_filter` entries (`+consul.raft`, `-consul.http`).
    pub fn prefix_rules(entries: &[String]) -> std::result::Result<Vec<(bool, String)>, String> {
        entries
            .iter()
            .map(|e| match e.split_at_checked(1) {
                Some(("+", p)) => Ok((true, p.to_string())),
                Some(("-", p)) => Ok((false, p.to_string())),
                _ => Err(format!(
                    "telemetry.prefix_filter: {e:?} must start with + (keep) or - (drop)"
                )),
            })
            .collect()
    }

    fn allows(&self, name: &str) -> bool {
        self.prefix_filter
            .iter()
            .filter(|(_, p)| name.starts_with(p.as_str()))
            .max_by_key(|(_, p)| p.len())
            .is_none_or(|(allow, _)| *allow)
    }
}

/// The installed recorder's outputs.
pub struct Metrics {
    started: Instant,
    summaries: Arc<Registry<Key, SummaryStorage>>,
    prometheus: Option<PrometheusHandle>,
}

static INSTALLED: OnceLock<Arc<Metrics>> = OnceLock::new();

/// The process's recorder, if one was installed.
pub fn installed() -> Option<&'static Arc<Metrics>> {
    INSTALLED.get()
}

/// Install the process-wide recorder (once; later calls return the first
/// one). With Prometheus on, a task started here keeps its summaries
/// trimmed; call from within a Tokio runtime.
pub fn install(telemetry: Telemetry) -> Arc<Metrics> {
    INSTALLED
        .get_or_init(|| {
            let summaries = Arc::new(Registry::new(SummaryStorage));
            let mut fanout = FanoutBuilder::default().add_recorder(SummaryRecorder {
                registry: summaries.clone(),
            });
            let prometheus = telemetry.prometheus_retention.map(|window| {
                let recorder = PrometheusBuilder::new()
                    .set_bucket_duration((window / 3).max(Duration::from_secs(1)))
                    .map(|b| b.build_recorder())
                    .unwrap_or_else(|_| PrometheusBuilder::new().build_recorder());
                let handle = recorder.handle();
                fanout = std::mem::take(&mut fanout).add_recorder(recorder);
                let upkeep = handle.clone();
                if let Ok(rt) = tokio::runtime::Handle::try_current() {
                    rt.spawn(async move {
                        loop {
                            tokio::time::sleep(Duration::from_secs(5)).await;
                            upkeep.run_upkeep();
                        }
                    });
                }
                handle
            });
            for addr in &telemetry.push {
                match push_recorder(addr, &telemetry) {
                    Ok(r) => fanout = std::mem::take(&mut fanout).add_recorder(r),
                    Err(e) => tracing::warn!(addr, error = %e, "telemetry: cannot push metrics"),
                }
            }
            let recorder = Filtered {
                inner: fanout.build(),
                telemetry,
            };
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("a metrics recorder was already installed; metrics are not kept");
            }
            muster_metrics::recorder_installed();
            Arc::new(Metrics {
                started: Instant::now(),
                summaries,
                prometheus,
            })
        })
        .clone()
}

/// A (Dog)StatsD pusher to `addr` over UDP, flushing every
/// `push_interval` (plain statsd servers read the same lines; labels go
/// as DogStatsD tags).
fn push_recorder(
    addr: &str,
    t: &Telemetry,
) -> std::result::Result<metrics_exporter_dogstatsd::DogStatsDRecorder, String> {
    let tags = t
        .push_tags
        .iter()
        .map(|tag| match tag.split_once(':') {
            Some((k, v)) => metrics::Label::new(k.to_string(), v.to_string()),
            None => metrics::Label::new(tag.clone(), String::new()),
        })
        .collect();
    metrics_exporter_dogstatsd::DogStatsDBuilder::default()
        .with_remote_address(addr)
        .map_err(|e| e.to_string())?
        .with_flush_interval(t.push_interval.max(Duration::from_millis(100)))
        .with_telemetry(false)
        .with_global_labels(tags)
        .build()
        .map_err(|e| e.to_string())
}

/// The recorder with `prefix_filter` applied at registration.
struct Filtered<R> {
    inner: R,
    telemetry: Telemetry,
}

impl<R: Recorder> Recorder for Filtered<R> {
    fn describe_counter(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.inner.describe_counter(key, unit, description);
    }
    fn describe_gauge(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.inner.describe_gauge(key, unit, description);
    }
    fn describe_histogram(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.inner.describe_histogram(key, unit, description);
    }
    fn register_counter(&self, key: &Key, metadata: &Metadata<'_>) -> Counter {
        if self.telemetry.allows(key.name()) {
            self.inner.register_counter(key, metadata)
        } else {
            Counter::noop()
        }
    }
    fn register_gauge(&self, key: &Key, metadata: &Metadata<'_>) -> Gauge {
        if self.telemetry.allows(key.name()) {
            self.inner.register_gauge(key, metadata)
        } else {
            Gauge::noop()
        }
    }
    fn register_histogram(&self, key: &Key, metadata: &Metadata<'_>) -> Histogram {
        if self.telemetry.allows(key.name()) {
            self.inner.register_histogram(key, metadata)
        } else {
            Histogram::noop()
        }
    }
}

type HttpHandles = (u64, std::collections::HashMap<(u8, usize), Histogram>);

std::thread_local! {
    /// This thread's handles of `consul.http.*` timings, per method and
    /// route, for the recorder generation they were registered with.
    static HTTP: std::cell::RefCell<HttpHandles> =
        std::cell::RefCell::new((u64::MAX, std::collections::HashMap::new()));
}

/// Record one request's time (ms) as `consul.http.<METHOD>.<path>`, with a
/// handle cached per thread (no registry lookup per request).
pub(crate) fn record_http(method: &hyper::Method, route: &'static Route, ms: f64) {
    use hyper::Method as M;
    let m = match *method {
        M::GET => 0,
        M::PUT => 1,
        M::POST => 2,
        M::DELETE => 3,
        M::HEAD => 4,
        M::OPTIONS => 5,
        _ => 6,
    };
    HTTP.with(|cache| {
        let generation = muster_metrics::generation();
        let mut cache = cache.borrow_mut();
        if cache.0 != generation {
            *cache = (generation, std::collections::HashMap::new());
        }
        cache
            .1
            .entry((m, std::ptr::from_ref(route) as usize))
            .or_insert_with(|| {
                metrics::histogram!(http_name(method.as_str(), route.pattern, route.prefix))
            })
            .record(ms);
    });
}

/// `consul.http.<METHOD>.<path>`: the route's pattern with `/` as `.` and
/// a prefix route's variable rest as `_` (`GET /v1/kv/<key>` →
/// `consul.http.GET.v1.kv._`).
pub(crate) fn http_name(method: &str, pattern: &str, prefix: bool) -> String {
    let mut name = format!("consul.http.{method}");
    for seg in pattern.split('/').filter(|s| !s.is_empty()) {
        name.push('.');
        name.push_str(seg);
    }
    if prefix {
        name.push_str("._");
    }
    name
}

/// One `Gauges` entry.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct GaugeJson {
    name: String,
    value: f64,
    labels: BTreeMap<String, String>,
}

/// One `Counters` or `Samples` entry.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct SampledJson {
    name: String,
    count: u64,
    rate: f64,
    sum: f64,
    min: f64,
    max: f64,
    mean: f64,
    stddev: f64,
    labels: BTreeMap<String, String>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct MetricsJson {
    timestamp: String,
    gauges: Vec<GaugeJson>,
    points: Vec<()>,
    counters: Vec<SampledJson>,
    samples: Vec<SampledJson>,
}

fn labels(key: &Key) -> BTreeMap<String, String> {
    key.labels()
        .map(|l| (l.key().to_string(), l.value().to_string()))
        .collect()
}

impl Metrics {
    fn json(&self) -> MetricsJson {
        let uptime = self.started.elapsed().as_secs_f64().max(1e-3);
        let sampled = |key: &Key, s: &summary::Summary| {
            let st = s.stats();
            SampledJson {
                name: key.name().to_string(),
                count: st.count,
                rate: st.sum / uptime,
                sum: st.sum,
                min: st.min,
                max: st.max,
                mean: st.mean,
                stddev: st.stddev,
                labels: labels(key),
            }
        };
        let mut out = MetricsJson {
            timestamp: consul_time(std::time::SystemTime::now()),
            gauges: Vec::new(),
            points: Vec::new(),
            counters: Vec::new(),
            samples: Vec::new(),
        };
        self.summaries.visit_gauges(|key, g| {
            out.gauges.push(GaugeJson {
                name: key.name().to_string(),
                value: g.get(),
                labels: labels(key),
            });
        });
        self.summaries
            .visit_counters(|key, c| out.counters.push(sampled(key, c)));
        self.summaries
            .visit_histograms(|key, h| out.samples.push(sampled(key, h)));
        out.gauges.sort_by(|a, b| a.name.cmp(&b.name));
        out.counters.sort_by(|a, b| a.name.cmp(&b.name));
        out.samples.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }
}

/// Go's `time.Time.String()` in UTC, as Consul's `Timestamp`.
fn consul_time(t: std::time::SystemTime) -> String {
    let iso = crate::autopilot::health::rfc3339(t);
    let iso = iso.split('.').next().unwrap_or(&iso).trim_end_matches('Z');
    format!("{} +0000 UTC", iso.replace('T', " "))
}

/// This process's figures from `/proc/self`, as gauges.
fn record_process() {
    let Ok(me) = procfs::process::Process::myself() else {
        return;
    };
    if let Ok(stat) = me.stat() {
        let page = procfs::page_size();
        let ticks = procfs::ticks_per_second();
        #[allow(clippy::cast_precision_loss)] // figures far below 2^52
        {
            metrics::gauge!("process.resident_memory_bytes").set((stat.rss * page) as f64);
            metrics::gauge!("process.cpu_seconds_total")
                .set((stat.utime + stat.stime) as f64 / ticks as f64);
        }
    }
    if let Ok(n) = me.fd_count() {
        #[allow(clippy::cast_precision_loss)]
        metrics::gauge!("process.open_fds").set(n as f64);
    }
}

/// A server's state as gauges: sessions with a TTL
/// (`consul.session_ttl.active`), whether it leads, and the view store's
/// compactions, flushes, write buffer and journals (`muster.fjall.*`).
fn record_server(engine: &muster_engine::Engine) {
    if let Ok(sessions) = engine.session_list(&mut muster_engine::WatchSet::new()) {
        let ttl = sessions.value.iter().filter(|s| !s.ttl.is_empty()).count();
        #[allow(clippy::cast_precision_loss)]
        metrics::gauge!("consul.session_ttl.active").set(ttl as f64);
    }
    let leader = if engine.status().is_leader { 1.0 } else { 0.0 };
    metrics::gauge!("consul.server.isLeader").set(leader);
    let st = engine.storage_stats();
    #[allow(clippy::cast_precision_loss)] // counts and sizes far below 2^52
    {
        metrics::gauge!("muster.fjall.active_compactions").set(st.active_compactions as f64);
        metrics::gauge!("muster.fjall.compactions_completed").set(st.compactions_completed as f64);
        metrics::gauge!("muster.fjall.outstanding_flushes").set(st.outstanding_flushes as f64);
        metrics::gauge!("muster.fjall.write_buffer_bytes").set(st.write_buffer_bytes as f64);
        metrics::gauge!("muster.fjall.journal_count").set(st.journal_count as f64);
        metrics::gauge!("muster.fjall.journal_bytes").set(st.journal_bytes as f64);
    }
}

/// `GET /v1/agent/metrics[?format=prometheus]`.
async fn agent_metrics(ctx: &Ctx<'_>) -> Result<Response<Body>> {
    record_process();
    if let crate::router::Serving::Server(engine) = &ctx.st.serving {
        record_server(engine);
    }
    let Some(m) = installed() else {
        return ctx.json(
            &Metrics {
                started: Instant::now(),
                summaries: Arc::new(Registry::new(SummaryStorage)),
                prometheus: None,
            }
            .json(),
        );
    };
    if ctx.query.get("format") == Some("prometheus") {
        let Some(handle) = &m.prometheus else {
            return Err(Error::UnsupportedMediaType(
                "Prometheus is not enabled since its retention time is not positive \
                 (set telemetry.prometheus_retention_time)"
                    .into(),
            ));
        };
        let mut resp = response::text(StatusCode::OK, handle.render());
        resp.headers_mut().insert(
            hyper::header::CONTENT_TYPE,
            hyper::header::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        );
        return Ok(resp);
    }
    ctx.json(&m.json())
}

/// `/v1/agent/metrics`.
pub(crate) const ROUTES: &[Route] = &[exact(
    "/v1/agent/metrics",
    GET,
    on_agent!(|ctx, _| agent_metrics(ctx).await),
)];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_names_and_prefix_rules_are_consuls() {
        assert_eq!(http_name("GET", "/v1/kv/", true), "consul.http.GET.v1.kv._");
        assert_eq!(
            http_name("PUT", "/v1/status/leader", false),
            "consul.http.PUT.v1.status.leader"
        );
        let t = Telemetry {
            prefix_filter: Telemetry::prefix_rules(&[
                "-consul.http".into(),
                "+consul.http.GET".into(),
            ])
            .expect("rules"),
            ..Telemetry::default()
        };
        assert!(t.allows("consul.raft.apply"));
        assert!(!t.allows("consul.http.PUT.v1.kv._"));
        assert!(t.allows("consul.http.GET.v1.kv._"));
        assert!(Telemetry::prefix_rules(&["consul".into()]).is_err());
        assert_eq!(
            consul_time(std::time::UNIX_EPOCH + Duration::from_secs(86_400)),
            "1970-01-02 00:00:00 +0000 UTC"
        );
    }
}

//! Check runners: one probe per interval kind (script, HTTP, TCP, UDP, gRPC,
//! Docker), the thresholds that decide which status is published, the
//! output caps, and the scheduler that runs one interval check with jitter
//! (consul-compat.md §6.2).
//!
//! This module owns *running* checks and turning a run into a
//! [`CheckResult`]. It must not touch agent state or the catalog: results
//! leave only through the channel given to [`spawn_interval`]. TTL and alias
//! checks are driven by the agent, not here. The 1 s interval floor of §6.2
//! is applied by the agent when it builds the definition; the scheduler
//! honours the interval it is given (so tests can use 100 ms), except that a
//! zero interval is treated as [`ZERO_INTERVAL_FALLBACK`].
//!
//! Every probe bounds its own run by the check's timeout, and [`probe`] adds
//! a safety net of [`TIMEOUT_GRACE`] on top; nothing here panics on any
//! input.

mod docker;
mod grpc;
mod http;
mod resource;
mod script;
mod tcp;
mod tls;
pub use tls::{system_roots, AnyCert};
mod udp;

pub(crate) use muster_engine::AbortOnDrop;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc::UnboundedSender;
use tokio::task::JoinHandle;

use crate::definition::{CheckDefinition, CheckKind, DEFAULT_OUTPUT_MAX_SIZE};
use muster_engine::Status;

/// The Docker endpoint used when `$DOCKER_HOST` is unset.
pub const DEFAULT_DOCKER_HOST: &str = "unix:///var/run/docker.sock";

/// The interval used when a definition reaches the scheduler with a zero
/// interval (validation should have refused it; this avoids a hot loop).
pub const ZERO_INTERVAL_FALLBACK: Duration = Duration::from_secs(1);

/// Extra time [`probe`] allows past the check's timeout before it gives up
/// on a probe that failed to enforce its own timeout.
pub const TIMEOUT_GRACE: Duration = Duration::from_secs(1);

/// The outcome of one run of a check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckResult {
    /// The status this run observed (or, from [`spawn_interval`], the status
    /// to publish after thresholds).
    pub status: Status,
    /// The check output, already truncated.
    pub output: String,
}

impl CheckResult {
    /// A passing result.
    pub(crate) fn passing(output: impl Into<String>) -> Self {
        CheckResult {
            status: Status::Passing,
            output: output.into(),
        }
    }

    /// A critical result.
    pub(crate) fn critical(output: impl Into<String>) -> Self {
        CheckResult {
            status: Status::Critical,
            output: output.into(),
        }
    }

    /// Script-style exit code mapping: 0 passing, 1 warning, anything else
    /// (including death by signal, `None`) critical.
    pub(crate) fn from_exit_code(code: Option<i64>, output: String) -> Self {
        let status = match code {
            Some(0) => Status::Passing,
            Some(1) => Status::Warning,
            _ => Status::Critical,
        };
        CheckResult { status, output }
    }
}

/// What the runners need from the agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunnerContext {
    /// Docker Engine endpoint: `unix:///path` or `tcp://host:port`
    /// (`None` = [`DEFAULT_DOCKER_HOST`]).
    pub docker_host: Option<String>,
    /// The agent's `check_output_max_size`; a check's own `output_max_size`
    /// can only lower it (0 = [`DEFAULT_OUTPUT_MAX_SIZE`]).
    pub output_max_size_cap: usize,
}

impl Default for RunnerContext {
    fn default() -> Self {
        RunnerContext {
            docker_host: None,
            output_max_size_cap: DEFAULT_OUTPUT_MAX_SIZE,
        }
    }
}

impl RunnerContext {
    /// A context with `docker_host` from `$DOCKER_HOST` (if set and not
    /// empty) and the given output cap.
    pub fn from_env(output_max_size_cap: usize) -> Self {
        RunnerContext {
            docker_host: std::env::var("DOCKER_HOST").ok().filter(|h| !h.is_empty()),
            output_max_size_cap,
        }
    }

    /// The Docker endpoint in force.
    pub fn docker_host(&self) -> &str {
        self.docker_host.as_deref().unwrap_or(DEFAULT_DOCKER_HOST)
    }

    fn cap(&self) -> usize {
        if self.output_max_size_cap == 0 {
            DEFAULT_OUTPUT_MAX_SIZE
        } else {
            self.output_max_size_cap
        }
    }
}

/// The output cap of one check: the agent's cap, lowered by the check's own
/// `output_max_size` when that is set and smaller (as Consul does).
pub fn output_max_size(def: &CheckDefinition, ctx: &RunnerContext) -> usize {
    let cap = ctx.cap();
    if def.output_max_size > 0 {
        cap.min(def.output_max_size)
    } else {
        cap
    }
}

/// One run of an interval kind, bounded by `timeout`, with output capped at
/// the context's cap. TTL, alias and unset kinds give a critical
/// `not an interval check`.
pub async fn probe(kind: &CheckKind, timeout: Duration, ctx: &RunnerContext) -> CheckResult {
    probe_capped(kind, timeout, ctx, ctx.cap()).await
}

/// [`probe`] with an explicit output cap (what the scheduler uses).
pub async fn probe_capped(
    kind: &CheckKind,
    timeout: Duration,
    ctx: &RunnerContext,
    max: usize,
) -> CheckResult {
    let run = async {
        match kind {
            CheckKind::Script { args } => script::run(args, timeout, max).await,
            CheckKind::Http {
                url,
                method,
                header,
                body,
                tls_server_name,
                tls_skip_verify,
                disable_redirects,
            } => {
                let req = http::HttpRequest {
                    url,
                    method,
                    header,
                    body,
                    disable_redirects: *disable_redirects,
                    tls_server_name,
                    tls_skip_verify: *tls_skip_verify,
                };
                http::run(&req, timeout, max).await
            }
            CheckKind::Tcp { addr } => tcp::run(addr, timeout).await,
            CheckKind::Udp { addr } => udp::run(addr, timeout).await,
            CheckKind::Grpc { target, use_tls } => grpc::run(target, *use_tls, timeout).await,
            CheckKind::Docker {
                container_id,
                shell,
                args,
            } => docker::run(ctx.docker_host(), container_id, shell, args, timeout, max).await,
            CheckKind::Resource(r) => resource::run(r, timeout).await,
            CheckKind::Ttl { .. } | CheckKind::Alias { .. } | CheckKind::Unset => {
                CheckResult::critical("not an interval check")
            }
        }
    };
    let mut result = match tokio::time::timeout(timeout.saturating_add(TIMEOUT_GRACE), run).await {
        Ok(r) => r,
        Err(_) => CheckResult::critical(timed_out(timeout)),
    };
    // Script, HTTP and Docker cap their output while streaming it (they
    // keep the tail and know the total); the rest are cut here.
    if matches!(
        kind,
        CheckKind::Tcp { .. } | CheckKind::Udp { .. } | CheckKind::Grpc { .. }
    ) {
        result.output = truncate_output(kind, &result.output, max);
    }
    result
}

/// Consul's timeout message, `Timed out (30s) running check`.
pub(crate) fn timed_out(timeout: Duration) -> String {
    format!(
        "Timed out ({}) running check",
        muster_engine::duration::format(timeout)
    )
}

/// Cut `output` to `max` bytes the way §6.2/§5 say for `kind`:
/// scripts and Docker keep the tail behind `Captured N of M bytes\n...\n`;
/// HTTP keeps the tail of the body (what follows ` Output: `); the others
/// (TTL, TCP, UDP, gRPC, alias) keep the head followed by
/// ` ... (captured N of M bytes)`. Output within `max` is unchanged. Cuts
/// fall on UTF-8 boundaries, so N may be a little under `max`.
pub fn truncate_output(kind: &CheckKind, output: &str, max: usize) -> String {
    if output.len() <= max {
        return output.to_string();
    }
    match kind {
        CheckKind::Script { .. } | CheckKind::Docker { .. } => {
            let tail = str_tail(output, max);
            format!(
                "Captured {} of {} bytes\n...\n{}",
                tail.len(),
                output.len(),
                tail
            )
        }
        CheckKind::Http { .. } => match output.split_once(" Output: ") {
            Some((head, body)) if body.len() > max => {
                format!("{head} Output: {}", str_tail(body, max))
            }
            Some(_) => output.to_string(),
            None => str_tail(output, max).to_string(),
        },
        _ => {
            let head = str_head(output, max);
            format!(
                "{} ... (captured {} of {} bytes)",
                head,
                head.len(),
                output.len()
            )
        }
    }
}

/// The longest prefix of `s` of at most `max` bytes ending on a char
/// boundary.
fn str_head(s: &str, max: usize) -> &str {
    let mut end = max.min(s.len());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or_default()
}

/// The longest suffix of `s` of at most `max` bytes starting on a char
/// boundary.
fn str_tail(s: &str, max: usize) -> &str {
    let mut start = s.len().saturating_sub(max);
    while !s.is_char_boundary(start) {
        start += 1;
    }
    s.get(start..).unwrap_or_default()
}

/// Keeps the last `max` bytes written to it and counts them all, like
/// Consul's circular buffer. Memory stays under about `2 * max` plus one
/// chunk, whatever a check prints.
#[derive(Debug)]
pub(crate) struct TailBuf {
    /// Recent bytes; only the last `max` are reported.
    buf: Vec<u8>,
    /// Cap.
    max: usize,
    /// Bytes written in total.
    total: u64,
}

impl TailBuf {
    pub(crate) fn new(max: usize) -> Self {
        TailBuf {
            buf: Vec::new(),
            max,
            total: 0,
        }
    }

    pub(crate) fn push(&mut self, data: &[u8]) {
        self.total = self
            .total
            .saturating_add(u64::try_from(data.len()).unwrap_or(u64::MAX));
        if self.max == 0 {
            return;
        }
        self.buf.extend_from_slice(data);
        if self.buf.len() > self.max.saturating_mul(2).max(8192) {
            let cut = self.buf.len() - self.max;
            self.buf.drain(..cut);
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.total == 0
    }

    fn tail(&self) -> &[u8] {
        let start = self.buf.len().saturating_sub(self.max);
        self.buf.get(start..).unwrap_or_default()
    }

    /// The kept tail, lossily decoded.
    pub(crate) fn tail_string(&self) -> String {
        String::from_utf8_lossy(self.tail()).into_owned()
    }

    /// The tail behind `Captured N of M bytes\n...\n` when bytes were
    /// dropped (script and Docker output).
    pub(crate) fn captured(&self) -> String {
        let tail = self.tail();
        let kept = u64::try_from(tail.len()).unwrap_or(u64::MAX);
        if self.total > kept {
            format!(
                "Captured {} of {} bytes\n...\n{}",
                tail.len(),
                self.total,
                String::from_utf8_lossy(tail)
            )
        } else {
            String::from_utf8_lossy(tail).into_owned()
        }
    }
}

/// §6.2 thresholds: which observed statuses get published.
///
/// Invariant: the counters start saturated, so the first result applies at
/// once. Passing or warning results bump `successes` and zero `failures`;
/// critical ones do the opposite.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Thresholds {
    /// `success_before_passing`.
    success_before_passing: u32,
    /// `failures_before_warning` (0 in the definition = before critical).
    failures_before_warning: u32,
    /// `failures_before_critical`.
    failures_before_critical: u32,
    /// Consecutive passing/warning results.
    successes: u32,
    /// Consecutive critical results.
    failures: u32,
}

impl Thresholds {
    /// Thresholds of a definition, counters saturated.
    pub fn new(def: &CheckDefinition) -> Self {
        let failures_before_warning = if def.failures_before_warning == 0 {
            def.failures_before_critical
        } else {
            def.failures_before_warning
        };
        Thresholds {
            success_before_passing: def.success_before_passing,
            failures_before_warning,
            failures_before_critical: def.failures_before_critical,
            successes: def.success_before_passing,
            failures: def.failures_before_critical,
        }
    }

    /// Feed one observed status; returns the status to publish, or `None`
    /// to keep the one already published (output included).
    pub fn observe(&mut self, status: Status) -> Option<Status> {
        match status {
            Status::Passing | Status::Warning => {
                self.successes = self.successes.saturating_add(1);
                self.failures = 0;
                (self.successes >= self.success_before_passing).then_some(status)
            }
            Status::Critical => {
                self.failures = self.failures.saturating_add(1);
                self.successes = 0;
                if self.failures >= self.failures_before_critical {
                    Some(Status::Critical)
                } else if self.failures >= self.failures_before_warning {
                    Some(Status::Warning)
                } else {
                    None
                }
            }
        }
    }
}

/// A running interval check; dropping it stops the check (the task is
/// aborted, which also drops its sender).
#[derive(Debug)]
pub struct RunnerHandle {
    /// The check's task.
    task: JoinHandle<()>,
}

impl RunnerHandle {
    /// Stop the check now.
    pub fn abort(&self) {
        self.task.abort();
    }

    /// True once the task ended (aborted, receiver gone, or not an interval
    /// kind).
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }
}

impl Drop for RunnerHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Run an interval check until the handle is dropped or `tx` is closed.
///
/// The first run starts after a random delay in `[0, interval)`, then each
/// next run starts `interval` after the previous one finished (as Consul
/// does), so runs never overlap. Each run is bounded by the check's
/// effective timeout and its output is capped ([`output_max_size`]). After
/// each run the thresholds decide; whenever they publish, `(check_id,
/// result)` is sent with the published status (the agent drops repeats).
/// Runs held back by a threshold send nothing: the old status and output
/// stay. Non-interval kinds (TTL, alias, unset) return a finished handle.
///
/// The interval is used as given: the agent raises it to Consul's 1 s
/// minimum before calling this.
pub fn spawn_interval(
    def: CheckDefinition,
    ctx: Arc<RunnerContext>,
    tx: UnboundedSender<(String, CheckResult)>,
) -> RunnerHandle {
    RunnerHandle {
        task: tokio::spawn(run_interval(def, ctx, tx)),
    }
}

async fn run_interval(
    def: CheckDefinition,
    ctx: Arc<RunnerContext>,
    tx: UnboundedSender<(String, CheckResult)>,
) {
    if !def.is_interval_kind() {
        return;
    }
    let interval = if def.interval.is_zero() {
        ZERO_INTERVAL_FALLBACK
    } else {
        def.interval
    };
    let timeout = def.effective_timeout();
    let max = output_max_size(&def, &ctx);
    let mut thresholds = Thresholds::new(&def);
    tokio::time::sleep(jitter(interval)).await;
    loop {
        let result = probe_capped(&def.kind, timeout, &ctx, max).await;
        if let Some(status) = thresholds.observe(result.status) {
            let published = CheckResult {
                status,
                output: result.output,
            };
            if tx.send((def.id.clone(), published)).is_err() {
                return;
            }
        } else if tx.is_closed() {
            return;
        }
        tokio::time::sleep(interval).await;
    }
}

/// A uniformly random delay in `[0, interval)`.
fn jitter(interval: Duration) -> Duration {
    let nanos = u64::try_from(interval.as_nanos()).unwrap_or(u64::MAX);
    if nanos == 0 {
        return Duration::ZERO;
    }
    Duration::from_nanos(rand::random_range(0..nanos))
}

#[cfg(test)]
mod tests;

//! Log streaming (`GET /v1/agent/monitor?loglevel=&logjson`, `muster
//! monitor`): the agent's log lines as it writes them, at the level each
//! watcher asks for (more verbose than the agent's own `-log-level` too),
//! as text or JSON. The binary's log subscriber formats a line for the
//! monitors only while one wants that level and format ([`LogStream::
//! wants`]) and hands it to [`LogStream::publish`]; each request gets the
//! lines of its level until it disconnects. A watcher that reads slower
//! than the agent logs is told how many lines it missed.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use bytes::Bytes;
use hyper::header::{self, HeaderValue};
use hyper::Response;
use tokio::sync::{broadcast, mpsc};
use tracing::Level;

use crate::error::{Error, Result};
use crate::response::Body;
use crate::router::Ctx;
use crate::routes::{exact, on_agent, Route, GET};

/// Lines buffered per watcher before it counts as lagging.
const BACKLOG: usize = 4096;

/// One formatted line.
#[derive(Debug)]
pub struct LogLine {
    /// Its level.
    pub level: Level,
    /// Formatted as JSON (else text).
    pub json: bool,
    /// The line, with its newline.
    pub line: Bytes,
}

/// Levels as numbers, most severe first (0: nobody listens).
fn rank(level: Level) -> u8 {
    match level {
        Level::ERROR => 1,
        Level::WARN => 2,
        Level::INFO => 3,
        Level::DEBUG => 4,
        Level::TRACE => 5,
    }
}

/// The agent's log lines for its monitors.
pub struct LogStream {
    tx: broadcast::Sender<Arc<LogLine>>,
    /// Watchers per format (text, JSON) and level rank.
    watchers: Mutex<[[usize; 6]; 2]>,
    /// The most verbose rank a watcher wants, per format (0: none).
    wanted: [AtomicU8; 2],
}

/// The process's log stream.
pub fn logs() -> &'static LogStream {
    static LOGS: OnceLock<LogStream> = OnceLock::new();
    LOGS.get_or_init(|| LogStream {
        tx: broadcast::channel(BACKLOG).0,
        watchers: Mutex::new([[0; 6]; 2]),
        wanted: [AtomicU8::new(0), AtomicU8::new(0)],
    })
}

impl LogStream {
    /// Does a watcher want lines of `level` in this format? (Two atomic
    /// loads: the logger asks before formatting anything.)
    pub fn wants(&self, level: Level, json: bool) -> bool {
        self.wanted[usize::from(json)].load(Ordering::Relaxed) >= rank(level)
    }

    /// Hand a formatted line to the watchers.
    pub fn publish(&self, level: Level, json: bool, line: Bytes) {
        let _ = self.tx.send(Arc::new(LogLine { level, json, line }));
    }

    fn watch(&self, level: Level, json: bool) -> Watch {
        self.count(rank(level), json, true);
        Watch {
            rx: self.tx.subscribe(),
            rank: rank(level),
            json,
        }
    }

    fn count(&self, rank: u8, json: bool, add: bool) {
        let mut w = self.watchers.lock().unwrap_or_else(PoisonError::into_inner);
        let per_rank = &mut w[usize::from(json)];
        let slot = &mut per_rank[usize::from(rank)];
        *slot = if add {
            *slot + 1
        } else {
            slot.saturating_sub(1)
        };
        let most = (1..=5u8)
            .rev()
            .find(|r| per_rank[usize::from(*r)] > 0)
            .unwrap_or(0);
        self.wanted[usize::from(json)].store(most, Ordering::Relaxed);
    }
}

/// One watcher's subscription; dropping it stops the lines it wanted.
struct Watch {
    rx: broadcast::Receiver<Arc<LogLine>>,
    rank: u8,
    json: bool,
}

impl Drop for Watch {
    fn drop(&mut self) {
        logs().count(self.rank, self.json, false);
    }
}

/// `loglevel=`: Consul's names (`trace`, `debug`, `info`, `warn`, `err`),
/// any case; `error` and `warning` too.
fn parse_level(s: &str) -> Option<Level> {
    Some(match s.to_ascii_lowercase().as_str() {
        "trace" => Level::TRACE,
        "debug" => Level::DEBUG,
        "" | "info" => Level::INFO,
        "warn" | "warning" => Level::WARN,
        "err" | "error" => Level::ERROR,
        _ => return None,
    })
}

/// `GET /v1/agent/monitor`.
async fn monitor(ctx: &Ctx<'_>) -> Result<Response<Body>> {
    let raw = ctx.query.get("loglevel").unwrap_or_default();
    let level =
        parse_level(raw).ok_or_else(|| Error::bad_request(format!("Unknown log level: {raw}")))?;
    let json = ctx.query.get("logjson").is_some();
    let mut watch = logs().watch(level, json);
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    let mut stop = ctx.st.shared.stop_signal();
    tokio::spawn(async move {
        loop {
            let line = tokio::select! {
                line = watch.rx.recv() => line,
                () = tx.closed() => return,
                _ = stop.wait_for(|s| *s) => return,
            };
            let out = match line {
                Ok(l) if l.json == watch.json && rank(l.level) <= watch.rank => l.line.clone(),
                Ok(_) => continue,
                Err(broadcast::error::RecvError::Lagged(n)) => Bytes::from(format!(
                    "[WARN] monitor: {n} log lines dropped (this client reads slower than \
                     the agent logs)\n"
                )),
                Err(broadcast::error::RecvError::Closed) => return,
            };
            if tx.send(out).await.is_err() {
                return;
            }
        }
    });
    let mut resp = Response::new(Body::stream(crate::feed::LineBody(rx)));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    Ok(resp)
}

/// `/v1/agent/monitor`.
pub(crate) const ROUTES: &[Route] = &[exact(
    "/v1/agent/monitor",
    GET,
    on_agent!(|ctx, _| monitor(ctx).await),
)];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watchers_set_what_is_formatted_and_levels_parse_like_consul() {
        let logs = logs();
        assert!(!logs.wants(Level::INFO, false));
        let debug = logs.watch(Level::DEBUG, false);
        assert!(logs.wants(Level::DEBUG, false) && !logs.wants(Level::TRACE, false));
        assert!(!logs.wants(Level::ERROR, true), "no JSON watcher");
        drop(debug);
        assert!(!logs.wants(Level::ERROR, false));
        assert_eq!(parse_level("ERR"), Some(Level::ERROR));
        assert_eq!(parse_level("warn"), Some(Level::WARN));
        assert_eq!(parse_level(""), Some(Level::INFO));
        assert_eq!(parse_level("loud"), None);
    }
}

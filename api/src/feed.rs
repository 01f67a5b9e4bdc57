//! `GET /v1/event-stream?index=N`: every change to the KV, catalog and
//! session views after index N, as newline-delimited JSON, following live
//! changes until the client goes away or the server stops. One line per
//! changed row:
//!
//! ```text
//! {"Index":12,"Topic":"KV","Op":"set","Key":"app/a","Value":{...KVPair...},"Last":true}
//! {"Index":13,"Topic":"KV","Op":"delete","Key":"app/a","Last":true}
//! {"Index":14,"Topic":"Node","Op":"set","Node":"n1","Value":{...}}
//! {"Index":14,"Topic":"Service","Op":"set","Node":"n1","ServiceID":"web-1","Value":{...},"Last":true}
//! {"Index":20,"Topic":"Restore","Op":"reset","Last":true}
//! ```
//!
//! `"Last": true` marks an index's last line: a reader that saw it may
//! resume from that index without missing or repeating a line.
//!
//! Topics: `KV` (`Key`), `Node` (`Node`, lowercased), `Service` (`Node`,
//! `ServiceID`), `Check` (`Node`, `CheckID`), `Session` (`ID`); `Value` is
//! the row in the shape the matching read endpoint uses. `Restore` means the
//! whole state was replaced: read it again. `?topic=KV,Service` and
//! `?prefix=` (KV keys) filter. When N is older than the changes this
//! server holds the answer is 410 with `X-Muster-Oldest-Index`, the oldest
//! index to resume from after reading the state (the engine's `feed`
//! module says what is held). Each server streams what it applied.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::Frame;
use hyper::header::{self, HeaderValue};
use hyper::{Response, StatusCode};
use muster_engine::feed::{Change, FeedEntry, Gone, Topic, Value};
use serde::Serialize;
use serde_json::json;
use tokio::sync::mpsc;

use crate::error::{Error, Result};
use crate::kv::KvPair;
use crate::response::{self, Body, X_CONSUL_INDEX};
use crate::router::EngineCtx;
use crate::routes::{exact, on_cluster, Route};
use crate::shapes::{HealthCheckJson, NodeJson, NodeServiceJson, SessionJson};

/// The header naming the oldest index a reader may resume from.
pub const X_MUSTER_OLDEST_INDEX: &str = "x-muster-oldest-index";

/// Lines buffered for a slow reader before the stream waits for it.
const QUEUE: usize = 64;

/// A streamed body fed by the feed task.
pub(crate) struct LineBody(pub(crate) mpsc::Receiver<Bytes>);

impl hyper::body::Body for LineBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<std::io::Result<Frame<Bytes>>>> {
        self.0
            .poll_recv(cx)
            .map(|piece| piece.map(|b| Ok(Frame::data(b))))
    }
}

/// The `?topic=` and `?prefix=` filter.
#[derive(Debug, Clone, Default)]
struct Filter {
    topics: Option<Vec<Topic>>,
    prefix: Option<String>,
}

impl Filter {
    fn parse(topic: Option<&str>, prefix: Option<&str>) -> Result<Filter> {
        let topics = match topic {
            None | Some("") => None,
            Some(list) => Some(
                list.split(',')
                    .map(|t| match t.trim().to_ascii_lowercase().as_str() {
                        "kv" => Ok(Topic::Kv),
                        "node" => Ok(Topic::Node),
                        "service" => Ok(Topic::Service),
                        "check" => Ok(Topic::Check),
                        "session" => Ok(Topic::Session),
                        other => Err(Error::bad_request(format!(
                            "unknown topic {other:?}: use KV, Node, Service, Check or Session"
                        ))),
                    })
                    .collect::<Result<Vec<_>>>()?,
            ),
        };
        Ok(Filter {
            topics,
            prefix: prefix.filter(|p| !p.is_empty()).map(str::to_string),
        })
    }

    fn wants(&self, c: &Change) -> bool {
        if self.topics.as_ref().is_some_and(|t| !t.contains(&c.topic)) {
            return false;
        }
        match &self.prefix {
            Some(p) => c.topic == Topic::Kv && c.key.starts_with(p.as_bytes()),
            None => true,
        }
    }
}

/// `node\0id` split.
fn pair(key: &[u8]) -> (String, String) {
    let text = String::from_utf8_lossy(key);
    match text.split_once('\0') {
        Some((a, b)) => (a.to_string(), b.to_string()),
        None => (text.into_owned(), String::new()),
    }
}

/// One line of the stream (fields in this order).
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Event<'a> {
    index: u64,
    topic: &'static str,
    op: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    node: Option<String>,
    #[serde(rename = "ServiceID", skip_serializing_if = "Option::is_none")]
    service_id: Option<String>,
    #[serde(rename = "CheckID", skip_serializing_if = "Option::is_none")]
    check_id: Option<String>,
    #[serde(rename = "ID", skip_serializing_if = "Option::is_none")]
    id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<Shape<'a>>,
    /// The last line of its index: a reader that saw it has the whole
    /// entry and may resume from this index.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    last: bool,
}

/// A row in its read endpoint's shape.
#[derive(Serialize)]
#[serde(untagged)]
enum Shape<'a> {
    Kv(KvPair<'a>),
    Node(NodeJson<'a>),
    Service(NodeServiceJson<'a>),
    Check(HealthCheckJson<'a>),
    Session(SessionJson<'a>),
}

/// One change as a JSON line (with its newline).
fn line(index: u64, c: &Change, last: bool) -> Result<Vec<u8>> {
    let value = c.decode().map_err(Error::Engine)?;
    let key = String::from_utf8_lossy(&c.key).into_owned();
    let mut e = Event {
        index,
        topic: "",
        op: if value.is_some() { "set" } else { "delete" },
        key: None,
        node: None,
        service_id: None,
        check_id: None,
        id: None,
        value: None,
        last,
    };
    match c.topic {
        Topic::Kv => (e.topic, e.key) = ("KV", Some(key)),
        Topic::Node => (e.topic, e.node) = ("Node", Some(key)),
        Topic::Service => {
            let (node, id) = pair(&c.key);
            (e.topic, e.node, e.service_id) = ("Service", Some(node), Some(id));
        }
        Topic::Check => {
            let (node, id) = pair(&c.key);
            (e.topic, e.node, e.check_id) = ("Check", Some(node), Some(id));
        }
        Topic::Session => (e.topic, e.id) = ("Session", Some(key)),
    }
    e.value = match &value {
        None => None,
        Some(Value::Kv(v)) => Some(Shape::Kv(KvPair::from(v))),
        Some(Value::Node(n)) => {
            // The node's own spelling, not the lowercased key.
            e.node = Some(n.node.clone());
            Some(Shape::Node(NodeJson::from(n)))
        }
        Some(Value::Service(s)) => Some(Shape::Service(NodeServiceJson::from(s))),
        Some(Value::Check(ch)) => Some(Shape::Check(HealthCheckJson::from(ch))),
        Some(Value::Session(s)) => Some(Shape::Session(SessionJson::from(s))),
    };
    let mut out =
        serde_json::to_vec(&e).map_err(|err| Error::Internal(format!("event stream: {err}")))?;
    out.push(b'\n');
    Ok(out)
}

/// An entry's lines.
fn lines(entry: &FeedEntry, filter: &Filter) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    let wanted: Vec<&Change> = entry.changes.iter().filter(|c| filter.wants(c)).collect();
    if entry.reset {
        let mut reset = json!({"Index": entry.index, "Topic": "Restore", "Op": "reset"});
        if wanted.is_empty() {
            reset["Last"] = json!(true);
        }
        out.extend_from_slice(reset.to_string().as_bytes());
        out.push(b'\n');
    }
    for (i, c) in wanted.iter().enumerate() {
        out.extend(line(entry.index, c, i + 1 == wanted.len())?);
    }
    Ok(out)
}

/// The 410 answer.
fn gone(asked: u64, g: Gone) -> Response<Body> {
    let mut resp = response::text(
        StatusCode::GONE,
        format!(
            "index {asked} is older than the oldest change this server holds: read the state \
             and follow from its X-Consul-Index (at least {})",
            g.oldest
        ),
    );
    resp.headers_mut()
        .insert(X_MUSTER_OLDEST_INDEX, HeaderValue::from(g.oldest));
    resp
}

/// `GET /v1/event-stream`.
async fn stream(ctx: &EngineCtx<'_>) -> Result<Response<Body>> {
    // Without ?index=, from now on.
    let after = if ctx.query.has("index") {
        ctx.query.index()?
    } else {
        ctx.engine.feed().latest()
    };
    let filter = Filter::parse(ctx.query.get("topic"), ctx.query.get("prefix"))?;
    let first = match ctx.engine.feed().since(after) {
        Ok(entries) => entries,
        Err(g) => return Ok(gone(after, g)),
    };
    let (tx, rx) = mpsc::channel::<Bytes>(QUEUE);
    let engine = ctx.engine.clone();
    let mut stop = ctx.st.shared.stop_signal();
    tokio::spawn(async move {
        let mut last = after;
        let mut batch: Vec<Arc<FeedEntry>> = first;
        loop {
            for entry in &batch {
                last = entry.index;
                let text = match lines(entry, &filter) {
                    Ok(t) => t,
                    Err(e) => {
                        tracing::warn!(error = %e, index = entry.index, "event stream stopped");
                        return;
                    }
                };
                if !text.is_empty() && tx.send(Bytes::from(text)).await.is_err() {
                    return; // the client went away
                }
            }
            tokio::select! {
                () = engine.feed().wait_past(last) => {}
                _ = stop.wait_for(|s| *s) => return,
                () = tx.closed() => return,
            }
            batch = match engine.feed().since(last) {
                Ok(b) => b,
                Err(g) => {
                    // The reader fell behind what the feed holds.
                    let end = json!({"Index": last, "Topic": "Error", "Op": "gone",
                                     "Oldest": g.oldest});
                    let _ = tx.send(Bytes::from(format!("{end}\n"))).await;
                    return;
                }
            };
        }
    });
    let mut resp = Response::new(Body::stream(LineBody(rx)));
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-ndjson"),
    );
    h.insert(X_CONSUL_INDEX, HeaderValue::from(after));
    h.insert(
        X_MUSTER_OLDEST_INDEX,
        HeaderValue::from(ctx.engine.feed().oldest()),
    );
    Ok(resp)
}

/// `/v1/event-stream`.
pub(crate) const ROUTES: &[Route] = &[exact(
    "/v1/event-stream",
    "OPTIONS,GET",
    on_cluster!(|ctx, _c| stream(ctx).await),
)];

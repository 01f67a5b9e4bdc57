//! `/v1/kv/<key>` (consul-compat.md §7.1, §7.2): GET (plain, `recurse`,
//! `keys`, `raw`, blocking), PUT (set, `cas`, `acquire`, `release`) and
//! DELETE (one key, `cas`, `recurse`). Reads go through the engine's typed
//! views and writes through `propose`; this module never decides KV
//! semantics itself (CAS, lock rules), it only maps HTTP to commands and
//! results to Consul's JSON. The one check made here is the lock-delay
//! window before an `acquire` (§8.3), because it is measured on this
//! server's clock and must not go through the log.

use std::fmt::Display;

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::{header, Method, Request, Response};
use muster_engine::{Command, KvEntry};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::response::{self, Body};
use crate::router::EngineCtx;
use crate::routes::{exact, on_cluster, under, Route};
use crate::shared::Rendered;

/// `Missing key name` body.
pub const MISSING_KEY: &str = "Missing key name";

/// Consul's `KVPair` JSON (field order as Consul writes it).
#[derive(Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct KvPair<'a> {
    /// Times the key was acquired as a lock.
    pub lock_index: u64,
    /// The key.
    pub key: &'a str,
    /// Opaque client flags.
    pub flags: u64,
    /// Standard base64 (padded); `null` when empty.
    pub value: Option<String>,
    /// The lock holder; omitted when none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session: Option<&'a str>,
    /// Index of the creating write.
    pub create_index: u64,
    /// Index of the last effective write.
    pub modify_index: u64,
}

impl<'a> From<&'a KvEntry> for KvPair<'a> {
    fn from(e: &'a KvEntry) -> Self {
        KvPair {
            lock_index: e.lock_index,
            key: &e.key,
            flags: e.flags,
            value: (!e.value.is_empty())
                .then(|| base64::engine::general_purpose::STANDARD.encode(&e.value)),
            session: e.session.as_deref().filter(|s| !s.is_empty()),
            create_index: e.create_index,
            modify_index: e.modify_index,
        }
    }
}

/// Key validation of Consul ≥ 1.21.6 (§7.2): no `../` or `..\`, no leading
/// or trailing `..`, no leading or trailing whitespace; also after one more
/// round of percent-decoding (URL-encoded traversal). The empty key is
/// checked by the caller (it is valid for `recurse` and `keys`).
pub fn validate_key(key: &str) -> Result<()> {
    fn check(k: &str) -> Result<()> {
        if k.contains("../") || k.contains("..\\") || k.starts_with("..") || k.ends_with("..") {
            return Err(Error::bad_request(format!(
                "Invalid key name {k:?}: path traversal is not allowed"
            )));
        }
        if k.trim() != k {
            return Err(Error::bad_request(format!(
                "Invalid key name {k:?}: leading or trailing spaces are not allowed"
            )));
        }
        Ok(())
    }
    check(key)?;
    if key.contains('%') {
        let decoded = percent_encoding::percent_decode_str(key).decode_utf8_lossy();
        check(&decoded)?;
    }
    Ok(())
}

/// Handle one KV request (the route already checked the method).
pub(crate) async fn handle<B>(
    ctx: &EngineCtx<'_>,
    method: &Method,
    key: &str,
    req: Request<B>,
) -> Result<Response<Body>>
where
    B: hyper::body::Body<Data = Bytes> + Send,
    B::Error: Display,
{
    if !key.is_empty() {
        validate_key(key)?;
    }
    if method == Method::PUT {
        let content_length = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        put(ctx, key, req.into_body(), content_length).await
    } else if method == Method::DELETE {
        delete(ctx, key).await
    } else {
        get(ctx, key).await
    }
}

async fn get(ctx: &EngineCtx<'_>, key: &str) -> Result<Response<Body>> {
    let q = &ctx.query;
    let (keys_mode, recurse) = (q.keys(), q.recurse());
    if key.is_empty() && !keys_mode && !recurse {
        return Err(Error::bad_request(MISSING_KEY));
    }
    let engine = &ctx.engine;
    let raw = ctx.query.raw();
    let separator = q.separator();
    // §1.1 point 6: a missing key answers at once on the first pass if the
    // table index passed the caller's; once a reader has seen it missing, a
    // pass that still finds it missing keeps blocking (unrelated KV writes
    // move the table index) until it appears or the deadline passes. A key
    // that was there and is now gone is a change: 404 at once.
    ctx.shared_read(|ws| {
        let acl = ctx.acl.as_deref();
        if keys_mode {
            let r = engine.kv_keys(key, separator, ws)?;
            let total = r.value.len();
            let keys: Vec<&String> = r
                .value
                .iter()
                .filter(|k| crate::acl::may_read_key(acl, k))
                .collect();
            if keys.is_empty() && !key.is_empty() {
                return Ok(Rendered::not_found(r.index));
            }
            let mut out = ctx.render_json(r.index, &keys)?;
            crate::acl::filtered_header(&mut out, acl, keys.len() < total);
            return Ok(out);
        }
        if recurse {
            let r = engine.kv_list(key, ws)?;
            let visible: Vec<_> = r
                .value
                .iter()
                .filter(|e| crate::acl::may_read_key(acl, &e.key))
                .collect();
            // With keys hidden, the index is that of what may be seen, so a
            // write to a hidden key neither wakes nor answers this reader.
            let index = if visible.len() < r.value.len() {
                visible.iter().map(|e| e.modify_index).max().unwrap_or(1)
            } else {
                r.index
            };
            let pairs: Vec<KvPair<'_>> = visible.into_iter().map(KvPair::from).collect();
            if pairs.is_empty() {
                return Ok(Rendered::not_found(index));
            }
            let mut out = ctx.render_json(index, &pairs)?;
            crate::acl::filtered_header(&mut out, acl, pairs.len() < r.value.len());
            return Ok(out);
        }
        let r = engine.kv_get(key, ws)?;
        match &r.value {
            None => Ok(Rendered::not_found(r.index).absent()),
            Some(entry) if raw => Ok(rendered_raw(r.index, entry.value.clone())),
            Some(entry) => ctx.render_json(r.index, &[KvPair::from(entry)]),
        }
    })
    .await
}

/// A KV miss: 404 with an empty body.
/// A raw value (`?raw`), with the headers of [`response::raw_value`].
fn rendered_raw(index: u64, value: Vec<u8>) -> Rendered {
    let resp = response::raw_value(Vec::new());
    Rendered::new(
        index,
        resp.status(),
        resp.headers().clone(),
        Bytes::from(value),
    )
}

/// Read a request body, never holding more than `max` bytes: a declared
/// length above `max` is refused before reading, and reading stops as soon
/// as the running total would pass `max`.
pub(crate) async fn read_body<B>(
    body: B,
    content_length: Option<u64>,
    max: usize,
) -> Result<Vec<u8>>
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: Display,
{
    let max_u64 = u64::try_from(max).unwrap_or(u64::MAX);
    if let Some(n) = content_length {
        if n > max_u64 {
            return Err(Error::TooLarge { size: n, max });
        }
    }
    let mut body = std::pin::pin!(body);
    let mut buf = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame =
            frame.map_err(|e| Error::bad_request(format!("Failed to read request body: {e}")))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        let total = buf.len().saturating_add(data.len());
        if total > max {
            let seen = u64::try_from(total).unwrap_or(u64::MAX);
            return Err(Error::TooLarge {
                size: content_length.unwrap_or(seen).max(seen),
                max,
            });
        }
        buf.extend_from_slice(&data);
    }
    Ok(buf)
}

/// Propose `cmd` and answer its JSON boolean (`Rejected` → 500 with the
/// engine's message).
pub(crate) async fn propose_bool(ctx: &EngineCtx<'_>, cmd: Command) -> Result<Response<Body>> {
    // Consul's timings of the write, by kind.
    let kind = match &cmd {
        Command::CatalogRegister { .. } => 1,
        Command::CatalogDeregister { .. } => 2,
        Command::KvSet { .. }
        | Command::KvCas { .. }
        | Command::KvDelete { .. }
        | Command::KvDeleteCas { .. }
        | Command::KvDeleteTree { .. }
        | Command::KvLock { .. }
        | Command::KvUnlock { .. } => 3,
        _ => 0,
    };
    let start = std::time::Instant::now();
    let applied = ctx.engine.propose(cmd).await?;
    let ms = muster_metrics::ms(start.elapsed());
    match kind {
        1 => muster_metrics::timing!("consul.catalog.register", ms),
        2 => muster_metrics::timing!("consul.catalog.deregister", ms),
        3 => muster_metrics::timing!("consul.kvs.apply", ms),
        _ => {}
    }
    let ok = match applied.response {
        muster_engine::Response::Bool(b) => b,
        muster_engine::Response::None => true,
        muster_engine::Response::Rejected(msg) => return Err(Error::Internal(msg)),
        // The engine answers a proposal with its own response, never a
        // batch, and only a transaction answers with a transaction outcome.
        muster_engine::Response::Batch(_) | muster_engine::Response::Txn { .. } => {
            return Err(Error::Internal("unexpected response".into()))
        }
    };
    ctx.json(&ok)
}

async fn put<B>(
    ctx: &EngineCtx<'_>,
    key: &str,
    body: B,
    content_length: Option<u64>,
) -> Result<Response<Body>>
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: Display,
{
    let q = &ctx.query;
    if key.is_empty() {
        return Err(Error::bad_request(MISSING_KEY));
    }
    q.check_conflicting(&["cas", "acquire", "release"])?;
    let flags = q.flags()?;
    let cas = q.cas()?;
    let value = read_body(body, content_length, ctx.st.cfg.kv_max_value_size).await?;
    let key = key.to_string();
    let cmd = if let Some(session) = q.acquire() {
        // Inside a lock-delay window an acquire fails without a write. An
        // empty session goes on to the engine's `missing session`.
        if !session.is_empty() && ctx.engine.kv_lock_delay(&key).is_some() {
            return ctx.json(&false);
        }
        Command::KvLock {
            key,
            value,
            flags,
            session: session.to_string(),
        }
    } else if let Some(session) = q.release() {
        Command::KvUnlock {
            key,
            value,
            flags,
            session: session.to_string(),
        }
    } else {
        match cas {
            Some(index) => Command::KvCas {
                key,
                value,
                flags,
                index,
            },
            None => Command::KvSet { key, value, flags },
        }
    };
    propose_bool(ctx, cmd).await
}

async fn delete(ctx: &EngineCtx<'_>, key: &str) -> Result<Response<Body>> {
    let q = &ctx.query;
    q.check_conflicting(&["recurse", "cas"])?;
    let cmd = if q.recurse() {
        Command::KvDeleteTree {
            prefix: key.to_string(),
        }
    } else {
        if key.is_empty() {
            return Err(Error::bad_request(MISSING_KEY));
        }
        match q.cas()? {
            Some(index) => Command::KvDeleteCas {
                key: key.to_string(),
                index,
            },
            None => Command::KvDelete {
                key: key.to_string(),
            },
        }
    };
    propose_bool(ctx, cmd).await
}

/// `GET|PUT|DELETE /v1/kv/<key>`.
const KV_METHODS: &str = "OPTIONS,GET,PUT,DELETE";

/// `/v1/kv/<key>` (and `/v1/kv`, which Go's ServeMux would redirect).
pub(crate) const ROUTES: &[Route] = &[
    under(
        "/v1/kv/",
        KV_METHODS,
        on_cluster!(|ctx, c| handle(ctx, &c.method, &c.rest, c.req).await),
    ),
    exact(
        "/v1/kv",
        KV_METHODS,
        on_cluster!(|ctx, c| handle(ctx, &c.method, &c.rest, c.req).await),
    ),
];

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::Full;
    use hyper::body::Frame;

    fn entry(value: &[u8], session: Option<&str>) -> KvEntry {
        KvEntry {
            key: "service/b/leader".into(),
            value: value.to_vec(),
            flags: 42,
            create_index: 100,
            modify_index: 200,
            lock_index: 1,
            session: session.map(str::to_string),
        }
    }

    #[test]
    fn kv_pair_json_shape() -> Result<()> {
        let e = entry(b"pg1", Some("adf4238a"));
        let json =
            String::from_utf8_lossy(&response::to_json(&KvPair::from(&e), false)?).into_owned();
        assert_eq!(
            json,
            r#"{"LockIndex":1,"Key":"service/b/leader","Flags":42,"Value":"cGcx","Session":"adf4238a","CreateIndex":100,"ModifyIndex":200}"#
        );
        let e = entry(b"", None);
        let json =
            String::from_utf8_lossy(&response::to_json(&KvPair::from(&e), false)?).into_owned();
        assert_eq!(
            json,
            r#"{"LockIndex":1,"Key":"service/b/leader","Flags":42,"Value":null,"CreateIndex":100,"ModifyIndex":200}"#
        );
        let e = entry(b"ab", Some(""));
        let pair = KvPair::from(&e);
        assert_eq!(pair.value.as_deref(), Some("YWI="));
        assert_eq!(pair.session, None);
        Ok(())
    }

    #[test]
    fn kv_key_validation() {
        for bad in [
            "../etc",
            "a/../b",
            "a/..\\b",
            "..",
            "..a",
            "a..",
            "a/..",
            " a",
            "a ",
            "a\t",
            "%2e%2e/x",
            "a/%2E%2E%2Fb",
            "%20a",
        ] {
            assert_eq!(
                validate_key(bad).map_err(|e| e.status().as_u16()),
                Err(400),
                "{bad:?}"
            );
        }
        for good in [
            "a",
            "a/b/",
            "a..b",
            "a/.b",
            "a b",
            ".a",
            "a.",
            "a%zz",
            "service/batman/leader",
        ] {
            assert!(validate_key(good).is_ok(), "{good:?}");
        }
    }

    #[tokio::test]
    async fn kv_body_read_is_bounded() -> Result<()> {
        let ok = read_body(Full::new(Bytes::from_static(b"hello")), Some(5), 5).await?;
        assert_eq!(ok, b"hello");
        let e = read_body(Full::new(Bytes::from_static(b"hello")), Some(6), 5).await;
        assert_eq!(
            e.map_err(|e| e.to_string())
                .err()
                .as_deref()
                .and_then(|s| s.split(',').next()),
            Some("Request body(6 bytes) too large")
        );
        // A chunked body that never declared its length stops at the limit.
        let body = Chunks {
            left: 1000,
            polled: 0,
        };
        match read_body(body, None, 100).await {
            Err(Error::TooLarge { size, max }) => assert_eq!((size, max), (128, 100)),
            other => panic!("unexpected {other:?}"),
        }
        Ok(())
    }

    /// An endless-ish chunked body of 64-byte frames that panics if read
    /// far past the point where the limit was exceeded.
    struct Chunks {
        left: usize,
        polled: usize,
    }

    impl hyper::body::Body for Chunks {
        type Data = Bytes;
        type Error = std::convert::Infallible;
        fn poll_frame(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<std::result::Result<Frame<Bytes>, Self::Error>>> {
            self.polled += 1;
            assert!(self.polled <= 2, "read past the limit");
            if self.left == 0 {
                return std::task::Poll::Ready(None);
            }
            self.left -= 1;
            std::task::Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(&[7u8; 64])))))
        }
    }
}

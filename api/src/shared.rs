//! One result per query and index, shared by every identical read.
//!
//! Identical reads (same path, same parameters that change the answer,
//! same consistency mode) find one [`Slot`]. The first reader to find the
//! slot empty or stale runs the query on one read view and renders the
//! reply once (status, headers, body bytes, and a gzip copy made the first
//! time a client asks for one); every other reader, blocking or not, takes
//! that [`Rendered`] as it is. A slot's result carries the subscription on
//! the watch set its query filled: once that fires the result is stale and
//! the next reader computes it again, once. Blocking readers wait on that
//! same subscription, so W watchers of one result hold one registration,
//! one result and W small futures, and a change costs one query and one
//! encoding, not W.
//!
//! A slot lives as long as a reader holds it; the map keeps only weak
//! references, pruned as it grows, so idle queries hold no memory.

use std::collections::HashMap;
use std::io::Write as _;
use std::sync::{Arc, Mutex, OnceLock, Weak};

use bytes::Bytes;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Response, StatusCode};
use muster_engine::watch::{Subscription, Watch};
use muster_engine::WatchSet;

use crate::error::Result;
use crate::response::Body;

/// Bodies below this size are never compressed (gziphandler's default,
/// which Consul uses).
const GZIP_MIN_SIZE: usize = 1400;

/// A rendered reply: what every reader of one result sends.
#[derive(Debug)]
pub(crate) struct Rendered {
    /// The result's index (`X-Consul-Index`).
    pub index: u64,
    /// The status.
    pub status: StatusCode,
    /// Content headers (type, and for raw values their guards).
    pub headers: HeaderMap,
    /// The body.
    pub body: Bytes,
    /// The result says "not there" (a KV miss): a blocking reader that
    /// already saw it absent keeps waiting (consul-compat.md §1.1 point 6).
    pub absent: bool,
    /// The gzip'd body, made on first request (`None`: not worth it).
    gzipped: OnceLock<Option<Bytes>>,
}

impl Rendered {
    /// A rendered reply from a built response's parts.
    pub fn new(index: u64, status: StatusCode, headers: HeaderMap, body: Bytes) -> Rendered {
        Rendered {
            index,
            status,
            headers,
            body,
            absent: false,
            gzipped: OnceLock::new(),
        }
    }

    /// A 404 with an empty body (a missing KV key or node).
    pub fn not_found(index: u64) -> Rendered {
        let resp = crate::response::not_found_empty();
        Rendered::new(index, resp.status(), resp.headers().clone(), Bytes::new())
    }

    /// Mark the result as "not there".
    pub fn absent(mut self) -> Rendered {
        self.absent = true;
        self
    }

    /// The body compressed, once per result.
    fn gzipped(&self) -> Option<&Bytes> {
        self.gzipped
            .get_or_init(|| {
                if self.body.len() < GZIP_MIN_SIZE {
                    return None;
                }
                let mut enc = flate2::write::GzEncoder::new(
                    Vec::with_capacity(self.body.len() / 8),
                    flate2::Compression::fast(),
                );
                enc.write_all(&self.body).ok()?;
                enc.finish().ok().map(Bytes::from)
            })
            .as_ref()
    }

    /// The reply to send (sharing the body's bytes), compressed when the
    /// client accepts gzip and the body is worth it.
    pub fn response(&self, gzip: bool) -> Response<Body> {
        let (body, encoded) = match self.gzipped().filter(|_| gzip) {
            Some(z) => (z.clone(), true),
            None => (self.body.clone(), false),
        };
        let mut resp = Response::new(Body::full(body));
        *resp.status_mut() = self.status;
        *resp.headers_mut() = self.headers.clone();
        if encoded {
            resp.headers_mut()
                .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        }
        if self.body.len() >= GZIP_MIN_SIZE {
            resp.headers_mut()
                .insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
        }
        resp
    }
}

/// A computed result and the registration that tells when it is stale.
pub(crate) struct Computed {
    /// The reply.
    pub rendered: Rendered,
    /// Fires when anything the query read changes.
    pub changed: Subscription,
}

/// One query's shared state.
#[derive(Default)]
pub(crate) struct Slot {
    /// The latest result; the lock also makes one reader compute while the
    /// others wait for it.
    current: tokio::sync::Mutex<Option<Arc<Computed>>>,
}

impl Slot {
    /// The current result, computing it first if there is none or it is
    /// stale. `compute` runs on one read view and fills the watch set.
    pub async fn current<F>(&self, watch: &Arc<Watch>, compute: F) -> Result<Arc<Computed>>
    where
        F: FnOnce(&mut WatchSet) -> Result<Rendered>,
    {
        let mut cur = self.current.lock().await;
        if let Some(c) = cur.as_ref() {
            if !c.changed.has_changed() {
                return Ok(c.clone());
            }
        }
        let since = watch.seq();
        let mut ws = WatchSet::new();
        let rendered = compute(&mut ws)?;
        let changed = watch.subscribe_since(ws.keys(), since);
        let c = Arc::new(Computed { rendered, changed });
        *cur = Some(c.clone());
        Ok(c)
    }
}

/// Every query's slot, by key; and whether the server is stopping (then
/// every blocking read answers at once with what it has, so a shutdown
/// never waits out a `wait`).
pub(crate) struct SharedReads {
    slots: Mutex<Map>,
    stopping: tokio::sync::watch::Sender<bool>,
}

impl Default for SharedReads {
    fn default() -> SharedReads {
        SharedReads {
            slots: Mutex::default(),
            stopping: tokio::sync::watch::Sender::new(false),
        }
    }
}

#[derive(Default)]
struct Map {
    by_key: HashMap<String, Weak<Slot>>,
    /// Prune dead entries once the map reaches this size.
    prune_at: usize,
}

impl SharedReads {
    /// The server is stopping: release every blocking read.
    pub fn stop(&self) {
        self.stopping.send_replace(true);
    }

    /// A receiver that turns `true` when the server stops (for streams
    /// that outlive their request's borrow).
    pub fn stop_signal(&self) -> tokio::sync::watch::Receiver<bool> {
        self.stopping.subscribe()
    }

    /// Resolves once [`SharedReads::stop`] was called (at once if it was).
    pub async fn stopped(&self) {
        let mut rx = self.stopping.subscribe();
        // The sender lives in `self`, so `wait_for` can only end by
        // seeing `true`.
        let _ = rx.wait_for(|s| *s).await;
    }

    /// The slot of `key`, made if no reader holds one.
    pub fn slot(&self, key: &str) -> Arc<Slot> {
        let mut map = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(slot) = map.by_key.get(key).and_then(Weak::upgrade) {
            return slot;
        }
        if map.by_key.len() >= map.prune_at {
            map.by_key.retain(|_, w| w.strong_count() > 0);
            map.prune_at = (map.by_key.len() * 2).max(64);
        }
        let slot = Arc::new(Slot::default());
        map.by_key.insert(key.to_string(), Arc::downgrade(&slot));
        slot
    }

    /// Slots in the map, live or not yet pruned (for tests).
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.slots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .by_key
            .values()
            .filter(|w| w.strong_count() > 0)
            .count()
    }
}

/// The cache key of a read: its path and every query parameter except
/// `index` and `wait` (which only say how long to block), sorted, so two
/// spellings of one query share a slot. Anything else that changes the
/// answer (an ACL token, later) must be part of it too.
pub(crate) fn key(path: &str, pairs: &[(String, String)]) -> String {
    let mut params: Vec<&(String, String)> = pairs
        .iter()
        .filter(|(k, _)| k != "index" && k != "wait")
        .collect();
    params.sort();
    let mut key = String::with_capacity(path.len() + 32);
    key.push_str(path);
    for (k, v) in params {
        key.push('\0');
        key.push_str(k);
        key.push('=');
        key.push_str(v);
    }
    key
}

/// True if an `Accept-Encoding` value accepts gzip (a `gzip` or `*` token
/// without `q=0`).
pub(crate) fn accepts_gzip(value: &str) -> bool {
    value.split(',').any(|part| {
        let mut it = part.split(';');
        let token = it.next().unwrap_or_default().trim();
        let zero_q = it.any(|p| {
            let p = p.trim();
            p.strip_prefix("q=")
                .is_some_and(|q| q.trim().parse::<f32>().is_ok_and(|q| q == 0.0))
        });
        (token.eq_ignore_ascii_case("gzip") || token == "*") && !zero_q
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use muster_engine::WatchKey;

    #[test]
    fn key_ignores_index_wait_and_order() {
        let p = |v: &[(&str, &str)]| -> Vec<(String, String)> {
            v.iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect()
        };
        let a = key(
            "/v1/health/service/web",
            &p(&[("passing", ""), ("tag", "x"), ("index", "5")]),
        );
        let b = key(
            "/v1/health/service/web",
            &p(&[("wait", "1m"), ("tag", "x"), ("passing", "")]),
        );
        assert_eq!(a, b);
        let c = key(
            "/v1/health/service/web",
            &p(&[("tag", "y"), ("passing", "")]),
        );
        assert_ne!(a, c);
        assert_ne!(key("/v1/kv/a", &[]), key("/v1/kv/b", &[]));
    }

    #[test]
    fn gzip_negotiation() {
        assert!(accepts_gzip("gzip"));
        assert!(accepts_gzip("deflate, gzip;q=0.5"));
        assert!(accepts_gzip("*"));
        assert!(!accepts_gzip("gzip;q=0"));
        assert!(!accepts_gzip("deflate, br"));
        assert!(!accepts_gzip(""));
    }

    #[tokio::test]
    async fn one_computation_per_change() -> std::result::Result<(), Box<dyn std::error::Error>> {
        let watch = Watch::new();
        let reads = SharedReads::default();
        let runs = std::sync::atomic::AtomicUsize::new(0);
        let compute = |ws: &mut WatchSet| {
            ws.add(WatchKey::Service("web".into()));
            let n = runs.fetch_add(1, std::sync::atomic::Ordering::SeqCst) as u64;
            Ok(Rendered::new(
                n + 1,
                StatusCode::OK,
                HeaderMap::new(),
                Bytes::from(vec![b'x'; 4096]),
            ))
        };
        let slot = reads.slot("q");
        let a = slot.current(&watch, compute).await?;
        let b = reads.slot("q").current(&watch, compute).await?;
        assert!(Arc::ptr_eq(&a, &b), "the second reader shares the result");
        assert_eq!(runs.load(std::sync::atomic::Ordering::SeqCst), 1);
        watch.fire(&[WatchKey::Service("other".into())]);
        assert!(!a.changed.has_changed());
        watch.fire(&[WatchKey::Service("web".into())]);
        assert!(a.changed.has_changed());
        let c = slot.current(&watch, compute).await?;
        assert_eq!(c.rendered.index, 2);
        assert_eq!(runs.load(std::sync::atomic::Ordering::SeqCst), 2);
        // The gzip copy is made once and shared.
        let r1 = c.rendered.response(true);
        assert_eq!(
            r1.headers()
                .get(header::CONTENT_ENCODING)
                .map(|v| v.as_bytes()),
            Some(&b"gzip"[..])
        );
        assert!(c.rendered.gzipped().is_some_and(|z| z.len() < 4096));
        let plain = c.rendered.response(false);
        assert!(plain.headers().get(header::CONTENT_ENCODING).is_none());
        drop((a, b, c, slot));
        assert_eq!(reads.len(), 0, "an unheld slot is dropped");
        Ok(())
    }
}

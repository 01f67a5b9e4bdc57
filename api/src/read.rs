//! The one read path every catalog, health, KV and session GET goes
//! through (consul-compat.md §0.4, §0.5, §1): parse `index`/`wait` and the
//! consistency mode (`dc` was settled by the router), confirm leadership
//! for `?consistent` (and for the default mode on a follower), answer from
//! the shared result of identical reads (`shared`), blocking on the watch
//! set the engine's query filled, with the default-mode leader gate on
//! every pass, and set the read headers. Also the list parameters shared by
//! those endpoints (`filter`, `node-meta`, `tag`). It decides nothing about
//! what a query returns or what it waits on.

use std::collections::BTreeMap;

use hyper::Response;
use muster_engine::{Blocking, Node, WatchSet};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::filter::Filter;
use crate::query::Consistency;
use crate::response::{self, Body};
use crate::router::{Ctx, EngineCtx};
use crate::shared::{self, Rendered};

/// A validated read: its consistency mode and blocking parameters.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Read {
    /// The consistency mode (for the gate and the header).
    pub consistency: Consistency,
    /// `index` and `wait`.
    pub blocking: Blocking,
}

impl EngineCtx<'_> {
    /// Validate the common read parameters (consistency, `index`, `wait`;
    /// `dc` was settled by the router) and, for `?consistent`, confirm
    /// leadership with a quorum.
    pub async fn begin_read(&self) -> Result<Read> {
        let consistency = self.query.consistency()?;
        let blocking = self.query.blocking()?;
        let engine = &self.engine;
        // `consistent` everywhere, and the default mode on a follower, read
        // through the leader's read index: the leader confirms it still
        // leads, this server applies up to that index, then answers from its
        // own views (Consul forwards the whole read to the leader instead).
        if consistency == Consistency::Consistent
            || (consistency == Consistency::Leader && engine.check_leader().is_err())
        {
            engine.linearizable().await?;
        }
        Ok(Read {
            consistency,
            blocking,
        })
    }

    /// Answer a read from the one shared result of identical reads (see
    /// `shared`): `compute` runs the engine query on the watch set it is
    /// given and renders the reply; it runs once per change however many
    /// readers wait. Blocks as the request asks (§1.1), with the
    /// default-mode leader gate on every pass.
    pub async fn shared_read<F>(&self, compute: F) -> Result<Response<Body>>
    where
        F: Fn(&mut WatchSet) -> Result<Rendered>,
    {
        self.read_through_slot(compute, false).await
    }

    /// [`Ctx::shared_read`] for reads that scan whole tables (the UI's
    /// summaries): a non-blocking read is answered from the shared result
    /// too (a page load while nothing changed costs nothing), and the scan
    /// runs where it does not hold up the other requests of its worker
    /// thread (`block_in_place`).
    pub async fn summary_read<F>(&self, compute: F) -> Result<Response<Body>>
    where
        F: Fn(&mut WatchSet) -> Result<Rendered>,
    {
        let multi_thread = tokio::runtime::Handle::current().runtime_flavor()
            == tokio::runtime::RuntimeFlavor::MultiThread;
        let off_worker = |ws: &mut WatchSet| {
            if multi_thread {
                tokio::task::block_in_place(|| compute(ws))
            } else {
                compute(ws)
            }
        };
        self.read_through_slot(off_worker, true).await
    }

    async fn read_through_slot<F>(&self, compute: F, always: bool) -> Result<Response<Body>>
    where
        F: Fn(&mut WatchSet) -> Result<Rendered>,
    {
        let read = self.begin_read().await?;
        let engine = &self.engine;
        let reply = |r: &Rendered| {
            let mut resp = r.response(self.gzip);
            response::set_read_headers(&mut resp, &self.read_meta(r.index, read.consistency));
            if let Some(acl) = &self.st.cfg.acl {
                resp.headers_mut().insert(
                    "X-Consul-Default-ACL-Policy",
                    hyper::header::HeaderValue::from_static(acl.default_policy()),
                );
            }
            resp
        };
        let min = read.blocking.min_index;
        if min == 0 && !always {
            // Answered at once: nothing to wait on, so nothing to share
            // (no slot, no registration on the hot non-blocking path).
            if read.consistency == Consistency::Leader {
                engine.leader_known()?;
            }
            return Ok(reply(&compute(&mut WatchSet::new())?));
        }
        let mut key = shared::key(&self.path, self.query.pairs());
        if let Some(acl) = &self.acl {
            // What a reply holds depends on who may see it.
            key.push_str("\0acl:");
            key.push_str(&acl.accessor);
        }
        let slot = self.st.shared.slot(&key);
        let _open = BlockingGauge::open();
        let deadline = tokio::time::Instant::now() + read.blocking.deadline();
        let mut seen_absent = false;
        // A limited token's blocking read wakes only on what it may see:
        // once this request saw the result at the client's index, a newer
        // one with the same body (the change was in rows the token may
        // not read) keeps it waiting.
        let limited = self.acl.as_ref().is_some_and(|a| !a.authz.is_management());
        let mut seen_body: Option<bytes::Bytes> = None;
        loop {
            if read.consistency == Consistency::Leader {
                engine.leader_known()?;
            }
            let c = slot.current(engine.watch(), &compute).await?;
            let r = &c.rendered;
            let still_absent = r.absent && seen_absent;
            seen_absent = r.absent;
            let same_for_token = seen_body.as_ref().is_some_and(|b| *b == r.body);
            let done = r.index > min && !still_absent && !same_for_token;
            if done {
                return Ok(reply(r));
            }
            if limited {
                seen_body = Some(r.body.clone());
            }
            tokio::select! {
                changed = tokio::time::timeout_at(deadline, c.changed.changed()) => {
                    if changed.is_err() {
                        return Ok(reply(r));
                    }
                }
                // Shutting down: answer now, as a timeout would.
                () = self.st.shared.stopped() => return Ok(reply(r)),
            }
        }
    }

    /// A rendered JSON 200 honouring `?pretty`.
    pub fn render_json<T: Serialize + ?Sized>(&self, index: u64, value: &T) -> Result<Rendered> {
        let mut headers = hyper::HeaderMap::new();
        headers.insert(
            hyper::header::CONTENT_TYPE,
            hyper::header::HeaderValue::from_static("application/json"),
        );
        Ok(Rendered::new(
            index,
            hyper::StatusCode::OK,
            headers,
            response::to_json(value, self.pretty)?.into(),
        ))
    }
}

/// `muster.blocking.open`: blocking reads waiting now.
struct BlockingGauge;

impl BlockingGauge {
    fn open() -> BlockingGauge {
        metrics::gauge!("muster.blocking.open").increment(1.0);
        BlockingGauge
    }
}

impl Drop for BlockingGauge {
    fn drop(&mut self) {
        metrics::gauge!("muster.blocking.open").decrement(1.0);
    }
}

/// The list parameters, which the agent endpoints share.
impl Ctx<'_> {
    /// `filter=`: absent or empty → `None`; malformed → 400
    /// `Failed to create boolean expression evaluator: <pos>: <msg>`.
    pub fn filter(&self) -> Result<Option<Filter>> {
        match self.query.get("filter").filter(|f| !f.trim().is_empty()) {
            None => Ok(None),
            Some(src) => Filter::parse(src)
                .map(Some)
                .map_err(|e| Error::bad_request(e.http_message())),
        }
    }

    /// `node-meta=k:v` (repeatable; split at the first `:`; a pair without
    /// `:` wants the empty value; a later pair for a key wins).
    pub fn node_meta(&self) -> BTreeMap<String, String> {
        self.query
            .pairs()
            .iter()
            .filter(|(k, _)| k == "node-meta")
            .map(|(_, v)| match v.split_once(':') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => (v.clone(), String::new()),
            })
            .collect()
    }

    /// Every `tag=` value, in request order.
    pub fn tags(&self) -> Vec<&str> {
        self.query
            .pairs()
            .iter()
            .filter(|(k, _)| k == "tag")
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// The node carries every `node-meta` pair (key present, value equal).
pub(crate) fn node_meta_matches(node: &Node, want: &BTreeMap<String, String>) -> bool {
    want.iter().all(|(k, v)| node.meta.get(k) == Some(v))
}

/// The instance carries every tag (case-insensitively, as Consul compares).
pub(crate) fn has_all_tags(tags: &[String], want: &[&str]) -> bool {
    want.iter()
        .all(|w| tags.iter().any(|t| t.eq_ignore_ascii_case(w)))
}

/// `filter` accepts the JSON form of `item` (no filter accepts all).
pub(crate) fn passes<T: Serialize>(filter: Option<&Filter>, item: &T) -> bool {
    match filter {
        None => true,
        Some(f) => serde_json::to_value(item).is_ok_and(|v| f.matches(&v)),
    }
}

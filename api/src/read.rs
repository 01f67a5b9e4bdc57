//! The one "blocking read" path every catalog, health and KV GET goes
//! through (consul-compat.md §0.4, §0.5, §1): parse `index`/`wait` and the
//! consistency mode, check `dc`, confirm leadership for `?consistent` (and
//! for the default mode on a follower), run the engine query under the
//! blocking loop with the default-mode leader gate on every run, and set the read headers on the reply. Also the list
//! parameters shared by those endpoints (`filter`, `node-meta`, `tag`).
//! It decides nothing about what a query returns.

use std::collections::BTreeMap;

use hyper::Response;
use muster_engine::blocking::QueryOutcome;
use muster_engine::{Blocking, Indexed, Node, WatchKey};
use serde::Serialize;

use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::filter::Filter;
use crate::query::Consistency;
use crate::response::{self, Body};
use crate::router::Ctx;

/// A validated read: its consistency mode and blocking parameters.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Read {
    /// The consistency mode (for the gate and the header).
    pub consistency: Consistency,
    /// `index` and `wait`.
    pub blocking: Blocking,
}

impl<E: Backend> Ctx<'_, E> {
    /// Validate the common read parameters (consistency, `index`, `wait`;
    /// `dc` was settled by the router) and, for `?consistent`, confirm
    /// leadership with a quorum.
    pub async fn begin_read(&self) -> Result<Read> {
        let consistency = self.query.consistency()?;
        let blocking = self.query.blocking()?;
        let engine = &self.st.engine;
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

    /// Run `query` as a blocking query on `keys`; the default mode checks
    /// leadership on every run. `query` gets `true` on runs after a
    /// wake-up.
    pub async fn blocking<T, F>(
        &self,
        read: &Read,
        keys: &[WatchKey],
        mut query: F,
    ) -> Result<Indexed<T>>
    where
        F: FnMut(bool) -> Result<QueryOutcome<T>>,
    {
        let engine = &self.st.engine;
        read.blocking
            .run(engine.watch(), keys, |woken| {
                if read.consistency == Consistency::Leader {
                    engine.leader_known()?;
                }
                query(woken)
            })
            .await
    }

    /// [`Ctx::begin_read`] then [`Ctx::blocking`] with a plain query whose
    /// result is ready once its index passes the caller's.
    pub async fn read_indexed<T, F>(
        &self,
        keys: &[WatchKey],
        mut query: F,
    ) -> Result<(Read, Indexed<T>)>
    where
        F: FnMut() -> muster_engine::Result<Indexed<T>>,
    {
        let read = self.begin_read().await?;
        let r = self
            .blocking(&read, keys, |_| Ok(QueryOutcome::Ready(query()?)))
            .await?;
        Ok((read, r))
    }

    /// Set the §0.5 read headers on `resp`.
    pub fn with_read_headers(
        &self,
        mut resp: Response<Body>,
        read: &Read,
        index: u64,
    ) -> Response<Body> {
        response::set_read_headers(&mut resp, &self.read_meta(index, read.consistency));
        resp
    }

    /// A JSON 200 with the read headers.
    pub fn read_reply<T: Serialize + ?Sized>(
        &self,
        read: &Read,
        index: u64,
        value: &T,
    ) -> Result<Response<Body>> {
        Ok(self.with_read_headers(self.json(value)?, read, index))
    }
}

/// The list parameters, which the agent endpoints share.
impl<E> Ctx<'_, E> {
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

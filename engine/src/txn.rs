//! Transactions (`/v1/txn`, consul-compat §7.3): the operations, their
//! results and errors, and their execution over one [`Stage`], so a
//! transaction is applied all-or-nothing in one log entry and every
//! operation sees the ones before it. Read-only transactions run the same
//! code over a stage that is never committed.

use serde::{Deserialize, Serialize};

use crate::command::Response;
use crate::error::Result;
use crate::stage::Stage;
use crate::tables::{catalog, kv, session};
use crate::types::{Check, KvEntry, Node, Service};

/// Most operations in one transaction.
pub const MAX_TXN_OPS: usize = 128;

/// A KV operation's verb.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum KvVerb {
    /// Set unconditionally.
    Set,
    /// Set if `ModifyIndex` matches (0 = absent).
    Cas,
    /// Acquire for a session.
    Lock,
    /// Release by a session.
    Unlock,
    /// Read; fails if absent.
    Get,
    /// Read; no result if absent.
    GetOrEmpty,
    /// Read every key under a prefix.
    GetTree,
    /// Fail unless `ModifyIndex` matches.
    CheckIndex,
    /// Fail unless locked by the session.
    CheckSession,
    /// Fail if the key exists.
    CheckNotExists,
    /// Delete.
    Delete,
    /// Delete a prefix.
    DeleteTree,
    /// Delete if `ModifyIndex` matches.
    DeleteCas,
}

impl KvVerb {
    /// Parse Consul's spelling.
    pub fn parse(s: &str) -> Option<KvVerb> {
        Some(match s {
            "set" => KvVerb::Set,
            "cas" => KvVerb::Cas,
            "lock" => KvVerb::Lock,
            "unlock" => KvVerb::Unlock,
            "get" => KvVerb::Get,
            "get-or-empty" => KvVerb::GetOrEmpty,
            "get-tree" => KvVerb::GetTree,
            "check-index" => KvVerb::CheckIndex,
            "check-session" => KvVerb::CheckSession,
            "check-not-exists" => KvVerb::CheckNotExists,
            "delete" => KvVerb::Delete,
            "delete-tree" => KvVerb::DeleteTree,
            "delete-cas" => KvVerb::DeleteCas,
            _ => return None,
        })
    }

    /// True for verbs that only read.
    pub fn is_read(self) -> bool {
        matches!(
            self,
            KvVerb::Get
                | KvVerb::GetOrEmpty
                | KvVerb::GetTree
                | KvVerb::CheckIndex
                | KvVerb::CheckSession
                | KvVerb::CheckNotExists
        )
    }

    /// True for verbs whose results carry the value (`get`, `get-or-empty`,
    /// `get-tree`); the others' results come with an empty value.
    pub fn returns_value(self) -> bool {
        matches!(self, KvVerb::Get | KvVerb::GetOrEmpty | KvVerb::GetTree)
    }
}

/// A node, service or check operation's verb.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CatalogVerb {
    /// Upsert.
    Set,
    /// Upsert if `ModifyIndex` matches (0 = absent).
    Cas,
    /// Read; fails if absent.
    Get,
    /// Delete.
    Delete,
    /// Delete if `ModifyIndex` matches.
    DeleteCas,
}

impl CatalogVerb {
    /// Parse Consul's spelling.
    pub fn parse(s: &str) -> Option<CatalogVerb> {
        Some(match s {
            "set" => CatalogVerb::Set,
            "cas" => CatalogVerb::Cas,
            "get" => CatalogVerb::Get,
            "delete" => CatalogVerb::Delete,
            "delete-cas" => CatalogVerb::DeleteCas,
            _ => return None,
        })
    }
}

/// One transaction operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxnOp {
    /// A KV operation.
    Kv {
        /// The verb.
        verb: KvVerb,
        /// The key (the prefix for tree verbs).
        key: String,
        /// The value for writes.
        #[serde(with = "serde_bytes")]
        value: Vec<u8>,
        /// Client flags for writes.
        flags: u64,
        /// Expected `ModifyIndex` for cas/check-index/delete-cas.
        index: u64,
        /// Session for lock/unlock/check-session.
        session: String,
    },
    /// A node operation.
    Node {
        /// The verb.
        verb: CatalogVerb,
        /// The node (`modify_index` is the expected index for cas verbs).
        node: Node,
    },
    /// A service instance operation.
    Service {
        /// The verb.
        verb: CatalogVerb,
        /// The node name.
        node: String,
        /// The instance (`modify_index` is the expected index for cas verbs).
        service: Service,
    },
    /// A check operation.
    Check {
        /// The verb.
        verb: CatalogVerb,
        /// The check (`node` names its node; `modify_index` is the expected
        /// index for cas verbs).
        check: Check,
    },
    /// Destroy a session (the only session verb, `delete`).
    SessionDelete {
        /// The session ID.
        id: String,
    },
}

impl TxnOp {
    /// True if the operation only reads (a transaction of only these skips
    /// the log).
    pub fn is_read(&self) -> bool {
        match self {
            TxnOp::Kv { verb, .. } => verb.is_read(),
            TxnOp::Node { verb, .. } | TxnOp::Service { verb, .. } | TxnOp::Check { verb, .. } => {
                *verb == CatalogVerb::Get
            }
            TxnOp::SessionDelete { .. } => false,
        }
    }

    /// A rough size in bytes, for bounding batches.
    pub fn approx_size(&self) -> usize {
        match self {
            TxnOp::Kv { key, value, .. } => 48 + key.len() + value.len(),
            _ => 512,
        }
    }
}

/// One result of a successful transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxnResult {
    /// A KV entry (with an empty value unless the verb reads values).
    Kv(KvEntry),
    /// A node.
    Node(Node),
    /// A service instance.
    Service(Service),
    /// A check.
    Check(Check),
}

/// Why one operation failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnError {
    /// Position of the operation in the request.
    pub op_index: usize,
    /// Consul's message.
    pub what: String,
}

/// Run every operation over `st` at `index`. Returns `Response::Txn`; if it
/// carries errors the caller must discard the stage.
pub(crate) fn run(st: &mut Stage, index: u64, ops: &[TxnOp]) -> Result<Response> {
    let mut results = Vec::new();
    let mut errors = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        let outcome = match op {
            TxnOp::Kv {
                verb,
                key,
                value,
                flags,
                index: expected,
                session,
            } => run_kv(st, index, *verb, key, value, *flags, *expected, session)?,
            TxnOp::Node { verb, node } => run_node(st, index, *verb, node)?,
            TxnOp::Service {
                verb,
                node,
                service,
            } => run_service(st, index, *verb, node, service)?,
            TxnOp::Check { verb, check } => run_check(st, index, *verb, check)?,
            TxnOp::SessionDelete { id } => {
                session::destroy(st, index, id)?;
                Ok(Vec::new())
            }
        };
        match outcome {
            Ok(mut r) => results.append(&mut r),
            Err(what) => errors.push(TxnError { op_index: i, what }),
        }
    }
    if !errors.is_empty() {
        results.clear();
    }
    Ok(Response::Txn { results, errors })
}

/// An operation's results, or Consul's message for its failure.
type OpOutcome = std::result::Result<Vec<TxnResult>, String>;

/// The entry of `key` as a write or check verb's result: without its value,
/// as Consul returns it (only `get`/`get-or-empty`/`get-tree` carry values).
fn kv_result(st: &Stage, key: &str) -> Result<Vec<TxnResult>> {
    Ok(kv::get(st, key)?
        .map(|e| {
            TxnResult::Kv(KvEntry {
                value: Vec::new(),
                ..e
            })
        })
        .into_iter()
        .collect())
}

#[allow(clippy::too_many_arguments)]
fn run_kv(
    st: &mut Stage,
    index: u64,
    verb: KvVerb,
    key: &str,
    value: &[u8],
    flags: u64,
    expected: u64,
    session_id: &str,
) -> Result<OpOutcome> {
    if key.is_empty() && !matches!(verb, KvVerb::GetTree | KvVerb::DeleteTree) {
        return Ok(Err("Missing key name".into()));
    }
    let failed = |r: Response, msg: String| match r {
        Response::Rejected(m) => Err(m),
        Response::Bool(false) => Err(msg),
        _ => Ok(()),
    };
    Ok(match verb {
        KvVerb::Set => {
            kv::set(st, index, key, value, flags)?;
            Ok(kv_result(st, key)?)
        }
        KvVerb::Cas => {
            let r = kv::cas(st, index, key, value, flags, expected)?;
            failed(r, format!("failed to set key {key:?}, index is stale"))
                .and(Ok(kv_result(st, key)?))
        }
        KvVerb::Lock => {
            let r = kv::lock(st, index, key, value, flags, session_id)?;
            failed(
                r,
                format!("failed to lock key {key:?}, lock is already held"),
            )
            .and(Ok(kv_result(st, key)?))
        }
        KvVerb::Unlock => {
            let r = kv::unlock(st, index, key, value, flags, session_id)?;
            failed(
                r,
                format!(
                    "failed to unlock key {key:?}, lock isn't held, or is held by another session"
                ),
            )
            .and(Ok(kv_result(st, key)?))
        }
        KvVerb::Get => match kv::get(st, key)? {
            Some(e) => Ok(vec![TxnResult::Kv(e)]),
            None => Err(format!("key {key:?} doesn't exist")),
        },
        KvVerb::GetOrEmpty => Ok(kv::get(st, key)?.map(TxnResult::Kv).into_iter().collect()),
        KvVerb::GetTree => Ok(kv::list(st, key)?.into_iter().map(TxnResult::Kv).collect()),
        KvVerb::CheckIndex => match kv::get(st, key)? {
            None => Err(format!("failed to check index, key {key:?} doesn't exist")),
            Some(e) if e.modify_index != expected => Err(format!(
                "failed index check for key {key:?}, current modify index {} != {expected}",
                e.modify_index
            )),
            Some(_) => Ok(kv_result(st, key)?),
        },
        KvVerb::CheckSession => match kv::get(st, key)? {
            None => Err(format!(
                "failed to check session, key {key:?} doesn't exist"
            )),
            Some(e) if e.session.as_deref() != Some(session_id) => Err(format!(
                "failed session check for key {key:?}, current session {:?} != {session_id:?}",
                e.session.clone().unwrap_or_default()
            )),
            Some(_) => Ok(kv_result(st, key)?),
        },
        KvVerb::CheckNotExists => match kv::get(st, key)? {
            Some(_) => Err(format!("key {key:?} exists")),
            None => Ok(Vec::new()),
        },
        KvVerb::Delete => {
            kv::delete(st, index, key)?;
            Ok(Vec::new())
        }
        KvVerb::DeleteTree => {
            kv::delete_tree(st, index, key)?;
            Ok(Vec::new())
        }
        KvVerb::DeleteCas => {
            let r = kv::delete_cas(st, index, key, expected)?;
            failed(r, format!("failed to delete key {key:?}, index is stale")).and(Ok(Vec::new()))
        }
    })
}

/// Map a register/deregister response to an op outcome.
fn catalog_outcome(r: Response) -> std::result::Result<(), String> {
    match r {
        Response::Rejected(m) => Err(m),
        _ => Ok(()),
    }
}

fn run_node(st: &mut Stage, index: u64, verb: CatalogVerb, node: &Node) -> Result<OpOutcome> {
    let name = &node.node;
    if name.is_empty() {
        return Ok(Err("Must provide node".into()));
    }
    let existing = catalog::get_node(st, name)?;
    let stale = match &existing {
        None => node.modify_index != 0,
        Some(e) => e.modify_index != node.modify_index,
    };
    Ok(match verb {
        CatalogVerb::Get => match existing {
            Some(n) => Ok(vec![TxnResult::Node(n)]),
            None => Err(format!("node {name:?} doesn't exist")),
        },
        CatalogVerb::Set | CatalogVerb::Cas => {
            if verb == CatalogVerb::Cas && stale {
                Err(format!("failed to set node {name:?}, index is stale"))
            } else {
                match catalog_outcome(catalog::register(st, index, node, false, None, &[])?) {
                    Ok(()) => Ok(node_result(st, name)?),
                    Err(e) => Err(e),
                }
            }
        }
        CatalogVerb::Delete | CatalogVerb::DeleteCas => {
            if verb == CatalogVerb::DeleteCas && existing.is_some() && stale {
                Err(format!("failed to delete node {name:?}, index is stale"))
            } else {
                catalog::deregister(st, index, name, None, None)?;
                Ok(Vec::new())
            }
        }
    })
}

fn node_result(st: &Stage, name: &str) -> Result<Vec<TxnResult>> {
    Ok(catalog::get_node(st, name)?
        .map(TxnResult::Node)
        .into_iter()
        .collect())
}

fn run_service(
    st: &mut Stage,
    index: u64,
    verb: CatalogVerb,
    node_name: &str,
    service: &Service,
) -> Result<OpOutcome> {
    let Some(node) = catalog::get_node(st, node_name)? else {
        return Ok(Err(format!("node {node_name:?} doesn't exist")));
    };
    let lower = node.node.to_lowercase();
    let id = &service.id;
    let existing = catalog::get_service(st, &lower, id)?;
    let stale = match &existing {
        None => service.modify_index != 0,
        Some(e) => e.modify_index != service.modify_index,
    };
    Ok(match verb {
        CatalogVerb::Get => match existing {
            Some(s) => Ok(vec![TxnResult::Service(s)]),
            None => Err(format!(
                "service {id:?} on node {node_name:?} doesn't exist"
            )),
        },
        CatalogVerb::Set | CatalogVerb::Cas => {
            if verb == CatalogVerb::Cas && stale {
                Err(format!("failed to set service {id:?}, index is stale"))
            } else {
                match catalog_outcome(catalog::register(
                    st,
                    index,
                    &node,
                    true,
                    Some(service),
                    &[],
                )?) {
                    Ok(()) => Ok(catalog::get_service(st, &lower, id)?
                        .map(TxnResult::Service)
                        .into_iter()
                        .collect()),
                    Err(e) => Err(e),
                }
            }
        }
        CatalogVerb::Delete | CatalogVerb::DeleteCas => {
            if verb == CatalogVerb::DeleteCas && existing.is_some() && stale {
                Err(format!("failed to delete service {id:?}, index is stale"))
            } else {
                catalog::deregister(st, index, &node.node, Some(id), None)?;
                Ok(Vec::new())
            }
        }
    })
}

fn run_check(st: &mut Stage, index: u64, verb: CatalogVerb, check: &Check) -> Result<OpOutcome> {
    let node_name = &check.node;
    let Some(node) = catalog::get_node(st, node_name)? else {
        return Ok(Err(format!("node {node_name:?} doesn't exist")));
    };
    let lower = node.node.to_lowercase();
    let id = &check.check_id;
    let existing = catalog::get_check(st, &lower, id)?;
    let stale = match &existing {
        None => check.modify_index != 0,
        Some(e) => e.modify_index != check.modify_index,
    };
    Ok(match verb {
        CatalogVerb::Get => match existing {
            Some(c) => Ok(vec![TxnResult::Check(c)]),
            None => Err(format!("check {id:?} on node {node_name:?} doesn't exist")),
        },
        CatalogVerb::Set | CatalogVerb::Cas => {
            if verb == CatalogVerb::Cas && stale {
                Err(format!("failed to set check {id:?}, index is stale"))
            } else {
                let checks = [check.clone()];
                match catalog_outcome(catalog::register(st, index, &node, true, None, &checks)?) {
                    Ok(()) => Ok(catalog::get_check(st, &lower, id)?
                        .map(TxnResult::Check)
                        .into_iter()
                        .collect()),
                    Err(e) => Err(e),
                }
            }
        }
        CatalogVerb::Delete | CatalogVerb::DeleteCas => {
            if verb == CatalogVerb::DeleteCas && existing.is_some() && stale {
                Err(format!("failed to delete check {id:?}, index is stale"))
            } else {
                catalog::deregister(st, index, &node.node, None, Some(id))?;
                Ok(Vec::new())
            }
        }
    })
}

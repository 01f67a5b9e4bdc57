//! Rendering a transaction's outcome (consul-compat.md §7.3): the
//! `{"Results":[...],"Errors":null}` / `{"Results":null,"Errors":[...]}`
//! bodies, with catalog results in the catalog endpoints' shapes. KV results
//! come from the engine without values except for the verbs that read them,
//! so they show `Value: null` as Consul's do.

use muster_engine::txn::{TxnError, TxnResult};
use serde::Serialize;

use crate::kv::KvPair;
use crate::shapes::{HealthCheckJson, NodeJson, NodeServiceJson};

/// One result element: `{"KV":...}`, `{"Node":...}`, ...
#[derive(Debug, Serialize)]
pub(crate) enum ResultJson<'a> {
    /// A KV entry.
    #[serde(rename = "KV")]
    Kv(KvPair<'a>),
    /// A node.
    Node(NodeJson<'a>),
    /// A service instance.
    Service(NodeServiceJson<'a>),
    /// A check.
    Check(HealthCheckJson<'a>),
}

/// One rollback reason.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct ErrorJson<'a> {
    /// Position of the failed operation.
    pub op_index: usize,
    /// Why it failed.
    pub what: &'a str,
}

/// The `/v1/txn` body.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct TxnReply<'a> {
    /// `null` on rollback.
    pub results: Option<Vec<ResultJson<'a>>>,
    /// `null` on success.
    pub errors: Option<Vec<ErrorJson<'a>>>,
}

impl<'a> TxnReply<'a> {
    /// The body for an outcome; errors mean a rollback (nothing applied).
    pub fn new(results: &'a [TxnResult], errors: &'a [TxnError]) -> Self {
        if !errors.is_empty() {
            return TxnReply {
                results: None,
                errors: Some(
                    errors
                        .iter()
                        .map(|e| ErrorJson {
                            op_index: e.op_index,
                            what: &e.what,
                        })
                        .collect(),
                ),
            };
        }
        let results = results
            .iter()
            .map(|r| match r {
                TxnResult::Kv(e) => ResultJson::Kv(KvPair::from(e)),
                TxnResult::Node(n) => ResultJson::Node(NodeJson::from(n)),
                TxnResult::Service(s) => ResultJson::Service(NodeServiceJson::from(s)),
                TxnResult::Check(c) => ResultJson::Check(HealthCheckJson::from(c)),
            })
            .collect();
        TxnReply {
            results: Some(results),
            errors: None,
        }
    }

    /// True for a rollback (409).
    pub fn is_conflict(&self) -> bool {
        self.errors.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use muster_engine::KvEntry;

    #[test]
    fn txn_reply_shapes() -> crate::Result<()> {
        let results = [TxnResult::Kv(KvEntry {
            key: "a".into(),
            value: Vec::new(),
            flags: 0,
            create_index: 1,
            modify_index: 1,
            lock_index: 0,
            session: None,
        })];
        let reply = TxnReply::new(&results, &[]);
        assert!(!reply.is_conflict());
        assert_eq!(
            crate::response::to_json(&reply, false)?,
            br#"{"Results":[{"KV":{"LockIndex":0,"Key":"a","Flags":0,"Value":null,"CreateIndex":1,"ModifyIndex":1}}],"Errors":null}"#
        );
        let errors = [TxnError {
            op_index: 1,
            what: "key \"b\" doesn't exist".into(),
        }];
        let reply = TxnReply::new(&[], &errors);
        assert!(reply.is_conflict());
        assert_eq!(
            crate::response::to_json(&reply, false)?,
            br#"{"Results":null,"Errors":[{"OpIndex":1,"What":"key \"b\" doesn't exist"}]}"#
        );
        Ok(())
    }
}

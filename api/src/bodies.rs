//! The request-body decoders of the coordination endpoints, public so the
//! fuzz targets can feed them arbitrary bytes: `/v1/txn` operations and the
//! `/v1/session/create` body, and prepared query definitions. Each returns the decoded value or the error
//! message the endpoint would answer with.

use muster_engine::txn::TxnOp;
use muster_engine::Session;

use crate::{decode, session, txn, ApiConfig};

/// Decode and validate a `/v1/txn` body as the endpoint does: the
/// operations, or the first message it would answer with (400, 413 or the
/// 409 reason of the first invalid operation).
pub fn txn_ops(body: &[u8], cfg: &ApiConfig) -> Result<Vec<TxnOp>, String> {
    txn::decode_ops(body, cfg)
}

/// Decode a `/v1/session/create` body and apply §8.2's rules, with `node`
/// as the agent's node name.
pub fn session_create(body: &[u8], node: &str, cfg: &ApiConfig) -> Result<Session, String> {
    let input = decode::from_slice_or_default(body).map_err(|e| e.to_string())?;
    session::build_session(input, node.to_string(), cfg.session_ttl_min).map_err(|e| e.to_string())
}

/// Decode and validate a `/v1/query` body as create does, then find
/// `name` among it (by ID, name or as a template's prefix) and render it:
/// the service the query would ask for, `None` when `name` is not its.
pub fn prepared_query(body: &[u8], name: &str) -> Result<Option<String>, String> {
    use crate::prepared::model::{resolve, Query};
    let q = Query::decode(body)?;
    q.validate()?;
    Ok(resolve(std::slice::from_ref(&q), name)?.map(|q| q.service.service))
}

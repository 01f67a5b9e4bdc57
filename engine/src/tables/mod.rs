//! Per-table apply helpers and reads. Each helper stages its writes into the
//! entry's batch and records what it touched; `apply.rs` commits the batch.

pub(crate) mod catalog;
pub(crate) mod kv;
pub(crate) mod objects;
pub(crate) mod session;

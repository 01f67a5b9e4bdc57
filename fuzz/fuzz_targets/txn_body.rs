//! `/v1/txn` and `/v1/session/create` body decoding: arbitrary bytes never
//! panic, and what is accepted respects the limits (at most 128 operations,
//! KV keys present for key verbs, session TTLs within bounds).
#![no_main]

use libfuzzer_sys::fuzz_target;
use muster_api::bodies::{session_create, txn_ops};
use muster_api::ApiConfig;
use muster_engine::txn::{KvVerb, TxnOp, MAX_TXN_OPS};

fuzz_target!(|data: &[u8]| {
    let cfg = ApiConfig::new("dc1", "n1", "00000000-0000-4000-8000-000000000001");
    if let Ok(ops) = txn_ops(data, &cfg) {
        assert!(ops.len() <= MAX_TXN_OPS, "too many operations accepted");
        for op in &ops {
            if let TxnOp::Kv { verb, key, value, .. } = op {
                assert!(value.len() <= cfg.kv_max_value_size, "oversized value accepted");
                if !matches!(verb, KvVerb::GetTree | KvVerb::DeleteTree) {
                    assert!(!key.is_empty(), "a key verb without a key accepted");
                }
            }
        }
    }
    if let Ok(s) = session_create(data, "n1", &cfg) {
        assert!(!s.id.is_empty(), "a session always gets an ID");
        assert!(s.lock_delay_ns <= 60_000_000_000, "lock-delay is capped at 60s");
        if let Some(ttl) = s.ttl_duration() {
            assert!(ttl >= cfg.session_ttl_min, "TTL below the minimum accepted");
            assert!(ttl <= std::time::Duration::from_secs(86_400), "TTL above 24h accepted");
        }
    }
});

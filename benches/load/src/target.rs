//! What a KV put or get is on each server: the request (method, path, body)
//! and the check that its reply is a success.
//!
//! muster speaks Consul's KV API (`PUT|GET /v1/kv/<key>`); etcd is reached
//! through its HTTP/JSON gateway (`POST /v3/kv/put`, `POST /v3/kv/range`,
//! keys and values base64-encoded). This module builds bytes only: it opens
//! no connection.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use bytes::Bytes;
use hyper::{Method, StatusCode};

use crate::args::GetMode;
use crate::http::Reply;

/// The server a KV request is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Server {
    /// muster's Consul-compatible HTTP API.
    Muster,
    /// etcd's v3 JSON gateway.
    Etcd,
}

impl Server {
    /// Name used in tables.
    pub fn name(self) -> &'static str {
        match self {
            Server::Muster => "muster",
            Server::Etcd => "etcd",
        }
    }

    /// The request that writes `value` at `key`.
    pub fn put(self, key: &str, value: &Bytes) -> (Method, String, Bytes) {
        match self {
            Server::Muster => (Method::PUT, format!("/v1/kv/{key}"), value.clone()),
            Server::Etcd => (
                Method::POST,
                "/v3/kv/put".into(),
                etcd_put_body(key.as_bytes(), value),
            ),
        }
    }

    /// The request that reads `key` in `mode`.
    pub fn get(self, key: &str, mode: GetMode) -> (Method, String, Bytes) {
        match self {
            Server::Muster => {
                let query = match mode {
                    GetMode::Default => "",
                    GetMode::Consistent => "?consistent",
                    GetMode::Stale => "?stale",
                };
                (Method::GET, format!("/v1/kv/{key}{query}"), Bytes::new())
            }
            Server::Etcd => (
                Method::POST,
                "/v3/kv/range".into(),
                etcd_range_body(key.as_bytes(), mode == GetMode::Stale),
            ),
        }
    }

    /// Whether `reply` is a successful write: muster answers `true`, etcd a
    /// JSON object with a `header`.
    pub fn put_ok(self, reply: &Reply) -> bool {
        if reply.status != StatusCode::OK {
            return false;
        }
        match self {
            Server::Muster => reply.body.trim_ascii() == b"true",
            Server::Etcd => serde_json::from_slice::<serde_json::Value>(&reply.body)
                .map(|v| v.get("header").is_some())
                .unwrap_or(false),
        }
    }

    /// Whether `reply` to a read of an existing key carries exactly one
    /// entry whose value is `len` bytes.
    pub fn get_ok(self, reply: &Reply, len: usize) -> bool {
        if reply.status != StatusCode::OK {
            return false;
        }
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(&reply.body) else {
            return false;
        };
        let entries = match self {
            Server::Muster => v.as_array(),
            Server::Etcd => v.get("kvs").and_then(|k| k.as_array()),
        };
        let [entry] = entries.map(Vec::as_slice).unwrap_or_default() else {
            return false;
        };
        let value = entry
            .get(match self {
                Server::Muster => "Value",
                Server::Etcd => "value",
            })
            .and_then(|v| v.as_str())
            .and_then(|s| B64.decode(s).ok());
        value.is_some_and(|v| v.len() == len)
    }
}

/// etcd `PutRequest` as JSON: `{"key": b64, "value": b64}`.
pub fn etcd_put_body(key: &[u8], value: &[u8]) -> Bytes {
    let v = serde_json::json!({ "key": B64.encode(key), "value": B64.encode(value) });
    Bytes::from(v.to_string())
}

/// etcd `RangeRequest` for one key as JSON: `{"key": b64}`, plus
/// `"serializable": true` for a local read without the leader check (the
/// default is linearizable).
pub fn etcd_range_body(key: &[u8], serializable: bool) -> Bytes {
    let v = if serializable {
        serde_json::json!({ "key": B64.encode(key), "serializable": true })
    } else {
        serde_json::json!({ "key": B64.encode(key) })
    };
    Bytes::from(v.to_string())
}

/// The KV key with number `i` (fixed width, so all keys have one length).
pub fn kv_key(i: usize) -> String {
    format!("bench/k{i:06}")
}

/// A value of `len` printable bytes, varying with `seed` so writes change
/// the stored value.
pub fn kv_value(len: usize, seed: u64) -> Bytes {
    let alphabet = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            alphabet[(x % alphabet.len() as u64) as usize]
        })
        .collect::<Vec<u8>>()
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(status: u16, body: &str) -> Reply {
        Reply {
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::IM_A_TEAPOT),
            consul_index: None,
            body: Bytes::from(body.to_owned()),
            content_encoding: None,
        }
    }

    #[test]
    fn etcd_put_encodes_key_and_value_in_base64() -> Result<(), serde_json::Error> {
        let body = etcd_put_body(b"bench/k000001", b"hello\x00world");
        let v: serde_json::Value = serde_json::from_slice(&body)?;
        assert_eq!(v["key"], "YmVuY2gvazAwMDAwMQ==");
        assert_eq!(v["value"], "aGVsbG8Ad29ybGQ=");
        assert_eq!(v.as_object().map(|o| o.len()), Some(2));
        Ok(())
    }

    #[test]
    fn etcd_range_asks_for_one_key() -> Result<(), serde_json::Error> {
        let v: serde_json::Value = serde_json::from_slice(&etcd_range_body(b"a/b", false))?;
        assert_eq!(v, serde_json::json!({ "key": "YS9i" }));
        let v: serde_json::Value = serde_json::from_slice(&etcd_range_body(b"a/b", true))?;
        assert_eq!(
            v,
            serde_json::json!({ "key": "YS9i", "serializable": true })
        );
        Ok(())
    }

    #[test]
    fn requests_per_server() {
        let val = Bytes::from_static(b"v");
        let (m, p, b) = Server::Muster.put("bench/k000007", &val);
        assert_eq!(
            (m, p.as_str(), &b[..]),
            (Method::PUT, "/v1/kv/bench/k000007", &b"v"[..])
        );
        let (m, p, b) = Server::Muster.get("bench/k000007", GetMode::Default);
        assert_eq!(
            (m, p.as_str(), b.len()),
            (Method::GET, "/v1/kv/bench/k000007", 0)
        );
        let (_, p, _) = Server::Muster.get("k", GetMode::Consistent);
        assert_eq!(p, "/v1/kv/k?consistent");
        let (_, p, _) = Server::Muster.get("k", GetMode::Stale);
        assert_eq!(p, "/v1/kv/k?stale");
        let (m, p, _) = Server::Etcd.put("k", &val);
        assert_eq!((m, p.as_str()), (Method::POST, "/v3/kv/put"));
        let (m, p, b) = Server::Etcd.get("k", GetMode::Consistent);
        assert_eq!((m, p.as_str()), (Method::POST, "/v3/kv/range"));
        assert_eq!(b, etcd_range_body(b"k", false));
        let (_, _, b) = Server::Etcd.get("k", GetMode::Stale);
        assert_eq!(b, etcd_range_body(b"k", true));
    }

    #[test]
    fn reply_checks() {
        assert!(Server::Muster.put_ok(&reply(200, "true")));
        assert!(!Server::Muster.put_ok(&reply(200, "false")));
        assert!(!Server::Muster.put_ok(&reply(500, "true")));
        assert!(Server::Etcd.put_ok(&reply(200, r#"{"header":{"revision":"2"}}"#)));
        assert!(!Server::Etcd.put_ok(&reply(200, r#"{"error":"x"}"#)));

        let muster_get = r#"[{"Key":"k","Value":"aGVsbG8=","Flags":0}]"#;
        assert!(Server::Muster.get_ok(&reply(200, muster_get), 5));
        assert!(!Server::Muster.get_ok(&reply(200, muster_get), 6));
        assert!(!Server::Muster.get_ok(&reply(404, ""), 5));
        let etcd_get = r#"{"header":{},"kvs":[{"key":"aw==","value":"aGVsbG8="}],"count":"1"}"#;
        assert!(Server::Etcd.get_ok(&reply(200, etcd_get), 5));
        assert!(!Server::Etcd.get_ok(&reply(200, r#"{"header":{}}"#), 5));
    }

    #[test]
    fn keys_and_values() {
        assert_eq!(kv_key(42), "bench/k000042");
        assert_eq!(kv_key(9_999).len(), kv_key(0).len());
        let a = kv_value(100, 1);
        assert_eq!(a.len(), 100);
        assert!(a.iter().all(u8::is_ascii_alphanumeric));
        assert_ne!(a, kv_value(100, 2));
    }
}

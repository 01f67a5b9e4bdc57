//! Building replies: JSON (compact, or 4-space indented plus a newline with
//! `?pretty`), plain text, raw KV values, error bodies, and the read headers
//! of consul-compat.md §0.5. Nothing here decides *what* to answer.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Frame;
use hyper::header::{self, HeaderName, HeaderValue};
use hyper::{Response, StatusCode};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::query::Consistency;

/// Every reply's body: whole bytes (nearly every reply), or a stream
/// (a snapshot archive, whose size is not bounded by memory).
pub struct Body(BodyInner);

enum BodyInner {
    Full(Full<Bytes>),
    Stream(UnsyncBoxBody<Bytes, std::io::Error>),
}

impl Body {
    /// A body of `bytes`.
    pub fn full(bytes: impl Into<Bytes>) -> Body {
        Body(BodyInner::Full(Full::new(bytes.into())))
    }

    /// A streamed body.
    pub fn stream<B>(body: B) -> Body
    where
        B: hyper::body::Body<Data = Bytes, Error = std::io::Error> + Send + 'static,
    {
        Body(BodyInner::Stream(body.boxed_unsync()))
    }
}

impl std::fmt::Debug for Body {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            BodyInner::Full(b) => f.debug_tuple("Body::Full").field(b).finish(),
            BodyInner::Stream(_) => f.write_str("Body::Stream"),
        }
    }
}

impl hyper::body::Body for Body {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<std::result::Result<Frame<Bytes>, std::io::Error>>> {
        match &mut self.0 {
            BodyInner::Full(b) => Pin::new(b)
                .poll_frame(cx)
                .map(|f| f.map(|r| r.map_err(|never| match never {}))),
            BodyInner::Stream(b) => Pin::new(b).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.0 {
            BodyInner::Full(b) => b.is_end_stream(),
            BodyInner::Stream(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        match &self.0 {
            BodyInner::Full(b) => b.size_hint(),
            BodyInner::Stream(b) => b.size_hint(),
        }
    }
}

/// `X-Consul-Index`.
pub const X_CONSUL_INDEX: HeaderName = HeaderName::from_static("x-consul-index");
/// `X-Consul-KnownLeader`.
pub const X_CONSUL_KNOWN_LEADER: HeaderName = HeaderName::from_static("x-consul-knownleader");
/// `X-Consul-LastContact`.
pub const X_CONSUL_LAST_CONTACT: HeaderName = HeaderName::from_static("x-consul-lastcontact");
/// `X-Consul-Effective-Consistency`.
pub const X_CONSUL_EFFECTIVE_CONSISTENCY: HeaderName =
    HeaderName::from_static("x-consul-effective-consistency");

/// `X-Consul-Default-ACL-Policy` (Go sends `X-Consul-Default-Acl-Policy`).
pub const X_CONSUL_DEFAULT_ACL_POLICY: HeaderName =
    HeaderName::from_static("x-consul-default-acl-policy");

const JSON: HeaderValue = HeaderValue::from_static("application/json");
const TEXT: HeaderValue = HeaderValue::from_static("text/plain; charset=utf-8");

/// What a read reports in its headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadMeta {
    /// The result's index (sent as at least 1).
    pub index: u64,
    /// Whether a leader is known.
    pub known_leader: bool,
    /// Milliseconds since the leader was last heard from.
    pub last_contact_ms: u64,
    /// The consistency mode that was applied.
    pub consistency: Consistency,
}

/// Serialize `value`: compact, or Go's `MarshalIndent(v, "", "    ")` plus
/// a newline when `pretty`.
pub fn to_json<T: Serialize + ?Sized>(value: &T, pretty: bool) -> Result<Vec<u8>> {
    let encode_err = |e: serde_json::Error| Error::Internal(format!("encoding response: {e}"));
    if !pretty {
        return serde_json::to_vec(value).map_err(encode_err);
    }
    let mut buf = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, fmt);
    value.serialize(&mut ser).map_err(encode_err)?;
    buf.push(b'\n');
    Ok(buf)
}

/// A reply with `status`, `content_type` and `body`.
pub fn with_body(
    status: StatusCode,
    content_type: HeaderValue,
    body: impl Into<Bytes>,
) -> Response<Body> {
    let mut resp = Response::new(Body::full(body));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, content_type);
    resp
}

/// A 200 JSON reply.
pub fn json<T: Serialize + ?Sized>(value: &T, pretty: bool) -> Result<Response<Body>> {
    Ok(with_body(StatusCode::OK, JSON, to_json(value, pretty)?))
}

/// A plain-text reply.
pub fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    with_body(status, TEXT, body)
}

/// A write's reply: 200, empty body.
pub fn ok_empty() -> Response<Body> {
    Response::new(Body::full(Bytes::new()))
}

/// A 404 with an empty body (KV misses).
pub fn not_found_empty() -> Response<Body> {
    text(StatusCode::NOT_FOUND, Bytes::new())
}

/// A raw KV value (`?raw`): the bare bytes as `text/plain`, never sniffed
/// and sandboxed if a browser renders it.
pub fn raw_value(value: Vec<u8>) -> Response<Body> {
    let mut resp = with_body(
        StatusCode::OK,
        HeaderValue::from_static("text/plain"),
        value,
    );
    let h = resp.headers_mut();
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("sandbox"),
    );
    resp
}

/// Set the §0.5 read headers. The index is never 0.
pub fn set_read_headers(resp: &mut Response<Body>, meta: &ReadMeta) {
    let h = resp.headers_mut();
    h.insert(X_CONSUL_INDEX, HeaderValue::from(meta.index.max(1)));
    h.insert(
        X_CONSUL_KNOWN_LEADER,
        HeaderValue::from_static(if meta.known_leader { "true" } else { "false" }),
    );
    h.insert(
        X_CONSUL_LAST_CONTACT,
        HeaderValue::from(meta.last_contact_ms),
    );
    h.insert(
        X_CONSUL_EFFECTIVE_CONSISTENCY,
        HeaderValue::from_static(meta.consistency.as_str()),
    );
    // No ACLs yet: everything is allowed, and clients (the Go API client,
    // UIs) are told so.
    h.insert(
        X_CONSUL_DEFAULT_ACL_POLICY,
        HeaderValue::from_static("allow"),
    );
}

/// The text/plain reply for an error (405 also gets `Allow`).
pub fn error(err: &Error) -> Response<Body> {
    let mut resp = text(err.status(), err.to_string());
    if let Error::MethodNotAllowed { allow, .. } = err {
        resp.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static(allow));
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hdr(resp: &Response<Body>, name: &str) -> String {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("<none>")
            .to_string()
    }

    #[test]
    fn response_json_compact_and_pretty() -> Result<()> {
        let v = serde_json::json!({"A": [1, 2], "B": {}});
        assert_eq!(to_json(&v, false)?, br#"{"A":[1,2],"B":{}}"#);
        assert_eq!(
            String::from_utf8_lossy(&to_json(&v, true)?),
            "{\n    \"A\": [\n        1,\n        2\n    ],\n    \"B\": {}\n}\n"
        );
        assert_eq!(to_json(&true, false)?, b"true");
        let r = json(&Vec::<u8>::new(), false)?;
        assert_eq!(hdr(&r, "content-type"), "application/json");
        Ok(())
    }

    #[test]
    fn response_read_headers_never_send_index_zero() {
        let mut r = not_found_empty();
        set_read_headers(
            &mut r,
            &ReadMeta {
                index: 0,
                known_leader: false,
                last_contact_ms: 1234,
                consistency: Consistency::Stale,
            },
        );
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        assert_eq!(hdr(&r, "X-Consul-Index"), "1");
        assert_eq!(hdr(&r, "X-Consul-KnownLeader"), "false");
        assert_eq!(hdr(&r, "X-Consul-LastContact"), "1234");
        assert_eq!(hdr(&r, "X-Consul-Effective-Consistency"), "stale");
        let mut r = not_found_empty();
        set_read_headers(
            &mut r,
            &ReadMeta {
                index: 77,
                known_leader: true,
                last_contact_ms: 0,
                consistency: Consistency::Leader,
            },
        );
        assert_eq!(hdr(&r, "X-Consul-Index"), "77");
        assert_eq!(hdr(&r, "X-Consul-KnownLeader"), "true");
        assert_eq!(hdr(&r, "X-Consul-LastContact"), "0");
    }

    #[test]
    fn response_raw_and_error_headers() {
        let r = raw_value(b"\x00bin".to_vec());
        assert_eq!(hdr(&r, "content-type"), "text/plain");
        assert_eq!(hdr(&r, "x-content-type-options"), "nosniff");
        assert_eq!(hdr(&r, "content-security-policy"), "sandbox");
        let r = error(&Error::MethodNotAllowed {
            method: "POST".into(),
            allow: "OPTIONS,GET,PUT,DELETE",
        });
        assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(hdr(&r, "allow"), "OPTIONS,GET,PUT,DELETE");
    }
}

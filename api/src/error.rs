//! The API's one error type. Each variant knows its Consul status code and
//! body (consul-compat.md §13); handlers return `Result<_, Error>` and the
//! router turns the error into a text/plain reply. Nothing here touches the
//! engine beyond wrapping its errors.

use hyper::StatusCode;

/// The documentation link Consul appends to the 413 message.
const KV_MAX_VALUE_SIZE_DOC: &str =
    "https://developer.hashicorp.com/consul/docs/agent/config/config-files#kv_max_value_size";

/// Everything the HTTP layer can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The listener failed.
    #[error("http listener: {0}")]
    Io(#[from] std::io::Error),
    /// 400 with this body (`Invalid index`, `Missing key name`, ...).
    #[error("{0}")]
    BadRequest(String),
    /// 404 with this body (may be empty).
    #[error("{0}")]
    NotFound(String),
    /// 403 with this body (`ACL not found`, `Permission denied: ...`).
    #[error("{0}")]
    Forbidden(String),
    /// 401 with this body (`ACL support disabled`).
    #[error("{0}")]
    Unauthorized(String),
    /// 405: the route exists but not for this method.
    #[error("method {method} not allowed")]
    MethodNotAllowed {
        /// The request's method.
        method: String,
        /// The `Allow` header value (`OPTIONS,GET,...`).
        allow: &'static str,
    },
    /// 413: a request body above the configured limit.
    #[error(
        "Request body({size} bytes) too large, max size: {max} bytes. See {KV_MAX_VALUE_SIZE_DOC}."
    )]
    TooLarge {
        /// The body size (Content-Length, or the bytes seen so far).
        size: u64,
        /// The limit.
        max: usize,
    },
    /// 413 with this body (transaction limits).
    #[error("{0}")]
    PayloadTooLarge(String),
    /// 415: a format this agent does not serve (Prometheus text without a
    /// retention time).
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// 500: `?dc=` names a datacenter this agent cannot reach.
    #[error("No path to datacenter")]
    NoPathToDatacenter,
    /// 500 with the engine's message (`No cluster leader`, ...).
    #[error("{0}")]
    Engine(#[from] muster_engine::Error),
    /// 500 with this body.
    #[error("{0}")]
    Internal(String),
}

/// Result alias for the API.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A 400 with `msg` as the body.
    pub fn bad_request(msg: impl Into<String>) -> Error {
        Error::BadRequest(msg.into())
    }

    /// The HTTP status Consul uses for this error.
    pub fn status(&self) -> StatusCode {
        match self {
            Error::BadRequest(_) => StatusCode::BAD_REQUEST,
            Error::NotFound(_) => StatusCode::NOT_FOUND,
            Error::Forbidden(_) => StatusCode::FORBIDDEN,
            Error::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Error::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Error::TooLarge { .. } | Error::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Error::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Error::Io(_) | Error::NoPathToDatacenter | Error::Engine(_) | Error::Internal(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }

    /// True for the engine's "no leader" error.
    pub fn is_no_leader(&self) -> bool {
        matches!(self, Error::Engine(e) if e.is_no_leader())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_bodies_and_statuses_match_consul() {
        let e = Error::TooLarge {
            size: 600_000,
            max: 524_288,
        };
        assert_eq!(e.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(
            e.to_string(),
            "Request body(600000 bytes) too large, max size: 524288 bytes. See \
             https://developer.hashicorp.com/consul/docs/agent/config/config-files#kv_max_value_size."
        );
        let e = Error::from(muster_engine::Error::NoLeader);
        assert!(e.is_no_leader());
        assert_eq!(e.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(e.to_string(), "No cluster leader");
        let e = Error::MethodNotAllowed {
            method: "POST".into(),
            allow: "OPTIONS,GET",
        };
        assert_eq!(e.to_string(), "method POST not allowed");
        assert_eq!(e.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(
            Error::NoPathToDatacenter.to_string(),
            "No path to datacenter"
        );
    }
}

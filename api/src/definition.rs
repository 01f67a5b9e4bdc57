//! Service and check definitions from HTTP bodies
//! (`PUT /v1/agent/service/register`, `PUT /v1/agent/check/register`):
//! the body is parsed here and decoded by the one definition decoder
//! ([`muster_agent::definition::decode`], which config files go through
//! too); this module words its errors as Consul's HTTP API does.

use muster_agent::definition::decode::{self, DefinitionError, Origin, Problem};
use muster_agent::{CheckDefinition, ServiceDefinition};
use serde_json::Value;

use crate::decode::DECODE_FAILED;
use crate::error::{Error, Result};

/// `Missing check name` (standalone check without a name).
pub const MISSING_CHECK_NAME: &str = "Missing check name";
/// `Bad check status` (standalone check with an unknown `Status`).
pub const BAD_CHECK_STATUS: &str = "Bad check status";
/// An inline service check with an unknown `Status`.
pub const BAD_INLINE_CHECK_STATUS: &str = "Status for checks must 'passing', 'warning', 'critical'";

/// A decoder error as Consul's API words it: type and key errors as Go's
/// JSON decoder's, after `Request decode failed: `; rule errors bare.
fn http_error(e: DefinitionError) -> Error {
    let decode_failed = |m: String| Error::bad_request(format!("{DECODE_FAILED}{m}"));
    let path = e.path;
    match e.problem {
        Problem::UnknownKey { key } => decode_failed(format!("json: unknown field {key:?}")),
        Problem::WrongType { expected, found } => decode_failed(format!(
            "json: cannot unmarshal {} into Go struct field {path} of type {}",
            found.go(),
            expected.go()
        )),
        Problem::OutOfRange { value, expected } => decode_failed(format!(
            "json: cannot unmarshal number {value} into Go struct field {path} of type {}",
            expected.go()
        )),
        Problem::BadDuration { reason, .. } => decode_failed(reason),
        Problem::BadStatus { inline: true, .. } => Error::bad_request(BAD_INLINE_CHECK_STATUS),
        Problem::BadStatus { inline: false, .. } => Error::bad_request(BAD_CHECK_STATUS),
        Problem::Unsupported { kind } => Error::bad_request(format!(
            "Invalid check: {kind} checks are not supported by muster"
        )),
        Problem::MissingCheckName => Error::bad_request(MISSING_CHECK_NAME),
        Problem::InvalidService { reason, .. } => Error::bad_request(reason),
        Problem::InvalidCheck { reason, .. } => {
            Error::bad_request(format!("Invalid check: {reason}"))
        }
    }
}

/// A body as JSON; an empty one is Go's `EOF`.
fn parse_json(body: &[u8]) -> Result<Value> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(Error::bad_request(format!("{DECODE_FAILED}EOF")));
    }
    serde_json::from_slice(body).map_err(|e| Error::bad_request(format!("{DECODE_FAILED}{e}")))
}

/// The body of `PUT /v1/agent/service/register`.
pub(crate) fn service_from_body(body: &[u8]) -> Result<ServiceDefinition> {
    decode::service(&parse_json(body)?, "", Origin::Http).map_err(http_error)
}

/// The body of `PUT /v1/agent/check/register`.
pub(crate) fn check_from_body(body: &[u8]) -> Result<CheckDefinition> {
    decode::check(&parse_json(body)?, "", Origin::Http).map_err(http_error)
}

#[cfg(test)]
mod tests;

//! The HTTP client the client commands (`kv`, later `catalog`, `members`...)
//! use to talk to an agent: address resolution (`-http-addr`, then
//! `CONSUL_HTTP_ADDR`, then `MUSTER_HTTP_ADDR`, then `127.0.0.1:8500`) and
//! one request/response helper over hyper-util's pooled client.
//!
//! It knows nothing of any endpoint: callers build paths and interpret
//! status codes and bodies.

use std::error::Error as _;
use std::io;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode, Uri};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client as LegacyClient;
use hyper_util::rt::TokioExecutor;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// The agent address used when nothing else is given.
pub const DEFAULT_HTTP_ADDR: &str = "127.0.0.1:8500";

/// Connecting to a local agent should be instant; fail fast otherwise.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Upper bound for one request (writes may be held during an election).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Characters escaped in a KV key path: everything but unreserved ones and
/// `/`, which separates key segments and is sent as is.
const KEY_PATH: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'/')
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Characters escaped in a query value.
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Flags shared by every command that talks to an agent.
#[derive(Debug, Clone, clap::Args)]
pub struct HttpArgs {
    /// The agent's HTTP address, `host:port` (`http://` optional). Defaults to
    /// $CONSUL_HTTP_ADDR, then $MUSTER_HTTP_ADDR, then 127.0.0.1:8500.
    #[arg(long, value_name = "ADDR")]
    pub http_addr: Option<String>,
}

/// A response, fully read.
#[derive(Debug)]
pub struct Reply {
    /// The HTTP status.
    pub status: StatusCode,
    /// The body.
    pub body: Bytes,
}

impl Reply {
    /// Consul's Go client wording for an unexpected status:
    /// `Unexpected response code: 500 (No cluster leader)`.
    pub fn unexpected(&self) -> String {
        let body = String::from_utf8_lossy(&self.body);
        format!(
            "Unexpected response code: {} ({})",
            self.status.as_u16(),
            body.trim()
        )
    }
}

/// An HTTP client bound to one agent.
pub struct Client {
    /// `host:port` of the agent, as shown in error messages.
    addr: String,
    /// The pooled hyper client.
    inner: LegacyClient<HttpConnector, Full<Bytes>>,
}

impl Client {
    /// A client for the agent named by the flags or the environment.
    pub fn new(args: &HttpArgs) -> anyhow::Result<Client> {
        let addr = resolve_addr(args.http_addr.as_deref(), |name| std::env::var(name).ok())?;
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
        connector.set_nodelay(true);
        let inner = LegacyClient::builder(TokioExecutor::new()).build(connector);
        Ok(Client { addr, inner })
    }

    /// Send one request and read the whole response. Transport failures
    /// become `Error querying agent: ...` (one line).
    pub async fn request(
        &self,
        method: Method,
        path_and_query: &str,
        body: Bytes,
    ) -> anyhow::Result<Reply> {
        let uri: Uri = format!("http://{}{}", self.addr, path_and_query)
            .parse()
            .with_context(|| format!("Error: invalid request path {path_and_query:?}"))?;
        let req = Request::builder()
            .method(method)
            .uri(uri)
            .body(Full::new(body))
            .context("Error: cannot build the request")?;
        let exchange = async {
            let resp = self
                .inner
                .request(req)
                .await
                .map_err(|err| self.transport_error(&err))?;
            let (parts, body) = resp.into_parts();
            let body = body
                .collect()
                .await
                .map_err(|err| {
                    anyhow!(
                        "Error querying agent: reading the response from {}: {}",
                        self.addr,
                        chain(&err)
                    )
                })?
                .to_bytes();
            Ok(Reply {
                status: parts.status,
                body,
            })
        };
        match tokio::time::timeout(REQUEST_TIMEOUT, exchange).await {
            Ok(result) => result,
            Err(_) => bail!(
                "Error querying agent: {} did not answer within {}s",
                self.addr,
                REQUEST_TIMEOUT.as_secs()
            ),
        }
    }

    /// Send one request whose body streams and return the response with
    /// its body unread (snapshots: no size is held in memory, and no
    /// overall timeout applies; connecting still fails fast).
    pub async fn request_stream(
        &self,
        method: Method,
        path_and_query: &str,
        body: http_body_util::combinators::UnsyncBoxBody<Bytes, io::Error>,
    ) -> anyhow::Result<hyper::Response<hyper::body::Incoming>> {
        let uri: Uri = format!("http://{}{}", self.addr, path_and_query)
            .parse()
            .with_context(|| format!("Error: invalid request path {path_and_query:?}"))?;
        let req = Request::builder()
            .method(method)
            .uri(uri)
            .body(body)
            .context("Error: cannot build the request")?;
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
        let client = LegacyClient::builder(TokioExecutor::new()).build(connector);
        client
            .request(req)
            .await
            .map_err(|err| self.transport_error(&err))
    }

    /// Turn a transport error into one line, with a hint for the commonest
    /// cause (no agent running).
    fn transport_error(&self, err: &hyper_util::client::legacy::Error) -> anyhow::Error {
        let mut source = err.source();
        while let Some(cause) = source {
            if let Some(io_err) = cause.downcast_ref::<io::Error>() {
                if io_err.kind() == io::ErrorKind::ConnectionRefused {
                    return anyhow!(
                        "Error querying agent: connection refused to {}: is an agent running? \
                         Start one with 'muster agent -dev'",
                        self.addr
                    );
                }
            }
            source = cause.source();
        }
        anyhow!("Error querying agent: {}: {}", self.addr, chain(err))
    }
}

/// An error and its sources on one line: `a: b: c`.
fn chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        source = cause.source();
    }
    out
}

/// The agent address: the flag, else `CONSUL_HTTP_ADDR`, else
/// `MUSTER_HTTP_ADDR`, else [`DEFAULT_HTTP_ADDR`]. Empty values count as
/// unset; `http://` and a trailing `/` are accepted and dropped.
pub fn resolve_addr(
    flag: Option<&str>,
    env: impl Fn(&str) -> Option<String>,
) -> anyhow::Result<String> {
    let raw = flag
        .map(str::to_string)
        .filter(|v| !v.trim().is_empty())
        .or_else(|| env("CONSUL_HTTP_ADDR").filter(|v| !v.trim().is_empty()))
        .or_else(|| env("MUSTER_HTTP_ADDR").filter(|v| !v.trim().is_empty()))
        .unwrap_or_else(|| DEFAULT_HTTP_ADDR.to_string());
    let trimmed = raw.trim();
    if let Some(rest) = trimmed.strip_prefix("https://") {
        bail!("Error: HTTPS agent addresses are not supported yet: use http://{rest}");
    }
    if trimmed.starts_with("unix://") {
        bail!("Error: unix socket agent addresses are not supported yet: use host:port");
    }
    let addr = trimmed
        .strip_prefix("http://")
        .unwrap_or(trimmed)
        .trim_end_matches('/');
    let valid = format!("http://{addr}/")
        .parse::<Uri>()
        .ok()
        .is_some_and(|uri| uri.authority().is_some() && uri.path() == "/");
    if addr.is_empty() || !valid {
        bail!("Error: invalid HTTP address {raw:?}: use host:port, e.g. 127.0.0.1:8500");
    }
    Ok(addr.to_string())
}

/// `/v1/kv/<key>` with the key percent-encoded (slashes kept).
pub fn kv_path(key: &str) -> String {
    format!("/v1/kv/{}", utf8_percent_encode(key, KEY_PATH))
}

/// Percent-encode a query value.
pub fn query_value(value: &str) -> String {
    utf8_percent_encode(value, QUERY_VALUE).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn address_precedence_is_flag_consul_muster_default() -> anyhow::Result<()> {
        let both = env_of(&[("CONSUL_HTTP_ADDR", "c:1"), ("MUSTER_HTTP_ADDR", "m:2")]);
        assert_eq!(resolve_addr(Some("http://f:3/"), &both)?, "f:3");
        assert_eq!(resolve_addr(None, &both)?, "c:1");
        assert_eq!(
            resolve_addr(None, env_of(&[("MUSTER_HTTP_ADDR", "m:2")]))?,
            "m:2"
        );
        assert_eq!(
            resolve_addr(None, env_of(&[("CONSUL_HTTP_ADDR", "")]))?,
            DEFAULT_HTTP_ADDR
        );
        assert!(resolve_addr(Some("https://x:1"), env_of(&[])).is_err());
        assert!(resolve_addr(Some("a b"), env_of(&[])).is_err());
        Ok(())
    }

    #[test]
    fn key_paths_keep_slashes_and_escape_the_rest() {
        assert_eq!(kv_path("a/b c?#%"), "/v1/kv/a/b%20c%3F%23%25");
        assert_eq!(query_value("/"), "%2F");
    }
}

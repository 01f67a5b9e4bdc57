//! The HTTP client the client commands (`kv`, later `catalog`, `members`...)
//! use to talk to an agent: address resolution (`-http-addr`, then
//! `CONSUL_HTTP_ADDR`, then `MUSTER_HTTP_ADDR`, then `127.0.0.1:8500`;
//! `https://` or `CONSUL_HTTP_SSL=true` for HTTPS), TLS as Consul's CLI
//! does it (`-ca-file`, `-ca-path`, `-client-cert`, `-client-key`,
//! `-tls-server-name` and their `CONSUL_*` / `MUSTER_*` variables,
//! `CONSUL_HTTP_SSL_VERIFY=false`), and one request/response helper over
//! hyper-util's pooled client.
//!
//! It knows nothing of any endpoint: callers build paths and interpret
//! status codes and bodies.

use std::error::Error as _;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode, Uri};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
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
#[derive(Debug, Clone, Default, clap::Args)]
pub struct HttpArgs {
    /// The agent's HTTP address, `host:port` (`http://` optional;
    /// `https://` for HTTPS). Defaults to $CONSUL_HTTP_ADDR, then
    /// $MUSTER_HTTP_ADDR, then 127.0.0.1:8500.
    #[arg(long, value_name = "ADDR")]
    pub http_addr: Option<String>,
    /// PEM CA certificates to verify the agent's HTTPS certificate with
    /// (default $CONSUL_CACERT; without one, the system's CAs).
    #[arg(long, value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
    /// A directory of PEM CA certificates (default $CONSUL_CAPATH).
    #[arg(long, value_name = "DIR")]
    pub ca_path: Option<PathBuf>,
    /// A PEM client certificate for agents that verify incoming HTTPS
    /// (default $CONSUL_CLIENT_CERT); needs -client-key.
    #[arg(long, value_name = "FILE")]
    pub client_cert: Option<PathBuf>,
    /// The client certificate's PEM key (default $CONSUL_CLIENT_KEY).
    #[arg(long, value_name = "FILE")]
    pub client_key: Option<PathBuf>,
    /// The name the agent's certificate must carry, when it is not the
    /// address's host (default $CONSUL_TLS_SERVER_NAME).
    #[arg(long, value_name = "NAME")]
    pub tls_server_name: Option<String>,
    /// Accept any agent certificate (the agent's own watches without
    /// `verify_outgoing`; $CONSUL_HTTP_SSL_VERIFY=false for the CLI).
    #[arg(skip)]
    pub insecure_skip_verify: bool,
    /// The ACL token to send (default $CONSUL_HTTP_TOKEN, then
    /// $MUSTER_HTTP_TOKEN).
    #[arg(long, value_name = "SECRET")]
    pub token: Option<String>,
    /// A file holding the ACL token (default $CONSUL_HTTP_TOKEN_FILE).
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
}

/// The ACL token from the flags or the environment (`None`: send none).
fn token(args: &HttpArgs, env: impl Fn(&str) -> Option<String>) -> anyhow::Result<Option<String>> {
    if let Some(t) = args.token.clone().filter(|t| !t.is_empty()) {
        return Ok(Some(t));
    }
    let file = args
        .token_file
        .clone()
        .or_else(|| env("CONSUL_HTTP_TOKEN_FILE").map(PathBuf::from))
        .or_else(|| env("MUSTER_HTTP_TOKEN_FILE").map(PathBuf::from));
    if let Some(path) = file {
        let text = std::fs::read_to_string(&path)
            .map_err(|e| anyhow!("Error: cannot read the token file {}: {e}", path.display()))?;
        return Ok(Some(text.trim().to_string()).filter(|t| !t.is_empty()));
    }
    Ok(env("CONSUL_HTTP_TOKEN")
        .or_else(|| env("MUSTER_HTTP_TOKEN"))
        .filter(|t| !t.is_empty()))
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

/// The connector: HTTP, or HTTPS with the TLS the flags ask for.
type Connector = HttpsConnector<HttpConnector>;

/// An HTTP client bound to one agent.
pub struct Client {
    /// `host:port` of the agent, as shown in error messages.
    addr: String,
    /// `http` or `https`.
    scheme: &'static str,
    /// Makes connections (kept for streaming requests' own clients).
    connector: Connector,
    /// The pooled hyper client.
    inner: LegacyClient<Connector, Full<Bytes>>,
    /// The ACL token sent as `X-Consul-Token`.
    token: Option<hyper::header::HeaderValue>,
}

impl Client {
    /// A client for the agent named by the flags or the environment.
    pub fn new(args: &HttpArgs) -> anyhow::Result<Client> {
        let env = |name: &str| std::env::var(name).ok();
        let target = resolve_addr(args.http_addr.as_deref(), env)?;
        let connector = connector(&TlsOptions::resolve(args, &target, env)?)?;
        let inner = LegacyClient::builder(TokioExecutor::new()).build(connector.clone());
        let token = match token(args, env)? {
            Some(t) => Some(hyper::header::HeaderValue::from_str(&t).map_err(|_| {
                anyhow!("Error: the ACL token has characters a header cannot carry")
            })?),
            None => None,
        };
        Ok(Client {
            addr: target.addr,
            scheme: if target.https { "https" } else { "http" },
            connector,
            inner,
            token,
        })
    }

    /// Send one request and read the whole response. Transport failures
    /// become `Error querying agent: ...` (one line).
    pub async fn request(
        &self,
        method: Method,
        path_and_query: &str,
        body: Bytes,
    ) -> anyhow::Result<Reply> {
        let uri: Uri = format!("{}://{}{}", self.scheme, self.addr, path_and_query)
            .parse()
            .with_context(|| format!("Error: invalid request path {path_and_query:?}"))?;
        let mut req = Request::builder().method(method).uri(uri);
        if let Some(t) = &self.token {
            req = req.header("X-Consul-Token", t.clone());
        }
        let req = req
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
        let uri: Uri = format!("{}://{}{}", self.scheme, self.addr, path_and_query)
            .parse()
            .with_context(|| format!("Error: invalid request path {path_and_query:?}"))?;
        let mut req = Request::builder().method(method).uri(uri);
        if let Some(t) = &self.token {
            req = req.header("X-Consul-Token", t.clone());
        }
        let req = req.body(body).context("Error: cannot build the request")?;
        let client = LegacyClient::builder(TokioExecutor::new()).build(self.connector.clone());
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
        let text = chain(err);
        let hint = tls_hint(&text)
            .map(|h| format!(": {h}"))
            .unwrap_or_default();
        anyhow!("Error querying agent: {}: {text}{hint}", self.addr)
    }
}

/// The fix for a TLS failure, from rustls' words in an error chain.
fn tls_hint(text: &str) -> Option<&'static str> {
    let has = |needle: &str| text.contains(needle);
    Some(
        if has("CertificateRequired") || has("peer sent no certificates") {
            "the agent requires a client certificate: pass -client-cert and -client-key (or \
         $CONSUL_CLIENT_CERT and $CONSUL_CLIENT_KEY)"
        } else if has("UnknownIssuer") {
            "the agent's certificate is not signed by a CA this client trusts: pass -ca-file (or \
         $CONSUL_CACERT) with the agent's CA"
        } else if has("NotValidForName") {
            "the agent's certificate does not carry this address: pass -tls-server-name with a \
         name it carries (e.g. server.dc1.consul or localhost)"
        } else if has("BadCertificate") || has("UnknownCA") || has("DecryptError") {
            "the agent refused the client certificate: use one signed by the agent's CA"
        } else if has("InvalidContentType") || has("corrupt message") {
            "the agent does not speak HTTPS on this port: use http://"
        } else {
            return None;
        },
    )
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

/// Where the agent is: `host:port`, over HTTP or HTTPS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `host:port`.
    pub addr: String,
    /// HTTPS (`https://`, or `CONSUL_HTTP_SSL=true` without a scheme).
    pub https: bool,
}

/// The agent address: the flag, else `CONSUL_HTTP_ADDR`, else
/// `MUSTER_HTTP_ADDR`, else [`DEFAULT_HTTP_ADDR`]. Empty values count as
/// unset; `http://` or `https://` and a trailing `/` are accepted; without
/// a scheme, `CONSUL_HTTP_SSL` (or `MUSTER_HTTP_SSL`) true means HTTPS.
pub fn resolve_addr(
    flag: Option<&str>,
    env: impl Fn(&str) -> Option<String>,
) -> anyhow::Result<Target> {
    let set = |name: &str| env(name).filter(|v| !v.trim().is_empty());
    let raw = flag
        .map(str::to_string)
        .filter(|v| !v.trim().is_empty())
        .or_else(|| set("CONSUL_HTTP_ADDR"))
        .or_else(|| set("MUSTER_HTTP_ADDR"))
        .unwrap_or_else(|| DEFAULT_HTTP_ADDR.to_string());
    let trimmed = raw.trim();
    if trimmed.starts_with("unix://") {
        bail!("Error: unix socket agent addresses are not supported yet: use host:port");
    }
    let (https, rest) = if let Some(rest) = trimmed.strip_prefix("https://") {
        (true, rest)
    } else if let Some(rest) = trimmed.strip_prefix("http://") {
        (false, rest)
    } else {
        let ssl = match (set("CONSUL_HTTP_SSL"), set("MUSTER_HTTP_SSL")) {
            (Some(v), _) => parse_bool("CONSUL_HTTP_SSL", &v)?,
            (None, Some(v)) => parse_bool("MUSTER_HTTP_SSL", &v)?,
            (None, None) => false,
        };
        (ssl, trimmed)
    };
    let addr = rest.trim_end_matches('/');
    let valid = format!("http://{addr}/")
        .parse::<Uri>()
        .ok()
        .is_some_and(|uri| uri.authority().is_some() && uri.path() == "/");
    if addr.is_empty() || !valid {
        bail!("Error: invalid HTTP address {raw:?}: use host:port, e.g. 127.0.0.1:8500");
    }
    Ok(Target {
        addr: addr.to_string(),
        https,
    })
}

/// Go's `strconv.ParseBool`, as Consul reads its boolean variables.
fn parse_bool(name: &str, v: &str) -> anyhow::Result<bool> {
    match v.trim() {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        other => bail!("Error: could not parse {name}={other:?}: use true or false"),
    }
}

/// The TLS settings of one client: flags, else `CONSUL_*`, else
/// `MUSTER_*` variables.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct TlsOptions {
    /// Speak HTTPS.
    https: bool,
    /// CA file and the flag or variable it came from.
    ca_file: Option<(PathBuf, String)>,
    /// CA directory, likewise.
    ca_path: Option<(PathBuf, String)>,
    /// Client certificate, likewise.
    client_cert: Option<(PathBuf, String)>,
    /// Client key, likewise.
    client_key: Option<(PathBuf, String)>,
    /// Name to verify instead of the address's host.
    server_name: Option<String>,
    /// Verify the agent's certificate (`CONSUL_HTTP_SSL_VERIFY`).
    verify: bool,
}

impl TlsOptions {
    /// Resolve `args` and the environment for `target`.
    fn resolve(
        args: &HttpArgs,
        target: &Target,
        env: impl Fn(&str) -> Option<String>,
    ) -> anyhow::Result<TlsOptions> {
        let pick = |flag: &Option<PathBuf>, name: &str, var: &str| {
            flag.clone().map(|p| (p, format!("-{name}"))).or_else(|| {
                [format!("CONSUL_{var}"), format!("MUSTER_{var}")]
                    .into_iter()
                    .find_map(|v| {
                        env(&v)
                            .filter(|s| !s.trim().is_empty())
                            .map(|s| (PathBuf::from(s), format!("${v}")))
                    })
            })
        };
        let var = |v: &str| {
            env(&format!("CONSUL_{v}"))
                .filter(|s| !s.trim().is_empty())
                .map(|s| (s, format!("CONSUL_{v}")))
                .or_else(|| {
                    env(&format!("MUSTER_{v}"))
                        .filter(|s| !s.trim().is_empty())
                        .map(|s| (s, format!("MUSTER_{v}")))
                })
        };
        let verify = match var("HTTP_SSL_VERIFY") {
            Some((v, name)) => parse_bool(&name, &v)?,
            None => true,
        } && !args.insecure_skip_verify;
        let server_name = args
            .tls_server_name
            .clone()
            .filter(|s| !s.is_empty())
            .or_else(|| var("TLS_SERVER_NAME").map(|(v, _)| v));
        let opts = TlsOptions {
            https: target.https,
            ca_file: pick(&args.ca_file, "ca-file", "CACERT"),
            ca_path: pick(&args.ca_path, "ca-path", "CAPATH"),
            client_cert: pick(&args.client_cert, "client-cert", "CLIENT_CERT"),
            client_key: pick(&args.client_key, "client-key", "CLIENT_KEY"),
            server_name,
            verify,
        };
        match (&opts.client_cert, &opts.client_key) {
            (Some((_, from)), None) => {
                bail!("Error: {from} needs a client key: pass -client-key (or $CONSUL_CLIENT_KEY)")
            }
            (None, Some((_, from))) => bail!(
                "Error: {from} needs a client certificate: pass -client-cert (or $CONSUL_CLIENT_CERT)"
            ),
            _ => Ok(opts),
        }
    }
}

/// The connector for `opts`: plain HTTP, or HTTPS with its CAs, client
/// certificate and server name (files are read only for HTTPS).
fn connector(opts: &TlsOptions) -> anyhow::Result<Connector> {
    let mut http = HttpConnector::new();
    http.set_connect_timeout(Some(CONNECT_TIMEOUT));
    http.set_nodelay(true);
    http.enforce_http(false);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| anyhow!("Error: TLS setup: {e}"))?;
    let builder = if !opts.https {
        builder.with_root_certificates(rustls::RootCertStore::empty())
    } else if !opts.verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(muster_agent::checks::AnyCert(provider)))
    } else {
        let given = crate::server::https::read_roots(
            opts.ca_file
                .as_ref()
                .map(|(p, k)| (p.as_path(), k.as_str())),
            opts.ca_path
                .as_ref()
                .map(|(p, k)| (p.as_path(), k.as_str())),
        )
        .map_err(|e| anyhow!("Error: {e}"))?;
        builder.with_root_certificates(given.unwrap_or_else(muster_agent::checks::system_roots))
    };
    let config = match (&opts.client_cert, &opts.client_key, opts.https) {
        (Some((cert, cert_from)), Some((key, key_from)), true) => {
            let certs = crate::server::https::read_certs(cert, cert_from)
                .map_err(|e| anyhow!("Error: {e}"))?;
            let key =
                crate::server::https::read_key(key, key_from).map_err(|e| anyhow!("Error: {e}"))?;
            builder.with_client_auth_cert(certs, key).map_err(|e| {
                anyhow!("Error: {cert_from} and {key_from}: {e}: is the key the certificate's?")
            })?
        }
        _ => builder.with_no_client_auth(),
    };
    let builder = HttpsConnectorBuilder::new()
        .with_tls_config(config)
        .https_or_http();
    let builder = match &opts.server_name {
        Some(name) if opts.https => {
            let name = rustls::pki_types::ServerName::try_from(name.clone())
                .map_err(|e| anyhow!("Error: invalid TLS server name {name:?}: {e}"))?;
            builder.with_server_name_resolver(hyper_rustls::FixedServerNameResolver::new(name))
        }
        _ => builder,
    };
    Ok(builder.enable_http1().wrap_connector(http))
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
        let addr = |t: Target| t.addr;
        assert_eq!(addr(resolve_addr(Some("http://f:3/"), &both)?), "f:3");
        assert_eq!(addr(resolve_addr(None, &both)?), "c:1");
        assert_eq!(
            addr(resolve_addr(None, env_of(&[("MUSTER_HTTP_ADDR", "m:2")]))?),
            "m:2"
        );
        assert_eq!(
            addr(resolve_addr(None, env_of(&[("CONSUL_HTTP_ADDR", "")]))?),
            DEFAULT_HTTP_ADDR
        );
        assert!(resolve_addr(Some("a b"), env_of(&[])).is_err());
        Ok(())
    }

    #[test]
    fn https_comes_from_the_scheme_or_consul_http_ssl() -> anyhow::Result<()> {
        let t = resolve_addr(Some("https://x:1/"), env_of(&[]))?;
        assert_eq!((t.addr.as_str(), t.https), ("x:1", true));
        let ssl = env_of(&[("CONSUL_HTTP_ADDR", "c:1"), ("CONSUL_HTTP_SSL", "true")]);
        assert!(resolve_addr(None, &ssl)?.https);
        assert!(
            !resolve_addr(Some("http://c:1"), &ssl)?.https,
            "a scheme wins"
        );
        let bad = env_of(&[("CONSUL_HTTP_SSL", "yes")]);
        assert!(resolve_addr(None, bad).is_err());
        Ok(())
    }

    #[test]
    fn tls_options_come_from_flags_then_consul_then_muster_variables() -> anyhow::Result<()> {
        let env = env_of(&[
            ("CONSUL_CACERT", "/c/ca.pem"),
            ("MUSTER_CACERT", "/m/ca.pem"),
            ("MUSTER_CLIENT_CERT", "/m/cert.pem"),
            ("CONSUL_CLIENT_KEY", "/c/key.pem"),
            ("CONSUL_TLS_SERVER_NAME", "server.dc1.consul"),
            ("CONSUL_HTTP_SSL_VERIFY", "false"),
        ]);
        let target = Target {
            addr: "a:1".into(),
            https: true,
        };
        let o = TlsOptions::resolve(&HttpArgs::default(), &target, &env)?;
        assert_eq!(
            o.ca_file,
            Some(("/c/ca.pem".into(), "$CONSUL_CACERT".into()))
        );
        assert_eq!(
            o.client_cert,
            Some(("/m/cert.pem".into(), "$MUSTER_CLIENT_CERT".into()))
        );
        assert_eq!(o.server_name.as_deref(), Some("server.dc1.consul"));
        assert!(!o.verify);
        let flags = HttpArgs {
            ca_file: Some("/f/ca.pem".into()),
            tls_server_name: Some("localhost".into()),
            ..HttpArgs::default()
        };
        let o = TlsOptions::resolve(&flags, &target, &env)?;
        assert_eq!(o.ca_file, Some(("/f/ca.pem".into(), "-ca-file".into())));
        assert_eq!(o.server_name.as_deref(), Some("localhost"));
        let half = HttpArgs {
            client_cert: Some("/f/c.pem".into()),
            ..HttpArgs::default()
        };
        assert!(TlsOptions::resolve(&half, &target, env_of(&[])).is_err());
        Ok(())
    }

    #[test]
    fn key_paths_keep_slashes_and_escape_the_rest() {
        assert_eq!(kv_path("a/b c?#%"), "/v1/kv/a/b%20c%3F%23%25");
        assert_eq!(query_value("/"), "%2F");
    }
}

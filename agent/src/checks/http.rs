//! HTTP checks: one request per run on a fresh connection (no keep-alive),
//! `User-Agent: Consul Health Check`, the definition's method, headers and
//! body, redirects followed up to 10 times unless disabled. 2xx is passing,
//! 429 warning, anything else (or a transport error) critical. Output is
//! `HTTP <M> <url>: <status line> Output: <body tail>`.
//!
//! `https://` goes through [`super::tls`] (rustls, ALPN `http/1.1`), with
//! `tls_server_name` overriding the name verified and `tls_skip_verify`
//! accepting any certificate.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{ACCEPT, CONNECTION, HOST, LOCATION, USER_AGENT};
use hyper::{Method, Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use super::{AbortOnDrop, CheckResult, TailBuf};
use muster_engine::Status;

/// Consul's health check user agent.
pub const USER_AGENT_VALUE: &str = "Consul Health Check";

/// Redirects followed before giving up (Go's default, kept by Consul).
const MAX_REDIRECTS: usize = 10;

/// The request part of an HTTP check.
pub(super) struct HttpRequest<'a> {
    /// URL as configured.
    pub url: &'a str,
    /// Method (`""` = GET).
    pub method: &'a str,
    /// Extra headers.
    pub header: &'a BTreeMap<String, Vec<String>>,
    /// Request body.
    pub body: &'a str,
    /// Do not follow redirects.
    pub disable_redirects: bool,
    /// Name to verify instead of the URL's host (`""` = the host).
    pub tls_server_name: &'a str,
    /// Accept any server certificate.
    pub tls_skip_verify: bool,
}

/// A response as far as the check cares.
struct Fetched {
    /// Status code.
    code: StatusCode,
    /// `200 OK`.
    status_line: String,
    /// `Location` header, if any.
    location: Option<String>,
    /// Tail of the body.
    body: TailBuf,
}

/// Run the check once.
pub(super) async fn run(req: &HttpRequest<'_>, timeout: Duration, max: usize) -> CheckResult {
    let method = if req.method.is_empty() {
        "GET"
    } else {
        req.method
    };
    let prefix = format!("HTTP {method} {}", req.url);
    match tokio::time::timeout(timeout, fetch(req, method, max)).await {
        Err(_) => CheckResult::critical(format!(
            "{prefix}: request timed out ({})",
            muster_engine::duration::format(timeout)
        )),
        Ok(Err(e)) => CheckResult::critical(format!("{prefix}: {e}")),
        Ok(Ok(resp)) => CheckResult {
            status: classify(resp.code),
            output: format!(
                "{prefix}: {} Output: {}",
                resp.status_line,
                resp.body.tail_string()
            ),
        },
    }
}

/// 2xx passing, 429 warning, else critical.
fn classify(code: StatusCode) -> Status {
    if code.is_success() {
        Status::Passing
    } else if code == StatusCode::TOO_MANY_REQUESTS {
        Status::Warning
    } else {
        Status::Critical
    }
}

/// Send the request, following redirects as Go's client does: 301/302/303
/// turn anything but GET/HEAD into a bodiless GET; 307/308 resend as is.
async fn fetch(req: &HttpRequest<'_>, method: &str, max: usize) -> Result<Fetched, String> {
    let mut method =
        Method::from_bytes(method.as_bytes()).map_err(|_| format!("invalid method {method:?}"))?;
    let mut uri: Uri = req
        .url
        .parse()
        .map_err(|e| format!("invalid URL {:?}: {e}", req.url))?;
    let mut body = Bytes::copy_from_slice(req.body.as_bytes());
    let mut redirects = 0;
    loop {
        let resp = send_once(req, &method, &uri, body.clone(), max, redirects == 0).await?;
        let code = resp.code.as_u16();
        let followable = matches!(code, 301 | 302 | 303 | 307 | 308);
        match &resp.location {
            Some(location) if followable && !req.disable_redirects => {
                if redirects >= MAX_REDIRECTS {
                    return Err(format!("stopped after {MAX_REDIRECTS} redirects"));
                }
                redirects += 1;
                uri = resolve(&uri, location)?;
                if matches!(code, 301..=303) && method != Method::GET && method != Method::HEAD {
                    method = Method::GET;
                    body = Bytes::new();
                }
            }
            _ => return Ok(resp),
        }
    }
}

/// Resolve a `Location` against the URL it came from.
fn resolve(base: &Uri, location: &str) -> Result<Uri, String> {
    let scheme = base.scheme_str().unwrap_or("http");
    let authority = base.authority().map(|a| a.as_str()).unwrap_or_default();
    let absolute = if location.contains("://") {
        location.to_string()
    } else if let Some(rest) = location.strip_prefix("//") {
        format!("{scheme}://{rest}")
    } else if location.starts_with('/') {
        format!("{scheme}://{authority}{location}")
    } else {
        let path = base.path();
        let dir = path.rfind('/').and_then(|i| path.get(..=i)).unwrap_or("/");
        format!("{scheme}://{authority}{dir}{location}")
    };
    absolute
        .parse()
        .map_err(|e| format!("bad redirect location {location:?}: {e}"))
}

/// One request on a new connection.
async fn send_once(
    req: &HttpRequest<'_>,
    method: &Method,
    uri: &Uri,
    body: Bytes,
    max: usize,
    first: bool,
) -> Result<Fetched, String> {
    let tls = match uri.scheme_str() {
        Some("http") => false,
        Some("https") => true,
        Some(other) => return Err(format!("unsupported protocol scheme {other:?}")),
        None => return Err("unsupported protocol scheme \"\"".into()),
    };
    let authority = uri.authority().ok_or("no host in URL")?;
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']');
    let port = authority.port_u16().unwrap_or(if tls { 443 } else { 80 });

    let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let mut builder = Request::builder().method(method.clone()).uri(path);
    let (mut has_host, mut has_agent, mut has_accept) = (false, false, false);
    for (name, values) in req.header {
        if name.eq_ignore_ascii_case("host") {
            // A Host override applies to the configured URL only.
            if !first {
                continue;
            }
            has_host = true;
        }
        has_agent |= name.eq_ignore_ascii_case("user-agent");
        has_accept |= name.eq_ignore_ascii_case("accept");
        for v in values {
            builder = builder.header(name.as_str(), v.as_str());
        }
    }
    if !has_host {
        builder = builder.header(HOST, authority.as_str());
    }
    if !has_agent {
        builder = builder.header(USER_AGENT, USER_AGENT_VALUE);
    }
    if !has_accept {
        builder = builder.header(ACCEPT, "text/plain, text/*, */*");
    }
    let request = builder
        .header(CONNECTION, "close")
        .body(Full::new(body))
        .map_err(|e| format!("invalid request: {e}"))?;

    let stream = TcpStream::connect((host, port))
        .await
        .map_err(|e| format!("dial tcp {authority}: {e}"))?;
    if tls {
        let name = if req.tls_server_name.is_empty() {
            host
        } else {
            req.tls_server_name
        };
        let config = super::tls::client_config(req.tls_skip_verify)?;
        let stream = super::tls::connect(config, stream, name, b"http/1.1").await?;
        exchange(stream, request, max).await
    } else {
        exchange(stream, request, max).await
    }
}

/// Send `request` over `io` with HTTP/1.1 and read the answer.
async fn exchange<I>(io: I, request: Request<Full<Bytes>>, max: usize) -> Result<Fetched, String>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| e.to_string())?;
    let _conn = AbortOnDrop(tokio::spawn(async move {
        let _ = conn.await;
    }));
    let resp = sender
        .send_request(request)
        .await
        .map_err(|e| e.to_string())?;
    let code = resp.status();
    let reason = resp
        .extensions()
        .get::<hyper::ext::ReasonPhrase>()
        .and_then(|r| std::str::from_utf8(r.as_bytes()).ok())
        .or_else(|| code.canonical_reason())
        .unwrap_or_default();
    let status_line = if reason.is_empty() {
        code.as_u16().to_string()
    } else {
        format!("{} {reason}", code.as_u16())
    };
    let location = resp
        .headers()
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let mut tail = TailBuf::new(max);
    let mut incoming = resp.into_body();
    while let Some(frame) = incoming.frame().await {
        let frame = frame.map_err(|e| format!("reading body: {e}"))?;
        if let Some(data) = frame.data_ref() {
            tail.push(data);
        }
    }
    Ok(Fetched {
        code,
        status_line,
        location,
        body: tail,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::body::Incoming;
    use hyper::service::service_fn;
    use hyper::Response;
    use std::convert::Infallible;
    use std::error::Error;
    use std::net::SocketAddr;
    use std::time::Instant;
    use tokio::net::TcpListener;

    type TestResult = Result<(), Box<dyn Error>>;

    fn reply(code: u16, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
        let mut r = Response::new(Full::new(body.into()));
        *r.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        r
    }

    fn redirect(code: u16, to: &str) -> Response<Full<Bytes>> {
        let mut r = reply(code, "");
        if let Ok(v) = to.parse() {
            r.headers_mut().insert(LOCATION, v);
        }
        r
    }

    async fn route(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
        let path = req.uri().path().to_string();
        let resp = match path.as_str() {
            "/ok" => reply(200, "all good"),
            "/created" => reply(201, ""),
            "/busy" => reply(429, "slow down"),
            "/fail" => reply(500, "boom"),
            "/slow" => {
                tokio::time::sleep(Duration::from_secs(3)).await;
                reply(200, "late")
            }
            "/big" => reply(200, format!("{}END", "x".repeat(5000))),
            "/redirect" => redirect(302, "/ok"),
            "/relative/start" => redirect(307, "next"),
            "/relative/next" => reply(200, "relative ok"),
            "/post-redirect" => redirect(303, "/echo"),
            "/loop" => redirect(302, "/loop"),
            "/echo" => {
                let h = |n: &str| {
                    req.headers()
                        .get(n)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("-")
                        .to_string()
                };
                let line = format!(
                    "{} ua={} conn={} host={} x={}",
                    req.method(),
                    h("user-agent"),
                    h("connection"),
                    h("host"),
                    h("x-test"),
                );
                let body = req
                    .into_body()
                    .collect()
                    .await
                    .map(|c| c.to_bytes())
                    .unwrap_or_default();
                reply(
                    200,
                    format!("{line} body={}", String::from_utf8_lossy(&body)),
                )
            }
            _ => reply(404, "not found"),
        };
        Ok(resp)
    }

    async fn server() -> Result<SocketAddr, Box<dyn Error>> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service_fn(route))
                        .await;
                });
            }
        });
        Ok(addr)
    }

    struct Spec {
        url: String,
        method: String,
        header: BTreeMap<String, Vec<String>>,
        body: String,
        disable_redirects: bool,
        tls_server_name: String,
        tls_skip_verify: bool,
    }

    fn get(url: String) -> Spec {
        Spec {
            url,
            method: String::new(),
            header: BTreeMap::new(),
            body: String::new(),
            disable_redirects: false,
            tls_server_name: String::new(),
            tls_skip_verify: false,
        }
    }

    async fn check(spec: &Spec, timeout: Duration, max: usize) -> CheckResult {
        let req = HttpRequest {
            url: &spec.url,
            method: &spec.method,
            header: &spec.header,
            body: &spec.body,
            disable_redirects: spec.disable_redirects,
            tls_server_name: &spec.tls_server_name,
            tls_skip_verify: spec.tls_skip_verify,
        };
        run(&req, timeout, max).await
    }

    async fn tls_server() -> Result<SocketAddr, Box<dyn Error>> {
        let acceptor = crate::checks::tls::testing::acceptor(b"http/1.1")?;
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    if let Ok(tls) = acceptor.accept(stream).await {
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(tls), service_fn(route))
                            .await;
                    }
                });
            }
        });
        Ok(addr)
    }

    const T: Duration = Duration::from_secs(5);

    #[tokio::test]
    async fn https_with_skip_verify_and_verification() -> TestResult {
        let addr = tls_server().await?;
        let url = format!("https://{addr}/ok");
        let mut spec = get(url.clone());
        spec.tls_skip_verify = true;
        assert_eq!(
            check(&spec, T, 4096).await,
            CheckResult::passing(format!("HTTP GET {url}: 200 OK Output: all good"))
        );
        // Verified against the system roots, the test CA is unknown.
        spec.tls_skip_verify = false;
        let r = check(&spec, T, 4096).await;
        assert_eq!(r.status, Status::Critical);
        assert!(r.output.contains("certificate"), "{}", r.output);
        spec.tls_server_name = "bad name!".into();
        let r = check(&spec, T, 4096).await;
        assert!(r.output.contains("invalid TLS server name"), "{}", r.output);
        Ok(())
    }

    #[tokio::test]
    async fn http_status_mapping() -> TestResult {
        let addr = server().await?;
        let url = format!("http://{addr}/ok");
        let r = check(&get(url.clone()), T, 4096).await;
        assert_eq!(
            r,
            CheckResult::passing(format!("HTTP GET {url}: 200 OK Output: all good"))
        );
        let r = check(&get(format!("http://{addr}/created")), T, 4096).await;
        assert_eq!(r.status, Status::Passing);
        let url = format!("http://{addr}/busy");
        let r = check(&get(url.clone()), T, 4096).await;
        assert_eq!(r.status, Status::Warning);
        assert_eq!(
            r.output,
            format!("HTTP GET {url}: 429 Too Many Requests Output: slow down")
        );
        let r = check(&get(format!("http://{addr}/fail")), T, 4096).await;
        assert_eq!(r.status, Status::Critical);
        assert!(r
            .output
            .ends_with(": 500 Internal Server Error Output: boom"));
        let r = check(&get(format!("http://{addr}/missing")), T, 4096).await;
        assert_eq!(r.status, Status::Critical);
        Ok(())
    }

    #[tokio::test]
    async fn http_slow_server_times_out() -> TestResult {
        let addr = server().await?;
        let url = format!("http://{addr}/slow");
        let start = Instant::now();
        let r = check(&get(url.clone()), Duration::from_millis(200), 4096).await;
        assert_eq!(
            r,
            CheckResult::critical(format!("HTTP GET {url}: request timed out (200ms)"))
        );
        assert!(start.elapsed() < Duration::from_secs(2));
        Ok(())
    }

    #[tokio::test]
    async fn http_sends_method_headers_body_and_no_keepalive() -> TestResult {
        let addr = server().await?;
        let mut spec = get(format!("http://{addr}/echo"));
        spec.method = "POST".into();
        spec.body = "payload".into();
        spec.header.insert("X-Test".into(), vec!["yes".into()]);
        let r = check(&spec, T, 4096).await;
        assert_eq!(r.status, Status::Passing);
        assert!(
            r.output.ends_with(&format!(
                "Output: POST ua=Consul Health Check conn=close host={addr} x=yes body=payload"
            )),
            "{}",
            r.output
        );
        spec.header
            .insert("Host".into(), vec!["example.test".into()]);
        let r = check(&spec, T, 4096).await;
        assert!(r.output.contains("host=example.test "), "{}", r.output);
        Ok(())
    }

    #[tokio::test]
    async fn http_follows_redirects() -> TestResult {
        let addr = server().await?;
        let url = format!("http://{addr}/redirect");
        let r = check(&get(url.clone()), T, 4096).await;
        assert_eq!(
            r,
            CheckResult::passing(format!("HTTP GET {url}: 200 OK Output: all good"))
        );
        let r = check(&get(format!("http://{addr}/relative/start")), T, 4096).await;
        assert!(r.output.ends_with("Output: relative ok"), "{}", r.output);
        // 303 turns a POST into a bodiless GET.
        let mut spec = get(format!("http://{addr}/post-redirect"));
        spec.method = "POST".into();
        spec.body = "payload".into();
        let r = check(&spec, T, 4096).await;
        assert!(r.output.contains("Output: GET "), "{}", r.output);
        assert!(r.output.ends_with(" body="), "{}", r.output);
        // A loop gives up after 10.
        let r = check(&get(format!("http://{addr}/loop")), T, 4096).await;
        assert_eq!(r.status, Status::Critical);
        assert!(
            r.output.ends_with(": stopped after 10 redirects"),
            "{}",
            r.output
        );
        // Disabled: the 302 itself is the answer, and it is not 2xx.
        let mut spec = get(url.clone());
        spec.disable_redirects = true;
        let r = check(&spec, T, 4096).await;
        assert_eq!(
            r,
            CheckResult::critical(format!("HTTP GET {url}: 302 Found Output: "))
        );
        Ok(())
    }

    #[tokio::test]
    async fn http_output_keeps_body_tail() -> TestResult {
        let addr = server().await?;
        let url = format!("http://{addr}/big");
        let r = check(&get(url.clone()), T, 10).await;
        assert_eq!(
            r,
            CheckResult::passing(format!("HTTP GET {url}: 200 OK Output: xxxxxxxEND"))
        );
        Ok(())
    }

    #[tokio::test]
    async fn http_errors_are_critical() -> TestResult {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        drop(listener);
        let url = format!("http://{addr}/ok");
        let r = check(&get(url.clone()), T, 4096).await;
        assert_eq!(r.status, Status::Critical);
        assert!(
            r.output
                .starts_with(&format!("HTTP GET {url}: dial tcp {addr}: ")),
            "{}",
            r.output
        );
        for bad in ["", "not a url", "ftp://x/", "http://"] {
            let r = check(&get(bad.into()), T, 4096).await;
            assert_eq!(r.status, Status::Critical, "{bad}");
        }
        let live = server().await?;
        let mut spec = get(format!("http://{live}/ok"));
        spec.method = "BAD METHOD".into();
        assert_eq!(check(&spec, T, 4096).await.status, Status::Critical);
        let mut spec = get(format!("http://{live}/ok"));
        spec.header.insert("bad header".into(), vec!["x".into()]);
        let r = check(&spec, T, 4096).await;
        assert_eq!(r.status, Status::Critical);
        assert!(r.output.contains("invalid request"), "{}", r.output);
        Ok(())
    }
}

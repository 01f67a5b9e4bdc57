//! gRPC health checks (`grpc.health.v1.Health/Check`) over h2c: the target
//! is `host:port[/service]`; the request `HealthCheckRequest{service}` and
//! the response `HealthCheckResponse{status}` are encoded by hand (two tiny
//! protobuf messages do not justify a codegen dependency). SERVING is
//! passing; any other serving status, a non-zero `grpc-status`, or a
//! transport error is critical.
//!
//! With `GRPCUseTLS` the connection goes through [`super::tls`] (ALPN `h2`,
//! server verified against the system roots under the target's host name).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{CONTENT_TYPE, TE, USER_AGENT};
use hyper::{HeaderMap, Method, Request, Uri};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::ClientConfig;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use super::{AbortOnDrop, CheckResult};

/// The health method's path.
const PATH: &str = "/grpc.health.v1.Health/Check";

/// `ServingStatus.SERVING`.
const SERVING: u64 = 1;

/// Largest response accepted (a health response is a few bytes).
const MAX_RESPONSE: usize = 64 * 1024;

/// Run the check once.
pub(super) async fn run(target: &str, use_tls: bool, timeout: Duration) -> CheckResult {
    let (addr, service) = target.split_once('/').unwrap_or((target, ""));
    let tls = if use_tls {
        match super::tls::client_config(false) {
            Ok(config) => Some(config),
            Err(e) => return CheckResult::critical(format!("gRPC check {target}: failed: {e}")),
        }
    } else {
        None
    };
    match tokio::time::timeout(timeout, health(addr, service, tls)).await {
        Ok(Ok(SERVING)) => CheckResult::passing(format!("gRPC check {target}: success")),
        Ok(Ok(status)) => CheckResult::critical(format!(
            "gRPC check {target}: failed: service status {}",
            serving_status_name(status)
        )),
        Ok(Err(e)) => CheckResult::critical(format!("gRPC check {target}: failed: {e}")),
        Err(_) => CheckResult::critical(format!(
            "gRPC check {target}: failed: timed out ({})",
            muster_engine::duration::format(timeout)
        )),
    }
}

/// Call Check and return the serving status.
async fn health(addr: &str, service: &str, tls: Option<Arc<ClientConfig>>) -> Result<u64, String> {
    let scheme = if tls.is_some() { "https" } else { "http" };
    let uri: Uri = format!("{scheme}://{addr}{PATH}")
        .parse()
        .map_err(|e| format!("invalid target {addr:?}: {e}"))?;
    let request = Request::builder()
        .method(Method::POST)
        .uri(uri.clone())
        .header(CONTENT_TYPE, "application/grpc")
        .header(TE, "trailers")
        .header(USER_AGENT, "Consul Health Check")
        .body(Full::new(Bytes::from(frame(&encode_request(service)))))
        .map_err(|e| format!("invalid request: {e}"))?;
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("dial tcp {addr}: {e}"))?;
    if let Some(config) = tls {
        let host = uri
            .host()
            .unwrap_or_default()
            .trim_start_matches('[')
            .trim_end_matches(']');
        let stream = super::tls::connect(config, stream, host, b"h2").await?;
        call(stream, request).await
    } else {
        call(stream, request).await
    }
}

/// Send the request over `io` with HTTP/2 and decode the answer.
async fn call<I>(io: I, request: Request<Full<Bytes>>) -> Result<u64, String>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(io))
            .await
            .map_err(|e| e.to_string())?;
    let _conn = AbortOnDrop(tokio::spawn(async move {
        let _ = conn.await;
    }));
    let resp = sender
        .send_request(request)
        .await
        .map_err(|e| e.to_string())?;
    if !resp.status().is_success() {
        return Err(format!("HTTP status {}", resp.status()));
    }
    let headers = resp.headers().clone();
    // A trailers-only response carries grpc-status in the headers.
    check_grpc_status(&headers)?;
    let collected = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("reading response: {e}"))?;
    if let Some(trailers) = collected.trailers() {
        check_grpc_status(trailers)?;
    } else if headers.get("grpc-status").is_none() {
        return Err("response without grpc-status".into());
    }
    let data = collected.to_bytes();
    if data.len() > MAX_RESPONSE {
        return Err("response too large".into());
    }
    let message = unframe(&data)?;
    decode_response(message)
}

/// Err for a present, non-zero `grpc-status`.
fn check_grpc_status(headers: &HeaderMap) -> Result<(), String> {
    let Some(value) = headers.get("grpc-status") else {
        return Ok(());
    };
    let code = value
        .to_str()
        .ok()
        .and_then(|s| s.parse::<u32>().ok())
        .ok_or("invalid grpc-status")?;
    if code == 0 {
        return Ok(());
    }
    let message = headers
        .get("grpc-message")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    Err(format!(
        "rpc error: code = {} desc = {message}",
        code_name(code)
    ))
}

/// `HealthCheckRequest{service = 1}`; proto3 omits an empty string.
fn encode_request(service: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(service.len() + 6);
    if !service.is_empty() {
        out.push(0x0a); // field 1, wire type 2
        put_varint(&mut out, u64::try_from(service.len()).unwrap_or(u64::MAX));
        out.extend_from_slice(service.as_bytes());
    }
    out
}

/// A gRPC message frame: uncompressed flag, big-endian length, message.
fn frame(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + 5);
    out.push(0);
    out.extend_from_slice(
        &u32::try_from(message.len())
            .unwrap_or(u32::MAX)
            .to_be_bytes(),
    );
    out.extend_from_slice(message);
    out
}

/// The first message of a framed body.
fn unframe(data: &[u8]) -> Result<&[u8], String> {
    let (&flag, rest) = data.split_first().ok_or("empty response")?;
    if flag != 0 {
        return Err("compressed response not supported".into());
    }
    let len_bytes: [u8; 4] = rest
        .get(..4)
        .and_then(|b| b.try_into().ok())
        .ok_or("truncated response frame")?;
    let len = usize::try_from(u32::from_be_bytes(len_bytes)).map_err(|e| e.to_string())?;
    rest.get(4..)
        .and_then(|m| m.get(..len))
        .ok_or_else(|| "truncated response message".to_string())
}

/// `HealthCheckResponse.status` (field 1, varint; absent = 0 UNKNOWN).
/// Unknown fields are skipped.
fn decode_response(mut msg: &[u8]) -> Result<u64, String> {
    let mut status = 0;
    while !msg.is_empty() {
        let key = get_varint(&mut msg)?;
        match (key >> 3, key & 7) {
            (1, 0) => status = get_varint(&mut msg)?,
            (_, 0) => {
                get_varint(&mut msg)?;
            }
            (_, 1) => msg = msg.get(8..).ok_or("truncated fixed64")?,
            (_, 5) => msg = msg.get(4..).ok_or("truncated fixed32")?,
            (_, 2) => {
                let len = usize::try_from(get_varint(&mut msg)?).map_err(|e| e.to_string())?;
                msg = msg.get(len..).ok_or("truncated field")?;
            }
            (_, wire) => return Err(format!("bad wire type {wire} in response")),
        }
    }
    Ok(status)
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn get_varint(buf: &mut &[u8]) -> Result<u64, String> {
    let mut v: u64 = 0;
    for shift in (0..64).step_by(7) {
        let (&b, rest) = buf.split_first().ok_or("truncated varint")?;
        *buf = rest;
        v |= u64::from(b & 0x7f) << shift;
        if b < 0x80 {
            return Ok(v);
        }
    }
    Err("varint too long".into())
}

fn serving_status_name(status: u64) -> String {
    match status {
        0 => "UNKNOWN".into(),
        1 => "SERVING".into(),
        2 => "NOT_SERVING".into(),
        3 => "SERVICE_UNKNOWN".into(),
        n => n.to_string(),
    }
}

fn code_name(code: u32) -> String {
    const NAMES: [&str; 17] = [
        "OK",
        "Canceled",
        "Unknown",
        "InvalidArgument",
        "DeadlineExceeded",
        "NotFound",
        "AlreadyExists",
        "PermissionDenied",
        "ResourceExhausted",
        "FailedPrecondition",
        "Aborted",
        "OutOfRange",
        "Unimplemented",
        "Internal",
        "Unavailable",
        "DataLoss",
        "Unauthenticated",
    ];
    usize::try_from(code)
        .ok()
        .and_then(|i| NAMES.get(i))
        .map_or_else(|| format!("Code({code})"), |s| (*s).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::combinators::BoxBody;
    use hyper::body::Incoming;
    use hyper::header::HeaderValue;
    use hyper::service::service_fn;
    use hyper::Response;
    use muster_engine::Status;
    use std::convert::Infallible;
    use std::error::Error;
    use tokio::net::TcpListener;

    type TestResult = Result<(), Box<dyn Error>>;
    type Body = BoxBody<Bytes, Infallible>;

    /// Decode `HealthCheckRequest.service` (test side of the wire).
    fn decode_service(mut msg: &[u8]) -> Option<String> {
        let mut service = String::new();
        while !msg.is_empty() {
            let key = get_varint(&mut msg).ok()?;
            if key != 0x0a {
                return None;
            }
            let len = usize::try_from(get_varint(&mut msg).ok()?).ok()?;
            service = String::from_utf8(msg.get(..len)?.to_vec()).ok()?;
            msg = msg.get(len..)?;
        }
        Some(service)
    }

    fn grpc_reply(message: Option<Vec<u8>>, status: u32, msg: &str) -> Response<Body> {
        let data = message.map(|m| frame(&m)).unwrap_or_default();
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", HeaderValue::from(status));
        if let Ok(v) = HeaderValue::from_str(msg) {
            trailers.insert("grpc-message", v);
        }
        let body = Full::new(Bytes::from(data))
            .with_trailers(async move { Some(Ok(trailers)) })
            .boxed();
        let mut resp = Response::new(body);
        resp.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
        resp
    }

    async fn health_service(req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
        let ok_path = req.uri().path() == PATH;
        let body = req
            .into_body()
            .collect()
            .await
            .map(|c| c.to_bytes())
            .unwrap_or_default();
        let service = unframe(&body).ok().and_then(decode_service);
        Ok(match (ok_path, service.as_deref()) {
            (false, _) => grpc_reply(None, 12, "unknown method"),
            (true, Some("")) | (true, Some("web")) => {
                // status SERVING plus an unknown field, which must be skipped.
                grpc_reply(Some(vec![0x08, 0x01, 0x12, 0x01, b'x']), 0, "")
            }
            (true, Some("bad")) => grpc_reply(Some(vec![0x08, 0x02]), 0, ""),
            (true, Some("slow")) => {
                tokio::time::sleep(Duration::from_secs(3)).await;
                grpc_reply(Some(vec![0x08, 0x01]), 0, "")
            }
            (true, _) => grpc_reply(None, 5, "unknown service"),
        })
    }

    async fn server() -> Result<String, Box<dyn Error>> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?.to_string();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service_fn(health_service))
                        .await;
                });
            }
        });
        Ok(addr)
    }

    async fn tls_server() -> Result<String, Box<dyn Error>> {
        let acceptor = crate::checks::tls::testing::acceptor(b"h2")?;
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?.to_string();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    if let Ok(tls) = acceptor.accept(stream).await {
                        let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                            .serve_connection(TokioIo::new(tls), service_fn(health_service))
                            .await;
                    }
                });
            }
        });
        Ok(addr)
    }

    const T: Duration = Duration::from_secs(5);

    #[tokio::test]
    async fn grpc_over_tls() -> TestResult {
        let addr = tls_server().await?;
        // Verified against a CA the client trusts.
        let trusted = crate::checks::tls::testing::trusting_test_ca()?;
        assert_eq!(health(&addr, "", Some(trusted.clone())).await, Ok(SERVING));
        assert_eq!(health(&addr, "bad", Some(trusted)).await, Ok(2));
        // The check itself uses the system roots, which do not know the
        // test CA: refused.
        let r = run(&addr, true, T).await;
        assert_eq!(r.status, Status::Critical);
        assert!(r.output.contains("certificate"), "{}", r.output);
        Ok(())
    }

    #[tokio::test]
    async fn grpc_serving_is_passing() -> TestResult {
        let addr = server().await?;
        assert_eq!(
            run(&addr, false, T).await,
            CheckResult::passing(format!("gRPC check {addr}: success"))
        );
        let target = format!("{addr}/web");
        assert_eq!(run(&target, false, T).await.status, Status::Passing);
        Ok(())
    }

    #[tokio::test]
    async fn grpc_not_serving_is_critical() -> TestResult {
        let addr = server().await?;
        let target = format!("{addr}/bad");
        assert_eq!(
            run(&target, false, T).await,
            CheckResult::critical(format!(
                "gRPC check {target}: failed: service status NOT_SERVING"
            ))
        );
        Ok(())
    }

    #[tokio::test]
    async fn grpc_error_status_is_critical() -> TestResult {
        let addr = server().await?;
        let target = format!("{addr}/nope");
        assert_eq!(
            run(&target, false, T).await,
            CheckResult::critical(format!(
                "gRPC check {target}: failed: rpc error: code = NotFound desc = unknown service"
            ))
        );
        Ok(())
    }

    #[tokio::test]
    async fn grpc_slow_closed_and_tls_are_critical() -> TestResult {
        let addr = server().await?;
        let r = run(&format!("{addr}/slow"), false, Duration::from_millis(200)).await;
        assert_eq!(r.status, Status::Critical);
        assert!(r.output.ends_with("timed out (200ms)"), "{}", r.output);
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let closed = listener.local_addr()?.to_string();
        drop(listener);
        assert_eq!(run(&closed, false, T).await.status, Status::Critical);
        // TLS towards a plaintext server fails the handshake.
        let r = run(&addr, true, T).await;
        assert_eq!(r.status, Status::Critical);
        assert!(r.output.contains("TLS handshake"), "{}", r.output);
        assert_eq!(run("", false, T).await.status, Status::Critical);
        Ok(())
    }

    #[test]
    fn grpc_codec_round_trips_and_rejects_garbage() {
        let req = encode_request("svc");
        assert_eq!(req, vec![0x0a, 3, b's', b'v', b'c']);
        assert!(encode_request("").is_empty());
        assert_eq!(unframe(&frame(&req)), Ok(req.as_slice()));
        assert_eq!(decode_response(&[0x08, 0x01]), Ok(1));
        assert_eq!(decode_response(&[]), Ok(0));
        assert!(decode_response(&[0x08]).is_err());
        assert!(decode_response(&[0x0b]).is_err());
        assert!(decode_response(&[0x12, 0x05, 0x00]).is_err());
        assert!(decode_response(&[0xff; 11]).is_err());
        assert!(unframe(&[0, 0, 0, 0, 9, 1]).is_err());
        assert!(unframe(&[1, 0, 0, 0, 0]).is_err());
        assert!(unframe(&[]).is_err());
    }
}

//! Docker checks: run a command inside a container through the Docker
//! Engine API (on `$DOCKER_HOST`, `unix://` or `tcp://`, default the local
//! unix socket): `POST /containers/{id}/exec`, then `POST /exec/{id}/start`
//! whose body is the multiplexed stdout/stderr stream (8-byte frame
//! headers), then `GET /exec/{id}/json` for `ExitCode`, mapped as scripts
//! are: 0 passing, 1 warning, else critical.
//!
//! A single `args` element is a script run as `[shell, "-c", script]`
//! (shell default `/bin/sh`); several elements are the argv itself. Output
//! keeps the tail like scripts do. The whole exchange is bounded by the
//! timeout (`Timed out (<t>) running check`); the exec itself is not killed
//! in the container, since the Engine API has no call for that.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{CONTENT_TYPE, HOST, USER_AGENT};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use super::{timed_out, AbortOnDrop, CheckResult, TailBuf};

/// Shell used when the definition gives none.
const DEFAULT_SHELL: &str = "/bin/sh";

/// Largest JSON answer read from the Engine API.
const MAX_JSON: usize = 1024 * 1024;

/// How often `GET /exec/{id}/json` is retried while the exec still runs.
const INSPECT_POLL: Duration = Duration::from_millis(50);

/// Where the Engine API listens.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Endpoint {
    /// A unix socket path.
    Unix(String),
    /// `host:port`.
    Tcp(String),
}

fn parse_host(host: &str) -> Result<Endpoint, String> {
    if let Some(path) = host.strip_prefix("unix://") {
        Ok(Endpoint::Unix(path.to_string()))
    } else if let Some(addr) = host
        .strip_prefix("tcp://")
        .or_else(|| host.strip_prefix("http://"))
    {
        Ok(Endpoint::Tcp(addr.trim_end_matches('/').to_string()))
    } else if host.starts_with('/') {
        Ok(Endpoint::Unix(host.to_string()))
    } else {
        Err(format!("unsupported DOCKER_HOST {host:?}"))
    }
}

/// Run the check once.
pub(super) async fn run(
    docker_host: &str,
    container_id: &str,
    shell: &str,
    args: &[String],
    timeout: Duration,
    max: usize,
) -> CheckResult {
    let cmd: Vec<&str> = match args {
        [] => return CheckResult::critical("Failed to invoke check: no command given"),
        [script] => {
            let shell = if shell.is_empty() {
                DEFAULT_SHELL
            } else {
                shell
            };
            vec![shell, "-c", script.as_str()]
        }
        argv => argv.iter().map(String::as_str).collect(),
    };
    let valid_id = !container_id.is_empty()
        && container_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if !valid_id {
        return CheckResult::critical(format!("invalid container ID {container_id:?}"));
    }
    let endpoint = match parse_host(docker_host) {
        Ok(e) => e,
        Err(e) => return CheckResult::critical(e),
    };
    let mut output = TailBuf::new(max);
    let outcome =
        tokio::time::timeout(timeout, exec(&endpoint, container_id, &cmd, &mut output)).await;
    match outcome {
        Ok(Ok(code)) => CheckResult::from_exit_code(code, output.captured()),
        Ok(Err(e)) => CheckResult::critical(e),
        Err(_) => {
            let mut msg = timed_out(timeout);
            if !output.is_empty() {
                msg.push_str("\n\n");
                msg.push_str(&output.captured());
            }
            CheckResult::critical(msg)
        }
    }
}

/// Create, start and inspect the exec; returns its exit code.
async fn exec(
    endpoint: &Endpoint,
    container_id: &str,
    cmd: &[&str],
    output: &mut TailBuf,
) -> Result<Option<i64>, String> {
    let create = serde_json::json!({
        "AttachStdin": false,
        "AttachStdout": true,
        "AttachStderr": true,
        "Tty": false,
        "Cmd": cmd,
    });
    let (status, body) = call_json(
        endpoint,
        Method::POST,
        &format!("/containers/{container_id}/exec"),
        Some(create),
    )
    .await?;
    if !status.is_success() {
        return Err(api_error("create exec", status, &body));
    }
    let exec_id = body
        .get("Id")
        .and_then(|v| v.as_str())
        .filter(|id| id.bytes().all(|b| b.is_ascii_alphanumeric()) && !id.is_empty())
        .ok_or("create exec: no valid Id in the answer")?
        .to_string();

    let start = serde_json::json!({"Detach": false, "Tty": false});
    let mut demux = Demux::default();
    let status = call(
        endpoint,
        Method::POST,
        &format!("/exec/{exec_id}/start"),
        Some(start),
        &mut |data| demux.feed(data, output),
    )
    .await?;
    if !status.is_success() {
        return Err(format!("start exec: {status}"));
    }

    loop {
        let (status, body) = call_json(
            endpoint,
            Method::GET,
            &format!("/exec/{exec_id}/json"),
            None,
        )
        .await?;
        if !status.is_success() {
            return Err(api_error("inspect exec", status, &body));
        }
        let running = body
            .get("Running")
            .and_then(|v| v.as_bool())
            .unwrap_or(false);
        if !running {
            return Ok(body.get("ExitCode").and_then(|v| v.as_i64()));
        }
        tokio::time::sleep(INSPECT_POLL).await;
    }
}

/// `<what>: <status>: <message>` from a Docker error answer.
fn api_error(what: &str, status: StatusCode, body: &serde_json::Value) -> String {
    match body.get("message").and_then(|m| m.as_str()) {
        Some(m) => format!("{what}: {status}: {m}"),
        None => format!("{what}: {status}"),
    }
}

/// A request whose answer is JSON (`Null` if empty or not JSON).
async fn call_json(
    endpoint: &Endpoint,
    method: Method,
    path: &str,
    body: Option<serde_json::Value>,
) -> Result<(StatusCode, serde_json::Value), String> {
    let mut raw = Vec::new();
    let status = call(endpoint, method, path, body, &mut |data| {
        if raw.len() < MAX_JSON {
            raw.extend_from_slice(data);
        }
    })
    .await?;
    let value = serde_json::from_slice(&raw).unwrap_or(serde_json::Value::Null);
    Ok((status, value))
}

/// One request on a new connection; body chunks go to `sink`.
async fn call(
    endpoint: &Endpoint,
    method: Method,
    path: &str,
    body: Option<serde_json::Value>,
    sink: &mut (dyn FnMut(&[u8]) + Send),
) -> Result<StatusCode, String> {
    let bytes = match &body {
        Some(v) => Bytes::from(serde_json::to_vec(v).map_err(|e| e.to_string())?),
        None => Bytes::new(),
    };
    let mut builder = Request::builder()
        .method(method)
        .uri(path)
        .header(HOST, "docker")
        .header(USER_AGENT, "Consul Health Check");
    if body.is_some() {
        builder = builder.header(CONTENT_TYPE, "application/json");
    }
    let request = builder
        .body(Full::new(bytes))
        .map_err(|e| format!("invalid request: {e}"))?;
    match endpoint {
        #[cfg(unix)]
        Endpoint::Unix(socket) => {
            let stream = tokio::net::UnixStream::connect(socket)
                .await
                .map_err(|e| format!("connecting to Docker at {socket}: {e}"))?;
            exchange(stream, request, sink).await
        }
        #[cfg(not(unix))]
        Endpoint::Unix(_) => Err("unix sockets are not supported on this platform".into()),
        Endpoint::Tcp(addr) => {
            let stream = TcpStream::connect(addr.as_str())
                .await
                .map_err(|e| format!("connecting to Docker at {addr}: {e}"))?;
            exchange(stream, request, sink).await
        }
    }
}

async fn exchange<I>(
    io: I,
    request: Request<Full<Bytes>>,
    sink: &mut (dyn FnMut(&[u8]) + Send),
) -> Result<StatusCode, String>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| format!("Docker API: {e}"))?;
    let _conn = AbortOnDrop(tokio::spawn(async move {
        let _ = conn.await;
    }));
    let resp = sender
        .send_request(request)
        .await
        .map_err(|e| format!("Docker API: {e}"))?;
    let status = resp.status();
    let mut incoming = resp.into_body();
    while let Some(frame) = incoming.frame().await {
        let frame = frame.map_err(|e| format!("Docker API: reading answer: {e}"))?;
        if let Some(data) = frame.data_ref() {
            sink(data);
        }
    }
    Ok(status)
}

/// Splits Docker's multiplexed stream (`[stream, 0, 0, 0, len u32 BE]`
/// then `len` bytes), in whatever chunks it arrives; stdout and stderr
/// payloads both go to the output.
#[derive(Debug, Default)]
struct Demux {
    /// Bytes of the current frame header seen so far (< 8).
    header: Vec<u8>,
    /// Payload bytes still due for the current frame.
    remaining: usize,
}

impl Demux {
    fn feed(&mut self, mut data: &[u8], out: &mut TailBuf) {
        while !data.is_empty() {
            if self.remaining > 0 {
                let n = self.remaining.min(data.len());
                let (payload, rest) = data.split_at(n);
                out.push(payload);
                self.remaining -= n;
                data = rest;
            } else {
                let n = (8 - self.header.len()).min(data.len());
                let (part, rest) = data.split_at(n);
                self.header.extend_from_slice(part);
                data = rest;
                if let Some(len) = self.header.get(4..8) {
                    let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]);
                    self.remaining = usize::try_from(len).unwrap_or(usize::MAX);
                    self.header.clear();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::body::Incoming;
    use hyper::service::service_fn;
    use hyper::Response;
    use muster_engine::Status;
    use std::convert::Infallible;
    use std::error::Error;
    use tokio::net::UnixListener;

    type TestResult = Result<(), Box<dyn Error>>;

    fn reply(code: u16, body: Vec<u8>) -> Response<Full<Bytes>> {
        let mut r = Response::new(Full::new(Bytes::from(body)));
        *r.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        r
    }

    fn mux(stream: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![stream, 0, 0, 0];
        out.extend_from_slice(&u32::try_from(payload.len()).unwrap_or(0).to_be_bytes());
        out.extend_from_slice(payload);
        out
    }

    /// A fake Engine API: containers `ok`, `warn`, `crit`, `slow`, `big`;
    /// the exec ID is `x` + container name; the command is echoed back.
    async fn engine(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
        let method = req.method().clone();
        let path = req.uri().path().to_string();
        let body = req
            .into_body()
            .collect()
            .await
            .map(|c| c.to_bytes())
            .unwrap_or_default();
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        let parts: Vec<&str> = path.split('/').collect();
        let known = |c: &str| matches!(c, "ok" | "warn" | "crit" | "slow" | "big");
        let resp = match (method, parts.as_slice()) {
            (Method::POST, ["", "containers", c, "exec"]) if known(c) => {
                let attach = json["AttachStdout"] == true && json["AttachStderr"] == true;
                let cmd: Vec<String> = json["Cmd"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|v| v.as_str().map(String::from))
                            .collect()
                    })
                    .unwrap_or_default();
                // Remember the command in the exec ID's place: the test
                // server is stateless, so it is echoed back on start.
                let id = format!("x{c}x{}", hex(&cmd.join(" ")));
                if attach {
                    reply(
                        201,
                        serde_json::json!({ "Id": id }).to_string().into_bytes(),
                    )
                } else {
                    reply(400, b"{\"message\":\"not attached\"}".to_vec())
                }
            }
            (Method::POST, ["", "containers", c, "exec"]) => reply(
                404,
                format!("{{\"message\":\"No such container: {c}\"}}").into_bytes(),
            ),
            (Method::POST, ["", "exec", id, "start"]) if json["Detach"] == false => {
                let (container, cmd) = split_id(id);
                let mut out = match container.as_str() {
                    "big" => mux(1, &[b'y'; 10_000]),
                    _ => mux(1, format!("ran: {cmd}\n").as_bytes()),
                };
                out.extend(mux(2, b"to stderr\n"));
                if container == "slow" {
                    tokio::time::sleep(Duration::from_secs(3)).await;
                }
                reply(200, out)
            }
            (Method::GET, ["", "exec", id, "json"]) => {
                let code = match split_id(id).0.as_str() {
                    "warn" => 1,
                    "crit" => 2,
                    _ => 0,
                };
                reply(
                    200,
                    serde_json::json!({"Running": false, "ExitCode": code})
                        .to_string()
                        .into_bytes(),
                )
            }
            _ => reply(404, b"{\"message\":\"page not found\"}".to_vec()),
        };
        Ok(resp)
    }

    fn hex(s: &str) -> String {
        s.bytes().map(|b| format!("{b:02x}")).collect()
    }

    fn split_id(id: &str) -> (String, String) {
        let mut it = id.splitn(3, 'x').skip(1);
        let container = it.next().unwrap_or_default().to_string();
        let hexed = it.next().unwrap_or_default().as_bytes();
        let bytes: Vec<u8> = hexed
            .chunks(2)
            .filter_map(|p| u8::from_str_radix(std::str::from_utf8(p).ok()?, 16).ok())
            .collect();
        (container, String::from_utf8_lossy(&bytes).into_owned())
    }

    async fn server(dir: &tempfile::TempDir) -> Result<String, Box<dyn Error>> {
        let path = dir.path().join("docker.sock");
        let listener = UnixListener::bind(&path)?;
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service_fn(engine))
                        .await;
                });
            }
        });
        Ok(format!("unix://{}", path.display()))
    }

    const T: Duration = Duration::from_secs(5);

    fn script(s: &str) -> Vec<String> {
        vec![s.to_string()]
    }

    #[tokio::test]
    async fn docker_exit_codes_map_like_scripts() -> TestResult {
        let dir = tempfile::tempdir()?;
        let host = server(&dir).await?;
        let r = run(&host, "ok", "", &script("echo hi"), T, 4096).await;
        assert_eq!(
            r,
            CheckResult::passing("ran: /bin/sh -c echo hi\nto stderr\n")
        );
        let r = run(&host, "warn", "/bin/bash", &script("x"), T, 4096).await;
        assert_eq!(r.status, Status::Warning);
        assert_eq!(r.output, "ran: /bin/bash -c x\nto stderr\n");
        let argv = vec!["/check".to_string(), "--fast".to_string()];
        let r = run(&host, "crit", "", &argv, T, 4096).await;
        assert_eq!(r.status, Status::Critical);
        assert_eq!(r.output, "ran: /check --fast\nto stderr\n");
        Ok(())
    }

    #[tokio::test]
    async fn docker_output_keeps_tail() -> TestResult {
        let dir = tempfile::tempdir()?;
        let host = server(&dir).await?;
        let r = run(&host, "big", "", &script("x"), T, 12).await;
        assert_eq!(
            r,
            CheckResult::passing("Captured 12 of 10010 bytes\n...\nyyto stderr\n")
        );
        Ok(())
    }

    #[tokio::test]
    async fn docker_errors_are_critical() -> TestResult {
        let dir = tempfile::tempdir()?;
        let host = server(&dir).await?;
        let r = run(&host, "nope", "", &script("x"), T, 4096).await;
        assert_eq!(
            r,
            CheckResult::critical("create exec: 404 Not Found: No such container: nope")
        );
        let r = run(
            &host,
            "slow",
            "",
            &script("x"),
            Duration::from_millis(200),
            4096,
        )
        .await;
        assert_eq!(r, CheckResult::critical("Timed out (200ms) running check"));
        let missing = format!("unix://{}", dir.path().join("absent.sock").display());
        let r = run(&missing, "ok", "", &script("x"), T, 4096).await;
        assert_eq!(r.status, Status::Critical);
        assert!(
            r.output.starts_with("connecting to Docker at "),
            "{}",
            r.output
        );
        for (h, c, a) in [
            ("ftp://x", "ok", script("x")),
            (host.as_str(), "../etc", script("x")),
            (host.as_str(), "", script("x")),
            (host.as_str(), "ok", vec![]),
        ] {
            assert_eq!(run(h, c, "", &a, T, 4096).await.status, Status::Critical);
        }
        Ok(())
    }

    #[test]
    fn docker_demux_handles_any_chunking() {
        let mut stream = mux(1, b"hello ");
        stream.extend(mux(2, b""));
        stream.extend(mux(2, b"world"));
        for chunk in 1..stream.len() {
            let mut d = Demux::default();
            let mut out = TailBuf::new(100);
            for c in stream.chunks(chunk) {
                d.feed(c, &mut out);
            }
            assert_eq!(out.captured(), "hello world");
        }
    }

    #[test]
    fn docker_host_parsing() {
        assert_eq!(
            parse_host("unix:///var/run/docker.sock"),
            Ok(Endpoint::Unix("/var/run/docker.sock".into()))
        );
        assert_eq!(
            parse_host("tcp://127.0.0.1:2375"),
            Ok(Endpoint::Tcp("127.0.0.1:2375".into()))
        );
        assert!(parse_host("npipe:////./pipe/docker_engine").is_err());
    }
}

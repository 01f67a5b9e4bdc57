//! Running a watch's handler once: a script (a shell command line or a
//! program with its arguments) with the result's JSON on its stdin and
//! `CONSUL_INDEX` in its environment, or an HTTP request carrying the JSON
//! with `X-Consul-Index`, as Consul's `consul watch` and agent watch
//! handlers do.
//!
//! A run is awaited to its end (the next change waits for it). If the run
//! is cancelled (the watch stops), a script still running gets SIGTERM.
//! What a failure means (stop `muster watch`, or log and go on in the
//! agent) is the caller's decision.

use std::fmt;
use std::os::unix::process::ExitStatusExt;
use std::process::{ExitStatus, Stdio};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client as LegacyClient;
use hyper_util::rt::TokioExecutor;
use rustix::process::{Pid, Signal};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use super::spec::{HttpTarget, Script};

/// How much of a handler's output is kept for the log (Consul's
/// `WatchBufSize`): the last 4 KiB.
pub const OUTPUT_TAIL: usize = 4 * 1024;

/// Why a script run failed.
#[derive(Debug)]
pub enum ScriptError {
    /// The command could not be started.
    Start(std::io::Error),
    /// It ran and failed, in Go's words (`exit status 2`, `signal: killed`).
    Failed(String),
}

impl fmt::Display for ScriptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ScriptError::Start(err) => write!(f, "{err}"),
            ScriptError::Failed(how) => f.write_str(how),
        }
    }
}

impl fmt::Display for Script {
    /// As Consul logs a handler: the string, or `[prog arg ...]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Script::Shell(line) => f.write_str(line),
            Script::Args(args) => {
                let words: Vec<_> = args.iter().map(|a| a.to_string_lossy()).collect();
                write!(f, "[{}]", words.join(" "))
            }
        }
    }
}

/// Where a script's stdout and stderr go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// This process's own (`muster watch`).
    Inherit,
    /// Captured, the last [`OUTPUT_TAIL`] bytes returned (the agent logs
    /// them).
    Capture,
}

/// Run `script` with `input` (the JSON, newline-terminated) on its stdin
/// and `CONSUL_INDEX=index`; wait for it. Returns the captured output
/// (empty with [`Output::Inherit`]) whether it succeeded or not.
pub async fn run_script(
    script: &Script,
    index: u64,
    input: &str,
    output: Output,
) -> (Result<(), ScriptError>, String) {
    let mut cmd = match script {
        Script::Shell(line) => {
            let mut cmd = tokio::process::Command::new(shell());
            cmd.arg("-c").arg(line);
            cmd
        }
        Script::Args(args) => {
            let Some((program, rest)) = args.split_first() else {
                let err = std::io::Error::new(std::io::ErrorKind::InvalidInput, "empty command");
                return (Err(ScriptError::Start(err)), String::new());
            };
            let mut cmd = tokio::process::Command::new(program);
            cmd.args(rest);
            cmd
        }
    };
    cmd.env("CONSUL_INDEX", index.to_string())
        .stdin(Stdio::piped());
    let (out, err) = match output {
        Output::Inherit => (Stdio::inherit(), Stdio::inherit()),
        Output::Capture => (Stdio::piped(), Stdio::piped()),
    };
    cmd.stdout(out).stderr(err);
    let mut child = match cmd.spawn() {
        Ok(child) => child,
        Err(err) => return (Err(ScriptError::Start(err)), String::new()),
    };
    let mut guard = TermOnDrop(
        child
            .id()
            .and_then(|p| i32::try_from(p).ok())
            .and_then(Pid::from_raw),
    );
    let stdin = child.stdin.take();
    let feed = async move {
        if let Some(mut stdin) = stdin {
            // A handler that does not read its input is not an error.
            let _ = stdin.write_all(input.as_bytes()).await;
        }
    };
    let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
    let ((), out_tail, err_tail, status) =
        tokio::join!(feed, tail(stdout), tail(stderr), child.wait());
    guard.0 = None;
    let mut captured = out_tail;
    captured.extend(err_tail);
    let result = match status {
        Ok(status) if status.success() => Ok(()),
        Ok(status) => Err(ScriptError::Failed(describe(status))),
        Err(err) => Err(ScriptError::Failed(err.to_string())),
    };
    (result, captured.text())
}

/// Sends SIGTERM to a child that has not been reaped yet when dropped (a
/// cancelled run): Consul forwards the signal that stops the watch.
struct TermOnDrop(Option<Pid>);

impl Drop for TermOnDrop {
    fn drop(&mut self) {
        if let Some(pid) = self.0 {
            // Not reaped yet, so the pid is still this child's.
            let _ = rustix::process::kill_process(pid, Signal::TERM);
        }
    }
}

/// `$SHELL`, else `/bin/sh` (Consul's `exec.Script`).
fn shell() -> String {
    std::env::var("SHELL")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "/bin/sh".to_string())
}

/// Go's `exec.ExitError` text: `exit status 1`, `signal: terminated`.
fn describe(status: ExitStatus) -> String {
    if let Some(code) = status.code() {
        return format!("exit status {code}");
    }
    let name = match status.signal() {
        Some(1) => "hangup".to_string(),
        Some(2) => "interrupt".to_string(),
        Some(6) => "aborted".to_string(),
        Some(9) => "killed".to_string(),
        Some(11) => "segmentation fault".to_string(),
        Some(13) => "broken pipe".to_string(),
        Some(15) => "terminated".to_string(),
        Some(sig) => format!("signal {sig}"),
        None => "unknown".to_string(),
    };
    format!("signal: {name}")
}

/// The last [`OUTPUT_TAIL`] bytes of a stream, and how many there were.
#[derive(Debug, Default)]
struct Tail {
    /// The kept bytes.
    bytes: Vec<u8>,
    /// Everything read.
    total: usize,
}

impl Tail {
    fn push(&mut self, chunk: &[u8]) {
        self.total += chunk.len();
        self.bytes.extend_from_slice(chunk);
        if self.bytes.len() > OUTPUT_TAIL {
            let cut = self.bytes.len() - OUTPUT_TAIL;
            self.bytes.drain(..cut);
        }
    }

    fn extend(&mut self, other: Tail) {
        self.push(&other.bytes);
        self.total += other.total - other.bytes.len();
    }

    /// The text, with Consul's note when output was cut.
    fn text(&self) -> String {
        let kept = String::from_utf8_lossy(&self.bytes);
        if self.total > self.bytes.len() {
            format!(
                "Captured {} of {} bytes\n...\n{kept}",
                self.bytes.len(),
                self.total
            )
        } else {
            kept.into_owned()
        }
    }
}

/// Read `stream` to its end, keeping its tail.
async fn tail(stream: Option<impl AsyncRead + Unpin>) -> Tail {
    let mut kept = Tail::default();
    let Some(mut stream) = stream else {
        return kept;
    };
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return kept,
            Ok(n) => kept.push(buf.get(..n).unwrap_or_default()),
        }
    }
}

/// What an HTTP handler's target answered.
#[derive(Debug)]
pub struct HttpReply {
    /// Go's `resp.Status`: `200 OK`.
    pub status: String,
    /// Whether the status is 2xx.
    pub success: bool,
    /// The body's tail, as for scripts.
    pub output: String,
}

/// Send `body` (the JSON, newline-terminated) to `target` with
/// `Content-Type: application/json`, `X-Consul-Index` and the configured
/// headers, within the target's timeout. `Err` is a transport failure, as
/// one line.
pub async fn send_http(target: &HttpTarget, index: u64, body: String) -> Result<HttpReply, String> {
    let method = Method::from_bytes(target.method.as_bytes())
        .map_err(|e| format!("invalid method {:?}: {e}", target.method))?;
    let mut req = Request::builder()
        .method(method)
        .uri(&target.path)
        .header("Content-Type", "application/json")
        .header("X-Consul-Index", index.to_string());
    for (name, values) in &target.header {
        for value in values {
            req = req.header(name.as_str(), value.as_str());
        }
    }
    let req = req
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| format!("cannot build the request: {e}"))?;
    let client: LegacyClient<HttpConnector, Full<Bytes>> =
        LegacyClient::builder(TokioExecutor::new()).build(HttpConnector::new());
    let exchange = async {
        let resp = client.request(req).await.map_err(|e| chain(&e))?;
        let status = resp.status();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| chain(&e))?
            .to_bytes();
        let mut kept = Tail::default();
        kept.push(&body);
        Ok(HttpReply {
            status: format!(
                "{} {}",
                status.as_u16(),
                status.canonical_reason().unwrap_or_default()
            )
            .trim_end()
            .to_string(),
            success: status.is_success(),
            output: kept.text(),
        })
    };
    match tokio::time::timeout(target.timeout, exchange).await {
        Ok(result) => result,
        Err(_) => Err(format!(
            "no answer within {}",
            muster_engine::duration::format(target.timeout)
        )),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_statuses_read_as_go_prints_them() {
        assert_eq!(describe(ExitStatus::from_raw(3 << 8)), "exit status 3");
        assert_eq!(describe(ExitStatus::from_raw(15)), "signal: terminated");
    }

    #[test]
    fn output_keeps_the_last_bytes_and_says_so() {
        let mut t = Tail::default();
        t.push(&[b'a'; OUTPUT_TAIL]);
        t.push(b"end");
        let text = t.text();
        assert!(text.starts_with(&format!(
            "Captured {OUTPUT_TAIL} of {} bytes\n...\n",
            OUTPUT_TAIL + 3
        )));
        assert!(text.ends_with("aend"));
    }

    #[tokio::test]
    async fn scripts_get_the_json_on_stdin_and_the_index() {
        let script = Script::Shell("read line; echo \"$CONSUL_INDEX $line\"; exit 3".into());
        let (result, output) = run_script(&script, 42, "{\"a\":1}\n", Output::Capture).await;
        assert!(matches!(result, Err(ScriptError::Failed(ref s)) if s == "exit status 3"));
        assert_eq!(output, "42 {\"a\":1}\n");
        let missing = Script::Args(vec!["/nonexistent/handler".into()]);
        let (result, _) = run_script(&missing, 1, "null\n", Output::Capture).await;
        assert!(matches!(result, Err(ScriptError::Start(_))));
    }
}

//! The test harness: [`Agent`] runs the real `muster` binary as a child
//! process and [`Response`] / [`request`] are a tiny HTTP/1.1 client.
//!
//! An agent gets its own temporary directory (data and stderr log) and free
//! ports; the harness waits for the readiness line on stdout and parses the
//! HTTP address from it. Dropping an agent kills it with SIGKILL; if the test
//! is failing, the agent's log is printed first so the failure can be read.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// The path of the binary under test.
pub const MUSTER: &str = env!("CARGO_BIN_EXE_muster");

/// How long an agent may take to print its readiness line.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Read timeout of one test HTTP request (longer than any `wait` used).
const HTTP_TIMEOUT: Duration = Duration::from_secs(60);

/// The readiness line's prefix.
const READY_PREFIX: &str = "muster agent ready: ";

/// A free port on 127.0.0.1 (bound, then released), never one this test
/// process handed out before, and outside the kernel's ephemeral range
/// (32768 and up on Linux): an agent's own `-http-port 0` listener gets an
/// ephemeral port, which must never be one handed out here for another
/// listener (that race once failed a test). Free for UDP too (gossip and
/// DNS bind both).
pub fn free_port() -> u16 {
    /// The range handed out: below the ephemeral ports.
    const LOW: u16 = 20_000;
    const HIGH: u16 = 32_000;
    static NEXT: std::sync::Mutex<Option<u16>> = std::sync::Mutex::new(None);
    let mut next = NEXT.lock().unwrap_or_else(|p| p.into_inner());
    // Each test process starts somewhere else in the range.
    let start = u16::try_from(std::process::id() % u32::from(HIGH - LOW)).unwrap_or(0);
    let mut port = next.unwrap_or(LOW + start);
    for _ in 0..(HIGH - LOW) {
        port = if port + 1 >= HIGH { LOW } else { port + 1 };
        let tcp = TcpListener::bind(("127.0.0.1", port)).is_ok();
        let udp = std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok();
        if tcp && udp {
            *next = Some(port);
            return port;
        }
    }
    panic!("no free port in {LOW}..{HIGH}");
}

/// Poll `f` every 100 ms until it holds; panic naming `what` after
/// `within`. Returns how long it took.
pub fn wait_until<F: FnMut() -> bool>(what: &str, within: Duration, mut f: F) -> Duration {
    let start = std::time::Instant::now();
    while !f() {
        assert!(start.elapsed() < within, "{what}: not within {within:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    start.elapsed()
}

/// A `muster` command with the agent-address environment cleared, so tests
/// never reach an agent they did not start.
pub fn muster() -> Command {
    let mut cmd = Command::new(MUSTER);
    cmd.env_remove("CONSUL_HTTP_ADDR")
        .env_remove("MUSTER_HTTP_ADDR")
        .stdin(Stdio::null());
    cmd
}

/// A running `muster agent` child process.
pub struct Agent {
    /// The child, `None` while killed.
    child: Option<Child>,
    /// The HTTP address from the readiness line.
    pub addr: SocketAddr,
    /// The readiness line's fields (`node`, `datacenter`, `http`, `dns`,
    /// `data_dir`).
    pub ready: Vec<(String, String)>,
    /// The agent's arguments after `agent` (reused by `restart`).
    args: Vec<String>,
    /// Holds the data directory (durable agents) and the stderr log.
    dir: tempfile::TempDir,
    /// Where the agent's stderr goes (appended across restarts).
    log_path: PathBuf,
    /// A network namespace (from `ip netns add`) the agent runs in.
    netns: Option<String>,
}

impl Agent {
    /// `muster agent -dev -http-port 0`.
    pub fn dev() -> Agent {
        Agent::start(&["-dev"], false)
    }

    /// `muster agent -server -bootstrap -data-dir <tempdir>/data -http-port 0`.
    pub fn durable() -> Agent {
        Agent::start(&["-server", "-bootstrap"], true)
    }

    /// Start an agent with `args`, plus `-data-dir` when `durable`, `-http-port
    /// 0` and free server/DNS/gossip ports. Panics (with the agent's log) if
    /// it does not print its readiness line within 30 s.
    pub fn start(args: &[&str], durable: bool) -> Agent {
        Agent::launch(args, durable, None, None)
    }

    /// Like [`Agent::start`], also loading `config` (JSON) with
    /// `-config-file` from a file in the agent's own directory, so it is
    /// read again on `restart`.
    pub fn start_with_config(args: &[&str], durable: bool, config: &str) -> Agent {
        Agent::launch(args, durable, Some(config), None)
    }

    /// Like [`Agent::start`] (durable), inside the network namespace `ns`
    /// (`ip netns exec`); the namespace has its own ports, so the defaults
    /// are used except for HTTP (port 0, read from the readiness line);
    /// `config` is written to a config file when given.
    pub fn start_in_netns(ns: &str, args: &[&str], config: Option<&str>) -> Agent {
        Agent::launch(args, true, config, Some(ns))
    }

    fn launch(args: &[&str], durable: bool, config: Option<&str>, netns: Option<&str>) -> Agent {
        let dir = tempfile::Builder::new()
            .prefix("muster-test-")
            .tempdir()
            .expect("create a temp dir for the agent");
        let mut full: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let mut flag = |name: &str, value: String| {
            full.push(name.into());
            full.push(value);
        };
        if let Some(config) = config {
            let path = write_file(dir.path(), "config.json", config.as_bytes());
            flag("-config-file", path.display().to_string());
        }
        if durable {
            flag("-data-dir", dir.path().join("data").display().to_string());
        }
        // Port 0 unless the test fixed one (to keep it across restarts).
        if !args.contains(&"-http-port") {
            flag("-http-port", "0".into());
        }
        // Loopback unless the test chose: without -bind an agent binds
        // 0.0.0.0 and advertises the host's private address, as Consul's.
        let chose_bind = args.contains(&"-bind")
            || args.contains(&"-dev")
            || config.is_some_and(|c| c.contains("bind_addr"));
        if netns.is_none() && !chose_bind {
            flag("-bind", "127.0.0.1".into());
        }
        if netns.is_none() {
            for name in [
                "-server-port",
                "-dns-port",
                "-serf-lan-port",
                "-serf-wan-port",
            ] {
                flag(name, free_port().to_string());
            }
        }
        let log_path = dir.path().join("agent.log");
        let mut agent = Agent {
            child: None,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            ready: Vec::new(),
            args: full,
            dir,
            log_path,
            netns: netns.map(str::to_string),
        };
        agent.spawn();
        agent
    }

    /// The value of a flag the agent was started with (e.g. its
    /// `-serf-lan-port`).
    pub fn flag(&self, name: &str) -> Option<&str> {
        let i = self.args.iter().position(|a| a == name)?;
        self.args.get(i + 1).map(String::as_str)
    }

    /// The durable data directory (`<tempdir>/data`).
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// One field of the readiness line.
    pub fn ready_field(&self, name: &str) -> &str {
        self.ready
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| panic!("readiness line has no {name}= field: {:?}", self.ready))
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("agent is running").id()
    }

    fn spawn(&mut self) {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .expect("open the agent log");
        // `-dev` data goes under TMPDIR: keep it inside this agent's own temp
        // dir, so it is removed even after a SIGKILL.
        let tmp = self.dir.path().join("tmp");
        fs::create_dir_all(&tmp).expect("create the agent's TMPDIR");
        let mut cmd = match &self.netns {
            // `ip netns exec` execs the agent: the child is the agent.
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, MUSTER]);
                c
            }
            None => Command::new(MUSTER),
        };
        let mut child = cmd
            .arg("agent")
            .args(&self.args)
            .env("TMPDIR", &tmp)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("spawn muster agent");
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, rx) = mpsc::channel();
        // Keep draining stdout for the agent's lifetime, so it can never
        // block on a full pipe.
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if line.starts_with(READY_PREFIX) {
                    let _ = tx.send(line);
                }
            }
        });
        self.child = Some(child);
        let line = match rx.recv_timeout(READY_TIMEOUT) {
            Ok(line) => line,
            Err(err) => {
                let status = self.kill();
                panic!(
                    "agent {:?} did not print its readiness line ({err:?}; exit {status:?}); log:\n{}",
                    self.args,
                    self.log()
                );
            }
        };
        self.ready = parse_ready(&line);
        self.addr = self
            .ready_field("http")
            .parse()
            .unwrap_or_else(|e| panic!("bad http= in {line:?}: {e}"));
    }

    /// SIGKILL the agent (if running) and reap it.
    pub fn kill(&mut self) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        // `Child::kill` sends SIGKILL on Unix.
        let _ = child.kill();
        child.wait().ok()
    }

    /// SIGKILL the agent and start it again with the same arguments (and so
    /// the same data directory).
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// Send `signal` (e.g. `TERM`, `INT`) and wait up to `timeout` for exit.
    pub fn signal_and_wait(&mut self, signal: &str, timeout: Duration) -> ExitStatus {
        let pid = self.pid();
        let sent = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string())
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -{signal} {pid} failed");
        let mut child = self.child.take().expect("agent is running");
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "agent did not exit within {timeout:?} of SIG{signal}; log:\n{}",
                    self.log()
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// The agent's stderr log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log_path).unwrap_or_else(|e| format!("<no log: {e}>"))
    }

    /// `method path` with `body`; panics on a transport error.
    pub fn request(&self, method: &str, path: &str, body: &[u8]) -> Response {
        request(self.addr, method, path, body)
            .unwrap_or_else(|e| panic!("{method} {path} on {}: {e}", self.addr))
    }

    /// The leader this agent names (`/v1/status/leader`), if any.
    pub fn leader(&self) -> Option<String> {
        let r = self.get("/v1/status/leader");
        if r.status != 200 {
            return None;
        }
        r.json()
            .as_str()
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    }

    /// The sorted names of the members `path` (`/v1/agent/members`, with
    /// `?wan=1` for the WAN pool) lists alive.
    pub fn alive_members_at(&self, path: &str) -> Vec<String> {
        let mut names: Vec<String> = self
            .get(path)
            .json()
            .as_array()
            .map(|ms| {
                ms.iter()
                    .filter(|m| m["Status"] == 1)
                    .filter_map(|m| m["Name"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    /// `GET path`.
    pub fn get(&self, path: &str) -> Response {
        self.request("GET", path, b"")
    }

    /// `PUT path` with `body` as JSON and `token` as `X-Consul-Token`;
    /// panics unless 200; the reply's JSON.
    pub fn put_as(&self, token: &str, path: &str, body: &serde_json::Value) -> serde_json::Value {
        let r = request_with_headers(
            self.addr,
            "PUT",
            path,
            &[("X-Consul-Token", token)],
            body.to_string().as_bytes(),
        )
        .unwrap_or_else(|e| panic!("PUT {path} on {}: {e}", self.addr));
        assert_eq!(r.status, 200, "PUT {path}: {}", r.text());
        r.json()
    }

    /// `PUT path` with `body`.
    pub fn put(&self, path: &str, body: &[u8]) -> Response {
        self.request("PUT", path, body)
    }

    /// `DELETE path`.
    pub fn delete(&self, path: &str) -> Response {
        self.request("DELETE", path, b"")
    }

    /// `PUT /v1/kv/<key>` expecting 200; returns the `true`/`false` body.
    pub fn kv_put(&self, key_and_query: &str, value: &[u8]) -> bool {
        let resp = self.put(&format!("/v1/kv/{key_and_query}"), value);
        assert_eq!(resp.status, 200, "PUT {key_and_query}: {}", resp.text());
        resp.bool()
    }

    /// `GET /v1/kv/<key>` → the single entry, or `None` on 404.
    pub fn kv_get(&self, key: &str) -> Option<KvPair> {
        let resp = self.get(&format!("/v1/kv/{key}"));
        match resp.status {
            404 => None,
            200 => {
                let mut pairs = resp.kv_pairs();
                assert_eq!(pairs.len(), 1, "GET {key} returned {pairs:?}");
                pairs.pop()
            }
            s => panic!("GET {key}: {s} {}", resp.text()),
        }
    }
}

/// Sessions and locks (consul-compat.md §8).
impl Agent {
    /// Wait (up to 30 s) until the agent's own node is in the catalog with
    /// a passing `serfHealth`, which a default session needs. The readiness
    /// line comes before anti-entropy's first sync, so a session created
    /// at once can get `Missing node registration` (Consul's test agents
    /// wait the same way). Returns `self` for chaining.
    pub fn wait_node_registered(self) -> Agent {
        let node = self.ready_field("node").to_string();
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let checks = self.get(&format!("/v1/health/node/{node}"));
            let ok = checks.status == 200
                && checks.json().as_array().is_some_and(|l| {
                    l.iter()
                        .any(|c| c["CheckID"] == "serfHealth" && c["Status"] == "passing")
                });
            if ok {
                return self;
            }
            assert!(
                Instant::now() < deadline,
                "node {node} not registered with a passing serfHealth: {}",
                checks.text()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// `PUT /v1/session/create` with `body`, expecting 200; the new ID.
    pub fn session_create(&self, body: &serde_json::Value) -> String {
        let resp = self.put("/v1/session/create", body.to_string().as_bytes());
        assert_eq!(resp.status, 200, "session create {body}: {}", resp.text());
        let json = resp.json();
        json["ID"]
            .as_str()
            .unwrap_or_else(|| panic!("no ID in {json}"))
            .to_string()
    }

    /// `GET /v1/session/info/<id>` → the session, or `None` once it is gone.
    pub fn session_info(&self, id: &str) -> Option<serde_json::Value> {
        let resp = self.get(&format!("/v1/session/info/{id}"));
        assert_eq!(resp.status, 200, "session info {id}: {}", resp.text());
        let json = resp.json();
        let list = json
            .as_array()
            .unwrap_or_else(|| panic!("session info is not a list: {json}"));
        assert!(list.len() <= 1, "session info {id}: {json}");
        list.first().cloned()
    }

    /// `PUT /v1/kv/<key>?acquire=<session>` with `value`: the `true`/`false`.
    pub fn kv_acquire(&self, key: &str, session: &str, value: &[u8]) -> bool {
        self.kv_put(&format!("{key}?acquire={session}"), value)
    }

    /// `PUT /v1/kv/<key>?release=<session>` with `value`: the `true`/`false`.
    pub fn kv_release(&self, key: &str, session: &str, value: &[u8]) -> bool {
        self.kv_put(&format!("{key}?release={session}"), value)
    }

    /// The session holding `key`: `None` if the key is absent or free.
    pub fn kv_holder(&self, key: &str) -> Option<String> {
        let resp = self.get(&format!("/v1/kv/{key}"));
        match resp.status {
            404 => None,
            200 => {
                let json = resp.json();
                json[0]["Session"]
                    .as_str()
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
            }
            s => panic!("GET {key}: {s} {}", resp.text()),
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.kill();
        if thread::panicking() {
            eprintln!(
                "---- muster agent {:?} log ({}) ----\n{}\n---- end of agent log ----",
                self.args,
                self.log_path.display(),
                self.log()
            );
        }
    }
}

/// `muster agent ready: k=v k=v ...` → `[(k, v)]`.
fn parse_ready(line: &str) -> Vec<(String, String)> {
    line.trim_start_matches(READY_PREFIX)
        .split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A decoded `KVPair`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvPair {
    /// `Key`.
    pub key: String,
    /// `Value`, base64-decoded (`null` → empty).
    pub value: Vec<u8>,
    /// `Flags`.
    pub flags: u64,
    /// `CreateIndex`.
    pub create_index: u64,
    /// `ModifyIndex`.
    pub modify_index: u64,
    /// `LockIndex`.
    pub lock_index: u64,
    /// True if `Value` was JSON `null`.
    pub value_was_null: bool,
}

/// A fully read HTTP response.
#[derive(Debug, Clone)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Header names (lowercased) and values, in order.
    pub headers: Vec<(String, String)>,
    /// The body (de-chunked).
    pub body: Vec<u8>,
}

impl Response {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    /// `X-Consul-Index`, which must be present and a number.
    pub fn index(&self) -> u64 {
        let raw = self
            .header("X-Consul-Index")
            .unwrap_or_else(|| panic!("no X-Consul-Index in {:?}", self.headers));
        raw.parse()
            .unwrap_or_else(|e| panic!("X-Consul-Index {raw:?} is not a number: {e}"))
    }

    /// The body as (lossy) text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {:?}", self.text()))
    }

    /// A `true` / `false` body.
    pub fn bool(&self) -> bool {
        match self.json() {
            serde_json::Value::Bool(b) => b,
            other => panic!("expected true/false, got {other}"),
        }
    }

    /// A `[KVPair]` body.
    pub fn kv_pairs(&self) -> Vec<KvPair> {
        use base64::Engine as _;
        let json = self.json();
        let list = json
            .as_array()
            .unwrap_or_else(|| panic!("not a list: {json}"));
        list.iter()
            .map(|p| {
                let num = |f: &str| {
                    p[f].as_u64()
                        .unwrap_or_else(|| panic!("{f} is not a number in {p}"))
                };
                let (value, value_was_null) = match &p["Value"] {
                    serde_json::Value::Null => (Vec::new(), true),
                    serde_json::Value::String(s) => (
                        base64::engine::general_purpose::STANDARD
                            .decode(s)
                            .unwrap_or_else(|e| panic!("Value is not base64 ({e}): {p}")),
                        false,
                    ),
                    other => panic!("Value is neither null nor a string: {other}"),
                };
                KvPair {
                    key: p["Key"].as_str().expect("Key is a string").to_string(),
                    value,
                    flags: num("Flags"),
                    create_index: num("CreateIndex"),
                    modify_index: num("ModifyIndex"),
                    lock_index: num("LockIndex"),
                    value_was_null,
                }
            })
            .collect()
    }

    /// A `["key", ...]` body.
    pub fn strings(&self) -> Vec<String> {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not a list of strings ({e}): {:?}", self.text()))
    }
}

/// One HTTP/1.1 request over a fresh connection (`Connection: close`).
pub fn request(addr: SocketAddr, method: &str, path: &str, body: &[u8]) -> io::Result<Response> {
    request_with_headers(addr, method, path, &[], body)
}

/// [`request`] with extra request headers.
pub fn request_with_headers(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> io::Result<Response> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(10))?;
    stream.set_read_timeout(Some(HTTP_TIMEOUT))?;
    stream.set_write_timeout(Some(HTTP_TIMEOUT))?;
    stream.set_nodelay(true)?;
    let extra: String = headers
        .iter()
        .map(|(k, v)| format!("{k}: {v}\r\n"))
        .collect();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: muster-tests\r\n\
         {extra}Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let mut req = head.into_bytes();
    req.extend_from_slice(body);
    stream.write_all(&req)?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    parse_response(&raw)
}

fn bad(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

/// Parse a complete HTTP/1.1 response (the connection was closed after it).
fn parse_response(raw: &[u8]) -> io::Result<Response> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad(format!("incomplete response ({} bytes)", raw.len())))?;
    let head = std::str::from_utf8(&raw[..split]).map_err(|e| bad(e.to_string()))?;
    let rest = &raw[split + 4..];
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad(format!("bad status line {status_line:?}")))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let find = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let body = if find("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        dechunk(rest)?
    } else if let Some(len) = find("content-length") {
        let len: usize = len.parse().map_err(|_| bad("bad content-length"))?;
        if rest.len() < len {
            return Err(bad(format!("short body: {} of {len} bytes", rest.len())));
        }
        rest[..len].to_vec()
    } else {
        rest.to_vec()
    };
    Ok(Response {
        status,
        headers,
        body,
    })
}

/// Decode a chunked body.
fn dechunk(mut data: &[u8]) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or_else(|| bad("truncated chunk size"))?;
        let size_text = std::str::from_utf8(&data[..eol]).map_err(|e| bad(e.to_string()))?;
        let size_hex = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_hex, 16).map_err(|_| bad("bad chunk size"))?;
        data = &data[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        if data.len() < size + 2 {
            return Err(bad("truncated chunk"));
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

/// Write `contents` to `dir/name` and return the path.
pub fn write_file(dir: &Path, name: &str, contents: &[u8]) -> PathBuf {
    let path = dir.join(name);
    File::create(&path)
        .and_then(|mut f| f.write_all(contents))
        .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    path
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn harness_parses_content_length_and_chunked_responses() -> io::Result<()> {
        let plain = parse_response(
            b"HTTP/1.1 404 Not Found\r\nX-Consul-Index: 7\r\nContent-Length: 0\r\n\r\n",
        )?;
        assert_eq!(plain.status, 404);
        assert_eq!(plain.index(), 7);
        assert!(plain.body.is_empty());
        let chunked = parse_response(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\ntrue\r\n0\r\n\r\n",
        )?;
        assert!(chunked.bool());
        Ok(())
    }

    #[test]
    fn harness_parses_the_readiness_line() {
        let f = parse_ready("muster agent ready: node=n datacenter=dc1 http=127.0.0.1:1 dns=127.0.0.1:2 data_dir=/tmp/x");
        assert_eq!(f[2], ("http".to_string(), "127.0.0.1:1".to_string()));
        assert_eq!(f.len(), 5);
    }
}

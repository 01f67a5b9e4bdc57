//! TLS as Consul does it: `muster tls ca create` / `tls cert create`
//! (Consul's files, names and usages), the HTTPS listener (`ports.https`,
//! `tls.https`) with `verify_incoming`, the CLI over HTTPS (flags and
//! `CONSUL_*` variables), certificates re-read on reload, HTTPS alone
//! (`ports.http = -1`), and config mistakes refused with one line naming
//! the key; TLS on the server RPC port (`rpc.rs`). Certificates are made
//! in a temporary directory with the binary itself (`certs.rs` checks the
//! commands); the HTTPS client here is rustls, and curl when installed
//! (required when `MUSTER_REQUIRE_CURL` is set, as in CI).

mod certs;
mod rpc;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};

use crate::harness::{free_port, muster, request, wait_until, write_file, Agent};

/// Run `muster tls <args>` in `dir`; panics unless it succeeds.
pub(super) fn tls(dir: &Path, args: &[&str]) -> String {
    let out = tls_output(dir, args);
    assert!(out.status.success(), "tls {args:?}: {}", stderr(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Run `muster tls <args>` in `dir`.
pub(super) fn tls_output(dir: &Path, args: &[&str]) -> Output {
    muster()
        .arg("tls")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run muster tls")
}

pub(super) fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A CA with a server and a CLI certificate, in their own directory.
pub(super) struct Pki {
    pub(super) dir: tempfile::TempDir,
}

impl Pki {
    /// `tls ca create`, `tls cert create -server`, `tls cert create -cli`.
    pub(super) fn new() -> Pki {
        let dir = tempfile::tempdir().expect("tempdir");
        tls(dir.path(), &["ca", "create"]);
        tls(dir.path(), &["cert", "create", "-server"]);
        tls(dir.path(), &["cert", "create", "-cli"]);
        Pki { dir }
    }

    pub(super) fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub(super) fn s(&self, name: &str) -> String {
        self.path(name).display().to_string()
    }

    pub(super) fn ca(&self) -> String {
        self.s("consul-agent-ca.pem")
    }

    pub(super) fn cli(&self) -> (String, String) {
        (
            self.s("dc1-cli-consul-0.pem"),
            self.s("dc1-cli-consul-0-key.pem"),
        )
    }

    /// A config with HTTPS on a free port, this PKI's server certificate
    /// and CA, and `verify_incoming` as given.
    pub(super) fn config(&self, https_port: u16, verify_incoming: bool) -> String {
        serde_json::json!({
            "ports": {"https": https_port},
            "tls": {
                "defaults": {"ca_file": self.ca()},
                "https": {
                    "cert_file": self.s("dc1-server-consul-0.pem"),
                    "key_file": self.s("dc1-server-consul-0-key.pem"),
                    "verify_incoming": verify_incoming,
                },
            },
        })
        .to_string()
    }
}

pub(super) fn certs(path: &str) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_file_iter(path)
        .expect("read certs")
        .collect::<Result<Vec<_>, _>>()
        .expect("PEM certs")
}

pub(super) fn roots(ca: &str) -> rustls::RootCertStore {
    let mut roots = rustls::RootCertStore::empty();
    for cert in certs(ca) {
        roots.add(cert).expect("usable CA");
    }
    roots
}

pub(super) fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// `GET path` over HTTPS with rustls, trusting `ca`, presenting `client`
/// (cert, key) if given: the response head and body, or why it failed.
pub(super) fn https_get(
    addr: SocketAddr,
    path: &str,
    ca: &str,
    client: Option<(&str, &str)>,
) -> Result<String, String> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots(ca));
    let config = match client {
        Some((cert, key)) => builder
            .with_client_auth_cert(
                certs(cert),
                PrivateKeyDer::from_pem_file(key).map_err(|e| e.to_string())?,
            )
            .map_err(|e| e.to_string())?,
        None => builder.with_no_client_auth(),
    };
    let name = ServerName::try_from("localhost").map_err(|e| e.to_string())?;
    let conn = rustls::ClientConnection::new(Arc::new(config), name).map_err(|e| e.to_string())?;
    let tcp = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    write!(
        tls,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    match tls.read_to_end(&mut out) {
        Ok(_) => Ok(String::from_utf8_lossy(&out).into_owned()),
        // Go and rustls servers may close without close_notify after
        // `Connection: close`; what was read is the answer.
        Err(_) if out.starts_with(b"HTTP/") => Ok(String::from_utf8_lossy(&out).into_owned()),
        Err(e) => Err(e.to_string()),
    }
}

/// The certificate at `path` verifies against `ca` as a TLS server
/// certificate for `name`.
pub(super) fn server_cert_valid_for(ca: &str, path: &str, name: &str) -> bool {
    let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
        Arc::new(roots(ca)),
        provider(),
    )
    .build()
    .expect("verifier");
    let chain = certs(path);
    let Ok(server_name) = ServerName::try_from(name.to_string()) else {
        return false;
    };
    rustls::client::danger::ServerCertVerifier::verify_server_cert(
        verifier.as_ref(),
        &chain[0],
        &chain[1..],
        &server_name,
        &[],
        UnixTime::now(),
    )
    .is_ok()
}

/// The certificate at `path` verifies against `ca` as a TLS client
/// certificate.
pub(super) fn client_cert_valid(ca: &str, path: &str) -> bool {
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots(ca)),
        provider(),
    )
    .build()
    .expect("verifier");
    let chain = certs(path);
    rustls::server::danger::ClientCertVerifier::verify_client_cert(
        verifier.as_ref(),
        &chain[0],
        &chain[1..],
        UnixTime::now(),
    )
    .is_ok()
}

/// The agent's HTTPS address, from its readiness line.
pub(super) fn https_addr(agent: &Agent) -> SocketAddr {
    agent.ready_field("https").parse().expect("https= address")
}

/// HTTPS with `verify_incoming`: a client certificate signed by the CA is
/// required; none, or one from another CA, is refused; plain HTTP to the
/// HTTPS port gets no HTTP answer; plain HTTP on its own port still works.
#[test]
fn https_with_verify_incoming_requires_a_client_cert_from_the_ca() {
    let pki = Pki::new();
    let agent = Agent::start_with_config(&["-dev"], false, &pki.config(0, true));
    let addr = https_addr(&agent);
    let (cert, key) = pki.cli();
    let ok = https_get(addr, "/v1/status/leader", &pki.ca(), Some((&cert, &key)))
        .expect("HTTPS with a client certificate");
    assert!(ok.starts_with("HTTP/1.1 200 OK"), "{ok}");
    assert!(
        ok.contains("X-Consul-Index") || ok.contains("\"127.0.0.1:"),
        "{ok}"
    );

    let none = https_get(addr, "/v1/status/leader", &pki.ca(), None);
    assert!(
        none.is_err(),
        "no client certificate must be refused: {none:?}"
    );
    let other = Pki::new();
    let (ocert, okey) = other.cli();
    let wrong = https_get(addr, "/v1/status/leader", &pki.ca(), Some((&ocert, &okey)));
    assert!(
        wrong.is_err(),
        "another CA's certificate must be refused: {wrong:?}"
    );

    // Plain HTTP to the HTTPS port: no HTTP answer.
    match request(addr, "GET", "/v1/status/leader", b"") {
        Ok(resp) => panic!("plain HTTP got an answer on the HTTPS port: {resp:?}"),
        Err(e) => assert!(!e.to_string().contains("HTTP/1"), "{e}"),
    }
    assert_eq!(agent.get("/v1/status/leader").status, 200);

    let have_curl = std::process::Command::new("curl")
        .arg("--version")
        .output()
        .is_ok();
    assert!(
        have_curl || std::env::var_os("MUSTER_REQUIRE_CURL").is_none(),
        "curl is not installed, and MUSTER_REQUIRE_CURL is set"
    );
    if !have_curl {
        eprintln!("skipped the curl half: curl is not installed");
    }
    if have_curl {
        let url = format!("https://localhost:{}/v1/status/leader", addr.port());
        let curl = |extra: &[&str]| {
            std::process::Command::new("curl")
                .args([
                    "-s",
                    "-o",
                    "/dev/null",
                    "-w",
                    "%{http_code}",
                    "--cacert",
                    &pki.ca(),
                ])
                .args(extra)
                .arg(&url)
                .output()
                .expect("curl")
        };
        let good = curl(&["--cert", &cert, "--key", &key]);
        assert_eq!(String::from_utf8_lossy(&good.stdout), "200");
        let bad = curl(&[]);
        assert_ne!(String::from_utf8_lossy(&bad.stdout), "200");
    }
}

/// `muster kv put/get` over HTTPS with `-http-addr=https://... -ca-file
/// -client-cert -client-key`, and with `CONSUL_*` variables (and
/// `MUSTER_*` ones); a missing client certificate or CA fails with a hint.
#[test]
fn cli_speaks_https_with_flags_and_consul_variables() {
    let pki = Pki::new();
    let agent = Agent::start_with_config(&["-dev"], false, &pki.config(0, true));
    let url = format!("https://127.0.0.1:{}", https_addr(&agent).port());
    let (cert, key) = pki.cli();
    let clean = |cmd: &mut std::process::Command| {
        for v in [
            "CACERT",
            "CAPATH",
            "CLIENT_CERT",
            "CLIENT_KEY",
            "TLS_SERVER_NAME",
            "HTTP_SSL",
            "HTTP_SSL_VERIFY",
        ] {
            cmd.env_remove(format!("CONSUL_{v}"))
                .env_remove(format!("MUSTER_{v}"));
        }
    };
    // `muster <args>` with only the `envs` given of the TLS variables.
    let cli = |args: &[&str], envs: &[(&str, &str)]| {
        let mut cmd = muster();
        clean(&mut cmd);
        cmd.args(args)
            .envs(envs.iter().copied())
            .output()
            .expect("run muster")
    };
    let addr_flag = format!("-http-addr={url}");
    let ca = pki.ca();
    let put = [
        "kv",
        "put",
        &addr_flag,
        "-ca-file",
        &ca,
        "-client-cert",
        &cert,
        "-client-key",
        &key,
        "tls/one",
        "v1",
    ];
    let out = cli(&put, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "Success! Data written to: tls/one\n"
    );

    let out = cli(
        &["kv", "get", "tls/one"],
        &[
            ("CONSUL_HTTP_ADDR", &url),
            ("CONSUL_CACERT", &ca),
            ("CONSUL_CLIENT_CERT", &cert),
            ("CONSUL_CLIENT_KEY", &key),
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "v1\n");

    // MUSTER_* forms, a scheme-less address with CONSUL_HTTP_SSL, and a
    // server name other than the address.
    let out = cli(
        &["kv", "get", "tls/one"],
        &[
            ("MUSTER_HTTP_ADDR", url.trim_start_matches("https://")),
            ("CONSUL_HTTP_SSL", "true"),
            ("MUSTER_CACERT", &ca),
            ("MUSTER_CLIENT_CERT", &cert),
            ("MUSTER_CLIENT_KEY", &key),
            ("CONSUL_TLS_SERVER_NAME", "server.dc1.consul"),
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "v1\n");

    // No client certificate: refused, with the fix.
    let out = cli(&["kv", "get", &addr_flag, "-ca-file", &ca, "tls/one"], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("-client-cert"), "{}", stderr(&out));
    // No CA: the agent's certificate is not trusted, unless
    // CONSUL_HTTP_SSL_VERIFY=false.
    let no_ca = [
        "kv",
        "get",
        &addr_flag,
        "-client-cert",
        &cert,
        "-client-key",
        &key,
        "tls/one",
    ];
    let out = cli(&no_ca, &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("-ca-file"), "{}", stderr(&out));
    let out = cli(&no_ca, &[("CONSUL_HTTP_SSL_VERIFY", "false")]);
    assert!(out.status.success(), "{}", stderr(&out));
}

/// A reload (SIGHUP or `PUT /v1/agent/reload`) re-reads the certificate
/// files: new connections get the new certificate; a reload with a broken
/// key fails and keeps the running one.
#[test]
fn reload_picks_up_a_new_certificate() {
    let first = Pki::new();
    let live = tempfile::tempdir().expect("tempdir");
    let cert = live.path().join("server.pem");
    let key = live.path().join("server-key.pem");
    let install = |pki: &Pki| {
        std::fs::copy(pki.path("dc1-server-consul-0.pem"), &cert).expect("copy cert");
        std::fs::copy(pki.path("dc1-server-consul-0-key.pem"), &key).expect("copy key");
    };
    install(&first);
    // The port from the flag (`-https-port`, as Consul's), the
    // certificate from the file.
    let config = serde_json::json!({
        "tls": {"https": {"cert_file": cert, "key_file": key}},
    });
    let agent = Agent::start_with_config(&["-dev", "-https-port", "0"], false, &config.to_string());
    let addr = https_addr(&agent);
    let ok = |pki: &Pki| https_get(addr, "/v1/status/leader", &pki.ca(), None).is_ok();
    assert!(ok(&first));

    let second = Pki::new();
    assert!(!ok(&second), "the second CA is not in use yet");
    install(&second);
    let reload = agent.put("/v1/agent/reload", b"");
    assert_eq!(reload.status, 200, "{}", reload.text());
    assert!(ok(&second), "new connections get the new certificate");
    assert!(!ok(&first));

    std::fs::write(&key, "not a key").expect("break the key");
    let reload = agent.put("/v1/agent/reload", b"");
    assert_eq!(reload.status, 500);
    assert!(
        reload.text().contains("tls.https.key_file"),
        "{}",
        reload.text()
    );
    assert!(ok(&second), "a failed reload keeps the running certificate");

    install(&first);
    let pid = agent.pid().to_string();
    let hup = std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .expect("kill -HUP");
    assert!(hup.success());
    wait_until(
        "SIGHUP reloads the certificate",
        Duration::from_secs(10),
        || ok(&first),
    );
}

/// A spawned agent that prints its readiness line on stdout (the
/// harness's `Agent` needs plain HTTP); killed on drop.
struct HttpsOnly {
    child: Child,
    ready: String,
}

impl Drop for HttpsOnly {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `ports.http = -1`: HTTPS alone; the readiness line names `https=` and
/// no `http=`; the CLI and the agent's own watches work over HTTPS.
#[test]
fn https_alone_when_plain_http_is_off() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let marker = dir.path().join("watched");
    let mut config: serde_json::Value =
        serde_json::from_str(&pki.config(free_port(), true)).expect("json");
    config["ports"]["http"] = (-1).into();
    config["watches"] = serde_json::json!([{
        "type": "key", "key": "tls/watched",
        "args": ["sh", "-c", format!("cat > {}", marker.display())],
    }]);
    let file = write_file(dir.path(), "https.json", config.to_string().as_bytes());
    let tmp = dir.path().join("tmp");
    std::fs::create_dir_all(&tmp).expect("tmp");
    let mut child = muster()
        .args(["agent", "-dev", "-config-file", &file.display().to_string()])
        .args([
            "-dns-port",
            &free_port().to_string(),
            "-server-port",
            &free_port().to_string(),
        ])
        .args([
            "-serf-lan-port",
            &free_port().to_string(),
            "-serf-wan-port",
            &free_port().to_string(),
        ])
        .env("TMPDIR", &tmp)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.starts_with("muster agent ready: ") {
                let _ = tx.send(line);
            }
        }
    });
    let agent = HttpsOnly {
        ready: rx.recv_timeout(Duration::from_secs(30)).unwrap_or_default(),
        child,
    };
    assert!(agent.ready.contains(" https=127.0.0.1:"), "{}", agent.ready);
    assert!(!agent.ready.contains(" http="), "{}", agent.ready);
    let https = agent
        .ready
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix("https="))
        .expect("https=")
        .to_string();
    let (cert, key) = pki.cli();
    let out = muster()
        .args([
            "kv",
            "put",
            &format!("-http-addr=https://{https}"),
            "-ca-file",
            &pki.ca(),
        ])
        .args([
            "-client-cert",
            &cert,
            "-client-key",
            &key,
            "tls/watched",
            "seen",
        ])
        .output()
        .expect("kv put");
    assert!(out.status.success(), "{}", stderr(&out));
    wait_until(
        "the agent's watch runs over HTTPS",
        Duration::from_secs(20),
        || std::fs::read_to_string(&marker).is_ok_and(|s| s.contains("\"Key\":\"tls/watched\"")),
    );
}

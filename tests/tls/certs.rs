//! `muster tls ca create` / `cert create`, and TLS config mistakes that
//! refuse to start.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use super::{client_cert_valid, server_cert_valid_for, stderr, tls, tls_output, Pki};
use crate::harness::write_file;
use crate::process::agent_exit;

/// `muster tls ca create` and `cert create` write Consul's files with
/// Consul's output lines, names and usages; the index moves past files
/// that exist; keys are private; mistakes are refused as Consul does.
#[test]
fn tls_commands_write_consuls_files_names_and_usages() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    assert_eq!(
        tls(d, &["ca", "create"]),
        "==> Saved consul-agent-ca.pem\n==> Saved consul-agent-ca-key.pem\n"
    );
    let again = tls_output(d, &["ca", "create"]);
    assert_eq!(again.status.code(), Some(1));
    assert!(stderr(&again).contains("consul-agent-ca.pem already exists."));

    let out = tls(d, &["cert", "create", "-server"]);
    assert!(
        out.starts_with("==> WARNING: Server Certificates grants authority"),
        "{out}"
    );
    assert!(out.ends_with(
        "==> Using consul-agent-ca.pem and consul-agent-ca-key.pem\n==> Saved dc1-server-consul-0.pem\n==> Saved dc1-server-consul-0-key.pem\n"
    ), "{out}");
    let out = tls(
        d,
        &[
            "cert",
            "create",
            "-server",
            "-dc=dc2",
            "-node=n1",
            "-additional-dnsname=api.example.com",
            "-additional-ipaddress=10.9.8.7",
        ],
    );
    assert!(out.contains("==> Saved dc2-server-consul-0.pem"), "{out}");
    assert!(
        tls(d, &["cert", "create", "-server"]).contains("==> Saved dc1-server-consul-1-key.pem")
    );
    assert!(tls(d, &["cert", "create", "-client"]).contains("==> Saved dc1-client-consul-0.pem"));
    assert!(tls(d, &["cert", "create", "-cli"]).contains("==> Saved dc1-cli-consul-0.pem"));

    for key in [
        "consul-agent-ca-key.pem",
        "dc1-server-consul-0-key.pem",
        "dc1-cli-consul-0-key.pem",
    ] {
        let mode = std::fs::metadata(d.join(key))
            .expect("key")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{key}");
    }
    let ca = d.join("consul-agent-ca.pem").display().to_string();
    let p = |n: &str| d.join(n).display().to_string();
    // Server: server.<dc>.<domain>, localhost, 127.0.0.1; serverAuth and
    // clientAuth.
    let server = p("dc1-server-consul-0.pem");
    for name in ["server.dc1.consul", "localhost", "127.0.0.1"] {
        assert!(
            server_cert_valid_for(&ca, &server, name),
            "server cert for {name}"
        );
    }
    assert!(!server_cert_valid_for(&ca, &server, "client.dc1.consul"));
    assert!(client_cert_valid(&ca, &server));
    let dc2 = p("dc2-server-consul-0.pem");
    for name in [
        "server.dc2.consul",
        "n1.server.dc2.consul",
        "api.example.com",
        "10.9.8.7",
        "127.0.0.1",
    ] {
        assert!(
            server_cert_valid_for(&ca, &dc2, name),
            "dc2 cert for {name}"
        );
    }
    // Client: client.<dc>.<domain>, localhost; clientAuth and serverAuth.
    let client = p("dc1-client-consul-0.pem");
    assert!(server_cert_valid_for(&ca, &client, "client.dc1.consul"));
    assert!(server_cert_valid_for(&ca, &client, "localhost"));
    assert!(client_cert_valid(&ca, &client));
    // CLI: cli.<dc>.<domain>, localhost; a client certificate.
    let cli = p("dc1-cli-consul-0.pem");
    assert!(server_cert_valid_for(&ca, &cli, "cli.dc1.consul"));
    assert!(!server_cert_valid_for(&ca, &cli, "server.dc1.consul"));
    assert!(client_cert_valid(&ca, &cli));
    // A certificate from another CA is not valid against this one.
    let other = Pki::new();
    assert!(!client_cert_valid(&ca, &other.cli().0));

    for (args, needle) in [
        (
            &["cert", "create"][..],
            "Please provide either -server, -client, or -cli",
        ),
        (
            &["cert", "create", "-client", "-server"][..],
            "Please provide either -server, -client, or -cli",
        ),
        (
            &["cert", "create", "-client", "-node=n1"][..],
            "-node requires -server",
        ),
        (
            &["cert", "create", "-client", "-ca=missing.pem"][..],
            "Error reading CA: missing.pem",
        ),
    ] {
        let out = tls_output(d, args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(stderr(&out).contains(needle), "{args:?}: {}", stderr(&out));
    }
    // A CA key that is not the CA's: caught before anything is saved.
    let out = tls_output(
        d,
        &[
            "cert",
            "create",
            "-cli",
            &format!("-key={}", other.s("consul-agent-ca-key.pem")),
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("does not verify against the CA"),
        "{}",
        stderr(&out)
    );
    assert!(!d.join("dc1-cli-consul-1.pem").exists());
}

/// Config mistakes refuse to start with one line naming the key: a
/// missing certificate file, an unknown `tls_min_version`, HTTPS without
/// a certificate, `verify_incoming` without a CA or a certificate, and
/// `verify_server_hostname` without a CA.
#[test]
fn tls_config_mistakes_refuse_to_start_naming_the_key() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let server = pki.s("dc1-server-consul-0.pem");
    let key = pki.s("dc1-server-consul-0-key.pem");
    let cases = [
        (
            serde_json::json!({"ports": {"https": 0}, "tls": {"https": {"cert_file": "/nonexistent/cert.pem", "key_file": key}}}),
            vec!["tls.https.cert_file", "/nonexistent/cert.pem"],
        ),
        (
            serde_json::json!({"tls": {"defaults": {"tls_min_version": "TLSv1_9"}}}),
            vec!["tls.defaults.tls_min_version", "TLSv1_2"],
        ),
        (
            serde_json::json!({"ports": {"https": 0}}),
            vec!["tls.https.cert_file", "muster tls cert create"],
        ),
        (
            serde_json::json!({"ports": {"https": 0}, "tls": {"https": {"cert_file": server, "key_file": key, "verify_incoming": true}}}),
            vec!["verify_incoming", "ca_file"],
        ),
        (
            serde_json::json!({"verify_incoming": true}),
            vec!["verify_incoming", "server RPC port"],
        ),
        (
            serde_json::json!({"tls": {"internal_rpc": {"verify_server_hostname": true}}}),
            vec!["verify_server_hostname", "server RPC port", "ca_file"],
        ),
    ];
    for (i, (config, needles)) in cases.iter().enumerate() {
        let file = write_file(
            dir.path(),
            &format!("tls{i}.json"),
            config.to_string().as_bytes(),
        );
        let file = file.display().to_string();
        let (status, log) = agent_exit(&["-dev", "-config-file", &file], Duration::from_secs(20));
        assert_eq!(status.code(), Some(1), "{config}: {log}");
        let last = log.lines().last().unwrap_or_default();
        for needle in needles {
            assert!(
                last.contains(needle),
                "{config}: {needle:?} not in {last:?}"
            );
        }
    }
}

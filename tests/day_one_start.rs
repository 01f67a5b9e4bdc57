//! Starting and stopping as Consul does (issue 15): a `-join` that reaches
//! no one exits naming the addresses, a wrong gossip key and a taken node
//! name are named on the joining side, a server that can never elect says
//! how to fix it, a busy data directory is refused, signals stop the agent
//! within 2 s at any moment, and the pid file and systemd's readiness
//! notification work as a daemon's should.

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

use crate::harness::{free_port, wait_until, Agent};
use crate::process::{agent_exit, RawAgent};

const KEY: &str = "jTlRj9aqxL6Qve0RdY5KJLWw/DbRfSgvvSbPSOvis+4=";
const OTHER_KEY: &str = "pUqJrVyVRj5jsiYEkM/tFQYfWyJIv4s3XkvDwy7Cu5s=";

/// The `-serf-lan-port` address of `agent`.
fn lan(agent: &Agent) -> String {
    format!("127.0.0.1:{}", agent.flag("-serf-lan-port").expect("port"))
}

#[test]
fn a_join_that_reaches_no_one_exits_naming_the_addresses() {
    let nobody = format!("127.0.0.1:{}", free_port());
    let data = tempfile::tempdir().expect("tempdir");
    let dir = data.path().to_str().expect("utf-8");
    let (status, log) = agent_exit(
        &["-data-dir", dir, "-join", &nobody],
        Duration::from_secs(30),
    );
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(
        log.contains(&format!("Failed to join {nobody}")) && log.contains("retry_join"),
        "{log}"
    );
    assert!(!log.contains("agent ready"), "{log}");

    // retry_join keeps trying, and says so...
    let mut retrying = RawAgent::spawn(&["-data-dir", dir, "-retry-join", &nobody], &[]);
    retrying.wait_log("Join cluster failed, will retry", Duration::from_secs(20));
    assert!(retrying.running(), "{}", retrying.log());
    retrying.signal("TERM");
    retrying.wait_exit(Duration::from_secs(5));

    // ...until retry_max attempts, then exits.
    let cfg = tempfile::tempdir().expect("tempdir");
    let file = crate::harness::write_file(
        cfg.path(),
        "retry.json",
        br#"{"retry_max": 2, "retry_interval": "200ms"}"#,
    );
    let file = file.to_str().expect("utf-8");
    let (status, log) = agent_exit(
        &[
            "-data-dir",
            dir,
            "-config-file",
            file,
            "-retry-join",
            &nobody,
        ],
        Duration::from_secs(30),
    );
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(
        log.contains("max join retry exhausted after 2 attempts"),
        "{log}"
    );
}

#[test]
fn a_wrong_gossip_key_is_named_on_the_joining_side() {
    let server = Agent::start(&["-server", "-bootstrap", "-encrypt", KEY], true);
    let seed = lan(&server);
    let data = tempfile::tempdir().expect("tempdir");
    let dir = data.path().to_str().expect("utf-8");
    let (status, log) = agent_exit(
        &["-data-dir", dir, "-encrypt", OTHER_KEY, "-join", &seed],
        Duration::from_secs(30),
    );
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(
        log.contains(&format!("Failed to join {seed}"))
            && log.contains("the gossip encryption key (encrypt) is probably wrong"),
        "{log}"
    );
    // A fresh data directory: the first one keeps the key it was given
    // (`serf/local.keyring`), as Consul's does.
    let data = tempfile::tempdir().expect("tempdir");
    let dir = data.path().to_str().expect("utf-8");
    let (status, log) = agent_exit(&["-data-dir", dir, "-join", &seed], Duration::from_secs(30));
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(
        log.contains("refuses plaintext: set encrypt to the pool's key"),
        "{log}"
    );
}

#[test]
fn a_second_agent_with_a_taken_node_name_is_refused() {
    let server = Agent::start(&["-server", "-bootstrap", "-node", "twin"], true);
    let seed = lan(&server);
    for join in ["-join", "-retry-join"] {
        let data = tempfile::tempdir().expect("tempdir");
        let dir = data.path().to_str().expect("utf-8");
        let (status, log) = agent_exit(
            &["-data-dir", dir, "-node", "twin", join, &seed],
            Duration::from_secs(30),
        );
        assert_eq!(status.code(), Some(1), "{join}: {log}");
        assert!(
            log.contains(r#"node name "twin" is already used by the alive member at 127.0.0.1:"#)
                && log.contains("-node"),
            "{join}: {log}"
        );
    }
    // The pool never listed the second one.
    let members = server.get("/v1/agent/members").json();
    assert_eq!(members.as_array().map(Vec::len), Some(1), "{members}");
    // The same node restarted (same name, same node ID) is welcome back.
    let mut client = Agent::start(&["-node", "c", "-retry-join", &seed], true);
    wait_until("c joined", Duration::from_secs(20), || {
        server.alive_members_at("/v1/agent/members").len() == 2
    });
    client.restart();
    wait_until("c rejoined", Duration::from_secs(20), || {
        client.alive_members_at("/v1/agent/members").len() == 2
    });
}

#[test]
fn a_server_that_cannot_elect_says_how_to_fix_it() {
    let agent = Agent::start(&["-server"], true);
    let log = agent.log();
    assert!(
        log.contains("this server has no cluster to join and will not elect itself")
            && log.contains("-bootstrap-expect=N"),
        "{log}"
    );
    // A server that can elect says nothing of the kind.
    let fine = Agent::durable();
    assert!(!fine.log().contains("will not elect itself"));
}

#[test]
fn a_data_directory_in_use_is_refused_naming_it() {
    let first = Agent::durable();
    let dir = first.data_dir();
    let dir = dir.to_str().expect("utf-8");
    let (status, log) = agent_exit(
        &["-server", "-bootstrap", "-data-dir", dir],
        Duration::from_secs(20),
    );
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(
        log.contains(&format!(
            "another agent is using the data directory {dir} (pid {})",
            first.pid()
        )),
        "{log}"
    );
    // The first one is undisturbed.
    assert!(first.kv_put("still/mine", b"v"));
}

/// SIGINT and SIGTERM stop the agent within 2 s whatever it is doing:
/// waiting to join, waiting for peers to form a cluster, or serving a
/// blocking query.
#[test]
fn signals_stop_the_agent_within_two_seconds_at_any_moment() {
    let nobody = format!("127.0.0.1:{}", free_port());
    for (signal, args) in [
        // A client waiting for a server before it says it is ready.
        ("TERM", vec!["-retry-join", nobody.as_str()]),
        ("INT", vec!["-retry-join", nobody.as_str()]),
        // A server waiting for two more servers.
        ("INT", vec!["-server", "-bootstrap-expect", "3"]),
    ] {
        let data = tempfile::tempdir().expect("tempdir");
        let mut full = vec!["-data-dir", data.path().to_str().expect("utf-8")];
        full.extend(&args);
        let mut agent = RawAgent::spawn(&full, &[]);
        agent.wait_log("gossip: listening", Duration::from_secs(20));
        std::thread::sleep(Duration::from_millis(300));
        agent.signal(signal);
        let (status, took) = agent.wait_exit(Duration::from_secs(10));
        assert!(
            status.success(),
            "{signal} {args:?}: {status:?}\n{}",
            agent.log()
        );
        assert!(
            took < Duration::from_secs(2),
            "{signal} {args:?}: stopped after {took:?}\n{}",
            agent.log()
        );
    }

    // Serving a blocking query that would wait 5 minutes.
    let mut agent = Agent::dev();
    assert!(agent.kv_put("k", b"v"));
    let index = agent.get("/v1/kv/k").index();
    let addr = agent.addr;
    let blocked = std::thread::spawn(move || {
        crate::harness::request(addr, "GET", &format!("/v1/kv/k?index={index}&wait=5m"), b"")
    });
    std::thread::sleep(Duration::from_millis(300));
    let start = std::time::Instant::now();
    let status = agent.signal_and_wait("TERM", Duration::from_secs(10));
    let took = start.elapsed();
    assert!(status.success(), "{status:?}");
    assert!(took < Duration::from_secs(2), "stopped after {took:?}");
    // The blocked reader got its answer rather than a cut connection.
    let answer = blocked.join().expect("reader thread");
    assert_eq!(answer.map(|r| r.status).ok(), Some(200));
}

#[test]
fn pid_file_and_systemd_readiness_work_as_a_daemons_should() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).expect("bind the notify socket");
    socket
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let pid_file = dir.path().join("muster.pid");
    let mut agent = RawAgent::spawn(
        &["-dev", "-pid-file", pid_file.to_str().expect("utf-8")],
        &[("NOTIFY_SOCKET", socket_path.to_str().expect("utf-8"))],
    );
    let mut buf = [0u8; 256];
    let n = socket.recv(&mut buf).expect("READY=1 within 30 s");
    let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(msg.lines().any(|l| l == "READY=1"), "{msg}");
    // Ready means serving: the log has the readiness line's twin.
    assert!(agent.log().contains("agent ready"), "{}", agent.log());
    let pid: u32 = std::fs::read_to_string(&pid_file)
        .expect("pid file written")
        .trim()
        .parse()
        .expect("a pid");
    assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
    agent.signal("TERM");
    let n = socket.recv(&mut buf).expect("STOPPING=1");
    let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(msg.lines().any(|l| l == "STOPPING=1"), "{msg}");
    let (status, _) = agent.wait_exit(Duration::from_secs(10));
    assert!(status.success());
    assert!(
        !pid_file.exists(),
        "the pid file is removed on a clean exit"
    );
}

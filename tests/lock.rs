//! Locks from a client's point of view: a blocking read of a lock key wakes
//! on release and on invalidation; leader election among three clients
//! fails over within 2 x TTL + lock-delay when the holder dies, with one
//! holder at a time; `muster kv put -acquire|-release`; `muster lock`
//! holding its lock while the child runs, exiting with the child's status,
//! and releasing on exit and on SIGTERM.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::agent_checks::poll;
use crate::harness::{muster, request, Agent, Response};
use crate::session::{fast_agent, SLACK};

/// Consul's `api.LockFlagValue`, set by `muster lock` on its key.
const LOCK_FLAG_VALUE: u64 = 0x2ddc_cbc0_58a5_0c18;

/// How long a `muster` child process may take to finish.
const EXIT_BOUND: Duration = Duration::from_secs(30);

#[test]
fn lock_blocking_get_wakes_on_release_and_on_invalidation() {
    let agent = Agent::dev().wait_node_registered();
    let s = agent.session_create(&json!({"LockDelay": 0}));
    assert!(agent.kv_acquire("watched/lock", &s, b"v"));

    for (what, path, lock_index) in [
        ("release", format!("/v1/kv/watched/lock?release={s}"), 1),
        ("destroy", format!("/v1/session/destroy/{s}"), 2),
    ] {
        if what == "destroy" {
            assert!(agent.kv_acquire("watched/lock", &s, b"v"));
        }
        let held = agent.get("/v1/kv/watched/lock");
        let index = held.index();
        assert_eq!(held.json()[0]["Session"], s.as_str());
        let addr = agent.addr;
        let releaser = thread::spawn(move || {
            thread::sleep(Duration::from_millis(500));
            let body: &[u8] = if what == "release" { b"v" } else { b"" };
            let resp = request(addr, "PUT", &path, body).expect("release");
            assert_eq!((resp.status, resp.bool()), (200, true), "{what}");
        });
        let start = Instant::now();
        let resp = agent.get(&format!("/v1/kv/watched/lock?index={index}&wait=30s"));
        let took = start.elapsed();
        releaser.join().expect("releaser");
        assert_eq!(resp.status, 200);
        assert!(
            took < Duration::from_millis(2500),
            "{what}: woken {took:?} after the query started; the change came at 500 ms"
        );
        assert!(resp.index() > index, "{what}: {} > {index}", resp.index());
        let pair = &resp.json()[0];
        assert!(
            pair.get("Session").is_none_or(|v| v.is_null()),
            "{what}: the key is free: {pair}"
        );
        assert_eq!(pair["LockIndex"], lock_index, "{what}: LockIndex is kept");
    }
}

/// What a client of the election saw, with when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Event {
    /// `?acquire` answered `true`.
    Acquired,
    /// A blocking read showed the key held by someone else while this
    /// client thought it was the leader.
    Lost,
}

/// State shared by the election's client threads and the test.
struct Election {
    /// The agent.
    addr: SocketAddr,
    /// Every client stops.
    stop: AtomicBool,
    /// Per client: dead (stops renewing and acting, releases nothing).
    killed: Vec<AtomicBool>,
    /// Per client: its session.
    sessions: Vec<String>,
    /// (when, client, what), in the order recorded.
    events: Mutex<Vec<(Instant, usize, Event)>>,
}

const ELECTION_KEY: &str = "/v1/kv/election/leader";
const ELECTION_TTL: Duration = Duration::from_secs(1);
const ELECTION_LOCK_DELAY: Duration = Duration::from_secs(1);

impl Election {
    fn done(&self, me: usize) -> bool {
        self.stop.load(Ordering::SeqCst) || self.killed[me].load(Ordering::SeqCst)
    }

    fn record(&self, me: usize, event: Event) {
        self.events
            .lock()
            .expect("events")
            .push((Instant::now(), me, event));
    }

    fn call(&self, method: &str, path: &str, body: &[u8]) -> Response {
        request(self.addr, method, path, body).unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    /// The session holding the key in a GET answer (404 or free: `None`).
    fn holder(resp: &Response) -> Option<String> {
        match resp.status {
            404 => None,
            200 => resp.json()[0]["Session"].as_str().map(str::to_string),
            s => panic!("GET {ELECTION_KEY}: {s} {}", resp.text()),
        }
    }

    /// Renew this client's session every TTL/2 until it stops or dies.
    fn renew(&self, me: usize) {
        let path = format!("/v1/session/renew/{}", self.sessions[me]);
        loop {
            thread::sleep(ELECTION_TTL / 2);
            if self.done(me) {
                return;
            }
            let resp = self.call("PUT", &path, b"");
            assert!(
                resp.status == 200 || self.done(me),
                "client {me}: renew failed: {} {}",
                resp.status,
                resp.text()
            );
        }
    }

    /// The usual client loop: try to acquire; as leader, watch the key to
    /// notice a loss; otherwise block on the key until it is free, and
    /// retry shortly while a lock-delay refuses it.
    fn run(&self, me: usize) {
        let session = &self.sessions[me];
        let mut leader = false;
        let mut index = 0;
        while !self.done(me) {
            if leader {
                let resp = self.call("GET", &format!("{ELECTION_KEY}?index={index}&wait=1s"), b"");
                if self.done(me) {
                    return;
                }
                if Self::holder(&resp).as_deref() == Some(session) {
                    index = resp.index();
                } else {
                    self.record(me, Event::Lost);
                    leader = false;
                }
                continue;
            }
            let path = format!("{ELECTION_KEY}?acquire={session}");
            let resp = self.call("PUT", &path, format!("client-{me}").as_bytes());
            assert_eq!(resp.status, 200, "client {me}: acquire: {}", resp.text());
            if resp.bool() {
                self.record(me, Event::Acquired);
                leader = true;
                index = 0;
                continue;
            }
            let resp = self.call("GET", ELECTION_KEY, b"");
            if Self::holder(&resp).is_some() {
                let index = resp.index();
                self.call("GET", &format!("{ELECTION_KEY}?index={index}&wait=2s"), b"");
            } else {
                // Free but refused: a lock-delay. Retry soon.
                thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

/// An observation of the election key: when, and the holding session.
type Sample = (Instant, Option<String>);

#[test]
fn lock_leader_election_fails_over_when_the_holder_dies() {
    let agent = fast_agent();
    let sessions: Vec<String> = (0..3)
        .map(|i| {
            agent.session_create(&json!({
                "Name": format!("client-{i}"), "TTL": "1s", "LockDelay": "1s"
            }))
        })
        .collect();
    let election = Arc::new(Election {
        addr: agent.addr,
        stop: AtomicBool::new(false),
        killed: (0..3).map(|_| AtomicBool::new(false)).collect(),
        sessions: sessions.clone(),
        events: Mutex::new(Vec::new()),
    });
    let mut threads = Vec::new();
    for me in 0..3 {
        let e = Arc::clone(&election);
        threads.push(thread::spawn(move || e.run(me)));
        let e = Arc::clone(&election);
        threads.push(thread::spawn(move || e.renew(me)));
    }
    // An observer samples the key's holder all along.
    let samples: Arc<Mutex<Vec<Sample>>> = Arc::default();
    let observer = {
        let (e, samples) = (Arc::clone(&election), Arc::clone(&samples));
        thread::spawn(move || {
            while !e.stop.load(Ordering::SeqCst) {
                let holder = Election::holder(&e.call("GET", ELECTION_KEY, b""));
                samples
                    .lock()
                    .expect("samples")
                    .push((Instant::now(), holder));
                thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let acquired = |after: Instant| {
        let events = election.events.lock().expect("events");
        events
            .iter()
            .find(|(t, _, ev)| *t >= after && *ev == Event::Acquired)
            .map(|&(t, who, _)| (t, who))
    };

    let start = Instant::now();
    let (_, first) = poll("a first leader", SLACK * 2, || {
        acquired(start).ok_or_else(|| "none yet".to_string())
    });
    // Leadership holds across several TTLs while everyone renews.
    thread::sleep(3 * ELECTION_TTL);
    assert_eq!(
        election.events.lock().expect("events").len(),
        1,
        "only the first acquire happened while the leader was alive"
    );

    // The leader dies: no more renewals, no release.
    let killed_at = Instant::now();
    election.killed[first].store(true, Ordering::SeqCst);
    let promised = 2 * ELECTION_TTL + ELECTION_LOCK_DELAY;
    let bound = 3 * promised;
    let (took_over_at, second) = poll("a new leader", bound + SLACK, || {
        acquired(killed_at).ok_or_else(|| "none yet".to_string())
    });
    let failover = took_over_at - killed_at;
    println!(
        "lock handed over {failover:?} after the holder stopped renewing (promise: {promised:?})"
    );
    assert_ne!(second, first, "the dead client cannot win again");
    assert!(
        failover <= bound,
        "failover took {failover:?}, more than 3 x (2 x TTL + lock-delay) = {bound:?}"
    );
    // The dead session outlives its last renewal (at most TTL/2 before the
    // kill) by 2 x TTL, then the lock-delay runs: 2.5 s at the least; 2 s
    // leaves room for request latency. Less means the lock moved early.
    assert!(
        failover >= Duration::from_secs(2),
        "failover after only {failover:?}: expiry or lock-delay was skipped"
    );
    // Watch the new leader for a while, then stop everyone.
    thread::sleep(2 * ELECTION_TTL);
    // The live clients kept their sessions alive; the dead one's is gone.
    for (i, id) in sessions.iter().enumerate() {
        assert_eq!(
            agent.session_info(id).is_some(),
            i != first,
            "session of client {i}"
        );
    }
    election.stop.store(true, Ordering::SeqCst);
    for t in threads {
        t.join().expect("client thread");
    }
    observer.join().expect("observer");

    let events = election.events.lock().expect("events").clone();
    let seq: Vec<(usize, Event)> = events.iter().map(|&(_, who, ev)| (who, ev)).collect();
    assert_eq!(
        seq,
        [(first, Event::Acquired), (second, Event::Acquired)],
        "exactly two leaders, one after the other, and no live leader lost its lock"
    );
    // Leader intervals never overlap: the first ended (died) before the
    // second began.
    assert!(took_over_at > killed_at);
    // The holders the observer saw: the first, then the second, never
    // anyone else, never back.
    let samples = samples.lock().expect("samples").clone();
    let mut seen: Vec<&str> = Vec::new();
    for (at, holder) in &samples {
        let Some(holder) = holder.as_deref() else {
            continue;
        };
        if holder == sessions[second] {
            assert!(
                *at > killed_at,
                "the second leader held the key before the kill"
            );
        }
        if seen.last() != Some(&holder) {
            seen.push(holder);
        }
    }
    assert_eq!(
        seen,
        [sessions[first].as_str(), sessions[second].as_str()],
        "observed holders in order"
    );
}

/// `muster kv <args> -http-addr <agent>`.
fn kv(agent: &Agent, args: &[&str]) -> Output {
    let addr = agent.addr.to_string();
    muster()
        .arg("kv")
        .args(args)
        .args(["-http-addr", &addr])
        .output()
        .expect("run muster kv")
}

/// Exit 1 and exactly one line on stderr; returns it.
fn one_line_error(out: &Output) -> String {
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "exit status; stderr: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err:?}");
    err.trim_end().to_string()
}

#[test]
fn cli_kv_put_acquire_and_release() {
    let agent = Agent::dev().wait_node_registered();
    let s1 = agent.session_create(&json!({"LockDelay": 0}));
    let s2 = agent.session_create(&json!({"LockDelay": 0}));
    let stdout = |o: &Output| String::from_utf8_lossy(&o.stdout).into_owned();

    let out = kv(
        &agent,
        &[
            "put",
            "-acquire",
            &format!("-session={s1}"),
            "cli/lock",
            "v1",
        ],
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(stdout(&out), "Success! Lock acquired on: cli/lock\n");
    assert_eq!(agent.kv_holder("cli/lock").as_deref(), Some(s1.as_str()));

    let out = kv(
        &agent,
        &["put", "-acquire", "-session", &s2, "cli/lock", "v2"],
    );
    assert_eq!(
        one_line_error(&out),
        "Error! Did not acquire lock on: cli/lock"
    );
    assert_eq!(agent.kv_get("cli/lock").expect("exists").value, b"v1");

    for (args, msg) in [
        (
            &["put", "-acquire", "cli/lock"][..],
            "Error! Missing -session (required with -acquire and -release)",
        ),
        (
            &["put", "-release", "cli/lock"][..],
            "Error! Missing -session (required with -acquire and -release)",
        ),
        (
            &["put", "-acquire", "-release", "-session=x", "cli/lock"][..],
            "Error! Cannot specify both -acquire and -release",
        ),
        (
            &["put", "-cas", "-acquire", "-session=x", "cli/lock"][..],
            "Error! Cannot specify -cas with -acquire or -release",
        ),
    ] {
        assert_eq!(one_line_error(&kv(&agent, args)), msg, "{args:?}");
    }
    let out = kv(&agent, &["put", "-acquire", "-session=bogus", "cli/other"]);
    assert!(one_line_error(&out).contains("invalid session"), "{out:?}");

    let out = kv(
        &agent,
        &["put", "-release", &format!("-session={s2}"), "cli/lock"],
    );
    assert_eq!(
        one_line_error(&out),
        "Error! Did not release lock on: cli/lock"
    );
    let out = kv(
        &agent,
        &[
            "put",
            "-release",
            &format!("-session={s1}"),
            "cli/lock",
            "v3",
        ],
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(stdout(&out), "Success! Lock released on: cli/lock\n");
    assert_eq!(agent.kv_holder("cli/lock"), None);
    let pair = agent.kv_get("cli/lock").expect("exists");
    assert_eq!((pair.value.as_slice(), pair.lock_index), (&b"v3"[..], 1));

    // `kv get` prints the value only, as before.
    let out = kv(&agent, &["get", "cli/lock"]);
    assert_eq!(stdout(&out), "v3\n");
}

/// `muster lock -http-addr <agent> <args>` in `dir`, not waited for.
fn spawn_lock(agent: &Agent, dir: &Path, args: &[&str]) -> Child {
    let addr = agent.addr.to_string();
    muster()
        .current_dir(dir)
        .env("SHELL", "/bin/sh")
        .arg("lock")
        .args(["-http-addr", &addr])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn muster lock")
}

/// Wait (bounded) for `child` to exit.
fn wait_exit(child: &mut Child, what: &str) -> ExitStatus {
    poll(&format!("{what} exits"), EXIT_BOUND, || {
        match child.try_wait().expect("try_wait") {
            Some(status) => Ok(status),
            None => Err("still running".into()),
        }
    })
}

/// The sessions the agent has.
fn session_count(agent: &Agent) -> usize {
    agent
        .get("/v1/session/list")
        .json()
        .as_array()
        .map_or(0, Vec::len)
}

#[test]
fn cli_lock_holds_the_lock_while_the_child_runs() {
    let agent = Agent::dev().wait_node_registered();
    let dir = tempfile::tempdir().expect("temp dir");
    let mut first = spawn_lock(
        &agent,
        dir.path(),
        &[
            "-name",
            "first",
            "job",
            "touch started1; while [ ! -f go ]; do sleep 0.05; done; echo one > out1; exit 7",
        ],
    );
    poll("the first child starts", EXIT_BOUND, || {
        if dir.path().join("started1").exists() {
            Ok(())
        } else {
            Err("no started1".into())
        }
    });
    let holder = agent
        .kv_holder("job/.lock")
        .expect("the lock is held while the child runs");
    let session = agent.session_info(&holder).expect("the holder's session");
    assert_eq!(
        (&session["Name"], &session["TTL"]),
        (&json!("first"), &json!("15s"))
    );
    let pair = &agent.get("/v1/kv/job/.lock").json()[0];
    assert_eq!(pair["Flags"], LOCK_FLAG_VALUE, "Consul's lock flag: {pair}");

    // A second lock waits: its child must only run after the first's.
    let mut second = spawn_lock(
        &agent,
        dir.path(),
        &[
            "job",
            "if [ -f out1 ]; then echo ordered > out2; else echo overlap > out2; fi",
        ],
    );
    poll(
        "the second lock's session",
        EXIT_BOUND,
        || match session_count(&agent) {
            2 => Ok(()),
            n => Err(format!("{n} sessions")),
        },
    );
    assert_eq!(agent.kv_holder("job/.lock"), Some(holder.clone()));
    assert!(
        !dir.path().join("out2").exists(),
        "the second child ran early"
    );

    std::fs::write(dir.path().join("go"), b"").expect("touch go");
    let status = wait_exit(&mut first, "the first lock");
    assert_eq!(
        status.code(),
        Some(7),
        "muster lock exits with the child's code"
    );
    let status = wait_exit(&mut second, "the second lock");
    assert_eq!(status.code(), Some(0));
    let out2 = std::fs::read_to_string(dir.path().join("out2")).expect("out2");
    assert_eq!(out2, "ordered\n", "the children did not overlap");

    // Both gave up their locks and their sessions.
    assert_eq!(agent.kv_holder("job/.lock"), None);
    assert_eq!(session_count(&agent), 0, "sessions destroyed");
    assert!(agent.session_info(&holder).is_none());
}

#[test]
fn cli_lock_sigterm_stops_the_child_and_releases() {
    let agent = Agent::dev().wait_node_registered();
    let dir = tempfile::tempdir().expect("temp dir");
    let mut lock = spawn_lock(
        &agent,
        dir.path(),
        &["svc", "touch started; sleep 60; touch late"],
    );
    poll("the child starts", EXIT_BOUND, || {
        if dir.path().join("started").exists() {
            Ok(())
        } else {
            Err("no started".into())
        }
    });
    let holder = agent.kv_holder("svc/.lock").expect("held");

    let sent = muster_kill("TERM", lock.id());
    assert!(sent.success());
    let start = Instant::now();
    let status = wait_exit(&mut lock, "muster lock after SIGTERM");
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "took {:?} to stop",
        start.elapsed()
    );
    assert_eq!(status.code(), Some(128 + 15), "the child died of SIGTERM");
    assert_eq!(agent.kv_holder("svc/.lock"), None, "the lock was released");
    assert!(
        agent.session_info(&holder).is_none(),
        "the session was destroyed"
    );
    assert!(!dir.path().join("late").exists(), "the child did not go on");
}

/// `kill -<sig> <pid>`.
fn muster_kill(sig: &str, pid: u32) -> ExitStatus {
    std::process::Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .expect("run kill")
}

#[test]
fn cli_lock_usage_errors_help_and_direct_exec() {
    let run = |args: &[&str]| muster().args(args).output().expect("run muster");
    for help in ["--help", "-help", "-h"] {
        let out = run(&["lock", help]);
        assert!(out.status.success());
        assert!(String::from_utf8_lossy(&out.stdout).contains("Usage: muster lock"));
    }
    assert_eq!(
        one_line_error(&run(&["lock", "only-a-prefix"])),
        "Error! Key prefix and child command must be specified"
    );
    assert_eq!(
        one_line_error(&run(&["lock", "-n=0", "p", "true"])),
        "Error! Lock holder limit must be positive"
    );
    let unused = format!("127.0.0.1:{}", crate::harness::free_port());
    let line = one_line_error(&run(&["lock", "-http-addr", &unused, "p", "true"]));
    assert!(line.contains("connection refused"), "{line}");

    // -shell=false runs the words directly; the child's flags stay its own.
    let agent = Agent::dev().wait_node_registered();
    let dir = tempfile::tempdir().expect("temp dir");
    let mut lock = spawn_lock(
        &agent,
        dir.path(),
        &["-shell=false", "direct", "sh", "-c", "exit 5"],
    );
    assert_eq!(wait_exit(&mut lock, "direct lock").code(), Some(5));
    assert_eq!(session_count(&agent), 0);

    // -timeout gives up on a lock held elsewhere, leaving no session.
    let other = agent.session_create(&json!({}));
    assert!(agent.kv_put(
        &format!("held/.lock?acquire={other}&flags={LOCK_FLAG_VALUE}"),
        b""
    ));
    let mut lock = spawn_lock(&agent, dir.path(), &["-timeout=1s", "held", "touch ran"]);
    let status = wait_exit(&mut lock, "lock with -timeout");
    let mut err = String::new();
    std::io::Read::read_to_string(&mut lock.stderr.take().expect("piped"), &mut err)
        .expect("stderr");
    assert_eq!(status.code(), Some(1), "{err}");
    assert_eq!(
        err.trim_end(),
        "Error! Timed out after 1s waiting for the lock on held/.lock"
    );
    assert!(!dir.path().join("ran").exists());
    assert_eq!(session_count(&agent), 1, "only the other session is left");

    // A key that is not a lock key is not taken over.
    assert!(agent.kv_put("plain/.lock", b"data"));
    let out = run(&[
        "lock",
        "-http-addr",
        &agent.addr.to_string(),
        "plain",
        "true",
    ]);
    assert!(
        one_line_error(&out).contains("does not match lock use"),
        "{out:?}"
    );
    assert_eq!(session_count(&agent), 1);
}

//! `muster lock -n N`: Consul's semaphore protocol from the outside. With
//! `-n 2` and three contenders exactly two children run at any moment (an
//! observer samples the running children and `.lock`'s holders); a holder
//! killed with SIGKILL keeps its slot while its session lives and hands it
//! to the third once the session goes; a limit that disagrees with the
//! lock, or a mutex at the prefix, is refused; `-monitor-retry` decides
//! whether an agent restart costs the slot.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Child, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::agent_checks::poll;
use crate::harness::{free_port, muster, request, Agent};
use crate::session::SLACK;

/// Consul's `api.SemaphoreFlagValue`, on `.lock` and every contender key.
const SEMAPHORE_FLAG_VALUE: u64 = 0xe0f6_9a2b_aa41_4de0;

/// How long a `muster lock` may take to start its child or to exit.
const BOUND: Duration = Duration::from_secs(30);

/// A child that marks itself running with `h/<muster lock's pid>` (holding
/// its own pid, its process group) until the file `stop` appears, then
/// removes its mark. It gives up after 60 s, so nothing outlives the test.
const HOLD: &str = "echo $$ > h/$PPID; i=0; \
    while [ ! -f stop ] && [ $i -lt 1200 ]; do sleep 0.05; i=$((i+1)); done; rm -f h/$PPID";

/// `muster lock -http-addr <addr> <args>` in `dir`, not waited for.
fn spawn_lock(addr: &str, dir: &Path, args: &[&str]) -> Child {
    muster()
        .current_dir(dir)
        .env("SHELL", "/bin/sh")
        .arg("lock")
        .args(["-http-addr", addr])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn muster lock")
}

/// Wait (bounded) for `child` to exit; its status and stderr.
fn wait_exit(child: &mut Child, what: &str) -> (ExitStatus, String) {
    let status = poll(&format!("{what} exits"), BOUND, || {
        match child.try_wait().expect("try_wait") {
            Some(status) => Ok(status),
            None => Err("still running".into()),
        }
    });
    let mut err = String::new();
    if let Some(mut stderr) = child.stderr.take() {
        std::io::Read::read_to_string(&mut stderr, &mut err).expect("read stderr");
    }
    (status, err)
}

/// Exit 1 and exactly one line on stderr; returns it.
fn one_line_error(out: &Output) -> String {
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "exit status; stderr: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err:?}");
    err.trim_end().to_string()
}

/// The `muster lock` pids whose child is running (the marks in `h/`).
fn running(dir: &Path) -> BTreeSet<u32> {
    std::fs::read_dir(dir.join("h"))
        .expect("read h/")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect()
}

/// `PREFIX/.lock`'s holders (its `Limit` checked against `limit`), or
/// `None` if the key is missing.
fn holders(agent: &Agent, prefix: &str, limit: u64) -> Option<BTreeSet<String>> {
    let pair = agent.kv_get(&format!("{prefix}/.lock"))?;
    assert_eq!(pair.flags, SEMAPHORE_FLAG_VALUE, "{prefix}/.lock flags");
    let lock: serde_json::Value = serde_json::from_slice(&pair.value).expect(".lock holds JSON");
    assert_eq!(lock["Limit"], limit, "{lock}");
    let set = lock["Holders"].as_object().expect("Holders is a map");
    assert!(set.values().all(|v| *v == true), "{lock}");
    Some(set.keys().cloned().collect())
}

/// Session name → ID, for every session the agent has.
fn sessions(agent: &Agent) -> Vec<(String, String)> {
    let list = agent.get("/v1/session/list").json();
    list.as_array()
        .expect("session list")
        .iter()
        .map(|s| {
            let field = |k: &str| s[k].as_str().expect("string").to_string();
            (field("Name"), field("ID"))
        })
        .collect()
}

/// The keys under `prefix/` (`?keys`), empty if none.
fn keys(agent: &Agent, prefix: &str) -> Vec<String> {
    let resp = agent.get(&format!("/v1/kv/{prefix}/?keys"));
    match resp.status {
        404 => Vec::new(),
        200 => resp.strings(),
        s => panic!("keys {prefix}: {s} {}", resp.text()),
    }
}

/// What the observer saw at one moment: running children, `.lock` holders.
type Sample = (Instant, usize, usize);

#[test]
fn semaphore_two_of_three_hold_and_a_killed_holders_slot_passes_on() {
    let agent = Agent::dev().wait_node_registered();
    let addr = agent.addr.to_string();
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir(dir.path().join("h")).expect("mkdir h");

    // The observer samples running children and `.lock`'s raw holders.
    let stop = Arc::new(AtomicBool::new(false));
    let samples: Arc<Mutex<Vec<Sample>>> = Arc::default();
    let observer = {
        let (stop, samples, path) = (stop.clone(), samples.clone(), dir.path().to_path_buf());
        let agent_addr = agent.addr;
        thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                let children = running(&path).len();
                let resp = request(agent_addr, "GET", "/v1/kv/sem/.lock", b"").expect("GET");
                let held = match resp.status {
                    404 => 0,
                    _ => {
                        let raw = resp.kv_pairs().pop().expect("one pair").value;
                        let lock: serde_json::Value = serde_json::from_slice(&raw).expect("JSON");
                        lock["Holders"].as_object().map_or(0, |h| h.len())
                    }
                };
                samples
                    .lock()
                    .expect("samples")
                    .push((Instant::now(), children, held));
                thread::sleep(Duration::from_millis(10));
            }
        })
    };

    let mut contenders: Vec<Child> = (0..3)
        .map(|i| {
            spawn_lock(
                &addr,
                dir.path(),
                &["-n", "2", "-name", &format!("c{i}"), "sem", HOLD],
            )
        })
        .collect();
    let pids: Vec<u32> = contenders.iter().map(Child::id).collect();
    poll("two children running, three contenders", BOUND, || {
        let (run, keys) = (running(dir.path()), keys(&agent, "sem"));
        if run.len() == 2 && keys.len() == 4 {
            Ok(())
        } else {
            Err(format!("running {run:?}, keys {keys:?}"))
        }
    });
    let two_started = Instant::now();
    let session_of = |i: usize| {
        let name = format!("c{i}");
        sessions(&agent)
            .into_iter()
            .find(|(n, _)| *n == name)
            .map(|(_, id)| id)
            .unwrap_or_else(|| panic!("no session named {name}"))
    };
    let ids: Vec<String> = (0..3).map(session_of).collect();
    let run = running(dir.path());
    let held: Vec<usize> = (0..3).filter(|&i| run.contains(&pids[i])).collect();
    let waiting = (0..3).find(|i| !held.contains(i)).expect("one waits");
    // Each contender holds its own key with its session; `.lock` lists the
    // two running ones.
    for (i, id) in ids.iter().enumerate() {
        let pair = agent.kv_get(&format!("sem/{id}")).expect("contender key");
        assert_eq!(pair.flags, SEMAPHORE_FLAG_VALUE);
        assert_eq!(
            agent.kv_holder(&format!("sem/{id}")).as_deref(),
            Some(id.as_str()),
            "c{i}"
        );
        let info = agent.session_info(id).expect("session");
        assert_eq!(
            (&info["TTL"], &info["Behavior"]),
            (&"15s".into(), &"delete".into())
        );
    }
    let expect: BTreeSet<String> = held.iter().map(|&i| ids[i].clone()).collect();
    assert_eq!(holders(&agent, "sem", 2), Some(expect));

    // SIGKILL one holder and its child's process group: a crashed host.
    let victim = held[0];
    let survivor = held[1];
    let pgid = std::fs::read_to_string(dir.path().join(format!("h/{}", pids[victim])))
        .expect("mark")
        .trim()
        .to_string();
    contenders[victim].kill().expect("SIGKILL muster lock");
    contenders[victim].wait().expect("reap");
    let killed = std::process::Command::new("kill")
        .args(["-KILL", "--", &format!("-{pgid}")])
        .status()
        .expect("kill");
    assert!(killed.success());
    std::fs::remove_file(dir.path().join(format!("h/{}", pids[victim]))).expect("unmark");
    let killed_at = Instant::now();

    // Its session lives on (TTL 15 s), so its slot stays taken.
    thread::sleep(Duration::from_secs(2));
    assert_eq!(running(dir.path()), BTreeSet::from([pids[survivor]]));
    assert!(holders(&agent, "sem", 2)
        .expect("lock")
        .contains(&ids[victim]));

    // The session goes (as its TTL would make it): its contender key goes
    // with it, and the waiting contender takes the slot.
    let resp = agent.put(&format!("/v1/session/destroy/{}", ids[victim]), b"");
    assert_eq!((resp.status, resp.bool()), (200, true));
    let gone_at = Instant::now();
    poll("the third child runs", SLACK * 2, || {
        let run = running(dir.path());
        if run.contains(&pids[waiting]) {
            Ok(())
        } else {
            Err(format!("running {run:?}"))
        }
    });
    let third_started = Instant::now();
    println!(
        "slot passed on {:?} after the session went",
        third_started - gone_at
    );
    assert_eq!(
        running(dir.path()),
        BTreeSet::from([pids[survivor], pids[waiting]])
    );
    assert_eq!(
        holders(&agent, "sem", 2),
        Some(BTreeSet::from([
            ids[survivor].clone(),
            ids[waiting].clone()
        ])),
        "the dead holder was pruned as the third took its slot"
    );
    assert!(agent.kv_get(&format!("sem/{}", ids[victim])).is_none());
    thread::sleep(Duration::from_millis(500));

    std::fs::write(dir.path().join("stop"), b"").expect("touch stop");
    let stopped_at = Instant::now();
    for i in [survivor, waiting] {
        let (status, err) = wait_exit(&mut contenders[i], &format!("c{i}"));
        assert_eq!(status.code(), Some(0), "c{i}: {err}");
    }
    stop.store(true, Ordering::SeqCst);
    observer.join().expect("observer");

    // Every holder left: the lock, the contender keys and the sessions are
    // gone.
    assert_eq!(keys(&agent, "sem"), Vec::<String>::new());
    assert_eq!(sessions(&agent), Vec::new());

    let samples = samples.lock().expect("samples").clone();
    assert!(samples.len() > 100, "{} samples", samples.len());
    for &(at, children, held) in &samples {
        assert!(children <= 2, "{children} children ran at once");
        assert!(held <= 2, "{held} holders in .lock at once");
        let steady =
            (at > two_started && at < killed_at) || (at > third_started && at < stopped_at);
        if steady {
            assert_eq!((children, held), (2, 2), "two hold it at {at:?}");
        }
    }
}

#[test]
fn semaphore_limit_mismatch_and_a_mutex_at_the_prefix_are_refused() {
    let agent = Agent::dev().wait_node_registered();
    let addr = agent.addr.to_string();
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir(dir.path().join("h")).expect("mkdir h");
    let run = |args: &[&str]| {
        muster()
            .current_dir(dir.path())
            .args(["lock", "-http-addr", &addr])
            .args(args)
            .output()
            .expect("run muster lock")
    };

    let mut sem = spawn_lock(&addr, dir.path(), &["-n", "2", "lim", HOLD]);
    let mut mutex = spawn_lock(&addr, dir.path(), &["mtx", HOLD]);
    poll("both children run", BOUND, || {
        match running(dir.path()).len() {
            2 => Ok(()),
            n => Err(format!("{n} running")),
        }
    });
    let before = sessions(&agent);
    assert_eq!(before.len(), 2);

    assert_eq!(
        one_line_error(&run(&["-n", "3", "lim", "touch ran"])),
        "Error! Semaphore limit conflict on lim/.lock (lock: 2, local: 3): use -n=2 as the \
         other holders do"
    );
    let line = one_line_error(&run(&["lim", "touch ran"]));
    assert!(line.contains("lim/.lock does not match lock use"), "{line}");
    let line = one_line_error(&run(&["-n=2", "mtx", "touch ran"]));
    assert_eq!(
        line,
        format!(
            "Error! Existing key mtx/.lock does not match semaphore use (flags {}): another \
             kind of lock uses this prefix; use -n with its limit or another prefix",
            0x2ddc_cbc0_58a5_0c18_u64
        )
    );
    assert!(!dir.path().join("ran").exists());
    // The refused contenders left nothing behind.
    assert_eq!(sessions(&agent), before);
    assert_eq!(keys(&agent, "lim").len(), 2, "{:?}", keys(&agent, "lim"));

    std::fs::write(dir.path().join("stop"), b"").expect("touch stop");
    for (child, what) in [(&mut sem, "semaphore"), (&mut mutex, "mutex")] {
        let (status, err) = wait_exit(child, what);
        assert_eq!(status.code(), Some(0), "{what}: {err}");
    }
    assert_eq!(keys(&agent, "lim"), Vec::<String>::new());
    assert_eq!(sessions(&agent), Vec::new());
}

#[test]
fn semaphore_monitor_retry_flag_is_parsed_and_documented() {
    let out = muster().args(["lock", "-help"]).output().expect("help");
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    // Consul's spelling, with its default.
    let flag = help
        .find("-monitor-retry <N>")
        .unwrap_or_else(|| panic!("no -monitor-retry in {help}"));
    let entry = &help[flag..];
    let entry = &entry[..entry.find("\n\n      -").unwrap_or(entry.len())];
    assert!(entry.contains("[default: 3]"), "{entry}");
    assert!(entry.contains("counts as lost"), "{entry}");
    assert_eq!(
        one_line_error(
            &muster()
                .args(["lock", "-monitor-retry=-1", "p", "true"])
                .output()
                .expect("run")
        ),
        "Error! Number for 'monitor-retry' must be >= 0"
    );
    let out = muster()
        .args(["lock", "-monitor-retry=x", "p", "true"])
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("monitor-retry"));
}

#[test]
fn semaphore_monitor_retry_decides_whether_an_agent_restart_costs_the_slot() {
    let port = free_port().to_string();
    let mut agent =
        Agent::start(&["-server", "-bootstrap", "-http-port", &port], true).wait_node_registered();
    let addr = agent.addr.to_string();
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir(dir.path().join("h")).expect("mkdir h");
    let mut strict = spawn_lock(
        &addr,
        dir.path(),
        &["-n=2", "-monitor-retry=0", "strict", HOLD],
    );
    let mut patient = spawn_lock(
        &addr,
        dir.path(),
        &["-n=2", "-monitor-retry=30", "patient", HOLD],
    );
    poll("both children run", BOUND, || {
        match running(dir.path()).len() {
            2 => Ok(()),
            n => Err(format!("{n} running")),
        }
    });
    let patient_session = holders(&agent, "patient", 2).expect("held");

    agent.restart();
    let agent = agent.wait_node_registered();
    // With no retries, the first failed read loses the slot: the child is
    // stopped and `muster lock` says why.
    let (status, err) = wait_exit(&mut strict, "the -monitor-retry=0 lock");
    assert_eq!(status.code(), Some(1), "{err}");
    println!("-monitor-retry=0 after the restart: {}", err.trim_end());
    assert!(err.starts_with("Error! Lock lost ("), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    poll("the stopped child is gone", BOUND, || {
        let run = running(dir.path());
        // A child killed by SIGTERM leaves its mark: check its process.
        let alive = std::fs::read_to_string(dir.path().join(format!("h/{}", strict.id())))
            .ok()
            .is_some_and(|pid| Path::new(&format!("/proc/{}", pid.trim())).exists());
        if alive {
            Err(format!("running {run:?}"))
        } else {
            Ok(())
        }
    });

    // With 30 retries the outage is ridden out: the child keeps running
    // and the slot is still this session's, through a few more blocking
    // reads and a renewal.
    let deadline = Instant::now() + Duration::from_secs(9);
    while Instant::now() < deadline {
        assert!(
            patient.try_wait().expect("try_wait").is_none(),
            "the patient lock exited"
        );
        thread::sleep(Duration::from_millis(200));
    }
    assert!(running(dir.path()).contains(&patient.id()));
    for id in &patient_session {
        assert!(agent.session_info(id).is_some(), "session {id} lives");
    }
    assert_eq!(holders(&agent, "patient", 2), Some(patient_session));

    std::fs::write(dir.path().join("stop"), b"").expect("touch stop");
    let (status, err) = wait_exit(&mut patient, "the -monitor-retry=30 lock");
    assert_eq!(status.code(), Some(0), "{err}");
    assert_eq!(keys(&agent, "patient"), Vec::<String>::new());
}

//! The log as a tool (issue 17): `muster log inspect|dump|verify|replay` on a
//! stopped server's data directory. They refuse while the agent runs; verify
//! finds a flipped byte and names the file and offset; `verify -views` finds
//! a view row changed behind the engine's back, and the fix it prints (move
//! the views aside and start) works; `replay -to N` answers as of N, across
//! a snapshot and a purged log.

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use serde_json::Value;

use crate::harness::{muster, Agent};

fn log_tool(args: &[&str], dir: &Path) -> Output {
    muster()
        .arg("log")
        .args(args)
        .arg("-data-dir")
        .arg(dir)
        .output()
        .expect("run muster log")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A server whose log has been snapshotted and purged (threshold 64, 16
/// entries kept), with history: `app/k050` written twice, keys deleted, a
/// service registered. Returns the server (stopped) and the index of the
/// first write of `app/k050` and of the last write.
fn history() -> (Agent, u64, u64) {
    let mut a = Agent::start_with_config(
        &["-server", "-bootstrap"],
        true,
        r#"{"raft_snapshot_threshold": 64, "raft_trailing_logs": 16}"#,
    );
    for i in 0..200 {
        assert!(a.kv_put(&format!("app/k{i:03}"), format!("v{i}").as_bytes()));
    }
    let first = a.get("/v1/kv/app/k050").index();
    for i in 200..260 {
        assert!(a.kv_put(&format!("app/k{i:03}"), format!("v{i}").as_bytes()));
    }
    assert!(a.kv_put("app/k050", b"second"));
    assert_eq!(a.delete("/v1/kv/app/k051").status, 200);
    let r = a.put(
        "/v1/agent/service/register",
        br#"{"Name": "web", "ID": "web-1", "Port": 8080}"#,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    crate::harness::wait_until("web in the catalog", Duration::from_secs(10), || {
        a.get("/v1/catalog/service/web")
            .json()
            .as_array()
            .is_some_and(|v| !v.is_empty())
    });
    let last = a.get("/v1/catalog/service/web").index();

    // While the agent runs, the tools refuse and name it.
    let refused = log_tool(&["inspect"], &a.data_dir());
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        stderr(&refused).contains(&format!("pid {}", a.pid()))
            && stderr(&refused).contains("stop it first"),
        "{}",
        stderr(&refused)
    );
    let status = a.signal_and_wait("TERM", Duration::from_secs(10));
    assert!(status.success(), "{status:?}");
    (a, first, last)
}

#[test]
fn inspect_dump_and_replay_answer_from_the_log() {
    let (a, first, last) = history();
    let dir = a.data_dir();

    let inspect = log_tool(&["inspect"], &dir);
    assert!(inspect.status.success(), "{}", stderr(&inspect));
    let text = stdout(&inspect);
    // The log was purged behind a snapshot: it starts after 1, and the
    // snapshot is named with its index.
    let entries = text
        .lines()
        .find(|l| l.starts_with("entries: "))
        .expect(&text);
    let start: u64 = entries["entries: ".len()..]
        .split("..")
        .next()
        .and_then(|s| s.parse().ok())
        .expect(entries);
    assert!(start > 1, "log not purged: {text}");
    assert!(
        text.contains("snapshot: ") && text.contains(" at index "),
        "{text}"
    );
    let kvset = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("KvSet"))
        .and_then(|n| n.trim().parse::<u64>().ok())
        .expect(&text);

    // dump: the last write is a CatalogRegister of web-1, as JSON.
    let dump = log_tool(
        &["dump", "-from", &start.to_string(), "-format", "json"],
        &dir,
    );
    assert!(dump.status.success(), "{}", stderr(&dump));
    let lines: Vec<Value> = stdout(&dump)
        .lines()
        .map(|l| serde_json::from_str(l).expect(l))
        .collect();
    assert_eq!(lines[0]["Index"], start);
    // inspect counted the KvSet commands dump shows (the writes were
    // sequential: no batches).
    let dumped = lines.iter().filter(|l| l["Type"] == "KvSet").count() as u64;
    assert_eq!(kvset, dumped, "{text}");
    assert!(dumped > 0);
    let k050 = lines
        .iter()
        .find(|l| l["Command"]["KvSet"]["key"] == "app/k050")
        .expect("the second write of app/k050 is in the retained log");
    assert_eq!(k050["Command"]["KvSet"]["value"], "second");
    assert!(lines.iter().any(|l| l["Type"] == "CatalogRegister"
        && l["Command"]["CatalogRegister"]["service"]["id"] == "web-1"));

    // replay as of the last write.
    let at_last = log_tool(
        &[
            "replay",
            "-to",
            &last.to_string(),
            "-kv",
            "app/k050",
            "-service",
            "web",
        ],
        &dir,
    );
    assert!(at_last.status.success(), "{}", stderr(&at_last));
    let out = stdout(&at_last);
    assert!(out.starts_with("second\n"), "{out}");
    assert!(out.contains("web-1") && out.contains(":8080"), "{out}");

    let deleted = log_tool(
        &["replay", "-to", &last.to_string(), "-kv", "app/k051"],
        &dir,
    );
    assert_eq!(deleted.status.code(), Some(1));
    assert!(
        stderr(&deleted).contains("No key exists at: app/k051"),
        "{}",
        stderr(&deleted)
    );

    // Before the purge point the state is gone, and the tool says so;
    // from the snapshot on, the old value comes back.
    let early = log_tool(
        &["replay", "-to", &first.to_string(), "-kv", "app/k050"],
        &dir,
    );
    if first < start - 1 {
        assert_eq!(early.status.code(), Some(1), "{}", stdout(&early));
        assert!(
            stderr(&early).contains("no longer kept"),
            "{}",
            stderr(&early)
        );
    }
    // Between the snapshot and the second write, the first value.
    let snapshot_at: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("snapshot: "))
        .and_then(|l| l.split(" at index ").nth(1))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .expect(&text);
    let second = k050["Index"].as_u64().expect("index");
    assert!(
        snapshot_at < second,
        "snapshot {snapshot_at}, second write {second}"
    );
    let mid = second - 1;
    let at_mid = log_tool(
        &["replay", "-to", &mid.to_string(), "-kv", "app/k050"],
        &dir,
    );
    assert!(at_mid.status.success(), "{}", stderr(&at_mid));
    assert_eq!(stdout(&at_mid), "v50\n");
    let at_second = log_tool(
        &["replay", "-to", &second.to_string(), "-kv", "app/k050"],
        &dir,
    );
    assert_eq!(stdout(&at_second), "second\n", "{}", stderr(&at_second));

    // -out keeps the rebuilt views; a non-empty -out is refused.
    let out_dir = tempfile::tempdir().expect("tempdir");
    let kept = out_dir.path().join("views");
    let r = log_tool(
        &[
            "replay",
            "-to",
            &mid.to_string(),
            "-out",
            kept.to_str().expect("utf8"),
        ],
        &dir,
    );
    assert!(r.status.success(), "{}", stderr(&r));
    assert!(kept.read_dir().expect("-out written").count() > 0);
    let again = log_tool(
        &[
            "replay",
            "-to",
            &mid.to_string(),
            "-out",
            kept.to_str().expect("utf8"),
        ],
        &dir,
    );
    assert_eq!(again.status.code(), Some(1));
    assert!(
        stderr(&again).contains("is not empty"),
        "{}",
        stderr(&again)
    );

    let past = log_tool(&["replay", "-to", &(last + 1000).to_string()], &dir);
    assert_eq!(past.status.code(), Some(1));
    assert!(
        stderr(&past).contains("the log ends at"),
        "{}",
        stderr(&past)
    );
}

#[test]
fn verify_names_a_flipped_byte_and_a_changed_view_row() {
    let (mut a, _, _) = history();
    let dir = a.data_dir();

    let sound = log_tool(&["verify", "-views"], &dir);
    assert!(
        sound.status.success(),
        "{}{}",
        stdout(&sound),
        stderr(&sound)
    );
    assert!(stdout(&sound).contains(": sound"), "{}", stdout(&sound));
    assert!(
        stdout(&sound).contains("the live views match"),
        "{}",
        stdout(&sound)
    );

    // A row changed behind the engine's back: app/k100 removed from the
    // live views.
    {
        let db = fjall::Database::builder(dir.join("views"))
            .open()
            .expect("open views");
        let kv = db
            .keyspace("kv", fjall::KeyspaceCreateOptions::default)
            .expect("kv keyspace");
        kv.remove("app/k100").expect("remove row");
        db.persist(fjall::PersistMode::SyncAll).expect("persist");
    }
    let changed = log_tool(&["verify", "-views"], &dir);
    assert_eq!(changed.status.code(), Some(1), "{}", stdout(&changed));
    let text = stdout(&changed);
    assert!(
        text.contains(r#"views differ: kv "app/k100": only in the first"#),
        "{text}"
    );
    assert!(text.contains("move ") && text.contains("aside"), "{text}");

    // The fix it prints: move the views aside and start; they are rebuilt
    // from the snapshot and the log, and the key is back.
    std::fs::rename(dir.join("views"), dir.join("views.bad")).expect("move views");
    a.restart();
    assert_eq!(
        a.kv_get("app/k100").map(|p| p.value),
        Some(b"v100".to_vec())
    );
    a.signal_and_wait("TERM", Duration::from_secs(10));
    let fixed = log_tool(&["verify", "-views"], &dir);
    assert!(fixed.status.success(), "{}", stdout(&fixed));

    // A flipped byte in the middle of the last segment: verify names the
    // segment and the record's offset, and exits 1.
    let segment = std::fs::read_dir(dir.join("raft"))
        .expect("raft dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .max()
        .expect("a segment");
    let inspect = stdout(&log_tool(&["inspect"], &dir));
    let name = segment
        .file_name()
        .and_then(|n| n.to_str())
        .expect("name")
        .to_string();
    let records: u64 = inspect
        .lines()
        .find(|l| l.contains(&name))
        .and_then(|l| l.split_whitespace().nth(2))
        .and_then(|n| n.parse().ok())
        .expect(&inspect);
    assert!(records >= 10, "{inspect}");
    let mut bytes = std::fs::read(&segment).expect("read segment");
    let at = 600;
    bytes[at] ^= 0x20;
    std::fs::write(&segment, &bytes).expect("write segment");
    let damaged = log_tool(&["verify"], &dir);
    assert_eq!(damaged.status.code(), Some(1));
    let text = stdout(&damaged);
    let line = text
        .lines()
        .find(|l| l.starts_with("damaged: "))
        .expect(&text);
    assert!(line.contains(&segment.display().to_string()), "{line}");
    let offset: usize = line
        .split("at offset ")
        .nth(1)
        .and_then(|r| r.split(':').next())
        .and_then(|n| n.parse().ok())
        .expect(line);
    assert!(offset <= at && at - offset < 4096, "{line}");
    assert!(
        line.contains("bad CRC") && line.contains("followed by a valid record"),
        "{line}"
    );
    assert!(text.contains("DAMAGED"), "{text}");
}

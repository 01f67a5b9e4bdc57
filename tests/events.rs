//! User events (`/v1/event/fire/:name`, `/v1/event/list`, `muster event`)
//! on a server and two client agents gossiping together: an event fired
//! on one agent is listed on every agent within 2 s, with Consul's JSON and
//! `X-Consul-Index` (the ID's halves XORed); a blocking list wakes on it;
//! node, service and tag filters decide which agents list an event; bad
//! input answers Consul's 400/500 with one line.

use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::{muster, request, wait_until, Agent};

/// The bound the issue sets for an event to reach every agent.
const SPREAD: Duration = Duration::from_secs(2);

/// Consul's `uuidToUint64`, written out independently: the UUID's first 16
/// hex digits XOR its last 16.
fn uuid_index(id: &str) -> u64 {
    let hex: String = id.chars().filter(|c| *c != '-').collect();
    assert_eq!(hex.len(), 32, "not a UUID: {id}");
    let low = u64::from_str_radix(&hex[..16], 16).expect("hex");
    let high = u64::from_str_radix(&hex[16..], 16).expect("hex");
    low ^ high
}

/// A server (`s`) and two client agents (`c1`, `c2`) that joined it, once
/// all three see each other alive.
fn three_agents(prefix: &str) -> [Agent; 3] {
    let server = Agent::start(
        &["-server", "-bootstrap", "-node", &format!("{prefix}-s")],
        true,
    );
    let seed = format!(
        "127.0.0.1:{}",
        server.flag("-serf-lan-port").expect("-serf-lan-port")
    );
    let client = |n: &str| {
        Agent::start(
            &["-node", &format!("{prefix}-{n}"), "-retry-join", &seed],
            true,
        )
    };
    let agents = [server, client("c1"), client("c2")];
    wait_until(
        "three agents alive everywhere",
        Duration::from_secs(20),
        || {
            agents
                .iter()
                .all(|a| a.alive_members_at("/v1/agent/members").len() == 3)
        },
    );
    agents
}

/// The IDs `a` lists (`/v1/event/list` plus `query`), oldest first.
fn listed(a: &Agent, query: &str) -> Vec<String> {
    let r = a.get(&format!("/v1/event/list{query}"));
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
        .as_array()
        .expect("a list")
        .iter()
        .map(|e| e["ID"].as_str().expect("ID").to_string())
        .collect()
}

/// Fire `name` on `a` with `query` (filters) and `payload`; the event.
fn fire(a: &Agent, name: &str, query: &str, payload: &[u8]) -> Value {
    let r = a.put(&format!("/v1/event/fire/{name}{query}"), payload);
    assert_eq!(r.status, 200, "fire {name}{query}: {}", r.text());
    r.json()
}

#[test]
fn event_fired_on_one_agent_is_listed_everywhere_and_wakes_blocking_lists() {
    let agents = three_agents("ev1");
    for a in &agents {
        let r = a.get("/v1/event/list");
        assert_eq!((r.status, r.text().as_str()), (200, "[]"));
        assert_eq!(r.index(), 1, "no events: index 1, never 0");
    }

    // A blocking list on the other client, started before the fire: it
    // must still be waiting, then wake with the event.
    let watched = agents[2].addr;
    let blocked = thread::spawn(move || {
        let r = request(watched, "GET", "/v1/event/list?index=1&wait=30s", b"");
        (r, Instant::now())
    });
    thread::sleep(Duration::from_millis(500));
    assert!(!blocked.is_finished(), "a list at the current index blocks");

    let fired_at = Instant::now();
    let event = fire(&agents[1], "deploy", "", b"v42");
    let id = event["ID"].as_str().expect("ID").to_string();
    assert_eq!(id.len(), 36, "{event}");
    assert_eq!(event["Name"], "deploy");
    assert_eq!(event["Payload"], "djQy", "base64 of the body");
    assert_eq!(
        (
            &event["NodeFilter"],
            &event["ServiceFilter"],
            &event["TagFilter"]
        ),
        (&Value::from(""), &Value::from(""), &Value::from(""))
    );
    assert_eq!(event["Version"], 1);
    assert_eq!(event["LTime"], 0, "Consul's fire answer carries no time");

    let took = wait_until("the event listed on every agent", SPREAD, || {
        agents.iter().all(|a| listed(a, "") == [id.clone()])
    });
    println!("listed everywhere {took:?} after the fire");
    for a in &agents {
        let r = a.get("/v1/event/list");
        assert_eq!(r.index(), uuid_index(&id), "X-Consul-Index on {}", a.addr);
        let listed = &r.json()[0];
        for field in ["ID", "Name", "Payload", "Version"] {
            assert_eq!(listed[field], event[field], "{field} on {}", a.addr);
        }
        assert_eq!(listed["LTime"], 0, "c1's clock was at 0 when it fired");
        assert_eq!(listed_count(a, "?name=deploy"), 1);
        let other = a.get("/v1/event/list?name=other");
        assert_eq!((other.text().as_str(), other.index()), ("[]", 1));
    }

    let (r, woke_at) = blocked.join().expect("blocking list thread");
    let r = r.expect("blocking list");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.index(), uuid_index(&id), "a new index");
    assert_eq!(r.json()[0]["ID"], id.as_str());
    assert!(woke_at >= fired_at, "returned before the fire");
    assert!(
        woke_at.duration_since(fired_at) < SPREAD,
        "woke {:?} after the fire",
        woke_at.duration_since(fired_at)
    );

    // A second event: oldest first, the index follows the newest, and a
    // list at the old index answers at once.
    let second = fire(&agents[0], "restart", "", b"");
    assert_eq!(second["Payload"], Value::Null, "no body, no payload");
    let second_id = second["ID"].as_str().expect("ID").to_string();
    wait_until("the second event on every agent", SPREAD, || {
        agents
            .iter()
            .all(|a| listed(a, "") == [id.clone(), second_id.clone()])
    });
    let r = agents[1].get(&format!(
        "/v1/event/list?index={}&wait=30s",
        uuid_index(&id)
    ));
    assert_eq!(r.index(), uuid_index(&second_id));
    // The server had witnessed time 0: its clock was past it.
    assert_eq!(r.json()[1]["LTime"], 1, "{}", r.text());
}

fn listed_count(a: &Agent, query: &str) -> usize {
    listed(a, query).len()
}

#[test]
fn event_filters_pick_the_agents_that_list_it() {
    let agents = three_agents("ev2");
    let [server, c1, c2] = &agents;
    let r = c2.put(
        "/v1/agent/service/register",
        br#"{"Name":"web","ID":"web-1","Tags":["v2"],"Port":8080}"#,
    );
    assert_eq!(r.status, 200, "{}", r.text());

    let id = |e: Value| e["ID"].as_str().expect("ID").to_string();
    let web = id(fire(server, "web-only", "?service=%5Eweb%24", b""));
    let web_v2 = id(fire(server, "web-v2", "?service=web&tag=%5Ev2%24", b""));
    let web_v1 = id(fire(server, "web-v1", "?service=web&tag=%5Ev1%24", b""));
    let node_c1 = id(fire(server, "c1-only", "?node=%5Eev2-c1%24", b""));
    // Through the CLI, from a client: the same filters, Consul's output.
    let out = muster()
        .args(["event", "-name=cli", "-service=web", "-tag=v2"])
        .args(["-http-addr", &c1.addr.to_string(), "from-cli"])
        .output()
        .expect("run muster event");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cli = stdout
        .trim()
        .strip_prefix("Event ID: ")
        .unwrap_or_else(|| panic!("no Event ID line: {stdout:?}"))
        .to_string();
    let everyone = id(fire(server, "everyone", "", b""));

    wait_until("each filtered event on its agent", SPREAD, || {
        listed(c2, "") == [web.clone(), web_v2.clone(), cli.clone(), everyone.clone()]
            && listed(c1, "") == [node_c1.clone(), everyone.clone()]
    });
    // The server fired them all (so it has seen them all) and runs no
    // web: it lists only the unfiltered one.
    assert_eq!(listed(server, ""), [everyone]);
    assert!(!listed(c2, "").contains(&web_v1), "no service has tag v1");
    let r = c2.get("/v1/event/list?name=cli");
    assert_eq!(r.json()[0]["Payload"], "ZnJvbS1jbGk=", "base64 of from-cli");
    assert_eq!(r.index(), uuid_index(&cli));

    // Bad flags are refused before anything is sent, in Consul's words.
    for (args, msg) in [
        (vec!["event"], "Event name must be specified"),
        (
            vec!["event", "-name=x", "-node=["],
            "Failed to compile node filter regexp",
        ),
        (
            vec!["event", "-name=x", "-tag=v2"],
            "Cannot provide tag filter without service filter.",
        ),
    ] {
        let out = muster()
            .args(&args)
            .args(["-http-addr", &c1.addr.to_string()])
            .output()
            .expect("run muster event");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(stderr.contains(msg), "{args:?}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    }
}

#[test]
fn event_bad_input_answers_consuls_errors() {
    let agent = Agent::dev();
    let one_line = |status: u16, path: &str, body: &[u8], starts: &str| {
        let r = agent.put(path, body);
        let text = r.text();
        assert_eq!(r.status, status, "{path}: {text}");
        assert!(text.starts_with(starts), "{path}: {text}");
        assert_eq!(text.trim_end().lines().count(), 1, "{path}: {text}");
    };
    one_line(400, "/v1/event/fire/", b"", "Missing name");
    one_line(
        500,
        "/v1/event/fire/x?node=%5B",
        b"",
        "Invalid node filter: error parsing regexp: unclosed character class: `[`",
    );
    one_line(
        500,
        "/v1/event/fire/x?service=a(",
        b"",
        "Invalid service filter: error parsing regexp:",
    );
    one_line(
        500,
        "/v1/event/fire/x?tag=v2",
        b"",
        "Cannot provide tag filter without service filter",
    );
    one_line(
        500,
        "/v1/event/fire/x",
        &[b'p'; 600],
        "user event exceeds configured limit of 512 bytes before encoding",
    );
    one_line(
        500,
        "/v1/event/fire/x",
        &[b'p'; 480],
        "user event exceeds configured limit of 512 bytes before encoding",
    );
    one_line(
        500,
        "/v1/event/fire/x?dc=nowhere",
        b"",
        "No path to datacenter",
    );
    assert_eq!(agent.get("/v1/event/fire/x").status, 405);
    assert_eq!(agent.put("/v1/event/list", b"").status, 405);
    let r = agent.get("/v1/event/list?index=abc");
    assert_eq!((r.status, r.text().as_str()), (400, "Invalid index"));
    assert_eq!(listed_count(&agent, ""), 0, "nothing refused was fired");

    // With no event, a list at index 1 waits out its `wait`, then answers.
    let start = Instant::now();
    let r = agent.get("/v1/event/list?index=1&wait=1s");
    assert!(
        start.elapsed() >= Duration::from_secs(1),
        "{:?}",
        start.elapsed()
    );
    assert_eq!((r.status, r.text().as_str(), r.index()), (200, "[]", 1));

    // On a lone agent the event is listed at once.
    let e = fire(&agent, "solo", "", b"x");
    assert_eq!(
        listed(&agent, ""),
        [e["ID"].as_str().expect("ID").to_string()]
    );
}

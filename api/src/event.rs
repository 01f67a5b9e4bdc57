//! User events (`/v1/event/fire/:name`, `/v1/event/list`): Consul's
//! `consul event`, fired into the datacenter's LAN gossip and listed by
//! each agent that received it.
//!
//! This module owns the HTTP side and the agent's rules: validating an
//! event before it is fired (Consul's `validateUserEventParams`), whether
//! this agent takes an event its filters address (`shouldProcessUserEvent`:
//! node name, local services, their tags), the JSON shape, and the list's
//! index and blocking (`uuidToUint64`). Gossip carries and records events
//! through [`crate::ClusterBackend`]; nothing here knows how.
//!
//! Both routes are answered by the agent itself, server or client: events
//! are per agent. A fire for another datacenter (`?dc=`) goes to one of its
//! servers, through a server when this is a client agent.

use std::collections::HashMap;
use std::fmt::Display;

use base64::Engine as _;
use bytes::Bytes;
use hyper::header::HeaderValue;
use hyper::{Request, Response};
use muster_agent::LocalService;
use regex::Regex;
use serde::Serialize;

use crate::cluster;
use crate::error::{Error, Result};
use crate::response::{Body, X_CONSUL_INDEX};
use crate::router::{Ctx, Serving};
use crate::routes::{exact, on_agent, under, Route, GET, PUT};

/// The largest event (serf's default `UserEventSizeLimit`): the gossip
/// layer refuses more than this, counting the ID, name, payload and
/// filters. A body larger than this is refused without being read whole.
pub const USER_EVENT_SIZE_LIMIT: usize = 512;

/// Consul's internal remote-exec event; with remote exec disabled (its
/// default) an agent neither runs nor lists it.
const REMOTE_EXEC_NAME: &str = "_rexec";

/// A user event, as the cluster backend fires and returns it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UserEvent {
    /// A UUID, assigned when fired.
    pub id: String,
    /// The event's name.
    pub name: String,
    /// Opaque payload; empty is none (JSON `null`).
    pub payload: Vec<u8>,
    /// A regular expression on node names ("" = every node).
    pub node_filter: String,
    /// A regular expression on the agent's services ("" = every node).
    pub service_filter: String,
    /// A regular expression on those services' tags (needs a service
    /// filter).
    pub tag_filter: String,
    /// The format version (1).
    pub version: u32,
    /// The Lamport time it was fired at.
    pub ltime: u64,
}

/// Consul's `UserEvent` JSON, in Consul's field order.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct EventJson<'a> {
    #[serde(rename = "ID")]
    id: &'a str,
    name: &'a str,
    /// Base64, or `null` without a payload.
    payload: Option<String>,
    node_filter: &'a str,
    service_filter: &'a str,
    tag_filter: &'a str,
    version: u32,
    #[serde(rename = "LTime")]
    ltime: u64,
}

impl<'a> From<&'a UserEvent> for EventJson<'a> {
    fn from(e: &'a UserEvent) -> Self {
        EventJson {
            id: &e.id,
            name: &e.name,
            payload: (!e.payload.is_empty())
                .then(|| base64::engine::general_purpose::STANDARD.encode(&e.payload)),
            node_filter: &e.node_filter,
            service_filter: &e.service_filter,
            tag_filter: &e.tag_filter,
            version: e.version,
            ltime: e.ltime,
        }
    }
}

/// The index of a list whose newest event is `id`: the UUID's two 64-bit
/// halves XORed (Consul's `uuidToUint64`). Not monotonic, so a blocking
/// list waits while the index *equals* the client's. A malformed ID gives
/// 0 (sent as 1).
pub fn uuid_to_index(id: &str) -> u64 {
    let half = |parts: &[std::ops::Range<usize>]| -> Option<u64> {
        let hex: String = parts
            .iter()
            .map(|r| id.get(r.clone()))
            .collect::<Option<_>>()?;
        if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        u64::from_str_radix(&hex, 16).ok()
    };
    let shape = id.len() == 36 && [8, 13, 18, 23].iter().all(|&i| id.get(i..=i) == Some("-"));
    match (shape, half(&[0..8, 9..13, 14..18]), half(&[19..23, 24..36])) {
        (true, Some(low), Some(high)) => low ^ high,
        _ => 0,
    }
}

/// Compile a filter with Go's wording on one line:
/// ``error parsing regexp: unclosed character class: `[` ``.
pub fn compile_filter(pattern: &str) -> std::result::Result<Regex, String> {
    Regex::new(pattern).map_err(|e| {
        let why = match &e {
            regex::Error::Syntax(text) => text
                .lines()
                .rev()
                .find_map(|l| l.trim().strip_prefix("error: "))
                .unwrap_or("invalid syntax")
                .to_string(),
            other => other.to_string().replace('\n', " "),
        };
        format!("error parsing regexp: {why}: `{pattern}`")
    })
}

/// Consul's checks before firing (`validateUserEventParams`); the message
/// is a 500's body.
pub fn validate(e: &UserEvent) -> std::result::Result<(), String> {
    if e.name.is_empty() {
        return Err("User event missing name".into());
    }
    if !e.tag_filter.is_empty() && e.service_filter.is_empty() {
        return Err("Cannot provide tag filter without service filter".into());
    }
    for (what, pattern) in [
        ("node", &e.node_filter),
        ("service", &e.service_filter),
        ("tag", &e.tag_filter),
    ] {
        if !pattern.is_empty() {
            compile_filter(pattern).map_err(|why| format!("Invalid {what} filter: {why}"))?;
        }
    }
    Ok(())
}

/// Compiled filters, each compiled once per listing (`None`: invalid, and
/// an event with an invalid filter is taken by no agent).
#[derive(Default)]
struct Filters(HashMap<String, Option<Regex>>);

impl Filters {
    fn matches(&mut self, pattern: &str, text: &str) -> bool {
        self.0
            .entry(pattern.to_string())
            .or_insert_with(|| Regex::new(pattern).ok())
            .as_ref()
            .is_some_and(|re| re.is_match(text))
    }
}

/// Whether this agent takes `e` (Consul's `shouldProcessUserEvent`): the
/// node filter matches `node`, and the service filter matches one of
/// `services` (by ID or name) that, with a tag filter, has a matching tag.
fn accepts<'a>(
    e: &UserEvent,
    node: &str,
    services: impl IntoIterator<Item = &'a LocalService>,
    filters: &mut Filters,
) -> bool {
    if e.name == REMOTE_EXEC_NAME {
        return false;
    }
    if !e.node_filter.is_empty() && !filters.matches(&e.node_filter, node) {
        return false;
    }
    if e.service_filter.is_empty() {
        return true;
    }
    services.into_iter().any(|local| {
        let s = &local.service;
        let named = filters.matches(&e.service_filter, &s.id)
            || filters.matches(&e.service_filter, &s.service);
        named
            && (e.tag_filter.is_empty() || s.tags.iter().any(|t| filters.matches(&e.tag_filter, t)))
    })
}

/// `PUT /v1/event/fire/:name` (`?node=`, `?service=`, `?tag=`, `?dc=`;
/// the body is the payload): the event as fired, with `LTime` 0 as
/// Consul answers (its agent hands the event to a server and never learns
/// the time); lists show the real one.
async fn fire<B>(ctx: &Ctx<'_>, name: &str, req: Request<B>) -> Result<Response<Body>>
where
    B: hyper::body::Body<Data = Bytes> + Send,
    B::Error: Display,
{
    if name.is_empty() {
        return Err(Error::bad_request("Missing name"));
    }
    if let Some(dc) = ctx.query.dc().filter(|dc| *dc != ctx.st.cfg.datacenter) {
        return match &ctx.st.serving {
            Serving::Client(upstream) => crate::client::forward(ctx, upstream.as_ref(), req).await,
            Serving::Server(_) => crate::client::forward_dc(ctx, dc.to_string(), req).await,
        };
    }
    if let Some(acl) = ctx.acl.as_deref() {
        if !crate::acl::may(acl, crate::acl::rules::Resource::Event, name, true) {
            return Err(crate::acl::deny_on(acl, "event:write", name));
        }
    }
    let param = |k: &str| ctx.query.get(k).unwrap_or_default().to_string();
    let content_length = req
        .headers()
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let payload = crate::kv::read_body(req.into_body(), content_length, USER_EVENT_SIZE_LIMIT)
        .await
        .map_err(|e| match e {
            Error::TooLarge { size, .. } => Error::Internal(format!(
                "user event exceeds configured limit of {USER_EVENT_SIZE_LIMIT} bytes before \
                 encoding (a {size}-byte payload)"
            )),
            other => other,
        })?;
    let event = UserEvent {
        name: name.to_string(),
        payload,
        node_filter: param("node"),
        service_filter: param("service"),
        tag_filter: param("tag"),
        ..UserEvent::default()
    };
    validate(&event).map_err(Error::Internal)?;
    let backend = cluster::require(&ctx.st.cfg)?;
    let fired = backend
        .fire_user_event(event)
        .await
        .map_err(Error::Internal)?;
    ctx.json(&EventJson {
        ltime: 0,
        ..EventJson::from(&fired)
    })
}

/// `GET /v1/event/list` (`?name=`, `?index=&wait=`): the events this agent
/// took, oldest first, with `X-Consul-Index` from the newest. With an
/// `index` equal to the current one it waits for a new event (or `wait`,
/// default 5m, at most 10m, then answers as it is).
async fn list(ctx: &Ctx<'_>) -> Result<Response<Body>> {
    let blocking = ctx.query.blocking()?;
    let name = ctx.query.get("name").filter(|n| !n.is_empty());
    let deadline = tokio::time::Instant::now() + blocking.deadline();
    let node = ctx.st.cfg.node_name.as_str();
    loop {
        // Subscribed before reading, so an event landing in between wakes
        // the wait below.
        let (next, all) = match &ctx.st.cfg.cluster {
            Some(c) => (c.next_user_event(), c.user_events()),
            None => (
                Box::pin(std::future::pending()) as cluster::BoxFuture<'static, ()>,
                Vec::new(),
            ),
        };
        let services = ctx.st.agent.services();
        let mut filters = Filters::default();
        let events: Vec<UserEvent> = all
            .into_iter()
            .filter(|e| name.is_none_or(|n| e.name == n))
            .filter(|e| {
                ctx.acl.as_deref().is_none_or(|acl| {
                    crate::acl::may(acl, crate::acl::rules::Resource::Event, &e.name, false)
                })
            })
            .filter(|e| accepts(e, node, services.values(), &mut filters))
            .collect();
        let index = events.last().map_or(1, |e| uuid_to_index(&e.id)).max(1);
        if blocking.min_index != 0 && index == blocking.min_index {
            tokio::select! {
                () = next => continue,
                () = tokio::time::sleep_until(deadline) => {}
                // Shutting down: answer with what there is.
                () = ctx.st.shared.stopped() => {}
            }
        }
        let json: Vec<EventJson<'_>> = events.iter().map(EventJson::from).collect();
        let mut resp = ctx.json(&json)?;
        resp.headers_mut()
            .insert(X_CONSUL_INDEX, HeaderValue::from(index));
        return Ok(resp);
    }
}

/// `/v1/event/*`: answered by each agent itself.
pub(crate) const ROUTES: &[Route] = &[
    under(
        "/v1/event/fire/",
        PUT,
        on_agent!(|ctx, c| fire(ctx, &c.rest, c.req).await),
    ),
    exact("/v1/event/list", GET, on_agent!(|ctx, _| list(ctx).await)),
];

#[cfg(test)]
mod tests {
    use super::*;
    use muster_agent::Source;
    use muster_engine::Service;

    fn local(id: &str, name: &str, tags: &[&str]) -> LocalService {
        LocalService {
            service: Service {
                id: id.into(),
                service: name.into(),
                tags: tags.iter().map(|t| t.to_string()).collect(),
                ..Service::default()
            },
            source: Source::Api,
        }
    }

    fn event(node: &str, service: &str, tag: &str) -> UserEvent {
        UserEvent {
            name: "deploy".into(),
            node_filter: node.into(),
            service_filter: service.into(),
            tag_filter: tag.into(),
            ..UserEvent::default()
        }
    }

    #[test]
    fn index_is_consuls_uuid_halves_xored() {
        // 0x0123456789abcdef ^ 0xfedcba9876543210.
        assert_eq!(
            uuid_to_index("01234567-89ab-cdef-fedc-ba9876543210"),
            0xffff_ffff_ffff_ffff
        );
        assert_eq!(uuid_to_index("00000000-0000-0001-0000-000000000003"), 2);
        for bad in [
            "",
            "nope",
            "0123456789abcdef0123456789abcdef0123",
            "g0000000-0000-0000-0000-000000000000",
        ] {
            assert_eq!(uuid_to_index(bad), 0, "{bad}");
        }
    }

    #[test]
    fn filters_follow_should_process_user_event() {
        let services = [
            local("web-1", "web", &["v2", "blue"]),
            local("db", "db", &[]),
        ];
        let take = |e: &UserEvent| accepts(e, "node-a", services.iter(), &mut Filters::default());
        assert!(take(&event("", "", "")));
        assert!(take(&event("^node-", "", "")));
        assert!(!take(&event("^node-b$", "", "")));
        assert!(take(&event("", "^web$", "")), "by name");
        assert!(take(&event("", "^web-1$", "")), "by ID");
        assert!(!take(&event("", "^cache$", "")));
        assert!(take(&event("", "web", "^blue$")));
        assert!(
            !take(&event("", "db", "^blue$")),
            "the tag must be on that service"
        );
        assert!(
            !take(&event("[", "", "")),
            "an invalid filter takes nothing"
        );
        assert!(!take(&UserEvent {
            name: REMOTE_EXEC_NAME.into(),
            ..UserEvent::default()
        }));
        let none: [LocalService; 0] = [];
        assert!(!accepts(
            &event("", "web", ""),
            "n",
            none.iter(),
            &mut Filters::default()
        ));
    }

    #[test]
    fn validation_uses_consuls_messages_on_one_line() {
        assert_eq!(validate(&event("", "", "")), Ok(()));
        assert_eq!(
            validate(&event("", "", "v2")),
            Err("Cannot provide tag filter without service filter".into())
        );
        assert_eq!(
            validate(&event("[", "", "")),
            Err("Invalid node filter: error parsing regexp: unclosed character class: `[`".into())
        );
        let bad = validate(&event("", "web(", "")).err().unwrap_or_default();
        assert!(
            bad.starts_with("Invalid service filter: error parsing regexp: "),
            "{bad}"
        );
        assert!(!bad.contains('\n'), "{bad}");
        assert_eq!(
            validate(&UserEvent::default()),
            Err("User event missing name".into())
        );
    }

    #[test]
    fn json_has_consuls_shape() -> std::result::Result<(), serde_json::Error> {
        let mut e = event("n", "s", "t");
        e.id = "b54fe110-7af5-cafc-d1fb-afc8ba432b1c".into();
        e.version = 1;
        e.ltime = 7;
        assert_eq!(
            serde_json::to_string(&EventJson::from(&e))?,
            r#"{"ID":"b54fe110-7af5-cafc-d1fb-afc8ba432b1c","Name":"deploy","Payload":null,"NodeFilter":"n","ServiceFilter":"s","TagFilter":"t","Version":1,"LTime":7}"#
        );
        e.payload = b"hi".to_vec();
        assert_eq!(
            serde_json::to_value(EventJson::from(&e))?["Payload"],
            "aGk="
        );
        Ok(())
    }
}

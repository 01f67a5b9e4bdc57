//! The watch loop (Consul's `watch.Plan.Run`), the one home of it:
//! `muster watch` and the agent's `watches` both run [`Plan::run`].
//!
//! Each turn is one blocking read with `?index=` from the previous
//! `X-Consul-Index`. A change is acted on when the index moved and, once a
//! result has been handled, when the result differs from the last one
//! handled (Consul compares the decoded results; so do we, as JSON values).
//! The first result is always handled. An index that goes backwards (a
//! restored snapshot, another server) is reset to 0, so the next read
//! returns at once instead of blocking on an index the agent will not reach
//! soon. A failed read is retried after 5 s × failures² (at most 180 s), and
//! the next success is handled even if unchanged, as in Consul.
//!
//! Events are the exception: their index is derived from the last event's
//! ID, so it is not ordered (never reset), and only the events after the
//! last one already seen are handed on (Consul prunes the same way by
//! index; keeping the ID also holds across a failed read).

use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::{Method, StatusCode};
use serde_json::Value;

use super::handler::{run_script, send_http, Output, ScriptError};
use super::json;
use super::spec::{Handler, Kind, Spec};
use crate::cli::http::Client;

/// The first retry after a failed read (Consul's `retryInterval`).
const RETRY_BASE: Duration = Duration::from_secs(5);

/// The longest pause between retries (Consul's `maxBackoffTime`).
const RETRY_MAX: Duration = Duration::from_secs(180);

/// Longest time one read may take: the blocking wait (30 s, plus jitter)
/// with room to spare.
const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// Who runs the loop, which decides where messages go and what a failed
/// handler does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `muster watch`: warnings on stderr; a failed handler stops the
    /// watch with an error (exit 1); scripts share this process's output.
    Cli,
    /// The agent's `watches`: everything goes to the log; a failed handler
    /// is logged and the watch goes on.
    Agent,
}

/// One read's result: its index and the JSON the handler gets.
#[derive(Debug, Clone, PartialEq)]
struct Fetched {
    /// `X-Consul-Index`.
    index: u64,
    /// The result as compact JSON text (the agent's key order).
    text: String,
    /// The same, parsed, to compare with the last result.
    value: Value,
    /// Events: the ID of the newest event listed.
    newest_event: Option<String>,
}

/// A watch being run against one agent.
pub struct Plan {
    /// What is watched.
    spec: Spec,
    /// The agent.
    client: Client,
    /// The index of the next read (Consul's `lastParamVal`); `None` before
    /// the first result and after a failed read.
    last_index: Option<u64>,
    /// The last result handed to the handler.
    last_result: Option<Value>,
    /// Events: the newest event ID seen; only later events are handed on.
    last_event: Option<String>,
}

impl Plan {
    /// A watch of `spec` through `client`.
    pub fn new(spec: Spec, client: Client) -> Plan {
        Plan {
            spec,
            client,
            last_index: None,
            last_result: None,
            last_event: None,
        }
    }

    /// Watch until stopped (the caller drops the future), handing every
    /// change to `handler`. Returns `Ok` after [`Handler::Print`] printed
    /// the first result, and `Err` when a handler fails in [`Mode::Cli`].
    pub async fn run(&mut self, handler: &Handler, mode: Mode) -> anyhow::Result<()> {
        let mut failures: u32 = 0;
        loop {
            let fetched = match self.fetch(self.last_index.unwrap_or(0)).await {
                Ok(fetched) => fetched,
                Err(err) => {
                    failures = failures.saturating_add(1);
                    self.last_index = None;
                    let retry = backoff(failures);
                    let retry_text = muster_engine::duration::format(retry);
                    match mode {
                        Mode::Cli => eprintln!(
                            "Watch (type: {}) errored: {err:#}, retry in {retry_text}",
                            self.spec.type_name()
                        ),
                        Mode::Agent => tracing::error!(
                            r#type = self.spec.type_name(),
                            error = %format!("{err:#}"),
                            retry = %retry_text,
                            "Watch errored"
                        ),
                    }
                    tokio::time::sleep(retry).await;
                    continue;
                }
            };
            failures = 0;
            if let Some(id) = &fetched.newest_event {
                self.last_event = Some(id.clone());
            }
            if self.last_index == Some(fetched.index) {
                continue;
            }
            let old = self.last_index;
            self.last_index = Some(self.next_index(fetched.index, old));
            if old.is_some() && self.last_result.as_ref() == Some(&fetched.value) {
                continue;
            }
            self.last_result = Some(fetched.value);
            if self
                .handle(handler, mode, fetched.index, &fetched.text)
                .await?
            {
                return Ok(());
            }
        }
    }

    /// The index for the next read: `index`, or 0 if it went backwards
    /// (Consul's `WaitIndexVal.Next`); event indexes are not ordered.
    fn next_index(&self, index: u64, old: Option<u64>) -> u64 {
        let event = matches!(self.spec.kind, Kind::Event { .. });
        match old {
            Some(old) if old > index && !event => 0,
            _ => index,
        }
    }

    /// Hand one result to `handler`; `true` when the watch is done.
    async fn handle(
        &self,
        handler: &Handler,
        mode: Mode,
        index: u64,
        text: &str,
    ) -> anyhow::Result<bool> {
        match handler {
            Handler::Print => {
                println!("{}", json::format(text.as_bytes(), Some("    ")));
                Ok(true)
            }
            Handler::Script(script) => {
                let input = format!("{text}\n");
                let output = match mode {
                    Mode::Cli => Output::Inherit,
                    Mode::Agent => Output::Capture,
                };
                let (result, captured) = run_script(script, index, &input, output).await;
                match (mode, result) {
                    (Mode::Cli, Ok(())) => {}
                    (Mode::Cli, Err(ScriptError::Start(err))) => {
                        bail!("Error starting handler: {err}")
                    }
                    (Mode::Cli, Err(err)) => bail!("Error executing handler: {err}"),
                    (Mode::Agent, result) => {
                        if let Err(err) = result {
                            tracing::error!("Failed to run watch handler '{script}': {err}");
                        }
                        tracing::debug!("watch handler '{script}' output: {captured}");
                    }
                }
                Ok(false)
            }
            Handler::Http(target) => {
                match send_http(target, index, format!("{text}\n")).await {
                    Ok(reply) if reply.success => tracing::trace!(
                        "http watch handler '{}' output: {}",
                        target.path,
                        reply.output
                    ),
                    Ok(reply) => tracing::error!(
                        "http watch handler '{}' got '{}' with output: {}",
                        target.path,
                        reply.status,
                        reply.output
                    ),
                    Err(err) => tracing::error!(
                        "Failed to invoke http watch handler '{}': {err}",
                        target.path
                    ),
                }
                Ok(false)
            }
        }
    }

    /// One read at `index` (blocking unless 0).
    async fn fetch(&self, index: u64) -> anyhow::Result<Fetched> {
        let path = self.spec.path(index);
        let read = async {
            let empty = Empty::<Bytes>::new()
                .map_err(|never| match never {})
                .boxed_unsync();
            let resp = self
                .client
                .request_stream(Method::GET, &path, empty)
                .await?;
            let status = resp.status();
            let index = resp
                .headers()
                .get("X-Consul-Index")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
            let body = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| anyhow!("Error querying agent: reading the response: {e}"))?
                .to_bytes();
            Ok::<_, anyhow::Error>((status, index, body))
        };
        let (status, index, body) = tokio::time::timeout(READ_TIMEOUT, read)
            .await
            .map_err(|_| anyhow!("Error querying agent: no answer to {path} within 60s"))??;
        let missing = status == StatusCode::NOT_FOUND
            && matches!(self.spec.kind, Kind::Key { .. } | Kind::KeyPrefix { .. });
        if status != StatusCode::OK && !missing {
            bail!(
                "Unexpected response code: {} ({})",
                status.as_u16(),
                String::from_utf8_lossy(&body).trim()
            );
        }
        let mut newest_event = None;
        let text: Vec<u8> = match &self.spec.kind {
            _ if missing => b"null".to_vec(),
            Kind::Key { .. } => json::elements(&body)
                .and_then(|items| items.first().map(|item| item.to_vec()))
                .unwrap_or_else(|| b"null".to_vec()),
            Kind::Event { .. } => {
                let (kept, newest) = self.new_events(&body)?;
                newest_event = newest;
                kept
            }
            _ => body.to_vec(),
        };
        let value: Value = serde_json::from_slice(&text)
            .with_context(|| format!("Error querying agent: {path} answered unreadable JSON"))?;
        Ok(Fetched {
            index,
            text: json::format(&text, None),
            value,
            newest_event,
        })
    }

    /// The events of a `/v1/event/list` body after the last one seen (all
    /// of them the first time, or if it is no longer listed), as a JSON
    /// array, and the newest event's ID.
    fn new_events(&self, body: &[u8]) -> anyhow::Result<(Vec<u8>, Option<String>)> {
        let items = json::elements(body)
            .ok_or_else(|| anyhow!("Error querying agent: the event list is not a JSON list"))?;
        let ids: Vec<Option<String>> = items
            .iter()
            .map(|item| {
                serde_json::from_slice::<Value>(item)
                    .ok()
                    .and_then(|v| v.get("ID").and_then(Value::as_str).map(str::to_string))
            })
            .collect();
        let seen = self
            .last_event
            .as_ref()
            .and_then(|last| ids.iter().rposition(|id| id.as_ref() == Some(last)));
        let start = seen.map_or(0, |i| i + 1);
        let kept: Vec<&[u8]> = items.get(start..).unwrap_or_default().to_vec();
        let mut out = b"[".to_vec();
        out.extend_from_slice(&kept.join(&b","[..]));
        out.push(b']');
        Ok((out, ids.last().cloned().flatten()))
    }
}

/// The pause after `failures` failed reads in a row.
fn backoff(failures: u32) -> Duration {
    RETRY_BASE
        .checked_mul(failures.saturating_mul(failures))
        .map_or(RETRY_MAX, |d| d.min(RETRY_MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::http::HttpArgs;
    use crate::cli::watch::spec::Params;

    fn plan(kind: &str) -> anyhow::Result<Plan> {
        let spec = Params {
            kind: Some(kind.into()),
            ..Params::default()
        }
        .parse(&|n| n.to_string())
        .map_err(|e| anyhow!(e))?;
        let client = Client::new(&HttpArgs {
            http_addr: Some("127.0.0.1:1".into()),
            ..HttpArgs::default()
        })?;
        Ok(Plan::new(spec, client))
    }

    #[test]
    fn retries_back_off_quadratically_up_to_three_minutes() {
        assert_eq!(backoff(1), Duration::from_secs(5));
        assert_eq!(backoff(2), Duration::from_secs(20));
        assert_eq!(backoff(6), Duration::from_secs(180));
        assert_eq!(backoff(u32::MAX), Duration::from_secs(180));
    }

    #[tokio::test]
    async fn indexes_that_go_backwards_reset_except_for_events() -> anyhow::Result<()> {
        let nodes = plan("nodes")?;
        assert_eq!(nodes.next_index(5, Some(9)), 0);
        assert_eq!(nodes.next_index(9, Some(5)), 9);
        assert_eq!(nodes.next_index(3, None), 3);
        let events = plan("event")?;
        assert_eq!(events.next_index(5, Some(9)), 5);
        Ok(())
    }

    #[tokio::test]
    async fn only_events_after_the_last_seen_are_handed_on() -> anyhow::Result<()> {
        let mut events = plan("event")?;
        let body = br#"[{"ID":"a","Name":"x"},{"ID":"b","Name":"y"}]"#;
        let (all, newest) = events.new_events(body)?;
        assert_eq!(all, body.to_vec());
        assert_eq!(newest.as_deref(), Some("b"));
        events.last_event = Some("a".into());
        let (later, _) = events.new_events(body)?;
        assert_eq!(later, br#"[{"ID":"b","Name":"y"}]"#.to_vec());
        events.last_event = Some("b".into());
        assert_eq!(events.new_events(body)?.0, b"[]".to_vec());
        events.last_event = Some("gone".into());
        assert_eq!(events.new_events(body)?.0, body.to_vec());
        Ok(())
    }
}

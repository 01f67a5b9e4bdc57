//! `muster event -name=NAME [-node=RE] [-service=RE] [-tag=RE] [PAYLOAD]`:
//! fire a user event through the local agent (`PUT /v1/event/fire/:name`)
//! and print `Event ID: <id>`, as `consul event` does. Filters are checked
//! here first, with Consul's messages.

use std::process::ExitCode;

use anyhow::{anyhow, bail};
use bytes::Bytes;
use hyper::{Method, StatusCode};
use muster_api::event::compile_filter;

use super::http::{query_value, Client, HttpArgs};
use super::members::block_on;
use super::services::say;

/// `muster event`.
#[derive(Debug, clap::Args)]
pub struct EventArgs {
    /// Agent address.
    #[command(flatten)]
    pub http: HttpArgs,
    /// Name of the event.
    #[arg(long, default_value = "", hide_default_value = true)]
    pub name: String,
    /// Regular expression to filter on node names.
    #[arg(long, default_value = "", hide_default_value = true)]
    pub node: String,
    /// Regular expression to filter on service instances.
    #[arg(long, default_value = "", hide_default_value = true)]
    pub service: String,
    /// Regular expression to filter on service tags. Must be used with
    /// -service.
    #[arg(long, default_value = "", hide_default_value = true)]
    pub tag: String,
    /// The event's payload (optional, opaque).
    #[arg(value_name = "PAYLOAD")]
    pub payload: Vec<String>,
}

/// `/v1/event/fire/<name>` with the filters given.
pub fn fire_path(name: &str, node: &str, service: &str, tag: &str) -> String {
    let params: Vec<String> = [("node", node), ("service", service), ("tag", tag)]
        .into_iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{k}={}", query_value(v)))
        .collect();
    let mut path = format!("/v1/event/fire/{}", query_value(name));
    if !params.is_empty() {
        path.push('?');
        path.push_str(&params.join("&"));
    }
    path
}

/// Check the flags as `consul event` does: a name, compilable filters, a
/// tag only with a service, at most one payload. Returns the payload.
fn check(args: &EventArgs) -> anyhow::Result<Bytes> {
    if args.name.is_empty() {
        bail!("Event name must be specified (-name=NAME)");
    }
    for (what, pattern) in [
        ("node", &args.node),
        ("service", &args.service),
        ("tag", &args.tag),
    ] {
        if !pattern.is_empty() {
            compile_filter(pattern)
                .map_err(|e| anyhow!("Failed to compile {what} filter regexp: {e}"))?;
        }
    }
    if !args.tag.is_empty() && args.service.is_empty() {
        bail!("Cannot provide tag filter without service filter.");
    }
    match args.payload.as_slice() {
        [] => Ok(Bytes::new()),
        [one] => Ok(Bytes::from(one.clone().into_bytes())),
        _ => bail!("Too many command line arguments: the payload is one argument (quote it)."),
    }
}

/// Fire the event and print its ID.
pub fn run(args: EventArgs) -> anyhow::Result<ExitCode> {
    let payload = check(&args)?;
    let path = fire_path(&args.name, &args.node, &args.service, &args.tag);
    block_on(async {
        let client = Client::new(&args.http)?;
        let reply = client
            .request(Method::PUT, &path, payload)
            .await
            .map_err(|e| anyhow!("Error firing event: {e:#}"))?;
        if reply.status != StatusCode::OK {
            bail!("Error firing event: {}", reply.unexpected());
        }
        let fired: serde_json::Value = serde_json::from_slice(&reply.body)
            .map_err(|e| anyhow!("Error firing event: the agent's answer is not JSON: {e}"))?;
        let id = fired["ID"]
            .as_str()
            .ok_or_else(|| anyhow!("Error firing event: the agent's answer has no ID"))?;
        say(&format!("Event ID: {id}"))?;
        Ok(ExitCode::SUCCESS)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(name: &str, node: &str, service: &str, tag: &str, payload: &[&str]) -> EventArgs {
        EventArgs {
            http: HttpArgs::default(),
            name: name.into(),
            node: node.into(),
            service: service.into(),
            tag: tag.into(),
            payload: payload.iter().map(|p| p.to_string()).collect(),
        }
    }

    #[test]
    fn fire_path_escapes_the_name_and_filters() {
        assert_eq!(fire_path("deploy", "", "", ""), "/v1/event/fire/deploy");
        assert_eq!(
            fire_path("a b", "^n-[0-9]+$", "web", "v2"),
            "/v1/event/fire/a%20b?node=%5En-%5B0-9%5D%2B%24&service=web&tag=v2"
        );
    }

    #[test]
    fn flags_are_checked_with_consuls_messages() {
        let err = |a: EventArgs| check(&a).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err(args("", "", "", "", &[])).starts_with("Event name must be specified"));
        assert_eq!(
            err(args("d", "[", "", "", &[])),
            "Failed to compile node filter regexp: error parsing regexp: unclosed character class: `[`"
        );
        assert_eq!(
            err(args("d", "", "", "v2", &[])),
            "Cannot provide tag filter without service filter."
        );
        assert!(err(args("d", "", "", "", &["a", "b"])).starts_with("Too many command line"));
        assert_eq!(
            check(&args("d", "", "web", "v2", &["x y"])).ok(),
            Some(Bytes::from_static(b"x y"))
        );
    }
}

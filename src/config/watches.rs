//! The `watches` config key: a list of watch objects (`type`, the type's
//! parameters, and a handler: `args` or the deprecated `handler` string
//! for scripts, `http_handler_config` for `handler_type = "http"`), each
//! checked as Consul checks it at load time, so a bad watch stops the
//! agent (and fails `muster validate`) naming `watches[i]` and the fix.
//!
//! The watch parameters are validated by the same code as `muster watch`'s
//! flags ([`Params::parse`]); running the watches is `server/watches.rs`.

use std::ffi::OsString;
use std::time::Duration;

use serde_json::{Map, Value};

use super::error::ConfigError;
use super::value::{index, join, Ctx};
use crate::cli::watch::spec::{Handler, HttpTarget, Params, Script, Spec, DEFAULT_HTTP_TIMEOUT};

/// One configured watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchConfig {
    /// What it watches.
    pub spec: Spec,
    /// What runs on each change (never [`Handler::Print`]).
    pub handler: Handler,
}

/// The watches under `key` (a list of objects; one object counts as a
/// list of one, as HCL writes a single block). Deprecated forms that still
/// work add a line to `warnings`.
pub fn decode(
    ctx: Ctx<'_>,
    key: &str,
    v: &Value,
    warnings: &mut Vec<String>,
) -> Result<Vec<WatchConfig>, ConfigError> {
    match v {
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, item)| watch(ctx, &index(key, i), item, warnings))
            .collect(),
        Value::Object(_) => Ok(vec![watch(ctx, key, v, warnings)?]),
        other => Err(ctx.wrong(key, "a list of watch objects", other)),
    }
}

/// One watch object at `path`.
fn watch(
    ctx: Ctx<'_>,
    path: &str,
    v: &Value,
    warnings: &mut Vec<String>,
) -> Result<WatchConfig, ConfigError> {
    let obj = ctx.object(path, v)?;
    let mut params = Params::default();
    let mut handler_type: Option<String> = None;
    let mut script: Option<Script> = None;
    let mut deprecated = false;
    let mut http: Option<&Value> = None;
    for (k, item) in obj {
        let at = join(path, k);
        let text = || ctx.string(&at, item);
        match k.as_str() {
            "type" => params.kind = Some(text()?),
            "datacenter" => params.datacenter = Some(text()?),
            "token" => params.token = Some(text()?),
            "key" => params.key = Some(text()?),
            "prefix" => params.prefix = Some(text()?),
            "service" => params.service = Some(text()?),
            "state" => params.state = Some(text()?),
            "name" => params.name = Some(text()?),
            "tag" => params.tag = Some(ctx.string_list(&at, item)?),
            "passingonly" => params.passing_only = Some(ctx.bool(&at, item)?),
            "stale" => params.stale = Some(ctx.bool(&at, item)?),
            "handler_type" => handler_type = Some(text()?),
            "handler" => {
                if script.is_some() {
                    return Err(only_one(ctx, path));
                }
                deprecated = true;
                script = Some(Script::Shell(text()?));
            }
            "args" => {
                if script.is_some() {
                    return Err(only_one(ctx, path));
                }
                script = Some(Script::Args(args(ctx, &at, item)?));
            }
            "http_handler_config" => http = Some(item),
            _ => return Err(ctx.unknown(&at)),
        }
    }
    let spec = params
        .parse(&|name| format!("{:?}", join(path, name)))
        .map_err(|reason| ctx.bad(path, reason))?;
    let handler =
        match handler_type.as_deref().unwrap_or("script") {
            "script" => {
                if http.is_some() {
                    return Err(ctx.bad(
                    &join(path, "http_handler_config"),
                    "an http_handler_config needs \"handler_type\": \"http\" (or remove it and \
                     keep the script handler)",
                ));
                }
                match script {
                    Some(script) => {
                        if deprecated {
                            warnings.push(format!(
                                "{}: \"{path}.handler\" is deprecated: use \"args\" (a list: \
                             program and arguments; \"handler\" still runs with $SHELL -c)",
                                ctx.file.display()
                            ));
                        }
                        Handler::Script(script)
                    }
                    None => return Err(ctx.bad(
                        path,
                        "Must define a watch handler: set \"args\" to the command to run (a list: \
                         program and arguments), or \"handler_type\": \"http\" with an \
                         \"http_handler_config\"",
                    )),
                }
            }
            "http" => {
                if script.is_some() {
                    return Err(only_one(ctx, path));
                }
                let Some(config) = http else {
                    return Err(ctx.bad(
                        path,
                        "Handler type 'http' requires 'http_handler_config' to be set: add \
                     \"http_handler_config\": {\"path\": \"http://...\"}",
                    ));
                };
                Handler::Http(http_target(
                    ctx,
                    &join(path, "http_handler_config"),
                    config,
                )?)
            }
            other => {
                return Err(ctx.bad(
                    &join(path, "handler_type"),
                    format!("Handler type '{other}' not recognized: use \"script\" or \"http\""),
                ))
            }
        };
    Ok(WatchConfig { spec, handler })
}

/// Consul's "Only one watch handler allowed".
fn only_one(ctx: Ctx<'_>, path: &str) -> ConfigError {
    ctx.bad(
        path,
        "Only one watch handler allowed: keep one of \"args\", \"handler\" (deprecated) or an \
         http handler",
    )
}

/// `args`: a non-empty list of strings, the program first.
fn args(ctx: Ctx<'_>, at: &str, v: &Value) -> Result<Vec<OsString>, ConfigError> {
    let Value::Array(items) = v else {
        return Err(ctx.wrong(at, "a list of strings", v));
    };
    if items.is_empty() {
        return Err(ctx.bad(
            at,
            "args must name the program to run: [\"/path/to/handler\", \"arg\", ...]",
        ));
    }
    items
        .iter()
        .enumerate()
        .map(|(i, item)| ctx.string(&index(at, i), item).map(OsString::from))
        .collect()
}

/// `http_handler_config`: `path` (required, `http://`), `method` (POST),
/// `header` (name → list of values), `timeout` (10s), `tls_skip_verify`.
fn http_target(ctx: Ctx<'_>, at: &str, v: &Value) -> Result<HttpTarget, ConfigError> {
    // HCL writes a block as a list of one object.
    let v = match v {
        Value::Array(items) if items.len() == 1 => items.first().unwrap_or(v),
        _ => v,
    };
    let obj: &Map<String, Value> = ctx.object(at, v)?;
    let mut target = HttpTarget {
        path: String::new(),
        method: "POST".into(),
        header: Vec::new(),
        timeout: DEFAULT_HTTP_TIMEOUT,
        tls_skip_verify: false,
    };
    for (k, item) in obj {
        let key = join(at, k);
        match k.as_str() {
            "path" => target.path = ctx.string(&key, item)?,
            "method" => {
                let method = ctx.string(&key, item)?;
                if !method.is_empty() {
                    if hyper::Method::from_bytes(method.as_bytes()).is_err() {
                        return Err(ctx.bad(&key, format!("invalid HTTP method {method:?}")));
                    }
                    target.method = method;
                }
            }
            "header" => {
                for (name, values) in ctx.object(&key, item)? {
                    let at = join(&key, name);
                    if hyper::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
                        return Err(ctx.bad(&at, format!("invalid header name {name:?}")));
                    }
                    target
                        .header
                        .push((name.clone(), ctx.string_list(&at, values)?));
                }
            }
            "timeout" => {
                let timeout: Duration = ctx.duration(&key, item)?;
                if !timeout.is_zero() {
                    target.timeout = timeout;
                }
            }
            "tls_skip_verify" => target.tls_skip_verify = ctx.bool(&key, item)?,
            _ => return Err(ctx.unknown(&key)),
        }
    }
    if target.path.is_empty() {
        return Err(ctx.bad(
            at,
            "Requires 'path' to be set: the URL to send the JSON to, e.g. \
             \"http://127.0.0.1:8080/watch\"",
        ));
    }
    let key = join(at, "path");
    if target.path.starts_with("https://") {
        return Err(ctx.bad(
            &key,
            "HTTPS handler paths are not supported by muster yet: use an http:// URL",
        ));
    }
    let uri: Result<hyper::Uri, _> = target.path.parse();
    let valid = uri.is_ok_and(|u| u.scheme_str() == Some("http") && u.authority().is_some());
    if !valid {
        return Err(ctx.bad(
            &key,
            format!(
                "{:?} is not an http:// URL: write it as http://host:port/path",
                target.path
            ),
        ));
    }
    Ok(target)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::watch::spec::Kind;
    use serde_json::json;
    use std::path::Path;

    fn load(v: Value) -> Result<Vec<WatchConfig>, String> {
        let ctx = Ctx {
            file: Path::new("w.json"),
        };
        decode(ctx, "watches", &v, &mut Vec::new()).map_err(|e| e.to_string())
    }

    #[test]
    fn script_and_http_watches_decode() -> Result<(), String> {
        let got = load(json!([
            {"type": "key", "key": "k", "args": ["/bin/h", "x"]},
            {"type": "service", "service": "web", "tag": "a", "passingonly": true,
             "handler_type": "http",
             "http_handler_config": {"path": "http://127.0.0.1:1/w", "method": "PUT",
                                     "header": {"X-A": ["1", "2"]}, "timeout": "2s"}},
            {"type": "nodes", "handler": "echo hi"}
        ]))?;
        assert_eq!(got.len(), 3);
        assert_eq!(got[0].spec.kind, Kind::Key { key: "k".into() });
        assert_eq!(
            got[0].handler,
            Handler::Script(Script::Args(vec!["/bin/h".into(), "x".into()]))
        );
        let Handler::Http(target) = &got[1].handler else {
            return Err(format!("not http: {:?}", got[1].handler));
        };
        assert_eq!(target.method, "PUT");
        assert_eq!(target.timeout, Duration::from_secs(2));
        assert_eq!(
            target.header,
            [("X-A".to_string(), vec!["1".into(), "2".into()])]
        );
        assert_eq!(
            got[2].handler,
            Handler::Script(Script::Shell("echo hi".into()))
        );
        Ok(())
    }

    #[test]
    fn mistakes_name_the_watch_and_the_fix() {
        let cases = [
            (
                json!([{"type": "key", "args": ["h"]}]),
                r#"w.json: key "watches[0]": Must specify a single key to watch: set "watches[0].key""#,
            ),
            (
                json!([{"type": "key", "key": "k"}]),
                "Must define a watch handler",
            ),
            (
                json!([{"type": "key", "key": "k", "args": ["h"], "handler": "h"}]),
                "Only one watch handler allowed",
            ),
            (
                json!([{"type": "nodes", "handler_type": "http"}]),
                "Handler type 'http' requires 'http_handler_config'",
            ),
            (
                json!([{"type": "nodes", "handler_type": "http",
                     "http_handler_config": {"path": "https://x/"}}]),
                "HTTPS handler paths are not supported",
            ),
            (
                json!([{"type": "nodes", "handler_type": "email", "args": ["h"]}]),
                "Handler type 'email' not recognized",
            ),
            (
                json!([{"type": "nodes", "args": ["h"], "keyy": "k"}]),
                r#"unknown key "watches[0].keyy""#,
            ),
            (
                json!([{"type": "nodes", "args": ["h"], "key": "k"}]),
                "Invalid parameters: [key]",
            ),
            (
                json!([{"type": "nodes", "args": []}]),
                "args must name the program",
            ),
            (json!("nodes"), "expected a list of watch objects"),
        ];
        for (v, want) in cases {
            let got = load(v.clone());
            assert!(
                got.as_ref().is_err_and(|e| e.contains(want)),
                "{v}: want {want:?}, got {got:?}"
            );
        }
    }
}

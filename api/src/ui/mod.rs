//! The web UI: its settings ([`UiConfig`]), the static app served under
//! the content path (`/ui/` by default) from assets embedded in the binary
//! or from `ui_config.dir`, `/` redirecting there, and the summary
//! endpoints the app reads (`/v1/internal/ui/*`, in Consul's shapes).
//!
//! Every `/ui/...` path that is not an asset answers the app's HTML, so
//! deep links (`/ui/dc1/services/web/instances`) load directly; the app
//! routes them. This module serves files and summaries only: what the pages
//! show is the app's (`api/ui/`).

mod assets;
mod endpoints;

use std::path::PathBuf;

use bytes::Bytes;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Response, StatusCode};

use crate::error::{Error, Result};
use crate::response::{self, Body};

pub(crate) use endpoints::ROUTES;

/// The UI's settings (`-ui`, `ui_config { enabled, dir, content_path }`,
/// the legacy `ui` and `ui_dir`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UiConfig {
    /// Serve the UI.
    pub enabled: bool,
    /// Serve this directory's files instead of the embedded app.
    pub dir: Option<PathBuf>,
    /// Where the UI lives: starts and ends with `/` (default `/ui/`).
    pub content_path: String,
}

impl Default for UiConfig {
    fn default() -> UiConfig {
        UiConfig {
            enabled: false,
            dir: None,
            content_path: DEFAULT_CONTENT_PATH.to_string(),
        }
    }
}

/// `ui_config.content_path`'s default.
pub const DEFAULT_CONTENT_PATH: &str = "/ui/";

/// What `/` says when the UI is off.
pub const UI_DISABLED: &str = "muster agent: UI disabled. To enable it, start the agent with -ui \
     or set ui_config { enabled = true } in its configuration, and restart it.";

/// A content path as the UI serves it (`/consul-ui` → `/consul-ui/`), or
/// why it cannot be one: it must be an absolute path of letters, digits,
/// `-`, `_`, `.` and `/`, and not under `/v1/`.
pub fn normalize_content_path(raw: &str) -> std::result::Result<String, String> {
    let mut p = raw.trim().to_string();
    if !p.starts_with('/') {
        p.insert(0, '/');
    }
    if !p.ends_with('/') {
        p.push('/');
    }
    let ok = p
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c))
        && !p.contains("//")
        && !p.contains("/../")
        && !p.contains("/./");
    if !ok {
        return Err(format!(
            "ui_config.content_path {raw:?} must be a path of letters, digits, '-', '_', '.' and '/'"
        ));
    }
    if p == "/" || p.starts_with("/v1/") {
        return Err(format!(
            "ui_config.content_path {raw:?} must not be / or under /v1/: pick a prefix such as /ui/"
        ));
    }
    Ok(p)
}

/// The answer for a UI path (`/`, or anything under the content path), or
/// `None` for every other path (the API routes it).
pub(crate) async fn answer(
    cfg: &UiConfig,
    path: &str,
    method: &Method,
) -> Option<Result<Response<Body>>> {
    let cp = cfg.content_path.as_str();
    let bare = cp.trim_end_matches('/');
    let rest = if path == "/" {
        None
    } else if path == bare {
        Some("")
    } else {
        Some(path.strip_prefix(cp)?)
    };
    if method != Method::GET && method != Method::HEAD {
        return Some(Err(Error::MethodNotAllowed {
            method: method.to_string(),
            allow: "GET,HEAD",
        }));
    }
    Some(match (rest, cfg.enabled) {
        // Consul's agent redirects `/` to the UI when it is on.
        (None, true) => Ok(redirect(cp)),
        (None, false) => Ok(response::text(StatusCode::OK, UI_DISABLED)),
        (Some(_), false) => Err(Error::NotFound(UI_DISABLED.into())),
        (Some(""), true) if path == bare => Ok(redirect(cp)),
        (Some(rest), true) => assets::serve(cfg, rest).await,
    })
}

/// A 301 to `to`.
fn redirect(to: &str) -> Response<Body> {
    let mut resp = response::text(StatusCode::MOVED_PERMANENTLY, Bytes::new());
    if let Ok(v) = HeaderValue::from_str(to) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_paths_are_normalized_or_refused() {
        assert_eq!(normalize_content_path("/ui/").as_deref(), Ok("/ui/"));
        assert_eq!(
            normalize_content_path("consul-ui").as_deref(),
            Ok("/consul-ui/")
        );
        assert_eq!(normalize_content_path("/a/b").as_deref(), Ok("/a/b/"));
        for bad in ["/", "/v1/ui", "/a b/", "/a/../b", "/<x>/", "//x"] {
            assert!(normalize_content_path(bad).is_err(), "{bad}");
        }
    }
}

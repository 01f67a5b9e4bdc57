//! The UI's files: embedded in the binary at build time (`api/ui/`, no
//! bundler or network), or read from `ui_config.dir` at request time. A
//! path that names no file answers the app's `index.html` (with its
//! `<base href>` set to the content path), so every deep link loads the app.

use bytes::Bytes;
use hyper::header::{self, HeaderValue};
use hyper::{Response, StatusCode};

use super::UiConfig;
use crate::error::{Error, Result};
use crate::response::{self, Body};

/// One embedded file: its path under the content path and its bytes.
struct Asset {
    path: &'static str,
    bytes: &'static [u8],
}

macro_rules! asset {
    ($path:literal) => {
        Asset {
            path: $path,
            bytes: include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/ui/", $path)),
        }
    };
}

/// Every embedded file.
const ASSETS: &[Asset] = &[
    asset!("index.html"),
    asset!("style.css"),
    asset!("app.mjs"),
    asset!("lib.mjs"),
    asset!("checks.mjs"),
    asset!("pages/services.mjs"),
    asset!("pages/nodes.mjs"),
    asset!("pages/kv.mjs"),
    asset!("pages/settings.mjs"),
    asset!("vendor/preact-11.2.0.mjs"),
    asset!("vendor/preact-hooks-11.2.0.mjs"),
    asset!("vendor/htm-3.1.1.mjs"),
    asset!("vendor/LICENSE-preact"),
    asset!("vendor/LICENSE-htm"),
];

/// The `<base href>` the shipped `index.html` carries.
const BASE: &str = "<base href=\"/ui/\">";

/// The content type for a file name.
fn content_type(path: &str) -> &'static str {
    match path.rsplit('.').next().unwrap_or_default() {
        "html" => "text/html; charset=utf-8",
        "mjs" | "js" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "woff2" => "font/woff2",
        _ => "text/plain; charset=utf-8",
    }
}

/// A 200 with `bytes`: `index.html` is never cached (it names the rest),
/// versioned vendor files forever, the app's own modules revalidated.
fn reply(path: &str, bytes: Bytes) -> Response<Body> {
    let mut resp = response::with_body(
        StatusCode::OK,
        HeaderValue::from_static(content_type(path)),
        bytes,
    );
    let cache = if path.starts_with("vendor/") && path.ends_with(".mjs") {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    resp
}

/// `index.html` with its base set to the content path (checked at
/// configuration to hold only path characters, so it needs no escaping).
fn index(cfg: &UiConfig, html: &[u8]) -> Response<Body> {
    let text = String::from_utf8_lossy(html).replacen(
        BASE,
        &format!("<base href=\"{}\">", cfg.content_path),
        1,
    );
    reply("index.html", Bytes::from(text))
}

/// The file at `rest` (the path under the content path).
pub(super) async fn serve(cfg: &UiConfig, rest: &str) -> Result<Response<Body>> {
    match &cfg.dir {
        None => {
            let found = ASSETS
                .iter()
                .find(|a| a.path == rest && rest != "index.html");
            Ok(match found {
                Some(a) => reply(a.path, Bytes::from_static(a.bytes)),
                None => {
                    let html = ASSETS.iter().find(|a| a.path == "index.html");
                    index(cfg, html.map_or(&[][..], |a| a.bytes))
                }
            })
        }
        Some(dir) => {
            // The path is canonical (no `..`: the router refused it).
            let file = dir.join(rest);
            if !rest.is_empty() && rest != "index.html" {
                if let Ok(bytes) = tokio::fs::read(&file).await {
                    return Ok(reply(rest, Bytes::from(bytes)));
                }
            }
            match tokio::fs::read(dir.join("index.html")).await {
                Ok(html) => Ok(index(cfg, &html)),
                Err(e) => Err(Error::NotFound(format!(
                    "UI directory {}: no index.html ({e}); set ui_config.dir to a directory \
                     holding the UI, or remove it to serve the built-in one",
                    dir.display()
                ))),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_embedded_module_is_listed() {
        // The app's own modules import each other; a module missing here
        // would load as index.html and break the app.
        for a in ASSETS.iter().filter(|a| a.path.ends_with(".mjs")) {
            let text = String::from_utf8_lossy(a.bytes);
            for line in text.lines().filter(|l| l.contains(" from '.")) {
                let Some(spec) = line.split('\'').nth(1) else {
                    continue;
                };
                let base = a.path.rsplit_once('/').map_or("", |(d, _)| d);
                let mut parts: Vec<&str> = if base.is_empty() {
                    Vec::new()
                } else {
                    base.split('/').collect()
                };
                for seg in spec.split('/') {
                    match seg {
                        "." => {}
                        ".." => {
                            parts.pop();
                        }
                        s => parts.push(s),
                    }
                }
                let target = parts.join("/");
                assert!(
                    ASSETS.iter().any(|x| x.path == target),
                    "{} imports {spec} ({target}), which is not embedded",
                    a.path
                );
            }
        }
        let html = ASSETS
            .iter()
            .find(|a| a.path == "index.html")
            .map(|a| a.bytes);
        let html = String::from_utf8_lossy(html.unwrap_or_default());
        assert!(
            html.contains(BASE),
            "index.html carries the base to rewrite"
        );
        for a in ASSETS
            .iter()
            .filter(|a| a.path.starts_with("vendor/") && a.path.ends_with(".mjs"))
        {
            assert!(
                html.contains(&format!("./{}", a.path)),
                "import map names {}",
                a.path
            );
        }
    }

    #[tokio::test]
    async fn unknown_paths_answer_the_app_with_its_base() -> Result<()> {
        let cfg = UiConfig {
            enabled: true,
            dir: None,
            content_path: "/console/".into(),
        };
        for path in [
            "",
            "dc1/services/web/instances",
            "dc1/kv/a/b/edit",
            "index.html",
        ] {
            let resp = serve(&cfg, path).await?;
            assert_eq!(resp.status(), StatusCode::OK);
            let body = http_body_util::BodyExt::collect(resp.into_body())
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            let text = String::from_utf8_lossy(&body);
            assert!(text.contains("<base href=\"/console/\">"), "{path}: {text}");
        }
        let css = serve(&cfg, "style.css").await?;
        assert_eq!(
            css.headers()
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok()),
            Some("text/css; charset=utf-8")
        );
        Ok(())
    }
}

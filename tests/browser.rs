//! A real headless Chromium for the UI tests, driven over WebDriver
//! (Debian's `chromium` and `chromium-driver`; `fantoccini` as the client).
//! [`Browser::open`] starts a chromedriver on a free loopback port and one
//! browser session; dropping it ends both. Without the packages it returns
//! `None` (the test says so and passes), unless `MUSTER_REQUIRE_BROWSER`
//! is set, as `.ci/run` sets it: then their absence fails the test.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

use crate::harness::free_port;

/// Where Debian puts the browser and its driver.
const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// How long a page may take to show what a test waits for.
pub const PAGE: Duration = Duration::from_secs(15);

/// A chromedriver and one browser session on it.
pub struct Browser {
    pub rt: tokio::runtime::Runtime,
    pub client: Client,
    driver: Child,
    /// Where screenshots go (`target/ui-screenshots`).
    shots: PathBuf,
}

impl Browser {
    /// A fresh headless browser, or `None` (with the reason printed) when
    /// Chromium or its driver is not installed.
    pub fn open() -> Option<Browser> {
        if !(Path::new(CHROMIUM).exists() && Path::new(CHROMEDRIVER).exists()) {
            let why = "UI browser tests need Debian's chromium and chromium-driver \
                       (apt-get install chromium chromium-driver)";
            assert!(
                std::env::var_os("MUSTER_REQUIRE_BROWSER").is_none(),
                "{why}, and MUSTER_REQUIRE_BROWSER is set"
            );
            eprintln!("SKIPPED: {why}");
            return None;
        }
        let port = free_port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let caps = json!({
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                // The flags this machine needs: no sandbox as root, and no
                // background traffic to a network it cannot reach.
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-quic", "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--window-size=1200,900"
                ]
            }
        });
        let caps = match caps {
            serde_json::Value::Object(m) => m,
            _ => unreachable!("an object literal"),
        };
        let url = format!("http://127.0.0.1:{port}");
        let start = Instant::now();
        let client = loop {
            let mut builder =
                ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new());
            builder.capabilities(caps.clone());
            match rt.block_on(builder.connect(&url)) {
                Ok(client) => break client,
                Err(e) if start.elapsed() < Duration::from_secs(30) => {
                    let _ = e;
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => panic!("cannot start a Chromium session: {e}"),
            }
        };
        let shots = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/ui-screenshots");
        std::fs::create_dir_all(&shots).expect("screenshot dir");
        Some(Browser {
            rt,
            client,
            driver,
            shots,
        })
    }

    /// Load `url`.
    pub fn goto(&self, url: &str) {
        self.rt
            .block_on(self.client.goto(url))
            .unwrap_or_else(|e| panic!("open {url}: {e}"));
    }

    /// The page's visible text.
    pub fn text(&self) -> String {
        self.rt
            .block_on(async {
                let body = self.client.find(Locator::Css("body")).await?;
                body.text().await
            })
            .unwrap_or_default()
    }

    /// Wait until the visible text contains every one of `needles`; panics
    /// with the text after [`PAGE`].
    pub fn wait_text(&self, needles: &[&str]) -> String {
        let start = Instant::now();
        loop {
            let text = self.text();
            if needles.iter().all(|n| text.contains(n)) {
                return text;
            }
            assert!(
                start.elapsed() < PAGE,
                "{needles:?} not all on {} within {PAGE:?}; page text:\n{text}",
                self.url()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The text of the first element matching `css` once it holds all of
    /// `needles`.
    pub fn wait_in(&self, css: &str, needles: &[&str]) -> String {
        let start = Instant::now();
        loop {
            let text = self
                .rt
                .block_on(async {
                    let el = self.client.find(Locator::Css(css)).await?;
                    el.text().await
                })
                .unwrap_or_default();
            if needles.iter().all(|n| text.contains(n)) {
                return text;
            }
            assert!(
                start.elapsed() < PAGE,
                "{needles:?} not all in {css} on {} within {PAGE:?}; it reads:\n{text}",
                self.url()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Click the first element matching `css`.
    pub fn click(&self, css: &str) {
        self.rt
            .block_on(async {
                self.client
                    .wait()
                    .for_element(Locator::Css(css))
                    .await?
                    .click()
                    .await
            })
            .unwrap_or_else(|e| panic!("click {css}: {e}"));
    }

    /// Replace the text of the input matching `css`.
    pub fn type_into(&self, css: &str, text: &str) {
        self.rt
            .block_on(async {
                let el = self.client.wait().for_element(Locator::Css(css)).await?;
                el.clear().await?;
                el.send_keys(text).await
            })
            .unwrap_or_else(|e| panic!("type into {css}: {e}"));
    }

    /// Accept the open `confirm()` dialog.
    pub fn accept(&self) {
        let start = Instant::now();
        while self.rt.block_on(self.client.accept_alert()).is_err() {
            assert!(start.elapsed() < PAGE, "no dialog to accept");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Run `script` in the page.
    pub fn eval(&self, script: &str) -> serde_json::Value {
        self.rt
            .block_on(self.client.execute(script, Vec::new()))
            .unwrap_or_else(|e| panic!("{script}: {e}"))
    }

    /// The current URL.
    pub fn url(&self) -> String {
        self.rt
            .block_on(self.client.current_url())
            .map(|u| u.to_string())
            .unwrap_or_default()
    }

    /// Save a screenshot as `target/ui-screenshots/<name>.png`.
    pub fn screenshot(&self, name: &str) {
        let png = self
            .rt
            .block_on(self.client.screenshot())
            .unwrap_or_else(|e| panic!("screenshot {name}: {e}"));
        let path = self.shots.join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let client = self.client.clone();
        let _ = self.rt.block_on(client.close());
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

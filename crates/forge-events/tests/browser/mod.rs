//! A headless Chromium for tests, driven over WebDriver: Debian's `chromium` and
//! `chromium-driver` (`/usr/bin/chromium`, `/usr/bin/chromedriver`) through `fantoccini`.
//!
//! Include it in a test file with `mod browser;` (from another crate:
//! `#[path = "../../forge-events/tests/browser/mod.rs"] mod browser;`, with `fantoccini`,
//! `hyper-util`, `reqwest`, `serde_json` and `tempfile` as dev-dependencies).
//!
//! [`Browser::launch`] returns `None` — after printing `skipped: install chromium
//! chromium-driver` to stderr — when either program is missing, unless `FORGE_REQUIRE_BROWSER=1`
//! is set (as CI does), in which case it panics. `FORGE_CHROMIUM` and `FORGE_CHROMEDRIVER`
//! override the programs' paths.
//!
//! Chromium records its console (`goog:loggingPrefs` `browser`) and network
//! (`performance`) logs, which [`Browser::console_errors`] and [`Browser::requests`] read.
//! Dropping a `Browser` ends the session and kills chromedriver's process group, so a failing
//! test leaves no Chromium behind.
// Test code: it reports skips and artifacts on stderr, and names programs in plain words.
#![allow(
    dead_code,
    unreachable_pub,
    clippy::missing_panics_doc,
    clippy::print_stderr,
    clippy::doc_markdown
)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

/// The flags Chromium runs with: headless, no sandbox (CI runs as root), nothing that would
/// reach the network by itself.
pub const CHROMIUM_FLAGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
    "--window-size=1440,1100",
];

/// One entry of Chromium's console log.
#[derive(Debug, Clone)]
pub struct LogEntry {
    /// `SEVERE`, `WARNING`, `INFO`, …
    pub level: String,
    /// Where it came from: `console-api`, `javascript`, `network`, `security`, …
    pub source: String,
    /// The text.
    pub message: String,
}

/// A headless Chromium session.
pub struct Browser {
    client: Option<Client>,
    driver: Child,
    driver_addr: SocketAddr,
    session: String,
    http: reqwest::Client,
    /// Network log entries read so far (reading Chromium's log drains it).
    requests: std::sync::Mutex<Vec<String>>,
    _profile: tempfile::TempDir,
}

/// A program: the override from `env`, else the first of `candidates` that exists.
fn program(env: &str, candidates: &[&str]) -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(env) {
        let path = PathBuf::from(path);
        return path.is_file().then_some(path);
    }
    candidates.iter().map(PathBuf::from).find(|p| p.is_file())
}

fn required() -> bool {
    std::env::var("FORGE_REQUIRE_BROWSER").is_ok_and(|v| v == "1")
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Browser {
    /// Starts chromedriver and a headless Chromium session; `None` (test skipped) when they are
    /// not installed and `FORGE_REQUIRE_BROWSER=1` is not set.
    pub async fn launch() -> Option<Self> {
        let chromium = program(
            "FORGE_CHROMIUM",
            &["/usr/bin/chromium", "/usr/bin/chromium-browser"],
        );
        let driver = program(
            "FORGE_CHROMEDRIVER",
            &["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"],
        );
        let (Some(chromium), Some(driver)) = (chromium, driver) else {
            assert!(
                !required(),
                "FORGE_REQUIRE_BROWSER=1 but chromium or chromedriver is missing: \
                 apt-get install chromium chromium-driver"
            );
            eprintln!(
                "skipped: install chromium chromium-driver (Debian) to run the browser tests"
            );
            return None;
        };
        let mut last_error = String::new();
        // A port picked free can be taken before chromedriver binds it: try a few.
        for _ in 0..3 {
            match Self::start(&chromium, &driver).await {
                Ok(browser) => return Some(browser),
                Err(e) => last_error = e,
            }
        }
        panic!("cannot start headless Chromium: {last_error}");
    }

    async fn start(chromium: &Path, driver: &Path) -> Result<Self, String> {
        let port = free_port();
        let driver_addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let mut child = Command::new(driver)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .map_err(|e| format!("spawn {}: {e}", driver.display()))?;
        let http = reqwest::Client::new();
        let base = format!("http://{driver_addr}");
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!("chromedriver exited at start: {status}"));
            }
            let ready = http
                .get(format!("{base}/status"))
                .send()
                .await
                .ok()
                .map(|r| r.status().is_success());
            if ready == Some(true) {
                break;
            }
            if Instant::now() > deadline {
                kill_group(&mut child);
                return Err("chromedriver did not answer within 15 s".into());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let profile = tempfile::tempdir().map_err(|e| e.to_string())?;
        let mut args: Vec<String> = CHROMIUM_FLAGS.iter().map(|s| (*s).to_owned()).collect();
        args.push(format!("--user-data-dir={}", profile.path().display()));
        let caps = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": args,
                "perfLoggingPrefs": { "enableNetwork": true, "enablePage": false },
            },
            "goog:loggingPrefs": { "browser": "ALL", "performance": "ALL" },
        });
        let Value::Object(caps) = caps else {
            unreachable!()
        };
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = match ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(&base)
            .await
        {
            Ok(client) => client,
            Err(e) => {
                kill_group(&mut child);
                return Err(format!("new WebDriver session: {e}"));
            }
        };
        let session = client
            .session_id()
            .await
            .map_err(|e| e.to_string())?
            .ok_or("no session id")?;
        Ok(Self {
            client: Some(client),
            driver: child,
            driver_addr,
            session,
            http,
            requests: std::sync::Mutex::new(Vec::new()),
            _profile: profile,
        })
    }

    /// The WebDriver client, for anything this harness does not wrap.
    pub fn client(&self) -> &Client {
        self.client.as_ref().unwrap()
    }

    /// Navigates to `url` and waits for the page to load.
    pub async fn open(&self, url: &str) {
        self.client()
            .goto(url)
            .await
            .unwrap_or_else(|e| panic!("open {url}: {e}"));
    }

    /// Runs `script` (a function body: `return …`) in the page and returns its result.
    pub async fn js(&self, script: &str) -> Value {
        self.client()
            .execute(script, Vec::new())
            .await
            .unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
    }

    /// Waits until an element matches `css`, and returns the first.
    pub async fn wait_for(&self, css: &str, timeout: Duration) -> Element {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(element) = self.client().find(Locator::Css(css)).await {
                return element;
            }
            if Instant::now() > deadline {
                let text = self.body_text().await;
                panic!("no element matches `{css}` after {timeout:?}; the page shows:\n{text}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the JavaScript expression `predicate` is truthy, and returns its value.
    pub async fn wait_for_js(&self, predicate: &str, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        let script = format!("return ({predicate});");
        loop {
            let value = self.js(&script).await;
            let truthy = match &value {
                Value::Null => false,
                Value::Bool(b) => *b,
                Value::Number(n) => n.as_f64() != Some(0.0),
                Value::String(s) => !s.is_empty(),
                Value::Array(_) | Value::Object(_) => true,
            };
            if truthy {
                return value;
            }
            if Instant::now() > deadline {
                let text = self.body_text().await;
                panic!("`{predicate}` still false after {timeout:?}; the page shows:\n{text}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// How many elements match `css` now.
    pub async fn count(&self, css: &str) -> usize {
        self.client()
            .find_all(Locator::Css(css))
            .await
            .map_or(0, |all| all.len())
    }

    /// The page's visible text (for failure messages).
    pub async fn body_text(&self) -> String {
        match self.client().find(Locator::Css("body")).await {
            Ok(body) => body.text().await.unwrap_or_default(),
            Err(e) => format!("(no body: {e})"),
        }
    }

    async fn log(&self, kind: &str) -> Vec<Value> {
        let url = format!(
            "http://{}/session/{}/se/log",
            self.driver_addr, self.session
        );
        let response = self
            .http
            .post(&url)
            .json(&json!({ "type": kind }))
            .send()
            .await
            .unwrap_or_else(|e| panic!("read the {kind} log: {e}"));
        let body: Value = response.json().await.unwrap();
        match body.get("value") {
            Some(Value::Array(entries)) => entries.clone(),
            _ => panic!("unexpected {kind} log answer: {body}"),
        }
    }

    /// Runs a Chrome DevTools Protocol command (chromedriver's `goog/cdp/execute`), e.g.
    /// `Emulation.setEmulatedMedia`, and returns its result.
    pub async fn cdp(&self, command: &str, params: Value) -> Value {
        let url = format!(
            "http://{}/session/{}/goog/cdp/execute",
            self.driver_addr, self.session
        );
        let response = self
            .http
            .post(&url)
            .json(&json!({ "cmd": command, "params": params }))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{command}: {e}"));
        let status = response.status();
        let body: Value = response.json().await.unwrap();
        assert!(status.is_success(), "{command}: {body}");
        body["value"].clone()
    }

    /// Makes the page see `prefers-color-scheme: dark` (or light).
    pub async fn color_scheme(&self, dark: bool) {
        let value = if dark { "dark" } else { "light" };
        self.cdp(
            "Emulation.setEmulatedMedia",
            json!({ "features": [{ "name": "prefers-color-scheme", "value": value }] }),
        )
        .await;
    }

    /// Console entries logged since the last call (errors, warnings and the rest).
    pub async fn console(&self) -> Vec<LogEntry> {
        self.log("browser")
            .await
            .into_iter()
            .map(|entry| LogEntry {
                level: entry["level"].as_str().unwrap_or_default().to_owned(),
                source: entry["source"].as_str().unwrap_or_default().to_owned(),
                message: entry["message"].as_str().unwrap_or_default().to_owned(),
            })
            .collect()
    }

    /// Console errors (level `SEVERE`: `console.error`, uncaught exceptions, failed loads, CSP
    /// violations) logged since the last call.
    pub async fn console_errors(&self) -> Vec<LogEntry> {
        self.console()
            .await
            .into_iter()
            .filter(|e| e.level == "SEVERE")
            .collect()
    }

    /// Every URL the page requested so far (documents, scripts, fetches, event streams,
    /// images), from Chromium's network log.
    pub async fn requests(&self) -> Vec<String> {
        let entries = self.log("performance").await;
        let mut seen = self.requests.lock().unwrap();
        for entry in entries {
            let Some(text) = entry["message"].as_str() else {
                continue;
            };
            let Ok(message) = serde_json::from_str::<Value>(text) else {
                continue;
            };
            let message = &message["message"];
            let url = match message["method"].as_str() {
                Some("Network.requestWillBeSent") => message["params"]["request"]["url"].as_str(),
                Some("Network.webSocketCreated") => message["params"]["url"].as_str(),
                _ => None,
            };
            if let Some(url) = url {
                seen.push(url.to_owned());
            }
        }
        seen.clone()
    }

    /// The network requests (`http`, `https`, `ws`, `wss`, `ftp`) whose origin is not `origin`
    /// (e.g. `http://127.0.0.1:7317`). Other schemes never leave the machine: `data:` and
    /// `blob:` are made in the page, `chrome:` and `about:` are the browser's own pages (such as
    /// the new-tab page it starts with).
    pub async fn requests_outside(&self, origin: &str) -> Vec<String> {
        let origin = origin.trim_end_matches('/');
        let prefix = format!("{origin}/");
        self.requests()
            .await
            .into_iter()
            .filter(|url| {
                let scheme = url
                    .split(':')
                    .next()
                    .unwrap_or_default()
                    .to_ascii_lowercase();
                matches!(scheme.as_str(), "http" | "https" | "ws" | "wss" | "ftp")
                    && !(url.starts_with(&prefix) || url == origin)
            })
            .collect()
    }

    /// Saves a screenshot of the window to `<target>/test-artifacts/<name>` and returns its path.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let png = self.client().screenshot().await.unwrap();
        let dir = artifacts_dir();
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, png).unwrap();
        eprintln!("screenshot: {}", path.display());
        path
    }

    /// Ends the session (Chromium exits) and stops chromedriver.
    pub async fn close(mut self) {
        if let Some(client) = self.client.take() {
            let _ = client.close().await;
        }
        kill_group(&mut self.driver);
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if self.client.take().is_some() {
            // A test that panicked: end the session without a runtime, so Chromium exits.
            delete_session(self.driver_addr, &self.session);
        }
        kill_group(&mut self.driver);
    }
}

/// `DELETE /session/{id}` over a plain socket (usable from `Drop`).
fn delete_session(addr: SocketAddr, session: &str) {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_secs(2)) else {
        return;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let request = format!(
        "DELETE /session/{session} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    if stream.write_all(request.as_bytes()).is_ok() {
        let mut sink = Vec::new();
        let _ = stream.read_to_end(&mut sink);
    }
}

/// Stops chromedriver and anything left in its process group.
fn kill_group(child: &mut Child) {
    if let Ok(Some(_)) = child.try_wait() {
        return;
    }
    let group = format!("-{}", child.id());
    let _ = Command::new("kill")
        .args(["-TERM", "--", &group])
        .stderr(Stdio::null())
        .status();
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = Command::new("kill")
        .args(["-KILL", "--", &group])
        .stderr(Stdio::null())
        .status();
    let _ = child.wait();
}

/// `<target>/test-artifacts`: `CARGO_TARGET_DIR` if set, else the target directory the test
/// binary runs from (`<target>/debug/deps/<test>`).
pub fn artifacts_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        let dir = PathBuf::from(dir);
        let dir = if dir.is_relative() {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../..")
                .join(dir)
        } else {
            dir
        };
        return dir.join("test-artifacts");
    }
    std::env::current_exe()
        .ok()
        .and_then(|exe| {
            exe.ancestors()
                .find(|p| p.join("CACHEDIR.TAG").is_file())
                .map(Path::to_path_buf)
        })
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"))
        .join("test-artifacts")
}

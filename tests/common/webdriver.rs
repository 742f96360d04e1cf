//! A small W3C WebDriver client over HTTP (reqwest) for the browser tests:
//! chromedriver on a free loopback port driving a headless Chromium with a
//! fresh profile. [`Browser`] kills chromedriver and every process it
//! started (its process group) when dropped, on every exit path, panics
//! included.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine;
use reqwest::Client;
use serde_json::{Value, json};

/// Where Debian's `chromium-driver` and `chromium` put them.
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: [&str; 2] = ["/usr/lib/chromium/chromium", "/usr/bin/chromium"];
/// Set in CI: a missing browser fails the test instead of skipping it.
pub const REQUIRE: &str = "PRESENCE_SYNC_REQUIRE_CHROMIUM";
/// The W3C key of an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";
/// Each WebDriver command gets this long (a page load included).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// The browser binary, or why the test cannot run here.
pub fn chromium() -> Result<PathBuf, String> {
    if !Path::new(CHROMEDRIVER).exists() {
        return Err(format!(
            "{CHROMEDRIVER} is missing (Debian: apt-get install chromium chromium-driver)"
        ));
    }
    CHROMIUM
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .ok_or_else(|| "no chromium binary (Debian: apt-get install chromium)".to_string())
}

/// Whether a browser test may run: `None` means skip (printed why), and
/// with [`REQUIRE`] set a missing browser is a failure.
pub fn browser_or_skip(test: &str) -> Option<PathBuf> {
    match chromium() {
        Ok(path) => Some(path),
        Err(why) if std::env::var(REQUIRE).is_ok_and(|v| v == "1") => {
            panic!("{test}: {why}, and {REQUIRE}=1 says it must run")
        }
        Err(why) => {
            eprintln!("{test}: skipped: {why}");
            None
        }
    }
}

/// chromedriver and one session of a headless Chromium.
pub struct Browser {
    http: Client,
    driver: Child,
    base: String,
    session: String,
    _profile: tempfile::TempDir,
}

impl Drop for Browser {
    fn drop(&mut self) {
        // chromedriver was made the leader of its own process group, and
        // Chromium with its helpers stay in it: end them all.
        let group = -(self.driver.id() as i32);
        unsafe {
            libc::kill(group, libc::SIGTERM);
        }
        for _ in 0..40 {
            if matches!(self.driver.try_wait(), Ok(Some(_))) {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        unsafe {
            libc::kill(group, libc::SIGKILL);
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("its address").port()
}

impl Browser {
    /// Starts chromedriver and a session of `chromium`, `width`×`height`.
    pub async fn start(chromium: &Path, width: u32, height: u32) -> Browser {
        let port = free_port();
        let mut command = Command::new(CHROMEDRIVER);
        command
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0);
        let driver = command.spawn().expect("chromedriver starts");
        let profile = tempfile::tempdir().expect("a profile directory");
        let http = Client::builder()
            .timeout(COMMAND_TIMEOUT)
            .no_proxy()
            .build()
            .expect("HTTP client");
        let base = format!("http://127.0.0.1:{port}");
        let mut browser = Browser {
            http,
            driver,
            base,
            session: String::new(),
            _profile: profile,
        };
        browser.wait_ready().await;
        let args = vec![
            "--headless".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-quic".into(),
            "--no-first-run".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--disable-dev-shm-usage".into(),
            "--no-proxy-server".into(),
            format!("--window-size={width},{height}"),
            format!("--user-data-dir={}", browser._profile.path().display()),
        ];
        let created = browser
            .post(
                "/session",
                json!({"capabilities": {"alwaysMatch": {
                    "browserName": "chrome",
                    "goog:chromeOptions": {"binary": chromium, "args": args},
                    "timeouts": {"pageLoad": 30_000, "script": 30_000, "implicit": 0},
                }}}),
            )
            .await;
        browser.session = created["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {created}"))
            .to_string();
        browser
    }

    async fn wait_ready(&self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(response) = self.http.get(format!("{}/status", self.base)).send().await
                && let Ok(body) = response.json::<Value>().await
                && body["value"]["ready"] == json!(true)
            {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "chromedriver did not become ready"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut request = self
            .http
            .request(method.clone(), format!("{}{path}", self.base));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        assert!(status.is_success(), "{method} {path}: {status} {body}");
        body["value"].clone()
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    fn at(&self, path: &str) -> String {
        format!("/session/{}{path}", self.session)
    }

    pub async fn goto(&self, url: &str) {
        self.post(&self.at("/url"), json!({ "url": url })).await;
    }

    /// Runs `script` (a function body; `arguments` are `args`) in the page.
    pub async fn script(&self, script: &str, args: Value) -> Value {
        self.post(
            &self.at("/execute/sync"),
            json!({"script": script, "args": args}),
        )
        .await
    }

    /// The first element matching a CSS selector, if any.
    pub async fn find(&self, css: &str) -> Option<String> {
        let found = self
            .post(
                &self.at("/elements"),
                json!({"using": "css selector", "value": css}),
            )
            .await;
        found.as_array()?.first()?[ELEMENT]
            .as_str()
            .map(str::to_string)
    }

    /// The element matching `css`, waiting for it to appear.
    pub async fn wait_for(&self, css: &str) -> String {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(element) = self.find(css).await {
                return element;
            }
            if tokio::time::Instant::now() >= deadline {
                let page = self
                    .script(
                        "return location.href + ' ' + document.documentElement.outerHTML.slice(0, 400);",
                        json!([]),
                    )
                    .await;
                let raw = self
                    .post(
                        &self.at("/elements"),
                        json!({"using": "css selector", "value": css}),
                    )
                    .await;
                panic!("`{css}` did not appear on {page} ({raw})");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn click(&self, css: &str) {
        let element = self.wait_for(css).await;
        self.post(&self.at(&format!("/element/{element}/click")), json!({}))
            .await;
    }

    /// Types `text` into the element (WebDriver key codes allowed).
    pub async fn type_into(&self, css: &str, text: &str) {
        let element = self.wait_for(css).await;
        self.post(
            &self.at(&format!("/element/{element}/value")),
            json!({ "text": text }),
        )
        .await;
    }

    pub async fn clear(&self, css: &str) {
        let element = self.wait_for(css).await;
        self.post(&self.at(&format!("/element/{element}/clear")), json!({}))
            .await;
    }

    /// The rendered text of the first element matching `css` ("" when none).
    pub async fn text(&self, css: &str) -> String {
        self.script(
            "const e = document.querySelector(arguments[0]); return e ? e.textContent : '';",
            json!([css]),
        )
        .await
        .as_str()
        .unwrap_or_default()
        .to_string()
    }

    /// Polls `check` (a script returning a boolean) until true, for at most
    /// `patience`; false if it never was.
    pub async fn until(&self, check: &str, args: Value, patience: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + patience;
        loop {
            if self.script(check, args.clone()).await == json!(true) {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Makes the page see `prefers-color-scheme: dark` (or light), through
    /// chromedriver's DevTools passthrough.
    pub async fn color_scheme(&self, scheme: &str) {
        self.post(
            &self.at("/goog/cdp/execute"),
            json!({"cmd": "Emulation.setEmulatedMedia", "params": {
                "features": [{"name": "prefers-color-scheme", "value": scheme}]
            }}),
        )
        .await;
    }

    /// A PNG of the viewport.
    pub async fn screenshot(&self) -> Vec<u8> {
        let encoded = self
            .call(reqwest::Method::GET, &self.at("/screenshot"), None)
            .await;
        base64::engine::general_purpose::STANDARD
            .decode(encoded.as_str().expect("base64 PNG"))
            .expect("the screenshot decodes")
    }
}

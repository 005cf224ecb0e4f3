//! A small W3C WebDriver client (enough for tauri-driver + WebKitWebDriver): sessions,
//! elements by CSS selector, click, type, text, screenshots. Every wait is bounded.

use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

pub struct Session {
    http: reqwest::Client,
    base: String,
}

impl Session {
    /// Opens a session that launches `application` through tauri-driver at `port`.
    pub async fn start(port: u16, application: &str) -> Session {
        // reqwest is built without a TLS provider here (iroh's choice); install ours.
        can_sync::can_client::install_crypto_provider();
        let http = reqwest::Client::new();
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "wry",
            "tauri:options": {"application": application}
        }}});
        let deadline = Instant::now() + Duration::from_secs(60);
        let resp: Value = loop {
            match http
                .post(format!("http://127.0.0.1:{port}/session"))
                .json(&caps)
                .timeout(Duration::from_secs(60))
                .send()
                .await
            {
                Ok(r) => break r.json().await.expect("session json"),
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => panic!("tauri-driver did not answer: {e}"),
            }
        };
        let id = resp["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {resp}"))
            .to_owned();
        Session {
            http,
            base: format!("http://127.0.0.1:{port}/session/{id}"),
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .timeout(Duration::from_secs(30));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let v: Value = req
            .send()
            .await
            .expect("webdriver request")
            .json()
            .await
            .expect("webdriver json");
        v
    }

    /// The first element matching `css`, waiting up to `secs`.
    pub async fn find(&self, css: &str, secs: u64) -> String {
        self.try_find(css, secs)
            .await
            .unwrap_or_else(|| panic!("no element {css} within {secs} s"))
    }

    pub async fn try_find(&self, css: &str, secs: u64) -> Option<String> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let v = self
                .call(
                    reqwest::Method::POST,
                    "/element",
                    Some(json!({"using": "css selector", "value": css})),
                )
                .await;
            if let Some(id) = v["value"][ELEMENT].as_str() {
                return Some(id.to_owned());
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn count(&self, css: &str) -> usize {
        let v = self
            .call(
                reqwest::Method::POST,
                "/elements",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await;
        v["value"].as_array().map_or(0, Vec::len)
    }

    pub async fn click(&self, css: &str) {
        let id = self.find(css, 20).await;
        let v = self
            .call(
                reqwest::Method::POST,
                &format!("/element/{id}/click"),
                Some(json!({})),
            )
            .await;
        assert!(v["value"].is_null(), "click on {css} failed: {v}");
    }

    pub async fn type_into(&self, css: &str, text: &str) {
        let id = self.find(css, 20).await;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{id}/clear"),
            Some(json!({})),
        )
        .await;
        let v = self
            .call(
                reqwest::Method::POST,
                &format!("/element/{id}/value"),
                Some(json!({"text": text})),
            )
            .await;
        assert!(v["value"].is_null(), "typing into {css} failed: {v}");
    }

    pub async fn text(&self, css: &str) -> String {
        let id = self.find(css, 20).await;
        let v = self
            .call(reqwest::Method::GET, &format!("/element/{id}/text"), None)
            .await;
        v["value"].as_str().unwrap_or_default().to_owned()
    }

    /// Waits until the text of `css` satisfies `ok`; returns it.
    pub async fn wait_text(&self, css: &str, secs: u64, ok: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let t = match self.try_find(css, 0).await {
                Some(id) => self
                    .call(reqwest::Method::GET, &format!("/element/{id}/text"), None)
                    .await["value"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                None => String::new(),
            };
            if ok(&t) {
                return t;
            }
            if Instant::now() >= deadline {
                let page = self
                    .execute("return document.body ? document.body.innerText.slice(0, 2000) : ''")
                    .await;
                panic!("{css} never matched within {secs} s; last text: {t:?}; the page: {page}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    pub async fn execute(&self, script: &str) -> Value {
        self.call(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({"script": script, "args": []})),
        )
        .await["value"]
            .clone()
    }

    /// Runs `script` as an async script: it finishes by calling its last argument.
    pub async fn execute_async(&self, script: &str) -> Value {
        self.call(
            reqwest::Method::POST,
            "/execute/async",
            Some(json!({"script": script, "args": []})),
        )
        .await["value"]
            .clone()
    }

    /// The session's window handles (one per webview the app has).
    pub async fn window_handles(&self) -> Vec<String> {
        let v = self
            .call(reqwest::Method::GET, "/window/handles", None)
            .await;
        v["value"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|h| h.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Waits up to `secs` for a window handle other than those in `old`, and switches the
    /// session to it (a recreated window is a new browsing context for WebDriver).
    pub async fn switch_to_new_window(&self, old: &[String], secs: u64) -> String {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let handles = self.window_handles().await;
            if let Some(h) = handles.iter().find(|h| !old.contains(h)) {
                let v = self
                    .call(reqwest::Method::POST, "/window", Some(json!({"handle": h})))
                    .await;
                assert!(v["value"].is_null(), "switching to window {h} failed: {v}");
                return h.clone();
            }
            assert!(
                Instant::now() < deadline,
                "no new window within {secs} s (handles: {handles:?}, before: {old:?})"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    pub async fn screenshot(&self, path: &std::path::Path) {
        let v = self.call(reqwest::Method::GET, "/screenshot", None).await;
        let b64 = v["value"].as_str().expect("screenshot data");
        let png = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .expect("screenshot base64");
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("screenshot dir");
        }
        std::fs::write(path, png).expect("write screenshot");
    }

    pub async fn close(self) {
        let _ = self
            .http
            .delete(&self.base)
            .timeout(Duration::from_secs(20))
            .send()
            .await;
    }
}

//! Headless Chromium, driven over WebDriver (chromedriver + fantoccini), for
//! the end-to-end tests of the web pages.
//!
//! Chromium and chromedriver come from Debian's `chromium` and
//! `chromium-driver` packages, which `scripts/test` installs. The browser
//! resolves every host name except 127.0.0.1 to nothing and has its
//! background services off, so it sends no traffic beyond loopback.
//! Screenshots go to the directory the test names (the e2e test uses
//! `$CARGO_TARGET_TMPDIR/e2e-screenshots/`).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

/// A chromedriver process and a browser session on it.
pub struct Browser {
    pub client: Client,
    driver: tokio::process::Child,
    shots: PathBuf,
}

impl std::fmt::Debug for Browser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Browser").finish_non_exhaustive()
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl Browser {
    /// Starts chromedriver and a headless Chromium with a `width`×`height`
    /// window, saving screenshots into `shots`.
    pub async fn start(width: u32, height: u32, shots: PathBuf) -> Browser {
        let driver_bin = std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".into());
        let port = free_port();
        let driver = tokio::process::Command::new(&driver_bin)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start {driver_bin} ({e}); scripts/test installs chromium-driver")
            });
        let chrome = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": chrome,
                "args": [
                    "--headless=new",
                    "--no-sandbox",
                    "--disable-dev-shm-usage",
                    "--disable-gpu",
                    format!("--window-size={width},{height}"),
                    "--no-first-run",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-default-apps",
                    "--disable-sync",
                    "--disable-domain-reliability",
                    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
                ],
            }),
        );
        let url = format!("http://127.0.0.1:{port}");
        let mut last = None;
        for _ in 0..100 {
            match ClientBuilder::rustls()
                .expect("rustls connector")
                .capabilities(caps.clone())
                .connect(&url)
                .await
            {
                Ok(client) => {
                    std::fs::create_dir_all(&shots).expect("screenshot dir");
                    return Browser {
                        client,
                        driver,
                        shots,
                    };
                }
                Err(e) => last = Some(e),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("no WebDriver session on {url}: {last:?}");
    }

    pub async fn goto(&self, url: &str) {
        self.client.goto(url).await.expect("navigate");
    }

    /// Waits (up to 20 s) for `css` to match, and returns the element.
    pub async fn find(&self, css: &str) -> fantoccini::elements::Element {
        self.client
            .wait()
            .at_most(Duration::from_secs(20))
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no element {css}: {e}"))
    }

    /// Clicks `css` after scrolling it to the middle of the window (so a
    /// sticky header cannot cover it).
    /// Pages that re-render (live updates) can replace the element between
    /// finding and clicking it; that is retried with a fresh lookup.
    pub async fn click(&self, css: &str) {
        let mut last = String::new();
        for _ in 0..25 {
            let el = self.find(css).await;
            let arg = serde_json::to_value(&el).expect("element reference");
            let _ = self
                .client
                .execute("arguments[0].scrollIntoView({block: 'center'});", vec![arg])
                .await;
            match el.click().await {
                Ok(()) => return,
                Err(e) => {
                    last = e.to_string();
                    if !(last.contains("stale element") || last.contains("not interactable")) {
                        break;
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        self.screenshot("failure").await;
        panic!("click {css}: {last}");
    }

    /// Replaces the value of an input with `text`.
    pub async fn fill(&self, css: &str, text: &str) {
        let el = self.find(css).await;
        el.clear()
            .await
            .unwrap_or_else(|e| panic!("clear {css}: {e}"));
        el.send_keys(text)
            .await
            .unwrap_or_else(|e| panic!("type into {css}: {e}"));
    }

    pub async fn text(&self, css: &str) -> String {
        self.find(css).await.text().await.unwrap_or_default()
    }

    /// Waits until the text of `css` contains `want` (up to `limit`);
    /// returns the text.
    pub async fn wait_text(&self, css: &str, want: &str, limit: Duration) -> String {
        let deadline = tokio::time::Instant::now() + limit;
        let mut seen = String::new();
        while tokio::time::Instant::now() < deadline {
            if let Ok(el) = self.client.find(Locator::Css(css)).await {
                seen = el.text().await.unwrap_or_default();
                if seen.contains(want) {
                    return seen;
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        self.screenshot("failure").await;
        panic!("{css} never contained {want:?} within {limit:?}; last text: {seen:?}");
    }

    /// Waits until the page URL contains `part`.
    pub async fn wait_url(&self, part: &str, limit: Duration) -> String {
        let deadline = tokio::time::Instant::now() + limit;
        let mut url = String::new();
        while tokio::time::Instant::now() < deadline {
            url = self
                .client
                .current_url()
                .await
                .map(|u| u.to_string())
                .unwrap_or_default();
            if url.contains(part) {
                return url;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.screenshot("failure").await;
        panic!("the URL never contained {part:?}; it is {url}");
    }

    /// Saves a PNG screenshot as `<name>.png`; returns its path.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let png = self.client.screenshot().await.expect("screenshot");
        let path = self.shots.join(format!("{name}.png"));
        std::fs::write(&path, png).expect("write screenshot");
        path
    }

    /// Scrolls the element matching `css` to the top of the window.
    pub async fn scroll_to(&self, css: &str) {
        let el = self.find(css).await;
        let arg = serde_json::to_value(&el).expect("element reference");
        self.client
            .execute("arguments[0].scrollIntoView({block: 'start'});", vec![arg])
            .await
            .expect("scroll");
    }

    /// Resizes the window (for phone-sized screenshots).
    pub async fn resize(&self, width: u32, height: u32) {
        self.client
            .set_window_size(width, height)
            .await
            .expect("resize");
    }

    pub async fn close(mut self) {
        let _ = self.client.clone().close().await;
        let _ = self.driver.kill().await;
    }
}

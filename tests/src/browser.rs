//! A headless Chromium driven through chromedriver (started by
//! `scripts/test.sh`), for the consent pages as an admin sees them. Every
//! page it waits for can be kept as a screenshot under `target/screenshots/`.

use fantoccini::{ClientBuilder, Locator};
use serde_json::json;
use std::path::PathBuf;
use std::time::Duration;

/// One browser with its own profile, removed when it closes.
pub struct Browser {
    client: fantoccini::Client,
    profile: PathBuf,
    /// Prefix of this browser's screenshots (`serve-file`, `demo`, …).
    name: String,
}

impl Browser {
    /// A new headless Chromium; fails (never skips) without chromedriver.
    pub async fn start(name: &str) -> Self {
        let webdriver = std::env::var("ROOMTOKEN_TEST_WEBDRIVER").expect(
            "ROOMTOKEN_TEST_WEBDRIVER is not set: run the suite with scripts/test.sh, which starts chromedriver",
        );
        let profile = std::env::temp_dir().join(format!(
            "roomtoken-chromium-{}-{}",
            std::process::id(),
            crate::unique_id(name)
        ));
        let capabilities = json!({
            "goog:chromeOptions": {
                "binary": std::env::var("ROOMTOKEN_TEST_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into()),
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    "--window-size=900,1800",
                    format!("--user-data-dir={}", profile.display()),
                ]
            }
        });
        // Both ring and aws-lc-rs are in the dependency graph: pick one for
        // the WebDriver client, as rustls asks.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = ClientBuilder::rustls()
            .expect("rustls")
            .capabilities(capabilities.as_object().expect("object").clone())
            .connect(&webdriver)
            .await
            .expect("connect to chromedriver");
        Self {
            client,
            profile,
            name: name.to_owned(),
        }
    }

    pub async fn goto(&self, url: &str) {
        self.client
            .goto(url)
            .await
            .unwrap_or_else(|e| panic!("open {url}: {e}"));
    }

    pub async fn source(&self) -> String {
        self.client.source().await.expect("page source")
    }

    /// Keeps the page as `target/screenshots/{name}-{page}.png`.
    pub async fn snap(&self, page: &str) {
        let png = self.client.screenshot().await.expect("screenshot");
        let file = screenshots().join(format!("{}-{page}.png", self.name));
        std::fs::write(file, png).expect("write screenshot");
    }

    async fn element(&self, locator: Locator<'_>) -> fantoccini::elements::Element {
        match self
            .client
            .wait()
            .at_most(Duration::from_secs(20))
            .for_element(locator)
            .await
        {
            Ok(element) => element,
            Err(e) => panic!("{locator:?}: {e}\n{}", self.source().await),
        }
    }

    pub async fn click(&self, locator: Locator<'_>) {
        self.element(locator).await.click().await.expect("click");
    }

    /// Clicks the link or button whose text is `text`.
    pub async fn click_text(&self, text: &str) {
        let xpath = format!("//*[self::a or self::button][normalize-space()=\"{text}\"]");
        self.click(Locator::XPath(&xpath)).await;
    }

    /// Types `text` into the field `id`, emptied first.
    pub async fn fill(&self, id: &str, text: &str) {
        let field = self.element(Locator::Id(id)).await;
        field.clear().await.expect("clear");
        field.send_keys(text).await.expect("type");
    }

    /// Sets a field's value directly: a date (typing one depends on the
    /// browser's locale), a hidden field, or more than anyone would type.
    pub async fn set_value(&self, id: &str, value: &str) {
        self.element(Locator::Id(id)).await;
        self.client
            .execute(
                "document.getElementById(arguments[0]).value = arguments[1];",
                vec![json!(id), json!(value)],
            )
            .await
            .expect("set a field's value");
    }

    /// A field's current value.
    pub async fn value(&self, id: &str) -> String {
        self.element(Locator::Id(id))
            .await
            .prop("value")
            .await
            .expect("value")
            .unwrap_or_default()
    }

    /// Waits for the page whose heading is `text` (the click before it may
    /// still be leaving the previous page); returns its source.
    pub async fn expect_heading(&self, text: &str) -> String {
        let xpath = format!("//h1[normalize-space()=\"{text}\"]");
        self.wait_for_page(&xpath, &format!("headed '{text}'"))
            .await
    }

    /// Waits for a page headed `heading` that shows `text` (when the click
    /// before it leads to a page with the same heading, the heading alone
    /// would be found on the page being left); returns its source.
    pub async fn expect_heading_and_text(&self, heading: &str, text: &str) -> String {
        let xpath = format!(
            "//main[h1[normalize-space()=\"{heading}\"] and contains(normalize-space(), \"{text}\")]"
        );
        self.wait_for_page(&xpath, &format!("headed '{heading}' showing '{text}'"))
            .await
    }

    /// Waits up to 20 s for an element `xpath` finds; the page's source.
    async fn wait_for_page(&self, xpath: &str, what: &str) -> String {
        let found = self
            .client
            .wait()
            .at_most(Duration::from_secs(20))
            .for_element(Locator::XPath(xpath))
            .await;
        let page = self.source().await;
        assert!(found.is_ok(), "no page {what}: {page}");
        page
    }

    pub async fn close(self) {
        let _ = self.client.close().await;
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// Where the pages' screenshots are kept for review.
pub fn screenshots() -> PathBuf {
    let dir = crate::template::workspace_root().join("target/screenshots");
    std::fs::create_dir_all(&dir).expect("screenshot folder");
    dir
}

//! The README's run command, for real: the `roomtoken demo` binary, a
//! headless Chromium that opens the consent link and clicks "Sign in", and a
//! display that then reads a token with the printed device key.

use fantoccini::{ClientBuilder, Locator};
use serde_json::{Value, json};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::Command;

struct DemoOutput {
    base: String,
    link: String,
    key: String,
    vendor_link: String,
    vendor_key: String,
}

/// Reads the demo's instructions up to their last line, then keeps
/// draining stdout so that the demo never writes into a closed pipe.
async fn read_instructions(stdout: tokio::process::ChildStdout) -> DemoOutput {
    let mut lines = BufReader::new(stdout).lines();
    let (mut link, mut key, mut base) = (None, None, None);
    let (mut vendor_link, mut vendor_key) = (None, None);
    while let Some(line) = lines.next_line().await.expect("demo stdout") {
        let line = line.trim();
        if line.starts_with("http") && line.contains("/connect/demo?invite=") {
            link = Some(line.to_owned());
        }
        if line.starts_with("http") && line.contains("/connect/demo-vendor?invite=") {
            vendor_link = Some(line.to_owned());
        }
        if let Some(rest) = line.strip_prefix("curl -s -H 'Authorization: Bearer ") {
            let (k, url) = rest.split_once("' ").expect("curl line shape");
            if url.contains("demo-vendor") {
                vendor_key = Some(k.to_owned());
            } else {
                key = Some(k.to_owned());
                base = Some(url.split("v1/").next().expect("url").to_owned());
            }
        }
        if line.starts_with("Tokens are refreshed") {
            break;
        }
    }
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    DemoOutput {
        base: base.expect("the demo printed a token URL"),
        link: link.expect("the demo printed a consent link"),
        key: key.expect("the demo printed a device key"),
        vendor_link: vendor_link.expect("the demo printed a vendor consent link"),
        vendor_key: vendor_key.expect("the demo printed a vendor device key"),
    }
}

/// Where the pages' screenshots are kept for review.
fn screenshots() -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/screenshots");
    std::fs::create_dir_all(&dir).expect("screenshot folder");
    dir
}

async fn snap(browser: &fantoccini::Client, name: &str) {
    let png = browser.screenshot().await.expect("screenshot");
    std::fs::write(screenshots().join(format!("{name}.png")), png).expect("write screenshot");
}

async fn click(browser: &fantoccini::Client, locator: Locator<'_>) {
    browser
        .wait()
        .for_element(locator)
        .await
        .unwrap_or_else(|e| panic!("{locator:?}: {e}"))
        .click()
        .await
        .expect("click");
}

/// Waits for the page whose heading is `text` (the click before it may
/// still be leaving the previous page).
async fn expect_heading(browser: &fantoccini::Client, text: &str) {
    let found = browser
        .wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::XPath(&format!(
            "//h1[normalize-space()=\"{text}\"]"
        )))
        .await;
    if found.is_err() {
        let page = browser.source().await.unwrap_or_default();
        panic!("no page headed '{text}': {page}");
    }
}

#[tokio::test]
async fn a_browser_connects_the_demo_and_a_display_reads_a_token() {
    let webdriver = std::env::var("ROOMTOKEN_TEST_WEBDRIVER").expect(
        "ROOMTOKEN_TEST_WEBDRIVER is not set: run the suite with scripts/test.sh, which starts chromedriver",
    );
    let mut demo = Command::new(env!("CARGO_BIN_EXE_roomtoken"))
        .args(["demo", "--addr", "127.0.0.1:0"])
        .env("RUST_LOG", "debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start roomtoken demo");
    let mut stderr = demo.stderr.take().expect("stderr");
    let logs = tokio::spawn(async move {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text).await;
        text
    });
    let demo_output = tokio::time::timeout(
        Duration::from_secs(60),
        read_instructions(demo.stdout.take().expect("stdout")),
    )
    .await
    .expect("the demo printed its instructions within a minute");

    let profile = std::env::temp_dir().join(format!("roomtoken-chromium-{}", std::process::id()));
    let capabilities = json!({
        "goog:chromeOptions": {
            "binary": std::env::var("ROOMTOKEN_TEST_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into()),
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                format!("--user-data-dir={}", profile.display()),
            ]
        }
    });
    // Both ring and aws-lc-rs are in the dependency graph: pick one for the
    // WebDriver client, as rustls asks.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let browser = ClientBuilder::rustls()
        .expect("rustls")
        .capabilities(capabilities.as_object().expect("object").clone())
        .connect(&webdriver)
        .await
        .expect("connect to chromedriver");
    browser
        .goto(&demo_output.link)
        .await
        .expect("open the consent link");
    browser
        .wait()
        .for_element(Locator::Id("signin"))
        .await
        .expect("the simulated sign-in page");
    snap(&browser, "01-operator-sign-in").await;
    click(&browser, Locator::Id("signin-booking@contoso.example")).await;
    let heading = browser
        .wait()
        .for_element(Locator::XPath(
            "//h1[text()='Connected' or contains(text(), 'not')]",
        ))
        .await
        .expect("the callback page");
    let title = heading.text().await.expect("heading text");
    let page = browser.source().await.expect("page source");
    snap(&browser, "02-operator-connected").await;
    assert_eq!(title, "Connected", "{page}");
    assert!(page.contains("booking@contoso.example"), "{page}");
    assert!(page.contains("valid until"), "{page}");

    // Vendor-app mode, in French: the page, a sign-in before the grant,
    // the admin's grant, then the booking account.
    browser
        .goto(&format!("{}&lang=fr", demo_output.vendor_link))
        .await
        .expect("open the vendor link");
    expect_heading(&browser, "Connecter vos écrans de salles de réunion").await;
    snap(&browser, "03-vendor-intro-fr").await;
    click(
        &browser,
        Locator::LinkText("Se connecter avec le compte de réservation"),
    )
    .await;
    click(&browser, Locator::Id("signin-booking@contoso.example")).await;
    expect_heading(
        &browser,
        "Un administrateur doit d’abord autoriser l’application",
    )
    .await;
    snap(&browser, "04-vendor-consent-required-fr").await;
    click(
        &browser,
        Locator::LinkText("Autoriser pour mon organisation"),
    )
    .await;
    browser
        .wait()
        .for_element(Locator::Id("accept-admin@contoso.example"))
        .await
        .expect("the simulated admin-consent page");
    snap(&browser, "05-vendor-admin-consent").await;
    click(&browser, Locator::Id("accept-admin@contoso.example")).await;
    expect_heading(&browser, "Autorisée pour votre organisation").await;
    snap(&browser, "06-vendor-granted-fr").await;
    click(
        &browser,
        Locator::LinkText("Se connecter avec le compte de réservation"),
    )
    .await;
    click(&browser, Locator::Id("signin-booking@contoso.example")).await;
    expect_heading(&browser, "Connecté").await;
    let page = browser.source().await.expect("page source");
    assert!(page.contains("Connecté en tant que"), "{page}");
    snap(&browser, "07-vendor-connected-fr").await;
    let _ = browser.close().await;
    let _ = std::fs::remove_dir_all(&profile);

    let vendor = reqwest::Client::new()
        .get(format!(
            "{}v1/connections/demo-vendor/token",
            demo_output.base
        ))
        .bearer_auth(&demo_output.vendor_key)
        .send()
        .await
        .expect("GET vendor token");
    assert_eq!(vendor.status(), 200);

    let response = reqwest::Client::new()
        .get(format!(
            "{}v1/connections/demo/token?resource=graph",
            demo_output.base
        ))
        .bearer_auth(&demo_output.key)
        .send()
        .await
        .expect("GET token");
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.expect("json");
    let token = body["access_token"]
        .as_str()
        .expect("an access token")
        .to_owned();
    assert_eq!(body["account"], "booking@contoso.example");

    demo.kill().await.expect("stop the demo");
    let logs = logs.await.expect("stderr reader");
    assert!(
        logs.contains("connected"),
        "the demo logs to stderr: {logs}"
    );
    assert!(
        !logs.contains(&token),
        "the access token reached a log line"
    );
    assert!(
        !logs.contains(&demo_output.key),
        "the device key reached a log line"
    );
}

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
}

/// Reads the demo's instructions until the first `curl` line, then keeps
/// draining stdout so that the demo never writes into a closed pipe.
async fn read_instructions(stdout: tokio::process::ChildStdout) -> DemoOutput {
    let mut lines = BufReader::new(stdout).lines();
    let (mut link, mut key, mut base) = (None, None, None);
    while let Some(line) = lines.next_line().await.expect("demo stdout") {
        let line = line.trim();
        if line.starts_with("http") && line.contains("/connect/demo?invite=") {
            link = Some(line.to_owned());
        }
        if let Some(rest) = line.strip_prefix("curl -s -H 'Authorization: Bearer ") {
            let (k, url) = rest.split_once("' ").expect("curl line shape");
            key = Some(k.to_owned());
            base = Some(url.split("v1/").next().expect("url").to_owned());
            break;
        }
    }
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    DemoOutput {
        base: base.expect("the demo printed a token URL"),
        link: link.expect("the demo printed a consent link"),
        key: key.expect("the demo printed a device key"),
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
        .expect("the simulated sign-in page")
        .click()
        .await
        .expect("click Sign in");
    let heading = browser
        .wait()
        .for_element(Locator::XPath(
            "//h1[text()='Connected' or contains(text(), 'not')]",
        ))
        .await
        .expect("the callback page");
    let title = heading.text().await.expect("heading text");
    let page = browser.source().await.expect("page source");
    let _ = browser.close().await;
    let _ = std::fs::remove_dir_all(&profile);
    assert_eq!(title, "Connected", "{page}");
    assert!(page.contains("booking@contoso.example"), "{page}");
    assert!(page.contains("valid until"), "{page}");

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

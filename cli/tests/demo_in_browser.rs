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
    self_link: String,
    self_key: String,
    /// What the demo tells the admin to type into the self-service form.
    self_client_id: String,
    self_secret: String,
    self_expires: String,
}

/// Reads the demo's instructions up to their last line, then keeps
/// draining stdout so that the demo never writes into a closed pipe.
async fn read_instructions(stdout: tokio::process::ChildStdout) -> DemoOutput {
    let mut lines = BufReader::new(stdout).lines();
    let (mut link, mut key, mut base) = (None, None, None);
    let mut self_client_id = None;
    let (mut vendor_link, mut vendor_key) = (None, None);
    let (mut self_link, mut self_key, mut self_form) = (None, None, None);
    while let Some(line) = lines.next_line().await.expect("demo stdout") {
        let line = line.trim();
        if line.starts_with("http") && line.contains("/connect/demo-self?invite=") {
            self_link = Some(line.to_owned());
        }
        // `client secret S (simulated), expiry D,` after `client id C,`
        if let Some(rest) = line.strip_prefix("client secret ") {
            let (secret, rest) = rest.split_once(' ').expect("secret line shape");
            let expires = rest
                .split("expiry ")
                .nth(1)
                .expect("an expiry")
                .trim_end_matches(',');
            self_form = Some((secret.to_owned(), expires.to_owned()));
        }
        if let Some(rest) = line.split("client id ").nth(1) {
            self_client_id = Some(rest.trim_end_matches(',').to_owned());
        }
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
            } else if url.contains("demo-self") {
                self_key = Some(k.to_owned());
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
        self_link: self_link.expect("the demo printed a self-service link"),
        self_key: self_key.expect("the demo printed a self-service device key"),
        self_client_id: self_client_id.expect("the demo printed the app's client id"),
        self_secret: self_form
            .clone()
            .expect("the demo printed the app's secret")
            .0,
        self_expires: self_form.expect("the demo printed an expiry").1,
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

/// Types `text` into the field `id`, emptied first.
async fn fill(browser: &fantoccini::Client, id: &str, text: &str) {
    let field = browser
        .wait()
        .for_element(Locator::Id(id))
        .await
        .unwrap_or_else(|e| panic!("field {id}: {e}"));
    field.clear().await.expect("clear");
    field.send_keys(text).await.expect("type");
}

/// Sets a date field: typing into one depends on the browser's locale.
async fn set_date(browser: &fantoccini::Client, id: &str, date: &str) {
    browser
        .execute(
            "document.getElementById(arguments[0]).value = arguments[1];",
            vec![json!(id), json!(date)],
        )
        .await
        .expect("set the date");
}

/// The self-service form, filled in: `client_id` and `expires` may be wrong.
async fn fill_setup_form(
    browser: &fantoccini::Client,
    demo: &DemoOutput,
    client_id: &str,
    expires: &str,
) {
    fill(browser, "tenant", "contoso.example").await;
    fill(browser, "client_id", client_id).await;
    fill(browser, "client_secret", &demo.self_secret).await;
    set_date(browser, "client_secret_expires", expires).await;
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

    // Self-service mode, in English: one wrong field first, then right.
    // (A taller window: the form's screenshots show all of it.)
    browser
        .set_window_size(900, 1800)
        .await
        .expect("window size");
    browser
        .goto(&demo_output.self_link)
        .await
        .expect("open the self-service link");
    expect_heading(&browser, "Set up your meeting-room displays").await;
    snap(&browser, "08-self-service-form").await;
    fill_setup_form(
        &browser,
        &demo_output,
        "my-room-app",
        &demo_output.self_expires,
    )
    .await;
    click(&browser, Locator::Id("continue")).await;
    browser
        .wait()
        .for_element(Locator::Id("problems"))
        .await
        .expect("the form again, with its problem");
    let page = browser.source().await.expect("page source");
    assert!(page.contains("an application ID is a GUID"), "{page}");
    assert!(
        !page.contains(&demo_output.self_secret),
        "the secret is never shown back"
    );
    snap(&browser, "09-self-service-wrong-field").await;
    fill_setup_form(
        &browser,
        &demo_output,
        &demo_output.self_client_id,
        &demo_output.self_expires,
    )
    .await;
    click(&browser, Locator::Id("continue")).await;
    click(&browser, Locator::Id("signin-booking@contoso.example")).await;
    expect_heading(&browser, "Connected").await;
    snap(&browser, "10-self-service-connected").await;

    // In French: the link again shows the status; the app registration is
    // replaced through the form (a past expiry first).
    browser
        .goto(&format!("{}&lang=fr", demo_output.self_link))
        .await
        .expect("open the self-service link again");
    expect_heading(&browser, "Vos écrans sont configurés").await;
    snap(&browser, "11-self-service-status-fr").await;
    click(
        &browser,
        Locator::LinkText("Remplacer l’inscription d’application"),
    )
    .await;
    expect_heading(&browser, "Configurer vos écrans de salles de réunion").await;
    fill_setup_form(
        &browser,
        &demo_output,
        &demo_output.self_client_id,
        "2020-01-31",
    )
    .await;
    click(&browser, Locator::Id("continue")).await;
    browser
        .wait()
        .for_element(Locator::Id("problems"))
        .await
        .expect("the form again, in French");
    let page = browser.source().await.expect("page source");
    assert!(page.contains("pas dans le futur"), "{page}");
    snap(&browser, "12-self-service-wrong-date-fr").await;
    fill_setup_form(
        &browser,
        &demo_output,
        &demo_output.self_client_id,
        &demo_output.self_expires,
    )
    .await;
    click(&browser, Locator::Id("continue")).await;
    click(&browser, Locator::Id("signin-booking@contoso.example")).await;
    expect_heading(&browser, "Connecté").await;
    snap(&browser, "13-self-service-connected-fr").await;
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
    let self_service = reqwest::Client::new()
        .get(format!(
            "{}v1/connections/demo-self/token",
            demo_output.base
        ))
        .bearer_auth(&demo_output.self_key)
        .send()
        .await
        .expect("GET self-service token");
    assert_eq!(self_service.status(), 200);

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
    assert!(
        !logs.contains(&demo_output.self_secret),
        "the typed client secret reached a log line"
    );
}

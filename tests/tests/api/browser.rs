//! Headless Chromium through every onboarding mode, as a customer admin
//! clicks it: on `roomtoken serve` (in process, on both stores) and on the
//! README's run command, `roomtoken demo`. Each walk keeps a screenshot of
//! every page under `target/screenshots/`; a display then reads a token.

use fantoccini::Locator;
use roomtoken_tests::browser::Browser;
use roomtoken_tests::lambda_runtime_api::function_binary;
use roomtoken_tests::vendor::*;
use roomtoken_tests::{
    ACCOUNT, CLIENT_ID, SELF_SERVICE_DOMAIN, Setup, StoreKind, TestApp, assert_no_secret_in,
    assert_no_secret_logged, on_both_stores, unique_id,
};
use serde_json::Value;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::Command;

fn sign_in_as(account: &str) -> String {
    format!("signin-{account}")
}

/// The access token of a display's answer.
async fn access_token(answer: reqwest::Response) -> String {
    let body: Value = answer.json().await.expect("json");
    body["access_token"]
        .as_str()
        .expect("an access token")
        .to_owned()
}

/// The demo's self-service form, as its instructions say, with `client_id`.
async fn fill_demo_form(browser: &Browser, demo: &DemoOutput, client_id: &str) {
    browser.fill("tenant", "contoso.example").await;
    browser.fill("client_id", client_id).await;
    browser.fill("client_secret", &demo.self_secret).await;
    browser
        .set_value("client_secret_expires", &demo.self_expires)
        .await;
}

/// The self-service form, filled in with `tenant` and the right rest.
async fn fill_setup_form(browser: &Browser, app: &TestApp, tenant: &str) {
    let expires = (time::OffsetDateTime::now_utc() + time::Duration::days(300)).date();
    browser.fill("tenant", tenant).await;
    browser.fill("client_id", CLIENT_ID).await;
    browser.fill("client_secret", &app.client_secret).await;
    browser
        .set_value("client_secret_expires", &expires.to_string())
        .await;
}

async fn every_mode_in_a_browser(kind: StoreKind) {
    // Its own prefix: the vendor app (a system secret) is this test's.
    let app = Setup::new(kind).isolated_prefix().spawn().await;
    // The sign-in page, as a person sees it (not the tests' auto-consent).
    app.identity.set_auto_consent(None);
    let browser = Browser::start(match kind {
        StoreKind::File => "serve-file",
        StoreKind::SecretsManager => "serve-aws",
    })
    .await;

    // Operator-registered: an expired link; in French, a cancelled
    // sign-in, then the booking account.
    let operator = unique_id("browser-operator");
    app.add_connection(&operator).await;
    let short = app
        .cli(&["link", &operator, "--ttl", "1m"], "")
        .await
        .expect("link");
    app.clock.advance(Duration::from_secs(120));
    browser.goto(short.trim()).await;
    browser
        .expect_heading("This consent link has expired")
        .await;
    browser.snap("01-expired-link").await;
    browser
        .goto(&format!("{}&lang=fr", app.link(&operator).await))
        .await;
    browser.click(Locator::Id("cancel")).await;
    browser.expect_heading("La connexion n’a pas abouti").await;
    browser.snap("02-operator-cancelled-fr").await;
    browser.click_text("Recommencer").await;
    browser.click(Locator::Id(&sign_in_as(ACCOUNT))).await;
    let page = browser.expect_heading("Connecté").await;
    assert!(page.contains(ACCOUNT), "{page}");
    browser.snap("03-operator-connected-fr").await;

    // Vendor app, in English: the page, an administrator who declines and
    // then grants, the booking account.
    let (vendor, vendor_secret) = vendor_connection(&app).await;
    browser.goto(&app.link(&vendor).await).await;
    browser
        .expect_heading("Connect your meeting-room displays")
        .await;
    browser.snap("04-vendor-intro").await;
    browser.click_text("Grant for my organization").await;
    browser.click(Locator::Id("cancel")).await;
    browser.expect_heading("The app was not granted").await;
    browser.snap("05-vendor-not-granted").await;
    browser.click_text("Grant for my organization").await;
    browser.click(Locator::Id(&format!("accept-{ADMIN}"))).await;
    browser
        .expect_heading("Granted for your organization")
        .await;
    browser.snap("06-vendor-granted").await;
    browser.click_text("Sign in as the booking account").await;
    browser.click(Locator::Id(&sign_in_as(ACCOUNT))).await;
    browser.expect_heading("Connected").await;
    browser.snap("07-vendor-connected").await;

    // Self-service, in French: a tenant Microsoft does not know, then the
    // right one; then a changed form, a replayed one, an oversized one.
    let self_service = app.add_self_service_connection().await;
    let link = format!("{}&lang=fr", app.link(&self_service).await);
    browser.goto(&link).await;
    browser
        .expect_heading("Configurer vos écrans de salles de réunion")
        .await;
    fill_setup_form(&browser, &app, "fabrikam.example").await;
    browser.click(Locator::Id("continue")).await;
    let page = browser
        .expect_heading_and_text("Configurer vos écrans de salles de réunion", "AADSTS90002")
        .await;
    assert!(
        !page.contains(&app.client_secret),
        "the secret is never shown back"
    );
    browser.snap("08-self-service-unknown-tenant-fr").await;
    fill_setup_form(&browser, &app, SELF_SERVICE_DOMAIN).await;
    let used_token = browser.value("form_token").await;
    browser.click(Locator::Id("continue")).await;
    browser.click(Locator::Id(&sign_in_as(ACCOUNT))).await;
    let page = browser.expect_heading("Connecté").await;
    assert!(page.contains(ACCOUNT), "{page}");
    browser.snap("09-self-service-connected-fr").await;

    browser.goto(&link).await;
    browser.expect_heading("Vos écrans sont configurés").await;
    browser.snap("10-self-service-status-fr").await;
    browser
        .click_text("Remplacer l’inscription d’application")
        .await;
    fill_setup_form(&browser, &app, SELF_SERVICE_DOMAIN).await;
    let fresh_token = browser.value("form_token").await;
    browser
        .set_value("form_token", &format!("{fresh_token}x"))
        .await;
    browser.click(Locator::Id("continue")).await;
    browser.expect_heading("Ce formulaire a été refusé").await;
    browser.snap("11-self-service-tampered-fr").await;

    browser
        .goto(&link.replace("lang=fr", "step=setup&lang=fr"))
        .await;
    fill_setup_form(&browser, &app, SELF_SERVICE_DOMAIN).await;
    browser.set_value("form_token", &used_token).await;
    browser.click(Locator::Id("continue")).await;
    browser.expect_heading("Ce formulaire a déjà servi").await;
    browser.snap("12-self-service-replayed-fr").await;

    browser
        .goto(&link.replace("lang=fr", "step=setup&lang=fr"))
        .await;
    fill_setup_form(&browser, &app, SELF_SERVICE_DOMAIN).await;
    browser.set_value("tenant", &"x".repeat(20_000)).await;
    browser.click(Locator::Id("continue")).await;
    browser
        .expect_heading("Ce formulaire n’a pas pu être lu")
        .await;
    browser.snap("13-self-service-oversized-fr").await;
    browser.close().await;

    // A display of each reads a token.
    for id in [&operator, &vendor, &self_service] {
        let key = app.create_key(id).await;
        let read = app.get_token(id, Some(&key), Some("graph")).await;
        assert_eq!(read.status(), 200, "{id}");
    }
    let mut secrets = app.secrets(&[]);
    secrets.push(vendor_secret);
    assert_no_secret_logged(&secrets);
}

on_both_stores!(services: every_mode_in_a_browser => every_mode_in_a_browser_on_the_file_store, every_mode_in_a_browser_on_secrets_manager);

struct DemoOutput {
    base: String,
    link: String,
    key: String,
    vendor_link: String,
    vendor_key: String,
    self_link: String,
    self_key: String,
    rooms_link: String,
    rooms_key: String,
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
    let (mut rooms_link, mut rooms_key) = (None, None);
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
        if line.starts_with("http") && line.contains("/connect/demo-rooms?invite=") {
            rooms_link = Some(line.to_owned());
        }
        if let Some(rest) = line.strip_prefix("curl -s -H 'Authorization: Bearer ") {
            let (k, url) = rest.split_once("' ").expect("curl line shape");
            if url.contains("demo-vendor") {
                vendor_key = Some(k.to_owned());
            } else if url.contains("demo-self") {
                self_key = Some(k.to_owned());
            } else if url.contains("demo-rooms") {
                rooms_key = Some(k.to_owned());
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
        rooms_link: rooms_link.expect("the demo printed an app-only link"),
        rooms_key: rooms_key.expect("the demo printed an app-only device key"),
        self_client_id: self_client_id.expect("the demo printed the app's client id"),
        self_secret: self_form
            .clone()
            .expect("the demo printed the app's secret")
            .0,
        self_expires: self_form.expect("the demo printed an expiry").1,
    }
}

#[tokio::test]
#[cfg_attr(not(feature = "services"), ignore = "needs Chromium: scripts/test.sh")]
async fn a_browser_connects_the_demo_and_a_display_reads_a_token() {
    let mut demo = Command::new(function_binary("roomtoken"))
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

    let browser = Browser::start("demo").await;
    browser.goto(&demo_output.link).await;
    browser.snap("01-operator-sign-in").await;
    browser
        .click(Locator::Id("signin-booking@contoso.example"))
        .await;
    let page = browser.expect_heading("Connected").await;
    browser.snap("02-operator-connected").await;
    assert!(page.contains("booking@contoso.example"), "{page}");
    assert!(page.contains("valid until"), "{page}");

    // Vendor-app mode, in French: the page, a sign-in before the grant,
    // the admin's grant, then the booking account.
    browser
        .goto(&format!("{}&lang=fr", demo_output.vendor_link))
        .await;
    browser
        .expect_heading("Connecter vos écrans de salles de réunion")
        .await;
    browser.snap("03-vendor-intro-fr").await;
    browser
        .click_text("Se connecter avec le compte de réservation")
        .await;
    browser
        .click(Locator::Id("signin-booking@contoso.example"))
        .await;
    browser
        .expect_heading("Un administrateur doit d’abord autoriser l’application")
        .await;
    browser.snap("04-vendor-consent-required-fr").await;
    browser.click_text("Autoriser pour mon organisation").await;
    browser.snap("05-vendor-admin-consent").await;
    browser
        .click(Locator::Id("accept-admin@contoso.example"))
        .await;
    browser
        .expect_heading("Autorisée pour votre organisation")
        .await;
    browser.snap("06-vendor-granted-fr").await;
    browser
        .click_text("Se connecter avec le compte de réservation")
        .await;
    browser
        .click(Locator::Id("signin-booking@contoso.example"))
        .await;
    let page = browser.expect_heading("Connecté").await;
    assert!(page.contains("Connecté en tant que"), "{page}");
    browser.snap("07-vendor-connected-fr").await;

    // Self-service mode, in English: one wrong field first, then right.
    browser.goto(&demo_output.self_link).await;
    browser
        .expect_heading("Set up your meeting-room displays")
        .await;
    browser.snap("08-self-service-form").await;
    fill_demo_form(&browser, &demo_output, "my-room-app").await;
    browser.click(Locator::Id("continue")).await;
    browser.click(Locator::Id("problems")).await;
    let page = browser.source().await;
    assert!(page.contains("an application ID is a GUID"), "{page}");
    assert!(
        !page.contains(&demo_output.self_secret),
        "the secret is never shown back"
    );
    browser.snap("09-self-service-wrong-field").await;
    fill_demo_form(&browser, &demo_output, &demo_output.self_client_id).await;
    browser.click(Locator::Id("continue")).await;
    browser
        .click(Locator::Id("signin-booking@contoso.example"))
        .await;
    browser.expect_heading("Connected").await;
    browser.snap("10-self-service-connected").await;

    // In French, the link again shows the connection's status.
    browser
        .goto(&format!("{}&lang=fr", demo_output.self_link))
        .await;
    browser.expect_heading("Vos écrans sont configurés").await;
    browser.snap("11-self-service-status-fr").await;

    // App-only: straight to the admin's grant; nobody signs in.
    browser.goto(&demo_output.rooms_link).await;
    browser.snap("12-app-only-admin-consent").await;
    browser
        .click(Locator::Id("accept-admin@contoso.example"))
        .await;
    let page = browser.expect_heading("Connected").await;
    assert!(page.contains("app-only"), "{page}");
    browser.snap("13-app-only-connected").await;
    browser.close().await;

    let read = |path: &str, key: &str| {
        let request = reqwest::Client::new()
            .get(format!("{}v1/connections/{path}", demo_output.base))
            .bearer_auth(key);
        async move { request.send().await.expect("GET token") }
    };
    let vendor = read("demo-vendor/token", &demo_output.vendor_key).await;
    assert_eq!(vendor.status(), 200);
    let vendor_token = access_token(vendor).await;
    let self_service = read("demo-self/token", &demo_output.self_key).await;
    assert_eq!(self_service.status(), 200);
    let self_token = access_token(self_service).await;
    let rooms = read("demo-rooms/token", &demo_output.rooms_key).await;
    assert_eq!(rooms.status(), 200);
    let rooms_body: Value = rooms.json().await.expect("json");
    assert_eq!(rooms_body["account"], "app-only", "{rooms_body}");
    let rooms_token = rooms_body["access_token"]
        .as_str()
        .expect("an access token")
        .to_owned();
    let response = read("demo/token?resource=graph", &demo_output.key).await;
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
    // Everything secret the demo handed out or was given: its device keys,
    // the simulated app's secret typed into the form, the invites of its
    // links and the tokens the displays read. None is in its log.
    let mut secrets = vec![
        token,
        vendor_token,
        self_token,
        rooms_token,
        demo_output.key.clone(),
        demo_output.vendor_key.clone(),
        demo_output.self_key.clone(),
        demo_output.rooms_key.clone(),
        demo_output.self_secret.clone(),
    ];
    for link in [
        &demo_output.link,
        &demo_output.vendor_link,
        &demo_output.self_link,
        &demo_output.rooms_link,
    ] {
        let link: url::Url = link.parse().expect("a link");
        secrets.extend(
            link.query_pairs()
                .filter(|(name, _)| name == "invite")
                .map(|(_, invite)| invite.into_owned()),
        );
    }
    assert_eq!(secrets.len(), 13, "four invites");
    assert_no_secret_in(&logs, "the demo's log", &secrets);
}

//! `roomtoken status` for a fleet (issue 13, item 1), run as the operator
//! runs it (the built binary): one row per connection, those that need a
//! human first, the worst state first; `--json` and `--state`; exit code 2
//! while any shown connection needs a human. A client secret that expires
//! within 30 days needs one too (item 3), and the status route says the
//! same.

use roomtoken::domain::{ConnectionState, FailureClass, LastError};
use roomtoken_tests::{StoreKind, TestApp, assert_no_secret_in, date_in, spawn_app, unique_id};
use serde_json::Value;
use time::OffsetDateTime;

/// `roomtoken status ARGS` against the app's store: exit code and stdout.
async fn status(app: &TestApp, args: &[&str]) -> (i32, String) {
    let binary = roomtoken_tests::lambda_runtime_api::function_binary("roomtoken");
    let output = tokio::process::Command::new(&binary)
        .args([
            "--store",
            &app.store_arg,
            "--secret-prefix",
            app.secret_prefix(),
            "status",
        ])
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .await
        .expect("run roomtoken status");
    let stdout = String::from_utf8(output.stdout).expect("utf-8");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_no_secret_in(&stdout, "status output", &app.secrets(&[]));
    (
        output.status.code().expect("an exit code"),
        format!("{stdout}{stderr}"),
    )
}

/// A connection put in `state` with the error that led there.
async fn in_state(
    app: &TestApp,
    id: &str,
    state: ConnectionState,
    class: FailureClass,
    code: &str,
) {
    app.change_serve(id, |serve| {
        serve.status.state = state;
        serve.status.last_error = Some(LastError {
            class,
            code: code.into(),
            message: "as Entra ID said".into(),
            trace_id: None,
            correlation_id: None,
            at: OffsetDateTime::now_utc(),
        });
        serve.status.consecutive_failures = 1;
    })
    .await;
}

#[tokio::test]
async fn the_fleet_status_puts_what_needs_a_human_first() {
    let app = spawn_app(StoreKind::File).await;
    let fine = app.consented("fine").await;
    let expiring = app.consented("expiring").await;
    let degraded = app.consented("degraded").await;
    let reconnect = app.consented("reconnect").await;
    let misconfigured = app.consented("misconfigured").await;
    let blocked = app.consented("blocked").await;
    let pending = unique_id("pending");
    app.add_connection(&pending).await;
    for (id, days) in [(&fine, 400), (&expiring, 12)] {
        app.set_secret_expiry(id, days)
            .await
            .expect("update the secret's expiry");
    }
    in_state(
        &app,
        &degraded,
        ConnectionState::Degraded,
        FailureClass::Transient,
        "HTTP 503",
    )
    .await;
    in_state(
        &app,
        &reconnect,
        ConnectionState::ReconnectRequired,
        FailureClass::ReconnectNeeded,
        "AADSTS50173",
    )
    .await;
    in_state(
        &app,
        &misconfigured,
        ConnectionState::AppMisconfigured,
        FailureClass::AppMisconfigured,
        "AADSTS7000215",
    )
    .await;
    in_state(
        &app,
        &blocked,
        ConnectionState::Blocked,
        FailureClass::Blocked,
        "AADSTS53003",
    )
    .await;

    // The table: the worst first, then what else needs a human, then the rest.
    let (code, text) = status(&app, &[]).await;
    assert_eq!(code, 2, "five need a human:\n{text}");
    let lines: Vec<&str> = text.lines().collect();
    let header = lines[0];
    for column in [
        "CONNECTION",
        "MODE",
        "STATE",
        "ACCOUNT",
        "TOKEN EXPIRES",
        "LAST REFRESH",
        "LAST ERROR",
        "CREDENTIAL",
        "APP PERMISSIONS",
        "ADVICE",
    ] {
        assert!(header.contains(column), "{header}");
    }
    let order: Vec<&str> = lines[1..8]
        .iter()
        .map(|line| line.split_whitespace().next().expect("an id"))
        .collect();
    assert_eq!(
        order,
        [
            &blocked,
            &misconfigured,
            &reconnect,
            &pending,
            &expiring,
            &degraded,
            &fine
        ]
        .map(String::as_str),
        "{text}"
    );
    // Aligned: every row's STATE starts where the header's does.
    let state_at = header.find("STATE").expect("STATE");
    for line in &lines[1..8] {
        let state = &line[state_at..];
        assert!(
            [
                "blocked",
                "app_misconfigured",
                "reconnect_required",
                "pending_consent",
                "connected",
                "degraded"
            ]
            .iter()
            .any(|s| state.starts_with(s)),
            "{line}"
        );
    }
    let row = |id: &str| *lines.iter().find(|l| l.starts_with(id)).expect("a row");
    assert!(
        row(&blocked).contains("blocked AADSTS53003"),
        "{}",
        row(&blocked)
    );
    assert!(
        row(&expiring).contains(&format!("{} (12d)", date_in(12))),
        "{}",
        row(&expiring)
    );
    assert!(
        row(&expiring).contains("credential_expiring"),
        "{}",
        row(&expiring)
    );
    assert!(
        row(&fine).contains("(400d)") && row(&fine).contains("Tokens are refreshed automatically.")
    );
    assert!(text.contains("5 connection(s) need a human"), "{text}");

    // JSON for scripts: the same facts, the same order.
    let (code, json) = status(&app, &["--json"]).await;
    assert_eq!(code, 2);
    let json_end = json.rfind(']').expect("a JSON array") + 1;
    let views: Vec<Value> = serde_json::from_str(&json[..json_end]).expect("JSON");
    assert_eq!(views.len(), 7);
    assert_eq!(views[0]["connection"], blocked.as_str());
    assert_eq!(views[0]["needs_human"], true);
    assert_eq!(views[0]["last_error"]["code"], "AADSTS53003");
    let expiring_view = &views[4];
    assert_eq!(expiring_view["connection"], expiring.as_str());
    assert_eq!(expiring_view["credential_days_left"], 12);
    assert_eq!(expiring_view["mode"], "operator");
    assert_eq!(views[6]["needs_human"], false);

    // Filters: the degraded one alone needs nobody; the connected ones
    // include the expiring secret.
    let (code, text) = status(&app, &["--state", "degraded"]).await;
    assert_eq!(code, 0, "{text}");
    assert_eq!(text.lines().count(), 2, "{text}");
    let (code, text) = status(&app, &["--state", "connected"]).await;
    assert_eq!(code, 2, "{text}");
    assert_eq!(
        text.lines().filter(|l| l.contains(" connected ")).count(),
        2,
        "{text}"
    );
    let (code, text) = status(&app, &["--state", "asleep"]).await;
    assert_ne!(code, 0);
    assert!(
        text.contains("not a state: pending_consent, connected"),
        "{text}"
    );

    // The status route gives a display's key the same facts.
    let key = app.create_key(&expiring).await;
    let route: Value = app
        .get_status(&expiring, Some(&key))
        .await
        .json()
        .await
        .expect("JSON");
    assert_eq!(route["needs_human"], true);
    assert_eq!(route["credential_expires"], date_in(12));
    assert!(
        route["advice"]
            .as_str()
            .expect("advice")
            .starts_with("credential_expiring")
    );
}

/// A secret's expiry is a date ahead; a new secret without one forgets the
/// old secret's.
#[tokio::test]
async fn a_secret_expiry_is_checked_and_forgotten_with_its_secret() {
    let app = spawn_app(StoreKind::File).await;
    let id = app.consented("expiry").await;
    let past = app
        .cli(
            &[
                "connection",
                "update",
                &id,
                "--client-secret-expires",
                &date_in(-1),
            ],
            "",
        )
        .await
        .expect_err("a date in the past");
    assert!(past.contains("not in the future"), "{past}");
    let malformed = app
        .cli(
            &[
                "connection",
                "update",
                &id,
                "--client-secret-expires",
                "30/06/2027",
            ],
            "",
        )
        .await
        .expect_err("not a date");
    assert!(malformed.contains("YYYY-MM-DD"), "{malformed}");
    app.set_secret_expiry(&id, 20).await.expect("a date ahead");
    assert_eq!(
        app.serve(&id)
            .await
            .app
            .client_secret_expires
            .map(|d| d.to_string()),
        Some(date_in(20))
    );
    app.cli(
        &["connection", "update", &id, "--client-secret-stdin"],
        &app.client_secret,
    )
    .await
    .expect("a new secret");
    assert_eq!(
        app.serve(&id).await.app.client_secret_expires,
        None,
        "the new secret's expiry is unknown"
    );
}

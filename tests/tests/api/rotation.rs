//! Rotating a client secret without a gap (issue 13, item 4): a connection
//! holds a second secret; token requests use the newest and, when Entra ID
//! refuses it as invalid (AADSTS7000215) or expired (AADSTS7000222), the
//! previous one before anything is classified; the status names the one in
//! use; `--remove-client-secret` retires the previous one. No display read
//! fails on the way.

use roomtoken::domain::ConnectionState;
use roomtoken::flows::refresh::Outcome;
use roomtoken_tests::{
    CLIENT_ID, StoreKind, TestApp, assert_no_secret_logged, date_in, on_both_stores, spawn_app,
};
use serde_json::Value;

/// A forced refresh, then a display's read (past the read cache): the
/// outcome, and the status route's view.
async fn refresh_and_read(app: &TestApp, id: &str, key: &str) -> (Outcome, Value) {
    let outcome = app.refresh_one(id, true, app.broker.now()).await;
    app.expire_read_cache();
    app.assert_serves_valid_token(id, key, None).await;
    let status = app
        .get_status(id, Some(key))
        .await
        .json()
        .await
        .expect("JSON");
    (outcome, status)
}

async fn rotation(kind: StoreKind) {
    let app = spawn_app(kind).await;
    let (id, key) = app.connected("rotate").await;
    let old = app.client_secret.clone();
    let new = format!("new-secret-{}", uuid::Uuid::new_v4());
    app.set_secret_expiry(&id, 20)
        .await
        .expect("the current secret's expiry");

    // The operator adds the new secret before Entra ID has it (typed from
    // the wrong line, or not yet saved): AADSTS7000215, so the previous
    // secret serves, and the status says so.
    app.cli(
        &[
            "connection",
            "update",
            &id,
            "--add-client-secret-stdin",
            "--client-secret-expires",
            &date_in(700),
        ],
        &new,
    )
    .await
    .expect("add a second secret");
    let (outcome, status) = refresh_and_read(&app, &id, &key).await;
    assert!(matches!(outcome, Outcome::Refreshed { .. }), "{outcome:?}");
    assert_eq!(status["state"], "connected");
    assert_eq!(status["credential_in_use"], "previous", "{status:#}");
    assert_eq!(
        status["credential_expires"],
        date_in(20),
        "the previous one's"
    );
    assert_eq!(status["needs_human"], true, "it expires in 20 days");
    // A new consent redeems its code with the previous secret too.
    let consent = app.consent(&id).await;
    assert_eq!(consent.status, 200, "{}", consent.body);
    // Retiring the only secret that works is refused.
    let refused = app
        .cli(&["connection", "update", &id, "--remove-client-secret"], "")
        .await
        .expect_err("the previous secret is in use");
    assert!(
        refused.contains("still uses its previous client secret"),
        "{refused}"
    );

    // Entra ID has it now: the newest serves.
    app.identity.add_client_secret(CLIENT_ID, &new);
    let (outcome, status) = refresh_and_read(&app, &id, &key).await;
    assert!(matches!(outcome, Outcome::Refreshed { .. }), "{outcome:?}");
    assert_eq!(status["credential_in_use"], "newest", "{status:#}");
    assert_eq!(status["credential_expires"], date_in(700));
    assert_eq!(status["needs_human"], false);

    // The old secret expires in Entra ID: nothing changes for the newest.
    app.identity.expire_client_secret(&old);
    let (outcome, _) = refresh_and_read(&app, &id, &key).await;
    assert!(matches!(outcome, Outcome::Refreshed { .. }), "{outcome:?}");

    // Retired: one secret again; the status no longer names one.
    app.cli(&["connection", "update", &id, "--remove-client-secret"], "")
        .await
        .expect("remove the previous secret");
    let grant = app
        .broker
        .repo
        .grant(&roomtoken::domain::ConnectionId::parse(&id).unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(grant.value.client_secret.expose(), new);
    assert!(grant.value.previous_client_secret.is_none());
    let (_, status) = refresh_and_read(&app, &id, &key).await;
    assert_eq!(status["credential_in_use"], Value::Null);
    let again = app
        .cli(&["connection", "update", &id, "--remove-client-secret"], "")
        .await
        .expect_err("nothing left to remove");
    assert!(again.contains("no previous one"), "{again}");

    // With one secret, a refused secret is classified at once.
    app.identity.remove_client_secret(&new);
    let outcome = app.refresh_one(&id, true, app.broker.now()).await;
    assert!(
        matches!(&outcome, Outcome::Failed(e) if e.code == "AADSTS7000215"),
        "{outcome:?}"
    );
    assert_eq!(
        app.status(&id).await.state,
        ConnectionState::AppMisconfigured
    );
    assert_no_secret_logged(&app.secrets(&[&key, &new]));
}

on_both_stores!(rotation => a_secret_is_rotated_without_a_gap_on_the_file_store, a_secret_is_rotated_without_a_gap_on_secrets_manager);

//! Signed notifications to the operator (issue 13, item 2): every change of
//! state is sent once, in the Standard Webhooks format, after the refreshes
//! of a pass; a receiver that fails gets the same notification again at a
//! later pass, one that hangs delays no refresh, and client secrets are
//! announced at 30, 7 and 1 days before they expire.
//!
//! The receiver (`tests/webhook_receiver.py`, started by the test script)
//! verifies every delivery with the published `standardwebhooks` package.

use roomtoken::domain::Writer;
use roomtoken::domain::notify::WebhookSecret;
use roomtoken::flows::refresh::{Outcome, PassOptions, PassReport, refresh_pass};
use roomtoken_fake_identity::Fault;
use roomtoken_tests::webhook::{Channel, Delivery, Mode, channel};
use roomtoken_tests::{
    ACCOUNT, RecordingSleeper, Setup, StoreKind, TestApp, assert_no_secret_in,
    assert_no_secret_logged, date_in, unique_id,
};
use std::sync::Arc;
use std::time::Duration;
use time::OffsetDateTime;

/// A broker that notifies `channel`: on the file store with the secret in
/// its configuration (ROOMTOKEN_WEBHOOK_SECRET), on Secrets Manager with
/// the system secret that `roomtoken webhook-secret set` stores.
async fn notifying(kind: StoreKind, channel: &Channel, timeout: Duration) -> TestApp {
    let url = channel.url();
    let secret = channel.secret.clone();
    let in_config = kind == StoreKind::File;
    let app = Setup::new(kind)
        .isolated_prefix()
        .sleeper(Arc::new(RecordingSleeper::default()))
        .with_config(move |config| {
            config.webhook_url = Some(url);
            config.webhook_timeout = timeout;
            if in_config {
                config.webhook_secret = Some(WebhookSecret::parse(&secret).expect("secret"));
            }
        })
        .spawn()
        .await;
    if !in_config {
        let stored = app
            .cli(&["webhook-secret", "set"], &format!("{}\n", channel.secret))
            .await
            .expect("webhook-secret set");
        assert!(stored.contains("stored"), "{stored}");
    }
    app
}

/// One pass over every connection of the app at `now`.
async fn pass(app: &TestApp, force: bool, now: OffsetDateTime) -> PassReport {
    let options = PassOptions { only: None, force };
    refresh_pass(&app.broker, &options, now)
        .await
        .expect("a refresh pass")
}

fn kinds(deliveries: &[Delivery]) -> Vec<&str> {
    deliveries.iter().map(Delivery::kind).collect()
}

/// Every delivery verified by the standard library, and none with a secret.
fn assert_verified_and_clean(app: &TestApp, deliveries: &[Delivery], keys: &[&str]) {
    for delivery in deliveries {
        assert!(
            delivery.verified,
            "the standard library refused a delivery: {:?}",
            delivery.error
        );
        assert_no_secret_in(&delivery.body, "a notification body", &app.secrets(keys));
    }
}

async fn every_change_is_sent_once(kind: StoreKind) {
    let hooks = channel("changes").await;
    let app = notifying(kind, &hooks, Duration::from_secs(5)).await;
    let (id, key) = app.connected("notified").await;
    assert!(
        hooks.deliveries().await.is_empty(),
        "the consent queues its notification; the next pass sends it"
    );
    let now = OffsetDateTime::now_utc();
    let report = pass(&app, false, now).await;
    assert_eq!(report.notifications.delivered, 1);
    assert_eq!(kinds(&hooks.deliveries().await), ["connection.connected"]);

    // A passing failure: degraded, once, however many passes it lasts.
    for _ in 0..20 {
        app.identity.inject(Fault::ServerError { status: 503 });
    }
    for _ in 0..2 {
        let failed = pass(&app, true, now).await;
        assert!(
            matches!(failed.results[0].outcome, Outcome::Failed(_)),
            "{:?}",
            failed.results[0].outcome
        );
    }
    app.identity.clear_faults();
    // Back: recovered.
    pass(&app, true, now).await;
    pass(&app, true, now).await;

    // A password reset: reconnect_required, then a new consent recovers.
    app.identity.revoke_account(ACCOUNT);
    pass(&app, true, now).await;
    pass(&app, false, now + Duration::from_secs(3600)).await;
    let consent = app.consent(&id).await;
    assert_eq!(consent.status, 200, "{}", consent.body);
    pass(&app, false, now).await;
    pass(&app, false, now).await;

    let deliveries = hooks.deliveries().await;
    assert_eq!(
        kinds(&deliveries),
        [
            "connection.connected",
            "connection.degraded",
            "connection.recovered",
            "connection.reconnect_required",
            "connection.recovered",
        ]
    );
    assert_verified_and_clean(&app, &deliveries, &[&key]);
    let ids: std::collections::BTreeSet<_> = deliveries.iter().map(|d| d.id.clone()).collect();
    assert_eq!(ids.len(), 5, "each change has its own webhook-id");
    let data = |n: usize| deliveries[n].payload.as_ref().expect("payload")["data"].clone();
    assert_eq!(data(0)["connection"], id.as_str());
    assert_eq!(data(0)["account"], ACCOUNT);
    assert_eq!(
        (data(1)["old_state"].as_str(), data(1)["new_state"].as_str()),
        (Some("connected"), Some("degraded"))
    );
    assert_eq!(data(1)["class"], "transient");
    assert_eq!(data(1)["code"], "AADSTS90033", "the 503's error code");
    assert_eq!(data(2)["old_state"], "degraded");
    assert!(data(2)["code"].is_null(), "a recovery carries no error");
    assert_eq!(data(3)["class"], "reconnect_needed");
    assert_eq!(data(3)["code"], "AADSTS50173");
    assert!(
        data(3)["advice"]
            .as_str()
            .is_some_and(|a| a.contains("consent link")),
        "{}",
        data(3)
    );
    assert_eq!(data(4)["old_state"], "reconnect_required");
    // So many changes within an hour used the serve secret's quota: the
    // outbox is written down once the hour leaves room, nothing sent twice.
    let later = pass(&app, false, now + Duration::from_secs(2 * 3600)).await;
    assert_eq!(later.notifications.delivered, 0);
    assert_eq!(hooks.deliveries().await.len(), 5);
    assert!(
        app.status(&id).await.outbox.is_empty(),
        "nothing left to send"
    );
    app.assert_serves_valid_token(&id, &key, None).await;
    assert_no_secret_logged(&app.secrets(&[&key]));
}

#[tokio::test]
#[cfg_attr(
    not(feature = "services"),
    ignore = "needs the webhook receiver: scripts/test.sh"
)]
async fn every_change_of_state_is_sent_once_on_the_file_store() {
    every_change_is_sent_once(StoreKind::File).await;
}

#[tokio::test]
#[cfg_attr(
    not(feature = "services"),
    ignore = "needs moto and the webhook receiver: scripts/test.sh"
)]
async fn every_change_of_state_is_sent_once_on_secrets_manager() {
    every_change_is_sent_once(StoreKind::SecretsManager).await;
}

#[tokio::test]
#[cfg_attr(
    not(feature = "services"),
    ignore = "needs the webhook receiver: scripts/test.sh"
)]
async fn a_failing_receiver_gets_the_same_notification_at_later_passes() {
    let hooks = channel("failing").await;
    hooks.set_mode(Mode::Fail).await;
    let app = notifying(StoreKind::File, &hooks, Duration::from_secs(5)).await;
    let first = app.consented("first").await;
    let second = app.consented("second").await;
    let now = OffsetDateTime::now_utc();

    let report = pass(&app, false, now).await;
    assert_eq!(
        (report.notifications.failed, report.notifications.waiting),
        (1, 2),
        "after one failure the other waits for the next pass"
    );
    assert_eq!(hooks.deliveries().await.len(), 1);
    let again = pass(&app, false, now + Duration::from_secs(60)).await;
    assert_eq!(
        again.notifications.failed, 1,
        "the other one's turn (the first backs off)"
    );
    pass(&app, false, now + Duration::from_secs(120)).await;
    assert_eq!(hooks.deliveries().await.len(), 2, "both back off now");

    hooks.set_mode(Mode::Accept).await;
    let later = pass(&app, false, now + Duration::from_secs(6 * 60)).await;
    assert_eq!(later.notifications.delivered, 2);
    assert_eq!(later.notifications.waiting, 0);
    pass(&app, false, now + Duration::from_secs(3600)).await;

    let deliveries = hooks.deliveries().await;
    assert_eq!(deliveries.len(), 4, "two failed, then each once more");
    assert_eq!(
        deliveries.iter().map(|d| d.status).collect::<Vec<_>>(),
        [500, 500, 204, 204]
    );
    let mut first_ids: Vec<_> = deliveries[..2].iter().map(|d| d.id.clone()).collect();
    let mut last_ids: Vec<_> = deliveries[2..].iter().map(|d| d.id.clone()).collect();
    first_ids.sort();
    last_ids.sort();
    assert_eq!(first_ids, last_ids, "a retry keeps its webhook-id");
    assert_verified_and_clean(&app, &deliveries, &[]);
    for id in [&first, &second] {
        assert!(app.status(id).await.outbox.is_empty(), "{id}");
    }
}

#[tokio::test]
#[cfg_attr(
    not(feature = "services"),
    ignore = "needs the webhook receiver: scripts/test.sh"
)]
async fn a_hanging_receiver_delays_no_refresh() {
    let hooks = channel("hanging").await;
    hooks.set_mode(Mode::Hang).await;
    let app = notifying(StoreKind::File, &hooks, Duration::from_secs(2)).await;
    let (id, key) = app.connected("hanging").await;
    let before = app.serve(&id).await.access.expect("tokens");
    let now = OffsetDateTime::now_utc() + Duration::from_secs(1);

    let broker = app.broker.clone();
    let running = tokio::spawn(async move {
        let options = PassOptions {
            only: None,
            force: true,
        };
        refresh_pass(&broker, &options, now).await
    });
    // The receiver holds the delivery; the refresh is stored already and
    // displays are served the new token.
    hooks.await_deliveries(1).await;
    let during = app.serve(&id).await.access.expect("tokens");
    assert!(
        during.tokens[0].obtained_at > before.tokens[0].obtained_at,
        "refreshed while the receiver hangs"
    );
    app.expire_read_cache();
    let read = app.get_token(&id, Some(&key), None).await;
    assert_eq!(read.status(), 200);
    let served: serde_json::Value = read.json().await.expect("json");
    assert_eq!(
        served["access_token"].as_str(),
        Some(during.tokens[0].access_token.expose())
    );

    let report = running.await.expect("the pass").expect("a pass report");
    assert_eq!(
        report.notifications.failed, 1,
        "the delivery timed out and waits for a later pass"
    );
    hooks.set_mode(Mode::Accept).await;
    let later = pass(&app, false, now + Duration::from_secs(5 * 60)).await;
    assert_eq!(later.notifications.delivered, 1);
    let deliveries = hooks.deliveries().await;
    assert_eq!(kinds(&deliveries), ["connection.connected"; 2]);
    assert_eq!(deliveries[0].id, deliveries[1].id);
    assert_verified_and_clean(&app, &deliveries, &[&key]);
}

#[tokio::test]
#[cfg_attr(
    not(feature = "services"),
    ignore = "needs the webhook receiver: scripts/test.sh"
)]
async fn client_secret_expiry_is_announced_at_30_7_and_1_days() {
    let hooks = channel("expiry").await;
    let app = notifying(StoreKind::File, &hooks, Duration::from_secs(5)).await;
    let id = app.consented("expiring").await;
    app.set_secret_expiry(&id, 45).await.expect("expiry set");
    let start = OffsetDateTime::now_utc();
    // A pass a day, both clocks moving, until past the expiry.
    for day in 0..=46_u64 {
        let now = start + Duration::from_secs(day * 86_400);
        app.clock.advance_to(now);
        pass(&app, false, now).await;
        if day < 46 {
            app.identity.advance_clock(Duration::from_secs(86_400));
        }
    }
    let deliveries = hooks.deliveries().await;
    assert_verified_and_clean(&app, &deliveries, &[]);
    let warnings: Vec<_> = deliveries
        .iter()
        .filter(|d| d.kind() == "connection.credential_expiring")
        .map(|d| d.payload.as_ref().expect("payload")["data"].clone())
        .collect();
    let days: Vec<_> = warnings.iter().map(|w| w["days_left"].as_i64()).collect();
    assert_eq!(days, [Some(30), Some(7), Some(1)]);
    assert!(
        warnings[0]["advice"]
            .as_str()
            .is_some_and(|a| a.contains("credential_expiring") && a.contains("--client-secret")),
        "{}",
        warnings[0]
    );
    assert_eq!(warnings[0]["credential_expires"], date_in(45));
}

/// While the hour's quota keeps a failed notification's bookkeeping from
/// being written down, the process backs it off all the same: not tried
/// again before 5 minutes, then delivered under its `webhook-id`.
#[tokio::test]
#[cfg_attr(
    not(feature = "services"),
    ignore = "needs the webhook receiver: scripts/test.sh"
)]
async fn a_failing_receiver_is_backed_off_while_the_quota_holds_the_outbox() {
    let hooks = channel("held").await;
    hooks.set_mode(Mode::Fail).await;
    let app = notifying(StoreKind::File, &hooks, Duration::from_secs(5)).await;
    let id = app.consented("held").await;
    let now = OffsetDateTime::now_utc();
    // The hour's product writes used up, but for the refreshes' reserve.
    app.change_serve(&id, |serve| {
        for _ in 0..4 {
            serve.writes.record(Writer::Product, now);
        }
    })
    .await;
    let first = pass(&app, false, now).await;
    assert_eq!(first.notifications.failed, 1);
    assert_eq!(
        app.status(&id).await.outbox[0].attempts,
        0,
        "the failure is not written down"
    );
    for minutes in [1, 2, 4] {
        pass(&app, false, now + Duration::from_secs(minutes * 60)).await;
    }
    assert_eq!(hooks.deliveries().await.len(), 1, "backed off all the same");
    hooks.set_mode(Mode::Accept).await;
    let later = pass(&app, false, now + Duration::from_secs(5 * 60)).await;
    assert_eq!(later.notifications.delivered, 1);
    let deliveries = hooks.deliveries().await;
    assert_eq!(deliveries.len(), 2);
    assert_eq!(deliveries[0].id, deliveries[1].id, "the same webhook-id");
}

/// Issue 24, item 9: a provider whose access tokens live 3 minutes, on
/// Secrets Manager (and on a file store that counts its versions, as it
/// stands for it): the consent page says so with the numbers, the status
/// is `tokens_too_short` and needs a human with its own advice, the next
/// pass notifies the operator, and token-refresh counts it for the
/// NeedsHuman alarm. Never a silent "connected".
async fn tokens_too_short_for_the_store_need_a_human(kind: StoreKind) {
    let hooks = channel("short-tokens").await;
    let app = notifying(kind, &hooks, Duration::from_secs(5)).await;
    app.identity
        .set_access_token_lifetime(Duration::from_secs(180));
    let id = unique_id("short");
    app.add_connection(&id).await;
    let consent = app.consent(&id).await;
    assert_eq!(consent.status, 200, "{}", consent.body);
    let sentence = "This provider's tokens last 180 s; on Secrets Manager roomtoken keeps tokens of at least 2400 s (40 minutes) fresh.";
    assert!(consent.body.contains(sentence), "{}", consent.body);
    assert!(
        consent
            .body
            .contains("Displays will be refused part of the time")
    );

    let printed = match app.cli(&["status", &id, "--json"], "").await {
        Ok(printed) | Err(printed) => printed,
    };
    let view: serde_json::Value = serde_json::from_str(
        printed
            .lines()
            .filter(|l| !l.starts_with("Error"))
            .collect::<Vec<_>>()
            .join("\n")
            .trim(),
    )
    .unwrap_or_else(|e| panic!("{e}: {printed}"));
    assert_eq!(view["state"], "tokens_too_short", "{printed}");
    assert_eq!(view["needs_human"], true, "{printed}");
    let advice = view["advice"].as_str().unwrap_or_default();
    assert!(advice.starts_with(sentence), "{advice}");
    assert!(advice.contains("token lifetime policy"), "{advice}");

    let report = pass(&app, false, app.broker.now()).await;
    let deliveries = hooks.deliveries().await;
    assert_eq!(kinds(&deliveries), ["connection.tokens_too_short"]);
    let data = &deliveries[0].payload.as_ref().expect("verified")["data"];
    assert_eq!(data["new_state"], "tokens_too_short");
    assert!(
        data["advice"]
            .as_str()
            .unwrap_or_default()
            .starts_with(sentence)
    );
    assert_verified_and_clean(&app, &deliveries, &[]);
    let summary = token_refresh::PassSummary::of(&report, app.broker.now());
    assert_eq!(summary.needing_human, 1, "the NeedsHuman alarm counts it");
}

#[tokio::test]
#[cfg_attr(
    not(feature = "services"),
    ignore = "needs moto and the webhook receiver: scripts/test.sh"
)]
async fn tokens_too_short_need_a_human_on_secrets_manager() {
    tokens_too_short_for_the_store_need_a_human(StoreKind::SecretsManager).await;
}

#[tokio::test]
#[cfg_attr(
    not(feature = "services"),
    ignore = "needs the webhook receiver: scripts/test.sh"
)]
async fn tokens_too_short_need_a_human_on_a_file_store_counting_versions() {
    tokens_too_short_for_the_store_need_a_human(StoreKind::File).await;
}

/// On the file store as it is (no version quota), tokens of 3 minutes are
/// kept fresh: connected, and nothing to tell. Tokens of a minute are not
/// (a token must have 30 s left to be served): said with this store's own
/// number.
#[tokio::test]
async fn the_file_store_keeps_tokens_of_minutes_fresh() {
    let app = Setup::new(StoreKind::File)
        .without_version_quota()
        .spawn()
        .await;
    app.identity
        .set_access_token_lifetime(Duration::from_secs(180));
    let id = app.consented("minutes").await;
    let status = app.status(&id).await;
    assert_eq!(status.state, roomtoken::domain::ConnectionState::Connected);
    assert_eq!(status.short_tokens, None);

    app.identity
        .set_access_token_lifetime(Duration::from_secs(60));
    let consent = app.consent(&id).await;
    assert_eq!(consent.status, 200, "{}", consent.body);
    let sentence = "This provider's tokens last 60 s; on this store roomtoken keeps tokens of at least 120 s (2 minutes) fresh.";
    assert!(consent.body.contains(sentence), "{}", consent.body);
    let status = app.status(&id).await;
    assert_eq!(
        status.state,
        roomtoken::domain::ConnectionState::TokensTooShort
    );
}

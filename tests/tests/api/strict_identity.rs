//! The product against a fake as strict as Entra ID: refresh tokens that
//! expire after 90 idle days or a password reset, scopes that need consent,
//! suberrors, guest accounts and tenants named by a domain.

use roomtoken::domain::{ConnectionState, FailureClass};
use roomtoken::flows::refresh::Outcome;
use roomtoken_fake_identity::{FakeAccount, Fault, FaultTarget, GrantType};
use roomtoken_tests::{
    ACCOUNT, RecordingSleeper, Setup, StoreKind, TENANT, TestApp, assert_no_secret_logged,
    booking_account, spawn_app, unique_id,
};
use std::sync::Arc;
use std::time::Duration;
use time::OffsetDateTime;

const HOUR: Duration = Duration::from_secs(3600);

/// Moves the broker's clock and the identity platform's together.
fn advance(app: &TestApp, by: Duration) -> OffsetDateTime {
    app.clock.advance(by);
    app.identity.advance_clock(by);
    app.broker.now()
}

#[tokio::test]
async fn a_grant_refreshed_on_schedule_outlives_90_days_and_one_left_idle_does_not() {
    let app = Setup::new(StoreKind::File)
        .sleeper(Arc::new(RecordingSleeper::default()))
        .spawn()
        .await;
    let (kept, key) = app.connected("kept").await;
    let idle = app.consented("idle").await;

    // 100 days of passes every 12 hours over `kept` only.
    let mut refreshed = 0;
    for _ in 0..200 {
        let now = advance(&app, 12 * HOUR);
        match app.refresh_one(&kept, false, now).await {
            Outcome::Refreshed { .. } => refreshed += 1,
            other => panic!("day {:?}: {other:?}", app.identity.now()),
        }
    }
    assert_eq!(refreshed, 200, "1-hour tokens: every pass redeems");
    assert_eq!(app.status(&kept).await.state, ConnectionState::Connected);
    app.assert_serves_valid_token(&kept, &key, None).await;
    assert_eq!(app.identity.counters().refresh_tokens_redeemed_twice, 0);

    // The grant nobody refreshed for 100 days: Entra's own refusal.
    let outcome = app.refresh_one(&idle, false, app.broker.now()).await;
    assert!(
        matches!(&outcome, Outcome::Failed(e)
            if e.class == FailureClass::ReconnectNeeded && e.code == "AADSTS700082"),
        "{outcome:?}"
    );
    let status = app.status(&idle).await;
    assert_eq!(status.state, ConnectionState::ReconnectRequired);
    assert_no_secret_logged(&app.secrets(&[&key]));
}

#[tokio::test]
async fn a_password_reset_needs_a_reconnect_and_the_link_heals_it() {
    let app = spawn_app(StoreKind::File).await;
    let (id, key) = app.connected("reset").await;
    app.identity.revoke_account(ACCOUNT);
    let outcome = app.refresh_one(&id, true, app.broker.now()).await;
    assert!(
        matches!(&outcome, Outcome::Failed(e)
            if e.class == FailureClass::ReconnectNeeded && e.code == "AADSTS50173"),
        "{outcome:?}"
    );
    assert_eq!(
        app.status(&id).await.state,
        ConnectionState::ReconnectRequired
    );
    app.expire_read_cache();
    let refused = app.get_token(&id, Some(&key), None).await;
    assert_eq!(refused.status(), 503, "a revoked grant serves no token");

    let consent = app.consent(&id).await;
    assert_eq!(consent.status, 200, "{}", consent.body);
    assert!(matches!(
        app.refresh_one(&id, true, app.broker.now()).await,
        Outcome::Refreshed { .. }
    ));
    assert_eq!(app.status(&id).await.state, ConnectionState::Connected);
    app.expire_read_cache();
    app.assert_serves_valid_token(&id, &key, None).await;
}

#[tokio::test]
async fn a_resource_added_after_the_consent_needs_the_consent_again() {
    let app = spawn_app(StoreKind::File).await;
    let id = unique_id("graph-later");
    app.add_connection_with(&id, TENANT, "ews").await;
    let consent = app.consent(&id).await;
    assert_eq!(consent.status, 200, "{}", consent.body);
    let updated = app
        .cli(
            &["connection", "update", &id, "--resources", "ews,graph"],
            "",
        )
        .await
        .expect("connection update");
    assert!(
        updated.contains("AADSTS65001") && updated.contains(&format!("roomtoken link {id}")),
        "the operator is told before the displays go dark: {updated}"
    );

    let outcome = app.refresh_one(&id, true, app.broker.now()).await;
    assert!(
        matches!(&outcome, Outcome::Failed(e)
            if e.class == FailureClass::ReconnectNeeded && e.code == "AADSTS65001"),
        "Entra refuses Graph tokens nobody consented to: {outcome:?}"
    );
    assert_eq!(
        app.status(&id).await.state,
        ConnectionState::ReconnectRequired
    );

    let consent = app.consent(&id).await;
    assert_eq!(consent.status, 200, "{}", consent.body);
    assert!(matches!(
        app.refresh_one(&id, true, app.broker.now()).await,
        Outcome::Refreshed { .. }
    ));
    let key = app.create_key(&id).await;
    let graph = app.get_token(&id, Some(&key), Some("graph")).await;
    assert_eq!(graph.status(), 200);
}

/// An error code the product does not know, but a `suberror` that says
/// what to do: the suberror decides, not the `error` value.
#[tokio::test]
async fn a_suberror_decides_when_the_code_is_unknown() {
    let app = spawn_app(StoreKind::File).await;
    let id = app.consented("suberror").await;
    app.identity.inject(Fault::Aadsts {
        status: 400,
        error: "invalid_request".into(),
        code: 9_999_999,
        suberror: Some("consent_required".into()),
    });
    let outcome = app.refresh_one(&id, true, app.broker.now()).await;
    assert!(
        matches!(&outcome, Outcome::Failed(e) if e.class == FailureClass::ReconnectNeeded),
        "without its suberror this is our bug: {outcome:?}"
    );
}

#[tokio::test]
async fn a_fault_for_one_connection_leaves_the_others_alone() {
    let app = Setup::new(StoreKind::File)
        .extra_accounts(2)
        .sleeper(Arc::new(RecordingSleeper::default()))
        .spawn()
        .await;
    let mut ids = Vec::new();
    for n in 0..2 {
        app.identity.set_auto_consent(Some(&booking_account(n)));
        ids.push(app.consented("targeted").await);
    }
    app.identity.inject_for(
        FaultTarget::account(&booking_account(1)).grant(GrantType::RefreshToken),
        Fault::Aadsts {
            status: 400,
            error: "invalid_grant".into(),
            code: 53003,
            suberror: None,
        },
    );
    let now = app.broker.now();
    assert!(matches!(
        app.refresh_one(&ids[0], true, now).await,
        Outcome::Refreshed { .. }
    ));
    assert_eq!(app.identity.queued_faults(), 1, "not the first one's");
    assert!(matches!(
        app.refresh_one(&ids[1], true, now).await,
        Outcome::Failed(e) if e.class == FailureClass::Blocked
    ));
    assert_eq!(app.status(&ids[0]).await.state, ConnectionState::Connected);
    assert_eq!(app.status(&ids[1]).await.state, ConnectionState::Blocked);
}

#[tokio::test]
async fn a_guest_account_is_pinned_in_the_tenant_that_invited_it() {
    const GUEST: &str = "rooms@fabrikam.example";
    const GUEST_OID: &str = "00000000-0000-4000-8000-00000000c0de";
    let app = spawn_app(StoreKind::File).await;
    app.identity.add_account(FakeAccount {
        tenant: "0f0e0d0c-0b0a-4909-8807-060504030201".into(),
        oid: "00000000-0000-4000-8000-0000000000f1".into(),
        username: GUEST.into(),
        name: "Fabrikam rooms".into(),
        admin: false,
    });
    app.identity.add_guest(TENANT, GUEST, GUEST_OID);
    app.identity.set_auto_consent(Some(GUEST));
    let (id, key) = app.connected("guest").await;
    let grant = app.grant(&id).await.expect("grant");
    assert_eq!(grant.account.display, GUEST);
    let pinned = format!("{:?}", grant.account.key);
    assert!(
        pinned.contains(TENANT) && pinned.contains(GUEST_OID),
        "pinned by the inviting tenant and the guest's object id there: {pinned}"
    );
    assert!(matches!(
        app.refresh_one(&id, true, app.broker.now()).await,
        Outcome::Refreshed { .. }
    ));
    app.assert_serves_valid_token(&id, &key, None).await;
}

#[tokio::test]
async fn a_tenant_named_by_its_domain_connects_and_refreshes() {
    let app = spawn_app(StoreKind::File).await;
    app.identity.add_domain(TENANT, "rooms.contoso.com");
    let id = unique_id("domain");
    app.add_connection_with(&id, "rooms.contoso.com", "ews,graph")
        .await;
    let consent = app.consent(&id).await;
    assert_eq!(consent.status, 200, "{}", consent.body);
    let grant = app.grant(&id).await.expect("grant");
    assert!(
        format!("{:?}", grant.account.key).contains(TENANT),
        "the id_token's tenant id is pinned, not the domain"
    );
    // And the app's requests go to that tenant id from now on: a domain
    // that moved to another tenant would not take the connection along.
    assert!(
        matches!(&app.serve(&id).await.app.provider,
            roomtoken::domain::Provider::Microsoft { tenant, .. } if tenant == TENANT),
        "the tenant id replaces the domain"
    );
    let key = app.create_key(&id).await;
    assert!(matches!(
        app.refresh_one(&id, true, app.broker.now()).await,
        Outcome::Refreshed { .. }
    ));
    app.assert_serves_valid_token(&id, &key, None).await;
}

//! Secrets Manager is eventually consistent ("all Secrets Manager
//! operations are eventually consistent"), which moto is not: a store that
//! answers reads from the previous version for a while after each write,
//! whose writes may land while their answer says "conflict", and where a
//! removed connection's names cannot be created again for a while
//! (`roomtoken_tests::lagging_store`). Issue 24, item 4.

use roomtoken::domain::{Cloud, ConnectionId, Provider, Resource, Secret};
use roomtoken::flows::admin::{self, AdminError, BEING_DELETED_WAITS};
use roomtoken::flows::refresh::Outcome;
use roomtoken_tests::lagging_store::LaggingStore;
use roomtoken_tests::{
    ACCOUNT, CLIENT_ID, RecordingSleeper, Setup, StoreKind, TENANT, TestApp, unique_id,
};
use std::sync::{Arc, OnceLock};
use time::OffsetDateTime;

/// A test app on a lagging file store (reads stale for `stale_reads` after
/// each write), with waits recorded instead of spent.
async fn lagging(stale_reads: usize) -> (TestApp, Arc<LaggingStore>, Arc<RecordingSleeper>) {
    let slot: Arc<OnceLock<Arc<LaggingStore>>> = Arc::default();
    let set = slot.clone();
    let sleeper = Arc::new(RecordingSleeper::default());
    let app = Setup::new(StoreKind::File)
        .wrap_store(move |inner| {
            let store = Arc::new(LaggingStore::new(inner, stale_reads));
            let _ = set.set(store.clone());
            store
        })
        .sleeper(sleeper.clone())
        .spawn()
        .await;
    let store = slot.get().expect("the lagging store").clone();
    (app, store, sleeper)
}

/// The grant's write lands but answers "conflict", and the next two reads
/// of the grant still return the version before it: the consent is
/// confirmed as ours (our refresh token, our session), never turned into
/// "this sign-in was already used".
#[tokio::test]
async fn a_consent_whose_write_landed_unseen_is_connected_not_already_used() {
    let (app, store, sleeper) = lagging(2).await;
    let id = unique_id("lagging");
    app.add_connection(&id).await;
    let key = app.create_key(&id).await;
    store.lie_about_next_write("/grant");
    let consent = app.consent(&id).await;
    assert_eq!(consent.status, 200, "{}", consent.body);
    assert!(consent.body.contains("Connected as"), "{}", consent.body);
    assert!(!consent.body.contains("already"), "{}", consent.body);
    // It waited between its tries, a bounded number of times.
    let waits = sleeper.waits();
    assert!(!waits.is_empty() && waits.len() <= 4, "{waits:?}");
    // Reads lag behind the last write (the rotated refresh token's): the
    // third read sees it.
    let _ = app.grant(&id).await;
    let _ = app.grant(&id).await;
    let grant = app.grant(&id).await.expect("the grant");
    assert_eq!(
        Some(grant.refresh_token.expose().to_owned()),
        app.identity.newest_refresh_token(CLIENT_ID, ACCOUNT),
        "the newest refresh token is the one stored"
    );
    // A display's read may also see the version before the consent for a
    // while (503, then served).
    let mut statuses = Vec::new();
    for _ in 0..3 {
        app.expire_read_cache();
        statuses.push(app.get_token(&id, Some(&key), None).await.status().as_u16());
    }
    assert_eq!(statuses.last(), Some(&200), "{statuses:?}");
}

/// Device keys made, listed and revoked, and a refresh pass, on a store
/// whose reads lag one version behind each write: every change lands once,
/// and what the broker later reads is right.
#[tokio::test]
async fn keys_and_refreshes_land_once_on_a_lagging_store() {
    let (app, _, _) = lagging(1).await;
    let id = app.consented("lag-keys").await;
    let connection = ConnectionId::parse(&id).unwrap();
    let made = admin::create_keys(&app.broker, &connection, None, 3, app.broker.now())
        .await
        .expect("three keys");
    admin::revoke_key(&app.broker, &connection, &made[1].id, app.broker.now())
        .await
        .expect("revoked");
    // One read is stale, the next is not.
    let _ = admin::list_keys(&app.broker, &connection).await;
    let listed = admin::list_keys(&app.broker, &connection).await.unwrap();
    let ids: Vec<&str> = listed.iter().map(|k| k.id.as_str()).collect();
    assert!(ids.contains(&made[0].id.as_str()) && ids.contains(&made[2].id.as_str()));
    assert!(!ids.contains(&made[1].id.as_str()), "{ids:?}");
    let outcome = app.refresh_one(&id, true, OffsetDateTime::now_utc()).await;
    assert!(matches!(outcome, Outcome::Refreshed { .. }), "{outcome:?}");
    let _ = app.grant(&id).await;
    assert_eq!(
        Some(
            app.grant(&id)
                .await
                .unwrap()
                .refresh_token
                .expose()
                .to_owned()
        ),
        app.identity.newest_refresh_token(CLIENT_ID, ACCOUNT)
    );
}

/// `connection remove` then `connection add` of the same id while the
/// deletion completes: `add` waits, a bounded while, and then succeeds; if
/// the deletion takes longer, it says so clearly instead of "store
/// unavailable".
#[tokio::test]
async fn adding_a_connection_that_is_still_being_deleted_waits_then_says_so() {
    let (app, store, sleeper) = lagging(0).await;
    let id = ConnectionId::parse(&unique_id("readded")).unwrap();
    let new = || admin::NewConnection {
        id: id.clone(),
        provider: Provider::microsoft(TENANT, Cloud::Global).unwrap(),
        client_id: CLIENT_ID.into(),
        resources: Resource::presets("graph", Cloud::Global).unwrap(),
        client_secret: Secret::new(app.client_secret.clone()),
        booking_account: None,
        client_secret_expires: None,
        certificate: None,
        app_only: false,
    };
    let now = app.broker.now();
    admin::add_connection(&app.broker, new(), now)
        .await
        .unwrap();
    admin::remove_connection(&app.broker, &id).await.unwrap();

    store.being_deleted(&format!("{id}/grant"), 2);
    admin::add_connection(&app.broker, new(), now)
        .await
        .expect("added once the deletion completed");
    assert_eq!(sleeper.waits(), BEING_DELETED_WAITS[..2], "waited twice");
    assert!(app.broker.repo.serve(&id).await.unwrap().is_some());

    admin::remove_connection(&app.broker, &id).await.unwrap();
    sleeper.clear();
    store.being_deleted(&format!("{id}/serve"), 100);
    let refused = admin::add_connection(&app.broker, new(), now)
        .await
        .expect_err("still being deleted");
    assert!(matches!(refused, AdminError::BeingDeleted(_)), "{refused}");
    let message = refused.to_string();
    assert!(message.contains("is still being deleted"), "{message}");
    assert!(message.contains("again in a minute"), "{message}");
    assert_eq!(
        sleeper.waits(),
        BEING_DELETED_WAITS,
        "a bounded wait: 30 s in all"
    );
}

/// A connection that ListSecrets still lists but that is gone by the time
/// it is read (being deleted) is a removed connection for the pass: no
/// store failure, and not counted.
#[tokio::test]
async fn a_listed_connection_already_gone_is_removed_not_a_failure() {
    let app = Setup::new(StoreKind::File).spawn().await;
    let id = app.consented("gone").await;
    let connection = ConnectionId::parse(&id).unwrap();
    // What a lagging ListSecrets does: the name is listed, the secret gone.
    app.broker
        .repo
        .delete_connection(&connection)
        .await
        .unwrap();
    let report = roomtoken::flows::refresh::refresh_pass(
        &app.broker,
        &roomtoken::flows::refresh::PassOptions {
            only: Some(connection),
            force: false,
        },
        OffsetDateTime::now_utc(),
    )
    .await
    .unwrap();
    assert!(
        report
            .results
            .iter()
            .all(|r| matches!(r.outcome, Outcome::Removed)),
        "{:?}",
        report
            .results
            .iter()
            .map(|r| &r.outcome)
            .collect::<Vec<_>>()
    );
}

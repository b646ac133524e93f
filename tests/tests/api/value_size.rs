//! Secrets Manager's 65,536-byte value limit, which moto does not enforce:
//! every store refuses more with its own error; a connection of 2,000 keys
//! keeps a quarter of its serve secret free; `key create` refuses, before
//! writing, what would not fit, and revocations still have room.

use roomtoken::domain::{ConnectionId, Writer};
use roomtoken::flows::admin::{self, AdminError};
use roomtoken::store::{MAX_VALUE_BYTES, Part, SecretName, SecretStore, StoreError};
use roomtoken_tests::sizes::{full_serve_record, stored_bytes};
use roomtoken_tests::{StoreKind, on_both_stores, spawn_app, unique_id};

async fn every_store_refuses_a_value_over_the_limit(kind: StoreKind) {
    let app = spawn_app(kind).await;
    let name = format!("connections/{}/serve", unique_id("size"));
    let store = app.store.clone();
    let full = "x".repeat(MAX_VALUE_BYTES);
    let version = store
        .put(&name, &full, None)
        .await
        .expect("65,536 bytes fit");
    let over = "y".repeat(MAX_VALUE_BYTES + 1);
    match store.put(&name, &over, Some(&version)).await {
        Err(StoreError::TooLarge { bytes, limit, .. }) => {
            assert_eq!((bytes, limit), (MAX_VALUE_BYTES + 1, MAX_VALUE_BYTES));
        }
        other => panic!("65,537 bytes: {other:?}"),
    }
    let kept = store.get(&name).await.unwrap().expect("still there");
    assert_eq!(kept.version, version, "nothing was written");
    assert_eq!(kept.value.len(), MAX_VALUE_BYTES);
    let refused = store.put(&format!("{name}-new"), &over, None).await;
    assert!(
        matches!(refused, Err(StoreError::TooLarge { .. })),
        "{refused:?}"
    );
    assert!(store.get(&format!("{name}-new")).await.unwrap().is_none());
}

on_both_stores!(every_store_refuses_a_value_over_the_limit => the_file_store_refuses_a_value_over_64_kib, secrets_manager_refuses_a_value_over_64_kib);

/// A connection as large as a working one gets (two 8 KB tokens, the
/// outbox full, a day of writes) with 1, 500 and 2,000 keys keeps at least
/// a quarter of its serve secret free, and still takes a `key create` and a
/// refresh's worst growth.
#[tokio::test]
async fn two_thousand_keys_leave_a_quarter_of_the_serve_secret_free() {
    let app = spawn_app(StoreKind::File).await;
    let now = app.broker.now();
    for keys in [1, 500, 2_000] {
        let serve = full_serve_record(keys, now);
        let bytes = stored_bytes(&serve);
        assert!(
            bytes <= MAX_VALUE_BYTES * 3 / 4,
            "{keys} keys: {bytes} bytes, more than three quarters of {MAX_VALUE_BYTES}"
        );
        assert_eq!(serve.keys.active_count(), u64::from(keys));
    }

    let id = ConnectionId::parse(&unique_id("large")).unwrap();
    app.add_connection(id.as_str()).await;
    let mut large = full_serve_record(2_000, now);
    app.broker
        .repo
        .update(&id, Part::Serve, Writer::Product, now, |record| {
            let record: roomtoken::domain::ServeRecord = record?;
            // The stored app and write log: a full day's log leaves no
            // version for the key create.
            large.app = record.app;
            large.writes = record.writes;
            Some(large.clone())
        })
        .await
        .unwrap();
    let keys = admin::create_keys(&app.broker, &id, Some("one more floor".into()), 500, now)
        .await
        .expect("500 more keys fit");
    assert_eq!(keys.len(), 500);
}

/// Keys made one at a time with long labels fill the room people's changes
/// may use: the next `key create` is refused with what to do, before any
/// write; a revocation still goes through and makes room again.
async fn key_create_refuses_what_would_not_fit(kind: StoreKind) {
    let app = spawn_app(kind).await;
    let (id, _) = app.connected("crowded").await;
    let connection = ConnectionId::parse(&id).unwrap();
    let serve = SecretName::of(&connection, Part::Serve).as_str().to_owned();
    let label = "a display whose operator wrote its whole story in the label: ".repeat(4);
    let mut made = Vec::new();
    let refused = loop {
        assert!(made.len() < 200, "never refused");
        // A day at a time: people's changes are capped at 50 a day.
        if made.len() % 40 == 39 {
            app.clock.advance(std::time::Duration::from_secs(86_400));
        }
        match admin::create_key(
            &app.broker,
            &connection,
            Some(label.clone()),
            app.broker.now(),
        )
        .await
        {
            Ok(key) => made.push(key.id),
            Err(e) => break e,
        }
    };
    let puts = app.store.calls().puts;
    let message = refused.to_string();
    assert!(
        matches!(refused, AdminError::KeysDoNotFit { count: 1, .. }),
        "{message}"
    );
    assert!(message.contains("Nothing was created"), "{message}");
    assert!(message.contains("--count"), "{message}");
    let stored = app.store.get(&serve).await.unwrap().unwrap();
    assert!(stored.value.len() < MAX_VALUE_BYTES);
    // The CLI says the same, and writes nothing either.
    let cli = app
        .cli(&["key", "create", &id, "--label", &label], "")
        .await;
    let error = cli.expect_err("refused").to_string();
    assert!(
        error.contains("has no room for 1 more device key"),
        "{error}"
    );
    assert_eq!(app.store.calls().puts, puts, "nothing was written");

    app.cli(&["key", "revoke", &id, &made[3]], "")
        .await
        .unwrap();
    admin::create_key(&app.broker, &connection, Some(label), app.broker.now())
        .await
        .expect("a revocation made room");
}

on_both_stores!(key_create_refuses_what_would_not_fit => key_create_refuses_what_would_not_fit_on_the_file_store, key_create_refuses_what_would_not_fit_on_secrets_manager);

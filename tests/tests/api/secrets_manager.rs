//! The Secrets Manager store's compare-and-swap where the network fails at
//! the worst moment: an answer lost after the write happened.

use roomtoken::domain::ConnectionId;
use roomtoken::flows::admin;
use roomtoken_tests::tcp_proxy::TcpProxy;
use roomtoken_tests::{Setup, StoreKind, require_moto, unique_id};

const MOVE_STAGE: &str = "secretsmanager.UpdateSecretVersionStage";

/// UpdateSecretVersionStage moved AWSCURRENT, but its answer was lost; the
/// SDK's retry then finds the prior version no longer current. That is our
/// own success, not someone else's write: `key revoke` revokes (instead of
/// "no active key"), `key create` creates one key (not two).
#[tokio::test]
#[cfg_attr(not(feature = "services"), ignore = "needs moto: scripts/test.sh")]
async fn a_lost_answer_to_a_successful_write_counts_as_the_success() {
    let proxy = TcpProxy::before_moto().await;
    let app = Setup::new(StoreKind::SecretsManager)
        .aws_endpoint(proxy.url())
        .isolated_prefix()
        .spawn()
        .await;
    let id = ConnectionId::parse(&unique_id("lost-answer")).expect("id");
    let now = app.broker.now();
    let broker = &app.broker;
    let add = |label: &str| {
        let label = Some(label.to_owned());
        let (broker, id) = (broker.clone(), id.clone());
        async move { admin::create_key(&broker, &id, label, now).await }
    };
    app.add_connection(id.as_str()).await;
    let kept = add("kept").await.expect("a key");

    proxy.lose_next_answer_to(MOVE_STAGE);
    let created = add("created through a lost answer").await;
    assert_eq!(proxy.answers_lost(), 1, "the answer was lost");
    let created = created.expect("the create succeeded");
    let keys = admin::list_keys(broker, &id).await.expect("keys");
    assert_eq!(keys.len(), 2, "one key created, not two: {keys:?}");

    proxy.lose_next_answer_to(MOVE_STAGE);
    let revoked = admin::revoke_key(broker, &id, &created.id, now).await;
    assert_eq!(proxy.answers_lost(), 2, "the answer was lost");
    revoked.expect("the revoke succeeded");
    let active = admin::list_keys(broker, &id).await.expect("keys");
    assert_eq!(active.len(), 1);
    assert_eq!(active[0].id, kept.id);
}

/// The compare-and-swap itself, on moto: a create where the secret exists
/// and a put over a stale version are conflicts that change nothing; the
/// loser's staged version (AWSPENDING) does not block the next writer.
#[tokio::test]
#[cfg_attr(not(feature = "services"), ignore = "needs moto: scripts/test.sh")]
async fn compare_and_swap_refuses_stale_writers_and_survives_their_leftovers() {
    use roomtoken::store::{SecretStore, SecretsManagerStore, StoreError};
    require_moto();
    let prefix = format!("{}/", unique_id("cas"));
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .load()
        .await;
    let client = aws_sdk_secretsmanager::Client::new(&config);
    let store = SecretsManagerStore::new(client.clone(), &prefix);
    let name = "connections/cas/serve";

    let first = store.put(name, "one", None).await.expect("created");
    let again = store.put(name, "other", None).await;
    assert!(
        matches!(again, Err(StoreError::Conflict(_))),
        "a create where the secret exists: {again:?}"
    );

    // Two writers read version `first`; the second to write loses.
    let winner = store.put(name, "two", Some(&first)).await.expect("winner");
    let loser = store.put(name, "stale", Some(&first)).await;
    assert!(
        matches!(loser, Err(StoreError::Conflict(_))),
        "a put over a stale version: {loser:?}"
    );
    let current = store.get(name).await.expect("get").expect("a value");
    assert_eq!(current.value, "two", "the loser changed nothing");
    assert_eq!(current.version, winner);

    // The loser left its value staged as AWSPENDING; the next writer moves
    // that label and wins.
    let versions = client
        .list_secret_version_ids()
        .secret_id(format!("{prefix}{name}"))
        .send()
        .await
        .expect("versions");
    let pending = versions
        .versions()
        .iter()
        .filter(|v| v.version_stages().iter().any(|s| s == "AWSPENDING"))
        .count();
    assert_eq!(pending, 1, "the loser's staged version is left");
    let third = store.put(name, "three", Some(&winner)).await.expect("next");
    let current = store.get(name).await.expect("get").expect("a value");
    assert_eq!((current.value.as_str(), current.version), ("three", third));
}

/// A stand-in for Secrets Manager that answers every call with `error`
/// (HTTP 400, in the JSON protocol's header and body), counting calls.
async fn answering_every_call_with(
    error: &'static str,
    message: &'static str,
) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let calls = std::sync::Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let app = axum::Router::new().fallback(move || {
        let counted = counted.clone();
        async move {
            counted.fetch_add(1, Ordering::SeqCst);
            (
                axum::http::StatusCode::BAD_REQUEST,
                [
                    ("x-amzn-errortype", error),
                    ("content-type", "application/x-amz-json-1.1"),
                ],
                format!(r#"{{"__type":"{error}","Message":"{message}"}}"#),
            )
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, calls)
}

/// The SDK's standard retries take `LimitExceededException` for throttling;
/// the product's client does not retry it (the version quota frees in
/// hours, not seconds) and the store answers `WriteQuota` at once, while
/// real throttling is still retried.
#[tokio::test]
async fn the_version_quota_is_not_retried_and_throttling_is() {
    use roomtoken::store::{SecretStore, StoreError, Version};
    use std::sync::atomic::Ordering;
    for (error, expected_calls) in [("LimitExceededException", 1), ("ThrottlingException", 3)] {
        let (url, calls) = answering_every_call_with(error, "as Secrets Manager says it").await;
        let store = stand_in_store(url).await;
        let written = store
            .put("connections/c/serve", "{}", Some(&Version("v1".into())))
            .await;
        assert_eq!(calls.load(Ordering::SeqCst), expected_calls, "{error}");
        match (error, written) {
            ("LimitExceededException", Err(StoreError::WriteQuota { name, .. })) => {
                assert_eq!(name, "connections/c/serve");
            }
            ("ThrottlingException", Err(StoreError::Unavailable(_))) => {}
            (error, other) => panic!("{error}: {other:?}"),
        }
    }
}

/// The product's Secrets Manager store against a stand-in at `url`.
async fn stand_in_store(url: String) -> roomtoken::store::SecretsManagerStore {
    let retry = aws_config::retry::RetryConfig::standard()
        .with_max_attempts(3)
        .with_initial_backoff(std::time::Duration::from_millis(1));
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(url)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_secretsmanager::config::Credentials::new(
            "AKIDEXAMPLE",
            "not-a-secret",
            None,
            None,
            "test",
        ))
        .retry_config(retry)
        .load()
        .await;
    roomtoken::store::SecretsManagerStore::new(
        roomtoken::store::secrets_manager_client(&sdk),
        "stand-in/",
    )
}

/// A secret on its way out (a removed connection's, which ListSecrets may
/// still list) answers `InvalidRequestException` "marked for deletion":
/// the store reads it as gone, a write to it finds nothing to replace, and
/// a create of the same name says it is still being deleted, never "store
/// unavailable". Secrets Manager's own words (moto deletes at once).
#[tokio::test]
async fn a_secret_being_deleted_is_gone_for_readers_and_not_yet_creatable() {
    use roomtoken::store::{SecretStore, StoreError, Version};
    let (url, _) = answering_every_call_with(
        "InvalidRequestException",
        "You can't perform this operation on the secret because it was marked for deletion.",
    )
    .await;
    let store = stand_in_store(url).await;
    let name = "connections/gone/serve";
    assert!(matches!(store.get(name).await, Ok(None)));
    let replaced = store.put(name, "{}", Some(&Version("v1".into()))).await;
    assert!(
        matches!(replaced, Err(StoreError::Conflict(_))),
        "{replaced:?}"
    );

    let (url, _) = answering_every_call_with(
        "InvalidRequestException",
        "You can't create this secret because a secret with this name is already scheduled for deletion.",
    )
    .await;
    let store = stand_in_store(url).await;
    let created = store.put(name, "{}", None).await;
    match created {
        Err(e @ StoreError::BeingDeleted { .. }) => {
            assert!(e.to_string().contains("again in a minute"), "{e}");
        }
        other => panic!("{other:?}"),
    }
}

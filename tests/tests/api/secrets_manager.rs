//! The Secrets Manager store's compare-and-swap where the network fails at
//! the worst moment: an answer lost after the write happened.

use roomtoken::domain::ConnectionId;
use roomtoken::flows::admin;
use roomtoken_tests::tcp_proxy::TcpProxy;
use roomtoken_tests::*;

const MOVE_STAGE: &str = "secretsmanager.UpdateSecretVersionStage";

/// UpdateSecretVersionStage moved AWSCURRENT, but its answer was lost; the
/// SDK's retry then finds the prior version no longer current. That is our
/// own success, not someone else's write: `key revoke` revokes (instead of
/// "no active key"), `key create` creates one key (not two).
#[tokio::test]
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
    let active: Vec<_> = admin::list_keys(broker, &id)
        .await
        .expect("keys")
        .into_iter()
        .filter(|k| k.revoked_at.is_none())
        .collect();
    assert_eq!(active.len(), 1);
    assert_eq!(active[0].id, kept.id);
}

//! One refresh pass over 1,000 due connections, each with EWS and Graph, the
//! fake identity platform adding 50 ms to every token request; on the file
//! store and on Secrets Manager (moto). Prints wall time, token requests,
//! and store calls per refreshed connection.
//!
//! Run: `scripts/with-services.sh cargo bench -p roomtoken-tests --bench refresh_pass`
//! (without moto, only the file store runs).

use roomtoken::domain::{
    AccessToken, AccessTokens, Account, AccountKey, Cloud, ConnectionId, Grant, GrantRecord,
    Provider, Resource, Secret, ServeRecord, Status, Writer,
};
use roomtoken::flows::admin::{self, NewConnection};
use roomtoken::flows::refresh::{Outcome, PassOptions, refresh_pass};
use roomtoken::store::{CountingStore, Part, SecretStore};
use roomtoken::{Broker, Config};
use roomtoken_fake_identity::{FakeAccount, FakeApp, FakeIdentity};
use roomtoken_tests::{ACCOUNT, CLIENT_ID, TENANT, unique_id};
use std::sync::Arc;
use std::time::{Duration, Instant};
use time::OffsetDateTime;

const CONNECTIONS: usize = 1_000;
const LATENCY: Duration = Duration::from_millis(50);

async fn bench(label: &str, store: Arc<dyn SecretStore>, config: Config) {
    let counting = Arc::new(CountingStore::new(store));
    let identity_client =
        roomtoken::identity::OAuthClient::new(Duration::from_secs(10)).expect("client");
    let broker = Broker::new(counting.clone(), Arc::new(identity_client), config);
    let identity = FakeIdentity::start().await.expect("fake");
    let secret = "bench-client-secret";
    identity.register_app(FakeApp {
        tenant: TENANT.into(),
        client_id: CLIENT_ID.into(),
        client_secret: secret.into(),
        redirect_uris: vec!["http://127.0.0.1:9/callback".into()],
    });
    identity.add_account(FakeAccount {
        tenant: TENANT.into(),
        oid: "00000000-0000-4000-8000-00000000be7c".into(),
        username: ACCOUNT.into(),
        name: "bench".into(),
    });
    let now = OffsetDateTime::now_utc();
    let setup = Instant::now();
    let resources = Resource::presets("ews,graph", Cloud::Global).expect("presets");
    let scope: Vec<String> = resources.iter().flat_map(|r| r.scopes.clone()).collect();
    for n in 0..CONNECTIONS {
        let id = ConnectionId::parse(&format!("bench-{n:04}")).expect("id");
        let Provider::Microsoft { tenant, cloud, .. } =
            Provider::microsoft(TENANT, Cloud::Global).expect("provider")
        else {
            unreachable!()
        };
        let provider = Provider::Microsoft {
            tenant,
            cloud,
            authority: Some(identity.base_url()),
        };
        let new = NewConnection {
            id: id.clone(),
            provider,
            client_id: CLIENT_ID.into(),
            resources: resources.clone(),
            client_secret: Secret::new(secret),
        };
        admin::add_connection(&broker, new, now).await.expect("add");
        let refresh_token = identity.seed_refresh_token(
            TENANT,
            CLIENT_ID,
            ACCOUNT,
            &format!("{} offline_access", scope.join(" ")),
        );
        seed_connected(&broker, &id, refresh_token, now).await;
    }
    eprintln!(
        "{label}: {CONNECTIONS} connections set up in {:.1} s",
        setup.elapsed().as_secs_f64()
    );

    identity.set_latency(LATENCY);
    let before_calls = counting.calls();
    let before_requests = identity.counters().token_requests;
    let started = Instant::now();
    let report = refresh_pass(&broker, &PassOptions::default(), now)
        .await
        .expect("pass");
    let wall = started.elapsed();
    let calls = counting.calls();
    let refreshed = report.count(|o| matches!(o, Outcome::Refreshed { .. }));
    let requests = identity.counters().token_requests - before_requests;
    let per = |n: u64| n as f64 / refreshed.max(1) as f64;
    println!(
        "{label}: one pass over {CONNECTIONS} due connections (concurrency {}, {} ms per token request): \
         wall {:.2} s, refreshed {refreshed}, token requests {requests} ({:.1} per connection), \
         store calls per refreshed connection {:.1} (gets {:.1}, puts {:.1}, lists {})",
        broker.config.refresh_concurrency,
        LATENCY.as_millis(),
        wall.as_secs_f64(),
        per(requests),
        per(calls.total() - before_calls.total()),
        per(calls.gets - before_calls.gets),
        per(calls.puts - before_calls.puts),
        calls.lists - before_calls.lists,
    );
    assert_eq!(refreshed, CONNECTIONS, "every due connection was refreshed");
}

/// A consented connection whose tokens are due: the grant as a consent
/// stores it, and access tokens with ten minutes left.
async fn seed_connected(
    broker: &Broker,
    id: &ConnectionId,
    refresh_token: String,
    now: OffsetDateTime,
) {
    let account = Account {
        key: AccountKey::Microsoft {
            tid: TENANT.into(),
            oid: "00000000-0000-4000-8000-00000000be7c".into(),
        },
        display: ACCOUNT.into(),
    };
    let grant = Grant::new(Secret::new(refresh_token), account, now);
    broker
        .repo
        .update::<GrantRecord, _>(id, Part::Grant, Writer::Person, now, |record| {
            let mut record = record?;
            record.grant = Some(grant.clone());
            Some(record)
        })
        .await
        .expect("grant");
    broker
        .repo
        .update::<ServeRecord, _>(id, Part::Serve, Writer::Person, now, |record| {
            let mut record = record?;
            let tokens = record
                .app
                .resources
                .iter()
                .map(|r| AccessToken {
                    resource: r.name.clone(),
                    access_token: Secret::new("seeded"),
                    token_type: "Bearer".into(),
                    scope: r.scopes.join(" "),
                    expires_at: now + time::Duration::minutes(10),
                    obtained_at: now - time::Duration::minutes(50),
                })
                .collect();
            record.access = Some(AccessTokens {
                account: ACCOUNT.into(),
                resources: record
                    .app
                    .resources
                    .iter()
                    .map(|r| r.name.clone())
                    .collect(),
                tokens,
            });
            // Steady state: connected already.
            record.status = Status::connected(ACCOUNT, now);
            Some(record)
        })
        .await
        .expect("serve");
}

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Arc::new(roomtoken::store::FileStore::open(dir.path()).expect("file store"));
    let config = Config::new(roomtoken::store::StoreSpec::File(dir.path().to_owned()));
    bench("file store", store, config).await;

    if std::env::var("AWS_ENDPOINT_URL").is_err() {
        eprintln!(
            "AWS_ENDPOINT_URL is not set: skipping Secrets Manager (run through scripts/with-services.sh)"
        );
        return;
    }
    let mut config = Config::new(roomtoken::store::StoreSpec::Aws);
    config.secret_prefix = format!("{}/", unique_id("bench"));
    let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let store = Arc::new(roomtoken::store::SecretsManagerStore::new(
        aws_sdk_secretsmanager::Client::new(&sdk),
        &config.secret_prefix,
    ));
    bench("Secrets Manager (moto)", store, config).await;
}

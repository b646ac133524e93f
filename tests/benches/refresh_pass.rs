//! Refresh passes over many due connections, each with EWS and Graph, the
//! fake identity platform adding 50 ms to every token request:
//! - 1,000 due on the file store and on Secrets Manager (moto), unpaced:
//!   wall time, token requests and store calls per refreshed connection;
//! - 10,000 due under the default write budget (20 calls a second, the
//!   template's 3-minute pass budget), counted with Secrets Manager's call
//!   pattern on a simulated clock: how many each pass refreshes, and how long
//!   the backlog takes to drain.
//!
//! Run: `scripts/bench-cost.sh` or
//! `scripts/with-services.sh cargo bench -p roomtoken-tests --bench refresh_pass`
//! (without moto, the Secrets Manager run is skipped).

use roomtoken::clock::{Clock, ManualClock};
use roomtoken::domain::ConnectionId;
use roomtoken::flows::refresh::{Outcome, PassOptions, refresh_pass};
use roomtoken::store::{CountingStore, FileStore, SecretStore, StoreSpec};
use roomtoken::{Broker, Config};
use roomtoken_fake_identity::FakeIdentity;
use roomtoken_tests::fleet::{CallLog, SimulatedSleeper, add_consented, fake_identity};
use roomtoken_tests::unique_id;
use std::sync::Arc;
use std::time::{Duration, Instant};
use time::OffsetDateTime;

const CONNECTIONS: usize = 1_000;
const BACKLOG: usize = 10_000;
const LATENCY: Duration = Duration::from_millis(50);

/// `count` consented connections whose tokens expire in `left`.
async fn seed(
    broker: &Broker,
    identity: &FakeIdentity,
    count: usize,
    now: OffsetDateTime,
    left: Duration,
) {
    let setup = Instant::now();
    for n in 0..count {
        let id = ConnectionId::parse(&format!("bench-{n:05}")).expect("id");
        add_consented(broker, identity, &id, 0, now, left).await;
    }
    eprintln!(
        "{count} connections set up in {:.1} s",
        setup.elapsed().as_secs_f64()
    );
}

async fn bench(label: &str, store: Arc<dyn SecretStore>, config: Config) {
    let counting = Arc::new(CountingStore::new(store));
    let identity_client =
        roomtoken::identity::OAuthClient::new(Duration::from_secs(10)).expect("client");
    let broker = Broker::new(counting.clone(), Arc::new(identity_client), config);
    let identity = fake_identity().await;
    let now = OffsetDateTime::now_utc();
    seed(
        &broker,
        &identity,
        CONNECTIONS,
        now,
        Duration::from_secs(10 * 60),
    )
    .await;

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
        "{label}: one pass over {CONNECTIONS} due connections (concurrency {}, {} ms per token request, no write budget): \
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

/// 10,000 connections due at once (19 minutes left, as after an outage),
/// the default write budget and the template's pass budget, passes every 5
/// minutes on a simulated clock (the provider's 50 ms are real), tokens
/// living 75 minutes (Entra's average): how many each pass refreshes, how
/// long until every connection was refreshed once, and how many of them
/// before their token expired.
async fn backlog() {
    let dir = tempfile::tempdir().expect("temp dir");
    let start = OffsetDateTime::now_utc();
    let clock = Arc::new(ManualClock::new(start));
    let file = Arc::new(FileStore::open(dir.path()).expect("file store"));
    let log = Arc::new(CallLog::new(file, clock.clone()));
    let mut config = Config::new(StoreSpec::Aws);
    config.refresh_budget = Duration::from_secs(3 * 60);
    let identity_client =
        roomtoken::identity::OAuthClient::new(Duration::from_secs(10)).expect("client");
    let broker = Broker::new(log.clone(), Arc::new(identity_client), config)
        .with_clock(clock.clone())
        .with_sleeper(Arc::new(SimulatedSleeper(clock.clone())));
    let identity = fake_identity().await;
    seed(
        &broker,
        &identity,
        BACKLOG,
        start,
        Duration::from_secs(19 * 60),
    )
    .await;
    identity.set_latency(LATENCY);
    let expired_at = start + time::Duration::minutes(19);
    let mut refreshed_once = std::collections::HashSet::new();
    let mut in_time = 0;
    let mut pass_start = start;
    let mut passes = 0;
    while refreshed_once.len() < BACKLOG && passes < 40 {
        clock.advance((pass_start - clock.now()).try_into().unwrap_or_default());
        let started = Instant::now();
        let report = refresh_pass(&broker, &PassOptions::default(), clock.now())
            .await
            .expect("pass");
        passes += 1;
        let mut first_time = 0;
        for result in &report.results {
            if matches!(result.outcome, Outcome::Refreshed { .. })
                && refreshed_once.insert(result.id.clone())
            {
                first_time += 1;
                if pass_start < expired_at {
                    in_time += 1;
                }
            }
        }
        println!(
            "backlog pass {passes} at +{} min: refreshed {} ({first_time} for the first time), deferred {}, \
             {:.0} s of the pass budget used, wall {:.1} s",
            (pass_start - start).whole_minutes(),
            report.count(|o| matches!(o, Outcome::Refreshed { .. })),
            report.count(|o| matches!(o, Outcome::Deferred)),
            (clock.now() - pass_start).as_seconds_f64(),
            started.elapsed().as_secs_f64(),
        );
        pass_start += time::Duration::minutes(5);
    }
    println!(
        "backlog of {BACKLOG} connections due at once (write budget {} calls/s, pass budget 3 min): \
         every one refreshed once after {passes} passes ({} min); {in_time} before their token expired",
        broker.config.write_budget.unwrap_or(0),
        (passes - 1) * 5,
    );
}

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Arc::new(FileStore::open(dir.path()).expect("file store"));
    let config = Config::new(StoreSpec::File(dir.path().to_owned()));
    bench("file store", store, config).await;

    backlog().await;

    if std::env::var("AWS_ENDPOINT_URL").is_err() {
        eprintln!(
            "AWS_ENDPOINT_URL is not set: skipping Secrets Manager (run through scripts/with-services.sh)"
        );
        return;
    }
    let mut config = Config::new(StoreSpec::Aws);
    config.secret_prefix = format!("{}/", unique_id("bench"));
    // Unpaced: this measures the adapter against moto, not the budget.
    config.write_budget = None;
    let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let store = Arc::new(roomtoken::store::SecretsManagerStore::new(
        aws_sdk_secretsmanager::Client::new(&sdk),
        &config.secret_prefix,
    ));
    bench("Secrets Manager (moto)", store, config).await;
}

//! Issue 24, item 9: a provider whose access tokens live 3 minutes, over a
//! simulated day (see `roomtoken_tests::fleet`). Without a version quota
//! (the file store, with `serve`'s passes at the moment a token is due)
//! they are kept fresh. With Secrets Manager's (on moto, and on a file
//! store that counts versions as it does) the product's writes stay inside
//! the quota, so displays are refused part of the time, and the state says
//! so all day: `tokens_too_short`, never a silent `connected`. The consent
//! page, the status, the notification and the alarm are in
//! `notifications.rs`.

use roomtoken_tests::fleet::{Behaviour, FleetOptions, FleetStore, simulate};
use std::time::Duration;

const THREE_MINUTES: Duration = Duration::from_secs(180);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_day_of_three_minute_tokens_is_kept_fresh_on_the_file_store() {
    let options = FleetOptions {
        connections: [(Behaviour::Healthy, 3)].into(),
        token_lifetime: THREE_MINUTES,
        store: FleetStore::File,
        pass_every: Some(Duration::ZERO),
        ..FleetOptions::day(0)
    };
    let report = simulate(&options).await;
    eprintln!("{:?} {:?}", report.outcomes, report.states);
    assert!(report.healthy_reads > 1_000, "{}", report.healthy_reads);
    assert_eq!(report.healthy_reads_without_token, 0, "every read served");
    assert_eq!(report.reads_failed_with_a_valid_token, 0);
    // Refreshed at half their life: about 2 a lifetime.
    let lifetimes = 3 * 24 * 3_600 / THREE_MINUTES.as_secs() as usize;
    assert!(
        report.refreshes >= lifetimes && report.refreshes <= 3 * lifetimes,
        "{} refreshes",
        report.refreshes
    );
    assert_eq!(
        report.states.keys().collect::<Vec<_>>(),
        ["connected"],
        "{:?}",
        report.states
    );
}

async fn three_minute_tokens_need_a_human_where_versions_count(store: FleetStore) {
    let options = FleetOptions {
        connections: [(Behaviour::Healthy, 2)].into(),
        token_lifetime: THREE_MINUTES,
        store,
        ..FleetOptions::day(0)
    };
    let report = simulate(&options).await;
    eprintln!("{:?} {:?}", report.outcomes, report.states);
    assert_eq!(
        report.states.keys().collect::<Vec<_>>(),
        ["tokens_too_short"],
        "never a silent connected: {:?}",
        report.states
    );
    assert_eq!(report.reads_failed_with_a_valid_token, 0);
    assert!(
        report.healthy_reads_without_token > 0,
        "displays are refused part of the time, as the state says"
    );
    let (hourly, secret) = report.max_versions_per_hour_by_the_product();
    assert!(hourly <= 6, "{secret}: {hourly} versions in an hour");
    let (daily, secret) = report.max_versions_per_day_by_the_product();
    assert!(daily <= 72, "{secret}: {daily} versions in a day");
    assert!(report.outcomes.get("write_quota").copied().unwrap_or(0) > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(feature = "services"), ignore = "needs moto: scripts/test.sh")]
async fn three_minute_tokens_need_a_human_on_secrets_manager() {
    three_minute_tokens_need_a_human_where_versions_count(FleetStore::SecretsManager).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_minute_tokens_need_a_human_on_a_file_store_counting_versions() {
    three_minute_tokens_need_a_human_where_versions_count(FleetStore::FileCountingVersions).await;
}

//! What Secrets Manager limits and moto does not enforce, counted at the
//! store port over simulated days (see `roomtoken_tests::fleet`): new
//! versions per secret, write calls per refresh, write calls per second,
//! and no token lost while a backlog drains.

use roomtoken_tests::fleet::{Behaviour, Displays, FleetOptions, simulate};
use std::time::Duration;

/// A day of a fleet with a connection in every failure class and an
/// operator churning keys: the product's own writes stay within 6 versions
/// per secret in any hour, a refresh writes at most 4 calls, a pass never
/// sends more write calls in a second than the budget, and no display of a
/// working connection goes without a token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_day_in_every_failure_class_stays_inside_the_quotas() {
    let mut options = FleetOptions::day(2);
    options.key_churn_every_minutes = Some(10);
    let report = simulate(&options).await;
    eprintln!("{report:#?}", report = report.outcomes);

    let (versions, secret) = report.max_versions_per_hour_by_the_product();
    assert!(
        versions <= 6,
        "{secret} got {versions} new versions from the product in one hour"
    );
    let (daily, secret) = report.max_versions_per_day();
    assert!(daily <= 90, "{secret} got {daily} new versions in a day");
    assert!(
        report.refreshes >= 2 * 20,
        "healthy connections refreshed all day"
    );
    let (most, average) = report.write_calls_per_refresh();
    assert!(
        most <= 4,
        "a connection sent {most} write calls in one pass"
    );
    assert!(average <= 4.0, "{average} write calls per refresh");
    assert!(report.peak_pass_writes_per_second() <= 20);
    assert_eq!(report.reads_failed_with_a_valid_token, 0);
    assert_eq!(report.healthy_reads_without_token, 0);
    assert!(report.healthy_reads > 0);
    // Failing connections back off instead of trying on every pass.
    assert!(report.outcomes.get("backing_off").copied().unwrap_or(0) > 100);
    assert!(report.outcomes.get("skipped").copied().unwrap_or(0) > 100);
    // The churn ran into the day's room and was refused, not written.
    assert!(report.person_writes_refused > 0);
}

/// 120 connections all due at once, a write budget of 20 calls a second and
/// a pass budget of 10 seconds (50 refreshes): each pass refreshes what fits, most urgent
/// first, leaves the rest for the next, and no token expires meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_drains_under_the_write_budget_and_no_token_expires() {
    let options = FleetOptions {
        connections: [(Behaviour::Healthy, 120)].into(),
        displays_per_connection: 1,
        displays: Displays::EveryMinute,
        hours: 1,
        key_churn_every_minutes: None,
        pass_budget: Duration::from_secs(10),
        all_due_in: Some(Duration::from_secs(19 * 60)),
    };
    let report = simulate(&options).await;
    eprintln!("{:#?}", report.outcomes);
    assert!(
        report.outcomes.get("deferred").copied().unwrap_or(0) > 0,
        "the budget left some for the next pass"
    );
    assert!(report.refreshes >= 120, "the backlog drained");
    assert!(
        report.peak_pass_writes_per_second() <= 20,
        "{} write calls in one second",
        report.peak_pass_writes_per_second()
    );
    assert_eq!(report.healthy_reads_without_token, 0, "no token expired");
}

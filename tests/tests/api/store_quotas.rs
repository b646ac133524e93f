//! What Secrets Manager limits and moto does not enforce, counted at the
//! store port over simulated days (see `roomtoken_tests::fleet`): new
//! versions per secret, write calls per refresh, write calls per second,
//! and no token lost while a backlog drains.

use roomtoken::domain::ConnectionId;
use roomtoken::flows::refresh::{Outcome, PassOptions, refresh_pass};
use roomtoken_tests::fleet::{Behaviour, Displays, FleetOptions, simulate};
use roomtoken_tests::{Setup, StoreKind, on_both_stores};
use std::time::Duration;
use time::OffsetDateTime;

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
        displays: Displays::EveryMinute,
        hours: 1,
        pass_budget: Duration::from_secs(10),
        all_due_in: Some(Duration::from_secs(19 * 60)),
        ..FleetOptions::day(0)
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

/// Issue 24, item 7: a pass reads a connection's serve secret only when
/// something can have changed its answer. Not due: read once, then not
/// again; someone writes (a key): read again; its token falls due: read
/// and refreshed. Both stores list a change mark for free (Secrets
/// Manager: the current version id in ListSecrets).
async fn passes_read_what_changed_or_fell_due(kind: StoreKind) {
    let app = Setup::new(kind).isolated_prefix().spawn().await;
    let id = app.consented("survey").await;
    let connection = ConnectionId::parse(&id).expect("id");
    let serve_secret = format!("connections/{id}/serve");
    let record = app.serve(&id).await;
    let due_at = record
        .access
        .as_ref()
        .and_then(|a| a.due_at(&record.app.resources, app.broker.config.refresh_margin))
        .expect("due time");
    let start = app.broker.now();
    let reads = || app.store.gets_of(&serve_secret);
    let outcome_at = |at: OffsetDateTime| {
        let broker = app.broker.clone();
        let connection = connection.clone();
        async move {
            let report = refresh_pass(&broker, &PassOptions::default(), at)
                .await
                .expect("pass");
            let result = report.results.iter().find(|r| r.id == connection);
            result.expect("listed").outcome.clone()
        }
    };

    let before = reads();
    assert_eq!(outcome_at(start).await, Outcome::NotDue);
    assert_eq!(reads(), before + 1, "the first pass reads it");
    for minutes in [5, 10, 15] {
        let at = start + time::Duration::minutes(minutes);
        assert_eq!(outcome_at(at).await, Outcome::NotDue, "remembered");
    }
    assert_eq!(reads(), before + 1, "nothing changed: not read again");

    app.create_key(&id).await;
    let after_key = reads();
    let at = start + time::Duration::minutes(20);
    assert_eq!(outcome_at(at).await, Outcome::NotDue);
    assert_eq!(reads(), after_key + 1, "written since: read again");
    let at = start + time::Duration::minutes(25);
    assert_eq!(outcome_at(at).await, Outcome::NotDue);
    assert_eq!(reads(), after_key + 1);

    // Due: the remembered answer no longer holds (jitter only delays).
    let due = due_at + time::Duration::minutes(3);
    assert!(matches!(outcome_at(due).await, Outcome::Refreshed { .. }));
    assert!(reads() > after_key + 1, "read when due");
}

on_both_stores!(passes_read_what_changed_or_fell_due => passes_read_only_what_changed_or_fell_due_on_the_file_store, passes_read_only_what_changed_or_fell_due_on_secrets_manager);

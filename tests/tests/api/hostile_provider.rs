//! A token endpoint that misbehaves (a customer's own OAuth server may):
//! absurd lifetimes, absurd waits, absurd sizes. Each is contained to its
//! connection: the pass goes on, nothing panics, nothing is believed as is.

use roomtoken::domain::FailureClass;
use roomtoken::flows::refresh::{Outcome, PassOptions, refresh_pass};
use roomtoken_fake_identity::Fault;
use roomtoken_tests::{
    RecordingSleeper, Setup, StoreKind, TestApp, assert_no_secret_in, assert_no_secret_logged,
    on_both_stores, unique_id,
};
use std::sync::Arc;
use time::OffsetDateTime;

async fn connected() -> (TestApp, String) {
    let app = Setup::new(StoreKind::File)
        .sleeper(Arc::new(RecordingSleeper::default()))
        .spawn()
        .await;
    let id = app.consented("hostile").await;
    (app, id)
}

#[tokio::test]
async fn an_eternal_token_is_believed_for_a_day_at_most() {
    let (app, id) = connected().await;
    app.identity.inject(Fault::Raw {
        status: 200,
        body: r#"{"access_token":"eyJ.hostile.token","token_type":"Bearer","expires_in":18446744073709551615}"#.into(),
    });
    let outcome = app.refresh_one(&id, true, OffsetDateTime::now_utc()).await;
    assert!(matches!(outcome, Outcome::Refreshed { .. }), "{outcome:?}");
    let serve = app.serve(&id).await;
    let access = serve.access.expect("tokens");
    let latest = access
        .tokens
        .iter()
        .map(|t| t.expires_at)
        .max()
        .expect("a token");
    assert!(
        latest
            <= OffsetDateTime::now_utc() + time::Duration::hours(24) + time::Duration::minutes(1),
        "clamped to a day: {latest}"
    );
}

/// A wait longer than any pass is not waited (nor added to a time).
#[tokio::test]
async fn an_endless_retry_after_ends_the_attempt_not_the_pass() {
    let (app, id) = connected().await;
    app.identity.inject(Fault::TooManyRequests {
        retry_after_secs: u64::MAX,
    });
    let outcome = app.refresh_one(&id, true, OffsetDateTime::now_utc()).await;
    assert!(
        matches!(&outcome, Outcome::Failed(e) if e.class == FailureClass::Transient),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn an_oversized_answer_is_not_read() {
    let (app, id) = connected().await;
    app.identity.inject(Fault::Raw {
        status: 200,
        body: format!(
            r#"{{"access_token":"{}","token_type":"Bearer","expires_in":3600}}"#,
            "x".repeat(70_000)
        ),
    });
    let outcome = app.refresh_one(&id, true, OffsetDateTime::now_utc()).await;
    assert!(
        matches!(&outcome, Outcome::Failed(e) if e.class == FailureClass::OurBug && e.message.contains("larger than")),
        "{outcome:?}"
    );
    // The next pass, with an honest answer, is fine again.
    let outcome = app.refresh_one(&id, true, OffsetDateTime::now_utc()).await;
    assert!(matches!(outcome, Outcome::Refreshed { .. }), "{outcome:?}");
}

/// A token endpoint that hangs for one connection holds that connection
/// for one request timeout, not the pass: the others are refreshed, and
/// the pass ends long before the hang would.
#[tokio::test]
async fn a_hanging_answer_holds_one_connection_not_the_pass() {
    let app = Setup::new(StoreKind::File)
        .sleeper(Arc::new(RecordingSleeper::default()))
        .http_timeout(std::time::Duration::from_secs(1))
        .spawn()
        .await;
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(app.consented("hang").await);
    }
    app.identity
        .inject(Fault::Hang(std::time::Duration::from_secs(120)));
    let options = PassOptions {
        only: None,
        force: true,
    };
    let report = tokio::time::timeout(
        std::time::Duration::from_secs(30),
        refresh_pass(&app.broker, &options, OffsetDateTime::now_utc()),
    )
    .await
    .expect("the pass ends long before the hang would")
    .expect("pass");
    assert_eq!(report.results.len(), ids.len());
    assert_eq!(app.identity.counters().faults_served, 1, "one request hung");
    let refreshed = report.count(|o| matches!(o, Outcome::Refreshed { .. }));
    assert_eq!(
        refreshed,
        ids.len(),
        "the hung request timed out and was retried; the others went on: {:?}",
        report.results
    );
}

/// A token answer of the wrong shape: serde's own message would quote the
/// refused value, here a token; the failure names the field only, and
/// neither the outcome, the status nor any log line holds the token.
#[tokio::test]
async fn a_malformed_answer_is_refused_without_quoting_it() {
    let (app, id) = connected().await;
    let token = "eyJ0eXAi.malformed-answer-token.c2lnbmF0dXJl";
    app.identity.inject(Fault::Raw {
        status: 200,
        body: format!(
            r#"{{"access_token":"{token}","token_type":"Bearer","expires_in":"{token}"}}"#
        ),
    });
    let outcome = app.refresh_one(&id, true, OffsetDateTime::now_utc()).await;
    let Outcome::Failed(error) = &outcome else {
        panic!("refused: {outcome:?}");
    };
    assert!(error.message.contains("expires_in"), "{}", error.message);
    assert_no_secret_in(&format!("{outcome:?}"), "the outcome", &[token.to_owned()]);
    let (status, _) = app.status_json(&id).await;
    assert_no_secret_in(&status, "the status", &[token.to_owned()]);
    assert_no_secret_logged(&[token.to_owned()]);
}

/// A provider that takes 20 s to answer every token request, where API
/// Gateway gives the callback 30 s: the code is redeemed and the grant
/// stored at once; the second resource's first token, which would take 20
/// s more, is left to the refresh pass, and the page says so, in time.
/// Nothing is lost: the next pass mints it and a display reads it.
async fn a_provider_that_takes_20_s(kind: StoreKind) {
    let app = Setup::new(kind)
        .http_timeout(std::time::Duration::from_secs(30))
        .spawn()
        .await;
    let id = unique_id("slow");
    app.add_connection(&id).await;
    let key = app.create_key(&id).await;
    app.identity.set_latency(std::time::Duration::from_secs(20));
    let started = std::time::Instant::now();
    let consent = app.consent(&id).await;
    let took = started.elapsed();
    assert_eq!(consent.status, 200, "{}", consent.body);
    assert!(consent.body.contains("Connected as"), "{}", consent.body);
    assert!(
        consent.body.contains("Not yet available: graph"),
        "{}",
        consent.body
    );
    assert!(
        took < std::time::Duration::from_secs(30),
        "the page came after {took:?}: API Gateway would have cut it"
    );
    assert_eq!(
        app.identity.counters().refresh_token_grants,
        0,
        "no second 20 s request"
    );
    assert!(app.grant(&id).await.is_some(), "the grant is stored");
    let serve = app.serve(&id).await;
    let resources: Vec<String> = serve
        .access
        .expect("tokens")
        .tokens
        .iter()
        .map(|t| t.resource.clone())
        .collect();
    assert_eq!(resources, ["ews"]);

    app.identity.set_latency(std::time::Duration::ZERO);
    let outcome = app.refresh_one(&id, false, OffsetDateTime::now_utc()).await;
    assert!(matches!(outcome, Outcome::Refreshed { .. }), "{outcome:?}");
    let read = app.get_token(&id, Some(&key), Some("graph")).await;
    assert_eq!(read.status(), 200, "the pass minted what the callback left");
}

on_both_stores!(a_provider_that_takes_20_s => a_provider_that_takes_20_s_on_the_file_store, a_provider_that_takes_20_s_on_secrets_manager);

/// A provider slower than the callback's time: the redemption is given up
/// before API Gateway would cut the page, which says what happened;
/// nothing is stored and the connection is as it was.
#[tokio::test]
async fn a_provider_slower_than_the_callback_is_given_up_on() {
    let app = Setup::new(StoreKind::File)
        .http_timeout(std::time::Duration::from_secs(60))
        .spawn()
        .await;
    let id = unique_id("slower");
    app.add_connection(&id).await;
    app.identity.set_latency(std::time::Duration::from_secs(40));
    let started = std::time::Instant::now();
    let consent = app.consent(&id).await;
    let took = started.elapsed();
    assert_eq!(consent.status, 504, "{}", consent.body);
    assert!(
        consent.body.contains("Microsoft did not answer in time"),
        "{}",
        consent.body
    );
    assert!(
        consent.body.contains("Nothing was stored"),
        "{}",
        consent.body
    );
    assert!(took < std::time::Duration::from_secs(30), "{took:?}");
    assert!(app.grant(&id).await.is_none(), "nothing stored");
    let serve = app.serve(&id).await;
    assert!(serve.access.is_none());
    assert_eq!(
        serve.status.state,
        roomtoken::domain::ConnectionState::PendingConsent
    );
}

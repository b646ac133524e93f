//! A token endpoint that misbehaves (a customer's own OAuth server may):
//! absurd lifetimes, absurd waits, absurd sizes. Each is contained to its
//! connection: the pass goes on, nothing panics, nothing is believed as is.

use roomtoken::domain::FailureClass;
use roomtoken::flows::refresh::{Outcome, PassOptions, refresh_pass};
use roomtoken_fake_identity::Fault;
use roomtoken_tests::*;
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

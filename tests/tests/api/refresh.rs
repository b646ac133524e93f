//! The refresh pass against the fake identity platform: one test per failure
//! class, retries and backoff, nothing lost when the store fails, races with
//! new consents and with other passes, and the pinned account.

use roomtoken::domain::{ConnectionId, ConnectionState, FailureClass, ServeRecord, Writer};
use roomtoken::flows::admin;
use roomtoken::flows::refresh::{Outcome, PassOptions, ROTATION_WRITE_RETRIES, refresh_pass};
use roomtoken::store::Part;
use roomtoken_fake_identity::Fault;
use roomtoken_tests::failing_store::FailingStore;
use roomtoken_tests::{
    ACCOUNT, CLIENT_ID, OTHER_ACCOUNT, RecordingSleeper, Setup, StoreKind, TestApp,
    assert_no_secret_logged, booking_account, captured_logs, on_both_stores, spawn_app,
};
use std::sync::Arc;
use std::time::Duration;
use time::OffsetDateTime;

fn token_requests(app: &TestApp) -> u64 {
    app.identity.counters().token_requests
}

fn aadsts(status: u16, error: &str, code: u32) -> Fault {
    Fault::Aadsts {
        status,
        error: error.into(),
        code,
        suberror: None,
    }
}

/// An app on the file store whose retry waits are recorded, not spent,
/// with one consented connection.
async fn consented_with_waits(prefix: &str) -> (TestApp, Arc<RecordingSleeper>, String) {
    let sleeper = Arc::new(RecordingSleeper::default());
    let app = Setup::new(StoreKind::File)
        .sleeper(sleeper.clone())
        .spawn()
        .await;
    let id = app.consented(prefix).await;
    (app, sleeper, id)
}

/// A permanent class: one request, the state and error recorded, no retry,
/// and the next pass costs no token request until a human acts.
async fn permanent(fault: Fault, state: ConnectionState, class: FailureClass, code: &str) {
    let (app, sleeper, id) = consented_with_waits("permanent").await;
    app.identity.inject(fault);
    let before = token_requests(&app);
    let now = OffsetDateTime::now_utc();
    let outcome = app.refresh_one(&id, true, now).await;
    assert!(
        matches!(&outcome, Outcome::Failed(e) if e.class == class && e.code == code),
        "{outcome:?}"
    );
    assert_eq!(
        token_requests(&app) - before,
        1,
        "no retry for a permanent failure"
    );
    assert!(sleeper.waits().is_empty());
    let recorded = app.status(&id).await;
    assert_eq!(recorded.state, state);
    let error = recorded.last_error.unwrap();
    assert_eq!((error.class, error.code.as_str()), (class, code));
    assert!(
        error.trace_id.is_some() && error.correlation_id.is_some(),
        "kept for the admin"
    );
    assert_eq!(recorded.consecutive_failures, 1);

    let later = now + time::Duration::hours(2);
    assert_eq!(
        app.refresh_one(&id, false, later).await,
        Outcome::Skipped(state)
    );
    assert_eq!(
        token_requests(&app) - before,
        1,
        "a permanent state costs no token request"
    );
    let printed = app.cli(&["status", &id], "").await.unwrap();
    assert!(
        printed.contains(&state.to_string()) && printed.contains(code),
        "{printed}"
    );

    // --force makes one attempt, which now succeeds: back to connected.
    assert!(matches!(
        app.refresh_one(&id, true, later).await,
        Outcome::Refreshed { .. }
    ));
    assert_eq!(app.status(&id).await.state, ConnectionState::Connected);
    assert_no_secret_logged(&app.secrets(&[]));
}

#[tokio::test]
async fn an_idle_or_revoked_grant_needs_a_reconnect() {
    permanent(
        aadsts(400, "invalid_grant", 700082),
        ConnectionState::ReconnectRequired,
        FailureClass::ReconnectNeeded,
        "AADSTS700082",
    )
    .await;
}

#[tokio::test]
async fn an_expired_client_secret_is_an_app_misconfiguration() {
    permanent(
        aadsts(401, "invalid_client", 7000222),
        ConnectionState::AppMisconfigured,
        FailureClass::AppMisconfigured,
        "AADSTS7000222",
    )
    .await;
}

#[tokio::test]
async fn conditional_access_blocks_the_account() {
    permanent(
        aadsts(400, "invalid_grant", 53003),
        ConnectionState::Blocked,
        FailureClass::Blocked,
        "AADSTS53003",
    )
    .await;
}

#[tokio::test]
async fn throttling_is_retried_after_retry_after_and_the_valid_token_is_still_served() {
    let (app, sleeper, id) = consented_with_waits("throttled").await;
    let key = app.create_key(&id).await;
    let served = app
        .get_token(&id, Some(&key), None)
        .await
        .text()
        .await
        .unwrap();
    // 40 s: longer than the backoff alone would ever wait (at most 15 s
    // before the third attempt), so only a Retry-After read makes it.
    for _ in 0..3 {
        app.identity.inject(Fault::TooManyRequests {
            retry_after_secs: 40,
        });
    }
    let before = token_requests(&app);
    let outcome = app.refresh_one(&id, true, OffsetDateTime::now_utc()).await;
    assert!(
        matches!(&outcome, Outcome::Failed(e) if e.class == FailureClass::Transient && e.message.contains("HTTP 429")),
        "{outcome:?}"
    );
    assert_eq!(
        token_requests(&app) - before,
        3,
        "three attempts in one pass"
    );
    let waits = sleeper.waits();
    assert_eq!(waits.len(), 2);
    assert_eq!(waits, [Duration::from_secs(40); 2], "Retry-After honoured");
    let recorded = app.status(&id).await;
    assert_eq!(recorded.state, ConnectionState::Degraded);
    let still = app.get_token(&id, Some(&key), None).await;
    assert_eq!(
        still.status(),
        200,
        "the still-valid token is served while degraded"
    );
    assert_eq!(still.text().await.unwrap(), served);
    let refresh_token = app.grant(&id).await.unwrap().refresh_token;
    assert_eq!(
        Some(refresh_token.expose().to_owned()),
        app.identity.newest_refresh_token(CLIENT_ID, ACCOUNT),
        "a transient failure never drops the refresh token"
    );
    assert_no_secret_logged(&app.secrets(&[&key]));
    // A later pass, when the token is due, retries and recovers.
    let due = OffsetDateTime::now_utc() + time::Duration::minutes(45);
    assert!(matches!(
        app.refresh_one(&id, false, due).await,
        Outcome::Refreshed { .. }
    ));
    assert_eq!(app.status(&id).await.state, ConnectionState::Connected);
}

/// A `Retry-After` too long for the pass (15 minutes) is not waited in
/// it, and no later pass tries before it, although a token is still served
/// (which otherwise has every pass try).
#[tokio::test]
async fn a_long_retry_after_is_honoured_by_the_next_passes() {
    let (app, sleeper, id) = consented_with_waits("retry-after-long").await;
    let due = OffsetDateTime::now_utc() + time::Duration::minutes(44);
    app.identity.inject(Fault::TooManyRequests {
        retry_after_secs: 900,
    });
    let outcome = app.refresh_one(&id, false, due).await;
    assert!(
        matches!(&outcome, Outcome::Failed(e) if e.class == FailureClass::Transient),
        "{outcome:?}"
    );
    assert!(sleeper.waits().is_empty(), "not waited within the pass");
    let until = due + time::Duration::minutes(15);
    assert_eq!(app.status(&id).await.next_attempt_at, Some(until));
    let requests = token_requests(&app);
    let outcome = app
        .refresh_one(&id, false, due + time::Duration::minutes(5))
        .await;
    assert!(
        matches!(outcome, Outcome::BackingOff(at) if at == until),
        "{outcome:?}"
    );
    assert_eq!(token_requests(&app), requests, "no request before it");
    let outcome = app.refresh_one(&id, false, until).await;
    assert!(matches!(outcome, Outcome::Refreshed { .. }), "{outcome:?}");
}

/// `Retry-After` may be an HTTP-date (RFC 9110): it is waited for as
/// well; a value that is neither a number nor a date is ignored, and the
/// backoff alone decides.
#[tokio::test]
async fn retry_after_as_a_date_is_honoured_and_nonsense_is_ignored() {
    let (app, sleeper, id) = consented_with_waits("retry-after-date").await;
    let in_40_seconds =
        httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(40));
    app.identity.inject(Fault::TooManyRequestsWith {
        retry_after: in_40_seconds,
    });
    let outcome = app.refresh_one(&id, true, OffsetDateTime::now_utc()).await;
    assert!(matches!(outcome, Outcome::Refreshed { .. }), "{outcome:?}");
    let waits = sleeper.waits();
    assert_eq!(waits.len(), 1, "{waits:?}");
    assert!(
        (Duration::from_secs(38)..=Duration::from_secs(40)).contains(&waits[0]),
        "the date, not the backoff (at most 7.5 s): {waits:?}"
    );

    sleeper.clear();
    app.identity.inject(Fault::TooManyRequestsWith {
        retry_after: "soon, maybe".into(),
    });
    let later = OffsetDateTime::now_utc() + time::Duration::minutes(5);
    let outcome = app.refresh_one(&id, true, later).await;
    assert!(matches!(outcome, Outcome::Refreshed { .. }), "{outcome:?}");
    let waits = sleeper.waits();
    assert_eq!(waits.len(), 1, "retried all the same: {waits:?}");
    assert!(
        (Duration::from_secs(5)..=Duration::from_millis(7_500)).contains(&waits[0]),
        "the backoff alone: {waits:?}"
    );
    assert_no_secret_logged(&app.secrets(&[]));
}

#[tokio::test]
async fn a_server_error_is_retried_with_backoff_within_the_pass() {
    let (app, sleeper, id) = consented_with_waits("unavailable").await;
    app.identity.inject(Fault::ServerError { status: 503 });
    let before = token_requests(&app);
    let outcome = app.refresh_one(&id, true, OffsetDateTime::now_utc()).await;
    assert!(matches!(outcome, Outcome::Refreshed { .. }), "{outcome:?}");
    assert_eq!(
        token_requests(&app) - before,
        3,
        "one failed and retried, then the second resource"
    );
    let waits = sleeper.waits();
    assert_eq!(waits.len(), 1);
    assert!(
        (Duration::from_secs(5)..=Duration::from_millis(7_500)).contains(&waits[0]),
        "from 5 s, as Microsoft asks: {waits:?}"
    );
    assert_eq!(app.status(&id).await.state, ConnectionState::Connected);
    assert_no_secret_logged(&app.secrets(&[]));
}

/// Entra ID throttles a user's refresh with 400 AADSTS50196 (no
/// `Retry-After`), and a gateway in front of it answers 5xx or 429 with an
/// HTML page or nothing: each is transient, retried, and the pass succeeds.
#[tokio::test]
async fn loop_detection_and_gateway_pages_are_transient() {
    let faults = [
        Fault::RequestLoop,
        Fault::NotJson {
            status: 503,
            html: true,
        },
        Fault::NotJson {
            status: 502,
            html: false,
        },
        Fault::NotJson {
            status: 429,
            html: false,
        },
    ];
    let (app, sleeper, id) = consented_with_waits("gateway").await;
    for fault in faults {
        let label = format!("{fault:?}");
        app.identity.inject(fault);
        let waits_before = sleeper.waits().len();
        let outcome = app.refresh_one(&id, true, OffsetDateTime::now_utc()).await;
        assert!(
            matches!(outcome, Outcome::Refreshed { .. }),
            "{label}: {outcome:?}"
        );
        assert_eq!(
            sleeper.waits().len(),
            waits_before + 1,
            "{label}: one retry"
        );
        assert_eq!(app.identity.queued_faults(), 0, "{label} was served");
        assert_eq!(app.status(&id).await.state, ConnectionState::Connected);
    }
}

#[tokio::test]
async fn a_timeout_is_transient() {
    let sleeper = Arc::new(RecordingSleeper::default());
    let app = Setup::new(StoreKind::File)
        .sleeper(sleeper.clone())
        .http_timeout(Duration::from_millis(300))
        .spawn()
        .await;
    let id = app.consented("timeout").await;
    for _ in 0..3 {
        app.identity.inject(Fault::Hang(Duration::from_secs(2)));
    }
    let outcome = app.refresh_one(&id, true, OffsetDateTime::now_utc()).await;
    assert!(
        matches!(&outcome, Outcome::Failed(e) if e.class == FailureClass::Transient && e.code == "timeout"),
        "{outcome:?}"
    );
    assert_eq!(sleeper.waits().len(), 2);
    assert_eq!(app.status(&id).await.state, ConnectionState::Degraded);
    assert_no_secret_logged(&app.secrets(&[]));
}

#[tokio::test]
async fn a_request_we_should_never_send_fails_loudly_without_retry() {
    let (app, sleeper, id) = consented_with_waits("bug").await;
    app.identity.inject(aadsts(400, "invalid_scope", 70011));
    let before = token_requests(&app);
    let outcome = app.refresh_one(&id, true, OffsetDateTime::now_utc()).await;
    assert!(
        matches!(&outcome, Outcome::Failed(e) if e.class == FailureClass::OurBug),
        "{outcome:?}"
    );
    assert_eq!(token_requests(&app) - before, 1);
    assert!(sleeper.waits().is_empty());
    // The alarm's line: this connection's, at ERROR, from the refresh flow,
    // with the code (other tests' lines carry ERROR and AADSTS70011 too).
    let logs = captured_logs();
    let lines: Vec<&str> = logs
        .lines()
        .filter(|line| line.contains(&format!("connection={id} ")))
        .filter(|line| line.contains(" ERROR "))
        .collect();
    assert_eq!(
        lines.len(),
        1,
        "one error line for this connection: {lines:#?}"
    );
    let line = lines[0];
    assert!(
        // The refresh flow's module (or one of its files).
        line.contains(" ERROR roomtoken::flows::refresh")
            && line.contains("we should never send")
            && line.contains("code=AADSTS70011"),
        "{line}"
    );
    assert_no_secret_logged(&app.secrets(&[]));
}

/// The provider has handed out a new refresh token (and may refuse the old
/// one from now on): a store that fails for a moment does not lose it, the
/// write is tried again within the pass; a store down for longer leaves
/// the stored grant untouched, and the next pass recovers.
#[tokio::test]
async fn a_rotation_the_store_failed_to_save_is_saved_again_or_recovered() {
    let failing: Arc<std::sync::OnceLock<Arc<FailingStore>>> = Arc::default();
    let slot = failing.clone();
    let sleeper = Arc::new(RecordingSleeper::default());
    let app = Setup::new(StoreKind::File)
        .wrap_store(move |inner| {
            let store = Arc::new(FailingStore::new(inner));
            let _ = slot.set(store.clone());
            store
        })
        .sleeper(sleeper.clone())
        .spawn()
        .await;
    let id = app.consented("store-down").await;
    let newest = || app.identity.newest_refresh_token(CLIENT_ID, ACCOUNT);

    // One failed write: tried again at once, nothing lost.
    failing.get().unwrap().fail_puts("/grant", 0, 1);
    let now = OffsetDateTime::now_utc();
    let outcome = app.refresh_one(&id, true, now).await;
    assert!(matches!(outcome, Outcome::Refreshed { .. }), "{outcome:?}");
    let saved = app.grant(&id).await.unwrap();
    assert_eq!(Some(saved.refresh_token.expose().to_owned()), newest());
    assert_eq!(sleeper.waits(), [ROTATION_WRITE_RETRIES[0]]);

    // Down for longer than the retries: the stored grant is untouched.
    let before = app.grant(&id).await.unwrap();
    failing
        .get()
        .unwrap()
        .fail_puts("/grant", 0, ROTATION_WRITE_RETRIES.len() + 1);
    let later = now + time::Duration::minutes(5);
    let outcome = app.refresh_one(&id, true, later).await;
    assert!(matches!(outcome, Outcome::StoreFailed(_)), "{outcome:?}");
    let kept = app.grant(&id).await.unwrap();
    assert_eq!(
        kept.refresh_token, before.refresh_token,
        "the stored grant is untouched"
    );

    let outcome = app
        .refresh_one(&id, true, later + time::Duration::minutes(5))
        .await;
    assert!(matches!(outcome, Outcome::Refreshed { .. }), "{outcome:?}");
    let recovered = app.grant(&id).await.unwrap();
    assert_eq!(Some(recovered.refresh_token.expose().to_owned()), newest());
    assert_eq!(app.status(&id).await.state, ConnectionState::Connected);
    assert_no_secret_logged(&app.secrets(&[]));
}

/// No token request starts that could end after the pass's deadline (it
/// may take the whole HTTP timeout): with a budget shorter than that, a due
/// connection is left for the next pass without a request or a write.
#[tokio::test]
async fn no_request_starts_that_could_end_after_the_deadline() {
    let app = Setup::new(StoreKind::File)
        .with_config(|config| config.refresh_budget = Duration::from_secs(5))
        .http_timeout(Duration::from_secs(10))
        .spawn()
        .await;
    let id = app.consented("short-budget").await;
    let requests = token_requests(&app);
    let writes = app.store.calls().puts;
    let outcome = app.refresh_one(&id, true, OffsetDateTime::now_utc()).await;
    assert!(matches!(outcome, Outcome::Deferred), "{outcome:?}");
    assert_eq!(token_requests(&app), requests, "no request started");
    assert_eq!(app.store.calls().puts, writes, "nothing written");
}

/// The race forced one way: the pass has redeemed the refresh token and
/// is about to store the rotation when a new consent stores its grant.
/// The pass loses (compare-and-swap), the consent's grant is kept, and no
/// refresh token was redeemed twice.
#[tokio::test]
async fn a_new_consent_during_a_refresh_wins() {
    let failing: Arc<std::sync::OnceLock<Arc<FailingStore>>> = Arc::default();
    let slot = failing.clone();
    let app = Setup::new(StoreKind::File)
        .wrap_store(move |inner| {
            let store = Arc::new(FailingStore::new(inner));
            let _ = slot.set(store.clone());
            store
        })
        .spawn()
        .await;
    let id = app.consented("reconsent").await;
    let first = app.grant(&id).await.unwrap();
    // The consent pages read the broker's clock: a later consent is later.
    app.clock.advance(Duration::from_secs(1));
    let rotation = failing.get().unwrap().pause_next_put("/grant");
    let refreshing = {
        let (broker, id) = (app.broker.clone(), ConnectionId::parse(&id).unwrap());
        tokio::spawn(async move {
            let options = PassOptions {
                only: Some(id),
                force: true,
            };
            refresh_pass(&broker, &options, OffsetDateTime::now_utc()).await
        })
    };
    rotation.reached().await;
    let consent = app.consent(&id).await;
    assert_eq!(consent.status, 200, "{}", consent.body);
    rotation.release();
    let report = refreshing.await.expect("the pass").expect("pass");
    assert!(
        matches!(report.results[0].outcome, Outcome::LostRace),
        "{:?}",
        report.results[0].outcome
    );
    let kept = app.grant(&id).await.unwrap();
    assert!(
        kept.consented_at > first.consented_at,
        "the newer consent is kept"
    );
    assert!(matches!(
        app.refresh_one(&id, true, OffsetDateTime::now_utc()).await,
        Outcome::Refreshed { .. }
    ));
    assert_eq!(app.identity.counters().refresh_tokens_redeemed_twice, 0);
    assert_no_secret_logged(&app.secrets(&[]));
}

#[tokio::test]
async fn another_account_is_refused_until_the_operator_resets_the_connection() {
    let app = spawn_app(StoreKind::File).await;
    let id = app.consented("pinned").await;
    let pinned = app.grant(&id).await.unwrap();
    app.identity.set_auto_consent(Some(OTHER_ACCOUNT));
    let refused = app.consent(&id).await;
    assert_eq!(refused.status, 409);
    assert!(
        refused.body.contains(ACCOUNT) && refused.body.contains(OTHER_ACCOUNT),
        "{}",
        refused.body
    );
    assert_eq!(
        app.grant(&id).await.unwrap().refresh_token,
        pinned.refresh_token,
        "nothing stored"
    );

    app.cli(&["connection", "update", &id, "--reset-account"], "")
        .await
        .unwrap();
    assert_eq!(app.status(&id).await.state, ConnectionState::PendingConsent);
    let accepted = app.consent(&id).await;
    assert_eq!(accepted.status, 200, "{}", accepted.body);
    assert_eq!(app.grant(&id).await.unwrap().account.display, OTHER_ACCOUNT);
    assert_no_secret_logged(&app.secrets(&[]));
}

/// 20 passes per connection, spawned on four worker threads: one of them
/// refreshes each connection, the others see it busy (one broker claims a
/// connection before redeeming), and no refresh token is redeemed twice.
async fn concurrent_passes(kind: StoreKind) {
    let app = Arc::new(Setup::new(kind).extra_accounts(3).spawn().await);
    let mut ids = Vec::new();
    for n in 0..3 {
        app.identity.set_auto_consent(Some(&booking_account(n)));
        ids.push(app.consented("concurrent").await);
    }
    app.identity.set_latency(Duration::from_millis(100));
    let now = OffsetDateTime::now_utc();
    let tasks: Vec<_> = (0..20)
        .flat_map(|_| ids.iter().cloned())
        .map(|id| {
            let app = app.clone();
            tokio::spawn(async move {
                let outcome = app.refresh_one(&id, true, now).await;
                (id, outcome)
            })
        })
        .collect();
    let mut outcomes = Vec::new();
    for task in tasks {
        outcomes.push(task.await.expect("pass task"));
    }
    app.identity.set_latency(Duration::ZERO);
    for (n, id) in ids.iter().enumerate() {
        let mine: Vec<&Outcome> = outcomes
            .iter()
            .filter(|(of, _)| of == id)
            .map(|(_, o)| o)
            .collect();
        let refreshed = mine
            .iter()
            .filter(|o| matches!(o, Outcome::Refreshed { .. }))
            .count();
        assert_eq!(
            refreshed, 1,
            "exactly one of 20 passes refreshed {id}: {mine:?}"
        );
        assert!(mine.iter().all(|o| matches!(
            o,
            Outcome::Refreshed { .. } | Outcome::Busy | Outcome::LostRace
        )));
        let held = app.grant(id).await.unwrap();
        assert_eq!(
            Some(held.refresh_token.expose().to_owned()),
            app.identity
                .newest_refresh_token(CLIENT_ID, &booking_account(n)),
            "no lost update"
        );
    }
    assert_eq!(app.identity.counters().refresh_tokens_redeemed_twice, 0);
    assert_no_secret_logged(&app.secrets(&[]));
}

on_both_stores!(threads: concurrent_passes => twenty_concurrent_passes_redeem_each_refresh_token_once_on_the_file_store, twenty_concurrent_passes_redeem_each_refresh_token_once_on_secrets_manager);

async fn held_refresh_token(app: &TestApp, id: &str) -> String {
    let grant = app.grant(id).await.expect("a grant");
    grant.refresh_token.expose().to_owned()
}

/// Separate processes share no claim: four real `roomtoken refresh --force`
/// processes and this process's own pass all redeem the same refresh token
/// (the fake answers none of them before all five asked, so the race after
/// the answer always happens). The store's compare-and-swap lets exactly
/// one rotation in; the four others lose the race, say so, and keep
/// nothing. Entra leaves a redeemed refresh token valid, so the cost is
/// bounded: one extra redemption per lost race, and no update lost.
async fn separate_processes(kind: StoreKind) {
    const PROCESSES: usize = 4;
    let app = Setup::new(kind).isolated_prefix().spawn().await;
    let id = app.consented("processes").await;
    let first_rt = held_refresh_token(&app, &id).await;
    // Each pass asks for two resources; the first request of each is gated.
    app.identity.gate_refreshes(PROCESSES + 1);
    let binary = roomtoken_tests::lambda_runtime_api::function_binary("roomtoken");
    let children: Vec<_> = (0..PROCESSES)
        .map(|_| {
            tokio::process::Command::new(&binary)
                .args([
                    "--store",
                    &app.store_arg,
                    "--public-url",
                    app.url.as_str(),
                    "--secret-prefix",
                    app.secret_prefix(),
                    "refresh",
                    &id,
                    "--force",
                ])
                .env("RUST_LOG", "warn")
                .output()
        })
        .collect();
    let (ours, theirs) = tokio::join!(
        app.refresh_one(&id, true, OffsetDateTime::now_utc()),
        futures::future::join_all(children)
    );
    let mut outcomes = vec![format!("{ours:?}")];
    for output in theirs {
        let output = output.expect("roomtoken refresh ran");
        let printed = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success(),
            "{printed}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        outcomes.push(printed);
    }
    let won = |o: &String| o.contains("Refreshed") || o.contains("\trefreshed (");
    let lost = |o: &String| o.contains("LostRace") || o.contains("by another process");
    assert_eq!(
        outcomes.iter().filter(|o| won(o)).count(),
        1,
        "exactly one rotation stored: {outcomes:#?}"
    );
    assert_eq!(
        outcomes.iter().filter(|o| lost(o)).count(),
        PROCESSES,
        "the others took the conflict path: {outcomes:#?}"
    );
    let counters = app.identity.counters();
    assert_eq!(
        counters
            .refresh_tokens_used
            .iter()
            .filter(|rt| **rt == first_rt)
            .count(),
        PROCESSES + 1,
        "every process redeemed the token it read"
    );
    assert!(
        counters.refresh_tokens_redeemed_twice <= PROCESSES as u64,
        "one extra redemption per lost race at most: {}",
        counters.refresh_tokens_redeemed_twice
    );
    // What is held works, and is newer than what everyone started from.
    let held = held_refresh_token(&app, &id).await;
    assert_ne!(held, first_rt);
    assert!(matches!(
        app.refresh_one(&id, true, OffsetDateTime::now_utc()).await,
        Outcome::Refreshed { .. }
    ));
    assert_no_secret_logged(&app.secrets(&[]));
}

on_both_stores!(threads: separate_processes => separate_processes_lose_the_race_safely_on_the_file_store, separate_processes_lose_the_race_safely_on_secrets_manager);

/// Entra's access tokens live a random 60-90 minutes: after a permission
/// change, `refresh --force` must serve the new token even when it expires
/// sooner than the one it replaces.
#[tokio::test]
async fn a_forced_refresh_serves_the_newest_token_even_if_it_expires_sooner() {
    let app = spawn_app(StoreKind::File).await;
    app.identity
        .set_access_token_lifetime(Duration::from_secs(90 * 60));
    let (id, key) = app.connected("newest").await;
    let first: serde_json::Value = app
        .get_token(&id, Some(&key), None)
        .await
        .json()
        .await
        .unwrap();
    app.identity
        .set_access_token_lifetime(Duration::from_secs(60 * 60));
    let outcome = app.refresh_one(&id, true, OffsetDateTime::now_utc()).await;
    assert!(matches!(outcome, Outcome::Refreshed { .. }), "{outcome:?}");
    app.expire_read_cache();
    let second: serde_json::Value = app
        .get_token(&id, Some(&key), None)
        .await
        .json()
        .await
        .unwrap();
    assert_ne!(second["access_token"], first["access_token"]);
    assert!(
        second["expires_in"].as_u64() < first["expires_in"].as_u64(),
        "the newer token expires sooner, and is served: {first} {second}"
    );
}

/// A failing connection waits 5, then 10 minutes... between attempts,
/// across passes, without a token request or a write meanwhile.
#[tokio::test]
async fn a_failing_connection_backs_off_across_passes() {
    let (app, _, id) = consented_with_waits("backoff").await;
    let t0 = OffsetDateTime::now_utc();
    let minutes = |m: i64| t0 + time::Duration::minutes(m);
    let fail_next_attempt = || {
        for _ in 0..3 {
            app.identity.inject(Fault::ServerError { status: 503 });
        }
    };
    fail_next_attempt();
    let outcome = app.refresh_one(&id, true, t0).await;
    assert!(matches!(outcome, Outcome::Failed(_)), "{outcome:?}");
    assert_eq!(app.status(&id).await.next_attempt_at, Some(minutes(5)));

    let requests = token_requests(&app);
    let puts = app.store.calls().puts;
    assert_eq!(
        app.refresh_one(&id, false, minutes(2)).await,
        Outcome::BackingOff(minutes(5))
    );
    assert_eq!(
        app.refresh_one(&id, false, minutes(6)).await,
        Outcome::NotDue,
        "the backoff is over, and the token is not due yet"
    );
    assert_eq!(token_requests(&app), requests, "no request while waiting");
    assert_eq!(app.store.calls().puts, puts, "and no write");

    // Due, failing again while the token is still served (it expires an
    // hour after t0): the next pass tries again, not the doubled wait.
    fail_next_attempt();
    let outcome = app.refresh_one(&id, false, minutes(45)).await;
    assert!(matches!(outcome, Outcome::Failed(_)), "{outcome:?}");
    assert_eq!(app.status(&id).await.next_attempt_at, Some(minutes(50)));
    assert_eq!(
        app.refresh_one(&id, false, minutes(47)).await,
        Outcome::BackingOff(minutes(50))
    );
    // Once it has expired, the wait doubles again (a third failure: 20 min).
    fail_next_attempt();
    let outcome = app.refresh_one(&id, false, minutes(61)).await;
    assert!(matches!(outcome, Outcome::Failed(_)), "{outcome:?}");
    assert_eq!(app.status(&id).await.next_attempt_at, Some(minutes(81)));
    assert_eq!(
        app.refresh_one(&id, false, minutes(75)).await,
        Outcome::BackingOff(minutes(81))
    );
    let outcome = app.refresh_one(&id, false, minutes(82)).await;
    assert!(matches!(outcome, Outcome::Refreshed { .. }), "{outcome:?}");
    let status = app.status(&id).await;
    assert_eq!(status.state, ConnectionState::Connected);
    assert_eq!(status.next_attempt_at, None);
}

/// With no room left in a secret's version quota, a refresh redeems
/// nothing (a rotated refresh token it could not store would be lost) and
/// says until when.
#[tokio::test]
async fn no_room_in_the_version_quota_means_no_token_request() {
    let app = spawn_app(StoreKind::File).await;
    let id = app.consented("quota").await;
    let connection = ConnectionId::parse(&id).unwrap();
    // Whole seconds: the write log keeps Unix seconds.
    let t0 =
        OffsetDateTime::from_unix_timestamp(OffsetDateTime::now_utc().unix_timestamp()).unwrap();
    for _ in 0..6 {
        app.broker
            .repo
            .update::<ServeRecord, _>(&connection, Part::Serve, Writer::Product, t0, |r| r)
            .await
            .unwrap();
    }
    let requests = token_requests(&app);
    let outcome = app.refresh_one(&id, true, t0).await;
    assert_eq!(outcome, Outcome::WriteQuota(t0 + time::Duration::hours(1)));
    assert_eq!(token_requests(&app), requests, "nothing redeemed");
    let printed = app.cli(&["refresh", &id, "--force"], "").await;
    let printed = printed.unwrap_err();
    assert!(printed.contains("could not be refreshed"), "{printed}");

    let later = t0 + time::Duration::minutes(61);
    let outcome = app.refresh_one(&id, true, later).await;
    assert!(matches!(outcome, Outcome::Refreshed { .. }), "{outcome:?}");
}

/// People's changes to one secret are capped per day; the refusal says
/// why, until when, and how to batch.
#[tokio::test]
async fn the_cli_refuses_changes_beyond_the_days_room_and_says_how_to_batch() {
    let app = spawn_app(StoreKind::File).await;
    let id = app.consented("churn").await;
    let connection = ConnectionId::parse(&id).unwrap();
    let now = OffsetDateTime::now_utc();
    let mut made = 0;
    let refusal = loop {
        match admin::create_key(&app.broker, &connection, None, now).await {
            Ok(_) => made += 1,
            Err(e) => break e.to_string(),
        }
        assert!(made < 100, "never refused");
    };
    assert!(
        (40..50).contains(&made),
        "{made} keys before the day's room ran out"
    );
    assert!(refusal.contains("changed too often"), "{refusal}");
    assert!(refusal.contains("UTC"), "says when: {refusal}");
    let printed = app.cli(&["key", "create", &id], "").await.unwrap_err();
    assert!(printed.contains("--count"), "says how to batch: {printed}");
}

//! The bounded soak (issue 12, item 15): for `ROOMTOKEN_SOAK_SECS` of real
//! time (120 in the suite; `scripts/soak.sh` runs longer), displays read
//! tokens over HTTP at a steady rate while refresh passes run, device keys
//! churn, new connections are consented and one account now and then has
//! its password reset and is consented again; Secrets Manager (moto behind
//! a proxy) goes down or turns flaky, and the identity platform answers
//! refreshes with 429, 5xx or too late. The simulated time moves five
//! minutes per cycle, so a couple of minutes cover days of tokens.
//!
//! Checked: no read failed while a valid token existed (in the store when
//! the cycle began, and, while the store cannot be read, also served to the
//! display before: the read cache's stale-if-error), nothing is
//! lost (after every cycle each connection holds a refresh token the
//! provider issued; at the end every connection is connected, holds the
//! newest one and serves a valid token), and memory is flat. It is a binary
//! of its own so that the resident memory it measures is the soak's alone.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use roomtoken::clock::Clock;
use roomtoken::domain::ConnectionId;
use roomtoken::flows::admin;
use roomtoken::flows::read::{MIN_SERVE_VALIDITY, STALE_IF_ERROR};
use roomtoken::flows::refresh::{PassOptions, refresh_pass};
use roomtoken_fake_identity::{FaultTarget, GrantType};
use roomtoken_tests::{
    CLIENT_ID, TestApp, assert_no_secret_logged, behind_faulty_store, booking_account,
    captured_log_bytes, transient_fault,
};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use time::OffsetDateTime;
use tokio::sync::RwLock;

/// Connections consented before the soak starts.
const FIRST_CONNECTIONS: usize = 6;
/// Booking accounts the fake knows: one per connection, ever.
const ACCOUNTS: usize = 64;
/// Displays reading at once, each every `READ_EVERY`: 200 reads a second.
const READERS: usize = 4;
const READ_EVERY: Duration = Duration::from_millis(20);
/// Simulated time per cycle: a refresh pass's schedule.
const TICK: Duration = Duration::from_secs(300);
const RESOURCES: [&str; 2] = ["ews", "graph"];

/// A display: the connection it shows and its device key (never revoked).
#[derive(Clone)]
struct Display {
    id: String,
    key: String,
}

/// What the readers saw, tallied (never one record per read: the memory
/// it would take is what the soak measures).
#[derive(Default)]
struct Tally {
    reads: u64,
    served: u64,
    /// Refused reads, by status and `error`, that were allowed: no valid
    /// token existed, or the store was down and the display had none yet.
    allowed_failures: HashMap<String, u64>,
    /// Reads that failed while a valid token existed: must stay empty.
    violations: Vec<String>,
    /// (display, resource) → the last token served while the store was up:
    /// its expiry and when.
    last_served: HashMap<(usize, usize), (OffsetDateTime, OffsetDateTime)>,
}

/// What the controller knows of a cycle, for the readers' verdicts.
#[derive(Default)]
struct Cycle {
    number: usize,
    /// (display, resource) → whether the store held a servable token for a
    /// connection that serves tokens, at the cycle's (fixed) time.
    servable: HashMap<(usize, usize), bool>,
    /// The display whose account was reset and not yet consented again:
    /// its answers change mid-cycle by design.
    reset: Option<usize>,
}

struct Soak {
    app: TestApp,
    displays: RwLock<Vec<Display>>,
    /// Readers hold it while they read; the controller takes it to move
    /// the clocks, so a read never straddles two moments.
    cycle: RwLock<Cycle>,
    store_down: AtomicBool,
    tally: Mutex<Tally>,
    stop: AtomicBool,
}

fn soak_secs() -> u64 {
    std::env::var("ROOMTOKEN_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(120)
}

/// This process's resident memory, in KiB, less the log lines the harness
/// keeps for its leak checks (every read writes an audit line).
fn resident_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let resident: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS");
    resident.saturating_sub(captured_log_bytes() as u64 / 1024)
}

async fn reader(soak: Arc<Soak>, first: usize) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    let mut every = tokio::time::interval(READ_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut n = first;
    while !soak.stop.load(Ordering::Relaxed) {
        every.tick().await;
        let cycle = soak.cycle.read().await;
        let displays = soak.displays.read().await;
        let d = n % displays.len();
        let display = displays[d].clone();
        drop(displays);
        let r = (n / READERS) % RESOURCES.len();
        n += READERS;
        let now = soak.app.clock.now();
        let url = soak
            .app
            .url
            .join(&format!(
                "v1/connections/{}/token?resource={}",
                display.id, RESOURCES[r]
            ))
            .expect("url");
        let answer = client.get(url).bearer_auth(&display.key).send().await;
        let (status, body) = match answer {
            Ok(response) => {
                let status = response.status().as_u16();
                (
                    status,
                    response
                        .json::<serde_json::Value>()
                        .await
                        .unwrap_or_default(),
                )
            }
            Err(e) => (0, serde_json::json!({"error": format!("no answer: {e}")})),
        };
        let mut tally = soak.tally.lock().expect("tally");
        let store_down = soak.store_down.load(Ordering::Relaxed);
        tally.reads += 1;
        if status == 200 {
            tally.served += 1;
            // Served while the store was up: read from the store in this
            // cycle. (While it is down, the answer may come from a snapshot
            // read cycles ago, which is older than this moment says.)
            if !store_down {
                let expires_in = body["expires_in"].as_i64().unwrap_or_default();
                let expires_at = now + time::Duration::seconds(expires_in);
                tally.last_served.insert((d, r), (expires_at, now));
            }
            continue;
        }
        let reason = format!("{status} {}", body["error"].as_str().unwrap_or("-"));
        let in_store = cycle.servable.get(&(d, r)).copied().unwrap_or(false);
        // What the broker read from the store and served this display,
        // still valid, recently enough to be in its memory for the store's
        // outage (the read cache's stale-if-error counts from the read).
        let known = tally
            .last_served
            .get(&(d, r))
            .is_some_and(|(expires_at, at)| {
                *expires_at - MIN_SERVE_VALIDITY > now && now < *at + STALE_IF_ERROR
            });
        // A failure is allowed only for a reason: no valid token in the
        // store when the cycle began (the clock stands still within it), or
        // the store down and no token in the broker's memory to fall back
        // on, or an account reset by design.
        let why = if cycle.reset == Some(d) {
            "account reset"
        } else if !in_store {
            "no valid token in the store"
        } else if store_down && !known {
            "store down, nothing served before"
        } else {
            ""
        };
        if why.is_empty() {
            tally.violations.push(format!(
                "cycle {}: {} {} answered {reason} while a valid token existed (store {}): {body}",
                cycle.number,
                display.id,
                RESOURCES[r],
                if store_down { "down" } else { "up" }
            ));
        } else {
            *tally
                .allowed_failures
                .entry(format!("{reason} ({why})"))
                .or_default() += 1;
        }
    }
}

/// Whether each (display, resource) has a servable token in the store at
/// `now`, for a connection whose state serves tokens.
async fn servable_in_store(
    app: &TestApp,
    displays: &[Display],
    now: OffsetDateTime,
) -> HashMap<(usize, usize), bool> {
    let mut servable = HashMap::new();
    for (d, display) in displays.iter().enumerate() {
        let serve = app.serve(&display.id).await;
        for (r, resource) in RESOURCES.iter().enumerate() {
            let valid = serve.status.state.serves_tokens()
                && serve.access.as_ref().is_some_and(|access| {
                    access
                        .tokens
                        .iter()
                        .any(|t| t.resource == *resource && t.remaining(now) >= MIN_SERVE_VALIDITY)
                });
            servable.insert((d, r), valid);
        }
    }
    servable
}

/// A new connection for booking account `n`, consented through the link
/// (the operator's CLI, then the admin's browser); its display's key.
async fn consent_new(app: &TestApp, n: usize) -> Display {
    let id = format!("soak-{n}");
    app.add_connection(&id).await;
    app.identity.set_auto_consent(Some(&booking_account(n)));
    let consent = app.consent(&id).await;
    assert_eq!(consent.status, 200, "{}", consent.body);
    let key = app.create_key(&id).await;
    Display { id, key }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(feature = "services"), ignore = "needs moto: scripts/test.sh")]
async fn a_soak_loses_nothing_and_serves_every_valid_token() {
    let (proxy, app) = behind_faulty_store(ACCOUNTS).await;
    let mut displays = Vec::new();
    for n in 0..FIRST_CONNECTIONS {
        displays.push(consent_new(&app, n).await);
    }
    let seed: u64 = std::env::var("ROOMTOKEN_SOAK_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| rand::rng().random());
    let budget = Duration::from_secs(soak_secs());
    eprintln!("soak seed {seed} (ROOMTOKEN_SOAK_SEED replays), {budget:?}");
    let mut rng = StdRng::seed_from_u64(seed);
    let soak = Arc::new(Soak {
        app,
        displays: RwLock::new(displays),
        cycle: RwLock::default(),
        store_down: AtomicBool::new(false),
        tally: Mutex::default(),
        stop: AtomicBool::new(false),
    });
    let readers: Vec<_> = (0..READERS)
        .map(|first| tokio::spawn(reader(soak.clone(), first)))
        .collect();
    let app = &soak.app;
    let core = &app.broker;

    let started = Instant::now();
    let mut churn_keys: HashMap<String, String> = HashMap::new();
    let (mut cycles, mut store_faulted, mut churned, mut consents, mut resets) = (0, 0, 0, 0, 0);
    let mut checks = 0;
    let mut memory = Vec::new();
    // The display whose account was reset, and the cycle its admin opens
    // the link again.
    let mut reset: Option<(usize, usize)> = None;
    while started.elapsed() < budget {
        cycles += 1;
        // A password reset now and then: the grant stops (once a pass
        // finds out) until the link is opened again, up to an hour later.
        // Its display's answers change meanwhile, at any moment.
        if reset.is_none() && rng.random_bool(0.05) {
            let d = rng.random_range(0..FIRST_CONNECTIONS);
            app.identity.revoke_account(&booking_account(d));
            reset = Some((d, cycles + rng.random_range(1..12)));
            resets += 1;
        }
        let store_fault = rng.random_range(0..10);
        {
            // The clocks move and the faults change only while no read is
            // in flight: each read is judged by the moment it was made in.
            let mut cycle = soak.cycle.write().await;
            app.clock.advance(TICK);
            app.identity.advance_clock(TICK);
            let displays = soak.displays.read().await.clone();
            cycle.number = cycles;
            // The store is up here: what it holds is the truth.
            cycle.servable = servable_in_store(app, &displays, app.clock.now()).await;
            cycle.reset = reset.map(|(d, _)| d);
            match store_fault {
                0 => proxy.down(),
                1 => proxy.flaky(0.3),
                _ => {}
            }
            soak.store_down.store(store_fault < 2, Ordering::Relaxed);
        }
        store_faulted += usize::from(store_fault < 2);
        let now = app.clock.now();
        for _ in 0..rng.random_range(0..4) {
            app.identity.inject_for(
                FaultTarget::any().grant(GrantType::RefreshToken),
                transient_fault(&mut rng),
            );
        }

        // A pass (what token-refresh does every five minutes) and key churn,
        // while the displays read.
        let every = PassOptions::default();
        let pass = refresh_pass(core, &every, now);
        let churn_now = rng.random_bool(0.3);
        let churn = async {
            if !churn_now {
                return false;
            }
            let displays = soak.displays.read().await;
            let id = ConnectionId::parse(&displays[cycles % displays.len()].id).expect("id");
            drop(displays);
            let Ok(key) = admin::create_key(core, &id, None, now).await else {
                return false;
            };
            if let Some(old) = churn_keys.insert(id.to_string(), key.id.clone()) {
                let _ = admin::revoke_key(core, &id, &old, now).await;
            }
            true
        };
        let (_, churned_now) = tokio::join!(pass, churn);
        churned += usize::from(churned_now);

        // The store back up for the admins' browsers: a new connection
        // every ten cycles, and the reset account consented again.
        {
            let _cycle = soak.cycle.write().await;
            proxy.up();
            soak.store_down.store(false, Ordering::Relaxed);
        }
        if let Some((d, at)) = reset
            && cycles >= at
        {
            let id = soak.displays.read().await[d].id.clone();
            app.identity.set_auto_consent(Some(&booking_account(d)));
            let consent = app.consent(&id).await;
            assert_eq!(consent.status, 200, "{}", consent.body);
            reset = None;
        }
        let count = soak.displays.read().await.len();
        if cycles % 10 == 0 && count < ACCOUNTS {
            let display = consent_new(app, count).await;
            // Judged from now on by what its consent stored. The others keep
            // the truth of the cycle's start: a token stored since may wait
            // one cache TTL to be served, and the clock stands still until
            // the next cycle.
            let mut cycle = soak.cycle.write().await;
            let mut displays = soak.displays.write().await;
            let now = app.clock.now();
            let truth = servable_in_store(app, std::slice::from_ref(&display), now).await;
            for ((_, r), servable) in truth {
                cycle.servable.insert((displays.len(), r), servable);
            }
            displays.push(display);
            consents += 1;
        }

        // Nothing lost: every connection holds a refresh token the provider
        // issued (a grant is never dropped, whatever failed).
        let issued = app.identity.issued_secrets();
        for display in soak.displays.read().await.iter() {
            let grant = app.grant(&display.id).await.unwrap_or_else(|| {
                panic!(
                    "{} lost its grant (cycle {cycles}, seed {seed})",
                    display.id
                )
            });
            assert!(
                issued.iter().any(|s| s == grant.refresh_token.expose()),
                "{} holds a refresh token the provider never issued (cycle {cycles}, seed {seed})",
                display.id
            );
            checks += 1;
        }
        memory.push(resident_kib());
    }
    soak.stop.store(true, Ordering::Relaxed);
    for reader in readers {
        reader.await.expect("reader");
    }

    // The end: faults gone, the reset account consented again, two passes
    // reach every connection's backoff; all connected, holding the newest
    // refresh token, serving a valid token.
    proxy.up();
    app.identity.clear_faults();
    if let Some((d, _)) = reset {
        let id = soak.displays.read().await[d].id.clone();
        app.identity.set_auto_consent(Some(&booking_account(d)));
        let consent = app.consent(&id).await;
        assert_eq!(consent.status, 200, "{}", consent.body);
    }
    let mut now = app.clock.now();
    for _ in 0..3 {
        now += time::Duration::minutes(50);
        app.identity.advance_clock(Duration::from_secs(50 * 60));
        refresh_pass(core, &PassOptions::default(), now)
            .await
            .expect("a pass without faults");
    }
    // Hours past every cached snapshot, and the clock stands still while
    // the displays read: one each (moving it per display would age the
    // tokens of a long soak's 60 connections by an hour).
    app.clock.advance_to(now);
    let displays = soak.displays.read().await.clone();
    for (n, display) in displays.iter().enumerate() {
        let serve = app.serve(&display.id).await;
        assert!(
            serve.status.state.serves_tokens(),
            "{}: {:?}",
            display.id,
            serve.status
        );
        let grant = app.grant(&display.id).await.expect("a grant");
        assert_eq!(
            Some(grant.refresh_token.expose().to_owned()),
            app.identity
                .newest_refresh_token(CLIENT_ID, &booking_account(n)),
            "{} holds the newest refresh token (seed {seed})",
            display.id
        );
        app.assert_serves_valid_token(&display.id, &display.key, Some("graph"))
            .await;
    }

    let tally = soak.tally.lock().expect("tally");
    let counters = app.identity.counters();
    let quarter = memory.len() / 4;
    let early = memory[quarter..2 * quarter]
        .iter()
        .max()
        .copied()
        .unwrap_or_default();
    let late = memory[3 * quarter..]
        .iter()
        .max()
        .copied()
        .unwrap_or_default();
    eprintln!(
        "soak: {:?} real, {cycles} cycles ({:.1} simulated days), {} reads ({} served, {:.0}/s), \
         allowed failures {:?}, store faulted in {store_faulted} cycles, {} faults served, \
         {} token requests, {churned} key churns, {consents} consents, {resets} password resets, \
         {} nothing-lost checks, resident memory {} → {} KiB (2nd quarter max → 4th quarter max)",
        started.elapsed(),
        cycles as f64 * TICK.as_secs_f64() / 86_400.0,
        tally.reads,
        tally.served,
        tally.reads as f64 / started.elapsed().as_secs_f64(),
        tally.allowed_failures,
        counters.faults_served,
        counters.token_requests,
        checks,
        early,
        late,
    );
    assert!(
        tally.violations.is_empty(),
        "{} reads failed while a valid token existed (seed {seed}):\n{}",
        tally.violations.len(),
        tally
            .violations
            .iter()
            .take(20)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        cycles >= 20,
        "the soak ran {cycles} cycles: too few to prove anything"
    );
    assert!(tally.served > 1_000, "reads were served: {}", tally.served);
    assert!(
        store_faulted > 0 && counters.faults_served > 0,
        "faults were injected"
    );
    // Flat: the last quarter's peak within 10 % (and 8 MiB) of the second's.
    assert!(
        late <= early + early / 10 + 8 * 1024,
        "resident memory grew from {early} KiB to {late} KiB"
    );
    assert_no_secret_logged(&app.secrets(&[]));
}

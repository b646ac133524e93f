//! A flood from one client (made-up connection ids and made-up keys, 200
//! requests a second), while valid displays keep reading: how many of theirs
//! succeed, how fast, and how many store calls the flood cost (counted at
//! the store port: the target is none). Then the time of a refusal in each
//! of three cases, "made-up id", "made-up key on a real id" and "revoked
//! key", each measured twice, so that the difference between cases can be
//! compared with the difference between two runs of the same case. On
//! `roomtoken serve`'s code (the in-process server of the tests), the file
//! store, a release build.
//!
//! Run: `scripts/bench-flood.sh` (or `cargo bench -p roomtoken-tests --bench flood`).
//! Target: every valid read succeeds, p99 under 50 ms, 0 store calls.

use roomtoken::domain::ConnectionId;
use roomtoken::flows::admin;
use roomtoken_tests::{StoreKind, TestApp, TokenRead, spawn_app};
use std::time::{Duration, Instant};

const FLOOD_PER_SECOND: u64 = 200;
const DISPLAYS_PER_SECOND: u64 = 20;
const SECONDS: u64 = 20;
/// Requests per case and run in the timing of refusals.
const TIMED: usize = 3_000;

/// A made-up key of the current shape (16-hex id, 43-character tag).
fn made_up_key(n: u64) -> String {
    format!("rtk_{n:016x}_{}", "A".repeat(43))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let at = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(at).copied().unwrap_or_default()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let app = spawn_app(StoreKind::File).await;
    let (id, key) = app.connected("flood").await;
    let base = app.url.clone();
    let client = reqwest::Client::new();
    // The displays' connection is in the read cache before the flood.
    assert_eq!(app.read(TokenRead::new(&id).key(&key)).await.status(), 200);
    let calls_before = app.store.calls();

    let flood = {
        let (client, base, id) = (client.clone(), base.clone(), id.clone());
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(Duration::from_secs(1) / FLOOD_PER_SECOND as u32);
            let mut sent = Vec::new();
            for n in 0..FLOOD_PER_SECOND * SECONDS {
                ticks.tick().await;
                // Half made-up connections, half wrong keys on a real one.
                let (connection, key) = if n % 2 == 0 {
                    (format!("made-up-{n}"), made_up_key(n))
                } else {
                    (id.clone(), made_up_key(n))
                };
                let request = client
                    .get(
                        base.join(&format!("v1/connections/{connection}/token"))
                            .expect("url"),
                    )
                    .bearer_auth(key);
                sent.push(tokio::spawn(async move {
                    request
                        .send()
                        .await
                        .map(|r| r.status().as_u16())
                        .unwrap_or(0)
                }));
            }
            let mut statuses = Vec::new();
            for answer in sent {
                statuses.push(answer.await.unwrap_or(0));
            }
            statuses
        })
    };

    let mut ticks = tokio::time::interval(Duration::from_secs(1) / DISPLAYS_PER_SECOND as u32);
    let mut reads = Vec::new();
    for _ in 0..DISPLAYS_PER_SECOND * SECONDS {
        ticks.tick().await;
        let request = TokenRead::new(&id).key(&key);
        let started = Instant::now();
        let status = app.read(request).await.status().as_u16();
        reads.push((status, started.elapsed()));
    }
    let flood = flood.await.expect("flood");
    let store_calls = app.store.calls().total() - calls_before.total();

    let ok = reads.iter().filter(|(status, _)| *status == 200).count();
    let mut latencies: Vec<Duration> = reads.iter().map(|(_, t)| *t).collect();
    latencies.sort();
    let refused = flood.iter().filter(|s| **s == 401).count();
    println!(
        "== flood: {} requests from one client at {FLOOD_PER_SECOND}/s (made-up ids and wrong keys), {refused} answered 401, {} other",
        flood.len(),
        flood.len() - refused
    );
    println!(
        "   valid displays meanwhile: {ok}/{} reads succeeded ({:.2}%), p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        reads.len(),
        100.0 * ok as f64 / reads.len() as f64,
        percentile(&latencies, 0.50).as_secs_f64() * 1000.0,
        percentile(&latencies, 0.99).as_secs_f64() * 1000.0,
        latencies.last().copied().unwrap_or_default().as_secs_f64() * 1000.0,
    );
    println!(
        "   store calls meanwhile (flood and displays, counted at the store port): {store_calls}"
    );

    let timing = refusal_timing(&app, &id).await;
    if ok != reads.len() || store_calls != 0 || !timing {
        std::process::exit(1);
    }
}

/// Mean and 99th percentile of `TIMED` sequential requests.
async fn timed(client: &reqwest::Client, url: &reqwest::Url, key: &str) -> (Duration, Duration) {
    let mut times = Vec::with_capacity(TIMED);
    for _ in 0..TIMED {
        let started = Instant::now();
        let status = client
            .get(url.clone())
            .bearer_auth(key)
            .send()
            .await
            .map(|r| r.status().as_u16())
            .unwrap_or(0);
        times.push(started.elapsed());
        assert_eq!(status, 401, "every timed request is refused");
    }
    times.sort();
    let mean = times.iter().sum::<Duration>() / TIMED as u32;
    (mean, percentile(&times, 0.99))
}

/// The three refusals timed twice each, interleaved; prints every figure,
/// and whether the spread between cases is within the spread between runs.
/// Also counts the store calls: none for the two made-up cases.
async fn refusal_timing(app: &TestApp, id: &str) -> bool {
    let connection = ConnectionId::parse(id).expect("id");
    let revoked = admin::create_key(&app.broker, &connection, None, app.broker.now())
        .await
        .expect("a key");
    admin::revoke_key(&app.broker, &connection, &revoked.id, app.broker.now())
        .await
        .expect("revoked");
    app.expire_read_cache();
    let revoked = revoked.key.expose().to_owned();
    let client = reqwest::Client::new();
    let token_url = |connection: &str| {
        app.url
            .join(&format!("v1/connections/{connection}/token"))
            .expect("url")
    };
    let cases = [
        (
            "made-up id",
            token_url("made-up-connection"),
            made_up_key(1),
        ),
        ("made-up key on a real id", token_url(id), made_up_key(2)),
        ("revoked key", token_url(id), revoked),
    ];
    // Warm-up: connections open, the revoked key's connection read once.
    for (_, url, key) in &cases {
        for _ in 0..200 {
            let _ = client.get(url.clone()).bearer_auth(key).send().await;
        }
    }
    let before = app.store.calls();
    let mut figures = vec![Vec::new(); cases.len()];
    for _run in 0..2 {
        for (n, (_, url, key)) in cases.iter().enumerate() {
            figures[n].push(timed(&client, url, key).await);
        }
    }
    let store_calls = app.store.calls().total() - before.total();
    let us = |d: Duration| d.as_secs_f64() * 1_000_000.0;
    println!("== refusals, {TIMED} sequential requests per case and run (keep-alive, one client):");
    for ((name, _, _), runs) in cases.iter().zip(&figures) {
        println!(
            "   {name:<26} run 1: mean {:>6.1} us, p99 {:>6.1} us | run 2: mean {:>6.1} us, p99 {:>6.1} us",
            us(runs[0].0),
            us(runs[0].1),
            us(runs[1].0),
            us(runs[1].1),
        );
    }
    let spread = |values: Vec<Duration>| {
        let max = values.iter().max().copied().unwrap_or_default();
        let min = values.iter().min().copied().unwrap_or_default();
        max - min
    };
    let noise_mean = figures
        .iter()
        .map(|runs| spread(vec![runs[0].0, runs[1].0]))
        .max()
        .unwrap_or_default();
    let between_mean = spread(
        figures
            .iter()
            .map(|runs| (runs[0].0 + runs[1].0) / 2)
            .collect(),
    );
    let noise_p99 = figures
        .iter()
        .map(|runs| spread(vec![runs[0].1, runs[1].1]))
        .max()
        .unwrap_or_default();
    let between_p99 = spread(
        figures
            .iter()
            .map(|runs| (runs[0].1 + runs[1].1) / 2)
            .collect(),
    );
    println!(
        "   spread between cases (of the two runs' average): mean {:.1} us, p99 {:.1} us; \
         between two runs of one case, at most: mean {:.1} us, p99 {:.1} us",
        us(between_mean),
        us(between_p99),
        us(noise_mean),
        us(noise_p99),
    );
    println!("   store calls during the timed refusals: {store_calls}");
    store_calls == 0
}

//! A flood from one client at the token route's limit (made-up connection
//! ids and wrong keys, 200 requests a second, as the template lets
//! through), while valid displays keep reading: how many of theirs succeed,
//! and how fast. On `roomtoken serve`'s code (the in-process server of the
//! tests), the file store, a release build.
//!
//! Run: `scripts/bench-flood.sh` (or `cargo bench -p roomtoken-tests --bench flood`).
//! Target: every valid read succeeds, p99 under 50 ms.

use roomtoken_tests::{StoreKind, TokenRead, spawn_app};
use std::time::{Duration, Instant};

const FLOOD_PER_SECOND: u64 = 200;
const DISPLAYS_PER_SECOND: u64 = 20;
const SECONDS: u64 = 20;

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

    let flood = {
        let (client, base, id) = (client.clone(), base.clone(), id.clone());
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(Duration::from_secs(1) / FLOOD_PER_SECOND as u32);
            let mut sent = Vec::new();
            for n in 0..FLOOD_PER_SECOND * SECONDS {
                ticks.tick().await;
                // Half made-up connections, half wrong keys on a real one.
                let (connection, key) = if n % 2 == 0 {
                    (
                        format!("made-up-{n}"),
                        format!("rtk_{:010x}_{}", n, "A".repeat(43)),
                    )
                } else {
                    (id.clone(), format!("rtk_{:010x}_{}", n, "B".repeat(43)))
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
    if ok != reads.len() {
        std::process::exit(1);
    }
}

//! Cold start of the token-read Lambda function: the release binary started
//! against a local stand-in for the Lambda Runtime API, from process start to
//! the first answered invocation (a display's token request, API Gateway
//! HTTP API event), and the process's peak memory (VmHWM). Repeated a few
//! times; prints min, median and max.
//!
//! Then, in one warm process, what an invocation costs when it is junk (a
//! made-up connection id, a made-up key on a real one) next to a valid read:
//! the time from the function taking the event from the Runtime API
//! stand-in to its answer (what Lambda bills), which bounds what one
//! execution environment absorbs per second.
//!
//! Run: `scripts/bench-cold-start.sh` (builds the release binary first).

use roomtoken::domain::{
    AccessToken, AccessTokens, AppRegistration, Cloud, ConnectionId, DeviceKey, DeviceKeySigner,
    Provider, Resource, Secret, ServeRecord, Status, Writer,
};
use roomtoken::store::{FileStore, Part, Repository};
use roomtoken_tests::lambda_runtime_api::{FunctionProcess, RuntimeApi};
use serde_json::json;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use time::OffsetDateTime;

const RUNS: usize = 7;
/// Warm invocations per case.
const WARM: usize = 2_000;

fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn event(id: &str, key: &str) -> serde_json::Value {
    let path = format!("/v1/connections/{id}/token");
    json!({
        "version": "2.0",
        "routeKey": "GET /v1/connections/{id}/token",
        "rawPath": path,
        "rawQueryString": "resource=graph",
        "headers": {"authorization": format!("Bearer {key}"), "host": "tokens.example.com"},
        "queryStringParameters": {"resource": "graph"},
        "pathParameters": {"id": id},
        "requestContext": {
            "accountId": "123456789012", "apiId": "bench", "domainName": "tokens.example.com",
            "domainPrefix": "tokens", "requestId": "bench", "routeKey": "GET /v1/connections/{id}/token",
            "stage": "$default", "time": "28/Nov/2026:12:00:00 +0000", "timeEpoch": 1_795_900_000_000u64,
            "http": {"method": "GET", "path": path, "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1", "userAgent": "display"}
        },
        "isBase64Encoded": false
    })
}

#[tokio::main]
async fn main() {
    let binary = std::env::var_os("ROOMTOKEN_TOKEN_READ_BINARY")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../target/release/token-read"
            ))
        });
    assert!(
        binary.exists(),
        "{} is missing: run scripts/bench-cold-start.sh",
        binary.display()
    );
    let size = std::fs::metadata(&binary).map(|m| m.len()).unwrap_or(0);

    let dir = tempfile::tempdir().expect("temp dir");
    let repo = Repository::new(Arc::new(FileStore::open(dir.path()).expect("store")));
    let id = ConnectionId::parse("cold").expect("id");
    let now = OffsetDateTime::now_utc();
    // The device-key secret as the stack makes it, and a key made with it.
    let device_secret = "bench".repeat(13);
    repo.store()
        .put("system/device-key", &device_secret, None)
        .await
        .expect("device-key secret");
    let signer = DeviceKeySigner::from_stored(&Secret::new(device_secret));
    let mut serve_keys = roomtoken::domain::DeviceKeys::default();
    let key_ids = serve_keys
        .issue(1, Some("bench".into()), now)
        .expect("a serial");
    let key = DeviceKey::for_id(&signer, id.as_str(), &key_ids[0]);
    let app = AppRegistration::new(
        id.clone(),
        Provider::microsoft("contoso.onmicrosoft.com", Cloud::Global).expect("provider"),
        "6a7b8c9d-0e1f-4a2b-9c3d-4e5f6a7b8c9d",
        Resource::presets("graph", Cloud::Global).expect("graph"),
        now,
    )
    .expect("app");
    let mut serve = ServeRecord::new(app);
    serve.keys = serve_keys;
    serve.access = Some(AccessTokens {
        account: "booking@contoso.com".into(),
        resources: vec!["graph".into()],
        tokens: vec![AccessToken {
            resource: "graph".into(),
            access_token: Secret::new("bench-access-token"),
            token_type: "Bearer".into(),
            scope: "https://graph.microsoft.com/Calendars.ReadWrite".into(),
            expires_at: now + time::Duration::hours(1),
            obtained_at: now,
        }],
    });
    serve.status = Status::connected("booking@contoso.com", now);
    repo.write(&id, Part::Serve, &mut serve, None, Writer::Person, now)
        .await
        .expect("serve secret");

    let store = format!("file:{}", dir.path().display());
    let mut cold = Vec::new();
    let mut peaks = Vec::new();
    for _ in 0..RUNS {
        let api = RuntimeApi::start().await.expect("runtime api");
        let mut function =
            FunctionProcess::spawn(&binary, &api, "token-read", &[("ROOMTOKEN_STORE", &store)])
                .expect("spawn token-read");
        let completion = function
            .invoke(
                &api,
                &event("cold", key.key.expose()),
                Duration::from_secs(10),
            )
            .await
            .expect("an answer");
        let answer = completion.outcome.response_json().expect("a response");
        assert_eq!(answer["statusCode"], 200, "{answer}");
        cold.push(completion.completed_at - function.spawned_at);
        peaks.push(function.pid().and_then(peak_rss_kib).unwrap_or(0));
        function.stop().await;
    }
    cold.sort();
    peaks.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1_000.0;
    println!(
        "token-read cold start over {RUNS} runs ({}, {:.1} MB): process start to first answered invocation \
         min {:.1} ms, median {:.1} ms, max {:.1} ms; peak memory (VmHWM) median {:.1} MB, max {:.1} MB",
        binary.display(),
        size as f64 / 1_000_000.0,
        ms(cold[0]),
        ms(cold[RUNS / 2]),
        ms(cold[RUNS - 1]),
        peaks[RUNS / 2] as f64 / 1_024.0,
        peaks[RUNS - 1] as f64 / 1_024.0,
    );

    let api = RuntimeApi::start().await.expect("runtime api");
    let mut function =
        FunctionProcess::spawn(&binary, &api, "token-read", &[("ROOMTOKEN_STORE", &store)])
            .expect("spawn token-read");
    let made_up = format!("rtk_{}_{}", "0".repeat(16), "A".repeat(43));
    let cases = [
        ("made-up id", event("made-up", &made_up), 401),
        ("made-up key on a real id", event("cold", &made_up), 401),
        ("valid key (cached)", event("cold", key.key.expose()), 200),
    ];
    for (name, event, status) in &cases {
        let mut times = Vec::with_capacity(WARM);
        for _ in 0..WARM {
            let completion = function
                .invoke(&api, event, Duration::from_secs(10))
                .await
                .expect("an answer");
            let answer = completion.outcome.response_json().expect("a response");
            assert_eq!(answer["statusCode"], *status, "{name}: {answer}");
            // From the function taking the event to its answer: what
            // Lambda bills as the invocation's duration.
            let taken = completion.fetched_at.unwrap_or(completion.queued_at);
            times.push(completion.completed_at - taken);
        }
        times.sort();
        let mean = times.iter().sum::<Duration>() / WARM as u32;
        println!(
            "warm token-read, {name}: {WARM} invocations through the Runtime API stand-in, \
             mean {:.3} ms, median {:.3} ms, p99 {:.3} ms (one environment: about {:.0} a second)",
            ms(mean),
            ms(times[WARM / 2]),
            ms(times[WARM * 99 / 100]),
            1.0 / mean.as_secs_f64(),
        );
    }
    function.stop().await;
}

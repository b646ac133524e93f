//! `scripts/smoke-aws.sh`, what an operator runs right after `sam deploy`,
//! run here against moto by endpoint, with the broker's HTTP server
//! standing for the deployed API (issue 24, item 8): every step passes and
//! nothing is left behind; against an API that answers 500 it stops at the
//! step that failed, says so, and still removes its connection.

use roomtoken_tests::lambda_runtime_api::function_binary;
use roomtoken_tests::template::workspace_root;
use roomtoken_tests::{Setup, StoreKind, TestApp};

async fn smoke(app: &TestApp, public_url: &str) -> (bool, String) {
    let output = tokio::process::Command::new("bash")
        .arg(workspace_root().join("scripts/smoke-aws.sh"))
        .env("ROOMTOKEN_BIN", function_binary("roomtoken"))
        .env("ROOMTOKEN_PUBLIC_URL", public_url)
        .env("ROOMTOKEN_SECRET_PREFIX", app.secret_prefix())
        .env("RUST_LOG", "warn")
        .env_remove("SMOKE_REFRESH_FUNCTION")
        .output()
        .await
        .expect("run the smoke script");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

async fn connections(app: &TestApp) -> Vec<String> {
    app.broker
        .repo
        .connection_ids()
        .await
        .expect("list")
        .into_iter()
        .map(|id| id.to_string())
        .collect()
}

#[tokio::test]
#[cfg_attr(not(feature = "services"), ignore = "needs moto: scripts/test.sh")]
async fn the_smoke_test_passes_against_the_stack_and_leaves_nothing() {
    let app = Setup::new(StoreKind::SecretsManager)
        .isolated_prefix()
        .spawn()
        .await;
    let (ok, output) = smoke(&app, app.url.as_str()).await;
    assert!(ok, "{output}");
    for step in [
        "1. adding the throwaway connection smoke-",
        "2. a made-up connection id is answered 401",
        "3. a device key reads its connection through token-read (503 pending_consent)",
        "4. a refresh pass runs and reports",
        "waiting for consent",
        "5. the key is revoked",
        "6. the connection is removed",
        "smoke test passed",
    ] {
        assert!(output.contains(step), "{step}: {output}");
    }
    assert!(connections(&app).await.is_empty(), "nothing left behind");
}

#[tokio::test]
#[cfg_attr(not(feature = "services"), ignore = "needs moto: scripts/test.sh")]
async fn the_smoke_test_stops_at_the_failing_step_and_cleans_up() {
    let app = Setup::new(StoreKind::SecretsManager)
        .isolated_prefix()
        .spawn()
        .await;
    let broken = axum::Router::new().fallback(|| async {
        (
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            "Internal Server Error",
        )
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, broken).await });
    let (ok, output) = smoke(&app, &url).await;
    assert!(!ok, "{output}");
    assert!(
        output.contains("FAILED at step 2: expected 401, got: 500"),
        "{output}"
    );
    assert!(connections(&app).await.is_empty(), "its connection removed");
}

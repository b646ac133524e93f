//! The real function binaries run as Lambda runs them, against a local
//! stand-in for the Lambda Runtime API (`roomtoken_tests::lambda_runtime_api`).

use roomtoken_tests::lambda_runtime_api::{
    FunctionProcess, InvocationOutcome, RuntimeApi, function_binary,
};
use roomtoken_tests::template::Template;
use roomtoken_tests::{
    Setup, StoreKind, TestApp, assert_no_secret_in, on_both_stores, tcp_proxy, unique_id,
};
use serde_json::{Value, json};
use std::time::Duration;

const FUNCTION_NAME: &str = "rt-test-token-refresh";
const ANSWER_WITHIN: Duration = Duration::from_secs(60);

async fn stored_refresh_token(app: &TestApp, id: &str) -> String {
    let grant = app.grant(id).await.expect("a grant");
    grant.refresh_token.expose().to_owned()
}

/// The AWS settings of the suite (moto's endpoint and test credentials),
/// for a function process, which inherits nothing.
fn aws_env() -> Vec<(&'static str, String)> {
    [
        "AWS_ENDPOINT_URL",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
    ]
    .into_iter()
    .filter_map(|name| Some((name, std::env::var(name).ok()?)))
    .collect()
}

/// The scheduler's event, exactly as the template sends it, makes the real
/// token-refresh binary run a pass that refreshes a due connection, answer
/// a PassSummary, and print the pass's metrics in embedded metric format.
async fn token_refresh_pass(kind: StoreKind) {
    // Its own prefix: the pass sees this test's connection only.
    let app = Setup::new(kind).isolated_prefix().spawn().await;
    let id = unique_id("lambda");
    app.add_connection(&id).await;
    let consent = app.consent(&id).await;
    assert_eq!(consent.status, 200, "{}", consent.body);
    // Ten minutes left of an hour: due.
    app.age_tokens(&id, std::time::Duration::from_secs(50 * 60))
        .await;
    let refresh_token_before = stored_refresh_token(&app, &id).await;
    let grants_before = app.identity.counters().refresh_token_grants;

    let input: Value = serde_json::from_str(Template::load().schedule_input()).unwrap();
    let api = RuntimeApi::start().await.unwrap();
    let aws = aws_env();
    let mut env = vec![
        ("ROOMTOKEN_STORE", app.store_arg()),
        ("ROOMTOKEN_SECRET_PREFIX", app.secret_prefix()),
        // The most verbose level the template offers: still no secret in
        // the output (the SDK's request bodies hold them).
        ("AWS_LAMBDA_LOG_LEVEL", "TRACE"),
    ];
    env.extend(aws.iter().map(|(name, value)| (*name, value.as_str())));
    let mut function =
        FunctionProcess::spawn(&function_binary("token-refresh"), &api, FUNCTION_NAME, &env)
            .unwrap();
    let done = function.invoke(&api, &input, ANSWER_WITHIN).await;
    // A second event the function must refuse (RefreshRequest denies
    // unknown fields), answered through the error route.
    let refused = function
        .invoke(
            &api,
            &json!({"detail-type": "Scheduled Event"}),
            ANSWER_WITHIN,
        )
        .await;
    let output = function.stop().await;
    let done = done
        .unwrap_or_else(|e| panic!("{e}\nstderr: {}\nstdout: {}", output.stderr, output.stdout));

    let summary = done.outcome.response_json().unwrap();
    assert_eq!(summary["connections"], 1, "{summary}");
    assert_eq!(summary["refreshed"], 1, "{summary}");
    assert_eq!(summary["failed"], 0, "{summary}");
    assert_eq!(summary["states"], json!({"connected": 1}), "{summary}");
    assert!(
        done.fetched_at
            .is_some_and(|at| at >= done.queued_at && at <= done.completed_at)
    );

    // The pass really went to the identity platform and rotated the grant.
    assert_eq!(
        app.identity.counters().refresh_token_grants,
        grants_before + 2,
        "one refresh per resource (EWS and Graph)"
    );
    assert_ne!(stored_refresh_token(&app, &id).await, refresh_token_before);

    let metrics: Vec<Value> = output
        .json_lines()
        .into_iter()
        .filter(|line| line.get("_aws").is_some())
        .collect();
    assert_eq!(
        metrics.len(),
        14,
        "one EMF document per dimension set:\n{}",
        output.stdout
    );
    let notifications = metrics.last().expect("the notifications document");
    assert_eq!(notifications["NotificationsDelivered"], 0, "no webhook set");
    assert_eq!(metrics[0]["FunctionName"], FUNCTION_NAME);
    assert_eq!(metrics[0]["Refreshed"], 1);
    assert_eq!(metrics[0]["Failed"], 0);
    assert_eq!(
        metrics[0]["_aws"]["CloudWatchMetrics"][0]["Namespace"],
        "roomtoken"
    );
    let connected = metrics
        .iter()
        .find(|m| m["State"] == "connected")
        .expect("Connections per State");
    assert_eq!(connected["Connections"], 1);
    // Logs are JSON lines too (AWS_LAMBDA_LOG_FORMAT=JSON).
    assert!(
        output
            .json_lines()
            .iter()
            .any(|line| line["fields"]["message"] == "refresh pass done"),
        "{}",
        output.stdout
    );
    let printed = format!("{}\n{}", output.stdout, output.stderr);
    assert_no_secret_in(&printed, "the function's output", &app.secrets(&[]));

    match refused.expect("an answer to the refused event").outcome {
        InvocationOutcome::Error { body, .. } => {
            let body = String::from_utf8_lossy(&body);
            assert!(body.contains("detail-type"), "{body}");
        }
        other => panic!("an unknown field must be refused, got {other}"),
    }
}

on_both_stores!(token_refresh_pass => token_refresh_runs_the_schedules_pass_on_the_file_store, token_refresh_runs_the_schedules_pass_on_secrets_manager);

/// A function that cannot start fails the invocation at once instead of
/// leaving the test waiting.
#[tokio::test]
async fn a_function_that_cannot_start_fails_the_invocation() {
    let api = RuntimeApi::start().await.unwrap();
    let mut function = FunctionProcess::spawn(
        &function_binary("token-refresh"),
        &api,
        FUNCTION_NAME,
        &[("ROOMTOKEN_STORE", "s3://nowhere")],
    )
    .unwrap();
    let result = function.invoke(&api, &json!({}), ANSWER_WITHIN).await;
    let output = function.stop().await;
    let error = result.expect_err("no pass without a store");
    assert!(error.contains("exited"), "{error}");
    assert!(
        output.stderr.contains("s3://nowhere' is not understood"),
        "the reason is printed:\n{}\n{}",
        output.stderr,
        output.stdout
    );
}

/// Secrets Manager that hangs (connections accepted, never answered): the
/// real token-refresh gives up after the client's timeouts, long before
/// its own 240 s, answers the pass as failed, and prints its metrics all
/// the same (one store failure, for the alarm).
#[tokio::test]
#[cfg_attr(not(feature = "services"), ignore = "needs moto: scripts/test.sh")]
async fn a_pass_against_a_store_that_hangs_ends_and_prints_its_metrics() {
    let proxy = tcp_proxy::TcpProxy::before_moto().await;
    proxy.hang();
    let input: Value = serde_json::from_str(Template::load().schedule_input()).unwrap();
    let api = RuntimeApi::start().await.unwrap();
    let endpoint = proxy.url();
    let env = [
        ("ROOMTOKEN_STORE", "aws"),
        ("ROOMTOKEN_SECRET_PREFIX", "hangs/"),
        ("AWS_ENDPOINT_URL", endpoint.as_str()),
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
    ];
    let mut function =
        FunctionProcess::spawn(&function_binary("token-refresh"), &api, FUNCTION_NAME, &env)
            .unwrap();
    let done = function.invoke(&api, &input, ANSWER_WITHIN).await;
    let output = function.stop().await;
    let done = done
        .unwrap_or_else(|e| panic!("{e}\nstderr: {}\nstdout: {}", output.stderr, output.stdout));
    assert!(
        matches!(done.outcome, InvocationOutcome::Error { .. }),
        "{:?}",
        done.outcome
    );
    let metrics: Vec<Value> = output
        .stdout
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|line| line.get("_aws").is_some())
        .collect();
    assert!(
        metrics.iter().any(|m| m["StoreFailed"] == 1),
        "no StoreFailed metric in: {}",
        output.stdout
    );
}

//! Schema-driven fuzzing of the HTTP API (issue 12, item 14): schemathesis,
//! a published tool installed by `scripts/tools.sh`, reads `/openapi.json`
//! from a running broker (`serve_on`, what `roomtoken serve` runs) and sends
//! what the document allows and what it forbids. Every response must be no
//! server error and must match the document (status, headers, content type,
//! body), and the broker must still serve a valid token afterwards.

use roomtoken_tests::{
    StoreKind, TestApp, assert_no_secret_logged, on_both_stores, spawn_app, unique_id,
};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The schemathesis executable `scripts/tools.sh` installed. The suite
/// fails, never skips, without it.
fn schemathesis() -> PathBuf {
    let path = std::env::var("ROOMTOKEN_TEST_SCHEMATHESIS").unwrap_or_default();
    assert!(
        !path.is_empty(),
        "ROOMTOKEN_TEST_SCHEMATHESIS is not set: run the suite with scripts/test.sh, \
         which installs schemathesis"
    );
    PathBuf::from(path)
}

/// What one run was answered, counted.
#[derive(Debug, Default)]
struct Answers {
    statuses: BTreeMap<u16, usize>,
    /// The `error` of each 503.
    unavailable: BTreeMap<String, usize>,
}

/// One schemathesis run against `app` with `key`; `fixed_id` pins the
/// connection id (so the key matches and the token paths are reached),
/// otherwise ids are generated too. Returns what was answered, from the
/// run's HAR report.
async fn fuzz(app: &TestApp, key: &str, fixed_id: Option<&str>, report: &Path) -> Answers {
    let har = report.join("requests.har");
    // The configuration file, always explicit (schemathesis would otherwise
    // look for one in the working directory). 503 is the contract for "no
    // token can be served now" (the README's error replies; declared with its
    // Retry-After and body, which the conformance checks hold it to), so it
    // is no server error; any other 5xx is.
    let mut config_text = String::from(
        "[checks.not_a_server_error]\nexpected-statuses = [\"2xx\", \"3xx\", \"4xx\", \"503\"]\n",
    );
    if let Some(id) = fixed_id {
        config_text.push_str(&format!("\n[parameters]\n\"path.id\" = \"{id}\"\n"));
    }
    let config = report.join("schemathesis.toml");
    std::fs::write(&config, config_text).expect("write schemathesis.toml");
    let mut command = tokio::process::Command::new(schemathesis());
    command
        .arg("--config-file")
        .arg(&config)
        .arg("run")
        .arg(format!("{}openapi.json", app.url))
        .args(["--url", app.url.as_str().trim_end_matches('/')])
        .args(["--header", &format!("Authorization: Bearer {key}")])
        // Every check schemathesis has that applies to a read-only API.
        .args(["--checks", "all"])
        .args(["--max-examples", "200"])
        .args(["--workers", "2"])
        .args(["--generation-database", "none"])
        .args(["--request-timeout", "10"])
        .args(["--report", "har"])
        .arg("--report-har-path")
        .arg(&har)
        .args(["--no-color", "--output-truncate", "false"])
        .current_dir(report)
        .kill_on_drop(true);
    let output = command.output().await.expect("run schemathesis");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "schemathesis found failures ({}):\n{stdout}\n{stderr}",
        output.status
    );
    let har: Value = serde_json::from_slice(&std::fs::read(&har).expect("the HAR report"))
        .expect("the HAR report is JSON");
    let mut answers = Answers::default();
    for entry in har["log"]["entries"].as_array().expect("HAR entries") {
        let response = &entry["response"];
        let status = response["status"].as_u64().expect("a status") as u16;
        *answers.statuses.entry(status).or_default() += 1;
        if status == 503 {
            let body: Value =
                serde_json::from_str(response["content"]["text"].as_str().unwrap_or(""))
                    .expect("a 503 has a JSON body");
            let reason = body["error"].as_str().unwrap_or("").to_owned();
            *answers.unavailable.entry(reason).or_default() += 1;
        }
    }
    answers
}

async fn fuzzing_finds_nothing(kind: StoreKind) {
    let app = spawn_app(kind).await;
    let (id, key) = app.connected("fuzz").await;
    let report = tempfile::tempdir().expect("temp dir");

    // A connection the admin has not consented yet: no token to serve.
    let pending = unique_id("fuzz-pending");
    app.add_connection(&pending).await;
    let pending_key = app.create_key(&pending).await;

    let any_id = fuzz(&app, &key, None, report.path()).await;
    let this_id = fuzz(&app, &key, Some(&id), report.path()).await;
    let not_connected = fuzz(&app, &pending_key, Some(&pending), report.path()).await;

    // No server error anywhere; 503 only for the reason each connection
    // has: the connected one's token is valid and the store up, so only a
    // min_validity longer than the token has left.
    for (answers, reason) in [
        (&any_id, "insufficient_validity"),
        (&this_id, "insufficient_validity"),
        (&not_connected, "no_valid_token"),
    ] {
        let server_errors = answers.statuses.keys().filter(|s| **s >= 500 && **s != 503);
        assert_eq!(server_errors.count(), 0, "{answers:?}");
        assert!(
            answers.unavailable.keys().all(|r| r == reason),
            "{answers:?}"
        );
    }
    // The runs reached more than the doors: generated ids meet 401, and
    // the pinned ids get tokens, the document's refusals, and 503.
    let reached = |answers: &Answers, status: u16| answers.statuses.contains_key(&status);
    assert!(reached(&any_id, 401), "{any_id:?}");
    assert!(reached(&this_id, 200), "{this_id:?}");
    assert!(reached(&this_id, 400), "{this_id:?}");
    assert!(reached(&not_connected, 503), "{not_connected:?}");
    eprintln!(
        "schemathesis: generated ids {any_id:?}, connected id {this_id:?}, \
         not connected {not_connected:?}"
    );

    // Still serving: the same key gets a token the identity platform honours.
    app.assert_serves_valid_token(&id, &key, None).await;
    assert_no_secret_logged(&app.secrets(&[&key]));
}

on_both_stores!(services: fuzzing_finds_nothing => fuzzing_finds_nothing_on_file, fuzzing_finds_nothing_on_secrets_manager);

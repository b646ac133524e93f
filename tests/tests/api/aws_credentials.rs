//! The operator's CLI takes AWS credentials from every source the AWS CLI
//! does (issue 24, item 3): a profile whose `credential_process` prints
//! static keys drives `connection add`, `key create` and `status` against
//! moto, the built binary run as an operator runs it. The Lambda functions
//! keep their small build (no SSO client in their dependency graph).

use roomtoken_tests::lambda_runtime_api::function_binary;
use roomtoken_tests::{CLIENT_ID, Setup, StoreKind, TENANT, TestApp, unique_id};
use std::os::unix::fs::PermissionsExt;

/// Runs the built `roomtoken` with only the profile to find credentials in.
async fn roomtoken_with_profile(
    app: &TestApp,
    home: &std::path::Path,
    args: &[&str],
    stdin: &str,
) -> (bool, String, String) {
    use tokio::io::AsyncWriteExt;
    let mut command = tokio::process::Command::new(function_binary("roomtoken"));
    command
        .args(["--store", "aws", "--secret-prefix", app.secret_prefix()])
        .args(args)
        .env("RUST_LOG", "warn")
        .env("AWS_PROFILE", "roomtoken-ops")
        .env("AWS_CONFIG_FILE", home.join("config"))
        .env("AWS_SHARED_CREDENTIALS_FILE", home.join("no-credentials"))
        .env("AWS_EC2_METADATA_DISABLED", "true")
        // The region comes from the profile; keys from nowhere else.
        .env_remove("AWS_REGION")
        .env_remove("AWS_DEFAULT_REGION")
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env_remove("AWS_SESSION_TOKEN")
        .env_remove("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI")
        .env_remove("AWS_CONTAINER_CREDENTIALS_FULL_URI")
        .env_remove("AWS_WEB_IDENTITY_TOKEN_FILE")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = command.spawn().expect("run roomtoken");
    if let Some(mut input) = child.stdin.take() {
        input.write_all(stdin.as_bytes()).await.expect("stdin");
    }
    let output = child.wait_with_output().await.expect("roomtoken ends");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// A profile `roomtoken-ops` in `home/config` whose `credential_process` is
/// a shell script of `body`.
fn profile_with_credential_process(home: &std::path::Path, body: &str) {
    let script = home.join("credentials.sh");
    std::fs::write(&script, format!("#!/bin/sh\n{body}")).unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::write(
        home.join("config"),
        format!(
            "[profile roomtoken-ops]\nregion = us-east-1\ncredential_process = {}\n",
            script.display()
        ),
    )
    .unwrap();
}

#[tokio::test]
#[cfg_attr(not(feature = "services"), ignore = "needs moto: scripts/test.sh")]
async fn a_credential_process_profile_drives_the_cli_against_moto() {
    let app = Setup::new(StoreKind::SecretsManager)
        .isolated_prefix()
        .spawn()
        .await;
    assert!(
        std::env::var("AWS_ENDPOINT_URL").is_ok(),
        "moto's endpoint comes from the test services"
    );
    let home = tempfile::tempdir().unwrap();
    let calls = home.path().join("calls");
    profile_with_credential_process(
        home.path(),
        &format!(
            "echo called >> '{}'\nprintf '%s' '{{\"Version\": 1, \"AccessKeyId\": \"AKIAROOMTOKENPROCESS\", \"SecretAccessKey\": \"from-the-credential-process\"}}'\n",
            calls.display()
        ),
    );

    let id = unique_id("sso-operator");
    let authority = app.identity.base_url().to_string();
    let (ok, _, stderr) = roomtoken_with_profile(
        &app,
        home.path(),
        &[
            "connection",
            "add",
            &id,
            "--tenant",
            TENANT,
            "--client-id",
            CLIENT_ID,
            "--authority",
            &authority,
            "--client-secret-stdin",
            "--resources",
            "graph",
        ],
        &app.client_secret,
    )
    .await;
    assert!(ok, "connection add: {stderr}");
    let (ok, key, stderr) =
        roomtoken_with_profile(&app, home.path(), &["key", "create", &id], "").await;
    assert!(ok, "key create: {stderr}");
    let key = key.trim().to_owned();
    assert!(key.starts_with("rtk_"), "{key}");
    let (_, status, stderr) =
        roomtoken_with_profile(&app, home.path(), &["status", &id, "--json"], "").await;
    assert!(
        status.contains(&id) && status.contains("pending_consent"),
        "{status}{stderr}"
    );

    let called = std::fs::read_to_string(&calls).unwrap_or_default();
    assert_eq!(
        called.lines().count(),
        3,
        "one credential process per command"
    );
    // What the CLI wrote is in the store the broker reads: the key is one of
    // this connection's (not connected yet: 503, not 401).
    let read = app.get_token(&id, Some(&key), None).await;
    assert_eq!(read.status(), 503);
}

/// A profile whose `credential_process` fails (as an expired session's
/// helper does): the CLI says it has no usable AWS credentials and how to
/// get them, not that the store is unavailable.
#[tokio::test]
#[cfg_attr(not(feature = "services"), ignore = "needs moto: scripts/test.sh")]
async fn a_failing_credential_process_is_named_not_taken_for_an_outage() {
    let app = Setup::new(StoreKind::SecretsManager)
        .isolated_prefix()
        .spawn()
        .await;
    let home = tempfile::tempdir().unwrap();
    profile_with_credential_process(home.path(), "echo 'the session has expired' >&2\nexit 1\n");
    let (ok, _, stderr) = roomtoken_with_profile(&app, home.path(), &["status"], "").await;
    assert!(!ok);
    assert!(stderr.contains("no usable AWS credentials"), "{stderr}");
    assert!(stderr.contains("aws sso login"), "{stderr}");
    assert!(!stderr.contains("unavailable"), "{stderr}");
}

/// `cargo tree`: the SSO and `aws login` clients are in the CLI's graph and
/// in none of the four functions'.
#[test]
fn the_lambda_functions_keep_their_small_build() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let has = |package: &str, dependency: &str| {
        std::process::Command::new(&cargo)
            .args([
                "tree",
                "--offline",
                "--locked",
                "-e",
                "normal",
                "-p",
                package,
                "-i",
                dependency,
            ])
            .current_dir(roomtoken_tests::template::workspace_root())
            .output()
            .expect("cargo tree")
            .status
            .success()
    };
    assert!(has("roomtoken-cli", "aws-sdk-sso"));
    assert!(has("roomtoken-cli", "aws-sdk-ssooidc"));
    assert!(has("roomtoken-cli", "aws-sdk-signin"));
    for function in [
        "connect-start",
        "connect-callback",
        "token-read",
        "token-refresh",
    ] {
        assert!(
            !has(function, "aws-sdk-sso"),
            "{function} builds the SSO client"
        );
        assert!(
            !has(function, "aws-sdk-signin"),
            "{function} builds the login client"
        );
    }
}

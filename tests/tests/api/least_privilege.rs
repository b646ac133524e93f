//! The IAM rules of `infra/template.yaml`, so that a change cannot widen them
//! silently: each function's role allows exactly the actions on exactly the
//! secrets its code uses, and nothing has `*` except where AWS offers no
//! narrower form.

use roomtoken_tests::template::{FUNCTIONS, Permission, Template};
use std::collections::BTreeSet;

const GET: &str = "secretsmanager:GetSecretValue";
const PUT: &str = "secretsmanager:PutSecretValue";
const STAGE: &str = "secretsmanager:UpdateSecretVersionStage";
const CREATE: &str = "secretsmanager:CreateSecret";
const XRAY: [&str; 2] = ["xray:PutTraceSegments", "xray:PutTelemetryRecords"];

/// Actions that AWS authorizes only on `*`.
const STAR_ONLY_ACTIONS: [&str; 3] = [
    "secretsmanager:ListSecrets",
    "xray:PutTraceSegments",
    "xray:PutTelemetryRecords",
];

/// Where a secret lives: the system's (`signing-key`, `vendor-app`) or a
/// connection's (`grant`, `serve`).
fn path(part: &str) -> String {
    match part {
        "signing-key" | "vendor-app" | "webhook-secret" | "edge-origin" | "device-key" => {
            format!("system/{part}")
        }
        _ => format!("connections/*/{part}"),
    }
}

fn secret(part: &str) -> String {
    format!("secret:{}", path(part))
}

/// What every function's role must allow besides its secrets: its own log
/// group, KMS when a key is given, X-Ray when tracing is on.
fn common(log_group: &str, kms_actions: &[&str]) -> Vec<String> {
    let mut expected = vec![
        format!("logs:CreateLogStream @ arn-of:{log_group}"),
        format!("logs:PutLogEvents @ arn-of:{log_group}"),
    ];
    for action in kms_actions {
        expected.push(format!("[HasKmsKey] {action} @ ref:KmsKeyArn"));
    }
    for action in XRAY {
        expected.push(format!("[TracingEnabled] {action} @ *"));
    }
    expected
}

/// Behind the per-source limit's CloudFront only, each internet-facing
/// function reads the origin header's value.
fn edge_origin_read() -> String {
    format!("[HasPerSourceLimit] {GET} @ {}", secret("edge-origin"))
}

fn grants(actions: &[&str], parts: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    for action in actions {
        for part in parts {
            out.push(format!("{action} @ {}", secret(part)));
        }
    }
    out
}

fn role_of(template: &Template, function: &str) -> Vec<Permission> {
    template.role_permissions(template.function_role(function))
}

fn assert_exactly(template: &Template, function: &str, expected: Vec<String>) {
    let actual: BTreeSet<String> = role_of(template, function)
        .iter()
        .map(Permission::key)
        .collect();
    let expected: BTreeSet<String> = expected.into_iter().collect();
    let extra: Vec<_> = actual.difference(&expected).collect();
    let missing: Vec<_> = expected.difference(&actual).collect();
    assert!(
        extra.is_empty() && missing.is_empty(),
        "{function}'s role differs from what its code needs.\n  allowed but not expected: {extra:#?}\n  expected but not allowed: {missing:#?}"
    );
}

/// Every action on a connection secret also names its bare name, which only
/// a name that does not exist matches: on AWS an unknown or removed
/// connection then answers "not found", as on moto, instead of AccessDenied.
fn on_secrets(actions: &[&str], parts: &[&str]) -> Vec<String> {
    let mut out = grants(actions, parts);
    for action in actions {
        out.extend(
            parts
                .iter()
                .filter(|part| **part != "signing-key")
                .map(|part| format!("{action} @ name:{}", path(part))),
        );
    }
    out
}

fn reads(parts: &[&str]) -> Vec<String> {
    on_secrets(&[GET], parts)
}

#[test]
fn token_read_reads_only_the_serve_secret() {
    let template = Template::load();
    let mut expected = common("TokenReadLogGroup", &["kms:Decrypt"]);
    expected.extend(reads(&["serve"]));
    // The key that checks device keys (made by the stack: no bare name).
    expected.push(format!("{GET} @ {}", secret("device-key")));
    expected.push(edge_origin_read());
    assert_exactly(&template, "TokenReadFunction", expected);

    for permission in role_of(&template, "TokenReadFunction") {
        for never in ["grant", "signing-key"] {
            assert!(
                !permission.resource.ends_with(&format!("/{never}")),
                "the internet-facing token-read names a {never} secret: {}",
                permission.key()
            );
        }
        let service = permission.action.split(':').next().unwrap_or_default();
        assert!(
            permission.action == GET || ["logs", "kms", "xray"].contains(&service),
            "token-read may not write or list secrets: {}",
            permission.key()
        );
        assert_ne!(
            permission.action, "kms:GenerateDataKey",
            "token-read encrypts nothing"
        );
    }
}

#[test]
fn connect_start_reads_the_serve_secret_and_the_signing_key() {
    let template = Template::load();
    let mut expected = common("ConnectStartLogGroup", &["kms:Decrypt"]);
    expected.extend(reads(&["serve", "signing-key"]));
    expected.push(edge_origin_read());
    assert_exactly(&template, "ConnectStartFunction", expected);
}

#[test]
fn connect_callback_reads_and_replaces_both_connection_secrets() {
    let template = Template::load();
    let mut expected = common(
        "ConnectCallbackLogGroup",
        &["kms:Decrypt", "kms:GenerateDataKey"],
    );
    expected.extend(reads(&["grant", "serve", "signing-key", "vendor-app"]));
    expected.extend(on_secrets(&[PUT, STAGE], &["grant", "serve"]));
    expected.push(edge_origin_read());
    assert_exactly(&template, "ConnectCallbackFunction", expected);
}

#[test]
fn token_refresh_lists_connections_and_replaces_both_connection_secrets() {
    let template = Template::load();
    let mut expected = common(
        "TokenRefreshLogGroup",
        &["kms:Decrypt", "kms:GenerateDataKey"],
    );
    expected.push("secretsmanager:ListSecrets @ *".into());
    // The webhook's signing key, to send the notifications of a pass.
    expected.extend(reads(&["grant", "serve", "vendor-app", "webhook-secret"]));
    expected.extend(on_secrets(&[PUT, STAGE], &["grant", "serve"]));
    assert_exactly(&template, "TokenRefreshFunction", expected);
}

#[test]
fn no_function_creates_a_secret_and_only_the_token_endpoint_callers_read_grants() {
    let template = Template::load();
    let mut readers = BTreeSet::new();
    for (function, _) in FUNCTIONS {
        let permissions = role_of(&template, function);
        if permissions
            .iter()
            .any(|p| p.resource.ends_with("connections/*/grant"))
        {
            readers.insert(function);
        }
        assert!(
            permissions.iter().all(|p| p.action != CREATE),
            "{function} may create secrets: both exist from `connection add` on"
        );
    }
    assert_eq!(
        readers,
        BTreeSet::from(["ConnectCallbackFunction", "TokenRefreshFunction"])
    );
    // And no other role or policy anywhere names them.
    for (id, document) in template.all_policy_documents() {
        let text = document.to_string();
        if text.contains("/grant") {
            assert!(
                ["ConnectCallbackRole", "TokenRefreshRole"].contains(&id.as_str()),
                "{id} names grant secrets"
            );
        }
    }
}

#[test]
fn no_wildcard_action_and_no_wildcard_resource_but_where_aws_requires_it() {
    let template = Template::load();
    let documents = template.all_policy_documents();
    assert!(documents.len() >= 5, "the roles' policies are found");
    for (id, document) in documents {
        for permission in template.document_permissions(document) {
            assert!(
                !permission.action.contains('*'),
                "{id} allows a wildcard action: {}",
                permission.key()
            );
            assert!(
                !permission.resource.starts_with("unrecognized:"),
                "{id}: a resource the tests cannot classify: {}",
                permission.key()
            );
            if permission.resource == "*" {
                assert!(
                    STAR_ONLY_ACTIONS.contains(&permission.action.as_str()),
                    "{id} allows {} on every resource, and AWS has a narrower form",
                    permission.action
                );
            }
            if permission.action == "secretsmanager:ListSecrets" {
                assert_eq!(
                    id, "TokenRefreshRole",
                    "only the refresh pass lists secrets"
                );
            }
            if permission.action.starts_with("xray:") {
                assert_eq!(
                    permission.condition.as_deref(),
                    Some("TracingEnabled"),
                    "{id}: X-Ray only when tracing is on"
                );
            }
            if permission.action.starts_with("kms:") {
                assert_eq!(permission.condition.as_deref(), Some("HasKmsKey"), "{id}");
                let via = &permission.statement["Condition"]["StringEquals"]["kms:ViaService"];
                assert_eq!(
                    via["Fn::Sub"], "secretsmanager.${AWS::Region}.${AWS::URLSuffix}",
                    "{id}: the KMS key is usable only through Secrets Manager"
                );
            }
        }
    }
}

#[test]
fn every_function_runs_with_its_own_role_and_nothing_else_grants_it_more() {
    let template = Template::load();
    let mut roles = BTreeSet::new();
    for (function, _) in FUNCTIONS {
        let properties = &template.resource(function)["Properties"];
        assert!(
            properties.get("Policies").is_none(),
            "{function}: permissions belong in its role, where the tests check them"
        );
        roles.insert(template.function_role(function).to_owned());
    }
    assert_eq!(roles.len(), FUNCTIONS.len(), "one role per function");
    for (id, role) in template.of_type("AWS::IAM::Role") {
        let properties = &role["Properties"];
        assert!(
            properties.get("ManagedPolicyArns").is_none(),
            "{id} attaches managed policies"
        );
    }
    for kind in [
        "AWS::IAM::Policy",
        "AWS::IAM::ManagedPolicy",
        "AWS::IAM::RolePolicy",
        "AWS::IAM::User",
        "AWS::IAM::Group",
    ] {
        assert!(
            template.of_type(kind).is_empty(),
            "a {kind} could add permissions to a function's role: check it in this test first"
        );
    }
    // Every role: only one trusted service, and no one else.
    for (id, role) in template.of_type("AWS::IAM::Role") {
        let trust = &role["Properties"]["AssumeRolePolicyDocument"]["Statement"];
        let statements = trust.as_array().expect("trust statements");
        assert_eq!(statements.len(), 1, "{id}");
        let service = statements[0]["Principal"]["Service"]
            .as_str()
            .unwrap_or_default();
        let expected = if roles.contains(id) {
            "lambda.amazonaws.com"
        } else {
            "scheduler.amazonaws.com"
        };
        assert_eq!(service, expected, "{id} trusts only {expected}");
        assert_eq!(statements[0]["Action"], "sts:AssumeRole", "{id}");
    }
}

#[test]
fn the_schedule_may_invoke_the_refresh_function_and_nothing_else() {
    let template = Template::load();
    let keys: BTreeSet<String> = template
        .role_permissions("RefreshScheduleRole")
        .iter()
        .map(Permission::key)
        .collect();
    assert_eq!(
        keys,
        BTreeSet::from(["lambda:InvokeFunction @ arn-of:TokenRefreshFunction".to_owned()])
    );
    let event = template.resource("TokenRefreshFunction")["Properties"]["Events"]
        .as_object()
        .unwrap()
        .values()
        .find(|e| e["Type"] == "ScheduleV2")
        .cloned()
        .unwrap();
    assert_eq!(
        event["Properties"]["RoleArn"]["Fn::GetAtt"],
        serde_json::json!(["RefreshScheduleRole", "Arn"])
    );
}

//! `infra/template.yaml` against the contract the README states (routes, configuration) and the code: the
//! routes, the functions and how they are built, the configuration they get,
//! the schedule's input, the signing key, and alarms on metrics that the
//! refresh function really emits. (IAM: see `least_privilege.rs`.)

use roomtoken::Config;
use roomtoken::flows::refresh::ROTATION_WRITE_RETRIES;
use roomtoken::store::{SecretName, StoreSpec};
use roomtoken_tests::template::{FUNCTIONS, Template, workspace_root};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use token_refresh::metrics::{NAMESPACE, pass_documents};
use token_refresh::{PassSummary, RefreshRequest};

/// The routes (README, *HTTP API*) and the function that serves each.
const ROUTES: [(&str, &str); 5] = [
    ("GET /connect/{id}", "connect-start"),
    ("POST /connect/{id}", "connect-start"),
    ("GET /callback", "connect-callback"),
    ("GET /v1/connections/{id}/token", "token-read"),
    ("GET /v1/connections/{id}/status", "token-read"),
];

fn binary_of(function: &str) -> &'static str {
    FUNCTIONS
        .iter()
        .find(|(id, _)| *id == function)
        .map(|(_, binary)| *binary)
        .unwrap_or_else(|| panic!("{function} is not one of the four functions"))
}

#[test]
fn it_is_a_sam_template() {
    let template = Template::load();
    assert_eq!(template.root()["Transform"], "AWS::Serverless-2016-10-31");
    let functions: BTreeSet<&str> = template
        .of_type("AWS::Serverless::Function")
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert_eq!(
        functions,
        FUNCTIONS.iter().map(|(id, _)| *id).collect::<BTreeSet<_>>()
    );
}

#[test]
fn every_function_is_a_rust_binary_built_by_cargo_lambda_for_arm64() {
    let template = Template::load();
    for (function, binary) in FUNCTIONS {
        let property = |name| template.function_property(function, name).cloned();
        assert_eq!(
            property("Runtime"),
            Some(json!("provided.al2023")),
            "{function}"
        );
        assert_eq!(
            property("Architectures"),
            Some(json!(["arm64"])),
            "{function}"
        );
        assert_eq!(property("Handler"), Some(json!("bootstrap")), "{function}");
        let metadata = &template.resource(function)["Metadata"];
        assert_eq!(metadata["BuildMethod"], "rust-cargolambda", "{function}");
        assert_eq!(metadata["BuildProperties"]["Binary"], binary, "{function}");
        assert!(
            workspace_root()
                .join("functions")
                .join(binary)
                .join("src/main.rs")
                .is_file(),
            "{function} builds the binary of functions/{binary}"
        );
        // cargo-lambda runs in CodeUri and takes the binary from its
        // target/lambda: CodeUri must be the workspace root.
        let code_uri = property("CodeUri").expect("a CodeUri");
        let code_dir = Template::path()
            .parent()
            .unwrap()
            .join(code_uri.as_str().expect("a local CodeUri"));
        let manifest = std::fs::read_to_string(code_dir.join("Cargo.toml")).unwrap();
        assert!(
            manifest.contains("[workspace]"),
            "{function}: CodeUri is the workspace root"
        );
        assert_eq!(
            template.resource(function)["Properties"]["FunctionName"]["Fn::Sub"],
            format!("${{AWS::StackName}}-{binary}"),
            "{function}'s name, which the API's integration uses"
        );
    }
}

#[test]
fn the_api_has_exactly_the_routes_of_the_design() {
    let template = Template::load();
    let api = template.resource("HttpApi");
    assert_eq!(api["Type"], "AWS::Serverless::HttpApi");
    let paths = api["Properties"]["DefinitionBody"]["paths"]
        .as_object()
        .expect("the API declares its routes");
    let mut declared = BTreeMap::new();
    for (path, methods) in paths {
        for (method, operation) in methods.as_object().unwrap() {
            let integration = &operation["x-amazon-apigateway-integration"];
            assert_eq!(integration["type"], "aws_proxy", "{method} {path}");
            assert_eq!(
                integration["payloadFormatVersion"], "2.0",
                "{method} {path}"
            );
            let uri = integration["uri"]["Fn::Sub"].as_str().unwrap();
            let function = uri
                .strip_prefix("arn:${AWS::Partition}:apigateway:${AWS::Region}:lambda:path/2015-03-31/functions/arn:${AWS::Partition}:lambda:${AWS::Region}:${AWS::AccountId}:function:${AWS::StackName}-")
                .and_then(|rest| rest.strip_suffix("/invocations"))
                .unwrap_or_else(|| panic!("{method} {path}: integration {uri}"));
            declared.insert(
                format!("{} {path}", method.to_uppercase()),
                function.to_owned(),
            );
        }
    }
    let expected: BTreeMap<String, String> = ROUTES
        .iter()
        .map(|(route, f)| (route.to_string(), f.to_string()))
        .collect();
    assert_eq!(declared, expected);

    // Each function's HttpApi events (which add the invoke permissions)
    // are exactly its routes.
    let mut events = BTreeMap::new();
    for (function, binary) in FUNCTIONS {
        let all = template.resource(function)["Properties"]["Events"].clone();
        for event in all.as_object().into_iter().flat_map(|e| e.values()) {
            if event["Type"] == "HttpApi" {
                let properties = &event["Properties"];
                assert_eq!(properties["ApiId"]["Ref"], "HttpApi", "{function}");
                let route = format!(
                    "{} {}",
                    properties["Method"].as_str().unwrap().to_uppercase(),
                    properties["Path"].as_str().unwrap()
                );
                assert!(events.insert(route, binary.to_owned()).is_none());
            }
        }
    }
    assert_eq!(events, expected);
}

#[test]
fn every_function_gets_the_configuration_of_the_design() {
    let template = Template::load();
    for (function, _) in FUNCTIONS {
        let env = template.function_environment(function);
        assert_eq!(env["ROOMTOKEN_STORE"], "aws", "{function}");
        assert_eq!(
            env["ROOMTOKEN_SECRET_PREFIX"],
            json!({"Ref": "SecretPrefix"})
        );
        assert_eq!(
            env["ROOMTOKEN_REFRESH_MARGIN"],
            json!({"Ref": "RefreshMargin"})
        );
        assert_eq!(
            env["ROOMTOKEN_KMS_KEY_ID"],
            json!({"Fn::If": ["HasKmsKey", {"Ref": "KmsKeyArn"}, {"Ref": "AWS::NoValue"}]})
        );
        assert_eq!(
            env["ROOMTOKEN_PUBLIC_URL"],
            json!({"Fn::If": ["HasPublicUrl", {"Ref": "PublicUrl"},
                {"Fn::Sub": "https://${HttpApi}.execute-api.${AWS::Region}.${AWS::URLSuffix}"}]}),
            "{function}"
        );
        // Notifications: the callback queues, the refresh pass sends.
        assert_eq!(
            env["ROOMTOKEN_WEBHOOK_URL"],
            json!({"Fn::If": ["HasWebhookUrl", {"Ref": "WebhookUrl"}, {"Ref": "AWS::NoValue"}]}),
            "{function}"
        );
        let logging = template.function_logging(function);
        assert_eq!(logging["LogFormat"], "JSON", "{function}");
        assert_eq!(logging["ApplicationLogLevel"], json!({"Ref": "LogLevel"}));
        let group_id = logging["LogGroup"]["Ref"]
            .as_str()
            .expect("its own log group");
        let group = &template.resource(group_id)["Properties"];
        assert_eq!(
            group["LogGroupName"]["Fn::Sub"],
            format!("/aws/lambda/${{AWS::StackName}}-{}", binary_of(function))
        );
        assert_eq!(
            group["RetentionInDays"],
            json!({"Ref": "LogRetentionInDays"})
        );
        assert_eq!(
            template.function_property(function, "Tracing"),
            Some(&json!({"Fn::If": ["TracingEnabled", "Active", "PassThrough"]}))
        );
    }

    // The parameters' defaults are what the code takes.
    let parameters = &template.root()["Parameters"];
    // The EMF lines have no level: Lambda files them as INFO, and a WARN
    // level would drop them (and silence every alarm built on them).
    assert_eq!(
        parameters["LogLevel"]["AllowedValues"],
        json!(["TRACE", "DEBUG", "INFO"]),
        "no level that drops the metrics"
    );
    assert_eq!(
        parameters["WebhookUrl"]["Default"], "",
        "no webhook unless asked"
    );
    let with_defaults = Config::from_lookup(StoreSpec::Aws, |name| match name {
        "ROOMTOKEN_SECRET_PREFIX" => parameters["SecretPrefix"]["Default"]
            .as_str()
            .map(Into::into),
        "ROOMTOKEN_REFRESH_MARGIN" => parameters["RefreshMargin"]["Default"]
            .as_str()
            .map(Into::into),
        _ => None,
    })
    .expect("the defaults are valid configuration");
    assert_eq!(
        with_defaults.secret_prefix,
        Config::new(StoreSpec::Aws).secret_prefix
    );
    assert_eq!(
        with_defaults.refresh_margin,
        humantime::parse_duration("20m").unwrap(),
        "the README's default margin"
    );
}

#[test]
fn the_schedule_runs_a_normal_pass_every_five_minutes_one_at_a_time() {
    let template = Template::load();
    let input = template.schedule_input();
    let request: RefreshRequest = serde_json::from_str(input).unwrap_or_else(|e| {
        panic!("the refresh function refuses the schedule's Input {input:?}: {e}")
    });
    assert!(
        request.connection.is_none() && !request.force,
        "a normal pass: {input}"
    );

    let properties = &template.resource("TokenRefreshFunction")["Properties"];
    let schedule = properties["Events"]
        .as_object()
        .unwrap()
        .values()
        .find(|e| e["Type"] == "ScheduleV2")
        .unwrap();
    assert_eq!(
        schedule["Properties"]["ScheduleExpression"],
        "rate(5 minutes)"
    );
    // Nothing runs a pass again: neither the schedule nor Lambda's
    // asynchronous invocation.
    let retry = &schedule["Properties"]["RetryPolicy"];
    assert_eq!(
        retry["MaximumRetryAttempts"], 0,
        "the schedule retries no pass"
    );
    assert_eq!(properties["EventInvokeConfig"]["MaximumRetryAttempts"], 0);
    // No reserved concurrency unless the operator asks: an account whose
    // quota is still 10 would refuse the whole stack.
    assert_eq!(
        properties["ReservedConcurrentExecutions"],
        json!({"Fn::If": ["ReservesRefreshConcurrency", 1, {"Ref": "AWS::NoValue"}]})
    );
    assert_eq!(
        template.root()["Parameters"]["ReserveRefreshConcurrency"]["Default"],
        "false"
    );
    for (id, function) in template.of_type("AWS::Serverless::Function") {
        if id != "TokenRefreshFunction" {
            assert!(
                function["Properties"]
                    .get("ReservedConcurrentExecutions")
                    .is_none(),
                "{id} reserves concurrency"
            );
        }
    }
    let timeout = properties["Timeout"].as_u64().unwrap();
    assert!(
        (60..300).contains(&timeout),
        "a pass ends before the next one starts: {timeout} s"
    );

    // The pass stops starting requests at its budget; the last one may
    // take the HTTP timeout, and storing its rotation the retries' waits.
    // Lambda must not kill the pass before that (a rotated refresh token
    // would be lost), with 10 s left for the last writes.
    let environment = template.function_environment("TokenRefreshFunction");
    let config = Config::from_lookup(StoreSpec::Aws, |name| {
        environment.get(name)?.as_str().map(str::to_owned)
    })
    .expect("the function's configuration");
    let needed = config.refresh_budget
        + config.http_timeout
        + ROTATION_WRITE_RETRIES.iter().sum::<std::time::Duration>()
        + std::time::Duration::from_secs(10);
    assert!(
        std::time::Duration::from_secs(timeout) >= needed,
        "Timeout {timeout} s < budget {:?} + request {:?} + retries + 10 s",
        config.refresh_budget,
        config.http_timeout
    );
}

#[test]
fn the_template_creates_the_system_keys_where_the_broker_reads_them() {
    let template = Template::load();
    let secrets = template.of_type("AWS::SecretsManager::Secret");
    // The signing key, the device-key secret, and the edge origin secret
    // that exists only with the per-source limit's CloudFront.
    assert_eq!(secrets.len(), 3);
    let edge = template.resource("EdgeOriginSecret");
    assert_eq!(
        edge["Properties"]["Name"]["Fn::Sub"],
        format!("${{SecretPrefix}}{}", SecretName::edge_origin().as_str()),
        "where the broker reads it"
    );
    for (id, name) in [
        ("SigningKey", SecretName::signing_key()),
        ("DeviceKeySecret", SecretName::device_key()),
    ] {
        let properties = &template.resource(id)["Properties"];
        assert_eq!(
            properties["Name"]["Fn::Sub"],
            format!("${{SecretPrefix}}{}", name.as_str()),
            "{id}"
        );
        // At least the 32 characters the broker requires of a system key.
        let generate = &properties["GenerateSecretString"];
        assert!(generate["PasswordLength"].as_u64().unwrap() >= 32, "{id}");
        assert_eq!(generate["ExcludePunctuation"], true);
        assert_eq!(
            properties["KmsKeyId"],
            json!({"Fn::If": ["HasKmsKey", {"Ref": "KmsKeyArn"}, {"Ref": "AWS::NoValue"}]})
        );
    }
    // token-read refuses legacy keys unless the operator turns them on.
    let environment = template.function_environment("TokenReadFunction");
    assert_eq!(
        environment["ROOMTOKEN_LEGACY_DEVICE_KEYS"],
        json!({"Fn::If": ["AcceptsLegacyKeys", "accept", "refuse"]})
    );
    assert_eq!(
        template.root()["Parameters"]["AcceptLegacyDeviceKeys"]["Default"],
        "false"
    );
}

/// Every alarm on the `roomtoken` namespace watches a metric name, dimension
/// and value that `metrics::pass_documents` emits.
#[test]
fn alarms_watch_metrics_that_the_refresh_function_emits() {
    let template = Template::load();
    // Every document: the credential one only when an expiry is known.
    let summary = PassSummary {
        credential_days_left: Some(30),
        ..PassSummary::default()
    };
    let mut emitted = BTreeSet::new();
    for document in pass_documents(&summary, "fn", 0) {
        let directive = &document["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], NAMESPACE);
        let dimensions: Vec<String> = directive["Dimensions"][0]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| *d != "FunctionName")
            .map(|d| {
                format!(
                    "{}={}",
                    d.as_str().unwrap(),
                    document[d.as_str().unwrap()].as_str().unwrap()
                )
            })
            .collect();
        for metric in directive["Metrics"].as_array().unwrap() {
            emitted.insert(format!(
                "{} {}",
                metric["Name"].as_str().unwrap(),
                dimensions.join(",")
            ));
        }
    }

    let alarms = template.of_type("AWS::CloudWatch::Alarm");
    assert!(alarms.len() >= 5);
    let mut watched_namespaces = BTreeSet::new();
    for (id, alarm) in &alarms {
        let properties = &alarm["Properties"];
        assert_eq!(
            properties["AlarmActions"],
            json!([{"Ref": "AlarmTopic"}]),
            "{id}"
        );
        let mut metrics: Vec<&Value> = properties["Metrics"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|q| q.get("MetricStat").map(|s| &s["Metric"]))
            .collect();
        if properties.get("MetricName").is_some() {
            metrics.push(properties);
        }
        assert!(!metrics.is_empty(), "{id} watches a metric");
        for metric in metrics {
            let namespace = metric["Namespace"].as_str().unwrap();
            watched_namespaces.insert(namespace.to_owned());
            let dimensions = metric["Dimensions"].as_array().unwrap();
            let function = dimensions
                .iter()
                .find(|d| d["Name"] == "FunctionName")
                .map(|d| d["Value"]["Ref"].as_str().unwrap())
                .unwrap_or_else(|| panic!("{id}: a metric of one function"));
            assert!(FUNCTIONS.iter().any(|(f, _)| *f == function), "{id}");
            if namespace == NAMESPACE {
                assert_eq!(function, "TokenRefreshFunction", "{id}");
                let others: Vec<String> = dimensions
                    .iter()
                    .filter(|d| d["Name"] != "FunctionName")
                    .map(|d| {
                        format!(
                            "{}={}",
                            d["Name"].as_str().unwrap(),
                            d["Value"].as_str().unwrap()
                        )
                    })
                    .collect();
                let key = format!(
                    "{} {}",
                    metric["MetricName"].as_str().unwrap(),
                    others.join(",")
                );
                assert!(
                    emitted.contains(&key),
                    "{id} watches {key}, which is never emitted"
                );
            }
        }
    }
    assert_eq!(
        watched_namespaces,
        BTreeSet::from(["AWS/Lambda".to_owned(), NAMESPACE.to_owned()])
    );
    // Function errors and throttles of all four functions are watched.
    for metric in ["Errors", "Throttles"] {
        let watched: BTreeSet<&str> = alarms
            .iter()
            .flat_map(|(_, a)| a["Properties"]["Metrics"].as_array().into_iter().flatten())
            .filter_map(|q| q.get("MetricStat"))
            .filter(|s| s["Metric"]["MetricName"] == metric)
            .filter_map(|s| s["Metric"]["Dimensions"][0]["Value"]["Ref"].as_str())
            .collect();
        assert_eq!(
            watched,
            FUNCTIONS.iter().map(|(f, _)| *f).collect::<BTreeSet<_>>(),
            "{metric}"
        );
    }
}

#[test]
fn outputs_give_the_url_and_the_redirect_uri_to_register() {
    let template = Template::load();
    let outputs = &template.root()["Outputs"];
    assert_eq!(
        outputs["ApiUrl"]["Value"]["Fn::Sub"],
        "https://${HttpApi}.execute-api.${AWS::Region}.${AWS::URLSuffix}"
    );
    assert_eq!(
        outputs["RedirectUri"]["Value"],
        json!({"Fn::If": ["HasPublicUrl", {"Fn::Sub": "${PublicUrl}/callback"},
            {"Fn::Sub": "https://${HttpApi}.execute-api.${AWS::Region}.${AWS::URLSuffix}/callback"}]})
    );
}

/// The fleet the route limits are sized for (README, "Abuse from the
/// internet"): displays that all power on within 5 minutes.
const FLEET_DISPLAYS: u64 = 20_000;
const FLEET_POWER_ON_SECONDS: u64 = 300;
/// API Gateway's default burst for HTTP APIs, per account and region.
const ACCOUNT_HTTP_API_BURST: u64 = 5_000;

/// Each route has its own limit, so that a flood on one (made-up ids on the
/// token route, say) cannot take the others' share; the token route's
/// covers the documented fleet's morning.
#[test]
fn each_route_has_its_own_limit_sized_for_the_fleet() {
    let template = Template::load();
    let settings = &template.resource("HttpApi")["Properties"]["RouteSettings"];
    for (route, _) in ROUTES {
        let limit = &settings[route];
        let rate = limit["ThrottlingRateLimit"].as_u64();
        let burst = limit["ThrottlingBurstLimit"].as_u64();
        assert!(
            rate.is_some_and(|r| r > 0) && burst >= rate,
            "{route} has its own rate and burst: {limit}"
        );
    }
    let token = settings["GET /v1/connections/{id}/token"]["ThrottlingRateLimit"]
        .as_u64()
        .unwrap();
    assert!(
        token >= FLEET_DISPLAYS.div_ceil(FLEET_POWER_ON_SECONDS),
        "the token route holds the fleet's morning: {token}/s"
    );
    // Junk is refused before any store read, so the route's own limit must
    // not be what one client fills first: only the account's HTTP API burst
    // (5,000) and Lambda concurrency bound a flood.
    assert!(
        token >= ACCOUNT_HTTP_API_BURST,
        "one client at {token}/s would make every display's read a 429"
    );
    let pages = settings["GET /connect/{id}"]["ThrottlingRateLimit"]
        .as_u64()
        .unwrap();
    assert!(pages < token, "people's pages get a small share");
}

/// One client that floods can be blocked at the edge: an optional WAF
/// rate-based rule per source IP, on a CloudFront distribution in front of
/// the API, off unless PerSourceRateLimit is set.
#[test]
fn a_per_source_rate_limit_is_optional_and_at_the_edge() {
    let template = Template::load();
    let parameter = &template.root()["Parameters"]["PerSourceRateLimit"];
    assert_eq!(parameter["Default"], 0, "off unless asked for");
    // WAF's smallest limit is 10: 1 to 9 are refused before anything is made.
    let assertions = &template.root()["Rules"]["PerSourceLimitNeedsUsEast1"]["Assertions"];
    let refused = assertions
        .as_array()
        .unwrap()
        .iter()
        .find_map(|a| a["Assert"]["Fn::Not"][0]["Fn::Contains"].as_array())
        .expect("a rule on the limit's minimum");
    assert_eq!(refused[1], json!({"Ref": "PerSourceRateLimit"}));
    let below: Vec<&str> = refused[0]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert_eq!(below, ["1", "2", "3", "4", "5", "6", "7", "8", "9"]);
    for id in ["EdgeWebAcl", "EdgeDistribution"] {
        assert_eq!(
            template.resource(id)["Condition"],
            "HasPerSourceLimit",
            "{id}"
        );
    }
    let acl = &template.resource("EdgeWebAcl")["Properties"];
    assert_eq!(acl["Scope"], "CLOUDFRONT");
    let rule = &acl["Rules"][0];
    assert_eq!(rule["Action"], json!({"Block": {}}));
    let rate = &rule["Statement"]["RateBasedStatement"];
    assert_eq!(rate["AggregateKeyType"], "IP");
    assert_eq!(rate["Limit"], json!({"Ref": "PerSourceRateLimit"}));
    let distribution = &template.resource("EdgeDistribution")["Properties"]["DistributionConfig"];
    assert_eq!(
        distribution["WebACLId"],
        json!({"Fn::GetAtt": ["EdgeWebAcl", "Arn"]})
    );
    let origin = distribution["Origins"][0]["DomainName"]["Fn::Sub"]
        .as_str()
        .unwrap();
    assert!(origin.starts_with("${HttpApi}.execute-api."), "{origin}");
    // CloudFront adds the origin header from the stack's own secret, which
    // the functions read (and require) only with the distribution.
    let header = &distribution["Origins"][0]["OriginCustomHeaders"][0];
    assert_eq!(header["HeaderName"], "X-Roomtoken-Origin");
    assert_eq!(
        header["HeaderValue"],
        json!({"Fn::Sub": "{{resolve:secretsmanager:${EdgeOriginSecret}:SecretString}}"})
    );
    let secret = template.resource("EdgeOriginSecret");
    assert_eq!(secret["Condition"], "HasPerSourceLimit");
    assert_eq!(
        secret["Properties"]["Name"],
        json!({"Fn::Sub": "${SecretPrefix}system/edge-origin"})
    );
    let edge_only =
        &template.root()["Globals"]["Function"]["Environment"]["Variables"]["ROOMTOKEN_EDGE_ONLY"];
    assert_eq!(
        edge_only,
        &json!({"Fn::If": ["HasPerSourceLimit", "true", "false"]})
    );
    assert_eq!(
        distribution["DefaultCacheBehavior"]["CachePolicyId"],
        "4135ea2d-6df8-44a3-9df3-4b5a84be39ad",
        "nothing cached: every answer is per display or per admin"
    );
}

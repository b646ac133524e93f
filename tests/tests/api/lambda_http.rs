//! connect-start, connect-callback and token-read run as Lambda runs them:
//! the real binaries take API Gateway HTTP API (payload 2.0) events from the
//! Runtime API stand-in. Cookies arrive in the event's `cookies` array and
//! leave in the response's `cookies`, as API Gateway passes them.

use roomtoken_tests::lambda_runtime_api::{FunctionProcess, RuntimeApi, function_binary};
use roomtoken_tests::{
    ACCOUNT, CLIENT_ID, StoreKind, TENANT, TestApp, assert_no_secret_in, form_token, http,
    location, spawn_app, unique_id,
};
use serde_json::{Value, json};
use std::time::Duration;
use url::Url;

const ANSWER_WITHIN: Duration = Duration::from_secs(60);

/// `GET {url's path}?{url's query}` as API Gateway hands it to a function.
fn get_event(url: &Url, headers: Value, cookies: &[&str]) -> Value {
    let path = url.path();
    let query: serde_json::Map<String, Value> = url
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), Value::String(v.into_owned())))
        .collect();
    let mut event = json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": url.query().unwrap_or_default(),
        "headers": headers,
        "requestContext": {
            "accountId": "123456789012", "apiId": "roomtoken", "domainName": "tokens.example.com",
            "domainPrefix": "tokens", "requestId": unique_id("request"), "routeKey": "$default",
            "stage": "$default", "time": "29/Nov/2026:12:00:00 +0000", "timeEpoch": 1_795_900_000_000u64,
            "http": {"method": "GET", "path": path, "protocol": "HTTP/1.1", "sourceIp": "198.51.100.7", "userAgent": "Mozilla/5.0"}
        },
        "isBase64Encoded": false
    });
    if !query.is_empty() {
        event["queryStringParameters"] = Value::Object(query);
    }
    if !cookies.is_empty() {
        event["cookies"] = json!(cookies);
    }
    event
}

/// One function binary with its own Runtime API.
struct Function {
    api: RuntimeApi,
    process: FunctionProcess,
}

impl Function {
    async fn start(name: &str, app: &TestApp) -> Self {
        Self::start_at(name, app, &app.url).await
    }

    /// The function with `ROOMTOKEN_PUBLIC_URL` set to `public_url`.
    async fn start_at(name: &str, app: &TestApp, public_url: &Url) -> Self {
        let api = RuntimeApi::start().await.expect("runtime api");
        let public_url = public_url.to_string();
        let process = FunctionProcess::spawn(
            &function_binary(name),
            &api,
            &format!("rt-test-{name}"),
            &[
                ("ROOMTOKEN_STORE", app.store_arg()),
                ("ROOMTOKEN_PUBLIC_URL", &public_url),
                // The most verbose level the template offers: still no
                // secret in the output.
                ("AWS_LAMBDA_LOG_LEVEL", "TRACE"),
                // token-read's counts after every read, not once a minute.
                ("ROOMTOKEN_READ_METRICS_EVERY", "0s"),
            ],
        )
        .expect("spawn function");
        Self { api, process }
    }

    /// The function's API Gateway response to `event`.
    async fn answer(&mut self, event: &Value) -> Value {
        let completion = self.process.invoke(&self.api, event, ANSWER_WITHIN).await;
        let completion = completion.unwrap_or_else(|e| panic!("{e}"));
        completion.outcome.response_json().expect("a JSON response")
    }

    async fn output(self) -> String {
        let output = self.process.stop().await;
        format!("{}\n{}", output.stdout, output.stderr)
    }
}

fn header<'a>(response: &'a Value, name: &str) -> &'a str {
    response["headers"][name].as_str().unwrap_or_default()
}

fn cookies(response: &Value) -> Vec<String> {
    response["cookies"]
        .as_array()
        .map(|all| {
            all.iter()
                .filter_map(|c| c.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// The consent path and a display's read, each step through its function.
#[tokio::test]
async fn consent_and_token_read_run_as_lambda_functions() {
    let app = spawn_app(StoreKind::File).await;
    let id = unique_id("lambda-http");
    app.add_connection(&id).await;
    let link: Url = app.link(&id).await.parse().expect("a consent link");
    let mut start = Function::start("connect-start", &app).await;
    let mut callback = Function::start("connect-callback", &app).await;
    let mut read = Function::start("token-read", &app).await;

    // connect-start: a redirect to the sign-in, the session in a cookie.
    let redirect = start.answer(&get_event(&link, json!({}), &[])).await;
    assert_eq!(redirect["statusCode"], 302, "{redirect}");
    let sign_in: Url = header(&redirect, "location").parse().expect("location");
    let set = cookies(&redirect);
    assert_eq!(
        set.len(),
        1,
        "one cookie, in the response's cookies: {redirect}"
    );
    let consent_cookie = set[0].split(';').next().unwrap_or_default().to_owned();
    assert!(consent_cookie.starts_with("roomtoken_consent="), "{set:?}");
    for attribute in ["Path=/callback", "HttpOnly", "SameSite=Lax"] {
        assert!(set[0].contains(attribute), "{attribute} in {set:?}");
    }

    // The sign-in (the fake consents for the booking account) answers with
    // a redirect to the callback.
    let answer = http().get(sign_in).send().await.expect("sign-in");
    let back = location(&answer);
    assert_eq!(back.path(), "/callback");

    // connect-callback: the cookie comes in the event's cookies array.
    let connected = callback
        .answer(&get_event(&back, json!({}), &[&consent_cookie]))
        .await;
    assert_eq!(connected["statusCode"], 200, "{connected}");
    let page = connected["body"].as_str().unwrap_or_default();
    assert!(
        page.contains("Connected as") && page.contains(ACCOUNT),
        "{page}"
    );
    assert!(
        cookies(&connected)
            .iter()
            .any(|c| c.starts_with("roomtoken_consent=;") && c.contains("Max-Age=0")),
        "the session is spent: {connected}"
    );
    assert!(app.grant(&id).await.is_some(), "the grant is stored");
    // The same answer again is refused and changes nothing.
    let replayed = callback
        .answer(&get_event(&back, json!({}), &[&consent_cookie]))
        .await;
    assert_eq!(replayed["statusCode"], 400, "{replayed}");

    // token-read: a display's request with its device key.
    let key = app.create_key(&id).await;
    let token_url = app
        .url
        .join(&format!("v1/connections/{id}/token?resource=graph"))
        .expect("token url");
    let bearer = json!({"authorization": format!("Bearer {key}")});
    let served = read
        .answer(&get_event(&token_url, bearer.clone(), &[]))
        .await;
    assert_eq!(served["statusCode"], 200, "{served}");
    let body: Value =
        serde_json::from_str(served["body"].as_str().unwrap_or_default()).expect("a JSON body");
    assert_eq!(body["resource"], "graph");
    assert_eq!(body["account"], ACCOUNT);
    let etag = header(&served, "etag").to_owned();
    assert!(etag.starts_with('"'), "{served}");
    let mut again = bearer.clone();
    again["if-none-match"] = Value::String(etag);
    let not_modified = read.answer(&get_event(&token_url, again, &[])).await;
    assert_eq!(not_modified["statusCode"], 304, "{not_modified}");
    let refused = read
        .answer(&get_event(
            &token_url,
            json!({"authorization": "Bearer rtk_0000000000_x"}),
            &[],
        ))
        .await;
    assert_eq!(refused["statusCode"], 401, "{refused}");

    // The audit line joins the API access log: API Gateway's request id
    // and the client's IP.
    let mut event = get_event(&token_url, bearer.clone(), &[]);
    event["requestContext"]["requestId"] = json!("KaB3xjZ8IAMEV0w=");
    let audited = read.answer(&event).await;
    assert_eq!(audited["statusCode"], 200, "{audited}");
    let read_output = read.output().await;
    let audit = read_output
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .find(|line| line["span"]["request_id"] == "KaB3xjZ8IAMEV0w=")
        .unwrap_or_else(|| panic!("an audit line with the request id: {read_output}"));
    assert_eq!(audit["fields"]["message"], "token read", "{audit}");
    assert_eq!(audit["span"]["source_ip"], "198.51.100.7", "{audit}");
    // Its metrics (EMF): the reads per outcome, summed over the windows.
    let counted = |metric: &str| -> u64 {
        read_output
            .lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .filter(|line| {
                line.get("_aws").is_some() && line["FunctionName"] == "rt-test-token-read"
            })
            .filter_map(|line| line[metric].as_u64())
            .sum()
    };
    assert_eq!(
        [
            counted("Reads"),
            counted("Served"),
            counted("NotModified"),
            counted("Unauthorized"),
            counted("Unavailable"),
        ],
        [4, 2, 1, 1, 0],
        "{read_output}"
    );

    let mut printed = read_output;
    for function in [start, callback] {
        printed.push_str(&function.output().await);
    }
    assert_no_secret_in(&printed, "the functions' output", &app.secrets(&[&key]));
    assert!(
        !printed.contains(consent_cookie.trim_start_matches("roomtoken_consent=")),
        "the sealed session is not logged"
    );
}

/// Behind a named API Gateway stage, the Lambda adapter keeps the stage in
/// the path: the routes answer there too, and the consent cookie is scoped
/// to the callback under the stage.
#[tokio::test]
async fn a_stage_in_the_public_url_is_honoured() {
    let app = spawn_app(StoreKind::File).await;
    let id = unique_id("stage");
    app.add_connection(&id).await;
    let link: Url = app.link(&id).await.parse().expect("a consent link");
    let public_url = app.url.join("prod/").expect("staged url");
    let mut start = Function::start_at("connect-start", &app, &public_url).await;

    let mut staged = public_url
        .join(&format!("connect/{id}"))
        .expect("staged link");
    staged.set_query(link.query());
    let mut event = get_event(&staged, json!({}), &[]);
    event["requestContext"]["stage"] = json!("prod");
    let redirect = start.answer(&event).await;
    assert_eq!(redirect["statusCode"], 302, "{redirect}");
    let sign_in: Url = header(&redirect, "location").parse().expect("location");
    let redirect_uri = sign_in
        .query_pairs()
        .find(|(name, _)| name == "redirect_uri")
        .map(|(_, value)| value.into_owned());
    assert_eq!(redirect_uri, Some(format!("{public_url}callback")));
    let set = cookies(&redirect);
    assert!(
        set.iter().any(|c| c.contains("Path=/prod/callback")),
        "the cookie goes to the staged callback only: {set:?}"
    );
    start.output().await;
}

/// A browser's form POST as API Gateway hands it to a function: the body
/// base64-encoded, the cookies in their array.
fn form_event(url: &Url, cookies: &[&str], body: &str) -> Value {
    use base64::Engine;
    let headers = json!({"content-type": "application/x-www-form-urlencoded"});
    let mut event = get_event(url, headers, cookies);
    event["requestContext"]["http"]["method"] = json!("POST");
    event["body"] = json!(base64::engine::general_purpose::STANDARD.encode(body));
    event["isBase64Encoded"] = json!(true);
    event
}

/// Self-service through the functions: connect-start serves the form (its
/// cookie in the response's cookies), takes the base64-encoded POST and
/// sends the admin to the sign-in; connect-callback stores app and grant.
#[tokio::test]
async fn the_self_service_form_runs_as_a_lambda_function() {
    let app = spawn_app(StoreKind::File).await;
    let id = app.add_self_service_connection().await;
    let link: Url = app.link(&id).await.parse().expect("a consent link");
    let mut start = Function::start("connect-start", &app).await;
    let mut callback = Function::start("connect-callback", &app).await;

    let form = start.answer(&get_event(&link, json!({}), &[])).await;
    assert_eq!(form["statusCode"], 200, "{form}");
    let page = form["body"].as_str().unwrap_or_default();
    let token = form_token(page);
    assert!(!token.is_empty(), "{page}");
    let set = cookies(&form);
    let form_cookie = set
        .iter()
        .find(|c| c.starts_with("roomtoken_form="))
        .unwrap_or_else(|| panic!("the form cookie: {form}"));
    for attribute in [
        &format!("Path=/connect/{id}") as &str,
        "HttpOnly",
        "SameSite=Strict",
    ] {
        assert!(
            form_cookie.contains(attribute),
            "{attribute} in {form_cookie}"
        );
    }
    let form_cookie = form_cookie.split(';').next().unwrap_or_default();

    let accepted = start
        .answer(&form_event(
            &link,
            &[form_cookie],
            &app.setup_form_body(&token),
        ))
        .await;
    assert_eq!(accepted["statusCode"], 303, "{accepted}");
    let sign_in: Url = header(&accepted, "location").parse().expect("location");
    assert!(
        sign_in.path().starts_with(&format!("/{TENANT}/")),
        "{sign_in}"
    );
    let consent_cookie = cookies(&accepted)
        .into_iter()
        .find(|c| c.starts_with("roomtoken_consent="))
        .unwrap_or_else(|| panic!("the consent cookie: {accepted}"));
    let consent_cookie = consent_cookie
        .split(';')
        .next()
        .unwrap_or_default()
        .to_owned();
    assert!(app.grant(&id).await.is_none(), "nothing stored by the form");

    let answer = http().get(sign_in).send().await.expect("sign-in");
    let back = location(&answer);
    let connected = callback
        .answer(&get_event(&back, json!({}), &[&consent_cookie]))
        .await;
    assert_eq!(connected["statusCode"], 200, "{connected}");
    assert_eq!(app.serve(&id).await.app.client_id, CLIENT_ID);
    assert!(app.grant(&id).await.is_some(), "the grant is stored");

    let mut printed = String::new();
    for function in [start, callback] {
        printed.push_str(&function.output().await);
    }
    assert_no_secret_in(&printed, "the functions' output", &app.secrets(&[]));
}

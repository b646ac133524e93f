//! The OpenAPI document (`shared/openapi.json`, served at `/openapi.json`)
//! matches what the broker answers: every live status code is declared for
//! its route, every declared required header is sent and has the declared
//! form, and every body validates against the declared schema.

use roomtoken::domain::ConnectionId;
use roomtoken::store::{Part, SecretName};
use roomtoken_tests::{StoreKind, TokenRead, http, spawn_app};
use serde_json::{Value, json};

const TOKEN: &str = "/v1/connections/{id}/token";
const STATUS: &str = "/v1/connections/{id}/status";

/// Follows a local `$ref` (`#/components/...`) inside the document.
fn resolve<'a>(doc: &'a Value, value: &'a Value) -> &'a Value {
    match value.get("$ref").and_then(Value::as_str) {
        Some(reference) => {
            let pointer = reference
                .strip_prefix('#')
                .unwrap_or_else(|| panic!("a local $ref: {reference}"));
            resolve(
                doc,
                doc.pointer(pointer)
                    .unwrap_or_else(|| panic!("{reference} exists")),
            )
        }
        None => value,
    }
}

/// A JSON Schema 2020-12 validator of `schema` (a `$ref` into the
/// document's components), with formats checked.
fn validator(doc: &Value, schema: &Value) -> jsonschema::Validator {
    let reference = schema["$ref"]
        .as_str()
        .expect("response schemas are $refs into components");
    let mut root = doc.clone();
    root["$ref"] = json!(reference);
    jsonschema::draft202012::options()
        .should_validate_formats(true)
        .build(&root)
        .unwrap_or_else(|e| panic!("{reference} compiles: {e}"))
}

/// Checks one live response against the document; returns its body.
async fn conforms(doc: &Value, path: &str, what: &str, response: reqwest::Response) -> Value {
    let code = response.status().as_u16().to_string();
    let declared = doc["paths"][path]["get"]["responses"]
        .get(&code)
        .unwrap_or_else(|| panic!("{what}: {code} is not declared for GET {path}"));
    let declared = resolve(doc, declared);
    let headers = response.headers().clone();
    let declared_headers = declared["headers"].as_object().cloned().unwrap_or_default();
    for (name, header) in &declared_headers {
        let header = resolve(doc, header);
        let live = headers.get(name.as_str()).map(|v| v.to_str().unwrap());
        if header["required"] == true {
            assert!(live.is_some(), "{what}: {code} lacks the required {name}");
        }
        if let Some(live) = live {
            let value = match header["schema"]["type"].as_str() {
                Some("integer") => json!(
                    live.parse::<i64>()
                        .unwrap_or_else(|_| panic!("{what}: {name} is an integer"))
                ),
                _ => json!(live),
            };
            let schema = jsonschema::draft202012::new(&header["schema"]).unwrap();
            assert!(
                schema.is_valid(&value),
                "{what}: {name}: {live:?} does not match {}",
                header["schema"]
            );
        }
    }
    // What a display relies on is declared.
    for name in ["cache-control", "etag", "retry-after", "www-authenticate"] {
        if headers.contains_key(name) {
            assert!(
                declared_headers
                    .keys()
                    .any(|k| k.eq_ignore_ascii_case(name)),
                "{what}: {code} sends {name}, which the document does not declare"
            );
        }
    }
    let content_type = headers
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned());
    let body = response.bytes().await.unwrap();
    match declared.get("content") {
        None => {
            assert!(body.is_empty(), "{what}: {code} declares no body");
            Value::Null
        }
        Some(content) => {
            assert_eq!(
                content_type.as_deref(),
                Some("application/json"),
                "{what}: content type"
            );
            let body: Value = serde_json::from_slice(&body).expect("a JSON body");
            let schema = &content["application/json"]["schema"];
            let validator = validator(doc, schema);
            let errors: Vec<String> = validator
                .iter_errors(&body)
                .map(|e| format!("{} at {}", e, e.instance_path()))
                .collect();
            assert!(
                errors.is_empty(),
                "{what}: the {code} body does not match {}: {errors:#?}\n{body:#}",
                schema["$ref"]
            );
            body
        }
    }
}

#[tokio::test]
async fn live_responses_match_the_openapi_document() {
    let app = spawn_app(StoreKind::File).await;
    let served = http()
        .get(app.url.join("openapi.json").unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(served.status(), 200);
    assert_eq!(served.headers()["content-type"], "application/json");
    let doc: Value = served.json().await.unwrap();
    assert_eq!(
        doc,
        serde_json::from_str::<Value>(roomtoken::http::OPENAPI_JSON).unwrap(),
        "/openapi.json serves the document kept in the repository"
    );
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1."));
    // Every schema is valid JSON Schema 2020-12 and compiles with its refs.
    for (name, schema) in doc["components"]["schemas"].as_object().unwrap() {
        assert!(
            jsonschema::draft202012::meta::is_valid(schema),
            "{name} is a JSON Schema"
        );
        validator(
            &doc,
            &json!({"$ref": format!("#/components/schemas/{name}")}),
        );
    }

    let (id, key) = app.connected("openapi").await;
    let read = TokenRead::new(&id).key(&key);

    let ok = app.read(read).await;
    let etag = ok.headers()["etag"].to_str().unwrap().to_owned();
    let token = conforms(&doc, TOKEN, "token", ok).await;
    assert_eq!(token["resource"], "ews");
    let not_modified = TokenRead {
        if_none_match: Some(&etag),
        ..read
    };
    conforms(&doc, TOKEN, "not modified", app.read(not_modified).await).await;
    let unknown = TokenRead {
        resource: Some("sharepoint"),
        ..read
    };
    let body = conforms(&doc, TOKEN, "unknown resource", app.read(unknown).await).await;
    assert_eq!(body["error"], "unknown_resource");
    let body = conforms(
        &doc,
        TOKEN,
        "missing key",
        app.read(TokenRead::new(&id)).await,
    )
    .await;
    assert_eq!(body["error"], "unauthorized");
    let too_long = TokenRead {
        min_validity: Some(86_400),
        ..read
    };
    let body = conforms(&doc, TOKEN, "min_validity", app.read(too_long).await).await;
    assert_eq!(body["error"], "insufficient_validity");
    let mut url = app.url.join(&format!("v1/connections/{id}/token")).unwrap();
    url.set_query(Some("min_validity=-1"));
    let bad = http().get(url).bearer_auth(&key).send().await.unwrap();
    let body = conforms(&doc, TOKEN, "bad query", bad).await;
    assert_eq!(body["error"], "invalid_request");

    let status = conforms(
        &doc,
        STATUS,
        "status",
        app.get_status(&id, Some(&key)).await,
    )
    .await;
    assert_eq!(status["state"], "connected");
    conforms(
        &doc,
        STATUS,
        "status without key",
        app.get_status(&id, None).await,
    )
    .await;

    // A failed refresh leaves a last error: the status still conforms.
    let connection = ConnectionId::parse(&id).unwrap();
    app.identity.inject(roomtoken_fake_identity::Fault::Aadsts {
        status: 400,
        error: "invalid_grant".into(),
        code: 50173,
        suberror: None,
    });
    let _ = app.cli(&["refresh", &id, "--force"], "").await;
    app.expire_read_cache();
    let status = conforms(
        &doc,
        STATUS,
        "status after a failure",
        app.get_status(&id, Some(&key)).await,
    )
    .await;
    assert_eq!(status["state"], "reconnect_required", "{status:#}");
    assert!(status["last_error"].is_object(), "{status:#}");
    let body = conforms(&doc, TOKEN, "reconnect required", app.read(read).await).await;
    assert_eq!(body["error"], "no_valid_token");
    assert_eq!(body["state"], "reconnect_required");

    // A store that cannot be read: 503 without a state, on both routes.
    let name = SecretName::of(&connection, Part::Serve);
    let store = app.broker.repo.store();
    let current = store.get(name.as_str()).await.unwrap().unwrap();
    store
        .put(name.as_str(), "{not json", Some(&current.version))
        .await
        .unwrap();
    app.expire_read_cache();
    let body = conforms(&doc, TOKEN, "store failure", app.read(read).await).await;
    assert_eq!(body["error"], "store_unavailable");
    let body = conforms(
        &doc,
        STATUS,
        "store failure",
        app.get_status(&id, Some(&key)).await,
    )
    .await;
    assert_eq!(body["error"], "store_unavailable");
}

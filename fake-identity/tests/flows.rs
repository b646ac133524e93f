//! End-to-end checks of the fake over real HTTP on loopback.

use std::collections::HashMap;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, LOCATION};
use roomtoken_fake_identity::{
    FakeAccount, FakeApp, FakeIdentity, Fault, FaultTarget, GrantType, pkce_challenge,
};
use serde_json::Value;
use url::Url;

const TENANT: &str = "8f0c2a5e-1d3b-4c6a-9e7f-0a1b2c3d4e5f";
const CLIENT: &str = "2b7e1516-28ae-4d2a-abf7-158809cf4f3c";
const SECRET: &str = "s3cr~et.Value_with+plus/slash=";
const REDIRECT: &str = "http://127.0.0.1:9/callback";
const USER: &str = "booking@contoso.example";
const EWS: &str = "https://outlook.office365.com/EWS.AccessAsUser.All";
const GRAPH_CALENDARS: &str = "https://graph.microsoft.com/Calendars.ReadWrite";
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk-verifier-0123456789";

struct Harness {
    fake: FakeIdentity,
    http: reqwest::Client,
}

async fn harness() -> Harness {
    let fake = FakeIdentity::start().await.expect("start fake");
    fake.register_app(FakeApp {
        tenant: TENANT.into(),
        client_id: CLIENT.into(),
        client_secret: SECRET.into(),
        redirect_uris: vec![REDIRECT.into()],
        multi_tenant: false,
        permissions: Vec::new(),
    });
    fake.add_account(FakeAccount {
        tenant: TENANT.into(),
        oid: "00000000-0000-0000-0000-0000000000aa".into(),
        username: USER.into(),
        name: "Booking Account".into(),
        admin: false,
    });
    fake.add_account(FakeAccount {
        tenant: TENANT.into(),
        oid: "00000000-0000-0000-0000-0000000000bb".into(),
        username: "other@contoso.example".into(),
        name: "Other".into(),
        admin: false,
    });
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    Harness { fake, http }
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    json: Value,
}

impl Harness {
    fn authorize_request(&self, scope: &str, challenge: Option<&str>) -> Url {
        let mut url = self.fake.authorize_url(TENANT);
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("client_id", CLIENT)
                .append_pair("response_type", "code")
                .append_pair("redirect_uri", REDIRECT)
                .append_pair("scope", scope)
                .append_pair("state", "st-1")
                .append_pair("nonce", "nonce-1");
            if let Some(c) = challenge {
                q.append_pair("code_challenge", c)
                    .append_pair("code_challenge_method", "S256");
            }
        }
        url
    }

    /// Auto-consent authorize; returns the redirect's query parameters.
    async fn authorize(&self, scope: &str) -> HashMap<String, String> {
        self.fake.set_auto_consent(Some(USER));
        let url = self.authorize_request(scope, Some(&pkce_challenge(VERIFIER)));
        let res = self.http.get(url).send().await.expect("authorize");
        assert_eq!(res.status(), StatusCode::FOUND);
        redirect_params(res.headers())
    }

    async fn code(&self, scope: &str) -> String {
        let params = self.authorize(scope).await;
        assert_eq!(params["state"], "st-1");
        params["code"].clone()
    }

    async fn token(&self, form: &[(&str, &str)]) -> Answer {
        self.token_with(self.http.post(self.fake.token_url(TENANT)).form(form))
            .await
    }

    async fn token_with(&self, req: reqwest::RequestBuilder) -> Answer {
        let res = req.send().await.expect("token request");
        let status = res.status();
        let headers = res.headers().clone();
        let json = res.json::<Value>().await.expect("json body");
        Answer {
            status,
            headers,
            json,
        }
    }

    async fn redeem(&self, code: &str, scope: &str) -> Answer {
        self.token(&[
            ("grant_type", "authorization_code"),
            ("client_id", CLIENT),
            ("client_secret", SECRET),
            ("code", code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", VERIFIER),
            ("scope", scope),
        ])
        .await
    }

    async fn refresh(&self, rt: &str, scope: &str) -> Answer {
        self.token(&[
            ("grant_type", "refresh_token"),
            ("client_id", CLIENT),
            ("client_secret", SECRET),
            ("refresh_token", rt),
            ("scope", scope),
        ])
        .await
    }

    /// A fresh refresh token from a full code flow.
    async fn signed_in(&self) -> String {
        let code = self
            .code(&format!(
                "openid profile offline_access {EWS} {GRAPH_CALENDARS}"
            ))
            .await;
        let a = self.redeem(&code, &format!("{EWS} offline_access")).await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.json);
        a.json["refresh_token"].as_str().expect("rt").to_owned()
    }
}

fn redirect_params(headers: &HeaderMap) -> HashMap<String, String> {
    let location = headers
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .expect("Location header");
    let url = Url::parse(location).expect("location url");
    assert!(location.starts_with(REDIRECT), "{location}");
    url.query_pairs().into_owned().collect()
}

fn assert_aad_error(a: &Answer, status: StatusCode, error: &str, code: u64) {
    assert_eq!(a.status, status, "{}", a.json);
    assert_eq!(a.json["error"], error, "{}", a.json);
    assert_eq!(
        a.json["error_codes"],
        serde_json::json!([code]),
        "{}",
        a.json
    );
    let description = a.json["error_description"].as_str().expect("description");
    assert!(
        description.starts_with(&format!("AADSTS{code}: ")),
        "{description}"
    );
    assert!(description.contains("Trace ID: "), "{description}");
    assert!(description.contains("Correlation ID: "), "{description}");
    for field in ["timestamp", "trace_id", "correlation_id"] {
        assert!(a.json[field].is_string(), "{field} missing: {}", a.json);
    }
    assert_eq!(
        a.json["error_uri"],
        format!("https://login.microsoftonline.com/error?code={code}")
    );
    assert_eq!(
        a.headers["content-type"].to_str().unwrap(),
        "application/json; charset=utf-8"
    );
}

fn jwt_payload(token: &str) -> Value {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3);
    let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
    assert_eq!(header["alg"], "RS256");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap()
}

#[tokio::test]
async fn full_code_flow_with_pkce_and_auto_consent() {
    let h = harness().await;
    let code = h
        .code(&format!("openid profile offline_access {EWS}"))
        .await;
    assert!(code.starts_with("fake-code-"));
    let a = h
        .redeem(&code, &format!("{EWS} openid profile offline_access"))
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.json);
    assert_eq!(a.json["token_type"], "Bearer");
    assert_eq!(a.json["expires_in"], 3600);
    assert_eq!(a.json["ext_expires_in"], 3600);
    let scope = a.json["scope"].as_str().unwrap();
    assert!(scope.split(' ').any(|s| s == EWS), "{scope}");
    assert!(scope.split(' ').any(|s| s == "offline_access"), "{scope}");
    let at = a.json["access_token"].as_str().unwrap();
    let rt = a.json["refresh_token"].as_str().unwrap();
    assert!(at.starts_with("fake-at-") && rt.starts_with("fake-rt-"));
    assert_eq!(a.headers["cache-control"], "no-store, no-cache");

    let claims = jwt_payload(a.json["id_token"].as_str().unwrap());
    assert_eq!(claims["aud"], CLIENT);
    assert_eq!(claims["tid"], TENANT);
    assert_eq!(claims["nonce"], "nonce-1");
    assert_eq!(claims["preferred_username"], USER);
    assert_eq!(claims["oid"], "00000000-0000-0000-0000-0000000000aa");
    assert_eq!(claims["ver"], "2.0");
    let base = h.fake.base_url().as_str().trim_end_matches('/').to_owned();
    assert_eq!(claims["iss"], format!("{base}/{TENANT}/v2.0"));

    let info = h.fake.access_token_info(at).expect("known token");
    assert_eq!(info.username, USER);
    assert_eq!(info.resource, "https://outlook.office365.com");
    assert_eq!(info.scope, EWS);
    assert!(h.fake.access_token_info("fake-at-unknown").is_none());

    assert_eq!(
        h.fake.newest_refresh_token(CLIENT, USER).as_deref(),
        Some(rt)
    );
    let secrets = h.fake.issued_secrets();
    for s in [code.as_str(), at, rt, a.json["id_token"].as_str().unwrap()] {
        assert!(secrets.iter().any(|x| x == s));
    }
    let c = h.fake.counters();
    assert_eq!(
        (
            c.authorize_requests,
            c.token_requests,
            c.authorization_code_grants
        ),
        (1, 1, 1)
    );
}

#[tokio::test]
async fn no_offline_access_no_refresh_token_and_default_graph() {
    let h = harness().await;
    let code = h.code("openid").await;
    let a = h.redeem(&code, "openid").await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.json);
    assert!(a.json.get("refresh_token").is_none());
    assert!(a.json.get("id_token").is_some());
    assert_eq!(
        a.json["scope"],
        "https://graph.microsoft.com/User.Read openid"
    );
}

#[tokio::test]
async fn pkce_mismatch_is_rejected() {
    let h = harness().await;
    let code = h.code(&format!("offline_access {EWS}")).await;
    let a = h
        .token(&[
            ("grant_type", "authorization_code"),
            ("client_id", CLIENT),
            ("client_secret", SECRET),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            (
                "code_verifier",
                "a-completely-different-verifier-value-0123456789",
            ),
            ("scope", EWS),
        ])
        .await;
    assert_aad_error(&a, StatusCode::BAD_REQUEST, "invalid_grant", 501481);
    assert!(
        !a.json["error_description"]
            .as_str()
            .unwrap()
            .contains(&code)
    );
}

#[tokio::test]
async fn code_reuse_is_54005_and_expired_code_is_70008() {
    let h = harness().await;
    let code = h.code(&format!("offline_access {EWS}")).await;
    assert_eq!(h.redeem(&code, EWS).await.status, StatusCode::OK);
    let again = h.redeem(&code, EWS).await;
    assert_aad_error(&again, StatusCode::BAD_REQUEST, "invalid_grant", 54005);

    let unknown = h.redeem("fake-code-nope", EWS).await;
    assert_aad_error(&unknown, StatusCode::BAD_REQUEST, "invalid_grant", 70008);

    h.fake.set_code_lifetime(Duration::ZERO);
    let code = h.code(&format!("offline_access {EWS}")).await;
    let expired = h.redeem(&code, EWS).await;
    assert_aad_error(&expired, StatusCode::BAD_REQUEST, "invalid_grant", 70008);
}

#[tokio::test]
async fn redirect_uri_must_match_the_authorize_one() {
    let h = harness().await;
    let code = h.code(EWS).await;
    let a = h
        .token(&[
            ("grant_type", "authorization_code"),
            ("client_id", CLIENT),
            ("client_secret", SECRET),
            ("code", &code),
            ("redirect_uri", "http://127.0.0.1:9/other"),
            ("code_verifier", VERIFIER),
        ])
        .await;
    assert_aad_error(&a, StatusCode::BAD_REQUEST, "invalid_grant", 70000);
}

#[tokio::test]
async fn refresh_rotates_and_old_tokens_stay_valid() {
    let h = harness().await;
    let rt1 = h.signed_in().await;

    let a = h.refresh(&rt1, &format!("{EWS} offline_access")).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.json);
    let rt2 = a.json["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(rt1, rt2);
    assert_eq!(h.fake.newest_refresh_token(CLIENT, USER), Some(rt2.clone()));

    // The same refresh token also mints a Graph token (one resource per call).
    let g = h.refresh(&rt2, "Calendars.ReadWrite offline_access").await;
    assert_eq!(g.status, StatusCode::OK, "{}", g.json);
    let info = h
        .fake
        .access_token_info(g.json["access_token"].as_str().unwrap())
        .unwrap();
    assert_eq!(info.resource, "https://graph.microsoft.com");
    assert_eq!(
        info.scope,
        "https://graph.microsoft.com/Calendars.ReadWrite"
    );
    let rt3 = g.json["refresh_token"].as_str().unwrap().to_owned();
    assert!(rt3 != rt1 && rt3 != rt2);

    // The old one still works, as on Microsoft.
    let old = h.refresh(&rt1, EWS).await;
    assert_eq!(old.status, StatusCode::OK, "{}", old.json);
    assert!(old.json["refresh_token"].is_string());

    let c = h.fake.counters();
    assert_eq!(c.refresh_tokens_used, vec![rt1.clone(), rt2, rt1]);
    assert_eq!(c.refresh_token_grants, 3);
    assert_eq!(c.refresh_tokens_redeemed_twice, 1);

    let unknown = h.refresh("fake-rt-unknown", EWS).await;
    assert_aad_error(&unknown, StatusCode::BAD_REQUEST, "invalid_grant", 9002313);
}

#[tokio::test]
async fn revoked_account_gets_50173_until_it_signs_in_again() {
    let h = harness().await;
    let rt = h.signed_in().await;
    h.fake.revoke_account(USER);
    let a = h.refresh(&rt, EWS).await;
    assert_aad_error(&a, StatusCode::BAD_REQUEST, "invalid_grant", 50173);
    assert_eq!(a.json["suberror"], "bad_token");

    let fresh = h.signed_in().await;
    assert_eq!(h.refresh(&fresh, EWS).await.status, StatusCode::OK);
}

#[tokio::test]
async fn mixed_resources_are_700022_and_default_mixing_is_70011() {
    let h = harness().await;
    let rt = h.signed_in().await;
    let a = h.refresh(&rt, &format!("{EWS} User.Read")).await;
    assert_aad_error(&a, StatusCode::BAD_REQUEST, "invalid_scope", 700022);

    let code = h
        .code(&format!("offline_access {EWS} Calendars.ReadWrite"))
        .await;
    let b = h
        .redeem(
            &code,
            &format!("{EWS} https://graph.microsoft.com/Calendars.ReadWrite"),
        )
        .await;
    assert_aad_error(&b, StatusCode::BAD_REQUEST, "invalid_scope", 700022);

    let c = h
        .refresh(&rt, "https://outlook.office365.com/.default https://outlook.office365.com/EWS.AccessAsUser.All")
        .await;
    assert_aad_error(&c, StatusCode::BAD_REQUEST, "invalid_scope", 70011);
}

#[tokio::test]
async fn fault_queue_is_fifo_and_counted() {
    let h = harness().await;
    let rt = h.signed_in().await;
    h.fake.inject(Fault::TooManyRequests {
        retry_after_secs: 7,
    });
    h.fake.inject(Fault::ServerError { status: 503 });
    h.fake.inject(Fault::Aadsts {
        status: 400,
        error: "invalid_grant".into(),
        code: 50076,
        suberror: Some("basic_action".into()),
    });

    let a = h.refresh(&rt, EWS).await;
    assert_aad_error(
        &a,
        StatusCode::TOO_MANY_REQUESTS,
        "temporarily_unavailable",
        90055,
    );
    assert_eq!(a.headers["retry-after"], "7");

    let b = h.refresh(&rt, EWS).await;
    assert_aad_error(
        &b,
        StatusCode::SERVICE_UNAVAILABLE,
        "temporarily_unavailable",
        90033,
    );

    let c = h.refresh(&rt, EWS).await;
    assert_aad_error(&c, StatusCode::BAD_REQUEST, "invalid_grant", 50076);
    assert_eq!(c.json["suberror"], "basic_action");

    assert_eq!(h.refresh(&rt, EWS).await.status, StatusCode::OK);

    h.fake.inject(Fault::ServerError { status: 500 });
    h.fake.clear_faults();
    assert_eq!(h.refresh(&rt, EWS).await.status, StatusCode::OK);

    let counters = h.fake.counters();
    assert_eq!(counters.faults_served, 3);
    // Faulted requests count as token requests and record the presented token,
    // but not as processed grants.
    assert_eq!(counters.refresh_tokens_used.len(), 5);
    assert_eq!(counters.refresh_token_grants, 2);
    assert_eq!(counters.token_requests, 6);
}

#[tokio::test]
async fn hang_outlasts_client_timeout_and_latency_is_applied() {
    let h = harness().await;
    let rt = h.signed_in().await;
    h.fake.inject(Fault::Hang(Duration::from_secs(5)));
    let err = h
        .http
        .post(h.fake.token_url(TENANT))
        .timeout(Duration::from_millis(300))
        .form(&[
            ("grant_type", "refresh_token"),
            ("client_id", CLIENT),
            ("client_secret", SECRET),
            ("refresh_token", rt.as_str()),
        ])
        .send()
        .await
        .expect_err("should time out");
    assert!(err.is_timeout());

    h.fake.set_latency(Duration::from_millis(200));
    let started = std::time::Instant::now();
    assert_eq!(h.refresh(&rt, EWS).await.status, StatusCode::OK);
    assert!(started.elapsed() >= Duration::from_millis(200));
}

#[tokio::test]
async fn client_authentication_errors() {
    let h = harness().await;
    let rt = h.signed_in().await;
    let wrong = h
        .token(&[
            ("grant_type", "refresh_token"),
            ("client_id", CLIENT),
            ("client_secret", "wrong-secret"),
            ("refresh_token", &rt),
        ])
        .await;
    assert_aad_error(&wrong, StatusCode::UNAUTHORIZED, "invalid_client", 7000215);
    let text = wrong.json.to_string();
    assert!(!text.contains("wrong-secret") && !text.contains(&rt));

    let missing = h
        .token(&[
            ("grant_type", "refresh_token"),
            ("client_id", CLIENT),
            ("refresh_token", &rt),
        ])
        .await;
    assert_aad_error(
        &missing,
        StatusCode::UNAUTHORIZED,
        "invalid_client",
        7000218,
    );

    let unknown = h
        .token(&[
            ("grant_type", "refresh_token"),
            ("client_id", "11111111-2222-3333-4444-555555555555"),
            ("client_secret", SECRET),
            ("refresh_token", &rt),
        ])
        .await;
    assert_aad_error(
        &unknown,
        StatusCode::BAD_REQUEST,
        "unauthorized_client",
        700016,
    );

    let unsupported = h
        .token(&[
            ("grant_type", "password"),
            ("client_id", CLIENT),
            ("client_secret", SECRET),
        ])
        .await;
    assert_aad_error(
        &unsupported,
        StatusCode::BAD_REQUEST,
        "unsupported_grant_type",
        70003,
    );

    let tenant = h
        .token_with(
            h.http
                .post(h.fake.token_url("99999999-0000-0000-0000-000000000000"))
                .form(&[("grant_type", "refresh_token"), ("client_id", CLIENT)]),
        )
        .await;
    assert_aad_error(&tenant, StatusCode::BAD_REQUEST, "invalid_request", 90002);
}

#[tokio::test]
async fn http_basic_client_authentication_works() {
    let h = harness().await;
    let rt = h.signed_in().await;
    let encode = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let credentials = STANDARD.encode(format!("{}:{}", encode(CLIENT), encode(SECRET)));
    let a = h
        .token_with(
            h.http
                .post(h.fake.token_url(TENANT))
                .header("authorization", format!("Basic {credentials}"))
                .form(&[
                    ("grant_type", "refresh_token"),
                    ("refresh_token", rt.as_str()),
                    ("scope", EWS),
                ]),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.json);

    // reqwest's basic_auth does not url-encode; the fake accepts that too.
    let b = h
        .token_with(
            h.http
                .post(h.fake.token_url(TENANT))
                .basic_auth(CLIENT, Some(SECRET))
                .form(&[
                    ("grant_type", "refresh_token"),
                    ("refresh_token", rt.as_str()),
                ]),
        )
        .await;
    assert_eq!(b.status, StatusCode::OK, "{}", b.json);

    let bad = h
        .token_with(
            h.http
                .post(h.fake.token_url(TENANT))
                .basic_auth(CLIENT, Some("nope"))
                .form(&[
                    ("grant_type", "refresh_token"),
                    ("refresh_token", rt.as_str()),
                ]),
        )
        .await;
    assert_aad_error(&bad, StatusCode::UNAUTHORIZED, "invalid_client", 7000215);
}

#[tokio::test]
async fn client_credentials_grant() {
    let h = harness().await;
    let a = h
        .token(&[
            ("grant_type", "client_credentials"),
            ("client_id", CLIENT),
            ("client_secret", SECRET),
            ("scope", "https://outlook.office365.com/.default"),
        ])
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.json);
    assert!(a.json.get("refresh_token").is_none() && a.json.get("id_token").is_none());
    let info = h
        .fake
        .access_token_info(a.json["access_token"].as_str().unwrap())
        .unwrap();
    assert_eq!(info.resource, "https://outlook.office365.com");
    assert_eq!(info.username, "");

    let bad = h
        .token(&[
            ("grant_type", "client_credentials"),
            ("client_id", CLIENT),
            ("client_secret", SECRET),
            ("scope", EWS),
        ])
        .await;
    assert_aad_error(&bad, StatusCode::BAD_REQUEST, "invalid_scope", 1002012);
    assert_eq!(h.fake.counters().client_credentials_grants, 2);
}

#[tokio::test]
async fn sign_in_page_then_post_and_cancel() {
    let h = harness().await;
    let url = h.authorize_request(
        &format!("openid offline_access {EWS}"),
        Some(&pkce_challenge(VERIFIER)),
    );
    let res = h.http.get(url).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let page = res.text().await.unwrap();
    assert!(page.contains("<form method=\"post\""));
    assert!(page.contains("id=\"signin\""));
    assert!(page.contains(&format!("id=\"signin-{USER}\"")));
    assert!(page.contains("id=\"cancel\""));
    assert!(page.contains("name=\"username\""));

    let challenge = pkce_challenge(VERIFIER);
    let scope = format!("openid offline_access {EWS}");
    let mut form = vec![
        ("client_id", CLIENT),
        ("response_type", "code"),
        ("redirect_uri", REDIRECT),
        ("scope", scope.as_str()),
        ("state", "st-1"),
        ("nonce", "nonce-1"),
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", "S256"),
    ];
    let post = |form: Vec<(&'static str, &str)>| {
        let form: Vec<(String, String)> = form
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        h.http.post(h.fake.authorize_url(TENANT)).form(&form).send()
    };

    let mut signin = form.clone();
    signin.push(("username", USER));
    signin.push(("action", "signin"));
    let res = post(signin).await.unwrap();
    assert_eq!(res.status(), StatusCode::FOUND);
    let params = redirect_params(res.headers());
    assert_eq!(params["state"], "st-1");
    let a = h.redeem(&params["code"], EWS).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.json);
    assert_eq!(
        jwt_payload(a.json["id_token"].as_str().unwrap())["preferred_username"],
        USER
    );

    form.push(("action", "cancel"));
    let res = post(form).await.unwrap();
    assert_eq!(res.status(), StatusCode::FOUND);
    let params = redirect_params(res.headers());
    assert_eq!(params["error"], "access_denied");
    assert!(params["error_description"].starts_with("AADSTS65004"));
    assert_eq!(params["state"], "st-1");
    assert!(!params.contains_key("code"));
    assert_eq!(h.fake.counters().authorize_requests, 1);
}

#[tokio::test]
async fn authorize_validation() {
    let h = harness().await;
    h.fake.set_auto_consent(Some(USER));

    // Unregistered redirect URI: an error page, never a redirect.
    let mut url = h.authorize_request(EWS, Some(&pkce_challenge(VERIFIER)));
    let query: Vec<(String, String)> = url
        .query_pairs()
        .into_owned()
        .map(|(k, v)| {
            if k == "redirect_uri" {
                (k, "https://evil.example/cb".to_owned())
            } else {
                (k, v)
            }
        })
        .collect();
    url.query_pairs_mut().clear().extend_pairs(&query);
    let res = h.http.get(url).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert!(res.headers().get(LOCATION).is_none());
    assert!(res.text().await.unwrap().contains("AADSTS50011"));

    // Unknown tenant.
    let mut url = h.authorize_request(EWS, Some(&pkce_challenge(VERIFIER)));
    url.set_path("/99999999-0000-0000-0000-000000000000/oauth2/v2.0/authorize");
    let res = h.http.get(url).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert!(res.text().await.unwrap().contains("AADSTS90002"));

    // Missing PKCE: redirect back with invalid_request.
    let res = h
        .http
        .get(h.authorize_request(EWS, None))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FOUND);
    let params = redirect_params(res.headers());
    assert_eq!(params["error"], "invalid_request");
    assert_eq!(params["state"], "st-1");

    // prompt=none without a session.
    h.fake.set_auto_consent(None);
    let mut url = h.authorize_request(EWS, Some(&pkce_challenge(VERIFIER)));
    url.query_pairs_mut().append_pair("prompt", "none");
    let res = h.http.get(url).send().await.unwrap();
    assert_eq!(redirect_params(res.headers())["error"], "login_required");
    assert_eq!(h.fake.counters().authorize_requests, 4);
}

const DAY: Duration = Duration::from_secs(86_400);

#[tokio::test]
async fn a_resource_nobody_consented_to_is_65001_consent_required() {
    let h = harness().await;
    let code = h.code(&format!("openid offline_access {EWS}")).await;
    let graph = h.redeem(&code, GRAPH_CALENDARS).await;
    assert_aad_error(&graph, StatusCode::BAD_REQUEST, "invalid_grant", 65001);
    assert_eq!(graph.json["suberror"], "consent_required");

    let code = h.code(&format!("openid offline_access {EWS}")).await;
    let ews = h.redeem(&code, EWS).await;
    assert_eq!(ews.status, StatusCode::OK, "{}", ews.json);
    let rt = ews.json["refresh_token"].as_str().expect("rt");
    assert_eq!(h.refresh(rt, EWS).await.status, StatusCode::OK);
    let graph = h.refresh(rt, GRAPH_CALENDARS).await;
    assert_aad_error(&graph, StatusCode::BAD_REQUEST, "invalid_grant", 65001);
    assert_eq!(graph.json["suberror"], "consent_required");
    assert!(graph.json["refresh_token"].is_null());
}

#[tokio::test]
async fn a_refresh_token_idle_for_90_days_expires_and_a_used_one_lives_on() {
    let h = harness().await;
    let rt1 = h.signed_in().await;
    let first = h.refresh(&rt1, EWS).await;
    let access = first.json["access_token"].as_str().expect("at").to_owned();
    assert!(h.fake.access_token_info(&access).is_some());

    h.fake.advance_clock(DAY * 89);
    assert!(
        h.fake.access_token_info(&access).is_none(),
        "access tokens expire by the fake's clock"
    );
    let kept = h.refresh(&rt1, EWS).await;
    assert_eq!(kept.status, StatusCode::OK, "89 days idle: {}", kept.json);
    let rt2 = kept.json["refresh_token"].as_str().expect("rt").to_owned();

    h.fake.advance_clock(DAY * 2);
    let idle = h.refresh(&rt1, EWS).await;
    assert_aad_error(&idle, StatusCode::BAD_REQUEST, "invalid_grant", 700082);
    assert_eq!(idle.json["suberror"], "bad_token");
    assert_eq!(
        h.refresh(&rt2, EWS).await.status,
        StatusCode::OK,
        "a token issued 2 days ago lives on"
    );
}

#[tokio::test]
async fn a_fault_waits_for_its_target_and_for_a_request_that_passed_every_check() {
    let h = harness().await;
    let rt = h.signed_in().await;
    h.fake.inject_for(
        FaultTarget::account("other@contoso.example"),
        Fault::ServerError { status: 500 },
    );
    h.fake.inject_for(
        FaultTarget::account(USER).grant(GrantType::AuthorizationCode),
        Fault::ServerError { status: 502 },
    );
    assert_eq!(
        h.refresh(&rt, EWS).await.status,
        StatusCode::OK,
        "another account's and another grant's faults are not ours"
    );
    h.fake.inject(Fault::ServerError { status: 503 });
    let unknown = h.refresh("fake-rt-unknown", EWS).await;
    assert_aad_error(&unknown, StatusCode::BAD_REQUEST, "invalid_grant", 9002313);
    assert_eq!(
        h.fake.queued_faults(),
        3,
        "a refused request takes no fault"
    );

    let faulted = h.refresh(&rt, EWS).await;
    assert_eq!(faulted.status, StatusCode::SERVICE_UNAVAILABLE);
    let code = h.code(&format!("openid offline_access {EWS}")).await;
    let redeemed = h.redeem(&code, EWS).await;
    assert_eq!(
        redeemed.status,
        StatusCode::BAD_GATEWAY,
        "{}",
        redeemed.json
    );
    assert_eq!(h.fake.queued_faults(), 1);
    let counters = h.fake.counters();
    assert_eq!(counters.faults_served, 2);
}

#[tokio::test]
async fn throttling_and_gateways_answer_as_they_do_in_front_of_entra() {
    let h = harness().await;
    let rt = h.signed_in().await;
    h.fake.inject(Fault::RequestLoop);
    let looped = h.refresh(&rt, EWS).await;
    assert_aad_error(&looped, StatusCode::BAD_REQUEST, "invalid_grant", 50196);
    assert!(looped.headers.get("retry-after").is_none());

    for (status, html) in [(503, true), (502, false), (429, false)] {
        h.fake.inject(Fault::NotJson { status, html });
        let res = h
            .http
            .post(h.fake.token_url(TENANT))
            .form(&[
                ("grant_type", "refresh_token"),
                ("client_id", CLIENT),
                ("client_secret", SECRET),
                ("refresh_token", rt.as_str()),
                ("scope", EWS),
            ])
            .send()
            .await
            .expect("token request");
        assert_eq!(res.status().as_u16(), status);
        let content_type = res
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap_or_default().to_owned());
        let body = res.text().await.expect("body");
        if html {
            assert_eq!(content_type.as_deref(), Some("text/html"));
            assert!(body.starts_with("<!DOCTYPE html>"), "{body}");
        } else {
            assert!(body.is_empty(), "{body}");
        }
    }
}

#[tokio::test]
async fn a_guest_signs_in_to_the_tenant_that_invited_it() {
    const HOME: &str = "0a0b0c0d-0000-4000-8000-00000000fab1";
    const GUEST: &str = "vendor@fabrikam.example";
    const GUEST_OID: &str = "00000000-0000-0000-0000-00000000c0de";
    let h = harness().await;
    h.fake.add_account(FakeAccount {
        tenant: HOME.into(),
        oid: "00000000-0000-0000-0000-0000000000f1".into(),
        username: GUEST.into(),
        name: "Vendor Engineer".into(),
        admin: false,
    });
    h.fake.set_auto_consent(Some(GUEST));
    let url = h.authorize_request(
        &format!("openid offline_access {EWS}"),
        Some(&pkce_challenge(VERIFIER)),
    );
    let res = h.http.get(url.clone()).send().await.expect("authorize");
    assert_ne!(res.status(), StatusCode::FOUND, "no code for a stranger");
    let page = res.text().await.expect("page");
    assert!(
        page.contains("AADSTS50020") && page.contains(HOME),
        "not a guest yet, named with its home organization: {page}"
    );

    h.fake.add_guest(TENANT, GUEST, GUEST_OID);
    let res = h.http.get(url).send().await.expect("authorize");
    let params = redirect_params(res.headers());
    let answer = h.redeem(&params["code"], EWS).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.json);
    let claims = jwt_payload(answer.json["id_token"].as_str().expect("id_token"));
    assert_eq!(claims["tid"], TENANT, "the inviting tenant's token");
    assert_eq!(claims["oid"], GUEST_OID, "the guest's object id there");
    assert_eq!(claims["preferred_username"], GUEST);
    let rt = answer.json["refresh_token"].as_str().expect("rt");
    let refreshed = h.refresh(rt, EWS).await;
    assert_eq!(refreshed.status, StatusCode::OK, "{}", refreshed.json);
    let info = h
        .fake
        .access_token_info(refreshed.json["access_token"].as_str().expect("at"))
        .expect("issued");
    assert_eq!(info.tenant, TENANT);
}

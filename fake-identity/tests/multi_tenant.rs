//! A vendor's multi-tenant app as Entra ID treats it: sign-in through
//! `/organizations/`, per-tenant consent (AADSTS65001 until an admin grants
//! it), the admin-consent endpoint, tokens in the user's own tenant, and
//! tenants named by their verified domains.

use std::collections::HashMap;

use reqwest::StatusCode;
use reqwest::header::LOCATION;
use roomtoken_fake_identity::{FakeAccount, FakeApp, FakeIdentity, pkce_challenge};
use serde_json::Value;
use url::Url;

const VENDOR: &str = "11111111-1111-4111-8111-111111111111";
const CONTOSO: &str = "22222222-2222-4222-8222-222222222222";
const FABRIKAM: &str = "33333333-3333-4333-8333-333333333333";
const CLIENT: &str = "44444444-4444-4444-8444-444444444444";
const SECRET: &str = "vendor-secret-value";
const REDIRECT: &str = "http://127.0.0.1:9/callback";
const BOOKING: &str = "booking@contoso.example";
const ADMIN: &str = "admin@contoso.example";
const CALENDARS: &str = "https://graph.microsoft.com/Calendars.ReadWrite";
const PLACES: &str = "https://graph.microsoft.com/Place.Read.All";
const VERIFIER: &str = "multi-tenant-verifier-0123456789-0123456789-0123456789";

fn account(tenant: &str, username: &str, admin: bool) -> FakeAccount {
    FakeAccount {
        tenant: tenant.into(),
        oid: format!("oid-{username}"),
        username: username.into(),
        name: username.into(),
        admin,
    }
}

async fn vendor() -> (FakeIdentity, reqwest::Client) {
    let fake = FakeIdentity::start().await.expect("start fake");
    fake.register_app(FakeApp {
        tenant: VENDOR.into(),
        client_id: CLIENT.into(),
        client_secret: SECRET.into(),
        redirect_uris: vec![REDIRECT.into()],
        multi_tenant: true,
        permissions: vec![CALENDARS.into(), PLACES.into()],
    });
    fake.add_account(account(CONTOSO, BOOKING, false));
    fake.add_account(account(CONTOSO, ADMIN, true));
    fake.add_account(account(FABRIKAM, "admin@fabrikam.example", true));
    fake.add_domain(CONTOSO, "contoso.example");
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    (fake, http)
}

fn sign_in_url(fake: &FakeIdentity, tenant: &str) -> Url {
    let mut url = fake.authorize_url(tenant);
    url.query_pairs_mut()
        .append_pair("client_id", CLIENT)
        .append_pair("response_type", "code")
        .append_pair("redirect_uri", REDIRECT)
        .append_pair(
            "scope",
            &format!("openid profile offline_access {CALENDARS}"),
        )
        .append_pair("state", "st-1")
        .append_pair("nonce", "n-1")
        .append_pair("code_challenge", &pkce_challenge(VERIFIER))
        .append_pair("code_challenge_method", "S256");
    url
}

fn admin_consent_url(fake: &FakeIdentity, tenant: &str) -> Url {
    let mut url = fake.admin_consent_url(tenant);
    url.query_pairs_mut()
        .append_pair("client_id", CLIENT)
        .append_pair("scope", "https://graph.microsoft.com/.default")
        .append_pair("redirect_uri", REDIRECT)
        .append_pair("state", "consent-1");
    url
}

async fn redirected(http: &reqwest::Client, url: Url) -> HashMap<String, String> {
    let response = http.get(url).send().await.expect("GET");
    assert_eq!(response.status(), StatusCode::FOUND);
    let location = response.headers()[LOCATION].to_str().expect("location");
    assert!(location.starts_with(REDIRECT), "{location}");
    Url::parse(location)
        .expect("url")
        .query_pairs()
        .into_owned()
        .collect()
}

async fn token(
    http: &reqwest::Client,
    fake: &FakeIdentity,
    tenant: &str,
    form: &[(&str, &str)],
) -> (StatusCode, Value) {
    let response = http
        .post(fake.token_url(tenant))
        .form(form)
        .send()
        .await
        .expect("POST token");
    (response.status(), response.json().await.expect("json"))
}

fn claims(jwt: &str) -> Value {
    use base64::Engine;
    let payload = jwt.split('.').nth(1).expect("payload");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("base64");
    serde_json::from_slice(&bytes).expect("claims")
}

#[tokio::test]
async fn a_tenant_signs_in_only_after_its_admin_consents() {
    let (fake, http) = vendor().await;
    fake.set_auto_consent(Some(BOOKING));

    let refused = redirected(&http, sign_in_url(&fake, "organizations")).await;
    assert_eq!(refused["error"], "consent_required", "{refused:?}");
    assert!(
        refused["error_description"].starts_with("AADSTS65001:"),
        "{refused:?}"
    );
    assert_eq!(refused["state"], "st-1");

    // A user who is not an admin cannot grant it for the organization.
    fake.set_auto_admin_consent(Some(BOOKING));
    let page = http
        .get(admin_consent_url(&fake, "organizations"))
        .send()
        .await
        .expect("GET adminconsent");
    assert_eq!(page.status(), StatusCode::BAD_REQUEST);
    assert!(page.text().await.expect("page").contains("AADSTS90094"));
    assert!(fake.consents(CONTOSO, CLIENT).is_empty());

    fake.set_auto_admin_consent(Some(ADMIN));
    let granted = redirected(&http, admin_consent_url(&fake, "organizations")).await;
    assert_eq!(granted["admin_consent"], "True", "{granted:?}");
    assert_eq!(granted["tenant"], CONTOSO);
    assert_eq!(granted["state"], "consent-1");
    assert_eq!(
        fake.consents(CONTOSO, CLIENT),
        vec![CALENDARS.to_lowercase(), PLACES.to_lowercase()],
        "`.default` grants the app's configured permissions"
    );
    assert_eq!(fake.counters().admin_consents, 1);

    let signed_in = redirected(&http, sign_in_url(&fake, "organizations")).await;
    let code = signed_in.get("code").expect("a code after consent");
    let (status, body) = token(
        &http,
        &fake,
        "organizations",
        &[
            ("grant_type", "authorization_code"),
            ("client_id", CLIENT),
            ("client_secret", SECRET),
            ("code", code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", VERIFIER),
            ("scope", &format!("{CALENDARS} offline_access")),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let id_token = claims(body["id_token"].as_str().expect("id_token"));
    assert_eq!(
        id_token["tid"], CONTOSO,
        "the user's tenant, not the vendor's"
    );
    let issued = fake
        .access_token_info(body["access_token"].as_str().expect("access token"))
        .expect("issued");
    assert_eq!(issued.tenant, CONTOSO);

    // Every later request goes to the signed-in tenant; another tenant,
    // which never consented, does not know the app.
    let refresh_token = body["refresh_token"].as_str().expect("refresh token");
    let refresh = |tenant: &'static str| {
        let (http, fake) = (&http, &fake);
        async move {
            token(
                http,
                fake,
                tenant,
                &[
                    ("grant_type", "refresh_token"),
                    ("client_id", CLIENT),
                    ("client_secret", SECRET),
                    ("refresh_token", refresh_token),
                    ("scope", CALENDARS),
                ],
            )
            .await
        }
    };
    let (status, body) = refresh(CONTOSO).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = refresh(FABRIKAM).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error_codes"], serde_json::json!([700016]), "{body}");
}

#[tokio::test]
async fn an_admin_may_refuse_and_a_single_tenant_app_has_no_organizations_endpoint() {
    let (fake, http) = vendor().await;
    // The consent page: one accept button per account, and cancel.
    let page = http
        .get(admin_consent_url(&fake, CONTOSO))
        .send()
        .await
        .expect("GET adminconsent");
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.expect("page");
    assert!(
        html.contains(&format!("accept-{ADMIN}")) && html.contains("id=\"cancel\""),
        "{html}"
    );
    assert!(html.contains(PLACES), "the permissions are listed: {html}");
    let cancel = http
        .post(fake.admin_consent_url(CONTOSO))
        .form(&[
            ("client_id", CLIENT),
            ("scope", "https://graph.microsoft.com/.default"),
            ("redirect_uri", REDIRECT),
            ("state", "consent-2"),
            ("action", "cancel"),
        ])
        .send()
        .await
        .expect("POST cancel");
    let location = Url::parse(cancel.headers()[LOCATION].to_str().expect("location")).expect("url");
    let answer: HashMap<String, String> = location.query_pairs().into_owned().collect();
    assert_eq!(answer["error"], "access_denied", "{answer:?}");
    assert!(answer["error_description"].starts_with("AADSTS65004:"));
    assert_eq!(answer["state"], "consent-2");
    assert!(fake.consents(CONTOSO, CLIENT).is_empty(), "nothing granted");

    fake.register_app(FakeApp {
        tenant: CONTOSO.into(),
        client_id: "55555555-5555-4555-8555-555555555555".into(),
        client_secret: SECRET.into(),
        redirect_uris: vec![REDIRECT.into()],
        multi_tenant: false,
        permissions: Vec::new(),
    });
    let mut single = fake.authorize_url("organizations");
    single
        .query_pairs_mut()
        .append_pair("client_id", "55555555-5555-4555-8555-555555555555");
    let page = http.get(single).send().await.expect("GET authorize");
    assert_eq!(page.status(), StatusCode::BAD_REQUEST);
    assert!(page.text().await.expect("page").contains("AADSTS50194"));
}

#[tokio::test]
async fn a_verified_domain_names_its_tenant() {
    let (fake, http) = vendor().await;
    let discovery = |tenant: &str| {
        let mut url = fake.base_url();
        url.set_path(&format!("{tenant}/v2.0/.well-known/openid-configuration"));
        http.get(url).send()
    };
    let by_domain: Value = discovery("contoso.example")
        .await
        .expect("GET")
        .json()
        .await
        .expect("json");
    assert!(
        by_domain["issuer"]
            .as_str()
            .expect("issuer")
            .ends_with(&format!("/{CONTOSO}/v2.0")),
        "{by_domain}"
    );
    assert!(
        by_domain["token_endpoint"]
            .as_str()
            .expect("token endpoint")
            .contains(CONTOSO),
        "{by_domain}"
    );
    let unknown = discovery("unknown.example").await.expect("GET");
    assert_eq!(unknown.status(), StatusCode::BAD_REQUEST);
}

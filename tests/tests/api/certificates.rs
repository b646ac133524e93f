//! Certificate credentials (issue 14, first slice): the product makes an
//! RSA key and a self-signed certificate, signs client assertions with it,
//! and the fake identity platform verifies them for real (signature
//! against the uploaded certificate, `aud`, `iss` = `sub`, time range,
//! `jti` never reused, the certificate's own expiry), as strict as Entra
//! ID. App-only tokens (client credentials) go to tenants that granted the
//! app only.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use roomtoken::certificate::{ASSERTION_TYPE, AssertionClaims, CertificateKey};
use roomtoken::domain::{AppRegistration, FailureClass};
use roomtoken::identity::{AppClient, Credential, IdentityProvider, OAuthClient};
use roomtoken_tests::vendor::{VENDOR_CLIENT, register_vendor_app};
use roomtoken_tests::{
    CLIENT_ID, Setup, StoreKind, TENANT, TestApp, assert_no_secret_in, assert_no_secret_logged,
    date_in, http, printed_certificate, spawn_app, unique_id,
};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::sync::OnceLock;
use std::time::Duration;
use time::OffsetDateTime;

const GRAPH: &str = "https://graph.microsoft.com/.default";

/// RSA keys take a moment to make: two for the whole suite.
fn keys() -> &'static (CertificateKey, CertificateKey) {
    static KEYS: OnceLock<(CertificateKey, CertificateKey)> = OnceLock::new();
    KEYS.get_or_init(|| {
        let now = OffsetDateTime::now_utc();
        (
            CertificateKey::generate("roomtoken registered", 365, now).expect("key"),
            CertificateKey::generate("roomtoken other", 365, now).expect("key"),
        )
    })
}

/// An app registration of the harness's app, pointing at the fake.
async fn registration(app: &TestApp) -> AppRegistration {
    let id = unique_id("cert");
    app.add_connection(&id).await;
    app.serve(&id).await.app
}

/// A token request with `assertion`: the status and the error code.
async fn token_request(app: &TestApp, client_id: &str, assertion: &str) -> (u16, Value) {
    let response = http()
        .post(app.identity.token_url(TENANT))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", client_id),
            ("scope", GRAPH),
            ("client_assertion_type", ASSERTION_TYPE),
            ("client_assertion", assertion),
        ])
        .send()
        .await
        .expect("token request");
    let status = response.status().as_u16();
    (status, response.json().await.expect("json body"))
}

fn code(body: &Value) -> u64 {
    body["error_codes"][0].as_u64().unwrap_or_default()
}

/// An assertion made by hand: `claims`, signed by `signer`, its header
/// naming `named`'s certificate.
fn forged(signer: &CertificateKey, named: &CertificateKey, claims: &AssertionClaims) -> String {
    let der = pem_der(named.certificate_pem());
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::PS256);
    header.x5t_s256 = Some(URL_SAFE_NO_PAD.encode(Sha256::digest(&der)));
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(signer.private_key_pem().expose().as_bytes())
        .expect("key");
    jsonwebtoken::encode(&header, claims, &key).expect("signed")
}

fn pem_der(pem: &str) -> Vec<u8> {
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .expect("PEM body")
}

fn claims(app: &TestApp, nbf: i64, exp: i64) -> AssertionClaims {
    AssertionClaims {
        aud: app.identity.token_url(TENANT).to_string(),
        iss: CLIENT_ID.into(),
        sub: CLIENT_ID.into(),
        jti: uuid::Uuid::new_v4().to_string(),
        nbf,
        iat: nbf,
        exp,
    }
}

#[tokio::test]
async fn a_certificate_authenticates_the_app_and_every_bad_assertion_is_refused() {
    let app = spawn_app(StoreKind::File).await;
    let (registered, other) = keys();
    app.identity
        .add_certificate(CLIENT_ID, registered.certificate_pem())
        .expect("upload");
    let registration = registration(&app).await;

    // The product's adapter: an app-only Graph token, no secret sent.
    let client = OAuthClient::new(Duration::from_secs(5)).expect("client");
    let tokens = client
        .client_credentials(
            AppClient::new(&registration, &Credential::Certificate(registered.clone())),
            GRAPH,
        )
        .await
        .expect("an app-only token");
    assert!(
        app.identity
            .access_token_info(tokens.access_token.expose())
            .is_some()
    );
    assert!(
        tokens.refresh_token.is_none(),
        "client credentials have none"
    );

    let now = OffsetDateTime::now_utc().unix_timestamp();
    let audience = app.identity.token_url(TENANT).to_string();
    // One assertion, one request: the same jti again is refused.
    let once = registered
        .client_assertion(CLIENT_ID, &audience, OffsetDateTime::now_utc())
        .expect("assertion");
    assert_eq!(token_request(&app, CLIENT_ID, once.expose()).await.0, 200);
    let (status, replayed) = token_request(&app, CLIENT_ID, once.expose()).await;
    assert_eq!((status, code(&replayed)), (401, 700027), "{replayed}");
    assert!(
        replayed["error_description"]
            .as_str()
            .unwrap_or_default()
            .contains("jti")
    );

    let refusals = [
        (
            "signed by another key, naming the registered certificate",
            forged(other, registered, &claims(&app, now, now + 300)),
            700027,
        ),
        (
            "another key's own certificate, never uploaded",
            forged(other, other, &claims(&app, now, now + 300)),
            700027,
        ),
        (
            "expired a quarter of an hour ago",
            forged(
                registered,
                registered,
                &claims(&app, now - 1_200, now - 900),
            ),
            700024,
        ),
        (
            "valid for an hour",
            forged(registered, registered, &claims(&app, now, now + 3_600)),
            700024,
        ),
        (
            "for another tenant's token endpoint",
            forged(
                registered,
                registered,
                &AssertionClaims {
                    aud: app.identity.token_url("organizations").to_string(),
                    ..claims(&app, now, now + 300)
                },
            ),
            700027,
        ),
        (
            "issued for another client",
            forged(
                registered,
                registered,
                &AssertionClaims {
                    iss: VENDOR_CLIENT.into(),
                    ..claims(&app, now, now + 300)
                },
            ),
            700027,
        ),
    ];
    for (what, assertion, expected) in refusals {
        let (status, body) = token_request(&app, CLIENT_ID, &assertion).await;
        assert_eq!((status, code(&body)), (401, expected), "{what}: {body}");
        assert_eq!(body["error"], "invalid_client", "{what}");
    }
    assert_no_secret_logged(&[registered.private_key_pem().expose().to_owned()]);
}

#[tokio::test]
async fn an_expired_certificate_stops_the_app_as_misconfigured() {
    let app = spawn_app(StoreKind::File).await;
    let now = OffsetDateTime::now_utc();
    let short = CertificateKey::generate("one day", 1, now).expect("key");
    app.identity
        .add_certificate(CLIENT_ID, short.certificate_pem())
        .expect("upload");
    let registration = registration(&app).await;
    app.identity.advance_clock(Duration::from_secs(2 * 86_400));
    let client = OAuthClient::new(Duration::from_secs(5)).expect("client");
    let error = client
        .client_credentials(
            AppClient::new(&registration, &Credential::Certificate(short.clone())),
            GRAPH,
        )
        .await
        .expect_err("an expired certificate");
    assert_eq!(error.code(), "AADSTS700027");
    assert_eq!(error.class(), FailureClass::AppMisconfigured);
    assert!(error.to_string().contains("expired"), "{error}");
}

#[tokio::test]
async fn app_only_tokens_need_the_tenants_grant() {
    let app = spawn_app(StoreKind::File).await;
    let vendor_secret = unique_id("vendor-secret");
    register_vendor_app(&app, &vendor_secret);
    let request = |client_id: &'static str, secret: String| {
        let url = app.identity.token_url(TENANT);
        async move {
            let response = http()
                .post(url)
                .form(&[
                    ("grant_type", "client_credentials"),
                    ("client_id", client_id),
                    ("client_secret", secret.as_str()),
                    ("scope", GRAPH),
                ])
                .send()
                .await
                .expect("token request");
            let body: Value = response.json().await.expect("json");
            code(&body)
        }
    };
    assert_eq!(
        request(VENDOR_CLIENT, vendor_secret.clone()).await,
        7000229,
        "the multi-tenant app has no service principal in a tenant that never granted it"
    );
    assert_eq!(
        request("00000000-0000-4000-8000-00000000dead", vendor_secret).await,
        700016,
        "an app unknown everywhere"
    );
}

/// A delegated connection that authenticates with a certificate made by
/// `connection add --generate-certificate`: the app's client secret is
/// deleted at Microsoft, so only assertions can work.
async fn delegated_connection_with_a_certificate(kind: StoreKind) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store_dir = dir.path().join("store");
    let app = Setup::new(kind).store_dir(store_dir.clone()).spawn().await;
    let out_file = dir.path().join("uploaded.pem");
    let id = unique_id("cert");
    let args = [
        "--resources",
        "ews,graph",
        "--generate-certificate",
        "--certificate-days",
        "90",
        "--certificate-out",
        out_file.to_str().expect("path"),
    ];
    let added = app
        .add_with(&id, &args, "")
        .await
        .expect("connection add --generate-certificate");
    let certificate = printed_certificate(&added);
    assert_eq!(
        std::fs::read_to_string(&out_file).expect("written"),
        certificate
    );
    app.identity
        .add_certificate(CLIENT_ID, &certificate)
        .expect("upload");
    app.identity.remove_client_secret(&app.client_secret);

    let consent = app.consent(&id).await;
    assert_eq!(consent.status, 200, "{}", consent.body);
    let outcome = app.refresh_one(&id, true, app.broker.now()).await;
    assert!(
        matches!(
            outcome,
            roomtoken::flows::refresh::Outcome::Refreshed { .. }
        ),
        "{outcome:?}"
    );
    let key = app.create_key(&id).await;
    app.expire_read_cache();
    app.assert_serves_valid_token(&id, &key, Some("graph"))
        .await;

    let (status, view) = app.status_json(&id).await;
    assert_eq!(view["credential_expires"], date_in(90), "{view}");
    assert_eq!(view["state"], "connected");
    let shown = app
        .cli(&["connection", "show", &id], "")
        .await
        .expect("show");
    assert!(shown.contains("certificate: thumbprint"), "{shown}");

    let private_key = app.certificate_private_key(&id).await;
    let mut secrets = app.secrets(&[&key]);
    secrets.push(private_key.clone());
    for (place, text) in [
        ("connection add", &added),
        ("status", &status),
        ("connection show", &shown),
        ("the consent page", &consent.body),
    ] {
        assert_no_secret_in(text, place, &secrets);
    }
    // The serve secret holds access tokens by design, never the key.
    let serve = serde_json::to_string(&app.serve(&id).await).expect("serve json");
    assert_no_secret_in(
        &serve,
        "the serve secret",
        std::slice::from_ref(&private_key),
    );
    assert_no_secret_logged(&secrets);
    if kind == StoreKind::File {
        key_only_in_the_grant_file(&store_dir, &id, &private_key);
    }
}

/// On the file store the private key is in one file, the connection's
/// grant, readable by its owner only (0600, in a 0700 directory).
fn key_only_in_the_grant_file(store: &std::path::Path, id: &str, private_key: &str) {
    use std::os::unix::fs::PermissionsExt;
    let mode = |path: &std::path::Path| {
        std::fs::metadata(path)
            .expect("metadata")
            .permissions()
            .mode()
            & 0o777
    };
    let connection = store.join("connections").join(id);
    let grant = connection.join("grant.json");
    assert_eq!(mode(&grant), 0o600, "{}", grant.display());
    assert_eq!(mode(&connection), 0o700, "{}", connection.display());
    // A line of the key's base64 body: the same in any JSON around it.
    let body_line = private_key
        .lines()
        .find(|line| line.len() >= 64 && !line.starts_with("-----"))
        .expect("a PEM body line");
    let mut holding = Vec::new();
    let mut dirs = vec![store.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("read dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else if std::fs::read_to_string(&path).is_ok_and(|text| text.contains(body_line)) {
                holding.push(path);
            }
        }
    }
    assert_eq!(holding, vec![grant], "the key is in the grant file only");
}

#[tokio::test]
async fn a_delegated_connection_authenticates_with_a_certificate_on_the_file_store() {
    delegated_connection_with_a_certificate(StoreKind::File).await;
}

#[tokio::test]
#[cfg_attr(not(feature = "services"), ignore = "needs moto: scripts/test.sh")]
async fn a_delegated_connection_authenticates_with_a_certificate_on_secrets_manager() {
    delegated_connection_with_a_certificate(StoreKind::SecretsManager).await;
}

/// The operator's own key and certificate (`--certificate-file`); then a new
/// one (`connection update --generate-certificate`) replaces it; and when the
/// certificate expires the connection stops as `app_misconfigured` with
/// advice that names the certificate.
#[tokio::test]
async fn a_certificate_from_a_file_is_replaced_and_its_expiry_is_advised() {
    let app = spawn_app(StoreKind::File).await;
    let (registered, _) = keys();
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("key-and-certificate.pem");
    std::fs::write(
        &file,
        format!(
            "{}{}",
            registered.private_key_pem().expose(),
            registered.certificate_pem()
        ),
    )
    .expect("write");
    app.identity
        .add_certificate(CLIENT_ID, registered.certificate_pem())
        .expect("upload");
    app.identity.remove_client_secret(&app.client_secret);
    let id = unique_id("cert-file");
    let args = ["--certificate-file", file.to_str().expect("path")];
    let added = app
        .add_with(&id, &args, "")
        .await
        .expect("connection add --certificate-file");
    assert!(
        !added.contains("BEGIN CERTIFICATE"),
        "the operator's own: {added}"
    );
    assert_eq!(app.consent(&id).await.status, 200);

    // A new certificate, valid a day; uploaded; the old one deleted.
    let updated = app
        .cli(
            &[
                "connection",
                "update",
                &id,
                "--generate-certificate",
                "--certificate-days",
                "1",
            ],
            "",
        )
        .await
        .expect("connection update --generate-certificate");
    app.identity.remove_certificates(CLIENT_ID);
    app.identity
        .add_certificate(CLIENT_ID, &printed_certificate(&updated))
        .expect("upload");
    let outcome = app.refresh_one(&id, true, app.broker.now()).await;
    assert!(
        matches!(
            outcome,
            roomtoken::flows::refresh::Outcome::Refreshed { .. }
        ),
        "{outcome:?}"
    );
    let (_, view) = app.status_json(&id).await;
    assert!(
        view["advice"]
            .as_str()
            .is_some_and(|a| a.starts_with("credential_expiring: the certificate")),
        "{view}"
    );

    // Two days later at Microsoft: the certificate has expired.
    app.identity.advance_clock(Duration::from_secs(2 * 86_400));
    let outcome = app.refresh_one(&id, true, app.broker.now()).await;
    assert!(
        matches!(&outcome, roomtoken::flows::refresh::Outcome::Failed(e)
            if e.code == "AADSTS700027" && e.class == FailureClass::AppMisconfigured),
        "{outcome:?}"
    );
    let (_, view) = app.status_json(&id).await;
    assert_eq!(view["state"], "app_misconfigured");
    assert!(
        view["advice"]
            .as_str()
            .is_some_and(|a| a.contains("certificate")),
        "{view}"
    );
}

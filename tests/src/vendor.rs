//! Vendor-app connections in the tests: the vendor's multi-tenant app in
//! the fake, `vendor-app set`, a customer admin, and connections using it.

use crate::{TENANT, TestApp, http, location, unique_id};
use roomtoken_fake_identity::{FakeAccount, FakeApp};

pub const VENDOR_TENANT: &str = "0e1d2c3b-4a59-4687-9a1b-2c3d4e5f6a7b";
pub const VENDOR_CLIENT: &str = "7c6b5a49-3827-4165-a4b3-c2d1e0f9a8b7";
pub const EWS: &str = "https://outlook.office365.com/EWS.AccessAsUser.All";
pub const GRAPH: [&str; 4] = [
    "https://graph.microsoft.com/Calendars.ReadWrite",
    "https://graph.microsoft.com/Calendars.ReadWrite.Shared",
    "https://graph.microsoft.com/Place.Read.All",
    "https://graph.microsoft.com/User.Read",
];
pub const ADMIN: &str = "admin@contoso.com";

/// `roomtoken vendor-app set` with `client_id` and `secret` (on stdin).
pub async fn set_vendor_app(
    app: &TestApp,
    client_id: &str,
    secret: &str,
) -> Result<String, String> {
    let authority = app.identity.base_url().to_string();
    app.cli(
        &[
            "vendor-app",
            "set",
            "--client-id",
            client_id,
            "--client-secret-stdin",
            "--authority",
            &authority,
        ],
        secret,
    )
    .await
}

/// `roomtoken vendor-app set --generate-certificate`, valid `days`, and
/// the certificate it printed uploaded to the vendor's app in the fake
/// (whose client secret nobody is given); returns what was printed.
pub async fn set_vendor_app_with_certificate(app: &TestApp, days: u32) -> String {
    register_vendor_app(app, &unique_id("never-given"));
    let authority = app.identity.base_url().to_string();
    let days = days.to_string();
    let printed = app
        .cli(
            &[
                "vendor-app",
                "set",
                "--client-id",
                VENDOR_CLIENT,
                "--authority",
                &authority,
                "--generate-certificate",
                "--certificate-days",
                &days,
            ],
            "",
        )
        .await
        .expect("vendor-app set --generate-certificate");
    app.identity
        .add_certificate(VENDOR_CLIENT, &crate::printed_certificate(&printed))
        .expect("upload");
    printed
}

/// The vendor app's private key (its certificate's), as stored.
pub async fn vendor_private_key(app: &TestApp) -> String {
    let vendor = app.broker.repo.vendor_app().await.expect("store");
    let certificate = vendor
        .and_then(|v| v.certificate)
        .expect("a vendor app with a certificate");
    certificate.private_key_pem().expose().to_owned()
}

/// The vendor's multi-tenant app in the fake (registered again: its secret
/// replaced), with the permissions of the EWS and Graph presets.
pub fn register_vendor_app(app: &TestApp, secret: &str) {
    let mut permissions = vec![EWS.to_owned()];
    permissions.extend(GRAPH.map(String::from));
    app.identity.register_app(FakeApp {
        tenant: VENDOR_TENANT.into(),
        client_id: VENDOR_CLIENT.into(),
        client_secret: secret.to_owned(),
        redirect_uris: vec![format!("{}callback", app.url)],
        multi_tenant: true,
        permissions,
    });
}

/// The customer's administrator ([`ADMIN`]) in the fake's tenant.
pub fn add_admin(app: &TestApp) {
    app.identity.add_account(FakeAccount {
        tenant: TENANT.into(),
        oid: "0000ad01-0000-4000-8000-000000000000".into(),
        username: ADMIN.into(),
        name: "Contoso admin".into(),
        admin: true,
    });
}

/// The vendor's app in the fake, the vendor app set, one vendor connection.
pub async fn vendor_connection(app: &TestApp) -> (String, String) {
    let vendor_secret = format!("vendor-secret-{}", unique_id("v"));
    register_vendor_app(app, &vendor_secret);
    add_admin(app);
    let printed = set_vendor_app(app, VENDOR_CLIENT, &vendor_secret)
        .await
        .expect("vendor-app set");
    assert!(printed.contains(VENDOR_CLIENT), "{printed}");
    let shown = app.cli(&["vendor-app", "show"], "").await.expect("show");
    assert!(!shown.contains(&vendor_secret), "never shown: {shown}");

    let id = unique_id("vendor");
    let added = add_vendor_connection(app, &id).await;
    assert!(added.contains("vendor app"), "{added}");
    (id, vendor_secret)
}

/// `connection add ID --vendor-app --tenant` the customer's tenant.
pub async fn add_vendor_connection(app: &TestApp, id: &str) -> String {
    app.cli(
        &["connection", "add", id, "--vendor-app", "--tenant", TENANT],
        "",
    )
    .await
    .expect("connection add --vendor-app --tenant")
}

/// The customer's admin grants the vendor app for the organization (what
/// the admin-consent step of the link will do), one resource at a time.
pub async fn admin_consents(app: &TestApp) {
    admin_consents_as(app, ADMIN).await;
}

/// [`admin_consents`] by `admin`, in that administrator's own tenant.
pub async fn admin_consents_as(app: &TestApp, admin: &str) {
    app.identity.set_auto_admin_consent(Some(admin));
    for scope in [
        "https://outlook.office365.com/.default",
        "https://graph.microsoft.com/.default",
    ] {
        let mut url = app.identity.admin_consent_url("organizations");
        url.query_pairs_mut()
            .append_pair("client_id", VENDOR_CLIENT)
            .append_pair("scope", scope)
            .append_pair("redirect_uri", &format!("{}callback", app.url))
            .append_pair("state", "admin");
        let answer = http().get(url).send().await.expect("adminconsent");
        assert!(
            location(&answer)
                .query()
                .unwrap_or_default()
                .contains("admin_consent=True"),
            "{}",
            location(&answer)
        );
    }
}

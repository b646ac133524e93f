//! Vendor-app connections: the deployment's multi-tenant app, no secret per
//! connection, and the customer's tenant named when the connection is
//! added. The booking account signs in at that tenant's own endpoint once
//! the customer's admin has consented; the first sign-in's `tid` must be
//! that tenant's, and every later request goes there.

use roomtoken::domain::{ConnectionId, ConnectionState, FailureClass, Provider};
use roomtoken::flows::refresh::{Outcome, PassOptions, refresh_pass};
use roomtoken_tests::vendor::*;
use roomtoken_tests::{
    ACCOUNT, CLIENT_ID, Setup, StoreKind, TENANT, TestApp, assert_no_secret_logged, cookies_set,
    date_in, http, location, on_both_stores, spawn_app, unique_id,
};

async fn vendor_path(kind: StoreKind) {
    // Its own prefix: the vendor app (a system secret) is this test's.
    let app = Setup::new(kind).isolated_prefix().spawn().await;
    let (id, vendor_secret) = vendor_connection(&app).await;

    // Before the admin consents, the sign-in is refused and nothing is stored.
    let sign_in = format!("{}&step=sign-in", app.link(&id).await);
    let refused = app.consent_at(&sign_in).await;
    assert_eq!(refused.status, 400, "{}", refused.body);
    assert!(
        refused
            .body
            .contains("An administrator must grant the app first"),
        "{}",
        refused.body
    );
    assert!(
        refused.authorize.path().starts_with(&format!("/{TENANT}/")),
        "{}",
        refused.authorize
    );
    assert!(app.grant(&id).await.is_none());

    admin_consents(&app).await;
    let consent = app.consent_at(&sign_in).await;
    assert_eq!(consent.status, 200, "{}", consent.body);
    assert!(consent.body.contains(ACCOUNT), "{}", consent.body);
    let serve = app.serve(&id).await;
    assert!(
        matches!(&serve.app.provider, Provider::Microsoft { tenant, .. } if tenant == TENANT),
        "pinned to the signed-in tenant: {:?}",
        serve.app.provider
    );

    // A refresh goes to the signed-in tenant, with the vendor's secret.
    let options = PassOptions {
        only: Some(ConnectionId::parse(&id).expect("id")),
        force: true,
    };
    let report = refresh_pass(&app.broker, &options, app.broker.now())
        .await
        .expect("pass");
    assert!(
        matches!(report.results[0].outcome, Outcome::Refreshed { .. }),
        "{:?}",
        report.results[0].outcome
    );
    let key = app.create_key(&id).await;
    app.expire_read_cache();
    let read = app.get_token(&id, Some(&key), Some("graph")).await;
    assert_eq!(read.status(), 200);
    let body: serde_json::Value = read.json().await.expect("json");
    let issued = app
        .identity
        .access_token_info(body["access_token"].as_str().expect("token"))
        .expect("issued by the fake");
    assert_eq!(issued.tenant, TENANT);
    assert_eq!(issued.client_id, VENDOR_CLIENT);

    let mut secrets = app.secrets(&[&key]);
    secrets.push(vendor_secret);
    assert_no_secret_logged(&secrets);
}

on_both_stores!(vendor_path => a_vendor_connection_works_once_the_tenant_consented_on_the_file_store, a_vendor_connection_works_once_the_tenant_consented_on_secrets_manager);

#[tokio::test]
async fn a_vendor_connection_needs_a_vendor_app() {
    let app = spawn_app(StoreKind::File).await;
    let refused = app
        .cli(
            &["connection", "add", &unique_id("novendor"), "--vendor-app"],
            "",
        )
        .await
        .expect_err("refused");
    assert!(refused.contains("roomtoken vendor-app set"), "{refused}");
}

/// The href of the link whose text is `text` (pages link, they post nothing).
fn link_to(page: &str, base: &url::Url, text: &str) -> url::Url {
    let at = page
        .find(text)
        .unwrap_or_else(|| panic!("no '{text}' in {page}"));
    let start = page[..at]
        .rfind("href=\"")
        .expect("an href before the text")
        + 6;
    let end = start + page[start..].find('"').expect("end of href");
    let href = page[start..end].replace("&amp;", "&");
    base.join(&href).expect("a link")
}

/// The browser's part: GET `url` with `cookie`; a redirect to the fake is
/// followed there, and its redirect back to the callback too, with the
/// cookies the broker set. Returns the last page and the cookies in play.
async fn browse(url: url::Url, cookie: &str) -> (u16, String, String) {
    let mut cookie = cookie.to_owned();
    let mut next = url;
    loop {
        let mut request = http().get(next.clone());
        if !cookie.is_empty() {
            request = request.header("cookie", &cookie);
        }
        let response = request.send().await.expect("GET");
        let set = cookies_set(&response);
        if !set.is_empty() {
            cookie = set;
        }
        if response.status() != 302 {
            let status = response.status().as_u16();
            return (status, response.text().await.expect("page"), cookie);
        }
        next = location(&response);
    }
}

/// The whole link, page by page: the page says who asks for what; the
/// sign-in before any grant is refused with a way to grant; an admin who
/// declines is told what it means; after the grant the booking account
/// signs in and the connection serves tokens.
#[tokio::test]
async fn the_link_leads_an_admin_through_consent_then_the_booking_account() {
    let app = spawn_app(StoreKind::File).await;
    let (id, _) = vendor_connection(&app).await;
    let link: url::Url = app.link(&id).await.parse().expect("link");

    let (status, intro, _) = browse(link.clone(), "").await;
    assert_eq!(status, 200, "{intro}");
    assert!(
        intro.contains("Place.Read.All") && intro.contains("rooms"),
        "{intro}"
    );
    assert!(!intro.contains(ACCOUNT), "no account named: {intro}");
    app.cli(
        &["connection", "update", &id, "--booking-account", ACCOUNT],
        "",
    )
    .await
    .expect("name the booking account");
    let (_, intro, _) = browse(link.clone(), "").await;
    assert!(
        intro.contains(&format!("Sign in as <strong>{ACCOUNT}</strong>")),
        "the page names the account to sign in with: {intro}"
    );
    let grant = link_to(&intro, &link, "Grant for my organization");
    let sign_in = link_to(&intro, &link, "Sign in as the booking account");

    // Signing in before the organization granted the app.
    let (status, page, _) = browse(sign_in.clone(), "").await;
    assert_eq!(status, 400, "{page}");
    assert!(
        page.contains("An administrator must grant the app first"),
        "{page}"
    );
    let again = link_to(&page, &link, "Grant for my organization");
    assert_eq!(
        again.query_pairs().find(|(k, _)| k == "step").unwrap().1,
        "admin-consent"
    );

    // An administrator who declines.
    app.identity.set_auto_admin_consent(None);
    let (status, consent_page, cookie) = browse(grant.clone(), "").await;
    assert_eq!(status, 200, "the fake's consent page: {consent_page}");
    let form: Vec<(String, String)> = ["client_id", "scope", "redirect_uri", "state"]
        .iter()
        .map(|name| {
            let marker = format!("name=\"{name}\" value=\"");
            let at = consent_page.find(&marker).expect("hidden field") + marker.len();
            let end = at + consent_page[at..].find('"').expect("end");
            (
                name.to_string(),
                consent_page[at..end].replace("&amp;", "&"),
            )
        })
        .collect();
    let mut declined = form.clone();
    declined.push(("action".into(), "cancel".into()));
    let answer = http()
        .post(app.identity.admin_consent_url("organizations"))
        .form(&declined)
        .send()
        .await
        .expect("POST cancel");
    let (status, page, _) = browse(location(&answer), &cookie).await;
    assert_eq!(status, 400, "{page}");
    assert!(
        page.contains("The app was not granted") && page.contains("access_denied"),
        "{page}"
    );
    assert!(app.grant(&id).await.is_none(), "nothing stored");

    // The administrator grants; then the booking account signs in.
    app.identity.set_auto_admin_consent(Some(ADMIN));
    let (status, page, _) = browse(grant, "").await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("Granted for your organization"), "{page}");
    assert!(
        app.grant(&id).await.is_none(),
        "an admin consent stores nothing"
    );
    let next = link_to(&page, &link, "Sign in as the booking account");
    let (status, page, _) = browse(next, "").await;
    assert_eq!(status, 200, "{page}");
    assert!(
        page.contains("Connected as") && page.contains(ACCOUNT),
        "{page}"
    );
    assert!(app.grant(&id).await.is_some());
}

/// A vendor connection's app is the vendor app's: `connection update` may
/// not give it a client id or secret of its own, and `--reset-account`
/// forgets the account, not its organization. The vendor app's client id is fixed once
/// connections use it; its secret can be replaced.
#[tokio::test]
async fn the_vendor_app_is_changed_in_one_place() {
    let app = spawn_app(StoreKind::File).await;
    let (id, vendor_secret) = vendor_connection(&app).await;
    admin_consents(&app).await;
    let sign_in = format!("{}&step=sign-in", app.link(&id).await);
    assert_eq!(app.consent_at(&sign_in).await.status, 200);

    let refused = app
        .cli(&["connection", "update", &id, "--client-id", CLIENT_ID], "")
        .await
        .expect_err("a vendor connection has no client id of its own");
    assert!(refused.contains("uses the vendor app"), "{refused}");
    app.cli(&["connection", "update", &id, "--reset-account"], "")
        .await
        .expect("reset");
    let serve = app.serve(&id).await;
    assert!(serve.app.is_vendor(), "still a vendor connection");
    assert!(
        matches!(&serve.app.provider, Provider::Microsoft { tenant, .. } if tenant == TENANT),
        "the organization stays pinned: {:?}",
        serve.app.provider
    );
    let old_link = http().get(&sign_in).send().await.expect("GET old link");
    assert_eq!(
        old_link.status(),
        410,
        "a reset revokes the links sent before"
    );
    let sign_in = format!("{}&step=sign-in", app.link(&id).await);
    assert_eq!(app.consent_at(&sign_in).await.status, 200, "connects again");

    let other = set_vendor_app(&app, CLIENT_ID, "another-secret")
        .await
        .expect_err("another app registration");
    assert!(other.contains("fixed once set"), "{other}");
    set_vendor_app(&app, VENDOR_CLIENT, &vendor_secret)
        .await
        .expect("a new secret for the same app");
}

async fn refresh(app: &TestApp, id: &ConnectionId) -> Outcome {
    let options = PassOptions {
        only: Some(id.clone()),
        force: true,
    };
    let report = refresh_pass(&app.broker, &options, app.broker.now())
        .await
        .expect("pass");
    report.results[0].outcome.clone()
}

/// When the vendor app's secret expires (or the vendor app is gone), its
/// connections stop as `app_misconfigured`, and one `vendor-app set` with
/// a new secret sends every one of them back to work.
#[tokio::test]
async fn one_vendor_app_set_revives_every_connection_a_bad_secret_stopped() {
    let app = spawn_app(StoreKind::File).await;
    let (id, _) = vendor_connection(&app).await;
    admin_consents(&app).await;
    let sign_in = format!("{}&step=sign-in", app.link(&id).await);
    assert_eq!(app.consent_at(&sign_in).await.status, 200);
    let connection = ConnectionId::parse(&id).expect("id");

    // The secret is replaced at Microsoft: the stored one no longer works.
    let new_secret = format!("vendor-secret-{}", unique_id("new"));
    register_vendor_app(&app, &new_secret);
    let failed = refresh(&app, &connection).await;
    assert!(
        matches!(&failed, Outcome::Failed(e) if e.class == FailureClass::AppMisconfigured),
        "{failed:?}"
    );
    assert_eq!(
        app.status(&id).await.state,
        ConnectionState::AppMisconfigured
    );

    let printed = set_vendor_app(&app, VENDOR_CLIENT, &new_secret)
        .await
        .expect("vendor-app set");
    assert!(printed.contains("1 vendor connection(s)"), "{printed}");
    assert_eq!(app.status(&id).await.state, ConnectionState::Degraded);
    let outcome = refresh(&app, &connection).await;
    assert!(matches!(outcome, Outcome::Refreshed { .. }), "{outcome:?}");

    // No vendor app at all: said so, and nothing is asked of Microsoft.
    app.broker
        .repo
        .store()
        .delete("system/vendor-app")
        .await
        .expect("delete");
    let requests = app.identity.counters().token_requests;
    let missing = refresh(&app, &connection).await;
    assert!(
        matches!(&missing, Outcome::Failed(e) if e.code == "no_vendor_app"),
        "{missing:?}"
    );
    assert_eq!(app.identity.counters().token_requests, requests);
    assert_eq!(
        app.status(&id).await.state,
        ConnectionState::AppMisconfigured
    );
}

const FABRIKAM: &str = "9f8e7d6c-5b4a-4392-8a1b-0c9d8e7f6a5b";
const FABRIKAM_ADMIN: &str = "admin@fabrikam.example";
const FABRIKAM_USER: &str = "booking@fabrikam.example";

/// Another customer of the vendor: its tenant granted the vendor app too.
async fn another_customer(app: &TestApp) {
    for (n, username) in [FABRIKAM_ADMIN, FABRIKAM_USER].into_iter().enumerate() {
        app.identity
            .add_account(roomtoken_fake_identity::FakeAccount {
                tenant: FABRIKAM.into(),
                oid: format!("0000f0f{n}-0000-4000-8000-000000000000"),
                username: username.into(),
                name: username.into(),
                admin: n == 0,
            });
    }
    admin_consents_as(app, FABRIKAM_ADMIN).await;
}

/// Opens a vendor link's sign-in step, which must send the browser to the
/// customer's own endpoint, and signs in there as the fake's auto-consent
/// account: Microsoft's status and page.
async fn sign_in_at_the_customers_endpoint(sign_in: &str) -> (u16, String) {
    let start = http().get(sign_in).send().await.expect("GET link");
    assert_eq!(start.status(), 302);
    let authorize = location(&start);
    assert!(
        authorize.path().starts_with(&format!("/{TENANT}/")),
        "{authorize}"
    );
    let answer = http().get(authorize).send().await.expect("sign-in");
    let status = answer.status().as_u16();
    (status, answer.text().await.expect("page"))
}

/// A vendor link is bound to its customer's organization: without
/// `--tenant` nothing is added; a domain is stored as the tenant id; a
/// user of another organization that granted the vendor app is refused by
/// Microsoft at the customer's own endpoint, before any code exists; and
/// a connection stored without a tenant (before links were bound) is
/// refused on its link until the operator names its organization.
async fn vendor_link_bound_to_its_tenant(kind: StoreKind) {
    // Its own prefix: the vendor app (a system secret) is this test's.
    let app = Setup::new(kind).isolated_prefix().spawn().await;
    let (_, _) = vendor_connection(&app).await;
    admin_consents(&app).await;
    another_customer(&app).await;

    let id = unique_id("vendor-bound");
    let unbound = app
        .cli(&["connection", "add", &id, "--vendor-app"], "")
        .await
        .expect_err("a vendor connection without its tenant");
    assert!(unbound.contains("--tenant"), "{unbound}");
    let stored = app
        .broker
        .repo
        .serve(&ConnectionId::parse(&id).expect("id"))
        .await;
    assert!(stored.expect("store").is_none(), "nothing stored");
    app.identity.add_domain(TENANT, "contoso-bound.com");
    app.cli(
        &[
            "connection",
            "add",
            &id,
            "--vendor-app",
            "--tenant",
            "contoso-bound.com",
        ],
        "",
    )
    .await
    .expect("connection add --vendor-app --tenant <domain>");
    let serve = app.serve(&id).await;
    assert!(
        matches!(&serve.app.provider, Provider::Microsoft { tenant, .. } if tenant == TENANT),
        "the domain is stored as the tenant id: {:?}",
        serve.app.provider
    );

    // The other customer's user, sent the link: Microsoft refuses the
    // sign-in at the customer's endpoint, and issues no code.
    let codes = app.identity.counters().authorization_code_grants;
    app.identity.set_auto_consent(Some(FABRIKAM_USER));
    let sign_in = format!("{}&step=sign-in", app.link(&id).await);
    let (status, page) = sign_in_at_the_customers_endpoint(&sign_in).await;
    assert_eq!(status, 400);
    assert!(page.contains("AADSTS50020"), "the page says why: {page}");
    assert_eq!(app.identity.counters().authorization_code_grants, codes);
    assert!(app.grant(&id).await.is_none(), "nothing stored");
    assert_eq!(app.status(&id).await.state, ConnectionState::PendingConsent);

    // A connection stored before links were bound names no tenant: its
    // link says so, and nothing reaches Microsoft.
    app.change_serve(&id, |record| {
        record.app.provider = Provider::Microsoft {
            tenant: "organizations".into(),
            cloud: Default::default(),
            authority: record.app.provider.authority().cloned(),
        };
    })
    .await;
    let authorizes = app.identity.counters().authorize_requests;
    for step in ["", "&step=sign-in", "&step=admin-consent"] {
        let link = format!("{}{step}", app.link(&id).await);
        let page = http().get(&link).send().await.expect("GET link");
        assert_eq!(page.status(), 409, "{step}");
        let body = page.text().await.expect("page");
        assert!(
            body.contains("does not name your organization")
                && body.contains("connection update --tenant"),
            "{body}"
        );
    }
    assert_eq!(app.identity.counters().authorize_requests, authorizes);

    // The operator names it; the customer's booking account connects.
    app.cli(&["connection", "update", &id, "--tenant", TENANT], "")
        .await
        .expect("connection update --tenant");
    app.identity.set_auto_consent(Some(ACCOUNT));
    let consent = app.consent_at(&sign_in).await;
    assert_eq!(consent.status, 200, "{}", consent.body);
    assert_eq!(
        app.grant(&id).await.expect("a grant").account.display,
        ACCOUNT
    );
    // Connected: its tenant is pinned.
    let pinned = app
        .cli(&["connection", "update", &id, "--tenant", FABRIKAM], "")
        .await
        .expect_err("a connected vendor connection keeps its tenant");
    assert!(pinned.contains("--reset-account"), "{pinned}");
}

on_both_stores!(vendor_link_bound_to_its_tenant => a_vendor_link_connects_only_its_own_organization_on_the_file_store, a_vendor_link_connects_only_its_own_organization_on_secrets_manager);

/// Once a vendor connection is connected, its organization is pinned: the
/// booking account of another organization cannot take it over, and the
/// connection keeps its grant.
#[tokio::test]
async fn another_organization_cannot_take_a_connected_vendor_link() {
    let app = spawn_app(StoreKind::File).await;
    let (id, _) = vendor_connection(&app).await;
    admin_consents(&app).await;
    let sign_in = format!("{}&step=sign-in", app.link(&id).await);
    assert_eq!(app.consent_at(&sign_in).await.status, 200);
    let before = app.grant(&id).await.expect("a grant");

    another_customer(&app).await;
    app.identity.set_auto_consent(Some(FABRIKAM_USER));
    let (status, _) = sign_in_at_the_customers_endpoint(&sign_in).await;
    assert_eq!(
        status, 400,
        "Microsoft refuses an account of another organization"
    );
    let after = app.grant(&id).await.expect("still a grant");
    assert_eq!(after.account, before.account);
}

/// The vendor app's client secret has an expiry like any other: `vendor-app
/// set --client-secret-expires` gives it to every vendor connection (and to
/// those added later), whose status then warns from 30 days before and
/// tells the operator to renew it in one place.
#[tokio::test]
async fn the_vendor_apps_secret_expiry_reaches_every_vendor_connection() {
    let app = spawn_app(StoreKind::File).await;
    let (first, vendor_secret) = vendor_connection(&app).await;
    let authority = app.identity.base_url().to_string();
    let set_with_expiry = |date: String| {
        let args = [
            "vendor-app",
            "set",
            "--client-id",
            VENDOR_CLIENT,
            "--client-secret-stdin",
            "--authority",
            &authority,
            "--client-secret-expires",
            &date,
        ]
        .map(str::to_owned);
        let app = &app;
        let secret = vendor_secret.clone();
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            app.cli(&args, &secret).await
        }
    };
    let past = set_with_expiry(date_in(-1))
        .await
        .expect_err("an expiry in the past");
    assert!(past.contains(&date_in(-1)), "{past}");
    set_with_expiry(date_in(20)).await.expect("vendor-app set");
    let shown = app.cli(&["vendor-app", "show"], "").await.expect("show");
    assert!(
        shown.contains(&format!("{} (20 days left)", date_in(20))),
        "{shown}"
    );
    assert_eq!(shown.matches("expires:").count(), 1, "{shown}");
    let second = unique_id("vendor-later");
    add_vendor_connection(&app, &second).await;
    admin_consents(&app).await;
    let sign_in = format!("{}&step=sign-in", app.link(&first).await);
    assert_eq!(app.consent_at(&sign_in).await.status, 200);
    for id in [&first, &second] {
        let printed = app
            .cli(&["status", id, "--json"], "")
            .await
            .expect("status");
        let view: serde_json::Value = serde_json::from_str(&printed).expect("json");
        assert_eq!(view["credential_expires"], date_in(20), "{id}: {view}");
        assert_eq!(view["credential_days_left"], 20, "{id}");
        assert_eq!(view["needs_human"], true, "{id}");
        if id == &second {
            continue; // not consented yet: its state's advice comes first
        }
        let advice = view["advice"].as_str().unwrap_or_default();
        assert!(
            advice.starts_with("credential_expiring")
                && advice.contains("roomtoken vendor-app set"),
            "{id}: {advice}"
        );
    }
    assert!(!shown.contains(&vendor_secret));
}

/// The vendor app authenticates with a certificate made by `vendor-app set
/// --generate-certificate`: its client secret never reaches the broker, and
/// every vendor connection consents and refreshes with assertions.
async fn vendor_app_with_a_certificate(kind: StoreKind) {
    // Its own prefix: the vendor app (a system secret) is this test's.
    let app = Setup::new(kind).isolated_prefix().spawn().await;
    add_admin(&app);
    let printed = set_vendor_app_with_certificate(&app, 200).await;
    let shown = app.cli(&["vendor-app", "show"], "").await.expect("show");
    assert!(
        shown.contains("certificate:") && shown.contains("(200 days left)"),
        "{shown}"
    );
    assert!(!shown.contains("PRIVATE KEY") && !printed.contains("PRIVATE KEY"));

    let id = unique_id("vendor-cert");
    add_vendor_connection(&app, &id).await;
    admin_consents(&app).await;
    let sign_in = format!("{}&step=sign-in", app.link(&id).await);
    let consent = app.consent_at(&sign_in).await;
    assert_eq!(consent.status, 200, "{}", consent.body);
    let connection = ConnectionId::parse(&id).expect("id");
    let outcome = refresh(&app, &connection).await;
    assert!(matches!(outcome, Outcome::Refreshed { .. }), "{outcome:?}");
    let (_, view) = app.status_json(&id).await;
    assert_eq!(view["credential_expires"], date_in(200), "{view}");
}

#[tokio::test]
async fn the_vendor_app_can_authenticate_with_a_certificate_on_the_file_store() {
    vendor_app_with_a_certificate(StoreKind::File).await;
}

#[tokio::test]
#[cfg_attr(not(feature = "services"), ignore = "needs moto: scripts/test.sh")]
async fn the_vendor_app_can_authenticate_with_a_certificate_on_secrets_manager() {
    vendor_app_with_a_certificate(StoreKind::SecretsManager).await;
}

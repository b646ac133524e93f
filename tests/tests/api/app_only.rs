//! App-only connections (issue 14, item 1): `connection add --app-only`
//! with a certificate; the link leads the customer's admin through
//! Microsoft's admin consent (nobody signs in); the callback proves the
//! grant with a first client-credentials token for the connection's own
//! tenant; displays are served the app's tokens, and the refresh pass mints
//! new ones before the old ones are due, with no refresh token anywhere.

use roomtoken::domain::{FailureClass, Provider};
use roomtoken::flows::callback::GRANT_REPLICATION_WAITS;
use roomtoken::flows::refresh::Outcome;
use roomtoken_tests::vendor::{
    ADMIN, VENDOR_CLIENT, VENDOR_TENANT, add_admin, set_vendor_app_with_certificate,
    vendor_private_key,
};
use roomtoken_tests::{
    CLIENT_ID, RecordingSleeper, Setup, StoreKind, TENANT, TestApp, assert_no_secret_in,
    assert_no_secret_logged, cookies_set, date_in, http, location, on_both_stores,
    printed_certificate, spawn_app, unique_id,
};
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

/// `id`'s consent link, and where it sends the browser: straight to the
/// admin-consent page of the connection's tenant.
async fn to_admin_consent(app: &TestApp, id: &str) -> (String, url::Url) {
    let link = app.link(id).await;
    let start = http().get(&link).send().await.expect("GET link");
    assert_eq!(start.status(), 302);
    let to = location(&start);
    assert!(
        to.path().ends_with(&format!("{TENANT}/v2.0/adminconsent")),
        "straight to the tenant's admin consent: {to}"
    );
    (link, to)
}

async fn app_only_path(kind: StoreKind) {
    let app = spawn_app(kind).await;
    add_admin(&app);
    let id = unique_id("app-only");
    let args = [
        "--app-only",
        "--resources",
        "graph,ews",
        "--generate-certificate",
    ];
    let added = app
        .add_with(&id, &args, "")
        .await
        .expect("connection add --app-only");
    app.identity
        .add_certificate(CLIENT_ID, &printed_certificate(&added))
        .expect("upload");
    app.identity.remove_client_secret(&app.client_secret);

    // Before the grant: the link's admin refuses, nothing is stored.
    let (link, to) = to_admin_consent(&app, &id).await;
    assert!(
        to.query()
            .unwrap_or_default()
            .contains("graph.microsoft.com%2F.default"),
        "{to}"
    );

    app.identity.set_auto_admin_consent(Some(ADMIN));
    let consent = app.consent_at(&link).await;
    assert_eq!(consent.status, 200, "{}", consent.body);
    assert!(consent.body.contains("app-only"), "{}", consent.body);

    // The same answer again (a replay, or the back button) mints nothing.
    let minted = app.identity.counters().client_credentials_grants;
    let replayed = http()
        .get(consent.callback.clone())
        .header("cookie", &consent.cookie)
        .send()
        .await
        .expect("callback again");
    assert!(replayed.status().is_client_error(), "{}", replayed.status());
    assert_eq!(app.identity.counters().client_credentials_grants, minted);

    let (status, view) = app.status_json(&id).await;
    assert_eq!(view["mode"], "app_only", "{view}");
    assert_eq!(view["state"], "connected");
    assert!(app.grant(&id).await.is_none(), "no refresh token, no grant");

    let key = app.create_key(&id).await;
    let first = app.served_token(&id, &key, Some("graph")).await;
    let issued = app.identity.access_token_info(&first).expect("honoured");
    assert_eq!(issued.username, "", "an app-only token, no user");
    assert_eq!(issued.resource, "https://graph.microsoft.com");
    assert!(
        app.get_token(&id, Some(&key), Some("ews"))
            .await
            .status()
            .is_success()
    );

    // Due 50 minutes later (tokens live an hour, the margin is 20 min).
    // (Only the broker's clock moves: assertions carry the wall clock's
    // time, which the identity platform checks against its own.)
    let later = app.broker.now() + Duration::from_secs(50 * 60);
    app.clock.advance_to(later);
    let outcome = app.refresh_one(&id, false, later).await;
    assert!(matches!(outcome, Outcome::Refreshed { .. }), "{outcome:?}");
    app.expire_read_cache();
    let again = app.get_token(&id, Some(&key), Some("graph")).await;
    let body: Value = again.json().await.expect("json");
    assert_ne!(
        body["access_token"].as_str(),
        Some(first.as_str()),
        "a new token"
    );
    assert!(app.grant(&id).await.is_none());
    assert_eq!(
        app.identity.counters().refresh_token_grants,
        0,
        "no refresh token was ever redeemed"
    );

    let mut secrets = app.secrets(&[&key]);
    secrets.push(app.certificate_private_key(&id).await);
    assert_no_secret_in(&consent.body, "the callback page", &secrets);
    assert_no_secret_in(&status, "status", &secrets);
    assert_no_secret_logged(&secrets);
}

#[tokio::test]
async fn an_app_only_connection_is_granted_served_and_refreshed_on_the_file_store() {
    app_only_path(StoreKind::File).await;
}

#[tokio::test]
#[cfg_attr(not(feature = "services"), ignore = "needs moto: scripts/test.sh")]
async fn an_app_only_connection_is_granted_served_and_refreshed_on_secrets_manager() {
    app_only_path(StoreKind::SecretsManager).await;
}

/// An admin consent that comes back for a tenant that never granted a
/// multi-tenant app, or a refused one: nothing is stored.
#[tokio::test]
async fn a_refused_admin_consent_stores_nothing() {
    let app = spawn_app(StoreKind::File).await;
    let id = unique_id("app-only");
    // The tenant named by a domain: nobody will sign in to pin its id, so
    // it is resolved when the connection is added.
    app.identity.add_domain(TENANT, "rooms-app.contoso.com");
    let authority = app.identity.base_url().to_string();
    let args = [
        "connection",
        "add",
        &id,
        "--app-only",
        "--tenant",
        "rooms-app.contoso.com",
        "--client-id",
        CLIENT_ID,
        "--authority",
        &authority,
        "--client-secret-stdin",
    ];
    app.cli(&args, &app.client_secret)
        .await
        .expect("connection add --app-only with a secret");
    assert!(
        matches!(&app.serve(&id).await.app.provider,
            Provider::Microsoft { tenant, .. } if tenant == TENANT),
        "the tenant id, not the domain"
    );
    // The admin declines at Microsoft.
    let link = app.link(&id).await;
    let declined = [
        ("error", "access_denied"),
        ("error_description", "AADSTS65004: User declined to consent"),
    ];
    let (status, page) = admin_consent_answer(&app, &link, &declined).await;
    assert_eq!(status, 400, "declined");
    assert!(page.contains("The app was not granted"), "{page}");
    // An answer that does not say `True` is no grant either.
    let not_granted = [("admin_consent", "False"), ("tenant", TENANT)];
    let (status, _) = admin_consent_answer(&app, &link, &not_granted).await;
    assert_eq!(status, 400, "admin_consent=False");
    assert_eq!(app.identity.counters().client_credentials_grants, 0);
    let status = app.status(&id).await;
    assert_eq!(
        status.state,
        roomtoken::domain::ConnectionState::PendingConsent
    );
    assert!(app.serve(&id).await.access.is_none());
}

/// Application permissions of the test app: two of Graph's.
const GRAPH_ROLES: [&str; 2] = [
    "https://graph.microsoft.com/Calendars.ReadWrite",
    "https://graph.microsoft.com/Place.Read.All",
];

/// `admin_consent=True` proves nothing by itself: anyone holding the link
/// can send it, and the app's own tenant always mints a first token. So
/// the status, the page and the fleet table say what the tokens really
/// grant (their `roles`), and plainly when Entra ID granted nothing; a
/// permission withdrawn later shows at the next refresh.
async fn granted_permissions_are_shown(kind: StoreKind) {
    let app = spawn_app(kind).await;
    add_admin(&app);
    app.identity
        .set_application_permissions(CLIENT_ID, &GRAPH_ROLES);
    let id = unique_id("app-only-roles");
    app.add_with(
        &id,
        &["--app-only", "--client-secret-stdin"],
        &app.client_secret,
    )
    .await
    .expect("connection add --app-only");
    let link = app.link(&id).await;

    // Forged: nobody visited Microsoft, nobody granted anything.
    let forged = [("admin_consent", "True"), ("tenant", TENANT)];
    let (status, page) = admin_consent_answer(&app, &link, &forged).await;
    assert_eq!(status, 200, "{page}");
    assert!(
        page.contains("No application permission was granted in Entra ID"),
        "{page}"
    );
    let (_, view) = app.status_json(&id).await;
    assert_eq!(
        view["granted_permissions"],
        serde_json::json!({"graph": []}),
        "{view}"
    );
    let advice = view["advice"].as_str().unwrap_or_default();
    assert!(
        advice.starts_with("No application permission was granted in Entra ID; if you use RBAC for Applications, check the rooms."),
        "{advice}"
    );

    // The admin's real grant: its tokens carry the app's roles.
    app.identity.set_auto_admin_consent(Some(ADMIN));
    let consent = app.consent_at(&link).await;
    assert_eq!(consent.status, 200, "{}", consent.body);
    assert!(
        consent
            .body
            .contains("Application permissions granted in Entra ID")
            && consent.body.contains("Calendars.ReadWrite, Place.Read.All"),
        "{}",
        consent.body
    );
    let (_, view) = app.status_json(&id).await;
    let roles = serde_json::json!({"graph": ["Calendars.ReadWrite", "Place.Read.All"]});
    assert_eq!(view["granted_permissions"], roles, "{view}");
    assert_eq!(view["advice"], "Tokens are refreshed automatically.");
    let table = fleet_table(&app, &id).await;
    assert!(
        table.contains("APP PERMISSIONS")
            && table.contains("graph: Calendars.ReadWrite,Place.Read.All"),
        "{table}"
    );

    // The customer withdraws them in Entra ID: the next token says so.
    app.identity
        .withdraw_application_permissions(TENANT, CLIENT_ID);
    let later = app.broker.now() + Duration::from_secs(50 * 60);
    app.clock.advance_to(later);
    let outcome = app.refresh_one(&id, false, later).await;
    assert!(matches!(outcome, Outcome::Refreshed { .. }), "{outcome:?}");
    let (_, view) = app.status_json(&id).await;
    assert_eq!(
        view["granted_permissions"],
        serde_json::json!({"graph": []}),
        "{view}"
    );
    let table = fleet_table(&app, &id).await;
    assert!(table.contains("graph: none"), "{table}");
}

on_both_stores!(granted_permissions_are_shown => an_app_only_grant_shows_what_it_granted_on_the_file_store, an_app_only_grant_shows_what_it_granted_on_secrets_manager);

/// `roomtoken status ID`: the fleet table's row of one connection.
async fn fleet_table(app: &TestApp, id: &str) -> String {
    app.cli(&["status", id], "").await.expect("status")
}

/// What the callback page says to `answer` (Microsoft's, or a forged
/// one), given for the session `link` started.
async fn admin_consent_answer(app: &TestApp, link: &str, answer: &[(&str, &str)]) -> (u16, String) {
    let start = http().get(link).send().await.expect("GET link");
    let cookie = cookies_set(&start);
    let state = location(&start)
        .query_pairs()
        .find(|(k, _)| k == "state")
        .map(|(_, v)| v.into_owned())
        .expect("state");
    let mut back = app.url.join("callback").expect("callback");
    back.query_pairs_mut()
        .extend_pairs(answer)
        .append_pair("state", &state);
    let response = http()
        .get(back)
        .header("cookie", &cookie)
        .send()
        .await
        .expect("callback");
    let status = response.status().as_u16();
    (status, response.text().await.expect("page"))
}

/// `connection add ID --vendor-app --app-only`, then `more` arguments.
async fn add_vendor_app_only(app: &TestApp, id: &str, more: &[&str]) -> Result<String, String> {
    let mut args = vec!["connection", "add", id, "--vendor-app", "--app-only"];
    args.extend_from_slice(more);
    app.cli(&args, "").await
}

/// `connection add --app-only --vendor-app --tenant`: the vendor app's own
/// tokens in one customer tenant, authenticated with the vendor app's
/// certificate; granted through the link's admin consent, refreshed, and
/// stopped (`reconnect_required`) when the customer deletes the enterprise
/// app, until its admin grants it again.
async fn vendor_app_only_path(kind: StoreKind) {
    // Its own prefix: the vendor app (a system secret) is this test's.
    let sleeper = Arc::new(RecordingSleeper::default());
    let app = Setup::new(kind)
        .isolated_prefix()
        .sleeper(sleeper.clone())
        .spawn()
        .await;
    add_admin(&app);
    set_vendor_app_with_certificate(&app, 200).await;
    let id = unique_id("vendor-app-only");

    let refused = add_vendor_app_only(&app, &id, &[])
        .await
        .expect_err("no tenant");
    assert!(refused.contains("--tenant"), "{refused}");
    // A domain of a tenant in another Microsoft cloud is refused.
    app.identity.add_domain(VENDOR_TENANT, "fabrikam-gov.us");
    app.identity
        .set_tenant_cloud(VENDOR_TENANT, "microsoftonline.us");
    let refused = add_vendor_app_only(&app, &id, &["--tenant", "fabrikam-gov.us"])
        .await
        .expect_err("another cloud");
    assert!(
        refused.contains("is not in the global Microsoft cloud"),
        "{refused}"
    );

    // Named by a domain: resolved to the tenant id now, since no sign-in
    // will ever pin it.
    app.identity.add_domain(TENANT, "contoso-rooms.com");
    let more = ["--tenant", "contoso-rooms.com", "--resources", "graph,ews"];
    let added = add_vendor_app_only(&app, &id, &more)
        .await
        .expect("connection add");
    assert!(added.contains("(vendor app, app-only)"), "{added}");
    assert!(
        matches!(&app.serve(&id).await.app.provider,
            Provider::Microsoft { tenant, .. } if tenant == TENANT),
        "the tenant id, not the domain"
    );
    let refused = app
        .cli(
            &[
                "connection",
                "update",
                &id,
                "--booking-account",
                "room@contoso.com",
            ],
            "",
        )
        .await
        .expect_err("nobody signs in");
    assert!(refused.contains("no booking account"), "{refused}");

    let (link, to) = to_admin_consent(&app, &id).await;
    assert!(
        to.query_pairs()
            .any(|(k, v)| k == "client_id" && v == VENDOR_CLIENT),
        "{to}"
    );

    // An answer naming a tenant that granted the vendor app (its own) is
    // not trusted: the token is asked for in the connection's tenant,
    // which has not granted it yet (AADSTS7000229); nothing is stored.
    // (Asked again after 1, 2 and 4 s, as for a grant just made.)
    let forged = [("admin_consent", "True"), ("tenant", VENDOR_TENANT)];
    let (status, page) = admin_consent_answer(&app, &link, &forged).await;
    assert_eq!(status, 400, "{page}");
    assert!(page.contains("AADSTS7000229"), "{page}");
    assert!(page.contains("has not granted the app"), "{page}");
    assert!(page.contains("the administrator's grant"), "{page}");
    assert!(app.serve(&id).await.access.is_none());
    assert_eq!(sleeper.waits(), GRANT_REPLICATION_WAITS.to_vec());

    app.identity.set_auto_admin_consent(Some(ADMIN));
    let consent = app.consent_at(&link).await;
    assert_eq!(consent.status, 200, "{}", consent.body);
    let (status, view) = app.status_json(&id).await;
    assert_eq!(view["mode"], "vendor_app_only", "{view}");
    assert_eq!(view["state"], "connected");
    assert_eq!(
        view["credential_expires"],
        date_in(200),
        "the vendor app's certificate"
    );
    assert!(app.grant(&id).await.is_none(), "no refresh token, no grant");

    let key = app.create_key(&id).await;
    let first = app.served_token(&id, &key, Some("graph")).await;
    let issued = app.identity.access_token_info(&first).expect("honoured");
    assert_eq!(
        (
            issued.username.as_str(),
            issued.client_id.as_str(),
            issued.tenant.as_str()
        ),
        ("", VENDOR_CLIENT, TENANT),
        "the vendor app's own token, in the customer's tenant"
    );

    let mut later = app.broker.now() + Duration::from_secs(50 * 60);
    app.clock.advance_to(later);
    let outcome = app.refresh_one(&id, false, later).await;
    assert!(matches!(outcome, Outcome::Refreshed { .. }), "{outcome:?}");
    app.expire_read_cache();
    let second = app.served_token(&id, &key, Some("graph")).await;
    assert_ne!(second, first);
    let issued = app.identity.access_token_info(&second).expect("honoured");
    assert_eq!(issued.tenant, TENANT, "refreshed in the same tenant");

    // The customer deletes the enterprise app: nothing can mint any more,
    // and only their admin can change that.
    app.identity.remove_service_principal(TENANT, VENDOR_CLIENT);
    later += Duration::from_secs(50 * 60);
    app.clock.advance_to(later);
    let outcome = app.refresh_one(&id, false, later).await;
    assert!(
        matches!(&outcome, Outcome::Failed(e)
            if e.code == "AADSTS7000229" && e.class == FailureClass::ReconnectNeeded),
        "{outcome:?}"
    );
    let (_, view) = app.status_json(&id).await;
    assert_eq!(view["state"], "reconnect_required", "{view}");
    // A display is told the same: the admin must grant again.
    app.expire_read_cache();
    let refused = app.get_token(&id, Some(&key), Some("graph")).await;
    assert_eq!(refused.status(), 503);
    let body: Value = refused.json().await.expect("json");
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("admin must open the consent link")),
        "{body}"
    );
    assert!(
        view["advice"]
            .as_str()
            .is_some_and(|a| a.contains("admin must open the consent link")),
        "{view}"
    );

    // The same link, granted again: connected.
    let again = app.consent_at(&link).await;
    assert_eq!(again.status, 200, "{}", again.body);
    assert_eq!(
        app.status(&id).await.state,
        roomtoken::domain::ConnectionState::Connected
    );
    assert_eq!(app.identity.counters().refresh_token_grants, 0);

    let mut secrets = app.secrets(&[&key]);
    secrets.push(vendor_private_key(&app).await);
    assert_no_secret_in(&consent.body, "the callback page", &secrets);
    // The refused page links back to the link's own step (its invite).
    let not_the_link: Vec<String> = secrets
        .iter()
        .filter(|s| !link.contains(s.as_str()))
        .cloned()
        .collect();
    assert_no_secret_in(&page, "the refused page", &not_the_link);
    assert_no_secret_in(&status, "status", &secrets);
    assert_no_secret_logged(&secrets);
}

on_both_stores!(vendor_app_only_path => a_vendor_app_only_connection_is_granted_refreshed_and_stopped_on_the_file_store, a_vendor_app_only_connection_is_granted_refreshed_and_stopped_on_secrets_manager);

/// A sign-in started for another kind of connection under the same id
/// (removed, then added again as app-only) completes nothing, even if the
/// new connection's link generation were the old one's.
#[tokio::test]
async fn a_sign_in_started_for_another_kind_of_connection_completes_nothing() {
    let app = spawn_app(StoreKind::File).await;
    let id = unique_id("re-added");
    app.add_connection(&id).await;
    let link = app.link(&id).await;
    let under_way = http().get(&link).send().await.expect("GET link");
    assert_eq!(under_way.status(), 302);
    let generation = app.serve(&id).await.link_generation;
    app.cli(&["connection", "remove", &id], "")
        .await
        .expect("remove");
    app.add_with(
        &id,
        &["--app-only", "--client-secret-stdin"],
        &app.client_secret,
    )
    .await
    .expect("added again, app-only");
    app.change_serve(&id, |serve| serve.link_generation = generation)
        .await;
    let redeemed = app.identity.counters();
    let late = app.through_sign_in(under_way).await;
    assert!((400..500).contains(&late.status), "{}", late.body);
    assert!(app.serve(&id).await.access.is_none(), "nothing stored");
    let after = app.identity.counters();
    assert_eq!(
        (
            after.authorization_code_grants,
            after.client_credentials_grants
        ),
        (
            redeemed.authorization_code_grants,
            redeemed.client_credentials_grants
        ),
        "nothing redeemed or minted"
    );
}

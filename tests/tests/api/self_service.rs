//! Self-service connections: the customer admin fills in their own app
//! registration in the form behind the link. The form is checked field by
//! field (the tenant through the fake's discovery document), bound to its
//! link and browser, and its values travel only in the sealed consent
//! cookie: nothing is stored until the sign-in succeeded.

use roomtoken::domain::{Mode, Provider};
use roomtoken_tests::{
    ACCOUNT, CLIENT_ID, ConsentRun, SELF_SERVICE_DOMAIN, StoreKind, TENANT, TestApp,
    assert_no_secret_in, assert_no_secret_logged, cookies_set, form_token, http, location,
    on_both_stores, spawn_app,
};

const DOMAIN: &str = SELF_SERVICE_DOMAIN;

/// The link's form as a browser holds it: its cookie and hidden token.
struct OpenedForm {
    link: String,
    status: u16,
    cookie: String,
    token: String,
    body: String,
    csp: String,
}

async fn open_form(link: &str, language: &str) -> OpenedForm {
    let response = http()
        .get(link)
        .header("accept-language", language)
        .send()
        .await
        .expect("GET link");
    let status = response.status().as_u16();
    let cookie = cookies_set(&response);
    let csp = response
        .headers()
        .get("content-security-policy")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body = response.text().await.expect("form page");
    OpenedForm {
        link: link.to_owned(),
        status,
        cookie,
        token: form_token(&body),
        body,
        csp,
    }
}

/// The fields as the admin types them (right ones by default).
#[derive(Clone)]
struct Typed {
    tenant: String,
    client_id: String,
    client_secret: String,
    expires: String,
    resources: Vec<&'static str>,
}

impl Typed {
    fn right(app: &TestApp) -> Self {
        let expires = (time::OffsetDateTime::now_utc() + time::Duration::days(300)).date();
        Self {
            tenant: DOMAIN.into(),
            client_id: CLIENT_ID.into(),
            client_secret: app.client_secret.clone(),
            expires: expires.to_string(),
            resources: vec!["ews", "graph"],
        }
    }

    fn body(&self, token: &str) -> String {
        let mut form = url::form_urlencoded::Serializer::new(String::new());
        form.append_pair("form_token", token)
            .append_pair("tenant", &self.tenant)
            .append_pair("client_id", &self.client_id)
            .append_pair("client_secret", &self.client_secret)
            .append_pair("client_secret_expires", &self.expires);
        for resource in &self.resources {
            form.append_pair("resources", resource);
        }
        form.finish()
    }
}

async fn submit(form: &OpenedForm, typed: &Typed, language: &str) -> reqwest::Response {
    post_form(&form.link, &form.cookie, typed.body(&form.token), language).await
}

async fn post_form(link: &str, cookie: &str, body: String, language: &str) -> reqwest::Response {
    http()
        .post(link)
        .header("content-type", "application/x-www-form-urlencoded")
        .header("cookie", cookie)
        .header("accept-language", language)
        .body(body)
        .send()
        .await
        .expect("POST form")
}

/// After the form's 303: the fake signs the booking account in, and the
/// callback answers.
async fn sign_in_after(app: &TestApp, accepted: reqwest::Response) -> ConsentRun {
    assert_eq!(
        accepted.status(),
        303,
        "the form sends the admin to the sign-in"
    );
    app.through_sign_in(accepted).await
}

async fn nothing_stored(app: &TestApp, id: &str) {
    assert!(app.grant(id).await.is_none(), "no grant stored");
    let serve = app.serve(id).await;
    assert!(!serve.app.is_set_up(), "no app stored: {:?}", serve.app);
    let id = roomtoken::domain::ConnectionId::parse(id).expect("id");
    let grant = app
        .broker
        .repo
        .grant(&id)
        .await
        .expect("store")
        .expect("grant secret");
    assert_eq!(
        grant.value.client_secret.expose(),
        "",
        "no client secret stored"
    );
}

async fn self_service_path(kind: StoreKind) {
    let app = spawn_app(kind).await;
    let id = app.add_self_service_connection().await;
    let link = app.link(&id).await;

    let form = open_form(&link, "en").await;
    assert_eq!(form.status, 200, "{}", form.body);
    assert!(form.body.contains("Tenant ID or domain"), "{}", form.body);
    assert!(
        form.body.contains(&format!("{}callback", app.url)),
        "names the redirect URI"
    );
    assert!(form.cookie.contains("roomtoken_form="), "{}", form.cookie);
    assert!(!form.token.is_empty(), "a hidden form token");
    let origin = app.identity.base_url().origin().ascii_serialization();
    assert!(
        form.csp.contains(&format!("form-action 'self' {origin}")),
        "the form may post to us and be sent on to the sign-in only: {}",
        form.csp
    );

    // One wrong field first: the page names it, keeps the others, and never
    // shows the secret back.
    let mut typed = Typed::right(&app);
    typed.client_id = "my-room-app".into();
    let refused = submit(&form, &typed, "en").await;
    assert_eq!(refused.status(), 422);
    let page = refused.text().await.expect("page");
    assert!(page.contains("an application ID is a GUID"), "{page}");
    assert!(page.contains("aria-invalid=\"true\""), "{page}");
    assert!(page.contains(DOMAIN), "the tenant is kept");
    assert_no_secret_in(
        &page,
        "the refused form",
        std::slice::from_ref(&app.client_secret),
    );
    nothing_stored(&app, &id).await;

    // Right: off to the tenant's own sign-in, still nothing stored.
    let again = OpenedForm {
        token: form_token(&page),
        ..form
    };
    let accepted = submit(&again, &Typed::right(&app), "en").await;
    assert_eq!(accepted.status(), 303);
    let authorize = location(&accepted);
    assert!(
        authorize.path().starts_with(&format!("/{TENANT}/")),
        "the domain was resolved to the tenant id: {authorize}"
    );
    assert!(
        authorize.query().unwrap_or_default().contains(CLIENT_ID),
        "{authorize}"
    );
    nothing_stored(&app, &id).await;

    let connected = sign_in_after(&app, accepted).await;
    assert_eq!(connected.status, 200, "{}", connected.body);
    assert!(connected.body.contains(ACCOUNT), "{}", connected.body);
    let serve = app.serve(&id).await;
    assert_eq!(serve.app.mode, Mode::SelfService);
    assert_eq!(serve.app.client_id, CLIENT_ID);
    assert!(
        matches!(&serve.app.provider, Provider::Microsoft { tenant, .. } if tenant == TENANT),
        "{:?}",
        serve.app.provider
    );
    assert_eq!(
        serve.app.client_secret_expires.map(|d| d.to_string()),
        Some(Typed::right(&app).expires)
    );
    assert_eq!(
        app.grant(&id).await.expect("grant").account.display,
        ACCOUNT
    );

    // A display reads a token.
    let key = app.create_key(&id).await;
    let token = app.get_token(&id, Some(&key), Some("graph")).await;
    assert_eq!(token.status(), 200);

    // The same form sent again is refused, and changes nothing.
    let replayed = post_form(
        &again.link,
        &again.cookie,
        Typed::right(&app).body(&again.token),
        "en",
    )
    .await;
    assert_eq!(replayed.status(), 409, "a replayed form");
    assert!(
        replayed
            .text()
            .await
            .expect("page")
            .contains("already used")
    );

    // Reopening the link shows the status, not a blank form.
    let reopened = open_form(&link, "en").await;
    assert_eq!(reopened.status, 200);
    assert!(
        reopened.body.contains("Your displays are set up"),
        "{}",
        reopened.body
    );
    assert!(reopened.body.contains(ACCOUNT), "{}", reopened.body);
    assert!(!reopened.body.contains("name=\"client_secret\""), "no form");

    let mut secrets = app.secrets(&[&key]);
    secrets.push(again.token.clone());
    assert_no_secret_logged(&secrets);
}

on_both_stores!(self_service_path => self_service_on_the_file_store, self_service_on_secrets_manager);

/// A wrong client secret fails at the sign-in's code redemption: the page
/// says so and leads back to the form; nothing of the form is stored.
async fn a_failed_sign_in_stores_nothing(kind: StoreKind) {
    let app = spawn_app(kind).await;
    let id = app.add_self_service_connection().await;
    let link = app.link(&id).await;
    let form = open_form(&link, "en").await;
    let mut typed = Typed::right(&app);
    typed.client_secret = "a-wrong-secret-value~123".into();
    let accepted = submit(&form, &typed, "en").await;
    let failed = sign_in_after(&app, accepted).await;
    assert_eq!(failed.status, 502, "{}", failed.body);
    assert!(failed.body.contains("AADSTS7000215"), "{}", failed.body);
    assert!(
        failed.body.contains("client secret of the app is wrong")
            || failed.body.contains("client secret is wrong"),
        "{}",
        failed.body
    );
    assert!(
        failed.body.contains("step=setup"),
        "leads back to the form: {}",
        failed.body
    );
    assert_no_secret_in(
        &failed.body,
        "the failure page",
        &[typed.client_secret.clone()],
    );
    nothing_stored(&app, &id).await;

    // An abandoned sign-in (the browser never comes back) stores nothing either.
    let form = open_form(&link, "en").await;
    let accepted = submit(&form, &Typed::right(&app), "en").await;
    assert_eq!(accepted.status(), 303);
    nothing_stored(&app, &id).await;
    assert_no_secret_logged(&[typed.client_secret, app.client_secret.clone()]);
}

on_both_stores!(a_failed_sign_in_stores_nothing => failed_self_service_on_the_file_store, failed_self_service_on_secrets_manager);

/// The tenant is looked up in Microsoft's discovery document: an unknown
/// one, or one in another cloud, is named next to the field (in French too).
#[tokio::test]
async fn the_tenant_is_checked_with_microsoft() {
    let app = spawn_app(StoreKind::File).await;
    let id = app.add_self_service_connection().await;
    let link = app.link(&id).await;

    let form = open_form(&link, "en").await;
    let mut typed = Typed::right(&app);
    typed.tenant = "fabrikam.example".into();
    let unknown = submit(&form, &typed, "en").await;
    assert_eq!(unknown.status(), 422);
    let page = unknown.text().await.expect("page");
    assert!(page.contains("AADSTS90002"), "{page}");

    app.identity.set_tenant_cloud(TENANT, "microsoftonline.us");
    let form = open_form(&link, "fr-FR,fr;q=0.9").await;
    assert!(
        form.body.contains("ID de locataire ou domaine"),
        "{}",
        form.body
    );
    let other_cloud = submit(&form, &Typed::right(&app), "fr-FR,fr;q=0.9").await;
    assert_eq!(other_cloud.status(), 422);
    let page = other_cloud.text().await.expect("page");
    assert!(page.contains("Gouvernement des États-Unis"), "{page}");
    assert!(page.contains("Erreur"), "{page}");
    nothing_stored(&app, &id).await;
}

/// A form that this browser did not get from this link, one that was
/// changed, too big or too old: refused, nothing stored.
#[tokio::test]
async fn tampered_oversized_and_stale_forms_are_refused() {
    let app = spawn_app(StoreKind::File).await;
    let id = app.add_self_service_connection().await;
    let link = app.link(&id).await;
    let form = open_form(&link, "en").await;
    let typed = Typed::right(&app);

    let mut changed_token = form.token.clone();
    changed_token.push('x');
    let changed = post_form(&link, &form.cookie, typed.body(&changed_token), "en").await;
    assert_eq!(changed.status(), 403, "a changed token");

    let no_cookie = post_form(&link, "", typed.body(&form.token), "en").await;
    assert_eq!(no_cookie.status(), 403, "no form cookie");

    let other_browser = open_form(&link, "en").await;
    let swapped = post_form(&link, &other_browser.cookie, typed.body(&form.token), "en").await;
    assert_eq!(swapped.status(), 403, "another browser's cookie");

    let other_link = app.link(&app.add_self_service_connection().await).await;
    let moved = post_form(&other_link, &form.cookie, typed.body(&form.token), "en").await;
    assert_eq!(moved.status(), 403, "another connection's form");

    let cross_site = http()
        .post(&link)
        .header("content-type", "application/x-www-form-urlencoded")
        .header("cookie", &form.cookie)
        .header("origin", "https://attacker.example")
        .body(typed.body(&form.token))
        .send()
        .await
        .expect("POST");
    assert_eq!(cross_site.status(), 403, "another site's page");

    let huge = post_form(
        &link,
        &form.cookie,
        "a=".to_owned() + &"b".repeat(20_000),
        "en",
    )
    .await;
    assert_eq!(huge.status(), 413, "a body larger than any form");
    assert!(
        huge.text()
            .await
            .expect("page")
            .contains("could not be read")
    );

    let mut long = typed.clone();
    long.client_secret = "s".repeat(600);
    let too_long = submit(&form, &long, "en").await;
    assert_eq!(too_long.status(), 422);
    assert!(too_long.text().await.expect("page").contains("longer than"));

    app.clock.advance(std::time::Duration::from_secs(16 * 60));
    let stale = submit(&form, &typed, "en").await;
    assert_eq!(stale.status(), 410, "a form older than 15 minutes");

    nothing_stored(&app, &id).await;
}

/// The sealed consent cookie carries the form's values: with every field
/// at its longest, it still fits a browser's 4 KiB cookie.
#[tokio::test]
async fn the_largest_form_still_fits_in_the_consent_cookie() {
    let app = spawn_app(StoreKind::File).await;
    let id = app.add_self_service_connection().await;
    let labels: Vec<String> = (0..4).map(|n| format!("{n}{}", "x".repeat(59))).collect();
    let longest_domain = format!("{}.example", labels.join("."));
    assert!(longest_domain.len() <= 253, "{}", longest_domain.len());
    app.identity.add_domain(TENANT, &longest_domain);
    let form = open_form(&app.link(&id).await, "en").await;
    let mut typed = Typed::right(&app);
    typed.tenant = longest_domain;
    typed.client_secret = "~".repeat(512);
    let accepted = submit(&form, &typed, "en").await;
    assert_eq!(accepted.status(), 303);
    let cookie = accepted
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with("roomtoken_consent="))
        .expect("the consent cookie")
        .to_owned();
    eprintln!("the largest consent cookie: {} bytes", cookie.len());
    assert!(cookie.len() < 4_096, "{} bytes", cookie.len());
}

/// A form that chose fewer resources than offered does not shrink the
/// offer: replacing the app registration later offers every one again.
#[tokio::test]
async fn the_offer_stays_what_the_operator_chose() {
    let app = spawn_app(StoreKind::File).await;
    let id = app.add_self_service_connection().await;
    let link = app.link(&id).await;
    let form = open_form(&link, "en").await;
    let mut typed = Typed::right(&app);
    typed.resources = vec!["graph"];
    let connected = sign_in_after(&app, submit(&form, &typed, "en").await).await;
    assert_eq!(connected.status, 200, "{}", connected.body);
    assert_eq!(app.serve(&id).await.app.resources.len(), 1);
    let again = open_form(&format!("{link}&step=setup"), "en").await;
    assert!(
        again.body.contains("value=\"ews\""),
        "EWS is offered again: {}",
        again.body
    );
}

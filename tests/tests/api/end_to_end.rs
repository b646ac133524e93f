//! The whole path over real HTTP on loopback: connection add → link →
//! consent through the fake sign-in → key create → token read → refresh
//! pass, on the file store and on Secrets Manager (moto).

use roomtoken::domain::ConnectionId;
use roomtoken::flows::refresh::{Outcome, PassOptions, refresh_pass};
use roomtoken_tests::{
    ACCOUNT, CLIENT_ID, OTHER_ACCOUNT, StoreKind, TENANT, assert_no_secret_logged, http, location,
    on_both_stores, set_cookie, set_cookie_attributes, spawn_app, unique_id,
};
use serde_json::Value;
use std::time::Duration;
use time::OffsetDateTime;

async fn whole_path(kind: StoreKind) {
    let app = spawn_app(kind).await;
    let id = unique_id("contoso");
    app.add_connection(&id).await;
    let link = app.link(&id).await;
    assert!(
        link.starts_with(&format!("{}connect/{id}?invite=", app.url)),
        "{link}"
    );

    let consent = app.consent(&id).await;
    let query: std::collections::HashMap<_, _> =
        consent.authorize.query_pairs().into_owned().collect();
    assert_eq!(query["code_challenge_method"], "S256");
    assert_eq!(query["code_challenge"].len(), 43);
    assert!(
        consent
            .authorize
            .as_str()
            .starts_with(app.identity.base_url().as_str())
    );
    assert_eq!(consent.status, 200, "{}", consent.body);
    assert!(consent.body.contains(ACCOUNT), "{}", consent.body);
    assert!(consent.body.contains("valid until"), "{}", consent.body);

    let key = app.create_key(&id).await;
    assert!(key.starts_with("rtk_"));
    let response = app.get_token(&id, Some(&key), None).await;
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["cache-control"]
            .to_str()
            .unwrap()
            .starts_with("private, max-age=")
    );
    let body: Value = response.json().await.unwrap();
    let ews_token = body["access_token"].as_str().unwrap().to_owned();
    let issued = app
        .identity
        .access_token_info(&ews_token)
        .expect("a token the fake issued");
    assert_eq!(issued.resource, "https://outlook.office365.com");
    assert_eq!(body["resource"], "ews");
    assert_eq!(body["account"], ACCOUNT);
    assert_eq!(body["token_type"], "Bearer");
    let graph: Value = app
        .get_token(&id, Some(&key), Some("graph"))
        .await
        .json()
        .await
        .unwrap();
    let graph_token = graph["access_token"].as_str().unwrap();
    assert_eq!(
        app.identity
            .access_token_info(graph_token)
            .unwrap()
            .resource,
        "https://graph.microsoft.com"
    );

    // The refresh pass: due (15 minutes left < 20-minute margin).
    app.age_tokens(&id, Duration::from_secs(45 * 60)).await;
    let newest = app
        .identity
        .newest_refresh_token(CLIENT_ID, ACCOUNT)
        .unwrap();
    assert_eq!(app.grant(&id).await.unwrap().refresh_token.expose(), newest);
    let used_before = app.identity.counters().refresh_tokens_used.len();
    let printed = app.cli(&["refresh", &id], "").await.unwrap();
    assert!(printed.contains("refreshed (ews, graph)"), "{printed}");
    // token-read serves what it cached until its TTL runs out.
    app.expire_read_cache();
    let used = app.identity.counters().refresh_tokens_used;
    assert_eq!(
        used[used_before], newest,
        "the pass redeemed the rotated refresh token"
    );
    let after = app
        .get_token(&id, Some(&key), None)
        .await
        .json::<Value>()
        .await
        .unwrap();
    assert_ne!(
        after["access_token"].as_str().unwrap(),
        ews_token,
        "a new access token is served"
    );
    let stored = app.grant(&id).await.unwrap();
    assert_eq!(
        Some(stored.refresh_token.expose().to_owned()),
        app.identity.newest_refresh_token(CLIENT_ID, ACCOUNT),
        "the grant holds the newest refresh token"
    );
    assert_eq!(app.identity.counters().refresh_tokens_redeemed_twice, 0);

    let status = app.cli(&["status", &id, "--json"], "").await.unwrap();
    let status: Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status["state"], "connected");
    assert_eq!(status["account"], ACCOUNT);

    assert_no_secret_logged(&app.secrets(&[&key]));
}

on_both_stores!(whole_path => whole_path_on_the_file_store, whole_path_on_secrets_manager);

async fn refused_callbacks(kind: StoreKind) {
    let app = spawn_app(kind).await;
    let id = unique_id("refused");
    app.add_connection(&id).await;
    let client = http();
    let link = app.link(&id).await;

    // Provider says access_denied: 400 page, nothing stored.
    let start = client.get(&link).send().await.unwrap();
    let cookie = set_cookie(&start).unwrap();
    let attributes = set_cookie_attributes(&start);
    for attribute in ["HttpOnly", "SameSite=Lax", "Path=/callback"] {
        assert!(attributes.contains(attribute), "{attributes}");
    }
    let authorize = location(&start);
    let state = authorize
        .query_pairs()
        .find(|(k, _)| k == "state")
        .unwrap()
        .1
        .into_owned();
    let mut denied = app.url.join("callback").unwrap();
    denied
        .query_pairs_mut()
        .append_pair("error", "access_denied")
        .append_pair(
            "error_description",
            "AADSTS65004: User declined to consent <script>alert(1)</script>",
        )
        .append_pair("state", &state);
    let response = client
        .get(denied)
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert_eq!(response.headers()["x-frame-options"], "DENY");
    assert!(
        response.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("default-src 'none'")
    );
    let page = response.text().await.unwrap();
    assert!(page.contains("access_denied"), "{page}");
    assert!(
        page.contains("declined to consent &lt;script&gt;") && !page.contains("<script>"),
        "what the sign-in answered is shown as text, never as markup: {page}"
    );
    assert!(app.grant(&id).await.is_none());

    // Wrong state, missing cookie, tampered cookie: 400 and nothing stored.
    let start = client.get(&link).send().await.unwrap();
    let cookie = set_cookie(&start).unwrap();
    let signed_in = client.get(location(&start)).send().await.unwrap();
    let callback = location(&signed_in);
    let mut wrong_state = callback.clone();
    let pairs: Vec<(String, String)> = callback.query_pairs().into_owned().collect();
    wrong_state.query_pairs_mut().clear();
    for (k, v) in &pairs {
        let v = if k == "state" {
            "not-the-state"
        } else {
            v.as_str()
        };
        wrong_state.query_pairs_mut().append_pair(k, v);
    }
    let mut tampered = cookie.clone().into_bytes();
    let last = tampered.len() - 3;
    tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    for (what, url, cookie) in [
        ("wrong state", wrong_state.clone(), Some(cookie.as_str())),
        ("missing cookie", callback.clone(), None),
        ("tampered cookie", callback.clone(), Some(tampered.as_str())),
    ] {
        let mut request = client.get(url);
        if let Some(cookie) = cookie {
            request = request.header("cookie", cookie);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 400, "{what}");
        let body = response.text().await.unwrap();
        assert!(
            body.contains("Open the consent link again"),
            "{what}: {body}"
        );
        assert!(app.grant(&id).await.is_none(), "{what} stored nothing");
    }

    // The genuine callback works once; its replay is refused and changes nothing.
    let first = client
        .get(callback.clone())
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), 200);
    let grant = app.grant(&id).await.unwrap();
    let requests = app.identity.counters().token_requests;
    let replay = client
        .get(callback)
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(replay.status(), 400);
    let body = replay.text().await.unwrap();
    assert!(body.contains("already used"), "{body}");
    assert!(
        body.contains("Start again") && body.contains("step=sign-in"),
        "a way back to the sign-in: {body}"
    );
    assert_eq!(
        app.identity.counters().token_requests,
        requests,
        "a completed session never reaches the provider again"
    );
    let after = app.grant(&id).await.unwrap();
    assert_eq!(
        after.refresh_token, grant.refresh_token,
        "the replay stored nothing"
    );

    // Expired and forged invites.
    let expired = app.cli(&["link", &id, "--ttl", "0s"], "").await.unwrap();
    // The CLI signed it on the system clock; the broker reads its own.
    app.clock
        .advance_to(OffsetDateTime::now_utc() + Duration::from_secs(1));
    let response = client.get(expired.trim()).send().await.unwrap();
    assert_eq!(response.status(), 410);
    assert!(response.text().await.unwrap().contains("expired"));
    let forged = link.replace("invite=", "invite=1").to_owned();
    let response = client.get(&forged).send().await.unwrap();
    assert_eq!(response.status(), 403);
    let other = unique_id("other");
    app.add_connection(&other).await;
    let moved = link.replace(&format!("/connect/{id}?"), &format!("/connect/{other}?"));
    assert_eq!(
        client.get(&moved).send().await.unwrap().status(),
        403,
        "an invite is bound to its connection"
    );
    assert!(set_cookie(&client.get(&moved).send().await.unwrap()).is_none());

    assert_no_secret_logged(&app.secrets(&[]));
}

on_both_stores!(refused_callbacks => refused_callbacks_store_nothing_on_the_file_store, refused_callbacks_store_nothing_on_secrets_manager);

async fn racing_passes(kind: StoreKind) {
    let app = spawn_app(kind).await;
    let id = unique_id("race");
    app.add_connection(&id).await;
    assert_eq!(app.consent(&id).await.status, 200);
    // Both passes are inside their token requests at the same time.
    app.identity.set_latency(Duration::from_millis(300));
    let options = PassOptions {
        only: Some(ConnectionId::parse(&id).unwrap()),
        force: true,
    };
    let now = OffsetDateTime::now_utc();
    let (a, b) = tokio::join!(
        refresh_pass(&app.broker, &options, now),
        refresh_pass(&app.broker, &options, now)
    );
    let outcomes = [
        a.unwrap().results[0].outcome.clone(),
        b.unwrap().results[0].outcome.clone(),
    ];
    let refreshed = outcomes
        .iter()
        .filter(|o| matches!(o, Outcome::Refreshed { .. }))
        .count();
    let lost = outcomes
        .iter()
        .filter(|o| matches!(o, Outcome::LostRace | Outcome::Busy))
        .count();
    assert_eq!((refreshed, lost), (1, 1), "{outcomes:?}");
    app.identity.set_latency(Duration::ZERO);

    // The one grant left works, and the next pass goes on from it.
    let grant = app.grant(&id).await.unwrap();
    assert!(
        app.identity
            .issued_secrets()
            .contains(&grant.refresh_token.expose().to_owned())
    );
    let used_before = app.identity.counters().refresh_tokens_used.len();
    let again = app.cli(&["refresh", &id, "--force"], "").await.unwrap();
    assert!(again.contains("refreshed"), "{again}");
    assert_eq!(
        app.identity.counters().refresh_tokens_used[used_before],
        grant.refresh_token.expose(),
        "the next pass redeems the stored grant"
    );
    let key = app.create_key(&id).await;
    assert_eq!(app.get_token(&id, Some(&key), None).await.status(), 200);
}

on_both_stores!(racing_passes => racing_refresh_passes_leave_one_grant_on_the_file_store, racing_refresh_passes_leave_one_grant_on_secrets_manager);

/// An operator who names the booking account gets exactly that account:
/// the sign-in suggests it, the vendor page names it, and another account
/// that signs in is refused before anything is stored.
#[tokio::test]
async fn a_named_booking_account_is_the_only_one_that_connects() {
    let app = spawn_app(StoreKind::File).await;
    let id = unique_id("named");
    app.add_connection(&id).await;
    let updated = app
        .cli(
            &[
                "connection",
                "update",
                &id,
                "--booking-account",
                "Booking@Contoso.com",
            ],
            "",
        )
        .await
        .expect("connection update --booking-account");
    assert!(updated.contains("updated"), "{updated}");
    let shown = app
        .cli(&["connection", "show", &id], "")
        .await
        .expect("show");
    assert!(
        shown.contains(&format!("booking account: {ACCOUNT}")),
        "{shown}"
    );
    let refused = app
        .cli(
            &["connection", "update", &id, "--booking-account", "booking"],
            "",
        )
        .await;
    assert!(
        refused.is_err_and(|e| e.contains("user name such as booking@contoso.com")),
        "a name that is not a user name is refused"
    );

    app.identity.set_auto_consent(Some(OTHER_ACCOUNT));
    let wrong = app.consent(&id).await;
    let query: std::collections::HashMap<_, _> =
        wrong.authorize.query_pairs().into_owned().collect();
    assert_eq!(query.get("login_hint").map(String::as_str), Some(ACCOUNT));
    assert!(
        !query.contains_key("prompt"),
        "a hint and an account picker do not go together"
    );
    assert_eq!(wrong.status, 409, "{}", wrong.body);
    assert!(
        wrong.body.contains(ACCOUNT) && wrong.body.contains(OTHER_ACCOUNT),
        "{}",
        wrong.body
    );
    assert!(wrong.body.contains("Nothing was stored"), "{}", wrong.body);
    assert!(app.grant(&id).await.is_none());

    app.identity.set_auto_consent(Some(ACCOUNT));
    let right = app.consent(&id).await;
    assert_eq!(right.status, 200, "{}", right.body);
    assert_eq!(
        app.grant(&id).await.expect("grant").account.display,
        ACCOUNT
    );

    // Forgotten with an empty name.
    app.cli(&["connection", "update", &id, "--booking-account", ""], "")
        .await
        .expect("forget the booking account");
    assert_eq!(app.serve(&id).await.app.booking_account, None);
}

/// Consent links can be revoked, by `link --revoke-all` and by
/// `--reset-account` (an old link must not pin whoever opens it next), and
/// live at most 30 days.
#[tokio::test]
async fn old_links_are_revoked_and_links_run_out() {
    let app = spawn_app(StoreKind::File).await;
    let id = unique_id("revoke");
    app.add_connection(&id).await;
    let first = app.link(&id).await;

    let second = app
        .cli(&["link", &id, "--revoke-all"], "")
        .await
        .expect("link --revoke-all");
    let revoked = http().get(&first).send().await.expect("GET old link");
    assert_eq!(revoked.status(), 410);
    let page = revoked.text().await.expect("page");
    assert!(page.contains("This consent link was replaced"), "{page}");
    assert_eq!(
        app.consent_at(second.trim()).await.status,
        200,
        "the new link works"
    );

    app.cli(&["connection", "update", &id, "--reset-account"], "")
        .await
        .expect("reset");
    let after_reset = http().get(second.trim()).send().await.expect("GET");
    assert_eq!(
        after_reset.status(),
        410,
        "a reset revokes the links sent before it"
    );
    assert_eq!(
        app.consent(&id).await.status,
        200,
        "a link made after it works"
    );

    // A connection removed and added again under the same id: the old
    // connection's links and sign-ins under way are not its.
    let old_link = app.link(&id).await;
    let under_way = http().get(&old_link).send().await.expect("GET link");
    assert_eq!(under_way.status(), 302);
    app.cli(&["connection", "remove", &id], "")
        .await
        .expect("remove");
    app.add_connection(&id).await;
    let refused = http().get(&old_link).send().await.expect("GET old link");
    assert_eq!(refused.status(), 410, "the removed connection's link");
    let late = app.through_sign_in(under_way).await;
    assert_eq!(late.status, 410, "{}", late.body);
    assert!(app.grant(&id).await.is_none(), "nothing stored");
    assert_eq!(app.consent(&id).await.status, 200, "its own link works");

    // A sign-in under way when its link is revoked does not complete.
    let link = app.link(&id).await;
    let started = http().get(&link).send().await.expect("GET link");
    assert_eq!(started.status(), 302);
    app.cli(&["link", &id, "--revoke-all"], "")
        .await
        .expect("revoke");
    let grant_before = app.grant(&id).await.expect("a grant").consented_at;
    let late = app.through_sign_in(started).await;
    assert_eq!(late.status, 410, "{}", late.body);
    assert_eq!(
        app.grant(&id).await.expect("a grant").consented_at,
        grant_before,
        "nothing stored"
    );

    // A refused TTL revokes nothing.
    let kept = app.link(&id).await;
    let refused = app
        .cli(&["link", &id, "--revoke-all", "--ttl", "60d"], "")
        .await;
    assert!(refused.is_err_and(|e| e.contains("at most 30 days")));
    let still = http().get(&kept).send().await.expect("GET");
    assert_eq!(still.status(), 302, "the link still works");
    let absurd = app.cli(&["link", &id, "--ttl", "100000000y"], "").await;
    assert!(absurd.is_err(), "an absurd TTL is refused, not a panic");

    let too_long = app.cli(&["link", &id, "--ttl", "31d"], "").await;
    assert!(
        too_long.is_err_and(|e| e.contains("at most 30 days")),
        "a link lives at most 30 days"
    );
    assert!(app.cli(&["link", &id, "--ttl", "30d"], "").await.is_ok());
}

/// What an identity provider says (here an account name with a terminal
/// escape sequence in it) is written out by the CLI, never obeyed.
#[tokio::test]
async fn the_cli_shows_a_providers_text_escaped() {
    let app = spawn_app(StoreKind::File).await;
    let hostile = "booking\u{1b}[2J\u{1b}[31m@contoso.com";
    app.identity
        .add_account(roomtoken_fake_identity::FakeAccount {
            tenant: TENANT.into(),
            oid: "0000e5c0-0000-4000-8000-000000000000".into(),
            username: hostile.into(),
            name: "Escape".into(),
            admin: false,
        });
    app.identity.set_auto_consent(Some(hostile));
    let id = unique_id("escaped");
    app.add_connection(&id).await;
    assert_eq!(app.consent(&id).await.status, 200);
    let status = app.cli(&["status", &id], "").await.expect("status");
    assert!(!status.contains('\u{1b}'), "no raw escape: {status:?}");
    assert!(status.contains("booking\\u{1b}[2J"), "{status}");
}

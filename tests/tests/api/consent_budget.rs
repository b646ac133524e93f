//! Writes a link holder can cause never lock the operator out (issue 23,
//! item 3): completed consents have a budget of their own (10 a day per
//! connection), past which the link says so and nothing is redeemed; the
//! operator's revocations keep a reserve of the version quota that nothing
//! else may use.

use roomtoken::domain::records::MAX_CONSENTS_PER_DAY;
use roomtoken_tests::{StoreKind, http, key_id, on_both_stores, spawn_app};
use std::time::Duration;

async fn revocations_have_room_after_a_day_of_consents(kind: StoreKind) {
    let app = spawn_app(kind).await;
    let (id, key) = app.connected("consent-flood").await;
    let first_link = app.link(&id).await;
    let codes = app.identity.counters().authorization_code_grants;
    let start = app.broker.now();
    let (mut connected, mut refused) = (1, 0);
    // 59 more consents, 19 minutes apart: 60 within 19 hours.
    for n in 1..60u64 {
        let at = start + Duration::from_secs(n * 19 * 60);
        app.clock.advance_to(at);
        let link = app.link(&id).await;
        let opened = http().get(&link).send().await.expect("GET link");
        if opened.status() == 302 {
            let consent = app.through_sign_in(opened).await;
            assert_eq!(consent.status, 200, "consent {n}: {}", consent.body);
            connected += 1;
            continue;
        }
        assert_eq!(opened.status(), 429, "consent {n}");
        let page = opened.text().await.expect("page");
        assert!(
            page.contains("Too many sign-ins for this connection today")
                && page.contains("ask your provider"),
            "{page}"
        );
        refused += 1;
    }
    assert_eq!(connected, MAX_CONSENTS_PER_DAY, "the day's consents");
    assert_eq!(refused, 60 - MAX_CONSENTS_PER_DAY);
    assert_eq!(
        app.identity.counters().authorization_code_grants - codes,
        MAX_CONSENTS_PER_DAY as u64 - 1,
        "no code redeemed for a refused link"
    );

    // The operator's revocations still have room, and take effect.
    app.cli(&["key", "revoke", &id, &key_id(&key)], "")
        .await
        .expect("key revoke after a day of consents");
    app.expire_read_cache();
    assert_eq!(app.get_token(&id, Some(&key), None).await.status(), 401);
    app.cli(&["link", &id, "--revoke-all"], "")
        .await
        .expect("link --revoke-all after a day of consents");
    let revoked = http().get(&first_link).send().await.expect("GET link");
    assert_eq!(revoked.status(), 410, "the links sent before are revoked");
}

on_both_stores!(revocations_have_room_after_a_day_of_consents => revocations_have_room_after_sixty_consents_on_the_file_store, revocations_have_room_after_sixty_consents_on_secrets_manager);

//! The browser pages speak English or French: `?lang=` on the consent link
//! (remembered until the callback), else the browser's `Accept-Language`.

use roomtoken_tests::{
    ACCOUNT, StoreKind, TestApp, cookies_set, http, location, spawn_app, unique_id,
};

async fn callback_without_session(app: &TestApp, accept_language: &str) -> String {
    let response = http()
        .get(app.url.join("callback?state=x&code=y").expect("url"))
        .header("accept-language", accept_language)
        .send()
        .await
        .expect("GET callback");
    assert_eq!(response.status(), 400);
    response.text().await.expect("page")
}

#[tokio::test]
async fn a_page_follows_the_browsers_language() {
    let app = spawn_app(StoreKind::File).await;
    let french = callback_without_session(&app, "fr-CA,fr;q=0.9,en;q=0.5").await;
    assert!(french.contains(r#"<html lang="fr">"#), "{french}");
    assert!(
        french.contains("Votre session de connexion a expiré"),
        "{french}"
    );
    assert!(
        french.contains("Ouvrez à nouveau le lien de consentement"),
        "{french}"
    );
    let english = callback_without_session(&app, "de-DE, en;q=0.8, fr;q=0.3").await;
    assert!(english.contains(r#"<html lang="en">"#), "{english}");
    assert!(
        english.contains("Your sign-in session has expired"),
        "{english}"
    );
    let neither = callback_without_session(&app, "de, it;q=0.5").await;
    assert!(
        neither.contains("Your sign-in session has expired"),
        "English by default"
    );
}

#[tokio::test]
async fn lang_on_the_link_wins_and_reaches_the_callback() {
    let app = spawn_app(StoreKind::File).await;
    let id = unique_id("lang");
    app.add_connection(&id).await;
    let link = format!("{}&lang=fr", app.link(&id).await);
    let consent = app.consent_at(&link).await;
    assert_eq!(consent.status, 200, "{}", consent.body);
    assert!(
        consent.cookie.contains("roomtoken_lang=fr"),
        "{}",
        consent.cookie
    );
    assert!(
        consent.body.contains("Connecté en tant que") && consent.body.contains(ACCOUNT),
        "{}",
        consent.body
    );

    // A broken link is explained in the language it asks for.
    let broken = format!("{}connect/{id}?invite=forged&lang=fr", app.url);
    let refused = http()
        .get(&broken)
        .header("accept-language", "en")
        .send()
        .await
        .expect("GET link");
    assert_eq!(refused.status(), 403);
    let page = refused.text().await.expect("page");
    assert!(
        page.contains("Ce lien de consentement n’est pas valide"),
        "{page}"
    );
}

/// A callback that is not the answer to this browser's sign-in (another
/// `state`) is refused and leaves the sign-in in progress alone: no other
/// page can cancel a consent by sending the browser to `/callback`.
#[tokio::test]
async fn a_foreign_callback_does_not_spend_the_session() {
    let app = spawn_app(StoreKind::File).await;
    let id = unique_id("foreign");
    app.add_connection(&id).await;
    let start = http()
        .get(app.link(&id).await)
        .send()
        .await
        .expect("GET link");
    let cookie = cookies_set(&start);
    let signed_in = http().get(location(&start)).send().await.expect("sign-in");
    let callback = location(&signed_in);
    let foreign = http()
        .get(app.url.join("callback?state=forged&code=x").expect("url"))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("GET callback");
    assert_eq!(foreign.status(), 400);
    assert!(
        foreign.headers().get("set-cookie").is_none(),
        "the session is kept"
    );
    let answer = http()
        .get(callback)
        .header("cookie", &cookie)
        .send()
        .await
        .expect("GET callback");
    assert_eq!(answer.status(), 200, "the real answer still connects");
    assert!(
        answer.headers().get("set-cookie").is_some(),
        "and spends the session"
    );
}

/// An identity-provider error is shown with its code, what the code means,
/// and the ids a support call needs, in the page's language.
#[tokio::test]
async fn an_entra_error_is_explained_with_its_meaning_and_support_ids() {
    let app = spawn_app(StoreKind::File).await;
    let id = unique_id("aadsts");
    app.add_connection(&id).await;
    for (lang, meaning, support) in [
        (
            "en",
            "the app's client secret has expired",
            "Correlation ID",
        ),
        (
            "fr",
            "le secret client de l’application a expiré",
            "ID de corrélation",
        ),
    ] {
        app.identity.inject(roomtoken_fake_identity::Fault::Aadsts {
            status: 401,
            error: "invalid_client".into(),
            code: 7000222,
            suberror: None,
        });
        let link = format!("{}&lang={lang}", app.link(&id).await);
        let consent = app.consent_at(&link).await;
        assert_eq!(consent.status, 502, "{}", consent.body);
        assert!(consent.body.contains("AADSTS7000222"), "{}", consent.body);
        assert!(consent.body.contains(meaning), "{}", consent.body);
        assert!(consent.body.contains(support), "{}", consent.body);
    }
    assert!(app.grant(&id).await.is_none(), "nothing stored");
}

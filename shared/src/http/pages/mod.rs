//! The browser routes: consent start and callback, with readable pages in
//! English and French. Pages are `maud` templates, which escape every value
//! they are given. The handlers are here; what they render is in `start`
//! (a link's own pages), `callback` (connected), `errors` (what went wrong,
//! and how to start again) and `copy` (Microsoft's words, in ours).

mod callback;
mod copy;
mod errors;
mod start;

use super::layout::{button, in_lang, notice, page, step_href};
use callback::*;
use copy::*;
use start::*;

use super::lang::{LANG_COOKIE, Lang, PageLang};
use super::setup::{form_page, set_up_page};
use crate::Broker;
use crate::crypto::{CONSENT_COOKIE, CONSENT_TTL, FORM_COOKIE, InviteError, cookie_name};
use crate::domain::records::format_utc;
use crate::domain::status::ShortTokens;
use crate::domain::{FailureClass, Secret};
use crate::flows::callback::{
    CallbackError, Completed, Connected, Refused, SignInAnswer, connect_callback,
};
use crate::flows::start::{Redirect, StartError, Started, Step, VendorIntro, connect_start};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum_extra::extract::CookieJar;
use axum_extra::extract::cookie::{Cookie, SameSite};
use maud::{Markup, html};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::Arc;

#[derive(Deserialize)]
pub struct StartQuery {
    pub(super) invite: Option<String>,
    step: Option<String>,
}

pub async fn start_page(
    State(broker): State<Arc<Broker>>,
    Path(id): Path<String>,
    query: Result<Query<StartQuery>, QueryRejection>,
    PageLang { lang, explicit }: PageLang,
    jar: CookieJar,
) -> Response {
    // A link whose query cannot be read (an invite twice, say) was changed.
    let Ok(Query(query)) = query else {
        return StartError::InvalidLink.render(lang);
    };
    let step = match query.step.as_deref() {
        Some("sign-in") => Step::SignIn,
        Some("admin-consent") => Step::AdminConsent,
        Some("setup") => Step::Setup,
        _ => Step::Begin,
    };
    let invite = query.invite.as_deref();
    let form_cookie = jar
        .get(cookie_name(FORM_COOKIE, broker.is_https()))
        .map(|c| c.value().to_owned());
    let started = connect_start(
        &broker,
        &id,
        invite,
        step,
        form_cookie.as_deref(),
        broker.now(),
    )
    .await;
    let invite = invite.unwrap_or_default();
    match started {
        Ok(Started::Redirect(redirect)) => {
            redirect_to_sign_in(jar, &redirect, lang, explicit, StatusCode::FOUND)
        }
        Ok(Started::VendorIntro(intro)) => vendor_intro_page(&intro, invite, lang),
        Ok(Started::SetupForm(form)) => form_page(jar, &form, invite, lang, StatusCode::OK),
        Ok(Started::SetUp(set_up)) => set_up_page(&set_up, invite, lang),
        Err(e) => {
            log_start_error(&e);
            e.render(lang)
        }
    }
}

/// The one log line of a link that failed on our side (a refused link
/// says why on its page, and is not an operator's concern).
pub(super) fn log_start_error(error: &StartError) {
    if error.is_server_failure() {
        tracing::error!(error = %error, "browser route failed");
    }
}

/// Off to the sign-in: the sealed session (and an explicit language) in
/// cookies that only the callback receives.
pub(super) fn redirect_to_sign_in(
    jar: CookieJar,
    redirect: &Redirect,
    lang: Lang,
    explicit: bool,
    status: StatusCode,
) -> Response {
    let max_age = time::Duration::seconds(CONSENT_TTL.as_secs() as i64);
    let scoped = |name: &'static str, value: String| {
        Cookie::build((name, value))
            .path(redirect.cookie_path.clone())
            .http_only(true)
            .secure(redirect.secure_cookie)
            .same_site(SameSite::Lax)
            .max_age(max_age)
    };
    let consent = cookie_name(CONSENT_COOKIE, redirect.secure_cookie);
    let mut jar = jar.add(scoped(consent, redirect.sealed_session.clone()));
    if explicit {
        // The callback page speaks the language the link asked for.
        jar = jar.add(scoped(LANG_COOKIE, <&str>::from(lang).to_owned()));
    }
    (
        status,
        jar,
        [
            (header::LOCATION, redirect.location.as_str()),
            (header::CACHE_CONTROL, "no-store"),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
    )
        .into_response()
}

/// The query the sign-in (or the admin consent) sends back to `/callback`.
#[derive(Deserialize)]
pub struct CallbackQuery {
    state: Option<String>,
    code: Option<Secret>,
    error: Option<String>,
    error_description: Option<String>,
    admin_consent: Option<String>,
}

pub async fn callback_page(
    State(broker): State<Arc<Broker>>,
    query: Result<Query<CallbackQuery>, QueryRejection>,
    PageLang { lang, .. }: PageLang,
    jar: CookieJar,
) -> (CookieJar, Response) {
    // A query no sign-in sends (a field twice, say) is no answer to this
    // browser's session: refused on a page, the session left alone.
    let Ok(Query(query)) = query else {
        tracing::warn!("consent callback refused: its query is not readable");
        return (jar, CallbackError::StateMismatch.render(lang, None));
    };
    let answer = SignInAnswer {
        state: query.state,
        code: query.code,
        error: query.error,
        error_description: query.error_description,
        admin_consent: query.admin_consent,
    };
    let consent = cookie_name(CONSENT_COOKIE, broker.is_https());
    let sealed = jar.get(consent).map(|c| c.value().to_owned());
    let result = connect_callback(&broker, answer, sealed.as_deref(), broker.now()).await;
    // A session serves one callback: whatever the answer to it, it is
    // spent. An answer that is not for this session (another `state`, or
    // none) leaves it alone, so that no other page can cancel a consent.
    let spent = sealed.is_some()
        && !matches!(
            result,
            Err(Refused {
                error: CallbackError::NoSession | CallbackError::StateMismatch,
                ..
            })
        );
    let response = match result {
        Ok(Completed::Connected(connected)) => connected_page(&connected, lang),
        Ok(Completed::AdminConsented { sign_in }) => admin_consented_page(sign_in.as_ref(), lang),
        Err(Refused { error, start_over }) => {
            // Logged once, here: at error when our side failed.
            if error.is_server_failure() {
                tracing::error!(error = %error, "consent callback failed");
            } else {
                tracing::warn!(error = %error, "consent callback refused");
            }
            error.render(lang, start_over.as_ref())
        }
    };
    let jar = match (spent, broker.redirect_uri()) {
        (true, Ok(uri)) => {
            let path = uri.path().to_owned();
            jar.remove(Cookie::build(consent).path(path.clone()))
                .remove(Cookie::build(LANG_COOKIE).path(path))
        }
        _ => jar,
    };
    (jar, response)
}

#[cfg(test)]
mod tests {
    use super::super::all_routes;
    use crate::identity::OAuthClient;
    use crate::store::{FileStore, SecretStore, StoreSpec};
    use crate::{Broker, Config};
    use axum::body::{Body, to_bytes};
    use axum::http::Request;
    use proptest::prelude::*;
    use std::sync::Arc;
    use tower::ServiceExt;

    /// One `key=value` of a callback query: the fields the callback reads
    /// (each may come twice) and others, with values encoded or raw, broken
    /// percent escapes and invalid UTF-8 among them.
    fn pair() -> impl Strategy<Value = String> {
        let key = prop_oneof![
            Just("state"),
            Just("code"),
            Just("error"),
            Just("error_description"),
            Just("admin_consent"),
            Just("tenant"),
            Just("invite"),
            Just("step"),
            Just("lang"),
            Just("session_state"),
            Just(""),
        ];
        let value = prop_oneof![
            "[ -~]{0,40}"
                .prop_map(|text| url::form_urlencoded::byte_serialize(text.as_bytes())
                    .collect::<String>()),
            Just("%3Cscript%3Ealert(1)%3C%2Fscript%3E".to_owned()),
            Just("%".to_owned()),
            Just("%zz".to_owned()),
            Just("%C3%28%FF%FE".to_owned()),
            Just("a=b=c".to_owned()),
            "[A-Za-z0-9._~-]{0,600}",
        ];
        (key, value, any::<bool>()).prop_map(|(key, value, with_equals)| {
            if with_equals || value.is_empty() {
                format!("{key}={value}")
            } else {
                key.to_owned()
            }
        })
    }

    proptest::proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        /// Whatever comes back to `/callback` without the browser's consent
        /// session (no cookie, or one that is not a sealed session), and
        /// whatever query a changed consent link has: a readable page that
        /// refuses it, nothing in it unescaped, and nothing stored.
        #[test]
        fn any_browser_query_gets_a_page_and_stores_nothing(
            pairs in proptest::collection::vec(pair(), 0..8),
            cookie in proptest::option::of("[A-Za-z0-9_-]{0,200}"),
            to_start in any::<bool>(),
        ) {
            let query = pairs.join("&");
            let (path, refused) = if to_start { ("/connect/contoso", 403) } else { ("/callback", 400) };
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            let (status, content_type, body, stored) = runtime.block_on(async {
                let dir = tempfile::tempdir().expect("temp dir");
                let store = Arc::new(FileStore::open(dir.path()).expect("file store"));
                let identity = Arc::new(OAuthClient::new(std::time::Duration::from_secs(1)).expect("client"));
                let mut config = Config::new(StoreSpec::File(dir.path().to_owned()));
                config.public_url = Some("https://api.example.com/".parse().expect("url"));
                let broker = Arc::new(Broker::new(store.clone(), identity, config));
                let mut request = Request::get(format!("{path}?{query}"));
                if let Some(cookie) = &cookie {
                    request = request.header("cookie", format!("{}={cookie}", crate::crypto::CONSENT_COOKIE));
                }
                let response = all_routes(broker)
                    .oneshot(request.body(Body::empty()).expect("request"))
                    .await
                    .expect("infallible");
                let status = response.status();
                let content_type = response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
                let body = to_bytes(response.into_body(), 1 << 20).await.expect("body");
                let stored = store.list("").await.expect("list");
                (status, content_type, String::from_utf8_lossy(&body).into_owned(), stored)
            });
            prop_assert_eq!(status.as_u16(), refused, "{}", body);
            prop_assert!(content_type.starts_with("text/html"), "{}", content_type);
            prop_assert!(body.contains("<h1>"), "{}", body);
            prop_assert!(!body.contains("<script"), "{}", body);
            // The signing key is made on first use; nothing else may be.
            prop_assert!(stored.iter().all(|name| name == "system/signing-key"), "{:?}", stored);
        }
    }
}

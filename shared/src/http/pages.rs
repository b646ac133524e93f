//! The browser routes: consent start and callback, with readable pages.

use crate::Broker;
use crate::broker::BrokerError;
use crate::crypto::{CONSENT_COOKIE, CONSENT_TTL, InviteError};
use crate::domain::FailureClass;
use crate::domain::Secret;
use crate::flows::callback::{CallbackError, Connected, SignInAnswer, connect_callback};
use crate::flows::start::{StartError, connect_start};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use cookie::{Cookie, SameSite};
use serde::Deserialize;
use std::sync::Arc;
use time::OffsetDateTime;
use time::macros::format_description;

pub fn escape_html(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            c => escaped.push(c),
        }
    }
    escaped
}

/// A plain page with the security headers every HTML answer carries.
fn page(status: StatusCode, title: &str, paragraphs: &[String]) -> Response {
    let body: String = paragraphs.iter().map(|p| format!("<p>{p}</p>\n")).collect();
    let html = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title} · roomtoken</title>\
         <style>body{{font-family:system-ui,sans-serif;max-width:40em;margin:3em auto;padding:0 1em;line-height:1.5}}\
         h1{{font-size:1.4em}}code{{background:#f2f2f2;padding:0 .2em}}</style></head>\
         <body><h1>{title}</h1>\n{body}</body></html>\n",
        title = escape_html(title),
    );
    let mut response = (status, html).into_response();
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CONTENT_TYPE, "text/html; charset=utf-8"),
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        ),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::CACHE_CONTROL, "no-store"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

fn when(t: OffsetDateTime) -> String {
    t.to_offset(time::UtcOffset::UTC)
        .format(format_description!(
            "[year]-[month]-[day] [hour]:[minute] UTC"
        ))
        .unwrap_or_default()
}

const OPEN_AGAIN: &str = "Open the consent link again to start over.";

#[derive(Deserialize)]
pub struct StartQuery {
    invite: Option<String>,
}

pub async fn start_page(
    State(broker): State<Arc<Broker>>,
    Path(id): Path<String>,
    Query(query): Query<StartQuery>,
) -> Response {
    let now = broker.now();
    match connect_start(&broker, &id, query.invite.as_deref(), now).await {
        Ok(redirect) => {
            let cookie = Cookie::build((CONSENT_COOKIE, redirect.sealed_session))
                .path("/callback")
                .http_only(true)
                .secure(redirect.secure_cookie)
                .same_site(SameSite::Lax)
                .max_age(time::Duration::seconds(CONSENT_TTL.as_secs() as i64))
                .build();
            let mut response = StatusCode::FOUND.into_response();
            let headers = response.headers_mut();
            if let (Ok(location), Ok(cookie)) = (
                HeaderValue::from_str(redirect.location.as_str()),
                HeaderValue::from_str(&cookie.to_string()),
            ) {
                headers.insert(header::LOCATION, location);
                headers.insert(header::SET_COOKIE, cookie);
            }
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            headers.insert(
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            );
            response
        }
        Err(e) => start_error_page(e),
    }
}

fn start_error_page(error: StartError) -> Response {
    match error {
        StartError::InvalidLink | StartError::Invite(InviteError::Forged) => page(
            StatusCode::FORBIDDEN,
            "This consent link is not valid",
            &["The link was changed or is incomplete. Copy the whole link from the message you received, or ask your provider for a new one.".into()],
        ),
        StartError::Invite(InviteError::Expired) => page(
            StatusCode::GONE,
            "This consent link has expired",
            &["Consent links are valid for a limited time. Ask your provider for a new link.".into()],
        ),
        StartError::UnknownConnection => page(
            StatusCode::NOT_FOUND,
            "This connection no longer exists",
            &["Ask your provider for a new consent link.".into()],
        ),
        other => unavailable_page(&other),
    }
}

fn unavailable_page(error: &dyn std::error::Error) -> Response {
    tracing::error!(error = %error, "browser route failed");
    page(
        StatusCode::SERVICE_UNAVAILABLE,
        "The service is unavailable",
        &["Something on our side failed. Try again in a few minutes; if it keeps failing, tell your provider.".into()],
    )
}

fn consent_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|cookie| cookie.name() == CONSENT_COOKIE)
        .map(|cookie| cookie.value().to_owned())
}

/// Expires the consent cookie: a session serves one callback.
fn clear_cookie(mut response: Response) -> Response {
    let removal = Cookie::build((CONSENT_COOKIE, ""))
        .path("/callback")
        .http_only(true)
        .max_age(time::Duration::ZERO)
        .build();
    if let Ok(value) = HeaderValue::from_str(&removal.to_string()) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

/// The query the sign-in sends back to `/callback`.
#[derive(Deserialize)]
pub struct CallbackQuery {
    state: Option<String>,
    code: Option<Secret>,
    error: Option<String>,
    error_description: Option<String>,
}

pub async fn callback_page(
    State(broker): State<Arc<Broker>>,
    Query(query): Query<CallbackQuery>,
    headers: HeaderMap,
) -> Response {
    let now = broker.now();
    let sealed = consent_cookie(&headers);
    let answer = SignInAnswer {
        state: query.state,
        code: query.code,
        error: query.error,
        error_description: query.error_description,
    };
    let response = match connect_callback(&broker, answer, sealed.as_deref(), now).await {
        Ok(connected) => connected_page(&connected),
        Err(e) => callback_error_page(e, now),
    };
    if sealed.is_some() {
        clear_cookie(response)
    } else {
        response
    }
}

fn connected_page(connected: &Connected) -> Response {
    let mut paragraphs = vec![
        format!(
            "Connected as <strong>{}</strong>. The access token is valid until {} and is refreshed automatically from now on.",
            escape_html(&connected.account),
            when(connected.expires_at)
        ),
        format!(
            "Resources: {}.",
            escape_html(&connected.resources.join(", "))
        ),
    ];
    if !connected.pending_resources.is_empty() {
        paragraphs.push(format!(
            "Not yet available: {} (retried automatically).",
            escape_html(&connected.pending_resources.join(", "))
        ));
    }
    paragraphs.push("What next: nothing. Displays with a device key now receive tokens; you can close this window.".into());
    page(StatusCode::OK, "Connected", &paragraphs)
}

fn callback_error_page(error: CallbackError, now: OffsetDateTime) -> Response {
    tracing::warn!(error = %error, "consent callback refused");
    let bad = |title: &str, detail: String| {
        page(StatusCode::BAD_REQUEST, title, &[detail, OPEN_AGAIN.into()])
    };
    match error {
        CallbackError::NoSession => bad(
            "Your sign-in session has expired",
            "The sign-in took too long, was started in another browser, or this page was opened twice.".into(),
        ),
        CallbackError::StateMismatch | CallbackError::MissingCode => bad(
            "This sign-in answer is not valid",
            "It does not belong to the sign-in you started in this browser.".into(),
        ),
        CallbackError::CodeRejected(e) => bad(
            "This sign-in was already used or has expired",
            format!("The identity provider refused the sign-in code ({}).", escape_html(&e.to_last_error(now).code)),
        ),
        CallbackError::Denied { error, description } => bad(
            "The sign-in was not completed",
            format!(
                "The identity provider answered <code>{}</code>{}. If consent was refused, an administrator may need to grant it first.",
                escape_html(&error),
                description.map(|d| format!(": {}", escape_html(&d))).unwrap_or_default()
            ),
        ),
        CallbackError::Claims(e) => bad("The sign-in could not be verified", escape_html(&e.to_string())),
        CallbackError::NoRefreshToken => page(
            StatusCode::BAD_REQUEST,
            "No refresh token was issued",
            &["The app registration must allow the <code>offline_access</code> permission. Tell your provider.".into()],
        ),
        CallbackError::AccountMismatch { pinned, signed_in } => page(
            StatusCode::CONFLICT,
            "This connection belongs to another account",
            &[
                format!(
                    "It is connected as <strong>{}</strong>, but <strong>{}</strong> signed in.",
                    escape_html(&pinned),
                    escape_html(&signed_in)
                ),
                "Sign in as the connected account, or ask your provider to reset the connection.".into(),
            ],
        ),
        CallbackError::SessionUsed => bad(
            "This sign-in was already completed",
            "This answer was already used to connect; it cannot be used twice.".into(),
        ),
        CallbackError::TooManyChanges { retry_at } => page(
            StatusCode::TOO_MANY_REQUESTS,
            "Too many changes to this connection today",
            &[format!(
                "This connection was changed too often in the last day. Open the consent link again after {}.",
                when(retry_at)
            )],
        ),
        CallbackError::UnknownConnection => page(
            StatusCode::NOT_FOUND,
            "This connection no longer exists",
            &["Ask your provider for a new consent link.".into()],
        ),
        CallbackError::Identity(e) => {
            let last = e.to_last_error(now);
            let (status, advice) = match e.class() {
                FailureClass::Transient => (StatusCode::SERVICE_UNAVAILABLE, "The identity provider is busy. Wait a minute, then open the consent link again."),
                FailureClass::AppMisconfigured => (StatusCode::BAD_GATEWAY, "The app registration needs fixing (tenant, client id, secret or redirect URI). Tell your provider this code."),
                FailureClass::Blocked => (StatusCode::FORBIDDEN, "The account is blocked or a Conditional Access policy refused it. Your Microsoft 365 administrator can fix this."),
                FailureClass::ReconnectNeeded => (StatusCode::BAD_REQUEST, OPEN_AGAIN),
                FailureClass::OurBug => (StatusCode::BAD_GATEWAY, "The request was refused; this is a fault on our side. Tell your provider this code."),
            };
            let trace = last
                .trace_id
                .map(|t| format!(" Trace ID: <code>{}</code>.", escape_html(&t)))
                .unwrap_or_default();
            page(
                status,
                "Tokens could not be obtained",
                &[advice.to_owned(), format!("Error <code>{}</code>.{trace}", escape_html(&last.code))],
            )
        }
        CallbackError::Broker(BrokerError::Store(e)) | CallbackError::Store(e) => unavailable_page(&e),
        CallbackError::Broker(e) => unavailable_page(&e),
    }
}

//! The browser routes: consent start and callback, with readable pages.
//! Pages are `maud` templates, which escape every value they are given.

use crate::Broker;
use crate::broker::BrokerError;
use crate::crypto::{CONSENT_COOKIE, CONSENT_TTL, InviteError};
use crate::domain::records::format_utc;
use crate::domain::{FailureClass, Secret};
use crate::flows::callback::{CallbackError, Connected, SignInAnswer, connect_callback};
use crate::flows::start::{StartError, connect_start};
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum_extra::extract::CookieJar;
use axum_extra::extract::cookie::{Cookie, SameSite};
use maud::{DOCTYPE, Markup, PreEscaped, html};
use serde::Deserialize;
use std::sync::Arc;

const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:40em;margin:3em auto;padding:0 1em;line-height:1.5}\
h1{font-size:1.4em}code{background:#f2f2f2;padding:0 .2em}";

/// The security headers every HTML answer carries.
const PAGE_HEADERS: [(header::HeaderName, &str); 6] = [
    (header::CONTENT_TYPE, "text/html; charset=utf-8"),
    (
        header::CONTENT_SECURITY_POLICY,
        "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    ),
    (header::X_FRAME_OPTIONS, "DENY"),
    (header::REFERRER_POLICY, "no-referrer"),
    (header::CACHE_CONTROL, "no-store"),
    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
];

/// A plain page: a title and its paragraphs.
fn page(status: StatusCode, title: &str, paragraphs: Markup) -> Response {
    let html = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · roomtoken" }
                style { (PreEscaped(STYLE)) }
            }
            body {
                h1 { (title) }
                (paragraphs)
            }
        }
    };
    (status, PAGE_HEADERS, html).into_response()
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
    jar: CookieJar,
) -> Result<Response, StartError> {
    let redirect = connect_start(&broker, &id, query.invite.as_deref(), broker.now()).await?;
    let cookie = Cookie::build((CONSENT_COOKIE, redirect.sealed_session))
        .path(redirect.cookie_path)
        .http_only(true)
        .secure(redirect.secure_cookie)
        .same_site(SameSite::Lax)
        .max_age(time::Duration::seconds(CONSENT_TTL.as_secs() as i64));
    Ok((
        StatusCode::FOUND,
        jar.add(cookie),
        [
            (header::LOCATION, redirect.location.as_str()),
            (header::CACHE_CONTROL, "no-store"),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
    )
        .into_response())
}

impl IntoResponse for StartError {
    fn into_response(self) -> Response {
        match self {
            Self::InvalidLink | Self::Invite(InviteError::Forged) => page(
                StatusCode::FORBIDDEN,
                "This consent link is not valid",
                html! { p { "The link was changed or is incomplete. Copy the whole link from the message you received, or ask your provider for a new one." } },
            ),
            Self::Invite(InviteError::Expired) => page(
                StatusCode::GONE,
                "This consent link has expired",
                html! { p { "Consent links are valid for a limited time. Ask your provider for a new link." } },
            ),
            Self::UnknownConnection => no_such_connection(),
            other => unavailable_page(&other),
        }
    }
}

fn no_such_connection() -> Response {
    page(
        StatusCode::NOT_FOUND,
        "This connection no longer exists",
        html! { p { "Ask your provider for a new consent link." } },
    )
}

fn unavailable_page(error: &dyn std::error::Error) -> Response {
    tracing::error!(error = %error, "browser route failed");
    page(
        StatusCode::SERVICE_UNAVAILABLE,
        "The service is unavailable",
        html! { p { "Something on our side failed. Try again in a few minutes; if it keeps failing, tell your provider." } },
    )
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
    jar: CookieJar,
) -> (CookieJar, Response) {
    let answer = SignInAnswer {
        state: query.state,
        code: query.code,
        error: query.error,
        error_description: query.error_description,
    };
    let sealed = jar.get(CONSENT_COOKIE).map(|c| c.value().to_owned());
    let response = match connect_callback(&broker, answer, sealed.as_deref(), broker.now()).await {
        Ok(connected) => connected_page(&connected),
        Err(e) => {
            tracing::warn!(error = %e, "consent callback refused");
            e.into_response()
        }
    };
    // A session serves one callback: whatever the answer, it is spent.
    let jar = match (sealed, broker.redirect_uri()) {
        (Some(_), Ok(uri)) => jar.remove(Cookie::build(CONSENT_COOKIE).path(uri.path().to_owned())),
        _ => jar,
    };
    (jar, response)
}

fn connected_page(connected: &Connected) -> Response {
    page(
        StatusCode::OK,
        "Connected",
        html! {
            p {
                "Connected as " strong { (connected.account) }
                ". The access token is valid until " (format_utc(connected.expires_at))
                " and is refreshed automatically from now on."
            }
            p { "Resources: " (connected.resources.join(", ")) "." }
            @if !connected.pending_resources.is_empty() {
                p { "Not yet available: " (connected.pending_resources.join(", ")) " (retried automatically)." }
            }
            p { "What next: nothing. Displays with a device key now receive tokens; you can close this window." }
        },
    )
}

/// A refused sign-in answer: what happened, then how to start over.
fn start_over(title: &str, detail: Markup) -> Response {
    page(
        StatusCode::BAD_REQUEST,
        title,
        html! { p { (detail) } p { (OPEN_AGAIN) } },
    )
}

impl IntoResponse for CallbackError {
    fn into_response(self) -> Response {
        match self {
            Self::NoSession => start_over(
                "Your sign-in session has expired",
                html! { "The sign-in took too long, was started in another browser, or this page was opened twice." },
            ),
            Self::StateMismatch | Self::MissingCode => start_over(
                "This sign-in answer is not valid",
                html! { "It does not belong to the sign-in you started in this browser." },
            ),
            Self::CodeRejected(e) => start_over(
                "This sign-in was already used or has expired",
                html! { "The identity provider refused the sign-in code (" (e.code()) ")." },
            ),
            Self::Denied { error, description } => start_over(
                "The sign-in was not completed",
                html! {
                    "The identity provider answered " code { (error) }
                    @if let Some(description) = description { ": " (description) }
                    ". If consent was refused, an administrator may need to grant it first."
                },
            ),
            Self::Claims(e) => start_over("The sign-in could not be verified", html! { (e) }),
            Self::NoRefreshToken => page(
                StatusCode::BAD_REQUEST,
                "No refresh token was issued",
                html! { p { "The app registration must allow the " code { "offline_access" } " permission. Tell your provider." } },
            ),
            Self::AccountMismatch { pinned, signed_in } => page(
                StatusCode::CONFLICT,
                "This connection belongs to another account",
                html! {
                    p { "It is connected as " strong { (pinned) } ", but " strong { (signed_in) } " signed in." }
                    p { "Sign in as the connected account, or ask your provider to reset the connection." }
                },
            ),
            Self::SessionUsed => start_over(
                "This sign-in was already completed",
                html! { "This answer was already used to connect; it cannot be used twice." },
            ),
            Self::TooManyChanges { retry_at } => page(
                StatusCode::TOO_MANY_REQUESTS,
                "Too many changes to this connection today",
                html! { p { "This connection was changed too often in the last day. Open the consent link again after " (format_utc(retry_at)) "." } },
            ),
            Self::UnknownConnection => no_such_connection(),
            Self::Identity(e) => {
                let (status, advice) = match e.class() {
                    FailureClass::Transient => (
                        StatusCode::SERVICE_UNAVAILABLE,
                        "The identity provider is busy. Wait a minute, then open the consent link again.",
                    ),
                    FailureClass::AppMisconfigured => (
                        StatusCode::BAD_GATEWAY,
                        "The app registration needs fixing (tenant, client id, secret or redirect URI). Tell your provider this code.",
                    ),
                    FailureClass::Blocked => (
                        StatusCode::FORBIDDEN,
                        "The account is blocked or a Conditional Access policy refused it. Your Microsoft 365 administrator can fix this.",
                    ),
                    FailureClass::ReconnectNeeded => (StatusCode::BAD_REQUEST, OPEN_AGAIN),
                    FailureClass::OurBug => (
                        StatusCode::BAD_GATEWAY,
                        "The request was refused; this is a fault on our side. Tell your provider this code.",
                    ),
                };
                page(
                    status,
                    "Tokens could not be obtained",
                    html! {
                        p { (advice) }
                        p {
                            "Error " code { (e.code()) } "."
                            @if let Some(trace) = e.trace_id() { " Trace ID: " code { (trace) } "." }
                        }
                    },
                )
            }
            Self::Broker(BrokerError::Store(e)) | Self::Store(e) => unavailable_page(&e),
            Self::Broker(e) => unavailable_page(&e),
        }
    }
}

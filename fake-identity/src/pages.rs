//! The small HTML pages of the authorize endpoint: sign-in and error.
//! `maud` escapes every value, as the product's own pages do.

use std::time::SystemTime;

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use maud::{DOCTYPE, Markup, html};

use crate::errors::{RequestCtx, default_message};
use crate::model::FakeAccount;

fn document(status: StatusCode, body: Markup) -> Response {
    let html = html! {
        (DOCTYPE)
        html {
            head { meta charset="utf-8"; title { "Sign in to your account" } }
            body { (body) }
        }
    };
    (
        status,
        [(header::CACHE_CONTROL, "no-store, no-cache")],
        html,
    )
        .into_response()
}

/// The page Microsoft shows instead of redirecting (unknown tenant, unknown app,
/// redirect URI mismatch, ...). Status 400.
pub(crate) fn error_page(code: u32, message: Option<&str>, ctx: &RequestCtx) -> Response {
    let text = ctx.describe(
        code,
        message.unwrap_or(default_message(code)),
        SystemTime::now(),
    );
    let lines: Vec<&str> = text.split("\r\n").collect();
    document(
        StatusCode::BAD_REQUEST,
        html! {
            h1 { "Sorry, but we're having trouble signing you in." }
            p id="error" data-code={ "AADSTS" (code) } {
                @for (i, line) in lines.iter().enumerate() {
                    @if i > 0 { br; }
                    (line)
                }
            }
        },
    )
}

/// What the admin-consent page shows and carries back in its POST.
pub(crate) struct AdminConsentPage<'a> {
    pub action: &'a str,
    pub client_id: &'a str,
    pub permissions: &'a [String],
    pub hidden: Vec<(&'static str, &'a str)>,
    pub accounts: &'a [FakeAccount],
}

/// Renders "Permissions requested — accept for your organization": one
/// accept button per account (`id="accept-{username}"`) and a cancel button
/// (`id="cancel"`).
pub(crate) fn admin_consent_page(page: &AdminConsentPage<'_>) -> Response {
    document(
        StatusCode::OK,
        html! {
            h1 { "Permissions requested" }
            p { "Application " code { (page.client_id) } " asks, for your whole organization:" }
            ul id="permissions" {
                @for permission in page.permissions { li { code { (permission) } } }
            }
            form method="post" action=(page.action) {
                @for (name, value) in &page.hidden {
                    input type="hidden" name=(name) value=(value);
                }
                ul {
                    @for account in page.accounts {
                        li {
                            button type="submit" id={ "accept-" (account.username) } name="account" value=(account.username) {
                                "Accept as " (account.name)
                            }
                        }
                    }
                }
                button type="submit" id="cancel" name="action" value="cancel" { "Cancel" }
            }
        },
    )
}

/// What the sign-in page must carry back in its POST.
pub(crate) struct SignInPage<'a> {
    pub action: &'a str,
    pub client_id: &'a str,
    pub hidden: Vec<(&'static str, &'a str)>,
    pub accounts: &'a [FakeAccount],
    pub login_hint: Option<&'a str>,
}

/// Renders the sign-in page: a `<select name="username">` with a submit button
/// `id="signin"`, one button per account (`id="signin-{username}"`) and a
/// cancel button (`id="cancel"`).
pub(crate) fn sign_in_page(page: &SignInPage<'_>) -> Response {
    let hint = page.login_hint.map(str::to_ascii_lowercase);
    let hinted = |account: &FakeAccount| {
        hint.as_deref() == Some(account.username.to_ascii_lowercase().as_str())
    };
    document(
        StatusCode::OK,
        html! {
            h1 { "Sign in" }
            p { "Application " code { (page.client_id) } " wants to sign you in." }
            form method="post" action=(page.action) {
                @for (name, value) in &page.hidden {
                    input type="hidden" name=(name) value=(value);
                }
                label for="username" { "Account" }
                select id="username" name="username" {
                    @for account in page.accounts {
                        option value=(account.username) selected[hinted(account)] {
                            (account.name) " (" (account.username) ")"
                        }
                    }
                }
                button type="submit" id="signin" name="action" value="signin" { "Sign in" }
                ul {
                    @for account in page.accounts {
                        li {
                            button type="submit" id={ "signin-" (account.username) } name="account" value=(account.username) {
                                "Sign in as " (account.name)
                            }
                        }
                    }
                }
                button type="submit" id="cancel" name="action" value="cancel" { "Cancel" }
            }
        },
    )
}

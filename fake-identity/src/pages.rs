//! The small HTML pages of the authorize endpoint: sign-in and error.

use std::fmt::Write as _;
use std::time::SystemTime;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::errors::{RequestCtx, default_message};
use crate::model::FakeAccount;

/// Escapes text for HTML element content and double-quoted attributes.
pub(crate) fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

fn html(status: StatusCode, body: String) -> Response {
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-store, no-cache"),
    );
    response
}

/// The page Microsoft shows instead of redirecting (unknown tenant, unknown app,
/// redirect URI mismatch, ...). Status 400.
pub(crate) fn error_page(code: u32, message: Option<&str>, ctx: &RequestCtx) -> Response {
    let text = ctx.describe(
        code,
        message.unwrap_or(default_message(code)),
        SystemTime::now(),
    );
    let body = format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Sign in to your account</title></head>\n\
         <body><h1>Sorry, but we're having trouble signing you in.</h1>\n\
         <p id=\"error\" data-code=\"AADSTS{code}\">{}</p></body></html>\n",
        escape(&text).replace("\r\n", "<br>")
    );
    html(StatusCode::BAD_REQUEST, body)
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
    let mut body = String::new();
    let _ = write!(
        body,
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Sign in to your account</title></head>\n\
         <body><h1>Sign in</h1>\n<p>Application <code>{}</code> wants to sign you in.</p>\n\
         <form method=\"post\" action=\"{}\">\n",
        escape(page.client_id),
        escape(page.action)
    );
    for (name, value) in &page.hidden {
        let _ = writeln!(
            body,
            "<input type=\"hidden\" name=\"{name}\" value=\"{}\">",
            escape(value)
        );
    }
    let hint = page.login_hint.map(str::to_ascii_lowercase);
    body.push_str(
        "<label for=\"username\">Account</label>\n<select id=\"username\" name=\"username\">\n",
    );
    for account in page.accounts {
        let selected = if hint.as_deref() == Some(account.username.to_ascii_lowercase().as_str()) {
            " selected"
        } else {
            ""
        };
        let _ = writeln!(
            body,
            "<option value=\"{0}\"{selected}>{1} ({0})</option>",
            escape(&account.username),
            escape(&account.name)
        );
    }
    body.push_str("</select>\n<button type=\"submit\" id=\"signin\" name=\"action\" value=\"signin\">Sign in</button>\n<ul>\n");
    for account in page.accounts {
        let _ = writeln!(
            body,
            "<li><button type=\"submit\" id=\"signin-{0}\" name=\"account\" value=\"{0}\">Sign in as {1}</button></li>",
            escape(&account.username),
            escape(&account.name)
        );
    }
    body.push_str(
        "</ul>\n<button type=\"submit\" id=\"cancel\" name=\"action\" value=\"cancel\">Cancel</button>\n</form></body></html>\n",
    );
    html(StatusCode::OK, body)
}

#[cfg(test)]
mod tests {
    use super::escape;

    #[test]
    fn escapes_markup() {
        assert_eq!(
            escape("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }
}

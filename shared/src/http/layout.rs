//! The shell every page shares: the HTML around a page's paragraphs, its
//! headers (Content-Security-Policy, no framing, no caching), and the small
//! pieces pages link with.

use super::lang::Lang;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use maud::{DOCTYPE, Markup, PreEscaped, html};

pub(super) const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:40em;margin:3em auto;padding:0 1em;line-height:1.5}\
h1{font-size:1.4em}h2{font-size:1.1em;margin-top:1.5em}code{background:#f2f2f2;padding:0 .2em}\
a.button{display:inline-block;padding:.6em 1.2em;background:#0b57d0;color:#fff;text-decoration:none;border-radius:.3em}\
a.button:focus,a.button:hover{outline:3px solid #f29900;outline-offset:2px}\
.field{margin:1.2em 0}label{font-weight:600}.field>label{display:block}.hint{margin:.2em 0;color:#444}\
input[type=text],input[type=password],input[type=date]{width:100%;max-width:32em;box-sizing:border-box;padding:.5em;font-size:1em;border:1px solid #555;border-radius:.2em}\
input[type=checkbox]{width:1.2em;height:1.2em;vertical-align:middle}\
input[aria-invalid=true]{border:3px solid #b3261e}.error{color:#b3261e;margin:.2em 0}\
.summary{border:3px solid #b3261e;padding:0 1em;margin:1em 0}fieldset{border:1px solid #555;border-radius:.2em}\
button{padding:.6em 1.2em;background:#0b57d0;color:#fff;border:0;border-radius:.3em;font-size:1em}\
button:focus,button:hover,input:focus{outline:3px solid #f29900;outline-offset:2px}\
dt{font-weight:600}dd{margin:0 0 .6em 0}.warning{border-left:4px solid #b06000;padding-left:.8em}";

/// The Content-Security-Policy of a page without a form: nothing loads,
/// nothing is sent anywhere.
pub(super) const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The security headers every HTML answer carries besides its CSP.
pub(super) const PAGE_HEADERS: [(header::HeaderName, &str); 5] = [
    (header::CONTENT_TYPE, "text/html; charset=utf-8"),
    (header::X_FRAME_OPTIONS, "DENY"),
    (header::REFERRER_POLICY, "no-referrer"),
    (header::CACHE_CONTROL, "no-store"),
    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
];

/// A plain page: a title and its paragraphs, in `lang`.
pub(super) fn page(status: StatusCode, lang: Lang, title: &str, paragraphs: Markup) -> Response {
    page_with_csp(status, lang, title, paragraphs, CSP)
}

/// A page that says one thing: a title and one paragraph, each given in
/// English and French.
pub(super) fn notice(
    status: StatusCode,
    lang: Lang,
    title: (&'static str, &'static str),
    text: (&'static str, &'static str),
) -> Response {
    page(
        status,
        lang,
        lang.pick(title.0, title.1),
        html! { p { (lang.pick(text.0, text.1)) } },
    )
}

/// A page with its own Content-Security-Policy (a form's allows its targets).
pub(super) fn page_with_csp(
    status: StatusCode,
    lang: Lang,
    title: &str,
    paragraphs: Markup,
    csp: &str,
) -> Response {
    let html = html! {
        (DOCTYPE)
        html lang=(<&str>::from(lang)) {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · roomtoken" }
                style { (PreEscaped(STYLE)) }
            }
            body {
                main {
                    h1 { (title) }
                    (paragraphs)
                }
            }
        }
    };
    (
        status,
        [(header::CONTENT_SECURITY_POLICY, csp)],
        PAGE_HEADERS,
        html,
    )
        .into_response()
}

/// A link that looks like a button (pages need no script and no form).
pub(super) fn button(href: &str, text: &str) -> Markup {
    html! {
        p { a.button href=(href) { (text) } }
    }
}

/// A link to a step of the consent, in the page's language.
pub(super) fn in_lang(url: &url::Url, lang: Lang) -> String {
    let mut url = url.clone();
    url.query_pairs_mut().append_pair("lang", lang.into());
    url.into()
}

/// `?invite=…&step=…&lang=…`: a step of this same link.
pub(super) fn step_href(invite: &str, step: &str, lang: Lang) -> String {
    let query = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("invite", invite)
        .append_pair("step", step)
        .append_pair("lang", lang.into())
        .finish();
    format!("?{query}")
}

//! An HTTP client like a display's or a browser's, and what tests read of
//! its answers (redirects, cookies, form tokens).

use super::*;

/// The hidden `form_token` of a self-service form page.
pub fn form_token(page: &str) -> String {
    const FIELD: &str = "name=\"form_token\" value=\"";
    page.find(FIELD)
        .and_then(|at| page[at + FIELD.len()..].split('"').next())
        .unwrap_or_default()
        .to_owned()
}

/// An HTTP client like a display's: follows no redirects, keeps no cookies.
pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("http client")
}

pub fn location(response: &reqwest::Response) -> Url {
    let text = response
        .headers()
        .get("location")
        .expect("a Location header")
        .to_str()
        .expect("ascii location");
    text.parse().expect("absolute Location")
}

/// `name=value` of the first Set-Cookie header.
pub fn set_cookie(response: &reqwest::Response) -> Option<String> {
    let header = response.headers().get("set-cookie")?.to_str().ok()?;
    header.split(';').next().map(|pair| pair.trim().to_owned())
}

/// Every cookie a response sets, as a browser sends them back
/// (`a=1; b=2`).
pub fn cookies_set(response: &reqwest::Response) -> String {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok()?.split(';').next())
        .map(str::trim)
        .collect::<Vec<_>>()
        .join("; ")
}

pub fn set_cookie_attributes(response: &reqwest::Response) -> String {
    response
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

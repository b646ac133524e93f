//! `GET|POST {base}/{tenant}/oauth2/v2.0/authorize`: validation, the sign-in
//! page, auto-consent and the redirect back with a code or an error.

use std::sync::Arc;
use std::time::SystemTime;

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use url::Url;
use uuid::Uuid;

use crate::errors::{RequestCtx, default_message};
use crate::model::FakeApp;
use crate::pages::{SignInPage, error_page, sign_in_page};
use crate::params::Params;
use crate::scopes::{ResourceScopes, Scopes};
use crate::state::{self, CodeGrant, Shared, is_tenant_alias, is_work_alias};

/// Microsoft rejects query strings much longer than this (AADSTS90015).
const MAX_QUERY_LEN: usize = 2000;

/// The parameters forwarded by the sign-in form as hidden fields.
const FORWARDED: [&str; 8] = [
    "client_id",
    "response_type",
    "redirect_uri",
    "scope",
    "state",
    "nonce",
    "code_challenge",
    "code_challenge_method",
];

/// A validated authorize request.
struct AuthzRequest {
    tenant: String,
    client_id: String,
    redirect_uri: String,
    redirect: Url,
    scope: String,
    state: Option<String>,
    nonce: Option<String>,
    code_challenge: String,
    prompt: Option<String>,
    login_hint: Option<String>,
}

/// Why an authorize request fails: an error page (no redirect) or a redirect
/// back to the app with `error=...`.
pub(crate) enum Reject {
    Page {
        code: u32,
        message: Option<String>,
    },
    Redirect {
        redirect: Box<Url>,
        state: Option<String>,
        error: &'static str,
        code: u32,
        message: String,
    },
}

impl Reject {
    pub(crate) fn page(code: u32, message: impl Into<Option<String>>) -> Self {
        Self::Page {
            code,
            message: message.into(),
        }
    }

    pub(crate) fn into_response(self, ctx: &RequestCtx) -> Response {
        match self {
            Reject::Page { code, message } => error_page(code, message.as_deref(), ctx),
            Reject::Redirect {
                redirect,
                state,
                error,
                code,
                message,
            } => {
                let description = ctx.describe(code, &message, SystemTime::now());
                let mut params = vec![
                    ("error", error),
                    ("error_description", description.as_str()),
                ];
                if let Some(state) = state.as_deref() {
                    params.push(("state", state));
                }
                redirect_back(*redirect, &params)
            }
        }
    }
}

/// 302 to `redirect` with `params` appended to its query.
pub(crate) fn redirect_back(mut redirect: Url, params: &[(&str, &str)]) -> Response {
    redirect.query_pairs_mut().extend_pairs(params);
    match HeaderValue::from_str(redirect.as_str()) {
        Ok(location) => (StatusCode::FOUND, [(header::LOCATION, location)]).into_response(),
        Err(_) => StatusCode::BAD_REQUEST.into_response(),
    }
}

/// The app a request names (registered in `tenant`, or multi-tenant: the
/// sign-in then needs that tenant's consent) and its registered redirect
/// URI, or the error page Microsoft shows instead of redirecting.
pub(crate) fn app_and_redirect<'a>(
    st: &'a state::State,
    tenant: &str,
    p: &Params,
) -> Result<(&'a FakeApp, Url), Reject> {
    let Some(client_id) = p.get("client_id") else {
        return Err(Reject::page(
            900144,
            "The request body must contain the following parameter: 'client_id'.".to_owned(),
        ));
    };
    let app = st
        .app(tenant, client_id)
        .or_else(|| st.multi_tenant_app(client_id));
    let Some(app) = app else {
        return Err(Reject::page(
            700016,
            format!(
                "Application with identifier '{client_id}' was not found in the directory '{tenant}'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You may have sent your authentication request to the wrong tenant."
            ),
        ));
    };
    let redirect_uri = p.get("redirect_uri").unwrap_or_default();
    match Url::parse(redirect_uri) {
        Ok(url) if app.redirect_uris.iter().any(|r| r == redirect_uri) => Ok((app, url)),
        _ => Err(Reject::page(
            50011,
            format!(
                "The redirect URI '{redirect_uri}' specified in the request does not match the redirect URIs configured for the application '{}'. Make sure the redirect URI sent in the request matches one added to your application in the Azure portal. Navigate to https://aka.ms/redirectUriMismatchError to learn more about how to fix this.",
                app.client_id
            ),
        )),
    }
}

/// Validates in Microsoft's order: problems with the tenant, the app or the
/// redirect URI give an error page; later problems redirect back.
fn validate(st: &state::State, tenant: &str, p: &Params) -> Result<AuthzRequest, Reject> {
    let client_id = p.get("client_id");
    let tenant = st.resolve(tenant);
    let work_alias =
        is_work_alias(tenant) && client_id.is_some_and(|id| st.multi_tenant_app(id).is_some());
    if is_tenant_alias(tenant) && !work_alias {
        return Err(Reject::page(
            50194,
            format!(
                "Application '{}' is not configured as a multi-tenant application. Usage of the /common endpoint is not supported for such applications created after '10/15/2018'. Use a tenant-specific endpoint or configure the application to be multi-tenant.",
                client_id.unwrap_or_default()
            ),
        ));
    }
    if !work_alias && !st.knows_tenant(tenant) {
        return Err(Reject::page(
            90002,
            format!(
                "Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud. Check with your subscription administrator, this may happen if there are no active subscriptions for the tenant."
            ),
        ));
    }
    let (app, redirect) = app_and_redirect(st, tenant, p)?;
    // Kept as sent: the token request must repeat it exactly.
    let redirect_uri = p.get("redirect_uri").unwrap_or_default();

    let state = p.get("state").map(str::to_owned);
    let back = |error: &'static str, code: u32, message: String| Reject::Redirect {
        redirect: Box::new(redirect.clone()),
        state: state.clone(),
        error,
        code,
        message,
    };
    match p.get("response_type") {
        None => {
            return Err(back(
                "invalid_request",
                900144,
                "The request body must contain the following parameter: 'response_type'.".into(),
            ));
        }
        Some("code") => {}
        Some(other) => {
            return Err(back(
                "invalid_request",
                700054,
                format!("response_type '{other}' is not enabled for the application."),
            ));
        }
    }
    if let Some(mode) = p.get("response_mode").filter(|m| *m != "query") {
        return Err(back(
            "invalid_request",
            9002313,
            format!(
                "Invalid request. The fake identity platform only supports response_mode 'query', not '{mode}'."
            ),
        ));
    }
    let Some(scope) = p.get("scope") else {
        return Err(back(
            "invalid_request",
            900144,
            "The request body must contain the following parameter: 'scope'.".into(),
        ));
    };
    if let Err(err) = Scopes::parse(scope) {
        return Err(back("invalid_scope", err.code, err.message));
    }
    let Some(code_challenge) = p.get("code_challenge") else {
        return Err(back(
            "invalid_request",
            9002325,
            "Proof Key for Code Exchange is required: send code_challenge and code_challenge_method=S256.".into(),
        ));
    };
    if p.get("code_challenge_method") != Some("S256") {
        return Err(back(
            "invalid_request",
            9002325,
            "Proof Key for Code Exchange with code_challenge_method 'S256' is required.".into(),
        ));
    }
    if code_challenge.len() != 43 {
        return Err(back(
            "invalid_request",
            501491,
            "Invalid size of Code_Challenge parameter.".into(),
        ));
    }
    Ok(AuthzRequest {
        tenant: tenant.to_owned(),
        client_id: app.client_id.clone(),
        redirect_uri: redirect_uri.to_owned(),
        redirect: redirect.clone(),
        scope: scope.to_owned(),
        state: state.clone(),
        nonce: p.get("nonce").map(str::to_owned),
        code_challenge: code_challenge.to_owned(),
        prompt: p.get("prompt").map(str::to_owned),
        login_hint: p.get("login_hint").map(str::to_owned),
    })
}

/// The scopes a sign-in needs consent for: each asked resource scope, with
/// `{resource}/.default` standing for the app's permissions on it.
pub(crate) fn needed_consent(app: &FakeApp, scope: &str) -> Vec<String> {
    let Ok(scopes) = Scopes::parse(scope) else {
        return Vec::new();
    };
    let resources = if scopes.resources.is_empty() {
        vec![ResourceScopes::graph_default()]
    } else {
        scopes.resources
    };
    resources
        .iter()
        .flat_map(|r| {
            r.scopes.iter().flat_map(move |s| {
                if s.to_ascii_lowercase().ends_with("/.default") {
                    app.permissions
                        .iter()
                        .filter(|p| p.starts_with(&format!("{}/", r.resource)))
                        .cloned()
                        .collect()
                } else {
                    vec![s.clone()]
                }
            })
        })
        .collect()
}

/// Signs `username` in: issues a code and redirects back with it. Through
/// `/organizations/` any work account may sign in; an app from another
/// tenant needs that tenant's consent first (AADSTS65001).
fn sign_in(st: &mut state::State, req: AuthzRequest, username: &str) -> Result<Response, Reject> {
    // Through a tenant's own endpoint, its members and its guests (B2B)
    // sign in; through `/organizations/`, any work account, at home.
    let tenant = st.resolve(&req.tenant).to_owned();
    let account = if is_work_alias(&tenant) {
        st.accounts
            .get(&state::key(username))
            .map(|r| r.account.clone())
    } else {
        st.account_seen_in(&tenant, username)
    };
    // A work account of another tenant, not a guest here: Microsoft names
    // its home organization in the refusal and issues no code.
    if let (None, Some(home)) = (&account, st.accounts.get(&state::key(username))) {
        return Err(Reject::page(
            50020,
            format!(
                "User account '{username}' from identity provider 'https://sts.windows.net/{}/' does not exist in tenant '{}' and cannot access the application '{}' in that tenant. The account needs to be added as an external user in the tenant first. Sign out and sign in again with a different Microsoft Entra user account.",
                home.account.tenant, req.tenant, req.client_id
            ),
        ));
    }
    let Some(account) = account else {
        return Err(Reject::page(
            50034,
            format!(
                "The user account {username} does not exist in the '{}' directory. To sign into this application, the account must be added to the directory.",
                req.tenant
            ),
        ));
    };
    let username = account.username.clone();
    let user_tenant = account.tenant.clone();
    let app = st
        .app(&user_tenant, &req.client_id)
        .or_else(|| st.multi_tenant_app(&req.client_id));
    let needed = app.map(|app| needed_consent(app, &req.scope));
    let consented = app
        .zip(needed.as_ref())
        .is_some_and(|(app, needed)| st.has_consented(&user_tenant, app, needed));
    if !consented {
        return Err(Reject::Redirect {
            redirect: Box::new(req.redirect),
            state: req.state,
            error: "consent_required",
            code: 65001,
            message: format!(
                "The user or administrator has not consented to use the application with ID '{}'. Send an interactive authorization request for this user and resource.",
                req.client_id
            ),
        });
    }
    // Signing in is consenting, for the user, to what the request asked.
    st.record_user_consent(
        &user_tenant,
        &req.client_id,
        &username,
        &needed.unwrap_or_default(),
    );
    let expires_at = st.now() + st.code_lifetime;
    let code = st.issue_code(CodeGrant {
        tenant: user_tenant,
        client_id: req.client_id,
        redirect_uri: req.redirect_uri,
        code_challenge: req.code_challenge,
        nonce: req.nonce,
        scope: req.scope,
        username: state::key(&username),
        expires_at,
        redeemed: false,
    });
    let session_state = Uuid::new_v4().to_string();
    let mut params = vec![("code", code.as_str())];
    if let Some(state) = req.state.as_deref() {
        params.push(("state", state));
    }
    params.push(("session_state", session_state.as_str()));
    Ok(redirect_back(req.redirect, &params))
}

/// `GET /authorize`: auto-consent redirect, `prompt=none` failure, or the sign-in page.
pub(crate) async fn get(
    State(shared): State<Arc<Shared>>,
    Path(tenant): Path<String>,
    RawQuery(query): RawQuery,
    ctx: RequestCtx,
) -> Response {
    let query = query.unwrap_or_default();
    let mut st = shared.lock();
    st.counters.authorize_requests += 1;
    if query.len() > MAX_QUERY_LEN {
        return error_page(90015, None, &ctx);
    }
    let params = Params::parse(query.as_bytes());
    let req = match validate(&st, &tenant, &params) {
        Ok(req) => req,
        Err(reject) => return reject.into_response(&ctx),
    };
    // What binds the sign-in to the client's session: never to be logged.
    for value in [&req.state, &req.nonce].into_iter().flatten() {
        st.remember_secret(value);
    }
    if let Some(username) = st.auto_consent.clone() {
        return sign_in(&mut st, req, &username).unwrap_or_else(|r| r.into_response(&ctx));
    }
    if req.prompt.as_deref() == Some("none") {
        return Reject::Redirect {
            redirect: Box::new(req.redirect),
            state: req.state,
            error: "login_required",
            code: 50058,
            message: default_message(50058).to_owned(),
        }
        .into_response(&ctx);
    }
    let accounts = if is_work_alias(&req.tenant) {
        st.work_accounts()
    } else {
        st.accounts_of(&req.tenant)
    };
    drop(st);
    let action = shared.endpoint(&tenant, "authorize");
    let hidden = FORWARDED
        .iter()
        .filter_map(|name| params.get(name).map(|v| (*name, v)))
        .collect();
    sign_in_page(&SignInPage {
        action: action.as_str(),
        client_id: &req.client_id,
        hidden,
        accounts: &accounts,
        login_hint: req.login_hint.as_deref(),
    })
}

/// `POST /authorize`: the sign-in page's submission (sign in or cancel).
pub(crate) async fn post(
    State(shared): State<Arc<Shared>>,
    Path(tenant): Path<String>,
    ctx: RequestCtx,
    params: Params,
) -> Response {
    let mut st = shared.lock();
    let req = match validate(&st, &tenant, &params) {
        Ok(req) => req,
        Err(reject) => return reject.into_response(&ctx),
    };
    if params.get("action") == Some("cancel") {
        return Reject::Redirect {
            redirect: Box::new(req.redirect),
            state: req.state,
            error: "access_denied",
            code: 65004,
            message: default_message(65004).to_owned(),
        }
        .into_response(&ctx);
    }
    let Some(username) = params
        .get("account")
        .or_else(|| params.get("username"))
        .map(str::to_owned)
    else {
        return error_page(
            900144,
            Some("The request body must contain the following parameter: 'username'."),
            &ctx,
        );
    };
    sign_in(&mut st, req, &username).unwrap_or_else(|r| r.into_response(&ctx))
}

//! `GET|POST {base}/{tenant}/v2.0/adminconsent`: an administrator grants a
//! (multi-tenant) app its permissions for the whole organization. The
//! answer goes back to the app's redirect URI as `admin_consent=True&tenant=…`
//! or `error=…`; the `tenant` there is a hint, never an identity.

use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::response::Response;
use url::Url;

use super::authorize::{Reject, app_and_redirect, needed_consent, redirect_back};
use crate::errors::RequestCtx;
use crate::model::FakeApp;
use crate::pages::{AdminConsentPage, admin_consent_page};
use crate::params::Params;
use crate::state::{self, Shared, is_work_alias, key};

/// The parameters the consent page carries back in its POST.
const FORWARDED: [&str; 4] = ["client_id", "scope", "redirect_uri", "state"];

/// A checked admin-consent request.
struct ConsentRequest {
    tenant: String,
    app: FakeApp,
    redirect: Url,
    scope: String,
    state: Option<String>,
}

impl ConsentRequest {
    fn back(&self, params: &[(&str, &str)]) -> Response {
        let mut all = params.to_vec();
        if let Some(state) = self.state.as_deref() {
            all.push(("state", state));
        }
        redirect_back(self.redirect.clone(), &all)
    }

    fn refused(&self, error: &'static str, code: u32, message: &str) -> Reject {
        Reject::Redirect {
            redirect: Box::new(self.redirect.clone()),
            state: self.state.clone(),
            error,
            code,
            message: message.to_owned(),
        }
    }
}

fn validate(st: &state::State, tenant: &str, p: &Params) -> Result<ConsentRequest, Reject> {
    let tenant = st.resolve(tenant);
    if !is_work_alias(tenant) && !st.knows_tenant(tenant) {
        return Err(Reject::page(
            90002,
            format!(
                "Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud."
            ),
        ));
    }
    let (app, redirect) = app_and_redirect(st, tenant, p)?;
    let app = app.clone();
    let request = ConsentRequest {
        tenant: tenant.to_owned(),
        app,
        redirect,
        scope: String::new(),
        state: p.get("state").map(str::to_owned),
    };
    let Some(scope) = p.get("scope") else {
        return Err(request.refused(
            "invalid_request",
            900144,
            "The request body must contain the following parameter: 'scope'.",
        ));
    };
    Ok(ConsentRequest {
        scope: scope.to_owned(),
        ..request
    })
}

/// What accepting grants: `.default` is "the app's configured
/// permissions", all of them; other scopes are granted as asked.
fn granted_by(req: &ConsentRequest) -> Vec<String> {
    if req.scope.to_ascii_lowercase().contains("/.default") {
        req.app.permissions.clone()
    } else {
        needed_consent(&req.app, &req.scope)
    }
}

/// The administrator `username` accepts: the consent is recorded in their
/// tenant, and the app is told which tenant that was.
fn grant(st: &mut state::State, req: &ConsentRequest, username: &str) -> Result<Response, Reject> {
    let account = if is_work_alias(&req.tenant) {
        st.accounts.get(&key(username))
    } else {
        st.account_in(&req.tenant, username)
    };
    let Some(account) = account.map(|a| a.account.clone()) else {
        return Err(Reject::page(
            50034,
            format!(
                "The user account {username} does not exist in the '{}' directory.",
                req.tenant
            ),
        ));
    };
    if !account.admin {
        return Err(Reject::page(
            90094,
            "The grant requires admin permission: an administrator of your organization must grant consent to this application.".to_owned(),
        ));
    }
    let scopes = granted_by(req);
    let service_principal = (key(&account.tenant), key(&req.app.client_id));
    st.consents
        .entry(service_principal.clone())
        .or_default()
        .extend(scopes.iter().map(|s| key(s)));
    // `.default` grants the configured application permissions too: they
    // become app-role assignments of the tenant's service principal.
    if req.scope.to_ascii_lowercase().contains("/.default") {
        let roles = st
            .application_permissions
            .get(&key(&req.app.client_id))
            .cloned()
            .unwrap_or_default();
        st.app_roles
            .entry(service_principal)
            .or_default()
            .extend(roles);
    }
    st.counters.admin_consents += 1;
    Ok(req.back(&[
        ("admin_consent", "True"),
        ("tenant", &account.tenant),
        ("scope", &scopes.join(" ")),
    ]))
}

/// `GET`: the consent page, or the auto-consenting administrator's answer.
pub(crate) async fn get(
    State(shared): State<Arc<Shared>>,
    Path(tenant): Path<String>,
    RawQuery(query): RawQuery,
    ctx: RequestCtx,
) -> Response {
    let params = Params::parse(query.unwrap_or_default().as_bytes());
    let mut st = shared.lock();
    let req = match validate(&st, &tenant, &params) {
        Ok(req) => req,
        Err(reject) => return reject.into_response(&ctx),
    };
    if let Some(admin) = st.auto_admin_consent.clone() {
        return grant(&mut st, &req, &admin).unwrap_or_else(|r| r.into_response(&ctx));
    }
    let accounts = if is_work_alias(&req.tenant) {
        st.work_accounts()
    } else {
        st.accounts_of(&req.tenant)
    };
    drop(st);
    let action = shared.admin_consent_endpoint(&tenant);
    let hidden = FORWARDED
        .iter()
        .filter_map(|name| params.get(name).map(|v| (*name, v)))
        .collect();
    admin_consent_page(&AdminConsentPage {
        action: action.as_str(),
        client_id: &req.app.client_id,
        permissions: &granted_by(&req),
        hidden,
        accounts: &accounts,
    })
}

/// `POST`: the page's answer, accept (as an account) or cancel.
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
        return req
            .refused(
                "access_denied",
                65004,
                "User declined to consent to access the app.",
            )
            .into_response(&ctx);
    }
    let Some(username) = params.get("account") else {
        return Reject::page(
            900144,
            "The request body must contain the following parameter: 'account'.".to_owned(),
        )
        .into_response(&ctx);
    };
    grant(&mut st, &req, username).unwrap_or_else(|r| r.into_response(&ctx))
}

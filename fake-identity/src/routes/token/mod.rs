//! `POST {base}/{tenant}/oauth2/v2.0/token`: faults, client authentication and
//! the three grants (authorization code with PKCE, refresh token, client credentials).

use std::sync::Arc;
use std::time::SystemTime;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::Serialize;

use crate::errors::{AadError, RequestCtx, ms_timestamp};
use crate::jwt;
use crate::model::{FakeApp, Fault, GrantType};
use crate::params::Params;
use crate::pkce::pkce_challenge;
use crate::routes::authorize::needed_consent;
use crate::scopes::{ResourceScopes, Scopes};
use crate::state::{self, REFRESH_TOKEN_MAX_IDLE, Shared, is_tenant_alias, is_work_alias, key};

mod client_auth;
mod client_credentials;
mod delegated;

use client_auth::*;
use client_credentials::*;
use delegated::*;

/// Why a token request gets no tokens: the fake's own refusal, or a fault
/// a test injected for it (served only once the request passed every check).
enum Refusal {
    Error(AadError),
    Injected(Fault),
}

impl From<AadError> for Refusal {
    fn from(err: AadError) -> Self {
        Self::Error(err)
    }
}

/// A successful token response, field order as Microsoft sends it.
#[derive(Serialize)]
struct TokenResponse {
    token_type: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    scope: Option<String>,
    expires_in: u64,
    ext_expires_in: u64,
    access_token: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    refresh_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    id_token: Option<String>,
}

/// Handles one token request: counts it, applies latency, processes it, and
/// answers with its tokens, its refusal, or the fault injected for it.
pub(crate) async fn post(
    State(shared): State<Arc<Shared>>,
    Path(tenant): Path<String>,
    ctx: RequestCtx,
    headers: HeaderMap,
    params: Params,
) -> Response {
    let (latency, gate) = {
        let mut st = shared.lock();
        st.counters.token_requests += 1;
        let mut gate = None;
        if params.get("grant_type") == Some("refresh_token") {
            if let Some(rt) = params.get("refresh_token") {
                st.counters.refresh_tokens_used.push(rt.to_owned());
            }
            gate = pass_gate(&mut st);
        }
        (st.latency, gate)
    };
    if let Some(gate) = gate {
        // A test that gates refreshes waits for all of them; if one never
        // comes, the others are answered anyway rather than hang.
        let _ = tokio::time::timeout(GATE_TIMEOUT, gate.wait()).await;
    }
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let result = {
        let mut st = shared.lock();
        let audience = shared.endpoint(&tenant, "token").to_string();
        process(
            &mut st,
            shared.base_str(),
            &tenant,
            &audience,
            &headers,
            &params,
        )
    };
    match result {
        Ok(body) => {
            let json = serde_json::to_string(&body).unwrap_or_default();
            let headers = ctx.response_headers("application/json; charset=utf-8");
            (StatusCode::OK, headers, json).into_response()
        }
        Err(Refusal::Error(err)) => err.into_response(&ctx),
        Err(Refusal::Injected(fault)) => serve_fault(fault, &ctx).await,
    }
}

/// The longest a gated refresh waits for the others.
const GATE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Counts a refresh request through the gate, if one is set: the barrier
/// it must wait on. The last one expected removes the gate.
fn pass_gate(st: &mut state::State) -> Option<Arc<tokio::sync::Barrier>> {
    let (barrier, still_to_come) = st.refresh_gate.as_mut()?;
    let barrier = barrier.clone();
    *still_to_come = still_to_come.saturating_sub(1);
    if *still_to_come == 0 {
        st.refresh_gate = None;
    }
    Some(barrier)
}

/// Answers an injected fault (after hanging, for `Hang`).
async fn serve_fault(fault: Fault, ctx: &RequestCtx) -> Response {
    match fault {
        Fault::Raw { status, body } => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
            (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
        }
        Fault::NotJson { status, html } => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
            if html {
                let page = format!(
                    "<!DOCTYPE html><html><head><title>{status}</title></head><body><h1>{status}</h1><p>The service is unavailable. Please try again later.</p></body></html>"
                );
                (status, [(header::CONTENT_TYPE, "text/html")], page).into_response()
            } else {
                status.into_response()
            }
        }
        fault => fault_error(fault).await.into_response(ctx),
    }
}

/// Turns an injected fault into the Microsoft-shaped error to answer.
async fn fault_error(fault: Fault) -> AadError {
    match fault {
        Fault::Aadsts {
            status,
            error,
            code,
            suberror,
        } => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
            let mut err = AadError::standard(status, &error, code);
            err.suberror = suberror;
            err
        }
        Fault::TooManyRequests { retry_after_secs } => throttled(retry_after_secs.to_string()),
        Fault::TooManyRequestsWith { retry_after } => throttled(retry_after),
        Fault::RequestLoop => AadError::standard(StatusCode::BAD_REQUEST, "invalid_grant", 50196),
        Fault::ServerError { status } => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            if status == StatusCode::SERVICE_UNAVAILABLE {
                AadError::standard(status, "temporarily_unavailable", 90033)
            } else {
                AadError::standard(status, "server_error", 50000)
            }
        }
        Fault::Hang(duration) => {
            tokio::time::sleep(duration).await;
            AadError::standard(StatusCode::GATEWAY_TIMEOUT, "server_error", 90024)
        }
        // Answered before this is reached; a 500 if it ever is.
        Fault::Raw { .. } | Fault::NotJson { .. } => {
            AadError::standard(StatusCode::INTERNAL_SERVER_ERROR, "server_error", 50000)
        }
    }
}

/// 429 with `Retry-After`, as Entra ID throttles a client.
fn throttled(retry_after: String) -> AadError {
    let mut err = AadError::standard(
        StatusCode::TOO_MANY_REQUESTS,
        "temporarily_unavailable",
        90055,
    );
    err.retry_after = Some(retry_after);
    err
}

/// What every grant works from: who asks, where, what, and when.
struct GrantRequest<'a> {
    issuer_base: &'a str,
    tenant: &'a str,
    app: &'a FakeApp,
    params: &'a Params,
    now: SystemTime,
}

/// Validates tenant, grant type and client, then runs the grant.
fn process(
    st: &mut state::State,
    issuer_base: &str,
    tenant: &str,
    audience: &str,
    headers: &HeaderMap,
    p: &Params,
) -> Result<TokenResponse, Refusal> {
    let tenant = st.resolve(tenant).to_owned();
    let tenant = tenant.as_str();
    let grant_type = p.get("grant_type");
    let multi_tenant_client = p
        .get("client_id")
        .is_some_and(|id| st.multi_tenant_app(id).is_some());
    let work_alias_allowed =
        is_work_alias(tenant) && multi_tenant_client && grant_type != Some("client_credentials");
    if is_tenant_alias(tenant) && !work_alias_allowed {
        return Err(Refusal::Error(
            if grant_type == Some("client_credentials") {
                AadError::invalid_request(
                    9001023,
                    "The grant type is not supported over the /common or /consumers endpoints. Please use the /organizations or tenant-specific endpoint.",
                )
            } else {
                AadError::invalid_request(
                    50194,
                    "The application is not configured as a multi-tenant application. Usage of the /common endpoint is not supported for such applications created after '10/15/2018'. Use a tenant-specific endpoint or configure the application to be multi-tenant.",
                )
            },
        ));
    }
    if !work_alias_allowed && !st.knows_tenant(tenant) {
        return Err(Refusal::Error(AadError::invalid_request(
            90002,
            format!(
                "Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud. Check with your subscription administrator, this may happen if there are no active subscriptions for the tenant."
            ),
        )));
    }
    let grant = match grant_type {
        None => return Err(AadError::missing_param("grant_type").into()),
        Some("authorization_code") => GrantType::AuthorizationCode,
        Some("refresh_token") => GrantType::RefreshToken,
        Some("client_credentials") => GrantType::ClientCredentials,
        Some(other) => {
            return Err(Refusal::Error(AadError::new(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                70003,
                format!("The app requested an unsupported grant type '{other}'."),
            )));
        }
    };
    let result = run_grant(st, issuer_base, tenant, audience, headers, p, grant);
    if !matches!(result, Err(Refusal::Injected(_))) {
        let counter = match grant {
            GrantType::AuthorizationCode => &mut st.counters.authorization_code_grants,
            GrantType::RefreshToken => &mut st.counters.refresh_token_grants,
            GrantType::ClientCredentials => &mut st.counters.client_credentials_grants,
        };
        *counter += 1;
    }
    result
}

/// Authenticates the client, then runs the grant.
fn run_grant(
    st: &mut state::State,
    issuer_base: &str,
    tenant: &str,
    audience: &str,
    headers: &HeaderMap,
    p: &Params,
    grant: GrantType,
) -> Result<TokenResponse, Refusal> {
    let app = authenticate(st, tenant, audience, headers, p, grant)?;
    let request = GrantRequest {
        issuer_base,
        tenant,
        app: &app,
        params: p,
        now: st.now(),
    };
    match grant {
        GrantType::AuthorizationCode => authorization_code(st, &request),
        GrantType::RefreshToken => refresh_token(st, &request),
        GrantType::ClientCredentials => client_credentials(st, &request),
    }
}

/// The answer for a request that passed every check: the fault a test
/// injected for it, if any.
fn injected(
    st: &mut state::State,
    r: &GrantRequest<'_>,
    username: &str,
    grant: GrantType,
) -> Result<(), Refusal> {
    match st.take_fault(&r.app.client_id, username, grant) {
        Some(fault) => Err(Refusal::Injected(fault)),
        None => Ok(()),
    }
}

/// AADSTS65001 unless `username` (or an admin for the tenant) consented to
/// every scope `resource` needs.
fn require_consent(
    st: &state::State,
    r: &GrantRequest<'_>,
    tenant: &str,
    username: &str,
    resource: &ResourceScopes,
) -> Result<(), AadError> {
    let needed = needed_consent(r.app, &resource.joined());
    if st.may_use(tenant, r.app, username, &needed) {
        return Ok(());
    }
    let mut err = AadError::invalid_grant(
        65001,
        format!(
            "The user or administrator has not consented to use the application with ID '{}'. Send an interactive authorization request for this user and resource.",
            r.app.client_id
        ),
    );
    err.suberror = Some("consent_required".into());
    Err(err)
}

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

/// Client id and secret from an `Authorization: Basic` header.
struct BasicCredentials {
    client_id: String,
    /// The secret after form-url-decoding, and as sent (for clients that do not encode).
    secrets: [String; 2],
}

/// Parses `Authorization: Basic base64(urlencode(id):urlencode(secret))`.
/// Other schemes are ignored.
fn basic_credentials(headers: &HeaderMap) -> Result<Option<BasicCredentials>, AadError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let malformed = || {
        AadError::invalid_request(
            9002313,
            "Invalid request. Request is malformed or invalid: the Authorization header is not valid HTTP Basic.",
        )
    };
    let value = value.to_str().map_err(|_| malformed())?;
    let Some((scheme, encoded)) = value.split_once(' ') else {
        return Ok(None);
    };
    if !scheme.eq_ignore_ascii_case("basic") {
        return Ok(None);
    }
    let decoded = STANDARD.decode(encoded.trim()).map_err(|_| malformed())?;
    let decoded = String::from_utf8(decoded).map_err(|_| malformed())?;
    let (id, secret) = decoded.split_once(':').ok_or_else(malformed)?;
    Ok(Some(BasicCredentials {
        client_id: form_decode(id),
        secrets: [form_decode(secret), secret.to_owned()],
    }))
}

/// `application/x-www-form-urlencoded` decoding of one value (`+` is a space;
/// malformed `%` escapes are kept as they are), as RFC 6749 2.3.1 asks of
/// the Basic credentials.
fn form_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(&s.replace('+', " "))
        .decode_utf8_lossy()
        .into_owned()
}

/// Client authentication: a client assertion (`private_key_jwt`),
/// `client_secret_post` or HTTP Basic; public clients (empty registered
/// secret) must not send a secret.
fn authenticate(
    st: &mut state::State,
    tenant: &str,
    audience: &str,
    headers: &HeaderMap,
    p: &Params,
    grant: GrantType,
) -> Result<FakeApp, AadError> {
    let basic = basic_credentials(headers)?;
    let client_id = match (&basic, p.get("client_id")) {
        (Some(b), Some(form)) if !b.client_id.eq_ignore_ascii_case(form) => {
            return Err(AadError::invalid_request(
                9002313,
                "Invalid request. Request is malformed or invalid: the client_id in the body does not match the Authorization header.",
            ));
        }
        (Some(b), _) => b.client_id.clone(),
        (None, Some(form)) => form.to_owned(),
        (None, None) => return Err(AadError::missing_param("client_id")),
    };
    let Some(app) = st.app_seen_from(tenant, &client_id).cloned() else {
        if grant == GrantType::ClientCredentials && st.multi_tenant_app(&client_id).is_some() {
            // Known, but nobody in this tenant granted it: no service principal.
            return Err(AadError::new(
                StatusCode::BAD_REQUEST,
                "invalid_client",
                7000229,
                format!(
                    "The client application {client_id} is missing service principal in the tenant {tenant}. See instructions here: https://go.microsoft.com/fwlink/?linkid=2225119"
                ),
            ));
        }
        return Err(AadError::new(
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
            700016,
            format!(
                "Application with identifier '{client_id}' was not found in the directory '{tenant}'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You may have sent your authentication request to the wrong tenant."
            ),
        ));
    };
    if p.get("client_assertion_type").is_some() || p.get("client_assertion").is_some() {
        if basic.is_some() || p.get("client_secret").is_some() {
            return Err(AadError::invalid_request(
                90023,
                "A client secret and a client assertion were both presented: use one.",
            ));
        }
        if p.get("client_assertion_type") != Some(crate::assertion::ASSERTION_TYPE) {
            return Err(AadError::invalid_request(
                50027,
                format!(
                    "client_assertion_type must be '{}'.",
                    crate::assertion::ASSERTION_TYPE
                ),
            ));
        }
        let assertion = p
            .get("client_assertion")
            .ok_or_else(|| AadError::missing_param("client_assertion"))?;
        crate::assertion::verify(st, &app, assertion, audience)?;
        return Ok(app);
    }
    let app = &app;
    let presented: Option<Vec<&str>> = match (&basic, p.get("client_secret")) {
        (Some(b), _) => Some(b.secrets.iter().map(String::as_str).collect()),
        (None, Some(secret)) => Some(vec![secret]),
        (None, None) => None,
    };
    if app.client_secret.is_empty() {
        if presented.is_some() {
            return Err(AadError::invalid_client(
                700025,
                "Client is public so neither 'client_assertion' nor 'client_secret' should be presented.",
            ));
        }
        if grant == GrantType::ClientCredentials {
            return Err(AadError::invalid_client(
                7000218,
                crate::errors::default_message(7000218),
            ));
        }
        return Ok(app.clone());
    }
    match presented {
        None => Err(AadError::invalid_client(
            7000218,
            crate::errors::default_message(7000218),
        )),
        Some(candidates) if candidates.iter().any(|c| st.expired_secrets.contains(*c)) => {
            Err(AadError::invalid_client(
                7000222,
                format!(
                    "The provided client secret keys for app '{}' are expired. Visit the Azure portal to create new keys for your app.",
                    app.client_id
                ),
            ))
        }
        Some(candidates) if candidates.iter().any(|c| st.secret_of(app, c)) => Ok(app.clone()),
        Some(_) => Err(AadError::invalid_client(
            7000215,
            format!(
                "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '{}'.",
                app.client_id
            ),
        )),
    }
}

/// The `scope` string of a delegated answer: resource scopes, then the OIDC
/// scopes asked for (plus `offline_access` when a refresh token is returned).
fn granted_scope(resource: &ResourceScopes, oidc: &[String], with_refresh: bool) -> String {
    let mut parts: Vec<&str> = resource.scopes.iter().map(String::as_str).collect();
    for s in oidc {
        if s != "offline_access" || with_refresh {
            parts.push(s);
        }
    }
    if with_refresh && !oidc.iter().any(|s| s == "offline_access") {
        parts.push("offline_access");
    }
    parts.join(" ")
}

/// What a delegated grant resolved to, ready for issuing.
struct Delegated<'a> {
    /// The tenant the user signed in to (their home, or one they are a guest of).
    tenant: &'a str,
    username: &'a str,
    resource: ResourceScopes,
    oidc: Vec<String>,
    refresh: bool,
    id_token_nonce: Option<Option<String>>,
    consented_scope: String,
}

/// Issues access token, optional refresh token and optional id_token.
fn issue_delegated(
    st: &mut state::State,
    r: &GrantRequest<'_>,
    d: Delegated<'_>,
) -> Result<TokenResponse, AadError> {
    let (client_id, now) = (r.app.client_id.as_str(), r.now);
    // Tokens belong to the tenant the user signed in to, whichever path (a
    // tenant or `/organizations/`) asks for them.
    let account = st
        .account_seen_in(d.tenant, d.username)
        .ok_or_else(|| AadError::standard(StatusCode::BAD_REQUEST, "invalid_grant", 70008))?;
    let tenant = account.tenant.as_str();
    let access_token =
        st.issue_access_token(tenant, client_id, &account.username, &d.resource, now);
    let refresh_token = d.refresh.then(|| {
        st.issue_refresh_token(
            tenant,
            client_id,
            &account.username,
            &d.consented_scope,
            now,
        )
    });
    let id_token = d.id_token_nonce.map(|nonce| {
        let token = jwt::id_token(r.issuer_base, &account, client_id, nonce.as_deref(), now);
        st.remember_secret(&token);
        token
    });
    let lifetime = st.access_token_lifetime.as_secs();
    Ok(TokenResponse {
        token_type: "Bearer",
        scope: Some(granted_scope(&d.resource, &d.oidc, refresh_token.is_some())),
        expires_in: lifetime,
        ext_expires_in: lifetime,
        access_token,
        refresh_token,
        id_token,
    })
}

/// `grant_type=authorization_code` with PKCE S256.
fn authorization_code(
    st: &mut state::State,
    r: &GrantRequest<'_>,
) -> Result<TokenResponse, Refusal> {
    // The PKCE verifier proves the client's session: never to be logged.
    if let Some(verifier) = r.params.get("code_verifier") {
        st.remember_secret(verifier);
    }
    let code = r
        .params
        .get("code")
        .ok_or_else(|| AadError::missing_param("code"))?;
    let redirect_uri = r
        .params
        .get("redirect_uri")
        .ok_or_else(|| AadError::missing_param("redirect_uri"))?;
    let Some(grant) = st.codes.get(code) else {
        return Err(AadError::standard(StatusCode::BAD_REQUEST, "invalid_grant", 70008).into());
    };
    if !is_work_alias(r.tenant) && key(&grant.tenant) != key(r.tenant) {
        return Err(AadError::invalid_grant(
            700005,
            "Provided Authorization Code is intended to use against other tenant, thus rejected.",
        )
        .into());
    }
    if key(&grant.client_id) != key(&r.app.client_id) {
        return Err(AadError::invalid_grant(
            70000,
            "Provided grant is invalid or malformed: the authorization code was issued to a different client.",
        )
        .into());
    }
    if r.now >= grant.expires_at {
        return Err(AadError::standard(StatusCode::BAD_REQUEST, "invalid_grant", 70008).into());
    }
    if grant.redeemed {
        return Err(AadError::standard(StatusCode::BAD_REQUEST, "invalid_grant", 54005).into());
    }
    if grant.redirect_uri != redirect_uri {
        return Err(AadError::invalid_grant(
            70000,
            "The provided value for the 'redirect_uri' is not valid. The value must exactly match the redirect URI used to obtain the authorization code.",
        )
        .into());
    }
    let verifier = r
        .params
        .get("code_verifier")
        .ok_or_else(|| AadError::missing_param("code_verifier"))?;
    if pkce_challenge(verifier) != grant.code_challenge {
        return Err(AadError::standard(StatusCode::BAD_REQUEST, "invalid_grant", 501481).into());
    }
    let consented = Scopes::parse(&grant.scope)?;
    let (resource, asked) = match r.params.get("scope") {
        Some(scope) => {
            let asked = Scopes::parse(scope)?;
            (asked.single_resource()?, asked)
        }
        None => (consented.first_resource(), Scopes::default()),
    };
    let mut oidc = consented.oidc.clone();
    for s in asked.oidc {
        if !oidc.contains(&s) {
            oidc.push(s);
        }
    }
    let refresh = oidc.iter().any(|s| s == "offline_access");
    let openid = oidc.iter().any(|s| s == "openid");
    let username = grant.username.clone();
    let user_tenant = grant.tenant.clone();
    let nonce = grant.nonce.clone();
    let consented_scope = grant.scope.clone();
    require_consent(st, r, &user_tenant, &username, &resource)?;
    injected(st, r, &username, GrantType::AuthorizationCode)?;
    if let Some(grant) = st.codes.get_mut(code) {
        grant.redeemed = true;
    }
    issue_delegated(
        st,
        r,
        Delegated {
            tenant: &user_tenant,
            username: &username,
            resource,
            oidc,
            refresh,
            id_token_nonce: openid.then_some(nonce),
            consented_scope,
        },
    )
    .map_err(Refusal::from)
}

/// `grant_type=refresh_token`: rotation, old tokens stay valid unless
/// revoked or idle for 90 days.
fn refresh_token(st: &mut state::State, r: &GrantRequest<'_>) -> Result<TokenResponse, Refusal> {
    let rt = r
        .params
        .get("refresh_token")
        .ok_or_else(|| AadError::missing_param("refresh_token"))?;
    let Some(grant) = st.refresh_tokens.get(rt) else {
        return Err(AadError::malformed("invalid_grant").into());
    };
    if !is_work_alias(r.tenant) && key(&grant.tenant) != key(r.tenant) {
        return Err(AadError::malformed("invalid_grant").into());
    }
    if key(&grant.client_id) != key(&r.app.client_id) {
        return Err(AadError::invalid_grant(
            70000,
            "Provided grant is invalid or malformed: the refresh token was issued to a different client.",
        )
        .into());
    }
    if let Some(record) = st.accounts.get(&grant.username)
        && grant.issued_seq < record.tokens_valid_from_seq
    {
        let valid_from = record.tokens_valid_from.unwrap_or(r.now);
        let mut err = AadError::invalid_grant(
            50173,
            format!(
                "The provided grant has expired due to it being revoked, a fresh auth token is needed. The user might have changed or reset their password. The grant was issued on '{}' and the TokensValidFrom date (before which tokens are not valid) for this user is '{}'.",
                ms_timestamp(grant.issued_at),
                ms_timestamp(valid_from)
            ),
        );
        err.suberror = Some("bad_token".into());
        return Err(err.into());
    }
    let idle = r.now.duration_since(grant.issued_at).unwrap_or_default();
    if idle > REFRESH_TOKEN_MAX_IDLE {
        let mut err = AadError::invalid_grant(
            700082,
            format!(
                "The refresh token has expired due to inactivity. The token was issued on {} and was inactive for 90.00:00:00.",
                ms_timestamp(grant.issued_at)
            ),
        );
        err.suberror = Some("bad_token".into());
        return Err(err.into());
    }
    let consented = Scopes::parse(&grant.consented_scope)?;
    let (resource, asked) = match r.params.get("scope") {
        Some(scope) => {
            let asked = Scopes::parse(scope)?;
            (asked.single_resource()?, asked)
        }
        None => (consented.first_resource(), consented.clone()),
    };
    let username = grant.username.clone();
    let user_tenant = grant.tenant.clone();
    let consented_scope = grant.consented_scope.clone();
    require_consent(st, r, &user_tenant, &username, &resource)?;
    injected(st, r, &username, GrantType::RefreshToken)?;
    if let Some(grant) = st.refresh_tokens.get_mut(rt) {
        grant.successful_redemptions += 1;
        if grant.successful_redemptions > 1 {
            st.counters.refresh_tokens_redeemed_twice += 1;
        }
    }
    let openid = asked.has("openid");
    issue_delegated(
        st,
        r,
        Delegated {
            tenant: &user_tenant,
            username: &username,
            resource,
            oidc: asked.oidc,
            refresh: true,
            id_token_nonce: openid.then_some(None),
            consented_scope,
        },
    )
    .map_err(Refusal::from)
}

/// `grant_type=client_credentials`: exactly one `{resource}/.default`, no
/// refresh token, no id_token, no `scope` in the answer (as Microsoft).
fn client_credentials(
    st: &mut state::State,
    r: &GrantRequest<'_>,
) -> Result<TokenResponse, Refusal> {
    let scope = r
        .params
        .get("scope")
        .ok_or_else(|| AadError::missing_param("scope"))?;
    let names: Vec<&str> = scope.split(' ').filter(|s| !s.is_empty()).collect();
    let valid = match names.as_slice() {
        [one] => one.len() > "/.default".len() && one.to_ascii_lowercase().ends_with("/.default"),
        _ => false,
    };
    if !valid {
        return Err(AadError::invalid_scope(
            1002012,
            format!(
                "The provided value for scope {scope} is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI)."
            ),
        )
        .into());
    }
    let resource = Scopes::parse(scope)?.single_resource()?;
    injected(st, r, "", GrantType::ClientCredentials)?;
    let access_token = st.issue_app_access_token(r.tenant, &r.app.client_id, &resource, r.now);
    let lifetime = st.access_token_lifetime.as_secs();
    Ok(TokenResponse {
        token_type: "Bearer",
        scope: None,
        expires_in: lifetime,
        ext_expires_in: lifetime,
        access_token,
        refresh_token: None,
        id_token: None,
    })
}

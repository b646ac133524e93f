//! The delegated grants: an authorization code (with PKCE) and a refresh
//! token, each for one resource's scopes.

use super::*;

/// The `scope` string of a delegated answer: resource scopes, then the OIDC
/// scopes asked for (plus `offline_access` when a refresh token is returned).
pub(super) fn granted_scope(
    resource: &ResourceScopes,
    oidc: &[String],
    with_refresh: bool,
) -> String {
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
pub(super) struct Delegated<'a> {
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
pub(super) fn issue_delegated(
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
pub(super) fn authorization_code(
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
pub(super) fn refresh_token(
    st: &mut state::State,
    r: &GrantRequest<'_>,
) -> Result<TokenResponse, Refusal> {
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

//! The client credentials grant: app-only tokens, for `.default` only.

use super::*;

/// `grant_type=client_credentials`: exactly one `{resource}/.default`, no
/// refresh token, no id_token, no `scope` in the answer (as Microsoft).
pub(super) fn client_credentials(
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

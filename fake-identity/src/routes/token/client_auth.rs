//! Client authentication at the token endpoint: a secret in the body or
//! by HTTP Basic, or a signed client assertion, as Entra ID checks them.

use super::*;

/// Client id and secret from an `Authorization: Basic` header.
pub(super) struct BasicCredentials {
    client_id: String,
    /// The secret after form-url-decoding, and as sent (for clients that do not encode).
    secrets: [String; 2],
}

/// Parses `Authorization: Basic base64(urlencode(id):urlencode(secret))`.
/// Other schemes are ignored.
pub(super) fn basic_credentials(headers: &HeaderMap) -> Result<Option<BasicCredentials>, AadError> {
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
pub(super) fn form_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(&s.replace('+', " "))
        .decode_utf8_lossy()
        .into_owned()
}

/// Client authentication: a client assertion (`private_key_jwt`),
/// `client_secret_post` or HTTP Basic; public clients (empty registered
/// secret) must not send a secret.
pub(super) fn authenticate(
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

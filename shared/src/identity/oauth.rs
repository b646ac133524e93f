//! OAuth 2.0 adapter (the `oauth2` crate over `reqwest`): Entra ID v2.0
//! endpoints per cloud, or any RFC 6749 server with PKCE (RFC 7636).
//!
//! The HTTP client follows no redirects and has timeouts. 429 and 5xx are
//! turned into transport errors here, with `Retry-After`, before `oauth2`
//! would try to read them as an OAuth error body.
//!
//! Over 500 lines with its tests (about 60): one adapter, one file.

use super::{
    AppClient, Credential, IdentityError, IdentityProvider, ProviderError, SignInCode, TenantInfo,
    TokenSet,
};
use crate::certificate::ASSERTION_TYPE;
use crate::crypto::random_token;
use crate::domain::app::is_guid;
use crate::domain::records::MAX_TOKEN_BYTES;
use crate::domain::{AppRegistration, Cloud, Provider, Secret};
use async_trait::async_trait;
use oauth2::basic::{
    BasicRevocationErrorResponse, BasicTokenIntrospectionResponse, BasicTokenType,
};
use oauth2::{
    AuthType, AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndpointNotSet,
    EndpointSet, ErrorResponse, ExtraTokenFields, HttpRequest, HttpResponse, PkceCodeChallenge,
    PkceCodeVerifier, RedirectUrl, RefreshToken, RequestTokenError, Scope, StandardRevocableToken,
    StandardTokenResponse, TokenResponse, TokenUrl,
};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::Duration;
use url::Url;

/// Microsoft's token error body; every field but `error` is optional so that
/// any RFC 6749 server's body reads as well.
#[derive(Debug, Deserialize, Serialize)]
pub struct ErrorBody {
    error: String,
    error_description: Option<String>,
    #[serde(default)]
    error_codes: Vec<u32>,
    suberror: Option<String>,
    trace_id: Option<String>,
    correlation_id: Option<String>,
}

impl ErrorBody {
    fn into_provider_error(self, http_status: u16) -> ProviderError {
        ProviderError {
            http_status,
            error: self.error,
            description: self.error_description,
            codes: self.error_codes,
            suberror: self.suberror,
            trace_id: self.trace_id,
            correlation_id: self.correlation_id,
        }
    }
}

impl fmt::Display for ErrorBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.error)
    }
}

impl ErrorResponse for ErrorBody {}

/// The id_token that comes with the tokens when `openid` was asked.
#[derive(Debug, Deserialize, Serialize)]
pub struct IdTokenField {
    id_token: Option<Secret>,
}

impl ExtraTokenFields for IdTokenField {}

type TokenEndpointResponse = StandardTokenResponse<IdTokenField, BasicTokenType>;

type TokenClient = oauth2::Client<
    ErrorBody,
    TokenEndpointResponse,
    BasicTokenIntrospectionResponse,
    StandardRevocableToken,
    BasicRevocationErrorResponse,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointSet,
>;

/// What connect-start sends the browser to, and what it must remember.
pub struct AuthorizeRequest {
    pub url: Url,
    pub state: String,
    pub nonce: String,
    pub pkce_verifier: Secret,
}

/// Builds the authorize URL (PKCE S256, short `state`, `nonce`, every
/// resource's scopes at once). Pure: no I/O.
pub fn authorize_url(app: &AppRegistration, redirect_uri: &Url) -> AuthorizeRequest {
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let state = random_token();
    let nonce = random_token();
    let client = oauth2::basic::BasicClient::new(ClientId::new(app.client_id.clone()))
        .set_auth_uri(AuthUrl::from_url(app.provider.authorize_url()))
        .set_redirect_uri(RedirectUrl::from_url(redirect_uri.clone()));
    let state_for_request = state.clone();
    let mut request = client
        .authorize_url(move || CsrfToken::new(state_for_request))
        .add_scopes(app.consent_scopes().into_iter().map(Scope::new))
        .set_pkce_challenge(challenge)
        .add_extra_param("nonce", nonce.clone());
    if app.provider.is_microsoft() {
        request = request.add_extra_param("response_mode", "query");
        // Entra ID takes a hint or an account picker, not both.
        request = match &app.booking_account {
            Some(upn) => request.add_extra_param("login_hint", upn.clone()),
            None => request.add_extra_param("prompt", "select_account"),
        };
    }
    let (url, _) = request.url();
    AuthorizeRequest {
        url,
        state,
        nonce,
        pkce_verifier: Secret::new(verifier.into_secret()),
    }
}

/// Where an administrator grants the (vendor) app for their organization:
/// the admin-consent endpoint with the app's configured permissions
/// (`{first resource}/.default`), our redirect URI and `state`. `None` for a
/// provider other than Microsoft.
pub fn admin_consent_url(app: &AppRegistration, redirect_uri: &Url, state: &str) -> Option<Url> {
    let mut url = app.provider.admin_consent_url()?;
    let resource = app.resources.first()?.scopes.first()?;
    let origin = resource
        .rsplit_once('/')
        .map_or(resource.as_str(), |(o, _)| o);
    url.query_pairs_mut()
        .append_pair("client_id", &app.client_id)
        .append_pair("scope", &format!("{origin}/.default"))
        .append_pair("redirect_uri", redirect_uri.as_str())
        .append_pair("state", state);
    Some(url)
}

/// The shortest and longest life believed of an access token: Entra ID
/// issues 60 to 90 minutes; a provider that says more or less is clamped,
/// so that no answer can overflow a time or make a token look eternal.
const MIN_EXPIRES_IN: Duration = Duration::from_secs(60);
const MAX_EXPIRES_IN: Duration = Duration::from_secs(24 * 3_600);

/// The largest token-endpoint answer read: Entra ID's are a few KiB.
const MAX_BODY: usize = 64 * 1024;

/// Failures below the OAuth layer.
#[derive(Debug, thiserror::Error)]
enum Transport {
    #[error("{detail}")]
    Network { timeout: bool, detail: String },
    #[error("HTTP {status}")]
    Status {
        status: u16,
        retry_after: Option<Duration>,
        provider: Option<Box<ProviderError>>,
    },
    /// An answer larger than any token endpoint's: not read further.
    #[error("the answer is larger than {MAX_BODY} bytes")]
    TooLarge,
}

/// The adapter: one HTTP client shared by every connection.
#[derive(Clone, Debug)]
pub struct OAuthClient {
    http: reqwest::Client,
}

impl OAuthClient {
    /// A client that follows no redirects, with the given request timeout.
    pub fn new(timeout: Duration) -> Result<Self, IdentityError> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("roomtoken/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| IdentityError::Protocol(format!("cannot build the HTTP client: {e}")))?;
        Ok(Self { http })
    }

    fn token_client(client: AppClient<'_>) -> TokenClient {
        let token_client = oauth2::Client::new(ClientId::new(client.app.client_id.clone()))
            .set_token_uri(TokenUrl::from_url(client.app.provider.token_url()))
            // client_secret_post: what Entra ID documents first, and what
            // every RFC 6749 server must accept besides Basic. With a
            // certificate, the client id alone goes in the body, beside the
            // assertion.
            .set_auth_type(AuthType::RequestBody);
        match client.credential {
            Credential::Secret(secret) => {
                token_client.set_client_secret(ClientSecret::new(secret.expose().to_owned()))
            }
            Credential::Certificate(_) => token_client,
        }
    }

    /// The body fields of a client assertion (RFC 7523 2.2), made now for
    /// this request's token endpoint; none for a client secret.
    fn assertion_fields(
        client: AppClient<'_>,
    ) -> Result<Vec<(&'static str, String)>, IdentityError> {
        let Credential::Certificate(key) = client.credential else {
            return Ok(Vec::new());
        };
        let audience = client.app.provider.token_url();
        // The wall clock: the identity platform checks the assertion's
        // times against its own.
        let assertion = key
            .client_assertion(
                &client.app.client_id,
                audience.as_str(),
                time::OffsetDateTime::now_utc(),
            )
            .map_err(|e| IdentityError::Protocol(e.to_string()))?;
        Ok(vec![
            ("client_assertion_type", ASSERTION_TYPE.to_owned()),
            ("client_assertion", assertion.expose().to_owned()),
        ])
    }
}

fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let value = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    parse_retry_after(value, std::time::SystemTime::now())
}

/// RFC 9110 10.2.3: a number of seconds, or an HTTP-date (a date already
/// past means at once). Anything else is ignored: the backoff decides.
fn parse_retry_after(value: &str, now: std::time::SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

async fn send(http: reqwest::Client, request: HttpRequest) -> Result<HttpResponse, Transport> {
    let network = |e: reqwest::Error| Transport::Network {
        timeout: e.is_timeout(),
        // Without the URL: it is the token endpoint, and reqwest's chain of
        // sources says what went wrong.
        detail: std::error::Error::source(&e)
            .map(|s| s.to_string())
            .unwrap_or_else(|| e.without_url().to_string()),
    };
    let (parts, body) = request.into_parts();
    let response = http
        .request(parts.method, parts.uri.to_string())
        .headers(parts.headers)
        .body(body)
        .send()
        .await
        .map_err(network)?;
    let status = response.status();
    let headers = response.headers().clone();
    let mut response = response;
    let mut bytes = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(network)? {
        if bytes.len() + chunk.len() > MAX_BODY {
            return Err(Transport::TooLarge);
        }
        bytes.extend_from_slice(&chunk);
    }
    if status.as_u16() == 429 || status.is_server_error() {
        let provider = serde_json::from_slice::<ErrorBody>(&bytes)
            .ok()
            .map(|body| Box::new(body.into_provider_error(status.as_u16())));
        return Err(Transport::Status {
            status: status.as_u16(),
            retry_after: retry_after(&headers),
            provider,
        });
    }
    let mut builder = http::Response::builder().status(status);
    if let Some(target) = builder.headers_mut() {
        *target = headers;
    }
    builder.body(bytes).map_err(|e| Transport::Network {
        timeout: false,
        detail: e.to_string(),
    })
}

fn into_identity_error(error: RequestTokenError<Transport, ErrorBody>) -> IdentityError {
    match error {
        // Entra ID answers token errors with 400 or 401; the status matters
        // only for 429/5xx, which `send` handles.
        RequestTokenError::ServerResponse(body) => {
            IdentityError::Refused(Box::new(body.into_provider_error(400)))
        }
        RequestTokenError::Request(Transport::Status {
            status,
            retry_after,
            provider,
        }) => IdentityError::Unavailable {
            status,
            retry_after,
            provider,
        },
        RequestTokenError::Request(Transport::Network { timeout, detail }) => {
            IdentityError::Unreachable { timeout, detail }
        }
        RequestTokenError::Request(too_large @ Transport::TooLarge) => {
            IdentityError::Protocol(too_large.to_string())
        }
        // The field's path, and what was wrong without the value (which
        // may be a token).
        RequestTokenError::Parse(e, _body) => IdentityError::Protocol(format!(
            "the token answer's {}: {}",
            e.path(),
            crate::domain::secret::json_error_without_data(e.inner())
        )),
        RequestTokenError::Other(message) => IdentityError::Protocol(message),
    }
}

fn into_token_set(body: TokenEndpointResponse) -> Result<TokenSet, IdentityError> {
    // What a refresh stores must fit the room its secrets keep for it.
    let too_large = |what: &str, bytes: usize| {
        IdentityError::Protocol(format!(
            "the provider's {what} is {bytes} bytes, more than the {MAX_TOKEN_BYTES} roomtoken stores"
        ))
    };
    let access = body.access_token().secret().len();
    if access > MAX_TOKEN_BYTES {
        return Err(too_large("access token", access));
    }
    if let Some(refresh) = body.refresh_token().map(|rt| rt.secret().len())
        && refresh > MAX_TOKEN_BYTES
    {
        return Err(too_large("refresh token", refresh));
    }
    Ok(TokenSet {
        access_token: Secret::new(body.access_token().secret().clone()),
        token_type: "Bearer".into(),
        // Entra ID always sends expires_in; an hour is the RFC's usual default.
        // A provider's number never meets a time unclamped.
        expires_in: body
            .expires_in()
            .unwrap_or(Duration::from_secs(3_600))
            .clamp(MIN_EXPIRES_IN, MAX_EXPIRES_IN),
        scope: body.scopes().map(|scopes| {
            scopes
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(" ")
        }),
        refresh_token: body
            .refresh_token()
            .map(|rt| Secret::new(rt.secret().clone())),
        id_token: body.extra_fields().id_token.clone(),
    })
}

/// Any of oauth2's token requests with the client's assertion fields (none
/// for a client secret); returns early with the error if none can be made.
macro_rules! with_assertion {
    ($request:expr, $client:expr) => {{
        let mut request = $request;
        for (name, value) in Self::assertion_fields($client)? {
            request = request.add_extra_param(name, value);
        }
        request
    }};
}

#[async_trait]
impl IdentityProvider for OAuthClient {
    async fn redeem_code(
        &self,
        client: AppClient<'_>,
        sign_in: SignInCode<'_>,
        scopes: &[String],
    ) -> Result<TokenSet, IdentityError> {
        let http = self.http.clone();
        let transport = move |request| send(http.clone(), request);
        let verifier = PkceCodeVerifier::new(sign_in.pkce_verifier.expose().to_owned());
        let token_client = Self::token_client(client)
            .set_redirect_uri(RedirectUrl::from_url(sign_in.redirect_uri.clone()));
        let request = token_client
            .exchange_code(AuthorizationCode::new(sign_in.code.to_owned()))
            .set_pkce_verifier(verifier)
            // RFC 6749 has no scope here; Entra ID takes one resource's scopes.
            .add_extra_param("scope", scopes.join(" "));
        with_assertion!(request, client)
            .request_async(&transport)
            .await
            .map_err(into_identity_error)
            .and_then(into_token_set)
    }

    async fn refresh(
        &self,
        client: AppClient<'_>,
        refresh_token: &Secret,
        scopes: &[String],
    ) -> Result<TokenSet, IdentityError> {
        let http = self.http.clone();
        let transport = move |request| send(http.clone(), request);
        let refresh_token = RefreshToken::new(refresh_token.expose().to_owned());
        let token_client = Self::token_client(client);
        let request = token_client
            .exchange_refresh_token(&refresh_token)
            .add_scopes(scopes.iter().cloned().map(Scope::new));
        with_assertion!(request, client)
            .request_async(&transport)
            .await
            .map_err(into_identity_error)
            .and_then(into_token_set)
    }

    async fn client_credentials(
        &self,
        client: AppClient<'_>,
        scope: &str,
    ) -> Result<TokenSet, IdentityError> {
        let http = self.http.clone();
        let transport = move |request| send(http.clone(), request);
        let token_client = Self::token_client(client);
        let request = token_client
            .exchange_client_credentials()
            .add_scope(Scope::new(scope.to_owned()));
        with_assertion!(request, client)
            .request_async(&transport)
            .await
            .map_err(into_identity_error)
            .and_then(into_token_set)
    }

    async fn discover_tenant(&self, provider: &Provider) -> Result<TenantInfo, IdentityError> {
        let url = provider.discovery_url().ok_or_else(|| {
            IdentityError::Protocol("only Microsoft tenants have a discovery document".into())
        })?;
        self.get_discovery(url).await
    }
}

/// How long the setup form waits for a tenant's discovery document.
const DISCOVERY_TIMEOUT: Duration = Duration::from_secs(5);

/// The fields of a discovery document the broker reads.
#[derive(Deserialize)]
struct DiscoveryDocument {
    issuer: Url,
    cloud_instance_name: Option<String>,
}

impl DiscoveryDocument {
    fn into_tenant_info(self) -> Result<TenantInfo, IdentityError> {
        // `https://{login}/{tenant id}/v2.0`
        let tenant_id = self
            .issuer
            .path_segments()
            .and_then(|mut segments| segments.next())
            .filter(|segment| is_guid(segment))
            .ok_or_else(|| {
                IdentityError::Protocol("the discovery issuer names no tenant id".into())
            })?
            .to_ascii_lowercase();
        Ok(TenantInfo {
            tenant_id,
            cloud: self
                .cloud_instance_name
                .as_deref()
                .and_then(Cloud::of_instance),
        })
    }
}

impl OAuthClient {
    async fn get_discovery(&self, url: Url) -> Result<TenantInfo, IdentityError> {
        let request = http::Request::get(url.as_str())
            .body(Vec::new())
            .map_err(|e| IdentityError::Protocol(e.to_string()))?;
        // A person waits for the form's answer, and connect-start has 10 s
        // under Lambda: a slow document is "try again", not a timeout.
        let response = tokio::time::timeout(DISCOVERY_TIMEOUT, send(self.http.clone(), request))
            .await
            .map_err(|_| IdentityError::Unreachable {
                timeout: true,
                detail: "the discovery document did not come in time".into(),
            })?
            .map_err(|e| into_identity_error(RequestTokenError::Request(e)))?;
        if !response.status().is_success() {
            let status = response.status().as_u16();
            return Err(match serde_json::from_slice::<ErrorBody>(response.body()) {
                Ok(body) => IdentityError::Refused(Box::new(body.into_provider_error(status))),
                Err(_) => IdentityError::Protocol(format!(
                    "the discovery document answered HTTP {status}"
                )),
            });
        }
        serde_json::from_slice::<DiscoveryDocument>(response.body())
            .map_err(|e| IdentityError::Protocol(format!("the discovery document: {e}")))?
            .into_tenant_info()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Cloud, ConnectionId, Provider, Resource};

    #[test]
    fn retry_after_is_seconds_or_an_http_date() {
        let now = std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_000_000);
        assert_eq!(
            parse_retry_after(" 40 ", now),
            Some(Duration::from_secs(40))
        );
        let later = httpdate::fmt_http_date(now + Duration::from_secs(40));
        assert_eq!(
            parse_retry_after(&later, now),
            Some(Duration::from_secs(40))
        );
        let earlier = httpdate::fmt_http_date(now - Duration::from_secs(40));
        assert_eq!(parse_retry_after(&earlier, now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-5", now), None);
    }

    #[test]
    fn authorize_url_carries_pkce_state_nonce_and_every_scope() {
        let app = AppRegistration::new(
            ConnectionId::parse("contoso").unwrap(),
            Provider::microsoft("72f988bf-86f1-41af-91ab-2d7cd011db47", Cloud::Global).unwrap(),
            "client-id",
            Resource::presets("ews,graph", Cloud::Global).unwrap(),
            time::OffsetDateTime::UNIX_EPOCH,
        )
        .unwrap();
        let redirect: Url = "https://broker.example/callback".parse().unwrap();
        let request = authorize_url(&app, &redirect);
        let query: std::collections::HashMap<_, _> =
            request.url.query_pairs().into_owned().collect();
        assert_eq!(request.url.host_str(), Some("login.microsoftonline.com"));
        assert_eq!(query["code_challenge_method"], "S256");
        assert_eq!(query["state"], request.state);
        assert_eq!(query["nonce"], request.nonce);
        assert_eq!(query["prompt"], "select_account");
        assert_eq!(query["redirect_uri"], "https://broker.example/callback");
        assert!(query["scope"].contains("offline_access"));
        assert!(query["scope"].contains("EWS.AccessAsUser.All"));
        assert!(query["scope"].contains("https://graph.microsoft.com/Calendars.ReadWrite"));
        assert!(
            !request
                .url
                .as_str()
                .contains(request.pkce_verifier.expose())
        );
        assert!(request.state.len() <= 32, "state stays short");
        assert!(
            request.url.as_str().len() < 1_800,
            "{}",
            request.url.as_str().len()
        );
    }
}

#[cfg(test)]
#[path = "oauth_properties.rs"]
mod properties;

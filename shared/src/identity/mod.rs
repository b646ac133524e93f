//! The identity-provider port: redeem an authorization code, refresh a grant.
//! [`OAuthClient`] is the adapter for Entra ID and any OAuth 2.0 server.

mod oauth;

pub use oauth::{AuthorizeRequest, OAuthClient, admin_consent_url, authorize_url};

use crate::certificate::CertificateKey;
use crate::domain::failure::classify;
use crate::domain::{AppRegistration, Cloud, FailureClass, LastError, Provider, Secret};
use async_trait::async_trait;
use std::fmt;
use std::time::Duration;
use time::OffsetDateTime;
use url::Url;

/// A successful token response.
#[derive(Clone, Debug)]
pub struct TokenSet {
    pub access_token: Secret,
    pub token_type: String,
    pub expires_in: Duration,
    pub scope: Option<String>,
    pub refresh_token: Option<Secret>,
    pub id_token: Option<Secret>,
}

/// The error body of a token endpoint, as Microsoft sends it (RFC 6749 5.2
/// plus `error_codes`, `trace_id`, `correlation_id`, `suberror`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProviderError {
    pub http_status: u16,
    pub error: String,
    pub description: Option<String>,
    pub codes: Vec<u32>,
    pub suberror: Option<String>,
    pub trace_id: Option<String>,
    pub correlation_id: Option<String>,
}

impl ProviderError {
    /// `AADSTS70008` when Microsoft gave a number, else the `error` value.
    pub fn code(&self) -> String {
        match self.codes.first() {
            Some(code) => format!("AADSTS{code}"),
            None if !self.error.is_empty() => self.error.clone(),
            None => format!("HTTP {}", self.http_status),
        }
    }

    /// The description's first line, without Microsoft's trailing trace block.
    pub fn summary(&self) -> String {
        let text = self.description.as_deref().unwrap_or(&self.error);
        let first = text.lines().next().unwrap_or_default();
        let first = first.split(" Trace ID:").next().unwrap_or(first).trim();
        first.chars().take(300).collect()
    }
}

impl fmt::Display for ProviderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}): {}", self.code(), self.error, self.summary())?;
        if let Some(trace) = &self.trace_id {
            write!(f, " [trace_id {trace}")?;
            if let Some(correlation) = &self.correlation_id {
                write!(f, ", correlation_id {correlation}")?;
            }
            write!(f, "]")?;
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// The provider answered with an error body.
    #[error("the identity provider refused the request: {0}")]
    Refused(Box<ProviderError>),
    /// 429 or 5xx: try again later.
    #[error("the identity provider is unavailable (HTTP {status}){}", provider.as_ref().map(|p| format!(": {p}")).unwrap_or_default())]
    Unavailable {
        status: u16,
        retry_after: Option<Duration>,
        provider: Option<Box<ProviderError>>,
    },
    #[error("could not reach the identity provider{}: {detail}", if *timeout { " (timed out)" } else { "" })]
    Unreachable { timeout: bool, detail: String },
    #[error("the identity provider's answer could not be understood: {0}")]
    Protocol(String),
}

impl IdentityError {
    pub fn class(&self) -> FailureClass {
        match self {
            Self::Refused(p) => classify(p.http_status, &p.error, p.suberror.as_deref(), &p.codes),
            Self::Unavailable { .. } | Self::Unreachable { .. } => FailureClass::Transient,
            Self::Protocol(_) => FailureClass::OurBug,
        }
    }

    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Unavailable { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    fn provider(&self) -> Option<&ProviderError> {
        match self {
            Self::Refused(p) => Some(p),
            Self::Unavailable { provider, .. } => provider.as_deref(),
            _ => None,
        }
    }

    /// Whether the identity platform refused the client secret itself, as
    /// invalid (AADSTS7000215) or expired (AADSTS7000222): another secret of
    /// the same app may still work.
    /// AADSTS7000229: the app has no service principal in the tenant (not
    /// granted there, or not yet replicated right after the grant).
    pub fn no_service_principal(&self) -> bool {
        self.code() == "AADSTS7000229"
    }

    pub fn rejects_client_secret(&self) -> bool {
        let code = self.code();
        code == "AADSTS7000215" || code == "AADSTS7000222"
    }

    /// The short code an admin can quote: `AADSTS70000`, `HTTP 503`, `timeout`.
    pub fn code(&self) -> String {
        match self {
            Self::Refused(p) => p.code(),
            Self::Unavailable {
                provider: Some(p), ..
            } if !p.codes.is_empty() => p.code(),
            Self::Unavailable { status, .. } => format!("HTTP {status}"),
            Self::Unreachable { timeout: true, .. } => "timeout".into(),
            Self::Unreachable { .. } => "network".into(),
            Self::Protocol(_) => "protocol".into(),
        }
    }

    /// The provider's trace id, which its support can look up.
    pub fn trace_id(&self) -> Option<&str> {
        self.provider().and_then(|p| p.trace_id.as_deref())
    }

    /// The provider's correlation id, which its support asks for with the
    /// trace id.
    pub fn correlation_id(&self) -> Option<&str> {
        self.provider().and_then(|p| p.correlation_id.as_deref())
    }

    /// What the status shows an admin.
    pub fn to_last_error(&self, at: OffsetDateTime) -> LastError {
        let provider = self.provider();
        LastError {
            class: self.class(),
            code: self.code(),
            message: self.to_string(),
            trace_id: provider.and_then(|p| p.trace_id.clone()),
            correlation_id: provider.and_then(|p| p.correlation_id.clone()),
            at,
        }
    }
}

/// Who asks the token endpoint: the app registration and its credential.
#[derive(Clone, Copy)]
pub struct AppClient<'a> {
    pub app: &'a AppRegistration,
    pub credential: &'a Credential,
}

impl<'a> AppClient<'a> {
    pub fn new(app: &'a AppRegistration, credential: &'a Credential) -> Self {
        Self { app, credential }
    }
}

/// How an app proves who it is at the token endpoint.
#[derive(Clone, Debug)]
pub enum Credential {
    /// `client_secret_post`.
    Secret(Secret),
    /// `private_key_jwt`: a client assertion signed with the certificate's
    /// key, made for each request.
    Certificate(CertificateKey),
}

/// An authorization code, with what binds it to our sign-in request.
#[derive(Clone, Copy)]
pub struct SignInCode<'a> {
    pub code: &'a str,
    pub redirect_uri: &'a Url,
    pub pkce_verifier: &'a Secret,
}

/// What a tenant's discovery document says about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TenantInfo {
    /// The tenant id (a GUID), from the document's issuer.
    pub tenant_id: String,
    /// The cloud the tenant lives in, when it is one we know.
    pub cloud: Option<Cloud>,
}

/// The identity-provider port.
#[async_trait]
pub trait IdentityProvider: Send + Sync {
    /// Redeems an authorization code with its PKCE verifier.
    async fn redeem_code(
        &self,
        client: AppClient<'_>,
        code: SignInCode<'_>,
        scopes: &[String],
    ) -> Result<TokenSet, IdentityError>;

    /// Redeems a refresh token for an access token of one resource.
    async fn refresh(
        &self,
        client: AppClient<'_>,
        refresh_token: &Secret,
        scopes: &[String],
    ) -> Result<TokenSet, IdentityError>;

    /// An app-only token for one resource (`{resource}/.default`), with the
    /// client credentials grant: no user, no refresh token.
    async fn client_credentials(
        &self,
        client: AppClient<'_>,
        scope: &str,
    ) -> Result<TokenSet, IdentityError>;

    /// Reads the discovery document of a Microsoft provider's tenant (a
    /// tenant id or a verified domain). An unknown tenant is refused
    /// (AADSTS90002).
    async fn discover_tenant(&self, provider: &Provider) -> Result<TenantInfo, IdentityError>;
}

/// Why a tenant's id could not be had.
pub enum TenantLookup {
    /// Microsoft knows no such tenant (AADSTS90002).
    Unknown,
    /// It lives in another cloud than the provider's (or an unknown one).
    InOtherCloud(Option<crate::domain::Cloud>),
    /// Microsoft could not be asked right now.
    Unreachable(IdentityError),
}

/// The id of `provider`'s tenant (named by an id or a domain), from
/// Microsoft's discovery document, when it lives in the provider's cloud.
pub async fn tenant_id_in_cloud(
    identity: &dyn IdentityProvider,
    provider: &Provider,
) -> Result<String, TenantLookup> {
    match identity.discover_tenant(provider).await {
        Ok(info) if info.cloud == Some(provider.cloud()) => Ok(info.tenant_id),
        Ok(info) => Err(TenantLookup::InOtherCloud(info.cloud)),
        Err(IdentityError::Refused(refusal)) if refusal.codes.contains(&90002) => {
            Err(TenantLookup::Unknown)
        }
        Err(e) => Err(TenantLookup::Unreachable(e)),
    }
}

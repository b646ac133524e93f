//! Who issues the tokens: Entra ID in one tenant (or a vendor's app in
//! many), or another OAuth 2.0 server; and what makes an app invalid.

use super::*;

/// The authority of a multi-tenant app's first sign-in (work accounts only).
pub const ORGANIZATIONS: &str = "organizations";

/// Who issues the tokens.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Provider {
    /// Entra ID (Microsoft identity platform v2.0) in one tenant.
    Microsoft {
        tenant: String,
        cloud: Cloud,
        /// Replaces the cloud's login origin; used by the demo and the tests
        /// to talk to the fake identity platform.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        authority: Option<Url>,
    },
    /// Any standards-compliant OAuth 2.0 server (RFC 6749 with PKCE).
    #[serde(rename = "oauth2")]
    OAuth2 { authorize_url: Url, token_url: Url },
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InvalidApp {
    #[error(
        "tenant '{0}' is not allowed: use the tenant id (a GUID) or its primary domain; \
         'common', 'organizations' and 'consumers' are refused by Entra ID for this flow (AADSTS50194)"
    )]
    MultiTenantAlias(String),
    #[error("tenant must be a GUID or a domain name such as contoso.onmicrosoft.com")]
    Tenant,
    #[error("the client id must not be empty")]
    ClientId,
    #[error("a connection needs at least one resource (ews, graph) or scopes")]
    NoResource,
    #[error("unknown resource '{0}': use ews or graph, or give --scopes")]
    UnknownResource(String),
    #[error("{0} must be an https URL (http is allowed only for loopback hosts)")]
    InsecureUrl(&'static str),
    #[error("the booking account must be a user name such as booking@contoso.com")]
    BookingAccount,
}

impl Provider {
    pub fn microsoft(tenant: &str, cloud: Cloud) -> Result<Self, InvalidApp> {
        let tenant = tenant.trim().to_ascii_lowercase();
        if ["common", "organizations", "consumers"].contains(&tenant.as_str()) {
            return Err(InvalidApp::MultiTenantAlias(tenant));
        }
        let valid = !tenant.is_empty()
            && tenant.len() <= 255
            && tenant
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
        if !valid {
            return Err(InvalidApp::Tenant);
        }
        Ok(Self::Microsoft {
            tenant,
            cloud,
            authority: None,
        })
    }

    /// Whether this provider names no organization: a Microsoft provider
    /// at `/organizations/` (a self-service connection before its form, or
    /// a vendor connection added before links were bound to their tenant),
    /// where any work account of any tenant could sign in.
    pub fn names_no_tenant(&self) -> bool {
        matches!(self, Self::Microsoft { tenant, .. } if tenant == ORGANIZATIONS)
    }

    /// The same provider, signing in at `authority` instead of its cloud's
    /// login origin (the demo and the tests).
    pub fn in_authority(self, authority: Option<Url>) -> Self {
        match self {
            Self::Microsoft { tenant, cloud, .. } => Self::Microsoft {
                tenant,
                cloud,
                authority,
            },
            other => other,
        }
    }

    /// The origin that replaces the cloud's login origin, if any.
    pub fn authority(&self) -> Option<&Url> {
        match self {
            Self::Microsoft { authority, .. } => authority.as_ref(),
            Self::OAuth2 { .. } => None,
        }
    }

    /// The same provider in the tenant `tid` (a vendor connection, once its
    /// booking account signed in: every later request goes to its tenant).
    pub fn in_tenant(&self, tid: &str) -> Self {
        match self {
            Self::Microsoft {
                cloud, authority, ..
            } => Self::Microsoft {
                tenant: tid.to_ascii_lowercase(),
                cloud: *cloud,
                authority: authority.clone(),
            },
            other => other.clone(),
        }
    }

    pub fn oauth2(authorize_url: Url, token_url: Url) -> Result<Self, InvalidApp> {
        require_secure(&authorize_url, "the authorize URL")?;
        require_secure(&token_url, "the token URL")?;
        Ok(Self::OAuth2 {
            authorize_url,
            token_url,
        })
    }

    pub fn authorize_url(&self) -> Url {
        match self {
            Self::Microsoft { .. } => self.microsoft_endpoint("authorize"),
            Self::OAuth2 { authorize_url, .. } => authorize_url.clone(),
        }
    }

    /// Microsoft's admin-consent endpoint for this app's tenant (or
    /// `/organizations/`): `{login}/{tenant}/v2.0/adminconsent`.
    pub fn admin_consent_url(&self) -> Option<Url> {
        let (origin, tenant) = self.login()?;
        Url::parse(&format!("{origin}/{tenant}/v2.0/adminconsent")).ok()
    }

    /// The tenant's OpenID Connect discovery document, which also tells a
    /// domain's tenant id and the tenant's cloud.
    pub fn discovery_url(&self) -> Option<Url> {
        let (origin, tenant) = self.login()?;
        Url::parse(&format!(
            "{origin}/{tenant}/v2.0/.well-known/openid-configuration"
        ))
        .ok()
    }

    /// Where the browser signs in (`https://login.microsoftonline.com`, or
    /// the authority that replaces it): the pages that send it there allow
    /// it as a form target.
    pub fn sign_in_origin(&self) -> Option<String> {
        match self {
            Self::Microsoft { .. } => self.login().map(|(origin, _)| origin),
            Self::OAuth2 { authorize_url, .. } => {
                Some(authorize_url.origin().ascii_serialization())
            }
        }
    }

    /// The sign-in origin (the cloud's, or the authority that replaces it)
    /// and the tenant of a Microsoft provider.
    fn login(&self) -> Option<(String, &str)> {
        let Self::Microsoft {
            tenant,
            cloud,
            authority,
        } = self
        else {
            return None;
        };
        let origin = authority
            .as_ref()
            .map(|url| url.as_str().trim_end_matches('/').to_owned())
            .unwrap_or_else(|| cloud.login_origin().to_owned());
        Some((origin, tenant))
    }

    pub fn token_url(&self) -> Url {
        match self {
            Self::Microsoft { .. } => self.microsoft_endpoint("token"),
            Self::OAuth2 { token_url, .. } => token_url.clone(),
        }
    }

    /// The tenant GUID the id_token's `tid` must match, when the operator gave one.
    pub fn expected_tenant_id(&self) -> Option<&str> {
        match self {
            Self::Microsoft { tenant, .. } if looks_like_guid(tenant) => Some(tenant),
            _ => None,
        }
    }

    pub fn is_microsoft(&self) -> bool {
        matches!(self, Self::Microsoft { .. })
    }

    pub fn cloud(&self) -> Cloud {
        match self {
            Self::Microsoft { cloud, .. } => *cloud,
            Self::OAuth2 { .. } => Cloud::Global,
        }
    }

    fn microsoft_endpoint(&self, endpoint: &str) -> Url {
        let Some((origin, tenant)) = self.login() else {
            unreachable!("only called on Microsoft providers")
        };
        let text = format!("{origin}/{tenant}/oauth2/v2.0/{endpoint}");
        // The tenant was validated to a URL-safe alphabet and the origin is a URL.
        Url::parse(&text).unwrap_or_else(|_| unreachable!("valid endpoint URL: {text}"))
    }
}

/// Every URL that carries a secret (a token endpoint, a sign-in origin,
/// the broker's own) must be https; plain http only to this machine.
pub fn require_secure(url: &Url, what: &'static str) -> Result<(), InvalidApp> {
    let loopback = match url.host() {
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    match url.scheme() {
        "https" => Ok(()),
        "http" if loopback => Ok(()),
        _ => Err(InvalidApp::InsecureUrl(what)),
    }
}

/// Whether `text` is a GUID (8-4-4-4-12 hex digits), as tenant ids are.
pub fn is_guid(text: &str) -> bool {
    looks_like_guid(text)
}

fn looks_like_guid(text: &str) -> bool {
    let groups: Vec<&str> = text.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

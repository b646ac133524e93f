//! The app registration of a connection: which identity provider, which client,
//! which resources. It is stored in the connection's serve secret; the client
//! secret is stored apart, in the grant secret (see [`super::records`]), so
//! that functions that only build links or serve tokens never read it.

use super::{ConnectionId, Secret};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use url::Url;

/// Microsoft national clouds, each with its own sign-in, Graph and EWS hosts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default, strum::EnumString)]
#[serde(rename_all = "lowercase")]
#[strum(
    serialize_all = "lowercase",
    parse_err_fn = unknown_cloud,
    parse_err_ty = UnknownCloud
)]
pub enum Cloud {
    #[default]
    Global,
    Usgov,
    China,
}

#[derive(Debug, thiserror::Error)]
#[error("unknown cloud '{0}': use global, usgov or china")]
pub struct UnknownCloud(String);

fn unknown_cloud(name: &str) -> UnknownCloud {
    UnknownCloud(name.to_owned())
}

impl Cloud {
    pub fn login_origin(self) -> &'static str {
        match self {
            Self::Global => "https://login.microsoftonline.com",
            Self::Usgov => "https://login.microsoftonline.us",
            Self::China => "https://login.partner.microsoftonline.cn",
        }
    }

    pub fn graph_origin(self) -> &'static str {
        match self {
            Self::Global => "https://graph.microsoft.com",
            Self::Usgov => "https://graph.microsoft.us",
            Self::China => "https://microsoftgraph.chinacloudapi.cn",
        }
    }

    /// The `cloud_instance_name` of this cloud's tenants in Microsoft's
    /// discovery documents: a tenant of another cloud names another.
    pub fn instance_name(self) -> &'static str {
        match self {
            Self::Global => "microsoftonline.com",
            Self::Usgov => "microsoftonline.us",
            Self::China => "partner.microsoftonline.cn",
        }
    }

    /// The cloud whose tenants carry `instance_name`, if it is one we know.
    pub fn of_instance(instance_name: &str) -> Option<Self> {
        [Self::Global, Self::Usgov, Self::China]
            .into_iter()
            .find(|cloud| cloud.instance_name().eq_ignore_ascii_case(instance_name))
    }

    pub fn ews_origin(self) -> &'static str {
        match self {
            Self::Global => "https://outlook.office365.com",
            Self::Usgov => "https://outlook.office365.us",
            Self::China => "https://partner.outlook.cn",
        }
    }
}

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

/// One audience for access tokens, with the delegated scopes asked for it.
/// Each token request names the scopes of exactly one resource (AADSTS700022).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resource {
    pub name: String,
    pub scopes: Vec<String>,
}

impl Resource {
    /// Exchange Web Services, delegated.
    pub fn ews(cloud: Cloud) -> Self {
        Self {
            name: "ews".into(),
            scopes: vec![format!("{}/EWS.AccessAsUser.All", cloud.ews_origin())],
        }
    }

    /// Microsoft Graph, delegated, what room booking needs.
    pub fn graph(cloud: Cloud) -> Self {
        let origin = cloud.graph_origin();
        let scopes = [
            "Calendars.ReadWrite",
            "Calendars.ReadWrite.Shared",
            "Place.Read.All",
            "User.Read",
        ];
        Self {
            name: "graph".into(),
            scopes: scopes.iter().map(|s| format!("{origin}/{s}")).collect(),
        }
    }

    /// A resource for app-only tokens: its `.default` scope, which takes
    /// whatever the app was granted (Graph application permissions, or
    /// RBAC for Applications in Exchange).
    pub fn app_only_presets(names: &str, cloud: Cloud) -> Result<Vec<Self>, InvalidApp> {
        let mut resources = Self::presets(names, cloud)?;
        for resource in &mut resources {
            let origin = match resource.name.as_str() {
                "ews" => cloud.ews_origin(),
                _ => cloud.graph_origin(),
            };
            resource.scopes = vec![format!("{origin}/.default")];
        }
        Ok(resources)
    }

    /// Parses `ews,graph` into the presets for a cloud.
    pub fn presets(names: &str, cloud: Cloud) -> Result<Vec<Self>, InvalidApp> {
        let resources = names
            .split(',')
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map(|name| match name {
                "ews" => Ok(Self::ews(cloud)),
                "graph" => Ok(Self::graph(cloud)),
                other => Err(InvalidApp::UnknownResource(other.to_owned())),
            })
            .collect::<Result<Vec<_>, _>>()?;
        if resources.is_empty() {
            return Err(InvalidApp::NoResource);
        }
        Ok(resources)
    }

    /// One resource named `default` with scopes given verbatim.
    pub fn custom(scopes: &str) -> Result<Self, InvalidApp> {
        let scopes: Vec<String> = scopes
            .split_whitespace()
            .filter(|s| !OIDC_SCOPES.contains(s))
            .map(str::to_owned)
            .collect();
        if scopes.is_empty() {
            return Err(InvalidApp::NoResource);
        }
        Ok(Self {
            name: "default".into(),
            scopes,
        })
    }

    /// The scopes of a token request for this resource.
    pub fn token_request_scopes(&self) -> Vec<String> {
        let mut scopes = self.scopes.clone();
        scopes.push("offline_access".into());
        scopes
    }
}

/// Scopes that ask for an id_token and a refresh token, not for a resource.
pub const OIDC_SCOPES: [&str; 4] = ["openid", "profile", "offline_access", "email"];

/// What the operator registered for one customer tenant, minus the client secret.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppRegistration {
    pub id: ConnectionId,
    pub provider: Provider,
    pub client_id: String,
    pub resources: Vec<Resource>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Who registered the app, and so what the consent link shows.
    #[serde(default)]
    pub mode: Mode,
    /// When the client secret expires, as its owner said (the self-service
    /// form asks for it): a known date to warn before.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "iso_date::option"
    )]
    pub client_secret_expires: Option<time::Date>,
    /// The expiry of the previous client secret, kept during a rotation.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "iso_date::option"
    )]
    pub previous_client_secret_expires: Option<time::Date>,
    /// The certificate that authenticates token requests instead of a
    /// client secret (its key is in the grant secret).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<CertificateRef>,
    /// The account the displays act for, when the operator named it: the
    /// pages name it, the sign-in suggests it, and the first consent must
    /// be by it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub booking_account: Option<String>,
    /// A self-service connection's resources as the operator offered them
    /// (the form may choose fewer, and a later form may choose again).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub offered: Vec<String>,
}

/// How a connection was onboarded: who registered its Entra app.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, strum::IntoStaticStr,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum Mode {
    /// The customer registered it and sent its settings to the operator,
    /// who typed them into `connection add`; the link goes straight to the
    /// sign-in.
    #[default]
    Operator,
    /// The customer admin fills in the app registration behind the link;
    /// until then the connection has no tenant and no client id.
    SelfService,
    /// The deployment's multi-tenant app: its client secret is read from
    /// `system/vendor-app` (one secret for every such connection), and the
    /// first sign-in goes through `/organizations/`.
    Vendor,
    /// App-only (client credentials): the customer's admin grants the app
    /// through Microsoft's admin-consent page, nobody signs in, and every
    /// token is minted with the app's own credential.
    AppOnly,
    /// App-only with the deployment's vendor app: the customer's admin
    /// grants the vendor app's application permissions in the one tenant the
    /// operator named, and every token is minted there with the vendor
    /// app's credential.
    VendorAppOnly,
}

impl Mode {
    /// Whether token requests use the deployment's vendor app.
    pub fn is_vendor(self) -> bool {
        matches!(self, Self::Vendor | Self::VendorAppOnly)
    }

    /// Whether tokens are minted with client credentials (no sign-in, no
    /// refresh token, no grant).
    pub fn is_app_only(self) -> bool {
        matches!(self, Self::AppOnly | Self::VendorAppOnly)
    }
}

// `2027-05-31`, as the form's date field sends it.
time::serde::format_description!(pub(crate) iso_date, Date, "[year]-[month]-[day]");

/// What a customer admin entered in a self-service connection's setup form,
/// checked: it travels in the sealed consent cookie until the callback
/// stores it with the grant.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AppSetup {
    /// The tenant id, resolved from what the admin typed (an id or a domain).
    pub tenant_id: String,
    pub client_id: String,
    pub client_secret: Secret,
    #[serde(with = "iso_date")]
    pub client_secret_expires: time::Date,
    /// Preset names (`ews`, `graph`), in the connection's cloud.
    pub resources: Vec<String>,
}

/// What a connection's token requests authenticate with, as far as a
/// human must renew it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CredentialKind {
    /// The connection's own client secret(s).
    #[default]
    ClientSecret,
    /// The deployment's vendor app's client secret.
    VendorApp,
    /// The connection's certificate.
    Certificate,
}

impl VendorApp {
    /// When the credential its token requests use expires: the
    /// certificate's, or the client secret's as the operator gave it.
    pub fn credential_expires(&self) -> Option<time::Date> {
        match &self.certificate {
            Some(key) => key.reference().ok().map(|r| r.expires),
            None => self.client_secret_expires,
        }
    }
}

impl AppRegistration {
    pub fn credential_kind(&self) -> CredentialKind {
        if self.is_vendor() {
            CredentialKind::VendorApp
        } else if self.certificate.is_some() {
            CredentialKind::Certificate
        } else {
            CredentialKind::ClientSecret
        }
    }
}

/// What the public side knows of a connection's certificate: which one,
/// and until when (certificates carry their own expiry).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateRef {
    /// `x5t#S256`, as the assertions name it.
    pub thumbprint: String,
    /// The SHA-1 thumbprint, as the Entra admin center lists it.
    pub thumbprint_sha1: String,
    #[serde(with = "iso_date")]
    pub expires: time::Date,
}

/// The deployment's multi-tenant app ("accounts in any organizational
/// directory"), stored as `system/vendor-app` by `roomtoken vendor-app set`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct VendorApp {
    pub client_id: String,
    pub client_secret: Secret,
    /// When its client secret expires, as Entra ID shows it: every vendor
    /// connection carries it as its own credential's expiry.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "iso_date::option"
    )]
    pub client_secret_expires: Option<time::Date>,
    /// A certificate that authenticates its token requests instead of the
    /// client secret (which may then be empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<crate::certificate::CertificateKey>,
    #[serde(default)]
    pub cloud: Cloud,
    /// Replaces the cloud's login origin (the demo and the tests).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authority: Option<Url>,
}

impl AppRegistration {
    pub fn new(
        id: ConnectionId,
        provider: Provider,
        client_id: &str,
        resources: Vec<Resource>,
        now: OffsetDateTime,
    ) -> Result<Self, InvalidApp> {
        let client_id = client_id.trim();
        if client_id.is_empty() {
            return Err(InvalidApp::ClientId);
        }
        if resources.is_empty() {
            return Err(InvalidApp::NoResource);
        }
        Ok(Self {
            id,
            provider,
            client_id: client_id.to_owned(),
            resources,
            created_at: now,
            mode: Mode::Operator,
            client_secret_expires: None,
            previous_client_secret_expires: None,
            certificate: None,
            booking_account: None,
            offered: Vec::new(),
        })
    }

    /// The same app, for the booking account `upn` (a user principal name,
    /// lower-cased), or for any account with `None`.
    pub fn for_booking_account(mut self, upn: Option<&str>) -> Result<Self, InvalidApp> {
        self.booking_account = match upn.map(str::trim) {
            None | Some("") => None,
            Some(upn) => {
                let valid = upn.len() <= 256
                    && upn.split_once('@').is_some_and(|(user, domain)| {
                        !user.is_empty() && domain.contains('.') && !domain.starts_with('.')
                    })
                    && !upn.chars().any(|c| c.is_whitespace() || c.is_control());
                if !valid {
                    return Err(InvalidApp::BookingAccount);
                }
                Some(upn.to_lowercase())
            }
        };
        Ok(self)
    }

    /// A self-service connection before its admin filled in the form: the
    /// cloud and the resources are the operator's choice, the rest is not
    /// known yet.
    pub fn awaiting_setup(
        id: ConnectionId,
        cloud: Cloud,
        authority: Option<Url>,
        resources: Vec<Resource>,
        now: OffsetDateTime,
    ) -> Result<Self, InvalidApp> {
        if resources.is_empty() {
            return Err(InvalidApp::NoResource);
        }
        Ok(Self {
            id,
            // No tenant yet: the form names it.
            provider: Provider::Microsoft {
                tenant: ORGANIZATIONS.to_owned(),
                cloud,
                authority,
            },
            client_id: String::new(),
            offered: resources.iter().map(|r| r.name.clone()).collect(),
            resources,
            created_at: now,
            mode: Mode::SelfService,
            client_secret_expires: None,
            previous_client_secret_expires: None,
            certificate: None,
            booking_account: None,
        })
    }

    /// Whether the connection has an app to sign in to: always, except a
    /// self-service connection whose form was never completed.
    pub fn is_set_up(&self) -> bool {
        !self.client_id.is_empty()
    }

    /// The app a self-service connection gets from its setup form: the
    /// tenant, client and resources entered, in the cloud (and sign-in
    /// origin) the operator chose.
    pub fn with_setup(&self, setup: &AppSetup) -> Result<Self, InvalidApp> {
        let cloud = self.provider.cloud();
        let authority = self.provider.authority().cloned();
        let provider = Provider::microsoft(&setup.tenant_id, cloud)?.in_authority(authority);
        let mut app = Self::new(
            self.id.clone(),
            provider,
            &setup.client_id,
            Resource::presets(&setup.resources.join(","), cloud)?,
            self.created_at,
        )?;
        app.mode = Mode::SelfService;
        app.client_secret_expires = Some(setup.client_secret_expires);
        app.booking_account.clone_from(&self.booking_account);
        app.offered = self.offered_resources();
        Ok(app)
    }

    /// What a self-service form offers: the operator's choice, whatever an
    /// earlier form chose.
    pub fn offered_resources(&self) -> Vec<String> {
        if self.offered.is_empty() {
            self.resources.iter().map(|r| r.name.clone()).collect()
        } else {
            self.offered.clone()
        }
    }

    pub fn is_vendor(&self) -> bool {
        self.mode.is_vendor()
    }

    pub fn is_app_only(&self) -> bool {
        self.mode.is_app_only()
    }

    /// Scopes of the authorize request: every resource at once (one consent),
    /// plus what gives an id_token and a refresh token.
    pub fn consent_scopes(&self) -> Vec<String> {
        let mut scopes: Vec<String> = ["openid", "profile", "offline_access"]
            .map(String::from)
            .to_vec();
        for scope in self.resources.iter().flat_map(|r| &r.scopes) {
            if !scopes.contains(scope) {
                scopes.push(scope.clone());
            }
        }
        scopes
    }

    /// The resource named, or the first one (the default) when none is named.
    pub fn resource(&self, name: Option<&str>) -> Option<&Resource> {
        match name {
            None => self.resources.first(),
            Some(name) => self.resources.iter().find(|r| r.name == name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> OffsetDateTime {
        OffsetDateTime::UNIX_EPOCH
    }

    #[test]
    fn microsoft_endpoints_follow_the_cloud() {
        let provider = Provider::microsoft("contoso.onmicrosoft.com", Cloud::Usgov).unwrap();
        assert_eq!(
            provider.token_url().as_str(),
            "https://login.microsoftonline.us/contoso.onmicrosoft.com/oauth2/v2.0/token"
        );
        let china = Provider::microsoft("contoso.partner.cn", Cloud::China).unwrap();
        assert!(
            china
                .authorize_url()
                .as_str()
                .starts_with("https://login.partner.microsoftonline.cn/")
        );
    }

    #[test]
    fn multi_tenant_aliases_are_refused() {
        assert!(matches!(
            Provider::microsoft("common", Cloud::Global),
            Err(InvalidApp::MultiTenantAlias(_))
        ));
        assert_eq!(
            Provider::microsoft("a/b", Cloud::Global),
            Err(InvalidApp::Tenant)
        );
    }

    #[test]
    fn the_tenant_check_applies_to_guids_only() {
        let guid = "72f988bf-86f1-41af-91ab-2d7cd011db47";
        let by_guid = Provider::microsoft(guid, Cloud::Global).unwrap();
        assert_eq!(by_guid.expected_tenant_id(), Some(guid));
        let by_domain = Provider::microsoft("contoso.com", Cloud::Global).unwrap();
        assert_eq!(by_domain.expected_tenant_id(), None);
    }

    #[test]
    fn loopback_is_the_only_place_for_plain_http() {
        for ok in [
            "https://login.example",
            "http://127.0.0.1:9",
            "http://localhost:8080",
            "http://[::1]:1",
        ] {
            assert_eq!(require_secure(&ok.parse().unwrap(), "it"), Ok(()), "{ok}");
        }
        for bad in [
            "http://login.example",
            "http://127.0.0.1.example",
            "ftp://127.0.0.1/",
        ] {
            assert!(
                require_secure(&bad.parse().unwrap(), "it").is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn generic_servers_need_https_except_on_loopback() {
        let ok = Provider::oauth2(
            "https://idp.example/authorize".parse().unwrap(),
            "http://127.0.0.1:9/token".parse().unwrap(),
        );
        assert!(ok.is_ok());
        let plain = Provider::oauth2(
            "http://idp.example/authorize".parse().unwrap(),
            "https://idp.example/token".parse().unwrap(),
        );
        assert_eq!(plain, Err(InvalidApp::InsecureUrl("the authorize URL")));
    }

    #[test]
    fn one_consent_covers_every_resource_but_token_requests_name_one() {
        let id = ConnectionId::parse("contoso").unwrap();
        let provider = Provider::microsoft("contoso.com", Cloud::Global).unwrap();
        let resources = Resource::presets("ews,graph", Cloud::Global).unwrap();
        let app = AppRegistration::new(id, provider, "client", resources, now()).unwrap();
        let consent = app.consent_scopes();
        assert!(consent.contains(&"offline_access".to_owned()));
        assert!(consent.contains(&"https://outlook.office365.com/EWS.AccessAsUser.All".into()));
        assert!(consent.contains(&"https://graph.microsoft.com/User.Read".into()));
        let ews = app.resource(None).unwrap().token_request_scopes();
        assert!(ews.iter().all(|s| !s.contains("graph.microsoft.com")));
        assert_eq!(app.resource(Some("graph")).unwrap().name, "graph");
        assert!(app.resource(Some("sharepoint")).is_none());
    }

    #[test]
    fn a_booking_account_is_a_user_name() {
        let id = ConnectionId::parse("contoso").unwrap();
        let provider = Provider::microsoft("contoso.com", Cloud::Global).unwrap();
        let resources = Resource::presets("graph", Cloud::Global).unwrap();
        let app = AppRegistration::new(id, provider, "client", resources, now()).unwrap();
        let named = app
            .clone()
            .for_booking_account(Some(" Booking@Contoso.com "))
            .unwrap();
        assert_eq!(
            named.booking_account.as_deref(),
            Some("booking@contoso.com")
        );
        for wrong in [
            "booking",
            "@contoso.com",
            "booking@contoso",
            "a b@contoso.com",
        ] {
            assert_eq!(
                app.clone().for_booking_account(Some(wrong)),
                Err(InvalidApp::BookingAccount),
                "{wrong}"
            );
        }
        assert_eq!(app.clone().for_booking_account(None), Ok(app));
    }

    #[test]
    fn unknown_presets_are_named_in_the_error() {
        assert_eq!(
            Resource::presets("ews,sharepoint", Cloud::Global),
            Err(InvalidApp::UnknownResource("sharepoint".into()))
        );
        assert_eq!(
            Resource::custom("openid offline_access"),
            Err(InvalidApp::NoResource)
        );
    }
}

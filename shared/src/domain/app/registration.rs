//! What the operator registered for a customer tenant: the app, its
//! onboarding mode, its credential, and the vendor's multi-tenant app.

use super::*;

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

//! The operator's commands: connections, device keys and consent links.

use crate::Broker;
use crate::broker::BrokerError;
use crate::certificate::CertificateKey;
use crate::domain::app::InvalidApp;
use crate::domain::status::SecretInUse;
use crate::domain::{
    ActiveKey, AppRegistration, CertificateRef, Cloud, ConnectionId, ConnectionState, DeviceKey,
    GrantRecord, Mode, Provider, Resource, Secret, ServeRecord, Status, VendorApp, Writer,
};
use crate::store::{Part, StoreError, Versioned};
use std::time::Duration;
use time::OffsetDateTime;
use url::Url;

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("connection '{0}' already exists: use `roomtoken connection update`")]
    Exists(ConnectionId),
    #[error("connection '{0}' does not exist: see `roomtoken connection list`")]
    NotFound(ConnectionId),
    #[error("connection '{0}' has no active device key '{1}': see `roomtoken key list {0}`")]
    KeyNotFound(ConnectionId, String),
    #[error("a key count must be from 1 to {MAX_KEYS_AT_ONCE}")]
    KeyCount,
    #[error(
        "connection '{0}' was removed and is still being deleted (Secrets Manager takes a while): try `roomtoken connection add` again in a minute"
    )]
    BeingDeleted(ConnectionId),
    #[error(
        "connection '{id}' has no room for {count} more device key(s): its serve secret would be {bytes} bytes, over the {limit} that the operator's changes may fill (a secret holds 65,536 bytes, and the rest is kept for the tokens the refresh pass stores). Nothing was created. Revoke keys no longer in use (`roomtoken key list {id}`), or make keys in fewer, larger batches (`--count`)"
    )]
    KeysDoNotFit {
        id: ConnectionId,
        count: u32,
        bytes: usize,
        limit: usize,
    },
    #[error("a consent link lives at most 30 days: give a shorter --ttl")]
    LinkTtl,
    #[error("the client secret is empty")]
    EmptySecret,
    #[error(
        "the client secret's expiry ({0}) is not in the future: give the date Entra ID shows for the secret"
    )]
    SecretExpiryPast(time::Date),
    #[error("connection '{0}' holds one client secret: there is no previous one to remove")]
    NoPreviousSecret(ConnectionId),
    #[error(
        "connection '{0}' still uses its previous client secret (Entra ID refused the newest): fix the newest with `--client-secret-stdin` before removing the previous one"
    )]
    PreviousSecretInUse(ConnectionId),
    #[error("no vendor app is set: run `roomtoken vendor-app set` first")]
    NoVendorApp,
    #[error(
        "connection '{0}' uses the vendor app: its app, client id and secret are the vendor app's (`roomtoken vendor-app set`); only --resources and --reset-account apply"
    )]
    VendorConnection(ConnectionId),
    #[error(
        "connection '{0}' is self-service and its customer has not filled in the setup form yet: only --resources applies until then"
    )]
    AwaitingSetup(ConnectionId),
    #[error(
        "the vendor app's client id and cloud are fixed once set (connections were added with them): only its secret can be replaced"
    )]
    VendorAppChanged,
    #[error(transparent)]
    Invalid(#[from] InvalidApp),
    #[error(
        "app-only connections are for Entra ID tenants (--tenant): client credentials at another server are not supported"
    )]
    AppOnlyNeedsEntra,
    #[error(
        "an app-only vendor connection needs the customer's tenant (--tenant, its id or a verified domain): Microsoft's admin-consent answer names its tenant only as a hint, so the tenant cannot be learned from it"
    )]
    VendorAppOnlyNeedsTenant,
    #[error(
        "a vendor connection needs the customer's tenant (--tenant, its id or a verified domain): the vendor app is granted in many organizations, and a link without one would connect a user of any of them"
    )]
    VendorNeedsTenant,
    #[error(
        "connection '{0}' is connected: its tenant is the signed-in account's. To move it to another organization, give --reset-account with --tenant (the displays stop until the new consent)"
    )]
    TenantPinned(ConnectionId),
    #[error("an app-only connection has no booking account: nobody signs in")]
    AppOnlyHasNoAccount,
    #[error(
        "the tenant's id could not be found from its domain ({0}): give the tenant id (a GUID) with --tenant"
    )]
    TenantNotResolved(String),
    #[error(
        "the tenant is not in the {0} Microsoft cloud this connection uses (or Microsoft did not say which it is in): check the tenant, and the cloud (--cloud, or the vendor app's)"
    )]
    TenantInOtherCloud(String),
    #[error("a self-service connection cannot be app-only")]
    SelfServiceAppOnly,
    #[error(
        "the certificate expired on {0}: make a new one (--generate-certificate) or give a valid one"
    )]
    CertificateExpired(time::Date),
    #[error(transparent)]
    Certificate(#[from] crate::certificate::CertificateError),
    #[error(transparent)]
    Broker(#[from] BrokerError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub struct NewConnection {
    pub id: ConnectionId,
    pub provider: Provider,
    pub client_id: String,
    pub resources: Vec<Resource>,
    pub client_secret: Secret,
    /// The account that must sign in (any, when `None`).
    pub booking_account: Option<String>,
    /// When the client secret expires, as Entra ID shows it.
    pub client_secret_expires: Option<time::Date>,
    /// A certificate that authenticates token requests instead of the
    /// client secret (which may then be empty).
    pub certificate: Option<CertificateKey>,
    /// App-only: tokens of the app itself (client credentials) once the
    /// customer's admin granted it; `resources` hold `.default` scopes.
    pub app_only: bool,
}

/// A client secret's expiry must be ahead of `now`.
fn future_expiry(
    expires: Option<time::Date>,
    now: OffsetDateTime,
) -> Result<Option<time::Date>, AdminError> {
    match expires {
        Some(date) if date <= now.date() => Err(AdminError::SecretExpiryPast(date)),
        other => Ok(other),
    }
}

/// What the operator chooses for a connection whose customer registers
/// nothing with the operator (vendor and self-service modes).
#[derive(Clone, Copy, Debug, Default)]
pub struct Onboarding<'a> {
    /// Preset names (`ews,graph`, the default).
    pub resources: Option<&'a str>,
    /// The account that must sign in (any, when `None`).
    pub booking_account: Option<&'a str>,
    /// App-only (vendor connections): the vendor app's own tokens in the
    /// customer's tenant once its admin granted them; nobody signs in.
    pub app_only: bool,
}

impl Onboarding<'_> {
    /// The resources, in `cloud`: delegated presets (`ews,graph` by
    /// default), or app-only `.default` ones (`graph` by default).
    fn resources(&self, cloud: Cloud) -> Result<Vec<Resource>, InvalidApp> {
        match (self.app_only, self.resources) {
            (true, names) => Resource::app_only_presets(names.unwrap_or("graph"), cloud),
            (false, names) => Resource::presets(names.unwrap_or("ews,graph"), cloud),
        }
    }
}

/// The most keys one `key create --count` makes (one write for all).
pub const MAX_KEYS_AT_ONCE: usize = 500;

pub async fn add_connection(
    broker: &Broker,
    new: NewConnection,
    now: OffsetDateTime,
) -> Result<AppRegistration, AdminError> {
    if new.client_secret.expose().trim().is_empty() && new.certificate.is_none() {
        return Err(AdminError::EmptySecret);
    }
    let mut app = AppRegistration::new(
        new.id.clone(),
        new.provider,
        &new.client_id,
        new.resources,
        now,
    )?
    .for_booking_account(new.booking_account.as_deref())?;
    app.client_secret_expires = future_expiry(new.client_secret_expires, now)?;
    if new.app_only {
        if !app.provider.is_microsoft() {
            return Err(AdminError::AppOnlyNeedsEntra);
        }
        app.provider = tenant_by_id(broker, app.provider).await?;
        app.mode = Mode::AppOnly;
    }
    let mut grant = GrantRecord::new(new.client_secret);
    if let Some(certificate) = new.certificate {
        app.certificate = Some(certificate_ref(&certificate, now)?);
        grant.certificate = Some(certificate);
    }
    create_connection(broker, app, grant, now).await
}

/// The provider in its tenant's id, a domain resolved now (from the
/// tenant's OpenID discovery document): the tokens never follow the domain
/// to another tenant, and the first sign-in's `tid` is checked against it
/// (an app-only connection has no sign-in that could pin it later, and a
/// vendor connection's app is granted in many tenants).
async fn tenant_by_id(broker: &Broker, provider: Provider) -> Result<Provider, AdminError> {
    if !provider.is_microsoft() || provider.expected_tenant_id().is_some() {
        return Ok(provider);
    }
    use crate::identity::{TenantLookup, tenant_id_in_cloud};
    match tenant_id_in_cloud(broker.identity.as_ref(), &provider).await {
        Ok(tenant_id) => Ok(provider.in_tenant(&tenant_id)),
        Err(TenantLookup::InOtherCloud(_)) => Err(AdminError::TenantInOtherCloud(
            format!("{:?}", provider.cloud()).to_lowercase(),
        )),
        Err(TenantLookup::Unknown) => Err(AdminError::TenantNotResolved(
            "Microsoft knows no such tenant, AADSTS90002".into(),
        )),
        Err(TenantLookup::Unreachable(e)) => Err(AdminError::TenantNotResolved(e.to_string())),
    }
}

/// What the serve secret shows of a certificate, which must still be valid.
fn certificate_ref(
    certificate: &CertificateKey,
    now: OffsetDateTime,
) -> Result<CertificateRef, AdminError> {
    let reference = certificate.reference()?;
    if reference.expires <= now.date() {
        return Err(AdminError::CertificateExpired(reference.expires));
    }
    Ok(reference)
}

/// Adds a connection that uses the deployment's vendor app: no secret of
/// its own, and its customer's tenant (`tenant`, an id or a verified
/// domain, resolved to the id now). The vendor app is granted in many
/// organizations: only this one can connect the link (the sign-in goes to
/// its own endpoint, and the first sign-in's `tid` must be its id).
/// `resources`: preset names (`ews,graph`, the default).
pub async fn add_vendor_connection(
    broker: &Broker,
    id: ConnectionId,
    tenant: Option<&str>,
    onboarding: Onboarding<'_>,
    now: OffsetDateTime,
) -> Result<AppRegistration, AdminError> {
    let vendor = broker
        .repo
        .vendor_app()
        .await?
        .ok_or(AdminError::NoVendorApp)?;
    let expires = vendor.credential_expires();
    let resources = onboarding.resources(vendor.cloud)?;
    let Some(tenant) = tenant else {
        // An admin consent's answer names its tenant only as a hint, and
        // `/organizations/` signs in anyone whose organization granted the
        // vendor app: the tenant must be known before anyone consents.
        return Err(if onboarding.app_only {
            AdminError::VendorAppOnlyNeedsTenant
        } else {
            AdminError::VendorNeedsTenant
        });
    };
    if onboarding.app_only && onboarding.booking_account.is_some() {
        return Err(AdminError::AppOnlyHasNoAccount);
    }
    let provider = Provider::microsoft(tenant, vendor.cloud)?.in_authority(vendor.authority);
    let provider = tenant_by_id(broker, provider).await?;
    let mut app = AppRegistration::new(id, provider, &vendor.client_id, resources, now)?
        .for_booking_account(onboarding.booking_account)?;
    app.mode = if onboarding.app_only {
        Mode::VendorAppOnly
    } else {
        Mode::Vendor
    };
    app.client_secret_expires = expires;
    // The grant holds no secret: the vendor app's is read where it is used.
    create_connection(broker, app, GrantRecord::new(Secret::new("")), now).await
}

/// Adds a self-service connection: the customer admin fills in the app
/// registration behind the link, and the callback stores it with the grant.
/// `authority` replaces the cloud's sign-in origin (the demo and the tests).
pub async fn add_self_service_connection(
    broker: &Broker,
    id: ConnectionId,
    cloud: Cloud,
    authority: Option<Url>,
    onboarding: Onboarding<'_>,
    now: OffsetDateTime,
) -> Result<AppRegistration, AdminError> {
    if onboarding.app_only {
        return Err(AdminError::SelfServiceAppOnly);
    }
    let resources = onboarding.resources(cloud)?;
    let app = AppRegistration::awaiting_setup(id, cloud, authority, resources, now)?
        .for_booking_account(onboarding.booking_account)?;
    // The grant holds no secret until the form's is stored with the grant.
    create_connection(broker, app, GrantRecord::new(Secret::new("")), now).await
}

/// Stores the vendor app (`roomtoken vendor-app set`), then gives its
/// connections that a wrong, expired or missing secret stopped
/// (`app_misconfigured`) another attempt (returns how many), and every
/// vendor connection its secret's expiry (the status, the warnings and
/// token-read see it there: token-read may not read the vendor app).
pub async fn set_vendor_app(broker: &Broker, vendor: &VendorApp) -> Result<usize, AdminError> {
    future_expiry(vendor.client_secret_expires, broker.now())?;
    if let Some(certificate) = &vendor.certificate {
        certificate_ref(certificate, broker.now())?;
    }
    if vendor.client_id.trim().is_empty() {
        return Err(InvalidApp::ClientId.into());
    }
    if vendor.client_secret.expose().trim().is_empty() && vendor.certificate.is_none() {
        return Err(AdminError::EmptySecret);
    }
    let expires = vendor.credential_expires();
    if let Some(current) = broker.repo.vendor_app().await?
        && (current.client_id != vendor.client_id
            || current.cloud != vendor.cloud
            || current.authority != vendor.authority)
    {
        return Err(AdminError::VendorAppChanged);
    }
    broker.repo.set_vendor_app(vendor).await?;
    tracing::info!(client_id = %vendor.client_id, "vendor app set");
    // One read per connection: an operator's command, run when a secret
    // is replaced, not on any schedule.
    let now = broker.now();
    let mut retried = 0;
    for id in broker.repo.connection_ids().await? {
        let Some(serve) = broker.repo.serve(&id).await? else {
            continue;
        };
        let stopped = |record: &ServeRecord| {
            record.app.is_vendor() && record.status.state == ConnectionState::AppMisconfigured
        };
        let outdated = |record: &ServeRecord| {
            record.app.is_vendor() && record.app.client_secret_expires != expires
        };
        if !stopped(&serve.value) && !outdated(&serve.value) {
            continue;
        }
        let mut was_stopped = false;
        broker
            .repo
            .update::<ServeRecord, _>(&id, Part::Serve, Writer::Person, now, |record| {
                let mut record = record.filter(|r| stopped(r) || outdated(r))?;
                was_stopped = stopped(&record);
                if was_stopped {
                    record.status = record.status.retry_after_fix();
                }
                record.app.client_secret_expires = expires;
                Some(record)
            })
            .await?;
        retried += usize::from(was_stopped);
    }
    Ok(retried)
}

/// Both secrets of a new connection, or `Exists` when any part is there.
async fn create_connection(
    broker: &Broker,
    app: AppRegistration,
    new_grant: GrantRecord,
    now: OffsetDateTime,
) -> Result<AppRegistration, AdminError> {
    let repo = &broker.repo;
    // Any part left of an earlier connection with this id (a removal that
    // failed halfway) would be inherited: refuse until `remove` finishes.
    let (grant, serve) = tokio::try_join!(repo.grant(&app.id), repo.serve(&app.id))?;
    if grant.is_some() || serve.is_some() {
        return Err(AdminError::Exists(app.id));
    }
    // Both secrets exist from here on: on AWS, a role scoped to `name-??????`
    // is denied (not told "not found") for a name that does not exist.
    create_secret(broker, &app.id, Part::Grant, &new_grant, now).await?;
    let mut serve = ServeRecord::new(app.clone());
    // A random first generation: links and sign-ins of an earlier
    // connection with this id (removed, then added again, perhaps for
    // another customer) do not match this one.
    serve.link_generation = rand::random();
    create_secret(broker, &app.id, Part::Serve, &serve, now).await?;
    tracing::info!(connection = %app.id, "connection added");
    Ok(app)
}

/// How long `connection add` waits, in all, for the secrets of a connection
/// removed just before to finish being deleted (Secrets Manager deletes
/// asynchronously, usually within seconds): 30 s, then it says so.
pub const BEING_DELETED_WAITS: [std::time::Duration; 5] = [
    std::time::Duration::from_secs(2),
    std::time::Duration::from_secs(4),
    std::time::Duration::from_secs(6),
    std::time::Duration::from_secs(8),
    std::time::Duration::from_secs(10),
];

/// Creates one secret of a new connection, waiting a bounded while for a
/// removed one's of the same name to finish being deleted.
async fn create_secret<T>(
    broker: &Broker,
    id: &ConnectionId,
    part: Part,
    record: &T,
    now: OffsetDateTime,
) -> Result<(), AdminError>
where
    T: Clone + serde::Serialize + crate::domain::records::Logged,
{
    let mut waits = BEING_DELETED_WAITS.iter();
    loop {
        // Each attempt from the record as given: a failed one leaves no
        // entry in its write log.
        let mut attempt = record.clone();
        match broker
            .repo
            .write(id, part, &mut attempt, None, Writer::Person, now)
            .await
        {
            Ok(_) => return Ok(()),
            Err(StoreError::Conflict(_)) => return Err(AdminError::Exists(id.clone())),
            Err(StoreError::BeingDeleted { .. }) => {
                let Some(wait) = waits.next() else {
                    return Err(AdminError::BeingDeleted(id.clone()));
                };
                tracing::info!(connection = %id, wait_s = wait.as_secs(), "a removed connection of this id is still being deleted; waiting");
                broker.sleeper.sleep(*wait).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// What `connection update` may change.
#[derive(Default)]
pub struct ConnectionUpdate {
    pub provider: Option<Provider>,
    pub client_id: Option<String>,
    pub resources: Option<Vec<Resource>>,
    pub client_secret: Option<Secret>,
    /// Name (or, with an empty name, forget) the account that must sign in.
    pub booking_account: Option<String>,
    /// Forget the pinned account and its grant: the next consent may be
    /// any account.
    pub reset_account: bool,
    /// When the (new, or current) client secret expires.
    pub client_secret_expires: Option<time::Date>,
    /// A second client secret (a rotation): used first from now on; the
    /// current one becomes the previous, tried when the new one is refused.
    pub add_client_secret: Option<Secret>,
    /// Retire the previous client secret.
    pub remove_client_secret: bool,
    /// Authenticate with this certificate from now on (instead of the
    /// client secret, or of the certificate before).
    pub certificate: Option<CertificateKey>,
    /// A vendor connection's organization (an id or a verified domain, in
    /// the vendor app's cloud): before its first consent, or with
    /// `reset_account`. Other connections change their tenant by `provider`.
    pub tenant: Option<String>,
}

pub async fn update_connection(
    broker: &Broker,
    id: &ConnectionId,
    update: ConnectionUpdate,
) -> Result<AppRegistration, AdminError> {
    let now = broker.now();
    let repo = &broker.repo;
    let serve = serve_of(broker, id).await?;
    let mut app = serve.value.app.clone();
    let (mode, secret_expires, previous_expires, certificate) = (
        app.mode,
        app.client_secret_expires,
        app.previous_client_secret_expires,
        app.certificate.clone(),
    );
    let new_certificate = match &update.certificate {
        Some(key) => Some(certificate_ref(key, now)?),
        None => None,
    };
    // An empty name forgets it.
    let booking_account = update
        .booking_account
        .clone()
        .or_else(|| app.booking_account.clone());
    let rotates = update.add_client_secret.is_some() || update.remove_client_secret;
    let changes_app_or_secret = update.provider.is_some()
        || update.client_id.is_some()
        || update.certificate.is_some()
        || update.client_secret.is_some()
        || update.client_secret_expires.is_some()
        || rotates;
    if update.remove_client_secret {
        let grant = repo
            .grant(id)
            .await?
            .ok_or_else(|| AdminError::NotFound(id.clone()))?;
        if grant.value.previous_client_secret.is_none() {
            return Err(AdminError::NoPreviousSecret(id.clone()));
        }
        if serve.value.status.client_secret_in_use == Some(SecretInUse::Previous) {
            return Err(AdminError::PreviousSecretInUse(id.clone()));
        }
    }
    if app.is_vendor() && changes_app_or_secret {
        return Err(AdminError::VendorConnection(id.clone()));
    }
    let tenant_changed = match &update.tenant {
        Some(_) if !app.is_vendor() => return Err(AdminError::Invalid(InvalidApp::Tenant)),
        Some(_) if serve.value.status.account.is_some() && !update.reset_account => {
            return Err(AdminError::TenantPinned(id.clone()));
        }
        Some(tenant) => {
            let authority = app.provider.authority().cloned();
            let named = Provider::microsoft(tenant, app.provider.cloud())?.in_authority(authority);
            app.provider = tenant_by_id(broker, named).await?;
            true
        }
        None => false,
    };
    if app.is_app_only()
        && update
            .booking_account
            .as_deref()
            .is_some_and(|upn| !upn.trim().is_empty())
    {
        return Err(AdminError::AppOnlyHasNoAccount);
    }
    if !app.is_set_up() && changes_app_or_secret {
        return Err(AdminError::AwaitingSetup(id.clone()));
    }
    let app_changed = update.provider.is_some()
        || tenant_changed
        || update.client_id.is_some()
        || update.resources.is_some()
        || update.booking_account.is_some()
        // The expiry shown in the status belongs to the secret.
        || update.client_secret_expires.is_some()
        || update.client_secret.is_some()
        || update.certificate.is_some()
        || rotates;
    if let Some(provider) = update.provider {
        app.provider = provider;
    }
    if let Some(resources) = update.resources {
        if app.mode == Mode::SelfService {
            // What the form offers from now on.
            app.offered = resources.iter().map(|r| r.name.clone()).collect();
        }
        app.resources = resources;
    }
    let mut app = if app.is_set_up() {
        let client_id = update.client_id.unwrap_or_else(|| app.client_id.clone());
        AppRegistration::new(
            app.id,
            app.provider,
            &client_id,
            app.resources,
            app.created_at,
        )?
    } else {
        app
    };
    app.mode = mode;
    app.certificate = new_certificate.or(certificate);
    // A new secret without its expiry: unknown (the old one's no longer
    // applies).
    let new_secret = update.client_secret.is_some() || update.add_client_secret.is_some();
    app.client_secret_expires = match future_expiry(update.client_secret_expires, now)? {
        Some(date) => Some(date),
        None => secret_expires.filter(|_| !new_secret),
    };
    app.previous_client_secret_expires = if update.add_client_secret.is_some() {
        secret_expires
    } else if update.remove_client_secret {
        None
    } else {
        previous_expires
    };
    let app = app.for_booking_account(booking_account.as_deref())?;
    for secret in [&update.client_secret, &update.add_client_secret]
        .into_iter()
        .flatten()
    {
        if secret.expose().trim().is_empty() {
            return Err(AdminError::EmptySecret);
        }
    }
    // Forgetting the account revokes what it could do: it always has room.
    let writer = if update.reset_account {
        Writer::Revocation
    } else {
        Writer::Person
    };
    // The grant first: a new secret or a forgotten account must be in place
    // before the serve secret says the connection may be tried again.
    if update.client_secret.is_some()
        || update.certificate.is_some()
        || update.reset_account
        || rotates
    {
        let written = repo
            .update::<GrantRecord, _>(id, Part::Grant, writer, now, |record| {
                let mut record = record?;
                if let Some(secret) = &update.client_secret {
                    record.client_secret = secret.clone();
                }
                if let Some(secret) = &update.add_client_secret {
                    let current = std::mem::replace(&mut record.client_secret, secret.clone());
                    record.previous_client_secret = Some(current);
                }
                if update.remove_client_secret {
                    record.previous_client_secret = None;
                }
                if let Some(certificate) = &update.certificate {
                    record.certificate = Some(certificate.clone());
                }
                if update.reset_account {
                    record.grant = None;
                }
                Some(record)
            })
            .await?;
        if written.is_none() {
            return Err(AdminError::NotFound(id.clone()));
        }
    }
    repo.update::<ServeRecord, _>(id, Part::Serve, writer, now, |record| {
        let mut record = record?;
        let misconfigured = record.status.state == ConnectionState::AppMisconfigured;
        if !(app_changed || update.reset_account || misconfigured) {
            // Nothing to change here: no new version.
            return None;
        }
        record.app = app.clone();
        if update.reset_account {
            record.access = None;
            record.status = Status::default();
            // A link sent before could pin whoever opens it next.
            record.link_generation = record.link_generation.wrapping_add(1);
        } else if misconfigured {
            // A fixed registration deserves another attempt: leave the
            // state that made refresh passes skip this connection.
            record.status = record.status.retry_after_fix();
        }
        if update.add_client_secret.is_some() || update.remove_client_secret {
            // Which secret works is known again after the next refresh.
            record.status.client_secret_in_use = None;
        }
        Some(record)
    })
    .await?;
    tracing::info!(connection = %id, reset_account = update.reset_account, "connection updated");
    Ok(app)
}

async fn serve_of(
    broker: &Broker,
    id: &ConnectionId,
) -> Result<Versioned<ServeRecord>, AdminError> {
    broker
        .repo
        .serve(id)
        .await?
        .ok_or_else(|| AdminError::NotFound(id.clone()))
}

pub async fn get_connection(
    broker: &Broker,
    id: &ConnectionId,
) -> Result<AppRegistration, AdminError> {
    Ok(serve_of(broker, id).await?.value.app)
}

pub async fn list_connections(broker: &Broker) -> Result<Vec<AppRegistration>, AdminError> {
    let mut apps = Vec::new();
    for id in broker.repo.connection_ids().await? {
        if let Some(serve) = broker.repo.serve(&id).await? {
            apps.push(serve.value.app);
        }
    }
    Ok(apps)
}

/// Removes both secrets. Idempotent: a removal that failed halfway is
/// finished by running it again; only an id with nothing stored is unknown.
pub async fn remove_connection(broker: &Broker, id: &ConnectionId) -> Result<(), AdminError> {
    let repo = &broker.repo;
    let (grant, serve) = tokio::try_join!(repo.grant(id), repo.serve(id))?;
    if grant.is_none() && serve.is_none() {
        return Err(AdminError::NotFound(id.clone()));
    }
    repo.delete_connection(id).await?;
    tracing::info!(connection = %id, "connection removed");
    Ok(())
}

/// The longest a consent link may live: a link is a credential of sorts
/// (it can pin an account to a connection), so it must run out.
pub const MAX_LINK_TTL: Duration = Duration::from_secs(30 * 24 * 3_600);

/// When a link made now with `ttl` expires; refused beyond 30 days.
pub fn link_expiry(now: OffsetDateTime, ttl: Duration) -> Result<OffsetDateTime, AdminError> {
    if ttl > MAX_LINK_TTL {
        return Err(AdminError::LinkTtl);
    }
    now.checked_add(time::Duration::try_from(ttl).map_err(|_| AdminError::LinkTtl)?)
        .ok_or(AdminError::LinkTtl)
}

pub async fn consent_link(
    broker: &Broker,
    id: &ConnectionId,
    expires_at: OffsetDateTime,
) -> Result<Url, AdminError> {
    if expires_at > broker.now() + MAX_LINK_TTL {
        return Err(AdminError::LinkTtl);
    }
    let serve = serve_of(broker, id).await?;
    Ok(broker
        .consent_link(id, expires_at, serve.value.link_generation)
        .await?)
}

/// Revokes every consent link of a connection sent so far (one serve
/// write); the links made afterwards work.
pub async fn revoke_links(broker: &Broker, id: &ConnectionId) -> Result<(), AdminError> {
    let written = broker
        .repo
        .update::<ServeRecord, _>(
            id,
            Part::Serve,
            Writer::Revocation,
            broker.now(),
            |record| {
                let mut record = record?;
                record.link_generation = record.link_generation.wrapping_add(1);
                Some(record)
            },
        )
        .await?;
    if written.is_none() {
        return Err(AdminError::NotFound(id.clone()));
    }
    tracing::info!(connection = %id, "every earlier consent link revoked");
    Ok(())
}

/// Creates `count` device keys in one write (one batch: one label, one
/// date); the caller shows each once. Nothing of a key but its serial is
/// kept: its tag is made again, from the device-key secret, when a display
/// presents it.
pub async fn create_keys(
    broker: &Broker,
    id: &ConnectionId,
    label: Option<String>,
    count: usize,
    now: OffsetDateTime,
) -> Result<Vec<DeviceKey>, AdminError> {
    let count = u32::try_from(count)
        .ok()
        .filter(|n| (1..=MAX_KEYS_AT_ONCE as u32).contains(n))
        .ok_or(AdminError::KeyCount)?;
    let signer = broker.device_key_signer().await?;
    // The ids the write that lands gave (a lost race tries again).
    let mut issued: Option<Vec<String>> = None;
    let written = broker
        .repo
        .update::<ServeRecord, _>(id, Part::Serve, Writer::Person, now, |record| {
            let mut record = record?;
            issued = record.keys.issue(count, label.clone(), now);
            issued.is_some().then_some(record)
        })
        .await
        .map_err(|e| match e {
            StoreError::TooLarge { bytes, limit, .. } => AdminError::KeysDoNotFit {
                id: id.clone(),
                count,
                bytes,
                limit,
            },
            other => AdminError::Store(other),
        })?;
    if written.is_none() {
        return Err(AdminError::NotFound(id.clone()));
    }
    let ids = issued.ok_or(AdminError::KeyCount)?;
    let keys: Vec<DeviceKey> = ids
        .iter()
        .map(|key_id| DeviceKey::for_id(signer, id.as_str(), key_id))
        .collect();
    for key in &keys {
        tracing::info!(connection = %id, key_id = %key.id, "device key created");
    }
    Ok(keys)
}

/// Creates one device key.
pub async fn create_key(
    broker: &Broker,
    id: &ConnectionId,
    label: Option<String>,
    now: OffsetDateTime,
) -> Result<DeviceKey, AdminError> {
    let mut keys = create_keys(broker, id, label, 1, now).await?;
    keys.pop().ok_or(AdminError::KeyCount)
}

/// The connection's active keys (revoked keys are not kept).
pub async fn list_keys(broker: &Broker, id: &ConnectionId) -> Result<Vec<ActiveKey>, AdminError> {
    Ok(serve_of(broker, id).await?.value.keys.active())
}

/// Revokes every key in `key_ids` in one write; nothing is revoked when one
/// of them is not an active key of the connection. A key made just before
/// may not be seen yet (Secrets Manager's reads are eventually consistent):
/// "no such key" is concluded only after reading again a few times.
pub async fn revoke_keys(
    broker: &Broker,
    id: &ConnectionId,
    key_ids: &[String],
    now: OffsetDateTime,
) -> Result<(), AdminError> {
    let mut waits = SETTLE_WAITS.iter();
    loop {
        match revoke_keys_once(broker, id, key_ids, now).await {
            Err(AdminError::KeyNotFound(..)) if let Some(wait) = waits.next() => {
                broker.sleeper.sleep(*wait).await;
            }
            result => return result,
        }
    }
}

/// The waits before reading again what a read may not show yet.
const SETTLE_WAITS: [std::time::Duration; 3] = [
    std::time::Duration::from_millis(500),
    std::time::Duration::from_secs(1),
    std::time::Duration::from_secs(2),
];

async fn revoke_keys_once(
    broker: &Broker,
    id: &ConnectionId,
    key_ids: &[String],
    now: OffsetDateTime,
) -> Result<(), AdminError> {
    let mut missing: Option<String> = None;
    let written = broker
        .repo
        .update::<ServeRecord, _>(id, Part::Serve, Writer::Revocation, now, |record| {
            let mut record = record?;
            missing = key_ids
                .iter()
                .find(|key_id| !record.keys.revoke(key_id))
                .cloned();
            missing.is_none().then_some(record)
        })
        .await?;
    if let Some(key_id) = missing {
        return Err(AdminError::KeyNotFound(id.clone(), key_id));
    }
    if written.is_none() {
        return Err(AdminError::NotFound(id.clone()));
    }
    for key_id in key_ids {
        tracing::info!(connection = %id, key_id = %key_id, "device key revoked");
    }
    Ok(())
}

/// Revokes one device key.
pub async fn revoke_key(
    broker: &Broker,
    id: &ConnectionId,
    key_id: &str,
    now: OffsetDateTime,
) -> Result<(), AdminError> {
    revoke_keys(broker, id, &[key_id.to_owned()], now).await
}

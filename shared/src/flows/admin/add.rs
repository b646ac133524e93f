//! Adding connections, in every onboarding mode, and the vendor app they
//! may share.

use super::*;

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
pub(super) fn future_expiry(
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
pub(super) async fn tenant_by_id(
    broker: &Broker,
    provider: Provider,
) -> Result<Provider, AdminError> {
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
pub(super) fn certificate_ref(
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

//! A connection once added: update, show, list and remove.

use super::*;

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

pub(super) async fn serve_of(
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

//! The operator's commands: connections, device keys and consent links.

use crate::Broker;
use crate::broker::BrokerError;
use crate::domain::app::InvalidApp;
use crate::domain::{
    AppRegistration, ConnectionId, ConnectionState, DeviceKey, DeviceKeyRecord, DeviceKeys,
    Provider, Resource, Secret, Status,
};
use crate::store::{Part, StoreError};
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
    #[error("the client secret is empty")]
    EmptySecret,
    #[error(transparent)]
    Invalid(#[from] InvalidApp),
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
}

pub async fn add_connection(
    broker: &Broker,
    new: NewConnection,
    now: OffsetDateTime,
) -> Result<AppRegistration, AdminError> {
    if new.client_secret.expose().trim().is_empty() {
        return Err(AdminError::EmptySecret);
    }
    let app = AppRegistration::new(
        new.id.clone(),
        new.provider,
        &new.client_id,
        new.resources,
        now,
    )?;
    let repo = &broker.repo;
    match repo.put(&app.id, Part::App, &app, None).await {
        Err(StoreError::Conflict(_)) => return Err(AdminError::Exists(app.id)),
        other => other?,
    };
    repo.update::<Secret, _>(&app.id, Part::Credential, |_| {
        Some(new.client_secret.clone())
    })
    .await?;
    repo.update::<Status, _>(&app.id, Part::Status, |_| Some(Status::default()))
        .await?;
    tracing::info!(connection = %app.id, "connection added");
    Ok(app)
}

/// What `connection update` may change.
#[derive(Default)]
pub struct ConnectionUpdate {
    pub provider: Option<Provider>,
    pub client_id: Option<String>,
    pub resources: Option<Vec<Resource>>,
    pub client_secret: Option<Secret>,
    /// Forget the pinned account and its grant: the next consent may be
    /// any account.
    pub reset_account: bool,
}

pub async fn update_connection(
    broker: &Broker,
    id: &ConnectionId,
    update: ConnectionUpdate,
) -> Result<AppRegistration, AdminError> {
    let repo = &broker.repo;
    let current = repo
        .get::<AppRegistration>(id, Part::App)
        .await?
        .ok_or_else(|| AdminError::NotFound(id.clone()))?;
    let mut app = current.value.clone();
    let app_changed =
        update.provider.is_some() || update.client_id.is_some() || update.resources.is_some();
    if let Some(provider) = update.provider {
        app.provider = provider;
    }
    if let Some(resources) = update.resources {
        app.resources = resources;
    }
    let client_id = update.client_id.unwrap_or_else(|| app.client_id.clone());
    let app = AppRegistration::new(
        app.id,
        app.provider,
        &client_id,
        app.resources,
        app.created_at,
    )?;
    if app_changed {
        repo.put(id, Part::App, &app, Some(&current.version))
            .await?;
    }
    if let Some(secret) = update.client_secret {
        if secret.expose().trim().is_empty() {
            return Err(AdminError::EmptySecret);
        }
        repo.update::<Secret, _>(id, Part::Credential, |_| Some(secret.clone()))
            .await?;
    }
    if update.reset_account {
        repo.store()
            .delete(crate::store::SecretName::of(id, Part::Grant).as_str())
            .await?;
        repo.store()
            .delete(crate::store::SecretName::of(id, Part::Access).as_str())
            .await?;
        repo.update::<Status, _>(id, Part::Status, |_| Some(Status::default()))
            .await?;
    } else {
        // A fixed registration deserves another attempt: leave the state
        // that made refresh passes skip this connection.
        repo.update::<Status, _>(id, Part::Status, |status| {
            let status = status.unwrap_or_default();
            (status.state == ConnectionState::AppMisconfigured).then_some(Status {
                state: ConnectionState::Degraded,
                ..status
            })
        })
        .await?;
    }
    tracing::info!(connection = %id, reset_account = update.reset_account, "connection updated");
    Ok(app)
}

pub async fn get_connection(
    broker: &Broker,
    id: &ConnectionId,
) -> Result<AppRegistration, AdminError> {
    Ok(broker
        .repo
        .get::<AppRegistration>(id, Part::App)
        .await?
        .ok_or_else(|| AdminError::NotFound(id.clone()))?
        .value)
}

pub async fn list_connections(broker: &Broker) -> Result<Vec<AppRegistration>, AdminError> {
    let mut apps = Vec::new();
    for id in broker.repo.connection_ids().await? {
        if let Some(app) = broker.repo.get::<AppRegistration>(&id, Part::App).await? {
            apps.push(app.value);
        }
    }
    Ok(apps)
}

pub async fn remove_connection(broker: &Broker, id: &ConnectionId) -> Result<(), AdminError> {
    get_connection(broker, id).await?;
    broker.repo.delete_connection(id).await?;
    tracing::info!(connection = %id, "connection removed");
    Ok(())
}

pub async fn consent_link(
    broker: &Broker,
    id: &ConnectionId,
    expires_at: OffsetDateTime,
) -> Result<Url, AdminError> {
    get_connection(broker, id).await?;
    Ok(broker.consent_link(id, expires_at).await?)
}

/// Creates a device key; the caller shows it once, only its hash is kept.
pub async fn create_key(
    broker: &Broker,
    id: &ConnectionId,
    label: Option<String>,
    now: OffsetDateTime,
) -> Result<DeviceKey, AdminError> {
    get_connection(broker, id).await?;
    let key = DeviceKey::generate();
    broker
        .repo
        .update::<DeviceKeys, _>(id, Part::Keys, |keys| {
            let mut keys = keys.unwrap_or_default();
            keys.add(&key, label.clone(), now);
            Some(keys)
        })
        .await?;
    tracing::info!(connection = %id, key_id = %key.id, "device key created");
    Ok(key)
}

pub async fn list_keys(
    broker: &Broker,
    id: &ConnectionId,
) -> Result<Vec<DeviceKeyRecord>, AdminError> {
    get_connection(broker, id).await?;
    Ok(broker
        .repo
        .get::<DeviceKeys>(id, Part::Keys)
        .await?
        .map(|k| k.value.keys)
        .unwrap_or_default())
}

pub async fn revoke_key(
    broker: &Broker,
    id: &ConnectionId,
    key_id: &str,
    now: OffsetDateTime,
) -> Result<(), AdminError> {
    let mut found = false;
    broker
        .repo
        .update::<DeviceKeys, _>(id, Part::Keys, |keys| {
            let mut keys = keys?;
            found = keys.revoke(key_id, now);
            found.then_some(keys)
        })
        .await?;
    if !found {
        return Err(AdminError::KeyNotFound(id.clone(), key_id.to_owned()));
    }
    tracing::info!(connection = %id, key_id = %key_id, "device key revoked");
    Ok(())
}

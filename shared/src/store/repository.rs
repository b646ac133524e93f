//! Typed access to the stored parts of a connection.

use super::{SecretStore, StoreError, Version};
use crate::domain::ConnectionId;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::sync::Arc;

/// The parts stored per connection, split so that each function's IAM role
/// reads only what it needs (token-read: `Access`, `Keys`, `Status`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    /// The app registration without its secret.
    App,
    /// The client secret: only the functions that call the token endpoint.
    Credential,
    /// The refresh token and the pinned account.
    Grant,
    /// Access tokens per resource.
    Access,
    /// Device-key hashes.
    Keys,
    Status,
}

impl Part {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::App => "app",
            Self::Credential => "credential",
            Self::Grant => "grant",
            Self::Access => "access",
            Self::Keys => "keys",
            Self::Status => "status",
        }
    }

    pub const ALL: [Part; 6] = [
        Self::App,
        Self::Credential,
        Self::Grant,
        Self::Access,
        Self::Keys,
        Self::Status,
    ];
}

/// A logical secret name, without the deployment's prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecretName(String);

impl SecretName {
    pub fn of(id: &ConnectionId, part: Part) -> Self {
        Self(format!("connections/{id}/{}", part.as_str()))
    }

    pub fn signing_key() -> Self {
        Self("system/signing-key".into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Clone, Debug)]
pub struct Versioned<T> {
    pub value: T,
    pub version: Version,
}

/// Reads and writes domain values as JSON through a [`SecretStore`].
#[derive(Clone)]
pub struct Repository {
    store: Arc<dyn SecretStore>,
}

/// How many times an update re-reads after losing a compare-and-swap race.
const MAX_CONFLICT_RETRIES: usize = 8;

impl Repository {
    pub fn new(store: Arc<dyn SecretStore>) -> Self {
        Self { store }
    }

    pub fn store(&self) -> &Arc<dyn SecretStore> {
        &self.store
    }

    pub async fn load<T: DeserializeOwned>(
        &self,
        name: &SecretName,
    ) -> Result<Option<Versioned<T>>, StoreError> {
        let Some(stored) = self.store.get(name.as_str()).await? else {
            return Ok(None);
        };
        let value = serde_json::from_str(&stored.value).map_err(|e| StoreError::Corrupt {
            name: name.as_str().to_owned(),
            // serde_json's messages name the position and the expected type, never the data.
            reason: e.to_string(),
        })?;
        Ok(Some(Versioned {
            value,
            version: stored.version,
        }))
    }

    pub async fn get<T: DeserializeOwned>(
        &self,
        id: &ConnectionId,
        part: Part,
    ) -> Result<Option<Versioned<T>>, StoreError> {
        self.load(&SecretName::of(id, part)).await
    }

    pub async fn save<T: Serialize>(
        &self,
        name: &SecretName,
        value: &T,
        expected: Option<&Version>,
    ) -> Result<Version, StoreError> {
        let json = serde_json::to_string(value).map_err(|e| StoreError::Corrupt {
            name: name.as_str().to_owned(),
            reason: e.to_string(),
        })?;
        self.store.put(name.as_str(), &json, expected).await
    }

    pub async fn put<T: Serialize>(
        &self,
        id: &ConnectionId,
        part: Part,
        value: &T,
        expected: Option<&Version>,
    ) -> Result<Version, StoreError> {
        self.save(&SecretName::of(id, part), value, expected).await
    }

    /// Read-modify-write with compare-and-swap, re-reading on conflict.
    /// `change` returns `None` to leave the value as it is (no write).
    pub async fn update<T, F>(
        &self,
        id: &ConnectionId,
        part: Part,
        mut change: F,
    ) -> Result<Option<T>, StoreError>
    where
        T: Serialize + DeserializeOwned,
        F: FnMut(Option<T>) -> Option<T>,
    {
        let name = SecretName::of(id, part);
        for _ in 0..MAX_CONFLICT_RETRIES {
            let current = self.load::<T>(&name).await?;
            let version = current.as_ref().map(|c| c.version.clone());
            let Some(next) = change(current.map(|c| c.value)) else {
                return Ok(None);
            };
            match self.save(&name, &next, version.as_ref()).await {
                Ok(_) => return Ok(Some(next)),
                Err(StoreError::Conflict(_)) => continue,
                Err(other) => return Err(other),
            }
        }
        Err(StoreError::Conflict(name.as_str().to_owned()))
    }

    pub async fn delete_connection(&self, id: &ConnectionId) -> Result<(), StoreError> {
        for part in Part::ALL {
            self.store.delete(SecretName::of(id, part).as_str()).await?;
        }
        Ok(())
    }

    /// Every connection that has an app registration, sorted.
    pub async fn connection_ids(&self) -> Result<Vec<ConnectionId>, StoreError> {
        let names = self.store.list("connections/").await?;
        let mut ids: Vec<ConnectionId> = names
            .iter()
            .filter_map(|name| {
                let rest = name.strip_prefix("connections/")?;
                let (id, part) = rest.split_once('/')?;
                (part == Part::App.as_str()).then(|| ConnectionId::parse(id).ok())?
            })
            .collect();
        ids.sort();
        ids.dedup();
        Ok(ids)
    }
}

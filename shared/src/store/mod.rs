//! The secret-store port, its two adapters, and a typed repository on top.
//!
//! Every write is compare-and-swap: the caller names the version it read
//! (or `None` for "must not exist yet") and loses with [`StoreError::Conflict`]
//! when someone else wrote first.

#[cfg(any(test, feature = "test-util"))]
mod counting;
mod file;
mod repository;
mod secrets_manager;

#[cfg(any(test, feature = "test-util"))]
pub use counting::{CountingStore, StoreCalls};
pub use file::FileStore;
pub use repository::{Part, Repository, SecretName, Versioned};
pub use secrets_manager::{SecretsManagerStore, client as secrets_manager_client};

use async_trait::async_trait;
use std::sync::Arc;

/// The most a stored value may hold: Secrets Manager's limit on a
/// `SecretString`. Every store refuses more (moto does not), so that tests
/// meet the real limit.
pub const MAX_VALUE_BYTES: usize = 65_536;

/// Refuses, before any call, a value that no secret could hold.
pub(crate) fn check_value_size(name: &str, value: &str) -> StoreResult<()> {
    if value.len() > MAX_VALUE_BYTES {
        return Err(StoreError::TooLarge {
            name: name.to_owned(),
            bytes: value.len(),
            limit: MAX_VALUE_BYTES,
        });
    }
    Ok(())
}

/// Opaque version of a stored value, as returned by a read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Version(pub String);

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("'{0}' was changed by someone else meanwhile")]
    Conflict(String),
    #[error("the secret store is unavailable: {0}")]
    Unavailable(String),
    #[error("'{name}' holds data this version cannot read: {reason}")]
    Corrupt { name: String, reason: String },
    /// The AWS SDK found no usable credentials: nothing was asked.
    #[error(
        "no usable AWS credentials (for a profile of IAM Identity Center, run `aws sso login --profile NAME` and set AWS_PROFILE): {0}"
    )]
    NoCredentials(String),
    #[error("the secret store refused '{name}': {reason}")]
    Denied { name: String, reason: String },
    /// Refused before any call: one more version now would crowd Secrets
    /// Manager's version quota (see [`crate::domain::Writer`]).
    #[error(
        "'{name}' was changed too often lately (Secrets Manager keeps every version for 24 hours); \
         it can be changed again after {}", crate::domain::records::format_utc(*retry_at)
    )]
    WriteQuota {
        name: String,
        retry_at: time::OffsetDateTime,
    },
    /// A secret of this name is still being deleted (Secrets Manager
    /// deletes asynchronously): it cannot be created again yet.
    #[error("'{name}' is still being deleted; it can be created again in a minute")]
    BeingDeleted { name: String },
    /// Refused before any call: the value would not fit. Below
    /// [`MAX_VALUE_BYTES`], the limit keeps room for what the refresh pass
    /// adds (see [`crate::domain::records::Logged::product_room`]).
    #[error(
        "'{name}' would be {bytes} bytes, over the {limit} it may hold{}",
        if *limit < MAX_VALUE_BYTES {
            " (the rest of the 65,536 bytes a secret holds is kept for the tokens and notifications the refresh pass stores)"
        } else {
            " (the most a Secrets Manager secret holds)"
        }
    )]
    TooLarge {
        name: String,
        bytes: usize,
        limit: usize,
    },
}

/// A stored value and its version.
#[derive(Clone, Debug)]
pub struct Stored {
    pub value: String,
    pub version: Version,
}

/// What every store operation answers.
pub type StoreResult<T> = Result<T, StoreError>;

/// A listed name, with a mark of its last change when the store lists one
/// (Secrets Manager: the id of the version labelled `AWSCURRENT`; the file
/// store: the file's modification time). A mark that has not moved means no write since, as
/// far as the listing knows (ListSecrets may lag by minutes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listed {
    pub name: String,
    pub changed: Option<String>,
}

/// The store port: named string values with versions.
#[async_trait]
pub trait SecretStore: Send + Sync {
    /// The current value, or `None` when the name does not exist.
    async fn get(&self, name: &str) -> Result<Option<Stored>, StoreError>;
    /// Writes `value` if the current version is still `prior` (`None`: the
    /// name must not exist yet). Returns the new version.
    async fn put(&self, name: &str, value: &str, prior: Option<&Version>) -> StoreResult<Version>;
    /// Removes a name; removing what does not exist is not an error.
    async fn delete(&self, name: &str) -> Result<(), StoreError>;
    /// Every name that starts with `prefix`.
    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError>;
    /// [`Self::list`] with each name's change mark, in the same call. A
    /// store (or decorator) that does not know marks lists none, and its
    /// callers then read what they would have skipped.
    async fn list_marked(&self, prefix: &str) -> StoreResult<Vec<Listed>> {
        let names = self.list(prefix).await?;
        Ok(names
            .into_iter()
            .map(|name| Listed {
                name,
                changed: None,
            })
            .collect())
    }
    /// API calls one `put` makes on the wire (`creating`: `prior` is
    /// `None`), which is what write quotas count and the pacer spends.
    fn calls_per_write(&self, creating: bool) -> u32 {
        let _ = creating;
        1
    }
    /// Whether a `put` that answers [`StoreError::Conflict`] over an
    /// existing version has made a version all the same (Secrets Manager:
    /// PutSecretValue, then the move of AWSCURRENT fails), which the
    /// version quota must count.
    fn losing_write_makes_version(&self) -> bool {
        false
    }
    /// Whether this store has Secrets Manager's version quota (about 100
    /// versions per secret, none removed before 24 hours), so that the
    /// product's own writes must be counted and capped. The file store has
    /// none, unless it was made to stand for Secrets Manager.
    fn counts_versions(&self) -> bool {
        true
    }
}

/// Which store to use: `file:DIR` or `aws`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreSpec {
    File(std::path::PathBuf),
    Aws,
}

impl std::str::FromStr for StoreSpec {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "aws" => Ok(Self::Aws),
            _ => match text.strip_prefix("file:") {
                Some(dir) if !dir.is_empty() => Ok(Self::File(dir.into())),
                _ => Err(format!(
                    "store '{text}' is not understood: use file:DIR (for example file:./.roomtoken) or aws"
                )),
            },
        }
    }
}

impl StoreSpec {
    /// Opens the store; for `aws`, with the SDK's usual configuration
    /// (region, credentials, `AWS_ENDPOINT_URL`) and the given name prefix.
    pub async fn open(
        &self,
        secret_prefix: &str,
        kms_key_id: Option<String>,
    ) -> Result<Arc<dyn SecretStore>, StoreError> {
        match self {
            Self::File(dir) => Ok(Arc::new(FileStore::open(dir)?)),
            Self::Aws => {
                let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
                let client = secrets_manager::client(&config);
                Ok(Arc::new(
                    SecretsManagerStore::new(client, secret_prefix).with_kms_key(kms_key_id),
                ))
            }
        }
    }
}

//! Typed access to the two stored secrets of a connection.
//!
//! Over 500 lines with its tests (about 170).

use super::{MAX_VALUE_BYTES, SecretStore, StoreError, Version};
use crate::domain::notify::WebhookSecret;
use crate::domain::records::Logged;
use crate::domain::{ConnectionId, GrantRecord, Secret, ServeRecord, VendorApp, Writer};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use time::OffsetDateTime;

/// The secrets stored per connection, split by who may read them (see
/// [`crate::domain::records`]).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, strum::Display, strum::IntoStaticStr, strum::EnumIter,
)]
#[strum(serialize_all = "snake_case")]
pub enum Part {
    /// Client secret, refresh token, pinned account: never read by an
    /// internet-facing function.
    Grant,
    /// Public app settings, access tokens, active device-key serials, status.
    Serve,
}

/// A logical secret name, without the deployment's prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecretName(String);

impl SecretName {
    pub fn of(id: &ConnectionId, part: Part) -> Self {
        Self(format!("connections/{id}/{part}"))
    }

    pub fn signing_key() -> Self {
        Self("system/signing-key".into())
    }

    /// The deployment's multi-tenant app (`roomtoken vendor-app set`).
    pub fn vendor_app() -> Self {
        Self("system/vendor-app".into())
    }

    /// The operator's webhook signing secret (`roomtoken webhook-secret`).
    pub fn webhook_secret() -> Self {
        Self("system/webhook-secret".into())
    }

    /// The value CloudFront adds to every request it sends to the API, when
    /// the stack puts a distribution in front (made by the stack).
    pub fn edge_origin() -> Self {
        Self("system/edge-origin".into())
    }

    /// The key device keys are made and checked with (made by the stack,
    /// or by the first `roomtoken` that needs it).
    pub fn device_key() -> Self {
        Self("system/device-key".into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// `system/webhook-secret`: JSON like every record, so that a later field
/// (a second secret during a rotation) reads back.
#[derive(Serialize, Deserialize)]
struct StoredWebhookSecret {
    secret: Secret,
}

#[derive(Clone, Debug)]
pub struct Versioned<T> {
    pub value: T,
    pub version: Version,
}

/// Reads and writes the connection records as JSON through a [`SecretStore`].
/// Every write appends to the record's write log and is refused, before any
/// call, when the secret has no room left in its version quota.
#[derive(Clone)]
pub struct Repository {
    store: Arc<dyn SecretStore>,
    /// Versions this process made while losing a race, by secret name:
    /// logged by its next write of that secret (see [`Repository::write`]).
    lost: Arc<Mutex<LostVersions>>,
}

/// Per secret name, who made each lost version and when.
type LostVersions = HashMap<String, Vec<(Writer, OffsetDateTime)>>;

/// The most lost versions remembered per secret (a day's quota).
const MAX_LOST_REMEMBERED: usize = 100;

/// What people's writes leave free for revocations beyond the product's
/// room: a revoked serial in the middle of a range adds one range (about 12
/// bytes), so about 170 revocations that split ranges fit before one would
/// use the product's room (a revocation that shrinks the value always fits).
const REVOCATION_ROOM: usize = 2_048;

/// How many times an update re-reads after losing a compare-and-swap race.
const MAX_CONFLICT_RETRIES: usize = 8;

impl Repository {
    pub fn new(store: Arc<dyn SecretStore>) -> Self {
        Self {
            store,
            lost: Arc::default(),
        }
    }

    fn lost(&self) -> std::sync::MutexGuard<'_, LostVersions> {
        self.lost.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The same records through `wrap`'s decorator (a pacer), sharing the
    /// memory of lost versions.
    pub fn wrapped(&self, wrap: impl FnOnce(Arc<dyn SecretStore>) -> Arc<dyn SecretStore>) -> Self {
        Self {
            store: wrap(self.store.clone()),
            lost: self.lost.clone(),
        }
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
            reason: crate::domain::secret::json_error_without_data(&e),
        })?;
        Ok(Some(Versioned {
            value,
            version: stored.version,
        }))
    }

    pub async fn grant(
        &self,
        id: &ConnectionId,
    ) -> Result<Option<Versioned<GrantRecord>>, StoreError> {
        self.load(&SecretName::of(id, Part::Grant)).await
    }

    pub async fn serve(
        &self,
        id: &ConnectionId,
    ) -> Result<Option<Versioned<ServeRecord>>, StoreError> {
        self.load(&SecretName::of(id, Part::Serve)).await
    }

    /// The deployment's vendor app, if one was set.
    pub async fn vendor_app(&self) -> Result<Option<VendorApp>, StoreError> {
        let stored = self.load(&SecretName::vendor_app()).await?;
        Ok(stored.map(|v| v.value))
    }

    /// Sets (or replaces) the vendor app: an operator's write, compare-and-
    /// swap over what was read just before.
    pub async fn set_vendor_app(&self, app: &VendorApp) -> Result<(), StoreError> {
        let name = SecretName::vendor_app();
        let current = self.load::<serde_json::Value>(&name).await?;
        self.save(&name, app, current.as_ref().map(|c| &c.version))
            .await
            .map(drop)
    }

    /// The stored webhook signing secret, if one was set.
    pub async fn webhook_secret(&self) -> Result<Option<WebhookSecret>, StoreError> {
        let name = SecretName::webhook_secret();
        let Some(stored) = self.load::<StoredWebhookSecret>(&name).await? else {
            return Ok(None);
        };
        WebhookSecret::parse(stored.value.secret.expose())
            .map(Some)
            .map_err(|e| StoreError::Corrupt {
                name: name.as_str().to_owned(),
                reason: e.to_string(),
            })
    }

    /// Sets (or replaces) the webhook signing secret.
    pub async fn set_webhook_secret(&self, secret: &WebhookSecret) -> Result<(), StoreError> {
        let name = SecretName::webhook_secret();
        let current = self.load::<serde_json::Value>(&name).await?;
        let stored = StoredWebhookSecret {
            secret: Secret::new(secret.expose()),
        };
        self.save(&name, &stored, current.as_ref().map(|c| &c.version))
            .await
            .map(drop)
    }

    /// Whether a value of `bytes` fits for `writer`. The product's writes
    /// and revocations (which always have room) may fill a secret; everyone
    /// else must leave free what a refresh may add (the record's
    /// [`Logged::product_room`]) and [`REVOCATION_ROOM`] besides.
    fn fits(
        name: &SecretName,
        bytes: usize,
        product_room: usize,
        writer: Writer,
    ) -> Result<(), StoreError> {
        let limit = match writer {
            Writer::Product | Writer::Revocation => MAX_VALUE_BYTES,
            Writer::Person | Writer::Internet => MAX_VALUE_BYTES
                .saturating_sub(product_room)
                .saturating_sub(REVOCATION_ROOM),
        };
        if bytes > limit {
            return Err(StoreError::TooLarge {
                name: name.as_str().to_owned(),
                bytes,
                limit,
            });
        }
        Ok(())
    }

    async fn save<T: Serialize>(
        &self,
        name: &SecretName,
        value: &T,
        expected: Option<&Version>,
    ) -> Result<Version, StoreError> {
        let json = to_json(name, value)?;
        self.store.put(name.as_str(), &json, expected).await
    }

    /// Writes `value` over the version `expected` (compare-and-swap; `None`:
    /// the secret must not exist yet), recording the write in its log.
    pub async fn write<T: Serialize + Logged>(
        &self,
        id: &ConnectionId,
        part: Part,
        value: &mut T,
        expected: Option<&Version>,
        writer: Writer,
        now: OffsetDateTime,
    ) -> Result<Version, StoreError> {
        let name = SecretName::of(id, part);
        if let Some(retry_at) = value.writes().room_for(writer, now) {
            return Err(StoreError::WriteQuota {
                name: name.as_str().to_owned(),
                retry_at,
            });
        }
        // On Secrets Manager a write that lost a race had already made its
        // version: this write logs those (after the room check: they exist
        // whether this one is made or not), so that the log never holds
        // fewer versions than the secret got from this process.
        let lost = self.lost().remove(name.as_str()).unwrap_or_default();
        for (by, at) in &lost {
            value.writes_mut().record(*by, *at);
        }
        // Without a version quota the product's writes need no counting
        // (and would only fill the log).
        if writer != Writer::Product || self.store.counts_versions() {
            value.writes_mut().record(writer, now);
        }
        let result = match to_json(&name, value) {
            Ok(json) => match Self::fits(&name, json.len(), value.product_room(), writer) {
                Ok(()) => self.store.put(name.as_str(), &json, expected).await,
                Err(e) => Err(e),
            },
            Err(e) => Err(e),
        };
        if let Err(e) = &result {
            let mut pending = lost;
            if matches!(e, StoreError::Conflict(_))
                && expected.is_some()
                && self.store.losing_write_makes_version()
            {
                pending.push((writer, now));
            }
            if !pending.is_empty() {
                let skip = pending.len().saturating_sub(MAX_LOST_REMEMBERED);
                let mut lost = self.lost();
                let entry = lost.entry(name.as_str().to_owned()).or_default();
                entry.extend(pending.into_iter().skip(skip));
            }
        }
        result
    }

    /// Read-modify-write with compare-and-swap, re-reading on conflict.
    /// `change` returns `None` to leave the record as it is (no write).
    pub async fn update<T, F>(
        &self,
        id: &ConnectionId,
        part: Part,
        writer: Writer,
        now: OffsetDateTime,
        mut change: F,
    ) -> Result<Option<T>, StoreError>
    where
        T: Serialize + DeserializeOwned + Logged,
        F: FnMut(Option<T>) -> Option<T>,
    {
        let name = SecretName::of(id, part);
        for _ in 0..MAX_CONFLICT_RETRIES {
            let current = self.load::<T>(&name).await?;
            let version = current.as_ref().map(|c| c.version.clone());
            let Some(mut next) = change(current.map(|c| c.value)) else {
                return Ok(None);
            };
            match self
                .write(id, part, &mut next, version.as_ref(), writer, now)
                .await
            {
                Ok(_) => return Ok(Some(next)),
                Err(StoreError::Conflict(_)) => continue,
                Err(other) => return Err(other),
            }
        }
        Err(StoreError::Conflict(name.as_str().to_owned()))
    }

    /// Removes both secrets; the serve secret (which makes the connection
    /// listed) goes last, so that a failure halfway leaves it visible and a
    /// second `remove` finishes the job.
    pub async fn delete_connection(&self, id: &ConnectionId) -> Result<(), StoreError> {
        self.store
            .delete(SecretName::of(id, Part::Grant).as_str())
            .await?;
        self.store
            .delete(SecretName::of(id, Part::Serve).as_str())
            .await
    }

    /// Every connection that has a serve secret, sorted.
    pub async fn connection_ids(&self) -> Result<Vec<ConnectionId>, StoreError> {
        let names = self.store.list("connections/").await?;
        let mut ids: Vec<ConnectionId> = names.iter().filter_map(|n| serve_secret_of(n)).collect();
        ids.sort();
        ids.dedup();
        Ok(ids)
    }

    /// Every connection that has a serve secret, sorted, with the change
    /// mark of that secret when the store lists one (same single listing).
    pub async fn connections_marked(
        &self,
    ) -> Result<Vec<(ConnectionId, Option<String>)>, StoreError> {
        let listed = self.store.list_marked("connections/").await?;
        let mut ids: Vec<(ConnectionId, Option<String>)> = listed
            .into_iter()
            .filter_map(|l| Some((serve_secret_of(&l.name)?, l.changed)))
            .collect();
        ids.sort_by(|a, b| a.0.cmp(&b.0));
        ids.dedup_by(|a, b| a.0 == b.0);
        Ok(ids)
    }
}

/// The connection whose serve secret `name` is.
fn serve_secret_of(name: &str) -> Option<ConnectionId> {
    let rest = name.strip_prefix("connections/")?;
    let (id, part) = rest.split_once('/')?;
    (part == <&str>::from(Part::Serve)).then(|| ConnectionId::parse(id).ok())?
}

fn to_json<T: Serialize>(name: &SecretName, value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Corrupt {
        name: name.as_str().to_owned(),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{GrantRecord, Secret, Writer};
    use crate::store::{FileStore, Stored};
    use std::sync::atomic::{AtomicU32, Ordering};

    /// A store where the first `races` writes over a version lose to
    /// another writer, after making their version when `makes_versions`
    /// (as on Secrets Manager).
    struct Racing {
        inner: FileStore,
        races: AtomicU32,
        versions_made: AtomicU32,
        makes_versions: bool,
    }

    #[async_trait::async_trait]
    impl SecretStore for Racing {
        fn losing_write_makes_version(&self) -> bool {
            self.makes_versions
        }
        async fn get(&self, name: &str) -> Result<Option<Stored>, StoreError> {
            self.inner.get(name).await
        }
        async fn put(
            &self,
            name: &str,
            value: &str,
            prior: Option<&Version>,
        ) -> Result<Version, StoreError> {
            let lose = prior.is_some()
                && self
                    .races
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                    .is_ok();
            if lose {
                if self.makes_versions {
                    self.versions_made.fetch_add(1, Ordering::SeqCst);
                }
                return Err(StoreError::Conflict(name.to_owned()));
            }
            self.versions_made.fetch_add(1, Ordering::SeqCst);
            self.inner.put(name, value, prior).await
        }
        async fn delete(&self, name: &str) -> Result<(), StoreError> {
            self.inner.delete(name).await
        }
        async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
            self.inner.list(prefix).await
        }
    }

    /// Two lost races and the winning write: on a store where losers
    /// make versions, three versions and three entries in the write log
    /// (which is what the quota reads); elsewhere one and one.
    #[tokio::test]
    async fn versions_of_lost_races_are_counted_by_the_winning_write() {
        for (makes_versions, versions) in [(true, 3), (false, 1)] {
            lost_races(makes_versions, versions).await;
        }
    }

    /// A write that lost its race and was not tried again (a refresh that
    /// lost to a new consent): the process's next write of that secret
    /// logs its version.
    #[tokio::test]
    async fn a_lost_version_is_logged_by_the_next_write_of_the_secret() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Arc::new(Racing {
            inner: FileStore::open(dir.path()).expect("file store"),
            races: AtomicU32::new(0),
            versions_made: AtomicU32::new(0),
            makes_versions: true,
        });
        let repo = Repository::new(store.clone());
        let id = ConnectionId::parse("contoso").expect("id");
        let now = OffsetDateTime::UNIX_EPOCH + time::Duration::days(20_000);
        let mut record = GrantRecord::new(Secret::new("s"));
        let first = repo
            .write(&id, Part::Grant, &mut record, None, Writer::Person, now)
            .await
            .expect("created");
        store.races.store(1, Ordering::SeqCst);
        let mut lost = record.clone();
        let refused = repo
            .write(
                &id,
                Part::Grant,
                &mut lost,
                Some(&first),
                Writer::Product,
                now,
            )
            .await;
        assert!(
            matches!(refused, Err(StoreError::Conflict(_))),
            "{refused:?}"
        );
        let later = now + time::Duration::minutes(10);
        let written = repo
            .update::<GrantRecord, _>(&id, Part::Grant, Writer::Person, later, |r| r)
            .await
            .expect("written")
            .expect("a record");
        assert_eq!(store.versions_made.load(Ordering::SeqCst), 3);
        assert_eq!(written.writes().last_hour(later), 3, "every version logged");
        assert!(repo.lost().is_empty(), "nothing left to log");
    }

    async fn lost_races(makes_versions: bool, versions: usize) {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Arc::new(Racing {
            inner: FileStore::open(dir.path()).expect("file store"),
            races: AtomicU32::new(0),
            versions_made: AtomicU32::new(0),
            makes_versions,
        });
        let repo = Repository::new(store.clone());
        let id = ConnectionId::parse("contoso").expect("id");
        let now = OffsetDateTime::UNIX_EPOCH + time::Duration::days(20_000);
        let mut record = GrantRecord::new(Secret::new("s"));
        repo.write(&id, Part::Grant, &mut record, None, Writer::Person, now)
            .await
            .expect("created");
        store.versions_made.store(0, Ordering::SeqCst);
        store.races.store(2, Ordering::SeqCst);
        let written = repo
            .update::<GrantRecord, _>(&id, Part::Grant, Writer::Product, now, |r| r)
            .await
            .expect("written at the third try")
            .expect("a record");
        assert_eq!(
            store.versions_made.load(Ordering::SeqCst) as usize,
            versions
        );
        assert_eq!(
            written.writes().last_hour(now),
            1 + versions,
            "the creation and the versions of the update"
        );
        let stored = repo.grant(&id).await.expect("read").expect("a record");
        assert_eq!(stored.value.writes, written.writes);
    }

    /// A record of the wrong shape (a version skew, a hand edit) is
    /// reported without the values in it, which may be secrets.
    #[tokio::test]
    async fn a_corrupt_record_is_reported_without_its_values() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Arc::new(FileStore::open(dir.path()).expect("file store"));
        let id = ConnectionId::parse("contoso").expect("id");
        let name = SecretName::of(&id, Part::Grant);
        let refresh_token = "0.AAAA-a-refresh-token-in-the-wrong-place";
        store
            .put(
                name.as_str(),
                &format!(r#"{{"client_secret": "s", "grant": "{refresh_token}"}}"#),
                None,
            )
            .await
            .expect("put");
        let repo = Repository::new(store);
        let error = repo.grant(&id).await.expect_err("corrupt");
        assert!(matches!(error, StoreError::Corrupt { .. }), "{error}");
        assert!(!error.to_string().contains(refresh_token), "{error}");
        assert!(!format!("{error:?}").contains(refresh_token), "{error:?}");
    }
}

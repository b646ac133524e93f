//! The broker: configuration, the two ports, the clock, the token-read cache,
//! and the keys derived from the system signing key. Every flow takes a
//! `&Broker`.

use crate::cache::{DEFAULT_CAPACITY, TtlCache};

/// Made-up connection ids remembered at once (each is an empty snapshot).
const UNKNOWN_CAPACITY: usize = 256;
use crate::clock::{Clock, SystemClock};
use crate::clock::{Sleeper, TokioSleeper};
use crate::config::Config;
use crate::crypto::{SigningKeys, generate_signing_key};
use crate::domain::notify::WebhookSecret;
use crate::domain::{ConnectionId, DeviceKeySigner, Secret};
use crate::identity::{IdentityError, IdentityProvider, OAuthClient};
use crate::read_metrics::ReadMetrics;
use crate::snapshot::ReadCache;
use crate::store::{Repository, SecretName, SecretStore, StoreError};
use crate::webhook::{HttpWebhookSender, WebhookSender};
use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};
use time::OffsetDateTime;
use tokio::sync::OnceCell;
use url::Url;

pub struct Broker {
    pub repo: Repository,
    pub identity: Arc<dyn IdentityProvider>,
    pub config: Config,
    pub sleeper: Arc<dyn Sleeper>,
    /// Sends the notifications of `config.webhook_url`.
    pub webhooks: Arc<dyn WebhookSender>,
    /// token-read's counts, printed as EMF under Lambda.
    pub read_metrics: ReadMetrics,
    clock: Arc<dyn Clock>,
    /// What token-read read from the store, kept `config.read_cache_ttl`.
    pub(crate) read_cache: ReadCache,
    /// Connection ids that do not exist, kept apart so that made-up ids
    /// never take the place of real connections in `read_cache`.
    pub(crate) unknown_cache: ReadCache,
    keys: OnceCell<SigningKeys>,
    device_keys: OnceCell<DeviceKeySigner>,
    edge_origin: OnceCell<Secret>,
    /// What this process's refresh passes found with nothing to do, and
    /// until when that holds.
    pub surveys: crate::survey_memory::SurveyMemory,
    /// Connections this process is refreshing right now: a second pass in
    /// the same process leaves them alone instead of redeeming the same
    /// refresh token again.
    refreshing: Mutex<HashSet<ConnectionId>>,
    /// Notifications this process delivered whose outbox entry is not yet
    /// written down (the quota was kept for refreshes), newest last.
    delivered: Mutex<std::collections::VecDeque<String>>,
    /// Notifications whose failed attempts are not yet written down either:
    /// how many failed here, and no attempt before when.
    held_back: Mutex<std::collections::HashMap<String, (u32, OffsetDateTime)>>,
}

/// Delivered notifications remembered at once, at most.
const DELIVERED_CAPACITY: usize = 4_096;

/// This process's claim on refreshing one connection, given back on drop.
pub struct RefreshClaim<'a> {
    broker: &'a Broker,
    id: ConnectionId,
}

impl Drop for RefreshClaim<'_> {
    fn drop(&mut self) {
        self.broker.refreshing_set().remove(&self.id);
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Identity(#[from] IdentityError),
    #[error(
        "ROOMTOKEN_PUBLIC_URL is not set: it is needed to build consent links and the redirect URI"
    )]
    NoPublicUrl,
}

impl Broker {
    pub fn new(
        store: Arc<dyn SecretStore>,
        identity: Arc<dyn IdentityProvider>,
        config: Config,
    ) -> Self {
        let read_cache = TtlCache::new(config.read_cache_ttl, DEFAULT_CAPACITY);
        let unknown_cache = TtlCache::new(config.read_cache_ttl, UNKNOWN_CAPACITY);
        Self {
            repo: Repository::new(store),
            identity,
            webhooks: Arc::new(HttpWebhookSender::new(config.webhook_timeout)),
            read_metrics: ReadMetrics::default(),
            config,
            sleeper: Arc::new(TokioSleeper),
            clock: Arc::new(SystemClock),
            read_cache,
            unknown_cache,
            keys: OnceCell::new(),
            device_keys: OnceCell::new(),
            edge_origin: OnceCell::new(),
            surveys: Default::default(),
            refreshing: Mutex::new(HashSet::new()),
            delivered: Mutex::default(),
            held_back: Mutex::default(),
        }
    }

    /// What the status must say of tokens that live `lifetime` on this
    /// broker's store: `None` when it keeps them fresh.
    pub fn judge_token_lifetime(
        &self,
        lifetime: Option<std::time::Duration>,
    ) -> Option<crate::domain::status::ShortTokens> {
        let counts_versions = self.repo.store().counts_versions();
        let kept_fresh =
            crate::domain::access::shortest_kept_fresh(counts_versions, self.config.refresh_margin);
        crate::domain::status::ShortTokens::judge(lifetime?, kept_fresh, counts_versions)
    }

    fn refreshing_set(&self) -> std::sync::MutexGuard<'_, HashSet<ConnectionId>> {
        // The set is consistent after every statement: a panic elsewhere
        // cannot leave it half-changed.
        self.refreshing
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Claims the refresh of `id` in this process; `None` when another
    /// pass of this process holds it.
    pub fn claim_refresh(&self, id: &ConnectionId) -> Option<RefreshClaim<'_>> {
        self.refreshing_set()
            .insert(id.clone())
            .then(|| RefreshClaim {
                broker: self,
                id: id.clone(),
            })
    }

    /// The same broker counting token reads for EMF (Lambda functions).
    pub fn with_read_metrics(mut self, metrics: ReadMetrics) -> Self {
        self.read_metrics = metrics;
        self
    }

    pub fn with_sleeper(mut self, sleeper: Arc<dyn Sleeper>) -> Self {
        self.sleeper = sleeper;
        self
    }

    /// The same broker reading the time from `clock` (tests drive one).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    pub fn now(&self) -> OffsetDateTime {
        self.clock.now()
    }

    /// Whether this process delivered notification `id` already.
    pub(crate) fn was_delivered(&self, id: &str) -> bool {
        let delivered = self
            .delivered
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        delivered.iter().any(|d| d == id)
    }

    pub(crate) fn remember_delivered(&self, ids: &[String]) {
        let mut delivered = self
            .delivered
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for id in ids {
            if !delivered.contains(id) {
                delivered.push_back(id.clone());
            }
        }
        let excess = delivered.len().saturating_sub(DELIVERED_CAPACITY);
        delivered.drain(..excess);
    }

    pub(crate) fn forget_delivered(&self, ids: &[String]) {
        let mut delivered = self
            .delivered
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        delivered.retain(|d| !ids.contains(d));
    }

    /// When a notification whose failures this process could not write
    /// down may be tried again, if it is held back.
    pub(crate) fn held_back_until(&self, id: &str) -> Option<OffsetDateTime> {
        let held = self
            .held_back
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        held.get(id).map(|(_, until)| *until)
    }

    /// One more failed attempt at notification `id`, which its outbox
    /// records as `stored_attempts`: it backs off on
    /// [`crate::domain::notify::RETRY_WAITS`] counting both.
    pub(crate) fn remember_failed(&self, id: &str, stored_attempts: u32, now: OffsetDateTime) {
        use crate::domain::notify::RETRY_WAITS;
        let mut held = self
            .held_back
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if held.len() >= DELIVERED_CAPACITY && !held.contains_key(id) {
            return;
        }
        let failures = held.get(id).map_or(0, |(n, _)| *n) + 1;
        let index = (stored_attempts + failures - 1) as usize;
        let wait = RETRY_WAITS[index.min(RETRY_WAITS.len() - 1)];
        held.insert(id.to_owned(), (failures, now + wait));
    }

    /// The outbox recorded these notifications' attempts.
    pub(crate) fn forget_failed(&self, ids: &[String]) {
        let mut held = self
            .held_back
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for id in ids {
            held.remove(id);
        }
    }

    /// Whether changes of state are queued for the operator's webhook.
    pub fn notifies(&self) -> bool {
        self.config.webhook_url.is_some()
    }

    /// The webhook signing secret: the environment's, else the stored one.
    pub async fn webhook_secret(&self) -> Result<Option<WebhookSecret>, StoreError> {
        if let Some(secret) = &self.config.webhook_secret {
            return Ok(Some(secret.clone()));
        }
        self.repo.webhook_secret().await
    }

    /// The value CloudFront adds to every request as the origin header
    /// (`system/edge-origin`, made by the stack), read once per process.
    /// Missing, it is an error: an edge-only broker then answers nothing.
    pub async fn edge_origin_secret(&self) -> Result<&Secret, StoreError> {
        self.edge_origin
            .get_or_try_init(|| async {
                let name = SecretName::edge_origin();
                let stored = self.repo.store().get(name.as_str()).await?;
                match stored {
                    Some(stored) if stored.value.trim().len() >= 16 => {
                        Ok(Secret::new(stored.value.trim()))
                    }
                    _ => Err(StoreError::Unavailable(
                        "the edge origin secret (system/edge-origin) is missing or too short"
                            .into(),
                    )),
                }
            })
            .await
    }

    /// The clock the broker reads, for the parts that pace themselves.
    pub fn clock(&self) -> Arc<dyn Clock> {
        self.clock.clone()
    }

    /// Opens the configured store and the real identity client.
    pub async fn from_config(config: Config) -> Result<Self, BrokerError> {
        let store = config
            .store
            .open(&config.secret_prefix, config.kms_key_id.clone())
            .await?;
        let identity = Arc::new(OAuthClient::new(config.http_timeout)?);
        Ok(Self::new(store, identity, config))
    }

    /// The keys derived from `system/signing-key`, created on first use where
    /// missing (the SAM template creates it in AWS, as a plain string from
    /// `GenerateSecretString`, which is also how it is stored here).
    pub async fn signing_keys(&self) -> Result<&SigningKeys, StoreError> {
        self.keys
            .get_or_try_init(|| async {
                let key = self.system_key(SecretName::signing_key()).await?;
                Ok(SigningKeys::from_signing_key(&key))
            })
            .await
    }

    /// What makes and checks device keys, from `system/device-key`: read
    /// once per process (token-read reads it at its cold start), created on
    /// first use where missing, as the signing key is.
    pub async fn device_key_signer(&self) -> Result<&DeviceKeySigner, StoreError> {
        self.device_keys
            .get_or_try_init(|| async {
                let key = self.system_key(SecretName::device_key()).await?;
                Ok(DeviceKeySigner::from_stored(&key))
            })
            .await
    }

    /// A system key of at least 256 bits, made here if it does not exist yet
    /// (when two processes race, both use the one written first).
    async fn system_key(&self, name: SecretName) -> Result<Secret, StoreError> {
        let store = self.repo.store();
        if let Some(existing) = store.get(name.as_str()).await? {
            return key_from_stored(&name, &existing.value);
        }
        let generated = generate_signing_key();
        match store.put(name.as_str(), generated.expose(), None).await {
            // Ours, as written: a read right after a write may not see it
            // yet (Secrets Manager is eventually consistent).
            Ok(_) => return key_from_stored(&name, generated.expose()),
            // Someone else created it first: theirs, once a read sees it.
            Err(StoreError::Conflict(_)) => {}
            Err(e) => return Err(e),
        }
        for wait in SYSTEM_KEY_READ_WAITS {
            if let Some(stored) = store.get(name.as_str()).await? {
                return key_from_stored(&name, &stored.value);
            }
            self.sleeper.sleep(wait).await;
        }
        Err(StoreError::Unavailable(format!(
            "{} exists but cannot be read yet",
            name.as_str()
        )))
    }

    pub fn public_url(&self) -> Result<&Url, BrokerError> {
        self.config
            .public_url
            .as_ref()
            .ok_or(BrokerError::NoPublicUrl)
    }

    /// Whether the public URL is https: cookies are then `Secure` and
    /// `__Secure-` prefixed, and pages carry `Strict-Transport-Security`.
    pub fn is_https(&self) -> bool {
        self.public_url().is_ok_and(|url| url.scheme() == "https")
    }

    /// `{public_url}/callback`: the redirect URI to register in the app.
    pub fn redirect_uri(&self) -> Result<Url, BrokerError> {
        Ok(join(self.public_url()?, "callback"))
    }

    /// A step of a link already signed (`invite`): `{public_url}/connect/{id}
    /// ?invite=…&step=sign-in` or `admin-consent`.
    pub fn link_step(
        &self,
        id: &ConnectionId,
        invite: &str,
        step: &str,
    ) -> Result<Url, BrokerError> {
        let mut url = join(self.public_url()?, &format!("connect/{id}"));
        url.query_pairs_mut()
            .append_pair("invite", invite)
            .append_pair("step", step);
        Ok(url)
    }

    /// The signed consent link of a connection, valid until `expires_at`
    /// and while its link generation is `generation`.
    pub async fn consent_link(
        &self,
        id: &ConnectionId,
        expires_at: OffsetDateTime,
        generation: u32,
    ) -> Result<Url, BrokerError> {
        let mut url = join(self.public_url()?, &format!("connect/{id}"));
        let invite = self
            .signing_keys()
            .await?
            .sign_invite(id, expires_at, generation);
        url.query_pairs_mut().append_pair("invite", &invite);
        Ok(url)
    }
}

/// The waits between reads of a system key that another process created at
/// the same moment, until a read sees it.
const SYSTEM_KEY_READ_WAITS: [std::time::Duration; 4] = [
    std::time::Duration::from_millis(250),
    std::time::Duration::from_millis(500),
    std::time::Duration::from_secs(1),
    std::time::Duration::from_secs(2),
];

/// A stored system key, which must carry at least 256 bits.
fn key_from_stored(name: &SecretName, stored: &str) -> Result<Secret, StoreError> {
    let key = stored.trim();
    if key.len() < 32 {
        return Err(StoreError::Corrupt {
            name: name.as_str().to_owned(),
            reason: "the key is shorter than 32 characters".into(),
        });
    }
    Ok(Secret::new(key))
}

/// Appends a path to a base URL whether or not the base ends with `/`.
fn join(base: &Url, path: &str) -> Url {
    let mut url = base.clone();
    let joined = format!("{}/{path}", base.path().trim_end_matches('/'));
    url.set_path(&joined);
    url.set_query(None);
    url
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{FileStore, StoreSpec};

    fn broker(dir: &std::path::Path) -> Broker {
        let store = Arc::new(FileStore::open(dir).unwrap());
        let identity = Arc::new(OAuthClient::new(std::time::Duration::from_secs(1)).unwrap());
        let mut config = Config::new(StoreSpec::File(dir.to_owned()));
        config.public_url = Some("https://tokens.example.com".parse().unwrap());
        Broker::new(store, identity, config)
    }

    #[tokio::test]
    async fn the_signing_key_is_created_once_and_read_as_the_template_writes_it() {
        let dir = tempfile::tempdir().unwrap();
        let id = ConnectionId::parse("contoso").unwrap();
        let expires = OffsetDateTime::now_utc() + time::Duration::days(1);
        let link = broker(dir.path())
            .consent_link(&id, expires, 0)
            .await
            .unwrap();
        // A second process reads the same key: the link still verifies.
        let other = broker(dir.path());
        let invite = link.query_pairs().find(|(k, _)| k == "invite").unwrap().1;
        assert!(
            other
                .signing_keys()
                .await
                .unwrap()
                .verify_invite(&id, &invite, OffsetDateTime::now_utc())
                .is_ok()
        );
        assert_eq!(link.path(), "/connect/contoso");

        // What GenerateSecretString writes: a plain string.
        let raw = tempfile::tempdir().unwrap();
        let store = FileStore::open(raw.path()).unwrap();
        let template_key = "Zq8vN3xK1mP7rT2wY5aB9cD4eF6gH0jL2nQ4sU6v";
        crate::store::SecretStore::put(&store, "system/signing-key", template_key, None)
            .await
            .unwrap();
        let keys = broker(raw.path()).signing_keys().await.unwrap().clone();
        let expected = SigningKeys::from_signing_key(&Secret::new(template_key));
        let invite = expected.sign_invite(&id, expires, 0);
        assert!(
            keys.verify_invite(&id, &invite, OffsetDateTime::now_utc())
                .is_ok()
        );
    }

    #[test]
    fn join_handles_bases_with_and_without_paths() {
        let base: Url = "https://x.example/stage/".parse().unwrap();
        assert_eq!(
            join(&base, "callback").as_str(),
            "https://x.example/stage/callback"
        );
        let root: Url = "http://127.0.0.1:8080".parse().unwrap();
        assert_eq!(
            join(&root, "connect/a").as_str(),
            "http://127.0.0.1:8080/connect/a"
        );
    }
}

//! The broker: configuration, the two ports, the clock, the token-read cache,
//! and the keys derived from the system signing key. Every flow takes a
//! `&Broker`.

use crate::cache::{DEFAULT_CAPACITY, TtlCache};
use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::crypto::{Keys, generate_signing_key};
use crate::domain::{ConnectionId, Secret};
use crate::flows::read::ReadCache;
use crate::identity::{IdentityError, IdentityProvider, OAuthClient};
use crate::store::{Repository, SecretName, SecretStore, StoreError};
use std::sync::Arc;
use time::OffsetDateTime;
use tokio::sync::OnceCell;
use url::Url;

pub struct Broker {
    pub repo: Repository,
    pub identity: Arc<dyn IdentityProvider>,
    pub config: Config,
    clock: Arc<dyn Clock>,
    /// What token-read read from the store, kept `config.read_cache_ttl`.
    pub(crate) read_cache: ReadCache,
    keys: OnceCell<Keys>,
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
        Self {
            repo: Repository::new(store),
            identity,
            config,
            clock: Arc::new(SystemClock),
            read_cache,
            keys: OnceCell::new(),
        }
    }

    /// The same broker reading the time from `clock` (tests drive one).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    pub fn now(&self) -> OffsetDateTime {
        self.clock.now()
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
    /// missing (the SAM template creates it in AWS).
    pub async fn keys(&self) -> Result<&Keys, StoreError> {
        self.keys
            .get_or_try_init(|| async {
                let name = SecretName::signing_key();
                if let Some(existing) = self.repo.load::<Secret>(&name).await? {
                    return Ok(Keys::from_signing_key(&existing.value));
                }
                match self.repo.save(&name, &generate_signing_key(), None).await {
                    Ok(_) => {}
                    // Someone else created it first: use theirs.
                    Err(StoreError::Conflict(_)) => {}
                    Err(e) => return Err(e),
                }
                let stored = self.repo.load::<Secret>(&name).await?.ok_or_else(|| {
                    StoreError::Unavailable("the signing key vanished after it was written".into())
                })?;
                Ok(Keys::from_signing_key(&stored.value))
            })
            .await
    }

    pub fn public_url(&self) -> Result<&Url, BrokerError> {
        self.config
            .public_url
            .as_ref()
            .ok_or(BrokerError::NoPublicUrl)
    }

    /// `{public_url}/callback`: the redirect URI to register in the app.
    pub fn redirect_uri(&self) -> Result<Url, BrokerError> {
        Ok(join(self.public_url()?, "callback"))
    }

    /// The signed consent link of a connection, valid until `expires_at`.
    pub async fn consent_link(
        &self,
        id: &ConnectionId,
        expires_at: OffsetDateTime,
    ) -> Result<Url, BrokerError> {
        let mut url = join(self.public_url()?, &format!("connect/{id}"));
        let invite = self.keys().await?.sign_invite(id, expires_at);
        url.query_pairs_mut().append_pair("invite", &invite);
        Ok(url)
    }
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

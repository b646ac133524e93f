//! The broker: configuration, the two ports, and the keys derived from the
//! system signing key. Every flow takes a `&Broker`.

use crate::config::Config;
use crate::crypto::{Keys, generate_signing_key};
use crate::domain::{ConnectionId, Secret};
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
        Self {
            repo: Repository::new(store),
            identity,
            config,
            keys: OnceCell::new(),
        }
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
                if let Some(existing) = self.load_signing_key(&name).await? {
                    return Ok(Keys::from_signing_key(&existing));
                }
                match self.repo.save(&name, &generate_signing_key(), None).await {
                    Ok(_) => {}
                    // Someone else created it first: use theirs.
                    Err(StoreError::Conflict(_)) => {}
                    Err(e) => return Err(e),
                }
                let stored = self.load_signing_key(&name).await?.ok_or_else(|| {
                    StoreError::Unavailable("the signing key vanished after it was written".into())
                })?;
                Ok(Keys::from_signing_key(&stored))
            })
            .await
    }

    async fn load_signing_key(&self, name: &SecretName) -> Result<Option<Secret>, StoreError> {
        let Some(stored) = self.repo.store().get(name.as_str()).await? else {
            return Ok(None);
        };
        parse_signing_key(&stored.value)
            .map(Some)
            .ok_or_else(|| StoreError::Corrupt {
                name: name.as_str().to_owned(),
                reason: format!(
                    "a signing key is a JSON string or at least {MIN_SIGNING_KEY_CHARS} plain characters"
                ),
            })
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

/// The shortest signing key taken as it is (a 64-character one is what the
/// SAM template generates; `roomtoken` generates 256 random bits).
const MIN_SIGNING_KEY_CHARS: usize = 32;

/// The signing key as stored: a JSON string where `roomtoken` wrote it, or
/// the plain characters that Secrets Manager's `GenerateSecretString` (the
/// SAM template) writes.
fn parse_signing_key(stored: &str) -> Option<Secret> {
    let trimmed = stored.trim();
    if trimmed.starts_with('"') {
        return serde_json::from_str::<Secret>(trimmed)
            .ok()
            .filter(|key| !key.is_empty());
    }
    (trimmed.chars().count() >= MIN_SIGNING_KEY_CHARS).then(|| Secret::new(trimmed))
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
    fn signing_key_is_read_as_roomtoken_or_the_template_writes_it() {
        let generated = "AbCdEfGhIjKlMnOpQrStUvWxYz0123456789AbCdEfGhIjKlMnOpQrStUvWxYz01";
        assert_eq!(
            parse_signing_key(generated).map(|k| k.expose().to_owned()),
            Some(generated.to_owned()),
            "GenerateSecretString writes plain characters"
        );
        assert_eq!(
            parse_signing_key("\"c2lnbmluZy1rZXk\"").map(|k| k.expose().to_owned()),
            Some("c2lnbmluZy1rZXk".to_owned()),
            "roomtoken writes a JSON string"
        );
        for bad in ["", "short", "\"\"", "\"unterminated", "{\"key\": 1}"] {
            assert!(parse_signing_key(bad).is_none(), "{bad:?}");
        }
    }

    #[tokio::test]
    async fn a_signing_key_generated_by_the_template_signs_links() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn SecretStore> =
            Arc::new(crate::store::FileStore::open(dir.path()).unwrap());
        let plain = "q8W3e5R7t9Y1u3I5o7P9a1S3d5F7g9H1j3K5l7Z9x1C3v5B7n9M1q3W5e7R9t1Y3";
        store
            .put(SecretName::signing_key().as_str(), plain, None)
            .await
            .unwrap();
        let mut config = Config::new(crate::store::StoreSpec::File(dir.path().into()));
        config.public_url = Some("https://tokens.example.com".parse().unwrap());
        let identity = Arc::new(OAuthClient::new(config.http_timeout).unwrap());
        let broker = Broker::new(store.clone(), identity, config);

        let id = ConnectionId::parse("contoso").unwrap();
        let expires_at = OffsetDateTime::now_utc() + time::Duration::hours(1);
        let link = broker.consent_link(&id, expires_at).await.unwrap();
        let invite = link
            .query_pairs()
            .find(|(k, _)| k == "invite")
            .map(|(_, v)| v.into_owned())
            .unwrap();
        Keys::from_signing_key(&Secret::new(plain))
            .verify_invite(&id, &invite, OffsetDateTime::now_utc())
            .expect("the link is signed with the stored key, taken as it is");
        let stored = store.get(SecretName::signing_key().as_str()).await.unwrap();
        assert_eq!(stored.unwrap().value, plain, "the key is not rewritten");
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

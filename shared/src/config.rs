//! Configuration shared by every entry point, read from the environment
//! (which the SAM template sets) with the defaults the README lists (*Configuration*).

use crate::domain::notify::{BadWebhookSecret, WebhookSecret};
use crate::domain::retry::RetryPolicy;
use crate::store::StoreSpec;
use std::time::Duration;
use url::Url;

#[derive(Clone, Debug)]
pub struct Config {
    pub store: StoreSpec,
    /// Prefix of every Secrets Manager secret name.
    pub secret_prefix: String,
    /// External base URL: the redirect URI is `{it}/callback`.
    pub public_url: Option<Url>,
    /// Refresh when less than this is left.
    pub refresh_margin: Duration,
    /// Connections refreshed at once in a pass.
    pub refresh_concurrency: usize,
    /// A pass starts no retry that would end after this; it must end well
    /// within the refresh function's timeout.
    pub refresh_budget: Duration,
    /// Backoff of transient failures inside a pass.
    pub retry: RetryPolicy,
    /// Timeout of one request to the identity provider.
    pub http_timeout: Duration,
    /// Customer-managed KMS key for new secrets (Secrets Manager only).
    pub kms_key_id: Option<String>,
    /// How long token-read keeps what it read from the store; zero: no cache.
    /// A revoked device key keeps working at most this long. Two minutes:
    /// a display that polls every few seconds costs one GetSecretValue per
    /// TTL, and at one minute that alone was $0.22 a connection-month.
    pub read_cache_ttl: Duration,
    /// Write calls per second a refresh pass may send to the store; `None`:
    /// unpaced (the file store's default).
    pub write_budget: Option<u32>,
    /// Where changes of state are sent (Standard Webhooks); `None`: not sent.
    pub webhook_url: Option<Url>,
    /// The webhook signing secret from the environment; without it, the
    /// system secret `system/webhook-secret` (`roomtoken webhook-secret`).
    pub webhook_secret: Option<WebhookSecret>,
    /// Timeout of one delivery to the webhook.
    pub webhook_timeout: Duration,
    /// How often token-read prints its counts (EMF, Lambda only).
    pub read_metrics_every: Duration,
    /// Answer only requests that came through the stack's CloudFront
    /// distribution (`ROOMTOKEN_EDGE_ONLY=true`): each must carry the
    /// origin header whose value is the system secret `system/edge-origin`.
    pub edge_only: bool,
    /// Accept device keys made before keys authenticated themselves
    /// (`ROOMTOKEN_LEGACY_DEVICE_KEYS=accept`): each such key is checked
    /// against the store, so made-up keys of that shape cost a read again.
    pub accept_legacy_keys: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("ROOMTOKEN_STORE: {0}")]
    Store(String),
    #[error(
        "ROOMTOKEN_PUBLIC_URL must be an absolute https URL, for example https://tokens.example.com (http only on loopback: codes, invites and device keys travel to it)"
    )]
    PublicUrl,
    #[error("{0}: {1} (write a duration such as 30s, 20m, 1h or 7d)")]
    Duration(&'static str, humantime::DurationError),
    #[error("ROOMTOKEN_REFRESH_CONCURRENCY must be a number from 1 to 256")]
    Concurrency,
    #[error(
        "ROOMTOKEN_WEBHOOK_URL must be an absolute https URL, for example https://ops.example.com/roomtoken (http only on loopback)"
    )]
    WebhookUrl,
    #[error("ROOMTOKEN_WEBHOOK_SECRET: {0}")]
    WebhookSecret(BadWebhookSecret),
    #[error(
        "ROOMTOKEN_WRITE_BUDGET must be a number of write calls per second from 1 to 1000, or 'off'"
    )]
    WriteBudget,
    #[error(
        "ROOMTOKEN_LEGACY_DEVICE_KEYS must be 'accept' (device keys made before self-authenticating keys work, each checked against the store) or 'refuse'"
    )]
    LegacyKeys,
}

impl Config {
    /// The defaults, with `store` as given.
    pub fn new(store: StoreSpec) -> Self {
        Self {
            secret_prefix: "roomtoken/".into(),
            public_url: None,
            refresh_margin: Duration::from_secs(20 * 60),
            refresh_concurrency: 16,
            refresh_budget: Duration::from_secs(4 * 60),
            retry: RetryPolicy::default(),
            http_timeout: Duration::from_secs(30),
            kms_key_id: None,
            read_cache_ttl: Duration::from_secs(120),
            write_budget: default_write_budget(&store),
            webhook_url: None,
            webhook_secret: None,
            webhook_timeout: Duration::from_secs(5),
            read_metrics_every: Duration::from_secs(60),
            edge_only: false,
            accept_legacy_keys: false,
            store,
        }
    }

    /// Reads `ROOMTOKEN_*` variables over the defaults.
    pub fn from_env(default_store: StoreSpec) -> Result<Self, ConfigError> {
        Self::from_lookup(default_store, |name| std::env::var(name).ok())
    }

    pub fn from_lookup(
        default_store: StoreSpec,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let mut config = Self::new(default_store);
        if let Some(store) = get("ROOMTOKEN_STORE") {
            config.store = store.parse().map_err(ConfigError::Store)?;
            config.write_budget = default_write_budget(&config.store);
        }
        if let Some(prefix) = get("ROOMTOKEN_SECRET_PREFIX") {
            config.secret_prefix = prefix;
        }
        if let Some(url) = get("ROOMTOKEN_PUBLIC_URL") {
            config.public_url = Some(parse_public_url(&url)?);
        }
        if let Some(margin) = get("ROOMTOKEN_REFRESH_MARGIN") {
            config.refresh_margin = humantime::parse_duration(&margin)
                .map_err(|e| ConfigError::Duration("ROOMTOKEN_REFRESH_MARGIN", e))?;
        }
        if let Some(budget) = get("ROOMTOKEN_REFRESH_BUDGET") {
            config.refresh_budget = humantime::parse_duration(&budget)
                .map_err(|e| ConfigError::Duration("ROOMTOKEN_REFRESH_BUDGET", e))?;
        }
        if let Some(n) = get("ROOMTOKEN_REFRESH_CONCURRENCY") {
            config.refresh_concurrency = n
                .trim()
                .parse()
                .ok()
                .filter(|n| (1..=256).contains(n))
                .ok_or(ConfigError::Concurrency)?;
        }
        if let Some(ttl) = get("ROOMTOKEN_READ_CACHE_TTL") {
            config.read_cache_ttl = humantime::parse_duration(&ttl)
                .map_err(|e| ConfigError::Duration("ROOMTOKEN_READ_CACHE_TTL", e))?;
        }
        if let Some(budget) = get("ROOMTOKEN_WRITE_BUDGET") {
            config.write_budget = parse_write_budget(&budget)?;
        }
        config.kms_key_id = get("ROOMTOKEN_KMS_KEY_ID");
        if let Some(url) = get("ROOMTOKEN_WEBHOOK_URL") {
            config.webhook_url = Some(parse_webhook_url(&url)?);
        }
        if let Some(secret) = get("ROOMTOKEN_WEBHOOK_SECRET") {
            config.webhook_secret =
                Some(WebhookSecret::parse(&secret).map_err(ConfigError::WebhookSecret)?);
        }
        if let Some(every) = get("ROOMTOKEN_READ_METRICS_EVERY") {
            config.read_metrics_every = humantime::parse_duration(&every)
                .map_err(|e| ConfigError::Duration("ROOMTOKEN_READ_METRICS_EVERY", e))?;
        }
        config.edge_only =
            get("ROOMTOKEN_EDGE_ONLY").is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
        if let Some(legacy) = get("ROOMTOKEN_LEGACY_DEVICE_KEYS") {
            config.accept_legacy_keys = match legacy.trim() {
                "accept" => true,
                "refuse" => false,
                _ => return Err(ConfigError::LegacyKeys),
            };
        }
        if let Some(timeout) = get("ROOMTOKEN_WEBHOOK_TIMEOUT") {
            config.webhook_timeout = humantime::parse_duration(&timeout)
                .map_err(|e| ConfigError::Duration("ROOMTOKEN_WEBHOOK_TIMEOUT", e))?;
        }
        Ok(config)
    }

    /// The same configuration on another store, with that store's default
    /// write budget unless one was set.
    pub fn with_store(mut self, store: StoreSpec) -> Self {
        if self.write_budget == default_write_budget(&self.store) {
            self.write_budget = default_write_budget(&store);
        }
        self.store = store;
        self
    }
}

/// 20 write calls a second on Secrets Manager (well under the region's 50,
/// shared with everything else in the account); none on the file store.
pub fn default_write_budget(store: &StoreSpec) -> Option<u32> {
    match store {
        StoreSpec::Aws => Some(20),
        StoreSpec::File(_) => None,
    }
}

fn parse_write_budget(text: &str) -> Result<Option<u32>, ConfigError> {
    let text = text.trim();
    if text.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    text.parse()
        .ok()
        .filter(|n| (1..=1000).contains(n))
        .map(Some)
        .ok_or(ConfigError::WriteBudget)
}

pub fn parse_public_url(text: &str) -> Result<Url, ConfigError> {
    let url: Url = text.trim().parse().map_err(|_| ConfigError::PublicUrl)?;
    crate::domain::app::require_secure(&url, "the public URL")
        .map_err(|_| ConfigError::PublicUrl)?;
    Ok(url)
}

/// The webhook's URL: https, or http on loopback (the notifications name
/// connections, accounts and errors).
pub fn parse_webhook_url(text: &str) -> Result<Url, ConfigError> {
    let url: Url = text.trim().parse().map_err(|_| ConfigError::WebhookUrl)?;
    crate::domain::app::require_secure(&url, "the webhook URL")
        .map_err(|_| ConfigError::WebhookUrl)?;
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn the_public_url_is_https_except_on_loopback() {
        assert!(parse_public_url("https://tokens.example.com").is_ok());
        assert!(parse_public_url("http://127.0.0.1:8080").is_ok());
        assert!(matches!(
            parse_public_url("http://tokens.example.com"),
            Err(ConfigError::PublicUrl)
        ));
    }

    #[test]
    fn environment_overrides_defaults() {
        let env: HashMap<&str, &str> = [
            ("ROOMTOKEN_STORE", "aws"),
            ("ROOMTOKEN_PUBLIC_URL", "https://tokens.example.com/"),
            ("ROOMTOKEN_REFRESH_MARGIN", "15m"),
            ("ROOMTOKEN_SECRET_PREFIX", "rt-prod/"),
            ("ROOMTOKEN_READ_CACHE_TTL", "0s"),
            ("ROOMTOKEN_WRITE_BUDGET", "5"),
            ("ROOMTOKEN_WEBHOOK_URL", "https://ops.example.com/hooks"),
            ("ROOMTOKEN_WEBHOOK_TIMEOUT", "2s"),
        ]
        .into();
        let config = Config::from_lookup(StoreSpec::File(".roomtoken".into()), |k| {
            env.get(k).map(|v| v.to_string())
        })
        .unwrap();
        assert_eq!(config.store, StoreSpec::Aws);
        assert_eq!(config.refresh_margin, Duration::from_secs(900));
        assert_eq!(config.secret_prefix, "rt-prod/");
        assert_eq!(config.read_cache_ttl, Duration::ZERO);
        assert_eq!(config.write_budget, Some(5));
        assert_eq!(config.webhook_timeout, Duration::from_secs(2));
        assert_eq!(
            config.webhook_url.map(String::from).as_deref(),
            Some("https://ops.example.com/hooks")
        );
        assert_eq!(
            config.public_url.unwrap().host_str(),
            Some("tokens.example.com")
        );
    }

    #[test]
    fn defaults_follow_the_design() {
        let config = Config::from_lookup(StoreSpec::Aws, |_| None).unwrap();
        assert_eq!(config.refresh_margin, Duration::from_secs(1_200));
        assert_eq!(config.secret_prefix, "roomtoken/");
        assert_eq!(config.refresh_concurrency, 16);
        assert_eq!(config.read_cache_ttl, Duration::from_secs(120));
        assert_eq!(config.write_budget, Some(20), "Secrets Manager is paced");
        let local = Config::from_lookup(StoreSpec::File(".roomtoken".into()), |_| None).unwrap();
        assert_eq!(local.write_budget, None, "the file store is not");
    }

    #[test]
    fn bad_values_are_explained() {
        let bad = |k: &'static str, v: &'static str| {
            Config::from_lookup(StoreSpec::Aws, move |name| {
                (name == k).then(|| v.to_owned())
            })
            .unwrap_err()
            .to_string()
        };
        assert!(bad("ROOMTOKEN_STORE", "s3").contains("file:DIR"));
        assert!(bad("ROOMTOKEN_PUBLIC_URL", "tokens.example.com").contains("absolute"));
        assert!(bad("ROOMTOKEN_REFRESH_MARGIN", "soon").contains("ROOMTOKEN_REFRESH_MARGIN"));
        assert!(bad("ROOMTOKEN_READ_CACHE_TTL", "30").contains("ROOMTOKEN_READ_CACHE_TTL"));
        assert!(bad("ROOMTOKEN_WRITE_BUDGET", "0").contains("ROOMTOKEN_WRITE_BUDGET"));
        assert!(bad("ROOMTOKEN_WEBHOOK_URL", "http://ops.example.com").contains("https"));
        let secret = bad("ROOMTOKEN_WEBHOOK_SECRET", "hunter2hunter2");
        assert!(
            secret.contains("whsec_") && !secret.contains("hunter2"),
            "{secret}"
        );
    }
}

//! Test helpers: a broker served over real HTTP on loopback
//! ([`spawn_app`]) against the fake identity platform, on the file store
//! or on Secrets Manager (moto, started by `scripts/test.sh`), the `roomtoken`
//! CLI run in-process, and a log capture to prove no secret is ever logged.
//! [`template`] reads `infra/template.yaml`; [`lambda_runtime_api`] runs the
//! real function binaries against a local stand-in for the Lambda Runtime API.

pub mod lambda_runtime_api;
pub mod template;

pub mod browser;
pub mod failing_store;
pub mod fleet;
pub mod lagging_store;
pub mod sizes;
pub mod tcp_proxy;
pub mod vendor;
pub mod webhook;

mod app;
mod client;
mod logs;
mod setup;

pub use app::*;
pub use client::*;
pub use logs::*;
pub use setup::*;

use roomtoken::clock::{ManualClock, Sleeper};
use roomtoken::identity::OAuthClient;
use roomtoken::store::{CountingStore, FileStore, SecretStore, SecretsManagerStore, StoreSpec};
use roomtoken::{Broker, Config};
use roomtoken_cli::{Cli, ServeLimits, ServeOptions, serve_on};
use roomtoken_fake_identity::{FakeAccount, FakeApp, FakeIdentity};
use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use tokio::net::TcpListener;
use url::Url;

pub const TENANT: &str = "3f1c2d4e-5a6b-4c7d-8e9f-0a1b2c3d4e5f";
pub const CLIENT_ID: &str = "6a7b8c9d-0e1f-4a2b-9c3d-4e5f6a7b8c9d";
pub const ACCOUNT: &str = "booking@contoso.com";
pub const OTHER_ACCOUNT: &str = "intruder@contoso.com";
/// A verified domain of [`TENANT`] (self-service connections).
pub const SELF_SERVICE_DOMAIN: &str = "contoso.com";

/// Declares one `#[tokio::test]` per store for an `async fn(StoreKind)`.
/// The Secrets Manager one needs moto: without the `services` feature
/// (which `scripts/test.sh` turns on once moto is up) it is ignored, so that
/// a plain `cargo test` passes on a machine with no services.
#[macro_export]
macro_rules! on_both_stores {
    (threads: $scenario:ident => $on_file:ident, $on_secrets_manager:ident) => {
        $crate::on_both_stores!(@tests [tokio::test(flavor = "multi_thread", worker_threads = 4)] []
            $scenario => $on_file, $on_secrets_manager);
    };
    // Both need a service (Chromium, schemathesis).
    (services: $scenario:ident => $on_file:ident, $on_secrets_manager:ident) => {
        $crate::on_both_stores!(@tests [tokio::test]
            [cfg_attr(not(feature = "services"), ignore = "needs a service: scripts/test.sh")]
            $scenario => $on_file, $on_secrets_manager);
    };
    ($scenario:ident => $on_file:ident, $on_secrets_manager:ident) => {
        $crate::on_both_stores!(@tests [tokio::test] [] $scenario => $on_file, $on_secrets_manager);
    };
    (@tests [$test:meta] [$($file_needs:meta)?] $scenario:ident => $on_file:ident, $on_secrets_manager:ident) => {
        #[$test]
        $(#[$file_needs])?
        async fn $on_file() {
            $scenario($crate::StoreKind::File).await;
        }

        #[$test]
        #[cfg_attr(not(feature = "services"), ignore = "needs moto: scripts/test.sh")]
        async fn $on_secrets_manager() {
            $scenario($crate::StoreKind::SecretsManager).await;
        }
    };
}

/// A fault the identity platform sends now and then and that passes: 429
/// with a second's `Retry-After`, 503, 500, or an answer slower than the
/// broker waits.
pub fn transient_fault(rng: &mut impl rand::Rng) -> roomtoken_fake_identity::Fault {
    use roomtoken_fake_identity::Fault;
    match rng.random_range(0..4) {
        0 => Fault::TooManyRequests {
            retry_after_secs: 1,
        },
        1 => Fault::ServerError { status: 503 },
        2 => Fault::ServerError { status: 500 },
        _ => Fault::Hang(std::time::Duration::from_millis(600)),
    }
}

/// A broker on Secrets Manager behind a proxy that can go down, turn flaky
/// or lose answers, with `accounts` extra booking accounts; its waits are
/// recorded, not slept, and a token request gives up after 300 ms.
pub async fn behind_faulty_store(accounts: usize) -> (tcp_proxy::TcpProxy, TestApp) {
    let proxy = tcp_proxy::TcpProxy::before_moto().await;
    let app = Setup::new(StoreKind::SecretsManager)
        .aws_endpoint(proxy.url())
        .isolated_prefix()
        .sleeper(Arc::new(RecordingSleeper::default()))
        .http_timeout(std::time::Duration::from_millis(300))
        .extra_accounts(accounts)
        .spawn()
        .await;
    (proxy, app)
}

/// Today's date `days` from now, as the CLI and the status write it.
/// The PEM certificate block a command printed (`--generate-certificate`).
pub fn printed_certificate(text: &str) -> String {
    let start = text
        .find("-----BEGIN CERTIFICATE-----")
        .unwrap_or_else(|| panic!("a certificate in: {text}"));
    let end = text.find("-----END CERTIFICATE-----").expect("its end") + 25;
    format!("{}\n", &text[start..end])
}

pub fn date_in(days: i64) -> String {
    (time::OffsetDateTime::now_utc().date() + time::Duration::days(days)).to_string()
}

/// The n-th extra booking account of [`Setup::extra_accounts`].
pub fn booking_account(n: usize) -> String {
    format!("booking-{n}@contoso.com")
}

/// A system secret as stored, read until a read sees it (a lagging store
/// may answer the first reads after its creation from before it).
async fn read_system_secret(store: &dyn SecretStore, name: roomtoken::store::SecretName) -> String {
    for _ in 0..10 {
        if let Some(stored) = store.get(name.as_str()).await.expect("store") {
            return stored.value;
        }
    }
    panic!("{} was never readable", name.as_str())
}

/// A sleeper that records each wait and returns at once.
#[derive(Default)]
pub struct RecordingSleeper {
    waits: Mutex<Vec<std::time::Duration>>,
}

impl RecordingSleeper {
    pub fn waits(&self) -> Vec<std::time::Duration> {
        self.waits.lock().expect("waits").clone()
    }

    pub fn clear(&self) {
        self.waits.lock().expect("waits").clear();
    }
}

#[async_trait::async_trait]
impl Sleeper for RecordingSleeper {
    async fn sleep(&self, duration: std::time::Duration) {
        self.waits.lock().expect("waits").push(duration);
        tokio::task::yield_now().await;
    }
}

/// A connection id no other test uses (tests share one moto server).
pub fn unique_id(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

#[cfg(test)]
mod tests {
    use super::assert_no_secret_in;

    #[test]
    #[should_panic(expected = "short secret #0")]
    fn a_short_secret_is_found_as_a_word() {
        assert_no_secret_in("client_secret=abc12 end", "the text", &["abc12".into()]);
    }

    #[test]
    fn a_short_secret_inside_another_word_is_chance() {
        assert_no_secret_in("xabc12y", "the text", &["abc12".into()]);
    }
}

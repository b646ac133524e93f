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

/// The hidden `form_token` of a self-service form page.
pub fn form_token(page: &str) -> String {
    const FIELD: &str = "name=\"form_token\" value=\"";
    page.find(FIELD)
        .and_then(|at| page[at + FIELD.len()..].split('"').next())
        .unwrap_or_default()
        .to_owned()
}

/// Declares one `#[tokio::test]` per store for an `async fn(StoreKind)`.
/// The Secrets Manager one needs moto: without the `services` feature
/// (which `scripts/test.sh` turns on once moto is up) it is ignored, so that
/// a plain `cargo test` passes on a machine with no services.
#[macro_export]
macro_rules! on_both_stores {
    (threads: $scenario:ident => $on_file:ident, $on_secrets_manager:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn $on_file() {
            $scenario($crate::StoreKind::File).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        #[cfg_attr(not(feature = "services"), ignore = "needs moto: scripts/test.sh")]
        async fn $on_secrets_manager() {
            $scenario($crate::StoreKind::SecretsManager).await;
        }
    };
    // Both need a service (Chromium, schemathesis).
    (services: $scenario:ident => $on_file:ident, $on_secrets_manager:ident) => {
        #[tokio::test]
        #[cfg_attr(not(feature = "services"), ignore = "needs a service: scripts/test.sh")]
        async fn $on_file() {
            $scenario($crate::StoreKind::File).await;
        }

        #[tokio::test]
        #[cfg_attr(not(feature = "services"), ignore = "needs a service: scripts/test.sh")]
        async fn $on_secrets_manager() {
            $scenario($crate::StoreKind::SecretsManager).await;
        }
    };
    ($scenario:ident => $on_file:ident, $on_secrets_manager:ident) => {
        #[tokio::test]
        async fn $on_file() {
            $scenario($crate::StoreKind::File).await;
        }

        #[tokio::test]
        #[cfg_attr(not(feature = "services"), ignore = "needs moto: scripts/test.sh")]
        async fn $on_secrets_manager() {
            $scenario($crate::StoreKind::SecretsManager).await;
        }
    };
}

/// Which store a test runs against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreKind {
    File,
    SecretsManager,
}

/// A broker serving every route on a free loopback port.
pub struct TestApp {
    pub url: Url,
    pub broker: Arc<Broker>,
    /// The served broker's store, counting its calls (the CLI opens its own).
    pub store: Arc<CountingStore>,
    /// The served broker's clock for reads: it stands still until a test
    /// moves it (refresh passes take their time as an argument).
    pub clock: Arc<ManualClock>,
    pub identity: FakeIdentity,
    pub client_secret: String,
    /// The `--store` argument the CLI gets (`file:DIR` or `aws`).
    pub store_arg: String,
    secret_prefix: String,
    /// The signing key, and the invites and sealed cookies this test saw:
    /// secrets too, for the log-leak checks.
    signing_key: String,
    device_key_secret: String,
    seen: Mutex<Vec<String>>,
    _dir: tempfile::TempDir,
}

/// Fails (never skips) when moto is not there: a test that passes without
/// its server proves nothing.
pub fn require_moto() {
    assert!(
        std::env::var("AWS_ENDPOINT_URL").is_ok_and(|v| !v.is_empty()),
        "AWS_ENDPOINT_URL is not set: run the suite with scripts/test.sh, which starts moto"
    );
}

/// Starts the fake identity platform and the broker, with the app
/// registered and two accounts (the booking account and another one).
pub async fn spawn_app(kind: StoreKind) -> TestApp {
    Setup::new(kind).spawn().await
}

/// A Secrets Manager client for moto (the suite's endpoint, or `endpoint`),
/// with the SDK's own retries short: the broker's behaviour is what the
/// tests look at.
pub async fn moto_client(endpoint: Option<&str>) -> aws_sdk_secretsmanager::Client {
    require_moto();
    let retry = aws_config::retry::RetryConfig::standard()
        .with_max_attempts(2)
        .with_initial_backoff(std::time::Duration::from_millis(10));
    let mut loader =
        aws_config::defaults(aws_config::BehaviorVersion::latest()).retry_config(retry);
    if let Some(endpoint) = endpoint {
        loader = loader.endpoint_url(endpoint);
    }
    roomtoken::store::secrets_manager_client(&loader.load().await)
}

/// A decorator to put around the store.
type StoreWrapper = Box<dyn FnOnce(Arc<dyn SecretStore>) -> Arc<dyn SecretStore> + Send>;
/// A change to the broker's configuration.
type ConfigChange = Box<dyn FnOnce(&mut Config) + Send>;

/// How to build a test broker, beyond the store kind.
pub struct Setup {
    kind: StoreKind,
    http_timeout: std::time::Duration,
    sleeper: Option<Arc<dyn Sleeper>>,
    wrap_store: Option<StoreWrapper>,
    aws_endpoint: Option<String>,
    secret_prefix: Option<String>,
    serve_limits: ServeLimits,
    extra_accounts: usize,
    configure: Option<ConfigChange>,
    store_dir: Option<std::path::PathBuf>,
    /// The file store counts Secrets Manager's versions (it stands for it).
    version_quota: bool,
}

impl Setup {
    pub fn new(kind: StoreKind) -> Self {
        Self {
            kind,
            http_timeout: std::time::Duration::from_secs(2),
            sleeper: None,
            wrap_store: None,
            aws_endpoint: None,
            secret_prefix: None,
            serve_limits: ServeLimits::default(),
            extra_accounts: 0,
            configure: None,
            store_dir: None,
            version_quota: true,
        }
    }

    /// Changes the configuration last, after the environment and the
    /// harness (store, public URL, timeouts) have set it.
    pub fn with_config(mut self, change: impl FnOnce(&mut Config) + Send + 'static) -> Self {
        self.configure = Some(Box::new(change));
        self
    }

    /// The file store's directory, kept afterwards (default: a temporary one).
    /// The file store as it is, without Secrets Manager's version quota
    /// (by default, test file stores count versions: they stand for it).
    pub fn without_version_quota(mut self) -> Self {
        self.version_quota = false;
        self
    }

    pub fn store_dir(mut self, dir: std::path::PathBuf) -> Self {
        self.store_dir = Some(dir);
        self
    }

    /// Timeout of each request to the identity provider.
    pub fn http_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.http_timeout = timeout;
        self
    }

    /// Records retry waits instead of spending them.
    pub fn sleeper(mut self, sleeper: Arc<dyn Sleeper>) -> Self {
        self.sleeper = Some(sleeper);
        self
    }

    /// Puts a decorator (counting, failing) around the store.
    pub fn wrap_store(
        mut self,
        wrap: impl FnOnce(Arc<dyn SecretStore>) -> Arc<dyn SecretStore> + Send + 'static,
    ) -> Self {
        self.wrap_store = Some(Box::new(wrap));
        self
    }

    /// Talks to Secrets Manager at this URL (a proxy in front of moto).
    pub fn aws_endpoint(mut self, url: String) -> Self {
        self.aws_endpoint = Some(url);
        self
    }

    /// A Secrets Manager name prefix of its own, so that a pass over every
    /// connection sees only this test's, and the system secrets (the vendor
    /// app) are this test's alone; [`TestApp::cli`] passes it on.
    pub fn isolated_prefix(mut self) -> Self {
        self.secret_prefix = Some(format!("{}/", unique_id("isolated")));
        self
    }

    /// `roomtoken serve`'s timeouts and connection cap.
    pub fn serve_limits(mut self, limits: ServeLimits) -> Self {
        self.serve_limits = limits;
        self
    }

    /// Adds accounts `booking-{n}@contoso.com`, n = 0..count.
    pub fn extra_accounts(mut self, count: usize) -> Self {
        self.extra_accounts = count;
        self
    }

    pub async fn spawn(self) -> TestApp {
        capture_logs();
        let dir = tempfile::tempdir().expect("temp dir");
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let url: Url = format!("http://{}", listener.local_addr().expect("addr"))
            .parse()
            .expect("url");
        let mut config = Config::from_env(StoreSpec::Aws).expect("config");
        let (store, store_arg): (Arc<dyn SecretStore>, String) = match self.kind {
            StoreKind::File => {
                let path = self
                    .store_dir
                    .clone()
                    .unwrap_or_else(|| dir.path().join("store"));
                config = config.with_store(StoreSpec::File(path.clone()));
                let mut store = FileStore::open(&path).expect("file store");
                if self.version_quota {
                    store = store.count_versions().expect("version quota");
                }
                (Arc::new(store), format!("file:{}", path.display()))
            }
            StoreKind::SecretsManager => {
                require_moto();
                config = config.with_store(StoreSpec::Aws);
                if let Some(prefix) = self.secret_prefix {
                    config.secret_prefix = prefix;
                }
                let client = moto_client(self.aws_endpoint.as_deref()).await;
                let store = SecretsManagerStore::new(client, &config.secret_prefix);
                (Arc::new(store), "aws".to_owned())
            }
        };
        let store = match self.wrap_store {
            Some(wrap) => wrap(store),
            None => store,
        };
        let store = Arc::new(CountingStore::new(store));
        config.public_url = Some(url.clone());
        config.http_timeout = self.http_timeout;
        if let Some(change) = self.configure {
            change(&mut config);
        }
        let secret_prefix = config.secret_prefix.clone();
        let identity_client = OAuthClient::new(self.http_timeout).expect("identity client");
        let clock = Arc::new(ManualClock::new(time::OffsetDateTime::now_utc()));
        let mut broker =
            Broker::new(store.clone(), Arc::new(identity_client), config).with_clock(clock.clone());
        if let Some(sleeper) = self.sleeper {
            broker = broker.with_sleeper(sleeper);
        }
        let broker = Arc::new(broker);
        broker.signing_keys().await.expect("the signing key");
        let signing_key =
            read_system_secret(store.as_ref(), roomtoken::store::SecretName::signing_key()).await;
        // As token-read does at its cold start.
        broker
            .device_key_signer()
            .await
            .expect("the device-key secret");
        let device_key_secret =
            read_system_secret(store.as_ref(), roomtoken::store::SecretName::device_key()).await;
        let identity = FakeIdentity::start().await.expect("fake identity");
        let client_secret = format!("client-secret-{}", uuid::Uuid::new_v4());
        identity.register_app(FakeApp {
            tenant: TENANT.into(),
            client_id: CLIENT_ID.into(),
            client_secret: client_secret.clone(),
            redirect_uris: vec![format!("{url}callback")],
            multi_tenant: false,
            permissions: Vec::new(),
        });
        let mut accounts = vec![ACCOUNT.to_owned(), OTHER_ACCOUNT.to_owned()];
        accounts.extend((0..self.extra_accounts).map(booking_account));
        for (n, username) in accounts.iter().enumerate() {
            identity.add_account(FakeAccount {
                tenant: TENANT.into(),
                oid: format!("{n:08x}-0000-4000-8000-000000000000"),
                username: username.clone(),
                name: username.clone(),
                admin: false,
            });
        }
        identity.set_auto_consent(Some(ACCOUNT));
        tokio::spawn(serve_on(
            listener,
            broker.clone(),
            ServeOptions {
                refresh_every: None,
                limits: self.serve_limits,
            },
        ));
        TestApp {
            url,
            broker,
            store,
            clock,
            identity,
            client_secret,
            store_arg,
            secret_prefix,
            signing_key,
            device_key_secret,
            seen: Mutex::default(),
            _dir: dir,
        }
    }
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

impl TestApp {
    /// The store as `--store` and `ROOMTOKEN_STORE` take it (`file:DIR` or `aws`).
    pub fn store_arg(&self) -> &str {
        &self.store_arg
    }

    /// The name prefix of this test's secrets (its own with
    /// [`Setup::isolated_prefix`]).
    pub fn secret_prefix(&self) -> &str {
        &self.secret_prefix
    }

    /// Runs `roomtoken ARGS` in-process against this broker's store and
    /// public URL; returns stdout or the error.
    pub async fn cli(&self, args: &[&str], stdin: &str) -> Result<String, String> {
        use clap::Parser;
        let mut argv = vec![
            "roomtoken".to_owned(),
            "--store".into(),
            self.store_arg.clone(),
            "--public-url".into(),
            self.url.to_string(),
            "--secret-prefix".into(),
            self.secret_prefix.clone(),
        ];
        argv.extend(args.iter().map(|a| a.to_string()));
        let cli = Cli::try_parse_from(argv).map_err(|e| e.to_string())?;
        let mut out = Vec::new();
        let mut input = std::io::Cursor::new(stdin.as_bytes().to_vec());
        match roomtoken_cli::run(cli, &mut input, &mut out).await {
            // `status` printed its table; the binary exits 2 (fleet_status.rs).
            Err(e) if e.downcast_ref::<roomtoken_cli::NeedsHuman>().is_some() => {}
            other => other.map_err(|e| format!("{e:#}"))?,
        }
        Ok(String::from_utf8(out).expect("utf-8 output"))
    }

    /// Says the connection's current client secret expires `days` from
    /// today (`connection update --client-secret-expires`).
    pub async fn set_secret_expiry(&self, id: &str, days: i64) -> Result<String, String> {
        let date = date_in(days);
        self.cli(
            &["connection", "update", id, "--client-secret-expires", &date],
            "",
        )
        .await
    }

    /// `connection add` for the fake's tenant with EWS and Graph.
    pub async fn add_connection(&self, id: &str) {
        self.add_connection_with(id, TENANT, "ews,graph").await;
    }

    /// [`TestApp::add_connection`] with another tenant (an id or a domain)
    /// and resources.
    pub async fn add_connection_with(&self, id: &str, tenant: &str, resources: &str) {
        let args = ["--client-secret-stdin", "--resources", resources];
        self.add_in(tenant, id, &args, &self.client_secret)
            .await
            .expect("connection add");
    }

    /// `connection add ID --tenant TENANT --client-id CLIENT_ID` at the
    /// fake's sign-in origin, with `args` (the credential, the mode): its
    /// output or its error.
    pub async fn add_with(&self, id: &str, args: &[&str], stdin: &str) -> Result<String, String> {
        self.add_in(TENANT, id, args, stdin).await
    }

    async fn add_in(
        &self,
        tenant: &str,
        id: &str,
        args: &[&str],
        stdin: &str,
    ) -> Result<String, String> {
        let authority = self.identity.base_url().to_string();
        let mut all = vec![
            "connection",
            "add",
            id,
            "--tenant",
            tenant,
            "--client-id",
            CLIENT_ID,
            "--authority",
            &authority,
        ];
        all.extend_from_slice(args);
        self.cli(&all, stdin).await
    }

    /// The private key (PEM) of a connection's certificate, as stored in
    /// its grant secret: what must never appear anywhere else.
    pub async fn certificate_private_key(&self, id: &str) -> String {
        let id = roomtoken::domain::ConnectionId::parse(id).expect("connection id");
        let grant = self.broker.repo.grant(&id).await.expect("store");
        let certificate = grant
            .and_then(|g| g.value.certificate)
            .expect("a certificate in the grant secret");
        certificate.private_key_pem().expose().to_owned()
    }

    /// `connection add ID --self-service` against the fake's sign-in
    /// origin, with `contoso.com` a domain of [`TENANT`]; returns the id.
    pub async fn add_self_service_connection(&self) -> String {
        let id = unique_id("self");
        let authority = self.identity.base_url().to_string();
        let added = self
            .cli(
                &[
                    "connection",
                    "add",
                    &id,
                    "--self-service",
                    "--authority",
                    &authority,
                ],
                "",
            )
            .await
            .expect("connection add --self-service");
        assert!(added.contains("self-service"), "{added}");
        self.identity.add_domain(TENANT, SELF_SERVICE_DOMAIN);
        id
    }

    /// The fields of the self-service form as an admin fills them in
    /// rightly (the secret expiring in 300 days), plus the hidden token.
    pub fn setup_form_body(&self, form_token: &str) -> String {
        let expires = (time::OffsetDateTime::now_utc() + time::Duration::days(300)).date();
        url::form_urlencoded::Serializer::new(String::new())
            .append_pair("form_token", form_token)
            .append_pair("tenant", SELF_SERVICE_DOMAIN)
            .append_pair("client_id", CLIENT_ID)
            .append_pair("client_secret", &self.client_secret)
            .append_pair("client_secret_expires", &expires.to_string())
            .append_pair("resources", "ews")
            .append_pair("resources", "graph")
            .finish()
    }

    pub async fn link(&self, id: &str) -> String {
        let link = self
            .cli(&["link", id], "")
            .await
            .expect("link")
            .trim()
            .to_owned();
        self.saw_link(&link);
        link
    }

    /// Remembers a link's invite as a secret of this test.
    pub fn saw_link(&self, link: &str) {
        if let Some((_, invite)) = Url::parse(link).ok().and_then(|url| {
            url.query_pairs()
                .find(|(name, _)| name == "invite")
                .map(|(n, v)| (n.into_owned(), v.into_owned()))
        }) {
            self.saw(invite);
        }
    }

    /// Remembers a value (a sealed cookie, an invite) as a secret of this test.
    pub fn saw(&self, secret: String) {
        self.seen.lock().expect("seen secrets").push(secret);
    }

    pub async fn create_key(&self, id: &str) -> String {
        self.cli(&["key", "create", id, "--label", "lobby"], "")
            .await
            .expect("key create")
            .trim()
            .to_owned()
    }

    /// Opens a consent link like a browser would, through the fake sign-in,
    /// and returns the callback response.
    pub async fn consent(&self, id: &str) -> ConsentRun {
        let link = self.link(id).await;
        self.consent_at(&link).await
    }

    /// [`TestApp::consent`] with a link made by the caller.
    pub async fn consent_at(&self, link: &str) -> ConsentRun {
        let start = http().get(link).send().await.expect("GET link");
        assert_eq!(start.status(), 302, "connect-start redirects");
        self.through_sign_in(start).await
    }

    /// From a redirect to the sign-in (connect-start's, or the setup
    /// form's answer): the fake signs in, and the callback answers the
    /// consent cookie the redirect set.
    pub async fn through_sign_in(&self, to_sign_in: reqwest::Response) -> ConsentRun {
        assert!(
            to_sign_in.status().is_redirection(),
            "{}",
            to_sign_in.status()
        );
        let cookie = cookies_set(&to_sign_in);
        assert!(cookie.contains("roomtoken_consent="), "consent cookie");
        for pair in cookie.split("; ") {
            if let Some(sealed) = pair.strip_prefix("roomtoken_consent=") {
                self.saw(sealed.to_owned());
            }
        }
        let authorize = location(&to_sign_in);
        let signed_in = http()
            .get(authorize.clone())
            .send()
            .await
            .expect("GET authorize");
        assert_eq!(signed_in.status(), 302, "the fake signs in and redirects");
        let callback = location(&signed_in);
        let response = http()
            .get(callback.clone())
            .header("cookie", &cookie)
            .send()
            .await
            .expect("GET callback");
        let status = response.status().as_u16();
        let body = response.text().await.expect("callback body");
        ConsentRun {
            authorize,
            callback,
            cookie,
            status,
            body,
        }
    }

    /// `roomtoken status ID --json`: what it printed, and parsed.
    pub async fn status_json(&self, id: &str) -> (String, serde_json::Value) {
        let printed = self
            .cli(&["status", id, "--json"], "")
            .await
            .expect("status --json");
        let view = serde_json::from_str(&printed).expect("status JSON");
        (printed, view)
    }

    /// The access token a display with `key` is served (200) for `resource`.
    pub async fn served_token(&self, id: &str, key: &str, resource: Option<&str>) -> String {
        let read = self.get_token(id, Some(key), resource).await;
        assert_eq!(read.status(), 200, "a token is served");
        let body: serde_json::Value = read.json().await.expect("token JSON");
        body["access_token"]
            .as_str()
            .expect("an access token")
            .to_owned()
    }

    pub async fn get_token(
        &self,
        id: &str,
        key: Option<&str>,
        resource: Option<&str>,
    ) -> reqwest::Response {
        let mut request = TokenRead::new(id);
        request.key = key;
        request.resource = resource;
        self.read(request).await
    }

    /// `GET /v1/connections/{id}/token` as described by `request`.
    pub async fn read(&self, request: TokenRead<'_>) -> reqwest::Response {
        let mut url = self
            .url
            .join(&format!("v1/connections/{}/token", request.connection))
            .expect("url");
        if let Some(resource) = request.resource {
            url.query_pairs_mut().append_pair("resource", resource);
        }
        if let Some(seconds) = request.min_validity {
            url.query_pairs_mut()
                .append_pair("min_validity", &seconds.to_string());
        }
        let mut builder = http().get(url);
        if let Some(key) = request.key {
            builder = builder.bearer_auth(key);
        }
        if let Some(etag) = request.if_none_match {
            builder = builder.header("if-none-match", etag);
        }
        builder.send().await.expect("GET token")
    }

    /// `GET /v1/connections/{id}/status`
    pub async fn get_status(&self, id: &str, key: Option<&str>) -> reqwest::Response {
        let url = self
            .url
            .join(&format!("v1/connections/{id}/status"))
            .expect("url");
        let mut builder = http().get(url);
        if let Some(key) = key {
            builder = builder.bearer_auth(key);
        }
        builder.send().await.expect("GET status")
    }

    /// One refresh pass over connection `id` alone, at `now`: its outcome.
    pub async fn refresh_one(
        &self,
        id: &str,
        force: bool,
        now: time::OffsetDateTime,
    ) -> roomtoken::flows::refresh::Outcome {
        let options = roomtoken::flows::refresh::PassOptions {
            only: Some(roomtoken::domain::ConnectionId::parse(id).expect("connection id")),
            force,
        };
        let report = roomtoken::flows::refresh::refresh_pass(&self.broker, &options, now)
            .await
            .expect("a refresh pass");
        report.results[0].outcome.clone()
    }

    /// A display's read of `resource`'s token (the first resource when
    /// `None`): answered 200 with a token the identity platform still
    /// honours, at its own time.
    pub async fn assert_serves_valid_token(&self, id: &str, key: &str, resource: Option<&str>) {
        let response = self.get_token(id, Some(key), resource).await;
        assert_eq!(response.status(), 200, "{id}");
        let body: serde_json::Value = response.json().await.expect("json");
        let token = body["access_token"].as_str().expect("access_token");
        assert!(
            self.identity.access_token_info(token).is_some(),
            "{id} serves a token the identity platform honours"
        );
    }

    /// Moves the broker's clock past the read cache's TTL: whatever it
    /// read before is read again from the store.
    pub fn expire_read_cache(&self) {
        self.clock
            .advance(self.broker.config.read_cache_ttl + std::time::Duration::from_secs(1));
    }

    /// A connection added and consented by the booking account.
    pub async fn consented(&self, prefix: &str) -> String {
        let id = unique_id(prefix);
        self.add_connection(&id).await;
        let consent = self.consent(&id).await;
        assert_eq!(consent.status, 200, "{}", consent.body);
        id
    }

    /// A connection added, consented by the booking account, with one key.
    pub async fn connected(&self, prefix: &str) -> (String, String) {
        let id = self.consented(prefix).await;
        let key = self.create_key(&id).await;
        (id, key)
    }

    /// The stored grant of a connection, if any.
    pub async fn grant(&self, id: &str) -> Option<roomtoken::domain::Grant> {
        let id = roomtoken::domain::ConnectionId::parse(id).expect("connection id");
        let stored = self.broker.repo.grant(&id).await;
        stored.expect("store").and_then(|g| g.value.grant)
    }

    /// Changes a connection's serve secret in place, as a test sets it up
    /// (a person's write, at the broker's time).
    pub async fn change_serve(
        &self,
        id: &str,
        change: impl Fn(&mut roomtoken::domain::ServeRecord),
    ) {
        let id = roomtoken::domain::ConnectionId::parse(id).expect("connection id");
        let changed = self
            .broker
            .repo
            .update::<roomtoken::domain::ServeRecord, _>(
                &id,
                roomtoken::store::Part::Serve,
                roomtoken::domain::Writer::Person,
                self.broker.now(),
                |serve| {
                    let mut serve = serve?;
                    change(&mut serve);
                    Some(serve)
                },
            )
            .await
            .expect("store");
        assert!(changed.is_some(), "{id} has a serve secret");
    }

    /// Makes a connection's stored tokens `by` older (issued and expiring
    /// that much earlier), as if their consent had happened then: a token
    /// of an hour aged 45 minutes is due.
    pub async fn age_tokens(&self, id: &str, by: std::time::Duration) {
        self.change_serve(id, |serve| {
            for token in serve.access.iter_mut().flat_map(|a| a.tokens.iter_mut()) {
                token.obtained_at -= by;
                token.expires_at -= by;
            }
        })
        .await;
    }

    /// The stored status of a connection.
    pub async fn status(&self, id: &str) -> roomtoken::domain::Status {
        let id = roomtoken::domain::ConnectionId::parse(id).expect("connection id");
        let stored = self.broker.repo.serve(&id).await;
        stored
            .expect("store")
            .map(|s| s.value.status)
            .unwrap_or_default()
    }

    /// The stored serve secret of a connection that exists.
    pub async fn serve(&self, id: &str) -> roomtoken::domain::ServeRecord {
        let id = roomtoken::domain::ConnectionId::parse(id).expect("connection id");
        let stored = self.broker.repo.serve(&id).await;
        stored.expect("store").expect("a serve secret").value
    }

    /// Every secret this test saw: what the fake issued, the client secret,
    /// and the given device keys.
    pub fn secrets(&self, device_keys: &[&str]) -> Vec<String> {
        let mut secrets = self.identity.issued_secrets();
        secrets.push(self.client_secret.clone());
        secrets.push(self.signing_key.clone());
        secrets.push(self.device_key_secret.clone());
        secrets.extend(self.seen.lock().expect("seen secrets").iter().cloned());
        secrets.extend(device_keys.iter().map(|k| k.to_string()));
        secrets
    }
}

/// One token request, as a display sends it.
#[derive(Clone, Copy, Debug, Default)]
pub struct TokenRead<'a> {
    pub connection: &'a str,
    pub key: Option<&'a str>,
    pub resource: Option<&'a str>,
    pub min_validity: Option<u64>,
    pub if_none_match: Option<&'a str>,
}

impl<'a> TokenRead<'a> {
    pub fn new(connection: &'a str) -> Self {
        Self {
            connection,
            ..Self::default()
        }
    }

    pub fn key(self, key: &'a str) -> Self {
        Self {
            key: Some(key),
            ..self
        }
    }
}

/// The device key's public id: `rtk_<id>_<secret>`.
pub fn key_id(key: &str) -> String {
    key.split('_').nth(1).expect("a device key").to_owned()
}

pub struct ConsentRun {
    pub authorize: Url,
    pub callback: Url,
    pub cookie: String,
    pub status: u16,
    pub body: String,
}

/// An HTTP client like a display's: follows no redirects, keeps no cookies.
pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("http client")
}

pub fn location(response: &reqwest::Response) -> Url {
    let text = response
        .headers()
        .get("location")
        .expect("a Location header")
        .to_str()
        .expect("ascii location");
    text.parse().expect("absolute Location")
}

/// `name=value` of the first Set-Cookie header.
pub fn set_cookie(response: &reqwest::Response) -> Option<String> {
    let header = response.headers().get("set-cookie")?.to_str().ok()?;
    header.split(';').next().map(|pair| pair.trim().to_owned())
}

/// Every cookie a response sets, as a browser sends them back
/// (`a=1; b=2`).
pub fn cookies_set(response: &reqwest::Response) -> String {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok()?.split(';').next())
        .map(str::trim)
        .collect::<Vec<_>>()
        .join("; ")
}

pub fn set_cookie_attributes(response: &reqwest::Response) -> String {
    response
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// Every log line of this test process, at debug level and above.
static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();

#[derive(Clone)]
struct SharedWriter(Arc<Mutex<Vec<u8>>>);

impl Write for SharedWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log buffer").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Installs the capturing subscriber once per test process.
pub fn capture_logs() {
    LOGS.get_or_init(|| {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let writer = SharedWriter(buffer.clone());
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(
                // Everything at debug, but the AWS SDK's per-request chatter.
                "debug,roomtoken=trace,aws_smithy_runtime=info,aws_smithy_runtime_api=info,aws_sdk_secretsmanager=info,aws_config=info,hyper_util=info",
            ))
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .try_init();
        buffer
    });
}

/// How many bytes of log lines this test process captured so far: memory
/// the harness holds, not the broker.
pub fn captured_log_bytes() -> usize {
    LOGS.get()
        .map(|buffer| buffer.lock().expect("log buffer").len())
        .unwrap_or_default()
}

pub fn captured_logs() -> String {
    let buffer = LOGS.get().expect("capture_logs was called");
    String::from_utf8_lossy(&buffer.lock().expect("log buffer")).into_owned()
}

/// Fails, naming the secret by its place in `secrets` (never by any of its
/// characters), when one is found in the logs.
pub fn assert_no_secret_logged(secrets: &[String]) {
    let logs = captured_logs();
    assert!(
        !logs.is_empty(),
        "the log capture saw nothing: it is not wired"
    );
    assert_no_secret_in(&logs, "the logs", secrets);
}

/// The same for any `text`, which `place` names in the failure. A secret
/// shorter than 8 characters counts only as a whole word (it would match
/// inside other words by chance).
pub fn assert_no_secret_in(text: &str, place: &str, secrets: &[String]) {
    let (short, long): (Vec<&str>, Vec<&str>) = secrets
        .iter()
        .map(String::as_str)
        .filter(|s| !s.is_empty())
        .partition(|s| s.len() < 8);
    let word = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '-');
    for (n, secret) in short.iter().enumerate() {
        let whole = text.match_indices(secret).any(|(at, _)| {
            !word(text[..at].chars().next_back()) && !word(text[at + secret.len()..].chars().next())
        });
        assert!(
            !whole,
            "short secret #{n} ({} chars) appears as a word in {place}",
            secret.len()
        );
    }
    // One pass over the text for every secret at once: a long test logs
    // hundreds of megabytes and issues tens of thousands of secrets.
    let checked = long;
    let matcher = aho_corasick::AhoCorasick::new(&checked).expect("secret matcher");
    if let Some(found) = matcher.find(text) {
        // Which one and how long, never any of its characters.
        let n = found.pattern().as_usize();
        panic!(
            "secret #{n} of those given ({} chars) appears in {place}",
            checked[n].len()
        );
    }
}

#[cfg(test)]
mod log_capture_tests {
    use super::*;

    #[test]
    #[should_panic(expected = "appears in the logs")]
    fn a_logged_secret_is_caught() {
        capture_logs();
        tracing::warn!(value = "fake-rt-this-must-never-be-logged", "oops");
        assert_no_secret_logged(&["fake-rt-this-must-never-be-logged".to_owned()]);
    }
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

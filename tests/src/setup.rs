//! How a test broker is built ([`Setup`]): the store kind (file, or
//! Secrets Manager on moto), decorators, configuration, served on loopback.

use super::*;

/// Which store a test runs against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreKind {
    File,
    SecretsManager,
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

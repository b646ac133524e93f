//! Test helpers: a broker served over real HTTP on loopback
//! ([`spawn_broker`]) against the fake identity platform, on the file store
//! or on Secrets Manager (moto, started by `scripts/test.sh`), the `roomtoken`
//! CLI run in-process, and a log capture to prove no secret is ever logged.

use roomtoken::clock::ManualClock;
use roomtoken::identity::OAuthClient;
use roomtoken::store::{CountingStore, StoreSpec};
use roomtoken::{Broker, Config};
use roomtoken_cli::{Cli, ServeOptions, serve_on};
use roomtoken_fake_identity::{FakeAccount, FakeApp, FakeIdentity};
use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use tokio::net::TcpListener;
use url::Url;

pub const TENANT: &str = "3f1c2d4e-5a6b-4c7d-8e9f-0a1b2c3d4e5f";
pub const CLIENT_ID: &str = "6a7b8c9d-0e1f-4a2b-9c3d-4e5f6a7b8c9d";
pub const ACCOUNT: &str = "booking@contoso.com";
pub const OTHER_ACCOUNT: &str = "intruder@contoso.com";

/// Which store a test runs against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreKind {
    File,
    SecretsManager,
}

/// A broker serving every route on a free loopback port.
pub struct TestBroker {
    pub url: Url,
    pub broker: Arc<Broker>,
    /// The served broker's store, counting its calls (the CLI opens its own).
    pub store: Arc<CountingStore>,
    /// The served broker's clock: it stands still until a test moves it.
    pub clock: Arc<ManualClock>,
    pub identity: FakeIdentity,
    pub client_secret: String,
    store_arg: String,
    _dir: tempfile::TempDir,
}

/// How [`spawn_broker_with`] sets up the broker.
#[derive(Clone, Debug)]
pub struct BrokerOptions {
    /// `ROOMTOKEN_READ_CACHE_TTL`; zero turns the cache off.
    pub read_cache_ttl: std::time::Duration,
    /// The file store's directory, kept afterwards (default: a temporary one).
    pub store_dir: Option<std::path::PathBuf>,
}

impl Default for BrokerOptions {
    fn default() -> Self {
        Self {
            read_cache_ttl: Config::new(StoreSpec::Aws).read_cache_ttl,
            store_dir: None,
        }
    }
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
pub async fn spawn_broker(kind: StoreKind) -> TestBroker {
    spawn_broker_with(kind, BrokerOptions::default()).await
}

/// [`spawn_broker`] with chosen options.
pub async fn spawn_broker_with(kind: StoreKind, options: BrokerOptions) -> TestBroker {
    capture_logs();
    let dir = tempfile::tempdir().expect("temp dir");
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let url: Url = format!("http://{}", listener.local_addr().expect("addr"))
        .parse()
        .expect("url");
    let (spec, store_arg) = match kind {
        StoreKind::File => {
            let path = options
                .store_dir
                .clone()
                .unwrap_or_else(|| dir.path().join("store"));
            (
                StoreSpec::File(path.clone()),
                format!("file:{}", path.display()),
            )
        }
        StoreKind::SecretsManager => {
            require_moto();
            (StoreSpec::Aws, "aws".to_owned())
        }
    };
    let mut config = Config::from_env(spec.clone()).expect("config");
    config.store = spec;
    config.public_url = Some(url.clone());
    config.http_timeout = std::time::Duration::from_secs(2);
    config.read_cache_ttl = options.read_cache_ttl;
    let inner = config
        .store
        .open(&config.secret_prefix, config.kms_key_id.clone())
        .await
        .expect("store");
    let store = Arc::new(CountingStore::new(inner));
    let oauth = Arc::new(OAuthClient::new(config.http_timeout).expect("oauth client"));
    let clock = Arc::new(ManualClock::new(time::OffsetDateTime::now_utc()));
    let broker = Arc::new(Broker::new(store.clone(), oauth, config).with_clock(clock.clone()));
    let identity = FakeIdentity::start().await.expect("fake identity");
    let client_secret = format!("client-secret-{}", uuid::Uuid::new_v4());
    identity.register_app(FakeApp {
        tenant: TENANT.into(),
        client_id: CLIENT_ID.into(),
        client_secret: client_secret.clone(),
        redirect_uris: vec![format!("{url}callback")],
    });
    for (oid, username) in [("0b1c", ACCOUNT), ("9f8e", OTHER_ACCOUNT)] {
        identity.add_account(FakeAccount {
            tenant: TENANT.into(),
            oid: format!("{oid}0000-0000-4000-8000-000000000000"),
            username: username.into(),
            name: username.into(),
        });
    }
    identity.set_auto_consent(Some(ACCOUNT));
    tokio::spawn(serve_on(
        listener,
        broker.clone(),
        ServeOptions {
            refresh_every: None,
        },
    ));
    TestBroker {
        url,
        broker,
        store,
        clock,
        identity,
        client_secret,
        store_arg,
        _dir: dir,
    }
}

/// A connection id no other test uses (tests share one moto server).
pub fn unique_id(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

impl TestBroker {
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
        ];
        argv.extend(args.iter().map(|a| a.to_string()));
        let cli = Cli::try_parse_from(argv).map_err(|e| e.to_string())?;
        let mut out = Vec::new();
        let mut input = std::io::Cursor::new(stdin.as_bytes().to_vec());
        roomtoken_cli::run(cli, &mut input, &mut out)
            .await
            .map_err(|e| format!("{e:#}"))?;
        Ok(String::from_utf8(out).expect("utf-8 output"))
    }

    /// `connection add` for the fake's tenant with EWS and Graph.
    pub async fn add_connection(&self, id: &str) {
        let authority = self.identity.base_url().to_string();
        self.cli(
            &[
                "connection",
                "add",
                id,
                "--tenant",
                TENANT,
                "--client-id",
                CLIENT_ID,
                "--client-secret-stdin",
                "--resources",
                "ews,graph",
                "--authority",
                &authority,
            ],
            &self.client_secret,
        )
        .await
        .expect("connection add");
    }

    pub async fn link(&self, id: &str) -> String {
        self.cli(&["link", id], "")
            .await
            .expect("link")
            .trim()
            .to_owned()
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
        let start = http().get(&link).send().await.expect("GET link");
        assert_eq!(start.status(), 302, "connect-start redirects");
        let cookie = set_cookie(&start).expect("consent cookie");
        let authorize = location(&start);
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

    /// Moves the broker's clock past the read cache's TTL: whatever it
    /// read before is read again from the store.
    pub fn expire_read_cache(&self) {
        self.clock
            .advance(self.broker.config.read_cache_ttl + std::time::Duration::from_secs(1));
    }

    /// A connection added, consented by the booking account, with one key.
    pub async fn connected(&self, prefix: &str) -> (String, String) {
        let id = unique_id(prefix);
        self.add_connection(&id).await;
        let consent = self.consent(&id).await;
        assert_eq!(consent.status, 200, "{}", consent.body);
        let key = self.create_key(&id).await;
        (id, key)
    }

    /// Every secret this test saw: what the fake issued, the client secret,
    /// and the given device keys.
    pub fn secrets(&self, device_keys: &[&str]) -> Vec<String> {
        let mut secrets = self.identity.issued_secrets();
        secrets.push(self.client_secret.clone());
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
            .with_env_filter(tracing_subscriber::EnvFilter::new("debug,roomtoken=trace"))
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .try_init();
        buffer
    });
}

pub fn captured_logs() -> String {
    let buffer = LOGS.get().expect("capture_logs was called");
    String::from_utf8_lossy(&buffer.lock().expect("log buffer")).into_owned()
}

/// Fails naming the kind of secret (never the secret) found in the logs.
pub fn assert_no_secret_logged(secrets: &[String]) {
    let logs = captured_logs();
    assert!(
        !logs.is_empty(),
        "the log capture saw nothing: it is not wired"
    );
    for (n, secret) in secrets.iter().enumerate() {
        assert!(
            secret.len() < 8 || !logs.contains(secret.as_str()),
            "secret #{n} (of {} chars, starting {:?}) appears in the logs",
            secret.len(),
            &secret[..secret.len().min(8)]
        );
    }
}

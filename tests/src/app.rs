//! [`TestApp`]: a served broker and what a test does with it (add,
//! consent, keys, reads, status, the CLI in-process).

use super::*;

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
    pub(crate) secret_prefix: String,
    /// The signing key, and the invites and sealed cookies this test saw:
    /// secrets too, for the log-leak checks.
    pub(crate) signing_key: String,
    pub(crate) device_key_secret: String,
    pub(crate) seen: Mutex<Vec<String>>,
    pub(crate) _dir: tempfile::TempDir,
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

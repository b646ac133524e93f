//! A faithful fake of the Microsoft identity platform v2.0, served by axum on
//! loopback, for integration tests (in-process) and `roomtoken demo`.
//!
//! Endpoints are Microsoft-shaped under [`FakeIdentity::base_url`]:
//!
//! - `GET|POST {base}/{tenant}/oauth2/v2.0/authorize` (sign-in page or auto-consent)
//! - `POST {base}/{tenant}/oauth2/v2.0/token` (authorization code + PKCE S256,
//!   refresh token with rotation, client credentials)
//! - `GET {base}/{tenant}/v2.0/.well-known/openid-configuration` (a subset)
//!
//! Errors carry Microsoft's body shape (`error`, `error_description` starting
//! with `AADSTSnnn:`, `error_codes`, `timestamp`, `trace_id`, `correlation_id`,
//! `error_uri`, optional `suberror`). Faults can be queued with
//! [`FakeIdentity::inject`].

mod assertion;
mod errors;
mod jwt;
mod model;
mod pages;
mod params;
mod pkce;
mod routes;
mod scopes;
mod server;
mod state;

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::oneshot;
use url::Url;

pub use model::{Counters, FakeAccount, FakeApp, Fault, FaultTarget, GrantType, IssuedAccessToken};

pub use pkce::pkce_challenge;
use state::{AccountRecord, Shared, key};

/// A running fake identity platform. Cheap to clone; the server stops when the
/// last clone is dropped.
#[derive(Clone)]
pub struct FakeIdentity {
    shared: Arc<Shared>,
    /// Dropping the last clone drops the sender, which stops the server.
    _stop: Arc<oneshot::Sender<()>>,
}

impl fmt::Debug for FakeIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FakeIdentity")
            .field("base_url", &self.shared.base.as_str())
            .finish_non_exhaustive()
    }
}

impl FakeIdentity {
    /// Binds 127.0.0.1:0, spawns the axum server on the current tokio runtime,
    /// returns once listening.
    pub async fn start() -> std::io::Result<FakeIdentity> {
        Self::start_on(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).await
    }

    /// Like [`FakeIdentity::start`] on a chosen address (e.g. a fixed port for a demo).
    pub async fn start_on(addr: SocketAddr) -> std::io::Result<FakeIdentity> {
        let (shared, stop) = server::spawn(addr).await?;
        Ok(FakeIdentity {
            shared,
            _stop: Arc::new(stop),
        })
    }

    /// `http://127.0.0.1:PORT/`, the authority host.
    pub fn base_url(&self) -> Url {
        self.shared.base.clone()
    }

    /// `{base}/{tenant}/oauth2/v2.0/authorize`.
    pub fn authorize_url(&self, tenant: &str) -> Url {
        self.shared.endpoint(tenant, "authorize")
    }

    /// `{base}/{tenant}/oauth2/v2.0/token`.
    pub fn token_url(&self, tenant: &str) -> Url {
        self.shared.endpoint(tenant, "token")
    }

    /// Registers (or replaces) an app in its tenant; the tenant becomes known.
    pub fn register_app(&self, app: FakeApp) {
        let k = (key(&app.tenant), key(&app.client_id));
        self.shared.lock().apps.insert(k, app);
    }

    /// Adds a client secret to a registered app: both work, as in Entra ID
    /// while a secret is rotated.
    pub fn add_client_secret(&self, client_id: &str, secret: &str) {
        let mut st = self.shared.lock();
        st.removed_secrets.remove(secret);
        st.more_secrets
            .entry(key(client_id))
            .or_default()
            .push(secret.to_owned());
    }

    /// Deletes a client secret from its app: AADSTS7000215 from then on.
    pub fn remove_client_secret(&self, secret: &str) {
        self.shared.lock().removed_secrets.insert(secret.to_owned());
    }

    /// Uploads a certificate (PEM) to the app `client_id`: client assertions
    /// signed with its key authenticate the app from then on.
    pub fn add_certificate(&self, client_id: &str, cert_pem: &str) -> Result<(), String> {
        let certificate = assertion::RegisteredCertificate::from_pem(cert_pem)?;
        self.shared
            .lock()
            .certificates
            .entry(key(client_id))
            .or_default()
            .push(certificate);
        Ok(())
    }

    /// Deletes every certificate of the app `client_id`.
    pub fn remove_certificates(&self, client_id: &str) {
        self.shared.lock().certificates.remove(&key(client_id));
    }

    /// A client secret reaches its expiry: AADSTS7000222 from then on.
    pub fn expire_client_secret(&self, secret: &str) {
        self.shared.lock().expired_secrets.insert(secret.to_owned());
    }

    /// Adds (or replaces) an account in its tenant; the tenant becomes known.
    pub fn add_account(&self, account: FakeAccount) {
        let mut st = self.shared.lock();
        let k = key(&account.username);
        let (valid_from_seq, valid_from) = st
            .accounts
            .get(&k)
            .map(|r| (r.tokens_valid_from_seq, r.tokens_valid_from))
            .unwrap_or((0, None));
        st.accounts.insert(
            k,
            AccountRecord {
                account,
                tokens_valid_from_seq: valid_from_seq,
                tokens_valid_from: valid_from,
            },
        );
    }

    /// When `Some(username)`, GET authorize immediately 302s to the redirect_uri
    /// with a code for that account (auto-consent). When `None` (default), GET
    /// authorize renders a sign-in page: a `<form method=post>` with hidden
    /// fields, a `<select name="username">` and submit button `id="signin"`,
    /// one button per account `id="signin-{username}"`, and `id="cancel"`
    /// (redirects back with `error=access_denied`, AADSTS65004).
    pub fn set_auto_consent(&self, username: Option<&str>) {
        self.shared.lock().auto_consent = username.map(key);
    }

    /// When `Some(username)`, GET adminconsent answers at once as that
    /// account (accepting if it is an admin). When `None` (default), it
    /// renders a page with one accept button per account
    /// (`id="accept-{username}"`) and `id="cancel"` (`error=access_denied`).
    pub fn set_auto_admin_consent(&self, username: Option<&str>) {
        self.shared.lock().auto_admin_consent = username.map(key);
    }

    /// `{base}/{tenant}/v2.0/adminconsent`.
    pub fn admin_consent_url(&self, tenant: &str) -> Url {
        self.shared.admin_consent_endpoint(tenant)
    }

    /// A verified domain of `tenant`: paths may name the tenant by it, and
    /// its discovery document answers with the tenant's id.
    pub fn add_domain(&self, tenant: &str, domain: &str) {
        self.shared
            .lock()
            .domains
            .insert(key(domain), tenant.to_owned());
    }

    /// Puts `tenant` in another national cloud: its discovery document
    /// names `instance_name` (`microsoftonline.us`, `partner.microsoftonline.cn`)
    /// as Microsoft's does when asked about a tenant of another cloud.
    pub fn set_tenant_cloud(&self, tenant: &str, instance_name: &str) {
        self.shared
            .lock()
            .tenant_clouds
            .insert(key(tenant), instance_name.to_owned());
    }

    /// What `tenant` consented to for `client_id` (full scope URIs,
    /// lower-case, sorted); empty before any consent.
    pub fn consents(&self, tenant: &str, client_id: &str) -> Vec<String> {
        self.shared
            .lock()
            .consents
            .get(&(key(tenant), key(client_id)))
            .map(|granted| granted.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// The customer's admin deletes the app's enterprise application
    /// (service principal) from `tenant`: every consent given there is
    /// gone, and client credentials there answer AADSTS7000229.
    pub fn remove_service_principal(&self, tenant: &str, client_id: &str) {
        let mut st = self.shared.lock();
        let service_principal = (key(tenant), key(client_id));
        st.consents.remove(&service_principal);
        st.app_roles.remove(&service_principal);
    }

    /// The app's configured application permissions (full URIs, as
    /// `https://graph.microsoft.com/Calendars.ReadWrite`): what an admin
    /// consent with `.default` assigns as app roles in the admin's tenant.
    pub fn set_application_permissions(&self, client_id: &str, permissions: &[&str]) {
        self.shared.lock().application_permissions.insert(
            key(client_id),
            permissions.iter().map(|p| (*p).to_owned()).collect(),
        );
    }

    /// A customer's admin withdraws every application permission of the
    /// app in `tenant`, keeping its enterprise application: tokens are
    /// still issued there, without `roles`.
    pub fn withdraw_application_permissions(&self, tenant: &str, client_id: &str) {
        self.shared
            .lock()
            .app_roles
            .remove(&(key(tenant), key(client_id)));
    }

    /// Access token lifetime (default 3600 s), reflected in `expires_in`.
    pub fn set_access_token_lifetime(&self, d: Duration) {
        self.shared.lock().access_token_lifetime = d;
    }

    /// Authorization code lifetime (default 10 minutes), to test expired codes.
    pub fn set_code_lifetime(&self, d: Duration) {
        self.shared.lock().code_lifetime = d;
    }

    /// Delay added before every token response.
    pub fn set_latency(&self, d: Duration) {
        self.shared.lock().latency = d;
    }

    /// Queues a fault for the next token request that passes every check,
    /// whoever sends it (FIFO).
    pub fn inject(&self, fault: Fault) {
        self.inject_for(FaultTarget::any(), fault);
    }

    /// Queues a fault for the next token request `target` matches, once it
    /// passed every check: one connection's refresh, say, while the others
    /// are answered normally.
    pub fn inject_for(&self, target: FaultTarget, fault: Fault) {
        self.shared.lock().faults.push_back((target, fault));
    }

    /// Answers no refresh request until `count` of them arrived, then all
    /// at once (30 s at most): the requests of concurrent refreshes all
    /// reach the provider before any of them is answered, whatever the
    /// scheduling, so the race after the answer always happens.
    pub fn gate_refreshes(&self, count: usize) {
        self.shared.lock().refresh_gate =
            (count > 0).then(|| (Arc::new(tokio::sync::Barrier::new(count)), count));
    }

    /// Faults still queued.
    pub fn queued_faults(&self) -> usize {
        self.shared.lock().faults.len()
    }

    /// Moves the fake's clock forward: codes, access tokens and idle
    /// refresh tokens (90 days, AADSTS700082) expire by it.
    pub fn advance_clock(&self, by: Duration) {
        self.shared.lock().clock_offset += by;
    }

    /// The fake's time (the machine's, plus what [`Self::advance_clock`] added).
    pub fn now(&self) -> SystemTime {
        self.shared.lock().now()
    }

    /// Invites `username` (an account of another tenant) into `tenant` as a
    /// guest (B2B): it may sign in there, and its tokens and id_token are
    /// that tenant's (`tid`), with its guest object id (`oid`) and its home
    /// username.
    pub fn add_guest(&self, tenant: &str, username: &str, guest_oid: &str) {
        self.shared
            .lock()
            .guests
            .insert((key(tenant), key(username)), guest_oid.to_owned());
    }

    /// Drops all queued faults.
    pub fn clear_faults(&self) {
        self.shared.lock().faults.clear();
    }

    /// Revokes every refresh token issued so far to this account (like a
    /// password reset): later use gets `invalid_grant` AADSTS50173. Tokens
    /// issued after a new sign-in work.
    pub fn revoke_account(&self, username: &str) {
        let mut st = self.shared.lock();
        let now = st.now();
        st.revoke(username, now);
    }

    /// A snapshot of the counters.
    pub fn counters(&self) -> Counters {
        self.shared.lock().counters.clone()
    }

    /// Every secret value the fake ever issued (codes, access tokens, refresh
    /// tokens, id_tokens) or was given to bind a sign-in (`state`, `nonce`,
    /// the PKCE verifier), for log-leak tests.
    pub fn issued_secrets(&self) -> Vec<String> {
        self.shared.lock().issued_secrets.clone()
    }

    /// Issues a refresh token as if `username` had signed in to `client_id`
    /// and consented `scope`, without the sign-in: benchmarks seed thousands
    /// of grants with it.
    pub fn seed_refresh_token(
        &self,
        tenant: &str,
        client_id: &str,
        username: &str,
        scope: &str,
    ) -> String {
        let mut st = self.shared.lock();
        let consented = st
            .app_seen_from(tenant, client_id)
            .map(|app| routes::authorize::needed_consent(app, scope))
            .unwrap_or_default();
        st.record_user_consent(tenant, client_id, username, &consented);
        let now = st.now();
        st.issue_refresh_token(tenant, client_id, username, scope, now)
    }

    /// The newest refresh token issued to `client_id` for `username`, if any.
    pub fn newest_refresh_token(&self, client_id: &str, username: &str) -> Option<String> {
        self.shared
            .lock()
            .newest_refresh
            .get(&(key(client_id), key(username)))
            .cloned()
    }

    /// Facts about an access token if the fake issued it and it is unexpired.
    pub fn access_token_info(&self, token: &str) -> Option<IssuedAccessToken> {
        let st = self.shared.lock();
        st.access_tokens
            .get(token)
            .filter(|t| t.expires_at > st.now())
            .cloned()
    }
}

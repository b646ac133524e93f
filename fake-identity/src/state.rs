//! The fake's mutable state: registrations, outstanding grants, issued tokens,
//! counters, faults and knobs. Guarded by one mutex, never held across `.await`.
//! Over 500 lines: every invariant the fake keeps (codes redeem once,
//! refresh tokens rotate and expire) lives beside the one lock that guards it.

use std::collections::BTreeSet;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use url::Url;

use crate::model::{
    Counters, FakeAccount, FakeApp, Fault, FaultTarget, GrantType, IssuedAccessToken,
};
use crate::scopes::ResourceScopes;

/// Default access token lifetime (reflected in `expires_in`).
pub(crate) const DEFAULT_ACCESS_TOKEN_LIFETIME: Duration = Duration::from_secs(3600);
/// Authorization codes live about 10 minutes.
pub(crate) const DEFAULT_CODE_LIFETIME: Duration = Duration::from_secs(600);
/// A refresh token not redeemed for this long expires (AADSTS700082).
pub(crate) const REFRESH_TOKEN_MAX_IDLE: Duration = Duration::from_secs(90 * 86_400);

/// Shared between the public handle and the HTTP handlers.
pub(crate) struct Shared {
    /// Authority base, `http://127.0.0.1:PORT/`.
    pub base: Url,
    state: Mutex<State>,
}

impl Shared {
    pub fn new(base: Url) -> Self {
        Self {
            base,
            state: Mutex::new(State::default()),
        }
    }

    /// Locks the state.
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .expect("fake identity state mutex poisoned")
    }

    /// The authority without trailing slash, e.g. `http://127.0.0.1:1234`.
    pub fn base_str(&self) -> &str {
        self.base.as_str().trim_end_matches('/')
    }

    /// `{base}/{tenant}/v2.0/adminconsent`.
    pub fn admin_consent_endpoint(&self, tenant: &str) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut segments) = url.path_segments_mut() {
            segments
                .pop_if_empty()
                .push(tenant)
                .extend(["v2.0", "adminconsent"]);
        }
        url
    }

    /// `{base}/{tenant}/oauth2/v2.0/{leaf}`.
    pub fn endpoint(&self, tenant: &str, leaf: &str) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut segments) = url.path_segments_mut() {
            segments
                .pop_if_empty()
                .push(tenant)
                .extend(["oauth2", "v2.0", leaf]);
        }
        url
    }
}

/// An account plus its revocation watermark.
pub(crate) struct AccountRecord {
    pub account: FakeAccount,
    /// Refresh tokens with a lower sequence number are revoked.
    pub tokens_valid_from_seq: u64,
    /// When the account was last revoked (for the AADSTS50173 text).
    pub tokens_valid_from: Option<SystemTime>,
}

/// An outstanding authorization code.
pub(crate) struct CodeGrant {
    pub tenant: String,
    pub client_id: String,
    pub redirect_uri: String,
    pub code_challenge: String,
    pub nonce: Option<String>,
    /// The `scope` value given at authorize.
    pub scope: String,
    pub username: String,
    pub expires_at: SystemTime,
    pub redeemed: bool,
}

/// An issued refresh token.
pub(crate) struct RefreshGrant {
    pub tenant: String,
    pub client_id: String,
    pub username: String,
    /// The `scope` consented at authorize; used when a refresh omits `scope`.
    pub consented_scope: String,
    pub issued_seq: u64,
    pub issued_at: SystemTime,
    pub successful_redemptions: u64,
}

/// Everything the fake remembers.
pub(crate) struct State {
    /// Keyed by (lower-case tenant, lower-case client id).
    pub apps: HashMap<(String, String), FakeApp>,
    /// Keyed by lower-case username.
    pub accounts: HashMap<String, AccountRecord>,
    pub codes: HashMap<String, CodeGrant>,
    pub refresh_tokens: HashMap<String, RefreshGrant>,
    pub access_tokens: HashMap<String, IssuedAccessToken>,
    /// Keyed by (lower-case client id, lower-case username).
    pub newest_refresh: HashMap<(String, String), String>,
    pub issued_secrets: Vec<String>,
    pub counters: Counters,
    /// Queued faults in injection order, each for the requests it targets.
    pub faults: VecDeque<(FaultTarget, Fault)>,
    /// Lower-case username to sign in without showing a page.
    pub auto_consent: Option<String>,
    /// Lower-case username of the admin who grants admin consent without a page.
    pub auto_admin_consent: Option<String>,
    /// What each tenant consented to per app (its service principal's
    /// grants), keyed by (lower-case tenant, lower-case client id): full
    /// scope URIs, lower-case.
    pub consents: HashMap<(String, String), BTreeSet<String>>,
    /// What each user consented to per app at sign-in, keyed by
    /// (lower-case tenant, lower-case client id, lower-case username): full
    /// scope URIs, lower-case.
    pub user_consents: HashMap<(String, String, String), BTreeSet<String>>,
    /// Guest (B2B) accounts: (lower-case resource tenant, lower-case home
    /// username) to the guest's object id in that tenant.
    pub guests: HashMap<(String, String), String>,
    /// How far the fake's clock runs ahead of the machine's.
    pub clock_offset: Duration,
    /// Holds refresh answers until this many refresh requests arrived:
    /// the barrier they wait on, and how many are still to come.
    pub refresh_gate: Option<(std::sync::Arc<tokio::sync::Barrier>, usize)>,
    /// Verified domains: lower-case domain to tenant id.
    pub domains: HashMap<String, String>,
    /// Tenants of another national cloud: tenant id to the
    /// `cloud_instance_name` their discovery document names (global,
    /// `microsoftonline.com`, otherwise).
    pub tenant_clouds: HashMap<String, String>,
    pub access_token_lifetime: Duration,
    pub code_lifetime: Duration,
    pub latency: Duration,
    /// Monotonic issue counter for refresh tokens and revocations.
    pub seq: u64,
    /// An app's client secrets beside its registered one, as *Certificates
    /// & secrets* can hold several: lower-case client id to secret values.
    pub more_secrets: HashMap<String, Vec<String>>,
    /// Secrets deleted from their app (AADSTS7000215 from then on).
    pub removed_secrets: HashSet<String>,
    /// Secrets past their expiry (AADSTS7000222).
    pub expired_secrets: HashSet<String>,
    /// Certificates uploaded per app, keyed by lower-case client id.
    pub certificates: HashMap<String, Vec<crate::assertion::RegisteredCertificate>>,
    /// Client assertion ids already used, with when each may be forgotten
    /// (Unix seconds: its expiry plus the clock skew).
    pub used_jtis: HashMap<String, i64>,
    /// Each app's configured application permissions (app roles of other
    /// APIs), keyed by lower-case client id: full URIs, as
    /// `https://graph.microsoft.com/Calendars.ReadWrite`.
    pub application_permissions: HashMap<String, Vec<String>>,
    /// The app roles an admin's consent assigned to an app's service
    /// principal in a tenant, keyed by (lower-case tenant, lower-case
    /// client id): full URIs. Client-credentials tokens carry them as
    /// `roles`; an app that exists in a tenant but was never granted there
    /// gets tokens without the claim.
    pub app_roles: HashMap<(String, String), BTreeSet<String>>,
}

impl Default for State {
    fn default() -> Self {
        Self {
            apps: HashMap::new(),
            more_secrets: HashMap::new(),
            removed_secrets: HashSet::new(),
            expired_secrets: HashSet::new(),
            certificates: HashMap::new(),
            used_jtis: HashMap::new(),
            application_permissions: HashMap::new(),
            app_roles: HashMap::new(),
            accounts: HashMap::new(),
            codes: HashMap::new(),
            refresh_tokens: HashMap::new(),
            access_tokens: HashMap::new(),
            newest_refresh: HashMap::new(),
            issued_secrets: Vec::new(),
            counters: Counters::default(),
            faults: VecDeque::new(),
            auto_consent: None,
            auto_admin_consent: None,
            consents: HashMap::new(),
            user_consents: HashMap::new(),
            guests: HashMap::new(),
            clock_offset: Duration::ZERO,
            refresh_gate: None,
            domains: HashMap::new(),
            tenant_clouds: HashMap::new(),
            access_token_lifetime: DEFAULT_ACCESS_TOKEN_LIFETIME,
            code_lifetime: DEFAULT_CODE_LIFETIME,
            latency: Duration::ZERO,
            seq: 0,
        }
    }
}

/// Case-insensitive key for tenants, client ids and usernames.
pub(crate) fn key(s: &str) -> String {
    s.to_ascii_lowercase()
}

/// `common`, `organizations` and `consumers` are not tenants.
pub(crate) fn is_tenant_alias(tenant: &str) -> bool {
    matches!(
        key(tenant).as_str(),
        "common" | "organizations" | "consumers"
    )
}

/// The aliases a multi-tenant (work accounts) app may use.
pub(crate) fn is_work_alias(tenant: &str) -> bool {
    matches!(key(tenant).as_str(), "common" | "organizations")
}

impl State {
    /// The fake's time: the machine's, plus what the tests advanced.
    pub fn now(&self) -> SystemTime {
        SystemTime::now() + self.clock_offset
    }

    /// Takes the first queued fault aimed at a validated request of
    /// `client_id` for `username` (empty for app-only) with `grant_type`.
    pub fn take_fault(
        &mut self,
        client_id: &str,
        username: &str,
        grant_type: GrantType,
    ) -> Option<Fault> {
        let index = self
            .faults
            .iter()
            .position(|(target, _)| target.matches(client_id, username, grant_type))?;
        let (_, fault) = self.faults.remove(index)?;
        self.counters.faults_served += 1;
        Some(fault)
    }

    /// Records that `username` consented to `scopes` for `client_id`.
    pub fn record_user_consent(
        &mut self,
        tenant: &str,
        client_id: &str,
        username: &str,
        scopes: &[String],
    ) {
        self.user_consents
            .entry((key(tenant), key(client_id), key(username)))
            .or_default()
            .extend(scopes.iter().map(|s| key(s)));
    }

    /// Whether `username` (signed in to `tenant`) may get tokens for
    /// `scopes` of `app`: each one consented by the user at sign-in or by
    /// an admin for the whole tenant.
    pub fn may_use(&self, tenant: &str, app: &FakeApp, username: &str, scopes: &[String]) -> bool {
        let by_user = self
            .user_consents
            .get(&(key(tenant), key(&app.client_id), key(username)));
        let by_admin = self.consents.get(&(key(tenant), key(&app.client_id)));
        scopes.iter().all(|s| {
            let s = key(s);
            by_user.is_some_and(|g| g.contains(&s)) || by_admin.is_some_and(|g| g.contains(&s))
        })
    }

    /// The account as `tenant` sees it: the account itself in its home
    /// tenant, or its guest (B2B) identity in a tenant that invited it.
    pub fn account_seen_in(&self, tenant: &str, username: &str) -> Option<FakeAccount> {
        let record = self.accounts.get(&key(username))?;
        if key(&record.account.tenant) == key(tenant) {
            return Some(record.account.clone());
        }
        let guest_oid = self.guests.get(&(key(tenant), key(username)))?;
        Some(FakeAccount {
            tenant: tenant.to_owned(),
            oid: guest_oid.clone(),
            admin: false,
            ..record.account.clone()
        })
    }

    /// The tenant id a path names: itself, or the tenant of a verified
    /// domain (Microsoft accepts `contoso.com` wherever a tenant id goes).
    pub fn resolve<'a>(&'a self, tenant: &'a str) -> &'a str {
        self.domains
            .get(&key(tenant))
            .map(String::as_str)
            .unwrap_or(tenant)
    }

    /// A multi-tenant app registered (in its home tenant) as `client_id`.
    /// The certificates registered for `client_id`.
    pub fn certificates_of(&self, client_id: &str) -> Vec<crate::assertion::RegisteredCertificate> {
        self.certificates
            .get(&key(client_id))
            .cloned()
            .unwrap_or_default()
    }

    /// Records a client assertion's `jti`; `false` when it was used before.
    pub fn spend_jti(&mut self, jti: &str, keep_until: i64, now: i64) -> bool {
        self.used_jtis.retain(|_, until| *until >= now);
        self.used_jtis.insert(jti.to_owned(), keep_until).is_none()
    }

    pub fn multi_tenant_app(&self, client_id: &str) -> Option<&FakeApp> {
        self.apps
            .values()
            .find(|app| app.multi_tenant && key(&app.client_id) == key(client_id))
    }

    /// The app `client_id` as `tenant` sees it: registered there, or a
    /// multi-tenant app when `tenant` is a work alias or has consented to it
    /// (it has a service principal there).
    /// Whether `secret` is one of `app`'s secrets and has not been deleted.
    pub fn secret_of(&self, app: &FakeApp, secret: &str) -> bool {
        let registered = secret == app.client_secret
            || self
                .more_secrets
                .get(&key(&app.client_id))
                .is_some_and(|more| more.iter().any(|s| s == secret));
        registered && !self.removed_secrets.contains(secret)
    }

    pub fn app_seen_from(&self, tenant: &str, client_id: &str) -> Option<&FakeApp> {
        self.app(tenant, client_id).or_else(|| {
            self.multi_tenant_app(client_id).filter(|_| {
                is_work_alias(tenant) || self.consents.contains_key(&(key(tenant), key(client_id)))
            })
        })
    }

    /// Whether `tenant` consented to every scope in `scopes` for `client_id`;
    /// an app's own tenant needs no consent in the fake.
    pub fn has_consented(&self, tenant: &str, app: &FakeApp, scopes: &[String]) -> bool {
        if key(&app.tenant) == key(tenant) {
            return true;
        }
        self.consents
            .get(&(key(tenant), key(&app.client_id)))
            .is_some_and(|granted| scopes.iter().all(|s| granted.contains(&key(s))))
    }

    /// Whether any app or account lives in this tenant.
    pub fn knows_tenant(&self, tenant: &str) -> bool {
        let t = key(self.resolve(tenant));
        self.apps.keys().any(|(at, _)| *at == t)
            || self.accounts.values().any(|a| key(&a.account.tenant) == t)
    }

    /// The app registered as `client_id` in `tenant`.
    pub fn app(&self, tenant: &str, client_id: &str) -> Option<&FakeApp> {
        self.apps.get(&(key(tenant), key(client_id)))
    }

    /// The account `username` if it belongs to `tenant`.
    pub fn account_in(&self, tenant: &str, username: &str) -> Option<&AccountRecord> {
        self.accounts
            .get(&key(username))
            .filter(|a| key(&a.account.tenant) == key(tenant))
    }

    /// Every account of every tenant, sorted by username (who may sign in
    /// through `/organizations/`).
    pub fn work_accounts(&self) -> Vec<FakeAccount> {
        let mut v: Vec<FakeAccount> = self.accounts.values().map(|a| a.account.clone()).collect();
        v.sort_by_key(|a| key(&a.username));
        v
    }

    /// Accounts of `tenant`, members and guests, sorted by username.
    pub fn accounts_of(&self, tenant: &str) -> Vec<FakeAccount> {
        let mut v: Vec<FakeAccount> = self
            .accounts
            .values()
            .filter_map(|a| self.account_seen_in(tenant, &a.account.username))
            .collect();
        v.sort_by_key(|a| key(&a.username));
        v
    }

    /// A fresh random secret with `prefix`, remembered for leak tests.
    pub fn mint(&mut self, prefix: &str) -> String {
        let mut bytes = [0u8; 24];
        rand::rng().fill_bytes(&mut bytes);
        let value = format!("{prefix}{}", URL_SAFE_NO_PAD.encode(bytes));
        self.issued_secrets.push(value.clone());
        value
    }

    /// Remembers a non-random-prefixed secret (id_tokens).
    pub fn remember_secret(&mut self, value: &str) {
        self.issued_secrets.push(value.to_owned());
    }

    /// Issues an authorization code.
    pub fn issue_code(&mut self, grant: CodeGrant) -> String {
        let code = self.mint("fake-code-");
        self.codes.insert(code.clone(), grant);
        code
    }

    /// Issues an access token for `resource`.
    pub fn issue_access_token(
        &mut self,
        tenant: &str,
        client_id: &str,
        username: &str,
        resource: &ResourceScopes,
        now: SystemTime,
    ) -> String {
        let token = self.mint("fake-at-");
        self.record_access_token(&token, tenant, client_id, username, resource, now);
        token
    }

    /// Remembers what `token` was issued for, so that it can be looked up.
    fn record_access_token(
        &mut self,
        token: &str,
        tenant: &str,
        client_id: &str,
        username: &str,
        resource: &ResourceScopes,
        now: SystemTime,
    ) {
        self.access_tokens.insert(
            token.to_owned(),
            IssuedAccessToken {
                username: username.to_owned(),
                scope: resource.joined(),
                resource: resource.resource.clone(),
                expires_at: now + self.access_token_lifetime,
                client_id: client_id.to_owned(),
                tenant: tenant.to_owned(),
            },
        );
    }

    /// Issues an app-only access token for `resource` as Entra ID shapes
    /// one: a JWT whose `roles` are the app roles of that resource assigned
    /// in `tenant` (no claim when there are none). Its signature is random
    /// bytes: nobody but the resource checks it.
    pub fn issue_app_access_token(
        &mut self,
        tenant: &str,
        client_id: &str,
        resource: &ResourceScopes,
        now: SystemTime,
    ) -> String {
        let prefix = format!("{}/", resource.resource.to_ascii_lowercase());
        let roles: Vec<String> = self
            .app_roles
            .get(&(key(tenant), key(client_id)))
            .into_iter()
            .flatten()
            .filter_map(|uri| {
                let role = uri.get(prefix.len()..)?;
                uri.to_ascii_lowercase()
                    .starts_with(&prefix)
                    .then(|| role.to_owned())
            })
            .collect();
        let issued_at = now
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default();
        let mut claims = serde_json::json!({
            "aud": resource.resource,
            "iss": format!("https://sts.windows.net/{tenant}/"),
            "iat": issued_at,
            "nbf": issued_at,
            "exp": issued_at + self.access_token_lifetime.as_secs(),
            "appid": client_id,
            "idtyp": "app",
            "tid": tenant,
            "ver": "1.0",
        });
        if let (false, Some(object)) = (roles.is_empty(), claims.as_object_mut()) {
            object.insert("roles".into(), serde_json::json!(roles));
        }
        let encode = |value: &serde_json::Value| URL_SAFE_NO_PAD.encode(value.to_string());
        let signature = self.mint("");
        let token = format!(
            "{}.{}.{signature}",
            encode(&serde_json::json!({"typ": "JWT", "alg": "RS256", "kid": "fake"})),
            encode(&claims)
        );
        self.remember_secret(&token);
        self.record_access_token(&token, tenant, client_id, "", resource, now);
        token
    }

    /// Issues a refresh token and records it as the newest for (client, user).
    pub fn issue_refresh_token(
        &mut self,
        tenant: &str,
        client_id: &str,
        username: &str,
        consented_scope: &str,
        now: SystemTime,
    ) -> String {
        let token = self.mint("fake-rt-");
        self.seq += 1;
        self.refresh_tokens.insert(
            token.clone(),
            RefreshGrant {
                tenant: tenant.to_owned(),
                client_id: client_id.to_owned(),
                username: key(username),
                consented_scope: consented_scope.to_owned(),
                issued_seq: self.seq,
                issued_at: now,
                successful_redemptions: 0,
            },
        );
        self.newest_refresh
            .insert((key(client_id), key(username)), token.clone());
        token
    }

    /// Revokes every refresh token issued so far to `username`.
    pub fn revoke(&mut self, username: &str, now: SystemTime) {
        self.seq += 1;
        let seq = self.seq;
        if let Some(record) = self.accounts.get_mut(&key(username)) {
            record.tokens_valid_from_seq = seq + 1;
            record.tokens_valid_from = Some(now);
        }
    }
}

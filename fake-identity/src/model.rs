//! Public data types: registrations, counters, issued-token facts and faults.

use std::fmt;
use std::time::{Duration, SystemTime};

/// An app registration in one tenant.
///
/// An empty `client_secret` makes the app a public client: it must then *not*
/// present a secret (Microsoft answers AADSTS700025 if it does).
#[derive(Clone)]
pub struct FakeApp {
    /// Directory (tenant) id the app is registered in, usually a GUID.
    pub tenant: String,
    /// Application (client) id.
    pub client_id: String,
    /// Client secret value; empty for a public client.
    pub client_secret: String,
    /// Registered redirect URIs; authorize requests must use one of them exactly.
    pub redirect_uris: Vec<String>,
    /// "Accounts in any organizational directory": other tenants may sign
    /// in through `/organizations/`, once they have consented.
    pub multi_tenant: bool,
    /// The configured API permissions (full scope URIs): what admin consent
    /// with `{resource}/.default` grants in a customer tenant.
    pub permissions: Vec<String>,
}

impl fmt::Debug for FakeApp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FakeApp")
            .field("tenant", &self.tenant)
            .field("client_id", &self.client_id)
            .field("client_secret", &"<redacted>")
            .field("redirect_uris", &self.redirect_uris)
            .field("multi_tenant", &self.multi_tenant)
            .field("permissions", &self.permissions)
            .finish()
    }
}

/// A user account that can sign in.
#[derive(Clone, Debug)]
pub struct FakeAccount {
    /// Home tenant id of the account.
    pub tenant: String,
    /// Object id (becomes the `oid` claim).
    pub oid: String,
    /// User principal name, e.g. `booking@contoso.example` (`preferred_username`).
    pub username: String,
    /// Display name (`name` claim).
    pub name: String,
    /// Holds an administrator role in its tenant: may grant admin consent.
    pub admin: bool,
}

/// What the fake knows about an access token it issued.
#[derive(Clone, Debug)]
pub struct IssuedAccessToken {
    /// Account the token was issued for; empty for app-only (client credentials) tokens.
    pub username: String,
    /// Resource scopes the token carries, full URIs, space separated
    /// (no `openid`/`profile`/`offline_access`/`email`).
    pub scope: String,
    /// The resource (audience), e.g. `https://outlook.office365.com`.
    pub resource: String,
    /// When the token stops being valid.
    pub expires_at: SystemTime,
    /// Client the token was issued to.
    pub client_id: String,
    /// Tenant the token was issued in.
    pub tenant: String,
}

/// Snapshot of what the fake has seen.
#[derive(Clone, Debug, Default)]
pub struct Counters {
    /// GET requests to `/authorize` (the sign-in page's POST is not counted).
    pub authorize_requests: u64,
    /// All POSTs to `/token`, including faulted ones.
    pub token_requests: u64,
    /// Token requests with `grant_type=authorization_code` that were not
    /// answered with an injected fault, successful or not.
    pub authorization_code_grants: u64,
    /// Token requests with `grant_type=refresh_token` that were not
    /// answered with an injected fault, successful or not.
    pub refresh_token_grants: u64,
    /// Token requests with `grant_type=client_credentials` that were not
    /// answered with an injected fault, successful or not.
    pub client_credentials_grants: u64,
    /// Every `refresh_token` value presented with `grant_type=refresh_token`, in order
    /// (faulted requests included).
    pub refresh_tokens_used: Vec<String>,
    /// Successful redemptions of a refresh token value that had already been
    /// redeemed successfully before (counted once per extra redemption).
    pub refresh_tokens_redeemed_twice: u64,
    /// Injected faults that were served.
    pub faults_served: u64,
    /// Admin consents granted through `/adminconsent`.
    pub admin_consents: u64,
}

/// A failure the next token request will get instead of normal processing.
#[derive(Clone, Debug)]
pub enum Fault {
    /// Microsoft-shaped error: status (400/401), `error`, AADSTS number, optional `suberror`.
    Aadsts {
        /// HTTP status code.
        status: u16,
        /// OAuth `error` value, e.g. `invalid_grant`.
        error: String,
        /// AADSTS number, e.g. 70043.
        code: u32,
        /// Optional `suberror`, e.g. `basic_action`.
        suberror: Option<String>,
    },
    /// 429 with `Retry-After: secs`, as Entra ID throttles: a
    /// `temporarily_unavailable` body carrying AADSTS90055 (too many requests).
    TooManyRequests {
        /// Value of the `Retry-After` header, in seconds.
        retry_after_secs: u64,
    },
    /// The same with any `Retry-After` value: an HTTP-date, or nonsense.
    TooManyRequestsWith {
        /// The header's value, as sent.
        retry_after: String,
    },
    /// Entra ID's throttling of user-facing calls: 400 `invalid_grant`
    /// AADSTS50196 ("encountered a client request loop"), no `Retry-After`.
    RequestLoop,
    /// A status with a body that is not JSON, as a gateway in front of the
    /// token endpoint answers: an HTML page, or nothing at all.
    NotJson {
        /// HTTP status code (429, 5xx).
        status: u16,
        /// An HTML error page when true, an empty body when false.
        html: bool,
    },
    /// 5xx: 503 answers `temporarily_unavailable` (AADSTS90033), any other status `server_error` (AADSTS50000).
    ServerError {
        /// HTTP status code.
        status: u16,
    },
    /// Do not answer for this long (the client should time out first); then 504 `server_error`.
    Hang(Duration),
    /// Answer exactly this: a provider that misbehaves (any status, any
    /// JSON or not), for the client's defences.
    Raw {
        /// HTTP status code.
        status: u16,
        /// The body, sent as `application/json`.
        body: String,
    },
}

/// The grant a token request asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GrantType {
    /// `authorization_code` (the callback's redemption).
    AuthorizationCode,
    /// `refresh_token` (a refresh pass).
    RefreshToken,
    /// `client_credentials` (app-only).
    ClientCredentials,
}

/// Which token requests an injected fault is for. A fault is served in
/// place of the answer to the first request that matches and passed every
/// check (a request the fake refuses anyway gets its refusal, and the fault
/// waits for the next one). `None` matches anything.
#[derive(Clone, Debug, Default)]
pub struct FaultTarget {
    /// Only requests of this client (case-insensitive).
    pub client_id: Option<String>,
    /// Only requests for this account (its username, case-insensitive):
    /// one connection's grant.
    pub username: Option<String>,
    /// Only requests of this grant type.
    pub grant_type: Option<GrantType>,
}

impl FaultTarget {
    /// Any request.
    pub fn any() -> Self {
        Self::default()
    }

    /// Requests for one account's grant (a connection).
    pub fn account(username: &str) -> Self {
        Self {
            username: Some(username.to_owned()),
            ..Self::default()
        }
    }

    /// Narrows to one grant type.
    pub fn grant(mut self, grant_type: GrantType) -> Self {
        self.grant_type = Some(grant_type);
        self
    }

    /// Whether a validated request of `client_id` for `username` (empty
    /// for app-only) with `grant_type` matches.
    pub(crate) fn matches(&self, client_id: &str, username: &str, grant_type: GrantType) -> bool {
        self.client_id
            .as_deref()
            .is_none_or(|c| c.eq_ignore_ascii_case(client_id))
            && self
                .username
                .as_deref()
                .is_none_or(|u| u.eq_ignore_ascii_case(username))
            && self.grant_type.is_none_or(|g| g == grant_type)
    }
}

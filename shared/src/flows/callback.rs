//! connect-callback: the code becomes tokens, the account is pinned, the
//! grant is stored, and the admin is told who is connected.

use super::mint::{
    AfterFailure, NotMinted, access_token, mint_each, own_credential, request_token,
    vendor_credential,
};
use crate::Broker;
use crate::broker::BrokerError;
use crate::crypto::{ConsentSession, Purpose};
use crate::domain::Mode;
use crate::domain::claims::{ClaimsError, IdTokenClaims};
use crate::domain::records::room_in_both;
use crate::domain::status::{SecretInUse, ShortTokens};
use crate::domain::{
    AccessTokens, Account, AccountKey, ConnectionId, FailureClass, Grant, GrantRecord, Secret,
    ServeRecord, Status, Writer,
};
use crate::identity::{AppClient, Credential, IdentityError, SignInCode};
use crate::store::{Part, StoreError, Versioned};
use std::collections::BTreeMap;
use std::time::Duration;
use subtle::ConstantTimeEq;
use time::OffsetDateTime;
use tokio::time::Instant;
use url::Url;

/// What Microsoft (or any OAuth server) answered the sign-in: a code, or an
/// error, and the `state` it was given. The admin-consent endpoint answers
/// `admin_consent=True` and a `tenant` (a hint, never an identity).
#[derive(Debug, Default)]
pub struct SignInAnswer {
    pub state: Option<String>,
    pub code: Option<Secret>,
    pub error: Option<String>,
    pub error_description: Option<String>,
    pub admin_consent: Option<String>,
}

/// How a callback ended well.
#[derive(Debug)]
pub enum Completed {
    /// The grant is stored: the connection serves tokens.
    Connected(Connected),
    /// An administrator granted the vendor app for the organization; the
    /// booking account signs in next (`sign_in`: that step of the link).
    AdminConsented { sign_in: Option<Url> },
}

/// What the success page shows.
#[derive(Debug)]
pub struct Connected {
    pub connection: ConnectionId,
    pub account: String,
    pub expires_at: OffsetDateTime,
    pub resources: Vec<String>,
    /// Resources whose first token could not be minted yet (the refresh
    /// pass retries them).
    pub pending_resources: Vec<String>,
    /// App-only: the application permissions each resource's first token
    /// carries (see [`Status::granted_permissions`]); `None` for a sign-in.
    pub granted_permissions: Option<BTreeMap<String, Vec<String>>>,
    /// Set when the tokens live shorter than the store keeps fresh.
    pub short_tokens: Option<ShortTokens>,
}

#[derive(Debug, thiserror::Error)]
pub enum CallbackError {
    #[error("your sign-in session was not found or has expired")]
    NoSession,
    #[error("this answer does not belong to your sign-in session")]
    StateMismatch,
    #[error("the sign-in was not completed: {error}{}", description.as_deref().map(|d| format!(" ({d})")).unwrap_or_default())]
    Denied {
        error: String,
        description: Option<String>,
    },
    #[error("the answer carries no authorization code")]
    MissingCode,
    #[error("this connection no longer exists")]
    UnknownConnection,
    /// A vendor connection that names no organization: nothing is redeemed.
    #[error("this connection does not name its organization yet")]
    TenantNotNamed,
    #[error("this sign-in session was already completed")]
    SessionUsed,
    #[error("the consent link of this sign-in was revoked meanwhile")]
    LinkRevoked,
    #[error("this connection was changed too often lately; it can be connected again after {}", crate::domain::records::format_utc(*retry_at))]
    TooManyChanges { retry_at: OffsetDateTime },
    /// The connection's own budget of completed consents for the day.
    #[error("too many sign-ins for this connection today; try again after {}", crate::domain::records::format_utc(*retry_at))]
    TooManySignIns { retry_at: OffsetDateTime },
    #[error("the sign-in code was already used or has expired: {0}")]
    CodeRejected(IdentityError),
    #[error("tokens could not be obtained: {0}")]
    Identity(IdentityError),
    /// The identity provider did not answer the code's redemption within
    /// the time the callback has (API Gateway's 30 s): nothing is stored.
    #[error("the identity provider did not answer within {waited_secs} s; nothing was stored")]
    ProviderTimedOut { waited_secs: u64 },
    /// Too little of the callback's time was left to redeem the code and
    /// store the grant: the code is not spent, nothing is stored.
    #[error("too little time was left to complete the sign-in; nothing was stored")]
    NoTimeLeft,
    #[error("the sign-in answer failed a check: {0}")]
    Claims(#[from] ClaimsError),
    #[error("no refresh token was issued: the app must be allowed the offline_access permission")]
    NoRefreshToken,
    #[error(
        "this connection uses the vendor app, and none is set: the operator must run `roomtoken vendor-app set`"
    )]
    NoVendorApp,
    #[error("this connection belongs to {pinned}, but {signed_in} signed in")]
    AccountMismatch { pinned: String, signed_in: String },
    /// The operator named the booking account, and another one signed in.
    #[error("this link is for {expected}, but {signed_in} signed in")]
    WrongAccount { expected: String, signed_in: String },
    /// The tenant has not granted the vendor app yet (AADSTS65001, 90094).
    #[error("an administrator must grant this app for the organization first")]
    ConsentRequired { admin_consent: Option<Box<Url>> },
    #[error("the administrator did not grant the app: {error}")]
    AdminConsentRefused {
        error: String,
        description: Option<String>,
        retry: Option<Box<Url>>,
    },
    #[error(transparent)]
    Broker(#[from] BrokerError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A refused callback, and where the admin can start over: the step of
/// the link that failed (the form again, the sign-in, the vendor page),
/// when the session said which link it was.
#[derive(Debug)]
pub struct Refused {
    pub error: CallbackError,
    pub start_over: Option<Url>,
}

impl<E: Into<CallbackError>> From<E> for Refused {
    fn from(error: E) -> Self {
        Self {
            error: error.into(),
            start_over: None,
        }
    }
}

/// The waits before each new try of the grant's write after a conflict
/// (others writing at the same moment, or a read not yet up to date).
const GRANT_WRITE_WAITS: [Duration; 4] = [
    Duration::from_millis(250),
    Duration::from_millis(500),
    Duration::from_secs(1),
    Duration::from_secs(2),
];

/// What the callback may take in all, from the moment it starts: API
/// Gateway gives an integration 30 s, the function's start included.
pub const CALLBACK_BUDGET: Duration = Duration::from_secs(28);
/// Kept after the last identity request for the writes that follow it.
const WRITES_RESERVE: Duration = Duration::from_secs(5);
/// An identity request is started only with at least this long for it.
const MIN_REQUEST_TIME: Duration = Duration::from_secs(10);

/// How long the next identity request may take before `deadline`, writes
/// kept; `None` when too little is left to start one.
fn time_for_request(deadline: Instant) -> Option<Duration> {
    deadline
        .checked_duration_since(Instant::now())?
        .checked_sub(WRITES_RESERVE)
        .filter(|left| *left >= MIN_REQUEST_TIME)
}

/// `request`, given up after `limit` as a timeout.
async fn within<T>(
    limit: Duration,
    request: impl Future<Output = Result<T, IdentityError>>,
) -> Result<T, IdentityError> {
    tokio::time::timeout(limit, request)
        .await
        .unwrap_or_else(|_| {
            Err(IdentityError::Unreachable {
                timeout: true,
                detail: format!("no answer within {} s", limit.as_secs()),
            })
        })
}

pub async fn connect_callback(
    broker: &Broker,
    params: SignInAnswer,
    sealed_session: Option<&str>,
    now: OffsetDateTime,
) -> Result<Completed, Refused> {
    let deadline = Instant::now() + CALLBACK_BUDGET;
    let keys = broker.signing_keys().await?;
    let session: ConsentSession = sealed_session
        .and_then(|sealed| keys.unseal(sealed, now))
        .ok_or(CallbackError::NoSession)?;
    let state = params.state.as_deref().unwrap_or_default();
    if !bool::from(state.as_bytes().ct_eq(session.state.as_bytes())) {
        return Err(CallbackError::StateMismatch.into());
    }
    let start_over = session.invite.as_deref().and_then(|invite| {
        let step = match (session.mode, &session.setup) {
            (_, Some(_)) => "setup",
            (Mode::Vendor, None) => "begin",
            _ => "sign-in",
        };
        broker.link_step(&session.connection, invite, step).ok()
    });
    complete(broker, params, &session, deadline, now)
        .await
        .map_err(|error| Refused { error, start_over })
}

/// The callback of an authentic session.
async fn complete(
    broker: &Broker,
    params: SignInAnswer,
    session: &ConsentSession,
    deadline: Instant,
    now: OffsetDateTime,
) -> Result<Completed, CallbackError> {
    let id = session.connection.clone();
    let step = |step: &str| {
        let invite = session.invite.as_deref()?;
        broker.link_step(&id, invite, step).ok().map(Box::new)
    };
    if session.purpose == Purpose::AdminConsent {
        if let Some(error) = params.error {
            tracing::warn!(connection = %id, error = %error, "admin consent not granted");
            return Err(CallbackError::AdminConsentRefused {
                error,
                description: params.error_description,
                retry: step("admin-consent"),
            });
        }
        let granted = params
            .admin_consent
            .is_some_and(|answer| answer.eq_ignore_ascii_case("true"));
        if !granted {
            return Err(CallbackError::MissingCode);
        }
        if session.mode.is_app_only() {
            // The answer's tenant is only a hint: a first app-only token
            // for the connection's own tenant proves the grant.
            return app_only_consented(broker, session, deadline, now).await;
        }
        // Nothing is stored: the answer's tenant is only a hint; the
        // sign-in that follows proves which tenant it is.
        tracing::info!(connection = %id, "admin consent granted");
        return Ok(Completed::AdminConsented {
            sign_in: step("sign-in").map(|url| *url),
        });
    }
    if let Some(error) = params.error {
        let description = params.error_description.as_deref().unwrap_or_default();
        // Entra ID asks for consent in more than one way: `consent_required`
        // (AADSTS65001), "need admin approval" (AADSTS90094), or a user
        // who could not consent and went back (`access_denied`).
        let needs_admin = matches!(error.as_str(), "consent_required" | "access_denied")
            || ["AADSTS65001", "AADSTS90094"]
                .iter()
                .any(|code| description.contains(code));
        if needs_admin && session.mode == Mode::Vendor {
            tracing::warn!(connection = %id, error = %error, "the tenant has not granted the vendor app");
            return Err(CallbackError::ConsentRequired {
                admin_consent: step("admin-consent"),
            });
        }
        tracing::warn!(connection = %id, error = %error, "the sign-in was not completed");
        return Err(CallbackError::Denied {
            error,
            description: params.error_description,
        });
    }
    let code = params.code.ok_or(CallbackError::MissingCode)?;
    let repo = &broker.repo;
    let (grant, serve) = tokio::try_join!(repo.grant(&id), repo.serve(&id))?;
    let (Some(grant), Some(serve)) = (grant, serve) else {
        return Err(CallbackError::UnknownConnection);
    };
    may_complete(session, &grant.value, &serve.value, now)?;
    // A sign-in started for another kind of connection under this id.
    if serve.value.app.mode != session.mode {
        return Err(CallbackError::UnknownConnection);
    }
    // The vendor app is granted in many organizations: its sign-in must
    // have gone to this connection's own (a link of an older connection
    // that names none went to `/organizations/`).
    if serve.value.app.is_vendor() && serve.value.app.provider.names_no_tenant() {
        return Err(CallbackError::TenantNotNamed);
    }
    // A self-service form's values are the app from now on, if the sign-in
    // succeeds; until then nothing of them is stored.
    let (app, credential) = match &session.setup {
        Some(setup) if serve.value.app.mode == Mode::SelfService => (
            serve
                .value
                .app
                .with_setup(setup)
                .map_err(|_| CallbackError::UnknownConnection)?,
            Credential::Secret(setup.client_secret.clone()),
        ),
        Some(_) => return Err(CallbackError::UnknownConnection),
        None if serve.value.app.is_vendor() => {
            let vendor = repo.vendor_app().await?;
            let vendor = vendor.ok_or(CallbackError::NoVendorApp)?;
            (serve.value.app, vendor_credential(&vendor))
        }
        None => (serve.value.app, own_credential(&grant.value)),
    };
    // During a rotation, the previous secret if the identity platform
    // refuses the newest (the code is not spent by a refused client).
    let previous = (session.setup.is_none()
        && !app.is_vendor()
        && matches!(credential, Credential::Secret(_)))
    .then(|| grant.value.previous_client_secret.clone())
    .flatten()
    .map(Credential::Secret);
    let first = app
        .resource(None)
        .cloned()
        .ok_or(CallbackError::UnknownConnection)?;
    let mut scopes = vec!["openid".to_owned(), "profile".to_owned()];
    scopes.extend(first.token_request_scopes());
    let redirect_uri = broker.redirect_uri()?;
    // The code is redeemed only with time left for the redemption and the
    // grant's write: a code spent with no time to store what it gave would
    // be a consent lost.
    let redeem = |credential: Credential| {
        let (app, scopes, redirect_uri) = (&app, &scopes, &redirect_uri);
        let (code, verifier) = (code.expose(), &session.pkce_verifier);
        async move {
            let limit = time_for_request(deadline).ok_or(CallbackError::NoTimeLeft)?;
            let client = AppClient::new(app, &credential);
            let sign_in = SignInCode {
                code,
                redirect_uri,
                pkce_verifier: verifier,
            };
            within(limit, broker.identity.redeem_code(client, sign_in, scopes))
                .await
                .map(|tokens| (tokens, credential))
                .map_err(|e| redemption_failed(e, limit))
        }
    };
    let rotating = previous.is_some();
    let mut in_use = rotating.then_some(SecretInUse::Newest);
    let redeemed = match (redeem(credential.clone()).await, previous) {
        (Err(CallbackError::Identity(e)), Some(previous)) if e.rejects_client_secret() => {
            tracing::warn!(connection = %id, "the newest client secret was refused; trying the previous one");
            in_use = Some(SecretInUse::Previous);
            redeem(previous).await
        }
        (result, _) => result,
    };
    let (tokens, credential) = redeemed?;
    let id_token = tokens.id_token.as_ref().ok_or(ClaimsError::Malformed)?;
    let claims = IdTokenClaims::decode(id_token.expose())?;
    // The tenant check first: the booking account's name means something
    // only inside the connection's own tenant.
    let account = claims.verify(
        &app.client_id,
        &session.nonce,
        app.provider.is_microsoft(),
        app.provider.expected_tenant_id(),
    )?;
    let refresh_token = tokens
        .refresh_token
        .clone()
        .ok_or(CallbackError::NoRefreshToken)?;
    // A connection whose tenant was given as a domain (an operator's, or a
    // vendor one added by an older roomtoken): from now on every request
    // goes to the signed-in tenant's id (and a later consent from another
    // tenant fails the `tid` check).
    let mut app = app;
    let pins_tenant = app.provider.is_microsoft() && app.provider.expected_tenant_id().is_none();
    if let (AccountKey::Microsoft { tid, .. }, true) = (&account.key, pins_tenant) {
        // The tenant goes into every later URL and is the check on later
        // sign-ins: only a tenant id (a GUID) is pinned.
        if !crate::domain::app::is_guid(tid) {
            return Err(ClaimsError::Tenant.into());
        }
        app.provider = app.provider.in_tenant(tid);
    }

    // Fail before redeeming anything more when another account is pinned,
    // or, before the first consent, when the operator named another one.
    match (&grant.value.grant, &app.booking_account) {
        (Some(pinned), _) => ensure_same_account(&pinned.account, &account)?,
        (None, Some(expected)) if !claims.is_user(expected) => {
            return Err(CallbackError::WrongAccount {
                expected: expected.clone(),
                signed_in: account.display,
            });
        }
        (None, _) => {}
    }

    // The grant is stored right after the redemption: whatever happens to
    // the other resources' tokens, the consent is not lost.
    let new_secret = session.setup.as_ref().map(|s| s.client_secret.clone());
    store_grant(
        broker,
        &id,
        grant,
        session,
        Grant::new(refresh_token.clone(), account.clone(), now),
        new_secret,
        now,
    )
    .await?;

    // One token per resource: the first came with the code, the others are
    // minted from the same refresh token, one request each, while the
    // callback has time for them; the refresh pass gets the rest.
    let mut access = AccessTokens {
        account: account.display.clone(),
        resources: app.resources.iter().map(|r| r.name.clone()).collect(),
        tokens: vec![access_token(&first, &tokens, now)],
    };
    let client = AppClient::new(&app, &credential);
    let minted = mint_each(
        app.resources.iter().skip(1),
        refresh_token.clone(),
        now,
        AfterFailure::GoOn,
        |resource, refresh_token| async move {
            let limit = time_for_request(deadline).ok_or(NotMinted::OutOfTime)?;
            let scopes = resource.token_request_scopes();
            within(
                limit,
                broker.identity.refresh(client, &refresh_token, &scopes),
            )
            .await
            .map_err(NotMinted::from)
        },
    )
    .await;
    for token in minted.tokens {
        access.put(token);
    }
    for (resource, e) in &minted.failed {
        tracing::warn!(connection = %id, resource = %resource, error = %e, "first token for this resource failed; the refresh pass will retry");
    }
    let pending_resources: Vec<String> = app
        .resources
        .iter()
        .filter(|r| access.tokens.iter().all(|t| t.resource != r.name))
        .map(|r| r.name.clone())
        .collect();
    if minted.refresh_token != refresh_token {
        store_rotated(broker, &id, &refresh_token, minted.refresh_token, now).await;
    }
    let short_tokens = broker.judge_token_lifetime(access.shortest_lifetime());
    let status = Status {
        client_secret_in_use: in_use,
        ..Status::connected(&account.display, now)
    }
    .with_token_lifetime(short_tokens);
    let written = repo
        .update::<ServeRecord, _>(&id, Part::Serve, Writer::Internet, now, |record| {
            let mut record = record?;
            if pins_tenant {
                record.app.provider = app.provider.clone();
            }
            if session.setup.is_some() {
                record.app = app.clone();
            }
            record.access = Some(access.clone());
            let before = record.status.state;
            record.status = record.status.replaced_by(status.clone());
            if broker.notifies() {
                record.status.note_change(&id, record.app.mode, before, now);
            }
            Some(record)
        })
        .await?;
    if written.is_none() {
        return Err(CallbackError::UnknownConnection);
    }
    log_connected(&id, &account);
    Ok(Completed::Connected(Connected {
        connection: id,
        account: account.display,
        expires_at: access.earliest_expiry().unwrap_or(now),
        resources: access.tokens.iter().map(|t| t.resource.clone()).collect(),
        pending_resources,
        granted_permissions: None,
        short_tokens,
    }))
}

pub use crate::domain::grant::APP_ONLY_ACCOUNT;

/// An app-only connection whose admin consent came back: one client
/// credentials token per resource, minted for the connection's own tenant
/// with its own credential (or the vendor app's), proves the grant; they
/// are stored and served. The answer's `tenant` is never used: a token
/// minted there would prove only that someone in that tenant once granted
/// the app, not that the link's admin did.
async fn app_only_consented(
    broker: &Broker,
    session: &ConsentSession,
    deadline: Instant,
    now: OffsetDateTime,
) -> Result<Completed, CallbackError> {
    let id = &session.connection;
    let repo = &broker.repo;
    let (grant, serve) = tokio::try_join!(repo.grant(id), repo.serve(id))?;
    let (Some(grant), Some(serve)) = (grant, serve) else {
        return Err(CallbackError::UnknownConnection);
    };
    // `session.mode` is app-only: the connection must still be.
    if serve.value.app.mode != session.mode {
        return Err(CallbackError::UnknownConnection);
    }
    may_complete(session, &grant.value, &serve.value, now)?;
    let app = serve.value.app;
    let credential = if app.is_vendor() {
        let vendor = repo.vendor_app().await?;
        vendor_credential(&vendor.ok_or(CallbackError::NoVendorApp)?)
    } else {
        own_credential(&grant.value)
    };
    let mut access = AccessTokens {
        account: APP_ONLY_ACCOUNT.into(),
        resources: app.resources.iter().map(|r| r.name.clone()).collect(),
        tokens: Vec::new(),
    };
    let mut pending_resources = Vec::new();
    for resource in &app.resources {
        let first = access.tokens.is_empty() && pending_resources.is_empty();
        let Some(limit) = time_for_request(deadline) else {
            // No time for this one: the refresh pass mints it (or, with no
            // token yet, nothing proves the grant and nothing is stored).
            if access.tokens.is_empty() {
                return Err(CallbackError::NoTimeLeft);
            }
            pending_resources.push(resource.name.clone());
            continue;
        };
        let asked = first_app_only_token(broker, &app, &credential, resource, first);
        match within(limit, asked).await {
            Ok(tokens) => access.put(access_token(resource, &tokens, now)),
            // Nothing proves the grant: say why, store nothing.
            Err(IdentityError::Unreachable { timeout: true, .. }) if access.tokens.is_empty() => {
                return Err(CallbackError::ProviderTimedOut {
                    waited_secs: limit.as_secs(),
                });
            }
            Err(e) if access.tokens.is_empty() => return Err(CallbackError::Identity(e)),
            Err(e) => {
                tracing::warn!(connection = %id, resource = %resource.name, error = %e, "first app-only token for this resource failed; the refresh pass will retry");
                pending_resources.push(resource.name.clone());
            }
        }
    }
    // The session is spent (a replayed answer mints nothing), then the
    // tokens are stored.
    repo.update::<GrantRecord, _>(id, Part::Grant, Writer::Internet, now, |record| {
        let mut record = record?;
        record.complete_session(&session.state, session.expires_at, now);
        Some(record)
    })
    .await?;
    // What the grant really gave: an `admin_consent=True` answer can be
    // sent by anyone who holds the link, and a first token proves only that
    // the app exists in the tenant.
    let granted_permissions = access.application_roles();
    let short_tokens = broker.judge_token_lifetime(access.shortest_lifetime());
    let status = Status {
        granted_permissions: granted_permissions.clone(),
        ..Status::connected(APP_ONLY_ACCOUNT, now)
    }
    .with_token_lifetime(short_tokens);
    let written = repo
        .update::<ServeRecord, _>(id, Part::Serve, Writer::Internet, now, |record| {
            let mut record = record?;
            record.access = Some(access.clone());
            let before = record.status.state;
            record.status = record.status.replaced_by(status.clone());
            if broker.notifies() {
                record.status.note_change(id, record.app.mode, before, now);
            }
            Some(record)
        })
        .await?;
    if written.is_none() {
        return Err(CallbackError::UnknownConnection);
    }
    tracing::info!(connection = %id, permissions = ?granted_permissions, "connected app-only: a first token proves the app in the tenant");
    Ok(Completed::Connected(Connected {
        connection: id.clone(),
        account: APP_ONLY_ACCOUNT.into(),
        expires_at: access.earliest_expiry().unwrap_or(now),
        resources: access.tokens.iter().map(|t| t.resource.clone()).collect(),
        pending_resources,
        granted_permissions: Some(granted_permissions),
        short_tokens,
    }))
}

/// How long the first app-only token waits, after each AADSTS7000229, for
/// the service principal the admin's grant just made: Entra ID creates it
/// within seconds, and a request at once can miss it.
pub const GRANT_REPLICATION_WAITS: [std::time::Duration; 3] = [
    std::time::Duration::from_secs(1),
    std::time::Duration::from_secs(2),
    std::time::Duration::from_secs(4),
];

/// One client-credentials token for `resource`; the `first` of a consent
/// is asked again while the tenant seems not to know the app yet.
async fn first_app_only_token(
    broker: &Broker,
    app: &crate::domain::AppRegistration,
    credential: &Credential,
    resource: &crate::domain::Resource,
    first: bool,
) -> Result<crate::identity::TokenSet, IdentityError> {
    let no_refresh_token = Secret::new("");
    let mut waits = GRANT_REPLICATION_WAITS.iter().filter(|_| first);
    loop {
        match request_token(broker, app, credential, &no_refresh_token, resource).await {
            Err(e) if e.no_service_principal() => {
                let Some(wait) = waits.next() else {
                    return Err(e);
                };
                tracing::info!(connection = %app.id, wait_ms = wait.as_millis() as u64, "the tenant does not know the app yet; asking again");
                broker.sleeper.sleep(*wait).await;
            }
            result => return result,
        }
    }
}

/// Whether an authentic session may still complete: its link was not
/// revoked since (`link --revoke-all`, `--reset-account`), it was not used
/// already (a replayed answer never reaches the provider), and both secrets
/// have room in their version quota for the writes a consent makes, before
/// anything is redeemed for tokens that could not be stored.
fn may_complete(
    session: &ConsentSession,
    grant: &GrantRecord,
    serve: &ServeRecord,
    now: OffsetDateTime,
) -> Result<(), CallbackError> {
    let generation = session
        .invite
        .as_deref()
        .and_then(crate::crypto::invite_generation);
    if generation.is_some_and(|g| g != serve.link_generation) {
        return Err(CallbackError::LinkRevoked);
    }
    if grant.completed(&session.state) {
        return Err(CallbackError::SessionUsed);
    }
    // Consents are writes anyone holding the link can cause: they have a
    // budget of their own, which leaves the operator's revocations room.
    if let Some(retry_at) = serve.writes.room_for_consent(now) {
        return Err(CallbackError::TooManySignIns { retry_at });
    }
    if let Some(retry_at) = room_in_both(grant, serve, Writer::Internet, now) {
        return Err(CallbackError::TooManyChanges { retry_at });
    }
    Ok(())
}

/// A redemption's failure as the callback tells it.
fn redemption_failed(error: IdentityError, limit: Duration) -> CallbackError {
    match &error {
        IdentityError::Unreachable { timeout: true, .. } => CallbackError::ProviderTimedOut {
            waited_secs: limit.as_secs(),
        },
        _ if error.class() == FailureClass::ReconnectNeeded && !error.no_service_principal() => {
            CallbackError::CodeRejected(error)
        }
        _ => CallbackError::Identity(error),
    }
}

/// Stores the refresh token that minting the other resources' first tokens
/// rotated to, over the one just stored. It is the consent's second write
/// of the grant, counted with people's writes (not as a second consent, and
/// not in the product's hourly room, which the refresh passes need). If it
/// cannot be written, the one stored stays: Entra ID keeps an older refresh
/// token valid, and the next pass rotates it again.
async fn store_rotated(
    broker: &Broker,
    id: &ConnectionId,
    stored: &Secret,
    rotated: Secret,
    now: OffsetDateTime,
) {
    let written = broker
        .repo
        .update::<GrantRecord, _>(id, Part::Grant, Writer::Person, now, |record| {
            let mut record = record?;
            let grant = record.grant.as_mut()?;
            // Unless someone stored another grant meanwhile.
            (grant.refresh_token == *stored).then(|| {
                grant.refresh_token = rotated.clone();
            })?;
            Some(record)
        })
        .await;
    if let Err(e) = written {
        tracing::warn!(connection = %id, error = %e, "the refresh token rotated by the first tokens could not be stored; the one stored stays");
    }
}

/// Stores the new grant (with a self-service form's client secret) and
/// marks the session completed, in one write. A refresh pass that rotated
/// the old grant meanwhile loses: the new consent wins, as long as it is
/// still the same account.
async fn store_grant(
    broker: &Broker,
    id: &ConnectionId,
    read: Versioned<GrantRecord>,
    session: &ConsentSession,
    grant: Grant,
    client_secret: Option<Secret>,
    now: OffsetDateTime,
) -> Result<(), CallbackError> {
    let mut current = read;
    let mut waits = GRANT_WRITE_WAITS.iter();
    loop {
        let mut record = current.value.clone();
        record.grant = Some(grant.clone());
        if let Some(secret) = &client_secret {
            record.client_secret = secret.clone();
        }
        record.complete_session(&session.state, session.expires_at, now);
        match broker
            .repo
            .write(
                id,
                Part::Grant,
                &mut record,
                Some(&current.version),
                Writer::Internet,
                now,
            )
            .await
        {
            Ok(_) => return Ok(()),
            Err(StoreError::Conflict(_)) => {
                // A bounded number of tries, each after a wait: a read just
                // after a write may return the version before it for a while.
                let Some(wait) = waits.next() else {
                    return Err(StoreError::Conflict(id.as_str().to_owned()).into());
                };
                broker.sleeper.sleep(*wait).await;
                current = broker
                    .repo
                    .grant(id)
                    .await?
                    .ok_or(CallbackError::UnknownConnection)?;
                if current.value.completed(&session.state) {
                    // Ours, if it holds our refresh token: a write that
                    // landed although its answer said otherwise (lost, or
                    // confirmed against a read not yet up to date).
                    let ours = current
                        .value
                        .grant
                        .as_ref()
                        .is_some_and(|g| g.refresh_token == grant.refresh_token);
                    return if ours {
                        Ok(())
                    } else {
                        Err(CallbackError::SessionUsed)
                    };
                }
                if let Some(pinned) = &current.value.grant {
                    ensure_same_account(&pinned.account, &grant.account)?;
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
}

fn ensure_same_account(pinned: &Account, signed_in: &Account) -> Result<(), CallbackError> {
    if pinned.key == signed_in.key {
        Ok(())
    } else {
        Err(CallbackError::AccountMismatch {
            pinned: pinned.display.clone(),
            signed_in: signed_in.display.clone(),
        })
    }
}

fn log_connected(id: &ConnectionId, account: &Account) {
    tracing::info!(connection = %id, account = %account.display, "connected");
}

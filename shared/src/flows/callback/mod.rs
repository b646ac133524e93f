//! connect-callback: the code becomes tokens, the account is pinned, the
//! grant is stored, and the admin is told who is connected.

use crate::Broker;
use crate::broker::BrokerError;
use crate::crypto::{ConsentSession, Purpose};
use crate::domain::Mode;
use crate::domain::claims::{ClaimsError, IdTokenClaims};
use crate::domain::records::room_in_both;
use crate::domain::status::ShortTokens;
use crate::domain::{
    AccessTokens, Account, AccountKey, ConnectionId, FailureClass, Grant, GrantRecord, Secret,
    ServeRecord, Status, Writer,
};
use crate::flows::mint::{
    AfterFailure, NotMinted, access_token, mint_each, newest_then_previous, own_credential,
    previous_secret, request_token, vendor_credential,
};
use crate::identity::{AppClient, Credential, IdentityError, SignInCode};
use crate::store::{Part, StoreError, Versioned};
use std::collections::BTreeMap;
use std::time::Duration;
use subtle::ConstantTimeEq;
use time::OffsetDateTime;
use tokio::time::Instant;
use url::Url;

mod app_only;
mod delegated;
mod grant;

pub use app_only::GRANT_REPLICATION_WAITS;
use app_only::app_only_consented;
use delegated::complete;
use grant::{store_grant, store_rotated};

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

impl CallbackError {
    /// Our side failed (the store or the broker): an operator must hear
    /// of it; the other errors are the sign-in's, and the page says them.
    pub fn is_server_failure(&self) -> bool {
        matches!(self, Self::Broker(_) | Self::Store(_))
    }
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

/// What the callback may take in all, from the moment it starts: API
/// Gateway gives an integration 30 s, the function's start included.
pub const CALLBACK_BUDGET: Duration = Duration::from_secs(28);
/// Kept after the last identity request for the writes that follow it.
pub(super) const WRITES_RESERVE: Duration = Duration::from_secs(5);
/// An identity request is started only with at least this long for it.
pub(super) const MIN_REQUEST_TIME: Duration = Duration::from_secs(10);

/// How long the next identity request may take before `deadline`, writes
/// kept; `None` when too little is left to start one.
pub(super) fn time_for_request(deadline: Instant) -> Option<Duration> {
    deadline
        .checked_duration_since(Instant::now())?
        .checked_sub(WRITES_RESERVE)
        .filter(|left| *left >= MIN_REQUEST_TIME)
}

/// `request`, given up after `limit` as a timeout.
pub(super) async fn within<T>(
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
    let start_over = session_step(
        broker,
        &session,
        match (session.mode, &session.setup) {
            (_, Some(_)) => "setup",
            (Mode::Vendor, None) => "begin",
            _ => "sign-in",
        },
    );
    complete(broker, params, &session, deadline, now)
        .await
        .map_err(|error| Refused { error, start_over })
}

/// A step of the session's own consent link (`None` for a session that
/// came without one).
pub(super) fn session_step(broker: &Broker, session: &ConsentSession, step: &str) -> Option<Url> {
    let invite = session.invite.as_deref()?;
    broker.link_step(&session.connection, invite, step).ok()
}

/// Whether an authentic session may still complete: its link was not
/// revoked since (`link --revoke-all`, `--reset-account`), it was not used
/// already (a replayed answer never reaches the provider), and both secrets
/// have room in their version quota for the writes a consent makes, before
/// anything is redeemed for tokens that could not be stored.
pub(super) fn may_complete(
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
pub(super) fn redemption_failed(error: IdentityError, limit: Duration) -> CallbackError {
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

pub(super) fn ensure_same_account(
    pinned: &Account,
    signed_in: &Account,
) -> Result<(), CallbackError> {
    if pinned.key == signed_in.key {
        Ok(())
    } else {
        Err(CallbackError::AccountMismatch {
            pinned: pinned.display.clone(),
            signed_in: signed_in.display.clone(),
        })
    }
}

pub(super) fn log_connected(id: &ConnectionId, account: &Account) {
    tracing::info!(connection = %id, account = %account.display, "connected");
}

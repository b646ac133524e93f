//! token-read: what displays call. Authenticates the device key, serves the
//! current access token of a resource, or says why it cannot.
//!
//! What it reads from the store (active device-key serials, access tokens, status) is
//! kept per connection in the broker's read cache for `read_cache_ttl`
//! (never longer than a cached token stays servable), so a warm process
//! reads each connection at most once per TTL however many displays ask; a
//! revoked key therefore keeps working for at most one TTL.
//!
//! When the store cannot be read (an outage, throttling), the last snapshot
//! read is served for up to [`STALE_IF_ERROR`] past its TTL, as long as it
//! has a token with time left: displays keep their token through a store
//! blip. Nothing can be revoked or refreshed without the store either.
//!
//! Every read is answered with one audit log line (connection, key id,
//! never the key, resource and outcome), written by the HTTP edge.

use crate::Broker;
use crate::domain::CredentialKind;
use crate::domain::status::{
    NO_APPLICATION_PERMISSION, SecretInUse, credential_advice, credential_days_left, needs_human,
};
use crate::domain::{
    AccessTokens, ConnectionId, ConnectionState, KeyCheck, LastError, Mode, PresentedKey,
    ServeRecord, Status,
};
pub use crate::snapshot::{ConnectionSnapshot, MIN_SERVE_VALIDITY, ReadCache, ServedToken};
use crate::store::StoreError;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use time::OffsetDateTime;

/// How long past its TTL the last snapshot read may be served while the
/// store cannot be read.
pub const STALE_IF_ERROR: Duration = Duration::from_secs(600);

/// What a display asks for. Its `Debug` never shows the device key.
#[derive(Default, Clone, Copy)]
pub struct TokenRequest<'a> {
    /// The connection id as it appears in the path (checked here).
    pub connection: &'a str,
    /// The device key from `Authorization: Bearer`.
    pub key: Option<&'a str>,
    /// `?resource=`; `None` is the connection's first resource.
    pub resource: Option<&'a str>,
    /// `?min_validity=`: refuse a token that expires sooner than this.
    pub min_validity: Option<Duration>,
}

impl std::fmt::Debug for TokenRequest<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenRequest")
            .field("connection", &self.connection)
            .field("key", &self.key.map(|_| "<redacted>"))
            .field("resource", &self.resource)
            .field("min_validity", &self.min_validity)
            .finish()
    }
}

#[derive(Debug)]
pub struct TokenReply {
    /// The token, its fingerprint, expiry and account.
    pub served: Arc<ServedToken>,
    /// Seconds left.
    pub expires_in: u64,
    /// How long a display may cache the answer.
    pub max_age: u64,
}

/// The state of a connection as every surface shows it (CLI, status route,
/// callback page). Never holds a secret.
#[derive(Debug, Clone, Serialize)]
pub struct StatusView {
    pub connection: ConnectionId,
    pub mode: Mode,
    pub state: ConnectionState,
    /// Whether a human must act: the state, or a credential that expires
    /// within 30 days.
    pub needs_human: bool,
    pub advice: String,
    pub account: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub connected_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_refresh_at: Option<OffsetDateTime>,
    pub expires_at: BTreeMap<String, String>,
    pub last_error: Option<LastError>,
    pub consecutive_failures: u32,
    /// When the client secret in use expires (`YYYY-MM-DD`), if known.
    pub credential_expires: Option<String>,
    /// Days until then, negative once expired.
    pub credential_days_left: Option<i64>,
    /// During a rotation (two client secrets): which one the last token
    /// request used, `newest` or `previous`.
    pub credential_in_use: Option<SecretInUse>,
    /// App-only: the application permissions each resource's newest token
    /// carries (its `roles`); `null` for connections that sign in.
    pub granted_permissions: Option<BTreeMap<String, Vec<String>>>,
}

/// What the status shows of a connection, from its serve secret.
#[derive(Clone, Copy)]
pub struct StatusFacts<'a> {
    pub status: &'a Status,
    pub access: Option<&'a AccessTokens>,
    pub mode: Mode,
    pub credential_kind: CredentialKind,
    /// The expiry of the client secret that token requests use.
    pub credential_expires: Option<time::Date>,
}

impl<'a> StatusFacts<'a> {
    pub fn of(record: &'a ServeRecord) -> Self {
        Self {
            status: &record.status,
            access: record.access.as_ref(),
            mode: record.app.mode,
            credential_kind: record.app.credential_kind(),
            credential_expires: record.credential_expires(),
        }
    }
}

pub fn status_view(id: &ConnectionId, facts: StatusFacts<'_>, now: OffsetDateTime) -> StatusView {
    let format = |t: OffsetDateTime| {
        t.format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default()
    };
    let (status, access) = (facts.status, facts.access);
    let credential_expires = facts.credential_expires;
    let days_left = credential_expires.map(|date| credential_days_left(date, now));
    let needs_human = needs_human(status.state, days_left);
    let granted = &status.granted_permissions;
    let no_permission = facts.mode.is_app_only()
        && status.state.serves_tokens()
        && !granted.is_empty()
        && granted.values().all(Vec::is_empty);
    let advice = match (credential_expires, days_left) {
        // The state's own advice comes first when it needs a human.
        (Some(date), Some(days)) if status.state.serves_tokens() && needs_human => {
            credential_advice(id, facts.credential_kind, date, days)
        }
        _ if status.state == ConnectionState::AppMisconfigured
            && facts.credential_kind == CredentialKind::Certificate =>
        {
            format!(
                "The operator must fix the app registration or its certificate (expired, or not uploaded to the app): `roomtoken connection update {id} --generate-certificate` makes a new one to upload."
            )
        }
        _ if no_permission => format!(
            "{NO_APPLICATION_PERMISSION} {}",
            status.state.advice_for(facts.mode)
        ),
        _ => status.advice_for(facts.mode),
    };
    StatusView {
        connection: id.clone(),
        mode: facts.mode,
        state: status.state,
        needs_human,
        advice,
        account: status.account.clone(),
        connected_at: status.connected_at,
        last_refresh_at: access.and_then(|a| a.tokens.iter().map(|t| t.obtained_at).max()),
        expires_at: access
            .map(|a| {
                a.tokens
                    .iter()
                    .map(|t| (t.resource.clone(), format(t.expires_at)))
                    .collect()
            })
            .unwrap_or_default(),
        last_error: status.last_error.clone(),
        consecutive_failures: status.consecutive_failures,
        credential_expires: credential_expires.map(|d| d.to_string()),
        credential_days_left: days_left,
        credential_in_use: status.client_secret_in_use,
        granted_permissions: facts.mode.is_app_only().then(|| granted.clone()),
    }
}

/// Why a read was refused with 401. Only the audit log tells them apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq, strum::IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum Refusal {
    MissingKey,
    MalformedKey,
    InvalidConnectionId,
    /// Not a key of this connection, or no such connection.
    UnknownKey,
    RevokedKey,
    /// A key made before keys authenticated themselves, where they are not
    /// accepted (`ROOMTOKEN_LEGACY_DEVICE_KEYS`).
    LegacyKey,
}

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// Wrong, missing or revoked key, or unknown connection: one answer for all.
    #[error("a valid device key is required")]
    Unauthorized(Refusal),
    #[error("this connection has no resource '{0}'")]
    UnknownResource(String),
    #[error("no valid token can be served: {}", state.advice_for(*mode))]
    NotServing {
        state: ConnectionState,
        /// How the connection was onboarded (the advice depends on it).
        mode: Mode,
        retry_after: Duration,
    },
    /// A token exists but expires sooner than the display asked for.
    #[error("the current token expires in {expires_in} s, sooner than asked")]
    InsufficientValidity {
        state: ConnectionState,
        expires_in: u64,
        retry_after: Duration,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ReadError {
    /// The audit log's name for this answer.
    pub fn outcome(&self) -> &'static str {
        match self {
            Self::Unauthorized(_) => "unauthorized",
            Self::UnknownResource(_) => "unknown_resource",
            Self::NotServing { .. } => "no_valid_token",
            Self::InsufficientValidity { .. } => "insufficient_validity",
            Self::Store(_) => "store_error",
        }
    }
}

fn retry_after(state: ConnectionState) -> Duration {
    match state {
        // The next refresh pass may fix it (for tokens too short, until
        // they expire again).
        ConnectionState::Connected
        | ConnectionState::Degraded
        | ConnectionState::TokensTooShort => Duration::from_secs(60),
        // Only a human can: ask again in a while.
        _ => Duration::from_secs(300),
    }
}

/// Reads the one secret token-read needs: the connection's serve secret.
/// A connection that does not exist reads as one with no keys.
async fn load_snapshot(
    broker: &Broker,
    id: &ConnectionId,
    now: OffsetDateTime,
) -> Result<(Arc<ConnectionSnapshot>, Option<OffsetDateTime>), StoreError> {
    let snapshot = match broker.repo.serve(id).await? {
        Some(serve) => ConnectionSnapshot::new(serve.value),
        None => ConnectionSnapshot::default(),
    };
    let until = snapshot.servable_until(now);
    Ok((Arc::new(snapshot), until))
}

/// The connection's snapshot, from the cache or the store. A connection
/// that does not exist is remembered in a cache of its own, so that a flood
/// of made-up ids never pushes real connections out of the read cache.
async fn snapshot(
    broker: &Broker,
    id: &ConnectionId,
    now: OffsetDateTime,
) -> Result<Arc<ConnectionSnapshot>, StoreError> {
    // A warm hit takes one lock, as it did before made-up ids had a cache
    // of their own.
    if let Some(known) = broker.read_cache.peek(id, now) {
        return Ok(known);
    }
    if let Some(unknown) = broker.unknown_cache.peek(id, now) {
        return Ok(unknown);
    }
    let loaded = broker
        .read_cache
        .get_or_load(id, now, || load_snapshot(broker, id, now))
        .await;
    let snapshot = match loaded {
        Ok(snapshot) => snapshot,
        Err(error) => match broker.read_cache.stale(id, now, STALE_IF_ERROR) {
            // Only a snapshot that would serve: one that says a human must
            // act may be out of date, and the store's 503 is the truer answer.
            Some(last)
                if last.status.state.serves_tokens() && last.servable_until(now).is_some() =>
            {
                tracing::warn!(connection = %id, error = %error, "store unreadable: serving the snapshot read last");
                last
            }
            _ => return Err(error),
        },
    };
    if !snapshot.exists {
        broker.read_cache.remove(id);
        let remembered = snapshot.clone();
        broker
            .unknown_cache
            .get_or_load(id, now, || async move {
                Ok::<_, StoreError>((remembered, None))
            })
            .await?;
    }
    Ok(snapshot)
}

/// Checks the device key of a connection. Whatever is not a key this
/// broker made for this connection (wrong shape, an id that cannot exist, a
/// tag that does not verify) is refused before the store is asked, after
/// the same work for a made-up connection as for a real one; only a key
/// that verifies reads the connection, to see that it was not revoked.
async fn authenticate(
    broker: &Broker,
    connection: &str,
    presented: Option<&str>,
    now: OffsetDateTime,
) -> Result<(ConnectionId, Arc<ConnectionSnapshot>), ReadError> {
    let presented = presented.ok_or(ReadError::Unauthorized(Refusal::MissingKey))?;
    let key =
        PresentedKey::parse(presented).ok_or(ReadError::Unauthorized(Refusal::MalformedKey))?;
    let id = ConnectionId::parse(connection)
        .map_err(|_| ReadError::Unauthorized(Refusal::InvalidConnectionId))?;
    match key {
        PresentedKey::Current { .. } => {
            let signer = broker.device_key_signer().await?;
            if !signer.verify(id.as_str(), &key) {
                return Err(ReadError::Unauthorized(Refusal::UnknownKey));
            }
        }
        PresentedKey::Legacy { .. } if !broker.config.accept_legacy_keys => {
            return Err(ReadError::Unauthorized(Refusal::LegacyKey));
        }
        PresentedKey::Legacy { .. } => {}
    }
    let snapshot = snapshot(broker, &id, now).await?;
    let check = match key {
        PresentedKey::Current { id: key_id, .. } => snapshot.keys.check_verified(key_id),
        PresentedKey::Legacy { id: key_id, whole } => snapshot.keys.check_legacy(key_id, whole),
    };
    match check {
        KeyCheck::Valid => {}
        KeyCheck::Revoked => return Err(ReadError::Unauthorized(Refusal::RevokedKey)),
        KeyCheck::Unknown => return Err(ReadError::Unauthorized(Refusal::UnknownKey)),
    }
    Ok((id, snapshot))
}

/// The token a display asks for, or why it cannot have it. The HTTP edge
/// writes the audit line, since only it knows whether the display already
/// had the token.
pub async fn read_token(
    broker: &Broker,
    request: TokenRequest<'_>,
    now: OffsetDateTime,
) -> Result<TokenReply, ReadError> {
    let (_, snapshot) = authenticate(broker, request.connection, request.key, now).await?;
    let state = snapshot.status.state;
    let not_serving = || ReadError::NotServing {
        state,
        mode: snapshot.mode,
        retry_after: retry_after(state),
    };
    // Only a connection whose grant still works serves its tokens: a state
    // that a human must fix (reconnect, app, block) stops them at once.
    if !state.serves_tokens() {
        return Err(not_serving());
    }
    let access = snapshot
        .access
        .as_ref()
        .filter(|a| !a.resources.is_empty())
        .ok_or_else(not_serving)?;
    let name = access.resource_name(request.resource).ok_or_else(|| {
        ReadError::UnknownResource(request.resource.unwrap_or_default().to_owned())
    })?;
    let served = snapshot
        .served(name)
        .filter(|s| s.token.remaining(now) >= MIN_SERVE_VALIDITY)
        .ok_or_else(not_serving)?;
    let remaining = served.token.remaining(now);
    if let Some(asked) = request.min_validity
        && remaining < asked
    {
        // A longer-lived token comes with the refresh, due once less than
        // the margin is left (and only if no human must act first).
        let margin = served.token.refresh_margin(broker.config.refresh_margin);
        let until_due = remaining.saturating_sub(margin);
        return Err(ReadError::InsufficientValidity {
            state,
            expires_in: remaining.as_secs(),
            retry_after: retry_after(state).max(match state {
                ConnectionState::Connected | ConnectionState::Degraded => until_due,
                _ => Duration::ZERO,
            }),
        });
    }
    Ok(TokenReply {
        served: served.clone(),
        expires_in: remaining.as_secs(),
        max_age: remaining
            .saturating_sub(served.token.refresh_margin(broker.config.refresh_margin))
            .as_secs(),
    })
}

/// The status route: the same authentication and cache as the token route.
pub async fn read_status(
    broker: &Broker,
    connection: &str,
    presented_key: Option<&str>,
    now: OffsetDateTime,
) -> Result<StatusView, ReadError> {
    let (id, snapshot) = authenticate(broker, connection, presented_key, now).await?;
    let facts = StatusFacts {
        status: &snapshot.status,
        access: snapshot.access.as_ref(),
        mode: snapshot.mode,
        credential_kind: snapshot.credential_kind,
        credential_expires: snapshot.credential_expires,
    };
    Ok(status_view(&id, facts, now))
}

/// The status view straight from the store (admin side, no key needed).
pub async fn load_status_view(
    broker: &Broker,
    id: &ConnectionId,
    now: OffsetDateTime,
) -> Result<StatusView, StoreError> {
    let serve = broker.repo.serve(id).await?.map(|s| s.value);
    Ok(match &serve {
        Some(record) => status_view(id, StatusFacts::of(record), now),
        None => status_view(
            id,
            StatusFacts {
                status: &Status::default(),
                access: None,
                mode: Mode::default(),
                credential_kind: CredentialKind::default(),
                credential_expires: None,
            },
            now,
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_never_shows_its_key() {
        let request = TokenRequest {
            connection: "contoso",
            key: Some("rtk_0123456789_the-secret-part"),
            ..TokenRequest::default()
        };
        let shown = format!("{request:?}");
        assert!(!shown.contains("the-secret-part"), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
    }
}

//! token-read: what displays call. Authenticates the device key, serves the
//! current access token of a resource, or says why it cannot.

use crate::Broker;
use crate::domain::{
    AccessTokens, ConnectionId, ConnectionState, DeviceKeys, LastError, Secret, Status,
};
use crate::store::{Part, StoreError};
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;
use time::OffsetDateTime;

/// A token with less than this left is not served: it could expire on the
/// way to Exchange.
pub const MIN_SERVE_VALIDITY: Duration = Duration::from_secs(30);

#[derive(Debug)]
pub struct TokenReply {
    pub access_token: Secret,
    pub token_type: String,
    pub expires_at: OffsetDateTime,
    pub expires_in: u64,
    pub scope: String,
    pub resource: String,
    pub account: String,
    /// How long a display may cache the answer.
    pub max_age: u64,
    pub key_id: String,
}

/// The state of a connection as every surface shows it (CLI, status route,
/// callback page). Never holds a secret.
#[derive(Debug, Clone, Serialize)]
pub struct StatusView {
    pub connection: ConnectionId,
    pub state: ConnectionState,
    pub advice: &'static str,
    pub account: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub connected_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_refresh_at: Option<OffsetDateTime>,
    pub expires_at: BTreeMap<String, String>,
    pub last_error: Option<LastError>,
    pub consecutive_failures: u32,
}

pub fn status_view(
    id: &ConnectionId,
    status: &Status,
    access: Option<&AccessTokens>,
) -> StatusView {
    let format = |t: OffsetDateTime| {
        t.format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default()
    };
    StatusView {
        connection: id.clone(),
        state: status.state,
        advice: status.state.advice(),
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
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// Wrong, missing or revoked key, or unknown connection: one answer for all.
    #[error("a valid device key is required")]
    Unauthorized,
    #[error("this connection has no resource '{0}'")]
    UnknownResource(String),
    #[error("no valid token can be served: {}", state.advice())]
    NotServing {
        state: ConnectionState,
        retry_after: Duration,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Checks the device key of a connection; the key id goes to the logs.
async fn authenticate(
    broker: &Broker,
    id: &str,
    presented: Option<&str>,
) -> Result<(ConnectionId, String), ReadError> {
    let id = ConnectionId::parse(id).map_err(|_| ReadError::Unauthorized)?;
    let presented = presented.ok_or(ReadError::Unauthorized)?;
    let keys = broker
        .repo
        .get::<DeviceKeys>(&id, Part::Keys)
        .await?
        .map(|k| k.value)
        .unwrap_or_default();
    let key_id = keys
        .authenticate(presented)
        .ok_or(ReadError::Unauthorized)?
        .to_owned();
    Ok((id, key_id))
}

fn retry_after(state: ConnectionState) -> Duration {
    match state {
        // The next refresh pass may fix it.
        ConnectionState::Connected | ConnectionState::Degraded => Duration::from_secs(60),
        // Only a human can: ask again in a while.
        _ => Duration::from_secs(300),
    }
}

pub async fn read_token(
    broker: &Broker,
    id: &str,
    presented_key: Option<&str>,
    resource: Option<&str>,
    now: OffsetDateTime,
) -> Result<TokenReply, ReadError> {
    let result = read_token_inner(broker, id, presented_key, resource, now).await;
    match &result {
        Ok(reply) => tracing::info!(
            connection = id, key_id = %reply.key_id, resource = %reply.resource,
            outcome = "served", expires_in = reply.expires_in, "token read"
        ),
        Err(e) => tracing::info!(
            connection = id,
            resource = resource.unwrap_or("default"),
            outcome = read_outcome(e),
            "token read"
        ),
    }
    result
}

fn read_outcome(error: &ReadError) -> &'static str {
    match error {
        ReadError::Unauthorized => "unauthorized",
        ReadError::UnknownResource(_) => "unknown_resource",
        ReadError::NotServing { state, .. } => state.as_str(),
        ReadError::Store(_) => "store_error",
    }
}

async fn read_token_inner(
    broker: &Broker,
    id: &str,
    presented_key: Option<&str>,
    resource: Option<&str>,
    now: OffsetDateTime,
) -> Result<TokenReply, ReadError> {
    let (id, key_id) = authenticate(broker, id, presented_key).await?;
    let access = broker
        .repo
        .get::<AccessTokens>(&id, Part::Access)
        .await?
        .map(|a| a.value);
    if let Some(access) = access.as_ref().filter(|a| !a.resources.is_empty()) {
        let name = access
            .resource_name(resource)
            .ok_or_else(|| ReadError::UnknownResource(resource.unwrap_or_default().to_owned()))?;
        if let Some(token) = access.get(name)
            && token.remaining(now) >= MIN_SERVE_VALIDITY
        {
            let remaining = token.remaining(now);
            return Ok(TokenReply {
                access_token: token.access_token.clone(),
                token_type: token.token_type.clone(),
                expires_at: token.expires_at,
                expires_in: remaining.as_secs(),
                scope: token.scope.clone(),
                resource: name.to_owned(),
                account: access.account.clone(),
                max_age: remaining
                    .saturating_sub(broker.config.refresh_margin)
                    .as_secs(),
                key_id,
            });
        }
    }
    let state = broker
        .repo
        .get::<Status>(&id, Part::Status)
        .await?
        .map(|s| s.value.state)
        .unwrap_or_default();
    Err(ReadError::NotServing {
        state,
        retry_after: retry_after(state),
    })
}

pub async fn read_status(
    broker: &Broker,
    id: &str,
    presented_key: Option<&str>,
) -> Result<StatusView, ReadError> {
    let (id, key_id) = authenticate(broker, id, presented_key).await?;
    tracing::info!(connection = %id, key_id = %key_id, outcome = "served", "status read");
    load_status_view(broker, &id).await.map_err(ReadError::from)
}

/// The status view straight from the store (admin side, no key needed).
pub async fn load_status_view(
    broker: &Broker,
    id: &ConnectionId,
) -> Result<StatusView, StoreError> {
    let status = broker
        .repo
        .get::<Status>(id, Part::Status)
        .await?
        .map(|s| s.value)
        .unwrap_or_default();
    let access = broker
        .repo
        .get::<AccessTokens>(id, Part::Access)
        .await?
        .map(|a| a.value);
    Ok(status_view(id, &status, access.as_ref()))
}

//! connect-start: a signed invite becomes a redirect to the sign-in page,
//! with PKCE, `state` and nonce sealed in a cookie.

use crate::Broker;
use crate::broker::BrokerError;
use crate::crypto::{CONSENT_TTL, ConsentSession, InviteError};
use crate::domain::ConnectionId;
use crate::identity::authorize_url;
use crate::store::StoreError;
use time::OffsetDateTime;
use url::Url;

/// Where to send the browser, and the sealed cookie to set.
pub struct Redirect {
    pub location: Url,
    pub sealed_session: String,
    /// Mark the cookie `Secure`: the public URL is https.
    pub secure_cookie: bool,
    /// The cookie's path: the redirect URI's, so that the browser sends it
    /// to the callback and nowhere else, under a stage or base path too.
    pub cookie_path: String,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("this consent link is not valid")]
    InvalidLink,
    #[error(transparent)]
    Invite(#[from] InviteError),
    #[error("this connection no longer exists: ask your provider for a new link")]
    UnknownConnection,
    #[error(transparent)]
    Broker(#[from] BrokerError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub async fn connect_start(
    broker: &Broker,
    id: &str,
    invite: Option<&str>,
    now: OffsetDateTime,
) -> Result<Redirect, StartError> {
    let id = ConnectionId::parse(id).map_err(|_| StartError::InvalidLink)?;
    let invite = invite.ok_or(StartError::InvalidLink)?;
    broker
        .signing_keys()
        .await?
        .verify_invite(&id, invite, now)?;
    let app = broker
        .repo
        .serve(&id)
        .await?
        .ok_or(StartError::UnknownConnection)?
        .value
        .app;
    let redirect_uri = broker.redirect_uri()?;
    let request = authorize_url(&app, &redirect_uri);
    let session = ConsentSession {
        connection: id.clone(),
        state: request.state,
        nonce: request.nonce,
        pkce_verifier: request.pkce_verifier,
        expires_at: (now + CONSENT_TTL).unix_timestamp(),
    };
    tracing::info!(connection = %id, "consent started: redirecting to the sign-in page");
    Ok(Redirect {
        location: request.url,
        sealed_session: broker.signing_keys().await?.seal(&session),
        secure_cookie: redirect_uri.scheme() == "https",
        cookie_path: redirect_uri.path().to_owned(),
    })
}

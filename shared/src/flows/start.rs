//! connect-start: a signed invite becomes a redirect to the sign-in page,
//! with PKCE, `state` and nonce sealed in a cookie. A vendor connection's
//! link first shows what will be granted, with two steps: an administrator
//! grants the app for the organization, and the booking account signs in.

use crate::Broker;
use crate::broker::BrokerError;
use crate::crypto::{CONSENT_TTL, ConsentSession, InviteError, Purpose, random_token};
use crate::domain::{ConnectionId, Secret};
use crate::identity::{admin_consent_url, authorize_url};
use crate::store::StoreError;
use time::OffsetDateTime;
use url::Url;

/// Which step of the link the browser asks for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Step {
    /// The link as sent: a vendor connection's page, else the sign-in.
    #[default]
    Begin,
    /// An administrator grants the vendor app (vendor connections only).
    AdminConsent,
    /// The booking account signs in.
    SignIn,
}

/// What the link leads to.
pub enum Started {
    /// Off to Microsoft, with the session to seal into the cookie.
    Redirect(Redirect),
    /// A vendor connection's first page.
    VendorIntro(VendorIntro),
}

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

/// What a vendor connection's page says: who asks for what.
pub struct VendorIntro {
    pub connection: ConnectionId,
    /// The delegated permissions, as Entra ID names them (`Calendars.ReadWrite`).
    pub permissions: Vec<String>,
    /// The account already connected (a reconnect), if any.
    pub account: Option<String>,
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
    step: Step,
    now: OffsetDateTime,
) -> Result<Started, StartError> {
    let id = ConnectionId::parse(id).map_err(|_| StartError::InvalidLink)?;
    let invite = invite.ok_or(StartError::InvalidLink)?;
    let keys = broker.signing_keys().await?;
    keys.verify_invite(&id, invite, now)?;
    let serve = broker
        .repo
        .serve(&id)
        .await?
        .ok_or(StartError::UnknownConnection)?
        .value;
    let app = serve.app;
    let redirect_uri = broker.redirect_uri()?;
    let (purpose, location, state, nonce, pkce_verifier) = match (app.vendor, step) {
        (true, Step::Begin) => {
            return Ok(Started::VendorIntro(VendorIntro {
                connection: id,
                permissions: app
                    .resources
                    .iter()
                    .flat_map(|r| &r.scopes)
                    .map(|s| s.rsplit('/').next().unwrap_or(s).to_owned())
                    .collect(),
                account: serve.status.account,
            }));
        }
        (true, Step::AdminConsent) => {
            let state = random_token();
            let location =
                admin_consent_url(&app, &redirect_uri, &state).ok_or(StartError::InvalidLink)?;
            let nonce = random_token();
            (
                Purpose::AdminConsent,
                location,
                state,
                nonce,
                Secret::new(""),
            )
        }
        _ => {
            let request = authorize_url(&app, &redirect_uri);
            let verifier = request.pkce_verifier;
            (
                Purpose::SignIn,
                request.url,
                request.state,
                request.nonce,
                verifier,
            )
        }
    };
    let session = ConsentSession {
        connection: id.clone(),
        state,
        nonce,
        pkce_verifier,
        expires_at: (now + CONSENT_TTL).unix_timestamp(),
        purpose,
        invite: app.vendor.then(|| invite.to_owned()),
    };
    tracing::info!(connection = %id, purpose = ?purpose, "consent started: redirecting to Microsoft");
    Ok(Started::Redirect(Redirect {
        location,
        sealed_session: keys.seal(&session),
        secure_cookie: redirect_uri.scheme() == "https",
        cookie_path: redirect_uri.path().to_owned(),
    }))
}

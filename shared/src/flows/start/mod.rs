//! connect-start: a signed invite becomes a redirect to the sign-in page,
//! with PKCE, `state` and nonce sealed in a cookie. A vendor connection's
//! link first shows what will be granted, with two steps: an administrator
//! grants the app for the organization, and the booking account signs in.
//! A self-service connection's link shows the setup form (see [`setup`]),
//! or, once connected, the connection's status.

pub mod setup;

use crate::Broker;
use crate::broker::BrokerError;
use crate::crypto::{CONSENT_TTL, ConsentSession, InviteError, Purpose, SigningKeys, random_token};
use crate::domain::app::InvalidApp;
use crate::domain::{AppRegistration, AppSetup, ConnectionId, Mode, Secret, ServeRecord, Status};
use crate::identity::{admin_consent_url, authorize_url};
use crate::store::StoreError;
use setup::{SetupForm, setup_form};
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
    /// The setup form (self-service connections only), also to replace
    /// the app of a connected one.
    Setup,
}

/// What the link leads to.
pub enum Started {
    /// Off to Microsoft, with the session to seal into the cookie.
    Redirect(Redirect),
    /// A vendor connection's first page.
    VendorIntro(VendorIntro),
    /// A self-service connection's setup form.
    SetupForm(Box<SetupForm>),
    /// A self-service connection that is connected: its status, not a
    /// blank form.
    SetUp(Box<SetUp>),
}

/// What a connected self-service link shows.
pub struct SetUp {
    pub app: AppRegistration,
    pub status: Status,
    /// When the first of its access tokens expires.
    pub expires_at: Option<OffsetDateTime>,
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
    /// The account the operator named to sign in, if any.
    pub booking_account: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("this consent link is not valid")]
    InvalidLink,
    #[error(transparent)]
    Invite(#[from] InviteError),
    #[error("this connection no longer exists: ask your provider for a new link")]
    UnknownConnection,
    /// A vendor connection that names no organization (added before links
    /// were bound to their tenant): whoever opens it could connect any
    /// organization that granted the vendor app.
    #[error(
        "this connection does not name its organization yet: the operator must run `roomtoken connection update ID --tenant <tenant id or domain>`"
    )]
    TenantNotNamed,
    /// A setup form that this link and this browser did not get, or that
    /// was changed.
    #[error("this form was changed or sent from another browser")]
    FormForged,
    #[error("this form is too old")]
    FormExpired,
    /// A setup form sent again after it connected the connection.
    #[error("this form was already used")]
    FormReplayed,
    /// The connection's budget of completed consents for the day is used.
    #[error("too many sign-ins for this connection today")]
    TooManySignIns { retry_at: OffsetDateTime },
    #[error(transparent)]
    Invalid(#[from] InvalidApp),
    #[error(transparent)]
    Broker(#[from] BrokerError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl StartError {
    /// Our side failed (the store, the broker, an app that cannot be
    /// built): an operator must hear of it; the other errors are a link's
    /// or a browser's, and the page says them.
    pub fn is_server_failure(&self) -> bool {
        matches!(self, Self::Invalid(_) | Self::Broker(_) | Self::Store(_))
    }
}

/// Checks the link and reads the connection's serve secret: the start of
/// every step, the setup form's submission included.
pub(crate) async fn verified_serve<'a>(
    broker: &Broker,
    id: &str,
    invite: Option<&'a str>,
    now: OffsetDateTime,
) -> Result<(SigningKeys, ServeRecord, &'a str), StartError> {
    let id = ConnectionId::parse(id).map_err(|_| StartError::InvalidLink)?;
    let invite = invite.ok_or(StartError::InvalidLink)?;
    let keys = broker.signing_keys().await?;
    let generation = keys.verify_invite(&id, invite, now)?;
    let serve = broker
        .repo
        .serve(&id)
        .await?
        .ok_or(StartError::UnknownConnection)?
        .value;
    if generation != serve.link_generation {
        return Err(InviteError::Revoked.into());
    }
    Ok((keys.clone(), serve, invite))
}

/// Off to the sign-in of `app`, with a new session sealed for the callback.
/// `setup`: a self-service form's values, which the callback stores.
pub(crate) fn sign_in_redirect(
    broker: &Broker,
    keys: &SigningKeys,
    app: &AppRegistration,
    invite: &str,
    setup: Option<AppSetup>,
    now: OffsetDateTime,
) -> Result<Redirect, StartError> {
    let redirect_uri = broker.redirect_uri()?;
    let request = authorize_url(app, &redirect_uri);
    let session = ConsentSession {
        connection: app.id.clone(),
        state: request.state,
        nonce: request.nonce,
        pkce_verifier: request.pkce_verifier,
        expires_at: (now + CONSENT_TTL).unix_timestamp(),
        purpose: Purpose::SignIn,
        invite: Some(invite.to_owned()),
        mode: app.mode,
        setup,
    };
    Ok(seal_redirect(keys, request.url, &session, &redirect_uri))
}

fn seal_redirect(
    keys: &SigningKeys,
    location: Url,
    session: &ConsentSession,
    redirect_uri: &Url,
) -> Redirect {
    tracing::info!(connection = %session.connection, purpose = ?session.purpose, "consent started: redirecting to Microsoft");
    Redirect {
        location,
        sealed_session: keys.seal(session),
        secure_cookie: redirect_uri.scheme() == "https",
        cookie_path: redirect_uri.path().to_owned(),
    }
}

pub async fn connect_start(
    broker: &Broker,
    id: &str,
    invite: Option<&str>,
    step: Step,
    form_cookie: Option<&str>,
    now: OffsetDateTime,
) -> Result<Started, StartError> {
    let (keys, serve, invite) = verified_serve(broker, id, invite, now).await?;
    let app = &serve.app;
    let connected = serve.status.account.is_some();
    if app.is_vendor() && app.provider.names_no_tenant() {
        tracing::warn!(connection = %app.id, "a vendor link that names no organization was opened: refused");
        return Err(StartError::TenantNotNamed);
    }
    let shows_status = app.mode == Mode::SelfService && step == Step::Begin && connected;
    if let (Some(retry_at), false) = (serve.writes.room_for_consent(now), shows_status) {
        // Nobody is sent to Microsoft for a consent that could not be stored.
        tracing::warn!(connection = %app.id, "a link was opened after the day's consents were used");
        return Err(StartError::TooManySignIns { retry_at });
    }
    match (app.mode, step) {
        (Mode::Vendor, Step::Begin) => Ok(Started::VendorIntro(VendorIntro {
            connection: app.id.clone(),
            permissions: app
                .resources
                .iter()
                .flat_map(|r| &r.scopes)
                .map(|s| s.rsplit('/').next().unwrap_or(s).to_owned())
                .collect(),
            account: serve.status.account.clone(),
            booking_account: app.booking_account.clone(),
        })),
        // App-only: nobody signs in; the admin's grant is the consent.
        (Mode::Vendor, Step::AdminConsent) | (Mode::AppOnly | Mode::VendorAppOnly, _) => {
            let redirect_uri = broker.redirect_uri()?;
            let state = random_token();
            let location =
                admin_consent_url(app, &redirect_uri, &state).ok_or(StartError::InvalidLink)?;
            let session = ConsentSession {
                connection: app.id.clone(),
                state,
                nonce: random_token(),
                pkce_verifier: Secret::new(""),
                expires_at: (now + CONSENT_TTL).unix_timestamp(),
                purpose: Purpose::AdminConsent,
                invite: Some(invite.to_owned()),
                mode: app.mode,
                setup: None,
            };
            Ok(Started::Redirect(seal_redirect(
                &keys,
                location,
                &session,
                &redirect_uri,
            )))
        }
        (Mode::SelfService, Step::Begin) if app.is_set_up() && connected => {
            Ok(Started::SetUp(Box::new(SetUp {
                expires_at: serve.access.as_ref().and_then(|a| a.earliest_expiry()),
                app: serve.app.clone(),
                status: serve.status.clone(),
            })))
        }
        // A reconnect signs in to the stored app; anything else (and any
        // step before the form was ever completed) is the form.
        (Mode::SelfService, step) if !app.is_set_up() || step != Step::SignIn => {
            let form = setup_form(broker, &keys, &serve, invite, form_cookie, now)?;
            Ok(Started::SetupForm(Box::new(form)))
        }
        _ => Ok(Started::Redirect(sign_in_redirect(
            broker, &keys, app, invite, None, now,
        )?)),
    }
}

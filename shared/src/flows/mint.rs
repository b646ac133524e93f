//! One access token per resource from one refresh token: the loop that the
//! consent callback (after the code) and the refresh pass share.
//!
//! A refresh token is not tied to a resource, but a token request names the
//! scopes of one resource only (mixing them fails with AADSTS700022), and
//! every answer may rotate the refresh token: each request uses the newest.

use crate::domain::{AccessToken, Resource, Secret};
use crate::identity::{IdentityError, TokenSet};
use time::OffsetDateTime;

/// What to do when a resource's token cannot be had.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AfterFailure {
    /// Stop: the refresh pass tries the rest at its next attempt.
    Stop,
    /// Go on with the next resource: the consent page lists what is pending.
    GoOn,
}

/// Why a resource's token was not had.
pub(crate) enum NotMinted {
    /// The request failed.
    Failed(IdentityError),
    /// No time was left to ask: the rest waits for the next round, and
    /// nothing failed.
    OutOfTime,
}

impl From<IdentityError> for NotMinted {
    fn from(error: IdentityError) -> Self {
        Self::Failed(error)
    }
}

/// The tokens one round of requests obtained.
pub(crate) struct Minted {
    pub tokens: Vec<AccessToken>,
    /// The newest refresh token: the last one an answer carried, or the one
    /// the round started with.
    pub refresh_token: Secret,
    /// Resources whose token could not be had, by name.
    pub failed: Vec<(String, IdentityError)>,
}

/// Asks `request` for one token per resource, in order, each time with the
/// newest refresh token.
pub(crate) async fn mint_each<'a, F, Fut>(
    resources: impl IntoIterator<Item = &'a Resource>,
    refresh_token: Secret,
    now: OffsetDateTime,
    after_failure: AfterFailure,
    mut request: F,
) -> Minted
where
    F: FnMut(&'a Resource, Secret) -> Fut,
    Fut: Future<Output = Result<TokenSet, NotMinted>>,
{
    let mut minted = Minted {
        tokens: Vec::new(),
        refresh_token,
        failed: Vec::new(),
    };
    for resource in resources {
        match request(resource, minted.refresh_token.clone()).await {
            Ok(tokens) => {
                if let Some(newer) = tokens.refresh_token.clone() {
                    minted.refresh_token = newer;
                }
                minted.tokens.push(access_token(resource, &tokens, now));
            }
            Err(NotMinted::OutOfTime) => break,
            Err(NotMinted::Failed(e)) => {
                minted.failed.push((resource.name.clone(), e));
                if after_failure == AfterFailure::Stop {
                    break;
                }
            }
        }
    }
    minted
}

/// The stored form of a token answer for one resource.
pub(crate) fn access_token(
    resource: &Resource,
    tokens: &TokenSet,
    now: OffsetDateTime,
) -> AccessToken {
    AccessToken {
        resource: resource.name.clone(),
        access_token: tokens.access_token.clone(),
        token_type: tokens.token_type.clone(),
        scope: tokens
            .scope
            .clone()
            .unwrap_or_else(|| resource.scopes.join(" ")),
        expires_at: now + tokens.expires_in,
        obtained_at: now,
    }
}

/// The credential a connection's own token requests use: its certificate
/// when it has one, else its newest client secret.
pub(crate) fn own_credential(grant: &crate::domain::GrantRecord) -> crate::identity::Credential {
    use crate::identity::Credential;
    match &grant.certificate {
        Some(key) => Credential::Certificate(key.clone()),
        None => Credential::Secret(grant.client_secret.clone()),
    }
}

/// The credential of the deployment's vendor app: its certificate when it
/// has one, else its client secret.
pub(crate) fn vendor_credential(vendor: &crate::domain::VendorApp) -> crate::identity::Credential {
    use crate::identity::Credential;
    match &vendor.certificate {
        Some(key) => Credential::Certificate(key.clone()),
        None => Credential::Secret(vendor.client_secret.clone()),
    }
}

/// One token for `resource`: redeemed from the refresh token, or for an
/// app-only connection with client credentials (its `.default` scope).
pub(crate) async fn request_token(
    broker: &crate::Broker,
    app: &crate::domain::AppRegistration,
    credential: &crate::identity::Credential,
    refresh_token: &crate::domain::Secret,
    resource: &crate::domain::Resource,
) -> Result<crate::identity::TokenSet, crate::identity::IdentityError> {
    let client = crate::identity::AppClient::new(app, credential);
    if app.is_app_only() {
        let scope = resource.scopes.join(" ");
        return broker.identity.client_credentials(client, &scope).await;
    }
    let scopes = resource.token_request_scopes();
    broker
        .identity
        .refresh(client, refresh_token, &scopes)
        .await
}

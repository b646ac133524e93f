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

/// During a client-secret rotation (the connection holds two secrets): the
/// previous secret, to try when the identity platform refuses the newest.
/// Only a connection's own client secret rotates this way (not a vendor
/// app's, not a certificate), and not while a self-service form brings a
/// new app.
pub(crate) fn previous_secret(
    app: &crate::domain::AppRegistration,
    credential: &crate::identity::Credential,
    grant: &crate::domain::GrantRecord,
) -> Option<crate::identity::Credential> {
    (!app.is_vendor() && matches!(credential, crate::identity::Credential::Secret(_)))
        .then(|| grant.previous_client_secret.clone())
        .flatten()
        .map(crate::identity::Credential::Secret)
}

/// The one fallback of a rotation: `attempt` with the newest credential,
/// and again with `previous` when `refused` says the newest client secret
/// was refused. The second answer is kept when `keep_second` says so
/// (otherwise the first). Returns the answer kept and, during a rotation,
/// which secret it came from.
pub(crate) async fn newest_then_previous<T, Fut>(
    id: &crate::domain::ConnectionId,
    newest: crate::identity::Credential,
    previous: Option<crate::identity::Credential>,
    attempt: impl Fn(crate::identity::Credential) -> Fut,
    refused: impl Fn(&T) -> bool,
    keep_second: impl Fn(&T) -> bool,
) -> (T, Option<crate::domain::status::SecretInUse>)
where
    Fut: std::future::Future<Output = T>,
{
    use crate::domain::status::SecretInUse;
    let rotating = previous.is_some();
    let first = attempt(newest).await;
    match previous {
        Some(previous) if refused(&first) => {
            tracing::warn!(connection = %id, "the newest client secret was refused; trying the previous one");
            let second = attempt(previous).await;
            if keep_second(&second) {
                (second, Some(SecretInUse::Previous))
            } else {
                (first, Some(SecretInUse::Newest))
            }
        }
        _ => (first, rotating.then_some(SecretInUse::Newest)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ConnectionId;
    use crate::domain::status::SecretInUse;
    use crate::identity::Credential;
    use std::sync::Mutex;

    fn secret(text: &str) -> Credential {
        Credential::Secret(Secret::new(text))
    }

    /// Runs the fallback over answers given per secret; returns the answer
    /// kept, which secret, and the secrets tried in order.
    async fn run(
        previous: Option<&str>,
        answers: &[(&str, &'static str)],
        keep_second: bool,
    ) -> (&'static str, Option<SecretInUse>, Vec<String>) {
        let id = ConnectionId::parse("contoso").unwrap();
        let tried = Mutex::new(Vec::new());
        let (answer, in_use) = newest_then_previous(
            &id,
            secret("newest"),
            previous.map(secret),
            |credential| {
                let Credential::Secret(s) = credential else {
                    unreachable!("secrets only")
                };
                let name = s.expose().to_owned();
                tried.lock().unwrap().push(name.clone());
                let answer = answers.iter().find(|(n, _)| *n == name).unwrap().1;
                async move { answer }
            },
            |answer| *answer == "refused",
            |_| keep_second,
        )
        .await;
        (answer, in_use, tried.into_inner().unwrap())
    }

    #[tokio::test]
    async fn the_previous_secret_is_tried_only_when_the_newest_is_refused() {
        let answers = [("newest", "refused"), ("previous", "tokens")];
        assert_eq!(
            run(None, &answers, true).await,
            ("refused", None, vec!["newest".into()]),
            "no rotation: one try"
        );
        assert_eq!(
            run(Some("previous"), &answers, true).await,
            (
                "tokens",
                Some(SecretInUse::Previous),
                vec!["newest".into(), "previous".into()]
            )
        );
        assert_eq!(
            run(Some("previous"), &answers, false).await,
            (
                "refused",
                Some(SecretInUse::Newest),
                vec!["newest".into(), "previous".into()]
            ),
            "the second answer not kept: the first, from the newest"
        );
        let working = [("newest", "tokens"), ("previous", "tokens")];
        assert_eq!(
            run(Some("previous"), &working, true).await,
            ("tokens", Some(SecretInUse::Newest), vec!["newest".into()]),
            "the newest works: the previous is never tried"
        );
    }
}

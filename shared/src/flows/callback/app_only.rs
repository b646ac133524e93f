//! The callback of an admin consent for an app-only connection: tokens
//! minted in the connection's own tenant prove the grant.

use super::*;
use crate::domain::grant::APP_ONLY_ACCOUNT;

/// An app-only connection whose admin consent came back: one client
/// credentials token per resource, minted for the connection's own tenant
/// with its own credential (or the vendor app's), proves the grant; they
/// are stored and served. The answer's `tenant` is never used: a token
/// minted there would prove only that someone in that tenant once granted
/// the app, not that the link's admin did.
pub(super) async fn app_only_consented(
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
pub(super) async fn first_app_only_token(
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

//! Consent links: signed, expiring, revocable all at once.

use super::*;

/// The longest a consent link may live: a link is a credential of sorts
/// (it can pin an account to a connection), so it must run out.
pub const MAX_LINK_TTL: Duration = Duration::from_secs(30 * 24 * 3_600);

/// When a link made now with `ttl` expires; refused beyond 30 days.
pub fn link_expiry(now: OffsetDateTime, ttl: Duration) -> Result<OffsetDateTime, AdminError> {
    if ttl > MAX_LINK_TTL {
        return Err(AdminError::LinkTtl);
    }
    now.checked_add(time::Duration::try_from(ttl).map_err(|_| AdminError::LinkTtl)?)
        .ok_or(AdminError::LinkTtl)
}

pub async fn consent_link(
    broker: &Broker,
    id: &ConnectionId,
    expires_at: OffsetDateTime,
) -> Result<Url, AdminError> {
    if expires_at > broker.now() + MAX_LINK_TTL {
        return Err(AdminError::LinkTtl);
    }
    let serve = serve_of(broker, id).await?;
    Ok(broker
        .consent_link(id, expires_at, serve.value.link_generation)
        .await?)
}

/// Revokes every consent link of a connection sent so far (one serve
/// write); the links made afterwards work.
pub async fn revoke_links(broker: &Broker, id: &ConnectionId) -> Result<(), AdminError> {
    let written = broker
        .repo
        .update::<ServeRecord, _>(
            id,
            Part::Serve,
            Writer::Revocation,
            broker.now(),
            |record| {
                let mut record = record?;
                record.link_generation = record.link_generation.wrapping_add(1);
                Some(record)
            },
        )
        .await?;
    if written.is_none() {
        return Err(AdminError::NotFound(id.clone()));
    }
    tracing::info!(connection = %id, "every earlier consent link revoked");
    Ok(())
}

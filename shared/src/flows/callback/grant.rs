//! The grant's writes: the consent's grant, recognized as its own after
//! a conflict, and a refresh token rotated while the other tokens were
//! minted.

use super::*;

/// The waits before each new try of the grant's write after a conflict
/// (others writing at the same moment, or a read not yet up to date).
pub(super) const GRANT_WRITE_WAITS: [Duration; 4] = [
    Duration::from_millis(250),
    Duration::from_millis(500),
    Duration::from_secs(1),
    Duration::from_secs(2),
];

/// Stores the refresh token that minting the other resources' first tokens
/// rotated to, over the one just stored. It is the consent's second write
/// of the grant, counted with people's writes (not as a second consent, and
/// not in the product's hourly room, which the refresh passes need). If it
/// cannot be written, the one stored stays: Entra ID keeps an older refresh
/// token valid, and the next pass rotates it again.
pub(super) async fn store_rotated(
    broker: &Broker,
    id: &ConnectionId,
    stored: &Secret,
    rotated: Secret,
    now: OffsetDateTime,
) {
    let written = broker
        .repo
        .update::<GrantRecord, _>(id, Part::Grant, Writer::Person, now, |record| {
            let mut record = record?;
            let grant = record.grant.as_mut()?;
            // Unless someone stored another grant meanwhile.
            (grant.refresh_token == *stored).then(|| {
                grant.refresh_token = rotated.clone();
            })?;
            Some(record)
        })
        .await;
    if let Err(e) = written {
        tracing::warn!(connection = %id, error = %e, "the refresh token rotated by the first tokens could not be stored; the one stored stays");
    }
}

/// Stores the new grant (with a self-service form's client secret) and
/// marks the session completed, in one write. A refresh pass that rotated
/// the old grant meanwhile loses: the new consent wins, as long as it is
/// still the same account.
pub(super) async fn store_grant(
    broker: &Broker,
    id: &ConnectionId,
    read: Versioned<GrantRecord>,
    session: &ConsentSession,
    grant: Grant,
    client_secret: Option<Secret>,
    now: OffsetDateTime,
) -> Result<(), CallbackError> {
    let mut current = read;
    let mut waits = GRANT_WRITE_WAITS.iter();
    loop {
        let mut record = current.value.clone();
        record.grant = Some(grant.clone());
        if let Some(secret) = &client_secret {
            record.client_secret = secret.clone();
        }
        record.complete_session(&session.state, session.expires_at, now);
        match broker
            .repo
            .write(
                id,
                Part::Grant,
                &mut record,
                Some(&current.version),
                Writer::Internet,
                now,
            )
            .await
        {
            Ok(_) => return Ok(()),
            Err(StoreError::Conflict(_)) => {
                // A bounded number of tries, each after a wait: a read just
                // after a write may return the version before it for a while.
                let Some(wait) = waits.next() else {
                    return Err(StoreError::Conflict(id.as_str().to_owned()).into());
                };
                broker.sleeper.sleep(*wait).await;
                current = broker
                    .repo
                    .grant(id)
                    .await?
                    .ok_or(CallbackError::UnknownConnection)?;
                if current.value.completed(&session.state) {
                    // Ours, if it holds our refresh token: a write that
                    // landed although its answer said otherwise (lost, or
                    // confirmed against a read not yet up to date).
                    let ours = current
                        .value
                        .grant
                        .as_ref()
                        .is_some_and(|g| g.refresh_token == grant.refresh_token);
                    return if ours {
                        Ok(())
                    } else {
                        Err(CallbackError::SessionUsed)
                    };
                }
                if let Some(pinned) = &current.value.grant {
                    ensure_same_account(&pinned.account, &grant.account)?;
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
}

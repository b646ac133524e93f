//! Device keys: made in batches, listed, revoked.

use super::*;

/// The most keys one `key create --count` makes (one write for all).
pub const MAX_KEYS_AT_ONCE: usize = 500;

/// Creates `count` device keys in one write (one batch: one label, one
/// date); the caller shows each once. Nothing of a key but its serial is
/// kept: its tag is made again, from the device-key secret, when a display
/// presents it.
pub async fn create_keys(
    broker: &Broker,
    id: &ConnectionId,
    label: Option<String>,
    count: usize,
    now: OffsetDateTime,
) -> Result<Vec<DeviceKey>, AdminError> {
    let count = u32::try_from(count)
        .ok()
        .filter(|n| (1..=MAX_KEYS_AT_ONCE as u32).contains(n))
        .ok_or(AdminError::KeyCount)?;
    let signer = broker.device_key_signer().await?;
    // The ids the write that lands gave (a lost race tries again).
    let mut issued: Option<Vec<String>> = None;
    let written = broker
        .repo
        .update::<ServeRecord, _>(id, Part::Serve, Writer::Person, now, |record| {
            let mut record = record?;
            issued = record.keys.issue(count, label.clone(), now);
            issued.is_some().then_some(record)
        })
        .await
        .map_err(|e| match e {
            StoreError::TooLarge { bytes, limit, .. } => AdminError::KeysDoNotFit {
                id: id.clone(),
                count,
                bytes,
                limit,
            },
            other => AdminError::Store(other),
        })?;
    if written.is_none() {
        return Err(AdminError::NotFound(id.clone()));
    }
    let ids = issued.ok_or(AdminError::KeyCount)?;
    let keys: Vec<DeviceKey> = ids
        .iter()
        .map(|key_id| DeviceKey::for_id(signer, id.as_str(), key_id))
        .collect();
    for key in &keys {
        tracing::info!(connection = %id, key_id = %key.id, "device key created");
    }
    Ok(keys)
}

/// Creates one device key.
pub async fn create_key(
    broker: &Broker,
    id: &ConnectionId,
    label: Option<String>,
    now: OffsetDateTime,
) -> Result<DeviceKey, AdminError> {
    let mut keys = create_keys(broker, id, label, 1, now).await?;
    keys.pop().ok_or(AdminError::KeyCount)
}

/// The connection's active keys (revoked keys are not kept).
pub async fn list_keys(broker: &Broker, id: &ConnectionId) -> Result<Vec<ActiveKey>, AdminError> {
    Ok(serve_of(broker, id).await?.value.keys.active())
}

/// Revokes every key in `key_ids` in one write; nothing is revoked when one
/// of them is not an active key of the connection. A key made just before
/// may not be seen yet (Secrets Manager's reads are eventually consistent):
/// "no such key" is concluded only after reading again a few times.
pub async fn revoke_keys(
    broker: &Broker,
    id: &ConnectionId,
    key_ids: &[String],
    now: OffsetDateTime,
) -> Result<(), AdminError> {
    let mut waits = SETTLE_WAITS.iter();
    loop {
        match revoke_keys_once(broker, id, key_ids, now).await {
            Err(AdminError::KeyNotFound(..)) if let Some(wait) = waits.next() => {
                broker.sleeper.sleep(*wait).await;
            }
            result => return result,
        }
    }
}

/// The waits before reading again what a read may not show yet.
const SETTLE_WAITS: [std::time::Duration; 3] = [
    std::time::Duration::from_millis(500),
    std::time::Duration::from_secs(1),
    std::time::Duration::from_secs(2),
];

async fn revoke_keys_once(
    broker: &Broker,
    id: &ConnectionId,
    key_ids: &[String],
    now: OffsetDateTime,
) -> Result<(), AdminError> {
    let mut missing: Option<String> = None;
    let written = broker
        .repo
        .update::<ServeRecord, _>(id, Part::Serve, Writer::Revocation, now, |record| {
            let mut record = record?;
            missing = key_ids
                .iter()
                .find(|key_id| !record.keys.revoke(key_id))
                .cloned();
            missing.is_none().then_some(record)
        })
        .await?;
    if let Some(key_id) = missing {
        return Err(AdminError::KeyNotFound(id.clone(), key_id));
    }
    if written.is_none() {
        return Err(AdminError::NotFound(id.clone()));
    }
    for key_id in key_ids {
        tracing::info!(connection = %id, key_id = %key_id, "device key revoked");
    }
    Ok(())
}

/// Revokes one device key.
pub async fn revoke_key(
    broker: &Broker,
    id: &ConnectionId,
    key_id: &str,
    now: OffsetDateTime,
) -> Result<(), AdminError> {
    revoke_keys(broker, id, &[key_id.to_owned()], now).await
}

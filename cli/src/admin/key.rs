//! `roomtoken key …`: device keys, made in batches, listed and revoked.

use super::*;

pub(super) async fn key(
    broker: &Broker,
    command: &KeyCommand,
    out: &mut dyn Write,
    now: OffsetDateTime,
) -> anyhow::Result<()> {
    match command {
        KeyCommand::Create { id, label, count } => {
            let keys = admin::create_keys(broker, id, label.clone(), usize::from(*count), now)
                .await
                .map_err(batching_hint)?;
            // Only the keys on stdout, so that scripts can capture them.
            for key in &keys {
                writeln!(out, "{}", key.key.expose())?;
            }
            let ids: Vec<&str> = keys.iter().map(|k| k.id.as_str()).collect();
            eprintln!(
                "device key(s) {} created; each is shown only this once",
                ids.join(", ")
            );
            Ok(())
        }
        KeyCommand::List { id } => {
            let keys = admin::list_keys(broker, id).await?;
            for key in &keys {
                writeln!(
                    out,
                    "{}\t{}\t{}\t{}",
                    key.id,
                    printable(key.label.as_deref().unwrap_or("-")),
                    rfc3339(key.created_at),
                    if key.legacy {
                        "active, legacy"
                    } else {
                        "active"
                    },
                )?;
            }
            let legacy = keys.iter().filter(|k| k.legacy).count();
            if legacy > 0 {
                eprintln!(
                    "{legacy} active key(s) are legacy (made before device keys authenticated themselves): token-read refuses them unless ROOMTOKEN_LEGACY_DEVICE_KEYS=accept; give those displays new keys (`roomtoken key create {id}`), then revoke the legacy ones"
                );
            }
            Ok(())
        }
        KeyCommand::Revoke { id, key_ids } => {
            admin::revoke_keys(broker, id, key_ids, now)
                .await
                .map_err(batching_hint)?;
            for key_id in key_ids {
                writeln!(out, "revoked device key {key_id}")?;
            }
            Ok(())
        }
    }
}

/// A refusal for lack of room in the version quota, with how to do more
/// in fewer changes.
pub(super) fn batching_hint(error: AdminError) -> anyhow::Error {
    let quota = matches!(error, AdminError::Store(StoreError::WriteQuota { .. }));
    let error = anyhow::Error::new(error);
    if quota {
        error.context(
            "each change to a connection is a new version of its secret, and Secrets Manager \
             keeps every version for 24 hours: create several keys in one change with \
             `roomtoken key create ID --count N`, and revoke several with \
             `roomtoken key revoke ID KEY_ID KEY_ID...`",
        )
    } else {
        error
    }
}

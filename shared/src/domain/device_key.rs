//! Device keys: 256 random bits shown once, stored as SHA-256, compared in
//! constant time, each with a public id that may appear in logs.

use super::Secret;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use time::OffsetDateTime;

/// Recognisable in a config file or a leaked-secret scan.
const PREFIX: &str = "rtk_";

/// A freshly created key: the only moment the secret exists outside a display.
pub struct DeviceKey {
    pub id: String,
    pub key: Secret,
}

impl DeviceKey {
    /// `rtk_<id>_<43 characters of base64url>`, 256 bits of entropy.
    pub fn generate() -> Self {
        let mut rng = rand::rng();
        let mut id = [0u8; 5];
        rng.fill_bytes(&mut id);
        let mut secret = [0u8; 32];
        rng.fill_bytes(&mut secret);
        let id = hex::encode(id);
        let key = format!("{PREFIX}{id}_{}", URL_SAFE_NO_PAD.encode(secret));
        Self {
            id,
            key: Secret::new(key),
        }
    }
}

/// The public id inside a presented key, if it has the right shape.
pub fn key_id(presented: &str) -> Option<&str> {
    let rest = presented.strip_prefix(PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    (id.len() == 10 && !secret.is_empty()).then_some(id)
}

fn hash(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DeviceKeyRecord {
    pub id: String,
    pub label: Option<String>,
    pub sha256: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub revoked_at: Option<OffsetDateTime>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct DeviceKeys {
    pub keys: Vec<DeviceKeyRecord>,
}

impl DeviceKeys {
    pub fn add(&mut self, key: &DeviceKey, label: Option<String>, now: OffsetDateTime) {
        self.keys.push(DeviceKeyRecord {
            id: key.id.clone(),
            label,
            sha256: hash(key.key.expose()),
            created_at: now,
            revoked_at: None,
        });
    }

    /// Marks a key revoked; false when no active key has that id.
    pub fn revoke(&mut self, id: &str, now: OffsetDateTime) -> bool {
        match self
            .keys
            .iter_mut()
            .find(|k| k.id == id && k.revoked_at.is_none())
        {
            Some(record) => {
                record.revoked_at = Some(now);
                true
            }
            None => false,
        }
    }

    /// The id of the active key that matches, compared in constant time.
    pub fn authenticate(&self, presented: &str) -> Option<&str> {
        match self.check(presented) {
            KeyCheck::Valid(id) => Some(id),
            KeyCheck::Revoked | KeyCheck::Unknown => None,
        }
    }

    /// What a presented key is: active, revoked, or not one of ours (for the
    /// audit log; a display is told the same 401 for both refusals).
    pub fn check(&self, presented: &str) -> KeyCheck<'_> {
        let Some(id) = key_id(presented) else {
            return KeyCheck::Unknown;
        };
        let presented_hash = hash(presented);
        let matching = self
            .keys
            .iter()
            .filter(|k| k.id == id)
            .find(|k| bool::from(k.sha256.as_bytes().ct_eq(presented_hash.as_bytes())));
        match matching {
            Some(record) if record.revoked_at.is_none() => KeyCheck::Valid(record.id.as_str()),
            Some(_) => KeyCheck::Revoked,
            None => KeyCheck::Unknown,
        }
    }
}

/// The result of checking a presented key against the stored hashes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyCheck<'a> {
    /// An active key, with its id.
    Valid(&'a str),
    /// A key of this connection that was revoked.
    Revoked,
    /// Not a key of this connection (wrong, forged, or another connection's).
    Unknown,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_has_256_bits_a_prefix_and_an_id() {
        let key = DeviceKey::generate();
        let text = key.key.expose();
        assert!(text.starts_with("rtk_"));
        assert_eq!(key_id(text), Some(key.id.as_str()));
        let secret = &text["rtk_".len() + key.id.len() + 1..];
        assert_eq!(URL_SAFE_NO_PAD.decode(secret).unwrap().len(), 32);
        assert_ne!(DeviceKey::generate().key, key.key);
    }

    #[test]
    fn only_active_matching_keys_authenticate() {
        let now = OffsetDateTime::UNIX_EPOCH;
        let key = DeviceKey::generate();
        let mut keys = DeviceKeys::default();
        keys.add(&key, Some("lobby".into()), now);
        assert!(!keys.keys[0].sha256.contains(key.key.expose()));
        assert_eq!(keys.authenticate(key.key.expose()), Some(key.id.as_str()));
        let forged = format!("rtk_{}_AAAA", key.id);
        assert_eq!(keys.authenticate(&forged), None);
        assert_eq!(keys.authenticate("nonsense"), None);
        assert!(keys.revoke(&key.id, now));
        assert!(!keys.revoke(&key.id, now), "already revoked");
        assert_eq!(keys.authenticate(key.key.expose()), None);
        assert_eq!(keys.check(key.key.expose()), KeyCheck::Revoked);
        assert_eq!(keys.check(&forged), KeyCheck::Unknown);
    }
}

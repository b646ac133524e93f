//! Device keys: what a display presents to read its connection's tokens.
//!
//! A key is `rtk_<id>_<tag>`. Keys made today authenticate themselves: the
//! id is 16 hex characters (64 random bits) and the tag is an HMAC-SHA256,
//! keyed with the system device-key secret, over the connection and the
//! id. token-read checks the tag in memory, so a made-up key or a made-up
//! connection id is refused before any store read, in the time of one
//! HMAC whatever the connection. Only a key whose tag is right makes it
//! read the connection, to see that the id is still one of its active keys
//! (revocation). The serve secret keeps of such a key its id, label and
//! dates, never a hash.
//!
//! Keys made before (10-hex id, 256 random bits, kept as SHA-256) are
//! *legacy*: they work only where the operator lets them
//! (`ROOMTOKEN_LEGACY_DEVICE_KEYS=accept`), since checking one needs the
//! store.

use super::Secret;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use time::OffsetDateTime;

type HmacSha256 = Hmac<Sha256>;

/// Recognisable in a config file or a leaked-secret scan.
const PREFIX: &str = "rtk_";
/// Hex characters of a current key's id (64 bits: an id never comes back,
/// so a revoked key, whose record is gone, never turns valid again).
const ID_LEN: usize = 16;
/// Hex characters of a legacy key's id.
const LEGACY_ID_LEN: usize = 10;
/// Base64url characters of a 32-byte tag or secret.
const TAG_LEN: usize = 43;
/// Binds a tag to its purpose and to this format.
const TAG_CONTEXT: &str = "roomtoken device key v2";

/// The HMAC key that makes and checks device keys, derived from the system
/// secret `system/device-key`. Its `Debug` shows nothing.
#[derive(Clone)]
pub struct DeviceKeySigner([u8; 32]);

impl std::fmt::Debug for DeviceKeySigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DeviceKeySigner(***)")
    }
}

impl DeviceKeySigner {
    /// From the stored secret (at least 32 characters; the stack generates
    /// 64). A fixed label derives the key, as the signing keys are.
    pub fn from_stored(stored: &Secret) -> Self {
        Self(mac(stored.expose().trim().as_bytes(), &[TAG_CONTEXT]).into())
    }

    fn tag(&self, connection: &str, id: &str) -> [u8; 32] {
        mac(&self.0, &[TAG_CONTEXT, connection, id]).into()
    }

    /// Whether `presented` is a current key that this signer made for
    /// `connection`, compared in constant time. Says nothing of revocation.
    pub fn verify(&self, connection: &str, presented: &PresentedKey<'_>) -> bool {
        let PresentedKey::Current { id, tag } = presented else {
            return false;
        };
        let mut decoded = [0u8; 32];
        // A tag that does not decode is checked against zeros all the same:
        // the time spent does not depend on what was sent.
        let decodes = URL_SAFE_NO_PAD
            .decode_slice(tag, &mut decoded)
            .is_ok_and(|n| n == 32);
        let expected = self.tag(connection, id);
        bool::from(expected.ct_eq(&decoded)) && decodes
    }
}

/// HMAC-SHA256 over parts separated by newlines (none of them can hold one:
/// ids are hex, connection ids `[a-z0-9-]`).
fn mac(key: &[u8], parts: &[&str]) -> sha2::digest::Output<Sha256> {
    let mut mac = HmacSha256::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    for (n, part) in parts.iter().enumerate() {
        if n > 0 {
            mac.update(b"\n");
        }
        mac.update(part.as_bytes());
    }
    mac.finalize().into_bytes()
}

/// A freshly created key: the only moment the secret exists outside a display.
pub struct DeviceKey {
    pub id: String,
    pub key: Secret,
}

impl DeviceKey {
    /// `rtk_<16 hex>_<43 characters of base64url>`, a key of `connection`.
    pub fn generate(signer: &DeviceKeySigner, connection: &str) -> Self {
        let mut id = [0u8; ID_LEN / 2];
        rand::rng().fill_bytes(&mut id);
        let id = hex::encode(id);
        let tag = URL_SAFE_NO_PAD.encode(signer.tag(connection, &id));
        Self {
            key: Secret::new(format!("{PREFIX}{id}_{tag}")),
            id,
        }
    }
}

/// A presented key that has the shape of one, split into its parts.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum PresentedKey<'a> {
    /// Made since keys authenticate themselves.
    Current { id: &'a str, tag: &'a str },
    /// Made before: only the stored hash can tell.
    Legacy { id: &'a str, whole: &'a str },
}

impl std::fmt::Debug for PresentedKey<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Current { id, .. } => write!(f, "Current({id})"),
            Self::Legacy { id, .. } => write!(f, "Legacy({id})"),
        }
    }
}

impl<'a> PresentedKey<'a> {
    pub fn parse(presented: &'a str) -> Option<Self> {
        let rest = presented.strip_prefix(PREFIX)?;
        let (id, secret) = rest.split_once('_')?;
        if !id.bytes().all(|b| b.is_ascii_hexdigit()) || secret.is_empty() {
            return None;
        }
        match id.len() {
            ID_LEN if secret.len() == TAG_LEN => Some(Self::Current { id, tag: secret }),
            LEGACY_ID_LEN => Some(Self::Legacy {
                id,
                whole: presented,
            }),
            _ => None,
        }
    }

    pub fn id(&self) -> &'a str {
        match self {
            Self::Current { id, .. } | Self::Legacy { id, .. } => id,
        }
    }
}

/// The public id inside a presented key, if it has the right shape.
pub fn key_id(presented: &str) -> Option<&str> {
    PresentedKey::parse(presented).map(|key| key.id())
}

fn hash(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DeviceKeyRecord {
    pub id: String,
    pub label: Option<String>,
    /// Legacy keys only: the SHA-256 of the whole key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub revoked_at: Option<OffsetDateTime>,
}

impl DeviceKeyRecord {
    /// Made before keys authenticated themselves.
    pub fn is_legacy(&self) -> bool {
        self.sha256.is_some()
    }
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
            sha256: None,
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

    /// Active legacy keys, which work only where legacy keys are accepted.
    pub fn legacy_active(&self) -> usize {
        self.keys
            .iter()
            .filter(|k| k.is_legacy() && k.revoked_at.is_none())
            .count()
    }

    /// A current key whose tag was verified: whether its id is still an
    /// active key of this connection. A verified key that is not here was
    /// ours and is gone (revoked, or its connection removed).
    pub fn check_verified(&self, id: &str) -> KeyCheck<'_> {
        match self.keys.iter().find(|k| k.id == id && !k.is_legacy()) {
            Some(record) if record.revoked_at.is_none() => KeyCheck::Valid(record.id.as_str()),
            _ => KeyCheck::Revoked,
        }
    }

    /// A legacy key: compared with the stored hashes in constant time.
    pub fn check_legacy(&self, id: &str, whole: &str) -> KeyCheck<'_> {
        let presented_hash = hash(whole);
        let matching = self
            .keys
            .iter()
            .filter(|k| k.id == id)
            .filter_map(|k| k.sha256.as_deref().map(|h| (k, h)))
            .find(|(_, h)| bool::from(h.as_bytes().ct_eq(presented_hash.as_bytes())));
        match matching {
            Some((record, _)) if record.revoked_at.is_none() => KeyCheck::Valid(record.id.as_str()),
            Some(_) => KeyCheck::Revoked,
            None => KeyCheck::Unknown,
        }
    }
}

/// The result of checking a presented key against the stored keys.
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
pub(crate) mod tests {
    use super::*;

    pub(crate) fn signer() -> DeviceKeySigner {
        DeviceKeySigner::from_stored(&Secret::new("k".repeat(64)))
    }

    /// A key as versions before self-authenticating keys made them.
    pub(crate) fn legacy_key(keys: &mut DeviceKeys, now: OffsetDateTime) -> (String, String) {
        let id = "0123456789".to_owned();
        let whole = format!("rtk_{id}_{}", "L".repeat(43));
        keys.keys.push(DeviceKeyRecord {
            id: id.clone(),
            label: None,
            sha256: Some(hash(&whole)),
            created_at: now,
            revoked_at: None,
        });
        (id, whole)
    }

    #[test]
    fn a_key_has_a_prefix_an_id_and_a_tag_that_binds_its_connection() {
        let signer = signer();
        let key = DeviceKey::generate(&signer, "contoso");
        let text = key.key.expose();
        assert!(text.starts_with("rtk_"));
        assert_eq!(key_id(text), Some(key.id.as_str()));
        assert_eq!(key.id.len(), 16);
        let tag = &text["rtk_".len() + key.id.len() + 1..];
        assert_eq!(URL_SAFE_NO_PAD.decode(tag).unwrap().len(), 32);
        assert_ne!(DeviceKey::generate(&signer, "contoso").key, key.key);

        let presented = PresentedKey::parse(text).unwrap();
        assert!(signer.verify("contoso", &presented));
        assert!(!signer.verify("fabrikam", &presented), "another connection");
        let other = DeviceKeySigner::from_stored(&Secret::new("o".repeat(64)));
        assert!(!other.verify("contoso", &presented), "another broker");
        // One character changed anywhere in the tag or the id.
        for at in "rtk_".len()..text.len() {
            let mut forged = text.as_bytes().to_vec();
            forged[at] = if forged[at] == b'a' { b'b' } else { b'a' };
            let forged = String::from_utf8(forged).unwrap();
            if let Some(presented) = PresentedKey::parse(&forged) {
                assert!(!signer.verify("contoso", &presented), "{at}");
            }
        }
    }

    #[test]
    fn only_active_verified_keys_authenticate_and_a_gone_one_reads_as_revoked() {
        let now = OffsetDateTime::UNIX_EPOCH;
        let key = DeviceKey::generate(&signer(), "contoso");
        let mut keys = DeviceKeys::default();
        keys.add(&key, Some("lobby".into()), now);
        assert!(keys.keys[0].sha256.is_none(), "nothing of the key is kept");
        assert_eq!(
            keys.check_verified(&key.id),
            KeyCheck::Valid(key.id.as_str())
        );
        assert!(keys.revoke(&key.id, now));
        assert!(!keys.revoke(&key.id, now), "already revoked");
        assert_eq!(keys.check_verified(&key.id), KeyCheck::Revoked);
        keys.keys.clear();
        assert_eq!(keys.check_verified(&key.id), KeyCheck::Revoked);
    }

    #[test]
    fn legacy_keys_are_told_apart_and_checked_against_their_hash() {
        let now = OffsetDateTime::UNIX_EPOCH;
        let mut keys = DeviceKeys::default();
        let (id, whole) = legacy_key(&mut keys, now);
        let presented = PresentedKey::parse(&whole).unwrap();
        assert!(matches!(presented, PresentedKey::Legacy { .. }));
        assert!(!signer().verify("contoso", &presented), "never by tag");
        assert_eq!(keys.check_legacy(&id, &whole), KeyCheck::Valid(id.as_str()));
        let forged = format!("rtk_{id}_AAAA");
        assert_eq!(keys.check_legacy(&id, &forged), KeyCheck::Unknown);
        assert_eq!(
            keys.check_verified(&id),
            KeyCheck::Revoked,
            "not a current key"
        );
        assert_eq!(keys.legacy_active(), 1);
        assert!(keys.revoke(&id, now));
        assert_eq!(keys.check_legacy(&id, &whole), KeyCheck::Revoked);
        assert_eq!(keys.legacy_active(), 0);
    }

    #[test]
    fn only_well_formed_keys_parse() {
        for bad in [
            "nonsense",
            "rtk_",
            "rtk_0123456789abcdef_",
            "rtk_0123456789abcdeg_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "rtk_0123456789abcdef_short",
            "rtk_01234_AAAA",
        ] {
            assert_eq!(PresentedKey::parse(bad), None, "{bad}");
        }
        let shown = format!(
            "{:?}",
            PresentedKey::parse("rtk_0123456789_secret-part").unwrap()
        );
        assert!(!shown.contains("secret-part"), "{shown}");
    }
}

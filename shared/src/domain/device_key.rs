//! Device keys: what a display presents to read its connection's tokens.
//!
//! A key is `rtk_<id>_<tag>`. Keys made today authenticate themselves: the
//! id is 16 hex characters, the connection's key epoch (random, new when a
//! connection is added) then the key's serial number in it, and the tag is
//! an HMAC-SHA256, keyed with the system device-key secret, over the
//! connection and the id. token-read checks the tag in memory, so a made-up
//! key or a made-up connection id is refused before any store read, in the
//! time of one HMAC whatever the connection. Only a key whose tag is right
//! makes it read the connection, to see that the serial is still active.
//!
//! The serve secret keeps no per-key bytes for such keys: keys are made in
//! batches (one label, one date), each batch holding the ranges of its
//! serials still active. A revoked serial leaves its range; a batch with
//! none left is dropped; serials are never given twice. So 2,000 keys made
//! in a few batches take a few hundred bytes, revoked keys take none, and a
//! removed connection's keys never work for a new one of the same id (its
//! epoch differs).
//!
//! Keys made before (10-hex id, 256 random bits, kept as SHA-256) are
//! *legacy*: they work only where the operator lets them
//! (`ROOMTOKEN_LEGACY_DEVICE_KEYS=accept`), since checking one needs the
//! store.
//!
//! Over 500 lines with its tests (about 150): the key format, its tag, the
//! serial ranges and the legacy records belong together.

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
/// Hex characters of a current key's id: its epoch, then its serial.
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
    /// `rtk_<id>_<43 characters of base64url>`: the key `id` of `connection`
    /// (an id that [`DeviceKeys::issue`] gave).
    pub fn for_id(signer: &DeviceKeySigner, connection: &str, id: &str) -> Self {
        let tag = URL_SAFE_NO_PAD.encode(signer.tag(connection, id));
        Self {
            key: Secret::new(format!("{PREFIX}{id}_{tag}")),
            id: id.to_owned(),
        }
    }
}

/// A current key's id: its connection's epoch, then its serial.
fn current_id(epoch: u32, serial: u32) -> String {
    format!("{epoch:08x}{serial:08x}")
}

/// The epoch and serial of a current key's id.
fn parse_current_id(id: &str) -> Option<(u32, u32)> {
    if id.len() != ID_LEN {
        return None;
    }
    let epoch = u32::from_str_radix(id.get(..8)?, 16).ok()?;
    let serial = u32::from_str_radix(id.get(8..)?, 16).ok()?;
    Some((epoch, serial))
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

/// A legacy key, as versions before self-authenticating keys stored it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DeviceKeyRecord {
    pub id: String,
    pub label: Option<String>,
    /// The SHA-256 of the whole key.
    pub sha256: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub revoked_at: Option<OffsetDateTime>,
}

/// Serials, as sorted, disjoint, inclusive ranges; stored as text such as
/// `0-39,41,43-499`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Serials(Vec<(u32, u32)>);

impl Serials {
    fn run(first: u32, last: u32) -> Self {
        Self(vec![(first, last)])
    }

    pub fn contains(&self, serial: u32) -> bool {
        self.0
            .binary_search_by(|&(first, last)| {
                if last < serial {
                    std::cmp::Ordering::Less
                } else if first > serial {
                    std::cmp::Ordering::Greater
                } else {
                    std::cmp::Ordering::Equal
                }
            })
            .is_ok()
    }

    /// Takes `serial` out; false when it was not in.
    fn remove(&mut self, serial: u32) -> bool {
        let Some(at) = self
            .0
            .iter()
            .position(|&(first, last)| (first..=last).contains(&serial))
        else {
            return false;
        };
        let (first, last) = self.0[at];
        match (serial == first, serial == last) {
            (true, true) => {
                self.0.remove(at);
            }
            (true, false) => self.0[at].0 = serial + 1,
            (false, true) => self.0[at].1 = serial - 1,
            (false, false) => {
                self.0[at].1 = serial - 1;
                self.0.insert(at + 1, (serial + 1, last));
            }
        }
        true
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> u64 {
        self.0
            .iter()
            .map(|&(first, last)| u64::from(last - first) + 1)
            .sum()
    }

    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        self.0.iter().flat_map(|&(first, last)| first..=last)
    }
}

impl std::fmt::Display for Serials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (n, &(first, last)) in self.0.iter().enumerate() {
            if n > 0 {
                f.write_str(",")?;
            }
            if first == last {
                write!(f, "{first}")?;
            } else {
                write!(f, "{first}-{last}")?;
            }
        }
        Ok(())
    }
}

impl std::str::FromStr for Serials {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let mut runs: Vec<(u32, u32)> = Vec::new();
        for part in text.split(',').filter(|p| !p.is_empty()) {
            let (first, last) = match part.split_once('-') {
                Some((first, last)) => (first, last),
                None => (part, part),
            };
            let parse = |n: &str| {
                n.parse::<u32>()
                    .map_err(|_| format!("'{part}' is not a serial range"))
            };
            let (first, last) = (parse(first)?, parse(last)?);
            // Sorted and disjoint, or it is not ours.
            if first > last || runs.last().is_some_and(|&(_, end)| end >= first) {
                return Err(format!("'{text}' is not sorted serial ranges"));
            }
            runs.push((first, last));
        }
        Ok(Self(runs))
    }
}

impl Serialize for Serials {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Serials {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Keys made by one `key create`: one label, one date, and the serials of
/// those still active.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct KeyBatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    pub serials: Serials,
}

/// An active key as `key list` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ActiveKey {
    pub id: String,
    pub label: Option<String>,
    pub created_at: OffsetDateTime,
    /// Made before keys authenticated themselves.
    pub legacy: bool,
}

/// A connection's device keys.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct DeviceKeys {
    /// The first half of every current key's id: random, chosen when the
    /// first key is made, so that a removed connection's keys never work
    /// for a new connection of the same id.
    #[serde(default)]
    pub epoch: u32,
    /// The serial the next key gets: serials are never given twice.
    #[serde(default)]
    pub next_serial: u32,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub batches: Vec<KeyBatch>,
    /// Legacy keys (the field's name is the one those versions wrote).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keys: Vec<DeviceKeyRecord>,
}

impl DeviceKeys {
    /// Makes room for `count` new keys in one batch and returns their ids;
    /// `None` when the serials are used up (after 4 billion keys).
    pub fn issue(
        &mut self,
        count: u32,
        label: Option<String>,
        now: OffsetDateTime,
    ) -> Option<Vec<String>> {
        if self.epoch == 0 {
            self.epoch = rand::rng().next_u32().max(1);
        }
        let first = self.next_serial;
        let last = first.checked_add(count.checked_sub(1)?)?;
        self.next_serial = last.checked_add(1)?;
        self.batches.push(KeyBatch {
            label,
            created_at: now,
            serials: Serials::run(first, last),
        });
        self.forget_revoked_legacy();
        Some((first..=last).map(|n| current_id(self.epoch, n)).collect())
    }

    /// Revokes a key: a current key's serial leaves its batch (a batch
    /// with none left is dropped), a legacy key's record is removed. False
    /// when no active key has that id.
    pub fn revoke(&mut self, id: &str) -> bool {
        let revoked = match parse_current_id(id) {
            Some((epoch, serial)) if epoch == self.epoch => {
                let revoked = self.batches.iter_mut().any(|b| b.serials.remove(serial));
                self.batches.retain(|b| !b.serials.is_empty());
                revoked
            }
            Some(_) => false,
            None => {
                let before = self.keys.len();
                self.keys.retain(|k| k.id != id || k.revoked_at.is_some());
                self.keys.len() < before
            }
        };
        self.forget_revoked_legacy();
        revoked
    }

    /// Legacy records of keys revoked by an earlier version: nothing needs
    /// them, since a key that matches no record is refused all the same.
    fn forget_revoked_legacy(&mut self) {
        self.keys.retain(|k| k.revoked_at.is_none());
    }

    /// How many keys are active.
    pub fn active_count(&self) -> u64 {
        self.batches.iter().map(|b| b.serials.len()).sum::<u64>() + self.legacy_active() as u64
    }

    /// Every active key, oldest batch first, legacy keys last.
    pub fn active(&self) -> Vec<ActiveKey> {
        let current = self.batches.iter().flat_map(|batch| {
            batch.serials.iter().map(|serial| ActiveKey {
                id: current_id(self.epoch, serial),
                label: batch.label.clone(),
                created_at: batch.created_at,
                legacy: false,
            })
        });
        let legacy = self
            .keys
            .iter()
            .filter(|k| k.revoked_at.is_none())
            .map(|k| ActiveKey {
                id: k.id.clone(),
                label: k.label.clone(),
                created_at: k.created_at,
                legacy: true,
            });
        current.chain(legacy).collect()
    }

    /// Active legacy keys, which work only where legacy keys are accepted.
    pub fn legacy_active(&self) -> usize {
        self.keys.iter().filter(|k| k.revoked_at.is_none()).count()
    }

    /// A current key whose tag was verified: whether it is still active. A
    /// verified key that is not was ours and is gone (revoked, or made for
    /// a connection of the same id that was removed).
    pub fn check_verified(&self, id: &str) -> KeyCheck {
        match parse_current_id(id) {
            Some((epoch, serial))
                if epoch == self.epoch
                    && self.batches.iter().any(|b| b.serials.contains(serial)) =>
            {
                KeyCheck::Valid
            }
            _ => KeyCheck::Revoked,
        }
    }

    /// A legacy key: compared with the stored hashes in constant time.
    pub fn check_legacy(&self, id: &str, whole: &str) -> KeyCheck {
        let presented_hash = hash(whole);
        let matching = self
            .keys
            .iter()
            .filter(|k| k.id == id)
            .find(|k| bool::from(k.sha256.as_bytes().ct_eq(presented_hash.as_bytes())));
        match matching {
            Some(record) if record.revoked_at.is_none() => KeyCheck::Valid,
            Some(_) => KeyCheck::Revoked,
            None => KeyCheck::Unknown,
        }
    }
}

/// The result of checking a presented key against the stored keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyCheck {
    /// An active key.
    Valid,
    /// A key of this connection that was revoked.
    Revoked,
    /// Not a key of this connection (wrong, forged, or another connection's).
    Unknown,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer() -> DeviceKeySigner {
        DeviceKeySigner::from_stored(&Secret::new("k".repeat(64)))
    }

    fn now() -> OffsetDateTime {
        OffsetDateTime::UNIX_EPOCH
    }

    /// A key as versions before self-authenticating keys made them.
    fn legacy_key(keys: &mut DeviceKeys) -> (String, String) {
        let id = "0123456789".to_owned();
        let whole = format!("rtk_{id}_{}", "L".repeat(43));
        keys.keys.push(DeviceKeyRecord {
            id: id.clone(),
            label: None,
            sha256: hash(&whole),
            created_at: now(),
            revoked_at: None,
        });
        (id, whole)
    }

    #[test]
    fn a_key_has_a_prefix_an_id_and_a_tag_that_binds_its_connection() {
        let signer = signer();
        let mut keys = DeviceKeys::default();
        let ids = keys.issue(2, None, now()).unwrap();
        let key = DeviceKey::for_id(&signer, "contoso", &ids[0]);
        let text = key.key.expose();
        assert!(text.starts_with("rtk_"));
        assert_eq!(key_id(text), Some(key.id.as_str()));
        assert_eq!(key.id.len(), 16);
        let tag = &text["rtk_".len() + key.id.len() + 1..];
        assert_eq!(URL_SAFE_NO_PAD.decode(tag).unwrap().len(), 32);
        assert_ne!(DeviceKey::for_id(&signer, "contoso", &ids[1]).key, key.key);

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
    fn only_active_serials_authenticate_and_a_revoked_one_leaves_no_trace() {
        let mut keys = DeviceKeys::default();
        let ids = keys.issue(500, Some("lobby".into()), now()).unwrap();
        let more = keys.issue(3, None, now()).unwrap();
        assert_eq!(keys.active_count(), 503);
        assert_eq!(keys.check_verified(&ids[250]), KeyCheck::Valid);
        assert!(keys.revoke(&ids[250]));
        assert!(!keys.revoke(&ids[250]), "already revoked");
        assert_eq!(keys.check_verified(&ids[250]), KeyCheck::Revoked);
        assert_eq!(keys.check_verified(&ids[249]), KeyCheck::Valid);
        assert_eq!(keys.check_verified(&ids[251]), KeyCheck::Valid);
        assert_eq!(keys.batches[0].serials.to_string(), "0-249,251-499");
        for id in &more {
            assert!(keys.revoke(id));
        }
        assert_eq!(keys.batches.len(), 1, "a batch with no key left is dropped");
        // Serials are never given twice: a new key is not a revoked one.
        let again = keys.issue(1, None, now()).unwrap();
        assert_eq!(again, vec![format!("{:08x}{:08x}", keys.epoch, 503)]);
        assert_eq!(keys.check_verified(&more[0]), KeyCheck::Revoked);
        // Another epoch (a connection removed, then added again): refused.
        let mut other = DeviceKeys::default();
        other.issue(1, None, now()).unwrap();
        other.epoch = keys.epoch.wrapping_add(1);
        assert_eq!(other.check_verified(&ids[0]), KeyCheck::Revoked);
        assert!(!other.revoke(&ids[0]));
        let listed = keys.active();
        assert_eq!(listed.len(), 500);
        assert_eq!(listed[0].label.as_deref(), Some("lobby"));
    }

    #[test]
    fn serial_ranges_read_back_and_refuse_what_is_not_sorted() {
        let serials: Serials = "0-39,41,43-499".parse().unwrap();
        assert_eq!(serials.len(), 498);
        assert!(serials.contains(41) && !serials.contains(40) && serials.contains(499));
        assert_eq!(serials.to_string(), "0-39,41,43-499");
        let json = serde_json::to_string(&serials).unwrap();
        assert_eq!(serde_json::from_str::<Serials>(&json).unwrap(), serials);
        for bad in ["5-3", "1,1", "3,2", "x", "1-"] {
            assert!(bad.parse::<Serials>().is_err(), "{bad}");
        }
    }

    #[test]
    fn legacy_keys_are_told_apart_and_checked_against_their_hash() {
        let mut keys = DeviceKeys::default();
        let (id, whole) = legacy_key(&mut keys);
        let presented = PresentedKey::parse(&whole).unwrap();
        assert!(matches!(presented, PresentedKey::Legacy { .. }));
        assert!(!signer().verify("contoso", &presented), "never by tag");
        assert_eq!(keys.check_legacy(&id, &whole), KeyCheck::Valid);
        let forged = format!("rtk_{id}_AAAA");
        assert_eq!(keys.check_legacy(&id, &forged), KeyCheck::Unknown);
        assert_eq!(
            keys.check_verified(&id),
            KeyCheck::Revoked,
            "not a current key"
        );
        assert_eq!(keys.legacy_active(), 1);
        assert!(keys.active()[0].legacy);
        assert!(keys.revoke(&id));
        assert_eq!(keys.check_legacy(&id, &whole), KeyCheck::Unknown);
        assert!(
            keys.keys.is_empty(),
            "a revoked legacy key leaves no record"
        );
    }

    #[test]
    fn a_serve_value_of_an_earlier_version_reads_its_keys_as_legacy() {
        let old = r#"{"keys":[{"id":"0123456789","label":"lobby","sha256":"ab","created_at":"2026-01-01T00:00:00Z","revoked_at":null},{"id":"1123456789","label":null,"sha256":"cd","created_at":"2026-01-01T00:00:00Z","revoked_at":"2026-02-01T00:00:00Z"}]}"#;
        let mut keys: DeviceKeys = serde_json::from_str(old).unwrap();
        assert_eq!(keys.legacy_active(), 1);
        assert_eq!(keys.active_count(), 1);
        keys.issue(1, None, now()).unwrap();
        assert_eq!(keys.keys.len(), 1, "the revoked legacy record is gone");
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

//! What token-read keeps of one connection between two store reads: the
//! active device-key serials, the access tokens (each prepared once for serving)
//! and the status. The broker owns the cache of these; `flows::read` fills
//! and reads it.

use crate::cache::TtlCache;
use crate::domain::{AccessToken, AccessTokens, ConnectionId, DeviceKeys, Mode, Secret, Status};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::Duration;
use time::OffsetDateTime;

/// A token with less than this left is not served: it could expire on the
/// way to Exchange.
pub const MIN_SERVE_VALIDITY: Duration = Duration::from_secs(30);

/// The broker's cache of what token-read read, per connection.
pub type ReadCache = TtlCache<ConnectionId, Arc<ConnectionSnapshot>>;

/// What token-read reads of one connection. An unknown connection reads as
/// an empty snapshot (no keys), cached like any other, so that neither the
/// answer nor its timing tells which connections exist.
#[derive(Debug, Default)]
pub struct ConnectionSnapshot {
    /// Whether the connection exists.
    pub(crate) exists: bool,
    pub(crate) keys: DeviceKeys,
    pub(crate) access: Option<AccessTokens>,
    pub(crate) status: Status,
    pub(crate) mode: Mode,
    pub(crate) credential_kind: crate::domain::CredentialKind,
    /// When the client secret that token requests use expires, if known
    /// ([`crate::domain::ServeRecord::credential_expires`]).
    pub(crate) credential_expires: Option<time::Date>,
    /// Each stored token as it is served, prepared once per load.
    served: Vec<Arc<ServedToken>>,
}

/// A token with what every answer derives from it computed once: its
/// fingerprint, its expiry as text, and the account it acts for.
#[derive(Debug)]
pub struct ServedToken {
    pub token: AccessToken,
    /// Changes when the token does and tells nothing about it (the HTTP
    /// edge makes its entity tag of it).
    pub fingerprint: String,
    /// `expires_at` in RFC 3339.
    pub expires_at: String,
    pub account: String,
}

impl ConnectionSnapshot {
    pub(crate) fn new(record: crate::domain::ServeRecord) -> Self {
        let credential_expires = record.credential_expires();
        let crate::domain::ServeRecord {
            app,
            access,
            keys,
            status,
            ..
        } = record;
        let served = access
            .iter()
            .flat_map(|a| a.tokens.iter().map(move |t| (a, t)))
            .map(|(access, token)| {
                Arc::new(ServedToken {
                    fingerprint: fingerprint(&token.access_token),
                    expires_at: token
                        .expires_at
                        .format(&time::format_description::well_known::Rfc3339)
                        .unwrap_or_default(),
                    account: access.account.clone(),
                    token: token.clone(),
                })
            })
            .collect();
        Self {
            exists: true,
            keys,
            access,
            status,
            mode: app.mode,
            credential_kind: app.credential_kind(),
            credential_expires,
            served,
        }
    }

    pub(crate) fn served(&self, resource: &str) -> Option<&Arc<ServedToken>> {
        self.served.iter().find(|s| s.token.resource == resource)
    }

    /// The time after which a cached copy must not be used: when the first
    /// token that is servable now stops being servable.
    pub(crate) fn servable_until(&self, now: OffsetDateTime) -> Option<OffsetDateTime> {
        self.access
            .iter()
            .flat_map(|a| &a.tokens)
            .filter(|t| t.remaining(now) >= MIN_SERVE_VALIDITY)
            .map(|t| t.expires_at - MIN_SERVE_VALIDITY)
            .min()
    }
}

/// The first 16 bytes of the token's SHA-256, in hex.
pub fn fingerprint(token: &Secret) -> String {
    let digest = Sha256::digest(token.expose().as_bytes());
    hex::encode(&digest[..16])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fingerprint_is_a_hash_prefix_never_the_token() {
        let token = Secret::new("eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.secret-part");
        let print = fingerprint(&token);
        assert_eq!(print.len(), 32);
        assert!(print.bytes().all(|b| b.is_ascii_hexdigit()));
        // Any encoding of any piece of the token would show up in these.
        let raw = token.expose().as_bytes();
        for window in raw.windows(4) {
            assert!(
                !print.contains(&hex::encode(window)),
                "a piece of the token"
            );
        }
        assert_eq!(print, fingerprint(&token.clone()), "stable");
        assert_ne!(print, fingerprint(&Secret::new("another token")));
        // Two tokens that share all but their last byte: a hash of the
        // whole token, not of a prefix that the header would expose.
        let sibling = Secret::new("eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.secret-parT");
        let differing = print
            .bytes()
            .zip(fingerprint(&sibling).bytes())
            .filter(|(a, b)| a != b)
            .count();
        assert!(differing > 16, "{print} avalanche: {differing} of 32");
    }
}

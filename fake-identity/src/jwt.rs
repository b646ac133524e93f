//! Unsigned-in-spirit id_tokens: real JWT shape, random signature bytes.
//!
//! The broker takes the id_token straight from the token endpoint over TLS
//! (OIDC Core §3.1.3.7), so it does not verify the signature.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::model::FakeAccount;

/// Lifetime of an id_token, in seconds.
const ID_TOKEN_LIFETIME_SECS: u64 = 3600;

/// Builds `base64url(header).base64url(payload).base64url(signature)`.
///
/// `issuer_base` is the authority without trailing slash; `iss` becomes
/// `{issuer_base}/{tid}/v2.0`.
pub(crate) fn id_token(
    issuer_base: &str,
    account: &FakeAccount,
    client_id: &str,
    nonce: Option<&str>,
    now: SystemTime,
) -> String {
    let iat = now
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let header = json!({"typ": "JWT", "alg": "RS256", "kid": "fake"});
    let mut payload = json!({
        "aud": client_id,
        "iss": format!("{issuer_base}/{}/v2.0", account.tenant),
        "iat": iat,
        "nbf": iat,
        "exp": iat + ID_TOKEN_LIFETIME_SECS,
        "oid": account.oid,
        "tid": account.tenant,
        "sub": subject(account, client_id),
        "preferred_username": account.username,
        "name": account.name,
        "ver": "2.0",
    });
    if let (Some(nonce), Some(obj)) = (nonce, payload.as_object_mut()) {
        obj.insert("nonce".to_owned(), json!(nonce));
    }
    let mut signature = [0u8; 256];
    rand::rng().fill_bytes(&mut signature);
    format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(payload.to_string()),
        URL_SAFE_NO_PAD.encode(signature)
    )
}

/// Pairwise subject: stable per account and client, like Microsoft's `sub`.
fn subject(account: &FakeAccount, client_id: &str) -> String {
    let digest = Sha256::digest(format!(
        "{}|{}",
        account.oid,
        client_id.to_ascii_lowercase()
    ));
    URL_SAFE_NO_PAD.encode(digest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn has_three_parts_and_claims() {
        let account = FakeAccount {
            tenant: "tid-1".into(),
            oid: "oid-1".into(),
            username: "a@b.example".into(),
            name: "A B".into(),
            admin: false,
        };
        let t = id_token(
            "http://127.0.0.1:1",
            &account,
            "cid",
            Some("n1"),
            SystemTime::now(),
        );
        let parts: Vec<&str> = t.split('.').collect();
        assert_eq!(parts.len(), 3);
        let payload: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        assert_eq!(payload["iss"], "http://127.0.0.1:1/tid-1/v2.0");
        assert_eq!(payload["nonce"], "n1");
        assert_eq!(payload["aud"], "cid");
        assert_eq!(payload["sub"], subject(&account, "CID"));
    }
}

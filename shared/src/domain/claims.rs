//! The id_token claims that pin a connection to one account.
//!
//! The id_token comes straight from the token endpoint over TLS in the
//! authorization code flow, so its signature need not be checked (OpenID
//! Connect Core 3.1.3.7, item 6); its `aud`, `nonce` and `tid` still are.

use super::{Account, AccountKey};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;

#[derive(Debug, Deserialize)]
pub struct IdTokenClaims {
    pub iss: String,
    pub sub: String,
    #[serde(deserialize_with = "one_or_many")]
    pub aud: Vec<String>,
    pub nonce: Option<String>,
    pub tid: Option<String>,
    pub oid: Option<String>,
    pub preferred_username: Option<String>,
    pub email: Option<String>,
    pub name: Option<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ClaimsError {
    #[error("the id_token is not a JWT")]
    Malformed,
    #[error("the id_token was issued to another client")]
    Audience,
    #[error("the id_token nonce does not match this sign-in")]
    Nonce,
    #[error("the account signed in belongs to another tenant than this connection's")]
    Tenant,
    #[error("the id_token carries no tid/oid, so the account cannot be pinned")]
    MissingMicrosoftIds,
}

fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(one) => vec![one],
        OneOrMany::Many(many) => many,
    })
}

/// The application permissions an app-only access token carries: its
/// `roles` claim (empty when it has none, as Entra ID omits the claim when
/// nothing was granted), or `None` for a token that is not a JWT. Read
/// only to tell the operator what a grant gave; nothing is authorized on it.
pub fn application_roles(access_token: &str) -> Option<Vec<String>> {
    #[derive(Deserialize)]
    struct Roles {
        #[serde(default)]
        roles: Vec<String>,
    }
    let roles: Roles = serde_json::from_slice(&jwt_payload(access_token)?).ok()?;
    Some(roles.roles)
}

/// The decoded payload of a compact JWT (three dot-separated parts).
fn jwt_payload(jwt: &str) -> Option<Vec<u8>> {
    let mut parts = jwt.split('.');
    let (Some(_header), Some(payload), Some(_signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()
}

impl IdTokenClaims {
    /// Reads the payload of a compact JWT.
    pub fn decode(id_token: &str) -> Result<Self, ClaimsError> {
        let bytes = jwt_payload(id_token).ok_or(ClaimsError::Malformed)?;
        serde_json::from_slice(&bytes).map_err(|_| ClaimsError::Malformed)
    }

    /// Whether the account signed in is the user principal name `upn`, by
    /// `preferred_username` alone: Microsoft lets users and admins set
    /// `email` to any address, so no decision rests on it. Meaningful only
    /// once [`Self::verify`] checked the tenant.
    pub fn is_user(&self, upn: &str) -> bool {
        self.preferred_username
            .as_deref()
            .is_some_and(|name| name.eq_ignore_ascii_case(upn))
    }

    /// Checks the claims against this sign-in and returns the account to pin:
    /// `tid`+`oid` for Microsoft, `iss`+`sub` for any other server.
    pub fn verify(
        &self,
        client_id: &str,
        nonce: &str,
        microsoft: bool,
        expected_tenant: Option<&str>,
    ) -> Result<Account, ClaimsError> {
        if !self.aud.iter().any(|aud| aud == client_id) {
            return Err(ClaimsError::Audience);
        }
        if self.nonce.as_deref() != Some(nonce) {
            return Err(ClaimsError::Nonce);
        }
        let key = if microsoft {
            let (Some(tid), Some(oid)) = (&self.tid, &self.oid) else {
                return Err(ClaimsError::MissingMicrosoftIds);
            };
            if expected_tenant.is_some_and(|t| !t.eq_ignore_ascii_case(tid)) {
                return Err(ClaimsError::Tenant);
            }
            AccountKey::Microsoft {
                tid: tid.clone(),
                oid: oid.clone(),
            }
        } else {
            AccountKey::Issuer {
                iss: self.iss.clone(),
                sub: self.sub.clone(),
            }
        };
        let display = self
            .preferred_username
            .clone()
            .or_else(|| self.email.clone())
            .unwrap_or_else(|| self.sub.clone());
        Ok(Account { key, display })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn jwt(claims: serde_json::Value) -> String {
        let encode = |v: &serde_json::Value| URL_SAFE_NO_PAD.encode(v.to_string());
        format!(
            "{}.{}.c2ln",
            encode(&json!({"alg": "RS256"})),
            encode(&claims)
        )
    }

    fn claims() -> serde_json::Value {
        json!({
            "iss": "https://login.microsoftonline.com/tid-1/v2.0", "sub": "s", "aud": "client",
            "nonce": "n", "tid": "tid-1", "oid": "oid-1", "preferred_username": "booking@contoso.com"
        })
    }

    #[test]
    fn application_roles_are_read_from_an_app_only_token() {
        let granted = jwt(
            json!({"aud": "https://graph.microsoft.com", "roles": ["Calendars.ReadWrite", "Place.Read.All"]}),
        );
        assert_eq!(
            application_roles(&granted),
            Some(vec!["Calendars.ReadWrite".into(), "Place.Read.All".into()])
        );
        let none = jwt(json!({"aud": "https://graph.microsoft.com"}));
        assert_eq!(application_roles(&none), Some(vec![]));
        assert_eq!(application_roles("an-opaque-token"), None);
    }

    #[test]
    fn the_booking_account_is_matched_by_its_upn_never_its_email() {
        let mut forged = claims();
        forged["preferred_username"] = json!("intruder@contoso.com");
        forged["email"] = json!("booking@contoso.com");
        let forged = IdTokenClaims::decode(&jwt(forged)).unwrap();
        assert!(!forged.is_user("booking@contoso.com"));
        let mut no_upn = claims();
        no_upn.as_object_mut().unwrap().remove("preferred_username");
        no_upn["email"] = json!("booking@contoso.com");
        assert!(
            !IdTokenClaims::decode(&jwt(no_upn))
                .unwrap()
                .is_user("booking@contoso.com")
        );
        let real = IdTokenClaims::decode(&jwt(claims())).unwrap();
        assert!(real.is_user("Booking@Contoso.com"));
    }

    #[test]
    fn pins_tid_and_oid_for_microsoft() {
        let account = IdTokenClaims::decode(&jwt(claims()))
            .unwrap()
            .verify("client", "n", true, Some("TID-1"))
            .unwrap();
        assert_eq!(account.display, "booking@contoso.com");
        assert_eq!(
            account.key,
            AccountKey::Microsoft {
                tid: "tid-1".into(),
                oid: "oid-1".into()
            }
        );
    }

    #[test]
    fn pins_iss_and_sub_elsewhere() {
        let account = IdTokenClaims::decode(&jwt(claims()))
            .unwrap()
            .verify("client", "n", false, None)
            .unwrap();
        assert!(matches!(account.key, AccountKey::Issuer { .. }));
    }

    #[test]
    fn refuses_wrong_audience_nonce_or_tenant() {
        let decoded = IdTokenClaims::decode(&jwt(claims())).unwrap();
        assert_eq!(
            decoded.verify("other", "n", true, None).unwrap_err(),
            ClaimsError::Audience
        );
        assert_eq!(
            decoded.verify("client", "x", true, None).unwrap_err(),
            ClaimsError::Nonce
        );
        assert_eq!(
            decoded
                .verify("client", "n", true, Some("tid-2"))
                .unwrap_err(),
            ClaimsError::Tenant
        );
        assert_eq!(
            IdTokenClaims::decode("not-a-jwt").unwrap_err(),
            ClaimsError::Malformed
        );
    }
}

//! Keys derived from the system signing key: HMAC-signed invites and the
//! sealed (AES-256-GCM) consent cookie that carries `state`, nonce and the
//! PKCE verifier between connect-start and connect-callback.

use crate::domain::{AppSetup, ConnectionId, Mode, Secret};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use cookie::{Cookie, CookieJar, Key};
use hmac::{Hmac, Mac};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use std::time::Duration;
use time::OffsetDateTime;

type HmacSha256 = Hmac<Sha256>;

/// Name of the consent cookie, scoped to `/callback`.
pub const CONSENT_COOKIE: &str = "roomtoken_consent";

/// Name of the setup form's browser binding (CSRF), scoped to the link's path.
pub const FORM_COOKIE: &str = "roomtoken_form";

/// A cookie's name on a public URL that is `secure` (https): with the
/// `__Secure-` prefix, which browsers accept only with `Secure` from an
/// https origin, so that no plain-http page of the same host can plant or
/// overwrite it.
pub fn cookie_name(name: &'static str, secure: bool) -> &'static str {
    match (name, secure) {
        (CONSENT_COOKIE, true) => "__Secure-roomtoken_consent",
        (FORM_COOKIE, true) => "__Secure-roomtoken_form",
        (name, _) => name,
    }
}

/// How long an admin has between opening the link and finishing the sign-in
/// (Microsoft's codes live about 10 minutes as well).
pub const CONSENT_TTL: Duration = Duration::from_secs(15 * 60);

/// The keys derived from the system signing key, one per purpose (not the
/// device keys of displays, which live in the serve secret as hashes).
#[derive(Clone)]
pub struct SigningKeys {
    invite: [u8; 32],
    cookie: Key,
    form: [u8; 32],
}

impl std::fmt::Debug for SigningKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKeys(***)")
    }
}

/// A new random signing key, as stored under `system/signing-key`.
pub fn generate_signing_key() -> Secret {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    Secret::new(URL_SAFE_NO_PAD.encode(bytes))
}

/// HMAC-SHA256 keyed with `key`, over `text`.
fn mac_over(key: &[u8], text: &str) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    mac.update(text.as_bytes());
    mac
}

fn derive(master: &[u8], purpose: &str) -> [u8; 32] {
    // HMAC with a fixed purpose label is a PRF, which is all a KDF needs here.
    mac_over(master, purpose).finalize().into_bytes().into()
}

/// A signed token `{first}.{second}.{signature}` (invites and form tokens):
/// its two numbers, and the signature decoded. `None` for anything else.
fn signed_parts<A: std::str::FromStr, B: std::str::FromStr>(
    token: &str,
) -> Option<(A, B, Vec<u8>)> {
    let mut parts = token.splitn(3, '.');
    let first = parts.next()?.parse().ok()?;
    let second = parts.next()?.parse().ok()?;
    let signature = URL_SAFE_NO_PAD.decode(parts.next()?).ok()?;
    Some((first, second, signature))
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InviteError {
    #[error("this consent link is not valid: it was changed or it belongs to another broker")]
    Forged,
    #[error("this consent link has expired: ask your provider for a new one")]
    Expired,
    /// Older than the connection's last `link --revoke-all` or `--reset-account`.
    #[error("this consent link was revoked: ask your provider for a new one")]
    Revoked,
}

/// The state that connect-start hands to connect-callback through the browser.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ConsentSession {
    pub connection: ConnectionId,
    pub state: String,
    pub nonce: String,
    pub pkce_verifier: Secret,
    pub expires_at: i64,
    /// What the browser was sent to do.
    #[serde(default)]
    pub purpose: Purpose,
    /// The invite of the link: the callback's page links back to the next
    /// step (sign in after an admin consented, grant when the sign-in needs
    /// consent, the form again when its values failed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invite: Option<String>,
    /// The connection's onboarding mode when the link was opened.
    #[serde(default)]
    pub mode: Mode,
    /// A self-service form's values, stored by the callback with the grant
    /// (and nowhere before).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub setup: Option<AppSetup>,
}

/// What a setup form's token is bound to: a form is good for one
/// connection, one link, one browser, and one state of the connection (a
/// form sent again after it connected is refused as replayed).
pub struct FormBinding<'a> {
    pub connection: &'a ConnectionId,
    pub invite: &'a str,
    /// The random value of the browser's form cookie.
    pub browser: &'a str,
    /// When the connection was last connected (unix seconds), 0 if never.
    pub generation: i64,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FormTokenError {
    #[error("this form was changed, sent from another browser, or belongs to another link")]
    Forged,
    #[error("this form is too old: open the link again")]
    Expired,
    /// Genuine, but the connection was consented since: sent again.
    #[error("this form was already used")]
    Used,
}

/// A session's errand at Microsoft.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Purpose {
    /// The booking account signs in (authorization code with PKCE).
    #[default]
    SignIn,
    /// An administrator grants the vendor app for the organization.
    AdminConsent,
}

impl SigningKeys {
    pub fn from_signing_key(signing_key: &Secret) -> Self {
        let master = signing_key.expose().as_bytes();
        Self {
            invite: derive(master, "roomtoken/invite/v1"),
            cookie: Key::derive_from(&derive(master, "roomtoken/consent-cookie/v1")),
            form: derive(master, "roomtoken/setup-form/v1"),
        }
    }

    fn form_mac(&self, binding: &FormBinding<'_>, generation: i64, issued_at: i64) -> HmacSha256 {
        let FormBinding {
            connection,
            invite,
            browser,
            ..
        } = binding;
        mac_over(
            &self.form,
            &format!("{connection}\n{invite}\n{browser}\n{generation}\n{issued_at}"),
        )
    }

    /// The setup form's hidden token: `{issued_at}.{generation}.{signature}`.
    /// The generation travels in the token so that a genuine form from
    /// before the last consent is told apart from a forged one.
    pub fn sign_form(&self, binding: &FormBinding<'_>, now: OffsetDateTime) -> String {
        let issued_at = now.unix_timestamp();
        let generation = binding.generation;
        let signature = self
            .form_mac(binding, generation, issued_at)
            .finalize()
            .into_bytes();
        format!(
            "{issued_at}.{generation}.{}",
            URL_SAFE_NO_PAD.encode(signature)
        )
    }

    /// Checks a form token in constant time; it lives as long as a consent
    /// session, and only until the connection's next consent.
    pub fn verify_form(
        &self,
        binding: &FormBinding<'_>,
        token: &str,
        now: OffsetDateTime,
    ) -> Result<(), FormTokenError> {
        let (issued_at, generation, signature): (i64, i64, _) =
            signed_parts(token).ok_or(FormTokenError::Forged)?;
        self.form_mac(binding, generation, issued_at)
            .verify_slice(&signature)
            .map_err(|_| FormTokenError::Forged)?;
        if generation != binding.generation {
            return Err(FormTokenError::Used);
        }
        let age = now.unix_timestamp().saturating_sub(issued_at);
        if !(0..CONSENT_TTL.as_secs() as i64).contains(&age) {
            return Err(FormTokenError::Expired);
        }
        Ok(())
    }

    fn invite_mac(&self, id: &ConnectionId, expires_at: i64, generation: u32) -> HmacSha256 {
        mac_over(&self.invite, &format!("{id}\n{expires_at}\n{generation}"))
    }

    /// `{expires_at}.{generation}.{signature}`, the value of the link's
    /// `invite` parameter. `generation` is the connection's link generation:
    /// bumping it revokes every older link.
    pub fn sign_invite(
        &self,
        id: &ConnectionId,
        expires_at: OffsetDateTime,
        generation: u32,
    ) -> String {
        let expires_at = expires_at.unix_timestamp();
        let signature = self
            .invite_mac(id, expires_at, generation)
            .finalize()
            .into_bytes();
        format!(
            "{expires_at}.{generation}.{}",
            URL_SAFE_NO_PAD.encode(signature)
        )
    }

    /// Checks the signature in constant time, then the expiry. Returns the
    /// link generation it was signed for, which the caller compares with
    /// the connection's.
    pub fn verify_invite(
        &self,
        id: &ConnectionId,
        invite: &str,
        now: OffsetDateTime,
    ) -> Result<u32, InviteError> {
        let (expires_at, generation, signature): (i64, u32, _) =
            signed_parts(invite).ok_or(InviteError::Forged)?;
        self.invite_mac(id, expires_at, generation)
            .verify_slice(&signature)
            .map_err(|_| InviteError::Forged)?;
        if now.unix_timestamp() >= expires_at {
            return Err(InviteError::Expired);
        }
        Ok(generation)
    }

    /// Encrypts and authenticates the session into a cookie value.
    pub fn seal(&self, session: &ConsentSession) -> String {
        let json = serde_json::to_string(session)
            .unwrap_or_else(|_| unreachable!("a consent session always serializes"));
        let mut jar = CookieJar::new();
        jar.private_mut(&self.cookie)
            .add(Cookie::new(CONSENT_COOKIE, json));
        jar.get(CONSENT_COOKIE)
            .map(|c| c.value().to_owned())
            .unwrap_or_default()
    }

    /// The session, if the value is authentic and not expired.
    pub fn unseal(&self, value: &str, now: OffsetDateTime) -> Option<ConsentSession> {
        let mut jar = CookieJar::new();
        jar.add_original(Cookie::new(CONSENT_COOKIE, value.to_owned()));
        let cookie = jar.private(&self.cookie).get(CONSENT_COOKIE)?;
        let session: ConsentSession = serde_json::from_str(cookie.value()).ok()?;
        (session.expires_at > now.unix_timestamp()).then_some(session)
    }
}

/// The link generation an invite names, read without checking it: for an
/// invite that came inside an authentic sealed session.
pub fn invite_generation(invite: &str) -> Option<u32> {
    invite.split('.').nth(1)?.parse().ok()
}

/// A short random token for `state` and `nonce` (128 bits).
pub fn random_token() -> String {
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> SigningKeys {
        SigningKeys::from_signing_key(&generate_signing_key())
    }

    fn id(text: &str) -> ConnectionId {
        ConnectionId::parse(text).unwrap()
    }

    #[test]
    fn invites_bind_connection_and_expiry() {
        let keys = keys();
        let now = OffsetDateTime::now_utc();
        let invite = keys.sign_invite(&id("contoso"), now + time::Duration::days(7), 3);
        assert_eq!(keys.verify_invite(&id("contoso"), &invite, now), Ok(3));
        let (expires, rest) = invite.split_once('.').unwrap();
        let (_, signature) = rest.split_once('.').unwrap();
        assert_eq!(
            keys.verify_invite(&id("contoso"), &format!("{expires}.4.{signature}"), now),
            Err(InviteError::Forged),
            "a generation that was not signed"
        );
        assert_eq!(
            keys.verify_invite(&id("fabrikam"), &invite, now),
            Err(InviteError::Forged)
        );
        let (_, rest) = invite.split_once('.').unwrap();
        let extended = format!("{}.{rest}", now.unix_timestamp() + 999_999);
        assert_eq!(
            keys.verify_invite(&id("contoso"), &extended, now),
            Err(InviteError::Forged)
        );
        let later = now + time::Duration::days(8);
        assert_eq!(
            keys.verify_invite(&id("contoso"), &invite, later),
            Err(InviteError::Expired)
        );
        assert_eq!(
            SigningKeys::from_signing_key(&generate_signing_key()).verify_invite(
                &id("contoso"),
                &invite,
                now
            ),
            Err(InviteError::Forged)
        );
    }

    #[test]
    fn form_tokens_bind_link_browser_and_generation() {
        let keys = keys();
        let now = OffsetDateTime::now_utc();
        let contoso = id("contoso");
        let binding = |browser, generation| FormBinding {
            connection: &contoso,
            invite: "123.abc",
            browser,
            generation,
        };
        let token = keys.sign_form(&binding("browser-1", 0), now);
        assert_eq!(
            keys.verify_form(&binding("browser-1", 0), &token, now),
            Ok(())
        );
        assert_eq!(
            keys.verify_form(&binding("browser-2", 0), &token, now),
            Err(FormTokenError::Forged),
            "another browser's form"
        );
        assert_eq!(
            keys.verify_form(&binding("browser-1", 1_700_000_000), &token, now),
            Err(FormTokenError::Used),
            "a form sent again after the connection connected"
        );
        let later = now + CONSENT_TTL;
        assert_eq!(
            keys.verify_form(&binding("browser-1", 0), &token, later),
            Err(FormTokenError::Expired)
        );
        let (_, rest) = token.split_once('.').unwrap();
        let refreshed = format!("{}.{rest}", now.unix_timestamp() + 60);
        assert_eq!(
            keys.verify_form(&binding("browser-1", 0), &refreshed, now),
            Err(FormTokenError::Forged)
        );
        let (issued, rest) = token.split_once('.').unwrap();
        let (_, signature) = rest.split_once('.').unwrap();
        let moved = format!("{issued}.1700000000.{signature}");
        assert_eq!(
            keys.verify_form(&binding("browser-1", 1_700_000_000), &moved, now),
            Err(FormTokenError::Forged),
            "a generation that was not signed"
        );
    }

    #[test]
    fn sealed_sessions_are_opaque_and_tamper_evident() {
        let keys = keys();
        let now = OffsetDateTime::now_utc();
        let session = ConsentSession {
            connection: id("contoso"),
            state: random_token(),
            nonce: random_token(),
            pkce_verifier: Secret::new("verifier-value-that-must-stay-hidden"),
            expires_at: now.unix_timestamp() + 600,
            purpose: Purpose::SignIn,
            invite: None,
            mode: Mode::Operator,
            setup: None,
        };
        let sealed = keys.seal(&session);
        assert!(!sealed.contains("verifier-value"));
        assert!(!sealed.contains(&session.state));
        let opened = keys.unseal(&sealed, now).unwrap();
        assert_eq!(opened.state, session.state);
        let mut tampered = sealed.clone().into_bytes();
        tampered[10] ^= 1;
        assert!(
            keys.unseal(&String::from_utf8_lossy(&tampered), now)
                .is_none()
        );
        assert!(
            keys.unseal(&sealed, now + time::Duration::hours(1))
                .is_none()
        );
        assert!(
            SigningKeys::from_signing_key(&generate_signing_key())
                .unseal(&sealed, now)
                .is_none()
        );
    }
}

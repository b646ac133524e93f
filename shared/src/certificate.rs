//! Certificate credentials (`private_key_jwt`): an RSA key and its
//! certificate, made here or read from PEM, and the client assertions that
//! authenticate token requests with them instead of a client secret.
//!
//! Keys and certificates come from rcgen (on aws-lc-rs), certificates are
//! read back with x509-parser, assertions are signed by jsonwebtoken: no
//! ASN.1 or JWS is written by hand here.

use crate::domain::Secret;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::time::Duration;
use time::OffsetDateTime;

/// An assertion is valid this long after it is made (Entra ID takes at most
/// 10 minutes).
pub const ASSERTION_LIFETIME: Duration = Duration::from_secs(5 * 60);

/// `client_assertion_type` of a JWT client assertion (RFC 7523).
pub const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// The longest validity `generate` makes (Entra ID takes any; a shorter one
/// is rotated more often, as for secrets).
pub const MAX_VALIDITY_DAYS: u32 = 3 * 365;

#[derive(Debug, thiserror::Error)]
pub enum CertificateError {
    #[error("the key pair or certificate could not be made: {0}")]
    Generate(String),
    #[error("the certificate is not a PEM X.509 certificate: {0}")]
    Certificate(String),
    #[error("the private key is not a PEM RSA key (PKCS#8)")]
    Key,
    #[error("the private key does not belong to the certificate")]
    KeyMismatch,
    #[error(
        "the certificate's key is not RSA (Entra ID signs and checks client assertions with RS256 or PS256)"
    )]
    NotRsa,
    #[error("a certificate is valid for 1 to {MAX_VALIDITY_DAYS} days")]
    Validity,
    #[error("the client assertion could not be signed: {0}")]
    Sign(String),
}

/// A private key (PKCS#8 PEM, secret) and its certificate (PEM, public: it
/// is uploaded to the app registration).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateKey {
    key_pem: Secret,
    cert_pem: String,
}

impl std::fmt::Debug for CertificateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertificateKey")
            .field("key_pem", &self.key_pem)
            .field("thumbprint", &thumbprint_of_pem(&self.cert_pem).ok())
            .finish()
    }
}

/// What may be shown of a certificate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateInfo {
    /// `x5t#S256`: base64url of the SHA-256 of the certificate (DER).
    pub thumbprint_s256: String,
    /// The SHA-1 thumbprint in hex, as the Entra admin center lists it.
    pub thumbprint_sha1_hex: String,
    pub subject: String,
    #[serde(with = "time::serde::rfc3339")]
    pub not_before: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub not_after: OffsetDateTime,
}

/// The claims of a client assertion (RFC 7523, as Entra ID wants them).
#[derive(Debug, Serialize, Deserialize)]
pub struct AssertionClaims {
    pub aud: String,
    pub iss: String,
    pub sub: String,
    pub jti: String,
    pub nbf: i64,
    pub iat: i64,
    pub exp: i64,
}

impl CertificateKey {
    /// A new RSA-2048 key and a self-signed certificate for `common_name`,
    /// valid from `now` for `days`.
    pub fn generate(
        common_name: &str,
        days: u32,
        now: OffsetDateTime,
    ) -> Result<Self, CertificateError> {
        if !(1..=MAX_VALIDITY_DAYS).contains(&days) {
            return Err(CertificateError::Validity);
        }
        let generate = |e: rcgen::Error| CertificateError::Generate(e.to_string());
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).map_err(generate)?;
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(generate)?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, common_name);
        params.not_before = now;
        params.not_after = now + time::Duration::days(i64::from(days));
        let certificate = params.self_signed(&key).map_err(generate)?;
        Ok(Self {
            key_pem: Secret::new(key.serialize_pem()),
            cert_pem: certificate.pem(),
        })
    }

    /// A key and certificate given as PEM (one file may hold both: each is
    /// found by its label), checked to belong together.
    pub fn from_pem(key_pem: &str, cert_pem: &str) -> Result<Self, CertificateError> {
        let key_block = pem_block(key_pem, "PRIVATE KEY").ok_or(CertificateError::Key)?;
        let key = rcgen::KeyPair::from_pem(&key_block).map_err(|_| CertificateError::Key)?;
        let cert_block = pem_block(cert_pem, "CERTIFICATE")
            .ok_or_else(|| CertificateError::Certificate("no CERTIFICATE block".into()))?;
        let der = cert_der(&cert_block)?;
        let (_, parsed) = x509_parser::parse_x509_certificate(&der)
            .map_err(|e| CertificateError::Certificate(e.to_string()))?;
        if !matches!(
            parsed.public_key().parsed(),
            Ok(x509_parser::public_key::PublicKey::RSA(_))
        ) {
            return Err(CertificateError::NotRsa);
        }
        if parsed.tbs_certificate.subject_pki.raw
            != rcgen::PublicKeyData::subject_public_key_info(&key).as_slice()
        {
            return Err(CertificateError::KeyMismatch);
        }
        Ok(Self {
            key_pem: Secret::new(key.serialize_pem()),
            cert_pem: cert_block,
        })
    }

    /// The certificate, PEM: what the operator uploads to Entra ID.
    pub fn certificate_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The private key, PEM (for the key file the operator keeps, 0600).
    pub fn private_key_pem(&self) -> &Secret {
        &self.key_pem
    }

    /// What the serve secret keeps of it.
    pub fn reference(&self) -> Result<crate::domain::CertificateRef, CertificateError> {
        let info = self.info()?;
        Ok(crate::domain::CertificateRef {
            thumbprint: info.thumbprint_s256,
            thumbprint_sha1: info.thumbprint_sha1_hex,
            expires: info.not_after.date(),
        })
    }

    pub fn info(&self) -> Result<CertificateInfo, CertificateError> {
        let der = cert_der(&self.cert_pem)?;
        let (_, parsed) = x509_parser::parse_x509_certificate(&der)
            .map_err(|e| CertificateError::Certificate(e.to_string()))?;
        let validity = parsed.validity();
        Ok(CertificateInfo {
            thumbprint_s256: URL_SAFE_NO_PAD.encode(Sha256::digest(&der)),
            thumbprint_sha1_hex: hex::encode_upper(sha1::Sha1::digest(&der)),
            subject: parsed.subject().to_string(),
            not_before: validity.not_before.to_datetime(),
            not_after: validity.not_after.to_datetime(),
        })
    }

    /// A signed client assertion for `client_id` at the token endpoint
    /// `audience`, valid from `now` for [`ASSERTION_LIFETIME`], with a fresh
    /// `jti`: PS256, with `x5t#S256` and `x5t` naming the certificate.
    pub fn client_assertion(
        &self,
        client_id: &str,
        audience: &str,
        now: OffsetDateTime,
    ) -> Result<Secret, CertificateError> {
        let der = cert_der(&self.cert_pem)?;
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::PS256);
        header.x5t_s256 = Some(URL_SAFE_NO_PAD.encode(Sha256::digest(&der)));
        header.x5t = Some(URL_SAFE_NO_PAD.encode(sha1::Sha1::digest(&der)));
        let at = now.unix_timestamp();
        let claims = AssertionClaims {
            aud: audience.to_owned(),
            iss: client_id.to_owned(),
            sub: client_id.to_owned(),
            jti: uuid::Uuid::new_v4().to_string(),
            nbf: at,
            iat: at,
            exp: at + ASSERTION_LIFETIME.as_secs() as i64,
        };
        let key = jsonwebtoken::EncodingKey::from_rsa_pem(self.key_pem.expose().as_bytes())
            .map_err(|_| CertificateError::Key)?;
        jsonwebtoken::encode(&header, &claims, &key)
            .map(Secret::new)
            .map_err(|e| CertificateError::Sign(e.to_string()))
    }
}

/// The first PEM block labelled `label` in `text`, as PEM text.
fn pem_block(text: &str, label: &str) -> Option<String> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = text.find(&begin)?;
    let stop = text[start..].find(&end)? + start + end.len();
    Some(format!("{}\n", &text[start..stop]))
}

fn cert_der(cert_pem: &str) -> Result<Vec<u8>, CertificateError> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes())
        .map_err(|e| CertificateError::Certificate(e.to_string()))?;
    Ok(pem.contents)
}

/// `x5t#S256` of a PEM certificate.
pub fn thumbprint_of_pem(cert_pem: &str) -> Result<String, CertificateError> {
    Ok(URL_SAFE_NO_PAD.encode(Sha256::digest(cert_der(cert_pem)?)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::OnceLock;

    /// RSA key generation takes a moment: one key for every test.
    fn generated() -> &'static CertificateKey {
        static KEY: OnceLock<CertificateKey> = OnceLock::new();
        KEY.get_or_init(|| {
            let now = OffsetDateTime::now_utc();
            CertificateKey::generate("roomtoken test", 30, now).unwrap()
        })
    }

    #[test]
    fn a_generated_certificate_is_rsa_self_signed_for_the_days_asked() {
        let key = generated();
        let info = key.info().unwrap();
        assert_eq!(
            (info.not_after - info.not_before).whole_days(),
            30,
            "{info:?}"
        );
        assert!(info.subject.contains("roomtoken test"), "{}", info.subject);
        assert_eq!(info.thumbprint_sha1_hex.len(), 40);
        assert!(
            key.certificate_pem()
                .starts_with("-----BEGIN CERTIFICATE-----")
        );
        assert!(!format!("{key:?}").contains("PRIVATE KEY"), "redacted");
        // Read back from its own PEM, the two in one file.
        let both = format!(
            "{}{}",
            key.private_key_pem().expose(),
            key.certificate_pem()
        );
        let again = CertificateKey::from_pem(&both, &both).unwrap();
        assert_eq!(again.info().unwrap(), info);
        let reversed = format!(
            "{}{}",
            key.certificate_pem(),
            key.private_key_pem().expose()
        );
        let again = CertificateKey::from_pem(&reversed, &reversed).unwrap();
        assert_eq!(again.info().unwrap(), info, "the certificate first");
        assert!(matches!(
            CertificateKey::generate("x", 0, OffsetDateTime::now_utc()),
            Err(CertificateError::Validity)
        ));
    }

    #[test]
    fn a_key_that_is_not_the_certificates_is_refused() {
        let now = OffsetDateTime::now_utc();
        let other = CertificateKey::generate("other", 1, now).unwrap();
        let mixed = CertificateKey::from_pem(
            other.private_key_pem().expose(),
            generated().certificate_pem(),
        );
        assert!(matches!(mixed, Err(CertificateError::KeyMismatch)));
        assert!(matches!(
            CertificateKey::from_pem("not a key", generated().certificate_pem()),
            Err(CertificateError::Key)
        ));
    }

    #[test]
    fn an_assertion_verifies_against_the_printed_certificate() {
        // jsonwebtoken's decode with the certificate's public key, as a
        // verifier that is not this module's code.
        let key = generated();
        let now = OffsetDateTime::now_utc();
        let audience = "https://login.microsoftonline.com/contoso/oauth2/v2.0/token";
        let assertion = key.client_assertion("client-1", audience, now).unwrap();
        let header = jsonwebtoken::decode_header(assertion.expose()).unwrap();
        assert_eq!(header.alg, jsonwebtoken::Algorithm::PS256);
        assert_eq!(
            header.x5t_s256.as_deref(),
            Some(key.info().unwrap().thumbprint_s256.as_str())
        );
        assert!(header.x5t.is_some());

        let der = cert_der(key.certificate_pem()).unwrap();
        let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
        let public = cert
            .tbs_certificate
            .subject_pki
            .subject_public_key
            .data
            .to_vec();
        let decoding = jsonwebtoken::DecodingKey::from_rsa_der(&public);
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::PS256);
        validation.set_audience(&[audience]);
        validation.set_issuer(&["client-1"]);
        validation.sub = Some("client-1".into());
        validation.set_required_spec_claims(&["exp", "nbf", "aud", "iss", "sub"]);
        let data =
            jsonwebtoken::decode::<AssertionClaims>(assertion.expose(), &decoding, &validation)
                .unwrap();
        assert!(
            data.claims.exp - data.claims.iat <= 600,
            "within 10 minutes"
        );
        assert_eq!(data.claims.nbf, now.unix_timestamp());
        let second = key.client_assertion("client-1", audience, now).unwrap();
        let again =
            jsonwebtoken::decode::<AssertionClaims>(second.expose(), &decoding, &validation)
                .unwrap();
        assert_ne!(again.claims.jti, data.claims.jti, "a fresh jti each time");

        // Another key's signature does not verify.
        let other = CertificateKey::generate("other", 1, now).unwrap();
        let forged = other.client_assertion("client-1", audience, now).unwrap();
        assert!(
            jsonwebtoken::decode::<AssertionClaims>(forged.expose(), &decoding, &validation)
                .is_err()
        );
    }
}

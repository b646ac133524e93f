//! Client assertions (`private_key_jwt`), verified as Entra ID does: the
//! signature against a certificate registered for the app (named by
//! `x5t#S256` or `x5t`), the certificate's own validity, `aud` = the token
//! endpoint the request was sent to, `iss` = `sub` = the client id, the time
//! range (5 minutes of clock skew, at most 10 minutes long), and a `jti`
//! that was never used before.

use crate::errors::AadError;
use crate::model::FakeApp;
use crate::state::State;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub(crate) const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// The clock skew Entra ID allows an assertion's times.
const SKEW: Duration = Duration::from_secs(300);
/// The longest an assertion may be valid.
const MAX_LIFETIME: i64 = 600;

/// A certificate uploaded to an app registration.
#[derive(Clone, Debug)]
pub(crate) struct RegisteredCertificate {
    pub thumbprint_s256: String,
    pub thumbprint_sha1: String,
    /// The RSA public key (PKCS#1 DER), from the certificate.
    pub public_key: Vec<u8>,
    pub not_after: SystemTime,
}

impl RegisteredCertificate {
    pub fn from_pem(pem: &str) -> Result<Self, String> {
        let (_, pem) =
            x509_parser::pem::parse_x509_pem(pem.as_bytes()).map_err(|e| e.to_string())?;
        let (_, cert) =
            x509_parser::parse_x509_certificate(&pem.contents).map_err(|e| e.to_string())?;
        let not_after = UNIX_EPOCH
            + Duration::from_secs(
                u64::try_from(cert.validity().not_after.timestamp()).map_err(|e| e.to_string())?,
            );
        Ok(Self {
            thumbprint_s256: URL_SAFE_NO_PAD.encode(Sha256::digest(&pem.contents)),
            thumbprint_sha1: URL_SAFE_NO_PAD.encode(sha1::Sha1::digest(&pem.contents)),
            public_key: cert
                .tbs_certificate
                .subject_pki
                .subject_public_key
                .data
                .to_vec(),
            not_after,
        })
    }
}

#[derive(serde::Deserialize)]
struct Claims {
    aud: Option<String>,
    iss: Option<String>,
    sub: Option<String>,
    jti: Option<String>,
    nbf: Option<i64>,
    iat: Option<i64>,
    exp: Option<i64>,
}

fn bad_signature(detail: &str) -> AadError {
    AadError::invalid_client(
        700027,
        format!("Client assertion failed signature validation. {detail}"),
    )
}

fn secs(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Verifies `assertion` for `app` at the token endpoint `audience`, and
/// spends its `jti`.
pub(crate) fn verify(
    st: &mut State,
    app: &FakeApp,
    assertion: &str,
    audience: &str,
) -> Result<(), AadError> {
    let header = jsonwebtoken::decode_header(assertion)
        .map_err(|_| AadError::invalid_request(50027, "JWT token is invalid or malformed."))?;
    if !matches!(
        header.alg,
        jsonwebtoken::Algorithm::RS256 | jsonwebtoken::Algorithm::PS256
    ) {
        return Err(bad_signature("The algorithm must be RS256 or PS256."));
    }
    let registered = st.certificates_of(&app.client_id);
    let certificate = registered
        .iter()
        .find(|c| {
            header.x5t_s256.as_deref() == Some(c.thumbprint_s256.as_str())
                || header.x5t.as_deref() == Some(c.thumbprint_sha1.as_str())
        })
        .cloned()
        .ok_or_else(|| {
            bad_signature(&format!(
                "The key was not found. (Key identifier of the assertion's x5t#S256 for app '{}'.)",
                app.client_id
            ))
        })?;
    let now = st.now();
    if certificate.not_after < now {
        return Err(AadError::invalid_client(
            700027,
            format!(
                "The certificate with identifier used to sign the client assertion is expired on application '{}'.",
                app.client_id
            ),
        ));
    }
    let key = jsonwebtoken::DecodingKey::from_rsa_der(&certificate.public_key);
    let mut validation = jsonwebtoken::Validation::new(header.alg);
    // The fake's clock decides the time range, not the library's.
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    let claims = jsonwebtoken::decode::<Claims>(assertion, &key, &validation)
        .map_err(|_| bad_signature("The signature does not match the registered certificate."))?
        .claims;
    if claims.aud.as_deref() != Some(audience) {
        return Err(bad_signature(&format!(
            "The audience claim must be the token endpoint '{audience}'."
        )));
    }
    let client = Some(app.client_id.as_str());
    if claims.iss.as_deref() != client || claims.sub.as_deref() != client {
        return Err(bad_signature(
            "The issuer and subject claims must both be the client id.",
        ));
    }
    let (Some(nbf), Some(exp)) = (claims.nbf.or(claims.iat), claims.exp) else {
        return Err(AadError::invalid_client(
            700024,
            "Client assertion is not within its valid time range: it has no nbf or exp.",
        ));
    };
    // Assertions carry the signer's wall-clock time, which Entra ID checks
    // against its own: the real time, whatever the tests did to the
    // fake's clock (which still decides the certificate's expiry).
    let at = secs(SystemTime::now());
    let skew = SKEW.as_secs() as i64;
    if exp + skew < at || nbf - skew > at || exp - nbf > MAX_LIFETIME {
        return Err(AadError::invalid_client(
            700024,
            format!(
                "Client assertion is not within its valid time range. Current time: {at}, assertion valid from {nbf} to {exp} (at most {MAX_LIFETIME} seconds)."
            ),
        ));
    }
    let Some(jti) = claims.jti.filter(|j| !j.is_empty()) else {
        return Err(bad_signature("The assertion has no jti."));
    };
    if !st.spend_jti(&jti, exp + skew, at) {
        return Err(bad_signature(
            "The assertion's jti was used before: an assertion is good for one request.",
        ));
    }
    Ok(())
}

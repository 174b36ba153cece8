//! Certificate credentials: an app proves itself at the token endpoint with a client
//! assertion, a JWT signed with its private key (Microsoft's "certificate credentials":
//! PS256 with the certificate's SHA-256 thumbprint in `x5t#S256`; claims `aud` = the token
//! endpoint, `iss` = `sub` = the client id, a fresh `jti`, `nbf`, `iat`, a short `exp`).
//!
//! Signing is jsonwebtoken's (aws-lc-rs underneath); parsing the certificate is
//! x509-parser's. Only RSA keys of at least 2048 bits are accepted: what Entra takes for
//! app credentials everywhere.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};

/// What an app proves itself with at the token endpoint.
#[derive(Clone)]
pub enum Credential {
    Secret(SecretString),
    Certificate(std::sync::Arc<ClientCertificate>),
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credential::Secret(_) => f.write_str("Credential::Secret(<redacted>)"),
            Credential::Certificate(certificate) => {
                write!(f, "Credential::Certificate({certificate:?})")
            }
        }
    }
}

impl Credential {
    pub fn kind(&self) -> &'static str {
        match self {
            Credential::Secret(_) => "secret",
            Credential::Certificate(_) => "certificate",
        }
    }
}

/// Why a certificate and key cannot be used; never says anything of the key's content.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertificateError {
    #[error("the certificate is not a PEM or DER X.509 certificate: {0}")]
    Certificate(String),
    #[error("the certificate's key is not RSA (Entra takes RSA keys for app credentials)")]
    NotRsa,
    #[error("the certificate's RSA key has {0} bits; at least 2048 are needed")]
    TooShort(usize),
    #[error("the private key is not an unencrypted RSA private key in PEM (PKCS#1 or PKCS#8)")]
    PrivateKey,
    #[error("the private key does not belong to the certificate")]
    Mismatch,
    #[error("signing the client assertion failed")]
    Signing,
}

/// A certificate and its private key, ready to sign client assertions.
pub struct ClientCertificate {
    der: Vec<u8>,
    key: jsonwebtoken::EncodingKey,
    sha1: [u8; 20],
    sha256: [u8; 32],
    not_before: DateTime<Utc>,
    not_after: DateTime<Utc>,
    subject: String,
    /// The last assertion, reused for the token requests of one check (as MSAL does) so
    /// that one RSA signature serves them all.
    cached: Mutex<Option<CachedAssertion>>,
}

struct CachedAssertion {
    client_id: String,
    audience: String,
    jwt: SecretString,
    until: Instant,
}

/// How long a signed assertion is valid (`exp` - `nbf`), and how long it is reused.
const ASSERTION_LIFETIME: Duration = Duration::from_secs(600);
const ASSERTION_REUSE: Duration = Duration::from_secs(300);

impl std::fmt::Debug for ClientCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCertificate")
            .field("subject", &self.subject)
            .field("thumbprint", &self.thumbprint_sha1_hex())
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

/// The DER of a certificate given as PEM (the first `CERTIFICATE` block) or as DER.
pub fn certificate_der(input: &[u8]) -> Result<Vec<u8>, CertificateError> {
    const BEGIN: &[u8] = b"-----BEGIN ";
    if input.windows(BEGIN.len()).any(|window| window == BEGIN) {
        const MARK: &[u8] = b"-----BEGIN CERTIFICATE-----";
        let start = input
            .windows(MARK.len())
            .position(|window| window == MARK)
            .ok_or_else(|| CertificateError::Certificate("no CERTIFICATE block".into()))?;
        let (_, pem) = x509_parser::pem::parse_x509_pem(&input[start..])
            .map_err(|error| CertificateError::Certificate(error.to_string()))?;
        Ok(pem.contents)
    } else {
        Ok(input.to_vec())
    }
}

impl ClientCertificate {
    /// A certificate (PEM or DER) and its RSA private key (PEM), checked to belong
    /// together (one signature made and verified): for what an operator hands in.
    pub fn new(certificate: &[u8], private_key_pem: &[u8]) -> Result<Self, CertificateError> {
        let certificate = Self::parse(certificate, private_key_pem)?;
        certificate.check_pair()?;
        Ok(certificate)
    }

    /// As `new`, without the pairing check: for a pair `new` accepted before and that was
    /// stored sealed (a check then costs one signature, not two).
    pub fn stored(certificate: &[u8], private_key_pem: &[u8]) -> Result<Self, CertificateError> {
        Self::parse(certificate, private_key_pem)
    }

    fn parse(certificate: &[u8], private_key_pem: &[u8]) -> Result<Self, CertificateError> {
        let der = certificate_der(certificate)?;
        let (_, parsed) = x509_parser::parse_x509_certificate(&der)
            .map_err(|error| CertificateError::Certificate(error.to_string()))?;
        let bits = match parsed.public_key().parsed() {
            Ok(x509_parser::public_key::PublicKey::RSA(rsa)) => rsa.key_size(),
            _ => return Err(CertificateError::NotRsa),
        };
        if bits < 2048 {
            return Err(CertificateError::TooShort(bits));
        }
        let time = |t: x509_parser::time::ASN1Time| {
            DateTime::from_timestamp(t.timestamp(), 0).unwrap_or_default()
        };
        let not_before = time(parsed.validity().not_before);
        let not_after = time(parsed.validity().not_after);
        let subject = parsed.subject().to_string();
        let key = jsonwebtoken::EncodingKey::from_rsa_pem(private_key_pem)
            .map_err(|_| CertificateError::PrivateKey)?;
        Ok(ClientCertificate {
            sha1: digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, &der),
            sha256: digest(&aws_lc_rs::digest::SHA256, &der),
            der,
            key,
            not_before,
            not_after,
            subject,
            cached: Mutex::new(None),
        })
    }

    /// The key must sign what the certificate's public key verifies.
    fn check_pair(&self) -> Result<(), CertificateError> {
        let (_, parsed) = x509_parser::parse_x509_certificate(&self.der)
            .map_err(|error| CertificateError::Certificate(error.to_string()))?;
        let public_key =
            jsonwebtoken::DecodingKey::from_rsa_der(&parsed.public_key().subject_public_key.data);
        let probe = self.sign("00000000-0000-0000-0000-000000000000", "urn:probe")?;
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::PS256);
        validation.set_audience(&["urn:probe"]);
        validation.validate_nbf = false;
        jsonwebtoken::decode::<serde_json::Value>(probe.expose_secret(), &public_key, &validation)
            .map_err(|_| CertificateError::Mismatch)?;
        Ok(())
    }

    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// The certificate as PEM.
    pub fn pem(&self) -> String {
        pem_of(&self.der)
    }

    /// The SHA-1 thumbprint in hex, upper case: what the portal shows, what AADSTS700027
    /// names, and (as bytes) the `customKeyIdentifier` Graph holds for the key credential.
    pub fn thumbprint_sha1_hex(&self) -> String {
        hex_upper(&self.sha1)
    }

    pub fn thumbprint_sha1(&self) -> &[u8; 20] {
        &self.sha1
    }

    /// `x5t#S256`: the SHA-256 thumbprint, base64url without padding.
    pub fn x5t_s256(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.sha256)
    }

    pub fn not_before(&self) -> DateTime<Utc> {
        self.not_before
    }

    pub fn not_after(&self) -> DateTime<Utc> {
        self.not_after
    }

    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// A client assertion for `client_id` at `audience` (the token endpoint), reused while
    /// it is young.
    pub fn assertion(
        &self,
        client_id: &str,
        audience: &str,
    ) -> Result<SecretString, CertificateError> {
        let mut cached = self.cached.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(hit) = cached.as_ref()
            && hit.client_id == client_id
            && hit.audience == audience
            && hit.until > Instant::now()
        {
            return Ok(hit.jwt.clone());
        }
        let jwt = self.sign(client_id, audience)?;
        *cached = Some(CachedAssertion {
            client_id: client_id.to_string(),
            audience: audience.to_string(),
            jwt: jwt.clone(),
            until: Instant::now() + ASSERTION_REUSE,
        });
        Ok(jwt)
    }

    /// The proof of possession addKey and removeKey ask for: a JWT signed by this (valid,
    /// registered) certificate, `aud` 00000002-0000-0000-c000-000000000000, `iss` the
    /// application's object id, `exp` 10 minutes after `nbf`. RS256 with `x5t` (and
    /// `x5t#S256`), as Microsoft's own sample signs it.
    pub fn proof(&self, application_object_id: &str) -> Result<SecretString, CertificateError> {
        let now = Utc::now().timestamp();
        let claims = serde_json::json!({
            "aud": "00000002-0000-0000-c000-000000000000",
            "iss": application_object_id,
            "nbf": now,
            "exp": now + 600,
            "jti": uuid::Uuid::new_v4().to_string(),
        });
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
        header.x5t = Some(URL_SAFE_NO_PAD.encode(self.sha1));
        header.x5t_s256 = Some(self.x5t_s256());
        jsonwebtoken::encode(&header, &claims, &self.key)
            .map(SecretString::from)
            .map_err(|_| CertificateError::Signing)
    }

    fn sign(&self, client_id: &str, audience: &str) -> Result<SecretString, CertificateError> {
        let now = Utc::now().timestamp();
        let lifetime = i64::try_from(ASSERTION_LIFETIME.as_secs()).unwrap_or(600);
        let claims = serde_json::json!({
            "aud": audience,
            "iss": client_id,
            "sub": client_id,
            "jti": uuid::Uuid::new_v4().to_string(),
            "nbf": now,
            "iat": now,
            "exp": now + lifetime,
        });
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::PS256);
        header.x5t_s256 = Some(self.x5t_s256());
        jsonwebtoken::encode(&header, &claims, &self.key)
            .map(SecretString::from)
            .map_err(|_| CertificateError::Signing)
    }
}

fn digest<const N: usize>(
    algorithm: &'static aws_lc_rs::digest::Algorithm,
    data: &[u8],
) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(aws_lc_rs::digest::digest(algorithm, data).as_ref());
    out
}

/// A certificate's DER as PEM.
pub fn pem_of(der: &[u8]) -> String {
    pem_block("CERTIFICATE", der).to_string()
}

/// `der` as a PEM block under `label`; wiped when dropped, as it may hold a private key.
pub fn pem_block(label: &str, der: &[u8]) -> zeroize::Zeroizing<String> {
    let body = zeroize::Zeroizing::new(STANDARD.encode(der));
    let mut pem = zeroize::Zeroizing::new(String::with_capacity(body.len() + body.len() / 64 + 64));
    pem.push_str("-----BEGIN ");
    pem.push_str(label);
    pem.push_str("-----\n");
    for line in body.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(line).unwrap_or_default());
        pem.push('\n');
    }
    pem.push_str("-----END ");
    pem.push_str(label);
    pem.push_str("-----\n");
    pem
}

pub fn hex_upper(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> (String, String) {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap();
        let params = rcgen::CertificateParams::new(vec!["kodo-access test".into()]).unwrap();
        let certificate = params.self_signed(&key).unwrap();
        (certificate.pem(), key.serialize_pem())
    }

    #[test]
    fn an_assertion_is_ps256_with_the_sha256_thumbprint_and_microsofts_claims() {
        let (certificate, key) = pair();
        let credential = ClientCertificate::new(certificate.as_bytes(), key.as_bytes()).unwrap();
        let audience = "https://login.microsoftonline.com/t/oauth2/v2.0/token";
        let jwt = credential.assertion("client", audience).unwrap();
        let header = jsonwebtoken::decode_header(jwt.expose_secret()).unwrap();
        assert_eq!(header.alg, jsonwebtoken::Algorithm::PS256);
        assert_eq!(
            header.x5t_s256.as_deref(),
            Some(credential.x5t_s256().as_str())
        );
        let (_, parsed) = x509_parser::parse_x509_certificate(credential.der()).unwrap();
        let public =
            jsonwebtoken::DecodingKey::from_rsa_der(&parsed.public_key().subject_public_key.data);
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::PS256);
        validation.set_audience(&[audience]);
        validation.set_issuer(&["client"]);
        let claims =
            jsonwebtoken::decode::<serde_json::Value>(jwt.expose_secret(), &public, &validation)
                .unwrap()
                .claims;
        assert_eq!(claims["sub"], "client");
        assert!(claims["exp"].as_i64().unwrap() - claims["nbf"].as_i64().unwrap() <= 600);
        // Reused within a check, fresh for another audience.
        assert_eq!(
            credential
                .assertion("client", audience)
                .unwrap()
                .expose_secret(),
            jwt.expose_secret()
        );
        assert_ne!(
            credential
                .assertion("client", "https://elsewhere/")
                .unwrap()
                .expose_secret(),
            jwt.expose_secret()
        );
    }

    #[test]
    fn a_key_of_another_certificate_or_not_rsa_is_refused() {
        let (certificate, _) = pair();
        let (_, other_key) = pair();
        assert_eq!(
            ClientCertificate::new(certificate.as_bytes(), other_key.as_bytes()).unwrap_err(),
            CertificateError::Mismatch
        );
        let ec = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let ec_certificate = rcgen::CertificateParams::new(vec!["ec".into()])
            .unwrap()
            .self_signed(&ec)
            .unwrap();
        assert_eq!(
            ClientCertificate::new(
                ec_certificate.pem().as_bytes(),
                ec.serialize_pem().as_bytes()
            )
            .unwrap_err(),
            CertificateError::NotRsa
        );
        assert_eq!(
            ClientCertificate::new(certificate.as_bytes(), b"not a key").unwrap_err(),
            CertificateError::PrivateKey
        );
        assert!(matches!(
            ClientCertificate::new(b"not a certificate", b"").unwrap_err(),
            CertificateError::Certificate(_)
        ));
    }

    #[test]
    fn thumbprints_are_the_digests_of_the_der() {
        let (certificate, key) = pair();
        let credential = ClientCertificate::new(certificate.as_bytes(), key.as_bytes()).unwrap();
        let sha1 = aws_lc_rs::digest::digest(
            &aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY,
            credential.der(),
        );
        assert_eq!(credential.thumbprint_sha1_hex(), hex_upper(sha1.as_ref()));
        assert_eq!(credential.thumbprint_sha1_hex().len(), 40);
        assert!(
            credential
                .pem()
                .starts_with("-----BEGIN CERTIFICATE-----\n")
        );
        assert_eq!(
            certificate_der(credential.pem().as_bytes()).unwrap(),
            credential.der()
        );
        assert!(credential.not_after() > credential.not_before());
    }
}

//! Sealing client secrets at rest.
//!
//! XChaCha20-Poly1305 (RustCrypto's `chacha20poly1305`) under a 256-bit master key, with
//! a random 192-bit nonce per seal. The associated data binds a ciphertext to its row
//! (organization id and credential id), so a ciphertext copied into another row does not
//! open. Each sealed value records the id of the key that sealed it, so keys can be
//! replaced (`kodo-access key rotate`). The key id is a fingerprint of the key, not a
//! name an operator could get wrong.
//!
//! This module must never log, print or return a key or a plaintext other than as a
//! `SecretString`.

use std::fmt;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

use crate::config::{ConfigError, CryptoSettings, SecretSource};

const NONCE_LEN: usize = 24;
const AAD_DOMAIN: &[u8] = b"kodo-access/credential-secret/v1";

#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error(
        "was sealed with master key {0}, which is not configured (add it to crypto.previous_key_files)"
    )]
    UnknownKey(String),
    #[error("sealed with key {0} does not open: it was tampered with or belongs to another row")]
    Corrupt(String),
}

/// One master key, identified by its fingerprint.
pub struct MasterKey {
    id: String,
    cipher: XChaCha20Poly1305,
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MasterKey({})", self.id)
    }
}

impl MasterKey {
    /// Parses a key file's content: 32 bytes, base64-encoded.
    pub fn from_encoded(encoded: &SecretString) -> Result<MasterKey, String> {
        let bytes = zeroize::Zeroizing::new(
            BASE64.decode(encoded.expose_secret().trim()).map_err(|_| {
                "the master key is not base64 (create one with `kodo-access key generate`)"
                    .to_string()
            })?,
        );
        if bytes.len() != 32 {
            return Err(format!(
                "the master key must be 32 bytes (256 bits), this one has {} bytes",
                bytes.len()
            ));
        }
        let mut hasher = Sha256::new();
        hasher.update(b"kodo-access master key id v1\0");
        hasher.update(&bytes[..]);
        let digest = hasher.finalize();
        let id: String = digest[..8]
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect();
        let cipher = XChaCha20Poly1305::new_from_slice(&bytes).expect("32-byte key");
        Ok(MasterKey { id, cipher })
    }

    pub fn id(&self) -> &str {
        &self.id
    }
}

/// Writes a new random key to `path` with mode 0600, refusing to overwrite a file.
/// Returns the new key's id.
pub fn generate_key_file(path: &Path) -> anyhow::Result<String> {
    let mut bytes = zeroize::Zeroizing::new([0u8; 32]);
    getrandom::fill(&mut bytes[..]).map_err(|error| anyhow::anyhow!("no randomness: {error}"))?;
    let encoded = SecretString::from(BASE64.encode(&bytes[..]));
    let key = MasterKey::from_encoded(&encoded).map_err(anyhow::Error::msg)?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|error| anyhow::anyhow!("cannot create key file {}: {error}", path.display()))?;
    file.write_all(format!("{}\n", encoded.expose_secret()).as_bytes())?;
    file.sync_all()?;
    Ok(key.id)
}

/// Which row a sealed secret belongs to: the associated data of the AEAD.
#[derive(Debug, Clone, Copy)]
pub struct SealContext {
    pub organization_id: crate::domain::OrganizationId,
    pub credential_id: crate::domain::CredentialId,
}

impl SealContext {
    fn associated_data(&self) -> Vec<u8> {
        let mut data = Vec::with_capacity(AAD_DOMAIN.len() + 32);
        data.extend_from_slice(AAD_DOMAIN);
        data.extend_from_slice(self.organization_id.as_uuid().as_bytes());
        data.extend_from_slice(self.credential_id.as_uuid().as_bytes());
        data
    }
}

/// A secret as stored: nonce followed by ciphertext and tag, and the sealing key's id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    pub key_id: String,
    pub blob: Vec<u8>,
}

/// The current key (seals and opens) and previous keys (open only).
#[derive(Debug)]
pub struct Keyring {
    current: MasterKey,
    previous: Vec<MasterKey>,
}

impl Keyring {
    pub fn new(current: MasterKey, previous: Vec<MasterKey>) -> Keyring {
        Keyring { current, previous }
    }

    /// Reads the configured keys.
    pub fn load(settings: &CryptoSettings) -> Result<Keyring, ConfigError> {
        let source = settings.master_key.as_ref().ok_or_else(|| {
            ConfigError(
                "no master key configured: set crypto.master_key_file (create one with `kodo-access key generate --out PATH`) or provide the systemd credential master-key".into(),
            )
        })?;
        let current = read_key(source)?;
        let mut previous = Vec::new();
        for source in &settings.previous_keys {
            previous.push(read_key(source)?);
        }
        Ok(Keyring { current, previous })
    }

    pub fn current_id(&self) -> &str {
        self.current.id()
    }

    pub fn seal(&self, secret: &SecretString, context: SealContext) -> Sealed {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).expect("the operating system provides randomness");
        let aad = context.associated_data();
        let ciphertext = self
            .current
            .cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: secret.expose_secret().as_bytes(),
                    aad: &aad,
                },
            )
            .expect("encryption of a bounded plaintext cannot fail");
        let mut blob = Vec::with_capacity(NONCE_LEN + ciphertext.len());
        blob.extend_from_slice(&nonce);
        blob.extend_from_slice(&ciphertext);
        Sealed {
            key_id: self.current.id.clone(),
            blob,
        }
    }

    pub fn open(&self, sealed: &Sealed, context: SealContext) -> Result<SecretString, CryptoError> {
        let key = std::iter::once(&self.current)
            .chain(self.previous.iter())
            .find(|key| key.id == sealed.key_id)
            .ok_or_else(|| CryptoError::UnknownKey(sealed.key_id.clone()))?;
        if sealed.blob.len() < NONCE_LEN {
            return Err(CryptoError::Corrupt(sealed.key_id.clone()));
        }
        let (nonce, ciphertext) = sealed.blob.split_at(NONCE_LEN);
        let aad = context.associated_data();
        let plaintext = zeroize::Zeroizing::new(
            key.cipher
                .decrypt(
                    XNonce::from_slice(nonce),
                    Payload {
                        msg: ciphertext,
                        aad: &aad,
                    },
                )
                .map_err(|_| CryptoError::Corrupt(sealed.key_id.clone()))?,
        );
        let text = std::str::from_utf8(&plaintext)
            .map_err(|_| CryptoError::Corrupt(sealed.key_id.clone()))?;
        Ok(SecretString::from(text.to_string()))
    }
}

fn read_key(source: &SecretSource) -> Result<MasterKey, ConfigError> {
    let encoded = source.read()?;
    MasterKey::from_encoded(&encoded)
        .map_err(|message| ConfigError(format!("{} ({source}): {message}", source.key())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> MasterKey {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).unwrap();
        MasterKey::from_encoded(&SecretString::from(BASE64.encode(bytes))).unwrap()
    }

    fn context() -> SealContext {
        SealContext {
            organization_id: crate::domain::OrganizationId::new(),
            credential_id: crate::domain::CredentialId::new(),
        }
    }

    #[test]
    fn seal_and_open_round_trip_without_plaintext_in_the_blob() {
        let keyring = Keyring::new(key(), vec![]);
        let context = context();
        let sealed = keyring.seal(&SecretString::from("Abc~supersecretvalue"), context);
        assert!(!String::from_utf8_lossy(&sealed.blob).contains("supersecret"));
        assert_eq!(sealed.key_id, keyring.current_id());
        assert_eq!(
            keyring.open(&sealed, context).unwrap().expose_secret(),
            "Abc~supersecretvalue"
        );
    }

    #[test]
    fn a_ciphertext_moved_to_another_row_does_not_open() {
        let keyring = Keyring::new(key(), vec![]);
        let original = context();
        let sealed = keyring.seal(&SecretString::from("s"), original);
        let other_credential = SealContext {
            credential_id: crate::domain::CredentialId::new(),
            ..original
        };
        let other_org = SealContext {
            organization_id: crate::domain::OrganizationId::new(),
            ..original
        };
        assert!(matches!(
            keyring.open(&sealed, other_credential),
            Err(CryptoError::Corrupt(_))
        ));
        assert!(matches!(
            keyring.open(&sealed, other_org),
            Err(CryptoError::Corrupt(_))
        ));
    }

    #[test]
    fn previous_keys_open_and_unknown_keys_are_named() {
        let old = Keyring::new(key(), vec![]);
        let context = context();
        let sealed = old.seal(&SecretString::from("s"), context);
        let Keyring {
            current: old_key, ..
        } = old;
        let old_id = old_key.id.clone();
        let rotated = Keyring::new(key(), vec![old_key]);
        assert_eq!(rotated.open(&sealed, context).unwrap().expose_secret(), "s");
        let forgotten = Keyring::new(key(), vec![]);
        let error = forgotten.open(&sealed, context).unwrap_err().to_string();
        assert!(error.contains(&old_id), "{error}");
    }

    #[test]
    fn key_files_are_created_0600_and_never_overwritten() {
        use std::os::unix::fs::PermissionsExt;
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("master.key");
        let id = generate_key_file(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let loaded =
            MasterKey::from_encoded(&crate::config::read_secret_file(&path).unwrap()).unwrap();
        assert_eq!(loaded.id(), id);
        assert!(generate_key_file(&path).is_err());
    }

    #[test]
    fn short_keys_are_refused() {
        let error =
            MasterKey::from_encoded(&SecretString::from(BASE64.encode([1u8; 16]))).unwrap_err();
        assert!(error.contains("32 bytes"), "{error}");
    }
}

//! PKCS#12 (`.pfx`/`.p12`) files: a certificate and its private key under a passphrase, the
//! form Windows, the Entra portal's guides and many backup servers exchange certificates
//! in. Reading and writing are p12-keystore's (pure Rust; PBES2 with AES-256 and an
//! HMAC-SHA-256 MAC when writing, the legacy 3DES/RC2 schemes of older Windows and OpenSSL
//! exports when reading); the private key is converted between PEM and PKCS#8 DER with
//! aws-lc-rs. Every buffer that holds key material is wiped when dropped.

use secrecy::{ExposeSecret, SecretString};
use zeroize::Zeroizing;

use crate::certificate::{CertificateError, ClientCertificate, pem_block};

/// Why a PKCS#12 file cannot be read or written; never says anything of the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Pkcs12Error {
    #[error("the PKCS#12 file cannot be opened: not PKCS#12, or the passphrase is wrong ({0})")]
    Open(String),
    #[error("the PKCS#12 file holds no private key with its certificate")]
    NoKey,
    #[error("the PKCS#12 file holds several private keys: give one certificate and its key")]
    SeveralKeys,
    #[error(transparent)]
    Certificate(#[from] CertificateError),
    #[error("the PKCS#12 file cannot be written: {0}")]
    Write(String),
}

/// The certificate and private key (as PEM, PKCS#8) in a PKCS#12 file, checked to belong
/// together like a PEM pair.
pub fn read(
    data: &[u8],
    passphrase: &SecretString,
) -> Result<(ClientCertificate, SecretString), Pkcs12Error> {
    let store = p12_keystore::KeyStore::from_pkcs12(
        data,
        passphrase.expose_secret(),
        p12_keystore::Pkcs12ImportPolicy::Strict,
    )
    .map_err(|error| Pkcs12Error::Open(error.to_string()))?;
    let chains: Vec<&p12_keystore::PrivateKeyChain> = store
        .entries()
        .filter_map(|(_, entry)| match entry {
            p12_keystore::KeyStoreEntry::PrivateKeyChain(chain) => Some(chain),
            _ => None,
        })
        .collect();
    let chain = match chains[..] {
        [] => return Err(Pkcs12Error::NoKey),
        [only] => only,
        _ => return Err(Pkcs12Error::SeveralKeys),
    };
    let leaf = chain.certs().first().ok_or(Pkcs12Error::NoKey)?;
    let key_pem = SecretString::from(pem_block("PRIVATE KEY", chain.key().as_der()).as_str());
    let certificate = ClientCertificate::new(leaf.as_der(), key_pem.expose_secret().as_bytes())?;
    Ok((certificate, key_pem))
}

/// A PKCS#12 file of `certificate` and its private key (PEM, PKCS#1 or PKCS#8) under
/// `passphrase`, with `friendly_name` as the entry's name.
pub fn write(
    certificate: &ClientCertificate,
    private_key_pem: &SecretString,
    passphrase: &SecretString,
    friendly_name: &str,
) -> Result<Zeroizing<Vec<u8>>, Pkcs12Error> {
    let pkcs8 = pkcs8_der(private_key_pem)?;
    let key = p12_keystore::PrivateKey::from_der(&pkcs8)
        .map_err(|error| Pkcs12Error::Write(error.to_string()))?;
    let leaf = p12_keystore::Certificate::from_der(certificate.der())
        .map_err(|error| Pkcs12Error::Write(error.to_string()))?;
    let chain =
        p12_keystore::PrivateKeyChain::new(certificate.thumbprint_sha1().as_slice(), key, [leaf]);
    let mut store = p12_keystore::KeyStore::new();
    store.add_entry(
        friendly_name,
        p12_keystore::KeyStoreEntry::PrivateKeyChain(chain),
    );
    store
        .writer(passphrase.expose_secret())
        .write()
        .map(Zeroizing::new)
        .map_err(|error| Pkcs12Error::Write(error.to_string()))
}

/// The private key of a PEM (PKCS#8 `PRIVATE KEY` or PKCS#1 `RSA PRIVATE KEY`) as PKCS#8
/// DER.
pub fn pkcs8_der(private_key_pem: &SecretString) -> Result<Zeroizing<Vec<u8>>, CertificateError> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(private_key_pem.expose_secret().as_bytes())
        .map_err(|_| CertificateError::PrivateKey)?;
    let contents = Zeroizing::new(pem.contents);
    match pem.label.as_str() {
        "PRIVATE KEY" => {
            aws_lc_rs::rsa::KeyPair::from_pkcs8(&contents)
                .map_err(|_| CertificateError::PrivateKey)?;
            Ok(contents)
        }
        "RSA PRIVATE KEY" => {
            use aws_lc_rs::encoding::AsDer;
            let key = aws_lc_rs::rsa::KeyPair::from_der(&contents)
                .map_err(|_| CertificateError::PrivateKey)?;
            let der = key.as_der().map_err(|_| CertificateError::PrivateKey)?;
            Ok(Zeroizing::new(der.as_ref().to_vec()))
        }
        _ => Err(CertificateError::PrivateKey),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> (String, SecretString) {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap();
        let params = rcgen::CertificateParams::new(vec!["kodo-access test".into()]).unwrap();
        let certificate = params.self_signed(&key).unwrap();
        (certificate.pem(), SecretString::from(key.serialize_pem()))
    }

    #[test]
    fn a_written_file_reads_back_to_the_same_certificate_and_key() {
        let (certificate_pem, key) = pair();
        let certificate =
            ClientCertificate::new(certificate_pem.as_bytes(), key.expose_secret().as_bytes())
                .unwrap();
        let passphrase = SecretString::from("correct horse");
        let file = write(&certificate, &key, &passphrase, "contoso").unwrap();
        let (read_back, read_key) = read(&file, &passphrase).unwrap();
        assert_eq!(read_back.der(), certificate.der());
        assert_eq!(
            *pkcs8_der(&read_key).unwrap(),
            *pkcs8_der(&key).unwrap(),
            "the same private key"
        );
        // The key is not in the file in the clear.
        let pkcs8 = pkcs8_der(&key).unwrap();
        assert!(!file.windows(64).any(|window| window == &pkcs8[40..104]));
        assert!(matches!(
            read(&file, &SecretString::from("wrong")),
            Err(Pkcs12Error::Open(_))
        ));
        assert!(matches!(
            read(b"not pkcs12", &passphrase),
            Err(Pkcs12Error::Open(_))
        ));
    }

    #[test]
    fn a_pkcs1_key_becomes_pkcs8_of_the_same_key() {
        let (_, key) = pair();
        let rsa_pem =
            SecretString::from(pem_block("RSA PRIVATE KEY", &pkcs1_private_key(&key)).as_str());
        let public = |der: &[u8]| {
            use aws_lc_rs::signature::KeyPair;
            aws_lc_rs::rsa::KeyPair::from_pkcs8(der)
                .unwrap()
                .public_key()
                .as_ref()
                .to_vec()
        };
        assert_eq!(
            public(&pkcs8_der(&rsa_pem).unwrap()),
            public(&pkcs8_der(&key).unwrap())
        );
        let certificate_pem =
            SecretString::from("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n");
        assert_eq!(
            pkcs8_der(&certificate_pem).unwrap_err(),
            CertificateError::PrivateKey
        );
    }

    /// The key as PKCS#1 `RSAPrivateKey` DER, made by another implementation (OpenSSL's
    /// command line).
    fn pkcs1_private_key(key: &SecretString) -> Vec<u8> {
        let output = std::process::Command::new("openssl")
            .args(["rsa", "-traditional", "-outform", "DER"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut child| {
                use std::io::Write;
                child
                    .stdin
                    .take()
                    .unwrap()
                    .write_all(key.expose_secret().as_bytes())?;
                child.wait_with_output()
            })
            .unwrap();
        assert!(output.status.success());
        output.stdout
    }
}

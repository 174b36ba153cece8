//! What a certificate costs a check, in CPU: `cargo run --release -p kodo-microsoft
//! --example assertion_cost`. A check reads the stored certificate and key
//! (`ClientCertificate::stored`) and signs one client assertion (PS256) for its token
//! requests; a secret costs neither. The next lines split the signature into aws-lc's key
//! parsing and the RSA operation itself, which no caching within a check can avoid; the
//! last is what a rotation's new key pair costs.

use std::time::Instant;

fn per(started: Instant, runs: u32) -> f64 {
    started.elapsed().as_secs_f64() * 1000.0 / f64::from(runs)
}

fn main() -> anyhow::Result<()> {
    // One RSA-2048 certificate, as rotation makes them.
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256)?;
    let certificate =
        rcgen::CertificateParams::new(vec!["kodo-access".into()])?.self_signed(&key)?;
    let (pem, key_pem) = (certificate.pem(), key.serialize_pem());
    let runs = 300;

    let started = Instant::now();
    for _ in 0..runs {
        std::hint::black_box(kodo_microsoft::ClientCertificate::stored(
            pem.as_bytes(),
            key_pem.as_bytes(),
        )?);
    }
    println!(
        "read the stored certificate and key: {:.3} ms",
        per(started, runs)
    );

    let started = Instant::now();
    for _ in 0..runs {
        let credential =
            kodo_microsoft::ClientCertificate::stored(pem.as_bytes(), key_pem.as_bytes())?;
        std::hint::black_box(credential.assertion("client", "https://login/token")?);
    }
    println!(
        "... and sign one client assertion (what a check adds): {:.3} ms",
        per(started, runs)
    );

    let der = kodo_microsoft::pkcs12::pkcs8_der(&secrecy::SecretString::from(key_pem))?;
    let started = Instant::now();
    for _ in 0..runs {
        std::hint::black_box(
            aws_lc_rs::rsa::KeyPair::from_pkcs8(&der).map_err(|e| anyhow::anyhow!("{e}"))?,
        );
    }
    println!(
        "aws-lc: parse the private key: {:.3} ms",
        per(started, runs)
    );
    let pair = aws_lc_rs::rsa::KeyPair::from_pkcs8(&der).map_err(|e| anyhow::anyhow!("{e}"))?;
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let mut signature = vec![0u8; pair.public_modulus_len()];
    let started = Instant::now();
    for _ in 0..runs {
        pair.sign(
            &aws_lc_rs::signature::RSA_PSS_SHA256,
            &rng,
            b"message",
            &mut signature,
        )
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    println!(
        "aws-lc: one PS256 signature with a parsed key: {:.3} ms",
        per(started, runs)
    );

    let keys = 10;
    let started = Instant::now();
    for _ in 0..keys {
        std::hint::black_box(rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256)?);
    }
    println!(
        "RSA-2048 key generation (a rotation's new certificate): {:.1} ms",
        per(started, keys)
    );
    Ok(())
}

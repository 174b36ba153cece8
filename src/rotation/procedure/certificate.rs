//! The certificate side of a rotation. A certificate, unlike a secret, is made here: its
//! key pair and self-signed certificate are generated and stored (pending, the key sealed)
//! before Microsoft is asked for anything, so whatever happens next the certificate is
//! found again on the application by its thumbprint — a lost addKey answer leaves nothing
//! nobody can use. It is added with addKey, proving possession of the current certificate
//! (an application needs no permission to roll its own keys), verified like a secret,
//! delivered with its private key, made current, and the replaced certificate is removed
//! with removeKey after the grace period, proven by the new one.

use std::sync::Arc;

use secrecy::{ExposeSecret, SecretString};

use super::{Failure, FailureReason, Locked, Next, display_name, graph_failure};
use crate::crypto::SealContext;
use crate::failpoint;
use crate::microsoft::{ClientCertificate, Credential};
use crate::store::{self, rotations::CredentialRef, rotations::RotationRow};

/// How long before it is made a certificate is valid from (the clocks of this host and
/// Entra may differ a little).
const BACKDATED: chrono::Duration = chrono::Duration::minutes(5);

/// A new RSA-2048 key pair and a self-signed certificate valid from `BACKDATED` before now
/// for `lifetime`.
pub(super) fn generate(
    subject: &str,
    lifetime: chrono::Duration,
) -> anyhow::Result<(ClientCertificate, SecretString)> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256)?;
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, subject);
    let now = chrono::Utc::now();
    let at = |time: chrono::DateTime<chrono::Utc>| {
        time::OffsetDateTime::from_unix_timestamp(time.timestamp())
    };
    // Valid for exactly `lifetime` (what a tenant's policy judges), from a little before.
    let not_before = now - BACKDATED;
    params.not_before = at(not_before)?;
    params.not_after = at(not_before + lifetime)?;
    let certificate = params.self_signed(&key)?;
    let key_pem = SecretString::from(key.serialize_pem());
    let parsed = ClientCertificate::new(certificate.der(), key_pem.expose_secret().as_bytes())?;
    Ok((parsed, key_pem))
}

/// A stored credential as what signs in: its secret, or its certificate and key.
pub(super) fn credential_of(
    context: &crate::context::Context,
    organization_id: crate::domain::OrganizationId,
    credential: &CredentialRef,
) -> anyhow::Result<Credential> {
    let opened = super::open_credential(context, organization_id, credential)?;
    match (credential.kind, &credential.certificate) {
        (crate::domain::CredentialKind::Certificate, Some(der)) => {
            Ok(Credential::Certificate(Arc::new(
                ClientCertificate::stored(der, opened.expose_secret().as_bytes())?,
            )))
        }
        (crate::domain::CredentialKind::Certificate, None) => Err(anyhow::anyhow!(
            "credential {} is a certificate without its certificate",
            credential.id
        )),
        (crate::domain::CredentialKind::Secret, _) => Ok(Credential::Secret(opened)),
    }
}

impl Locked<'_> {
    /// `intent` -> `added` for a certificate: generated and stored first (then the journal
    /// is read again), then found on the application by thumbprint or added with addKey.
    pub(super) async fn add_certificate(
        &mut self,
        rotation: &RotationRow,
        old: &CredentialRef,
    ) -> anyhow::Result<Next> {
        let Some(new_id) = rotation.new_credential_id else {
            if !self.adopt_spare(rotation).await? {
                self.prepare_certificate(rotation).await?;
            }
            return Ok(Next::Again);
        };
        let current = credential_of(self.context, self.organization_id, old)?;
        let token = self.graph_token(rotation, &current).await?;
        let new = self.credential(Some(new_id)).await?;
        let Credential::Certificate(certificate) =
            credential_of(self.context, self.organization_id, &new)?
        else {
            return Err(anyhow::anyhow!(
                "rotation {}'s new credential is no certificate",
                rotation.id
            ));
        };
        let application = self.application(rotation, &token).await?;
        let thumbprint = certificate.thumbprint_sha1_hex();
        let on_app = |application: &crate::microsoft::graph::Application| {
            application
                .key_credentials
                .iter()
                .find(|key| key.thumbprint().as_deref() == Some(thumbprint.as_str()))
                .map(|key| key.key_id)
        };
        // Added by an attempt whose answer was lost or that died before recording it.
        if let Some(key_id) = on_app(&application) {
            return self
                .record_certificate_added(rotation, new.id, key_id)
                .await;
        }
        let mut lost = 0;
        loop {
            self.fence().await?;
            failpoint::hit("rotation-before-added").await;
            let added = match &current {
                // Rolling its own keys: addKey, proven by the current certificate.
                Credential::Certificate(signer) => self
                    .context
                    .microsoft
                    .add_key(
                        &self.endpoints,
                        &token,
                        &application.id,
                        &certificate,
                        &display_name(rotation.id),
                        signer,
                    )
                    .await
                    .map(|created| Some(created.key_id)),
                // From a secret: addKey cannot add a first certificate; the update of the
                // app's keyCredentials can, with the rights addPassword needs.
                Credential::Secret(_) => self
                    .context
                    .microsoft
                    .add_key_by_update(
                        &self.endpoints,
                        &token,
                        &certificate,
                        &display_name(rotation.id),
                    )
                    .await
                    .map(|()| None),
            };
            let added = match added {
                Ok(Some(key_id)) => Ok(key_id),
                // The update answers nothing: the keyId is read back by thumbprint.
                Ok(None) => {
                    let application = self.application(rotation, &token).await?;
                    match on_app(&application) {
                        Some(key_id) => Ok(key_id),
                        None => {
                            return Err(anyhow::anyhow!(
                                "the certificate is not on the application after its update"
                            ));
                        }
                    }
                }
                Err(error) => Err(error),
            };
            match added {
                Ok(key_id) => {
                    failpoint::hit("rotation-after-added").await;
                    return self
                        .record_certificate_added(rotation, new.id, key_id)
                        .await;
                }
                Err(error) if error.may_have_acted() && lost < super::LOST_ANSWERS_PER_ATTEMPT => {
                    lost += 1;
                    tracing::warn!(organization = %self.organization.name, rotation = %rotation.id, "addKey's answer was lost ({error}): looking for the certificate by its thumbprint");
                    let application = self.application(rotation, &token).await?;
                    if let Some(key_id) = on_app(&application) {
                        return self
                            .record_certificate_added(rotation, new.id, key_id)
                            .await;
                    }
                }
                // The tenant's policy allows certificates a shorter life: this one is of no
                // use (its dates are in it); the next attempt makes a shorter one.
                Err(error) if error.kind == crate::microsoft::GraphFailure::LifetimeTooLong => {
                    let asked = certificate.not_after() - certificate.not_before();
                    // The ladder's next rung below what was refused.
                    let shorter =
                        crate::domain::plan::lifetime_ladder(&self.settings.policy, Some(asked))
                            .into_iter()
                            .find(|lifetime| *lifetime < asked);
                    let Some(shorter) = shorter else {
                        return self.fail(rotation, graph_failure(error, &token)).await;
                    };
                    tracing::info!(organization = %self.organization.name, rotation = %rotation.id, "the tenant's policy refused a certificate valid {} days; making one of {} days", asked.num_days(), shorter.num_days());
                    self.learn_lifetime(rotation, asked, shorter).await?;
                    // The next certificate is made from what was just learned.
                    self.organization.secret_lifetime_limit_days =
                        i32::try_from(shorter.num_days()).ok();
                    let mut connection = self.context.pool.acquire().await?;
                    store::rotations::discard_prepared(&mut connection, rotation.id, new.id)
                        .await?;
                    return Ok(Next::Again);
                }
                // After a lost answer, a refusal may only say it is there already (a read
                // that lagged behind the write): look once more before failing.
                Err(error)
                    if lost > 0 && error.kind == crate::microsoft::GraphFailure::BadRequest =>
                {
                    let application = self.application(rotation, &token).await?;
                    match on_app(&application) {
                        Some(key_id) => {
                            return self
                                .record_certificate_added(rotation, new.id, key_id)
                                .await;
                        }
                        None => return self.fail(rotation, graph_failure(error, &token)).await,
                    }
                }
                Err(error) => return self.fail(rotation, graph_failure(error, &token)).await,
            }
        }
    }

    /// The certificate to make now: the configured lifetime, or the tenant's limit once a
    /// refusal taught it.
    fn certificate_lifetime(&self) -> chrono::Duration {
        certificate_lifetime(
            &self.settings.policy,
            self.organization.secret_lifetime_limit_days,
        )
    }

    /// Takes the certificate made ahead for this organization (`prepare_ahead`) as the
    /// rotation's new one, when it is still fit: no longer-lived than is now asked for,
    /// and made within `rotation.prepare_ahead` and a day. Otherwise it is discarded.
    async fn adopt_spare(&mut self, rotation: &RotationRow) -> anyhow::Result<bool> {
        // One transaction, one connection beside the rotation's lock: read, then discard
        // or adopt.
        let mut transaction = self.context.pool.begin().await?;
        let Some((spare, start, end)) =
            store::rotations::spare(&mut transaction, self.organization_id).await?
        else {
            return Ok(false);
        };
        let fresh = chrono::Duration::from_std(self.context.settings.rotation.prepare_ahead)
            .unwrap_or_default()
            + chrono::Duration::days(1);
        let fit = end - start <= self.certificate_lifetime() && chrono::Utc::now() - start <= fresh;
        if !fit {
            store::rotations::discard_spare(&mut transaction, spare).await?;
            transaction.commit().await?;
            return Ok(false);
        }
        let adopted = store::rotations::adopt_spare(
            &mut transaction,
            rotation.id,
            spare,
            &display_name(rotation.id),
        )
        .await?;
        if adopted {
            let mut entry = self.audit(rotation.id, "credential.prepared", Some(spare), None);
            entry.details = serde_json::json!({ "kind": "certificate", "made_ahead_at": start + BACKDATED, "expires": end });
            store::audit::record(&mut transaction, entry).await?;
        }
        transaction.commit().await?;
        Ok(adopted)
    }

    /// Generates the rotation's certificate and stores it, pending, its key sealed.
    async fn prepare_certificate(&mut self, rotation: &RotationRow) -> anyhow::Result<()> {
        // A certificate's dates are fixed once it is made.
        let lifetime = self.certificate_lifetime();
        let name = display_name(rotation.id);
        let (certificate, key_pem) = tokio::task::spawn_blocking({
            let name = name.clone();
            move || generate(&name, lifetime)
        })
        .await??;
        let credential_id = crate::domain::CredentialId::new();
        let sealed = self.context.keyring.seal(
            &key_pem,
            SealContext {
                organization_id: self.organization_id,
                credential_id,
            },
        );
        let thumbprint = certificate.thumbprint_sha1_hex();
        let mut transaction = self.context.pool.begin().await?;
        let prepared = store::rotations::prepared(
            &mut transaction,
            store::rotations::NewCertificate {
                rotation_id: Some(rotation.id),
                credential_id,
                organization_id: self.organization_id,
                display_name: &name,
                der: certificate.der(),
                thumbprint: &thumbprint,
                start_at: certificate.not_before(),
                end_at: certificate.not_after(),
                sealed: &sealed,
            },
        )
        .await?;
        if prepared {
            let mut entry = self.audit(
                rotation.id,
                "credential.prepared",
                Some(credential_id),
                None,
            );
            entry.details = serde_json::json!({ "kind": "certificate", "thumbprint": thumbprint, "expires": certificate.not_after() });
            store::audit::record(&mut transaction, entry).await?;
        }
        transaction.commit().await?;
        Ok(())
    }

    async fn record_certificate_added(
        &mut self,
        rotation: &RotationRow,
        credential_id: crate::domain::CredentialId,
        key_id: uuid::Uuid,
    ) -> anyhow::Result<Next> {
        let mut transaction = self.context.pool.begin().await?;
        if store::rotations::certificate_added(&mut transaction, rotation.id, credential_id, key_id)
            .await?
        {
            let entry = self.audit(
                rotation.id,
                "credential.added",
                Some(credential_id),
                Some(key_id),
            );
            store::audit::record(&mut transaction, entry).await?;
            store::checks::check_soon(&mut transaction, self.organization_id).await?;
        }
        transaction.commit().await?;
        Ok(Next::Again)
    }

    /// Removes the replaced certificate with removeKey, proven by the new one. `Ok(true)`
    /// when it was gone already.
    pub(super) async fn remove_certificate(
        &mut self,
        token: &crate::microsoft::token::AccessToken,
        application: &crate::microsoft::graph::Application,
        new: &Credential,
        old_key_id: uuid::Uuid,
    ) -> Result<bool, Failure> {
        let Credential::Certificate(signer) = new else {
            return Err(Failure {
                reason: FailureReason::Failed,
                message: "a certificate is removed with a proof the new certificate signs; the new credential is a secret".into(),
            });
        };
        match self
            .context
            .microsoft
            .remove_key(&self.endpoints, token, &application.id, old_key_id, signer)
            .await
        {
            Ok(removal) => Ok(removal == crate::microsoft::Removal::AlreadyGone),
            Err(error) => Err(graph_failure(error, token)),
        }
    }
}

/// The lifetime of a certificate made now: `policy`'s, or the tenant's limit (in days)
/// once a refusal taught it (the ladder secrets use).
fn certificate_lifetime(
    policy: &crate::domain::plan::RotationPolicy,
    limit_days: Option<i32>,
) -> chrono::Duration {
    crate::domain::plan::lifetime_ladder(
        policy,
        limit_days.map(|days| chrono::Duration::days(days.into())),
    )
    .first()
    .copied()
    .unwrap_or(policy.lifetime)
}

/// Makes the certificates of rotations due within `horizon` ahead of time, at most `limit`
/// of them, one key pair at a time: a rotation's RSA key pair is most of its CPU, and made
/// in the hours before it is due it no longer holds up the rotation (nor competes with a
/// wave of rotations falling due at once). `include_due`: also for rotations due already
/// (the benchmark's "made in the day before"); the rotations job leaves those to the
/// rotation itself. Returns how many were made.
pub async fn prepare_ahead(
    context: &crate::context::Context,
    candidates: &[store::rotations::Candidate],
    horizon: chrono::Duration,
    limit: usize,
    include_due: bool,
) -> anyhow::Result<usize> {
    let config = &context.settings.rotation;
    let now = chrono::Utc::now();
    let wanted: Vec<&store::rotations::Candidate> = candidates
        .iter()
        .filter(|c| !c.has_spare && c.open_rotation.is_none())
        .filter(|c| {
            c.credential_kind == Some(crate::domain::CredentialKind::Certificate)
                && config.active_for(&c.name, &c.settings.0)
        })
        .filter(|c| {
            c.end_at.is_some_and(|end| {
                let policy = config.policy.for_organization(&c.settings.0);
                let due = crate::domain::plan::due_at(&policy, c.start_at, end);
                due <= now + horizon && (include_due || due > now)
            })
        })
        .take(limit)
        .collect();
    let mut made = 0;
    for candidate in wanted {
        let lifetime = certificate_lifetime(
            &config.policy.for_organization(&candidate.settings.0),
            candidate.secret_lifetime_limit_days,
        );
        let name = format!("kodo-access {}", candidate.name);
        let (certificate, key_pem) =
            tokio::task::spawn_blocking(move || generate(&name, lifetime)).await??;
        let credential_id = crate::domain::CredentialId::new();
        let sealed = context.keyring.seal(
            &key_pem,
            SealContext {
                organization_id: candidate.organization_id,
                credential_id,
            },
        );
        let mut connection = context.pool.acquire().await?;
        if store::rotations::store_spare(
            &mut connection,
            store::rotations::NewCertificate {
                rotation_id: None,
                credential_id,
                organization_id: candidate.organization_id,
                display_name: "kodo-access (made ahead)",
                der: certificate.der(),
                thumbprint: &certificate.thumbprint_sha1_hex(),
                start_at: certificate.not_before(),
                end_at: certificate.not_after(),
                sealed: &sealed,
            },
        )
        .await?
        {
            made += 1;
        }
    }
    Ok(made)
}

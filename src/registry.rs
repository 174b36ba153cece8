//! The organization registry: registering, changing and removing organizations and their
//! secrets, each change in one transaction together with its audit record.
//!
//! Input arrives as [`RawOrganization`] (strings, from flags or an import file) and is
//! parsed into [`NewOrganizationInput`] once. Secrets are sealed here, bound to their row,
//! and never leave this module in the clear.

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, NaiveDate, Utc};
use secrecy::SecretString;
use serde::Deserialize;
use sqlx::{PgConnection, PgPool};

use crate::crypto::{Keyring, SealContext};
use crate::domain::{
    ClientId, ClientSecret, CloudName, InputError, Labels, OrgName, OrgRef, SecretKeyId,
    SharePointHost, TenantId, input_error,
};
use crate::store::{self, audit::AuditEntry, organizations::OrganizationRow};

/// An organization as typed by an operator or read from an import file, not yet validated.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOrganization {
    pub name: String,
    pub tenant_id: String,
    pub client_id: String,
    #[serde(default)]
    pub secret: Option<SecretString>,
    #[serde(default)]
    pub cloud: Option<String>,
    #[serde(default)]
    pub sharepoint_host: Option<String>,
    #[serde(default)]
    pub labels: Option<RawLabels>,
    /// Microsoft's id of the secret ("Secret ID" in the portal), when the operator knows it.
    #[serde(default)]
    pub secret_id: Option<String>,
    /// When the secret expires, when the operator knows it.
    #[serde(default)]
    pub secret_expires: Option<String>,
    /// Instead of a secret: the certificate (PEM or DER) and its private key (PEM), as
    /// paths.
    #[serde(default)]
    pub certificate_file: Option<std::path::PathBuf>,
    #[serde(default)]
    pub private_key_file: Option<std::path::PathBuf>,
    /// Or both in one PKCS#12 file, and the file holding its passphrase (none: an empty
    /// passphrase).
    #[serde(default)]
    pub pkcs12_file: Option<std::path::PathBuf>,
    #[serde(default)]
    pub pkcs12_passphrase_file: Option<std::path::PathBuf>,
}

/// A certificate and its private key read from files and checked to belong together (RSA,
/// 2048 bits or more); the key file is refused if others may read it, like a secret file.
pub fn certificate_pair(
    certificate_file: &std::path::Path,
    private_key_file: &std::path::Path,
) -> Result<CertificateInput, FieldError> {
    let certificate = std::fs::read(certificate_file).map_err(|error| FieldError {
        field: "certificate_file",
        error: input_error(format!(
            "cannot read {}: {error}",
            certificate_file.display()
        )),
    })?;
    let private_key =
        crate::config::read_secret_file(private_key_file).map_err(|message| FieldError {
            field: "private_key_file",
            error: input_error(message),
        })?;
    let parsed = crate::microsoft::ClientCertificate::new(
        &certificate,
        secrecy::ExposeSecret::expose_secret(&private_key).as_bytes(),
    )
    .map_err(|error| FieldError {
        field: "certificate_file",
        error: input_error(error.to_string()),
    })?;
    not_expired(&parsed, "certificate_file")?;
    Ok(CertificateInput {
        certificate: std::sync::Arc::new(parsed),
        private_key,
    })
}

/// An expired certificate is refused at the door: Entra would refuse it at once.
fn not_expired(
    certificate: &crate::microsoft::ClientCertificate,
    field: &'static str,
) -> Result<(), FieldError> {
    if certificate.not_after() <= chrono::Utc::now() {
        return Err(FieldError {
            field,
            error: input_error(format!(
                "the certificate {} expired on {}",
                certificate.thumbprint_sha1_hex(),
                certificate.not_after().format("%Y-%m-%d %H:%M UTC")
            )),
        });
    }
    Ok(())
}

/// The certificate and private key of a PKCS#12 file, opened with the passphrase in
/// `passphrase_file` (an empty passphrase without one) and checked like a PEM pair; the
/// PKCS#12 file and the passphrase file are refused if others may read them.
pub fn pkcs12_certificate(
    file: &std::path::Path,
    passphrase_file: Option<&std::path::Path>,
) -> Result<CertificateInput, FieldError> {
    let data = crate::config::read_secret_bytes(file).map_err(|message| FieldError {
        field: "pkcs12_file",
        error: input_error(message),
    })?;
    let passphrase = match passphrase_file {
        Some(path) => crate::config::read_secret_file(path).map_err(|message| FieldError {
            field: "pkcs12_passphrase_file",
            error: input_error(message),
        })?,
        None => SecretString::from(""),
    };
    let (certificate, private_key) =
        crate::microsoft::pkcs12::read(&data, &passphrase).map_err(|error| FieldError {
            field: "pkcs12_file",
            error: input_error(format!("{}: {error}", file.display())),
        })?;
    not_expired(&certificate, "pkcs12_file")?;
    Ok(CertificateInput {
        certificate: std::sync::Arc::new(certificate),
        private_key,
    })
}

/// Labels as `k=v` pairs (flags, CSV: `k=v;k2=v2`) or as a JSON object.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RawLabels {
    Pairs(String),
    Map(BTreeMap<String, String>),
    List(Vec<String>),
}

/// What a secret is known to be, beside its value.
#[derive(Debug)]
pub struct SecretInput {
    pub secret: ClientSecret,
    pub key_id: Option<SecretKeyId>,
    pub expires: Option<DateTime<Utc>>,
}

/// A certificate and its private key, checked to belong together.
#[derive(Debug)]
pub struct CertificateInput {
    pub certificate: std::sync::Arc<crate::microsoft::ClientCertificate>,
    /// The private key as given (PEM): what is sealed.
    pub private_key: SecretString,
}

/// The credential an organization is registered with.
#[derive(Debug)]
pub enum CredentialInput {
    Secret(SecretInput),
    Certificate(CertificateInput),
}

#[derive(Debug)]
pub struct NewOrganizationInput {
    pub name: OrgName,
    pub tenant_id: TenantId,
    pub client_id: ClientId,
    pub cloud: CloudName,
    pub sharepoint_host: Option<SharePointHost>,
    pub labels: Labels,
    pub credential: CredentialInput,
    /// Its own settings from the start (`rotation.credential_for_new_organizations`).
    pub settings: crate::domain::OrganizationSettings,
}

impl NewOrganizationInput {
    /// With `certificate`, an organization registered with a secret is marked to move to a
    /// certificate (`rotation.credential_for_new_organizations`).
    pub fn with_default_credential(mut self, kind: crate::domain::CredentialKind) -> Self {
        if kind == crate::domain::CredentialKind::Certificate
            && matches!(self.credential, CredentialInput::Secret(_))
        {
            self.settings.credential = Some(kind);
        }
        self
    }
}

/// A validation failure that names the field it concerns.
#[derive(Debug)]
pub struct FieldError {
    pub field: &'static str,
    pub error: InputError,
}

fn field<T>(name: &'static str, result: Result<T, InputError>) -> Result<T, FieldError> {
    result.map_err(|error| FieldError { field: name, error })
}

pub fn parse_expiry(value: &str) -> Result<DateTime<Utc>, InputError> {
    if let Ok(date) = NaiveDate::parse_from_str(value.trim(), "%Y-%m-%d") {
        return Ok(date.and_hms_opt(0, 0, 0).expect("midnight").and_utc());
    }
    DateTime::parse_from_rfc3339(value.trim())
        .map(|time| time.with_timezone(&Utc))
        .map_err(|_| {
            input_error(format!(
                "invalid expiry {value:?}: expected a date (2027-05-31) or an RFC 3339 time (2027-05-31T12:00:00Z)"
            ))
        })
}

impl RawOrganization {
    /// Validates every field; `clouds` are the configured cloud names.
    pub fn parse(mut self, clouds: &[String]) -> Result<NewOrganizationInput, FieldError> {
        let name = field("name", OrgName::parse(self.name.trim()))?;
        let tenant_id = field("tenant_id", TenantId::parse(&self.tenant_id))?;
        let client_id = field("client_id", ClientId::parse(&self.client_id))?;
        let cloud = field(
            "cloud",
            CloudName::parse(
                self.cloud
                    .as_deref()
                    .filter(|c| !c.is_empty())
                    .unwrap_or("global"),
                clouds,
            ),
        )?;
        let sharepoint_host = match self.sharepoint_host.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(host) => Some(field("sharepoint_host", SharePointHost::parse(host))?),
        };
        let labels = field(
            "labels",
            match self.labels.take() {
                None => Ok(Labels::default()),
                Some(RawLabels::Pairs(text)) => Labels::parse_pairs(
                    text.split([';', ','])
                        .map(str::trim)
                        .filter(|pair| !pair.is_empty()),
                ),
                Some(RawLabels::List(pairs)) => {
                    Labels::parse_pairs(pairs.iter().map(String::as_str))
                }
                Some(RawLabels::Map(map)) => Labels::from_map(map),
            },
        )?;
        let credential = self.credential()?;
        Ok(NewOrganizationInput {
            name,
            tenant_id,
            client_id,
            cloud,
            sharepoint_host,
            labels,
            credential,
            settings: Default::default(),
        })
    }

    /// The one credential given: a secret (with what is known of it), a certificate and key
    /// as PEM files, or a PKCS#12 file.
    fn credential(self) -> Result<CredentialInput, FieldError> {
        let refused = |field: &'static str, message: &str| FieldError {
            field,
            error: input_error(message),
        };
        match (
            &self.pkcs12_file,
            &self.certificate_file,
            &self.private_key_file,
            &self.secret,
        ) {
            (Some(pkcs12), None, None, None) => {
                return pkcs12_certificate(pkcs12, self.pkcs12_passphrase_file.as_deref())
                    .map(CredentialInput::Certificate);
            }
            (Some(_), ..) => {
                return Err(refused(
                    "pkcs12_file",
                    "give a secret, a certificate and key, or a PKCS#12 file: one of them",
                ));
            }
            (None, ..) if self.pkcs12_passphrase_file.is_some() => {
                return Err(refused(
                    "pkcs12_passphrase_file",
                    "pkcs12_passphrase_file goes with pkcs12_file",
                ));
            }
            (None, Some(certificate), Some(key), None) => {
                return certificate_pair(certificate, key).map(CredentialInput::Certificate);
            }
            (None, Some(_), Some(_), Some(_)) => {
                return Err(refused(
                    "secret",
                    "give a secret or a certificate, not both",
                ));
            }
            (None, Some(_), None, _) | (None, None, Some(_), _) => {
                return Err(refused(
                    "certificate_file",
                    "certificate_file and private_key_file go together",
                ));
            }
            (None, None, None, _) => {}
        }
        let secret = field(
            "secret",
            self.secret
                .ok_or_else(|| input_error("the client secret is missing"))
                .and_then(ClientSecret::parse),
        )?;
        let key_id = match self.secret_id.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(id) => Some(field("secret_id", SecretKeyId::parse(id))?),
        };
        let expires = match self.secret_expires.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(text) => Some(field("secret_expires", parse_expiry(text))?),
        };
        Ok(CredentialInput::Secret(SecretInput {
            secret,
            key_id,
            expires,
        }))
    }
}

/// Registers and changes organizations. `actor` is recorded in the audit log.
pub struct Registry<'a> {
    pub pool: &'a PgPool,
    pub keyring: &'a Keyring,
    pub actor: String,
}

impl Registry<'_> {
    /// Registers one organization with its secret.
    pub async fn add(
        &self,
        input: NewOrganizationInput,
    ) -> anyhow::Result<crate::domain::OrganizationId> {
        let mut transaction = self.pool.begin().await?;
        let id = self.add_in(&mut transaction, &input, None).await?;
        transaction.commit().await?;
        Ok(id)
    }

    /// Registers many organizations: all of them, or none when any is refused.
    /// `inputs` carry the position to name in errors (e.g. "row 3").
    pub async fn import(
        &self,
        inputs: Vec<(String, NewOrganizationInput)>,
    ) -> anyhow::Result<Vec<crate::domain::OrganizationId>> {
        let mut seen_names = HashSet::new();
        let mut seen_pairs = HashSet::new();
        for (position, input) in &inputs {
            if !seen_names.insert(input.name.as_str().to_lowercase()) {
                return Err(input_error(format!(
                    "{position}, field name: the name {} appears twice in the file (names are compared ignoring case)",
                    input.name
                ))
                .into());
            }
            if !seen_pairs.insert((input.tenant_id, input.client_id)) {
                return Err(input_error(format!(
                    "{position}, field client_id: tenant {} with client {} appears twice in the file",
                    input.tenant_id, input.client_id
                ))
                .into());
            }
        }
        let mut transaction = self.pool.begin().await?;
        let mut ids = Vec::with_capacity(inputs.len());
        for (position, input) in &inputs {
            let id = self.add_in(&mut transaction, input, Some(position)).await?;
            ids.push(id);
        }
        transaction.commit().await?;
        Ok(ids)
    }

    async fn add_in(
        &self,
        connection: &mut PgConnection,
        input: &NewOrganizationInput,
        import_position: Option<&str>,
    ) -> anyhow::Result<crate::domain::OrganizationId> {
        // In an import, errors name the row and the field; for a single add, just the problem.
        let prefix = |field: &str| match import_position {
            Some(position) => format!("{position}, field {field}: "),
            None => String::new(),
        };
        let source = if import_position.is_some() {
            "import"
        } else {
            "add"
        };
        if let Some(existing) =
            store::organizations::find_by_name_ignoring_case(connection, input.name.as_str())
                .await?
        {
            let case = if existing.name == input.name.as_str() {
                ""
            } else {
                " (names may not differ only by case)"
            };
            return Err(input_error(format!(
                "{}an organization named {} already exists{case}",
                prefix("name"),
                existing.name
            ))
            .into());
        }
        if let Some(existing) = store::organizations::find_by_tenant_and_client(
            connection,
            input.tenant_id.as_uuid(),
            input.client_id.as_uuid(),
        )
        .await?
        {
            return Err(input_error(format!(
                "{}tenant {} with client {} is already registered as organization {}",
                prefix("client_id"),
                input.tenant_id,
                input.client_id,
                existing.name
            ))
            .into());
        }
        let id = crate::domain::OrganizationId::new();
        let inserted = store::organizations::insert(
            connection,
            store::organizations::NewOrganization {
                id,
                name: input.name.as_str(),
                tenant_id: input.tenant_id.as_uuid(),
                client_id: input.client_id.as_uuid(),
                cloud: input.cloud.as_str(),
                sharepoint_host: input.sharepoint_host.as_ref().map(SharePointHost::as_str),
                labels: input.labels.as_map(),
                settings: &input.settings,
            },
        )
        .await;
        if let Err(error) = inserted {
            // Another writer won the race between the checks above and the insert.
            return Err(match store::unique_violation(&error).as_deref() {
                Some("organizations_name_key" | "organizations_name_ci") => input_error(format!(
                    "{}an organization named {} already exists",
                    prefix("name"),
                    input.name
                ))
                .into(),
                Some("organizations_tenant_client_key") => input_error(format!(
                    "{}tenant {} with client {} is already registered",
                    prefix("client_id"),
                    input.tenant_id,
                    input.client_id
                ))
                .into(),
                _ => error.into(),
            });
        }
        store::audit::record(
            connection,
            AuditEntry {
                actor: &self.actor,
                action: "organization.added",
                organization_id: Some(id),
                organization_name: Some(input.name.as_str()),
                details: serde_json::json!({
                    "source": source,
                    "tenant_id": input.tenant_id.to_string(),
                    "client_id": input.client_id.to_string(),
                    "cloud": input.cloud.as_str(),
                    "sharepoint_host": input.sharepoint_host.as_ref().map(SharePointHost::as_str),
                    "labels": input.labels.as_map(),
                }),
                ..Default::default()
            },
        )
        .await?;
        self.store_credential(connection, id, input.name.as_str(), &input.credential)
            .await?;
        Ok(id)
    }

    /// Seals and stores `secret` as the organization's current credential, retiring the
    /// one it replaces (which stays on record as `previous`).
    async fn store_credential(
        &self,
        connection: &mut PgConnection,
        organization_id: crate::domain::OrganizationId,
        organization_name: &str,
        credential: &CredentialInput,
    ) -> anyhow::Result<crate::domain::CredentialId> {
        let retired = store::credentials::retire_current(connection, organization_id).await?;
        if let Some(retired) = &retired {
            store::audit::record(
                connection,
                AuditEntry {
                    actor: &self.actor,
                    action: "credential.retired",
                    organization_id: Some(organization_id),
                    organization_name: Some(organization_name),
                    credential_id: Some(retired.id),
                    key_id: retired.key_id,
                    details: serde_json::json!({ "hint": retired.hint, "reason": "replaced by the operator" }),
                    ..Default::default()
                },
            )
            .await?;
        }
        let credential_id = crate::domain::CredentialId::new();
        let seal = |plaintext: &SecretString| {
            self.keyring.seal(
                plaintext,
                SealContext {
                    organization_id,
                    credential_id,
                },
            )
        };
        let (sealed, hint, key_id, expires, thumbprint) = match credential {
            CredentialInput::Secret(secret) => (
                seal(secret.secret.secret()),
                Some(secret.secret.hint()),
                secret.key_id.map(|key_id| key_id.as_uuid()),
                secret.expires,
                None,
            ),
            CredentialInput::Certificate(input) => (
                seal(&input.private_key),
                None,
                None,
                Some(input.certificate.not_after()),
                Some(input.certificate.thumbprint_sha1_hex()),
            ),
        };
        let certificate = match credential {
            CredentialInput::Certificate(input) => Some(input),
            CredentialInput::Secret(_) => None,
        };
        let inserted =
            store::credentials::insert(
                connection,
                store::credentials::NewCredential {
                    id: credential_id,
                    organization_id,
                    key_id,
                    hint: hint.as_deref(),
                    end_at: expires,
                    origin: crate::domain::CredentialOrigin::Operator,
                    status: crate::domain::CredentialStatus::Current,
                    sealed: &sealed,
                    certificate: certificate.zip(thumbprint.as_deref()).map(
                        |(input, thumbprint)| store::credentials::CertificateColumns {
                            der: input.certificate.der(),
                            thumbprint,
                            start_at: input.certificate.not_before(),
                        },
                    ),
                },
            )
            .await;
        if let Err(error) = inserted {
            return Err(match store::unique_violation(&error).as_deref() {
                Some("credentials_key_id") => input_error(format!(
                    "organization {organization_name} already has a secret with id {}",
                    key_id.map(|key_id| key_id.to_string()).unwrap_or_default()
                ))
                .into(),
                _ => error.into(),
            });
        }
        store::audit::record(
            connection,
            AuditEntry {
                actor: &self.actor,
                action: "credential.added",
                organization_id: Some(organization_id),
                organization_name: Some(organization_name),
                credential_id: Some(credential_id),
                key_id,
                details: serde_json::json!({
                    "kind": if thumbprint.is_some() { "certificate" } else { "secret" },
                    "hint": hint,
                    "thumbprint": thumbprint,
                    "expires": expires,
                    "origin": "operator",
                    "replaces": retired.as_ref().map(|row| row.id),
                }),
                ..Default::default()
            },
        )
        .await?;
        Ok(credential_id)
    }

    /// Replaces the organization's current secret with one the operator provides.
    pub async fn set_secret(
        &self,
        reference: &OrgRef,
        credential: CredentialInput,
    ) -> anyhow::Result<crate::domain::CredentialId> {
        let mut transaction = self.pool.begin().await?;
        let organization = locked(&mut transaction, reference).await?;
        let credential_id = self
            .store_credential(
                &mut transaction,
                organization.id,
                &organization.name,
                &credential,
            )
            .await?;
        transaction.commit().await?;
        Ok(credential_id)
    }

    /// Pauses (false) or resumes (true) monitoring of an organization. Returns whether
    /// anything changed.
    pub async fn set_enabled(&self, reference: &OrgRef, enabled: bool) -> anyhow::Result<bool> {
        let mut transaction = self.pool.begin().await?;
        let organization = locked(&mut transaction, reference).await?;
        if organization.enabled == enabled {
            return Ok(false);
        }
        store::organizations::set_enabled(&mut transaction, organization.id, enabled).await?;
        store::audit::record(
            &mut transaction,
            AuditEntry {
                actor: &self.actor,
                action: if enabled {
                    "organization.enabled"
                } else {
                    "organization.disabled"
                },
                organization_id: Some(organization.id),
                organization_name: Some(&organization.name),
                ..Default::default()
            },
        )
        .await?;
        transaction.commit().await?;
        Ok(true)
    }

    /// Removes an organization and every sealed secret of it; the audit log keeps its history.
    /// Safe to repeat: an organization removed earlier (by a removal that may have been cut
    /// short before it took back what was delivered) is `Removal::Earlier`.
    pub async fn remove(&self, reference: &OrgRef) -> anyhow::Result<Removal> {
        let mut transaction = self.pool.begin().await?;
        let Some(organization) =
            store::organizations::find_for_update(&mut transaction, reference).await?
        else {
            return match store::audit::removed_organization_name(&mut transaction, reference)
                .await?
            {
                Some(name) => Ok(Removal::Earlier { name }),
                None => Err(input_error(format!("no organization {reference}")).into()),
            };
        };
        store::organizations::delete(&mut transaction, organization.id).await?;
        store::audit::record(
            &mut transaction,
            AuditEntry {
                actor: &self.actor,
                action: "organization.removed",
                organization_id: Some(organization.id),
                organization_name: Some(&organization.name),
                details: serde_json::json!({
                    "tenant_id": organization.tenant_id,
                    "client_id": organization.client_id,
                }),
                ..Default::default()
            },
        )
        .await?;
        transaction.commit().await?;
        Ok(Removal::Now(organization))
    }

    /// Changes the organization's own settings (`patch`: resources checked, rotation on or
    /// off, its lead time; `Some(None)` goes back to the configuration's) and its
    /// SharePoint host, with one audit record of what changed.
    pub async fn configure(
        &self,
        reference: &OrgRef,
        patch: crate::domain::SettingsPatch,
        sharepoint_host: Option<SharePointHost>,
    ) -> anyhow::Result<()> {
        let mut transaction = self.pool.begin().await?;
        let organization = locked(&mut transaction, reference).await?;
        let mut details = serde_json::Map::new();
        if !patch.is_empty() {
            let mut settings =
                store::organizations::settings(&mut transaction, organization.id).await?;
            details.extend(patch.apply(&mut settings));
            store::organizations::set_settings(&mut transaction, organization.id, &settings)
                .await?;
        }
        if let Some(host) = &sharepoint_host {
            store::organizations::set_sharepoint_host(
                &mut transaction,
                organization.id,
                host.as_str(),
            )
            .await?;
            details.insert("sharepoint_host".into(), serde_json::json!(host.as_str()));
        }
        store::audit::record(
            &mut transaction,
            AuditEntry {
                actor: &self.actor,
                action: "organization.configured",
                organization_id: Some(organization.id),
                organization_name: Some(&organization.name),
                details: serde_json::Value::Object(details),
                ..Default::default()
            },
        )
        .await?;
        transaction.commit().await?;
        Ok(())
    }

    /// Silences alert deliveries until `until` (`None`: ends the silence).
    pub async fn silence(
        &self,
        reference: &OrgRef,
        until: Option<DateTime<Utc>>,
        reason: Option<&str>,
    ) -> anyhow::Result<()> {
        let mut transaction = self.pool.begin().await?;
        let organization = locked(&mut transaction, reference).await?;
        store::checks::silence(&mut transaction, organization.id, until, reason).await?;
        store::audit::record(
            &mut transaction,
            AuditEntry {
                actor: &self.actor,
                action: if until.is_some() {
                    "organization.silenced"
                } else {
                    "organization.unsilenced"
                },
                organization_id: Some(organization.id),
                organization_name: Some(&organization.name),
                details: serde_json::json!({ "until": until, "reason": reason }),
                ..Default::default()
            },
        )
        .await?;
        transaction.commit().await?;
        Ok(())
    }

    /// Re-seals every secret not sealed under the current master key, in one transaction.
    /// Returns how many were re-sealed.
    pub async fn reseal_all(&self) -> anyhow::Result<usize> {
        let mut transaction = self.pool.begin().await?;
        let current = self.keyring.current_id().to_string();
        let rows =
            store::credentials::sealed_not_under_key_for_update(&mut transaction, &current).await?;
        let mut from_keys: BTreeMap<String, usize> = BTreeMap::new();
        for row in &rows {
            let context = SealContext {
                organization_id: row.organization_id,
                credential_id: row.id,
            };
            let sealed = crate::crypto::Sealed {
                key_id: row.secret_key_id.clone(),
                blob: row.secret_sealed.clone(),
            };
            let secret = self
                .keyring
                .open(&sealed, context)
                .map_err(|error| anyhow::anyhow!("the secret of credential {} {error}", row.id))?;
            let resealed = self.keyring.seal(&secret, context);
            store::credentials::replace_sealed(&mut transaction, row.id, &resealed).await?;
            *from_keys.entry(row.secret_key_id.clone()).or_default() += 1;
        }
        store::audit::record(
            &mut transaction,
            AuditEntry {
                actor: &self.actor,
                action: "master_key.rotated",
                details: serde_json::json!({ "to_key": current, "resealed_from": from_keys }),
                ..Default::default()
            },
        )
        .await?;
        transaction.commit().await?;
        Ok(rows.len())
    }
}

/// Opens every stored secret with the configured keys. Returns how many opened; fails
/// naming the first credential that does not.
pub async fn verify_all_secrets(pool: &PgPool, keyring: &Keyring) -> anyhow::Result<usize> {
    let mut connection = pool.acquire().await?;
    let rows = store::credentials::all_sealed(&mut connection).await?;
    for row in &rows {
        let sealed = crate::crypto::Sealed {
            key_id: row.secret_key_id.clone(),
            blob: row.secret_sealed.clone(),
        };
        keyring
            .open(
                &sealed,
                SealContext {
                    organization_id: row.organization_id,
                    credential_id: row.id,
                },
            )
            .map_err(|error| anyhow::anyhow!("the secret of credential {} {error}", row.id))?;
    }
    Ok(rows.len())
}

async fn locked(
    connection: &mut PgConnection,
    reference: &OrgRef,
) -> anyhow::Result<OrganizationRow> {
    store::organizations::find_for_update(connection, reference)
        .await?
        .ok_or_else(|| input_error(format!("no organization {reference}")).into())
}

/// What `Registry::remove` did.
pub enum Removal {
    /// Removed now.
    Now(OrganizationRow),
    /// Already removed, by an earlier removal (named as it was).
    Earlier { name: String },
}

/// Who is making a change from the command line, for the audit log.
pub fn cli_actor() -> String {
    use std::os::unix::fs::MetadataExt;
    let user = std::env::var("SUDO_USER")
        .or_else(|_| std::env::var("USER"))
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| match std::fs::metadata("/proc/self") {
            Ok(metadata) => format!("uid={}", metadata.uid()),
            Err(_) => "unknown".into(),
        });
    format!("cli:{user}")
}

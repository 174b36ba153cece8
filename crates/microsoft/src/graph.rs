//! The Microsoft Graph calls kodo-access makes, typed. Applications are addressed by
//! `appId` (`applications(appId='…')`), never by guessing object ids (reference §4).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use secrecy::SecretString;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use url::Url;
use uuid::Uuid;

use super::MicrosoftClient;
use super::cloud::{Endpoints, Resource};
use super::errors::{GraphError, GraphFailure, classify_graph_error, retry_after};
use super::token::AccessToken;
use crate::ids::TenantId;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PasswordCredential {
    pub key_id: Uuid,
    pub display_name: Option<String>,
    pub hint: Option<String>,
    pub start_date_time: Option<DateTime<Utc>>,
    pub end_date_time: Option<DateTime<Utc>>,
}

/// A certificate (or other key) on the application, as Graph lists it (`key` is left out:
/// Graph returns it only on request).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyCredential {
    pub key_id: Uuid,
    pub display_name: Option<String>,
    /// For a certificate, its SHA-1 thumbprint (binary: base64 in JSON).
    pub custom_key_identifier: Option<String>,
    #[serde(rename = "type")]
    pub key_type: Option<String>,
    pub usage: Option<String>,
    pub start_date_time: Option<DateTime<Utc>>,
    pub end_date_time: Option<DateTime<Utc>>,
}

impl KeyCredential {
    /// The SHA-1 thumbprint in upper-case hex, when `customKeyIdentifier` holds one.
    pub fn thumbprint(&self) -> Option<String> {
        use base64::Engine as _;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(self.custom_key_identifier.as_deref()?)
            .ok()?;
        (bytes.len() == 20).then(|| crate::certificate::hex_upper(&bytes))
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Application {
    pub id: String,
    pub app_id: String,
    pub display_name: Option<String>,
    #[serde(default)]
    pub password_credentials: Vec<PasswordCredential>,
    #[serde(default)]
    pub key_credentials: Vec<KeyCredential>,
    /// Trust in another identity provider's tokens (workload identity federation):
    /// another way in that needs no secret or certificate at all.
    #[serde(default)]
    pub federated_identity_credentials: Vec<FederatedIdentityCredential>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FederatedIdentityCredential {
    pub id: Uuid,
    pub name: Option<String>,
    pub issuer: Option<String>,
    pub subject: Option<String>,
}

/// A service principal's own credentials: Entra accepts them for the app's sign-in in the
/// tenant just like the application's, and kodo-access never puts any there.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServicePrincipalCredentials {
    pub id: String,
    #[serde(default)]
    pub password_credentials: Vec<PasswordCredential>,
    #[serde(default)]
    pub key_credentials: Vec<KeyCredential>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AppRole {
    pub id: Uuid,
    pub value: Option<String>,
    #[serde(default)]
    pub is_enabled: Option<bool>,
    #[serde(default)]
    pub allowed_member_types: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServicePrincipal {
    pub id: String,
    pub app_id: String,
    pub display_name: Option<String>,
    pub account_enabled: Option<bool>,
    #[serde(default)]
    pub app_roles: Vec<AppRole>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AppRoleAssignment {
    pub id: String,
    pub app_role_id: Uuid,
    pub principal_id: Option<String>,
    pub resource_id: String,
    pub resource_display_name: Option<String>,
}

/// A secret created by `addPassword`: the only time Microsoft reveals its text.
pub struct NewPassword {
    pub key_id: Uuid,
    pub hint: Option<String>,
    pub display_name: Option<String>,
    pub start_date_time: Option<DateTime<Utc>>,
    pub end_date_time: Option<DateTime<Utc>>,
    pub secret_text: SecretString,
}

impl std::fmt::Debug for NewPassword {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewPassword")
            .field("key_id", &self.key_id)
            .field("hint", &self.hint)
            .field("end_date_time", &self.end_date_time)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct NewPasswordBody {
    key_id: Uuid,
    hint: Option<String>,
    display_name: Option<String>,
    start_date_time: Option<DateTime<Utc>>,
    end_date_time: Option<DateTime<Utc>>,
    secret_text: SecretString,
}

#[derive(Deserialize)]
struct Page<T> {
    value: Vec<T>,
    #[serde(rename = "@odata.nextLink")]
    next_link: Option<String>,
}

/// How a removal ended: both mean the key is no longer on the application.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removal {
    Removed,
    /// Not there any more (an earlier request whose answer was lost, or someone else).
    AlreadyGone,
}

/// What SharePoint REST said to an app-only token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SharePointProbe {
    Accepted,
    /// 401 to a token obtained with a client secret: SharePoint wants a certificate.
    CertificateRequired {
        status: u16,
        detail: String,
    },
    Refused {
        status: u16,
        detail: String,
    },
}

/// Resource service principals' `appRoles`, per tenant and resource, so that a check
/// does not fetch 300 Graph roles every time.
#[derive(Default)]
pub struct AppRoleCache {
    entries: Mutex<HashMap<CacheKey, CacheEntry>>,
}

type CacheKey = (TenantId, Resource);
/// When the roles were fetched, and the roles.
type CacheEntry = (Instant, Arc<Vec<AppRole>>);

const APP_ROLE_CACHE_TTL: Duration = Duration::from_secs(24 * 3600);

impl AppRoleCache {
    fn get(&self, key: &(TenantId, Resource)) -> Option<Arc<Vec<AppRole>>> {
        let entries = self.entries.lock().expect("cache lock");
        entries
            .get(key)
            .filter(|(stored, _)| stored.elapsed() < APP_ROLE_CACHE_TTL)
            .map(|(_, roles)| roles.clone())
    }

    fn put(&self, key: (TenantId, Resource), roles: Arc<Vec<AppRole>>) {
        self.entries
            .lock()
            .expect("cache lock")
            .insert(key, (Instant::now(), roles));
    }
}

fn app_id_key(app_id: &str) -> String {
    // appIds are GUIDs; quote them as OData string literals.
    format!("(appId='{}')", app_id.replace('\'', "''"))
}

/// Whether a request may be sent again after an answer that does not prove it did nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Repeat {
    /// Reads, and writes whose repetition changes nothing (removePassword).
    Safe,
    /// addPassword: a second request after a lost answer creates a second secret, so only
    /// answers that prove nothing happened (429, 503) are retried.
    OnlyIfRefused,
}

/// A non-idempotent request's error, retried only when Microsoft provably did nothing.
struct Refused(GraphError);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl super::retry::Retryable for Refused {
    fn retry_hint(&self) -> super::retry::RetryHint {
        if self.0.may_have_acted() {
            super::retry::RetryHint::Never
        } else {
            super::retry::Retryable::retry_hint(&self.0)
        }
    }
}

impl MicrosoftClient {
    async fn graph_send<T: DeserializeOwned>(
        &self,
        operation: &'static str,
        repeat: Repeat,
        request: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<Option<T>, GraphError> {
        match repeat {
            Repeat::Safe => {
                self.retry
                    .run(|| self.graph_once(operation, &request))
                    .await
            }
            Repeat::OnlyIfRefused => self
                .retry
                .run(|| async { self.graph_once(operation, &request).await.map_err(Refused) })
                .await
                .map_err(|Refused(error)| error),
        }
    }

    async fn graph_once<T: DeserializeOwned>(
        &self,
        operation: &'static str,
        request: &impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<Option<T>, GraphError> {
        let response = self.send(request()).await.map_err(|error| {
            crate::count_request("graph", "transport");
            GraphError::transport(operation, &error)
        })?;
        let status = response.status().as_u16();
        let wait = retry_after(response.headers());
        let body = super::read_body(response, super::MAX_BODY_BYTES)
            .await
            .map_err(|error| {
                crate::count_request("graph", "transport");
                // The answer began: Microsoft may well have acted.
                let mut lost = match error {
                    super::BodyError::Transport(error) => GraphError::transport(operation, &error),
                    super::BodyError::TooLarge => {
                        GraphError::unexpected(operation, error.to_string())
                    }
                };
                lost.http_status = Some(status);
                lost
            })?;
        if !(200..300).contains(&status) {
            let error = classify_graph_error(operation, status, &body, wait);
            crate::count_request("graph", error.kind.as_str());
            return Err(error);
        }
        crate::count_request("graph", "ok");
        if status == 204 || body.trim().is_empty() {
            return Ok(None);
        }
        serde_json::from_str(&body).map(Some).map_err(|error| {
            GraphError::unexpected(operation, format!("unexpected answer shape: {error}"))
        })
    }

    async fn graph_get<T: DeserializeOwned>(
        &self,
        operation: &'static str,
        token: &AccessToken,
        url: Url,
    ) -> Result<T, GraphError> {
        self.graph_send(operation, Repeat::Safe, || {
            self.http.get(url.clone()).bearer_auth(token.bearer())
        })
        .await?
        .ok_or_else(|| GraphError::unexpected(operation, "empty answer".into()))
    }

    /// The application object with its password credentials.
    pub async fn get_application(
        &self,
        endpoints: &Endpoints,
        token: &AccessToken,
    ) -> Result<Application, GraphError> {
        let url = endpoints.graph_url(&format!(
            "applications{}?$select=id,appId,displayName,passwordCredentials,keyCredentials&$expand=federatedIdentityCredentials",
            app_id_key(&endpoints.client_id.to_string())
        ));
        self.graph_get("get application", token, url).await
    }

    /// The app's service principal's own credentials, by its object id (the token's `oid`).
    pub async fn get_service_principal_credentials(
        &self,
        endpoints: &Endpoints,
        token: &AccessToken,
        service_principal_id: &str,
    ) -> Result<ServicePrincipalCredentials, GraphError> {
        let url = endpoints.graph_url(&format!(
            "servicePrincipals/{service_principal_id}?$select=id,passwordCredentials,keyCredentials"
        ));
        self.graph_get("get service principal credentials", token, url)
            .await
    }

    /// A service principal in the tenant by its appId (the app's own, or a resource's).
    pub async fn get_service_principal(
        &self,
        endpoints: &Endpoints,
        token: &AccessToken,
        app_id: &str,
    ) -> Result<ServicePrincipal, GraphError> {
        let url = endpoints.graph_url(&format!(
            "servicePrincipals{}?$select=id,appId,displayName,accountEnabled,appRoles",
            app_id_key(app_id)
        ));
        self.graph_get("get service principal", token, url).await
    }

    /// Every app-role assignment granted to the service principal, all pages.
    pub async fn list_app_role_assignments(
        &self,
        endpoints: &Endpoints,
        token: &AccessToken,
        service_principal_id: &str,
    ) -> Result<Vec<AppRoleAssignment>, GraphError> {
        self.list_app_role_assignments_paged(endpoints, token, service_principal_id, 100)
            .await
    }

    /// As [`MicrosoftClient::list_app_role_assignments`], asking for `page_size` per page.
    pub async fn list_app_role_assignments_paged(
        &self,
        endpoints: &Endpoints,
        token: &AccessToken,
        service_principal_id: &str,
        page_size: u32,
    ) -> Result<Vec<AppRoleAssignment>, GraphError> {
        const OPERATION: &str = "list appRoleAssignments";
        let mut url = endpoints.graph_url(&format!(
            "servicePrincipals/{service_principal_id}/appRoleAssignments?$top={page_size}"
        ));
        let mut assignments = Vec::new();
        for _ in 0..100 {
            let page: Page<AppRoleAssignment> =
                self.graph_get(OPERATION, token, url.clone()).await?;
            assignments.extend(page.value);
            let Some(next) = page.next_link else {
                return Ok(assignments);
            };
            // Follow a link only to the Graph host we were configured with: the bearer
            // token must never be sent anywhere else.
            let next = Url::parse(&next)
                .ok()
                .filter(|next| next.origin() == endpoints.graph_base().origin())
                .ok_or_else(|| {
                    GraphError::unexpected(OPERATION, "@odata.nextLink points outside Graph".into())
                })?;
            url = next;
        }
        Err(GraphError::unexpected(
            OPERATION,
            "more than 100 pages of assignments".into(),
        ))
    }

    /// The app roles a resource defines in this tenant (cached per tenant and resource).
    pub async fn resource_app_roles(
        &self,
        endpoints: &Endpoints,
        token: &AccessToken,
        resource: Resource,
    ) -> Result<Arc<Vec<AppRole>>, GraphError> {
        let key = (endpoints.tenant_id, resource);
        if let Some(roles) = self.app_roles.get(&key) {
            return Ok(roles);
        }
        let principal = self
            .get_service_principal(endpoints, token, resource.app_id())
            .await?;
        let roles = Arc::new(principal.app_roles);
        self.app_roles.put(key, roles.clone());
        Ok(roles)
    }

    /// A cheap real Graph call that needs a backup permission (`User.Read.All`).
    pub async fn probe_graph(
        &self,
        endpoints: &Endpoints,
        token: &AccessToken,
    ) -> Result<(), GraphError> {
        let url = endpoints.graph_url("users?$top=1&$select=id");
        let _: serde_json::Value = self.graph_get("list users", token, url).await?;
        Ok(())
    }

    /// Adds a client secret to the organization's own application.
    pub async fn add_password(
        &self,
        endpoints: &Endpoints,
        token: &AccessToken,
        display_name: &str,
        end: DateTime<Utc>,
    ) -> Result<NewPassword, GraphError> {
        const OPERATION: &str = "addPassword";
        let url = endpoints.graph_url(&format!(
            "applications{}/addPassword",
            app_id_key(&endpoints.client_id.to_string())
        ));
        let body = serde_json::json!({
            "passwordCredential": { "displayName": display_name, "endDateTime": end.to_rfc3339_opts(chrono::SecondsFormat::Secs, true) }
        });
        // addPassword is not idempotent: a retry after a lost answer creates a second
        // secret. Only answers that prove nothing was created (429, 503) are retried; on
        // any other failure the caller reads the application and looks for the secret by
        // its display name (`GraphError::may_have_acted`).
        let created: NewPasswordBody = self
            .graph_send(OPERATION, Repeat::OnlyIfRefused, || {
                self.http
                    .post(url.clone())
                    .bearer_auth(token.bearer())
                    .json(&body)
            })
            .await?
            .ok_or_else(|| GraphError::unexpected(OPERATION, "empty answer".into()))?;
        Ok(NewPassword {
            key_id: created.key_id,
            hint: created.hint,
            display_name: created.display_name,
            start_date_time: created.start_date_time,
            end_date_time: created.end_date_time,
            secret_text: created.secret_text,
        })
    }

    /// Adds a certificate to the organization's own application with addKey, proving
    /// possession of `signer`, a certificate already valid on it (no permission needed
    /// to roll its own keys). Not idempotent, like addPassword: only answers that prove
    /// nothing was done are retried; after any other failure the caller looks for the
    /// certificate by thumbprint.
    pub async fn add_key(
        &self,
        endpoints: &Endpoints,
        token: &AccessToken,
        application_object_id: &str,
        certificate: &crate::certificate::ClientCertificate,
        display_name: &str,
        signer: &crate::certificate::ClientCertificate,
    ) -> Result<KeyCredential, GraphError> {
        use base64::Engine as _;
        const OPERATION: &str = "addKey";
        let proof = signer
            .proof(application_object_id)
            .map_err(|error| GraphError::unexpected(OPERATION, error.to_string()))?;
        let url = endpoints.graph_url(&format!(
            "applications{}/addKey",
            app_id_key(&endpoints.client_id.to_string())
        ));
        let body = serde_json::json!({
            "keyCredential": {
                "type": "AsymmetricX509Cert",
                "usage": "Verify",
                "key": base64::engine::general_purpose::STANDARD.encode(certificate.der()),
                "displayName": display_name,
            },
            "passwordCredential": null,
            "proof": secrecy::ExposeSecret::expose_secret(&proof),
        });
        self.graph_send(OPERATION, Repeat::OnlyIfRefused, || {
            self.http
                .post(url.clone())
                .bearer_auth(token.bearer())
                .json(&body)
        })
        .await?
        .ok_or_else(|| GraphError::unexpected(OPERATION, "empty answer".into()))
    }

    /// Removes a certificate from the organization's own application with removeKey,
    /// proving possession of `signer` (another valid certificate of the app). Safe to
    /// repeat, like `remove_password`.
    pub async fn remove_key(
        &self,
        endpoints: &Endpoints,
        token: &AccessToken,
        application_object_id: &str,
        key_id: Uuid,
        signer: &crate::certificate::ClientCertificate,
    ) -> Result<Removal, GraphError> {
        let proof = signer
            .proof(application_object_id)
            .map_err(|error| GraphError::unexpected("removeKey", error.to_string()))?;
        let url = endpoints.graph_url(&format!(
            "applications{}/removeKey",
            app_id_key(&endpoints.client_id.to_string())
        ));
        let body = serde_json::json!({
            "keyId": key_id,
            "proof": secrecy::ExposeSecret::expose_secret(&proof),
        });
        self.remove_credential(endpoints, token, "removeKey", url, &body, |application| {
            application
                .key_credentials
                .iter()
                .any(|credential| credential.key_id == key_id)
        })
        .await
    }

    /// removePassword or removeKey: safe to repeat, since a 400 or 404 after which a read
    /// of the application no longer shows the credential (`still_there` false; e.g. the
    /// answer to an earlier request was lost) is success, `Removal::AlreadyGone`; and an
    /// answer lost after Microsoft may have acted is success when the read no longer shows
    /// it. Graph's wording is not a contract: the application's list is.
    async fn remove_credential(
        &self,
        endpoints: &Endpoints,
        token: &AccessToken,
        operation: &'static str,
        url: Url,
        body: &serde_json::Value,
        still_there: impl Fn(&Application) -> bool,
    ) -> Result<Removal, GraphError> {
        let removed: Result<Option<serde_json::Value>, GraphError> = self
            .graph_send(operation, Repeat::Safe, || {
                self.http
                    .post(url.clone())
                    .bearer_auth(token.bearer())
                    .json(body)
            })
            .await;
        match removed {
            Ok(_) => Ok(Removal::Removed),
            Err(error)
                if matches!(
                    error.kind,
                    GraphFailure::BadRequest | GraphFailure::NotFound
                ) =>
            {
                let application = self.get_application(endpoints, token).await?;
                if still_there(&application) {
                    Err(error)
                } else {
                    Ok(Removal::AlreadyGone)
                }
            }
            // An answer lost after Microsoft may have acted (cut, or past the timeout once
            // the retries' time is spent): the application's list says whether it did.
            Err(error) if error.may_have_acted() => {
                match self.get_application(endpoints, token).await {
                    Ok(application) if !still_there(&application) => Ok(Removal::Removed),
                    _ => Err(error),
                }
            }
            Err(error) => Err(error),
        }
    }

    /// The application's key credentials with their `key` (the certificate, DER), which
    /// Graph returns only when a single application is read with `$select=keyCredentials`.
    pub async fn key_credentials_with_keys(
        &self,
        endpoints: &Endpoints,
        token: &AccessToken,
    ) -> Result<Vec<(KeyCredential, Vec<u8>)>, GraphError> {
        use base64::Engine as _;
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct WithKey {
            #[serde(flatten)]
            credential: KeyCredential,
            key: Option<String>,
        }
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Keys {
            #[serde(default)]
            key_credentials: Vec<WithKey>,
        }
        let url = endpoints.graph_url(&format!(
            "applications{}?$select=keyCredentials",
            app_id_key(&endpoints.client_id.to_string())
        ));
        let keys: Keys = self.graph_get("get key credentials", token, url).await?;
        let mut read = Vec::with_capacity(keys.key_credentials.len());
        for entry in keys.key_credentials {
            let Some(der) = entry
                .key
                .as_deref()
                .and_then(|key| base64::engine::general_purpose::STANDARD.decode(key).ok())
            else {
                return Err(GraphError::unexpected(
                    "get key credentials",
                    "a key credential without its key".into(),
                ));
            };
            read.push((entry.credential, der));
        }
        Ok(read)
    }

    /// Adds a certificate by writing the application's whole `keyCredentials` list (the
    /// ones there, read with their keys, plus the new one): the way to add the first
    /// certificate, which addKey cannot; needs the rights addPassword needs. Idempotent:
    /// a certificate already on the app is not added twice.
    pub async fn add_key_by_update(
        &self,
        endpoints: &Endpoints,
        token: &AccessToken,
        certificate: &crate::certificate::ClientCertificate,
        display_name: &str,
    ) -> Result<(), GraphError> {
        use base64::Engine as _;
        let existing = self.key_credentials_with_keys(endpoints, token).await?;
        let thumbprint = certificate.thumbprint_sha1_hex();
        if existing
            .iter()
            .any(|(credential, _)| credential.thumbprint().as_deref() == Some(thumbprint.as_str()))
        {
            return Ok(());
        }
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut list: Vec<serde_json::Value> = existing
            .iter()
            .map(|(credential, der)| {
                serde_json::json!({
                    "keyId": credential.key_id,
                    "type": credential.key_type.as_deref().unwrap_or("AsymmetricX509Cert"),
                    "usage": credential.usage.as_deref().unwrap_or("Verify"),
                    "key": b64.encode(der),
                    "displayName": credential.display_name,
                })
            })
            .collect();
        list.push(serde_json::json!({
            "type": "AsymmetricX509Cert",
            "usage": "Verify",
            "key": b64.encode(certificate.der()),
            "displayName": display_name,
        }));
        let url = endpoints.graph_url(&format!(
            "applications{}",
            app_id_key(&endpoints.client_id.to_string())
        ));
        let body = serde_json::json!({ "keyCredentials": list });
        let _: Option<serde_json::Value> = self
            .graph_send("update keyCredentials", Repeat::Safe, || {
                self.http
                    .patch(url.clone())
                    .bearer_auth(token.bearer())
                    .json(&body)
            })
            .await?;
        Ok(())
    }

    /// Removes one client secret from the organization's own application by its keyId.
    /// Safe to repeat: a key that is already gone (a 400 or 404, after which a read of the
    /// application no longer shows it; e.g. the answer to an earlier request was lost) is
    /// success, `Removal::AlreadyGone`.
    pub async fn remove_password(
        &self,
        endpoints: &Endpoints,
        token: &AccessToken,
        key_id: Uuid,
    ) -> Result<Removal, GraphError> {
        let url = endpoints.graph_url(&format!(
            "applications{}/removePassword",
            app_id_key(&endpoints.client_id.to_string())
        ));
        let body = serde_json::json!({ "keyId": key_id });
        self.remove_credential(
            endpoints,
            token,
            "removePassword",
            url,
            &body,
            |application| {
                application
                    .password_credentials
                    .iter()
                    .any(|credential| credential.key_id == key_id)
            },
        )
        .await
    }

    /// Calls SharePoint REST with a SharePoint token, to learn whether SharePoint
    /// accepts it (it refuses tokens obtained with a client secret).
    pub async fn probe_sharepoint(
        &self,
        endpoints: &Endpoints,
        token: &AccessToken,
    ) -> Result<SharePointProbe, GraphError> {
        const OPERATION: &str = "SharePoint REST probe";
        let url = endpoints.sharepoint_probe_url().ok_or_else(|| {
            GraphError::unexpected(OPERATION, "the organization has no SharePoint host".into())
        })?;
        let response = self
            .send(
                self.http
                    .get(url)
                    .bearer_auth(token.bearer())
                    .header(reqwest::header::ACCEPT, "application/json;odata=nometadata"),
            )
            .await
            .map_err(|error| GraphError::transport(OPERATION, &error))?;
        let status = response.status().as_u16();
        crate::count_request(
            "sharepoint",
            if (200..300).contains(&status) {
                "ok"
            } else {
                "refused"
            },
        );
        let body = super::read_body(response, super::MAX_BODY_BYTES)
            .await
            .unwrap_or_else(|error| zeroize::Zeroizing::new(format!("({error})")));
        let detail: String = body.chars().take(200).collect();
        Ok(match status {
            200..=299 => SharePointProbe::Accepted,
            401 if !token.claims.authenticated_with_certificate() => {
                SharePointProbe::CertificateRequired { status, detail }
            }
            _ => SharePointProbe::Refused { status, detail },
        })
    }
}

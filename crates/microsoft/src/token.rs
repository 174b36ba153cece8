//! App-only tokens: the v2 client-credentials grant, one resource per request.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

use super::MicrosoftClient;
use super::certificate::Credential;
use super::claims::Claims;
use super::cloud::{Endpoints, Resource};
use super::errors::{TokenError, TokenFailure, classify_token_error, retry_after};

/// What `token` takes: a `Credential`, or a bare client secret.
pub trait AsCredential {
    fn as_credential(&self) -> std::borrow::Cow<'_, Credential>;
}

impl AsCredential for Credential {
    fn as_credential(&self) -> std::borrow::Cow<'_, Credential> {
        std::borrow::Cow::Borrowed(self)
    }
}

impl AsCredential for SecretString {
    fn as_credential(&self) -> std::borrow::Cow<'_, Credential> {
        std::borrow::Cow::Owned(Credential::Secret(self.clone()))
    }
}

/// RFC 7523's client assertion type, the one Entra takes.
pub const CLIENT_ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// A token for one resource. The token itself stays secret; its claims are not.
pub struct AccessToken {
    pub resource: Resource,
    token: SecretString,
    pub expires_in: Duration,
    pub claims: Claims,
}

impl std::fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessToken")
            .field("resource", &self.resource)
            .field("expires_in", &self.expires_in)
            .field("claims", &self.claims)
            .finish_non_exhaustive()
    }
}

impl AccessToken {
    /// The bearer value, exposed only where a request is built.
    pub(crate) fn bearer(&self) -> &str {
        self.token.expose_secret()
    }
}

#[derive(serde::Deserialize)]
struct TokenResponse {
    access_token: SecretString,
    #[serde(default)]
    expires_in: Option<u64>,
}

impl MicrosoftClient {
    /// Requests an app-only token for `resource` with the credential (a client secret or
    /// a certificate's client assertion), retrying what is transient within the client's
    /// retry policy.
    pub async fn token<C: AsCredential + ?Sized>(
        &self,
        endpoints: &Endpoints,
        credential: &C,
        resource: Resource,
    ) -> Result<AccessToken, TokenError> {
        let credential = credential.as_credential();
        let credential = credential.as_ref();
        self.retry
            .run(|| self.token_once(endpoints, credential, resource))
            .await
    }

    /// One token request, no retry.
    pub async fn token_once(
        &self,
        endpoints: &Endpoints,
        credential: &Credential,
        resource: Resource,
    ) -> Result<AccessToken, TokenError> {
        let scope = endpoints.scope(resource).ok_or_else(|| TokenError {
            kind: TokenFailure::Configuration,
            http_status: None,
            error: None,
            codes: Vec::new(),
            description: Some("the organization has no SharePoint host configured".into()),
            trace_id: None,
            correlation_id: None,
            retry_after: None,
        })?;
        let client_id = endpoints.client_id.to_string();
        let token_url = endpoints.token_url();
        // The form carries the secret or the assertion: built in a buffer that is wiped
        // when sent.
        let form = match credential {
            Credential::Secret(secret) => crate::secret_buf::form(&[
                ("client_id", client_id.as_str()),
                ("scope", scope.as_str()),
                ("client_secret", secret.expose_secret()),
                ("grant_type", "client_credentials"),
            ]),
            Credential::Certificate(certificate) => {
                let assertion = certificate
                    .assertion(&client_id, token_url.as_str())
                    .map_err(|error| TokenError {
                        kind: TokenFailure::Configuration,
                        http_status: None,
                        error: None,
                        codes: Vec::new(),
                        description: Some(error.to_string()),
                        trace_id: None,
                        correlation_id: None,
                        retry_after: None,
                    })?;
                crate::secret_buf::form(&[
                    ("client_id", client_id.as_str()),
                    ("scope", scope.as_str()),
                    ("client_assertion_type", CLIENT_ASSERTION_TYPE),
                    ("client_assertion", assertion.expose_secret()),
                    ("grant_type", "client_credentials"),
                ])
            }
        };
        let response = self
            .send(
                self.http
                    .post(token_url)
                    .header(
                        reqwest::header::CONTENT_TYPE,
                        "application/x-www-form-urlencoded",
                    )
                    .body(form.into_body()),
            )
            .await
            .map_err(|error| {
                crate::count_request("token", "transport");
                TokenError::transport(&error)
            })?;
        let status = response.status().as_u16();
        let wait = retry_after(response.headers());
        let body = super::read_body(response, super::MAX_BODY_BYTES)
            .await
            .map_err(|error| match error {
                super::BodyError::Transport(error) => TokenError::transport(&error),
                super::BodyError::TooLarge => TokenError {
                    kind: TokenFailure::Unknown,
                    http_status: Some(status),
                    error: None,
                    codes: Vec::new(),
                    description: Some(error.to_string()),
                    trace_id: None,
                    correlation_id: None,
                    retry_after: None,
                },
            })?;
        if status != 200 {
            let error = classify_token_error(status, &body, wait);
            crate::count_request("token", error.kind.as_str());
            return Err(error);
        }
        crate::count_request("token", "ok");
        let parsed: TokenResponse = serde_json::from_str(&body).map_err(|_| TokenError {
            kind: TokenFailure::Unknown,
            http_status: Some(status),
            error: None,
            codes: Vec::new(),
            description: Some("the token endpoint answered 200 without an access_token".into()),
            trace_id: None,
            correlation_id: None,
            retry_after: None,
        })?;
        let claims =
            Claims::read(parsed.access_token.expose_secret()).map_err(|message| TokenError {
                kind: TokenFailure::Unknown,
                http_status: Some(status),
                error: None,
                codes: Vec::new(),
                description: Some(message),
                trace_id: None,
                correlation_id: None,
                retry_after: None,
            })?;
        Ok(AccessToken {
            resource,
            token: parsed.access_token,
            expires_in: Duration::from_secs(parsed.expires_in.unwrap_or(3599)),
            claims,
        })
    }
}

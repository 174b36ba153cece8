//! The simulated Entra ID: the v2 token endpoint (client credentials with a secret),
//! OpenID discovery and JWKS at Entra's paths, and errors in Entra's exact shape.

use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::model::World;
use crate::resource::Resource;

/// Signs access tokens (RS256) and publishes the public key.
pub struct Signer {
    pub algorithm: Algorithm,
    pub kid: String,
    encoding: EncodingKey,
    pub decoding: DecodingKey,
    pub jwk: serde_json::Value,
}

fn key_id(material: &[u8]) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(material);
    digest[..10].iter().map(|b| format!("{b:02x}")).collect()
}

impl Signer {
    /// RS256 with a fresh RSA-2048 key, as Entra ID signs.
    pub fn generate() -> anyhow::Result<Signer> {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256)?;
        let encoding = EncodingKey::from_rsa_pem(key.serialize_pem().as_bytes())?;
        let jwk = jsonwebtoken::jwk::Jwk::from_encoding_key(&encoding, Algorithm::RS256)?;
        let jsonwebtoken::jwk::AlgorithmParameters::RSA(rsa) = &jwk.algorithm else {
            anyhow::bail!("generated key is not RSA");
        };
        let decoding = DecodingKey::from_rsa_components(&rsa.n, &rsa.e)?;
        let kid = key_id(rsa.n.as_bytes());
        let jwk = serde_json::json!({
            "kty": "RSA", "use": "sig", "kid": kid, "x5t": kid, "n": rsa.n, "e": rsa.e,
            "issuer": "https://login.microsoftonline.com/{tenantid}/v2.0",
        });
        Ok(Signer {
            algorithm: Algorithm::RS256,
            kid,
            encoding,
            decoding,
            jwk,
        })
    }

    /// HS256 with a random key: signing and verifying cost a microsecond, where RSA costs
    /// a millisecond. Only for load tests (`simulate --fast-signing`), where the
    /// simulator's own CPU must not be what is measured. No key is published in the JWKS
    /// then; kodo-access reads token claims without checking signatures either way.
    pub fn generate_fast() -> anyhow::Result<Signer> {
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret).map_err(|error| anyhow::anyhow!("no randomness: {error}"))?;
        Ok(Signer {
            algorithm: Algorithm::HS256,
            kid: key_id(&secret),
            encoding: EncodingKey::from_secret(&secret),
            decoding: DecodingKey::from_secret(&secret),
            jwk: serde_json::Value::Null,
        })
    }

    fn sign(&self, claims: &AccessClaims) -> String {
        let mut header = Header::new(self.algorithm);
        header.kid = Some(self.kid.clone());
        header.typ = Some("JWT".into());
        jsonwebtoken::encode(&header, claims, &self.encoding).expect("signing with a valid key")
    }
}

/// The claims of a v1 app-only access token, as Microsoft's resources receive them.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccessClaims {
    pub aud: String,
    pub iss: String,
    pub iat: i64,
    pub nbf: i64,
    pub exp: i64,
    pub appid: String,
    pub appidacr: String,
    pub idp: String,
    pub idtyp: String,
    pub oid: String,
    pub sub: String,
    pub tid: String,
    pub ver: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roles: Option<Vec<String>>,
    pub uti: String,
}

/// An error from the token endpoint, in Entra's shape (reference §1).
pub fn entra_error(status: StatusCode, error: &str, code: u64, message: &str) -> Response {
    let trace_id = Uuid::new_v4();
    let correlation_id = Uuid::new_v4();
    let timestamp = Utc::now().format("%Y-%m-%d %H:%M:%SZ").to_string();
    let body = serde_json::json!({
        "error": error,
        "error_description": format!(
            "AADSTS{code}: {message} Trace ID: {trace_id} Correlation ID: {correlation_id} Timestamp: {timestamp}"
        ),
        "error_codes": [code],
        "timestamp": timestamp,
        "trace_id": trace_id,
        "correlation_id": correlation_id,
        "error_uri": format!("https://login.microsoftonline.com/error?code={code}"),
    });
    (
        status,
        [("content-type", "application/json; charset=utf-8")],
        body.to_string(),
    )
        .into_response()
}

#[derive(Debug, Default, Deserialize)]
pub struct TokenForm {
    pub grant_type: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    pub client_assertion_type: Option<String>,
    pub client_assertion: Option<String>,
    pub scope: Option<String>,
}

/// RFC 7523's client assertion type.
const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// Which resource a scope names, and the audience its tokens carry.
fn resolve_scope(world: &World, tenant: Uuid, scope: &str) -> Option<(Resource, String)> {
    let identifier = scope.strip_suffix("/.default")?.trim_end_matches('/');
    let lower = identifier.to_ascii_lowercase();
    for resource in Resource::ALL {
        if lower == resource.app_id() {
            return Some((resource, identifier.to_string()));
        }
    }
    match lower.as_str() {
        "https://graph.microsoft.com"
        | "https://graph.microsoft.us"
        | "https://dod-graph.microsoft.us"
        | "https://microsoftgraph.chinacloudapi.cn" => {
            Some((Resource::Graph, identifier.to_string()))
        }
        "https://outlook.office365.com"
        | "https://outlook.office365.us"
        | "https://webmail.apps.mil"
        | "https://partner.outlook.cn" => Some((Resource::Exchange, identifier.to_string())),
        other => {
            let host = other.strip_prefix("https://")?;
            let tenant = world.tenants.get(&tenant)?;
            (tenant
                .sharepoint_host
                .as_deref()
                .map(str::to_ascii_lowercase)
                .as_deref()
                == Some(host))
            .then(|| (Resource::SharePoint, identifier.to_string()))
        }
    }
}

fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    use base64::Engine;
    let value = headers.get("authorization")?.to_str().ok()?;
    let encoded = value.strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    let decode = |s: &str| {
        url::form_urlencoded::parse(format!("x={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
    };
    Some((decode(user)?, decode(password)?))
}

/// The client-credentials grant. Returns the response and the tenant it concerned.
pub fn token(
    world: &World,
    tenant_name: &str,
    headers: &HeaderMap,
    form: TokenForm,
) -> (Result<AccessClaims, Response>, Option<Uuid>) {
    use StatusCode as S;
    let Some(tenant) = world.find_tenant(tenant_name) else {
        return (
            Err(entra_error(
                S::BAD_REQUEST,
                "invalid_request",
                90002,
                &format!(
                    "Tenant '{tenant_name}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud. Check with your subscription administrator, this may happen if there are no active subscriptions for the tenant."
                ),
            )),
            None,
        );
    };
    let tenant_id = tenant.id;
    let reply = |response| (Err(response), Some(tenant_id));
    let (client_id, secret, scope) = match credentials_and_scope(&form, headers) {
        Ok(parts) => parts,
        Err(response) => return reply(response),
    };
    let (resource, audience) = match requested_resource(world, tenant, &scope) {
        Ok(resolved) => resolved,
        Err(response) => return reply(response),
    };
    let application = Uuid::try_parse(&client_id)
        .ok()
        .and_then(|id| tenant.application(id));
    let Some(application) = application else {
        return reply(entra_error(
            S::BAD_REQUEST,
            "unauthorized_client",
            700016,
            &format!(
                "Application with identifier '{client_id}' was not found in the directory '{}'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You may have sent your authentication request to the wrong tenant.",
                tenant.domain
            ),
        ));
    };
    let Some(principal) = &application.service_principal else {
        return reply(entra_error(
            S::BAD_REQUEST,
            "invalid_client",
            7000229,
            &format!(
                "The client application {client_id} is missing service principal in the tenant {tenant_id}."
            ),
        ));
    };
    if !principal.account_enabled {
        return reply(entra_error(
            S::BAD_REQUEST,
            "unauthorized_client",
            7000112,
            &format!(
                "Application '{client_id}'({}) is disabled.",
                application.display_name
            ),
        ));
    }
    // A client assertion (certificate) if one is sent, else the secret.
    let appidacr = if form.client_assertion.is_some() || form.client_assertion_type.is_some() {
        if let Err(response) =
            check_assertion(tenant, tenant_name, headers, application, &client_id, &form)
        {
            return reply(response);
        }
        "2"
    } else {
        if let Err(response) = check_secret(tenant, application, &client_id, secret) {
            return reply(response);
        }
        "1"
    };
    if tenant.policy.conditional_access_blocks {
        return reply(entra_error(
            S::BAD_REQUEST,
            "invalid_grant",
            53003,
            "Access has been blocked by Conditional Access policies. The access policy does not allow token issuance.",
        ));
    }
    let roles: Vec<String> = principal
        .assignments
        .iter()
        .filter(|assignment| assignment.resource == resource)
        .filter_map(|assignment| world.catalogue.role_by_id(resource, assignment.app_role_id))
        .map(|role| role.value.clone())
        .collect();
    let issued = Utc::now().timestamp();
    let issuer = format!("https://sts.windows.net/{tenant_id}/");
    let claims = AccessClaims {
        aud: audience,
        iss: issuer.clone(),
        iat: issued,
        nbf: issued,
        exp: issued + 3599,
        appid: application.app_id.to_string(),
        appidacr: appidacr.into(),
        idp: issuer,
        idtyp: "app".into(),
        oid: principal.object_id.to_string(),
        sub: principal.object_id.to_string(),
        tid: tenant_id.to_string(),
        ver: "1.0".into(),
        // Without consent, Entra still issues the token, with no roles claim at all.
        roles: (!roles.is_empty()).then_some(roles),
        uti: Uuid::new_v4().simple().to_string(),
    };
    (Ok(claims), Some(tenant_id))
}

/// The client secret against the application's: present, known, not expired, replicated,
/// and no Conditional Access policy in the way.
#[expect(
    clippy::result_large_err,
    reason = "the error is the HTTP answer, built once for a refused request"
)]
fn check_secret(
    tenant: &super::model::Tenant,
    application: &super::model::Application,
    client_id: &str,
    secret: Option<String>,
) -> Result<(), Response> {
    use StatusCode as S;
    let Some(secret) = secret.filter(|secret| !secret.is_empty()) else {
        return Err(entra_error(
            S::UNAUTHORIZED,
            "invalid_client",
            7000218,
            "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
        ));
    };
    let now = tenant.now();
    let matching = application
        .credentials
        .iter()
        .find(|credential| credential.secret == secret);
    let invalid = || {
        entra_error(
            S::UNAUTHORIZED,
            "invalid_client",
            7000215,
            &format!(
                "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '{client_id}'."
            ),
        )
    };
    let Some(credential) = matching else {
        return Err(invalid());
    };
    if credential.end <= now {
        return Err(entra_error(
            S::UNAUTHORIZED,
            "invalid_client",
            7000222,
            &format!(
                "The provided client secret keys for app '{client_id}' are expired. Visit the Azure portal to create new keys for your app: https://aka.ms/NewClientSecret, or consider using certificate credentials for added security: https://aka.ms/certCreds."
            ),
        ));
    }
    if credential.usable_from > Utc::now() {
        // Not replicated yet: Entra does not know this secret in this region.
        return Err(invalid());
    }
    Ok(())
}

/// How far Entra lets an assertion's `nbf`/`exp` miss its own clock.
const CLOCK_SKEW_SECS: i64 = 300;

/// The client assertion (RFC 7523, Microsoft's certificate credentials) against the
/// application's registered certificates: the type, a certificate found by `x5t#S256` or
/// `x5t` that is registered, replicated and not expired, its signature (RS256 or PS256),
/// `aud` this tenant's token endpoint, `iss` = `sub` = the client id, and the time range.
#[expect(
    clippy::result_large_err,
    reason = "the error is the HTTP answer, built once for a refused request"
)]
fn check_assertion(
    tenant: &super::model::Tenant,
    tenant_name: &str,
    headers: &HeaderMap,
    application: &super::model::Application,
    client_id: &str,
    form: &TokenForm,
) -> Result<(), Response> {
    use StatusCode as S;
    let malformed = |what: &str| {
        entra_error(
            S::BAD_REQUEST,
            "invalid_request",
            50027,
            &format!("JWT token is invalid or malformed. {what}"),
        )
    };
    if form.client_assertion_type.as_deref() != Some(JWT_BEARER) {
        return Err(entra_error(
            S::BAD_REQUEST,
            "invalid_request",
            7000219,
            "'client_assertion_type' must be 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer'.",
        ));
    }
    let assertion = form.client_assertion.as_deref().unwrap_or_default();
    let header = jsonwebtoken::decode_header(assertion)
        .map_err(|_| malformed("The assertion is not a JWT."))?;
    let see_keys = format!(
        "Please visit the Azure Portal, Graph Explorer or directly use MS Graph to see configured keys for app Id '{client_id}'. Review the documentation at https://docs.microsoft.com/en-us/graph/deployments to determine the corresponding service endpoint and https://docs.microsoft.com/en-us/graph/api/application-get?view=graph-rest-1.0&tabs=http to build a query request URL, such as 'https://graph.microsoft.com/beta/applications/{client_id}']."
    );
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    // base64url, with or without padding (MSAL for Python pads).
    let thumbprint = |t: &str| b64.decode(t.trim_end_matches('=')).ok();
    let sha256 = header.x5t_s256.as_deref().and_then(thumbprint);
    let sha1 = header.x5t.as_deref().and_then(thumbprint);
    let used = sha1
        .as_ref()
        .map(|bytes| bytes.iter().map(|b| format!("{b:02X}")).collect::<String>())
        .or_else(|| {
            sha256
                .as_ref()
                .map(|bytes| bytes.iter().map(|b| format!("{b:02X}")).collect())
        })
        .unwrap_or_default();
    let now = tenant.now();
    let key = application.key_credentials.iter().find(|key| {
        sha256.as_deref() == Some(&key.sha256[..]) || sha1.as_deref() == Some(&key.sha1[..])
    });
    let not_registered = || {
        entra_error(
            S::UNAUTHORIZED,
            "invalid_client",
            700027,
            &format!(
                "The certificate with identifier used to sign the client assertion is not registered on application. [Reason - The key was not found., Thumbprint of key used by client: '{used}', {see_keys}"
            ),
        )
    };
    // Not replicated yet: Entra does not know this certificate in this region.
    let Some(key) = key.filter(|key| key.usable_from <= Utc::now()) else {
        return Err(not_registered());
    };
    let invalid_signature = |reason: &str| {
        entra_error(
            S::UNAUTHORIZED,
            "invalid_client",
            700027,
            &format!(
                "Client assertion contains an invalid signature. [Reason - {reason}, Thumbprint of key used by client: '{used}', Found key 'Start={}, End={}', {see_keys}",
                key.start.format("%m/%d/%Y %H:%M:%S"),
                key.end.format("%m/%d/%Y %H:%M:%S"),
            ),
        )
    };
    if key.end <= now {
        return Err(invalid_signature("The key used is expired."));
    }
    if !matches!(
        header.alg,
        jsonwebtoken::Algorithm::RS256 | jsonwebtoken::Algorithm::PS256
    ) {
        return Err(invalid_signature(
            "The key used is not supported for this algorithm.",
        ));
    }
    let mut validation = jsonwebtoken::Validation::new(header.alg);
    validation.validate_exp = false;
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    let decoding = jsonwebtoken::DecodingKey::from_rsa_der(&key.public_key);
    let claims = jsonwebtoken::decode::<AssertionClaims>(assertion, &decoding, &validation)
        .map_err(|error| match error.kind() {
            jsonwebtoken::errors::ErrorKind::InvalidSignature => invalid_signature(
                "The provided signature value did not match the expected signature value.",
            ),
            _ => malformed("The assertion's claims cannot be read."),
        })?
        .claims;
    if claims.iss.as_deref() != Some(client_id) || claims.sub.as_deref() != Some(client_id) {
        return Err(entra_error(
            S::UNAUTHORIZED,
            "invalid_client",
            700021,
            "Client assertion application identifier doesn't match 'client_id' parameter. Review the documentation at https://learn.microsoft.com/entra/identity-platform/certificate-credentials .",
        ));
    }
    if !audience_is_token_endpoint(
        claims.aud.as_deref().unwrap_or_default(),
        tenant_name,
        headers,
    ) {
        return Err(entra_error(
            S::UNAUTHORIZED,
            "invalid_client",
            700016,
            "The client assertion's audience is not this token endpoint. Review the documentation at https://learn.microsoft.com/entra/identity-platform/certificate-credentials .",
        ));
    }
    let current = now.timestamp();
    #[expect(
        clippy::cast_possible_truncation,
        reason = "a NumericDate out of i64's range saturates, which no skew window reaches"
    )]
    let seconds = |value: Option<f64>| value.map_or(0, |v| v.floor() as i64);
    let exp = seconds(claims.exp);
    let nbf = seconds(claims.nbf);
    if exp + CLOCK_SKEW_SECS < current || nbf - CLOCK_SKEW_SECS > current {
        let time = |secs: i64| {
            chrono::DateTime::from_timestamp(secs, 0)
                .unwrap_or_default()
                .format("%Y-%m-%dT%H:%M:%S%.7fZ")
                .to_string()
        };
        return Err(entra_error(
            S::UNAUTHORIZED,
            "invalid_client",
            700024,
            &format!(
                "Client assertion is not within its valid time range. Current time: {}, assertion valid from {}, expiry time of assertion {}. Review the documentation at https://learn.microsoft.com/entra/identity-platform/certificate-credentials .",
                now.format("%Y-%m-%dT%H:%M:%S%.7fZ"),
                time(nbf),
                time(exp),
            ),
        ));
    }
    Ok(())
}

#[derive(Debug, Deserialize)]
struct AssertionClaims {
    aud: Option<String>,
    iss: Option<String>,
    sub: Option<String>,
    /// NumericDate: a number, not always an integer (MSAL for Python sends fractions).
    exp: Option<f64>,
    nbf: Option<f64>,
}

/// `https://{host}/{tenant}/oauth2/v2.0/token` (or the v1 `/oauth2/token`) on this host,
/// for the tenant named in the request's path.
fn audience_is_token_endpoint(audience: &str, tenant_name: &str, headers: &HeaderMap) -> bool {
    let Ok(url) = url::Url::parse(audience) else {
        return false;
    };
    let host = headers
        .get(axum::http::header::HOST)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    let authority = match url.port() {
        Some(port) => format!("{}:{port}", url.host_str().unwrap_or_default()),
        None => url.host_str().unwrap_or_default().to_string(),
    };
    let path = url.path().trim_end_matches('/');
    authority.eq_ignore_ascii_case(host)
        && (path.eq_ignore_ascii_case(&format!("/{tenant_name}/oauth2/v2.0/token"))
            || path.eq_ignore_ascii_case(&format!("/{tenant_name}/oauth2/token")))
}

/// The grant's parts: the client id and secret (from the form or HTTP basic auth) and the
/// scope, or Entra's answer to what is missing.
#[expect(
    clippy::result_large_err,
    reason = "the error is the HTTP answer, built once for a refused request"
)]
fn credentials_and_scope(
    form: &TokenForm,
    headers: &HeaderMap,
) -> Result<(String, Option<String>, String), Response> {
    use StatusCode as S;
    if form.grant_type.as_deref() != Some("client_credentials") {
        return Err(entra_error(
            S::BAD_REQUEST,
            "unsupported_grant_type",
            70003,
            "The app requested an unsupported grant type.",
        ));
    }
    let basic = basic_credentials(headers);
    let client_id = form
        .client_id
        .clone()
        .or_else(|| basic.as_ref().map(|(user, _)| user.clone()));
    let Some(client_id) = client_id.filter(|id| !id.is_empty()) else {
        return Err(entra_error(
            S::BAD_REQUEST,
            "invalid_request",
            900144,
            "The request body must contain the following parameter: 'client_id'.",
        ));
    };
    let secret = form
        .client_secret
        .clone()
        .or_else(|| basic.map(|(_, password)| password));
    let Some(scope) = form
        .scope
        .as_deref()
        .filter(|scope| !scope.trim().is_empty())
    else {
        return Err(entra_error(
            S::BAD_REQUEST,
            "invalid_request",
            900144,
            "The request body must contain the following parameter: 'scope'.",
        ));
    };
    Ok((client_id, secret, scope.to_string()))
}

/// The one resource a client-credentials scope names (`{resource}/.default`), and the
/// audience its token carries.
#[expect(
    clippy::result_large_err,
    reason = "the error is the HTTP answer, built once for a refused request"
)]
fn requested_resource(
    world: &World,
    tenant: &super::model::Tenant,
    scope: &str,
) -> Result<(Resource, String), Response> {
    use StatusCode as S;
    let scopes: Vec<&str> = scope.split_whitespace().collect();
    if scopes.iter().any(|scope| !scope.ends_with("/.default")) {
        return Err(entra_error(
            S::BAD_REQUEST,
            "invalid_scope",
            1002012,
            &format!(
                "The provided value for scope {scope} is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI)."
            ),
        ));
    }
    if scopes.len() > 1 {
        return Err(entra_error(
            S::BAD_REQUEST,
            "invalid_scope",
            700022,
            "The provided value for the input parameter scope is not valid because it contains more than one resource.",
        ));
    }
    let Some((resource, audience)) = resolve_scope(world, tenant.id, scopes[0]) else {
        return Err(entra_error(
            S::BAD_REQUEST,
            "invalid_resource",
            500011,
            &format!(
                "The resource principal named {} was not found in the tenant named {}. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant.",
                scopes[0].trim_end_matches("/.default"),
                tenant.domain
            ),
        ));
    };
    Ok((resource, audience))
}

/// Signs the token and answers 200. Called without the world lock held: signing is the
/// most expensive thing the simulator does.
pub fn issue(signer: &Signer, claims: &AccessClaims) -> Response {
    let body = serde_json::json!({
        "token_type": "Bearer",
        "expires_in": 3599,
        "ext_expires_in": 3599,
        "access_token": signer.sign(claims),
    });
    (
        StatusCode::OK,
        [("content-type", "application/json; charset=utf-8")],
        body.to_string(),
    )
        .into_response()
}

/// The OpenID configuration at `/{tenant}/v2.0/.well-known/openid-configuration`.
pub fn discovery(base: &str, tenant: Uuid) -> serde_json::Value {
    serde_json::json!({
        "token_endpoint": format!("{base}/{tenant}/oauth2/v2.0/token"),
        "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
        "jwks_uri": format!("{base}/{tenant}/discovery/v2.0/keys"),
        "response_modes_supported": ["query", "fragment", "form_post"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "issuer": format!("{base}/{tenant}/v2.0"),
        "request_uri_parameter_supported": false,
        "userinfo_endpoint": format!("{base}/oidc/userinfo"),
        "authorization_endpoint": format!("{base}/{tenant}/oauth2/v2.0/authorize"),
        "device_authorization_endpoint": format!("{base}/{tenant}/oauth2/v2.0/devicecode"),
        "http_logout_supported": true,
        "frontchannel_logout_supported": true,
        "end_session_endpoint": format!("{base}/{tenant}/oauth2/v2.0/logout"),
        "claims_supported": ["sub", "iss", "aud", "exp", "iat", "auth_time", "acr", "nonce", "tid", "ver", "roles"],
        "tenant_region_scope": "EU",
        "cloud_instance_name": "microsoftonline.com",
        "cloud_graph_host_name": "graph.windows.net",
        "msgraph_host": "graph.microsoft.com",
    })
}

/// Verifies a bearer token this cloud issued, for one of `audiences`.
pub fn verify(
    signer: &Signer,
    headers: &HeaderMap,
    audiences: &[String],
) -> Result<AccessClaims, &'static str> {
    let value = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .ok_or("no Authorization header")?;
    let token = value.strip_prefix("Bearer ").ok_or("not a bearer token")?;
    let mut validation = jsonwebtoken::Validation::new(signer.algorithm);
    if audiences.is_empty() {
        // The caller checks the audience itself.
        validation.validate_aud = false;
    } else {
        validation.set_audience(audiences);
    }
    validation.validate_nbf = true;
    validation.leeway = 0;
    jsonwebtoken::decode::<AccessClaims>(token, &signer.decoding, &validation)
        .map(|data| data.claims)
        .map_err(|error| match error.kind() {
            jsonwebtoken::errors::ErrorKind::ExpiredSignature => {
                "Lifetime validation failed, the token is expired."
            }
            jsonwebtoken::errors::ErrorKind::InvalidAudience => "Invalid audience.",
            _ => "Access token validation failure.",
        })
}

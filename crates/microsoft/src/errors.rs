//! Microsoft's refusals, classified by what the caller must do — never by message text.
//!
//! Token endpoint errors are classified from the OAuth `error` and the `error_codes` list
//! (reference §1–§2); Graph errors from the HTTP status and `error.code` (§8). The
//! description, trace and correlation ids are kept for the log and the operator, never
//! parsed. Nothing here ever holds a secret or a token.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;

/// What a failed token request means, sorted by what must happen next.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenFailure {
    /// The secret is wrong or was removed (AADSTS7000215, 70002).
    SecretInvalid,
    /// The secret has expired (AADSTS7000222).
    SecretExpired,
    /// The certificate that signed the client assertion is not (or no longer) accepted:
    /// not registered on the application, expired there, or the signature does not verify
    /// (AADSTS700027, one code for all three; the caller knows the certificate's dates).
    CertificateRejected,
    /// The client assertion is outside its valid time range (AADSTS700024): this host's
    /// clock is off, or the assertion took too long to arrive.
    AssertionTime,
    /// The application is not in the tenant: not consented, wrong id, deleted (700016, 700011).
    AppNotFound,
    /// The application has no service principal in the tenant (7000229).
    ServicePrincipalMissing,
    /// The application or its service principal is disabled (7000112, 70001).
    AppDisabled,
    /// The tenant does not exist in this cloud (90002). Confirm before believing it.
    TenantNotFound,
    /// The tenant belongs to another national cloud (90038).
    WrongCloud,
    /// Conditional Access, security defaults or tenant restrictions block the app.
    BlockedByPolicy,
    /// The resource is not available in the tenant (500011, 650052).
    ResourceUnavailable,
    /// Too many requests (HTTP 429, 50196, 90055): wait for `retry_after`.
    Throttled,
    /// A transient service problem (5xx, temporarily_unavailable, 90024, 50000 …): retry.
    Transient,
    /// A request kodo-access built wrongly or a bad configuration (scope, missing field).
    Configuration,
    /// Anything else; the codes are kept.
    Unknown,
}

impl TokenFailure {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenFailure::SecretInvalid => "secret_invalid",
            TokenFailure::SecretExpired => "secret_expired",
            TokenFailure::CertificateRejected => "certificate_rejected",
            TokenFailure::AssertionTime => "assertion_time",
            TokenFailure::AppNotFound => "app_not_found",
            TokenFailure::ServicePrincipalMissing => "service_principal_missing",
            TokenFailure::AppDisabled => "app_disabled",
            TokenFailure::TenantNotFound => "tenant_not_found",
            TokenFailure::WrongCloud => "wrong_cloud",
            TokenFailure::BlockedByPolicy => "blocked_by_policy",
            TokenFailure::ResourceUnavailable => "resource_unavailable",
            TokenFailure::Throttled => "throttled",
            TokenFailure::Transient => "transient",
            TokenFailure::Configuration => "configuration",
            TokenFailure::Unknown => "unknown",
        }
    }

    /// Whether trying again later, unchanged, may succeed.
    pub fn is_retryable(self) -> bool {
        matches!(self, TokenFailure::Throttled | TokenFailure::Transient)
    }
}

/// The AADSTS codes we act on, and what they mean (reference §2).
fn classify_code(code: u64) -> Option<TokenFailure> {
    use TokenFailure::*;
    Some(match code {
        7000215 | 70002 => SecretInvalid,
        7000222 => SecretExpired,
        700027 => CertificateRejected,
        700024 => AssertionTime,
        700016 | 700011 => AppNotFound,
        7000229 => ServicePrincipalMissing,
        7000112 | 70001 => AppDisabled,
        90002 => TenantNotFound,
        90038 => WrongCloud,
        53003 | 530032 | 530035 | 500021 | 500022 => BlockedByPolicy,
        500011 | 650052 => ResourceUnavailable,
        50196 | 90055 => Throttled,
        90024 | 50033 | 90006 | 90033 | 90090 | 50000 => Transient,
        7000218 | 90014 | 900144 | 1002012 | 70011 | 700022 | 700023 | 50194 | 9001023 | 90124
        | 90130 | 90023 | 900023 => Configuration,
        _ => return None,
    })
}

/// The token endpoint's error body (reference §1).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct TokenErrorBody {
    pub error: Option<String>,
    pub error_description: Option<String>,
    #[serde(default)]
    pub error_codes: Vec<u64>,
    pub timestamp: Option<String>,
    pub trace_id: Option<String>,
    pub correlation_id: Option<String>,
    pub error_uri: Option<String>,
}

/// A failed token request, with everything the operator needs to look it up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenError {
    pub kind: TokenFailure,
    /// `None` when no HTTP answer arrived (connection refused, timeout).
    pub http_status: Option<u16>,
    pub error: Option<String>,
    pub codes: Vec<u64>,
    /// Microsoft's text, for people; never parsed.
    pub description: Option<String>,
    pub trace_id: Option<String>,
    pub correlation_id: Option<String>,
    pub retry_after: Option<Duration>,
}

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "token request failed: {}", self.kind.as_str())?;
        let mut details = Vec::new();
        if let Some(status) = self.http_status {
            details.push(format!("HTTP {status}"));
        }
        if let Some(error) = &self.error {
            details.push(error.clone());
        }
        for code in &self.codes {
            details.push(format!("AADSTS{code}"));
        }
        if let Some(trace_id) = &self.trace_id {
            details.push(format!("trace id {trace_id}"));
        }
        if let Some(correlation_id) = &self.correlation_id {
            details.push(format!("correlation id {correlation_id}"));
        }
        if let Some(retry_after) = self.retry_after {
            details.push(format!("retry after {}s", retry_after.as_secs()));
        }
        if !details.is_empty() {
            write!(f, " ({})", details.join(", "))?;
        }
        if let Some(description) = &self.description {
            // The first line only: the rest repeats the ids above.
            let first = description.lines().next().unwrap_or_default();
            write!(f, ": {first}")?;
        }
        Ok(())
    }
}

impl std::error::Error for TokenError {}

impl TokenError {
    /// A failure before any HTTP answer: connection refused, DNS, TLS, timeout.
    pub fn transport(error: &reqwest::Error) -> TokenError {
        TokenError {
            kind: TokenFailure::Transient,
            http_status: None,
            error: None,
            codes: Vec::new(),
            description: Some(transport_description(error)),
            trace_id: None,
            correlation_id: None,
            retry_after: None,
        }
    }
}

/// Describes a transport error without its URL (which is harmless, but long).
pub fn transport_description(error: &reqwest::Error) -> String {
    let kind = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "could not connect"
    } else {
        "transport error"
    };
    let mut text = kind.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Classifies a token endpoint answer that was not a success.
pub fn classify_token_error(status: u16, body: &str, retry_after: Option<Duration>) -> TokenError {
    let parsed: Option<TokenErrorBody> = serde_json::from_str(body).ok();
    let parsed_body = parsed.clone().unwrap_or_default();
    let by_code = parsed_body
        .error_codes
        .iter()
        .find_map(|code| classify_code(*code));
    let kind = if status == 429 {
        TokenFailure::Throttled
    } else if let Some(kind) = by_code {
        kind
    } else if status >= 500 {
        TokenFailure::Transient
    } else {
        match parsed_body.error.as_deref() {
            Some("temporarily_unavailable") => TokenFailure::Transient,
            Some("invalid_scope" | "unsupported_grant_type" | "invalid_request") => {
                TokenFailure::Configuration
            }
            Some("invalid_resource") => TokenFailure::ResourceUnavailable,
            _ => TokenFailure::Unknown,
        }
    };
    let retry_after = match kind {
        // Entra's token throttle says 60 s when it says anything (reference §8).
        TokenFailure::Throttled => Some(retry_after.unwrap_or(Duration::from_secs(60))),
        _ => retry_after,
    };
    TokenError {
        kind,
        http_status: Some(status),
        error: parsed_body.error,
        codes: parsed_body.error_codes,
        description: parsed_body.error_description.or_else(|| {
            parsed
                .is_none()
                .then(|| format!("unparsable answer: {}", truncate(body, 200)))
        }),
        trace_id: parsed_body.trace_id,
        correlation_id: parsed_body.correlation_id,
        retry_after,
    }
}

fn truncate(text: &str, limit: usize) -> String {
    let mut end = text.len().min(limit);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
}

/// What a failed Graph call means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GraphFailure {
    /// 401: the token was not accepted.
    Unauthorized,
    /// 403 (`Authorization_RequestDenied` and friends): the app lacks the permission.
    Forbidden,
    /// 404 (`Request_ResourceNotFound`): the object does not exist.
    NotFound,
    /// 400 `CredentialInvalidLifetimeAsPerAppPolicy`: the lifetime exceeds the tenant's policy.
    LifetimeTooLong,
    /// 400 `CredentialTypeNotAllowedAsPerAppPolicy`: the tenant allows no secrets.
    SecretsNotAllowed,
    /// Another 4xx: the request was wrong.
    BadRequest,
    /// 429: wait for `retry_after`.
    Throttled,
    /// 5xx or no answer: retry.
    Transient,
    Unknown,
}

impl GraphFailure {
    pub fn as_str(self) -> &'static str {
        match self {
            GraphFailure::Unauthorized => "unauthorized",
            GraphFailure::Forbidden => "forbidden",
            GraphFailure::NotFound => "not_found",
            GraphFailure::LifetimeTooLong => "lifetime_too_long",
            GraphFailure::SecretsNotAllowed => "secrets_not_allowed",
            GraphFailure::BadRequest => "bad_request",
            GraphFailure::Throttled => "throttled",
            GraphFailure::Transient => "transient",
            GraphFailure::Unknown => "unknown",
        }
    }

    pub fn is_retryable(self) -> bool {
        matches!(self, GraphFailure::Throttled | GraphFailure::Transient)
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
struct GraphErrorEnvelope {
    error: Option<GraphErrorBody>,
}

#[derive(Debug, Clone, Default, Deserialize)]
struct GraphErrorBody {
    code: Option<String>,
    message: Option<String>,
    #[serde(alias = "innererror", alias = "innerError")]
    inner_error: Option<GraphInnerError>,
}

#[derive(Debug, Clone, Default, Deserialize)]
struct GraphInnerError {
    code: Option<String>,
    #[serde(rename = "request-id")]
    request_id: Option<String>,
    #[serde(rename = "client-request-id")]
    client_request_id: Option<String>,
}

/// A failed Graph call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GraphError {
    pub kind: GraphFailure,
    pub http_status: Option<u16>,
    pub code: Option<String>,
    pub inner_code: Option<String>,
    /// Graph's text, for people; never parsed.
    pub message: Option<String>,
    pub request_id: Option<String>,
    pub retry_after: Option<Duration>,
    /// What was being attempted ("get application", "addPassword" …).
    pub operation: &'static str,
}

impl fmt::Display for GraphError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "graph {} failed: {}", self.operation, self.kind.as_str())?;
        let mut details = Vec::new();
        if let Some(status) = self.http_status {
            details.push(format!("HTTP {status}"));
        }
        if let Some(code) = &self.code {
            details.push(code.clone());
        }
        if let Some(request_id) = &self.request_id {
            details.push(format!("request id {request_id}"));
        }
        if let Some(retry_after) = self.retry_after {
            details.push(format!("retry after {}s", retry_after.as_secs()));
        }
        if !details.is_empty() {
            write!(f, " ({})", details.join(", "))?;
        }
        if let Some(message) = &self.message {
            write!(f, ": {message}")?;
        }
        Ok(())
    }
}

impl std::error::Error for GraphError {}

impl GraphError {
    /// Whether Microsoft may have carried out the request although it failed: no answer,
    /// an answer cut short, an unreadable success, or a 5xx other than 503 (which, like
    /// 429, is a refusal before processing). A non-idempotent request (addPassword) with
    /// such an error must be looked for, never blindly sent again.
    pub fn may_have_acted(&self) -> bool {
        match self.http_status {
            None => true,
            Some(429 | 503) => false,
            Some(status) => (200..300).contains(&status) || status >= 500,
        }
    }

    pub fn transport(operation: &'static str, error: &reqwest::Error) -> GraphError {
        GraphError {
            kind: GraphFailure::Transient,
            http_status: None,
            code: None,
            inner_code: None,
            message: Some(transport_description(error)),
            request_id: None,
            retry_after: None,
            operation,
        }
    }

    /// An answer that was not the shape Graph documents.
    pub fn unexpected(operation: &'static str, message: String) -> GraphError {
        GraphError {
            kind: GraphFailure::Unknown,
            http_status: None,
            code: None,
            inner_code: None,
            message: Some(message),
            request_id: None,
            retry_after: None,
            operation,
        }
    }
}

/// Classifies a Graph answer that was not a success.
pub fn classify_graph_error(
    operation: &'static str,
    status: u16,
    body: &str,
    retry_after: Option<Duration>,
) -> GraphError {
    let envelope: GraphErrorEnvelope = serde_json::from_str(body).unwrap_or_default();
    let error = envelope.error.unwrap_or_default();
    let inner = error.inner_error.unwrap_or_default();
    let code = error.code.clone();
    let kind = match (status, code.as_deref()) {
        (_, Some("CredentialInvalidLifetimeAsPerAppPolicy")) => GraphFailure::LifetimeTooLong,
        (_, Some("CredentialTypeNotAllowedAsPerAppPolicy")) => GraphFailure::SecretsNotAllowed,
        (429, _) => GraphFailure::Throttled,
        (401, _) => GraphFailure::Unauthorized,
        (403, _) => GraphFailure::Forbidden,
        (404, _) => GraphFailure::NotFound,
        (500..=599, _) => GraphFailure::Transient,
        (400..=499, _) => GraphFailure::BadRequest,
        _ => GraphFailure::Unknown,
    };
    let retry_after = match kind {
        GraphFailure::Throttled => Some(retry_after.unwrap_or(Duration::from_secs(10))),
        _ => retry_after,
    };
    GraphError {
        kind,
        http_status: Some(status),
        code,
        inner_code: inner.code,
        message: error.message,
        request_id: inner.request_id.or(inner.client_request_id),
        retry_after,
        operation,
    }
}

/// Reads `Retry-After` in its seconds form (Microsoft sends seconds).
pub fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An Entra error body in its real shape (reference §1).
    fn entra(error: &str, code: u64) -> String {
        serde_json::json!({
            "error": error,
            "error_description": format!("AADSTS{code}: Something happened. Trace ID: 0f5a1c2e-aaaa-bbbb-cccc-000000000001 Correlation ID: 7d1e0c3b-aaaa-bbbb-cccc-000000000002 Timestamp: 2026-11-26 10:00:00Z"),
            "error_codes": [code],
            "timestamp": "2026-11-26 10:00:00Z",
            "trace_id": "0f5a1c2e-aaaa-bbbb-cccc-000000000001",
            "correlation_id": "7d1e0c3b-aaaa-bbbb-cccc-000000000002",
            "error_uri": format!("https://login.microsoftonline.com/error?code={code}"),
        })
        .to_string()
    }

    #[test]
    fn token_errors_are_classified_by_code_and_error() {
        use TokenFailure::*;
        let cases: &[(u16, &str, u64, TokenFailure)] = &[
            (401, "invalid_client", 7000215, SecretInvalid),
            (401, "invalid_client", 70002, SecretInvalid),
            (401, "invalid_client", 7000222, SecretExpired),
            (401, "invalid_client", 700027, CertificateRejected),
            (401, "invalid_client", 700024, AssertionTime),
            (400, "unauthorized_client", 700016, AppNotFound),
            (400, "unauthorized_client", 700011, AppNotFound),
            (400, "invalid_client", 7000229, ServicePrincipalMissing),
            (400, "unauthorized_client", 7000112, AppDisabled),
            (400, "unauthorized_client", 70001, AppDisabled),
            (400, "invalid_request", 90002, TenantNotFound),
            (400, "invalid_request", 90038, WrongCloud),
            (400, "invalid_grant", 53003, BlockedByPolicy),
            (400, "invalid_grant", 530032, BlockedByPolicy),
            (400, "invalid_grant", 500021, BlockedByPolicy),
            (400, "invalid_resource", 500011, ResourceUnavailable),
            (400, "invalid_grant", 650052, ResourceUnavailable),
            (400, "invalid_scope", 1002012, Configuration),
            (400, "invalid_scope", 70011, Configuration),
            (401, "invalid_client", 7000218, Configuration),
            (400, "invalid_request", 900144, Configuration),
            (400, "invalid_request", 50196, Throttled),
            (400, "temporarily_unavailable", 90024, Transient),
            (500, "server_error", 50000, Transient),
            (400, "invalid_request", 123456789, Configuration),
            (400, "interaction_required", 123456789, Unknown),
            (503, "temporarily_unavailable", 123456789, Transient),
        ];
        for &(status, error, code, expected) in cases {
            let classified = classify_token_error(status, &entra(error, code), None);
            assert_eq!(classified.kind, expected, "{status} {error} {code}");
            assert_eq!(classified.codes, vec![code]);
            assert_eq!(
                classified.trace_id.as_deref(),
                Some("0f5a1c2e-aaaa-bbbb-cccc-000000000001")
            );
        }
    }

    #[test]
    fn the_description_text_is_never_what_decides() {
        // A body whose text says "expired" but whose code says "invalid" is invalid.
        let body = serde_json::json!({
            "error": "invalid_client",
            "error_description": "AADSTS7000222: The provided client secret keys are expired.",
            "error_codes": [7000215],
        })
        .to_string();
        assert_eq!(
            classify_token_error(401, &body, None).kind,
            TokenFailure::SecretInvalid
        );
    }

    #[test]
    fn throttling_and_unparsable_answers() {
        let throttled = classify_token_error(429, "", Some(Duration::from_secs(7)));
        assert_eq!(throttled.kind, TokenFailure::Throttled);
        assert_eq!(throttled.retry_after, Some(Duration::from_secs(7)));
        assert_eq!(
            classify_token_error(429, "", None).retry_after,
            Some(Duration::from_secs(60))
        );
        let html = classify_token_error(502, "<html>Bad Gateway</html>", None);
        assert_eq!(html.kind, TokenFailure::Transient);
        assert!(html.description.unwrap().contains("Bad Gateway"));
        assert_eq!(
            classify_token_error(418, "teapot", None).kind,
            TokenFailure::Unknown
        );
    }

    #[test]
    fn display_carries_codes_and_ids_but_not_the_whole_description() {
        let error = classify_token_error(401, &entra("invalid_client", 7000215), None);
        let text = error.to_string();
        assert!(text.starts_with("token request failed: secret_invalid (HTTP 401, invalid_client, AADSTS7000215, trace id 0f5a1c2e"), "{text}");
    }

    fn graph(code: &str) -> String {
        serde_json::json!({"error": {"code": code, "message": "msg", "innerError": {"date": "2026-11-26T10:00:00", "request-id": "9b0c1d2e-0000-0000-0000-000000000003", "client-request-id": "9b0c1d2e-0000-0000-0000-000000000003"}}}).to_string()
    }

    #[test]
    fn graph_errors_are_classified_by_status_and_code() {
        use GraphFailure::*;
        let cases: &[(u16, &str, GraphFailure)] = &[
            (401, "InvalidAuthenticationToken", Unauthorized),
            (403, "Authorization_RequestDenied", Forbidden),
            (404, "Request_ResourceNotFound", NotFound),
            (
                400,
                "CredentialInvalidLifetimeAsPerAppPolicy",
                LifetimeTooLong,
            ),
            (
                400,
                "CredentialTypeNotAllowedAsPerAppPolicy",
                SecretsNotAllowed,
            ),
            (400, "Request_BadRequest", BadRequest),
            (429, "TooManyRequests", Throttled),
            (503, "serviceNotAvailable", Transient),
            (504, "UnknownError", Transient),
        ];
        for &(status, code, expected) in cases {
            let error =
                classify_graph_error("test", status, &graph(code), Some(Duration::from_secs(3)));
            assert_eq!(error.kind, expected, "{status} {code}");
            assert_eq!(error.code.as_deref(), Some(code));
            assert_eq!(
                error.request_id.as_deref(),
                Some("9b0c1d2e-0000-0000-0000-000000000003")
            );
        }
        assert_eq!(
            classify_graph_error("t", 429, "", None).retry_after,
            Some(Duration::from_secs(10))
        );
    }
}

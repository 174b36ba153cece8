//! The claims of an app-only access token, read with `jsonwebtoken`.
//!
//! The signature is deliberately NOT validated: these tokens are issued to kodo-access
//! by Microsoft over TLS, for Microsoft's own resources, which Microsoft says clients must
//! treat as opaque and may not be able to validate (reference §3). We read `roles` only as
//! a best-effort signal beside Graph's `appRoleAssignments`, never to authorize anything.

use serde::Deserialize;

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Claims {
    /// App permissions granted on this resource; absent when none are.
    #[serde(default)]
    pub roles: Option<Vec<String>>,
    pub tid: Option<String>,
    /// Client id in v1 tokens.
    pub appid: Option<String>,
    /// Client id in v2 tokens.
    pub azp: Option<String>,
    /// How the client authenticated in v1 tokens: "0" public, "1" secret, "2" certificate.
    pub appidacr: Option<String>,
    /// The same in v2 tokens.
    pub azpacr: Option<String>,
    pub exp: Option<i64>,
    pub aud: Option<serde_json::Value>,
    pub oid: Option<String>,
    pub ver: Option<String>,
}

impl Claims {
    /// Reads the claims of `token` without checking its signature (see the module docs).
    pub fn read(token: &str) -> Result<Claims, String> {
        jsonwebtoken::dangerous::insecure_decode::<Claims>(token)
            .map(|data| data.claims)
            .map_err(|error| format!("the access token is not a readable JWT: {error}"))
    }

    pub fn roles(&self) -> &[String] {
        self.roles.as_deref().unwrap_or_default()
    }

    pub fn client_id(&self) -> Option<&str> {
        self.appid.as_deref().or(self.azp.as_deref())
    }

    /// Whether the client proved itself with a certificate (SharePoint accepts only that).
    pub fn authenticated_with_certificate(&self) -> bool {
        self.appidacr.as_deref().or(self.azpacr.as_deref()) == Some("2")
    }

    pub fn audience(&self) -> Option<String> {
        match &self.aud {
            Some(serde_json::Value::String(aud)) => Some(aud.clone()),
            Some(serde_json::Value::Array(values)) => {
                values.first().and_then(|v| v.as_str()).map(String::from)
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    fn token(claims: serde_json::Value) -> String {
        let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        format!(
            "{}.{}.{}",
            engine.encode(r#"{"typ":"JWT","alg":"RS256","kid":"k"}"#),
            engine.encode(claims.to_string()),
            engine.encode("not-a-real-signature")
        )
    }

    #[test]
    fn reads_v1_and_v2_claims() {
        let v1 = Claims::read(&token(serde_json::json!({
            "aud": "https://graph.microsoft.com", "tid": "t", "appid": "c", "appidacr": "1",
            "roles": ["User.Read.All", "Mail.ReadWrite"], "exp": 1900000000, "ver": "1.0"
        })))
        .unwrap();
        assert_eq!(v1.roles(), ["User.Read.All", "Mail.ReadWrite"]);
        assert_eq!(v1.client_id(), Some("c"));
        assert!(!v1.authenticated_with_certificate());
        assert_eq!(
            v1.audience().as_deref(),
            Some("https://graph.microsoft.com")
        );
        let v2 = Claims::read(&token(serde_json::json!({"aud": "00000003-0000-0000-c000-000000000000", "azp": "c2", "azpacr": "2", "exp": 1900000000}))).unwrap();
        assert_eq!(v2.client_id(), Some("c2"));
        assert!(v2.authenticated_with_certificate());
        assert!(v2.roles().is_empty(), "no roles claim means no permission");
        assert!(Claims::read("garbage").is_err());
    }
}

//! The simulated Microsoft Graph (the calls kodo-access makes, in Graph's wire format:
//! OData paging, Graph's error shape, `secretText` only from addPassword) and the
//! SharePoint REST probe that refuses secret-based app-only tokens.

use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::identity::{AccessClaims, Signer, verify};
use super::model::{Application, Credential, Tenant, World};
use crate::resource::Resource;

const GRAPH_AUDIENCES: &[&str] = &[
    "https://graph.microsoft.com",
    "https://graph.microsoft.us",
    "https://dod-graph.microsoft.us",
    "https://microsoftgraph.chinacloudapi.cn",
    "00000003-0000-0000-c000-000000000000",
];

/// An error in Graph's shape (reference §8).
pub fn graph_error(status: StatusCode, code: &str, message: &str) -> Response {
    let request_id = Uuid::new_v4();
    let body = serde_json::json!({
        "error": {
            "code": code,
            "message": message,
            "innerError": {
                "date": Utc::now().format("%Y-%m-%dT%H:%M:%S").to_string(),
                "request-id": request_id,
                "client-request-id": request_id,
            }
        }
    });
    (
        status,
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn json(status: StatusCode, value: serde_json::Value) -> Response {
    (status, [("content-type", "application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8")], value.to_string()).into_response()
}

fn denied() -> Response {
    graph_error(
        StatusCode::FORBIDDEN,
        "Authorization_RequestDenied",
        "Insufficient privileges to complete the operation.",
    )
}

fn not_found(id: &str) -> Response {
    graph_error(
        StatusCode::NOT_FOUND,
        "Request_ResourceNotFound",
        &format!(
            "Resource '{id}' does not exist or one of its queried reference-property objects are not present."
        ),
    )
}

fn has_any(claims: &AccessClaims, roles: &[&str]) -> bool {
    claims
        .roles
        .as_deref()
        .unwrap_or_default()
        .iter()
        .any(|role| roles.contains(&role.as_str()))
}

/// Read access to an application or service principal: directory-wide read, or
/// OwnedBy on an object the caller owns (its own, once it owns itself).
fn may_read(claims: &AccessClaims, caller: &Application, target_app_id: Uuid) -> bool {
    has_any(
        claims,
        &[
            "Application.Read.All",
            "Application.ReadWrite.All",
            "Directory.Read.All",
            "Directory.ReadWrite.All",
        ],
    ) || (has_any(claims, &["Application.ReadWrite.OwnedBy"])
        && caller.app_id == target_app_id
        && caller.owns_itself)
}

/// Managing credentials: Application.ReadWrite.All, or OwnedBy on an app it owns.
fn may_manage_credentials(
    claims: &AccessClaims,
    caller: &Application,
    target_app_id: Uuid,
) -> bool {
    has_any(claims, &["Application.ReadWrite.All"])
        || (has_any(claims, &["Application.ReadWrite.OwnedBy"])
            && caller.app_id == target_app_id
            && caller.owns_itself)
}

fn credential_json(credential: &Credential, secret_text: Option<&str>) -> serde_json::Value {
    serde_json::json!({
        "customKeyIdentifier": null,
        "displayName": credential.display_name,
        "endDateTime": credential.end.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "hint": credential.hint(),
        "keyId": credential.key_id,
        "secretText": secret_text,
        "startDateTime": credential.start.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    })
}

/// A key credential as Graph lists it: `key` is null except when a single object is read
/// with `$select=keyCredentials`; `customKeyIdentifier` is the SHA-1 thumbprint (binary,
/// so base64 in JSON).
fn key_credential_json(credential: &super::model::KeyCredential) -> serde_json::Value {
    use base64::Engine as _;
    serde_json::json!({
        "customKeyIdentifier": base64::engine::general_purpose::STANDARD.encode(credential.sha1),
        "displayName": credential.display_name,
        "endDateTime": credential.end.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "key": null,
        "keyId": credential.key_id,
        "startDateTime": credential.start.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "type": "AsymmetricX509Cert",
        "usage": "Verify",
    })
}

/// `applications(appId='…')` → the appId.
fn app_id_key(segment: &str, entity: &str) -> Option<Result<Uuid, String>> {
    let inner = segment
        .strip_prefix(entity)?
        .strip_prefix("(appId='")?
        .strip_suffix("')")?;
    Some(Uuid::try_parse(inner).map_err(|_| inner.to_string()))
}

fn query_value(query: &str, name: &str) -> Option<String> {
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
}

pub struct GraphRequest<'a> {
    pub method: Method,
    /// The path after `/v1.0/`.
    pub path: &'a str,
    pub query: &'a str,
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
    /// This server's base URL as the client reached it, for `@odata.nextLink`.
    pub base: &'a str,
}

/// Handles one Graph request. Returns the response, the tenant and an endpoint name.
/// Verifies a Graph bearer token (signature, expiry, audience). Needs no state, so it
/// runs before the world is locked.
pub fn verify_graph(signer: &Signer, headers: &HeaderMap) -> Result<AccessClaims, &'static str> {
    let audiences: Vec<String> = GRAPH_AUDIENCES.iter().map(|a| a.to_string()).collect();
    verify(signer, headers, &audiences)
}

/// Verifies a SharePoint bearer token's signature and expiry; the audience is checked
/// against the tenant under the lock.
pub fn verify_sharepoint(
    signer: &Signer,
    headers: &HeaderMap,
) -> Result<AccessClaims, &'static str> {
    verify(signer, headers, &[])
}

pub fn handle(
    world: &mut World,
    verified: Result<AccessClaims, &'static str>,
    request: GraphRequest<'_>,
) -> (Response, Option<Uuid>, &'static str) {
    let claims = match verified {
        Ok(claims) => claims,
        Err(message) => {
            return (
                graph_error(
                    StatusCode::UNAUTHORIZED,
                    "InvalidAuthenticationToken",
                    message,
                ),
                None,
                "graph",
            );
        }
    };
    let Some(tenant_id) = Uuid::try_parse(&claims.tid)
        .ok()
        .filter(|id| world.tenants.contains_key(id))
    else {
        return (
            graph_error(
                StatusCode::UNAUTHORIZED,
                "InvalidAuthenticationToken",
                "Access token validation failure. Invalid tenant.",
            ),
            None,
            "graph",
        );
    };
    let segments: Vec<&str> = request.path.trim_matches('/').split('/').collect();
    let tenant = world.tenants.get_mut(&tenant_id).expect("checked above");
    let caller_id = Uuid::try_parse(&claims.appid).ok();
    let Some(caller) = caller_id
        .and_then(|id| tenant.application(id))
        .filter(|app| app.service_principal.is_some())
        .cloned()
    else {
        return (
            graph_error(
                StatusCode::UNAUTHORIZED,
                "InvalidAuthenticationToken",
                "Access token validation failure. The client no longer exists.",
            ),
            Some(tenant_id),
            "graph",
        );
    };
    let (response, endpoint) = route(world, tenant_id, &claims, &caller, &segments, &request);
    (response, Some(tenant_id), endpoint)
}

fn route(
    world: &mut World,
    tenant_id: Uuid,
    claims: &AccessClaims,
    caller: &Application,
    segments: &[&str],
    request: &GraphRequest<'_>,
) -> (Response, &'static str) {
    let method = &request.method;
    match segments {
        [first] if *method == Method::GET && first.starts_with("applications(") => {
            let response = match app_id_key(first, "applications") {
                Some(Ok(app_id)) => get_application(
                    world.tenants.get(&tenant_id).expect("tenant"),
                    claims,
                    caller,
                    app_id,
                    selects_key_credentials(request.query),
                    expands(request.query, "federatedIdentityCredentials"),
                ),
                Some(Err(bad)) => graph_error(
                    StatusCode::BAD_REQUEST,
                    "Request_BadRequest",
                    &format!("Invalid object identifier '{bad}'."),
                ),
                None => graph_error(StatusCode::BAD_REQUEST, "BadRequest", "Bad request."),
            };
            (response, "graph get application")
        }
        ["applications", object_id] if *method == Method::GET => {
            let tenant = world.tenants.get(&tenant_id).expect("tenant");
            // Addressed by object id; an appId in this slot is not found (reference §4).
            let found = Uuid::try_parse(object_id)
                .ok()
                .and_then(|id| tenant.applications.iter().find(|app| app.object_id == id));
            let response = match found {
                Some(app) => get_application(
                    tenant,
                    claims,
                    caller,
                    app.app_id,
                    selects_key_credentials(request.query),
                    expands(request.query, "federatedIdentityCredentials"),
                ),
                None => not_found(object_id),
            };
            (response, "graph get application")
        }
        [first, action] if *method == Method::POST && first.starts_with("applications(") => {
            let Some(Ok(app_id)) = app_id_key(first, "applications") else {
                return (
                    graph_error(
                        StatusCode::BAD_REQUEST,
                        "Request_BadRequest",
                        "Invalid object identifier.",
                    ),
                    "graph",
                );
            };
            match *action {
                "addKey" => (
                    add_key(world, tenant_id, claims, caller, app_id, request.body),
                    "graph addKey",
                ),
                "removeKey" => (
                    remove_key(world, tenant_id, claims, caller, app_id, request.body),
                    "graph removeKey",
                ),
                "addPassword" => (
                    add_password(world, tenant_id, claims, caller, app_id, request.body),
                    "graph addPassword",
                ),
                "removePassword" => (
                    remove_password(world, tenant_id, claims, caller, app_id, request.body),
                    "graph removePassword",
                ),
                _ => (
                    graph_error(
                        StatusCode::BAD_REQUEST,
                        "BadRequest",
                        &format!("Resource not found for the segment '{action}'."),
                    ),
                    "graph",
                ),
            }
        }
        [first] if *method == Method::PATCH && first.starts_with("applications(") => {
            let response = match app_id_key(first, "applications") {
                Some(Ok(app_id)) => {
                    patch_application(world, tenant_id, claims, caller, app_id, request.body)
                }
                _ => graph_error(
                    StatusCode::BAD_REQUEST,
                    "Request_BadRequest",
                    "Invalid object identifier.",
                ),
            };
            (response, "graph patch application")
        }
        [first] if *method == Method::GET && first.starts_with("servicePrincipals(") => {
            let response = match app_id_key(first, "servicePrincipals") {
                Some(Ok(app_id)) => get_service_principal(
                    world.tenants.get(&tenant_id).expect("tenant"),
                    claims,
                    caller,
                    app_id,
                    &world.catalogue,
                ),
                _ => graph_error(
                    StatusCode::BAD_REQUEST,
                    "Request_BadRequest",
                    "Invalid object identifier.",
                ),
            };
            (response, "graph get servicePrincipal")
        }
        ["servicePrincipals", object_id] if *method == Method::GET => (
            get_service_principal_by_object_id(
                world.tenants.get(&tenant_id).expect("tenant"),
                claims,
                caller,
                object_id,
            ),
            "graph get servicePrincipal",
        ),
        ["servicePrincipals", object_id, "appRoleAssignments"] if *method == Method::GET => (
            list_assignments(world, tenant_id, claims, caller, object_id, request),
            "graph appRoleAssignments",
        ),
        ["users"] if *method == Method::GET => (list_users(tenant_id, claims), "graph users"),
        _ => (
            graph_error(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                &format!(
                    "Resource not found for the segment '{}'.",
                    segments.first().unwrap_or(&"")
                ),
            ),
            "graph",
        ),
    }
}

/// `GET /users`: one user, when the token may read users.
fn list_users(tenant_id: Uuid, claims: &AccessClaims) -> Response {
    if has_any(
        claims,
        &[
            "User.Read.All",
            "User.ReadWrite.All",
            "Directory.Read.All",
            "Directory.ReadWrite.All",
        ],
    ) {
        json(
            StatusCode::OK,
            serde_json::json!({
                "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#users(id)",
                "value": [{ "id": Uuid::new_v5(&tenant_id, b"first-user") }],
            }),
        )
    } else {
        denied()
    }
}

/// `$select=…keyCredentials…` on a single application: Graph then returns each key
/// credential's `key` (the certificate), which it leaves out otherwise.
fn selects_key_credentials(query: &str) -> bool {
    url::form_urlencoded::parse(query.as_bytes()).any(|(name, value)| {
        name == "$select"
            && value
                .split(',')
                .any(|field| field.trim() == "keyCredentials")
    })
}

fn get_application(
    tenant: &Tenant,
    claims: &AccessClaims,
    caller: &Application,
    app_id: Uuid,
    with_keys: bool,
    with_federated: bool,
) -> Response {
    let Some(app) = tenant.application(app_id) else {
        return not_found(&app_id.to_string());
    };
    if !may_read(claims, caller, app_id) {
        return denied();
    }
    let mut body = serde_json::json!({
            "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#applications/$entity",
            "id": app.object_id,
            "appId": app.app_id,
            "displayName": app.display_name,
            "passwordCredentials": app.credentials.iter().map(|c| credential_json(c, None)).collect::<Vec<_>>(),
            "keyCredentials": app.key_credentials.iter().map(|key| {
                let mut shown = key_credential_json(key);
                if with_keys {
                    use base64::Engine as _;
                    shown["key"] = serde_json::json!(base64::engine::general_purpose::STANDARD.encode(&key.der));
                }
                shown
            }).collect::<Vec<_>>(),
    });
    if with_federated {
        body["federatedIdentityCredentials"] = app
            .federated_credentials
            .iter()
            .map(|c| {
                serde_json::json!({
                    "id": c.id,
                    "name": c.name,
                    "issuer": c.issuer,
                    "subject": c.subject,
                    "description": null,
                    "audiences": ["api://AzureADTokenExchange"],
                })
            })
            .collect();
    }
    json(StatusCode::OK, body)
}

/// `$expand=…name…`.
fn expands(query: &str, name: &str) -> bool {
    url::form_urlencoded::parse(query.as_bytes())
        .any(|(key, value)| key == "$expand" && value.split(',').any(|v| v.trim() == name))
}

/// An app's service principal by its object id, if the caller may read it: Graph's 404 or
/// 403 otherwise.
#[expect(
    clippy::result_large_err,
    reason = "the error is the HTTP answer, built once for a refused request"
)]
fn readable_principal<'t>(
    tenant: &'t Tenant,
    claims: &AccessClaims,
    caller: &Application,
    object_id: &str,
) -> Result<(&'t Application, &'t super::model::ServicePrincipal), Response> {
    let found = Uuid::try_parse(object_id).ok().and_then(|id| {
        tenant.applications.iter().find_map(|app| {
            app.service_principal
                .as_ref()
                .filter(|sp| sp.object_id == id)
                .map(|sp| (app, sp))
        })
    });
    let Some((app, principal)) = found else {
        return Err(not_found(object_id));
    };
    if !may_read(claims, caller, app.app_id) {
        return Err(denied());
    }
    Ok((app, principal))
}

/// `GET /servicePrincipals/{object id}`: the app's own service principal with its
/// credentials (what the check reads to find credentials planted there).
fn get_service_principal_by_object_id(
    tenant: &Tenant,
    claims: &AccessClaims,
    caller: &Application,
    object_id: &str,
) -> Response {
    let (_, principal) = match readable_principal(tenant, claims, caller, object_id) {
        Ok(found) => found,
        Err(refused) => return refused,
    };
    json(
        StatusCode::OK,
        serde_json::json!({
            "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#servicePrincipals(id,passwordCredentials,keyCredentials)/$entity",
            "id": principal.object_id,
            "passwordCredentials": principal.credentials.iter().map(|c| credential_json(c, None)).collect::<Vec<_>>(),
            "keyCredentials": principal.key_credentials.iter().map(key_credential_json).collect::<Vec<_>>(),
        }),
    )
}

fn get_service_principal(
    tenant: &Tenant,
    claims: &AccessClaims,
    caller: &Application,
    app_id: Uuid,
    catalogue: &super::model::Catalogue,
) -> Response {
    if let Some(resource) = Resource::from_app_id(&app_id.to_string()) {
        if !has_any(
            claims,
            &[
                "Application.Read.All",
                "Application.ReadWrite.All",
                "Directory.Read.All",
                "Directory.ReadWrite.All",
            ],
        ) {
            return denied();
        }
        let roles: Vec<serde_json::Value> = catalogue.roles(resource).iter().map(|role| serde_json::json!({
            "allowedMemberTypes": ["Application"],
            "description": format!("Allows the app to use {} without a signed-in user.", role.display_name),
            "displayName": role.display_name,
            "id": role.id,
            "isEnabled": true,
            "origin": "Application",
            "value": role.value,
        })).collect();
        return json(
            StatusCode::OK,
            serde_json::json!({
                "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#servicePrincipals/$entity",
                "id": tenant.resource_principal_id(resource),
                "appId": resource.app_id(),
                "displayName": resource.display_name(),
                "accountEnabled": true,
                "appRoles": roles,
            }),
        );
    }
    let Some(principal) = tenant
        .application(app_id)
        .and_then(|app| app.service_principal.as_ref())
    else {
        return not_found(&app_id.to_string());
    };
    if !may_read(claims, caller, app_id) {
        return denied();
    }
    json(
        StatusCode::OK,
        serde_json::json!({
            "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#servicePrincipals/$entity",
            "id": principal.object_id,
            "appId": app_id,
            "displayName": tenant.application(app_id).map(|app| app.display_name.clone()),
            "accountEnabled": principal.account_enabled,
            "appRoles": [],
        }),
    )
}

fn list_assignments(
    world: &World,
    tenant_id: Uuid,
    claims: &AccessClaims,
    caller: &Application,
    object_id: &str,
    request: &GraphRequest<'_>,
) -> Response {
    let tenant = world.tenants.get(&tenant_id).expect("tenant");
    let (app, principal) = match readable_principal(tenant, claims, caller, object_id) {
        Ok(found) => found,
        Err(refused) => return refused,
    };
    let top = query_value(request.query, "$top")
        .and_then(|t| t.parse::<usize>().ok())
        .unwrap_or(100)
        .clamp(1, 999);
    let skip = query_value(request.query, "$skiptoken")
        .and_then(|token| {
            use base64::Engine;
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(token)
                .ok()
        })
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .and_then(|text| {
            text.strip_prefix("offset:")
                .and_then(|n| n.parse::<usize>().ok())
        })
        .unwrap_or(0);
    let page: Vec<serde_json::Value> = principal.assignments.iter().skip(skip).take(top).map(|assignment| serde_json::json!({
        "id": assignment.id,
        "deletedDateTime": null,
        "appRoleId": assignment.app_role_id,
        "createdDateTime": assignment.created.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "principalDisplayName": app.display_name,
        "principalId": principal.object_id,
        "principalType": "ServicePrincipal",
        "resourceDisplayName": match assignment.resource { Resource::Graph => "Microsoft Graph", Resource::Exchange => "Office 365 Exchange Online", Resource::SharePoint => "Office 365 SharePoint Online" },
        "resourceId": tenant.resource_principal_id(assignment.resource),
    })).collect();
    let mut body = serde_json::json!({
        "@odata.context": format!("https://graph.microsoft.com/v1.0/$metadata#servicePrincipals('{object_id}')/appRoleAssignments"),
        "value": page,
    });
    if skip + top < principal.assignments.len() {
        use base64::Engine;
        let token = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(format!("offset:{}", skip + top));
        body["@odata.nextLink"] = serde_json::json!(format!(
            "{}/v1.0/servicePrincipals/{object_id}/appRoleAssignments?$top={top}&$skiptoken={token}",
            request.base
        ));
    }
    json(StatusCode::OK, body)
}

fn new_secret_text() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._~-";
    let mut rng = rand::rng();
    let mut pick = |n: usize| -> String {
        (0..n)
            .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
            .collect()
    };
    // Entra's secrets look like "abc8Q~" followed by 34 more characters.
    format!("{}8Q~{}", pick(3), pick(34))
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct AddPasswordBody {
    password_credential: Option<AddPasswordCredential>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct AddPasswordCredential {
    display_name: Option<String>,
    start_date_time: Option<DateTime<Utc>>,
    end_date_time: Option<DateTime<Utc>>,
}

/// Why the caller may not manage the application's secrets: it does not exist (404) or
/// the caller lacks the permission (403). `None` when it may.
fn credential_refusal(
    world: &World,
    tenant_id: Uuid,
    claims: &AccessClaims,
    caller: &Application,
    app_id: Uuid,
) -> Option<Response> {
    let tenant = world.tenants.get(&tenant_id).expect("tenant");
    if tenant.application(app_id).is_none() {
        return Some(not_found(&app_id.to_string()));
    }
    if !may_manage_credentials(claims, caller, app_id) {
        return Some(denied());
    }
    None
}

fn add_password(
    world: &mut World,
    tenant_id: Uuid,
    claims: &AccessClaims,
    caller: &Application,
    app_id: Uuid,
    body: &[u8],
) -> Response {
    if let Some(refusal) = credential_refusal(world, tenant_id, claims, caller, app_id) {
        return refusal;
    }
    let tenant = world.tenants.get_mut(&tenant_id).expect("tenant");
    let parsed: AddPasswordBody = if body.is_empty() {
        AddPasswordBody {
            password_credential: None,
        }
    } else {
        match serde_json::from_slice(body) {
            Ok(parsed) => parsed,
            Err(_) => {
                return graph_error(
                    StatusCode::BAD_REQUEST,
                    "BadRequest",
                    "Unable to read JSON request payload. Please ensure Content-Type header is set and payload is of valid JSON format.",
                );
            }
        }
    };
    let requested = parsed.password_credential.unwrap_or(AddPasswordCredential {
        display_name: None,
        start_date_time: None,
        end_date_time: None,
    });
    let now = tenant.now();
    let start = requested.start_date_time.unwrap_or(now);
    let end = requested
        .end_date_time
        .unwrap_or(start + chrono::Duration::days(730));
    if end <= start {
        return graph_error(
            StatusCode::BAD_REQUEST,
            "Request_BadRequest",
            "The end date must be after the start date.",
        );
    }
    let policy_id = Uuid::new_v5(&tenant_id, b"default-app-management-policy");
    if tenant.policy.secrets_blocked {
        return graph_error(
            StatusCode::BAD_REQUEST,
            "CredentialTypeNotAllowedAsPerAppPolicy",
            &format!("Password credentials are not allowed as per assigned policy '{policy_id}'."),
        );
    }
    if let Some(max_days) = tenant.policy.max_lifetime_days
        && end - start > chrono::Duration::days(max_days.into())
    {
        return graph_error(
            StatusCode::BAD_REQUEST,
            "CredentialInvalidLifetimeAsPerAppPolicy",
            &format!(
                "Credential lifetime exceeds the max value allowed as per assigned policy '{policy_id}'."
            ),
        );
    }
    let propagation = tenant
        .faults
        .propagation_delay_secs
        .max(world.faults.propagation_delay_secs);
    let tenant = world.tenants.get_mut(&tenant_id).expect("tenant");
    let secret = new_secret_text();
    let credential = Credential {
        key_id: Uuid::new_v4(),
        display_name: requested.display_name,
        secret: secret.clone(),
        start,
        end,
        usable_from: Utc::now()
            + chrono::Duration::try_seconds(i64::try_from(propagation).unwrap_or(i64::MAX))
                .unwrap_or(chrono::Duration::MAX),
    };
    let response = credential_json(&credential, Some(&secret));
    tenant
        .application_mut(app_id)
        .expect("checked")
        .credentials
        .push(credential);
    *world.counters.add_password.entry(app_id).or_default() += 1;
    let mut body = response;
    body["@odata.context"] = serde_json::json!(
        "https://graph.microsoft.com/v1.0/$metadata#microsoft.graph.passwordCredential"
    );
    json(StatusCode::OK, body)
}

fn remove_password(
    world: &mut World,
    tenant_id: Uuid,
    claims: &AccessClaims,
    caller: &Application,
    app_id: Uuid,
    body: &[u8],
) -> Response {
    if let Some(refusal) = credential_refusal(world, tenant_id, claims, caller, app_id) {
        return refusal;
    }
    let tenant = world.tenants.get_mut(&tenant_id).expect("tenant");
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Body {
        key_id: Uuid,
    }
    let Ok(parsed) = serde_json::from_slice::<Body>(body) else {
        return graph_error(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "Unable to read JSON request payload: keyId is required.",
        );
    };
    let app = tenant.application_mut(app_id).expect("checked");
    let before = app.credentials.len();
    app.credentials
        .retain(|credential| credential.key_id != parsed.key_id);
    if app.credentials.len() == before {
        return graph_error(
            StatusCode::BAD_REQUEST,
            "Request_BadRequest",
            &format!(
                "No password credential found with keyId '{}'.",
                parsed.key_id
            ),
        );
    }
    *world.counters.remove_password.entry(app_id).or_default() += 1;
    StatusCode::NO_CONTENT.into_response()
}

/// The addKey/removeKey `proof`: a JWT signed by one of the application's valid
/// certificates (found by `x5t`, `x5t#S256` or a thumbprint `kid`), `aud`
/// 00000002-0000-0000-c000-000000000000, `iss` the application's object id, and at most
/// 10 minutes between `nbf` and `exp`, now within them. A bad proof is answered as
/// Microsoft does, 401 Authentication_MissingOrMalformed.
#[expect(
    clippy::result_large_err,
    reason = "the error is the HTTP answer, built once for a refused request"
)]
fn check_proof(app: &Application, proof: &str, now: DateTime<Utc>) -> Result<(), Response> {
    use base64::Engine as _;
    let refused = || {
        graph_error(
            StatusCode::UNAUTHORIZED,
            "Authentication_MissingOrMalformed",
            "Access Token missing or malformed.",
        )
    };
    let header = jsonwebtoken::decode_header(proof).map_err(|_| refused())?;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let digest = |t: &Option<String>| {
        t.as_deref()
            .and_then(|t| b64.decode(t.trim_end_matches('=')).ok())
    };
    let (sha1, sha256) = (digest(&header.x5t), digest(&header.x5t_s256));
    let kid = header.kid.as_deref().map(str::to_ascii_uppercase);
    let key = app
        .key_credentials
        .iter()
        .filter(|key| key.start <= now && now < key.end && key.usable_from <= Utc::now())
        .find(|key| {
            sha1.as_deref() == Some(&key.sha1[..])
                || sha256.as_deref() == Some(&key.sha256[..])
                || kid.as_deref() == Some(key.thumbprint().as_str())
        })
        .ok_or_else(refused)?;
    if !matches!(
        header.alg,
        jsonwebtoken::Algorithm::RS256 | jsonwebtoken::Algorithm::PS256
    ) {
        return Err(refused());
    }
    let mut validation = jsonwebtoken::Validation::new(header.alg);
    validation.set_audience(&["00000002-0000-0000-c000-000000000000"]);
    validation.set_issuer(&[app.object_id.to_string()]);
    validation.validate_exp = false;
    validation.required_spec_claims.clear();
    #[derive(serde::Deserialize)]
    struct Times {
        nbf: Option<f64>,
        exp: Option<f64>,
    }
    let times = jsonwebtoken::decode::<Times>(
        proof,
        &jsonwebtoken::DecodingKey::from_rsa_der(&key.public_key),
        &validation,
    )
    .map_err(|_| refused())?
    .claims;
    let (Some(nbf), Some(exp)) = (times.nbf, times.exp) else {
        return Err(refused());
    };
    let current = now.timestamp() as f64;
    if exp - nbf > 600.0 || current < nbf - 300.0 || current > exp + 300.0 {
        return Err(refused());
    }
    Ok(())
}

/// Who may call addKey/removeKey on an application: the application itself (rolling its
/// own keys needs no permission), or a caller that may manage its credentials.
fn may_roll_keys(claims: &AccessClaims, caller: &Application, app_id: Uuid) -> bool {
    caller.app_id == app_id || may_manage_credentials(claims, caller, app_id)
}

/// What addKey and removeKey check first, in Microsoft's order: the application exists,
/// the caller may roll its keys, the body reads, and its proof of possession holds.
#[expect(
    clippy::result_large_err,
    reason = "the error is the HTTP answer, built once for a refused request"
)]
fn proven<T: serde::de::DeserializeOwned>(
    world: &World,
    tenant_id: Uuid,
    (claims, caller, app_id): (&AccessClaims, &Application, Uuid),
    body: &[u8],
    proof_of: impl Fn(&T) -> &str,
    required: &str,
) -> Result<T, Response> {
    let tenant = world.tenants.get(&tenant_id).expect("tenant");
    let Some(app) = tenant.application(app_id) else {
        return Err(not_found(&app_id.to_string()));
    };
    if !may_roll_keys(claims, caller, app_id) {
        return Err(denied());
    }
    let Ok(parsed) = serde_json::from_slice::<T>(body) else {
        return Err(graph_error(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            &format!("Unable to read JSON request payload: {required}."),
        ));
    };
    check_proof(app, proof_of(&parsed), tenant.now())?;
    Ok(parsed)
}

fn add_key(
    world: &mut World,
    tenant_id: Uuid,
    claims: &AccessClaims,
    caller: &Application,
    app_id: Uuid,
    body: &[u8],
) -> Response {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct NewKey {
        #[serde(rename = "type")]
        key_type: String,
        usage: String,
        key: String,
        display_name: Option<String>,
    }
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Body {
        key_credential: NewKey,
        proof: String,
    }
    let parsed: Body = match proven(
        world,
        tenant_id,
        (claims, caller, app_id),
        body,
        |parsed: &Body| &parsed.proof,
        "keyCredential (type, usage, key) and proof are required",
    ) {
        Ok(parsed) => parsed,
        Err(refused) => return refused,
    };
    if parsed.key_credential.key_type != "AsymmetricX509Cert"
        || parsed.key_credential.usage != "Verify"
    {
        return graph_error(
            StatusCode::BAD_REQUEST,
            "Request_BadRequest",
            "Key credential type AsymmetricX509Cert requires usage Verify.",
        );
    }
    let credential = match new_key_credential(
        world,
        tenant_id,
        &parsed.key_credential.key,
        parsed.key_credential.display_name,
    ) {
        Ok(credential) => credential,
        Err(response) => return response,
    };
    if let Some(refusal) = certificate_lifetime_refusal(world, tenant_id, &credential) {
        return refusal;
    }
    let app = world
        .tenants
        .get_mut(&tenant_id)
        .expect("tenant")
        .application_mut(app_id)
        .expect("checked");
    if app
        .key_credentials
        .iter()
        .any(|key| key.sha1 == credential.sha1)
    {
        return graph_error(
            StatusCode::BAD_REQUEST,
            "Request_BadRequest",
            "The key credential is already registered on the application.",
        );
    }
    let mut answer = key_credential_json(&credential);
    app.key_credentials.push(credential);
    *world.counters.add_key.entry(app_id).or_default() += 1;
    answer["@odata.context"] = serde_json::json!(
        "https://graph.microsoft.com/v1.0/$metadata#microsoft.graph.keyCredential"
    );
    json(StatusCode::OK, answer)
}

/// The tenant's app-management policy (`asymmetricKeyLifetime`) refuses a certificate
/// valid for longer than it allows, as it refuses a secret's lifetime.
fn certificate_lifetime_refusal(
    world: &World,
    tenant_id: Uuid,
    credential: &super::model::KeyCredential,
) -> Option<Response> {
    let tenant = world.tenants.get(&tenant_id)?;
    let max_days = tenant.policy.max_certificate_lifetime_days?;
    (credential.end - credential.start > chrono::Duration::days(max_days.into())).then(|| {
        let policy_id = Uuid::new_v5(&tenant_id, b"default-app-management-policy");
        graph_error(
            StatusCode::BAD_REQUEST,
            "CredentialInvalidLifetimeAsPerAppPolicy",
            &format!(
                "Credential lifetime exceeds the max value allowed as per assigned policy '{policy_id}'."
            ),
        )
    })
}

/// A key credential from a base64 certificate, usable after the tenant's propagation delay.
#[expect(
    clippy::result_large_err,
    reason = "the error is the HTTP answer, built once for a refused request"
)]
fn new_key_credential(
    world: &World,
    tenant_id: Uuid,
    key: &str,
    display_name: Option<String>,
) -> Result<super::model::KeyCredential, Response> {
    use base64::Engine as _;
    let der = base64::engine::general_purpose::STANDARD
        .decode(key)
        .map_err(|_| {
            graph_error(
                StatusCode::BAD_REQUEST,
                "Request_BadRequest",
                "Invalid value specified for property 'key' of resource 'KeyCredential'.",
            )
        })?;
    let mut credential = super::model::KeyCredential::from_certificate(&der, display_name, None)
        .map_err(|_| {
            graph_error(
                StatusCode::BAD_REQUEST,
                "Request_BadRequest",
                "Invalid value specified for property 'key' of resource 'KeyCredential'.",
            )
        })?;
    let tenant = world.tenants.get(&tenant_id).expect("tenant");
    let propagation = tenant
        .faults
        .propagation_delay_secs
        .max(world.faults.propagation_delay_secs);
    credential.usable_from = Utc::now()
        + chrono::Duration::try_seconds(i64::try_from(propagation).unwrap_or(i64::MAX))
            .unwrap_or(chrono::Duration::MAX);
    Ok(credential)
}

fn remove_key(
    world: &mut World,
    tenant_id: Uuid,
    claims: &AccessClaims,
    caller: &Application,
    app_id: Uuid,
    body: &[u8],
) -> Response {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Body {
        key_id: Uuid,
        proof: String,
    }
    let parsed: Body = match proven(
        world,
        tenant_id,
        (claims, caller, app_id),
        body,
        |parsed: &Body| &parsed.proof,
        "keyId and proof are required",
    ) {
        Ok(parsed) => parsed,
        Err(refused) => return refused,
    };
    let app = world
        .tenants
        .get_mut(&tenant_id)
        .expect("tenant")
        .application_mut(app_id)
        .expect("checked");
    let before = app.key_credentials.len();
    app.key_credentials
        .retain(|key| key.key_id != parsed.key_id);
    if app.key_credentials.len() == before {
        return graph_error(
            StatusCode::BAD_REQUEST,
            "Request_BadRequest",
            &format!("No key credential found with keyId '{}'.", parsed.key_id),
        );
    }
    *world.counters.remove_key.entry(app_id).or_default() += 1;
    StatusCode::NO_CONTENT.into_response()
}

/// `PATCH /applications(appId='…')` with `keyCredentials`: the whole list replaces the
/// app's (each entry with its `key`, which is why a caller first reads them with
/// `$select=keyCredentials`). The way to add the first certificate; needs the rights of
/// addPassword.
fn patch_application(
    world: &mut World,
    tenant_id: Uuid,
    claims: &AccessClaims,
    caller: &Application,
    app_id: Uuid,
    body: &[u8],
) -> Response {
    if let Some(refusal) = credential_refusal(world, tenant_id, claims, caller, app_id) {
        return refusal;
    }
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Entry {
        key_id: Option<Uuid>,
        #[serde(rename = "type")]
        key_type: Option<String>,
        usage: Option<String>,
        key: Option<String>,
        display_name: Option<String>,
    }
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    struct Body {
        key_credentials: Vec<Entry>,
    }
    let Ok(parsed) = serde_json::from_slice::<Body>(body) else {
        return graph_error(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "Unable to read JSON request payload (this simulator patches keyCredentials only).",
        );
    };
    let existing = world
        .tenants
        .get(&tenant_id)
        .expect("tenant")
        .application(app_id)
        .expect("checked")
        .key_credentials
        .clone();
    let mut next = Vec::new();
    for entry in parsed.key_credentials {
        let Some(key) = entry.key.as_deref() else {
            return graph_error(
                StatusCode::BAD_REQUEST,
                "Request_BadRequest",
                "Invalid value specified for property 'key' of resource 'KeyCredential'.",
            );
        };
        if entry
            .key_type
            .as_deref()
            .is_some_and(|t| t != "AsymmetricX509Cert")
            || entry.usage.as_deref().is_some_and(|u| u != "Verify")
        {
            return graph_error(
                StatusCode::BAD_REQUEST,
                "Request_BadRequest",
                "Key credential type AsymmetricX509Cert requires usage Verify.",
            );
        }
        let mut credential = match new_key_credential(world, tenant_id, key, entry.display_name) {
            Ok(credential) => credential,
            Err(response) => return response,
        };
        // An entry already on the app keeps its id and replication.
        if let Some(kept) = existing.iter().find(|old| old.sha1 == credential.sha1) {
            credential.key_id = kept.key_id;
            credential.usable_from = kept.usable_from;
            credential.display_name = credential.display_name.or(kept.display_name.clone());
        } else {
            // The policy judges what is added, not what the app had before it.
            if let Some(refusal) = certificate_lifetime_refusal(world, tenant_id, &credential) {
                return refusal;
            }
            if let Some(key_id) = entry.key_id {
                credential.key_id = key_id;
            }
        }
        next.push(credential);
    }
    let app = world
        .tenants
        .get_mut(&tenant_id)
        .expect("tenant")
        .application_mut(app_id)
        .expect("checked");
    app.key_credentials = next;
    *world.counters.patch_keys.entry(app_id).or_default() += 1;
    StatusCode::NO_CONTENT.into_response()
}

/// SharePoint REST (`/_api/...`): like the real service, refuses app-only tokens
/// obtained with a client secret.
pub fn sharepoint(
    world: &World,
    verified: Result<AccessClaims, &'static str>,
) -> (Response, Option<Uuid>) {
    // The audience is checked against the token's own tenant, not every tenant's host.
    let unauthorized = |reason: &str| {
        (
            StatusCode::UNAUTHORIZED,
            [
                ("content-type", "application/json;odata=verbose;charset=utf-8"),
                ("x-ms-diagnostics", "3001000;reason=\"There has been an error authenticating the request.\";category=\"invalid_client\""),
                ("www-authenticate", "Bearer realm=\"\",client_id=\"00000003-0000-0ff1-ce00-000000000000\",trusted_issuers=\"00000001-0000-0000-c000-000000000000@*\""),
            ],
            serde_json::json!({ "error_description": reason }).to_string(),
        )
            .into_response()
    };
    let verified = verified.ok().filter(|claims| {
        let tenant = Uuid::try_parse(&claims.tid)
            .ok()
            .and_then(|id| world.tenants.get(&id));
        let host = tenant.and_then(|t| t.sharepoint_host.as_deref());
        claims.aud == "00000003-0000-0ff1-ce00-000000000000"
            || host.is_some_and(|host| claims.aud.eq_ignore_ascii_case(&format!("https://{host}")))
    });
    match verified {
        None => (unauthorized("Invalid JWT token."), None),
        Some(claims) => {
            let tenant = Uuid::try_parse(&claims.tid).ok();
            if claims.appidacr != "2" {
                return (unauthorized("Unsupported app only token."), tenant);
            }
            (
                json(
                    StatusCode::OK,
                    serde_json::json!({ "Title": "Communication site" }),
                ),
                tenant,
            )
        }
    }
}

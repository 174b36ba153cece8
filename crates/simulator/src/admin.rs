//! The simulator's admin API under `/_sim/`: inspect the state, and rehearse incidents
//! (revoke consent, disable or delete the app, delete the tenant, expire a secret) and
//! faults (latency, 5xx, throttling, propagation delay, clock offset). Bad input gets a
//! 400 with a JSON `error` that says what is wrong; nothing here panics on input.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use chrono::Utc;
use serde::de::DeserializeOwned;
use uuid::Uuid;

use super::SimulatorState;
use super::model::{self, AppSpec, Faults, Policy, SecretSpec, TenantSpec, World};
use crate::resource::Resource;

pub struct AdminError(StatusCode, String);

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        (self.0, axum::Json(serde_json::json!({ "error": self.1 }))).into_response()
    }
}

fn bad(message: impl Into<String>) -> AdminError {
    AdminError(StatusCode::BAD_REQUEST, message.into())
}

fn missing(message: impl Into<String>) -> AdminError {
    AdminError(StatusCode::NOT_FOUND, message.into())
}

fn parse<T: DeserializeOwned>(body: &Bytes) -> Result<T, AdminError> {
    serde_json::from_slice(body).map_err(|error| bad(format!("invalid request body: {error}")))
}

fn uuid(what: &str, text: &str) -> Result<Uuid, AdminError> {
    Uuid::try_parse(text).map_err(|_| bad(format!("{what} {text:?} is not a GUID")))
}

type Shared = State<Arc<SimulatorState>>;
type Reply = Result<Response, AdminError>;

fn ok(value: serde_json::Value) -> Reply {
    Ok(axum::Json(value).into_response())
}

pub fn router() -> Router<Arc<SimulatorState>> {
    Router::new()
        .route("/_sim/state", get(state))
        .route("/_sim/counters", get(counters))
        .route("/_sim/counters/reset", post(reset_counters))
        .route("/_sim/faults", put(global_faults))
        .route("/_sim/tenants", post(add_tenant))
        .route("/_sim/tenants/{tenant}", delete(delete_tenant))
        .route("/_sim/tenants/{tenant}/faults", put(tenant_faults))
        .route("/_sim/tenants/{tenant}/policy", put(tenant_policy))
        .route("/_sim/tenants/{tenant}/apps", post(add_app))
        .route("/_sim/tenants/{tenant}/apps/{app}", delete(delete_app))
        .route(
            "/_sim/tenants/{tenant}/apps/{app}/service-principal",
            delete(delete_service_principal),
        )
        .route(
            "/_sim/tenants/{tenant}/apps/{app}/disable",
            post(disable_app),
        )
        .route("/_sim/tenants/{tenant}/apps/{app}/enable", post(enable_app))
        .route(
            "/_sim/tenants/{tenant}/apps/{app}/ownership",
            put(ownership),
        )
        .route(
            "/_sim/tenants/{tenant}/apps/{app}/consent/revoke",
            post(revoke_consent),
        )
        .route(
            "/_sim/tenants/{tenant}/apps/{app}/consent/grant",
            post(grant_consent),
        )
        .route(
            "/_sim/tenants/{tenant}/apps/{app}/secrets",
            post(add_secret),
        )
        .route(
            "/_sim/tenants/{tenant}/apps/{app}/secrets/{key}",
            delete(remove_secret),
        )
        .route(
            "/_sim/tenants/{tenant}/apps/{app}/certificates",
            post(add_certificate),
        )
        .route(
            "/_sim/tenants/{tenant}/apps/{app}/certificates/{key}",
            delete(remove_certificate),
        )
        .route(
            "/_sim/tenants/{tenant}/apps/{app}/secrets/{key}/expire",
            post(expire_secret),
        )
        .route(
            "/_sim/tenants/{tenant}/apps/{app}/service-principal/certificates",
            post(add_service_principal_certificate),
        )
        .route(
            "/_sim/tenants/{tenant}/apps/{app}/federated-credentials",
            post(add_federated_credential),
        )
}

fn with_app<T>(
    world: &mut World,
    tenant: &str,
    app: &str,
    change: impl FnOnce(&mut model::Application, &model::Catalogue) -> Result<T, AdminError>,
) -> Result<T, AdminError> {
    let tenant_id = uuid("tenant", tenant)?;
    let app_id = uuid("app", app)?;
    let catalogue = world.catalogue.clone();
    let tenant = world
        .tenants
        .get_mut(&tenant_id)
        .ok_or_else(|| missing(format!("no tenant {tenant_id}")))?;
    let app = tenant
        .application_mut(app_id)
        .ok_or_else(|| missing(format!("no app {app_id} in tenant {tenant_id}")))?;
    change(app, &catalogue)
}

async fn state(State(state): Shared) -> Reply {
    let world = state.world.lock().expect("world lock");
    let tenants: Vec<serde_json::Value> = world.tenants.values().map(|tenant| serde_json::json!({
        "id": tenant.id,
        "domain": tenant.domain,
        "sharepoint_host": tenant.sharepoint_host,
        "policy": tenant.policy,
        "faults": tenant.faults,
        "now": tenant.now(),
        "apps": tenant.applications.iter().map(|app| serde_json::json!({
            "app_id": app.app_id,
            "object_id": app.object_id,
            "display_name": app.display_name,
            "owns_itself": app.owns_itself,
            "secrets": app.credentials.iter().map(|c| serde_json::json!({
                "key_id": c.key_id, "display_name": c.display_name, "hint": c.hint(),
                "start": c.start, "end": c.end, "usable_from": c.usable_from,
            })).collect::<Vec<_>>(),
            "certificates": app.key_credentials.iter().map(|c| serde_json::json!({
                "key_id": c.key_id, "display_name": c.display_name, "thumbprint": c.thumbprint(),
                "start": c.start, "end": c.end, "usable_from": c.usable_from,
            })).collect::<Vec<_>>(),
            "service_principal": app.service_principal.as_ref().map(|sp| serde_json::json!({
                "object_id": sp.object_id,
                "account_enabled": sp.account_enabled,
                "permissions": sp.assignments.iter().map(|a| format!("{}:{}", a.resource.as_str(),
                    world.catalogue.role_by_id(a.resource, a.app_role_id).map(|r| r.value.as_str()).unwrap_or("?"))).collect::<Vec<_>>(),
            })),
        })).collect::<Vec<_>>(),
    })).collect();
    ok(serde_json::json!({ "tenants": tenants, "faults": world.faults }))
}

async fn counters(State(state): Shared) -> Reply {
    let world = state.world.lock().expect("world lock");
    ok(serde_json::to_value(&world.counters).unwrap_or_default())
}

async fn reset_counters(State(state): Shared) -> Reply {
    state.world.lock().expect("world lock").counters = Default::default();
    ok(serde_json::json!({ "reset": true }))
}

async fn global_faults(State(state): Shared, body: Bytes) -> Reply {
    let faults: Faults = parse(&body)?;
    faults.validate().map_err(bad)?;
    let mut world = state.world.lock().expect("world lock");
    world.faults = faults;
    world.global_budget = Default::default();
    ok(serde_json::json!({ "faults": world.faults }))
}

async fn add_tenant(State(state): Shared, body: Bytes) -> Reply {
    let spec: TenantSpec = parse(&body)?;
    let id = state
        .world
        .lock()
        .expect("world lock")
        .add_tenant(spec)
        .map_err(bad)?;
    Ok((
        StatusCode::CREATED,
        axum::Json(serde_json::json!({ "id": id })),
    )
        .into_response())
}

async fn delete_tenant(State(state): Shared, Path(tenant): Path<String>) -> Reply {
    let id = uuid("tenant", &tenant)?;
    state
        .world
        .lock()
        .expect("world lock")
        .tenants
        .remove(&id)
        .ok_or_else(|| missing(format!("no tenant {id}")))?;
    ok(serde_json::json!({ "deleted": id }))
}

async fn tenant_faults(State(state): Shared, Path(tenant): Path<String>, body: Bytes) -> Reply {
    let id = uuid("tenant", &tenant)?;
    let faults: Faults = parse(&body)?;
    faults.validate().map_err(bad)?;
    let mut world = state.world.lock().expect("world lock");
    let tenant = world
        .tenants
        .get_mut(&id)
        .ok_or_else(|| missing(format!("no tenant {id}")))?;
    tenant.faults = faults;
    tenant.budget = Default::default();
    ok(serde_json::json!({ "faults": tenant.faults }))
}

async fn tenant_policy(State(state): Shared, Path(tenant): Path<String>, body: Bytes) -> Reply {
    let id = uuid("tenant", &tenant)?;
    let policy: Policy = parse(&body)?;
    let mut world = state.world.lock().expect("world lock");
    let tenant = world
        .tenants
        .get_mut(&id)
        .ok_or_else(|| missing(format!("no tenant {id}")))?;
    tenant.policy = policy;
    ok(serde_json::json!({ "policy": tenant.policy }))
}

async fn add_app(State(state): Shared, Path(tenant): Path<String>, body: Bytes) -> Reply {
    let id = uuid("tenant", &tenant)?;
    let spec: AppSpec = parse(&body)?;
    let mut world = state.world.lock().expect("world lock");
    let catalogue = world.catalogue.clone();
    let tenant = world
        .tenants
        .get_mut(&id)
        .ok_or_else(|| missing(format!("no tenant {id}")))?;
    if tenant.application(spec.app_id).is_some() {
        return Err(bad(format!(
            "app {} already exists in tenant {id}",
            spec.app_id
        )));
    }
    let granted =
        model::permission_set(&catalogue, &spec.permissions, &spec.missing).map_err(bad)?;
    let now = tenant.now();
    let credentials = spec
        .secrets
        .iter()
        .map(|s| s.build(now))
        .collect::<Result<Vec<_>, _>>()
        .map_err(bad)?;
    let key_credentials = spec
        .certificates
        .iter()
        .map(model::CertificateSpec::build)
        .collect::<Result<Vec<_>, _>>()
        .map_err(bad)?;
    tenant.applications.push(model::Application {
        object_id: Uuid::new_v4(),
        app_id: spec.app_id,
        display_name: spec.display_name,
        owns_itself: spec.owns_itself,
        credentials,
        key_credentials,
        federated_credentials: Vec::new(),
        service_principal: Some(model::ServicePrincipal {
            object_id: Uuid::new_v4(),
            account_enabled: spec.enabled,
            assignments: model::assignments(&granted),
            credentials: Vec::new(),
            key_credentials: Vec::new(),
        }),
    });
    Ok((
        StatusCode::CREATED,
        axum::Json(serde_json::json!({ "app_id": spec.app_id })),
    )
        .into_response())
}

async fn delete_app(State(state): Shared, Path((tenant, app)): Path<(String, String)>) -> Reply {
    let tenant_id = uuid("tenant", &tenant)?;
    let app_id = uuid("app", &app)?;
    let mut world = state.world.lock().expect("world lock");
    let tenant = world
        .tenants
        .get_mut(&tenant_id)
        .ok_or_else(|| missing(format!("no tenant {tenant_id}")))?;
    let before = tenant.applications.len();
    tenant
        .applications
        .retain(|candidate| candidate.app_id != app_id);
    if tenant.applications.len() == before {
        return Err(missing(format!("no app {app_id} in tenant {tenant_id}")));
    }
    ok(serde_json::json!({ "deleted": app_id }))
}

async fn delete_service_principal(
    State(state): Shared,
    Path((tenant, app)): Path<(String, String)>,
) -> Reply {
    let mut world = state.world.lock().expect("world lock");
    with_app(&mut world, &tenant, &app, |app, _| {
        app.service_principal
            .take()
            .ok_or_else(|| missing("the app has no service principal"))?;
        Ok(())
    })?;
    ok(serde_json::json!({ "deleted": "service principal" }))
}

async fn set_enabled(
    state: Arc<SimulatorState>,
    tenant: String,
    app: String,
    enabled: bool,
) -> Reply {
    let mut world = state.world.lock().expect("world lock");
    with_app(&mut world, &tenant, &app, |app, _| {
        let principal = app
            .service_principal
            .as_mut()
            .ok_or_else(|| missing("the app has no service principal"))?;
        principal.account_enabled = enabled;
        Ok(())
    })?;
    ok(serde_json::json!({ "account_enabled": enabled }))
}

async fn disable_app(State(state): Shared, Path((tenant, app)): Path<(String, String)>) -> Reply {
    set_enabled(state, tenant, app, false).await
}

async fn enable_app(State(state): Shared, Path((tenant, app)): Path<(String, String)>) -> Reply {
    set_enabled(state, tenant, app, true).await
}

async fn ownership(
    State(state): Shared,
    Path((tenant, app)): Path<(String, String)>,
    body: Bytes,
) -> Reply {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Body {
        owns_itself: bool,
    }
    let parsed: Body = parse(&body)?;
    let mut world = state.world.lock().expect("world lock");
    with_app(&mut world, &tenant, &app, |app, _| {
        app.owns_itself = parsed.owns_itself;
        Ok(())
    })?;
    ok(serde_json::json!({ "owns_itself": parsed.owns_itself }))
}

#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ConsentBody {
    /// "all", "backup", or a list of "resource:Permission"; absent: every permission.
    #[serde(default)]
    permissions: Option<model::PermissionSpec>,
    /// Only this resource's permissions (graph, exchange, sharepoint).
    #[serde(default)]
    resource: Option<String>,
}

/// Which permissions (all when `None`) of which resource (all when `None`).
type ConsentSelection = (Option<Vec<(Resource, Uuid)>>, Option<Resource>);

fn consent_selection(
    body: &Bytes,
    catalogue: &model::Catalogue,
) -> Result<ConsentSelection, AdminError> {
    let parsed: ConsentBody = if body.is_empty() {
        ConsentBody::default()
    } else {
        parse(body)?
    };
    let resource = match parsed.resource.as_deref() {
        None => None,
        Some(name) => Some(Resource::parse(name).ok_or_else(|| {
            bad(format!(
                "unknown resource {name:?} (graph, exchange, sharepoint)"
            ))
        })?),
    };
    let selection = match &parsed.permissions {
        None => None,
        Some(spec) => Some(model::permission_set(catalogue, spec, &[]).map_err(bad)?),
    };
    Ok((selection, resource))
}

async fn revoke_consent(
    State(state): Shared,
    Path((tenant, app)): Path<(String, String)>,
    body: Bytes,
) -> Reply {
    let mut world = state.world.lock().expect("world lock");
    let (selection, resource) = consent_selection(&body, &world.catalogue)?;
    let removed = with_app(&mut world, &tenant, &app, |app, _| {
        let principal = app
            .service_principal
            .as_mut()
            .ok_or_else(|| missing("the app has no service principal"))?;
        let before = principal.assignments.len();
        principal.assignments.retain(|assignment| {
            let in_resource = resource.is_none_or(|resource| assignment.resource == resource);
            let selected = selection
                .as_ref()
                .is_none_or(|keys| keys.contains(&(assignment.resource, assignment.app_role_id)));
            !(in_resource && selected)
        });
        Ok(before - principal.assignments.len())
    })?;
    ok(serde_json::json!({ "revoked": removed }))
}

async fn grant_consent(
    State(state): Shared,
    Path((tenant, app)): Path<(String, String)>,
    body: Bytes,
) -> Reply {
    let mut world = state.world.lock().expect("world lock");
    let (selection, resource) = consent_selection(&body, &world.catalogue)?;
    let selection = match selection {
        Some(selection) => selection,
        None => model::permission_set(&world.catalogue, &model::PermissionSpec::default(), &[])
            .map_err(bad)?,
    };
    let granted = with_app(&mut world, &tenant, &app, |app, _| {
        let principal = app
            .service_principal
            .as_mut()
            .ok_or_else(|| missing("the app has no service principal"))?;
        let new: Vec<(Resource, Uuid)> = selection
            .iter()
            .filter(|(r, _)| resource.is_none_or(|resource| *r == resource))
            .filter(|(r, id)| {
                !principal
                    .assignments
                    .iter()
                    .any(|a| a.resource == *r && a.app_role_id == *id)
            })
            .copied()
            .collect();
        principal.assignments.extend(model::assignments(&new));
        Ok(new.len())
    })?;
    ok(serde_json::json!({ "granted": granted }))
}

async fn add_secret(
    State(state): Shared,
    Path((tenant, app)): Path<(String, String)>,
    body: Bytes,
) -> Reply {
    let spec: SecretSpec = parse(&body)?;
    let mut world = state.world.lock().expect("world lock");
    let tenant_id = uuid("tenant", &tenant)?;
    let now = world
        .tenants
        .get(&tenant_id)
        .map(|t| t.now())
        .unwrap_or_else(Utc::now);
    let credential = spec.build(now).map_err(bad)?;
    let (key_id, hint) = (credential.key_id, credential.hint());
    with_app(&mut world, &tenant, &app, |app, _| {
        if app.credentials.iter().any(|c| c.key_id == key_id) {
            return Err(bad(format!(
                "the app already has a secret with key id {key_id}"
            )));
        }
        app.credentials.push(credential);
        Ok(())
    })?;
    Ok((
        StatusCode::CREATED,
        axum::Json(serde_json::json!({ "key_id": key_id, "hint": hint })),
    )
        .into_response())
}

/// Registers a certificate on the app (`{"pem": …, "display_name"?, "key_id"?}`), as an
/// administrator does in the portal.
async fn add_certificate(
    State(state): Shared,
    Path((tenant, app)): Path<(String, String)>,
    body: Bytes,
) -> Reply {
    register_certificate(&state, &tenant, &app, &body, |app| {
        Ok(&mut app.key_credentials)
    })
}

/// A certificate on the app's service principal (what an attacker with rights on the
/// service principal plants where the app registration's owners do not look).
async fn add_service_principal_certificate(
    State(state): Shared,
    Path((tenant, app)): Path<(String, String)>,
    body: Bytes,
) -> Reply {
    register_certificate(&state, &tenant, &app, &body, |app| {
        app.service_principal
            .as_mut()
            .map(|principal| &mut principal.key_credentials)
            .ok_or_else(|| missing("the app has no service principal".to_string()))
    })
}

/// The certificate in `body` added to the list `list` picks of the app (its own, or its
/// service principal's), once.
fn register_certificate(
    state: &SimulatorState,
    tenant: &str,
    app: &str,
    body: &Bytes,
    list: impl FnOnce(&mut model::Application) -> Result<&mut Vec<model::KeyCredential>, AdminError>,
) -> Reply {
    let spec: model::CertificateSpec = parse(body)?;
    let credential = spec.build().map_err(bad)?;
    let (key_id, thumbprint) = (credential.key_id, credential.thumbprint());
    let mut world = state.world.lock().expect("world lock");
    with_app(&mut world, tenant, app, |app, _| {
        let keys = list(app)?;
        if keys
            .iter()
            .any(|c| c.key_id == key_id || c.sha1 == credential.sha1)
        {
            return Err(bad("the app already has this certificate".to_string()));
        }
        keys.push(credential);
        Ok(())
    })?;
    Ok((
        StatusCode::CREATED,
        axum::Json(serde_json::json!({ "key_id": key_id, "thumbprint": thumbprint })),
    )
        .into_response())
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct FederatedSpec {
    name: String,
    issuer: String,
    subject: String,
}

async fn add_federated_credential(
    State(state): Shared,
    Path((tenant, app)): Path<(String, String)>,
    body: Bytes,
) -> Reply {
    let spec: FederatedSpec = parse(&body)?;
    let id = Uuid::new_v4();
    let mut world = state.world.lock().expect("world lock");
    with_app(&mut world, &tenant, &app, |app, _| {
        app.federated_credentials.push(model::FederatedCredential {
            id,
            name: spec.name,
            issuer: spec.issuer,
            subject: spec.subject,
        });
        Ok(())
    })?;
    Ok((
        StatusCode::CREATED,
        axum::Json(serde_json::json!({ "id": id })),
    )
        .into_response())
}

async fn remove_certificate(
    State(state): Shared,
    Path((tenant, app, key)): Path<(String, String, String)>,
) -> Reply {
    let key_id = uuid("key id", &key)?;
    let mut world = state.world.lock().expect("world lock");
    with_app(&mut world, &tenant, &app, |app, _| {
        let before = app.key_credentials.len();
        app.key_credentials.retain(|c| c.key_id != key_id);
        if before == app.key_credentials.len() {
            return Err(missing(format!("no certificate {key_id}")));
        }
        Ok(())
    })?;
    ok(serde_json::json!({ "removed": key_id }))
}

async fn remove_secret(
    State(state): Shared,
    Path((tenant, app, key)): Path<(String, String, String)>,
) -> Reply {
    let key_id = uuid("key id", &key)?;
    let mut world = state.world.lock().expect("world lock");
    with_app(&mut world, &tenant, &app, |app, _| {
        let before = app.credentials.len();
        app.credentials.retain(|c| c.key_id != key_id);
        if before == app.credentials.len() {
            return Err(missing(format!("no secret with key id {key_id}")));
        }
        Ok(())
    })?;
    ok(serde_json::json!({ "removed": key_id }))
}

async fn expire_secret(
    State(state): Shared,
    Path((tenant, app, key)): Path<(String, String, String)>,
) -> Reply {
    let key_id = uuid("key id", &key)?;
    let mut world = state.world.lock().expect("world lock");
    let tenant_id = uuid("tenant", &tenant)?;
    let now = world
        .tenants
        .get(&tenant_id)
        .map(|t| t.now())
        .unwrap_or_else(Utc::now);
    with_app(&mut world, &tenant, &app, |app, _| {
        let credential = app
            .credentials
            .iter_mut()
            .find(|c| c.key_id == key_id)
            .ok_or_else(|| missing(format!("no secret with key id {key_id}")))?;
        credential.end = now - chrono::Duration::seconds(1);
        credential.start = credential.start.min(credential.end);
        Ok(())
    })?;
    ok(serde_json::json!({ "expired": key_id }))
}

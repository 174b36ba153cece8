//! `kodo-simulator`: a simulated Microsoft 365 cloud (Entra ID, Microsoft Graph,
//! SharePoint REST) for many tenants at once, speaking Microsoft's wire formats and error
//! codes. Every test, benchmark and the demo run against it; operators use it to try
//! kodo-access and rehearse incidents. It is checked against Microsoft's own client
//! library (MSAL for Python) in the test suite.
//!
//! Paths: `/{tenant}/oauth2/v2.0/token`, `/{tenant}/v2.0/.well-known/openid-configuration`,
//! `/{tenant}/discovery/v2.0/keys`, `/v1.0/…` (Graph), `/_api/…` (SharePoint REST),
//! `/_sim/…` (admin API). Production code never links to this module's behaviour: it is
//! reached only through a cloud configured to point at it.

pub mod admin;
pub mod catalogue;
pub mod graph;
pub mod identity;
pub mod model;
pub mod resource;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use identity::Signer;
use model::{Catalogue, Scenario, World};

pub struct SimulatorState {
    pub world: Mutex<World>,
    pub signer: Signer,
    pub tls: bool,
}

pub struct SimulatorOptions {
    pub listen: SocketAddr,
    pub scenario: Scenario,
    /// Serve HTTPS with a freshly generated CA and leaf certificate; the CA's PEM is
    /// written here so that clients can trust it.
    pub tls_ca_out: Option<PathBuf>,
    /// Sign tokens with ES256 instead of Entra's RS256 (load tests only).
    pub fast_signing: bool,
    /// Which permissions, by name, the scenario presets "backup" and "all" grant.
    pub presets: catalogue::PresetNames,
}

/// A simulator serving in the background until [`RunningSimulator::stop`].
pub struct RunningSimulator {
    pub base_url: String,
    pub address: SocketAddr,
    pub state: Arc<SimulatorState>,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl RunningSimulator {
    pub async fn stop(self) {
        self.shutdown.cancel();
        let _ = self.task.await;
    }

    /// Stops when `token` is cancelled; returns when stopped.
    pub async fn serve_until(self, token: CancellationToken) {
        token.cancelled().await;
        self.stop().await;
    }
}

pub fn load_scenario(path: &std::path::Path) -> Result<Scenario, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|error| format!("cannot read scenario {}: {error}", path.display()))?;
    Scenario::parse(&path.to_string_lossy(), &text)
}

pub async fn start(options: SimulatorOptions) -> anyhow::Result<RunningSimulator> {
    let catalogue = Catalogue::recorded()
        .with_presets(&options.presets)
        .map_err(anyhow::Error::msg)?;
    let mut world = World::new(catalogue);
    if let Some(faults) = options.scenario.faults.clone() {
        faults.validate().map_err(anyhow::Error::msg)?;
        world.faults = faults;
    }
    for tenant in options.scenario.tenants {
        world.add_tenant(tenant).map_err(anyhow::Error::msg)?;
    }
    let state = Arc::new(SimulatorState {
        world: Mutex::new(world),
        signer: if options.fast_signing {
            Signer::generate_fast()?
        } else {
            Signer::generate()?
        },
        tls: options.tls_ca_out.is_some(),
    });
    let router = admin::router()
        .fallback(microsoft)
        .with_state(state.clone());
    let listener = std::net::TcpListener::bind(options.listen)
        .map_err(|error| anyhow::anyhow!("cannot listen on {}: {error}", options.listen))?;
    listener.set_nonblocking(true)?;
    let address = listener.local_addr()?;
    let shutdown = CancellationToken::new();
    let task = match &options.tls_ca_out {
        None => {
            let listener = tokio::net::TcpListener::from_std(listener)?;
            let token = shutdown.clone();
            tokio::spawn(async move {
                let _ = axum::serve(listener, router)
                    .with_graceful_shutdown(async move { token.cancelled().await })
                    .await;
            })
        }
        Some(ca_out) => {
            let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
            let (ca_pem, chain_pem, key_pem) = certificates()?;
            std::fs::write(ca_out, &ca_pem).map_err(|error| {
                anyhow::anyhow!("cannot write the CA to {}: {error}", ca_out.display())
            })?;
            let config = axum_server::tls_rustls::RustlsConfig::from_pem(
                chain_pem.into_bytes(),
                key_pem.into_bytes(),
            )
            .await?;
            let handle = axum_server::Handle::new();
            let server = axum_server::from_tcp_rustls(listener, config)?.handle(handle.clone());
            let token = shutdown.clone();
            tokio::spawn(async move {
                token.cancelled().await;
                handle.graceful_shutdown(Some(Duration::from_secs(2)));
            });
            tokio::spawn(async move {
                let _ = server.serve(router.into_make_service()).await;
            })
        }
    };
    let scheme = if options.tls_ca_out.is_some() {
        "https"
    } else {
        "http"
    };
    let host = if options.tls_ca_out.is_some() && address.ip().is_loopback() {
        "localhost".to_string()
    } else {
        address.ip().to_string()
    };
    Ok(RunningSimulator {
        base_url: format!("{scheme}://{host}:{}", address.port()),
        address,
        state,
        shutdown,
        task,
    })
}

/// A CA and a leaf certificate for localhost and 127.0.0.1 signed by it (rustls refuses
/// a self-signed CA certificate as a server certificate).
fn certificates() -> anyhow::Result<(String, String, String)> {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyPair, KeyUsagePurpose,
    };
    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "kodo-access simulated cloud CA");
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca_params, ca_key);
    let leaf_key = KeyPair::generate()?;
    let mut leaf = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])?;
    leaf.is_ca = IsCa::NoCa;
    leaf.distinguished_name
        .push(DnType::CommonName, "localhost");
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    leaf.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    let leaf_cert = leaf.signed_by(&leaf_key, &issuer)?;
    let ca_pem = ca_cert.pem();
    Ok((
        ca_pem.clone(),
        format!("{}{}", leaf_cert.pem(), ca_pem),
        leaf_key.serialize_pem(),
    ))
}

/// Everything that is not the admin API: identity, Graph and SharePoint.
async fn microsoft(State(state): State<Arc<SimulatorState>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = match axum::body::to_bytes(body, 1 << 20).await {
        Ok(body) => body,
        Err(_) => return (StatusCode::PAYLOAD_TOO_LARGE, "request body too large").into_response(),
    };
    let path = parts.uri.path().to_string();
    let query = parts.uri.query().unwrap_or("").to_string();
    let scheme = if state.tls { "https" } else { "http" };
    let host = parts
        .headers
        .get("host")
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost")
        .to_string();
    let base = format!("{scheme}://{host}");
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();

    // Which tenant the request concerns, for per-tenant faults.
    let tenant_hint: Option<Uuid> = {
        let world = state.world.lock().expect("world lock");
        match segments.first() {
            Some(&"v1.0") | Some(&"_api") => bearer_tenant(&parts.headers),
            Some(name) => world.find_tenant(name).map(|tenant| tenant.id),
            None => None,
        }
    };
    let faults = state
        .world
        .lock()
        .expect("world lock")
        .faults_for(tenant_hint);
    if faults.latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(faults.latency_ms)).await;
    }
    // Signature checks need no state: done before the lock, so they run in parallel.
    let verified = match segments.first() {
        Some(&"v1.0") => Some(graph::verify_graph(&state.signer, &parts.headers)),
        Some(&"_api") => Some(graph::verify_sharepoint(&state.signer, &parts.headers)),
        _ => None,
    };
    // The world is locked only in this block: nothing in it awaits.
    let (response, lost) = {
        let mut world = state.world.lock().expect("world lock");
        let endpoint_kind = match segments.first() {
            Some(&"v1.0") => "graph",
            Some(&"_api") => "sharepoint",
            _ => "identity",
        };
        if let Some(response) = apply_faults(&mut world, tenant_hint, &faults, endpoint_kind) {
            world.counters.record(
                &format!("{endpoint_kind} fault"),
                tenant_hint,
                response.status().as_u16(),
            );
            return response;
        }
        let (reply, tenant, endpoint) = dispatch(
            &mut world,
            &state.signer,
            verified,
            &parts.method,
            &segments,
            &path,
            &query,
            &parts.headers,
            &body,
            &base,
        );
        let response = match reply {
            Reply::Ready(response) => response,
            Reply::Sign(claims) => {
                drop(world);
                let response = identity::issue(&state.signer, &claims);
                world = state.world.lock().expect("world lock");
                response
            }
        };
        // Act, then lose the answer: only writes that succeeded, so the caller cannot know.
        let write = (parts.method == Method::POST || parts.method == Method::PATCH)
            && endpoint_kind == "graph";
        let lost = record_reply(
            world,
            endpoint,
            tenant.or(tenant_hint),
            &response,
            write,
            &faults,
        );
        (response, lost)
    };
    match lost {
        None => response,
        Some(delay_ms) => lose_answer(response, delay_ms).await,
    }
}

/// Counts the reply, and decides whether its answer is lost (the delay, when it is).
fn record_reply(
    mut world: std::sync::MutexGuard<'_, World>,
    endpoint: &str,
    tenant: Option<Uuid>,
    response: &Response,
    write: bool,
    faults: &model::Faults,
) -> Option<u64> {
    let status = response.status().as_u16();
    let lose = write
        && response.status().is_success()
        && faults.lost_answer_rate > 0.0
        && rand::random::<f64>() < faults.lost_answer_rate;
    if lose {
        world
            .counters
            .record(&format!("{endpoint} answer lost"), tenant, status);
        Some(faults.lost_answer_delay_ms)
    } else {
        world.counters.record(endpoint, tenant, status);
        None
    }
}

/// An answer that never arrives whole: held past the caller's timeout, or cut after the
/// status line (hyper then closes the connection mid-body).
async fn lose_answer(response: Response, delay_ms: u64) -> Response {
    if delay_ms > 0 {
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        return response;
    }
    let (mut parts, _) = response.into_parts();
    parts.headers.remove(axum::http::header::CONTENT_LENGTH);
    let cut = futures_util::stream::once(async {
        Err::<Bytes, std::io::Error>(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "the simulated network lost this answer",
        ))
    });
    Response::from_parts(parts, axum::body::Body::from_stream(cut))
}

/// What a request needs: an answer now, or a token to sign once the lock is released.
enum Reply {
    Ready(Response),
    Sign(identity::AccessClaims),
}

#[derive(serde::Deserialize)]
struct TenantClaim {
    tid: String,
}

fn bearer_tenant(headers: &HeaderMap) -> Option<Uuid> {
    let value = headers.get("authorization")?.to_str().ok()?;
    let token = value.strip_prefix("Bearer ")?;
    // Only to count the request against its tenant's budget: the endpoint itself
    // verifies the token.
    let claims = jsonwebtoken::dangerous::insecure_decode::<TenantClaim>(token).ok()?;
    Uuid::try_parse(&claims.claims.tid).ok()
}

/// Throttling past the request budget, and the configured rate of 5xx answers.
fn apply_faults(
    world: &mut World,
    tenant: Option<Uuid>,
    faults: &model::Faults,
    kind: &str,
) -> Option<Response> {
    let tenant_has_own = tenant
        .and_then(|id| world.tenants.get(&id))
        .is_some_and(|t| t.faults != model::Faults::default());
    if let Some(budget) = faults.request_budget {
        let window = match tenant
            .and_then(|id| world.tenants.get_mut(&id))
            .filter(|_| tenant_has_own)
        {
            Some(tenant) => &mut tenant.budget,
            None => &mut world.global_budget,
        };
        if let Some(wait) = window.take(budget, Duration::from_secs(faults.retry_after_secs.max(1)))
        {
            // Retry-After is whole seconds: round up, so a client that honours it is in the next window.
            let seconds = u64::try_from(wait.as_millis().div_ceil(1000).max(1)).unwrap_or(u64::MAX);
            return Some(throttled(kind, seconds));
        }
    }
    if faults.error_rate > 0.0 && rand::random::<f64>() < faults.error_rate {
        let retry_after = faults.retry_after_secs.to_string();
        let mut response = match kind {
            "identity" => identity::entra_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                90033,
                "A transient error has occurred. Please try again.",
            ),
            _ => graph::graph_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "serviceNotAvailable",
                "The service is temporarily unavailable. Please retry later.",
            ),
        };
        response
            .headers_mut()
            .insert("retry-after", retry_after.parse().expect("digits"));
        return Some(response);
    }
    None
}

fn throttled(kind: &str, retry_after: u64) -> Response {
    let mut response = match kind {
        "identity" => identity::entra_error(
            StatusCode::TOO_MANY_REQUESTS,
            "temporarily_unavailable",
            90055,
            "The request was throttled: too many requests for this tenant.",
        ),
        _ => graph::graph_error(
            StatusCode::TOO_MANY_REQUESTS,
            "TooManyRequests",
            "Too many requests.",
        ),
    };
    response.headers_mut().insert(
        "retry-after",
        retry_after.to_string().parse().expect("digits"),
    );
    response
}

#[allow(clippy::too_many_arguments)]
fn dispatch(
    world: &mut World,
    signer: &Signer,
    verified: Option<Result<identity::AccessClaims, &'static str>>,
    method: &Method,
    segments: &[&str],
    path: &str,
    query: &str,
    headers: &HeaderMap,
    body: &Bytes,
    base: &str,
) -> (Reply, Option<Uuid>, &'static str) {
    let (response, tenant, endpoint) = match segments {
        ["v1.0", ..] => {
            let rest = path.trim_start_matches('/').trim_start_matches("v1.0/");
            let verified = verified.unwrap_or(Err("no bearer token"));
            graph::handle(world, verified, graph::GraphRequest { method: method.clone(), path: rest, query, headers, body, base })
        }
        ["_api", ..] => {
            let (response, tenant) = graph::sharepoint(world, verified.unwrap_or(Err("no bearer token")));
            (response, tenant, "sharepoint")
        }
        [tenant, "oauth2", "v2.0", "token"] if *method == Method::POST => {
            let form: identity::TokenForm = serde_urlencoded_form(body);
            return match identity::token(world, tenant, headers, form) {
                (Ok(claims), tenant) => (Reply::Sign(claims), tenant, "token"),
                (Err(response), tenant) => (Reply::Ready(response), tenant, "token"),
            };
        }
        [tenant, "v2.0", ".well-known", "openid-configuration"] | [tenant, ".well-known", "openid-configuration"] if *method == Method::GET => {
            match world.find_tenant(tenant) {
                Some(found) => {
                    let id = found.id;
                    (axum::Json(identity::discovery(base, id)).into_response(), Some(id), "discovery")
                }
                None => (
                    identity::entra_error(StatusCode::BAD_REQUEST, "invalid_tenant", 90002, &format!("Tenant '{tenant}' not found.")),
                    None,
                    "discovery",
                ),
            }
        }
        [_, "discovery", "v2.0", "keys"] | [_, "discovery", "keys"] if *method == Method::GET => {
            (axum::Json(serde_json::json!({ "keys": if signer.jwk.is_null() { vec![] } else { vec![signer.jwk.clone()] } })).into_response(), None, "keys")
        }
        _ => (
            (StatusCode::NOT_FOUND, axum::Json(serde_json::json!({ "error": format!("the simulated cloud has no {method} {path}") }))).into_response(),
            None,
            "unknown",
        ),
    };
    (Reply::Ready(response), tenant, endpoint)
}

fn serde_urlencoded_form(body: &[u8]) -> identity::TokenForm {
    let mut form = identity::TokenForm::default();
    for (key, value) in url::form_urlencoded::parse(body) {
        let value = Some(value.into_owned());
        match key.as_ref() {
            "grant_type" => form.grant_type = value,
            "client_id" => form.client_id = value,
            "client_secret" => form.client_secret = value,
            "client_assertion_type" => form.client_assertion_type = value,
            "client_assertion" => form.client_assertion = value,
            "scope" => form.scope = value,
            _ => {}
        }
    }
    form
}

//! What one check looks at, through the Microsoft client: tokens per resource, the
//! application with its secrets, the granted appRoleAssignments and the SharePoint probe.
//! Six requests for an organization checked on all three resources; nothing is fetched
//! twice (the Graph token's `oid` is the service principal's id; assignment resources are
//! told apart by their app-role ids, so no per-tenant lookup is needed).

use std::collections::{BTreeMap, HashMap};

use uuid::Uuid;

use super::verdict::{
    CredentialPlace, CredentialSeen, Failure, GraphObservation, Observations, OurSecret,
    ProbeObservation, TokenObservation,
};
use crate::microsoft::graph::AppRoleAssignment;
use crate::microsoft::permissions::Manifest;
use crate::microsoft::token::AccessToken;
use crate::microsoft::{Endpoints, GraphError, MicrosoftClient, Resource, TokenError};

/// One organization, ready to be checked.
pub struct Target {
    pub organization_id: crate::domain::OrganizationId,
    pub name: String,
    pub endpoints: Endpoints,
    /// The resources to check (Graph is always asked, it is how the rest is read).
    pub resources: Vec<Resource>,
    /// The current credential: a client secret or a certificate.
    pub credential: crate::microsoft::Credential,
    pub our_secret: OurSecret,
}

fn token_failure(error: &TokenError) -> Failure {
    Failure {
        kind: error.kind.as_str().into(),
        http_status: error.http_status,
        codes: error.codes.clone(),
        code: error.error.clone(),
        message: error.to_string(),
    }
}

fn graph_failure(error: &GraphError) -> Failure {
    Failure {
        kind: error.kind.as_str().into(),
        http_status: error.http_status,
        codes: Vec::new(),
        code: error.code.clone(),
        message: error.to_string(),
    }
}

fn observed_token(result: &Result<AccessToken, TokenError>) -> TokenObservation {
    match result {
        Ok(token) => TokenObservation::Issued {
            roles: token.claims.roles().to_vec(),
            certificate: token.claims.authenticated_with_certificate(),
        },
        Err(error) => TokenObservation::Refused {
            failure: error.kind,
            detail: token_failure(error),
        },
    }
}

/// Runs the check's requests and records what came back. Never fails: every failure is
/// an observation.
pub async fn observe(
    client: &MicrosoftClient,
    manifest: &Manifest,
    target: &Target,
) -> Observations {
    let endpoints = &target.endpoints;
    let wants = |resource| target.resources.contains(&resource);
    let sharepoint_possible = endpoints.sharepoint_host.is_some();
    let (graph, exchange, sharepoint) = tokio::join!(
        client.token(endpoints, &target.credential, Resource::Graph),
        async {
            if wants(Resource::Exchange) {
                Some(
                    client
                        .token(endpoints, &target.credential, Resource::Exchange)
                        .await,
                )
            } else {
                None
            }
        },
        async {
            if wants(Resource::SharePoint) && sharepoint_possible {
                Some(
                    client
                        .token(endpoints, &target.credential, Resource::SharePoint)
                        .await,
                )
            } else {
                None
            }
        },
    );
    let mut observations = Observations {
        our_secret: target.our_secret.clone(),
        ..Default::default()
    };
    observations
        .tokens
        .insert(Resource::Graph, observed_token(&graph));
    if let Some(exchange) = &exchange {
        observations
            .tokens
            .insert(Resource::Exchange, observed_token(exchange));
    }
    if let Some(sharepoint) = &sharepoint {
        observations
            .tokens
            .insert(Resource::SharePoint, observed_token(sharepoint));
    }
    if wants(Resource::SharePoint) && !sharepoint_possible {
        observations.not_configured.push(Resource::SharePoint);
    }
    let Ok(graph) = graph else {
        return observations;
    };
    let principal_id = graph.claims.oid.clone();
    let (application, service_principal, assignments, probe) = tokio::join!(
        client.get_application(endpoints, &graph),
        async {
            match &principal_id {
                Some(id) => Some(
                    client
                        .get_service_principal_credentials(endpoints, &graph, id)
                        .await,
                ),
                None => None,
            }
        },
        async {
            match &principal_id {
                Some(id) => Some(
                    client
                        .list_app_role_assignments(endpoints, &graph, id)
                        .await,
                ),
                None => None,
            }
        },
        async {
            match &sharepoint {
                Some(Ok(token)) => Some(client.probe_sharepoint(endpoints, token).await),
                _ => None,
            }
        },
    );
    observations.application = Some(graph_observation(application, |application| {
        credentials_seen(
            application.password_credentials,
            application.key_credentials,
            CredentialPlace::Application,
        )
        .chain(
            application
                .federated_identity_credentials
                .into_iter()
                .map(|c| CredentialSeen {
                    key_id: c.id,
                    display_name: c.name,
                    issuer: Some(format!(
                        "{} (subject {})",
                        c.issuer.unwrap_or_default(),
                        c.subject.unwrap_or_default()
                    )),
                    place: CredentialPlace::Federated,
                    ..Default::default()
                }),
        )
        .collect()
    }));
    observations.service_principal = service_principal.map(|result| {
        graph_observation(result, |principal| {
            credentials_seen(
                principal.password_credentials,
                principal.key_credentials,
                CredentialPlace::ServicePrincipal,
            )
            .collect()
        })
    });
    observations.assignments = assignments.map(|result| {
        graph_observation(result, |assignments| {
            map_assignments(&assignments, manifest)
        })
    });
    observations.sharepoint = probe.map(|result| match result {
        Ok(probe) => probe.into(),
        Err(error) => ProbeObservation::Failed {
            failure: error.kind,
            detail: graph_failure(&error),
        },
    });
    observations
}

/// A Graph read as the check records it: what was seen, or why not.
fn graph_observation<T, U>(
    result: Result<T, GraphError>,
    seen: impl FnOnce(T) -> U,
) -> GraphObservation<U> {
    match result {
        Ok(value) => GraphObservation::Seen { value: seen(value) },
        Err(error) => GraphObservation::Failed {
            failure: error.kind,
            detail: graph_failure(&error),
        },
    }
}

/// Secrets and certificates as a check records them.
fn credentials_seen(
    passwords: Vec<crate::microsoft::graph::PasswordCredential>,
    keys: Vec<crate::microsoft::graph::KeyCredential>,
    place: CredentialPlace,
) -> impl Iterator<Item = CredentialSeen> {
    passwords
        .into_iter()
        .map(move |c| CredentialSeen {
            key_id: c.key_id,
            display_name: c.display_name,
            hint: c.hint,
            end: c.end_date_time,
            place,
            ..Default::default()
        })
        .chain(keys.into_iter().map(move |c| CredentialSeen {
            thumbprint: c.thumbprint(),
            key_id: c.key_id,
            display_name: c.display_name,
            end: c.end_date_time,
            place,
            ..Default::default()
        }))
}

/// Turns assignments into (resource, app-role id) pairs. An assignment names its resource
/// by the resource's service-principal object id, which differs per tenant; an app-role id
/// that only one resource defines tells which resource that object id is, and the few ids
/// two resources share (User.ReadWrite.All) are resolved through it.
pub fn map_assignments(
    assignments: &[AppRoleAssignment],
    manifest: &Manifest,
) -> Vec<(Resource, Uuid)> {
    let candidates = |role: Uuid| -> Vec<Resource> {
        manifest
            .resources
            .iter()
            .filter(|resource| {
                resource
                    .permissions
                    .iter()
                    .any(|permission| permission.id == role)
            })
            .map(|resource| resource.key)
            .collect()
    };
    let mut principal_resource: HashMap<&str, Resource> = HashMap::new();
    for assignment in assignments {
        if let [only] = candidates(assignment.app_role_id)[..] {
            principal_resource.insert(assignment.resource_id.as_str(), only);
        }
    }
    let by_display_name = |name: Option<&str>| match name {
        Some("Microsoft Graph") => Some(Resource::Graph),
        Some("Office 365 Exchange Online") => Some(Resource::Exchange),
        Some("Office 365 SharePoint Online") => Some(Resource::SharePoint),
        _ => None,
    };
    let mut pairs: BTreeMap<(Resource, Uuid), ()> = BTreeMap::new();
    for assignment in assignments {
        let resource = principal_resource
            .get(assignment.resource_id.as_str())
            .copied()
            .or_else(|| match candidates(assignment.app_role_id)[..] {
                [only] => Some(only),
                _ => by_display_name(assignment.resource_display_name.as_deref()),
            });
        if let Some(resource) = resource {
            pairs.insert((resource, assignment.app_role_id), ());
        }
    }
    pairs.into_keys().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assignment(resource_id: &str, role: &str, display: Option<&str>) -> AppRoleAssignment {
        AppRoleAssignment {
            id: Uuid::new_v4().to_string(),
            app_role_id: role.parse().unwrap(),
            principal_id: None,
            resource_id: resource_id.into(),
            resource_display_name: display.map(String::from),
        }
    }

    #[test]
    fn shared_role_ids_are_told_apart_by_their_resource() {
        let manifest = crate::config::builtin_manifest();
        let user_rw = "741f803b-c850-494e-b5df-cde7c675a1ca"; // Graph and SharePoint both
        let assignments = [
            assignment("graph-sp", "e2a3a72e-5f79-4c64-b1b1-878b674786c9", None), // Mail.ReadWrite: Graph only
            assignment("graph-sp", user_rw, None),
            assignment("spo-sp", "678536fe-1083-478a-9c59-b99265e6b0d3", None), // SPO Sites.FullControl.All
            assignment("spo-sp", user_rw, None),
            assignment("lonely-sp", user_rw, Some("Office 365 SharePoint Online")),
            assignment(
                "other-sp",
                "00000000-0000-4000-8000-000000000001",
                Some("Some API"),
            ),
        ];
        let pairs = map_assignments(&assignments, &manifest);
        let user_rw: Uuid = user_rw.parse().unwrap();
        assert!(pairs.contains(&(Resource::Graph, user_rw)));
        assert!(pairs.contains(&(Resource::SharePoint, user_rw)));
        assert_eq!(pairs.len(), 4, "{pairs:?}");
    }
}

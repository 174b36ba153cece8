//! What an organization is checked and rotated against, from its row and the settings:
//! the endpoints of its cloud and tenant, and the resources it is checked on. Shared by
//! the checks and the rotation, neither of which owns it.

use crate::context::Context;
use crate::domain::{ClientId, SharePointHost, TenantId};
use crate::microsoft::{Endpoints, Resource};
use crate::store::checks::TargetRow;

/// The organization's endpoints: its configured cloud applied to its tenant and app.
pub fn endpoints(context: &Context, row: &TargetRow) -> Result<Endpoints, String> {
    let cloud = context
        .settings
        .clouds
        .get(&row.cloud)
        .ok_or_else(|| format!("cloud {:?} is not configured", row.cloud))?
        .clone();
    Ok(Endpoints {
        cloud,
        tenant_id: TenantId::from_uuid(row.tenant_id),
        client_id: ClientId::from_uuid(row.client_id),
        sharepoint_host: row
            .sharepoint_host
            .as_deref()
            .and_then(|host| SharePointHost::parse(host).ok()),
    })
}

/// The resources the organization is checked on (and a new secret verified on).
pub fn resources(context: &Context, row: &TargetRow) -> Vec<Resource> {
    row.settings
        .0
        .get("resources")
        .and_then(|value| value.as_array())
        .map(|names| {
            names
                .iter()
                .filter_map(|n| n.as_str().and_then(Resource::parse))
                .collect()
        })
        .unwrap_or_else(|| context.settings.checks.resources.clone())
}

/// The resources a new secret is verified on: Graph always, and those the organization is
/// checked on that apply to it (SharePoint only with a SharePoint host in its endpoints,
/// as the check skips it otherwise).
pub fn resources_that_apply(
    context: &Context,
    row: &TargetRow,
    endpoints: &Endpoints,
) -> Vec<Resource> {
    let mut resources = resources(context, row);
    resources.retain(|resource| {
        *resource != Resource::SharePoint || endpoints.sharepoint_host.is_some()
    });
    if !resources.contains(&Resource::Graph) {
        resources.insert(0, Resource::Graph);
    }
    resources
}

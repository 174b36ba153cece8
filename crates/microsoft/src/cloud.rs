//! Every URL kodo-access calls, derived from the organization's cloud (reference §9).
//! Tests and the demo point a configured cloud at the simulator; there is no other path.

use std::collections::BTreeMap;

use url::Url;

use crate::ids::{ClientId, SharePointHost, TenantId};

/// The endpoints of one Microsoft cloud (built in or defined in configuration).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloudSettings {
    /// Entra ID, e.g. https://login.microsoftonline.com.
    pub authority: Url,
    /// Where Graph requests go.
    pub graph: Url,
    /// Where Exchange Online requests go.
    pub exchange: Url,
    pub sharepoint_suffix: String,
    /// The identifiers tokens are requested for (`{resource}/.default`). The same as the
    /// endpoints in Microsoft's clouds; a simulated cloud keeps Microsoft's identifiers
    /// while its endpoints point elsewhere.
    pub graph_resource: Url,
    pub exchange_resource: Url,
    /// Where SharePoint REST requests go, when not `https://{sharepoint_host}`.
    pub sharepoint: Option<Url>,
}

/// Microsoft's clouds by the names configuration uses.
pub fn builtin_clouds() -> BTreeMap<String, CloudSettings> {
    // Reference: Microsoft's national cloud endpoints (shared/reference/microsoft-365.md §9).
    let cloud = |authority: &str, graph: &str, exchange: &str, sharepoint_suffix: &str| {
        let graph = Url::parse(graph).expect("built-in URL");
        let exchange = Url::parse(exchange).expect("built-in URL");
        CloudSettings {
            authority: Url::parse(authority).expect("built-in URL"),
            graph_resource: graph.clone(),
            exchange_resource: exchange.clone(),
            graph,
            exchange,
            sharepoint_suffix: sharepoint_suffix.to_string(),
            sharepoint: None,
        }
    };
    BTreeMap::from([
        (
            "global".to_string(),
            cloud(
                "https://login.microsoftonline.com",
                "https://graph.microsoft.com",
                "https://outlook.office365.com",
                "sharepoint.com",
            ),
        ),
        (
            "usgov".to_string(),
            cloud(
                "https://login.microsoftonline.us",
                "https://graph.microsoft.us",
                "https://outlook.office365.us",
                "sharepoint.us",
            ),
        ),
        (
            "usdod".to_string(),
            cloud(
                "https://login.microsoftonline.us",
                "https://dod-graph.microsoft.us",
                "https://webmail.apps.mil",
                "sharepoint-mil.us",
            ),
        ),
        (
            "china".to_string(),
            cloud(
                "https://login.partner.microsoftonline.cn",
                "https://microsoftgraph.chinacloudapi.cn",
                "https://partner.outlook.cn",
                "sharepoint.cn",
            ),
        ),
    ])
}

/// A resource an app-only token is requested for.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Resource {
    Graph,
    Exchange,
    SharePoint,
}

impl Resource {
    pub const ALL: [Resource; 3] = [Resource::Graph, Resource::Exchange, Resource::SharePoint];

    /// The resource's well-known application id (reference §6).
    pub fn app_id(self) -> &'static str {
        match self {
            Resource::Graph => "00000003-0000-0000-c000-000000000000",
            Resource::Exchange => "00000002-0000-0ff1-ce00-000000000000",
            Resource::SharePoint => "00000003-0000-0ff1-ce00-000000000000",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Resource::Graph => "graph",
            Resource::Exchange => "exchange",
            Resource::SharePoint => "sharepoint",
        }
    }

    pub fn from_app_id(app_id: &str) -> Option<Resource> {
        Resource::ALL
            .into_iter()
            .find(|resource| resource.app_id().eq_ignore_ascii_case(app_id))
    }

    pub fn parse(name: &str) -> Option<Resource> {
        Resource::ALL
            .into_iter()
            .find(|resource| resource.as_str() == name)
    }
}

/// The endpoints of one organization: its cloud applied to its tenant.
#[derive(Debug, Clone)]
pub struct Endpoints {
    pub cloud: CloudSettings,
    pub tenant_id: TenantId,
    pub client_id: ClientId,
    pub sharepoint_host: Option<SharePointHost>,
}

/// `base` + `path`, where `path` may carry a query (`users?$top=1`).
fn join(base: &Url, path: &str) -> Url {
    let (path, query) = match path.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (path, None),
    };
    let mut url = base.clone();
    let prefix = url.path().trim_end_matches('/').to_string();
    url.set_path(&format!("{prefix}/{}", path.trim_start_matches('/')));
    url.set_query(query);
    url
}

impl Endpoints {
    /// `{authority}/{tenant}/oauth2/v2.0/token`: always tenant-specific, never /common.
    pub fn token_url(&self) -> Url {
        join(
            &self.cloud.authority,
            &format!("{}/oauth2/v2.0/token", self.tenant_id),
        )
    }

    /// The `scope` for a resource's app-only token: its identifier plus `/.default`.
    /// `None` for SharePoint when the organization has no SharePoint host.
    pub fn scope(&self, resource: Resource) -> Option<String> {
        let identifier = match resource {
            Resource::Graph => self
                .cloud
                .graph_resource
                .as_str()
                .trim_end_matches('/')
                .to_string(),
            Resource::Exchange => self
                .cloud
                .exchange_resource
                .as_str()
                .trim_end_matches('/')
                .to_string(),
            Resource::SharePoint => format!("https://{}", self.sharepoint_host.as_ref()?.as_str()),
        };
        Some(format!("{identifier}/.default"))
    }

    /// A Graph v1.0 URL, e.g. `graph_url("applications(appId='…')")`.
    pub fn graph_url(&self, path: &str) -> Url {
        join(
            &self.cloud.graph,
            &format!("v1.0/{}", path.trim_start_matches('/')),
        )
    }

    pub fn graph_base(&self) -> &Url {
        &self.cloud.graph
    }

    /// The SharePoint REST probe: `https://{host}/_api/web`, or the cloud's SharePoint
    /// endpoint when the configuration sets one (the simulator).
    pub fn sharepoint_probe_url(&self) -> Option<Url> {
        let host = self.sharepoint_host.as_ref()?;
        let base = match &self.cloud.sharepoint {
            Some(base) => base.clone(),
            None => Url::parse(&format!("https://{}", host.as_str())).ok()?,
        };
        Some(join(&base, "_api/web?$select=Title"))
    }

    /// Where a tenant admin grants consent to everything the app requires.
    pub fn admin_consent_url(&self) -> Url {
        let mut url = join(
            &self.cloud.authority,
            &format!("{}/adminconsent", self.tenant_id),
        );
        url.query_pairs_mut()
            .append_pair("client_id", &self.client_id.to_string());
        url
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoints(cloud: &str) -> Endpoints {
        Endpoints {
            cloud: builtin_clouds()[cloud].clone(),
            tenant_id: TenantId::parse("6f1c3f2e-4c55-4a8b-9d2e-0b7c1a2d3e4f").unwrap(),
            client_id: ClientId::parse("0d9a8b7c-6e5f-4a3b-8c2d-1e0f9a8b7c6d").unwrap(),
            sharepoint_host: Some(SharePointHost::parse("contoso.sharepoint.us").unwrap()),
        }
    }

    #[test]
    fn national_cloud_urls() {
        let global = endpoints("global");
        assert_eq!(
            global.token_url().as_str(),
            "https://login.microsoftonline.com/6f1c3f2e-4c55-4a8b-9d2e-0b7c1a2d3e4f/oauth2/v2.0/token"
        );
        assert_eq!(
            global.scope(Resource::Graph).unwrap(),
            "https://graph.microsoft.com/.default"
        );
        assert_eq!(
            global.scope(Resource::Exchange).unwrap(),
            "https://outlook.office365.com/.default"
        );
        assert_eq!(
            global.graph_url("servicePrincipals(appId='x')").as_str(),
            "https://graph.microsoft.com/v1.0/servicePrincipals(appId='x')"
        );
        assert_eq!(
            global.graph_url("users?$top=1&$select=id").as_str(),
            "https://graph.microsoft.com/v1.0/users?$top=1&$select=id"
        );
        let usgov = endpoints("usgov");
        assert_eq!(
            usgov.token_url().host_str(),
            Some("login.microsoftonline.us")
        );
        assert_eq!(
            usgov.scope(Resource::Graph).unwrap(),
            "https://graph.microsoft.us/.default"
        );
        assert_eq!(
            usgov.scope(Resource::SharePoint).unwrap(),
            "https://contoso.sharepoint.us/.default"
        );
        assert_eq!(
            usgov.sharepoint_probe_url().unwrap().as_str(),
            "https://contoso.sharepoint.us/_api/web?$select=Title"
        );
        assert_eq!(
            endpoints("usdod").graph_url("x").host_str(),
            Some("dod-graph.microsoft.us")
        );
        let china = endpoints("china");
        assert_eq!(
            china.token_url().host_str(),
            Some("login.partner.microsoftonline.cn")
        );
        assert_eq!(
            china.admin_consent_url().as_str(),
            "https://login.partner.microsoftonline.cn/6f1c3f2e-4c55-4a8b-9d2e-0b7c1a2d3e4f/adminconsent?client_id=0d9a8b7c-6e5f-4a3b-8c2d-1e0f9a8b7c6d"
        );
    }
}

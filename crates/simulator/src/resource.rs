//! The three Microsoft resources the simulated cloud serves, by their well-known
//! application ids (Microsoft's first-party service principals, the same in every tenant).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Resource {
    Graph,
    Exchange,
    SharePoint,
}

impl Resource {
    pub const ALL: [Resource; 3] = [Resource::Graph, Resource::Exchange, Resource::SharePoint];

    /// The resource's application id: Microsoft Graph, Office 365 Exchange Online,
    /// Office 365 SharePoint Online.
    pub fn app_id(self) -> &'static str {
        match self {
            Resource::Graph => "00000003-0000-0000-c000-000000000000",
            Resource::Exchange => "00000002-0000-0ff1-ce00-000000000000",
            Resource::SharePoint => "00000003-0000-0ff1-ce00-000000000000",
        }
    }

    pub fn display_name(self) -> &'static str {
        match self {
            Resource::Graph => "Microsoft Graph",
            Resource::Exchange => "Office 365 Exchange Online",
            Resource::SharePoint => "Office 365 SharePoint Online",
        }
    }

    /// The name scenario files and the admin API use: graph, exchange, sharepoint.
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

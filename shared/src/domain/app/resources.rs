//! The audiences a connection gets tokens for (EWS, Graph), each with
//! the scopes of one resource.

use super::*;

/// One audience for access tokens, with the delegated scopes asked for it.
/// Each token request names the scopes of exactly one resource (AADSTS700022).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resource {
    pub name: String,
    pub scopes: Vec<String>,
}

impl Resource {
    /// Exchange Web Services, delegated.
    pub fn ews(cloud: Cloud) -> Self {
        Self {
            name: "ews".into(),
            scopes: vec![format!("{}/EWS.AccessAsUser.All", cloud.ews_origin())],
        }
    }

    /// Microsoft Graph, delegated, what room booking needs.
    pub fn graph(cloud: Cloud) -> Self {
        let origin = cloud.graph_origin();
        let scopes = [
            "Calendars.ReadWrite",
            "Calendars.ReadWrite.Shared",
            "Place.Read.All",
            "User.Read",
        ];
        Self {
            name: "graph".into(),
            scopes: scopes.iter().map(|s| format!("{origin}/{s}")).collect(),
        }
    }

    /// A resource for app-only tokens: its `.default` scope, which takes
    /// whatever the app was granted (Graph application permissions, or
    /// RBAC for Applications in Exchange).
    pub fn app_only_presets(names: &str, cloud: Cloud) -> Result<Vec<Self>, InvalidApp> {
        let mut resources = Self::presets(names, cloud)?;
        for resource in &mut resources {
            let origin = match resource.name.as_str() {
                "ews" => cloud.ews_origin(),
                _ => cloud.graph_origin(),
            };
            resource.scopes = vec![format!("{origin}/.default")];
        }
        Ok(resources)
    }

    /// Parses `ews,graph` into the presets for a cloud.
    pub fn presets(names: &str, cloud: Cloud) -> Result<Vec<Self>, InvalidApp> {
        let resources = names
            .split(',')
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map(|name| match name {
                "ews" => Ok(Self::ews(cloud)),
                "graph" => Ok(Self::graph(cloud)),
                other => Err(InvalidApp::UnknownResource(other.to_owned())),
            })
            .collect::<Result<Vec<_>, _>>()?;
        if resources.is_empty() {
            return Err(InvalidApp::NoResource);
        }
        Ok(resources)
    }

    /// One resource named `default` with scopes given verbatim.
    pub fn custom(scopes: &str) -> Result<Self, InvalidApp> {
        let scopes: Vec<String> = scopes
            .split_whitespace()
            .filter(|s| !OIDC_SCOPES.contains(s))
            .map(str::to_owned)
            .collect();
        if scopes.is_empty() {
            return Err(InvalidApp::NoResource);
        }
        Ok(Self {
            name: "default".into(),
            scopes,
        })
    }

    /// The scopes of a token request for this resource.
    pub fn token_request_scopes(&self) -> Vec<String> {
        let mut scopes = self.scopes.clone();
        scopes.push("offline_access".into());
        scopes
    }
}

/// Scopes that ask for an id_token and a refresh token, not for a resource.
pub const OIDC_SCOPES: [&str; 4] = ["openid", "profile", "offline_access", "email"];

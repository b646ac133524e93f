//! Scope parsing: OIDC scopes, resource scopes, one resource per token.

use crate::errors::AadError;

/// The resource a scope without prefix belongs to.
pub(crate) const GRAPH: &str = "https://graph.microsoft.com";

/// Scopes that do not name a resource.
const OIDC_SCOPES: [&str; 4] = ["openid", "profile", "offline_access", "email"];

/// A parsed `scope` parameter.
#[derive(Clone, Debug, Default)]
pub(crate) struct Scopes {
    /// OIDC scopes asked for, lower-cased, in request order, without duplicates.
    pub oidc: Vec<String>,
    /// Resource scopes grouped by resource, in request order.
    pub resources: Vec<ResourceScopes>,
}

/// Scopes of one resource.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ResourceScopes {
    /// Resource identifier, e.g. `https://outlook.office365.com`.
    pub resource: String,
    /// Full scope URIs, e.g. `https://outlook.office365.com/EWS.AccessAsUser.All`.
    pub scopes: Vec<String>,
}

impl ResourceScopes {
    /// Graph `User.Read`, what Microsoft grants when no resource scope is asked.
    pub fn graph_default() -> Self {
        Self {
            resource: GRAPH.to_owned(),
            scopes: vec![format!("{GRAPH}/User.Read")],
        }
    }

    /// Space-separated full scope URIs.
    pub fn joined(&self) -> String {
        self.scopes.join(" ")
    }
}

impl Scopes {
    /// Parses a space-separated `scope` value. Rejects `.default` combined with
    /// any other resource scope (AADSTS70011) and malformed scopes.
    pub fn parse(value: &str) -> Result<Self, AadError> {
        let mut out = Scopes::default();
        let mut has_default = false;
        let mut resource_scope_count = 0usize;
        for raw in value.split(' ').filter(|s| !s.is_empty()) {
            let lower = raw.to_ascii_lowercase();
            if OIDC_SCOPES.contains(&lower.as_str()) {
                if !out.oidc.contains(&lower) {
                    out.oidc.push(lower);
                }
                continue;
            }
            let (resource, name) = match raw.rfind('/') {
                Some(i) => (raw[..i].trim_end_matches('/'), &raw[i + 1..]),
                None => (GRAPH, raw),
            };
            if resource.is_empty() || name.is_empty() {
                return Err(AadError::invalid_scope(
                    70011,
                    format!(
                        "The provided value for the input parameter 'scope' is not valid. The scope '{raw}' is not valid."
                    ),
                ));
            }
            has_default |= name.eq_ignore_ascii_case(".default");
            resource_scope_count += 1;
            let full = format!("{resource}/{name}");
            match out
                .resources
                .iter_mut()
                .find(|r| r.resource.eq_ignore_ascii_case(resource))
            {
                Some(group) => {
                    if !group.scopes.iter().any(|s| s.eq_ignore_ascii_case(&full)) {
                        group.scopes.push(full);
                    }
                }
                None => out.resources.push(ResourceScopes {
                    resource: resource.to_owned(),
                    scopes: vec![full],
                }),
            }
        }
        if has_default && resource_scope_count > 1 {
            return Err(AadError::invalid_scope(
                70011,
                format!(
                    "The provided value for the input parameter 'scope' is not valid. The scope '{value}' is not valid. The .default scope can't be combined with resource-specific scopes."
                ),
            ));
        }
        Ok(out)
    }

    /// Whether an OIDC scope (`openid`, `offline_access`, ...) was asked.
    pub fn has(&self, oidc_scope: &str) -> bool {
        self.oidc.iter().any(|s| s == oidc_scope)
    }

    /// The one resource a token request may name: AADSTS700022 if several,
    /// Graph `User.Read` if none.
    pub fn single_resource(&self) -> Result<ResourceScopes, AadError> {
        match self.resources.as_slice() {
            [] => Ok(ResourceScopes::graph_default()),
            [one] => Ok(one.clone()),
            many => {
                let all: Vec<String> = many.iter().flat_map(|r| r.scopes.clone()).collect();
                Err(AadError::invalid_scope(
                    700022,
                    format!(
                        "The provided value for the input parameter scope is not valid because it contains more than one resource. Scope {} is not valid.",
                        all.join(" ")
                    ),
                ))
            }
        }
    }

    /// The first resource named (used when a token request omits `scope` and the
    /// consented scopes span several resources), else Graph `User.Read`.
    pub fn first_resource(&self) -> ResourceScopes {
        self.resources
            .first()
            .cloned()
            .unwrap_or_else(ResourceScopes::graph_default)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unprefixed_scopes_mean_graph() {
        let s = Scopes::parse("openid offline_access User.Read Calendars.ReadWrite").unwrap();
        assert_eq!(s.oidc, vec!["openid", "offline_access"]);
        let r = s.single_resource().unwrap();
        assert_eq!(r.resource, GRAPH);
        assert_eq!(
            r.joined(),
            "https://graph.microsoft.com/User.Read https://graph.microsoft.com/Calendars.ReadWrite"
        );
    }

    #[test]
    fn mixed_resources_are_700022() {
        let s =
            Scopes::parse("https://outlook.office365.com/EWS.AccessAsUser.All User.Read").unwrap();
        assert_eq!(s.single_resource().unwrap_err().code, 700022);
        assert_eq!(s.first_resource().resource, "https://outlook.office365.com");
    }

    #[test]
    fn default_combined_is_70011() {
        let err = Scopes::parse("https://graph.microsoft.com/.default User.Read").unwrap_err();
        assert_eq!(err.code, 70011);
        assert!(Scopes::parse("openid https://graph.microsoft.com/.default").is_ok());
    }

    #[test]
    fn only_oidc_defaults_to_graph_user_read() {
        let s = Scopes::parse("openid profile").unwrap();
        assert_eq!(
            s.single_resource().unwrap().joined(),
            "https://graph.microsoft.com/User.Read"
        );
    }
}

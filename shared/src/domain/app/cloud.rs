//! Microsoft's national clouds and their hosts.

use super::*;

/// Microsoft national clouds, each with its own sign-in, Graph and EWS hosts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default, strum::EnumString)]
#[serde(rename_all = "lowercase")]
#[strum(
    serialize_all = "lowercase",
    parse_err_fn = unknown_cloud,
    parse_err_ty = UnknownCloud
)]
pub enum Cloud {
    #[default]
    Global,
    Usgov,
    China,
}

#[derive(Debug, thiserror::Error)]
#[error("unknown cloud '{0}': use global, usgov or china")]
pub struct UnknownCloud(String);

fn unknown_cloud(name: &str) -> UnknownCloud {
    UnknownCloud(name.to_owned())
}

impl Cloud {
    pub fn login_origin(self) -> &'static str {
        match self {
            Self::Global => "https://login.microsoftonline.com",
            Self::Usgov => "https://login.microsoftonline.us",
            Self::China => "https://login.partner.microsoftonline.cn",
        }
    }

    pub fn graph_origin(self) -> &'static str {
        match self {
            Self::Global => "https://graph.microsoft.com",
            Self::Usgov => "https://graph.microsoft.us",
            Self::China => "https://microsoftgraph.chinacloudapi.cn",
        }
    }

    /// The `cloud_instance_name` of this cloud's tenants in Microsoft's
    /// discovery documents: a tenant of another cloud names another.
    pub fn instance_name(self) -> &'static str {
        match self {
            Self::Global => "microsoftonline.com",
            Self::Usgov => "microsoftonline.us",
            Self::China => "partner.microsoftonline.cn",
        }
    }

    /// The cloud whose tenants carry `instance_name`, if it is one we know.
    pub fn of_instance(instance_name: &str) -> Option<Self> {
        [Self::Global, Self::Usgov, Self::China]
            .into_iter()
            .find(|cloud| cloud.instance_name().eq_ignore_ascii_case(instance_name))
    }

    pub fn ews_origin(self) -> &'static str {
        match self {
            Self::Global => "https://outlook.office365.com",
            Self::Usgov => "https://outlook.office365.us",
            Self::China => "https://partner.outlook.cn",
        }
    }
}

//! The app registration of a connection: which identity provider, which client,
//! which resources. It is stored in the connection's serve secret; the client
//! secret is stored apart, in the grant secret (see [`super::records`]), so
//! that functions that only build links or serve tokens never read it.

mod cloud;
mod provider;
mod registration;
mod resources;

pub use cloud::*;
pub use provider::*;
pub use registration::*;
pub use resources::*;

use super::{ConnectionId, Secret};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use url::Url;

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> OffsetDateTime {
        OffsetDateTime::UNIX_EPOCH
    }

    #[test]
    fn microsoft_endpoints_follow_the_cloud() {
        let provider = Provider::microsoft("contoso.onmicrosoft.com", Cloud::Usgov).unwrap();
        assert_eq!(
            provider.token_url().as_str(),
            "https://login.microsoftonline.us/contoso.onmicrosoft.com/oauth2/v2.0/token"
        );
        let china = Provider::microsoft("contoso.partner.cn", Cloud::China).unwrap();
        assert!(
            china
                .authorize_url()
                .as_str()
                .starts_with("https://login.partner.microsoftonline.cn/")
        );
    }

    #[test]
    fn multi_tenant_aliases_are_refused() {
        assert!(matches!(
            Provider::microsoft("common", Cloud::Global),
            Err(InvalidApp::MultiTenantAlias(_))
        ));
        assert_eq!(
            Provider::microsoft("a/b", Cloud::Global),
            Err(InvalidApp::Tenant)
        );
    }

    #[test]
    fn the_tenant_check_applies_to_guids_only() {
        let guid = "72f988bf-86f1-41af-91ab-2d7cd011db47";
        let by_guid = Provider::microsoft(guid, Cloud::Global).unwrap();
        assert_eq!(by_guid.expected_tenant_id(), Some(guid));
        let by_domain = Provider::microsoft("contoso.com", Cloud::Global).unwrap();
        assert_eq!(by_domain.expected_tenant_id(), None);
    }

    #[test]
    fn loopback_is_the_only_place_for_plain_http() {
        for ok in [
            "https://login.example",
            "http://127.0.0.1:9",
            "http://localhost:8080",
            "http://[::1]:1",
        ] {
            assert_eq!(require_secure(&ok.parse().unwrap(), "it"), Ok(()), "{ok}");
        }
        for bad in [
            "http://login.example",
            "http://127.0.0.1.example",
            "ftp://127.0.0.1/",
        ] {
            assert!(
                require_secure(&bad.parse().unwrap(), "it").is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn generic_servers_need_https_except_on_loopback() {
        let ok = Provider::oauth2(
            "https://idp.example/authorize".parse().unwrap(),
            "http://127.0.0.1:9/token".parse().unwrap(),
        );
        assert!(ok.is_ok());
        let plain = Provider::oauth2(
            "http://idp.example/authorize".parse().unwrap(),
            "https://idp.example/token".parse().unwrap(),
        );
        assert_eq!(plain, Err(InvalidApp::InsecureUrl("the authorize URL")));
    }

    #[test]
    fn one_consent_covers_every_resource_but_token_requests_name_one() {
        let id = ConnectionId::parse("contoso").unwrap();
        let provider = Provider::microsoft("contoso.com", Cloud::Global).unwrap();
        let resources = Resource::presets("ews,graph", Cloud::Global).unwrap();
        let app = AppRegistration::new(id, provider, "client", resources, now()).unwrap();
        let consent = app.consent_scopes();
        assert!(consent.contains(&"offline_access".to_owned()));
        assert!(consent.contains(&"https://outlook.office365.com/EWS.AccessAsUser.All".into()));
        assert!(consent.contains(&"https://graph.microsoft.com/User.Read".into()));
        let ews = app.resource(None).unwrap().token_request_scopes();
        assert!(ews.iter().all(|s| !s.contains("graph.microsoft.com")));
        assert_eq!(app.resource(Some("graph")).unwrap().name, "graph");
        assert!(app.resource(Some("sharepoint")).is_none());
    }

    #[test]
    fn a_booking_account_is_a_user_name() {
        let id = ConnectionId::parse("contoso").unwrap();
        let provider = Provider::microsoft("contoso.com", Cloud::Global).unwrap();
        let resources = Resource::presets("graph", Cloud::Global).unwrap();
        let app = AppRegistration::new(id, provider, "client", resources, now()).unwrap();
        let named = app
            .clone()
            .for_booking_account(Some(" Booking@Contoso.com "))
            .unwrap();
        assert_eq!(
            named.booking_account.as_deref(),
            Some("booking@contoso.com")
        );
        for wrong in [
            "booking",
            "@contoso.com",
            "booking@contoso",
            "a b@contoso.com",
        ] {
            assert_eq!(
                app.clone().for_booking_account(Some(wrong)),
                Err(InvalidApp::BookingAccount),
                "{wrong}"
            );
        }
        assert_eq!(app.clone().for_booking_account(None), Ok(app));
    }

    #[test]
    fn unknown_presets_are_named_in_the_error() {
        assert_eq!(
            Resource::presets("ews,sharepoint", Cloud::Global),
            Err(InvalidApp::UnknownResource("sharepoint".into()))
        );
        assert_eq!(
            Resource::custom("openid offline_access"),
            Err(InvalidApp::NoResource)
        );
    }
}

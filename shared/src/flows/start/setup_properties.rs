//! Properties of the self-service form's checks over any input: never a
//! panic; either checked values or at least one problem; what is
//! well-formed comes through as it was typed (trimmed, lower-case).

use super::*;
use proptest::prelude::*;

fn today() -> Date {
    time::macros::date!(2026 - 11 - 29)
}

fn submission(
    tenant: String,
    client_id: String,
    secret: String,
    expires: String,
    resources: Vec<String>,
) -> Submission {
    Submission {
        form_token: String::new(),
        tenant,
        client_id,
        client_secret: Secret::new(secret),
        client_secret_expires: expires,
        resources,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn any_submission_is_checked_without_panic(
        tenant in "\\PC{0,300}",
        client_id in "\\PC{0,80}",
        secret in "\\PC{0,600}",
        expires in "\\PC{0,20}",
        resources in proptest::collection::vec("\\PC{0,12}", 0..4),
    ) {
        let offered = vec!["ews".to_owned(), "graph".to_owned()];
        let (checked, problems) = check_fields(
            &submission(tenant, client_id, secret, expires, resources),
            &offered,
            today(),
        );
        prop_assert!(checked.is_some() || !problems.is_empty(), "refused without a reason");
    }

    #[test]
    fn a_well_formed_submission_comes_through(
        tenant in "[a-z]{1,20}\\.(com|example|onmicrosoft\\.com)",
        client_id in "[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}",
        secret in "[!-~]{1,200}",
        days in 1i64..700,
        upper in any::<bool>(),
    ) {
        let expires = (today() + time::Duration::days(days)).to_string();
        let typed_tenant = if upper { tenant.to_ascii_uppercase() } else { tenant.clone() };
        let (checked, problems) = check_fields(
            &submission(format!(" {typed_tenant} "), client_id.clone(), secret, expires, vec!["graph".into()]),
            &["ews".to_owned(), "graph".to_owned()],
            today(),
        );
        prop_assert!(problems.is_empty(), "{:?}", problems);
        let checked = checked.expect("checked");
        prop_assert_eq!(checked.tenant, tenant);
        prop_assert_eq!(checked.client_id, client_id);
        prop_assert_eq!(checked.expires, today() + time::Duration::days(days));
        prop_assert_eq!(checked.resources, vec!["graph".to_owned()]);
    }
}

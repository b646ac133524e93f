//! The five failure classes of the identity platform and how each error maps
//! to one (see `docs/microsoft.md`, *Token endpoint errors*).

use serde::{Deserialize, Serialize};

/// Named in snake case everywhere: JSON, logs, metrics dimensions.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    strum::Display,
    strum::IntoStaticStr,
    strum::EnumIter,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum FailureClass {
    /// Back off and retry; keep serving a still-valid token.
    Transient,
    /// The booking account must open the consent link again.
    ReconnectNeeded,
    /// The operator must fix tenant, client id or secret.
    AppMisconfigured,
    /// The customer admin must unblock the account or adjust a policy.
    Blocked,
    /// A request we should never have sent: alarm.
    OurBug,
}

impl FailureClass {
    /// Whether retrying without a human acting first is pointless.
    pub fn is_permanent(self) -> bool {
        matches!(
            self,
            Self::ReconnectNeeded | Self::AppMisconfigured | Self::Blocked
        )
    }
}

const TRANSIENT: &[u32] = &[50033, 90006, 90024, 90033, 90090, 50087, 90055, 50196];
// 7000229: the app has no service principal in the tenant (never granted
// there, or its enterprise app was deleted): the customer's admin must
// consent again, through the link.
const RECONNECT: &[u32] = &[
    70008, 700082, 50173, 70043, 50076, 50079, 50158, 65001, 50055, 54005, 700005, 7000229,
];
const MISCONFIGURED: &[u32] = &[
    7000215, 7000222, 7000218, 700027, 50012, 700016, 700011, 90002, 50011, 65005, 650056, 650057,
    90094, 500011, 7000112, 50194,
];
const BLOCKED: &[u32] = &[53003, 53000, 53001, 50057, 50053, 50034, 50020];
const OUR_BUG: &[u32] = &[70011, 700022];

/// Classifies an error answer of a token endpoint.
///
/// The AADSTS number is the most specific signal and wins when it is known;
/// otherwise `suberror`, then `error`, then the HTTP status decide.
pub fn classify(
    http_status: u16,
    error: &str,
    suberror: Option<&str>,
    codes: &[u32],
) -> FailureClass {
    for code in codes {
        for (list, class) in [
            (TRANSIENT, FailureClass::Transient),
            (RECONNECT, FailureClass::ReconnectNeeded),
            (MISCONFIGURED, FailureClass::AppMisconfigured),
            (BLOCKED, FailureClass::Blocked),
            (OUR_BUG, FailureClass::OurBug),
        ] {
            if list.contains(code) {
                return class;
            }
        }
    }
    if let Some(
        "bad_token"
        | "token_expired"
        | "consent_required"
        | "basic_action"
        | "additional_action"
        | "message_only"
        | "user_password_expired",
    ) = suberror
    {
        return FailureClass::ReconnectNeeded;
    }
    match error {
        "temporarily_unavailable" | "server_error" => FailureClass::Transient,
        "invalid_grant" | "interaction_required" | "consent_required" | "login_required" => {
            FailureClass::ReconnectNeeded
        }
        "invalid_client" | "unauthorized_client" => FailureClass::AppMisconfigured,
        "access_denied" => FailureClass::Blocked,
        "invalid_request"
        | "invalid_scope"
        | "unsupported_grant_type"
        | "unsupported_response_type" => FailureClass::OurBug,
        _ if http_status == 429 || http_status >= 500 => FailureClass::Transient,
        _ => FailureClass::OurBug,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use FailureClass::*;

    #[test]
    fn aadsts_codes_decide_first() {
        assert_eq!(
            classify(400, "invalid_grant", None, &[700082]),
            ReconnectNeeded
        );
        assert_eq!(
            classify(401, "invalid_client", None, &[7000222]),
            AppMisconfigured
        );
        assert_eq!(classify(400, "invalid_grant", None, &[53003]), Blocked);
        assert_eq!(classify(400, "invalid_request", None, &[90033]), Transient);
        assert_eq!(
            classify(400, "invalid_request", None, &[90002]),
            AppMisconfigured
        );
        assert_eq!(classify(400, "invalid_scope", None, &[700022]), OurBug);
        assert_eq!(
            classify(400, "invalid_client", None, &[7000229]),
            ReconnectNeeded,
            "a tenant that no longer grants the app must consent again"
        );
    }

    #[test]
    fn unknown_codes_fall_back_on_the_error_value() {
        assert_eq!(classify(400, "invalid_grant", None, &[1]), ReconnectNeeded);
        assert_eq!(classify(401, "invalid_client", None, &[]), AppMisconfigured);
        assert_eq!(
            classify(400, "interaction_required", None, &[]),
            ReconnectNeeded
        );
        assert_eq!(
            classify(503, "temporarily_unavailable", None, &[]),
            Transient
        );
        assert_eq!(classify(400, "unsupported_grant_type", None, &[]), OurBug);
        assert_eq!(classify(502, "", None, &[]), Transient);
        assert_eq!(classify(429, "", None, &[]), Transient);
        assert_eq!(classify(400, "something_new", None, &[]), OurBug);
    }

    /// An `access_denied` with no AADSTS code (a user or an admin said no,
    /// or a policy refused): a human must act, it is not our bug (issue 25,
    /// item 10: removing that arm made no test fail).
    #[test]
    fn access_denied_without_a_code_is_blocked_not_our_bug() {
        assert_eq!(classify(400, "access_denied", None, &[]), Blocked);
        assert_eq!(classify(403, "access_denied", None, &[]), Blocked);
    }

    #[test]
    fn a_suberror_decides_when_no_code_is_known() {
        for suberror in [
            "bad_token",
            "consent_required",
            "basic_action",
            "additional_action",
            "message_only",
            "user_password_expired",
            "token_expired",
        ] {
            assert_eq!(
                classify(400, "invalid_request", Some(suberror), &[9_999_999]),
                ReconnectNeeded,
                "{suberror}"
            );
        }
        assert_eq!(
            classify(400, "invalid_request", Some("client_mismatch"), &[]),
            OurBug,
            "an unknown suberror falls back on the error value"
        );
        assert_eq!(
            classify(400, "invalid_grant", Some("consent_required"), &[53003]),
            Blocked,
            "a known code still wins"
        );
    }

    #[test]
    fn throttling_is_transient_in_both_of_its_forms() {
        assert_eq!(classify(400, "invalid_grant", None, &[50196]), Transient);
        assert_eq!(
            classify(429, "temporarily_unavailable", None, &[90055]),
            Transient
        );
        assert_eq!(classify(429, "", None, &[]), Transient);
    }

    #[test]
    fn permanent_classes_stop_retries() {
        assert!(ReconnectNeeded.is_permanent());
        assert!(AppMisconfigured.is_permanent());
        assert!(Blocked.is_permanent());
        assert!(!Transient.is_permanent());
        assert!(!OurBug.is_permanent());
    }
}

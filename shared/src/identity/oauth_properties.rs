//! Properties of the token endpoint's answers as the client reads them:
//! `Retry-After`, error bodies and token bodies from any server. Never a
//! panic; a clear reading where the input is well-formed.

use super::*;
use crate::domain::failure::classify;
use proptest::prelude::*;
use std::time::SystemTime;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn any_retry_after_is_read_or_ignored(value in "\\PC{0,64}") {
        let _ = parse_retry_after(&value, SystemTime::now());
    }

    #[test]
    fn retry_after_seconds_round_trip(seconds in any::<u64>(), pad in " {0,3}") {
        let value = format!("{pad}{seconds}{pad}");
        prop_assert_eq!(
            parse_retry_after(&value, SystemTime::now()),
            Some(Duration::from_secs(seconds))
        );
    }

    #[test]
    fn retry_after_dates_round_trip(seconds in 0u64..10_000_000) {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let value = httpdate::fmt_http_date(now + Duration::from_secs(seconds));
        prop_assert_eq!(parse_retry_after(&value, now), Some(Duration::from_secs(seconds)));
        // A date already past means at once.
        let past = httpdate::fmt_http_date(now - Duration::from_secs(seconds));
        prop_assert_eq!(parse_retry_after(&past, now), Some(Duration::ZERO));
    }

    #[test]
    fn any_error_body_is_read_or_refused_and_always_classified(
        error in "\\PC{0,40}",
        codes in proptest::collection::vec(any::<u32>(), 0..4),
        suberror in proptest::option::of("\\PC{0,20}"),
        status in 100u16..600,
        extra in "\\PC{0,40}",
    ) {
        let body = serde_json::json!({
            "error": error,
            "error_codes": codes,
            "suberror": suberror,
            "error_description": extra,
            "unknown_field": extra,
        });
        let read: ErrorBody = serde_json::from_value(body).expect("a well-formed body reads");
        let provider = read.into_provider_error(status);
        prop_assert_eq!(&provider.codes, &codes);
        let _ = classify(status, &provider.error, provider.suberror.as_deref(), &provider.codes);
    }

    #[test]
    fn any_json_is_an_error_body_or_a_clear_refusal(text in "\\PC{0,200}") {
        if let Err(e) = serde_json::from_str::<ErrorBody>(&text) {
            prop_assert!(!e.to_string().is_empty());
        }
    }

    #[test]
    fn any_token_body_becomes_a_token_set_with_a_bounded_lifetime(
        access_token in "[!-~]{1,200}",
        expires_in in proptest::option::of(any::<u64>()),
        refresh_token in proptest::option::of("[!-~]{1,100}"),
        scope in proptest::option::of("[!-~ ]{0,100}"),
    ) {
        let mut body = serde_json::json!({
            "access_token": access_token,
            "token_type": "Bearer",
        });
        if let Some(n) = expires_in { body["expires_in"] = n.into(); }
        if let Some(rt) = &refresh_token { body["refresh_token"] = rt.clone().into(); }
        if let Some(scope) = &scope { body["scope"] = scope.clone().into(); }
        let Ok(read) = serde_json::from_value::<TokenEndpointResponse>(body) else {
            return Ok(());
        };
        let set = into_token_set(read);
        prop_assert!(set.is_ok(), "a small token is taken");
        let Ok(set) = set else { return Ok(()) };
        prop_assert_eq!(set.access_token.expose(), access_token.as_str());
        prop_assert!((MIN_EXPIRES_IN..=MAX_EXPIRES_IN).contains(&set.expires_in));
        prop_assert_eq!(
            set.refresh_token.as_ref().map(|rt| rt.expose().to_owned()),
            refresh_token
        );
    }

    /// A token larger than what a secret keeps room for is refused at the
    /// request, never stored: the limit itself is taken.
    #[test]
    fn tokens_over_the_stored_size_are_refused(extra in 1usize..5_000, which in any::<bool>()) {
        use crate::domain::records::MAX_TOKEN_BYTES;
        let (access, refresh) = if which {
            ("a".repeat(MAX_TOKEN_BYTES + extra), "r".repeat(MAX_TOKEN_BYTES))
        } else {
            ("a".repeat(MAX_TOKEN_BYTES), "r".repeat(MAX_TOKEN_BYTES + extra))
        };
        let body = |access: &str, refresh: &str| {
            serde_json::from_value::<TokenEndpointResponse>(serde_json::json!({
                "access_token": access, "token_type": "Bearer", "refresh_token": refresh,
            }))
        };
        let Ok(read) = body(&access, &refresh) else { return Ok(()) };
        let refused = into_token_set(read);
        prop_assert!(matches!(&refused, Err(IdentityError::Protocol(m)) if m.contains("more than the 8192")), "{:?}", refused.err());
        let Ok(at_limit) = body(&"a".repeat(MAX_TOKEN_BYTES), &"r".repeat(MAX_TOKEN_BYTES)) else { return Ok(()) };
        prop_assert!(into_token_set(at_limit).is_ok());
    }
}

//! Property tests for the parsers of outside input that live above one
//! module: connection ids, consent links (invites), sealed consent cookies,
//! setup form tokens, and stored JSON written by an older or newer version.
//! Properties: never a panic, a clear error, round-trips where there is a
//! writer, and any change to a signed value refused. (Retry-After and the
//! token endpoint's bodies: `identity/oauth_properties.rs`; the setup form's
//! fields: `flows/setup_properties.rs`; If-None-Match: `http/api.rs`.)

use crate::crypto::{
    ConsentSession, FormBinding, FormTokenError, InviteError, Purpose, SigningKeys,
    generate_signing_key,
};
use crate::domain::{ConnectionId, GrantRecord, Mode, Secret, Status};
use proptest::prelude::*;
use std::sync::LazyLock;
use time::OffsetDateTime;

static KEYS: LazyLock<SigningKeys> =
    LazyLock::new(|| SigningKeys::from_signing_key(&generate_signing_key()));

fn now() -> OffsetDateTime {
    time::macros::datetime!(2026-11-29 12:00 UTC)
}

fn connection_id() -> impl Strategy<Value = ConnectionId> {
    "[a-z0-9-]{1,64}".prop_map(|s| ConnectionId::parse(&s).expect("valid by construction"))
}

/// `value` with the character at `at` (modulo its length) replaced by `by`.
fn changed(value: &str, at: usize, by: char) -> String {
    let mut chars: Vec<char> = value.chars().collect();
    let at = at % chars.len().max(1);
    if let Some(c) = chars.get_mut(at) {
        *c = by;
    }
    chars.into_iter().collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn a_connection_id_parses_exactly_when_it_is_one(text in "\\PC{0,80}|[a-z0-9-]{0,70}") {
        match ConnectionId::parse(&text) {
            Ok(id) => {
                prop_assert_eq!(id.as_str(), text.as_str());
                let json = serde_json::to_string(&id).expect("serializes");
                prop_assert_eq!(serde_json::from_str::<ConnectionId>(&json).expect("reads"), id);
            }
            Err(e) => {
                prop_assert!(e.to_string().contains("1 to 64 characters"));
                prop_assert!(serde_json::from_value::<ConnectionId>(text.into()).is_err());
            }
        }
    }

    #[test]
    fn any_invite_but_a_signed_one_is_forged(id in connection_id(), text in "\\PC{0,120}|-?[0-9]{1,20}\\.[0-9]{1,11}\\.[A-Za-z0-9_-]{0,50}") {
        prop_assert_eq!(KEYS.verify_invite(&id, &text, now()), Err(InviteError::Forged));
    }

    #[test]
    fn invites_round_trip_and_any_change_is_refused(
        id in connection_id(),
        other in connection_id(),
        ttl in 1i64..100_000_000,
        generation in any::<u32>(),
        at in any::<usize>(),
        by in "[ -~]",
    ) {
        let expires = now() + time::Duration::seconds(ttl);
        let invite = KEYS.sign_invite(&id, expires, generation);
        prop_assert_eq!(KEYS.verify_invite(&id, &invite, now()), Ok(generation));
        prop_assert_eq!(KEYS.verify_invite(&id, &invite, expires), Err(InviteError::Expired));
        if other != id {
            prop_assert_eq!(KEYS.verify_invite(&other, &invite, now()), Err(InviteError::Forged));
        }
        let by = by.chars().next().unwrap_or('x');
        let tampered = changed(&invite, at, by);
        if tampered != invite {
            prop_assert!(KEYS.verify_invite(&id, &tampered, now()).is_err(), "{}", tampered);
        }
    }

    #[test]
    fn any_cookie_but_a_sealed_one_is_nothing(text in "\\PC{0,400}") {
        prop_assert!(KEYS.unseal(&text, now()).is_none());
    }

    #[test]
    fn sessions_round_trip_and_any_change_is_refused(
        id in connection_id(),
        state in "\\PC{0,60}",
        verifier in "[!-~]{43,128}",
        invite in proptest::option::of("\\PC{0,80}"),
        at in any::<usize>(),
        by in "[A-Za-z0-9+/=_-]",
    ) {
        let session = ConsentSession {
            connection: id.clone(),
            state: state.clone(),
            nonce: "n".into(),
            pkce_verifier: Secret::new(verifier.clone()),
            expires_at: (now() + time::Duration::minutes(15)).unix_timestamp(),
            purpose: Purpose::SignIn,
            invite: invite.clone(),
            mode: Mode::SelfService,
            setup: None,
        };
        let sealed = KEYS.seal(&session);
        prop_assert!(!sealed.contains(&verifier), "sealed, not signed");
        let opened = KEYS.unseal(&sealed, now()).expect("opens");
        prop_assert_eq!(opened.connection, id);
        prop_assert_eq!(opened.state, state);
        prop_assert_eq!(opened.pkce_verifier.expose(), verifier.as_str());
        prop_assert_eq!(opened.invite, invite);
        prop_assert!(KEYS.unseal(&sealed, now() + time::Duration::minutes(16)).is_none());
        let by = by.chars().next().unwrap_or('x');
        let tampered = changed(&sealed, at, by);
        if tampered != sealed {
            prop_assert!(KEYS.unseal(&tampered, now()).is_none());
        }
    }

    #[test]
    fn form_tokens_round_trip_and_anything_else_is_forged(
        id in connection_id(),
        invite in "[!-~]{1,80}",
        browser in "[A-Za-z0-9_-]{1,40}",
        generation in any::<i64>(),
        text in "\\PC{0,100}",
        at in any::<usize>(),
        by in "[ -~]",
    ) {
        let binding = FormBinding { connection: &id, invite: &invite, browser: &browser, generation };
        prop_assert_eq!(KEYS.verify_form(&binding, &text, now()), Err(FormTokenError::Forged));
        let token = KEYS.sign_form(&binding, now());
        prop_assert_eq!(KEYS.verify_form(&binding, &token, now()), Ok(()));
        let by = by.chars().next().unwrap_or('x');
        let tampered = changed(&token, at, by);
        if tampered != token {
            prop_assert!(KEYS.verify_form(&binding, &tampered, now()).is_err(), "{}", tampered);
        }
    }

    /// Stored JSON from another version of the product: a newer one's
    /// extra fields are ignored, an older one's missing field is a default
    /// or a clear error, and arbitrary text is a clear error.
    #[test]
    fn stored_records_from_other_versions_read_or_fail_clearly(
        extra_name in "[a-z_]{1,20}",
        extra_value in "\\PC{0,40}",
        drop in any::<usize>(),
        text in "\\PC{0,200}",
    ) {
        let grant = GrantRecord::new(Secret::new("client-secret"));
        let status = Status::default();
        for written in [serde_json::to_value(&grant).expect("grant"), serde_json::to_value(&status).expect("status")] {
            let serde_json::Value::Object(fields) = written else {
                return Err(TestCaseError::fail("a record is an object"));
            };
            let mut newer = fields.clone();
            newer.entry(extra_name.clone()).or_insert(extra_value.clone().into());
            let newer = serde_json::Value::Object(newer);
            let mut older = fields.clone();
            if let Some(name) = fields.keys().nth(drop % fields.len().max(1)).cloned() {
                older.remove(&name);
            }
            let older = serde_json::Value::Object(older);
            if fields.contains_key("write_log") || fields.contains_key("client_secret") {
                prop_assert!(serde_json::from_value::<GrantRecord>(newer).is_ok());
                if let Err(e) = serde_json::from_value::<GrantRecord>(older) {
                    prop_assert!(e.to_string().contains("missing field"), "{}", e);
                }
            } else {
                prop_assert_eq!(serde_json::from_value::<Status>(newer).expect("newer status"), status.clone());
                if let Err(e) = serde_json::from_value::<Status>(older) {
                    prop_assert!(e.to_string().contains("missing field"), "{}", e);
                }
            }
        }
        let looks_like_an_object = text.trim_start().starts_with('{');
        prop_assert!(serde_json::from_str::<GrantRecord>(&text).is_err() || looks_like_an_object);
    }
}

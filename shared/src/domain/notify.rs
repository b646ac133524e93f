//! Notifications to the operator: which changes are sent, the outbox each
//! connection's status holds until they are delivered, when a failed
//! delivery is tried again, and the Standard Webhooks signature. Nothing
//! here does I/O: `crate::webhook` sends, `crate::flows::refresh::notify` delivers.
//!
//! Over 500 lines with its tests (about 200).

use super::status::{CREDENTIAL_WARNING_DAYS, credential_days_left};
use super::{ConnectionId, ConnectionState, FailureClass, Mode, Status};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use std::fmt;
use std::time::Duration;
use time::{Date, OffsetDateTime};

/// What a notification says happened; its `type` in the JSON body.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, strum::IntoStaticStr)]
pub enum EventType {
    /// The first consent: the connection serves tokens.
    #[serde(rename = "connection.connected")]
    #[strum(serialize = "connection.connected")]
    Connected,
    /// Back to `connected` after any failure state.
    #[serde(rename = "connection.recovered")]
    #[strum(serialize = "connection.recovered")]
    Recovered,
    #[serde(rename = "connection.degraded")]
    #[strum(serialize = "connection.degraded")]
    Degraded,
    #[serde(rename = "connection.reconnect_required")]
    #[strum(serialize = "connection.reconnect_required")]
    ReconnectRequired,
    #[serde(rename = "connection.app_misconfigured")]
    #[strum(serialize = "connection.app_misconfigured")]
    AppMisconfigured,
    #[serde(rename = "connection.blocked")]
    #[strum(serialize = "connection.blocked")]
    Blocked,
    /// The tokens live shorter than the store keeps fresh.
    #[serde(rename = "connection.tokens_too_short")]
    #[strum(serialize = "connection.tokens_too_short")]
    TokensTooShort,
    /// The client secret expires within 30, 7 or 1 days.
    #[serde(rename = "connection.credential_expiring")]
    #[strum(serialize = "connection.credential_expiring")]
    CredentialExpiring,
}

impl EventType {
    /// The notification a change from `old` to `new` is worth, if any: a
    /// connection that goes back to waiting for a consent was put there by
    /// the operator, who knows.
    pub fn of_change(old: ConnectionState, new: ConnectionState) -> Option<Self> {
        use ConnectionState as S;
        match (old, new) {
            (old, new) if old == new => None,
            (S::PendingConsent, S::Connected) => Some(Self::Connected),
            (_, S::Connected) => Some(Self::Recovered),
            (_, S::Degraded) => Some(Self::Degraded),
            (_, S::ReconnectRequired) => Some(Self::ReconnectRequired),
            (_, S::AppMisconfigured) => Some(Self::AppMisconfigured),
            (_, S::Blocked) => Some(Self::Blocked),
            (_, S::TokensTooShort) => Some(Self::TokensTooShort),
            (_, S::PendingConsent) => None,
        }
    }
}

/// The JSON body of a notification (Standard Webhooks' recommended
/// `type`, `timestamp`, `data`). It holds no secret: states, the error's
/// class and code, the advice, and the account's name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    #[serde(rename = "type")]
    pub kind: EventType,
    /// When it happened (the broker's clock).
    #[serde(with = "time::serde::rfc3339")]
    pub timestamp: OffsetDateTime,
    pub data: EventData,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventData {
    pub connection: ConnectionId,
    pub old_state: ConnectionState,
    pub new_state: ConnectionState,
    pub account: Option<String>,
    /// The failure that caused the change, if one did.
    pub class: Option<FailureClass>,
    /// `AADSTS50173`, an OAuth `error`, or `HTTP 503`.
    pub code: Option<String>,
    pub message: Option<String>,
    pub advice: String,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "super::app::iso_date::option"
    )]
    pub credential_expires: Option<Date>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub days_left: Option<i64>,
}

impl Event {
    /// The notification of a state change, from the status after it, of
    /// a connection onboarded in `mode` (the advice depends on it).
    pub fn state_change(
        id: &ConnectionId,
        mode: Mode,
        old: ConnectionState,
        new: &Status,
        now: OffsetDateTime,
    ) -> Option<Self> {
        let kind = EventType::of_change(old, new.state)?;
        // A success carries no error; a failure carries the one that caused it.
        let error = new.last_error.as_ref().filter(|_| {
            !matches!(
                new.state,
                ConnectionState::Connected | ConnectionState::TokensTooShort
            )
        });
        Some(Self {
            kind,
            timestamp: now,
            data: EventData {
                connection: id.clone(),
                old_state: old,
                new_state: new.state,
                account: new.account.clone(),
                class: error.map(|e| e.class),
                code: error.map(|e| e.code.clone()),
                message: error.map(|e| e.message.clone()),
                advice: new.advice_for(mode),
                credential_expires: None,
                days_left: None,
            },
        })
    }

    /// The warning that the client secret expires on `expires`.
    pub fn credential_expiring(
        id: &ConnectionId,
        status: &Status,
        expires: Date,
        advice: String,
        now: OffsetDateTime,
    ) -> Self {
        Self {
            kind: EventType::CredentialExpiring,
            timestamp: now,
            data: EventData {
                connection: id.clone(),
                old_state: status.state,
                new_state: status.state,
                account: status.account.clone(),
                class: None,
                code: None,
                message: None,
                advice,
                credential_expires: Some(expires),
                days_left: Some(credential_days_left(expires, now)),
            },
        }
    }
}

/// One notification waiting in a connection's outbox.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notification {
    /// `webhook-id`: the same on every attempt, so receivers can tell a
    /// retry from a new event.
    pub id: String,
    pub event: Event,
    /// Failed attempts so far.
    #[serde(default)]
    pub attempts: u32,
    /// Not tried again before this.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub next_attempt_at: Option<OffsetDateTime>,
}

impl Notification {
    pub fn new(event: Event) -> Self {
        Self {
            id: format!("msg_{}", uuid::Uuid::new_v4().simple()),
            event,
            attempts: 0,
            next_attempt_at: None,
        }
    }

    /// The warning that `id`'s credential expiring on `expires` reached
    /// `days`: its id is the same whenever it is made again, so that a
    /// receiver (and this process) can tell it was sent already.
    pub fn credential_warning(id: &ConnectionId, event: Event, expires: Date, days: i64) -> Self {
        use sha2::Digest;
        let digest = Sha256::digest(format!("credential_expiring/{id}/{expires}/{days}"));
        Self {
            id: format!("msg_{}", hex::encode(&digest[..16])),
            ..Self::new(event)
        }
    }

    pub fn is_due(&self, now: OffsetDateTime) -> bool {
        self.next_attempt_at.is_none_or(|at| at <= now)
    }
}

/// At most this many notifications wait per connection; a newer one
/// pushes out the oldest (a receiver down for days must not grow the
/// serve secret without bound: Secrets Manager holds 64 KB).
pub const MAX_OUTBOX: usize = 16;

/// The waits after each failed attempt, across refresh passes (Standard
/// Webhooks' usual schedule from its second retry); after the last, the
/// notification is given up: 7 attempts over about 28 hours.
pub const RETRY_WAITS: [Duration; 6] = [
    Duration::from_secs(5 * 60),
    Duration::from_secs(30 * 60),
    Duration::from_secs(2 * 3600),
    Duration::from_secs(5 * 3600),
    Duration::from_secs(10 * 3600),
    Duration::from_secs(10 * 3600),
];

/// What one attempt to deliver a notification came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attempt {
    Delivered,
    Failed,
}

/// Notifications an outbox change delivered, gave up on or pushed out.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OutboxChange {
    pub delivered: usize,
    pub failed: usize,
    /// Given up after the last retry, or pushed out by newer ones.
    pub dropped: Vec<String>,
}

/// Days before a credential expires at which it is announced: once each.
pub const CREDENTIAL_WARNINGS: [i64; 3] = [CREDENTIAL_WARNING_DAYS, 7, 1];

/// The last credential warning sent for a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CredentialWarned {
    /// The expiry it was about: a new secret starts over.
    #[serde(with = "super::app::iso_date")]
    pub expires: Date,
    /// The threshold it announced (30, 7 or 1 days).
    pub days: i64,
}

/// The warning threshold a credential expiring on `expires` has reached at
/// `now` and not yet announced, if any.
pub fn credential_warning_due(
    warned: Option<CredentialWarned>,
    expires: Date,
    now: OffsetDateTime,
) -> Option<i64> {
    let days_left = credential_days_left(expires, now);
    let reached = CREDENTIAL_WARNINGS
        .iter()
        .copied()
        .filter(|&threshold| days_left <= threshold)
        .min()?;
    match warned {
        Some(w) if w.expires == expires && w.days <= reached => None,
        _ => Some(reached),
    }
}

/// A Standard Webhooks signing secret: `whsec_` and the base64 of 24 to 64
/// random bytes. Its `Debug` is redacted and it has no `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookSecret(Vec<u8>);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "a webhook secret is 'whsec_' followed by the base64 of 24 to 64 random bytes (`roomtoken webhook-secret generate` makes one)"
)]
pub struct BadWebhookSecret;

impl WebhookSecret {
    const PREFIX: &'static str = "whsec_";

    pub fn parse(text: &str) -> Result<Self, BadWebhookSecret> {
        let encoded = text
            .trim()
            .strip_prefix(Self::PREFIX)
            .ok_or(BadWebhookSecret)?;
        let bytes = BASE64.decode(encoded).map_err(|_| BadWebhookSecret)?;
        if !(24..=64).contains(&bytes.len()) {
            return Err(BadWebhookSecret);
        }
        Ok(Self(bytes))
    }

    /// A new secret of 32 random bytes.
    pub fn generate() -> Self {
        Self(rand::random::<[u8; 32]>().to_vec())
    }

    /// The `whsec_…` form, to store or give to the receiver.
    pub fn expose(&self) -> String {
        format!("{}{}", Self::PREFIX, BASE64.encode(&self.0))
    }

    /// `webhook-signature`: `v1,` and the base64 HMAC-SHA256 of
    /// `{id}.{timestamp}.{body}`.
    pub fn sign(&self, id: &str, timestamp: i64, body: &str) -> String {
        // HMAC takes a key of any length: this cannot fail.
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&self.0) else {
            unreachable!("HMAC accepts every key length")
        };
        mac.update(format!("{id}.{timestamp}.{body}").as_bytes());
        format!("v1,{}", BASE64.encode(mac.finalize().into_bytes()))
    }
}

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebhookSecret(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::LastError;
    use time::macros::{date, datetime};

    #[test]
    fn the_signature_is_the_standard_webhooks_one() {
        // The test vector of the Standard Webhooks specification's libraries.
        let secret = WebhookSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let signature = secret.sign(
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            r#"{"test": 2432232314}"#,
        );
        assert_eq!(signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        assert_eq!(
            WebhookSecret::parse(&secret.expose()).unwrap(),
            secret,
            "its own form reads back"
        );
        assert!(!format!("{secret:?}").contains("MfKQ"));
    }

    #[test]
    fn secrets_without_the_prefix_or_too_short_are_refused() {
        assert_eq!(
            WebhookSecret::parse("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
            Err(BadWebhookSecret)
        );
        assert_eq!(
            WebhookSecret::parse("whsec_c2hvcnQ="),
            Err(BadWebhookSecret)
        );
        assert_eq!(
            WebhookSecret::parse("whsec_not base64!"),
            Err(BadWebhookSecret)
        );
        assert!(WebhookSecret::parse(&WebhookSecret::generate().expose()).is_ok());
    }

    #[test]
    fn every_change_of_state_is_worth_one_notification_and_a_persisting_state_none() {
        use ConnectionState as S;
        assert_eq!(
            EventType::of_change(S::PendingConsent, S::Connected),
            Some(EventType::Connected)
        );
        assert_eq!(
            EventType::of_change(S::Degraded, S::Connected),
            Some(EventType::Recovered)
        );
        assert_eq!(
            EventType::of_change(S::ReconnectRequired, S::Connected),
            Some(EventType::Recovered)
        );
        assert_eq!(
            EventType::of_change(S::Connected, S::Degraded),
            Some(EventType::Degraded)
        );
        assert_eq!(
            EventType::of_change(S::Degraded, S::Blocked),
            Some(EventType::Blocked)
        );
        for state in [
            S::Connected,
            S::Degraded,
            S::ReconnectRequired,
            S::AppMisconfigured,
        ] {
            assert_eq!(EventType::of_change(state, state), None, "{state}");
        }
        assert_eq!(EventType::of_change(S::Blocked, S::PendingConsent), None);
    }

    #[test]
    fn a_failure_notification_carries_its_error_and_a_recovery_none() {
        let now = datetime!(2026-11-29 12:00 UTC);
        let id = ConnectionId::parse("contoso").unwrap();
        let error = LastError {
            class: FailureClass::ReconnectNeeded,
            code: "AADSTS50173".into(),
            message: "The provided grant has expired".into(),
            trace_id: None,
            correlation_id: None,
            at: now,
        };
        let mut failed = Status::connected("room@contoso.com", now).after_failure(error);
        let mut app_only = failed.clone();
        failed.note_change(&id, Mode::Operator, ConnectionState::Connected, now);
        let event = &failed.outbox[0].event;
        assert_eq!(event.kind, EventType::ReconnectRequired);
        assert!(event.data.advice.contains("booking account"));
        // Nobody signs in to an app-only connection: its admin grants again.
        app_only.note_change(&id, Mode::VendorAppOnly, ConnectionState::Connected, now);
        let advice = &app_only.outbox[0].event.data.advice;
        assert!(
            advice.contains("admin must open the consent link"),
            "{advice}"
        );
        assert_eq!(event.data.code.as_deref(), Some("AADSTS50173"));
        assert_eq!(event.data.class, Some(FailureClass::ReconnectNeeded));
        let mut back = failed.after_success(now);
        back.note_change(&id, Mode::Operator, ConnectionState::ReconnectRequired, now);
        assert_eq!(back.outbox.len(), 2, "the first still waits");
        let recovered = &back.outbox[1].event;
        assert_eq!(recovered.kind, EventType::Recovered);
        assert_eq!(
            (recovered.data.class, recovered.data.code.as_deref()),
            (None, None)
        );
        let json = serde_json::to_value(recovered).unwrap();
        assert_eq!(json["type"], "connection.recovered");
        assert_eq!(json["data"]["old_state"], "reconnect_required");
    }

    #[test]
    fn failed_deliveries_wait_longer_each_time_then_are_given_up() {
        let now = datetime!(2026-11-29 12:00 UTC);
        let id = ConnectionId::parse("contoso").unwrap();
        let mut status = Status::connected("a", now);
        status.note_change(&id, Mode::Operator, ConnectionState::PendingConsent, now);
        let msg = status.outbox[0].id.clone();
        let mut at = now;
        let mut tries = Vec::new();
        // A pass every 5 minutes for two days; the receiver always fails.
        while at < now + time::Duration::days(2) {
            if !status.due_notifications(at).is_empty() {
                tries.push((at - now).whole_minutes());
                let change = status.after_attempts(&[(msg.clone(), Attempt::Failed)], at);
                assert_eq!(change.failed, 1);
                if !change.dropped.is_empty() {
                    assert_eq!(change.dropped, std::slice::from_ref(&msg));
                }
            }
            at += time::Duration::minutes(5);
        }
        assert_eq!(tries, [0, 5, 35, 155, 455, 1055, 1655]);
        assert!(status.outbox.is_empty(), "given up after the last retry");
    }

    #[test]
    fn nothing_overtakes_a_notification_waiting_for_its_retry() {
        let now = datetime!(2026-11-29 12:00 UTC);
        let id = ConnectionId::parse("contoso").unwrap();
        let mut status = Status::connected("a", now);
        status.note_change(&id, Mode::Operator, ConnectionState::PendingConsent, now);
        status.state = ConnectionState::Degraded;
        status.note_change(&id, Mode::Operator, ConnectionState::Connected, now);
        assert_eq!(status.outbox.len(), 2);
        let first = status.outbox[0].id.clone();
        status.after_attempts(&[(first, Attempt::Failed)], now);
        assert!(
            status.due_notifications(now).is_empty(),
            "the second waits for the first"
        );
        assert_eq!(status.due_notifications(now + RETRY_WAITS[0]).len(), 2);
    }

    #[test]
    fn a_delivered_notification_leaves_and_the_outbox_is_bounded() {
        let now = datetime!(2026-11-29 12:00 UTC);
        let id = ConnectionId::parse("contoso").unwrap();
        let mut status = Status::connected("a", now);
        for _ in 0..MAX_OUTBOX + 3 {
            status.note_change(&id, Mode::Operator, ConnectionState::Degraded, now);
        }
        assert_eq!(status.outbox.len(), MAX_OUTBOX);
        let first = status.outbox[0].id.clone();
        let change = status.after_attempts(
            &[
                (first, Attempt::Delivered),
                ("msg_gone".into(), Attempt::Failed),
            ],
            now,
        );
        assert_eq!((change.delivered, change.failed), (1, 0));
        assert_eq!(status.outbox.len(), MAX_OUTBOX - 1);
    }

    #[test]
    fn credential_warnings_come_at_30_7_and_1_days_once_each() {
        let expires = date!(2027 - 01 - 31);
        let mut warned: Option<CredentialWarned> = None;
        let mut sent = Vec::new();
        let mut day = datetime!(2026-12-01 09:00 UTC);
        while day.date() <= expires {
            if let Some(days) = credential_warning_due(warned, expires, day) {
                sent.push(credential_days_left(expires, day));
                warned = Some(CredentialWarned { expires, days });
            }
            day += time::Duration::days(1);
        }
        assert_eq!(sent, [30, 7, 1]);
        // A new secret starts over; one already close warns once, at its level.
        let renewed = date!(2027 - 02 - 05);
        assert_eq!(credential_warning_due(warned, renewed, day), Some(7));
        // Passes missed for days: one warning, at the level reached.
        assert_eq!(
            credential_warning_due(None, expires, datetime!(2027-01-29 0:00 UTC)),
            Some(7)
        );
    }
}

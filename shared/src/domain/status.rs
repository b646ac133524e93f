//! The connection's state machine and what admins are told about it.
//!
//! `pending_consent` → `connected` ⇄ `degraded` → `reconnect_required` |
//! `app_misconfigured` | `blocked`; a successful refresh or a new consent
//! returns to `connected`.

use super::FailureClass;
use serde::{Deserialize, Serialize};
use std::time::Duration;
use time::OffsetDateTime;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ConnectionState {
    #[default]
    PendingConsent,
    Connected,
    Degraded,
    ReconnectRequired,
    AppMisconfigured,
    Blocked,
}

impl ConnectionState {
    pub const ALL: [ConnectionState; 6] = [
        Self::PendingConsent,
        Self::Connected,
        Self::Degraded,
        Self::ReconnectRequired,
        Self::AppMisconfigured,
        Self::Blocked,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::PendingConsent => "pending_consent",
            Self::Connected => "connected",
            Self::Degraded => "degraded",
            Self::ReconnectRequired => "reconnect_required",
            Self::AppMisconfigured => "app_misconfigured",
            Self::Blocked => "blocked",
        }
    }

    /// States that only a human can leave; refresh passes leave them alone.
    pub fn is_permanent(self) -> bool {
        matches!(
            self,
            Self::ReconnectRequired | Self::AppMisconfigured | Self::Blocked
        )
    }

    /// States in which still-valid access tokens are served: the grant
    /// works, or fails only for a passing reason.
    pub fn serves_tokens(self) -> bool {
        matches!(self, Self::Connected | Self::Degraded)
    }

    /// What a human must do, in one sentence.
    pub fn advice(self) -> &'static str {
        match self {
            Self::PendingConsent => {
                "The booking account has not signed in yet: send it the consent link."
            }
            Self::Connected => "Tokens are refreshed automatically.",
            Self::Degraded => {
                "Refreshing is failing for a passing reason; it is retried and still-valid tokens are served."
            }
            Self::ReconnectRequired => {
                "The booking account must open the consent link again and sign in."
            }
            Self::AppMisconfigured => {
                "The operator must fix the app registration (tenant, client id or secret)."
            }
            Self::Blocked => {
                "The customer admin must unblock the account or adjust Conditional Access."
            }
        }
    }

    fn after_failure(class: FailureClass) -> Self {
        match class {
            FailureClass::Transient | FailureClass::OurBug => Self::Degraded,
            FailureClass::ReconnectNeeded => Self::ReconnectRequired,
            FailureClass::AppMisconfigured => Self::AppMisconfigured,
            FailureClass::Blocked => Self::Blocked,
        }
    }
}

/// The last failure, with what an admin needs to look it up at Microsoft.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastError {
    pub class: FailureClass,
    /// `AADSTS70008`, an OAuth `error` value, or `HTTP 503`.
    pub code: String,
    pub message: String,
    pub trace_id: Option<String>,
    pub correlation_id: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    pub state: ConnectionState,
    pub account: Option<String>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub connected_at: Option<OffsetDateTime>,
    pub last_error: Option<LastError>,
    pub consecutive_failures: u32,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub changed_at: Option<OffsetDateTime>,
}

/// Secrets Manager asks for no more than one write per secret per 10 minutes
/// sustained: a status that only counts another failure waits this long.
pub const MIN_REWRITE_INTERVAL: Duration = Duration::from_secs(10 * 60);

impl Status {
    pub fn connected(account: &str, now: OffsetDateTime) -> Self {
        Self {
            state: ConnectionState::Connected,
            account: Some(account.to_owned()),
            connected_at: Some(now),
            last_error: None,
            consecutive_failures: 0,
            changed_at: Some(now),
        }
    }

    pub fn after_success(&self, now: OffsetDateTime) -> Self {
        Self {
            state: ConnectionState::Connected,
            consecutive_failures: 0,
            changed_at: Some(now),
            ..self.clone()
        }
    }

    pub fn after_failure(&self, error: LastError) -> Self {
        Self {
            state: ConnectionState::after_failure(error.class),
            consecutive_failures: self.consecutive_failures.saturating_add(1),
            changed_at: Some(error.at),
            last_error: Some(error),
            ..self.clone()
        }
    }

    /// Whether `next` is worth a store write: the state or the error changed,
    /// or the failure count has been stale for [`MIN_REWRITE_INTERVAL`].
    pub fn worth_writing(&self, next: &Status, now: OffsetDateTime) -> bool {
        let error_code = |s: &Status| s.last_error.as_ref().map(|e| (e.class, e.code.clone()));
        if self.state != next.state || error_code(self) != error_code(next) {
            return true;
        }
        let stale = self.changed_at.is_none_or(|at| {
            Duration::try_from(now - at).unwrap_or(Duration::ZERO) >= MIN_REWRITE_INTERVAL
        });
        self.consecutive_failures != next.consecutive_failures && stale
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn error(class: FailureClass, code: &str, at: OffsetDateTime) -> LastError {
        LastError {
            class,
            code: code.into(),
            message: "m".into(),
            trace_id: None,
            correlation_id: None,
            at,
        }
    }

    #[test]
    fn failures_move_to_the_state_of_their_class_and_success_returns() {
        let now = datetime!(2026-11-28 12:00 UTC);
        let connected = Status::connected("booking@contoso.com", now);
        let degraded = connected.after_failure(error(FailureClass::Transient, "HTTP 503", now));
        assert_eq!(degraded.state, ConnectionState::Degraded);
        assert_eq!(degraded.consecutive_failures, 1);
        let revoked =
            degraded.after_failure(error(FailureClass::ReconnectNeeded, "AADSTS50173", now));
        assert_eq!(revoked.state, ConnectionState::ReconnectRequired);
        assert!(revoked.state.is_permanent());
        let back = revoked.after_success(now);
        assert_eq!(back.state, ConnectionState::Connected);
        assert_eq!(back.consecutive_failures, 0);
        assert_eq!(back.account.as_deref(), Some("booking@contoso.com"));
    }

    #[test]
    fn repeated_identical_failures_are_written_at_most_every_ten_minutes() {
        let now = datetime!(2026-11-28 12:00 UTC);
        let first = Status::connected("a", now).after_failure(error(
            FailureClass::Transient,
            "HTTP 503",
            now,
        ));
        let later = now + time::Duration::minutes(5);
        let second = first.after_failure(error(FailureClass::Transient, "HTTP 503", later));
        assert!(!first.worth_writing(&second, later));
        let much_later = now + time::Duration::minutes(11);
        assert!(first.worth_writing(&second, much_later));
        let other = first.after_failure(error(FailureClass::Transient, "HTTP 429", later));
        assert!(first.worth_writing(&other, later));
    }
}

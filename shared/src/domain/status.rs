//! The connection's state machine and what admins are told about it.
//!
//! `pending_consent` → `connected` ⇄ `degraded` → `reconnect_required` |
//! `app_misconfigured` | `blocked`; a successful refresh or a new consent
//! returns to `connected`, or to `tokens_too_short` when the tokens it got
//! live shorter than the store can keep fresh.
//!
//! Over 500 lines with its tests (about 160).

use super::FailureClass;
use super::notify::{
    Attempt, CredentialWarned, Event, MAX_OUTBOX, Notification, OutboxChange, RETRY_WAITS,
};
use super::{ConnectionId, Mode};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;
use time::OffsetDateTime;

/// A state's name is the same in JSON, logs and metrics dimensions.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    strum::EnumIter,
    strum::EnumString,
    strum::Display,
    strum::IntoStaticStr,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum ConnectionState {
    #[default]
    PendingConsent,
    Connected,
    Degraded,
    ReconnectRequired,
    AppMisconfigured,
    Blocked,
    /// Refreshing works, but the provider's access tokens live shorter than
    /// the store can keep fresh: displays are refused part of the time.
    TokensTooShort,
}

impl ConnectionState {
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
        matches!(
            self,
            Self::Connected | Self::Degraded | Self::TokensTooShort
        )
    }

    /// Whether a human must act on a connection in this state.
    pub fn needs_human(self) -> bool {
        !self.serves_tokens() || self == Self::TokensTooShort
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
            Self::TokensTooShort => {
                "The provider's access tokens live too short to be kept fresh here, so displays are refused part of the time: the customer's admin must lengthen their lifetime (Entra ID: a token lifetime policy), or the operator must run roomtoken on a store without a version quota."
            }
        }
    }

    /// [`Self::advice`] for a connection onboarded in `mode`: an app-only
    /// connection has nobody to sign in, only an admin to grant the app.
    pub fn advice_for(self, mode: super::Mode) -> &'static str {
        match self {
            Self::PendingConsent if mode.is_app_only() => {
                "The customer's admin has not granted the app yet: send them the consent link (nobody signs in)."
            }
            // AADSTS7000229: the app's service principal is gone from the tenant.
            Self::ReconnectRequired if mode.is_app_only() => {
                "The customer's tenant no longer grants the app (its enterprise application was removed, or the consent revoked): the customer's admin must open the consent link and grant it again."
            }
            _ => self.advice(),
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
    /// After a failure, no refresh pass tries again before this (a forced
    /// refresh does): failing connections back off across passes instead of
    /// writing on every one.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub next_attempt_at: Option<OffsetDateTime>,
    /// Which client secret the last successful token request used, once a
    /// connection holds two.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret_in_use: Option<SecretInUse>,
    /// Notifications not yet delivered to the operator's webhook, oldest
    /// first (bounded: [`super::notify::MAX_OUTBOX`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outbox: Vec<Notification>,
    /// The last credential-expiry warning sent, so that each is sent once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential_warned: Option<CredentialWarned>,
    /// App-only: the application permissions (the `roles` claim) that each
    /// resource's newest token carries, by resource name. What the admin's
    /// grant really gave: an `admin_consent=True` answer proves nothing by
    /// itself.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub granted_permissions: BTreeMap<String, Vec<String>>,
    /// Set while the tokens last issued live shorter than the store keeps
    /// fresh (the state is then `tokens_too_short`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub short_tokens: Option<ShortTokens>,
}

/// What the status says of an app-only connection whose tokens carry no
/// application permission at all.
pub const NO_APPLICATION_PERMISSION: &str = "No application permission was granted in Entra ID; if you use RBAC for Applications, check the rooms.";

/// One of the two client secrets a connection holds during a rotation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, strum::IntoStaticStr)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum SecretInUse {
    Newest,
    Previous,
}

/// From this many days before a client secret expires, the status says so
/// and a human is needed (Entra ID secrets live at most 24 months).
pub const CREDENTIAL_WARNING_DAYS: i64 = 30;

/// Whole days from `now` to the day a credential expires (negative once it
/// has expired).
pub fn credential_days_left(expires: time::Date, now: OffsetDateTime) -> i64 {
    (expires - now.date()).whole_days()
}

/// `credential_expiring` (or `credential_expired`): what to do, and how.
pub fn credential_advice(
    id: &super::ConnectionId,
    kind: super::CredentialKind,
    date: time::Date,
    days: i64,
) -> String {
    let (what, how) = match kind {
        super::CredentialKind::VendorApp => ("the vendor app's credential", "renew it for the vendor app and store it with `roomtoken vendor-app set --client-id ID` and `--client-secret-stdin --client-secret-expires YYYY-MM-DD` (a new client secret) or `--generate-certificate` (every vendor connection uses it)".to_owned()),
        super::CredentialKind::Certificate => ("the certificate", format!(
            "make a new one with `roomtoken connection update {id} --generate-certificate` and upload the certificate it prints to the app registration"
        )),
        super::CredentialKind::ClientSecret => ("the client secret", format!(
            "create a new client secret for the app in Entra ID and add it with `roomtoken connection update {id} --add-client-secret-stdin --client-secret-expires YYYY-MM-DD` (the old one keeps working until it is used)"
        )),
    };
    if days < 0 {
        format!("credential_expired: {what} expired on {date}; {how}.")
    } else {
        format!(
            "credential_expiring: {what} expires on {date} ({days} days left); before then, {how}."
        )
    }
}

/// Whether a human must act on a connection: its state says so, or its
/// credential expires within [`CREDENTIAL_WARNING_DAYS`].
pub fn needs_human(state: ConnectionState, credential_days_left: Option<i64>) -> bool {
    state.needs_human() || credential_days_left.is_some_and(|d| d <= CREDENTIAL_WARNING_DAYS)
}

/// Access tokens that live shorter than the store keeps fresh: what the
/// status and the consent page say of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShortTokens {
    /// The shortest lifetime of the tokens last issued, in seconds.
    pub lifetime_secs: u64,
    /// The shortest lifetime the store keeps fresh, in seconds.
    pub kept_fresh_secs: u64,
    /// The store counts Secrets Manager's version quota.
    pub secrets_manager: bool,
}

impl ShortTokens {
    /// Tokens of `lifetime` on a store that keeps `kept_fresh` fresh:
    /// `None` when they are long enough.
    pub fn judge(lifetime: Duration, kept_fresh: Duration, secrets_manager: bool) -> Option<Self> {
        (lifetime < kept_fresh).then_some(Self {
            lifetime_secs: lifetime.as_secs(),
            kept_fresh_secs: kept_fresh.as_secs(),
            secrets_manager,
        })
    }

    /// One sentence with the numbers.
    pub fn sentence(&self) -> String {
        let store = if self.secrets_manager {
            "on Secrets Manager"
        } else {
            "on this store"
        };
        format!(
            "This provider's tokens last {} s; {store} roomtoken keeps tokens of at least {} s ({} minutes) fresh.",
            self.lifetime_secs,
            self.kept_fresh_secs,
            self.kept_fresh_secs.div_ceil(60),
        )
    }
}

/// The wait after the first failure; it doubles with each further one.
pub const FIRST_BACKOFF: Duration = Duration::from_secs(5 * 60);
/// The longest wait between two attempts of a failing connection.
pub const MAX_BACKOFF: Duration = Duration::from_secs(60 * 60);

/// The wait before attempt `failures + 1`: 5, 10, 20, 40, 60, 60... minutes.
/// Each failed attempt writes the status once, so a failing connection
/// writes at most 4 times in its first hour and once an hour after that.
pub fn backoff(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    FIRST_BACKOFF
        .saturating_mul(1 << doublings)
        .min(MAX_BACKOFF)
}

impl Status {
    pub fn connected(account: &str, now: OffsetDateTime) -> Self {
        Self {
            state: ConnectionState::Connected,
            account: Some(account.to_owned()),
            connected_at: Some(now),
            last_error: None,
            consecutive_failures: 0,
            changed_at: Some(now),
            next_attempt_at: None,
            client_secret_in_use: None,
            outbox: Vec::new(),
            credential_warned: None,
            granted_permissions: BTreeMap::new(),
            short_tokens: None,
        }
    }

    /// After a success that issued tokens: `tokens_too_short` while
    /// `short` says they live too short for the store, `connected` again
    /// once they do not.
    pub fn with_token_lifetime(mut self, short: Option<ShortTokens>) -> Self {
        let succeeded = matches!(
            self.state,
            ConnectionState::Connected | ConnectionState::TokensTooShort
        );
        if succeeded {
            self.state = match short {
                Some(_) => ConnectionState::TokensTooShort,
                None => ConnectionState::Connected,
            };
            self.short_tokens = short;
        }
        self
    }

    /// What a human should do, with this status's own numbers.
    pub fn advice_for(&self, mode: super::Mode) -> String {
        match (&self.short_tokens, self.state) {
            (Some(short), ConnectionState::TokensTooShort) => {
                format!("{} {}", short.sentence(), self.state.advice_for(mode))
            }
            _ => self.state.advice_for(mode).to_owned(),
        }
    }

    /// This status replaced by `next` (a new consent): what is still owed
    /// to the operator (undelivered notifications, warnings sent) stays.
    pub fn replaced_by(&self, next: Status) -> Status {
        Status {
            outbox: self.outbox.clone(),
            credential_warned: self.credential_warned,
            ..next
        }
    }

    pub fn after_success(&self, now: OffsetDateTime) -> Self {
        Self {
            state: ConnectionState::Connected,
            consecutive_failures: 0,
            changed_at: Some(now),
            next_attempt_at: None,
            ..self.clone()
        }
    }

    /// After a human fixed what stopped the connection (an app registration,
    /// a secret): another attempt at the next pass, as `degraded`.
    pub fn retry_after_fix(self) -> Status {
        Status {
            state: ConnectionState::Degraded,
            next_attempt_at: None,
            ..self
        }
    }

    pub fn after_failure(&self, error: LastError) -> Self {
        let failures = self.consecutive_failures.saturating_add(1);
        Self {
            state: ConnectionState::after_failure(error.class),
            consecutive_failures: failures,
            changed_at: Some(error.at),
            next_attempt_at: error
                .at
                .checked_add(backoff(failures).try_into().unwrap_or_default()),
            last_error: Some(error),
            ..self.clone()
        }
    }

    /// While a token of the connection is still served, the next attempt
    /// is never later than one pass's wait: backing off past the moment the
    /// token expires would leave displays dark when one more try might have
    /// worked. At most 4 attempts (and status writes) in a token's last 20
    /// minutes; after it expires, [`backoff`] alone.
    pub fn retry_while_serving(mut self, expires_at: Option<OffsetDateTime>) -> Self {
        if let (Some(next), Some(expires_at), Some(failed_at)) = (
            self.next_attempt_at,
            expires_at,
            self.last_error.as_ref().map(|e| e.at),
        ) && self.state.serves_tokens()
            && failed_at < expires_at
        {
            self.next_attempt_at = Some(next.min(failed_at + FIRST_BACKOFF));
        }
        self
    }

    /// No attempt before `at` (a provider's `Retry-After`), whatever the
    /// backoff or a token still served would allow.
    pub fn not_before(mut self, at: Option<OffsetDateTime>) -> Self {
        if let Some(at) = at {
            self.next_attempt_at = Some(self.next_attempt_at.map_or(at, |next| next.max(at)));
        }
        self
    }

    /// Whether a refresh pass may try now (backoff after failures).
    pub fn may_attempt(&self, now: OffsetDateTime) -> bool {
        self.next_attempt_at.is_none_or(|at| at <= now)
    }

    /// Whether `next` is worth a store write: the state, the error or the
    /// next attempt changed. Attempts are spaced by [`backoff`], so this
    /// writes at most once per attempt.
    pub fn worth_writing(&self, next: &Status) -> bool {
        let error_code = |s: &Status| s.last_error.as_ref().map(|e| (e.class, e.code.clone()));
        self.state != next.state
            || error_code(self) != error_code(next)
            || self.next_attempt_at != next.next_attempt_at
    }
}

/// The outbox of notifications a status holds until they are delivered
/// (what is sent, and when again: [`super::notify`]).
impl Status {
    /// Queues the notification of a change from `old` to this status, if
    /// the change is worth one.
    pub fn note_change(
        &mut self,
        id: &ConnectionId,
        mode: Mode,
        old: ConnectionState,
        now: OffsetDateTime,
    ) {
        if let Some(event) = Event::state_change(id, mode, old, self, now) {
            self.enqueue(Notification::new(event));
        }
    }

    /// Adds a notification to the outbox, pushing out the oldest beyond
    /// [`MAX_OUTBOX`]; returns the ids pushed out.
    pub fn enqueue(&mut self, notification: Notification) -> Vec<String> {
        self.outbox.push(notification);
        let excess = self.outbox.len().saturating_sub(MAX_OUTBOX);
        self.outbox.drain(..excess).map(|n| n.id).collect()
    }

    /// The notifications a delivery may try at `now`, oldest first: those
    /// before the first one still waiting for its retry, so that a receiver
    /// never hears of a change before the one that preceded it.
    pub fn due_notifications(&self, now: OffsetDateTime) -> Vec<Notification> {
        self.outbox
            .iter()
            .take_while(|n| n.is_due(now))
            .cloned()
            .collect()
    }

    /// Records delivery attempts: a delivered notification leaves the
    /// outbox, a failed one waits its next [`RETRY_WAITS`] or is given up.
    /// Ids no longer in the outbox (pushed out meanwhile) are ignored.
    pub fn after_attempts(
        &mut self,
        attempts: &[(String, Attempt)],
        now: OffsetDateTime,
    ) -> OutboxChange {
        let mut change = OutboxChange::default();
        for (id, attempt) in attempts {
            let Some(at) = self.outbox.iter().position(|n| &n.id == id) else {
                continue;
            };
            match attempt {
                Attempt::Delivered => {
                    self.outbox.remove(at);
                    change.delivered += 1;
                }
                Attempt::Failed => {
                    change.failed += 1;
                    let notification = &mut self.outbox[at];
                    notification.attempts += 1;
                    let wait = RETRY_WAITS.get(notification.attempts as usize - 1);
                    match wait {
                        Some(wait) => notification.next_attempt_at = Some(now + *wait),
                        None => change.dropped.push(self.outbox.remove(at).id),
                    }
                }
            }
        }
        change
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    /// An app-only connection waiting for its consent needs the customer's
    /// admin to grant the app, with nobody to sign in; a delegated one
    /// needs the booking account (issue 25, item 10: removing the app-only
    /// guard made no test fail).
    #[test]
    fn a_pending_app_only_consent_asks_the_admin_not_a_booking_account() {
        use crate::domain::Mode;
        let pending = ConnectionState::PendingConsent;
        for mode in [Mode::AppOnly, Mode::VendorAppOnly] {
            let advice = pending.advice_for(mode);
            assert!(advice.contains("admin has not granted the app"), "{advice}");
            assert!(advice.contains("nobody signs in"), "{advice}");
        }
        for mode in [Mode::Operator, Mode::SelfService, Mode::Vendor] {
            let advice = pending.advice_for(mode);
            assert!(advice.contains("booking account"), "{advice}");
        }
    }

    /// Tokens too short make a success `tokens_too_short` (serving, but a
    /// human is needed, with the numbers in the advice); long enough ones
    /// make it `connected` again; a failure state is left as it is.
    #[test]
    fn a_success_with_short_tokens_needs_a_human() {
        let now = datetime!(2026-12-08 12:00 UTC);
        let short = ShortTokens::judge(Duration::from_secs(180), Duration::from_secs(2_400), true);
        let status = Status::connected("a@contoso.com", now).with_token_lifetime(short);
        assert_eq!(status.state, ConnectionState::TokensTooShort);
        assert!(status.state.serves_tokens() && needs_human(status.state, None));
        let advice = status.advice_for(crate::domain::Mode::Operator);
        assert!(
            advice.starts_with("This provider's tokens last 180 s; on Secrets Manager roomtoken keeps tokens of at least 2400 s (40 minutes) fresh."),
            "{advice}"
        );
        let long = ShortTokens::judge(Duration::from_secs(3_600), Duration::from_secs(2_400), true);
        assert_eq!(long, None);
        let again = status.after_success(now).with_token_lifetime(long);
        assert_eq!(again.state, ConnectionState::Connected);
        assert_eq!(again.short_tokens, None);
        let failed = Status {
            state: ConnectionState::Degraded,
            ..again
        };
        assert_eq!(
            failed.with_token_lifetime(short).state,
            ConnectionState::Degraded
        );
    }

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
    fn a_credential_needs_a_human_from_thirty_days_before_it_expires() {
        let now = datetime!(2026-11-29 23:59 UTC);
        let days = |date| credential_days_left(date, now);
        assert_eq!(days(time::macros::date!(2026 - 12 - 29)), 30);
        assert_eq!(days(time::macros::date!(2026 - 11 - 29)), 0);
        assert_eq!(days(time::macros::date!(2026 - 11 - 28)), -1);
        let connected = ConnectionState::Connected;
        assert!(!needs_human(connected, None));
        assert!(!needs_human(connected, Some(31)));
        assert!(needs_human(connected, Some(30)));
        assert!(needs_human(connected, Some(-3)), "expired");
        assert!(!needs_human(ConnectionState::Degraded, Some(200)));
        for state in [
            ConnectionState::PendingConsent,
            ConnectionState::ReconnectRequired,
            ConnectionState::AppMisconfigured,
            ConnectionState::Blocked,
        ] {
            assert!(needs_human(state, None), "{state}");
        }
    }

    #[test]
    fn failing_connections_back_off_across_passes() {
        let now = datetime!(2026-11-28 12:00 UTC);
        let mut status = Status::connected("a", now);
        let mut at = now;
        let mut attempts = Vec::new();
        // Attempt whenever allowed, on a pass every 5 minutes, for 3 hours.
        while at < now + time::Duration::hours(3) {
            if status.may_attempt(at) {
                let next = status.after_failure(error(FailureClass::Transient, "HTTP 503", at));
                assert!(
                    status.worth_writing(&next),
                    "each attempt records its backoff"
                );
                status = next;
                attempts.push((at - now).whole_minutes());
            }
            at += time::Duration::minutes(5);
        }
        assert_eq!(attempts, [0, 5, 15, 35, 75, 135]);
        assert_eq!(backoff(50), MAX_BACKOFF);

        // The same failures while a token is served until 12:20 (due at
        // 12:00 with a 20-minute margin): every pass tries until it
        // expires, then the backoff grows as before.
        let expires_at = now + time::Duration::minutes(20);
        let mut status = Status::connected("a", now);
        let mut at = now;
        let mut attempts = Vec::new();
        while at < now + time::Duration::hours(3) {
            if status.may_attempt(at) {
                let failure = error(FailureClass::Transient, "HTTP 503", at);
                status = status
                    .after_failure(failure)
                    .retry_while_serving(Some(expires_at));
                attempts.push((at - now).whole_minutes());
            }
            at += time::Duration::minutes(5);
        }
        assert_eq!(attempts, [0, 5, 10, 15, 20, 80, 140]);
        // A state that serves no token (a human must act) keeps its backoff.
        let stopped = Status::connected("a", now)
            .after_failure(error(FailureClass::ReconnectNeeded, "AADSTS50173", now))
            .retry_while_serving(Some(expires_at));
        assert_eq!(stopped.next_attempt_at, Some(now + FIRST_BACKOFF));
        let back = status.after_success(at);
        assert!(back.may_attempt(at) && back.next_attempt_at.is_none());
        assert!(status.worth_writing(&back));
        assert!(
            !back.worth_writing(&back.clone()),
            "nothing changed, nothing written"
        );
    }
}

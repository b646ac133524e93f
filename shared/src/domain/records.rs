//! The two secrets stored per connection, split by who may read them, and
//! the write log that keeps each inside Secrets Manager's version quota.
//!
//! - [`GrantRecord`] (`connections/{id}/grant`): the client secret, the
//!   refresh token and the pinned account. Only the functions that call the
//!   token endpoint (connect-callback, token-refresh) and the CLI read it.
//! - [`ServeRecord`] (`connections/{id}/serve`): the app's public settings,
//!   the access tokens, the active device-key serials and the status: everything
//!   connect-start and token-read need, and nothing they must not see.
//!
//! Both exist from `connection add` on, so that a read of a name that does
//! not exist means "no such connection" on every store alike.
//!
//! Over 500 lines with its tests (about 190).

use super::{AccessTokens, AppRegistration, DeviceKeys, Grant, Secret, Status};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

/// `connections/{id}/grant`
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct GrantRecord {
    /// The newest client secret: token requests use it first.
    pub client_secret: Secret,
    /// The secret it replaced while both are valid (a rotation): tried when
    /// the identity platform refuses the newest as invalid or expired.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_client_secret: Option<Secret>,
    /// The key and certificate that authenticate token requests instead of
    /// the client secrets, when the operator gave one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<crate::certificate::CertificateKey>,
    /// The refresh token and the pinned account; `None` until the first consent.
    #[serde(default)]
    pub grant: Option<Grant>,
    /// Consent sessions already completed: a replayed callback is refused
    /// without asking the provider again.
    #[serde(default)]
    pub completed_sessions: Vec<CompletedSession>,
    #[serde(default)]
    pub writes: WriteLog,
}

impl GrantRecord {
    pub fn new(client_secret: Secret) -> Self {
        Self {
            client_secret,
            previous_client_secret: None,
            certificate: None,
            grant: None,
            completed_sessions: Vec::new(),
            writes: WriteLog::default(),
        }
    }

    /// Whether the consent session with this `state` was completed already.
    pub fn completed(&self, state: &str) -> bool {
        let digest = session_digest(state);
        self.completed_sessions.iter().any(|s| s.digest == digest)
    }

    /// Remembers a completed session until its cookie would have expired
    /// anyway, keeping the list short.
    pub fn complete_session(&mut self, state: &str, cookie_expires_at: i64, now: OffsetDateTime) {
        let now = now.unix_timestamp();
        self.completed_sessions.retain(|s| s.expires_at > now);
        self.completed_sessions.push(CompletedSession {
            digest: session_digest(state),
            expires_at: cookie_expires_at,
        });
        let excess = self
            .completed_sessions
            .len()
            .saturating_sub(MAX_COMPLETED_SESSIONS);
        self.completed_sessions.drain(..excess);
    }
}

/// At most this many completed sessions are remembered; older ones have
/// long expired (a session lives 15 minutes, and consents are rate-limited
/// by the write log).
const MAX_COMPLETED_SESSIONS: usize = 8;

/// A completed consent session: a hash of its `state` (never the value) and
/// when its cookie expires.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompletedSession {
    pub digest: String,
    pub expires_at: i64,
}

fn session_digest(state: &str) -> String {
    hex::encode(&Sha256::digest(state.as_bytes())[..16])
}

/// `connections/{id}/serve`
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ServeRecord {
    pub app: AppRegistration,
    /// Access tokens per resource; `None` until the first consent.
    #[serde(default)]
    pub access: Option<AccessTokens>,
    #[serde(default)]
    pub keys: DeviceKeys,
    #[serde(default)]
    pub status: Status,
    /// Consent links are signed for this generation: bumping it
    /// (`link --revoke-all`, `--reset-account`) revokes every older one.
    #[serde(default)]
    pub link_generation: u32,
    #[serde(default)]
    pub writes: WriteLog,
}

impl ServeRecord {
    /// When the credential that token requests use expires, if known: the
    /// certificate's, or the client secret's (the previous one's while a
    /// rotation still falls back to it).
    pub fn credential_expires(&self) -> Option<time::Date> {
        if let Some(certificate) = &self.app.certificate {
            return Some(certificate.expires);
        }
        match self.status.client_secret_in_use {
            Some(super::status::SecretInUse::Previous) => self.app.previous_client_secret_expires,
            _ => self.app.client_secret_expires,
        }
    }

    pub fn new(app: AppRegistration) -> Self {
        Self {
            app,
            access: None,
            keys: DeviceKeys::default(),
            status: Status::default(),
            link_generation: 0,
            writes: WriteLog::default(),
        }
    }
}

/// `None` when `writer` may write both secrets of a connection now (a consent
/// and a refresh write both); otherwise when it may.
pub fn room_in_both(
    grant: &GrantRecord,
    serve: &ServeRecord,
    writer: Writer,
    now: OffsetDateTime,
) -> Option<OffsetDateTime> {
    [&grant.writes, &serve.writes]
        .into_iter()
        .filter_map(|log| log.room_for(writer, now))
        .max()
}

/// The largest access or refresh token roomtoken stores. Entra ID's for
/// Graph and Exchange are 1.5 to 4 KB (first-party resources: no app can
/// add group claims to them); a provider that sends a larger one is
/// refused at the token request, so that what a refresh writes always has
/// the room its secrets keep for it.
pub const MAX_TOKEN_BYTES: usize = 8_192;
/// A stored token's fields besides the token (type, scope, dates).
const TOKEN_ENTRY_BYTES: usize = 1_024;
/// One outbox entry at most: its event, with a last error whose message is
/// cut at 300 characters.
const NOTIFICATION_BYTES: usize = 1_536;
/// What a refresh may add to the status: a last error, granted roles.
const STATUS_GROWTH_BYTES: usize = 2_048;
/// A day of the product's write-log entries (6 an hour, 11 bytes each).
const LOG_GROWTH_BYTES: usize = 2_048;

/// A stored record that carries its own [`WriteLog`].
pub trait Logged {
    fn writes(&self) -> &WriteLog;
    fn writes_mut(&mut self) -> &mut WriteLog;
    /// How many bytes the product's own writes (refresh passes) may add to
    /// this record at most: people's writes leave it free, so that a
    /// refresh is never the write a size limit refuses.
    fn product_room(&self) -> usize;
}

impl Logged for GrantRecord {
    fn writes(&self) -> &WriteLog {
        &self.writes
    }
    fn writes_mut(&mut self) -> &mut WriteLog {
        &mut self.writes
    }
    /// A refresh replaces the refresh token (rotation) and logs its write.
    fn product_room(&self) -> usize {
        let held = self
            .grant
            .as_ref()
            .map_or(0, |g| g.refresh_token.expose().len());
        MAX_TOKEN_BYTES.saturating_sub(held) + LOG_GROWTH_BYTES
    }
}

impl Logged for ServeRecord {
    fn writes(&self) -> &WriteLog {
        &self.writes
    }
    fn writes_mut(&mut self) -> &mut WriteLog {
        &mut self.writes
    }
    /// A refresh stores one token per resource (each up to
    /// [`MAX_TOKEN_BYTES`]), fills the notification outbox, records a last
    /// error and logs its write.
    fn product_room(&self) -> usize {
        let resources = self.app.resources.len().max(1);
        let held: usize = self.access.as_ref().map_or(0, |access| {
            access
                .tokens
                .iter()
                .map(|t| t.access_token.expose().len() + TOKEN_ENTRY_BYTES)
                .sum()
        });
        let tokens = (resources * (MAX_TOKEN_BYTES + TOKEN_ENTRY_BYTES)).saturating_sub(held);
        let outbox =
            super::notify::MAX_OUTBOX.saturating_sub(self.status.outbox.len()) * NOTIFICATION_BYTES;
        tokens + outbox + STATUS_GROWTH_BYTES + LOG_GROWTH_BYTES
    }
}

/// Who asks to write a secret.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Writer {
    /// The product's own activity: refresh passes (forced or not),
    /// failures, keep-alive.
    Product,
    /// The operator's changes (admin commands) that revoke nothing.
    Person,
    /// A write someone on the internet can cause: a completed consent (and
    /// the self-service form it stores). Whoever holds a link can repeat
    /// it, so it has a small budget of its own.
    Internet,
    /// The operator's revocations (`key revoke`, `link --revoke-all`,
    /// `connection update --reset-account`): they always have room.
    Revocation,
}

/// Secrets Manager removes no version younger than 24 hours and holds about
/// 100 versions per secret: more than that in a day and writes fail. So,
/// per secret and per rolling 24 hours (ARCHITECTURE.md, *Stored state*):
/// - everything together stays within [`MAX_VERSIONS_PER_DAY`] (90, the
///   rest is margin for versions no log can count);
/// - of those, [`RESERVED_FOR_REVOCATION`] are kept for revocations, which
///   nothing else may use: every other writer stops at 82;
/// - people (the operator and completed consents together) stay within
///   [`MAX_PERSON_VERSIONS_PER_DAY`] (batching helps: `key create --count`),
///   and completed consents within [`MAX_CONSENTS_PER_DAY`] of those;
/// - the product's own writes stay within 6 an hour and
///   [`MAX_PRODUCT_VERSIONS_PER_DAY`] a day, so that people always keep
///   10 of the day's unreserved versions.
///
/// A link holder can so take at most 10 of the day's versions, never the
/// operator's revocations, and people's 50 leave the product 32 (a refresh
/// every 50 minutes writes each secret about 29 times a day).
pub const MAX_PRODUCT_VERSIONS_PER_HOUR: usize = 6;
pub const MAX_PRODUCT_VERSIONS_PER_DAY: usize = 72;
pub const MAX_VERSIONS_PER_DAY: usize = 90;
pub const MAX_PERSON_VERSIONS_PER_DAY: usize = 50;
pub const MAX_CONSENTS_PER_DAY: usize = 10;
pub const RESERVED_FOR_REVOCATION: usize = 8;
/// Writes of the product's hourly quota that notifications never take: a
/// refresh (two attempts, or one and a failure) always finds room.
pub const RESERVED_FOR_REFRESH: usize = 2;

/// What every writer but a revocation may use of a day.
const UNRESERVED_PER_DAY: usize = MAX_VERSIONS_PER_DAY - RESERVED_FOR_REVOCATION;

/// When a secret was written in the last 24 hours, and by whom (Unix
/// seconds, oldest first). Every writer appends to it in the write itself,
/// so it costs no call and is as current as the version it is part of.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriteLog {
    #[serde(default)]
    product: Vec<i64>,
    /// The operator's writes, revocations included.
    #[serde(default)]
    person: Vec<i64>,
    /// Completed consents.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    internet: Vec<i64>,
}

const HOUR: i64 = 3_600;
const DAY: i64 = 86_400;

/// The times in `log` within `window` seconds before `now` (and any later:
/// a clock behind another writer's counts them too), oldest first.
fn recent(log: &[i64], window: i64, now: OffsetDateTime) -> Vec<i64> {
    let since = now.unix_timestamp() - window;
    log.iter().copied().filter(|&at| at > since).collect()
}

/// `None` when the window holds fewer than `limit` of `times`; otherwise
/// when the write that must leave it for one more to fit leaves.
fn room(times: &[i64], window: i64, limit: usize, now: OffsetDateTime) -> Option<OffsetDateTime> {
    let mut times = recent(times, window, now);
    if times.len() < limit {
        return None;
    }
    times.sort_unstable();
    let leaving = times[times.len() - limit];
    OffsetDateTime::from_unix_timestamp(leaving + window).ok()
}

impl WriteLog {
    fn all(&self) -> Vec<i64> {
        let mut all: Vec<i64> = self.product.iter().chain(&self.people()).copied().collect();
        all.sort_unstable();
        all
    }

    /// The operator's writes and the completed consents.
    fn people(&self) -> Vec<i64> {
        self.person.iter().chain(&self.internet).copied().collect()
    }

    /// Writes by anyone in the last hour.
    pub fn last_hour(&self, now: OffsetDateTime) -> usize {
        recent(&self.all(), HOUR, now).len()
    }

    /// Writes by anyone in the last 24 hours.
    pub fn last_day(&self, now: OffsetDateTime) -> usize {
        recent(&self.all(), DAY, now).len()
    }

    /// `None` when `writer` may write now; otherwise the earliest time it may.
    pub fn room_for(&self, writer: Writer, now: OffsetDateTime) -> Option<OffsetDateTime> {
        let all = self.all();
        let limits = match writer {
            Writer::Product => vec![
                room(&self.product, HOUR, MAX_PRODUCT_VERSIONS_PER_HOUR, now),
                room(&self.product, DAY, MAX_PRODUCT_VERSIONS_PER_DAY, now),
                room(&all, DAY, UNRESERVED_PER_DAY, now),
            ],
            Writer::Person => vec![
                room(&self.people(), DAY, MAX_PERSON_VERSIONS_PER_DAY, now),
                room(&all, DAY, UNRESERVED_PER_DAY, now),
            ],
            Writer::Internet => vec![
                room(&self.internet, DAY, MAX_CONSENTS_PER_DAY, now),
                room(&self.people(), DAY, MAX_PERSON_VERSIONS_PER_DAY, now),
                room(&all, DAY, UNRESERVED_PER_DAY, now),
            ],
            Writer::Revocation => vec![room(&all, DAY, MAX_VERSIONS_PER_DAY, now)],
        };
        limits.into_iter().flatten().max()
    }

    /// `None` while another consent may complete today; otherwise when one
    /// may (the consents' own budget only: see [`Self::room_for`]).
    pub fn room_for_consent(&self, now: OffsetDateTime) -> Option<OffsetDateTime> {
        room(&self.internet, DAY, MAX_CONSENTS_PER_DAY, now)
    }

    /// Whether the product may make a write that can wait (a notification's
    /// bookkeeping) and still leave [`RESERVED_FOR_REFRESH`] writes of this
    /// hour's quota for the refreshes that cannot.
    pub fn spare_for_product(&self, now: OffsetDateTime) -> bool {
        let reserve = RESERVED_FOR_REFRESH;
        recent(&self.product, HOUR, now).len() + reserve < MAX_PRODUCT_VERSIONS_PER_HOUR
            && recent(&self.product, DAY, now).len() + reserve < MAX_PRODUCT_VERSIONS_PER_DAY
            && recent(&self.all(), DAY, now).len() + reserve < UNRESERVED_PER_DAY
    }

    /// Records a write at `now` and forgets what is older than a day.
    pub fn record(&mut self, writer: Writer, now: OffsetDateTime) {
        let since = now.unix_timestamp() - DAY;
        self.product.retain(|&at| at > since);
        self.person.retain(|&at| at > since);
        self.internet.retain(|&at| at > since);
        let log = match writer {
            Writer::Product => &mut self.product,
            Writer::Person | Writer::Revocation => &mut self.person,
            Writer::Internet => &mut self.internet,
        };
        log.push(now.unix_timestamp());
        log.sort_unstable();
    }
}

/// `2026-11-28 13:00 UTC`: how times are shown to people.
pub fn format_utc(at: OffsetDateTime) -> String {
    let format = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute] UTC");
    at.to_offset(time::UtcOffset::UTC)
        .format(&format)
        .unwrap_or_else(|_| at.unix_timestamp().to_string())
}

#[cfg(test)]
mod size_tests {
    use super::*;
    use crate::domain::notify::{Event, Notification};
    use crate::domain::{CredentialKind, FailureClass, LastError, Mode};
    use time::macros::datetime;

    /// The room a refresh keeps for each notification holds the largest one
    /// the product makes: a failure with a 300-character message (what the
    /// identity client keeps of one) for a 64-character connection id and a
    /// long account, and the longest credential advice.
    #[test]
    fn the_largest_notification_fits_the_room_kept_for_one() {
        let now = datetime!(2026-11-29 12:00 UTC);
        let id = crate::domain::ConnectionId::parse(&"c".repeat(64)).unwrap();
        let mut status =
            Status::connected(&format!("{}@contoso.onmicrosoft.com", "a".repeat(64)), now);
        status.state = crate::domain::ConnectionState::ReconnectRequired;
        status.last_error = Some(LastError {
            class: FailureClass::ReconnectNeeded,
            code: "AADSTS700082".into(),
            message: "é".repeat(300),
            trace_id: Some("0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0".into()),
            correlation_id: Some("1b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0".into()),
            at: now,
        });
        let mut largest = 0;
        for mode in [
            Mode::Operator,
            Mode::SelfService,
            Mode::Vendor,
            Mode::AppOnly,
            Mode::VendorAppOnly,
        ] {
            let event = Event::state_change(
                &id,
                mode,
                crate::domain::ConnectionState::Connected,
                &status,
                now,
            )
            .unwrap();
            let json = serde_json::to_string(&Notification::new(event)).unwrap();
            largest = largest.max(json.len());
        }
        for kind in [
            CredentialKind::VendorApp,
            CredentialKind::Certificate,
            CredentialKind::ClientSecret,
        ] {
            let expires = now.date();
            let advice = crate::domain::status::credential_advice(&id, kind, expires, -3);
            let event = Event::credential_expiring(&id, &status, expires, advice, now);
            let json =
                serde_json::to_string(&Notification::credential_warning(&id, event, expires, -3))
                    .unwrap();
            largest = largest.max(json.len());
        }
        assert!(
            largest <= NOTIFICATION_BYTES,
            "{largest} bytes > {NOTIFICATION_BYTES}"
        );
    }
}

#[cfg(test)]
mod spare_room_tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn notifications_leave_two_writes_an_hour_to_refreshes() {
        let now = datetime!(2026-11-29 12:00 UTC);
        let mut log = WriteLog::default();
        let mut spare = 0;
        while log.spare_for_product(now) {
            log.record(Writer::Product, now);
            spare += 1;
        }
        assert_eq!(spare, MAX_PRODUCT_VERSIONS_PER_HOUR - RESERVED_FOR_REFRESH);
        assert_eq!(
            log.room_for(Writer::Product, now),
            None,
            "a refresh still fits"
        );
        assert!(log.spare_for_product(now + time::Duration::hours(1)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const T0: OffsetDateTime = datetime!(2026-11-28 12:00 UTC);

    #[test]
    fn the_product_gets_six_writes_an_hour_and_is_told_when_more_free_up() {
        let mut log = WriteLog::default();
        let minutes = |m: i64| T0 + time::Duration::minutes(m);
        for m in 0..6 {
            assert_eq!(log.room_for(Writer::Product, minutes(m)), None);
            log.record(Writer::Product, minutes(m));
        }
        assert_eq!(
            log.room_for(Writer::Product, minutes(10)),
            Some(minutes(60)),
            "the first write leaves the hour at 13:00"
        );
        assert_eq!(log.room_for(Writer::Product, minutes(60)), None);
        // People's changes do not take the product's hourly room.
        log.record(Writer::Person, minutes(10));
        assert_eq!(log.room_for(Writer::Person, minutes(10)), None);
        assert_eq!(log.last_hour(minutes(10)), 7);
    }

    #[test]
    fn the_log_keeps_one_day_and_caps_each_day() {
        let mut log = WriteLog::default();
        for n in 0..MAX_PERSON_VERSIONS_PER_DAY as i64 {
            log.record(Writer::Person, T0 + time::Duration::minutes(n));
        }
        let now = T0 + time::Duration::hours(2);
        assert_eq!(
            log.room_for(Writer::Person, now),
            Some(T0 + time::Duration::days(1) + time::Duration::minutes(0)),
            "people have used their day"
        );
        for n in 0..(UNRESERVED_PER_DAY - MAX_PERSON_VERSIONS_PER_DAY) as i64 {
            let at = now + time::Duration::minutes(10 * n);
            assert_eq!(log.room_for(Writer::Product, at), None, "write {n}");
            log.record(Writer::Product, at);
        }
        let later = now + time::Duration::minutes(400);
        assert_eq!(log.last_day(later), UNRESERVED_PER_DAY);
        assert!(
            log.room_for(Writer::Product, later).is_some(),
            "the day is full but for revocations"
        );
        for n in 0..RESERVED_FOR_REVOCATION as i64 {
            let at = later + time::Duration::minutes(n);
            assert_eq!(log.room_for(Writer::Revocation, at), None, "revocation {n}");
            log.record(Writer::Revocation, at);
        }
        assert_eq!(log.last_day(later), MAX_VERSIONS_PER_DAY);
        assert!(log.room_for(Writer::Revocation, later).is_some());
        log.record(Writer::Product, T0 + time::Duration::days(3));
        assert_eq!(
            log.last_day(T0 + time::Duration::days(3)),
            1,
            "a day is kept"
        );
    }

    #[test]
    fn consents_have_a_small_budget_that_never_takes_the_revocations() {
        let mut log = WriteLog::default();
        let at = |n: i64| T0 + time::Duration::minutes(n);
        for n in 0..MAX_CONSENTS_PER_DAY as i64 {
            assert_eq!(log.room_for(Writer::Internet, at(n)), None, "consent {n}");
            log.record(Writer::Internet, at(n));
        }
        let retry = Some(T0 + time::Duration::days(1));
        assert_eq!(log.room_for(Writer::Internet, at(20)), retry);
        assert_eq!(log.room_for_consent(at(20)), retry);
        // The operator's day is shared with them, but has room left.
        for n in 0..(MAX_PERSON_VERSIONS_PER_DAY - MAX_CONSENTS_PER_DAY) as i64 {
            assert_eq!(log.room_for(Writer::Person, at(30 + n)), None, "change {n}");
            log.record(Writer::Person, at(30 + n));
        }
        assert!(log.room_for(Writer::Person, at(100)).is_some());
        assert_eq!(log.room_for(Writer::Revocation, at(100)), None);
        // The JSON of a log written by an older version reads as before.
        let old: WriteLog = serde_json::from_str(r#"{"product":[1],"person":[2]}"#).unwrap();
        assert_eq!(old.internet, Vec::<i64>::new());
    }

    #[test]
    fn completed_sessions_are_remembered_by_hash_and_forgotten_when_expired() {
        let mut record = GrantRecord::new(Secret::new("s"));
        let expires = (T0 + time::Duration::minutes(15)).unix_timestamp();
        record.complete_session("state-1", expires, T0);
        assert!(record.completed("state-1"));
        assert!(!record.completed("state-2"));
        let json = serde_json::to_string(&record).unwrap();
        assert!(!json.contains("state-1"), "only a hash is stored");
        record.complete_session("state-2", expires + 3_600, T0 + time::Duration::minutes(30));
        assert!(!record.completed("state-1"), "expired sessions are dropped");
        assert!(record.completed("state-2"));
    }
}

//! What a refresh pass did to one connection: the outcome the pass reports,
//! logs, counts as metrics and remembers between passes.

use super::{ConnectionState, LastError};
use time::OffsetDateTime;

/// What a pass did to one connection.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Refreshed {
        resources: Vec<String>,
    },
    NotDue,
    PendingConsent,
    /// Left alone: a human must act first.
    Skipped(ConnectionState),
    /// Failing, and backing off until this time.
    BackingOff(OffsetDateTime),
    Failed(LastError),
    /// Another writer stored a newer grant first; theirs is kept.
    LostRace,
    /// Listed, but removed (or being deleted) by the time it was read.
    Removed,
    /// Another pass of this process is refreshing it right now.
    Busy,
    /// Due, but left for the next pass: the write budget or the pass's
    /// time ran out (the most urgent connections went first).
    Deferred,
    /// Due, but one of its secrets has no room left in Secrets Manager's
    /// version quota before this time.
    WriteQuota(OffsetDateTime),
    StoreFailed(String),
}

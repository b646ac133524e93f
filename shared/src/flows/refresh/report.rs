//! What a pass reports: one line per connection, the notifications it
//! delivered, and the log line of each outcome.

use super::notify::DeliveryReport;
use crate::domain::{ConnectionId, ConnectionState, CredentialKind, Outcome, Status};

/// One connection's line in a pass report.
#[derive(Debug, Clone)]
pub struct ConnectionResult {
    pub id: ConnectionId,
    pub outcome: Outcome,
    /// The state after the pass; `None` when the store could not tell.
    pub state: Option<ConnectionState>,
    /// The whole status after the pass (its outbox of notifications), when
    /// the store could tell.
    pub status: Option<Status>,
    /// When the connection's client secret expires, if known.
    pub credential_expires: Option<time::Date>,
    /// What that credential is: the connection's secret or certificate,
    /// or the vendor app's secret.
    pub credential_kind: CredentialKind,
}

#[derive(Debug, Default)]
pub struct PassReport {
    pub results: Vec<ConnectionResult>,
    /// The notifications sent to the operator's webhook after the refreshes.
    pub notifications: DeliveryReport,
}

impl PassReport {
    pub fn count(&self, matches: impl Fn(&Outcome) -> bool) -> usize {
        self.results.iter().filter(|r| matches(&r.outcome)).count()
    }
}

pub(super) fn log_outcome(id: &ConnectionId, outcome: &Outcome) {
    match outcome {
        Outcome::Refreshed { resources } => {
            tracing::info!(connection = %id, resources = ?resources, "refreshed")
        }
        Outcome::NotDue | Outcome::PendingConsent => {
            tracing::debug!(connection = %id, outcome = ?outcome, "nothing to do")
        }
        Outcome::Removed => {
            tracing::info!(connection = %id, "removed while the pass ran: nothing to do")
        }
        Outcome::BackingOff(until) => {
            tracing::debug!(connection = %id, until = %until, "backing off after failures")
        }
        Outcome::Skipped(state) => {
            tracing::info!(connection = %id, state = %state, "skipped until a human acts")
        }
        Outcome::Failed(error) => tracing::warn!(
            connection = %id, class = %error.class, code = %error.code,
            trace_id = ?error.trace_id, correlation_id = ?error.correlation_id,
            message = %error.message, "refresh failed"
        ),
        Outcome::LostRace => tracing::info!(connection = %id, "another writer refreshed first"),
        Outcome::Busy => tracing::info!(connection = %id, "another pass is refreshing it"),
        Outcome::Deferred => {
            tracing::info!(connection = %id, "due, left for the next pass (write budget or time)")
        }
        Outcome::WriteQuota(until) => tracing::warn!(
            connection = %id, until = %until,
            "due, but its secrets have no room in the version quota"
        ),
        Outcome::StoreFailed(message) => {
            tracing::error!(connection = %id, error = %message, "store failed during refresh")
        }
    }
}

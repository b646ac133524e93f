//! token-refresh as a library: what the scheduler sends, the pass it runs,
//! and what it answers and prints (CloudWatch embedded metrics). `main.rs`
//! only hands Lambda events to [`handle`].

pub mod metrics;

use roomtoken::Broker;
use roomtoken::domain::ConnectionId;
use roomtoken::domain::status::{credential_days_left, needs_human};
use roomtoken::flows::refresh::notify::DeliveryReport;
use roomtoken::flows::refresh::{Outcome, PassOptions, PassReport, refresh_pass};
use roomtoken::store::StoreError;
use std::collections::BTreeMap;
use time::OffsetDateTime;

/// What the scheduler sends the refresh function. EventBridge Scheduler
/// passes its `Input` verbatim, so every field is optional and `{}` runs a
/// normal pass.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RefreshRequest {
    /// Only this connection.
    pub connection: Option<ConnectionId>,
    pub force: bool,
}

/// Counts per outcome, for the function's answer and its metrics.
#[derive(Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct PassSummary {
    pub connections: usize,
    pub refreshed: usize,
    pub not_due: usize,
    pub pending_consent: usize,
    pub skipped: usize,
    pub failed: usize,
    pub lost_race: usize,
    pub busy: usize,
    pub backing_off: usize,
    pub deferred: usize,
    pub write_quota: usize,
    pub store_failed: usize,
    /// Failures per class (`transient`, `reconnect_needed`, ...).
    pub failed_by_class: BTreeMap<&'static str, usize>,
    /// Connections per state after the pass.
    pub states: BTreeMap<&'static str, usize>,
    /// Connections a human must act on: their state, or a client secret
    /// that expires within 30 days (what `roomtoken status` flags).
    pub needing_human: usize,
    /// Days until the earliest known client secret expiry (negative once
    /// one has expired), if any is known.
    pub credential_days_left: Option<i64>,
    /// What was sent to the operator's webhook after the refreshes.
    pub notifications: DeliveryReport,
}

impl PassSummary {
    /// The counts of a pass's report at `now`.
    pub fn of(report: &PassReport, now: OffsetDateTime) -> Self {
        let mut summary = PassSummary {
            connections: report.results.len(),
            notifications: report.notifications.clone(),
            ..PassSummary::default()
        };
        for result in &report.results {
            let days_left = result
                .credential_expires
                .map(|date| credential_days_left(date, now));
            if let Some(days) = days_left {
                summary.credential_days_left =
                    Some(summary.credential_days_left.map_or(days, |d| d.min(days)));
            }
            if let Some(state) = result.state {
                *summary.states.entry(state.into()).or_default() += 1;
                summary.needing_human += usize::from(needs_human(state, days_left));
            }
            if let Outcome::Failed(error) = &result.outcome {
                *summary
                    .failed_by_class
                    .entry(error.class.into())
                    .or_default() += 1;
            }
            let slot = match &result.outcome {
                Outcome::Refreshed { .. } => &mut summary.refreshed,
                Outcome::NotDue => &mut summary.not_due,
                Outcome::PendingConsent => &mut summary.pending_consent,
                // Listed, then gone: not a failure, and no connection.
                Outcome::Removed => {
                    summary.connections = summary.connections.saturating_sub(1);
                    continue;
                }
                Outcome::Skipped(_) => &mut summary.skipped,
                Outcome::Failed(_) => &mut summary.failed,
                Outcome::LostRace => &mut summary.lost_race,
                Outcome::Busy => &mut summary.busy,
                Outcome::BackingOff(_) => &mut summary.backing_off,
                Outcome::Deferred => &mut summary.deferred,
                Outcome::WriteQuota(_) => &mut summary.write_quota,
                Outcome::StoreFailed(_) => &mut summary.store_failed,
            };
            *slot += 1;
        }
        summary
    }
}

/// The scheduled entry point: one pass as the request asks.
pub async fn scheduled_pass(
    broker: &Broker,
    request: RefreshRequest,
) -> Result<PassSummary, StoreError> {
    let options = PassOptions {
        only: request.connection,
        force: request.force,
    };
    let report = refresh_pass(broker, &options, broker.now()).await?;
    let summary = PassSummary::of(&report, broker.now());
    tracing::info!(summary = ?summary, "refresh pass done");
    Ok(summary)
}

/// One scheduled event: the pass, its answer, and its metrics on stdout.
pub async fn handle(
    broker: &Broker,
    event: lambda_runtime::LambdaEvent<RefreshRequest>,
) -> Result<PassSummary, StoreError> {
    let summary = match scheduled_pass(broker, event.payload).await {
        Ok(summary) => summary,
        // The store could not even be listed (down, or hanging past the
        // client's timeouts): the metrics say so all the same, as one
        // store failure, so that the alarm on them goes off.
        Err(e) => {
            metrics::print_pass_metrics(&failed_pass());
            return Err(e);
        }
    };
    metrics::print_pass_metrics(&summary);
    Ok(summary)
}

/// The counts of a pass that could not list the connections.
pub fn failed_pass() -> PassSummary {
    PassSummary {
        store_failed: 1,
        ..PassSummary::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lambda_runtime::{Context, LambdaEvent};
    use roomtoken::Config;
    use roomtoken::identity::OAuthClient;
    use roomtoken::store::{FileStore, StoreSpec};
    use std::sync::Arc;
    use std::time::Duration;

    #[tokio::test]
    async fn the_schedules_empty_input_runs_a_pass_and_answers_its_summary() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(FileStore::open(dir.path()).unwrap());
        let identity = Arc::new(OAuthClient::new(Duration::from_secs(1)).unwrap());
        let config = Config::new(StoreSpec::File(dir.path().to_owned()));
        let broker = Broker::new(store, identity, config);
        let request: RefreshRequest = serde_json::from_str("{}").unwrap();
        let event = LambdaEvent::new(request, Context::default());
        let summary = handle(&broker, event).await.unwrap();
        assert_eq!(summary, PassSummary::default());
    }

    #[test]
    fn the_summary_counts_who_needs_a_human_and_the_earliest_credential() {
        use roomtoken::domain::ConnectionState;
        use roomtoken::flows::refresh::ConnectionResult;
        let now = time::macros::datetime!(2026-11-29 12:00 UTC);
        let result = |id: &str, state, days: Option<i64>| ConnectionResult {
            id: ConnectionId::parse(id).unwrap(),
            outcome: Outcome::NotDue,
            state: Some(state),
            status: None,
            credential_expires: days.map(|d| now.date() + time::Duration::days(d)),
            credential_kind: Default::default(),
        };
        let report = PassReport {
            notifications: Default::default(),
            results: vec![
                result("fine", ConnectionState::Connected, Some(90)),
                result("expiring", ConnectionState::Connected, Some(12)),
                result("unknown", ConnectionState::Degraded, None),
                result("reconnect", ConnectionState::ReconnectRequired, Some(40)),
            ],
        };
        let summary = PassSummary::of(&report, now);
        assert_eq!(summary.needing_human, 2);
        assert_eq!(summary.credential_days_left, Some(12));
    }

    #[test]
    fn unknown_fields_are_refused_rather_than_ignored() {
        assert!(serde_json::from_str::<RefreshRequest>(r#"{"forcee": true}"#).is_err());
        let request: RefreshRequest =
            serde_json::from_str(r#"{"connection": "contoso", "force": true}"#).unwrap();
        assert!(request.force);
        assert_eq!(request.connection.unwrap().as_str(), "contoso");
    }
}

//! token-refresh: one pass over every connection, refreshing what is due.
//!
//! A pass never loses a refresh token, and stays inside Secrets Manager's
//! quotas (ARCHITECTURE.md, *Stored state*):
//! - it reads every connection's serve secret, and only the due ones' grant;
//! - it refreshes the most urgent connections first (least time left), each
//!   with at most two writes (the rotated grant, then the serve secret with
//!   the new access tokens and the status: 4 calls on Secrets Manager), paced
//!   under the write budget; what does not fit before the pass's deadline is
//!   left for the next pass;
//! - transient failures are retried with backoff inside the pass, and a
//!   failing connection backs off across passes (the next attempt time lives
//!   in its status) instead of writing on every pass;
//! - the newest refresh token is stored before the access tokens it minted,
//!   by compare-and-swap on the version read: a new consent that lands
//!   meanwhile wins;
//! - in one process, a connection is refreshed by one pass at a time. Two
//!   processes refreshing the same connection at the same moment (an
//!   operator's `refresh` during a scheduled pass) both redeem its refresh
//!   token; Entra ID keeps the old one valid, and the compare-and-swap keeps
//!   exactly one grant.

mod connection;
pub mod notify;
mod report;

pub use crate::domain::Outcome;
use connection::Pass;
pub use connection::{MAX_RETRY_AFTER, ROTATION_WRITE_RETRIES};
use report::log_outcome;
pub use report::{ConnectionResult, PassReport};

use crate::Broker;
use crate::domain::{ConnectionId, CredentialKind, ServeRecord, Status};
use crate::pacer::{PacedStore, Pacer};
use crate::store::{StoreError, Versioned};
use crate::survey_memory;
use futures::StreamExt;
use rand::Rng;
use std::sync::Arc;
use std::time::Duration;
use time::OffsetDateTime;

/// Which connections a pass looks at, and whether to force an attempt.
#[derive(Debug, Clone, Default)]
pub struct PassOptions {
    pub only: Option<ConnectionId>,
    /// One attempt even if not due, backing off, or in a permanent failure
    /// state.
    pub force: bool,
}

/// What the survey of a pass decided for one connection.
enum Plan {
    Done(Outcome, Box<Status>),
    Due {
        serve: Box<Versioned<ServeRecord>>,
        /// Least time left of any of its tokens.
        urgency: Duration,
    },
}

pub async fn refresh_pass(
    broker: &Broker,
    options: &PassOptions,
    now: OffsetDateTime,
) -> Result<PassReport, StoreError> {
    // One listing (with each serve secret's change mark) names them all.
    let listed = match &options.only {
        Some(id) => vec![(id.clone(), None)],
        None => broker.repo.connections_marked().await?,
    };
    if options.only.is_none() {
        broker.surveys.keep_only(listed.iter().map(|(id, _)| id));
    }
    let started = broker.now();
    let deadline = started + broker.config.refresh_budget;
    let concurrency = broker.config.refresh_concurrency.max(1);
    let margin = broker.config.refresh_margin;

    // What an earlier pass found with nothing to do, and that cannot have
    // changed since, is not read again (see `survey_memory`).
    let mut results = Vec::new();
    let mut to_survey = Vec::new();
    for (id, mark) in listed {
        match broker.surveys.recall(&id, mark.as_deref(), now) {
            Some(known) if !options.force => {
                let credential = CredentialFacts {
                    expires: known.credential_expires,
                    kind: known.credential_kind,
                };
                results.push(finished(id, Ok((known.outcome, known.status)), credential));
            }
            _ => to_survey.push((id, mark)),
        }
    }
    // One read per other connection (its serve secret) tells what is due.
    let surveyed: Vec<(ConnectionId, Result<Surveyed, StoreError>)> =
        futures::stream::iter(to_survey)
            .map(|(id, mark)| async move {
                let plan = survey(broker, &id, mark, options.force, margin, now).await;
                (id, plan)
            })
            .buffer_unordered(concurrency)
            .collect()
            .await;
    let mut due = Vec::new();
    for (id, surveyed) in surveyed {
        match surveyed {
            Ok((Plan::Done(outcome, state), credential)) => {
                results.push(finished(id, Ok((outcome, *state)), credential))
            }
            Ok((Plan::Due { serve, urgency }, _)) => due.push((urgency, id, serve)),
            Err(e) => results.push(finished(id, Err(e), CredentialFacts::default())),
        }
    }
    // The most urgent first: when the budget runs out, what is left has
    // the most time to wait for the next pass.
    due.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(&b.1)));
    let pacer = Arc::new(Pacer::new(broker.config.write_budget));
    let paced = broker.repo.wrapped(|store| {
        Arc::new(PacedStore::new(
            store,
            pacer.clone(),
            broker.clock(),
            broker.sleeper.clone(),
        ))
    });
    let pass = Pass {
        broker,
        repo: &paced,
        pacer: &pacer,
        now,
        started,
        deadline,
        vendor_app: tokio::sync::OnceCell::new(),
    };
    let refreshed: Vec<ConnectionResult> = futures::stream::iter(due)
        .map(|(_, id, serve)| {
            let pass = &pass;
            async move {
                let credential = CredentialFacts::of(&serve.value);
                let result = pass.refresh_due(&id, *serve).await;
                finished(id, result, credential)
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    results.extend(refreshed);
    results.sort_by(|a, b| a.id.cmp(&b.id));
    // Only now, with every refresh stored: a slow receiver delays none.
    let notifications = notify::deliver(broker, &paced, &results, now, deadline).await;
    Ok(PassReport {
        results,
        notifications,
    })
}

/// After a pass, a pass is needed again within a few seconds when it
/// refreshed or left something (to learn the new tokens' due time).
const SOON_AFTER_A_REFRESH: Duration = Duration::from_secs(10);
/// Passes are never closer than this.
const MIN_PASS_GAP: Duration = Duration::from_secs(1);

/// How long to wait before the next pass of a process that runs its own
/// passes (`roomtoken serve`): `every` at most, and no later than the
/// moment a remembered connection becomes due, so that tokens that live
/// only minutes are refreshed in time (the schedule of the Lambda
/// deployment runs every 5 minutes whatever this says).
pub fn next_pass_in(
    broker: &Broker,
    report: &PassReport,
    every: Duration,
    now: OffsetDateTime,
) -> Duration {
    let mut wait = every;
    if let Some(at) = broker.surveys.earliest_look_again() {
        wait = wait.min((at - now).try_into().unwrap_or(Duration::ZERO));
    }
    let left_work = report.count(|o| {
        matches!(
            o,
            Outcome::Refreshed { .. } | Outcome::Deferred | Outcome::LostRace | Outcome::Busy
        )
    });
    if left_work > 0 {
        wait = wait.min(SOON_AFTER_A_REFRESH);
    }
    wait.max(MIN_PASS_GAP)
}

fn finished(
    id: ConnectionId,
    result: Result<(Outcome, Status), StoreError>,
    credential: CredentialFacts,
) -> ConnectionResult {
    let (outcome, status) = match result {
        Ok((outcome, status)) => (outcome, Some(status)),
        // Secrets Manager's own quota answer: the same as the log's.
        Err(StoreError::WriteQuota { retry_at, .. }) => (Outcome::WriteQuota(retry_at), None),
        Err(e) => (Outcome::StoreFailed(e.to_string()), None),
    };
    log_outcome(&id, &outcome);
    ConnectionResult {
        id,
        outcome,
        state: status.as_ref().map(|s| s.state),
        status,
        credential_expires: credential.expires,
        credential_kind: credential.kind,
    }
}

/// A connection's client secret expiry, and whose secret it is.
#[derive(Clone, Copy, Debug, Default)]
struct CredentialFacts {
    expires: Option<time::Date>,
    kind: CredentialKind,
}

impl CredentialFacts {
    fn of(record: &ServeRecord) -> Self {
        Self {
            expires: record.credential_expires(),
            kind: record.app.credential_kind(),
        }
    }
}

/// A margin jittered down by up to 10% so that connections consented
/// together do not all refresh in the same pass forever.
fn jittered(margin: Duration) -> Duration {
    let spread = margin.as_secs_f64() * 0.1;
    margin.saturating_sub(Duration::from_secs_f64(
        rand::rng().random_range(0.0..=spread),
    ))
}

/// A connection's plan, and when its client secret expires.
type Surveyed = (Plan, CredentialFacts);

/// Decides from the serve secret alone whether a connection is due, and
/// remembers an answer with nothing to do until it can change.
async fn survey(
    broker: &Broker,
    id: &ConnectionId,
    mark: Option<String>,
    force: bool,
    margin: Duration,
    now: OffsetDateTime,
) -> Result<Surveyed, StoreError> {
    // Listed, but gone: ListSecrets may still list a secret being deleted.
    let Some(serve) = broker.repo.serve(id).await? else {
        broker.surveys.forget(id);
        let removed = Plan::Done(Outcome::Removed, Box::default());
        return Ok((removed, CredentialFacts::default()));
    };
    let credential = CredentialFacts::of(&serve.value);
    let due_at = serve
        .value
        .access
        .as_ref()
        .and_then(|access| access.due_at(&serve.value.app.resources, margin));
    let plan = plan(serve, force, margin, now);
    match &plan {
        Plan::Done(outcome, status) if !force => {
            let holds_until = match outcome {
                Outcome::NotDue => due_at,
                Outcome::BackingOff(until) => Some(*until),
                // Only a person leaves these, and their write moves the mark.
                Outcome::Skipped(_) => Some(now + survey_memory::LOOK_AGAIN_WITHIN),
                _ => None,
            };
            match holds_until {
                Some(until) => {
                    let answer = survey_memory::Answer {
                        outcome: outcome.clone(),
                        status: (**status).clone(),
                        credential_expires: credential.expires,
                        credential_kind: credential.kind,
                    };
                    broker.surveys.remember(id, mark, answer, until, now);
                }
                None => broker.surveys.forget(id),
            }
        }
        _ => broker.surveys.forget(id),
    }
    Ok((plan, credential))
}

fn plan(serve: Versioned<ServeRecord>, force: bool, margin: Duration, now: OffsetDateTime) -> Plan {
    let record = &serve.value;
    let pending = Plan::Done(Outcome::PendingConsent, Box::new(record.status.clone()));
    let status = &record.status;
    let Some(access) = &record.access else {
        return pending;
    };
    if status.state.is_permanent() && !force {
        return Plan::Done(Outcome::Skipped(status.state), Box::new(status.clone()));
    }
    if let Some(until) = status.next_attempt_at.filter(|_| !status.may_attempt(now))
        && !force
    {
        return Plan::Done(Outcome::BackingOff(until), Box::new(status.clone()));
    }
    let resources = &record.app.resources;
    let due = access.is_due(resources, jittered(margin), now);
    if !due && !force {
        return Plan::Done(Outcome::NotDue, Box::new(status.clone()));
    }
    let urgency = access.most_urgent(resources, now).unwrap_or(Duration::ZERO);
    Plan::Due {
        serve: Box::new(serve),
        urgency,
    }
}

//! token-refresh: one pass over every connection, refreshing what is due.
//!
//! A pass never loses a refresh token and never redeems one twice:
//! - it first takes a lease on the grant (compare-and-swap), so a concurrent
//!   pass or process that loses never sends the token to the provider;
//! - transient failures are retried with backoff inside the pass budget,
//!   and the old grant stays untouched until a newer token is in hand;
//! - the newest refresh token is stored before the access tokens it minted;
//! - a new consent that lands meanwhile wins over the refresh.

use super::callback::access_token;
use crate::Broker;
use crate::domain::{
    AccessTokens, AppRegistration, ConnectionId, ConnectionState, FailureClass, Grant, LastError,
    Resource, Secret, Status,
};
use crate::identity::{IdentityError, TokenSet};
use crate::store::{Part, StoreError, Versioned};
use futures::StreamExt;
use rand::Rng;
use std::collections::BTreeMap;
use std::time::Duration;
use time::OffsetDateTime;
use tokio::time::Instant;

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
    Failed(LastError),
    /// Another writer stored a newer grant first; theirs is kept.
    LostRace,
    /// Another refresh holds the lease on this grant right now.
    Busy,
    StoreFailed(String),
}

/// One connection's line in a pass report.
#[derive(Debug, Clone)]
pub struct ConnectionResult {
    pub id: ConnectionId,
    pub outcome: Outcome,
    /// The state after the pass; `None` when the store could not tell.
    pub state: Option<ConnectionState>,
}

#[derive(Debug, Default)]
pub struct PassReport {
    pub results: Vec<ConnectionResult>,
}

impl PassReport {
    pub fn count(&self, matches: impl Fn(&Outcome) -> bool) -> usize {
        self.results.iter().filter(|r| matches(&r.outcome)).count()
    }
}

/// Which connections a pass looks at, and whether to force an attempt.
#[derive(Debug, Clone, Default)]
pub struct PassOptions {
    pub only: Option<ConnectionId>,
    /// One attempt even if not due or in a permanent failure state.
    pub force: bool,
}

pub async fn refresh_pass(
    broker: &Broker,
    options: &PassOptions,
    now: OffsetDateTime,
) -> Result<PassReport, StoreError> {
    let ids = match &options.only {
        Some(id) => vec![id.clone()],
        None => broker.repo.connection_ids().await?,
    };
    let deadline = Instant::now() + broker.config.refresh_budget;
    let mut results: Vec<ConnectionResult> = futures::stream::iter(ids)
        .map(|id| async move {
            let (outcome, state) =
                match refresh_connection(broker, &id, options.force, now, deadline).await {
                    Ok((outcome, state)) => (outcome, Some(state)),
                    Err(e) => (Outcome::StoreFailed(e.to_string()), None),
                };
            log_outcome(&id, &outcome);
            ConnectionResult { id, outcome, state }
        })
        .buffer_unordered(broker.config.refresh_concurrency.max(1))
        .collect()
        .await;
    results.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(PassReport { results })
}

fn log_outcome(id: &ConnectionId, outcome: &Outcome) {
    match outcome {
        Outcome::Refreshed { resources } => {
            tracing::info!(connection = %id, resources = ?resources, "refreshed")
        }
        Outcome::NotDue | Outcome::PendingConsent => {
            tracing::debug!(connection = %id, outcome = ?outcome, "nothing to do")
        }
        Outcome::Skipped(state) => {
            tracing::info!(connection = %id, state = state.as_str(), "skipped until a human acts")
        }
        Outcome::Failed(error) => tracing::warn!(
            connection = %id, class = error.class.as_str(), code = %error.code,
            trace_id = ?error.trace_id, correlation_id = ?error.correlation_id,
            message = %error.message, "refresh failed"
        ),
        Outcome::LostRace => tracing::info!(connection = %id, "another writer refreshed first"),
        Outcome::Busy => tracing::info!(connection = %id, "another refresh holds the lease"),
        Outcome::StoreFailed(message) => {
            tracing::error!(connection = %id, error = %message, "store failed during refresh")
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

async fn refresh_connection(
    broker: &Broker,
    id: &ConnectionId,
    force: bool,
    now: OffsetDateTime,
    deadline: Instant,
) -> Result<(Outcome, ConnectionState), StoreError> {
    let repo = &broker.repo;
    let pending = (Outcome::PendingConsent, ConnectionState::PendingConsent);
    let Some(app) = repo.get::<AppRegistration>(id, Part::App).await? else {
        return Ok(pending);
    };
    let app = app.value;
    let Some(grant) = repo.get::<Grant>(id, Part::Grant).await? else {
        return Ok(pending);
    };
    let status = repo
        .get::<Status>(id, Part::Status)
        .await?
        .map(|s| s.value)
        .unwrap_or_default();
    if status.state.is_permanent() && !force {
        return Ok((Outcome::Skipped(status.state), status.state));
    }
    let access = repo.get::<AccessTokens>(id, Part::Access).await?;
    let margin = jittered(broker.config.refresh_margin);
    let current_tokens = access.as_ref().map(|a| &a.value);
    let due = current_tokens.is_none_or(|a| a.is_due(&app.resources, &grant.value, margin, now));
    if !force && !due {
        return Ok((Outcome::NotDue, status.state));
    }
    if grant.value.is_leased(now) {
        return Ok((Outcome::Busy, status.state));
    }
    let Some(client_secret) = repo.get::<Secret>(id, Part::Credential).await? else {
        let error = LastError {
            class: FailureClass::AppMisconfigured,
            code: "no_client_secret".into(),
            message: "the connection has no client secret: run `roomtoken connection update --client-secret-stdin`".into(),
            trace_id: None,
            correlation_id: None,
            at: now,
        };
        let state = record_status(broker, id, &status, Err(error.clone()), now).await?;
        return Ok((Outcome::Failed(error), state));
    };

    // Take the lease before redeeming anything: whoever loses this
    // compare-and-swap never sends the refresh token to the provider.
    let lease_owner = uuid::Uuid::new_v4().to_string();
    let leased = grant.value.leased(
        &lease_owner,
        now + broker.config.refresh_budget + LEASE_SLACK,
    );
    let leased_version = match repo
        .put(id, Part::Grant, &leased, Some(&grant.version))
        .await
    {
        Ok(version) => version,
        Err(StoreError::Conflict(_)) => return Ok((Outcome::LostRace, status.state)),
        Err(e) => return Err(e),
    };
    let leased = Versioned {
        value: leased,
        version: leased_version,
    };

    let mut refresh_token = grant.value.refresh_token.clone();
    let mut minted = AccessTokens {
        account: grant.value.account.display.clone(),
        resources: app.resources.iter().map(|r| r.name.clone()).collect(),
        tokens: Vec::new(),
    };
    let mut failure: Option<IdentityError> = None;
    // One request per resource, each with the newest refresh token.
    for resource in &app.resources {
        match redeem(
            broker,
            id,
            &app,
            &client_secret.value,
            &refresh_token,
            resource,
            deadline,
        )
        .await
        {
            Ok(tokens) => {
                if let Some(newer) = tokens.refresh_token.clone() {
                    refresh_token = newer;
                }
                minted.put(access_token(resource, &tokens, now));
            }
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }

    if minted.tokens.is_empty() {
        // Nothing was redeemed: hand the untouched grant back.
        release_lease(broker, id, &leased).await;
    } else if let Some(lost) =
        store_rotation(broker, id, &leased, refresh_token, &minted, access, now).await?
    {
        return Ok((lost, status.state));
    }
    let result = match failure {
        None => Ok(()),
        Some(e) => {
            let error = e.to_last_error(now);
            if error.class == FailureClass::OurBug {
                tracing::error!(connection = %id, code = %error.code, message = %error.message, "the identity provider refused a request we should never send");
            }
            Err(error)
        }
    };
    let state = record_status(broker, id, &status, result.clone(), now).await?;
    let outcome = match result {
        Ok(()) => Outcome::Refreshed {
            resources: minted.tokens.iter().map(|t| t.resource.clone()).collect(),
        },
        Err(error) => Outcome::Failed(error),
    };
    Ok((outcome, state))
}

/// A lease outlives the pass budget by this much, so that it never expires
/// while its holder may still be redeeming.
const LEASE_SLACK: Duration = Duration::from_secs(30);

/// One token request, retried with backoff while the failure is transient
/// and the pass budget allows.
async fn redeem(
    broker: &Broker,
    id: &ConnectionId,
    app: &AppRegistration,
    client_secret: &Secret,
    refresh_token: &Secret,
    resource: &Resource,
    deadline: Instant,
) -> Result<TokenSet, IdentityError> {
    let scopes = resource.token_request_scopes();
    let mut failed_attempts = 0;
    loop {
        let error = match broker
            .identity
            .refresh(app, client_secret, refresh_token, &scopes)
            .await
        {
            Ok(tokens) => return Ok(tokens),
            Err(error) => error,
        };
        failed_attempts += 1;
        if error.class() != FailureClass::Transient {
            return Err(error);
        }
        let unit = rand::rng().random_range(0.0..=1.0);
        let Some(delay) = broker
            .config
            .retry
            .delay(failed_attempts, error.retry_after(), unit)
        else {
            return Err(error);
        };
        if Instant::now() + delay >= deadline {
            return Err(error);
        }
        tracing::info!(
            connection = %id, resource = %resource.name, attempt = failed_attempts,
            retry_in_ms = delay.as_millis() as u64, error = %error, "transient failure, retrying"
        );
        broker.sleeper.sleep(delay).await;
    }
}

/// Gives the lease back after a failed attempt; if that write fails, the
/// lease simply expires.
async fn release_lease(broker: &Broker, id: &ConnectionId, leased: &Versioned<Grant>) {
    let released = leased.value.released();
    if let Err(e) = broker
        .repo
        .put(id, Part::Grant, &released, Some(&leased.version))
        .await
    {
        tracing::warn!(connection = %id, error = %e, "could not release the refresh lease; it expires by itself");
    }
}

/// Stores the rotated grant (compare-and-swap on the leased version), then
/// the access tokens. Returns `Some(LostRace)` when a new consent replaced
/// the grant meanwhile: the newer consent is kept.
async fn store_rotation(
    broker: &Broker,
    id: &ConnectionId,
    leased: &Versioned<Grant>,
    refresh_token: Secret,
    minted: &AccessTokens,
    read: Option<Versioned<AccessTokens>>,
    now: OffsetDateTime,
) -> Result<Option<Outcome>, StoreError> {
    let rotated = leased.value.rotated(Some(refresh_token), now);
    match broker
        .repo
        .put(id, Part::Grant, &rotated, Some(&leased.version))
        .await
    {
        Ok(_) => {}
        Err(StoreError::Conflict(_)) => return Ok(Some(Outcome::LostRace)),
        Err(e) => return Err(e),
    }
    let merged = |current: Option<&AccessTokens>| {
        let mut next = minted.clone();
        if let Some(current) = current {
            next.merge_newer(current);
        }
        next
    };
    // Compare-and-swap on the version read at the start of the pass; only
    // a conflict costs another read.
    let first = merged(read.as_ref().map(|r| &r.value));
    match broker
        .repo
        .put(id, Part::Access, &first, read.as_ref().map(|r| &r.version))
        .await
    {
        Ok(_) => {}
        Err(StoreError::Conflict(_)) => {
            broker
                .repo
                .update::<AccessTokens, _>(id, Part::Access, |current| {
                    Some(merged(current.as_ref()))
                })
                .await?;
        }
        Err(e) => return Err(e),
    }
    Ok(None)
}

/// Moves the state machine and writes the status only when that is worth a
/// store write (see `Status::worth_writing`). Returns the new state.
async fn record_status(
    broker: &Broker,
    id: &ConnectionId,
    read: &Status,
    result: Result<(), LastError>,
    now: OffsetDateTime,
) -> Result<ConnectionState, StoreError> {
    let transition = |status: &Status| match &result {
        Ok(()) => status.after_success(now),
        Err(error) => status.after_failure(error.clone()),
    };
    let next = transition(read);
    if !read.worth_writing(&next, now) {
        return Ok(next.state);
    }
    broker
        .repo
        .update::<Status, _>(id, Part::Status, |current| {
            let current = current.unwrap_or_default();
            let next = transition(&current);
            current.worth_writing(&next, now).then_some(next)
        })
        .await?;
    Ok(next.state)
}

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
    pub store_failed: usize,
    /// Failures per class (`transient`, `reconnect_needed`, ...).
    pub failed_by_class: BTreeMap<&'static str, usize>,
    /// Connections per state after the pass.
    pub states: BTreeMap<&'static str, usize>,
}

impl PassReport {
    pub fn summary(&self) -> PassSummary {
        let mut summary = PassSummary {
            connections: self.results.len(),
            ..PassSummary::default()
        };
        for result in &self.results {
            if let Some(state) = result.state {
                *summary.states.entry(state.as_str()).or_default() += 1;
            }
            if let Outcome::Failed(error) = &result.outcome {
                *summary
                    .failed_by_class
                    .entry(error.class.as_str())
                    .or_default() += 1;
            }
            let slot = match &result.outcome {
                Outcome::Refreshed { .. } => &mut summary.refreshed,
                Outcome::NotDue => &mut summary.not_due,
                Outcome::PendingConsent => &mut summary.pending_consent,
                Outcome::Skipped(_) => &mut summary.skipped,
                Outcome::Failed(_) => &mut summary.failed,
                Outcome::LostRace => &mut summary.lost_race,
                Outcome::Busy => &mut summary.busy,
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
    let summary = refresh_pass(broker, &options, OffsetDateTime::now_utc())
        .await?
        .summary();
    tracing::info!(summary = ?summary, "refresh pass done");
    Ok(summary)
}

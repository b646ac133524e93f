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

use super::mint::{
    AfterFailure, NotMinted, mint_each, own_credential, request_token, vendor_credential,
};
use super::notify::DeliveryReport;
use super::survey_memory;
use crate::Broker;
use crate::domain::grant::APP_ONLY_ACCOUNT;
use crate::domain::records::room_in_both;
use crate::domain::status::SecretInUse;
use crate::domain::{
    AccessTokens, AppRegistration, ConnectionId, ConnectionState, CredentialKind, FailureClass,
    GrantRecord, LastError, Resource, Secret, ServeRecord, Status, VendorApp, Writer,
};
use crate::identity::{Credential, TokenSet};
use crate::pacer::{PacedStore, Pacer};
use crate::store::{Part, Repository, StoreError, Versioned};
use futures::StreamExt;
use rand::Rng;
use std::sync::Arc;
use std::time::Duration;
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
    let notifications = super::notify::deliver(broker, &paced, &results, now, deadline).await;
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

fn log_outcome(id: &ConnectionId, outcome: &Outcome) {
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
                Some(look_again_at) => {
                    let answer = survey_memory::Remembered {
                        mark: String::new(),
                        look_again_at,
                        outcome: outcome.clone(),
                        status: (**status).clone(),
                        credential_expires: credential.expires,
                        credential_kind: credential.kind,
                    };
                    broker.surveys.remember(id, mark, answer, now);
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

/// What every refresh of a pass shares: the broker, the repository whose
/// writes are paced, the pacer, the pass's time and deadline.
struct Pass<'a> {
    broker: &'a Broker,
    repo: &'a Repository,
    pacer: &'a Pacer,
    now: OffsetDateTime,
    /// When the pass started, by the broker's clock (`now` may be another
    /// time: a test's, or `refresh --force`'s).
    started: OffsetDateTime,
    deadline: OffsetDateTime,
    /// The vendor app, read once per pass by the first vendor connection.
    vendor_app: tokio::sync::OnceCell<Option<VendorApp>>,
}

impl Pass<'_> {
    /// The credential `app` presents: its own certificate or client secret,
    /// from the grant, or the deployment's vendor app's secret (`None` when
    /// no vendor app is set).
    async fn credential(
        &self,
        app: &AppRegistration,
        grant: &GrantRecord,
    ) -> Result<Option<Credential>, StoreError> {
        if !app.is_vendor() {
            return Ok(Some(own_credential(grant)));
        }
        let vendor = self
            .vendor_app
            .get_or_try_init(|| self.repo.vendor_app())
            .await?;
        Ok(vendor.as_ref().map(vendor_credential))
    }

    /// One round of token requests with `credential`.
    async fn mint_round(
        &self,
        id: &ConnectionId,
        app: &AppRegistration,
        refresh_token: Secret,
        credential: &Credential,
    ) -> crate::flows::mint::Minted {
        let (broker, deadline) = (self.broker, self.deadline);
        mint_each(
            &app.resources,
            refresh_token,
            self.now,
            AfterFailure::Stop,
            |resource, refresh_token| async move {
                redeem(
                    broker,
                    id,
                    app,
                    credential,
                    &refresh_token,
                    resource,
                    deadline,
                )
                .await
            },
        )
        .await
    }

    async fn refresh_due(
        &self,
        id: &ConnectionId,
        serve: Versioned<ServeRecord>,
    ) -> Result<(Outcome, Status), StoreError> {
        let (broker, now) = (self.broker, self.now);
        let state = serve.value.status.clone();
        let Some(_claim) = broker.claim_refresh(id) else {
            return Ok((Outcome::Busy, state));
        };
        let Some(grant) = self.repo.grant(id).await? else {
            return Ok((Outcome::PendingConsent, state));
        };
        // An app-only connection has no grant: its consent is the admin's.
        if grant.value.grant.is_none() && !serve.value.app.is_app_only() {
            return Ok((Outcome::PendingConsent, state));
        }
        // Room in both secrets' version quota, before anything is redeemed.
        if let Some(until) = room_in_both(&grant.value, &serve.value, Writer::Product, now) {
            return Ok((Outcome::WriteQuota(until), state));
        }
        // The two writes this refresh may make must go before the deadline
        // under the write budget: otherwise it is left for the next pass.
        let calls = 2 * self.repo.store().calls_per_write(false);
        if !self.pacer.fits(calls, broker.now(), self.deadline)
            || broker.now() + broker.config.http_timeout > self.deadline
        {
            return Ok((Outcome::Deferred, state));
        }
        self.refresh_connection(id, grant, serve).await
    }

    /// Writes a rotated grant. The provider has already handed out the new
    /// refresh token (and may refuse the old one from now on), so a write
    /// that fails for a passing reason is tried again, a few times within
    /// the pass's time; a conflict is not (someone else wrote the grant).
    async fn store_rotation(
        &self,
        id: &ConnectionId,
        rotated: &GrantRecord,
        read: &crate::store::Version,
    ) -> Result<(), StoreError> {
        let mut waits = ROTATION_WRITE_RETRIES.iter();
        loop {
            // Each attempt from the record as read: a failed one must not
            // leave an entry in its write log.
            let mut attempt = rotated.clone();
            match self
                .repo
                .write(
                    id,
                    Part::Grant,
                    &mut attempt,
                    Some(read),
                    Writer::Product,
                    self.now,
                )
                .await
            {
                Ok(_) => return Ok(()),
                // Someone else wrote the grant, or its quota is full: a
                // retry cannot help.
                Err(
                    e @ (StoreError::Conflict(_)
                    | StoreError::WriteQuota { .. }
                    | StoreError::TooLarge { .. }),
                ) => {
                    return Err(e);
                }
                Err(e) => {
                    let Some(wait) = waits.next() else {
                        return Err(e);
                    };
                    tracing::warn!(connection = %id, error = %e, retry_in_ms = wait.as_millis() as u64, "storing the rotated refresh token failed; retrying");
                    self.broker.sleeper.sleep(*wait).await;
                }
            }
        }
    }

    async fn refresh_connection(
        &self,
        id: &ConnectionId,
        grant: Versioned<GrantRecord>,
        serve: Versioned<ServeRecord>,
    ) -> Result<(Outcome, Status), StoreError> {
        let now = self.now;
        let app = &serve.value.app;
        let held = grant.value.grant.as_ref();
        if held.is_none() && !app.is_app_only() {
            return Ok((Outcome::PendingConsent, serve.value.status));
        }
        // App-only tokens come from the app's credential alone.
        let refresh_token = held.map_or_else(|| Secret::new(""), |h| h.refresh_token.clone());
        let Some(credential) = self.credential(app, &grant.value).await? else {
            // Nothing redeemed, nothing lost; only the operator can fix it
            // (`vendor-app set` gives such connections another attempt).
            let error = LastError {
                class: FailureClass::AppMisconfigured,
                code: "no_vendor_app".into(),
                message: "this connection uses the vendor app, and none is set: run `roomtoken vendor-app set`".into(),
                trace_id: None,
                correlation_id: None,
                at: now,
            };
            let notifies = self.broker.notifies();
            let state = write_serve(self.repo, id, serve, now, |record| {
                let mut next = record.status.after_failure(error.clone());
                if notifies {
                    next.note_change(id, record.app.mode, record.status.state, now);
                }
                let worth_writing = record.status.worth_writing(&next);
                record.status = next;
                worth_writing
            })
            .await?;
            return Ok((Outcome::Failed(error), state));
        };
        // One request per resource, each with the newest refresh token;
        // with the newest client secret, and during a rotation with the
        // previous one when the identity platform refuses the newest.
        let previous = (!app.is_vendor() && matches!(credential, Credential::Secret(_)))
            .then(|| grant.value.previous_client_secret.clone())
            .flatten()
            .map(Credential::Secret);
        let mut round = self
            .mint_round(id, app, refresh_token.clone(), &credential)
            .await;
        let mut in_use = previous.as_ref().map(|_| SecretInUse::Newest);
        if let Some(previous) = &previous
            && round.tokens.is_empty()
            && round
                .failed
                .first()
                .is_some_and(|(_, e)| e.rejects_client_secret())
        {
            tracing::warn!(connection = %id, "the newest client secret was refused; trying the previous one");
            let retry = self
                .mint_round(id, app, refresh_token.clone(), previous)
                .await;
            let previous_works = !retry.tokens.is_empty()
                || retry
                    .failed
                    .first()
                    .is_some_and(|(_, e)| !e.rejects_client_secret());
            if previous_works {
                round = retry;
                in_use = Some(SecretInUse::Previous);
            }
        }
        if round.tokens.is_empty() && round.failed.is_empty() {
            // The pass's time ran out before the first request: nothing
            // was redeemed, nothing is written.
            return Ok((Outcome::Deferred, serve.value.status));
        }
        let refresh_token = round.refresh_token;
        let failure = round.failed.into_iter().next().map(|(_, e)| e);
        let mut minted = AccessTokens {
            account: held.map_or_else(
                || APP_ONLY_ACCOUNT.to_owned(),
                |h| h.account.display.clone(),
            ),
            resources: app.resources.iter().map(|r| r.name.clone()).collect(),
            tokens: Vec::new(),
        };
        for token in round.tokens {
            minted.put(token);
        }

        if let Some(held) = held
            && !minted.tokens.is_empty()
        {
            // The rotation first: a refresh token the provider handed out is
            // never left only in memory while anything else is written.
            let mut rotated = grant.value.clone();
            rotated.grant = Some(held.rotated(Some(refresh_token), now));
            match self.store_rotation(id, &rotated, &grant.version).await {
                Ok(()) => {}
                Err(StoreError::Conflict(_)) => {
                    return Ok((Outcome::LostRace, serve.value.status));
                }
                Err(e) => return Err(e),
            }
        }
        // A `Retry-After` too long to wait within the pass is honoured by
        // the next attempt (at most an hour: a provider's absurd wait must
        // not stop a connection for good).
        // It counts from the answer, not from the pass's start.
        let answered = now + (self.broker.now() - self.started).max(time::Duration::ZERO);
        let not_before = failure
            .as_ref()
            .and_then(|e| e.retry_after())
            .map(|wait| wait.min(MAX_RETRY_AFTER))
            .and_then(|wait| time::Duration::try_from(wait).ok())
            .map(|wait| answered + wait);
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
        let short_tokens = self.broker.judge_token_lifetime(minted.shortest_lifetime());
        let transition = |status: &Status, served: Option<&AccessTokens>| match &result {
            Ok(()) => status.after_success(now).with_token_lifetime(short_tokens),
            Err(error) => {
                let soonest = served.and_then(|a| a.tokens.iter().map(|t| t.expires_at).min());
                status
                    .after_failure(error.clone())
                    .retry_while_serving(soonest)
                    .not_before(not_before)
            }
        };
        let minted = (!minted.tokens.is_empty()).then_some(minted);
        let notifies = self.broker.notifies();
        let change = |record: &mut ServeRecord| {
            if let Some(minted) = &minted {
                let mut tokens = minted.clone();
                if let Some(current) = &record.access {
                    tokens.keep_newest(current);
                }
                record.access = Some(tokens);
            }
            let mut next = transition(&record.status, record.access.as_ref());
            if result.is_ok() {
                next.client_secret_in_use = in_use;
            }
            // What each new app-only token grants (a permission withdrawn
            // in Entra ID shows at the next refresh).
            if let (true, Some(_), Some(access)) =
                (record.app.is_app_only(), &minted, &record.access)
            {
                next.granted_permissions = access.application_roles();
            }
            if notifies {
                next.note_change(id, record.app.mode, record.status.state, now);
            }
            let worth_writing = minted.is_some()
                || record.status.worth_writing(&next)
                || record.status.client_secret_in_use != next.client_secret_in_use;
            record.status = next;
            worth_writing
        };
        let state = write_serve(self.repo, id, serve, now, change).await?;
        let outcome = match result {
            Ok(()) => Outcome::Refreshed {
                resources: minted
                    .iter()
                    .flat_map(|m| m.tokens.iter().map(|t| t.resource.clone()))
                    .collect(),
            },
            Err(error) => Outcome::Failed(error),
        };
        Ok((outcome, state))
    }
}

/// Applies `change` to the serve secret and writes it when `change` says
/// it is worth a write: first over the version read at the start of the
/// pass, and only after a conflict (a key or a consent written meanwhile)
/// over a fresh read. Returns the status written (or that would have been).
async fn write_serve(
    repo: &Repository,
    id: &ConnectionId,
    read: Versioned<ServeRecord>,
    now: OffsetDateTime,
    change: impl Fn(&mut ServeRecord) -> bool,
) -> Result<Status, StoreError> {
    let mut record = read.value;
    if !change(&mut record) {
        return Ok(record.status);
    }
    match repo
        .write(
            id,
            Part::Serve,
            &mut record,
            Some(&read.version),
            Writer::Product,
            now,
        )
        .await
    {
        Ok(_) => return Ok(record.status),
        Err(StoreError::Conflict(_)) => {}
        Err(e) => return Err(e),
    }
    let mut status = record.status;
    repo.update::<ServeRecord, _>(id, Part::Serve, Writer::Product, now, |current| {
        let mut current = current?;
        let worth = change(&mut current);
        status = current.status.clone();
        worth.then_some(current)
    })
    .await?;
    Ok(status)
}

/// The longest `Retry-After` the next attempt waits for.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3_600);

/// The waits between attempts to store a rotated refresh token (3.5 s in
/// all: the template's Timeout leaves room for them after the budget).
pub const ROTATION_WRITE_RETRIES: [Duration; 3] = [
    Duration::from_millis(250),
    Duration::from_secs(1),
    Duration::from_millis(2_250),
];

/// One token request, retried with backoff while the failure is transient
/// and the pass budget allows.
async fn redeem(
    broker: &Broker,
    id: &ConnectionId,
    app: &AppRegistration,
    credential: &Credential,
    refresh_token: &Secret,
    resource: &Resource,
    deadline: OffsetDateTime,
) -> Result<TokenSet, NotMinted> {
    // A request may take the HTTP timeout: none starts that could end
    // after the pass's deadline.
    let request_time = broker.config.http_timeout;
    if broker.now() + request_time > deadline {
        return Err(NotMinted::OutOfTime);
    }
    let mut failed_attempts = 0;
    loop {
        let error = match request_token(broker, app, credential, refresh_token, resource).await {
            Ok(tokens) => return Ok(tokens),
            Err(error) => error,
        };
        failed_attempts += 1;
        if error.class() != FailureClass::Transient {
            return Err(error.into());
        }
        let unit = rand::rng().random_range(0.0..=1.0);
        let Some(delay) = broker
            .config
            .retry
            .delay(failed_attempts, error.retry_after(), unit)
        else {
            return Err(error.into());
        };
        if broker.now() + delay + request_time > deadline {
            return Err(error.into());
        }
        tracing::info!(
            connection = %id, resource = %resource.name, attempt = failed_attempts,
            retry_in_ms = delay.as_millis() as u64, error = %error, "transient failure, retrying"
        );
        broker.sleeper.sleep(delay).await;
    }
}

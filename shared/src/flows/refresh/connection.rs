//! One connection's refresh within a pass: the grant read, one token
//! request per resource, the rotated refresh token stored first, then the
//! access tokens and the status, every write paced and compare-and-swap.

use super::Outcome;
use crate::Broker;
use crate::domain::grant::APP_ONLY_ACCOUNT;
use crate::domain::records::room_in_both;
use crate::domain::{
    AccessTokens, AppRegistration, ConnectionId, FailureClass, GrantRecord, LastError, Resource,
    Secret, ServeRecord, Status, VendorApp, Writer,
};
use crate::flows::mint::{
    AfterFailure, Minted, NotMinted, mint_each, newest_then_previous, own_credential,
    previous_secret, request_token, vendor_credential,
};
use crate::identity::{Credential, TokenSet};
use crate::pacer::Pacer;
use crate::store::{Part, Repository, StoreError, Versioned};
use rand::Rng;
use std::time::Duration;
use time::OffsetDateTime;

/// What every refresh of a pass shares: the broker, the repository whose
/// writes are paced, the pacer, the pass's time and deadline.
pub(super) struct Pass<'a> {
    pub(super) broker: &'a Broker,
    pub(super) repo: &'a Repository,
    pub(super) pacer: &'a Pacer,
    pub(super) now: OffsetDateTime,
    /// When the pass started, by the broker's clock (`now` may be another
    /// time: a test's, or `refresh --force`'s).
    pub(super) started: OffsetDateTime,
    pub(super) deadline: OffsetDateTime,
    /// The vendor app, read once per pass by the first vendor connection.
    pub(super) vendor_app: tokio::sync::OnceCell<Option<VendorApp>>,
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

    pub(super) async fn refresh_due(
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
        let previous = previous_secret(app, &credential, &grant.value);
        let refused = |round: &Minted| {
            round.tokens.is_empty()
                && round
                    .failed
                    .first()
                    .is_some_and(|(_, e)| e.rejects_client_secret())
        };
        // The previous secret's round is kept only if it did better than
        // a refusal of its own.
        let works = |round: &Minted| {
            !round.tokens.is_empty()
                || round
                    .failed
                    .first()
                    .is_some_and(|(_, e)| !e.rejects_client_secret())
        };
        let (round, in_use) = newest_then_previous(
            id,
            credential.clone(),
            previous,
            |credential| {
                let refresh_token = refresh_token.clone();
                async move { self.mint_round(id, app, refresh_token, &credential).await }
            },
            refused,
            works,
        )
        .await;
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

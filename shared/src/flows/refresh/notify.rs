//! The end of a refresh pass: delivers what waits in the outboxes the pass
//! read, and warns of client secrets about to expire.
//!
//! - It runs after every refresh of the pass is stored, with what is left
//!   of the pass's time: a receiver that hangs or fails delays no refresh.
//! - The first connection's delivery goes alone, as a probe; a failed
//!   delivery stops the others until the next pass (the receiver is down:
//!   no pass waits on it once per notification), and is tried
//!   again across passes on [`RETRY_WAITS`]; each notification keeps its
//!   `webhook-id` on every attempt.
//! - The outbox is written back once per connection that had something to
//!   deliver, and only while the write log leaves two writes of the hour's
//!   quota to refreshes. Otherwise (or when the write fails) this process
//!   remembers what it delivered and writes it down at a later pass; another
//!   process may deliver it again, with the same `webhook-id`, which is how
//!   receivers tell a retry. What failed meanwhile is backed off from this
//!   process's memory, on the same waits.

use super::ConnectionResult;
use crate::Broker;
use crate::domain::notify::{
    Attempt, CredentialWarned, Event, Notification, RETRY_WAITS, WebhookSecret,
    credential_warning_due,
};
use crate::domain::{ConnectionId, CredentialKind, ServeRecord, Status, Writer};
use crate::store::{Part, Repository};
use futures::StreamExt;
use std::sync::atomic::{AtomicBool, Ordering};
use time::OffsetDateTime;
use url::Url;

/// What the delivery at the end of a pass did.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct DeliveryReport {
    pub delivered: usize,
    pub failed: usize,
    /// Given up after the last retry, or pushed out of a full outbox.
    pub dropped: usize,
    /// Still waiting in an outbox after the pass.
    pub waiting: usize,
}

/// One connection's share of the delivery.
struct Work {
    id: ConnectionId,
    due: Vec<Notification>,
    /// A credential warning reached in this pass, sent with the rest.
    warning: Option<(CredentialWarned, Notification)>,
    /// What waits in the outbox, as the pass last saw it.
    waiting: usize,
}

/// What every connection's delivery shares.
struct Delivery<'a> {
    broker: &'a Broker,
    repo: &'a Repository,
    url: &'a Url,
    secret: Option<WebhookSecret>,
    now: OffsetDateTime,
    deadline: OffsetDateTime,
    /// A delivery failed in this pass: the rest wait for the next one.
    receiver_failed: AtomicBool,
}

pub(crate) async fn deliver(
    broker: &Broker,
    repo: &Repository,
    results: &[ConnectionResult],
    now: OffsetDateTime,
    deadline: OffsetDateTime,
) -> DeliveryReport {
    let Some(url) = &broker.config.webhook_url else {
        return DeliveryReport::default();
    };
    let mut report = DeliveryReport::default();
    let mut work = Vec::new();
    for result in results {
        let Some(status) = &result.status else {
            continue;
        };
        let warning = result.credential_expires.and_then(|expires| {
            credential_warning(&result.id, result.credential_kind, status, expires, now)
        });
        let due = status.due_notifications(now);
        if due.is_empty() && warning.is_none() {
            report.waiting += status.outbox.len();
            continue;
        }
        work.push(Work {
            id: result.id.clone(),
            due,
            warning,
            waiting: status.outbox.len(),
        });
    }
    if work.is_empty() {
        return report;
    }
    let secret = match broker.webhook_secret().await {
        Ok(Some(secret)) => Some(secret),
        Ok(None) => {
            tracing::error!(
                "ROOMTOKEN_WEBHOOK_URL is set but there is no webhook secret: run `roomtoken webhook-secret generate` (notifications wait in the outbox)"
            );
            None
        }
        Err(e) => {
            tracing::error!(error = %e, "the webhook secret could not be read; notifications wait in the outbox");
            None
        }
    };
    let delivery = Delivery {
        broker,
        repo,
        url,
        secret,
        now,
        deadline,
        receiver_failed: AtomicBool::new(false),
    };
    // The first connection alone, as a probe: when the receiver fails it,
    // no other delivery is tried in this pass.
    let concurrency = broker.config.refresh_concurrency.max(1);
    let mut work = work.into_iter();
    let mut done = Vec::new();
    if let Some(first) = work.next() {
        done.push(delivery.connection(first).await);
    }
    let rest: Vec<DeliveryReport> = futures::stream::iter(work)
        .map(|work| delivery.connection(work))
        .buffer_unordered(concurrency)
        .collect()
        .await;
    done.extend(rest);
    for one in done {
        report.delivered += one.delivered;
        report.failed += one.failed;
        report.dropped += one.dropped;
        report.waiting += one.waiting;
    }
    if report != DeliveryReport::default() {
        tracing::info!(report = ?report, "notifications");
    }
    report
}

/// The credential warning `status` owes at `now` for a secret expiring on
/// `expires`, with the marker that it was sent.
fn credential_warning(
    id: &ConnectionId,
    kind: CredentialKind,
    status: &Status,
    expires: time::Date,
    now: OffsetDateTime,
) -> Option<(CredentialWarned, Notification)> {
    let days = credential_warning_due(status.credential_warned, expires, now)?;
    let left = crate::domain::status::credential_days_left(expires, now);
    let advice = crate::domain::status::credential_advice(id, kind, expires, left);
    let event = Event::credential_expiring(id, status, expires, advice, now);
    let notification = Notification::credential_warning(id, event, expires, days);
    Some((CredentialWarned { expires, days }, notification))
}

impl Delivery<'_> {
    /// Sends one connection's notifications in order, stopping at the first
    /// failure, then writes its outbox back.
    async fn connection(&self, work: Work) -> DeliveryReport {
        let mut attempts = Vec::new();
        let mut remembered = 0;
        let pending = work.due.iter().chain(work.warning.iter().map(|(_, n)| n));
        for notification in pending {
            // Delivered by this process already; only its bookkeeping waited.
            if self.broker.was_delivered(&notification.id) {
                attempts.push((notification.id.clone(), Attempt::Delivered));
                remembered += 1;
                continue;
            }
            // Failed here, unrecorded: it backs off all the same (and what
            // follows it waits, in order).
            if self
                .broker
                .held_back_until(&notification.id)
                .is_some_and(|until| until > self.now)
            {
                break;
            }
            let Some(attempt) = self.attempt(&work.id, notification).await else {
                break;
            };
            attempts.push((notification.id.clone(), attempt));
            if attempt == Attempt::Failed {
                break;
            }
        }
        if attempts.is_empty() && work.warning.is_none() {
            return DeliveryReport {
                waiting: work.waiting,
                ..DeliveryReport::default()
            };
        }
        let mut report = self.write_back(&work, &attempts).await;
        report.delivered = report.delivered.saturating_sub(remembered);
        report
    }

    /// One attempt, or `None` when none may start now (no secret, a
    /// receiver that already failed in this pass, or no time left).
    async fn attempt(&self, id: &ConnectionId, notification: &Notification) -> Option<Attempt> {
        let secret = self.secret.as_ref()?;
        let timeout = self.broker.config.webhook_timeout;
        if self.receiver_failed.load(Ordering::Relaxed)
            || self.broker.now() + timeout > self.deadline
        {
            return None;
        }
        let body = match serde_json::to_string(&notification.event) {
            Ok(body) => body,
            Err(e) => {
                tracing::error!(connection = %id, error = %e, "a notification could not be written as JSON");
                return None;
            }
        };
        let kind: &'static str = notification.event.kind.into();
        match self
            .broker
            .webhooks
            .send(self.url, secret, &notification.id, &body)
            .await
        {
            Ok(()) => {
                tracing::info!(connection = %id, notification = %notification.id, kind, "notification delivered");
                Some(Attempt::Delivered)
            }
            Err(e) => {
                self.receiver_failed.store(true, Ordering::Relaxed);
                let attempt = notification.attempts + 1;
                tracing::warn!(
                    connection = %id, notification = %notification.id, kind, attempt,
                    error = %e, "notification not delivered; tried again at a later pass"
                );
                Some(Attempt::Failed)
            }
        }
    }

    /// Records the attempts (and a new warning) in the connection's outbox.
    async fn write_back(&self, work: &Work, attempts: &[(String, Attempt)]) -> DeliveryReport {
        let mut report = DeliveryReport::default();
        let written = self
            .repo
            .update::<ServeRecord, _>(
                &work.id,
                Part::Serve,
                Writer::Product,
                self.now,
                |record| {
                    let mut record = record?;
                    if !record.writes.spare_for_product(self.now) {
                        return None;
                    }
                    let status = &mut record.status;
                    // The attempts first: what was delivered leaves room.
                    let mut change = status.after_attempts(attempts, self.now);
                    if let Some((warned, notification)) = &work.warning
                        && status.credential_warned != Some(*warned)
                    {
                        status.credential_warned = Some(*warned);
                        let attempt = attempts
                            .iter()
                            .find(|(id, _)| id == &notification.id)
                            .map(|(_, a)| *a);
                        match attempt {
                            // Delivered in this pass: recorded, not queued.
                            Some(Attempt::Delivered) => change.delivered += 1,
                            Some(Attempt::Failed) => {
                                let mut queued = notification.clone();
                                queued.attempts = 1;
                                queued.next_attempt_at = Some(self.now + RETRY_WAITS[0]);
                                change.failed += 1;
                                change.dropped.extend(status.enqueue(queued));
                            }
                            None => change.dropped.extend(status.enqueue(notification.clone())),
                        }
                    }
                    let dropped = change.dropped;
                    report = DeliveryReport {
                        delivered: change.delivered,
                        failed: change.failed,
                        dropped: dropped.len(),
                        waiting: status.outbox.len(),
                    };
                    for id in &dropped {
                        tracing::error!(
                            connection = %work.id, notification = %id, retries = RETRY_WAITS.len(),
                            "notification given up: the webhook refused every retry, or newer ones filled the outbox"
                        );
                    }
                    Some(record)
                },
            )
            .await;
        let delivered: Vec<String> = attempts
            .iter()
            .filter(|(_, a)| *a == Attempt::Delivered)
            .map(|(id, _)| id.clone())
            .collect();
        if !matches!(written, Ok(Some(_))) {
            // Not written down: this process backs the failures off itself.
            for (id, _) in attempts.iter().filter(|(_, a)| *a == Attempt::Failed) {
                let stored = work
                    .due
                    .iter()
                    .find(|n| &n.id == id)
                    .map_or(0, |n| n.attempts);
                self.broker.remember_failed(id, stored, self.now);
            }
        }
        if let Ok(Some(_)) = written {
            self.broker.forget_delivered(&delivered);
            let attempted: Vec<String> = attempts.iter().map(|(id, _)| id.clone()).collect();
            self.broker.forget_failed(&attempted);
            return report;
        }
        // The serve secret is gone, its quota is kept for refreshes, or the
        // write failed: this process remembers what it delivered and writes
        // it down at a later pass.
        if let Err(e) = &written {
            tracing::warn!(
                connection = %work.id, error = %e,
                "the outbox could not be written back; its notifications are delivered again at a later pass"
            );
        }
        self.broker.remember_delivered(&delivered);
        DeliveryReport {
            delivered: delivered.len(),
            failed: attempts.len() - delivered.len(),
            dropped: 0,
            waiting: work.waiting,
        }
    }
}

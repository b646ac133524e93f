//! Paces a refresh pass's write calls under a rate (`ROOMTOKEN_WRITE_BUDGET`).
//!
//! Secrets Manager's write calls (PutSecretValue, UpdateSecretVersionStage,
//! UpdateSecret, CreateSecret) share 50 requests per second per region, not
//! adjustable, with everything else in the account. A pass sends its writes
//! through a [`PacedStore`]: each write waits for its slots, spaced `1/rate`
//! apart, so that no second holds more than `rate` write calls. Before a
//! connection's refresh tokens are redeemed, the pass asks whether its
//! writes still fit before the pass's deadline ([`Pacer::fits`]); what does
//! not fit is left for the next pass.
//!
//! Time comes from the broker's clock and waits go through its sleeper, so
//! a simulated clock drives it in benchmarks.

use crate::clock::{Clock, Sleeper};
use crate::store::{Listed, SecretStore, StoreError, StoreResult, Stored, Version};
use async_trait::async_trait;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use time::OffsetDateTime;

pub struct Pacer {
    /// Time between two write calls; `None`: unpaced.
    spacing: Option<Duration>,
    /// When the next call may go.
    next_slot: Mutex<Option<OffsetDateTime>>,
}

impl Pacer {
    /// `per_second`: write calls per second; `None` paces nothing.
    pub fn new(per_second: Option<u32>) -> Self {
        Self {
            spacing: per_second
                .filter(|&n| n > 0)
                .map(|n| Duration::from_secs(1) / n),
            next_slot: Mutex::new(None),
        }
    }

    fn next_slot(&self) -> std::sync::MutexGuard<'_, Option<OffsetDateTime>> {
        self.next_slot
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// When the last of `calls` calls asked for now would go.
    fn last_slot(
        &self,
        next: Option<OffsetDateTime>,
        calls: u32,
        now: OffsetDateTime,
    ) -> OffsetDateTime {
        let spacing = self.spacing.unwrap_or_default();
        let first = next.map_or(now, |slot| slot.max(now));
        first + spacing.saturating_mul(calls.saturating_sub(1))
    }

    /// Whether `calls` more write calls would all go before `deadline`.
    pub fn fits(&self, calls: u32, now: OffsetDateTime, deadline: OffsetDateTime) -> bool {
        self.last_slot(*self.next_slot(), calls, now) < deadline
    }

    /// Reserves `calls` consecutive write calls; returns how long to wait
    /// before sending them.
    pub fn reserve(&self, calls: u32, now: OffsetDateTime) -> Duration {
        let Some(spacing) = self.spacing else {
            return Duration::ZERO;
        };
        let mut next = self.next_slot();
        let last = self.last_slot(*next, calls, now);
        *next = Some(last + spacing);
        (last - now).try_into().unwrap_or(Duration::ZERO)
    }
}

/// A store whose writes wait for the pacer. Reads, lists and deletes are
/// not write calls and go at once.
pub struct PacedStore {
    inner: Arc<dyn SecretStore>,
    pacer: Arc<Pacer>,
    clock: Arc<dyn Clock>,
    sleeper: Arc<dyn Sleeper>,
}

impl PacedStore {
    pub fn new(
        inner: Arc<dyn SecretStore>,
        pacer: Arc<Pacer>,
        clock: Arc<dyn Clock>,
        sleeper: Arc<dyn Sleeper>,
    ) -> Self {
        Self {
            inner,
            pacer,
            clock,
            sleeper,
        }
    }
}

#[async_trait]
impl SecretStore for PacedStore {
    fn losing_write_makes_version(&self) -> bool {
        self.inner.losing_write_makes_version()
    }

    async fn get(&self, name: &str) -> Result<Option<Stored>, StoreError> {
        self.inner.get(name).await
    }

    async fn put(&self, name: &str, value: &str, prior: Option<&Version>) -> StoreResult<Version> {
        let calls = self.inner.calls_per_write(prior.is_none());
        let wait = self.pacer.reserve(calls, self.clock.now());
        if !wait.is_zero() {
            self.sleeper.sleep(wait).await;
        }
        self.inner.put(name, value, prior).await
    }

    async fn delete(&self, name: &str) -> Result<(), StoreError> {
        self.inner.delete(name).await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        self.inner.list(prefix).await
    }

    async fn list_marked(&self, prefix: &str) -> StoreResult<Vec<Listed>> {
        self.inner.list_marked(prefix).await
    }

    fn counts_versions(&self) -> bool {
        self.inner.counts_versions()
    }

    fn calls_per_write(&self, creating: bool) -> u32 {
        self.inner.calls_per_write(creating)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const T0: OffsetDateTime = datetime!(2026-11-28 12:00 UTC);

    #[test]
    fn reservations_are_spaced_so_that_no_second_holds_more_than_the_rate() {
        let pacer = Pacer::new(Some(20));
        // Ten writes of two calls each, asked for at once at T0: each waits
        // for the second of its slots.
        let waits: Vec<Duration> = (0..20).map(|_| pacer.reserve(2, T0)).collect();
        assert_eq!(waits[0], Duration::from_millis(50));
        assert_eq!(waits[1], Duration::from_millis(150));
        assert_eq!(waits[19], Duration::from_millis(1_950));
        // 40 calls took two seconds: 20 a second.
        let sent_in_first_second = waits
            .iter()
            .filter(|w| **w < Duration::from_secs(1))
            .count();
        assert_eq!(sent_in_first_second * 2, 20);
    }

    #[test]
    fn what_cannot_go_before_the_deadline_does_not_fit() {
        let pacer = Pacer::new(Some(2));
        let deadline = T0 + Duration::from_secs(3);
        assert!(pacer.fits(4, T0, deadline));
        assert_eq!(pacer.reserve(4, T0), Duration::from_millis(1_500));
        assert!(!pacer.fits(4, T0, deadline), "would end at 3.5 s");
        assert!(pacer.fits(2, T0, deadline));
    }

    #[test]
    fn without_a_rate_nothing_waits() {
        let pacer = Pacer::new(None);
        let deadline = T0 + Duration::from_secs(1);
        assert_eq!(pacer.reserve(1_000, T0), Duration::ZERO);
        assert!(pacer.fits(1_000, T0, deadline));
        assert!(!pacer.fits(1, deadline, deadline), "the pass is over");
    }
}

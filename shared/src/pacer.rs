//! Paces a refresh pass's write calls under a rate (`ROOMTOKEN_WRITE_BUDGET`).
//!
//! Secrets Manager's write calls (PutSecretValue, UpdateSecretVersionStage,
//! UpdateSecret, CreateSecret) share 50 requests per second per region, not
//! adjustable, with everything else in the account. A pass reserves its
//! write calls here before it sends them: reservations are spaced `1/rate`
//! apart, so that no second holds more than `rate` of them. A reservation
//! that would only be ready after the pass's deadline is refused: that
//! connection is left for the next pass.
//!
//! Time comes from the caller (the broker's clock), so a simulated clock
//! drives it in benchmarks.

use std::sync::{Mutex, PoisonError};
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

    /// Reserves `calls` consecutive write calls. Returns how long to wait
    /// before sending them, or `None` (and reserves nothing) when they could
    /// not all go before `deadline`.
    pub fn reserve(
        &self,
        calls: u32,
        now: OffsetDateTime,
        deadline: OffsetDateTime,
    ) -> Option<Duration> {
        let Some(spacing) = self.spacing else {
            return (now < deadline).then_some(Duration::ZERO);
        };
        let mut next = self
            .next_slot
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let first = next.map_or(now, |slot| slot.max(now));
        let last = first + spacing.saturating_mul(calls.saturating_sub(1));
        if last >= deadline {
            return None;
        }
        *next = Some(last + spacing);
        Some((last - now).try_into().unwrap_or(Duration::ZERO))
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
        let deadline = T0 + Duration::from_secs(60);
        // Four calls per refresh, asked for all at once at T0: each refresh
        // waits for the last of its four slots.
        let waits: Vec<Duration> = (0..10)
            .map(|_| pacer.reserve(4, T0, deadline).unwrap())
            .collect();
        assert_eq!(waits[0], Duration::from_millis(150));
        assert_eq!(waits[1], Duration::from_millis(350));
        assert_eq!(waits[9], Duration::from_millis(1_950));
        // 40 calls took two seconds: 20 a second.
        let sent_by = |t: Duration| waits.iter().filter(|&&w| w < t).count() * 4;
        assert_eq!(sent_by(Duration::from_secs(1)), 20);
    }

    #[test]
    fn what_cannot_go_before_the_deadline_is_left_for_the_next_pass() {
        let pacer = Pacer::new(Some(2));
        let deadline = T0 + Duration::from_secs(3);
        assert_eq!(
            pacer.reserve(4, T0, deadline),
            Some(Duration::from_millis(1_500))
        );
        assert_eq!(pacer.reserve(4, T0, deadline), None, "would end at 3.5 s");
        assert_eq!(pacer.reserve(1, T0, deadline), Some(Duration::from_secs(2)));
    }

    #[test]
    fn without_a_rate_nothing_waits() {
        let pacer = Pacer::new(None);
        let deadline = T0 + Duration::from_secs(1);
        assert_eq!(pacer.reserve(1_000, T0, deadline), Some(Duration::ZERO));
        assert_eq!(
            pacer.reserve(1, deadline, deadline),
            None,
            "the pass is over"
        );
    }
}

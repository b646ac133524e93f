//! Where the broker reads the time and waits. Production uses the system
//! clock and tokio's timer; tests drive a `ManualClock` and record waits,
//! so that TTLs, expiries and backoff are checked without sleeping (the
//! manual clock exists only in tests and with the `test-util` feature).

use time::OffsetDateTime;

pub trait Clock: Send + Sync {
    fn now(&self) -> OffsetDateTime;
}

/// The system's wall clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
}

#[cfg(any(test, feature = "test-util"))]
pub use manual::ManualClock;

#[cfg(any(test, feature = "test-util"))]
mod manual {
    use super::Clock;
    use std::sync::{Mutex, PoisonError};
    use time::OffsetDateTime;

    /// A clock that stands still until it is told to move.
    #[derive(Debug)]
    pub struct ManualClock {
        now: Mutex<OffsetDateTime>,
    }

    impl ManualClock {
        pub fn new(start: OffsetDateTime) -> Self {
            Self {
                now: Mutex::new(start),
            }
        }

        /// Moves the clock forward by `by`.
        pub fn advance(&self, by: std::time::Duration) {
            let mut now = self.now.lock().unwrap_or_else(PoisonError::into_inner);
            *now += by;
        }

        /// Moves the clock forward to `at`, if that is later.
        pub fn advance_to(&self, at: OffsetDateTime) {
            let mut now = self.now.lock().unwrap_or_else(PoisonError::into_inner);
            *now = (*now).max(at);
        }
    }

    impl Clock for ManualClock {
        fn now(&self) -> OffsetDateTime {
            *self.now.lock().unwrap_or_else(PoisonError::into_inner)
        }
    }
}

/// Waiting between retries, behind a port so that tests can record the
/// waits instead of spending them.
#[async_trait::async_trait]
pub trait Sleeper: Send + Sync {
    async fn sleep(&self, duration: std::time::Duration);
}

pub struct TokioSleeper;

#[async_trait::async_trait]
impl Sleeper for TokioSleeper {
    async fn sleep(&self, duration: std::time::Duration) {
        tokio::time::sleep(duration).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use time::macros::datetime;

    #[test]
    fn a_manual_clock_moves_only_when_told() {
        let clock = ManualClock::new(datetime!(2026-11-28 12:00 UTC));
        assert_eq!(clock.now(), datetime!(2026-11-28 12:00 UTC));
        clock.advance(Duration::from_secs(31));
        assert_eq!(clock.now(), datetime!(2026-11-28 12:00:31 UTC));
    }
}

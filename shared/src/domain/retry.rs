//! How long to wait before retrying a transient failure: exponential
//! backoff with jitter, never shorter than the provider's `Retry-After`.

use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts per token request, the first one included.
    pub max_attempts: u32,
    /// Backoff before the second attempt; doubled for each one after.
    /// Microsoft asks to back off from 5 s on 5xx.
    pub base_delay: Duration,
    /// A wait longer than this (say, a long `Retry-After`) is left to the
    /// next pass instead.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            base_delay: Duration::from_secs(5),
            max_delay: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// The wait before attempt `failed_attempts + 1`, or `None` when no more
    /// attempts are allowed in this pass. `unit` in `[0, 1]` is the jitter
    /// draw, so that the policy itself stays deterministic.
    pub fn delay(
        &self,
        failed_attempts: u32,
        retry_after: Option<Duration>,
        unit: f64,
    ) -> Option<Duration> {
        if failed_attempts == 0 || failed_attempts >= self.max_attempts {
            return None;
        }
        let exponent = failed_attempts.saturating_sub(1).min(16);
        let backoff = self
            .base_delay
            .saturating_mul(1 << exponent)
            .min(self.max_delay);
        // At least the backoff (Microsoft: from 5 s), at most half again.
        let jittered = backoff
            .mul_f64(1.0 + 0.5 * unit.clamp(0.0, 1.0))
            .min(self.max_delay);
        let delay = jittered.max(retry_after.unwrap_or(Duration::ZERO));
        (delay <= self.max_delay).then_some(delay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backs_off_exponentially_with_jitter() {
        let policy = RetryPolicy::default();
        assert_eq!(
            policy.delay(1, None, 1.0),
            Some(Duration::from_millis(7_500))
        );
        assert_eq!(
            policy.delay(1, None, 0.0),
            Some(Duration::from_secs(5)),
            "never sooner than 5 s"
        );
        assert_eq!(policy.delay(2, None, 1.0), Some(Duration::from_secs(15)));
        assert_eq!(policy.delay(3, None, 1.0), None, "three attempts in all");
        assert_eq!(policy.delay(0, None, 1.0), None);
    }

    #[test]
    fn honours_retry_after_unless_it_is_too_long_for_this_pass() {
        let policy = RetryPolicy::default();
        assert_eq!(
            policy.delay(1, Some(Duration::from_secs(30)), 0.0),
            Some(Duration::from_secs(30))
        );
        assert_eq!(policy.delay(1, Some(Duration::from_secs(3_600)), 0.0), None);
    }
}

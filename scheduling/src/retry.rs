//! Retry policy for the durable job queue: when a failed job runs again, or that it stops trying.
//!
//! Exponential backoff without jitter, so the schedule is predictable and testable: the n-th failure
//! waits `base · 2^(n-1)`, capped at `max_delay`, and the job gives up once it has failed
//! `max_attempts` times. Arithmetic saturates, so huge attempt counts or durations never overflow.
//! Several nodes retrying the same job is not a thundering-herd concern here: one job is claimed by
//! one runner at a time, so jitter would buy nothing but flaky tests.

use chrono::TimeDelta;

/// How often and how patiently a failing job is retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Delay after the first failure.
    pub base: TimeDelta,
    /// No delay is longer than this.
    pub max_delay: TimeDelta,
    /// Failures after which the job is given up (dead). `0` behaves like `1`: the first failure is final.
    pub max_attempts: u32,
}

/// What to do after a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Run again this long after now.
    At(TimeDelta),
    /// Stop: the job has failed `max_attempts` times.
    GiveUp,
}

impl RetryPolicy {
    /// The decision after a failure; `attempts` counts failures so far, this one included (so ≥ 1).
    pub fn after_failure(&self, attempts: u32) -> Retry {
        if attempts >= self.max_attempts.max(1) {
            return Retry::GiveUp;
        }
        let base = self.base.max(TimeDelta::zero());
        let cap = self.max_delay.max(TimeDelta::zero());
        // 2^(attempts-1), saturating: past 2^31 every positive base exceeds any cap anyway.
        let factor = 1i32.checked_shl(attempts.saturating_sub(1)).filter(|f| *f > 0).unwrap_or(i32::MAX);
        let delay = base.checked_mul(factor).unwrap_or(TimeDelta::MAX);
        Retry::At(delay.min(cap))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(base: i64, max: i64, attempts: u32) -> RetryPolicy {
        RetryPolicy { base: TimeDelta::seconds(base), max_delay: TimeDelta::seconds(max), max_attempts: attempts }
    }

    #[test]
    fn doubles_from_base_until_the_cap() {
        let p = policy(5, 60, 10);
        let delays: Vec<_> = (1..=6).map(|n| p.after_failure(n)).collect();
        let expected = [5, 10, 20, 40, 60, 60].map(|s| Retry::At(TimeDelta::seconds(s)));
        assert_eq!(delays, expected);
    }

    #[test]
    fn gives_up_at_max_attempts() {
        let p = policy(5, 3600, 3);
        assert_eq!(p.after_failure(2), Retry::At(TimeDelta::seconds(10)));
        assert_eq!(p.after_failure(3), Retry::GiveUp);
        assert_eq!(p.after_failure(4), Retry::GiveUp);
        // One attempt allowed: the first failure is final; zero behaves the same.
        assert_eq!(policy(5, 60, 1).after_failure(1), Retry::GiveUp);
        assert_eq!(policy(5, 60, 0).after_failure(1), Retry::GiveUp);
    }

    #[test]
    fn huge_attempt_counts_and_durations_saturate() {
        let p = policy(5, 3600, u32::MAX);
        for n in [31, 32, 33, 64, 1000, u32::MAX - 1] {
            assert_eq!(p.after_failure(n), Retry::At(TimeDelta::seconds(3600)), "attempt {n}");
        }
        let p = RetryPolicy { base: TimeDelta::MAX, max_delay: TimeDelta::MAX, max_attempts: 100 };
        assert_eq!(p.after_failure(2), Retry::At(TimeDelta::MAX));
        // `attempts = 0` (not meant to happen) is treated like the first failure.
        assert_eq!(policy(5, 60, 10).after_failure(0), Retry::At(TimeDelta::seconds(5)));
    }

    #[test]
    fn negative_settings_never_schedule_into_the_past() {
        let p = RetryPolicy { base: TimeDelta::seconds(-5), max_delay: TimeDelta::seconds(60), max_attempts: 5 };
        assert_eq!(p.after_failure(1), Retry::At(TimeDelta::zero()));
        let p = RetryPolicy { base: TimeDelta::seconds(5), max_delay: TimeDelta::seconds(-1), max_attempts: 5 };
        assert_eq!(p.after_failure(1), Retry::At(TimeDelta::zero()));
    }
}

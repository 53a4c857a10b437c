//! Login rate limiting: fixed windows per key (an account, a client IP), in memory on each node.
//! Counts are kept per node: behind a load balancer of N nodes an attacker gets at most N× the budget,
//! which the window and limits are sized for.

use std::{collections::HashMap, sync::Mutex};

use chrono::{DateTime, Duration, Utc};

pub struct Limiter {
    max: u32,
    window: Duration,
    windows: Mutex<HashMap<String, (DateTime<Utc>, u32)>>,
}

/// Entries beyond this are pruned of expired windows before a new one is added, bounding memory.
const PRUNE_AT: usize = 100_000;

impl Limiter {
    pub fn new(max: u32, window_secs: u64) -> Self {
        Self { max, window: Duration::seconds(window_secs as i64), windows: Mutex::new(HashMap::new()) }
    }

    /// Whether `key` may try again now; `Err(seconds)` says how long until it may.
    pub fn check(&self, key: &str, now: DateTime<Utc>) -> Result<(), u64> {
        let windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        match windows.get(key) {
            Some((start, count)) if *start + self.window > now && *count >= self.max => {
                Err((*start + self.window - now).num_seconds().max(1) as u64)
            }
            _ => Ok(()),
        }
    }

    /// Counts one event for `key`.
    pub fn record(&self, key: &str, now: DateTime<Utc>) {
        let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        if windows.len() >= PRUNE_AT && !windows.contains_key(key) {
            let window = self.window;
            windows.retain(|_, (start, _)| *start + window > now);
        }
        let entry = windows.entry(key.to_string()).or_insert((now, 0));
        if entry.0 + self.window <= now {
            *entry = (now, 0);
        }
        entry.1 += 1;
    }

    /// Checks and counts in one step (for limits on attempts rather than failures).
    pub fn hit(&self, key: &str, now: DateTime<Utc>) -> Result<(), u64> {
        self.check(key, now)?;
        self.record(key, now);
        Ok(())
    }

    pub fn reset(&self, key: &str) {
        self.windows.lock().unwrap_or_else(|e| e.into_inner()).remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_after_max_until_window_passes() {
        let l = Limiter::new(3, 60);
        let t0 = Utc::now();
        for _ in 0..3 {
            assert!(l.hit("k", t0).is_ok());
        }
        assert_eq!(l.hit("k", t0 + Duration::seconds(10)), Err(50));
        assert!(l.hit("other", t0).is_ok());
        assert!(l.hit("k", t0 + Duration::seconds(61)).is_ok());
        l.reset("k");
        assert!(l.check("k", t0).is_ok());
    }
}

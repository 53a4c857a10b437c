//! Login rate limiting that slows password guessing without letting anyone lock an account.
//!
//! Three counters, each a fixed window that starts at its first hit:
//! - attempts per client IP (any account): one address can't spray many accounts;
//! - failures per account and client IP: the usual "5 wrong passwords" lock, but only for that address, so
//!   an attacker elsewhere can't lock the owner out;
//! - failures per account from every address: a botnet of many addresses is stopped too, except on an
//!   address the account has signed in from before (a known device), so the owner still gets in.
//!
//! Every check is a count taken *before* the password is verified ("reserve"), in one atomic step, so
//! concurrent attempts can't all pass a check that none of them has counted yet; a correct password gives
//! its reservations back, the per-address one included, so a classroom signing in behind one NAT address
//! is never refused for succeeding. The counts live in [`Counters`]: this node's memory, or Redis when configured, so
//! the limits hold across every node behind a load balancer.

use std::{collections::HashMap, sync::Arc, sync::Mutex, time::Duration as StdDuration};

use chrono::{DateTime, Duration, Utc};
use futures::future::BoxFuture;
use sha2::{Digest, Sha256};

/// A window counter could not be read or written (Redis unreachable).
#[derive(Debug, thiserror::Error)]
#[error("rate-limit store unavailable: {0}")]
pub struct Unavailable(pub String);

/// Atomic fixed-window counters. `incr` starts a key's window with its first hit; a key disappears when
/// its window ends.
pub trait Counters: Send + Sync + 'static {
    /// Adds one to `key`; returns the new count and the seconds left in its window.
    fn incr<'a>(
        &'a self,
        key: &'a str,
        window: StdDuration,
        now: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<(u64, u64), Unavailable>>;
    /// Takes one back (never below zero).
    fn decr<'a>(&'a self, key: &'a str, now: DateTime<Utc>) -> BoxFuture<'a, Result<(), Unavailable>>;
    fn reset<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), Unavailable>>;
    fn get<'a>(&'a self, key: &'a str, now: DateTime<Utc>) -> BoxFuture<'a, Result<u64, Unavailable>>;
}

/// Counters in this process (the single-node default). Windows follow the application clock.
#[derive(Default)]
pub struct MemoryCounters {
    windows: Mutex<HashMap<String, (DateTime<Utc>, u64)>>,
}

/// Keys beyond this are pruned of ended windows before a new one is added, bounding memory.
const PRUNE_AT: usize = 100_000;

impl MemoryCounters {
    fn with<T>(&self, f: impl FnOnce(&mut HashMap<String, (DateTime<Utc>, u64)>) -> T) -> T {
        f(&mut self.windows.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

impl Counters for MemoryCounters {
    fn incr<'a>(
        &'a self,
        key: &'a str,
        window: StdDuration,
        now: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<(u64, u64), Unavailable>> {
        let out = self.with(|w| {
            if w.len() >= PRUNE_AT && !w.contains_key(key) {
                w.retain(|_, (ends, _)| *ends > now);
            }
            let entry = w.entry(key.to_string()).or_insert((now, 0));
            if entry.0 <= now {
                *entry = (now + Duration::from_std(window).unwrap_or(Duration::MAX), 0);
            }
            entry.1 += 1;
            (entry.1, (entry.0 - now).num_seconds().max(1) as u64)
        });
        Box::pin(async move { Ok(out) })
    }

    fn decr<'a>(&'a self, key: &'a str, now: DateTime<Utc>) -> BoxFuture<'a, Result<(), Unavailable>> {
        self.with(|w| {
            if let Some(entry) = w.get_mut(key)
                && entry.0 > now
            {
                entry.1 = entry.1.saturating_sub(1);
            }
        });
        Box::pin(async { Ok(()) })
    }

    fn reset<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), Unavailable>> {
        self.with(|w| w.remove(key));
        Box::pin(async { Ok(()) })
    }

    fn get<'a>(&'a self, key: &'a str, now: DateTime<Utc>) -> BoxFuture<'a, Result<u64, Unavailable>> {
        let n = self.with(|w| w.get(key).filter(|(ends, _)| *ends > now).map_or(0, |(_, n)| *n));
        Box::pin(async move { Ok(n) })
    }
}

/// Counters in Redis, shared by every node. Windows follow Redis's clock (key expiry).
pub struct RedisCounters {
    conn: redis::aio::ConnectionManager,
    incr: redis::Script,
    decr: redis::Script,
}

/// KEYS[1]: the counter. ARGV[1]: the window in ms. Returns {count, ms left}.
const INCR_LUA: &str = r#"
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
local left = redis.call('PTTL', KEYS[1])
if left < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[1]); left = tonumber(ARGV[1]) end
return {n, left}
"#;

/// KEYS[1]: the counter. Decrements an existing positive counter, keeping its expiry.
const DECR_LUA: &str = r#"
local n = tonumber(redis.call('GET', KEYS[1]) or '0')
if n > 0 then redis.call('DECR', KEYS[1]) end
return 0
"#;

const REDIS_TIMEOUT: StdDuration = StdDuration::from_secs(2);

impl RedisCounters {
    pub async fn connect(url: &str) -> Result<Self, Unavailable> {
        let client = redis::Client::open(url).map_err(|e| Unavailable(e.to_string()))?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(REDIS_TIMEOUT))
            .set_response_timeout(Some(REDIS_TIMEOUT))
            .set_number_of_retries(1);
        let conn = redis_io(client.get_connection_manager_with_config(config)).await?;
        Ok(Self { conn, incr: redis::Script::new(INCR_LUA), decr: redis::Script::new(DECR_LUA) })
    }
}

async fn redis_io<T>(f: impl Future<Output = redis::RedisResult<T>>) -> Result<T, Unavailable> {
    match tokio::time::timeout(REDIS_TIMEOUT, f).await {
        Ok(r) => r.map_err(|e| Unavailable(e.to_string())),
        Err(_) => Err(Unavailable("redis timed out".into())),
    }
}

fn redis_key(key: &str) -> String {
    format!("lc:limit:{key}")
}

impl Counters for RedisCounters {
    fn incr<'a>(
        &'a self,
        key: &'a str,
        window: StdDuration,
        _now: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<(u64, u64), Unavailable>> {
        Box::pin(async move {
            let mut conn = self.conn.clone();
            let (n, left_ms): (u64, i64) =
                redis_io(self.incr.key(redis_key(key)).arg(window.as_millis() as u64).invoke_async(&mut conn)).await?;
            Ok((n, (left_ms.max(0) as u64).div_ceil(1000).max(1)))
        })
    }

    fn decr<'a>(&'a self, key: &'a str, _now: DateTime<Utc>) -> BoxFuture<'a, Result<(), Unavailable>> {
        Box::pin(async move {
            let mut conn = self.conn.clone();
            redis_io(self.decr.key(redis_key(key)).invoke_async::<i64>(&mut conn)).await.map(|_| ())
        })
    }

    fn reset<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), Unavailable>> {
        Box::pin(async move {
            let mut conn = self.conn.clone();
            redis_io(redis::cmd("DEL").arg(redis_key(key)).query_async::<i64>(&mut conn)).await.map(|_| ())
        })
    }

    fn get<'a>(&'a self, key: &'a str, _now: DateTime<Utc>) -> BoxFuture<'a, Result<u64, Unavailable>> {
        Box::pin(async move {
            let mut conn = self.conn.clone();
            let n: Option<u64> = redis_io(redis::cmd("GET").arg(redis_key(key)).query_async(&mut conn)).await?;
            Ok(n.unwrap_or(0))
        })
    }
}

/// The limits (see the module doc).
#[derive(Debug, Clone, Copy)]
pub struct LoginPolicy {
    pub attempts_per_ip: u64,
    pub failures_per_account_ip: u64,
    pub failures_per_account: u64,
    pub window: StdDuration,
    /// How long a successful sign-in from an address makes it a known device of the account.
    pub known_for: StdDuration,
}

/// Why an attempt was refused before its password was checked.
#[derive(Debug)]
pub enum Refused {
    /// Too many attempts; try again after this many seconds.
    Limited {
        message: &'static str,
        retry_after: u64,
    },
    Unavailable(Unavailable),
}

impl From<Unavailable> for Refused {
    fn from(e: Unavailable) -> Self {
        Refused::Unavailable(e)
    }
}

/// Counts sign-in attempts (see the module doc).
pub struct LoginLimits {
    counters: Arc<dyn Counters>,
    policy: LoginPolicy,
}

/// An attempt that passed the limits; its reservations are given back if the password is right.
#[must_use = "report the attempt's outcome with `succeeded`, or drop it on failure"]
pub struct Attempt {
    ip: String,
    account_ip: String,
    account: String,
    known: String,
}

impl LoginLimits {
    pub fn new(counters: Arc<dyn Counters>, policy: LoginPolicy) -> Self {
        Self { counters, policy }
    }

    /// Checks and counts an attempt by `ip` on `account` (tenant and e-mail) in one step per counter.
    pub async fn begin(&self, ip: &str, account: &str, now: DateTime<Utc>) -> Result<Attempt, Refused> {
        let p = self.policy;
        let c = &self.counters;
        let ip_key = key("ip", &[ip]);
        let (tries, left) = c.incr(&ip_key, p.window, now).await?;
        if tries > p.attempts_per_ip {
            return Err(Refused::Limited { message: "too many login attempts from this address", retry_after: left });
        }
        let attempt = Attempt {
            ip: ip_key,
            account_ip: key("acct-ip", &[account, ip]),
            account: key("acct", &[account]),
            known: key("known", &[account, ip]),
        };
        let (failures, left) = c.incr(&attempt.account, p.window, now).await?;
        if failures > p.failures_per_account && c.get(&attempt.known, now).await? == 0 {
            c.decr(&attempt.account, now).await?;
            return Err(Refused::Limited {
                message: "too many failed logins for this account; try again later, or from a device you have \
                          signed in from before",
                retry_after: left,
            });
        }
        let (failures, left) = c.incr(&attempt.account_ip, p.window, now).await?;
        if failures > p.failures_per_account_ip {
            c.decr(&attempt.account_ip, now).await?;
            c.decr(&attempt.account, now).await?;
            return Err(Refused::Limited {
                message: "too many failed logins for this account from this address",
                retry_after: left,
            });
        }
        Ok(attempt)
    }

    /// The password was right: the attempt's reservations are returned and the address becomes known.
    pub async fn succeeded(&self, attempt: Attempt, now: DateTime<Utc>) -> Result<(), Unavailable> {
        let c = &self.counters;
        c.reset(&attempt.account_ip).await?;
        c.decr(&attempt.account, now).await?;
        c.decr(&attempt.ip, now).await?;
        c.incr(&attempt.known, self.policy.known_for, now).await?;
        Ok(())
    }
}

/// A fixed-length key: account names are user input of any length.
fn key(kind: &str, parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    format!("login:{kind}:{}", hex::encode(&h.finalize()[..16]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> LoginLimits {
        LoginLimits::new(
            Arc::new(MemoryCounters::default()),
            LoginPolicy {
                attempts_per_ip: 100,
                failures_per_account_ip: 3,
                failures_per_account: 5,
                window: StdDuration::from_secs(60),
                known_for: StdDuration::from_secs(3600),
            },
        )
    }

    fn limited(r: Result<Attempt, Refused>) -> u64 {
        match r {
            Err(Refused::Limited { retry_after, .. }) => retry_after,
            Err(Refused::Unavailable(e)) => panic!("{e}"),
            Ok(_) => panic!("not limited"),
        }
    }

    #[tokio::test]
    async fn failures_lock_one_address_and_a_right_password_gives_its_reservation_back() {
        let l = limits();
        let t0 = Utc::now();
        let ok = l.begin("1.1.1.1", "acct", t0).await.ok().unwrap();
        l.succeeded(ok, t0).await.unwrap();
        for _ in 0..3 {
            let _failed = l.begin("2.2.2.2", "acct", t0).await.ok().unwrap();
        }
        assert_eq!(limited(l.begin("2.2.2.2", "acct", t0 + Duration::seconds(10)).await), 50);
        // The owner's address isn't locked, and another account from the attacker's isn't either.
        assert!(l.begin("1.1.1.1", "acct", t0).await.is_ok());
        assert!(l.begin("2.2.2.2", "other", t0).await.is_ok());
        assert!(l.begin("2.2.2.2", "acct", t0 + Duration::seconds(61)).await.is_ok());
    }

    #[tokio::test]
    async fn sign_ins_that_succeed_never_use_up_an_address() {
        let l = limits();
        let t0 = Utc::now();
        // A classroom behind one address: more successful sign-ins than the address's attempt limit.
        for i in 0..150 {
            let ok = l.begin("3.3.3.3", &format!("student{i}"), t0).await.ok().unwrap();
            l.succeeded(ok, t0).await.unwrap();
        }
        // Failures still count: the 100 the address is allowed, then refusals.
        for i in 0..100 {
            let _failed = l.begin("3.3.3.3", &format!("guess{i}"), t0).await.ok().unwrap();
        }
        limited(l.begin("3.3.3.3", "guess-more", t0).await);
    }

    #[tokio::test]
    async fn many_addresses_stop_at_the_account_limit_but_a_known_device_passes() {
        let l = limits();
        let t0 = Utc::now();
        let ok = l.begin("9.9.9.9", "acct", t0).await.ok().unwrap();
        l.succeeded(ok, t0).await.unwrap();
        // Five failures from five addresses (one each): the account's budget for strangers is spent.
        for i in 0..5 {
            let _failed = l.begin(&format!("10.0.0.{i}"), "acct", t0).await.ok().unwrap();
        }
        limited(l.begin("10.0.0.99", "acct", t0).await);
        // The owner's known address still gets a try.
        let ok = l.begin("9.9.9.9", "acct", t0).await.ok().unwrap();
        l.succeeded(ok, t0).await.unwrap();
    }
}

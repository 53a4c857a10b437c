//! Security regressions reproduced from outside, against the real server over HTTP and WebSocket, on both
//! backends: each file is one attack that worked once (issue 17) and must keep failing.

mod connections;
mod login;
mod request_ids;
mod sessions;
mod tenancy;
mod whiteboard;

/// The shared Redis at 127.0.0.1:6379 for the cross-node variants, when `TEST_REDIS` is set (CI sets it
/// and starts Redis; there a missing `TEST_REDIS` fails rather than skips).
pub fn test_redis() -> Option<String> {
    if std::env::var("TEST_REDIS").is_err() {
        assert_ne!(std::env::var("CI").as_deref(), Ok("true"), "CI must run the Redis variants: set TEST_REDIS=1");
        eprintln!("Redis variant skipped: set TEST_REDIS=1 (needs Redis at 127.0.0.1:6379)");
        return None;
    }
    Some("redis://127.0.0.1:6379".into())
}

/// A tenant slug no other run shares (Redis keys outlive a test's database).
pub fn unique_slug(prefix: &str) -> String {
    format!("{prefix}{}", &uuid::Uuid::new_v4().simple().to_string()[..10])
}

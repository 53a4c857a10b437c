//! Sessions signed out before their access tokens expire.
//!
//! An access token names its session (`sid`, the refresh-token family). Signing out, or replaying a rotated
//! refresh token, revokes the family in the database; from then on every access token of that session is
//! refused. Checking the database on every request would cost a query each, so answers are cached: a
//! revocation made on this node counts at once, and one made on another node is seen within `fresh_for`
//! (the age of a cached "still live" answer). The WebSocket connections of a revoked session are closed
//! through their user channel on every node (`Signaling::end_session`), so sockets don't wait for that.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use crate::db::Db;

#[derive(Clone, Copy)]
enum Known {
    /// The database said live at this instant.
    Live(Instant),
    /// Revoked at this instant (kept while its tokens could still be presented).
    Revoked(Instant),
}

pub struct Revocations {
    db: Db,
    fresh_for: Duration,
    /// How long a revoked session's tokens can still be presented (the access-token lifetime).
    remember_for: Duration,
    cache: Mutex<HashMap<String, Known>>,
}

/// Sessions cached beyond this are pruned of stale answers before a new one is added, bounding memory.
const PRUNE_AT: usize = 100_000;

impl Revocations {
    pub fn new(db: Db, fresh_for: Duration, access_ttl: Duration) -> Self {
        Self { db, fresh_for, remember_for: access_ttl, cache: Mutex::new(HashMap::new()) }
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HashMap<String, Known>> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether `session` was signed out.
    pub async fn is_revoked(&self, session: &str) -> Result<bool, sqlx::Error> {
        let now = Instant::now();
        match self.cache().get(session) {
            Some(Known::Revoked(_)) => return Ok(true),
            Some(Known::Live(at)) if now.duration_since(*at) < self.fresh_for => return Ok(false),
            _ => {}
        }
        let revoked =
            sqlx::query("SELECT 1 FROM refresh_tokens WHERE family_id = $1 AND revoked_at IS NOT NULL LIMIT 1")
                .bind(session)
                .fetch_optional(self.db.pool())
                .await?
                .is_some();
        self.remember(session, if revoked { Known::Revoked(now) } else { Known::Live(now) });
        Ok(revoked)
    }

    /// This node revoked `session`: refuse its tokens from now on without asking the database.
    pub fn revoked(&self, session: &str) {
        self.remember(session, Known::Revoked(Instant::now()));
    }

    fn remember(&self, session: &str, known: Known) {
        let now = Instant::now();
        let mut cache = self.cache();
        if cache.len() >= PRUNE_AT && !cache.contains_key(session) {
            cache.retain(|_, k| match *k {
                Known::Live(at) => now.duration_since(at) < self.fresh_for,
                Known::Revoked(at) => now.duration_since(at) < self.remember_for,
            });
        }
        // A revocation is never overwritten by an older "live" answer that raced it.
        let entry = cache.entry(session.to_string()).or_insert(known);
        if !matches!(entry, Known::Revoked(_)) {
            *entry = known;
        }
    }
}

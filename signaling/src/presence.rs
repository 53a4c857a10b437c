//! The `PresenceStore` seam: who is in a room, one entry per connection, each with an expiry that
//! the connection's heartbeat refreshes — so the members of a crashed node disappear on their own.
//! [`MemoryPresence`] serves one node; `RedisPresence` (module `redis_bus`) spans nodes.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use futures::future::BoxFuture;

use crate::{bus::BusError, protocol::Member};

/// One connection in a room. `conn` is unique across nodes (`<node>:<connection>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresenceEntry {
    pub conn: String,
    pub user_id: String,
    pub name: String,
    pub role: String,
}

pub trait PresenceStore: Send + Sync + 'static {
    /// Adds or refreshes `entry` in `room` for `ttl`.
    fn add<'a>(&'a self, room: &'a str, entry: &'a PresenceEntry, ttl: Duration)
    -> BoxFuture<'a, Result<(), BusError>>;
    fn remove<'a>(&'a self, room: &'a str, conn: &'a str) -> BoxFuture<'a, Result<(), BusError>>;
    /// Live entries of `room` (expired ones excluded).
    fn list<'a>(&'a self, room: &'a str) -> BoxFuture<'a, Result<Vec<PresenceEntry>, BusError>>;
}

/// Collapses connections to members: one per user, with their device count, sorted by user id.
pub fn members(entries: &[PresenceEntry]) -> Vec<Member> {
    let mut by_user: std::collections::BTreeMap<&str, Member> = std::collections::BTreeMap::new();
    for e in entries {
        by_user.entry(&e.user_id).and_modify(|m| m.devices += 1).or_insert_with(|| Member {
            user_id: e.user_id.clone(),
            name: e.name.clone(),
            role: e.role.clone(),
            devices: 1,
        });
    }
    by_user.into_values().collect()
}

/// A room's entries by connection, each with its expiry.
type RoomEntries = HashMap<String, (PresenceEntry, Instant)>;

#[derive(Default)]
pub struct MemoryPresence {
    rooms: Mutex<HashMap<String, RoomEntries>>,
}

impl PresenceStore for MemoryPresence {
    fn add<'a>(
        &'a self,
        room: &'a str,
        entry: &'a PresenceEntry,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<(), BusError>> {
        Box::pin(async move {
            let mut rooms = self.rooms.lock().unwrap_or_else(|e| e.into_inner());
            rooms
                .entry(room.to_string())
                .or_default()
                .insert(entry.conn.clone(), (entry.clone(), Instant::now() + ttl));
            Ok(())
        })
    }

    fn remove<'a>(&'a self, room: &'a str, conn: &'a str) -> BoxFuture<'a, Result<(), BusError>> {
        Box::pin(async move {
            let mut rooms = self.rooms.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(r) = rooms.get_mut(room) {
                r.remove(conn);
                if r.is_empty() {
                    rooms.remove(room);
                }
            }
            Ok(())
        })
    }

    fn list<'a>(&'a self, room: &'a str) -> BoxFuture<'a, Result<Vec<PresenceEntry>, BusError>> {
        Box::pin(async move {
            let now = Instant::now();
            let mut rooms = self.rooms.lock().unwrap_or_else(|e| e.into_inner());
            let Some(r) = rooms.get_mut(room) else { return Ok(Vec::new()) };
            r.retain(|_, (_, expires)| *expires > now);
            let mut out: Vec<_> = r.values().map(|(e, _)| e.clone()).collect();
            out.sort_by(|a, b| a.conn.cmp(&b.conn));
            Ok(out)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(conn: &str, user: &str) -> PresenceEntry {
        PresenceEntry { conn: conn.into(), user_id: user.into(), name: user.into(), role: "student".into() }
    }

    #[tokio::test]
    async fn devices_collapse_and_entries_expire() {
        let p = MemoryPresence::default();
        p.add("r", &entry("n:1", "ann"), Duration::from_secs(60)).await.unwrap();
        p.add("r", &entry("n:2", "ann"), Duration::from_secs(60)).await.unwrap();
        p.add("r", &entry("n:3", "bob"), Duration::from_millis(20)).await.unwrap();
        let m = members(&p.list("r").await.unwrap());
        assert_eq!(m.iter().map(|m| (m.user_id.as_str(), m.devices)).collect::<Vec<_>>(), [("ann", 2), ("bob", 1)]);
        tokio::time::sleep(Duration::from_millis(40)).await;
        let m = members(&p.list("r").await.unwrap());
        assert_eq!(m.len(), 1, "bob's entry expired");
        p.remove("r", "n:1").await.unwrap();
        assert_eq!(members(&p.list("r").await.unwrap())[0].devices, 1);
    }
}

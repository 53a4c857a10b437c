//! The `PresenceStore` seam: who is in a room, one entry per connection, each with an expiry that
//! the connection's heartbeat refreshes — so the members of a crashed node disappear on their own.
//! [`MemoryPresence`] serves one node, indexed by user so that a join's [`PresenceSummary`] costs what it
//! lists, not the room's size; `RedisPresence` (module `redis_bus`) spans nodes and summarises its list.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex},
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
    /// Live entries of `room` (expired ones excluded), by connection.
    fn list<'a>(&'a self, room: &'a str) -> BoxFuture<'a, Result<Vec<PresenceEntry>, BusError>>;
    /// What a join needs: the first `limit` members, the member count and `user`'s devices. The default
    /// builds it from [`list`](Self::list); a store with an index can answer without touching every entry.
    fn summary<'a>(
        &'a self,
        room: &'a str,
        user: &'a str,
        limit: usize,
    ) -> BoxFuture<'a, Result<PresenceSummary, BusError>> {
        Box::pin(async move { Ok(PresenceSummary::of(&self.list(room).await?, user, limit)) })
    }
}

/// A room's presence as a join reply and a leave need it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PresenceSummary {
    /// Up to the limit asked for, by user id.
    pub members: Vec<Member>,
    /// Distinct users present.
    pub total: usize,
    /// Connections of the user asked about.
    pub devices: usize,
}

impl PresenceSummary {
    pub fn of(entries: &[PresenceEntry], user: &str, limit: usize) -> PresenceSummary {
        let mut all = members(entries);
        let total = all.len();
        let devices = all.iter().find(|m| m.user_id == user).map_or(0, |m| m.devices as usize);
        all.truncate(limit);
        PresenceSummary { members: all, total, devices }
    }
}

/// Collapses connections to members: one per user, with their device count, sorted by user id.
pub fn members(entries: &[PresenceEntry]) -> Vec<Member> {
    let mut by_user: BTreeMap<&str, Member> = BTreeMap::new();
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

/// One room: its connections with their expiry, and an index by user kept in step with them, so a join's
/// snapshot costs what it lists, not the size of the room. Each string is held once (a user id is shared
/// by the user's connections): an idle connection's presence is part of its memory.
#[derive(Default)]
struct Room {
    conns: HashMap<Box<str>, (Arc<str>, Instant)>,
    users: BTreeMap<Arc<str>, Person>,
    /// No entry expires before this (a lower bound, recomputed by a sweep).
    earliest: Option<Instant>,
}

/// A user in a room: the name and role of their first connection, and how many they have.
struct Person {
    name: Box<str>,
    role: Box<str>,
    devices: u32,
}

impl Person {
    fn member(&self, user: &str) -> Member {
        Member {
            user_id: user.to_string(),
            name: self.name.to_string(),
            role: self.role.to_string(),
            devices: self.devices,
        }
    }
}

impl Room {
    fn insert(&mut self, entry: &PresenceEntry, expires: Instant) {
        self.earliest = Some(self.earliest.map_or(expires, |e| e.min(expires)));
        if let Some(slot) = self.conns.get_mut(entry.conn.as_str()) {
            slot.1 = expires;
            return;
        }
        let user = match self.users.get_key_value(entry.user_id.as_str()) {
            Some((user, _)) => user.clone(),
            None => Arc::from(entry.user_id.as_str()),
        };
        let person = self.users.entry(user.clone()).or_insert_with(|| Person {
            name: entry.name.as_str().into(),
            role: entry.role.as_str().into(),
            devices: 0,
        });
        person.devices += 1;
        self.conns.insert(entry.conn.as_str().into(), (user, expires));
    }

    fn remove(&mut self, conn: &str) {
        let Some((user, _)) = self.conns.remove(conn) else { return };
        if let Some(p) = self.users.get_mut(&user) {
            p.devices -= 1;
            if p.devices == 0 {
                self.users.remove(&user);
            }
        }
    }

    /// Drops expired entries; a full pass only once the earliest expiry has passed.
    fn sweep(&mut self, now: Instant) {
        if self.earliest.is_none_or(|e| e > now) {
            return;
        }
        let expired: Vec<Box<str>> =
            self.conns.iter().filter(|(_, (_, exp))| *exp <= now).map(|(c, _)| c.clone()).collect();
        for c in expired {
            self.remove(&c);
        }
        self.earliest = self.conns.values().map(|(_, exp)| *exp).min();
    }
}

#[derive(Default)]
pub struct MemoryPresence {
    rooms: Mutex<HashMap<String, Room>>,
}

impl MemoryPresence {
    /// Runs `f` on `room` after dropping its expired entries; `None` when nobody is there.
    fn with_room<T>(&self, room: &str, f: impl FnOnce(&Room) -> T) -> Option<T> {
        let mut rooms = self.rooms.lock().unwrap_or_else(|e| e.into_inner());
        let r = rooms.get_mut(room)?;
        r.sweep(Instant::now());
        if r.conns.is_empty() {
            rooms.remove(room);
            return None;
        }
        Some(f(r))
    }
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
            let expires = Instant::now() + ttl;
            match rooms.get_mut(room) {
                Some(r) => r.insert(entry, expires),
                None => rooms.entry(room.to_string()).or_default().insert(entry, expires),
            }
            Ok(())
        })
    }

    fn remove<'a>(&'a self, room: &'a str, conn: &'a str) -> BoxFuture<'a, Result<(), BusError>> {
        Box::pin(async move {
            let mut rooms = self.rooms.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(r) = rooms.get_mut(room) {
                r.remove(conn);
                if r.conns.is_empty() {
                    rooms.remove(room);
                }
            }
            Ok(())
        })
    }

    fn list<'a>(&'a self, room: &'a str) -> BoxFuture<'a, Result<Vec<PresenceEntry>, BusError>> {
        Box::pin(async move {
            let mut out: Vec<PresenceEntry> = self
                .with_room(room, |r| {
                    let entry = |conn: &str, user: &Arc<str>| {
                        let p = &r.users[user];
                        PresenceEntry {
                            conn: conn.to_string(),
                            user_id: user.to_string(),
                            name: p.name.to_string(),
                            role: p.role.to_string(),
                        }
                    };
                    r.conns.iter().map(|(conn, (user, _))| entry(conn, user)).collect()
                })
                .unwrap_or_default();
            out.sort_by(|a, b| a.conn.cmp(&b.conn));
            Ok(out)
        })
    }

    fn summary<'a>(
        &'a self,
        room: &'a str,
        user: &'a str,
        limit: usize,
    ) -> BoxFuture<'a, Result<PresenceSummary, BusError>> {
        Box::pin(async move {
            let summary = self.with_room(room, |r| PresenceSummary {
                members: r.users.iter().take(limit).map(|(u, p)| p.member(u)).collect(),
                total: r.users.len(),
                devices: r.users.get(user).map_or(0, |p| p.devices as usize),
            });
            Ok(summary.unwrap_or_default())
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
    #[tokio::test]
    async fn the_index_agrees_with_the_entries() {
        let p = MemoryPresence::default();
        let ttl = Duration::from_secs(60);
        // Users u0..u6 with up to three devices each; some leave, one refreshes.
        for c in 0..20 {
            p.add("r", &entry(&format!("n:{c}"), &format!("u{}", c % 7)), ttl).await.unwrap();
        }
        for c in [0, 7, 14, 3] {
            p.remove("r", &format!("n:{c}")).await.unwrap();
        }
        p.add("r", &entry("n:1", "u1"), ttl).await.unwrap();
        for (user, limit) in [("u0", 100), ("u1", 3), ("u3", 0), ("nobody", 5)] {
            let indexed = p.summary("r", user, limit).await.unwrap();
            let listed = PresenceSummary::of(&p.list("r").await.unwrap(), user, limit);
            assert_eq!(indexed, listed, "{user} limit {limit}");
        }
        let s = p.summary("r", "u0", 2).await.unwrap();
        assert_eq!((s.total, s.devices, s.members.len()), (6, 0, 2), "u0 left on every device");
        assert_eq!(s.members[0].user_id, "u1");
        assert_eq!(p.summary("r", "u3", 10).await.unwrap().devices, 2);
    }

    #[tokio::test]
    async fn expired_entries_leave_the_index() {
        let p = MemoryPresence::default();
        p.add("r", &entry("n:1", "ann"), Duration::from_secs(60)).await.unwrap();
        p.add("r", &entry("n:2", "bob"), Duration::from_millis(20)).await.unwrap();
        p.add("r", &entry("n:3", "bob"), Duration::from_millis(20)).await.unwrap();
        assert_eq!(p.summary("r", "bob", 10).await.unwrap().devices, 2);
        // A refresh keeps one of bob's devices.
        p.add("r", &entry("n:3", "bob"), Duration::from_secs(60)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(40)).await;
        let s = p.summary("r", "bob", 10).await.unwrap();
        assert_eq!((s.total, s.devices), (2, 1));
        p.remove("r", "n:1").await.unwrap();
        p.remove("r", "n:3").await.unwrap();
        assert_eq!(p.summary("r", "bob", 10).await.unwrap().total, 0);
        assert!(p.rooms.lock().unwrap().is_empty(), "an empty room is dropped");
    }
}

//! The node's room registry: which local connections are in which room, the fan-out of live
//! publications into their bounded outgoing queues, and the node's bus subscriptions (a room is
//! subscribed while it has a local member, and only then).
//!
//! Fan-out never waits: a publication's frame is built once and `try_send` to each member. A member
//! whose queue is full is a slow consumer: its connection is told to close, rather than letting its
//! backlog grow.

use std::{
    collections::{HashMap, HashSet},
    sync::{
        Arc, OnceLock, RwLock,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
};

use axum::extract::ws::Utf8Bytes;
use tokio::sync::{Mutex, Notify, mpsc};

use crate::{
    bus::{Bus, BusError, BusHandler, Publication},
    protocol::publication_frame,
};

pub type ConnId = u64;

/// A room publication (`offset` 0 = ephemeral), framed once and shared by every recipient.
#[derive(Debug)]
pub struct Framed {
    pub room: Arc<str>,
    pub epoch: Arc<str>,
    pub offset: u64,
    pub frame: Utf8Bytes,
}

/// Leave every room starting with `prefix` and tell the client why.
#[derive(Debug)]
pub struct KickOrder {
    pub prefix: Arc<str>,
    pub reason: Arc<str>,
}

/// What the hub queues to a connection: one pointer, so a queue slot (and its preallocated block)
/// stays small on every idle connection.
#[derive(Debug, Clone)]
pub enum Outgoing {
    Publication(Arc<Framed>),
    Kick(Arc<KickOrder>),
}

/// Tells a connection to close, with the reason it gives the client.
#[derive(Debug, Default)]
pub struct Kill {
    fired: AtomicBool,
    reason: std::sync::Mutex<Option<&'static str>>,
    notify: Notify,
}

impl Kill {
    pub fn fire(&self, reason: &'static str) {
        if !self.fired.swap(true, Ordering::AcqRel) {
            *self.reason.lock().unwrap_or_else(|e| e.into_inner()) = Some(reason);
            self.notify.notify_one();
        }
    }
    pub async fn fired(&self) -> &'static str {
        loop {
            if self.fired.load(Ordering::Acquire) {
                return self.reason.lock().unwrap_or_else(|e| e.into_inner()).unwrap_or("closed");
            }
            self.notify.notified().await;
        }
    }
}

#[derive(Clone)]
pub struct MemberHandle {
    pub conn: ConnId,
    pub tx: mpsc::Sender<Outgoing>,
    pub kill: Arc<Kill>,
}

/// Control publications on a user channel start with this; they are handled by the hub, not sent.
pub const KICK_PREFIX: &str = r#"{"kind":"_kick""#;

#[derive(Default)]
pub struct HubStats {
    pub delivered: AtomicU64,
    pub slow_consumers: AtomicU64,
}

pub struct Hub {
    rooms: RwLock<HashMap<Arc<str>, Vec<MemberHandle>>>,
    /// Rooms this node is subscribed to on the bus. Changes are serialised so a subscribe and an
    /// unsubscribe of one room can't cross.
    subscriptions: Mutex<HashSet<Arc<str>>>,
    bus: OnceLock<Arc<dyn Bus>>,
    pub stats: HubStats,
}

impl Default for Hub {
    fn default() -> Self {
        Self {
            rooms: RwLock::new(HashMap::new()),
            subscriptions: Mutex::new(HashSet::new()),
            bus: OnceLock::new(),
            stats: HubStats::default(),
        }
    }
}

impl Hub {
    pub fn set_bus(&self, bus: Arc<dyn Bus>) {
        let _ = self.bus.set(bus);
    }

    pub fn bus(&self) -> &Arc<dyn Bus> {
        self.bus.get().expect("hub bus set at start")
    }

    /// Adds a member and makes sure the node receives the room's live publications before returning
    /// (so history read afterwards plus live deliveries leave no gap).
    pub async fn join(&self, room: &Arc<str>, member: MemberHandle) -> Result<(), BusError> {
        {
            let mut rooms = self.rooms.write().unwrap_or_else(|e| e.into_inner());
            rooms.entry(room.clone()).or_default().push(member.clone());
        }
        let mut subs = self.subscriptions.lock().await;
        if !subs.contains(room) {
            if let Err(e) = self.bus().subscribe(room).await {
                drop(subs);
                self.remove(room, member.conn);
                return Err(e);
            }
            subs.insert(room.clone());
        }
        Ok(())
    }

    /// Removes a member; unsubscribes the node when it was the room's last local member.
    pub async fn leave(&self, room: &Arc<str>, conn: ConnId) {
        if !self.remove(room, conn) {
            return;
        }
        let mut subs = self.subscriptions.lock().await;
        let still_empty = !self.rooms.read().unwrap_or_else(|e| e.into_inner()).contains_key(room);
        if still_empty
            && subs.remove(room)
            && let Err(e) = self.bus().unsubscribe(room).await
        {
            tracing::warn!(error = %e, room = %room, "unsubscribe failed");
        }
    }

    /// Removes the member; true when the room has no local member left.
    fn remove(&self, room: &Arc<str>, conn: ConnId) -> bool {
        let mut rooms = self.rooms.write().unwrap_or_else(|e| e.into_inner());
        let Some(members) = rooms.get_mut(room) else { return false };
        members.retain(|m| m.conn != conn);
        if members.is_empty() {
            rooms.remove(room);
            true
        } else {
            false
        }
    }

    /// Local member count of a room.
    pub fn local_members(&self, room: &str) -> usize {
        self.rooms.read().unwrap_or_else(|e| e.into_inner()).get(room).map_or(0, Vec::len)
    }

    pub fn local_rooms(&self) -> usize {
        self.rooms.read().unwrap_or_else(|e| e.into_inner()).len()
    }
}

impl BusHandler for Hub {
    fn deliver(&self, room: &str, publication: Publication) {
        let rooms = self.rooms.read().unwrap_or_else(|e| e.into_inner());
        let Some((room_key, members)) = rooms.get_key_value(room) else { return };
        let message = if room.starts_with("user:") && publication.data.starts_with(KICK_PREFIX) {
            let v: serde_json::Value = serde_json::from_str(&publication.data).unwrap_or_default();
            Outgoing::Kick(Arc::new(KickOrder {
                prefix: Arc::from(v["prefix"].as_str().unwrap_or("")),
                reason: Arc::from(v["reason"].as_str().unwrap_or("kicked")),
            }))
        } else {
            let frame =
                Utf8Bytes::from(publication_frame(room, &publication.epoch, publication.offset, &publication.data));
            Outgoing::Publication(Arc::new(Framed {
                room: room_key.clone(),
                epoch: publication.epoch,
                offset: publication.offset,
                frame,
            }))
        };
        let mut delivered = 0;
        for m in members {
            match m.tx.try_send(message.clone()) {
                Ok(()) => delivered += 1,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    self.stats.slow_consumers.fetch_add(1, Ordering::Relaxed);
                    m.kill.fire("slow consumer");
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {}
            }
        }
        self.stats.delivered.fetch_add(delivered, Ordering::Relaxed);
    }
}

//! The node's room registry. [`Fanout`], the bus's handler, knows which local connections are in which
//! room and pushes live publications into their bounded outgoing queues; [`Hub`] adds and removes members
//! and keeps the node's bus subscriptions (a room is subscribed while it has a local member, and only
//! then). Built in this order: the `Fanout`, the bus delivering into it, then `Hub::new(fanout, bus)`.
//!
//! Fan-out never waits: a publication's frame is built once and pushed to each member's [`SendQueue`]. A
//! member whose queue is full is a slow consumer: its connection is told to close, rather than letting its
//! backlog grow.

use std::{
    collections::{HashMap, HashSet, VecDeque},
    sync::{
        Arc, RwLock,
        atomic::{AtomicU64, Ordering},
    },
    task::Poll,
};

use axum::extract::ws::Utf8Bytes;
use futures::task::AtomicWaker;
use tokio::sync::Mutex;

use crate::{
    bus::{Bus, BusError, BusHandler, Publication},
    protocol::{Verdict, publication_frame},
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

/// Leave every room starting with `prefix` and tell the client why; or, with `session`, close the
/// connections of that sign-in session.
#[derive(Debug)]
pub struct KickOrder {
    pub prefix: Arc<str>,
    pub reason: Arc<str>,
    pub session: Option<Arc<str>>,
}

/// What the hub queues to a connection: one pointer, so a queue slot (and its preallocated block)
/// stays small on every idle connection.
#[derive(Debug, Clone)]
pub enum Outgoing {
    Publication(Arc<Framed>),
    Kick(Arc<KickOrder>),
}

/// A connection's bounded outgoing queue, shared by the hub (which pushes) and the connection's task
/// (which drains it in batches and writes them with one flush).
///
/// A mutex around a `VecDeque` rather than a channel: an idle connection's queue holds no allocation at all
/// (a channel preallocates its first block of slots and a semaphore, about 1 KB per connection), and a
/// drain takes everything queued in one lock. The kill switch lives here too, so the hub's slow-consumer
/// verdict and the frames wake the same task through one waker.
#[derive(Debug)]
pub struct SendQueue {
    capacity: usize,
    state: std::sync::Mutex<SendQueueState>,
    waker: AtomicWaker,
}

#[derive(Debug, Default)]
struct SendQueueState {
    items: VecDeque<Outgoing>,
    /// Set once: the connection must close with this verdict; nothing more is queued.
    killed: Option<Verdict>,
    closed: bool,
}

#[derive(Debug, PartialEq, Eq)]
pub enum PushError {
    /// The queue is at capacity: the consumer is too slow.
    Full,
    /// The connection is gone or being closed.
    Closed,
}

/// What a drain found.
#[derive(Debug, PartialEq, Eq)]
pub enum Drained {
    /// This many items were moved into the batch.
    Items(usize),
    /// The connection was told to close.
    Killed(Verdict),
}

impl SendQueue {
    pub fn new(capacity: usize) -> Self {
        Self { capacity: capacity.max(1), state: Default::default(), waker: AtomicWaker::new() }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, SendQueueState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues an item without waiting.
    pub fn push(&self, item: Outgoing) -> Result<(), PushError> {
        {
            let mut st = self.state();
            if st.closed || st.killed.is_some() {
                return Err(PushError::Closed);
            }
            if st.items.len() >= self.capacity {
                return Err(PushError::Full);
            }
            st.items.push_back(item);
        }
        self.waker.wake();
        Ok(())
    }

    /// Tells the connection to close (the first verdict wins); queued items are dropped.
    pub fn kill(&self, verdict: Verdict) {
        {
            let mut st = self.state();
            if st.killed.is_some() || st.closed {
                return;
            }
            st.killed = Some(verdict);
            st.items = VecDeque::new();
        }
        self.waker.wake();
    }

    /// The connection is finished: later pushes fail, queued items are dropped.
    pub fn close(&self) {
        let mut st = self.state();
        st.closed = true;
        st.items = VecDeque::new();
    }

    /// Moves up to `max` queued items into `batch`, waiting while there are none.
    pub async fn drain(&self, batch: &mut Vec<Outgoing>, max: usize) -> Drained {
        std::future::poll_fn(|cx| {
            // Registered before looking, so a push between the look and the return can't be missed.
            self.waker.register(cx.waker());
            let mut st = self.state();
            if let Some(verdict) = st.killed {
                return Poll::Ready(Drained::Killed(verdict));
            }
            if st.items.is_empty() {
                return Poll::Pending;
            }
            let n = st.items.len().min(max);
            batch.extend(st.items.drain(..n));
            // A burst's slots aren't kept by an idle connection.
            if st.items.is_empty() && st.items.capacity() > 64 {
                st.items = VecDeque::new();
            }
            Poll::Ready(Drained::Items(n))
        })
        .await
    }

    /// Resolves once the connection has been told to close.
    pub async fn killed(&self) -> Verdict {
        std::future::poll_fn(|cx| {
            self.waker.register(cx.waker());
            match self.state().killed {
                Some(verdict) => Poll::Ready(verdict),
                None => Poll::Pending,
            }
        })
        .await
    }

    pub fn len(&self) -> usize {
        self.state().items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[derive(Clone)]
pub struct MemberHandle {
    pub conn: ConnId,
    pub queue: Arc<SendQueue>,
}

/// Control publications on a user channel start with this; they are handled by the hub, not sent.
pub const KICK_PREFIX: &str = r#"{"kind":"_kick""#;

#[derive(Default)]
pub struct HubStats {
    pub delivered: AtomicU64,
    pub slow_consumers: AtomicU64,
}

/// This node's local rooms, room → members, and the fan-out of live publications into the members'
/// send queues. It is the bus's [`BusHandler`]: built first and given to the bus, then to the [`Hub`]
/// with that bus. It never touches the bus itself, so the bus and it don't need each other at birth.
#[derive(Default)]
pub struct Fanout {
    rooms: RwLock<HashMap<Arc<str>, Vec<MemberHandle>>>,
    stats: Arc<HubStats>,
}

impl Fanout {
    fn add(&self, room: &Arc<str>, member: MemberHandle) {
        let mut rooms = self.rooms.write().unwrap_or_else(|e| e.into_inner());
        rooms.entry(room.clone()).or_default().push(member);
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

    fn has_members(&self, room: &str) -> bool {
        self.rooms.read().unwrap_or_else(|e| e.into_inner()).contains_key(room)
    }

    /// Local member count of a room.
    pub fn local_members(&self, room: &str) -> usize {
        self.rooms.read().unwrap_or_else(|e| e.into_inner()).get(room).map_or(0, Vec::len)
    }

    pub fn local_rooms(&self) -> usize {
        self.rooms.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Tells every local connection to close.
    pub fn close_all(&self, verdict: Verdict) {
        let rooms = self.rooms.read().unwrap_or_else(|e| e.into_inner());
        for m in rooms.values().flatten() {
            m.queue.kill(verdict);
        }
    }
}

impl BusHandler for Fanout {
    fn deliver(&self, room: &str, publication: Publication) {
        let rooms = self.rooms.read().unwrap_or_else(|e| e.into_inner());
        let Some((room_key, members)) = rooms.get_key_value(room) else { return };
        let message = if room.starts_with("user:") && publication.data.starts_with(KICK_PREFIX) {
            let v: serde_json::Value = serde_json::from_str(&publication.data).unwrap_or_default();
            Outgoing::Kick(Arc::new(KickOrder {
                prefix: Arc::from(v["prefix"].as_str().unwrap_or("")),
                reason: Arc::from(v["reason"].as_str().unwrap_or("kicked")),
                session: v["session"].as_str().map(Arc::from),
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
            match m.queue.push(message.clone()) {
                Ok(()) => delivered += 1,
                Err(PushError::Full) => {
                    self.stats.slow_consumers.fetch_add(1, Ordering::Relaxed);
                    m.queue.kill(Verdict::SLOW_CONSUMER);
                }
                Err(PushError::Closed) => {}
            }
        }
        self.stats.delivered.fetch_add(delivered, Ordering::Relaxed);
    }
}

/// Joins and leaves: the local rooms of a [`Fanout`], and the node's subscriptions on the bus that
/// delivers into it.
pub struct Hub {
    fanout: Arc<Fanout>,
    bus: Arc<dyn Bus>,
    /// Rooms this node is subscribed to on the bus. Changes are serialised so a subscribe and an
    /// unsubscribe of one room can't cross.
    subscriptions: Mutex<HashSet<Arc<str>>>,
    /// The fan-out's counters.
    pub stats: Arc<HubStats>,
}

impl Hub {
    /// `fanout` must be `bus`'s handler: the rooms the hub subscribes on `bus` are delivered to it.
    pub fn new(fanout: Arc<Fanout>, bus: Arc<dyn Bus>) -> Self {
        let stats = fanout.stats.clone();
        Self { fanout, bus, subscriptions: Mutex::new(HashSet::new()), stats }
    }

    pub fn bus(&self) -> &Arc<dyn Bus> {
        &self.bus
    }

    /// Adds a member and makes sure the node receives the room's live publications before returning
    /// (so history read afterwards plus live deliveries leave no gap).
    pub async fn join(&self, room: &Arc<str>, member: MemberHandle) -> Result<(), BusError> {
        let conn = member.conn;
        self.fanout.add(room, member);
        let mut subs = self.subscriptions.lock().await;
        if !subs.contains(room) {
            if let Err(e) = self.bus.subscribe(room).await {
                drop(subs);
                self.fanout.remove(room, conn);
                return Err(e);
            }
            subs.insert(room.clone());
        }
        Ok(())
    }

    /// Removes a member; unsubscribes the node when it was the room's last local member.
    pub async fn leave(&self, room: &Arc<str>, conn: ConnId) {
        if !self.fanout.remove(room, conn) {
            return;
        }
        let mut subs = self.subscriptions.lock().await;
        let still_empty = !self.fanout.has_members(room);
        if still_empty
            && subs.remove(room)
            && let Err(e) = self.bus.unsubscribe(room).await
        {
            tracing::warn!(error = %e, room = %room, "unsubscribe failed");
        }
    }

    /// Local member count of a room.
    pub fn local_members(&self, room: &str) -> usize {
        self.fanout.local_members(room)
    }

    pub fn local_rooms(&self) -> usize {
        self.fanout.local_rooms()
    }

    /// Tells every local connection to close. Each is in its user channel from its first frame on, so
    /// none is missed; a connection registering meanwhile checks the shutdown flag after registering.
    pub fn close_all(&self, verdict: Verdict) {
        self.fanout.close_all(verdict);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(offset: u64) -> Outgoing {
        Outgoing::Publication(Arc::new(Framed {
            room: Arc::from("r"),
            epoch: Arc::from("e"),
            offset,
            frame: Utf8Bytes::from_static("{}"),
        }))
    }

    fn offsets(batch: &[Outgoing]) -> Vec<u64> {
        batch
            .iter()
            .map(|o| match o {
                Outgoing::Publication(p) => p.offset,
                Outgoing::Kick(_) => 0,
            })
            .collect()
    }

    #[tokio::test]
    async fn a_send_queue_is_bounded_drains_in_order_and_wakes_its_reader() {
        let queue = Arc::new(SendQueue::new(3));
        for i in 1..=3 {
            queue.push(item(i)).unwrap();
        }
        assert_eq!(queue.push(item(4)), Err(PushError::Full));
        let mut batch = Vec::new();
        assert_eq!(queue.drain(&mut batch, 2).await, Drained::Items(2));
        assert_eq!(queue.drain(&mut batch, 64).await, Drained::Items(1));
        assert_eq!(offsets(&batch), [1, 2, 3]);
        assert!(queue.is_empty());

        // A reader waiting on an empty queue is woken by the next push.
        let reader = tokio::spawn({
            let queue = queue.clone();
            async move {
                let mut batch = Vec::new();
                let got = queue.drain(&mut batch, 64).await;
                (got, offsets(&batch))
            }
        });
        tokio::task::yield_now().await;
        queue.push(item(9)).unwrap();
        assert_eq!(reader.await.unwrap(), (Drained::Items(1), vec![9]));
    }

    #[tokio::test]
    async fn a_killed_send_queue_drops_its_backlog_and_refuses_more() {
        let queue = Arc::new(SendQueue::new(8));
        queue.push(item(1)).unwrap();
        let waiter = tokio::spawn({
            let queue = queue.clone();
            async move { queue.killed().await }
        });
        tokio::task::yield_now().await;
        queue.kill(Verdict::SLOW_CONSUMER);
        queue.kill(Verdict::SHUTTING_DOWN);
        assert_eq!(waiter.await.unwrap(), Verdict::SLOW_CONSUMER, "the first verdict wins");
        assert!(queue.is_empty());
        assert_eq!(queue.push(item(2)), Err(PushError::Closed));
        let mut batch = Vec::new();
        assert_eq!(queue.drain(&mut batch, 64).await, Drained::Killed(Verdict::SLOW_CONSUMER));

        let closed = SendQueue::new(8);
        closed.close();
        assert_eq!(closed.push(item(1)), Err(PushError::Closed));
    }
}

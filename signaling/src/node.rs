//! `Signaling`, this node's real-time layer as the application holds it: the hub and its bus, presence,
//! the gate, the limits ([`Config`]), the node's id and its shutdown flag. It publishes into rooms and
//! kicks; the sockets themselves are served by `connection`.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use tokio::sync::watch;

use crate::{
    bus::{self, Bus, BusError, Publish},
    gate::{Gate, Publisher},
    hub::{self, Fanout, Hub},
    presence::{self, PresenceStore},
    protocol::Verdict,
};

/// Limits and timings of the real-time layer.
#[derive(Debug, Clone)]
pub struct Config {
    /// Frames queued for one connection before it counts as a slow consumer and is closed.
    pub queue_capacity: usize,
    pub max_rooms: usize,
    /// Largest accepted client frame.
    pub max_message_bytes: usize,
    pub messages_per_sec: u32,
    pub burst: u32,
    pub heartbeat: Duration,
    pub auth_timeout: Duration,
    /// Publications sent to a fresh (non-recovering) join.
    pub join_history: usize,
    /// Members listed in a `joined` presence snapshot (`presence_total` always gives the full count), so a
    /// join into a very large room stays a small frame.
    pub join_presence_limit: usize,
    /// WebSocket read buffer per connection (the library default preallocates 128 KiB). Client frames are
    /// small; a larger one grows the buffer as needed.
    pub read_buffer_bytes: usize,
    pub write_buffer_bytes: usize,
    /// Bounds on each room's whiteboard (objects, bytes per object, bytes per board), kept by the bus.
    pub board: bus::BoardLimits,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            queue_capacity: 1024,
            max_rooms: 16,
            max_message_bytes: 64 * 1024,
            messages_per_sec: 50,
            burst: 100,
            heartbeat: Duration::from_secs(25),
            auth_timeout: Duration::from_secs(10),
            join_history: 50,
            join_presence_limit: 100,
            read_buffer_bytes: 256,
            write_buffer_bytes: 16 * 1024,
            board: bus::BoardLimits::default(),
        }
    }
}

impl Config {
    /// Presence entries outlive three missed heartbeats, no more.
    pub fn presence_ttl(&self) -> Duration {
        self.heartbeat * 3
    }
}

/// The real-time layer's handle; cheap to clone.
#[derive(Clone)]
pub struct Signaling {
    pub hub: Arc<Hub>,
    pub bus: Arc<dyn Bus>,
    pub presence: Arc<dyn PresenceStore>,
    pub gate: Arc<dyn Gate>,
    pub config: Arc<Config>,
    /// Unique per process; prefixes presence entries.
    pub node_id: Arc<str>,
    next_conn: Arc<AtomicU64>,
    shutdown: watch::Receiver<bool>,
    shutdown_tx: Arc<watch::Sender<bool>>,
}

impl Signaling {
    /// The layer over `hub` and its bus (see [`Hub::new`]).
    pub fn new(hub: Hub, presence: Arc<dyn PresenceStore>, gate: Arc<dyn Gate>, config: Config) -> Self {
        let (tx, rx) = watch::channel(false);
        Self {
            bus: hub.bus().clone(),
            hub: Arc::new(hub),
            presence,
            gate,
            config: Arc::new(config),
            node_id: Arc::from(bus::new_epoch()),
            next_conn: Arc::new(AtomicU64::new(1)),
            shutdown: rx,
            shutdown_tx: Arc::new(tx),
        }
    }

    /// A single-node layer on the in-process bus and presence.
    /// Must be called inside a Tokio runtime: it starts the task that frees idle rooms.
    pub fn in_process(gate: Arc<dyn Gate>, config: Config, window: bus::Window) -> Self {
        let fanout = Arc::new(Fanout::default());
        let bus = Arc::new(bus::MemoryBus::new(window, fanout.clone()));
        let hub = Hub::new(fanout, bus.clone());
        let sig = Self::new(hub, Arc::new(presence::MemoryPresence::default()), gate, config);
        // Rooms idle past the history age hold nothing recoverable: free them.
        let mut stop = sig.shutdown.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(window.ttl.max(Duration::from_secs(60)));
            loop {
                tokio::select! {
                    _ = every.tick() => { bus.sweep(); }
                    _ = stop.changed() => return,
                }
            }
        });
        sig
    }

    pub(crate) fn next_conn_id(&self) -> u64 {
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    /// Publishes application data (a JSON object with a `kind`) to a room, stored for recovery.
    pub async fn publish(&self, room: &str, data: &serde_json::Value) -> Result<u64, BusError> {
        self.bus.publish(room, &data.to_string(), Publish { store: true, board: None }).await
    }

    /// Removes `user_id`'s connections, on every node, from rooms starting with `prefix`.
    pub async fn kick(&self, user_id: &str, prefix: &str, reason: &str) -> Result<(), BusError> {
        let data = serde_json::json!({"kind": "_kick", "prefix": prefix, "reason": reason}).to_string();
        debug_assert!(data.starts_with(hub::KICK_PREFIX));
        self.bus.publish(&format!("user:{user_id}"), &data, Publish::default()).await.map(|_| ())
    }

    /// Closes `user_id`'s connections of sign-in session `session`, on every node (the session was signed out).
    pub async fn end_session(&self, user_id: &str, session: &str) -> Result<(), BusError> {
        let data = serde_json::json!({"kind": "_kick", "prefix": "", "reason": "session_revoked", "session": session})
            .to_string();
        debug_assert!(data.starts_with(hub::KICK_PREFIX));
        self.bus.publish(&format!("user:{user_id}"), &data, Publish::default()).await.map(|_| ())
    }

    /// Closes every connection of this node ("going away").
    pub fn shutdown(&self) {
        // The flag first: a connection that registers after `close_all` looked finds it set.
        self.shutdown_tx.send_replace(true);
        self.hub.close_all(Verdict::SHUTTING_DOWN);
    }

    pub(crate) fn shutting_down(&self) -> bool {
        *self.shutdown.borrow()
    }
}

impl Publisher for Signaling {
    fn publish<'a>(
        &'a self,
        room: &'a str,
        data: &'a serde_json::Value,
    ) -> futures::future::BoxFuture<'a, Result<u64, String>> {
        Box::pin(async move { Signaling::publish(self, room, data).await.map_err(|e| e.to_string()) })
    }
}

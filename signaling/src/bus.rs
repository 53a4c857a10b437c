//! The `Bus` seam: per-room streams with increasing offsets, a bounded history window for recovery,
//! the whiteboard snapshot kept in step with the stream, and fan-out to every node subscribed to a
//! room. [`MemoryBus`] is the single-node implementation; `RedisBus` (module `redis_bus`) spans nodes.
//!
//! Contract, for every implementation:
//! - `publish` with `store` assigns the next offset of the room, appends to the history window, applies
//!   a board op to the snapshot in the same atomic step, and delivers to subscribed nodes; per room,
//!   deliveries arrive in offset order. Without `store` the publication is ephemeral: offset 0, not
//!   kept, still delivered.
//! - `subscribe` returns once live deliveries for the room reach this node's handler.
//! - `history` answers what came after a position — or says it can't (epoch changed, window passed).

use std::{
    collections::{BTreeMap, HashMap, VecDeque},
    sync::{Arc, Mutex, OnceLock},
    time::{Duration, Instant},
};

use futures::future::BoxFuture;
use serde_json::value::RawValue;

use crate::protocol::{BoardObject, BoardOp, BoardSnapshot, StreamPosition};

/// A publication as it travels: its offset (0 = ephemeral) and its JSON data object.
#[derive(Debug, Clone)]
pub struct Publication {
    pub offset: u64,
    /// The room stream's epoch (empty for ephemeral publications). A change tells members that the
    /// stream restarted (its history was lost) and they should reload state.
    pub epoch: Arc<str>,
    pub data: Arc<str>,
}

#[derive(Debug, Clone)]
pub struct History {
    /// The room's position when the history was read.
    pub position: StreamPosition,
    pub publications: Vec<Publication>,
    /// For a recovery request: whether `publications` is everything after the asked position.
    pub recovered: bool,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct Publish<'a> {
    /// Keep it in the history window (and give it an offset).
    pub store: bool,
    /// Fold this op into the room's whiteboard snapshot at the publication's offset.
    pub board: Option<&'a BoardOp>,
}

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("bus unavailable: {0}")]
    Unavailable(String),
}

/// Receives live publications for rooms this node subscribed to; per room in offset order.
/// Called on the bus's delivery path: it must not block.
pub trait BusHandler: Send + Sync + 'static {
    fn deliver(&self, room: &str, publication: Publication);
}

pub trait Bus: Send + Sync + 'static {
    /// Publishes `data` (a JSON object) to `room`; returns the offset (0 when not stored).
    fn publish<'a>(&'a self, room: &'a str, data: &'a str, opts: Publish<'a>) -> BoxFuture<'a, Result<u64, BusError>>;
    fn subscribe<'a>(&'a self, room: &'a str) -> BoxFuture<'a, Result<(), BusError>>;
    fn unsubscribe<'a>(&'a self, room: &'a str) -> BoxFuture<'a, Result<(), BusError>>;
    /// With `since`: the publications after it, if recoverable. Without: the last `limit` ones.
    fn history<'a>(
        &'a self,
        room: &'a str,
        since: Option<&'a StreamPosition>,
        limit: usize,
    ) -> BoxFuture<'a, Result<History, BusError>>;
    fn board<'a>(&'a self, room: &'a str) -> BoxFuture<'a, Result<BoardSnapshot, BusError>>;
}

/// History window: at most `size` publications, none older than `ttl`.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    pub size: usize,
    pub ttl: Duration,
}

/// An epoch that differs for every process start.
pub fn new_epoch() -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    format!("{:x}", nanos ^ u128::from(std::process::id()) << 64)
}

struct Stream {
    /// Per stream, so a room swept and recreated never reuses offsets under the same epoch.
    epoch: Arc<str>,
    offset: u64,
    items: VecDeque<(Instant, Publication)>,
    board: BTreeMap<String, Box<RawValue>>,
    board_offset: u64,
    last_used: Instant,
}

impl Stream {
    fn prune(&mut self, window: Window, now: Instant) {
        while self.items.len() > window.size {
            self.items.pop_front();
        }
        while self.items.front().is_some_and(|(at, _)| now.duration_since(*at) > window.ttl) {
            self.items.pop_front();
        }
    }
}

/// Single-node bus: streams and snapshots in memory, delivery straight to the handler.
pub struct MemoryBus {
    epoch: String,
    generation: std::sync::atomic::AtomicU64,
    window: Window,
    streams: Mutex<HashMap<String, Arc<Mutex<Stream>>>>,
    handler: OnceLock<Arc<dyn BusHandler>>,
}

impl MemoryBus {
    pub fn new(window: Window) -> Self {
        Self {
            epoch: new_epoch(),
            generation: std::sync::atomic::AtomicU64::new(0),
            window,
            streams: Mutex::new(HashMap::new()),
            handler: OnceLock::new(),
        }
    }

    /// Where live publications go. Set once, before the first publish.
    pub fn set_handler(&self, handler: Arc<dyn BusHandler>) {
        let _ = self.handler.set(handler);
    }

    fn stream(&self, room: &str) -> Arc<Mutex<Stream>> {
        let mut streams = self.streams.lock().unwrap_or_else(|e| e.into_inner());
        streams
            .entry(room.to_string())
            .or_insert_with(|| {
                let generation = self.generation.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Arc::new(Mutex::new(Stream {
                    epoch: Arc::from(format!("{}-{generation}", self.epoch)),
                    offset: 0,
                    items: VecDeque::new(),
                    board: BTreeMap::new(),
                    board_offset: 0,
                    last_used: Instant::now(),
                }))
            })
            .clone()
    }

    /// Drops streams unused for longer than the window's age (their history has expired anyway) and
    /// returns how many. A dropped room comes back under a new epoch, so old positions never match it.
    pub fn sweep(&self) -> usize {
        let now = Instant::now();
        let mut streams = self.streams.lock().unwrap_or_else(|e| e.into_inner());
        let before = streams.len();
        streams.retain(|_, s| {
            let s = s.lock().unwrap_or_else(|e| e.into_inner());
            now.duration_since(s.last_used) <= self.window.ttl
        });
        before - streams.len()
    }

    pub fn rooms(&self) -> usize {
        self.streams.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

impl Bus for MemoryBus {
    fn publish<'a>(&'a self, room: &'a str, data: &'a str, opts: Publish<'a>) -> BoxFuture<'a, Result<u64, BusError>> {
        Box::pin(async move {
            let stream = self.stream(room);
            let mut s = stream.lock().unwrap_or_else(|e| e.into_inner());
            let now = Instant::now();
            s.last_used = now;
            let publication = if opts.store {
                s.offset += 1;
                let p = Publication { offset: s.offset, epoch: s.epoch.clone(), data: Arc::from(data) };
                s.items.push_back((now, p.clone()));
                s.prune(self.window, now);
                if let Some(op) = opts.board {
                    match op {
                        BoardOp::Put { key, object } => {
                            let raw = serde_json::value::to_raw_value(object).expect("JSON values serialize");
                            s.board.insert(key.clone(), raw);
                        }
                        BoardOp::Delete { key } => {
                            s.board.remove(key);
                        }
                        BoardOp::Clear => s.board.clear(),
                    }
                    s.board_offset = p.offset;
                }
                p
            } else {
                Publication { offset: 0, epoch: Arc::from(""), data: Arc::from(data) }
            };
            // Delivered under the stream lock, so concurrent publishers can't reorder a room.
            if let Some(h) = self.handler.get() {
                h.deliver(room, publication.clone());
            }
            Ok(publication.offset)
        })
    }

    fn subscribe<'a>(&'a self, _room: &'a str) -> BoxFuture<'a, Result<(), BusError>> {
        Box::pin(async { Ok(()) })
    }

    fn unsubscribe<'a>(&'a self, _room: &'a str) -> BoxFuture<'a, Result<(), BusError>> {
        Box::pin(async { Ok(()) })
    }

    fn history<'a>(
        &'a self,
        room: &'a str,
        since: Option<&'a StreamPosition>,
        limit: usize,
    ) -> BoxFuture<'a, Result<History, BusError>> {
        Box::pin(async move {
            let stream = self.stream(room);
            let mut s = stream.lock().unwrap_or_else(|e| e.into_inner());
            let now = Instant::now();
            s.last_used = now;
            s.prune(self.window, now);
            let position = StreamPosition { epoch: s.epoch.to_string(), offset: s.offset };
            let (publications, recovered) = match since {
                Some(p) => {
                    let oldest = s.items.front().map_or(s.offset + 1, |(_, p)| p.offset);
                    let ok = *p.epoch == *s.epoch && p.offset <= s.offset && p.offset + 1 >= oldest;
                    if ok {
                        (s.items.iter().filter(|(_, x)| x.offset > p.offset).map(|(_, x)| x.clone()).collect(), true)
                    } else {
                        (Vec::new(), false)
                    }
                }
                None => {
                    let skip = s.items.len().saturating_sub(limit);
                    (s.items.iter().skip(skip).map(|(_, x)| x.clone()).collect(), false)
                }
            };
            Ok(History { position, publications, recovered })
        })
    }

    fn board<'a>(&'a self, room: &'a str) -> BoxFuture<'a, Result<BoardSnapshot, BusError>> {
        Box::pin(async move {
            let stream = self.stream(room);
            let s = stream.lock().unwrap_or_else(|e| e.into_inner());
            Ok(BoardSnapshot {
                offset: s.board_offset,
                objects: s.board.iter().map(|(k, v)| BoardObject { key: k.clone(), object: v.clone() }).collect(),
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Collect(Mutex<Vec<(String, u64)>>);
    impl BusHandler for Collect {
        fn deliver(&self, room: &str, p: Publication) {
            self.0.lock().unwrap().push((room.to_string(), p.offset));
        }
    }

    fn bus(size: usize, ttl: Duration) -> (MemoryBus, Arc<Collect>) {
        let bus = MemoryBus::new(Window { size, ttl });
        let c = Arc::new(Collect(Mutex::new(Vec::new())));
        bus.set_handler(c.clone());
        (bus, c)
    }

    #[tokio::test]
    async fn offsets_history_and_recovery() {
        let (bus, seen) = bus(3, Duration::from_secs(60));
        for i in 0..5 {
            let o = bus.publish("r", &format!("{{\"n\":{i}}}"), Publish { store: true, board: None }).await.unwrap();
            assert_eq!(o, i + 1);
        }
        assert_eq!(bus.publish("r", "{}", Publish::default()).await.unwrap(), 0, "ephemeral");
        assert_eq!(seen.0.lock().unwrap().len(), 6);
        let h = bus.history("r", None, 2).await.unwrap();
        assert_eq!(h.position.offset, 5);
        assert_eq!(h.publications.iter().map(|p| p.offset).collect::<Vec<_>>(), [4, 5]);
        let epoch = h.position.epoch.clone();
        let from = |offset| StreamPosition { epoch: epoch.clone(), offset };
        // Window holds 3..=5: recovering from 2 works, from 1 doesn't.
        let r = bus.history("r", Some(&from(2)), 100).await.unwrap();
        assert!(r.recovered);
        assert_eq!(r.publications.iter().map(|p| p.offset).collect::<Vec<_>>(), [3, 4, 5]);
        assert!(!bus.history("r", Some(&from(1)), 100).await.unwrap().recovered);
        assert!(bus.history("r", Some(&from(5)), 100).await.unwrap().recovered);
        assert!(!bus.history("r", Some(&from(9)), 100).await.unwrap().recovered, "from the future");
        let other = StreamPosition { epoch: "other".into(), offset: 4 };
        assert!(!bus.history("r", Some(&other), 100).await.unwrap().recovered, "another epoch");
    }

    #[tokio::test]
    async fn board_snapshot_follows_ops() {
        let (bus, _) = bus(10, Duration::from_secs(60));
        let obj = |s: &str| serde_json::from_str::<serde_json::Value>(s).unwrap();
        let put = BoardOp::Put { key: "a".into(), object: obj("{\"x\":1}") };
        bus.publish("r", "{}", Publish { store: true, board: Some(&put) }).await.unwrap();
        let put_b = BoardOp::Put { key: "b".into(), object: obj("{\"x\":2}") };
        bus.publish("r", "{}", Publish { store: true, board: Some(&put_b) }).await.unwrap();
        bus.publish("r", "{}", Publish { store: true, board: Some(&BoardOp::Delete { key: "a".into() }) })
            .await
            .unwrap();
        bus.publish("r", "{\"chat\":1}", Publish { store: true, board: None }).await.unwrap();
        let snap = bus.board("r").await.unwrap();
        assert_eq!(snap.offset, 3);
        assert_eq!(snap.objects.iter().map(|o| o.key.as_str()).collect::<Vec<_>>(), ["b"]);
    }

    #[tokio::test]
    async fn age_limits_the_window() {
        let (bus, _) = bus(10, Duration::from_millis(30));
        bus.publish("r", "{}", Publish { store: true, board: None }).await.unwrap();
        let epoch = bus.history("r", None, 1).await.unwrap().position.epoch;
        tokio::time::sleep(Duration::from_millis(60)).await;
        let h = bus.history("r", Some(&StreamPosition { epoch, offset: 0 }), 10).await.unwrap();
        assert!(!h.recovered, "the only publication expired");
    }
}

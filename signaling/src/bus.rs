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
//! - A board op comes with its [`BoardLimits`]; one that would break them is refused with
//!   [`BusError::Board`] in the same atomic step, before anything else: no offset, no history entry, no
//!   delivery, no change to the board. `delete` and `clear` are never refused, nor a `put` that doesn't
//!   grow the board.

use std::{
    collections::{BTreeMap, HashMap, VecDeque},
    sync::{Arc, Mutex},
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
    /// Fold this op into the room's whiteboard snapshot at the publication's offset (only when stored).
    pub board: Option<BoardWrite<'a>>,
}

impl<'a> Publish<'a> {
    /// A stored publication that applies `op` to the room's board, within `limits`.
    pub fn board(op: &'a BoardOp, limits: BoardLimits) -> Self {
        Publish { store: true, board: Some(BoardWrite { op, limits }) }
    }
}

/// A board op and the limits it must keep.
#[derive(Debug, Clone, Copy)]
pub struct BoardWrite<'a> {
    pub op: &'a BoardOp,
    pub limits: BoardLimits,
}

/// Bounds on one room's whiteboard. Sizes are bytes of JSON text as stored: an object's serialization
/// (the server's, not the client's frame), and for the board, its keys plus its objects.
///
/// Every stored board op is also a publication in the room's history window, so a room holds at most
/// `max_bytes` of board plus `history_size` publications of at most about `max_object_bytes` each (the
/// op with its key and sender around the object); see `docs/protocol.md`, "Limits and settings".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BoardLimits {
    /// Largest object. The default, 16 KiB, holds the web client's longest stroke (1,500 points, about
    /// 12 KB) with room to spare; shapes and text are far smaller.
    pub max_object_bytes: usize,
    /// Objects on one board: 2,000 strokes is a very busy lesson (the client offers `clear`).
    pub max_objects: usize,
    /// Keys plus objects of one board: 2 MiB, i.e. 2,000 objects of about 1 KiB (a typical stroke of 100
    /// points) or 128 of the largest. It is also what a join's snapshot costs to send, to every joiner.
    pub max_bytes: usize,
}

impl Default for BoardLimits {
    fn default() -> Self {
        Self { max_object_bytes: 16 * 1024, max_objects: 2_000, max_bytes: 2 * 1024 * 1024 }
    }
}

impl BoardLimits {
    /// An object of `size` bytes may go on a board.
    pub fn check_object(&self, size: usize) -> Result<(), BoardRefused> {
        if size > self.max_object_bytes {
            return Err(BoardRefused::ObjectTooLarge { size, limit: self.max_object_bytes });
        }
        Ok(())
    }

    /// Admits a `put` of `entry` bytes (key and object) on a board of `objects` objects and `bytes`
    /// bytes, where `replaced` is the entry under the same key, if any; returns the board's bytes after
    /// it. A replacement counts the difference, and a put that doesn't grow the board always goes
    /// through (so a board over limits that were lowered can still be edited down). `RedisBus`'s publish
    /// script applies the same rule.
    pub fn admit_put(
        &self,
        objects: usize,
        bytes: usize,
        replaced: Option<usize>,
        entry: usize,
    ) -> Result<usize, BoardRefused> {
        if replaced.is_none() && objects >= self.max_objects {
            return Err(BoardRefused::TooManyObjects { limit: self.max_objects });
        }
        let after = (bytes + entry).saturating_sub(replaced.unwrap_or(0));
        if after > self.max_bytes && after > bytes {
            return Err(BoardRefused::TooManyBytes { limit: self.max_bytes });
        }
        Ok(after)
    }
}

/// Why a board op was refused. Nothing was published, stored or changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BoardRefused {
    #[error("a board object is at most {limit} bytes of JSON; this one is {size}")]
    ObjectTooLarge { size: usize, limit: usize },
    #[error("the board is full: it holds at most {limit} objects; delete some or clear the board")]
    TooManyObjects { limit: usize },
    #[error("the board is full: it holds at most {limit} bytes; delete objects or clear the board")]
    TooManyBytes { limit: usize },
}

impl BoardRefused {
    /// The protocol's error code.
    pub fn code(&self) -> &'static str {
        match self {
            BoardRefused::ObjectTooLarge { .. } => "object_too_large",
            BoardRefused::TooManyObjects { .. } | BoardRefused::TooManyBytes { .. } => "board_full",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("bus unavailable: {0}")]
    Unavailable(String),
    /// A board op that would break its limits; the caller's fault, not the bus's.
    #[error(transparent)]
    Board(#[from] BoardRefused),
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
    /// Keys plus objects of `board`, as [`BoardLimits`] counts them.
    board_bytes: usize,
    board_offset: u64,
    last_used: Instant,
}

impl Stream {
    /// Checks a board op against `limits`; returns the board's bytes after it.
    fn board_after(&self, op: &BoardEdit<'_>, limits: BoardLimits) -> Result<usize, BoardRefused> {
        let entry = |key: &str, object: &RawValue| key.len() + object.get().len();
        match op {
            BoardEdit::Put { key, object } => {
                let replaced = self.board.get(*key).map(|old| entry(key, old));
                limits.admit_put(self.board.len(), self.board_bytes, replaced, entry(key, object))
            }
            BoardEdit::Delete { key } => Ok(self.board_bytes - self.board.get(*key).map_or(0, |old| entry(key, old))),
            BoardEdit::Clear => Ok(0),
        }
    }

    fn prune(&mut self, window: Window, now: Instant) {
        while self.items.len() > window.size {
            self.items.pop_front();
        }
        while self.items.front().is_some_and(|(at, _)| now.duration_since(*at) > window.ttl) {
            self.items.pop_front();
        }
    }
}

/// A board op with a put's object serialized as it will be stored.
enum BoardEdit<'a> {
    Put { key: &'a str, object: Box<RawValue> },
    Delete { key: &'a str },
    Clear,
}

/// Single-node bus: streams and snapshots in memory, delivery straight to the handler.
pub struct MemoryBus {
    epoch: String,
    generation: std::sync::atomic::AtomicU64,
    window: Window,
    streams: Mutex<HashMap<String, Arc<Mutex<Stream>>>>,
    handler: Arc<dyn BusHandler>,
}

impl MemoryBus {
    /// A bus that delivers live publications to `handler`.
    pub fn new(window: Window, handler: Arc<dyn BusHandler>) -> Self {
        Self {
            epoch: new_epoch(),
            generation: std::sync::atomic::AtomicU64::new(0),
            window,
            streams: Mutex::new(HashMap::new()),
            handler,
        }
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
                    board_bytes: 0,
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
            // Serialized before the lock; an object too large is refused before the room is even looked up.
            let edit = match opts.board.filter(|_| opts.store) {
                None => None,
                Some(BoardWrite { op, limits }) => Some((
                    match op {
                        BoardOp::Put { key, object } => {
                            let object = serde_json::value::to_raw_value(object).expect("JSON values serialize");
                            limits.check_object(object.get().len())?;
                            BoardEdit::Put { key, object }
                        }
                        BoardOp::Delete { key } => BoardEdit::Delete { key },
                        BoardOp::Clear => BoardEdit::Clear,
                    },
                    limits,
                )),
            };
            let stream = self.stream(room);
            let mut s = stream.lock().unwrap_or_else(|e| e.into_inner());
            // Checked before anything changes: a refused op takes no offset and leaves no trace.
            let edit = match edit {
                Some((edit, limits)) => Some((s.board_after(&edit, limits)?, edit)),
                None => None,
            };
            let now = Instant::now();
            s.last_used = now;
            let publication = if opts.store {
                s.offset += 1;
                let p = Publication { offset: s.offset, epoch: s.epoch.clone(), data: Arc::from(data) };
                s.items.push_back((now, p.clone()));
                s.prune(self.window, now);
                if let Some((bytes, edit)) = edit {
                    match edit {
                        BoardEdit::Put { key, object } => {
                            s.board.insert(key.to_string(), object);
                        }
                        BoardEdit::Delete { key } => {
                            s.board.remove(key);
                        }
                        BoardEdit::Clear => s.board.clear(),
                    }
                    s.board_bytes = bytes;
                    s.board_offset = p.offset;
                }
                p
            } else {
                Publication { offset: 0, epoch: Arc::from(""), data: Arc::from(data) }
            };
            // Delivered under the stream lock, so concurrent publishers can't reorder a room.
            self.handler.deliver(room, publication.clone());
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
        let c = Arc::new(Collect(Mutex::new(Vec::new())));
        (MemoryBus::new(Window { size, ttl }, c.clone()), c)
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
        let limits = BoardLimits::default();
        let put = BoardOp::Put { key: "a".into(), object: obj("{\"x\":1}") };
        bus.publish("r", "{}", Publish::board(&put, limits)).await.unwrap();
        let put_b = BoardOp::Put { key: "b".into(), object: obj("{\"x\":2}") };
        bus.publish("r", "{}", Publish::board(&put_b, limits)).await.unwrap();
        bus.publish("r", "{}", Publish::board(&BoardOp::Delete { key: "a".into() }, limits)).await.unwrap();
        bus.publish("r", "{\"chat\":1}", Publish { store: true, board: None }).await.unwrap();
        let snap = bus.board("r").await.unwrap();
        assert_eq!(snap.offset, 3);
        assert_eq!(snap.objects.iter().map(|o| o.key.as_str()).collect::<Vec<_>>(), ["b"]);
    }

    /// A JSON object whose text is exactly `n` bytes (n >= 8).
    fn sized(n: usize) -> serde_json::Value {
        serde_json::json!({ "p": "x".repeat(n - 8) })
    }

    fn put(key: &str, n: usize) -> BoardOp {
        BoardOp::Put { key: key.into(), object: sized(n) }
    }

    fn board_bytes(snap: &BoardSnapshot) -> usize {
        snap.objects.iter().map(|o| o.key.len() + o.object.get().len()).sum()
    }

    #[test]
    fn the_admission_rule() {
        let l = BoardLimits { max_object_bytes: 100, max_objects: 2, max_bytes: 50 };
        assert_eq!(l.check_object(100), Ok(()));
        assert_eq!(l.check_object(101), Err(BoardRefused::ObjectTooLarge { size: 101, limit: 100 }));
        assert_eq!(l.admit_put(0, 0, None, 50), Ok(50), "exactly full");
        assert_eq!(l.admit_put(0, 0, None, 51), Err(BoardRefused::TooManyBytes { limit: 50 }));
        assert_eq!(l.admit_put(2, 10, None, 1), Err(BoardRefused::TooManyObjects { limit: 2 }));
        assert_eq!(l.admit_put(2, 40, Some(20), 30), Ok(50), "a replacement counts the difference");
        assert_eq!(l.admit_put(2, 40, Some(20), 31), Err(BoardRefused::TooManyBytes { limit: 50 }));
        assert_eq!(l.admit_put(2, 80, Some(30), 20), Ok(70), "over lowered limits, shrinking still works");
        assert_eq!(l.admit_put(2, 80, Some(30), 30), Ok(80), "...and so does staying the same size");
        assert_eq!(BoardRefused::ObjectTooLarge { size: 1, limit: 0 }.code(), "object_too_large");
        assert_eq!(BoardRefused::TooManyObjects { limit: 0 }.code(), "board_full");
        assert_eq!(BoardRefused::TooManyBytes { limit: 0 }.code(), "board_full");
    }

    #[tokio::test]
    async fn board_limits_refuse_without_a_trace() {
        let (bus, seen) = bus(100, Duration::from_secs(60));
        // Entries are key (1 byte) + object: three of 20 fill the 60 bytes.
        let limits = BoardLimits { max_object_bytes: 30, max_objects: 4, max_bytes: 60 };
        for (i, k) in ["a", "b", "c"].into_iter().enumerate() {
            assert_eq!(bus.publish("r", "{}", Publish::board(&put(k, 19), limits)).await.unwrap(), i as u64 + 1);
        }
        let before = bus.board("r").await.unwrap();
        assert_eq!((before.objects.len(), board_bytes(&before), before.offset), (3, 60, 3));

        let refused = |r: Result<u64, BusError>| match r {
            Err(BusError::Board(b)) => b,
            other => panic!("expected a refusal, got {other:?}"),
        };
        let r = refused(bus.publish("r", "{}", Publish::board(&put("d", 8), limits)).await);
        assert_eq!(r, BoardRefused::TooManyBytes { limit: 60 });
        let r = refused(bus.publish("r", "{}", Publish::board(&put("a", 20), limits)).await);
        assert_eq!(r, BoardRefused::TooManyBytes { limit: 60 }, "a replacement that grows the full board");
        let r = refused(bus.publish("r", "{}", Publish::board(&put("d", 31), limits)).await);
        assert_eq!(r, BoardRefused::ObjectTooLarge { size: 31, limit: 30 });
        assert_eq!(r.to_string(), "a board object is at most 30 bytes of JSON; this one is 31");
        // Nothing of the refused ops: no offset taken, no history, no delivery, the same board.
        assert_eq!(seen.0.lock().unwrap().len(), 3);
        let h = bus.history("r", None, 100).await.unwrap();
        assert_eq!((h.position.offset, h.publications.len()), (3, 3));
        let after = bus.board("r").await.unwrap();
        assert_eq!((after.objects.len(), board_bytes(&after), after.offset), (3, 60, 3));

        // A smaller replacement makes room, and the room is counted exactly.
        assert_eq!(bus.publish("r", "{}", Publish::board(&put("a", 9), limits)).await.unwrap(), 4);
        assert_eq!(bus.publish("r", "{}", Publish::board(&put("d", 9), limits)).await.unwrap(), 5);
        let r = refused(bus.publish("r", "{}", Publish::board(&put("e", 8), limits)).await);
        assert_eq!(r, BoardRefused::TooManyObjects { limit: 4 });
        assert_eq!(r.code(), "board_full");
        // Deletes free bytes and a place; replacements count the difference.
        bus.publish("r", "{}", Publish::board(&BoardOp::Delete { key: "b".into() }, limits)).await.unwrap();
        bus.publish("r", "{}", Publish::board(&BoardOp::Delete { key: "missing".into() }, limits)).await.unwrap();
        bus.publish("r", "{}", Publish::board(&put("e", 8), limits)).await.unwrap();
        let r = refused(bus.publish("r", "{}", Publish::board(&put("f", 8), limits)).await);
        assert_eq!(r, BoardRefused::TooManyObjects { limit: 4 });
        bus.publish("r", "{}", Publish::board(&put("c", 29), limits)).await.unwrap();
        let snap = bus.board("r").await.unwrap();
        assert_eq!((snap.objects.len(), board_bytes(&snap)), (4, 59));
        let r = refused(bus.publish("r", "{}", Publish::board(&put("a", 11), limits)).await);
        assert_eq!(r, BoardRefused::TooManyBytes { limit: 60 });
        // Clear empties the count too.
        bus.publish("r", "{}", Publish::board(&BoardOp::Clear, limits)).await.unwrap();
        for k in ["a", "b", "c"] {
            bus.publish("r", "{}", Publish::board(&put(k, 19), limits)).await.unwrap();
        }
        let snap = bus.board("r").await.unwrap();
        assert_eq!((snap.objects.len(), board_bytes(&snap)), (3, 60));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_writers_stay_within_the_limits() {
        let (bus, seen) = bus(10_000, Duration::from_secs(60));
        let bus = Arc::new(bus);
        let limits = BoardLimits { max_object_bytes: 1000, max_objects: 1000, max_bytes: 10_000 };
        let writers: Vec<_> = (0..8)
            .map(|w| {
                let bus = bus.clone();
                tokio::spawn(async move {
                    let mut accepted = 0;
                    for i in 0..100 {
                        // Keys of 6 bytes (w, i): entries of 100 bytes, so exactly 100 fit.
                        let op = put(&format!("k{w}-{i:03}"), 94);
                        match bus.publish("r", "{}", Publish::board(&op, limits)).await {
                            Ok(_) => accepted += 1,
                            Err(BusError::Board(BoardRefused::TooManyBytes { .. })) => {}
                            Err(e) => panic!("{e}"),
                        }
                    }
                    accepted
                })
            })
            .collect();
        let mut accepted = 0;
        for w in writers {
            accepted += w.await.unwrap();
        }
        let snap = bus.board("r").await.unwrap();
        assert_eq!(accepted, 100);
        assert_eq!((snap.objects.len(), board_bytes(&snap), snap.offset), (100, 10_000, 100));
        assert_eq!(seen.0.lock().unwrap().len(), 100, "only accepted ops were delivered");
    }

    #[tokio::test]
    async fn a_sweep_frees_idle_rooms_and_their_boards() {
        let (bus, _) = bus(10, Duration::from_millis(30));
        let limits = BoardLimits::default();
        bus.publish("r", "{}", Publish::board(&put("a", 1000), limits)).await.unwrap();
        let epoch = bus.history("r", None, 1).await.unwrap().position.epoch;
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert_eq!((bus.sweep(), bus.rooms()), (1, 0));
        let snap = bus.board("r").await.unwrap();
        assert!(snap.objects.is_empty() && snap.offset == 0, "a new, empty room");
        assert_ne!(bus.history("r", None, 1).await.unwrap().position.epoch, epoch);
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

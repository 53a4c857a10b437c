//! `RedisBus` and `RedisPresence`: the `Bus` and `PresenceStore` seams on Redis, so rooms span nodes.
//! Modelled on centrifuge's `broker_redis.go` / `presence_redis.go`.
//!
//! Layout. Every key of a room carries the room id verbatim in a hash tag, so a room lives in one
//! cluster slot and a Lua script may touch all of its keys:
//! - `lc:{room}:meta` — HASH `e` (epoch), `o` (last offset), `b` (offset of the last board op), `bb`
//!   (the board's bytes, keys plus objects, kept by the publish script so a limit check is O(1); a board
//!   written before it was kept is measured once, at its next `put`).
//!   Created with a fresh random epoch by the first publish or history read that finds it missing;
//!   whoever creates it also deletes the stream and board left without it, so offsets never restart
//!   under an old epoch and old positions are never "recovered" against new data. TTL [`ROOM_TTL`]
//!   (at least the window's age), refreshed by every publish and history read.
//! - `lc:{room}:stream` — STREAM of stored publications, fields `o` (offset) and `d` (data), trimmed
//!   `MAXLEN ~ size`; readers honour the exact size and age, using the entry id's server time. TTL
//!   the window's age: an idle room's history disappears with its last item.
//! - `lc:{room}:board` — HASH board key → object JSON; same TTL as the meta, which holds its offset.
//! - `lc:{room}:ch` — the pub/sub channel; payload `"<offset> <epoch> <data>"` (offset 0, epoch `-`
//!   for ephemeral publications).
//! - `lc:{room}:presence` (HASH conn → entry JSON) and `lc:{room}:presence:exp` (ZSET conn → expiry
//!   in server milliseconds), with an index by user kept in step by the presence scripts:
//!   `…:presence:users` (HASH user → devices), `…:presence:order` (ZSET of user ids, lexical) and
//!   `…:presence:meta` (HASH user → first entry). All five expire with the longest-lived entry.
//!
//! Every stored publish is one Lua script (epoch, board limits, offset, stream append, board op,
//! PUBLISH), so the stream, the snapshot and the channel agree on offsets, and the channel carries them
//! in order; a board op over its limits is refused by the script before it writes anything, so limits
//! hold however many nodes write to a room at once.
//!
//! Failure behaviour. Commands go through a `ConnectionManager` that reconnects on its own; while
//! Redis is unreachable `publish`, `history`, `board` and presence calls fail fast with
//! [`BusError::Unavailable`]. Each node keeps ONE pub/sub connection, subscribed only to the rooms
//! it has members in; a supervisor task pings it, and when it drops, reconnects with capped
//! exponential backoff and re-subscribes every current room (`subscribe` is never needed again).
//! Publications made while this node's pub/sub connection was down are not delivered live; after
//! re-subscribing the node reads what it missed from each room's stream (after the last offset it
//! delivered) and delivers it in order before anything newer, so members see no gap — unless the
//! gap fell out of the window, or Redis lost the room (restart without persistence, eviction):
//! then the epoch changes and clients find out when they next recover (reload state). A publish
//! attempted while Redis is down is not lost silently: it fails with `Unavailable` — though one that
//! timed out ([`IO_TIMEOUT`]) may still have been applied, so a retry can duplicate it.

use std::{
    collections::{HashMap, HashSet},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use futures::{StreamExt, future::BoxFuture};
use redis::{
    AsyncCommands, Client, Script,
    aio::{ConnectionManager, ConnectionManagerConfig, PubSubSink, PubSubStream},
};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::{
    bus::{BoardRefused, Bus, BusError, BusHandler, History, Publication, Publish, Window, new_epoch},
    presence::{PresenceEntry, PresenceStore, PresenceSummary},
    protocol::{BoardObject, BoardOp, BoardSnapshot, Member, StreamPosition},
};

/// How long a room's epoch, offset and whiteboard outlive its last publish or history read. Longer
/// than the history window, so a quiet room keeps its board and a client whose position is current
/// still recovers (with nothing to replay) instead of reloading.
pub const ROOM_TTL: Duration = Duration::from_secs(24 * 3600);

/// Each Redis round trip gives up after this long; so does a (re)connection attempt.
pub const IO_TIMEOUT: Duration = Duration::from_secs(3);
/// The pub/sub connection is pinged this often, so a half-open socket is noticed.
const PING_EVERY: Duration = Duration::from_secs(5);
const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

fn unavailable(e: impl std::fmt::Display) -> BusError {
    BusError::Unavailable(e.to_string())
}

fn meta_key(room: &str) -> String {
    format!("lc:{{{room}}}:meta")
}
fn stream_key(room: &str) -> String {
    format!("lc:{{{room}}}:stream")
}
fn board_key(room: &str) -> String {
    format!("lc:{{{room}}}:board")
}
fn channel(room: &str) -> String {
    format!("lc:{{{room}}}:ch")
}
fn room_of_channel(channel: &str) -> Option<&str> {
    channel.strip_prefix("lc:{")?.strip_suffix("}:ch")
}
/// A room's presence keys, in the order the presence scripts take them: entries (connection → entry
/// JSON), expiries (sorted set of connections by expiry), and the index by user: device counts (user →
/// count), users in id order (sorted set, all scores 0), and each user's first entry (user → entry JSON).
fn presence_keys(room: &str) -> [String; 5] {
    ["", ":exp", ":users", ":order", ":meta"].map(|suffix| format!("lc:{{{room}}}:presence{suffix}"))
}

/// Makes sure the room's meta exists (new epoch, stale stream and board dropped) and sets `epoch`.
/// KEYS: meta, stream, board. ARGV[1]: the epoch to use if the room is new.
const ENSURE_META: &str = r#"
local epoch = redis.call('HGET', KEYS[1], 'e')
if not epoch then
  epoch = ARGV[1]
  redis.call('DEL', KEYS[2], KEYS[3])
  redis.call('HSET', KEYS[1], 'e', epoch, 'o', 0, 'b', 0, 'bb', 0)
end
"#;

/// KEYS: meta, stream, board. ARGV: new epoch, data, size, stream ttl ms, room ttl ms, channel,
/// board op (`''`, `put`, `del`, `clear`), board key, board object, max objects, max board bytes.
/// Returns the offset, or, refusing a `put` before writing anything, -1 (too many objects) or -2 (too many
/// bytes): the rule of `BoardLimits::admit_put`. The object's own size is checked by the caller.
const PUBLISH_LUA: &str = r#"
local op = ARGV[7]
local bytes = nil
if op == 'put' then
  local total = 0
  if redis.call('EXISTS', KEYS[3]) == 1 then
    total = tonumber(redis.call('HGET', KEYS[1], 'bb') or '-1')
    if total < 0 then
      total = 0
      for _, s in ipairs(redis.call('HGETALL', KEYS[3])) do total = total + string.len(s) end
    end
  end
  -- An object's JSON is never empty: a length of 0 means there is no such key.
  local old = redis.call('HSTRLEN', KEYS[3], ARGV[8])
  if old == 0 and redis.call('HLEN', KEYS[3]) >= tonumber(ARGV[10]) then
    return -1
  end
  bytes = total + string.len(ARGV[8]) + string.len(ARGV[9])
  if old > 0 then bytes = bytes - string.len(ARGV[8]) - old end
  if bytes > tonumber(ARGV[11]) and bytes > total then
    return -2
  end
elseif op == 'del' then
  local old = redis.call('HSTRLEN', KEYS[3], ARGV[8])
  local total = redis.call('HGET', KEYS[1], 'bb')
  if old > 0 and total then bytes = math.max(tonumber(total) - string.len(ARGV[8]) - old, 0) end
elseif op == 'clear' then
  bytes = 0
end
local offset = redis.call('HINCRBY', KEYS[1], 'o', 1)
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*', 'o', offset, 'd', ARGV[2])
redis.call('PEXPIRE', KEYS[2], ARGV[4])
if op == 'put' then
  redis.call('HSET', KEYS[3], ARGV[8], ARGV[9])
elseif op == 'del' then
  redis.call('HDEL', KEYS[3], ARGV[8])
elseif op == 'clear' then
  redis.call('DEL', KEYS[3])
end
if op ~= '' then
  redis.call('HSET', KEYS[1], 'b', offset)
end
if bytes then
  redis.call('HSET', KEYS[1], 'bb', bytes)
end
redis.call('PEXPIRE', KEYS[1], ARGV[5])
redis.call('PEXPIRE', KEYS[3], ARGV[5])
redis.call('PUBLISH', ARGV[6], offset .. ' ' .. epoch .. ' ' .. ARGV[2])
return offset
"#;

/// KEYS: meta, stream, board. ARGV: new epoch, window size, window age ms, room ttl ms, since offset
/// (`''` for none), limit, since epoch. Returns {epoch, offset, recovered (0/1), {{offset, data}...}} oldest first.
const HISTORY_LUA: &str = r#"
redis.call('PEXPIRE', KEYS[1], ARGV[4])
redis.call('PEXPIRE', KEYS[3], ARGV[4])
local top = tonumber(redis.call('HGET', KEYS[1], 'o'))
local t = redis.call('TIME')
local min_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) - tonumber(ARGV[3])
if min_ms < 0 then min_ms = 0 end
local min_id = string.format('%.0f', min_ms)
local size = tonumber(ARGV[2])
local want
local recovered = 0
if ARGV[5] ~= '' then
  local since = tonumber(ARGV[5])
  if ARGV[7] ~= epoch or since > top then
    return {epoch, top, 0, {}}
  end
  want = top - since
  if want == 0 then
    return {epoch, top, 1, {}}
  end
  if want > size then
    return {epoch, top, 0, {}}
  end
else
  want = math.min(tonumber(ARGV[6]), size)
  if want == 0 then
    return {epoch, top, 0, {}}
  end
end
local rows = redis.call('XREVRANGE', KEYS[2], '+', min_id, 'COUNT', want)
local out = {}
for i = #rows, 1, -1 do
  local f = rows[i][2]
  local o, d
  for j = 1, #f, 2 do
    if f[j] == 'o' then o = f[j + 1] elseif f[j] == 'd' then d = f[j + 1] end
  end
  out[#out + 1] = {o, d}
end
if ARGV[5] ~= '' then
  -- Everything after `since` must still be there: exactly `want` entries, the first one since + 1.
  if #out ~= want or tonumber(out[1][1]) ~= tonumber(ARGV[5]) + 1 then
    return {epoch, top, 0, {}}
  end
  recovered = 1
end
return {epoch, top, recovered, out}
"#;

/// KEYS: meta, board. Returns {board offset, {key, object, ...}}.
const BOARD_LUA: &str = r#"
local b = redis.call('HGET', KEYS[1], 'b')
if not b then
  return {0, {}}
end
return {tonumber(b), redis.call('HGETALL', KEYS[2])}
"#;

/// The channel's payload, parsed: offset, epoch, data.
fn parse_payload(payload: &[u8]) -> Option<(u64, &str, &str)> {
    let s = std::str::from_utf8(payload).ok()?;
    let (offset, rest) = s.split_once(' ')?;
    let (epoch, data) = rest.split_once(' ')?;
    Some((offset.parse().ok()?, epoch, data))
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

async fn io<T>(f: impl Future<Output = redis::RedisResult<T>>) -> Result<T, BusError> {
    match tokio::time::timeout(IO_TIMEOUT, f).await {
        Ok(r) => r.map_err(unavailable),
        Err(_) => Err(BusError::Unavailable("redis timed out".into())),
    }
}

async fn command_connection(client: &Client) -> Result<ConnectionManager, BusError> {
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(IO_TIMEOUT))
        .set_response_timeout(Some(IO_TIMEOUT))
        .set_number_of_retries(1)
        .set_min_delay(BACKOFF_MIN)
        .set_max_delay(BACKOFF_MAX);
    io(client.get_connection_manager_with_config(config)).await
}

async fn pubsub_connection(client: &Client) -> Result<(PubSubSink, PubSubStream), BusError> {
    Ok(io(client.get_async_pubsub()).await?.split())
}

/// The pub/sub side: the rooms this node wants and the live connection's sink, changed together
/// under one async lock so a reconnect's re-subscription and a concurrent `subscribe` can't miss
/// each other.
struct Subscriptions {
    rooms: HashSet<String>,
    sink: Option<PubSubSink>,
}

struct Inner {
    client: Client,
    conn: ConnectionManager,
    window: Window,
    node_id: String,
    epochs: AtomicU64,
    handler: Arc<dyn BusHandler>,
    subs: tokio::sync::Mutex<Subscriptions>,
    /// Every subscribed room, with the last stored publication delivered here: (epoch, offset). Lets
    /// the delivery task drop strays of unsubscribed rooms and duplicates, and fill gaps from the
    /// stream after a reconnect.
    delivered: Mutex<HashMap<String, Option<(String, u64)>>>,
    publish: Script,
    history: Script,
    board: Script,
}

/// The multi-node bus on Redis. See the module doc for keys and failure behaviour.
pub struct RedisBus {
    inner: Arc<Inner>,
    supervisor: tokio::task::JoinHandle<()>,
}

impl Drop for RedisBus {
    fn drop(&mut self) {
        self.supervisor.abort();
    }
}

impl RedisBus {
    /// Connects a command connection and this node's pub/sub connection (both must succeed now),
    /// and starts the task that delivers publications to `handler` and keeps the subscriptions alive.
    pub async fn connect(
        url: &str,
        window: Window,
        node_id: &str,
        handler: Arc<dyn BusHandler>,
    ) -> Result<Arc<Self>, BusError> {
        let client = Client::open(url).map_err(unavailable)?;
        let conn = command_connection(&client).await?;
        let (sink, stream) = pubsub_connection(&client).await?;
        let inner = Arc::new(Inner {
            client,
            conn,
            window,
            node_id: node_id.to_string(),
            epochs: AtomicU64::new(0),
            handler,
            subs: tokio::sync::Mutex::new(Subscriptions { rooms: HashSet::new(), sink: Some(sink.clone()) }),
            delivered: Mutex::new(HashMap::new()),
            publish: Script::new(&format!("{ENSURE_META}{PUBLISH_LUA}")),
            history: Script::new(&format!("{ENSURE_META}{HISTORY_LUA}")),
            board: Script::new(BOARD_LUA),
        });
        let supervisor = tokio::spawn(supervise(inner.clone(), sink, stream));
        Ok(Arc::new(Self { inner, supervisor }))
    }

    /// Rooms this node is subscribed to.
    pub async fn rooms(&self) -> usize {
        self.inner.subs.lock().await.rooms.len()
    }

    /// Whether the pub/sub connection is up (all subscribed rooms confirmed).
    pub async fn is_connected(&self) -> bool {
        self.inner.subs.lock().await.sink.is_some()
    }
}

impl Inner {
    /// An epoch no other room creation will pick: this process's epoch, the node and a counter. No
    /// spaces: the channel payload is space-separated.
    fn fresh_epoch(&self) -> String {
        let n = self.epochs.fetch_add(1, Ordering::Relaxed);
        let node: String = self.node_id.chars().filter(char::is_ascii_alphanumeric).take(32).collect();
        format!("{}-{node}-{n:x}", new_epoch())
    }

    async fn history(&self, room: &str, since: Option<&StreamPosition>, limit: usize) -> Result<History, BusError> {
        let mut conn = self.conn.clone();
        let since_arg = since.map(|p| p.offset.to_string()).unwrap_or_default();
        let (epoch, offset, recovered, rows): (String, u64, u8, Vec<(u64, String)>) = io(self
            .history
            .key(meta_key(room))
            .key(stream_key(room))
            .key(board_key(room))
            .arg(self.fresh_epoch())
            .arg(self.window.size)
            .arg(ms(self.window.ttl))
            .arg(ms(ROOM_TTL.max(self.window.ttl)))
            .arg(since_arg)
            .arg(limit)
            .arg(since.map_or("", |p| p.epoch.as_str()))
            .invoke_async(&mut conn))
        .await?;
        let epoch_arc: Arc<str> = Arc::from(epoch.as_str());
        let publications = rows
            .into_iter()
            .map(|(offset, data)| Publication { offset, epoch: epoch_arc.clone(), data: Arc::from(data) })
            .collect();
        Ok(History { position: StreamPosition { epoch, offset }, publications, recovered: recovered == 1 })
    }

    fn deliver(&self, room: &str, publication: Publication) {
        self.handler.deliver(room, publication);
    }

    /// Delivers one message from the channel, first filling any gap since the last delivery.
    async fn on_message(&self, room: &str, payload: &[u8]) {
        let Some((offset, epoch, data)) = parse_payload(payload) else {
            tracing::warn!(room, "malformed bus payload dropped");
            return;
        };
        if offset == 0 {
            if self.is_subscribed(room) {
                self.deliver(room, Publication { offset, epoch: Arc::from(""), data: Arc::from(data) });
            }
            return;
        }
        let last = match self.delivered.lock().unwrap_or_else(|e| e.into_inner()).get(room) {
            None => return, // a straggler from before `unsubscribe`
            Some(last) => last.clone(),
        };
        if let Some((last_epoch, last_offset)) = last
            && last_epoch == epoch
        {
            if offset <= last_offset {
                return; // already delivered by a gap fill
            }
            if offset > last_offset + 1 {
                self.fill_gap(room, &last_epoch, last_offset, offset).await;
            }
        }
        self.deliver(room, Publication { offset, epoch: Arc::from(epoch), data: Arc::from(data) });
        self.mark_delivered(room, epoch, offset);
    }

    fn is_subscribed(&self, room: &str) -> bool {
        self.delivered.lock().unwrap_or_else(|e| e.into_inner()).contains_key(room)
    }

    fn mark_delivered(&self, room: &str, epoch: &str, offset: u64) {
        let mut delivered = self.delivered.lock().unwrap_or_else(|e| e.into_inner());
        match delivered.get_mut(room) {
            None => {}
            Some(Some(last)) if last.0 == epoch => last.1 = last.1.max(offset),
            Some(last) => *last = Some((epoch.to_string(), offset)),
        }
    }

    /// Delivers from the stream what came after `last` and before `until` (exclusive; `u64::MAX` for
    /// everything). If it is no longer recoverable, members will see the jump and recover themselves.
    async fn fill_gap(&self, room: &str, epoch: &str, last: u64, until: u64) {
        let since = StreamPosition { epoch: epoch.to_string(), offset: last };
        match self.history(room, Some(&since), self.window.size).await {
            Ok(h) if h.recovered => {
                for p in h.publications.into_iter().filter(|p| p.offset < until) {
                    if !self.is_subscribed(room) {
                        return;
                    }
                    let offset = p.offset;
                    self.deliver(room, p);
                    self.mark_delivered(room, epoch, offset);
                }
            }
            Ok(_) => tracing::warn!(room, last, "bus gap no longer recoverable; members must recover"),
            Err(e) => tracing::warn!(room, last, error = %e, "bus gap not filled"),
        }
    }
}

/// Runs the pub/sub connection: delivers messages in arrival order, pings, and on loss reconnects
/// with backoff, re-subscribes every wanted room and fills what was missed meanwhile.
async fn supervise(inner: Arc<Inner>, mut sink: PubSubSink, mut stream: PubSubStream) {
    loop {
        let mut ping = tokio::time::interval(PING_EVERY);
        ping.reset();
        loop {
            tokio::select! {
                msg = stream.next() => {
                    let Some(msg) = msg else { break };
                    if let Some(room) = room_of_channel(msg.get_channel_name()) {
                        inner.on_message(room, msg.get_payload_bytes()).await;
                    }
                }
                _ = ping.tick() => {
                    if io(sink.ping::<redis::Value>()).await.is_err() {
                        break;
                    }
                }
            }
        }
        inner.subs.lock().await.sink = None;
        tracing::warn!(node = %inner.node_id, "redis pub/sub connection lost; reconnecting");
        let mut delay = BACKOFF_MIN;
        (sink, stream) = loop {
            match resubscribe(&inner).await {
                Ok(c) => break c,
                Err(e) => {
                    tracing::warn!(error = %e, retry_in = ?delay, "redis pub/sub reconnect failed");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(BACKOFF_MAX);
                }
            }
        };
        tracing::info!(node = %inner.node_id, "redis pub/sub connection restored");
        // Publications made while we were away: deliver them before anything newer from the channel.
        let rooms: Vec<(String, (String, u64))> = inner
            .delivered
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter_map(|(r, l)| Some((r.clone(), l.clone()?)))
            .collect();
        for (room, (epoch, last)) in rooms {
            inner.fill_gap(&room, &epoch, last, u64::MAX).await;
        }
    }
}

async fn resubscribe(inner: &Inner) -> Result<(PubSubSink, PubSubStream), BusError> {
    let (mut sink, stream) = pubsub_connection(&inner.client).await?;
    let mut subs = inner.subs.lock().await;
    let channels: Vec<String> = subs.rooms.iter().map(|r| channel(r)).collect();
    if !channels.is_empty() {
        io(sink.subscribe(&channels)).await?;
    }
    subs.sink = Some(sink.clone());
    Ok((sink, stream))
}

impl Bus for RedisBus {
    fn publish<'a>(&'a self, room: &'a str, data: &'a str, opts: Publish<'a>) -> BoxFuture<'a, Result<u64, BusError>> {
        Box::pin(async move {
            let inner = &self.inner;
            let mut conn = inner.conn.clone();
            if !opts.store {
                let payload = format!("0 - {data}");
                let _: i64 = io(conn.publish(channel(room), payload)).await?;
                return Ok(0);
            }
            let limits = opts.board.map(|w| w.limits).unwrap_or_default();
            let (op, key, object) = match opts.board.map(|w| w.op) {
                None => ("", "", String::new()),
                Some(BoardOp::Put { key, object }) => {
                    let object = object.to_string();
                    limits.check_object(object.len())?;
                    ("put", key.as_str(), object)
                }
                Some(BoardOp::Delete { key }) => ("del", key.as_str(), String::new()),
                Some(BoardOp::Clear) => ("clear", "", String::new()),
            };
            let offset: i64 = io(inner
                .publish
                .key(meta_key(room))
                .key(stream_key(room))
                .key(board_key(room))
                .arg(inner.fresh_epoch())
                .arg(data)
                .arg(inner.window.size)
                .arg(ms(inner.window.ttl))
                .arg(ms(ROOM_TTL.max(inner.window.ttl)))
                .arg(channel(room))
                .arg(op)
                .arg(key)
                .arg(object)
                .arg(limits.max_objects)
                .arg(limits.max_bytes)
                .invoke_async(&mut conn))
            .await?;
            match offset {
                -1 => Err(BoardRefused::TooManyObjects { limit: limits.max_objects }.into()),
                -2 => Err(BoardRefused::TooManyBytes { limit: limits.max_bytes }.into()),
                o => u64::try_from(o).map_err(|_| unavailable(format!("unexpected publish result {o}"))),
            }
        })
    }

    fn subscribe<'a>(&'a self, room: &'a str) -> BoxFuture<'a, Result<(), BusError>> {
        Box::pin(async move {
            let inner = &self.inner;
            let mut subs = inner.subs.lock().await;
            if subs.rooms.contains(room) {
                return Ok(());
            }
            let Some(mut sink) = subs.sink.clone() else {
                return Err(BusError::Unavailable("redis pub/sub connection is down".into()));
            };
            inner.delivered.lock().unwrap_or_else(|e| e.into_inner()).insert(room.to_string(), None);
            if let Err(e) = io(sink.subscribe(channel(room))).await {
                inner.delivered.lock().unwrap_or_else(|e| e.into_inner()).remove(room);
                return Err(e);
            }
            subs.rooms.insert(room.to_string());
            Ok(())
        })
    }

    fn unsubscribe<'a>(&'a self, room: &'a str) -> BoxFuture<'a, Result<(), BusError>> {
        Box::pin(async move {
            let inner = &self.inner;
            let mut subs = inner.subs.lock().await;
            if !subs.rooms.remove(room) {
                return Ok(());
            }
            inner.delivered.lock().unwrap_or_else(|e| e.into_inner()).remove(room);
            // If this fails the connection is going away, and the re-subscription leaves the room out.
            if let Some(mut sink) = subs.sink.clone()
                && let Err(e) = io(sink.unsubscribe(channel(room))).await
            {
                tracing::debug!(room, error = %e, "redis unsubscribe failed");
            }
            Ok(())
        })
    }

    fn history<'a>(
        &'a self,
        room: &'a str,
        since: Option<&'a StreamPosition>,
        limit: usize,
    ) -> BoxFuture<'a, Result<History, BusError>> {
        Box::pin(self.inner.history(room, since, limit))
    }

    fn board<'a>(&'a self, room: &'a str) -> BoxFuture<'a, Result<BoardSnapshot, BusError>> {
        Box::pin(async move {
            let mut conn = self.inner.conn.clone();
            let (offset, fields): (u64, Vec<(String, String)>) =
                io(self.inner.board.key(meta_key(room)).key(board_key(room)).invoke_async(&mut conn)).await?;
            let mut objects = fields
                .into_iter()
                .map(|(key, json)| Ok(BoardObject { key, object: RawValue::from_string(json).map_err(unavailable)? }))
                .collect::<Result<Vec<_>, BusError>>()?;
            objects.sort_by(|a, b| a.key.cmp(&b.key));
            Ok(BoardSnapshot { offset, objects })
        })
    }
}

/// A presence entry as stored (the connection id is the hash field).
#[derive(Serialize, Deserialize)]
struct StoredEntry {
    user_id: String,
    name: String,
    role: String,
}

/// What every presence script starts with (KEYS as [`presence_keys`]): `now` by Redis's clock, `drop`
/// (removes a connection and keeps the index by user in step), `sweep` (drops expired connections), and
/// `ensure_index` (builds the index from the entries if it is missing, as for a room written before the
/// index existed).
const PRESENCE_LIB_LUA: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function count_in(user, json)
  if redis.call('HINCRBY', KEYS[3], user, 1) == 1 then
    redis.call('ZADD', KEYS[4], 0, user)
    redis.call('HSET', KEYS[5], user, json)
  end
end
local function drop(conn)
  local json = redis.call('HGET', KEYS[1], conn)
  redis.call('ZREM', KEYS[2], conn)
  if not json then return end
  redis.call('HDEL', KEYS[1], conn)
  local ok, e = pcall(cjson.decode, json)
  if not ok or type(e.user_id) ~= 'string' then return end
  if redis.call('HINCRBY', KEYS[3], e.user_id, -1) <= 0 then
    redis.call('HDEL', KEYS[3], e.user_id)
    redis.call('ZREM', KEYS[4], e.user_id)
    redis.call('HDEL', KEYS[5], e.user_id)
  end
end
local function sweep()
  local dead = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', string.format('%.0f', now))
  for _, conn in ipairs(dead) do drop(conn) end
end
local function ensure_index()
  if redis.call('EXISTS', KEYS[3]) == 1 or redis.call('EXISTS', KEYS[1]) == 0 then return end
  redis.call('DEL', KEYS[4], KEYS[5])
  local all = redis.call('HGETALL', KEYS[1])
  for i = 1, #all, 2 do
    local ok, e = pcall(cjson.decode, all[i + 1])
    if ok and type(e.user_id) == 'string' then count_in(e.user_id, all[i + 1]) end
  end
  local ttl = redis.call('PTTL', KEYS[1])
  if ttl > 0 then
    for k = 3, 5 do redis.call('PEXPIRE', KEYS[k], ttl) end
  end
end
ensure_index()
sweep()
"#;

/// ARGV: conn, entry JSON, ttl ms, user id. A connection's first add counts it in its user's devices; a
/// later one (the heartbeat's refresh) only moves its expiry. Every key lives as long as the longest entry.
const PRESENCE_ADD_LUA: &str = r#"
if redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) == 1 then
  count_in(ARGV[4], ARGV[2])
end
redis.call('ZADD', KEYS[2], string.format('%.0f', now + tonumber(ARGV[3])), ARGV[1])
local last = redis.call('ZRANGE', KEYS[2], -1, -1, 'WITHSCORES')
local keep = string.format('%.0f', math.max(tonumber(last[2]) - now, 1))
for k = 1, 5 do redis.call('PEXPIRE', KEYS[k], keep) end
"#;

/// ARGV: conn.
const PRESENCE_REMOVE_LUA: &str = r#"
drop(ARGV[1])
"#;

/// Returns the live entries as HGETALL does.
const PRESENCE_LIST_LUA: &str = r#"
return redis.call('HGETALL', KEYS[1])
"#;

/// ARGV: user id, limit. Returns {users, the user's devices, {id, devices, entry JSON, ...}} for the first
/// `limit` users in id order: a join's snapshot costs what it lists, not the room's size.
const PRESENCE_SUMMARY_LUA: &str = r#"
local listed = {}
local limit = tonumber(ARGV[2])
if limit > 0 then
  for _, user in ipairs(redis.call('ZRANGE', KEYS[4], 0, limit - 1)) do
    table.insert(listed, user)
    table.insert(listed, tonumber(redis.call('HGET', KEYS[3], user) or '0'))
    table.insert(listed, redis.call('HGET', KEYS[5], user) or '{}')
  end
end
return {redis.call('HLEN', KEYS[3]), tonumber(redis.call('HGET', KEYS[3], ARGV[1]) or '0'), listed}
"#;

/// Presence on Redis: entries expire by Redis's clock, so a crashed node's members vanish on time.
#[derive(Clone)]
pub struct RedisPresence {
    conn: ConnectionManager,
    add: Arc<Script>,
    remove: Arc<Script>,
    list: Arc<Script>,
    summary: Arc<Script>,
}

impl RedisPresence {
    pub async fn connect(url: &str) -> Result<Self, BusError> {
        let client = Client::open(url).map_err(unavailable)?;
        Ok(Self {
            conn: command_connection(&client).await?,
            add: presence_script(PRESENCE_ADD_LUA),
            remove: presence_script(PRESENCE_REMOVE_LUA),
            list: presence_script(PRESENCE_LIST_LUA),
            summary: presence_script(PRESENCE_SUMMARY_LUA),
        })
    }
}

fn presence_script(body: &str) -> Arc<Script> {
    Arc::new(Script::new(&format!("{PRESENCE_LIB_LUA}{body}")))
}

/// A presence script invocation with the room's keys.
fn on_room<'a>(script: &'a Script, room: &str) -> redis::ScriptInvocation<'a> {
    let mut call = script.prepare_invoke();
    for key in presence_keys(room) {
        call.key(key);
    }
    call
}

impl PresenceStore for RedisPresence {
    fn add<'a>(
        &'a self,
        room: &'a str,
        entry: &'a PresenceEntry,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<(), BusError>> {
        Box::pin(async move {
            let json = serde_json::to_string(&StoredEntry {
                user_id: entry.user_id.clone(),
                name: entry.name.clone(),
                role: entry.role.clone(),
            })
            .map_err(unavailable)?;
            let mut call = on_room(&self.add, room);
            call.arg(&entry.conn).arg(json).arg(ms(ttl)).arg(&entry.user_id);
            let mut conn = self.conn.clone();
            io(call.invoke_async(&mut conn)).await
        })
    }

    fn remove<'a>(&'a self, room: &'a str, conn: &'a str) -> BoxFuture<'a, Result<(), BusError>> {
        Box::pin(async move {
            let mut call = on_room(&self.remove, room);
            call.arg(conn);
            let mut c = self.conn.clone();
            io(call.invoke_async(&mut c)).await
        })
    }

    fn list<'a>(&'a self, room: &'a str) -> BoxFuture<'a, Result<Vec<PresenceEntry>, BusError>> {
        Box::pin(async move {
            let mut conn = self.conn.clone();
            let fields: Vec<(String, String)> = io(on_room(&self.list, room).invoke_async(&mut conn)).await?;
            let mut out: Vec<PresenceEntry> = fields
                .into_iter()
                .filter_map(|(conn, json)| {
                    let e: StoredEntry = serde_json::from_str(&json).ok()?;
                    Some(PresenceEntry { conn, user_id: e.user_id, name: e.name, role: e.role })
                })
                .collect();
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
            let mut call = on_room(&self.summary, room);
            call.arg(user).arg(limit);
            let mut conn = self.conn.clone();
            let (total, devices, listed): (usize, usize, Vec<(String, u32, String)>) =
                io(call.invoke_async(&mut conn)).await?;
            let members = listed
                .into_iter()
                .map(|(user_id, devices, json)| {
                    let e: Option<StoredEntry> = serde_json::from_str(&json).ok();
                    let (name, role) = e.map_or_else(Default::default, |e| (e.name, e.role));
                    Member { user_id, name, role, devices }
                })
                .collect();
            Ok(PresenceSummary { members, total, devices })
        })
    }
}

//! One WebSocket connection: the `/ws` upgrade, authentication, the read loop (client messages, rate
//! limit, frame checks), and the write side (the bounded outgoing queue, drained in batches and flushed
//! once per batch, so queued frames leave in few socket writes). One task owns all of it; nothing is
//! shared but the queue (`hub::SendQueue`), into which the hub pushes.
//!
//! Joins don't lose or duplicate: the member is registered (live frames start queueing) before the
//! history is read; frames at or below the offset the join reply covered are then skipped.

use std::{sync::Arc, time::Duration};

use axum::{
    extract::{
        Query, State, WebSocketUpgrade,
        ws::{CloseFrame, Message, Utf8Bytes, WebSocket},
    },
    response::Response,
};
use futures::{
    SinkExt, StreamExt,
    stream::{SplitSink, SplitStream},
};
use serde::Deserialize;
use tokio::time::Instant;

use crate::{
    bus::{BusError, Publish},
    gate::{Identity, RoomGrant},
    hub::{Drained, MemberHandle, Outgoing, SendQueue},
    node::Signaling,
    presence::{PresenceEntry, PresenceSummary},
    protocol::{BoardSnapshot, ClientMessage, HistoryItem, ServerMessage, StreamPosition, VERSION, Verdict},
};

struct Joined {
    grant: RoomGrant,
    /// The stream epoch the member is following; a publication from another one means the stream
    /// restarted (its history was lost).
    epoch: Arc<str>,
    /// Highest offset already sent for this room; later frames at or below it are duplicates.
    last: u64,
}

/// The rooms a connection is in: at most `max_rooms` (16 by default), so a vector rather than a map. A
/// publication carries the hub's own `Arc` of its room's name; the first match by content adopts that
/// pointer, so later lookups compare pointers, not strings (this runs once per delivery).
#[derive(Default)]
struct Rooms(Vec<(Arc<str>, Joined)>);

impl Rooms {
    fn index(&self, room: &str) -> Option<usize> {
        self.0.iter().position(|(k, _)| **k == *room)
    }

    fn get(&self, room: &str) -> Option<&Joined> {
        self.index(room).map(|i| &self.0[i].1)
    }

    fn contains(&self, room: &str) -> bool {
        self.get(room).is_some()
    }

    /// The member state for a publication of `room`.
    fn for_publication(&mut self, room: &Arc<str>) -> Option<&mut Joined> {
        let i = match self.0.iter().position(|(k, _)| Arc::ptr_eq(k, room)) {
            Some(i) => i,
            None => {
                let i = self.index(room)?;
                self.0[i].0 = room.clone();
                i
            }
        };
        Some(&mut self.0[i].1)
    }

    fn insert(&mut self, room: Arc<str>, joined: Joined) {
        match self.index(&room) {
            Some(i) => self.0[i].1 = joined,
            None => self.0.push((room, joined)),
        }
    }

    fn remove(&mut self, room: &str) -> Option<Joined> {
        self.index(room).map(|i| self.0.swap_remove(i).1)
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    fn names(&self) -> impl Iterator<Item = &Arc<str>> {
        self.0.iter().map(|(k, _)| k)
    }
}

struct Conn {
    sig: Signaling,
    id: u64,
    who: Identity,
    presence_key: String,
    rooms: Rooms,
    queue: Arc<SendQueue>,
    tokens: f64,
    refilled: Instant,
}

type Sink = SplitSink<WebSocket, Message>;

fn text(m: &ServerMessage<'_>) -> Message {
    Message::Text(Utf8Bytes::from(m.to_text()))
}

async fn send_error(sink: &mut Sink, id: Option<u64>, code: &str, message: &str) -> Result<(), axum::Error> {
    sink.send(text(&ServerMessage::Error { id, room: None, code, message })).await
}

/// An `error` refusing a join names the room: a join made while connecting has no request id.
async fn refuse_join(
    sink: &mut Sink,
    id: Option<u64>,
    room: &str,
    code: &str,
    message: &str,
) -> Result<(), axum::Error> {
    sink.send(text(&ServerMessage::Error { id, room: Some(room), code, message })).await
}

/// Sends a close frame, but gives up quickly: a client that stopped reading would block it forever.
/// Dropping the socket afterwards closes the TCP connection either way.
async fn close_with(mut sink: Sink, Verdict { code, reason }: Verdict) {
    let frame = Message::Close(Some(CloseFrame { code, reason: Utf8Bytes::from_static(reason) }));
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        let _ = sink.send(frame).await;
        let _ = sink.close().await;
    })
    .await;
}

#[derive(Deserialize)]
pub struct WsQuery {
    /// The access token; alternatively sent in an `auth` first frame.
    pub token: Option<String>,
    /// A room to join as the connection opens (its `joined` follows the personal channel's in the same write).
    pub join: Option<String>,
}

/// `GET /ws`: upgrades to the protocol.
pub async fn upgrade(State(sig): State<Signaling>, Query(q): Query<WsQuery>, ws: WebSocketUpgrade) -> Response {
    let cfg = sig.config.clone();
    ws.read_buffer_size(cfg.read_buffer_bytes)
        .write_buffer_size(cfg.write_buffer_bytes)
        .max_write_buffer_size(cfg.write_buffer_bytes.max(cfg.max_message_bytes) * 64)
        .max_message_size(cfg.max_message_bytes)
        .max_frame_size(cfg.max_message_bytes)
        .on_upgrade(move |socket| run(sig, socket, q.token, q.join))
}

/// Serves one upgraded socket until it closes.
///
/// The socket is split before the future exists, so the future (which lives as long as the connection,
/// one per connection) holds the two halves only, not the whole socket as well.
/// `token` and `join` come from the URL (`?token=`, `?join=`); without a token the first frame must be `auth`,
/// which may name the room to join (and a position to recover from) itself.
pub fn run(
    sig: Signaling,
    socket: WebSocket,
    token: Option<String>,
    join: Option<String>,
) -> impl Future<Output = ()> + Send {
    let (sink, stream) = socket.split();
    serve(sig, sink, stream, token, join)
}

// A function returning an `async move` block, not an `async fn`: an `async fn` keeps its arguments twice in
// its future (as arguments and as locals), and this future lives as long as the connection.
#[allow(clippy::manual_async_fn)]
fn serve(
    sig: Signaling,
    mut sink: Sink,
    mut stream: SplitStream<WebSocket>,
    token: Option<String>,
    join: Option<String>,
) -> impl Future<Output = ()> + Send {
    async move {
        let cfg = sig.config.clone();
        let mut first: Option<(String, Option<StreamPosition>)> = join.map(|room| (room, None));
        let token = match token {
            Some(t) => t,
            None => match tokio::time::timeout(cfg.auth_timeout, stream.next()).await {
                Ok(Some(Ok(Message::Text(t)))) => match serde_json::from_str::<ClientMessage>(&t) {
                    Ok(ClientMessage::Auth { token, join, recover }) => {
                        if let Some(room) = join {
                            first = Some((room, recover));
                        }
                        token
                    }
                    _ => {
                        let _ = send_error(&mut sink, None, "unauthorized", "the first frame must be auth").await;
                        return close_with(sink, Verdict::UNAUTHORIZED).await;
                    }
                },
                _ => return close_with(sink, Verdict::UNAUTHORIZED).await,
            },
        };
        let who = match sig.gate.authenticate(&token).await {
            Ok(who) => who,
            Err(d) => {
                let _ = send_error(&mut sink, None, &d.code, &d.message).await;
                return close_with(sink, Verdict::UNAUTHORIZED).await;
            }
        };
        let id = sig.next_conn_id();
        let mut conn = Conn {
            presence_key: format!("{}:{id}", sig.node_id),
            sig: sig.clone(),
            id,
            who,
            rooms: Rooms::default(),
            queue: Arc::new(SendQueue::new(cfg.queue_capacity)),
            tokens: cfg.burst as f64,
            refilled: Instant::now(),
        };
        // Serialized before the await: the message itself isn't kept in the connection's future.
        let welcome = text(&ServerMessage::Welcome {
            version: VERSION,
            user_id: &conn.who.user_id,
            connection_id: id,
            heartbeat_secs: cfg.heartbeat.as_secs(),
        });
        // Queued, not flushed: it leaves in one write with the user channel's `joined` below.
        if sink.feed(welcome).await.is_err() {
            return;
        }
        // Every connection is in its user's channel (pushes of balance, XP, unlocks, kicks).
        let user_room = format!("user:{}", conn.who.user_id);
        let personal = Box::pin(conn.join(&mut sink, None, &user_room, None, RoomGrant::READ_ONLY)).await;
        if personal.is_err() || !conn.rooms.contains(&user_room) {
            // Without its user channel a connection would miss pushes and kicks: don't keep it.
            conn.cleanup().await;
            return close_with(sink, Verdict::UNAVAILABLE).await;
        }
        // Shutdown kills the send queue of every connection in the hub; this one registered just now,
        // perhaps after that sweep: then the flag (set before the sweep) tells.
        if sig.shutting_down() {
            conn.cleanup().await;
            return close_with(sink, Verdict::SHUTTING_DOWN).await;
        }
        // The room asked for while connecting, as a `join` without an id would; its `joined` leaves with the
        // `welcome` and the personal channel's in one write (a client saves a round trip).
        if let Some((room, recover)) = first.take()
            && Box::pin(conn.request_join(&mut sink, None, &room, recover.as_ref())).await.is_err()
        {
            return conn.cleanup().await;
        }
        if sink.flush().await.is_err() {
            return conn.cleanup().await;
        }

        // The first beat comes at this connection's own point of the interval, so connections opened together
        // (a class starting, every client coming back after a deploy) don't ping and refresh presence in one
        // wave for as long as they live.
        let mut heartbeat = tokio::time::interval_at(Instant::now() + first_beat(cfg.heartbeat, id), cfg.heartbeat);
        let mut last_seen = Instant::now();
        // Grown on first use and trimmed after bursts: idle connections hold no batch buffer.
        let mut batch = Vec::new();
        let queue = conn.queue.clone();
        // Shutdown and slow consumers both come through the send queue (a kill with a verdict): one
        // registration per wait, instead of re-subscribing to a shutdown signal on every pass.
        let outcome: Option<Verdict> = loop {
            tokio::select! {
                biased;
                drained = queue.drain(&mut batch, 64) => {
                    if let Drained::Killed(verdict) = drained {
                        break Some(verdict);
                    }
                    // A write blocked by a client that doesn't read must not outlive the kill switch the
                    // hub fires when the queue behind it fills up.
                    // Boxed: the write's state lives only while writing, not in every idle connection's task.
                    tokio::select! {
                        written = Box::pin(conn.write_batch(&mut sink, &mut batch)) => if written.is_err() { break None },
                        verdict = queue.killed() => break Some(verdict),
                    }
                    if batch.capacity() > 64 {
                        batch = Vec::new();
                    }
                }
                incoming = stream.next() => {
                    last_seen = Instant::now();
                    match incoming {
                        Some(Ok(Message::Text(t))) => {
                            // Boxed for the same reason: joins and commands have large states.
                            if Box::pin(conn.handle_text(&mut sink, &t)).await.is_err() {
                                break None;
                            }
                        }
                        Some(Ok(Message::Binary(_))) => {
                            if send_error(&mut sink, None, "bad_frame", "binary frames are not supported").await.is_err() {
                                break None;
                            }
                        }
                        Some(Ok(Message::Close(_))) => {
                            // The library queued the close reply; flush it so the client sees a clean close.
                            let _ = tokio::time::timeout(Duration::from_secs(2), sink.close()).await;
                            break None;
                        }
                        None | Some(Err(_)) => break None,
                        Some(Ok(_)) => {} // ping/pong: answered by the library; counted as liveness above
                    }
                }
                _ = heartbeat.tick() => {
                    if last_seen.elapsed() > cfg.heartbeat * 2 + Duration::from_secs(5) {
                        break Some(Verdict::HEARTBEAT_TIMEOUT);
                    }
                    if sink.send(Message::Ping(bytes::Bytes::new())).await.is_err() {
                        break None;
                    }
                    conn.refresh_presence().await;
                }
            }
        };
        conn.cleanup().await;
        if let Some(verdict) = outcome {
            close_with(sink, verdict).await;
        }
    }
}

impl Conn {
    fn member(&self) -> MemberHandle {
        MemberHandle { conn: self.id, queue: self.queue.clone() }
    }

    fn presence_entry(&self) -> PresenceEntry {
        PresenceEntry {
            conn: self.presence_key.clone(),
            user_id: self.who.user_id.clone(),
            name: self.who.name.clone(),
            role: self.who.role.clone(),
        }
    }

    /// Writes queued frames, skipping duplicates of what a join reply already covered.
    async fn write_batch(&mut self, sink: &mut Sink, batch: &mut Vec<Outgoing>) -> Result<(), axum::Error> {
        let mut kicks = Vec::new();
        for item in batch.drain(..) {
            match item {
                Outgoing::Publication(p) => {
                    let Some(joined) = self.rooms.for_publication(&p.room) else { continue };
                    if p.offset != 0 {
                        if Arc::ptr_eq(&p.epoch, &joined.epoch) {
                            // The usual case: the same stream, known by pointer.
                        } else if p.epoch == joined.epoch {
                            // The same stream: keep the bus's pointer, so the next check is a pointer comparison.
                            joined.epoch = p.epoch.clone();
                        } else {
                            // The stream restarted under a new epoch: tell the client to reload, then
                            // follow the new stream from here.
                            let position = StreamPosition { epoch: p.epoch.to_string(), offset: p.offset - 1 };
                            sink.feed(text(&ServerMessage::NotRecoverable { room: &p.room, position })).await?;
                            joined.epoch = p.epoch.clone();
                            joined.last = p.offset - 1;
                        }
                        if p.offset <= joined.last {
                            continue;
                        }
                        joined.last = p.offset;
                    }
                    sink.feed(Message::Text(p.frame.clone())).await?;
                }
                Outgoing::Kick(k) => kicks.push(k),
            }
        }
        sink.flush().await?;
        for k in kicks {
            if let Some(session) = &k.session {
                // A sign-out ends the connections of that session only; the user's other devices stay.
                if self.who.session.as_deref() == Some(&**session) {
                    self.queue.kill(Verdict::SESSION_REVOKED);
                }
                continue;
            }
            let rooms: Vec<Arc<str>> = self.rooms.names().filter(|r| r.starts_with(&*k.prefix)).cloned().collect();
            for room in rooms {
                self.leave_room(&room).await;
                sink.send(text(&ServerMessage::Kicked { room: &room, reason: &k.reason })).await?;
            }
        }
        Ok(())
    }

    fn take_token(&mut self) -> bool {
        let cfg = &self.sig.config;
        let now = Instant::now();
        let refill = now.duration_since(self.refilled).as_secs_f64() * cfg.messages_per_sec as f64;
        self.tokens = (self.tokens + refill).min(cfg.burst as f64);
        self.refilled = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    async fn handle_text(&mut self, sink: &mut Sink, raw: &str) -> Result<(), axum::Error> {
        if !self.take_token() {
            return send_error(sink, None, "rate_limited", "too many messages; slow down").await;
        }
        let msg = match serde_json::from_str::<ClientMessage>(raw) {
            Ok(m) => m,
            Err(e) => {
                let id = serde_json::from_str::<serde_json::Value>(raw).ok().and_then(|v| v["id"].as_u64());
                return send_error(sink, id, "bad_frame", &format!("not a valid message: {e}")).await;
            }
        };
        let id = msg.id();
        match msg {
            ClientMessage::Auth { .. } => send_error(sink, id, "bad_frame", "already authenticated").await,
            ClientMessage::Ping { id } => sink.send(text(&ServerMessage::Pong { id })).await,
            ClientMessage::Join { room, recover, .. } => {
                self.request_join(sink, id, &room, recover.as_ref()).await?;
                sink.flush().await
            }
            ClientMessage::Leave { room, .. } => {
                if !self.rooms.contains(&room) || room.starts_with("user:") {
                    return send_error(sink, id, "not_joined", "not in this room").await;
                }
                self.leave_room(&Arc::from(room.as_str())).await;
                sink.send(text(&ServerMessage::Left { id, room: &room })).await
            }
            ClientMessage::Chat { room, text: body, .. } => {
                let Some(j) = self.rooms.get(&room) else {
                    return send_error(sink, id, "not_joined", "join the room first").await;
                };
                if !j.grant.chat {
                    return send_error(sink, id, "forbidden", "you may not chat here").await;
                }
                let n = body.chars().count();
                if n == 0 || n > 2000 {
                    return send_error(sink, id, "invalid", "chat text is 1-2000 characters").await;
                }
                let data = serde_json::json!({
                    "kind": "chat",
                    "from": {"id": self.who.user_id, "name": self.who.name},
                    "text": body,
                    "at": now_ms(),
                })
                .to_string();
                match self.sig.bus.publish(&room, &data, Publish { store: true, board: None }).await {
                    Ok(offset) => {
                        self.sig.gate.chat_posted(&room, offset, &self.who, &body);
                        self.ack(sink, id, Some(offset)).await
                    }
                    Err(e) => send_error(sink, id, "unavailable", &e.to_string()).await,
                }
            }
            ClientMessage::Draw { room, op, .. } => {
                let Some(j) = self.rooms.get(&room) else {
                    return send_error(sink, id, "not_joined", "join the room first").await;
                };
                if !j.grant.draw {
                    return send_error(sink, id, "forbidden", "you may not draw here").await;
                }
                if !op.is_valid() {
                    return send_error(sink, id, "invalid", "board keys are 1-64 characters").await;
                }
                let data = serde_json::json!({"kind": "draw", "from": self.who.user_id, "op": op}).to_string();
                match self.sig.bus.publish(&room, &data, Publish::board(&op, self.sig.config.board)).await {
                    Ok(offset) => self.ack(sink, id, Some(offset)).await,
                    // The board's limits: `board_full` or `object_too_large`; nothing was published.
                    Err(BusError::Board(refused)) => send_error(sink, id, refused.code(), &refused.to_string()).await,
                    Err(e) => send_error(sink, id, "unavailable", &e.to_string()).await,
                }
            }
            ClientMessage::Hand { room, raised, .. } => {
                let Some(j) = self.rooms.get(&room) else {
                    return send_error(sink, id, "not_joined", "join the room first").await;
                };
                if !j.grant.chat {
                    return send_error(sink, id, "forbidden", "you may not raise a hand here").await;
                }
                let data = serde_json::json!({
                    "kind": "hand", "user": {"id": self.who.user_id, "name": self.who.name}, "raised": raised,
                })
                .to_string();
                match self.sig.bus.publish(&room, &data, Publish { store: true, board: None }).await {
                    Ok(offset) => self.ack(sink, id, Some(offset)).await,
                    Err(e) => send_error(sink, id, "unavailable", &e.to_string()).await,
                }
            }
            ClientMessage::React { room, emoji, .. } => {
                let Some(j) = self.rooms.get(&room) else {
                    return send_error(sink, id, "not_joined", "join the room first").await;
                };
                if !j.grant.chat {
                    return send_error(sink, id, "forbidden", "you may not react here").await;
                }
                if emoji.is_empty() || emoji.chars().count() > 8 {
                    return send_error(sink, id, "invalid", "a reaction is 1-8 characters").await;
                }
                let data = serde_json::json!({
                    "kind": "reaction", "user": {"id": self.who.user_id, "name": self.who.name}, "emoji": emoji,
                })
                .to_string();
                match self.sig.bus.publish(&room, &data, Publish::default()).await {
                    Ok(_) => self.ack(sink, id, None).await,
                    Err(e) => send_error(sink, id, "unavailable", &e.to_string()).await,
                }
            }
            ClientMessage::Command { room, name, args, .. } => {
                let Some(j) = self.rooms.get(&room) else {
                    return send_error(sink, id, "not_joined", "join the room first").await;
                };
                if !j.grant.moderate {
                    return send_error(sink, id, "forbidden", "you may not run commands here").await;
                }
                match self.sig.gate.command(&self.who, &room, &name, &args, &self.sig).await {
                    Ok(()) => self.ack(sink, id, None).await,
                    Err(d) => send_error(sink, id, &d.code, &d.message).await,
                }
            }
        }
    }

    async fn ack(&self, sink: &mut Sink, id: Option<u64>, offset: Option<u64>) -> Result<(), axum::Error> {
        match id {
            Some(id) => sink.send(text(&ServerMessage::Ack { id, offset })).await,
            None => Ok(()),
        }
    }

    /// A join asked for by a `join` frame or while connecting: the limits, the gate, then [`Self::join`].
    /// A `joined` is queued, not flushed (the caller flushes); a refusal is sent at once.
    async fn request_join(
        &mut self,
        sink: &mut Sink,
        id: Option<u64>,
        room: &str,
        recover: Option<&StreamPosition>,
    ) -> Result<(), axum::Error> {
        if self.rooms.contains(room) {
            return refuse_join(sink, id, room, "already_joined", "already in this room").await;
        }
        if self.rooms.len() >= self.sig.config.max_rooms {
            return refuse_join(sink, id, room, "too_many_rooms", "leave a room before joining another").await;
        }
        if room.is_empty() || room.len() > 200 {
            return refuse_join(sink, id, room, "bad_room", "room names are 1-200 characters").await;
        }
        match self.sig.gate.authorize(&self.who, room).await {
            Ok(grant) => self.join(sink, id, room, recover, grant).await,
            Err(d) => refuse_join(sink, id, room, &d.code, &d.message).await,
        }
    }

    /// Joins an authorised room and queues the `joined` (not flushed).
    async fn join(
        &mut self,
        sink: &mut Sink,
        id: Option<u64>,
        room: &str,
        recover: Option<&StreamPosition>,
        grant: RoomGrant,
    ) -> Result<(), axum::Error> {
        let key: Arc<str> = Arc::from(room);
        if let Err(e) = self.sig.hub.join(&key, self.member()).await {
            return refuse_join(sink, id, room, "unavailable", &e.to_string()).await;
        }
        let entry = self.presence_entry();
        // A user channel has no presence or board: skip those round trips for every connect.
        let personal = room.starts_with("user:");
        let joined = async {
            let history = self.sig.bus.history(room, recover, self.sig.config.join_history).await?;
            if personal {
                return Ok((history, BoardSnapshot { offset: 0, objects: Vec::new() }, PresenceSummary::default()));
            }
            let board = self.sig.bus.board(room).await?;
            self.sig.presence.add(room, &entry, self.sig.config.presence_ttl()).await?;
            let present =
                self.sig.presence.summary(room, &self.who.user_id, self.sig.config.join_presence_limit).await?;
            Ok::<_, BusError>((history, board, present))
        }
        .await;
        let (history, board, present) = match joined {
            Ok(x) => x,
            Err(e) => {
                self.sig.hub.leave(&key, self.id).await;
                return refuse_join(sink, id, room, "unavailable", &e.to_string()).await;
            }
        };
        let last =
            history.publications.last().map_or(history.position.offset, |p| p.offset.max(history.position.offset));
        self.rooms.insert(key.clone(), Joined { grant, epoch: Arc::from(history.position.epoch.as_str()), last });
        if recover.is_some() && !history.recovered {
            sink.feed(text(&ServerMessage::NotRecoverable { room, position: history.position.clone() })).await?;
        }
        let raw: Vec<Box<serde_json::value::RawValue>> = history
            .publications
            .iter()
            .map(|p| serde_json::value::RawValue::from_string(p.data.to_string()).unwrap_or_else(|_| empty_object()))
            .collect();
        let items =
            history.publications.iter().zip(&raw).map(|(p, d)| HistoryItem { offset: p.offset, data: d }).collect();
        let reply = ServerMessage::Joined {
            id,
            room,
            position: history.position.clone(),
            recovered: history.recovered,
            history: items,
            presence: present.members,
            presence_total: present.total,
            board,
        };
        sink.feed(text(&reply)).await?;
        // Announce the first device of this user in the room.
        if present.devices == 1 && !personal && grant.announce {
            self.publish_presence(room, "join", 1).await;
        }
        Ok(())
    }

    async fn publish_presence(&self, room: &str, event: &str, devices: usize) {
        let data = serde_json::json!({
            "kind": "presence", "event": event,
            "user": {"id": self.who.user_id, "name": self.who.name, "role": self.who.role}, "devices": devices,
        })
        .to_string();
        if let Err(e) = self.sig.bus.publish(room, &data, Publish::default()).await {
            tracing::debug!(error = %e, "presence publish failed");
        }
    }

    async fn leave_room(&mut self, room: &Arc<str>) {
        let Some(joined) = self.rooms.remove(room) else { return };
        self.sig.hub.leave(room, self.id).await;
        if room.starts_with("user:") {
            return;
        }
        let _ = self.sig.presence.remove(room, &self.presence_key).await;
        if !joined.grant.announce {
            return;
        }
        let remaining = match self.sig.presence.summary(room, &self.who.user_id, 0).await {
            Ok(s) => s.devices,
            Err(_) => 0,
        };
        if remaining == 0 {
            self.publish_presence(room, "leave", 0).await;
        }
    }

    async fn refresh_presence(&self) {
        let entry = self.presence_entry();
        for room in self.rooms.names().filter(|r| !r.starts_with("user:")) {
            let _ = self.sig.presence.add(room, &entry, self.sig.config.presence_ttl()).await;
        }
    }

    async fn cleanup(&mut self) {
        let rooms: Vec<Arc<str>> = self.rooms.names().cloned().collect();
        for room in rooms {
            self.leave_room(&room).await;
        }
        // A join that failed half way may have registered the member: remove it everywhere.
        let user_room: Arc<str> = Arc::from(format!("user:{}", self.who.user_id));
        self.sig.hub.leave(&user_room, self.id).await;
        self.queue.close();
    }
}

/// Between half an interval and one and a half, spread evenly over connection ids (Fibonacci hashing, so
/// consecutive ids land far apart): the beats of connections opened together fall evenly over every later
/// interval. The presence lifetime is three intervals, so the entry a join made is refreshed in time.
fn first_beat(interval: Duration, conn: u64) -> Duration {
    let unit = (conn.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 11) as f64 / (1u64 << 53) as f64;
    interval.mul_f64(0.5 + unit)
}

fn empty_object() -> Box<serde_json::value::RawValue> {
    serde_json::value::RawValue::from_string("{}".into()).expect("valid JSON")
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_beats_spread_over_a_whole_interval() {
        let interval = Duration::from_secs(20);
        let beats: Vec<Duration> = (1..=1000).map(|id| first_beat(interval, id)).collect();
        assert!(beats.iter().all(|b| *b >= interval / 2 && *b <= interval * 3 / 2));
        // Ten equal buckets over [10 s, 30 s): each holds about a tenth of consecutive ids.
        let mut buckets = [0usize; 10];
        for b in &beats {
            buckets[(((b.as_secs_f64() - 10.0) / 2.0) as usize).min(9)] += 1;
        }
        assert!(buckets.iter().all(|&n| (60..=140).contains(&n)), "{buckets:?}");
    }
}

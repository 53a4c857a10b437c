//! The media engine's state machine: every room and peer connection (str0m `Rtc`), sans-IO as str0m is.
//!
//! Input in, output out, time passed in: [`Core::handle_command`], [`Core::handle_datagram`] and
//! [`Core::handle_timeout`] take `now`; [`Core::poll_output`] gives datagrams to send and [`SfuEvent`]s;
//! [`Core::poll_timeout`] says when to call again. It never reads a clock or touches a socket, so tests
//! drive it in simulated time; `driver` feeds it from the UDP socket and the command channel. Replies to
//! clients go on the channel each [`Joining`] brings, and answers to commands on the `oneshot` each carries:
//! both are plain sends that never wait.
//!
//! An input goes to the one peer it belongs to (a datagram: found by source address, or by ICE credentials
//! for a new address); then the peers that were touched are polled until each has nothing more to say.
//! Polling yields work — a media frame to forward, a keyframe request to pass upstream, a data packet to
//! relay — which writes into other peers of the same room and touches them in turn, until everything has
//! settled.
//!
//! Rooms follow LiveKit's single-PeerConnection mode: a client's offer carries its own tracks (`sendonly`,
//! linked to `AddTrackRequest`s by msid = cid) and `recvonly` slots; when a track of someone else should
//! reach a client, it asks for slots (`MediaSectionsRequirement`), re-offers, and the answer fills slots
//! (see `sdp`). A slot is used for one track only: a freed slot is answered `inactive` from then on.

use std::{
    collections::{HashMap, HashSet, VecDeque},
    net::SocketAddr,
    sync::{Arc, atomic::Ordering},
    time::{Duration, Instant},
};

use livekit_protocol as lk;
use lk::signal_response::Message as Resp;
use prost::Message as _;
use str0m::{
    Candidate, Event, IceConnectionState, Input, Output as RtcOutput, Rtc,
    change::SdpOffer,
    channel::ChannelId,
    media::{KeyframeRequestKind, MediaData, Mid, Rid},
    net::{Protocol, Receive},
};
use tokio::sync::mpsc;

use super::{
    Command, Joining, SERVER_PROTOCOL, SERVER_VERSION, SfuConfig, SfuEvent, SfuStats, leave_message, sdp, sid,
};
use crate::RoomSpec;

/// How often empty rooms are checked for their timeout.
const ROOM_SWEEP: Duration = Duration::from_secs(1);
/// At most one keyframe request per track in this long.
const KEYFRAME_GAP: Duration = Duration::from_millis(300);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Audio,
    Video,
}

impl Kind {
    fn of_section(kind: &str) -> Option<Kind> {
        match kind {
            "audio" => Some(Kind::Audio),
            "video" => Some(Kind::Video),
            _ => None,
        }
    }
    fn of_track(t: i32) -> Kind {
        if t == lk::TrackType::Video as i32 { Kind::Video } else { Kind::Audio }
    }
}

/// A track a client publishes.
struct Published {
    sid: String,
    cid: String,
    kind: Kind,
    req: lk::AddTrackRequest,
    muted: bool,
    /// Its m-line in the publisher's connection, once the offer carrying it arrived.
    mid: Option<Mid>,
    /// The simulcast layer forwarded (the best seen), if the publisher sends layers.
    layer: Option<Rid>,
    last_keyframe_request: Option<Instant>,
    /// Who receives it, and in which of their slots.
    subscribers: Vec<(u64, Mid)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum SlotState {
    Free,
    Filled {
        publisher: u64,
        track: String,
        stream: String,
        paused: bool,
    },
    /// Held a track that is gone; never reused (clients key their receivers by m-line).
    Spent,
}

struct Slot {
    mid: Mid,
    kind: Kind,
    state: SlotState,
}

struct Client {
    sid: String,
    identity: String,
    name: String,
    metadata: String,
    room: String,
    permission: lk::ParticipantPermission,
    auto_subscribe: bool,
    joined_at_ms: i64,
    version: u32,
    state: lk::participant_info::State,
    rtc: Rtc,
    out: mpsc::UnboundedSender<Resp>,
    next_timeout: Instant,
    published: Vec<Published>,
    slots: Vec<Slot>,
    /// Tracks of others this client should receive that have no slot yet: (publisher, track sid).
    wanted: Vec<(u64, String)>,
    /// Slots asked for with `MediaSectionsRequirement` that no offer has brought yet: (audio, video). The
    /// client adds that many per requirement, so a requirement asks only for what isn't on its way.
    slots_asked: (u32, u32),
    channels: HashMap<ChannelId, String>,
    connected: bool,
}

impl Client {
    fn send(&self, m: Resp) {
        let _ = self.out.send(m);
    }

    fn info(&self) -> lk::ParticipantInfo {
        let tracks: Vec<lk::TrackInfo> = self.published.iter().filter(|p| p.mid.is_some()).map(track_info).collect();
        lk::ParticipantInfo {
            sid: self.sid.clone(),
            identity: self.identity.clone(),
            state: self.state as i32,
            is_publisher: !tracks.is_empty(),
            tracks,
            metadata: self.metadata.clone(),
            joined_at: self.joined_at_ms / 1000,
            joined_at_ms: self.joined_at_ms,
            name: self.name.clone(),
            version: self.version,
            permission: Some(self.permission.clone()),
            ..Default::default()
        }
    }

    fn channel_for(&self, label: &str) -> Option<ChannelId> {
        self.channels.iter().find(|(_, l)| l.as_str() == label).map(|(id, _)| *id)
    }
}

// Older clients still read the deprecated per-track fields.
#[allow(deprecated)]
fn track_info(p: &Published) -> lk::TrackInfo {
    lk::TrackInfo {
        sid: p.sid.clone(),
        r#type: p.req.r#type,
        name: p.req.name.clone(),
        muted: p.muted,
        width: p.req.width,
        height: p.req.height,
        simulcast: p.req.layers.len() > 1,
        disable_dtx: p.req.disable_dtx,
        source: p.req.source,
        layers: p.req.layers.clone(),
        mime_type: if p.kind == Kind::Video { "video/VP8".into() } else { "audio/opus".into() },
        mid: p.mid.map(|m| m.to_string()).unwrap_or_default(),
        stereo: p.req.stereo,
        disable_red: true,
        stream: p.req.stream.clone(),
        ..Default::default()
    }
}

struct Room {
    sid: String,
    created_ms: i64,
    max_participants: u32,
    empty_timeout: u32,
    members: Vec<u64>,
    /// Since when nobody is in it: an empty room closes after `empty_timeout` seconds, as LiveKit's do.
    empty_since: Option<Instant>,
}

enum Work {
    Forward { from: u64, data: Box<MediaData> },
    Keyframe { publisher: u64, track: String },
    Data { from: u64, label: String, payload: Vec<u8> },
    Connected(u64),
}

/// What the core has for the outside world.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Output {
    /// A datagram to send from the media socket.
    Transmit {
        destination: SocketAddr,
        contents: Vec<u8>,
    },
    Event(SfuEvent),
}

pub(super) struct Core {
    media_addr: SocketAddr,
    ping_interval_secs: i32,
    ping_timeout_secs: i32,
    stats: Arc<SfuStats>,
    clients: HashMap<u64, Client>,
    by_addr: HashMap<SocketAddr, u64>,
    rooms: HashMap<String, Room>,
    dirty: HashSet<u64>,
    work: VecDeque<Work>,
    outputs: VecDeque<Output>,
    /// The latest `now` given; every rule reads time from here.
    now: Instant,
    /// An instant and the unix milliseconds it was, for the wall-clock times clients are shown.
    epoch: (Instant, i64),
    last_sweep: Instant,
}

impl Core {
    /// A core with no rooms; `unix_ms` is the wall-clock time at `now`.
    pub(super) fn new(
        config: &SfuConfig,
        media_addr: SocketAddr,
        stats: Arc<SfuStats>,
        now: Instant,
        unix_ms: i64,
    ) -> Core {
        Core {
            media_addr,
            ping_interval_secs: config.ping_interval_secs,
            ping_timeout_secs: config.ping_timeout_secs,
            stats,
            clients: HashMap::new(),
            by_addr: HashMap::new(),
            rooms: HashMap::new(),
            dirty: HashSet::new(),
            work: VecDeque::new(),
            outputs: VecDeque::new(),
            now,
            epoch: (now, unix_ms),
            last_sweep: now,
        }
    }

    /// When [`Core::handle_timeout`] is next due: the earliest peer timeout, or the next empty-room sweep.
    pub(super) fn poll_timeout(&self) -> Instant {
        let sweep = self.last_sweep + ROOM_SWEEP;
        self.clients.values().map(|c| c.next_timeout).min().map_or(sweep, |n| n.min(sweep))
    }

    /// The next datagram to send or event to report, once the peers touched by earlier input have settled.
    pub(super) fn poll_output(&mut self) -> Option<Output> {
        if !self.dirty.is_empty() || !self.work.is_empty() {
            self.settle();
        }
        self.outputs.pop_front()
    }

    /// Time has passed: peers whose timeout is due get it, empty rooms past their `empty_timeout` close,
    /// and everything settles. Calling it early does no harm (nothing is due yet).
    pub(super) fn handle_timeout(&mut self, now: Instant) {
        self.tick(now);
        let due: Vec<u64> = self.clients.iter().filter(|(_, c)| c.next_timeout <= now).map(|(id, _)| *id).collect();
        for id in due {
            if let Some(c) = self.clients.get_mut(&id) {
                if c.rtc.handle_input(Input::Timeout(now)).is_err() {
                    c.rtc.disconnect();
                }
                self.dirty.insert(id);
            }
        }
        if now >= self.last_sweep + ROOM_SWEEP {
            self.last_sweep = now;
            self.close_empty_rooms(now);
        }
        self.settle();
    }

    fn tick(&mut self, now: Instant) {
        self.now = self.now.max(now);
    }

    /// Unix milliseconds at the latest `now`.
    fn unix_ms(&self) -> i64 {
        self.epoch.1 + self.now.saturating_duration_since(self.epoch.0).as_millis() as i64
    }

    fn report(&mut self, e: SfuEvent) {
        self.outputs.push_back(Output::Event(e));
    }

    /// Rooms empty for longer than their `empty_timeout` close (`RoomFinished`); a later join opens the room
    /// again, with a new sid.
    fn close_empty_rooms(&mut self, now: Instant) {
        let expired: Vec<String> = self
            .rooms
            .iter()
            .filter(|(_, r)| {
                r.empty_since.is_some_and(|t| now.duration_since(t) >= Duration::from_secs(r.empty_timeout.into()))
            })
            .map(|(name, _)| name.clone())
            .collect();
        for name in expired {
            self.rooms.remove(&name);
            self.report(SfuEvent::RoomFinished { room: name });
        }
    }

    /// A datagram from `source` arrived on the media socket. Its effects come out of [`Core::poll_output`];
    /// the driver feeds a batch of datagrams before it polls, so each touched peer is polled once per batch.
    pub(super) fn handle_datagram(&mut self, now: Instant, source: SocketAddr, data: &[u8]) {
        self.tick(now);
        self.stats.received_datagrams.fetch_add(1, Ordering::Relaxed);
        let Ok(contents) = data.try_into() else { return };
        let input =
            Input::Receive(now, Receive { proto: Protocol::Udp, source, destination: self.media_addr, contents });
        let id = match self.by_addr.get(&source) {
            Some(id) if self.clients.get(id).is_some_and(|c| c.rtc.accepts(&input)) => *id,
            _ => {
                let Some(id) = self.clients.iter().find(|(_, c)| c.rtc.accepts(&input)).map(|(id, _)| *id) else {
                    return;
                };
                self.by_addr.insert(source, id);
                id
            }
        };
        let Some(c) = self.clients.get_mut(&id) else { return };
        if let Err(e) = c.rtc.handle_input(input) {
            tracing::debug!(client = %c.identity, error = %e, "peer input refused; disconnecting it");
            c.rtc.disconnect();
        }
        self.dirty.insert(id);
    }

    /// Polls touched peers and does the work that comes out, until nothing is left.
    fn settle(&mut self) {
        loop {
            if let Some(&id) = self.dirty.iter().next() {
                self.dirty.remove(&id);
                self.poll(id);
                continue;
            }
            match self.work.pop_front() {
                Some(w) => self.do_work(w),
                None => break,
            }
        }
        let dead: Vec<u64> = self.clients.iter().filter(|(_, c)| !c.rtc.is_alive()).map(|(id, _)| *id).collect();
        for id in dead {
            tracing::debug!(client = id, "peer connection ended");
            if let Some(c) = self.clients.get(&id) {
                c.send(leave_message(lk::DisconnectReason::MediaFailure, lk::leave_request::Action::Disconnect));
            }
            self.leave(id);
        }
    }

    fn poll(&mut self, id: u64) {
        let Some(c) = self.clients.get_mut(&id) else { return };
        loop {
            if !c.rtc.is_alive() {
                return;
            }
            let out = match c.rtc.poll_output() {
                Ok(o) => o,
                Err(e) => {
                    tracing::debug!(client = %c.identity, error = %e, "peer failed");
                    c.rtc.disconnect();
                    return;
                }
            };
            match out {
                RtcOutput::Timeout(t) => {
                    c.next_timeout = t;
                    return;
                }
                RtcOutput::Transmit(t) => {
                    self.stats.sent_datagrams.fetch_add(1, Ordering::Relaxed);
                    self.outputs
                        .push_back(Output::Transmit { destination: t.destination, contents: t.contents.into() });
                }
                RtcOutput::Event(e) => match e {
                    Event::IceConnectionStateChange(IceConnectionState::Disconnected) => c.rtc.disconnect(),
                    Event::Connected if !c.connected => {
                        c.connected = true;
                        self.work.push_back(Work::Connected(id));
                    }
                    Event::MediaData(data) => {
                        if !data.contiguous
                            && let Some(p) = c.published.iter().find(|p| p.mid == Some(data.mid))
                        {
                            self.work.push_back(Work::Keyframe { publisher: id, track: p.sid.clone() });
                        }
                        self.work.push_back(Work::Forward { from: id, data: Box::new(data) });
                    }
                    Event::KeyframeRequest(req) => {
                        let slot = c.slots.iter().find(|s| s.mid == req.mid).map(|s| s.state.clone());
                        if let Some(SlotState::Filled { publisher, track, .. }) = slot {
                            self.work.push_back(Work::Keyframe { publisher, track });
                        }
                    }
                    Event::ChannelOpen(cid, label) => {
                        c.channels.insert(cid, label);
                    }
                    Event::ChannelClose(cid) => {
                        c.channels.remove(&cid);
                    }
                    Event::ChannelData(d) => {
                        let label = c.channels.get(&d.id).cloned().unwrap_or_else(|| "_reliable".into());
                        self.work.push_back(Work::Data { from: id, label, payload: d.data });
                    }
                    _ => {}
                },
            }
        }
    }

    fn do_work(&mut self, w: Work) {
        match w {
            Work::Forward { from, data } => self.forward(from, *data),
            Work::Keyframe { publisher, track } => self.request_keyframe(publisher, &track),
            Work::Data { from, label, payload } => self.relay_data(from, &label, &payload),
            Work::Connected(id) => {
                let Some(c) = self.clients.get_mut(&id) else { return };
                c.state = lk::participant_info::State::Active;
                c.version += 1;
                let filled: Vec<(u64, String)> = c
                    .slots
                    .iter()
                    .filter_map(|s| match &s.state {
                        SlotState::Filled { publisher, track, .. } => Some((*publisher, track.clone())),
                        _ => None,
                    })
                    .collect();
                self.broadcast_update(id);
                for (publisher, track) in filled {
                    self.request_keyframe(publisher, &track);
                }
            }
        }
    }

    fn forward(&mut self, from: u64, data: MediaData) {
        let Some(src) = self.clients.get_mut(&from) else { return };
        let Some(p) = src.published.iter_mut().find(|p| p.mid == Some(data.mid)) else { return };
        if p.muted {
            return;
        }
        // Simulcast: forward the best layer seen (LiveKit names them q < h < f).
        if let Some(rid) = data.rid {
            let rank = |r: &Rid| match &**r {
                "f" => 3,
                "h" => 2,
                "q" => 1,
                _ => 0,
            };
            match p.layer {
                Some(cur) if rank(&rid) < rank(&cur) => return,
                Some(cur) if cur == rid => {}
                _ => {
                    p.layer = Some(rid);
                    p.last_keyframe_request = None;
                    let track = p.sid.clone();
                    self.work.push_back(Work::Keyframe { publisher: from, track });
                    return;
                }
            }
        }
        let targets = p.subscribers.clone();
        for (to, mid) in targets {
            let Some(dst) = self.clients.get_mut(&to) else { continue };
            if dst.slots.iter().any(|s| s.mid == mid && matches!(s.state, SlotState::Filled { paused: true, .. })) {
                continue;
            }
            let Some(writer) = dst.rtc.writer(mid) else { continue };
            let Some(pt) = writer.match_params(data.params) else { continue };
            if writer.write(pt, data.network_time, data.time, data.data.clone()).is_ok() {
                self.stats.forwarded_frames.fetch_add(1, Ordering::Relaxed);
            }
            self.dirty.insert(to);
        }
    }

    fn request_keyframe(&mut self, publisher: u64, track: &str) {
        let Some(c) = self.clients.get_mut(&publisher) else { return };
        let Some(p) = c.published.iter_mut().find(|p| p.sid == track) else { return };
        if p.kind != Kind::Video
            || p.last_keyframe_request.is_some_and(|t| self.now.saturating_duration_since(t) < KEYFRAME_GAP)
        {
            return;
        }
        let Some(mid) = p.mid else { return };
        p.last_keyframe_request = Some(self.now);
        let rid = p.layer;
        if let Some(mut w) = c.rtc.writer(mid) {
            let _ = w.request_keyframe(rid, KeyframeRequestKind::Pli);
            self.dirty.insert(publisher);
        }
    }

    /// A data packet from `from`: stamped with the sender and passed to the room (or to the named
    /// identities) on the channel it came on.
    #[allow(deprecated)] // older clients put sender and destinations in the user packet
    fn relay_data(&mut self, from: u64, label: &str, payload: &[u8]) {
        let Some(src) = self.clients.get(&from) else { return };
        if !src.permission.can_publish_data {
            return;
        }
        let Ok(mut pkt) = lk::DataPacket::decode(payload) else { return };
        pkt.participant_identity = src.identity.clone();
        pkt.participant_sid = src.sid.clone();
        let mut to: Vec<String> = pkt.destination_identities.clone();
        if let Some(lk::data_packet::Value::User(u)) = &mut pkt.value {
            u.participant_identity = src.identity.clone();
            u.participant_sid = src.sid.clone();
            if to.is_empty() {
                to = u.destination_identities.clone();
            }
        }
        let bytes = pkt.encode_to_vec();
        let members = self.rooms.get(&src.room).map(|r| r.members.clone()).unwrap_or_default();
        for m in members {
            if m == from {
                continue;
            }
            let Some(dst) = self.clients.get_mut(&m) else { continue };
            if !to.is_empty() && !to.contains(&dst.identity) {
                continue;
            }
            let Some(cid) = dst.channel_for(label).or_else(|| dst.channel_for("_reliable")) else { continue };
            if let Some(mut ch) = dst.rtc.channel(cid) {
                let _ = ch.write(true, &bytes);
                self.dirty.insert(m);
            }
        }
    }

    /// A command from the signal side or the backend; it is answered, and its effects settled, before this
    /// returns.
    pub(super) fn handle_command(&mut self, now: Instant, cmd: Command) {
        self.tick(now);
        match cmd {
            Command::Join(j) => self.join(*j),
            Command::Signal(id, m) => self.signal(id, *m),
            Command::Gone(id) => self.leave(id),
            Command::CreateRoom(spec) => {
                self.room(&spec.name, Some(&spec));
            }
            Command::CloseRoom(name) => {
                let members = self.rooms.get(&name).map(|r| r.members.clone()).unwrap_or_default();
                for id in members {
                    if let Some(c) = self.clients.get(&id) {
                        c.send(leave_message(lk::DisconnectReason::RoomDeleted, lk::leave_request::Action::Disconnect));
                    }
                    self.leave(id);
                }
                if self.rooms.remove(&name).is_some() {
                    self.report(SfuEvent::RoomFinished { room: name });
                }
            }
            Command::Participants(room, reply) => {
                let members = self.rooms.get(&room).map(|r| r.members.clone()).unwrap_or_default();
                let ids = members.iter().filter_map(|m| self.clients.get(m)).map(|c| c.identity.clone()).collect();
                let _ = reply.send(ids);
            }
            Command::Remove(room, identity) => {
                if let Some(id) = self.find(&room, &identity) {
                    if let Some(c) = self.clients.get(&id) {
                        c.send(leave_message(
                            lk::DisconnectReason::ParticipantRemoved,
                            lk::leave_request::Action::Disconnect,
                        ));
                    }
                    self.leave(id);
                }
            }
            Command::Mute { room, identity, track, muted, done } => {
                let found = self.find(&room, &identity).is_some_and(|id| self.set_muted(id, &track, muted, true));
                let _ = done.send(found);
            }
        }
        self.settle();
    }

    fn find(&self, room: &str, identity: &str) -> Option<u64> {
        let r = self.rooms.get(room)?;
        r.members.iter().copied().find(|m| self.clients.get(m).is_some_and(|c| c.identity == identity))
    }

    fn room(&mut self, name: &str, spec: Option<&RoomSpec>) -> &mut Room {
        if !self.rooms.contains_key(name) {
            self.report(SfuEvent::RoomStarted { room: name.to_string() });
        }
        let (now, unix_ms) = (self.now, self.unix_ms());
        let room = self.rooms.entry(name.to_string()).or_insert_with(|| Room {
            sid: sid("RM_"),
            created_ms: unix_ms,
            max_participants: 0,
            empty_timeout: 300,
            members: Vec::new(),
            empty_since: Some(now),
        });
        if let Some(s) = spec {
            room.max_participants = s.max_participants;
            room.empty_timeout = s.empty_timeout_secs;
        }
        room
    }

    fn join(&mut self, j: Joining) {
        let room_name = j.claims.video.room.clone();
        let identity = j.claims.sub.clone();
        // The same identity again (a rejoin after a lost connection): the newer one stays.
        if let Some(old) = self.find(&room_name, &identity) {
            if let Some(c) = self.clients.get(&old) {
                c.send(leave_message(lk::DisconnectReason::DuplicateIdentity, lk::leave_request::Action::Disconnect));
            }
            self.leave(old);
        }
        let room = self.room(&room_name, None);
        if room.max_participants > 0 && room.members.len() >= room.max_participants as usize {
            let _ = j.out.send(leave_message(lk::DisconnectReason::JoinFailure, lk::leave_request::Action::Disconnect));
            return;
        }
        room.members.push(j.id);
        room.empty_since = None;
        let room_info = lk::Room {
            sid: room.sid.clone(),
            name: room_name.clone(),
            empty_timeout: room.empty_timeout,
            max_participants: room.max_participants,
            creation_time: room.created_ms / 1000,
            creation_time_ms: room.created_ms,
            num_participants: room.members.len() as u32,
            ..Default::default()
        };
        let mut rtc = Rtc::builder()
            .set_ice_lite(true)
            .clear_codecs()
            .enable_opus(true, false)
            .enable_vp8(true)
            .enable_h264(true)
            .build(self.now);
        if let Ok(c) = Candidate::host(self.media_addr, "udp") {
            rtc.add_local_candidate(c);
        }
        let g = &j.claims.video;
        let permission = lk::ParticipantPermission {
            can_subscribe: g.can_subscribe.unwrap_or(true),
            can_publish: g.can_publish.unwrap_or(true),
            can_publish_data: g.can_publish_data.unwrap_or(true),
            hidden: g.hidden,
            ..Default::default()
        };
        let client = Client {
            sid: sid("PA_"),
            identity: identity.clone(),
            name: j.claims.name.clone(),
            metadata: if j.request.metadata.is_empty() {
                j.claims.metadata.clone()
            } else {
                j.request.metadata.clone()
            },
            room: room_name.clone(),
            auto_subscribe: j.auto_subscribe && permission.can_subscribe,
            permission,
            joined_at_ms: self.unix_ms(),
            version: 1,
            state: lk::participant_info::State::Joined,
            rtc,
            out: j.out,
            next_timeout: self.now,
            published: Vec::new(),
            slots: Vec::new(),
            wanted: Vec::new(),
            slots_asked: (0, 0),
            channels: HashMap::new(),
            connected: false,
        };
        let others: Vec<u64> = self.rooms[&room_name].members.iter().copied().filter(|m| *m != j.id).collect();
        let other_infos: Vec<lk::ParticipantInfo> = others
            .iter()
            .filter_map(|m| self.clients.get(m))
            .filter(|c| !c.permission.hidden)
            .map(Client::info)
            .collect();
        client.send(Resp::Join(lk::JoinResponse {
            room: Some(room_info),
            participant: Some(client.info()),
            other_participants: other_infos,
            server_version: SERVER_VERSION.into(),
            ping_interval: self.ping_interval_secs,
            ping_timeout: self.ping_timeout_secs,
            server_info: Some(lk::ServerInfo {
                edition: lk::server_info::Edition::Standard as i32,
                version: SERVER_VERSION.into(),
                protocol: SERVER_PROTOCOL,
                node_id: "liveclass".into(),
                ..Default::default()
            }),
            client_configuration: Some(lk::ClientConfiguration {
                resume_connection: lk::ClientConfigSetting::Disabled as i32,
                ..Default::default()
            }),
            ..Default::default()
        }));
        let wanted: Vec<(u64, String)> = if client.auto_subscribe {
            others
                .iter()
                .filter_map(|m| self.clients.get(m).map(|c| (m, c)))
                .flat_map(|(m, c)| c.published.iter().filter(|p| p.mid.is_some()).map(move |p| (*m, p.sid.clone())))
                .collect()
        } else {
            Vec::new()
        };
        let hidden = client.permission.hidden;
        let sid = client.sid.clone();
        self.clients.insert(j.id, client);
        if let Some(c) = self.clients.get_mut(&j.id) {
            c.wanted = wanted;
        }
        self.stats.participants.fetch_add(1, Ordering::Relaxed);
        self.report(SfuEvent::ParticipantJoined { room: room_name, identity, sid });
        if !hidden {
            self.broadcast_update(j.id);
        }
        if let Some(offer) = j.request.publisher_offer {
            self.offer(j.id, offer);
        } else {
            self.ask_for_slots(j.id);
        }
    }

    /// Tells the others in `id`'s room about it (state, tracks).
    fn broadcast_update(&mut self, id: u64) {
        let Some(c) = self.clients.get(&id) else { return };
        if c.permission.hidden {
            return;
        }
        let info = c.info();
        let members = self.rooms.get(&c.room).map(|r| r.members.clone()).unwrap_or_default();
        for m in members {
            if m == id {
                continue;
            }
            if let Some(o) = self.clients.get(&m) {
                o.send(Resp::Update(lk::ParticipantUpdate { participants: vec![info.clone()] }));
            }
        }
    }

    fn signal(&mut self, id: u64, m: lk::signal_request::Message) {
        use lk::signal_request::Message as Req;
        if !self.clients.contains_key(&id) {
            return;
        }
        match m {
            Req::Offer(sd) => self.offer(id, sd),
            Req::Trickle(t) => self.trickle(id, &t),
            Req::AddTrack(req) => self.add_track(id, req),
            Req::Mute(m) => {
                self.set_muted(id, &m.sid, m.muted, false);
            }
            Req::Subscription(s) => self.subscription(id, s),
            Req::TrackSetting(s) => {
                // Pause or resume the named tracks; a resumed one needs a keyframe to show at once.
                let mut resumed = Vec::new();
                if let Some(c) = self.clients.get_mut(&id) {
                    for slot in &mut c.slots {
                        if let SlotState::Filled { publisher, track, paused, .. } = &mut slot.state
                            && s.track_sids.contains(track)
                        {
                            *paused = s.disabled;
                            if !s.disabled {
                                resumed.push((*publisher, track.clone()));
                            }
                        }
                    }
                }
                for (p, t) in resumed {
                    self.request_keyframe(p, &t);
                }
            }
            Req::Leave(_) => {
                self.leave(id);
            }
            // The server never offers in single-PC mode; the rest (layers, permissions, sync state,
            // metadata) is not served yet and is safe to ignore.
            _ => {}
        }
    }

    fn trickle(&mut self, id: u64, t: &lk::TrickleRequest) {
        #[derive(serde::Deserialize)]
        struct Init {
            candidate: String,
        }
        let Ok(init) = serde_json::from_str::<Init>(&t.candidate_init) else { return };
        if init.candidate.trim().is_empty() {
            return;
        }
        let Ok(cand) = Candidate::from_sdp_string(&init.candidate) else { return };
        if let Some(c) = self.clients.get_mut(&id) {
            c.rtc.add_remote_candidate(cand);
            self.dirty.insert(id);
        }
    }

    fn add_track(&mut self, id: u64, req: lk::AddTrackRequest) {
        let Some(c) = self.clients.get_mut(&id) else { return };
        if !c.permission.can_publish {
            tracing::debug!(client = %c.identity, "publish refused: the token does not allow it");
            return;
        }
        if let Some(p) = c.published.iter().find(|p| p.cid == req.cid) {
            let info = track_info(p);
            c.send(Resp::TrackPublished(lk::TrackPublishedResponse { cid: req.cid, track: Some(info) }));
            return;
        }
        let p = Published {
            sid: sid("TR_"),
            cid: req.cid.clone(),
            kind: Kind::of_track(req.r#type),
            muted: req.muted,
            req,
            mid: None,
            layer: None,
            last_keyframe_request: None,
            subscribers: Vec::new(),
        };
        let info = track_info(&p);
        c.send(Resp::TrackPublished(lk::TrackPublishedResponse { cid: p.cid.clone(), track: Some(info) }));
        c.published.push(p);
    }

    /// A client's offer: link its own tracks to their m-lines, learn its slots, fill slots with what it
    /// should receive, answer, then tell the room about tracks that just went live.
    fn offer(&mut self, id: u64, sd: lk::SessionDescription) {
        let sections = sdp::sections(&sd.sdp);
        let Some(c) = self.clients.get_mut(&id) else { return };
        let accepted = SdpOffer::from_sdp_string(&sd.sdp)
            .map_err(|e| e.to_string())
            .and_then(|offer| c.rtc.sdp_api().accept_offer(offer).map_err(|e| e.to_string()));
        let answer = match accepted {
            Ok(a) => a,
            Err(e) => {
                // The client's connection can't go on from here: it is told to start over.
                tracing::info!(client = %c.identity, error = %e, "offer refused; asking the client to reconnect");
                c.send(leave_message(lk::DisconnectReason::StateMismatch, lk::leave_request::Action::Reconnect));
                self.leave(id);
                return;
            }
        };
        // Own tracks: msid track id = the AddTrackRequest's cid (else the oldest unlinked of the kind).
        let mut live = Vec::new();
        for s in sections.iter().filter(|s| s.client_sends()) {
            let mid = Mid::from(s.mid.as_str());
            if c.published.iter().any(|p| p.mid == Some(mid)) {
                continue;
            }
            let Some(kind) = Kind::of_section(&s.kind) else { continue };
            let by_cid = c.published.iter().position(|p| p.mid.is_none() && Some(&p.cid) == s.track_id.as_ref());
            let by_kind = || c.published.iter().position(|p| p.mid.is_none() && p.kind == kind);
            if let Some(i) = by_cid.or_else(by_kind) {
                c.published[i].mid = Some(mid);
                live.push(c.published[i].sid.clone());
            }
        }
        // Tracks whose m-line stopped sending are unpublished.
        let stopped: Vec<String> = c
            .published
            .iter()
            .filter(|p| p.mid.is_some_and(|m| sections.iter().any(|s| s.mid == m.to_string() && !s.client_sends())))
            .map(|p| p.sid.clone())
            .collect();
        // Slots: new recvonly m-lines are free; ones that stopped are spent.
        for s in &sections {
            let mid = Mid::from(s.mid.as_str());
            let known = c.slots.iter_mut().find(|x| x.mid == mid);
            match (known, s.is_slot(), Kind::of_section(&s.kind)) {
                (None, true, Some(kind)) => {
                    let asked = if kind == Kind::Audio { &mut c.slots_asked.0 } else { &mut c.slots_asked.1 };
                    *asked = asked.saturating_sub(1);
                    c.slots.push(Slot { mid, kind, state: SlotState::Free })
                }
                (Some(x), false, _) if s.stopped => x.state = SlotState::Spent,
                _ => {}
            }
        }
        let filled_now = self.fill_slots(id);
        let Some(c) = self.clients.get_mut(&id) else { return };
        let mut filled = HashMap::new();
        let mut empty = Vec::new();
        let mut mid_to_track_id = HashMap::new();
        for s in &c.slots {
            match &s.state {
                SlotState::Filled { track, stream, .. } => {
                    filled.insert(s.mid.to_string(), (stream.clone(), track.clone()));
                    mid_to_track_id.insert(s.mid.to_string(), track.clone());
                }
                _ => empty.push(s.mid.to_string()),
            }
        }
        let text = sdp::rewrite_answer(&answer.to_sdp_string(), &filled, &empty);
        c.send(Resp::Answer(lk::SessionDescription { r#type: "answer".into(), sdp: text, id: sd.id, mid_to_track_id }));
        self.dirty.insert(id);
        for (publisher, track) in filled_now {
            self.request_keyframe(publisher, &track);
        }
        for track in stopped {
            self.unpublish(id, &track);
        }
        if !live.is_empty() {
            self.track_live(id, &live);
        }
        self.ask_for_slots(id);
    }

    /// Puts wanted tracks into free slots of their kind; returns what was placed.
    fn fill_slots(&mut self, id: u64) -> Vec<(u64, String)> {
        let Some(c) = self.clients.get(&id) else { return Vec::new() };
        let mut placed = Vec::new();
        let mut plan = Vec::new();
        let mut taken: HashSet<Mid> = HashSet::new();
        for (publisher, track) in &c.wanted {
            let Some(p) = self.clients.get(publisher) else { continue };
            let Some(pt) = p.published.iter().find(|t| &t.sid == track && t.mid.is_some()) else { continue };
            let free =
                c.slots.iter().find(|s| s.kind == pt.kind && s.state == SlotState::Free && !taken.contains(&s.mid));
            if let Some(s) = free {
                taken.insert(s.mid);
                plan.push((*publisher, track.clone(), s.mid, format!("{}|{}", p.sid, track)));
            }
        }
        for (publisher, track, mid, stream) in plan {
            if let Some(c) = self.clients.get_mut(&id) {
                c.wanted.retain(|w| !(w.0 == publisher && w.1 == track));
                if let Some(s) = c.slots.iter_mut().find(|s| s.mid == mid) {
                    s.state = SlotState::Filled { publisher, track: track.clone(), stream, paused: false };
                }
            }
            if let Some(p) = self.clients.get_mut(&publisher)
                && let Some(t) = p.published.iter_mut().find(|t| t.sid == track)
            {
                t.subscribers.push((id, mid));
            }
            placed.push((publisher, track));
        }
        // Wanted tracks that are gone stay out.
        let clients = &self.clients;
        let alive = |p: &u64, t: &String| clients.get(p).is_some_and(|c| c.published.iter().any(|x| &x.sid == t));
        let keep: Vec<(u64, String)> = self.clients[&id].wanted.iter().filter(|(p, t)| alive(p, t)).cloned().collect();
        if let Some(c) = self.clients.get_mut(&id) {
            c.wanted = keep;
        }
        placed
    }

    /// Asks `id` for as many new slots as it has wanted tracks without one, less those already asked for.
    fn ask_for_slots(&mut self, id: u64) {
        let Some(c) = self.clients.get(&id) else { return };
        let (mut audios, mut videos) = (0u32, 0u32);
        for (publisher, track) in &c.wanted {
            let kind =
                self.clients.get(publisher).and_then(|p| p.published.iter().find(|t| &t.sid == track)).map(|t| t.kind);
            match kind {
                Some(Kind::Audio) => audios += 1,
                Some(Kind::Video) => videos += 1,
                None => {}
            }
        }
        // Slots asked for earlier are on their way in the client's next offer.
        let audios = audios.saturating_sub(c.slots_asked.0);
        let videos = videos.saturating_sub(c.slots_asked.1);
        if audios + videos > 0 {
            c.send(Resp::MediaSectionsRequirement(lk::MediaSectionsRequirement {
                num_audios: audios,
                num_videos: videos,
            }));
            if let Some(c) = self.clients.get_mut(&id) {
                c.slots_asked.0 += audios;
                c.slots_asked.1 += videos;
            }
        }
    }

    /// `tracks` of `publisher` can now be forwarded: tell the room, and queue them for subscribers.
    fn track_live(&mut self, publisher: u64, tracks: &[String]) {
        let Some(p) = self.clients.get_mut(&publisher) else { return };
        p.version += 1;
        let room = p.room.clone();
        let identity = p.identity.clone();
        for t in tracks {
            self.report(SfuEvent::TrackPublished {
                room: room.clone(),
                identity: identity.clone(),
                track_sid: t.clone(),
            });
        }
        self.broadcast_update(publisher);
        let members = self.rooms.get(&room).map(|r| r.members.clone()).unwrap_or_default();
        for m in members {
            if m == publisher {
                continue;
            }
            let Some(c) = self.clients.get_mut(&m) else { continue };
            if !c.auto_subscribe {
                continue;
            }
            for t in tracks {
                c.wanted.push((publisher, t.clone()));
            }
            self.ask_for_slots(m);
        }
    }

    fn subscription(&mut self, id: u64, s: lk::UpdateSubscription) {
        let room = match self.clients.get(&id) {
            Some(c) if c.permission.can_subscribe => c.room.clone(),
            _ => return,
        };
        let members = self.rooms.get(&room).map(|r| r.members.clone()).unwrap_or_default();
        for track in &s.track_sids {
            let owner = members
                .iter()
                .copied()
                .find(|m| *m != id && self.clients.get(m).is_some_and(|c| c.published.iter().any(|p| &p.sid == track)));
            let Some(owner) = owner else { continue };
            let Some(c) = self.clients.get_mut(&id) else { return };
            let has_slot = c.slots.iter_mut().find(
                |x| matches!(&x.state, SlotState::Filled { publisher, track: t, .. } if *publisher == owner && t == track),
            );
            match (s.subscribe, has_slot) {
                (true, Some(slot)) => {
                    if let SlotState::Filled { paused, .. } = &mut slot.state {
                        *paused = false;
                    }
                }
                (true, None) => {
                    if !c.wanted.iter().any(|w| w.0 == owner && &w.1 == track) {
                        c.wanted.push((owner, track.clone()));
                    }
                }
                (false, Some(slot)) => {
                    if let SlotState::Filled { paused, .. } = &mut slot.state {
                        *paused = true;
                    }
                }
                (false, None) => c.wanted.retain(|w| !(w.0 == owner && &w.1 == track)),
            }
        }
        self.ask_for_slots(id);
    }

    /// Mutes or unmutes a published track; `by_server` also tells the publisher (an admin's mute).
    fn set_muted(&mut self, id: u64, track: &str, muted: bool, by_server: bool) -> bool {
        let Some(c) = self.clients.get_mut(&id) else { return false };
        let Some(p) = c.published.iter_mut().find(|p| p.sid == track) else { return false };
        if p.muted != muted {
            p.muted = muted;
            c.version += 1;
            if by_server {
                c.send(Resp::Mute(lk::MuteTrackRequest { sid: track.to_string(), muted }));
            }
            self.broadcast_update(id);
            if !muted {
                self.request_keyframe(id, track);
            }
        }
        true
    }

    /// A track is gone: its subscribers' slots are spent and the room is told.
    fn unpublish(&mut self, publisher: u64, track: &str) {
        let Some(c) = self.clients.get_mut(&publisher) else { return };
        let Some(i) = c.published.iter().position(|p| p.sid == track) else { return };
        let p = c.published.remove(i);
        c.version += 1;
        c.send(Resp::TrackUnpublished(lk::TrackUnpublishedResponse { track_sid: p.sid.clone() }));
        for (sub, mid) in p.subscribers {
            if let Some(s) = self.clients.get_mut(&sub).and_then(|c| c.slots.iter_mut().find(|s| s.mid == mid)) {
                s.state = SlotState::Spent;
            }
        }
        for c in self.clients.values_mut() {
            c.wanted.retain(|w| !(w.0 == publisher && w.1 == track));
        }
        self.broadcast_update(publisher);
    }

    /// `id` is gone: its tracks leave with it, the room is told, the orchestrator hears of it.
    fn leave(&mut self, id: u64) {
        let Some(mut c) = self.clients.remove(&id) else { return };
        self.by_addr.retain(|_, v| *v != id);
        self.dirty.remove(&id);
        self.stats.participants.fetch_sub(1, Ordering::Relaxed);
        c.rtc.disconnect();
        if let Some(r) = self.rooms.get_mut(&c.room) {
            r.members.retain(|m| *m != id);
            if r.members.is_empty() {
                r.empty_since = Some(self.now);
            }
        }
        // Its subscriptions.
        for s in &c.slots {
            if let SlotState::Filled { publisher, track, .. } = &s.state
                && let Some(p) =
                    self.clients.get_mut(publisher).and_then(|p| p.published.iter_mut().find(|t| &t.sid == track))
            {
                p.subscribers.retain(|(sub, _)| *sub != id);
            }
        }
        // Its tracks.
        for p in &c.published {
            for (sub, mid) in &p.subscribers {
                if let Some(s) = self.clients.get_mut(sub).and_then(|c| c.slots.iter_mut().find(|s| s.mid == *mid)) {
                    s.state = SlotState::Spent;
                }
            }
        }
        for o in self.clients.values_mut() {
            o.wanted.retain(|w| w.0 != id);
        }
        if !c.permission.hidden {
            c.state = lk::participant_info::State::Disconnected;
            c.version += 1;
            c.published.clear();
            let mut info = c.info();
            info.disconnect_reason = lk::DisconnectReason::ClientInitiated as i32;
            let members = self.rooms.get(&c.room).map(|r| r.members.clone()).unwrap_or_default();
            for m in members {
                if let Some(o) = self.clients.get(&m) {
                    o.send(Resp::Update(lk::ParticipantUpdate { participants: vec![info.clone()] }));
                }
            }
        }
        self.report(SfuEvent::ParticipantLeft { room: c.room.clone(), identity: c.identity, sid: c.sid });
    }
}

#[cfg(test)]
mod tests;

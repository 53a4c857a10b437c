//! The embedded SFU: LiveKit's client protocol (v1, one PeerConnection per client) served by liveclass
//! itself, so the official LiveKit SDKs connect to `ws://<our address>` exactly as to a LiveKit server.
//!
//! Layout, in layers read top to bottom — each module imports only from the ones below it, never back:
//! - `signal` — the HTTP side (`/rtc/v1` WebSocket with binary protobuf `SignalRequest` / `SignalResponse`,
//!   `/rtc/v1/validate`, token checks; the old two-PeerConnection `/rtc` answers 404 so SDKs know it isn't
//!   served); and `embedded` — [`Embedded`], the [`crate::MediaBackend`] over the engine. Both only send
//!   `Command`s through the [`Sfu`] handle.
//! - `driver` — the engine's IO: [`Sfu`] (start, handle) and one thread that owns the UDP socket and feeds
//!   the core datagrams, commands and the time, then sends what it says to send. It decides nothing.
//! - `core` — the engine's state machine, sans-IO as str0m is: every room and peer connection (str0m), the
//!   forwarding of media and data between participants of a room; `now` in, datagrams, [`SfuEvent`]s and the
//!   next timeout out, so its tests run in simulated time. `sdp` — the SDP reading and rewriting LiveKit's
//!   single-PC mode needs.
//! - this file — what the layers share: config, `Command`, `Joining` and the token `Claims` it
//!   carries, [`SfuEvent`], stats, ids, `leave_message`.
//!
//! Seams: the signal tasks and the backend talk to the engine only through `Command`s on a channel; the
//! engine reports participants joining and leaving as [`SfuEvent`]s, which the orchestrator treats like
//! LiveKit's webhooks. Inside the engine, `core` ↔ `driver` is the sans-IO seam: `Core::handle_*` and
//! `Core::poll_*`. See docs/decisions/0006 for why str0m.

mod core;
mod driver;
mod embedded;
pub mod sdp;
mod signal;

use std::{
    net::{IpAddr, SocketAddr},
    sync::{Arc, atomic::AtomicU64},
};

use livekit_protocol as lk;
use serde::Deserialize;
use tokio::sync::{mpsc, oneshot};

pub use driver::Sfu;
pub use embedded::Embedded;
pub use signal::router;

use crate::{Credentials, RoomSpec, token::Times};

/// The version we advertise in `JoinResponse.server_info`. Clients gate features on it (the Rust SDK: RPC from
/// 1.8.0, which is data packets we relay), so it is a promise about what we speak.
pub const SERVER_VERSION: &str = "1.8.4";
/// The protocol number we advertise; clients state theirs and we adapt.
pub const SERVER_PROTOCOL: i32 = 16;

#[derive(Clone)]
pub struct SfuConfig {
    /// Where the media UDP socket binds (port 0: any free port).
    pub udp_bind: SocketAddr,
    /// The address clients are told to send media to (the host candidate's IP); the port is the bound one.
    pub advertise_ip: IpAddr,
    /// Tokens must be signed with this key pair.
    pub credentials: Credentials,
    /// The URL clients connect to (`ws://host:port`); `None`: the address the server listens on, set with
    /// [`Sfu::set_listen_url`] once it is known.
    pub url: Option<String>,
    /// Seconds between client pings, and without one before a client counts as gone.
    pub ping_interval_secs: i32,
    pub ping_timeout_secs: i32,
    /// Unix seconds now, for token validity: the server's clock (see [`system_unix_now`]).
    pub unix_now: UnixNow,
}

/// A source of unix seconds (the orchestrator passes its own `Clock`; tests move it).
pub type UnixNow = Arc<dyn Fn() -> i64 + Send + Sync>;

/// The system clock.
pub fn system_unix_now() -> UnixNow {
    Arc::new(|| now_ms() / 1000)
}

/// What happened in a room, as LiveKit's webhooks tell it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SfuEvent {
    RoomStarted { room: String },
    ParticipantJoined { room: String, identity: String, sid: String },
    ParticipantLeft { room: String, identity: String, sid: String },
    TrackPublished { room: String, identity: String, track_sid: String },
    RoomFinished { room: String },
}

/// A token's claims as LiveKit writes them: a missing `canPublish`, `canSubscribe` or `canPublishData`
/// means allowed, and `nbf` may be absent.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Claims {
    pub iss: String,
    #[serde(default)]
    pub sub: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub metadata: String,
    #[serde(default)]
    pub nbf: Option<i64>,
    pub exp: i64,
    #[serde(default)]
    pub video: Grant,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Grant {
    #[serde(default)]
    pub room: String,
    #[serde(default)]
    pub room_join: bool,
    pub can_publish: Option<bool>,
    pub can_subscribe: Option<bool>,
    pub can_publish_data: Option<bool>,
    #[serde(default)]
    pub hidden: bool,
}

impl Times for Claims {
    fn window(&self) -> (i64, i64) {
        (self.nbf.unwrap_or(i64::MIN), self.exp)
    }
}

/// A participant on its way in: everything the engine needs to seat it.
#[derive(Debug)]
pub(crate) struct Joining {
    pub id: u64,
    pub claims: Claims,
    pub request: lk::JoinRequest,
    pub auto_subscribe: bool,
    pub out: mpsc::UnboundedSender<lk::signal_response::Message>,
}

/// Work for the engine.
#[derive(Debug)]
pub(crate) enum Command {
    Join(Box<Joining>),
    Signal(u64, Box<lk::signal_request::Message>),
    /// The client's WebSocket closed.
    Gone(u64),
    CreateRoom(RoomSpec),
    CloseRoom(String),
    Participants(String, oneshot::Sender<Vec<String>>),
    Remove(String, String),
    Mute {
        room: String,
        identity: String,
        track: String,
        muted: bool,
        done: oneshot::Sender<bool>,
    },
}

/// Counters the benchmark and `/metrics` read.
#[derive(Debug, Default)]
pub struct SfuStats {
    /// Media frames written towards subscribers (a video frame is one or more RTP packets).
    pub forwarded_frames: AtomicU64,
    pub received_datagrams: AtomicU64,
    pub sent_datagrams: AtomicU64,
    pub participants: AtomicU64,
}

/// A LiveKit-style id: `PA_`, `TR_`, `RM_` and 12 random alphanumerics.
pub(crate) fn sid(prefix: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut bytes = [0u8; 12];
    getrandom::fill(&mut bytes).expect("the OS random source");
    let tail: String = bytes.iter().map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char).collect();
    format!("{prefix}{tail}")
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// A `LeaveRequest` telling a client why it is out and whether to come back.
pub(crate) fn leave_message(
    reason: lk::DisconnectReason,
    action: lk::leave_request::Action,
) -> lk::signal_response::Message {
    lk::signal_response::Message::Leave(lk::LeaveRequest {
        can_reconnect: action != lk::leave_request::Action::Disconnect,
        reason: reason as i32,
        action: action as i32,
        regions: None,
    })
}

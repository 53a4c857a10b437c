//! The `Gate` seam: the application decides who a token belongs to, who may join which room with
//! which rights, and what domain commands sent over the socket do. This crate enforces its answers.

use futures::future::BoxFuture;

/// Publishing into rooms as the application (what `Signaling::publish` does), handed to a gate's commands
/// so the gate needs no reference back to the layer that owns it.
pub trait Publisher: Send + Sync {
    /// Publishes `data` to `room` (stored for recovery); the offset it got, or why not.
    fn publish<'a>(&'a self, room: &'a str, data: &'a serde_json::Value) -> BoxFuture<'a, Result<u64, String>>;
}

/// An authenticated connection's user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub user_id: String,
    pub tenant_id: String,
    pub name: String,
    pub role: String,
    /// The sign-in session the token belongs to, if any: ending it closes this connection
    /// (`Signaling::end_session`).
    pub session: Option<String>,
}

/// What a member may do in a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoomGrant {
    pub chat: bool,
    pub draw: bool,
    /// May run commands (e.g. mark attendance).
    pub moderate: bool,
    /// Announce this member's arrival and departure to the room (presence `join`/`leave`
    /// publications). Off for large broadcast rooms, where each join would cost a frame to every
    /// member; their presence is still in every `joined` snapshot.
    pub announce: bool,
}

impl RoomGrant {
    pub const ALL: RoomGrant = RoomGrant { chat: true, draw: true, moderate: true, announce: true };
    pub const PARTICIPANT: RoomGrant = RoomGrant { chat: true, draw: true, moderate: false, announce: true };
    pub const READ_ONLY: RoomGrant = RoomGrant { chat: false, draw: false, moderate: false, announce: false };
}

/// A refusal, sent to the client as an `error` frame with this code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denied {
    pub code: String,
    pub message: String,
}

impl Denied {
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self { code: code.into(), message: message.into() }
    }
}

pub trait Gate: Send + Sync + 'static {
    /// Verifies an access token (and that its session is still signed in).
    fn authenticate<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Result<Identity, Denied>>;
    /// Whether `who` may join `room`, and with which rights.
    fn authorize<'a>(&'a self, who: &'a Identity, room: &'a str) -> BoxFuture<'a, Result<RoomGrant, Denied>>;
    /// Runs a domain command sent in `room`. Its visible effect reaches the room as a publication
    /// made by the application (from its event stream, or through `rooms`), not by this call's answer.
    fn command<'a>(
        &'a self,
        who: &'a Identity,
        room: &'a str,
        name: &'a str,
        args: &'a serde_json::Value,
        rooms: &'a dyn Publisher,
    ) -> BoxFuture<'a, Result<(), Denied>>;
    /// A chat message was published at `offset`; persist it without blocking (e.g. queue a batch write).
    fn chat_posted(&self, _room: &str, _offset: u64, _who: &Identity, _text: &str) {}
}

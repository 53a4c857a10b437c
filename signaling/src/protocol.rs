//! The wire protocol, version 1: JSON text frames, one message per frame, tagged by `type`, and the
//! codes and reasons of the close frames that end a connection ([`Verdict`]).
//! `docs/protocol.md` documents every message with an example.
//!
//! Room publications are the hot path: their frame is built once per publication (see
//! [`publication_frame`]) and the same bytes are queued to every member.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

pub const VERSION: u32 = 1;

/// Close codes (4000-4999 are the application's).
pub mod close {
    pub const UNAUTHORIZED: u16 = 4001;
    pub const HEARTBEAT_TIMEOUT: u16 = 4002;
    pub const SLOW_CONSUMER: u16 = 4008;
    pub const GOING_AWAY: u16 = 1001;
}

/// Why a connection must close: the close frame's code and reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    pub code: u16,
    pub reason: &'static str,
}

impl Verdict {
    pub const SLOW_CONSUMER: Verdict = Verdict { code: close::SLOW_CONSUMER, reason: "slow consumer" };
    pub const SHUTTING_DOWN: Verdict = Verdict { code: close::GOING_AWAY, reason: "server shutting down" };
    pub const UNAUTHORIZED: Verdict = Verdict { code: close::UNAUTHORIZED, reason: "unauthorized" };
    /// The connection's sign-in session was signed out.
    pub const SESSION_REVOKED: Verdict = Verdict { code: close::UNAUTHORIZED, reason: "session revoked" };
    pub const HEARTBEAT_TIMEOUT: Verdict = Verdict { code: close::HEARTBEAT_TIMEOUT, reason: "heartbeat timeout" };
    /// The connection couldn't join its user channel (the bus is unavailable).
    pub const UNAVAILABLE: Verdict = Verdict { code: close::GOING_AWAY, reason: "temporarily unavailable" };
}

/// Where a room's stream stands: `offset` increases by one per stored publication; `epoch` changes
/// when the history is lost (e.g. a restarted in-memory node, a flushed Redis), so offsets from an
/// old epoch mean nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamPosition {
    pub epoch: String,
    pub offset: u64,
}

/// A whiteboard mutation. The server sequences them; everyone applies them in offset order.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case", deny_unknown_fields)]
pub enum BoardOp {
    /// Create or replace object `key`.
    Put {
        key: String,
        object: serde_json::Value,
    },
    Delete {
        key: String,
    },
    Clear,
}

impl BoardOp {
    pub fn is_valid(&self) -> bool {
        match self {
            BoardOp::Put { key, .. } | BoardOp::Delete { key } => !key.is_empty() && key.len() <= 64,
            BoardOp::Clear => true,
        }
    }
}

/// Frames a client sends.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientMessage {
    /// First frame when the token wasn't given in the URL; it may join a room at once, as a `join` would.
    Auth {
        token: String,
        #[serde(default)]
        join: Option<String>,
        #[serde(default)]
        recover: Option<StreamPosition>,
    },
    /// Join a room; `recover` asks for what was missed since a position seen earlier.
    Join {
        #[serde(default)]
        id: Option<u64>,
        room: String,
        #[serde(default)]
        recover: Option<StreamPosition>,
    },
    Leave {
        #[serde(default)]
        id: Option<u64>,
        room: String,
    },
    Chat {
        #[serde(default)]
        id: Option<u64>,
        room: String,
        text: String,
    },
    Draw {
        #[serde(default)]
        id: Option<u64>,
        room: String,
        op: BoardOp,
    },
    Hand {
        #[serde(default)]
        id: Option<u64>,
        room: String,
        raised: bool,
    },
    React {
        #[serde(default)]
        id: Option<u64>,
        room: String,
        emoji: String,
    },
    /// A domain command handled by the application (e.g. `mark_attendance`); the room sees its effect.
    Command {
        #[serde(default)]
        id: Option<u64>,
        room: String,
        name: String,
        #[serde(default)]
        args: serde_json::Value,
    },
    Ping {
        #[serde(default)]
        id: Option<u64>,
    },
}

impl ClientMessage {
    /// The request id the client attached, echoed in `ack` and `error`.
    pub fn id(&self) -> Option<u64> {
        match self {
            ClientMessage::Auth { .. } => None,
            ClientMessage::Join { id, .. }
            | ClientMessage::Leave { id, .. }
            | ClientMessage::Chat { id, .. }
            | ClientMessage::Draw { id, .. }
            | ClientMessage::Hand { id, .. }
            | ClientMessage::React { id, .. }
            | ClientMessage::Command { id, .. }
            | ClientMessage::Ping { id } => *id,
        }
    }
}

/// One connected member as presence shows them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Member {
    pub user_id: String,
    pub name: String,
    pub role: String,
    /// Connections (devices) this user has in the room.
    pub devices: u32,
}

/// A stored publication, as sent in `joined.history`.
#[derive(Debug, Clone, Serialize)]
pub struct HistoryItem<'a> {
    pub offset: u64,
    pub data: &'a RawValue,
}

#[derive(Debug, Clone, Serialize)]
pub struct BoardSnapshot {
    /// The offset of the last operation folded into `objects`; apply later `draw` messages on top.
    pub offset: u64,
    pub objects: Vec<BoardObject>,
}

#[derive(Debug, Clone, Serialize)]
pub struct BoardObject {
    pub key: String,
    pub object: Box<RawValue>,
}

/// Frames the server sends (other than room publications, which use [`publication_frame`]).
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage<'a> {
    Welcome {
        version: u32,
        user_id: &'a str,
        connection_id: u64,
        heartbeat_secs: u64,
    },
    Joined {
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<u64>,
        room: &'a str,
        position: StreamPosition,
        /// True when `recover` was asked for and everything missed is in `history`.
        recovered: bool,
        /// Publications after the recover position, or the most recent ones for a fresh join.
        history: Vec<HistoryItem<'a>>,
        /// Members in the room, by user id, at most the server's snapshot limit.
        presence: Vec<Member>,
        /// How many members (users) the room has, listed or not.
        presence_total: usize,
        board: BoardSnapshot,
    },
    Left {
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<u64>,
        room: &'a str,
    },
    /// Recovery was asked for but isn't possible (window exceeded or epoch changed): reload state.
    NotRecoverable {
        room: &'a str,
        position: StreamPosition,
    },
    Ack {
        id: u64,
        #[serde(skip_serializing_if = "Option::is_none")]
        offset: Option<u64>,
    },
    Error {
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<u64>,
        /// Set when the error refuses a join: the room asked for (a join made while connecting has no `id`).
        #[serde(skip_serializing_if = "Option::is_none")]
        room: Option<&'a str>,
        code: &'a str,
        message: &'a str,
    },
    /// Removed from a room by the server (e.g. consent revoked); the client shouldn't rejoin.
    Kicked {
        room: &'a str,
        reason: &'a str,
    },
    Pong {
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<u64>,
    },
}

impl ServerMessage<'_> {
    pub fn to_text(&self) -> String {
        serde_json::to_string(self).expect("server messages serialize")
    }
}

/// The frame of a room publication: `{"type":"message","room":…,"epoch":…,"offset":…,"data":…}`.
/// `offset` is 0 for ephemeral publications (presence, reactions), which aren't stored or recovered
/// and carry no `epoch`.
pub fn publication_frame(room: &str, epoch: &str, offset: u64, data: &str) -> String {
    let room = serde_json::to_string(room).expect("strings serialize");
    let mut s = String::with_capacity(room.len() + epoch.len() + data.len() + 64);
    s.push_str(r#"{"type":"message","room":"#);
    s.push_str(&room);
    if offset != 0 {
        s.push_str(r#","epoch":"#);
        s.push_str(&serde_json::to_string(epoch).expect("strings serialize"));
    }
    s.push_str(r#","offset":"#);
    s.push_str(&offset.to_string());
    s.push_str(r#","data":"#);
    s.push_str(data);
    s.push('}');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publication_frames_are_valid_json() {
        let f = publication_frame("meeting:\"x\"", "e1", 7, r#"{"kind":"chat","text":"hi"}"#);
        let v: serde_json::Value = serde_json::from_str(&f).unwrap();
        assert_eq!(v["type"], "message");
        assert_eq!(v["room"], "meeting:\"x\"");
        assert_eq!(v["offset"], 7);
        assert_eq!(v["epoch"], "e1");
        let ephemeral: serde_json::Value = serde_json::from_str(&publication_frame("r", "e1", 0, "{}")).unwrap();
        assert!(ephemeral.get("epoch").is_none());
        assert_eq!(v["data"]["text"], "hi");
    }

    #[test]
    fn client_messages_parse() {
        let m: ClientMessage = serde_json::from_str(
            r#"{"type":"draw","id":3,"room":"r","op":{"action":"put","key":"a","object":{"x":1}}}"#,
        )
        .unwrap();
        assert_eq!(m.id(), Some(3));
        assert!(matches!(m, ClientMessage::Draw { op: BoardOp::Put { .. }, .. }));
        let m: ClientMessage =
            serde_json::from_str(r#"{"type":"join","room":"meeting:1","recover":{"epoch":"e","offset":4}}"#).unwrap();
        match m {
            ClientMessage::Join { recover: Some(p), .. } => assert_eq!(p.offset, 4),
            other => panic!("{other:?}"),
        }
        assert!(serde_json::from_str::<ClientMessage>(r#"{"type":"ping","extra":1}"#).is_err());
        assert!(serde_json::from_str::<ClientMessage>(r#"{"type":"launch"}"#).is_err());
    }
}

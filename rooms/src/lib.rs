//! liveclass rooms: media rooms for lessons and meetings.
//!
//! Layout: this file holds the [`MediaBackend`] seam and two of its backends: [`NoMedia`] (media turned off: a lesson's
//! room is a name — also the real-time room that carries chat, whiteboard and presence — and join tokens are minted but
//! no server consumes them) and [`LiveKit`] (`livekit`: a LiveKit server, its RoomService over Twirp with JSON bodies).
//! `sfu` — the embedded SFU (the default backend, [`sfu::Embedded`]): LiveKit's client protocol v1 served by this
//! process, media forwarded by one str0m engine thread; its layers, top to bottom: `signal` and `embedded` (the
//! WebSocket and the backend, which send commands) → `driver` (the thread and UDP socket) → `core` (the sans-IO state
//! machine, tested in simulated time) → `sfu/mod.rs`'s shared types. `fake` (feature `fake`) — `FakeLiveKit`, a local
//! RoomService for tests. `token` — LiveKit access tokens (HS256, `video` grants), encoded and verified; `webhook` —
//! LiveKit webhook deliveries verified as LiveKit signs them.
//!
//! Seams: `MediaBackend` — create/close a room, mint a join token for an identity with grants, list and remove
//! participants, mute a track. Participant events arrive as LiveKit webhooks, or as `sfu::SfuEvent`s from the
//! embedded SFU, which the orchestrator handles alike. Inside `sfu`, the engine's core and its driver meet at a
//! sans-IO seam (input and `now` in, output out). Not built yet: recording.

#[cfg(feature = "fake")]
pub mod fake;
mod livekit;
pub mod sfu;
pub mod token;
pub mod webhook;

pub use livekit::LiveKit;

use futures::future::BoxFuture;

/// A room to open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomSpec {
    /// Unique and stable for its lesson, e.g. `lesson:<booking id>`: creating it twice opens one room.
    pub name: String,
    pub max_participants: u32,
    /// Seconds an empty room stays open.
    pub empty_timeout_secs: u32,
}

/// An open room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomInfo {
    pub name: String,
    /// Which backend holds it (`none`, `livekit`, `embedded`).
    pub backend: &'static str,
}

#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    /// Worth retrying (network, 5xx).
    #[error("media server unavailable: {0}")]
    Unavailable(String),
    #[error("media server refused the request: {0}")]
    Rejected(String),
    #[error("no such room or participant")]
    NotFound,
}

/// What a participant may do in a room.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Permissions {
    pub publish: bool,
    pub subscribe: bool,
    pub data: bool,
    pub admin: bool,
    /// Present without being seen (observers).
    pub hidden: bool,
}

/// A join token to mint.
#[derive(Debug, Clone)]
pub struct JoinRequest<'a> {
    pub room: &'a str,
    pub identity: &'a str,
    pub name: &'a str,
    /// JSON for clients (role, lesson, consent scopes).
    pub metadata: String,
    pub permissions: Permissions,
    pub now_unix: i64,
    pub ttl_secs: i64,
}

/// What a client needs to join: where, and the token (LiveKit's format whatever the backend).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Join {
    pub backend: &'static str,
    /// The media server's URL; `None` when no media server is configured.
    pub url: Option<String>,
    pub token: String,
    pub expires_at_unix: i64,
}

/// An API key pair tokens are signed with.
#[derive(Clone)]
pub struct Credentials {
    pub api_key: String,
    pub api_secret: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials").field("api_key", &self.api_key).field("api_secret", &"[redacted]").finish()
    }
}

impl Credentials {
    /// A LiveKit access token for `req`.
    pub fn mint(&self, req: &JoinRequest<'_>) -> (String, i64) {
        let exp = req.now_unix + req.ttl_secs.max(1);
        let p = req.permissions;
        let claims = token::Claims {
            iss: self.api_key.clone(),
            sub: req.identity.to_string(),
            name: req.name.to_string(),
            metadata: req.metadata.clone(),
            nbf: req.now_unix,
            exp,
            video: token::VideoGrant {
                room: req.room.to_string(),
                room_join: true,
                can_publish: p.publish,
                can_subscribe: p.subscribe,
                can_publish_data: p.data,
                room_admin: p.admin,
                hidden: p.hidden,
                ..Default::default()
            },
        };
        (token::encode(&self.api_secret, &claims), exp)
    }
}

pub trait MediaBackend: Send + Sync + 'static {
    fn name(&self) -> &'static str;
    /// A join token for `req` and where to use it.
    fn join(&self, req: &JoinRequest<'_>) -> Join;
    /// Opens `spec.name`, or returns the open room of that name (idempotent).
    fn create_room<'a>(&'a self, spec: &'a RoomSpec) -> BoxFuture<'a, Result<RoomInfo, MediaError>>;
    /// Closes a room, disconnecting whoever is in it. Closing a missing room is not an error.
    fn close_room<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<(), MediaError>>;
    /// The identities in a room now (empty for a missing room).
    fn participants<'a>(&'a self, room: &'a str) -> BoxFuture<'a, Result<Vec<String>, MediaError>>;
    /// Disconnects one participant; one who isn't there is not an error.
    fn remove_participant<'a>(&'a self, room: &'a str, identity: &'a str) -> BoxFuture<'a, Result<(), MediaError>>;
    /// Mutes (or unmutes) one published track of a participant.
    fn mute_track<'a>(
        &'a self,
        room: &'a str,
        identity: &'a str,
        track_sid: &'a str,
        muted: bool,
    ) -> BoxFuture<'a, Result<(), MediaError>>;
}

/// A room spec's name is its identity: there is no room without one.
pub(crate) fn named(spec: &RoomSpec) -> Result<(), MediaError> {
    if spec.name.is_empty() {
        return Err(MediaError::Rejected("a room needs a name".into()));
    }
    Ok(())
}

/// No media server: rooms exist as names only (see the crate doc). Tokens are signed with a key of this
/// process, so they are well-formed but nothing accepts them.
#[derive(Debug, Clone)]
pub struct NoMedia {
    pub credentials: Credentials,
}

impl MediaBackend for NoMedia {
    fn name(&self) -> &'static str {
        "none"
    }
    fn join(&self, req: &JoinRequest<'_>) -> Join {
        let (token, expires_at_unix) = self.credentials.mint(req);
        Join { backend: self.name(), url: None, token, expires_at_unix }
    }
    fn create_room<'a>(&'a self, spec: &'a RoomSpec) -> BoxFuture<'a, Result<RoomInfo, MediaError>> {
        Box::pin(async move {
            named(spec)?;
            Ok(RoomInfo { name: spec.name.clone(), backend: self.name() })
        })
    }
    fn close_room<'a>(&'a self, _name: &'a str) -> BoxFuture<'a, Result<(), MediaError>> {
        Box::pin(async { Ok(()) })
    }
    /// Nobody is ever in a room without a media server.
    fn participants<'a>(&'a self, _room: &'a str) -> BoxFuture<'a, Result<Vec<String>, MediaError>> {
        Box::pin(async { Ok(Vec::new()) })
    }
    fn remove_participant<'a>(&'a self, _room: &'a str, _identity: &'a str) -> BoxFuture<'a, Result<(), MediaError>> {
        Box::pin(async { Ok(()) })
    }
    /// No tracks exist without a media server.
    fn mute_track<'a>(&'a self, _: &'a str, _: &'a str, _: &'a str, _: bool) -> BoxFuture<'a, Result<(), MediaError>> {
        Box::pin(async { Err(MediaError::NotFound) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn no_media_rooms_are_names_and_creating_twice_is_the_same_room() {
        let spec = RoomSpec { name: "lesson:1".into(), max_participants: 2, empty_timeout_secs: 300 };
        let none = NoMedia { credentials: creds() };
        let a = none.create_room(&spec).await.unwrap();
        assert_eq!(a, none.create_room(&spec).await.unwrap());
        assert_eq!(a.backend, "none");
        let nameless = RoomSpec { name: String::new(), ..spec };
        assert!(none.create_room(&nameless).await.is_err());
        none.close_room("lesson:1").await.unwrap();
    }

    fn creds() -> Credentials {
        Credentials { api_key: "APIkey".into(), api_secret: "s3cret-s3cret-s3cret".into() }
    }

    #[test]
    fn join_tokens_carry_the_grants_for_the_room() {
        let lk = LiveKit::new("wss://media.example", creds());
        assert_eq!(lk.api_url, "https://media.example");
        let perms = Permissions { publish: true, subscribe: true, data: true, admin: false, hidden: false };
        let req = JoinRequest {
            room: "lesson:1",
            identity: "user-1",
            name: "Ada",
            metadata: "{}".into(),
            permissions: perms,
            now_unix: 10_000,
            ttl_secs: 600,
        };
        let join = lk.join(&req);
        assert_eq!(
            (join.backend, join.url.as_deref(), join.expires_at_unix),
            ("livekit", Some("wss://media.example"), 10_600)
        );
        let c = token::decode("s3cret-s3cret-s3cret", &join.token, 10_001).unwrap();
        assert_eq!((c.iss.as_str(), c.sub.as_str(), c.video.room.as_str()), ("APIkey", "user-1", "lesson:1"));
        assert!(c.video.room_join && c.video.can_publish && c.video.can_subscribe && !c.video.room_admin);
        assert_eq!(NoMedia { credentials: creds() }.join(&req).url, None);
    }
}

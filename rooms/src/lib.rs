//! liveclass rooms: media rooms for lessons and meetings.
//!
//! Layout: this file holds the [`MediaBackend`] seam and [`NoMedia`], the backend used until a media server
//! is configured: it records that a lesson has a room (its name is also the real-time room that carries
//! chat, whiteboard and presence) without any audio or video.
//!
//! Seams: `MediaBackend` — create and close rooms today. The media issue grows it (join tokens with grants,
//! participants, events) and adds the LiveKit backend (access tokens, RoomService over Twirp, signed
//! webhooks) and the embedded SFU speaking LiveKit's client protocol (`/rtc/v1`, see
//! `../shared/LIVEKIT-COMPAT.md`).

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
}

pub trait MediaBackend: Send + Sync + 'static {
    fn name(&self) -> &'static str;
    /// Opens `spec.name`, or returns the open room of that name (idempotent).
    fn create_room<'a>(&'a self, spec: &'a RoomSpec) -> BoxFuture<'a, Result<RoomInfo, MediaError>>;
    /// Closes a room, disconnecting whoever is in it. Closing a missing room is not an error.
    fn close_room<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<(), MediaError>>;
}

/// No media server: rooms exist as names only (see the crate doc).
#[derive(Debug, Default, Clone, Copy)]
pub struct NoMedia;

impl MediaBackend for NoMedia {
    fn name(&self) -> &'static str {
        "none"
    }
    fn create_room<'a>(&'a self, spec: &'a RoomSpec) -> BoxFuture<'a, Result<RoomInfo, MediaError>> {
        Box::pin(async move {
            if spec.name.is_empty() {
                return Err(MediaError::Rejected("a room needs a name".into()));
            }
            Ok(RoomInfo { name: spec.name.clone(), backend: self.name() })
        })
    }
    fn close_room<'a>(&'a self, _name: &'a str) -> BoxFuture<'a, Result<(), MediaError>> {
        Box::pin(async { Ok(()) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn no_media_rooms_are_names_and_creating_twice_is_the_same_room() {
        let spec = RoomSpec { name: "lesson:1".into(), max_participants: 2, empty_timeout_secs: 300 };
        let a = NoMedia.create_room(&spec).await.unwrap();
        assert_eq!(a, NoMedia.create_room(&spec).await.unwrap());
        assert_eq!(a.backend, "none");
        let nameless = RoomSpec { name: String::new(), ..spec };
        assert!(NoMedia.create_room(&nameless).await.is_err());
        NoMedia.close_room("lesson:1").await.unwrap();
    }
}

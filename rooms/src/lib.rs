//! liveclass rooms: media rooms (not built yet).
//!
//! What will live here: the `MediaBackend` seam (create/close room, mint join tokens with grants,
//! list/remove/mute participants, recording, participant events); the LiveKit backend (access
//! tokens, RoomService over Twirp, signed webhooks); and the embedded SFU speaking LiveKit's client
//! protocol (`/rtc/v1`), see `../shared/LIVEKIT-COMPAT.md`.

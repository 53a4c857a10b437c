//! liveclass signaling: the real-time layer (not built yet).
//!
//! What will live here: the typed, versioned WebSocket protocol (serde tagged enums, documented in
//! `docs/protocol.md`); connection handling with bounded, coalescing outgoing queues; rooms and user
//! channels with per-room epoch + offset; presence; history and recovery; and the two seams the
//! rest of the system plugs into — `Bus` (publish/subscribe/history: in-process and Redis) and
//! `PresenceStore` (in-process and Redis with expiry).

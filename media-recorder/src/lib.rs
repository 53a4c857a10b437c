//! liveclass media recorder: lesson recordings (not built yet).
//!
//! What will live here: per-track files written from the embedded SFU, and LiveKit egress control
//! for deployments on the LiveKit backend.

//! liveclass signaling: the real-time layer.
//!
//! Layout: `protocol` (the versioned JSON wire messages), `bus` (the `Bus` seam: room streams with
//! offsets, history windows, whiteboard snapshots, cross-node fan-out; `MemoryBus`), `presence`
//! (the `PresenceStore` seam with expiring entries; `MemoryPresence`).
//!
//! Seams: `Bus` and `PresenceStore` vary by deployment (in-process, Redis). This crate knows nothing
//! of classes or users' rights: the application supplies them through the `Gate` trait.

pub mod bus;
pub mod presence;
pub mod protocol;

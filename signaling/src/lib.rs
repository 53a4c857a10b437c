//! liveclass signaling: the real-time layer.
//!
//! Layout: `protocol` (the versioned JSON wire messages), `bus` (the `Bus` seam: room streams with
//! offsets, history windows, whiteboard snapshots, cross-node fan-out; `MemoryBus`), `presence`
//! (the `PresenceStore` seam with expiring entries; `MemoryPresence`), `hub` (this node's rooms and
//! fan-out into per-connection bounded queues), `connection` (one socket's task), `gate` (the
//! application's answers: who is this token, may they join, what does a command do).
//!
//! Seams: `Bus` and `PresenceStore` vary by deployment (in-process, Redis); `Gate` is implemented by
//! the application. This crate knows nothing of classes or users' rights. [`Signaling`] is the
//! handle the application composes: it serves `/ws` and publishes into rooms.

pub mod bus;
pub mod connection;
pub mod gate;
pub mod hub;
pub mod node;
pub mod presence;
pub mod protocol;
pub mod redis_bus;

pub use connection::{WsQuery, upgrade};
pub use node::{Config, Signaling};

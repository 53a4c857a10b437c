//! liveclass signaling: the real-time layer. WebSocket protocol, rooms, presence, history and recovery,
//! backpressure.
//!
//! Layout, in layers from top to bottom. A module imports only from layers below its own, never from one
//! above or beside it:
//! - `connection`: one socket's task, from the `/ws` upgrade ([`upgrade`]) to its close frame:
//!   authentication, the read loop (rate limit, grant checks, dispatch to the bus or the gate) and the
//!   batched write side.
//! - `node`: [`Signaling`], the handle the application composes (hub, bus, presence, gate, [`Config`]);
//!   it publishes into rooms, kicks, and closes this node's connections at shutdown.
//! - `hub`: this node's rooms. `Fanout` holds the local members and pushes live publications into each
//!   connection's bounded `SendQueue` (it is the bus's handler); `Hub` joins and leaves, and keeps the
//!   node subscribed on the bus to exactly the rooms it has members in.
//!   `redis_bus`: `RedisBus` and `RedisPresence`, the two seams on Redis, so rooms span nodes.
//! - `presence`: the `PresenceStore` seam, one expiring entry per connection; `MemoryPresence`.
//! - `bus`: the `Bus` seam (room streams with offsets, history windows, whiteboard snapshots, cross-node
//!   fan-out) and `BusHandler`, what a bus delivers into; `MemoryBus`.
//!   `gate`: the `Gate` seam.
//! - `protocol`: the versioned JSON wire messages and the close frames' codes and reasons (`Verdict`).
//!
//! Seams: `Bus` and `PresenceStore` vary by deployment (in-process, Redis); `Gate` is implemented by the
//! application (who a token belongs to, who may join which room, what a command does). This crate knows
//! nothing of classes or users' rights.
//!
//! Wiring reads top to bottom; nothing is set after construction: a `Fanout`, the bus built with it as its
//! handler, `Hub::new(fanout, bus)`, then `Signaling::new(hub, presence, gate, config)`.
//! `Signaling::in_process` does all of it on the in-process bus and presence.

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

//! liveclass orchestrator: the domain core and the composition root.
//!
//! Layout, in layers from the bottom up. A module imports only from its own layer or those below it. The
//! crate root and a parent module may use what they declare; nothing else may form an import cycle
//! (`scripts/check-cycles.py`, run in CI). `docs/ARCHITECTURE.md` opens with the full picture.
//! - Foundations, which know no domain: `ids`, `clock`, `config`, `db` (one `sqlx::Any` pool over SQLite or
//!   PostgreSQL, migrations, `text_enum!`), `error` (`ApiError`, the one mapping of errors to HTTP), `csv`;
//!   `auth` (tokens, roles as extractors, login limits counted before the password is checked, revocation of
//!   signed-out sessions), `request` (`ClientInfo`), `metrics`; `events` (`DomainEvent` and the enums it
//!   carries), `audit`, `idempotency`; `outbox` (stores serialized events with each change, then dispatches
//!   them); `jobs` (the durable queue: one `BackgroundJob` struct per kind, declared in its domain); the
//!   `mailer` seam with its SMTP transport, and `calendar`'s iCalendar text.
//! - Domains, each with one `Ctx` built from the app state in `app`. `identity` (tenants, users, sessions)
//!   is under all the others. Above it `gamification` (XP, levels, streaks, badges, from events), `consent`
//!   (parents' per-scope consent for minors, the `consent::ensure` gate), `classes` (courses, classes,
//!   meetings, enrollments, credit ledger, attendance, unlocks) and `money` (the double-entry ledger,
//!   reports, Stripe Connect). Then, step by step: the `bookings` core (`mod.rs`, `policy`, `tutors`,
//!   `schedule` with the jobs as data, `payments`); `mailer::notices` (what each mail says, reading that
//!   core), with `consent::requests` and `calendar::feed` above it; bookings' `packages` and `lifecycle`;
//!   bookings' `checkout` (settling money that arrived) and `jobs` (what the booking jobs do).
//! - Live rooms: `live` (the path lessons and meetings share: seats, consents, the window, media join
//!   tokens), under `bookings::room` and `classes::room` (each domain's seat rule and join handler).
//! - The HTTP edge: `webhooks` (Stripe's signed calls), `media` (LiveKit's webhooks and the embedded SFU's
//!   events: attendance segments, lessons started and ended by presence), `realtime` (the signaling `Gate`,
//!   domain events pushed to rooms, chat persistence).
//! - The composition root: `app` (`AppState` and every `FromRef`; each `Ctx` is built there), `server`
//!   (router, middleware, startup and graceful shutdown), `listener` (the accept loop: connection caps,
//!   header and idle timeouts, draining), `webui`, `seed` (`seed-demo`).
//!
//! Seams: the [`clock::Clock`] (tests move time), the database backend (chosen by URL), the outbox's durable
//! consumers and live subscribers, the [`mailer::Mailer`] (the embedded mailbox, or SMTP when `smtp_url` is
//! set), `billing::PaymentProvider` (offline or Stripe) and `rooms::MediaBackend` (the embedded SFU, LiveKit,
//! or none), both chosen in `Server::build`, and signaling's `Bus` and `PresenceStore` (in-process, or Redis
//! when `redis_url` is set). `webui` serves the browser app that `build.rs` builds from `web/` and embeds (or
//! a build on disk, `web_dir`). The `liveclass` binary (`main.rs`) only reads its arguments and configuration
//! and runs the chosen command; `Server::build` wires the seams together.

pub mod app;
pub mod audit;
pub mod auth;
pub mod bookings;
pub mod calendar;
pub mod classes;
pub mod clock;
pub mod config;
pub mod consent;
pub mod csv;
pub mod db;
pub mod error;
pub mod events;
pub mod gamification;
pub mod idempotency;
pub mod identity;
pub mod ids;
pub mod jobs;
pub mod listener;
pub mod live;
pub mod mailer;
pub mod media;
pub mod metrics;
pub mod money;
pub mod outbox;
pub mod realtime;
pub mod request;
pub mod seed;
pub mod server;
pub mod webhooks;
pub mod webui;

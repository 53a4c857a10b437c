//! liveclass orchestrator: the domain core and the composition root.
//!
//! Layout — one module per domain noun, each holding its rules, storage and routes together:
//! - `identity` (tenants, users, sessions) and `auth` (tokens, roles as extractors, login limits counted
//!   before the password is checked, revocation of signed-out sessions);
//! - `classes` (courses, classes, meetings, enrollments, credit ledger, attendance, lesson unlocks)
//!   and `gamification` (XP, levels, streaks, badges, leaderboards);
//! - `audit` (security log) and `outbox` (domain events written with each change, then dispatched);
//! - `consent` (parents' per-scope consent for minors: requests, decisions, revocation, and the
//!   `consent::ensure` gate) and `mailer` (mail queued with the change that causes it: the embedded mailbox,
//!   SMTP sent by jobs, and what each mail says in the reader's own time zone);
//! - `calendar` (iCalendar text for lesson invitations, and each user's private feed by token);
//! - `bookings` (the 1:1 marketplace: tutors' availability and slots, holds, checkout and payments,
//!   cancellations and no-shows by the tenant's policy, packages, refunds, payouts, and their jobs);
//! - `media` (presence from LiveKit's webhooks or the embedded SFU: attendance segments of media rooms;
//!   lessons started and ended by presence);
//! - `jobs` (the durable job queue: jobs enqueued with a change, run later by a runner on every node,
//!   retried with backoff; admin listing and retry);
//! - plumbing beside them: `config`, `db` (one `sqlx::Any` pool over SQLite or PostgreSQL),
//!   `error` (the single error → HTTP mapping), `idempotency`, `metrics`, `listener` (the accept
//!   loop: connection caps, header and idle timeouts, draining), `server` (router, middleware, startup
//!   and graceful shutdown), `app` (the handles handlers extract).
//!
//! Seams: the [`clock::Clock`] (tests move time), the database backend (chosen by URL), the
//! outbox's durable consumers and live subscribers, the [`mailer::Mailer`] (the embedded mailbox, or SMTP
//! when `smtp_url` is set), `billing::PaymentProvider` (offline or Stripe) and `rooms::MediaBackend` (the
//! embedded SFU, LiveKit, or none), both chosen in `Server::build`; `webui` serves the browser app that
//! `build.rs` builds from `web/` and embeds (or a build on disk, `web_dir`). The `liveclass` binary
//! (`main.rs`) only parses arguments and wires these together.

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

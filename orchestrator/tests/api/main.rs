//! HTTP-level tests of the real server. One test binary (faster to link than one per file); each test
//! gets its own server and database (see `helpers`). Set `TEST_DATABASE_URL` to run on PostgreSQL.

mod bookings;
mod classes;
mod cli;
mod consent;
mod directory;
mod gamification;
mod helpers;
mod http;
mod idempotency;
mod identity;
mod jobs;
mod lifecycle;
mod mail;
mod media;
mod multinode;
mod outbox;
mod realtime;
mod schema;
mod security;
mod stripe;
mod walkthrough;

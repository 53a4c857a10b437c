//! liveclass scheduling: when a tutor can be booked, and when a failed job runs again. Pure time logic.
//!
//! Layout (modules are nouns):
//! - `availability` — what a tutor publishes: [`WeeklyRule`]s and [`Exception`]s (time off in UTC or in the
//!   tutor's wall-clock time, extra hours on a date), in the tutor's IANA zone, as an [`Availability`].
//! - `slots` — [`Policy`] (lesson lengths, buffers, notice, daily cap, horizon), [`Busy`] time (bookings and
//!   holds), and [`slots()`], which lists bookable [`Slot`]s in UTC; [`Slot::in_zone`] and [`viewer_days`]
//!   translate for a viewer. The module doc states every rule (granularity, buffers, cap, range).
//! - `span` (private) — half-open UTC spans and the one place wall-clock time becomes instants. DST rule:
//!   a window is every instant whose wall-clock reading falls inside it, so a spring-forward skips the missing
//!   hour and a fall-back includes both copies of the repeated one.
//! - `retry` — the durable job queue's [`RetryPolicy`]: exponential backoff capped at a maximum delay, and
//!   [`Retry::GiveUp`] after a number of failures.
//! - `error` — [`ScheduleError`], the crate's only error: invalid input.
//!
//! Seams: none. Everything here is a pure function of its arguments, with `now` passed in (no clock is read);
//! the orchestrator (`bookings::tutors`) loads rules, exceptions and busy items from storage, lists slots with
//! [`slots()`], and checks each hold against the same function under the tutor's row lock (a slot is never
//! booked twice: that guarantee is the database lock's, not this crate's).
//!
//! The durable job queue (reminders, hold expiry, auto-end, payouts): its retry policy lives here, as a pure
//! function; the queue's storage and runner (claiming due jobs atomically, `SKIP LOCKED` on PostgreSQL) are the
//! orchestrator's `jobs` module, so this crate still needs no storage seam.

mod availability;
mod error;
mod retry;
mod slots;
mod span;

pub use availability::{Availability, Exception, WeeklyRule};
pub use error::ScheduleError;
pub use retry::{Retry, RetryPolicy};
pub use slots::{Busy, MAX_RANGE_DAYS, Policy, SLOT_STEP_MINUTES, Slot, ZonedSlot, slots, viewer_days};

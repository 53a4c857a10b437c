//! liveclass scheduling: pure time logic and durable jobs (not built yet).
//!
//! What will live here: tutor availability in the tutor's IANA time zone, slot expansion across DST,
//! buffers, minimum notice and conflicts — pure functions taking `now`; and the durable job queue
//! (reminders, hold expiry, auto-end, payouts) claimed atomically from the database.

//! liveclass billing: money, commission and payments (not built yet).
//!
//! What will live here: `Money { minor, currency }` and commission rules; the `PaymentProvider` seam
//! with an offline/manual backend and a Stripe Connect backend (separate charges and transfers);
//! Stripe webhook signature verification; payout settlement after lesson completion.

//! liveclass billing: money, commission, the payment seam and its Stripe Connect backend.
//!
//! Layout (modules are nouns):
//! - `money` — [`Money`] (integer minor units + ISO 4217 [`Currency`]; no floats anywhere), [`Commission`]
//!   (basis points, the rounding rule stated and tested) and [`percent_of`] for policy refunds.
//! - `provider` — the [`PaymentProvider`] seam: start a payment for a reference (a booking, a package), refund
//!   it; every call carries an idempotency key so a retry never charges or refunds twice. [`Offline`] is the
//!   embedded default: nothing is charged online, staff record payments received by hand (seed 002's MVP).
//! - `stripe` — [`Stripe`], the Stripe backend over its REST API (reqwest, rustls): PaymentIntents and
//!   Refunds behind [`PaymentProvider`]; for tutor payouts (Connect, separate charges and transfers) Express
//!   accounts, onboarding links, transfers and transfer reversals. Form bodies in bracket notation, an
//!   `Idempotency-Key` on every POST, retries of 429/5xx/connection failures with the same key.
//! - [`webhook`] — Stripe webhook signatures (`Stripe-Signature: t=...,v1=...`, HMAC-SHA256, constant-time,
//!   300 s tolerance) and the event envelope ([`webhook::Event`]).
//! - `fake` (feature `fake`) — `fake::FakeStripe`, an in-process server speaking Stripe's wire format
//!   (ids, objects, errors, idempotency, fault injection, signed events), for this crate's tests and the
//!   orchestrator's.
//!
//! Seams: `PaymentProvider` only (offline and Stripe). The orchestrator owns the records (payments, refunds,
//! payouts, their states), decides when to call the provider, deduplicates webhook events by id and keeps
//! the Stripe account id of each tutor; this crate knows nothing of bookings or storage. The Connect calls
//! are inherent methods of [`Stripe`], not part of the seam: offline payouts have no counterpart.
//!
//! Stripe is called with reqwest directly rather than through an SDK (async-stripe): the backend needs six
//! form POSTs, and owning them keeps the wire format, retries and idempotency visible and testable against
//! `fake::FakeStripe`.
//!
//! Not built yet: the double-entry money ledger and payout settlement (the billing issue).

#[cfg(feature = "fake")]
pub mod fake;
mod money;
mod provider;
mod stripe;
pub mod webhook;

pub use money::{Commission, Currency, CurrencyError, Money, bps_of, percent_of};
pub use provider::{
    Offline, PaymentProvider, PaymentRequest, PaymentStart, PaymentState, ProviderError, RefundOutcome, RefundRequest,
};
pub use stripe::{Stripe, StripeConfig, intent_state, refund_state};

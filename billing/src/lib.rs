//! liveclass billing: money, commission and the payment seam.
//!
//! Layout (modules are nouns):
//! - `money` — [`Money`] (integer minor units + ISO 4217 [`Currency`]; no floats anywhere), [`Commission`]
//!   (basis points, the rounding rule stated and tested) and [`percent_of`] for policy refunds.
//! - `provider` — the [`PaymentProvider`] seam: start a payment for a reference (a booking, a package), refund
//!   it; every call carries an idempotency key so a retry never charges or refunds twice. [`Offline`] is the
//!   embedded default: nothing is charged online, staff record payments received by hand (seed 002's MVP).
//!
//! Seams: `PaymentProvider` only. The orchestrator owns the records (payments, refunds, their states) and
//! decides when to call the provider; this crate knows nothing of bookings or storage.
//!
//! Not built yet: the Stripe Connect provider, webhook signature verification, the double-entry money ledger
//! and payout settlement (the billing issue).

mod money;
mod provider;

pub use money::{Commission, Currency, CurrencyError, Money, bps_of, percent_of};
pub use provider::{
    Offline, PaymentProvider, PaymentRequest, PaymentStart, PaymentState, ProviderError, RefundOutcome, RefundRequest,
};

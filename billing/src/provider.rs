//! The payment seam. The orchestrator records every payment and refund itself; a provider only moves
//! money (or, offline, tells the payer how to) and answers in its own references.

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};

use crate::Money;

/// What to collect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentRequest {
    /// What is being paid, e.g. `booking:<id>` or `package:<id>`; shown to the payer and staff.
    pub reference: String,
    pub amount: Money,
    pub description: String,
    /// Groups the charge with the later transfer to the tutor (Stripe's `transfer_group`).
    pub transfer_group: Option<String>,
    /// The same key always yields the same payment: a retried call never charges twice.
    pub idempotency_key: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaymentState {
    /// Waiting for the payer (or, offline, for staff to record the money received).
    Pending,
    Succeeded,
    Failed,
}

/// A started payment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentStart {
    /// The provider's name, stored with the payment (`offline`, `stripe`).
    pub provider: &'static str,
    /// The provider's id for this payment.
    pub provider_ref: String,
    pub state: PaymentState,
    /// For a client that completes the payment itself (Stripe's PaymentIntent client secret).
    pub client_secret: Option<String>,
    /// For a human: how to pay.
    pub instructions: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundRequest {
    pub provider_ref: String,
    pub amount: Money,
    pub reason: String,
    pub idempotency_key: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundOutcome {
    pub refund_ref: String,
    /// `Pending` when a person still has to pay the money back (offline).
    pub state: PaymentState,
}

#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// The payer's side said no (card declined, ...): final for this attempt.
    #[error("payment declined: {0}")]
    Declined(String),
    /// Worth retrying later with the same idempotency key (network, rate limit, 5xx).
    #[error("payment provider unavailable: {0}")]
    Unavailable(String),
    /// Our request was wrong; retrying won't help.
    #[error("payment provider rejected the request: {0}")]
    Invalid(String),
}

pub trait PaymentProvider: Send + Sync + 'static {
    fn name(&self) -> &'static str;
    fn start_payment<'a>(&'a self, req: &'a PaymentRequest) -> BoxFuture<'a, Result<PaymentStart, ProviderError>>;
    fn refund<'a>(&'a self, req: &'a RefundRequest) -> BoxFuture<'a, Result<RefundOutcome, ProviderError>>;
}

/// The embedded default: no money moves online. A payment stays `Pending` until staff record what they
/// received; a refund is `Pending` until staff pay it back. References derive from the idempotency key,
/// so a retried call answers the same.
#[derive(Debug, Default, Clone, Copy)]
pub struct Offline;

impl PaymentProvider for Offline {
    fn name(&self) -> &'static str {
        "offline"
    }

    fn start_payment<'a>(&'a self, req: &'a PaymentRequest) -> BoxFuture<'a, Result<PaymentStart, ProviderError>> {
        Box::pin(async move {
            if req.amount.minor <= 0 {
                return Err(ProviderError::Invalid("an amount to collect must be positive".into()));
            }
            Ok(PaymentStart {
                provider: self.name(),
                provider_ref: format!("offline_pay_{}", req.idempotency_key),
                state: PaymentState::Pending,
                client_secret: None,
                instructions: Some(format!(
                    "Pay {} to the school quoting \"{}\"; the booking confirms when staff record the payment.",
                    req.amount, req.reference
                )),
            })
        })
    }

    fn refund<'a>(&'a self, req: &'a RefundRequest) -> BoxFuture<'a, Result<RefundOutcome, ProviderError>> {
        Box::pin(async move {
            if req.amount.minor <= 0 {
                return Err(ProviderError::Invalid("an amount to refund must be positive".into()));
            }
            Ok(RefundOutcome {
                refund_ref: format!("offline_refund_{}", req.idempotency_key),
                state: PaymentState::Pending,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn offline_payments_wait_for_staff_and_repeat_identically() {
        let req = PaymentRequest {
            reference: "booking:1".into(),
            amount: Money::new(3500, "EUR".parse().unwrap()),
            description: "lesson".into(),
            transfer_group: None,
            idempotency_key: "k1".into(),
        };
        let a = Offline.start_payment(&req).await.unwrap();
        let b = Offline.start_payment(&req).await.unwrap();
        assert_eq!(a, b);
        assert_eq!(a.state, PaymentState::Pending);
        assert!(a.instructions.unwrap().contains("35.00 EUR"));
        let zero = PaymentRequest { amount: Money::new(0, "EUR".parse().unwrap()), ..req };
        assert!(matches!(Offline.start_payment(&zero).await, Err(ProviderError::Invalid(_))));
    }

    #[tokio::test]
    async fn offline_refunds_are_pending() {
        let req = RefundRequest {
            provider_ref: "offline_pay_k1".into(),
            amount: Money::new(100, "USD".parse().unwrap()),
            reason: "cancelled".into(),
            idempotency_key: "r1".into(),
        };
        let r = Offline.refund(&req).await.unwrap();
        assert_eq!(r.state, PaymentState::Pending);
    }
}

//! The Stripe backend against `FakeStripe`, over real HTTP on 127.0.0.1.

use std::time::{Duration, Instant};

use billing::{
    Money, PaymentProvider, PaymentRequest, PaymentState, ProviderError, RefundRequest, Stripe, StripeConfig,
    fake::{FakeStripe, Fault},
    webhook,
};

const KEY: &str = "sk_test_liveclass";

fn eur(minor: i64) -> Money {
    Money::new(minor, "EUR".parse().unwrap())
}

/// A client for `fake`, with millisecond backoffs so retries stay fast.
fn client(fake: &FakeStripe) -> Stripe {
    client_with(fake.base_url(), KEY)
}

fn client_with(api_base: String, key: &str) -> Stripe {
    let config = StripeConfig { secret_key: key.into(), api_base, max_retries: 3 };
    Stripe::new(config).unwrap().with_backoff(Duration::from_millis(5), Duration::from_millis(20))
}

fn payment(key: &str) -> PaymentRequest {
    PaymentRequest {
        reference: "booking:42".into(),
        amount: eur(3500),
        description: "Lesson with Ada, 2026-05-04 15:00 UTC".into(),
        transfer_group: Some("booking_42".into()),
        idempotency_key: key.into(),
    }
}

fn refund(pi: &str, minor: i64, key: &str) -> RefundRequest {
    RefundRequest {
        provider_ref: pi.into(),
        amount: eur(minor),
        reason: "tutor cancelled".into(),
        idempotency_key: key.into(),
    }
}

#[tokio::test]
async fn a_payment_intent_carries_the_form_fields_and_the_idempotency_key() {
    let fake = FakeStripe::start(KEY).await;
    let stripe = client(&fake);
    assert_eq!(stripe.name(), "stripe");
    let start = stripe.start_payment(&payment("pay-booking-42-1")).await.unwrap();

    assert_eq!(start.provider, "stripe");
    assert!(start.provider_ref.starts_with("pi_"), "{}", start.provider_ref);
    assert_eq!(start.state, PaymentState::Pending);
    let secret = start.client_secret.unwrap();
    assert!(secret.starts_with(&format!("{}_secret_", start.provider_ref)), "{secret}");
    assert_eq!(start.instructions, None);

    let requests = fake.requests();
    assert_eq!(requests.len(), 1);
    let r = &requests[0];
    assert_eq!((r.method.as_str(), r.path.as_str()), ("POST", "/v1/payment_intents"));
    assert_eq!(r.idempotency_key.as_deref(), Some("pay-booking-42-1"));
    assert_eq!(r.field("amount"), Some("3500"));
    assert_eq!(r.field("currency"), Some("eur"));
    assert_eq!(r.field("transfer_group"), Some("booking_42"));
    assert_eq!(r.field("description"), Some("Lesson with Ada, 2026-05-04 15:00 UTC"));
    assert_eq!(r.field("metadata[reference]"), Some("booking:42"));
    assert_eq!(r.field("automatic_payment_methods[enabled]"), Some("true"));

    let intents = fake.payment_intents();
    assert_eq!(intents.len(), 1);
    let pi = &intents[0];
    assert_eq!(pi["id"], start.provider_ref.as_str());
    assert_eq!(pi["object"], "payment_intent");
    assert_eq!(pi["amount"], 3500);
    assert_eq!(pi["currency"], "eur");
    assert_eq!(pi["status"], "requires_payment_method");
    assert_eq!(pi["metadata"]["reference"], "booking:42");
    assert_eq!(pi["transfer_group"], "booking_42");

    // Without a transfer group the field is not sent at all.
    let no_group = PaymentRequest { transfer_group: None, ..payment("pay-2") };
    stripe.start_payment(&no_group).await.unwrap();
    assert_eq!(fake.requests()[1].field("transfer_group"), None);
    // Nothing positive to collect: refused before any request.
    let zero = PaymentRequest { amount: eur(0), ..payment("pay-3") };
    assert!(matches!(stripe.start_payment(&zero).await, Err(ProviderError::Invalid(_))));
    assert_eq!(fake.requests().len(), 2);
}

#[tokio::test]
async fn a_rate_limit_is_retried_with_the_same_key_and_creates_one_intent() {
    let fake = FakeStripe::start(KEY).await;
    fake.fail_next(2, Fault::RateLimited);
    let start = client(&fake).start_payment(&payment("pay-once")).await.unwrap();

    let requests = fake.requests();
    assert_eq!(requests.len(), 3);
    assert!(requests.iter().all(|r| r.idempotency_key.as_deref() == Some("pay-once")));
    assert!(requests.iter().all(|r| r.form == requests[0].form));
    assert_eq!(fake.payment_intents().len(), 1);
    assert_eq!(fake.payment_intents()[0]["id"], start.provider_ref.as_str());
}

#[tokio::test]
async fn server_errors_beyond_max_retries_are_unavailable() {
    let fake = FakeStripe::start(KEY).await;
    fake.fail_next(4, Fault::ServerError);
    let err = client(&fake).start_payment(&payment("pay-down")).await.unwrap_err();
    assert!(matches!(err, ProviderError::Unavailable(_)), "{err:?}");
    assert!(err.to_string().contains("4 attempts"), "{err}");
    assert_eq!(fake.requests().len(), 4, "1 attempt + max_retries 3");
    assert!(fake.payment_intents().is_empty());

    // One fewer failure: the last retry gets through.
    fake.fail_next(3, Fault::ServerError);
    client(&fake).start_payment(&payment("pay-down")).await.unwrap();
    assert_eq!(fake.payment_intents().len(), 1);

    // Retry-After is honoured but capped: a long one does not stall the client beyond its max backoff.
    let no_retries =
        Stripe::new(StripeConfig { secret_key: KEY.into(), api_base: fake.base_url(), max_retries: 0 }).unwrap();
    fake.fail_next(1, Fault::ServerError);
    assert!(matches!(no_retries.start_payment(&payment("pay-x")).await, Err(ProviderError::Unavailable(_))));
}

#[tokio::test]
async fn a_connection_failure_is_retried_then_unavailable() {
    // A port that was just free: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let stripe = client_with(format!("http://127.0.0.1:{port}"), KEY);
    let started = Instant::now();
    let err = stripe.start_payment(&payment("pay-offline")).await.unwrap_err();
    assert!(matches!(err, ProviderError::Unavailable(_)), "{err:?}");
    assert!(err.to_string().contains("4 attempts"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn a_declined_card_is_declined_and_replayed_for_the_same_key() {
    let fake = FakeStripe::start(KEY).await;
    let stripe = client(&fake);
    fake.fail_next(1, Fault::CardDeclined);
    let err = stripe.start_payment(&payment("pay-declined")).await.unwrap_err();
    match &err {
        ProviderError::Declined(m) => {
            assert!(m.contains("Your card was declined.") && m.contains("card_declined"), "{m}")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(fake.requests().len(), 1, "a decline is final: no retry");
    // Stripe saved the decline under the key: the same call answers the same, a new key tries again.
    assert!(matches!(stripe.start_payment(&payment("pay-declined")).await, Err(ProviderError::Declined(_))));
    assert!(fake.payment_intents().is_empty());
    stripe.start_payment(&payment("pay-declined-2")).await.unwrap();
    assert_eq!(fake.payment_intents().len(), 1);
}

#[tokio::test]
async fn refunds_need_a_paid_intent_and_map_their_status() {
    let fake = FakeStripe::start(KEY).await;
    let stripe = client(&fake);
    let pi = stripe.start_payment(&payment("pay-r")).await.unwrap().provider_ref;

    // Not paid yet: nothing to refund.
    let err = stripe.refund(&refund(&pi, 3500, "refund-early")).await.unwrap_err();
    assert!(matches!(err, ProviderError::Invalid(ref m) if m.contains("charge_not_refundable")), "{err:?}");

    let paid = fake.succeed_payment_intent(&pi);
    assert_eq!(paid["status"], "succeeded");
    assert_eq!(paid["amount_received"], 3500);

    let outcome = stripe.refund(&refund(&pi, 1000, "refund-1")).await.unwrap();
    assert!(outcome.refund_ref.starts_with("re_"), "{}", outcome.refund_ref);
    assert_eq!(outcome.state, PaymentState::Succeeded);
    let sent = fake.requests().last().unwrap().clone();
    assert_eq!((sent.method.as_str(), sent.path.as_str()), ("POST", "/v1/refunds"));
    assert_eq!(sent.field("payment_intent"), Some(pi.as_str()));
    assert_eq!(sent.field("amount"), Some("1000"));
    assert_eq!(sent.field("metadata[reason]"), Some("tutor cancelled"));
    assert_eq!(sent.idempotency_key.as_deref(), Some("refund-1"));
    let refunds = fake.refunds();
    assert_eq!(refunds.len(), 1);
    assert_eq!(refunds[0]["object"], "refund");
    assert_eq!(refunds[0]["currency"], "eur");
    assert_eq!(refunds[0]["metadata"]["reason"], "tutor cancelled");

    fake.set_refund_status("pending");
    assert_eq!(stripe.refund(&refund(&pi, 500, "refund-2")).await.unwrap().state, PaymentState::Pending);
    fake.set_refund_status("failed");
    assert_eq!(stripe.refund(&refund(&pi, 500, "refund-3")).await.unwrap().state, PaymentState::Failed);

    // 1000 + 500 refunded (the failed one gave nothing back): 2000 left, not 2001.
    fake.set_refund_status("succeeded");
    let err = stripe.refund(&refund(&pi, 2001, "refund-4")).await.unwrap_err();
    assert!(matches!(err, ProviderError::Invalid(ref m) if m.contains("amount_too_large")), "{err:?}");
    stripe.refund(&refund(&pi, 2000, "refund-5")).await.unwrap();

    let err = stripe.refund(&refund("pi_missing", 1, "refund-6")).await.unwrap_err();
    assert!(matches!(err, ProviderError::Invalid(ref m) if m.contains("No such payment_intent")), "{err:?}");
}

#[tokio::test]
async fn express_accounts_and_onboarding_links() {
    let fake = FakeStripe::start(KEY).await;
    let stripe = client(&fake);
    let acct = stripe.create_express_account("ada@example.com", "acct-tutor-7").await.unwrap();
    assert!(acct.starts_with("acct_"), "{acct}");
    let sent = fake.requests()[0].clone();
    assert_eq!(sent.path, "/v1/accounts");
    assert_eq!(sent.field("type"), Some("express"));
    assert_eq!(sent.field("email"), Some("ada@example.com"));
    assert_eq!(sent.field("capabilities[transfers][requested]"), Some("true"));
    assert_eq!(fake.accounts()[0]["capabilities"]["transfers"], "inactive");

    let url = stripe
        .account_link(
            &acct,
            "https://school.example/payouts/refresh",
            "https://school.example/payouts/done",
            "link-tutor-7-1",
        )
        .await
        .unwrap();
    assert!(url.starts_with("https://") && url.contains(&acct), "{url}");
    let sent = fake.requests()[1].clone();
    assert_eq!(sent.path, "/v1/account_links");
    assert_eq!(sent.field("account"), Some(acct.as_str()));
    assert_eq!(sent.field("type"), Some("account_onboarding"));
    assert_eq!(sent.field("refresh_url"), Some("https://school.example/payouts/refresh"));
    assert_eq!(sent.field("return_url"), Some("https://school.example/payouts/done"));
    assert_eq!(sent.idempotency_key.as_deref(), Some("link-tutor-7-1"));

    let err =
        stripe.account_link("acct_nobody", "https://a.example/r", "https://a.example/d", "link-x").await.unwrap_err();
    assert!(matches!(err, ProviderError::Invalid(_)), "{err:?}");

    let onboarded = fake.complete_onboarding(&acct);
    assert_eq!(onboarded["payouts_enabled"], true);
    let (payload, header) = fake.event("account.updated", onboarded);
    let event = webhook::verify_event(&header, payload.as_bytes(), fake.webhook_secret(), now(), 300).unwrap();
    assert_eq!(event.account.as_deref(), Some(acct.as_str()));
}

#[tokio::test]
async fn transfers_and_reversals() {
    let fake = FakeStripe::start(KEY).await;
    let stripe = client(&fake);
    let acct = stripe.create_express_account("ada@example.com", "acct-1").await.unwrap();

    let tr = stripe.transfer(eur(2800), &acct, "booking_42", "payout-booking-42").await.unwrap();
    assert!(tr.starts_with("tr_"), "{tr}");
    let sent = fake.requests().last().unwrap().clone();
    assert_eq!(sent.path, "/v1/transfers");
    assert_eq!(sent.field("amount"), Some("2800"));
    assert_eq!(sent.field("currency"), Some("eur"));
    assert_eq!(sent.field("destination"), Some(acct.as_str()));
    assert_eq!(sent.field("transfer_group"), Some("booking_42"));
    assert_eq!(fake.transfers()[0]["transfer_group"], "booking_42");

    let trr = stripe.reverse_transfer(&tr, eur(800), "reverse-booking-42").await.unwrap();
    assert!(trr.starts_with("trr_"), "{trr}");
    let sent = fake.requests().last().unwrap().clone();
    assert_eq!(sent.path, format!("/v1/transfers/{tr}/reversals"));
    assert_eq!(sent.field("amount"), Some("800"));
    assert_eq!(sent.idempotency_key.as_deref(), Some("reverse-booking-42"));
    let reversals = fake.reversals();
    assert_eq!((reversals.len(), reversals[0]["transfer"].as_str()), (1, Some(tr.as_str())));
    let transfer = &fake.transfers()[0];
    assert_eq!((transfer["amount_reversed"].as_i64(), transfer["reversed"].as_bool()), (Some(800), Some(false)));

    // More than is left, an unknown transfer, an id that would change the path, an unknown destination.
    assert!(matches!(stripe.reverse_transfer(&tr, eur(2001), "reverse-2").await, Err(ProviderError::Invalid(_))));
    assert!(matches!(stripe.reverse_transfer("tr_nope", eur(1), "reverse-3").await, Err(ProviderError::Invalid(_))));
    assert!(matches!(stripe.reverse_transfer("tr_1/../x", eur(1), "reverse-4").await, Err(ProviderError::Invalid(_))));
    assert!(matches!(stripe.transfer(eur(1), "acct_nobody", "g", "payout-x").await, Err(ProviderError::Invalid(_))));
    stripe.reverse_transfer(&tr, eur(2000), "reverse-5").await.unwrap();
    assert_eq!(fake.transfers()[0]["reversed"], true);
}

#[tokio::test]
async fn the_same_key_replays_and_other_parameters_under_it_are_refused() {
    let fake = FakeStripe::start(KEY).await;
    let stripe = client(&fake);
    let a = stripe.start_payment(&payment("pay-same")).await.unwrap();
    let b = stripe.start_payment(&payment("pay-same")).await.unwrap();
    assert_eq!(a, b);
    assert_eq!(fake.payment_intents().len(), 1);
    assert_eq!(fake.requests().len(), 2);

    let other = PaymentRequest { amount: eur(4000), ..payment("pay-same") };
    let err = stripe.start_payment(&other).await.unwrap_err();
    assert!(matches!(err, ProviderError::Invalid(ref m) if m.contains("idempotency_error")), "{err:?}");
    assert_eq!(fake.payment_intents().len(), 1);

    // The same key on another endpoint is refused too.
    let acct = stripe.create_express_account("x@example.com", "pay-same").await;
    assert!(matches!(acct, Err(ProviderError::Invalid(ref m)) if m.contains("idempotency_error")), "{acct:?}");

    // Every Connect call replays as well.
    let acct = stripe.create_express_account("ada@example.com", "acct-k").await.unwrap();
    assert_eq!(stripe.create_express_account("ada@example.com", "acct-k").await.unwrap(), acct);
    let tr = stripe.transfer(eur(100), &acct, "g", "tr-k").await.unwrap();
    assert_eq!(stripe.transfer(eur(100), &acct, "g", "tr-k").await.unwrap(), tr);
    assert_eq!((fake.accounts().len(), fake.transfers().len()), (1, 1));
}

#[tokio::test]
async fn a_wrong_api_key_is_refused_and_not_retried() {
    let fake = FakeStripe::start(KEY).await;
    let wrong = client_with(fake.base_url(), "sk_test_wrong");
    let err = wrong.start_payment(&payment("pay-wrong")).await.unwrap_err();
    assert!(
        matches!(err, ProviderError::Invalid(ref m) if m.contains("401") && m.contains("Invalid API Key")),
        "{err:?}"
    );
    assert_eq!(fake.requests().len(), 1);
    assert!(fake.payment_intents().is_empty());
    // The key itself never shows in full.
    assert!(!err.to_string().contains("sk_test_wrong"), "{err}");
}

#[tokio::test]
async fn signed_events_from_the_fake_verify() {
    let fake = FakeStripe::start_with(KEY, "whsec_liveclass").await;
    let stripe = client(&fake);
    let pi = stripe.start_payment(&payment("pay-ev")).await.unwrap().provider_ref;
    let object = fake.succeed_payment_intent(&pi);
    let (payload, header) = fake.event("payment_intent.succeeded", object);
    let event = webhook::verify_event(&header, payload.as_bytes(), "whsec_liveclass", now(), 300).unwrap();
    assert!(event.id.starts_with("evt_"));
    assert_eq!(event.kind, "payment_intent.succeeded");
    assert_eq!(event.object["id"], pi.as_str());
    assert_eq!(event.object["status"], "succeeded");
    assert_eq!(billing::intent_state(event.object["status"].as_str().unwrap()), PaymentState::Succeeded);
    assert_eq!(event.object["metadata"]["reference"], "booking:42");

    let failed = fake.fail_payment_intent(&pi);
    assert_eq!(failed["last_payment_error"]["code"], "card_declined");

    let (payload, header) = fake.event_at("payment_intent.succeeded", serde_json::json!({"id": pi}), now() - 301);
    let err = webhook::verify(&header, payload.as_bytes(), "whsec_liveclass", now(), 300).unwrap_err();
    assert!(matches!(err, webhook::SignatureError::TooOld { .. }), "{err:?}");
    assert_eq!(
        webhook::verify(&header, payload.as_bytes(), "whsec_other", now(), 300),
        Err(webhook::SignatureError::NoMatch)
    );
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

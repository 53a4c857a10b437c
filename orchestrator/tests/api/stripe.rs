//! Bookings paid through Stripe, against `billing::fake::FakeStripe` (a local server speaking Stripe's wire
//! format): tutor onboarding, checkout → PaymentIntent, confirmation only from a correctly signed webhook
//! (forged, stale and replayed deliveries change nothing; ten concurrent deliveries have one effect), the
//! tutor's 80% transferred after the dispute window, refunds through Stripe, declines and rate limits.

use std::time::Duration as StdDuration;

use billing::fake::{FakeStripe, Fault};
use chrono::Duration;
use orchestrator::config::Secret;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::bookings::{Market, at, market_with};

const KEY: &str = "sk_test_liveclass";
const WHSEC: &str = "whsec_liveclass";

async fn stripe_market(slug: &str) -> (Market, FakeStripe) {
    let fake = FakeStripe::start_with(KEY, WHSEC).await;
    let base = fake.base_url();
    let m = market_with(slug, move |c| {
        c.stripe_secret_key = Some(Secret::new(KEY));
        c.stripe_webhook_secret = Some(Secret::new(WHSEC));
        c.stripe_api_base = base;
        c.stripe_publishable_key = Some("pk_test_liveclass".into());
    })
    .await;
    (m, fake)
}

/// Delivers a webhook as Stripe would: the raw payload and its `Stripe-Signature`.
async fn deliver(m: &Market, payload: &str, signature: &str) -> (StatusCode, Value) {
    let res = m
        .app
        .http
        .post(format!("{}/api/v1/webhooks/stripe", m.app.base))
        .header("content-type", "application/json")
        .header("stripe-signature", signature)
        .body(payload.to_string())
        .send()
        .await
        .unwrap();
    let status = res.status();
    (status, res.json().await.unwrap_or(Value::Null))
}

/// An event signed at the server's (simulated) now.
fn event(m: &Market, fake: &FakeStripe, kind: &str, object: Value) -> (String, String) {
    fake.event_at(kind, object, m.app.clock_now().timestamp())
}

#[tokio::test]
async fn paid_through_stripe_confirmed_by_webhook_and_the_tutor_gets_80_percent() {
    let (m, fake) = stripe_market("stripe").await;

    // The tutor onboards; payouts start once Stripe says the account is enabled.
    let path = format!("/api/v1/tutors/{}/payout-account", m.tutor.user_id);
    let res = m.app.post(&path, Some(&m.tutor.access), json!({})).await;
    assert_eq!(res.status, StatusCode::OK, "{res:?}");
    let acct = res.body["account_id"].as_str().unwrap().to_string();
    assert!(res.body["onboarding_url"].as_str().unwrap().starts_with("http"), "{res:?}");
    assert_eq!(res.body["payouts_enabled"], false);
    assert_eq!(m.app.post(&path, Some(&m.student.access), json!({})).await.status, StatusCode::FORBIDDEN);
    let (payload, sig) = event(&m, &fake, "account.updated", fake.complete_onboarding(&acct));
    assert_eq!(deliver(&m, &payload, &sig).await.0, StatusCode::OK);
    assert_eq!(m.app.get(&path, &m.tutor.access).await.body["payouts_enabled"], true);

    // Checkout creates a PaymentIntent (a rate limit on the way is retried with the same key).
    let held = m.hold(&m.student, "2027-03-03T08:00:00Z", 60).await;
    let id = held.body["id"].as_str().unwrap().to_string();
    fake.fail_next(1, Fault::RateLimited);
    let co = m.app.post(&format!("/api/v1/bookings/{id}/checkout"), Some(&m.student.access), json!({})).await;
    assert_eq!(co.status, StatusCode::OK, "{co:?}");
    assert_eq!(co.body["payment"]["provider"], "stripe");
    assert!(co.body["payment"]["client_secret"].as_str().unwrap().contains("_secret_"));
    let intents = fake.payment_intents();
    assert_eq!(intents.len(), 1, "one intent despite the retry");
    assert_eq!(intents[0]["amount"], 3500);
    assert_eq!(intents[0]["transfer_group"], format!("booking:{id}"));
    let pi = intents[0]["id"].as_str().unwrap().to_string();
    // A reload of the page asks again: the same intent and its client secret, no second intent.
    let again = m.app.post(&format!("/api/v1/bookings/{id}/checkout"), Some(&m.student.access), json!({})).await;
    assert_eq!(again.status, StatusCode::OK, "{again:?}");
    assert_eq!(again.body["payment"]["client_secret"], co.body["payment"]["client_secret"]);
    assert_eq!(fake.payment_intents().len(), 1);
    // The page learns how to pay before anyone signs in.
    let cfg = m.app.request(reqwest::Method::GET, "/api/v1/client-config", None, None, &[]).await;
    assert_eq!(
        (&cfg.body["payments"], &cfg.body["stripe_publishable_key"]),
        (&json!("stripe"), &json!("pk_test_liveclass"))
    );

    // A declined card leaves the intent waiting for another: the payment stays pending, and the next card's
    // success confirms the booking (below).
    let (payload, sig) = event(&m, &fake, "payment_intent.payment_failed", fake.fail_payment_intent(&pi));
    assert_eq!(deliver(&m, &payload, &sig).await.0, StatusCode::OK);
    assert_eq!(m.booking(&id).await["status"], "pending_payment");
    let again = m.app.post(&format!("/api/v1/bookings/{id}/checkout"), Some(&m.student.access), json!({})).await;
    assert_eq!(again.body["payment"]["client_secret"], co.body["payment"]["client_secret"], "{again:?}");

    // Never on the client's word, nor on a forged or stale webhook.
    let paid = fake.succeed_payment_intent(&pi);
    let (payload, _) = event(&m, &fake, "payment_intent.succeeded", paid.clone());
    let forged = billing::webhook::sign(payload.as_bytes(), "whsec_wrong", m.app.clock_now().timestamp());
    let (status, body) = deliver(&m, &payload, &forged).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_signature")));
    let stale = fake.event_at("payment_intent.succeeded", paid.clone(), m.app.clock_now().timestamp() - 301);
    assert_eq!(deliver(&m, &stale.0, &stale.1).await.0, StatusCode::BAD_REQUEST);
    let tampered = payload.replace("3500", "1");
    let (_, good_sig) = event(&m, &fake, "payment_intent.succeeded", paid.clone());
    assert_eq!(deliver(&m, &tampered, &good_sig).await.0, StatusCode::BAD_REQUEST);
    assert_eq!(deliver(&m, &payload, "").await.0, StatusCode::BAD_REQUEST);
    assert_eq!(m.booking(&id).await["status"], "pending_payment");

    // The genuine event, delivered ten times at once: one effect.
    let (payload, sig) = event(&m, &fake, "payment_intent.succeeded", paid);
    let mut deliveries = Vec::new();
    for _ in 0..10 {
        let (http, base, payload, sig) = (m.app.http.clone(), m.app.base.clone(), payload.clone(), sig.clone());
        deliveries.push(tokio::spawn(async move {
            let res = http
                .post(format!("{base}/api/v1/webhooks/stripe"))
                .header("stripe-signature", sig)
                .body(payload)
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), StatusCode::OK);
            res.json::<Value>().await.unwrap()["duplicate"].as_bool().unwrap()
        }));
    }
    let mut fresh = 0;
    for d in deliveries {
        fresh += usize::from(!d.await.unwrap());
    }
    assert_eq!(fresh, 1);
    let b = m.booking(&id).await;
    assert_eq!(b["status"], "confirmed");
    let confirmations = b["history"].as_array().unwrap().iter().filter(|h| h["to"] == "confirmed").count();
    assert_eq!(confirmations, 1);

    // The lesson runs and completes; after the dispute window the tutor's 80% is transferred.
    m.app.advance(at("2027-03-03T08:00:00Z") - m.app.clock_now());
    let res = m.app.post(&format!("/api/v1/bookings/{id}/start"), Some(&m.tutor.access), json!({})).await;
    assert_eq!(res.status, StatusCode::OK, "{res:?}");
    m.app.advance(Duration::minutes(80));
    m.wait_for(&id, "auto-end", |b| b["status"] == "completed").await;
    m.app.advance(Duration::hours(73));
    let deadline = tokio::time::Instant::now() + StdDuration::from_secs(10);
    while fake.transfers().is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "no transfer");
        tokio::time::sleep(StdDuration::from_millis(20)).await;
    }
    let transfers = fake.transfers();
    assert_eq!(transfers.len(), 1);
    assert_eq!(
        (transfers[0]["amount"].as_i64(), transfers[0]["destination"].as_str()),
        (Some(2800), Some(acct.as_str()))
    );
    assert_eq!(transfers[0]["transfer_group"], format!("booking:{id}"));
    let deadline = tokio::time::Instant::now() + StdDuration::from_secs(10);
    loop {
        let statement = m.app.get(&format!("/api/v1/tutors/{}/earnings", m.tutor.user_id), &m.tutor.access).await;
        if statement.body["lines"][0]["paid_out_at"].is_string() {
            assert_eq!(statement.body["lines"][0]["transfer_ref"], transfers[0]["id"]);
            assert_eq!(statement.body["balance"]["EUR"], 0);
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "transfer not recorded: {statement:?}");
        tokio::time::sleep(StdDuration::from_millis(20)).await;
    }
    let report = m.app.get("/api/v1/reports/revenue", &m.t.admin.access).await;
    let eur = &report.body["lines"][0];
    assert_eq!((eur["revenue_minor"].as_i64(), eur["paid_out_minor"].as_i64()), (Some(700), Some(2800)), "{report:?}");
    assert_eq!(report.body["reconciliation"]["matches_records"], true, "{report:?}");

    // A dispute upheld: staff refund the whole lesson after the payout; the tutor's part of the transfer is
    // reversed, the commission given back, and the ledger still balances and matches Stripe's records.
    let res = m
        .app
        .post(&format!("/api/v1/bookings/{id}/refund"), Some(&m.t.admin.access), json!({"reason": "dispute"}))
        .await;
    assert_eq!(res.status, StatusCode::OK, "{res:?}");
    let deadline = tokio::time::Instant::now() + StdDuration::from_secs(10);
    while fake.reversals().is_empty() || fake.refunds().is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "no reversal/refund at Stripe");
        tokio::time::sleep(StdDuration::from_millis(20)).await;
    }
    assert_eq!(fake.reversals()[0]["amount"], 2800);
    assert_eq!(fake.refunds()[0]["amount"], 3500);
    let deadline = tokio::time::Instant::now() + StdDuration::from_secs(10);
    loop {
        let statement = m.app.get(&format!("/api/v1/tutors/{}/earnings", m.tutor.user_id), &m.tutor.access).await;
        let report = m.app.get("/api/v1/reports/revenue", &m.t.admin.access).await;
        let eur = &report.body["lines"][0];
        if eur["revenue_minor"] == 0 && statement.body["balance"]["EUR"] == 0 && eur["refunds_minor"] == 3500 {
            assert_eq!(report.body["reconciliation"]["ledger_balanced"], true, "{report:?}");
            assert_eq!(report.body["reconciliation"]["matches_records"], true, "{report:?}");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "ledger not settled: {report:?} {statement:?}");
        tokio::time::sleep(StdDuration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn stripe_refunds_cancellations_and_a_declined_card_starts_over() {
    let (m, fake) = stripe_market("striperefund").await;
    let held = m.hold(&m.student, "2027-03-08T08:00:00Z", 60).await;
    let id = held.body["id"].as_str().unwrap().to_string();

    fake.fail_next(1, Fault::CardDeclined);
    let res = m.app.post(&format!("/api/v1/bookings/{id}/checkout"), Some(&m.student.access), json!({})).await;
    assert_eq!((res.status, res.code()), (StatusCode::PAYMENT_REQUIRED, "payment_declined"), "{res:?}");
    let co = m.app.post(&format!("/api/v1/bookings/{id}/checkout"), Some(&m.student.access), json!({})).await;
    assert_eq!(co.status, StatusCode::OK, "a new payment after the decline: {co:?}");
    let pi = co.body["payment"]["provider_ref"].as_str().unwrap().to_string();
    let (payload, sig) = event(&m, &fake, "payment_intent.succeeded", fake.succeed_payment_intent(&pi));
    assert_eq!(deliver(&m, &payload, &sig).await.0, StatusCode::OK);
    assert_eq!(m.booking(&id).await["status"], "confirmed");

    // Free-window cancellation: the whole amount back through Stripe, once.
    let res = m.app.post(&format!("/api/v1/bookings/{id}/cancel"), Some(&m.student.access), json!({})).await;
    assert_eq!(res.body["outcome"]["refund_minor"], 3500, "{res:?}");
    let b = m.wait_for(&id, "the Stripe refund", |b| b["refunds"][0]["status"] != "requested").await;
    let refunds = fake.refunds();
    assert_eq!(refunds.len(), 1);
    assert_eq!((refunds[0]["amount"].as_i64(), refunds[0]["payment_intent"].as_str()), (Some(3500), Some(pi.as_str())));
    assert_ne!(b["refunds"][0]["status"], "failed");

    // An event type we don't handle is acknowledged; an unknown payment is ignored.
    let (payload, sig) = event(&m, &fake, "customer.created", json!({"id": "cus_1", "object": "customer"}));
    assert_eq!(deliver(&m, &payload, &sig).await.0, StatusCode::OK);
    let res = m.app.request(Method::GET, "/api/v1/reports/revenue", Some(&m.t.admin.access), None, &[]).await;
    assert_eq!(res.body["reconciliation"]["matches_records"], true, "{res:?}");
}

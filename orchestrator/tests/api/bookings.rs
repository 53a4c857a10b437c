//! Bookings over HTTP (and the lesson room over WebSocket), in simulated time: a Berlin tutor's slots
//! seen from New York across both DST changes, hold → checkout → offline payment → confirmed with a room
//! and reminders, expiry, cancellations by the policy, packages, consent, no-shows, auto-end and payout,
//! rescheduling, and contention (500 concurrent attempts on one slot, one winner).

use std::time::Duration as StdDuration;

use chrono::{DateTime, Duration, TimeZone, Utc};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sqlx::Row;

use crate::{
    helpers::{Res, Session, Tenant, TestApp},
    realtime::Client,
};

/// 2027-03-01 12:00 UTC, a Monday: three weeks before Europe's spring-forward (2027-03-28) and two
/// before America's (2027-03-14).
fn epoch() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2027, 3, 1, 12, 0, 0).unwrap()
}

const ADULT: Option<&str> = Some("1990-01-01");

pub fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

pub struct Market {
    pub app: TestApp,
    pub t: Tenant,
    pub tutor: Session,
    pub student: Session,
}

async fn market(slug: &str) -> Market {
    market_with(slug, |_| {}).await
}

/// A tenant with a tutor who published availability and an adult student, at `epoch()`.
pub async fn market_with(slug: &str, tweak: impl FnOnce(&mut orchestrator::config::Config)) -> Market {
    let app = TestApp::spawn_with(|c| {
        c.jobs_poll_interval_ms = 20;
        c.access_token_ttl_secs = 90 * 24 * 3600;
        tweak(c);
    })
    .await;
    app.advance(epoch() - app.clock_now());
    let t = app.tenant(slug).await;
    let tutor = app.user(&t, "tutor", "tutor", None).await;
    let student = app.user(&t, "student", "student", ADULT).await;
    publish(&app, &tutor, json!({})).await;
    Market { app, t, tutor, student }
}

/// Mondays and Wednesdays 09:00–12:00 Berlin, 30- and 60-minute lessons, 10 minutes' buffer after.
async fn publish(app: &TestApp, tutor: &Session, overrides: Value) {
    let mut doc = json!({
        "timezone": "Europe/Berlin", "currency": "EUR",
        "lengths": [{"minutes": 60, "price_minor": 3500}, {"minutes": 30, "price_minor": 2000}],
        "buffer_after_minutes": 10, "min_notice_minutes": 60, "horizon_days": 120,
        "weekly": [{"weekday": "mon", "start": "09:00", "end": "12:00"},
                   {"weekday": "wed", "start": "09:00", "end": "12:00"}],
    });
    for (k, v) in overrides.as_object().unwrap() {
        doc[k] = v.clone();
    }
    let res = app
        .request(
            Method::PUT,
            &format!("/api/v1/tutors/{}/availability", tutor.user_id),
            Some(&tutor.access),
            Some(&doc),
            &[],
        )
        .await;
    assert_eq!(res.status, StatusCode::OK, "{res:?}");
}

impl Market {
    pub async fn slots(&self, who: &Session, from: &str, to: &str, tz: &str, minutes: u32) -> Vec<Value> {
        let path = format!("/api/v1/tutors/{}/slots?from={from}&to={to}&tz={tz}&minutes={minutes}", self.tutor.user_id);
        let res = self.app.get(&path, &who.access).await;
        assert_eq!(res.status, StatusCode::OK, "{res:?}");
        res.body["slots"].as_array().unwrap().clone()
    }

    pub async fn hold(&self, who: &Session, starts_at: &str, minutes: u32) -> Res {
        self.app
            .post(
                "/api/v1/bookings",
                Some(&who.access),
                json!({"tutor_id": self.tutor.user_id, "starts_at": starts_at, "minutes": minutes}),
            )
            .await
    }

    pub async fn booking(&self, id: &str) -> Value {
        let res = self.app.get(&format!("/api/v1/bookings/{id}"), &self.t.admin.access).await;
        assert_eq!(res.status, StatusCode::OK, "{res:?}");
        res.body
    }

    /// Waits (jobs run in the background) until the booking satisfies `pred`.
    pub async fn wait_for(&self, id: &str, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + StdDuration::from_secs(10);
        loop {
            let b = self.booking(id).await;
            if pred(&b) {
                return b;
            }
            assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}: {b}");
            tokio::time::sleep(StdDuration::from_millis(20)).await;
        }
    }

    /// Hold, checkout, staff record the money: a confirmed booking.
    pub async fn book_and_pay(&self, who: &Session, starts_at: &str, minutes: u32) -> String {
        let held = self.hold(who, starts_at, minutes).await;
        assert_eq!(held.status, StatusCode::CREATED, "{held:?}");
        let id = held.body["id"].as_str().unwrap().to_string();
        let co = self.app.post(&format!("/api/v1/bookings/{id}/checkout"), Some(&who.access), json!({})).await;
        assert_eq!(co.status, StatusCode::OK, "{co:?}");
        let payment = co.body["payment"]["id"].as_str().unwrap();
        let paid = self
            .app
            .post(
                &format!("/api/v1/payments/{payment}/received"),
                Some(&self.t.admin.access),
                json!({"method": "bank_transfer"}),
            )
            .await;
        assert_eq!(paid.status, StatusCode::OK, "{paid:?}");
        id
    }

    pub async fn mail_subjects(&self, user: &Session) -> Vec<String> {
        let res = self.app.get("/api/v1/me/mailbox", &user.access).await;
        assert_eq!(res.status, StatusCode::OK, "{res:?}");
        res.body["messages"].as_array().unwrap().iter().map(|m| m["subject"].as_str().unwrap().to_string()).collect()
    }

    pub async fn wait_mail(&self, user: &Session, subject_part: &str, count: usize) -> Vec<String> {
        let deadline = tokio::time::Instant::now() + StdDuration::from_secs(10);
        loop {
            let subjects = self.mail_subjects(user).await;
            if subjects.iter().filter(|s| s.contains(subject_part)).count() >= count {
                return subjects;
            }
            assert!(tokio::time::Instant::now() < deadline, "no {count}× {subject_part:?} mail: {subjects:?}");
            tokio::time::sleep(StdDuration::from_millis(20)).await;
        }
    }
}

fn starts(slots: &[Value]) -> Vec<&str> {
    slots.iter().map(|s| s["starts_at"].as_str().unwrap()).collect()
}

#[tokio::test]
async fn a_berlin_tutor_seen_from_new_york_across_both_dst_changes() {
    let m = market("dst").await;
    // Mon 22 Mar: Berlin on CET (UTC+1), New York already on EDT (UTC−4).
    // Mon 29 Mar: Berlin on CEST (UTC+2) since the 28th.
    let slots = m.slots(&m.student, "2027-03-22", "2027-03-29", "America/New_York", 60).await;
    let s = starts(&slots);
    // Mon, Wed, Mon: 09:00–11:00 Berlin starts every 15 minutes = 9 a day.
    assert_eq!(s.len(), 27, "{s:?}");
    assert_eq!(s[0], "2027-03-22T08:00:00Z");
    assert_eq!(slots[0]["local_start"], "2027-03-22T04:00:00-04:00");
    assert_eq!(s[18], "2027-03-29T07:00:00Z", "09:00 Berlin is 07:00 UTC in summer");
    assert_eq!(slots[18]["local_start"], "2027-03-29T03:00:00-04:00");
    assert_eq!(m.slots(&m.student, "2027-03-22", "2027-03-29", "America/New_York", 60).await, slots, "stable");
    // The same instants whatever the viewer's zone.
    let berlin = m.slots(&m.student, "2027-03-22", "2027-03-29", "Europe/Berlin", 60).await;
    assert_eq!(starts(&berlin), s);
    assert_eq!(berlin[0]["local_start"], "2027-03-22T09:00:00+01:00");

    // Booking 09:00 Berlin on the 29th takes 09:00–10:00 plus 10 minutes' buffer after.
    let id = m.book_and_pay(&m.student, "2027-03-29T07:00:00Z", 60).await;
    let b = m.booking(&id).await;
    assert_eq!(b["status"], "confirmed");
    assert_eq!(b["price_minor"], 3500);
    let after = m.slots(&m.student, "2027-03-29", "2027-03-29", "America/New_York", 60).await;
    assert_eq!(starts(&after)[0], "2027-03-29T08:15:00Z", "{after:?}");
    assert_eq!(after.len(), 4);

    // Bad input is a 422 with a code, not a 500.
    let bad = m
        .app
        .get(&format!("/api/v1/tutors/{}/slots?from=2027-03-01&to=2027-06-01", m.tutor.user_id), &m.student.access)
        .await;
    assert_eq!((bad.status, bad.code()), (StatusCode::UNPROCESSABLE_ENTITY, "invalid_range"));
    let bad = m
        .app
        .get(
            &format!("/api/v1/tutors/{}/slots?from=2027-03-01&to=2027-03-02&tz=Mars/Base", m.tutor.user_id),
            &m.student.access,
        )
        .await;
    assert_eq!(bad.code(), "invalid_timezone");
    let res = m
        .app
        .request(
            Method::PUT,
            &format!("/api/v1/tutors/{}/availability", m.tutor.user_id),
            Some(&m.tutor.access),
            Some(
                &json!({"timezone": "Europe/Berlin", "currency": "EUR", "lengths": [{"minutes": 60, "price_minor": 1}],
                "weekly": [{"weekday": "mon", "start": "12:00", "end": "09:00"}]}),
            ),
            &[],
        )
        .await;
    assert_eq!((res.status, res.code()), (StatusCode::UNPROCESSABLE_ENTITY, "invalid_availability"), "{res:?}");
    let res = m
        .app
        .request(
            Method::PUT,
            &format!("/api/v1/tutors/{}/availability", m.tutor.user_id),
            Some(&m.student.access),
            Some(&json!({})),
            &[],
        )
        .await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY, "{res:?}");
}

#[tokio::test]
async fn book_pay_confirm_room_reminders_then_the_lesson_runs_and_pays_out() {
    let m = market("life").await;
    let mut student_ws = Client::connect(&m.app, &m.student.access).await;
    let held = m.hold(&m.student, "2027-03-03T08:00:00Z", 60).await;
    assert_eq!(held.status, StatusCode::CREATED, "{held:?}");
    assert_eq!(held.body["status"], "hold");
    assert_eq!(held.body["expires_at"], "2027-03-01T12:10:00Z");
    let id = held.body["id"].as_str().unwrap().to_string();

    // The tutor can't pay; checking out twice gives one payment.
    let res = m.app.post(&format!("/api/v1/bookings/{id}/checkout"), Some(&m.tutor.access), json!({})).await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
    let co = m.app.post(&format!("/api/v1/bookings/{id}/checkout"), Some(&m.student.access), json!({})).await;
    assert_eq!(co.status, StatusCode::OK, "{co:?}");
    assert_eq!(co.body["booking"]["status"], "pending_payment");
    assert_eq!(co.body["payment"]["provider"], "offline");
    assert!(co.body["payment"]["instructions"].as_str().unwrap().contains("35.00 EUR"));
    let again = m.app.post(&format!("/api/v1/bookings/{id}/checkout"), Some(&m.student.access), json!({})).await;
    assert_eq!(again.body["payment"]["id"], co.body["payment"]["id"]);
    // Never confirmed on the client's word: only staff recording money (or a provider) confirms.
    let payment = co.body["payment"]["id"].as_str().unwrap();
    let res = m
        .app
        .post(&format!("/api/v1/payments/{payment}/received"), Some(&m.student.access), json!({"method": "cash"}))
        .await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
    let res = m
        .app
        .post(&format!("/api/v1/payments/{payment}/received"), Some(&m.t.admin.access), json!({"method": "cash"}))
        .await;
    assert_eq!(res.status, StatusCode::OK, "{res:?}");
    assert_eq!(res.body["refund_id"], Value::Null);

    // Confirmation creates the room; both hear of it on their user channel.
    let b = m.wait_for(&id, "the room", |b| b["room"].is_string()).await;
    assert_eq!(b["status"], "confirmed");
    assert_eq!(b["room"], format!("lesson:{id}"));
    let pushed = student_ws.until(|v| v["data"]["kind"] == "lesson_room").await;
    assert_eq!(pushed["data"]["room"], format!("lesson:{id}"));
    m.wait_mail(&m.tutor, "confirmed", 1).await;
    let history: Vec<&str> = b["history"].as_array().unwrap().iter().map(|h| h["to"].as_str().unwrap()).collect();
    assert_eq!(history, ["hold", "pending_payment", "confirmed"]);

    // Reminders a day and an hour before (the lesson is Wed 08:00 UTC).
    assert!(!m.mail_subjects(&m.student).await.iter().any(|s| s.contains("Reminder")));
    m.app.advance(at("2027-03-02T08:00:00Z") - m.app.clock_now());
    m.wait_mail(&m.student, "starts in 1 day", 1).await;
    m.app.advance(at("2027-03-03T07:00:00Z") - m.app.clock_now());
    m.wait_mail(&m.student, "starts in 1 hour", 1).await;
    m.wait_mail(&m.tutor, "starts in 1 hour", 1).await;
    let pushed = student_ws.until(|v| v["data"]["kind"] == "reminder" && v["data"]["minutes_before"] == 60).await;
    assert_eq!(pushed["data"]["booking_id"], id.as_str());
    // The jobs behind it are visible to staff.
    let done = m.app.get("/api/v1/admin/jobs?kind=booking.remind&status=done", &m.t.admin.access).await;
    assert_eq!(done.body["jobs"].as_array().map(Vec::len), Some(2), "{done:?}");
    let queued = m.app.get("/api/v1/admin/jobs?status=queued", &m.t.admin.access).await;
    let kinds: Vec<&str> =
        queued.body["jobs"].as_array().unwrap().iter().map(|j| j["kind"].as_str().unwrap()).collect();
    assert!(kinds.contains(&"booking.no_show_check") && kinds.contains(&"booking.auto_end"), "{kinds:?}");

    // Too early for the room; inside the window both join and the lesson starts.
    let mut tutor_ws = Client::connect(&m.app, &m.tutor.access).await;
    let room = format!("lesson:{id}");
    let early = tutor_ws.join(&room).await;
    assert_eq!(
        (early["type"].as_str(), early["code"].as_str()),
        (Some("error"), Some("outside_lesson_window")),
        "{early}"
    );
    m.app.advance(Duration::minutes(55));
    assert_eq!(tutor_ws.join(&room).await["type"], "joined");
    let outsider = m.app.user(&m.t, "student", "outsider", ADULT).await;
    let mut other_ws = Client::connect(&m.app, &outsider.access).await;
    assert_eq!(other_ws.join(&room).await["code"], "forbidden");
    assert_eq!(student_ws.join(&room).await["type"], "joined");
    let started = tutor_ws.message(&room, "lesson").await;
    assert_eq!(started["data"]["state"], "started");
    assert_eq!(m.booking(&id).await["status"], "in_progress");

    // Auto-end after the end plus grace; the payout waits for the dispute window (72 h).
    m.app.advance(Duration::minutes(80));
    m.wait_for(&id, "auto-end", |b| b["status"] == "completed").await;
    let payouts = async || {
        sqlx::query("SELECT gross_minor, fee_minor, share_minor FROM tutor_payouts WHERE booking_id = $1")
            .bind(&id)
            .fetch_all(m.app.state.db.pool())
            .await
            .unwrap()
    };
    assert!(payouts().await.is_empty());
    m.app.advance(Duration::hours(73));
    let deadline = tokio::time::Instant::now() + StdDuration::from_secs(10);
    while payouts().await.is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "no payout released");
        tokio::time::sleep(StdDuration::from_millis(20)).await;
    }
    let row = &payouts().await[0];
    let parts: (i64, i64, i64) = (row.get(0), row.get(1), row.get(2));
    assert_eq!(parts, (3500, 700, 2800), "20% commission");

    // The tutor's statement and the platform's report come from the ledger.
    let statement = m.app.get(&format!("/api/v1/tutors/{}/earnings", m.tutor.user_id), &m.tutor.access).await;
    assert_eq!(statement.status, StatusCode::OK, "{statement:?}");
    let line = &statement.body["lines"][0];
    assert_eq!(
        (line["gross_minor"].as_i64(), line["commission_minor"].as_i64(), line["net_minor"].as_i64()),
        (Some(3500), Some(700), Some(2800))
    );
    assert_eq!(line["paid_out_at"], Value::Null);
    assert_eq!(statement.body["balance"]["EUR"], 2800, "owed to the tutor");
    let res = m.app.get(&format!("/api/v1/tutors/{}/earnings", m.tutor.user_id), &m.student.access).await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
    // Offline: staff pay the tutor by hand and record it, once.
    let paid = async || {
        m.app
            .post(&format!("/api/v1/payouts/{id}/paid"), Some(&m.t.admin.access), json!({"method": "bank_transfer"}))
            .await
    };
    assert_eq!(paid().await.body["recorded"], true);
    assert_eq!(paid().await.body["recorded"], false);
    let statement = m.app.get(&format!("/api/v1/tutors/{}/earnings", m.tutor.user_id), &m.tutor.access).await;
    assert_eq!(statement.body["balance"]["EUR"], 0);
    assert_eq!(statement.body["totals"]["EUR"]["paid_out_minor"], 2800);
    let report = m.app.get("/api/v1/reports/revenue", &m.t.admin.access).await;
    assert_eq!(report.status, StatusCode::OK, "{report:?}");
    let eur = &report.body["lines"][0];
    assert_eq!(eur["currency"], "EUR");
    assert_eq!((eur["payments_minor"].as_i64(), eur["revenue_minor"].as_i64()), (Some(3500), Some(700)));
    assert_eq!((eur["tutor_earnings_minor"].as_i64(), eur["paid_out_minor"].as_i64()), (Some(2800), Some(2800)));
    assert_eq!(report.body["reconciliation"]["ledger_balanced"], true, "{report:?}");
    assert_eq!(report.body["reconciliation"]["matches_records"], true, "{report:?}");
    let csv =
        m.app.request(Method::GET, "/api/v1/reports/revenue?format=csv", Some(&m.t.admin.access), None, &[]).await;
    assert_eq!(
        csv.text,
        "currency,payments_minor,refunds_minor,revenue_minor,tutor_earnings_minor,paid_out_minor\nEUR,3500,0,700,2800,2800\n"
    );
    assert_eq!(m.app.get("/api/v1/reports/revenue", &m.tutor.access).await.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn an_unpaid_hold_expires_and_the_slot_comes_back() {
    let m = market("expiry").await;
    let held = m.hold(&m.student, "2027-03-03T08:00:00Z", 60).await;
    let id = held.body["id"].as_str().unwrap().to_string();
    let other = m.app.user(&m.t, "student", "other", ADULT).await;
    let res = m.hold(&other, "2027-03-03T08:30:00Z", 30).await;
    assert_eq!((res.status, res.code()), (StatusCode::CONFLICT, "slot_unavailable"), "overlap of another length");
    m.app.advance(Duration::minutes(11));
    let b = m.wait_for(&id, "expiry", |b| b["status"] == "expired").await;
    assert_eq!(b["expires_at"], Value::Null);
    let res = m.app.post(&format!("/api/v1/bookings/{id}/checkout"), Some(&m.student.access), json!({})).await;
    assert_eq!((res.status, res.code()), (StatusCode::CONFLICT, "illegal_transition"), "{res:?}");
    assert_eq!(m.hold(&other, "2027-03-03T08:30:00Z", 30).await.status, StatusCode::CREATED);

    // A payment arriving for a lapsed hold is refunded, not confirmed.
    let held = m.hold(&m.student, "2027-03-08T08:00:00Z", 60).await;
    let id = held.body["id"].as_str().unwrap().to_string();
    let co = m.app.post(&format!("/api/v1/bookings/{id}/checkout"), Some(&m.student.access), json!({})).await;
    let payment = co.body["payment"]["id"].as_str().unwrap().to_string();
    m.app.advance(Duration::minutes(31));
    let res = m
        .app
        .post(&format!("/api/v1/payments/{payment}/received"), Some(&m.t.admin.access), json!({"method": "cash"}))
        .await;
    assert_eq!(res.status, StatusCode::OK, "{res:?}");
    assert!(res.body["refund_id"].is_string(), "{res:?}");
    let b = m.wait_for(&id, "the refund", |b| b["refunds"][0]["status"] == "pending").await;
    assert_eq!(b["status"], "expired");
    assert_eq!(b["refunds"][0]["amount_minor"], 3500);
}

#[tokio::test]
async fn five_hundred_concurrent_attempts_on_one_slot_give_one_hold() {
    let m = market("contention").await;
    let mut students = Vec::new();
    for i in 0..20 {
        students.push(m.app.user(&m.t, "student", &format!("s{i}"), ADULT).await);
    }
    let mut tasks = Vec::new();
    for i in 0..500 {
        let s = students[i % students.len()].clone();
        let (base, tutor) = (m.app.base.clone(), m.tutor.user_id.clone());
        let http = m.app.http.clone();
        // Identical starts and overlapping ones of the other length.
        let (start, minutes) = if i % 2 == 0 { ("2027-03-03T08:00:00Z", 60) } else { ("2027-03-03T08:30:00Z", 30) };
        tasks.push(tokio::spawn(async move {
            http.post(format!("{base}/api/v1/bookings"))
                .bearer_auth(&s.access)
                .json(&json!({"tutor_id": tutor, "starts_at": start, "minutes": minutes}))
                .send()
                .await
                .unwrap()
                .status()
        }));
    }
    let mut created = 0;
    for t in tasks {
        match t.await.unwrap() {
            StatusCode::CREATED => created += 1,
            StatusCode::CONFLICT => {}
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(created, 1);
    let rows: i64 = sqlx::query("SELECT COUNT(*) FROM bookings").fetch_one(m.app.state.db.pool()).await.unwrap().get(0);
    assert_eq!(rows, 1);
}

#[tokio::test]
async fn cancellations_follow_the_policy() {
    let m = market("cancel").await;
    // Free window (≥ 24 h): the whole price back.
    let id = m.book_and_pay(&m.student, "2027-03-08T08:00:00Z", 60).await;
    let quote = m.app.get(&format!("/api/v1/bookings/{id}/cancellation"), &m.student.access).await;
    assert_eq!(quote.status, StatusCode::OK, "{quote:?}");
    let res =
        m.app.post(&format!("/api/v1/bookings/{id}/cancel"), Some(&m.student.access), json!({"reason": "ill"})).await;
    assert_eq!(res.status, StatusCode::OK, "{res:?}");
    assert_eq!(res.body["outcome"], quote.body, "the quote is what cancelling did");
    assert_eq!(res.body["booking"]["status"], "cancelled_by_student");
    assert_eq!(res.body["outcome"]["refund_minor"], 3500);
    m.wait_for(&id, "refund", |b| b["refunds"][0]["status"] == "pending").await;
    // The slot is free again.
    assert!(
        starts(&m.slots(&m.student, "2027-03-08", "2027-03-08", "UTC", 60).await).contains(&"2027-03-08T08:00:00Z")
    );

    // Late (< 24 h): half back, half to the tutor.
    let id = m.book_and_pay(&m.student, "2027-03-03T08:00:00Z", 60).await;
    m.app.advance(at("2027-03-02T20:00:00Z") - m.app.clock_now());
    let quote = m.app.get(&format!("/api/v1/bookings/{id}/cancellation"), &m.student.access).await;
    assert_eq!(
        (quote.body["refund_minor"].as_i64(), quote.body["tutor_keeps_minor"].as_i64()),
        (Some(1750), Some(1750))
    );
    // Staff must say on whose behalf; others may not.
    let staff = m.app.get(&format!("/api/v1/bookings/{id}/cancellation"), &m.t.admin.access).await;
    assert_eq!((staff.status, staff.code()), (StatusCode::UNPROCESSABLE_ENTITY, "on_behalf_of_required"));
    let path = format!("/api/v1/bookings/{id}/cancellation?on_behalf_of=tutor");
    assert_eq!(m.app.get(&path, &m.t.admin.access).await.body["refund_minor"], 3500);
    let res = m.app.post(&format!("/api/v1/bookings/{id}/cancel"), Some(&m.student.access), json!({})).await;
    assert_eq!(res.body["outcome"]["refund_minor"], 1750, "{res:?}");
    assert_eq!(res.body["outcome"], quote.body);
    assert_eq!(res.body["outcome"]["tutor_keeps_minor"], 1750);
    // Cancelled is final.
    let res = m.app.post(&format!("/api/v1/bookings/{id}/cancel"), Some(&m.tutor.access), json!({})).await;
    assert_eq!((res.status, res.code()), (StatusCode::CONFLICT, "illegal_transition"));

    // The tutor cancels, however late: all back.
    let id = m.book_and_pay(&m.student, "2027-03-08T09:00:00Z", 60).await;
    m.app.advance(at("2027-03-08T08:30:00Z") - m.app.clock_now());
    let res = m.app.post(&format!("/api/v1/bookings/{id}/cancel"), Some(&m.tutor.access), json!({})).await;
    assert_eq!(res.body["booking"]["status"], "cancelled_by_tutor");
    assert_eq!(res.body["outcome"]["refund_minor"], 3500);
    // Money: three payments in, refunds of 3500 + 1750 + 3500 out; the ledger balances and matches the records.
    let report = m.app.get("/api/v1/reports/revenue", &m.t.admin.access).await;
    let eur = &report.body["lines"][0];
    assert_eq!(
        (eur["payments_minor"].as_i64(), eur["refunds_minor"].as_i64()),
        (Some(10500), Some(8750)),
        "{report:?}"
    );
    assert_eq!(report.body["reconciliation"]["matches_records"], true, "{report:?}");
    // Staff must say on whose behalf; others can't see the booking at all.
    let res = m.app.post(&format!("/api/v1/bookings/{id}/cancel"), Some(&m.t.admin.access), json!({})).await;
    assert_eq!(res.code(), "on_behalf_of_required");
    let stranger = m.app.user(&m.t, "student", "stranger", ADULT).await;
    assert_eq!(m.app.get(&format!("/api/v1/bookings/{id}"), &stranger.access).await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn packages_pay_for_lessons_and_free_cancellations_return_the_credit() {
    let m = market("packages").await;
    let res = m
        .app
        .post(
            "/api/v1/packages",
            Some(&m.student.access),
            json!({"tutor_id": m.tutor.user_id, "minutes": 60, "lessons": 3}),
        )
        .await;
    assert_eq!(res.status, StatusCode::CREATED, "{res:?}");
    assert_eq!(res.body["package"]["price_minor"], 10500);
    assert_eq!(res.body["package"]["status"], "pending_payment");
    let pkg = res.body["package"]["id"].as_str().unwrap().to_string();
    let book = async |start: &str| {
        m.app
            .post(
                "/api/v1/bookings",
                Some(&m.student.access),
                json!({"tutor_id": m.tutor.user_id, "starts_at": start, "minutes": 60, "package_id": pkg}),
            )
            .await
    };
    assert_eq!(book("2027-03-08T08:00:00Z").await.code(), "package_not_active");
    let payment = res.body["payment"]["id"].as_str().unwrap();
    let res = m
        .app
        .post(&format!("/api/v1/payments/{payment}/received"), Some(&m.t.admin.access), json!({"method": "cash"}))
        .await;
    assert_eq!(res.status, StatusCode::OK, "{res:?}");

    let res = book("2027-03-08T08:00:00Z").await;
    assert_eq!(res.status, StatusCode::CREATED, "{res:?}");
    assert_eq!(res.body["status"], "confirmed", "a package lesson needs no payment");
    let id = res.body["id"].as_str().unwrap().to_string();
    let remaining =
        async || m.app.get(&format!("/api/v1/packages/{pkg}"), &m.student.access).await.body["remaining"].clone();
    assert_eq!(remaining().await, 2);
    let res = m.app.post(&format!("/api/v1/bookings/{id}/cancel"), Some(&m.student.access), json!({})).await;
    assert_eq!(res.body["outcome"]["return_credit"], true, "{res:?}");
    assert_eq!(remaining().await, 3);
    // A 30-minute lesson can't use a 60-minute package.
    let res = m
        .app
        .post(
            "/api/v1/bookings",
            Some(&m.student.access),
            json!({"tutor_id": m.tutor.user_id, "starts_at": "2027-03-08T08:00:00Z", "minutes": 30, "package_id": pkg}),
        )
        .await;
    assert_eq!(res.code(), "package_mismatch");
}

#[tokio::test]
async fn a_minor_books_only_with_live_video_consent() {
    let m = market("minors").await;
    let (kid, parent) = m.app.minor_with_parent(&m.t, "kid", "mum").await;
    let res = m.hold(&kid, "2027-03-03T08:00:00Z", 60).await;
    assert_eq!((res.status, res.code()), (StatusCode::FORBIDDEN, "consent_required"), "{res:?}");
    let res = m
        .app
        .post("/api/v1/bookings", Some(&parent.access), json!({"tutor_id": m.tutor.user_id, "starts_at": "2027-03-03T08:00:00Z", "minutes": 60, "student_id": kid.user_id}))
        .await;
    assert_eq!(res.code(), "consent_required");
    m.app.grant_consent(&m.t, &parent, &kid, &["live_video"], "signed_form").await;
    let res = m
        .app
        .post("/api/v1/bookings", Some(&parent.access), json!({"tutor_id": m.tutor.user_id, "starts_at": "2027-03-03T08:00:00Z", "minutes": 60, "student_id": kid.user_id}))
        .await;
    assert_eq!(res.status, StatusCode::CREATED, "{res:?}");
    assert_eq!(res.body["student_id"], kid.user_id.as_str());
    // Parents see their child's bookings; a tutor can't book.
    let list = m.app.get("/api/v1/bookings", &parent.access).await;
    assert_eq!(list.body.as_array().unwrap().len(), 1);
    assert_eq!(m.hold(&m.tutor, "2027-03-08T08:00:00Z", 60).await.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn nobody_comes_is_the_tutors_no_show_and_a_reschedule_moves_the_reminders() {
    let m = market("noshow").await;
    let id = m.book_and_pay(&m.student, "2027-03-03T08:00:00Z", 60).await;
    m.app.advance(at("2027-03-03T08:16:00Z") - m.app.clock_now());
    let b = m.wait_for(&id, "no-show check", |b| b["status"] == "no_show_tutor").await;
    assert_eq!(b["refund_minor"], 3500);
    // No-show is final; illegal moves have a code.
    let res = m.app.post(&format!("/api/v1/bookings/{id}/complete"), Some(&m.tutor.access), json!({})).await;
    assert_eq!((res.status, res.code()), (StatusCode::CONFLICT, "illegal_transition"));

    // A reschedule two days ahead: the old reminders never fire, new ones do.
    let id = m.book_and_pay(&m.student, "2027-03-10T08:00:00Z", 60).await;
    let res = m
        .app
        .post(
            &format!("/api/v1/bookings/{id}/reschedule"),
            Some(&m.student.access),
            json!({"starts_at": "2027-03-15T08:00:00Z"}),
        )
        .await;
    assert_eq!(res.status, StatusCode::OK, "{res:?}");
    assert_eq!(res.body["starts_at"], "2027-03-15T08:00:00Z");
    assert_eq!(res.body["reschedules"], 1);
    m.app.advance(at("2027-03-09T09:00:00Z") - m.app.clock_now());
    tokio::time::sleep(StdDuration::from_millis(300)).await;
    let day_before = |subjects: &[String]| subjects.iter().filter(|s| s.contains("starts in 1 day")).count();
    let before = day_before(&m.mail_subjects(&m.student).await);
    assert_eq!(before, 1, "only the first lesson's: the moved lesson's old reminder never fires");
    m.app.advance(at("2027-03-14T08:00:00Z") - m.app.clock_now());
    m.wait_mail(&m.student, "starts in 1 day", before + 1).await;
    // Within 24 h students can't move it any more; the tutor still can.
    m.app.advance(Duration::hours(1));
    let res = m
        .app
        .post(
            &format!("/api/v1/bookings/{id}/reschedule"),
            Some(&m.student.access),
            json!({"starts_at": "2027-03-17T08:00:00Z"}),
        )
        .await;
    assert_eq!(res.code(), "too_late_to_reschedule");
    let res = m
        .app
        .post(
            &format!("/api/v1/bookings/{id}/reschedule"),
            Some(&m.tutor.access),
            json!({"starts_at": "2027-03-17T08:00:00Z"}),
        )
        .await;
    assert_eq!(res.status, StatusCode::OK, "{res:?}");
}

#[tokio::test]
async fn the_tenant_policy_is_admins_to_set() {
    let m = market("policy").await;
    let path = format!("/api/v1/tenants/{}/booking-policy", m.t.id);
    let res = m.app.get(&path, &m.student.access).await;
    assert_eq!(res.body["free_cancel_hours"], 24);
    let body = json!({"free_cancel_hours": 48, "late_refund_bps": 0});
    let res = m.app.request(Method::PUT, &path, Some(&m.tutor.access), Some(&body), &[]).await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
    let res = m.app.request(Method::PUT, &path, Some(&m.t.admin.access), Some(&body), &[]).await;
    assert_eq!(res.status, StatusCode::OK, "{res:?}");
    let bad = json!({"late_refund_bps": 20000});
    let res = m.app.request(Method::PUT, &path, Some(&m.t.admin.access), Some(&bad), &[]).await;
    assert_eq!(res.code(), "invalid_policy");
    // 30 hours ahead is now late: nothing back.
    let id = m.book_and_pay(&m.student, "2027-03-03T08:00:00Z", 60).await;
    m.app.advance(at("2027-03-02T02:00:00Z") - m.app.clock_now());
    let res = m.app.post(&format!("/api/v1/bookings/{id}/cancel"), Some(&m.student.access), json!({})).await;
    assert_eq!(res.body["outcome"]["refund_minor"], 0, "{res:?}");
    assert_eq!(res.body["outcome"]["tutor_keeps_minor"], 3500);
}

#[tokio::test]
async fn a_tutor_commission_override_applies_to_released_earnings() {
    let m = market("commission").await;
    let path = format!("/api/v1/tutors/{}/commission", m.tutor.user_id);
    let body = json!({"commission_bps": 1500});
    let res = m.app.request(Method::PUT, &path, Some(&m.tutor.access), Some(&body), &[]).await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
    let res =
        m.app.request(Method::PUT, &path, Some(&m.t.admin.access), Some(&json!({"commission_bps": 10001})), &[]).await;
    assert_eq!(res.code(), "invalid_commission");
    let res = m.app.request(Method::PUT, &path, Some(&m.t.admin.access), Some(&body), &[]).await;
    assert_eq!(res.status, StatusCode::OK, "{res:?}");

    let id = m.book_and_pay(&m.student, "2027-03-03T08:00:00Z", 60).await;
    m.app.advance(at("2027-03-03T08:00:00Z") - m.app.clock_now());
    let res = m.app.post(&format!("/api/v1/bookings/{id}/start"), Some(&m.student.access), json!({})).await;
    assert_eq!(res.status, StatusCode::OK, "{res:?}");
    let res = m.app.post(&format!("/api/v1/bookings/{id}/complete"), Some(&m.student.access), json!({})).await;
    assert_eq!(res.status, StatusCode::FORBIDDEN, "students don't complete lessons");
    let res = m.app.post(&format!("/api/v1/bookings/{id}/complete"), Some(&m.tutor.access), json!({})).await;
    assert_eq!(res.body["status"], "completed", "{res:?}");
    m.app.advance(Duration::hours(73));
    let deadline = tokio::time::Instant::now() + StdDuration::from_secs(10);
    loop {
        let statement =
            m.app.get(&format!("/api/v1/tutors/{}/earnings?format=csv", m.tutor.user_id), &m.tutor.access).await;
        if statement.text.lines().count() == 2 {
            let line = statement.text.lines().nth(1).unwrap();
            assert!(line.contains(",EUR,3500,525,2975,"), "15% commission: {line}");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no earnings line: {statement:?}");
        tokio::time::sleep(StdDuration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn each_seat_gets_a_livekit_token_with_its_grants_inside_the_lesson_window() {
    const SECRET: &str = "lk-secret-0123456789abcdef";
    let creds = rooms::Credentials { api_key: "APIliveclass".into(), api_secret: SECRET.into() };
    let fake = rooms::fake::FakeLiveKit::start(creds).await;
    let url = fake.url();
    let m = market_with("livekit", |c| {
        c.livekit_url = Some(url);
        c.livekit_api_key = Some("APIliveclass".into());
        c.livekit_api_secret = Some(orchestrator::config::Secret::new(SECRET));
    })
    .await;
    let id = m.book_and_pay(&m.student, "2027-03-03T08:00:00Z", 60).await;
    // Confirmation opens the room on the LiveKit server (RoomService CreateRoom).
    m.wait_for(&id, "the room", |b| b["room"].is_string()).await;
    assert_eq!(fake.rooms(), [format!("lesson:{id}")]);
    let join =
        async |who: &Session| m.app.post(&format!("/api/v1/bookings/{id}/join"), Some(&who.access), json!({})).await;
    let early = join(&m.tutor).await;
    assert_eq!((early.status, early.code()), (StatusCode::CONFLICT, "outside_lesson_window"), "{early:?}");

    m.app.advance(at("2027-03-03T07:55:00Z") - m.app.clock_now());
    let now = m.app.clock_now().timestamp();
    let claims = |res: &Res| {
        assert_eq!(res.status, StatusCode::OK, "{res:?}");
        assert_eq!(res.body["backend"], "livekit");
        assert_eq!(res.body["url"], fake.url());
        assert_eq!(res.body["room"], format!("lesson:{id}"));
        rooms::token::decode(SECRET, res.body["token"].as_str().unwrap(), now + 1).expect("a valid LiveKit token")
    };
    let tutor = claims(&join(&m.tutor).await);
    assert_eq!((tutor.iss.as_str(), tutor.sub.as_str()), ("APIliveclass", m.tutor.user_id.as_str()));
    assert_eq!(tutor.video.room, format!("lesson:{id}"));
    assert!(tutor.video.room_join && tutor.video.can_publish && tutor.video.can_subscribe && tutor.video.room_admin);
    let meta: Value = serde_json::from_str(&tutor.metadata).unwrap();
    assert_eq!((meta["role"].as_str(), meta["booking_id"].as_str()), (Some("tutor"), Some(id.as_str())));
    let student = claims(&join(&m.student).await);
    assert!(
        student.video.can_publish && student.video.can_subscribe && !student.video.room_admin && !student.video.hidden
    );
    let staff = claims(&join(&m.t.admin).await);
    assert!(!staff.video.can_publish && staff.video.can_subscribe && staff.video.hidden, "staff observe");
    assert!(
        rooms::token::decode("another-secret", join(&m.student).await.body["token"].as_str().unwrap(), now + 1)
            .is_err()
    );
    let stranger = m.app.user(&m.t, "student", "nosy", ADULT).await;
    assert_eq!(join(&stranger).await.status, StatusCode::NOT_FOUND);
    // A linked parent watches only when the tenant allows it, and then only watches.
    let parent = m.app.user(&m.t, "parent", "dad", None).await;
    let link = json!({"child_id": m.student.user_id});
    let res = m.app.post(&format!("/api/v1/users/{}/children", parent.user_id), Some(&m.t.admin.access), link).await;
    assert_eq!(res.status, StatusCode::CREATED, "{res:?}");
    assert_eq!(join(&parent).await.code(), "forbidden");
    let path = format!("/api/v1/tenants/{}/booking-policy", m.t.id);
    let res =
        m.app.request(Method::PUT, &path, Some(&m.t.admin.access), Some(&json!({"parents_observe": true})), &[]).await;
    assert_eq!(res.status, StatusCode::OK, "{res:?}");
    let watching = claims(&join(&parent).await);
    assert!(!watching.video.can_publish && watching.video.can_subscribe && watching.video.hidden);

    // Cancelled: nobody gets in any more.
    let res = m.app.post(&format!("/api/v1/bookings/{id}/cancel"), Some(&m.tutor.access), json!({})).await;
    assert_eq!(res.status, StatusCode::OK, "{res:?}");
    assert_eq!(join(&m.student).await.code(), "lesson_not_open");
    // ...and the media room is closed, disconnecting whoever was in it.
    let deadline = tokio::time::Instant::now() + StdDuration::from_secs(10);
    while !fake.rooms().is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "room not closed: {:?}", fake.calls());
        tokio::time::sleep(StdDuration::from_millis(20)).await;
    }

    // By default the embedded SFU serves media on this very server.
    let own = market("embedded").await;
    let id = own.book_and_pay(&own.student, "2027-03-03T08:00:00Z", 60).await;
    own.app.advance(at("2027-03-03T08:00:00Z") - own.app.clock_now());
    let res = own.app.post(&format!("/api/v1/bookings/{id}/join"), Some(&own.student.access), json!({})).await;
    let ws = format!("ws://{}", own.app.addr);
    assert_eq!(
        (res.body["backend"].as_str(), res.body["url"].as_str()),
        (Some("embedded"), Some(ws.as_str())),
        "{res:?}"
    );

    // With it turned off and no LiveKit, the token is still minted, with no URL to use it at.
    let plain = market_with("nomedia", |c| c.embedded_sfu = false).await;
    let id = plain.book_and_pay(&plain.student, "2027-03-03T08:00:00Z", 60).await;
    plain.app.advance(at("2027-03-03T08:00:00Z") - plain.app.clock_now());
    let res = plain.app.post(&format!("/api/v1/bookings/{id}/join"), Some(&plain.student.access), json!({})).await;
    assert_eq!((res.body["backend"].as_str(), &res.body["url"]), (Some("none"), &Value::Null), "{res:?}");
}

#[tokio::test]
async fn livekit_webhooks_start_and_end_the_lesson_and_segments_merge_reconnects() {
    const SECRET: &str = "lk-secret-hooks-0123456789";
    let m = market_with("lkhooks", |c| {
        c.livekit_url = Some("wss://media.liveclass.test".into());
        c.livekit_api_key = Some("APIhooks".into());
        c.livekit_api_secret = Some(orchestrator::config::Secret::new(SECRET));
    })
    .await;
    let id = m.book_and_pay(&m.student, "2027-03-03T08:00:00Z", 60).await;
    m.app.advance(at("2027-03-03T07:58:00Z") - m.app.clock_now());
    let creds = rooms::Credentials { api_key: "APIhooks".into(), api_secret: SECRET.into() };
    let room = format!("lesson:{id}");
    let body = |ev: &str, kind: &str, who: &str| {
        json!({"event": kind, "id": ev, "createdAt": "1800000000", "room": {"name": room, "sid": "RM_1"},
               "participant": {"identity": who, "sid": "PA_x"}})
        .to_string()
    };
    let post = async |body: &str, auth: &str| {
        let res = m
            .app
            .http
            .post(format!("{}/api/v1/webhooks/livekit", m.app.base))
            .header("authorization", auth)
            .header("content-type", "application/webhook+json")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        (res.status(), res.json::<Value>().await.unwrap_or(Value::Null))
    };
    let deliver = async |body: String| {
        let auth = rooms::webhook::sign(body.as_bytes(), &creds, m.app.clock_now().timestamp());
        post(&body, &auth).await
    };

    // Forged, tampered and unsigned deliveries change nothing.
    let joined = body("EV_1", "participant_joined", &m.tutor.user_id);
    let forged = rooms::Credentials { api_secret: "guess".into(), ..creds.clone() };
    let (status, _) =
        post(&joined, &rooms::webhook::sign(joined.as_bytes(), &forged, m.app.clock_now().timestamp())).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let good = rooms::webhook::sign(joined.as_bytes(), &creds, m.app.clock_now().timestamp());
    assert_eq!(post(&joined.replace("EV_1", "EV_9"), &good).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(post(&joined, "").await.0, StatusCode::UNAUTHORIZED);

    assert_eq!(deliver(joined.clone()).await.1["duplicate"], false);
    assert_eq!(m.booking(&id).await["status"], "confirmed", "one participant");
    let (_, ack) = deliver(body("EV_2", "participant_joined", &m.student.user_id)).await;
    assert_eq!(ack["duplicate"], false);
    assert_eq!(m.booking(&id).await["status"], "in_progress", "both in: the lesson started");
    assert_eq!(deliver(joined).await.1["duplicate"], true, "a redelivered event");

    // The student drops for 30 s (a reconnect: one segment), the tutor's `left` never comes.
    m.app.advance(Duration::minutes(10));
    deliver(body("EV_3", "participant_left", &m.student.user_id)).await;
    m.app.advance(Duration::seconds(30));
    deliver(body("EV_4", "participant_joined", &m.student.user_id)).await;
    m.app.advance(Duration::minutes(55));
    let (status, _) =
        deliver(json!({"event": "room_finished", "id": "EV_5", "room": {"name": room}}).to_string()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(m.booking(&id).await["status"], "completed");
    let segs = m.app.get(&format!("/api/v1/bookings/{id}/segments"), &m.tutor.access).await;
    let segs = segs.body.as_array().unwrap().clone();
    assert_eq!(segs.len(), 2, "{segs:?}");
    for s in &segs {
        assert!(s["left_at"].is_string(), "closed by room_finished: {s}");
        assert_eq!(s["minutes"], 65, "{s}");
    }

    // Another lesson: the student leaves after 10 minutes for good (< 50% of it): their no-show, not a lesson.
    let id = m.book_and_pay(&m.student, "2027-03-08T08:00:00Z", 60).await;
    m.app.advance(at("2027-03-08T08:00:00Z") - m.app.clock_now());
    let room = format!("lesson:{id}");
    let body = |ev: &str, kind: &str, who: &str| {
        json!({"event": kind, "id": ev, "room": {"name": room}, "participant": {"identity": who}}).to_string()
    };
    deliver(body("EV_21", "participant_joined", &m.tutor.user_id)).await;
    deliver(body("EV_22", "participant_joined", &m.student.user_id)).await;
    assert_eq!(m.booking(&id).await["status"], "in_progress");
    m.app.advance(Duration::minutes(10));
    deliver(body("EV_23", "participant_left", &m.student.user_id)).await;
    m.app.advance(Duration::minutes(55));
    deliver(json!({"event": "room_finished", "id": "EV_24", "room": {"name": room}}).to_string()).await;
    let b = m.booking(&id).await;
    assert_eq!((b["status"].as_str(), b["refund_minor"].as_i64()), (Some("no_show_student"), Some(0)), "{b}");
}

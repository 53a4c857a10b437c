//! The tenant's booking policy and the pure functions that decide what a cancellation, a reschedule or
//! a no-show means for money and package credits.
//!
//! The rules (each has a unit test below):
//! - A tutor's cancellation (or staff cancelling for the tutor) always refunds in full and returns a
//!   package credit; so does a tutor's no-show.
//! - A student (or parent, or staff for them) cancelling before paying owes and gets nothing back.
//! - Paid, cancelled at least `free_cancel_hours` before the start: full refund, credit returned.
//! - Paid, cancelled later but before the start: `late_refund_bps` of the price back; the rest goes to the
//!   tutor as compensation. A package credit comes back only when the late refund is 100%.
//! - Once the lesson has started, a student can't cancel: the lesson is taught, or it is a no-show.
//! - A student's no-show refunds nothing; the tutor is paid.
//! - Students reschedule a confirmed lesson until `reschedule_until_hours` before the start, at most
//!   `max_reschedules` times; tutors and staff may move it any time before the start.

use axum::extract::State;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use sqlx::{AnyConnection, Row};
use utoipa::ToSchema;

use super::{BookingError, BookingResult, BookingStatus, Ctx};
use crate::{
    audit,
    auth::{Admin, AnyRole, Authed},
    db::{self},
    error::{ApiError, ApiResult, ErrorBody, Json, Path},
    ids::TenantId,
    request::ClientInfo,
};

/// A tenant's booking rules. Every field has a default, so a partial document is valid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct BookingPolicy {
    /// How long a hold reserves a slot before checkout.
    pub hold_minutes: i64,
    /// How long checkout (waiting for the payment) keeps the slot.
    pub payment_minutes: i64,
    /// Cancelling at least this long before the start is free.
    pub free_cancel_hours: i64,
    /// Share of the price refunded for a later cancellation, in basis points (5000 = 50%).
    pub late_refund_bps: u32,
    pub reschedule_until_hours: i64,
    pub max_reschedules: i64,
    /// Reminders, in minutes before the start (default a day and an hour).
    pub reminder_minutes: Vec<i64>,
    /// How long after the start a participant who hasn't joined counts as a no-show.
    pub no_show_grace_minutes: i64,
    /// A started lesson completes this long after its scheduled end.
    pub auto_end_grace_minutes: i64,
    /// The live room opens this long before the start.
    pub join_lead_minutes: i64,
    /// The tutor's share is released this long after completion (time for disputes).
    pub dispute_window_hours: i64,
    /// Platform commission in basis points (2000 = 20%).
    pub commission_bps: u32,
    /// A class meeting's attendance proposal marks a student `late` who first entered the media room more than
    /// this long after the start.
    pub late_after_minutes: i64,
    /// Linked parents may watch their child's lessons and meetings (subscribe only, unseen).
    pub parents_observe: bool,
    /// With media presence (LiveKit), a lesson counts as given when both were in the room for at least this
    /// share of it (basis points); otherwise it is the absent side's no-show.
    pub min_presence_bps: u32,
}

impl Default for BookingPolicy {
    fn default() -> Self {
        Self {
            hold_minutes: 10,
            payment_minutes: 30,
            free_cancel_hours: 24,
            late_refund_bps: 5_000,
            reschedule_until_hours: 24,
            max_reschedules: 2,
            reminder_minutes: vec![24 * 60, 60],
            no_show_grace_minutes: 15,
            auto_end_grace_minutes: 15,
            join_lead_minutes: 10,
            dispute_window_hours: 72,
            commission_bps: 2_000,
            late_after_minutes: 10,
            parents_observe: false,
            min_presence_bps: 5_000,
        }
    }
}

impl BookingPolicy {
    pub fn validate(&self) -> BookingResult<()> {
        let bad = |m: &str| Err(BookingError::invalid("invalid_policy", m));
        let week = 7 * 24 * 60;
        if !(1..=24 * 60).contains(&self.hold_minutes) || !(1..=7 * 24 * 60).contains(&self.payment_minutes) {
            return bad("hold_minutes is 1 to 1440 and payment_minutes 1 to 10080");
        }
        if self.late_refund_bps > 10_000 || self.commission_bps > 10_000 || self.min_presence_bps > 10_000 {
            return bad("late_refund_bps, commission_bps and min_presence_bps are 0 to 10000");
        }
        let hours = [self.free_cancel_hours, self.reschedule_until_hours, self.dispute_window_hours];
        if hours.iter().any(|h| !(0..=24 * 90).contains(h)) {
            return bad("hour settings are 0 to 2160");
        }
        if !(0..=100).contains(&self.max_reschedules) {
            return bad("max_reschedules is 0 to 100");
        }
        if self.reminder_minutes.len() > 5 || self.reminder_minutes.iter().any(|m| !(1..=week).contains(m)) {
            return bad("at most 5 reminders, each 1 minute to 7 days before the start");
        }
        let minutes =
            [self.no_show_grace_minutes, self.auto_end_grace_minutes, self.join_lead_minutes, self.late_after_minutes];
        if minutes.iter().any(|m| !(0..=24 * 60).contains(m)) {
            return bad("grace and lead minutes are 0 to 1440");
        }
        Ok(())
    }

    pub fn commission(&self) -> billing::Commission {
        billing::Commission { rate_bps: self.commission_bps }
    }
}

/// Who asked for a cancellation (staff say on whose behalf).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    Student,
    Tutor,
}

/// How a booking was paid for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Paid {
    /// Not yet (hold, pending payment).
    Nothing,
    /// This many minor units of money.
    Money(i64),
    /// One package credit.
    PackageCredit,
}

/// What ending a booking early means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Outcome {
    pub status: BookingStatus,
    /// Minor units back to the payer.
    pub refund_minor: i64,
    /// A package credit goes back to the package.
    pub return_credit: bool,
    /// Minor units (of the price) the tutor keeps as compensation; for a package lesson, the lesson's value.
    pub tutor_keeps_minor: i64,
}

/// The outcome of cancelling a booking whose lesson starts at `start`, at `now`. `price_minor` is the
/// lesson's value (for a package lesson, the package price per lesson). Err when a student may no
/// longer cancel.
pub fn cancellation(
    p: &BookingPolicy,
    side: Side,
    paid: Paid,
    price_minor: i64,
    start: DateTime<Utc>,
    now: DateTime<Utc>,
) -> BookingResult<Outcome> {
    let full = |status| Outcome {
        status,
        refund_minor: if let Paid::Money(m) = paid { m } else { 0 },
        return_credit: paid == Paid::PackageCredit,
        tutor_keeps_minor: 0,
    };
    match side {
        Side::Tutor => Ok(full(BookingStatus::CancelledByTutor)),
        Side::Student if now >= start => Err(BookingError::refused(
            "too_late_to_cancel",
            "the lesson has started; it is taught or recorded as a no-show",
        )),
        Side::Student if paid == Paid::Nothing || start - now >= Duration::hours(p.free_cancel_hours) => {
            Ok(full(BookingStatus::CancelledByStudent))
        }
        Side::Student => {
            let value = match paid {
                Paid::Money(m) => m,
                _ => price_minor,
            };
            let back = late_refund(p, value);
            let whole = back == value;
            Ok(Outcome {
                status: BookingStatus::CancelledByStudent,
                refund_minor: if let Paid::Money(_) = paid { back } else { 0 },
                return_credit: paid == Paid::PackageCredit && whole,
                tutor_keeps_minor: if paid == Paid::PackageCredit && whole { 0 } else { value - back },
            })
        }
    }
}

fn late_refund(p: &BookingPolicy, value: i64) -> i64 {
    billing::bps_of(value, p.late_refund_bps)
}

/// The outcome of a no-show by `side` (who didn't come).
pub fn no_show(side: Side, paid: Paid, price_minor: i64) -> Outcome {
    match side {
        Side::Tutor => Outcome {
            status: BookingStatus::NoShowTutor,
            refund_minor: if let Paid::Money(m) = paid { m } else { 0 },
            return_credit: paid == Paid::PackageCredit,
            tutor_keeps_minor: 0,
        },
        Side::Student => Outcome {
            status: BookingStatus::NoShowStudent,
            refund_minor: 0,
            return_credit: false,
            tutor_keeps_minor: match paid {
                Paid::Money(m) => m,
                _ => price_minor,
            },
        },
    }
}

/// Whether `side` may move a lesson starting at `start` (rescheduled `done` times so far) at `now`.
pub fn may_reschedule(
    p: &BookingPolicy,
    side: Side,
    done: i64,
    start: DateTime<Utc>,
    now: DateTime<Utc>,
) -> BookingResult<()> {
    if now >= start {
        return Err(BookingError::refused("too_late_to_reschedule", "the lesson has started"));
    }
    if side == Side::Student {
        if start - now < Duration::hours(p.reschedule_until_hours) {
            return Err(BookingError::refused(
                "too_late_to_reschedule",
                format!("students reschedule until {} hours before the start", p.reschedule_until_hours),
            ));
        }
        if done >= p.max_reschedules {
            return Err(BookingError::refused(
                "reschedule_limit",
                format!("a lesson can be rescheduled {} times", p.max_reschedules),
            ));
        }
    }
    Ok(())
}

/// The tenant's policy (the defaults when none was saved).
pub async fn load(conn: &mut AnyConnection, tenant: TenantId) -> BookingResult<BookingPolicy> {
    let row = sqlx::query("SELECT policy FROM booking_policies WHERE tenant_id = $1")
        .bind(tenant.to_string())
        .fetch_optional(conn)
        .await?;
    match row {
        None => Ok(BookingPolicy::default()),
        Some(r) => {
            let text: String = r.try_get("policy")?;
            Ok(serde_json::from_str(&text)?)
        }
    }
}

fn check_tenant(auth_tenant: TenantId, id: TenantId) -> ApiResult<()> {
    if auth_tenant != id {
        return Err(ApiError::forbidden("wrong_tenant", "that is another tenant"));
    }
    Ok(())
}

/// The tenant's booking policy (any member: students see the rules they book under).
#[utoipa::path(get, path = "/api/v1/tenants/{id}/booking-policy", tag = "bookings", params(("id" = TenantId, Path)),
    security(("bearer" = [])), responses((status = 200, body = BookingPolicy), (status = 403, body = ErrorBody)))]
pub async fn get(
    State(Ctx { db, .. }): State<Ctx>,
    auth: Authed<AnyRole>,
    Path(id): Path<TenantId>,
) -> ApiResult<Json<BookingPolicy>> {
    check_tenant(auth.tenant_id, id)?;
    let mut conn = db.pool().acquire().await?;
    Ok(Json(load(&mut conn, id).await?))
}

/// Replaces the tenant's booking policy (admins). Omitted fields take their defaults. Applies to
/// what happens from now on; bookings keep the price and times they were made with.
#[utoipa::path(put, path = "/api/v1/tenants/{id}/booking-policy", tag = "bookings", params(("id" = TenantId, Path)),
    request_body = BookingPolicy, security(("bearer" = [])),
    responses((status = 200, body = BookingPolicy), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn put(
    State(Ctx { db, clock, .. }): State<Ctx>,
    auth: Authed<Admin>,
    client: ClientInfo,
    Path(id): Path<TenantId>,
    Json(body): Json<BookingPolicy>,
) -> ApiResult<Json<BookingPolicy>> {
    check_tenant(auth.tenant_id, id)?;
    body.validate()?;
    let now = clock.now();
    let text = serde_json::to_string(&body).map_err(|_| ApiError::internal())?;
    let mut tx = db.begin().await?;
    sqlx::query(
        "INSERT INTO booking_policies (tenant_id, policy, updated_at) VALUES ($1, $2, $3)
         ON CONFLICT (tenant_id) DO UPDATE SET policy = excluded.policy, updated_at = excluded.updated_at",
    )
    .bind(id.to_string())
    .bind(&text)
    .bind(db::ts(now))
    .execute(tx.conn())
    .await?;
    let entry = audit::Entry::new(id, Some(auth.user_id), "booking_policy.update", &client)
        .details(serde_json::to_value(&body).unwrap_or_default());
    audit::record(tx.conn(), now, entry).await?;
    tx.commit().await?;
    Ok(Json(body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(h: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 1, 0, 0, 0).unwrap() + Duration::hours(h)
    }
    const START: i64 = 100;

    #[test]
    fn tutors_always_refund_in_full() {
        let p = BookingPolicy::default();
        for now in [0, START - 1, START - 30] {
            let o = cancellation(&p, Side::Tutor, Paid::Money(3500), 3500, t(START), t(now)).unwrap();
            assert_eq!((o.status, o.refund_minor, o.tutor_keeps_minor), (BookingStatus::CancelledByTutor, 3500, 0));
            let o = cancellation(&p, Side::Tutor, Paid::PackageCredit, 3000, t(START), t(now)).unwrap();
            assert!(o.return_credit);
        }
        assert_eq!(no_show(Side::Tutor, Paid::Money(3500), 3500).refund_minor, 3500);
        assert!(no_show(Side::Tutor, Paid::PackageCredit, 3000).return_credit);
    }

    #[test]
    fn students_cancel_free_until_the_window_then_partly() {
        let p = BookingPolicy::default(); // 24 h, 50%
        let free = cancellation(&p, Side::Student, Paid::Money(3500), 3500, t(START), t(START - 24)).unwrap();
        assert_eq!((free.refund_minor, free.tutor_keeps_minor), (3500, 0));
        let late = cancellation(&p, Side::Student, Paid::Money(3500), 3500, t(START), t(START - 23)).unwrap();
        assert_eq!((late.refund_minor, late.tutor_keeps_minor), (1750, 1750));
        // Odd amounts: half up to the student, the rest to the tutor; the parts add up.
        let odd = cancellation(&p, Side::Student, Paid::Money(3501), 3501, t(START), t(START - 1)).unwrap();
        assert_eq!((odd.refund_minor, odd.tutor_keeps_minor), (1751, 1750));
        let e = cancellation(&p, Side::Student, Paid::Money(3500), 3500, t(START), t(START)).unwrap_err();
        assert_eq!(e.code(), "too_late_to_cancel");
    }

    #[test]
    fn unpaid_cancellations_move_no_money() {
        let p = BookingPolicy::default();
        let o = cancellation(&p, Side::Student, Paid::Nothing, 3500, t(START), t(START - 1)).unwrap();
        assert_eq!((o.refund_minor, o.return_credit, o.tutor_keeps_minor), (0, false, 0));
    }

    #[test]
    fn package_credits_come_back_only_in_the_free_window_or_at_a_full_late_refund() {
        let p = BookingPolicy::default();
        let free = cancellation(&p, Side::Student, Paid::PackageCredit, 3000, t(START), t(START - 48)).unwrap();
        assert!(free.return_credit);
        assert_eq!(free.refund_minor, 0);
        let late = cancellation(&p, Side::Student, Paid::PackageCredit, 3000, t(START), t(START - 2)).unwrap();
        assert!(!late.return_credit);
        assert_eq!(late.tutor_keeps_minor, 1500);
        let generous = BookingPolicy { late_refund_bps: 10_000, ..p };
        let late = cancellation(&generous, Side::Student, Paid::PackageCredit, 3000, t(START), t(START - 2)).unwrap();
        assert!(late.return_credit);
        assert_eq!(late.tutor_keeps_minor, 0);
    }

    #[test]
    fn student_no_shows_pay_the_tutor() {
        let o = no_show(Side::Student, Paid::Money(3500), 3500);
        assert_eq!((o.status, o.refund_minor, o.tutor_keeps_minor), (BookingStatus::NoShowStudent, 0, 3500));
    }

    #[test]
    fn reschedule_window_and_limit_bind_students_only() {
        let p = BookingPolicy::default();
        assert!(may_reschedule(&p, Side::Student, 0, t(START), t(START - 24)).is_ok());
        assert_eq!(
            may_reschedule(&p, Side::Student, 0, t(START), t(START - 23)).unwrap_err().code(),
            "too_late_to_reschedule"
        );
        assert_eq!(may_reschedule(&p, Side::Student, 2, t(START), t(0)).unwrap_err().code(), "reschedule_limit");
        assert!(may_reschedule(&p, Side::Tutor, 9, t(START), t(START - 1)).is_ok());
        assert!(may_reschedule(&p, Side::Tutor, 0, t(START), t(START)).is_err());
    }

    #[test]
    fn partial_documents_take_defaults_and_bad_values_are_refused() {
        let p: BookingPolicy = serde_json::from_str(r#"{"free_cancel_hours": 48}"#).unwrap();
        assert_eq!(p.free_cancel_hours, 48);
        assert_eq!(p.hold_minutes, 10);
        assert!(serde_json::from_str::<BookingPolicy>(r#"{"nope": 1}"#).is_err());
        assert!(BookingPolicy { late_refund_bps: 10_001, ..p.clone() }.validate().is_err());
        assert!(BookingPolicy { reminder_minutes: vec![0], ..p.clone() }.validate().is_err());
        assert!(p.validate().is_ok());
    }
}

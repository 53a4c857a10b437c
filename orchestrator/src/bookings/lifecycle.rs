//! A booking's life over HTTP: hold → checkout (pending payment) → confirmed → in progress → completed,
//! or expired, cancelled (by either side), a no-show (either side), refunded. The transition table is in
//! `bookings`; the money and credit outcomes in `policy`; this module applies them.

use axum::{extract::State, http::StatusCode};
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use sqlx::{AnyConnection, Row};
use utoipa::{IntoParams, ToSchema};

use super::{
    Action, Booking, BookingError, BookingResult, BookingStatus, Change, Ctx, HistoryEntry, Party, load, party,
    payments,
    payments::{Payment, Refund, Subject},
    policy::{self, BookingPolicy, Outcome, Paid, Side},
    schedule, transition, tutors,
};
use crate::{
    auth::{AnyRole, AuthUser, Authed, Role},
    consent::{self, ConsentScope},
    db::{self, Db, Tx},
    error::{ApiError, ApiResult, ErrorBody, Json, Path, Query},
    events::DomainEvent,
    identity::users,
    ids::{BookingId, PackageId, TenantId, UserId},
    money, outbox,
};

/// Everything a client needs about one booking.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BookingView {
    #[serde(flatten)]
    pub booking: Booking,
    pub history: Vec<HistoryEntry>,
    pub payments: Vec<Payment>,
    pub refunds: Vec<Refund>,
}

pub(super) async fn view(conn: &mut AnyConnection, booking: Booking) -> ApiResult<BookingView> {
    let history = super::history(conn, booking.id).await?;
    let subject = Subject::Booking(booking.id);
    let payments = payments::of_subject(conn, subject).await?;
    let refunds = payments::refunds_of(conn, subject).await?;
    Ok(BookingView { booking, history, payments, refunds })
}

/// A write transaction holding booking `id`'s row lock, the booking, and the caller's part in it (404 for
/// someone with no part).
pub(super) async fn locked(cx: &Ctx, auth: &AuthUser, id: BookingId) -> ApiResult<(Tx, Booking, Party)> {
    let mut tx = cx.db.begin().await?;
    let b = load(tx.conn(), auth.tenant_id, id, cx.db.for_update()).await?;
    let who = party(tx.conn(), auth, &b).await?;
    Ok((tx, b, who))
}

/// The booking as committed now (after work done in other transactions).
pub(super) async fn fresh_view(cx: &Ctx, tenant: TenantId, id: BookingId) -> ApiResult<BookingView> {
    let mut conn = cx.db.pool().acquire().await?;
    let b = load(&mut conn, tenant, id, "").await?;
    view(&mut conn, b).await
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewBooking {
    pub tutor_id: UserId,
    /// UTC start; one of the tutor's listed slots.
    pub starts_at: DateTime<Utc>,
    pub minutes: u32,
    /// Who the lesson is for: omit when a student books for themself; a parent names their child, staff
    /// any student.
    pub student_id: Option<UserId>,
    /// Pay with a credit of this package instead of money: the booking confirms at once.
    pub package_id: Option<PackageId>,
}

/// The student a caller books for, checked: themself (students), a linked child (parents), anyone
/// (staff). Minors need a parent's live-video consent.
pub(super) async fn student_for(
    conn: &mut AnyConnection,
    auth: &AuthUser,
    named: Option<UserId>,
    now: DateTime<Utc>,
) -> ApiResult<users::User> {
    let id = match (auth.role, named) {
        (Role::Student, None) => auth.user_id,
        (Role::Student, Some(id)) if id == auth.user_id => id,
        (Role::Student, Some(_)) => return Err(ApiError::forbidden("forbidden", "students book for themselves")),
        (Role::Parent | Role::Admin | Role::Staff, Some(id)) => id,
        (Role::Parent | Role::Admin | Role::Staff, None) => {
            return Err(ApiError::unprocessable("student_required", "name the student the lesson is for"));
        }
        (Role::Tutor, _) => return Err(ApiError::forbidden("forbidden", "tutors don't book lessons")),
    };
    let student = users::get_or_404(conn, auth.tenant_id, id, now).await?;
    if student.role != Role::Student {
        return Err(ApiError::unprocessable("not_a_student", "lessons are booked for students"));
    }
    if auth.role == Role::Parent && !users::is_parent_of(conn, auth.tenant_id, auth.user_id, id).await? {
        return Err(ApiError::forbidden("forbidden", "parents book for their linked children"));
    }
    consent::ensure(conn, &student, &[ConsentScope::LiveVideo]).await?;
    Ok(student)
}

/// Fails when the student already has a lesson overlapping `[start, end)`.
async fn ensure_student_free(
    conn: &mut AnyConnection,
    student: UserId,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    now: DateTime<Utc>,
    except: Option<BookingId>,
) -> BookingResult<()> {
    if tutors::student_busy(conn, student, start, end, now, except).await?.is_empty() {
        Ok(())
    } else {
        Err(BookingError::refused("student_busy", "the student already has a lesson at that time"))
    }
}

/// Holds a slot (status `hold`, for the tenant's `hold_minutes`), or with `package_id` books it outright
/// with a package credit (status `confirmed`). Exactly one of any number of concurrent requests for
/// overlapping time of one tutor wins; the others get 409 `slot_unavailable`.
#[utoipa::path(post, path = "/api/v1/bookings", tag = "bookings", request_body = NewBooking, security(("bearer" = [])),
    params(("Idempotency-Key" = Option<String>, Header, description = "replays the first response for a repeated key")),
    responses((status = 201, body = BookingView), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create(
    State(cx): State<Ctx>,
    auth: Authed<AnyRole>,
    Json(body): Json<NewBooking>,
) -> ApiResult<(StatusCode, Json<BookingView>)> {
    let now = cx.clock.now();
    // Reads that need no lock, before taking the writer (SQLite) or any row lock: shorter critical sections.
    let (student, pol) = {
        let mut conn = cx.db.pool().acquire().await?;
        (student_for(&mut conn, &auth, body.student_id, now).await?, policy::load(&mut conn, auth.tenant_id).await?)
    };
    let mut tx = cx.db.begin().await?;
    // The tutor's lock first: from here until commit nobody else changes this tutor's calendar.
    let profile = tutors::load_profile(tx.conn(), auth.tenant_id, body.tutor_id, cx.db.for_update()).await?;
    tutors::ensure_offered(tx.conn(), &profile, body.starts_at, body.minutes, now, None).await?;
    let end = body.starts_at + Duration::minutes(i64::from(body.minutes));
    ensure_student_free(tx.conn(), student.id, body.starts_at, end, now, None).await?;
    let mut price = profile.price(body.minutes)?;
    if let Some(pkg) = body.package_id {
        price = super::packages::spend(tx.conn(), auth.tenant_id, pkg, student.id, body.tutor_id, body.minutes).await?;
    }
    let mut b = Booking {
        id: BookingId::new(),
        tenant_id: auth.tenant_id,
        tutor_id: body.tutor_id,
        student_id: student.id,
        booked_by: auth.user_id,
        starts_at: body.starts_at,
        ends_at: end,
        minutes: i64::from(body.minutes),
        status: BookingStatus::Hold,
        price_minor: price,
        currency: profile.doc.currency.clone(),
        package_id: body.package_id,
        expires_at: Some(now + Duration::minutes(pol.hold_minutes)),
        reschedules: 0,
        room: None,
        refund_minor: 0,
        credit_returned: false,
        cancel_reason: None,
        created_at: now,
        updated_at: now,
    };
    insert(tx.conn(), &b).await?;
    let mut history = vec![super::record(tx.conn(), &b, None, Some(auth.user_id), None, now).await?];
    if b.package_id.is_some() {
        let change = Change { action: Action::PayWithPackage, actor: Some(auth.user_id), reason: None };
        history.push(transition(tx.conn(), &mut b, change, now).await?);
        schedule::confirmed(tx.conn(), &b, &pol, now).await?;
    } else {
        schedule::expiry(tx.conn(), &b, now).await?;
    }
    cx.commit(tx).await?;
    // A new booking has no payments or refunds yet: the view needs no further reads.
    let view = BookingView { booking: b, history, payments: Vec::new(), refunds: Vec::new() };
    Ok((StatusCode::CREATED, Json(view)))
}

async fn insert(conn: &mut AnyConnection, b: &Booking) -> BookingResult<()> {
    sqlx::query(
        "INSERT INTO bookings (id, tenant_id, tutor_id, student_id, booked_by, starts_at, ends_at, minutes, status,
             price_minor, currency, package_id, expires_at, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $14)",
    )
    .bind(b.id.to_string())
    .bind(b.tenant_id.to_string())
    .bind(b.tutor_id.to_string())
    .bind(b.student_id.to_string())
    .bind(b.booked_by.to_string())
    .bind(db::ts(b.starts_at))
    .bind(db::ts(b.ends_at))
    .bind(b.minutes)
    .bind(b.status.as_str())
    .bind(b.price_minor)
    .bind(&b.currency)
    .bind(b.package_id.map(|p| p.to_string()))
    .bind(b.expires_at.map(db::ts))
    .bind(db::ts(b.created_at))
    .execute(conn)
    .await?;
    Ok(())
}

/// The payment for booking `id` arrived (see `checkout::succeeded`). Confirms it if it is still waiting
/// for the money and its hold hasn't lapsed; false otherwise (the caller refunds).
pub async fn payment_arrived(
    conn: &mut AnyConnection,
    tenant: TenantId,
    id: BookingId,
    actor: Option<UserId>,
    now: DateTime<Utc>,
) -> BookingResult<bool> {
    let mut b = load(conn, tenant, id, Db::lock_clause(conn)).await?;
    let waiting = matches!(b.status, BookingStatus::Hold | BookingStatus::PendingPayment);
    if !waiting || b.expires_at.is_some_and(|t| t <= now) {
        // A lapsed hold whose expiry job hasn't run yet: expire it now, so the state says why.
        if waiting {
            expire(conn, &mut b, now).await?;
        }
        return Ok(false);
    }
    let pol = policy::load(conn, tenant).await?;
    transition(conn, &mut b, Change { action: Action::PaymentSucceeded, actor, reason: None }, now).await?;
    schedule::confirmed(conn, &b, &pol, now).await?;
    Ok(true)
}

/// Expires a lapsed reservation (the `booking.expire` job, or a late payment finding it lapsed).
pub async fn expire(conn: &mut AnyConnection, b: &mut Booking, now: DateTime<Utc>) -> BookingResult<()> {
    transition(conn, b, Change { action: Action::Expire, actor: None, reason: Some("reservation lapsed") }, now)
        .await?;
    payments::cancel_pending(conn, Subject::Booking(b.id)).await
}

/// Applies an early ending's money and credit outcome to `b` (already moved to `outcome.status`).
async fn settle(
    conn: &mut AnyConnection,
    b: &mut Booking,
    outcome: &Outcome,
    reason: &str,
    now: DateTime<Utc>,
) -> BookingResult<()> {
    let subject = Subject::Booking(b.id);
    payments::cancel_pending(conn, subject).await?;
    if outcome.refund_minor > 0
        && let Some(paid) = payments::paid_of(conn, subject).await?
    {
        payments::request_refund(conn, b.tenant_id, &paid, outcome.refund_minor, reason, now).await?;
    }
    if outcome.return_credit
        && let Some(pkg) = b.package_id
    {
        super::packages::give_back(conn, b.tenant_id, pkg, now).await?;
    }
    if outcome.tutor_keeps_minor > 0 {
        schedule_payout(conn, b, outcome.tutor_keeps_minor, now).await?;
    }
    sqlx::query("UPDATE bookings SET refund_minor = $1, credit_returned = $2, cancel_reason = $3 WHERE id = $4")
        .bind(outcome.refund_minor)
        .bind(i64::from(outcome.return_credit))
        .bind(reason)
        .bind(b.id.to_string())
        .execute(&mut *conn)
        .await?;
    b.refund_minor = outcome.refund_minor;
    b.credit_returned = outcome.return_credit;
    b.cancel_reason = Some(reason.to_string());
    schedule::cancel_lesson(conn, b.id, now).await?;
    Ok(())
}

/// Schedules the tutor's share of `gross_minor` for release after the dispute window.
pub async fn schedule_payout(
    conn: &mut AnyConnection,
    b: &Booking,
    gross_minor: i64,
    now: DateTime<Utc>,
) -> BookingResult<()> {
    let pol = policy::load(conn, b.tenant_id).await?;
    schedule::payout(conn, b, gross_minor, now + Duration::hours(pol.dispute_window_hours), now).await?;
    Ok(())
}

fn paid(b: &Booking, money: Option<&Payment>) -> Paid {
    match (b.package_id, money) {
        (Some(_), _) => Paid::PackageCredit,
        (None, Some(p)) => Paid::Money(p.amount_minor),
        (None, None) => Paid::Nothing,
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CancelRequest {
    pub reason: Option<String>,
    /// Staff only: whose cancellation this is (it decides the refund).
    pub on_behalf_of: Option<Side>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Cancelled {
    pub booking: BookingView,
    pub outcome: Outcome,
}

fn side_of(who: Party, on_behalf_of: Option<Side>) -> ApiResult<Side> {
    match (who, on_behalf_of) {
        (Party::Staff, Some(side)) => Ok(side),
        (Party::Staff, None) => Err(ApiError::unprocessable(
            "on_behalf_of_required",
            "staff say whose cancellation it is: student or tutor",
        )),
        (_, Some(_)) => Err(ApiError::forbidden("forbidden", "only staff act on someone's behalf")),
        (Party::Tutor, None) => Ok(Side::Tutor),
        (Party::Student | Party::Parent, None) => Ok(Side::Student),
    }
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct QuoteQuery {
    /// Staff only: whose cancellation it would be.
    pub on_behalf_of: Option<Side>,
}

/// What cancelling the booking now would do (the refund, a package credit back), without doing it: the
/// same rule `cancel` applies, so a page shows the consequence before the person confirms. 409 when it
/// can't be cancelled (already ended, or the lesson has started).
#[utoipa::path(get, path = "/api/v1/bookings/{id}/cancellation", tag = "bookings",
    params(("id" = BookingId, Path), QuoteQuery), security(("bearer" = [])),
    responses((status = 200, body = Outcome), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn cancellation_quote(
    State(cx): State<Ctx>,
    auth: Authed<AnyRole>,
    Path(id): Path<BookingId>,
    Query(q): Query<QuoteQuery>,
) -> ApiResult<Json<Outcome>> {
    let now = cx.clock.now();
    let mut conn = cx.db.pool().acquire().await?;
    let b = load(&mut conn, auth.tenant_id, id, "").await?;
    let who = party(&mut conn, &auth, &b).await?;
    let side = side_of(who, q.on_behalf_of)?;
    let action = if side == Side::Tutor { Action::CancelByTutor } else { Action::CancelByStudent };
    super::step(b.status, action)?;
    let pol = policy::load(&mut conn, auth.tenant_id).await?;
    let money = payments::paid_of(&mut conn, Subject::Booking(b.id)).await?;
    Ok(Json(policy::cancellation(&pol, side, paid(&b, money.as_ref()), b.price_minor, b.starts_at, now)?))
}

/// Cancels a booking. The tenant's policy decides the refund and whether a package credit returns (see
/// `policy`); the outcome is in the answer and on the booking.
#[utoipa::path(post, path = "/api/v1/bookings/{id}/cancel", tag = "bookings", params(("id" = BookingId, Path)),
    request_body = CancelRequest, security(("bearer" = [])),
    responses((status = 200, body = Cancelled), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn cancel(
    State(cx): State<Ctx>,
    auth: Authed<AnyRole>,
    Path(id): Path<BookingId>,
    Json(body): Json<CancelRequest>,
) -> ApiResult<Json<Cancelled>> {
    let now = cx.clock.now();
    let reason = body.reason.as_deref().map(str::trim).filter(|r| !r.is_empty()).unwrap_or("cancelled");
    if reason.len() > 500 {
        return Err(ApiError::unprocessable("invalid_reason", "a reason is at most 500 characters"));
    }
    let (mut tx, mut b, who) = locked(&cx, &auth, id).await?;
    let side = side_of(who, body.on_behalf_of)?;
    let action = if side == Side::Tutor { Action::CancelByTutor } else { Action::CancelByStudent };
    super::step(b.status, action)?;
    let pol = policy::load(tx.conn(), auth.tenant_id).await?;
    let money = payments::paid_of(tx.conn(), Subject::Booking(b.id)).await?;
    let outcome = policy::cancellation(&pol, side, paid(&b, money.as_ref()), b.price_minor, b.starts_at, now)?;
    transition(tx.conn(), &mut b, Change { action, actor: Some(auth.user_id), reason: Some(reason) }, now).await?;
    settle(tx.conn(), &mut b, &outcome, reason, now).await?;
    let booking = view(tx.conn(), b).await?;
    cx.commit(tx).await?;
    Ok(Json(Cancelled { booking, outcome }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RescheduleRequest {
    /// The new UTC start: one of the tutor's listed slots (this booking's own time counts as free).
    pub starts_at: DateTime<Utc>,
}

/// Moves a confirmed lesson to another free slot of the same tutor and length. Students (and parents)
/// until the policy's `reschedule_until_hours` and at most `max_reschedules` times; the tutor and staff
/// any time before the start. Reminders and checks follow the lesson to its new time.
#[utoipa::path(post, path = "/api/v1/bookings/{id}/reschedule", tag = "bookings", params(("id" = BookingId, Path)),
    request_body = RescheduleRequest, security(("bearer" = [])),
    responses((status = 200, body = BookingView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn reschedule(
    State(cx): State<Ctx>,
    auth: Authed<AnyRole>,
    Path(id): Path<BookingId>,
    Json(body): Json<RescheduleRequest>,
) -> ApiResult<Json<BookingView>> {
    let now = cx.clock.now();
    let mut tx = cx.db.begin().await?;
    // Tutor lock before the booking's, the same order as `create`, so the two can't deadlock.
    let peek = load(tx.conn(), auth.tenant_id, id, "").await?;
    let who = party(tx.conn(), &auth, &peek).await?;
    let profile = tutors::load_profile(tx.conn(), auth.tenant_id, peek.tutor_id, cx.db.for_update()).await?;
    let mut b = load(tx.conn(), auth.tenant_id, id, cx.db.for_update()).await?;
    if b.status != BookingStatus::Confirmed {
        return Err(ApiError::conflict(
            "not_reschedulable",
            format!("a booking that is {} can't move", b.status.as_str()),
        ));
    }
    let pol = policy::load(tx.conn(), auth.tenant_id).await?;
    let side = if who.for_student() { Side::Student } else { Side::Tutor };
    policy::may_reschedule(&pol, side, b.reschedules, b.starts_at, now)?;
    let minutes = u32::try_from(b.minutes).map_err(|_| ApiError::internal())?;
    tutors::ensure_offered(tx.conn(), &profile, body.starts_at, minutes, now, Some(b.id)).await?;
    let end = body.starts_at + Duration::minutes(b.minutes);
    ensure_student_free(tx.conn(), b.student_id, body.starts_at, end, now, Some(b.id)).await?;
    let previous = b.starts_at;
    let counted = i64::from(side == Side::Student);
    sqlx::query("UPDATE bookings SET starts_at = $1, ends_at = $2, reschedules = reschedules + $3, updated_at = $4 WHERE id = $5")
        .bind(db::ts(body.starts_at))
        .bind(db::ts(end))
        .bind(counted)
        .bind(db::ts(now))
        .bind(b.id.to_string())
        .execute(tx.conn())
        .await?;
    b.starts_at = body.starts_at;
    b.ends_at = end;
    b.reschedules += counted;
    schedule::cancel_lesson(tx.conn(), b.id, now).await?;
    schedule::lesson(tx.conn(), &b, &pol, now).await?;
    let event = DomainEvent::BookingRescheduled {
        booking_id: b.id,
        tutor_id: b.tutor_id,
        student_id: b.student_id,
        previous_starts_at: previous,
        starts_at: b.starts_at,
        ends_at: b.ends_at,
        actor: auth.user_id,
    };
    outbox::append(tx.conn(), b.tenant_id, now, &event).await?;
    let view = view(tx.conn(), b).await?;
    cx.commit(tx).await?;
    Ok(Json(view))
}

/// Starts a confirmed lesson: either participant or staff, from the policy's join lead before the start.
/// (Joining the lesson's live room starts it too, once both participants are in.)
#[utoipa::path(post, path = "/api/v1/bookings/{id}/start", tag = "bookings", params(("id" = BookingId, Path)),
    security(("bearer" = [])),
    responses((status = 200, body = BookingView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn start(
    State(cx): State<Ctx>,
    auth: Authed<AnyRole>,
    Path(id): Path<BookingId>,
) -> ApiResult<Json<BookingView>> {
    let now = cx.clock.now();
    let (mut tx, mut b, who) = locked(&cx, &auth, id).await?;
    if who == Party::Parent {
        return Err(ApiError::forbidden("forbidden", "the participants start their lesson"));
    }
    let pol = policy::load(tx.conn(), auth.tenant_id).await?;
    start_lesson(tx.conn(), &mut b, &pol, Some(auth.user_id), now).await?;
    let view = view(tx.conn(), b).await?;
    cx.commit(tx).await?;
    Ok(Json(view))
}

/// `confirmed → in_progress`, inside the lesson window.
pub async fn start_lesson(
    conn: &mut AnyConnection,
    b: &mut Booking,
    pol: &BookingPolicy,
    actor: Option<UserId>,
    now: DateTime<Utc>,
) -> BookingResult<()> {
    super::step(b.status, Action::Start)?;
    if now < b.starts_at - Duration::minutes(pol.join_lead_minutes) {
        return Err(BookingError::refused("too_early", "the lesson can't start yet"));
    }
    if now >= b.ends_at {
        return Err(BookingError::refused("lesson_over", "the lesson's time is over"));
    }
    transition(conn, b, Change { action: Action::Start, actor, reason: None }, now).await?;
    Ok(())
}

/// Both participants came but nobody started the lesson before its time was over: it happened.
pub async fn start_and_complete(conn: &mut AnyConnection, b: &mut Booking, now: DateTime<Utc>) -> BookingResult<()> {
    let reason = Some("both participants joined");
    transition(conn, b, Change { action: Action::Start, actor: None, reason }, now).await?;
    complete_lesson(conn, b, None, now).await
}

/// Completes a running lesson (its tutor or staff); the tutor's share is released after the dispute window.
#[utoipa::path(post, path = "/api/v1/bookings/{id}/complete", tag = "bookings", params(("id" = BookingId, Path)),
    security(("bearer" = [])),
    responses((status = 200, body = BookingView), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn complete(
    State(cx): State<Ctx>,
    auth: Authed<AnyRole>,
    Path(id): Path<BookingId>,
) -> ApiResult<Json<BookingView>> {
    let now = cx.clock.now();
    let (mut tx, mut b, who) = locked(&cx, &auth, id).await?;
    if !matches!(who, Party::Tutor | Party::Staff) {
        return Err(ApiError::forbidden("forbidden", "the tutor or staff complete a lesson"));
    }
    complete_lesson(tx.conn(), &mut b, Some(auth.user_id), now).await?;
    let view = view(tx.conn(), b).await?;
    cx.commit(tx).await?;
    Ok(Json(view))
}

/// Ends a running lesson by what its media room saw: with presence segments (LiveKit), both participants
/// in the room for at least the policy's `min_presence_bps` of the lesson → completed; otherwise the absent
/// side's no-show (the tutor's first). Without segments (no media server) it completes.
pub async fn finish(
    conn: &mut AnyConnection,
    b: &mut Booking,
    pol: &BookingPolicy,
    now: DateTime<Utc>,
) -> BookingResult<()> {
    let rows = sqlx::query("SELECT user_id, joined_at, left_at FROM media_segments WHERE room = $1")
        .bind(format!("lesson:{}", b.id))
        .fetch_all(&mut *conn)
        .await?;
    if rows.is_empty() {
        return complete_lesson(conn, b, None, now).await;
    }
    let mut seconds: std::collections::HashMap<String, i64> = Default::default();
    for r in rows {
        let joined = db::parse_ts(&r.try_get::<String, _>("joined_at")?)?.max(b.starts_at);
        let left = match r.try_get::<Option<String>, _>("left_at")? {
            Some(t) => db::parse_ts(&t)?,
            None => now,
        }
        .min(b.ends_at);
        *seconds.entry(r.try_get("user_id")?).or_default() += (left - joined).num_seconds().max(0);
    }
    let need = (b.ends_at - b.starts_at).num_seconds() * i64::from(pol.min_presence_bps) / 10_000;
    let present = |u: UserId| seconds.get(&u.to_string()).copied().unwrap_or(0) >= need;
    match (present(b.tutor_id), present(b.student_id)) {
        (true, true) => complete_lesson(conn, b, None, now).await,
        (false, _) => record_no_show(conn, b, Side::Tutor, None, now).await.map(|_| ()),
        (true, false) => record_no_show(conn, b, Side::Student, None, now).await.map(|_| ()),
    }
}

/// `in_progress → completed`, scheduling the payout.
pub async fn complete_lesson(
    conn: &mut AnyConnection,
    b: &mut Booking,
    actor: Option<UserId>,
    now: DateTime<Utc>,
) -> BookingResult<()> {
    transition(conn, b, Change { action: Action::Complete, actor, reason: None }, now).await?;
    schedule::cancel_lesson(conn, b.id, now).await?;
    schedule_payout(conn, b, b.price_minor, now).await
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NoShowRequest {
    /// Who didn't come.
    pub absent: Side,
}

/// Records a no-show: staff for either side; the tutor for the student, once the policy's grace after the
/// start has passed. (The `booking.no_show_check` job does this from who joined the live room.)
#[utoipa::path(post, path = "/api/v1/bookings/{id}/no-show", tag = "bookings", params(("id" = BookingId, Path)),
    request_body = NoShowRequest, security(("bearer" = [])),
    responses((status = 200, body = Cancelled), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn no_show(
    State(cx): State<Ctx>,
    auth: Authed<AnyRole>,
    Path(id): Path<BookingId>,
    Json(body): Json<NoShowRequest>,
) -> ApiResult<Json<Cancelled>> {
    let now = cx.clock.now();
    let (mut tx, mut b, who) = locked(&cx, &auth, id).await?;
    let pol = policy::load(tx.conn(), auth.tenant_id).await?;
    match (who, body.absent) {
        (Party::Staff, _) => {}
        (Party::Tutor, Side::Student) => {
            if now < b.starts_at + Duration::minutes(pol.no_show_grace_minutes) {
                return Err(ApiError::conflict("too_early", "a student is a no-show only after the grace period"));
            }
        }
        _ => return Err(ApiError::forbidden("forbidden", "staff record no-shows; tutors report absent students")),
    }
    let outcome = record_no_show(tx.conn(), &mut b, body.absent, Some(auth.user_id), now).await?;
    let booking = view(tx.conn(), b).await?;
    cx.commit(tx).await?;
    Ok(Json(Cancelled { booking, outcome }))
}

pub async fn record_no_show(
    conn: &mut AnyConnection,
    b: &mut Booking,
    absent: Side,
    actor: Option<UserId>,
    now: DateTime<Utc>,
) -> BookingResult<Outcome> {
    let action = if absent == Side::Tutor { Action::NoShowTutor } else { Action::NoShowStudent };
    super::step(b.status, action)?;
    let money = payments::paid_of(conn, Subject::Booking(b.id)).await?;
    let outcome = policy::no_show(absent, paid(b, money.as_ref()), b.price_minor);
    let reason = if absent == Side::Tutor { "the tutor didn't come" } else { "the student didn't come" };
    transition(conn, b, Change { action, actor, reason: Some(reason) }, now).await?;
    settle(conn, b, &outcome, reason, now).await?;
    Ok(outcome)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefundRequest {
    /// Minor units to refund (default: everything paid).
    pub amount_minor: Option<i64>,
    pub reason: String,
}

/// Refunds a completed lesson or a student's no-show (staff): the booking becomes `refunded`. A package
/// lesson gets its credit back instead of money.
#[utoipa::path(post, path = "/api/v1/bookings/{id}/refund", tag = "bookings", params(("id" = BookingId, Path)),
    request_body = RefundRequest, security(("bearer" = [])),
    responses((status = 200, body = BookingView), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn refund(
    State(cx): State<Ctx>,
    auth: Authed<crate::auth::Staff>,
    Path(id): Path<BookingId>,
    Json(body): Json<RefundRequest>,
) -> ApiResult<Json<BookingView>> {
    let now = cx.clock.now();
    let reason = body.reason.trim();
    if reason.is_empty() || reason.len() > 500 {
        return Err(ApiError::unprocessable("invalid_reason", "a reason is 1 to 500 characters"));
    }
    let mut tx = cx.db.begin().await?;
    let mut b = load(tx.conn(), auth.tenant_id, id, cx.db.for_update()).await?;
    super::step(b.status, Action::Refund)?;
    let money = payments::paid_of(tx.conn(), Subject::Booking(b.id)).await?;
    let outcome = match (paid(&b, money.as_ref()), body.amount_minor) {
        (Paid::Money(total), amount) => {
            let amount = amount.unwrap_or(total);
            if !(1..=total).contains(&amount) {
                return Err(ApiError::unprocessable("invalid_amount", format!("refund 1 to {total} minor units")));
            }
            Outcome {
                status: BookingStatus::Refunded,
                refund_minor: amount,
                return_credit: false,
                tutor_keeps_minor: 0,
            }
        }
        (Paid::PackageCredit, None) => {
            Outcome { status: BookingStatus::Refunded, refund_minor: 0, return_credit: true, tutor_keeps_minor: 0 }
        }
        (Paid::PackageCredit, Some(_)) => {
            return Err(ApiError::unprocessable("invalid_amount", "a package lesson is refunded as its credit"));
        }
        (Paid::Nothing, _) => return Err(ApiError::conflict("nothing_paid", "nothing was paid for this booking")),
    };
    transition(
        tx.conn(),
        &mut b,
        Change { action: Action::Refund, actor: Some(auth.user_id), reason: Some(reason) },
        now,
    )
    .await?;
    settle(tx.conn(), &mut b, &outcome, reason, now).await?;
    // Already released to the tutor: take their part back in proportion.
    let value = if outcome.return_credit { b.price_minor } else { outcome.refund_minor };
    money::refund_released(tx.conn(), b.tenant_id, b.id, value, now).await?;
    let view = view(tx.conn(), b).await?;
    cx.commit(tx).await?;
    Ok(Json(view))
}

/// One booking: its participants, the student's parents, and staff.
#[utoipa::path(get, path = "/api/v1/bookings/{id}", tag = "bookings", params(("id" = BookingId, Path)),
    security(("bearer" = [])), responses((status = 200, body = BookingView), (status = 404, body = ErrorBody)))]
pub async fn get(
    State(cx): State<Ctx>,
    auth: Authed<AnyRole>,
    Path(id): Path<BookingId>,
) -> ApiResult<Json<BookingView>> {
    let mut conn = cx.db.pool().acquire().await?;
    let b = load(&mut conn, auth.tenant_id, id, "").await?;
    party(&mut conn, &auth, &b).await?;
    Ok(Json(view(&mut conn, b).await?))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    pub status: Option<BookingStatus>,
    /// Lessons starting at or after this instant.
    pub from: Option<DateTime<Utc>>,
    /// Lessons starting before this instant.
    pub to: Option<DateTime<Utc>>,
    /// Staff: one tutor's or student's lessons.
    pub user_id: Option<UserId>,
    /// At most this many (default 100, max 500), earliest first.
    pub limit: Option<i64>,
}

/// Bookings the caller can see, by start time: staff all (or one user's), tutors and students their own,
/// parents their children's.
#[utoipa::path(get, path = "/api/v1/bookings", tag = "bookings", params(ListQuery), security(("bearer" = [])),
    responses((status = 200, body = Vec<Booking>)))]
pub async fn list(
    State(cx): State<Ctx>,
    auth: Authed<AnyRole>,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<Vec<Booking>>> {
    let filter = match auth.role {
        Role::Admin | Role::Staff => " AND ($6 IS NULL OR tutor_id = $6 OR student_id = $6)",
        Role::Tutor => " AND tutor_id = $6",
        Role::Student => " AND student_id = $6",
        Role::Parent => " AND student_id IN (SELECT child_id FROM parent_links WHERE parent_id = $6)",
    };
    let sql = format!(
        "SELECT {} FROM bookings WHERE tenant_id = $1 AND ($2 IS NULL OR status = $2) AND ($3 IS NULL OR starts_at >= $3)
           AND ($4 IS NULL OR starts_at < $4){filter} ORDER BY starts_at, id LIMIT $5",
        super::BOOKING_COLUMNS
    );
    let who = if auth.is_staff() { q.user_id } else { Some(auth.user_id) };
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(auth.tenant_id.to_string())
        .bind(q.status.map(|s| s.as_str()))
        .bind(q.from.map(db::ts))
        .bind(q.to.map(db::ts))
        .bind(q.limit.unwrap_or(100).clamp(1, 500))
        .bind(who.map(|u| u.to_string()))
        .fetch_all(cx.db.pool())
        .await?;
    Ok(Json(rows.iter().map(super::booking_from_row).collect::<Result<_, _>>()?))
}

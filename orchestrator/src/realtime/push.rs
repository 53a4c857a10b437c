//! Domain events to the live rooms: attendance to the meeting and the student; credits, XP, levels,
//! badges, streaks and unlocks to each student's user channel; a revoked live-video consent removes
//! the child from every meeting room at once, on every node. Bookings: status changes, reschedules,
//! reminders and the lesson's room go to both participants' user channels; the lesson room hears it
//! start and end, and a cancelled (expired, no-show, refunded) lesson's participants are removed from it.
//!
//! What a student is told, their linked parents are told too, on their own channels with `child_id` added
//! (a parent's pages follow their children live); attendance also reaches the class's instructor; consent
//! requests and decisions reach the parent and the child.
//!
//! This is a live subscriber of the outbox (see `outbox`): best effort after commit. A client that
//! missed pushes recovers them from the room history window, or reloads state over HTTP.

use std::sync::Arc;

use serde_json::json;
use signaling::Signaling;
use sqlx::Row;
use tokio::sync::{mpsc, watch};

use crate::{
    bookings::BookingStatus, consent::ConsentScope, db::Db, events::DomainEvent, ids::TenantId, outbox::EventEnvelope,
};

/// Publishes each event's live form until shutdown.
pub async fn run(
    sig: Signaling,
    db: Db,
    media: Arc<dyn rooms::MediaBackend>,
    mut events: mpsc::Receiver<Arc<EventEnvelope>>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let event = tokio::select! {
            e = events.recv() => match e { Some(e) => e, None => return },
            _ = shutdown.changed() => return,
        };
        if let Err(e) = push(&sig, &db, media.as_ref(), &event).await {
            tracing::warn!(error = %e, event = event.event.name(), "live push failed");
        }
    }
}

/// Publishes `data` to a student's channel and to each linked parent's, with the child named.
async fn to_student(
    sig: &Signaling,
    db: &Db,
    tenant: TenantId,
    student: &str,
    data: &serde_json::Value,
) -> anyhow::Result<()> {
    sig.publish(&format!("user:{student}"), data).await?;
    let parents = sqlx::query("SELECT parent_id FROM parent_links WHERE tenant_id = $1 AND child_id = $2")
        .bind(tenant.to_string())
        .bind(student)
        .fetch_all(db.pool())
        .await?;
    if !parents.is_empty() {
        let mut for_parent = data.clone();
        for_parent["child_id"] = json!(student);
        for r in parents {
            sig.publish(&format!("user:{}", r.try_get::<String, _>("parent_id")?), &for_parent).await?;
        }
    }
    Ok(())
}

async fn push(sig: &Signaling, db: &Db, media: &dyn rooms::MediaBackend, env: &EventEnvelope) -> anyhow::Result<()> {
    let user = |id: &dyn std::fmt::Display| format!("user:{id}");
    let tenant = env.tenant_id;
    match &env.event {
        DomainEvent::AttendanceMarked { class_id, meeting_id, student_id, previous, status, marked_by, .. } => {
            let data = json!({
                "kind": "attendance", "class_id": class_id, "meeting_id": meeting_id, "student_id": student_id,
                "status": status, "previous": previous, "marked_by": marked_by,
            });
            sig.publish(&format!("meeting:{meeting_id}"), &data).await?;
            to_student(sig, db, tenant, &student_id.to_string(), &data).await?;
            // The instructor's pages (attendance tables outside the room) follow too, unless they marked it.
            let instructor = sqlx::query("SELECT instructor_id FROM classes WHERE tenant_id = $1 AND id = $2")
                .bind(tenant.to_string())
                .bind(class_id.to_string())
                .fetch_optional(db.pool())
                .await?
                .map(|r| r.try_get::<String, _>("instructor_id"))
                .transpose()?;
            if let Some(instructor) = instructor.filter(|i| *i != marked_by.to_string()) {
                sig.publish(&format!("user:{instructor}"), &data).await?;
            }
        }
        DomainEvent::CreditDeducted { class_id, enrollment_id, student_id, meeting_id, balance } => {
            let data = json!({
                "kind": "credits", "class_id": class_id, "enrollment_id": enrollment_id, "delta": -1,
                "balance": balance, "reason": "attendance", "meeting_id": meeting_id,
            });
            to_student(sig, db, tenant, &student_id.to_string(), &data).await?;
        }
        DomainEvent::CreditAdjusted { class_id, enrollment_id, student_id, kind, delta, balance, reason } => {
            let data = json!({
                "kind": "credits", "class_id": class_id, "enrollment_id": enrollment_id, "delta": delta,
                "balance": balance, "reason": reason, "entry": kind,
            });
            to_student(sig, db, tenant, &student_id.to_string(), &data).await?;
        }
        DomainEvent::XpAwarded { student_id, class_id, amount, total, reason } => {
            let data = json!({"kind": "xp", "class_id": class_id, "amount": amount, "total": total, "reason": reason});
            to_student(sig, db, tenant, &student_id.to_string(), &data).await?;
        }
        DomainEvent::LevelUp { student_id, level } => {
            to_student(sig, db, tenant, &student_id.to_string(), &json!({"kind": "level", "level": level})).await?;
        }
        DomainEvent::BadgeUnlocked { student_id, badge, class_id } => {
            let data = json!({"kind": "badge", "badge": badge, "class_id": class_id});
            to_student(sig, db, tenant, &student_id.to_string(), &data).await?;
        }
        DomainEvent::StreakUpdated { student_id, class_id, streak } => {
            let data = json!({"kind": "streak", "class_id": class_id, "streak": streak});
            to_student(sig, db, tenant, &student_id.to_string(), &data).await?;
        }
        DomainEvent::LessonUnlocked { class_id, lesson_id, .. } => {
            let students = sqlx::query("SELECT student_id FROM enrollments WHERE tenant_id = $1 AND class_id = $2")
                .bind(tenant.to_string())
                .bind(class_id.to_string())
                .fetch_all(db.pool())
                .await?;
            let data = json!({"kind": "unlock", "class_id": class_id, "lesson_id": lesson_id});
            for r in students {
                to_student(sig, db, tenant, &r.try_get::<String, _>("student_id")?, &data).await?;
            }
        }
        // Live video gone: out of every meeting. Chat gone: out too, so a rejoin gets the grant the
        // gate now gives (no chat, hands or reactions).
        DomainEvent::ConsentRevoked { child_id, scopes, .. }
            if scopes.iter().any(|s| matches!(s, ConsentScope::LiveVideo | ConsentScope::Chat)) =>
        {
            sig.kick(&child_id.to_string(), "meeting:", "consent_revoked").await?;
            sig.kick(&child_id.to_string(), "lesson:", "consent_revoked").await?;
            // And out of the media rooms of their current lessons, on the media server.
            let lessons = sqlx::query(
                "SELECT id FROM bookings WHERE tenant_id = $1 AND student_id = $2 AND status IN ('confirmed', 'in_progress')",
            )
            .bind(tenant.to_string())
            .bind(child_id.to_string())
                    .fetch_all(db.pool())
                    .await?;
            for r in lessons {
                let room = format!("lesson:{}", r.try_get::<String, _>("id")?);
                media.remove_participant(&room, &child_id.to_string()).await?;
            }
            // And out of the media rooms of their classes' meetings running around now.
            let meetings = sqlx::query(
                "SELECT m.id FROM meetings m JOIN enrollments e ON e.class_id = m.class_id AND e.tenant_id = m.tenant_id
                 WHERE e.tenant_id = $1 AND e.student_id = $2 AND m.starts_at <= $3 AND m.ends_at >= $4",
            )
            .bind(tenant.to_string())
            .bind(child_id.to_string())
            .bind(crate::db::ts(env.occurred_at + chrono::Duration::days(1)))
            .bind(crate::db::ts(env.occurred_at - chrono::Duration::days(1)))
            .fetch_all(db.pool())
            .await?;
            for r in meetings {
                let room = format!("meeting:{}", r.try_get::<String, _>("id")?);
                media.remove_participant(&room, &child_id.to_string()).await?;
            }
        }
        DomainEvent::BookingStatusChanged {
            booking_id, tutor_id, student_id, from, to, starts_at, ends_at, ..
        } => {
            let data = json!({
                "kind": "booking", "booking_id": booking_id, "status": to, "from": from,
                "starts_at": starts_at, "ends_at": ends_at,
            });
            sig.publish(&user(tutor_id), &data).await?;
            to_student(sig, db, tenant, &student_id.to_string(), &data).await?;
            let room = format!("lesson:{booking_id}");
            match to {
                BookingStatus::InProgress => {
                    sig.publish(&room, &json!({"kind": "lesson", "state": "started", "booking_id": booking_id}))
                        .await?;
                }
                BookingStatus::Completed => {
                    sig.publish(&room, &json!({"kind": "lesson", "state": "ended", "booking_id": booking_id})).await?;
                }
                s if s.is_terminal() => {
                    let reason = format!("booking_{}", s.as_str());
                    for u in [tutor_id, student_id] {
                        sig.kick(&u.to_string(), &room, &reason).await?;
                    }
                    // The media room too: closing it disconnects whoever is in it.
                    media.close_room(&room).await?;
                }
                _ => {}
            }
        }
        DomainEvent::MeetingStarted { meeting_id, .. } => {
            let data = json!({"kind": "lesson", "state": "started", "meeting_id": meeting_id});
            sig.publish(&format!("meeting:{meeting_id}"), &data).await?;
        }
        DomainEvent::BookingRescheduled {
            booking_id,
            tutor_id,
            student_id,
            previous_starts_at,
            starts_at,
            ends_at,
            ..
        } => {
            let data = json!({
                "kind": "booking_rescheduled", "booking_id": booking_id, "previous_starts_at": previous_starts_at,
                "starts_at": starts_at, "ends_at": ends_at,
            });
            sig.publish(&user(tutor_id), &data).await?;
            sig.publish(&user(student_id), &data).await?;
        }
        DomainEvent::LessonRoomReady { booking_id, tutor_id, student_id, room, backend } => {
            let data = json!({"kind": "lesson_room", "booking_id": booking_id, "room": room, "backend": backend});
            sig.publish(&user(tutor_id), &data).await?;
            sig.publish(&user(student_id), &data).await?;
        }
        DomainEvent::BookingReminder { booking_id, tutor_id, student_id, starts_at, minutes_before } => {
            let data = json!({
                "kind": "reminder", "booking_id": booking_id, "starts_at": starts_at, "minutes_before": minutes_before,
            });
            sig.publish(&user(tutor_id), &data).await?;
            sig.publish(&user(student_id), &data).await?;
        }
        DomainEvent::PackageStatusChanged { package_id, student_id, status, remaining, .. } => {
            let data = json!({"kind": "package", "package_id": package_id, "status": status, "remaining": remaining});
            to_student(sig, db, tenant, &student_id.to_string(), &data).await?;
        }
        DomainEvent::ConsentRequested { request_id, child_id, parent_id, scopes } => {
            let data = json!({"kind": "consent_requested", "request_id": request_id, "child_id": child_id,
                              "scopes": scopes});
            sig.publish(&user(parent_id), &data).await?;
        }
        _ => {}
    }
    // Consent decisions, whatever else they cause: the parent's and the child's pages follow.
    if let DomainEvent::ConsentGranted { child_id, parent_id, scopes, .. }
    | DomainEvent::ConsentDenied { child_id, parent_id, scopes }
    | DomainEvent::ConsentRevoked { child_id, parent_id, scopes } = &env.event
    {
        let data = json!({"kind": "consent", "event": env.event.name(), "child_id": child_id, "scopes": scopes});
        sig.publish(&user(parent_id), &data).await?;
        sig.publish(&user(child_id), &data).await?;
    }
    Ok(())
}

//! Gamification: events appended to the outbox (as the classes module will) drive XP, levels, streaks
//! and badges; results are read over HTTP.

use std::time::Duration;

use chrono::{DateTime, Utc};
use orchestrator::{
    classes::AttendanceStatus::{self, *},
    clock::Clock,
    db,
    events::DomainEvent,
    gamification::{Awards, XpRules},
    ids::{ClassId, CourseId, EnrollmentId, LessonId, MeetingId, TenantId, UserId},
    outbox::{self, Consumer, EventEnvelope},
};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::Row;

use crate::helpers::{Session, Tenant, TestApp};

fn uid(s: &Session) -> UserId {
    s.user_id.parse().unwrap()
}

fn tid(t: &Tenant) -> TenantId {
    t.id.parse().unwrap()
}

/// Meetings a week apart from a fixed start.
fn week(n: i64) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-03-02T10:00:00Z").unwrap().with_timezone(&Utc) + chrono::Duration::days(7 * n)
}

fn mark(
    class: ClassId,
    meeting: MeetingId,
    starts_at: DateTime<Utc>,
    student: UserId,
    status: AttendanceStatus,
) -> DomainEvent {
    DomainEvent::AttendanceMarked {
        class_id: class,
        meeting_id: meeting,
        meeting_starts_at: starts_at,
        student_id: student,
        previous: None,
        status,
        marked_by: UserId::new(),
    }
}

/// Appends `events` in one transaction, wakes the dispatcher and waits until everything (including
/// the events consumers append in turn) is published.
async fn emit(app: &TestApp, tenant: TenantId, events: &[DomainEvent]) {
    let mut tx = app.state.db.begin().await.unwrap();
    for e in events {
        outbox::append(tx.conn(), tenant, app.clock.now(), e).await.unwrap();
    }
    tx.commit().await.unwrap();
    app.state.outbox.notify();
    settle(app).await;
}

async fn settle(app: &TestApp) {
    for _ in 0..200 {
        let pending: i64 = sqlx::query("SELECT COUNT(*) AS n FROM outbox WHERE published_at IS NULL")
            .fetch_one(app.state.db.pool())
            .await
            .unwrap()
            .try_get("n")
            .unwrap();
        if pending == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the outbox did not drain (a consumer failing?)");
}

/// Every event of type `name` in the outbox, in order.
async fn events(app: &TestApp, name: &str) -> Vec<DomainEvent> {
    sqlx::query("SELECT payload FROM outbox WHERE event_type = $1 ORDER BY id")
        .bind(name)
        .fetch_all(app.state.db.pool())
        .await
        .unwrap()
        .iter()
        .map(|r| serde_json::from_str(&r.try_get::<String, _>("payload").unwrap()).unwrap())
        .collect()
}

/// (amount, total) of each `XpAwarded` of `student`.
async fn xp_awards(app: &TestApp, student: UserId) -> Vec<(i64, i64)> {
    events(app, "XpAwarded")
        .await
        .into_iter()
        .filter_map(|e| match e {
            DomainEvent::XpAwarded { student_id, amount, total, .. } if student_id == student => Some((amount, total)),
            _ => None,
        })
        .collect()
}

async fn streak_updates(app: &TestApp, student: UserId) -> Vec<i64> {
    events(app, "StreakUpdated")
        .await
        .into_iter()
        .filter_map(|e| match e {
            DomainEvent::StreakUpdated { student_id, streak, .. } if student_id == student => Some(streak),
            _ => None,
        })
        .collect()
}

async fn badge_unlocks(app: &TestApp, student: UserId) -> Vec<(String, Option<ClassId>)> {
    events(app, "BadgeUnlocked")
        .await
        .into_iter()
        .filter_map(|e| match e {
            DomainEvent::BadgeUnlocked { student_id, badge, class_id } if student_id == student => {
                Some((badge, class_id))
            }
            _ => None,
        })
        .collect()
}

async fn profile(app: &TestApp, token: &str, user: UserId) -> Value {
    let res = app.get(&format!("/api/v1/users/{user}/gamification"), token).await;
    assert_eq!(res.status, StatusCode::OK, "{res:?}");
    res.body
}

fn badge_names(profile: &Value) -> Vec<(String, Value)> {
    profile["badges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| (b["badge"].as_str().unwrap().to_string(), b["class_id"].clone()))
        .collect()
}

#[tokio::test]
async fn attendance_xp_follows_the_latest_mark() {
    let app = TestApp::spawn().await;
    let t = app.tenant("gxp").await;
    let s = app.user(&t, "student", "sam", Some("2010-01-01")).await;
    let (class, m1, m2) = (ClassId::new(), MeetingId::new(), MeetingId::new());

    emit(&app, tid(&t), &[mark(class, m1, week(0), uid(&s), Present)]).await;
    let p = profile(&app, &s.access, uid(&s)).await;
    assert_eq!((p["xp"].as_i64(), p["level"].as_i64(), p["next_level_xp"].as_i64()), (Some(10), Some(1), Some(100)));
    assert_eq!(p["streaks"], json!([{"class_id": class, "streak": 1}]));
    assert_eq!(badge_names(&p), [("first_lesson".to_string(), Value::Null)]);

    emit(&app, tid(&t), &[mark(class, m2, week(1), uid(&s), Late)]).await;
    assert_eq!(profile(&app, &s.access, uid(&s)).await["xp"], 15);

    // Correcting the first meeting to absent takes its XP back and breaks the streak behind m2.
    emit(&app, tid(&t), &[mark(class, m1, week(0), uid(&s), Absent)]).await;
    let p = profile(&app, &s.access, uid(&s)).await;
    assert_eq!(p["xp"], 5);
    assert_eq!(p["streaks"], json!([{"class_id": class, "streak": 1}]));
    // The badge stays.
    assert_eq!(badge_names(&p).len(), 1);

    assert_eq!(xp_awards(&app, uid(&s)).await, [(10, 10), (5, 15), (-10, 5)]);
    assert_eq!(streak_updates(&app, uid(&s)).await, [1, 2, 1]);
    assert_eq!(badge_unlocks(&app, uid(&s)).await, [("first_lesson".to_string(), None)]);
    match &events(&app, "XpAwarded").await[2] {
        DomainEvent::XpAwarded { class_id, reason, .. } => {
            assert_eq!((*class_id, reason.as_str()), (Some(class), "attendance_absent"));
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn an_event_delivered_twice_has_one_effect() {
    let app = TestApp::spawn().await;
    let t = app.tenant("gdup").await;
    let s = app.user(&t, "student", "dee", Some("2010-01-01")).await;
    let (class, m1) = (ClassId::new(), MeetingId::new());
    let event = mark(class, m1, week(0), uid(&s), Present);
    emit(&app, tid(&t), std::slice::from_ref(&event)).await;
    assert_eq!(profile(&app, &s.access, uid(&s)).await["xp"], 10);

    // Redelivery of the same outbox row (as after a crash before marking it published):
    // processed_events turns it into a no-op.
    let id: i64 = sqlx::query("SELECT id FROM outbox WHERE event_type = 'AttendanceMarked'")
        .fetch_one(app.state.db.pool())
        .await
        .unwrap()
        .try_get("id")
        .unwrap();
    sqlx::query("UPDATE outbox SET published_at = NULL WHERE id = $1")
        .bind(id)
        .execute(app.state.db.pool())
        .await
        .unwrap();
    app.state.outbox.notify();
    settle(&app).await;
    let processed: i64 =
        sqlx::query("SELECT COUNT(*) AS n FROM processed_events WHERE consumer = 'gamification' AND event_id = $1")
            .bind(id)
            .fetch_one(app.state.db.pool())
            .await
            .unwrap()
            .try_get("n")
            .unwrap();
    assert_eq!(processed, 1);

    // The same event appended twice by a producer (a new outbox row) changes nothing either.
    emit(&app, tid(&t), std::slice::from_ref(&event)).await;
    assert_eq!(profile(&app, &s.access, uid(&s)).await["xp"], 10);
    assert_eq!(xp_awards(&app, uid(&s)).await, [(10, 10)]);
    assert_eq!(streak_updates(&app, uid(&s)).await, [1]);
    assert_eq!(badge_unlocks(&app, uid(&s)).await.len(), 1);

    // And the consumer itself, handed one envelope twice, applies it once.
    let consumer = Awards::new(XpRules { present: 10, late: 5, lesson_completed: 20 });
    let envelope = EventEnvelope {
        id: 0,
        tenant_id: tid(&t),
        occurred_at: app.clock.now(),
        event: mark(class, MeetingId::new(), week(1), uid(&s), Present),
    };
    let mut tx = app.state.db.begin().await.unwrap();
    consumer.handle(tx.conn(), &envelope, app.clock.now()).await.unwrap();
    consumer.handle(tx.conn(), &envelope, app.clock.now()).await.unwrap();
    tx.commit().await.unwrap();
    app.state.outbox.notify();
    settle(&app).await;
    assert_eq!(profile(&app, &s.access, uid(&s)).await["xp"], 20);
    assert_eq!(xp_awards(&app, uid(&s)).await, [(10, 10), (10, 20)]);
    assert_eq!(streak_updates(&app, uid(&s)).await, [1, 2]);
}

#[tokio::test]
async fn lesson_completion_awards_once_and_levels_up() {
    let app = TestApp::spawn_with(|c| c.xp_lesson_completed = 60).await;
    let t = app.tenant("glvl").await;
    let s = app.user(&t, "student", "lee", Some("2010-01-01")).await;
    let (class, l1, l2) = (ClassId::new(), LessonId::new(), LessonId::new());
    let done = |lesson, class| DomainEvent::LessonCompleted { class_id: class, lesson_id: lesson, student_id: uid(&s) };

    emit(&app, tid(&t), &[done(l1, class)]).await;
    let p = profile(&app, &s.access, uid(&s)).await;
    assert_eq!((p["xp"].as_i64(), p["level"].as_i64()), (Some(60), Some(1)));
    assert!(events(&app, "LevelUp").await.is_empty());

    emit(&app, tid(&t), &[done(l2, class)]).await;
    let p = profile(&app, &s.access, uid(&s)).await;
    assert_eq!(
        (p["xp"].as_i64(), p["level"].as_i64(), p["level_xp"].as_i64(), p["next_level_xp"].as_i64()),
        (Some(120), Some(2), Some(100), Some(300))
    );
    assert_eq!(events(&app, "LevelUp").await, [DomainEvent::LevelUp { student_id: uid(&s), level: 2 }]);

    // The same lesson completed again (here through another class) earns nothing more.
    emit(&app, tid(&t), &[done(l1, ClassId::new())]).await;
    assert_eq!(profile(&app, &s.access, uid(&s)).await["xp"], 120);
    assert_eq!(xp_awards(&app, uid(&s)).await, [(60, 60), (60, 120)]);
}

#[tokio::test]
async fn a_five_meeting_streak_unlocks_its_badge() {
    let app = TestApp::spawn().await;
    let t = app.tenant("gstreak").await;
    let s = app.user(&t, "student", "stu", Some("2010-01-01")).await;
    let class = ClassId::new();
    // Absent, then five attended meetings with an excused one among them (excused is neutral).
    let statuses = [Absent, Present, Present, Present, Excused, Late, Present];
    for (i, status) in statuses.into_iter().enumerate() {
        emit(&app, tid(&t), &[mark(class, MeetingId::new(), week(i as i64), uid(&s), status)]).await;
    }
    let p = profile(&app, &s.access, uid(&s)).await;
    assert_eq!(p["streaks"], json!([{"class_id": class, "streak": 5}]));
    assert_eq!(badge_names(&p), [("first_lesson".to_string(), Value::Null), ("streak_5".to_string(), json!(class))]);
    assert_eq!(streak_updates(&app, uid(&s)).await, [1, 2, 3, 4, 5]);
    assert_eq!(
        badge_unlocks(&app, uid(&s)).await,
        [("first_lesson".to_string(), None), ("streak_5".to_string(), Some(class))]
    );

    // An absence resets the streak; the badge stays.
    emit(&app, tid(&t), &[mark(class, MeetingId::new(), week(7), uid(&s), Absent)]).await;
    let p = profile(&app, &s.access, uid(&s)).await;
    assert_eq!(p["streaks"], json!([{"class_id": class, "streak": 0}]));
    assert_eq!(badge_names(&p).len(), 2);
    assert_eq!(streak_updates(&app, uid(&s)).await, [1, 2, 3, 4, 5, 0]);
}

#[tokio::test]
async fn perfect_attendance_is_awarded_when_the_class_completes() {
    let app = TestApp::spawn().await;
    let t = app.tenant("gperf").await;
    let perfect = app.user(&t, "student", "pia", Some("2010-01-01")).await;
    let missed = app.user(&t, "student", "max", Some("2010-01-01")).await;
    let excused = app.user(&t, "student", "eve", Some("2010-01-01")).await;
    let (class, other) = (ClassId::new(), ClassId::new());
    let (m1, m2, m3) = (MeetingId::new(), MeetingId::new(), MeetingId::new());
    emit(
        &app,
        tid(&t),
        &[
            mark(class, m1, week(0), uid(&perfect), Present),
            mark(class, m2, week(1), uid(&perfect), Late),
            mark(class, m3, week(2), uid(&perfect), Excused),
            mark(class, m1, week(0), uid(&missed), Present),
            mark(class, m2, week(1), uid(&missed), Absent),
            mark(class, m1, week(0), uid(&excused), Excused),
            mark(other, MeetingId::new(), week(0), uid(&perfect), Present),
        ],
    )
    .await;
    assert!(events(&app, "BadgeUnlocked").await.iter().all(|e| !matches!(
        e, DomainEvent::BadgeUnlocked { badge, .. } if badge == "perfect_attendance"
    )));

    // Completing it twice (a duplicate event) awards once.
    emit(
        &app,
        tid(&t),
        &[DomainEvent::ClassCompleted { class_id: class }, DomainEvent::ClassCompleted { class_id: class }],
    )
    .await;
    let perfect_badges: Vec<_> = events(&app, "BadgeUnlocked")
        .await
        .into_iter()
        .filter(|e| matches!(e, DomainEvent::BadgeUnlocked { badge, .. } if badge == "perfect_attendance"))
        .collect();
    assert_eq!(
        perfect_badges,
        [DomainEvent::BadgeUnlocked {
            student_id: uid(&perfect),
            badge: "perfect_attendance".into(),
            class_id: Some(class)
        }]
    );
    let p = profile(&app, &t.admin.access, uid(&perfect)).await;
    assert!(badge_names(&p).contains(&("perfect_attendance".to_string(), json!(class))), "{p}");
    for s in [&missed, &excused] {
        let p = profile(&app, &t.admin.access, uid(s)).await;
        assert!(!badge_names(&p).iter().any(|(b, _)| b == "perfect_attendance"), "{p}");
    }
}

/// Inserts a class taught by `instructor` with `students` enrolled (the classes API is built elsewhere).
async fn class_with(app: &TestApp, t: &Tenant, instructor: UserId, students: &[UserId]) -> ClassId {
    let now = db::ts(app.clock.now());
    let (course, class) = (CourseId::new(), ClassId::new());
    let mut tx = app.state.db.begin().await.unwrap();
    sqlx::query("INSERT INTO courses (id, tenant_id, title, created_at) VALUES ($1, $2, 'Course', $3)")
        .bind(course.to_string())
        .bind(&t.id)
        .bind(&now)
        .execute(tx.conn())
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO classes (id, tenant_id, kind, title, course_id, instructor_id, total_meetings, capacity, timezone, status, created_at)
         VALUES ($1, $2, 'group', 'Class', $3, $4, 10, 10, 'UTC', 'active', $5)",
    )
    .bind(class.to_string())
    .bind(&t.id)
    .bind(course.to_string())
    .bind(instructor.to_string())
    .bind(&now)
    .execute(tx.conn())
    .await
    .unwrap();
    for s in students {
        sqlx::query(
            "INSERT INTO enrollments (id, tenant_id, class_id, student_id, created_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(EnrollmentId::new().to_string())
        .bind(&t.id)
        .bind(class.to_string())
        .bind(s.to_string())
        .bind(&now)
        .execute(tx.conn())
        .await
        .unwrap();
    }
    tx.commit().await.unwrap();
    class
}

#[tokio::test]
async fn leaderboard_ranks_opted_in_members_by_class_xp() {
    let app = TestApp::spawn().await;
    let t = app.tenant("gboard").await;
    let tutor = app.user(&t, "tutor", "tom", None).await;
    let other_tutor = app.user(&t, "tutor", "tia", None).await;
    let ann = app.user(&t, "student", "ann", Some("2010-01-01")).await;
    let bob = app.user(&t, "student", "bob", Some("2010-01-01")).await;
    let cat = app.user(&t, "student", "cat", Some("2010-01-01")).await;
    let outsider = app.user(&t, "student", "out", Some("2010-01-01")).await;
    let class = class_with(&app, &t, uid(&tutor), &[uid(&ann), uid(&bob), uid(&cat)]).await;
    let elsewhere = ClassId::new();
    let (m1, m2) = (MeetingId::new(), MeetingId::new());
    emit(
        &app,
        tid(&t),
        &[
            mark(class, m1, week(0), uid(&ann), Present),
            mark(class, m2, week(1), uid(&ann), Present),
            mark(class, m1, week(0), uid(&bob), Late),
            mark(elsewhere, MeetingId::new(), week(0), uid(&bob), Present),
            mark(elsewhere, MeetingId::new(), week(1), uid(&bob), Present),
            mark(class, m1, week(0), uid(&cat), Present),
        ],
    )
    .await;

    let base = format!("/api/v1/classes/{class}/leaderboard");
    for s in [&ann, &bob] {
        let res = app.post(&format!("{base}/opt-in"), Some(&s.access), json!({})).await;
        assert_eq!(res.status, StatusCode::OK, "{res:?}");
        assert_eq!(res.body["opted_in"], true);
    }
    // Opting in twice is fine.
    assert_eq!(app.post(&format!("{base}/opt-in"), Some(&ann.access), json!({})).await.status, StatusCode::OK);
    let res = app.post(&format!("{base}/opt-in"), Some(&outsider.access), json!({})).await;
    assert_eq!((res.status, res.code()), (StatusCode::FORBIDDEN, "not_enrolled"));
    let res = app.post(&format!("{base}/opt-in"), Some(&tutor.access), json!({})).await;
    assert_eq!((res.status, res.code()), (StatusCode::FORBIDDEN, "forbidden_role"));

    // Class XP only (bob's 20 XP elsewhere don't count); cat did not opt in.
    let expected = json!([
        {"rank": 1, "student_id": ann.user_id, "display_name": "ann", "xp": 20},
        {"rank": 2, "student_id": bob.user_id, "display_name": "bob", "xp": 5},
    ]);
    for viewer in [&cat, &tutor, &t.admin] {
        let res = app.get(&base, &viewer.access).await;
        assert_eq!(res.status, StatusCode::OK, "{res:?}");
        assert_eq!(res.body["entries"], expected);
    }
    let res = app.get(&format!("{base}?limit=1"), &cat.access).await;
    assert_eq!(res.body["entries"].as_array().unwrap().len(), 1);

    for viewer in [&outsider, &other_tutor] {
        let res = app.get(&base, &viewer.access).await;
        assert_eq!((res.status, res.code()), (StatusCode::FORBIDDEN, "not_a_member"), "{res:?}");
    }
    let res = app.get(&format!("/api/v1/classes/{}/leaderboard", ClassId::new()), &t.admin.access).await;
    assert_eq!((res.status, res.code()), (StatusCode::NOT_FOUND, "class_not_found"));
    let other = app.tenant("gboard2").await;
    let res = app.get(&base, &other.admin.access).await;
    assert_eq!((res.status, res.code()), (StatusCode::NOT_FOUND, "class_not_found"));

    let res = app.post(&format!("{base}/opt-out"), Some(&bob.access), json!({})).await;
    assert_eq!((res.status, &res.body["opted_in"]), (StatusCode::OK, &json!(false)));
    let res = app.get(&base, &ann.access).await;
    assert_eq!(res.body["entries"], json!([expected[0]]));
}

#[tokio::test]
async fn progress_is_visible_to_the_student_their_parents_and_staff() {
    let app = TestApp::spawn().await;
    let t = app.tenant("gacc").await;
    let kid = app.user(&t, "student", "kid", Some("2014-01-01")).await;
    let classmate = app.user(&t, "student", "mate", Some("2014-01-01")).await;
    let parent = app.user(&t, "parent", "mum", None).await;
    let stranger = app.user(&t, "parent", "stranger", None).await;
    let tutor = app.user(&t, "tutor", "tut", None).await;
    let res = app
        .post(
            &format!("/api/v1/users/{}/children", parent.user_id),
            Some(&t.admin.access),
            json!({"child_id": kid.user_id}),
        )
        .await;
    assert_eq!(res.status, StatusCode::CREATED, "{res:?}");
    emit(&app, tid(&t), &[mark(ClassId::new(), MeetingId::new(), week(0), uid(&kid), Late)]).await;

    for viewer in [&kid, &parent, &t.admin] {
        assert_eq!(profile(&app, &viewer.access, uid(&kid)).await["xp"], 5);
    }
    let path = format!("/api/v1/users/{}/gamification", kid.user_id);
    for viewer in [&classmate, &stranger, &tutor] {
        let res = app.get(&path, &viewer.access).await;
        assert_eq!(res.status, StatusCode::FORBIDDEN, "{res:?}");
    }
    let other = app.tenant("gacc2").await;
    let res = app.get(&path, &other.admin.access).await;
    assert_eq!((res.status, res.code()), (StatusCode::NOT_FOUND, "user_not_found"));
}

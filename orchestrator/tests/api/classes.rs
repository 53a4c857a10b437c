//! Class orchestration over HTTP: classes and their rules, enrollments, the credit ledger,
//! attendance (including concurrency), lesson unlocks and reports.

use chrono::Duration;
use orchestrator::clock::Clock;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{Res, Session, Tenant, TestApp};

/// A tenant with a course of `lessons` lessons, a tutor, and `students` adult students.
pub struct School {
    pub t: Tenant,
    pub tutor: Session,
    pub students: Vec<Session>,
    pub course: Value,
}

pub async fn school(app: &TestApp, slug: &str, lessons: usize, students: usize) -> School {
    let t = app.tenant(slug).await;
    let tutor = app.user(&t, "tutor", "tutor", None).await;
    let mut list = Vec::new();
    for i in 0..students {
        list.push(app.user(&t, "student", &format!("student{i}"), Some("2000-01-01")).await);
    }
    let lessons: Vec<_> = (1..=lessons).map(|i| json!({"title": format!("Lesson {i}")})).collect();
    let res = app.post("/api/v1/courses", Some(&t.admin.access), json!({"title": "Algebra", "lessons": lessons})).await;
    assert_eq!(res.status, StatusCode::CREATED, "{res:?}");
    School { t, tutor, students: list, course: res.body }
}

/// `n` one-hour meetings a day apart, the first starting `first_in` from the app's clock.
pub fn meetings(app: &TestApp, n: usize, first_in: Duration) -> Vec<Value> {
    let start = app.clock.now() + first_in;
    (0..n)
        .map(|i| {
            let s = start + Duration::days(i as i64);
            json!({"starts_at": s, "ends_at": s + Duration::hours(1)})
        })
        .collect()
}

impl School {
    pub async fn class(
        &self,
        app: &TestApp,
        kind: &str,
        total: i64,
        capacity: Option<i64>,
        meetings: Vec<Value>,
    ) -> Res {
        let mut body = json!({
            "kind": kind, "title": "Algebra 1", "course_id": self.course["id"], "instructor_id": self.tutor.user_id,
            "total_meetings": total, "timezone": "Europe/Berlin", "meetings": meetings,
        });
        if let Some(c) = capacity {
            body["capacity"] = json!(c);
        }
        app.post("/api/v1/classes", Some(&self.t.admin.access), body).await
    }

    pub async fn enroll(&self, app: &TestApp, class_id: &str, student: &str) -> Res {
        app.post(
            &format!("/api/v1/classes/{class_id}/enrollments"),
            Some(&self.t.admin.access),
            json!({"student_id": student, "reference": "grant-1"}),
        )
        .await
    }

    pub async fn transition(&self, app: &TestApp, class_id: &str, to: &str) -> Res {
        app.request(Method::POST, &format!("/api/v1/classes/{class_id}/{to}"), Some(&self.t.admin.access), None, &[])
            .await
    }

    pub async fn change_package(&self, app: &TestApp, class_id: &str, total: i64) -> Res {
        let body = json!({"total_meetings": total});
        let path = format!("/api/v1/classes/{class_id}/package");
        app.request(Method::PUT, &path, Some(&self.t.admin.access), Some(&body), &[]).await
    }
}

pub async fn mark(app: &TestApp, token: &str, meeting: &str, student: &str, status: &str) -> Res {
    app.request(
        Method::PUT,
        &format!("/api/v1/meetings/{meeting}/attendance/{student}"),
        Some(token),
        Some(&json!({"status": status})),
        &[],
    )
    .await
}

/// Tests here move the clock by hours; tokens must outlive that.
const DAYS: u64 = 7 * 24 * 3600;

fn id(v: &Value) -> String {
    v["id"].as_str().unwrap().to_string()
}

async fn balance(app: &TestApp, token: &str, enrollment: &str) -> i64 {
    let res = app.get(&format!("/api/v1/enrollments/{enrollment}/ledger"), token).await;
    assert_eq!(res.status, StatusCode::OK, "{res:?}");
    let entries = res.body["entries"].as_array().unwrap();
    let sum: i64 = entries.iter().map(|e| e["delta"].as_i64().unwrap()).sum();
    assert_eq!(sum, res.body["balance"].as_i64().unwrap(), "balance = sum of entries");
    if let Some(last) = entries.last() {
        assert_eq!(last["balance_after"].as_i64().unwrap(), sum, "running balance agrees");
    }
    sum
}

#[tokio::test]
async fn group_class_rules() {
    let app = TestApp::spawn_with(|c| c.access_token_ttl_secs = DAYS).await;
    let s = school(&app, "grp", 5, 3).await;
    let res = s.class(&app, "group", 3, Some(2), meetings(&app, 3, Duration::hours(1))).await;
    assert_eq!(res.status, StatusCode::CREATED, "{res:?}");
    assert_eq!(res.body["status"], "draft");
    assert_eq!(res.body["meetings"].as_array().unwrap().len(), 3);
    assert!(
        res.body["meetings"][0]["starts_at_local"].as_str().unwrap().ends_with("+01:00")
            || res.body["meetings"][0]["starts_at_local"].as_str().unwrap().ends_with("+02:00")
    );
    let class = id(&res.body);

    let e0 = s.enroll(&app, &class, &s.students[0].user_id).await;
    assert_eq!((e0.status, e0.body["balance"].as_i64()), (StatusCode::CREATED, Some(3)), "{e0:?}");
    assert_eq!(s.enroll(&app, &class, &s.students[1].user_id).await.status, StatusCode::CREATED);
    let res = s.enroll(&app, &class, &s.students[0].user_id).await;
    assert_eq!((res.status, res.code()), (StatusCode::CONFLICT, "already_enrolled"));
    let res = s.enroll(&app, &class, &s.students[2].user_id).await;
    assert_eq!((res.status, res.code()), (StatusCode::CONFLICT, "class_full"));
    let res = s.enroll(&app, &class, &s.tutor.user_id).await;
    assert_eq!((res.status, res.code()), (StatusCode::UNPROCESSABLE_ENTITY, "not_a_student"));

    assert_eq!(s.transition(&app, &class, "activate").await.status, StatusCode::OK);
    let res = s.transition(&app, &class, "activate").await;
    assert_eq!((res.status, res.code()), (StatusCode::CONFLICT, "invalid_transition"));
    // Once active: the package and schedule are fixed, and enrollment is closed.
    let res = s.change_package(&app, &class, 4).await;
    assert_eq!((res.status, res.code()), (StatusCode::CONFLICT, "package_locked"));
    let res = app
        .post(
            &format!("/api/v1/classes/{class}/meetings"),
            Some(&s.t.admin.access),
            json!(meetings(&app, 1, Duration::days(30))),
        )
        .await;
    assert_eq!((res.status, res.code()), (StatusCode::CONFLICT, "schedule_locked"));
    let res = app
        .post(
            &format!("/api/v1/classes/{class}/enrollments"),
            Some(&s.t.admin.access),
            json!({"student_id": s.students[2].user_id}),
        )
        .await;
    assert_eq!((res.status, res.code()), (StatusCode::CONFLICT, "enrollment_closed"));

    // Visibility: members see the class, others don't.
    assert_eq!(app.get(&format!("/api/v1/classes/{class}"), &s.students[0].access).await.status, StatusCode::OK);
    assert_eq!(app.get(&format!("/api/v1/classes/{class}"), &s.students[2].access).await.status, StatusCode::FORBIDDEN);
    assert_eq!(app.get(&format!("/api/v1/classes/{class}"), &s.tutor.access).await.status, StatusCode::OK);
    let mine = app.get("/api/v1/classes", &s.students[2].access).await;
    assert_eq!(mine.body, json!([]));
    let mine = app.get("/api/v1/classes", &s.students[0].access).await;
    assert_eq!(mine.body.as_array().unwrap().len(), 1);

    // Validation of a new class.
    let bad = s.class(&app, "group", 3, None, vec![]).await;
    assert_eq!((bad.status, bad.code()), (StatusCode::UNPROCESSABLE_ENTITY, "invalid_capacity"));
    let bad = s.class(&app, "group", 2, Some(5), meetings(&app, 3, Duration::hours(1))).await;
    assert_eq!((bad.status, bad.code()), (StatusCode::UNPROCESSABLE_ENTITY, "too_many_meetings"));
    let overlapping =
        vec![meetings(&app, 1, Duration::hours(1))[0].clone(), meetings(&app, 1, Duration::minutes(90))[0].clone()];
    let bad = s.class(&app, "group", 2, Some(5), overlapping).await;
    assert_eq!((bad.status, bad.code()), (StatusCode::UNPROCESSABLE_ENTITY, "meetings_overlap"));
    let mut body = json!({"kind":"group","title":"x","course_id": s.course["id"],"instructor_id": s.students[0].user_id,
        "total_meetings": 2, "capacity": 3, "timezone": "Europe/Berlin"});
    let bad = app.post("/api/v1/classes", Some(&s.t.admin.access), body.clone()).await;
    assert_eq!((bad.status, bad.code()), (StatusCode::UNPROCESSABLE_ENTITY, "instructor_not_tutor"));
    body["instructor_id"] = json!(s.tutor.user_id);
    body["timezone"] = json!("Mars/Olympus");
    let bad = app.post("/api/v1/classes", Some(&s.t.admin.access), body).await;
    assert_eq!((bad.status, bad.code()), (StatusCode::UNPROCESSABLE_ENTITY, "invalid_timezone"));
    let res = app.post("/api/v1/classes", Some(&s.tutor.access), json!({})).await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn private_class_is_flexible() {
    let app = TestApp::spawn_with(|c| c.access_token_ttl_secs = DAYS).await;
    let s = school(&app, "priv", 5, 2).await;
    let res = s.class(&app, "private", 2, None, vec![]).await;
    assert_eq!(res.status, StatusCode::CREATED, "{res:?}");
    let class = id(&res.body);
    assert_eq!(s.transition(&app, &class, "activate").await.status, StatusCode::OK, "no meetings needed");
    // Enrollment while active; one student only.
    let e = s.enroll(&app, &class, &s.students[0].user_id).await;
    assert_eq!(e.status, StatusCode::CREATED, "{e:?}");
    let res = s.enroll(&app, &class, &s.students[1].user_id).await;
    assert_eq!((res.status, res.code()), (StatusCode::CONFLICT, "class_full"));
    // The instructor adds meetings while active; the package bounds them.
    let res = app
        .post(
            &format!("/api/v1/classes/{class}/meetings"),
            Some(&s.tutor.access),
            json!(meetings(&app, 2, Duration::hours(2))),
        )
        .await;
    assert_eq!(res.status, StatusCode::CREATED, "{res:?}");
    let res = app
        .post(
            &format!("/api/v1/classes/{class}/meetings"),
            Some(&s.tutor.access),
            json!(meetings(&app, 1, Duration::days(10))),
        )
        .await;
    assert_eq!((res.status, res.code()), (StatusCode::CONFLICT, "too_many_meetings"));
    // A top-up grants the extra credits to the enrolled student.
    let res = s.change_package(&app, &class, 4).await;
    assert_eq!(res.status, StatusCode::OK, "{res:?}");
    let enrollment = id(&e.body);
    assert_eq!(balance(&app, &s.t.admin.access, &enrollment).await, 4);
    let res = s.change_package(&app, &class, 3).await;
    assert_eq!((res.status, res.code()), (StatusCode::CONFLICT, "package_shrink_not_allowed"));
    // Cancelling refunds what is left.
    assert_eq!(s.transition(&app, &class, "cancel").await.status, StatusCode::OK);
    let ledger = app.get(&format!("/api/v1/enrollments/{enrollment}/ledger"), &s.students[0].access).await;
    let last = ledger.body["entries"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(
        (last["kind"].as_str(), last["delta"].as_i64(), ledger.body["balance"].as_i64()),
        (Some("refund"), Some(-4), Some(0))
    );
}

/// An active group class with `students` enrolled, its first meeting starting in one hour.
async fn running_class(
    app: &TestApp,
    slug: &str,
    total: i64,
    students: usize,
) -> (School, String, Vec<String>, Vec<String>) {
    let s = school(app, slug, 5, students).await;
    let res = s.class(app, "group", total, Some(100), meetings(app, total as usize, Duration::hours(1))).await;
    assert_eq!(res.status, StatusCode::CREATED, "{res:?}");
    let class = id(&res.body);
    let meeting_ids = res.body["meetings"].as_array().unwrap().iter().map(id).collect();
    let mut enrollments = Vec::new();
    for st in &s.students {
        enrollments.push(id(&s.enroll(app, &class, &st.user_id).await.body));
    }
    assert_eq!(s.transition(app, &class, "activate").await.status, StatusCode::OK);
    (s, class, meeting_ids, enrollments)
}

#[tokio::test]
async fn attendance_drives_the_ledger() {
    let app = TestApp::spawn_with(|c| c.access_token_ttl_secs = DAYS).await;
    let (s, class, m, e) = running_class(&app, "att", 3, 2).await;
    let (tutor, stu) = (&s.tutor.access, &s.students[0].user_id);

    // Too early: attendance opens 15 minutes before the start.
    let res = mark(&app, tutor, &m[0], stu, "present").await;
    assert_eq!((res.status, res.code()), (StatusCode::CONFLICT, "attendance_not_open"));
    app.advance(Duration::minutes(50));

    let res = mark(&app, tutor, &m[0], stu, "present").await;
    assert_eq!(res.status, StatusCode::OK, "{res:?}");
    assert_eq!((res.body["changed"].as_bool(), res.body["balance"].as_i64()), (Some(true), Some(2)));
    let res = mark(&app, tutor, &m[0], stu, "present").await;
    assert_eq!(
        (res.body["changed"].as_bool(), res.body["balance"].as_i64()),
        (Some(false), Some(2)),
        "same mark twice changes nothing"
    );
    let res = mark(&app, tutor, &m[0], stu, "late").await;
    assert_eq!(
        (res.body["changed"].as_bool(), res.body["balance"].as_i64()),
        (Some(true), Some(2)),
        "late costs the same"
    );
    let res = mark(&app, tutor, &m[0], stu, "absent").await;
    assert_eq!(res.body["balance"].as_i64(), Some(3), "present → absent gives the credit back");
    let res = mark(&app, tutor, &m[0], stu, "excused").await;
    assert_eq!(res.body["balance"].as_i64(), Some(3));
    let res = mark(&app, tutor, &m[0], stu, "present").await;
    assert_eq!(res.body["balance"].as_i64(), Some(2));

    let ledger = app.get(&format!("/api/v1/enrollments/{}/ledger", e[0]), &s.students[0].access).await;
    let kinds: Vec<_> =
        ledger.body["entries"].as_array().unwrap().iter().map(|x| x["kind"].as_str().unwrap().to_string()).collect();
    assert_eq!(kinds, ["grant", "attendance_deduction", "attendance_correction", "attendance_deduction"]);
    assert_eq!(ledger.body["entries"][0]["reference"], "grant-1");
    assert!(ledger.body["entries"][2]["reason"].as_str().unwrap().contains("late → absent"), "{ledger:?}");
    // Another student can't read it; the tutor can.
    assert_eq!(
        app.get(&format!("/api/v1/enrollments/{}/ledger", e[0]), &s.students[1].access).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(balance(&app, tutor, &e[0]).await, 2);

    // Who may mark: not students, not other tutors, not another tenant.
    let res = mark(&app, &s.students[1].access, &m[0], stu, "absent").await;
    assert_eq!((res.status, res.code()), (StatusCode::FORBIDDEN, "not_class_manager"));
    let other_tutor = app.user(&s.t, "tutor", "other", None).await;
    assert_eq!(mark(&app, &other_tutor.access, &m[0], stu, "absent").await.status, StatusCode::FORBIDDEN);
    let other = app.tenant("att-other").await;
    assert_eq!(mark(&app, &other.admin.access, &m[0], stu, "absent").await.status, StatusCode::NOT_FOUND);
    let res = mark(&app, tutor, &m[0], &other_tutor.user_id, "present").await;
    assert_eq!((res.status, res.code()), (StatusCode::UNPROCESSABLE_ENTITY, "not_enrolled"));

    // After end + grace the instructor is locked out; staff can still correct, audited.
    app.advance(Duration::hours(26));
    let res = mark(&app, tutor, &m[0], stu, "absent").await;
    assert_eq!((res.status, res.code()), (StatusCode::CONFLICT, "attendance_window_closed"));
    let res = mark(&app, &s.t.admin.access, &m[0], stu, "absent").await;
    assert_eq!((res.status, res.body["balance"].as_i64()), (StatusCode::OK, Some(3)), "{res:?}");
    let audit = app.get("/api/v1/audit?action=attendance.late_correction", &s.t.admin.access).await;
    assert_eq!(audit.body["entries"].as_array().unwrap().len(), 1, "{audit:?}");
    let _ = class;
}

#[tokio::test]
async fn balance_never_negative_without_audited_override() {
    let app = TestApp::spawn_with(|c| c.access_token_ttl_secs = DAYS).await;
    let (s, _class, m, e) = running_class(&app, "neg", 2, 1).await;
    let stu = &s.students[0].user_id;
    let adjust = async |body: Value| {
        app.post(&format!("/api/v1/enrollments/{}/adjustments", e[0]), Some(&s.t.admin.access), body).await
    };
    let res = adjust(json!({"delta": -2, "reason": ""})).await;
    assert_eq!((res.status, res.code()), (StatusCode::UNPROCESSABLE_ENTITY, "reason_required"));
    let res = adjust(json!({"delta": -2, "reason": "goodwill correction"})).await;
    assert_eq!((res.status, res.body["balance_after"].as_i64()), (StatusCode::CREATED, Some(0)), "{res:?}");
    assert_eq!(res.body["actor_id"], s.t.admin.user_id.as_str());
    let res = adjust(json!({"delta": -1, "reason": "more"})).await;
    assert_eq!((res.status, res.code()), (StatusCode::CONFLICT, "insufficient_credits"));
    let res = app
        .post(
            &format!("/api/v1/enrollments/{}/adjustments", e[0]),
            Some(&s.tutor.access),
            json!({"delta": 1, "reason": "x"}),
        )
        .await;
    assert_eq!(res.status, StatusCode::FORBIDDEN, "only staff adjust");

    app.advance(Duration::minutes(55));
    let res = mark(&app, &s.tutor.access, &m[0], stu, "present").await;
    assert_eq!((res.status, res.code()), (StatusCode::CONFLICT, "insufficient_credits"));
    // Nothing was recorded by the refused mark.
    let report = app.get(&format!("/api/v1/users/{stu}/attendance"), &s.students[0].access).await;
    assert_eq!(report.body["unmarked"].as_i64(), Some(2), "{report:?}");
    let res = app
        .request(
            Method::PUT,
            &format!("/api/v1/meetings/{}/attendance/{stu}", m[0]),
            Some(&s.tutor.access),
            Some(&json!({"status": "present", "allow_negative": true})),
            &[],
        )
        .await;
    assert_eq!((res.status, res.code()), (StatusCode::FORBIDDEN, "override_staff_only"));
    let res = app
        .request(
            Method::PUT,
            &format!("/api/v1/meetings/{}/attendance/{stu}", m[0]),
            Some(&s.t.admin.access),
            Some(&json!({"status": "present", "allow_negative": true})),
            &[],
        )
        .await;
    assert_eq!((res.status, res.body["balance"].as_i64()), (StatusCode::OK, Some(-1)), "{res:?}");
    let audit = app.get("/api/v1/audit?action=credits.override", &s.t.admin.access).await;
    assert_eq!(audit.body["entries"].as_array().unwrap().len(), 1, "{audit:?}");
    let audit = app.get("/api/v1/audit?action=credits.adjusted", &s.t.admin.access).await;
    assert_eq!(audit.body["entries"][0]["details"]["reason"], "goodwill correction");
}

#[tokio::test]
async fn fifty_simultaneous_identical_marks_deduct_one_credit() {
    let app = TestApp::spawn_with(|c| {
        c.db_max_connections = 20;
        c.access_token_ttl_secs = DAYS;
    })
    .await;
    let (s, _class, m, e) = running_class(&app, "race", 3, 6).await;
    app.advance(Duration::minutes(55));
    let stu = s.students[0].user_id.clone();
    let results = futures::future::join_all((0..50).map(|_| mark(&app, &s.tutor.access, &m[0], &stu, "present"))).await;
    assert!(
        results.iter().all(|r| r.status == StatusCode::OK),
        "{:?}",
        results.iter().find(|r| r.status != StatusCode::OK)
    );
    assert_eq!(results.iter().filter(|r| r.body["changed"] == true).count(), 1);
    assert_eq!(balance(&app, &s.t.admin.access, &e[0]).await, 2);
    let ledger = app.get(&format!("/api/v1/enrollments/{}/ledger", e[0]), &s.t.admin.access).await;
    assert_eq!(ledger.body["entries"].as_array().unwrap().len(), 2, "grant + one deduction");

    // Different students in parallel all succeed, each deducted once.
    let others: Vec<_> = s.students[1..].iter().map(|st| st.user_id.clone()).collect();
    let results =
        futures::future::join_all(others.iter().map(|st| mark(&app, &s.tutor.access, &m[0], st, "late"))).await;
    assert!(results.iter().all(|r| r.status == StatusCode::OK && r.body["balance"] == 2), "{results:?}");
}

#[tokio::test]
async fn bulk_marking_is_all_or_nothing() {
    let app = TestApp::spawn_with(|c| c.access_token_ttl_secs = DAYS).await;
    let (s, class, m, _e) = running_class(&app, "bulk", 2, 3).await;
    app.advance(Duration::minutes(55));
    let outsider = app.user(&s.t, "student", "outsider", Some("2000-01-01")).await;
    let mut marks: Vec<_> =
        s.students.iter().map(|st| json!({"student_id": st.user_id, "status": "present"})).collect();
    marks.push(json!({"student_id": outsider.user_id, "status": "present"}));
    let url = format!("/api/v1/meetings/{}/attendance", m[0]);
    let res = app.post(&url, Some(&s.tutor.access), json!({"marks": marks})).await;
    assert_eq!((res.status, res.code()), (StatusCode::UNPROCESSABLE_ENTITY, "not_enrolled"));
    let report = app.get(&format!("/api/v1/classes/{class}/attendance"), &s.tutor.access).await;
    assert!(
        report.body["students"].as_array().unwrap().iter().all(|st| st["unmarked"] == 2 && st["balance"] == 2),
        "{report:?}"
    );

    marks.pop();
    marks[2]["status"] = json!("excused");
    let res = app.post(&url, Some(&s.tutor.access), json!({"marks": marks})).await;
    assert_eq!(res.status, StatusCode::OK, "{res:?}");
    assert_eq!(res.body.as_array().unwrap().len(), 3);
    let dup = json!({"marks": [{"student_id": s.students[0].user_id, "status": "present"}, {"student_id": s.students[0].user_id, "status": "absent"}]});
    let res = app.post(&url, Some(&s.tutor.access), dup).await;
    assert_eq!((res.status, res.code()), (StatusCode::UNPROCESSABLE_ENTITY, "duplicate_student"));

    // Reports: JSON tallies and CSV rows for every (meeting, student).
    let report = app.get(&format!("/api/v1/classes/{class}/attendance"), &s.tutor.access).await;
    let present: i64 =
        report.body["students"].as_array().unwrap().iter().map(|st| st["present"].as_i64().unwrap()).sum();
    let excused: i64 =
        report.body["students"].as_array().unwrap().iter().map(|st| st["excused"].as_i64().unwrap()).sum();
    assert_eq!((present, excused), (2, 1));
    assert_eq!(report.body["records"].as_array().unwrap().len(), 6);
    let csv = app.get(&format!("/api/v1/classes/{class}/attendance?format=csv"), &s.tutor.access).await;
    assert_eq!(csv.headers.get("content-type").unwrap(), "text/csv; charset=utf-8");
    let lines: Vec<_> = csv.text.lines().collect();
    assert_eq!(lines.len(), 7, "{}", csv.text);
    assert!(lines[0].starts_with("class_id,class_title,meeting_id"));
    assert_eq!(lines.iter().filter(|l| l.contains(",present,")).count(), 2);
    let res = app.get(&format!("/api/v1/classes/{class}/attendance"), &s.students[0].access).await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
    let mine =
        app.get(&format!("/api/v1/users/{}/attendance?format=csv", s.students[0].user_id), &s.students[0].access).await;
    assert_eq!(mine.text.lines().count(), 3, "{}", mine.text);
    let res = app.get(&format!("/api/v1/users/{}/attendance", s.students[0].user_id), &s.students[1].access).await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn lesson_unlocks() {
    let app = TestApp::spawn_with(|c| c.access_token_ttl_secs = DAYS).await;
    let (s, class, _m, _e) = running_class(&app, "unl", 2, 1).await;
    let lessons: Vec<String> = s.course["lessons"].as_array().unwrap().iter().map(id).collect();
    let unlock = async |token: &str, lesson: &str| {
        app.post(&format!("/api/v1/classes/{class}/unlocks"), Some(token), json!({"lesson_id": lesson})).await
    };
    let res = unlock(&s.students[0].access, &lessons[0]).await;
    assert_eq!((res.status, res.code()), (StatusCode::FORBIDDEN, "not_class_manager"));
    assert_eq!(app.get(&format!("/api/v1/classes/{class}/lessons"), &s.students[0].access).await.body, json!([]));

    let res = unlock(&s.tutor.access, &lessons[0]).await;
    assert_eq!(res.status, StatusCode::CREATED, "{res:?}");
    assert_eq!(unlock(&s.tutor.access, &lessons[0]).await.status, StatusCode::OK, "idempotent");
    assert_eq!(unlock(&s.t.admin.access, &lessons[1]).await.status, StatusCode::CREATED);
    let res = unlock(&s.tutor.access, &lessons[2]).await;
    assert_eq!(
        (res.status, res.code()),
        (StatusCode::CONFLICT, "unlock_limit_reached"),
        "never more than total_meetings"
    );
    let res = unlock(&s.tutor.access, &uuid::Uuid::now_v7().to_string()).await;
    assert_eq!((res.status, res.code()), (StatusCode::NOT_FOUND, "lesson_not_found"));

    let seen = app.get(&format!("/api/v1/classes/{class}/lessons"), &s.students[0].access).await;
    let titles: Vec<_> = seen.body.as_array().unwrap().iter().map(|l| l["title"].as_str().unwrap()).collect();
    assert_eq!(titles, ["Lesson 1", "Lesson 2"]);
    let all = app.get(&format!("/api/v1/classes/{class}/lessons"), &s.tutor.access).await;
    assert_eq!(all.body.as_array().unwrap().len(), 5);
    let outsider = app.user(&s.t, "student", "outsider", Some("2000-01-01")).await;
    assert_eq!(
        app.get(&format!("/api/v1/classes/{class}/lessons"), &outsider.access).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        app.get(&format!("/api/v1/courses/{}", s.course["id"].as_str().unwrap()), &outsider.access).await.status,
        StatusCode::FORBIDDEN
    );

    // Completing: only unlocked lessons, only enrolled students, once.
    let complete = async |token: &str, lesson: &str| {
        app.request(Method::POST, &format!("/api/v1/classes/{class}/lessons/{lesson}/complete"), Some(token), None, &[])
            .await
    };
    assert_eq!(complete(&s.students[0].access, &lessons[0]).await.status, StatusCode::CREATED);
    assert_eq!(complete(&s.students[0].access, &lessons[0]).await.status, StatusCode::OK);
    let res = complete(&s.students[0].access, &lessons[3]).await;
    assert_eq!((res.status, res.code()), (StatusCode::CONFLICT, "lesson_locked"));
    assert_eq!(complete(&outsider.access, &lessons[0]).await.status, StatusCode::FORBIDDEN);
    let mine = app.get(&format!("/api/v1/users/{}/lessons", s.students[0].user_id), &s.students[0].access).await;
    let done: Vec<_> = mine.body.as_array().unwrap().iter().map(|l| l["completed"].as_bool().unwrap()).collect();
    assert_eq!(done, [true, false]);
}

#[tokio::test]
async fn minors_need_consent_to_enroll() {
    let app = TestApp::spawn_with(|c| c.access_token_ttl_secs = DAYS).await;
    let s = school(&app, "kids", 3, 0).await;
    let (kid, parent) = app.minor_with_parent(&s.t, "kid", "mum").await;
    let class = id(&s.class(&app, "group", 2, Some(5), meetings(&app, 2, Duration::hours(1))).await.body);
    let res = s.enroll(&app, &class, &kid.user_id).await;
    assert_eq!((res.status, res.code()), (StatusCode::FORBIDDEN, "consent_required"), "{res:?}");
    let roster = app.get(&format!("/api/v1/classes/{class}/roster"), &s.tutor.access).await;
    assert_eq!(roster.body, json!([]));

    // The parent grants chat only: not enough. Then live video: the enrollment goes through.
    app.grant_consent(&s.t, &parent, &kid, &["chat"], "signed_form").await;
    let res = s.enroll(&app, &class, &kid.user_id).await;
    assert_eq!((res.status, res.code()), (StatusCode::FORBIDDEN, "consent_required"), "chat alone is not live video");
    assert!(res.body["error"]["message"].as_str().unwrap().contains("live_video"), "{res:?}");
    app.grant_consent(&s.t, &parent, &kid, &["live_video"], "video_call").await;
    let res = s.enroll(&app, &class, &kid.user_id).await;
    assert_eq!(res.status, StatusCode::CREATED, "{res:?}");
}

#[tokio::test]
async fn class_events_are_emitted() {
    let app = TestApp::spawn_with(|c| c.access_token_ttl_secs = DAYS).await;
    let mut events = app.state.outbox.subscribe(256);
    let (s, _class, m, _e) = running_class(&app, "ev", 2, 1).await;
    app.advance(Duration::minutes(55));
    mark(&app, &s.tutor.access, &m[0], &s.students[0].user_id, "present").await;
    let mut names = Vec::new();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    while !names.contains(&"CreditDeducted") && tokio::time::Instant::now() < deadline {
        if let Ok(Some(e)) = tokio::time::timeout(std::time::Duration::from_millis(500), events.recv()).await {
            names.push(e.event.name());
        }
    }
    for expected in [
        "CourseCreated",
        "ClassCreated",
        "MeetingScheduled",
        "StudentEnrolled",
        "ClassActivated",
        "AttendanceMarked",
        "CreditDeducted",
    ] {
        assert!(names.contains(&expected), "{expected} missing from {names:?}");
    }
}

#[tokio::test]
async fn random_remarks_over_http_end_at_the_implied_balance() {
    let app = TestApp::spawn_with(|c| c.access_token_ttl_secs = DAYS).await;
    let (s, _class, m, e) = running_class(&app, "prop", 4, 1).await;
    app.advance(Duration::days(3) + Duration::minutes(55)); // all four meetings are open for marking
    let statuses = ["present", "late", "absent", "excused"];
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut next = |n: u64| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % n) as usize
    };
    let mut last = [None::<&str>; 4];
    for _ in 0..40 {
        let (meeting, status) = (next(4), statuses[next(4)]);
        let res = mark(&app, &s.t.admin.access, &m[meeting], &s.students[0].user_id, status).await;
        assert_eq!(res.status, StatusCode::OK, "{res:?}");
        last[meeting] = Some(status);
    }
    let used = last.iter().flatten().filter(|s| matches!(**s, "present" | "late")).count() as i64;
    assert_eq!(balance(&app, &s.t.admin.access, &e[0]).await, 4 - used, "final marks {last:?}");
}

//! What the browser app needs to find things: the tenant's bookable tutors, one consent request (the page a
//! consent mail links to), a student's enrollments with credits left; each visible to exactly the people
//! entitled to it.

use reqwest::StatusCode;
use serde_json::json;

use crate::{
    bookings::market_with,
    classes::{meetings, school},
    helpers::TestApp,
};

#[tokio::test]
async fn students_find_the_tutors_who_published_availability() {
    let m = market_with("dir", |_| {}).await;
    // A tutor without availability isn't bookable, so not listed.
    m.app.user(&m.t, "tutor", "quiet", None).await;
    let res = m.app.get("/api/v1/tutors", &m.student.access).await;
    assert_eq!(res.status, StatusCode::OK, "{res:?}");
    let tutors = res.body.as_array().unwrap();
    assert_eq!(tutors.len(), 1, "{tutors:?}");
    assert_eq!(tutors[0]["id"], m.tutor.user_id.as_str());
    assert_eq!(tutors[0]["timezone"], "Europe/Berlin");
    assert_eq!(tutors[0]["lengths"][0]["minutes"], 60);
    // Another tenant sees its own (none).
    let other = m.app.tenant("elsewhere").await;
    assert_eq!(m.app.get("/api/v1/tutors", &other.admin.access).await.body, json!([]));
}

#[tokio::test]
async fn a_consent_request_is_read_by_its_parent_child_and_staff_only() {
    let app = TestApp::spawn().await;
    let t = app.tenant("cr").await;
    let (child, parent) = app.minor_with_parent(&t, "kid", "mum").await;
    let other_parent = app.user(&t, "parent", "dad", None).await;
    let req = app
        .post("/api/v1/consent-requests", Some(&t.admin.access), json!({"child_id": child.user_id, "scopes": ["chat"]}))
        .await;
    assert_eq!(req.status, StatusCode::CREATED, "{req:?}");
    let path = format!("/api/v1/consent-requests/{}", req.body["id"].as_str().unwrap());
    for who in [&parent.access, &child.access, &t.admin.access] {
        let res = app.get(&path, who).await;
        assert_eq!(res.status, StatusCode::OK, "{res:?}");
        assert_eq!(res.body["scopes"], json!(["chat"]));
        assert_eq!(res.body["status"], "pending");
    }
    let res = app.get(&path, &other_parent.access).await;
    assert_eq!((res.status, res.code()), (StatusCode::NOT_FOUND, "consent_request_not_found"));
}

#[tokio::test]
async fn a_student_and_their_parent_see_the_credits_left() {
    let app = TestApp::spawn().await;
    let s = school(&app, "en", 2, 1).await;
    let (minor, parent) = app.minor_with_parent(&s.t, "kid", "mum").await;
    app.grant_consent(&s.t, &parent, &minor, &["live_video"], "credit_card").await;
    let class = s.class(&app, "group", 3, Some(10), meetings(&app, 3, chrono::Duration::minutes(5))).await;
    let class_id = class.body["id"].as_str().unwrap().to_string();
    assert_eq!(s.enroll(&app, &class_id, &minor.user_id).await.status, StatusCode::CREATED);
    let path = format!("/api/v1/users/{}/enrollments", minor.user_id);
    for who in [&minor.access, &parent.access, &s.t.admin.access] {
        let res = app.get(&path, who).await;
        assert_eq!(res.status, StatusCode::OK, "{res:?}");
        assert_eq!(res.body[0]["class_id"], class_id.as_str());
        assert_eq!(res.body[0]["class_title"], "Algebra 1");
        assert_eq!(res.body[0]["balance"], 3);
        assert_eq!(res.body[0]["attended"], 0);
    }
    let res = app.get(&path, &s.students[0].access).await;
    assert_eq!(res.status, StatusCode::FORBIDDEN, "{res:?}");
}

#[tokio::test]
async fn staff_and_tutors_list_courses_and_a_tutor_sees_their_students_names() {
    let app = TestApp::spawn().await;
    let s = school(&app, "co", 2, 2).await;
    for who in [&s.t.admin.access, &s.tutor.access] {
        let res = app.get("/api/v1/courses", who).await;
        assert_eq!(res.status, StatusCode::OK, "{res:?}");
        assert_eq!(
            res.body,
            json!([{"id": s.course["id"], "title": "Algebra", "lessons": 2,
                                     "created_at": s.course["created_at"]}])
        );
    }
    assert_eq!(app.get("/api/v1/courses", &s.students[0].access).await.status, StatusCode::FORBIDDEN);

    // The tutor sees a student of their class, not another student of the school.
    let class = s.class(&app, "group", 2, Some(10), meetings(&app, 2, chrono::Duration::minutes(5))).await;
    let class_id = class.body["id"].as_str().unwrap();
    assert_eq!(s.enroll(&app, class_id, &s.students[0].user_id).await.status, StatusCode::CREATED);
    let mine = app.get(&format!("/api/v1/users/{}", s.students[0].user_id), &s.tutor.access).await;
    assert_eq!((mine.status, mine.body["display_name"].as_str()), (StatusCode::OK, Some("student0")));
    let other = app.get(&format!("/api/v1/users/{}", s.students[1].user_id), &s.tutor.access).await;
    assert_eq!(other.status, StatusCode::FORBIDDEN, "{other:?}");
}

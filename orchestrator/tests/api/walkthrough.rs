//! The "done means", as a newcomer would do it through the API alone: create a class, enroll
//! students (a minor only after the parent's consent), activate it, mark attendance and watch credits,
//! XP and badges change, unlock lessons, and export the attendance report.

use std::time::Duration as StdDuration;

use chrono::Duration;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::{
    classes::{mark, meetings, school},
    helpers::TestApp,
};

/// Polls a user's gamification profile until `pred` holds (the consumer runs after commit).
async fn progress_until(app: &TestApp, token: &str, user: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + StdDuration::from_secs(10);
    loop {
        let res = app.get(&format!("/api/v1/users/{user}/gamification"), token).await;
        assert_eq!(res.status, StatusCode::OK, "{res:?}");
        if pred(&res.body) {
            return res.body;
        }
        assert!(tokio::time::Instant::now() < deadline, "progress never matched: {}", res.body);
        tokio::time::sleep(StdDuration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn newcomer_runs_a_class_through_the_api() {
    let app = TestApp::spawn_with(|c| c.access_token_ttl_secs = 7 * 24 * 3600).await;
    let s = school(&app, "walk", 4, 1).await;
    let admin = &s.t.admin.access;
    let adult = &s.students[0];
    let (kid, parent) = app.minor_with_parent(&s.t, "kid", "dad").await;

    // A group class of three meetings.
    let class = s.class(&app, "group", 3, Some(10), meetings(&app, 3, Duration::hours(1))).await;
    assert_eq!(class.status, StatusCode::CREATED, "{class:?}");
    let class_id = class.body["id"].as_str().unwrap().to_string();
    let m: Vec<String> =
        class.body["meetings"].as_array().unwrap().iter().map(|x| x["id"].as_str().unwrap().into()).collect();

    // The adult enrolls at once; the minor only after the parent consents to live video.
    assert_eq!(s.enroll(&app, &class_id, &adult.user_id).await.status, StatusCode::CREATED);
    assert_eq!(s.enroll(&app, &class_id, &kid.user_id).await.code(), "consent_required");
    let req = app.grant_consent(&s.t, &parent, &kid, &["live_video", "chat"], "credit_card").await;
    let mail = app.get("/api/v1/me/mailbox", &parent.access).await;
    assert!(mail.text.contains(req["id"].as_str().unwrap()), "the parent got mail about the request: {mail:?}");
    assert_eq!(s.enroll(&app, &class_id, &kid.user_id).await.status, StatusCode::CREATED);

    assert_eq!(s.transition(&app, &class_id, "activate").await.status, StatusCode::OK);
    app.post(&format!("/api/v1/classes/{class_id}/leaderboard/opt-in"), Some(&adult.access), json!({})).await;

    // Meeting 1: the tutor marks the roster; credits drop and XP arrives.
    app.advance(Duration::minutes(50));
    let res = app
        .post(
            &format!("/api/v1/meetings/{}/attendance", m[0]),
            Some(&s.tutor.access),
            json!({"marks": [{"student_id": adult.user_id, "status": "present"}, {"student_id": kid.user_id, "status": "late"}]}),
        )
        .await;
    assert_eq!(res.status, StatusCode::OK, "{res:?}");
    let roster = app.get(&format!("/api/v1/classes/{class_id}/roster"), &s.tutor.access).await;
    assert!(roster.body.as_array().unwrap().iter().all(|r| r["balance"] == 2 && r["attended"] == 1), "{roster:?}");
    let p = progress_until(&app, &adult.access, &adult.user_id, |p| p["xp"] == 10).await;
    assert!(p["badges"].as_array().unwrap().iter().any(|b| b["badge"] == "first_lesson"), "{p}");
    progress_until(&app, &parent.access, &kid.user_id, |p| p["xp"] == 5).await;

    // A correction takes the credit and the XP back.
    let res = mark(&app, &s.tutor.access, &m[0], &adult.user_id, "absent").await;
    assert_eq!(res.body["balance"], 3, "{res:?}");
    progress_until(&app, &adult.access, &adult.user_id, |p| p["xp"] == 0).await;
    mark(&app, &s.tutor.access, &m[0], &adult.user_id, "present").await;
    progress_until(&app, &adult.access, &adult.user_id, |p| p["xp"] == 10).await;

    // Lessons: the tutor unlocks one; both students see it at once, others don't.
    let lesson = s.course["lessons"][0]["id"].as_str().unwrap();
    let res = app
        .post(&format!("/api/v1/classes/{class_id}/unlocks"), Some(&s.tutor.access), json!({"lesson_id": lesson}))
        .await;
    assert_eq!(res.status, StatusCode::CREATED, "{res:?}");
    for st in [&adult.access, &kid.access] {
        let seen = app.get(&format!("/api/v1/classes/{class_id}/lessons"), st).await;
        assert_eq!(seen.body.as_array().unwrap().len(), 1, "{seen:?}");
    }
    let res = app
        .request(
            Method::POST,
            &format!("/api/v1/classes/{class_id}/lessons/{lesson}/complete"),
            Some(&adult.access),
            None,
            &[],
        )
        .await;
    assert_eq!(res.status, StatusCode::CREATED);
    progress_until(&app, &adult.access, &adult.user_id, |p| p["xp"] == 30).await;
    let board = app.get(&format!("/api/v1/classes/{class_id}/leaderboard"), &kid.access).await;
    assert_eq!(board.status, StatusCode::OK, "{board:?}");
    assert!(board.text.contains(&adult.user_id) && !board.text.contains(&kid.user_id), "only opted-in: {board:?}");

    // The report, as CSV for a spreadsheet.
    let csv = app.get(&format!("/api/v1/classes/{class_id}/attendance?format=csv"), admin).await;
    assert_eq!(csv.status, StatusCode::OK);
    assert_eq!(csv.text.lines().count(), 1 + 3 * 2, "{}", csv.text);
    assert!(csv.text.lines().any(|l| l.contains(&kid.user_id) && l.contains(",late,")), "{}", csv.text);

    // The parent revokes live video; the child keeps the enrollment but can't be enrolled elsewhere.
    let res = app
        .post(
            &format!("/api/v1/users/{}/consents/revoke", kid.user_id),
            Some(&parent.access),
            json!({"scopes": ["live_video"]}),
        )
        .await;
    assert_eq!(res.status, StatusCode::OK, "{res:?}");
    let other = s.class(&app, "group", 1, Some(5), vec![]).await;
    let res = s.enroll(&app, other.body["id"].as_str().unwrap(), &kid.user_id).await;
    assert_eq!(res.code(), "consent_required");
}

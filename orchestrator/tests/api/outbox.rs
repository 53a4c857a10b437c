//! The transactional outbox: changes emit typed events, published in order to subscribers.

use std::time::Duration;

use orchestrator::events::DomainEvent;
use serde_json::json;
use sqlx::Row;

use crate::helpers::{PASSWORD, TestApp};

#[tokio::test]
async fn changes_publish_ordered_events_once() {
    let app = TestApp::spawn().await;
    let mut events = app.state.outbox.subscribe(64);
    let t = app.tenant("evt").await;
    let tutor = app.user(&t, "tutor", "tess", None).await;
    let parent = app.user(&t, "parent", "pat", None).await;
    let kid = app.user(&t, "student", "kit", Some("2016-06-06")).await;
    app.post(
        &format!("/api/v1/users/{}/children", parent.user_id),
        Some(&t.admin.access),
        json!({"child_id": kid.user_id}),
    )
    .await;
    // A rejected request (duplicate e-mail) emits nothing.
    app.post(
        "/api/v1/users",
        Some(&t.admin.access),
        json!({"email":"tess@evt.test","display_name":"T","role":"tutor","password":PASSWORD}),
    )
    .await;

    let mut got = Vec::new();
    while got.len() < 6 {
        let e = tokio::time::timeout(Duration::from_secs(5), events.recv()).await.expect("event in time").unwrap();
        got.push(e);
    }
    let names: Vec<_> = got.iter().map(|e| e.event.name()).collect();
    assert_eq!(
        names,
        ["TenantCreated", "UserRegistered", "UserRegistered", "UserRegistered", "UserRegistered", "ParentLinked"]
    );
    assert!(got.windows(2).all(|w| w[0].id < w[1].id), "ids increase");
    assert!(got.iter().all(|e| e.tenant_id.to_string() == t.id));
    match &got[2].event {
        DomainEvent::UserRegistered { user_id, role } => {
            assert_eq!(user_id.to_string(), tutor.user_id);
            assert_eq!(role.as_str(), "tutor");
        }
        other => panic!("{other:?}"),
    }
    assert!(tokio::time::timeout(Duration::from_millis(700), events.recv()).await.is_err(), "nothing more");

    // Everything delivered is marked published in the table.
    let unpublished: i64 = sqlx::query("SELECT COUNT(*) AS n FROM outbox WHERE published_at IS NULL")
        .fetch_one(app.state.db.pool())
        .await
        .unwrap()
        .try_get("n")
        .unwrap();
    assert_eq!(unpublished, 0);
}

#[tokio::test]
async fn events_survive_a_restart_before_dispatch() {
    // An event committed while no dispatcher ran is published by the next one, and only once.
    let app = TestApp::spawn().await;
    let t = app.tenant("restart").await;
    let mut tx = app.state.db.begin().await.unwrap();
    let tenant_id: orchestrator::ids::TenantId = t.id.parse().unwrap();
    let event = DomainEvent::UserRegistered {
        user_id: orchestrator::ids::UserId::new(),
        role: orchestrator::auth::Role::Tutor,
    };
    orchestrator::outbox::append(tx.conn(), tenant_id, app.clock_now(), &event).await.unwrap();
    tx.commit().await.unwrap();
    let mut sub = app.state.outbox.subscribe(8);
    // No notify: the dispatcher finds it by polling.
    let got = tokio::time::timeout(Duration::from_secs(5), sub.recv()).await.expect("polled").unwrap();
    assert_eq!(got.event, event);
    assert!(tokio::time::timeout(Duration::from_millis(1200), sub.recv()).await.is_err());
}

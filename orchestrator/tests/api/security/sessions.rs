//! Access tokens die with their session: after a sign-out, or a replayed refresh token that revokes the
//! family, the session's access token is refused over HTTP and WebSocket at once (not 15 minutes later),
//! and its open sockets are closed; the user's other sessions are untouched.

use std::time::Duration;

use orchestrator::config::Secret;
use reqwest::StatusCode;
use serde_json::json;

use crate::{
    helpers::{PASSWORD, Session, TestApp},
    realtime::Client,
};

async fn me(app: &TestApp, token: &str) -> (StatusCode, String) {
    let res = app.get("/api/v1/me", token).await;
    (res.status, res.code().to_string())
}

/// The next close frame's code and reason, skipping other frames, within 5 s.
async fn closed(c: &mut Client) -> String {
    let v = c.until(|v| v["type"] == "_closed").await;
    v["frame"].as_str().unwrap().to_string()
}

/// A socket opened with `token` is refused with the session's error and a 4001 close.
async fn refused(app: &TestApp, token: &str) {
    let mut c = Client::open(app, &format!("?token={token}")).await;
    let err = c.next().await;
    assert_eq!((err["type"].as_str(), err["code"].as_str()), (Some("error"), Some("session_revoked")), "{err}");
    assert!(closed(&mut c).await.contains("4001"));
}

#[tokio::test]
async fn a_signed_out_session_stops_at_once_over_http_and_websocket() {
    let app = TestApp::spawn().await;
    let t = app.tenant("so").await;
    let laptop = app.login("so", "admin@so.test", PASSWORD).await;
    let phone = app.login("so", "admin@so.test", PASSWORD).await;
    let mut laptop_ws = Client::connect(&app, &laptop.access).await;
    let mut phone_ws = Client::connect(&app, &phone.access).await;
    assert_eq!(me(&app, &laptop.access).await.0, StatusCode::OK);

    let out = app.post("/api/v1/auth/logout", None, json!({"refresh_token": laptop.refresh})).await;
    assert_eq!(out.status, StatusCode::NO_CONTENT);
    assert_eq!(me(&app, &laptop.access).await, (StatusCode::UNAUTHORIZED, "session_revoked".into()));
    let frame = closed(&mut laptop_ws).await;
    assert!(frame.contains("4001") && frame.contains("session revoked"), "{frame}");
    refused(&app, &laptop.access).await;

    // The same user's other sessions (and the tenant's other users) go on.
    assert_eq!(me(&app, &phone.access).await.0, StatusCode::OK);
    assert_eq!(me(&app, &t.admin.access).await.0, StatusCode::OK);
    let pong = phone_ws.request(json!({"type": "ping"})).await;
    assert_eq!(pong["type"], "pong", "{pong}");
}

#[tokio::test]
async fn a_replayed_refresh_token_ends_the_whole_family() {
    let app = TestApp::spawn().await;
    app.tenant("rp").await;
    let first = app.login("rp", "admin@rp.test", PASSWORD).await;
    let res = app.post("/api/v1/auth/refresh", None, json!({"refresh_token": first.refresh})).await;
    assert_eq!(res.status, StatusCode::OK, "{res:?}");
    let second = Session::from(&res.body);
    let mut ws = Client::connect(&app, &second.access).await;
    assert_eq!(me(&app, &second.access).await.0, StatusCode::OK);

    // The rotated token comes back (stolen): the family is revoked, both access tokens with it.
    let replay = app.post("/api/v1/auth/refresh", None, json!({"refresh_token": first.refresh})).await;
    assert_eq!((replay.status, replay.code()), (StatusCode::UNAUTHORIZED, "refresh_token_reused"));
    for token in [&first.access, &second.access] {
        assert_eq!(me(&app, token).await, (StatusCode::UNAUTHORIZED, "session_revoked".into()));
    }
    assert!(closed(&mut ws).await.contains("4001"));
    refused(&app, &second.access).await;
}

#[tokio::test]
async fn a_sign_out_on_one_node_stops_the_token_on_another() {
    let a = TestApp::spawn_with(|c| c.session_check_ms = 200).await;
    let b = TestApp::spawn_on(&a.database_url, |c| c.session_check_ms = 200).await;
    a.tenant("xn").await;
    let s = a.login("xn", "admin@xn.test", PASSWORD).await;
    assert_eq!(me(&b, &s.access).await.0, StatusCode::OK, "node b has cached the session as live");
    let out = a.post("/api/v1/auth/logout", None, json!({"refresh_token": s.refresh})).await;
    assert_eq!(out.status, StatusCode::NO_CONTENT);
    assert_eq!(me(&a, &s.access).await.0, StatusCode::UNAUTHORIZED);
    // Node b's cached answer is at most `session_check_ms` old.
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(me(&b, &s.access).await, (StatusCode::UNAUTHORIZED, "session_revoked".into()));
}

#[tokio::test]
async fn a_sign_out_closes_the_sessions_sockets_on_every_node() {
    let Some(redis) = super::test_redis() else { return };
    let r = redis.clone();
    let a = TestApp::spawn_with(|c| c.redis_url = Some(Secret::new(r))).await;
    let b = TestApp::spawn_on(&a.database_url, |c| c.redis_url = Some(Secret::new(redis))).await;
    let slug = super::unique_slug("xs");
    a.tenant(&slug).await;
    let s = a.login(&slug, &format!("admin@{slug}.test"), PASSWORD).await;
    let other = a.login(&slug, &format!("admin@{slug}.test"), PASSWORD).await;
    let mut on_b = Client::connect(&b, &s.access).await;
    let mut other_on_b = Client::connect(&b, &other.access).await;
    let out = a.post("/api/v1/auth/logout", None, json!({"refresh_token": s.refresh})).await;
    assert_eq!(out.status, StatusCode::NO_CONTENT);
    let frame = closed(&mut on_b).await;
    assert!(frame.contains("4001") && frame.contains("session revoked"), "{frame}");
    let pong = other_on_b.request(json!({"type": "ping"})).await;
    assert_eq!(pong["type"], "pong", "{pong}");
}

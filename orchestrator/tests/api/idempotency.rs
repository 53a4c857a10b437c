//! `Idempotency-Key` on creating POSTs.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{PASSWORD, TestApp};

#[tokio::test]
async fn repeated_key_replays_the_first_response() {
    let app = TestApp::spawn().await;
    let t = app.tenant("idem").await;
    let body = json!({"email":"tina@idem.test","display_name":"Tina","role":"tutor","password":PASSWORD});
    let post = async |body: serde_json::Value, key: &'static str, token: String| {
        app.request(Method::POST, "/api/v1/users", Some(&token), Some(&body), &[("idempotency-key", key)]).await
    };
    let first = post(body.clone(), "key-1", t.admin.access.clone()).await;
    assert_eq!(first.status, StatusCode::CREATED, "{first:?}");
    assert!(first.headers.get("idempotent-replayed").is_none());
    let again = post(body.clone(), "key-1", t.admin.access.clone()).await;
    assert_eq!(again.status, StatusCode::CREATED, "{again:?}");
    assert_eq!(again.body, first.body, "same user, same response");
    assert_eq!(again.headers.get("idempotent-replayed").unwrap(), "true");

    // Same key, different body: refused, nothing created.
    let mut other = body.clone();
    other["email"] = json!("tom@idem.test");
    let res = post(other.clone(), "key-1", t.admin.access.clone()).await;
    assert_eq!((res.status, res.code()), (StatusCode::CONFLICT, "idempotency_key_reused"));

    // Keys are per caller: another staff member's identical key is independent.
    let staff = app.user(&t, "staff", "stella", None).await;
    let res = post(other, "key-1", staff.access.clone()).await;
    assert_eq!(res.status, StatusCode::CREATED, "{res:?}");

    // Without a key, a repeat is a real second attempt.
    let res = app.post("/api/v1/users", Some(&t.admin.access), body).await;
    assert_eq!((res.status, res.code()), (StatusCode::CONFLICT, "email_taken"));

    let users = app.get("/api/v1/users?role=tutor", &t.admin.access).await;
    assert_eq!(users.body["users"].as_array().unwrap().len(), 2, "{users:?}");
}

#[tokio::test]
async fn errors_are_replayed_too_but_not_for_login() {
    let app = TestApp::spawn().await;
    let t = app.tenant("idem2").await;
    let bad = json!({"email":"bad","display_name":"X","role":"tutor","password":PASSWORD});
    let r1 = app
        .request(Method::POST, "/api/v1/users", Some(&t.admin.access), Some(&bad), &[("idempotency-key", "k")])
        .await;
    let r2 = app
        .request(Method::POST, "/api/v1/users", Some(&t.admin.access), Some(&bad), &[("idempotency-key", "k")])
        .await;
    assert_eq!((r1.status, r2.status), (StatusCode::UNPROCESSABLE_ENTITY, StatusCode::UNPROCESSABLE_ENTITY));
    assert_eq!(r2.headers.get("idempotent-replayed").unwrap(), "true");

    // Login responses carry credentials and are never stored or replayed.
    let login = json!({"tenant":"idem2","email":"admin@idem2.test","password":PASSWORD});
    let a = app.request(Method::POST, "/api/v1/auth/login", None, Some(&login), &[("idempotency-key", "same")]).await;
    let b = app.request(Method::POST, "/api/v1/auth/login", None, Some(&login), &[("idempotency-key", "same")]).await;
    assert_eq!((a.status, b.status), (StatusCode::OK, StatusCode::OK));
    assert_ne!(a.body["refresh_token"], b.body["refresh_token"]);
    assert!(b.headers.get("idempotent-replayed").is_none());

    let long = "k".repeat(300);
    let res = app
        .request(Method::POST, "/api/v1/users", Some(&t.admin.access), Some(&bad), &[("idempotency-key", &long)])
        .await;
    assert_eq!((res.status, res.code()), (StatusCode::BAD_REQUEST, "invalid_idempotency_key"));
}

#[tokio::test]
async fn anonymous_signup_is_idempotent() {
    let app = TestApp::spawn().await;
    let body =
        json!({"slug":"anon","name":"Anon","admin":{"email":"a@anon.test","display_name":"A","password":PASSWORD}});
    let h = [("idempotency-key", "signup-1")];
    let a = app.request(Method::POST, "/api/v1/tenants", None, Some(&body), &h).await;
    let b = app.request(Method::POST, "/api/v1/tenants", None, Some(&body), &h).await;
    assert_eq!((a.status, b.status), (StatusCode::CREATED, StatusCode::CREATED), "{b:?}");
    assert_eq!(a.body["tenant"]["id"], b.body["tenant"]["id"]);
}

#[tokio::test]
async fn concurrent_requests_with_one_key_create_once_and_never_fail() {
    let app = TestApp::spawn().await;
    let t = app.tenant("idem3").await;
    let body = json!({"email":"race@idem3.test","display_name":"Race","role":"tutor","password":PASSWORD});
    let results = futures::future::join_all((0..12).map(|_| {
        app.request(Method::POST, "/api/v1/users", Some(&t.admin.access), Some(&body), &[("idempotency-key", "same")])
    }))
    .await;
    for r in &results {
        assert!(
            r.status == StatusCode::CREATED || r.code() == "idempotency_request_in_progress",
            "unexpected response: {r:?}"
        );
    }
    let created: Vec<_> = results.iter().filter(|r| r.status == StatusCode::CREATED).map(|r| &r.body["id"]).collect();
    assert!(!created.is_empty());
    assert!(created.iter().all(|id| *id == created[0]), "one user, replayed");
    let users = app.get("/api/v1/users?role=tutor", &t.admin.access).await;
    assert_eq!(users.body["users"].as_array().unwrap().len(), 1);
}

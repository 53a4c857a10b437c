//! The HTTP surface: ops endpoints, OpenAPI, request ids, error shapes for bad input, CORS.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::TestApp;

#[tokio::test]
async fn health_and_readiness() {
    let app = TestApp::spawn().await;
    let res = app.request(Method::GET, "/healthz", None, None, &[]).await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.body["status"], "ok");
    let res = app.request(Method::GET, "/readyz", None, None, &[]).await;
    assert_eq!(res.status, StatusCode::OK, "{res:?}");

    // With the database gone, readiness fails while liveness holds.
    app.state.db.close().await;
    let res = app.request(Method::GET, "/readyz", None, None, &[]).await;
    assert_eq!(res.status, StatusCode::SERVICE_UNAVAILABLE, "{res:?}");
    assert_eq!(res.code(), "not_ready");
    let res = app.request(Method::GET, "/healthz", None, None, &[]).await;
    assert_eq!(res.status, StatusCode::OK);
}

#[tokio::test]
async fn metrics_count_requests_by_route_and_status() {
    let app = TestApp::spawn().await;
    let t = app.tenant("metrics").await;
    for _ in 0..3 {
        app.get("/api/v1/me", &t.admin.access).await;
    }
    app.get("/api/v1/users/not-a-uuid", &t.admin.access).await;
    let res = app.request(Method::GET, "/metrics", None, None, &[]).await;
    assert_eq!(res.status, StatusCode::OK);
    let text = res.text;
    assert!(
        text.contains(r#"liveclass_http_requests_total{method="GET",route="/api/v1/me",status="200"} 3"#),
        "{text}"
    );
    assert!(text.contains(r#"route="/api/v1/users/{id}",status="400"} 1"#), "{text}");
    assert!(text.contains("liveclass_http_request_duration_seconds_bucket"), "{text}");
    assert!(text.contains("liveclass_db_pool_max_connections 8"), "{text}");
}

#[tokio::test]
async fn openapi_documents_every_route() {
    let app = TestApp::spawn().await;
    let res = app.request(Method::GET, "/api/v1/openapi.json", None, None, &[]).await;
    assert_eq!(res.status, StatusCode::OK);
    assert!(res.body["openapi"].as_str().unwrap().starts_with("3."));
    let paths = res.body["paths"].as_object().unwrap();
    let expected = [
        ("/healthz", "get"),
        ("/readyz", "get"),
        ("/metrics", "get"),
        ("/api/v1/openapi.json", "get"),
        ("/api/v1/tenants", "post"),
        ("/api/v1/tenants/{id}", "get"),
        ("/api/v1/tenants/{id}/settings", "patch"),
        ("/api/v1/auth/login", "post"),
        ("/api/v1/auth/refresh", "post"),
        ("/api/v1/auth/logout", "post"),
        ("/api/v1/auth/register", "post"),
        ("/api/v1/me", "get"),
        ("/api/v1/me", "patch"),
        ("/api/v1/users", "post"),
        ("/api/v1/users", "get"),
        ("/api/v1/users/{id}", "get"),
        ("/api/v1/users/{id}/role", "put"),
        ("/api/v1/users/{id}/children", "post"),
        ("/api/v1/users/{id}/children", "get"),
        ("/api/v1/audit", "get"),
        ("/ws", "get"),
        ("/api/v1/meetings/{id}/chat", "get"),
        ("/api/v1/courses", "post"),
        ("/api/v1/courses/{id}", "get"),
        ("/api/v1/classes", "post"),
        ("/api/v1/classes", "get"),
        ("/api/v1/classes/{id}", "get"),
        ("/api/v1/classes/{id}/meetings", "post"),
        ("/api/v1/classes/{id}/package", "put"),
        ("/api/v1/classes/{id}/activate", "post"),
        ("/api/v1/classes/{id}/complete", "post"),
        ("/api/v1/classes/{id}/cancel", "post"),
        ("/api/v1/classes/{id}/enrollments", "post"),
        ("/api/v1/classes/{id}/roster", "get"),
        ("/api/v1/enrollments/{id}/ledger", "get"),
        ("/api/v1/enrollments/{id}/adjustments", "post"),
        ("/api/v1/meetings/{id}/attendance/{student_id}", "put"),
        ("/api/v1/meetings/{id}/attendance", "post"),
        ("/api/v1/classes/{id}/attendance", "get"),
        ("/api/v1/users/{id}/attendance", "get"),
        ("/api/v1/classes/{id}/unlocks", "post"),
        ("/api/v1/classes/{id}/lessons", "get"),
        ("/api/v1/classes/{id}/lessons/{lesson_id}/complete", "post"),
        ("/api/v1/users/{id}/lessons", "get"),
        ("/api/v1/consent-requests", "post"),
        ("/api/v1/consent-requests", "get"),
        ("/api/v1/consent-requests/{id}/decision", "post"),
        ("/api/v1/users/{id}/consents", "get"),
        ("/api/v1/users/{id}/consents/revoke", "post"),
        ("/api/v1/mailbox", "get"),
        ("/api/v1/me/mailbox", "get"),
        ("/api/v1/me/calendar-token", "post"),
        ("/api/v1/me/calendar-token", "delete"),
        ("/api/v1/calendar/{token}", "get"),
        ("/api/v1/tutors/{id}/availability", "put"),
        ("/api/v1/tutors/{id}/availability", "get"),
        ("/api/v1/tutors/{id}/slots", "get"),
        ("/api/v1/tenants/{id}/booking-policy", "get"),
        ("/api/v1/tenants/{id}/booking-policy", "put"),
        ("/api/v1/bookings", "post"),
        ("/api/v1/bookings", "get"),
        ("/api/v1/bookings/{id}", "get"),
        ("/api/v1/bookings/{id}/checkout", "post"),
        ("/api/v1/bookings/{id}/cancel", "post"),
        ("/api/v1/bookings/{id}/reschedule", "post"),
        ("/api/v1/bookings/{id}/start", "post"),
        ("/api/v1/bookings/{id}/complete", "post"),
        ("/api/v1/bookings/{id}/no-show", "post"),
        ("/api/v1/bookings/{id}/refund", "post"),
        ("/api/v1/bookings/{id}/join", "post"),
        ("/api/v1/webhooks/livekit", "post"),
        ("/api/v1/meetings/{id}/join", "post"),
        ("/api/v1/meetings/{id}/attendance/proposal", "get"),
        ("/api/v1/bookings/{id}/segments", "get"),
        ("/api/v1/payments/{id}/received", "post"),
        ("/api/v1/packages", "post"),
        ("/api/v1/packages", "get"),
        ("/api/v1/packages/{id}", "get"),
        ("/api/v1/tutors/{id}/commission", "put"),
        ("/api/v1/webhooks/stripe", "post"),
        ("/api/v1/tutors/{id}/payout-account", "get"),
        ("/api/v1/tutors/{id}/payout-account", "post"),
        ("/api/v1/payouts/{booking_id}/paid", "post"),
        ("/api/v1/tutors/{id}/earnings", "get"),
        ("/api/v1/reports/revenue", "get"),
        ("/api/v1/admin/jobs", "get"),
        ("/api/v1/admin/jobs/{id}/retry", "post"),
        ("/api/v1/users/{id}/gamification", "get"),
        ("/api/v1/classes/{id}/leaderboard/opt-in", "post"),
        ("/api/v1/classes/{id}/leaderboard/opt-out", "post"),
        ("/api/v1/classes/{id}/leaderboard", "get"),
        ("/api/v1/tutors", "get"),
        ("/api/v1/client-config", "get"),
        ("/api/v1/bookings/{id}/cancellation", "get"),
        ("/api/v1/courses", "get"),
        ("/api/v1/consent-requests/{id}", "get"),
        ("/api/v1/users/{id}/enrollments", "get"),
    ];
    for (path, method) in expected {
        assert!(paths.get(path).and_then(|p| p.get(method)).is_some(), "{method} {path} missing from OpenAPI");
    }
    let documented: usize = paths.values().map(|p| p.as_object().unwrap().len()).sum();
    assert_eq!(documented, expected.len(), "undocumented or unexpected operations: {:?}", paths.keys());
    // Every route the server answers is documented: each documented path resolves to something other than 404.
    let t = app.tenant("docs").await;
    for (path, method) in expected {
        let concrete = path.replace("{id}", &t.id).replace("{student_id}", &t.id).replace("{lesson_id}", &t.id);
        let m = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let res = app.request(m, &concrete, Some(&t.admin.access), None, &[]).await;
        assert_ne!(res.code(), "not_found", "{method} {path}: {res:?}");
    }
}

#[tokio::test]
async fn openapi_operation_ids_are_unique_and_every_reference_resolves() {
    let app = TestApp::spawn().await;
    let doc = app.request(Method::GET, "/api/v1/openapi.json", None, None, &[]).await.body;
    let mut ids = std::collections::HashSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let id = op["operationId"].as_str().unwrap_or_else(|| panic!("{method} {path} has no operationId"));
            assert!(ids.insert(id.to_string()), "operationId {id} repeats ({method} {path})");
        }
    }
    let text = doc.to_string();
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    for part in text.split("\"#/components/schemas/").skip(1) {
        let name = &part[..part.find('"').unwrap()];
        assert!(schemas.contains_key(name), "dangling reference to schema {name}");
    }
}

#[tokio::test]
async fn the_client_config_says_how_to_pay_and_which_media() {
    let app = TestApp::spawn_with(|c| c.stripe_publishable_key = Some("pk_unused".into())).await;
    let cfg = app.request(Method::GET, "/api/v1/client-config", None, None, &[]).await;
    assert_eq!(cfg.status, StatusCode::OK);
    // Offline payments: no key handed out even if one is configured.
    assert_eq!(cfg.body, json!({"payments": "offline", "stripe_publishable_key": null, "media": "embedded"}));
}

#[tokio::test]
async fn the_browser_app_is_served_from_the_binary() {
    let app = TestApp::spawn().await;
    let page = app.request(Method::GET, "/", None, None, &[]).await;
    if !orchestrator::webui::embedded() {
        // Built with LIVECLASS_SKIP_WEB_BUILD: the page says how to get the app.
        assert_eq!((page.status, page.code()), (StatusCode::NOT_FOUND, "web_client_not_built"));
        return;
    }
    assert_eq!(page.status, StatusCode::OK, "{page:?}");
    assert!(page.headers["content-type"].to_str().unwrap().starts_with("text/html"));
    // Every script and stylesheet the page names is served, with its type.
    let assets: Vec<&str> = page.text.split("/assets/").skip(1).map(|rest| &rest[..rest.find('"').unwrap()]).collect();
    assert!(!assets.is_empty(), "{}", page.text);
    for asset in assets {
        let res = app.request(Method::GET, &format!("/assets/{asset}"), None, None, &[]).await;
        assert_eq!(res.status, StatusCode::OK, "{asset}");
        let kind = res.headers["content-type"].to_str().unwrap();
        assert!(
            kind.starts_with(if asset.ends_with(".css") { "text/css" } else { "text/javascript" }),
            "{asset}: {kind}"
        );
    }
    let missing = app.request(Method::GET, "/assets/nope.js", None, None, &[]).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn request_ids_are_generated_and_propagated() {
    let app = TestApp::spawn().await;
    let res = app.request(Method::GET, "/healthz", None, None, &[]).await;
    let id = res.headers.get("x-request-id").expect("generated id").to_str().unwrap();
    assert_eq!(id.len(), 36, "a UUID: {id}");
    let res = app.request(Method::GET, "/healthz", None, None, &[("x-request-id", "trace-me-42")]).await;
    assert_eq!(res.headers.get("x-request-id").unwrap(), "trace-me-42");
}

#[tokio::test]
async fn bad_input_gets_clear_4xx_errors() {
    let app = TestApp::spawn_with(|c| c.body_limit_bytes = 2048).await;
    let t = app.tenant("errors").await;
    let url = format!("{}/api/v1/users", app.base);
    let send = |body: String, ct: Option<&'static str>| {
        let mut req = app.http.post(&url).bearer_auth(&t.admin.access).body(body);
        if let Some(ct) = ct {
            req = req.header("content-type", ct);
        }
        async move {
            let res = req.send().await.unwrap();
            let status = res.status();
            let body: serde_json::Value = res.json().await.expect("JSON error body");
            (status, body["error"]["code"].as_str().unwrap().to_string(), body)
        }
    };
    let json_ct = Some("application/json");
    let (s, code, _) = send("{not json".into(), json_ct).await;
    assert_eq!((s, code.as_str()), (StatusCode::BAD_REQUEST, "invalid_json"));
    let (s, code, body) = send(r#"{"email": 5}"#.into(), json_ct).await;
    assert_eq!((s, code.as_str()), (StatusCode::UNPROCESSABLE_ENTITY, "invalid_body"));
    assert!(body["error"]["message"].as_str().unwrap().contains("email"), "{body}");
    let (s, code, body) = send(
        r#"{"email":"a@b.io","display_name":"A","role":"tutor","password":"password-1","is_admin":true}"#.into(),
        json_ct,
    )
    .await;
    assert_eq!((s, code.as_str()), (StatusCode::UNPROCESSABLE_ENTITY, "invalid_body"), "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("is_admin"), "{body}");
    let (s, code, _) =
        send(r#"{"email":"a@b.io","display_name":"A","role":"wizard","password":"password-1"}"#.into(), json_ct).await;
    assert_eq!((s, code.as_str()), (StatusCode::UNPROCESSABLE_ENTITY, "invalid_body"));
    let (s, code, _) = send("{}".into(), None).await;
    assert_eq!((s, code.as_str()), (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type"));
    let big = format!(r#"{{"email":"{}@b.io"}}"#, "a".repeat(4096));
    let (s, code, _) = send(big, json_ct).await;
    assert_eq!((s, code.as_str()), (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"));

    let res = app.get("/api/v1/users/not-a-uuid", &t.admin.access).await;
    assert_eq!((res.status, res.code()), (StatusCode::BAD_REQUEST, "invalid_path"));
    let res = app.get("/api/v1/users?limit=lots", &t.admin.access).await;
    assert_eq!((res.status, res.code()), (StatusCode::BAD_REQUEST, "invalid_query"));
    let res = app.get("/api/v1/nothing-here", &t.admin.access).await;
    assert_eq!((res.status, res.code()), (StatusCode::NOT_FOUND, "not_found"));
    let res = app.request(Method::DELETE, "/api/v1/me", Some(&t.admin.access), None, &[]).await;
    assert_eq!((res.status, res.code()), (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"));

    // Nothing was created by any of the rejected requests.
    let res = app.get("/api/v1/users", &t.admin.access).await;
    assert_eq!(res.body["users"].as_array().unwrap().len(), 1, "{res:?}");
    let _ = json!({});
}

#[tokio::test]
async fn cors_allows_only_configured_origins() {
    let app = TestApp::spawn_with(|c| c.cors_origins = vec!["https://app.example".into()]).await;
    let preflight = |origin: &'static str| {
        app.http
            .request(Method::OPTIONS, format!("{}/api/v1/me", app.base))
            .header("origin", origin)
            .header("access-control-request-method", "GET")
            .header("access-control-request-headers", "authorization")
            .send()
    };
    let res = preflight("https://app.example").await.unwrap();
    assert_eq!(res.headers().get("access-control-allow-origin").unwrap(), "https://app.example");
    let res = preflight("https://evil.example").await.unwrap();
    assert!(res.headers().get("access-control-allow-origin").is_none());
}

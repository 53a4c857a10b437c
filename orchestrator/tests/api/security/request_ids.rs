//! Request ids from clients were echoed and logged unvalidated (issue 17, item 6): "300 characters with
//! spaces were accepted". An incoming `X-Request-Id` is kept only when it is 1-64 characters of
//! `A-Z a-z 0-9 . _ : -`; anything else is replaced by a generated UUID before it reaches the logs, the
//! audit log or the response.

use reqwest::{
    Method, StatusCode,
    header::{HeaderMap, HeaderValue},
};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::{PASSWORD, TestApp};

/// The `X-Request-Id` of the answer to `GET /healthz` sent with `id`.
async fn echoed(app: &TestApp, id: HeaderValue) -> String {
    let res = app.http.get(format!("{}/healthz", app.base)).header("x-request-id", id).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    id_of(res.headers())
}

fn id_of(headers: &HeaderMap) -> String {
    headers.get("x-request-id").expect("a request id").to_str().expect("ASCII").to_string()
}

fn generated(id: &str) -> bool {
    uuid::Uuid::try_parse(id).is_ok_and(|u| u.get_version_num() == 4) && id.len() == 36
}

#[tokio::test]
async fn an_id_that_fits_is_echoed_and_one_that_does_not_is_replaced() {
    let app = TestApp::spawn().await;
    for fits in [
        "trace-me-42",
        "0190f3a2-7c1e-7b3a-9f00-0123456789ab",
        "01ARZ3NDEKTSV4RRFFQ69G5FAV",
        "8d3e6b7c0f1a4e2b9c5d7e8f1a2b3c4d",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "1-5759e988-bd862e3fe1be46a994272793",
    ] {
        assert_eq!(echoed(&app, HeaderValue::from_static(fits)).await, fits);
    }
    let essay = "not an id ".repeat(30);
    assert_eq!(essay.len(), 300);
    for unfit in [essay.as_str(), &"x".repeat(65), "a/b", "<script>alert(1)</script>", "%0d%0a"] {
        let id = echoed(&app, HeaderValue::from_str(unfit).unwrap()).await;
        assert!(generated(&id), "{unfit:?} came back as {id:?}");
    }
}

#[tokio::test]
async fn control_characters_and_other_bytes_are_replaced() {
    let app = TestApp::spawn().await;
    for unfit in [&b"tab\there"[..], b"caf\xc3\xa9", b"\x80\xff"] {
        let id = echoed(&app, HeaderValue::from_bytes(unfit).unwrap()).await;
        assert!(generated(&id), "{:?} came back as {id:?}", String::from_utf8_lossy(unfit));
    }
    // Line breaks end a header line in HTTP/1.1, so they cannot be inside one; a client sending two ids
    // (one trying to smuggle the other past a proxy) gets neither.
    let mut conn = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    conn.write_all(
        b"GET /healthz HTTP/1.1\r\nhost: x\r\nx-request-id: a\r\nx-request-id: b\r\nconnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    let mut response = String::new();
    conn.read_to_string(&mut response).await.unwrap();
    let line = response.lines().find(|l| l.to_ascii_lowercase().starts_with("x-request-id:")).expect("an id");
    let id = line.split_once(':').unwrap().1.trim();
    assert!(generated(id), "{response}");
}

#[tokio::test]
async fn the_audit_log_records_the_generated_id_not_the_clients() {
    let app = TestApp::spawn().await;
    let t = app.tenant("rid").await;
    let essay = "I am the request id now ".repeat(12);
    let res = app
        .request(
            Method::POST,
            "/api/v1/auth/login",
            None,
            Some(&json!({"tenant": "rid", "email": "admin@rid.test", "password": format!("{PASSWORD}-wrong")})),
            &[("x-request-id", essay.as_str())],
        )
        .await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED, "{res:?}");
    let id = id_of(&res.headers);
    assert!(generated(&id), "{id}");

    let audit = app.get("/api/v1/audit?action=login.failed", &t.admin.access).await;
    assert_eq!(audit.status, StatusCode::OK, "{audit:?}");
    assert_eq!(audit.body["entries"][0]["request_id"], id.as_str(), "{audit:?}");
    assert!(!audit.text.contains("request id now"), "{audit:?}");
}

//! Connections were held for ever (issue 17, item 3): "400 connections that send one header byte every 5 s
//! stay open indefinitely; 1,100 of them exhaust file descriptors and `/healthz` stops answering." Now a
//! request head must arrive within `header_read_timeout_secs`, an idle keep-alive connection is closed after
//! `idle_timeout_secs` (a WebSocket is not), and connections past `max_connections` in total or
//! `max_connections_per_ip` from one address are answered 503 and closed at once, while other clients are
//! served. `/metrics` counts each. Timeouts here are real seconds: hyper's connections run on tokio time,
//! not the test's manual clock.

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    time::Duration,
};

use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    time::Instant,
};

use crate::{helpers::TestApp, realtime::Client};

/// A TCP connection to the server from `127.0.0.<last>` (all of 127.0.0.0/8 is this machine).
async fn connect_from(app: &TestApp, last: u8) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, last)), 0)).unwrap();
    socket.connect(app.addr).await.unwrap()
}

/// A client whose connections come from `127.0.0.<last>`.
fn client_from(last: u8) -> reqwest::Client {
    reqwest::Client::builder().local_address(IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))).build().unwrap()
}

/// Reads until the server closes the connection (EOF or reset); returns what came and when it closed, or
/// `None` if it was still open after `wait`.
async fn closed_within(conn: &mut (impl AsyncRead + Unpin), wait: Duration) -> Option<(String, Instant)> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, conn.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some((String::from_utf8_lossy(&got).into_owned(), Instant::now())),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

/// Reads one whole `GET /healthz` response off a keep-alive connection.
async fn read_health(conn: &mut TcpStream) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !String::from_utf8_lossy(&got).ends_with(r#"{"status":"ok"}"#) {
        let n = tokio::time::timeout(Duration::from_secs(5), conn.read(&mut buf)).await.expect("response").unwrap();
        assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&got).into_owned()
}

async fn health(client: &reqwest::Client, app: &TestApp) -> Result<StatusCode, reqwest::Error> {
    client.get(format!("{}/healthz", app.base)).send().await.map(|r| r.status())
}

/// `/metrics` as text, from `127.0.0.<last>` on a fresh connection, retried while a cap refuses it.
async fn metrics(app: &TestApp, last: u8) -> String {
    for _ in 0..40 {
        let res = client_from(last).get(format!("{}/metrics", app.base)).send().await;
        if let Ok(res) = res
            && res.status() == StatusCode::OK
        {
            return res.text().await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("/metrics unreachable");
}

/// The value of the sample `series` (name and labels exactly as exposed); 0 when absent.
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
        .map(|v| v.trim().parse().unwrap())
        .unwrap_or(0.0)
}

const HEADER_TIMEOUTS: &str = r#"liveclass_http_connections_timed_out_total{reason="header"}"#;
const IDLE_TIMEOUTS: &str = r#"liveclass_http_connections_timed_out_total{reason="idle"}"#;
const OPEN: &str = "liveclass_http_connections_open";

#[tokio::test]
async fn a_connection_trickling_its_header_or_silent_is_closed_after_the_header_timeout() {
    let app = TestApp::spawn_with(|c| {
        c.header_read_timeout_secs = 1;
        c.idle_timeout_secs = 30;
    })
    .await;
    let start = Instant::now();
    let mut silent = connect_from(&app, 1).await;
    let (mut trickle_rx, mut trickle_tx) = connect_from(&app, 1).await.into_split();
    // One header byte every 200 ms, never the blank line that ends the head: the issue's attack, faster.
    let trickling = tokio::spawn(async move {
        for b in b"GET /healthz HTTP/1.1\r\nhost: x\r\nx-slow: ".iter().chain(std::iter::repeat(&b'a')) {
            if trickle_tx.write_all(&[*b]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    for (name, closed) in [
        ("silent", closed_within(&mut silent, Duration::from_secs(6)).await),
        ("trickling", closed_within(&mut trickle_rx, Duration::from_secs(6)).await),
    ] {
        let (got, at) = closed.unwrap_or_else(|| panic!("the {name} connection is still open 6 s later"));
        assert_eq!(got, "", "{name}: dropped without an answer");
        let after = at - start;
        assert!(
            after >= Duration::from_millis(900) && after < Duration::from_secs(3),
            "{name}: closed after {after:?}"
        );
    }
    trickling.abort();

    // The server kept answering throughout, and counted both.
    assert_eq!(health(&client_from(2), &app).await.unwrap(), StatusCode::OK);
    let text = metrics(&app, 3).await;
    assert_eq!(sample(&text, HEADER_TIMEOUTS), 2.0, "{text}");
    assert_eq!(sample(&text, IDLE_TIMEOUTS), 0.0, "{text}");
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout_and_a_websocket_is_not() {
    let app = TestApp::spawn_with(|c| {
        c.header_read_timeout_secs = 1;
        c.idle_timeout_secs = 3;
    })
    .await;
    let t = app.tenant("idle").await;
    let mut ws = Client::connect(&app, &t.admin.access).await;
    let ws_opened = Instant::now();

    let mut conn = connect_from(&app, 1).await;
    conn.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
    let response = read_health(&mut conn).await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let answered = Instant::now();
    let (_, at) = closed_within(&mut conn, Duration::from_secs(8)).await.expect("the idle connection is closed");
    let idle = at - answered;
    // Well past the 1 s header timeout: between requests the idle timeout counts, not the header one.
    assert!(idle >= Duration::from_secs(2) && idle < Duration::from_secs(5), "closed after {idle:?} idle");

    // The WebSocket has been quiet for longer than the idle timeout and still answers.
    tokio::time::sleep_until(ws_opened + Duration::from_secs(4)).await;
    let pong = ws.request(json!({"type": "ping"})).await;
    assert_eq!(pong["type"], "pong", "{pong}");

    let text = metrics(&app, 2).await;
    assert!(sample(&text, IDLE_TIMEOUTS) >= 1.0, "{text}");
    assert_eq!(sample(&text, HEADER_TIMEOUTS), 0.0, "{text}");
    // The socket and this scrape (the setup's pooled connections have gone idle and been closed).
    assert_eq!(sample(&text, OPEN), 2.0, "{text}");
}

#[tokio::test]
async fn the_per_address_cap_refuses_the_next_connection_from_that_address_only() {
    let app = TestApp::spawn_with(|c| {
        c.max_connections_per_ip = 3;
        c.max_connections_per_ip_exempt_loopback = false;
        c.header_read_timeout_secs = 30;
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(connect_from(&app, 1).await);
    }
    let mut fourth = connect_from(&app, 1).await;
    let (refusal, _) = closed_within(&mut fourth, Duration::from_secs(3)).await.expect("refused at once");
    assert!(refusal.starts_with("HTTP/1.1 503"), "{refusal}");
    let body: Value = serde_json::from_str(refusal.split_once("\r\n\r\n").unwrap().1).unwrap();
    assert_eq!(body["error"]["code"], "too_many_connections", "{body}");

    // Another address is served meanwhile.
    assert_eq!(health(&client_from(2), &app).await.unwrap(), StatusCode::OK);
    let text = metrics(&app, 3).await;
    assert_eq!(sample(&text, r#"liveclass_http_connections_refused_total{reason="per_ip"}"#), 1.0, "{text}");
    assert_eq!(sample(&text, r#"liveclass_http_connections_refused_total{reason="total"}"#), 0.0, "{text}");
    // A closed connection frees its place.
    drop(held.pop());
    let again = client_from(1);
    let deadline = Instant::now() + Duration::from_secs(3);
    while !matches!(health(&again, &app).await, Ok(StatusCode::OK)) {
        assert!(Instant::now() < deadline, "the address never got its place back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn the_total_cap_refuses_past_max_connections_whatever_the_address() {
    let app = TestApp::spawn_with(|c| {
        c.max_connections = 3;
        c.header_read_timeout_secs = 30;
    })
    .await;
    let mut held = Vec::new();
    for last in 2..5 {
        held.push(connect_from(&app, last).await);
    }
    let mut fourth = connect_from(&app, 5).await;
    let (refusal, _) = closed_within(&mut fourth, Duration::from_secs(3)).await.expect("refused at once");
    assert!(refusal.starts_with("HTTP/1.1 503") && refusal.contains("too_many_connections"), "{refusal}");

    // A closed connection frees its place (the scrape is retried until the server has seen the close,
    // each refused try counted too).
    drop(held.pop());
    let text = metrics(&app, 6).await;
    assert!(sample(&text, r#"liveclass_http_connections_refused_total{reason="total"}"#) >= 1.0, "{text}");
    assert_eq!(sample(&text, OPEN), 3.0, "two held and the scrape: {text}");
}

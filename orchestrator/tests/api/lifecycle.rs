//! Graceful shutdown: in-flight requests finish, new connections are refused, the run returns.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{helpers::TestApp, realtime::Client};

#[tokio::test]
async fn shutdown_finishes_in_flight_requests() {
    let mut app = TestApp::spawn().await;
    app.tenant("bye").await;
    let body = r#"{"tenant":"bye","email":"admin@bye.test","password":"password-123"}"#;
    let mut conn = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let head = format!(
        "POST /api/v1/auth/login HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    conn.write_all(&body.as_bytes()[..10]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;

    // Start shutdown while the request is half sent.
    let stopping = tokio::spawn(app.begin_stop());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(tokio::net::TcpStream::connect(app.addr).await.is_err(), "listener closed");

    conn.write_all(&body.as_bytes()[10..]).await.unwrap();
    let mut response = String::new();
    conn.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("access_token"));
    tokio::time::timeout(Duration::from_secs(5), stopping).await.expect("stopped in time").unwrap().unwrap();
}

#[tokio::test]
async fn shutdown_closes_live_connections_as_going_away() {
    let mut app = TestApp::spawn().await;
    let s = crate::classes::school(&app, "bye-ws", 1, 0).await;
    let mut idle = Client::connect(&app, &s.tutor.access).await;
    // One in a lobby as well as its user channel, to be closed whatever it is in.
    let mut member = Client::connect(&app, &s.tutor.access).await;
    let lobby = format!("lobby:{}:hall", s.t.id);
    assert_eq!(member.join(&lobby).await["type"], "joined");

    let stopping = tokio::spawn(app.begin_stop());
    for c in [&mut idle, &mut member] {
        let closed = c.until(|f| f["type"] == "_closed").await;
        let frame = closed["frame"].as_str().unwrap();
        assert!(frame.contains("Away") && frame.contains("server shutting down"), "{frame}");
    }
    tokio::time::timeout(Duration::from_secs(5), stopping).await.expect("stopped in time").unwrap().unwrap();
}

impl TestApp {
    /// Signals shutdown and returns a future that resolves when the server has stopped.
    fn begin_stop(&mut self) -> impl std::future::Future<Output = anyhow::Result<()>> + use<> {
        let handle = self.server.take().expect("running");
        self.signal_stop();
        async move { handle.await.expect("server task") }
    }
}

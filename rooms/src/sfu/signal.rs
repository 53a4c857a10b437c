//! The signal side: LiveKit's `/rtc/v1` WebSocket and `/rtc/v1/validate`.
//!
//! A connection is checked before the upgrade (token from `access_token=` or `Authorization: Bearer`, its
//! room grant, the `join_request` parameter), then its task relays protobuf frames between the socket and
//! the engine. Pings are answered here, without a trip through the engine.

use std::{io::Read, time::Duration};

use axum::{
    Router,
    extract::{
        Query, State,
        ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade},
    },
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use base64::Engine as _;
use livekit_protocol as lk;
use prost::Message as _;
use serde::Deserialize;
use tokio::sync::mpsc;

use super::{Claims, Command, Joining, driver::Sfu, leave_message, now_ms};
use crate::token;

/// `/rtc/v1`, `/rtc/v1/validate` and `/rtc/validate`; `/rtc` (two PeerConnections) is not served, so SDKs
/// that try it first get the 404 that tells them so.
pub fn router<S: Clone + Send + Sync + 'static>(sfu: Sfu) -> Router<S> {
    Router::new()
        .route("/rtc/v1", get(connect))
        .route("/rtc/v1/validate", get(validate))
        .route("/rtc/validate", get(validate))
        .route("/rtc", get(not_served))
        .with_state(sfu)
}

#[derive(Debug, Deserialize)]
struct Params {
    access_token: Option<String>,
    join_request: Option<String>,
    auto_subscribe: Option<String>,
    protocol: Option<i32>,
    sdk: Option<String>,
    reconnect: Option<String>,
}

fn fail(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    let body = serde_json::json!({"error": {"code": code, "message": message.into()}});
    (status, axum::Json(body)).into_response()
}

async fn not_served() -> Response {
    fail(StatusCode::NOT_FOUND, "not_found", "only LiveKit's single-PeerConnection protocol (/rtc/v1) is served")
}

/// The token from the query or the `Authorization` header, verified, with a room to join.
/// Why a connection is refused: status, code, message.
type Refusal = (StatusCode, &'static str, String);

fn authorize(sfu: &Sfu, params: &Params, headers: &HeaderMap) -> Result<Claims, Refusal> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let Some(jwt) = params.access_token.as_deref().or(bearer) else {
        return Err((StatusCode::UNAUTHORIZED, "unauthorized", "no access token".into()));
    };
    let creds = &sfu.config.credentials;
    let now = (sfu.config.unix_now)();
    let claims: Claims = token::decode_as(&creds.api_secret, jwt, now)
        .map_err(|e| (StatusCode::UNAUTHORIZED, "unauthorized", format!("invalid token: {e}")))?;
    if claims.iss != creds.api_key {
        return Err((StatusCode::UNAUTHORIZED, "unauthorized", "invalid token: unknown API key".into()));
    }
    if !claims.video.room_join || claims.video.room.is_empty() || claims.sub.is_empty() {
        return Err((StatusCode::FORBIDDEN, "forbidden", "the token grants no room to join".into()));
    }
    Ok(claims)
}

/// The `join_request` parameter: base64 (either alphabet, padded or not) of a `WrappedJoinRequest`, its
/// `JoinRequest` optionally gzipped.
fn join_request(raw: &str) -> Result<lk::JoinRequest, String> {
    let cleaned: String = raw.chars().filter(|c| !c.is_whitespace() && *c != '=').collect();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(&cleaned)
        .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(&cleaned))
        .map_err(|_| "join_request is not base64".to_string())?;
    let wrapped = lk::WrappedJoinRequest::decode(bytes.as_slice()).map_err(|e| format!("join_request: {e}"))?;
    let inner = match lk::wrapped_join_request::Compression::try_from(wrapped.compression) {
        Ok(lk::wrapped_join_request::Compression::Gzip) => {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(wrapped.join_request.as_slice())
                .take(1 << 20)
                .read_to_end(&mut out)
                .map_err(|e| format!("join_request: bad gzip: {e}"))?;
            out
        }
        Ok(lk::wrapped_join_request::Compression::None) => wrapped.join_request,
        Err(_) => return Err("join_request: unknown compression".into()),
    };
    lk::JoinRequest::decode(inner.as_slice()).map_err(|e| format!("join_request: {e}"))
}

/// `GET /rtc/v1/validate`: what a failed connection attempt asks to explain itself.
async fn validate(State(sfu): State<Sfu>, Query(params): Query<Params>, headers: HeaderMap) -> Response {
    match authorize(&sfu, &params, &headers) {
        Ok(_) => (StatusCode::OK, "success").into_response(),
        Err((status, code, message)) => fail(status, code, message),
    }
}

async fn connect(
    State(sfu): State<Sfu>,
    Query(params): Query<Params>,
    headers: HeaderMap,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    let claims = match authorize(&sfu, &params, &headers) {
        Ok(c) => c,
        Err((status, code, message)) => return fail(status, code, message),
    };
    let request = match params.join_request.as_deref() {
        Some(raw) => match join_request(raw) {
            Ok(r) => r,
            Err(e) => return fail(StatusCode::BAD_REQUEST, "bad_join_request", e),
        },
        // Older clients put the settings in the query and send their offer after the join.
        None => lk::JoinRequest {
            reconnect: matches!(params.reconnect.as_deref(), Some("1" | "true")),
            client_info: Some(lk::ClientInfo {
                sdk: 0,
                protocol: params.protocol.unwrap_or(0),
                version: params.sdk.clone().unwrap_or_default(),
                ..Default::default()
            }),
            ..Default::default()
        },
    };
    let auto_subscribe = match &request.connection_settings {
        Some(s) => s.auto_subscribe,
        None => params.auto_subscribe.as_deref() != Some("0") && params.auto_subscribe.as_deref() != Some("false"),
    };
    let Ok(ws) = ws else {
        return fail(StatusCode::BAD_REQUEST, "websocket_required", "connect with a WebSocket upgrade");
    };
    ws.max_message_size(1 << 20).on_upgrade(move |socket| session(sfu, socket, claims, request, auto_subscribe))
}

/// One client's signal connection, until it closes or goes quiet for longer than the ping timeout.
async fn session(sfu: Sfu, mut socket: WebSocket, claims: Claims, request: lk::JoinRequest, auto_subscribe: bool) {
    let id = sfu.client_id();
    let (out, mut outgoing) = mpsc::unbounded_channel();
    if request.reconnect {
        // Resuming a session isn't served: the client is told to join from scratch.
        let leave = leave_message(lk::DisconnectReason::StateMismatch, lk::leave_request::Action::Reconnect);
        let frame = lk::SignalResponse { message: Some(leave) }.encode_to_vec();
        let _ = socket.send(Message::Binary(frame.into())).await;
        close(&mut socket).await;
        return;
    }
    sfu.send(Command::Join(Box::new(Joining { id, claims, request, auto_subscribe, out })));
    let timeout = Duration::from_secs(sfu.config.ping_timeout_secs.max(1) as u64);
    let mut deadline = tokio::time::Instant::now() + timeout;
    loop {
        tokio::select! {
            msg = outgoing.recv() => {
                let Some(msg) = msg else { break };
                let leaving = matches!(msg, lk::signal_response::Message::Leave(_));
                let frame = lk::SignalResponse { message: Some(msg) }.encode_to_vec();
                if socket.send(Message::Binary(frame.into())).await.is_err() {
                    break;
                }
                if leaving {
                    break;
                }
            }
            frame = socket.recv() => {
                let Some(Ok(frame)) = frame else { break };
                deadline = tokio::time::Instant::now() + timeout;
                let bytes = match frame {
                    Message::Binary(b) => b,
                    Message::Close(_) => break,
                    _ => continue,
                };
                let Ok(req) = lk::SignalRequest::decode(bytes.as_ref()) else {
                    tracing::debug!(client = id, "undecodable signal request");
                    continue;
                };
                use lk::signal_request::Message as Req;
                use lk::signal_response::Message as Resp;
                let reply = match req.message {
                    Some(Req::Ping(t)) => Some(Resp::Pong(t)),
                    Some(Req::PingReq(p)) => Some(Resp::PongResp(lk::Pong { last_ping_timestamp: p.timestamp, timestamp: now_ms() })),
                    Some(m) => {
                        sfu.send(Command::Signal(id, Box::new(m)));
                        None
                    }
                    None => None,
                };
                if let Some(r) = reply {
                    let frame = lk::SignalResponse { message: Some(r) }.encode_to_vec();
                    if socket.send(Message::Binary(frame.into())).await.is_err() {
                        break;
                    }
                }
            }
            _ = tokio::time::sleep_until(deadline) => {
                tracing::debug!(client = id, "signal connection timed out");
                break;
            }
        }
    }
    sfu.send(Command::Gone(id));
    close(&mut socket).await;
}

/// A normal close (1000): the SDKs read anything else as a dropped connection.
async fn close(socket: &mut WebSocket) {
    let frame = CloseFrame { code: axum::extract::ws::close_code::NORMAL, reason: "".into() };
    let _ = socket.send(Message::Close(Some(frame))).await;
}

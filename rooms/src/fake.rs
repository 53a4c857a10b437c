//! `FakeLiveKit`: an in-process HTTP server answering LiveKit's RoomService (Twirp, JSON) like LiveKit does,
//! for tests: it checks each call's token (signature, key, and the grant the call needs), keeps rooms and
//! participants, records calls, and can fail on demand.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{Arc, Mutex},
};

use axum::{
    Json, Router,
    extract::{Path, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::post,
};
use serde_json::{Value, json};

use crate::{Credentials, token};

#[derive(Default)]
struct Inner {
    rooms: BTreeMap<String, BTreeSet<String>>,
    calls: Vec<(String, Value)>,
    fail_next: usize,
    muted: Vec<(String, String, String, bool)>,
}

#[derive(Clone)]
struct Shared {
    creds: Credentials,
    inner: Arc<Mutex<Inner>>,
}

pub struct FakeLiveKit {
    addr: std::net::SocketAddr,
    shared: Shared,
    _server: tokio::task::JoinHandle<()>,
}

impl Drop for FakeLiveKit {
    fn drop(&mut self) {
        self._server.abort();
    }
}

impl FakeLiveKit {
    pub async fn start(creds: Credentials) -> FakeLiveKit {
        let shared = Shared { creds, inner: Arc::default() };
        let app = Router::new().route("/twirp/livekit.RoomService/{method}", post(handle)).with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeLiveKit { addr, shared, _server: server }
    }

    /// `ws://127.0.0.1:<port>`, as clients would be given.
    pub fn url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.shared.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A participant connects (as a client SDK would).
    pub fn connect(&self, room: &str, identity: &str) {
        self.lock().rooms.entry(room.to_string()).or_default().insert(identity.to_string());
    }

    pub fn rooms(&self) -> Vec<String> {
        self.lock().rooms.keys().cloned().collect()
    }

    pub fn participants(&self, room: &str) -> Vec<String> {
        self.lock().rooms.get(room).map(|s| s.iter().cloned().collect()).unwrap_or_default()
    }

    /// Every call: (method, body).
    pub fn calls(&self) -> Vec<(String, Value)> {
        self.lock().calls.clone()
    }

    /// Tracks muted or unmuted: (room, identity, track sid, muted).
    pub fn muted(&self) -> Vec<(String, String, String, bool)> {
        self.lock().muted.clone()
    }

    /// The next `n` calls answer 503 `unavailable`.
    pub fn fail_next(&self, n: usize) {
        self.lock().fail_next = n;
    }
}

fn twirp_error(status: StatusCode, code: &str, msg: &str) -> Response {
    (status, Json(json!({ "code": code, "msg": msg }))).into_response()
}

async fn handle(
    State(s): State<Shared>,
    Path(method): Path<String>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let jwt = headers.get("authorization").and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    let now =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
    let claims = match jwt.map(|t| token::decode(&s.creds.api_secret, t, now)) {
        Some(Ok(c)) if c.iss == s.creds.api_key => c,
        _ => return twirp_error(StatusCode::UNAUTHORIZED, "unauthenticated", "invalid token"),
    };
    let mut inner = s.inner.lock().unwrap_or_else(|e| e.into_inner());
    inner.calls.push((method.clone(), body.clone()));
    if inner.fail_next > 0 {
        inner.fail_next -= 1;
        return twirp_error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "try again");
    }
    let room = body.get("room").or_else(|| body.get("name")).and_then(|r| r.as_str()).unwrap_or("").to_string();
    let g = &claims.video;
    let allowed = match method.as_str() {
        "CreateRoom" | "DeleteRoom" => g.room_create,
        "ListRooms" => g.room_list,
        _ => g.room_admin && g.room == room,
    };
    if !allowed {
        return twirp_error(StatusCode::FORBIDDEN, "permission_denied", "the token lacks the grant");
    }
    match method.as_str() {
        "CreateRoom" => {
            inner.rooms.entry(room.clone()).or_default();
            Json(json!({ "name": room, "sid": format!("RM_{}", room.len()), "empty_timeout": body["empty_timeout"] }))
                .into_response()
        }
        "DeleteRoom" => match inner.rooms.remove(&room) {
            Some(_) => Json(json!({})).into_response(),
            None => twirp_error(StatusCode::NOT_FOUND, "not_found", "no such room"),
        },
        "ListParticipants" => {
            let list: Vec<Value> = inner
                .rooms
                .get(&room)
                .map(|p| p.iter().map(|i| json!({ "identity": i, "state": "ACTIVE" })).collect())
                .unwrap_or_default();
            Json(json!({ "participants": list })).into_response()
        }
        "MutePublishedTrack" => {
            let identity = body.get("identity").and_then(|i| i.as_str()).unwrap_or("").to_string();
            let present = inner.rooms.get(&room).is_some_and(|p| p.contains(&identity));
            if !present {
                return twirp_error(StatusCode::NOT_FOUND, "not_found", "participant not found");
            }
            let track = body.get("track_sid").and_then(|t| t.as_str()).unwrap_or("").to_string();
            let muted = body.get("muted").and_then(|m| m.as_bool()).unwrap_or(false);
            inner.muted.push((room.clone(), identity, track.clone(), muted));
            Json(json!({ "track": { "sid": track, "muted": muted } })).into_response()
        }
        "RemoveParticipant" => {
            let identity = body.get("identity").and_then(|i| i.as_str()).unwrap_or("");
            match inner.rooms.get_mut(&room).map(|p| p.remove(identity)) {
                Some(true) => Json(json!({})).into_response(),
                _ => twirp_error(StatusCode::NOT_FOUND, "not_found", "participant not found"),
            }
        }
        _ => twirp_error(StatusCode::NOT_FOUND, "bad_route", "no such method"),
    }
}

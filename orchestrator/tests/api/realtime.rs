//! The real-time layer through real WebSocket clients: rooms, presence, chat, whiteboard, hands,
//! live attendance and pushes, recovery after a reconnect, consent kicks, bad input and slow consumers.

use std::time::Duration;

use chrono::Duration as ChronoDuration;
use futures::{SinkExt, StreamExt};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, tungstenite::Message};

use crate::{
    classes::{School, meetings, school},
    helpers::{Session, TestApp},
};

type Ws = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

pub struct Client {
    pub ws: Ws,
    next_id: u64,
    /// Frames read while waiting for something else, in order.
    pending: std::collections::VecDeque<Value>,
}

impl Client {
    /// A socket on `/ws<query>`, nothing read yet.
    pub async fn open(app: &TestApp, query: &str) -> Client {
        let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/ws{query}", app.addr)).await.expect("ws");
        Client { ws, next_id: 0, pending: Default::default() }
    }

    /// Connected and past the `welcome` and the personal channel's `joined`.
    pub async fn connect(app: &TestApp, token: &str) -> Client {
        let mut c = Client::open(app, &format!("?token={token}")).await;
        let welcome = c.next().await;
        assert_eq!(welcome["type"], "welcome", "{welcome}");
        let joined = c.next().await;
        assert_eq!(joined["type"], "joined", "{joined}");
        assert!(joined["room"].as_str().unwrap().starts_with("user:"));
        c
    }

    /// The next frame (pending first), failing after 5 s.
    pub async fn next(&mut self) -> Value {
        if let Some(v) = self.pending.pop_front() {
            return v;
        }
        self.read().await
    }

    async fn read(&mut self) -> Value {
        loop {
            let msg = tokio::time::timeout(Duration::from_secs(5), self.ws.next())
                .await
                .expect("a frame within 5 s")
                .expect("socket open")
                .expect("frame ok");
            match msg {
                Message::Text(t) => return serde_json::from_str(&t).expect("JSON frame"),
                Message::Close(c) => return json!({"type": "_closed", "frame": format!("{c:?}")}),
                _ => continue,
            }
        }
    }

    /// Reads until `pred` matches, keeping the other frames for later `next` calls.
    pub async fn until(&mut self, pred: impl Fn(&Value) -> bool) -> Value {
        if let Some(i) = self.pending.iter().position(&pred) {
            return self.pending.remove(i).unwrap();
        }
        loop {
            let v = self.read().await;
            if pred(&v) {
                return v;
            }
            self.pending.push_back(v);
        }
    }

    pub async fn send(&mut self, mut msg: Value) -> u64 {
        self.next_id += 1;
        msg["id"] = json!(self.next_id);
        self.ws.send(Message::Text(msg.to_string().into())).await.unwrap();
        self.next_id
    }

    /// Sends and waits for the reply carrying the same id (`joined`, `ack`, `left`, `error`, `pong`).
    pub async fn request(&mut self, msg: Value) -> Value {
        let id = self.send(msg).await;
        self.until(|v| v["id"] == id).await
    }

    pub async fn join(&mut self, room: &str) -> Value {
        self.request(json!({"type": "join", "room": room})).await
    }

    /// The next room publication of `kind` in `room`.
    pub async fn message(&mut self, room: &str, kind: &str) -> Value {
        self.until(|v| v["type"] == "message" && v["room"] == room && v["data"]["kind"] == kind).await
    }
}

/// An active class with its first meeting open for attendance; returns the meeting's room.
pub async fn live_class(app: &TestApp, slug: &str, students: usize) -> (School, String, String) {
    let s = school(app, slug, 3, students).await;
    let res = s.class(app, "group", 2, Some(50), meetings(app, 2, ChronoDuration::minutes(5))).await;
    assert_eq!(res.status, StatusCode::CREATED, "{res:?}");
    let class = res.body["id"].as_str().unwrap().to_string();
    let meeting = res.body["meetings"][0]["id"].as_str().unwrap().to_string();
    for st in &s.students {
        assert_eq!(s.enroll(app, &class, &st.user_id).await.status, StatusCode::CREATED);
    }
    assert_eq!(s.transition(app, &class, "activate").await.status, StatusCode::OK);
    (s, class, format!("meeting:{meeting}"))
}

#[tokio::test]
async fn a_classroom_chats_draws_raises_hands_and_sees_presence() {
    let app = TestApp::spawn().await;
    let (s, _class, room) = live_class(&app, "rt", 2).await;
    let mut tutor = Client::connect(&app, &s.tutor.access).await;
    let joined = tutor.join(&room).await;
    assert_eq!(joined["type"], "joined", "{joined}");
    assert_eq!(joined["presence"].as_array().unwrap().len(), 1);

    let mut a = Client::connect(&app, &s.students[0].access).await;
    let ja = a.join(&room).await;
    assert_eq!(ja["presence"].as_array().unwrap().len(), 2, "{ja}");
    let p = tutor
        .until(|v| v["data"]["kind"] == "presence" && v["data"]["user"]["id"] == s.students[0].user_id.as_str())
        .await;
    assert_eq!(p["data"]["event"], "join");
    // A second device of the same user is one member with two devices, and no second join event.
    let mut a2 = Client::connect(&app, &s.students[0].access).await;
    let ja2 = a2.join(&room).await;
    assert_eq!(ja2["presence_total"], 2, "{ja2}");
    let me = ja2["presence"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["user_id"] == s.students[0].user_id.as_str())
        .unwrap()
        .clone();
    assert_eq!(me["devices"], 2, "{ja2}");

    // Chat: everyone sees it, in offset order, with an ack to the sender.
    let ack = a.request(json!({"type": "chat", "room": room, "text": "hello"})).await;
    assert_eq!(ack["type"], "ack", "{ack}");
    let first = ack["offset"].as_u64().unwrap();
    a.request(json!({"type": "chat", "room": room, "text": "second"})).await;
    for c in [&mut tutor, &mut a2] {
        let m1 = c.message(&room, "chat").await;
        let m2 = c.message(&room, "chat").await;
        assert_eq!((m1["data"]["text"].as_str(), m1["offset"].as_u64()), (Some("hello"), Some(first)));
        assert_eq!((m2["data"]["text"].as_str(), m2["offset"].as_u64()), (Some("second"), Some(first + 1)));
        assert_eq!(m1["data"]["from"]["id"], s.students[0].user_id.as_str());
    }

    // Whiteboard: ops are sequenced; a late joiner gets the snapshot and converges.
    let put = |key: &str, x: i64| json!({"type": "draw", "room": room, "op": {"action": "put", "key": key, "object": {"shape": "line", "x": x}}});
    tutor.request(put("l1", 1)).await;
    tutor.request(put("l2", 2)).await;
    a.request(json!({"type": "draw", "room": room, "op": {"action": "delete", "key": "l1"}})).await;
    let seen = a2.message(&room, "draw").await;
    assert_eq!(seen["data"]["op"]["key"], "l1");
    let mut b = Client::connect(&app, &s.students[1].access).await;
    let jb = b.join(&room).await;
    assert_eq!(jb["presence_total"], 3, "{jb}");
    let keys: Vec<_> =
        jb["board"]["objects"].as_array().unwrap().iter().map(|o| o["key"].as_str().unwrap().to_string()).collect();
    assert_eq!(keys, ["l2"], "{jb}");
    assert_eq!(jb["board"]["objects"][0]["object"]["x"], 2);
    // History for the late joiner includes the chat.
    let texts: Vec<_> = jb["history"].as_array().unwrap().iter().filter_map(|h| h["data"]["text"].as_str()).collect();
    assert_eq!(texts, ["hello", "second"]);

    // Hands and reactions.
    b.request(json!({"type": "hand", "room": room, "raised": true})).await;
    let h = tutor.message(&room, "hand").await;
    assert_eq!(
        (h["data"]["user"]["id"].as_str(), h["data"]["raised"].as_bool()),
        (Some(s.students[1].user_id.as_str()), Some(true))
    );
    b.request(json!({"type": "react", "room": room, "emoji": "👏"})).await;
    let r = tutor.message(&room, "reaction").await;
    assert_eq!((r["data"]["emoji"].as_str(), r["offset"].as_u64()), (Some("👏"), Some(0)), "reactions are ephemeral");

    // Leaving: one device leaving keeps the member; the last one leaving announces it.
    a2.request(json!({"type": "leave", "room": room})).await;
    a.request(json!({"type": "leave", "room": room})).await;
    let left = tutor
        .until(|v| v["type"] == "message" && v["data"]["kind"] == "presence" && v["data"]["event"] == "leave")
        .await;
    assert_eq!(left["data"]["user"]["id"], s.students[0].user_id.as_str());

    // Chat is persisted (in batches) and readable over HTTP.
    let meeting = room.strip_prefix("meeting:").unwrap();
    let mut persisted = Value::Null;
    for _ in 0..50 {
        persisted = app.get(&format!("/api/v1/meetings/{meeting}/chat"), &s.tutor.access).await.body;
        if persisted.as_array().is_some_and(|a| a.len() == 2) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(persisted[1]["text"], "second", "{persisted}");
}

#[tokio::test]
async fn joins_are_authorised_and_bad_frames_answered() {
    let app = TestApp::spawn().await;
    let (s, _class, room) = live_class(&app, "auth", 1).await;
    let outsider = app.user(&s.t, "student", "outsider", Some("2000-01-01")).await;
    let mut c = Client::connect(&app, &outsider.access).await;
    let e = c.join(&room).await;
    assert_eq!((e["type"].as_str(), e["code"].as_str()), (Some("error"), Some("forbidden")), "{e}");
    let e = c.join(&format!("user:{}", s.students[0].user_id)).await;
    assert_eq!(e["code"], "forbidden");
    let e = c.join("somewhere").await;
    assert_eq!(e["code"], "unknown_room");
    let other = app.tenant("auth-other").await;
    let e = c.join(&format!("lobby:{}:hall", other.id)).await;
    assert_eq!(e["code"], "forbidden");
    assert_eq!(c.join(&format!("lobby:{}:hall", s.t.id)).await["type"], "joined");
    // Chat without joining; garbage; unknown types: error frames, the connection stays up.
    let e = c.request(json!({"type": "chat", "room": room, "text": "hi"})).await;
    assert_eq!(e["code"], "not_joined");
    c.ws.send(Message::Text("{not json".into())).await.unwrap();
    assert_eq!(c.until(|v| v["type"] == "error").await["code"], "bad_frame");
    let e = c.request(json!({"type": "launch_rockets"})).await;
    assert_eq!(e["code"], "bad_frame", "{e}");
    let e = c.request(json!({"type": "command", "room": room, "name": "mark_attendance", "args": {}})).await;
    assert_eq!(e["code"], "not_joined");
    assert_eq!(c.request(json!({"type": "ping"})).await["type"], "pong");

    // A student can't run commands; a bad token never gets in.
    let mut st = Client::connect(&app, &s.students[0].access).await;
    st.join(&room).await;
    let e = st
        .request(json!({"type": "command", "room": room, "name": "mark_attendance",
        "args": {"student_id": s.students[0].user_id, "status": "present"}}))
        .await;
    assert_eq!(e["code"], "forbidden", "{e}");
    let mut ws = Client::open(&app, "?token=nope").await.ws;
    let first = ws.next().await.unwrap().unwrap();
    assert!(first.to_text().unwrap().contains("invalid_token"), "{first:?}");
    let close = ws.next().await.unwrap().unwrap();
    assert!(matches!(close, Message::Close(Some(ref f)) if u16::from(f.code) == 4001), "{close:?}");
}

#[tokio::test]
async fn attendance_marked_live_reaches_the_room_and_the_student() {
    let app = TestApp::spawn().await;
    let (s, _class, room) = live_class(&app, "live", 1).await;
    let mut tutor = Client::connect(&app, &s.tutor.access).await;
    tutor.join(&room).await;
    let mut stu = Client::connect(&app, &s.students[0].access).await;
    stu.join(&room).await;
    let ack = tutor
        .request(json!({"type": "command", "room": room, "name": "mark_attendance",
            "args": {"student_id": s.students[0].user_id, "status": "present"}}))
        .await;
    assert_eq!(ack["type"], "ack", "{ack}");
    let seen = stu.message(&room, "attendance").await;
    assert_eq!(
        (seen["data"]["status"].as_str(), seen["data"]["student_id"].as_str()),
        (Some("present"), Some(s.students[0].user_id.as_str()))
    );
    let me = format!("user:{}", s.students[0].user_id);
    // (The enrollment's grant may arrive live too, depending on when the outbox dispatched it.)
    let credits = stu
        .until(|v| v["room"] == me.as_str() && v["data"]["kind"] == "credits" && v["data"]["reason"] == "attendance")
        .await;
    assert_eq!(credits["data"]["balance"], 1, "{credits}");
    let xp = stu.message(&me, "xp").await;
    assert_eq!(xp["data"]["amount"], 10, "{xp}");
    let badge = stu.message(&me, "badge").await;
    assert_eq!(badge["data"]["badge"], "first_lesson");
    // The same rules as HTTP: a bad status is refused with the domain's code.
    let e = tutor
        .request(json!({"type": "command", "room": room, "name": "mark_attendance",
            "args": {"student_id": s.tutor.user_id, "status": "present"}}))
        .await;
    assert_eq!(e["code"], "not_enrolled", "{e}");
    // Lesson state and unlocks are pushed too.
    tutor.request(json!({"type": "command", "room": room, "name": "lesson_state", "args": {"state": "started"}})).await;
    assert_eq!(stu.message(&room, "lesson").await["data"]["state"], "started");
    let lesson = s.course["lessons"][0]["id"].as_str().unwrap();
    let class_id = seen["data"]["class_id"].as_str().unwrap();
    app.post(&format!("/api/v1/classes/{class_id}/unlocks"), Some(&s.tutor.access), json!({"lesson_id": lesson})).await;
    assert_eq!(stu.message(&me, "unlock").await["data"]["lesson_id"], lesson);
}

#[tokio::test]
async fn a_reconnecting_client_recovers_exactly_what_it_missed() {
    let app = TestApp::spawn().await;
    let (s, _class, room) = live_class(&app, "rec", 2).await;
    let mut talker = Client::connect(&app, &s.students[0].access).await;
    talker.join(&room).await;
    let mut listener = Client::connect(&app, &s.students[1].access).await;
    let j = listener.join(&room).await;
    let epoch = j["position"]["epoch"].as_str().unwrap().to_string();
    talker.request(json!({"type": "chat", "room": room, "text": "before"})).await;
    let seen = listener.message(&room, "chat").await;
    let last = seen["offset"].as_u64().unwrap();
    listener.ws.close(None).await.unwrap();
    drop(listener);

    for i in 0..5 {
        talker.request(json!({"type": "chat", "room": room, "text": format!("missed {i}")})).await;
    }
    let mut back = Client::connect(&app, &s.students[1].access).await;
    let j = back.request(json!({"type": "join", "room": room, "recover": {"epoch": epoch, "offset": last}})).await;
    assert_eq!(j["recovered"], true, "{j}");
    let got: Vec<_> = j["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| (h["offset"].as_u64().unwrap(), h["data"]["text"].as_str().unwrap().to_string()))
        .collect();
    assert_eq!(got.len(), 5, "{got:?}");
    for (i, (offset, text)) in got.iter().enumerate() {
        assert_eq!((*offset, text.as_str()), (last + 1 + i as u64, format!("missed {i}").as_str()));
    }
    // After recovery, live messages continue without gaps or repeats.
    talker.request(json!({"type": "chat", "room": room, "text": "after"})).await;
    let next = back.message(&room, "chat").await;
    assert_eq!((next["offset"].as_u64(), next["data"]["text"].as_str()), (Some(last + 6), Some("after")));
    // A position from another epoch can't be recovered.
    back.request(json!({"type": "leave", "room": room})).await;
    let id = back.send(json!({"type": "join", "room": room, "recover": {"epoch": "stale", "offset": 1}})).await;
    let nr = back.until(|v| v["type"] == "not_recoverable").await;
    assert_eq!(nr["position"]["offset"].as_u64(), Some(last + 6));
    let j = back.until(|v| v["id"] == id).await;
    assert_eq!(j["recovered"], false);
}

#[tokio::test]
async fn a_client_joins_its_room_as_it_connects_and_recovers_through_the_auth_frame() {
    let app = TestApp::spawn().await;
    let (s, _class, room) = live_class(&app, "atconnect", 1).await;
    let mut tutor = Client::connect(&app, &s.tutor.access).await;
    tutor.join(&room).await;
    let student = &s.students[0];
    let mut c = Client::open(&app, &format!("?token={}&join={room}", student.access)).await;
    assert_eq!(c.next().await["type"], "welcome");
    assert_eq!(c.next().await["room"], format!("user:{}", student.user_id));
    let j = c.next().await;
    assert_eq!(
        (j["type"].as_str(), j["room"].as_str(), j.get("id")),
        (Some("joined"), Some(room.as_str()), None),
        "{j}"
    );
    assert_eq!(j["presence_total"], 2, "the tutor and the student: {j}");
    let arrived =
        tutor.until(|v| v["data"]["kind"] == "presence" && v["data"]["user"]["id"] == student.user_id.as_str()).await;
    assert_eq!(arrived["data"]["event"], "join", "a join at connect is announced like any other");
    c.request(json!({"type": "chat", "room": room, "text": "hello"})).await;
    let heard = tutor.message(&room, "chat").await;
    let (epoch, last) = (j["position"]["epoch"].as_str().unwrap().to_string(), heard["offset"].as_u64().unwrap());
    c.ws.close(None).await.unwrap();
    drop(c);

    for i in 0..3 {
        tutor.request(json!({"type": "chat", "room": room, "text": format!("missed {i}")})).await;
    }
    // Without the token in the URL, the auth frame carries the join and the position to recover from.
    let mut back = Client::open(&app, "").await;
    let auth =
        json!({"type": "auth", "token": student.access, "join": room, "recover": {"epoch": epoch, "offset": last}});
    back.ws.send(Message::Text(auth.to_string().into())).await.unwrap();
    assert_eq!(back.next().await["type"], "welcome");
    assert_eq!(back.next().await["type"], "joined");
    let j = back.next().await;
    assert_eq!((j["room"].as_str(), j["recovered"].as_bool()), (Some(room.as_str()), Some(true)), "{j}");
    let texts: Vec<_> = j["history"].as_array().unwrap().iter().map(|h| h["data"]["text"].as_str().unwrap()).collect();
    assert_eq!(texts, ["missed 0", "missed 1", "missed 2"]);

    // A refused join at connect is an error naming the room; the connection stays, in its personal channel.
    let other = app.tenant("atconnect-other").await;
    let foreign = format!("lobby:{}:hall", other.id);
    let mut denied = Client::open(&app, &format!("?token={}&join={foreign}", student.access)).await;
    assert_eq!(denied.next().await["type"], "welcome");
    assert_eq!(denied.next().await["type"], "joined");
    let e = denied.next().await;
    assert_eq!(
        (e["type"].as_str(), e["code"].as_str(), e["room"].as_str()),
        (Some("error"), Some("forbidden"), Some(foreign.as_str())),
        "{e}"
    );
    assert_eq!(denied.request(json!({"type": "ping"})).await["type"], "pong");
    let mut empty = Client::open(&app, &format!("?token={}&join=", student.access)).await;
    assert_eq!(empty.until(|v| v["type"] == "error").await["code"], "bad_room");
}

#[tokio::test]
async fn revoking_consent_removes_a_minor_from_the_room_at_once() {
    let app = TestApp::spawn().await;
    let s = school(&app, "kick", 2, 0).await;
    let (kid, parent) = app.minor_with_parent(&s.t, "kid", "mum").await;
    app.grant_consent(&s.t, &parent, &kid, &["live_video"], "signed_form").await;
    let res = s.class(&app, "group", 1, Some(5), meetings(&app, 1, ChronoDuration::minutes(5))).await;
    let class = res.body["id"].as_str().unwrap().to_string();
    let room = format!("meeting:{}", res.body["meetings"][0]["id"].as_str().unwrap());
    assert_eq!(s.enroll(&app, &class, &kid.user_id).await.status, StatusCode::CREATED);
    s.transition(&app, &class, "activate").await;

    let mut child = Client::connect(&app, &kid.access).await;
    let j = child.join(&room).await;
    assert_eq!(j["type"], "joined", "{j}");
    let e = child.request(json!({"type": "chat", "room": room, "text": "hi"})).await;
    assert_eq!(e["code"], "forbidden", "no chat consent: read-only chat");

    let res = app
        .post(
            &format!("/api/v1/users/{}/consents/revoke", kid.user_id),
            Some(&parent.access),
            json!({"scopes": ["live_video"]}),
        )
        .await;
    assert_eq!(res.status, StatusCode::OK, "{res:?}");
    let kicked = child.until(|v| v["type"] == "kicked").await;
    assert_eq!((kicked["room"].as_str(), kicked["reason"].as_str()), (Some(room.as_str()), Some("consent_revoked")));
    let e = child.join(&room).await;
    assert_eq!(e["code"], "consent_required", "{e}");
}

#[tokio::test]
async fn a_client_that_stops_reading_is_disconnected_not_buffered() {
    let app = TestApp::spawn_with(|c| {
        c.ws_queue_capacity = 16;
        c.ws_messages_per_sec = 100_000;
    })
    .await;
    let t = app.tenant("slow").await;
    let lobby = format!("lobby:{}:hall", t.id);
    let reader_user: Session = app.user(&t, "student", "sleepy", Some("2000-01-01")).await;
    let mut sleepy = Client::connect(&app, &reader_user.access).await;
    sleepy.join(&lobby).await;
    let mut loud = Client::connect(&app, &t.admin.access).await;
    loud.join(&lobby).await;
    // Flood without reading on `sleepy`; `loud` drains its own socket so only `sleepy` backs up.
    let text = "x".repeat(1500);
    let hub = app.state.signaling.hub.clone();
    let mut sent = 0;
    while hub.stats.slow_consumers.load(std::sync::atomic::Ordering::Relaxed) == 0 && sent < 30_000 {
        loud.send(json!({"type": "chat", "room": lobby, "text": text})).await;
        sent += 1;
        while let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(0), loud.ws.next()).await {}
    }
    assert!(hub.stats.slow_consumers.load(std::sync::atomic::Ordering::Relaxed) > 0, "after {sent} messages");
    // The slow client's connection ends (a close frame if it could still be written, else EOF).
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match sleepy.ws.next().await {
                None | Some(Err(_)) => return "eof".to_string(),
                Some(Ok(Message::Close(f))) => return format!("{f:?}"),
                Some(Ok(_)) => continue,
            }
        }
    })
    .await
    .expect("the slow connection ended");
    assert!(ended == "eof" || ended.contains("4008"), "{ended}");
    assert_eq!(hub.local_members(&lobby), 1, "only the fast client remains");
}

#[tokio::test]
async fn connections_opened_together_do_not_heartbeat_together() {
    // With a 2 s heartbeat, each connection's first ping comes at its own point between 1 and 3 s after it
    // opened, not all at 2 s: otherwise a class that starts together pings and refreshes presence in one
    // wave for as long as it lasts.
    let app = TestApp::spawn_with(|c| c.ws_heartbeat_secs = 2).await;
    let s = school(&app, "beat", 1, 0).await;
    let mut clients = Vec::new();
    for _ in 0..12 {
        let c = Client::connect(&app, &s.tutor.access).await;
        clients.push((c, tokio::time::Instant::now()));
    }
    let mut after_open = futures::future::join_all(clients.into_iter().map(|(mut c, opened)| async move {
        loop {
            let msg = tokio::time::timeout(Duration::from_secs(5), c.ws.next()).await.expect("a ping within 5 s");
            if let Some(Ok(Message::Ping(_))) = msg {
                return opened.elapsed();
            }
            assert!(matches!(msg, Some(Ok(_))), "socket closed: {msg:?}");
        }
    }))
    .await;
    after_open.sort();
    let (first, last) = (after_open[0], after_open[after_open.len() - 1]);
    assert!(first >= Duration::from_millis(950), "no ping before half an interval: {after_open:?}");
    assert!(last <= Duration::from_millis(3100), "every first ping within 1.5 intervals: {after_open:?}");
    assert!(last - first >= Duration::from_millis(800), "spread over a whole interval: {after_open:?}");
}

#[tokio::test]
async fn a_join_lists_a_bounded_presence_snapshot() {
    let app = TestApp::spawn_with(|c| c.ws_presence_snapshot_limit = 2).await;
    let (s, _class, room) = live_class(&app, "snap", 3).await;
    let mut clients = Vec::new();
    for st in &s.students {
        let mut c = Client::connect(&app, &st.access).await;
        c.join(&room).await;
        clients.push(c);
    }
    let mut tutor = Client::connect(&app, &s.tutor.access).await;
    let j = tutor.join(&room).await;
    assert_eq!(j["presence_total"], 4, "{j}");
    let listed: Vec<_> =
        j["presence"].as_array().unwrap().iter().map(|m| m["user_id"].as_str().unwrap().to_string()).collect();
    assert_eq!(listed.len(), 2, "{j}");
    assert!(listed[0] < listed[1], "listed in user id order");
}

#[tokio::test]
async fn a_parent_follows_their_child_live_and_hears_of_consent_requests() {
    let app = TestApp::spawn().await;
    let s = school(&app, "pl", 2, 0).await;
    let (child, parent) = app.minor_with_parent(&s.t, "kid", "mum").await;
    let mut mum = Client::connect(&app, &parent.access).await;
    app.grant_consent(&s.t, &parent, &child, &["live_video"], "credit_card").await;
    let consent = mum.until(|v| v["data"]["kind"] == "consent").await;
    assert_eq!(consent["data"]["event"], "ConsentGranted", "{consent}");

    let res = s.class(&app, "group", 2, Some(10), meetings(&app, 2, ChronoDuration::minutes(5))).await;
    let class = res.body["id"].as_str().unwrap().to_string();
    let meeting = res.body["meetings"][0]["id"].as_str().unwrap().to_string();
    assert_eq!(s.enroll(&app, &class, &child.user_id).await.status, StatusCode::CREATED);
    assert_eq!(s.transition(&app, &class, "activate").await.status, StatusCode::OK);

    // Asked for another scope: the parent is told at once.
    let req = app
        .post(
            "/api/v1/consent-requests",
            Some(&s.t.admin.access),
            json!({"child_id": child.user_id, "scopes": ["chat"]}),
        )
        .await;
    assert_eq!(req.status, StatusCode::CREATED, "{req:?}");
    let asked = mum.until(|v| v["data"]["kind"] == "consent_requested" && v["data"]["scopes"] == json!(["chat"])).await;
    assert_eq!((&asked["data"]["request_id"], &asked["data"]["child_id"]), (&req.body["id"], &json!(child.user_id)));

    // The child is marked present: the parent sees the mark and the credit, naming the child.
    let marked = crate::classes::mark(&app, &s.tutor.access, &meeting, &child.user_id, "present").await;
    assert_eq!(marked.status, StatusCode::OK, "{marked:?}");
    let attendance = mum.until(|v| v["data"]["kind"] == "attendance").await;
    assert_eq!(
        (&attendance["data"]["child_id"], &attendance["data"]["status"]),
        (&json!(child.user_id), &json!("present"))
    );
    let credits = mum.until(|v| v["data"]["kind"] == "credits" && v["data"]["reason"] == "attendance").await;
    assert_eq!((&credits["data"]["child_id"], &credits["data"]["balance"]), (&json!(child.user_id), &json!(1)));
}

//! Class meetings in media: join tokens by the class's rules inside the meeting window, and the attendance
//! proposal built from LiveKit's participant webhooks (reconnects merged, late joiners marked late).

use chrono::Duration;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::{helpers::TestApp, realtime::live_class};

const KEY: &str = "APImeet";
const SECRET: &str = "lk-secret-meetings-0123456789";

#[tokio::test]
async fn meeting_tokens_follow_the_class_and_the_proposal_follows_who_was_there() {
    let app = TestApp::spawn_with(|c| {
        c.livekit_url = Some("wss://media.liveclass.test".into());
        c.livekit_api_key = Some(KEY.into());
        c.livekit_api_secret = Some(orchestrator::config::Secret::new(SECRET));
        c.access_token_ttl_secs = 24 * 3600;
    })
    .await;
    // The first meeting starts in 5 minutes and lasts an hour; three adult students are enrolled.
    let (s, _class, room) = live_class(&app, "meetmedia", 3).await;
    let meeting = room.strip_prefix("meeting:").unwrap().to_string();
    let join = async |token: &str| app.post(&format!("/api/v1/meetings/{meeting}/join"), Some(token), json!({})).await;
    let res = join(&s.tutor.access).await;
    assert_eq!(res.status, StatusCode::OK, "{res:?}");
    let now = app.clock_now().timestamp();
    let tutor = rooms::token::decode(SECRET, res.body["token"].as_str().unwrap(), now + 1).unwrap();
    assert_eq!(tutor.video.room, room);
    assert!(tutor.video.room_admin && tutor.video.can_publish);
    let student =
        rooms::token::decode(SECRET, join(&s.students[0].access).await.body["token"].as_str().unwrap(), now + 1)
            .unwrap();
    assert!(student.video.can_publish && !student.video.room_admin);
    let outsider = app.user(&s.t, "student", "outsider", Some("2000-01-01")).await;
    assert_eq!(join(&outsider.access).await.code(), "forbidden");

    // LiveKit reports: student 0 on time (with a 30 s reconnect), student 1 twenty minutes late, student 2 never.
    let creds = rooms::Credentials { api_key: KEY.into(), api_secret: SECRET.into() };
    let mut n = 0;
    let mut hook = async |kind: &str, who: Option<&str>| {
        n += 1;
        let mut body = json!({"event": kind, "id": format!("EV_{n}"), "room": {"name": room}});
        if let Some(w) = who {
            body["participant"] = json!({"identity": w});
        }
        let body = body.to_string();
        let auth = rooms::webhook::sign(body.as_bytes(), &creds, app.clock_now().timestamp());
        let res = app
            .http
            .post(format!("{}/api/v1/webhooks/livekit", app.base))
            .header("authorization", auth)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
    };
    let (s0, s1) = (s.students[0].user_id.clone(), s.students[1].user_id.clone());
    // The instructor's arrival in the media room starts the meeting, live in the real-time room.
    let mut ws = crate::realtime::Client::connect(&app, &s.students[2].access).await;
    assert_eq!(ws.join(&room).await["type"], "joined");
    app.advance(Duration::minutes(4));
    hook("participant_joined", Some(&s.tutor.user_id.clone())).await;
    let started = ws.message(&room, "lesson").await;
    assert_eq!(started["data"]["state"], "started", "{started}");
    hook("participant_joined", Some(&s0)).await;
    app.advance(Duration::minutes(10));
    hook("participant_left", Some(&s0)).await;
    app.advance(Duration::seconds(30));
    hook("participant_joined", Some(&s0)).await;
    app.advance(Duration::minutes(10));
    hook("participant_joined", Some(&s1)).await;
    app.advance(Duration::minutes(50));
    hook("room_finished", None).await;

    let res = app.get(&format!("/api/v1/meetings/{meeting}/attendance/proposal"), &s.tutor.access).await;
    assert_eq!(res.status, StatusCode::OK, "{res:?}");
    assert_eq!(res.body["late_after_minutes"], 10, "the tenant policy's default");
    let marks: Vec<(String, String, i64)> = res.body["marks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["student_id"].as_str().unwrap().into(),
                m["status"].as_str().unwrap().into(),
                m["minutes_attended"].as_i64().unwrap(),
            )
        })
        .collect();
    let of = |id: &str| marks.iter().find(|m| m.0 == id).map(|m| (m.1.clone(), m.2)).unwrap();
    assert_eq!(of(&s0), ("present".into(), 60), "the reconnect's gap merged away: {marks:?}");
    assert_eq!(of(&s1), ("late".into(), 40), "{marks:?}");
    assert_eq!(of(&s.students[2].user_id), ("absent".into(), 0));
    let s0_mark =
        res.body["marks"].as_array().unwrap().iter().find(|m| m["student_id"] == s0.as_str()).unwrap().clone();
    assert_eq!(s0_mark["segments"].as_array().map(Vec::len), Some(1), "one merged segment: {s0_mark}");
    let res = app.get(&format!("/api/v1/meetings/{meeting}/attendance/proposal"), &s.students[0].access).await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
    let _: Value = res.body;
}

#[tokio::test]
async fn the_sweep_closes_segments_of_participants_livekit_no_longer_has() {
    let creds = rooms::Credentials { api_key: KEY.into(), api_secret: SECRET.into() };
    let fake = rooms::fake::FakeLiveKit::start(creds.clone()).await;
    let url = fake.url();
    let app = TestApp::spawn_with(|c| {
        c.livekit_url = Some(url);
        c.livekit_api_key = Some(KEY.into());
        c.livekit_api_secret = Some(orchestrator::config::Secret::new(SECRET));
        c.access_token_ttl_secs = 24 * 3600;
    })
    .await;
    let (s, _class, room) = live_class(&app, "meetsweep", 2).await;
    let meeting = room.strip_prefix("meeting:").unwrap().to_string();
    app.advance(Duration::minutes(5));
    for (i, st) in s.students.iter().enumerate() {
        let body = json!({"event": "participant_joined", "id": format!("EV_{i}"), "room": {"name": room},
                          "participant": {"identity": st.user_id}})
        .to_string();
        let auth = rooms::webhook::sign(body.as_bytes(), &creds, app.clock_now().timestamp());
        let res = app
            .http
            .post(format!("{}/api/v1/webhooks/livekit", app.base))
            .header("authorization", auth)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
    }
    // Only student 0 is really still there; student 1's `participant_left` was lost.
    fake.connect(&room, &s.students[0].user_id);
    app.advance(Duration::minutes(20));
    let closed =
        orchestrator::media::reconcile_once(&app.state.db, app.state.media.as_ref(), app.clock_now()).await.unwrap();
    assert_eq!(closed, 1);
    app.advance(Duration::minutes(40));
    let res = app.get(&format!("/api/v1/meetings/{meeting}/attendance/proposal"), &s.tutor.access).await;
    let minutes = |id: &str| {
        res.body["marks"].as_array().unwrap().iter().find(|m| m["student_id"] == id).unwrap()["minutes_attended"]
            .as_i64()
    };
    assert_eq!(minutes(&s.students[0].user_id), Some(60), "{res:?}");
    assert_eq!(minutes(&s.students[1].user_id), Some(20), "closed by the sweep: {res:?}");
}

type SfuConn = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Someone in the embedded SFU's room: its signal connection, open until dropped.
async fn sfu_join(app: &TestApp, meeting: &str, token: &str) -> SfuConn {
    let res = app.post(&format!("/api/v1/meetings/{meeting}/join"), Some(token), json!({})).await;
    assert_eq!((res.status, res.body["backend"].as_str()), (StatusCode::OK, Some("embedded")), "{res:?}");
    let url =
        format!("{}/rtc/v1?access_token={}", res.body["url"].as_str().unwrap(), res.body["token"].as_str().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.expect("the SFU accepts the join token");
    // The first frame is the JoinResponse: binary protobuf.
    let first = futures::StreamExt::next(&mut ws).await.unwrap().unwrap();
    assert!(matches!(first, tokio_tungstenite::tungstenite::Message::Binary(_)), "{first:?}");
    ws
}

/// The proposal's (status, segments) per student, once `done` holds (presence events land asynchronously).
async fn proposal_when(app: &TestApp, meeting: &str, token: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let res = app.get(&format!("/api/v1/meetings/{meeting}/attendance/proposal"), token).await;
        assert_eq!(res.status, StatusCode::OK, "{res:?}");
        if done(&res.body) {
            return res.body;
        }
        assert!(tokio::time::Instant::now() < deadline, "presence never showed: {}", res.body);
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

fn mark<'a>(proposal: &'a Value, student: &str) -> &'a Value {
    proposal["marks"].as_array().unwrap().iter().find(|m| m["student_id"] == student).unwrap()
}

#[tokio::test]
async fn the_embedded_sfu_reports_presence_as_livekit_does_and_the_proposal_follows_it() {
    // The default media backend: no LiveKit configured.
    let app = TestApp::spawn_with(|c| c.access_token_ttl_secs = 24 * 3600).await;
    let (s, _class, room) = live_class(&app, "sfumeet", 3).await;
    let meeting = room.strip_prefix("meeting:").unwrap().to_string();
    let (s0, s1, s2) = (s.students[0].user_id.clone(), s.students[1].user_id.clone(), s.students[2].user_id.clone());
    let mut watcher = crate::realtime::Client::connect(&app, &s.students[2].access).await;
    assert_eq!(watcher.join(&room).await["type"], "joined");

    // The instructor enters the media room: the meeting starts, live in the real-time room.
    let tutor = sfu_join(&app, &meeting, &s.tutor.access).await;
    let started = watcher.message(&room, "lesson").await;
    assert_eq!(started["data"]["state"], "started", "{started}");
    // Student 0 comes at once; student 1 joins twenty minutes late (the clock moves once each is in).
    let first = sfu_join(&app, &meeting, &s.students[0].access).await;
    proposal_when(&app, &meeting, &s.tutor.access, |p| {
        mark(p, &s0)["segments"].as_array().is_some_and(|v| !v.is_empty())
    })
    .await;
    app.advance(Duration::minutes(20));
    let late = sfu_join(&app, &meeting, &s.students[1].access).await;
    proposal_when(&app, &meeting, &s.tutor.access, |p| {
        mark(p, &s1)["segments"].as_array().is_some_and(|v| !v.is_empty())
    })
    .await;
    app.advance(Duration::minutes(40));
    // The SFU's own counters are on /metrics.
    let text = app.request(reqwest::Method::GET, "/metrics", None, None, &[]).await.text;
    assert!(text.contains("liveclass_sfu_participants 3"), "{text}");
    assert!(text.contains("liveclass_sfu_forwarded_frames_total 0"), "{text}");
    // Everyone leaves: their segments close where they left, even as the clock runs on.
    drop((first, late, tutor));
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while !app.state.media.participants(&room).await.unwrap().is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "the SFU still lists participants");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    app.advance(Duration::minutes(30));
    let p = proposal_when(&app, &meeting, &s.tutor.access, |p| mark(p, &s1)["minutes_attended"] == 40).await;
    assert_eq!(mark(&p, &s0)["status"], "present", "{p}");
    assert_eq!(mark(&p, &s1)["status"], "late", "{p}");
    assert_eq!(mark(&p, &s2)["status"], "absent", "{p}");
    assert_eq!(mark(&p, &s2)["minutes_attended"], 0, "{p}");
}

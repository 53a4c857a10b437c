//! The embedded SFU's signal side, driven as a LiveKit client drives it: HTTP checks on `/rtc/v1/validate`
//! and `/rtc`, then WebSocket sessions with binary protobuf frames. The client offers are made by str0m
//! acting as the client, so the slot filling is checked on real SDP. (Media itself is covered by the
//! official SDK test in `tests/sdk/`.)

use std::{net::SocketAddr, time::Duration};

use base64::Engine as _;
use futures::{SinkExt, StreamExt};
use livekit_protocol as lk;
use lk::signal_request::Message as Req;
use lk::signal_response::Message as Resp;
use prost::Message as _;
use rooms::{
    Credentials, JoinRequest, MediaBackend, Permissions,
    sfu::{Embedded, Sfu, SfuConfig, SfuEvent},
};
use str0m::{
    Rtc,
    change::{SdpAnswer, SdpPendingOffer},
    media::{Direction, MediaKind},
};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, tungstenite::Message};

type Ws = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

struct Server {
    addr: SocketAddr,
    backend: Embedded,
    events: UnboundedReceiver<SfuEvent>,
}

fn creds() -> Credentials {
    Credentials { api_key: "APItest".into(), api_secret: "sfu-test-secret-0123456789abcdef".into() }
}

async fn server() -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let config = SfuConfig {
        udp_bind: "127.0.0.1:0".parse().unwrap(),
        advertise_ip: "127.0.0.1".parse().unwrap(),
        credentials: creds(),
        url: Some(format!("ws://{addr}")),
        ping_interval_secs: 5,
        ping_timeout_secs: 15,
        unix_now: rooms::sfu::system_unix_now(),
    };
    let (sfu, events) = Sfu::start(config).unwrap();
    let app = rooms::sfu::router::<()>(sfu.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Server { addr, backend: Embedded { sfu }, events }
}

fn token(room: &str, identity: &str, publish: bool) -> String {
    let perms = Permissions { publish, subscribe: true, data: true, admin: false, hidden: false };
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let req = JoinRequest {
        room,
        identity,
        name: identity,
        metadata: "{}".into(),
        permissions: perms,
        now_unix: now,
        ttl_secs: 600,
    };
    creds().mint(&req).0
}

fn join_param(offer: Option<String>) -> String {
    let join = lk::JoinRequest {
        client_info: Some(lk::ClientInfo { protocol: 16, ..Default::default() }),
        connection_settings: Some(lk::ConnectionSettings { auto_subscribe: true, ..Default::default() }),
        publisher_offer: offer.map(|sdp| lk::SessionDescription {
            r#type: "offer".into(),
            sdp,
            id: 1,
            ..Default::default()
        }),
        ..Default::default()
    };
    let wrapped = lk::WrappedJoinRequest { compression: 0, join_request: join.encode_to_vec() };
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(wrapped.encode_to_vec())
}

async fn connect(s: &Server, room: &str, identity: &str, offer: Option<String>) -> Ws {
    let url = format!(
        "ws://{}/rtc/v1?access_token={}&join_request={}",
        s.addr,
        token(room, identity, true),
        join_param(offer)
    );
    tokio_tungstenite::connect_async(url).await.expect("upgrade").0
}

async fn send(ws: &mut Ws, m: Req) {
    let frame = lk::SignalRequest { message: Some(m) }.encode_to_vec();
    ws.send(Message::Binary(frame.into())).await.unwrap();
}

/// The next signal message that `pick` accepts (others are skipped), within 5 s.
async fn next<T>(ws: &mut Ws, what: &str, mut pick: impl FnMut(Resp) -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let frame = tokio::time::timeout_at(deadline, ws.next()).await.unwrap_or_else(|_| panic!("no {what} in 5 s"));
        let Some(Ok(Message::Binary(b))) = frame else { panic!("connection ended waiting for {what}: {frame:?}") };
        let msg = lk::SignalResponse::decode(b.as_ref()).unwrap().message.unwrap();
        if let Some(t) = pick(msg) {
            return t;
        }
    }
}

/// The next SDP answer.
async fn next_answer(ws: &mut Ws) -> lk::SessionDescription {
    next(ws, "answer", |m| if let Resp::Answer(a) = m { Some(a) } else { None }).await
}

/// The next request for more subscriber slots.
async fn slots_wanted(ws: &mut Ws, what: &str) -> lk::MediaSectionsRequirement {
    next(ws, what, |m| match m {
        Resp::MediaSectionsRequirement(r) => Some(r),
        _ => None,
    })
    .await
}

async fn http(s: &Server, path: &str) -> (u16, String) {
    let res = reqwest::get(format!("http://{}{path}", s.addr)).await.unwrap();
    (res.status().as_u16(), res.text().await.unwrap())
}

#[tokio::test]
async fn validate_explains_refusals_and_the_two_pc_mode_is_not_served() {
    let s = server().await;
    let (status, body) = http(&s, "/rtc/v1/validate").await;
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("\"code\":\"unauthorized\""), "{body}");
    let forged = format!("{}x", token("r", "ada", true));
    assert_eq!(http(&s, &format!("/rtc/v1/validate?access_token={forged}")).await.0, 401);
    let ok = http(&s, &format!("/rtc/v1/validate?access_token={}", token("r", "ada", true))).await;
    assert_eq!(ok, (200, "success".to_string()));
    // The older two-PeerConnection mode: 404, so SDKs know to use v1.
    assert_eq!(http(&s, &format!("/rtc?access_token={}", token("r", "ada", true))).await.0, 404);
    // A token for another key pair, and a join request that isn't one.
    let other = Credentials { api_key: "APIother".into(), api_secret: creds().api_secret };
    let req = JoinRequest {
        room: "r",
        identity: "eve",
        name: "",
        metadata: String::new(),
        permissions: Permissions::default(),
        now_unix: 0,
        ttl_secs: i64::MAX / 2,
    };
    assert_eq!(http(&s, &format!("/rtc/v1/validate?access_token={}", other.mint(&req).0)).await.0, 401);
    let (status, body) =
        http(&s, &format!("/rtc/v1?access_token={}&join_request=not-protobuf", token("r", "ada", true))).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("bad_join_request"), "{body}");
}

#[tokio::test]
async fn participants_join_see_each_other_and_leave_and_the_backend_sees_them_too() {
    let mut s = server().await;
    let mut ada = connect(&s, "lesson:1", "ada", None).await;
    let join = next(&mut ada, "join", |m| if let Resp::Join(j) = m { Some(j) } else { None }).await;
    let me = join.participant.unwrap();
    assert!(me.sid.starts_with("PA_") && me.identity == "ada", "{me:?}");
    let room = join.room.unwrap();
    assert!(room.sid.starts_with("RM_") && room.name == "lesson:1");
    let info = join.server_info.unwrap();
    assert!(!info.version.is_empty() && join.ping_interval > 0 && join.ping_timeout > join.ping_interval);

    let mut bob = connect(&s, "lesson:1", "bob", None).await;
    let bob_join = next(&mut bob, "join", |m| if let Resp::Join(j) = m { Some(j) } else { None }).await;
    assert_eq!(bob_join.other_participants.iter().map(|p| p.identity.as_str()).collect::<Vec<_>>(), ["ada"]);
    let seen = next(&mut ada, "bob's arrival", |m| match m {
        Resp::Update(u) => u.participants.into_iter().find(|p| p.identity == "bob"),
        _ => None,
    })
    .await;
    assert_eq!(seen.state, lk::participant_info::State::Joined as i32);
    let mut who = s.backend.participants("lesson:1").await.unwrap();
    who.sort();
    assert_eq!(who, ["ada", "bob"]);

    // Garbage doesn't end the session; pings are answered with the client's timestamp.
    bob.send(Message::Binary(vec![0xff, 0x00, 0x13].into())).await.unwrap();
    send(&mut bob, Req::PingReq(lk::Ping { timestamp: 4242, rtt: 0 })).await;
    let pong = next(&mut bob, "pong", |m| if let Resp::PongResp(p) = m { Some(p) } else { None }).await;
    assert_eq!(pong.last_ping_timestamp, 4242);

    // Bob leaves: Ada is told, and so is the orchestrator.
    send(&mut bob, Req::Leave(lk::LeaveRequest::default())).await;
    let gone = next(&mut ada, "bob's departure", |m| match m {
        Resp::Update(u) => u.participants.into_iter().find(|p| p.identity == "bob" && p.state == 3),
        _ => None,
    })
    .await;
    assert_eq!(gone.sid, bob_join.participant.unwrap().sid);
    let mut events = Vec::new();
    while let Ok(Some(e)) = tokio::time::timeout(Duration::from_millis(200), s.events.recv()).await {
        events.push(e);
    }
    let kinds: Vec<String> = events
        .iter()
        .map(|e| match e {
            SfuEvent::RoomStarted { room } => format!("started {room}"),
            SfuEvent::ParticipantJoined { identity, .. } => format!("joined {identity}"),
            SfuEvent::ParticipantLeft { identity, .. } => format!("left {identity}"),
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(kinds, ["started lesson:1", "joined ada", "joined bob", "left bob"]);

    // Removed by the server: told so, then disconnected.
    s.backend.remove_participant("lesson:1", "ada").await.unwrap();
    let leave = next(&mut ada, "leave", |m| if let Resp::Leave(l) = m { Some(l) } else { None }).await;
    assert_eq!(leave.reason, lk::DisconnectReason::ParticipantRemoved as i32);
    assert!(s.backend.participants("lesson:1").await.unwrap().is_empty());
}

#[tokio::test]
async fn a_resume_attempt_is_told_to_reconnect_from_scratch() {
    let s = server().await;
    let url = format!("ws://{}/rtc/v1?access_token={}&reconnect=1", s.addr, token("r", "ada", true));
    let mut ws = tokio_tungstenite::connect_async(url).await.unwrap().0;
    let leave = next(&mut ws, "leave", |m| if let Resp::Leave(l) = m { Some(l) } else { None }).await;
    assert_eq!(leave.action, lk::leave_request::Action::Reconnect as i32);
    // ...then a normal close: the SDKs take anything else for a dropped connection.
    match ws.next().await {
        Some(Ok(Message::Close(Some(f)))) => assert_eq!(u16::from(f.code), 1000),
        other => panic!("expected a normal close, got {other:?}"),
    }
}

/// A client-side offer made by str0m: `sends` adds a sendonly video m-line with msid track id = that cid;
/// `slots` recvonly video m-lines; always a data channel.
fn client_offer(rtc: &mut Rtc, sends: Option<&str>, slots: usize) -> (String, SdpPendingOffer) {
    let mut api = rtc.sdp_api();
    if let Some(cid) = sends {
        api.add_media(MediaKind::Video, Direction::SendOnly, Some("stream".into()), Some(cid.into()), None);
    }
    for _ in 0..slots {
        api.add_media(MediaKind::Video, Direction::RecvOnly, None, None, None);
    }
    api.add_channel("_reliable".into());
    let (offer, pending) = api.apply().unwrap();
    (offer.to_sdp_string(), pending)
}

/// The answer is one a WebRTC stack takes.
fn accept(rtc: &mut Rtc, pending: SdpPendingOffer, answer: &str) {
    let answer = SdpAnswer::from_sdp_string(answer).unwrap_or_else(|e| panic!("{e}: {answer}"));
    rtc.sdp_api().accept_answer(pending, answer).unwrap_or_else(|e| panic!("answer refused: {e}"));
}

#[tokio::test]
async fn a_published_track_fills_a_slot_the_subscriber_asked_for() {
    let s = server().await;
    // Ada publishes a camera: AddTrack, then the offer carrying it.
    let mut ada_rtc = Rtc::new(std::time::Instant::now());
    let mut ada = connect(&s, "lesson:2", "ada", None).await;
    next(&mut ada, "join", |m| matches!(m, Resp::Join(_)).then_some(())).await;
    let add = lk::AddTrackRequest {
        cid: "cam-1".into(),
        name: "camera".into(),
        r#type: lk::TrackType::Video as i32,
        source: lk::TrackSource::Camera as i32,
        width: 640,
        height: 480,
        ..Default::default()
    };
    send(&mut ada, Req::AddTrack(add)).await;
    let published = next(&mut ada, "track published", |m| match m {
        Resp::TrackPublished(p) => Some(p),
        _ => None,
    })
    .await;
    assert_eq!(published.cid, "cam-1");
    let track = published.track.unwrap().sid;
    assert!(track.starts_with("TR_"), "{track}");
    let (offer, pending) = client_offer(&mut ada_rtc, Some("cam-1"), 0);
    send(
        &mut ada,
        Req::Offer(lk::SessionDescription { r#type: "offer".into(), sdp: offer, id: 7, ..Default::default() }),
    )
    .await;
    let answer = next_answer(&mut ada).await;
    assert_eq!(answer.id, 7);
    accept(&mut ada_rtc, pending, &answer.sdp);

    // Bob joins with one empty slot: the join answer fills it with Ada's camera, named as LiveKit names it.
    let mut bob_rtc = Rtc::new(std::time::Instant::now());
    let (offer, pending) = client_offer(&mut bob_rtc, None, 1);
    let mut bob = connect(&s, "lesson:2", "bob", Some(offer)).await;
    let join = next(&mut bob, "join", |m| if let Resp::Join(j) = m { Some(j) } else { None }).await;
    let ada_info = join.other_participants.iter().find(|p| p.identity == "ada").unwrap().clone();
    assert_eq!(ada_info.tracks.iter().map(|t| t.sid.as_str()).collect::<Vec<_>>(), [track.as_str()]);
    let answer = next_answer(&mut bob).await;
    let msid = format!("a=msid:{}|{track} {track}", ada_info.sid);
    assert!(answer.sdp.contains(&msid), "{}", answer.sdp);
    assert!(answer.sdp.contains("a=sendonly"), "{}", answer.sdp);
    assert_eq!(answer.mid_to_track_id.values().collect::<Vec<_>>(), [&track]);
    accept(&mut bob_rtc, pending, &answer.sdp);

    // Carol joins with no slot: she is asked for one, and her re-offer gets it filled.
    let mut carol_rtc = Rtc::new(std::time::Instant::now());
    let (offer, pending) = client_offer(&mut carol_rtc, None, 0);
    let mut carol = connect(&s, "lesson:2", "carol", Some(offer)).await;
    let answer = next_answer(&mut carol).await;
    accept(&mut carol_rtc, pending, &answer.sdp);
    let need = slots_wanted(&mut carol, "slots wanted").await;
    assert_eq!((need.num_audios, need.num_videos), (0, 1));

    // Dan publishes a camera while the slot Carol was asked for is still on its way: she is asked for one
    // more, not for two (clients add what each requirement says).
    let mut dan_rtc = Rtc::new(std::time::Instant::now());
    let mut dan = connect(&s, "lesson:2", "dan", None).await;
    next(&mut dan, "join", |m| matches!(m, Resp::Join(_)).then_some(())).await;
    let cam = lk::AddTrackRequest { cid: "cam-2".into(), r#type: lk::TrackType::Video as i32, ..Default::default() };
    send(&mut dan, Req::AddTrack(cam)).await;
    next(&mut dan, "track published", |m| matches!(m, Resp::TrackPublished(_)).then_some(())).await;
    let (offer, pending) = client_offer(&mut dan_rtc, Some("cam-2"), 0);
    send(
        &mut dan,
        Req::Offer(lk::SessionDescription { r#type: "offer".into(), sdp: offer, id: 1, ..Default::default() }),
    )
    .await;
    let answer = next_answer(&mut dan).await;
    accept(&mut dan_rtc, pending, &answer.sdp);
    let more = slots_wanted(&mut carol, "one more slot").await;
    assert_eq!((more.num_audios, more.num_videos), (0, 1));
    let (offer, pending) = client_offer(&mut carol_rtc, None, 1);
    send(
        &mut carol,
        Req::Offer(lk::SessionDescription { r#type: "offer".into(), sdp: offer, id: 2, ..Default::default() }),
    )
    .await;
    let answer = next(&mut carol, "answer", |m| match m {
        Resp::Answer(a) if a.id == 2 => Some(a),
        _ => None,
    })
    .await;
    assert!(answer.sdp.contains(&msid), "{}", answer.sdp);
    accept(&mut carol_rtc, pending, &answer.sdp);

    // An offer that contradicts the last one (m-lines reordered) is refused: told to reconnect.
    let mut confused = Rtc::new(std::time::Instant::now());
    let (offer, _) = client_offer(&mut confused, None, 1);
    send(
        &mut carol,
        Req::Offer(lk::SessionDescription { r#type: "offer".into(), sdp: offer, id: 3, ..Default::default() }),
    )
    .await;
    let leave = next(&mut carol, "leave", |m| if let Resp::Leave(l) = m { Some(l) } else { None }).await;
    assert_eq!(leave.action, lk::leave_request::Action::Reconnect as i32);

    // A moderator mutes Ada's camera through the backend: she is told, and so is the room.
    s.backend.mute_track("lesson:2", "ada", &track, true).await.unwrap();
    let told = next(&mut ada, "mute", |m| if let Resp::Mute(m) = m { Some(m) } else { None }).await;
    assert_eq!((told.sid.as_str(), told.muted), (track.as_str(), true));
    let seen = next(&mut bob, "ada's muted camera", |m| match m {
        Resp::Update(u) => u.participants.into_iter().find(|p| p.identity == "ada" && p.tracks.iter().any(|t| t.muted)),
        _ => None,
    })
    .await;
    assert_eq!(seen.tracks[0].sid, track);
    assert!(s.backend.mute_track("lesson:2", "ada", "TR_nothere", true).await.is_err());

    // Ada unpublishes by leaving: the others learn she is gone.
    drop(ada);
    let gone = next(&mut bob, "ada's departure", |m| match m {
        Resp::Update(u) => u.participants.into_iter().find(|p| p.identity == "ada" && p.state == 3),
        _ => None,
    })
    .await;
    assert!(gone.tracks.is_empty());
}

#[tokio::test]
async fn garbage_on_the_media_port_and_the_signal_socket_harms_nobody() {
    let s = server().await;
    let mut ada = connect(&s, "lesson:3", "ada", None).await;
    next(&mut ada, "join", |m| matches!(m, Resp::Join(_)).then_some(())).await;
    // Datagrams of every shape: STUN-looking, DTLS-looking, RTP-looking, empty, random.
    let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for i in 0..2000usize {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let len = (seed as usize) % 1400;
        let mut d: Vec<u8> = (0..len).map(|j| (seed >> (j % 56)) as u8).collect();
        if let Some(first) = d.first_mut() {
            *first = [0x00, 0x01, 0x16, 0x17, 0x80, 0x90, 0xff][i % 7];
        }
        let _ = udp.send_to(&d, s.backend.sfu.media_addr).await;
    }
    // Signal frames that are protobuf-shaped but wrong: an offer that isn't SDP, a trickle that isn't JSON.
    send(
        &mut ada,
        Req::Offer(lk::SessionDescription {
            r#type: "offer".into(),
            sdp: "v=0\r\nnonsense".into(),
            id: 9,
            ..Default::default()
        }),
    )
    .await;
    send(&mut ada, Req::Trickle(lk::TrickleRequest { candidate_init: "{not json".into(), ..Default::default() })).await;
    // The node still seats people and answers them.
    let mut bob = connect(&s, "lesson:3", "bob", None).await;
    let join = next(&mut bob, "join", |m| if let Resp::Join(j) = m { Some(j) } else { None }).await;
    assert_eq!(join.room.unwrap().name, "lesson:3");
    send(&mut bob, Req::PingReq(lk::Ping { timestamp: 1, rtt: 0 })).await;
    next(&mut bob, "pong", |m| matches!(m, Resp::PongResp(_)).then_some(())).await;
}

#[tokio::test]
async fn an_empty_room_closes_after_its_timeout_and_a_later_join_opens_it_again() {
    let mut s = server().await;
    let spec = rooms::RoomSpec { name: "lesson:4".into(), max_participants: 4, empty_timeout_secs: 1 };
    s.backend.create_room(&spec).await.unwrap();
    let mut ada = connect(&s, "lesson:4", "ada", None).await;
    let first = next(&mut ada, "join", |m| if let Resp::Join(j) = m { Some(j) } else { None }).await;
    send(&mut ada, Req::Leave(lk::LeaveRequest::default())).await;
    // Occupied, it stays; emptied, it closes a second later (LiveKit's `room_finished`).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let e = tokio::time::timeout_at(deadline, s.events.recv()).await.expect("no room_finished in 5 s").unwrap();
        if e == (SfuEvent::RoomFinished { room: "lesson:4".into() }) {
            break;
        }
    }
    let mut bob = connect(&s, "lesson:4", "bob", None).await;
    let again = next(&mut bob, "join", |m| if let Resp::Join(j) = m { Some(j) } else { None }).await;
    assert_ne!(again.room.unwrap().sid, first.room.unwrap().sid, "a new room, not the closed one");
}

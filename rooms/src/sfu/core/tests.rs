//! The core in simulated time: commands, datagrams and timeouts go in with a `now` the test moves forward,
//! and nothing sleeps or opens a socket. Clients that need a peer connection are str0m `Rtc`s whose
//! datagrams the test carries to and from the core by hand (or stops carrying).

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use livekit_protocol as lk;
use lk::signal_response::Message as Resp;
use str0m::{
    Event, Input, Output as RtcOutput, Rtc,
    change::SdpAnswer,
    net::{Protocol, Receive},
};
use tokio::sync::{mpsc, oneshot};

use super::{Core, Output};
use crate::{
    Credentials, RoomSpec,
    sfu::{Claims, Command, Grant, Joining, SfuConfig, SfuEvent, system_unix_now},
};

fn server_addr() -> SocketAddr {
    "10.0.0.1:5000".parse().unwrap()
}

/// The core, the simulated clock, and what the core has said so far.
struct Sim {
    core: Core,
    now: Instant,
    events: Vec<SfuEvent>,
    transmits: Vec<(SocketAddr, Vec<u8>)>,
}

impl Sim {
    fn new() -> Sim {
        let config = SfuConfig {
            udp_bind: server_addr(),
            advertise_ip: server_addr().ip(),
            credentials: Credentials { api_key: "APIkey".into(), api_secret: "secret".into() },
            url: None,
            ping_interval_secs: 5,
            ping_timeout_secs: 15,
            unix_now: system_unix_now(),
        };
        let now = Instant::now();
        let core = Core::new(&config, server_addr(), Default::default(), now, 1_700_000_000_000);
        Sim { core, now, events: Vec::new(), transmits: Vec::new() }
    }

    fn drain(&mut self) {
        while let Some(out) = self.core.poll_output() {
            match out {
                Output::Event(e) => self.events.push(e),
                Output::Transmit { destination, contents } => self.transmits.push((destination, contents)),
            }
        }
    }

    fn command(&mut self, c: Command) {
        self.core.handle_command(self.now, c);
        self.drain();
    }

    /// Moves the clock to `until`, waking the core whenever it asked to be woken on the way.
    fn advance(&mut self, by: Duration) {
        let until = self.now + by;
        while self.now < until {
            self.now = self.core.poll_timeout().clamp(self.now + Duration::from_millis(1), until);
            self.core.handle_timeout(self.now);
            self.drain();
        }
    }

    fn take_events(&mut self) -> Vec<SfuEvent> {
        std::mem::take(&mut self.events)
    }

    fn create_room(&mut self, name: &str, max_participants: u32, empty_timeout_secs: u32) {
        self.command(Command::CreateRoom(RoomSpec { name: name.into(), max_participants, empty_timeout_secs }));
    }

    /// `identity` joins `room` as client `id`, with `offer` as its publisher offer; its signal replies
    /// arrive on the returned receiver.
    fn join(&mut self, id: u64, room: &str, identity: &str, offer: Option<String>) -> mpsc::UnboundedReceiver<Resp> {
        let (out, rx) = mpsc::unbounded_channel();
        let claims = Claims {
            iss: "APIkey".into(),
            sub: identity.into(),
            name: identity.into(),
            metadata: String::new(),
            nbf: None,
            exp: i64::MAX,
            video: Grant { room: room.into(), room_join: true, ..Default::default() },
        };
        let request = lk::JoinRequest {
            publisher_offer: offer.map(|sdp| lk::SessionDescription {
                r#type: "offer".into(),
                sdp,
                id: 1,
                ..Default::default()
            }),
            ..Default::default()
        };
        self.command(Command::Join(Box::new(Joining { id, claims, request, auto_subscribe: true, out })));
        rx
    }

    fn participants(&mut self, room: &str) -> Vec<String> {
        let (tx, mut rx) = oneshot::channel();
        self.command(Command::Participants(room.into(), tx));
        let mut ids = rx.try_recv().expect("answered before handle_command returns");
        ids.sort();
        ids
    }
}

/// Every signal message waiting for a client.
fn replies(rx: &mut mpsc::UnboundedReceiver<Resp>) -> Vec<Resp> {
    std::iter::from_fn(|| rx.try_recv().ok()).collect()
}

fn left(room: &str, identity: &str) -> impl Fn(&SfuEvent) -> bool {
    move |e| matches!(e, SfuEvent::ParticipantLeft { room: r, identity: i, .. } if r == room && i == identity)
}

fn leave_reason(m: &Resp) -> Option<lk::DisconnectReason> {
    match m {
        Resp::Leave(l) => lk::DisconnectReason::try_from(l.reason).ok(),
        _ => None,
    }
}

/// The states `identity` was announced in to the one reading `replies`.
fn states_of(replies: &[Resp], identity: &str) -> Vec<lk::participant_info::State> {
    replies
        .iter()
        .filter_map(|m| if let Resp::Update(u) = m { Some(u) } else { None })
        .flat_map(|u| &u.participants)
        .filter(|p| p.identity == identity)
        .map(|p| p.state())
        .collect()
}

#[test]
fn commands_are_answered_and_the_room_sees_who_comes_and_goes() {
    let mut sim = Sim::new();
    sim.create_room("lesson:1", 2, 300);
    assert_eq!(sim.take_events(), [SfuEvent::RoomStarted { room: "lesson:1".into() }]);

    let mut ada = sim.join(1, "lesson:1", "ada", None);
    let Some(Resp::Join(join)) = replies(&mut ada).into_iter().next() else { panic!("ada is answered with a join") };
    let room = join.room.unwrap();
    assert_eq!((room.name.as_str(), room.max_participants, room.empty_timeout), ("lesson:1", 2, 300));
    assert_eq!(join.participant.unwrap().identity, "ada");
    assert_eq!((join.ping_interval, join.ping_timeout), (5, 15));
    // Wall-clock times come from the time the core was given, not from a clock of its own.
    assert_eq!(room.creation_time_ms, 1_700_000_000_000);

    sim.advance(Duration::from_millis(2500));
    let mut bob = sim.join(2, "lesson:1", "bob", None);
    let Some(Resp::Join(join)) = replies(&mut bob).into_iter().next() else { panic!("bob is answered with a join") };
    let others: Vec<String> = join.other_participants.iter().map(|p| p.identity.clone()).collect();
    assert_eq!(others, ["ada"]);
    assert_eq!(join.participant.unwrap().joined_at_ms, 1_700_000_002_500);
    assert_eq!(states_of(&replies(&mut ada), "bob"), [lk::participant_info::State::Joined]);

    // The room holds two: a third is turned away and never counted.
    let mut cat = sim.join(3, "lesson:1", "cat", None);
    let refused = replies(&mut cat);
    assert_eq!(refused.iter().filter_map(leave_reason).collect::<Vec<_>>(), [lk::DisconnectReason::JoinFailure]);
    let joined: Vec<SfuEvent> = sim.take_events();
    assert_eq!(joined.len(), 2, "{joined:?}");
    assert!(joined.iter().all(|e| matches!(e, SfuEvent::ParticipantJoined { .. })));
    assert_eq!(sim.participants("lesson:1"), ["ada", "bob"]);
    assert!(sim.participants("lesson:9").is_empty());

    // A mute of a track nobody publishes is answered "not found".
    let (done, mut answer) = oneshot::channel();
    sim.command(Command::Mute {
        room: "lesson:1".into(),
        identity: "ada".into(),
        track: "TR_none".into(),
        muted: true,
        done,
    });
    assert_eq!(answer.try_recv(), Ok(false));

    sim.command(Command::Remove("lesson:1".into(), "bob".into()));
    assert_eq!(
        replies(&mut bob).iter().filter_map(leave_reason).collect::<Vec<_>>(),
        [lk::DisconnectReason::ParticipantRemoved]
    );
    assert!(sim.take_events().iter().any(left("lesson:1", "bob")));
    assert_eq!(states_of(&replies(&mut ada), "bob"), [lk::participant_info::State::Disconnected]);
    assert_eq!(sim.participants("lesson:1"), ["ada"]);
}

#[test]
fn a_leave_or_a_closed_signal_socket_removes_a_participant_and_the_empty_room_closes_after_its_timeout() {
    let mut sim = Sim::new();
    sim.create_room("lesson:2", 0, 5);
    let _ada = sim.join(1, "lesson:2", "ada", None);
    let _bob = sim.join(2, "lesson:2", "bob", None);
    sim.take_events();

    sim.command(Command::Signal(1, Box::new(lk::signal_request::Message::Leave(Default::default()))));
    assert!(sim.take_events().iter().any(left("lesson:2", "ada")));
    assert_eq!(sim.participants("lesson:2"), ["bob"]);

    // An occupied room stays however long. (The odd 300 ms puts the emptying between two sweeps.)
    sim.advance(Duration::from_millis(60_300));
    assert!(sim.take_events().is_empty());

    sim.command(Command::Gone(2));
    assert!(sim.take_events().iter().any(left("lesson:2", "bob")));
    // The core asks to be woken for the sweep, so the driver never sleeps past an expiry by more than it.
    assert!(sim.core.poll_timeout() <= sim.now + Duration::from_secs(1));

    sim.advance(Duration::from_millis(4900));
    assert!(sim.take_events().is_empty(), "the room stays open for its 5 s");
    sim.advance(Duration::from_millis(1100));
    let finished = [SfuEvent::RoomFinished { room: "lesson:2".into() }];
    assert_eq!(sim.take_events(), finished, "closed within a sweep of its 5 s");
    sim.advance(Duration::from_secs(10));
    assert!(sim.take_events().is_empty(), "finished once");

    // A later join opens it again.
    let _cat = sim.join(3, "lesson:2", "cat", None);
    assert_eq!(sim.take_events()[0], SfuEvent::RoomStarted { room: "lesson:2".into() });
}

/// A client: a str0m peer connection at `addr`, and what it has heard.
struct Peer {
    rtc: Rtc,
    addr: SocketAddr,
    next: Instant,
    events: Vec<Event>,
}

impl Peer {
    /// A peer at `addr` and its offer (a data channel, as LiveKit clients open).
    fn offer(addr: SocketAddr, now: Instant) -> (Peer, String, str0m::change::SdpPendingOffer) {
        let mut rtc = Rtc::builder().build(now);
        rtc.add_local_candidate(str0m::Candidate::host(addr, "udp").unwrap());
        let mut api = rtc.sdp_api();
        api.add_channel("_reliable".into());
        let (offer, pending) = api.apply().unwrap();
        (Peer { rtc, addr, next: now, events: Vec::new() }, offer.to_sdp_string(), pending)
    }

    fn accept(&mut self, pending: str0m::change::SdpPendingOffer, replies: &[Resp]) {
        let answer = replies.iter().find_map(|m| if let Resp::Answer(a) = m { Some(a) } else { None });
        let answer = SdpAnswer::from_sdp_string(&answer.expect("an answer to the offer").sdp).unwrap();
        self.rtc.sdp_api().accept_answer(pending, answer).unwrap();
    }

    fn connected(&self) -> bool {
        self.events.iter().any(|e| matches!(e, Event::Connected))
    }
}

/// Runs the network for `by`: datagrams between the peers and the core are carried at once while
/// `carry` says so, and dropped otherwise.
fn run(sim: &mut Sim, peers: &mut [&mut Peer], by: Duration, carry: bool) {
    let until = sim.now + by;
    loop {
        // Until nothing more is said at this instant.
        loop {
            let mut said = false;
            for p in peers.iter_mut() {
                while let Ok(out) = p.rtc.poll_output() {
                    match out {
                        RtcOutput::Timeout(t) => {
                            p.next = t;
                            break;
                        }
                        RtcOutput::Transmit(t) if carry => {
                            sim.core.handle_datagram(sim.now, p.addr, &t.contents);
                            said = true;
                        }
                        RtcOutput::Transmit(_) => {}
                        RtcOutput::Event(e) => p.events.push(e),
                    }
                }
            }
            sim.drain();
            for (to, contents) in std::mem::take(&mut sim.transmits) {
                let Some(p) = peers.iter_mut().find(|p| p.addr == to) else { continue };
                if carry {
                    let receive = Receive {
                        proto: Protocol::Udp,
                        source: server_addr(),
                        destination: to,
                        contents: contents.as_slice().try_into().unwrap(),
                    };
                    p.rtc.handle_input(Input::Receive(sim.now, receive)).unwrap();
                    said = true;
                }
            }
            if !said {
                break;
            }
        }
        if sim.now >= until {
            return;
        }
        let next = peers.iter().map(|p| p.next).fold(sim.core.poll_timeout(), Instant::min);
        sim.now = next.clamp(sim.now + Duration::from_millis(1), until);
        for p in peers.iter_mut() {
            p.rtc.handle_input(Input::Timeout(sim.now)).unwrap();
        }
        sim.core.handle_timeout(sim.now);
    }
}

#[test]
fn a_participant_whose_ice_never_completes_is_removed_after_the_ice_timeout() {
    let mut sim = Sim::new();
    let (_ada, offer, _pending) = Peer::offer("10.0.0.2:4000".parse().unwrap(), sim.now);
    let mut ada = sim.join(1, "lesson:3", "ada", Some(offer));
    // Bob never offers, so his connection has no candidates to give up on.
    let mut bob = sim.join(2, "lesson:3", "bob", None);
    assert!(replies(&mut ada).iter().any(|m| matches!(m, Resp::Answer(_))));
    sim.take_events();

    // Not one datagram arrives from ada's candidate.
    sim.advance(Duration::from_secs(10));
    assert_eq!(sim.participants("lesson:3"), ["ada", "bob"], "ICE gets its time");
    sim.advance(Duration::from_secs(20));
    assert!(sim.take_events().iter().any(left("lesson:3", "ada")));
    assert_eq!(
        replies(&mut ada).iter().filter_map(leave_reason).collect::<Vec<_>>(),
        [lk::DisconnectReason::MediaFailure]
    );
    assert_eq!(states_of(&replies(&mut bob), "ada"), [lk::participant_info::State::Disconnected]);

    // Bob's connection waits for candidates however long: the signal side's ping timeout removes him
    // (`Command::Gone`), not the core.
    sim.advance(Duration::from_secs(120));
    assert_eq!(sim.participants("lesson:3"), ["bob"]);
}

#[test]
fn a_connected_participant_stays_while_its_packets_flow_and_is_removed_once_they_stop() {
    let mut sim = Sim::new();
    let mut bob = sim.join(2, "lesson:4", "bob", None);
    let (mut ada, offer, pending) = Peer::offer("10.0.0.2:4000".parse().unwrap(), sim.now);
    let mut ada_signal = sim.join(1, "lesson:4", "ada", Some(offer));
    ada.accept(pending, &replies(&mut ada_signal));

    let start = sim.now;
    run(&mut sim, &mut [&mut ada], Duration::from_secs(5), true);
    assert!(ada.connected(), "ICE and DTLS complete in simulated time");
    assert!(
        states_of(&replies(&mut bob), "ada").contains(&lk::participant_info::State::Active),
        "the room hears that ada is active"
    );

    // Packets flow (ada's consent checks), so she stays.
    run(&mut sim, &mut [&mut ada], Duration::from_secs(60), true);
    assert_eq!(sim.participants("lesson:4"), ["ada", "bob"]);
    assert!(!sim.take_events().iter().any(left("lesson:4", "ada")));
    assert!(sim.now >= start + Duration::from_secs(65));

    // Her network goes quiet: nothing more reaches the core.
    let quiet = sim.now;
    run(&mut sim, &mut [&mut ada], Duration::from_secs(10), false);
    assert_eq!(sim.participants("lesson:4"), ["ada", "bob"], "a short gap is not a departure");
    run(&mut sim, &mut [&mut ada], Duration::from_secs(20), false);
    assert!(sim.take_events().iter().any(left("lesson:4", "ada")), "gone within 30 s of {quiet:?}");
    assert_eq!(
        replies(&mut ada_signal).iter().filter_map(leave_reason).collect::<Vec<_>>(),
        [lk::DisconnectReason::MediaFailure]
    );
    assert_eq!(sim.participants("lesson:4"), ["bob"]);
}

#[test]
fn a_data_packet_reaches_the_others_in_the_room_stamped_with_its_sender() {
    use prost::Message as _;
    let mut sim = Sim::new();
    let (mut ada, offer, pending) = Peer::offer("10.0.0.2:4000".parse().unwrap(), sim.now);
    let mut ada_signal = sim.join(1, "lesson:5", "ada", Some(offer));
    ada.accept(pending, &replies(&mut ada_signal));
    let (mut bob, offer, pending) = Peer::offer("10.0.0.3:4000".parse().unwrap(), sim.now);
    let mut bob_signal = sim.join(2, "lesson:5", "bob", Some(offer));
    bob.accept(pending, &replies(&mut bob_signal));
    run(&mut sim, &mut [&mut ada, &mut bob], Duration::from_secs(5), true);
    let open =
        |p: &Peer| p.events.iter().find_map(|e| if let Event::ChannelOpen(id, _) = e { Some(*id) } else { None });
    let (Some(channel), Some(_)) = (open(&ada), open(&bob)) else { panic!("both data channels open") };

    // Ada claims to be someone else; the server says who she is.
    let packet = lk::DataPacket {
        participant_identity: "mallory".into(),
        value: Some(lk::data_packet::Value::User(lk::UserPacket { payload: b"hello".to_vec(), ..Default::default() })),
        ..Default::default()
    };
    ada.rtc.channel(channel).unwrap().write(true, &packet.encode_to_vec()).unwrap();
    run(&mut sim, &mut [&mut ada, &mut bob], Duration::from_millis(200), true);

    let heard: Vec<lk::DataPacket> = bob
        .events
        .iter()
        .filter_map(
            |e| if let Event::ChannelData(d) = e { lk::DataPacket::decode(d.data.as_slice()).ok() } else { None },
        )
        .collect();
    assert_eq!(heard.len(), 1, "{heard:?}");
    assert_eq!(heard[0].participant_identity, "ada");
    let Some(lk::data_packet::Value::User(u)) = &heard[0].value else { panic!("a user packet") };
    assert_eq!(u.payload, b"hello");
    assert!(!ada.events.iter().any(|e| matches!(e, Event::ChannelData(_))), "not echoed to its sender");
}

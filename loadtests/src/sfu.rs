//! `lc-load sfu`: the embedded SFU's forwarding capacity for a classroom: `--participants` clients (default
//! 11: a tutor and 10 students) join one room over LiveKit's client protocol v1 (one PeerConnection each,
//! str0m as the WebRTC side), each publishes audio + video and subscribes to everyone else.
//!
//! Every frame is small enough to be one RTP packet (audio `--audio-bytes` at `--audio-pps`, video
//! `--video-bytes` at `--video-pps`), so frames counted at the receivers are packets. A frame carries a
//! small stamp after a VP8/Opus-like header: whether it was sent inside the measured window, its kind and its
//! send time. Loss is exact: deliveries of window frames / (window frames sent × (participants − 1)),
//! counting late arrivals for `GRACE` after the window. Server CPU (utime + stime of `--server-pid`) is
//! read at the window's start and end, RSS at its end.
//!
//! All clients run in one thread (the caller builds a current-thread runtime): one task per client owns
//! its `Rtc`, its UDP socket on `--bind-ip` and its signal WebSocket, and loops sans-IO style.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use futures::{SinkExt, StreamExt};
use hmac::{Hmac, Mac};
use livekit_protocol as lk;
use lk::signal_request::Message as Req;
use lk::signal_response::Message as Resp;
use prost::Message as _;
use serde_json::{Value, json};
use sha2::Sha256;
use str0m::change::{SdpAnswer, SdpPendingOffer};
use str0m::format::Codec;
use str0m::media::{Direction, Frequency, MediaKind, MediaTime, Mid, Pt};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::watch;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

use crate::client::now_us;
use crate::stats::{self, AtomicHist};

/// How long after the window frames sent inside it may still arrive and count.
const GRACE: Duration = Duration::from_millis(500);
/// Client → server `ping_req` every this long (the server drops quiet signal connections).
const PING_EVERY: Duration = Duration::from_secs(5);
/// Where the stamp starts in a frame: after a 10-byte VP8 keyframe header (3-byte tag, start code, size).
const STAMP_AT: usize = 10;
/// flag (1 = sent in the window), kind (0 audio, 1 video), send time (µs, little-endian u64).
const STAMP_LEN: usize = 10;
/// At most this many late frames of one kind are written at once; further behind, the schedule resets.
const MAX_CATCH_UP: u32 = 4;

#[derive(clap::Args, Clone)]
pub struct Opts {
    /// The server's base URL (its API listener; signaling is `/rtc/v1` there).
    #[arg(long, default_value = "ws://127.0.0.1:8080")]
    pub url: String,
    /// The LiveKit API key the server accepts tokens for.
    #[arg(long, env = "LIVEKIT_API_KEY")]
    pub api_key: String,
    /// Its secret (signs the tokens).
    #[arg(long, env = "LIVEKIT_API_SECRET", hide_env_values = true)]
    pub api_secret: String,
    /// Clients in the room; each publishes audio + video and subscribes to all others.
    #[arg(long, default_value_t = 11)]
    pub participants: usize,
    /// Video frames (= RTP packets) per second per publisher.
    #[arg(long, default_value_t = 30.0)]
    pub video_pps: f64,
    /// Bytes per video frame (one packet: keep it under ~1050).
    #[arg(long, default_value_t = 900)]
    pub video_bytes: usize,
    /// Audio frames (= packets) per second per publisher (50: 20 ms Opus frames).
    #[arg(long, default_value_t = 50.0)]
    pub audio_pps: f64,
    #[arg(long, default_value_t = 100)]
    pub audio_bytes: usize,
    /// A video keyframe (VP8 keyframe header) every this many seconds, and on every PLI.
    #[arg(long, default_value_t = 1.0)]
    pub keyframe_secs: f64,
    /// Seconds of the measured window.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Seconds to wait for every subscription to carry media.
    #[arg(long, default_value_t = 30.0)]
    pub warmup_timeout: f64,
    /// Seconds between all subscriptions being up and the window.
    #[arg(long, default_value_t = 1.0)]
    pub settle: f64,
    /// The server process: its CPU time and memory are reported.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Room name (default: a fresh one per run).
    #[arg(long)]
    pub room: Option<String>,
    /// Local address of the clients' UDP sockets.
    #[arg(long, default_value = "127.0.0.1")]
    pub bind_ip: IpAddr,
}

/// One client's counters (frames unless named otherwise).
#[derive(Default)]
struct Counters {
    sent_audio: AtomicU64,
    sent_video: AtomicU64,
    /// Frames sent inside the window.
    win_sent_audio: AtomicU64,
    win_sent_video: AtomicU64,
    /// Window frames received (from any publisher).
    win_recv_audio: AtomicU64,
    win_recv_video: AtomicU64,
    received: AtomicU64,
    datagrams_in: AtomicU64,
    datagrams_out: AtomicU64,
    send_errors: AtomicU64,
    keyframe_requests: AtomicU64,
    /// Receiving m-lines that have carried media (one per subscribed track).
    sources: AtomicU64,
    /// Schedule resets: the loop fell behind by more than `MAX_CATCH_UP` frames.
    stalls: AtomicU64,
}

const WARMUP: u8 = 0;
const WINDOW: u8 = 1;

struct Run {
    opts: Opts,
    room: String,
    phase: AtomicU8,
    counters: Vec<Counters>,
    latency: AtomicHist,
}

pub async fn run(opts: Opts) -> Result<Value> {
    let n = opts.participants;
    if n < 2 {
        bail!("--participants must be at least 2");
    }
    if opts.video_bytes < STAMP_AT + STAMP_LEN || opts.audio_bytes < STAMP_AT + STAMP_LEN {
        bail!("frames must be at least {} bytes", STAMP_AT + STAMP_LEN);
    }
    if opts.audio_pps <= 0.0 || opts.video_pps <= 0.0 || opts.duration <= 0.0 {
        bail!("rates and --duration must be positive");
    }
    let room = opts.room.clone().unwrap_or_else(|| format!("lc-load-sfu-{}", now_us()));
    let run = Arc::new(Run {
        opts: opts.clone(),
        room,
        phase: AtomicU8::new(WARMUP),
        counters: (0..n).map(|_| Counters::default()).collect(),
        latency: AtomicHist::default(),
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks: Vec<_> = (0..n).map(|i| tokio::spawn(participant(i, run.clone(), stop_rx.clone()))).collect();

    // Warm-up: every client receives media on every one of its 2 × (n − 1) subscriptions.
    let started = Instant::now();
    let want = 2 * (n as u64 - 1);
    loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if run.counters.iter().all(|c| c.sources.load(Ordering::Relaxed) >= want) {
            break;
        }
        if let Some(i) = tasks.iter().position(|t| t.is_finished()) {
            let t = tasks.swap_remove(i);
            let why = match t.await {
                Ok(Ok(())) => "ended".to_string(),
                Ok(Err(e)) => format!("{e:#}"),
                Err(e) => e.to_string(),
            };
            let _ = stop_tx.send(true);
            bail!("a client failed during warm-up: {why}");
        }
        if started.elapsed().as_secs_f64() > opts.warmup_timeout {
            let sources: Vec<u64> = run.counters.iter().map(|c| c.sources.load(Ordering::Relaxed)).collect();
            let _ = stop_tx.send(true);
            bail!(
                "warm-up timed out after {} s: subscriptions carrying media per client {sources:?} (want {want})",
                opts.warmup_timeout
            );
        }
    }
    let warmup_secs = started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs_f64(opts.settle)).await;

    // The window.
    let pids: Vec<u32> = opts.server_pid.into_iter().collect();
    let me = [std::process::id()];
    let udp0 = udp_errors();
    let (server0, client0) = (stats::sample(&pids), stats::sample(&me));
    let received0 = sum(&run.counters, |c| &c.received);
    let dgrams0 = sum(&run.counters, |c| &c.datagrams_in);
    let t0 = Instant::now();
    run.phase.store(WINDOW, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs_f64(opts.duration)).await;
    run.phase.store(WARMUP + 2, Ordering::Relaxed);
    let secs = t0.elapsed().as_secs_f64();
    let (server1, client1) = (stats::sample(&pids), stats::sample(&me));
    let udp1 = udp_errors();
    let received1 = sum(&run.counters, |c| &c.received);
    let dgrams1 = sum(&run.counters, |c| &c.datagrams_in);
    let memory = opts.server_pid.map(memory_kb);
    tokio::time::sleep(GRACE).await;

    let k = &run.counters;
    let sent_a = sum(k, |c| &c.win_sent_audio);
    let sent_v = sum(k, |c| &c.win_sent_video);
    let recv_a = sum(k, |c| &c.win_recv_audio);
    let recv_v = sum(k, |c| &c.win_recv_video);
    let fanout = n as u64 - 1;
    let (exp_a, exp_v) = (sent_a * fanout, sent_v * fanout);
    let loss = |recv: u64, exp: u64| if exp == 0 { 0.0 } else { 1.0 - recv as f64 / exp as f64 };
    let forwarded_pps = (recv_a + recv_v) as f64 / secs;
    let server_cores = opts.server_pid.map(|_| (server1.cpu_secs - server0.cpu_secs) / secs);
    let client_cores = (client1.cpu_secs - client0.cpu_secs) / secs;
    let total_loss = loss(recv_a + recv_v, exp_a + exp_v);
    let errors = sum(k, |c| &c.send_errors);

    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(3), futures::future::join_all(tasks)).await;

    let r = |x: f64, d: i32| crate::round(x, d);
    Ok(json!({
        "scenario": "sfu",
        "ok": exp_a + exp_v > 0,
        "participants": n,
        "room": run.room,
        "rates": {
            "audio_pps": opts.audio_pps, "audio_bytes": opts.audio_bytes,
            "video_pps": opts.video_pps, "video_bytes": opts.video_bytes,
            "offered_pps_per_publisher": opts.audio_pps + opts.video_pps,
            "offered_forwarded_pps": (opts.audio_pps + opts.video_pps) * (n * (n - 1)) as f64,
        },
        "duration_s": r(secs, 3),
        "warmup_s": r(warmup_secs, 2),
        "sent_frames": sent_a + sent_v,
        "sent_pps_per_publisher": r((sent_a + sent_v) as f64 / secs / n as f64, 1),
        "expected_deliveries": exp_a + exp_v,
        "received_deliveries": recv_a + recv_v,
        "loss": r(total_loss, 5),
        "audio": {"sent": sent_a, "expected": exp_a, "received": recv_a, "loss": r(loss(recv_a, exp_a), 5)},
        "video": {"sent": sent_v, "expected": exp_v, "received": recv_v, "loss": r(loss(recv_v, exp_v), 5)},
        "forwarded_pps": r(forwarded_pps, 1),
        "latency": run.latency.take().summary(),
        // All frames received and all UDP datagrams (RTP, RTX, RTCP, STUN) the clients got in the window: the
        // second close to the first shows that one frame is one packet.
        "client_frames_in_per_s": r((received1 - received0) as f64 / secs, 1),
        "client_datagrams_in_per_s": r((dgrams1 - dgrams0) as f64 / secs, 1),
        "server_cpu_cores": server_cores.map(|c| r(c, 3)),
        "forwarded_pps_per_core": server_cores.filter(|c| *c > 0.0).map(|c| r(forwarded_pps / c, 0)),
        "server_rss_kb": memory.map(|m| m.0),
        "server_hwm_kb": memory.map(|m| m.1),
        "client_cpu_cores": r(client_cores, 3),
        "udp_errors_in_window": {
            "rcvbuf": udp1.0.saturating_sub(udp0.0),
            "sndbuf": udp1.1.saturating_sub(udp0.1),
            "in_errors": udp1.2.saturating_sub(udp0.2),
        },
        "client_send_errors": errors,
        "keyframe_requests_received": sum(k, |c| &c.keyframe_requests),
        "generator_stalls": sum(k, |c| &c.stalls),
    }))
}

fn sum(k: &[Counters], f: impl Fn(&Counters) -> &AtomicU64) -> u64 {
    k.iter().map(|c| f(c).load(Ordering::Relaxed)).sum()
}

/// `(VmRSS, VmHWM)` in KiB.
fn memory_kb(pid: u32) -> (u64, u64) {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        s.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// The machine's UDP `(RcvbufErrors, SndbufErrors, InErrors)` from `/proc/net/snmp`.
fn udp_errors() -> (u64, u64, u64) {
    let s = std::fs::read_to_string("/proc/net/snmp").unwrap_or_default();
    let mut lines = s.lines().filter(|l| l.starts_with("Udp:"));
    let (Some(names), Some(values)) = (lines.next(), lines.next()) else { return (0, 0, 0) };
    let get = |name: &str| {
        names.split_whitespace().position(|n| n == name).and_then(|i| values.split_whitespace().nth(i)?.parse().ok())
    };
    (get("RcvbufErrors").unwrap_or(0), get("SndbufErrors").unwrap_or(0), get("InErrors").unwrap_or(0))
}

/// A LiveKit access token (HS256; `iss` = API key, `sub` = identity, the `video` grant).
fn livekit_token(key: &str, secret: &str, identity: &str, room: &str, ttl_secs: i64) -> String {
    let now = (now_us() / 1_000_000) as i64;
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let claims = json!({"iss": key, "sub": identity, "name": identity, "nbf": now - 10, "exp": now + ttl_secs,
        "video": {"room": room, "roomJoin": true, "canPublish": true, "canSubscribe": true, "canPublishData": true}});
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("hmac takes any key length");
    mac.update(format!("{header}.{payload}").as_bytes());
    format!("{header}.{payload}.{}", URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()))
}

type Ws = WebSocketStream<TcpStream>;

/// Opens `/rtc/v1` with the token and a `join_request` (no offer: it follows the track requests).
async fn connect(o: &Opts, identity: &str, room: &str) -> Result<Ws> {
    let host = o.url.strip_prefix("ws://").ok_or_else(|| anyhow!("--url must be ws://host:port"))?;
    let host = host.trim_end_matches('/');
    let addr: SocketAddr = host.parse().with_context(|| format!("{host}: expected ip:port"))?;
    let stream = TcpStream::connect(addr).await.with_context(|| format!("connect {addr}"))?;
    stream.set_nodelay(true)?;
    let token = livekit_token(&o.api_key, &o.api_secret, identity, room, 3600);
    let join = lk::JoinRequest {
        client_info: Some(lk::ClientInfo { protocol: 16, version: "lc-load".into(), ..Default::default() }),
        connection_settings: Some(lk::ConnectionSettings { auto_subscribe: true, ..Default::default() }),
        ..Default::default()
    };
    let wrapped = lk::WrappedJoinRequest {
        compression: lk::wrapped_join_request::Compression::None as i32,
        join_request: join.encode_to_vec(),
    };
    let url = format!(
        "ws://{host}/rtc/v1?access_token={token}&join_request={}",
        URL_SAFE_NO_PAD.encode(wrapped.encode_to_vec())
    );
    let (ws, _) = tokio_tungstenite::client_async(url, stream).await.context("signal WebSocket handshake")?;
    Ok(ws)
}

/// A publishing schedule of one kind.
struct Track {
    mid: Option<Mid>,
    pt: Option<Pt>,
    period: Duration,
    next: Instant,
    frames: u64,
    bytes: usize,
    /// RTP clock ticks per frame.
    ticks: u64,
    codec: Codec,
}

impl Track {
    fn new(pps: f64, bytes: usize, clock: u64, codec: Codec) -> Track {
        Track {
            mid: None,
            pt: None,
            period: Duration::from_secs_f64(1.0 / pps),
            next: Instant::now(),
            frames: 0,
            bytes,
            ticks: (clock as f64 / pps).round().max(1.0) as u64,
            codec,
        }
    }
}

struct Peer {
    idx: usize,
    rtc: Rtc,
    sock: UdpSocket,
    local: SocketAddr,
    pending: Option<SdpPendingOffer>,
    offer_id: u32,
    /// `TrackPublished` answers seen (audio and video).
    published: u8,
    own_added: bool,
    /// Receiving slots the server asked for that aren't offered yet.
    need_audio: u32,
    need_video: u32,
    connected: bool,
    sources: HashSet<Mid>,
    audio: Track,
    video: Track,
    keyframe_every: u64,
    keyframe_due: bool,
    /// Signal requests to send.
    out: Vec<Req>,
}

async fn participant(idx: usize, run: Arc<Run>, mut stop: watch::Receiver<bool>) -> Result<()> {
    let o = &run.opts;
    let k = &run.counters[idx];
    let identity = if idx == 0 { "tutor".to_string() } else { format!("student-{idx}") };
    let sock = UdpSocket::bind(SocketAddr::new(o.bind_ip, 0)).await.context("bind UDP")?;
    let local = sock.local_addr()?;
    let mut rtc = Rtc::builder().clear_codecs().enable_opus(true, false).enable_vp8(true).build(Instant::now());
    rtc.add_local_candidate(Candidate::host(local, "udp").map_err(|e| anyhow!("candidate: {e}"))?);
    let mut ws = connect(o, &identity, &run.room).await.with_context(|| format!("{identity}: connect"))?;
    let mut p = Peer {
        idx,
        rtc,
        sock,
        local,
        pending: None,
        offer_id: 0,
        published: 0,
        own_added: false,
        need_audio: 0,
        need_video: 0,
        connected: false,
        sources: HashSet::new(),
        audio: Track::new(o.audio_pps, o.audio_bytes, 48_000, Codec::Opus),
        video: Track::new(o.video_pps, o.video_bytes, 90_000, Codec::Vp8),
        keyframe_every: (o.video_pps * o.keyframe_secs).round().max(1.0) as u64,
        keyframe_due: true,
        out: Vec::new(),
    };
    let mut buf = vec![0u8; 2048];
    let mut next_ping = Instant::now() + PING_EVERY;
    let result: Result<()> = async {
        loop {
            let timeout = p.drain(&run)?;
            for m in p.out.drain(..) {
                let frame = lk::SignalRequest { message: Some(m) }.encode_to_vec();
                ws.send(Message::binary(frame)).await.context("signal send")?;
            }
            let mut wake = timeout.min(next_ping);
            if p.publishing() {
                wake = wake.min(p.audio.next).min(p.video.next);
            }
            tokio::select! {
                biased;
                _ = stop.changed() => return Ok(()),
                r = p.sock.recv_from(&mut buf) => {
                    let (n, source) = r.context("UDP receive")?;
                    p.receive(&buf[..n], source, k)?;
                    for _ in 0..32 {
                        match p.sock.try_recv_from(&mut buf) {
                            Ok((n, source)) => p.receive(&buf[..n], source, k)?,
                            Err(_) => break,
                        }
                    }
                }
                m = ws.next() => match m {
                    Some(Ok(Message::Binary(b))) => {
                        let resp = lk::SignalResponse::decode(b.as_ref()).context("undecodable signal response")?;
                        if let Some(m) = resp.message {
                            p.signal(m)?;
                        }
                    }
                    Some(Ok(Message::Close(_))) | None => bail!("the server closed the signal connection"),
                    Some(Ok(_)) => {}
                    Some(Err(e)) => bail!("signal connection: {e}"),
                },
                _ = tokio::time::sleep_until(wake.into()) => {}
            }
            let now = Instant::now();
            p.rtc.handle_input(Input::Timeout(now)).map_err(|e| anyhow!("rtc timeout: {e}"))?;
            if p.publishing() {
                p.publish(now, &run);
            }
            if now >= next_ping {
                next_ping = now + PING_EVERY;
                p.out.push(Req::PingReq(lk::Ping { timestamp: crate::client::now_us() as i64 / 1000, rtt: 0 }));
            }
        }
    }
    .await;
    let leave = lk::LeaveRequest { reason: lk::DisconnectReason::ClientInitiated as i32, ..Default::default() };
    let frame = lk::SignalRequest { message: Some(Req::Leave(leave)) }.encode_to_vec();
    let _ = ws.send(Message::binary(frame)).await;
    let _ = ws.close(None).await;
    result.with_context(|| format!("{identity} (client {})", p.idx))
}

impl Peer {
    fn publishing(&self) -> bool {
        self.connected && self.audio.pt.is_some() && self.video.pt.is_some()
    }

    /// Runs the peer until it waits for time; returns when.
    fn drain(&mut self, run: &Run) -> Result<Instant> {
        let k = &run.counters[self.idx];
        loop {
            match self.rtc.poll_output().map_err(|e| anyhow!("rtc: {e}"))? {
                Output::Timeout(t) => return Ok(t),
                Output::Transmit(t) => {
                    let c = match self.sock.try_send_to(&t.contents, t.destination) {
                        Ok(_) => &k.datagrams_out,
                        Err(_) => &k.send_errors,
                    };
                    c.fetch_add(1, Ordering::Relaxed);
                }
                Output::Event(e) => match e {
                    Event::Connected => {
                        self.connected = true;
                        let now = Instant::now();
                        (self.audio.next, self.video.next) = (now, now);
                    }
                    Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                        bail!("ICE disconnected")
                    }
                    Event::MediaData(d) => {
                        k.received.fetch_add(1, Ordering::Relaxed);
                        if self.sources.insert(d.mid) {
                            k.sources.store(self.sources.len() as u64, Ordering::Relaxed);
                        }
                        let b = &d.data;
                        if b.len() >= STAMP_AT + STAMP_LEN && b[STAMP_AT] == 1 {
                            let counter = if b[STAMP_AT + 1] == 1 { &k.win_recv_video } else { &k.win_recv_audio };
                            counter.fetch_add(1, Ordering::Relaxed);
                            let mut t = [0u8; 8];
                            t.copy_from_slice(&b[STAMP_AT + 2..STAMP_AT + 10]);
                            run.latency.record(now_us().saturating_sub(u64::from_le_bytes(t)));
                        }
                    }
                    Event::KeyframeRequest(_) => {
                        k.keyframe_requests.fetch_add(1, Ordering::Relaxed);
                        self.keyframe_due = true;
                    }
                    _ => {}
                },
            }
        }
    }

    fn receive(&mut self, data: &[u8], source: SocketAddr, k: &Counters) -> Result<()> {
        k.datagrams_in.fetch_add(1, Ordering::Relaxed);
        let Ok(contents) = data.try_into() else { return Ok(()) };
        let input =
            Input::Receive(Instant::now(), Receive { proto: Protocol::Udp, source, destination: self.local, contents });
        self.rtc.handle_input(input).map_err(|e| anyhow!("rtc input: {e}"))
    }

    fn signal(&mut self, m: Resp) -> Result<()> {
        match m {
            Resp::Join(_) => {
                // Our two tracks; the offer follows their TrackPublished answers.
                for (cid, t, source) in [
                    (format!("a-{}", self.idx), lk::TrackType::Audio, lk::TrackSource::Microphone),
                    (format!("v-{}", self.idx), lk::TrackType::Video, lk::TrackSource::Camera),
                ] {
                    let video = t == lk::TrackType::Video;
                    self.out.push(Req::AddTrack(lk::AddTrackRequest {
                        cid: cid.clone(),
                        name: cid,
                        r#type: t as i32,
                        source: source as i32,
                        width: if video { 640 } else { 0 },
                        height: if video { 360 } else { 0 },
                        ..Default::default()
                    }));
                }
            }
            Resp::TrackPublished(_) => {
                self.published += 1;
                self.offer()?;
            }
            Resp::MediaSectionsRequirement(r) => {
                self.need_audio += r.num_audios;
                self.need_video += r.num_videos;
                self.offer()?;
            }
            Resp::Answer(sd) => {
                let Some(pending) = self.pending.take() else { return Ok(()) };
                let answer = SdpAnswer::from_sdp_string(&sd.sdp).map_err(|e| anyhow!("answer: {e}"))?;
                self.rtc.sdp_api().accept_answer(pending, answer).map_err(|e| anyhow!("answer refused: {e}"))?;
                for t in [&mut self.audio, &mut self.video] {
                    if t.pt.is_none()
                        && let Some(mid) = t.mid
                        && let Some(w) = self.rtc.writer(mid)
                    {
                        t.pt = w.payload_params().find(|p| p.spec().codec == t.codec).map(|p| p.pt());
                        t.next = Instant::now();
                    }
                }
                self.offer()?;
            }
            Resp::Trickle(t) => {
                #[derive(serde::Deserialize)]
                struct Init {
                    candidate: String,
                }
                if let Ok(init) = serde_json::from_str::<Init>(&t.candidate_init)
                    && let Ok(c) = Candidate::from_sdp_string(&init.candidate)
                {
                    self.rtc.add_remote_candidate(c);
                }
            }
            Resp::Leave(l) => bail!("the server asked us to leave (reason {})", l.reason),
            Resp::Offer(_) => bail!("the server offered (not expected in single-PC mode)"),
            _ => {}
        }
        Ok(())
    }

    /// Offers what is due (our tracks once both are published, requested receiving slots) unless an offer
    /// is still waiting for its answer.
    fn offer(&mut self) -> Result<()> {
        if self.pending.is_some() {
            return Ok(());
        }
        let own = !self.own_added && self.published >= 2;
        if !own && self.need_audio + self.need_video == 0 {
            return Ok(());
        }
        // str0m draws each new mid at random and checks it only against negotiated m-lines, not against the
        // others of the same change set: with many slots at once two can collide (3 characters), which the
        // server rightly refuses. Such a change set is dropped unapplied and drawn again.
        let mut attempt = 0;
        let (offer, pending, own_mids) = loop {
            attempt += 1;
            let stream = format!("s-{}", self.idx);
            let mut api = self.rtc.sdp_api();
            let mut mids = Vec::new();
            let mut own_mids = None;
            if own {
                let (a, v) = (format!("a-{}", self.idx), format!("v-{}", self.idx));
                let am = api.add_media(MediaKind::Audio, Direction::SendOnly, Some(stream.clone()), Some(a), None);
                let vm = api.add_media(MediaKind::Video, Direction::SendOnly, Some(stream), Some(v), None);
                own_mids = Some((am, vm));
                mids.extend([am, vm]);
            }
            for _ in 0..self.need_audio {
                mids.push(api.add_media(MediaKind::Audio, Direction::RecvOnly, None, None, None));
            }
            for _ in 0..self.need_video {
                mids.push(api.add_media(MediaKind::Video, Direction::RecvOnly, None, None, None));
            }
            let distinct: HashSet<Mid> = mids.iter().copied().collect();
            if distinct.len() < mids.len() {
                if attempt < 20 {
                    continue;
                }
                bail!("str0m drew duplicate mids {attempt} times");
            }
            let Some((offer, pending)) = api.apply() else { return Ok(()) };
            break (offer, pending, own_mids);
        };
        if let Some((a, v)) = own_mids {
            (self.audio.mid, self.video.mid) = (Some(a), Some(v));
            self.own_added = true;
        }
        self.need_audio = 0;
        self.need_video = 0;
        self.pending = Some(pending);
        self.offer_id += 1;
        self.out.push(Req::Offer(lk::SessionDescription {
            r#type: "offer".into(),
            sdp: offer.to_sdp_string(),
            id: self.offer_id,
            ..Default::default()
        }));
        Ok(())
    }

    /// Writes the frames that are due.
    fn publish(&mut self, now: Instant, run: &Run) {
        let k = &run.counters[self.idx];
        let window = run.phase.load(Ordering::Relaxed) == WINDOW;
        for video in [false, true] {
            let mut written = 0;
            loop {
                let t = if video { &mut self.video } else { &mut self.audio };
                if t.next > now {
                    break;
                }
                if written == MAX_CATCH_UP {
                    // Too far behind: drop the backlog rather than burst it.
                    t.next = now + t.period;
                    k.stalls.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                let (Some(mid), Some(pt)) = (t.mid, t.pt) else { break };
                let keyframe = video && (self.keyframe_due || t.frames % self.keyframe_every == 0);
                let frame = make_frame(t.bytes, video, keyframe, window);
                let time = MediaTime::new(
                    t.frames * t.ticks,
                    if video { Frequency::NINETY_KHZ } else { Frequency::FORTY_EIGHT_KHZ },
                );
                t.frames += 1;
                t.next += t.period;
                written += 1;
                let Some(w) = self.rtc.writer(mid) else { break };
                if w.write(pt, now, time, frame).is_err() {
                    k.send_errors.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                if video {
                    self.keyframe_due &= !keyframe;
                }
                let (all, win) =
                    if video { (&k.sent_video, &k.win_sent_video) } else { (&k.sent_audio, &k.win_sent_audio) };
                all.fetch_add(1, Ordering::Relaxed);
                if window {
                    win.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
}

/// A synthetic frame. Video: a VP8 frame tag (byte 0 bit 0 = 0 for a keyframe, then the start code
/// 9d 01 2a and 640×360 for a keyframe); audio: an Opus TOC byte (20 ms CELT). Then the stamp, then filler.
fn make_frame(len: usize, video: bool, keyframe: bool, window: bool) -> Vec<u8> {
    let mut f = vec![0u8; len];
    if video {
        if keyframe {
            f[..10].copy_from_slice(&[0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a, 0x80, 0x02, 0x68, 0x01]);
        } else {
            f[..3].copy_from_slice(&[0x11, 0x02, 0x00]);
        }
    } else {
        f[0] = 0xfc;
    }
    f[STAMP_AT] = u8::from(window);
    f[STAMP_AT + 1] = u8::from(video);
    f[STAMP_AT + 2..STAMP_AT + 10].copy_from_slice(&now_us().to_le_bytes());
    for (i, b) in f[STAMP_AT + STAMP_LEN..].iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(31);
    }
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_carry_a_vp8_header_and_the_stamp() {
        let key = make_frame(900, true, true, true);
        assert_eq!(key.len(), 900);
        assert_eq!(key[0] & 1, 0, "keyframe bit");
        assert_eq!(&key[3..6], &[0x9d, 0x01, 0x2a], "start code");
        assert_eq!(u16::from_le_bytes([key[6], key[7]]) & 0x3fff, 640);
        assert_eq!(u16::from_le_bytes([key[8], key[9]]) & 0x3fff, 360);
        assert_eq!((key[STAMP_AT], key[STAMP_AT + 1]), (1, 1));
        let delta = make_frame(900, true, false, false);
        assert_eq!((delta[0] & 1, delta[STAMP_AT]), (1, 0));
        let audio = make_frame(100, false, false, true);
        assert_eq!((audio.len(), audio[STAMP_AT], audio[STAMP_AT + 1]), (100, 1, 0));
        let sent = u64::from_le_bytes(audio[STAMP_AT + 2..STAMP_AT + 10].try_into().unwrap());
        assert!(now_us() >= sent && now_us() - sent < 1_000_000);
    }

    #[test]
    fn tokens_are_livekit_shaped() {
        let t = livekit_token("APIkey", "secret", "tutor", "room-1", 60);
        let parts: Vec<&str> = t.split('.').collect();
        assert_eq!(parts.len(), 3);
        let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        assert_eq!((claims["iss"].as_str(), claims["sub"].as_str()), (Some("APIkey"), Some("tutor")));
        assert_eq!(claims["video"]["room"], "room-1");
        assert_eq!(claims["video"]["roomJoin"], true);
        let mut mac = Hmac::<Sha256>::new_from_slice(b"secret").unwrap();
        mac.update(format!("{}.{}", parts[0], parts[1]).as_bytes());
        assert_eq!(URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()), parts[2]);
    }
}

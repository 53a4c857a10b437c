#!/usr/bin/env python3
"""End-to-end test of liveclass's embedded SFU with the official LiveKit Python SDK.

Three participants (alice, bob, carol) join one room through `livekit.rtc` exactly as they would join a
LiveKit server. alice publishes a generated microphone track (440 Hz sine) and a generated 320x240 camera
track (solid colours from a fixed palette, changing every 250 ms); bob and a late-joining carol must decode
them; data packets go both ways; carol's departure must reach the others.

Plain asyncio script: no pytest. Every check prints PASS/FAIL with what was measured; a failed check
that later steps depend on stops the scenario. Exit code 0 only if every check passed. The last line
printed is one JSON object of measured figures.

Usage:
    python3 sfu_test.py --url ws://127.0.0.1:PORT --api-key KEY --api-secret SECRET
(the key pair defaults to $LIVEKIT_API_KEY / $LIVEKIT_API_SECRET, the URL to $SFU_URL).

Logs: --sdk-log FILE receives the SDK's Python and FFI (Rust) log records; set LIVEKIT_RTC_DEBUG=1 and
RUST_LOG=debug (or e.g. `livekit=debug,livekit_api=debug`) to see the FFI's debug view.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import faulthandler
import json
import logging
import math
import os
import secrets
import signal
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import numpy as np
from livekit import api, rtc

# ---------------------------------------------------------------- parameters and bounds (seconds)

OVERALL_TIMEOUT = 85.0  # whole scenario; a watchdog hard-exits a few seconds after it
CONNECT_BOUND = 10.0  # Room.connect()
PUBLISH_BOUND = 10.0  # publish_track() (LiveKit's JS SDK gives up after 10 s)
SUBSCRIBE_BOUND = 10.0  # from connect() returning to track_subscribed for both of alice's tracks
BOB_FRAMES_BOUND = 10.0  # from subscription to MIN_VIDEO_FRAMES decoded frames
MIN_VIDEO_FRAMES = 20
AUDIO_BOUND = 10.0  # from subscription to MIN_AUDIO_SECONDS of decoded audio
MIN_AUDIO_SECONDS = 1.0
BOB_JOIN_AFTER = 1.0  # bob connects this long after alice's publish_track calls returned (negotiation done)
LATE_JOIN_AFTER = 2.5  # carol connects at least this long after publishing started and after bob's first frame
CAROL_FIRST_FRAME_BOUND = 3.0  # from carol's track_subscribed to her first decoded frame (needs a keyframe)
DATA_BOUND = 5.0
DISCONNECT_NOTIFY_BOUND = 5.0
LEAVE_BOUND = 5.0

WIDTH, HEIGHT, FPS = 320, 240, 20
# Sizes a receiver may decode: the published one; with simulcast, any layer (the SFU forwards the best it
# gets, and a publisher short of bandwidth or CPU may not send the top layer yet).
RECEIVED_SIZES = {(WIDTH, HEIGHT)}
SAMPLE_RATE, CHANNELS, TONE_HZ, TONE_AMPLITUDE = 48000, 1, 440.0, 0.3
COLOUR_PERIOD = 0.25  # seconds per palette colour
PALETTE = [
    (255, 0, 0),
    (0, 255, 0),
    (0, 0, 255),
    (255, 255, 0),
    (0, 255, 255),
    (255, 0, 255),
    (255, 255, 255),
    (128, 128, 128),
]
COLOUR_MATCH_DISTANCE = 60.0  # Euclidean RGB distance to the nearest palette colour after VP8 + YUV round trip

T0 = time.monotonic()
figures: dict[str, Any] = {}
results: list[tuple[str, bool, str]] = []
current_step = "start"


def now() -> float:
    return time.monotonic() - T0


def say(msg: str) -> None:
    print(f"[{now():7.3f}s] {msg}", flush=True)


def ms(seconds: Optional[float]) -> Optional[float]:
    return None if seconds is None else round(seconds * 1000.0, 1)


class Fatal(Exception):
    """A failed check that later steps depend on."""


def check(name: str, ok: bool, detail: str = "", fatal: bool = False) -> bool:
    results.append((name, ok, detail))
    say(f"{'PASS' if ok else 'FAIL'}: {name}" + (f" — {detail}" if detail else ""))
    if not ok and fatal:
        raise Fatal(name)
    return ok


def step(name: str) -> None:
    global current_step
    current_step = name
    say(f"--- {name}")


# ---------------------------------------------------------------- helpers


def mint(key: str, secret: str, identity: str, room: str) -> str:
    grants = api.VideoGrants(
        room_join=True, room=room, can_publish=True, can_subscribe=True, can_publish_data=True
    )
    return (
        api.AccessToken(key, secret)
        .with_identity(identity)
        .with_name(identity)
        .with_grants(grants)
        .with_ttl(datetime.timedelta(minutes=10))
        .to_jwt()
    )


def http_base(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    scheme = {"ws": "http", "wss": "https"}.get(parts.scheme, parts.scheme)
    return urllib.parse.urlunsplit((scheme, parts.netloc, parts.path.rstrip("/"), "", ""))


def preflight(url: str, token: str) -> tuple[Optional[int], str]:
    """GET /rtc/v1/validate as the SDKs do after a failed join. Returns (status, body) or (None, error)."""
    target = f"{http_base(url)}/rtc/v1/validate?{urllib.parse.urlencode({'access_token': token})}"
    req = urllib.request.Request(target, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, resp.read(300).decode("utf-8", "replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read(300).decode("utf-8", "replace")
    except Exception as e:  # connection refused, timeout, ...
        return None, f"{type(e).__name__}: {e}"


async def wait_until(pred: Callable[[], bool], timeout: float, interval: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if pred():
            return True
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(interval)


def nearest_palette(rgb: tuple[float, float, float]) -> tuple[int, float]:
    best, dist = -1, 1e9
    for i, c in enumerate(PALETTE):
        d = math.dist(rgb, c)
        if d < dist:
            best, dist = i, d
    return best, dist


async def video_rtp_stats(room: rtc.Room, direction: str) -> dict[str, Any]:
    """Summed counters of the room's video outbound-rtp (direction 'out') or inbound-rtp ('in') streams."""
    try:
        st = await asyncio.wait_for(room.get_rtc_stats(), 3)
    except Exception as e:
        return {"error": f"{type(e).__name__}: {e}"}
    out: dict[str, Any] = {}
    for s in list(st.publisher_stats) + list(st.subscriber_stats):
        which = s.WhichOneof("stats")
        if direction == "out" and which == "outbound_rtp" and s.outbound_rtp.stream.kind == "video":
            o = s.outbound_rtp.outbound
            for k in ("frames_encoded", "key_frames_encoded", "pli_count", "fir_count", "nack_count"):
                out[k] = out.get(k, 0) + getattr(o, k)
            out["frame_size"] = f"{o.frame_width}x{o.frame_height}"
            out["encoder"] = o.encoder_implementation
            out["quality_limitation_reason"] = o.quality_limitation_reason
        elif direction == "in" and which == "inbound_rtp" and s.inbound_rtp.stream.kind == "video":
            i = s.inbound_rtp.inbound
            for k in ("frames_decoded", "key_frames_decoded", "pli_count", "fir_count", "nack_count", "frames_dropped"):
                out[k] = out.get(k, 0) + getattr(i, k)
            out["packets_lost"] = out.get("packets_lost", 0) + s.inbound_rtp.received.packets_lost
    return out


# ---------------------------------------------------------------- receivers


@dataclass
class VideoStats:
    subscribed_at: float
    first_frame_at: Optional[float] = None
    frames: int = 0
    frames_expected_size: int = 0
    sizes: dict[str, int] = field(default_factory=dict)
    colours: list[int] = field(default_factory=list)  # palette index per frame, -1 = no match
    worst_distance: float = 0.0
    last_frame_at: Optional[float] = None
    error: Optional[str] = None


@dataclass
class AudioStats:
    subscribed_at: float
    first_frame_at: Optional[float] = None
    frames: int = 0
    samples: int = 0
    sample_rates: set[int] = field(default_factory=set)
    tail: list[np.ndarray] = field(default_factory=list)  # kept up to ~2 s of samples (after the first 0.5 s)
    error: Optional[str] = None


async def consume_video(track: rtc.Track, st: VideoStats, who: str) -> None:
    stream = rtc.VideoStream(track, format=rtc.VideoBufferType.RGBA)
    try:
        async for ev in stream:
            t = now()
            f = ev.frame
            if st.first_frame_at is None:
                st.first_frame_at = t
                say(f"{who}: first video frame {f.width}x{f.height} {ms(t - st.subscribed_at)} ms after subscription")
            st.frames += 1
            st.last_frame_at = t
            key = f"{f.width}x{f.height}"
            st.sizes[key] = st.sizes.get(key, 0) + 1
            if (f.width, f.height) in RECEIVED_SIZES:
                st.frames_expected_size += 1
            try:
                px = np.frombuffer(f.data, dtype=np.uint8).reshape(f.height, f.width, 4)
                cy, cx = f.height // 2, f.width // 2
                centre = px[max(cy - 8, 0) : cy + 8, max(cx - 8, 0) : cx + 8, :3].reshape(-1, 3).mean(axis=0)
                idx, dist = nearest_palette(tuple(float(v) for v in centre))
                st.worst_distance = max(st.worst_distance, dist)
                st.colours.append(idx if dist <= COLOUR_MATCH_DISTANCE else -1)
            except Exception as e:  # keep counting frames even if the pixel check breaks
                st.error = f"pixel check: {e!r}"
    except asyncio.CancelledError:
        raise
    except Exception as e:
        st.error = repr(e)
    finally:
        await stream.aclose()


async def consume_audio(track: rtc.Track, st: AudioStats, who: str) -> None:
    stream = rtc.AudioStream(track, sample_rate=SAMPLE_RATE, num_channels=CHANNELS)
    skip_samples = int(0.5 * SAMPLE_RATE)  # jitter buffer warm-up, opus start-up
    keep_samples = 2 * SAMPLE_RATE
    kept = 0
    try:
        async for ev in stream:
            f = ev.frame
            if st.first_frame_at is None:
                st.first_frame_at = now()
                say(f"{who}: first audio frame ({f.samples_per_channel} samples @ {f.sample_rate} Hz) "
                    f"{ms(st.first_frame_at - st.subscribed_at)} ms after subscription")
            st.frames += 1
            st.sample_rates.add(f.sample_rate)
            data = np.frombuffer(f.data, dtype=np.int16)
            if f.num_channels > 1:
                data = data.reshape(-1, f.num_channels)[:, 0]
            if st.samples >= skip_samples and kept < keep_samples:
                st.tail.append(data.copy())
                kept += len(data)
            st.samples += f.samples_per_channel
    except asyncio.CancelledError:
        raise
    except Exception as e:
        st.error = repr(e)
    finally:
        await stream.aclose()


def analyse_audio(st: AudioStats) -> tuple[float, float]:
    """(RMS in int16 units, dominant frequency in Hz) of the kept samples."""
    if not st.tail:
        return 0.0, 0.0
    x = np.concatenate(st.tail).astype(np.float64)
    rms = float(np.sqrt(np.mean(x * x)))
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    freqs = np.fft.rfftfreq(len(x), 1.0 / SAMPLE_RATE)
    spectrum[freqs < 50] = 0
    return rms, float(freqs[int(np.argmax(spectrum))])


# ---------------------------------------------------------------- participants


class Client:
    def __init__(self, identity: str, url: str, token: str):
        self.identity = identity
        self.url = url
        self.token = token
        self.room = rtc.Room()
        self.connected = False
        self.events: list[tuple[float, str, str]] = []
        self.video: dict[str, VideoStats] = {}  # by publisher identity
        self.audio: dict[str, AudioStats] = {}
        self.subscribed: dict[tuple[str, str], float] = {}  # (publisher, "video"/"audio") -> time
        self.data: list[tuple[float, str, Optional[str], bytes, int]] = []  # (t, sender, topic, payload, kind)
        self.joined: dict[str, float] = {}
        self.left: dict[str, float] = {}
        self.tasks: list[asyncio.Task] = []
        r = self.room
        r.on("track_subscribed", self._on_track_subscribed)
        r.on("track_subscription_failed", lambda p, sid, err: self._ev("track_subscription_failed", f"{p.identity} {sid} {err}"))
        r.on("track_published", lambda pub, p: self._ev("track_published", f"{p.identity} {pub.sid} {pub.name}"))
        r.on("participant_connected", self._on_participant_connected)
        r.on("participant_disconnected", self._on_participant_disconnected)
        r.on("data_received", self._on_data)
        r.on("reconnecting", lambda: self._ev("reconnecting", ""))
        r.on("reconnected", lambda: self._ev("reconnected", ""))
        r.on("disconnected", lambda reason=None: self._ev("disconnected", str(reason)))
        r.on("connection_state_changed", lambda s: self._ev("connection_state_changed", str(s)))
        r.on("local_track_subscribed", lambda t: self._ev("local_track_subscribed", t.sid))

    def _ev(self, name: str, detail: str) -> None:
        self.events.append((now(), name, detail))
        if name in ("reconnecting", "reconnected", "disconnected", "track_subscription_failed"):
            say(f"{self.identity}: event {name} {detail}")

    def _on_participant_connected(self, p: rtc.RemoteParticipant) -> None:
        self.joined[p.identity] = now()
        self._ev("participant_connected", p.identity)
        say(f"{self.identity}: participant_connected {p.identity} ({p.sid})")

    def _on_participant_disconnected(self, p: rtc.RemoteParticipant) -> None:
        self.left[p.identity] = now()
        self._ev("participant_disconnected", p.identity)
        say(f"{self.identity}: participant_disconnected {p.identity}")

    def _on_data(self, packet: rtc.DataPacket) -> None:
        sender = packet.participant.identity if packet.participant is not None else "<server>"
        self.data.append((now(), sender, packet.topic, packet.data, int(packet.kind)))
        self._ev("data_received", f"{sender} {packet.topic} {len(packet.data)}B")

    def _on_track_subscribed(self, track: rtc.Track, pub: rtc.RemoteTrackPublication, p: rtc.RemoteParticipant) -> None:
        t = now()
        kind = "video" if track.kind == rtc.TrackKind.KIND_VIDEO else "audio"
        self.subscribed[(p.identity, kind)] = t
        self._ev("track_subscribed", f"{p.identity} {kind} {pub.sid}")
        say(f"{self.identity}: track_subscribed {kind} {pub.sid} from {p.identity} (source {pub.source})")
        if kind == "video":
            st = VideoStats(subscribed_at=t)
            self.video[p.identity] = st
            self.tasks.append(asyncio.ensure_future(consume_video(track, st, self.identity)))
        else:
            sta = AudioStats(subscribed_at=t)
            self.audio[p.identity] = sta
            self.tasks.append(asyncio.ensure_future(consume_audio(track, sta, self.identity)))

    async def connect(self) -> float:
        t = time.monotonic()
        await asyncio.wait_for(
            self.room.connect(self.url, self.token, rtc.RoomOptions(auto_subscribe=True)), CONNECT_BOUND
        )
        self.connected = True
        return time.monotonic() - t

    async def leave(self) -> float:
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            try:
                await asyncio.wait_for(task, 2)
            except BaseException:
                pass
        t = time.monotonic()
        if self.connected:
            self.connected = False
            await asyncio.wait_for(self.room.disconnect(), LEAVE_BOUND)
        return time.monotonic() - t

    def unexpected_events(self) -> list[tuple[float, str, str]]:
        return [e for e in self.events if e[1] in ("reconnecting", "reconnected", "track_subscription_failed")]


# ---------------------------------------------------------------- alice's generated media


async def generate_audio(source: rtc.AudioSource, stop: asyncio.Event) -> None:
    n = SAMPLE_RATE // 100  # 10 ms
    phase = 0
    amp = TONE_AMPLITUDE * 32767
    while not stop.is_set():
        frame = rtc.AudioFrame.create(SAMPLE_RATE, CHANNELS, n)
        t = (np.arange(n) + phase) / SAMPLE_RATE
        samples = (amp * np.sin(2 * np.pi * TONE_HZ * t)).astype(np.int16)
        np.copyto(np.frombuffer(frame.data, dtype=np.int16), samples)
        phase += n
        await source.capture_frame(frame)  # paces itself once the source's queue is full


async def generate_video(source: rtc.VideoSource, stop: asyncio.Event, started: list) -> None:
    solid = []
    for r, g, b in PALETTE:
        buf = np.empty((HEIGHT, WIDTH, 4), dtype=np.uint8)
        buf[:, :] = (r, g, b, 255)
        solid.append(buf.tobytes())
    start = time.monotonic()
    started.append(now())
    i = 0
    while not stop.is_set():
        elapsed = time.monotonic() - start
        colour = int(elapsed / COLOUR_PERIOD) % len(PALETTE)
        source.capture_frame(rtc.VideoFrame(WIDTH, HEIGHT, rtc.VideoBufferType.RGBA, solid[colour]))
        i += 1
        delay = start + i / FPS - time.monotonic()
        await asyncio.sleep(max(delay, 0))


# ---------------------------------------------------------------- scenario


def sizes_label() -> str:
    return " or ".join(f"{w}x{h}" for w, h in sorted(RECEIVED_SIZES, reverse=True))


async def scenario(args: argparse.Namespace, clients: list[Client]) -> None:
    room = args.room
    key, secret = args.api_key, args.api_secret
    tokens = {who: mint(key, secret, who, room) for who in ("alice", "bob", "carol")}
    figures["room"] = room
    say(f"url={args.url} room={room}")

    step("preflight: GET /rtc/v1/validate")
    status, body = await asyncio.to_thread(preflight, args.url, tokens["alice"])
    if args.no_preflight and status != 200:
        say(f"--no-preflight: ignoring HTTP {status} from /rtc/v1/validate")
        status = 200
    figures["validate_status"] = status
    if status is None:
        check("server reachable", False, f"{http_base(args.url)}: {body}", fatal=True)
    if status == 404:
        check(
            "SFU present",
            False,
            "GET /rtc/v1/validate returned 404: this server has no LiveKit-compatible SFU "
            "(or it is off: is LIVEKIT_URL set? LIVEKIT_API_KEY/SECRET given?)",
            fatal=True,
        )
    check("/rtc/v1/validate accepts a valid token", status == 200, f"HTTP {status}: {body.strip()[:200]!r}")

    alice, bob, carol = (Client(who, args.url, tokens[who]) for who in ("alice", "bob", "carol"))
    clients.extend([alice, bob, carol])

    # ---- alice joins and publishes
    step("alice connects")
    try:
        dt = await alice.connect()
    except asyncio.TimeoutError:
        check("alice connects", False, f"Room.connect did not return within {CONNECT_BOUND} s", fatal=True)
    except rtc.ConnectError as e:
        check("alice connects", False, f"ConnectError: {e.message}", fatal=True)
    figures["alice_connect_ms"] = ms(dt)
    lp = alice.room.local_participant
    check("alice connects", True, f"{ms(dt)} ms, room sid {alice.room.name!r}, participant sid {lp.sid}")
    check("participant sid starts with PA_", lp.sid.startswith("PA_"), lp.sid)
    check("room name is the token's room", alice.room.name == room, f"{alice.room.name!r}")
    check("local identity is the token's", lp.identity == "alice", lp.identity)

    step(f"alice publishes audio (microphone) and video (camera, {'simulcast' if args.simulcast else 'no simulcast'})")
    audio_source = rtc.AudioSource(SAMPLE_RATE, CHANNELS)
    video_source = rtc.VideoSource(WIDTH, HEIGHT)
    audio_track = rtc.LocalAudioTrack.create_audio_track("mic", audio_source)
    video_track = rtc.LocalVideoTrack.create_video_track("cam", video_source)
    stop = asyncio.Event()
    video_started: list = []
    gen = [
        asyncio.ensure_future(generate_audio(audio_source, stop)),
        asyncio.ensure_future(generate_video(video_source, stop, video_started)),
    ]
    args._generators = (stop, gen)
    await asyncio.sleep(0.1)
    publish_started = now()
    for name, track, opts in (
        ("audio", audio_track, rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE)),
        ("video", video_track, rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_CAMERA, simulcast=args.simulcast)),
    ):
        t = time.monotonic()
        try:
            pub = await asyncio.wait_for(lp.publish_track(track, opts), PUBLISH_BOUND)
        except asyncio.TimeoutError:
            check(f"alice publishes {name}", False, f"publish_track did not return within {PUBLISH_BOUND} s", fatal=True)
        except Exception as e:
            check(f"alice publishes {name}", False, f"{type(e).__name__}: {e}", fatal=True)
        dt = time.monotonic() - t
        figures[f"alice_publish_{name}_ms"] = ms(dt)
        check(f"alice publishes {name}", True, f"{ms(dt)} ms, track sid {pub.sid}")
        check(f"{name} track sid starts with TR_", pub.sid.startswith("TR_"), pub.sid)

    # ---- bob joins and receives
    await asyncio.sleep(max(0.0, publish_started + BOB_JOIN_AFTER - now()))
    step("bob connects and subscribes to alice's tracks")
    try:
        dt = await bob.connect()
    except asyncio.TimeoutError:
        check("bob connects", False, f"Room.connect did not return within {CONNECT_BOUND} s", fatal=True)
    except rtc.ConnectError as e:
        check("bob connects", False, f"ConnectError: {e.message}", fatal=True)
    bob_connected_at = now()
    figures["bob_connect_ms"] = ms(dt)
    check("bob connects", True, f"{ms(dt)} ms")
    remote = bob.room.remote_participants
    check("bob sees alice in the room on join", "alice" in remote, f"remote participants: {sorted(remote)}")
    if "alice" in remote:
        pubs = remote["alice"].track_publications
        kinds = sorted(("video" if p.kind == rtc.TrackKind.KIND_VIDEO else "audio") for p in pubs.values())
        check("bob sees alice's two publications on join (JoinResponse.other_participants[].tracks)",
              kinds == ["audio", "video"], f"{kinds}")
    ok = await wait_until(lambda: ("alice", "video") in bob.subscribed and ("alice", "audio") in bob.subscribed, SUBSCRIBE_BOUND)
    got = sorted(k for (p, k) in bob.subscribed if p == "alice")
    check("bob gets track_subscribed for alice's audio and video", ok,
          f"within {SUBSCRIBE_BOUND} s: got {got}", fatal=not got)
    if bob.subscribed:
        figures["bob_subscribe_ms"] = ms(max(bob.subscribed.values()) - bob_connected_at)
    ok = await wait_until(lambda: "bob" in alice.joined, 3)
    check("alice gets participant_connected for bob", ok)

    step("bob decodes alice's video and audio")
    vs = bob.video.get("alice")
    if vs is not None:
        ok = await wait_until(lambda: vs.frames_expected_size >= MIN_VIDEO_FRAMES, BOB_FRAMES_BOUND)
        first = None if vs.first_frame_at is None else vs.first_frame_at - vs.subscribed_at
        figures["bob_first_video_frame_ms"] = ms(first)
        check(f"bob decodes ≥ {MIN_VIDEO_FRAMES} video frames of {sizes_label()}", ok,
              f"{vs.frames_expected_size} of that size, {vs.frames} in all, sizes {vs.sizes}, within {BOB_FRAMES_BOUND} s"
              f" (first frame after {ms(first)} ms){', stream error ' + vs.error if vs.error else ''}")
    as_ = bob.audio.get("alice")
    if as_ is not None:
        ok = await wait_until(lambda: as_.samples >= int((0.5 + MIN_AUDIO_SECONDS) * SAMPLE_RATE), AUDIO_BOUND)
        figures["bob_first_audio_frame_ms"] = ms(None if as_.first_frame_at is None else as_.first_frame_at - as_.subscribed_at)
        check(f"bob receives ≥ {0.5 + MIN_AUDIO_SECONDS} s of audio", ok,
              f"{as_.frames} frames, {as_.samples / SAMPLE_RATE:.2f} s, rates {sorted(as_.sample_rates)}"
              f"{', stream error ' + as_.error if as_.error else ''}")
        rms, peak = analyse_audio(as_)
        figures["bob_audio_rms"] = round(rms, 1)
        figures["bob_audio_peak_hz"] = round(peak, 1)
        expected_rms = TONE_AMPLITUDE * 32767 / math.sqrt(2)
        check("bob's audio is alice's 440 Hz tone", rms > 0.25 * expected_rms and abs(peak - TONE_HZ) < 15,
              f"RMS {rms:.0f} (sent {expected_rms:.0f}), dominant {peak:.1f} Hz")
    if vs is not None and vs.frames:
        matched = [c for c in vs.colours if c >= 0]
        distinct = len(set(matched))
        span = (vs.last_frame_at or 0) - (vs.first_frame_at or 0)
        figures["bob_video_fps"] = round((vs.frames - 1) / span, 1) if span > 0 else None
        figures["bob_colours_distinct"] = distinct
        figures["bob_colour_match_ratio"] = round(len(matched) / len(vs.colours), 3) if vs.colours else None
        check("bob's video shows alice's changing colours", distinct >= 3 and len(matched) >= 0.8 * len(vs.colours),
              f"{distinct} distinct palette colours, {len(matched)}/{len(vs.colours)} frames match "
              f"(worst distance {vs.worst_distance:.0f}), {figures['bob_video_fps']} fps")

    # ---- carol joins late and needs a keyframe
    step("carol joins late")
    ref = max([publish_started] + ([vs.first_frame_at] if vs and vs.first_frame_at else []))
    wait = ref + LATE_JOIN_AFTER - now()
    if wait > 0:
        await asyncio.sleep(wait)
    figures["carol_joined_after_publish_s"] = round(now() - publish_started, 2)
    alice_before = await video_rtp_stats(alice.room, "out")
    t_start = now()
    try:
        dt = await carol.connect()
        figures["carol_connect_ms"] = ms(dt)
        check("carol connects", True, f"{ms(dt)} ms, {figures['carol_joined_after_publish_s']} s after alice started publishing")
    except asyncio.TimeoutError:
        check("carol connects", False, f"Room.connect did not return within {CONNECT_BOUND} s")
    except rtc.ConnectError as e:
        check("carol connects", False, f"ConnectError: {e.message}")
    if carol.connected:
        pubs = carol.room.remote_participants["alice"].track_publications if "alice" in carol.room.remote_participants else {}
        kinds = sorted(("video" if p.kind == rtc.TrackKind.KIND_VIDEO else "audio") for p in pubs.values())
        check("carol sees alice's two publications on join", kinds == ["audio", "video"], f"{kinds}")
        ok = await wait_until(lambda: ("alice", "video") in carol.subscribed, SUBSCRIBE_BOUND)
        check("carol gets track_subscribed for alice's video", ok, f"within {SUBSCRIBE_BOUND} s")
        cvs = carol.video.get("alice")
        if cvs is not None:
            ok = await wait_until(lambda: cvs.first_frame_at is not None, CAROL_FIRST_FRAME_BOUND)
            since_sub = None if cvs.first_frame_at is None else cvs.first_frame_at - cvs.subscribed_at
            since_join = None if cvs.first_frame_at is None else cvs.first_frame_at - t_start
            figures["carol_first_frame_after_subscribe_ms"] = ms(since_sub)
            figures["carol_first_frame_after_connect_start_ms"] = ms(since_join)
            check(f"carol decodes her first video frame within {CAROL_FIRST_FRAME_BOUND} s of subscribing (keyframe via the SFU)",
                  ok, f"{ms(since_sub)} ms after track_subscribed, {ms(since_join)} ms after connect() started")
            if not ok:
                # tell a late keyframe from no media at all
                await wait_until(lambda: cvs.first_frame_at is not None, 5)
                figures["carol_first_frame_after_subscribe_ms"] = ms(
                    None if cvs.first_frame_at is None else cvs.first_frame_at - cvs.subscribed_at)
                say(f"carol: first frame {'after ' + str(figures['carol_first_frame_after_subscribe_ms']) + ' ms' if cvs.first_frame_at else 'still none after 5 s more'}")
            if cvs.first_frame_at is not None:
                ok = await wait_until(lambda: cvs.frames_expected_size >= 5, 3)
                check(f"carol's video keeps flowing at {sizes_label()}", ok, f"{cvs.frames} frames, sizes {cvs.sizes}")
            # How carol got her keyframe: informational (an SFU may also cache keyframes).
            alice_after = await video_rtp_stats(alice.room, "out")
            carol_in = await video_rtp_stats(carol.room, "in")
            figures["alice_video_out_before_carol"] = alice_before
            figures["alice_video_out_after_carol"] = alice_after
            figures["carol_video_in"] = carol_in
            say(f"keyframe path: alice outbound video before carol {alice_before}; after {alice_after}; "
                f"carol inbound video {carol_in}")
        ok = await wait_until(lambda: ("alice", "audio") in carol.subscribed
                              and carol.audio["alice"].frames > 0, SUBSCRIBE_BOUND)
        check("carol receives alice's audio", ok)
        ok = await wait_until(lambda: "carol" in alice.joined and "carol" in bob.joined, 3)
        check("alice and bob get participant_connected for carol", ok,
              f"alice {'yes' if 'carol' in alice.joined else 'no'}, bob {'yes' if 'carol' in bob.joined else 'no'}")

    # ---- data packets
    step("data: alice → room (reliable, topic 'test')")
    payload = b"hello from alice " + secrets.token_hex(8).encode()
    t = now()
    await lp.publish_data(payload, reliable=True, topic="test")

    def got_from(c: Client, sender: str, topic: str, data: bytes) -> Optional[float]:
        for (ts, s, tp, d, _k) in c.data:
            if s == sender and tp == topic and d == data:
                return ts
        return None

    ok = await wait_until(lambda: got_from(bob, "alice", "test", payload) is not None, DATA_BOUND)
    ts = got_from(bob, "alice", "test", payload)
    figures["data_latency_ms"] = ms(None if ts is None else ts - t)
    seen = [(s, tp, d[:40]) for (_, s, tp, d, _) in bob.data]
    check("bob receives alice's reliable data (identity alice, topic test, same payload)", ok,
          f"{ms(None if ts is None else ts - t)} ms; bob got {seen}")
    if carol.connected:
        ok = await wait_until(lambda: got_from(carol, "alice", "test", payload) is not None, 2)
        check("carol receives it too", ok)
    check("alice does not get her own packet back", got_from(alice, "alice", "test", payload) is None)

    step("data: bob → alice (reliable, topic 'reply') and alice → bob lossy")
    reply = b"reply from bob " + secrets.token_hex(4).encode()
    await bob.room.local_participant.publish_data(reply, reliable=True, topic="reply",
                                                  destination_identities=["alice"])
    ok = await wait_until(lambda: got_from(alice, "bob", "reply", reply) is not None, DATA_BOUND)
    check("alice receives bob's data addressed to her", ok, f"alice got {[(s, tp) for (_, s, tp, _, _) in alice.data]}")
    if carol.connected:
        await asyncio.sleep(0.3)
        check("carol does not receive data addressed to alice only",
              got_from(carol, "bob", "reply", reply) is None)
    lossy = b"lossy " + secrets.token_hex(4).encode()
    for _ in range(5):
        await lp.publish_data(lossy, reliable=False, topic="lossy")
        await asyncio.sleep(0.05)
    ok = await wait_until(lambda: got_from(bob, "alice", "lossy", lossy) is not None, DATA_BOUND)
    check("bob receives alice's lossy data (≥ 1 of 5)", ok)

    # ---- carol leaves
    step("carol disconnects")
    if carol.connected:
        t = now()
        try:
            dt = await carol.leave()
            check("carol disconnects cleanly", True, f"{ms(dt)} ms")
        except asyncio.TimeoutError:
            check("carol disconnects cleanly", False, f"disconnect() did not return within {LEAVE_BOUND} s")
        ok = await wait_until(lambda: "carol" in alice.left and "carol" in bob.left, DISCONNECT_NOTIFY_BOUND)
        for c in (alice, bob):
            figures[f"{c.identity}_sees_carol_leave_ms"] = ms(c.left["carol"] - t) if "carol" in c.left else None
        check(f"alice and bob get participant_disconnected for carol within {DISCONNECT_NOTIFY_BOUND} s", ok,
              f"alice {figures['alice_sees_carol_leave_ms']} ms, bob {figures['bob_sees_carol_leave_ms']} ms")
        check("carol is gone from alice's and bob's participant lists",
              "carol" not in alice.room.remote_participants and "carol" not in bob.room.remote_participants)

    # ---- media still flowing to bob after all that
    if vs is not None:
        before = vs.frames
        await wait_until(lambda: vs.frames >= before + 10, 3)
        check("bob's video still flows after carol left", vs.frames >= before + 10, f"+{vs.frames - before} frames in ≤ 3 s")
        figures["bob_video_frames_total"] = vs.frames

    # ---- everyone leaves
    step("everyone leaves")
    stop.set()
    for g in gen:
        g.cancel()
    t = now()
    try:
        dt = await bob.leave()
        check("bob disconnects cleanly", True, f"{ms(dt)} ms")
    except asyncio.TimeoutError:
        check("bob disconnects cleanly", False, f"disconnect() did not return within {LEAVE_BOUND} s")
    ok = await wait_until(lambda: "bob" in alice.left, DISCONNECT_NOTIFY_BOUND)
    figures["alice_sees_bob_leave_ms"] = ms(alice.left["bob"] - t) if "bob" in alice.left else None
    check("alice gets participant_disconnected for bob", ok, f"{figures['alice_sees_bob_leave_ms']} ms")
    try:
        dt = await alice.leave()
        check("alice disconnects cleanly", True, f"{ms(dt)} ms")
    except asyncio.TimeoutError:
        check("alice disconnects cleanly", False, f"disconnect() did not return within {LEAVE_BOUND} s")
    for c in clients:
        bad = c.unexpected_events()
        check(f"{c.identity}: no reconnect / subscription failure during the run", not bad, f"{bad}" if bad else "")
        early = [e for e in c.events if e[1] == "disconnected" and e[0] < t - 0.001 and c is not carol]
        if early:
            check(f"{c.identity}: not disconnected by the server", False, f"{early}")


async def cleanup(args: argparse.Namespace, clients: list[Client]) -> None:
    gens = getattr(args, "_generators", None)
    if gens:
        stop, tasks = gens
        stop.set()
        for t in tasks:
            t.cancel()
    for c in clients:
        if c.connected:
            try:
                await asyncio.wait_for(c.leave(), LEAVE_BOUND + 2)
            except BaseException as e:
                say(f"cleanup: {c.identity} disconnect failed: {type(e).__name__} {e}")


def summary_and_exit(code_hint: int = 0) -> None:
    passed = sum(1 for _, ok, _ in results if ok)
    failed = sum(1 for _, ok, _ in results if not ok)
    if failed:
        print("\nFailed checks:", flush=True)
        for name, ok, detail in results:
            if not ok:
                print(f"  - {name}" + (f": {detail}" if detail else ""), flush=True)
    figures["total_s"] = round(now(), 2)
    figures["passed"], figures["failed"] = passed, failed
    print(f"\nsfu_test: {passed} passed, {failed} failed", flush=True)
    print(json.dumps(figures, sort_keys=True), flush=True)
    code = 1 if failed or code_hint else 0
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # the FFI's worker threads must not keep the process alive


def setup_logging(path: Optional[str]) -> None:
    root = logging.getLogger()
    root.setLevel(logging.DEBUG)
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    err = logging.StreamHandler(sys.stderr)
    err.setLevel(logging.WARNING)
    err.setFormatter(fmt)
    root.addHandler(err)
    if path:
        fh = logging.FileHandler(path, mode="w")
        fh.setLevel(logging.DEBUG)
        fh.setFormatter(fmt)
        root.addHandler(fh)
    for noisy in ("asyncio",):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", default=os.environ.get("SFU_URL"), help="LiveKit URL of the server, ws://host:port")
    p.add_argument("--api-key", default=os.environ.get("LIVEKIT_API_KEY"))
    p.add_argument("--api-secret", default=os.environ.get("LIVEKIT_API_SECRET"))
    p.add_argument("--room", default=f"sdk-test-{secrets.token_hex(4)}")
    p.add_argument("--sdk-log", default=os.environ.get("SDK_LOG_FILE"), help="file for the SDK's log records")
    p.add_argument("--simulcast", action="store_true", help="publish a 1280x720 camera with simulcast layers")
    p.add_argument("--no-preflight", action="store_true", help="try to join even if /rtc/v1/validate fails")
    p.add_argument("--timeout", type=float, default=OVERALL_TIMEOUT)
    args = p.parse_args()
    if args.simulcast:
        # Simulcast needs room for layers: 1280x720 gives LiveKit's three (q, h, f); the SFU forwards the best.
        global WIDTH, HEIGHT, RECEIVED_SIZES
        WIDTH, HEIGHT = 1280, 720
        RECEIVED_SIZES = {(1280, 720), (640, 360), (320, 180)}
    if not args.url or not args.api_key or not args.api_secret:
        p.error("--url (or $SFU_URL), --api-key and --api-secret (or $LIVEKIT_API_KEY/$LIVEKIT_API_SECRET) are required")
    setup_logging(args.sdk_log)

    # The SDK kills its own process with SIGTERM after an FFI panic ("FFI Panic: ..." on stderr).
    def on_sigterm(signum: int, frame: Any) -> None:
        check("client process not terminated", False,
              f"SIGTERM during step '{current_step}' — after an FFI panic the SDK kills its own process "
              "(see 'FFI Panic:' on stderr), else it came from outside")
        summary_and_exit(3)

    signal.signal(signal.SIGTERM, on_sigterm)
    faulthandler.dump_traceback_later(args.timeout + 8, exit=True)  # last resort if the loop itself is stuck

    async def run() -> int:
        clients: list[Client] = []
        code = 0
        try:
            await asyncio.wait_for(scenario(args, clients), args.timeout)
        except Fatal as e:
            say(f"stopping: '{e}' failed and the rest depends on it")
            code = 1
        except asyncio.TimeoutError:
            check("scenario finishes in time", False, f"overall timeout {args.timeout} s hit during step '{current_step}'")
            code = 1
        except Exception as e:
            import traceback

            traceback.print_exc()
            check("no unexpected exception", False, f"{type(e).__name__}: {e} during step '{current_step}'")
            code = 1
        finally:
            try:
                await asyncio.wait_for(cleanup(args, clients), 15)
            except BaseException as e:
                say(f"cleanup did not finish: {type(e).__name__}")
            for c in clients:
                ev = [(round(t, 3), n, d) for (t, n, d) in c.events if n not in ("data_received",)]
                logging.getLogger("sfu_test").debug("%s events: %s", c.identity, ev)
        return code

    code = asyncio.run(run())
    summary_and_exit(code)


if __name__ == "__main__":
    main()

//! One client connection speaking either our protocol (v1 JSON frames) or Socket.IO 4 (engine.io v4 over
//! WebSocket, the minimum the benchmarks need), plus HS256 tokens for synthetic users.

use std::net::{IpAddr, SocketAddr};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow, bail};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use futures::{SinkExt, StreamExt};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Target {
    Ours,
    Socketio,
}

/// Wall-clock microseconds: comparable across generator processes on one machine.
pub fn now_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or(0)
}

/// An HS256 token as the server issues them, for a synthetic user.
pub fn mint_token(secret: &[u8], tenant: &str, user: &str, name: &str, role: &str, ttl_secs: i64) -> String {
    let iat = (now_us() / 1_000_000) as i64;
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let claims = json!({"iss": "liveclass", "sub": user, "tid": tenant, "role": role, "name": name,
        "iat": iat, "exp": iat + ttl_secs});
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("hmac takes any key length");
    mac.update(format!("{header}.{payload}").as_bytes());
    let sig = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    format!("{header}.{payload}.{sig}")
}

/// A synthetic user: a deterministic id per index so that runs are repeatable.
pub fn user_id(i: usize) -> String {
    format!("00000000-0000-4000-8000-{:012x}", i + 1)
}

/// The generator's WebSocket settings. tungstenite's default read buffer is 128 KiB, and it zeroes the
/// buffer's free space before every read: with thousands of clients that memset alone took a sixth of the
/// machine's CPU, which the servers under test then lacked. Server frames here are small; a bigger one grows
/// the buffer as needed.
/// tungstenite zero-fills `read_buffer_size` bytes before every read (128 KiB by default: 15% of all CPU
/// here once). A publication is about 250 bytes, a few of them a read: 1 KiB.
fn client_config() -> WebSocketConfig {
    WebSocketConfig::default().read_buffer_size(1024)
}

/// What a frame is, as far as the generator cares.
pub enum Frame {
    /// A room publication: `offset`, and the send timestamp and node embedded in a chat text.
    Message {
        offset: u64,
        stamp: Option<(u64, u8)>,
    },
    /// Any other event: its name (`type` or Socket.IO event) and body.
    Event(String, Value),
    /// Nothing to act on (handshake packets, pings answered, binary).
    Skip,
    Closed,
}

pub struct Conn {
    pub target: Target,
    ws: WebSocketStream<TcpStream>,
    next_id: u64,
}

/// Where a client connects: server address and source address to bind.
#[derive(Clone)]
pub struct Endpoint {
    pub addr: SocketAddr,
    pub host: String,
}

pub fn parse_url(url: &str) -> Result<Endpoint> {
    let rest = url.strip_prefix("ws://").or_else(|| url.strip_prefix("http://")).ok_or_else(|| anyhow!("ws:// url"))?;
    let host = rest.split('/').next().unwrap_or(rest).to_string();
    let addr: SocketAddr = host.parse().with_context(|| format!("{host}: expected ip:port"))?;
    Ok(Endpoint { addr, host })
}

/// The chat text: `<send µs>:<node>:` padded with `x` to `len` bytes.
pub fn chat_text(stamp_us: u64, node: u8, len: usize) -> String {
    let mut s = format!("{stamp_us}:{node}:");
    while s.len() < len {
        s.push('x');
    }
    s
}

// Searched once per received publication: prebuilt searchers, not `str::find`'s (which builds one per call).
static TEXT: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
    std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b"\"text\":\""));
static OFFSET: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
    std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b"\"offset\":"));

fn parse_stamp(frame: &str) -> Option<(u64, u8)> {
    let at = TEXT.find(frame.as_bytes())? + 8;
    let rest = frame.as_bytes().get(at..)?;
    let mut ts = 0u64;
    let mut i = 0;
    while i < rest.len() && rest[i].is_ascii_digit() {
        ts = ts * 10 + (rest[i] - b'0') as u64;
        i += 1;
    }
    if i == 0 || rest.get(i) != Some(&b':') {
        return None;
    }
    let node = rest.get(i + 1).filter(|b| b.is_ascii_digit()).map(|b| b - b'0').unwrap_or(0);
    Some((ts, node))
}

fn parse_offset(frame: &str) -> u64 {
    let Some(at) = OFFSET.find(frame.as_bytes()) else { return 0 };
    frame[at + 9..].bytes().take_while(|b| b.is_ascii_digit()).fold(0, |a, b| a * 10 + (b - b'0') as u64)
}

impl Conn {
    /// Connects, authenticates with `token` and waits for the welcome.
    /// With `join`, the room is joined as the connection opens (`?join=`; the peer reads the same query
    /// parameter); wait for its reply with [`Conn::joined`].
    pub async fn open(
        target: Target,
        ep: &Endpoint,
        src: Option<IpAddr>,
        token: &str,
        join: Option<&str>,
    ) -> Result<Conn> {
        let socket = match ep.addr {
            SocketAddr::V4(_) => TcpSocket::new_v4()?,
            SocketAddr::V6(_) => TcpSocket::new_v6()?,
        };
        if let Some(ip) = src {
            // Without this, bind() reserves a port that is free for every destination, searching past
            // all ports in use or in TIME_WAIT: after a few runs of 10k connections that search took 95%
            // of the generator's CPU (connects fell from 8k/s to 750/s). With it, connect() picks the port
            // and only needs the 4-tuple to be unique.
            nix::sys::socket::setsockopt(&socket, nix::sys::socket::sockopt::IpBindAddressNoPort, &true)
                .context("IP_BIND_ADDRESS_NO_PORT")?;
            socket.bind(SocketAddr::new(ip, 0)).with_context(|| format!("bind {ip}"))?;
        }
        socket.set_nodelay(true)?;
        let stream = socket.connect(ep.addr).await.with_context(|| format!("connect {}", ep.addr))?;
        let mut url = match target {
            Target::Ours => format!("ws://{}/ws?token={token}", ep.host),
            Target::Socketio => format!("ws://{}/socket.io/?EIO=4&transport=websocket&token={token}", ep.host),
        };
        if let Some(room) = join {
            url.push_str("&join=");
            url.push_str(room);
        }
        let (ws, _) = tokio_tungstenite::client_async_with_config(url, stream, Some(client_config()))
            .await
            .context("websocket handshake")?;
        let mut c = Conn { target, ws, next_id: 1 };
        if target == Target::Socketio {
            // engine.io open packet, then the Socket.IO connect of the main namespace.
            match c.ws.next().await {
                Some(Ok(Message::Text(t))) if t.starts_with('0') => {}
                other => bail!("expected engine.io open, got {other:?}"),
            }
            c.ws.send(Message::text("40")).await?;
        }
        loop {
            match c.recv().await? {
                Frame::Event(name, _) if name == "welcome" => return Ok(c),
                Frame::Event(name, body) if name == "error" || name == "connect_error" => bail!("refused: {body}"),
                Frame::Closed => bail!("closed before welcome"),
                _ => {}
            }
        }
    }

    pub fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    fn frame(&self, kind: &str, mut body: Value) -> String {
        match self.target {
            Target::Ours => {
                body["type"] = Value::from(kind);
                body.to_string()
            }
            Target::Socketio => format!("42{}", json!([kind, body])),
        }
    }

    pub async fn send_raw(&mut self, text: String) -> Result<()> {
        self.ws.send(Message::text(text)).await?;
        Ok(())
    }

    pub async fn send(&mut self, kind: &str, body: Value) -> Result<()> {
        let f = self.frame(kind, body);
        self.send_raw(f).await
    }

    /// A chat frame, built without a JSON tree (hot path).
    pub fn chat_frame(&self, id: u64, room: &str, text: &str) -> String {
        match self.target {
            Target::Ours => format!(r#"{{"type":"chat","id":{id},"room":"{room}","text":"{text}"}}"#),
            Target::Socketio => format!(r#"42["chat",{{"id":{id},"room":"{room}","text":"{text}"}}]"#),
        }
    }

    /// Joins `room` (optionally recovering from `(epoch, offset)`) and returns the `joined` (or
    /// `not_recoverable`) body; publications that arrive meanwhile are passed to `on_message`.
    pub async fn join(
        &mut self,
        room: &str,
        recover: Option<(&str, u64)>,
        mut on_message: impl FnMut(u64, Option<(u64, u8)>),
    ) -> Result<(String, Value)> {
        let id = self.next_id();
        let mut body = json!({"id": id, "room": room});
        if let Some((epoch, offset)) = recover {
            body["recover"] = json!({"epoch": epoch, "offset": offset});
        }
        self.send("join", body).await?;
        loop {
            match self.recv().await? {
                Frame::Event(name, body) if (name == "joined" || name == "error") && body["id"] == id => {
                    if name == "error" {
                        bail!("join {room}: {body}");
                    }
                    return Ok((name, body));
                }
                Frame::Event(name, body) if name == "not_recoverable" && body["room"] == room => {
                    return Ok((name, body));
                }
                Frame::Message { offset, stamp, .. } => on_message(offset, stamp),
                Frame::Closed => bail!("closed while joining {room}"),
                _ => {}
            }
        }
    }

    /// Waits for the reply to a join made while connecting: the room's `joined` (or `not_recoverable`).
    pub async fn joined(&mut self, room: &str) -> Result<(String, Value)> {
        loop {
            match self.recv().await? {
                Frame::Event(name, body) if body["room"] == room && (name == "joined" || name == "not_recoverable") => {
                    return Ok((name, body));
                }
                Frame::Event(name, body) if name == "error" && body["room"] == room => bail!("join {room}: {body}"),
                Frame::Closed => bail!("closed while joining {room}"),
                _ => {}
            }
        }
    }

    /// The next frame; answers engine.io pings itself (tungstenite answers WebSocket pings).
    pub async fn recv(&mut self) -> Result<Frame> {
        let msg = match self.ws.next().await {
            None => return Ok(Frame::Closed),
            Some(Err(e)) => return Err(e.into()),
            Some(Ok(m)) => m,
        };
        let text = match msg {
            Message::Text(t) => t,
            Message::Close(_) => return Ok(Frame::Closed),
            _ => return Ok(Frame::Skip),
        };
        let t = text.as_str();
        match self.target {
            Target::Ours => {
                if t.starts_with(r#"{"type":"message""#) {
                    return Ok(Frame::Message { offset: parse_offset(t), stamp: parse_stamp(t) });
                }
                let v: Value = serde_json::from_str(t).context("server frame")?;
                let name = v["type"].as_str().unwrap_or("").to_string();
                Ok(Frame::Event(name, v))
            }
            Target::Socketio => {
                if t.starts_with(r#"42["message","#) {
                    return Ok(Frame::Message { offset: parse_offset(t), stamp: parse_stamp(t) });
                }
                if t == "2" {
                    self.ws.send(Message::text("3")).await?;
                    return Ok(Frame::Skip);
                }
                if let Some(body) = t.strip_prefix("44") {
                    return Ok(Frame::Event("connect_error".into(), serde_json::from_str(body).unwrap_or_default()));
                }
                if t.starts_with("41") || t == "1" {
                    return Ok(Frame::Closed);
                }
                if let Some(body) = t.strip_prefix("42") {
                    let mut v: Value = serde_json::from_str(body).context("socket.io event")?;
                    let name = v[0].as_str().unwrap_or("").to_string();
                    return Ok(Frame::Event(name, v[1].take()));
                }
                Ok(Frame::Skip)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_and_offsets_parse() {
        let text = chat_text(1234567, 1, 40);
        assert_eq!(text.len(), 40);
        let ours = format!(
            r#"{{"type":"message","room":"lobby:t:r","offset":42,"data":{{"kind":"chat","from":{{"id":"u","name":"n"}},"text":"{text}","at":1}}}}"#
        );
        assert_eq!(parse_stamp(&ours), Some((1234567, 1)));
        assert_eq!(parse_offset(&ours), 42);
        let sio = format!(r#"42["message",{{"room":"r","offset":7,"data":{{"text":"{text}"}}}}]"#);
        assert_eq!(parse_stamp(&sio), Some((1234567, 1)));
        assert_eq!(parse_offset(&sio), 7);
        assert_eq!(parse_stamp(r#"{"text":"hello"}"#), None);
    }

    #[test]
    fn tokens_have_three_parts() {
        let t = mint_token(b"0123456789abcdef0123456789abcdef", "t", "u", "n", "student", 60);
        assert_eq!(t.split('.').count(), 3);
    }
}

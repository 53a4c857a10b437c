//! The LiveKit backend: join tokens for its clients, and its RoomService over Twirp (JSON) for rooms and
//! participants. Server calls carry a short-lived token with the grant they need (`roomCreate`,
//! `roomList`, or `roomAdmin` on the room), as LiveKit requires.

use std::time::Duration;

use futures::future::BoxFuture;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{Credentials, Join, JoinRequest, MediaBackend, MediaError, RoomInfo, RoomSpec, token};

/// A LiveKit server (self-hosted or Cloud).
#[derive(Debug, Clone)]
pub struct LiveKit {
    /// `wss://…` as clients reach it.
    pub url: String,
    /// Where its HTTP API is: the same host with `https`/`http`.
    pub api_url: String,
    pub credentials: Credentials,
    http: reqwest::Client,
}

impl LiveKit {
    pub fn new(url: impl Into<String>, credentials: Credentials) -> Self {
        let url = url.into();
        let api_url = if let Some(rest) = url.strip_prefix("wss://") {
            format!("https://{rest}")
        } else if let Some(rest) = url.strip_prefix("ws://") {
            format!("http://{rest}")
        } else {
            url.clone()
        };
        let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap_or_default();
        Self { url, api_url: api_url.trim_end_matches('/').to_string(), credentials, http }
    }

    /// One RoomService call (Twirp, JSON) with a token granting `grant`.
    async fn twirp(&self, method: &str, body: Value, grant: token::VideoGrant) -> Result<Value, MediaError> {
        let now = unix_now();
        let claims = token::Claims {
            iss: self.credentials.api_key.clone(),
            sub: String::new(),
            name: String::new(),
            metadata: String::new(),
            nbf: now - 5,
            exp: now + 60,
            video: grant,
        };
        let jwt = token::encode(&self.credentials.api_secret, &claims);
        let url = format!("{}/twirp/livekit.RoomService/{method}", self.api_url);
        let res = self
            .http
            .post(url)
            .bearer_auth(jwt)
            .json(&body)
            .send()
            .await
            .map_err(|e| MediaError::Unavailable(format!("LiveKit unreachable: {e}")))?;
        let status = res.status();
        let value: Value = res.json().await.unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(value);
        }
        #[derive(Deserialize)]
        struct TwirpError {
            code: String,
            msg: String,
        }
        let err: Option<TwirpError> = serde_json::from_value(value).ok();
        let (code, msg) = err.map(|e| (e.code, e.msg)).unwrap_or_else(|| (status.to_string(), String::new()));
        if status.is_server_error() || code == "unavailable" {
            Err(MediaError::Unavailable(format!("{method}: {code} {msg}")))
        } else if code == "not_found" {
            Err(MediaError::NotFound)
        } else {
            Err(MediaError::Rejected(format!("{method}: {code} {msg}")))
        }
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

fn admin(room: &str) -> token::VideoGrant {
    token::VideoGrant { room: room.to_string(), room_admin: true, ..Default::default() }
}

impl MediaBackend for LiveKit {
    fn name(&self) -> &'static str {
        "livekit"
    }

    fn join(&self, req: &JoinRequest<'_>) -> Join {
        let (token, expires_at_unix) = self.credentials.mint(req);
        Join { backend: self.name(), url: Some(self.url.clone()), token, expires_at_unix }
    }

    fn create_room<'a>(&'a self, spec: &'a RoomSpec) -> BoxFuture<'a, Result<RoomInfo, MediaError>> {
        Box::pin(async move {
            let body = json!({
                "name": spec.name, "empty_timeout": spec.empty_timeout_secs, "max_participants": spec.max_participants,
            });
            let grant = token::VideoGrant { room_create: true, ..Default::default() };
            self.twirp("CreateRoom", body, grant).await?;
            Ok(RoomInfo { name: spec.name.clone(), backend: self.name() })
        })
    }

    fn close_room<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<(), MediaError>> {
        Box::pin(async move {
            let grant = token::VideoGrant { room_create: true, ..Default::default() };
            match self.twirp("DeleteRoom", json!({ "room": name }), grant).await {
                Ok(_) | Err(MediaError::NotFound) => Ok(()),
                Err(e) => Err(e),
            }
        })
    }

    fn participants<'a>(&'a self, room: &'a str) -> BoxFuture<'a, Result<Vec<String>, MediaError>> {
        Box::pin(async move {
            let v = match self.twirp("ListParticipants", json!({ "room": room }), admin(room)).await {
                Ok(v) => v,
                Err(MediaError::NotFound) => return Ok(Vec::new()),
                Err(e) => return Err(e),
            };
            let list = v.get("participants").and_then(|p| p.as_array()).cloned().unwrap_or_default();
            Ok(list.iter().filter_map(|p| p.get("identity").and_then(|i| i.as_str()).map(String::from)).collect())
        })
    }

    fn mute_track<'a>(
        &'a self,
        room: &'a str,
        identity: &'a str,
        track_sid: &'a str,
        muted: bool,
    ) -> BoxFuture<'a, Result<(), MediaError>> {
        Box::pin(async move {
            let body = json!({ "room": room, "identity": identity, "track_sid": track_sid, "muted": muted });
            self.twirp("MutePublishedTrack", body, admin(room)).await.map(|_| ())
        })
    }

    fn remove_participant<'a>(&'a self, room: &'a str, identity: &'a str) -> BoxFuture<'a, Result<(), MediaError>> {
        Box::pin(async move {
            let body = json!({ "room": room, "identity": identity });
            match self.twirp("RemoveParticipant", body, admin(room)).await {
                Ok(_) | Err(MediaError::NotFound) => Ok(()),
                Err(e) => Err(e),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{MediaBackend, fake::FakeLiveKit};

    fn creds() -> Credentials {
        Credentials { api_key: "APIfake".into(), api_secret: "fake-secret-0123456789".into() }
    }

    #[tokio::test]
    async fn room_service_calls_carry_the_right_grants_and_map_errors() {
        let fake = FakeLiveKit::start(creds()).await;
        let lk = LiveKit::new(fake.url(), creds());
        let spec = RoomSpec { name: "lesson:1".into(), max_participants: 4, empty_timeout_secs: 600 };
        assert_eq!(lk.create_room(&spec).await.unwrap().backend, "livekit");
        assert_eq!(fake.rooms(), ["lesson:1"]);
        assert_eq!(fake.calls()[0].1["empty_timeout"], 600);
        fake.connect("lesson:1", "u1");
        fake.connect("lesson:1", "u2");
        assert_eq!(lk.participants("lesson:1").await.unwrap(), ["u1", "u2"]);
        lk.mute_track("lesson:1", "u2", "TR_mic", true).await.unwrap();
        assert_eq!(fake.muted(), [("lesson:1".to_string(), "u2".to_string(), "TR_mic".to_string(), true)]);
        assert!(matches!(lk.mute_track("lesson:1", "nobody", "TR_x", true).await, Err(MediaError::NotFound)));
        lk.remove_participant("lesson:1", "u1").await.unwrap();
        lk.remove_participant("lesson:1", "gone").await.unwrap();
        assert_eq!(fake.participants("lesson:1"), ["u2"]);
        fake.fail_next(1);
        assert!(matches!(lk.participants("lesson:1").await, Err(MediaError::Unavailable(_))));
        lk.close_room("lesson:1").await.unwrap();
        lk.close_room("lesson:1").await.unwrap();
        assert!(fake.rooms().is_empty());
        let wrong = LiveKit::new(fake.url(), Credentials { api_secret: "guess".into(), ..creds() });
        assert!(matches!(wrong.create_room(&spec).await, Err(MediaError::Rejected(_))));
    }
}

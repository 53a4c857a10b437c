//! LiveKit webhooks, verified as LiveKit signs them: the `Authorization` header (no `Bearer` prefix) is a
//! JWT signed with the API secret of the key named in `iss`, whose `sha256` claim is the base64 SHA-256 of
//! the raw body. A forged, tampered, expired or unsigned delivery is refused.

use base64::{Engine, engine::general_purpose::STANDARD};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::{Credentials, token};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    #[error("no Authorization token")]
    Missing,
    #[error("webhook token: {0}")]
    Token(#[from] token::TokenError),
    #[error("the token was issued for another API key")]
    WrongKey,
    #[error("the body doesn't match the token's sha256")]
    BodyMismatch,
    #[error("not a LiveKit webhook event")]
    Malformed,
}

#[derive(Debug, Serialize, Deserialize)]
struct WebhookClaims {
    iss: String,
    sha256: String,
    #[serde(default)]
    nbf: i64,
    exp: i64,
}

impl token::Times for WebhookClaims {
    fn window(&self) -> (i64, i64) {
        (self.nbf, self.exp)
    }
}

/// The event fields we act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Unique per event; LiveKit may deliver one more than once.
    pub id: String,
    /// `participant_joined`, `participant_left`, `room_started`, `room_finished`, `track_published`, ...
    pub kind: String,
    pub room: Option<String>,
    pub participant: Option<String>,
    /// Unix seconds.
    pub created_at: i64,
}

/// Verifies a delivery and parses its event.
pub fn verify(header: &str, body: &[u8], creds: &Credentials, now_unix: i64) -> Result<Event, WebhookError> {
    let jwt = header.trim();
    if jwt.is_empty() {
        return Err(WebhookError::Missing);
    }
    let claims: WebhookClaims = token::decode_as(&creds.api_secret, jwt, now_unix)?;
    if claims.iss != creds.api_key {
        return Err(WebhookError::WrongKey);
    }
    let digest = STANDARD.encode(Sha256::digest(body));
    if !bool::from(digest.as_bytes().ct_eq(claims.sha256.as_bytes())) {
        return Err(WebhookError::BodyMismatch);
    }
    parse(body)
}

fn parse(body: &[u8]) -> Result<Event, WebhookError> {
    let v: serde_json::Value = serde_json::from_slice(body).map_err(|_| WebhookError::Malformed)?;
    let text = |p: &str| v.pointer(p).and_then(|x| x.as_str()).map(String::from);
    // Protobuf JSON writes int64 as a string.
    let created_at = match v.get("createdAt") {
        Some(serde_json::Value::String(s)) => s.parse().unwrap_or(0),
        Some(n) => n.as_i64().unwrap_or(0),
        None => 0,
    };
    Ok(Event {
        id: text("/id").ok_or(WebhookError::Malformed)?,
        kind: text("/event").ok_or(WebhookError::Malformed)?,
        room: text("/room/name"),
        participant: text("/participant/identity"),
        created_at,
    })
}

/// The `Authorization` value LiveKit would send for `body` (tests, and a local LiveKit stand-in).
pub fn sign(body: &[u8], creds: &Credentials, now_unix: i64) -> String {
    let claims = WebhookClaims {
        iss: creds.api_key.clone(),
        sha256: STANDARD.encode(Sha256::digest(body)),
        nbf: now_unix,
        exp: now_unix + 300,
    };
    token::encode_any(&creds.api_secret, &claims)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds() -> Credentials {
        Credentials { api_key: "APIkey".into(), api_secret: "secret-secret".into() }
    }
    const BODY: &[u8] = br#"{"event":"participant_joined","room":{"name":"lesson:1","sid":"RM_1"},"participant":{"identity":"u1","sid":"PA_1"},"id":"EV_1","createdAt":"1700000000"}"#;

    #[test]
    fn a_signed_event_verifies_and_parses() {
        let e = verify(&sign(BODY, &creds(), 100), BODY, &creds(), 101).unwrap();
        assert_eq!((e.id.as_str(), e.kind.as_str()), ("EV_1", "participant_joined"));
        assert_eq!(
            (e.room.as_deref(), e.participant.as_deref(), e.created_at),
            (Some("lesson:1"), Some("u1"), 1_700_000_000)
        );
    }

    #[test]
    fn forged_tampered_stale_and_unsigned_are_refused() {
        let good = sign(BODY, &creds(), 100);
        let other = Credentials { api_secret: "other".into(), ..creds() };
        assert!(matches!(verify(&sign(BODY, &other, 100), BODY, &creds(), 101), Err(WebhookError::Token(_))));
        let tampered = String::from_utf8(BODY.to_vec()).unwrap().replace("u1", "u2");
        assert_eq!(verify(&good, tampered.as_bytes(), &creds(), 101), Err(WebhookError::BodyMismatch));
        assert!(matches!(verify(&good, BODY, &creds(), 100 + 301), Err(WebhookError::Token(token::TokenError::Time))));
        assert_eq!(verify("", BODY, &creds(), 101), Err(WebhookError::Missing));
        let wrong_key = Credentials { api_key: "OTHER".into(), ..creds() };
        assert_eq!(verify(&sign(BODY, &wrong_key, 100), BODY, &creds(), 101), Err(WebhookError::WrongKey));
    }
}

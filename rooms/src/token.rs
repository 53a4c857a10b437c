//! LiveKit access tokens: HS256 JWTs signed with the API secret, `iss` = API key, `sub` = the participant's
//! identity, `name`, `metadata`, `nbf`/`exp`, and the `video` grant. The same format whatever the backend,
//! so clients have one code path.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD as B64};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// LiveKit's `video` grant. Every permission is written out: LiveKit reads a missing `canPublish` or
/// `canSubscribe` as allowed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VideoGrant {
    pub room: String,
    pub room_join: bool,
    pub can_publish: bool,
    pub can_subscribe: bool,
    pub can_publish_data: bool,
    pub room_admin: bool,
    /// Joins without being seen by the others (observers).
    pub hidden: bool,
    /// Server API calls: create and delete rooms.
    pub room_create: bool,
    /// Server API calls: list rooms.
    pub room_list: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub sub: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub metadata: String,
    pub nbf: i64,
    pub exp: i64,
    pub video: VideoGrant,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("malformed token")]
    Malformed,
    #[error("token is not HS256")]
    Algorithm,
    #[error("bad token signature")]
    Signature,
    #[error("token expired or not yet valid")]
    Time,
}

fn mac(secret: &str) -> Hmac<Sha256> {
    Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length")
}

/// Signs `claims` with the API secret.
pub fn encode(secret: &str, claims: &Claims) -> String {
    encode_any(secret, claims)
}

/// Signs any claims (webhook tokens carry `sha256` instead of a grant).
pub fn encode_any<C: Serialize>(secret: &str, claims: &C) -> String {
    let header = B64.encode(r#"{"alg":"HS256","typ":"JWT"}"#);
    let payload = B64.encode(serde_json::to_vec(claims).unwrap_or_default());
    let input = format!("{header}.{payload}");
    let mut m = mac(secret);
    m.update(input.as_bytes());
    format!("{input}.{}", B64.encode(m.finalize().into_bytes()))
}

/// Verifies a token as a LiveKit server does (HS256 with the secret, within `nbf`..`exp`) and returns its claims.
pub fn decode(secret: &str, token: &str, now_unix: i64) -> Result<Claims, TokenError> {
    decode_as(secret, token, now_unix)
}

/// Claims with a validity window.
pub trait Times {
    /// `(nbf, exp)` in unix seconds.
    fn window(&self) -> (i64, i64);
}

impl Times for Claims {
    fn window(&self) -> (i64, i64) {
        (self.nbf, self.exp)
    }
}

/// [`decode`] for any claims shape with a validity window.
pub fn decode_as<C: serde::de::DeserializeOwned + Times>(
    secret: &str,
    token: &str,
    now_unix: i64,
) -> Result<C, TokenError> {
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(TokenError::Malformed);
    };
    let header: serde_json::Value = serde_json::from_slice(&B64.decode(h).map_err(|_| TokenError::Malformed)?)
        .map_err(|_| TokenError::Malformed)?;
    if header.get("alg").and_then(|a| a.as_str()) != Some("HS256") {
        return Err(TokenError::Algorithm);
    }
    let mut m = mac(secret);
    m.update(&token.as_bytes()[..h.len() + 1 + p.len()]);
    m.verify_slice(&B64.decode(s).map_err(|_| TokenError::Malformed)?).map_err(|_| TokenError::Signature)?;
    let claims: C = serde_json::from_slice(&B64.decode(p).map_err(|_| TokenError::Malformed)?)
        .map_err(|_| TokenError::Malformed)?;
    let (nbf, exp) = claims.window();
    if now_unix < nbf || now_unix >= exp {
        return Err(TokenError::Time);
    }
    Ok(claims)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims() -> Claims {
        Claims {
            iss: "APIkey".into(),
            sub: "user-1".into(),
            name: "Ada".into(),
            metadata: r#"{"role":"tutor"}"#.into(),
            nbf: 1_000,
            exp: 2_000,
            video: VideoGrant { room: "lesson:1".into(), room_join: true, can_publish: true, ..Default::default() },
        }
    }

    #[test]
    fn round_trip_and_livekit_field_names() {
        let t = encode("secret", &claims());
        assert_eq!(decode("secret", &t, 1_500).unwrap(), claims());
        let payload: serde_json::Value =
            serde_json::from_slice(&B64.decode(t.split('.').nth(1).unwrap()).unwrap()).unwrap();
        assert_eq!(payload["video"]["roomJoin"], true);
        assert_eq!(payload["video"]["canSubscribe"], false, "written out, not omitted");
        assert_eq!(payload["iss"], "APIkey");
    }

    #[test]
    fn wrong_secret_time_and_shape_are_refused() {
        let t = encode("secret", &claims());
        assert_eq!(decode("other", &t, 1_500), Err(TokenError::Signature));
        assert_eq!(decode("secret", &t, 2_000), Err(TokenError::Time));
        assert_eq!(decode("secret", &t, 999), Err(TokenError::Time));
        assert_eq!(decode("secret", "a.b", 1_500), Err(TokenError::Malformed));
        let none = format!("{}.{}.", B64.encode(r#"{"alg":"none"}"#), t.split('.').nth(1).unwrap());
        assert_eq!(decode("secret", &none, 1_500), Err(TokenError::Algorithm));
    }
}

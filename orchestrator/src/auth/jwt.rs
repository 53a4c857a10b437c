//! HS256 JSON Web Tokens (RFC 7519): compact serialisation, HMAC-SHA256 signature checked in constant
//! time, `exp`/`nbf` checked against a passed-in `now`. Only `alg: HS256` is accepted, so a token can't
//! downgrade itself to `none` or to another algorithm.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD as B64};
use hmac::{Hmac, Mac};
use serde::{Serialize, de::DeserializeOwned};
use sha2::Sha256;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    #[error("malformed token")]
    Malformed,
    #[error("unsupported token algorithm")]
    Algorithm,
    #[error("bad token signature")]
    Signature,
    #[error("token expired")]
    Expired,
    #[error("token not yet valid")]
    NotYetValid,
}

const HEADER: &str = r#"{"alg":"HS256","typ":"JWT"}"#;

pub fn encode<C: Serialize>(key: &[u8], claims: &C) -> String {
    let header = B64.encode(HEADER);
    let payload = B64.encode(serde_json::to_vec(claims).expect("claims serialize"));
    let signing_input = format!("{header}.{payload}");
    let sig = B64.encode(mac(key, signing_input.as_bytes()).finalize().into_bytes());
    format!("{signing_input}.{sig}")
}

/// Verifies signature and times, then decodes the claims. `now` is unix seconds; `leeway` seconds
/// of clock skew are tolerated.
pub fn decode<C: DeserializeOwned>(key: &[u8], token: &str, now: i64, leeway: i64) -> Result<C, JwtError> {
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(JwtError::Malformed);
    };
    let header: serde_json::Value =
        serde_json::from_slice(&B64.decode(h).map_err(|_| JwtError::Malformed)?).map_err(|_| JwtError::Malformed)?;
    if header.get("alg").and_then(|v| v.as_str()) != Some("HS256") {
        return Err(JwtError::Algorithm);
    }
    let sig = B64.decode(s).map_err(|_| JwtError::Malformed)?;
    let signing_input = &token[..h.len() + 1 + p.len()];
    mac(key, signing_input.as_bytes()).verify_slice(&sig).map_err(|_| JwtError::Signature)?;
    let payload = B64.decode(p).map_err(|_| JwtError::Malformed)?;
    let times: Times = serde_json::from_slice(&payload).map_err(|_| JwtError::Malformed)?;
    if let Some(exp) = times.exp
        && now > exp + leeway
    {
        return Err(JwtError::Expired);
    }
    if let Some(nbf) = times.nbf
        && now + leeway < nbf
    {
        return Err(JwtError::NotYetValid);
    }
    serde_json::from_slice(&payload).map_err(|_| JwtError::Malformed)
}

#[derive(serde::Deserialize)]
struct Times {
    exp: Option<i64>,
    nbf: Option<i64>,
}

fn mac(key: &[u8], data: &[u8]) -> Hmac<Sha256> {
    let mut m = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    m.update(data);
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct C {
        sub: String,
        exp: i64,
    }

    #[test]
    fn round_trip_and_rejections() {
        let key = b"0123456789abcdef0123456789abcdef";
        let t = encode(key, &C { sub: "u".into(), exp: 100 });
        assert_eq!(decode::<C>(key, &t, 50, 0).unwrap(), C { sub: "u".into(), exp: 100 });
        assert_eq!(decode::<C>(key, &t, 101, 0).unwrap_err(), JwtError::Expired);
        assert!(decode::<C>(key, &t, 101, 5).is_ok());
        assert_eq!(decode::<C>(b"another key of enough length!!!!", &t, 50, 0).unwrap_err(), JwtError::Signature);
        // Tampered payload keeps the old signature.
        let mut parts: Vec<&str> = t.split('.').collect();
        let forged = B64.encode(r#"{"sub":"admin","exp":100}"#);
        parts[1] = &forged;
        assert_eq!(decode::<C>(key, &parts.join("."), 50, 0).unwrap_err(), JwtError::Signature);
        // alg=none is refused whatever the signature.
        let none = format!("{}.{}.", B64.encode(r#"{"alg":"none"}"#), B64.encode(r#"{"sub":"u","exp":100}"#));
        assert_eq!(decode::<C>(key, &none, 50, 0).unwrap_err(), JwtError::Algorithm);
        assert_eq!(decode::<C>(key, "a.b", 50, 0).unwrap_err(), JwtError::Malformed);
    }

    #[test]
    fn matches_rfc7515_hs256_example() {
        // RFC 7515 appendix A.1: the published key, input and signature.
        let key = B64
            .decode("AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow")
            .unwrap();
        let input = "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ";
        let sig = B64.encode(mac(&key, input.as_bytes()).finalize().into_bytes());
        assert_eq!(sig, "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk");
    }
}

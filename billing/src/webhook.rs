//! Stripe webhooks: the `Stripe-Signature` header exactly as Stripe signs it, and the event envelope.
//!
//! Stripe sends `Stripe-Signature: t=<unix seconds>,v1=<hex>[,v1=<hex>...][,v0=<hex>]`, where each `v1` is
//! HMAC-SHA256 keyed with the endpoint secret (`whsec_...`, used as is, bytes of the string) over
//! `<t as sent> + "." + <raw request body>`. Several `v1` appear while a secret is being rolled; any one
//! matching is enough. Other schemes (`v0` is Stripe's test scheme) are ignored. The timestamp bounds replays:
//! an event signed more than the tolerance (Stripe's default is 300 s) away from now is refused.
//!
//! Verify the raw bytes as received, before any JSON parsing: re-serialised JSON does not match the signature.
//! Stripe may deliver an event more than once: deduplicate on [`Event::id`].

use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Stripe's default tolerance between the signature's timestamp and now, in seconds.
pub const DEFAULT_TOLERANCE_SECS: i64 = 300;

/// Why a `Stripe-Signature` header was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("no Stripe-Signature header, or it carries no v1 signature")]
    Missing,
    #[error("malformed Stripe-Signature header: {0}")]
    Malformed(String),
    #[error("no v1 signature in the Stripe-Signature header matches the payload and the endpoint secret")]
    NoMatch,
    #[error("Stripe-Signature timestamp {t} is more than {tolerance_secs} s away from now ({now})")]
    TooOld { t: i64, now: i64, tolerance_secs: i64 },
}

/// Checks `header` (the `Stripe-Signature` value) against the raw `payload` and the endpoint `secret`.
/// Returns the signed timestamp `t`.
///
/// Accepts when any `v1` signature matches (compared in constant time) and `|now_unix - t| <= tolerance_secs`.
/// `v1` values that are not 32 bytes of hex never match but don't make the header malformed, like any other
/// unknown content Stripe may add.
pub fn verify(
    header: &str,
    payload: &[u8],
    secret: &str,
    now_unix: i64,
    tolerance_secs: i64,
) -> Result<i64, SignatureError> {
    let header = header.trim();
    if header.is_empty() {
        return Err(SignatureError::Missing);
    }
    let mut timestamp: Option<&str> = None;
    let mut signatures: Vec<&str> = Vec::new();
    for item in header.split(',') {
        let item = item.trim();
        if item.is_empty() {
            continue;
        }
        let Some((scheme, value)) = item.split_once('=') else {
            return Err(SignatureError::Malformed(format!("`{item}` is not `key=value`")));
        };
        match scheme.trim() {
            "t" => {
                if timestamp.is_some() {
                    return Err(SignatureError::Malformed("more than one timestamp `t`".into()));
                }
                timestamp = Some(value.trim());
            }
            "v1" => signatures.push(value.trim()),
            _ => {} // v0 (test mode) and schemes Stripe may add later
        }
    }
    let Some(t_raw) = timestamp else {
        return Err(SignatureError::Malformed("no timestamp `t`".into()));
    };
    let t: i64 =
        t_raw.parse().map_err(|_| SignatureError::Malformed(format!("timestamp `{t_raw}` is not an integer")))?;
    if signatures.is_empty() {
        return Err(SignatureError::Missing);
    }

    // Signed exactly as sent: the timestamp's own characters, a dot, the raw body.
    let mut mac = HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC accepts keys of any length");
    mac.update(t_raw.as_bytes());
    mac.update(b".");
    mac.update(payload);
    // Every candidate is checked (no early exit), each comparison in constant time.
    let mut matched = false;
    for sig in signatures {
        if let Ok(bytes) = hex::decode(sig) {
            matched |= mac.clone().verify_slice(&bytes).is_ok();
        }
    }
    if !matched {
        return Err(SignatureError::NoMatch);
    }
    let skew = (i128::from(now_unix) - i128::from(t)).abs();
    if skew > i128::from(tolerance_secs) {
        return Err(SignatureError::TooOld { t, now: now_unix, tolerance_secs });
    }
    Ok(t)
}

/// A `Stripe-Signature` header value for `payload` signed at `t`, as Stripe would send it (`t=...,v1=...`).
pub fn sign(payload: &[u8], secret: &str, t: i64) -> String {
    let mut mac = HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC accepts keys of any length");
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(payload);
    format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
}

/// A Stripe event, the fields we act on. `object` is `data.object`: the PaymentIntent, Refund, Account, ...
/// as it was when the event happened.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// `evt_...`; Stripe may deliver the same event more than once.
    pub id: String,
    /// Stripe's `type`, e.g. `payment_intent.succeeded`.
    pub kind: String,
    /// Unix seconds.
    pub created: i64,
    pub livemode: bool,
    /// The connected account (`acct_...`) for events from Connect endpoints; `None` for the platform's own.
    pub account: Option<String>,
    pub object: serde_json::Value,
}

#[derive(Debug, thiserror::Error)]
#[error("not a Stripe event: {0}")]
pub struct EventError(#[from] serde_json::Error);

/// Parses an event body. Call [`verify`] on the same raw bytes first.
pub fn parse_event(payload: &[u8]) -> Result<Event, EventError> {
    #[derive(Deserialize)]
    struct Data {
        object: serde_json::Value,
    }
    #[derive(Deserialize)]
    struct Raw {
        id: String,
        #[serde(rename = "type")]
        kind: String,
        created: i64,
        #[serde(default)]
        livemode: bool,
        #[serde(default)]
        account: Option<String>,
        data: Data,
    }
    let raw: Raw = serde_json::from_slice(payload)?;
    Ok(Event {
        id: raw.id,
        kind: raw.kind,
        created: raw.created,
        livemode: raw.livemode,
        account: raw.account,
        object: raw.data.object,
    })
}

/// Why a webhook delivery was refused by [`verify_event`].
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error(transparent)]
    Signature(#[from] SignatureError),
    #[error(transparent)]
    Event(#[from] EventError),
}

/// [`verify`] then [`parse_event`]: what a webhook endpoint does with a delivery.
pub fn verify_event(
    header: &str,
    payload: &[u8],
    secret: &str,
    now_unix: i64,
    tolerance_secs: i64,
) -> Result<Event, WebhookError> {
    verify(header, payload, secret, now_unix, tolerance_secs)?;
    Ok(parse_event(payload)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Computed once outside this code, with Python's hmac/hashlib:
    // hmac.new(SECRET, b"1700000000." + PAYLOAD, hashlib.sha256).hexdigest()
    const SECRET: &str = "whsec_test_secret";
    const PAYLOAD: &[u8] = br#"{"id":"evt_1","object":"event","type":"payment_intent.succeeded","created":1700000000,"livemode":false,"data":{"object":{"id":"pi_1","object":"payment_intent","status":"succeeded"}}}"#;
    const T: i64 = 1_700_000_000;
    const V1: &str = "b9647330f4534a09be3edc7d5765df15180b239cf09f319c38c647186c471c71";

    fn header() -> String {
        format!("t={T},v1={V1}")
    }

    #[test]
    fn the_independent_vector_verifies_and_sign_reproduces_it() {
        assert_eq!(verify(&header(), PAYLOAD, SECRET, T, 300), Ok(T));
        assert_eq!(sign(PAYLOAD, SECRET, T), header());
        // With a test-mode v0 and spaces around items, as some proxies reformat.
        let h = format!("t={T}, v1={V1}, v0=6ffbb59b2300aae63f272406069a9788598b792a944a07aba816edb039989a39");
        assert_eq!(verify(&h, PAYLOAD, SECRET, T + 10, 300), Ok(T));
    }

    #[test]
    fn any_one_matching_v1_is_enough() {
        let other = "0".repeat(64);
        for h in [
            format!("t={T},v1={other},v1={V1}"),
            format!("t={T},v1={V1},v1={other}"),
            format!("v1=zz-not-hex,t={T},v1={V1}"),
        ] {
            assert_eq!(verify(&h, PAYLOAD, SECRET, T, 300), Ok(T), "{h}");
        }
        assert_eq!(verify(&format!("t={T},v1={other},v1=abc"), PAYLOAD, SECRET, T, 300), Err(SignatureError::NoMatch));
    }

    #[test]
    fn tampered_body_wrong_secret_or_timestamp_do_not_match() {
        let mut tampered = PAYLOAD.to_vec();
        let at = tampered.iter().position(|&b| b == b'1').unwrap();
        tampered[at] = b'2';
        assert_eq!(verify(&header(), &tampered, SECRET, T, 300), Err(SignatureError::NoMatch));
        assert_eq!(verify(&header(), PAYLOAD, "whsec_other", T, 300), Err(SignatureError::NoMatch));
        // The timestamp is part of what is signed: moving it breaks the signature.
        let moved = format!("t={},v1={V1}", T + 1);
        assert_eq!(verify(&moved, PAYLOAD, SECRET, T, 300), Err(SignatureError::NoMatch));
        // A truncated signature, or one in the v0 slot only.
        assert_eq!(verify(&format!("t={T},v1={}", &V1[..62]), PAYLOAD, SECRET, T, 300), Err(SignatureError::NoMatch));
        assert_eq!(verify(&format!("t={T},v0={V1}"), PAYLOAD, SECRET, T, 300), Err(SignatureError::Missing));
    }

    #[test]
    fn outside_the_tolerance_is_refused_both_ways() {
        assert_eq!(verify(&header(), PAYLOAD, SECRET, T + 300, 300), Ok(T));
        assert_eq!(verify(&header(), PAYLOAD, SECRET, T - 300, 300), Ok(T));
        let too_old = verify(&header(), PAYLOAD, SECRET, T + 301, 300);
        assert_eq!(too_old, Err(SignatureError::TooOld { t: T, now: T + 301, tolerance_secs: 300 }));
        assert!(matches!(verify(&header(), PAYLOAD, SECRET, T - 301, 300), Err(SignatureError::TooOld { .. })));
        assert!(matches!(verify(&header(), PAYLOAD, SECRET, i64::MIN, 300), Err(SignatureError::TooOld { .. })));
        assert!(too_old.unwrap_err().to_string().contains("300 s"));
    }

    #[test]
    fn malformed_and_missing_headers() {
        assert_eq!(verify("", PAYLOAD, SECRET, T, 300), Err(SignatureError::Missing));
        assert_eq!(verify("   ", PAYLOAD, SECRET, T, 300), Err(SignatureError::Missing));
        assert_eq!(verify(&format!("t={T}"), PAYLOAD, SECRET, T, 300), Err(SignatureError::Missing));
        for bad in [
            format!("v1={V1}"),
            format!("t=soon,v1={V1}"),
            format!("t=,v1={V1}"),
            format!("t={T},v1{V1}"),
            format!("t={T},t={T},v1={V1}"),
            "garbage".to_string(),
        ] {
            assert!(matches!(verify(&bad, PAYLOAD, SECRET, T, 300), Err(SignatureError::Malformed(_))), "{bad}");
        }
    }

    #[test]
    fn signed_events_round_trip() {
        let h = sign(b"{}", SECRET, 42);
        assert_eq!(verify(&h, b"{}", SECRET, 42, DEFAULT_TOLERANCE_SECS), Ok(42));
        let e = verify_event(&header(), PAYLOAD, SECRET, T, 300).unwrap();
        assert_eq!(e.id, "evt_1");
        assert_eq!(e.kind, "payment_intent.succeeded");
        assert_eq!(e.created, T);
        assert!(!e.livemode);
        assert_eq!(e.account, None);
        assert_eq!(e.object["id"], "pi_1");
        let connect = br#"{"id":"evt_2","type":"account.updated","created":1,"livemode":true,"account":"acct_9","data":{"object":{"id":"acct_9"}}}"#;
        let e = parse_event(connect).unwrap();
        assert_eq!((e.account.as_deref(), e.livemode), (Some("acct_9"), true));
        assert!(parse_event(b"{\"id\":\"evt_3\"}").is_err());
        assert!(matches!(
            verify_event(&header(), b"{}", SECRET, T, 300),
            Err(WebhookError::Signature(SignatureError::NoMatch))
        ));
        let h = sign(b"[]", SECRET, T);
        assert!(matches!(verify_event(&h, b"[]", SECRET, T, 300), Err(WebhookError::Event(_))));
    }
}

//! The Stripe backend: PaymentIntents and Refunds behind [`PaymentProvider`], and the Connect calls for tutor
//! payouts (Express accounts, onboarding links, transfers and their reversals), over Stripe's REST API.
//!
//! Wire format, as Stripe documents it: `POST` with an `application/x-www-form-urlencoded` body, nested fields
//! in bracket notation (`metadata[reference]=...`), `Authorization: Bearer <secret key>`, an `Idempotency-Key`
//! on every `POST` (so a retry never charges, refunds or pays out twice), JSON answers, and errors as
//! `{"error": {"type", "code", "decline_code", "message"}}`.
//!
//! Retries: a 429, a 5xx or a failed connection is retried with the same `Idempotency-Key` after a short
//! exponential backoff (or the server's `Retry-After`, capped), at most `max_retries` times, then
//! [`ProviderError::Unavailable`]. Stripe's `Stripe-Should-Retry` header, when present, overrides that choice.
//! Charges are "separate charges and transfers": the PaymentIntent carries a `transfer_group`, and the tutor's
//! share moves later with [`Stripe::transfer`] in the same group.

use std::time::Duration;

use futures::future::BoxFuture;
use reqwest::{StatusCode, header::HeaderMap};
use serde::Deserialize;

use crate::{
    Money, PaymentProvider, PaymentRequest, PaymentStart, PaymentState, ProviderError, RefundOutcome, RefundRequest,
};

/// How long one HTTP attempt may take (connect, send, answer) before it counts as a failed connection.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Where and how to reach Stripe. `Debug` shows only the key's prefix (`sk_live_…`), never the key.
#[derive(Clone)]
pub struct StripeConfig {
    /// `sk_live_...`, `sk_test_...` or a restricted `rk_...` key.
    pub secret_key: String,
    /// `https://api.stripe.com` unless pointed at a local fake.
    pub api_base: String,
    /// Retries after the first attempt for a 429, a 5xx or a failed connection.
    pub max_retries: u32,
}

impl StripeConfig {
    pub fn new(secret_key: impl Into<String>) -> Self {
        Self { secret_key: secret_key.into(), ..Self::default() }
    }
}

impl std::fmt::Debug for StripeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let prefix: String = self.secret_key.chars().take_while(|&c| c != '_').collect();
        let kind = self.secret_key.split('_').nth(1).unwrap_or("");
        f.debug_struct("StripeConfig")
            .field("secret_key", &format_args!("{prefix}_{kind}_…"))
            .field("api_base", &self.api_base)
            .field("max_retries", &self.max_retries)
            .finish()
    }
}

impl Default for StripeConfig {
    fn default() -> Self {
        Self { secret_key: String::new(), api_base: "https://api.stripe.com".into(), max_retries: 3 }
    }
}

/// A Stripe API client. Cheap to clone (the HTTP client is shared).
#[derive(Debug, Clone)]
pub struct Stripe {
    http: reqwest::Client,
    config: StripeConfig,
    first_backoff: Duration,
    max_backoff: Duration,
}

/// A form body: `(name, value)` pairs in order, names already in bracket notation.
type Form = Vec<(&'static str, String)>;

impl Stripe {
    /// Fails only when the HTTP client (its TLS setup) can't be built.
    pub fn new(mut config: StripeConfig) -> Result<Self, ProviderError> {
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT)
            .user_agent(concat!("liveclass-billing/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ProviderError::Invalid(format!("cannot build the HTTP client for Stripe: {e}")))?;
        let trimmed = config.api_base.trim_end_matches('/').len();
        config.api_base.truncate(trimmed);
        Ok(Self { http, config, first_backoff: Duration::from_millis(250), max_backoff: Duration::from_secs(2) })
    }

    /// The pause before the first retry (doubling after each) and the longest pause, `Retry-After` included.
    /// Defaults: 250 ms and 2 s.
    pub fn with_backoff(mut self, first: Duration, max: Duration) -> Self {
        self.first_backoff = first;
        self.max_backoff = max.max(first);
        self
    }

    pub fn config(&self) -> &StripeConfig {
        &self.config
    }

    /// Creates an Express connected account for a tutor; returns its id (`acct_...`).
    pub async fn create_express_account(&self, email: &str, key: &str) -> Result<String, ProviderError> {
        let form: Form = vec![
            ("type", "express".into()),
            ("email", email.into()),
            ("capabilities[transfers][requested]", "true".into()),
        ];
        let account: Created = self.post("/v1/accounts", &form, key).await?;
        Ok(account.id)
    }

    /// A one-time onboarding link for a connected account; returns its URL. Stripe sends the tutor to
    /// `return_url` when done and to `refresh_url` when the link expired or was already used.
    pub async fn account_link(
        &self,
        account: &str,
        refresh_url: &str,
        return_url: &str,
        key: &str,
    ) -> Result<String, ProviderError> {
        #[derive(Deserialize)]
        struct Link {
            url: String,
        }
        let form: Form = vec![
            ("account", account.into()),
            ("refresh_url", refresh_url.into()),
            ("return_url", return_url.into()),
            ("type", "account_onboarding".into()),
        ];
        let link: Link = self.post("/v1/account_links", &form, key).await?;
        Ok(link.url)
    }

    /// Moves `amount` from the platform balance to a connected account; returns the transfer id (`tr_...`).
    pub async fn transfer(
        &self,
        amount: Money,
        destination: &str,
        transfer_group: &str,
        key: &str,
    ) -> Result<String, ProviderError> {
        check_positive(amount, "transfer")?;
        let form: Form = vec![
            ("amount", amount.minor.to_string()),
            ("currency", amount.currency.as_str().to_ascii_lowercase()),
            ("destination", destination.into()),
            ("transfer_group", transfer_group.into()),
        ];
        let transfer: Created = self.post("/v1/transfers", &form, key).await?;
        Ok(transfer.id)
    }

    /// Takes (part of) a transfer back from the connected account; returns the reversal id (`trr_...`).
    pub async fn reverse_transfer(&self, transfer: &str, amount: Money, key: &str) -> Result<String, ProviderError> {
        check_positive(amount, "reversal")?;
        let path = format!("/v1/transfers/{}/reversals", path_segment(transfer)?);
        let form: Form = vec![("amount", amount.minor.to_string())];
        let reversal: Created = self.post(&path, &form, key).await?;
        Ok(reversal.id)
    }

    /// One `POST`, retried as the module doc says, its JSON answer decoded as `T`.
    async fn post<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        form: &Form,
        key: &str,
    ) -> Result<T, ProviderError> {
        if key.is_empty() {
            return Err(ProviderError::Invalid("every Stripe POST needs an idempotency key".into()));
        }
        let url = format!("{}{path}", self.config.api_base);
        let mut attempt: u32 = 0;
        loop {
            let (failure, wait) = match self.attempt(&url, form, key).await {
                Ok(done) => return done,
                Err(retryable) => retryable,
            };
            if attempt >= self.config.max_retries {
                let attempts = attempt + 1;
                return Err(ProviderError::Unavailable(format!(
                    "POST {path}: {failure} (gave up after {attempts} attempts)"
                )));
            }
            attempt += 1;
            tokio::time::sleep(self.backoff(attempt, wait)).await;
        }
    }

    /// One HTTP exchange: `Ok` with the final result, or `Err` with why it is worth retrying and the
    /// server's `Retry-After`.
    async fn attempt<T: serde::de::DeserializeOwned>(
        &self,
        url: &str,
        form: &Form,
        key: &str,
    ) -> Result<Result<T, ProviderError>, (String, Option<Duration>)> {
        let resp = self
            .http
            .post(url)
            .bearer_auth(&self.config.secret_key)
            .header("Idempotency-Key", key)
            .form(form)
            .send()
            .await
            .map_err(|e| (e.to_string(), None))?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp.bytes().await.map_err(|e| (format!("reading the answer: {e}"), None))?;
        if status.is_success() {
            return Ok(serde_json::from_slice(&body)
                .map_err(|e| ProviderError::Unavailable(format!("unexpected answer from Stripe: {e}"))));
        }
        let error = api_error(status, &body);
        if should_retry(status, &headers) {
            return Err((error.to_string(), retry_after(&headers)));
        }
        Ok(Err(error))
    }

    /// The pause before retry number `attempt` (1-based).
    fn backoff(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        let exponential = self.first_backoff.saturating_mul(1 << (attempt - 1).min(16));
        retry_after.unwrap_or(exponential).min(self.max_backoff)
    }
}

impl PaymentProvider for Stripe {
    fn name(&self) -> &'static str {
        "stripe"
    }

    fn start_payment<'a>(&'a self, req: &'a PaymentRequest) -> BoxFuture<'a, Result<PaymentStart, ProviderError>> {
        Box::pin(async move {
            #[derive(Deserialize)]
            struct Intent {
                id: String,
                status: String,
                client_secret: Option<String>,
            }
            check_positive(req.amount, "payment")?;
            let mut form: Form = vec![
                ("amount", req.amount.minor.to_string()),
                ("currency", req.amount.currency.as_str().to_ascii_lowercase()),
                ("description", req.description.clone()),
                ("metadata[reference]", req.reference.clone()),
                ("automatic_payment_methods[enabled]", "true".into()),
            ];
            if let Some(group) = &req.transfer_group {
                form.push(("transfer_group", group.clone()));
            }
            let intent: Intent = self.post("/v1/payment_intents", &form, &req.idempotency_key).await?;
            Ok(PaymentStart {
                provider: self.name(),
                state: intent_state(&intent.status),
                provider_ref: intent.id,
                client_secret: intent.client_secret,
                instructions: None,
            })
        })
    }

    fn refund<'a>(&'a self, req: &'a RefundRequest) -> BoxFuture<'a, Result<RefundOutcome, ProviderError>> {
        Box::pin(async move {
            #[derive(Deserialize)]
            struct Refund {
                id: String,
                status: String,
            }
            check_positive(req.amount, "refund")?;
            let form: Form = vec![
                ("payment_intent", req.provider_ref.clone()),
                ("amount", req.amount.minor.to_string()),
                ("metadata[reason]", req.reason.clone()),
            ];
            let refund: Refund = self.post("/v1/refunds", &form, &req.idempotency_key).await?;
            Ok(RefundOutcome { state: refund_state(&refund.status), refund_ref: refund.id })
        })
    }
}

/// Any object Stripe creates: we keep its id.
#[derive(Deserialize)]
struct Created {
    id: String,
}

/// A PaymentIntent's `status`: `succeeded` is paid, `canceled` is final, everything else
/// (`requires_payment_method`, `requires_action`, `processing`, ...) waits for the payer.
pub fn intent_state(status: &str) -> PaymentState {
    match status {
        "succeeded" => PaymentState::Succeeded,
        "canceled" => PaymentState::Failed,
        _ => PaymentState::Pending,
    }
}

/// A Refund's `status`: `succeeded`; `failed` or `canceled`; `pending` or `requires_action` still moving.
pub fn refund_state(status: &str) -> PaymentState {
    match status {
        "succeeded" => PaymentState::Succeeded,
        "failed" | "canceled" => PaymentState::Failed,
        _ => PaymentState::Pending,
    }
}

fn check_positive(amount: Money, what: &str) -> Result<(), ProviderError> {
    if amount.minor <= 0 {
        return Err(ProviderError::Invalid(format!("a {what} amount must be positive, not {amount}")));
    }
    Ok(())
}

/// An id put in a URL path: Stripe ids are `[A-Za-z0-9_]`; anything else would change the path.
fn path_segment(id: &str) -> Result<&str, ProviderError> {
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err(ProviderError::Invalid(format!("`{id}` is not a Stripe id")));
    }
    Ok(id)
}

/// Retry a 429 or 5xx unless Stripe says otherwise (`Stripe-Should-Retry` wins both ways, as Stripe's own
/// libraries do: e.g. a 409 lock timeout is worth retrying, some 500s are not).
fn should_retry(status: StatusCode, headers: &HeaderMap) -> bool {
    match headers.get("stripe-should-retry").and_then(|v| v.to_str().ok()) {
        Some("true") => true,
        Some("false") => false,
        _ => status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error(),
    }
}

/// `Retry-After` in seconds (the only form Stripe uses).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let secs: f64 = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?.trim().parse().ok()?;
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs.min(3600.0)))
}

/// Stripe's error JSON mapped to ours: `card_error` → declined; other 4xx → invalid; 429/5xx → unavailable.
fn api_error(status: StatusCode, body: &[u8]) -> ProviderError {
    #[derive(Deserialize, Default)]
    struct Envelope {
        error: Option<ApiError>,
    }
    #[derive(Deserialize, Default)]
    struct ApiError {
        #[serde(rename = "type")]
        kind: Option<String>,
        code: Option<String>,
        decline_code: Option<String>,
        message: Option<String>,
    }
    let error = serde_json::from_slice::<Envelope>(body).unwrap_or_default().error.unwrap_or_default();
    let kind = error.kind.as_deref().unwrap_or("");
    let mut text = error.message.clone().unwrap_or_else(|| format!("HTTP {status}"));
    if kind == "card_error" {
        // The message is written for the payer ("Your card was declined."); the codes are for staff.
        let codes: Vec<&str> = [error.code.as_deref(), error.decline_code.as_deref()].into_iter().flatten().collect();
        if !codes.is_empty() {
            text = format!("{text} ({})", codes.join(", "));
        }
        return ProviderError::Declined(text);
    }
    let detail = match (kind, error.code.as_deref()) {
        ("", None) => format!("HTTP {}: {text}", status.as_u16()),
        (kind, code) => {
            format!("HTTP {} {kind}{}: {text}", status.as_u16(), code.map(|c| format!("/{c}")).unwrap_or_default())
        }
    };
    if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
        ProviderError::Unavailable(detail)
    } else {
        ProviderError::Invalid(detail)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stripe_errors_map_to_provider_errors() {
        let declined = br#"{"error":{"type":"card_error","code":"card_declined","decline_code":"insufficient_funds","message":"Your card has insufficient funds."}}"#;
        match api_error(StatusCode::PAYMENT_REQUIRED, declined) {
            ProviderError::Declined(m) => {
                assert_eq!(m, "Your card has insufficient funds. (card_declined, insufficient_funds)")
            }
            other => panic!("{other:?}"),
        }
        let invalid = br#"{"error":{"type":"invalid_request_error","code":"parameter_missing","message":"Missing required param: amount."}}"#;
        match api_error(StatusCode::BAD_REQUEST, invalid) {
            ProviderError::Invalid(m) => {
                assert_eq!(m, "HTTP 400 invalid_request_error/parameter_missing: Missing required param: amount.")
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(api_error(StatusCode::UNAUTHORIZED, b"not json"), ProviderError::Invalid(_)));
        assert!(matches!(api_error(StatusCode::TOO_MANY_REQUESTS, b"{}"), ProviderError::Unavailable(_)));
        assert!(matches!(api_error(StatusCode::BAD_GATEWAY, b""), ProviderError::Unavailable(_)));
    }

    #[test]
    fn states_backoff_and_retry_headers() {
        assert_eq!(intent_state("succeeded"), PaymentState::Succeeded);
        assert_eq!(intent_state("requires_payment_method"), PaymentState::Pending);
        assert_eq!(intent_state("processing"), PaymentState::Pending);
        assert_eq!(refund_state("pending"), PaymentState::Pending);
        assert_eq!(refund_state("canceled"), PaymentState::Failed);
        assert_eq!(refund_state("failed"), PaymentState::Failed);

        let s = Stripe::new(StripeConfig::new("sk_test")).unwrap();
        assert_eq!(s.config().api_base, "https://api.stripe.com");
        assert_eq!(s.config().max_retries, 3);
        let ms = |attempt| s.backoff(attempt, None).as_millis();
        assert_eq!([ms(1), ms(2), ms(3), ms(4), ms(40)], [250, 500, 1000, 2000, 2000]);
        assert_eq!(s.backoff(1, Some(Duration::ZERO)), Duration::ZERO);
        assert_eq!(s.backoff(1, Some(Duration::from_secs(60))), Duration::from_secs(2));

        let mut h = HeaderMap::new();
        assert!(should_retry(StatusCode::INTERNAL_SERVER_ERROR, &h));
        assert!(should_retry(StatusCode::TOO_MANY_REQUESTS, &h));
        assert!(!should_retry(StatusCode::CONFLICT, &h));
        h.insert("stripe-should-retry", "true".parse().unwrap());
        assert!(should_retry(StatusCode::CONFLICT, &h));
        h.insert("stripe-should-retry", "false".parse().unwrap());
        assert!(!should_retry(StatusCode::INTERNAL_SERVER_ERROR, &h));
        h.insert("retry-after", "1.5".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_millis(1500)));
        h.insert("retry-after", "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap());
        assert_eq!(retry_after(&h), None);
    }

    #[test]
    fn debug_never_shows_the_secret_key() {
        let s = Stripe::new(StripeConfig::new("sk_live_51AbCdEfGhIjKlMn")).unwrap();
        let shown = format!("{s:?}");
        assert!(!shown.contains("51AbCdEf"), "{shown}");
        assert!(shown.contains("sk_live_…"), "{shown}");
    }

    /// Production talks HTTPS: the client must open TLS itself (a ClientHello, record type 0x16), not refuse
    /// the scheme. Nothing here can answer TLS, so the call ends unavailable.
    #[tokio::test]
    async fn https_bases_speak_tls() {
        use tokio::io::AsyncReadExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let (mut conn, _) = listener.accept().await.unwrap();
            let mut first = [0u8; 3];
            conn.read_exact(&mut first).await.unwrap();
            first
        });
        let config = StripeConfig {
            secret_key: "sk_test".into(),
            api_base: format!("https://127.0.0.1:{port}"),
            max_retries: 0,
        };
        let stripe = Stripe::new(config).unwrap();
        let form: Form = vec![("type", "express".into())];
        let result = stripe.post::<Created>("/v1/accounts", &form, "k").await;
        assert!(matches!(result, Err(ProviderError::Unavailable(_))));
        let first = server.await.unwrap();
        assert_eq!(first, [0x16, 0x03, 0x01], "a TLS handshake record");
    }

    #[test]
    fn ids_in_paths_are_checked() {
        assert_eq!(path_segment("tr_1Abc").unwrap(), "tr_1Abc");
        for bad in ["", "tr_1/../../v1/charges", "tr 1", "tr_1?x=1"] {
            assert!(path_segment(bad).is_err(), "{bad}");
        }
    }
}

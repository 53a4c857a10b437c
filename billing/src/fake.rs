//! [`FakeStripe`]: an in-process HTTP server on `127.0.0.1:0` that answers the Stripe routes [`crate::Stripe`]
//! calls, in Stripe's documented wire format, for tests. Enabled by the `fake` feature.
//!
//! What it does like Stripe:
//! - checks `Authorization: Bearer <secret key>` (401 `invalid_request_error` otherwise);
//! - reads form bodies in bracket notation, checks required parameters (400 `parameter_missing`, ...) and
//!   referenced objects (400 `resource_missing`);
//! - creates objects with Stripe's id prefixes (`pi_`, `re_`, `acct_`, `tr_`, `trr_`, `evt_`) and fields
//!   (`id`, `object`, `amount`, `currency`, `status`, `transfer_group`, `metadata`, `created`, ...);
//! - honours `Idempotency-Key` on `POST`: the same key with the same parameters replays the saved answer
//!   (with `Idempotent-Replayed: true`) and creates nothing; the same key with other parameters or another
//!   endpoint is a 400 `idempotency_error`. As at Stripe, only answers of requests that executed are saved
//!   (here: successes and card declines); 429s, 5xx and validation errors are not, so a retry executes.
//! - refunds need a succeeded PaymentIntent and never exceed what is left to refund; reversals never exceed
//!   what is left of the transfer.
//!
//! For tests: every request is recorded ([`FakeStripe::requests`]), created objects can be listed, faults
//! injected ([`FakeStripe::fail_next`]), PaymentIntents completed or failed as the payer would, and signed
//! webhook events built ([`FakeStripe::event`]).

use std::{
    collections::{HashMap, VecDeque},
    net::SocketAddr,
    sync::{Arc, Mutex, MutexGuard},
    time::{SystemTime, UNIX_EPOCH},
};

use axum::{
    Router,
    extract::{Form, State as AxumState, rejection::FormRejection},
    http::{HeaderMap, HeaderValue, Method, StatusCode, Uri},
    response::{IntoResponse, Response},
};
use serde_json::{Map, Value, json};

use crate::webhook;

/// The webhook secret [`FakeStripe::start`] signs events with.
pub const DEFAULT_WEBHOOK_SECRET: &str = "whsec_fake";

/// One request as the fake received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    /// The decoded form body, in order, names in bracket notation as sent (`metadata[reference]`).
    pub form: Vec<(String, String)>,
    pub idempotency_key: Option<String>,
}

impl Recorded {
    /// The first value of a form field.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.form.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// An answer the fake gives instead of doing the work (see [`FakeStripe::fail_next`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// 429 `rate_limit` with `Retry-After: 0`.
    RateLimited,
    /// 500 `api_error`.
    ServerError,
    /// 402 `card_error` / `card_declined` / `generic_decline`, saved under the request's Idempotency-Key.
    CardDeclined,
}

/// A Stripe lookalike for tests; stops when dropped.
pub struct FakeStripe {
    addr: SocketAddr,
    state: Arc<Mutex<Store>>,
    webhook_secret: String,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for FakeStripe {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl FakeStripe {
    /// Starts on `127.0.0.1:0`, accepting `secret_key`, signing events with [`DEFAULT_WEBHOOK_SECRET`].
    pub async fn start(secret_key: &str) -> FakeStripe {
        Self::start_with(secret_key, DEFAULT_WEBHOOK_SECRET).await
    }

    /// Starts on `127.0.0.1:0`, accepting `secret_key`, signing events with `webhook_secret`.
    pub async fn start_with(secret_key: &str, webhook_secret: &str) -> FakeStripe {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local address");
        let state = Arc::new(Mutex::new(Store::new(secret_key)));
        let app = Router::new().fallback(handle).with_state(state.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeStripe { addr, state, webhook_secret: webhook_secret.to_string(), server }
    }

    /// `http://127.0.0.1:<port>`: the `api_base` for [`crate::StripeConfig`].
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn webhook_secret(&self) -> &str {
        &self.webhook_secret
    }

    /// Every request received, in order, including refused and faulted ones.
    pub fn requests(&self) -> Vec<Recorded> {
        self.store().requests.clone()
    }

    /// PaymentIntents created (one per distinct Idempotency-Key), in order, as they are now.
    pub fn payment_intents(&self) -> Vec<Value> {
        self.store().payment_intents.clone()
    }

    pub fn refunds(&self) -> Vec<Value> {
        self.store().refunds.clone()
    }

    pub fn transfers(&self) -> Vec<Value> {
        self.store().transfers.clone()
    }

    pub fn reversals(&self) -> Vec<Value> {
        self.store().reversals.clone()
    }

    pub fn accounts(&self) -> Vec<Value> {
        self.store().accounts.clone()
    }

    /// The next `n` requests with a valid API key get `fault` instead of being executed (queued after any
    /// faults already waiting). 429 and 500 come before the idempotency check; a decline comes only for a
    /// request that would execute (not for a replay), and is saved under its key as Stripe does.
    pub fn fail_next(&self, n: usize, fault: Fault) {
        self.store().faults.extend(std::iter::repeat_n(fault, n));
    }

    /// The status new refunds get: `succeeded` (the default), `pending`, `failed`, `canceled`...
    pub fn set_refund_status(&self, status: &str) {
        self.store().refund_status = status.to_string();
    }

    /// The payer completed the payment: the PaymentIntent becomes `succeeded` with a charge. Returns the
    /// object, as a `payment_intent.succeeded` event carries it. Panics on an unknown id.
    pub fn succeed_payment_intent(&self, id: &str) -> Value {
        let mut store = self.store();
        let charge = store.new_id("ch");
        let pi = store.find_mut(Kind::PaymentIntent, id).unwrap_or_else(|| panic!("no PaymentIntent {id}"));
        pi["status"] = json!("succeeded");
        pi["amount_received"] = pi["amount"].clone();
        pi["latest_charge"] = json!(charge);
        pi["last_payment_error"] = Value::Null;
        pi.clone()
    }

    /// The payer's attempt failed: the PaymentIntent goes back to `requires_payment_method` with a
    /// `last_payment_error`. Returns the object for a `payment_intent.payment_failed` event.
    pub fn fail_payment_intent(&self, id: &str) -> Value {
        let mut store = self.store();
        let pi = store.find_mut(Kind::PaymentIntent, id).unwrap_or_else(|| panic!("no PaymentIntent {id}"));
        pi["status"] = json!("requires_payment_method");
        pi["last_payment_error"] = json!({
            "type": "card_error", "code": "card_declined", "decline_code": "generic_decline",
            "message": "Your card was declined."
        });
        pi.clone()
    }

    /// The tutor finished onboarding: the account can receive transfers. Returns the object for an
    /// `account.updated` event.
    pub fn complete_onboarding(&self, account: &str) -> Value {
        let mut store = self.store();
        let acct = store.find_mut(Kind::Account, account).unwrap_or_else(|| panic!("no account {account}"));
        acct["details_submitted"] = json!(true);
        acct["charges_enabled"] = json!(true);
        acct["payouts_enabled"] = json!(true);
        acct["capabilities"]["transfers"] = json!("active");
        acct.clone()
    }

    /// A webhook delivery for `kind` (`payment_intent.succeeded`, ...) carrying `object`, signed now:
    /// `(payload, Stripe-Signature header value)`.
    pub fn event(&self, kind: &str, object: Value) -> (String, String) {
        self.event_at(kind, object, now())
    }

    /// [`FakeStripe::event`] signed at `t` (to test the tolerance).
    pub fn event_at(&self, kind: &str, object: Value, t: i64) -> (String, String) {
        let id = self.store().new_id("evt");
        let mut event = json!({
            "id": id,
            "object": "event",
            "api_version": "2025-03-31.basil",
            "created": t,
            "livemode": false,
            "pending_webhooks": 1,
            "request": { "id": null, "idempotency_key": null },
            "type": kind,
            "data": { "object": object },
        });
        // Events about a connected account reach a Connect endpoint with that account named.
        if event["data"]["object"]["object"] == "account" {
            event["account"] = event["data"]["object"]["id"].clone();
        }
        let payload = event.to_string();
        let header = webhook::sign(payload.as_bytes(), &self.webhook_secret, t);
        (payload, header)
    }

    fn store(&self) -> MutexGuard<'_, Store> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

#[derive(Clone, Copy)]
enum Kind {
    PaymentIntent,
    Refund,
    Account,
    Transfer,
}

/// An answer saved under an Idempotency-Key, with what it answered.
struct Saved {
    method: String,
    path: String,
    params: Vec<(String, String)>,
    status: StatusCode,
    body: Value,
}

struct Store {
    secret_key: String,
    seq: u64,
    requests: Vec<Recorded>,
    faults: VecDeque<Fault>,
    refund_status: String,
    saved: HashMap<String, Saved>,
    payment_intents: Vec<Value>,
    refunds: Vec<Value>,
    accounts: Vec<Value>,
    transfers: Vec<Value>,
    reversals: Vec<Value>,
}

/// A Stripe error answer.
struct ApiError {
    status: StatusCode,
    body: Value,
}

impl ApiError {
    fn new(status: StatusCode, kind: &str, code: Option<&str>, message: String) -> Self {
        let mut error = json!({ "type": kind, "message": message });
        if let Some(code) = code {
            error["code"] = json!(code);
        }
        Self { status, body: json!({ "error": error }) }
    }
    fn invalid(code: &str, message: String) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request_error", Some(code), message)
    }
    fn missing(param: &str) -> Self {
        Self::invalid("parameter_missing", format!("Missing required param: {param}."))
    }
    fn no_such(what: &str, id: &str) -> Self {
        Self::invalid("resource_missing", format!("No such {what}: '{id}'"))
    }
}

type Params = Vec<(String, String)>;

fn param<'a>(params: &'a Params, name: &str) -> Option<&'a str> {
    params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

fn required<'a>(params: &'a Params, name: &str) -> Result<&'a str, ApiError> {
    param(params, name).filter(|v| !v.is_empty()).ok_or_else(|| ApiError::missing(name))
}

fn amount(params: &Params, name: &str) -> Result<Option<i64>, ApiError> {
    match param(params, name) {
        None => Ok(None),
        Some(v) => match v.parse::<i64>() {
            Ok(n) if n >= 1 => Ok(Some(n)),
            _ => Err(ApiError::invalid("parameter_invalid_integer", format!("Invalid integer: {v}"))),
        },
    }
}

fn currency(params: &Params) -> Result<String, ApiError> {
    let c = required(params, "currency")?;
    if c.len() != 3 || !c.bytes().all(|b| b.is_ascii_alphabetic()) {
        return Err(ApiError::invalid("parameter_invalid_string", format!("Invalid currency: {c}.")));
    }
    Ok(c.to_ascii_lowercase())
}

/// `metadata[key]=value` pairs as Stripe's `metadata` object.
fn metadata(params: &Params) -> Value {
    let map: Map<String, Value> = params
        .iter()
        .filter_map(|(k, v)| {
            let key = k.strip_prefix("metadata[")?.strip_suffix(']')?;
            Some((key.to_string(), json!(v)))
        })
        .collect();
    Value::Object(map)
}

impl Store {
    fn new(secret_key: &str) -> Self {
        Store {
            secret_key: secret_key.to_string(),
            seq: 0,
            requests: Vec::new(),
            faults: VecDeque::new(),
            refund_status: "succeeded".into(),
            saved: HashMap::new(),
            payment_intents: Vec::new(),
            refunds: Vec::new(),
            accounts: Vec::new(),
            transfers: Vec::new(),
            reversals: Vec::new(),
        }
    }

    /// `prefix_` + 24 alphanumerics, like Stripe's (`pi_3Pq...`): a counter, then a scramble of it so ids
    /// don't all look alike.
    fn new_id(&mut self, prefix: &str) -> String {
        self.seq += 1;
        let scramble = self.seq.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 16;
        format!("{prefix}_1Fk{:09}{scramble:012x}", self.seq)
    }

    fn list(&mut self, kind: Kind) -> &mut Vec<Value> {
        match kind {
            Kind::PaymentIntent => &mut self.payment_intents,
            Kind::Refund => &mut self.refunds,
            Kind::Account => &mut self.accounts,
            Kind::Transfer => &mut self.transfers,
        }
    }

    fn find_mut(&mut self, kind: Kind, id: &str) -> Option<&mut Value> {
        self.list(kind).iter_mut().find(|o| o["id"] == id)
    }

    /// A request that passed authentication, faults and idempotency: do the work.
    fn execute(&mut self, method: &Method, path: &str, params: &Params) -> Result<Value, ApiError> {
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        match (method.as_str(), segments.as_slice()) {
            ("POST", ["v1", "payment_intents"]) => self.create_payment_intent(params),
            ("POST", ["v1", "refunds"]) => self.create_refund(params),
            ("POST", ["v1", "accounts"]) => self.create_account(params),
            ("POST", ["v1", "account_links"]) => self.create_account_link(params),
            ("POST", ["v1", "transfers"]) => self.create_transfer(params),
            ("POST", ["v1", "transfers", id, "reversals"]) => self.create_reversal(id, params),
            ("GET", ["v1", "payment_intents", id]) => self.retrieve(Kind::PaymentIntent, "payment_intent", id),
            ("GET", ["v1", "refunds", id]) => self.retrieve(Kind::Refund, "refund", id),
            ("GET", ["v1", "accounts", id]) => self.retrieve(Kind::Account, "account", id),
            ("GET", ["v1", "transfers", id]) => self.retrieve(Kind::Transfer, "transfer", id),
            _ => Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "invalid_request_error",
                None,
                format!("Unrecognized request URL ({method}: {path})."),
            )),
        }
    }

    fn retrieve(&mut self, kind: Kind, what: &str, id: &str) -> Result<Value, ApiError> {
        let found = self.find_mut(kind, id).cloned();
        found.ok_or_else(|| {
            let mut e = ApiError::no_such(what, id);
            e.status = StatusCode::NOT_FOUND;
            e
        })
    }

    fn create_payment_intent(&mut self, params: &Params) -> Result<Value, ApiError> {
        let amount = amount(params, "amount")?.ok_or_else(|| ApiError::missing("amount"))?;
        let currency = currency(params)?;
        let id = self.new_id("pi");
        let secret = self.new_id("secret");
        let automatic = param(params, "automatic_payment_methods[enabled]") == Some("true");
        let pi = json!({
            "id": id,
            "object": "payment_intent",
            "amount": amount,
            "amount_received": 0,
            "automatic_payment_methods": if automatic { json!({ "enabled": true }) } else { Value::Null },
            "client_secret": format!("{id}_secret_{}", &secret["secret_".len()..]),
            "created": now(),
            "currency": currency,
            "description": param(params, "description"),
            "last_payment_error": null,
            "latest_charge": null,
            "livemode": false,
            "metadata": metadata(params),
            "status": "requires_payment_method",
            "transfer_group": param(params, "transfer_group"),
        });
        self.payment_intents.push(pi.clone());
        Ok(pi)
    }

    fn create_refund(&mut self, params: &Params) -> Result<Value, ApiError> {
        let pi_id = required(params, "payment_intent")?.to_string();
        let pi = self
            .find_mut(Kind::PaymentIntent, &pi_id)
            .cloned()
            .ok_or_else(|| ApiError::no_such("payment_intent", &pi_id))?;
        if pi["status"] != "succeeded" {
            return Err(ApiError::invalid(
                "charge_not_refundable",
                format!("This PaymentIntent ({pi_id}) does not have a successful charge to refund."),
            ));
        }
        let refunded: i64 = self
            .refunds
            .iter()
            .filter(|r| r["payment_intent"] == pi_id.as_str() && r["status"] != "failed" && r["status"] != "canceled")
            .filter_map(|r| r["amount"].as_i64())
            .sum();
        let left = pi["amount_received"].as_i64().unwrap_or(0) - refunded;
        if left <= 0 {
            return Err(ApiError::invalid(
                "charge_already_refunded",
                format!("PaymentIntent {pi_id} has already been refunded."),
            ));
        }
        let amount = amount(params, "amount")?.unwrap_or(left);
        if amount > left {
            return Err(ApiError::invalid(
                "amount_too_large",
                format!("Refund amount ({amount}) is greater than unrefunded amount on charge ({left})"),
            ));
        }
        let id = self.new_id("re");
        let refund = json!({
            "id": id,
            "object": "refund",
            "amount": amount,
            "charge": pi["latest_charge"],
            "created": now(),
            "currency": pi["currency"],
            "metadata": metadata(params),
            "payment_intent": pi_id,
            "reason": param(params, "reason"),
            "status": self.refund_status,
        });
        self.refunds.push(refund.clone());
        Ok(refund)
    }

    fn create_account(&mut self, params: &Params) -> Result<Value, ApiError> {
        let kind = required(params, "type")?;
        if !["express", "standard", "custom"].contains(&kind) {
            return Err(ApiError::invalid("parameter_invalid_string", format!("Invalid type: {kind}")));
        }
        let transfers = if param(params, "capabilities[transfers][requested]") == Some("true") {
            json!({ "transfers": "inactive" })
        } else {
            json!({})
        };
        let id = self.new_id("acct");
        let account = json!({
            "id": id,
            "object": "account",
            "capabilities": transfers,
            "charges_enabled": false,
            "created": now(),
            "details_submitted": false,
            "email": param(params, "email"),
            "metadata": metadata(params),
            "payouts_enabled": false,
            "type": kind,
        });
        self.accounts.push(account.clone());
        Ok(account)
    }

    fn create_account_link(&mut self, params: &Params) -> Result<Value, ApiError> {
        let account = required(params, "account")?;
        required(params, "refresh_url")?;
        required(params, "return_url")?;
        let kind = required(params, "type")?;
        if kind != "account_onboarding" && kind != "account_update" {
            return Err(ApiError::invalid("parameter_invalid_string", format!("Invalid type: {kind}")));
        }
        if self.find_mut(Kind::Account, account).is_none() {
            return Err(ApiError::no_such("account", account));
        }
        let token = self.new_id("link");
        let created = now();
        Ok(json!({
            "object": "account_link",
            "created": created,
            "expires_at": created + 300,
            "url": format!("https://connect.stripe.com/setup/e/{account}/{}", &token["link_".len()..]),
        }))
    }

    fn create_transfer(&mut self, params: &Params) -> Result<Value, ApiError> {
        let amount = amount(params, "amount")?.ok_or_else(|| ApiError::missing("amount"))?;
        let currency = currency(params)?;
        let destination = required(params, "destination")?;
        if self.find_mut(Kind::Account, destination).is_none() {
            return Err(ApiError::no_such("destination", destination));
        }
        let id = self.new_id("tr");
        let transfer = json!({
            "id": id,
            "object": "transfer",
            "amount": amount,
            "amount_reversed": 0,
            "created": now(),
            "currency": currency,
            "destination": destination,
            "livemode": false,
            "metadata": metadata(params),
            "reversed": false,
            "transfer_group": param(params, "transfer_group"),
        });
        self.transfers.push(transfer.clone());
        Ok(transfer)
    }

    fn create_reversal(&mut self, transfer_id: &str, params: &Params) -> Result<Value, ApiError> {
        let requested = amount(params, "amount")?;
        let id = self.new_id("trr");
        let Some(transfer) = self.find_mut(Kind::Transfer, transfer_id) else {
            let mut e = ApiError::no_such("transfer", transfer_id);
            e.status = StatusCode::NOT_FOUND;
            return Err(e);
        };
        let total = transfer["amount"].as_i64().unwrap_or(0);
        let reversed = transfer["amount_reversed"].as_i64().unwrap_or(0);
        let left = total - reversed;
        let amount = requested.unwrap_or(left);
        if left <= 0 || amount > left {
            return Err(ApiError::invalid(
                "amount_too_large",
                format!(
                    "Amount ({amount}) is greater than the amount left to reverse on transfer {transfer_id} ({left})"
                ),
            ));
        }
        transfer["amount_reversed"] = json!(reversed + amount);
        transfer["reversed"] = json!(reversed + amount == total);
        let reversal = json!({
            "id": id,
            "object": "transfer_reversal",
            "amount": amount,
            "created": now(),
            "currency": transfer["currency"],
            "metadata": metadata(params),
            "transfer": transfer_id,
        });
        self.reversals.push(reversal.clone());
        Ok(reversal)
    }
}

fn answer(status: StatusCode, body: &Value, request_id: String, replayed: bool) -> Response {
    let mut resp = (status, axum::Json(body.clone())).into_response();
    let headers = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        headers.insert("request-id", v);
    }
    if replayed {
        headers.insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    resp
}

async fn handle(
    AxumState(state): AxumState<Arc<Mutex<Store>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    form: Result<Form<Params>, FormRejection>,
) -> Response {
    let mut store = state.lock().unwrap_or_else(|e| e.into_inner());
    let path = uri.path().to_string();
    let key = headers.get("idempotency-key").and_then(|v| v.to_str().ok()).map(str::to_string);
    let params = form.as_ref().map(|Form(p)| p.clone()).unwrap_or_default();
    store.requests.push(Recorded {
        method: method.to_string(),
        path: path.clone(),
        form: params.clone(),
        idempotency_key: key.clone(),
    });
    let request_id = store.new_id("req");
    let fail = |e: ApiError| answer(e.status, &e.body, request_id.clone(), false);

    let bearer = headers.get("authorization").and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    match bearer {
        None => {
            return fail(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "invalid_request_error",
                None,
                "You did not provide an API key. Provide it in the Authorization header (Bearer auth).".into(),
            ));
        }
        Some(k) if k != store.secret_key => {
            let shown: String = k.chars().rev().take(4).collect::<Vec<_>>().into_iter().rev().collect();
            return fail(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "invalid_request_error",
                None,
                format!("Invalid API Key provided: ****{shown}"),
            ));
        }
        Some(_) => {}
    }
    if let Err(rejection) = &form {
        return fail(ApiError::invalid("parameter_invalid_string", format!("Invalid request body: {rejection}")));
    }

    match store.faults.front() {
        Some(Fault::RateLimited) => {
            store.faults.pop_front();
            let mut resp = fail(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "invalid_request_error",
                Some("rate_limit"),
                "Request rate limit exceeded.".into(),
            ));
            resp.headers_mut().insert("retry-after", HeaderValue::from_static("0"));
            return resp;
        }
        Some(Fault::ServerError) => {
            store.faults.pop_front();
            return fail(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "api_error",
                None,
                "An unknown error occurred.".into(),
            ));
        }
        _ => {}
    }

    let key = key.filter(|_| method == Method::POST);
    let mut sorted = params.clone();
    sorted.sort();
    if let Some(k) = &key
        && let Some(saved) = store.saved.get(k)
    {
        if saved.method != method.as_str() || saved.path != path {
            let msg = format!(
                "Keys for idempotent requests can only be used for the same endpoint they were first used for ('{}' vs '{}'). Try using a key other than '{k}' if you meant to execute a different request.",
                saved.path, path
            );
            return fail(ApiError::new(StatusCode::BAD_REQUEST, "idempotency_error", None, msg));
        }
        if saved.params != sorted {
            let msg = format!(
                "Keys for idempotent requests can only be used with the same parameters they were first used with. Try using a key other than '{k}' if you meant to execute a different request."
            );
            return fail(ApiError::new(StatusCode::BAD_REQUEST, "idempotency_error", None, msg));
        }
        let (status, body) = (saved.status, saved.body.clone());
        return answer(status, &body, request_id, true);
    }

    let result = if store.faults.front() == Some(&Fault::CardDeclined) {
        store.faults.pop_front();
        let mut e = ApiError::new(
            StatusCode::PAYMENT_REQUIRED,
            "card_error",
            Some("card_declined"),
            "Your card was declined.".into(),
        );
        e.body["error"]["decline_code"] = json!("generic_decline");
        Err(e)
    } else {
        store.execute(&method, &path, &params)
    };
    let (status, body) = match result {
        Ok(body) => (StatusCode::OK, body),
        Err(e) => (e.status, e.body),
    };
    if let Some(k) = key
        && (status.is_success() || status == StatusCode::PAYMENT_REQUIRED)
    {
        let saved = Saved { method: method.to_string(), path, params: sorted, status, body: body.clone() };
        store.saved.insert(k, saved);
    }
    answer(status, &body, request_id, false)
}

//! `lc-load booking`: the booking API under load, over plain HTTP/1.1 keep-alive connections.
//!
//! Setup (not timed) creates a tenant through public signup, `--tutors` tutors with generous weekly
//! availability plus one more for the contention test, and `--students` adult students; tokens are minted
//! with the shared HS256 secret when one is given (no login, no password checks), else every user logs
//! in. Each tutor's free slots are listed once and the (tutor, slot) pairs shuffled into one pool.
//!
//! Throughput: `--concurrency` closed-loop workers for `--secs`, each request a random student holding the
//! next slot of the shuffled pool (no slot is tried twice; 409s — a neighbouring slot's hold overlaps, or
//! the student is busy then — are conflicts, anything else but 201 is an error).
//! Contention: `--contenders` connections, opened beforehand, all send a hold for one slot of the extra
//! tutor at once; exactly one may win, and the admin's booking list must show exactly one booking.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::{Barrier, Mutex, Semaphore};

use crate::client::{self, mint_token, now_us};
use crate::round;
use crate::stats::{self, AtomicHist};

/// Options of `lc-load booking` (see its help).
#[derive(clap::Args, Clone)]
pub struct Opts {
    /// Server base URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// A label for the output (`sqlite`, `postgres`).
    #[arg(long, default_value = "unknown")]
    pub backend: String,
    /// The server's HS256 secret: tokens are minted (fast). Without it every user logs in (the
    /// server's per-IP login limit must allow tutors + students + 1 logins).
    #[arg(long, env = "LIVECLASS_JWT_SECRET", hide_env_values = true)]
    pub secret: Option<String>,
    #[arg(long, default_value_t = 50)]
    pub tutors: usize,
    #[arg(long, default_value_t = 200)]
    pub students: usize,
    /// Closed-loop workers (one keep-alive connection each) in the throughput phase.
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// Seconds of the throughput phase.
    #[arg(long, default_value_t = 10.0)]
    pub secs: f64,
    /// Simultaneous holds of one slot in the contention phase (one connection each).
    #[arg(long, default_value_t = 500)]
    pub contenders: usize,
    /// The throughput slots start this many days from today (UTC)...
    #[arg(long, default_value_t = 2)]
    pub days_ahead: u64,
    /// ...and span this many days (at most 62: one slot listing per tutor).
    #[arg(long, default_value_t = 56)]
    pub days: u64,
    /// Requests in flight during setup.
    #[arg(long, default_value_t = 8)]
    pub setup_concurrency: usize,
    /// Seed of the random picks (default: the clock).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Server processes whose CPU-seconds to report for the throughput phase.
    #[arg(long, value_delimiter = ',')]
    pub server_pid: Vec<u32>,
}

const PASSWORD: &str = "bench-password-123";
/// A tutor's week: every day 06:00–22:00 in Berlin, 60-minute lessons.
const TUTOR_TZ: &str = "Europe/Berlin";
const VIEWER_TZ: &str = "America/New_York";
const MINUTES: u32 = 60;

/// One HTTP/1.1 keep-alive connection (the server answers JSON with a Content-Length; chunked is read too).
pub struct Http {
    addr: SocketAddr,
    host: String,
    conn: Option<BufReader<TcpStream>>,
}

pub struct Response {
    pub status: u16,
    pub body: Value,
}

impl Response {
    fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }
}

impl std::fmt::Display for Response {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status, self.body)
    }
}

impl Http {
    pub fn new(url: &str) -> Result<Http> {
        let ep = client::parse_url(url)?;
        Ok(Http { addr: ep.addr, host: ep.host, conn: None })
    }

    pub async fn connect(&mut self) -> Result<()> {
        if self.conn.is_none() {
            let s = TcpStream::connect(self.addr).await.with_context(|| format!("connect {}", self.addr))?;
            s.set_nodelay(true)?;
            self.conn = Some(BufReader::new(s));
        }
        Ok(())
    }

    /// The request's bytes, built once (the contention test sends pre-built requests).
    pub fn build(&self, method: &str, path: &str, token: Option<&str>, body: Option<&Value>) -> Vec<u8> {
        let mut req = format!("{method} {path} HTTP/1.1\r\nhost: {}\r\naccept: application/json\r\n", self.host);
        if let Some(t) = token {
            req.push_str(&format!("authorization: Bearer {t}\r\n"));
        }
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        if method != "GET" {
            req.push_str(&format!("content-type: application/json\r\ncontent-length: {}\r\n", body.len()));
        }
        req.push_str("\r\n");
        req.push_str(&body);
        req.into_bytes()
    }

    pub async fn send_raw(&mut self, req: &[u8]) -> Result<Response> {
        self.connect().await?;
        let r = tokio::time::timeout(Duration::from_secs(30), async {
            let conn = self.conn.as_mut().expect("connected");
            conn.get_mut().write_all(req).await?;
            read_response(conn).await
        })
        .await;
        match r {
            Ok(Ok((resp, keep))) => {
                if !keep {
                    self.conn = None;
                }
                Ok(resp)
            }
            Ok(Err(e)) => {
                self.conn = None;
                Err(e)
            }
            Err(_) => {
                self.conn = None;
                bail!("no response within 30 s")
            }
        }
    }

    pub async fn send(
        &mut self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Result<Response> {
        let req = self.build(method, path, token, body);
        self.send_raw(&req).await.with_context(|| format!("{method} {path}"))
    }

    /// `send`, failing unless the status is `want`.
    async fn expect(
        &mut self,
        want: u16,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Result<Value> {
        let r = self.send(method, path, token, body).await?;
        if r.status != want {
            bail!("{method} {path}: expected {want}, got {r}");
        }
        Ok(r.body)
    }
}

/// Reads one response; true if the connection may be reused.
async fn read_response(conn: &mut BufReader<TcpStream>) -> Result<(Response, bool)> {
    let mut line = String::new();
    if conn.read_line(&mut line).await? == 0 {
        bail!("connection closed");
    }
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow!("bad status line {line:?}"))?;
    let (mut length, mut chunked, mut keep) = (None, false, true);
    loop {
        line.clear();
        if conn.read_line(&mut line).await? == 0 {
            bail!("connection closed in headers");
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            let (k, v) = (k.trim().to_ascii_lowercase(), v.trim().to_ascii_lowercase());
            match k.as_str() {
                "content-length" => length = Some(v.parse::<usize>()?),
                "transfer-encoding" => chunked = v.contains("chunked"),
                "connection" => keep = !v.contains("close"),
                _ => {}
            }
        }
    }
    let mut body = Vec::new();
    if chunked {
        loop {
            line.clear();
            conn.read_line(&mut line).await?;
            let n = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)?;
            let mut chunk = vec![0; n + 2];
            conn.read_exact(&mut chunk).await?;
            if n == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..n]);
        }
    } else if let Some(n) = length {
        body.resize(n, 0);
        conn.read_exact(&mut body).await?;
    } else if status != 204 && status != 304 {
        conn.read_to_end(&mut body).await?;
        keep = false;
    }
    let body = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&body).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()))
    };
    Ok((Response { status, body }, keep))
}

/// splitmix64: enough randomness for picking students and shuffling slots.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// `YYYY-MM-DD` of a day number since 1970-01-01 (proleptic Gregorian).
fn date(days: i64) -> String {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

fn today() -> i64 {
    (now_us() / 86_400_000_000) as i64
}

struct User {
    id: String,
    token: String,
}

struct World {
    admin: User,
    tutors: Vec<User>,
    /// The extra tutor whose one slot the contenders fight over.
    contended: User,
    students: Vec<User>,
    tokens: &'static str,
}

/// Runs `f(i)` for `0..n` with `limit` in flight, each with its own connection; fails on the first error.
async fn in_parallel<T, F, Fut>(url: &str, n: usize, limit: usize, f: F) -> Result<Vec<T>>
where
    T: Send + 'static,
    F: Fn(usize, Arc<Mutex<Http>>) -> Fut,
    Fut: std::future::Future<Output = Result<T>> + Send + 'static,
{
    let conns: Vec<Arc<Mutex<Http>>> =
        (0..limit.max(1)).map(|_| Http::new(url).map(|h| Arc::new(Mutex::new(h)))).collect::<Result<_>>()?;
    let sem = Arc::new(Semaphore::new(limit.max(1)));
    let mut handles = Vec::with_capacity(n);
    for i in 0..n {
        let permit = sem.clone().acquire_owned().await?;
        let fut = f(i, conns[i % conns.len()].clone());
        handles.push(tokio::spawn(async move {
            let r = fut.await;
            drop(permit);
            r
        }));
    }
    let mut out = Vec::with_capacity(n);
    for h in handles {
        out.push(h.await??);
    }
    Ok(out)
}

async fn setup(o: &Opts, http: &mut Http) -> Result<World> {
    let slug = format!("bench-{}", now_us());
    let admin_email = format!("admin@{slug}.test");
    let signup = json!({"slug": slug, "name": "Booking bench",
        "admin": {"email": admin_email, "display_name": "Admin", "password": PASSWORD}});
    let created = http
        .expect(201, "POST", "/api/v1/tenants", None, Some(&signup))
        .await
        .context("tenant signup (is LIVECLASS_ALLOW_TENANT_SIGNUP=true set on the server?)")?;
    let tenant = created["tenant"]["id"].as_str().context("tenant.id")?.to_string();
    let admin_id = created["admin"]["id"].as_str().context("admin.id")?.to_string();
    let secret = o.secret.clone().map(String::into_bytes);
    let ttl = 3600;
    let admin_token = match &secret {
        Some(s) => mint_token(s, &tenant, &admin_id, "Admin", "admin", ttl),
        None => login(http, &slug, &admin_email).await?.token,
    };
    let admin = User { id: admin_id, token: admin_token.clone() };
    // Users: tutors 0..=tutors (the last one is the contended tutor), then students.
    let n = o.tutors + 1 + o.students;
    let (slug2, secret2, tenant2, tok) = (slug.clone(), secret.clone(), tenant.clone(), admin_token);
    let tutors_n = o.tutors + 1;
    let users = in_parallel(&o.url, n, o.setup_concurrency, move |i, h| {
        let (slug, secret, tenant, tok) = (slug2.clone(), secret2.clone(), tenant2.clone(), tok.clone());
        async move {
            let (role, name) =
                if i < tutors_n { ("tutor", format!("t{i}")) } else { ("student", format!("s{}", i - tutors_n)) };
            let email = format!("{name}@{slug}.test");
            let mut body = json!({"email": email, "display_name": name, "role": role, "password": PASSWORD});
            if role == "student" {
                body["birth_date"] = json!("1990-01-01");
            }
            let mut h = h.lock().await;
            let u = h.expect(201, "POST", "/api/v1/users", Some(&tok), Some(&body)).await?;
            let id = u["id"].as_str().context("user id")?.to_string();
            let token = match &secret {
                Some(s) => mint_token(s, &tenant, &id, &name, role, ttl),
                None => login(&mut h, &slug, &email).await?.token,
            };
            if role == "tutor" {
                let week: Vec<Value> = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
                    .iter()
                    .map(|d| json!({"weekday": d, "start": "06:00", "end": "22:00"}))
                    .collect();
                let doc = json!({"timezone": TUTOR_TZ, "currency": "EUR",
                    "lengths": [{"minutes": MINUTES, "price_minor": 3500}], "weekly": week, "horizon_days": 120});
                h.expect(200, "PUT", &format!("/api/v1/tutors/{id}/availability"), Some(&token), Some(&doc)).await?;
            }
            Ok(User { id, token })
        }
    })
    .await?;
    let mut users = users.into_iter();
    let tutors: Vec<User> = users.by_ref().take(o.tutors).collect();
    let contended = users.next().context("contended tutor")?;
    let students: Vec<User> = users.collect();
    Ok(World { admin, tutors, contended, students, tokens: if secret.is_some() { "minted" } else { "login" } })
}

async fn login(http: &mut Http, slug: &str, email: &str) -> Result<User> {
    let body = json!({"tenant": slug, "email": email, "password": PASSWORD});
    let r = http.expect(200, "POST", "/api/v1/auth/login", None, Some(&body)).await?;
    Ok(User {
        id: r["user"]["id"].as_str().context("user.id")?.to_string(),
        token: r["access_token"].as_str().context("access_token")?.to_string(),
    })
}

async fn slots(http: &mut Http, tutor: &User, viewer: &User, from: &str, to: &str) -> Result<Vec<String>> {
    let path = format!("/api/v1/tutors/{}/slots?from={from}&to={to}&tz={VIEWER_TZ}&minutes={MINUTES}", tutor.id);
    let r = http.expect(200, "GET", &path, Some(&viewer.token), None).await?;
    Ok(r["slots"]
        .as_array()
        .context("slots")?
        .iter()
        .filter_map(|s| s["starts_at"].as_str().map(String::from))
        .collect())
}

/// Outcome counters of POST /bookings.
#[derive(Default)]
struct Outcomes {
    attempts: AtomicU64,
    holds: AtomicU64,
    slot_unavailable: AtomicU64,
    student_busy: AtomicU64,
    other_409: AtomicU64,
    errors: AtomicU64,
    all: AtomicHist,
    created: AtomicHist,
    conflicted: AtomicHist,
    samples: std::sync::Mutex<Vec<String>>,
}

impl Outcomes {
    fn record(&self, r: Result<Response>, took: Duration) {
        let us = took.as_micros() as u64;
        self.attempts.fetch_add(1, Ordering::Relaxed);
        match r {
            Ok(r) if r.status == 201 => {
                self.holds.fetch_add(1, Ordering::Relaxed);
                self.created.record(us);
                self.all.record(us);
            }
            Ok(r) if r.status == 409 => {
                let c = match r.code() {
                    "slot_unavailable" => &self.slot_unavailable,
                    "student_busy" => &self.student_busy,
                    _ => &self.other_409,
                };
                c.fetch_add(1, Ordering::Relaxed);
                self.conflicted.record(us);
                self.all.record(us);
            }
            other => {
                self.errors.fetch_add(1, Ordering::Relaxed);
                let text = match other {
                    Ok(r) => format!("HTTP {r}"),
                    Err(e) => format!("{e:#}"),
                };
                let mut s = self.samples.lock().expect("samples lock");
                if s.len() < 5 {
                    s.push(text);
                }
            }
        }
    }

    fn conflicts(&self) -> u64 {
        self.slot_unavailable.load(Ordering::Relaxed)
            + self.student_busy.load(Ordering::Relaxed)
            + self.other_409.load(Ordering::Relaxed)
    }

    fn counts(&self) -> Value {
        json!({
            "attempts": self.attempts.load(Ordering::Relaxed),
            "holds": self.holds.load(Ordering::Relaxed),
            "conflicts": self.conflicts(),
            "conflicts_by_code": {
                "slot_unavailable": self.slot_unavailable.load(Ordering::Relaxed),
                "student_busy": self.student_busy.load(Ordering::Relaxed),
                "other": self.other_409.load(Ordering::Relaxed),
            },
            "errors": self.errors.load(Ordering::Relaxed),
            "error_samples": *self.samples.lock().expect("samples lock"),
        })
    }
}

fn hold_body(tutor: &str, starts_at: &str) -> Value {
    json!({"tutor_id": tutor, "starts_at": starts_at, "minutes": MINUTES})
}

async fn throughput(o: &Opts, w: &Arc<World>, pool: Arc<Vec<(usize, String)>>, seed: u64) -> Result<Value> {
    let k = Arc::new(Outcomes::default());
    let next = Arc::new(AtomicUsize::new(0));
    // Connections are opened before the clock starts.
    let mut conns = Vec::with_capacity(o.concurrency);
    for _ in 0..o.concurrency.max(1) {
        let mut h = Http::new(&o.url)?;
        h.connect().await?;
        conns.push(h);
    }
    let cpu0 = stats::sample(&o.server_pid).cpu_secs;
    let start = Instant::now();
    let until = start + Duration::from_secs_f64(o.secs);
    let mut tasks = Vec::new();
    for (n, mut h) in conns.into_iter().enumerate() {
        let (k, next, pool, w) = (k.clone(), next.clone(), pool.clone(), w.clone());
        let mut rng = Rng(seed ^ (n as u64).wrapping_mul(0x2545_f491_4f6c_dd1d));
        tasks.push(tokio::spawn(async move {
            while Instant::now() < until {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some((tutor, at)) = pool.get(i) else { return true };
                let student = &w.students[rng.below(w.students.len())];
                let req = h.build(
                    "POST",
                    "/api/v1/bookings",
                    Some(&student.token),
                    Some(&hold_body(&w.tutors[*tutor].id, at)),
                );
                let t = Instant::now();
                let r = h.send_raw(&req).await;
                k.record(r, t.elapsed());
            }
            false
        }));
    }
    let mut exhausted = false;
    for t in tasks {
        exhausted |= t.await?;
    }
    let window = start.elapsed().as_secs_f64();
    let cpu = stats::sample(&o.server_pid).cpu_secs - cpu0;
    let mut out = k.counts();
    let attempts = k.attempts.load(Ordering::Relaxed) as f64;
    let holds = k.holds.load(Ordering::Relaxed) as f64;
    let extra = json!({
        "concurrency": o.concurrency, "secs": round(window, 3), "slots_in_pool": pool.len(),
        "pool_exhausted": exhausted,
        "holds_per_s": round(holds / window, 1), "attempts_per_s": round(attempts / window, 1),
        "latency": k.all.take().summary(), "hold_latency": k.created.take().summary(),
        "conflict_latency": k.conflicted.take().summary(),
        "server_cpu_s": if o.server_pid.is_empty() { Value::Null } else { json!(round(cpu, 2)) },
    });
    merge(&mut out, extra);
    Ok(out)
}

fn merge(into: &mut Value, from: Value) {
    if let (Some(a), Value::Object(b)) = (into.as_object_mut(), from) {
        a.extend(b);
    }
}

async fn contention(o: &Opts, w: &Arc<World>, http: &mut Http, rng: &mut Rng) -> Result<Value> {
    // A day beyond the throughput range, on the tutor nobody else books.
    let day = date(today() + (o.days_ahead + o.days + 2) as i64);
    let list = slots(http, &w.contended, &w.admin, &day, &day).await?;
    if list.is_empty() {
        bail!("the contended tutor lists no slot on {day}");
    }
    let at = list[rng.below(list.len())].clone();
    let body = hold_body(&w.contended.id, &at);
    let n = o.contenders.max(1);
    let mut conns = Vec::with_capacity(n);
    for i in 0..n {
        let mut h = Http::new(&o.url)?;
        h.connect().await?;
        let student = &w.students[i % w.students.len()];
        let req = h.build("POST", "/api/v1/bookings", Some(&student.token), Some(&body));
        conns.push((h, req));
    }
    let k = Arc::new(Outcomes::default());
    let barrier = Arc::new(Barrier::new(n + 1));
    let mut tasks = Vec::with_capacity(n);
    for (mut h, req) in conns {
        let (k, barrier) = (k.clone(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            let t = Instant::now();
            let r = h.send_raw(&req).await;
            k.record(r, t.elapsed());
        }));
    }
    barrier.wait().await;
    let start = Instant::now();
    for t in tasks {
        t.await?;
    }
    let wall = start.elapsed();
    // What the database holds: the admin's view of the tutor's bookings.
    let listed = http
        .expect(
            200,
            "GET",
            &format!("/api/v1/bookings?user_id={}&limit=500", w.contended.id),
            Some(&w.admin.token),
            None,
        )
        .await?;
    let rows = listed.as_array().context("booking list")?;
    let at_slot = rows.iter().filter(|b| b["starts_at"].as_str() == Some(at.as_str())).count();
    let winners = k.holds.load(Ordering::Relaxed);
    let mut out = json!({
        "contenders": n, "distinct_students": n.min(w.students.len()), "tutor_id": w.contended.id,
        "starts_at": at, "winners": winners,
    });
    merge(&mut out, k.counts());
    merge(
        &mut out,
        json!({
            "wall_ms": round(wall.as_secs_f64() * 1000.0, 1),
            "latency": k.all.take().summary(),
            "bookings_of_tutor": rows.len(), "bookings_at_slot": at_slot,
            "verified": winners == 1 && rows.len() == 1 && at_slot == 1,
        }),
    );
    Ok(out)
}

pub async fn run(o: Opts) -> Result<Value> {
    if o.tutors == 0 || o.students == 0 {
        bail!("--tutors and --students must be at least 1");
    }
    if o.secret.as_ref().is_some_and(|s| s.len() < 32) {
        bail!("--secret / LIVECLASS_JWT_SECRET must be at least 32 bytes");
    }
    let seed = o.seed.unwrap_or_else(now_us);
    let mut rng = Rng(seed);
    let mut http = Http::new(&o.url)?;
    let t0 = Instant::now();
    let w = Arc::new(setup(&o, &mut http).await?);
    let users_secs = t0.elapsed().as_secs_f64();
    // Every tutor's free slots over the throughput days, shuffled into one pool of (tutor, start).
    let (from, to) = (date(today() + o.days_ahead as i64), date(today() + (o.days_ahead + o.days - 1) as i64));
    let lists = {
        let (w2, from2, to2) = (w.clone(), from.clone(), to.clone());
        in_parallel(&o.url, w.tutors.len(), o.setup_concurrency, move |i, h| {
            let (w, from, to) = (w2.clone(), from2.clone(), to2.clone());
            async move {
                let mut h = h.lock().await;
                let s = &w.students[i % w.students.len()];
                slots(&mut h, &w.tutors[i], s, &from, &to).await
            }
        })
        .await?
    };
    let mut pool: Vec<(usize, String)> =
        lists.into_iter().enumerate().flat_map(|(t, l)| l.into_iter().map(move |s| (t, s))).collect();
    for i in (1..pool.len()).rev() {
        let j = rng.below(i + 1);
        pool.swap(i, j);
    }
    let setup_secs = t0.elapsed().as_secs_f64();
    eprintln!(
        "booking: setup {setup_secs:.1} s ({} tutors, {} students, {} slots from {from} to {to}, tokens {})",
        w.tutors.len(),
        w.students.len(),
        pool.len(),
        w.tokens
    );
    let tp = throughput(&o, &w, Arc::new(pool), rng.next()).await?;
    eprintln!("booking: throughput {} holds/s", tp["holds_per_s"]);
    // Let the throughput's connections close before the storm.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let ct = contention(&o, &w, &mut http, &mut rng).await?;
    let ok = tp["errors"] == 0 && ct["errors"] == 0 && ct["winners"] == 1 && ct["verified"] == true;
    Ok(json!({
        "scenario": "booking", "backend": o.backend, "url": o.url, "seed": seed, "ok": ok,
        "setup": {"tutors": w.tutors.len(), "students": w.students.len(), "tokens": w.tokens,
                  "slot_days": {"from": from, "to": to, "viewer_tz": VIEWER_TZ, "minutes": MINUTES},
                  "users_secs": round(users_secs, 2), "secs": round(setup_secs, 2)},
        "throughput": tp,
        "contention": ct,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(date(0), "1970-01-01");
        assert_eq!(date(19_782), "2024-02-29");
        assert_eq!(date(20_819), "2027-01-01");
    }
}

//! `lc-load`: the liveclass load generator. Each scenario prints one JSON object to stdout.
//! See `loadtests/README.md` for what each scenario measures and how `bench.sh` drives them.

mod booking;
mod client;
mod sfu;
mod stats;

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use serde_json::{Value, json};
use tokio::sync::{Semaphore, mpsc, watch};

use client::{Conn, Endpoint, Frame, Target, chat_text, mint_token, now_us, user_id};
use stats::{AtomicHist, Counter, Hist};

#[derive(Parser)]
#[command(name = "lc-load", about = "liveclass load generator (ours vs a Socket.IO peer)")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Args, Clone)]
struct Common {
    /// Which server protocol to speak.
    #[arg(long, value_enum, default_value = "ours")]
    target: Target,
    /// Server base URLs, comma-separated (`ws://127.0.0.1:8080`); clients are spread over them.
    #[arg(long, value_delimiter = ',', default_value = "ws://127.0.0.1:8080")]
    url: Vec<String>,
    /// HS256 secret shared with the server.
    #[arg(long, env = "LIVECLASS_JWT_SECRET", hide_env_values = true)]
    secret: String,
    /// Tenant id of the synthetic users (lobby rooms are `lobby:<tenant>:<name>`).
    #[arg(long, default_value = "00000000-0000-4000-8000-00000000beef")]
    tenant: String,
    /// Clients (connections).
    #[arg(long, default_value_t = 1000)]
    clients: usize,
    /// Target rate; its meaning depends on the scenario (see `--help` of each).
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// Seconds of the measured phase (per step for `fanout`).
    #[arg(long, default_value_t = 5.0)]
    duration: f64,
    /// Bind client sockets to these local addresses, round-robin (e.g. 127.0.0.2,127.0.0.3).
    #[arg(long, value_delimiter = ',')]
    source_ips: Vec<IpAddr>,
    /// Server processes to measure (CPU-seconds, RSS; descendants included), comma-separated.
    #[arg(long, value_delimiter = ',')]
    server_pid: Vec<u32>,
    /// Connections being opened at once.
    #[arg(long, default_value_t = 500)]
    concurrency: usize,
    /// Bytes of chat text per message.
    #[arg(long, default_value_t = 100)]
    text_bytes: usize,
    /// Run only a share of the clients: `i/n` (several generator processes, each under the file limit).
    #[arg(long, default_value = "0/1")]
    shard: String,
    /// Hard stop: the process exits after this many seconds whatever happens.
    #[arg(long, default_value_t = 300)]
    max_secs: u64,
    /// Join each client's room as it connects (`?join=`) instead of with a `join` frame afterwards.
    #[arg(long)]
    join_at_connect: bool,
}

#[derive(Subcommand)]
enum Cmd {
    /// 1 room x --clients; ramps the delivered rate (--rate is the first step, in delivered msgs/s) by
    /// --factor until p99 > --p99-ms or messages go missing (halving instead while no step has passed);
    /// reports the highest passing step.
    Fanout {
        #[command(flatten)]
        c: Common,
        /// Members that also send. The server allows a connection 50 messages/s (burst 100) by default: at
        /// 100 senders the ladder can reach 5M delivered/s in a room of 1000 before a sender hits that.
        #[arg(long, default_value_t = 100)]
        senders: usize,
        #[arg(long, default_value_t = 1.25)]
        factor: f64,
        /// From 100k delivered/s at 1.25x a step, 20 steps reach 6.9M: the ladder should end by failing, not
        /// by running out of steps (the result says which: `ended`).
        #[arg(long, default_value_t = 20)]
        max_steps: usize,
        #[arg(long, default_value_t = 50.0)]
        p99_ms: f64,
    },
    /// 1 room x --clients at a fixed delivered rate (--rate msgs/s): p50/p99/p99.9.
    Latency {
        #[command(flatten)]
        c: Common,
        #[arg(long, default_value_t = 100)]
        senders: usize,
    },
    /// --clients idle authenticated connections joined to rooms of --room-size; server RSS per connection.
    Idle {
        #[command(flatten)]
        c: Common,
        #[arg(long, default_value_t = 30)]
        room_size: usize,
    },
    /// Connect + auth + join storm of --clients with --concurrency in flight: connections per second.
    Connect {
        #[command(flatten)]
        c: Common,
        #[arg(long, default_value_t = 30)]
        room_size: usize,
    },
    /// --clients in rooms of --room-size with one extra publisher per room (--rate msgs/s sent in total);
    /// all clients drop at once and reconnect with recovery; time until all are back and lost messages.
    Reconnect {
        #[command(flatten)]
        c: Common,
        #[arg(long, default_value_t = 100)]
        room_size: usize,
    },
    /// Two or more nodes (--url per node, --server-pid per node): --rooms x --room-size members spread at
    /// random, --rate msgs/s sent in total; then --iso-rooms whose members are all on node 0 publish while
    /// the other nodes' CPU is measured.
    Multinode {
        #[command(flatten)]
        c: Common,
        #[arg(long, default_value_t = 1000)]
        rooms: usize,
        #[arg(long, default_value_t = 30)]
        room_size: usize,
        #[arg(long, default_value_t = 100)]
        iso_rooms: usize,
        /// Unix ms at which every shard starts publishing (so that several processes line up).
        #[arg(long)]
        start_at: Option<u64>,
    },
    /// Tokens for k6: `{"tenant":..,"tokens":[{"user_id":..,"token":..}]}`.
    Tokens {
        #[arg(long, env = "LIVECLASS_JWT_SECRET", hide_env_values = true)]
        secret: String,
        #[arg(long, default_value = "00000000-0000-4000-8000-00000000beef")]
        tenant: String,
        #[arg(long, default_value_t = 100)]
        count: usize,
        #[arg(long, default_value = LOAD_ROLE)]
        role: String,
        #[arg(long, default_value_t = 3600)]
        ttl_secs: i64,
    },
    /// The booking API: setup (tenant, --tutors with availability, --students), then --concurrency
    /// workers holding random free slots for --secs (holds/s, conflicts, latency), then --contenders
    /// simultaneous holds of one slot (exactly one winner). Exits non-zero on errors or != 1 winner.
    Booking {
        #[command(flatten)]
        opts: booking::Opts,
        #[arg(long, default_value_t = 300)]
        max_secs: u64,
    },
    /// The embedded SFU (LiveKit protocol v1 at `--url`/rtc/v1): --participants clients in one room, each
    /// publishing audio + video (one packet per frame) and subscribing to all others; after a warm-up, a
    /// --duration window: forwarded packets/s, loss, server CPU (--server-pid) and memory. One thread.
    Sfu {
        #[command(flatten)]
        opts: sfu::Opts,
        #[arg(long, default_value_t = 120)]
        max_secs: u64,
    },
    /// Merges the JSON results of several shards of one scenario (sums counters, merges histograms).
    Merge { files: Vec<String> },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let threads = std::env::var("LC_LOAD_THREADS").ok().and_then(|s| s.parse().ok()).unwrap_or(2);
    // The SFU clients share one thread (they share the machine with the server they measure).
    let rt = if matches!(cli.cmd, Cmd::Sfu { .. }) {
        tokio::runtime::Builder::new_current_thread().enable_all().build()?
    } else {
        tokio::runtime::Builder::new_multi_thread().worker_threads(threads).enable_all().build()?
    };
    let out = rt.block_on(async move {
        let max = match &cli.cmd {
            Cmd::Fanout { c, .. }
            | Cmd::Latency { c, .. }
            | Cmd::Idle { c, .. }
            | Cmd::Connect { c, .. }
            | Cmd::Reconnect { c, .. }
            | Cmd::Multinode { c, .. } => c.max_secs,
            Cmd::Booking { max_secs, .. } | Cmd::Sfu { max_secs, .. } => *max_secs,
            _ => 3600,
        };
        let work = async {
            match cli.cmd {
                Cmd::Fanout { c, senders, factor, max_steps, p99_ms } => {
                    fanout(&c, senders, factor, max_steps, Some(p99_ms)).await
                }
                Cmd::Latency { c, senders } => fanout(&c, senders, 1.0, 1, None).await,
                Cmd::Idle { c, room_size } => idle(&c, room_size).await,
                Cmd::Connect { c, room_size } => connect(&c, room_size).await,
                Cmd::Reconnect { c, room_size } => reconnect(&c, room_size).await,
                Cmd::Multinode { c, rooms, room_size, iso_rooms, start_at } => {
                    multinode(&c, rooms, room_size, iso_rooms, start_at).await
                }
                Cmd::Tokens { secret, tenant, count, role, ttl_secs } => {
                    Ok(tokens(&secret, &tenant, count, &role, ttl_secs))
                }
                Cmd::Merge { files } => merge(&files),
                Cmd::Sfu { opts, .. } => sfu::run(opts).await,
                Cmd::Booking { mut opts, .. } => {
                    opts.days = opts.days.clamp(1, 62);
                    opts.server_pid = stats::with_descendants(&opts.server_pid);
                    booking::run(opts).await
                }
            }
        };
        match tokio::time::timeout(Duration::from_secs(max), work).await {
            Ok(r) => r,
            Err(_) => bail!("stopped after --max-secs {max}"),
        }
    });
    // Don't wait for client tasks to wind down: thousands of sockets close with the process.
    let out = out?;
    println!("{out}");
    rt.shutdown_timeout(Duration::from_millis(100));
    // A scenario that checks correctness (booking) says `"ok": false` when a check failed.
    if out["ok"] == false {
        bail!("a check failed (see \"ok\" in the output)");
    }
    Ok(())
}

fn tokens(secret: &str, tenant: &str, count: usize, role: &str, ttl: i64) -> Value {
    let list: Vec<Value> = (0..count)
        .map(|i| {
            let id = user_id(i);
            json!({"user_id": id, "token": mint_token(secret.as_bytes(), tenant, &id, &format!("u{i}"), role, ttl)})
        })
        .collect();
    json!({"tenant": tenant, "tokens": list})
}

struct Ctx {
    target: Target,
    endpoints: Vec<Endpoint>,
    secret: Vec<u8>,
    tenant: String,
    sources: Vec<IpAddr>,
    join_at_connect: bool,
    shard: (usize, usize),
    pids: Vec<u32>,
}

impl Ctx {
    fn new(c: &Common) -> Result<Ctx> {
        if c.secret.len() < 32 {
            bail!("--secret / LIVECLASS_JWT_SECRET must be at least 32 bytes");
        }
        let (i, n) = c.shard.split_once('/').context("--shard i/n")?;
        let shard = (i.parse()?, n.parse()?);
        Ok(Ctx {
            target: c.target,
            endpoints: c.url.iter().map(|u| client::parse_url(u)).collect::<Result<_>>()?,
            secret: c.secret.as_bytes().to_vec(),
            tenant: c.tenant.clone(),
            sources: c.source_ips.clone(),
            join_at_connect: c.join_at_connect,
            shard,
            pids: stats::with_descendants(&c.server_pid),
        })
    }

    fn mine(&self, i: usize) -> bool {
        i % self.shard.1 == self.shard.0
    }

    fn room(&self, name: &str) -> String {
        format!("lobby:{}:{name}", self.tenant)
    }

    /// Client `i`'s access token (a real client has one before it connects).
    fn token(&self, i: usize) -> String {
        mint_token(&self.secret, &self.tenant, &user_id(i), &format!("u{i}"), LOAD_ROLE, 3600)
    }

    /// Opens client `i` with `token` on node `node` and joins `room`; returns the connection and the join's
    /// body.
    async fn open(&self, i: usize, token: &str, node: usize, room: &str) -> Result<(Conn, Value)> {
        let src = if self.sources.is_empty() { None } else { Some(self.sources[i % self.sources.len()]) };
        let ep = &self.endpoints[node % self.endpoints.len()];
        if self.join_at_connect {
            let mut conn = Conn::open(self.target, ep, src, token, Some(room)).await?;
            let (_, body) = conn.joined(room).await?;
            return Ok((conn, body));
        }
        let mut conn = Conn::open(self.target, ep, src, token, None).await?;
        let (_, body) = conn.join(room, None, |_, _| {}).await?;
        Ok((conn, body))
    }

    fn proc(&self) -> stats::ProcSample {
        stats::sample(&self.pids)
    }
}

/// Opens `ids` (client index, node, room) with `concurrency` in flight. Returns the connections (None
/// where it failed), the connect→joined latencies, the wall time and the first errors.
async fn open_many(
    ctx: &Arc<Ctx>,
    ids: Vec<(usize, usize, String)>,
    concurrency: usize,
) -> (Vec<Option<(Conn, Value)>>, Hist, Duration, Vec<String>) {
    let sem = Arc::new(Semaphore::new(concurrency.max(1)));
    let hist = Arc::new(AtomicHist::default());
    // Tokens are minted before the clock starts: clients log in before they connect.
    let ids: Vec<_> = ids.into_iter().map(|(i, node, room)| (i, ctx.token(i), node, room)).collect();
    let start = Instant::now();
    let mut handles = Vec::with_capacity(ids.len());
    for (i, token, node, room) in ids {
        let (ctx, sem, hist) = (ctx.clone(), sem.clone(), hist.clone());
        handles.push(tokio::spawn(async move {
            let _permit = sem.acquire_owned().await.expect("semaphore open");
            let t = Instant::now();
            let r = tokio::time::timeout(Duration::from_secs(30), ctx.open(i, &token, node, &room)).await;
            let r = match r {
                Ok(r) => r,
                Err(_) => Err(anyhow::anyhow!("connect+join timed out")),
            };
            if r.is_ok() {
                hist.record(t.elapsed().as_micros() as u64);
            }
            r
        }));
    }
    let mut conns = Vec::with_capacity(handles.len());
    let mut errors = Vec::new();
    for h in handles {
        match h.await {
            Ok(Ok(c)) => conns.push(Some(c)),
            Ok(Err(e)) => {
                if errors.len() < 5 {
                    errors.push(format!("{e:#}"));
                }
                conns.push(None)
            }
            Err(e) => {
                errors.push(e.to_string());
                conns.push(None)
            }
        }
    }
    (conns, hist.take(), start.elapsed(), errors)
}

fn err_count(conns: &[Option<(Conn, Value)>]) -> usize {
    conns.iter().filter(|c| c.is_none()).count()
}

/// Shared counters of a fan-out run.
#[derive(Default)]
struct Counters {
    delivered: Counter,
    sent: AtomicU64,
    errors: AtomicU64,
    /// Sends the server answered with an `error` frame (e.g. `rate_limited`): never published.
    refused: AtomicU64,
    overflow: AtomicU64,
    /// Offsets a member never saw between two it did (the server skipped them for that connection).
    gaps: AtomicU64,
    /// Offsets a member saw again, or out of order.
    out_of_order: AtomicU64,
    hist: AtomicHist,
    cross: AtomicHist,
}

/// Reads publications forever, recording latency from the embedded stamp; sends a chat whenever
/// `outbox` yields a stamp.
async fn member(
    mut conn: Conn,
    room: String,
    node: u8,
    text_bytes: usize,
    mut outbox: Option<mpsc::Receiver<u64>>,
    k: Arc<Counters>,
) {
    let mut last_offset = 0u64;
    loop {
        let next_out = async {
            match outbox.as_mut() {
                Some(rx) => rx.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            f = conn.recv() => match f {
                Ok(Frame::Message { offset, stamp: Some((ts, from)) }) => {
                    if offset != 0 {
                        if last_offset != 0 && offset > last_offset + 1 {
                            k.gaps.fetch_add(offset - last_offset - 1, Ordering::Relaxed);
                        } else if offset <= last_offset {
                            k.out_of_order.fetch_add(1, Ordering::Relaxed);
                        }
                        last_offset = last_offset.max(offset);
                    }
                    let lat = now_us().saturating_sub(ts);
                    if from == node { k.hist.record(lat) } else { k.cross.record(lat) }
                    k.delivered.add(1);
                }
                Ok(Frame::Closed) | Err(_) => {
                    k.errors.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                Ok(Frame::Event(name, body)) if name == "error" => {
                    if k.refused.fetch_add(1, Ordering::Relaxed) == 0 {
                        eprintln!("the server refused a send: {body}");
                    }
                }
                Ok(_) => {}
            },
            stamp = next_out => {
                let Some(stamp) = stamp else { outbox = None; continue };
                let id = conn.next_id();
                let f = conn.chat_frame(id, &room, &chat_text(stamp, node, text_bytes));
                if conn.send_raw(f).await.is_err() {
                    k.errors.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                k.sent.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// Hands out send stamps to `outboxes` round-robin at `rate` per second until `until`.
async fn pace(outboxes: &[mpsc::Sender<u64>], rate: f64, until: Instant, k: &Counters) -> u64 {
    let start = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    let mut issued = 0u64;
    let mut next = 0usize;
    while Instant::now() < until {
        tick.tick().await;
        let due = (start.elapsed().as_secs_f64() * rate) as u64;
        while issued < due {
            let stamp = now_us();
            if outboxes[next % outboxes.len()].try_send(stamp).is_err() {
                k.overflow.fetch_add(1, Ordering::Relaxed);
            }
            next += 1;
            issued += 1;
        }
    }
    issued
}

/// Waits until `delivered` reaches `expected` or stays still for 1 s (at most 5 s).
async fn settle(k: &Counters, expected: u64) {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut last = (k.delivered.get(), Instant::now());
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let d = k.delivered.get();
        if d >= expected {
            return;
        }
        if d != last.0 {
            last = (d, Instant::now());
        } else if last.1.elapsed() > Duration::from_secs(1) {
            return;
        }
    }
}

fn round(x: f64, digits: i32) -> f64 {
    let p = 10f64.powi(digits);
    (x * p).round() / p
}

async fn fanout(c: &Common, senders: usize, factor: f64, max_steps: usize, p99_limit: Option<f64>) -> Result<Value> {
    let ctx = Arc::new(Ctx::new(c)?);
    let room = ctx.room("fanout");
    let ids: Vec<_> = (0..c.clients).filter(|&i| ctx.mine(i)).map(|i| (i, i, room.clone())).collect();
    let before = ctx.proc();
    let (conns, connect_hist, connect_time, errors) = open_many(&ctx, ids.clone(), c.concurrency).await;
    let failed = err_count(&conns);
    if failed > 0 {
        bail!("{failed} of {} clients failed to connect: {errors:?}", conns.len());
    }
    let members = conns.len() as u64;
    let k = Arc::new(Counters::default());
    let mut outboxes = Vec::new();
    let mut tasks = Vec::new();
    for (n, conn) in conns.into_iter().enumerate() {
        let (conn, _) = conn.expect("checked");
        let outbox = if n < senders {
            let (tx, rx) = mpsc::channel(4096);
            outboxes.push(tx);
            Some(rx)
        } else {
            None
        };
        tasks.push(tokio::spawn(member(conn, room.clone(), 0, c.text_bytes, outbox, k.clone())));
    }
    // Let presence traffic from the joins die down.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut steps = Vec::new();
    let mut best: Option<Value> = None;
    let mut rate = c.rate.max(1.0);
    let mut ended = "max_steps";
    // Everyone in the room receives each message, the whole room being `--clients` even when sharded.
    let room_size = c.clients as f64;
    for _ in 0..max_steps {
        k.hist.take();
        k.delivered.take();
        k.sent.store(0, Ordering::Relaxed);
        let p0 = ctx.proc();
        let t0 = Instant::now();
        let send_rate = rate / room_size;
        let issued = pace(&outboxes, send_rate, t0 + Duration::from_secs_f64(c.duration), &k).await;
        let window = t0.elapsed().as_secs_f64();
        settle(&k, issued * members).await;
        let p1 = ctx.proc();
        let h = k.hist.take();
        let delivered = k.delivered.get();
        let expected = issued * members;
        let lost = expected.saturating_sub(delivered);
        let refused = k.refused.swap(0, Ordering::Relaxed);
        let cpu = p1.cpu_secs - p0.cpu_secs;
        let step = json!({
            "target_delivered_per_s": round(rate, 0),
            "sent": issued,
            "delivered": delivered,
            "delivered_per_s": round(delivered as f64 / window, 0),
            "lost": lost,
            "latency": h.summary(),
            "hist": h.to_json(),
            "server_cpu_s": round(cpu, 2),
            "server_cpu_s_per_million": if delivered > 0 { round(cpu / delivered as f64 * 1e6, 3) } else { 0.0 },
            "server_rss_mb": round(p1.rss_bytes as f64 / 1048576.0, 1),
            "errors": k.errors.load(Ordering::Relaxed),
            "refused": refused,
            "send_overflow": k.overflow.swap(0, Ordering::Relaxed),
        });
        let p99 = h.quantile(0.99) as f64 / 1000.0;
        // A refused send is the generator's fault (too few senders for the server's rate limit), not a
        // capacity limit: the step fails, and says why.
        let ok = lost as f64 <= expected as f64 * 0.001 && refused == 0 && p99_limit.is_none_or(|l| p99 <= l);
        eprintln!(
            "step {:.0}/s: delivered {delivered}, p99 {p99:.2} ms, lost {lost}, refused {refused}, ok {ok}",
            rate
        );
        steps.push(step.clone());
        if !ok && best.is_none() && p99_limit.is_some() && rate > 2000.0 {
            // The first step already failed: come down until one passes, then stop there.
            rate /= 2.0;
            continue;
        }
        if !ok {
            ended = "failed";
            break;
        }
        best = Some(step);
        rate *= factor;
    }
    for t in tasks {
        t.abort();
    }
    let mut best = best.unwrap_or(Value::Null);
    if let Some(o) = best.as_object_mut() {
        o.remove("hist");
    }
    if p99_limit.is_none() {
        best = steps.pop().unwrap_or(Value::Null);
    }
    Ok(json!({
        "scenario": if p99_limit.is_some() { "fanout" } else { "latency" },
        "target": format!("{:?}", c.target).to_lowercase(),
        "clients": c.clients, "shard": c.shard, "members_here": members, "senders": senders,
        "text_bytes": c.text_bytes, "step_secs": c.duration,
        "p99_limit_ms": p99_limit,
        "ended": if p99_limit.is_some() { ended } else { "fixed_rate" },
        "connect": {"secs": round(connect_time.as_secs_f64(), 3), "latency": connect_hist.summary()},
        "server_rss_mb_before": round(before.rss_bytes as f64 / 1048576.0, 1),
        "result": best,
        "steps": steps,
    }))
}

async fn idle(c: &Common, room_size: usize) -> Result<Value> {
    let ctx = Arc::new(Ctx::new(c)?);
    let ids: Vec<_> =
        (0..c.clients).filter(|&i| ctx.mine(i)).map(|i| (i, i, ctx.room(&format!("idle-{}", i / room_size)))).collect();
    let before = ctx.proc();
    let (conns, hist, took, errors) = open_many(&ctx, ids, c.concurrency).await;
    let failed = err_count(&conns);
    let ok = conns.len() - failed;
    // Hold them: keep reading (answers pings), wait for the server to settle, then measure.
    let k = Arc::new(Counters::default());
    let tasks: Vec<_> = conns
        .into_iter()
        .flatten()
        .map(|(conn, _)| tokio::spawn(member(conn, String::new(), 0, 0, None, k.clone())))
        .collect();
    tokio::time::sleep(Duration::from_secs_f64(c.duration)).await;
    let after = ctx.proc();
    for t in tasks {
        t.abort();
    }
    let per = |b: u64| if ok > 0 { round(b as f64 / ok as f64 / 1024.0, 2) } else { 0.0 };
    Ok(json!({
        "scenario": "idle", "target": format!("{:?}", c.target).to_lowercase(),
        "clients": c.clients, "room_size": room_size, "connected": ok, "failed": failed, "errors": errors,
        "dropped_while_idle": k.errors.load(Ordering::Relaxed),
        "connect_per_s": round(ok as f64 / took.as_secs_f64(), 0), "connect_latency": hist.summary(),
        "server_rss_mb_before": round(before.rss_bytes as f64 / 1048576.0, 1),
        "server_rss_mb": round(after.rss_bytes as f64 / 1048576.0, 1),
        "server_kb_per_conn_total": per(after.rss_bytes),
        "server_kb_per_conn_delta": per(after.rss_bytes.saturating_sub(before.rss_bytes)),
    }))
}

async fn connect(c: &Common, room_size: usize) -> Result<Value> {
    let ctx = Arc::new(Ctx::new(c)?);
    let ids: Vec<_> = (0..c.clients)
        .filter(|&i| ctx.mine(i))
        .map(|i| (i, i, ctx.room(&format!("storm-{}", i / room_size))))
        .collect();
    let p0 = ctx.proc();
    let (conns, hist, took, errors) = open_many(&ctx, ids, c.concurrency).await;
    let p1 = ctx.proc();
    let failed = err_count(&conns);
    let ok = conns.len() - failed;
    drop(conns);
    Ok(json!({
        "scenario": "connect", "target": format!("{:?}", c.target).to_lowercase(),
        "clients": c.clients, "concurrency": c.concurrency, "room_size": room_size,
        "connected": ok, "failed": failed, "errors": errors,
        "secs": round(took.as_secs_f64(), 3),
        "connect_per_s": round(ok as f64 / took.as_secs_f64(), 0),
        "latency": hist.summary(),
        "server_cpu_s": round(p1.cpu_secs - p0.cpu_secs, 2),
    }))
}

/// Per-client view of one room's stream: counts gaps and duplicates by offset.
#[derive(Default)]
struct Stream {
    epoch: String,
    next: u64,
    lost: u64,
    dup: u64,
    got: u64,
}

impl Stream {
    fn at(body: &Value) -> Stream {
        Stream {
            epoch: body["position"]["epoch"].as_str().unwrap_or("").to_string(),
            next: body["position"]["offset"].as_u64().unwrap_or(0) + 1,
            ..Default::default()
        }
    }

    fn see(&mut self, offset: u64) {
        if offset == 0 {
            return; // ephemeral (presence)
        }
        if offset < self.next {
            self.dup += 1;
            return;
        }
        self.lost += offset - self.next;
        self.next = offset + 1;
        self.got += 1;
    }
}

/// Synthetic users exist only in their tokens; a lobby looks students up (consent), so load tokens carry
/// a role that needs no database row.
const LOAD_ROLE: &str = "tutor";

async fn reconnect(c: &Common, room_size: usize) -> Result<Value> {
    let ctx = Arc::new(Ctx::new(c)?);
    let rooms = c.clients.div_ceil(room_size);
    // Members are 0..clients; publishers take the indices after them.
    let room_of = |i: usize| ctx.room(&format!("rc-{}", i / room_size));
    let pubs: Vec<_> =
        (0..rooms).filter(|&r| ctx.mine(r)).map(|r| (c.clients + r, r, room_of(r * room_size))).collect();
    let members: Vec<_> = (0..c.clients).filter(|&i| ctx.mine(i)).map(|i| (i, i, room_of(i))).collect();
    let (pconns, _, _, perr) = open_many(&ctx, pubs.clone(), c.concurrency).await;
    let (mconns, hist, took, merr) = open_many(&ctx, members.clone(), c.concurrency).await;
    if err_count(&pconns) + err_count(&mconns) > 0 {
        bail!("connect failed: {perr:?} {merr:?}");
    }
    // Publishers: send on their stamp channel, track the last acked offset.
    let last_acked: Arc<Vec<AtomicU64>> = Arc::new((0..pubs.len()).map(|_| AtomicU64::new(0)).collect());
    let mut outboxes = Vec::new();
    let mut pub_tasks = Vec::new();
    let k = Arc::new(Counters::default());
    for (n, ((conn, _), (_, _, room))) in pconns.into_iter().flatten().zip(pubs.iter()).enumerate() {
        let (tx, mut rx) = mpsc::channel::<u64>(4096);
        outboxes.push(tx);
        let (room, acked, k, tb) = (room.clone(), last_acked.clone(), k.clone(), c.text_bytes);
        pub_tasks.push(tokio::spawn(async move {
            let mut conn = conn;
            let mut open = true;
            loop {
                tokio::select! {
                    f = conn.recv() => match f {
                        Ok(Frame::Event(name, body)) if name == "ack" => {
                            acked[n].fetch_max(body["offset"].as_u64().unwrap_or(0), Ordering::Relaxed);
                        }
                        Ok(Frame::Closed) | Err(_) => { k.errors.fetch_add(1, Ordering::Relaxed); return; }
                        _ => {}
                    },
                    s = rx.recv(), if open => match s {
                        Some(stamp) => {
                            let id = conn.next_id();
                            let f = conn.chat_frame(id, &room, &chat_text(stamp, 0, tb));
                            if conn.send_raw(f).await.is_err() { return; }
                            k.sent.fetch_add(1, Ordering::Relaxed);
                        }
                        None => open = false,
                    },
                }
            }
        }));
    }
    // Members: follow the stream; on the drop signal, drop the socket and come back with recovery.
    let (drop_tx, drop_rx) = watch::channel(false);
    let (stop_tx, stop_rx) = watch::channel(false);
    let back = Arc::new(AtomicUsize::new(0));
    let unrecoverable = Arc::new(AtomicUsize::new(0));
    let back_hist = Arc::new(AtomicHist::default());
    let mut member_tasks = Vec::new();
    for ((conn, body), (i, node, room)) in mconns.into_iter().flatten().zip(members) {
        let (ctx, mut drop_rx, mut stop_rx) = (ctx.clone(), drop_rx.clone(), stop_rx.clone());
        let (back, unrec, back_hist) = (back.clone(), unrecoverable.clone(), back_hist.clone());
        member_tasks.push(tokio::spawn(async move {
            let token = ctx.token(i); // kept from the first login, as a real client would
            let mut s = Stream::at(&body);
            let mut conn = Some(conn);
            while let Some(cn) = conn.as_mut() {
                tokio::select! {
                    f = cn.recv() => match f {
                        Ok(Frame::Message { offset, .. }) => s.see(offset),
                        Ok(Frame::Closed) | Err(_) => break,
                        _ => {}
                    },
                    _ = drop_rx.changed() => {
                        drop(conn.take()); // abrupt: no close frame
                        let t = Instant::now();
                        let src = if ctx.sources.is_empty() { None } else { Some(ctx.sources[i % ctx.sources.len()]) };
                        let mut tries = 0;
                        let mut c2 = loop {
                            let ep = &ctx.endpoints[node % ctx.endpoints.len()];
                            match Conn::open(ctx.target, ep, src, &token, None).await {
                                Ok(c) => break Some(c),
                                Err(_) if tries < 20 => { tries += 1; tokio::time::sleep(Duration::from_millis(50)).await }
                                Err(_) => break None,
                            }
                        };
                        let Some(cn) = c2.as_mut() else { break };
                        let recover = (s.epoch.clone(), s.next - 1);
                        let mut early = Vec::new();
                        let Ok((kind, body)) = cn.join(&room, Some((&recover.0, recover.1)), |o, _| early.push(o)).await else { break };
                        if kind == "not_recoverable" || body["recovered"] != true {
                            unrec.fetch_add(1, Ordering::Relaxed);
                            let now = body["position"]["offset"].as_u64().unwrap_or(0);
                            s.lost += (now + 1).saturating_sub(s.next);
                            s.next = s.next.max(now + 1);
                        } else {
                            for item in body["history"].as_array().into_iter().flatten() {
                                s.see(item["offset"].as_u64().unwrap_or(0));
                            }
                        }
                        for o in early { s.see(o) }
                        back_hist.record(t.elapsed().as_micros() as u64);
                        back.fetch_add(1, Ordering::Relaxed);
                        conn = c2;
                    },
                    _ = stop_rx.changed() => {
                        // Drain what's in flight, then report.
                        let cn = conn.as_mut().expect("connected");
                        while let Ok(Ok(f)) = tokio::time::timeout(Duration::from_millis(300), cn.recv()).await {
                            match f { Frame::Message { offset, .. } => s.see(offset), Frame::Closed => break, _ => {} }
                        }
                        break;
                    }
                }
            }
            (i, s, conn.is_some())
        }));
    }
    let n_members = member_tasks.len();
    let rate = if c.rate > 0.0 { c.rate } else { 1000.0 };
    let (pace_k, ob) = (k.clone(), outboxes.clone());
    let publisher = tokio::spawn(async move {
        let until = Instant::now() + Duration::from_secs(3600);
        pace(&ob, rate, until, &pace_k).await
    });
    tokio::time::sleep(Duration::from_secs_f64(c.duration)).await;
    let t_drop = Instant::now();
    drop_tx.send(true)?;
    let deadline = t_drop + Duration::from_secs(15);
    while back.load(Ordering::Relaxed) < n_members && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let all_back_secs = t_drop.elapsed().as_secs_f64();
    let came_back = back.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs_f64(c.duration)).await;
    publisher.abort();
    drop(outboxes);
    tokio::time::sleep(Duration::from_millis(500)).await; // last acks
    stop_tx.send(true)?;
    let (mut lost, mut dup, mut got, mut broken) = (0u64, 0u64, 0u64, 0usize);
    for t in member_tasks {
        let (i, mut s, alive) = t.await?;
        if !alive {
            broken += 1;
        }
        let r = (i / room_size) / ctx.shard.1; // index among this shard's publishers
        let final_offset =
            pubs.iter().position(|p| p.1 == i / room_size).map(|p| last_acked[p].load(Ordering::Relaxed));
        let _ = r;
        if let Some(f) = final_offset {
            s.lost += (f + 1).saturating_sub(s.next);
        }
        lost += s.lost;
        dup += s.dup;
        got += s.got;
    }
    for t in pub_tasks {
        t.abort();
    }
    Ok(json!({
        "scenario": "reconnect", "target": format!("{:?}", c.target).to_lowercase(),
        "clients": n_members, "room_size": room_size, "rooms": pubs.len(), "publish_per_s": rate,
        "connect_secs": round(took.as_secs_f64(), 3), "connect_latency": hist.summary(),
        "came_back": came_back, "all_back_secs": round(all_back_secs, 3),
        "back_latency": back_hist.take().summary(),
        "not_recovered": unrecoverable.load(Ordering::Relaxed), "broken": broken,
        "sent": k.sent.load(Ordering::Relaxed), "received": got, "lost": lost, "duplicates": dup,
        "send_overflow": k.overflow.load(Ordering::Relaxed),
    }))
}

/// Deterministic "random" node of a member, the same in every shard.
fn spread(i: usize, nodes: usize) -> usize {
    let mut x = i as u64 ^ 0x9e37_79b9_7f4a_7c15;
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    ((x ^ (x >> 31)) % nodes as u64) as usize
}

async fn multinode(c: &Common, rooms: usize, room_size: usize, iso: usize, start_at: Option<u64>) -> Result<Value> {
    let ctx = Arc::new(Ctx::new(c)?);
    let nodes = ctx.endpoints.len();
    if nodes < 2 {
        bail!("multinode needs two or more --url");
    }
    // Rooms 0..rooms spread members over nodes; rooms rooms..rooms+iso keep them all on node 0.
    let mut ids = Vec::new();
    for r in 0..rooms + iso {
        for j in 0..room_size {
            let i = r * room_size + j;
            if ctx.mine(i) {
                let node = if r < rooms { spread(i, nodes) } else { 0 };
                ids.push((i, node, ctx.room(&format!("mn-{r}"))));
            }
        }
    }
    let (conns, hist, took, errors) = open_many(&ctx, ids.clone(), c.concurrency).await;
    let failed = err_count(&conns);
    if failed > 0 {
        bail!("{failed} clients failed: {errors:?}");
    }
    let spread_k = Arc::new(Counters::default());
    let iso_k = Arc::new(Counters::default());
    let (mut spread_out, mut iso_out, mut tasks) = (Vec::new(), Vec::new(), Vec::new());
    for ((conn, _), (i, node, room)) in conns.into_iter().flatten().zip(ids) {
        let r = i / room_size;
        let (k, list) = if r < rooms { (&spread_k, &mut spread_out) } else { (&iso_k, &mut iso_out) };
        let outbox = if i % room_size == 0 {
            let (tx, rx) = mpsc::channel(4096);
            list.push(tx);
            Some(rx)
        } else {
            None
        };
        tasks.push(tokio::spawn(member(conn, room, node as u8, c.text_bytes, outbox, k.clone())));
    }
    // Line up with the other shards, then let presence traffic settle.
    if let Some(at) = start_at {
        let wait = at.saturating_sub(now_us() / 1000);
        tokio::time::sleep(Duration::from_millis(wait)).await;
    } else {
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let share = |n: usize, total: usize| if total == 0 { 0.0 } else { n as f64 / total as f64 };
    let per_node = |pids: &[u32]| -> Vec<f64> {
        // --server-pid lists one pid per node, in --url order.
        pids.iter().map(|&p| stats::sample(&stats::with_descendants(&[p])).cpu_secs).collect()
    };
    let mut phases = Vec::new();
    // With --start-at (several shards), every phase starts and stops counting at the same wall-clock time in
    // every shard: a shard whose members only receive (its rooms' publishers are in another shard) must not
    // stop counting while the other shard still publishes or drains.
    let phase_ms = (c.duration * 1000.0) as u64 + 7000;
    let phase_start = |n: u64| start_at.map(|at| at + n * phase_ms);
    let until = |at_ms: u64| tokio::time::sleep(Duration::from_millis(at_ms.saturating_sub(now_us() / 1000)));
    // The baseline: nothing published, so every node's CPU here is its idle members' upkeep (heartbeats,
    // presence refresh). A node's CPU in `node0_only` compares with this, not with zero.
    let cpu0 = per_node(&c.server_pid);
    tokio::time::sleep(Duration::from_secs_f64(c.duration)).await;
    let cpu1 = per_node(&c.server_pid);
    phases.push(json!({
        "phase": "idle", "sent": 0, "delivered": 0, "delivered_per_s": 0, "lost": 0,
        "node_cpu_s": cpu0.iter().zip(&cpu1).map(|(a, b)| round(b - a, 3)).collect::<Vec<_>>(),
    }));
    for (n, (name, k, out, total_rooms)) in
        [("spread", &spread_k, &spread_out, rooms), ("node0_only", &iso_k, &iso_out, iso)].into_iter().enumerate()
    {
        if total_rooms == 0 {
            continue;
        }
        if let Some(at) = phase_start(n as u64 + 1) {
            until(at).await;
        }
        let rate = c.rate * share(out.len(), total_rooms);
        let cpu0 = per_node(&c.server_pid);
        let t0 = Instant::now();
        let issued = pace(out, rate.max(0.001), t0 + Duration::from_secs_f64(c.duration), k).await;
        let window = t0.elapsed().as_secs_f64();
        match phase_start(n as u64 + 2) {
            // Everyone counts until 2 s before the next phase.
            Some(next) => until(next - 2000).await,
            None => settle(k, issued * room_size as u64).await,
        }
        let cpu1 = per_node(&c.server_pid);
        let (local, cross) = (k.hist.take(), k.cross.take());
        let delivered = k.delivered.take();
        phases.push(json!({
            "phase": name, "sent": issued, "delivered": delivered,
            "delivered_per_s": round(delivered as f64 / window, 0),
            "lost": (issued * room_size as u64).saturating_sub(delivered),
            "local_latency": local.summary(), "cross_node_latency": cross.summary(),
            "local_hist": local.to_json(), "cross_hist": cross.to_json(),
            "node_cpu_s": cpu0.iter().zip(&cpu1).map(|(a, b)| round(b - a, 3)).collect::<Vec<_>>(),
            "errors": k.errors.load(Ordering::Relaxed),
            "gaps": k.gaps.load(Ordering::Relaxed), "out_of_order": k.out_of_order.load(Ordering::Relaxed),
        }));
        // A gap between phases so that the shards' phases don't overlap.
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    for t in tasks {
        t.abort();
    }
    Ok(json!({
        "scenario": "multinode", "target": format!("{:?}", c.target).to_lowercase(),
        "nodes": nodes, "rooms": rooms, "room_size": room_size, "iso_rooms": iso, "shard": c.shard,
        "publish_per_s": c.rate, "connect_secs": round(took.as_secs_f64(), 3), "connect_latency": hist.summary(),
        "phases": phases,
    }))
}

/// Sums the shards of a fan-out/latency step or multinode phases, merging histograms.
fn merge(files: &[String]) -> Result<Value> {
    let docs: Vec<Value> = files
        .iter()
        .map(|f| Ok(serde_json::from_str(&std::fs::read_to_string(f).with_context(|| f.clone())?)?))
        .collect::<Result<_>>()?;
    let Some(first) = docs.first() else { bail!("no files") };
    let mut out = first.clone();
    if let Some(phases) = first["phases"].as_array() {
        let mut merged = Vec::new();
        for (n, p) in phases.iter().enumerate() {
            let mut p = p.clone();
            for key in ["sent", "delivered", "delivered_per_s", "errors", "gaps", "out_of_order"] {
                let sum: f64 = docs.iter().map(|d| d["phases"][n][key].as_f64().unwrap_or(0.0)).sum();
                p[key] = json!(sum);
            }
            // Not a sum of the shards' own figures: one shard's members receive what another shard's
            // publishers sent, so only the totals balance.
            let room_size = first["room_size"].as_f64().unwrap_or(0.0);
            let expected = p["sent"].as_f64().unwrap_or(0.0) * room_size;
            p["lost"] = json!((expected - p["delivered"].as_f64().unwrap_or(0.0)).max(0.0));
            for (h, s) in [("local_hist", "local_latency"), ("cross_hist", "cross_node_latency")] {
                let mut all = Hist::default();
                for d in &docs {
                    all.merge(&Hist::from_json(&d["phases"][n][h]));
                }
                p[s] = all.summary();
                p.as_object_mut().expect("object").remove(h);
            }
            merged.push(p);
        }
        out["phases"] = Value::Array(merged);
    }
    out["merged_from"] = json!(files);
    Ok(out)
}

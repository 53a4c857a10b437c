//! Prometheus metrics: requests by route and status, latency histograms by route, the listener's
//! connections (open, refused by a cap, closed by a timeout), database pool gauges and the embedded SFU's
//! counters (both read at scrape time). Served as text at `GET /metrics`.

use std::{sync::Arc, time::Instant};

use axum::{
    extract::{MatchedPath, Request, State},
    http::header,
    middleware::Next,
    response::{IntoResponse, Response},
};
use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

use crate::db::Db;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    route: String,
    status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: String,
    route: String,
}

type HistogramFamily = Family<RouteLabels, Histogram, fn() -> Histogram>;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

/// Why the listener turned a connection away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `max_connections` reached.
    Total,
    /// `max_connections_per_ip` reached for the client's address.
    PerIp,
}

/// Why the listener closed an HTTP connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionTimeout {
    /// No complete request head within `header_read_timeout_secs`.
    Header,
    /// Keep-alive with nothing sent for `idle_timeout_secs`.
    Idle,
}

/// The listener's connection counts; cheap to clone (the metrics are shared).
#[derive(Clone, Default)]
pub struct ConnectionMetrics {
    open: Gauge,
    refused: Family<ReasonLabels, Counter>,
    timed_out: Family<ReasonLabels, Counter>,
}

impl ConnectionMetrics {
    pub fn opened(&self) {
        self.open.inc();
    }

    pub fn closed(&self) {
        self.open.dec();
    }

    pub fn refused(&self, why: Refusal) {
        let reason = match why {
            Refusal::Total => "total",
            Refusal::PerIp => "per_ip",
        };
        self.refused.get_or_create(&ReasonLabels { reason }).inc();
    }

    pub fn timed_out(&self, why: ConnectionTimeout) {
        let reason = match why {
            ConnectionTimeout::Header => "header",
            ConnectionTimeout::Idle => "idle",
        };
        self.timed_out.get_or_create(&ReasonLabels { reason }).inc();
    }
}

pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: HistogramFamily,
    pool_size: Gauge,
    pool_idle: Gauge,
    pool_max: Gauge,
    sfu_participants: Gauge,
    /// SFU totals, as counters: advanced at scrape time by what the engine counted since the last one.
    sfu_totals: [(Counter, std::sync::atomic::AtomicU64); 3],
    /// Updated by the listener as connections come and go.
    pub connections: ConnectionMetrics,
}

fn latency_histogram() -> Histogram {
    Histogram::new([0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0])
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("liveclass");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency: HistogramFamily = Family::new_with_constructor(latency_histogram);
        let (pool_size, pool_idle, pool_max) = (Gauge::default(), Gauge::default(), Gauge::default());
        registry.register("http_requests", "HTTP requests by route and status", requests.clone());
        registry.register("http_request_duration_seconds", "HTTP request latency by route", latency.clone());
        registry.register("db_pool_connections", "Open database connections", pool_size.clone());
        registry.register("db_pool_idle_connections", "Idle database connections", pool_idle.clone());
        registry.register("db_pool_max_connections", "Configured pool size", pool_max.clone());
        let connections = ConnectionMetrics::default();
        registry.register(
            "http_connections_open",
            "Open client connections, upgraded WebSockets included",
            connections.open.clone(),
        );
        registry.register(
            "http_connections_refused",
            "Connections closed at accept by a cap (reason: total, per_ip)",
            connections.refused.clone(),
        );
        registry.register(
            "http_connections_timed_out",
            "HTTP connections closed by a timeout (reason: header, idle)",
            connections.timed_out.clone(),
        );
        let sfu_participants = Gauge::default();
        registry.register("sfu_participants", "Participants connected to the embedded SFU", sfu_participants.clone());
        let sfu_totals: [(Counter, std::sync::atomic::AtomicU64); 3] = Default::default();
        for ((name, help), (c, _)) in [
            ("sfu_forwarded_frames", "Media frames the embedded SFU wrote towards subscribers"),
            ("sfu_received_datagrams", "UDP datagrams the embedded SFU received"),
            ("sfu_sent_datagrams", "UDP datagrams the embedded SFU sent"),
        ]
        .into_iter()
        .zip(&sfu_totals)
        {
            registry.register(name, help, c.clone());
        }
        Self { registry, requests, latency, pool_size, pool_idle, pool_max, sfu_participants, sfu_totals, connections }
    }
}

impl Metrics {
    fn observe(&self, method: &str, route: &str, status: u16, seconds: f64) {
        let (method, route) = (method.to_string(), route.to_string());
        self.latency.get_or_create(&RouteLabels { method: method.clone(), route: route.clone() }).observe(seconds);
        self.requests.get_or_create(&RequestLabels { method, route, status }).inc();
    }

    pub fn render(&self, db: &Db, sfu: Option<&rooms::sfu::SfuStats>) -> String {
        use std::sync::atomic::Ordering::Relaxed;
        if let Some(st) = sfu {
            self.sfu_participants.set(st.participants.load(Relaxed) as i64);
            let now = [&st.forwarded_frames, &st.received_datagrams, &st.sent_datagrams].map(|a| a.load(Relaxed));
            for ((counter, last), now) in self.sfu_totals.iter().zip(now) {
                let before = last.swap(now, Relaxed);
                counter.inc_by(now.saturating_sub(before));
            }
        }
        let (size, idle, max) = db.pool_stats();
        self.pool_size.set(size as i64);
        self.pool_idle.set(idle as i64);
        self.pool_max.set(max as i64);
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String");
        out
    }
}

/// Middleware: counts and times every request under its route template (`/api/v1/users/{id}`),
/// so label cardinality stays bounded; unmatched paths count as `unmatched`.
pub async fn track(State(metrics): State<Arc<Metrics>>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().as_str().to_string();
    let route = req.extensions().get::<MatchedPath>().map(|p| p.as_str().to_string());
    let res = next.run(req).await;
    metrics.observe(
        &method,
        route.as_deref().unwrap_or("unmatched"),
        res.status().as_u16(),
        start.elapsed().as_secs_f64(),
    );
    res
}

/// `GET /metrics`
#[utoipa::path(get, path = "/metrics", tag = "ops", responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
pub async fn scrape(
    State(metrics): State<Arc<Metrics>>,
    State(db): State<Db>,
    State(sfu): State<Option<rooms::sfu::Sfu>>,
) -> impl IntoResponse {
    let body = metrics.render(&db, sfu.as_ref().map(|s| s.stats.as_ref()));
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], body)
}

//! The transactional outbox: every state change appends its typed [`DomainEvent`] in the same
//! transaction as the change; the dispatcher then hands committed events, in id order, to two kinds
//! of receiver:
//!
//! - durable [`Consumer`]s (gamification, notifications, ...) run inside the dispatcher's transaction
//!   that marks the event published, so their effects and the marking commit together: nothing is
//!   lost across a crash, and `processed_events` makes a second delivery a no-op. A consumer may
//!   append further events through the same connection; they are dispatched in a later round.
//! - live subscribers (bounded channels, e.g. the real-time fan-out) get each event after commit;
//!   a slow one slows the dispatcher rather than losing events; a crash between commit and fan-out
//!   loses only live pushes, which clients recover by reloading.
//!
//! On PostgreSQL an advisory lock lets one node at a time dispatch, which keeps the order across
//! nodes. A consumer error rolls the batch back; it is retried on the next round.

use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::{AnyConnection, Row};
use tokio::sync::{Notify, mpsc, watch};

use crate::{
    clock::SharedClock,
    db::{self, Backend, Db},
    events::DomainEvent,
    ids::TenantId,
};

/// A published event: its outbox id (increasing), tenant and time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventEnvelope {
    pub id: i64,
    pub tenant_id: TenantId,
    pub occurred_at: DateTime<Utc>,
    pub event: DomainEvent,
}

/// Appends `event` inside the caller's transaction.
pub async fn append(
    conn: &mut AnyConnection,
    tenant: TenantId,
    now: DateTime<Utc>,
    event: &DomainEvent,
) -> Result<(), sqlx::Error> {
    let payload = serde_json::to_string(event).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
    sqlx::query("INSERT INTO outbox (tenant_id, event_type, payload, created_at) VALUES ($1, $2, $3, $4)")
        .bind(tenant.to_string())
        .bind(event.name())
        .bind(payload)
        .bind(db::ts(now))
        .execute(conn)
        .await?;
    Ok(())
}

/// A durable event handler, run in the dispatcher's transaction (see the module doc). It must use
/// only the connection it is given (on SQLite, opening another write transaction would deadlock).
pub trait Consumer: Send + Sync + 'static {
    /// Stable name, the key of its `processed_events` rows.
    fn name(&self) -> &'static str;
    fn handle<'a>(
        &'a self,
        conn: &'a mut AnyConnection,
        event: &'a EventEnvelope,
        now: DateTime<Utc>,
    ) -> BoxFuture<'a, anyhow::Result<()>>;
}

/// Records that `consumer` handled `event_id`; false when it already had.
async fn first_delivery(conn: &mut AnyConnection, consumer: &str, event_id: i64) -> Result<bool, sqlx::Error> {
    let inserted =
        sqlx::query("INSERT INTO processed_events (consumer, event_id) VALUES ($1, $2) ON CONFLICT DO NOTHING")
            .bind(consumer)
            .bind(event_id)
            .execute(conn)
            .await?
            .rows_affected();
    Ok(inserted == 1)
}

/// Handle to the dispatcher: register consumers, subscribe, or wake it after a commit.
#[derive(Clone, Default)]
pub struct Outbox {
    consumers: Arc<Mutex<Vec<Arc<dyn Consumer>>>>,
    subscribers: Arc<Mutex<Vec<mpsc::Sender<Arc<EventEnvelope>>>>>,
    wake: Arc<Notify>,
}

/// How many events one dispatch round reads.
const BATCH: i64 = 256;
/// How often the dispatcher polls when nobody wakes it (events written by other nodes).
const POLL: std::time::Duration = std::time::Duration::from_millis(500);

impl Outbox {
    /// Adds a durable consumer; it sees every event dispatched from now on.
    pub fn register(&self, consumer: Arc<dyn Consumer>) {
        self.consumers.lock().unwrap_or_else(|e| e.into_inner()).push(consumer);
    }

    /// A new subscriber receiving every event published from now on. `capacity` bounds its queue.
    pub fn subscribe(&self, capacity: usize) -> mpsc::Receiver<Arc<EventEnvelope>> {
        let (tx, rx) = mpsc::channel(capacity);
        self.subscribers.lock().unwrap_or_else(|e| e.into_inner()).push(tx);
        rx
    }

    /// Tells the dispatcher that events were committed.
    pub fn notify(&self) {
        self.wake.notify_one();
    }

    /// Publishes until `shutdown` turns true, then drains what is already committed.
    pub async fn run(self, db: Db, clock: SharedClock, mut shutdown: watch::Receiver<bool>) {
        loop {
            match self.dispatch_once(&db, &clock).await {
                Ok(n) if n as i64 == BATCH => continue,
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = format!("{e:#}"), "outbox dispatch failed; retrying");
                    tokio::time::sleep(POLL).await;
                }
            }
            if *shutdown.borrow() {
                return;
            }
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(POLL) => {}
                _ = shutdown.changed() => {}
            }
        }
    }

    /// One round: publish up to `BATCH` unpublished events in order. Returns how many.
    pub async fn dispatch_once(&self, db: &Db, clock: &SharedClock) -> anyhow::Result<usize> {
        // A plain read first, so an idle poll doesn't take SQLite's writer slot.
        if sqlx::query("SELECT id FROM outbox WHERE published_at IS NULL LIMIT 1")
            .fetch_optional(db.pool())
            .await?
            .is_none()
        {
            return Ok(0);
        }
        let mut tx = db.begin().await?;
        if db.backend() == Backend::Postgres {
            let got: bool =
                sqlx::query("SELECT pg_try_advisory_xact_lock(7254001)").fetch_one(tx.conn()).await?.try_get(0)?;
            if !got {
                return Ok(0);
            }
        }
        let rows = sqlx::query(
            "SELECT id, tenant_id, payload, created_at FROM outbox WHERE published_at IS NULL ORDER BY id LIMIT $1",
        )
        .bind(BATCH)
        .fetch_all(tx.conn())
        .await?;
        if rows.is_empty() {
            return Ok(0);
        }
        let mut events = Vec::with_capacity(rows.len());
        for row in &rows {
            let payload: String = row.try_get("payload")?;
            let event: DomainEvent = match serde_json::from_str(&payload) {
                Ok(e) => e,
                Err(e) => {
                    // Written by a newer build during a rolling upgrade: marked published with the
                    // batch, so it can't block the queue; the warning keeps it visible.
                    tracing::warn!(error = %e, payload, "skipping undecodable outbox event");
                    continue;
                }
            };
            events.push(Arc::new(EventEnvelope {
                id: row.try_get("id")?,
                tenant_id: TenantId::from_column(&row.try_get::<String, _>("tenant_id")?)?,
                occurred_at: db::parse_ts(&row.try_get::<String, _>("created_at")?)?,
                event,
            }));
        }
        let consumers: Vec<_> = self.consumers.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let now = clock.now();
        for event in &events {
            for consumer in &consumers {
                if first_delivery(tx.conn(), consumer.name(), event.id).await? {
                    consumer.handle(tx.conn(), event, now).await.map_err(|e| {
                        e.context(format!(
                            "consumer {} failed on event {} ({})",
                            consumer.name(),
                            event.id,
                            event.event.name()
                        ))
                    })?;
                }
            }
        }
        // Mark exactly the ids read: on PostgreSQL a lower id can commit after a higher one, and a
        // range update would mark it published unseen.
        let ids: Vec<i64> = rows.iter().map(|r| r.try_get("id")).collect::<Result<_, _>>()?;
        let placeholders: Vec<String> = (2..ids.len() + 2).map(|i| format!("${i}")).collect();
        let sql = format!("UPDATE outbox SET published_at = $1 WHERE id IN ({})", placeholders.join(", "));
        let mut update = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(db::ts(now));
        for id in &ids {
            update = update.bind(*id);
        }
        update.execute(tx.conn()).await?;
        tx.commit().await?;
        let subscribers: Vec<_> = self.subscribers.lock().unwrap_or_else(|e| e.into_inner()).clone();
        for event in &events {
            for sub in &subscribers {
                // A closed subscriber is dropped below; a full one makes us wait (no loss).
                let _ = sub.send(event.clone()).await;
            }
        }
        self.subscribers.lock().unwrap_or_else(|e| e.into_inner()).retain(|s| !s.is_closed());
        Ok(rows.len())
    }
}

//! The transactional outbox: every state change appends its typed [`DomainEvent`] in the same
//! transaction as the change; the dispatcher then publishes committed events, in id order, to the
//! in-process subscribers.
//!
//! Delivery is at least once (a crash between publishing and marking re-publishes), so consumers
//! dedupe by [`EventEnvelope::id`]. A subscriber is a bounded channel: a slow one slows the
//! dispatcher rather than losing events. On PostgreSQL an advisory lock lets one node at a time
//! dispatch, which keeps the order across nodes.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::{AnyConnection, Row};
use tokio::sync::{Notify, mpsc, watch};

use crate::{
    auth::Role,
    clock::SharedClock,
    db::{self, Backend, Db},
    ids::{TenantId, UserId},
};

/// Every domain event. The `type` tag is the event's name on the wire and in the outbox.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum DomainEvent {
    TenantCreated {
        tenant_id: TenantId,
        slug: String,
    },
    UserRegistered {
        user_id: UserId,
        role: Role,
    },
    UserRoleChanged {
        user_id: UserId,
        from: Role,
        to: Role,
        by: UserId,
    },
    ParentLinked {
        parent_id: UserId,
        child_id: UserId,
    },
}

impl DomainEvent {
    pub fn name(&self) -> &'static str {
        match self {
            DomainEvent::TenantCreated { .. } => "TenantCreated",
            DomainEvent::UserRegistered { .. } => "UserRegistered",
            DomainEvent::UserRoleChanged { .. } => "UserRoleChanged",
            DomainEvent::ParentLinked { .. } => "ParentLinked",
        }
    }
}

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
    sqlx::query(
        "INSERT INTO outbox (tenant_id, event_type, payload, created_at) VALUES ($1, $2, $3, $4)",
    )
    .bind(tenant.to_string())
    .bind(event.name())
    .bind(payload)
    .bind(db::ts(now))
    .execute(conn)
    .await?;
    Ok(())
}

/// Handle to the dispatcher: subscribe, or wake it after a commit.
#[derive(Clone, Default)]
pub struct Outbox {
    subscribers: Arc<Mutex<Vec<mpsc::Sender<Arc<EventEnvelope>>>>>,
    wake: Arc<Notify>,
}

/// How many events one dispatch round reads.
const BATCH: i64 = 256;
/// How often the dispatcher polls when nobody wakes it (events written by other nodes).
const POLL: std::time::Duration = std::time::Duration::from_millis(500);

impl Outbox {
    /// A new subscriber receiving every event published from now on. `capacity` bounds its queue.
    pub fn subscribe(&self, capacity: usize) -> mpsc::Receiver<Arc<EventEnvelope>> {
        let (tx, rx) = mpsc::channel(capacity);
        self.subscribers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(tx);
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
                Err(e) => tracing::warn!(error = %e, "outbox dispatch failed; retrying"),
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
    pub async fn dispatch_once(&self, db: &Db, clock: &SharedClock) -> Result<usize, sqlx::Error> {
        let mut tx = db.begin().await?;
        if db.backend() == Backend::Postgres {
            let got: bool = sqlx::query("SELECT pg_try_advisory_xact_lock(7254001)")
                .fetch_one(tx.conn())
                .await?
                .try_get(0)?;
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
                    // An event this build doesn't know (written by a newer node): leave it for that node.
                    tracing::warn!(error = %e, "skipping undecodable outbox event");
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
        let last_id: i64 = rows
            .last()
            .map(|r| r.try_get("id"))
            .transpose()?
            .unwrap_or(0);
        let first_id: i64 = rows[0].try_get("id")?;
        sqlx::query("UPDATE outbox SET published_at = $1 WHERE published_at IS NULL AND id >= $2 AND id <= $3")
            .bind(db::ts(clock.now()))
            .bind(first_id)
            .bind(last_id)
            .execute(tx.conn())
            .await?;
        tx.commit().await?;
        let subscribers: Vec<_> = self
            .subscribers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        for event in &events {
            for sub in &subscribers {
                // A closed subscriber is dropped below; a full one makes us wait (no loss).
                let _ = sub.send(event.clone()).await;
            }
        }
        self.subscribers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|s| !s.is_closed());
        Ok(rows.len())
    }
}

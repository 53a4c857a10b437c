//! Chat persistence: the socket path hands each message to a bounded queue and moves on (fan-out
//! never waits for the database); a writer task inserts them in batches. If the database falls so
//! far behind that the queue fills, messages are still delivered live and kept in the room's history
//! window, but not persisted — counted and logged.

use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};

use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::Row;
use tokio::sync::{mpsc, watch};
use utoipa::{IntoParams, ToSchema};

use crate::{
    auth::{AnyRole, Authed},
    classes::{Relation, load_meeting, relation, require_member},
    db::{self, Db},
    error::{ApiError, ApiResult, ErrorBody, Json, Path, Query},
    ids::MeetingId,
};

pub struct ChatRow {
    pub tenant_id: String,
    pub room: String,
    pub offset: u64,
    pub user_id: String,
    pub user_name: String,
    pub text: String,
    pub at: DateTime<Utc>,
}

#[derive(Clone)]
pub struct ChatWriter {
    tx: mpsc::Sender<ChatRow>,
    pub dropped: Arc<AtomicU64>,
}

const QUEUE: usize = 10_000;
const BATCH: usize = 200;

impl ChatWriter {
    pub fn new() -> (Self, mpsc::Receiver<ChatRow>) {
        let (tx, rx) = mpsc::channel(QUEUE);
        (Self { tx, dropped: Arc::new(AtomicU64::new(0)) }, rx)
    }

    /// Queues a message for persistence; never waits.
    pub fn post(&self, row: ChatRow) {
        if self.tx.try_send(row).is_err() {
            let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if n.is_power_of_two() {
                tracing::warn!(dropped = n, "chat persistence queue full; messages not persisted");
            }
        }
    }
}

/// Writes queued messages in batches until shutdown, then drains what is queued.
pub async fn run_writer(db: Db, mut rx: mpsc::Receiver<ChatRow>, mut shutdown: watch::Receiver<bool>) {
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        let n = tokio::select! {
            n = rx.recv_many(&mut batch, BATCH) => n,
            _ = shutdown.changed() => {
                rx.close();
                rx.recv_many(&mut batch, QUEUE).await
            }
        };
        if n == 0 && batch.is_empty() {
            return;
        }
        if let Err(e) = insert(&db, &batch).await {
            tracing::warn!(error = %e, rows = batch.len(), "chat batch not persisted");
        }
        batch.clear();
        if *shutdown.borrow() && rx.is_closed() && rx.is_empty() {
            return;
        }
    }
}

async fn insert(db: &Db, rows: &[ChatRow]) -> Result<(), sqlx::Error> {
    let mut tx = db.begin().await?;
    for chunk in rows.chunks(100) {
        let values: Vec<String> = (0..chunk.len())
            .map(|i| {
                let b = i * 7;
                format!("(${}, ${}, ${}, ${}, ${}, ${}, ${})", b + 1, b + 2, b + 3, b + 4, b + 5, b + 6, b + 7)
            })
            .collect();
        let sql = format!(
            "INSERT INTO chat_messages (tenant_id, room, room_offset, user_id, user_name, text, created_at) VALUES {}",
            values.join(", ")
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for r in chunk {
            q = q
                .bind(r.tenant_id.as_str())
                .bind(r.room.as_str())
                .bind(r.offset as i64)
                .bind(r.user_id.as_str())
                .bind(r.user_name.as_str())
                .bind(r.text.as_str())
                .bind(db::ts(r.at));
        }
        q.execute(tx.conn()).await?;
    }
    tx.commit().await
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ChatMessage {
    pub id: i64,
    /// The message's offset in the room's stream.
    pub offset: i64,
    pub user_id: String,
    pub user_name: String,
    pub text: String,
    pub at: DateTime<Utc>,
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ChatQuery {
    /// Messages with an id above this (paging forward).
    pub after: Option<i64>,
    /// Default 100, max 1000.
    pub limit: Option<i64>,
}

/// A meeting's persisted chat, oldest first: for those who may join the meeting (staff, the
/// instructor, enrolled students).
#[utoipa::path(get, path = "/api/v1/meetings/{id}/chat", tag = "realtime", params(("id" = MeetingId, Path), ChatQuery),
    security(("bearer" = [])), responses((status = 200, body = Vec<ChatMessage>), (status = 403, body = ErrorBody)))]
pub async fn history(
    State(db): State<Db>,
    auth: Authed<AnyRole>,
    Path(id): Path<MeetingId>,
    Query(q): Query<ChatQuery>,
) -> ApiResult<Json<Vec<ChatMessage>>> {
    let mut conn = db.pool().acquire().await?;
    let (_, class) = load_meeting(&mut conn, auth.tenant_id, id, "").await?;
    let rel = relation(&mut conn, &auth, &class).await?;
    if matches!(rel, Relation::Parent) {
        return Err(ApiError::forbidden("not_class_member", "the meeting's chat is for its participants"));
    }
    require_member(rel)?;
    let rows = sqlx::query(
        "SELECT id, room_offset, user_id, user_name, text, created_at FROM chat_messages
         WHERE tenant_id = $1 AND room = $2 AND id > $3 ORDER BY id LIMIT $4",
    )
    .bind(auth.tenant_id.to_string())
    .bind(format!("meeting:{id}"))
    .bind(q.after.unwrap_or(0))
    .bind(q.limit.unwrap_or(100).clamp(1, 1000))
    .fetch_all(&mut *conn)
    .await?;
    let out = rows
        .iter()
        .map(|r| {
            Ok(ChatMessage {
                id: r.try_get("id")?,
                offset: r.try_get("room_offset")?,
                user_id: r.try_get("user_id")?,
                user_name: r.try_get("user_name")?,
                text: r.try_get("text")?,
                at: db::parse_ts(&r.try_get::<String, _>("created_at")?)?,
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    Ok(Json(out))
}

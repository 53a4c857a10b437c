//! Consent requests: staff (or the minor) ask a linked parent to consent to some scopes; the parent
//! is mailed, then grants or denies each scope once, stating how they were verified.

use axum::{extract::State, http::StatusCode};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::{AnyConnection, Row, any::AnyRow};
use utoipa::{IntoParams, ToSchema};

use super::{
    Answer, ConsentScope, ConsentState, ConsentStatus, Ctx, VerificationMethod, normalize, scope_names, state_of,
    upsert,
};
use crate::{
    audit,
    auth::{AnyRole, Authed, Role},
    db::text_enum,
    db::{self, Db},
    error::{ApiError, ApiResult, ErrorBody, Json, Path, Query},
    events::DomainEvent,
    identity::users::{self, User},
    ids::{ConsentRequestId, TenantId, UserId},
    mailer::notices,
    outbox::{self},
    request::ClientInfo,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RequestStatus {
    Pending,
    Answered,
}

text_enum!(RequestStatus { Pending = "pending", Answered = "answered" });

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ConsentRequest {
    pub id: ConsentRequestId,
    pub child_id: UserId,
    /// The parent the request is addressed to; only they may answer it.
    pub parent_id: UserId,
    pub scopes: Vec<ConsentScope>,
    pub status: RequestStatus,
    pub requested_by: UserId,
    pub created_at: DateTime<Utc>,
    pub answered_at: Option<DateTime<Utc>>,
}

const COLUMNS: &str = "id, child_id, parent_id, scopes, status, requested_by, created_at, answered_at";

fn from_row(r: &AnyRow) -> Result<ConsentRequest, sqlx::Error> {
    Ok(ConsentRequest {
        id: ConsentRequestId::from_column(&r.try_get::<String, _>("id")?)?,
        child_id: UserId::from_column(&r.try_get::<String, _>("child_id")?)?,
        parent_id: UserId::from_column(&r.try_get::<String, _>("parent_id")?)?,
        scopes: r
            .try_get::<String, _>("scopes")?
            .split(',')
            .map(ConsentScope::from_column)
            .collect::<Result<_, _>>()?,
        status: RequestStatus::from_column(&r.try_get::<String, _>("status")?)?,
        requested_by: UserId::from_column(&r.try_get::<String, _>("requested_by")?)?,
        created_at: db::parse_ts(&r.try_get::<String, _>("created_at")?)?,
        answered_at: r.try_get::<Option<String>, _>("answered_at")?.map(|t| db::parse_ts(&t)).transpose()?,
    })
}

async fn find(
    conn: &mut AnyConnection,
    tenant: TenantId,
    id: ConsentRequestId,
) -> Result<Option<ConsentRequest>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM consent_requests WHERE tenant_id = $1 AND id = $2");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(tenant.to_string())
        .bind(id.to_string())
        .fetch_optional(conn)
        .await?;
    row.as_ref().map(from_row).transpose()
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRequest {
    /// A student under the tenant's consent age.
    pub child_id: UserId,
    pub scopes: Vec<ConsentScope>,
    /// A parent linked to the child; defaults to the child's only linked parent.
    pub parent_id: Option<UserId>,
}

/// The parent a request goes to: the named one if linked, else the child's only linked parent.
async fn addressee(
    conn: &mut AnyConnection,
    child: &User,
    parent_id: Option<UserId>,
    now: DateTime<Utc>,
) -> ApiResult<User> {
    let id = match parent_id {
        Some(id) => id,
        None => {
            let rows = sqlx::query("SELECT parent_id FROM parent_links WHERE tenant_id = $1 AND child_id = $2")
                .bind(child.tenant_id.to_string())
                .bind(child.id.to_string())
                .fetch_all(&mut *conn)
                .await?;
            match rows.as_slice() {
                [one] => UserId::from_column(&one.try_get::<String, _>("parent_id")?)?,
                [] => return Err(ApiError::unprocessable("parent_required", "the child has no linked parent")),
                many => {
                    return Err(ApiError::unprocessable(
                        "parent_required",
                        format!("the child has {} linked parents; name one in parent_id", many.len()),
                    ));
                }
            }
        }
    };
    let parent = users::get_or_404(conn, child.tenant_id, id, now).await?;
    if parent.role != Role::Parent {
        return Err(ApiError::unprocessable("not_a_parent", "parent_id must name a user with the parent role"));
    }
    if !users::is_parent_of(conn, child.tenant_id, parent.id, child.id).await? {
        return Err(ApiError::unprocessable("parent_not_linked", "this parent is not linked to the child"));
    }
    Ok(parent)
}

/// Asks a linked parent to consent to `scopes` for a minor (staff, or the minor themself). The
/// parent is mailed in the same transaction, with a link to their consent page (`{public_url}/#/consent/{id}`).
#[utoipa::path(post, path = "/api/v1/consent-requests", tag = "consent", request_body = CreateRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "replays the first response for a repeated key")),
    security(("bearer" = [])),
    responses((status = 201, body = ConsentRequest), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody, description = "`scopes_required`, `not_a_student`, `not_a_minor`, `parent_required`, `not_a_parent`, `parent_not_linked`")))]
pub async fn create(
    State(Ctx { db, clock, outbox, mail: post, .. }): State<Ctx>,
    auth: Authed<AnyRole>,
    client: ClientInfo,
    Json(body): Json<CreateRequest>,
) -> ApiResult<(StatusCode, Json<ConsentRequest>)> {
    let scopes = normalize(&body.scopes);
    if scopes.is_empty() {
        return Err(ApiError::unprocessable("scopes_required", "name at least one scope"));
    }
    let now = clock.now();
    let mut tx = db.begin().await?;
    let child = users::get_or_404(tx.conn(), auth.tenant_id, body.child_id, now).await?;
    if !auth.is_staff() && auth.user_id != child.id {
        return Err(ApiError::forbidden("forbidden", "only staff or the child may request consent"));
    }
    if child.role != Role::Student {
        return Err(ApiError::unprocessable("not_a_student", "consent is requested for students"));
    }
    if !child.minor {
        return Err(ApiError::unprocessable("not_a_minor", "the student is not under the tenant's consent age"));
    }
    let parent = addressee(tx.conn(), &child, body.parent_id, now).await?;
    let request = ConsentRequest {
        id: ConsentRequestId::new(),
        child_id: child.id,
        parent_id: parent.id,
        scopes,
        status: RequestStatus::Pending,
        requested_by: auth.user_id,
        created_at: now,
        answered_at: None,
    };
    sqlx::query(
        "INSERT INTO consent_requests (id, tenant_id, child_id, parent_id, scopes, status, requested_by, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(request.id.to_string())
    .bind(auth.tenant_id.to_string())
    .bind(child.id.to_string())
    .bind(parent.id.to_string())
    .bind(request.scopes.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(","))
    .bind(request.status.as_str())
    .bind(auth.user_id.to_string())
    .bind(db::ts(now))
    .execute(tx.conn())
    .await?;
    let to = notices::Recipient::load(tx.conn(), auth.tenant_id, parent.id, now).await?;
    let mail = notices::consent_request(&post.site, request.id, &request.scopes, &child, &to);
    post.mailer.queue(tx.conn(), now, &mail).await?;
    let event = DomainEvent::ConsentRequested {
        request_id: request.id,
        child_id: child.id,
        parent_id: parent.id,
        scopes: request.scopes.clone(),
    };
    outbox::append(tx.conn(), auth.tenant_id, now, &event).await?;
    audit::record(
        tx.conn(),
        now,
        audit::Entry::new(auth.tenant_id, Some(auth.user_id), "consent.requested", &client)
            .target("consent_request", request.id)
            .details(serde_json::json!({ "child_id": child.id, "parent_id": parent.id, "scopes": request.scopes })),
    )
    .await?;
    tx.commit().await?;
    outbox.notify();
    Ok((StatusCode::CREATED, Json(request)))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    pub child_id: Option<UserId>,
    pub status: Option<RequestStatus>,
    /// Requests older than this one (paging back).
    pub before: Option<ConsentRequestId>,
    /// Default 50, max 500.
    pub limit: Option<i64>,
}

#[derive(Serialize, ToSchema)]
pub struct RequestPage {
    pub requests: Vec<ConsentRequest>,
    /// Pass as `before` for the next (older) page; absent on the last page.
    pub next_before: Option<ConsentRequestId>,
}

/// Consent requests, newest first: staff see the tenant's, parents those addressed to them.
#[utoipa::path(get, path = "/api/v1/consent-requests", tag = "consent", params(ListQuery), security(("bearer" = [])),
    responses((status = 200, body = RequestPage), (status = 403, body = ErrorBody)))]
pub async fn list(
    State(db): State<Db>,
    auth: Authed<AnyRole>,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<RequestPage>> {
    let parent = match auth.role {
        r if r.is_staff() => None,
        Role::Parent => Some(auth.user_id),
        _ => return Err(ApiError::forbidden("forbidden", "only staff and parents may list consent requests")),
    };
    let limit = q.limit.unwrap_or(50).clamp(1, 500);
    let sql = format!(
        "SELECT {COLUMNS} FROM consent_requests
         WHERE tenant_id = $1 AND ($2 IS NULL OR parent_id = $2) AND ($3 IS NULL OR child_id = $3)
           AND ($4 IS NULL OR status = $4) AND ($5 IS NULL OR id < $5)
         ORDER BY id DESC LIMIT $6"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(auth.tenant_id.to_string())
        .bind(parent.map(|p| p.to_string()))
        .bind(q.child_id.map(|c| c.to_string()))
        .bind(q.status.map(|s| s.as_str()))
        .bind(q.before.map(|b| b.to_string()))
        .bind(limit)
        .fetch_all(db.pool())
        .await?;
    let requests = rows.iter().map(from_row).collect::<Result<Vec<_>, _>>()?;
    let next_before = (requests.len() as i64 == limit).then(|| requests.last().map(|r| r.id)).flatten();
    Ok(Json(RequestPage { requests, next_before }))
}

/// One consent request: for staff, the parent it is addressed to, and the child it is about (404 for anyone
/// else, so a request's existence isn't revealed). The page a consent mail links to reads it.
#[utoipa::path(get, path = "/api/v1/consent-requests/{id}", tag = "consent", params(("id" = ConsentRequestId, Path)),
    security(("bearer" = [])), responses((status = 200, body = ConsentRequest), (status = 404, body = ErrorBody)))]
pub async fn get(
    State(db): State<Db>,
    auth: Authed<AnyRole>,
    Path(id): Path<ConsentRequestId>,
) -> ApiResult<Json<ConsentRequest>> {
    let mut conn = db.pool().acquire().await?;
    let request = find(&mut conn, auth.tenant_id, id)
        .await?
        .filter(|r| auth.is_staff() || r.parent_id == auth.user_id || r.child_id == auth.user_id)
        .ok_or_else(|| ApiError::not_found("consent_request_not_found", "no such consent request"))?;
    Ok(Json(request))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Decision {
    /// Scopes consented to.
    #[serde(default)]
    pub grant: Vec<ConsentScope>,
    /// Scopes refused. Requested scopes in neither list stay undecided.
    #[serde(default)]
    pub deny: Vec<ConsentScope>,
    /// How the parent was verified; required when granting.
    pub method: Option<VerificationMethod>,
}

/// A decision checked against nothing but itself.
struct ParsedDecision {
    grant: Vec<ConsentScope>,
    deny: Vec<ConsentScope>,
    method: Option<VerificationMethod>,
}

impl Decision {
    fn parse(self) -> ApiResult<ParsedDecision> {
        let (grant, deny) = (normalize(&self.grant), normalize(&self.deny));
        if grant.is_empty() && deny.is_empty() {
            return Err(ApiError::unprocessable("scopes_required", "grant or deny at least one scope"));
        }
        if let Some(s) = grant.iter().find(|s| deny.contains(s)) {
            return Err(ApiError::unprocessable(
                "conflicting_scopes",
                format!("{} is both granted and denied", s.as_str()),
            ));
        }
        if !grant.is_empty() && self.method.is_none() {
            return Err(ApiError::unprocessable(
                "method_required",
                "granting consent needs the verification method (signed_form, credit_card, video_call, government_id, knowledge_based or email_plus)",
            ));
        }
        Ok(ParsedDecision { grant, deny, method: self.method })
    }
}

#[derive(Serialize, ToSchema)]
pub struct DecisionOutcome {
    pub request: ConsentRequest,
    /// The child's consents after the decision.
    pub consents: ConsentState,
}

/// The addressed parent grants and/or denies the request's scopes, once.
#[utoipa::path(post, path = "/api/v1/consent-requests/{id}/decision", tag = "consent", request_body = Decision,
    params(("id" = ConsentRequestId, Path),
        ("Idempotency-Key" = Option<String>, Header, description = "replays the first response for a repeated key")),
    security(("bearer" = [])),
    responses((status = 200, body = DecisionOutcome), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "`already_answered`"),
        (status = 422, body = ErrorBody, description = "`scopes_required`, `conflicting_scopes`, `method_required`, `scope_not_requested`")))]
pub async fn decide(
    State(Ctx { db, clock, outbox, .. }): State<Ctx>,
    auth: Authed<AnyRole>,
    client: ClientInfo,
    Path(id): Path<ConsentRequestId>,
    Json(body): Json<Decision>,
) -> ApiResult<Json<DecisionOutcome>> {
    let decision = body.parse()?;
    let now = clock.now();
    let mut tx = db.begin().await?;
    let request = find(tx.conn(), auth.tenant_id, id)
        .await?
        .ok_or_else(|| ApiError::not_found("consent_request_not_found", "no such consent request"))?;
    if auth.user_id != request.parent_id {
        return Err(ApiError::forbidden(
            "not_addressed_parent",
            "only the parent this request is addressed to may answer it",
        ));
    }
    if request.status == RequestStatus::Answered {
        return Err(ApiError::conflict("already_answered", "this consent request has already been answered"));
    }
    if let Some(s) = decision.grant.iter().chain(&decision.deny).find(|s| !request.scopes.contains(s)) {
        return Err(ApiError::unprocessable(
            "scope_not_requested",
            format!("{} is not among the requested scopes ({})", s.as_str(), scope_names(&request.scopes)),
        ));
    }
    if !users::is_parent_of(tx.conn(), auth.tenant_id, request.parent_id, request.child_id).await? {
        return Err(ApiError::forbidden("parent_not_linked", "you are no longer linked to this child"));
    }
    // The status check above can race with a concurrent decision; this update cannot.
    let answered = sqlx::query(
        "UPDATE consent_requests SET status = 'answered', answered_at = $1
         WHERE tenant_id = $2 AND id = $3 AND status = 'pending'",
    )
    .bind(db::ts(now))
    .bind(auth.tenant_id.to_string())
    .bind(id.to_string())
    .execute(tx.conn())
    .await?
    .rows_affected();
    if answered != 1 {
        return Err(ApiError::conflict("already_answered", "this consent request has already been answered"));
    }
    let (child_id, parent_id) = (request.child_id, request.parent_id);
    let decided = [(ConsentStatus::Granted, &decision.grant), (ConsentStatus::Denied, &decision.deny)];
    for (status, scopes) in decided {
        if scopes.is_empty() {
            continue;
        }
        for scope in scopes {
            let answer = Answer {
                child: child_id,
                parent: parent_id,
                scope: *scope,
                status,
                method: decision.method,
                request: id,
            };
            upsert(tx.conn(), auth.tenant_id, answer, now).await?;
        }
        let (event, action) = match status {
            ConsentStatus::Granted => (
                DomainEvent::ConsentGranted {
                    child_id,
                    parent_id,
                    scopes: scopes.clone(),
                    method: decision.method.map(|m| m.as_str()).unwrap_or_default().to_string(),
                },
                "consent.granted",
            ),
            _ => (DomainEvent::ConsentDenied { child_id, parent_id, scopes: scopes.clone() }, "consent.denied"),
        };
        outbox::append(tx.conn(), auth.tenant_id, now, &event).await?;
        audit::record(
            tx.conn(),
            now,
            audit::Entry::new(auth.tenant_id, Some(auth.user_id), action, &client).target("user", child_id).details(
                serde_json::json!({
                    "request_id": id, "parent_id": parent_id, "scopes": scopes, "method": decision.method,
                }),
            ),
        )
        .await?;
    }
    let request = find(tx.conn(), auth.tenant_id, id).await?.ok_or_else(ApiError::internal)?;
    let child = users::get_or_404(tx.conn(), auth.tenant_id, child_id, now).await?;
    let consents = state_of(tx.conn(), &child).await?;
    tx.commit().await?;
    outbox.notify();
    Ok(Json(DecisionOutcome { request, consents }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decision(grant: &[ConsentScope], deny: &[ConsentScope], method: Option<VerificationMethod>) -> Decision {
        Decision { grant: grant.to_vec(), deny: deny.to_vec(), method }
    }

    #[test]
    fn decisions_are_checked_before_touching_storage() {
        use ConsentScope::*;
        let code = |d: Decision| d.parse().err().map(|e| e.code.into_owned());
        assert_eq!(code(decision(&[], &[], None)).as_deref(), Some("scopes_required"));
        assert_eq!(code(decision(&[Chat], &[], None)).as_deref(), Some("method_required"));
        let both = decision(&[Chat], &[Chat], Some(VerificationMethod::VideoCall));
        assert_eq!(code(both).as_deref(), Some("conflicting_scopes"));
        assert_eq!(code(decision(&[], &[Recording], None)), None, "denying needs no method");
        let ok =
            decision(&[Chat, LiveVideo, Chat], &[Recording], Some(VerificationMethod::SignedForm)).parse().unwrap();
        assert_eq!(ok.grant, [LiveVideo, Chat]);
    }
}

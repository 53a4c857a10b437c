//! Parental consent (COPPA): minors need a linked parent's granted consent, per scope, before
//! enrolling, booking or joining live video.
//!
//! Layout: this module holds the scopes and verification methods, the current consent of each
//! parent per child and scope (`consents`), the pure rules that turn those rows into a per-scope
//! state, [`ensure`] (what other modules call before letting a minor in), and the revoke and state
//! endpoints; [`requests`] holds consent requests and the parent's decision on them.
//!
//! Seams: mail to parents goes through [`crate::mailer::Mailer`] in the same transaction as the
//! request; every change emits a `Consent*` [`DomainEvent`] through the outbox (a revocation is what
//! the real-time layer will use to remove the child from live rooms) and an audit entry.
//!
//! Only parents still linked to the child count: unlinking a parent withdraws the effect of their
//! grants without rewriting history. A revocation by any linked parent (or an admin) revokes every
//! parent's grant of those scopes, so it takes effect even when another parent had also granted.

pub mod requests;

use std::collections::BTreeMap;

use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::{AnyConnection, Row};
use utoipa::ToSchema;

use crate::{
    audit,
    auth::{AnyRole, Authed, Role},
    db::text_enum,
    db::{self},
    error::{ApiError, ApiResult, ErrorBody, Json, Path},
    events::DomainEvent,
    identity::users::{self, User},
    ids::{ConsentRequestId, TenantId, UserId},
    outbox::{self},
    request::ClientInfo,
};

/// The handles the consent handlers use, extracted as one `State<Ctx>` (built from the app state in `app`).
#[derive(Clone)]
pub struct Ctx {
    pub db: crate::db::Db,
    pub clock: crate::clock::SharedClock,
    pub outbox: crate::outbox::Outbox,
    pub mail: crate::mailer::Outgoing,
}

pub use crate::events::ConsentScope;

/// Sorted, without duplicates.
pub fn normalize(scopes: &[ConsentScope]) -> Vec<ConsentScope> {
    let mut v = scopes.to_vec();
    v.sort();
    v.dedup();
    v
}

fn scope_names(scopes: &[ConsentScope]) -> String {
    scopes.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
}

/// How the parent was verified, after the methods the FTC's COPPA rule (16 CFR 312.5(b)) accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum VerificationMethod {
    /// A signed consent form returned by post, fax or scan.
    SignedForm,
    /// A credit or debit card (or other online payment) transaction notifying the account holder.
    CreditCard,
    /// A video conference with trained staff.
    VideoCall,
    /// A government-issued identity document checked against a database (and then deleted).
    GovernmentId,
    /// Knowledge-based authentication questions hard enough that a child couldn't answer them.
    KnowledgeBased,
    /// E-mail plus a confirming step (follow-up mail, letter or call). The rule accepts it only when
    /// the child's data is not disclosed to third parties.
    EmailPlus,
}

text_enum!(VerificationMethod {
    SignedForm = "signed_form",
    CreditCard = "credit_card",
    VideoCall = "video_call",
    GovernmentId = "government_id",
    KnowledgeBased = "knowledge_based",
    EmailPlus = "email_plus",
});

/// One parent's current answer for one scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ConsentStatus {
    Granted,
    Denied,
    Revoked,
}

text_enum!(ConsentStatus { Granted = "granted", Denied = "denied", Revoked = "revoked" });

/// The effective state of one scope for a child.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ScopeState {
    Granted,
    Denied,
    Revoked,
    /// No linked parent has answered for this scope.
    None,
}

/// A row of `consents`: one parent's answer for one scope of one child.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ConsentRecord {
    pub scope: ConsentScope,
    pub parent_id: UserId,
    /// Whether that parent is still linked to the child; only linked parents' answers count.
    pub parent_linked: bool,
    pub status: ConsentStatus,
    pub method: Option<VerificationMethod>,
    /// The request this answered; kept on revocation.
    pub request_id: Option<ConsentRequestId>,
    /// Who made the last change: the parent, or on revocation the revoking parent or admin.
    pub decided_by: UserId,
    pub decided_at: DateTime<Utc>,
}

/// The effective state of one scope, with the record it comes from.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ScopeConsent {
    pub scope: ConsentScope,
    pub state: ScopeState,
    /// The parent whose answer this is (absent for `none`).
    pub parent_id: Option<UserId>,
    pub method: Option<VerificationMethod>,
    pub decided_by: Option<UserId>,
    pub decided_at: Option<DateTime<Utc>>,
}

/// A child's consents: the effective state per scope, and every parent's record behind it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ConsentState {
    pub child_id: UserId,
    /// Whether the child is currently under the tenant's consent age (only then is consent needed).
    pub minor: bool,
    /// One entry per scope, in a fixed order.
    pub scopes: Vec<ScopeConsent>,
    pub records: Vec<ConsentRecord>,
}

/// The effective state of `scope`: granted when a linked parent granted it; otherwise the latest
/// answer of a linked parent (denied or revoked); otherwise none.
pub fn effective(records: &[ConsentRecord], scope: ConsentScope) -> ScopeConsent {
    let linked = || records.iter().filter(|r| r.scope == scope && r.parent_linked);
    let chosen = linked()
        .filter(|r| r.status == ConsentStatus::Granted)
        .max_by_key(|r| r.decided_at)
        .or_else(|| linked().max_by_key(|r| r.decided_at));
    match chosen {
        Some(r) => ScopeConsent {
            scope,
            state: match r.status {
                ConsentStatus::Granted => ScopeState::Granted,
                ConsentStatus::Denied => ScopeState::Denied,
                ConsentStatus::Revoked => ScopeState::Revoked,
            },
            parent_id: Some(r.parent_id),
            method: r.method,
            decided_by: Some(r.decided_by),
            decided_at: Some(r.decided_at),
        },
        None => ScopeConsent {
            scope,
            state: ScopeState::None,
            parent_id: None,
            method: None,
            decided_by: None,
            decided_at: None,
        },
    }
}

/// The scopes of `needed` that are not effectively granted.
pub fn missing(records: &[ConsentRecord], needed: &[ConsentScope]) -> Vec<ConsentScope> {
    normalize(needed).into_iter().filter(|s| effective(records, *s).state != ScopeState::Granted).collect()
}

/// Every consent record of `child`, with whether its parent is still linked.
pub async fn records(
    conn: &mut AnyConnection,
    tenant: TenantId,
    child: UserId,
) -> Result<Vec<ConsentRecord>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT c.scope, c.parent_id, c.status, c.method, c.request_id, c.decided_by, c.decided_at,
                CAST(CASE WHEN l.parent_id IS NULL THEN 0 ELSE 1 END AS BIGINT) AS linked
         FROM consents c
         LEFT JOIN parent_links l ON l.tenant_id = c.tenant_id AND l.parent_id = c.parent_id AND l.child_id = c.child_id
         WHERE c.tenant_id = $1 AND c.child_id = $2
         ORDER BY c.scope, c.parent_id",
    )
    .bind(tenant.to_string())
    .bind(child.to_string())
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(ConsentRecord {
                scope: ConsentScope::from_column(&r.try_get::<String, _>("scope")?)?,
                parent_id: UserId::from_column(&r.try_get::<String, _>("parent_id")?)?,
                parent_linked: r.try_get::<i64, _>("linked")? == 1,
                status: ConsentStatus::from_column(&r.try_get::<String, _>("status")?)?,
                method: r
                    .try_get::<Option<String>, _>("method")?
                    .map(|m| VerificationMethod::from_column(&m))
                    .transpose()?,
                request_id: r
                    .try_get::<Option<String>, _>("request_id")?
                    .map(|id| ConsentRequestId::from_column(&id))
                    .transpose()?,
                decided_by: UserId::from_column(&r.try_get::<String, _>("decided_by")?)?,
                decided_at: db::parse_ts(&r.try_get::<String, _>("decided_at")?)?,
            })
        })
        .collect()
}

/// The consent state of `child` as the API shows it.
pub async fn state_of(conn: &mut AnyConnection, child: &User) -> Result<ConsentState, sqlx::Error> {
    let records = records(conn, child.tenant_id, child.id).await?;
    Ok(ConsentState {
        child_id: child.id,
        minor: child.minor,
        scopes: ConsentScope::ALL.iter().map(|s| effective(&records, *s)).collect(),
        records,
    })
}

/// Why a minor may not act: the scopes no linked parent has granted, or storage failed. An HTTP answer only at
/// the edge (403 `consent_required`).
#[derive(Debug, thiserror::Error)]
pub enum ConsentError {
    #[error("a linked parent's consent is required for: {}", scope_names(missing))]
    Required { missing: Vec<ConsentScope> },
    #[error("database: {0}")]
    Storage(#[from] sqlx::Error),
}

impl From<ConsentError> for ApiError {
    fn from(e: ConsentError) -> Self {
        match e {
            ConsentError::Required { .. } => ApiError::forbidden("consent_required", e.to_string()),
            ConsentError::Storage(e) => e.into(),
        }
    }
}

/// Ok when `student` may act under every scope in `scopes`: adults always; minors only with a linked
/// parent's granted, unrevoked consent for each scope. Otherwise [`ConsentError::Required`] naming the
/// missing scopes.
pub async fn ensure(conn: &mut AnyConnection, student: &User, scopes: &[ConsentScope]) -> Result<(), ConsentError> {
    if !student.minor || scopes.is_empty() {
        return Ok(());
    }
    let records = records(conn, student.tenant_id, student.id).await?;
    let missing = missing(&records, scopes);
    if missing.is_empty() {
        return Ok(());
    }
    Err(ConsentError::Required { missing })
}

/// One parent's answer for one scope of one child, as a decided request records it.
pub(crate) struct Answer {
    pub child: UserId,
    pub parent: UserId,
    pub scope: ConsentScope,
    pub status: ConsentStatus,
    pub method: Option<VerificationMethod>,
    pub request: ConsentRequestId,
}

/// Records `parent`'s answer for `scope` of `child`, replacing their previous one.
pub(crate) async fn upsert(
    conn: &mut AnyConnection,
    tenant: TenantId,
    answer: Answer,
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    let Answer { child, parent, scope, status, method, request } = answer;
    sqlx::query(
        "INSERT INTO consents (tenant_id, child_id, parent_id, scope, status, method, request_id, decided_by, decided_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
         ON CONFLICT (child_id, parent_id, scope) DO UPDATE SET status = excluded.status, method = excluded.method,
             request_id = excluded.request_id, decided_by = excluded.decided_by, decided_at = excluded.decided_at",
    )
    .bind(tenant.to_string())
    .bind(child.to_string())
    .bind(parent.to_string())
    .bind(scope.as_str())
    .bind(status.as_str())
    .bind(method.map(|m| m.as_str()))
    .bind(request.to_string())
    .bind(parent.to_string())
    .bind(db::ts(now))
    .execute(conn)
    .await?;
    Ok(())
}

/// A child's consent per scope (granted, denied, revoked or none; by which parent, how verified,
/// when), with every parent's record — for staff, the child and linked parents.
#[utoipa::path(get, path = "/api/v1/users/{id}/consents", tag = "consent",
    params(("id" = UserId, Path, description = "the child")), security(("bearer" = [])),
    responses((status = 200, body = ConsentState), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn state(
    State(Ctx { db, clock, .. }): State<Ctx>,
    auth: Authed<AnyRole>,
    Path(id): Path<UserId>,
) -> ApiResult<Json<ConsentState>> {
    let mut conn = db.pool().acquire().await?;
    let child = users::load_viewable(&mut conn, &auth, id, clock.now(), "this user's consents").await?;
    Ok(Json(state_of(&mut conn, &child).await?))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Revoke {
    pub scopes: Vec<ConsentScope>,
}

/// Revokes consent for `scopes` (a linked parent, or an admin), effective at once: every parent's
/// grant of those scopes for this child becomes `revoked`, with one `ConsentRevoked` event and one
/// `consent.revoked` audit entry per parent whose grant ended. Scopes not granted are left as they
/// are (revoking them again changes nothing). Returns the new state.
#[utoipa::path(post, path = "/api/v1/users/{id}/consents/revoke", tag = "consent", request_body = Revoke,
    params(("id" = UserId, Path, description = "the child"),
        ("Idempotency-Key" = Option<String>, Header, description = "replays the first response for a repeated key")),
    security(("bearer" = [])),
    responses((status = 200, body = ConsentState), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn revoke(
    State(Ctx { db, clock, outbox, .. }): State<Ctx>,
    auth: Authed<AnyRole>,
    client: ClientInfo,
    Path(id): Path<UserId>,
    Json(body): Json<Revoke>,
) -> ApiResult<Json<ConsentState>> {
    let scopes = normalize(&body.scopes);
    if scopes.is_empty() {
        return Err(ApiError::unprocessable("scopes_required", "name at least one scope"));
    }
    let now = clock.now();
    let mut tx = db.begin().await?;
    let child = users::get_or_404(tx.conn(), auth.tenant_id, id, now).await?;
    let allowed = match auth.role {
        Role::Admin => true,
        Role::Parent => users::is_parent_of(tx.conn(), auth.tenant_id, auth.user_id, child.id).await?,
        _ => false,
    };
    if !allowed {
        return Err(ApiError::forbidden("forbidden", "only a linked parent or an admin may revoke consent"));
    }
    let granted: Vec<(UserId, ConsentScope)> = records(tx.conn(), auth.tenant_id, child.id)
        .await?
        .into_iter()
        .filter(|r| r.status == ConsentStatus::Granted && scopes.contains(&r.scope))
        .map(|r| (r.parent_id, r.scope))
        .collect();
    let mut revoked: BTreeMap<UserId, Vec<ConsentScope>> = BTreeMap::new();
    for (parent, scope) in granted {
        let n = sqlx::query(
            "UPDATE consents SET status = 'revoked', decided_by = $1, decided_at = $2
             WHERE tenant_id = $3 AND child_id = $4 AND parent_id = $5 AND scope = $6 AND status = 'granted'",
        )
        .bind(auth.user_id.to_string())
        .bind(db::ts(now))
        .bind(auth.tenant_id.to_string())
        .bind(child.id.to_string())
        .bind(parent.to_string())
        .bind(scope.as_str())
        .execute(tx.conn())
        .await?
        .rows_affected();
        if n == 1 {
            revoked.entry(parent).or_default().push(scope);
        }
    }
    for (parent, scopes) in &revoked {
        let event = DomainEvent::ConsentRevoked { child_id: child.id, parent_id: *parent, scopes: scopes.clone() };
        outbox::append(tx.conn(), auth.tenant_id, now, &event).await?;
        audit::record(
            tx.conn(),
            now,
            audit::Entry::new(auth.tenant_id, Some(auth.user_id), "consent.revoked", &client)
                .target("user", child.id)
                .details(serde_json::json!({ "parent_id": parent, "scopes": scopes })),
        )
        .await?;
    }
    let state = state_of(tx.conn(), &child).await?;
    tx.commit().await?;
    if !revoked.is_empty() {
        outbox.notify();
    }
    Ok(Json(state))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(scope: ConsentScope, parent: UserId, linked: bool, status: ConsentStatus, minute: i64) -> ConsentRecord {
        let t0 = DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z").unwrap().with_timezone(&Utc);
        ConsentRecord {
            scope,
            parent_id: parent,
            parent_linked: linked,
            status,
            method: (status == ConsentStatus::Granted).then_some(VerificationMethod::SignedForm),
            request_id: None,
            decided_by: parent,
            decided_at: t0 + chrono::Duration::minutes(minute),
        }
    }

    #[test]
    fn a_linked_grant_wins_over_a_later_denial_by_another_parent() {
        let (mum, dad) = (UserId::new(), UserId::new());
        let records = [
            rec(ConsentScope::Chat, mum, true, ConsentStatus::Granted, 1),
            rec(ConsentScope::Chat, dad, true, ConsentStatus::Denied, 2),
        ];
        let e = effective(&records, ConsentScope::Chat);
        assert_eq!((e.state, e.parent_id), (ScopeState::Granted, Some(mum)));
        assert_eq!(effective(&records, ConsentScope::Recording).state, ScopeState::None);
        assert_eq!(missing(&records, &[ConsentScope::Recording, ConsentScope::Chat]), [ConsentScope::Recording]);
    }

    #[test]
    fn unlinked_parents_do_not_count() {
        let (mum, dad) = (UserId::new(), UserId::new());
        let records = [
            rec(ConsentScope::LiveVideo, mum, false, ConsentStatus::Granted, 5),
            rec(ConsentScope::LiveVideo, dad, true, ConsentStatus::Revoked, 1),
        ];
        let e = effective(&records, ConsentScope::LiveVideo);
        assert_eq!((e.state, e.parent_id), (ScopeState::Revoked, Some(dad)));
        assert_eq!(missing(&records, &[ConsentScope::LiveVideo, ConsentScope::LiveVideo]), [ConsentScope::LiveVideo]);
        let only_unlinked = [rec(ConsentScope::Chat, mum, false, ConsentStatus::Granted, 1)];
        assert_eq!(effective(&only_unlinked, ConsentScope::Chat).state, ScopeState::None);
    }

    #[test]
    fn the_latest_refusal_is_shown_when_nothing_is_granted() {
        let (mum, dad) = (UserId::new(), UserId::new());
        let records = [
            rec(ConsentScope::Chat, mum, true, ConsentStatus::Revoked, 1),
            rec(ConsentScope::Chat, dad, true, ConsentStatus::Denied, 3),
        ];
        let e = effective(&records, ConsentScope::Chat);
        assert_eq!((e.state, e.parent_id), (ScopeState::Denied, Some(dad)));
        assert!(missing(&records, &[]).is_empty());
    }
}

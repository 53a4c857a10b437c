//! Users: registration by staff, profiles, role changes (audited), parent ↔ child links.

use axum::{extract::State, http::StatusCode};
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use sqlx::{AnyConnection, Row, any::AnyRow};
use utoipa::{IntoParams, ToSchema};

use super::{Ctx, Email, Password, age_on, display_name};
use super::{IdentityError, IdentityResult};
use crate::{
    audit,
    auth::{AnyRole, Authed, Role, Staff, password},
    db::{self},
    error::{ApiError, ApiResult, ErrorBody, Json, Path, Query},
    events::DomainEvent,
    ids::{TenantId, UserId},
    outbox::{self},
    request::ClientInfo,
};

/// A user as the API shows it (never the password hash).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct User {
    pub id: UserId,
    pub tenant_id: TenantId,
    pub email: String,
    pub display_name: String,
    pub role: Role,
    /// `YYYY-MM-DD`; students only.
    pub birth_date: Option<NaiveDate>,
    /// Under the tenant's consent age (students with a birth date only).
    pub minor: bool,
    /// The user's IANA time zone (`Europe/Berlin`), set with `PATCH /api/v1/me`: times in their mail and
    /// calendar feed are in it. Unset: a tutor's availability zone, else UTC.
    pub timezone: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// Columns `user_from_row` reads; `consent_age` comes from the joined tenant.
pub const USER_COLUMNS: &str =
    "u.id, u.tenant_id, u.email, u.display_name, u.role, u.birth_date, u.timezone, u.created_at, t.consent_age";

pub fn user_from_row(r: &AnyRow, today: NaiveDate) -> Result<User, sqlx::Error> {
    let birth_date = r.try_get::<Option<String>, _>("birth_date")?.map(|s| db::parse_date(&s)).transpose()?;
    let consent_age: i64 = r.try_get("consent_age")?;
    let role = Role::from_column(&r.try_get::<String, _>("role")?)?;
    Ok(User {
        id: UserId::from_column(&r.try_get::<String, _>("id")?)?,
        tenant_id: TenantId::from_column(&r.try_get::<String, _>("tenant_id")?)?,
        email: r.try_get("email")?,
        display_name: r.try_get("display_name")?,
        role,
        minor: role == Role::Student && birth_date.is_some_and(|b| (age_on(b, today) as i64) < consent_age),
        birth_date,
        timezone: r.try_get("timezone")?,
        created_at: db::parse_ts(&r.try_get::<String, _>("created_at")?)?,
    })
}

/// Loads a user of `tenant`; `None` when there is no such user in that tenant.
pub async fn find(
    conn: &mut AnyConnection,
    tenant: TenantId,
    id: UserId,
    now: DateTime<Utc>,
) -> Result<Option<User>, sqlx::Error> {
    let sql = format!(
        "SELECT {USER_COLUMNS} FROM users u JOIN tenants t ON t.id = u.tenant_id WHERE u.tenant_id = $1 AND u.id = $2"
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(tenant.to_string())
        .bind(id.to_string())
        .fetch_optional(conn)
        .await?;
    row.map(|r| user_from_row(&r, now.date_naive())).transpose()
}

pub async fn get_or_404(
    conn: &mut AnyConnection,
    tenant: TenantId,
    id: UserId,
    now: DateTime<Utc>,
) -> IdentityResult<User> {
    find(conn, tenant, id, now).await?.ok_or(IdentityError::UserNotFound)
}

/// A validated new user.
pub struct NewUser {
    pub email: Email,
    pub display_name: String,
    pub role: Role,
    pub password: Password,
    pub birth_date: Option<NaiveDate>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    pub email: String,
    pub display_name: String,
    pub role: Role,
    pub password: String,
    /// Required for students (consent rules depend on it).
    pub birth_date: Option<NaiveDate>,
}

impl CreateUser {
    pub fn parse(self, today: NaiveDate) -> IdentityResult<NewUser> {
        let birth_date = match (self.role, self.birth_date) {
            (Role::Student, None) => {
                return Err(IdentityError::invalid("birth_date_required", "students need a birth_date"));
            }
            (Role::Student, Some(b)) if b > today || age_on(b, today) > 120 => {
                return Err(IdentityError::invalid("invalid_birth_date", "birth_date is not plausible"));
            }
            (Role::Student, b) => b,
            (_, Some(_)) => {
                return Err(IdentityError::invalid("birth_date_not_allowed", "only students carry a birth_date"));
            }
            (_, None) => None,
        };
        Ok(NewUser {
            email: Email::parse(&self.email)?,
            display_name: display_name(&self.display_name)?,
            role: self.role,
            password: Password::parse(self.password)?,
            birth_date,
        })
    }
}

/// Inserts a user with its `UserRegistered` event. The password is hashed before the caller's
/// transaction begins (hashing is slow; holding a write transaction across it would block writers).
pub async fn insert(
    conn: &mut AnyConnection,
    tenant: TenantId,
    u: &NewUser,
    password_hash: &str,
    now: DateTime<Utc>,
) -> IdentityResult<UserId> {
    let id = UserId::new();
    let res = sqlx::query(
        "INSERT INTO users (id, tenant_id, email, display_name, role, password_hash, birth_date, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(id.to_string())
    .bind(tenant.to_string())
    .bind(u.email.as_str())
    .bind(&u.display_name)
    .bind(u.role.as_str())
    .bind(password_hash)
    .bind(u.birth_date.map(|d| d.format("%Y-%m-%d").to_string()))
    .bind(db::ts(now))
    .execute(&mut *conn)
    .await;
    match res {
        Ok(_) => {}
        Err(e) if db::is_unique_violation(&e) => {
            return Err(IdentityError::conflict(
                "email_taken",
                "a user with this e-mail already exists in this tenant",
            ));
        }
        Err(e) => return Err(e.into()),
    }
    outbox::append(conn, tenant, now, &DomainEvent::UserRegistered { user_id: id, role: u.role }).await?;
    Ok(id)
}

/// Which roles a caller may create: staff create tutors, students and parents; admins anyone.
fn may_create(actor: Role, role: Role) -> bool {
    match actor {
        Role::Admin => true,
        Role::Staff => matches!(role, Role::Tutor | Role::Student | Role::Parent),
        _ => false,
    }
}

/// Registers a user in the caller's tenant.
#[utoipa::path(post, path = "/api/v1/users", tag = "users", request_body = CreateUser,
    params(("Idempotency-Key" = Option<String>, Header, description = "replays the first response for a repeated key")),
    security(("bearer" = [])),
    responses((status = 201, body = User), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn create(
    State(Ctx { db, clock, outbox, .. }): State<Ctx>,
    auth: Authed<Staff>,
    client: ClientInfo,
    Json(body): Json<CreateUser>,
) -> ApiResult<(StatusCode, Json<User>)> {
    let now = clock.now();
    let new = body.parse(now.date_naive())?;
    if !may_create(auth.role, new.role) {
        return Err(ApiError::forbidden(
            "forbidden_role",
            format!("{} cannot create {} accounts", auth.role.as_str(), new.role.as_str()),
        ));
    }
    let hash = password::hash(new.password.0.clone()).await?;
    let mut tx = db.begin().await?;
    let id = insert(tx.conn(), auth.tenant_id, &new, &hash, now).await?;
    audit::record(
        tx.conn(),
        now,
        audit::Entry::new(auth.tenant_id, Some(auth.user_id), "user.registered", &client)
            .target("user", id)
            .details(serde_json::json!({ "role": new.role, "email": new.email.as_str() })),
    )
    .await?;
    let user = get_or_404(tx.conn(), auth.tenant_id, id, now).await?;
    tx.commit().await?;
    outbox.notify();
    Ok((StatusCode::CREATED, Json(user)))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    pub role: Option<Role>,
    /// Users with an id after this (paging forward).
    pub after: Option<UserId>,
    /// Default 50, max 500.
    pub limit: Option<i64>,
}

#[derive(Serialize, ToSchema)]
pub struct UserPage {
    pub users: Vec<User>,
    /// Pass as `after` for the next page; absent on the last.
    pub next_after: Option<UserId>,
}

/// Lists the tenant's users (staff only).
#[utoipa::path(get, path = "/api/v1/users", tag = "users", params(ListQuery), security(("bearer" = [])),
    responses((status = 200, body = UserPage), (status = 403, body = ErrorBody)))]
pub async fn list(
    State(Ctx { db, clock, .. }): State<Ctx>,
    auth: Authed<Staff>,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<UserPage>> {
    let limit = q.limit.unwrap_or(50).clamp(1, 500);
    let sql = format!(
        "SELECT {USER_COLUMNS} FROM users u JOIN tenants t ON t.id = u.tenant_id
         WHERE u.tenant_id = $1 AND ($2 IS NULL OR u.role = $2) AND u.id > $3 ORDER BY u.id LIMIT $4"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(auth.tenant_id.to_string())
        .bind(q.role.map(|r| r.as_str()))
        .bind(q.after.map(|a| a.to_string()).unwrap_or_default())
        .bind(limit)
        .fetch_all(db.pool())
        .await?;
    let today = clock.now().date_naive();
    let users = rows.iter().map(|r| user_from_row(r, today)).collect::<Result<Vec<_>, _>>()?;
    let next_after = (users.len() as i64 == limit).then(|| users.last().map(|u| u.id)).flatten();
    Ok(Json(UserPage { users, next_after }))
}

/// Whether `parent` is linked to `child` in `tenant`.
pub async fn is_parent_of(
    conn: &mut AnyConnection,
    tenant: TenantId,
    parent: UserId,
    child: UserId,
) -> Result<bool, sqlx::Error> {
    Ok(sqlx::query("SELECT 1 FROM parent_links WHERE tenant_id = $1 AND parent_id = $2 AND child_id = $3")
        .bind(tenant.to_string())
        .bind(parent.to_string())
        .bind(child.to_string())
        .fetch_optional(conn)
        .await?
        .is_some())
}

/// Who may see a user's own records (profile, attendance, lessons, progress, consents): staff, the
/// user themself, and their linked parents.
pub async fn is_self_parent_or_staff(
    conn: &mut AnyConnection,
    auth: &crate::auth::AuthUser,
    user: UserId,
) -> Result<bool, sqlx::Error> {
    Ok(auth.is_staff()
        || auth.user_id == user
        || (auth.role == Role::Parent && is_parent_of(conn, auth.tenant_id, auth.user_id, user).await?))
}

/// Loads a user of the caller's tenant whose own records the caller may see (404 when there is no such
/// user, 403 `forbidden` naming `what` otherwise). See [`is_self_parent_or_staff`].
pub async fn load_viewable(
    conn: &mut AnyConnection,
    auth: &crate::auth::AuthUser,
    id: UserId,
    now: DateTime<Utc>,
    what: &str,
) -> IdentityResult<User> {
    let user = get_or_404(conn, auth.tenant_id, id, now).await?;
    if !is_self_parent_or_staff(conn, auth, id).await? {
        return Err(IdentityError::forbidden("forbidden", format!("you may not view {what}")));
    }
    Ok(user)
}

/// Whether `tutor` teaches `student`: a lesson booked with them, or an enrollment in a class they instruct.
async fn teaches(
    conn: &mut AnyConnection,
    tenant: TenantId,
    tutor: UserId,
    student: UserId,
) -> Result<bool, sqlx::Error> {
    let row = sqlx::query(
        "SELECT 1 FROM bookings WHERE tenant_id = $1 AND tutor_id = $2 AND student_id = $3
         UNION ALL
         SELECT 1 FROM enrollments e JOIN classes c ON c.id = e.class_id AND c.tenant_id = e.tenant_id
         WHERE e.tenant_id = $1 AND c.instructor_id = $2 AND e.student_id = $3
         LIMIT 1",
    )
    .bind(tenant.to_string())
    .bind(tutor.to_string())
    .bind(student.to_string())
    .fetch_optional(conn)
    .await?;
    Ok(row.is_some())
}

/// A user's profile: staff see anyone in the tenant, users see themselves, parents their children, tutors
/// their students (a lesson booked with them, or a class they instruct).
#[utoipa::path(get, path = "/api/v1/users/{id}", tag = "users", params(("id" = UserId, Path)), security(("bearer" = [])),
    responses((status = 200, body = User), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get(
    State(Ctx { db, clock, .. }): State<Ctx>,
    auth: Authed<AnyRole>,
    Path(id): Path<UserId>,
) -> ApiResult<Json<User>> {
    let mut conn = db.pool().acquire().await?;
    let now = clock.now();
    if auth.role == Role::Tutor && teaches(&mut conn, auth.tenant_id, auth.user_id, id).await? {
        return Ok(Json(get_or_404(&mut conn, auth.tenant_id, id, now).await?));
    }
    Ok(Json(load_viewable(&mut conn, &auth, id, now, "this user").await?))
}

#[derive(Serialize, ToSchema)]
pub struct Me {
    #[serde(flatten)]
    pub user: User,
    /// For parents: their linked children.
    pub children: Vec<User>,
}

/// The caller's own profile (and, for parents, their children).
#[utoipa::path(get, path = "/api/v1/me", tag = "users", security(("bearer" = [])),
    responses((status = 200, body = Me), (status = 401, body = ErrorBody)))]
pub async fn me(State(Ctx { db, clock, .. }): State<Ctx>, auth: Authed<AnyRole>) -> ApiResult<Json<Me>> {
    let mut conn = db.pool().acquire().await?;
    Ok(Json(load_me(&mut conn, &auth, clock.now()).await?))
}

/// The caller's profile and children; 401 when the account behind a valid token is gone.
async fn load_me(conn: &mut AnyConnection, auth: &crate::auth::AuthUser, now: DateTime<Utc>) -> ApiResult<Me> {
    let user = find(conn, auth.tenant_id, auth.user_id, now)
        .await?
        .ok_or_else(|| ApiError::unauthorized("invalid_token", "the account no longer exists"))?;
    let children = children_of(conn, auth.tenant_id, auth.user_id, now).await?;
    Ok(Me { user, children })
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateMe {
    /// An IANA time zone (`America/New_York`) for the times in the caller's mail and calendar feed; `null`
    /// clears it. Absent: unchanged.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, example = "Europe/Berlin")]
    pub timezone: Option<Option<String>>,
}

/// A field that is present, even as `null` (then `Some(None)`); an absent one stays `None` by `default`.
fn present<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

/// Changes the caller's own settings: their time zone (422 `invalid_timezone` for a name the IANA database
/// doesn't have). Returns the profile as `GET /api/v1/me` does.
#[utoipa::path(patch, path = "/api/v1/me", tag = "users", request_body = UpdateMe, security(("bearer" = [])),
    responses((status = 200, body = Me), (status = 401, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn update_me(
    State(Ctx { db, clock, .. }): State<Ctx>,
    auth: Authed<AnyRole>,
    Json(body): Json<UpdateMe>,
) -> ApiResult<Json<Me>> {
    let now = clock.now();
    if let Some(zone) = body.timezone {
        let zone = match zone.as_deref().map(str::trim) {
            None => None,
            Some(name) => Some(
                name.parse::<chrono_tz::Tz>()
                    .map_err(|_| {
                        ApiError::unprocessable(
                            "invalid_timezone",
                            "timezone must be an IANA zone such as Europe/Berlin",
                        )
                    })?
                    .name()
                    .to_string(),
            ),
        };
        let mut tx = db.begin().await?;
        sqlx::query("UPDATE users SET timezone = $1 WHERE tenant_id = $2 AND id = $3")
            .bind(zone)
            .bind(auth.tenant_id.to_string())
            .bind(auth.user_id.to_string())
            .execute(tx.conn())
            .await?;
        tx.commit().await?;
    }
    let mut conn = db.pool().acquire().await?;
    Ok(Json(load_me(&mut conn, &auth, now).await?))
}

/// The zone a user's times are shown in: their own, else (tutors) the zone of their published availability,
/// else UTC.
pub async fn zone_of(conn: &mut AnyConnection, tenant: TenantId, user: UserId) -> Result<chrono_tz::Tz, sqlx::Error> {
    let row = sqlx::query(
        "SELECT u.timezone, p.timezone AS availability FROM users u
         LEFT JOIN tutor_profiles p ON p.tutor_id = u.id AND p.tenant_id = u.tenant_id
         WHERE u.tenant_id = $1 AND u.id = $2",
    )
    .bind(tenant.to_string())
    .bind(user.to_string())
    .fetch_optional(conn)
    .await?;
    let Some(row) = row else { return Ok(chrono_tz::Tz::UTC) };
    let own: Option<String> = row.try_get("timezone")?;
    let availability: Option<String> = row.try_get("availability")?;
    Ok(own.or(availability).and_then(|z| z.parse().ok()).unwrap_or(chrono_tz::Tz::UTC))
}

async fn children_of(
    conn: &mut AnyConnection,
    tenant: TenantId,
    parent: UserId,
    now: DateTime<Utc>,
) -> Result<Vec<User>, sqlx::Error> {
    let sql = format!(
        "SELECT {USER_COLUMNS} FROM parent_links l JOIN users u ON u.id = l.child_id JOIN tenants t ON t.id = u.tenant_id
         WHERE l.tenant_id = $1 AND l.parent_id = $2 ORDER BY u.id"
    );
    let rows =
        sqlx::query(sqlx::AssertSqlSafe(sql)).bind(tenant.to_string()).bind(parent.to_string()).fetch_all(conn).await?;
    rows.iter().map(|r| user_from_row(r, now.date_naive())).collect()
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangeRole {
    pub role: Role,
}

/// Changes a user's role (admin only, audited). The tenant always keeps at least one admin.
/// The new role is in the user's next access token (at the latest after one access-token lifetime).
#[utoipa::path(put, path = "/api/v1/users/{id}/role", tag = "users", request_body = ChangeRole,
    params(("id" = UserId, Path)), security(("bearer" = [])),
    responses((status = 200, body = User), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn change_role(
    State(Ctx { db, clock, outbox, .. }): State<Ctx>,
    auth: Authed<crate::auth::Admin>,
    client: ClientInfo,
    Path(id): Path<UserId>,
    Json(body): Json<ChangeRole>,
) -> ApiResult<Json<User>> {
    let now = clock.now();
    let mut tx = db.begin().await?;
    let user = get_or_404(tx.conn(), auth.tenant_id, id, now).await?;
    if user.role == body.role {
        return Ok(Json(user));
    }
    if (user.role == Role::Student) != (body.role == Role::Student) {
        // A student's birth date and enrolments don't carry over to other roles, nor the reverse.
        return Err(ApiError::unprocessable("role_change_not_allowed", "students can't change to or from other roles"));
    }
    if user.role == Role::Admin {
        let admins: i64 = sqlx::query("SELECT COUNT(*) AS n FROM users WHERE tenant_id = $1 AND role = 'admin'")
            .bind(auth.tenant_id.to_string())
            .fetch_one(tx.conn())
            .await?
            .try_get("n")?;
        if admins <= 1 {
            return Err(ApiError::conflict("last_admin", "the tenant must keep at least one admin"));
        }
    }
    sqlx::query("UPDATE users SET role = $1 WHERE tenant_id = $2 AND id = $3")
        .bind(body.role.as_str())
        .bind(auth.tenant_id.to_string())
        .bind(id.to_string())
        .execute(tx.conn())
        .await?;
    let event = DomainEvent::UserRoleChanged { user_id: id, from: user.role, to: body.role, by: auth.user_id };
    outbox::append(tx.conn(), auth.tenant_id, now, &event).await?;
    audit::record(
        tx.conn(),
        now,
        audit::Entry::new(auth.tenant_id, Some(auth.user_id), "user.role_changed", &client)
            .target("user", id)
            .details(serde_json::json!({ "from": user.role, "to": body.role })),
    )
    .await?;
    let user = get_or_404(tx.conn(), auth.tenant_id, id, now).await?;
    tx.commit().await?;
    outbox.notify();
    Ok(Json(user))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LinkChild {
    pub child_id: UserId,
}

/// Links a parent to a student (staff only). Linking twice is a no-op that returns the same result.
#[utoipa::path(post, path = "/api/v1/users/{id}/children", tag = "users", request_body = LinkChild,
    params(("id" = UserId, Path, description = "the parent")), security(("bearer" = [])),
    responses((status = 201, body = User, description = "the linked child"), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn link_child(
    State(Ctx { db, clock, outbox, .. }): State<Ctx>,
    auth: Authed<Staff>,
    client: ClientInfo,
    Path(parent_id): Path<UserId>,
    Json(body): Json<LinkChild>,
) -> ApiResult<(StatusCode, Json<User>)> {
    let now = clock.now();
    let mut tx = db.begin().await?;
    let parent = get_or_404(tx.conn(), auth.tenant_id, parent_id, now).await?;
    let child = get_or_404(tx.conn(), auth.tenant_id, body.child_id, now).await?;
    link(tx.conn(), &parent, &child, now).await?;
    audit::record(
        tx.conn(),
        now,
        audit::Entry::new(auth.tenant_id, Some(auth.user_id), "parent.linked", &client)
            .target("user", child.id)
            .details(serde_json::json!({ "parent_id": parent.id })),
    )
    .await?;
    tx.commit().await?;
    outbox.notify();
    Ok((StatusCode::CREATED, Json(child)))
}

/// Links `parent` to `child` (both already loaded from the same tenant). Idempotent.
pub async fn link(conn: &mut AnyConnection, parent: &User, child: &User, now: DateTime<Utc>) -> IdentityResult<()> {
    if parent.role != Role::Parent {
        return Err(IdentityError::invalid("not_a_parent", "the first user must have the parent role"));
    }
    if child.role != Role::Student {
        return Err(IdentityError::invalid("not_a_student", "only students can be linked as children"));
    }
    if is_parent_of(conn, parent.tenant_id, parent.id, child.id).await? {
        return Ok(());
    }
    sqlx::query("INSERT INTO parent_links (tenant_id, parent_id, child_id, created_at) VALUES ($1, $2, $3, $4)")
        .bind(parent.tenant_id.to_string())
        .bind(parent.id.to_string())
        .bind(child.id.to_string())
        .bind(db::ts(now))
        .execute(&mut *conn)
        .await?;
    outbox::append(
        conn,
        parent.tenant_id,
        now,
        &DomainEvent::ParentLinked { parent_id: parent.id, child_id: child.id },
    )
    .await?;
    Ok(())
}

/// A parent's children (staff, or that parent).
#[utoipa::path(get, path = "/api/v1/users/{id}/children", tag = "users", params(("id" = UserId, Path)),
    security(("bearer" = [])), responses((status = 200, body = Vec<User>), (status = 403, body = ErrorBody)))]
pub async fn list_children(
    State(Ctx { db, clock, .. }): State<Ctx>,
    auth: Authed<AnyRole>,
    Path(parent_id): Path<UserId>,
) -> ApiResult<Json<Vec<User>>> {
    if !auth.is_staff() && auth.user_id != parent_id {
        return Err(ApiError::forbidden("forbidden", "you may not view this user's children"));
    }
    let now = clock.now();
    let mut conn = db.pool().acquire().await?;
    get_or_404(&mut conn, auth.tenant_id, parent_id, now).await?;
    Ok(Json(children_of(&mut conn, auth.tenant_id, parent_id, now).await?))
}

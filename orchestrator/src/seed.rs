//! `liveclass seed-demo`: a demo tenant with an admin, a tutor, an adult student, a minor student
//! and the minor's parent, with fresh tokens for each. Running it again reuses what exists.

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use serde::Serialize;
use sqlx::Row;

use crate::{
    app::AppState,
    auth::{Role, password},
    identity::{
        Email, Password, sessions, tenants,
        users::{self, NewUser, User},
    },
    ids::UserId,
};

pub const TENANT_SLUG: &str = "demo";
pub const PASSWORD: &str = "demo-password";

#[derive(Serialize)]
pub struct DemoUser {
    pub id: UserId,
    pub email: String,
    pub role: Role,
    pub minor: bool,
    pub access_token: String,
    pub refresh_token: String,
}

#[derive(Serialize)]
pub struct DemoTenant {
    pub tenant_id: String,
    pub tenant_slug: &'static str,
    /// Every demo account's password.
    pub password: &'static str,
    pub admin: DemoUser,
    pub tutor: DemoUser,
    pub student: DemoUser,
    pub minor: DemoUser,
    pub parent: DemoUser,
}

pub async fn seed(st: &AppState) -> anyhow::Result<DemoTenant> {
    let now = st.clock.now();
    let mut tx = st.db.begin().await?;
    let tenant = match tenants::find_by_slug(tx.conn(), TENANT_SLUG).await? {
        Some(t) => t.id,
        None => tenants::insert(tx.conn(), TENANT_SLUG, "Demo School", now).await?,
    };
    tx.commit().await?;

    let ten_years_ago = NaiveDate::from_ymd_opt(now.year() - 10, 1, 1).expect("valid date");
    let adult = NaiveDate::from_ymd_opt(2000, 1, 1).expect("valid date");
    let mut out = Vec::new();
    for (name, role, birth) in [
        ("admin", Role::Admin, None),
        ("tutor", Role::Tutor, None),
        ("student", Role::Student, Some(adult)),
        ("minor", Role::Student, Some(ten_years_ago)),
        ("parent", Role::Parent, None),
    ] {
        let email = format!("{name}@demo.liveclass.test");
        let user = ensure_user(st, tenant, &email, name, role, birth, now).await?;
        out.push(user);
    }
    let mut tx = st.db.begin().await?;
    users::link(tx.conn(), &out[4], &out[3], now).await?;
    let mut demo = Vec::new();
    for user in out {
        let s = sessions::issue(tx.conn(), &st.tokens, &st.config, user, None, now).await?;
        demo.push(DemoUser {
            id: s.user.id,
            email: s.user.email,
            role: s.user.role,
            minor: s.user.minor,
            access_token: s.access_token,
            refresh_token: s.refresh_token,
        });
    }
    tx.commit().await?;
    st.outbox.notify();
    let mut it = demo.into_iter();
    let mut next = || it.next().expect("five users");
    Ok(DemoTenant {
        tenant_id: tenant.to_string(),
        tenant_slug: TENANT_SLUG,
        password: PASSWORD,
        admin: next(),
        tutor: next(),
        student: next(),
        minor: next(),
        parent: next(),
    })
}

async fn ensure_user(
    st: &AppState,
    tenant: crate::ids::TenantId,
    email: &str,
    name: &str,
    role: Role,
    birth_date: Option<NaiveDate>,
    now: DateTime<Utc>,
) -> anyhow::Result<User> {
    let existing = sqlx::query("SELECT id FROM users WHERE tenant_id = $1 AND email = $2")
        .bind(tenant.to_string())
        .bind(email)
        .fetch_optional(st.db.pool())
        .await?;
    let mut conn = st.db.pool().acquire().await?;
    if let Some(row) = existing {
        let id = UserId::from_column(&row.try_get::<String, _>("id")?)?;
        return Ok(users::get_or_404(&mut conn, tenant, id, now).await?);
    }
    drop(conn);
    let new = NewUser {
        email: Email::parse(email)?,
        display_name: format!("Demo {name}"),
        role,
        password: Password::parse(PASSWORD.into())?,
        birth_date,
    };
    let hash = password::hash(PASSWORD.into()).await?;
    let mut tx = st.db.begin().await?;
    let id = users::insert(tx.conn(), tenant, &new, &hash, now).await?;
    let user = users::get_or_404(tx.conn(), tenant, id, now).await?;
    tx.commit().await?;
    Ok(user)
}

//! Identity and access over HTTP: login, tokens, roles, tenant isolation, refresh rotation, rate
//! limits, the audit log, parent links and self-registration.

use chrono::Duration;
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{PASSWORD, TestApp};

#[tokio::test]
async fn login_then_call_an_authenticated_endpoint() {
    let app = TestApp::spawn().await;
    let t = app.tenant("acme").await;
    let me = app.get("/api/v1/me", &t.admin.access).await;
    assert_eq!(me.status, StatusCode::OK, "{me:?}");
    assert_eq!(me.body["email"], "admin@acme.test");
    assert_eq!(me.body["role"], "admin");
    assert_eq!(me.body["tenant_id"], t.id.as_str());
    assert!(me.body.get("password_hash").is_none());

    let res = app
        .post(
            "/api/v1/auth/login",
            None,
            json!({"tenant":"acme","email":"admin@acme.test","password":"wrong-password"}),
        )
        .await;
    assert_eq!((res.status, res.code()), (StatusCode::UNAUTHORIZED, "invalid_credentials"));
    let res = app
        .post("/api/v1/auth/login", None, json!({"tenant":"nope","email":"admin@acme.test","password":PASSWORD}))
        .await;
    assert_eq!((res.status, res.code()), (StatusCode::UNAUTHORIZED, "invalid_credentials"));
    // E-mail matching ignores case.
    app.login("acme", "ADMIN@Acme.test", PASSWORD).await;
}

#[tokio::test]
async fn bad_missing_and_expired_tokens_are_401() {
    let app = TestApp::spawn().await;
    let t = app.tenant("tok").await;
    let res = app.request(Method::GET, "/api/v1/me", None, None, &[]).await;
    assert_eq!((res.status, res.code()), (StatusCode::UNAUTHORIZED, "missing_token"));
    let res = app.get("/api/v1/me", "not.a.jwt").await;
    assert_eq!((res.status, res.code()), (StatusCode::UNAUTHORIZED, "invalid_token"));
    let mut forged = t.admin.access.clone();
    forged.pop();
    forged.push(if t.admin.access.ends_with('A') { 'B' } else { 'A' });
    let res = app.get("/api/v1/me", &forged).await;
    assert_eq!((res.status, res.code()), (StatusCode::UNAUTHORIZED, "invalid_token"));
    let res = app.request(Method::GET, "/api/v1/me", None, None, &[("authorization", "Basic abc")]).await;
    assert_eq!((res.status, res.code()), (StatusCode::UNAUTHORIZED, "invalid_token"));

    app.advance(Duration::minutes(14));
    assert_eq!(app.get("/api/v1/me", &t.admin.access).await.status, StatusCode::OK);
    app.advance(Duration::minutes(2));
    let res = app.get("/api/v1/me", &t.admin.access).await;
    assert_eq!((res.status, res.code()), (StatusCode::UNAUTHORIZED, "token_expired"));
    // The refresh token still works and yields a fresh access token.
    let res = app.post("/api/v1/auth/refresh", None, json!({"refresh_token": t.admin.refresh})).await;
    assert_eq!(res.status, StatusCode::OK, "{res:?}");
    let fresh = res.body["access_token"].as_str().unwrap();
    assert_eq!(app.get("/api/v1/me", fresh).await.status, StatusCode::OK);
}

#[tokio::test]
async fn roles_are_enforced() {
    let app = TestApp::spawn().await;
    let t = app.tenant("roles").await;
    let staff = app.user(&t, "staff", "sam", None).await;
    let student = app.user(&t, "student", "stu", Some("2001-05-05")).await;

    let new_tutor = json!({"email":"tutor@roles.test","display_name":"T","role":"tutor","password":PASSWORD});
    let res = app.post("/api/v1/users", Some(&student.access), new_tutor.clone()).await;
    assert_eq!((res.status, res.code()), (StatusCode::FORBIDDEN, "forbidden_role"));
    let res = app.post("/api/v1/users", Some(&staff.access), new_tutor).await;
    assert_eq!(res.status, StatusCode::CREATED, "{res:?}");
    // Staff may not mint admins or staff; admins may.
    let new_admin = json!({"email":"boss@roles.test","display_name":"B","role":"admin","password":PASSWORD});
    let res = app.post("/api/v1/users", Some(&staff.access), new_admin.clone()).await;
    assert_eq!((res.status, res.code()), (StatusCode::FORBIDDEN, "forbidden_role"));
    assert_eq!(app.post("/api/v1/users", Some(&t.admin.access), new_admin).await.status, StatusCode::CREATED);

    let res = app.get("/api/v1/users", &student.access).await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
    let res = app.get("/api/v1/audit", &staff.access).await;
    assert_eq!((res.status, res.code()), (StatusCode::FORBIDDEN, "forbidden_role"));
    // A student sees themself but not others.
    assert_eq!(app.get(&format!("/api/v1/users/{}", student.user_id), &student.access).await.status, StatusCode::OK);
    let res = app.get(&format!("/api/v1/users/{}", staff.user_id), &student.access).await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn validation_and_duplicates() {
    let app = TestApp::spawn().await;
    let t = app.tenant("valid").await;
    let create = |body: serde_json::Value| app.post("/api/v1/users", Some(&t.admin.access), body);
    let res = create(json!({"email":"x@valid.test","display_name":"X","role":"student","password":PASSWORD})).await;
    assert_eq!((res.status, res.code()), (StatusCode::UNPROCESSABLE_ENTITY, "birth_date_required"));
    let res = create(json!({"email":"x@valid.test","display_name":"X","role":"tutor","password":"short"})).await;
    assert_eq!((res.status, res.code()), (StatusCode::UNPROCESSABLE_ENTITY, "weak_password"));
    let res = create(json!({"email":"not-an-email","display_name":"X","role":"tutor","password":PASSWORD})).await;
    assert_eq!((res.status, res.code()), (StatusCode::UNPROCESSABLE_ENTITY, "invalid_email"));
    let res = create(json!({"email":"x@valid.test","display_name":"X","role":"student","password":PASSWORD,"birth_date":"2999-01-01"})).await;
    assert_eq!((res.status, res.code()), (StatusCode::UNPROCESSABLE_ENTITY, "invalid_birth_date"));
    let ok = json!({"email":"x@valid.test","display_name":"X","role":"tutor","password":PASSWORD});
    assert_eq!(create(ok.clone()).await.status, StatusCode::CREATED);
    let mut dup = ok;
    dup["email"] = json!("X@VALID.test");
    let res = create(dup).await;
    assert_eq!((res.status, res.code()), (StatusCode::CONFLICT, "email_taken"));
    let res = app
        .post(
            "/api/v1/tenants",
            None,
            json!({"slug":"valid","name":"again","admin":{"email":"a@b.io","display_name":"A","password":PASSWORD}}),
        )
        .await;
    assert_eq!((res.status, res.code()), (StatusCode::CONFLICT, "slug_taken"));
    let res = app
        .post(
            "/api/v1/tenants",
            None,
            json!({"slug":"Bad Slug","name":"x","admin":{"email":"a@b.io","display_name":"A","password":PASSWORD}}),
        )
        .await;
    assert_eq!((res.status, res.code()), (StatusCode::UNPROCESSABLE_ENTITY, "invalid_slug"));
}

#[tokio::test]
async fn tenants_are_isolated() {
    let app = TestApp::spawn().await;
    let a = app.tenant("alpha").await;
    let b = app.tenant("beta").await;
    let a_student = app.user(&a, "student", "anna", Some("2000-01-01")).await;
    let a_parent = app.user(&a, "parent", "paula", None).await;
    let b_parent = app.user(&b, "parent", "peter", None).await;

    // B's admin can't see A's users, tenant, or audit entries; ids from A are simply not found in B.
    let res = app.get(&format!("/api/v1/users/{}", a_student.user_id), &b.admin.access).await;
    assert_eq!((res.status, res.code()), (StatusCode::NOT_FOUND, "user_not_found"));
    let res = app.get("/api/v1/users", &b.admin.access).await;
    let emails: Vec<_> = res.body["users"].as_array().unwrap().iter().map(|u| u["email"].as_str().unwrap()).collect();
    assert!(emails.iter().all(|e| e.ends_with("@beta.test")), "{emails:?}");
    let res = app.get(&format!("/api/v1/tenants/{}", a.id), &b.admin.access).await;
    assert_eq!((res.status, res.code()), (StatusCode::FORBIDDEN, "wrong_tenant"));
    let res = app
        .request(
            Method::PATCH,
            &format!("/api/v1/tenants/{}/settings", a.id),
            Some(&b.admin.access),
            Some(&json!({"consent_age": 16})),
            &[],
        )
        .await;
    assert_eq!((res.status, res.code()), (StatusCode::FORBIDDEN, "wrong_tenant"));
    assert_eq!(app.get(&format!("/api/v1/tenants/{}", a.id), &a.admin.access).await.body["consent_age"], 13);
    let audit = app.get("/api/v1/audit", &b.admin.access).await;
    assert!(!audit.text.contains(&a_student.user_id), "B's audit log shows A's users");

    // B's admin can't change A's users or link across tenants.
    let res = app
        .request(
            Method::PUT,
            &format!("/api/v1/users/{}/role", a_parent.user_id),
            Some(&b.admin.access),
            Some(&json!({"role":"tutor"})),
            &[],
        )
        .await;
    assert_eq!(res.status, StatusCode::NOT_FOUND);
    let res = app
        .post(
            &format!("/api/v1/users/{}/children", b_parent.user_id),
            Some(&b.admin.access),
            json!({"child_id": a_student.user_id}),
        )
        .await;
    assert_eq!(res.status, StatusCode::NOT_FOUND);
    let res = app
        .post(
            &format!("/api/v1/users/{}/children", a_parent.user_id),
            Some(&b.admin.access),
            json!({"child_id": a_student.user_id}),
        )
        .await;
    assert_eq!(res.status, StatusCode::NOT_FOUND);
    // A's parent still has no children.
    let me = app.get("/api/v1/me", &a_parent.access).await;
    assert_eq!(me.body["children"], json!([]));
    // The same e-mail can exist in both tenants.
    let res = app
        .post(
            "/api/v1/users",
            Some(&b.admin.access),
            json!({"email":"anna@alpha.test","display_name":"Anna B","role":"tutor","password":PASSWORD}),
        )
        .await;
    assert_eq!(res.status, StatusCode::CREATED, "{res:?}");
}

#[tokio::test]
async fn refresh_tokens_rotate_and_reuse_revokes_the_family() {
    let app = TestApp::spawn().await;
    let t = app.tenant("rot").await;
    let first = t.admin.refresh.clone();
    let res = app.post("/api/v1/auth/refresh", None, json!({"refresh_token": first})).await;
    assert_eq!(res.status, StatusCode::OK, "{res:?}");
    let second = res.body["refresh_token"].as_str().unwrap().to_string();
    assert_ne!(first, second);

    // Replaying the rotated token is detected: the whole family, including `second`, is revoked.
    let res = app.post("/api/v1/auth/refresh", None, json!({"refresh_token": first})).await;
    assert_eq!((res.status, res.code()), (StatusCode::UNAUTHORIZED, "refresh_token_reused"));
    let res = app.post("/api/v1/auth/refresh", None, json!({"refresh_token": second})).await;
    assert_eq!((res.status, res.code()), (StatusCode::UNAUTHORIZED, "invalid_refresh_token"));
    // The family's access tokens went with it (security::sessions covers that in full).
    let res = app.get("/api/v1/me", &t.admin.access).await;
    assert_eq!((res.status, res.code()), (StatusCode::UNAUTHORIZED, "session_revoked"));

    // Another login is a separate family, unaffected.
    let other = app.login("rot", "admin@rot.test", PASSWORD).await;
    let audit = app.get("/api/v1/audit?action=refresh_token.reused", &other.access).await;
    assert_eq!(audit.body["entries"].as_array().unwrap().len(), 1, "{audit:?}");
    let res = app.post("/api/v1/auth/refresh", None, json!({"refresh_token": other.refresh})).await;
    assert_eq!(res.status, StatusCode::OK);
    let res = app.post("/api/v1/auth/refresh", None, json!({"refresh_token": "garbage"})).await;
    assert_eq!((res.status, res.code()), (StatusCode::UNAUTHORIZED, "invalid_refresh_token"));
}

#[tokio::test]
async fn concurrent_refreshes_of_one_token_issue_at_most_one_successor() {
    let app = TestApp::spawn().await;
    let t = app.tenant("race").await;
    let body = json!({"refresh_token": t.admin.refresh});
    let results = futures::future::join_all((0..8).map(|_| app.post("/api/v1/auth/refresh", None, body.clone()))).await;
    let ok = results.iter().filter(|r| r.status == StatusCode::OK).count();
    assert_eq!(ok, 1, "{ok} successors issued: {results:?}");
    assert!(results.iter().all(|r| r.status == StatusCode::OK || r.status == StatusCode::UNAUTHORIZED), "{results:?}");
}

#[tokio::test]
async fn logout_and_refresh_token_expiry() {
    let app = TestApp::spawn_with(|c| c.refresh_token_ttl_secs = 3600).await;
    let t = app.tenant("out").await;
    let res = app.post("/api/v1/auth/logout", None, json!({"refresh_token": t.admin.refresh})).await;
    assert_eq!(res.status, StatusCode::NO_CONTENT);
    let res = app.post("/api/v1/auth/refresh", None, json!({"refresh_token": t.admin.refresh})).await;
    assert_eq!((res.status, res.code()), (StatusCode::UNAUTHORIZED, "invalid_refresh_token"));

    let s = app.login("out", "admin@out.test", PASSWORD).await;
    app.advance(Duration::minutes(61));
    let res = app.post("/api/v1/auth/refresh", None, json!({"refresh_token": s.refresh})).await;
    assert_eq!((res.status, res.code()), (StatusCode::UNAUTHORIZED, "invalid_refresh_token"));
}

#[tokio::test]
async fn logins_are_rate_limited_per_account_and_per_ip() {
    let app = TestApp::spawn_with(|c| {
        c.login_max_failures_per_account = 3;
        c.login_max_attempts_per_ip = 8;
        c.login_window_secs = 600;
    })
    .await;
    app.tenant("rl").await; // one login
    let wrong = json!({"tenant":"rl","email":"admin@rl.test","password":"wrong-password"});
    for _ in 0..3 {
        assert_eq!(app.post("/api/v1/auth/login", None, wrong.clone()).await.status, StatusCode::UNAUTHORIZED);
    }
    // The account is locked even for the right password, with a Retry-After.
    let right = json!({"tenant":"rl","email":"admin@rl.test","password":PASSWORD});
    let res = app.post("/api/v1/auth/login", None, right.clone()).await;
    assert_eq!((res.status, res.code()), (StatusCode::TOO_MANY_REQUESTS, "rate_limited"), "{res:?}");
    let retry: u64 = res.headers.get("retry-after").unwrap().to_str().unwrap().parse().unwrap();
    assert!(retry > 0 && retry <= 600, "{retry}");
    let audit_failures =
        app.get("/api/v1/audit?action=login.failed", &app.login_after(&right, Duration::minutes(11)).await).await;
    assert_eq!(audit_failures.body["entries"].as_array().unwrap().len(), 3, "{audit_failures:?}");

    // Per IP: 8 unsuccessful attempts in the window (3 wrong + 1 locked happened in an earlier window, and
    // the successful sign-in above gave its attempt back) …
    for i in 0..8 {
        let other = json!({"tenant":"rl","email":format!("nobody{i}@rl.test"),"password":"whatever-pw"});
        assert_eq!(app.post("/api/v1/auth/login", None, other).await.status, StatusCode::UNAUTHORIZED);
    }
    let res = app.post("/api/v1/auth/login", None, right).await;
    assert_eq!((res.status, res.code()), (StatusCode::TOO_MANY_REQUESTS, "rate_limited"), "{res:?}");
}

impl TestApp {
    /// Moves time forward, then logs in with `body`; returns the access token.
    async fn login_after(&self, body: &serde_json::Value, by: Duration) -> String {
        self.advance(by);
        let res = self.post("/api/v1/auth/login", None, body.clone()).await;
        assert_eq!(res.status, StatusCode::OK, "{res:?}");
        res.body["access_token"].as_str().unwrap().to_string()
    }
}

#[tokio::test]
async fn role_changes_are_audited_and_keep_an_admin() {
    let app = TestApp::spawn().await;
    let t = app.tenant("rc").await;
    let tutor = app.user(&t, "tutor", "tim", None).await;
    let student = app.user(&t, "student", "sid", Some("2002-02-02")).await;
    let put_role = async |id: &str, role: &str| {
        app.request(
            Method::PUT,
            &format!("/api/v1/users/{id}/role"),
            Some(&t.admin.access),
            Some(&json!({"role": role})),
            &[],
        )
        .await
    };
    let res = put_role(&tutor.user_id, "staff").await;
    assert_eq!((res.status, res.body["role"].as_str()), (StatusCode::OK, Some("staff")), "{res:?}");
    let res = put_role(&student.user_id, "tutor").await;
    assert_eq!((res.status, res.code()), (StatusCode::UNPROCESSABLE_ENTITY, "role_change_not_allowed"));
    let res = put_role(&t.admin.user_id, "staff").await;
    assert_eq!((res.status, res.code()), (StatusCode::CONFLICT, "last_admin"));

    // The new role is in the next token (after refresh) — staff can now list users.
    let res = app.post("/api/v1/auth/refresh", None, json!({"refresh_token": tutor.refresh})).await;
    let token = res.body["access_token"].as_str().unwrap();
    assert_eq!(app.get("/api/v1/users", token).await.status, StatusCode::OK);

    let audit = app.get("/api/v1/audit?action=user.role_changed", &t.admin.access).await;
    let entries = audit.body["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{audit:?}");
    assert_eq!(entries[0]["actor_id"], t.admin.user_id.as_str());
    assert_eq!(entries[0]["target_id"], tutor.user_id.as_str());
    assert_eq!(entries[0]["details"], json!({"from":"tutor","to":"staff"}));
    assert!(entries[0]["request_id"].as_str().is_some());
    // Paging: limit 1 gives a cursor to older entries.
    let page = app.get("/api/v1/audit?limit=1", &t.admin.access).await;
    let before = page.body["next_before"].as_i64().expect("cursor");
    let older = app.get(&format!("/api/v1/audit?limit=500&before={before}"), &t.admin.access).await;
    assert!(older.body["entries"].as_array().unwrap().iter().all(|e| e["id"].as_i64().unwrap() < before));
}

#[tokio::test]
async fn parents_children_and_minors() {
    let app = TestApp::spawn().await;
    let t = app.tenant("fam").await;
    let ten_years_ago = (chrono::Utc::now() - Duration::days(365 * 10)).format("%Y-%m-%d").to_string();
    let kid = app.user(&t, "student", "kid", Some(&ten_years_ago)).await;
    let adult = app.user(&t, "student", "grownup", Some("1990-01-01")).await;
    let parent = app.user(&t, "parent", "mum", None).await;
    let tutor = app.user(&t, "tutor", "ted", None).await;

    let kid_view = app.get(&format!("/api/v1/users/{}", kid.user_id), &t.admin.access).await;
    assert_eq!(kid_view.body["minor"], true);
    assert_eq!(app.get(&format!("/api/v1/users/{}", adult.user_id), &t.admin.access).await.body["minor"], false);
    // Before linking, the parent can't see the child.
    assert_eq!(app.get(&format!("/api/v1/users/{}", kid.user_id), &parent.access).await.status, StatusCode::FORBIDDEN);

    let link = async |parent_id: &str, child_id: &str| {
        app.post(&format!("/api/v1/users/{parent_id}/children"), Some(&t.admin.access), json!({"child_id": child_id}))
            .await
    };
    assert_eq!(link(&parent.user_id, &kid.user_id).await.status, StatusCode::CREATED);
    assert_eq!(link(&parent.user_id, &kid.user_id).await.status, StatusCode::CREATED, "idempotent");
    let res = link(&tutor.user_id, &kid.user_id).await;
    assert_eq!((res.status, res.code()), (StatusCode::UNPROCESSABLE_ENTITY, "not_a_parent"));
    let res = link(&parent.user_id, &tutor.user_id).await;
    assert_eq!((res.status, res.code()), (StatusCode::UNPROCESSABLE_ENTITY, "not_a_student"));

    let me = app.get("/api/v1/me", &parent.access).await;
    let children = me.body["children"].as_array().unwrap();
    assert_eq!(children.len(), 1);
    assert_eq!(children[0]["id"], kid.user_id.as_str());
    assert_eq!(app.get(&format!("/api/v1/users/{}", kid.user_id), &parent.access).await.status, StatusCode::OK);
    let res = app.get(&format!("/api/v1/users/{}/children", parent.user_id), &parent.access).await;
    assert_eq!(res.body.as_array().unwrap().len(), 1);
    assert_eq!(
        app.get(&format!("/api/v1/users/{}/children", parent.user_id), &kid.access).await.status,
        StatusCode::FORBIDDEN
    );

    // The consent age is a tenant setting: lowering it below the child's age makes them an adult.
    let res = app
        .request(
            Method::PATCH,
            &format!("/api/v1/tenants/{}/settings", t.id),
            Some(&t.admin.access),
            Some(&json!({"consent_age": 9})),
            &[],
        )
        .await;
    assert_eq!(res.status, StatusCode::OK, "{res:?}");
    assert_eq!(app.get(&format!("/api/v1/users/{}", kid.user_id), &t.admin.access).await.body["minor"], false);
    let res = app
        .request(
            Method::PATCH,
            &format!("/api/v1/tenants/{}/settings", t.id),
            Some(&t.admin.access),
            Some(&json!({"consent_age": 99})),
            &[],
        )
        .await;
    assert_eq!((res.status, res.code()), (StatusCode::UNPROCESSABLE_ENTITY, "invalid_consent_age"));
}

#[tokio::test]
async fn self_registration_follows_the_tenant_setting() {
    let app = TestApp::spawn().await;
    let t = app.tenant("selfreg").await;
    let body = json!({"tenant":"selfreg","email":"new@selfreg.test","display_name":"New","password":PASSWORD,"birth_date":"2004-04-04"});
    let res = app.post("/api/v1/auth/register", None, body.clone()).await;
    assert_eq!((res.status, res.code()), (StatusCode::FORBIDDEN, "self_registration_disabled"));
    app.request(
        Method::PATCH,
        &format!("/api/v1/tenants/{}/settings", t.id),
        Some(&t.admin.access),
        Some(&json!({"self_registration": true})),
        &[],
    )
    .await;
    let res = app.post("/api/v1/auth/register", None, body).await;
    assert_eq!(res.status, StatusCode::CREATED, "{res:?}");
    assert_eq!(res.body["role"], "student");
    app.login("selfreg", "new@selfreg.test", PASSWORD).await;
}

#[tokio::test]
async fn tenant_signup_can_be_disabled() {
    let app = TestApp::spawn_with(|c| c.allow_tenant_signup = false).await;
    let res = app
        .post(
            "/api/v1/tenants",
            None,
            json!({"slug":"closed","name":"x","admin":{"email":"a@b.io","display_name":"A","password":PASSWORD}}),
        )
        .await;
    assert_eq!((res.status, res.code()), (StatusCode::FORBIDDEN, "signup_disabled"));
}

//! Parental consent over HTTP: requests mailed to the parent, per-scope decisions with a verification
//! method, revocation, who may do what, tenant isolation, the audit trail and the events; and
//! `consent::ensure` against the state those requests leave.

use std::time::Duration;

use orchestrator::{
    clock::Clock,
    consent::{self, ConsentScope},
    events::DomainEvent,
    identity::users,
};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{Session, Tenant, TestApp};

/// A birth date `years` ago (today by the test's clock), as the API takes it.
fn born_years_ago(app: &TestApp, years: i64) -> String {
    (app.clock.now() - chrono::Duration::days(365 * years + 30)).format("%Y-%m-%d").to_string()
}

impl TestApp {
    async fn link(&self, t: &Tenant, parent: &Session, child: &Session) {
        let res = self
            .post(
                &format!("/api/v1/users/{}/children", parent.user_id),
                Some(&t.admin.access),
                json!({"child_id": child.user_id}),
            )
            .await;
        assert_eq!(res.status, StatusCode::CREATED, "{res:?}");
    }

    /// The effective state of `scope` in a child's consents, as `token` sees it.
    async fn scope_state(&self, child: &Session, token: &str, scope: &str) -> Value {
        let res = self.get(&format!("/api/v1/users/{}/consents", child.user_id), token).await;
        assert_eq!(res.status, StatusCode::OK, "{res:?}");
        res.body["scopes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["scope"] == scope)
            .cloned()
            .expect("every scope listed")
    }

    async fn audit(&self, t: &Tenant, action: &str) -> Vec<Value> {
        let res = self.get(&format!("/api/v1/audit?action={action}"), &t.admin.access).await;
        assert_eq!(res.status, StatusCode::OK, "{res:?}");
        res.body["entries"].as_array().unwrap().clone()
    }
}

/// The next `n` consent events (other events are skipped).
async fn consent_events(
    events: &mut tokio::sync::mpsc::Receiver<std::sync::Arc<orchestrator::outbox::EventEnvelope>>,
    n: usize,
) -> Vec<DomainEvent> {
    let mut got = Vec::new();
    while got.len() < n {
        let e = tokio::time::timeout(Duration::from_secs(5), events.recv()).await.expect("event in time").unwrap();
        if e.event.name().starts_with("Consent") {
            got.push(e.event.clone());
        }
    }
    got
}

#[tokio::test]
async fn request_mail_grant_and_revoke() {
    let app = TestApp::spawn().await;
    let mut events = app.state.outbox.subscribe(256);
    let t = app.tenant("consent").await;
    let staff = app.user(&t, "staff", "sally", None).await;
    let kid = app.user(&t, "student", "kim", Some(&born_years_ago(&app, 10))).await;
    let mum = app.user(&t, "parent", "mum", None).await;
    app.link(&t, &mum, &kid).await;

    let res = app
        .post(
            "/api/v1/consent-requests",
            Some(&staff.access),
            json!({"child_id": kid.user_id, "scopes": ["chat", "live_video", "chat"]}),
        )
        .await;
    assert_eq!(res.status, StatusCode::CREATED, "{res:?}");
    let request_id = res.body["id"].as_str().unwrap().to_string();
    assert_eq!(res.body["parent_id"], mum.user_id.as_str(), "the only linked parent is the default");
    assert_eq!(res.body["scopes"], json!(["live_video", "chat"]));
    assert_eq!(res.body["status"], "pending");
    assert_eq!(res.body["requested_by"], staff.user_id.as_str());

    // The parent was mailed; the child was not; staff see the tenant's queue.
    let mail = app.get("/api/v1/me/mailbox", &mum.access).await;
    let messages = mail.body["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 1, "{mail:?}");
    assert_eq!(messages[0]["to_email"], "mum@consent.test");
    assert!(messages[0]["subject"].as_str().unwrap().contains("kim"), "{mail:?}");
    let text = messages[0]["body"].as_str().unwrap();
    assert!(
        text.contains(&request_id) && text.contains("live video lessons") && text.contains("lesson chat"),
        "{text}"
    );
    assert_eq!(app.get("/api/v1/me/mailbox", &kid.access).await.body["messages"], json!([]));
    let queue = app.get(&format!("/api/v1/mailbox?to_user_id={}", mum.user_id), &staff.access).await;
    assert_eq!(queue.body["messages"].as_array().unwrap().len(), 1, "{queue:?}");
    assert_eq!(app.get("/api/v1/mailbox", &kid.access).await.status, StatusCode::FORBIDDEN);

    // The parent sees the request and grants both scopes.
    let listed = app.get("/api/v1/consent-requests", &mum.access).await;
    assert_eq!(listed.body["requests"][0]["id"], request_id.as_str(), "{listed:?}");
    assert_eq!(app.scope_state(&kid, &mum.access, "chat").await["state"], "none");
    let res = app
        .post(
            &format!("/api/v1/consent-requests/{request_id}/decision"),
            Some(&mum.access),
            json!({"grant": ["live_video", "chat"], "method": "signed_form"}),
        )
        .await;
    assert_eq!(res.status, StatusCode::OK, "{res:?}");
    assert_eq!(res.body["request"]["status"], "answered");
    assert!(res.body["request"]["answered_at"].is_string());

    // Staff, the parent and the child all see it; recording was never asked.
    for token in [&t.admin.access, &mum.access, &kid.access] {
        let chat = app.scope_state(&kid, token, "chat").await;
        assert_eq!(chat["state"], "granted");
        assert_eq!(chat["parent_id"], mum.user_id.as_str());
        assert_eq!(chat["method"], "signed_form");
        assert!(chat["decided_at"].is_string());
        assert_eq!(app.scope_state(&kid, token, "recording").await["state"], "none");
    }

    // Revoking chat is immediate; live video stays granted.
    let res = app
        .post(&format!("/api/v1/users/{}/consents/revoke", kid.user_id), Some(&mum.access), json!({"scopes": ["chat"]}))
        .await;
    assert_eq!(res.status, StatusCode::OK, "{res:?}");
    let chat = app.scope_state(&kid, &staff.access, "chat").await;
    assert_eq!((&chat["state"], &chat["decided_by"]), (&json!("revoked"), &json!(mum.user_id)));
    assert_eq!(app.scope_state(&kid, &staff.access, "live_video").await["state"], "granted");

    // Each change is audited, with who and how.
    let requested = app.audit(&t, "consent.requested").await;
    assert_eq!(requested.len(), 1);
    assert_eq!(requested[0]["actor_id"], staff.user_id.as_str());
    assert_eq!(requested[0]["target_id"], request_id.as_str());
    let granted = app.audit(&t, "consent.granted").await;
    assert_eq!(granted.len(), 1);
    assert_eq!(granted[0]["actor_id"], mum.user_id.as_str());
    assert_eq!(granted[0]["target_id"], kid.user_id.as_str());
    assert_eq!(granted[0]["details"]["method"], "signed_form");
    assert_eq!(granted[0]["details"]["scopes"], json!(["live_video", "chat"]));
    let revoked = app.audit(&t, "consent.revoked").await;
    assert_eq!(revoked.len(), 1);
    assert_eq!(revoked[0]["details"]["scopes"], json!(["chat"]));

    // And emitted, in order.
    let got = consent_events(&mut events, 3).await;
    let (kid_id, mum_id) = (kid.user_id.parse().unwrap(), mum.user_id.parse().unwrap());
    assert_eq!(
        got,
        [
            DomainEvent::ConsentRequested {
                request_id: request_id.parse().unwrap(),
                child_id: kid_id,
                parent_id: mum_id,
                scopes: vec![ConsentScope::LiveVideo, ConsentScope::Chat],
            },
            DomainEvent::ConsentGranted {
                child_id: kid_id,
                parent_id: mum_id,
                scopes: vec![ConsentScope::LiveVideo, ConsentScope::Chat],
                method: "signed_form".into(),
            },
            DomainEvent::ConsentRevoked { child_id: kid_id, parent_id: mum_id, scopes: vec![ConsentScope::Chat] },
        ]
    );

    // Revoking what is no longer granted changes nothing and emits nothing.
    let res = app
        .post(&format!("/api/v1/users/{}/consents/revoke", kid.user_id), Some(&mum.access), json!({"scopes": ["chat"]}))
        .await;
    assert_eq!(res.status, StatusCode::OK, "{res:?}");
    assert_eq!(app.audit(&t, "consent.revoked").await.len(), 1);
    assert!(tokio::time::timeout(Duration::from_millis(700), events.recv()).await.is_err(), "no further events");
}

#[tokio::test]
async fn deny_partial_answers_and_deciding_once() {
    let app = TestApp::spawn().await;
    let mut events = app.state.outbox.subscribe(256);
    let t = app.tenant("deny").await;
    let kid = app.user(&t, "student", "kai", Some(&born_years_ago(&app, 8))).await;
    let dad = app.user(&t, "parent", "dad", None).await;
    app.link(&t, &dad, &kid).await;
    let res = app
        .post(
            "/api/v1/consent-requests",
            Some(&t.admin.access),
            json!({"child_id": kid.user_id, "scopes": ["live_video", "chat", "recording"]}),
        )
        .await;
    assert_eq!(res.status, StatusCode::CREATED, "{res:?}");
    let decision = format!("/api/v1/consent-requests/{}/decision", res.body["id"].as_str().unwrap());

    // Granting needs a verification method from the documented list.
    let res = app.post(&decision, Some(&dad.access), json!({"grant": ["live_video"]})).await;
    assert_eq!((res.status, res.code()), (StatusCode::UNPROCESSABLE_ENTITY, "method_required"), "{res:?}");
    let res = app.post(&decision, Some(&dad.access), json!({"grant": ["live_video"], "method": "pinky_promise"})).await;
    assert_eq!((res.status, res.code()), (StatusCode::UNPROCESSABLE_ENTITY, "invalid_body"), "{res:?}");
    let res = app
        .post(&decision, Some(&dad.access), json!({"grant": ["chat"], "deny": ["chat"], "method": "video_call"}))
        .await;
    assert_eq!((res.status, res.code()), (StatusCode::UNPROCESSABLE_ENTITY, "conflicting_scopes"), "{res:?}");
    let res = app.post(&decision, Some(&dad.access), json!({})).await;
    assert_eq!((res.status, res.code()), (StatusCode::UNPROCESSABLE_ENTITY, "scopes_required"), "{res:?}");

    // Grant one, deny one, leave chat undecided.
    let res = app
        .post(
            &decision,
            Some(&dad.access),
            json!({"grant": ["live_video"], "deny": ["recording"], "method": "video_call"}),
        )
        .await;
    assert_eq!(res.status, StatusCode::OK, "{res:?}");
    let scopes = res.body["consents"]["scopes"].as_array().unwrap();
    let state = |name: &str| scopes.iter().find(|s| s["scope"] == name).unwrap()["state"].clone();
    assert_eq!(
        (state("live_video"), state("recording"), state("chat")),
        (json!("granted"), json!("denied"), json!("none"))
    );

    let res = app.post(&decision, Some(&dad.access), json!({"grant": ["chat"], "method": "video_call"})).await;
    assert_eq!((res.status, res.code()), (StatusCode::CONFLICT, "already_answered"), "{res:?}");
    assert_eq!(app.scope_state(&kid, &dad.access, "chat").await["state"], "none", "the refused decision left no trace");

    let denied = app.audit(&t, "consent.denied").await;
    assert_eq!(denied.len(), 1, "{denied:?}");
    assert_eq!(denied[0]["details"]["scopes"], json!(["recording"]));
    assert_eq!(app.audit(&t, "consent.granted").await[0]["details"]["method"], "video_call");
    let names: Vec<_> = consent_events(&mut events, 3).await.iter().map(|e| e.name()).collect();
    assert_eq!(names, ["ConsentRequested", "ConsentGranted", "ConsentDenied"]);

    // Answered requests can be filtered by status.
    let answered = app.get("/api/v1/consent-requests?status=answered", &t.admin.access).await;
    assert_eq!(answered.body["requests"].as_array().unwrap().len(), 1, "{answered:?}");
    let pending = app.get("/api/v1/consent-requests?status=pending", &t.admin.access).await;
    assert_eq!(pending.body["requests"], json!([]));
}

#[tokio::test]
async fn who_may_request_and_for_whom() {
    let app = TestApp::spawn().await;
    let t = app.tenant("req").await;
    let kid = app.user(&t, "student", "kit", Some(&born_years_ago(&app, 9))).await;
    let other_kid = app.user(&t, "student", "ola", Some(&born_years_ago(&app, 9))).await;
    let adult = app.user(&t, "student", "ada", Some("1990-01-01")).await;
    let tutor = app.user(&t, "tutor", "tom", None).await;
    let mum = app.user(&t, "parent", "mum", None).await;
    let dad = app.user(&t, "parent", "dad", None).await;
    let stranger = app.user(&t, "parent", "stranger", None).await;
    let request = async |token: &str, body: Value| app.post("/api/v1/consent-requests", Some(token), body).await;
    let admin = t.admin.access.as_str();

    // No linked parent yet.
    let res = request(admin, json!({"child_id": kid.user_id, "scopes": ["chat"]})).await;
    assert_eq!((res.status, res.code()), (StatusCode::UNPROCESSABLE_ENTITY, "parent_required"), "{res:?}");
    app.link(&t, &mum, &kid).await;
    app.link(&t, &dad, &kid).await;
    // Two linked parents: the request must name one.
    let res = request(admin, json!({"child_id": kid.user_id, "scopes": ["chat"]})).await;
    assert_eq!((res.status, res.code()), (StatusCode::UNPROCESSABLE_ENTITY, "parent_required"), "{res:?}");
    let res = request(admin, json!({"child_id": kid.user_id, "scopes": ["chat"], "parent_id": stranger.user_id})).await;
    assert_eq!((res.status, res.code()), (StatusCode::UNPROCESSABLE_ENTITY, "parent_not_linked"), "{res:?}");
    let res = request(admin, json!({"child_id": kid.user_id, "scopes": ["chat"], "parent_id": tutor.user_id})).await;
    assert_eq!((res.status, res.code()), (StatusCode::UNPROCESSABLE_ENTITY, "not_a_parent"), "{res:?}");
    let nobody = uuid::Uuid::now_v7().to_string();
    let res = request(admin, json!({"child_id": kid.user_id, "scopes": ["chat"], "parent_id": nobody})).await;
    assert_eq!((res.status, res.code()), (StatusCode::NOT_FOUND, "user_not_found"), "{res:?}");
    let res = request(admin, json!({"child_id": nobody, "scopes": ["chat"]})).await;
    assert_eq!((res.status, res.code()), (StatusCode::NOT_FOUND, "user_not_found"), "{res:?}");

    // Only minors, and only students, need consent.
    let res = request(admin, json!({"child_id": adult.user_id, "scopes": ["chat"]})).await;
    assert_eq!((res.status, res.code()), (StatusCode::UNPROCESSABLE_ENTITY, "not_a_minor"), "{res:?}");
    let res = request(admin, json!({"child_id": tutor.user_id, "scopes": ["chat"]})).await;
    assert_eq!((res.status, res.code()), (StatusCode::UNPROCESSABLE_ENTITY, "not_a_student"), "{res:?}");
    let res = request(admin, json!({"child_id": kid.user_id, "scopes": []})).await;
    assert_eq!((res.status, res.code()), (StatusCode::UNPROCESSABLE_ENTITY, "scopes_required"), "{res:?}");
    let res = request(admin, json!({"child_id": kid.user_id, "scopes": ["telepathy"]})).await;
    assert_eq!((res.status, res.code()), (StatusCode::UNPROCESSABLE_ENTITY, "invalid_body"), "{res:?}");

    // Staff or the child themself may ask; another student, a parent or a tutor may not.
    let body = json!({"child_id": kid.user_id, "scopes": ["chat"], "parent_id": dad.user_id});
    for who in [&other_kid, &mum, &tutor] {
        let res = request(&who.access, body.clone()).await;
        assert_eq!((res.status, res.code()), (StatusCode::FORBIDDEN, "forbidden"), "{res:?}");
    }
    let res = request(&kid.access, body.clone()).await;
    assert_eq!(res.status, StatusCode::CREATED, "{res:?}");
    assert_eq!((&res.body["requested_by"], &res.body["parent_id"]), (&json!(kid.user_id), &json!(dad.user_id)));
    let by_kid = res.body["id"].as_str().unwrap().to_string();
    let res = request(admin, json!({"child_id": kid.user_id, "scopes": ["recording"], "parent_id": mum.user_id})).await;
    assert_eq!(res.status, StatusCode::CREATED, "{res:?}");
    let to_mum = res.body["id"].as_str().unwrap().to_string();

    // Each parent sees the requests addressed to them; staff see all and filter; students see none.
    let ids = |res: &crate::helpers::Res| -> Vec<String> {
        res.body["requests"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap().to_string()).collect()
    };
    assert_eq!(ids(&app.get("/api/v1/consent-requests", &dad.access).await), [by_kid.as_str()]);
    assert_eq!(ids(&app.get("/api/v1/consent-requests", &mum.access).await), [to_mum.as_str()]);
    assert_eq!(ids(&app.get("/api/v1/consent-requests", &stranger.access).await), Vec::<String>::new());
    assert_eq!(
        ids(&app.get("/api/v1/consent-requests", admin).await),
        [to_mum.as_str(), by_kid.as_str()],
        "newest first"
    );
    let page = app.get("/api/v1/consent-requests?limit=1", admin).await;
    assert_eq!(ids(&page), [to_mum.as_str()]);
    let older = app
        .get(&format!("/api/v1/consent-requests?before={}", page.body["next_before"].as_str().unwrap()), admin)
        .await;
    assert_eq!(ids(&older), [by_kid.as_str()]);
    let filtered = app.get(&format!("/api/v1/consent-requests?child_id={}", other_kid.user_id), admin).await;
    assert_eq!(ids(&filtered), Vec::<String>::new());
    let res = app.get("/api/v1/consent-requests", &kid.access).await;
    assert_eq!((res.status, res.code()), (StatusCode::FORBIDDEN, "forbidden"));

    // Only the addressed parent answers: not the other parent, not an admin, not the child.
    let decide = format!("/api/v1/consent-requests/{by_kid}/decision");
    let grant = json!({"grant": ["chat"], "method": "credit_card"});
    for who in [&mum.access, &t.admin.access, &kid.access] {
        let res = app.post(&decide, Some(who), grant.clone()).await;
        assert_eq!((res.status, res.code()), (StatusCode::FORBIDDEN, "not_addressed_parent"), "{res:?}");
    }
    let res = app.post(&decide, Some(&dad.access), json!({"grant": ["live_video"], "method": "credit_card"})).await;
    assert_eq!((res.status, res.code()), (StatusCode::UNPROCESSABLE_ENTITY, "scope_not_requested"), "{res:?}");
    let res = app.post(&decide, Some(&dad.access), grant).await;
    assert_eq!(res.status, StatusCode::OK, "{res:?}");

    // Consents are visible to staff, the child and linked parents only.
    let path = format!("/api/v1/users/{}/consents", kid.user_id);
    assert_eq!(app.get(&path, &mum.access).await.status, StatusCode::OK);
    for who in [&stranger, &other_kid, &tutor] {
        assert_eq!(app.get(&path, &who.access).await.status, StatusCode::FORBIDDEN);
    }
}

#[tokio::test]
async fn tenants_are_isolated() {
    let app = TestApp::spawn().await;
    let a = app.tenant("alpha").await;
    let b = app.tenant("beta").await;
    let kid = app.user(&a, "student", "kid", Some(&born_years_ago(&app, 7))).await;
    let mum = app.user(&a, "parent", "mum", None).await;
    app.link(&a, &mum, &kid).await;
    let b_kid = app.user(&b, "student", "kid", Some(&born_years_ago(&app, 7))).await;
    let b_parent = app.user(&b, "parent", "pete", None).await;
    app.link(&b, &b_parent, &b_kid).await;

    let res = app
        .post("/api/v1/consent-requests", Some(&a.admin.access), json!({"child_id": kid.user_id, "scopes": ["chat"]}))
        .await;
    assert_eq!(res.status, StatusCode::CREATED, "{res:?}");
    let request_id = res.body["id"].as_str().unwrap().to_string();

    // B can't request for A's child, nor address A's parent, nor see or answer A's request.
    let res = app
        .post("/api/v1/consent-requests", Some(&b.admin.access), json!({"child_id": kid.user_id, "scopes": ["chat"]}))
        .await;
    assert_eq!((res.status, res.code()), (StatusCode::NOT_FOUND, "user_not_found"), "{res:?}");
    let res = app
        .post(
            "/api/v1/consent-requests",
            Some(&b.admin.access),
            json!({"child_id": b_kid.user_id, "scopes": ["chat"], "parent_id": mum.user_id}),
        )
        .await;
    assert_eq!((res.status, res.code()), (StatusCode::NOT_FOUND, "user_not_found"), "{res:?}");
    let res = app
        .post(
            &format!("/api/v1/consent-requests/{request_id}/decision"),
            Some(&b_parent.access),
            json!({"grant": ["chat"], "method": "signed_form"}),
        )
        .await;
    assert_eq!((res.status, res.code()), (StatusCode::NOT_FOUND, "consent_request_not_found"), "{res:?}");
    assert_eq!(app.get("/api/v1/consent-requests", &b.admin.access).await.body["requests"], json!([]));
    assert_eq!(app.get("/api/v1/mailbox", &b.admin.access).await.body["messages"], json!([]));
    let res = app.get(&format!("/api/v1/users/{}/consents", kid.user_id), &b.admin.access).await;
    assert_eq!((res.status, res.code()), (StatusCode::NOT_FOUND, "user_not_found"));
    let res = app
        .post(
            &format!("/api/v1/users/{}/consents/revoke", kid.user_id),
            Some(&b.admin.access),
            json!({"scopes": ["chat"]}),
        )
        .await;
    assert_eq!((res.status, res.code()), (StatusCode::NOT_FOUND, "user_not_found"));
    assert_eq!(app.get("/api/v1/mailbox", &a.admin.access).await.body["messages"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn any_linked_parent_or_an_admin_revokes_every_grant() {
    let app = TestApp::spawn().await;
    let mut events = app.state.outbox.subscribe(256);
    let t = app.tenant("rev").await;
    let kid = app.user(&t, "student", "kid", Some(&born_years_ago(&app, 11))).await;
    let mum = app.user(&t, "parent", "mum", None).await;
    let dad = app.user(&t, "parent", "dad", None).await;
    let stranger = app.user(&t, "parent", "stranger", None).await;
    let staff = app.user(&t, "staff", "sue", None).await;
    app.link(&t, &mum, &kid).await;
    app.link(&t, &dad, &kid).await;
    for parent in [&mum, &dad] {
        let res = app
            .post(
                "/api/v1/consent-requests",
                Some(&t.admin.access),
                json!({"child_id": kid.user_id, "scopes": ["chat", "recording"], "parent_id": parent.user_id}),
            )
            .await;
        let decide = format!("/api/v1/consent-requests/{}/decision", res.body["id"].as_str().unwrap());
        let res = app
            .post(&decide, Some(&parent.access), json!({"grant": ["chat", "recording"], "method": "email_plus"}))
            .await;
        assert_eq!(res.status, StatusCode::OK, "{res:?}");
    }
    let revoke = format!("/api/v1/users/{}/consents/revoke", kid.user_id);
    for who in [&stranger, &kid, &staff] {
        let res = app.post(&revoke, Some(&who.access), json!({"scopes": ["chat"]})).await;
        assert_eq!((res.status, res.code()), (StatusCode::FORBIDDEN, "forbidden"), "{res:?}");
    }
    let res = app.post(&revoke, Some(&dad.access), json!({"scopes": []})).await;
    assert_eq!((res.status, res.code()), (StatusCode::UNPROCESSABLE_ENTITY, "scopes_required"));

    // Dad's revocation ends Mum's grant too: consent is gone, not just one parent's share of it.
    let res = app.post(&revoke, Some(&dad.access), json!({"scopes": ["chat"]})).await;
    assert_eq!(res.status, StatusCode::OK, "{res:?}");
    let records = res.body["records"].as_array().unwrap();
    let chat: Vec<_> = records.iter().filter(|r| r["scope"] == "chat").collect();
    assert_eq!(chat.len(), 2);
    assert!(chat.iter().all(|r| r["status"] == "revoked" && r["decided_by"] == dad.user_id.as_str()), "{records:?}");
    assert_eq!(app.scope_state(&kid, &mum.access, "recording").await["state"], "granted");

    // An admin may revoke too.
    let res = app.post(&revoke, Some(&t.admin.access), json!({"scopes": ["recording", "live_video"]})).await;
    assert_eq!(res.status, StatusCode::OK, "{res:?}");
    assert_eq!(app.scope_state(&kid, &mum.access, "recording").await["state"], "revoked");

    let revoked = app.audit(&t, "consent.revoked").await;
    assert_eq!(revoked.len(), 4, "one entry per parent whose grant ended: {revoked:?}");
    let got = consent_events(&mut events, 8).await;
    let revocations: Vec<_> = got
        .iter()
        .filter_map(|e| match e {
            DomainEvent::ConsentRevoked { parent_id, scopes, .. } => Some((parent_id.to_string(), scopes.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(revocations.len(), 4, "{got:?}");
    for parent in [&mum, &dad] {
        assert!(revocations.contains(&(parent.user_id.clone(), vec![ConsentScope::Chat])), "{revocations:?}");
        assert!(revocations.contains(&(parent.user_id.clone(), vec![ConsentScope::Recording])), "{revocations:?}");
    }
}

#[tokio::test]
async fn ensure_follows_grants_revocations_and_links() {
    let app = TestApp::spawn().await;
    let t = app.tenant("ensure").await;
    let kid = app.user(&t, "student", "kid", Some(&born_years_ago(&app, 10))).await;
    let adult = app.user(&t, "student", "ada", Some("1995-03-03")).await;
    let mum = app.user(&t, "parent", "mum", None).await;
    app.link(&t, &mum, &kid).await;
    let tenant: orchestrator::ids::TenantId = t.id.parse().unwrap();
    let ensure = async |who: &Session, scopes: &[ConsentScope]| {
        let mut conn = app.state.db.pool().acquire().await.unwrap();
        let user =
            users::find(&mut conn, tenant, who.user_id.parse().unwrap(), app.clock.now()).await.unwrap().unwrap();
        consent::ensure(&mut conn, &user, scopes).await.map_err(|e| {
            let e = orchestrator::error::ApiError::from(e);
            (e.status.as_u16(), e.code.into_owned(), e.message)
        })
    };
    use ConsentScope::*;

    assert_eq!(ensure(&adult, &[LiveVideo, Chat, Recording]).await, Ok(()), "adults need no consent");
    assert_eq!(ensure(&kid, &[]).await, Ok(()));
    let (status, code, message) = ensure(&kid, &[Recording, LiveVideo]).await.unwrap_err();
    assert_eq!((status, code.as_str()), (403, "consent_required"));
    assert!(message.contains("live_video, recording"), "{message}");

    let res = app
        .post(
            "/api/v1/consent-requests",
            Some(&t.admin.access),
            json!({"child_id": kid.user_id, "scopes": ["live_video", "chat", "recording"]}),
        )
        .await;
    let decide = format!("/api/v1/consent-requests/{}/decision", res.body["id"].as_str().unwrap());
    assert_eq!(ensure(&kid, &[LiveVideo]).await.unwrap_err().1, "consent_required", "a pending request is not consent");
    let res = app
        .post(
            &decide,
            Some(&mum.access),
            json!({"grant": ["live_video", "chat"], "deny": ["recording"], "method": "government_id"}),
        )
        .await;
    assert_eq!(res.status, StatusCode::OK, "{res:?}");
    assert_eq!(ensure(&kid, &[LiveVideo, Chat]).await, Ok(()));
    let (_, code, message) = ensure(&kid, &[LiveVideo, Recording]).await.unwrap_err();
    assert_eq!(code, "consent_required");
    assert!(message.ends_with(": recording"), "names only what is missing: {message}");

    let res = app
        .post(&format!("/api/v1/users/{}/consents/revoke", kid.user_id), Some(&mum.access), json!({"scopes": ["chat"]}))
        .await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(ensure(&kid, &[LiveVideo]).await, Ok(()));
    assert!(ensure(&kid, &[Chat]).await.unwrap_err().2.ends_with(": chat"));

    // A parent who is no longer linked (there is no unlink endpoint yet) no longer consents.
    sqlx::query("DELETE FROM parent_links WHERE parent_id = $1")
        .bind(&mum.user_id)
        .execute(app.state.db.pool())
        .await
        .unwrap();
    assert_eq!(ensure(&kid, &[LiveVideo]).await.unwrap_err().1, "consent_required");
    assert_eq!(app.scope_state(&kid, &t.admin.access, "live_video").await["state"], "none");

    // With the consent age lowered to ten, the ten-year-old is no longer a minor: no consent needed.
    let res = app
        .request(
            reqwest::Method::PATCH,
            &format!("/api/v1/tenants/{}/settings", t.id),
            Some(&t.admin.access),
            Some(&json!({"consent_age": 10})),
            &[],
        )
        .await;
    assert_eq!(res.status, StatusCode::OK, "{res:?}");
    assert_eq!(ensure(&kid, &[LiveVideo, Chat, Recording]).await, Ok(()));
}

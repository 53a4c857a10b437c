//! Tenants can't reach each other: for every route of the OpenAPI document with an id in its path, the
//! admin of another tenant calls it with the real ids of this tenant's objects (and a body generated from
//! the route's request schema) and gets 403 or 404, never data or an effect. The routes come from the
//! document, so a new route is covered the day it is added; an id kind the fixture doesn't have fails the
//! test until it does. Nothing of the first tenant may change.

use std::collections::BTreeMap;

use chrono::{Duration, Utc};
use reqwest::{Method, StatusCode};
use serde_json::{Map, Value, json};

use crate::{bookings::market_with, helpers::TestApp};

/// The first tenant's objects, by the collection their id belongs to.
struct Fixture {
    ids: BTreeMap<&'static str, String>,
}

impl Fixture {
    fn id(&self, kind: &str) -> &str {
        self.ids.get(kind).unwrap_or_else(|| panic!("the fixture has no {kind} id: add one for the new route"))
    }

    /// The id for the path parameter `param` that follows `segment` (`/classes/{id}` → a class).
    fn for_param(&self, segment: &str, param: &str) -> &str {
        match param {
            "lesson_id" => self.id("lesson"),
            "student_id" => self.id("student"),
            "booking_id" => self.id("booking"),
            _ => self.id(match segment {
                // The feed's token is its only credential: an unknown one is 404 for everyone.
                "calendar" => "calendar_token",
                "jobs" => "job",
                "bookings" => "booking",
                "classes" => "class",
                "consent-requests" => "consent_request",
                "courses" => "course",
                "enrollments" => "enrollment",
                "meetings" => "meeting",
                "packages" => "package",
                "payments" => "payment",
                "tenants" => "tenant",
                "tutors" => "tutor",
                "users" => "student",
                other => panic!("no fixture id for `/{other}/{{{param}}}`: add one for the new route"),
            }),
        }
    }
}

async fn ok(app: &TestApp, method: Method, path: &str, token: &str, body: Value) -> Value {
    let res = app.request(method, path, Some(token), Some(&body), &[]).await;
    assert!(res.status.is_success(), "fixture {path}: {res:?}");
    res.body
}

/// The first tenant: a tutor with availability, a confirmed and paid booking, a package, a course and an
/// active class with an enrolled student, a minor with a parent and a consent request, and queued jobs.
async fn first_tenant() -> (crate::bookings::Market, Fixture) {
    let m = market_with("victim", |_| {}).await;
    let app = &m.app;
    let admin = m.t.admin.access.clone();
    let mut ids = BTreeMap::new();
    ids.insert("tenant", m.t.id.clone());
    ids.insert("calendar_token", format!("{}.ics", uuid::Uuid::new_v4().simple()));
    ids.insert("tutor", m.tutor.user_id.clone());
    ids.insert("student", m.student.user_id.clone());

    let slots = m.slots(&m.student, "2027-03-01", "2027-03-10", "Europe/Berlin", 60).await;
    let start = slots[0]["starts_at"].as_str().unwrap().to_string();
    let held = m.hold(&m.student, &start, 60).await;
    let booking = held.body["id"].as_str().unwrap_or_else(|| panic!("hold: {held:?}")).to_string();
    let co = ok(app, Method::POST, &format!("/api/v1/bookings/{booking}/checkout"), &m.student.access, json!({})).await;
    let payment = co["payment"]["id"].as_str().unwrap().to_string();
    ok(app, Method::POST, &format!("/api/v1/payments/{payment}/received"), &admin, json!({"method": "bank_transfer"}))
        .await;
    ids.insert("payment", payment);
    ids.insert("booking", booking);
    let pkg = ok(
        app,
        Method::POST,
        "/api/v1/packages",
        &m.student.access,
        json!({"tutor_id": m.tutor.user_id, "minutes": 60, "lessons": 3}),
    )
    .await;
    ids.insert("package", pkg["package"]["id"].as_str().unwrap().to_string());

    let course = ok(
        app,
        Method::POST,
        "/api/v1/courses",
        &admin,
        json!({"title": "Algebra", "lessons": [{"title": "One"}, {"title": "Two"}]}),
    )
    .await;
    ids.insert("course", course["id"].as_str().unwrap().to_string());
    ids.insert("lesson", course["lessons"][0]["id"].as_str().unwrap().to_string());
    let s = app.clock_now() + Duration::minutes(5);
    let class = ok(
        app,
        Method::POST,
        "/api/v1/classes",
        &admin,
        json!({"kind": "group", "title": "Algebra 1", "course_id": course["id"], "instructor_id": m.tutor.user_id,
               "total_meetings": 2, "capacity": 10, "timezone": "Europe/Berlin",
               "meetings": [{"starts_at": s, "ends_at": s + Duration::hours(1)},
                            {"starts_at": s + Duration::days(1), "ends_at": s + Duration::days(1) + Duration::hours(1)}]}),
    )
    .await;
    let class_id = class["id"].as_str().unwrap().to_string();
    ids.insert("meeting", class["meetings"][0]["id"].as_str().unwrap().to_string());
    let enrollment = ok(
        app,
        Method::POST,
        &format!("/api/v1/classes/{class_id}/enrollments"),
        &admin,
        json!({"student_id": m.student.user_id}),
    )
    .await;
    ids.insert("enrollment", enrollment["id"].as_str().unwrap().to_string());
    ok(app, Method::POST, &format!("/api/v1/classes/{class_id}/activate"), &admin, json!({})).await;
    ids.insert("class", class_id);

    let (child, _parent) = app.minor_with_parent(&m.t, "kid", "mum").await;
    let req = ok(
        app,
        Method::POST,
        "/api/v1/consent-requests",
        &admin,
        json!({"child_id": child.user_id, "scopes": ["live_video"]}),
    )
    .await;
    ids.insert("consent_request", req["id"].as_str().unwrap().to_string());
    let jobs = app.get("/api/v1/admin/jobs", &admin).await;
    let job = jobs.body["jobs"][0]["id"].as_i64().unwrap_or_else(|| panic!("queued jobs: {jobs:?}"));
    ids.insert("job", job.to_string());
    for (kind, id) in &ids {
        assert!(!id.is_empty(), "fixture {kind} id");
    }
    (m, Fixture { ids })
}

/// A value of `schema` (resolved against the document's components) that its extractor accepts: ids are
/// the first tenant's where the field names one, so the handler must refuse by tenant, not by shape.
fn example(doc: &Value, schema: &Value, name: &str, f: &Fixture) -> Value {
    if let Some(r) = schema["$ref"].as_str() {
        let key = r.rsplit('/').next().unwrap();
        return example(doc, &doc["components"]["schemas"][key], name, f);
    }
    for combo in ["oneOf", "anyOf", "allOf"] {
        if let Some(first) = schema[combo].as_array().and_then(|a| a.iter().find(|s| s["type"] != "null")) {
            return example(doc, first, name, f);
        }
    }
    if let Some(values) = schema["enum"].as_array() {
        return values[0].clone();
    }
    let ty = match &schema["type"] {
        Value::Array(types) => types.iter().find(|t| *t != "null").cloned().unwrap_or(Value::Null),
        t => t.clone(),
    };
    match (ty.as_str().unwrap_or("object"), schema["format"].as_str()) {
        ("object", _) => {
            let mut out = Map::new();
            let required: Vec<&str> =
                schema["required"].as_array().map(|r| r.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
            if let Some(props) = schema["properties"].as_object() {
                for (k, v) in props {
                    if required.contains(&k.as_str()) {
                        out.insert(k.clone(), example(doc, v, k, f));
                    }
                }
            }
            Value::Object(out)
        }
        ("array", _) => json!([example(doc, &schema["items"], name, f)]),
        ("integer", _) if name == "minutes" => json!(60),
        ("integer", _) => json!(schema["minimum"].as_i64().unwrap_or(0).max(1)),
        ("number", _) => json!(1),
        ("boolean", _) => json!(false),
        ("string", Some("uuid")) => json!(match name {
            "student_id" | "child_id" | "user_id" => f.id("student"),
            "tutor_id" | "instructor_id" => f.id("tutor"),
            "lesson_id" => f.id("lesson"),
            "course_id" => f.id("course"),
            _ => f.id("student"),
        }),
        ("string", Some("date-time")) if name.starts_with("end") => json!(soon() + Duration::hours(1)),
        ("string", Some("date-time")) => json!(soon()),
        ("string", Some("date")) => json!(if name == "to" { "2027-03-08" } else { "2027-03-01" }),
        // Plain strings by what they name, so that the value is also valid where the server checks it.
        _ => json!(match name {
            "timezone" | "tz" => "Europe/Berlin",
            "currency" => "EUR",
            "start" => "09:00",
            "end" => "12:00",
            "weekday" => "mon",
            "from" => "2027-03-01",
            "to" => "2027-03-08",
            _ => "reason given",
        }),
    }
}

/// Two days after the fixture's epoch (2027-03-01), inside the tutor's horizon.
fn soon() -> chrono::DateTime<Utc> {
    crate::bookings::at("2027-03-03T10:00:00Z")
}

/// Bodies whose rules a schema doesn't say (at least one of two optional lists, say): valid except for the
/// tenant.
const OVERRIDES: &[(&str, &str, &str)] =
    &[("post", "/api/v1/consent-requests/{id}/decision", r#"{"grant": ["live_video"], "method": "credit_card"}"#)];

fn method(m: &str) -> Option<Method> {
    Some(match m {
        "get" => Method::GET,
        "post" => Method::POST,
        "put" => Method::PUT,
        "patch" => Method::PATCH,
        "delete" => Method::DELETE,
        _ => return None,
    })
}

/// What the first tenant's admin sees of its own objects, to prove nothing changed.
async fn snapshot(app: &TestApp, token: &str, f: &Fixture) -> Vec<Value> {
    let mut out = Vec::new();
    for path in [
        format!("/api/v1/bookings/{}", f.id("booking")),
        format!("/api/v1/classes/{}", f.id("class")),
        format!("/api/v1/classes/{}/roster", f.id("class")),
        format!("/api/v1/enrollments/{}/ledger", f.id("enrollment")),
        format!("/api/v1/tenants/{}", f.id("tenant")),
        format!("/api/v1/tenants/{}/booking-policy", f.id("tenant")),
        format!("/api/v1/tutors/{}/availability", f.id("tutor")),
        format!("/api/v1/users/{}", f.id("student")),
        format!("/api/v1/packages/{}", f.id("package")),
        "/api/v1/consent-requests".to_string(),
        "/api/v1/users".to_string(),
    ] {
        let res = app.get(&path, token).await;
        assert_eq!(res.status, StatusCode::OK, "{path}: {res:?}");
        out.push(res.body);
    }
    out
}

#[tokio::test]
async fn another_tenants_admin_gets_403_or_404_on_every_route_with_an_id() {
    let (m, f) = first_tenant().await;
    let app = &m.app;
    let before = snapshot(app, &m.t.admin.access, &f).await;
    let attacker = app.tenant("attacker").await;
    let doc = app.request(Method::GET, "/api/v1/openapi.json", None, None, &[]).await.body;

    let mut checked = 0;
    let mut leaks = Vec::new();
    for (template, item) in doc["paths"].as_object().unwrap() {
        if !template.contains('{') {
            continue;
        }
        for (m_name, op) in item.as_object().unwrap() {
            let Some(method) = method(m_name) else { continue };
            // Fill each `{param}` with the first tenant's id of the collection before it.
            let mut path = String::new();
            let mut previous = "";
            for segment in template.split('/').filter(|s| !s.is_empty()) {
                let part = match segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                    Some(param) => f.for_param(previous, param).to_string(),
                    None => segment.to_string(),
                };
                path.push('/');
                path.push_str(&part);
                previous = segment;
            }
            // Required query parameters, generated like bodies.
            let query: Vec<String> = op["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|p| p["in"] == "query" && p["required"] == true)
                .map(|p| {
                    let name = p["name"].as_str().unwrap();
                    let v = example(&doc, &p["schema"], name, &f);
                    format!("{name}={}", v.as_str().map(String::from).unwrap_or_else(|| v.to_string()))
                })
                .collect();
            if !query.is_empty() {
                path = format!("{path}?{}", query.join("&"));
            }
            let content = &op["requestBody"]["content"];
            let body = match OVERRIDES.iter().find(|(m, t, _)| *m == m_name.as_str() && t == template) {
                Some((_, _, b)) => Some(serde_json::from_str(b).unwrap()),
                None => content["application/json"]["schema"]
                    .as_object()
                    .map(|s| example(&doc, &Value::Object(s.clone()), "", &f)),
            };
            let res = app.request(method.clone(), &path, Some(&attacker.admin.access), body.as_ref(), &[]).await;
            checked += 1;
            if !matches!(res.status, StatusCode::FORBIDDEN | StatusCode::NOT_FOUND) {
                leaks.push(format!("{method} {template} ({path}) body {body:?} → {res:?}"));
            }
        }
    }
    assert!(leaks.is_empty(), "another tenant's admin got through:\n{}", leaks.join("\n"));
    assert!(checked >= 50, "only {checked} routes with ids in the document");
    assert_eq!(snapshot(app, &m.t.admin.access, &f).await, before, "the first tenant's data changed");
}

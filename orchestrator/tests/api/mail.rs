//! Mail that reaches people, through a real SMTP server (aiosmtpd, `smtp_sink.py`, started per test on a free
//! port): the consent request with its link, a booking's confirmation, move, reminder and cancellation with
//! `.ics` in each recipient's own zone, the payment receipt, a server that is down (retried, visible, delivered
//! when it returns; dead after the last attempt and retried by staff), STARTTLS with a password; and the
//! private calendar feed.
//!
//! aiosmtpd comes from PyPI (`.ci/run` installs it); without it these tests are skipped, except under
//! `CI=true`, where that is a failure.

use std::{
    io::{BufRead, BufReader, Read},
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::Duration as StdDuration,
};

use chrono::Duration;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::{
    bookings::{Market, at, market_with},
    helpers::{Session, TestApp},
};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/api/smtp_sink.py");
const SITE: &str = "https://school.test";

/// Whether aiosmtpd can run here; under CI its absence fails the test.
fn smtp_available() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import aiosmtpd"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert_ne!(
            std::env::var("CI").as_deref(),
            Ok("true"),
            "CI must run the mail tests: python3 -m pip install aiosmtpd"
        );
        eprintln!("mail test skipped: python3 -m pip install aiosmtpd");
    }
    ok
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A running `smtp_sink.py`; killed when dropped. Messages stay in its directory.
struct Sink {
    child: Child,
    dir: PathBuf,
    port: u16,
}

impl Sink {
    fn start(port: u16, dir: PathBuf, extra: &[&str]) -> Sink {
        let mut child = Command::new("python3")
            .arg(SCRIPT)
            .args(["--port", &port.to_string(), "--dir", dir.to_str().unwrap()])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("python3 runs");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        if line.trim() != "ready" {
            let mut err = String::new();
            child.stderr.take().unwrap().read_to_string(&mut err).ok();
            let _ = child.kill();
            panic!("smtp_sink.py didn't start: {line}{err}");
        }
        Sink { child, dir, port }
    }

    fn messages(&self) -> Vec<Value> {
        let mut out: Vec<(std::time::SystemTime, Value)> = std::fs::read_dir(&self.dir)
            .unwrap()
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
            .map(|e| {
                let modified = e.metadata().unwrap().modified().unwrap();
                (modified, serde_json::from_slice(&std::fs::read(e.path()).unwrap()).unwrap())
            })
            .collect();
        out.sort_by_key(|m| m.0);
        out.into_iter().map(|m| m.1).collect()
    }

    /// Waits for the `n`th message to `to` whose subject contains `subject`.
    async fn wait(&self, to: &str, subject: &str, n: usize) -> Value {
        let deadline = tokio::time::Instant::now() + StdDuration::from_secs(15);
        loop {
            let found: Vec<Value> = self
                .messages()
                .into_iter()
                .filter(|m| m["rcpt_tos"][0] == to && header(m, "Subject").contains(subject))
                .collect();
            if found.len() >= n {
                return found[n - 1].clone();
            }
            let seen: Vec<String> =
                self.messages().iter().map(|m| format!("{} {}", m["rcpt_tos"], header(m, "Subject"))).collect();
            assert!(tokio::time::Instant::now() < deadline, "no {subject:?} mail #{n} to {to}; got {seen:?}");
            tokio::time::sleep(StdDuration::from_millis(25)).await;
        }
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn header(m: &Value, name: &str) -> String {
    m["headers"][name].as_str().unwrap_or("").to_string()
}

/// The decoded text of the first part of `content_type`.
fn part<'a>(m: &'a Value, content_type: &str) -> &'a str {
    m["parts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["content_type"] == content_type)
        .and_then(|p| p["text"].as_str())
        .unwrap_or_else(|| panic!("no {content_type} part in {m}"))
}

fn content_types(m: &Value) -> Vec<&str> {
    m["parts"].as_array().unwrap().iter().map(|p| p["content_type"].as_str().unwrap()).collect()
}

/// Unfolded logical lines of an iCalendar text.
fn ics_lines(text: &str) -> Vec<String> {
    text.replace("\r\n ", "").replace("\n ", "").lines().map(|l| l.trim_end_matches('\r').to_string()).collect()
}

/// The first `name` property of the first event.
fn ics_value(lines: &[String], name: &str) -> String {
    lines
        .iter()
        .skip_while(|l| *l != "BEGIN:VEVENT")
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with([':', ';']))
        .unwrap_or_else(|| panic!("no {name} in {lines:?}"))
        .to_string()
}

fn smtp_config(c: &mut orchestrator::config::Config, port: u16) {
    c.smtp_url = Some(orchestrator::config::Secret::new(format!("smtp://127.0.0.1:{port}")));
    c.mail_from = "Maple School <no-reply@school.test>".into();
    c.public_url = SITE.into();
    c.jobs_poll_interval_ms = 20;
    c.smtp_timeout_secs = 5;
}

async fn mailbox(app: &TestApp, staff: &Session, user: &str) -> Vec<Value> {
    let res = app.get(&format!("/api/v1/mailbox?to_user_id={user}"), &staff.access).await;
    assert_eq!(res.status, StatusCode::OK, "{res:?}");
    res.body["messages"].as_array().unwrap().clone()
}

/// Waits until the newest mail to `user` has delivery status `status`; returns that mail.
async fn wait_delivery(app: &TestApp, staff: &Session, user: &str, status: &str, attempts: i64) -> Value {
    let deadline = tokio::time::Instant::now() + StdDuration::from_secs(15);
    loop {
        let mail = mailbox(app, staff, user).await;
        if let Some(m) = mail.first()
            && m["delivery"]["status"] == status
            && m["delivery"]["attempts"] == attempts
        {
            return m.clone();
        }
        assert!(tokio::time::Instant::now() < deadline, "no {status} delivery after {attempts} attempts: {mail:?}");
        tokio::time::sleep(StdDuration::from_millis(25)).await;
    }
}

async fn request_consent(app: &TestApp, staff: &Session, child: &Session) -> String {
    let res = app
        .post(
            "/api/v1/consent-requests",
            Some(&staff.access),
            json!({"child_id": child.user_id, "scopes": ["live_video"]}),
        )
        .await;
    assert_eq!(res.status, StatusCode::CREATED, "{res:?}");
    res.body["id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn the_consent_request_reaches_the_parent_over_smtp_with_the_link_to_their_consent_page() {
    if !smtp_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::start(free_port(), dir.path().into(), &[]);
    let app = TestApp::spawn_with(|c| smtp_config(c, sink.port)).await;
    let t = app.tenant("maple").await;
    let (kid, mum) = app.minor_with_parent(&t, "kim", "mum").await;
    let id = request_consent(&app, &t.admin, &kid).await;

    let m = sink.wait("mum@maple.test", "Consent needed for kim", 1).await;
    assert_eq!(m["mail_from"], "no-reply@school.test");
    assert_eq!(header(&m, "From"), "Maple School <no-reply@school.test>");
    assert_eq!(content_types(&m), ["multipart/alternative", "text/plain", "text/html"], "{m}");
    let link = format!("{SITE}/?tenant=maple#/consent/{id}");
    let text = part(&m, "text/plain");
    assert!(
        text.starts_with("Hello mum,")
            && text.contains(&link)
            && text.contains("live video lessons")
            && text.contains("maple school"),
        "{text}"
    );
    assert!(part(&m, "text/html").contains(&format!("href=\"{link}\"")), "{m}");
    assert!(header(&m, "Message-ID").ends_with("@school.test>"), "{m}");

    // The mailbox row is the record: staff and the parent see it sent.
    let mail = wait_delivery(&app, &t.admin, &mum.user_id, "sent", 0).await;
    assert!(mail["delivery"]["sent_at"].is_string() && mail["delivery"]["job_id"].is_i64(), "{mail}");
    assert!(mail["html"].as_str().unwrap().contains(&link));
    let own = app.get("/api/v1/me/mailbox", &mum.access).await;
    assert_eq!(own.body["messages"][0]["delivery"]["status"], "sent", "{own:?}");
    let done = app.get("/api/v1/admin/jobs?kind=mail.send&status=done", &t.admin.access).await;
    assert_eq!(done.body["jobs"].as_array().map(Vec::len), Some(1), "{done:?}");
}

#[tokio::test]
async fn lesson_mail_carries_an_ics_in_each_recipients_own_zone() {
    if !smtp_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::start(free_port(), dir.path().into(), &[]);
    let port = sink.port;
    let m: Market = market_with("zones", move |c| smtp_config(c, port)).await;
    let (tutor_mail, student_mail) = ("tutor@zones.test", "student@zones.test");
    // The student lives in New York; the tutor set no zone, so theirs is their availability's (Berlin).
    let res = m
        .app
        .request(
            Method::PATCH,
            "/api/v1/me",
            Some(&m.student.access),
            Some(&json!({"timezone": "America/New_York"})),
            &[],
        )
        .await;
    assert_eq!((res.status, res.body["timezone"].as_str()), (StatusCode::OK, Some("America/New_York")), "{res:?}");

    // Wednesday 3 March 2027, 08:00 UTC: 09:00 in Berlin, 03:00 in New York.
    let id = m.book_and_pay(&m.student, "2027-03-03T08:00:00Z", 60).await;
    let uid = format!("UID:booking-{id}@school.test");
    let to_tutor = sink.wait(tutor_mail, "Lesson confirmed", 1).await;
    let to_student = sink.wait(student_mail, "Lesson confirmed", 1).await;
    for (mail, start, end, zone) in [
        (&to_tutor, "20270303T090000", "20270303T100000", "Europe/Berlin"),
        (&to_student, "20270303T030000", "20270303T040000", "America/New_York"),
    ] {
        assert_eq!(
            content_types(mail),
            ["multipart/mixed", "multipart/alternative", "text/plain", "text/html", "text/calendar"],
            "{mail}"
        );
        let cal = mail["parts"].as_array().unwrap().iter().find(|p| p["content_type"] == "text/calendar").unwrap();
        assert_eq!(cal["params"]["method"], "REQUEST", "{cal}");
        assert_eq!(cal["filename"], "invite.ics");
        let lines = ics_lines(cal["text"].as_str().unwrap());
        assert!(lines.contains(&"METHOD:REQUEST".to_string()) && lines.contains(&uid), "{lines:?}");
        assert_eq!(ics_value(&lines, "DTSTART"), format!("DTSTART;TZID={zone}:{start}"));
        assert_eq!(ics_value(&lines, "DTEND"), format!("DTEND;TZID={zone}:{end}"));
        assert!(lines.contains(&format!("TZID:{zone}")), "a VTIMEZONE for the TZID: {lines:?}");
        assert!(lines.iter().any(|l| l.starts_with("ORGANIZER;CN=\"Maple School\":mailto:no-reply@school.test")));
    }
    let text = part(&to_student, "text/plain");
    assert!(text.contains("Wednesday 3 March 2027, 03:00–04:00 EST (America/New_York)"), "{text}");
    assert!(
        text.contains("Your lesson with tutor") && text.contains(&format!("{SITE}/?tenant=zones#/bookings/{id}")),
        "{text}"
    );
    assert!(part(&to_tutor, "text/plain").contains("09:00–10:00 CET (Europe/Berlin)"));
    let seq = |mail: &Value| -> i64 {
        let cal = mail["parts"].as_array().unwrap().iter().find(|p| p["content_type"] == "text/calendar").unwrap();
        ics_value(&ics_lines(cal["text"].as_str().unwrap()), "SEQUENCE")["SEQUENCE:".len()..].parse().unwrap()
    };
    let receipt = sink.wait(student_mail, "Payment received: 35.00 EUR", 1).await;
    assert!(part(&receipt, "text/plain").contains("The lesson is confirmed."), "{receipt}");

    // Moved to Monday 8 March (New York still on EST): the same UID, a higher SEQUENCE, the new time.
    let res = m
        .app
        .post(
            &format!("/api/v1/bookings/{id}/reschedule"),
            Some(&m.student.access),
            json!({"starts_at": "2027-03-08T08:00:00Z"}),
        )
        .await;
    assert_eq!(res.status, StatusCode::OK, "{res:?}");
    let moved = sink.wait(student_mail, "Lesson moved", 1).await;
    let cal = ics_lines(part(&moved, "text/calendar"));
    assert!(cal.contains(&uid) && cal.contains(&"METHOD:REQUEST".to_string()));
    assert_eq!(ics_value(&cal, "DTSTART"), "DTSTART;TZID=America/New_York:20270308T030000");
    assert!(seq(&moved) > seq(&to_student), "a later SEQUENCE");
    assert!(part(&moved, "text/plain").contains("from Wednesday 3 March 2027, 03:00 EST (America/New_York)"));

    // The reminder a day before, on each reader's clock.
    m.app.advance(at("2027-03-07T08:00:00Z") - m.app.clock_now());
    let r = sink.wait(student_mail, "Reminder: your lesson starts in 1 day", 1).await;
    assert!(part(&r, "text/plain").contains("Monday 8 March 2027, 03:00–04:00 EST (America/New_York)"), "{r}");
    let r = sink.wait(tutor_mail, "Reminder: your lesson starts in 1 day", 1).await;
    assert!(part(&r, "text/plain").contains("Monday 8 March 2027, 09:00–10:00 CET (Europe/Berlin)"), "{r}");

    // The tutor cancels: METHOD:CANCEL for the same UID, a higher SEQUENCE still; the student hears of the refund.
    m.app.advance(Duration::hours(1));
    let res =
        m.app.post(&format!("/api/v1/bookings/{id}/cancel"), Some(&m.tutor.access), json!({"reason": "ill"})).await;
    assert_eq!(res.status, StatusCode::OK, "{res:?}");
    let cancelled = sink.wait(student_mail, "Lesson cancelled", 1).await;
    let cal_part =
        cancelled["parts"].as_array().unwrap().iter().find(|p| p["content_type"] == "text/calendar").unwrap().clone();
    assert_eq!(
        (cal_part["params"]["method"].as_str(), cal_part["filename"].as_str()),
        (Some("CANCEL"), Some("cancel.ics"))
    );
    let cal = ics_lines(cal_part["text"].as_str().unwrap());
    assert!(
        cal.contains(&uid)
            && cal.contains(&"METHOD:CANCEL".to_string())
            && cal.contains(&"STATUS:CANCELLED".to_string())
    );
    assert!(seq(&cancelled) > seq(&moved));
    let text = part(&cancelled, "text/plain");
    assert!(text.contains("was cancelled by tutor") && text.contains("Reason given: ill"), "{text}");
    assert!(text.contains("A refund of 35.00 EUR is on its way."), "{text}");
    sink.wait(tutor_mail, "Lesson cancelled", 1).await;
}

#[tokio::test]
async fn a_send_that_fails_is_retried_visibly_and_delivered_when_the_server_returns() {
    if !smtp_available() {
        return;
    }
    let port = free_port(); // nothing listens there yet
    let app = TestApp::spawn_with(|c| {
        smtp_config(c, port);
        c.jobs_max_attempts = 3;
        c.jobs_backoff_base_secs = 5;
    })
    .await;
    let t = app.tenant("downtime").await;
    let (kid, mum) = app.minor_with_parent(&t, "kim", "mum").await;
    request_consent(&app, &t.admin, &kid).await;

    // The request succeeded; the mail waits, with the reason, for its next attempt.
    let mail = wait_delivery(&app, &t.admin, &mum.user_id, "retrying", 1).await;
    let error = mail["delivery"]["last_error"].as_str().unwrap();
    assert!(error.contains("SMTP") && error.to_lowercase().contains("refused"), "{error}");
    assert!(mail["delivery"]["next_attempt_at"].is_string() && mail["delivery"]["sent_at"].is_null(), "{mail}");
    app.advance(Duration::seconds(6));
    wait_delivery(&app, &t.admin, &mum.user_id, "retrying", 2).await;

    // The server comes back: the next attempt delivers it.
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::start(port, dir.path().into(), &[]);
    app.advance(Duration::seconds(11));
    sink.wait("mum@downtime.test", "Consent needed", 1).await;
    let mail = wait_delivery(&app, &t.admin, &mum.user_id, "sent", 2).await;
    assert!(mail["delivery"]["last_error"].as_str().unwrap().contains("SMTP"), "the last failure is kept: {mail}");

    // Down again for longer than the retries last: the mail fails, the job is among the failed ones, and
    // staff retry it once the server is back.
    drop(sink);
    let (kid2, dad) = app.minor_with_parent(&t, "lou", "dad").await;
    request_consent(&app, &t.admin, &kid2).await;
    wait_delivery(&app, &t.admin, &dad.user_id, "retrying", 1).await;
    app.advance(Duration::seconds(6));
    wait_delivery(&app, &t.admin, &dad.user_id, "retrying", 2).await;
    app.advance(Duration::seconds(11));
    let mail = wait_delivery(&app, &t.admin, &dad.user_id, "failed", 3).await;
    let dead = app.get("/api/v1/admin/jobs?kind=mail.send&status=dead", &t.admin.access).await;
    let job = dead.body["jobs"][0].clone();
    assert_eq!(job["id"], mail["delivery"]["job_id"], "{dead:?}");
    let sink = Sink::start(port, dir.path().into(), &[]);
    let res = app.post(&format!("/api/v1/admin/jobs/{}/retry", job["id"]), Some(&t.admin.access), json!({})).await;
    assert_eq!(res.status, StatusCode::OK, "{res:?}");
    sink.wait("dad@downtime.test", "Consent needed for lou", 1).await;
    wait_delivery(&app, &t.admin, &dad.user_id, "sent", 0).await;
}

#[tokio::test]
async fn starttls_with_a_password_to_a_server_with_a_private_ca() {
    if !smtp_available() {
        return;
    }
    // A private CA and the server's certificate, signed by it, for 127.0.0.1.
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    let (ca, cert, key) = (file("ca.pem"), file("cert.pem"), file("key.pem"));
    std::fs::write(
        file("ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    for args in [
        [
            &["req", "-x509"][..],
            &ec,
            &["-days", "2", "-subj", "/CN=liveclass test CA", "-keyout", &file("ca.key"), "-out", &ca],
        ]
        .concat(),
        [&["req"][..], &ec, &["-subj", "/CN=127.0.0.1", "-keyout", &key, "-out", &file("csr")]].concat(),
        ["x509", "-req", "-in", &file("csr"), "-CA", &ca, "-CAkey", &file("ca.key"), "-set_serial", "1", "-days", "2"]
            .into_iter()
            .chain(["-extfile", &file("ext"), "-out", &cert])
            .collect(),
    ] {
        let out = Command::new("openssl").args(&args).output().expect("openssl runs");
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    let mail_dir = dir.path().join("mail");
    std::fs::create_dir(&mail_dir).unwrap();
    let args = ["--tls-cert", cert.as_str(), "--tls-key", key.as_str(), "--user", "mailer:s3cr@t"];
    let sink = Sink::start(free_port(), mail_dir, &args);
    let port = sink.port;
    let app = TestApp::spawn_with(|c| {
        smtp_config(c, port);
        c.smtp_url =
            Some(orchestrator::config::Secret::new(format!("smtp://mailer:s3cr%40t@127.0.0.1:{port}?tls=starttls")));
        c.smtp_ca_file = Some(ca.clone().into());
    })
    .await;
    let t = app.tenant("secure").await;
    let (kid, mum) = app.minor_with_parent(&t, "kim", "mum").await;
    request_consent(&app, &t.admin, &kid).await;
    wait_delivery(&app, &t.admin, &mum.user_id, "sent", 0).await;
    let m = sink.wait("mum@secure.test", "Consent needed", 1).await;
    assert_eq!((m["tls"].as_bool(), m["authenticated"].as_bool()), (Some(true), Some(true)), "{m}");

    // Without the CA the server's certificate is refused: the mail waits with the reason.
    let app = TestApp::spawn_with(|c| {
        smtp_config(c, port);
        c.smtp_url =
            Some(orchestrator::config::Secret::new(format!("smtp://mailer:s3cr%40t@127.0.0.1:{port}?tls=starttls")));
    })
    .await;
    let t = app.tenant("untrusted").await;
    let (kid, mum) = app.minor_with_parent(&t, "kim", "mum").await;
    request_consent(&app, &t.admin, &kid).await;
    let mail = wait_delivery(&app, &t.admin, &mum.user_id, "retrying", 1).await;
    assert!(mail["delivery"]["last_error"].as_str().unwrap().to_lowercase().contains("certificate"), "{mail}");
}

#[tokio::test]
async fn the_calendar_feed_lists_lessons_and_meetings_until_revoked() {
    let m = market_with("feed", |c| c.public_url = SITE.into()).await;
    let app = &m.app;
    // Time zones: validated, returned, cleared.
    let patch = |tok: &str, body: Value| {
        let tok = tok.to_string();
        async move { app.request(Method::PATCH, "/api/v1/me", Some(&tok), Some(&body), &[]).await }
    };
    let res = patch(&m.student.access, json!({"timezone": "Mars/Olympus"})).await;
    assert_eq!((res.status, res.code()), (StatusCode::UNPROCESSABLE_ENTITY, "invalid_timezone"));
    assert_eq!(patch(&m.student.access, json!({"timezone": null})).await.body["timezone"], Value::Null);
    assert_eq!(patch(&m.student.access, json!({"timezone": "Asia/Tokyo"})).await.body["timezone"], "Asia/Tokyo");
    assert_eq!(app.get("/api/v1/me", &m.student.access).await.body["timezone"], "Asia/Tokyo");
    assert_eq!(patch(&m.student.access, json!({})).await.body["timezone"], "Asia/Tokyo", "absent: unchanged");

    let id = m.book_and_pay(&m.student, "2027-03-03T08:00:00Z", 60).await;
    let course = app
        .post("/api/v1/courses", Some(&m.t.admin.access), json!({"title": "Algebra", "lessons": [{"title": "One"}]}))
        .await;
    let class = app
        .post(
            "/api/v1/classes",
            Some(&m.t.admin.access),
            json!({"kind": "group", "title": "Algebra 1", "course_id": course.body["id"], "instructor_id": m.tutor.user_id,
                   "total_meetings": 1, "capacity": 5, "timezone": "Europe/Berlin",
                   "meetings": [{"starts_at": "2027-03-04T15:00:00Z", "ends_at": "2027-03-04T16:00:00Z"}]}),
        )
        .await;
    assert_eq!(class.status, StatusCode::CREATED, "{class:?}");
    let res = app
        .post(
            &format!("/api/v1/classes/{}/enrollments", class.body["id"].as_str().unwrap()),
            Some(&m.t.admin.access),
            json!({"student_id": m.student.user_id}),
        )
        .await;
    assert_eq!(res.status, StatusCode::CREATED, "{res:?}");

    let res = app.post("/api/v1/me/calendar-token", Some(&m.student.access), json!({})).await;
    assert_eq!(res.status, StatusCode::CREATED, "{res:?}");
    let url = res.body["url"].as_str().unwrap().to_string();
    assert!(url.starts_with(&format!("{SITE}/api/v1/calendar/")) && url.ends_with(".ics"), "{url}");
    assert_eq!(res.body["webcal_url"], url.replacen("https://", "webcal://", 1));
    let path = url.trim_start_matches(SITE).to_string();
    let feed = app.request(Method::GET, &path, None, None, &[]).await;
    assert_eq!(feed.status, StatusCode::OK, "{feed:?}");
    assert_eq!(feed.headers["content-type"], "text/calendar; charset=utf-8");
    let lines = ics_lines(&feed.text);
    assert!(
        lines.contains(&"METHOD:PUBLISH".to_string())
            && lines.contains(&"X-WR-CALNAME:feed school: student".to_string())
    );
    assert!(lines.contains(&format!("UID:booking-{id}@school.test")), "{lines:?}");
    assert!(
        lines.contains(&"SUMMARY:Lesson with tutor".to_string()) && lines.contains(&"SUMMARY:Algebra 1".to_string())
    );
    // In the student's own zone: 08:00 UTC is 17:00 in Tokyo; the meeting at 15:00 UTC, midnight.
    assert!(lines.contains(&"DTSTART;TZID=Asia/Tokyo:20270303T170000".to_string()), "{lines:?}");
    assert!(lines.contains(&"DTSTART;TZID=Asia/Tokyo:20270305T000000".to_string()), "{lines:?}");
    assert!(lines.contains(&"TZID:Asia/Tokyo".to_string()));
    // The tutor's feed has the lesson and the meeting they teach, in Berlin time (their availability's zone).
    let res = app.post("/api/v1/me/calendar-token", Some(&m.tutor.access), json!({})).await;
    let tutor_path = res.body["url"].as_str().unwrap().trim_start_matches(SITE).to_string();
    let tutor_feed = ics_lines(&app.request(Method::GET, &tutor_path, None, None, &[]).await.text);
    assert!(tutor_feed.contains(&"DTSTART;TZID=Europe/Berlin:20270303T090000".to_string()), "{tutor_feed:?}");
    assert!(
        tutor_feed.contains(&"SUMMARY:Lesson with student".to_string())
            && tutor_feed.contains(&"SUMMARY:Algebra 1".to_string())
    );

    // Rotating replaces the address; revoking ends it; unknown tokens are 404.
    let res = app.post("/api/v1/me/calendar-token", Some(&m.student.access), json!({})).await;
    let rotated = res.body["url"].as_str().unwrap().trim_start_matches(SITE).to_string();
    assert_ne!(rotated, path);
    let old = app.request(Method::GET, &path, None, None, &[]).await;
    assert_eq!((old.status, old.code()), (StatusCode::NOT_FOUND, "calendar_not_found"));
    assert_eq!(app.request(Method::GET, &rotated, None, None, &[]).await.status, StatusCode::OK);
    let res = app.request(Method::DELETE, "/api/v1/me/calendar-token", Some(&m.student.access), None, &[]).await;
    assert_eq!(res.status, StatusCode::NO_CONTENT, "{res:?}");
    assert_eq!(app.request(Method::GET, &rotated, None, None, &[]).await.status, StatusCode::NOT_FOUND);
    assert_eq!(
        app.request(Method::GET, &tutor_path, None, None, &[]).await.status,
        StatusCode::OK,
        "others' feeds stay"
    );
    for bad in ["/api/v1/calendar/nope.ics", &format!("/api/v1/calendar/{}.ics", "0".repeat(64))] {
        assert_eq!(app.request(Method::GET, bad, None, None, &[]).await.status, StatusCode::NOT_FOUND, "{bad}");
    }
    let audit = app.get("/api/v1/audit", &m.t.admin.access).await;
    assert!(audit.text.contains("calendar_feed.created") && audit.text.contains("calendar_feed.revoked"), "{audit:?}");
}

//! What each mail says, and the outbox consumer that sends the ones caused by booking and payment events.
//!
//! Every message is a [`Letter`]: a greeting, paragraphs and one link, rendered alike as plain text and as
//! HTML. Times are in the recipient's own zone (`users::zone_of`: their own, a tutor's availability zone, else
//! UTC), always named. Lesson mail carries an `.ics` in the recipient's zone: `METHOD:REQUEST` when a lesson is
//! confirmed or moved, `METHOD:CANCEL` when it is cancelled, all with the lesson's one `UID` and the causing
//! outbox event's id as `SEQUENCE` (ids only grow, so every later message outranks the earlier ones).
//!
//! Who gets lesson mail: the tutor, the student, and the parent who booked for their child.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use futures::future::BoxFuture;
use sqlx::{AnyConnection, Row};

use super::{Mail, MailError, SharedMailer};
use crate::{
    auth::Role,
    bookings::{self, Booking, BookingError, BookingStatus},
    calendar::{self, Method, Person},
    config::Config,
    consent::ConsentScope,
    events::DomainEvent,
    identity::{
        IdentityError,
        users::{self, User},
    },
    ids::{BookingId, ConsentRequestId, PackageId, TenantId, UserId},
    outbox::{Consumer, EventEnvelope},
};

/// What mail needs to know about this server: where links point, and who organizes the calendar events.
#[derive(Debug, Clone)]
pub struct Site {
    /// `public_url` without a trailing slash.
    pub public_url: String,
    /// The sender (`mail_from`): the `ORGANIZER` of lesson events.
    pub organizer: Person,
    /// For `UID`s: the host of `public_url`.
    host: String,
}

impl Site {
    /// From `public_url` and `mail_from`; a `mail_from` that isn't an address falls back to `no-reply@<host>`
    /// (an SMTP transport refuses such a `mail_from` at start, so this only shapes stored mail).
    pub fn from_config(config: &Config) -> Self {
        let public_url = config.public_url.trim_end_matches('/').to_string();
        let host = url::Url::parse(&public_url)
            .ok()
            .and_then(|u| u.host_str().map(String::from))
            .unwrap_or_else(|| "localhost".into());
        let organizer = match config.mail_from.parse::<lettre::message::Mailbox>() {
            Ok(m) => Person { name: m.name.unwrap_or_else(|| "liveclass".into()), email: m.email.to_string() },
            Err(_) => Person { name: "liveclass".into(), email: format!("no-reply@{host}") },
        };
        Site { public_url, organizer, host }
    }

    /// A page of the browser app (hash routing) for a member of `school`: `{public_url}/?tenant=<slug>#/<page>`,
    /// so the sign-in form a link opens already names the school.
    pub fn link(&self, school: &School, page: &str) -> String {
        format!("{}/?tenant={}#/{page}", self.public_url, school.slug)
    }

    /// The calendar `UID` of a lesson, the same in every message and in feeds.
    pub fn lesson_uid(&self, id: BookingId) -> String {
        format!("booking-{id}@{}", self.host)
    }

    /// The calendar `UID` of a class meeting.
    pub fn meeting_uid(&self, id: impl std::fmt::Display) -> String {
        format!("meeting-{id}@{}", self.host)
    }
}

/// The tenant a mail is about, as its people know it: the name signs the mail, the slug goes into links.
#[derive(Debug, Clone)]
pub struct School {
    pub slug: String,
    pub name: String,
}

impl School {
    pub async fn load(conn: &mut AnyConnection, tenant: TenantId) -> Result<Self, MailError> {
        let t = crate::identity::tenants::find(conn, tenant).await?.ok_or(IdentityError::TenantNotFound)?;
        Ok(School { slug: t.slug, name: t.name })
    }
}

/// Someone mail goes to, with the zone their times are shown in and their school.
#[derive(Debug, Clone)]
pub struct Recipient {
    pub id: UserId,
    pub email: String,
    pub name: String,
    pub role: Role,
    pub zone: Tz,
    pub school: School,
}

impl Recipient {
    pub async fn load(
        conn: &mut AnyConnection,
        tenant: TenantId,
        id: UserId,
        now: DateTime<Utc>,
    ) -> Result<Self, MailError> {
        let user = users::get_or_404(conn, tenant, id, now).await?;
        let zone = users::zone_of(conn, tenant, id).await?;
        Ok(Self::of(&user, zone, School::load(conn, tenant).await?))
    }

    pub fn of(user: &User, zone: Tz, school: School) -> Self {
        Recipient {
            id: user.id,
            email: user.email.clone(),
            name: user.display_name.clone(),
            role: user.role,
            zone,
            school,
        }
    }

    fn person(&self) -> Person {
        Person { name: self.name.clone(), email: self.email.clone() }
    }
}

/// A message's words, rendered alike as text and HTML.
pub struct Letter {
    pub subject: String,
    pub paragraphs: Vec<String>,
    /// A call to action: label and URL.
    pub action: Option<(String, String)>,
}

impl Letter {
    pub fn to(self, tenant: TenantId, r: &Recipient, ics: Option<String>) -> Mail {
        let mut text = format!("Hello {},\n\n", r.name);
        let mut html = format!(
            "<!DOCTYPE html>\n<html><body style=\"font-family: sans-serif; line-height: 1.5; color: #222\">\n<p>Hello {},</p>\n",
            html_escape(&r.name)
        );
        for p in &self.paragraphs {
            text.push_str(p);
            text.push_str("\n\n");
            html.push_str(&format!("<p>{}</p>\n", html_escape(p)));
        }
        if let Some((label, url)) = &self.action {
            text.push_str(&format!("{label}: {url}\n\n"));
            html.push_str(&format!(
                "<p><a href=\"{}\" style=\"display: inline-block; padding: 0.5em 1em; background: #1a56db; color: #fff; \
                 text-decoration: none; border-radius: 4px\">{}</a></p>\n",
                html_escape(url),
                html_escape(label)
            ));
        }
        if ics.is_some() {
            text.push_str("The attached invitation (.ics) adds this to your calendar.\n\n");
        }
        text.push_str(&format!("-- \n{}\n", r.school.name));
        html.push_str(&format!(
            "<p style=\"color: #666; font-size: 0.9em\">{}</p>\n</body></html>\n",
            html_escape(&r.school.name)
        ));
        Mail {
            tenant,
            to_user: r.id,
            to_email: r.email.clone(),
            subject: self.subject,
            body: text,
            html: Some(html),
            ics,
        }
    }
}

fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// "Wednesday 3 March 2027, 09:00 CET (Europe/Berlin)"; in UTC "…, 08:00 UTC".
pub fn when(t: DateTime<Utc>, zone: Tz) -> String {
    let local = t.with_timezone(&zone);
    if zone == Tz::UTC {
        local.format("%A %-d %B %Y, %H:%M UTC").to_string()
    } else {
        format!("{} ({})", local.format("%A %-d %B %Y, %H:%M %Z"), zone.name())
    }
}

/// "Wednesday 3 March 2027, 09:00–10:00 CET (Europe/Berlin)".
pub fn span(start: DateTime<Utc>, end: DateTime<Utc>, zone: Tz) -> String {
    let (s, e) = (start.with_timezone(&zone), end.with_timezone(&zone));
    let day = s.format("%A %-d %B %Y, %H:%M");
    if zone == Tz::UTC {
        format!("{day}–{} UTC", e.format("%H:%M"))
    } else {
        format!("{day}–{} ({})", e.format("%H:%M %Z"), zone.name())
    }
}

/// "1 day", "1 hour", "90 minutes".
pub fn human_lead(minutes: i64) -> String {
    match minutes {
        m if m % 1440 == 0 => plural(m / 1440, "day"),
        m if m % 60 == 0 => plural(m / 60, "hour"),
        m => plural(m, "minute"),
    }
}

fn plural(n: i64, unit: &str) -> String {
    if n == 1 { format!("1 {unit}") } else { format!("{n} {unit}s") }
}

// --- consent ---

/// To the parent: a child needs consent for `scopes` (their names, listed), with the link to the parent's
/// consent page.
pub fn consent_request(
    site: &Site,
    id: ConsentRequestId,
    scopes: &[ConsentScope],
    child: &User,
    parent: &Recipient,
) -> Mail {
    let scopes: Vec<&str> = scopes
        .iter()
        .map(|s| match s {
            ConsentScope::LiveVideo => "taking part in live video lessons and class meetings",
            ConsentScope::Chat => "writing in the lesson chat",
            ConsentScope::Recording => "appearing in recordings of lessons",
        })
        .collect();
    Letter {
        subject: format!("Consent needed for {}", child.display_name),
        paragraphs: vec![
            format!("{} at {} needs your consent for: {}.", child.display_name, parent.school.name, scopes.join("; ")),
            "Open the request to grant or deny each of these; you'll be asked how you verified that you are the \
             parent. You can revoke your consent at any time."
                .into(),
            format!("(Consent request {id}.)"),
        ],
        action: Some(("Review the consent request".into(), site.link(&parent.school, &format!("consent/{id}")))),
    }
    .to(child.tenant_id, parent, None)
}

// --- lessons ---

/// How a recipient relates to a lesson, for the wording.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    Tutor,
    Student,
    /// The parent who booked for their child.
    Parent,
}

/// A lesson and the people in it, loaded once per message.
struct Lesson {
    booking: Booking,
    tutor: User,
    student: User,
    school: School,
    /// Who gets mail about it, with their part.
    recipients: Vec<(Recipient, Part)>,
}

impl Lesson {
    async fn load(conn: &mut AnyConnection, b: Booking, now: DateTime<Utc>) -> Result<Self, MailError> {
        let tutor = users::get_or_404(conn, b.tenant_id, b.tutor_id, now).await?;
        let student = users::get_or_404(conn, b.tenant_id, b.student_id, now).await?;
        let school = School::load(conn, b.tenant_id).await?;
        let mut recipients = Vec::with_capacity(3);
        for (user, part) in [(&tutor, Part::Tutor), (&student, Part::Student)] {
            let zone = users::zone_of(conn, b.tenant_id, user.id).await?;
            recipients.push((Recipient::of(user, zone, school.clone()), part));
        }
        if b.booked_by != b.student_id && b.booked_by != b.tutor_id {
            let booker = Recipient::load(conn, b.tenant_id, b.booked_by, now).await?;
            if booker.role == Role::Parent {
                recipients.push((booker, Part::Parent));
            }
        }
        Ok(Lesson { booking: b, tutor, student, school, recipients })
    }

    /// "your lesson with Ben", "your lesson with Ana", "Ana's lesson with Ben".
    fn title(&self, part: Part) -> String {
        match part {
            Part::Tutor => format!("your lesson with {}", self.student.display_name),
            Part::Student => format!("your lesson with {}", self.tutor.display_name),
            Part::Parent => format!("{}'s lesson with {}", self.student.display_name, self.tutor.display_name),
        }
    }

    fn summary(&self, part: Part) -> String {
        match part {
            Part::Tutor => format!("Lesson with {}", self.student.display_name),
            Part::Student => format!("Lesson with {}", self.tutor.display_name),
            Part::Parent => format!("{}'s lesson with {}", self.student.display_name, self.tutor.display_name),
        }
    }

    fn link(&self, site: &Site) -> String {
        site.link(&self.school, &format!("bookings/{}", self.booking.id))
    }

    /// The lesson's calendar for one recipient, in their zone.
    fn ics(&self, site: &Site, r: &Recipient, part: Part, method: Method, sequence: i64, now: DateTime<Utc>) -> String {
        let b = &self.booking;
        let event = calendar::Event {
            uid: site.lesson_uid(b.id),
            sequence,
            start: b.starts_at,
            end: b.ends_at,
            summary: self.summary(part),
            description: Some(format!(
                "{}-minute lesson. Join from liveclass a few minutes before the start: {}",
                b.minutes,
                self.link(site)
            )),
            url: Some(self.link(site)),
            cancelled: method == Method::Cancel,
            organizer: Some(site.organizer.clone()),
            attendees: vec![r.person()],
        };
        calendar::write(&calendar::Calendar { method, name: None, zone: r.zone, stamp: now, events: &[event] })
    }
}

fn capitalized(s: &str) -> String {
    let mut c = s.chars();
    c.next().map(|f| f.to_uppercase().collect::<String>() + c.as_str()).unwrap_or_default()
}

/// A confirmed lesson (paid, or with a package credit): an invitation to each participant.
async fn lesson_confirmed(
    conn: &mut AnyConnection,
    mailer: &SharedMailer,
    site: &Site,
    lesson: &Lesson,
    sequence: i64,
    now: DateTime<Utc>,
) -> Result<(), MailError> {
    let b = &lesson.booking;
    for (r, part) in &lesson.recipients {
        let letter = Letter {
            subject: format!("Lesson confirmed: {}", when(b.starts_at, r.zone)),
            paragraphs: vec![
                format!(
                    "{} is confirmed for {}.",
                    capitalized(&lesson.title(*part)),
                    span(b.starts_at, b.ends_at, r.zone)
                ),
                "The lesson's room opens a few minutes before the start; join it from liveclass.".into(),
            ],
            action: Some(("Open the lesson".into(), lesson.link(site))),
        };
        let ics = lesson.ics(site, r, *part, Method::Request, sequence, now);
        mailer.queue(conn, now, &letter.to(b.tenant_id, r, Some(ics))).await?;
    }
    Ok(())
}

/// A confirmed lesson was cancelled: the cancellation of the invitation, and what the payer gets back.
async fn lesson_cancelled(
    conn: &mut AnyConnection,
    mailer: &SharedMailer,
    site: &Site,
    lesson: &Lesson,
    sequence: i64,
    now: DateTime<Utc>,
) -> Result<(), MailError> {
    let b = &lesson.booking;
    let by = match b.status {
        BookingStatus::CancelledByTutor => format!("by {}", lesson.tutor.display_name),
        _ => format!("on {}'s side", lesson.student.display_name),
    };
    for (r, part) in &lesson.recipients {
        let mut paragraphs = vec![format!(
            "{} on {} was cancelled {by}.",
            capitalized(&lesson.title(*part)),
            span(b.starts_at, b.ends_at, r.zone)
        )];
        if let Some(reason) = b.cancel_reason.as_deref().filter(|r| *r != "cancelled") {
            paragraphs.push(format!("Reason given: {reason}"));
        }
        if *part != Part::Tutor {
            if b.credit_returned {
                paragraphs.push("The lesson's package credit was returned to the package.".into());
            } else if b.refund_minor > 0 {
                paragraphs.push(format!("A refund of {} is on its way.", money(b.refund_minor, &b.currency)));
            }
        }
        let letter = Letter {
            subject: format!("Lesson cancelled: {}", when(b.starts_at, r.zone)),
            paragraphs,
            action: Some(("See the booking".into(), lesson.link(site))),
        };
        let ics = lesson.ics(site, r, *part, Method::Cancel, sequence, now);
        mailer.queue(conn, now, &letter.to(b.tenant_id, r, Some(ics))).await?;
    }
    Ok(())
}

/// A lesson moved: the updated invitation.
async fn lesson_rescheduled(
    conn: &mut AnyConnection,
    mailer: &SharedMailer,
    site: &Site,
    lesson: &Lesson,
    previous: DateTime<Utc>,
    sequence: i64,
    now: DateTime<Utc>,
) -> Result<(), MailError> {
    let b = &lesson.booking;
    for (r, part) in &lesson.recipients {
        let letter = Letter {
            subject: format!("Lesson moved to {}", when(b.starts_at, r.zone)),
            paragraphs: vec![
                format!(
                    "{} moved from {} to {}.",
                    capitalized(&lesson.title(*part)),
                    when(previous, r.zone),
                    span(b.starts_at, b.ends_at, r.zone)
                ),
                "Reminders follow the lesson to its new time.".into(),
            ],
            action: Some(("Open the lesson".into(), lesson.link(site))),
        };
        let ics = lesson.ics(site, r, *part, Method::Request, sequence, now);
        mailer.queue(conn, now, &letter.to(b.tenant_id, r, Some(ics))).await?;
    }
    Ok(())
}

/// A reminder `minutes_before` the start of confirmed lesson `b` (the `booking.remind` job).
pub async fn lesson_reminder(
    conn: &mut AnyConnection,
    mailer: &SharedMailer,
    site: &Site,
    b: &Booking,
    minutes_before: i64,
    now: DateTime<Utc>,
) -> Result<(), MailError> {
    let lesson = Lesson::load(conn, b.clone(), now).await?;
    let lead = human_lead(minutes_before);
    for (r, part) in &lesson.recipients {
        let letter = Letter {
            subject: format!("Reminder: your lesson starts in {lead}"),
            paragraphs: vec![format!(
                "{} starts in {lead}: {}.",
                capitalized(&lesson.title(*part)),
                span(b.starts_at, b.ends_at, r.zone)
            )],
            action: Some(("Open the lesson".into(), lesson.link(site))),
        };
        mailer.queue(conn, now, &letter.to(b.tenant_id, r, None)).await?;
    }
    Ok(())
}

fn money(minor: i64, currency: &str) -> String {
    match currency.parse() {
        Ok(c) => billing::Money::new(minor, c).to_string(),
        Err(_) => format!("{minor} {currency} (minor units)"),
    }
}

/// The payer of a payment: who booked or bought, unless staff did it for the student.
async fn payer(
    conn: &mut AnyConnection,
    tenant: TenantId,
    paid_by: UserId,
    student: UserId,
    now: DateTime<Utc>,
) -> Result<Recipient, MailError> {
    let r = Recipient::load(conn, tenant, paid_by, now).await?;
    if matches!(r.role, Role::Admin | Role::Staff) { Recipient::load(conn, tenant, student, now).await } else { Ok(r) }
}

/// A payment succeeded: a receipt to whoever paid.
async fn payment_received(
    conn: &mut AnyConnection,
    mailer: &SharedMailer,
    site: &Site,
    tenant: TenantId,
    subject: &str,
    amount: String,
    now: DateTime<Utc>,
) -> Result<(), MailError> {
    let (r, what, status, link) = match subject.split_once(':') {
        Some(("booking", id)) => {
            let id = BookingId::from_column(id)?;
            let b = bookings::load(conn, tenant, id, "").await?;
            let tutor = users::get_or_404(conn, tenant, b.tutor_id, now).await?;
            let r = payer(conn, tenant, b.booked_by, b.student_id, now).await?;
            let what = format!(
                "the {}-minute lesson with {} on {}",
                b.minutes,
                tutor.display_name,
                span(b.starts_at, b.ends_at, r.zone)
            );
            let status = match b.status {
                BookingStatus::Confirmed | BookingStatus::InProgress | BookingStatus::Completed => {
                    "The lesson is confirmed."
                }
                _ => "The reservation had ended before the payment arrived, so the payment will be refunded.",
            };
            let link = site.link(&r.school, &format!("bookings/{id}"));
            (r, what, status, link)
        }
        Some(("package", id)) => {
            let id = PackageId::from_column(id)?;
            let row = sqlx::query(
                "SELECT p.student_id, p.bought_by, p.lessons, p.minutes, u.display_name AS tutor
                 FROM lesson_packages p JOIN users u ON u.id = p.tutor_id AND u.tenant_id = p.tenant_id
                 WHERE p.tenant_id = $1 AND p.id = $2",
            )
            .bind(tenant.to_string())
            .bind(id.to_string())
            .fetch_optional(&mut *conn)
            .await?
            .ok_or(BookingError::PackageNotFound)?;
            let student = UserId::from_column(&row.try_get::<String, _>("student_id")?)?;
            let bought_by = UserId::from_column(&row.try_get::<String, _>("bought_by")?)?;
            let r = payer(conn, tenant, bought_by, student, now).await?;
            let what = format!(
                "a package of {} {}-minute lessons with {}",
                row.try_get::<i64, _>("lessons")?,
                row.try_get::<i64, _>("minutes")?,
                row.try_get::<String, _>("tutor")?
            );
            let link = site.link(&r.school, &format!("packages/{id}"));
            (r, what, "Its lessons are ready to book.", link)
        }
        _ => return Ok(()),
    };
    let letter = Letter {
        subject: format!("Payment received: {amount}"),
        paragraphs: vec![format!("We received your payment of {amount} for {what}."), status.into()],
        action: Some(("See the details".into(), link)),
    };
    mailer.queue(conn, now, &letter.to(tenant, &r, None)).await?;
    Ok(())
}

/// The durable outbox consumer that mails people about their lessons and payments (see the module doc).
pub struct Notices {
    mailer: SharedMailer,
    site: Site,
}

impl Notices {
    pub fn new(mailer: SharedMailer, site: Site) -> Arc<Self> {
        Arc::new(Notices { mailer, site })
    }

    async fn lesson(
        &self,
        conn: &mut AnyConnection,
        env: &EventEnvelope,
        id: BookingId,
        times: (DateTime<Utc>, DateTime<Utc>),
        now: DateTime<Utc>,
    ) -> Result<Option<Lesson>, MailError> {
        let mut b = match bookings::load(conn, env.tenant_id, id, "").await {
            Ok(b) => b,
            Err(bookings::BookingError::NotFound) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        // The times the event speaks of, even if the lesson moved again since.
        (b.starts_at, b.ends_at) = times;
        Ok(Some(Lesson::load(conn, b, now).await?))
    }

    async fn handle_event(
        &self,
        conn: &mut AnyConnection,
        env: &EventEnvelope,
        now: DateTime<Utc>,
    ) -> Result<(), MailError> {
        let (mailer, site, seq) = (&self.mailer, &self.site, env.id);
        match &env.event {
            DomainEvent::BookingStatusChanged { booking_id, from, to, starts_at, ends_at, .. } => {
                let cancelled = matches!(to, BookingStatus::CancelledByStudent | BookingStatus::CancelledByTutor)
                    && *from == Some(BookingStatus::Confirmed);
                if *to != BookingStatus::Confirmed && !cancelled {
                    return Ok(());
                }
                let Some(mut lesson) = self.lesson(conn, env, *booking_id, (*starts_at, *ends_at), now).await? else {
                    return Ok(());
                };
                if cancelled {
                    // The status the event reports, whatever happened to the booking since.
                    lesson.booking.status = *to;
                    lesson_cancelled(conn, mailer, site, &lesson, seq, now).await
                } else {
                    lesson_confirmed(conn, mailer, site, &lesson, seq, now).await
                }
            }
            DomainEvent::BookingRescheduled { booking_id, previous_starts_at, starts_at, ends_at, .. } => {
                match self.lesson(conn, env, *booking_id, (*starts_at, *ends_at), now).await? {
                    Some(lesson) => {
                        lesson_rescheduled(conn, mailer, site, &lesson, *previous_starts_at, seq, now).await
                    }
                    None => Ok(()),
                }
            }
            DomainEvent::PaymentSucceeded { subject, amount_minor, currency, .. } => {
                let amount = money(*amount_minor, currency);
                payment_received(conn, mailer, site, env.tenant_id, subject, amount, now).await
            }
            _ => Ok(()),
        }
    }
}

impl Consumer for Notices {
    fn name(&self) -> &'static str {
        "notices"
    }

    fn handle<'a>(
        &'a self,
        conn: &'a mut AnyConnection,
        event: &'a EventEnvelope,
        now: DateTime<Utc>,
    ) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            match self.handle_event(conn, event, now).await {
                Ok(()) => Ok(()),
                // Something the event names is gone or can't be mailed about: skipping is all a retry would do,
                // and an error here would hold back every later event.
                Err(e) if e.is_gone() => {
                    tracing::warn!(event_id = event.id, error = %e, "no mail for this event");
                    Ok(())
                }
                // Storage trouble: the dispatcher retries the batch.
                Err(e) => Err(e.into()),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn times_are_local_and_named() {
        let t = at("2027-03-03T08:00:00Z");
        assert_eq!(when(t, chrono_tz::Europe::Berlin), "Wednesday 3 March 2027, 09:00 CET (Europe/Berlin)");
        assert_eq!(when(t, chrono_tz::America::New_York), "Wednesday 3 March 2027, 03:00 EST (America/New_York)");
        assert_eq!(when(t, Tz::UTC), "Wednesday 3 March 2027, 08:00 UTC");
        let end = at("2027-03-03T09:00:00Z");
        assert_eq!(span(t, end, chrono_tz::Europe::Berlin), "Wednesday 3 March 2027, 09:00–10:00 CET (Europe/Berlin)");
        assert_eq!(span(t, end, Tz::UTC), "Wednesday 3 March 2027, 08:00–09:00 UTC");
    }

    #[test]
    fn reminder_leads_read_naturally() {
        assert_eq!(human_lead(1440), "1 day");
        assert_eq!(human_lead(2880), "2 days");
        assert_eq!(human_lead(60), "1 hour");
        assert_eq!(human_lead(90), "90 minutes");
    }

    #[test]
    fn a_letter_is_text_and_escaped_html() {
        let r = Recipient {
            id: UserId::new(),
            email: "a@b.test".into(),
            name: "Ana <3".into(),
            role: Role::Parent,
            zone: Tz::UTC,
            school: School { slug: "demo".into(), name: "Demo school".into() },
        };
        let mail = Letter {
            subject: "S".into(),
            paragraphs: vec!["One & two".into()],
            action: Some(("Go".into(), "https://x.test/#/consent/1?a=1&b=2".into())),
        }
        .to(TenantId::new(), &r, None);
        assert!(mail.body.starts_with("Hello Ana <3,\n\nOne & two\n\nGo: https://x.test/#/consent/1?a=1&b=2\n"));
        let html = mail.html.unwrap();
        assert!(html.contains("<p>Hello Ana &lt;3,</p>") && html.contains("<p>One &amp; two</p>"), "{html}");
        assert!(html.contains("href=\"https://x.test/#/consent/1?a=1&amp;b=2\""), "{html}");
    }
}

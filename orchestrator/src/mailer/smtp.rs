//! Mail over SMTP (lettre, rustls): [`SmtpMailer`] stores each message like the embedded mailbox and, in the
//! same transaction, enqueues a `mail.send` job; the job runner's [`SendMail`] builds the MIME message and hands
//! it to the server, never inside a request. A failed attempt (server down, refused, timed out) is the job's
//! failure: retried by the runner's backoff, visible in the mailbox listing (`delivery`) and, once dead, in the
//! failed jobs, where staff retry it.
//!
//! `smtp_url`, the one way to name the server:
//! - `smtp://host[:port]` — plain SMTP (port 25), for a relay on this machine or a private network; a URL with a
//!   password must use TLS unless the host is loopback, so credentials never cross a network in clear text;
//! - `smtp://[user:password@]host[:port]?tls=starttls` — STARTTLS, required (port 587), the submission port;
//! - `smtps://[user:password@]host[:port]` — TLS from the first byte (port 465).
//!
//! User and password are percent-encoded (`p%40ss` for `p@ss`). Certificates are checked against Mozilla's
//! roots (webpki-roots) plus `smtp_ca_file`, if set (a private relay's CA).
//!
//! Delivery is at least once: the job marks the row sent in the transaction that completes it, so a crash
//! between the server's acceptance and that commit sends the message again, with the same `Message-ID`.
//! The send runs inside the job's transaction (as Stripe calls do): on SQLite that holds the writer slot for
//! the exchange, bounded by `smtp_timeout_secs`.

use std::{fmt, sync::Arc, time::Duration};

use anyhow::{Context, anyhow};
use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use lettre::{
    AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor,
    message::{Attachment, Mailbox as Address, MultiPart, SinglePart, header::ContentType},
    transport::smtp::{
        authentication::Credentials,
        client::{Certificate, Tls, TlsParameters},
        extension::ClientId,
    },
};
use serde::{Deserialize, Serialize};
use sqlx::{AnyConnection, Row};

use super::{Mail, Mailer};
use crate::{
    config::Config,
    db::{self, Db},
    jobs::{self, BackgroundJob, Job, Jobs, Schedule},
};

/// How the connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    None,
    StartTls,
    Tls,
}

/// A parsed `smtp_url` (see the module doc).
#[derive(Clone, PartialEq, Eq)]
pub struct SmtpUrl {
    pub host: String,
    pub port: u16,
    pub security: Security,
    credentials: Option<(String, String)>,
}

impl fmt::Debug for SmtpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmtpUrl")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("security", &self.security)
            .field("user", &self.credentials.as_ref().map(|c| &c.0))
            .finish()
    }
}

impl SmtpUrl {
    pub fn parse(raw: &str) -> anyhow::Result<Self> {
        let url = url::Url::parse(raw).map_err(|e| anyhow!("smtp_url is not a URL: {e}"))?;
        let host = url.host_str().filter(|h| !h.is_empty()).ok_or_else(|| anyhow!("smtp_url names no host"))?;
        // `[::1]` → `::1`, the form sockets and certificate names use.
        let host = host.trim_start_matches('[').trim_end_matches(']').to_string();
        if url.path() != "" && url.path() != "/" {
            return Err(anyhow!("smtp_url takes no path"));
        }
        let mut tls = None;
        for (k, v) in url.query_pairs() {
            match (k.as_ref(), tls) {
                ("tls", None) => tls = Some(v.into_owned()),
                _ => return Err(anyhow!("smtp_url's only query parameter is tls=starttls")),
            }
        }
        let (security, default_port) = match (url.scheme(), tls.as_deref()) {
            ("smtp", None | Some("none")) => (Security::None, 25),
            ("smtp", Some("starttls")) => (Security::StartTls, 587),
            ("smtps", None) => (Security::Tls, 465),
            (scheme, tls) => {
                return Err(anyhow!(
                    "smtp_url: use smtp://host, smtp://host?tls=starttls or smtps://host (got {scheme}:// with tls={})",
                    tls.unwrap_or("")
                ));
            }
        };
        let decode =
            |s: &str| percent_decode(s).ok_or_else(|| anyhow!("smtp_url: bad percent-encoding in user or password"));
        let credentials = match (url.username(), url.password()) {
            ("", None) => None,
            (user, Some(password)) => Some((decode(user)?, decode(password)?)),
            (_, None) => return Err(anyhow!("smtp_url names a user without a password")),
        };
        if credentials.is_some() && security == Security::None && !is_loopback(&host) {
            return Err(anyhow!(
                "smtp_url would send the password in clear text: use smtps:// or ?tls=starttls (plain smtp:// \
                 with a password only to a loopback host)"
            ));
        }
        Ok(SmtpUrl { port: url.port().unwrap_or(default_port), host, security, credentials })
    }
}

/// `%XX` escapes → bytes, as UTF-8; `None` for a malformed escape or invalid UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        if b == b'%' {
            let hex = [bytes.next()?, bytes.next()?];
            out.push(u8::from_str_radix(std::str::from_utf8(&hex).ok()?, 16).ok()?);
        } else {
            out.push(b);
        }
    }
    String::from_utf8(out).ok()
}

fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost") || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The configured SMTP client and sender.
pub struct Transport {
    client: AsyncSmtpTransport<Tokio1Executor>,
    from: Address,
    /// The right-hand side of `Message-ID`s.
    domain: String,
    timeout: Duration,
}

impl Transport {
    /// From `smtp_url`, `mail_from`, `smtp_timeout_secs`, `smtp_ca_file`; the EHLO name is `public_url`'s host.
    pub fn from_config(config: &Config) -> anyhow::Result<Option<Self>> {
        let Some(raw) = &config.smtp_url else { return Ok(None) };
        let url = SmtpUrl::parse(raw.expose())?;
        let from: Address = config.mail_from.parse().map_err(|e| {
            anyhow!(
                "mail_from {:?} is not an address such as \"School <no-reply@school.example>\": {e}",
                config.mail_from
            )
        })?;
        let timeout = Duration::from_secs(config.smtp_timeout_secs.max(1));
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(url.host.clone())
            .port(url.port)
            .timeout(Some(timeout))
            .hello_name(hello_name(&config.public_url));
        if url.security != Security::None {
            let mut tls = TlsParameters::builder(url.host.clone());
            if let Some(path) = &config.smtp_ca_file {
                let pem = std::fs::read(path).with_context(|| format!("reading smtp_ca_file {}", path.display()))?;
                tls = tls
                    .add_root_certificate(Certificate::from_pem(&pem).context("smtp_ca_file: not a PEM certificate")?);
            }
            let tls = tls.build_rustls().context("smtp TLS settings")?;
            builder = builder.tls(if url.security == Security::Tls { Tls::Wrapper(tls) } else { Tls::Required(tls) });
        }
        if let Some((user, password)) = &url.credentials {
            builder = builder.credentials(Credentials::new(user.clone(), password.clone()));
        }
        let domain = from.email.domain().to_string();
        Ok(Some(Transport { client: builder.build(), from, domain, timeout }))
    }

    /// Sends one message; the error says why the server or the network refused it.
    async fn send(&self, message: Message) -> anyhow::Result<()> {
        // lettre's timeout covers each read and write; this one the whole exchange.
        match tokio::time::timeout(self.timeout * 3, self.client.send(message)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(anyhow!("SMTP: {e}")),
            Err(_) => Err(anyhow!("SMTP: no answer within {} s", (self.timeout * 3).as_secs())),
        }
    }
}

/// The EHLO name: `public_url`'s host (an address literal for an IP).
fn hello_name(public_url: &str) -> ClientId {
    let host = url::Url::parse(public_url).ok().and_then(|u| u.host().map(|h| h.to_owned()));
    match host {
        Some(url::Host::Domain(d)) => ClientId::Domain(d),
        Some(url::Host::Ipv4(ip)) => ClientId::Ipv4(ip),
        Some(url::Host::Ipv6(ip)) => ClientId::Ipv6(ip),
        None => ClientId::Domain("localhost".into()),
    }
}

/// The mailer used with a transport: stores the message, then enqueues the job that sends it.
#[derive(Debug, Default, Clone, Copy)]
pub struct SmtpMailer;

impl Mailer for SmtpMailer {
    fn queue<'a>(
        &'a self,
        conn: &'a mut AnyConnection,
        now: DateTime<Utc>,
        mail: &'a Mail,
    ) -> BoxFuture<'a, Result<(), sqlx::Error>> {
        Box::pin(async move {
            let id = super::store(conn, now, mail).await?;
            let at = Schedule { tenant: mail.tenant, run_at: now, dedupe_key: Some(format!("mail:{id}")) };
            let job_id = jobs::enqueue(conn, now, at, &SendMail { mail_id: id }).await?;
            sqlx::query("UPDATE mailbox SET job_id = $1 WHERE id = $2").bind(job_id).bind(id).execute(conn).await?;
            Ok(())
        })
    }
}

/// Registers the `mail.send` handler. Without a transport (no `smtp_url`) it is still registered, so mail
/// queued while SMTP was configured fails with a reason instead of "no handler".
pub fn register(jobs: &Jobs, transport: Option<Arc<Transport>>) {
    jobs.register::<SendMail>(Arc::new(transport));
}

/// Sends one mailbox row by SMTP, once (its `sent_at` is set in the same transaction).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SendMail {
    pub mail_id: i64,
}

impl BackgroundJob for SendMail {
    const KIND: &'static str = "mail.send";
    type Deps = Option<Arc<Transport>>;

    async fn run(
        self,
        transport: &Option<Arc<Transport>>,
        conn: &mut AnyConnection,
        job: &Job,
        now: DateTime<Utc>,
    ) -> anyhow::Result<()> {
        let transport = transport.as_ref().ok_or_else(|| anyhow!("no SMTP transport is configured (smtp_url)"))?;
        let id = self.mail_id;
        let sql = format!(
            "SELECT to_email, subject, body, html, ics, sent_at FROM mailbox WHERE tenant_id = $1 AND id = $2{}",
            Db::lock_clause(conn)
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(job.tenant_id.to_string())
            .bind(id)
            .fetch_optional(&mut *conn)
            .await?
            .ok_or_else(|| anyhow!("mail {id} is not in the mailbox"))?;
        if row.try_get::<Option<String>, _>("sent_at")?.is_some() {
            return Ok(());
        }
        let stored = Stored {
            id,
            tenant: job.tenant_id.to_string(),
            to_email: row.try_get("to_email")?,
            subject: row.try_get("subject")?,
            body: row.try_get("body")?,
            html: row.try_get("html")?,
            ics: row.try_get("ics")?,
        };
        let message = message(&transport.from, &transport.domain, &stored, now)?;
        transport.send(message).await?;
        sqlx::query("UPDATE mailbox SET sent_at = $1 WHERE id = $2")
            .bind(db::ts(now))
            .bind(id)
            .execute(&mut *conn)
            .await?;
        tracing::info!(mail_id = id, "mail sent");
        Ok(())
    }
}

/// A mailbox row, as the message is built from it.
struct Stored {
    id: i64,
    tenant: String,
    to_email: String,
    subject: String,
    body: String,
    html: Option<String>,
    ics: Option<String>,
}

/// The MIME message: `multipart/alternative` (text, HTML) — inside `multipart/mixed` with the calendar as an
/// `.ics` attachment (`text/calendar; method=…`) when there is one. The `Message-ID` is derived from the row,
/// so a resend is recognisably the same message.
fn message(from: &Address, domain: &str, m: &Stored, now: DateTime<Utc>) -> anyhow::Result<Message> {
    let to: Address = m.to_email.parse().map_err(|e| anyhow!("recipient {:?} is not an address: {e}", m.to_email))?;
    let builder = Message::builder()
        .from(from.clone())
        .to(to)
        .subject(m.subject.clone())
        .date(now.into())
        .message_id(Some(format!("<mail-{}.{}@{domain}>", m.id, m.tenant)));
    let text = match &m.html {
        Some(html) => MultiPart::alternative_plain_html(m.body.clone(), html.clone()),
        None => MultiPart::mixed().singlepart(SinglePart::plain(m.body.clone())),
    };
    let message = match &m.ics {
        None => builder.multipart(text),
        Some(ics) => {
            let method = ics
                .lines()
                .find_map(|l| l.strip_prefix("METHOD:"))
                .map(str::trim)
                .filter(|m| m.chars().all(|c| c.is_ascii_alphabetic()))
                .unwrap_or("PUBLISH");
            let kind = ContentType::parse(&format!("text/calendar; charset=utf-8; method={method}"))
                .map_err(|e| anyhow!("calendar content type: {e}"))?;
            let name = if method == "CANCEL" { "cancel.ics" } else { "invite.ics" };
            builder.multipart(
                MultiPart::mixed().multipart(text).singlepart(Attachment::new(name.into()).body(ics.clone(), kind)),
            )
        }
    };
    message.map_err(|e| anyhow!("building mail {}: {e}", m.id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_host_port_security_and_credentials() {
        let u = SmtpUrl::parse("smtp://127.0.0.1:2525").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.security, u.credentials.is_none()),
            ("127.0.0.1", 2525, Security::None, true)
        );
        let u = SmtpUrl::parse("smtp://mailer:p%40ss@smtp.example.com?tls=starttls").unwrap();
        assert_eq!((u.port, u.security), (587, Security::StartTls));
        assert_eq!(u.credentials, Some(("mailer".into(), "p@ss".into())));
        assert!(!format!("{u:?}").contains("p@ss"), "Debug hides the password");
        let u = SmtpUrl::parse("smtps://smtp.example.com").unwrap();
        assert_eq!((u.port, u.security), (465, Security::Tls));
        assert_eq!(SmtpUrl::parse("smtp://[::1]:25").unwrap().host, "::1");
        assert!(SmtpUrl::parse("smtp://u:p@localhost:25").is_ok(), "clear text to loopback is allowed");
        for bad in [
            "smtp://u:p@smtp.example.com",
            "smtp://u@smtp.example.com?tls=starttls",
            "smtps://h?tls=starttls",
            "smtp://h?tls=required",
            "smtp://h?x=1",
            "http://h",
            "smtp://h/path",
            "not a url",
        ] {
            assert!(SmtpUrl::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_message_with_html_and_a_calendar() {
        let from: Address = "School <no-reply@school.test>".parse().unwrap();
        let m = Stored {
            id: 7,
            tenant: "t".into(),
            to_email: "ana@school.test".into(),
            subject: "Lesson confirmed".into(),
            body: "Hello".into(),
            html: Some("<p>Hello</p>".into()),
            ics: Some("BEGIN:VCALENDAR\r\nMETHOD:REQUEST\r\nEND:VCALENDAR\r\n".into()),
        };
        let raw = String::from_utf8(message(&from, "school.test", &m, Utc::now()).unwrap().formatted()).unwrap();
        assert!(raw.contains("Message-ID: <mail-7.t@school.test>"), "{raw}");
        assert!(raw.contains("multipart/mixed") && raw.contains("multipart/alternative"), "{raw}");
        assert!(raw.contains("Content-Type: text/calendar; charset=utf-8; method=REQUEST"), "{raw}");
        assert!(raw.contains("filename=\"invite.ics\""), "{raw}");
        let bad = Stored { to_email: "not an address".into(), ..m };
        assert!(message(&from, "school.test", &bad, Utc::now()).is_err());
    }
}

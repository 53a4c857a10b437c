//! Identity: tenants, users and their roles, parent ↔ child links, sessions (login, refresh, logout).
//!
//! Every query here is scoped by the caller's tenant id; a user of one tenant can neither read nor
//! change another tenant's rows. Input is parsed into the newtypes below at the edge.

pub mod error;
pub mod sessions;
pub mod tenants;
pub mod users;

use chrono::NaiveDate;

pub use error::{IdentityError, IdentityResult};

/// The handles the identity handlers use, extracted as one `State<Ctx>` (built from the app state in `app`).
#[derive(Clone)]
pub struct Ctx {
    pub db: crate::db::Db,
    pub clock: crate::clock::SharedClock,
    pub outbox: crate::outbox::Outbox,
    pub config: std::sync::Arc<crate::config::Config>,
    pub tokens: std::sync::Arc<crate::auth::Tokens>,
    pub login_limits: std::sync::Arc<crate::auth::limiter::LoginLimits>,
    pub signaling: signaling::Signaling,
}

/// A lower-cased, syntactically plausible e-mail address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> IdentityResult<Self> {
        let s = raw.trim().to_ascii_lowercase();
        let ok = s.len() <= 254
            && s.split_once('@').is_some_and(|(local, domain)| {
                !local.is_empty()
                    && domain.contains('.')
                    && !domain.starts_with('.')
                    && !domain.ends_with('.')
                    && !domain.contains('@')
            })
            && !s.chars().any(|c| c.is_whitespace() || c.is_control());
        if ok { Ok(Self(s)) } else { Err(IdentityError::invalid("invalid_email", "not a valid e-mail address")) }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A password within the accepted length.
pub struct Password(String);

impl Password {
    pub fn parse(raw: String) -> IdentityResult<Self> {
        let n = raw.chars().count();
        if n < crate::auth::password::MIN_LEN || raw.len() > crate::auth::password::MAX_LEN {
            return Err(IdentityError::invalid(
                "weak_password",
                format!(
                    "passwords must be {} to {} characters long",
                    crate::auth::password::MIN_LEN,
                    crate::auth::password::MAX_LEN
                ),
            ));
        }
        Ok(Self(raw))
    }
    pub fn into_inner(self) -> String {
        self.0
    }
}

/// A non-empty display name of reasonable length.
pub fn display_name(raw: &str) -> IdentityResult<String> {
    let s = raw.trim();
    if s.is_empty() || s.chars().count() > 100 {
        return Err(IdentityError::invalid("invalid_display_name", "display_name must be 1 to 100 characters"));
    }
    Ok(s.to_string())
}

/// Age in whole years on `today`.
pub fn age_on(birth: NaiveDate, today: NaiveDate) -> i32 {
    use chrono::Datelike;
    let mut age = today.year() - birth.year();
    if (today.month(), today.day()) < (birth.month(), birth.day()) {
        age -= 1;
    }
    age
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails() {
        assert_eq!(Email::parse(" Ann@Example.COM ").unwrap().as_str(), "ann@example.com");
        for bad in ["", "a", "a@b", "@b.c", "a@.c", "a@b.", "a b@c.d", "a@b@c.d"] {
            assert!(Email::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ages() {
        let d = |s| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        assert_eq!(age_on(d("2013-06-15"), d("2026-06-14")), 12);
        assert_eq!(age_on(d("2013-06-15"), d("2026-06-15")), 13);
        assert_eq!(age_on(d("2012-02-29"), d("2026-02-28")), 13);
    }
}

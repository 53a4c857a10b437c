//! Typed identifiers. Every id is a UUIDv7 (time-ordered) stored as text; parsing happens at the edge.

use std::{fmt, str::FromStr};

use serde::{Deserialize, Serialize};

macro_rules! id_type {
    ($($(#[$m:meta])* $name:ident),* $(,)?) => {$(
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
        #[serde(transparent)]
        #[schema(value_type = String, format = Uuid)]
        pub struct $name(pub uuid::Uuid);

        impl $name {
            pub fn new() -> Self {
                Self(uuid::Uuid::now_v7())
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = uuid::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                uuid::Uuid::parse_str(s).map(Self)
            }
        }

        impl $name {
            /// Decodes the id from a row column.
            pub fn from_column(s: &str) -> Result<Self, sqlx::Error> {
                s.parse().map_err(|e| sqlx::Error::Decode(format!("bad {} {s:?}: {e}", stringify!($name)).into()))
            }
        }
    )*};
}

id_type!(
    TenantId,
    UserId,
    CourseId,
    LessonId,
    ClassId,
    MeetingId,
    EnrollmentId,
    ConsentRequestId,
    BookingId,
    PackageId,
    PaymentId,
    RefundId,
);

//! Classes: courses with ordered lessons, classes (group or private) with their meetings and
//! package, enrollments, the append-only credit ledger, attendance, and lesson unlocks.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ClassKind {
    Group,
    Private,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ClassStatus {
    Draft,
    Active,
    Completed,
    Cancelled,
}

/// A student's attendance at one meeting. `present` and `late` cost one credit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum AttendanceStatus {
    Present,
    Late,
    Absent,
    Excused,
}

impl AttendanceStatus {
    /// Credits this status costs.
    pub fn cost(self) -> i64 {
        match self {
            AttendanceStatus::Present | AttendanceStatus::Late => 1,
            AttendanceStatus::Absent | AttendanceStatus::Excused => 0,
        }
    }
    pub fn attended(self) -> bool {
        self.cost() > 0
    }
}

/// Kinds of credit-ledger entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LedgerKind {
    Grant,
    AttendanceDeduction,
    AttendanceCorrection,
    ManualAdjustment,
    Refund,
}

macro_rules! text_enum {
    ($ty:ty { $($variant:ident = $text:literal),* $(,)? }) => {
        impl $ty {
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $text),* }
            }
            pub fn from_column(s: &str) -> Result<Self, sqlx::Error> {
                match s {
                    $($text => Ok(Self::$variant),)*
                    _ => Err(sqlx::Error::Decode(format!("bad {} {s:?}", stringify!($ty)).into())),
                }
            }
        }
    };
}
pub(crate) use text_enum;

text_enum!(ClassKind { Group = "group", Private = "private" });
text_enum!(ClassStatus { Draft = "draft", Active = "active", Completed = "completed", Cancelled = "cancelled" });
text_enum!(AttendanceStatus { Present = "present", Late = "late", Absent = "absent", Excused = "excused" });
text_enum!(LedgerKind {
    Grant = "grant",
    AttendanceDeduction = "attendance_deduction",
    AttendanceCorrection = "attendance_correction",
    ManualAdjustment = "manual_adjustment",
    Refund = "refund",
});

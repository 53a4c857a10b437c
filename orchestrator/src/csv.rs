//! CSV exports (attendance, earnings, revenue): one writer, so quoting and spreadsheet safety are the same
//! everywhere.

use axum::{
    http::header,
    response::{IntoResponse, Response},
};
use serde::Deserialize;
use utoipa::ToSchema;

/// `?format=` of report endpoints.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    #[default]
    Json,
    Csv,
}

/// Quotes fields with separators; neutralises leading formula characters for spreadsheet safety.
pub fn field(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@']) { format!("'{s}") } else { s.to_string() };
    if s.contains([',', '"', '\n', '\r']) { format!("\"{}\"", s.replace('"', "\"\"")) } else { s }
}

/// A `text/csv` attachment: `header` (already comma-separated) and one line per row.
pub fn response(header: &str, rows: impl Iterator<Item = Vec<String>>, filename: &str) -> Response {
    let mut out = String::from(header);
    out.push('\n');
    for row in rows {
        out.push_str(&row.iter().map(|f| field(f)).collect::<Vec<_>>().join(","));
        out.push('\n');
    }
    (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
            (header::CONTENT_DISPOSITION, format!("attachment; filename=\"{filename}\"")),
        ],
        out,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::field;

    #[test]
    fn fields_are_escaped_and_formula_safe() {
        assert_eq!(field("plain"), "plain");
        assert_eq!(field("a,b"), "\"a,b\"");
        assert_eq!(field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(field("=SUM(A1)"), "'=SUM(A1)");
        assert_eq!(field("-1750"), "'-1750");
    }
}

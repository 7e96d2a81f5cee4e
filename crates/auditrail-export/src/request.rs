//! What an export asks for, and its validation. The same rules serve the API (422 with
//! the field) and the CLI.

use auditrail_core::export::Layout;
use auditrail_core::query::{Field, Filter};
use auditrail_core::time;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    #[default]
    Csv,
    Ndjson,
    Parquet,
    /// OCSF API Activity records as JSON lines.
    Ocsf,
    /// OCSF API Activity records as Parquet.
    #[serde(rename = "ocsf_parquet")]
    OcsfParquet,
}

impl Format {
    pub fn extension(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::Ndjson => "ndjson",
            Format::Parquet => "parquet",
            Format::Ocsf => "ocsf.jsonl",
            Format::OcsfParquet => "ocsf.parquet",
        }
    }

    /// Whether the file holds OCSF records rather than the stored events.
    pub fn is_ocsf(self) -> bool {
        matches!(self, Format::Ocsf | Format::OcsfParquet)
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Csv => "text/csv; charset=utf-8",
            Format::Ndjson | Format::Ocsf => "application/x-ndjson",
            Format::Parquet | Format::OcsfParquet => "application/vnd.apache.parquet",
        }
    }
}

/// An export request as the API takes it (and the job stores it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExportRequest {
    /// Events that occurred at or after this time (RFC 3339, or `YYYY-MM-DD`: midnight UTC)
    #[schema(format = DateTime)]
    pub from: String,
    /// Events that occurred before this time, after `from` and within the server's
    /// `export_max_range` of it
    #[schema(format = DateTime)]
    pub to: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 256)]
    pub actor_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 256)]
    pub scope_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 256)]
    pub action: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 256)]
    pub resource_type: Option<String>,
    #[serde(default)]
    pub format: Format,
    /// CSV columns: `apollo` (Apollo Studio's) or `full` (then seq, id, received_at, leaf_hash)
    #[serde(default)]
    #[schema(value_type = String, pattern = "^(apollo|full)$")]
    pub layout: Layout,
    #[serde(default)]
    pub gzip: bool,
    /// Who is emailed the link when the export is ready
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(format = Email)]
    pub notify_email: Option<String>,
}

/// A request field that is wrong, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct Invalid {
    pub field: &'static str,
    pub reason: String,
}

fn invalid(field: &'static str, reason: impl Into<String>) -> Invalid {
    Invalid {
        field,
        reason: reason.into(),
    }
}

fn bound(field: &'static str, v: &str) -> Result<i64, Invalid> {
    time::parse_bound(v).map(time::micros).ok_or_else(|| {
        invalid(
            field,
            format!("`{v}` is not a time: use an RFC 3339 timestamp or YYYY-MM-DD"),
        )
    })
}

const MAX_FILTER_CHARS: usize = 256;

impl ExportRequest {
    /// Checks the request and returns the filter it selects: `occurred_at` in
    /// `[from, to)`, spanning at most `max_range_us`, plus the exact-match fields.
    pub fn validate(&self, max_range_us: i64) -> Result<Filter, Invalid> {
        let from = bound("from", &self.from)?;
        let to = bound("to", &self.to)?;
        if from >= to {
            return Err(invalid("from", "must be before `to`"));
        }
        if to - from > max_range_us {
            let days = max_range_us / 86_400_000_000;
            return Err(invalid(
                "to",
                format!("the range may span at most {days} days; split the export"),
            ));
        }
        if self.gzip && self.format == Format::Parquet {
            return Err(invalid(
                "gzip",
                "Parquet files are compressed inside; gzip applies to csv and ndjson",
            ));
        }
        if let Some(e) = &self.notify_email
            && !plausible_email(e)
        {
            return Err(invalid("notify_email", "must be an email address"));
        }
        let mut f = Filter::default();
        f.narrow_from(from);
        f.narrow_to(to);
        for (field, name, v) in [
            (Field::ActorId, "actor_id", &self.actor_id),
            (Field::ScopeId, "scope_id", &self.scope_id),
            (Field::Action, "action", &self.action),
            (Field::ResourceType, "resource_type", &self.resource_type),
        ] {
            if let Some(v) = v {
                if v.is_empty() || v.chars().count() > MAX_FILTER_CHARS {
                    return Err(invalid(
                        name,
                        format!("must be 1 to {MAX_FILTER_CHARS} characters"),
                    ));
                }
                f.require(field, v.clone());
            }
        }
        Ok(f)
    }

    /// The file name: `{id}.{ext}[.gz]`.
    pub fn file_name(&self, id: &str) -> String {
        let gz = if self.gzip { ".gz" } else { "" };
        format!("{id}.{}{gz}", self.format.extension())
    }
}

/// `local@domain.tld` without spaces or control characters, at most 254 bytes. Whether
/// it receives mail is for the SMTP server to say.
pub fn plausible_email(e: &str) -> bool {
    let Some((local, domain)) = e.rsplit_once('@') else {
        return false;
    };
    e.len() <= 254
        && !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !e
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '<' || c == '>')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(from: &str, to: &str) -> ExportRequest {
        ExportRequest {
            from: from.into(),
            to: to.into(),
            ..Default::default()
        }
    }

    const YEAR: i64 = 366 * 86_400_000_000;

    #[test]
    fn ranges_are_checked_with_the_field_named() {
        let f = req("2026-11-01", "2026-11-02T00:00:00Z")
            .validate(YEAR)
            .unwrap();
        assert_eq!(f.to_us.unwrap() - f.from_us.unwrap(), 86_400_000_000);
        let field = |r: ExportRequest| r.validate(YEAR).unwrap_err().field;
        assert_eq!(field(req("2026-11-02", "2026-11-01")), "from");
        assert_eq!(field(req("2026-11-01", "2026-11-01")), "from");
        assert_eq!(field(req("soon", "2026-11-01")), "from");
        assert_eq!(field(req("2026-11-01", "later")), "to");
        assert_eq!(field(req("2020-01-01", "2026-11-01")), "to");
        let mut r = req("2026-11-01", "2026-11-02");
        r.format = Format::Parquet;
        r.gzip = true;
        assert_eq!(field(r), "gzip");
        let mut r = req("2026-11-01", "2026-11-02");
        r.notify_email = Some("not an email".into());
        assert_eq!(field(r), "notify_email");
        let mut r = req("2026-11-01", "2026-11-02");
        r.actor_id = Some(String::new());
        assert_eq!(field(r), "actor_id");
    }

    #[test]
    fn filters_and_names() {
        let mut r = req("2026-11-01", "2026-11-02");
        r.actor_id = Some("u-1".into());
        r.scope_id = Some("g".into());
        let f = r.validate(YEAR).unwrap();
        assert_eq!(f.conds.len(), 2);
        assert_eq!(r.file_name("exp_1"), "exp_1.csv");
        r.gzip = true;
        r.format = Format::Ndjson;
        assert_eq!(r.file_name("exp_1"), "exp_1.ndjson.gz");
        let parsed: ExportRequest = serde_json::from_str(
            r#"{"from":"2026-11-01","to":"2026-11-02","format":"parquet","layout":"full"}"#,
        )
        .unwrap();
        assert_eq!(
            (parsed.format, parsed.layout),
            (Format::Parquet, Layout::Full)
        );
        assert!(
            serde_json::from_str::<ExportRequest>(r#"{"from":"a","to":"b","colour":1}"#).is_err()
        );
    }

    #[test]
    fn emails() {
        assert!(plausible_email("ada@example.com"));
        for bad in [
            "",
            "a",
            "@x.io",
            "a@x",
            "a b@x.io",
            "a@x.io\r\nBcc: e@vil.io",
            "a@.io",
        ] {
            assert!(!plausible_email(bad), "{bad:?}");
        }
    }
}

//! Search filters and the `q` syntax.
//!
//! `q` is a space-separated list of conditions, all of which must hold:
//! `field:value` (exact), `-field:value` (negated), `"quoted values"`, bare words (the
//! stored event text contains the word; `-word` that it does not), and time bounds on
//! `occurred_at`: `created:>=2026-11-01`, `created:<2026-11-02T12:00:00Z`, `created:2026-11-01`
//! (that whole UTC day).

use crate::time;

/// The indexed fields a condition can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Field {
    Action,
    ActorId,
    ResourceType,
    ResourceId,
    ScopeId,
}

impl Field {
    pub const ALL: [Field; 5] = [
        Field::Action,
        Field::ActorId,
        Field::ResourceType,
        Field::ResourceId,
        Field::ScopeId,
    ];

    /// A stable small number, used when hashing index terms.
    pub fn tag(self) -> u8 {
        match self {
            Field::Action => 1,
            Field::ActorId => 2,
            Field::ResourceType => 3,
            Field::ResourceId => 4,
            Field::ScopeId => 5,
        }
    }

    fn from_q(name: &str) -> Option<Self> {
        Some(match name {
            "action" => Field::Action,
            "actor" | "actor_id" => Field::ActorId,
            "resource_type" | "type" => Field::ResourceType,
            "resource" | "resource_id" => Field::ResourceId,
            "scope" | "scope_id" | "graph" => Field::ScopeId,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cond {
    pub field: Field,
    pub value: String,
    pub negate: bool,
}

/// Everything a search or export can filter on. All conditions must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Inclusive lower bound on `occurred_at`, microseconds since the epoch.
    pub from_us: Option<i64>,
    /// Exclusive upper bound on `occurred_at`.
    pub to_us: Option<i64>,
    pub conds: Vec<Cond>,
    /// Substrings of the stored event text, with negation.
    pub text: Vec<(String, bool)>,
}

impl Filter {
    pub fn require(&mut self, field: Field, value: impl Into<String>) {
        self.conds.push(Cond {
            field,
            value: value.into(),
            negate: false,
        });
    }

    pub fn narrow_from(&mut self, us: i64) {
        self.from_us = Some(self.from_us.map_or(us, |f| f.max(us)));
    }

    pub fn narrow_to(&mut self, us: i64) {
        self.to_us = Some(self.to_us.map_or(us, |t| t.min(us)));
    }

    /// Whether a time (`occurred_at`, microseconds) lies within the bounds.
    pub fn within(&self, us: i64) -> bool {
        !(self.from_us.is_some_and(|t| us < t) || self.to_us.is_some_and(|t| us >= t))
    }

    /// Whether the filter bounds the time at all.
    pub fn has_time_bounds(&self) -> bool {
        self.from_us.is_some() || self.to_us.is_some()
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum QueryError {
    #[error("unknown field `{0}`; use action, actor, resource_type, resource, scope or created")]
    UnknownField(String),
    #[error("unterminated quote")]
    Unterminated,
    #[error("`{0}` is not a time: use 2026-11-01 or an RFC 3339 timestamp")]
    BadTime(String),
    #[error("`created` cannot be negated; use the opposite comparison")]
    NegatedTime,
    #[error("empty value for `{0}`")]
    Empty(String),
}

fn tokens(q: &str) -> Result<Vec<String>, QueryError> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = q.chars().peekable();
    let mut in_quote = false;
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                in_quote = !in_quote;
                quoted = true;
            }
            '\\' if in_quote => {
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            c if c.is_whitespace() && !in_quote => {
                if !cur.is_empty() || quoted {
                    out.push(std::mem::take(&mut cur));
                }
                quoted = false;
            }
            c => cur.push(c),
        }
    }
    if in_quote {
        return Err(QueryError::Unterminated);
    }
    if !cur.is_empty() || quoted {
        out.push(cur);
    }
    Ok(out)
}

/// Parses `q` into `filter` (adding to what is already there).
pub fn parse_q(q: &str, filter: &mut Filter) -> Result<(), QueryError> {
    for tok in tokens(q)? {
        let (negate, body) = match tok.strip_prefix('-') {
            Some(rest) if !rest.is_empty() => (true, rest),
            _ => (false, tok.as_str()),
        };
        let Some((name, value)) = body.split_once(':') else {
            filter.text.push((body.to_owned(), negate));
            continue;
        };
        if name == "created" || name == "occurred_at" {
            if negate {
                return Err(QueryError::NegatedTime);
            }
            time_cond(value, filter)?;
            continue;
        }
        let field = Field::from_q(name).ok_or_else(|| QueryError::UnknownField(name.to_owned()))?;
        if value.is_empty() {
            return Err(QueryError::Empty(name.to_owned()));
        }
        filter.conds.push(Cond {
            field,
            value: value.to_owned(),
            negate,
        });
    }
    Ok(())
}

fn time_cond(value: &str, filter: &mut Filter) -> Result<(), QueryError> {
    let (op, t) = ["<=", ">=", "<", ">"]
        .iter()
        .find_map(|op| value.strip_prefix(op).map(|t| (*op, t)))
        .unwrap_or(("=", value));
    let at = time::parse_bound(t).ok_or_else(|| QueryError::BadTime(t.to_owned()))?;
    let us = time::micros(at);
    let is_day = !t.contains('T');
    let day = 86_400_000_000;
    match op {
        ">=" => filter.narrow_from(us),
        ">" => filter.narrow_from(if is_day { us + day } else { us + 1 }),
        "<" => filter.narrow_to(us),
        "<=" => filter.narrow_to(if is_day { us + day } else { us + 1 }),
        _ if is_day => {
            filter.narrow_from(us);
            filter.narrow_to(us + day);
        }
        _ => {
            filter.narrow_from(us);
            filter.narrow_to(us + 1);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(q: &str) -> Filter {
        let mut f = Filter::default();
        parse_q(q, &mut f).unwrap();
        f
    }

    #[test]
    fn parses_fields_negation_quotes_and_time() {
        let f = p(r#"actor:u-42 -action:login scope:"my graph" created:>=2026-11-01 timeout"#);
        assert_eq!(
            f.conds,
            vec![
                Cond {
                    field: Field::ActorId,
                    value: "u-42".into(),
                    negate: false
                },
                Cond {
                    field: Field::Action,
                    value: "login".into(),
                    negate: true
                },
                Cond {
                    field: Field::ScopeId,
                    value: "my graph".into(),
                    negate: false
                },
            ]
        );
        assert_eq!(f.text, vec![("timeout".to_owned(), false)]);
        assert_eq!(f.from_us, time::parse_bound("2026-11-01").map(time::micros));
        assert_eq!(f.to_us, None);
    }

    #[test]
    fn day_and_bounds() {
        let f = p("created:2026-11-01");
        let d = time::micros(time::parse_bound("2026-11-01").unwrap());
        assert_eq!((f.from_us, f.to_us), (Some(d), Some(d + 86_400_000_000)));
        let f = p("created:<=2026-11-01 created:>2026-10-30");
        assert_eq!(f.to_us, Some(d + 86_400_000_000));
        assert_eq!(f.from_us, Some(d - 86_400_000_000));
        let f = p(r#""quoted \"word\"" -"two words""#);
        assert_eq!(
            f.text,
            vec![
                ("quoted \"word\"".into(), false),
                ("two words".into(), true)
            ]
        );
    }

    #[test]
    fn errors_are_precise() {
        let mut f = Filter::default();
        assert_eq!(
            parse_q("colour:red", &mut f),
            Err(QueryError::UnknownField("colour".into()))
        );
        assert_eq!(parse_q("actor:\"u", &mut f), Err(QueryError::Unterminated));
        assert_eq!(
            parse_q("created:>=soon", &mut f),
            Err(QueryError::BadTime("soon".into()))
        );
        assert_eq!(
            parse_q("-created:2026-01-01", &mut f),
            Err(QueryError::NegatedTime)
        );
        assert_eq!(
            parse_q("actor:", &mut f),
            Err(QueryError::Empty("actor".into()))
        );
    }

    proptest::proptest! {
        #[test]
        fn quoted_values_round_trip(v in "[^\"\\\\]{1,20}") {
            let mut f = Filter::default();
            parse_q(&format!("actor:\"{v}\""), &mut f).unwrap();
            proptest::prop_assert_eq!(&f.conds[0].value, &v);
        }
    }
}

//! Whether each audited field succeeded, read from the upstream's answer: `failure` with
//! the error's message when an error's `path` starts at the field (or when the whole
//! request failed), else `success`.

use serde_json::Value;

/// What became of one audited field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Failure(String),
    /// The gateway could not learn it (the upstream did not answer in time, or the
    /// gateway stopped while it was answering).
    Unknown(String),
}

impl Outcome {
    pub fn name(&self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure(_) => "failure",
            Outcome::Unknown(_) => "unknown",
        }
    }

    /// The reason, for `context.error`.
    pub fn reason(&self) -> Option<&str> {
        match self {
            Outcome::Success => None,
            Outcome::Failure(r) | Outcome::Unknown(r) => Some(r),
        }
    }
}

/// Longest reason kept (the event model's limit on text values).
const MAX_REASON: usize = auditrail_core::event::MAX_TEXT_LEN;

fn clip(s: &str) -> String {
    if s.chars().count() <= MAX_REASON {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(MAX_REASON - 1).collect();
    out.push('…');
    out
}

/// The outcomes of every audited field of every request of one HTTP exchange.
/// `keys[i]` are the response keys of request `i`'s audited fields; `body` is the
/// response body when it was read.
pub fn read(
    status: u16,
    body: Option<&[u8]>,
    batch: bool,
    keys: &[Vec<String>],
) -> Vec<Vec<Outcome>> {
    let parsed: Option<Value> = body.and_then(|b| serde_json::from_slice(b).ok());
    let ok = (200..300).contains(&status);
    match (&parsed, batch) {
        (Some(Value::Array(items)), true) if items.len() == keys.len() => items
            .iter()
            .zip(keys)
            .map(|(item, k)| one(Some(item), ok, status, k))
            .collect(),
        (Some(v), false) => keys.iter().map(|k| one(Some(v), ok, status, k)).collect(),
        _ => keys.iter().map(|k| one(None, ok, status, k)).collect(),
    }
}

fn http_failure(status: u16) -> Outcome {
    Outcome::Failure(format!("upstream answered HTTP {status}"))
}

fn one(resp: Option<&Value>, ok: bool, status: u16, keys: &[String]) -> Vec<Outcome> {
    let all = |o: Outcome| vec![o; keys.len()];
    let Some(Value::Object(resp)) = resp else {
        return all(if ok {
            Outcome::Success
        } else {
            http_failure(status)
        });
    };
    let errors: &[Value] = resp
        .get("errors")
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice);
    let message = |e: &Value| {
        clip(
            e.get("message")
                .and_then(Value::as_str)
                .unwrap_or("error without a message"),
        )
    };
    let data = resp.get("data").filter(|d| !d.is_null());
    if data.is_none() {
        // The whole request failed: a parse or validation error, or a null root.
        return all(match errors.first() {
            Some(e) => Outcome::Failure(message(e)),
            None if ok => Outcome::Failure("the response has no data".into()),
            None => http_failure(status),
        });
    }
    keys.iter()
        .map(|k| {
            let err = errors.iter().find(|e| {
                e.get("path")
                    .and_then(Value::as_array)
                    .and_then(|p| p.first())
                    .and_then(Value::as_str)
                    == Some(k.as_str())
            });
            match err {
                Some(e) => Outcome::Failure(message(e)),
                None if ok => Outcome::Success,
                None => http_failure(status),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn an_error_on_one_field_of_two() {
        let body = br#"{"data":{"a":{"id":1},"b":null},"errors":[{"message":"no such project","path":["b"]}]}"#;
        let o = read(200, Some(body), false, &[k(&["a", "b"])]);
        assert_eq!(
            o,
            vec![vec![
                Outcome::Success,
                Outcome::Failure("no such project".into())
            ]]
        );
    }

    #[test]
    fn the_whole_request_failed() {
        let body = br#"{"errors":[{"message":"Unknown argument"}]}"#;
        let o = read(400, Some(body), false, &[k(&["a", "b"])]);
        assert_eq!(o[0], vec![Outcome::Failure("Unknown argument".into()); 2]);
        let o = read(
            200,
            Some(br#"{"data":null,"errors":[{"message":"x","path":["a"]}]}"#),
            false,
            &[k(&["a"])],
        );
        assert_eq!(o[0], vec![Outcome::Failure("x".into())]);
        let o = read(502, Some(b"<html>bad gateway</html>"), false, &[k(&["a"])]);
        assert_eq!(
            o[0],
            vec![Outcome::Failure("upstream answered HTTP 502".into())]
        );
        let o = read(200, None, false, &[k(&["a"])]);
        assert_eq!(o[0], vec![Outcome::Success]);
    }

    #[test]
    fn batches_answer_in_order() {
        let body = br#"[{"data":{"a":1}},{"errors":[{"message":"boom"}]}]"#;
        let o = read(200, Some(body), true, &[k(&["a"]), k(&["a"])]);
        assert_eq!(
            o,
            vec![
                vec![Outcome::Success],
                vec![Outcome::Failure("boom".into())]
            ]
        );
        // A batch answered with one error object fails every request of it.
        let o = read(
            400,
            Some(br#"{"errors":[{"message":"batching is off"}]}"#),
            true,
            &[k(&["a"]), k(&["b"])],
        );
        assert_eq!(
            o[1],
            vec![Outcome::Failure("upstream answered HTTP 400".into())]
        );
    }

    #[test]
    fn long_messages_are_clipped() {
        let long = "x".repeat(5000);
        let body =
            serde_json::to_vec(&serde_json::json!({"data": null, "errors": [{"message": long}]}))
                .unwrap();
        let o = read(200, Some(&body), false, &[k(&["a"])]);
        assert_eq!(o[0][0].reason().unwrap().chars().count(), MAX_REASON);
    }
}

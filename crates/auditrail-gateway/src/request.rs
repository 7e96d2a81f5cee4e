//! GraphQL over HTTP, as servers accept it: `POST` with `application/json` (one request
//! object or a batch array), `POST` with `application/graphql` (the document as the body,
//! the rest in the URL), and `GET` with `query`, `operationName`, `variables` parameters.

use serde_json::{Map, Value};

/// One GraphQL request: a document, the operation to run and its variables.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GraphqlRequest {
    pub query: String,
    pub operation_name: Option<String>,
    pub variables: Map<String, Value>,
}

/// What an HTTP request carried.
#[derive(Debug, Clone, PartialEq)]
pub enum Requests {
    Single(GraphqlRequest),
    /// A batch: a JSON array of requests, answered by an array in the same order.
    Batch(Vec<GraphqlRequest>),
}

impl Requests {
    pub fn as_slice(&self) -> &[GraphqlRequest] {
        match self {
            Requests::Single(r) => std::slice::from_ref(r),
            Requests::Batch(v) => v,
        }
    }

    pub fn is_batch(&self) -> bool {
        matches!(self, Requests::Batch(_))
    }
}

/// Why a request is not a GraphQL request the gateway can read. Such requests are
/// forwarded all the same (the upstream answers them with its own error) and counted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Malformed(pub String);

fn malformed(m: impl Into<String>) -> Malformed {
    Malformed(m.into())
}

/// Reads the GraphQL request(s) of one HTTP request.
pub fn parse(
    method: &http::Method,
    content_type: Option<&str>,
    query_string: Option<&str>,
    body: &[u8],
) -> Result<Requests, Malformed> {
    let params = || -> Result<Vec<(String, String)>, Malformed> {
        serde_urlencoded::from_str(query_string.unwrap_or(""))
            .map_err(|e| malformed(format!("query string: {e}")))
    };
    let mime = content_type
        .and_then(|c| c.split(';').next())
        .map(|c| c.trim().to_ascii_lowercase());
    if method == http::Method::GET {
        return from_params(params()?, None).map(Requests::Single);
    }
    if method != http::Method::POST {
        return Err(malformed(format!(
            "method {method} carries no GraphQL request"
        )));
    }
    match mime.as_deref() {
        Some("application/graphql") => {
            let doc = std::str::from_utf8(body)
                .map_err(|_| malformed("body is not UTF-8"))?
                .to_owned();
            from_params(params()?, Some(doc)).map(Requests::Single)
        }
        Some("application/json") | None => from_json(body),
        Some(m) if m.ends_with("+json") => from_json(body),
        Some(m) => Err(malformed(format!(
            "content type {m} is not a GraphQL request"
        ))),
    }
}

fn from_params(
    params: Vec<(String, String)>,
    body_query: Option<String>,
) -> Result<GraphqlRequest, Malformed> {
    let mut r = GraphqlRequest::default();
    let mut query = body_query;
    for (k, v) in params {
        match k.as_str() {
            "query" if query.is_none() => query = Some(v),
            "operationName" if !v.is_empty() => r.operation_name = Some(v),
            "variables" if !v.is_empty() => {
                r.variables = variables(
                    serde_json::from_str(&v).map_err(|e| malformed(format!("variables: {e}")))?,
                )?
            }
            _ => {}
        }
    }
    r.query = query.ok_or_else(|| malformed("no query"))?;
    Ok(r)
}

fn variables(v: Value) -> Result<Map<String, Value>, Malformed> {
    match v {
        Value::Object(m) => Ok(m),
        Value::Null => Ok(Map::new()),
        _ => Err(malformed("variables must be an object")),
    }
}

fn from_json(body: &[u8]) -> Result<Requests, Malformed> {
    let v: Value =
        serde_json::from_slice(body).map_err(|e| malformed(format!("body is not JSON: {e}")))?;
    match v {
        Value::Array(items) if items.is_empty() => Err(malformed("empty batch")),
        Value::Array(items) => items
            .into_iter()
            .map(one)
            .collect::<Result<_, _>>()
            .map(Requests::Batch),
        v => one(v).map(Requests::Single),
    }
}

fn one(v: Value) -> Result<GraphqlRequest, Malformed> {
    let Value::Object(mut m) = v else {
        return Err(malformed("a GraphQL request must be a JSON object"));
    };
    let query = match m.remove("query") {
        Some(Value::String(q)) => q,
        Some(_) => return Err(malformed("query must be a string")),
        None => return Err(malformed("no query (persisted queries are not read)")),
    };
    let operation_name = match m.remove("operationName") {
        Some(Value::String(s)) => Some(s),
        Some(Value::Null) | None => None,
        Some(_) => return Err(malformed("operationName must be a string")),
    };
    let variables = variables(m.remove("variables").unwrap_or(Value::Null))?;
    Ok(GraphqlRequest {
        query,
        operation_name,
        variables,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Method;
    use serde_json::json;

    #[test]
    fn json_single_and_batch() {
        let body = br#"{"query":"mutation M($n:String){addProject(name:$n){id}}","operationName":"M","variables":{"n":"x"}}"#;
        let Requests::Single(r) = parse(
            &Method::POST,
            Some("application/json; charset=utf-8"),
            None,
            body,
        )
        .unwrap() else {
            panic!("single expected")
        };
        assert_eq!(r.operation_name.as_deref(), Some("M"));
        assert_eq!(r.variables["n"], json!("x"));
        let batch = br#"[{"query":"{a}"},{"query":"{b}","variables":null}]"#;
        let rs = parse(&Method::POST, Some("application/json"), None, batch).unwrap();
        assert!(rs.is_batch());
        assert_eq!(rs.as_slice()[1].query, "{b}");
    }

    #[test]
    fn graphql_body_and_get() {
        let r = parse(
            &Method::POST,
            Some("application/graphql"),
            Some("operationName=A&variables=%7B%22x%22%3A1%7D"),
            b"query A { a }",
        )
        .unwrap();
        assert_eq!(r.as_slice()[0].query, "query A { a }");
        assert_eq!(r.as_slice()[0].variables["x"], json!(1));
        let g = parse(
            &Method::GET,
            None,
            Some("query=%7Ba%7D&operationName="),
            b"",
        )
        .unwrap();
        assert_eq!(g.as_slice()[0].query, "{a}");
        assert_eq!(g.as_slice()[0].operation_name, None);
    }

    #[test]
    fn malformed_requests() {
        for (m, ct, qs, body) in [
            (Method::POST, Some("application/json"), None, &b"{"[..]),
            (Method::POST, Some("application/json"), None, b"[]"),
            (
                Method::POST,
                Some("application/json"),
                None,
                br#"{"extensions":{}}"#,
            ),
            (
                Method::POST,
                Some("application/json"),
                None,
                br#"{"query":1}"#,
            ),
            (
                Method::POST,
                Some("application/json"),
                None,
                br#"{"query":"{a}","variables":[1]}"#,
            ),
            (Method::POST, Some("text/plain"), None, b"{a}"),
            (Method::GET, None, Some("variables=%7B"), b""),
            (Method::GET, None, None, b""),
            (Method::PUT, None, None, b"{}"),
        ] {
            assert!(parse(&m, ct, qs, body).is_err(), "{m} {ct:?} {qs:?}");
        }
    }
}

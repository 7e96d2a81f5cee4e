//! The one place errors become HTTP responses.
//!
//! Library errors are typed; here each maps to a status and a stable `code`:
//! NotFound→404, Conflict→409, Overloaded/Unavailable→503 with `Retry-After`. Anything
//! else is logged and answered as a generic 500: driver errors never reach a client.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use auditrail_service::ServiceError;
use auditrail_store::StoreError;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub details: Vec<Value>,
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            details: Vec::new(),
            retry_after: None,
        }
    }

    pub fn with_details(mut self, details: Vec<Value>) -> Self {
        self.details = details;
        self
    }

    pub fn unauthorized(msg: &str) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", msg)
    }

    pub fn forbidden(msg: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", msg)
    }

    pub fn not_found(what: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{what} not found"),
        )
    }

    pub fn bad_request(code: &'static str, msg: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, msg)
    }

    /// 422 naming one field.
    pub fn invalid_field(field: &str, reason: impl Into<String>) -> Self {
        let reason = reason.into();
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            format!("{field}: {reason}"),
        )
        .with_details(vec![json!({"field": field, "reason": reason})])
    }

    /// The field the error names, if it names one.
    pub fn field(&self) -> Option<&str> {
        self.details.first().and_then(|d| d["field"].as_str())
    }

    /// A generic 500; what went wrong is logged, never sent to the client.
    pub fn internal(what: impl std::fmt::Display) -> Self {
        tracing::error!(error = %what, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error",
        )
    }

    fn unavailable(code: &'static str, msg: impl Into<String>) -> Self {
        let mut e = Self::new(StatusCode::SERVICE_UNAVAILABLE, code, msg);
        e.retry_after = Some(1);
        e
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound { what } => Self::not_found(what),
            StoreError::Conflict(m) => Self::new(StatusCode::CONFLICT, "conflict", m),
            StoreError::OutOfOrder(m) => Self::new(StatusCode::CONFLICT, "batch_out_of_order", m),
            StoreError::Overloaded => {
                Self::unavailable("overloaded", "the write queue is full; retry shortly")
            }
            StoreError::Unavailable(m) => {
                tracing::warn!(error = %m, "storage unavailable");
                Self::unavailable("unavailable", "storage is unavailable; retry shortly")
            }
            other => Self::internal(other),
        }
    }
}

/// The service's errors, mapped to statuses here and nowhere else.
impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::Store(s) => s.into(),
            ServiceError::InvalidEvent { message, details } => {
                Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_event", message)
                    .with_details(details)
            }
            ServiceError::NotFound(what) => Self::not_found(what),
            other => Self::internal(other),
        }
    }
}

/// A query string that does not parse: 422 with axum's description of the problem.
impl From<axum::extract::rejection::QueryRejection> for ApiError {
    fn from(e: axum::extract::rejection::QueryRejection) -> Self {
        let text = e.body_text();
        let err = Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_query", &text);
        // serde names an unknown or missing parameter between backticks.
        let field = ["unknown field `", "missing field `", "duplicate field `"]
            .iter()
            .find_map(|p| text.split_once(p))
            .and_then(|(_, rest)| rest.split('`').next());
        match field {
            Some(f) => err.with_details(vec![json!({"field": f, "reason": text})]),
            None => err,
        }
    }
}

/// Every error answer: `{"error": {code, message, details}}`.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
#[schema(as = Error)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Stable and machine-readable, e.g. `invalid_field`, `not_found`, `overloaded`.
    pub code: &'static str,
    /// For people.
    pub message: String,
    /// What exactly is wrong, one entry each: `field` (dotted path), `reason`, and for a
    /// batch the event's `index`.
    #[schema(value_type = Vec<Object>)]
    pub details: Vec<Value>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code,
                message: self.message,
                details: self.details,
            },
        };
        let mut resp = (self.status, Json(body)).into_response();
        if let Some(s) = self.retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        resp
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

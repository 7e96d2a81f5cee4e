//! The witness's HTTP face: `POST /add-checkpoint` and the monitoring
//! `GET /<sha256(origin) hex>/checkpoint`.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use sha2::{Digest, Sha256};

use auditrail_core::witness::Refusal;

use crate::{AddError, Witness};

/// A request body larger than this is refused: a checkpoint, 63 proof lines and a few
/// signatures fit many times over.
const MAX_BODY: usize = 64 * 1024;

pub fn router(w: Arc<Witness>) -> Router {
    Router::new()
        .route("/add-checkpoint", post(add_checkpoint))
        .route("/{origin_hash}/checkpoint", get(checkpoint))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(w)
}

fn text(status: StatusCode, ct: &'static str, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, ct)], body).into_response()
}

async fn add_checkpoint(State(w): State<Arc<Witness>>, body: Bytes) -> Response {
    let Ok(body) = std::str::from_utf8(&body) else {
        return text(
            StatusCode::BAD_REQUEST,
            "text/plain; charset=utf-8",
            "request body is not UTF-8\n".into(),
        );
    };
    let body = body.to_owned();
    let w2 = w.clone();
    let result = tokio::task::spawn_blocking(move || w2.add_checkpoint(&body)).await;
    match result {
        Ok(Ok(lines)) => text(StatusCode::OK, "text/plain; charset=utf-8", lines),
        Ok(Err(AddError::Refused(Refusal::Conflict { known, .. }))) => text(
            StatusCode::CONFLICT,
            "text/x.tlog.size",
            format!("{known}\n"),
        ),
        Ok(Err(AddError::Refused(r))) => {
            tracing::info!(refusal = %r, "add-checkpoint refused");
            let status = StatusCode::from_u16(r.status()).unwrap_or(StatusCode::BAD_REQUEST);
            text(status, "text/plain; charset=utf-8", format!("{r}\n"))
        }
        Ok(Err(e @ AddError::Internal(_))) => {
            tracing::error!(error = %e, "add-checkpoint failed");
            text(
                StatusCode::INTERNAL_SERVER_ERROR,
                "text/plain; charset=utf-8",
                format!("{e}\n"),
            )
        }
        Err(e) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            "text/plain; charset=utf-8",
            format!("{e}\n"),
        ),
    }
}

async fn checkpoint(State(w): State<Arc<Witness>>, Path(origin_hash): Path<String>) -> Response {
    let found = w
        .logs
        .keys()
        .find(|o| hex::encode(Sha256::digest(o.as_bytes())) == origin_hash)
        .cloned();
    let Some(origin) = found else {
        return StatusCode::NOT_FOUND.into_response();
    };
    match w.state().get(&origin) {
        Ok(Some(s)) => text(StatusCode::OK, "text/plain; charset=utf-8", s.note),
        Ok(None) => StatusCode::NOT_FOUND.into_response(),
        Err(e) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            "text/plain; charset=utf-8",
            format!("{e}\n"),
        ),
    }
}

/// Serves the witness on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    w: Arc<Witness>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(w))
        .with_graceful_shutdown(shutdown)
        .await
}

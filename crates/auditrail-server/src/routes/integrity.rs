//! Checkpoints, the public key, and proofs.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde::Deserialize;
use serde_json::{Value, json};

use auditrail_store::{Role, proofs};

use crate::App;
use crate::auth::Principal;
use crate::checkpoint_signer;
use crate::error::{ApiError, ApiResult};

const TEXT: &str = "text/plain; charset=utf-8";

#[utoipa::path(get, path = "/v1/checkpoints/latest", responses((status = 200, description = "the latest signed checkpoint (C2SP signed note)", content_type = "text/plain")))]
pub async fn latest_checkpoint(State(app): State<Arc<App>>, who: Principal) -> ApiResult<Response> {
    let org = who.org_with(&[Role::Viewer, Role::Admin])?;
    let head = app.store.tree_head(org).await?;
    let note = checkpoint_signer::covering(&app, org, head.size).await?;
    Ok(([(header::CONTENT_TYPE, TEXT)], note).into_response())
}

#[utoipa::path(get, path = "/v1/public-key", responses((status = 200, description = "C2SP note verifier key", content_type = "text/plain")))]
pub async fn public_key(State(app): State<Arc<App>>, who: Principal) -> ApiResult<Response> {
    who.org_with(&[Role::Viewer, Role::Admin])?;
    Ok((
        [(header::CONTENT_TYPE, TEXT)],
        format!("{}\n", app.signer.verifier_key()),
    )
        .into_response())
}

#[derive(Debug, Deserialize)]
pub struct InclusionParams {
    seq: Option<String>,
    tree_size: Option<String>,
}

fn num(name: &str, v: &Option<String>) -> ApiResult<Option<u64>> {
    v.as_deref()
        .map(|s| {
            s.parse::<u64>()
                .map_err(|_| ApiError::invalid_field(name, "must be a positive whole number"))
        })
        .transpose()
}

fn b64(hashes: &[[u8; 32]]) -> Vec<String> {
    hashes.iter().map(|h| B64.encode(h)).collect()
}

#[utoipa::path(get, path = "/v1/proofs/inclusion", params(("seq" = u64, Query), ("tree_size" = Option<u64>, Query, description = "default: the current size")),
    responses((status = 200, description = "RFC 9162 inclusion proof, hashes base64")))]
pub async fn inclusion(
    State(app): State<Arc<App>>,
    who: Principal,
    Query(p): Query<InclusionParams>,
) -> ApiResult<Json<Value>> {
    let org = who.org_with(&[Role::Viewer, Role::Admin])?;
    let seq = num("seq", &p.seq)?.ok_or_else(|| ApiError::invalid_field("seq", "is required"))?;
    if seq == 0 {
        return Err(ApiError::invalid_field("seq", "seqs start at 1"));
    }
    let current = app.store.tree_head(org).await?.size;
    let size = num("tree_size", &p.tree_size)?.unwrap_or(current);
    if size > current {
        return Err(ApiError::invalid_field(
            "tree_size",
            format!("the log has {current} events"),
        ));
    }
    if seq > size {
        return Err(ApiError::invalid_field(
            "seq",
            format!("is beyond tree_size {size}"),
        ));
    }
    let p = proofs::inclusion(app.store.as_ref(), org, current, seq - 1, size).await?;
    Ok(Json(json!({
        "seq": seq, "leaf_index": seq - 1, "tree_size": size,
        "leaf_hash": B64.encode(p.leaf), "root_hash": B64.encode(p.root), "hashes": b64(&p.hashes),
    })))
}

#[derive(Debug, Deserialize)]
pub struct ConsistencyParams {
    from: Option<String>,
    to: Option<String>,
}

#[utoipa::path(get, path = "/v1/proofs/consistency", params(("from" = u64, Query), ("to" = Option<u64>, Query, description = "default: the current size")),
    responses((status = 200, description = "RFC 9162 consistency proof, hashes base64")))]
pub async fn consistency(
    State(app): State<Arc<App>>,
    who: Principal,
    Query(p): Query<ConsistencyParams>,
) -> ApiResult<Json<Value>> {
    let org = who.org_with(&[Role::Viewer, Role::Admin])?;
    let from =
        num("from", &p.from)?.ok_or_else(|| ApiError::invalid_field("from", "is required"))?;
    let current = app.store.tree_head(org).await?.size;
    let to = num("to", &p.to)?.unwrap_or(current);
    if from == 0 {
        return Err(ApiError::invalid_field("from", "must be at least 1"));
    }
    if to > current {
        return Err(ApiError::invalid_field(
            "to",
            format!("the log has {current} events"),
        ));
    }
    if from > to {
        return Err(ApiError::invalid_field("from", "must not exceed `to`"));
    }
    let p = proofs::consistency(app.store.as_ref(), org, current, from, to).await?;
    Ok(Json(
        json!({"from": from, "to": to, "from_root": B64.encode(p.from_root), "to_root": B64.encode(p.to_root), "hashes": b64(&p.hashes)}),
    ))
}

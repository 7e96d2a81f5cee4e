//! Checkpoints, the public key, and proofs.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
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

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct InclusionParams {
    /// The event's seq
    #[param(value_type = u64, minimum = 1, required = true)]
    seq: Option<String>,
    /// The tree the proof is for; default: the current size. Beyond the current size: 409.
    #[param(value_type = Option<u64>, minimum = 1)]
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

#[utoipa::path(get, path = "/v1/proofs/inclusion", params(InclusionParams),
    responses((status = 200, description = "RFC 9162 inclusion proof, hashes base64"), (status = 409, description = "`tree_size` (or `seq`) beyond the log's current size")))]
pub async fn inclusion(
    State(app): State<Arc<App>>,
    who: Principal,
    params: Result<Query<InclusionParams>, QueryRejection>,
) -> ApiResult<Json<Value>> {
    let org = who.org_with(&[Role::Viewer, Role::Admin])?;
    let Query(p) = params?;
    let seq = num("seq", &p.seq)?.ok_or_else(|| ApiError::invalid_field("seq", "is required"))?;
    if seq == 0 {
        return Err(ApiError::invalid_field("seq", "seqs start at 1"));
    }
    let current = app.store.tree_head(org).await?.size;
    let size = num("tree_size", &p.tree_size)?.unwrap_or(current);
    if size > current {
        return Err(beyond_head("tree_size", current));
    }
    if p.tree_size.is_none() && seq > size {
        return Err(beyond_head("seq", current));
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

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ConsistencyParams {
    /// The older tree's size
    #[param(value_type = u64, minimum = 1, required = true)]
    from: Option<String>,
    /// The newer tree's size, at least `from`; default: the current size. Beyond the
    /// current size: 409.
    #[param(value_type = Option<u64>, minimum = 1)]
    to: Option<String>,
}

/// 409: the request names a tree larger than the log is now.
fn beyond_head(field: &str, current: u64) -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "beyond_head",
        format!("{field}: the log has {current} events"),
    )
    .with_details(vec![
        json!({"field": field, "reason": format!("the log has {current} events")}),
    ])
}

#[utoipa::path(get, path = "/v1/proofs/consistency", params(ConsistencyParams),
    responses((status = 200, description = "RFC 9162 consistency proof, hashes base64"), (status = 409, description = "`to` (or `from`) beyond the log's current size")))]
pub async fn consistency(
    State(app): State<Arc<App>>,
    who: Principal,
    params: Result<Query<ConsistencyParams>, QueryRejection>,
) -> ApiResult<Json<Value>> {
    let org = who.org_with(&[Role::Viewer, Role::Admin])?;
    let Query(p) = params?;
    let from =
        num("from", &p.from)?.ok_or_else(|| ApiError::invalid_field("from", "is required"))?;
    let current = app.store.tree_head(org).await?.size;
    let to = num("to", &p.to)?.unwrap_or(current);
    if from == 0 {
        return Err(ApiError::invalid_field("from", "must be at least 1"));
    }
    if to > current {
        return Err(beyond_head("to", current));
    }
    if p.to.is_none() && from > to {
        return Err(beyond_head("from", current));
    }
    if from > to {
        return Err(ApiError::invalid_field("from", "must not exceed `to`"));
    }
    let p = proofs::consistency(app.store.as_ref(), org, current, from, to).await?;
    Ok(Json(
        json!({"from": from, "to": to, "from_root": B64.encode(p.from_root), "to_root": B64.encode(p.to_root), "hashes": b64(&p.hashes)}),
    ))
}

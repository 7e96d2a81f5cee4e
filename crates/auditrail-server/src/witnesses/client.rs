//! Asks every witness of an org to cosign a new checkpoint (C2SP `add-checkpoint`, with
//! the consistency proof from the size it last cosigned) and keeps the cosignatures that
//! verify.

use auditrail_core::cosignature::{CosignatureVerifier, add_signature_lines};
use auditrail_core::note::{signature_line, split_note};
use auditrail_core::witness::AddCheckpoint;
use auditrail_store::proofs;

use super::{Conflict, WitnessConfig, WitnessState};
use crate::App;
use crate::error::ApiResult;

/// A witness's answer is a few signature lines (or a size, or an error line).
const MAX_ANSWER: usize = 64 * 1024;

enum Outcome {
    Cosigned(String),
    Conflict { status: u16, detail: String },
    Failed(String),
}

/// A witness's answer to one submission.
enum Answer {
    Lines(String),
    /// 409: the size it holds.
    Holds(u64),
    Refused(u16, String),
}

async fn submit(app: &App, url: &str, body: String) -> Result<Answer, String> {
    let url = reqwest::Url::parse(&format!("{}/add-checkpoint", url.trim_end_matches('/')))
        .map_err(|e| format!("witness url: {e}"))?;
    app.settings
        .outbound
        .check_literal(&url)
        .map_err(|e| e.to_string())?;
    let client = app.witness_client().map_err(|e| e.to_string())?;
    let resp = client
        .post(url)
        .header("content-type", "text/plain; charset=utf-8")
        .body(body)
        .send()
        .await
        .map_err(|e| match crate::outbound::refusal_in(&e) {
            Some(r) => r.to_string(),
            None => format!(
                "witness unreachable: {}",
                crate::delivery::sts::short_reqwest(&e)
            ),
        })?;
    let status = resp.status().as_u16();
    // The URL is the org's choice: read at most what a cosignature answer can be.
    let mut resp = resp;
    let mut body = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| format!("witness answer: {e}"))?
    {
        if body.len() + chunk.len() > MAX_ANSWER {
            return Err(format!("the witness answered more than {MAX_ANSWER} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    let text = String::from_utf8_lossy(&body).into_owned();
    Ok(match status {
        200 => Answer::Lines(text),
        409 => match text.trim().parse::<u64>() {
            Ok(n) => Answer::Holds(n),
            Err(_) => Answer::Refused(409, format!("409 without a size: {}", text.trim())),
        },
        s => Answer::Refused(s, text.trim().chars().take(300).collect()),
    })
}

async fn one(
    app: &App,
    org: &str,
    w: &WitnessConfig,
    mut old: u64,
    note: &str,
    size: u64,
) -> Outcome {
    let v = match CosignatureVerifier::parse(&w.verifier_key) {
        Ok(v) => v,
        Err(e) => return Outcome::Failed(format!("verifier_key: {e}")),
    };
    let Ok((text, _)) = split_note(note) else {
        return Outcome::Failed("the checkpoint note is malformed".into());
    };
    // Twice at most: a witness that holds another size than we remember says which, and
    // the second submission proves consistency from there.
    for _ in 0..2 {
        if old > size {
            return Outcome::Conflict {
                status: 409,
                detail: format!(
                    "the witness has cosigned a tree of {old} events; this checkpoint has {size}: the log was rolled back"
                ),
            };
        }
        let proof = if old == 0 || old == size {
            Vec::new()
        } else {
            match proofs::consistency(app.store.as_ref(), org, size, old, size).await {
                Ok(p) => p.hashes,
                Err(e) => return Outcome::Failed(format!("consistency proof from {old}: {e}")),
            }
        };
        let body = AddCheckpoint {
            old_size: old,
            proof,
            checkpoint: note.to_owned(),
        }
        .encode();
        match submit(app, &w.url, body).await {
            Err(e) => return Outcome::Failed(e),
            Ok(Answer::Lines(lines)) => {
                let mut good = String::new();
                for line in lines.lines() {
                    if let Ok((name, blob)) = signature_line(line)
                        && v.claims(name, &blob)
                        && v.check(text, &blob).is_ok()
                    {
                        good.push_str(line);
                        good.push('\n');
                    }
                }
                return if good.is_empty() {
                    Outcome::Failed(
                        "the witness answered no cosignature that verifies with its verifier_key"
                            .into(),
                    )
                } else {
                    Outcome::Cosigned(good)
                };
            }
            Ok(Answer::Holds(n)) => old = n,
            Ok(Answer::Refused(422, detail)) => {
                return Outcome::Conflict {
                    status: 422,
                    detail: format!(
                        "the witness refused the checkpoint of {size} events as inconsistent with the one of {old} it cosigned: {detail}"
                    ),
                };
            }
            Ok(Answer::Refused(s, detail)) => {
                return Outcome::Failed(format!("the witness answered {s}: {detail}"));
            }
        }
    }
    Outcome::Failed(format!(
        "the witness's size kept changing (last said {old})"
    ))
}

/// Submits `note` (the org's freshly signed checkpoint of `size`) to every witness of the
/// org; stores and answers the note with the cosignatures that verified added. Raises
/// the alarm for each witness that newly refuses it as inconsistent.
pub async fn cosign(app: &App, org: &str, note: String, size: u64) -> ApiResult<String> {
    let configs = super::configs(app, org).await?;
    if configs.is_empty() {
        return Ok(note);
    }
    let mut states = super::states(app, org).await?;
    let calls = configs.iter().map(|(name, w)| {
        let old = states.get(name).map_or(0, |s| s.size);
        let note = note.as_str();
        async move { (name.clone(), one(app, org, w, old, note, size).await) }
    });
    let results = futures_util::future::join_all(calls).await;
    let now = auditrail_core::time::format_millis(auditrail_service::clock::now_ms());
    let mut lines = String::new();
    let mut alarms = Vec::new();
    for (name, outcome) in results {
        let st: &mut WitnessState = states.entry(name.clone()).or_default();
        st.last_attempt_at = Some(now.clone());
        match outcome {
            Outcome::Cosigned(l) => {
                app.metrics.witness_cosignatures.inc();
                lines.push_str(&l);
                st.size = size;
                st.cosigned_at = Some(now.clone());
                st.last_error = None;
            }
            Outcome::Failed(e) => {
                app.metrics.witness_failures.inc();
                tracing::warn!(org, witness = name, error = e, "no cosignature");
                st.last_error = Some(e);
            }
            Outcome::Conflict { status, detail } => {
                st.last_error = Some(detail.clone());
                if st.conflict.is_none() {
                    let c = Conflict {
                        at: now.clone(),
                        checkpoint_size: size,
                        status,
                        detail,
                    };
                    st.conflict = Some(c.clone());
                    alarms.push((name.clone(), c));
                }
            }
        }
    }
    // Witnesses removed meanwhile leave no state behind.
    states.retain(|n, _| configs.contains_key(n));
    super::save_states(app, org, &states).await?;
    for (name, c) in alarms {
        super::alarm::raise(app, org, &name, &c).await;
    }
    if lines.is_empty() {
        return Ok(note);
    }
    let cosigned = add_signature_lines(&note, &lines);
    app.store.set_checkpoint_note(org, size, &cosigned).await?;
    Ok(cosigned)
}

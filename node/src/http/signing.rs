//! Threshold signatures over HTTP: `POST /v2/orders/{ref}/sign` has the order's fiduciaries
//! sign a message with its key, which is never rebuilt (see `dta_actors::custody::signing`),
//! and every record's JSON lists the signatures asked of it.
//!
//! What it does not do: check a signature (anyone can, with the key the answer shows) or sign
//! anything itself.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use dta_actors::custody::OrderRecord;
use dta_actors::role::Role;
use dta_actors::roles::RoleMsg;
use dta_protocol::signing::Signature;
use serde::Deserialize;
use serde_json::{Value, json};

use super::orders::{
    CALL_TIMEOUT_MS, WaitParam, answer_after, bad_request, role_actor, wait_duration,
};
use super::{ApiError, ApiState};

/// The body of `POST /v2/orders/{ref}/sign`: exactly one of the two.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignBody {
    /// The message, hex (1 to 4096 bytes).
    #[serde(default)]
    message_hex: Option<String>,
    /// A 32-byte digest to sign as it is (a BIP-341 sighash), hex.
    #[serde(default)]
    sighash: Option<String>,
}

impl SignBody {
    fn message(self) -> Result<Vec<u8>, ApiError> {
        let (text, sighash) = match (self.message_hex, self.sighash) {
            (Some(text), None) => (text, false),
            (None, Some(text)) => (text, true),
            _ => {
                return Err(bad_request("give exactly one of message_hex and sighash"));
            }
        };
        let bytes = hex::decode(text.trim())
            .map_err(|e| bad_request(format!("the message is not hex: {e}")))?;
        if sighash && bytes.len() != 32 {
            return Err(bad_request(format!(
                "a sighash is 32 bytes, not {}",
                bytes.len()
            )));
        }
        if bytes.is_empty() || bytes.len() > dta_actors::custody::signing::MAX_MESSAGE {
            return Err(bad_request(format!(
                "a message to sign is 1 to {} bytes, not {}",
                dta_actors::custody::signing::MAX_MESSAGE,
                bytes.len()
            )));
        }
        Ok(bytes)
    }
}

/// `POST /v2/orders/{ref}/sign[?wait=SECONDS]`: asks for the signature; answered once the
/// request is out, or (waiting) once the signature is made, with it under `signature`.
pub async fn sign(
    State(state): State<ApiState>,
    Path(reference): Path<String>,
    query: WaitParam,
    body: Result<Json<SignBody>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let wait = wait_duration(query)?;
    let Json(body) = body.map_err(|e| bad_request(e.body_text()))?;
    let message = body.message()?;
    let principal = role_actor(&state, Role::Principal)?;
    let events = state.custody_events.subscribe();
    let record = ractor::call_t!(
        principal,
        |reply| RoleMsg::Sign {
            reference,
            message,
            reply
        }
        .traced(),
        CALL_TIMEOUT_MS
    )
    .map_err(|e| ApiError(StatusCode::GATEWAY_TIMEOUT, e.to_string()))??;
    // The run leaves the record once its signature is made.
    let sequence = record.signatures_asked;
    let (status, Json(mut answer)) = answer_after(
        &state,
        events,
        record,
        wait,
        move |r| !r.signing.iter().any(|run| run.sequence == sequence),
        StatusCode::OK,
    )
    .await?;
    answer["signature"] = answer["signing"]
        .as_array()
        .and_then(|runs| {
            runs.iter()
                .find(|run| run["sequence"] == json!(sequence))
                .cloned()
        })
        .unwrap_or(Value::Null);
    Ok((status, Json(answer)))
}

/// The signatures asked of a record's order, made and under way: each request, and once made
/// its scheme (`bip340`, `bls12-381`), the signature and the key it verifies under (hex; the
/// x-only key for BIP-340).
pub(super) fn runs_json(state: &ApiState, record: &OrderRecord) -> Value {
    let runs = dta_actors::custody::signed::runs(&state.store, record).unwrap_or_else(|err| {
        tracing::warn!(order = %record.reference, %err, "signatures made unreadable: only those under way shown");
        record.signing.clone()
    });
    runs.iter()
        .map(|run| {
            let made: Option<Signature> = run.signature.and_then(|cid| {
                let bytes = state.store.block(&cid).ok()??;
                let public = dta_protocol::envelope::SignedEnvelope::decode(&bytes)
                    .ok()?
                    .envelope
                    .public?;
                dta_protocol::dagcbor::decode(&public, dta_protocol::dagcbor::Limits::default())
                    .ok()
            });
            json!({
                "sequence": run.sequence,
                "request": run.request.to_string(),
                "attempt": run.attempt,
                "excluded": run.excluded.iter().map(|(index, _)| index).collect::<Vec<_>>(),
                "envelope": run.signature.map(|c| c.to_string()),
                "scheme": made.as_ref().map(|s| s.scheme.name()),
                "signature": made.as_ref().map(|s| hex::encode(&s.signature)),
                "key": made.as_ref().map(|s| hex::encode(&s.key)),
            })
        })
        .collect()
}

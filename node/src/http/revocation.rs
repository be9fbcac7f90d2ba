//! `POST /v2/identities/{cid}/revoke`: revokes an identity this node holds (signed by the
//! identity) or one whose document names this node's peer id (signed by the operator key),
//! and spreads the revocation to peers. The directory actor signs, checks, stores and
//! announces it; this only reads the call and answers.
//!
//! What it does not do: undo a revocation (there is no such thing) or revoke an identity of
//! another node.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use dta_actors::identities::{RevokeError, RevokeRequest};
use dta_protocol::revocation::{MAX_REASON_LEN, Revoker};
use serde::Deserialize;
use utoipa::ToSchema;

use super::answers::RevokedAnswer;
use super::{ApiError, ApiState};

/// How long the directory may take to sign, store and announce.
const REVOKE_TIMEOUT_MS: u64 = 15_000;

/// The body of `POST /v2/identities/{cid}/revoke` (it may be empty: `{}`).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RevokeBody {
    /// Why, in a few words (at most 256 bytes, no control characters).
    #[serde(default)]
    reason: String,
    /// Who signs: `identity` (its own keys, held here) or `operator` (this node's key, for an
    /// identity whose document names this node). By default the identity when this node
    /// holds its keys, else the operator.
    #[serde(default)]
    revoker: Option<RevokerName>,
}

/// Who signs a revocation.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RevokerName {
    /// The identity itself.
    Identity,
    /// The operator of the node its document names.
    Operator,
}

pub async fn revoke(
    State(state): State<ApiState>,
    Path(identity): Path<String>,
    body: Result<Json<RevokeBody>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<RevokedAnswer>), ApiError> {
    let Json(body) = body.map_err(|e| ApiError(StatusCode::BAD_REQUEST, e.body_text()))?;
    let cid = dta_protocol::block::parse_cid(&identity)
        .map_err(|e| ApiError(StatusCode::BAD_REQUEST, format!("{identity:?}: {e}")))?;
    if body.reason.len() > MAX_REASON_LEN || body.reason.chars().any(char::is_control) {
        return Err(ApiError(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("reason: at most {MAX_REASON_LEN} bytes without control characters"),
        ));
    }
    let directory = dta_actors::registry::identities(&state.prefix).ok_or_else(|| {
        ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            "the identity directory is not running".into(),
        )
    })?;
    let request = RevokeRequest {
        identity: cid,
        reason: body.reason,
        revoker: body.revoker.map(|r| match r {
            RevokerName::Identity => Revoker::Identity,
            RevokerName::Operator => Revoker::Operator,
        }),
    };
    let outcome = ractor::call_t!(
        directory,
        dta_actors::identities::IdentitiesMsg::Revoke,
        REVOKE_TIMEOUT_MS,
        request
    )
    .map_err(|e| ApiError(StatusCode::GATEWAY_TIMEOUT, e.to_string()))?;
    match outcome {
        Ok(revoked) => Ok((StatusCode::CREATED, Json(RevokedAnswer::of(&revoked)))),
        Err(err) => {
            let status = match &err {
                RevokeError::Unknown(_) => StatusCode::NOT_FOUND,
                RevokeError::AlreadyRevoked(_) => StatusCode::CONFLICT,
                RevokeError::NoKey { .. } => StatusCode::FORBIDDEN,
                RevokeError::Revocation(_) | RevokeError::Store(_) => {
                    StatusCode::INTERNAL_SERVER_ERROR
                }
            };
            Err(ApiError(status, err.to_string()))
        }
    }
}

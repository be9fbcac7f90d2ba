//! `/v2/tokens`: list, make and revoke API tokens (the `admin` scope). A new token is in the
//! answer that makes it and nowhere else; lists show ids, scopes and times, never digests.

use std::collections::BTreeSet;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;

use super::answers::TokenAnswer;

use super::{ApiError, ApiState};
use crate::tokens::{Scope, TokenError, TokenRecord, parse_lifetime};

/// What a list shows of a token.
fn record_json(record: &TokenRecord, now_ms: u64) -> TokenAnswer {
    TokenAnswer {
        id: record.id.clone(),
        scopes: record
            .scopes
            .iter()
            .map(|s| s.as_str().to_owned())
            .collect(),
        label: record.label.clone(),
        created_ms: record.created_ms,
        expires_ms: record.expires_ms,
        revoked_ms: record.revoked_ms,
        live: record.is_live(now_ms),
        token: None,
    }
}

fn refused(error: TokenError) -> ApiError {
    let status = match error {
        TokenError::Store(_) | TokenError::Damaged { .. } | TokenError::Random(_) => {
            StatusCode::INTERNAL_SERVER_ERROR
        }
        TokenError::File { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        TokenError::NoSuchToken(_) => StatusCode::NOT_FOUND,
        TokenError::UnknownScope(_)
        | TokenError::NoScopes
        | TokenError::BadLabel
        | TokenError::BadLifetime(_) => StatusCode::UNPROCESSABLE_ENTITY,
    };
    ApiError(status, error.to_string())
}

/// `GET /v2/tokens`.
pub(super) async fn list(State(state): State<ApiState>) -> Json<Vec<TokenAnswer>> {
    let now = crate::tokens::now_ms();
    Json(
        state
            .tokens
            .list()
            .iter()
            .map(|r| record_json(r, now))
            .collect(),
    )
}

/// Body of `POST /v2/tokens`.
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
#[schema(as = NewTokenBody)]
#[serde(deny_unknown_fields)]
pub(super) struct CreateBody {
    /// Scope names (`["read", "order"]`, or `["all"]`).
    scopes: Vec<String>,
    /// A note for the operator.
    #[serde(default)]
    label: Option<String>,
    /// A lifetime (`30d`, `12h`, `90m`, `45s`); none means until revoked.
    #[serde(default)]
    expires: Option<String>,
}

/// `POST /v2/tokens`: 201 with the token (shown this once) and its record.
pub(super) async fn create(
    State(state): State<ApiState>,
    body: Result<Json<CreateBody>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<TokenAnswer>), ApiError> {
    let Json(body) = body.map_err(|e| ApiError(StatusCode::BAD_REQUEST, e.body_text()))?;
    let scopes: BTreeSet<Scope> = Scope::parse_list(&body.scopes.join(",")).map_err(refused)?;
    let lifetime = body
        .expires
        .as_deref()
        .map(parse_lifetime)
        .transpose()
        .map_err(refused)?;
    let tokens = state.tokens.clone();
    let made = tokio::task::spawn_blocking(move || tokens.create(scopes, body.label, lifetime))
        .await
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(refused)?;
    let mut answer = record_json(&made.record, crate::tokens::now_ms());
    answer.token = Some(made.token.as_str().to_owned());
    Ok((StatusCode::CREATED, Json(answer)))
}

/// `DELETE /v2/tokens/{id}`: the token stops working before this answers.
pub(super) async fn revoke(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<TokenAnswer>, ApiError> {
    let tokens = state.tokens.clone();
    let revoked = tokio::task::spawn_blocking(move || tokens.revoke(&id))
        .await
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(refused)?;
    Ok(Json(record_json(&revoked, crate::tokens::now_ms())))
}

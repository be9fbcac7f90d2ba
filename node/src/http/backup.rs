//! `POST /v2/backup/checkpoint`: a consistent copy of the running node's database, made in
//! its home (`HOME/checkpoints/…`, hard links where it can) for `dta backup create`, which
//! reads the copy beside the home's files, seals the archive and removes the copy.
//!
//! What it does not do: send anything of the home over the API (the command reads the copy
//! from disk, on the node's machine) or remove the copy itself.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;

use super::answers::CheckpointAnswer;
use super::{ApiError, ApiState};

pub async fn checkpoint(
    State(state): State<ApiState>,
) -> Result<(StatusCode, Json<CheckpointAnswer>), ApiError> {
    let internal = |message: String| ApiError(StatusCode::INTERNAL_SERVER_ERROR, message);
    let path = crate::backup::checkpoint_path(&state.home).map_err(|e| internal(e.to_string()))?;
    let store = state.store.clone();
    let into = path.clone();
    tokio::task::spawn_blocking(move || store.checkpoint(&into))
        .await
        .map_err(|e| internal(e.to_string()))?
        .map_err(|e| internal(format!("cannot make a checkpoint: {e}")))?;
    Ok((
        StatusCode::CREATED,
        Json(CheckpointAnswer {
            path: path.display().to_string(),
        }),
    ))
}

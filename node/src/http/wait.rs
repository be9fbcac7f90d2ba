//! `?wait=SECONDS` on the calls that start a custody step (`POST /v2/orders`,
//! `POST /v2/orders/{ref}/release`): the answer comes once the principal's record reaches the
//! step's goal (certified; the beneficiary's receipt in), or when the wait runs out, whichever
//! is first. It does not start, retry or cancel anything: the step goes on after a wait that
//! ran out, and the answer says who it still waits for.

use std::time::Duration;

use axum::http::StatusCode;
use dta_actors::custody::{CustodyEvent, OrderRecord};
use dta_actors::roles::Role;
use serde::Deserialize;
use tokio::sync::broadcast;

use super::{ApiError, ApiState};

/// The longest wait a call may ask for.
pub const MAX_WAIT_SECONDS: u64 = 3_600;

/// How often the record is read again when no event says it changed (events can be missed
/// under load).
const RECHECK: Duration = Duration::from_millis(500);

/// `?wait=SECONDS`.
#[derive(Debug, Deserialize, Default, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct WaitQuery {
    /// Wait this many seconds (at most 300) for the step to land; 202 if it has not.
    wait: Option<u64>,
}

impl WaitQuery {
    /// How long to wait, if at all; more than [`MAX_WAIT_SECONDS`] is refused.
    pub fn duration(&self) -> Result<Option<Duration>, ApiError> {
        match self.wait {
            Some(seconds) if seconds > MAX_WAIT_SECONDS => Err(ApiError(
                StatusCode::BAD_REQUEST,
                format!("wait is {seconds} s; at most {MAX_WAIT_SECONDS} s may be asked for"),
            )),
            Some(0) | None => Ok(None),
            Some(seconds) => Ok(Some(Duration::from_secs(seconds))),
        }
    }
}

/// Whether the wait reached its goal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Waited {
    /// The record reached the goal.
    Reached,
    /// The wait ran out first.
    TimedOut,
}

/// Waits up to `wait` for the principal record of `started` to meet `goal`, and returns the
/// latest record. `events` must be subscribed before the step was started, so that no change
/// is missed.
pub async fn until(
    state: &ApiState,
    mut events: broadcast::Receiver<CustodyEvent>,
    started: OrderRecord,
    wait: Duration,
    goal: impl Fn(&OrderRecord) -> bool,
) -> Result<(OrderRecord, Waited), ApiError> {
    let deadline = tokio::time::Instant::now() + wait;
    let mut latest = started;
    loop {
        if goal(&latest) {
            return Ok((latest, Waited::Reached));
        }
        let changed = tokio::select! {
            _ = tokio::time::sleep_until(deadline) => return Ok((latest, Waited::TimedOut)),
            _ = tokio::time::sleep(RECHECK) => true,
            event = events.recv() => match event {
                Ok(event) => event.reference == latest.reference && event.role == Role::Principal,
                Err(broadcast::error::RecvError::Lagged(_)) => true,
                Err(broadcast::error::RecvError::Closed) => {
                    return Err(ApiError(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "the node is stopping".into(),
                    ));
                }
            },
        };
        if changed {
            let stored = dta_actors::custody::stored_record(
                &state.store,
                Role::Principal,
                &latest.principal,
                &latest.reference,
            )
            .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
            if let Some(record) = stored {
                latest = record;
            }
        }
    }
}

/// The goal of an order: certified (or past it).
pub fn certified(record: &OrderRecord) -> bool {
    record.certificate.is_some()
}

/// The goal of a cancellation: every holder said it deleted its share.
pub fn cancelled(record: &OrderRecord) -> bool {
    record.state == dta_actors::custody::OrderState::Cancelled
}

/// The goal of a release: the beneficiary's receipt of release `sequence` is in.
pub fn receipt_of(sequence: u32) -> impl Fn(&OrderRecord) -> bool {
    move |record| record.receipts.contains_key(&sequence)
}

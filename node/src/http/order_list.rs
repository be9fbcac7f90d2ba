//! `GET /v2/orders`: this node's order records, in pages and filtered.
//!
//! - `role` and `state` keep the records of one role or in one state; `state=stalled` keeps
//!   the principal's orders that have waited for a fiduciary or the beneficiary longer than
//!   `stalled_after` seconds (60 by default), the orders `dta_orders_waiting` counts.
//! - `limit` (1 to 1000) cuts the answer into pages; a full page carries a
//!   `Link: <…?after=CURSOR>; rel="next"` header. The cursor is the last record's
//!   `ROLE/PRINCIPAL/REFERENCE`, so a client can also make it from the record itself.
//!
//! Records come in a fixed order (by role, principal and reference, as the store keeps them),
//! read from the cursor on, so a page costs what it holds and the records it skips. What it
//! does not do: show one order (`orders::show`) or decide what a record says
//! (`answers::RecordAnswer`).

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use dta_actors::custody::{OrderRecord, OrderState};
use dta_actors::role::Role;
use serde::Deserialize;

use super::answers::RecordAnswer;
use super::{ApiError, ApiState};

/// Most records one page holds.
pub const MAX_LIMIT: usize = 1000;
/// How long an order waits before it counts as stalled, by default.
const DEFAULT_STALLED_AFTER_S: u64 = 60;

/// Query of `GET /v2/orders`.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Most records in the answer, 1 to 1000; every record by default.
    limit: Option<usize>,
    /// Start after this record: `ROLE/PRINCIPAL/REFERENCE` of the previous page's last one.
    after: Option<String>,
    /// Only records of this role: `principal`, `fiduciary` or `beneficiary`.
    role: Option<String>,
    /// Only records in this state (`certified`, `holding`, `released`, …), or `stalled`.
    state: Option<String>,
    /// With `state=stalled`: how long an order must have waited, in seconds.
    stalled_after: Option<u64>,
}

/// Which records a query keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StateFilter {
    Any,
    Is(OrderState),
    /// Waiting for someone since before this time (ms since the epoch).
    StalledSince(u64),
}

/// A query, checked.
#[derive(Clone)]
struct Listing {
    limit: Option<usize>,
    after: Option<Vec<u8>>,
    role: Option<Role>,
    state: StateFilter,
}

fn bad_request(message: impl Into<String>) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, message.into())
}

impl ListQuery {
    fn check(self, now_ms: u64) -> Result<Listing, ApiError> {
        let limit = match self.limit {
            Some(limit) if limit == 0 || limit > MAX_LIMIT => {
                return Err(bad_request(format!(
                    "limit must be between 1 and {MAX_LIMIT}"
                )));
            }
            limit => limit,
        };
        let role = self
            .role
            .map(|r| r.parse::<Role>())
            .transpose()
            .map_err(|e| bad_request(e.to_string()))?;
        let state = match self.state.as_deref() {
            None => StateFilter::Any,
            Some("stalled") => {
                let after_s = self.stalled_after.unwrap_or(DEFAULT_STALLED_AFTER_S);
                StateFilter::StalledSince(now_ms.saturating_sub(after_s.saturating_mul(1000)))
            }
            Some(name) => StateFilter::Is(name.parse::<OrderState>().map_err(|_| {
                let names: Vec<&str> = OrderState::ALL.iter().map(|s| s.name()).collect();
                bad_request(format!(
                    "unknown state {name:?}: one of {}, or stalled",
                    names.join(", ")
                ))
            })?),
        };
        if self.stalled_after.is_some() && !matches!(state, StateFilter::StalledSince(_)) {
            return Err(bad_request("stalled_after goes with state=stalled"));
        }
        let after = self.after.as_deref().map(cursor_key).transpose()?;
        Ok(Listing {
            limit,
            after,
            role,
            state,
        })
    }
}

/// The store key a cursor `ROLE/PRINCIPAL/REFERENCE` stands for (a principal's records are
/// kept under their reference alone).
fn cursor_key(cursor: &str) -> Result<Vec<u8>, ApiError> {
    let wrong = || {
        bad_request(format!(
            "after must be a record's ROLE/PRINCIPAL/REFERENCE, not {cursor:?}"
        ))
    };
    let mut parts = cursor.splitn(3, '/');
    let (Some(role), Some(principal), Some(reference)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(wrong());
    };
    let role = Role::parse(role).ok_or_else(wrong)?;
    let principal = dta_protocol::block::parse_cid(principal).map_err(|_| wrong())?;
    Ok(dta_actors::custody::record_key(role, &principal, reference))
}

/// The cursor that continues after `record`.
fn cursor_of(record: &OrderRecord) -> String {
    format!(
        "{}/{}/{}",
        record.role.name(),
        record.principal,
        record.reference
    )
}

impl Listing {
    fn keeps(&self, state: &ApiState, record: &OrderRecord) -> bool {
        if self.role.is_some_and(|role| role != record.role) {
            return false;
        }
        match self.state {
            StateFilter::Any => true,
            StateFilter::Is(wanted) => record.state == wanted,
            StateFilter::StalledSince(before) => dta_actors::custody::awaited(&state.store, record)
                .iter()
                .map(|awaited| awaited.since)
                .min()
                .is_some_and(|since| since <= before),
        }
    }
}

pub async fn list(
    State(state): State<ApiState>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|e| bad_request(e.body_text()))?;
    // The next page asks what this one asked, after its last record.
    let mut next_query: Vec<(&str, String)> = Vec::new();
    if let Some(role) = &query.role {
        next_query.push(("role", role.clone()));
    }
    if let Some(wanted) = &query.state {
        next_query.push(("state", wanted.clone()));
    }
    if let Some(seconds) = query.stalled_after {
        next_query.push(("stalled_after", seconds.to_string()));
    }
    let listing = query.check(crate::tokens::now_ms())?;
    let (records, full) = {
        let state = state.clone();
        let listing = listing.clone();
        tokio::task::spawn_blocking(move || {
            dta_actors::custody::stored_records_after(
                &state.store,
                listing.after.as_deref(),
                listing.limit,
                |record| listing.keeps(&state, record),
            )
            .map(|records| {
                let full = listing.limit.is_some_and(|limit| records.len() == limit);
                (records, full)
            })
        })
        .await
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))??
    };
    let mut headers = HeaderMap::new();
    if full && let (Some(last), Some(limit)) = (records.last(), listing.limit) {
        next_query.push(("limit", limit.to_string()));
        next_query.push(("after", cursor_of(last)));
        let next: Vec<String> = next_query
            .iter()
            .map(|(name, value)| format!("{name}={}", crate::client::query_value(value)))
            .collect();
        let link = format!("</v2/orders?{}>; rel=\"next\"", next.join("&"));
        if let Ok(value) = HeaderValue::from_str(&link) {
            headers.insert(header::LINK, value);
        }
    }
    let answers: Vec<RecordAnswer> = records
        .iter()
        .map(|record| RecordAnswer::of(&state, record))
        .collect();
    Ok((headers, Json(answers)).into_response())
}

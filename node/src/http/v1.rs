//! The read-only part of the original D-TA's `/v1` API, with its JSON field names, so that its
//! clients keep working: `GET /v1/status`, `GET /v1/identity`, `GET /v1/identity/{cid}`.
//! Orders over `/v1` (`POST /v1/order`, `/v1/order/secret`) need the plugin framework and come
//! with it.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use dta_actors::identities::KnownIdentity;
use dta_protocol::block::parse_cid;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiError, ApiState};

/// What `/v1/status` reports as the node type: the original's names for role sets.
fn node_type(roles: &[String]) -> &'static str {
    let has = |r: &str| roles.iter().any(|x| x == r);
    match (has("principal"), has("fiduciary")) {
        (true, true) => "multi",
        (true, false) => "principal",
        (false, true) => "fiduciary",
        (false, false) => "beneficiary",
    }
}

pub async fn status(State(state): State<ApiState>) -> Json<Value> {
    Json(json!({
        "application": "Milagro Distributed Trust",
        "timeStamp": rfc3339_now(),
        "apiVersion": "v1",
        "nodeCID": state.identity,
        "extensionVendor": "dta",
        "plugin": dta_actors::custody::SAFEGUARD_SECRET,
        "nodeType": node_type(&state.roles),
        "extension": {},
    }))
}

fn identity_json(identity: &KnownIdentity) -> Value {
    let claims = &identity.verified.document().claims;
    json!({
        "idDocumentCID": identity.cid.to_string(),
        "authenticationReference": identity.name,
        "beneficiaryECPublicKey": hex::encode(&claims.secp256k1_public_key),
        // The original carried a SIKE key here; dta's identities carry an X-Wing key instead.
        "sikePublicKey": "",
        "kemPublicKey": hex::encode(&claims.kem_public_key),
        "blsPublicKey": hex::encode(&claims.bls_public_key),
        "timestamp": identity.created_at,
        "extension": {},
    })
}

/// Paging of `GET /v1/identity`, as the original required it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Paging {
    page: Option<usize>,
    per_page: Option<usize>,
    sort_by: Option<String>,
}

pub async fn identities(
    State(state): State<ApiState>,
    query: Result<Query<Paging>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(paging) = query.map_err(|e| ApiError(StatusCode::BAD_REQUEST, e.body_text()))?;
    let per_page = paging.per_page.unwrap_or(10);
    if per_page == 0 || per_page > 1000 {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            "perPage must be between 1 and 1000".into(),
        ));
    }
    let mut all: Vec<KnownIdentity> = state
        .directory
        .borrow()
        .identities
        .values()
        .cloned()
        .collect();
    all.sort_by_key(|i| i.created_at);
    if paging.sort_by.as_deref() != Some("dateCreatedAsc") {
        all.reverse();
    }
    let page: Vec<Value> = all
        .iter()
        .skip(paging.page.unwrap_or(0) * per_page)
        .take(per_page)
        .map(identity_json)
        .collect();
    Ok(Json(json!({ "idDocumentList": page })))
}

pub async fn identity(
    State(state): State<ApiState>,
    Path(cid): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let parsed = parse_cid(&cid).map_err(|e| ApiError(StatusCode::BAD_REQUEST, e.to_string()))?;
    let directory = state.directory.borrow().clone();
    let known = directory
        .identities
        .get(&parsed.to_string())
        .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, format!("unknown identity {cid}")))?;
    Ok(Json(identity_json(known)))
}

/// The current time as RFC 3339 (UTC, seconds), like Go's `time.Time` JSON.
fn rfc3339_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (h, m, s) = (rem / 3600, (rem % 3600) / 60, rem % 60);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{d:02}T{h:02}:{m:02}:{s:02}Z")
}

#[cfg(test)]
#[path = "v1_tests.rs"]
mod tests;

//! Release policies over HTTP: `POST /v2/orders/{reference}/approvals` (an approval or veto
//! signed by an identity of this node), and the policy's progress in a record's JSON. The
//! `policy` of `POST /v2/orders` is checked by `dta_api::policy`.
//!
//! What it does not do: decide anything. Fiduciaries evaluate a policy in their release step;
//! this shows what this node knows, by its clock.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use dta_actors::custody::{NewVote, OrderRecord};
use dta_actors::roles::{CALL_TIMEOUT_MS, Role, RoleMsg};
use dta_api::policy::VoteBody;
use dta_protocol::policy::{ApproverGroup, Situation, Verdict};
use serde_json::{Value, json};

use super::{ApiError, ApiState};

/// `POST /v2/orders/{reference}/approvals`: 201 with the vote's CID once it is signed, kept
/// and on its way to the order's fiduciaries and principal.
pub(super) async fn vote(
    State(state): State<ApiState>,
    Path(reference): Path<String>,
    body: Result<Json<VoteBody>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<super::answers::VoteAnswer>), ApiError> {
    let Json(body) = body.map_err(|e| ApiError(StatusCode::BAD_REQUEST, e.body_text()))?;
    let vote = body.check()?;
    let vote = NewVote {
        reference,
        request: vote.request,
        veto: vote.veto,
        approver: vote.approver,
    };
    // Any role may vote: an approver's node need not be a party to the order.
    let actor = [Role::Principal, Role::Fiduciary, Role::Beneficiary]
        .into_iter()
        .find_map(|role| dta_actors::registry::role(&state.prefix, role))
        .ok_or_else(|| {
            ApiError(
                StatusCode::SERVICE_UNAVAILABLE,
                "no role actor runs on this node".into(),
            )
        })?;
    let veto = vote.veto;
    let made = ractor::call_t!(
        actor,
        |reply| RoleMsg::Vote { vote, reply }.traced(),
        CALL_TIMEOUT_MS
    )
    .map_err(|e| ApiError(StatusCode::GATEWAY_TIMEOUT, e.to_string()))??;
    Ok((
        StatusCode::CREATED,
        Json(super::answers::VoteAnswer {
            cid: made.to_string(),
            kind: if veto { "veto" } else { "approval" }.to_owned(),
        }),
    ))
}

/// A record's policy progress, by this node's clock: for each release request it knows, who
/// approved in which group, who vetoed, and what the policy says now; and what the order's
/// key may sign. `null` for an order without release conditions or a signing policy.
pub fn progress_json(state: &ApiState, record: &OrderRecord) -> Value {
    let Some(policy) = dta_actors::custody::policy_of(&state.store, record)
        .filter(|p| p.has_conditions() || p.signing.is_some())
    else {
        return Value::Null;
    };
    let (approvals, vetoes) =
        dta_actors::custody::votes_of(&state.store, record).unwrap_or_default();
    let now = crate::tokens::now_ms();
    let members = |g: &ApproverGroup| {
        g.members
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
    };
    let requests: Vec<Value> = record
        .releases
        .iter()
        .map(|(sequence, request)| {
            let held = record.held.iter().find(|h| h.request == *request);
            let situation = Situation {
                order: record.order,
                request: *request,
                request_seen_ms: held.map_or(now, |h| h.seen_ms),
                now_ms: now,
                tolerance_ms: state.clock_tolerance_ms,
                released: sequence.saturating_sub(1),
                approvals: &approvals,
                vetoes: &vetoes,
            };
            let tally = policy.tally(&situation);
            let verdict = match policy.evaluate(&situation) {
                Verdict::Release => json!({ "now": "release" }),
                Verdict::Wait(waiting) => json!({
                    "now": "wait",
                    "missing": waiting
                        .short
                        .iter()
                        .map(|(g, have, need)| json!({ "group": g, "approvals": have, "needed": need }))
                        .collect::<Vec<_>>(),
                    "delay_ends_ms": waiting.delay_ends_ms,
                }),
                Verdict::Refused(refusal) => json!({ "now": "refused", "why": refusal.to_string() }),
            };
            let approved: serde_json::Map<String, Value> = tally
                .approved
                .iter()
                .map(|(g, who)| (g.clone(), who.iter().map(ToString::to_string).collect::<Vec<_>>().into()))
                .collect();
            json!({
                "sequence": sequence,
                "request": request.to_string(),
                "held_since_ms": held.map(|h| h.seen_ms),
                "approved": approved,
                "vetoed": tally.vetoed.iter().map(ToString::to_string).collect::<Vec<_>>(),
                "policy": verdict,
            })
        })
        .collect();
    json!({
        "groups": policy.groups.iter().map(|g| json!({ "name": g.name, "count": g.count, "members": members(g) })).collect::<Vec<_>>(),
        "not_before_ms": policy.not_before_ms,
        "delay_ms": policy.delay_ms,
        "veto": policy.veto.as_ref().map(|g| json!({ "count": g.count, "members": members(g) })),
        "signing": policy.signing.as_ref().map(|s| json!({
            "max_signatures": s.max_signatures,
            "message_prefixes_hex": s.message_prefixes.iter().map(hex::encode).collect::<Vec<_>>(),
        })),
        "requests": requests,
    })
}

//! `GET /v2/orders/{ref}/log[?head=CID&principal=CID]`: an order's log as the web UI draws
//! it: each envelope's CID, kind, signer, time, the envelope it links back to, and whom its
//! sealed part is for. The main chain (head back to the order request) comes first, oldest
//! first, marked `on_chain`; the envelopes that hang off it (deals, commitment signatures,
//! share releases) follow in time order.
//!
//! Missing envelopes are fetched from peers first, as for an audit. What it does not do: judge
//! the log (the audit does), or open a sealed payload.

use std::collections::{BTreeMap, BTreeSet};

use axum::Json;
use axum::extract::{Path, State};
use dta_protocol::Cid;
use dta_protocol::envelope::SignedEnvelope;

use super::answers::{LogAnswer, LogEnvelopeAnswer};
use super::orders::AuditQuery;
use super::{ApiError, ApiState};

/// `GET /v2/orders/{ref}/log`.
pub async fn log(
    State(state): State<ApiState>,
    Path(reference): Path<String>,
    query: Result<axum::extract::Query<AuditQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<LogAnswer>, ApiError> {
    let (head, blocks) = super::orders::collected_log(&state, &reference, query).await?;
    // Identity documents are blocks of the log too; only envelopes are drawn.
    let envelopes: Vec<(Cid, SignedEnvelope)> = blocks
        .iter()
        .filter_map(|(cid, bytes)| SignedEnvelope::decode(bytes).ok().map(|e| (*cid, e)))
        .filter(|(_, signed)| signed.envelope.order == reference)
        .collect();
    let by_cid: BTreeMap<Cid, &SignedEnvelope> = envelopes
        .iter()
        .map(|(cid, signed)| (*cid, signed))
        .collect();
    let chain = main_chain(head, &by_cid);
    let on_chain: BTreeSet<Cid> = chain.iter().copied().collect();
    let mut hanging: Vec<&(Cid, SignedEnvelope)> = envelopes
        .iter()
        .filter(|(cid, _)| !on_chain.contains(cid))
        .collect();
    hanging.sort_by_key(|(cid, signed)| (signed.envelope.timestamp, *cid));
    let names = state.directory.borrow().clone();
    let name_of = |identity: &Cid| {
        names
            .identities
            .get(&identity.to_string())
            .map(|known| known.name.clone())
    };
    let shown = |cid: Cid, signed: &SignedEnvelope| {
        let envelope = &signed.envelope;
        LogEnvelopeAnswer {
            cid: cid.to_string(),
            kind: envelope.kind.name().to_owned(),
            signer: envelope.sender.to_string(),
            signer_name: name_of(&envelope.sender),
            timestamp_ms: envelope.timestamp,
            prev: envelope.prev.map(|p| p.to_string()),
            sealed_for: envelope
                .recipients
                .iter()
                .map(|r| r.identity.to_string())
                .collect(),
            on_chain: on_chain.contains(&cid),
        }
    };
    let mut shown_envelopes: Vec<LogEnvelopeAnswer> = chain
        .iter()
        .filter_map(|cid| by_cid.get(cid).map(|signed| shown(*cid, signed)))
        .collect();
    shown_envelopes.extend(hanging.into_iter().map(|(cid, signed)| shown(*cid, signed)));
    Ok(Json(LogAnswer {
        reference,
        head: head.to_string(),
        envelopes: shown_envelopes,
    }))
}

/// The chain from `head` back along `prev`, oldest first (as far as the envelopes go).
fn main_chain(head: Cid, envelopes: &BTreeMap<Cid, &SignedEnvelope>) -> Vec<Cid> {
    let mut chain = Vec::new();
    let mut next = Some(head);
    while let Some(cid) = next {
        if chain.contains(&cid) {
            break;
        }
        let Some(signed) = envelopes.get(&cid) else {
            break;
        };
        chain.push(cid);
        next = signed.envelope.prev;
    }
    chain.reverse();
    chain
}

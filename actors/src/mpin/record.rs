//! What a node records about one M-Pin issuance, as requester or authority ([`MpinRecord`]),
//! where it is stored, its keystore names, and its saving (one synced batch with the step's
//! writes, then the change event). Which step moves it is `issuance`'s business.

use std::collections::BTreeMap;

use dta_protocol::Cid;
use dta_protocol::dagcbor::{self, Limits};
use dta_protocol::mpin::{MasterSecret, MpinSecret};
use serde::{Deserialize, Serialize};

use crate::context::{CustodyError, RoleContext, encode, internal};
use crate::role::Role;
use crate::states::{MpinSide, MpinState};
use crate::store::{Column, Store};

/// What a node records about one issuance, as requester or as authority.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MpinRecord {
    /// The request's reference.
    pub reference: String,
    /// Which side of the issuance this node is.
    pub side: MpinSide,
    /// What was asked for.
    pub secret: MpinSecret,
    /// The M-Pin identity.
    pub identity: Option<String>,
    /// The permit's date.
    pub date: Option<u32>,
    /// Who asked.
    pub requester: Cid,
    /// Who was asked.
    pub authorities: Vec<Cid>,
    /// The request envelope.
    pub request: Cid,
    /// Answer envelopes by authority CID (text).
    pub answers: BTreeMap<String, Cid>,
    /// Refusals by authority CID (text).
    pub refusals: BTreeMap<String, String>,
    /// Where it stands.
    pub state: MpinState,
    /// The master secret generated t-of-n that the shares are of, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub master: Option<MasterSecret>,
}

/// Where the record of `reference` on `side` is stored.
pub(super) fn key(side: MpinSide, reference: &str) -> Vec<u8> {
    format!("{side}/{reference}").into_bytes()
}

/// The record of `reference` on `side`.
pub fn record(
    store: &Store,
    side: MpinSide,
    reference: &str,
) -> Result<Option<MpinRecord>, CustodyError> {
    store
        .get(Column::Mpin, &key(side, reference))
        .map_err(internal)?
        .map(|bytes| dagcbor::decode_lenient(&bytes, Limits::default()).map_err(internal))
        .transpose()
}

/// Every issuance this node recorded, as requester or authority.
pub fn records(store: &Store) -> Result<Vec<MpinRecord>, CustodyError> {
    store
        .scan(Column::Mpin)
        .map_err(internal)?
        .into_iter()
        .map(|(_, bytes)| dagcbor::decode_lenient(&bytes, Limits::default()).map_err(internal))
        .collect()
}

/// Stages the record with the step's other writes, writes them in one synced batch and
/// announces the new state (as the requester's principal role, or the authority's
/// fiduciary role).
pub(super) async fn save(ctx: &RoleContext, record: &MpinRecord) -> Result<(), CustodyError> {
    ctx.stage(
        Column::Mpin,
        key(record.side, &record.reference),
        encode(record)?,
    );
    ctx.commit().await?;
    let role = if record.side == MpinSide::Requester {
        Role::Principal
    } else {
        Role::Fiduciary
    };
    let _ = ctx.events.send(crate::context::CustodyEvent {
        reference: record.reference.clone(),
        role,
        state: record.state.into(),
    });
    Ok(())
}

/// Keystore name of one authority's share of a request.
pub(super) fn share_name(reference: &str, authority: &Cid) -> String {
    format!("mpin/{reference}/{authority}")
}

/// Keystore name of a request's combined secret.
pub fn combined_name(reference: &str) -> String {
    format!("mpin/{reference}")
}

#[cfg(test)]
mod record_tests {
    use super::*;

    fn cid(seed: &[u8]) -> Cid {
        dta_protocol::block::cid_of(dta_protocol::block::DAG_CBOR, seed)
    }

    /// Records written before states were typed: a requester's and an authority's.
    fn written_before() -> Vec<MpinRecord> {
        [("requester", "issued"), ("authority", "refused")]
            .into_iter()
            .map(|(side, state)| MpinRecord {
                reference: format!("mpin-{side}"),
                side: side.parse().unwrap(),
                secret: MpinSecret::Permit,
                identity: Some("alice@example.org".into()),
                date: Some(20_426),
                requester: cid(b"requester"),
                authorities: vec![cid(b"a1"), cid(b"a2")],
                request: cid(b"request"),
                answers: BTreeMap::from([(cid(b"a1").to_string(), cid(b"answer"))]),
                refusals: BTreeMap::from([(cid(b"a2").to_string(), "not yours".to_owned())]),
                state: state.parse().unwrap(),
                master: None,
            })
            .collect()
    }

    /// The stored bytes of those records, as the code of the string states wrote them: the
    /// typed side and state read them and write them back unchanged.
    #[test]
    fn records_written_before_states_were_typed_read_and_write_the_same_bytes() {
        crate::states::stored::reads_and_writes_back(
            include_str!("../../testdata/mpin-records.hex"),
            written_before(),
        );
    }
}

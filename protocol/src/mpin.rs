//! Payloads of M-Pin share issuance: a requester asks k trust authorities (D-TAs) for shares
//! of a client secret, a server secret or a time permit; each answers with its share sealed
//! to the requester, or with a refusal. Shares of a master secret generated t-of-n (an
//! `mpin-master` order, [`MasterSecret`]) carry their authority's index, and any t of them
//! combine; without one, each authority answers from a share of its own and the requester
//! adds all of them up. Both are ordinary signed envelopes
//! ([`crate::envelope::Kind::MpinRequest`], [`crate::envelope::Kind::MpinShare`]) whose
//! `order` field is the request's reference, so an issuance is logged like any custody step.

use cid::Cid;
use serde::{Deserialize, Serialize};

/// What is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MpinSecret {
    /// s_i·H(ID) for an identity: the client secret's share.
    Client,
    /// s_i·Q: the authentication server's share.
    Server,
    /// s_i·H_T(date, ID): a time permit's share.
    Permit,
}

impl MpinSecret {
    /// The lowercase name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Client => "client",
            Self::Server => "server",
            Self::Permit => "permit",
        }
    }
}

/// The public payload of an M-Pin request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MpinRequest {
    /// What is asked for.
    pub secret: MpinSecret,
    /// The M-Pin identity (client secrets and permits).
    pub identity: Option<String>,
    /// The permit's date, in days since the Unix epoch (permits).
    pub date: Option<u32>,
    /// The authorities asked, in order; a share from any other is refused.
    pub authorities: Vec<Cid>,
    /// The master secret the shares are of, generated t-of-n among the authorities; absent
    /// for each authority's own master-secret share (all of them added up).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub master: Option<MasterSecret>,
}

/// A master secret generated t-of-n among trust authorities: the `mpin-master` order whose
/// fiduciaries they are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MasterSecret {
    /// The order's principal.
    pub principal: Cid,
    /// The order's reference.
    pub reference: String,
    /// Its threshold: how many shares the requester combines.
    pub threshold: u32,
}

/// The public payload of an authority's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MpinAnswer {
    /// The request answered (also the envelope's `prev`).
    pub request: Cid,
    /// What it is a share of.
    pub secret: MpinSecret,
    /// Why the authority refused; with a refusal the envelope has no sealed payload.
    pub refused: Option<String>,
    /// For a share of a [`MasterSecret`]: the authority's share index in it (its place among
    /// the order's fiduciaries, from 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<u32>,
}

/// The sealed payload of an answer: the share, in Milagro's encoding (a G1 point as
/// `04 ‖ x ‖ y`, a G2 point as `x.c0 ‖ x.c1 ‖ y.c0 ‖ y.c1`).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MpinSharePoint {
    /// The encoded point.
    #[serde(with = "serde_bytes")]
    pub point: Vec<u8>,
}

impl std::fmt::Debug for MpinSharePoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MpinSharePoint(<redacted>)")
    }
}

//! Misconduct: what a node was shown to have done against the protocol, named by a fixed
//! offence, with the block that proves it. Nodes count what they see by offence and culprit;
//! the audit lists what an order's log proves.
//!
//! Offences on the wire (a malformed or oversized request, a flood) have no block to prove them: the
//! node that received it names the peer in its log and its metrics, and that is all.
//!
//! What it does not do: judge anything. Each offence is judged where its evidence is checked
//! (a share against its commitment in the beneficiary and the audit, a sub-share by the
//! reshare's complaint).

use cid::Cid;

/// What a node did wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Offence {
    /// A fiduciary released a share that is not its committed share.
    WrongShare,
    /// A principal dealt a fiduciary a share that is not on the polynomial it committed to.
    DealOffCommitment,
    /// A dealer of a refresh or a move of custody dealt a holder a sub-share that does not fit
    /// its commitments (or committed to two dealings).
    BadSubShare,
    /// A dealer of a key generation dealt a fiduciary a share that does not fit its
    /// commitments.
    BadKeyGenerationShare,
    /// A holder complained about a sub-share that fits.
    FalseComplaint,
    /// A fiduciary's custody signature does not verify over the commitment its envelope names
    /// (it signed something else). Seen by the principal it was delivered to; a signature that
    /// does not verify proves nothing to a third party, so no audit shows it.
    BadCustodySignature,
    /// A fiduciary answered one release with two different share releases, both signed.
    Equivocation,
    /// A peer sent a request that is not one, or a delivery whose blocks are no envelopes.
    MalformedMessage,
    /// A peer sent a request over the size limit.
    OversizedMessage,
    /// A peer sent identity requests far past what an honest node sends.
    Flood,
}

impl Offence {
    /// Every offence, in order.
    pub const ALL: [Offence; 10] = [
        Offence::WrongShare,
        Offence::DealOffCommitment,
        Offence::BadSubShare,
        Offence::BadKeyGenerationShare,
        Offence::FalseComplaint,
        Offence::BadCustodySignature,
        Offence::Equivocation,
        Offence::MalformedMessage,
        Offence::OversizedMessage,
        Offence::Flood,
    ];

    /// The offence's name, as metrics, logs and the audit show it.
    pub fn name(self) -> &'static str {
        match self {
            Offence::WrongShare => "wrong-share",
            Offence::DealOffCommitment => "deal-off-commitment",
            Offence::BadSubShare => "bad-sub-share",
            Offence::BadKeyGenerationShare => "bad-key-generation-share",
            Offence::FalseComplaint => "false-complaint",
            Offence::BadCustodySignature => "bad-custody-signature",
            Offence::Equivocation => "equivocation",
            Offence::MalformedMessage => "malformed-message",
            Offence::OversizedMessage => "oversized-message",
            Offence::Flood => "flood",
        }
    }

    /// The offence named `name`.
    pub fn parse(name: &str) -> Option<Offence> {
        Offence::ALL.into_iter().find(|o| o.name() == name)
    }
}

impl std::fmt::Display for Offence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// An offence proven by a block of the order's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Misconduct {
    /// The identity that committed it.
    pub culprit: Cid,
    /// What it did.
    pub offence: Offence,
    /// The block that proves it: the culprit's envelope (opened by a content key the receipt
    /// reveals) or the complaint that convicted it.
    pub evidence: Cid,
}

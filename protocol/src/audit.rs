//! Offline audit of an order's log: walk `prev` links from a head envelope back to the order
//! request, checking every block's hash, every sender's signature, and the custody
//! certificate against the commitment.
//!
//! The audit needs only blocks and identity documents, so any node can run it. Fetching
//! blocks it lacks from peers is the block-exchange layer's job.

use std::collections::BTreeMap;

use cid::Cid;

use crate::block::Block;
use crate::dagcbor::Limits;
use dta_crypto::dkg;
use dta_crypto::secp256k1::PublicKey;

use crate::dkg::{DkgAbort, DkgComplaint, DkgRound, Verdict as DkgVerdict};
use crate::envelope::{Kind, SignedEnvelope, VerifiedEnvelope};
use crate::identity::VerifiedIdentity;
use crate::misconduct::{Misconduct, Offence};
use crate::order::{Certificate, Commitment, OrderRequest, Receipt, ReleaseRequest};
use crate::order::{Equivocation, RefusedShare, ShareRelease};
use crate::policy::{Approval, DEFAULT_CLOCK_TOLERANCE_MS, Signed, Situation, Verdict};
use crate::reshare::{OldShares, ReshareComplaint, ReshareRequest};
use crate::signing::SignatureScheme;

/// Longest chain the audit walks.
pub const MAX_CHAIN: usize = 10_000;

/// Why an audit failed.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum AuditError {
    /// A linked block is not available.
    #[error("block {0} is missing")]
    Missing(String),
    /// A block does not hash to its CID, or is not canonical.
    #[error("block {cid} is invalid: {reason}")]
    BadBlock {
        /// The block.
        cid: String,
        /// Why.
        reason: String,
    },
    /// The sender of an envelope is not a known, verified identity.
    #[error("envelope {envelope} is from unknown identity {sender}")]
    UnknownSender {
        /// The envelope.
        envelope: String,
        /// Its claimed sender.
        sender: String,
    },
    /// A signature or structure check failed.
    #[error("envelope {envelope} does not verify: {reason}")]
    BadEnvelope {
        /// The envelope.
        envelope: String,
        /// Why.
        reason: String,
    },
    /// An envelope belongs to another order.
    #[error("envelope {0} belongs to another order")]
    WrongOrder(String),
    /// The chain does not start with an order request, or has more than one.
    #[error("the chain does not start with exactly one order request")]
    NoOrderRequest,
    /// The certificate does not verify against the commitment and fiduciaries.
    #[error("certificate {envelope} does not hold: {reason}")]
    Certificate {
        /// The envelope.
        envelope: String,
        /// Why.
        reason: String,
    },
    /// A release request not made by the order's principal, or for another beneficiary
    /// than the order names; or a receipt not from the release's beneficiary.
    #[error("release {envelope} does not hold: {reason}")]
    Release {
        /// The release request or receipt envelope.
        envelope: String,
        /// Why.
        reason: String,
    },
    /// A generated key's commitment does not follow from its key generation's transcript.
    #[error("key generation {envelope} does not hold: {reason}")]
    KeyGeneration {
        /// The commitment envelope.
        envelope: String,
        /// Why.
        reason: String,
    },
    /// A threshold signature that answers no request of the principal's in the chain, names
    /// another key than the order's, or does not verify.
    #[error("threshold signature {envelope} does not hold: {reason}")]
    ThresholdSignature {
        /// The signature envelope.
        envelope: String,
        /// Why.
        reason: String,
    },
    /// The chain is longer than [`MAX_CHAIN`] or loops.
    #[error("chain too long")]
    TooLong,
    /// A release that a receipt shows was made (or a move of custody, or a threshold
    /// signature), though the order's release policy did not let it go with the approvals
    /// and vetoes at hand.
    #[error("request {release} broke its order's policy: {reason}")]
    Policy {
        /// The release, reshare or signature request.
        release: String,
        /// The rule that did not hold.
        reason: String,
    },
}

/// What an audit established.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditReport {
    /// Envelopes verified, head first.
    pub envelopes: Vec<(Cid, Kind)>,
    /// Whether a certificate was found and verified.
    pub certified: bool,
    /// Receipts found.
    pub receipts: usize,
    /// Releases (those with a receipt), moves of custody and threshold signatures checked
    /// against the order's release policy, of an order with release conditions.
    pub policies: usize,
    /// Threshold signatures made with the order's key, each verified as its scheme says
    /// (BIP-340 or BLS) over its request's message.
    pub threshold_signatures: usize,
    /// Offences the log proves, each judged here from its evidence: shares a receipt refused
    /// (opened with the key it reveals, and found off the commitment), dealers a refresh
    /// excluded (convicted by a holder's complaint).
    pub misconduct: Vec<Misconduct>,
}

/// For a key the fiduciaries generated without a dealer: the round in the chain is the
/// principal's, holds each fiduciary's signed commitment, and the group key and public shares
/// those commitments give are the ones committed (the public key adding the beneficiary's
/// share where the commitment names one).
fn check_generated(
    reference: &str,
    request: &OrderRequest,
    cid: Cid,
    commitment: &Commitment,
    verified: &[(Cid, VerifiedEnvelope)],
    identity: &impl Fn(&Cid) -> Option<VerifiedIdentity>,
) -> Result<(), AuditError> {
    // Shares dealt anew are checked against the commitment they came from.
    let (Some(generated), None) = (&commitment.generated, &commitment.reshared) else {
        return Ok(());
    };
    let failed = |reason: String| AuditError::KeyGeneration {
        envelope: cid.to_string(),
        reason,
    };
    let (_, round_envelope) = verified
        .iter()
        .find(|(c, e)| *c == generated.round && e.envelope().kind == Kind::DkgRound)
        .ok_or_else(|| failed("its round is not in the chain".into()))?;
    if round_envelope.envelope().sender != request.principal {
        return Err(failed("the round is not the principal's".into()));
    }
    let round: DkgRound = round_envelope
        .public_payload()
        .ok()
        .flatten()
        .ok_or_else(|| failed("no round payload".into()))?;
    let (_, dealt) = dealt_in(reference, request, &round, identity).map_err(failed)?;
    let (group_key, public_shares) = round
        .scheme
        .public_shares_of(&dealt)
        .map_err(|e| failed(e.to_string()))?;
    let listed: Vec<&[u8]> = commitment.key_shares.iter().map(|k| k.as_slice()).collect();
    let derived: Vec<&[u8]> = public_shares.iter().map(Vec::as_slice).collect();
    if generated.group_key.as_slice() != group_key.as_slice() || listed != derived {
        return Err(failed(
            "the group key or public shares are not what the commitments give".into(),
        ));
    }
    let public_key = match (commitment.beneficiary_share, round.scheme) {
        (None, _) => group_key,
        (Some(beneficiary), dkg::Scheme::Secp256k1Taproot) => {
            let group_key = PublicKey::from_sec1(&group_key).map_err(|e| failed(e.to_string()))?;
            // The beneficiary's key when the commitment was made (it may have rotated since).
            let at = verified
                .iter()
                .find(|(c, _)| *c == cid)
                .map_or(u64::MAX, |(_, e)| e.envelope().timestamp);
            identity(&beneficiary)
                .ok_or_else(|| failed(format!("unknown beneficiary {beneficiary}")))?
                .as_of(at)
                .secp256k1_key()
                .add(&group_key)
                .map_err(|e| failed(e.to_string()))?
                .to_compressed()
                .to_vec()
        }
        (Some(_), scheme) => {
            return Err(failed(format!(
                "a beneficiary's share is added to no {} key",
                scheme.name()
            )));
        }
    };
    if commitment.public_key.as_slice() != public_key.as_slice() {
        return Err(failed("the public key is not the group key's".into()));
    }
    Ok(())
}

/// The order's fiduciaries, verified, and the commitment each made in `round`.
fn dealt_in(
    reference: &str,
    request: &OrderRequest,
    round: &DkgRound,
    identity: &impl Fn(&Cid) -> Option<VerifiedIdentity>,
) -> Result<(Vec<VerifiedIdentity>, Vec<Vec<u8>>), String> {
    let fiduciaries: Vec<VerifiedIdentity> = request
        .fiduciaries
        .iter()
        .map(|f| identity(f).ok_or_else(|| format!("unknown fiduciary {f}")))
        .collect::<Result<_, _>>()?;
    let dealt = round
        .commitments_of(reference, &fiduciaries)
        .map_err(|e| e.to_string())?;
    Ok((fiduciaries, dealt))
}

/// For a key generation the principal ended on a complaint: the abort is the principal's and
/// ends a round in the chain, its complaint is signed by a fiduciary of the order and judged
/// again here against the accused dealer's commitment in the round, and the abort names the
/// culprit that judgment does (the dealer of a bad share, or the fiduciary that complained
/// about a good one). Each such abort convicts its culprit, the complaint its evidence.
fn check_aborted(
    reference: &str,
    request: &OrderRequest,
    verified: &[(Cid, VerifiedEnvelope)],
    block: &impl Fn(&Cid) -> Option<Vec<u8>>,
    identity: &impl Fn(&Cid) -> Option<VerifiedIdentity>,
) -> Result<Vec<Misconduct>, AuditError> {
    let mut convicted = Vec::new();
    for (cid, envelope) in verified
        .iter()
        .filter(|(_, e)| e.envelope().kind == Kind::DkgAbort)
    {
        let failed = |reason: String| AuditError::KeyGeneration {
            envelope: cid.to_string(),
            reason,
        };
        if envelope.envelope().sender != request.principal {
            return Err(failed("the abort is not the principal's".into()));
        }
        let abort: DkgAbort = envelope
            .public_payload()
            .ok()
            .flatten()
            .ok_or_else(|| failed("no abort payload".into()))?;
        let round: DkgRound = verified
            .iter()
            .find(|(c, e)| *c == abort.round && e.envelope().kind == Kind::DkgRound)
            .filter(|_| envelope.envelope().prev == Some(abort.round))
            .and_then(|(_, e)| e.public_payload().ok().flatten())
            .ok_or_else(|| failed("it ends no round in the chain".into()))?;
        let complaint = verified_envelope(reference, abort.complaint, block, identity, |s| {
            s.envelope.kind == Kind::DkgComplaint
        })?
        .ok_or_else(|| failed("its complaint is not a complaint".into()))?;
        let complainer = complaint.envelope().sender;
        let payload: DkgComplaint = complaint
            .public_payload()
            .ok()
            .flatten()
            .ok_or_else(|| failed("no complaint payload".into()))?;
        let (fiduciaries, dealt) =
            dealt_in(reference, request, &round, identity).map_err(failed)?;
        let recipient = request
            .fiduciaries
            .iter()
            .position(|f| *f == complainer)
            .ok_or_else(|| failed("the complaint is not a fiduciary's".into()))?;
        let dealer = (payload.dealer as usize)
            .checked_sub(1)
            .and_then(|d| fiduciaries.get(d))
            .filter(|d| d.cid() != complainer)
            .ok_or_else(|| failed("the complaint accuses no other fiduciary".into()))?;
        let verdict = payload
            .judge(
                abort.round,
                round.scheme,
                recipient as u32 + 1,
                &complainer,
                dealer,
                &dealt[payload.dealer as usize - 1],
            )
            .map_err(|e| failed(e.to_string()))?;
        let (culprit, offence) = match verdict {
            DkgVerdict::DealerCheated => (dealer.cid(), Offence::BadKeyGenerationShare),
            DkgVerdict::FalseComplaint => (complainer, Offence::FalseComplaint),
        };
        if abort.culprit != culprit {
            return Err(failed(format!(
                "the abort names {}, but its complaint convicts {culprit}",
                abort.culprit
            )));
        }
        convicted.push(Misconduct {
            culprit,
            offence,
            evidence: abort.complaint,
        });
    }
    Ok(convicted)
}

/// For shares dealt anew (a refresh, or custody moved to another committee): the commitment
/// it came from is in the chain, the principal asked for it and for this committee and
/// threshold, and it keeps the order and the key (for a dealt secret, the constant term of its
/// Feldman commitments), counting t distinct dealers of the committee before; every dealer it
/// excluded is convicted by a holder's complaint, and none of them is counted.
fn check_reshared(
    reference: &str,
    request: &OrderRequest,
    cid: Cid,
    commitment: &Commitment,
    commitments: &BTreeMap<Cid, Commitment>,
    verified: &[(Cid, VerifiedEnvelope)],
    identity: &impl Fn(&Cid) -> Option<VerifiedIdentity>,
) -> Result<Vec<Misconduct>, AuditError> {
    let Some(reshared) = &commitment.reshared else {
        return Ok(Vec::new());
    };
    let failed = |reason: &str| AuditError::KeyGeneration {
        envelope: cid.to_string(),
        reason: reason.to_owned(),
    };
    let previous = commitments
        .get(&reshared.previous)
        .ok_or_else(|| failed("the commitment it refreshes is not in the chain"))?;
    let asked: Option<ReshareRequest> = verified
        .iter()
        .find(|(c, e)| {
            *c == reshared.request
                && e.envelope().kind == Kind::ReshareRequest
                && e.envelope().sender == request.principal
        })
        .and_then(|(_, e)| e.public_payload().ok().flatten());
    let Some(asked) = asked else {
        return Err(failed("no request of the principal's asked for it"));
    };
    if !commitment.keeps_the_key_of(previous)
        || commitment.fiduciaries != asked.fiduciaries
        || commitment.threshold != asked.threshold
    {
        return Err(failed(
            "it changes the order or its key, or is not the committee asked for",
        ));
    }
    let mut dealers = reshared.dealers.clone();
    dealers.sort_unstable();
    dealers.dedup();
    let (old_holders, holders) = (previous.fiduciaries.len(), commitment.fiduciaries.len());
    if dealers.len() != previous.threshold as usize
        || dealers.iter().any(|d| *d == 0 || *d as usize > old_holders)
        || reshared.deals.len() != dealers.len()
        || reshared.deals.iter().any(|to| to.len() != holders)
    {
        return Err(failed(
            "it does not count t distinct dealers of the committee before",
        ));
    }
    let mut convicted = Vec::new();
    for block in &reshared.excluded {
        let dealer = check_exclusion(
            reference,
            reshared.request,
            block,
            commitment,
            previous,
            identity,
        )
        .map_err(|reason| failed(&format!("an exclusion does not hold: {reason}")))?;
        if dealers.contains(&dealer) {
            return Err(failed(&format!(
                "it counts holder {dealer}, whom it excluded"
            )));
        }
        if let Some(culprit) = previous.fiduciaries.get(dealer as usize - 1) {
            convicted.push(Misconduct {
                culprit: *culprit,
                offence: Offence::BadSubShare,
                evidence: crate::block::cid_of(crate::block::DAG_CBOR, block),
            });
        }
    }
    Ok(convicted)
}

/// The dealer (old share index) a complaint in a commitment's exclusions convicts: signed by
/// the holder of the new committee it names as recipient, about the commitment's request, and
/// judged against the shares before.
fn check_exclusion(
    reference: &str,
    request: Cid,
    block: &[u8],
    commitment: &Commitment,
    previous: &Commitment,
    identity: &impl Fn(&Cid) -> Option<VerifiedIdentity>,
) -> Result<u32, String> {
    let signed = SignedEnvelope::decode(block).map_err(|e| e.to_string())?;
    let complainer = signed.envelope.sender;
    let recipient = commitment
        .fiduciaries
        .iter()
        .position(|f| *f == complainer)
        .ok_or("its maker is not a holder of the new committee")? as u32
        + 1;
    let complainer_identity = identity(&complainer).ok_or("its maker is not known")?;
    let envelope = signed
        .verify(&complainer_identity)
        .map_err(|_| "it is not signed by its maker")?;
    if envelope.envelope().kind != Kind::ReshareComplaint || envelope.envelope().order != reference
    {
        return Err("it is not a complaint of this order".into());
    }
    let complaint: ReshareComplaint = envelope
        .public_payload()
        .ok()
        .flatten()
        .ok_or("it holds no complaint")?;
    let dealer_cid = previous
        .fiduciaries
        .get((complaint.dealer as usize).wrapping_sub(1))
        .ok_or("it accuses no holder of the committee before")?;
    let dealer = identity(dealer_cid).ok_or("the dealer is not known")?;
    let old = OldShares::of(previous).map_err(|e| e.to_string())?;
    match complaint
        .judge(request, recipient, &complainer, &dealer, &old)
        .map_err(|e| e.to_string())?
    {
        crate::dkg::Verdict::DealerCheated => Ok(complaint.dealer),
        crate::dkg::Verdict::FalseComplaint => Err("the sub-share it accuses fits".into()),
    }
}

/// Checks every release request in the chain: made by the order's principal, and for the
/// beneficiary the order names, where it names one. Returns each release's beneficiary.
fn check_releases(
    request: &OrderRequest,
    verified: &[(Cid, VerifiedEnvelope)],
) -> Result<BTreeMap<Cid, Cid>, AuditError> {
    let mut releases = BTreeMap::new();
    for (cid, envelope) in verified
        .iter()
        .filter(|(_, e)| e.envelope().kind == Kind::ReleaseRequest)
    {
        let failed = |reason: String| AuditError::Release {
            envelope: cid.to_string(),
            reason,
        };
        let release: ReleaseRequest = envelope
            .public_payload()
            .ok()
            .flatten()
            .ok_or_else(|| failed("no release payload".into()))?;
        if envelope.envelope().sender != request.principal {
            return Err(failed("not requested by the order's principal".into()));
        }
        if let Some(named) = request.beneficiary
            && named != release.beneficiary
        {
            return Err(failed(format!(
                "released to {}, but the order is for beneficiary {named}",
                release.beneficiary
            )));
        }
        releases.insert(*cid, release.beneficiary);
    }
    Ok(releases)
}

/// The block `cid` as a verified envelope of order `reference`: its hash, its canonical form,
/// its sender's signature. `keep` sees the decoded envelope first: one it refuses is `None`
/// (and its signature is not checked).
fn verified_envelope(
    reference: &str,
    cid: Cid,
    block: &impl Fn(&Cid) -> Option<Vec<u8>>,
    identity: &impl Fn(&Cid) -> Option<VerifiedIdentity>,
    keep: impl Fn(&SignedEnvelope) -> bool,
) -> Result<Option<VerifiedEnvelope>, AuditError> {
    let bytes = block(&cid).ok_or_else(|| AuditError::Missing(cid.to_string()))?;
    Block::verified(cid, bytes.clone(), Limits::default()).map_err(|e| AuditError::BadBlock {
        cid: cid.to_string(),
        reason: e.to_string(),
    })?;
    let bad = |reason: String| AuditError::BadEnvelope {
        envelope: cid.to_string(),
        reason,
    };
    let signed = SignedEnvelope::decode(&bytes).map_err(|e| bad(e.to_string()))?;
    if !keep(&signed) {
        return Ok(None);
    }
    let sender = identity(&signed.envelope.sender).ok_or_else(|| AuditError::UnknownSender {
        envelope: cid.to_string(),
        sender: signed.envelope.sender.to_string(),
    })?;
    let envelope = signed.verify(&sender).map_err(|e| bad(e.to_string()))?;
    if envelope.envelope().order != reference {
        return Err(AuditError::WrongOrder(cid.to_string()));
    }
    Ok(Some(envelope))
}

/// The approvals and vetoes among `votes` that hang off the release request `release`, each
/// checked: its block, its signer's signature, its order. Others are left out.
fn votes_for(
    reference: &str,
    release: &Cid,
    votes: &[Cid],
    block: &impl Fn(&Cid) -> Option<Vec<u8>>,
    identity: &impl Fn(&Cid) -> Option<VerifiedIdentity>,
) -> Result<(Vec<Signed>, Vec<Signed>), AuditError> {
    let mut approvals = Vec::new();
    let mut vetoes = Vec::new();
    for cid in votes {
        let is_vote = |signed: &SignedEnvelope| {
            signed.envelope.prev == Some(*release)
                && matches!(signed.envelope.kind, Kind::Approval | Kind::Veto)
        };
        let Some(envelope) = verified_envelope(reference, *cid, block, identity, is_vote)? else {
            continue;
        };
        let bad = |reason: String| AuditError::BadEnvelope {
            envelope: cid.to_string(),
            reason,
        };
        let approval: Approval = envelope
            .public_payload()
            .ok()
            .flatten()
            .ok_or_else(|| bad("no approval payload".into()))?;
        let vote = Signed {
            signer: envelope.envelope().sender,
            approval,
            prev: envelope.envelope().prev,
            signed_ms: envelope.envelope().timestamp,
        };
        if envelope.envelope().kind == Kind::Veto {
            vetoes.push(vote);
        } else {
            approvals.push(vote);
        }
    }
    Ok((approvals, vetoes))
}

/// Checks each release a receipt answers against the order's release policy, as of the
/// receipt (the shares were released before it): the approvals and vetoes `votes` holds for
/// its request, the delay counted from the request's own time. Each move of custody to another
/// committee or threshold is checked the same way, as of its commitment, with the votes the
/// commitment names, and each threshold signature as of its envelope, with the votes it names.
/// Clocks may disagree by [`DEFAULT_CLOCK_TOLERANCE_MS`]. Returns how many releases, moves
/// and signatures were checked.
fn check_policy(
    reference: &str,
    order: &Cid,
    request: &OrderRequest,
    verified: &[(Cid, VerifiedEnvelope)],
    votes: &[Cid],
    block: &impl Fn(&Cid) -> Option<Vec<u8>>,
    identity: &impl Fn(&Cid) -> Option<VerifiedIdentity>,
) -> Result<usize, AuditError> {
    if !request.policy.has_conditions() {
        return Ok(0);
    }
    let by_cid: BTreeMap<&Cid, &VerifiedEnvelope> = verified.iter().map(|(c, e)| (c, e)).collect();
    let judge = Judge {
        reference,
        order,
        request,
        votes,
        block,
        identity,
    };
    let mut checked = 0;
    for (_, receipt_envelope) in verified
        .iter()
        .filter(|(_, e)| e.envelope().kind == Kind::Receipt)
    {
        let Some(receipt) = receipt_envelope.public_payload::<Receipt>().ok().flatten() else {
            continue;
        };
        let Some(release_envelope) = by_cid.get(&receipt.release) else {
            continue;
        };
        let failed = |reason: String| AuditError::Policy {
            release: receipt.release.to_string(),
            reason,
        };
        let release: ReleaseRequest = release_envelope
            .public_payload()
            .ok()
            .flatten()
            .ok_or_else(|| failed("no release payload".into()))?;
        // The votes the auditor has, and those the receipt names (each is checked: naming a
        // vote proves nothing, the vote's own signature and link do).
        let decided = Decided {
            request: receipt.release,
            request_envelope: release_envelope,
            at: receipt_envelope,
            released: release.sequence.saturating_sub(1),
            named: &receipt.votes,
        };
        match judge.verdict(&decided)? {
            Verdict::Release => checked += 1,
            Verdict::Wait(waiting) => {
                return Err(failed(format!("released while waiting for {waiting}")));
            }
            Verdict::Refused(refusal) => return Err(failed(refusal.to_string())),
        }
    }
    // Each move of custody to another committee or threshold, as of its commitment: authorized
    // like a release, but not one.
    for (_, commitment_envelope) in verified
        .iter()
        .filter(|(_, e)| e.envelope().kind == Kind::Commitment)
    {
        let Some(commitment) = commitment_envelope
            .public_payload::<Commitment>()
            .ok()
            .flatten()
        else {
            continue;
        };
        let Some(reshared) = &commitment.reshared else {
            continue;
        };
        let (Some(previous), Some(request_envelope)) = (
            by_cid
                .get(&reshared.previous)
                .and_then(|e| e.public_payload::<Commitment>().ok().flatten()),
            by_cid.get(&reshared.request),
        ) else {
            // `check_reshared` refuses a commitment whose previous one or request is missing.
            continue;
        };
        if previous.fiduciaries == commitment.fiduciaries
            && previous.threshold == commitment.threshold
        {
            continue;
        }
        judge.let_go(
            "custody moved",
            &Decided {
                request: reshared.request,
                request_envelope,
                at: commitment_envelope,
                released: 0,
                named: &reshared.votes,
            },
        )?;
        checked += 1;
    }
    // Each threshold signature, as of its envelope, with the votes it names: authorized like
    // a release, but not one.
    for (_, signature_envelope) in verified
        .iter()
        .filter(|(_, e)| e.envelope().kind == Kind::Signature)
    {
        let Some(made) = signature_envelope
            .public_payload::<crate::signing::Signature>()
            .ok()
            .flatten()
        else {
            continue;
        };
        // `check_threshold_signatures` refuses a signature whose request is missing.
        let Some(request_envelope) = by_cid.get(&made.request) else {
            continue;
        };
        judge.let_go(
            "signed",
            &Decided {
                request: made.request,
                request_envelope,
                at: signature_envelope,
                released: 0,
                named: &made.votes,
            },
        )?;
        checked += 1;
    }
    Ok(checked)
}

/// A release, move or signature whose envelope shows it was made: what the audit checks
/// against the order's release policy.
struct Decided<'a> {
    /// The request.
    request: Cid,
    /// Its envelope: the delay counts from its time.
    request_envelope: &'a VerifiedEnvelope,
    /// The envelope showing it was made (receipt, commitment, signature): the policy is
    /// judged as of its time, give or take the clocks' disagreement.
    at: &'a VerifiedEnvelope,
    /// Releases before it.
    released: u32,
    /// The votes that envelope names.
    named: &'a [Cid],
}

/// What judges a [`Decided`] against the order's release policy: the order, the auditor's
/// votes, and where blocks and identities come from.
struct Judge<'a, B, I> {
    reference: &'a str,
    order: &'a Cid,
    request: &'a OrderRequest,
    votes: &'a [Cid],
    block: &'a B,
    identity: &'a I,
}

impl<B, I> Judge<'_, B, I>
where
    B: Fn(&Cid) -> Option<Vec<u8>>,
    I: Fn(&Cid) -> Option<VerifiedIdentity>,
{
    /// The policy's verdict with the auditor's votes and those `decided` names (each checked:
    /// naming a vote proves nothing, the vote's own signature and link do).
    fn verdict(&self, decided: &Decided<'_>) -> Result<Verdict, AuditError> {
        let mut named: Vec<Cid> = self.votes.iter().chain(decided.named).copied().collect();
        named.sort();
        named.dedup();
        let (approvals, vetoes) = votes_for(
            self.reference,
            &decided.request,
            &named,
            self.block,
            self.identity,
        )?;
        let situation = Situation {
            order: *self.order,
            request: decided.request,
            request_seen_ms: decided.request_envelope.envelope().timestamp,
            now_ms: decided
                .at
                .envelope()
                .timestamp
                .saturating_add(DEFAULT_CLOCK_TOLERANCE_MS),
            tolerance_ms: DEFAULT_CLOCK_TOLERANCE_MS,
            released: decided.released,
            approvals: &approvals,
            vetoes: &vetoes,
        };
        Ok(self.request.policy.evaluate(&situation))
    }

    /// Nothing if the policy let a move or a signature go; else its failure: `done` (what was
    /// done) while waiting, or though refused.
    fn let_go(&self, done: &str, decided: &Decided<'_>) -> Result<(), AuditError> {
        let failed = |reason: String| AuditError::Policy {
            release: decided.request.to_string(),
            reason: format!("{done} {reason}"),
        };
        match self.verdict(decided)? {
            Verdict::Release => Ok(()),
            Verdict::Wait(waiting) => Err(failed(format!("while waiting for {waiting}"))),
            Verdict::Refused(refusal) => Err(failed(format!("though {refusal}"))),
        }
    }
}

/// Every threshold signature in the chain: made by the principal for one of its signature
/// requests in the chain, allowed by the order's signing policy, under the order's key (every
/// commitment keeps it; its x-only form for BIP-340), and valid as its scheme says over that
/// request's message. Returns how many.
fn check_threshold_signatures(
    request: &OrderRequest,
    commitments: &BTreeMap<Cid, Commitment>,
    verified: &[(Cid, VerifiedEnvelope)],
) -> Result<usize, AuditError> {
    let mut checked = 0;
    for (cid, envelope) in verified
        .iter()
        .filter(|(_, e)| e.envelope().kind == Kind::Signature)
    {
        let failed = |reason: &str| AuditError::ThresholdSignature {
            envelope: cid.to_string(),
            reason: reason.to_owned(),
        };
        if envelope.envelope().sender != request.principal {
            return Err(failed("it is not the principal's"));
        }
        let made: crate::signing::Signature = envelope
            .public_payload()
            .ok()
            .flatten()
            .ok_or_else(|| failed("no signature payload"))?;
        let asked: crate::signing::SignRequest = verified
            .iter()
            .find(|(c, e)| {
                *c == made.request
                    && e.envelope().kind == Kind::SignRequest
                    && e.envelope().sender == request.principal
            })
            .and_then(|(_, e)| e.public_payload().ok().flatten())
            .ok_or_else(|| failed("no request of the principal's in the chain asked for it"))?;
        let key_matches = commitments.values().next().is_some_and(|c| {
            let key = match made.scheme {
                SignatureScheme::Bip340 => c.public_key.get(1..),
                SignatureScheme::Bls12381 => Some(c.public_key.as_slice()),
            };
            key == Some(made.key.as_slice())
        });
        if !key_matches {
            return Err(failed("it names another key than the order's"));
        }
        if let Some(policy) = &request.policy.signing
            && let Err(refusal) = policy.allows(asked.sequence, &asked.message)
        {
            return Err(failed(&format!(
                "the order's release policy does not allow it: {refusal}"
            )));
        }
        if !made.verifies(&asked.message) {
            return Err(failed("it does not verify over the request's message"));
        }
        checked += 1;
    }
    Ok(checked)
}

/// Audits the chain ending at `head` for order `reference`. `votes` are approval and veto
/// envelopes the auditor has for the order, to which each receipt adds those it names
/// (those hanging off a release request of the chain are checked; the rest are ignored); with
/// them, every release a receipt answers is checked against the order's release policy.
pub fn audit(
    reference: &str,
    head: Cid,
    votes: &[Cid],
    block: impl Fn(&Cid) -> Option<Vec<u8>>,
    identity: impl Fn(&Cid) -> Option<VerifiedIdentity>,
) -> Result<AuditReport, AuditError> {
    let mut verified: Vec<(Cid, VerifiedEnvelope)> = Vec::new();
    let mut next = Some(head);
    while let Some(cid) = next {
        if verified.len() >= MAX_CHAIN {
            return Err(AuditError::TooLong);
        }
        let envelope = verified_envelope(reference, cid, &block, &identity, |_| true)?
            .ok_or_else(|| AuditError::Missing(cid.to_string()))?;
        next = envelope.envelope().prev;
        verified.push((cid, envelope));
    }
    let requests: Vec<&(Cid, VerifiedEnvelope)> = verified
        .iter()
        .filter(|(_, e)| e.envelope().kind == Kind::OrderRequest)
        .collect();
    let [(_, request_envelope)] = requests.as_slice() else {
        return Err(AuditError::NoOrderRequest);
    };
    if verified.last().map(|(_, e)| e.envelope().kind) != Some(Kind::OrderRequest) {
        return Err(AuditError::NoOrderRequest);
    }
    let request: OrderRequest = request_envelope
        .public_payload()
        .ok()
        .flatten()
        .ok_or(AuditError::NoOrderRequest)?;
    // Only the order's principal ends it.
    if let Some((cid, _)) = verified.iter().find(|(_, e)| {
        e.envelope().kind == Kind::OrderCancel && e.envelope().sender != request.principal
    }) {
        return Err(AuditError::BadEnvelope {
            envelope: cid.to_string(),
            reason: "a cancel not from the order's principal".into(),
        });
    }
    let commitments: BTreeMap<Cid, Commitment> = verified
        .iter()
        .filter(|(_, e)| e.envelope().kind == Kind::Commitment)
        .filter_map(|(cid, e)| e.public_payload().ok().flatten().map(|c| (*cid, c)))
        .collect();
    let mut misconduct = Vec::new();
    for (cid, commitment) in &commitments {
        check_generated(reference, &request, *cid, commitment, &verified, &identity)?;
        misconduct.extend(check_reshared(
            reference,
            &request,
            *cid,
            commitment,
            &commitments,
            &verified,
            &identity,
        )?);
    }
    misconduct.extend(check_aborted(
        reference, &request, &verified, &block, &identity,
    )?);
    let mut certified = false;
    for (cid, envelope) in verified
        .iter()
        .filter(|(_, e)| e.envelope().kind == Kind::Certificate)
    {
        let failed = |reason: String| AuditError::Certificate {
            envelope: cid.to_string(),
            reason,
        };
        let certificate: Certificate = envelope
            .public_payload()
            .ok()
            .flatten()
            .ok_or_else(|| failed("no certificate payload".into()))?;
        let Some(committed) = commitments.get(&certificate.commitment) else {
            return Err(failed("its commitment is not in the chain".into()));
        };
        // The committee that signed is the commitment's: custody may have moved since the
        // order was made.
        // With the keys they had then: a fiduciary may have rotated its keys since.
        let at = envelope.envelope().timestamp;
        let signers: Vec<VerifiedIdentity> = committed
            .fiduciaries
            .iter()
            .map(|f| {
                identity(f)
                    .map(|i| i.as_of(at).clone())
                    .ok_or_else(|| failed(format!("unknown fiduciary {f}")))
            })
            .collect::<Result<_, _>>()?;
        let refs: Vec<&VerifiedIdentity> = signers.iter().collect();
        certificate
            .verify(certificate.commitment, &refs)
            .map_err(|e| failed(e.to_string()))?;
        certified = true;
    }
    let releases = check_releases(&request, &verified)?;
    let order_cid = verified
        .last()
        .map(|(cid, _)| *cid)
        .ok_or(AuditError::NoOrderRequest)?;
    let policies = check_policy(
        reference, &order_cid, &request, &verified, votes, &block, &identity,
    )?;
    let receipts = verified
        .iter()
        .filter(|(_, e)| e.envelope().kind == Kind::Receipt)
        .map(|(cid, envelope)| {
            let failed = |reason: &str| AuditError::Release {
                envelope: cid.to_string(),
                reason: reason.to_owned(),
            };
            let receipt: Receipt = envelope
                .public_payload()
                .ok()
                .flatten()
                .ok_or_else(|| failed("no receipt payload"))?;
            match releases.get(&receipt.release) {
                Some(beneficiary) if *beneficiary == envelope.envelope().sender => {}
                Some(_) => return Err(failed("the receipt is not from the release's beneficiary")),
                None => return Err(failed("the receipt answers no release in the chain")),
            }
            let equivocations = receipt
                .equivocations
                .iter()
                .map(|pair| {
                    judge_equivocation(reference, pair, &receipt, &block, &identity).map_err(
                        |reason| AuditError::Release {
                            envelope: cid.to_string(),
                            reason: format!(
                                "equivocation {} and {}: {reason}",
                                pair.first, pair.second
                            ),
                        },
                    )
                })
                .collect::<Result<Vec<Misconduct>, _>>()?;
            receipt
                .refused
                .iter()
                .map(|refused| {
                    let beneficiary = envelope.envelope().sender;
                    judge_refused(
                        refused,
                        &receipt,
                        &beneficiary,
                        &commitments,
                        &verified,
                        &block,
                        &identity,
                    )
                    .map_err(|reason| AuditError::Release {
                        envelope: cid.to_string(),
                        reason: format!("refused share {}: {reason}", refused.share),
                    })
                })
                .chain(equivocations.into_iter().map(Ok))
                .collect::<Result<Vec<Misconduct>, _>>()
        })
        .collect::<Result<Vec<Vec<Misconduct>>, _>>()?;
    let receipts_found = receipts.len();
    misconduct.extend(receipts.into_iter().flatten());
    let receipts = receipts_found;
    let threshold_signatures = check_threshold_signatures(&request, &commitments, &verified)?;
    Ok(AuditReport {
        envelopes: verified
            .iter()
            .map(|(cid, e)| (*cid, e.envelope().kind))
            .collect(),
        certified,
        receipts,
        policies,
        threshold_signatures,
        misconduct,
    })
}

/// The fiduciary a receipt's equivocation convicts: both envelopes are its share releases for
/// the receipt's release, signed by it, and they differ. An honest fiduciary seals one share
/// release per request and sends that one again when asked again.
fn judge_equivocation(
    reference: &str,
    pair: &Equivocation,
    receipt: &Receipt,
    block: &impl Fn(&Cid) -> Option<Vec<u8>>,
    identity: &impl Fn(&Cid) -> Option<VerifiedIdentity>,
) -> Result<Misconduct, String> {
    if pair.first == pair.second {
        return Err("it names one envelope twice".into());
    }
    let answer = |cid: Cid| {
        verified_envelope(reference, cid, block, identity, |s| {
            s.envelope.kind == Kind::ShareRelease
        })
        .map_err(|e| e.to_string())?
        .filter(|e| e.envelope().prev == Some(receipt.release))
        .ok_or_else(|| format!("{cid} is no share release for the receipt's release"))
    };
    let (first, second) = (answer(pair.first)?, answer(pair.second)?);
    let culprit = first.envelope().sender;
    if second.envelope().sender != culprit {
        return Err("they are from two senders".into());
    }
    Ok(Misconduct {
        culprit,
        offence: Offence::Equivocation,
        evidence: pair.second,
    })
}

/// The fiduciary a receipt's refused share convicts: its envelope is the fiduciary's share
/// release for the receipt's release, sealed to the beneficiary alone, the revealed key opens
/// it, it names the fiduciary's own index, and the share it holds is not the one the release's
/// certified commitment commits to. A refused share that fits convicts the beneficiary's
/// receipt of a false accusation (an error).
fn judge_refused(
    refused: &RefusedShare,
    receipt: &Receipt,
    beneficiary: &Cid,
    commitments: &BTreeMap<Cid, Commitment>,
    verified: &[(Cid, VerifiedEnvelope)],
    block: &impl Fn(&Cid) -> Option<Vec<u8>>,
    identity: &impl Fn(&Cid) -> Option<VerifiedIdentity>,
) -> Result<Misconduct, String> {
    let bytes = block(&refused.share).ok_or("it is missing")?;
    let culprit = SignedEnvelope::decode(&bytes)
        .map_err(|e| e.to_string())?
        .envelope
        .sender;
    let signer = identity(&culprit).ok_or("its sender is not known")?;
    let (_, plain) = crate::evidence::open(
        &bytes,
        &refused.content_key,
        &signer,
        (Kind::ShareRelease, receipt.release),
        beneficiary,
    )
    .map_err(|e| e.to_string())?;
    let released: ShareRelease =
        crate::dagcbor::decode(&plain, Limits::default()).map_err(|e| e.to_string())?;
    let commitment = verified
        .iter()
        .find(|(c, _)| *c == receipt.release)
        .and_then(|(_, e)| e.public_payload::<ReleaseRequest>().ok().flatten())
        .and_then(|request| {
            verified
                .iter()
                .find(|(c, _)| *c == request.certificate)
                .and_then(|(_, e)| e.public_payload::<Certificate>().ok().flatten())
        })
        .and_then(|certificate| commitments.get(&certificate.commitment))
        .ok_or("its release's commitment is not in the chain")?;
    let position = commitment
        .fiduciaries
        .iter()
        .position(|f| *f == culprit)
        .ok_or("its sender is no fiduciary of the release")?;
    if released.release != receipt.release || released.index != position as u32 + 1 {
        return Err("it is not its sender's share of this release".into());
    }
    let value: Option<&[u8; 32]> = released.share.expose().try_into().ok();
    if value.is_some_and(|value| commitment.fits_share(released.index, value)) {
        return Err("it fits the commitment: the receipt accuses falsely".into());
    }
    Ok(Misconduct {
        culprit,
        offence: Offence::WrongShare,
        evidence: refused.share,
    })
}

#[cfg(test)]
#[path = "audit_tests.rs"]
mod tests;

//! Signed envelopes: every step of an order, as a block hash-linked to the previous one.
//!
//! An envelope names its sender (identity CID), its kind, the order it belongs to and the
//! previous envelope of that order (`prev`). It may carry a public payload in the clear and a
//! secret payload sealed to listed recipients. The sender's signature covers the canonical
//! encoding of everything else; the seal's associated data is the [`Header`], so a
//! ciphertext cannot be moved to another envelope.
//!
//! Which key signs is fixed by the sender's identity, never chosen by the envelope: a
//! version 2 identity signs with its Ed25519 key, a version 1 identity with its BLS key. The
//! exceptions are [`Kind::CommitmentSignature`] and [`Kind::BatchSignature`], always BLS: those
//! signatures are aggregated into custody certificates. An order so costs its fiduciaries one
//! BLS signature each, or one for a whole batch of orders, and its principal one aggregate
//! verification; every other step is an Ed25519 signature.
//!
//! Checks run cheapest first: [`SignedEnvelope::check_structure`] (no cryptography), then
//! [`SignedEnvelope::verify`] (the signature, against an already verified identity). Only a
//! [`VerifiedEnvelope`] can be opened.

use std::fmt;

use cid::Cid;
use dta_crypto::seal::{self, Encapsulation, KemPublicKey, OpenError, SealError};
use dta_crypto::{Secret, bls, ed25519};
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;
use zeroize::Zeroizing;

use crate::block::Block;
use crate::dagcbor::{self, DecodeError, EncodeError, Limits};
use crate::identity::{LocalIdentity, VerifiedIdentity, signing_message};

/// Version of the envelope layout.
pub const ENVELOPE_VERSION: u64 = 1;
/// What an envelope signature signs: this prefix, then the canonical envelope.
pub const ENVELOPE_CONTEXT: &[u8] = b"dta/envelope/v1\0";
/// Longest order reference, in bytes.
pub const MAX_ORDER_REF_LEN: usize = 128;
/// Most recipients of one envelope.
pub const MAX_RECIPIENTS: usize = seal::MAX_RECIPIENTS;
/// Largest encoded envelope.
pub const MAX_ENVELOPE_SIZE: usize = 1024 * 1024;

/// What step of a flow an envelope records.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// A principal asks fiduciaries to take custody.
    OrderRequest,
    /// A principal hands one fiduciary its share.
    ShareDeal,
    /// A fiduciary publishes the public half of a key share it generated.
    KeyShare,
    /// The public commitment to an order's secret or key.
    Commitment,
    /// A fiduciary's signature over the commitment. Its envelope signature *is* the custody
    /// signature (over [`crate::order::custody_message`] of `prev`, the commitment), so it
    /// carries no payload and no timestamp: every field follows from sender, order and
    /// commitment, and one signature serves both the log and the certificate.
    CommitmentSignature,
    /// The aggregated custody certificate.
    Certificate,
    /// A principal asks for a release to a beneficiary.
    ReleaseRequest,
    /// A fiduciary's share, sealed to the beneficiary.
    ShareRelease,
    /// The beneficiary's signed receipt.
    Receipt,
    /// A requester asks trust authorities for M-Pin secret shares (see [`crate::mpin`]).
    MpinRequest,
    /// A trust authority's M-Pin share, sealed to the requester, or its refusal.
    MpinShare,
    /// An approver's approval of one release request, under the order's release policy
    /// (public payload [`crate::policy::Approval`], `prev` the request).
    Approval,
    /// A veto of one release request by a member of the policy's veto group (same payload).
    Veto,
    /// A fiduciary's commitment in a key generation without a dealer
    /// ([`crate::dkg::DkgCommitment`], `prev` the order request).
    DkgCommitment,
    /// Every fiduciary's commitment, from the principal ([`crate::dkg::DkgRound`], `prev` the
    /// order request).
    DkgRound,
    /// A share one fiduciary deals another, sealed to it ([`crate::dkg::DkgShare`], `prev`
    /// the round).
    DkgShare,
    /// A complaint against a dealer, with the share as evidence
    /// ([`crate::dkg::DkgComplaint`], `prev` the round).
    DkgComplaint,
    /// The principal ends a key generation and names who failed it
    /// ([`crate::dkg::DkgAbort`], `prev` the round).
    DkgAbort,
    /// The principal gives up a generated key whose fiduciaries did not all answer, and names
    /// them ([`crate::dkg::DkgAbandon`], `prev` the order's head).
    DkgAbandon,
    /// The principal asks an order's holders to deal their shares anew
    /// ([`crate::reshare::ReshareRequest`], `prev` the order's head).
    ReshareRequest,
    /// An old holder's share dealt to one holder of the next epoch: commitments in public, the
    /// sub-share sealed to its recipient ([`crate::reshare::ReshareCommitments`],
    /// [`crate::reshare::ReshareSubShare`], `prev` the request).
    ReshareDeal,
    /// A holder says it deleted its share of an epoch, once the commitment of the next one
    /// made it useless ([`crate::reshare::ShareDeleted`], `prev` that commitment).
    ShareDeleted,
    /// A holder of the next epoch's complaint against a dealer whose sub-share fails, with the
    /// deal as evidence ([`crate::reshare::ReshareComplaint`], `prev` the commitment that
    /// counted the deal).
    ReshareComplaint,
    /// The principal asks the fiduciaries to sign a message with the order's key
    /// ([`crate::signing::SignRequest`], `prev` the order's head).
    SignRequest,
    /// A fiduciary's commitments to nonces for one signature
    /// ([`crate::signing::SignCommitment`], `prev` the request).
    SignCommitment,
    /// The principal's choice of t signers and their commitments
    /// ([`crate::signing::SignPackage`], `prev` the request).
    SignPackage,
    /// A signer's share of the signature ([`crate::signing::SignatureShare`], `prev` the
    /// package).
    SignatureShare,
    /// The signature the shares made ([`crate::signing::Signature`], `prev` the request).
    Signature,
    /// A fiduciary's threshold BLS signature with its share
    /// ([`crate::signing::PartialSignature`], `prev` the request).
    PartialSignature,
    /// The principal ends an order: its holders delete their shares, each saying so in a
    /// [`Kind::ShareDeleted`] whose `prev` is this ([`crate::order::OrderCancel`], `prev` the
    /// order's head). Authorized like a release under the order's policy.
    OrderCancel,
    /// The principal's list of orders dealt together to the same fiduciaries, sent before
    /// their deals ([`crate::batch::CustodyBatch`], no `prev`; `order` names the batch).
    CustodyBatch,
    /// A fiduciary's one custody signature for every order of a batch, once it holds all their
    /// shares. Like [`Kind::CommitmentSignature`], the envelope signature *is* the custody
    /// signature, over [`crate::batch::batch_message`] of the root its public payload names
    /// ([`crate::batch::BatchRoot`], `prev` the batch, no timestamp).
    BatchSignature,
}

impl Kind {
    /// Whether an envelope of this kind is a fiduciary's BLS custody signature, aggregated
    /// into certificates: signed with the BLS key whatever the identity's version, and with
    /// no timestamp, so that every field follows from what it certifies.
    pub fn is_custody_signature(self) -> bool {
        matches!(self, Kind::CommitmentSignature | Kind::BatchSignature)
    }

    /// The kind's name, as envelopes serialise it (`order-request`).
    pub fn name(self) -> &'static str {
        match self {
            Kind::OrderRequest => "order-request",
            Kind::ShareDeal => "share-deal",
            Kind::KeyShare => "key-share",
            Kind::Commitment => "commitment",
            Kind::CommitmentSignature => "commitment-signature",
            Kind::Certificate => "certificate",
            Kind::ReleaseRequest => "release-request",
            Kind::ShareRelease => "share-release",
            Kind::Receipt => "receipt",
            Kind::MpinRequest => "mpin-request",
            Kind::MpinShare => "mpin-share",
            Kind::Approval => "approval",
            Kind::Veto => "veto",
            Kind::DkgCommitment => "dkg-commitment",
            Kind::DkgRound => "dkg-round",
            Kind::DkgShare => "dkg-share",
            Kind::DkgComplaint => "dkg-complaint",
            Kind::DkgAbort => "dkg-abort",
            Kind::DkgAbandon => "dkg-abandon",
            Kind::ReshareRequest => "reshare-request",
            Kind::ReshareDeal => "reshare-deal",
            Kind::ShareDeleted => "share-deleted",
            Kind::ReshareComplaint => "reshare-complaint",
            Kind::SignRequest => "sign-request",
            Kind::SignCommitment => "sign-commitment",
            Kind::SignPackage => "sign-package",
            Kind::SignatureShare => "signature-share",
            Kind::Signature => "signature",
            Kind::PartialSignature => "partial-signature",
            Kind::OrderCancel => "order-cancel",
            Kind::CustodyBatch => "custody-batch",
            Kind::BatchSignature => "batch-signature",
        }
    }
}

/// One recipient of the sealed payload.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recipient {
    /// The recipient's identity CID.
    pub identity: Cid,
    /// X-Wing ciphertext.
    #[serde(with = "serde_bytes")]
    pub kem_ciphertext: Vec<u8>,
    /// The content key wrapped under the encapsulated secret.
    #[serde(with = "serde_bytes")]
    pub wrapped_key: Vec<u8>,
}

impl fmt::Debug for Recipient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Recipient({})", self.identity)
    }
}

/// Everything the signature covers.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Envelope {
    /// Layout version, [`ENVELOPE_VERSION`].
    pub version: u64,
    /// The sender's identity CID.
    pub sender: Cid,
    /// What this envelope records.
    pub kind: Kind,
    /// The order it belongs to.
    pub order: String,
    /// The previous envelope of this order, if any.
    pub prev: Option<Cid>,
    /// Milliseconds since the Unix epoch, by the sender's clock.
    pub timestamp: u64,
    /// A payload anyone may read (canonical DAG-CBOR).
    pub public: Option<ByteBuf>,
    /// Who can open the sealed payload.
    pub recipients: Vec<Recipient>,
    /// The sealed payload, present exactly when there are recipients.
    pub ciphertext: Option<ByteBuf>,
}

/// An envelope and its sender's signature: the block that is stored and exchanged.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct SignedEnvelope {
    /// The signed content.
    pub envelope: Envelope,
    /// The sender's signature over [`ENVELOPE_CONTEXT`] followed by the canonical envelope:
    /// Ed25519 or BLS, as the sender's identity says (for a [`Kind::CommitmentSignature`],
    /// always BLS, over the custody message of its commitment).
    #[serde(with = "serde_bytes")]
    pub signature: Vec<u8>,
}

/// The seal's associated data: the envelope minus key material, ciphertext and signature.
#[derive(Serialize)]
struct Header<'a> {
    version: u64,
    sender: &'a Cid,
    kind: Kind,
    order: &'a str,
    prev: &'a Option<Cid>,
    timestamp: u64,
    public: &'a Option<ByteBuf>,
    recipients: Vec<&'a Cid>,
}

impl Envelope {
    /// The seal's associated data, for the given recipient list.
    fn header<'a>(&'a self, recipients: Vec<&'a Cid>) -> Result<Vec<u8>, EncodeError> {
        dagcbor::encode(&Header {
            version: self.version,
            sender: &self.sender,
            kind: self.kind,
            order: &self.order,
            prev: &self.prev,
            timestamp: self.timestamp,
            public: &self.public,
            recipients,
        })
    }
}

/// What to put in a new envelope.
#[derive(Debug)]
pub struct Draft<'a> {
    /// What it records.
    pub kind: Kind,
    /// The order.
    pub order: &'a str,
    /// The previous envelope of the order.
    pub prev: Option<Cid>,
    /// Milliseconds since the Unix epoch.
    pub timestamp: u64,
    /// Readable by anyone.
    pub public: Option<Vec<u8>>,
    /// Sealed to `recipients`; needs at least one recipient.
    pub secret: Option<&'a [u8]>,
    /// Who can open `secret`.
    pub recipients: &'a [&'a VerifiedIdentity],
}

/// Why an envelope could not be made, checked or opened.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum EnvelopeError {
    /// Not canonical DAG-CBOR of the right shape.
    #[error("envelope does not decode: {0}")]
    Decode(#[from] DecodeError),
    /// Could not be encoded.
    #[error("envelope does not encode: {0}")]
    Encode(#[from] EncodeError),
    /// Unknown layout version.
    #[error("unsupported envelope version {0}")]
    Version(u64),
    /// Empty or oversized order reference.
    #[error("order reference must be 1 to {MAX_ORDER_REF_LEN} bytes")]
    OrderRef,
    /// The public payload is not canonical DAG-CBOR.
    #[error("public payload is not canonical DAG-CBOR: {0}")]
    PublicPayload(DecodeError),
    /// Recipients without ciphertext, or ciphertext without recipients.
    #[error("a sealed payload needs recipients and recipients need a sealed payload")]
    SealMismatch,
    /// Too many recipients.
    #[error("{0} recipients; at most {MAX_RECIPIENTS} are allowed")]
    TooManyRecipients(usize),
    /// The same recipient twice.
    #[error("recipient {0} is listed twice")]
    DuplicateRecipient(String),
    /// A recipient entry of the wrong size.
    #[error("recipient {0} has a malformed key encapsulation")]
    MalformedRecipient(String),
    /// The signature has the wrong size or does not decode.
    #[error("malformed signature")]
    MalformedSignature,
    /// The identity given is not the envelope's sender.
    #[error("envelope is from {claimed}, not from {given}")]
    WrongSender {
        /// Sender named in the envelope.
        claimed: String,
        /// Identity it was checked against.
        given: String,
    },
    /// The signature does not verify.
    #[error("signature does not verify")]
    BadSignature,
    /// Sealing failed.
    #[error("cannot seal: {0}")]
    Seal(#[from] SealError),
    /// This node is not among the recipients.
    #[error("{0} is not a recipient of this envelope")]
    NotARecipient(String),
    /// There is nothing sealed in this envelope.
    #[error("envelope has no sealed payload")]
    NothingSealed,
    /// Opening failed.
    #[error("cannot open: {0}")]
    Open(#[from] OpenError),
    /// A custody signature envelope with a payload, a timestamp or no commitment.
    #[error("a commitment signature names its commitment and carries nothing else")]
    CustodySignatureShape,
    /// A batch signature without its batch, its root, or with a timestamp or a seal.
    #[error("a batch signature names its batch and root and carries nothing else")]
    BatchSignatureShape,
    /// A bundle that is empty, too long, or not one sender's `prev` chain.
    #[error("bad bundle: {0}")]
    Bundle(&'static str),
}

/// Most envelopes in one bundle.
pub const MAX_BUNDLE: usize = 8;

/// Envelopes sent together: a segment of one sender's `prev` chain, oldest first. Only the
/// newest needs a signature check; it commits to the one before by hash, which commits to the
/// one before it, and so on. A principal's order request, commitment and deal reach a
/// fiduciary this way for one pairing instead of three.
#[derive(Clone, Debug)]
pub struct Bundle {
    envelopes: Vec<(Cid, SignedEnvelope)>,
}

impl Bundle {
    /// Decodes blocks and checks their structure and links (no signature check yet).
    pub fn decode(blocks: &[impl AsRef<[u8]>]) -> Result<Self, EnvelopeError> {
        Self::decode_with(blocks, SignedEnvelope::decode)
    }

    /// Decodes blocks as [`Bundle::decode`] does, each with [`SignedEnvelope::decode_seen`]:
    /// only for blocks a strict decode saw before (a delivery the network loop checked, or
    /// blocks this node kept).
    pub fn decode_seen(blocks: &[impl AsRef<[u8]>]) -> Result<Self, EnvelopeError> {
        Self::decode_with(blocks, SignedEnvelope::decode_seen)
    }

    fn decode_with(
        blocks: &[impl AsRef<[u8]>],
        decode: fn(&[u8]) -> Result<SignedEnvelope, EnvelopeError>,
    ) -> Result<Self, EnvelopeError> {
        if blocks.is_empty() || blocks.len() > MAX_BUNDLE {
            return Err(EnvelopeError::Bundle("1 to 8 envelopes"));
        }
        let envelopes = blocks
            .iter()
            .map(|bytes| {
                let bytes = bytes.as_ref();
                Ok((
                    crate::block::cid_of(crate::block::DAG_CBOR, bytes),
                    decode(bytes)?,
                ))
            })
            .collect::<Result<Vec<_>, EnvelopeError>>()?;
        for pair in envelopes.windows(2) {
            let [(older_cid, older), (_, newer)] = pair else {
                continue;
            };
            if newer.envelope.prev != Some(*older_cid)
                || newer.envelope.sender != older.envelope.sender
            {
                return Err(EnvelopeError::Bundle(
                    "envelopes are not one sender's prev chain",
                ));
            }
        }
        Ok(Self { envelopes })
    }

    /// Whether `newer` extends a bundle whose newest envelope is `older` (block bytes a
    /// strict decode saw before: this node's own or kept blocks, which it is about to send).
    pub fn links(older: &[u8], newer: &[u8]) -> bool {
        let older_cid = crate::block::cid_of(crate::block::DAG_CBOR, older);
        match (
            SignedEnvelope::decode_seen(older),
            SignedEnvelope::decode_seen(newer),
        ) {
            (Ok(older), Ok(newer)) => {
                newer.envelope.prev == Some(older_cid)
                    && newer.envelope.sender == older.envelope.sender
            }
            _ => false,
        }
    }

    /// The sender of every envelope in the bundle.
    pub fn sender(&self) -> Cid {
        self.newest().1.envelope.sender
    }

    /// The newest envelope, the one whose signature vouches for the rest.
    pub fn newest(&self) -> &(Cid, SignedEnvelope) {
        // Never empty: `decode` refuses empty bundles.
        &self.envelopes[self.envelopes.len() - 1]
    }

    /// Checks the newest envelope's signature against the sender's identity; the rest are
    /// then authentic by their links.
    pub fn verify(
        self,
        sender: &VerifiedIdentity,
    ) -> Result<Vec<(Cid, VerifiedEnvelope)>, EnvelopeError> {
        let (_, newest) = self.newest().clone();
        newest.verify(sender)?;
        Ok(self.vouched())
    }

    /// The envelopes as verified, when the newest one already was (by its CID, elsewhere).
    pub fn vouched(self) -> Vec<(Cid, VerifiedEnvelope)> {
        self.envelopes
            .into_iter()
            .map(|(cid, signed)| (cid, VerifiedEnvelope { signed }))
            .collect()
    }
}

impl SignedEnvelope {
    /// Builds, seals and signs an envelope from `sender`.
    pub fn create(sender: &LocalIdentity, draft: Draft<'_>) -> Result<Self, EnvelopeError> {
        if draft.secret.is_some() == draft.recipients.is_empty() {
            return Err(EnvelopeError::SealMismatch);
        }
        let mut envelope = Envelope {
            version: ENVELOPE_VERSION,
            sender: sender.cid(),
            kind: draft.kind,
            order: draft.order.to_owned(),
            prev: draft.prev,
            timestamp: draft.timestamp,
            public: draft.public.map(ByteBuf::from),
            recipients: Vec::new(),
            ciphertext: None,
        };
        if let Some(secret) = draft.secret {
            let cids: Vec<Cid> = draft.recipients.iter().map(|r| r.cid()).collect();
            let header = envelope.header(cids.iter().collect())?;
            let keys: Vec<&KemPublicKey> = draft.recipients.iter().map(|r| r.kem_key()).collect();
            let sealed = seal::seal(&header, secret, &keys, sender.seal_sessions())?;
            envelope.recipients = cids
                .into_iter()
                .zip(sealed.encapsulations)
                .map(|(identity, encapsulation)| Recipient {
                    identity,
                    kem_ciphertext: encapsulation.kem_ciphertext,
                    wrapped_key: encapsulation.wrapped_key,
                })
                .collect();
            envelope.ciphertext = Some(ByteBuf::from(sealed.ciphertext));
        }
        if envelope.kind.is_custody_signature() {
            envelope.timestamp = 0;
        }
        let signed = Self {
            signature: Vec::new(),
            envelope,
        };
        signed.check_structure()?;
        let message = signed.signed_message()?;
        let signature = if signed.signs_with_ed25519(sender.identity()) {
            sender.keys().ed25519().sign(&message).to_vec()
        } else {
            sender.keys().bls().sign(&message).to_bytes().to_vec()
        };
        Ok(Self {
            signature,
            ..signed
        })
    }

    /// The envelope a fiduciary's custody signature over `commitment` stands for: every
    /// field follows from these, so the envelope can be rebuilt from a certificate's parts.
    pub fn custody_signature(
        fiduciary: Cid,
        order: &str,
        commitment: Cid,
        signature: Vec<u8>,
    ) -> Result<Self, EnvelopeError> {
        let signed = Self {
            envelope: Envelope {
                version: ENVELOPE_VERSION,
                sender: fiduciary,
                kind: Kind::CommitmentSignature,
                order: order.to_owned(),
                prev: Some(commitment),
                timestamp: 0,
                public: None,
                recipients: Vec::new(),
                ciphertext: None,
            },
            signature,
        };
        signed.check_structure()?;
        Ok(signed)
    }

    /// The batch root a [`Kind::BatchSignature`] names, if its payload is one.
    pub fn batch_root(&self) -> Option<crate::batch::Hash> {
        let public = self.envelope.public.as_ref()?;
        dagcbor::decode::<crate::batch::BatchRoot>(public, Limits::default())
            .ok()?
            .hash()
    }

    /// Whether `sender` signs this envelope with Ed25519 (else BLS).
    fn signs_with_ed25519(&self, sender: &VerifiedIdentity) -> bool {
        !self.envelope.kind.is_custody_signature() && sender.envelope_key().is_some()
    }

    /// What the signature signs.
    fn signed_message(&self) -> Result<Vec<u8>, EnvelopeError> {
        match (self.envelope.kind, self.envelope.prev) {
            (Kind::CommitmentSignature, Some(commitment)) => {
                Ok(crate::order::custody_message(&commitment))
            }
            (Kind::BatchSignature, _) => {
                let root = self
                    .batch_root()
                    .ok_or(EnvelopeError::BatchSignatureShape)?;
                Ok(crate::batch::batch_message(&root))
            }
            _ => Ok(signing_message(
                ENVELOPE_CONTEXT,
                &dagcbor::encode(&self.envelope)?,
            )),
        }
    }

    /// Decodes an envelope strictly and checks its structure (no signature check yet).
    pub fn decode(bytes: &[u8]) -> Result<Self, EnvelopeError> {
        let limits = Limits {
            max_size: MAX_ENVELOPE_SIZE,
            ..Limits::default()
        };
        Self::checked(dagcbor::decode(bytes, limits)?)
    }

    /// Decodes an envelope as [`SignedEnvelope::decode`] does, but without encoding it again
    /// to see that the bytes are its one encoding (the costliest part of a decode). Only for
    /// bytes a strict decode saw before (a block this node kept), or whose decode only routes
    /// them to a step that decodes them strictly.
    pub fn decode_seen(bytes: &[u8]) -> Result<Self, EnvelopeError> {
        let limits = Limits {
            max_size: MAX_ENVELOPE_SIZE,
            ..Limits::default()
        };
        Self::checked(dagcbor::decode_lenient(bytes, limits)?)
    }

    fn checked(signed: Self) -> Result<Self, EnvelopeError> {
        signed.check_structure()?;
        let lengths: &[usize] = match signed.envelope.kind {
            Kind::CommitmentSignature | Kind::BatchSignature => &[bls::SIGNATURE_LEN],
            _ => &[bls::SIGNATURE_LEN, ed25519::SIGNATURE_LEN],
        };
        if !lengths.contains(&signed.signature.len()) {
            return Err(EnvelopeError::MalformedSignature);
        }
        Ok(signed)
    }

    /// The envelope as a block.
    pub fn to_block(&self) -> Result<Block, EnvelopeError> {
        Ok(Block::encode(self)?)
    }

    /// Structural checks that need no cryptography, cheap enough for the network loop.
    pub fn check_structure(&self) -> Result<(), EnvelopeError> {
        let envelope = &self.envelope;
        if envelope.version != ENVELOPE_VERSION {
            return Err(EnvelopeError::Version(envelope.version));
        }
        if envelope.order.is_empty() || envelope.order.len() > MAX_ORDER_REF_LEN {
            return Err(EnvelopeError::OrderRef);
        }
        if let Some(public) = &envelope.public {
            dagcbor::validate(public, Limits::default()).map_err(EnvelopeError::PublicPayload)?;
        }
        if envelope.ciphertext.is_some() == envelope.recipients.is_empty() {
            return Err(EnvelopeError::SealMismatch);
        }
        if envelope.kind == Kind::CommitmentSignature
            && (envelope.prev.is_none()
                || envelope.public.is_some()
                || envelope.ciphertext.is_some()
                || envelope.timestamp != 0)
        {
            return Err(EnvelopeError::CustodySignatureShape);
        }
        if envelope.kind == Kind::BatchSignature
            && (envelope.prev.is_none()
                || self.batch_root().is_none()
                || envelope.ciphertext.is_some()
                || envelope.timestamp != 0)
        {
            return Err(EnvelopeError::BatchSignatureShape);
        }
        if envelope.recipients.len() > MAX_RECIPIENTS {
            return Err(EnvelopeError::TooManyRecipients(envelope.recipients.len()));
        }
        let mut seen = std::collections::BTreeSet::new();
        for recipient in &envelope.recipients {
            if !seen.insert(recipient.identity) {
                return Err(EnvelopeError::DuplicateRecipient(
                    recipient.identity.to_string(),
                ));
            }
            if recipient.kem_ciphertext.len() != seal::KEM_CIPHERTEXT_LEN
                || ![seal::SALTED_WRAPPED_KEY_LEN, seal::WRAPPED_KEY_LEN]
                    .contains(&recipient.wrapped_key.len())
            {
                return Err(EnvelopeError::MalformedRecipient(
                    recipient.identity.to_string(),
                ));
            }
        }
        Ok(())
    }

    /// Checks structure and the signature against the sender's verified identity, with the
    /// keys it had at the envelope's time (an identity's keys may have been rotated since).
    pub fn verify(self, sender: &VerifiedIdentity) -> Result<VerifiedEnvelope, EnvelopeError> {
        self.check_structure()?;
        if self.envelope.sender != sender.cid() {
            return Err(EnvelopeError::WrongSender {
                claimed: self.envelope.sender.to_string(),
                given: sender.cid().to_string(),
            });
        }
        let sender = sender.as_of(self.envelope.timestamp);
        let message = self.signed_message()?;
        match sender.envelope_key() {
            Some(key) if self.signs_with_ed25519(sender) => {
                key.verify(&message, &self.signature).map_err(|e| match e {
                    ed25519::Ed25519Error::MalformedSignature => EnvelopeError::MalformedSignature,
                    _ => EnvelopeError::BadSignature,
                })?;
            }
            _ => {
                let signature = bls::Signature::from_bytes(&self.signature)
                    .map_err(|_| EnvelopeError::MalformedSignature)?;
                sender
                    .bls_key()
                    .public_key()
                    .verify(&message, &signature)
                    .map_err(|_| EnvelopeError::BadSignature)?;
            }
        }
        Ok(VerifiedEnvelope { signed: self })
    }
}

/// An envelope whose structure and signature have been checked.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct VerifiedEnvelope {
    signed: SignedEnvelope,
}

impl VerifiedEnvelope {
    /// Builds, seals and signs an envelope from `sender`: verified by construction, since it
    /// was just signed with the sender's own key.
    pub fn create(sender: &LocalIdentity, draft: Draft<'_>) -> Result<Self, EnvelopeError> {
        SignedEnvelope::create(sender, draft).map(|signed| Self { signed })
    }

    /// The envelope's content.
    pub fn envelope(&self) -> &Envelope {
        &self.signed.envelope
    }

    /// The signed envelope, for storing or forwarding.
    pub fn signed(&self) -> &SignedEnvelope {
        &self.signed
    }

    /// Decodes the public payload as `T`.
    pub fn public_payload<T: serde::de::DeserializeOwned + serde::Serialize>(
        &self,
    ) -> Result<Option<T>, DecodeError> {
        self.signed
            .envelope
            .public
            .as_ref()
            .map(|bytes| dagcbor::decode(bytes, Limits::default()))
            .transpose()
    }

    /// Opens the sealed payload as `me`.
    pub fn open(&self, me: &LocalIdentity) -> Result<Zeroizing<Vec<u8>>, EnvelopeError> {
        if self.signed.envelope.ciphertext.is_none() {
            return Err(EnvelopeError::NothingSealed);
        }
        let content_key = self.content_key(me)?;
        self.signed.open_with_content_key(&content_key)
    }

    /// The content key of the sealed payload, as `me` unwraps it: handing it out lets anyone
    /// open this one envelope ([`SignedEnvelope::open_with_content_key`]), for example as
    /// evidence that a sender sealed something false.
    pub fn content_key(&self, me: &LocalIdentity) -> Result<Secret<32>, EnvelopeError> {
        let envelope = &self.signed.envelope;
        let recipient = envelope
            .recipients
            .iter()
            .find(|r| r.identity == me.cid())
            .ok_or_else(|| EnvelopeError::NotARecipient(me.cid().to_string()))?;
        let encapsulation = Encapsulation {
            kem_ciphertext: recipient.kem_ciphertext.clone(),
            wrapped_key: recipient.wrapped_key.clone(),
        };
        let header = envelope.header(envelope.recipients.iter().map(|r| &r.identity).collect())?;
        // Sealed to the current keys, or to keys a rotation retired before the sender heard.
        let opened = seal::content_key(&header, &encapsulation, me.keys().kem());
        match opened {
            Err(err) => me
                .retired()
                .iter()
                .find_map(|keys| seal::content_key(&header, &encapsulation, keys.kem()).ok())
                .ok_or_else(|| err.into()),
            key => Ok(key?),
        }
    }
}

impl SignedEnvelope {
    /// Opens the sealed payload with its content key ([`VerifiedEnvelope::content_key`]).
    pub fn open_with_content_key(
        &self,
        content_key: &Secret<32>,
    ) -> Result<Zeroizing<Vec<u8>>, EnvelopeError> {
        let envelope = &self.envelope;
        let ciphertext = envelope
            .ciphertext
            .as_ref()
            .ok_or(EnvelopeError::NothingSealed)?;
        let header = envelope.header(envelope.recipients.iter().map(|r| &r.identity).collect())?;
        Ok(seal::open_with_content_key(
            &header,
            ciphertext,
            content_key,
        )?)
    }
}

#[cfg(test)]
#[path = "envelope_tests.rs"]
mod tests;

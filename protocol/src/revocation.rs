//! Revocations: a signed statement that an identity is no longer to be trusted from a moment
//! on.
//!
//! A revocation is signed either by the identity itself (its BLS key, which every document
//! has) or by the operator of the node its document names (the libp2p key whose peer id the
//! document carries), so an operator can revoke an identity whose seed is lost or stolen.
//! Peers that hold a verified revocation refuse new orders, releases and approvals from or to
//! the identity; audits of older orders still verify and mark what was signed after it.
//!
//! This module only makes and checks the document; who keeps it and acts on it is the node's
//! business.

use cid::Cid;
use libp2p::PeerId;
use libp2p::identity::{Keypair, PublicKey};
use serde::{Deserialize, Serialize};

use crate::block::Block;
use crate::dagcbor::{self, DecodeError, EncodeError, Limits};
use crate::identity::{IdentityKeys, VerifiedIdentity, signing_message};

/// Layout version of revocations.
pub const REVOCATION_VERSION: u64 = 1;
/// What a revocation's signature signs: this prefix, then the canonical claims.
pub const REVOCATION_CONTEXT: &[u8] = b"dta/revocation/v1\0";
/// Longest reason, in bytes.
pub const MAX_REASON_LEN: usize = 256;
/// A revocation is small; anything larger is not one.
pub const MAX_REVOCATION_SIZE: usize = 2 * 1024;

/// What a revocation's signature covers.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct RevocationClaims {
    /// Layout version, [`REVOCATION_VERSION`].
    pub version: u64,
    /// The identity revoked.
    pub revoked: Cid,
    /// From when, milliseconds since the Unix epoch (the revoker's clock).
    pub at: u64,
    /// Why, in a few words (may be empty).
    pub reason: String,
    /// The libp2p public key (protobuf encoding) of the node operator that signs, whose peer
    /// id the revoked identity's document names; absent when the identity signs itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator_key: Option<serde_bytes::ByteBuf>,
}

/// A signed revocation, as stored and exchanged.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Revocation {
    /// The signed claims.
    pub claims: RevocationClaims,
    /// The identity's BLS signature, or the operator's libp2p signature, over
    /// [`REVOCATION_CONTEXT`] and the canonical claims.
    #[serde(with = "serde_bytes")]
    pub signature: Vec<u8>,
}

/// Who signed a revocation.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Revoker {
    /// The identity itself.
    Identity,
    /// The operator of the node its document names.
    Operator,
}

impl Revoker {
    /// The name the API and logs use.
    pub fn name(self) -> &'static str {
        match self {
            Self::Identity => "identity",
            Self::Operator => "operator",
        }
    }
}

/// Why a revocation was refused (or could not be made).
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum RevocationError {
    /// Not canonical DAG-CBOR of the right shape.
    #[error("revocation does not decode: {0}")]
    Decode(#[from] DecodeError),
    /// Could not be encoded.
    #[error("revocation does not encode: {0}")]
    Encode(#[from] EncodeError),
    /// Unknown layout version.
    #[error("unsupported revocation version {0}")]
    Version(u64),
    /// The reason is too long or has control characters.
    #[error("invalid reason: at most {MAX_REASON_LEN} bytes without control characters")]
    Reason,
    /// The revocation is for another identity than the one it was checked against.
    #[error("the revocation is for {revoked}, not {given}")]
    WrongIdentity {
        /// The identity it names.
        revoked: String,
        /// The identity it was checked against.
        given: String,
    },
    /// The operator key does not decode or is not the key of the document's peer id.
    #[error("the signing key is not the operator key of the identity's node")]
    NotTheOperator,
    /// The signature does not verify.
    #[error("the revocation's signature does not verify")]
    Signature,
    /// The operator's key could not sign.
    #[error("the operator key cannot sign")]
    Signing,
}

/// A revocation whose signature was checked against the identity it revokes.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct VerifiedRevocation {
    cid: Cid,
    revocation: Revocation,
    bytes: Vec<u8>,
}

impl VerifiedRevocation {
    /// The revocation's own CID.
    pub fn cid(&self) -> Cid {
        self.cid
    }
    /// The identity revoked.
    pub fn revoked(&self) -> Cid {
        self.revocation.claims.revoked
    }
    /// From when, milliseconds since the epoch.
    pub fn at(&self) -> u64 {
        self.revocation.claims.at
    }
    /// Why.
    pub fn reason(&self) -> &str {
        &self.revocation.claims.reason
    }
    /// Who signed it.
    pub fn revoker(&self) -> Revoker {
        match self.revocation.claims.operator_key {
            Some(_) => Revoker::Operator,
            None => Revoker::Identity,
        }
    }
    /// The canonical bytes, to store and send.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }
}

fn check_reason(reason: &str) -> Result<(), RevocationError> {
    if reason.len() > MAX_REASON_LEN || reason.chars().any(char::is_control) {
        return Err(RevocationError::Reason);
    }
    Ok(())
}

impl Revocation {
    /// Makes a revocation of `identity` signed by its own keys.
    pub fn by_identity(
        keys: &IdentityKeys,
        identity: Cid,
        at: u64,
        reason: &str,
    ) -> Result<VerifiedRevocation, RevocationError> {
        let (claims, message) = Self::claims(identity, at, reason, None)?;
        let signature = keys.bls().sign(&message).to_bytes().to_vec();
        Self { claims, signature }.sealed()
    }

    /// Makes a revocation of `identity` signed by the operator key of the node its document
    /// names (checked by the peers that receive it).
    pub fn by_operator(
        operator: &Keypair,
        identity: Cid,
        at: u64,
        reason: &str,
    ) -> Result<VerifiedRevocation, RevocationError> {
        let key = operator.public().encode_protobuf().into();
        let (claims, message) = Self::claims(identity, at, reason, Some(key))?;
        let signature = operator
            .sign(&message)
            .map_err(|_| RevocationError::Signing)?;
        Self { claims, signature }.sealed()
    }

    /// The claims of a new revocation and the message its signer signs.
    fn claims(
        revoked: Cid,
        at: u64,
        reason: &str,
        operator_key: Option<serde_bytes::ByteBuf>,
    ) -> Result<(RevocationClaims, Vec<u8>), RevocationError> {
        check_reason(reason)?;
        let claims = RevocationClaims {
            version: REVOCATION_VERSION,
            revoked,
            at,
            reason: reason.to_owned(),
            operator_key,
        };
        let message = signing_message(REVOCATION_CONTEXT, &dagcbor::encode(&claims)?);
        Ok((claims, message))
    }

    fn sealed(self) -> Result<VerifiedRevocation, RevocationError> {
        let block = Block::encode(&self)?;
        Ok(VerifiedRevocation {
            cid: block.cid(),
            bytes: block.bytes().to_vec(),
            revocation: self,
        })
    }

    /// Decodes a revocation strictly, without checking its signature: what it names tells
    /// which identity to check it against.
    pub fn decode(bytes: &[u8]) -> Result<Self, RevocationError> {
        let limits = Limits {
            max_size: MAX_REVOCATION_SIZE,
            ..Limits::default()
        };
        Ok(dagcbor::decode(bytes, limits)?)
    }

    /// Checks the claims and the signature against the identity revoked: the BLS key of any
    /// of its key states (revoking is never unsafe), or the operator key whose peer id its
    /// document names.
    pub fn verify(
        self,
        identity: &VerifiedIdentity,
    ) -> Result<VerifiedRevocation, RevocationError> {
        let claims = &self.claims;
        if claims.version != REVOCATION_VERSION {
            return Err(RevocationError::Version(claims.version));
        }
        check_reason(&claims.reason)?;
        if claims.revoked != identity.cid() {
            return Err(RevocationError::WrongIdentity {
                revoked: claims.revoked.to_string(),
                given: identity.cid().to_string(),
            });
        }
        let message = signing_message(REVOCATION_CONTEXT, &dagcbor::encode(claims)?);
        match &claims.operator_key {
            None => {
                let signature = dta_crypto::bls::Signature::from_bytes(&self.signature)
                    .map_err(|_| RevocationError::Signature)?;
                identity
                    .key_states()
                    .find(|state| {
                        state
                            .bls_key()
                            .public_key()
                            .verify(&message, &signature)
                            .is_ok()
                    })
                    .ok_or(RevocationError::Signature)?;
            }
            Some(key) => {
                let key = PublicKey::try_decode_protobuf(key)
                    .map_err(|_| RevocationError::NotTheOperator)?;
                if PeerId::from_bytes(identity.peer_id()).ok() != Some(key.to_peer_id()) {
                    return Err(RevocationError::NotTheOperator);
                }
                if !key.verify(&message, &self.signature) {
                    return Err(RevocationError::Signature);
                }
            }
        }
        self.sealed()
    }
}

#[cfg(test)]
#[path = "revocation_tests.rs"]
mod tests;

//! A sealed envelope shown as evidence: its recipient hands out the envelope's block and its
//! content key ([`crate::envelope::VerifiedEnvelope::content_key`]) so that anyone can check
//! what its signer sealed. [`open`] makes the checks every accusation needs before the sealed
//! payload is read: the accused signed it, it is of the kind and place accused, and it was
//! sealed to the accuser alone.
//!
//! What it does not do: judge the payload (each complaint's own `judge` does).

use cid::Cid;
use dta_crypto::Secret;
use zeroize::Zeroizing;

use crate::envelope::{Kind, SignedEnvelope, VerifiedEnvelope};
use crate::identity::VerifiedIdentity;

/// Why a revealed envelope is no evidence.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EvidenceError {
    /// The block is not an envelope.
    #[error("it does not decode: {0}")]
    Decode(String),
    /// The accused did not sign it.
    #[error("it is not signed by the one accused")]
    NotSigned,
    /// Another kind, place in the log or recipient than accused.
    #[error("it is not the accused's {0:?} to the accuser alone")]
    NotAsAccused(Kind),
    /// The content key has the wrong length.
    #[error("the content key is not 32 bytes")]
    KeyLength,
    /// The content key does not open the sealed payload.
    #[error("the content key does not open it")]
    DoesNotOpen,
}

/// Opens `block` with `content_key` once it is shown to be `signer`'s envelope of `kind`
/// after `prev`, sealed to `recipient` alone: the envelope and its plain sealed payload.
pub fn open(
    block: &[u8],
    content_key: &[u8],
    signer: &VerifiedIdentity,
    (kind, prev): (Kind, Cid),
    recipient: &Cid,
) -> Result<(VerifiedEnvelope, Zeroizing<Vec<u8>>), EvidenceError> {
    let envelope = SignedEnvelope::decode(block)
        .map_err(|e| EvidenceError::Decode(e.to_string()))?
        .verify(signer)
        .map_err(|_| EvidenceError::NotSigned)?;
    let header = envelope.envelope();
    if header.kind != kind
        || header.prev != Some(prev)
        || header.recipients.len() != 1
        || header.recipients[0].identity != *recipient
    {
        return Err(EvidenceError::NotAsAccused(kind));
    }
    let key: [u8; 32] = content_key
        .try_into()
        .map_err(|_| EvidenceError::KeyLength)?;
    let plain = envelope
        .signed()
        .open_with_content_key(&Secret::new(key))
        .map_err(|_| EvidenceError::DoesNotOpen)?;
    Ok((envelope, plain))
}

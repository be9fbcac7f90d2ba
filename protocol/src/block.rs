//! Content addressing: CIDs and blocks.
//!
//! dta creates CIDv1 with sha2-256, codec dag-cbor for documents and raw for opaque bytes. It
//! parses CIDv0 (`Qm…`, implicitly dag-pb) too, because IPFS peers hand those out.

use cid::Cid;
use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

use crate::dagcbor::{self, DecodeError, EncodeError, Limits};

/// Multicodec of DAG-CBOR.
pub const DAG_CBOR: u64 = 0x71;
/// Multicodec of raw bytes.
pub const RAW: u64 = 0x55;
/// Multicodec of DAG-PB (the codec of every CIDv0).
pub const DAG_PB: u64 = 0x70;
/// Multihash code of sha2-256.
pub const SHA2_256: u64 = 0x12;

/// Why a string or byte sequence is not a usable CID.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum CidError {
    /// Not a CID at all.
    #[error("not a CID: {0}")]
    Malformed(String),
    /// A CID whose hash function dta cannot check.
    #[error("unsupported hash function 0x{0:x}: only sha2-256 is supported")]
    UnsupportedHash(u64),
}

/// Why a block's bytes do not match its CID.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum BlockError {
    /// The CID's hash function is not supported.
    #[error(transparent)]
    Cid(#[from] CidError),
    /// The bytes hash to another digest.
    #[error("block bytes do not match CID {0}")]
    HashMismatch(String),
    /// The bytes are not canonical DAG-CBOR though the CID says they are.
    #[error("block {cid} is not canonical DAG-CBOR: {source}")]
    NotCanonical {
        /// The block.
        cid: String,
        /// Why.
        source: DecodeError,
    },
}

/// The CIDv1 (sha2-256) of `bytes` under `codec`.
pub fn cid_of(codec: u64, bytes: &[u8]) -> Cid {
    let digest = Sha256::digest(bytes);
    match cid::multihash::Multihash::<64>::wrap(SHA2_256, &digest) {
        Ok(hash) => Cid::new_v1(codec, hash),
        Err(_) => unreachable!("a 32-byte digest fits a 64-byte multihash"),
    }
}

/// Parses a CID string (CIDv0 base58btc or CIDv1 multibase), accepting only sha2-256.
pub fn parse_cid(text: &str) -> Result<Cid, CidError> {
    let cid = Cid::try_from(text).map_err(|e| CidError::Malformed(e.to_string()))?;
    check_hash(&cid)?;
    Ok(cid)
}

fn check_hash(cid: &Cid) -> Result<(), CidError> {
    match cid.hash().code() {
        SHA2_256 if cid.hash().size() == 32 => Ok(()),
        code => Err(CidError::UnsupportedHash(code)),
    }
}

/// A content-addressed block: bytes and the CID that names them.
#[derive(Clone, PartialEq, Eq)]
pub struct Block {
    cid: Cid,
    bytes: Vec<u8>,
}

impl Block {
    /// Encodes a document as a DAG-CBOR block.
    pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Self, EncodeError> {
        let bytes = dagcbor::encode(value)?;
        Ok(Self {
            cid: cid_of(DAG_CBOR, &bytes),
            bytes,
        })
    }

    /// Opaque bytes as a raw block.
    pub fn raw(bytes: Vec<u8>) -> Self {
        Self {
            cid: cid_of(RAW, &bytes),
            bytes,
        }
    }

    /// Checks received bytes against the CID they were asked for: the digest must match, and
    /// a DAG-CBOR block must be canonical.
    pub fn verified(cid: Cid, bytes: Vec<u8>, limits: Limits) -> Result<Self, BlockError> {
        check_hash(&cid)?;
        if Sha256::digest(&bytes).as_slice() != cid.hash().digest() {
            return Err(BlockError::HashMismatch(cid.to_string()));
        }
        if cid.codec() == DAG_CBOR {
            dagcbor::validate(&bytes, limits).map_err(|source| BlockError::NotCanonical {
                cid: cid.to_string(),
                source,
            })?;
        }
        Ok(Self { cid, bytes })
    }

    /// Decodes a DAG-CBOR block into a document type.
    pub fn decode<T: DeserializeOwned + serde::Serialize>(
        &self,
        limits: Limits,
    ) -> Result<T, DecodeError> {
        dagcbor::decode(&self.bytes, limits)
    }

    /// The block's CID.
    pub fn cid(&self) -> Cid {
        self.cid
    }

    /// The block's bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The bytes, consuming the block.
    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }
}

impl std::fmt::Debug for Block {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Block({}, {} bytes)", self.cid, self.bytes.len())
    }
}

#[cfg(test)]
#[path = "block_tests.rs"]
mod tests;

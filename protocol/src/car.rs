//! CAR v1 archives (content-addressable archives, as `ipfs dag export/import` write and read
//! them): a varint-prefixed DAG-CBOR header `{roots, version: 1}`, then each block as a
//! varint-prefixed section of its binary CID followed by its bytes.
//!
//! Reading checks everything before returning anything: the header, every CID (sha2-256 only),
//! and every block's bytes against its CID, within size limits. Writing takes blocks as given;
//! their CIDs are the caller's promise.

use cid::Cid;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::block::SHA2_256;
use crate::dagcbor::{self, Limits};

/// Largest section (CID plus block) accepted.
pub const MAX_SECTION: usize = 2 * 1024 * 1024 + 128;
/// Largest header accepted.
pub const MAX_HEADER: usize = 64 * 1024;
/// Most blocks one archive may hold.
pub const MAX_BLOCKS: usize = 100_000;

/// Why bytes are not an acceptable CAR v1 archive.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum CarError {
    /// A length prefix is malformed, too large, or runs past the end.
    #[error("truncated or malformed section at byte {0}")]
    Section(usize),
    /// The header is not `{roots, version: 1}` in DAG-CBOR.
    #[error("bad header: {0}")]
    Header(String),
    /// A section's CID does not parse or uses a hash other than sha2-256.
    #[error("bad CID at byte {0}: {1}")]
    Cid(usize, String),
    /// A block's bytes do not hash to its CID.
    #[error("block {0} does not match its CID")]
    Mismatch(String),
    /// More blocks than [`MAX_BLOCKS`].
    #[error("more than {MAX_BLOCKS} blocks")]
    TooManyBlocks,
}

/// The header of a CAR v1 archive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Header {
    roots: Vec<Cid>,
    version: u64,
}

/// A read archive: its roots and its blocks, in file order, each checked against its CID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Car {
    /// The roots named in the header.
    pub roots: Vec<Cid>,
    /// The blocks.
    pub blocks: Vec<(Cid, Vec<u8>)>,
}

fn push_varint(out: &mut Vec<u8>, value: usize) {
    let mut buffer = unsigned_varint::encode::usize_buffer();
    out.extend_from_slice(unsigned_varint::encode::usize(value, &mut buffer));
}

/// Writes an archive of `blocks` under `roots`.
pub fn write(roots: &[Cid], blocks: &[(Cid, Vec<u8>)]) -> Result<Vec<u8>, CarError> {
    let header = dagcbor::encode(&Header {
        roots: roots.to_vec(),
        version: 1,
    })
    .map_err(|e| CarError::Header(e.to_string()))?;
    let mut out =
        Vec::with_capacity(header.len() + blocks.iter().map(|(_, b)| b.len() + 48).sum::<usize>());
    push_varint(&mut out, header.len());
    out.extend_from_slice(&header);
    for (cid, data) in blocks {
        let cid = cid.to_bytes();
        push_varint(&mut out, cid.len() + data.len());
        out.extend_from_slice(&cid);
        out.extend_from_slice(data);
    }
    Ok(out)
}

/// One varint-prefixed section starting at `offset`: its bytes and where the next begins.
fn section(bytes: &[u8], offset: usize, max: usize) -> Result<(&[u8], usize), CarError> {
    let (length, rest) =
        unsigned_varint::decode::usize(&bytes[offset..]).map_err(|_| CarError::Section(offset))?;
    let start = bytes.len() - rest.len();
    if length == 0 || length > max || rest.len() < length {
        return Err(CarError::Section(offset));
    }
    Ok((&rest[..length], start + length))
}

/// Reads and checks a whole archive.
pub fn read(bytes: &[u8]) -> Result<Car, CarError> {
    let (header, mut offset) = section(bytes, 0, MAX_HEADER)?;
    let header: Header =
        dagcbor::decode(header, Limits::default()).map_err(|e| CarError::Header(e.to_string()))?;
    if header.version != 1 {
        return Err(CarError::Header(format!("version {}", header.version)));
    }
    let mut blocks = Vec::new();
    while offset < bytes.len() {
        if blocks.len() == MAX_BLOCKS {
            return Err(CarError::TooManyBlocks);
        }
        let at = offset;
        let (body, next) = section(bytes, offset, MAX_SECTION)?;
        offset = next;
        let mut reader = body;
        let cid = Cid::read_bytes(&mut reader).map_err(|e| CarError::Cid(at, e.to_string()))?;
        if cid.hash().code() != SHA2_256 || cid.hash().size() != 32 {
            return Err(CarError::Cid(
                at,
                format!("unsupported multihash 0x{:x}", cid.hash().code()),
            ));
        }
        if Sha256::digest(reader).as_slice() != cid.hash().digest() {
            return Err(CarError::Mismatch(cid.to_string()));
        }
        blocks.push((cid, reader.to_vec()));
    }
    Ok(Car {
        roots: header.roots,
        blocks,
    })
}

#[cfg(test)]
#[path = "car_tests.rs"]
mod tests;

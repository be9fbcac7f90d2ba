//! Bitswap 1.2.0 messages (`/ipfs/bitswap/1.2.0`), as IPFS peers (kubo, Helia) exchange
//! them: the protobuf wire format, its unsigned-varint length prefix with size caps, CID
//! prefixes, and the hash check a received block passes before anyone stores it.
//!
//! This module does no I/O and keeps no state: it turns bytes into checked messages and
//! back. Wantlists, sessions and limits per peer belong to whoever drives the streams.
//!
//! Only sha2-256 multihashes are accepted (what dta and IPFS peers use by default); blocks of
//! any codec (raw, dag-cbor, dag-pb...) and CIDv0 as well as CIDv1 are carried as opaque bytes.

use cid::Cid;
use sha2::{Digest, Sha256};

use crate::block::{DAG_PB, SHA2_256};

/// The protocol name.
pub const PROTOCOL: &str = "/ipfs/bitswap/1.2.0";
/// Largest message accepted or sent (kubo's limit).
pub const MAX_MESSAGE_SIZE: usize = 4 * 1024 * 1024;
/// Largest block accepted or served (kubo's limit for blocks it sends).
pub const MAX_BLOCK_SIZE: usize = 2 * 1024 * 1024;
/// Most wantlist entries one message may carry.
pub const MAX_WANTLIST_ENTRIES: usize = 1024;

/// The protobuf schema of Bitswap 1.2.0 (`message.proto`), field numbers as in the
/// specification.
pub mod wire {
    /// A whole message.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Message {
        /// What the sender wants.
        #[prost(message, optional, tag = "1")]
        pub wantlist: Option<Wantlist>,
        /// Blocks, Bitswap 1.0.0 style (CIDv0 implied); read, never sent.
        #[prost(bytes = "vec", repeated, tag = "2")]
        pub blocks: Vec<Vec<u8>>,
        /// Blocks with their CID prefixes (1.1.0 and later).
        #[prost(message, repeated, tag = "3")]
        pub payload: Vec<Block>,
        /// HAVE and DONT_HAVE answers (1.2.0).
        #[prost(message, repeated, tag = "4")]
        pub block_presences: Vec<BlockPresence>,
        /// Bytes the sender still has queued for the receiver.
        #[prost(int32, tag = "5")]
        pub pending_bytes: i32,
    }

    /// A wantlist, whole or as changes.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Wantlist {
        /// The entries.
        #[prost(message, repeated, tag = "1")]
        pub entries: Vec<Entry>,
        /// Whether this replaces the previous wantlist.
        #[prost(bool, tag = "2")]
        pub full: bool,
    }

    /// One wantlist entry.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Entry {
        /// The CID, in binary form.
        #[prost(bytes = "vec", tag = "1")]
        pub block: Vec<u8>,
        /// Higher first.
        #[prost(int32, tag = "2")]
        pub priority: i32,
        /// Removes the CID from the wantlist.
        #[prost(bool, tag = "3")]
        pub cancel: bool,
        /// 0: the block; 1: whether the peer has it.
        #[prost(int32, tag = "4")]
        pub want_type: i32,
        /// Answer DONT_HAVE if the block is not there.
        #[prost(bool, tag = "5")]
        pub send_dont_have: bool,
    }

    /// A block and the prefix of its CID.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Block {
        /// CID version, codec, multihash code and length, as unsigned varints.
        #[prost(bytes = "vec", tag = "1")]
        pub prefix: Vec<u8>,
        /// The block's bytes.
        #[prost(bytes = "vec", tag = "2")]
        pub data: Vec<u8>,
    }

    /// Whether the sender has a block.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct BlockPresence {
        /// The CID, in binary form.
        #[prost(bytes = "vec", tag = "1")]
        pub cid: Vec<u8>,
        /// 0: HAVE; 1: DONT_HAVE.
        #[prost(int32, tag = "2")]
        pub r#type: i32,
    }
}

/// Why bytes are not an acceptable Bitswap message or block.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum BitswapError {
    /// The length prefix is missing, malformed or says more than the bytes hold.
    #[error("bad length prefix")]
    Frame,
    /// The message is larger than [`MAX_MESSAGE_SIZE`].
    #[error("message of {0} bytes; at most {MAX_MESSAGE_SIZE} are accepted")]
    TooLarge(usize),
    /// Not a protobuf message of the Bitswap schema.
    #[error("message does not decode: {0}")]
    Decode(String),
    /// More wantlist entries than [`MAX_WANTLIST_ENTRIES`].
    #[error("{0} wantlist entries; at most {MAX_WANTLIST_ENTRIES} are accepted")]
    TooManyWants(usize),
    /// A CID or CID prefix that does not parse.
    #[error("bad CID: {0}")]
    Cid(String),
    /// A hash function other than sha2-256.
    #[error("unsupported multihash 0x{0:x}: only sha2-256 is accepted")]
    UnsupportedHash(u64),
    /// A block larger than [`MAX_BLOCK_SIZE`].
    #[error("block of {0} bytes; at most {MAX_BLOCK_SIZE} are accepted")]
    BlockTooLarge(usize),
    /// An unknown want or presence type.
    #[error("unknown {0} type {1}")]
    UnknownType(&'static str, i32),
}

/// What a wantlist entry asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WantType {
    /// Send the block.
    Block,
    /// Say whether you have it.
    Have,
}

/// One entry of a peer's wantlist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Want {
    /// The block wanted.
    pub cid: Cid,
    /// Higher first.
    pub priority: i32,
    /// Removes the CID instead.
    pub cancel: bool,
    /// Block or presence.
    pub want_type: WantType,
    /// Whether a DONT_HAVE answer is asked for.
    pub send_dont_have: bool,
}

/// A HAVE or DONT_HAVE answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presence {
    /// The peer has the block.
    Have,
    /// The peer does not have it.
    DontHave,
}

/// A message, checked: every CID parsed, every block's CID computed from its bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Message {
    /// Wantlist entries.
    pub wants: Vec<Want>,
    /// Whether the wants replace the previous wantlist.
    pub full_wantlist: bool,
    /// Blocks, each under the CID its bytes hash to. Whether anyone asked for them is the
    /// receiver's question.
    pub blocks: Vec<(Cid, Vec<u8>)>,
    /// Presence answers.
    pub presences: Vec<(Cid, Presence)>,
}

impl Message {
    /// Whether there is nothing to send.
    pub fn is_empty(&self) -> bool {
        self.wants.is_empty()
            && !self.full_wantlist
            && self.blocks.is_empty()
            && self.presences.is_empty()
    }

    /// The protobuf encoding (without the length prefix).
    pub fn to_wire(&self) -> wire::Message {
        let wantlist = (!self.wants.is_empty() || self.full_wantlist).then(|| wire::Wantlist {
            entries: self
                .wants
                .iter()
                .map(|w| wire::Entry {
                    block: w.cid.to_bytes(),
                    priority: w.priority,
                    cancel: w.cancel,
                    want_type: match w.want_type {
                        WantType::Block => 0,
                        WantType::Have => 1,
                    },
                    send_dont_have: w.send_dont_have,
                })
                .collect(),
            full: self.full_wantlist,
        });
        wire::Message {
            wantlist,
            blocks: Vec::new(),
            payload: self
                .blocks
                .iter()
                .map(|(cid, data)| wire::Block {
                    prefix: prefix_of(cid),
                    data: data.clone(),
                })
                .collect(),
            block_presences: self
                .presences
                .iter()
                .map(|(cid, presence)| wire::BlockPresence {
                    cid: cid.to_bytes(),
                    r#type: match presence {
                        Presence::Have => 0,
                        Presence::DontHave => 1,
                    },
                })
                .collect(),
            pending_bytes: 0,
        }
    }

    /// Checks a decoded protobuf message: CIDs parse, blocks fit and are hashed into their
    /// CIDs, types are known.
    pub fn from_wire(message: wire::Message) -> Result<Self, BitswapError> {
        let mut checked = Self::default();
        if let Some(wantlist) = message.wantlist {
            if wantlist.entries.len() > MAX_WANTLIST_ENTRIES {
                return Err(BitswapError::TooManyWants(wantlist.entries.len()));
            }
            checked.full_wantlist = wantlist.full;
            for entry in wantlist.entries {
                checked.wants.push(Want {
                    cid: parse_binary_cid(&entry.block)?,
                    priority: entry.priority,
                    cancel: entry.cancel,
                    want_type: match entry.want_type {
                        0 => WantType::Block,
                        1 => WantType::Have,
                        other => return Err(BitswapError::UnknownType("want", other)),
                    },
                    send_dont_have: entry.send_dont_have,
                });
            }
        }
        // Bitswap 1.0.0 blocks carry no prefix: they are CIDv0 (dag-pb, sha2-256).
        for data in message.blocks {
            let cid = block_cid(&Prefix::V0, &data)?;
            checked.blocks.push((cid, data));
        }
        for block in message.payload {
            let prefix = Prefix::decode(&block.prefix)?;
            let cid = block_cid(&prefix, &block.data)?;
            checked.blocks.push((cid, block.data));
        }
        for presence in message.block_presences {
            let kind = match presence.r#type {
                0 => Presence::Have,
                1 => Presence::DontHave,
                other => return Err(BitswapError::UnknownType("presence", other)),
            };
            checked
                .presences
                .push((parse_binary_cid(&presence.cid)?, kind));
        }
        Ok(checked)
    }

    /// The message as sent on a stream: an unsigned-varint length, then the protobuf.
    pub fn encode_frame(&self) -> Vec<u8> {
        use prost::Message as _;
        let body = self.to_wire().encode_to_vec();
        let mut length = unsigned_varint::encode::usize_buffer();
        let length = unsigned_varint::encode::usize(body.len(), &mut length);
        let mut frame = Vec::with_capacity(length.len() + body.len());
        frame.extend_from_slice(length);
        frame.extend_from_slice(&body);
        frame
    }

    /// Reads one length-prefixed message from the front of `bytes`; returns it and how many
    /// bytes it took. `Ok(None)` means more bytes are needed.
    pub fn decode_frame(bytes: &[u8]) -> Result<Option<(Self, usize)>, BitswapError> {
        let (length, rest) = match unsigned_varint::decode::usize(bytes) {
            Ok(decoded) => decoded,
            Err(unsigned_varint::decode::Error::Insufficient) => return Ok(None),
            Err(_) => return Err(BitswapError::Frame),
        };
        if length > MAX_MESSAGE_SIZE {
            return Err(BitswapError::TooLarge(length));
        }
        if rest.len() < length {
            return Ok(None);
        }
        let message = Self::decode_body(&rest[..length])?;
        Ok(Some((message, bytes.len() - rest.len() + length)))
    }

    /// Decodes and checks a protobuf body (no length prefix).
    pub fn decode_body(body: &[u8]) -> Result<Self, BitswapError> {
        use prost::Message as _;
        if body.len() > MAX_MESSAGE_SIZE {
            return Err(BitswapError::TooLarge(body.len()));
        }
        let message =
            wire::Message::decode(body).map_err(|e| BitswapError::Decode(e.to_string()))?;
        Self::from_wire(message)
    }
}

/// The parts of a CID a block's bytes do not give: version, codec, multihash code and
/// digest length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prefix {
    /// 0 or 1.
    pub version: u64,
    /// Multicodec of the content.
    pub codec: u64,
    /// Multihash code.
    pub hash: u64,
    /// Digest length.
    pub length: u64,
}

impl Prefix {
    /// The prefix of every CIDv0.
    pub const V0: Self = Self {
        version: 0,
        codec: DAG_PB,
        hash: SHA2_256,
        length: 32,
    };

    /// Parses four unsigned varints.
    pub fn decode(bytes: &[u8]) -> Result<Self, BitswapError> {
        let mut rest = bytes;
        let mut next = || {
            let (value, tail) = unsigned_varint::decode::u64(rest)
                .map_err(|e| BitswapError::Cid(format!("bad prefix: {e}")))?;
            rest = tail;
            Ok::<u64, BitswapError>(value)
        };
        let prefix = Self {
            version: next()?,
            codec: next()?,
            hash: next()?,
            length: next()?,
        };
        if !rest.is_empty() {
            return Err(BitswapError::Cid("trailing bytes after prefix".into()));
        }
        Ok(prefix)
    }

    /// Four unsigned varints.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8);
        for value in [self.version, self.codec, self.hash, self.length] {
            let mut buffer = unsigned_varint::encode::u64_buffer();
            out.extend_from_slice(unsigned_varint::encode::u64(value, &mut buffer));
        }
        out
    }
}

/// The prefix of `cid`.
pub fn prefix_of(cid: &Cid) -> Vec<u8> {
    Prefix {
        version: match cid.version() {
            cid::Version::V0 => 0,
            cid::Version::V1 => 1,
        },
        codec: cid.codec(),
        hash: cid.hash().code(),
        length: u64::from(cid.hash().size()),
    }
    .encode()
}

/// The CID `data` has under `prefix`: its sha2-256 digest with the prefix's version and
/// codec. This is the check every received block passes: the CID comes from the bytes.
pub fn block_cid(prefix: &Prefix, data: &[u8]) -> Result<Cid, BitswapError> {
    if data.len() > MAX_BLOCK_SIZE {
        return Err(BitswapError::BlockTooLarge(data.len()));
    }
    if prefix.hash != SHA2_256 || prefix.length != 32 {
        return Err(BitswapError::UnsupportedHash(prefix.hash));
    }
    let digest = Sha256::digest(data);
    let hash = cid::multihash::Multihash::<64>::wrap(SHA2_256, &digest)
        .map_err(|e| BitswapError::Cid(e.to_string()))?;
    match prefix.version {
        0 if prefix.codec == DAG_PB => {
            Cid::new_v0(hash).map_err(|e| BitswapError::Cid(e.to_string()))
        }
        0 => Err(BitswapError::Cid("a CIDv0 is always dag-pb".into())),
        1 => Ok(Cid::new_v1(prefix.codec, hash)),
        other => Err(BitswapError::Cid(format!("CID version {other}"))),
    }
}

/// Parses a binary CID, accepting only sha2-256.
fn parse_binary_cid(bytes: &[u8]) -> Result<Cid, BitswapError> {
    let cid = Cid::try_from(bytes).map_err(|e| BitswapError::Cid(e.to_string()))?;
    if cid.hash().code() != SHA2_256 || cid.hash().size() != 32 {
        return Err(BitswapError::UnsupportedHash(cid.hash().code()));
    }
    Ok(cid)
}

#[cfg(test)]
#[path = "bitswap_tests.rs"]
mod tests;

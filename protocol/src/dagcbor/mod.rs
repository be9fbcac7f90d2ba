//! Strict DAG-CBOR: a validator that accepts only canonical encodings, and typed encode and
//! decode on top of it.
//!
//! The serde codec is `serde_ipld_dagcbor` (maintained by the IPLD community, encodes the
//! canonical form: sorted map keys, 64-bit floats, tag 42 for links). Its decoder is lenient
//! about some non-canonical input, so every decode here first runs [`validate`], which
//! rejects, with the offset of the first offending byte:
//! - input over the size limit, truncated input and trailing bytes;
//! - indefinite lengths and reserved additional-information values;
//! - integers, lengths and tags not in their shortest form;
//! - map keys that are not text, or not sorted length-first then bytewise, or repeated;
//! - tags other than 42, and tag 42 around anything but a `0x00`-prefixed binary CID;
//! - simple values other than false, true and null, floats not in 64-bit form, NaN,
//!   infinities and negative zero (which `serde_ipld_dagcbor` refuses to decode);
//! - text that is not UTF-8, and nesting deeper than the limit.
//!
//! Encoding runs the same validator on its own output, so nothing non-canonical is ever
//! signed or hashed.
//!
//! Decoding into a type is exact: the value must encode back to the very bytes it came from.
//! serde alone would take a map with a key the type does not have, or a field written out at
//! its default where the encoder leaves it out, and the decoded value would then stand for
//! more than one encoding, so one signed document could travel under several CIDs. Records a
//! node wrote itself under an older layout are read with [`decode_lenient`].

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Size and depth limits for decoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest input accepted, in bytes.
    pub max_size: usize,
    /// Deepest nesting of arrays, maps and tags accepted.
    pub max_depth: usize,
}

/// The block size IPFS implementations exchange over Bitswap (2 MiB).
pub const DEFAULT_MAX_SIZE: usize = 2 * 1024 * 1024;
/// Nesting limit: far deeper than any dta document, shallow enough for any stack and for the
/// codec's own recursion limit (256 steps, up to two a level), so that whatever the validator
/// takes the codec decodes.
pub const DEFAULT_MAX_DEPTH: usize = 64;

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_size: DEFAULT_MAX_SIZE,
            max_depth: DEFAULT_MAX_DEPTH,
        }
    }
}

/// Why bytes are not canonical DAG-CBOR (or not the expected type).
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum DecodeError {
    /// Input larger than the limit.
    #[error("input is {size} bytes; the limit is {max}")]
    TooLarge {
        /// Input size.
        size: usize,
        /// Limit.
        max: usize,
    },
    /// The input ends inside an item.
    #[error("input ends early at byte {offset}")]
    Truncated {
        /// Where more bytes were needed.
        offset: usize,
    },
    /// Bytes after the single top-level item.
    #[error("trailing bytes after the item, from byte {offset}")]
    TrailingBytes {
        /// First trailing byte.
        offset: usize,
    },
    /// An indefinite-length string, array or map.
    #[error("indefinite length at byte {offset}")]
    IndefiniteLength {
        /// Where.
        offset: usize,
    },
    /// Additional information 28 to 30, which CBOR reserves.
    #[error("reserved additional information at byte {offset}")]
    Reserved {
        /// Where.
        offset: usize,
    },
    /// An integer, length or tag not in its shortest form.
    #[error("non-canonical integer or length encoding at byte {offset}")]
    NonMinimal {
        /// Where.
        offset: usize,
    },
    /// A text string that is not UTF-8.
    #[error("invalid UTF-8 in text at byte {offset}")]
    InvalidUtf8 {
        /// Where the string starts.
        offset: usize,
    },
    /// A map key that is not a text string.
    #[error("map key at byte {offset} is not a text string")]
    MapKeyNotText {
        /// Where.
        offset: usize,
    },
    /// Map keys out of canonical order.
    #[error("map keys out of canonical order at byte {offset}")]
    UnsortedMapKeys {
        /// The key that came too late.
        offset: usize,
    },
    /// The same key twice in one map.
    #[error("duplicate map key at byte {offset}")]
    DuplicateMapKey {
        /// The second occurrence.
        offset: usize,
    },
    /// A tag other than 42.
    #[error("tag {tag} at byte {offset} is not allowed (only 42, links)")]
    UnsupportedTag {
        /// The tag.
        tag: u64,
        /// Where.
        offset: usize,
    },
    /// Tag 42 not around a valid binary CID.
    #[error("invalid CID link at byte {offset}")]
    InvalidLink {
        /// Where.
        offset: usize,
    },
    /// A simple value other than false, true and null.
    #[error("simple value {value} at byte {offset} is not allowed")]
    UnsupportedSimple {
        /// The simple value.
        value: u8,
        /// Where.
        offset: usize,
    },
    /// A 16- or 32-bit float.
    #[error("float at byte {offset} is not in 64-bit form")]
    ShortFloat {
        /// Where.
        offset: usize,
    },
    /// NaN or an infinity.
    #[error("NaN or infinity at byte {offset}")]
    NonFiniteFloat {
        /// Where.
        offset: usize,
    },
    /// Negative zero, which the codec refuses to decode (a value it could never have
    /// encoded from a decode), so the validator refuses it first.
    #[error("negative zero at byte {offset}")]
    NegativeZero {
        /// Where.
        offset: usize,
    },
    /// Nesting deeper than the limit.
    #[error("nesting deeper than {max}")]
    TooDeep {
        /// Limit.
        max: usize,
    },
    /// Canonical DAG-CBOR, but not the shape of the expected type.
    #[error("unexpected document shape: {0}")]
    Shape(String),
    /// Canonical DAG-CBOR of the expected shape, but not the one encoding of the value it
    /// decodes to: a field the type does not have, or one written out at its default.
    #[error(
        "{size} bytes decode, but the value encodes to {encoded} different bytes (a field the document does not have, or a default written out)"
    )]
    NotExact {
        /// Length of the input.
        size: usize,
        /// Length of the value's one encoding.
        encoded: usize,
    },
}

/// Why a value could not be encoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum EncodeError {
    /// The serializer refused the value (for example a float NaN).
    #[error("cannot encode value: {0}")]
    Serialize(String),
    /// The serializer produced something that is not canonical DAG-CBOR.
    #[error("encoder output is not canonical: {0}")]
    NotCanonical(DecodeError),
}

/// Encodes `value` as canonical DAG-CBOR.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, EncodeError> {
    let bytes =
        serde_ipld_dagcbor::to_vec(value).map_err(|e| EncodeError::Serialize(e.to_string()))?;
    // Our own documents are far below the size limit; validate shape and canonical form only.
    let limits = Limits {
        max_size: usize::MAX,
        ..Limits::default()
    };
    validate(&bytes, limits).map_err(EncodeError::NotCanonical)?;
    Ok(bytes)
}

/// Decodes canonical DAG-CBOR into `T`, rejecting anything [`validate`] rejects and anything
/// that is not the value's one encoding ([`DecodeError::NotExact`]).
pub fn decode<T: DeserializeOwned + Serialize>(
    bytes: &[u8],
    limits: Limits,
) -> Result<T, DecodeError> {
    let value: T = decode_lenient(bytes, limits)?;
    // Sealed payloads decode here too: the copy may hold a secret.
    let encoded = zeroize::Zeroizing::new(
        serde_ipld_dagcbor::to_vec(&value).map_err(|e| DecodeError::Shape(e.to_string()))?,
    );
    if encoded.as_slice() != bytes {
        return Err(DecodeError::NotExact {
            size: bytes.len(),
            encoded: encoded.len(),
        });
    }
    Ok(value)
}

/// Decodes canonical DAG-CBOR into `T`, rejecting anything [`validate`] rejects, but taking
/// fields `T` does not have and defaults written out. Only for records a node wrote itself,
/// whose layout may be older than the code reading them; never for what a peer sent.
pub fn decode_lenient<T: DeserializeOwned>(bytes: &[u8], limits: Limits) -> Result<T, DecodeError> {
    validate(bytes, limits)?;
    serde_ipld_dagcbor::from_slice(bytes).map_err(|e| DecodeError::Shape(e.to_string()))
}

/// Checks that `bytes` is exactly one canonical DAG-CBOR item within `limits`.
pub fn validate(bytes: &[u8], limits: Limits) -> Result<(), DecodeError> {
    if bytes.len() > limits.max_size {
        return Err(DecodeError::TooLarge {
            size: bytes.len(),
            max: limits.max_size,
        });
    }
    let mut reader = Reader {
        bytes,
        pos: 0,
        max_depth: limits.max_depth,
    };
    reader.item(0)?;
    if reader.pos != bytes.len() {
        return Err(DecodeError::TrailingBytes { offset: reader.pos });
    }
    Ok(())
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
    max_depth: usize,
}

/// The head of a CBOR item: major type and argument.
struct Head {
    major: u8,
    info: u8,
    value: u64,
    offset: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|end| *end <= self.bytes.len())
            .ok_or(DecodeError::Truncated {
                offset: self.bytes.len(),
            })?;
        let slice = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(slice)
    }

    fn head(&mut self) -> Result<Head, DecodeError> {
        let offset = self.pos;
        let initial = self.take(1)?[0];
        let (major, info) = (initial >> 5, initial & 0x1f);
        let value = match info {
            0..=23 => u64::from(info),
            24..=27 => {
                let width = 1usize << (info - 24);
                let raw = self.take(width)?;
                let value = raw.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
                // Floats (major 7, info 25-27) carry bits, not a number, so they have no
                // shortest form to check here.
                let minimum = match info {
                    24 => 24,
                    25 => 0x100,
                    26 => 0x1_0000,
                    _ => 0x1_0000_0000,
                };
                if major != 7 && value < minimum {
                    return Err(DecodeError::NonMinimal { offset });
                }
                value
            }
            31 => return Err(DecodeError::IndefiniteLength { offset }),
            _ => return Err(DecodeError::Reserved { offset }),
        };
        Ok(Head {
            major,
            info,
            value,
            offset,
        })
    }

    /// A length that cannot exceed the remaining input (each element takes at least a byte),
    /// so hostile lengths never drive an allocation or a long loop.
    fn length(&self, head: &Head) -> Result<usize, DecodeError> {
        let remaining = (self.bytes.len() - self.pos) as u64;
        if head.value > remaining {
            return Err(DecodeError::Truncated {
                offset: self.bytes.len(),
            });
        }
        Ok(head.value as usize)
    }

    fn item(&mut self, depth: usize) -> Result<(), DecodeError> {
        if depth > self.max_depth {
            return Err(DecodeError::TooDeep {
                max: self.max_depth,
            });
        }
        let head = self.head()?;
        match head.major {
            0 | 1 => Ok(()),
            2 => {
                let len = self.length(&head)?;
                self.take(len).map(drop)
            }
            3 => self.text(&head).map(drop),
            4 => {
                let len = self.length(&head)?;
                (0..len).try_for_each(|_| self.item(depth + 1))
            }
            5 => self.map(&head, depth),
            6 => self.link(&head),
            _ => self.simple(&head),
        }
    }

    fn text(&mut self, head: &Head) -> Result<&'a [u8], DecodeError> {
        let len = self.length(head)?;
        let raw = self.take(len)?;
        std::str::from_utf8(raw).map_err(|_| DecodeError::InvalidUtf8 {
            offset: head.offset,
        })?;
        Ok(raw)
    }

    fn map(&mut self, head: &Head, depth: usize) -> Result<(), DecodeError> {
        let len = self.length(head)?;
        let mut previous: Option<&[u8]> = None;
        for _ in 0..len {
            let key_head = self.head()?;
            if key_head.major != 3 {
                return Err(DecodeError::MapKeyNotText {
                    offset: key_head.offset,
                });
            }
            let key = self.text(&key_head)?;
            if let Some(previous) = previous {
                // Canonical order: shorter keys first, then bytewise.
                match (previous.len(), previous).cmp(&(key.len(), key)) {
                    std::cmp::Ordering::Less => {}
                    std::cmp::Ordering::Equal => {
                        return Err(DecodeError::DuplicateMapKey {
                            offset: key_head.offset,
                        });
                    }
                    std::cmp::Ordering::Greater => {
                        return Err(DecodeError::UnsortedMapKeys {
                            offset: key_head.offset,
                        });
                    }
                }
            }
            previous = Some(key);
            self.item(depth + 1)?;
        }
        Ok(())
    }

    fn link(&mut self, head: &Head) -> Result<(), DecodeError> {
        if head.value != 42 {
            return Err(DecodeError::UnsupportedTag {
                tag: head.value,
                offset: head.offset,
            });
        }
        let invalid = DecodeError::InvalidLink {
            offset: head.offset,
        };
        let inner = self.head()?;
        if inner.major != 2 {
            return Err(invalid);
        }
        let len = self.length(&inner)?;
        let raw = self.take(len)?;
        match raw.split_first() {
            Some((0x00, cid_bytes)) => {
                let cid = cid::Cid::try_from(cid_bytes).map_err(|_| invalid.clone())?;
                // The CID must be its one encoding: no padding after it, and no varint the
                // parser reads loosely (overlong, or with bits past 64).
                if cid.to_bytes() != cid_bytes {
                    return Err(invalid);
                }
                Ok(())
            }
            _ => Err(invalid),
        }
    }

    fn simple(&mut self, head: &Head) -> Result<(), DecodeError> {
        match head.info {
            20..=22 => Ok(()),
            25 | 26 => Err(DecodeError::ShortFloat {
                offset: head.offset,
            }),
            27 => {
                let float = f64::from_bits(head.value);
                if !float.is_finite() {
                    Err(DecodeError::NonFiniteFloat {
                        offset: head.offset,
                    })
                } else if float == 0.0 && float.is_sign_negative() {
                    Err(DecodeError::NegativeZero {
                        offset: head.offset,
                    })
                } else {
                    Ok(())
                }
            }
            _ => Err(DecodeError::UnsupportedSimple {
                value: head.value as u8,
                offset: head.offset,
            }),
        }
    }
}

#[cfg(test)]
mod tests;

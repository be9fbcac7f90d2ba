//! secp256k1 helpers for the wallet plugins: keys from seeds, additive key splitting,
//! SEC1 encodings, Bitcoin P2PKH addresses, and BIP-340 signature checks (k256's verifier,
//! independent of the FROST code that makes threshold signatures).
//!
//! The `bitcoinwallet` plugin of the original D-TA splits a wallet key by addition
//! (`y = s₁ + c`, `Y = S₁ + C`) and derives the address from the uncompressed `Y`; these are
//! the pieces it needs. Key derivation is HKDF-based and domain-separated rather than the
//! original's BIP32 path from a shared seed.

use std::fmt;

use k256::elliptic_curve::sec1::ToSec1Point;
use k256::{ProjectivePoint, PublicKey as RawPublic, SecretKey as RawSecret};
use sha2::{Digest, Sha256};

use crate::{Secret, derive_key_material};

/// Length of a compressed SEC1 public key.
pub const COMPRESSED_LEN: usize = 33;
/// Length of an uncompressed SEC1 public key.
pub const UNCOMPRESSED_LEN: usize = 65;

/// What went wrong with a secp256k1 operation.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone, Copy)]
pub enum Secp256k1Error {
    /// Not a scalar in `[1, n)`.
    #[error("not a valid secp256k1 secret key")]
    InvalidSecretKey,
    /// Not a SEC1-encoded point on the curve.
    #[error("not a valid SEC1 secp256k1 public key ({len} bytes)")]
    InvalidPublicKey {
        /// Length given.
        len: usize,
    },
    /// The sum is zero or the point at infinity.
    #[error("the keys add up to zero")]
    Degenerate,
    /// The original D-TA knew coin 0 (mainnet) and 1 (testnet) only.
    #[error("unsupported coin {0}: use 0 (mainnet) or 1 (testnet)")]
    UnsupportedCoin(i64),
}

/// Which Bitcoin network an address is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Network {
    /// Version byte 0x00, addresses starting with `1`.
    Mainnet,
    /// Version byte 0x6f, addresses starting with `m` or `n`.
    Testnet,
}

impl Network {
    /// The original D-TA's coin numbers: 0 is mainnet, 1 is testnet.
    pub fn from_coin(coin: i64) -> Result<Self, Secp256k1Error> {
        match coin {
            0 => Ok(Self::Mainnet),
            1 => Ok(Self::Testnet),
            other => Err(Secp256k1Error::UnsupportedCoin(other)),
        }
    }

    fn p2pkh_version(self) -> u8 {
        match self {
            Self::Mainnet => 0x00,
            Self::Testnet => 0x6f,
        }
    }

    /// The human-readable part of its segwit addresses: `bc`, or `tb` for testnet.
    fn segwit_hrp(self) -> bech32::Hrp {
        match self {
            Self::Mainnet => bech32::hrp::BC,
            Self::Testnet => bech32::hrp::TB,
        }
    }
}

/// Which SEC1 form of the public key an address hashes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PointEncoding {
    /// 33 bytes.
    Compressed,
    /// 65 bytes; what the original `bitcoinwallet` plugin hashed.
    Uncompressed,
}

/// A secp256k1 secret key. Zeroized on drop; `Debug` prints nothing.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretKey(RawSecret);

impl SecretKey {
    /// Derives a key from a seed under `label`. Deterministic: the same seed and label always
    /// give the same key, different labels unrelated keys.
    pub fn from_seed(seed: &[u8], label: &[u8]) -> Self {
        let mut counter = 0u32;
        loop {
            let mut info = label.to_vec();
            info.extend_from_slice(b"/secp256k1/");
            info.extend_from_slice(&counter.to_be_bytes());
            let bytes = derive_key_material(seed, &info);
            // Fails only for zero or values >= n, with probability about 2^-128.
            if let Ok(key) = Self::from_bytes(bytes.expose()) {
                return key;
            }
            counter += 1;
        }
    }

    /// A fresh random key.
    pub fn random() -> Self {
        loop {
            if let Ok(key) = Self::from_bytes(Secret::<32>::random().expose()) {
                return key;
            }
        }
    }

    /// Decodes 32 big-endian bytes.
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<Self, Secp256k1Error> {
        RawSecret::from_slice(bytes)
            .map(Self)
            .map_err(|_| Secp256k1Error::InvalidSecretKey)
    }

    /// The 32 big-endian bytes, in zeroizing memory.
    pub fn to_bytes(&self) -> Secret<32> {
        Secret::new(self.0.to_bytes().into())
    }

    /// The public key.
    pub fn public_key(&self) -> PublicKey {
        PublicKey(self.0.public_key())
    }

    /// `self + other mod n`: how an additively split key is put back together.
    pub fn add(&self, other: &Self) -> Result<Self, Secp256k1Error> {
        let sum = *self.0.to_nonzero_scalar().as_ref() + *other.0.to_nonzero_scalar().as_ref();
        Option::<k256::NonZeroScalar>::from(k256::NonZeroScalar::new(sum))
            .map(|s| Self(RawSecret::from(s)))
            .ok_or(Secp256k1Error::Degenerate)
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("secp256k1::SecretKey(<redacted>)")
    }
}

/// A secp256k1 public key (never the point at infinity).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PublicKey(RawPublic);

impl PublicKey {
    /// Decodes a compressed (33-byte) or uncompressed (65-byte) SEC1 point.
    pub fn from_sec1(bytes: &[u8]) -> Result<Self, Secp256k1Error> {
        if bytes.len() != COMPRESSED_LEN && bytes.len() != UNCOMPRESSED_LEN {
            return Err(Secp256k1Error::InvalidPublicKey { len: bytes.len() });
        }
        RawPublic::from_sec1_bytes(bytes)
            .map(Self)
            .map_err(|_| Secp256k1Error::InvalidPublicKey { len: bytes.len() })
    }

    /// The 33-byte compressed encoding.
    pub fn to_compressed(&self) -> [u8; COMPRESSED_LEN] {
        let mut out = [0; COMPRESSED_LEN];
        out.copy_from_slice(self.0.to_sec1_point(true).as_bytes());
        out
    }

    /// The 65-byte uncompressed encoding.
    pub fn to_uncompressed(&self) -> [u8; UNCOMPRESSED_LEN] {
        let mut out = [0; UNCOMPRESSED_LEN];
        out.copy_from_slice(self.0.to_sec1_point(false).as_bytes());
        out
    }

    /// Point addition: `S₁ + C`.
    pub fn add(&self, other: &Self) -> Result<Self, Secp256k1Error> {
        let sum = ProjectivePoint::from(*self.0.as_affine()) + other.0.as_affine();
        RawPublic::from_affine(sum.to_affine())
            .map(Self)
            .map_err(|_| Secp256k1Error::Degenerate)
    }

    /// The key's x-only form (32 bytes): its BIP-340 public key.
    pub fn x_only(&self) -> [u8; 32] {
        let mut out = [0; 32];
        out.copy_from_slice(&self.to_compressed()[1..]);
        out
    }

    /// The pay-to-Taproot address (BIP-341, bech32m, witness version 1) whose output key is
    /// this key, spent by a key-path BIP-340 signature under [`PublicKey::x_only`]. The key
    /// is taken as the output key as it is: a key that should commit to no script path
    /// carries Taproot's tweak already (keys generated without a dealer do).
    pub fn p2tr_address(&self, network: Network) -> String {
        p2tr_address(&self.x_only(), network)
    }

    /// The pay-to-public-key-hash address: Base58Check of the version byte and
    /// `RIPEMD160(SHA256(key))`.
    pub fn p2pkh_address(&self, network: Network, encoding: PointEncoding) -> String {
        let hash = match encoding {
            PointEncoding::Compressed => hash160(&self.to_compressed()),
            PointEncoding::Uncompressed => hash160(&self.to_uncompressed()),
        };
        let mut payload = Vec::with_capacity(25);
        payload.push(network.p2pkh_version());
        payload.extend_from_slice(&hash);
        let check = Sha256::digest(Sha256::digest(&payload));
        payload.extend_from_slice(&check[..4]);
        bs58::encode(payload).into_string()
    }
}

/// The pay-to-Taproot address (bech32m, witness version 1) of the 32-byte output key
/// `x_only`.
pub fn p2tr_address(x_only: &[u8; 32], network: Network) -> String {
    let mut address = String::with_capacity(62);
    // A 32-byte program of version 1 always encodes, into a String that never fails.
    let _ = bech32::segwit::encode_to_fmt_unchecked(
        &mut address,
        network.segwit_hrp(),
        bech32::segwit::VERSION_1,
        x_only,
    );
    address
}

/// Whether `signature` (64 bytes) is a valid BIP-340 Schnorr signature of `message` under the
/// x-only public key `x_only` (32 bytes). Any malformed input is simply not valid.
pub fn verify_bip340(x_only: &[u8], message: &[u8], signature: &[u8]) -> bool {
    let (Ok(key), Ok(signature)) = (
        k256::schnorr::VerifyingKey::from_slice(x_only),
        k256::schnorr::Signature::try_from(signature),
    ) else {
        return false;
    };
    key.verify_raw(message, &signature).is_ok()
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "secp256k1::PublicKey({})",
            crate::bls::hex_prefix(&self.to_compressed())
        )
    }
}

fn hash160(bytes: &[u8]) -> [u8; 20] {
    use ripemd::Ripemd160;
    Ripemd160::digest(Sha256::digest(bytes)).into()
}

#[cfg(test)]
#[path = "secp256k1_tests.rs"]
mod tests;

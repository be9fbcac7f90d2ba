//! Identity documents: who a node is, and the keys others use to check and reach it.
//!
//! A node's keys all come from one 32-byte seed by domain-separated HKDF derivation
//! ([`IdentityKeys::from_seed`]), so the keystore holds one secret per identity. The document
//! carries the public halves and a self-signature; its CID is the node's identity.
//!
//! Version 2 documents add an Ed25519 key, which signs the node's envelopes; a version 1
//! document (made before it existed) is still accepted, and its node signs envelopes with
//! its BLS key as it always did. See [`crate::envelope`].

use std::fmt;

use cid::Cid;
use dta_crypto::bls::{self, PopVerifiedKey, ProofOfPossession};
use dta_crypto::seal::{KemPublicKey, KemSecretKey};
use dta_crypto::{Secret, derive_key_material, ed25519, secp256k1};
use serde::{Deserialize, Serialize};

use crate::block::Block;
use crate::dagcbor::{self, DecodeError, EncodeError, Limits};

/// Version of the identity document layout that new identities get.
pub const IDENTITY_VERSION: u64 = 2;
/// The first layout, without an Ed25519 key; still accepted.
pub const IDENTITY_VERSION_BLS_ONLY: u64 = 1;
/// Longest node name, in bytes.
pub const MAX_NAME_LEN: usize = 64;
/// Longest libp2p peer id, in bytes (an identity multihash of an RSA key is the largest).
pub const MAX_PEER_ID_LEN: usize = 512;
/// Identity documents are small; anything much larger is not one.
pub const MAX_IDENTITY_SIZE: usize = 8 * 1024;
/// What a self-signature signs: this prefix, then the canonical encoding of the claims.
pub const IDENTITY_CONTEXT: &[u8] = b"dta/identity/v1\0";

/// What the self-signature covers: everything in the document but the signature.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct IdentityClaims {
    /// Layout version, [`IDENTITY_VERSION`].
    pub version: u64,
    /// Human-readable node name (not unique; the CID is the identity).
    pub name: String,
    /// The node's libp2p peer id, as bytes.
    #[serde(with = "serde_bytes")]
    pub peer_id: Vec<u8>,
    /// BLS public key (48 bytes, compressed G1).
    #[serde(with = "serde_bytes")]
    pub bls_public_key: Vec<u8>,
    /// Proof of possession of the BLS key (96 bytes).
    #[serde(with = "serde_bytes")]
    pub bls_pop: Vec<u8>,
    /// X-Wing KEM public key that envelopes are sealed to (1216 bytes).
    #[serde(with = "serde_bytes")]
    pub kem_public_key: Vec<u8>,
    /// secp256k1 public key for wallet plugins (33 bytes, compressed).
    #[serde(with = "serde_bytes")]
    pub secp256k1_public_key: Vec<u8>,
    /// Creation time, seconds since the Unix epoch.
    pub created_at: u64,
    /// Ed25519 key that signs this node's envelopes (32 bytes). Present exactly in version 2
    /// documents; absent from the encoding of a version 1 document, so its CID is unchanged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ed25519_public_key: Option<serde_bytes::ByteBuf>,
}

/// A self-signed identity document, as stored and exchanged.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct IdentityDocument {
    /// The signed claims.
    pub claims: IdentityClaims,
    /// BLS signature over [`IDENTITY_CONTEXT`] followed by the canonical claims.
    #[serde(with = "serde_bytes")]
    pub signature: Vec<u8>,
}

/// Why an identity document was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum IdentityError {
    /// Not canonical DAG-CBOR of the right shape.
    #[error("identity document does not decode: {0}")]
    Decode(#[from] DecodeError),
    /// Could not be encoded.
    #[error("identity document does not encode: {0}")]
    Encode(#[from] EncodeError),
    /// Unknown layout version.
    #[error("unsupported identity document version {0}")]
    Version(u64),
    /// Empty, too long, or with control characters.
    #[error("invalid node name: must be 1 to {MAX_NAME_LEN} bytes without control characters")]
    Name,
    /// Empty or oversized peer id.
    #[error("invalid peer id length {0}")]
    PeerId(usize),
    /// The BLS key does not decode.
    #[error("invalid BLS public key: {0}")]
    BlsKey(bls::DecodeError),
    /// The proof of possession does not decode or does not verify.
    #[error("BLS proof of possession is invalid")]
    Pop,
    /// The KEM key does not decode.
    #[error("invalid KEM public key")]
    KemKey,
    /// The Ed25519 key does not decode, is of small order, or is missing from (or present
    /// in) a document of the wrong version.
    #[error("invalid Ed25519 public key (required in version 2 documents, absent from version 1)")]
    Ed25519Key,
    /// The secp256k1 key does not decode or is not compressed.
    #[error("invalid secp256k1 public key (33-byte compressed form required)")]
    Secp256k1Key,
    /// The self-signature does not decode or does not verify.
    #[error("self-signature does not verify")]
    Signature,
    /// A stored document whose keys are not the ones the seed derives.
    #[error("the identity document does not belong to this seed")]
    NotOurs,
}

/// An identity whose document has been fully checked. The only form the rest of dta trusts.
#[derive(Clone, PartialEq, Eq)]
pub struct VerifiedIdentity {
    cid: Cid,
    document: IdentityDocument,
    bls: PopVerifiedKey,
    kem: KemPublicKey,
    secp256k1: secp256k1::PublicKey,
    ed25519: Option<ed25519::PublicKey>,
}

impl VerifiedIdentity {
    /// The identity CID.
    pub fn cid(&self) -> Cid {
        self.cid
    }
    /// The document.
    pub fn document(&self) -> &IdentityDocument {
        &self.document
    }
    /// The node name.
    pub fn name(&self) -> &str {
        &self.document.claims.name
    }
    /// The libp2p peer id bytes.
    pub fn peer_id(&self) -> &[u8] {
        &self.document.claims.peer_id
    }
    /// The PoP-verified BLS key.
    pub fn bls_key(&self) -> &PopVerifiedKey {
        &self.bls
    }
    /// The KEM key to seal to.
    pub fn kem_key(&self) -> &KemPublicKey {
        &self.kem
    }
    /// The secp256k1 key.
    pub fn secp256k1_key(&self) -> &secp256k1::PublicKey {
        &self.secp256k1
    }
    /// The key that signs this identity's envelopes: Ed25519 for version 2 documents, none
    /// for version 1 (whose envelopes carry BLS signatures).
    pub fn envelope_key(&self) -> Option<&ed25519::PublicKey> {
        self.ed25519.as_ref()
    }
}

impl fmt::Debug for VerifiedIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifiedIdentity")
            .field("cid", &self.cid.to_string())
            .field("name", &self.name())
            .finish_non_exhaustive()
    }
}

impl IdentityDocument {
    /// Decodes a block's bytes (strictly) and verifies the document.
    pub fn decode_verified(bytes: &[u8]) -> Result<VerifiedIdentity, IdentityError> {
        let limits = Limits {
            max_size: MAX_IDENTITY_SIZE,
            ..Limits::default()
        };
        let document: IdentityDocument = dagcbor::decode(bytes, limits)?;
        document.verify()
    }

    /// Checks structure, the BLS key, its proof of possession and the self-signature (in one
    /// pairing product), then the other keys.
    pub fn verify(self) -> Result<VerifiedIdentity, IdentityError> {
        let claims = &self.claims;
        if claims.version != IDENTITY_VERSION && claims.version != IDENTITY_VERSION_BLS_ONLY {
            return Err(IdentityError::Version(claims.version));
        }
        if claims.name.is_empty()
            || claims.name.len() > MAX_NAME_LEN
            || claims.name.chars().any(char::is_control)
        {
            return Err(IdentityError::Name);
        }
        if claims.peer_id.is_empty() || claims.peer_id.len() > MAX_PEER_ID_LEN {
            return Err(IdentityError::PeerId(claims.peer_id.len()));
        }
        let bls_key =
            bls::PublicKey::from_bytes(&claims.bls_public_key).map_err(IdentityError::BlsKey)?;
        let pop = ProofOfPossession::from_bytes(&claims.bls_pop).map_err(|_| IdentityError::Pop)?;
        let signature =
            bls::Signature::from_bytes(&self.signature).map_err(|_| IdentityError::Signature)?;
        let message = signing_message(IDENTITY_CONTEXT, &dagcbor::encode(claims)?);
        // Both at once; only a document that fails is checked again to say which is wrong.
        let bls = bls_key
            .verify_pop_and_signature(&pop, &message, &signature)
            .map_err(|_| match bls_key.verify_pop(&pop) {
                Ok(_) => IdentityError::Signature,
                Err(_) => IdentityError::Pop,
            })?;
        let kem =
            KemPublicKey::from_bytes(&claims.kem_public_key).map_err(|_| IdentityError::KemKey)?;
        if claims.secp256k1_public_key.len() != secp256k1::COMPRESSED_LEN {
            return Err(IdentityError::Secp256k1Key);
        }
        let secp256k1 = secp256k1::PublicKey::from_sec1(&claims.secp256k1_public_key)
            .map_err(|_| IdentityError::Secp256k1Key)?;
        let ed25519 = match (claims.version, &claims.ed25519_public_key) {
            (IDENTITY_VERSION, Some(key)) => {
                Some(ed25519::PublicKey::from_bytes(key).map_err(|_| IdentityError::Ed25519Key)?)
            }
            (IDENTITY_VERSION_BLS_ONLY, None) => None,
            _ => return Err(IdentityError::Ed25519Key),
        };
        let cid = Block::encode(&self)?.cid();
        Ok(VerifiedIdentity {
            cid,
            document: self,
            bls,
            kem,
            secp256k1,
            ed25519,
        })
    }
}

/// Context prefix and canonical bytes: what every dta signature covers.
pub(crate) fn signing_message(context: &[u8], canonical: &[u8]) -> Vec<u8> {
    let mut message = Vec::with_capacity(context.len() + canonical.len());
    message.extend_from_slice(context);
    message.extend_from_slice(canonical);
    message
}

/// A node's secret keys, all derived from one seed. Zeroized on drop; `Debug` prints nothing.
#[derive(Clone)]
pub struct IdentityKeys {
    bls: bls::SecretKey,
    kem: KemSecretKey,
    secp256k1: secp256k1::SecretKey,
    ed25519: ed25519::SecretKey,
}

impl IdentityKeys {
    /// Derives every key from `seed`, each under its own label.
    pub fn from_seed(seed: &Secret<32>) -> Self {
        let bls_ikm = derive_key_material(seed.expose(), b"dta/identity/bls");
        let bls = match bls::SecretKey::from_ikm(bls_ikm.expose(), b"") {
            Ok(key) => key,
            Err(_) => unreachable!("32 bytes of IKM is always enough"),
        };
        let kem = KemSecretKey::from_seed(&derive_key_material(seed.expose(), b"dta/identity/kem"));
        let secp256k1 = secp256k1::SecretKey::from_seed(seed.expose(), b"dta/identity/secp256k1");
        let ed25519 = ed25519::SecretKey::from_seed(&derive_key_material(
            seed.expose(),
            b"dta/identity/ed25519",
        ));
        Self {
            bls,
            kem,
            secp256k1,
            ed25519,
        }
    }

    /// The BLS signing key.
    pub fn bls(&self) -> &bls::SecretKey {
        &self.bls
    }

    /// The KEM decapsulation key.
    pub fn kem(&self) -> &KemSecretKey {
        &self.kem
    }

    /// The secp256k1 key.
    pub fn secp256k1(&self) -> &secp256k1::SecretKey {
        &self.secp256k1
    }

    /// The Ed25519 envelope-signing key (used when the identity document is version 2).
    pub fn ed25519(&self) -> &ed25519::SecretKey {
        &self.ed25519
    }

    /// Makes and signs this node's identity document.
    pub fn identity_document(
        &self,
        name: &str,
        peer_id: &[u8],
        created_at: u64,
    ) -> Result<IdentityDocument, IdentityError> {
        let claims = IdentityClaims {
            version: IDENTITY_VERSION,
            name: name.to_owned(),
            peer_id: peer_id.to_vec(),
            bls_public_key: self.bls.public_key().to_bytes().to_vec(),
            bls_pop: self.bls.prove_possession().to_bytes().to_vec(),
            kem_public_key: self.kem.public_key().to_bytes(),
            secp256k1_public_key: self.secp256k1.public_key().to_compressed().to_vec(),
            created_at,
            ed25519_public_key: Some(self.ed25519.public_key().to_bytes().to_vec().into()),
        };
        let message = signing_message(IDENTITY_CONTEXT, &dagcbor::encode(&claims)?);
        let signature = self.bls.sign(&message).to_bytes().to_vec();
        Ok(IdentityDocument { claims, signature })
    }
}

impl fmt::Debug for IdentityKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("IdentityKeys(<redacted>)")
    }
}

/// This node: its secret keys and its own verified identity.
#[derive(Clone, Debug)]
pub struct LocalIdentity {
    keys: IdentityKeys,
    identity: VerifiedIdentity,
}

impl LocalIdentity {
    /// Derives the keys from `seed`, signs the identity document and verifies it like any
    /// peer would.
    pub fn create(
        seed: &Secret<32>,
        name: &str,
        peer_id: &[u8],
        created_at: u64,
    ) -> Result<Self, IdentityError> {
        let keys = IdentityKeys::from_seed(seed);
        let identity = keys
            .identity_document(name, peer_id, created_at)?
            .verify()?;
        Ok(Self { keys, identity })
    }

    /// Reopens an identity: derives the keys from `seed` and checks that `document` is the
    /// valid document of exactly those keys, so a node keeps its CID across restarts.
    pub fn from_document(seed: &Secret<32>, document: &[u8]) -> Result<Self, IdentityError> {
        let keys = IdentityKeys::from_seed(seed);
        let identity = IdentityDocument::decode_verified(document)?;
        let claims = &identity.document().claims;
        if claims.bls_public_key != keys.bls.public_key().to_bytes()
            || claims.kem_public_key != keys.kem.public_key().to_bytes()
            || claims.secp256k1_public_key != keys.secp256k1.public_key().to_compressed()
            || identity
                .envelope_key()
                .is_some_and(|key| *key != keys.ed25519.public_key())
        {
            return Err(IdentityError::NotOurs);
        }
        Ok(Self { keys, identity })
    }

    /// The secret keys.
    pub fn keys(&self) -> &IdentityKeys {
        &self.keys
    }

    /// The public, verified identity.
    pub fn identity(&self) -> &VerifiedIdentity {
        &self.identity
    }

    /// The identity CID.
    pub fn cid(&self) -> Cid {
        self.identity.cid
    }
}

#[cfg(test)]
#[path = "identity_tests.rs"]
pub(crate) mod tests;

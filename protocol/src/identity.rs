//! Identity documents: who a node is, and the keys others use to check and reach it.
//!
//! A node's keys all come from one 32-byte seed by domain-separated HKDF derivation
//! ([`IdentityKeys::from_seed`]), so the keystore holds one secret per identity. The document
//! carries the public halves and a self-signature; its CID is the node's identity.
//!
//! Version 2 documents add an Ed25519 key, which signs the node's envelopes; a version 1
//! document (made before it existed) is still accepted, and its node signs envelopes with
//! its BLS key as it always did. See [`crate::envelope`].
//!
//! Keys can change (a rotation): a new document with new keys names the identity (the CID of
//! its first document, which stays its name everywhere), the document it replaces and its
//! place in the sequence, and carries, besides its own self-signature (whose proof of
//! possession covers the new BLS key), an endorsement by the replaced document's BLS key. Such
//! a document is verified only against the one it replaces
//! ([`IdentityDocument::verify_successor`]); the [`VerifiedIdentity`] it gives keeps the
//! earlier key states, so that an envelope is checked with the keys its identity had at the
//! envelope's time ([`VerifiedIdentity::as_of`]).

use std::fmt;
use std::sync::Arc;

use cid::Cid;
use dta_crypto::bls::{self, PopVerifiedKey, ProofOfPossession};
use dta_crypto::seal::{self, KemPublicKey, KemSecretKey};
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
/// What the replaced keys sign to endorse a rotated document: this prefix, then the canonical
/// encoding of the new document's claims.
pub const ROTATION_CONTEXT: &[u8] = b"dta/identity/rotation/v1\0";
/// Most rotations one identity may go through (a chain longer than this is refused).
pub const MAX_ROTATIONS: u64 = 64;

/// Where a rotated document stands in its identity's sequence of documents.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Succession {
    /// The identity: the CID of its first document.
    pub identity: Cid,
    /// The CID of the document this one replaces.
    pub previous: Cid,
    /// 1 for the first rotation, then one more for each.
    pub sequence: u64,
    /// From when the new keys sign, milliseconds since the Unix epoch (the rotating node's
    /// clock); envelopes dated before are checked with the keys before.
    pub at: u64,
}

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
    /// For a rotated document (version 2 only): the identity and the document it replaces.
    /// Absent from a first document, so its CID is unchanged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub succeeds: Option<Succession>,
}

/// A self-signed identity document, as stored and exchanged.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct IdentityDocument {
    /// The signed claims.
    pub claims: IdentityClaims,
    /// BLS signature over [`IDENTITY_CONTEXT`] followed by the canonical claims.
    #[serde(with = "serde_bytes")]
    pub signature: Vec<u8>,
    /// For a rotated document: the replaced document's BLS signature over
    /// [`ROTATION_CONTEXT`] followed by the canonical claims.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endorsement: Option<serde_bytes::ByteBuf>,
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
    /// A rotated document, which is checked only against the document it replaces.
    #[error("a rotated identity document is checked against the document it replaces")]
    Unlinked,
    /// A rotated document that does not follow the document given, or whose endorsement by
    /// it does not verify.
    #[error("the rotation does not follow the identity's document: {0}")]
    Succession(&'static str),
}

/// An identity whose document has been fully checked. The only form the rest of dta trusts.
#[derive(Clone, PartialEq, Eq)]
pub struct VerifiedIdentity {
    /// The identity: its first document's CID.
    cid: Cid,
    /// This document's own CID (the identity's, for a first document).
    document_cid: Cid,
    /// 0 for a first document, then the rotation's number.
    sequence: u64,
    /// The key state this one replaced.
    previous: Option<Arc<VerifiedIdentity>>,
    document: IdentityDocument,
    bls: PopVerifiedKey,
    kem: KemPublicKey,
    secp256k1: secp256k1::PublicKey,
    ed25519: Option<ed25519::PublicKey>,
}

impl VerifiedIdentity {
    /// The identity CID: its first document's, however often its keys changed.
    pub fn cid(&self) -> Cid {
        self.cid
    }
    /// This document's own CID: the identity's for a first document, a rotated one's own.
    pub fn document_cid(&self) -> Cid {
        self.document_cid
    }
    /// How many rotations came before this key state (0 for a first document).
    pub fn sequence(&self) -> u64 {
        self.sequence
    }
    /// The key state this one replaced, if any.
    pub fn previous(&self) -> Option<&VerifiedIdentity> {
        self.previous.as_deref()
    }
    /// The key state in force at `timestamp_ms` (milliseconds since the epoch): the newest
    /// whose rotation took effect at or before it, else the first.
    pub fn as_of(&self, timestamp_ms: u64) -> &VerifiedIdentity {
        let mut state = self;
        while let Some(previous) = state.previous.as_deref() {
            if state.rotated_at().is_some_and(|at| at <= timestamp_ms) {
                break;
            }
            state = previous;
        }
        state
    }
    /// When this key state took effect, for a rotated one.
    fn rotated_at(&self) -> Option<u64> {
        self.document.claims.succeeds.as_ref().map(|s| s.at)
    }
    /// Every key state, the newest first.
    pub fn key_states(&self) -> impl Iterator<Item = &VerifiedIdentity> {
        std::iter::successors(Some(self), |state| state.previous.as_deref())
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

    /// Checks a first document: structure, the BLS key, its proof of possession and the
    /// self-signature (in one pairing product), then the other keys. A rotated document is
    /// refused here ([`IdentityError::Unlinked`]): see [`Self::verify_successor`].
    pub fn verify(self) -> Result<VerifiedIdentity, IdentityError> {
        if self.claims.succeeds.is_some() || self.endorsement.is_some() {
            return Err(IdentityError::Unlinked);
        }
        self.check()
    }

    /// Checks a rotated document against the key state it replaces: it names that state's
    /// identity and document and the next number, the replaced BLS key endorses its claims,
    /// and it is a valid document of its own. The result is the same identity with the new
    /// keys, keeping `previous` as the state before.
    pub fn verify_successor(
        self,
        previous: &VerifiedIdentity,
    ) -> Result<VerifiedIdentity, IdentityError> {
        let succession = self
            .claims
            .succeeds
            .clone()
            .ok_or(IdentityError::Succession("it is no rotated document"))?;
        if succession.identity != previous.cid() {
            return Err(IdentityError::Succession("it names another identity"));
        }
        if succession.previous != previous.document_cid() {
            return Err(IdentityError::Succession("it replaces another document"));
        }
        if succession.sequence != previous.sequence() + 1 || succession.sequence > MAX_ROTATIONS {
            return Err(IdentityError::Succession("its number is not the next one"));
        }
        if self.claims.created_at < previous.document.claims.created_at
            || previous.rotated_at().is_some_and(|at| succession.at < at)
        {
            return Err(IdentityError::Succession(
                "it is older than the document it replaces",
            ));
        }
        let endorsement = self
            .endorsement
            .as_ref()
            .and_then(|e| bls::Signature::from_bytes(e).ok())
            .ok_or(IdentityError::Succession("it carries no endorsement"))?;
        let message = signing_message(ROTATION_CONTEXT, &dagcbor::encode(&self.claims)?);
        previous
            .bls_key()
            .public_key()
            .verify(&message, &endorsement)
            .map_err(|_| IdentityError::Succession("the replaced keys did not endorse it"))?;
        let mut verified = self.check()?;
        verified.cid = previous.cid();
        verified.sequence = succession.sequence;
        verified.previous = Some(Arc::new(previous.clone()));
        Ok(verified)
    }

    /// Every check of a document on its own.
    fn check(self) -> Result<VerifiedIdentity, IdentityError> {
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
        if claims.version != IDENTITY_VERSION && claims.succeeds.is_some() {
            return Err(IdentityError::Version(claims.version));
        }
        let cid = Block::encode(&self)?.cid();
        Ok(VerifiedIdentity {
            cid,
            document_cid: cid,
            sequence: 0,
            previous: None,
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
        self.document_of(self.claims(name, peer_id, created_at, None))
    }

    /// Self-signs `claims`.
    fn document_of(&self, claims: IdentityClaims) -> Result<IdentityDocument, IdentityError> {
        let message = signing_message(IDENTITY_CONTEXT, &dagcbor::encode(&claims)?);
        let signature = self.bls.sign(&message).to_bytes().to_vec();
        Ok(IdentityDocument {
            claims,
            signature,
            endorsement: None,
        })
    }

    /// The claims of a document of these keys.
    fn claims(
        &self,
        name: &str,
        peer_id: &[u8],
        created_at: u64,
        succeeds: Option<Succession>,
    ) -> IdentityClaims {
        IdentityClaims {
            version: IDENTITY_VERSION,
            name: name.to_owned(),
            peer_id: peer_id.to_vec(),
            bls_public_key: self.bls.public_key().to_bytes().to_vec(),
            bls_pop: self.bls.prove_possession().to_bytes().to_vec(),
            kem_public_key: self.kem.public_key().to_bytes(),
            secp256k1_public_key: self.secp256k1.public_key().to_compressed().to_vec(),
            created_at,
            ed25519_public_key: Some(self.ed25519.public_key().to_bytes().to_vec().into()),
            succeeds,
        }
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
    /// The keys of the states a rotation replaced, newest first: they open envelopes sealed
    /// to them before peers heard of the rotation, and sign nothing.
    retired: Vec<IdentityKeys>,
    /// The encapsulations this node seals with again, per recipient ([`seal::reuse`]);
    /// shared by the clones every role holds.
    seal_sessions: Arc<seal::Sessions>,
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
        Ok(Self {
            keys,
            identity,
            retired: Vec::new(),
            seal_sessions: Default::default(),
        })
    }

    /// Reopens an identity: derives the keys from `seed` and checks that `document` is the
    /// valid document of exactly those keys, so a node keeps its CID across restarts.
    pub fn from_document(seed: &Secret<32>, document: &[u8]) -> Result<Self, IdentityError> {
        Self::from_chain(seed, &[document], Vec::new())
    }

    /// Reopens an identity whose keys were rotated: `documents` are its documents, the first
    /// one first, each checked against the one before; the last must be the document of
    /// exactly the keys `seed` derives. `retired` are the keys of the earlier states, newest
    /// first.
    pub fn from_chain(
        seed: &Secret<32>,
        documents: &[&[u8]],
        retired: Vec<IdentityKeys>,
    ) -> Result<Self, IdentityError> {
        let keys = IdentityKeys::from_seed(seed);
        let identity = verify_chain(documents)?;
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
        Ok(Self {
            keys,
            identity,
            retired,
            seal_sessions: Default::default(),
        })
    }

    /// Rotates the keys: a document of the keys `seed` derives, with the same name and peer
    /// id, that succeeds this one from `at_ms` (milliseconds since the epoch) and that these
    /// keys endorse, checked as peers check it. The current keys become the newest retired
    /// ones.
    pub fn rotate(&self, seed: &Secret<32>, at_ms: u64) -> Result<Self, IdentityError> {
        let keys = IdentityKeys::from_seed(seed);
        let current = &self.identity;
        let at = current
            .rotated_at()
            .map_or(at_ms, |before| at_ms.max(before));
        let succeeds = Succession {
            identity: current.cid(),
            previous: current.document_cid(),
            sequence: current.sequence() + 1,
            at,
        };
        let claims = &current.document().claims;
        let mut document = keys.document_of(keys.claims(
            &claims.name,
            &claims.peer_id,
            (at / 1000).max(claims.created_at),
            Some(succeeds),
        ))?;
        let message = signing_message(ROTATION_CONTEXT, &dagcbor::encode(&document.claims)?);
        document.endorsement = Some(self.keys.bls.sign(&message).to_bytes().to_vec().into());
        let identity = document.verify_successor(current)?;
        let mut retired = vec![self.keys.clone()];
        retired.extend(self.retired.iter().cloned());
        Ok(Self {
            keys,
            identity,
            retired,
            seal_sessions: self.seal_sessions.clone(),
        })
    }

    /// The secret keys.
    pub fn keys(&self) -> &IdentityKeys {
        &self.keys
    }

    /// The encapsulations this node seals with again, per recipient.
    pub fn seal_sessions(&self) -> &seal::Sessions {
        &self.seal_sessions
    }

    /// The keys of the states a rotation replaced, newest first.
    pub fn retired(&self) -> &[IdentityKeys] {
        &self.retired
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

/// Verifies an identity's documents, its first one first, each rotated one against the one
/// before: the identity in its newest key state.
pub fn verify_chain(documents: &[&[u8]]) -> Result<VerifiedIdentity, IdentityError> {
    let limits = Limits {
        max_size: MAX_IDENTITY_SIZE,
        ..Limits::default()
    };
    let (first, rest) = documents
        .split_first()
        .ok_or(IdentityError::Succession("there is no document"))?;
    let mut identity = IdentityDocument::decode_verified(first)?;
    for bytes in rest {
        let document: IdentityDocument = dagcbor::decode(bytes, limits)?;
        identity = document.verify_successor(&identity)?;
    }
    Ok(identity)
}

/// What a document says its identity is, unchecked: the identity a rotated document names,
/// else the document's own CID. Only a hint (say, which identity a peer announced as its
/// own); nothing is trusted on it.
pub fn claimed_identity(bytes: &[u8]) -> Cid {
    let limits = Limits {
        max_size: MAX_IDENTITY_SIZE,
        ..Limits::default()
    };
    dagcbor::decode::<IdentityDocument>(bytes, limits)
        .ok()
        .and_then(|document| document.claims.succeeds)
        .map_or_else(
            || crate::block::cid_of(crate::block::DAG_CBOR, bytes),
            |succession| succession.identity,
        )
}

/// The peer id a document names, unchecked (a hint, like [`claimed_identity`]).
pub fn claimed_peer(bytes: &[u8]) -> Option<libp2p::PeerId> {
    let limits = Limits {
        max_size: MAX_IDENTITY_SIZE,
        ..Limits::default()
    };
    let document = dagcbor::decode::<IdentityDocument>(bytes, limits).ok()?;
    libp2p::PeerId::from_bytes(&document.claims.peer_id).ok()
}

#[cfg(test)]
#[path = "identity_tests.rs"]
pub(crate) mod tests;

use super::*;

fn local(name: &str, seed: u8) -> LocalIdentity {
    LocalIdentity::create(
        &Secret::new([seed; 32]),
        name,
        b"peer-id-bytes",
        1_700_000_000,
    )
    .unwrap()
}

fn resign(keys: &IdentityKeys, claims: IdentityClaims) -> IdentityDocument {
    let message = signing_message(IDENTITY_CONTEXT, &dagcbor::encode(&claims).unwrap());
    IdentityDocument {
        claims,
        signature: keys.bls().sign(&message).to_bytes().to_vec(),
        endorsement: None,
    }
}

#[test]
fn a_document_verifies_and_its_cid_is_stable() {
    let me = local("alice", 1);
    let block = Block::encode(me.identity().document()).unwrap();
    assert_eq!(block.cid(), me.cid());
    let decoded = IdentityDocument::decode_verified(block.bytes()).unwrap();
    assert_eq!(decoded, *me.identity());
    // The same seed gives the same keys, hence the same document and CID.
    assert_eq!(local("alice", 1).cid(), me.cid());
    assert_ne!(local("alice", 2).cid(), me.cid());
    assert_eq!(me.cid().codec(), crate::block::DAG_CBOR);
}

#[test]
fn tampered_claims_break_the_self_signature() {
    let me = local("alice", 1);
    let mut document = me.identity().document().clone();
    document.claims.name = "mallory".into();
    assert_eq!(document.verify(), Err(IdentityError::Signature));
    let mut document = me.identity().document().clone();
    document.claims.created_at += 1;
    assert_eq!(document.verify(), Err(IdentityError::Signature));
}

#[test]
fn a_foreign_pop_is_refused_even_when_signed() {
    let me = local("alice", 1);
    let other = local("bob", 2);
    let mut claims = me.identity().document().claims.clone();
    claims.bls_pop = other.identity().document().claims.bls_pop.clone();
    assert_eq!(resign(me.keys(), claims).verify(), Err(IdentityError::Pop));
}

#[test]
fn structural_problems_are_named() {
    let me = local("alice", 1);
    let base = me.identity().document().claims.clone();
    let cases: Vec<(IdentityClaims, IdentityError)> = vec![
        (
            IdentityClaims {
                version: 3,
                ..base.clone()
            },
            IdentityError::Version(3),
        ),
        (
            IdentityClaims {
                ed25519_public_key: None,
                ..base.clone()
            },
            IdentityError::Ed25519Key,
        ),
        (
            IdentityClaims {
                version: IDENTITY_VERSION_BLS_ONLY,
                ..base.clone()
            },
            IdentityError::Ed25519Key,
        ),
        (
            IdentityClaims {
                ed25519_public_key: Some(vec![1; 31].into()),
                ..base.clone()
            },
            IdentityError::Ed25519Key,
        ),
        (
            // The identity point: of small order, so any signature would do for it.
            IdentityClaims {
                ed25519_public_key: Some(
                    std::iter::once(1)
                        .chain([0; 31])
                        .collect::<Vec<u8>>()
                        .into(),
                ),
                ..base.clone()
            },
            IdentityError::Ed25519Key,
        ),
        (
            IdentityClaims {
                name: String::new(),
                ..base.clone()
            },
            IdentityError::Name,
        ),
        (
            IdentityClaims {
                name: "x".repeat(65),
                ..base.clone()
            },
            IdentityError::Name,
        ),
        (
            IdentityClaims {
                name: "a\nb".into(),
                ..base.clone()
            },
            IdentityError::Name,
        ),
        (
            IdentityClaims {
                peer_id: vec![],
                ..base.clone()
            },
            IdentityError::PeerId(0),
        ),
        (
            IdentityClaims {
                bls_public_key: vec![1; 47],
                ..base.clone()
            },
            IdentityError::BlsKey(bls::DecodeError::WrongLength {
                expected: 48,
                actual: 47,
            }),
        ),
        (
            IdentityClaims {
                kem_public_key: vec![1; 5],
                ..base.clone()
            },
            IdentityError::KemKey,
        ),
        (
            IdentityClaims {
                secp256k1_public_key: me
                    .keys()
                    .secp256k1()
                    .public_key()
                    .to_uncompressed()
                    .to_vec(),
                ..base.clone()
            },
            IdentityError::Secp256k1Key,
        ),
    ];
    for (claims, expected) in cases {
        assert_eq!(
            resign(me.keys(), claims).verify(),
            Err(expected.clone()),
            "{expected}"
        );
    }
}

#[test]
fn non_canonical_and_oversized_documents_are_refused() {
    let me = local("alice", 1);
    let mut bytes = Block::encode(me.identity().document())
        .unwrap()
        .into_bytes();
    bytes.push(0);
    assert!(matches!(
        IdentityDocument::decode_verified(&bytes),
        Err(IdentityError::Decode(DecodeError::TrailingBytes { .. }))
    ));
    let big = vec![0u8; MAX_IDENTITY_SIZE + 1];
    assert!(matches!(
        IdentityDocument::decode_verified(&big),
        Err(IdentityError::Decode(DecodeError::TooLarge { .. }))
    ));
}

/// Found by the `identity` fuzz target: a document with one more key in its claims decoded
/// (serde skips it) and verified (the self-signature covers the claims' encoding, which
/// leaves it out).
#[test]
fn a_document_with_a_key_added_to_its_claims_is_refused() {
    use ipld_core::ipld::Ipld;
    let me = local("alice", 1);
    let bytes = Block::encode(me.identity().document())
        .unwrap()
        .into_bytes();
    let mut document: Ipld = dagcbor::decode(&bytes, Limits::default()).unwrap();
    let Ipld::Map(top) = &mut document else {
        panic!("a document is a map")
    };
    let Some(Ipld::Map(claims)) = top.get_mut("claims") else {
        panic!("claims are a map")
    };
    claims.insert("zz".into(), Ipld::Bool(true));
    let padded = dagcbor::encode(&document).unwrap();
    assert!(matches!(
        IdentityDocument::decode_verified(&padded),
        Err(IdentityError::Decode(DecodeError::NotExact { .. }))
    ));
    IdentityDocument::decode_verified(&bytes).unwrap();
}

#[test]
fn keys_are_redacted_in_debug() {
    let me = local("alice", 1);
    let shown = format!("{me:?}");
    assert!(shown.contains("redacted"));
    let seed_hex = hex::encode(me.keys().bls().to_bytes().expose());
    assert!(!shown.contains(&seed_hex[..16]));
}

#[test]
fn an_identity_reopens_from_its_seed_and_document() {
    let seed = Secret::new([5; 32]);
    let me = LocalIdentity::create(&seed, "alice", b"peer", 1).unwrap();
    let bytes = dagcbor::encode(me.identity().document()).unwrap();
    let again = LocalIdentity::from_document(&seed, &bytes).unwrap();
    assert_eq!(again.cid(), me.cid());
    assert_eq!(
        LocalIdentity::from_document(&Secret::new([6; 32]), &bytes).unwrap_err(),
        IdentityError::NotOurs
    );
}

/// A version 1 document (no Ed25519 key) as nodes made them before version 2.
pub(crate) fn version_1(seed: u8, name: &str) -> (LocalIdentity, Vec<u8>) {
    let secret = Secret::new([seed; 32]);
    let keys = IdentityKeys::from_seed(&secret);
    let mut claims = keys.identity_document(name, b"peer", 1).unwrap().claims;
    claims.version = IDENTITY_VERSION_BLS_ONLY;
    claims.ed25519_public_key = None;
    let bytes = dagcbor::encode(&resign(&keys, claims)).unwrap();
    (
        LocalIdentity::from_document(&secret, &bytes).unwrap(),
        bytes,
    )
}

#[test]
fn a_version_1_document_still_opens_and_keeps_its_encoding() {
    let (me, bytes) = version_1(7, "old");
    assert!(me.identity().envelope_key().is_none());
    // The absent key is not encoded as null: the bytes, hence the CID, are those of the
    // version 1 layout.
    assert_eq!(dagcbor::encode(me.identity().document()).unwrap(), bytes);
    assert_eq!(
        Block::encode(me.identity().document()).unwrap().cid(),
        me.cid()
    );
    assert!(!bytes.windows(7).any(|w| w == b"ed25519"));
    // A version 2 document of the same seed has the key, and another CID.
    let new = LocalIdentity::create(&Secret::new([7; 32]), "old", b"peer", 1).unwrap();
    assert_eq!(
        new.identity().envelope_key(),
        Some(&new.keys().ed25519().public_key())
    );
    assert_ne!(new.cid(), me.cid());
}

fn rotated(me: &LocalIdentity, seed: u8, at: u64) -> LocalIdentity {
    me.rotate(&Secret::new([seed; 32]), at).unwrap()
}

fn bytes_of(identity: &VerifiedIdentity) -> Vec<u8> {
    dagcbor::encode(identity.document()).unwrap()
}

#[test]
fn a_rotation_keeps_the_identity_and_checks_against_the_document_it_replaces() {
    let first = local("alice", 1);
    let second = rotated(&first, 2, 1_700_000_100_000);
    let third = rotated(&second, 3, 1_700_000_200_000);
    // The name stays the first document's CID; each document has its own.
    assert_eq!(third.cid(), first.cid());
    assert_eq!(third.identity().sequence(), 2);
    assert_ne!(
        third.identity().document_cid(),
        second.identity().document_cid()
    );
    assert_eq!(
        third.identity().document_cid(),
        Block::encode(third.identity().document()).unwrap().cid()
    );
    assert_ne!(third.identity().bls_key(), first.identity().bls_key());
    assert_eq!(third.retired().len(), 2);
    // Alone, a rotated document is not trusted; after the one it replaces, it is.
    let document = third.identity().document().clone();
    assert_eq!(document.clone().verify(), Err(IdentityError::Unlinked));
    let chain = [
        bytes_of(first.identity()),
        bytes_of(second.identity()),
        bytes_of(third.identity()),
    ];
    let chain: Vec<&[u8]> = chain.iter().map(Vec::as_slice).collect();
    let verified = verify_chain(&chain).unwrap();
    assert_eq!(verified, *third.identity());
    // Out of order, or with a link missing, it is refused.
    assert!(verify_chain(&[chain[0], chain[2]]).is_err());
    assert!(verify_chain(&[chain[1], chain[2]]).is_err());
    // The seed of the newest keys reopens it; another does not.
    let reopened = LocalIdentity::from_chain(&Secret::new([3; 32]), &chain, vec![]).unwrap();
    assert_eq!(reopened.identity(), third.identity());
    assert_eq!(
        LocalIdentity::from_chain(&Secret::new([2; 32]), &chain, vec![]).err(),
        Some(IdentityError::NotOurs)
    );
    // The claimed identity of a rotated document is the first document's CID.
    assert_eq!(claimed_identity(chain[2]), first.cid());
    assert_eq!(claimed_identity(chain[0]), first.cid());
}

#[test]
fn each_key_state_counts_from_its_rotations_time_to_the_millisecond() {
    let first = local("alice", 1);
    let second = rotated(&first, 2, 1_700_000_100_000);
    let third = rotated(&second, 3, 1_700_000_200_000);
    let identity = third.identity();
    let state = |ms: u64| identity.as_of(ms).document_cid();
    assert_eq!(state(1_700_000_050_000), first.identity().document_cid());
    assert_eq!(state(1_700_000_099_999), first.identity().document_cid());
    // Within the second of the rotation, before it, the old keys still hold.
    let third_too = rotated(&second, 4, 1_700_000_200_500);
    assert_eq!(
        third_too.identity().as_of(1_700_000_200_400).document_cid(),
        second.identity().document_cid()
    );
    assert_eq!(state(1_700_000_100_000), second.identity().document_cid());
    assert_eq!(state(1_700_000_200_000), third.identity().document_cid());
    assert_eq!(state(0), first.identity().document_cid());
    assert_eq!(identity.key_states().count(), 3);
    assert!(identity.key_states().all(|s| s.cid() == first.cid()));
}

#[test]
fn a_rotation_not_endorsed_by_the_replaced_keys_or_misplaced_is_refused() {
    let first = local("alice", 1);
    let other = local("mallory", 9);
    let second = rotated(&first, 2, 1_700_000_100_000);
    let document = second.identity().document().clone();
    // Endorsed by another identity's keys.
    let mut forged = document.clone();
    let message = signing_message(ROTATION_CONTEXT, &dagcbor::encode(&forged.claims).unwrap());
    forged.endorsement = Some(other.keys().bls().sign(&message).to_bytes().to_vec().into());
    assert_eq!(
        forged.verify_successor(first.identity()),
        Err(IdentityError::Succession(
            "the replaced keys did not endorse it"
        ))
    );
    // Without an endorsement.
    let mut bare = document.clone();
    bare.endorsement = None;
    assert_eq!(
        bare.verify_successor(first.identity()),
        Err(IdentityError::Succession("it carries no endorsement"))
    );
    // Checked against another identity, or against itself.
    assert_eq!(
        document.clone().verify_successor(other.identity()),
        Err(IdentityError::Succession("it names another identity"))
    );
    assert!(
        document
            .clone()
            .verify_successor(second.identity())
            .is_err()
    );
    // Claims changed after the endorsement (a new number, say) break it.
    let mut renumbered = document.clone();
    if let Some(succession) = renumbered.claims.succeeds.as_mut() {
        succession.sequence = 1;
    }
    renumbered.claims.created_at += 1;
    assert_eq!(
        renumbered.verify_successor(first.identity()),
        Err(IdentityError::Succession(
            "the replaced keys did not endorse it"
        ))
    );
    // A first document is no rotation.
    assert_eq!(
        first
            .identity()
            .document()
            .clone()
            .verify_successor(first.identity()),
        Err(IdentityError::Succession("it is no rotated document"))
    );
}

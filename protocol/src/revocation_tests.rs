use super::*;
use crate::identity::LocalIdentity;
use dta_crypto::Secret;

fn node(seed: u8) -> (LocalIdentity, Keypair) {
    let operator = Keypair::ed25519_from_bytes([seed; 32]).unwrap();
    let local = LocalIdentity::create(
        &Secret::new([seed; 32]),
        "alice",
        &operator.public().to_peer_id().to_bytes(),
        1_700_000_000,
    )
    .unwrap();
    (local, operator)
}

fn decoded(made: &VerifiedRevocation) -> Revocation {
    Revocation::decode(made.bytes()).unwrap()
}

#[test]
fn an_identity_revokes_itself_and_peers_verify_it() {
    let (me, _) = node(1);
    let made =
        Revocation::by_identity(me.keys(), me.cid(), 1_700_000_000_123, "key leaked").unwrap();
    let checked = decoded(&made).verify(me.identity()).unwrap();
    assert_eq!(checked, made);
    assert_eq!(checked.revoked(), me.cid());
    assert_eq!(checked.at(), 1_700_000_000_123);
    assert_eq!(checked.reason(), "key leaked");
    assert_eq!(checked.revoker(), Revoker::Identity);
    assert_eq!(checked.cid(), Block::encode(&decoded(&made)).unwrap().cid());
}

#[test]
fn the_operator_of_the_identitys_node_revokes_it_and_no_other_operator_can() {
    let (me, operator) = node(1);
    let (_, stranger) = node(2);
    let made = Revocation::by_operator(&operator, me.cid(), 5, "").unwrap();
    let checked = decoded(&made).verify(me.identity()).unwrap();
    assert_eq!(checked.revoker(), Revoker::Operator);
    let forged = Revocation::by_operator(&stranger, me.cid(), 5, "").unwrap();
    assert_eq!(
        decoded(&forged).verify(me.identity()),
        Err(RevocationError::NotTheOperator)
    );
    // The operator's key named, but the signature made by another.
    let mut swapped = decoded(&forged);
    swapped.claims.operator_key = Some(operator.public().encode_protobuf().into());
    assert_eq!(
        swapped.verify(me.identity()),
        Err(RevocationError::Signature)
    );
}

#[test]
fn another_identitys_revocation_or_a_changed_claim_is_refused() {
    let (me, _) = node(1);
    let (other, _) = node(2);
    let made = Revocation::by_identity(other.keys(), other.cid(), 5, "").unwrap();
    assert!(matches!(
        decoded(&made).verify(me.identity()),
        Err(RevocationError::WrongIdentity { .. })
    ));
    // Signed by another identity's key, naming mine.
    let forged = Revocation::by_identity(other.keys(), me.cid(), 5, "").unwrap();
    assert_eq!(
        decoded(&forged).verify(me.identity()),
        Err(RevocationError::Signature)
    );
    let mine = Revocation::by_identity(me.keys(), me.cid(), 5, "lost").unwrap();
    let mut later = decoded(&mine);
    later.claims.at = 6;
    assert_eq!(later.verify(me.identity()), Err(RevocationError::Signature));
    let mut version = decoded(&mine);
    version.claims.version = 2;
    assert_eq!(
        version.verify(me.identity()),
        Err(RevocationError::Version(2))
    );
}

#[test]
fn a_bad_reason_is_refused_when_made_and_when_checked() {
    let (me, _) = node(1);
    let long = "x".repeat(MAX_REASON_LEN + 1);
    assert_eq!(
        Revocation::by_identity(me.keys(), me.cid(), 5, &long).err(),
        Some(RevocationError::Reason)
    );
    assert_eq!(
        Revocation::by_identity(me.keys(), me.cid(), 5, "a\nb").err(),
        Some(RevocationError::Reason)
    );
    let made = Revocation::by_identity(me.keys(), me.cid(), 5, "").unwrap();
    let mut changed = decoded(&made);
    changed.claims.reason = "\u{7}".into();
    assert_eq!(changed.verify(me.identity()), Err(RevocationError::Reason));
}

#[test]
fn bytes_that_are_not_a_revocation_do_not_decode() {
    let (me, _) = node(1);
    let document = dagcbor::encode(me.identity().document()).unwrap();
    assert!(matches!(
        Revocation::decode(&document),
        Err(RevocationError::Decode(_))
    ));
    assert!(Revocation::decode(&[0xa0]).is_err());
    let made = Revocation::by_identity(me.keys(), me.cid(), 5, "").unwrap();
    let mut bytes = made.bytes().to_vec();
    bytes.push(0);
    assert!(Revocation::decode(&bytes).is_err());
    // Nor is a revocation an identity document.
    assert!(crate::identity::IdentityDocument::decode_verified(made.bytes()).is_err());
}

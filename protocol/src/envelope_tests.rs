use dta_crypto::Secret;
use proptest::prelude::*;

use super::*;
use crate::identity::LocalIdentity;

fn node(name: &str, seed: u8) -> LocalIdentity {
    LocalIdentity::create(&Secret::new([seed; 32]), name, name.as_bytes(), 1).unwrap()
}

struct World {
    principal: LocalIdentity,
    fiduciaries: Vec<LocalIdentity>,
    outsider: LocalIdentity,
}

fn world() -> World {
    World {
        principal: node("principal", 1),
        fiduciaries: (0..3)
            .map(|i| node(&format!("fiduciary-{i}"), 10 + i))
            .collect(),
        outsider: node("outsider", 99),
    }
}

fn sealed_envelope(w: &World, secret: &[u8], public: Option<Vec<u8>>) -> SignedEnvelope {
    let recipients: Vec<&VerifiedIdentity> = w.fiduciaries.iter().map(|f| f.identity()).collect();
    SignedEnvelope::create(
        &w.principal,
        Draft {
            kind: Kind::ShareDeal,
            order: "order-1",
            prev: Some(w.principal.cid()),
            timestamp: 1_700_000_000_000,
            public,
            secret: Some(secret),
            recipients: &recipients,
        },
    )
    .unwrap()
}

#[test]
fn recipients_open_and_outsiders_cannot() {
    let w = world();
    let signed = sealed_envelope(&w, b"share bytes", None);
    let block = signed.to_block().unwrap();
    let decoded = SignedEnvelope::decode(block.bytes()).unwrap();
    let verified = decoded.verify(w.principal.identity()).unwrap();
    for fiduciary in &w.fiduciaries {
        assert_eq!(verified.open(fiduciary).unwrap().as_slice(), b"share bytes");
    }
    assert_eq!(
        verified.open(&w.outsider),
        Err(EnvelopeError::NotARecipient(w.outsider.cid().to_string()))
    );
    assert_eq!(
        verified.open(&w.principal),
        Err(EnvelopeError::NotARecipient(w.principal.cid().to_string()))
    );
}

#[test]
fn envelopes_from_one_sender_share_an_encapsulation_yet_each_opens_alone() {
    let w = world();
    let first = sealed_envelope(&w, b"first share", None);
    let second = sealed_envelope(&w, b"second share", None);
    for (a, b) in first
        .envelope
        .recipients
        .iter()
        .zip(&second.envelope.recipients)
    {
        assert_eq!(
            a.kem_ciphertext, b.kem_ciphertext,
            "one encapsulation per recipient"
        );
        assert_eq!(a.wrapped_key.len(), seal::SALTED_WRAPPED_KEY_LEN);
        assert_ne!(
            a.wrapped_key, b.wrapped_key,
            "each content key wrapped on its own"
        );
    }
    let (first, second) = (
        first.verify(w.principal.identity()).unwrap(),
        second.verify(w.principal.identity()).unwrap(),
    );
    for fiduciary in &w.fiduciaries {
        assert_eq!(first.open(fiduciary).unwrap().as_slice(), b"first share");
        assert_eq!(second.open(fiduciary).unwrap().as_slice(), b"second share");
        // Revealing one envelope's content key opens that envelope and not the other.
        let key = second.content_key(fiduciary).unwrap();
        assert!(first.signed().open_with_content_key(&key).is_err());
    }
    // The same node made again (a restart) has no session and encapsulates afresh.
    let restarted = World {
        principal: node("principal", 1),
        ..world()
    };
    let third = sealed_envelope(&restarted, b"third share", None);
    assert_ne!(
        third.envelope.recipients[0].kem_ciphertext,
        first.envelope().recipients[0].kem_ciphertext
    );
}

#[test]
fn a_recipient_list_that_was_rewritten_does_not_open() {
    // An attacker with a valid signature cannot relabel an encapsulation to another node:
    // the signature breaks, and even a re-signed copy fails the AEAD header check.
    let w = world();
    let mut signed = sealed_envelope(&w, b"s", None);
    signed.envelope.recipients[0].identity = w.outsider.cid();
    assert_eq!(
        signed.clone().verify(w.principal.identity()),
        Err(EnvelopeError::BadSignature)
    );
}

#[test]
fn verification_needs_the_right_sender() {
    let w = world();
    let signed = sealed_envelope(&w, b"s", None);
    assert_eq!(
        signed.verify(w.outsider.identity()),
        Err(EnvelopeError::WrongSender {
            claimed: w.principal.cid().to_string(),
            given: w.outsider.cid().to_string()
        })
    );
}

#[test]
fn public_only_envelopes_carry_no_seal() {
    let w = world();
    let payload = crate::dagcbor::encode(&vec![1u64, 2, 3]).unwrap();
    let signed = SignedEnvelope::create(
        &w.principal,
        Draft {
            kind: Kind::OrderRequest,
            order: "order-1",
            prev: None,
            timestamp: 5,
            public: Some(payload),
            secret: None,
            recipients: &[],
        },
    )
    .unwrap();
    let verified = signed.verify(w.principal.identity()).unwrap();
    assert_eq!(
        verified.public_payload::<Vec<u64>>().unwrap(),
        Some(vec![1, 2, 3])
    );
    assert_eq!(
        verified.open(&w.principal),
        Err(EnvelopeError::NothingSealed)
    );
}

#[test]
fn malformed_drafts_are_refused() {
    let w = world();
    let draft =
        |secret: Option<&'static [u8]>, order: &'static str, public: Option<Vec<u8>>| Draft {
            kind: Kind::Receipt,
            order,
            prev: None,
            timestamp: 0,
            public,
            secret,
            recipients: &[],
        };
    assert_eq!(
        SignedEnvelope::create(&w.principal, draft(Some(b"x"), "o", None)),
        Err(EnvelopeError::SealMismatch)
    );
    assert_eq!(
        SignedEnvelope::create(&w.principal, draft(None, "", None)),
        Err(EnvelopeError::OrderRef)
    );
    assert!(matches!(
        SignedEnvelope::create(&w.principal, draft(None, "o", Some(vec![0xff]))),
        Err(EnvelopeError::PublicPayload(_))
    ));
    let twice = [w.fiduciaries[0].identity(), w.fiduciaries[0].identity()];
    assert_eq!(
        SignedEnvelope::create(
            &w.principal,
            Draft {
                secret: Some(b"x"),
                recipients: &twice,
                ..draft(None, "o", None)
            }
        ),
        Err(EnvelopeError::DuplicateRecipient(
            w.fiduciaries[0].cid().to_string()
        ))
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Encoding then decoding gives back the same envelope, and the CID depends only on it.
    #[test]
    fn round_trip_and_cid_stability(secret in proptest::collection::vec(any::<u8>(), 0..512),
                                    public in proptest::option::of(proptest::collection::vec(any::<u64>(), 0..8))) {
        let w = world();
        let public = public.map(|p| crate::dagcbor::encode(&p).unwrap());
        let signed = sealed_envelope(&w, &secret, public);
        let block = signed.to_block().unwrap();
        let decoded = SignedEnvelope::decode(block.bytes()).unwrap();
        prop_assert_eq!(&decoded, &signed);
        prop_assert_eq!(decoded.to_block().unwrap().cid(), block.cid());
        let verified = decoded.verify(w.principal.identity()).unwrap();
        let opened = verified.open(&w.fiduciaries[2]).unwrap();
        prop_assert_eq!(opened.as_slice(), secret.as_slice());
    }

    /// Flipping any single bit of a signed envelope's block makes it fail: it no longer
    /// decodes, no longer verifies, or no longer opens.
    #[test]
    fn any_flipped_byte_is_rejected(position in any::<proptest::sample::Index>(), bit in 0u8..8) {
        let w = world();
        let signed = sealed_envelope(&w, b"a secret share", Some(crate::dagcbor::encode(&7u64).unwrap()));
        let mut bytes = signed.to_block().unwrap().into_bytes();
        let at = position.index(bytes.len());
        bytes[at] ^= 1 << bit;
        let accepted = SignedEnvelope::decode(&bytes)
            .ok()
            .and_then(|e| e.verify(w.principal.identity()).ok())
            .and_then(|v| v.open(&w.fiduciaries[0]).ok());
        prop_assert!(accepted.is_none(), "flipped bit {} of byte {} was accepted", bit, at);
    }

    /// Whoever is not listed cannot open, whatever the payload.
    #[test]
    fn unlisted_nodes_cannot_open(secret in proptest::collection::vec(any::<u8>(), 1..256), seed in 100u8..200) {
        let w = world();
        let stranger = node("stranger", seed);
        let verified = sealed_envelope(&w, &secret, None).verify(w.principal.identity()).unwrap();
        prop_assert_eq!(verified.open(&stranger), Err(EnvelopeError::NotARecipient(stranger.cid().to_string())));
        // Even claiming a listed CID does not help without the listed node's key.
        let header_as_listed = verified.envelope().header(
            verified.envelope().recipients.iter().map(|r| &r.identity).collect()).unwrap();
        let entry = &verified.envelope().recipients[0];
        let attempt = seal::open(
            &header_as_listed,
            verified.envelope().ciphertext.as_ref().unwrap(),
            &Encapsulation { kem_ciphertext: entry.kem_ciphertext.clone(), wrapped_key: entry.wrapped_key.clone() },
            stranger.keys().kem(),
        );
        prop_assert_eq!(attempt, Err(OpenError::NotForThisKey));
    }
}

fn chained(sender: &LocalIdentity, prev: Option<Cid>, kind: Kind) -> Vec<u8> {
    SignedEnvelope::create(
        sender,
        Draft {
            kind,
            order: "order-1",
            prev,
            timestamp: 1_700_000_000_000,
            public: None,
            secret: None,
            recipients: &[],
        },
    )
    .unwrap()
    .to_block()
    .unwrap()
    .into_bytes()
}

fn cid(bytes: &[u8]) -> Cid {
    crate::block::cid_of(crate::block::DAG_CBOR, bytes)
}

#[test]
fn a_bundle_is_one_senders_prev_chain_checked_by_its_newest_signature() {
    let w = world();
    let order = chained(&w.principal, None, Kind::OrderRequest);
    let commitment = chained(&w.principal, Some(cid(&order)), Kind::Commitment);
    let deal = chained(&w.principal, Some(cid(&commitment)), Kind::ShareDeal);
    let blocks = vec![order.clone(), commitment.clone(), deal.clone()];
    assert!(Bundle::links(&order, &commitment) && Bundle::links(&commitment, &deal));
    assert!(!Bundle::links(&order, &deal));

    let bundle = Bundle::decode(&blocks).unwrap();
    assert_eq!(bundle.sender(), w.principal.cid());
    let verified = bundle.verify(w.principal.identity()).unwrap();
    let cids: Vec<Cid> = verified.iter().map(|(c, _)| *c).collect();
    assert_eq!(cids, vec![cid(&order), cid(&commitment), cid(&deal)]);
    assert_eq!(
        Bundle::decode(&blocks)
            .unwrap()
            .verify(w.outsider.identity())
            .unwrap_err(),
        EnvelopeError::WrongSender {
            claimed: w.principal.cid().to_string(),
            given: w.outsider.cid().to_string(),
        }
    );

    // Out of order, with a gap, or from two senders: refused before any signature check.
    let refused = |blocks: Vec<Vec<u8>>| {
        assert!(matches!(
            Bundle::decode(&blocks),
            Err(EnvelopeError::Bundle(_))
        ));
    };
    refused(vec![commitment.clone(), order.clone()]);
    refused(vec![order.clone(), deal.clone()]);
    let foreign = chained(
        &w.fiduciaries[0],
        Some(cid(&deal)),
        Kind::CommitmentSignature,
    );
    refused(vec![deal.clone(), foreign]);
    refused(Vec::new());
    refused(vec![order.clone(); MAX_BUNDLE + 1]);

    // An older block swapped for another one breaks the link to it.
    let other_order = chained(&w.principal, None, Kind::Receipt);
    refused(vec![other_order, commitment.clone(), deal.clone()]);
    // A forged newest signature fails the whole bundle.
    let mut forged = SignedEnvelope::decode(&deal).unwrap();
    forged.signature = SignedEnvelope::decode(&commitment).unwrap().signature;
    let forged = forged.to_block().unwrap().into_bytes();
    let bundle = Bundle::decode(&[order, commitment, forged]).unwrap();
    assert_eq!(
        bundle.verify(w.principal.identity()).unwrap_err(),
        EnvelopeError::BadSignature
    );
}

#[test]
fn a_commitment_signature_envelope_is_the_custody_signature() {
    let w = world();
    let commitment = cid(&chained(&w.principal, None, Kind::Commitment));
    let fiduciary = &w.fiduciaries[0];
    let signed = SignedEnvelope::create(
        fiduciary,
        Draft {
            kind: Kind::CommitmentSignature,
            order: "order-1",
            prev: Some(commitment),
            timestamp: 1_700_000_000_000,
            public: None,
            secret: None,
            recipients: &[],
        },
    )
    .unwrap();
    assert_eq!(
        signed.envelope.timestamp, 0,
        "nothing but the commitment is signed"
    );
    let signature = bls::Signature::from_bytes(&signed.signature).unwrap();
    fiduciary
        .identity()
        .bls_key()
        .public_key()
        .verify(&crate::order::custody_message(&commitment), &signature)
        .unwrap();
    // Rebuilt from its parts, it is the same block, and it verifies as an envelope.
    let rebuilt = SignedEnvelope::custody_signature(
        fiduciary.cid(),
        "order-1",
        commitment,
        signed.signature.clone(),
    )
    .unwrap();
    assert_eq!(
        rebuilt.to_block().unwrap().bytes(),
        signed.to_block().unwrap().bytes()
    );
    rebuilt.clone().verify(fiduciary.identity()).unwrap();
    assert_eq!(
        rebuilt
            .clone()
            .verify(w.fiduciaries[1].identity())
            .unwrap_err(),
        EnvelopeError::WrongSender {
            claimed: fiduciary.cid().to_string(),
            given: w.fiduciaries[1].cid().to_string(),
        }
    );
    // Another commitment, a payload or a timestamp: refused.
    let mut moved = rebuilt.clone();
    moved.envelope.prev = Some(cid(b"other"));
    assert_eq!(
        moved.verify(fiduciary.identity()).unwrap_err(),
        EnvelopeError::BadSignature
    );
    let mut padded = rebuilt.clone();
    padded.envelope.public = Some(ByteBuf::from(vec![0xa0]));
    assert_eq!(
        padded.check_structure().unwrap_err(),
        EnvelopeError::CustodySignatureShape
    );
    let mut dated = rebuilt;
    dated.envelope.timestamp = 1;
    assert_eq!(
        dated.check_structure().unwrap_err(),
        EnvelopeError::CustodySignatureShape
    );
}

fn public_draft(kind: Kind) -> Draft<'static> {
    Draft {
        kind,
        order: "order-1",
        prev: None,
        timestamp: 1_700_000_000_000,
        public: None,
        secret: None,
        recipients: &[],
    }
}

#[test]
fn the_senders_identity_fixes_the_signature_scheme() {
    let w = world();
    // A version 2 identity signs with Ed25519, checked against the key in its document.
    let signed = SignedEnvelope::create(&w.principal, public_draft(Kind::OrderRequest)).unwrap();
    assert_eq!(signed.signature.len(), ed25519::SIGNATURE_LEN);
    let message = signed.signed_message().unwrap();
    w.principal
        .identity()
        .envelope_key()
        .unwrap()
        .verify(&message, &signed.signature)
        .unwrap();
    let block = signed.to_block().unwrap();
    SignedEnvelope::decode(block.bytes())
        .unwrap()
        .verify(w.principal.identity())
        .unwrap();
    // A BLS signature by the same sender over the same envelope is refused: the scheme is
    // not the signer's choice.
    let downgraded = SignedEnvelope {
        signature: w.principal.keys().bls().sign(&message).to_bytes().to_vec(),
        ..signed.clone()
    };
    assert_eq!(
        downgraded.verify(w.principal.identity()),
        Err(EnvelopeError::MalformedSignature)
    );

    // A version 1 identity keeps signing with BLS, and its envelopes still verify.
    let (old, _) = crate::identity::tests::version_1(42, "old");
    let signed = SignedEnvelope::create(&old, public_draft(Kind::OrderRequest)).unwrap();
    assert_eq!(signed.signature.len(), bls::SIGNATURE_LEN);
    signed.clone().verify(old.identity()).unwrap();
    let forged = SignedEnvelope {
        signature: old
            .keys()
            .ed25519()
            .sign(&signed.signed_message().unwrap())
            .to_vec(),
        ..signed
    };
    assert_eq!(
        forged.verify(old.identity()),
        Err(EnvelopeError::MalformedSignature)
    );
}

#[test]
fn a_commitment_signature_is_bls_whatever_the_identity() {
    let w = world();
    let mut draft = public_draft(Kind::CommitmentSignature);
    draft.prev = Some(w.principal.cid());
    let signed = SignedEnvelope::create(&w.fiduciaries[0], draft).unwrap();
    assert_eq!(signed.signature.len(), bls::SIGNATURE_LEN);
    // An Ed25519-sized signature on one does not even decode.
    let short = SignedEnvelope {
        signature: vec![0; ed25519::SIGNATURE_LEN],
        ..signed
    };
    assert_eq!(
        SignedEnvelope::decode(short.to_block().unwrap().bytes()),
        Err(EnvelopeError::MalformedSignature)
    );
}

/// `bytes` (a map of maps) with one more key, `"zz": 0`, in the map under `path`.
fn with_a_key_added(bytes: &[u8], path: &[&str]) -> Vec<u8> {
    use ipld_core::ipld::Ipld;
    let mut document: Ipld = dagcbor::decode(bytes, Limits::default()).unwrap();
    let mut map = &mut document;
    for key in path {
        let Ipld::Map(entries) = map else {
            panic!("{key} is not under a map")
        };
        map = entries.get_mut(*key).unwrap();
    }
    let Ipld::Map(entries) = map else {
        panic!("not a map")
    };
    entries.insert("zz".into(), Ipld::Integer(0));
    dagcbor::encode(&document).unwrap()
}

/// Found by the `identity` fuzz target, which showed that serde skips map keys a type does
/// not have. The signature covers the envelope's encoding, which leaves such a key out, so an
/// envelope with a key added still verified, and a bundle named it by the hash of the bytes
/// it received: anyone relaying a signed envelope could give it a second CID.
#[test]
fn an_envelope_with_a_key_added_is_refused_and_keeps_its_one_cid() {
    let w = world();
    let bytes = chained(&w.principal, None, Kind::OrderRequest);
    for path in [&[][..], &["envelope"][..]] {
        let padded = with_a_key_added(&bytes, path);
        assert_ne!(cid(&padded), cid(&bytes));
        let err = SignedEnvelope::decode(&padded).unwrap_err();
        assert!(
            matches!(err, EnvelopeError::Decode(DecodeError::NotExact { .. })),
            "{path:?}: {err:?}"
        );
        // What the decode of bytes seen before skips: it takes the padded copy as the same
        // envelope, so it never judges bytes that arrive.
        assert_eq!(
            SignedEnvelope::decode_seen(&padded).unwrap(),
            SignedEnvelope::decode(&bytes).unwrap()
        );
        assert!(Bundle::decode_seen(&[&padded]).is_ok());
        let err = Bundle::decode(&[padded]).unwrap_err();
        assert!(
            matches!(err, EnvelopeError::Decode(DecodeError::NotExact { .. })),
            "{err}"
        );
    }
    SignedEnvelope::decode(&bytes)
        .unwrap()
        .verify(w.principal.identity())
        .unwrap();
}

#[test]
fn a_kinds_name_is_what_it_serialises_to() {
    for kind in [
        Kind::OrderRequest,
        Kind::ShareDeal,
        Kind::KeyShare,
        Kind::Commitment,
        Kind::CommitmentSignature,
        Kind::Certificate,
        Kind::ReleaseRequest,
        Kind::ShareRelease,
        Kind::Receipt,
        Kind::MpinRequest,
        Kind::MpinShare,
        Kind::Approval,
        Kind::Veto,
        Kind::DkgCommitment,
        Kind::DkgRound,
        Kind::DkgShare,
        Kind::DkgComplaint,
        Kind::DkgAbort,
        Kind::DkgAbandon,
        Kind::ReshareRequest,
        Kind::ReshareDeal,
        Kind::ShareDeleted,
        Kind::ReshareComplaint,
        Kind::SignRequest,
        Kind::SignCommitment,
        Kind::SignPackage,
        Kind::SignatureShare,
        Kind::Signature,
        Kind::PartialSignature,
    ] {
        assert_eq!(
            crate::dagcbor::encode(&kind).unwrap(),
            crate::dagcbor::encode(&kind.name()).unwrap(),
            "{kind:?}"
        );
    }
}

#[test]
fn after_a_rotation_old_envelopes_verify_with_the_old_keys_and_new_ones_with_the_new() {
    let w = world();
    // Envelopes of w are made at 1_700_000_000_000 ms; the principal rotates later.
    let before = sealed_envelope(&w, b"share bytes", None);
    let principal = w
        .principal
        .rotate(&Secret::new([2; 32]), 1_700_000_100_000)
        .unwrap();
    let verified = before.clone().verify(principal.identity()).unwrap();
    // A fiduciary that rotated before the envelope reached it still opens it.
    let fiduciary = w.fiduciaries[0]
        .rotate(&Secret::new([20; 32]), 1_700_000_100_000)
        .unwrap();
    assert_eq!(
        verified.open(&fiduciary).unwrap().as_slice(),
        b"share bytes"
    );
    // The old keys signing after the rotation are refused; the new keys are taken.
    let draft = |timestamp| Draft {
        kind: Kind::Approval,
        order: "order-1",
        prev: None,
        timestamp,
        public: None,
        secret: None,
        recipients: &[],
    };
    let late = SignedEnvelope::create(&w.principal, draft(1_700_000_200_000)).unwrap();
    assert_eq!(
        late.verify(principal.identity()),
        Err(EnvelopeError::BadSignature)
    );
    let fresh = SignedEnvelope::create(&principal, draft(1_700_000_200_000)).unwrap();
    assert!(fresh.verify(principal.identity()).is_ok());
    // And the new keys cannot sign as of before the rotation.
    let backdated = SignedEnvelope::create(&principal, draft(1_700_000_000_000)).unwrap();
    assert_eq!(
        backdated.verify(principal.identity()),
        Err(EnvelopeError::BadSignature)
    );
}

#[test]
fn a_batch_signature_envelope_is_the_custody_signature_over_its_root() {
    let w = world();
    let fiduciary = &w.fiduciaries[0];
    let leaves: Vec<Cid> = (0..3u8)
        .map(|i| crate::block::Block::raw(vec![i; 4]).cid())
        .collect();
    let tree = crate::batch::BatchTree::new(&leaves).unwrap();
    let payload = dagcbor::encode(&crate::batch::BatchRoot::new(&tree.root())).unwrap();
    let draft = |public: Option<Vec<u8>>| Draft {
        kind: Kind::BatchSignature,
        order: "batch-1",
        prev: Some(w.principal.cid()),
        timestamp: 1_700_000_000_000,
        public,
        secret: None,
        recipients: &[],
    };
    let signed = SignedEnvelope::create(fiduciary, draft(Some(payload.clone()))).unwrap();
    assert_eq!(signed.envelope.timestamp, 0);
    assert_eq!(signed.signature.len(), bls::SIGNATURE_LEN);
    assert_eq!(signed.batch_root(), Some(tree.root()));
    let signature = bls::Signature::from_bytes(&signed.signature).unwrap();
    fiduciary
        .identity()
        .bls_key()
        .public_key()
        .verify(&tree.message(), &signature)
        .unwrap();
    let decoded = SignedEnvelope::decode(signed.to_block().unwrap().bytes()).unwrap();
    assert!(decoded.clone().verify(fiduciary.identity()).is_ok());

    // Another root under the same signature does not verify.
    let other = crate::batch::BatchTree::new(&leaves[..2]).unwrap();
    let moved = SignedEnvelope {
        envelope: Envelope {
            public: Some(ByteBuf::from(
                dagcbor::encode(&crate::batch::BatchRoot::new(&other.root())).unwrap(),
            )),
            ..decoded.envelope.clone()
        },
        ..decoded.clone()
    };
    assert_eq!(
        moved.verify(fiduciary.identity()).unwrap_err(),
        EnvelopeError::BadSignature
    );
    // Without a root, or with a short one, it is no batch signature.
    assert_eq!(
        SignedEnvelope::create(fiduciary, draft(None)).unwrap_err(),
        EnvelopeError::BatchSignatureShape
    );
    let short = dagcbor::encode(&crate::batch::BatchRoot {
        root: ByteBuf::from(vec![0; 31]),
    })
    .unwrap();
    assert_eq!(
        SignedEnvelope::create(fiduciary, draft(Some(short))).unwrap_err(),
        EnvelopeError::BatchSignatureShape
    );
    let unlinked = Draft {
        prev: None,
        ..draft(Some(payload))
    };
    assert_eq!(
        SignedEnvelope::create(fiduciary, unlinked).unwrap_err(),
        EnvelopeError::BatchSignatureShape
    );
}

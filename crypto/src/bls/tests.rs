use std::path::PathBuf;

use serde::Deserialize;

use super::*;

/// The vector file: `DTA_BLS_VECTORS` if set, else the shared third-party set.
fn vector_path() -> PathBuf {
    match std::env::var_os("DTA_BLS_VECTORS") {
        Some(path) => PathBuf::from(path),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../shared/vectors/bls/pop-ciphersuite.json"),
    }
}

#[derive(Deserialize)]
struct Vectors {
    ciphersuite: String,
    cases: Cases,
}

#[derive(Deserialize)]
struct Cases {
    sign: Vec<SignCase>,
    verify: Vec<VerifyCase>,
    pop: Vec<PopCase>,
    fast_aggregate_verify: Vec<FastAggregateCase>,
    aggregate_verify: Vec<AggregateCase>,
}

#[derive(Deserialize)]
struct SignCase {
    privkey: String,
    message: String,
    signature: String,
}

#[derive(Deserialize)]
struct VerifyCase {
    pubkey: String,
    message: String,
    signature: String,
    valid: bool,
}

#[derive(Deserialize)]
struct PopCase {
    pubkey: String,
    proof: String,
    valid: bool,
}

#[derive(Deserialize)]
struct FastAggregateCase {
    pubkeys: Vec<String>,
    message: String,
    signature: String,
    valid: bool,
}

#[derive(Deserialize)]
struct AggregateCase {
    pubkeys: Vec<String>,
    messages: Vec<String>,
    signature: String,
    valid: bool,
}

fn unhex(s: &str) -> Vec<u8> {
    hex::decode(s).expect("vector hex")
}

fn load() -> Vectors {
    let path = vector_path();
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read BLS vectors at {}: {e}", path.display()));
    serde_json::from_str(&text).expect("BLS vector file has the documented shape")
}

#[test]
fn vectors_are_for_our_ciphersuite() {
    let vectors = load();
    assert_eq!(
        vectors.ciphersuite,
        "BLS_SIG_BLS12381G2_XMD:SHA-256_SSWU_RO_POP_"
    );
    let total = vectors.cases.sign.len()
        + vectors.cases.verify.len()
        + vectors.cases.pop.len()
        + vectors.cases.fast_aggregate_verify.len()
        + vectors.cases.aggregate_verify.len();
    assert!(total > 0, "the vector file has no cases");
}

#[test]
fn sign_vectors() {
    let cases = load().cases.sign;
    assert!(!cases.is_empty());
    for (i, case) in cases.iter().enumerate() {
        let key = SecretKey::from_bytes(&unhex(&case.privkey)).expect("vector key");
        let signature = key.sign(&unhex(&case.message));
        assert_eq!(
            hex::encode(signature.to_bytes()),
            case.signature,
            "sign case {i}"
        );
        key.public_key()
            .verify(&unhex(&case.message), &signature)
            .expect("own signature verifies");
    }
}

#[test]
fn verify_vectors() {
    let cases = load().cases.verify;
    assert!(!cases.is_empty());
    for (i, case) in cases.iter().enumerate() {
        let result = PublicKey::from_bytes(&unhex(&case.pubkey))
            .ok()
            .zip(Signature::from_bytes(&unhex(&case.signature)).ok())
            .map(|(key, sig)| key.verify(&unhex(&case.message), &sig).is_ok())
            .unwrap_or(false);
        assert_eq!(result, case.valid, "verify case {i}");
    }
}

#[test]
fn pop_vectors() {
    let cases = load().cases.pop;
    assert!(!cases.is_empty());
    for (i, case) in cases.iter().enumerate() {
        let result = PublicKey::from_bytes(&unhex(&case.pubkey))
            .ok()
            .zip(ProofOfPossession::from_bytes(&unhex(&case.proof)).ok())
            .map(|(key, proof)| key.verify_pop(&proof).is_ok())
            .unwrap_or(false);
        assert_eq!(result, case.valid, "pop case {i}");
    }
}

#[test]
fn fast_aggregate_verify_vectors() {
    let cases = load().cases.fast_aggregate_verify;
    assert!(!cases.is_empty());
    for (i, case) in cases.iter().enumerate() {
        let keys: Option<Vec<PopVerifiedKey>> = case
            .pubkeys
            .iter()
            .map(|k| {
                PublicKey::from_bytes(&unhex(k))
                    .ok()
                    .map(PopVerifiedKey::assume_verified)
            })
            .collect();
        let result = keys
            .zip(Signature::from_bytes(&unhex(&case.signature)).ok())
            .map(|(keys, sig)| {
                let message = unhex(&case.message);
                let whole = fast_aggregate_verify(&keys, &message, &sig).is_ok();
                let prepared = PreparedVerification::new(&keys, &message)
                    .and_then(|prepared| prepared.verify(&sig))
                    .is_ok();
                assert_eq!(whole, prepared, "prepared fast_aggregate_verify case {i}");
                whole
            })
            .unwrap_or(false);
        assert_eq!(result, case.valid, "fast_aggregate_verify case {i}");
    }
}

#[test]
fn aggregate_verify_vectors() {
    let cases = load().cases.aggregate_verify;
    assert!(!cases.is_empty());
    for (i, case) in cases.iter().enumerate() {
        let keys: Option<Vec<PublicKey>> = case
            .pubkeys
            .iter()
            .map(|k| PublicKey::from_bytes(&unhex(k)).ok())
            .collect();
        let messages: Vec<Vec<u8>> = case.messages.iter().map(|m| unhex(m)).collect();
        let message_refs: Vec<&[u8]> = messages.iter().map(Vec::as_slice).collect();
        let result = keys
            .zip(Signature::from_bytes(&unhex(&case.signature)).ok())
            .map(|(keys, sig)| aggregate_verify(&keys, &message_refs, &sig).is_ok())
            .unwrap_or(false);
        assert_eq!(result, case.valid, "aggregate_verify case {i}");
    }
}

#[test]
fn key_generation_needs_32_bytes_of_ikm() {
    assert_eq!(
        SecretKey::from_ikm(&[7; 31], b"").unwrap_err(),
        KeyGenError::IkmTooShort { len: 31 }
    );
    let a = SecretKey::from_ikm(&[7; 32], b"").unwrap();
    let b = SecretKey::from_ikm(&[7; 32], b"").unwrap();
    let c = SecretKey::from_ikm(&[7; 32], b"other").unwrap();
    assert_eq!(a.public_key(), b.public_key(), "KeyGen is deterministic");
    assert_ne!(a.public_key(), c.public_key(), "key_info separates keys");
}

#[test]
fn secret_key_bytes_round_trip_and_reject_bad_scalars() {
    let key = SecretKey::random();
    let again = SecretKey::from_bytes(key.to_bytes().expose()).unwrap();
    assert_eq!(key.public_key(), again.public_key());
    assert!(SecretKey::from_bytes(&[0; 32]).is_err());
    assert!(
        SecretKey::from_bytes(&[0xff; 32]).is_err(),
        "above the group order"
    );
    assert!(SecretKey::from_bytes(&[1; 31]).is_err());
}

#[test]
fn identity_and_malformed_points_are_rejected() {
    let mut identity = [0u8; 48];
    identity[0] = 0xc0;
    assert_eq!(PublicKey::from_bytes(&identity), Err(DecodeError::Identity));
    let mut identity_sig = [0u8; 96];
    identity_sig[0] = 0xc0;
    assert_eq!(
        Signature::from_bytes(&identity_sig),
        Err(DecodeError::Identity)
    );
    assert!(matches!(
        PublicKey::from_bytes(&[1; 47]),
        Err(DecodeError::WrongLength {
            expected: 48,
            actual: 47
        })
    ));
    assert!(PublicKey::from_bytes(&[0x9f; 48]).is_err());
}

#[test]
fn pop_and_signature_checked_together() {
    let a = SecretKey::random();
    let b = SecretKey::random();
    let key = a.public_key();
    let message = b"identity claims";
    let pop = a.prove_possession();
    let signature = a.sign(message);
    assert!(
        key.verify_pop_and_signature(&pop, message, &signature)
            .is_ok()
    );
    let wrong = Err(VerifyError::InvalidSignature);
    // Either half wrong.
    assert_eq!(
        key.verify_pop_and_signature(&pop, b"other claims", &signature),
        wrong
    );
    assert_eq!(
        key.verify_pop_and_signature(&b.prove_possession(), message, &signature),
        wrong
    );
    assert_eq!(
        key.verify_pop_and_signature(&pop, message, &b.sign(message)),
        wrong
    );
    // Swapped, the two still add up to the same sum: only the random weights catch it.
    let pop_as_signature = Signature::from_bytes(&pop.to_bytes()).unwrap();
    let signature_as_pop = ProofOfPossession::from_bytes(&signature.to_bytes()).unwrap();
    assert_eq!(
        key.verify_pop_and_signature(&signature_as_pop, message, &pop_as_signature),
        wrong
    );
}

#[test]
fn pop_binds_the_key() {
    let a = SecretKey::random();
    let b = SecretKey::random();
    assert!(a.public_key().verify_pop(&a.prove_possession()).is_ok());
    assert_eq!(
        b.public_key().verify_pop(&a.prove_possession()),
        Err(VerifyError::InvalidSignature)
    );
    // A PoP is not a signature on the key bytes under the signing tag, and vice versa.
    let as_signature = Signature::from_bytes(&a.prove_possession().to_bytes()).unwrap();
    assert!(
        a.public_key()
            .verify(&a.public_key().to_bytes(), &as_signature)
            .is_err()
    );
}

#[test]
fn aggregate_of_many_signers_verifies_once() {
    let keys: Vec<SecretKey> = (0..10).map(|_| SecretKey::random()).collect();
    let verified: Vec<PopVerifiedKey> = keys
        .iter()
        .map(|k| k.public_key().verify_pop(&k.prove_possession()).unwrap())
        .collect();
    let message = b"commitment cid";
    let signatures: Vec<Signature> = keys.iter().map(|k| k.sign(message)).collect();
    let aggregate = aggregate_signatures(&signatures).unwrap();
    fast_aggregate_verify(&verified, message, &aggregate).unwrap();
    assert!(fast_aggregate_verify(&verified[1..], message, &aggregate).is_err());
    assert!(fast_aggregate_verify(&verified, b"other", &aggregate).is_err());
    // Prepared ahead of the signatures, the check decides the same way.
    let prepared = PreparedVerification::new(&verified, message).unwrap();
    prepared.verify(&aggregate).unwrap();
    prepared.verify(&aggregate).unwrap();
    assert!(prepared.verify(&signatures[0]).is_err());
    let missing_one = aggregate_signatures(&signatures[1..]).unwrap();
    assert!(prepared.verify(&missing_one).is_err());
    assert!(
        PreparedVerification::new(&verified[1..], message)
            .unwrap()
            .verify(&aggregate)
            .is_err()
    );
    assert!(
        PreparedVerification::new(&verified, b"other")
            .unwrap()
            .verify(&aggregate)
            .is_err()
    );
    assert_eq!(
        PreparedVerification::new(&[], message).map(drop),
        Err(VerifyError::NoKeys)
    );
    assert_eq!(
        fast_aggregate_verify(&[], message, &aggregate),
        Err(VerifyError::NoKeys)
    );
    assert_eq!(aggregate_signatures(&[]), Err(AggregateError::Empty));
}

#[test]
fn encoded_signatures_aggregate_with_one_group_check() {
    let keys: Vec<SecretKey> = (0..3).map(|_| SecretKey::random()).collect();
    let message = b"commitment cid";
    let signatures: Vec<Signature> = keys.iter().map(|k| k.sign(message)).collect();
    let encoded: Vec<[u8; SIGNATURE_LEN]> = signatures.iter().map(Signature::to_bytes).collect();
    let refs: Vec<&[u8]> = encoded.iter().map(|e| &e[..]).collect();
    assert_eq!(
        aggregate_encoded(&refs),
        Ok(aggregate_signatures(&signatures).unwrap())
    );
    assert_eq!(aggregate_encoded(&[]), Err(AggregateEncodedError::Empty));
    let short = &encoded[1][..95];
    assert_eq!(
        aggregate_encoded(&[refs[0], short, refs[2]]),
        Err(AggregateEncodedError::Undecodable(1))
    );

    // A point on the curve but outside the subgroup (almost every x that decompresses is),
    // which decoding one by one refuses, makes the aggregate fail its single check.
    let mut candidate = [0u8; SIGNATURE_LEN];
    let outside = loop {
        crate::random_bytes(&mut candidate);
        candidate[0] = 0x80 | (candidate[0] & 0x1f);
        if raw::Signature::from_bytes(&candidate).is_ok() {
            break candidate;
        }
    };
    assert_eq!(
        Signature::from_bytes(&outside),
        Err(DecodeError::NotInGroup)
    );
    assert_eq!(
        aggregate_encoded(&[refs[0], &outside, refs[2]]),
        Err(AggregateEncodedError::NotInGroup)
    );
    // A signature and its negation (the sign bit flipped) sum to the identity.
    let mut negated = encoded[0];
    negated[0] ^= 0x20;
    assert_eq!(
        aggregate_encoded(&[refs[0], &negated]),
        Err(AggregateEncodedError::NotInGroup)
    );
}

#[test]
fn aggregate_signatures_verify_in_one_batch() {
    let signers: Vec<Vec<SecretKey>> = (0..4)
        .map(|_| (0..3).map(|_| SecretKey::random()).collect())
        .collect();
    let keys: Vec<Vec<PopVerifiedKey>> = signers
        .iter()
        .map(|set| {
            set.iter()
                .map(|k| k.public_key().verify_pop(&k.prove_possession()).unwrap())
                .collect()
        })
        .collect();
    let messages: Vec<Vec<u8>> = (0..4u8).map(|i| vec![i; 40]).collect();
    let signatures: Vec<Signature> = signers
        .iter()
        .zip(&messages)
        .map(|(set, m)| {
            aggregate_signatures(&set.iter().map(|k| k.sign(m)).collect::<Vec<_>>()).unwrap()
        })
        .collect();
    let batch = |signatures: &[Signature], messages: &[Vec<u8>]| {
        let items: Vec<(&[PopVerifiedKey], &[u8], &Signature)> = keys
            .iter()
            .zip(messages)
            .zip(signatures)
            .map(|((k, m), s)| (k.as_slice(), m.as_slice(), s))
            .collect();
        fast_aggregate_verify_batch(&items)
    };
    assert_eq!(batch(&signatures, &messages), Ok(()));
    assert_eq!(batch(&signatures[..1], &messages[..1]), Ok(()));
    assert_eq!(fast_aggregate_verify_batch(&[]), Err(VerifyError::NoKeys));
    // One wrong message, or two signatures swapped: the weights keep the sums apart.
    let mut wrong = messages.clone();
    wrong[2] = b"another commitment".to_vec();
    assert_eq!(
        batch(&signatures, &wrong),
        Err(VerifyError::InvalidSignature)
    );
    let mut swapped = signatures.clone();
    swapped.swap(0, 3);
    assert_eq!(
        batch(&swapped, &messages),
        Err(VerifyError::InvalidSignature)
    );
    // One signer missing from an aggregate.
    let short = aggregate_signatures(&[signers[1][0].sign(&messages[1])]).unwrap();
    let mut missing = signatures.clone();
    missing[1] = short;
    assert_eq!(
        batch(&missing, &messages),
        Err(VerifyError::InvalidSignature)
    );
}

#[test]
fn aggregate_verify_with_distinct_messages() {
    let keys: Vec<SecretKey> = (0..3).map(|_| SecretKey::random()).collect();
    let messages: Vec<Vec<u8>> = (0..3u8).map(|i| vec![i; 5]).collect();
    let refs: Vec<&[u8]> = messages.iter().map(Vec::as_slice).collect();
    let signatures: Vec<Signature> = keys.iter().zip(&refs).map(|(k, m)| k.sign(m)).collect();
    let aggregate = aggregate_signatures(&signatures).unwrap();
    let publics: Vec<PublicKey> = keys.iter().map(SecretKey::public_key).collect();
    aggregate_verify(&publics, &refs, &aggregate).unwrap();
    let swapped = [refs[1], refs[0], refs[2]];
    assert!(aggregate_verify(&publics, &swapped, &aggregate).is_err());
    assert_eq!(
        aggregate_verify(&publics, &refs[..2], &aggregate),
        Err(VerifyError::LengthMismatch {
            keys: 3,
            messages: 2
        })
    );
}

#[test]
fn debug_output_redacts_secrets() {
    let key = SecretKey::from_ikm(&[42; 32], b"").unwrap();
    let secret_hex = hex::encode(key.to_bytes().expose());
    let shown = format!("{key:?}");
    assert!(shown.contains("redacted"));
    assert!(!shown.contains(&secret_hex[..16]));
}

#[test]
fn the_point_at_infinity_is_told_by_its_encoding() {
    let mut g1 = [0u8; PUBLIC_KEY_LEN];
    g1[0] = 0xc0;
    let mut g2 = [0u8; SIGNATURE_LEN];
    g2[0] = 0xc0;
    assert!(is_infinity(&g1) && is_infinity(&g2));
    let key = SecretKey::from_bytes(&[7; 32]).unwrap();
    assert!(!is_infinity(&key.public_key().to_bytes()));
    assert!(!is_infinity(&key.sign(b"m").to_bytes()));
    g2[95] = 1;
    assert!(!is_infinity(&g2));
}

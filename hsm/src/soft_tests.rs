use super::*;

/// Small Argon2id parameters: the tests are about the wrapping, not the KDF's cost.
fn params() -> KdfParams {
    KdfParams {
        memory_kib: 64,
        iterations: 1,
        parallelism: 1,
        salt: [7; 16],
    }
}

#[test]
fn secrets_round_trip_under_their_name_only() {
    let store = SoftKeystore::derive(b"correct horse", &params()).unwrap();
    let blob = store.wrap("identity-seed", b"the seed").unwrap();
    assert_eq!(
        store.unwrap("identity-seed", &blob).unwrap().as_slice(),
        b"the seed"
    );
    assert_eq!(
        store.unwrap("other", &blob),
        Err(KeystoreError::Integrity {
            name: "other".into()
        })
    );
    // Two wraps of the same secret differ (fresh nonce) and hide the plaintext.
    let again = store.wrap("identity-seed", b"the seed").unwrap();
    assert_ne!(blob, again);
    assert!(!blob.windows(8).any(|w| w == b"the seed"));
}

#[test]
fn a_wrong_passphrase_is_named_as_such() {
    let store = SoftKeystore::derive(b"correct horse", &params()).unwrap();
    let check = store.check_blob().unwrap();
    store.verify_passphrase(&check).unwrap();
    let wrong = SoftKeystore::derive(b"battery staple", &params()).unwrap();
    assert_eq!(
        wrong.verify_passphrase(&check),
        Err(KeystoreError::WrongPassphrase)
    );
    assert_eq!(
        SoftKeystore::derive(b"", &params()).unwrap_err(),
        KeystoreError::EmptyPassphrase
    );
}

#[test]
fn altered_and_malformed_blobs_are_refused() {
    let store = SoftKeystore::derive(b"pw", &params()).unwrap();
    let mut blob = store.wrap("s", b"secret").unwrap();
    let last = blob.len() - 1;
    blob[last] ^= 1;
    assert_eq!(
        store.unwrap("s", &blob),
        Err(KeystoreError::Integrity { name: "s".into() })
    );
    assert_eq!(
        store.unwrap("s", &[1, 2, 3]),
        Err(KeystoreError::Malformed { name: "s".into() })
    );
    let mut versioned = store.wrap("s", b"secret").unwrap();
    versioned[0] = 9;
    assert_eq!(
        store.unwrap("s", &versioned),
        Err(KeystoreError::Malformed { name: "s".into() })
    );
}

#[test]
fn errors_and_debug_never_show_secrets() {
    let store = SoftKeystore::derive(b"pw", &params()).unwrap();
    assert!(format!("{store:?}").contains("redacted"));
    let err = store.unwrap("name", &[1; 40]).unwrap_err().to_string();
    assert!(!err.contains("pw"));
}

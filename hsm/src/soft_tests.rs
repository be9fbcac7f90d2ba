//! The software keystore's own checks; the checks every backend passes are in
//! `tests/suite.rs`.

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
fn a_wrong_passphrase_is_named_as_such() {
    let store = SoftKeystore::derive(b"correct horse", &params()).unwrap();
    let check = crate::check_blob(&store).unwrap();
    crate::verify_check(&store, &check).unwrap();
    let wrong = SoftKeystore::derive(b"battery staple", &params()).unwrap();
    assert_eq!(
        crate::verify_check(&wrong, &check),
        Err(KeystoreError::WrongKey { backend: "soft" })
    );
    assert_eq!(
        SoftKeystore::derive(b"", &params()).unwrap_err(),
        KeystoreError::EmptyPassphrase
    );
}

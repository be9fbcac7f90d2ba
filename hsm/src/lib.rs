//! Where a dta node keeps its secrets. Not built yet: this crate is the place for it.
//!
//! It will own the `Keystore` trait every secret goes through (identity seeds, fiduciary
//! shares, M-Pin master-secret shares, received secrets), a PKCS#11 keystore over cryptoki
//! (a token-resident, non-extractable key wraps each secret; SoftHSM2 in tests) and a software
//! keystore encrypted at rest with an Argon2id-derived key.
//!
//! It will not do networking, and it is the only crate that talks PKCS#11.
